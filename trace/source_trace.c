/*
 * source_trace.c — a replay source backed by an HDF5 trace (trace/trace_file.h): the
 * one row source of every consumer (replay, sweep, std, scope, heatmap, verify).
 *
 * A row block comes one of two ways, decided per (layer, head) by the trace:
 *   stored   its chunks are fetched and decoded (trace_fetch_rows, trace_decode_rows);
 *   rebuilt  its queries and keys are fetched and the rows computed from them
 *            (trace_fetch_inputs, trace_rebuild_rows: the forward pass's arithmetic).
 * Every block is checked before it is handed out (trace_check_rows): a damaged trace
 * whose rows hold NaN, negative or unnormalised values is an error, never replayed.
 * The reader is not thread-safe (nor is the HDF5 library), so every call into it
 * holds one lock — but only to fetch bytes: decoding and rebuilding run outside it,
 * in buffers owned by the calling OpenMP thread, so threads work concurrently.
 *
 * Memory for rebuilt rows: each thread holds the keys of the layer it last rebuilt
 * (K · T · D floats, read once as its blocks advance in time) and one block of
 * queries; the rows go straight into the caller's block.
 */
#include "replay_source.h"

#include "trace_file.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct trace_source {
    replay_source src;
    trace        *tr;
    char         *path;         /* owned copy: name and src.path point into it */
    int          *kv_of_head;   /* (H,) */
    policy_entry *tokens;       /* (T,) */
    float        *rope_freq;    /* (L, D/2) or NULL */
    int                 n_bufs;    /* per OpenMP thread: a chunk buffer and a rebuild */
    trace_chunk_buf   **bufs;      /* buffer, and one more of each for nested calls, */
    trace_rebuild_buf **rebuilds;  /* which take them under the lock */
} trace_source;

/* The calling thread's buffer index; -1 inside nested parallelism, where thread
 * numbers repeat across teams and a buffer could be shared. */
static int thread_index(void)
{
#ifdef _OPENMP
    return omp_get_level() > 1 ? -1 : omp_get_thread_num();
#else
    return 0;
#endif
}

/* Rows of one (li, hi) block with thread `me`'s buffers; only fetches lock. */
static int read_block(trace_source *s, int me, int li, int hi, int t0, int n, float *out,
                      size_t width, kv_err *err)
{
    int rc;
    if (!trace_rows_stored(s->tr, li, hi)) {
#pragma omp critical(trace_source_io)
        rc = trace_fetch_inputs(s->tr, li, hi, t0, n, s->rebuilds[me], err);
        if (rc == KV_OK)
            rc = trace_rebuild_rows(s->rebuilds[me], out, width, err);
    } else {
#pragma omp critical(trace_source_io)
        rc = trace_fetch_rows(s->tr, li, hi, t0, n, s->bufs[me], err);
        if (rc == KV_OK)
            rc = trace_decode_rows(s->bufs[me], out, width, err);
    }
    return rc == KV_OK ? trace_check_rows(s->tr, li, hi, t0, n, out, width, err) : rc;
}

static int ts_read_rows(replay_source *src, int li, int hi, int t0, int n, float *out,
                        size_t width, kv_err *err)
{
    trace_source *s = src->impl;
    const int me = thread_index();
    if (me >= 0 && me < s->n_bufs)
        return read_block(s, me, li, hi, t0, n, out, width, err);
    int rc;   /* nested, or beyond the pool opened for: the spare buffers, one at a time */
#pragma omp critical(trace_source_spare)
    rc = read_block(s, s->n_bufs, li, hi, t0, n, out, width, err);
    return rc;
}

/* Rows as f16 chunks in buf (trace_fetch_f16), with thread `me`'s chunk buffer. */
static int f16_block(trace_source *s, int me, int li, int hi, int t0, int n, void *buf,
                     size_t cap, const unsigned char **col, kv_err *err)
{
    int rc;
#pragma omp critical(trace_source_io)
    rc = trace_fetch_f16(s->tr, li, hi, t0, n, s->bufs[me], buf, cap, err);
    if (rc != 1)
        return rc;
    rc = trace_decode_f16(s->bufs[me], col, err);
    if (rc == KV_OK)
        rc = trace_check_f16(s->tr, li, hi, t0, n, col, err);
    return rc == KV_OK ? 1 : rc;
}

static int ts_f16_rows(replay_source *src, int li, int hi, int t0, int n, void *buf,
                       size_t cap, const unsigned char **col, kv_err *err)
{
    _Static_assert(REPLAY_F16_COLS == TRACE_CHUNK_COLS, "f16 blocks are trace chunks");
    trace_source *s = src->impl;
    const int me = thread_index();
    if (!trace_rows_stored(s->tr, li, hi) || me < 0 || me >= s->n_bufs)
        return 0;   /* rebuilt, or nested: as floats (ts_read_rows) */
    return f16_block(s, me, li, hi, t0, n, buf, cap, col, err);
}

static int ts_read_kv(replay_source *src, int li, int ki, int t0, int n, float *keys,
                      float *values, kv_err *err)
{
    trace_source *s = src->impl;
    int rc;
#pragma omp critical(trace_source_io)
    rc = trace_read_kv(s->tr, li, ki, t0, n, keys, values, err);
    return rc;
}

static int ts_read_queries(replay_source *src, int li, int hi, int t0, int n, float *out,
                           kv_err *err)
{
    trace_source *s = src->impl;
    int rc;
#pragma omp critical(trace_source_io)
    rc = trace_read_queries(s->tr, li, hi, t0, n, out, err);
    return rc;
}

