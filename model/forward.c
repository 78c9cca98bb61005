/*
 * forward.c — the llama forward pass of model.h on a kv_cache, one call for any
 * number of new tokens.
 *
 * Read model_forward() first: it is the block of model.h step by step.  Everything
 * above it is a building block: RMSNorm, RoPE (and the re-rotation of kept keys that
 * live eviction's --reposition uses), matmul (8-bit dot products for one
 * token, dequantise-then-sgemm for a batch), SwiGLU, and attention, which is computed
 * per query head in blocks of ATT_ROWS query rows so that no T×T matrix is ever held
 * for all heads at once, and which shows each probability row to the hook.
 *
 * Parallelism: OpenBLAS threads its GEMMs; OpenMP spreads the matrix-vector products
 * over rows, the per-token steps over tokens, and attention over query heads (the
 * BLAS calls inside that loop run on the calling thread: OpenBLAS's OpenMP build does
 * not nest).  Row results never depend on the thread count in the one-token path.
 */
#include "model_impl.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ATT_ROWS        64          /* query rows per attention block */
#define GEMM_MIN_TOKENS 4           /* fewer tokens: one matrix-vector product each */
#define WBUF_FLOATS     (4 << 20)   /* dequantised weights per GEMM chunk (16 MB) */

/* ---- scratch ------------------------------------------------------------------------ */

static void *alloc_counted(size_t n, size_t *bytes)
{
    *bytes += n;
    return malloc(n);
}

/* Make room for n tokens and attention blocks over up to max_keys keys. */
static int scratch_reserve(model *m, int n, int max_keys, kv_err *err)
{
    model_scratch *s = &m->s;
    const model_config *c = &m->cfg;
    size_t threads = (size_t)omp_get_max_threads();
    size_t rows = (size_t)(n < ATT_ROWS ? n : ATT_ROWS);
    size_t need_scores = threads * rows * (size_t)max_keys;
    if (n <= s->cap_tokens && need_scores <= s->cap_scores)
        return 0;
    int cap = n > s->cap_tokens ? n : s->cap_tokens;
    size_t need = need_scores > s->cap_scores ? need_scores : s->cap_scores;
    model__scratch_free(s);
    size_t t = (size_t)cap, d = (size_t)c->n_embd, qd = (size_t)c->n_head * c->head_dim;
    size_t kvd = (size_t)c->n_head_kv * c->head_dim, ff = (size_t)c->n_ff, half = (size_t)c->n_rot / 2;
    size_t f = sizeof(float);
    s->x = alloc_counted(t * d * f, &s->bytes);
    s->xb = alloc_counted(t * d * f, &s->bytes);
    s->q = alloc_counted(t * qd * f, &s->bytes);
    s->att = alloc_counted(t * qd * f, &s->bytes);
    s->k = alloc_counted(t * kvd * f, &s->bytes);
    s->v = alloc_counted(t * kvd * f, &s->bytes);
    s->hb = alloc_counted(t * ff * f, &s->bytes);
    s->hb2 = alloc_counted(t * ff * f, &s->bytes);
    s->rope_cos = alloc_counted(t * half * f, &s->bytes);
    s->rope_sin = alloc_counted(t * half * f, &s->bytes);
    s->pos = alloc_counted(t * sizeof *s->pos, &s->bytes);
    s->rope_pos = alloc_counted(t * sizeof *s->rope_pos, &s->bytes);
    s->scores = alloc_counted(need * f, &s->bytes);
    s->wbuf = cap >= GEMM_MIN_TOKENS ? alloc_counted(WBUF_FLOATS * f, &s->bytes) : NULL;
    s->cap_tokens = cap;
    s->cap_scores = need;
    if (!s->x || !s->xb || !s->q || !s->att || !s->k || !s->v || !s->hb || !s->hb2 ||
        !s->rope_cos || !s->rope_sin || !s->pos || !s->rope_pos || !s->scores ||
        (cap >= GEMM_MIN_TOKENS && !s->wbuf)) {
        model__scratch_free(s);
        return kv_errorf(err, KV_ENOMEM, "out of memory for the activations of %d tokens", n);
    }
    return 0;
}

void model__scratch_free(model_scratch *s)
{
    void *bufs[] = {s->x, s->xb, s->q, s->att, s->k, s->v, s->hb, s->hb2,
                    s->rope_cos, s->rope_sin, s->pos, s->rope_pos, s->scores, s->wbuf};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        free(bufs[i]);
    *s = (model_scratch){0};
}

/* ---- neural-net blocks ------------------------------------------------------------- */

