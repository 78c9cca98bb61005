/*
 * trace_verify.c — `kvtrace verify TRACE.h5`'s checks of every row of a trace.
 *
 * Checks, each counted and reported (docs/TRACE_FORMAT.md, "Verification"):
 *   (1) every row (layer, head, t), stored or rebuilt, has non-negative finite entries
 *       over the keys its layer's mask lets it see, zeros elsewhere (above the
 *       diagonal, before a window), and sums to 1 within trace_row_sum_tolerance;
 *   (2) the token arrays are consistent: ids within the vocabulary, only the three
 *       flag bits, phase 0 then 1, positions increasing, log-probabilities <= 0,
 *       entropies >= 0;
 *   (3) with queries recorded, every row equals softmax(attn_scale * q_t . k_j) over
 *       the keys it gives weight to, computed here in double precision, within
 *       recompute_tolerance: for stored rows a check of the recording, for rebuilt
 *       rows of the rebuild (trace_rebuild.c);
 *   (4) every key, value and query is read (so every chunk is decompressed) and is
 *       finite.
 * Failures go to stderr as they are found (the first REPORT_MAX of each check), the
 * summary to `out`.  Memory: one row block (64 x T floats), one head's keys (T x D),
 * and for rebuilt rows the trace's rebuild buffer (one layer's keys).
 */
#include "trace_file.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_MAX 10   /* failures printed per check; all are counted */

typedef struct check {
    const char *name;
    long long   checked, failed;
    double      worst;          /* largest deviation seen */
} check;

typedef struct verify {
    trace  *tr;
    const trace_meta *m;
    int64_t T;
    check   sums, causal, tokens, recompute, vectors;
    float  *rows;               /* (64, T) row block */
    float  *keys;               /* (T, D) one KV head */
    float  *queries;            /* (64, D) */
    double *scores;             /* (T,) */
} verify;

/* Count a failure; print the first REPORT_MAX of each check. */
static void fail(check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(check *c, const char *fmt, ...)
{
    if (c->failed++ < REPORT_MAX) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "verify: %s: ", c->name);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
}

/* ---------------------------------------------------------------- (1) rows ------- */

/* The tolerance of a row: stored rows carry the dtype's rounding, rebuilt ones f32. */
static trace_dtype row_dtype(const verify *v, int li, int hi)
{
    return trace_rows_stored(v->tr, li, hi) ? v->m->options.dtype : TRACE_F32;
}

static void check_row(verify *v, int li, int hi, int64_t t, const float *row)
{
    const trace_header *h = &v->m->header;
    const int64_t W = h->window[li], lo = W > 0 && t + 1 > W ? t + 1 - W : 0;
    double sum = 0, tol = trace_row_sum_tolerance(row_dtype(v, li, hi), t);
    int bad_entry = 0, above = 0;
    for (int64_t j = lo; j <= t; j++) {
        bad_entry |= !(row[j] >= 0 && row[j] <= 1 + tol);   /* also catches NaN */
        sum += row[j];
    }
    for (int64_t j = 0; j < lo; j++)
        above |= row[j] != 0;
    for (int64_t j = t + 1; j < v->T; j++)
        above |= row[j] != 0;
    v->sums.checked++;
    v->causal.checked++;
    double dev = fabs(sum - 1);
    if (dev > v->sums.worst)
        v->sums.worst = dev;
    if (bad_entry || !(dev <= tol))
        fail(&v->sums, "layer %d head %d step %lld: row sums to %.7g%s, expected 1 +- %.2g",
             h->layers[li], h->heads[hi], (long long)t, sum,
             bad_entry ? " with an entry outside [0, 1] or not finite" : "", tol);
    if (above)
        fail(&v->causal, "layer %d head %d step %lld: non-zero entry outside keys %lld..%lld",
             h->layers[li], h->heads[hi], (long long)t, (long long)lo, (long long)t);
}

