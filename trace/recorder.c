/*
 * recorder.c — the engine behind `kvtrace record`; recorder.h states how it runs.
 *
 * The steps of one chunk live in `rows` until the chunk's forward pass returns, in the
 * trace's dtype (an f16 trace's rows are converted once, by the hook, where the row is
 * still in cache, and the writer copies them: half the bytes moved of converting in
 * the writer from a float copy):
 * rows[(c · Lr·Hr + si · Hr + sj) · T_cap ...] is the row of stored pair (si, sj) for
 * query t0 + c.  Keys and values are read back from the full KV cache, where slot t is
 * position t.
 *
 * The writer is opened at the first step, not before the first forward: the model
 * file's SHA-256, which its header holds, is computed meanwhile on a thread of its own
 * (0.1 s for a 135 MB model, 4% of recording 512 tokens when it came first).
 */
#include "recorder.h"

#include "dequant.h"
#include "fp16.h"
#include "index_list.h"
#include "progress.h"
#include "sha256.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct recorder {
    session            *s;
    const model_config *cfg;
    const record_options *ro;
    int    L, H, K, D;        /* recorded layers, query heads, KV heads; head_dim */
    int    Lr, Hr;            /* stored rows' layers and heads */
    int    T_cap;             /* most steps this run can reach */
    int   *layers, *heads, *kv_heads;   /* model indices, increasing */
    int   *li_of_layer;       /* (n_layer,) recorded index or -1 */
    int   *hi_of_head;        /* (n_head,) recorded index or -1 */
    int   *row_layers, *row_heads;      /* stored rows' model indices */
    int   *si_of_layer;       /* (n_layer,) stored index or -1 */
    int   *sj_of_head;        /* (n_head,) stored index or -1 */
    trace_options trace;      /* the caller's, with the stored rows filled in */
    int    t0;                /* step of chunk slot 0 */
    void  *rows;              /* (RECORD_CHUNK, Lr·Hr, T_cap) of row_esize bytes */
    size_t row_esize;         /* 2: f16 (the trace's dtype), 4: float */
    float *queries;           /* (RECORD_CHUNK, L·H, D), or NULL */
    float *logits;            /* (RECORD_CHUNK, n_vocab) */
    const float **row_ptr, **key_ptr, **value_ptr, **query_ptr;   /* one step's views */
    const uint16_t **row16_ptr;                                    /* (f16 rows) */
    char  *text;              /* one token's sanitised text */
    kv_cache     *cache;
    trace_writer *writer;     /* NULL until the first step (writer_ready) */
    const session_options *so;          /* the session's options and the trace's path, */
    const char   *path;                 /* for the writer */
    pthread_t     sha_thread;           /* sha256_file of the model, while chunk 0 runs */
    int           sha_pending;          /* the thread is yet to be joined */
    int           sha_rc;               /* its result: 0 and sha, or an error in sha_err */
    char          sha[65];
    kv_err        sha_err;
    progress      bar;
    double        megabytes;  /* attention rows handed to the writer so far */
} recorder;

/* --- hooks: called by model_forward, possibly from several threads at once ---------- */

static void *row_slot(recorder *r, int c, int si, int sj)
{
    return (char *)r->rows +
           ((size_t)c * r->Lr * r->Hr + (size_t)si * r->Hr + sj) * r->T_cap * r->row_esize;
}

static void on_row(void *ctx, int layer, int q_head, int pos, const float *probs, int n)
{
    recorder *r = ctx;
    int si = r->si_of_layer[layer], sj = r->sj_of_head[q_head];
    if (si < 0 || sj < 0)
        return;
    /* distinct heads write distinct slots: no lock needed */
    if (r->row_esize == 2)
        fp16_from_f32_n(probs, row_slot(r, pos - r->t0, si, sj), (size_t)n);
    else
        memcpy(row_slot(r, pos - r->t0, si, sj), probs, (size_t)n * sizeof *probs);
}

static void on_query(void *ctx, int layer, int q_head, int pos, const float *q, int d)
{
    recorder *r = ctx;
    int li = r->li_of_layer[layer], hi = r->hi_of_head[q_head];
    if (li >= 0 && hi >= 0)
        memcpy(r->queries + ((size_t)(pos - r->t0) * r->L * r->H + (size_t)li * r->H + hi) * r->D,
               q, (size_t)d * sizeof *q);
}