/* The RoPE frequencies of each recorded layer as the forward pass forms them
 * (model/forward.c: 1/base^(2i/D) in float), where the trace determines them: the
 * architecture fixes the pairing and gemma3's local (sliding) layers use base 10000.
 * RoPE scaling (llama 3's rope_freqs, linear factors) and partial rotation (gptneox)
 * are not recorded: NULL for gptneox, unscaled otherwise (docs/POLICIES.md). */
static void rope_frequencies(trace_source *s, const trace_meta *m)
{
    const trace_header *h = &m->header;
    const int L = h->n_layers_rec, half = h->head_dim / 2;
    if (half < 1 || !strcmp(h->architecture, "gptneox") || h->rope_base <= 0 ||
        !(s->rope_freq = malloc((size_t)L * half * sizeof *s->rope_freq)))
        return;
    for (int li = 0; li < L; li++) {
        const int local = !strcmp(h->architecture, "gemma3") && h->window && h->window[li] > 0;
        const float base = local ? 10000.0f : (float)h->rope_base;
        for (int i = 0; i < half; i++)
            s->rope_freq[(size_t)li * half + i] =
                1.0f / powf(base, (float)(2 * i) / (float)h->head_dim);
    }
    s->src.rope_freq = s->rope_freq;
    s->src.rope_halves = strcmp(h->architecture, "llama") != 0;
}

static void ts_close(replay_source *src)
{
    trace_source *s = src->impl;
    trace_close(s->tr);
    for (int i = 0; i <= s->n_bufs; i++) {
        trace_chunk_buf_free(s->bufs ? s->bufs[i] : NULL);
        trace_rebuild_buf_free(s->rebuilds ? s->rebuilds[i] : NULL);
    }
    free(s->bufs);
    free(s->rebuilds);
    free(s->path);
    free(s->kv_of_head);
    free(s->tokens);
    free(s->rope_freq);
    free(s);
}

static const replay_source_ops trace_source_ops = {ts_read_rows, ts_read_kv, ts_close,
                                                   ts_f16_rows, ts_read_queries};

/* A chunk buffer and a rebuild buffer for each thread replay may run on, and a spare
 * pair (a rebuild buffer allocates its keys only when it first rebuilds a row). */
static int make_buffers(trace_source *s)
{
#ifdef _OPENMP
    const int n = omp_get_max_threads();
#else
    const int n = 1;
#endif
    s->n_bufs = n;
    if (!(s->bufs = calloc((size_t)n + 1, sizeof *s->bufs)) ||
        !(s->rebuilds = calloc((size_t)n + 1, sizeof *s->rebuilds)))
        return KV_ENOMEM;
    for (int i = 0; i <= n; i++)
        if (!(s->bufs[i] = trace_chunk_buf_new()) ||
            !(s->rebuilds[i] = trace_rebuild_buf_new()))
            return KV_ENOMEM;
    return KV_OK;
}

replay_source *replay_source_open_trace(const char *path, kv_err *err)
{
    trace *tr = trace_open(path, err);
    if (!tr)
        return NULL;
    const trace_meta *m = trace_get_meta(tr);
    const trace_tokens *tok = trace_get_tokens(tr);
    const int T = (int)m->steps, H = m->header.n_heads_rec;
    trace_source *s = calloc(1, sizeof *s);
    if (s) {
        s->tr = tr;
        s->kv_of_head = malloc((size_t)(H > 0 ? H : 1) * sizeof *s->kv_of_head);
        s->tokens = malloc((size_t)(T > 0 ? T : 1) * sizeof *s->tokens);
        s->path = strdup(path);
    }
    if (!s || !s->kv_of_head || !s->tokens || !s->path || make_buffers(s) != KV_OK) {
        if (s)
            ts_close(&(replay_source){.impl = s});
        else
            trace_close(tr);
        kv_errorf(err, KV_ENOMEM, "%s: out of memory for %d tokens", path, T);
        return NULL;
    }
    for (int h = 0; h < H; h++)
        s->kv_of_head[h] = trace_kv_index_of_head(tr, h);
    for (int t = 0; t < T; t++)
        s->tokens[t] = (policy_entry){
            .position = t, .token = tok->id[t],
            .flags = tok->flags[t] | (tok->phase[t] == TRACE_PHASE_PROMPT ? POLICY_FLAG_PROMPT : 0)};
    const char *base = strrchr(s->path, '/');
    s->src = (replay_source){
        .ops = &trace_source_ops, .name = base ? base + 1 : s->path, .path = s->path, .T = T,
        .complete = m->complete, .n_layers = m->header.n_layers_rec, .n_heads = H,
        .n_kv = m->n_kv_heads_rec, .layers = m->header.layers, .heads = m->header.heads,
        .kv_of_head = s->kv_of_head, .model_layers = m->header.n_layer,
        .window = m->header.window,
        .head_dim = m->header.head_dim, .has_values = 1,
        .prompt_len = (int)m->prompt_len, .tokens = s->tokens, .impl = s,
        .has_queries = trace_options_queries(&m->options)};
    rope_frequencies(s, m);
    for (int li = 0; li < s->src.n_layers && !s->src.rows_rebuilt; li++)
        for (int h = 0; h < H && !s->src.rows_rebuilt; h++)
            s->src.rows_rebuilt = !trace_rows_stored(tr, li, h);
    return &s->src;
}