static int check_rows(verify *v, kv_err *err)
{
    const trace_header *h = &v->m->header;
    for (int li = 0; li < h->n_layers_rec; li++)
        for (int hi = 0; hi < h->n_heads_rec; hi++)
            for (int64_t t0 = 0; t0 < v->T; t0 += TRACE_BATCH) {
                int n = v->T - t0 < TRACE_BATCH ? (int)(v->T - t0) : TRACE_BATCH;
                int rc = trace_rows(v->tr, li, hi, t0, n, v->rows, (size_t)v->T, err);
                if (rc < 0)
                    return rc;
                for (int i = 0; i < n; i++)
                    check_row(v, li, hi, t0 + i, v->rows + (size_t)i * v->T);
            }
    return KV_OK;
}

/* ---------------------------------------------------------------- (2) tokens ----- */

static void check_tokens(verify *v)
{
    const trace_tokens *tk = trace_get_tokens(v->tr);
    const int vocab = v->m->header.vocab_size;
    for (int64_t t = 0; t < v->T; t++) {
        v->tokens.checked++;
        if (tk->id[t] < 0 || (vocab > 0 && tk->id[t] >= vocab))
            fail(&v->tokens, "step %lld: token id %d outside the vocabulary 0..%d",
                 (long long)t, tk->id[t], vocab - 1);
        if (tk->flags[t] & ~(TRACE_TOKEN_SPECIAL | TRACE_TOKEN_PUNCT | TRACE_TOKEN_SPACE))
            fail(&v->tokens, "step %lld: flags 0x%x use undefined bits", (long long)t,
                 tk->flags[t]);
        if (tk->phase[t] > 1 || (t && tk->phase[t] < tk->phase[t - 1]))
            fail(&v->tokens, "step %lld: phase %d, expected 0 (prompt) then 1 (generated)",
                 (long long)t, tk->phase[t]);
        if (tk->position[t] < 0 || (t && tk->position[t] <= tk->position[t - 1]))
            fail(&v->tokens, "step %lld: position %d, expected increasing from 0",
                 (long long)t, tk->position[t]);
        if (tk->logprob_next[t] > 1e-6f || tk->entropy_next[t] < 0)
            fail(&v->tokens, "step %lld: logprob_next %g / entropy_next %g, expected <= 0 "
                 "/ >= 0 (or NaN)", (long long)t, tk->logprob_next[t], tk->entropy_next[t]);
    }
}

/* ---------------------------------------------------------------- (3) recompute -- */

/* Bound on |p - softmax(s)| when each logit may be off by delta (inputs rounded to
 * the dtype, the model's f32 dot products): e^(2 delta) - 1 relative to p <= 1, plus
 * the stored p's own rounding and the f32 softmax error. */
static double recompute_tolerance(trace_dtype dtype, double delta, int64_t t)
{
    double stored = dtype == TRACE_F16 ? 0x1p-11 + 0x1p-25 : 0x1p-24;
    return expm1(2 * (delta < 20 ? delta : 20)) + stored + (double)(t + 2) * 0x1p-24;
}

/* Softmax over the keys the recorded row gives weight to: that support is where the
 * model did not mask (a sliding window, say); entries that underflowed to zero carry
 * less than 2^-24 each. */