/* --- token facts ------------------------------------------------------------------ */

/* record_next_token_stats: next_token_stats.c */

/* Copy a piece as valid UTF-8 (HDF5 strings are read back as UTF-8 by h5py): a byte
 * that does not start a complete sequence becomes U+FFFD.  Token ids stay exact. */
static const char *sanitise(char *out, const char *piece, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tokenizer_utf8_char(piece + i, len - i, &cp);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3, i += 1;
        } else {
            memcpy(out + o, piece + i, n);
            o += n, i += n;
        }
    }
    out[o] = '\0';
    return out;
}

/* --- set-up ----------------------------------------------------------------------- */

/* Resolve a selection into increasing indices and the reverse map. */
static int select_indices(const char *text, int n, const char *what, int **list, int *count,
                  int **index_of, kv_err *err)
{
    unsigned char *on = malloc((size_t)n);
    *index_of = malloc((size_t)n * sizeof **index_of);
    *list = malloc((size_t)n * sizeof **list);
    if (!on || !*index_of || !*list) {
        free(on);
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    }
    int rc = index_list_parse(text, n, on, what, err);
    *count = 0;
    for (int i = 0; rc >= 0 && i < n; i++) {
        (*index_of)[i] = on[i] ? *count : -1;
        if (on[i])
            (*list)[(*count)++] = i;
    }
    free(on);
    return rc < 0 ? rc : 0;
}

/* No stored row: lists of none, maps of -1. */
static int select_no_rows(recorder *r, kv_err *err)
{
    r->row_layers = malloc(1), r->row_heads = malloc(1);
    r->si_of_layer = malloc((size_t)r->cfg->n_layer * sizeof *r->si_of_layer);
    r->sj_of_head = malloc((size_t)r->cfg->n_head * sizeof *r->sj_of_head);
    if (!r->row_layers || !r->row_heads || !r->si_of_layer || !r->sj_of_head)
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    memset(r->si_of_layer, -1, (size_t)r->cfg->n_layer * sizeof *r->si_of_layer);
    memset(r->sj_of_head, -1, (size_t)r->cfg->n_head * sizeof *r->sj_of_head);
    return 0;
}

/* `spec` "all" (NULL), "none" or "LAYERS:HEADS": the pairs whose rows are stored,
 * each one recorded. */
static int select_rows(recorder *r, const char *spec, kv_err *err)
{
    const model_config *c = r->cfg;
    const int all = !spec || !strcmp(spec, "all"), none = spec && !strcmp(spec, "none");
    const char *colon = spec ? strchr(spec, ':') : NULL;
    char *layers = colon ? strndup(spec, (size_t)(colon - spec)) : NULL;
    int rc = 0;
    if (none)
        rc = select_no_rows(r, err);
    else if (!all && !colon)
        rc = kv_errorf(err, KV_EUSAGE, "--rows '%s': expected all, none or LAYERS:HEADS "
                       "(e.g. 0,15:0-3)", spec);
    else if (!all && !layers)
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    else if ((rc = select_indices(all ? r->ro->layers : layers, c->n_layer, "rows' layers",
                                  &r->row_layers, &r->Lr, &r->si_of_layer, err)) == 0)
        rc = select_indices(all ? r->ro->heads : colon + 1, c->n_head, "rows' heads",
                            &r->row_heads, &r->Hr, &r->sj_of_head, err);
    free(layers);
    for (int l = 0; !rc && l < c->n_layer; l++)
        if (r->si_of_layer[l] >= 0 && r->li_of_layer[l] < 0)
            rc = kv_errorf(err, KV_EUSAGE, "--rows: layer %d is not recorded (--layers)", l);
    for (int h = 0; !rc && h < c->n_head; h++)
        if (r->sj_of_head[h] >= 0 && r->hi_of_head[h] < 0)
            rc = kv_errorf(err, KV_EUSAGE, "--rows: head %d is not recorded (--heads)", h);
    r->trace = r->ro->trace;
    r->trace.rows = r->Lr == r->L && r->Hr == r->H ? TRACE_ROWS_ALL
                    : r->Lr == 0 ? TRACE_ROWS_NONE : TRACE_ROWS_SOME;
    r->trace.n_row_layers = r->Lr, r->trace.row_layers = r->row_layers;
    r->trace.n_row_heads = r->Hr, r->trace.row_heads = r->row_heads;
    return rc;
}