/* o = x / sqrt(mean(x²) + eps) · w, for n rows of d. */
static void rmsnorm(float *o, const float *x, const float *w, int n, int d, float eps)
{
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * d;
        float *ot = o + (size_t)t * d;
        float ss = 0.0f;
        for (int i = 0; i < d; i++)
            ss += xt[i] * xt[i];
        float r = 1.0f / sqrtf(ss / (float)d + eps);
        for (int i = 0; i < d; i++)
            ot[i] = w[i] * (xt[i] * r);
    }
}

/* out (n, rows) = x (n, cols) · Wᵀ.  One token reads the 8-bit blocks directly; a batch
 * dequantises WBUF_FLOATS worth of rows at a time and hands them to sgemm. */
static void matmul(model *m, float *out, const float *x, const qmatrix *w, int n)
{
    if (n < GEMM_MIN_TOKENS) {
        for (int t = 0; t < n; t++)
            model__matvec(out + (size_t)t * w->rows, w, x + (size_t)t * w->cols);
        return;
    }
    int chunk = WBUF_FLOATS / w->cols;
    for (int r0 = 0; r0 < w->rows; r0 += chunk) {
        int rows = w->rows - r0 < chunk ? w->rows - r0 : chunk;
        model__dequant_rows(m->s.wbuf, w, r0, rows);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, w->cols, 1.0f, x,
                    w->cols, m->s.wbuf, w->cols, 0.0f, out + r0, w->rows);
    }
}

/* θ_i = base^(−2i/n_rot), in float32 as HF transformers computes it: the one place
 * the frequencies come from, for the forward pass and for re-rotation alike. */
static float rope_inv_freq(const model_config *c, int i)
{
    return 1.0f / powf(c->rope_base, (float)(2 * i) / (float)c->n_rot);
}

/* cos and sin of angle p · θ_i for p = pos0 .. pos0 + n - 1: the positions the call's
 * tokens take in the stream at hand. */
static void rope_tables(model_scratch *s, const model_config *c, int pos0, int n)
{
    int half = c->n_rot / 2;
    for (int t = 0; t < n; t++) {
        s->rope_pos[t] = pos0 + t;
        for (int i = 0; i < half; i++) {
            float angle = (float)(pos0 + t) * rope_inv_freq(c, i);
            s->rope_cos[(size_t)t * half + i] = cosf(angle);
            s->rope_sin[(size_t)t * half + i] = sinf(angle);
        }
    }
    s->rope_pos0 = pos0;
}

/* Rotate pair i of one head vector by the angle whose cos and sin are cs, sn: NORMAL
 * pairs (2i, 2i+1), NEOX pairs (i, i + n_rot/2). */
static inline void rope_pair(float *x, int i, float cs, float sn, const model_config *c)
{
    const int normal = c->rope == MODEL_ROPE_NORMAL;
    const int stride = normal ? 2 : 1, partner = normal ? 1 : c->n_rot / 2;
    float a = x[i * stride], b = x[i * stride + partner];
    x[i * stride] = a * cs - b * sn;
    x[i * stride + partner] = a * sn + b * cs;
}

/* Every pair of one head vector; dimensions past n_rot are left as they are. */
static void rope_head(float *x, const float *cs, const float *sn, const model_config *c)
{
    for (int i = 0; i < c->n_rot / 2; i++)
        rope_pair(x, i, cs[i], sn[i], c);
}

/* Rotate heads h0 .. h1-1 of n rows of n_heads · head_dim by the current tables. */
static void rope(float *v, int n, int n_heads, int h0, int h1, const model_scratch *s,
                 const model_config *c)
{
    int half = c->n_rot / 2, hd = c->head_dim;
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++)
        for (int h = h0; h < h1; h++)
            rope_head(v + ((size_t)t * n_heads + h) * hd, s->rope_cos + (size_t)t * half,
                      s->rope_sin + (size_t)t * half, c);
}

void model_rope_shift(const model *m, float *x, int n, int delta)
{
    const model_config *c = &m->cfg;
    /* frequency-major: one cos and sin per frequency, no table to hold */
    for (int i = 0; i < c->n_rot / 2; i++) {
        float angle = (float)delta * rope_inv_freq(c, i), cs = cosf(angle), sn = sinf(angle);
        for (int j = 0; j < n; j++)
            rope_pair(x + (size_t)j * c->head_dim, i, cs, sn, c);
    }
}

void model_cache_reposition(const model *m, kv_cache *cache, int layer, int kv_head)
{
    float *keys = kv_cache__keys_rw(cache, layer, kv_head);
    int32_t *pos = kv_cache__positions_rw(cache, layer, kv_head);
    const int n = kv_cache_size(cache, layer, kv_head), hd = m->cfg.head_dim;
    /* Removal shifts whole runs of slots by the same amount: one shift per run. */
    for (int i = 0, run; i < n; i += run) {
        const int delta = i - pos[i];
        for (run = 1; i + run < n && i + run - pos[i + run] == delta; run++)
            pos[i + run] = i + run;
        pos[i] = i;
        if (delta)
            model_rope_shift(m, keys + (size_t)i * hd, run, delta);
    }
}