static void recompute_row(verify *v, int li, int hi, int64_t t, const float *q,
                          const float *row)
{
    const int D = v->m->header.head_dim;
    const double scale = v->m->header.attn_scale;
    const double eps_in = (v->m->options.qk_dtype == TRACE_F16 ? 0x1p-10 : 0x1p-23) +
                          D * 0x1p-24;
    double mx = -INFINITY, sum = 0, delta = 0, worst = 0;
    for (int64_t j = 0; j <= t; j++) {
        double s = 0, mag = 0;
        for (int d = 0; d < D; d++) {
            s += (double)q[d] * v->keys[j * D + d];
            mag += fabs((double)q[d] * v->keys[j * D + d]);
        }
        v->scores[j] = row[j] > 0 ? s * scale : -INFINITY;
        if (row[j] > 0 && mag * scale * eps_in > delta)
            delta = mag * scale * eps_in;
        if (v->scores[j] > mx)
            mx = v->scores[j];
    }
    for (int64_t j = 0; j <= t; j++)
        sum += v->scores[j] = exp(v->scores[j] - mx);
    for (int64_t j = 0; j <= t; j++)
        if (fabs(v->scores[j] / sum - row[j]) > worst)
            worst = fabs(v->scores[j] / sum - row[j]);
    double tol = recompute_tolerance(row_dtype(v, li, hi), delta, t);
    v->recompute.checked++;
    if (worst > v->recompute.worst)
        v->recompute.worst = worst;
    if (!(worst <= tol))
        fail(&v->recompute, "layer %d head %d step %lld: row differs from softmax(q.k) by "
             "%.3g, tolerance %.3g", v->m->header.layers[li], v->m->header.heads[hi],
             (long long)t, worst, tol);
}

static int recompute_head(verify *v, int li, int hi, kv_err *err)
{
    const int D = v->m->header.head_dim;
    int ki = trace_kv_index_of_head(v->tr, hi);
    int rc = trace_read_kv(v->tr, li, ki, 0, (int)v->T, v->keys, NULL, err);
    for (int64_t t0 = 0; rc == KV_OK && t0 < v->T; t0 += TRACE_BATCH) {
        int n = v->T - t0 < TRACE_BATCH ? (int)(v->T - t0) : TRACE_BATCH;
        rc = trace_rows(v->tr, li, hi, t0, n, v->rows, (size_t)v->T, err);
        if (rc == KV_OK)
            rc = trace_read_queries(v->tr, li, hi, t0, n, v->queries, err);
        for (int i = 0; rc == KV_OK && i < n; i++)
            recompute_row(v, li, hi, t0 + i, v->queries + (size_t)i * D,
                          v->rows + (size_t)i * v->T);
    }
    return rc;
}

static int check_recompute(verify *v, kv_err *err)
{
    const trace_header *h = &v->m->header;
    int rc = KV_OK;
    for (int li = 0; rc == KV_OK && li < h->n_layers_rec; li++)
        for (int hi = 0; rc == KV_OK && hi < h->n_heads_rec; hi++)
            rc = recompute_head(v, li, hi, err);
    return rc;
}

/* ---------------------------------------------------------------- (4) vectors ---- */

static void check_finite(verify *v, const char *what, int li, int head, const float *x,
                         int64_t n)
{
    const int D = v->m->header.head_dim;
    for (int64_t t = 0; t < n; t++) {
        int bad = 0;
        for (int d = 0; d < D; d++)
            bad |= !isfinite(x[t * D + d]);
        v->vectors.checked++;
        if (bad)
            fail(&v->vectors, "layer %d head %d step %lld: a %s that is not finite",
                 v->m->header.layers[li], head, (long long)t, what);
    }
}

