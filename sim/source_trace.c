/*
 * source_trace.c — a replay source backed by an HDF5 trace (trace/trace_file.h).
 *
 * The reader converts fp16 to float32 itself and reads whole 64-row chunks of one
 * head when asked for t0 a multiple of TRACE_BATCH (the engine's block size).  It is
 * not thread-safe, so the source sets serial_io and the engine reads under one lock.
 */
#include "replay_source.h"

#include "trace_file.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct trace_source {
    replay_source src;
    trace        *tr;
    char         *path;         /* owned copy: name and src.path point into it */
    int          *kv_of_head;   /* (H,) */
    policy_entry *tokens;       /* (T,) */
} trace_source;

static int ts_read_rows(replay_source *src, int li, int hi, int t0, int n, float *out,
                        size_t width, kv_err *err)
{
    trace_source *s = src->impl;
    return trace_read_rows(s->tr, li, hi, t0, n, out, width, err);
}

static int ts_read_kv(replay_source *src, int li, int ki, int t0, int n, float *keys,
                      float *values, kv_err *err)
{
    trace_source *s = src->impl;
    return trace_read_kv(s->tr, li, ki, t0, n, keys, values, err);
}

static void ts_close(replay_source *src)
{
    trace_source *s = src->impl;
    trace_close(s->tr);
    free(s->path);
    free(s->kv_of_head);
    free(s->tokens);
    free(s);
}

static const replay_source_ops trace_source_ops = {ts_read_rows, ts_read_kv, ts_close};

/* The prompt is the leading run of phase-0 tokens. */
static int prompt_length(const trace_tokens *tok, int T)
{
    int n = 0;
    while (n < T && tok->phase[n] == TRACE_PHASE_PROMPT)
        n++;
    return n;
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
        s->kv_of_head = malloc((size_t)(H > 0 ? H : 1) * sizeof *s->kv_of_head);
        s->tokens = malloc((size_t)(T > 0 ? T : 1) * sizeof *s->tokens);
        s->path = strdup(path);
    }
    if (!s || !s->kv_of_head || !s->tokens || !s->path) {
        if (s)
            free(s->kv_of_head), free(s->tokens), free(s->path), free(s);
        trace_close(tr);
        kv_errorf(err, KV_ENOMEM, "%s: out of memory for %d tokens", path, T);
        return NULL;
    }
    s->tr = tr;
    for (int h = 0; h < H; h++)
        s->kv_of_head[h] = trace_kv_index_of_head(tr, h);
    for (int t = 0; t < T; t++)
        s->tokens[t] = (policy_entry){
            .position = t, .token = tok->id[t],
            .flags = tok->flags[t] | (tok->phase[t] == TRACE_PHASE_PROMPT ? POLICY_FLAG_PROMPT : 0),
            .key_norm = NAN};
    const char *base = strrchr(s->path, '/');
    s->src = (replay_source){
        .ops = &trace_source_ops, .name = base ? base + 1 : s->path, .path = s->path, .T = T,
        .complete = m->complete, .n_layers = m->header.n_layers_rec, .n_heads = H,
        .n_kv = m->n_kv_heads_rec, .layers = m->header.layers, .heads = m->header.heads,
        .kv_of_head = s->kv_of_head, .model_layers = m->header.n_layer,
        .head_dim = m->header.head_dim, .has_values = 1,
        .prompt_len = prompt_length(tok, T), .tokens = s->tokens, .serial_io = 1, .impl = s};
    return &s->src;
}