/* hb = silu(hb) ⊙ hb2 */
static void swiglu(float *hb, const float *hb2, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 4096)
    for (size_t i = 0; i < n; i++)
        hb[i] = hb[i] / (1.0f + expf(-hb[i])) * hb2[i];
}

static void residual(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void softmax(float *x, int n)
{
    float max = x[0], sum = 0.0f;
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++)
        sum += x[i] = expf(x[i] - max);
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

/* ---- attention --------------------------------------------------------------------- */

/* What one head's attention needs to know about the call. */
typedef struct head_job {
    const model_config *c;
    const model_scratch *s;
    const kv_cache     *cache;
    const model_hooks  *hooks;
    int                 layer, n;   /* n: the call's new tokens */
} head_job;

/* Scores (rows, n_keys) = Q·Kᵀ / sqrt(hd) for one block of one head's query rows. */
static void block_scores(float *sc, const float *q, int ld, const float *K, int rows,
                         int n_keys, int hd)
{
    float scale = 1.0f / sqrtf((float)hd);
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n_keys, hd, scale, K, hd, q, 1, 0.0f, sc, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, hd, scale, q, ld,
                    K, hd, 0.0f, sc, n_keys);
}

/* Out (rows, hd) = P·V for one block. */
static void block_output(float *out, int ld, const float *p, const float *V, int rows,
                         int n_keys, int hd)
{
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, n_keys, hd, 1.0f, V, hd, p, 1, 0.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_keys, 1.0f, p,
                    n_keys, V, hd, 0.0f, out, ld);
}

/* Query head h: every new row attends to the stream's slots up to its own entry (the
 * stream held n_old entries before this call, so row r sees n_old + r + 1 of them). */
static void attend_head(const head_job *j, int h, float *sc)
{
    const model_config *c = j->c;
    int hd = c->head_dim, ld = c->n_head * hd, kvh = h / (c->n_head / c->n_head_kv);
    const float *K = kv_cache_keys(j->cache, j->layer, kvh);
    const float *V = kv_cache_values(j->cache, j->layer, kvh);
    int n_old = kv_cache_size(j->cache, j->layer, kvh) - j->n;
    const model_hooks *hk = j->hooks;
    for (int r0 = 0; r0 < j->n; r0 += ATT_ROWS) {
        int rows = j->n - r0 < ATT_ROWS ? j->n - r0 : ATT_ROWS, n_keys = n_old + r0 + rows;
        const float *q = j->s->q + (size_t)r0 * ld + (size_t)h * hd;
        for (int i = 0; hk && hk->query && i < rows; i++)
            hk->query(hk->ctx, j->layer, h, j->s->pos[r0 + i], q + (size_t)i * ld, hd);
        block_scores(sc, q, ld, K, rows, n_keys, hd);
        for (int i = 0; i < rows; i++) {
            float *row = sc + (size_t)i * n_keys;
            int len = n_old + r0 + i + 1;              /* causal: keys up to its own */
            softmax(row, len);
            memset(row + len, 0, (size_t)(n_keys - len) * sizeof *row);
            if (hk && hk->attn_row)
                hk->attn_row(hk->ctx, j->layer, h, j->s->pos[r0 + i], row, len);
        }
        block_output(j->s->att + (size_t)r0 * ld + (size_t)h * hd, ld, sc, V, rows, n_keys, hd);
    }
}

/* att = softmax(Q·Kᵀ/sqrt(hd) + causal mask)·V for every query head of layer l. */
static void attention(model *m, const kv_cache *cache, int l, int n, const model_hooks *hooks)
{
    head_job job = {.c = &m->cfg, .s = &m->s, .cache = cache, .hooks = hooks, .layer = l, .n = n};
    size_t per_thread = m->s.cap_scores / (size_t)omp_get_max_threads();
    /* static: a thread takes consecutive heads, so a GQA group's keys and values are
     * read by one core while they are still in its cache */
#pragma omp parallel for schedule(static)
    for (int h = 0; h < m->cfg.n_head; h++)
        attend_head(&job, h, m->s.scores + (size_t)omp_get_thread_num() * per_thread);
}

/* RoPE, then the new keys and values join every stream of layer l.  One KV head (and
 * its group of query heads) at a time, at the positions its stream gives the new
 * tokens (kv_cache_rope_pos: the token's index, or the stream's size under compact
 * positions); the tables are recomputed only when those change, so a plain cache
 * computes them once per call.  The streams were reserved, so appending cannot fail. */