/* Every key and value of every KV head, and every query: each chunk is decoded. */
static int check_vectors(verify *v, kv_err *err)
{
    const trace_header *h = &v->m->header;
    int rc = KV_OK;
    for (int li = 0; rc == KV_OK && li < h->n_layers_rec; li++) {
        for (int ki = 0; rc == KV_OK && ki < v->m->n_kv_heads_rec; ki++) {
            rc = trace_read_kv(v->tr, li, ki, 0, (int)v->T, v->keys, NULL, err);
            if (rc == KV_OK)
                check_finite(v, "key", li, v->m->kv_heads[ki], v->keys, v->T);
            if (rc == KV_OK)
                rc = trace_read_kv(v->tr, li, ki, 0, (int)v->T, NULL, v->keys, err);
            if (rc == KV_OK)
                check_finite(v, "value", li, v->m->kv_heads[ki], v->keys, v->T);
        }
        for (int hi = 0; rc == KV_OK && v->m->options.record_queries && hi < h->n_heads_rec;
             hi++) {
            rc = trace_read_queries(v->tr, li, hi, 0, (int)v->T, v->keys, err);
            if (rc == KV_OK)
                check_finite(v, "query", li, h->heads[hi], v->keys, v->T);
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- driver --------- */

static void report(FILE *out, const check *c, const char *what)
{
    fprintf(out, "  %-10s %lld %s checked, %lld failed", c->name, c->checked, what, c->failed);
    if (c->worst > 0)
        fprintf(out, ", largest deviation %.3g", c->worst);
    fprintf(out, "\n");
}

static int verify_alloc(verify *v, kv_err *err)
{
    const size_t T = (size_t)(v->T > 0 ? v->T : 1), D = (size_t)v->m->header.head_dim;
    v->rows = malloc(TRACE_BATCH * T * sizeof *v->rows);
    v->keys = malloc(T * D * sizeof *v->keys);
    v->queries = malloc(TRACE_BATCH * D * sizeof *v->queries);
    v->scores = malloc(T * sizeof *v->scores);
    if (v->rows && v->keys && v->queries && v->scores)
        return KV_OK;
    return kv_errorf(err, KV_ENOMEM, "%s: no memory for %zu steps", trace_path(v->tr), T);
}

static void verify_free(verify *v)
{
    free(v->rows);
    free(v->keys);
    free(v->queries);
    free(v->scores);
    trace_close(v->tr);
}

static int run_checks(verify *v, kv_err *err)
{
    int rc = verify_alloc(v, err);
    if (rc == KV_OK && v->T > 0)
        rc = check_vectors(v, err);
    if (rc == KV_OK)
        rc = check_rows(v, err);
    if (rc == KV_OK)
        check_tokens(v);
    if (rc == KV_OK && v->m->options.record_queries)
        rc = check_recompute(v, err);
    return rc;
}

int trace_verify(const char *path, FILE *out, kv_err *err)
{
    verify v = {.sums = {"row sums", 0, 0, 0}, .causal = {"causality", 0, 0, 0},
                .tokens = {"tokens", 0, 0, 0}, .recompute = {"recompute", 0, 0, 0},
                .vectors = {"vectors", 0, 0, 0}};
    if (!(v.tr = trace_open(path, err)))
        return err && err->code ? err->code : KV_EIO;
    v.m = trace_get_meta(v.tr);
    v.T = v.m->steps;
    int rc = run_checks(&v, err);
    if (rc < 0) {
        verify_free(&v);
        return rc;
    }
    fprintf(out, "%s: %lld steps%s, %d layers x %d heads, rows %s, %s (queries and keys "
            "%s)\n", path, (long long)v.T, v.m->complete ? "" : " (incomplete: truncated)",
            v.m->header.n_layers_rec, v.m->header.n_heads_rec,
            v.m->options.rows == TRACE_ROWS_ALL ? "stored"
            : v.m->options.rows == TRACE_ROWS_NONE ? "rebuilt" : "partly stored",
            trace_dtype_name(v.m->options.dtype), trace_dtype_name(v.m->options.qk_dtype));
    report(out, &v.vectors, "vectors");
    report(out, &v.sums, "rows");
    report(out, &v.causal, "rows");
    report(out, &v.tokens, "tokens");
    if (v.m->options.record_queries)
        report(out, &v.recompute, "rows");
    else
        fprintf(out, "  recompute  skipped: no queries recorded\n");
    long long failed = v.sums.failed + v.causal.failed + v.tokens.failed + v.recompute.failed +
                       v.vectors.failed;
    /* A truncated trace can pass every row check and still be no whole recording. */
    fprintf(out, "verify: %s\n", failed ? "FAILED" : v.m->complete ? "ok"
                                                   : "rows ok, but the trace is incomplete");
    const int complete = v.m->complete;
    verify_free(&v);
    if (failed)
        return kv_errorf(err, KV_EFORMAT, "%s: %lld checks failed", path, failed);
    return complete ? KV_OK : kv_errorf(err, KV_EFORMAT, "%s: the trace is incomplete", path);
}