static int select_kv_heads(recorder *r, kv_err *err)
{
    int group = r->cfg->n_head / r->cfg->n_head_kv;
    if (!(r->kv_heads = malloc((size_t)r->cfg->n_head_kv * sizeof *r->kv_heads)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    r->K = 0;
    for (int hi = 0; hi < r->H; hi++) {
        int kv = r->heads[hi] / group;
        if (r->K == 0 || r->kv_heads[r->K - 1] != kv)   /* heads increase, so kv does */
            r->kv_heads[r->K++] = kv;
    }
    return 0;
}

static int allocate(recorder *r, kv_err *err)
{
    size_t lh = (size_t)r->L * r->H, stored = (size_t)r->Lr * r->Hr;
    r->row_esize = r->trace.dtype == TRACE_F16 ? 2 : 4;
    r->rows = calloc((size_t)RECORD_CHUNK * stored * r->T_cap + 1, r->row_esize);
    r->logits = malloc((size_t)RECORD_CHUNK * r->cfg->n_vocab * sizeof *r->logits);
    r->row_ptr = malloc((stored + 1) * sizeof *r->row_ptr);
    r->row16_ptr = malloc((stored + 1) * sizeof *r->row16_ptr);
    r->query_ptr = malloc(lh * sizeof *r->query_ptr);
    r->key_ptr = malloc((size_t)r->L * r->K * sizeof *r->key_ptr);
    r->value_ptr = malloc((size_t)r->L * r->K * sizeof *r->value_ptr);
    r->text = malloc(1024);
    const int queries = trace_options_queries(&r->trace);
    if (queries)
        r->queries = malloc((size_t)RECORD_CHUNK * lh * r->D * sizeof *r->queries);
    if (!r->rows || !r->logits || !r->row_ptr || !r->row16_ptr || !r->query_ptr ||
        !r->key_ptr || !r->value_ptr || !r->text || (queries && !r->queries))
        return kv_errorf(err, KV_ENOMEM, "out of memory for the recorder's buffers (%.0f MB "
                         "of rows: %zu x %d x %zu x %d bytes)",
                         (double)r->row_esize * RECORD_CHUNK * stored * r->T_cap / 1e6,
                         r->row_esize, RECORD_CHUNK, stored,
                         r->T_cap);
    return 0;
}

static void sha_join(recorder *r)
{
    if (r->sha_pending)
        pthread_join(r->sha_thread, NULL);
    r->sha_pending = 0;
}

static void release(recorder *r)
{
    sha_join(r);
    free(r->layers), free(r->heads), free(r->kv_heads);
    free(r->li_of_layer), free(r->hi_of_head);
    free(r->row_layers), free(r->row_heads), free(r->si_of_layer), free(r->sj_of_head);
    free(r->rows), free(r->queries), free(r->logits), free(r->text);
    free(r->row_ptr), free(r->row16_ptr), free(r->query_ptr);
    free(r->key_ptr), free(r->value_ptr);
    kv_cache_free(r->cache);
}

/* "Q4_1:210 F32:61 Q8_0:1": the tensor types of the model file, in first-seen order. */
static void tensor_types(const gguf_file *f, char *out, size_t size)
{
    int seen[64], counts[64], n = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        int type = gguf_tensor_at(f, i)->type, j = 0;
        while (j < n && seen[j] != type)
            j++;
        if (j == n && n < 64)
            seen[n] = type, counts[n++] = 0;
        if (j < n)
            counts[j]++;
    }
    size_t used = 0;
    out[0] = '\0';
    for (int j = 0; j < n && used < size; j++)
        used += (size_t)snprintf(out + used, size - used, "%s%s:%d", j ? " " : "",
                                 ggml_type_name(seen[j]), counts[j]);
}

/* Every recorded layer's window, and the scale and cap all of them share: the trace
 * has one of each (a model whose layers differ in them is refused). */
static int attention_of(recorder *r, int *window, double *scale, double *cap, kv_err *err)
{
    const model_geometry *g0 = model_layer_geometry(r->s->model, r->layers[0]);
    for (int li = 0; li < r->L; li++) {
        const model_geometry *g = model_layer_geometry(r->s->model, r->layers[li]);
        if (g->attn_scale != g0->attn_scale || g->softcap != g0->softcap)
            return kv_errorf(err, KV_EUNSUPPORTED, "layers %d and %d differ in attention "
                             "scale or softcap, which a trace holds once", r->layers[0],
                             r->layers[li]);
        window[li] = g->mask == MODEL_MASK_SLIDING ? g->window : 0;
    }
    *scale = g0->attn_scale;
    *cap = g0->softcap;
    return 0;
}

static void *sha_main(void *arg)
{
    recorder *r = arg;
    r->sha_rc = sha256_file(r->so->model, r->sha, &r->sha_err);
    return NULL;
}

/* Hash the model file on a thread of its own (in this one if none can start). */
static void sha_start(recorder *r)
{
    r->sha_pending = pthread_create(&r->sha_thread, NULL, sha_main, r) == 0;
    if (!r->sha_pending)
        sha_main(r);
}

static int open_writer(recorder *r, kv_err *err)
{
    const session_options *so = r->so;
    char types[512];
    int window[TRACE_MAX_LAYERS];
    double scale = 0, cap = 0;
    int rc = attention_of(r, window, &scale, &cap, err);
    if (rc)
        return rc;
    sha_join(r);
    if (r->sha_rc)
        return kv_errorf(err, r->sha_err.code, "%s", r->sha_err.msg);
    tensor_types(r->s->file, types, sizeof types);
    const char *base = strrchr(so->model, '/');
    const model_config *c = r->cfg;
    trace_header h = {
        .model_file = base ? base + 1 : so->model, .model_sha256 = r->sha,
        .architecture = c->arch, .tensor_types = types,
        .n_layer = c->n_layer, .n_embd = c->n_embd, .n_head = c->n_head,
        .n_head_kv = c->n_head_kv, .head_dim = c->head_dim, .n_ctx = c->n_ctx,
        .vocab_size = c->n_vocab, .rope_base = c->rope_base,
        .attn_scale = scale, .attn_softcap = cap, .window = window,
        .planned_steps = r->T_cap,
        .prompt = r->s->prompt_text, .chat = so->chat, .max_new_tokens = so->max_new,
        .top_k = so->sampling.top_k, .temperature = so->sampling.temperature,
        .top_p = so->sampling.top_p, .seed = so->sampling.seed,
        .device = model_device_name(r->s->model),
        .threads = omp_get_max_threads(),
        .n_layers_rec = r->L, .layers = r->layers, .n_heads_rec = r->H, .heads = r->heads,
    };
    r->writer = trace_writer_open(r->path, &h, &r->trace, err);
    return r->writer ? 0 : err->code;
}

/* The writer, opened at the first step (or at the end of a run without one). */
static int writer_ready(recorder *r, kv_err *err)
{
    return r->writer ? 0 : open_writer(r, err);
}

static int recorder_open(recorder *r, session *s, const session_options *so, const char *path,
                         const record_options *ro, kv_err *err)
{
    memset(r, 0, sizeof *r);
    r->s = s, r->ro = ro, r->cfg = model_config_of(s->model);
    r->so = so, r->path = path;
    r->D = r->cfg->head_dim;
    r->T_cap = (int)s->prompt.n + so->max_new;
    if (r->T_cap > r->cfg->n_ctx)
        r->T_cap = r->cfg->n_ctx;
    int rc = select_indices(ro->layers, r->cfg->n_layer, "layers", &r->layers, &r->L, &r->li_of_layer, err);
    if (!rc)
        rc = select_indices(ro->heads, r->cfg->n_head, "heads", &r->heads, &r->H, &r->hi_of_head, err);
    if (!rc && (r->L == 0 || r->H == 0))
        rc = kv_errorf(err, KV_EUSAGE, "nothing to record: --layers and --heads select no rows");
    if (!rc)
        rc = select_rows(r, ro->rows, err);
    if (!rc && r->Lr > 0 && strcmp(model_device_name(s->model), "cpu"))
        rc = kv_errorf(err, KV_EUNSUPPORTED, "--rows %s: --device cuda records row-free "
                       "traces only (--rows none, the default; rows are rebuilt on reading)",
                       ro->rows);
    if (!rc)
        rc = select_kv_heads(r, err);
    if (!rc)
        rc = allocate(r, err);
    if (!rc && !(r->cache = model_cache_new(s->model, r->T_cap, err)))
        rc = err->code;
    if (!rc)
        sha_start(r);
    return rc;
}

/* --- steps ------------------------------------------------------------------------ */

/* Append step t0 + c (token `token`) from the chunk buffers and the cache. */
static int append_step(recorder *r, int c, int32_t token, uint8_t phase, float logprob,
                       float entropy, kv_err *err)
{
    int t = r->t0 + c, rc = writer_ready(r, err);
    if (rc)
        return rc;
    for (int si = 0; si < r->Lr; si++)
        for (int sj = 0; sj < r->Hr; sj++)
            if (r->row_esize == 2)
                r->row16_ptr[si * r->Hr + sj] = row_slot(r, c, si, sj);
            else
                r->row_ptr[si * r->Hr + sj] = row_slot(r, c, si, sj);
    for (int li = 0; li < r->L; li++) {
        for (int hi = 0; hi < r->H; hi++) {
            if (r->queries)
                r->query_ptr[li * r->H + hi] =
                    r->queries + ((size_t)c * r->L * r->H + (size_t)li * r->H + hi) * r->D;
        }
        for (int ki = 0; ki < r->K; ki++) {
            r->key_ptr[li * r->K + ki] =
                kv_cache_keys(r->cache, r->layers[li], r->kv_heads[ki]) + (size_t)t * r->D;
            r->value_ptr[li * r->K + ki] =
                kv_cache_values(r->cache, r->layers[li], r->kv_heads[ki]) + (size_t)t * r->D;
        }
    }
    size_t len;
    const char *piece = tokenizer_piece(r->s->tok, token, &len);
    if (len > 300)   /* the text buffer holds 3 bytes per input byte */
        len = 300;
    trace_step step = {
        .token = token, .text = sanitise(r->text, piece, len),
        .flags = (uint8_t)tokenizer_flags_of(tokenizer_token_type(r->s->tok, token), piece, len),
        .phase = phase, .position = t, .logprob_next = logprob, .entropy_next = entropy,
        .rows = r->Lr > 0 && r->row_esize == 4 ? r->row_ptr : NULL,
        .rows_f16 = r->Lr > 0 && r->row_esize == 2 ? r->row16_ptr : NULL,
        .keys = r->key_ptr, .values = r->value_ptr,
        .queries = r->queries ? r->query_ptr : NULL,
    };
    const double e = (double)trace_dtype_size(r->trace.dtype);
    const double qe = (double)trace_dtype_size(r->trace.qk_dtype);
    r->megabytes += ((double)(t + 1) * r->Lr * r->Hr * e +
                     (double)r->L * r->D * (r->K * (e + qe) + (r->queries ? r->H * qe : 0))) /
                    1e6;
    return trace_writer_append_step(r->writer, &step, err);
}

static int check_stop(const recorder *r, kv_err *err)
{
    if (!r->ro->stop || !*r->ro->stop)
        return 0;
    return kv_errorf(err, KV_EINTERRUPTED, "interrupted after %lld steps",
                     (long long)trace_writer_steps(r->writer));
}

/* (1)-(3) The prompt in chunks; `*next` receives the first generated token (or -1). */
static int record_prompt(recorder *r, int max_new, int32_t *next, kv_err *err)
{
    const int32_t *ids = r->s->prompt.ids;
    int n_prompt = (int)r->s->prompt.n, V = r->cfg->n_vocab;
    model_hooks hooks = {r->Lr > 0 ? on_row : NULL, r->queries ? on_query : NULL, r};
    for (r->t0 = 0; r->t0 < n_prompt; r->t0 += RECORD_CHUNK) {
        int n = n_prompt - r->t0 < RECORD_CHUNK ? n_prompt - r->t0 : RECORD_CHUNK;
        int rc = model_forward(r->s->model, r->cache, ids + r->t0, n, MODEL_LOGITS_ALL,
                               r->logits, &hooks, err);
        if (rc)
            return rc;
        bool last_chunk = r->t0 + n == n_prompt;
        *next = last_chunk && max_new > 0 && kv_cache_next_pos(r->cache) < r->cfg->n_ctx
                    ? sampler_sample(r->s->sampler, r->logits + (size_t)(n - 1) * V) : -1;
        float logprob[RECORD_CHUNK], entropy[RECORD_CHUNK];
        /* each position's statistics alone, on every thread (a vocabulary of exps each) */
#pragma omp parallel for schedule(static)
        for (int c = 0; c < n; c++) {
            const int t = r->t0 + c;
            record_next_token_stats(r->logits + (size_t)c * V, V,
                                    t + 1 < n_prompt ? ids[t + 1] : *next, &logprob[c],
                                    &entropy[c]);
        }
        for (int c = 0; c < n; c++)
            if ((rc = append_step(r, c, ids[r->t0 + c], TRACE_PHASE_PROMPT, logprob[c],
                                  entropy[c], err)))
                return rc;
        progress_update(&r->bar, r->t0 + n, r->megabytes);
        if ((rc = check_stop(r, err)))
            return rc;
    }
    return 0;
}

/* (1)-(3) Generated tokens, one forward each, until a stop token, max_new or n_ctx. */
static int record_generation(recorder *r, int max_new, int32_t next, int *generated,
                             kv_err *err)
{
    model_hooks hooks = {r->Lr > 0 ? on_row : NULL, r->queries ? on_query : NULL, r};
    int V = r->cfg->n_vocab, rc = 0;
    for (*generated = 0; next >= 0 && !session_is_stop(r->s, next); (*generated)++) {
        r->t0 = kv_cache_next_pos(r->cache);
        if ((rc = model_forward(r->s->model, r->cache, &next, 1, MODEL_LOGITS_LAST, r->logits,
                                &hooks, err)))
            return rc;
        bool more = *generated + 1 < max_new && kv_cache_next_pos(r->cache) < r->cfg->n_ctx;
        int32_t following = more ? sampler_sample(r->s->sampler, r->logits) : -1;
        float logprob, entropy;
        record_next_token_stats(r->logits, V, following, &logprob, &entropy);
        if ((rc = append_step(r, 0, next, TRACE_PHASE_GENERATED, logprob, entropy, err)))
            return rc;
        progress_update(&r->bar, r->t0 + 1, r->megabytes);
        if ((rc = check_stop(r, err)))
            return rc;
        next = following;
    }
    return 0;
}

int record_trace(session *s, const session_options *so, const char *path,
                 const record_options *ro, record_result *res, kv_err *err)
{
    recorder r;
    memset(res, 0, sizeof *res);
    int rc = recorder_open(&r, s, so, path, ro, err);
    if (!rc) {
        double start = progress_now();
        if (ro->progress)
            progress_start(&r.bar, "record", r.T_cap, "tokens");
        int32_t next = -1;
        rc = record_prompt(&r, so->max_new, &next, err);
        if (!rc)
            rc = record_generation(&r, so->max_new, next, &res->generated, err);
        if (!rc)
            rc = writer_ready(&r, err);
        progress_finish(&r.bar);
        if (rc)   /* (4) complete stays 0 */
            res->steps = r.writer ? trace_writer_abort(r.writer) : 0;
        else   /* the writer thread may fail after the last append: close says so */
            rc = trace_writer_close(r.writer, &res->steps, err);
        if (rc && res->steps > 0)
            kv_err_prefix(err, "%s: %lld steps on disk, marked incomplete: ", path,
                          (long long)res->steps);
        else if (rc)
            kv_err_prefix(err, "%s: nothing recorded (the file is as it was): ", path);
        res->seconds = progress_now() - start;
    }
    res->prompt_tokens = (int)s->prompt.n;
    res->buffer_bytes = (size_t)RECORD_CHUNK * r.Lr * r.Hr * r.T_cap * r.row_esize;
    release(&r);
    return rc;
}