static void rope_append(model *m, kv_cache *cache, int l, int n)
{
    const model_config *c = &m->cfg;
    model_scratch *s = &m->s;
    const int G = c->n_head / c->n_head_kv;
    size_t kvd = (size_t)c->n_head_kv * c->head_dim;
    for (int h = 0; h < c->n_head_kv; h++) {
        int pos0 = kv_cache_rope_pos(cache, l, h);
        if (pos0 != s->rope_pos0)
            rope_tables(s, c, pos0, n);
        rope(s->q, n, c->n_head, h * G, (h + 1) * G, s, c);
        rope(s->k, n, c->n_head_kv, h, h + 1, s, c);
        size_t off = (size_t)h * c->head_dim;
        kv_cache_append(cache, l, h, s->k + off, s->v + off, kvd, s->rope_pos, n, NULL);
    }
}

/* ---- the forward pass -------------------------------------------------------------- */

static int check_call(const model *m, const kv_cache *cache, const int32_t *tokens, int n,
                      kv_err *err)
{
    const model_config *c = &m->cfg;
    if (kv_cache_n_layer(cache) != c->n_layer || kv_cache_n_kv_head(cache) != c->n_head_kv ||
        kv_cache_head_dim(cache) != c->head_dim)
        return kv_errorf(err, KV_EFORMAT, "model_forward: the cache is not shaped for this "
                         "model (use model_cache_new)");
    int pos0 = kv_cache_next_pos(cache);
    if (n < 1 || pos0 + n > c->n_ctx)
        return kv_errorf(err, KV_ERANGE, "model_forward: %d tokens at position %d exceed "
                         "the context of %d positions", n, pos0, c->n_ctx);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->n_vocab)
            return kv_errorf(err, KV_ERANGE, "model_forward: token %d is id %d, expected "
                             "0 .. %d", t, tokens[t], c->n_vocab - 1);
    return 0;
}

/* The longest stream of any layer once n more entries have joined it. */
static int max_keys_after(const kv_cache *cache, int n)
{
    int max = 0;
    for (int l = 0; l < kv_cache_n_layer(cache); l++)
        for (int h = 0; h < kv_cache_n_kv_head(cache); h++) {
            int k = kv_cache_size(cache, l, h);
            max = k > max ? k : max;
        }
    return max + n;
}

int model_forward(model *m, kv_cache *cache, const int32_t *tokens, int n,
                  model_logits which, float *logits, const model_hooks *hooks, kv_err *err)
{
    const model_config *c = &m->cfg;
    int rc = check_call(m, cache, tokens, n, err);
    if (rc || (rc = scratch_reserve(m, n, max_keys_after(cache, n), err)) ||
        (rc = kv_cache_reserve(cache, n, err)))   /* so no append below can fail */
        return rc;
    model_scratch *s = &m->s;
    int d = c->n_embd;
    size_t nd = (size_t)n * d;

    /* token embeddings and positions; the RoPE tables follow per stream (rope_append) */
    for (int t = 0; t < n; t++) {
        model__qmatrix_row(s->x + (size_t)t * d, &m->tok_embd, tokens[t]);
        s->pos[t] = kv_cache_next_pos(cache) + t;
    }
    s->rope_pos0 = -1;   /* no tables for this call's n yet */

    for (int l = 0; l < c->n_layer; l++) {
        const model_layer *w = &m->layers[l];

        /* attention: x += Wo · Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n), n = RMSNorm(x)·attn_norm */
        rmsnorm(s->xb, s->x, w->attn_norm, n, d, c->rms_eps);
        matmul(m, s->q, s->xb, &w->wq, n);
        matmul(m, s->k, s->xb, &w->wk, n);
        matmul(m, s->v, s->xb, &w->wv, n);
        rope_append(m, cache, l, n);
        attention(m, cache, l, n, hooks);
        matmul(m, s->xb, s->att, &w->wo, n);
        residual(s->x, s->xb, nd);

        /* feed-forward: x += Wdown · (silu(Wgate·m) ⊙ Wup·m), m = RMSNorm(x)·ffn_norm */
        rmsnorm(s->xb, s->x, w->ffn_norm, n, d, c->rms_eps);
        matmul(m, s->hb, s->xb, &w->w_gate, n);
        matmul(m, s->hb2, s->xb, &w->w_up, n);
        swiglu(s->hb, s->hb2, (size_t)n * c->n_ff);
        matmul(m, s->xb, s->hb, &w->w_down, n);
        residual(s->x, s->xb, nd);
    }
    kv_cache_advance(cache, n);

    /* logits = Wout · (RMSNorm(x) · output_norm), for the last token or for all */
    if (which == MODEL_LOGITS_NONE)
        return 0;
    int first = which == MODEL_LOGITS_LAST ? n - 1 : 0, rows = n - first;
    rmsnorm(s->xb, s->x + (size_t)first * d, m->output_norm, rows, d, c->rms_eps);
    matmul(m, logits, s->xb, &m->output, rows);
    return 0;
}
