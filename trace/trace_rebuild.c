/*
 * trace_rebuild.c — rows the trace does not store, rebuilt from its queries and keys
 * (trace_file.h, "rebuilt rows"; docs/TRACE_FORMAT.md, "Rebuilt rows").
 *
 * Row t of (layer, query head) is softmax(attn_scale · q_t · k_j) over the keys j the
 * layer's mask lets t see: t-W+1 .. t for a window W, else 0 .. t (with a softcap,
 * each score s becomes cap · tanh(s / cap) first).  It is computed by
 * model/attention.h, the forward pass's own functions, called as the recorder called
 * them: the prompt's rows a block at a time (one sgemm of the block's queries against
 * the keys; kvtrace record runs the prompt in blocks of 64 = TRACE_BATCH), generated
 * rows one at a time (one sgemv each), then the masked softmax of each row.  Rows
 * rebuilt in aligned blocks from f32 queries and keys are therefore bit for bit the
 * rows the forward pass computed.
 *
 * Like stored rows, a block comes in two halves: the fetch reads what it needs (the
 * keys the buffer does not hold yet, the block's queries) and needs the HDF5 lock;
 * the rebuild computes and runs on any thread.  The buffer keeps the keys of one
 * layer (K · T · D floats) while consecutive blocks of that layer advance, so each
 * key is read once per layer however many heads and blocks use it.
 */
#include "trace_file.h"

#include "attention.h"
#include "vec.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct trace_rebuild_buf {
    /* the keys held */
    int      li;            /* their layer; -1: none */
    int      K, T, D;       /* the shape they were allocated for */
    int     *have;          /* (K,) steps held per KV head */
    float   *keys;          /* (K, T, D) */
    /* the block fetched */
    int      ki, t0, n, window;
    int      prompt_len;
    float    scale, softcap;
    float   *q;             /* (n, D) */
    size_t   q_cap;         /* floats */
};

trace_rebuild_buf *trace_rebuild_buf_new(void)
{
    trace_rebuild_buf *b = calloc(1, sizeof *b);
    if (b)
        b->li = -1;
    return b;
}

void trace_rebuild_buf_free(trace_rebuild_buf *b)
{
    if (!b)
        return;
    free(b->have);
    free(b->keys);
    free(b->q);
    free(b);
}

/* Room for the keys of one layer of this trace. */
static int size_keys(trace_rebuild_buf *b, const trace *tr, kv_err *err)
{
    const trace_meta *m = trace_get_meta(tr);
    const int K = m->n_kv_heads_rec, T = (int)m->steps, D = m->header.head_dim;
    if (b->keys && b->K == K && b->T >= T && b->D == D)
        return KV_OK;
    free(b->keys);
    free(b->have);
    b->keys = malloc((size_t)K * (T > 0 ? T : 1) * D * sizeof *b->keys);
    b->have = calloc((size_t)K, sizeof *b->have);
    b->li = -1;
    b->K = K, b->T = T, b->D = D;
    if (b->keys && b->have)
        return KV_OK;
    return kv_errorf(err, KV_ENOMEM, "%s: no memory for the keys of a layer (%d x %d x %d "
                     "floats)", trace_path(tr), K, T, D);
}

int trace_fetch_inputs(trace *tr, int li, int hi, int64_t t0, int n, trace_rebuild_buf *b,
                       kv_err *err)
{
    const trace_meta *m = trace_get_meta(tr);
    const int ki = trace_kv_index_of_head(tr, hi);
    int rc = ki < 0 || li < 0 || li >= m->header.n_layers_rec
                 ? kv_errorf(err, KV_ERANGE, "%s: rebuilding rows: layer index %d / head "
                             "index %d out of range", trace_path(tr), li, hi)
                 : size_keys(b, tr, err);
    if (rc != KV_OK)
        return rc;
    if (b->li != li) {
        memset(b->have, 0, (size_t)b->K * sizeof *b->have);
        b->li = li;
    }
    const int need = (int)t0 + n, D = b->D;
    if (b->have[ki] < need) {
        rc = trace_read_kv(tr, li, ki, b->have[ki], need - b->have[ki],
                           b->keys + ((size_t)ki * b->T + b->have[ki]) * D, NULL, err);
        if (rc != KV_OK)
            return rc;
        b->have[ki] = need;
    }
    if (vec_reserve((void **)&b->q, sizeof *b->q, (size_t)n * D, &b->q_cap) != 0)
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for %d queries", trace_path(tr), n);
    if ((rc = trace_read_queries(tr, li, hi, t0, n, b->q, err)) != KV_OK)
        return rc;
    b->ki = ki, b->t0 = (int)t0, b->n = n;
    b->window = m->header.window[li];
    b->prompt_len = (int)m->prompt_len;
    b->scale = (float)m->header.attn_scale;
    b->softcap = (float)m->header.attn_softcap;
    return KV_OK;
}

/* One row's mask: a generated row's scores first (one sgemv, as the forward pass ran
 * it), then the cap and the masked softmax. */
static void finish_row(const trace_rebuild_buf *b, const float *K, int prompt_rows, int i,
                       float *row, int width)
{
    const int t = b->t0 + i, lo = b->window > 0 && t + 1 > b->window ? t + 1 - b->window : 0;
    if (i >= prompt_rows)
        attention_scores(row, 0, b->q + (size_t)i * b->D, b->D, K, 1, t + 1, b->D, b->scale);
    if (b->softcap > 0)
        attention_softcap(row + lo, (size_t)(t + 1 - lo), b->softcap);
    attention_softmax(row, lo, t + 1, width);
}

int trace_rebuild_rows(trace_rebuild_buf *b, float *out, size_t width, kv_err *err)
{
    if (width < (size_t)(b->t0 + b->n))
        return kv_errorf(err, KV_ERANGE, "rebuilding rows %d..%d: width %zu is less than "
                         "the %d keys of the last row", b->t0, b->t0 + b->n - 1, width,
                         b->t0 + b->n);
    const float *K = b->keys + (size_t)b->ki * b->T * b->D;
    const int end = b->t0 + b->n;
    const int prompt_rows = b->prompt_len <= b->t0 ? 0 : b->prompt_len >= end ? b->n
                                                        : b->prompt_len - b->t0;
    /* BLAS runs single-threaded, as inside the forward pass's parallel loop: OpenBLAS
     * splits a multi-threaded sgemv differently, which moves the last bits.  A caller
     * already in a parallel region (replay) rebuilds on its own thread. */
#pragma omp parallel if (!omp_in_parallel())
    {
#pragma omp single
        if (prompt_rows > 0)   /* the forward pass's block saw its own keys only */
            attention_scores(out, width, b->q, b->D, K, prompt_rows, b->t0 + prompt_rows,
                             b->D, b->scale);
#pragma omp for schedule(static)
        for (int i = 0; i < b->n; i++)
            finish_row(b, K, prompt_rows, i, out + (size_t)i * width, (int)width);
    }
    return KV_OK;
}
