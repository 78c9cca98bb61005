/*
 * forward.c — the forward pass of model.h on a kv_cache, one call for any number of
 * new tokens.
 *
 * Read model_forward() first, then attention_block() and ffn_block(): they are the
 * block of model.h step by step, with the architecture's switches.  Everything above
 * them is a building block: RMSNorm and LayerNorm, RoPE per layer geometry (and the
 * re-rotation of kept keys that live eviction's --reposition uses), matmul (dot
 * products on the GGUF's blocks for one token, gemm.c for a batch), the gated and
 * plain activations, and attention, which is computed per query head in blocks of ATT_ROWS
 * query rows so that no T×T matrix is ever held for all heads at once, masks a
 * sliding layer's keys outside its window, and shows each probability row to the hook.
 *
 * Parallelism: OpenMP spreads a batch's GEMM over groups of weight rows, the
 * matrix-vector products over rows, the per-token steps over tokens, and attention over
 * query heads (or, with no hook, over (head, block) pairs); every BLAS call (decode's
 * sgemv) runs on its calling thread (OpenBLAS's OpenMP build does not nest).  No
 * result depends on how the work is split (gemm.c computes each element the same way
 * in any tile), so every bit of every result is the same for any thread count: a trace
 * is a function of the model and the prompt.
 */
#include "model_impl.h"

#include "attention.h"
#include "gemm.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ATT_ROWS        64          /* query rows per attention block */
#define GEMM_MIN_TOKENS 4           /* fewer tokens: one matrix-vector product each */

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
    int max_cols = c->n_embd > c->n_ff ? c->n_embd : c->n_ff;
    max_cols = max_cols > c->n_head * c->head_dim ? max_cols : c->n_head * c->head_dim;
    size_t need_panels = threads * gemm_panel_floats(max_cols);
    /* rows of kt are padded to an odd number of cache lines: a power-of-two stride
     * would put a block's rows of keys in the same cache sets */
    size_t need_kt = n > 1 ? (size_t)c->n_head_kv * c->head_dim * ((size_t)max_keys / 32 * 32 + 48)
                           : 0;
    if (n <= s->cap_tokens && need_scores <= s->cap_scores && need_panels <= s->cap_panels &&
        need_kt <= s->cap_kt)
        return 0;
    int cap = n > s->cap_tokens ? n : s->cap_tokens;
    size_t need = need_scores > s->cap_scores ? need_scores : s->cap_scores;
    need_kt = need_kt > s->cap_kt ? need_kt : s->cap_kt;
    model__scratch_free(s);
    size_t t = (size_t)cap, d = (size_t)c->n_embd, qd = (size_t)c->n_head * c->head_dim;
    size_t kvd = (size_t)c->n_head_kv * c->head_dim, ff = (size_t)c->n_ff, half = (size_t)c->n_rot / 2;
    size_t f = sizeof(float);
    s->x = alloc_counted(t * d * f, &s->bytes);
    s->xb = alloc_counted(t * d * f, &s->bytes);
    s->xb2 = alloc_counted(t * d * f, &s->bytes);
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
    const int gemm = cap >= GEMM_MIN_TOKENS;
    s->xpack = gemm ? alloc_counted(gemm_pack_floats(cap, max_cols) * f, &s->bytes) : NULL;
    s->panels = gemm ? alloc_counted(need_panels * f, &s->bytes) : NULL;
    s->cap_tokens = cap;
    s->cap_scores = need;
    s->cap_panels = gemm ? need_panels : 0;
    s->kt = need_kt ? alloc_counted(need_kt * f, &s->bytes) : NULL;
    s->cap_kt = need_kt;
    s->ld_kt = need_kt ? need_kt / ((size_t)c->n_head_kv * c->head_dim) : 0;
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->att || !s->k || !s->v || !s->hb || !s->hb2 ||
        !s->rope_cos || !s->rope_sin || !s->pos || !s->rope_pos || !s->scores ||
        (gemm && (!s->xpack || !s->panels)) || (need_kt && !s->kt)) {
        model__scratch_free(s);
        return kv_errorf(err, KV_ENOMEM, "out of memory for the activations of %d tokens", n);
    }
    return 0;
}

void model__scratch_free(model_scratch *s)
{
    void *bufs[] = {s->x, s->xb, s->xb2, s->q, s->att, s->k, s->v, s->hb, s->hb2,
                    s->rope_cos, s->rope_sin, s->pos, s->rope_pos, s->scores, s->xpack,
                    s->panels, s->kt};
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

/* out_i (n, ldo_i) = x (n, cols) · W_iᵀ for the n_jobs products of one input.  A batch
 * goes through gemm.c, whose results do not depend on the thread count, packing x once
 * for all the jobs; one token reads the weight blocks directly, the jobs in one parallel
 * region (model__matvec_many: one barrier, not n_jobs), the same results as one by one. */
static void matmuls(model *m, const float *x, int n, const gemm_job *jobs, int n_jobs)
{
    if (n >= GEMM_MIN_TOKENS) {
        gemm(jobs, n_jobs, x, n, m->s.xpack, m->s.panels, 0);
        return;
    }
    for (int t = 0; t < n; t++)
        for (int i0 = 0; i0 < n_jobs; i0 += MATVEC_MANY) {
            const int count = n_jobs - i0 < MATVEC_MANY ? n_jobs - i0 : MATVEC_MANY;
            float *out[MATVEC_MANY];
            const qmatrix *w[MATVEC_MANY];
            for (int k = 0; k < count; k++) {
                out[k] = jobs[i0 + k].out + (size_t)t * jobs[i0 + k].ldo;
                w[k] = jobs[i0 + k].w;
            }
            model__matvec_many(out, w, count, x + (size_t)t * w[0]->cols);
        }
}

static void matmul(model *m, float *out, const float *x, const qmatrix *w, int n)
{
    matmuls(m, x, n, &(gemm_job){out, w->rows, w}, 1);
}

/* o = (x − mean) / sqrt(var + eps) · w + b, for n rows of d (LayerNorm, biased var). */
static void layernorm(float *o, const float *x, const float *w, const float *b, int n, int d,
                      float eps)
{
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * d;
        float *ot = o + (size_t)t * d;
        float mean = 0.0f, var = 0.0f;
        for (int i = 0; i < d; i++)
            mean += xt[i];
        mean /= (float)d;
        for (int i = 0; i < d; i++)
            var += (xt[i] - mean) * (xt[i] - mean);
        float r = 1.0f / sqrtf(var / (float)d + eps);
        for (int i = 0; i < d; i++)
            ot[i] = (xt[i] - mean) * r * w[i] + b[i];
    }
}

/* The model's norm: RMSNorm, or LayerNorm when a bias is given. */
static void norm(float *o, const float *x, const float *w, const float *b, int n, int d,
                 float eps)
{
    if (b)
        layernorm(o, x, w, b, n, d, eps);
    else
        rmsnorm(o, x, w, n, d, eps);
}

/* x[t] += b for n rows of width (b NULL: nothing). */
static void add_bias(float *x, const float *b, int n, int width)
{
    for (int t = 0; b && t < n; t++)
        for (int i = 0; i < width; i++)
            x[(size_t)t * width + i] += b[i];
}

/* θ_i = base^(−2i/n_rot), in float32 as HF transformers computes it, then the layer's
 * scaling: the one place the frequencies come from, for the forward pass and for
 * re-rotation alike. */
static float rope_inv_freq(const model_geometry *g, int i)
{
    float f = 1.0f / powf(g->rope_base, (float)(2 * i) / (float)g->n_rot);
    if (g->rope_scaling == MODEL_ROPE_SCALING_FREQS)
        f /= g->rope_factors[i];
    else if (g->rope_scaling == MODEL_ROPE_SCALING_LINEAR)
        f /= g->rope_scale;
    return f;
}

/* Do two layers rotate with the same frequencies?  (Then one table serves both.) */
static int same_frequencies(const model_geometry *a, const model_geometry *b)
{
    return a && b && a->n_rot == b->n_rot && a->rope_base == b->rope_base &&
           a->rope_scaling == b->rope_scaling && a->rope_scale == b->rope_scale &&
           a->rope_factors == b->rope_factors;
}

/* cos and sin of angle p · θ_i for p = pos0 .. pos0 + n - 1: the positions the call's
 * tokens take in the stream at hand, with the frequencies of geometry g. */
static void rope_tables(model_scratch *s, const model_geometry *g, int pos0, int n)
{
    int half = g->n_rot / 2;
    for (int t = 0; t < n; t++) {
        s->rope_pos[t] = pos0 + t;
        for (int i = 0; i < half; i++) {
            float angle = (float)(pos0 + t) * rope_inv_freq(g, i);
            s->rope_cos[(size_t)t * half + i] = cosf(angle);
            s->rope_sin[(size_t)t * half + i] = sinf(angle);
        }
    }
    s->rope_pos0 = pos0;
    s->rope_geom = g;
}

/* Rotate pair i of one head vector by the angle whose cos and sin are cs, sn: NORMAL
 * pairs (2i, 2i+1), NEOX pairs (i, i + n_rot/2). */
static inline void rope_pair(float *x, int i, float cs, float sn, const model_geometry *g)
{
    const int normal = g->rope == MODEL_ROPE_NORMAL;
    const int stride = normal ? 2 : 1, partner = normal ? 1 : g->n_rot / 2;
    float a = x[i * stride], b = x[i * stride + partner];
    x[i * stride] = a * cs - b * sn;
    x[i * stride + partner] = a * sn + b * cs;
}

/* Every pair of one head vector; dimensions past n_rot are left as they are. */
static void rope_head(float *x, const float *cs, const float *sn, const model_geometry *g)
{
    for (int i = 0; i < g->n_rot / 2; i++)
        rope_pair(x, i, cs[i], sn[i], g);
}

/* Rotate heads h0 .. h1-1 of n rows of n_heads · head_dim by the current tables. */
static void rope(float *v, int n, int n_heads, int h0, int h1, const model_scratch *s,
                 const model_geometry *g, int hd)
{
    int half = g->n_rot / 2;
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++)
        for (int h = h0; h < h1; h++)
            rope_head(v + ((size_t)t * n_heads + h) * hd, s->rope_cos + (size_t)t * half,
                      s->rope_sin + (size_t)t * half, g);
}

void model_rope_freqs(const model *m, int layer, float *out)
{
    const model_geometry *g = model_layer_geometry(m, layer);
    for (int i = 0; i < g->n_rot / 2; i++)
        out[i] = rope_inv_freq(g, i);
}

void model_rope_shift(const model *m, int layer, float *x, int n, int delta)
{
    const model_geometry *g = &m->geom[layer];
    /* frequency-major: one cos and sin per frequency, no table to hold */
    for (int i = 0; i < g->n_rot / 2; i++) {
        float angle = (float)delta * rope_inv_freq(g, i), cs = cosf(angle), sn = sinf(angle);
        for (int j = 0; j < n; j++)
            rope_pair(x + (size_t)j * m->cfg.head_dim, i, cs, sn, g);
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
            model_rope_shift(m, layer, keys + (size_t)i * hd, run, delta);
    }
}

/* hb = silu(hb) ⊙ hb2 */
static void swiglu(float *hb, const float *hb2, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 4096)
    for (size_t i = 0; i < n; i++)
        hb[i] = hb[i] / (1.0f + expf(-hb[i])) * hb2[i];
}

/* GELU, tanh form (HF gelu_pytorch_tanh, Gemma). */
static inline float gelu_tanh(float x)
{
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}

/* hb = gelu_tanh(hb) ⊙ hb2 */
static void geglu(float *hb, const float *hb2, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 4096)
    for (size_t i = 0; i < n; i++)
        hb[i] = gelu_tanh(hb[i]) * hb2[i];
}

/* hb = gelu(hb), the exact (erf) form: HF "gelu" (GPT-NeoX, Pythia). */
static void gelu(float *hb, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 4096)
    for (size_t i = 0; i < n; i++)
        hb[i] = 0.5f * hb[i] * (1.0f + erff(hb[i] * 0.70710678118654752f));
}

static void residual(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* ---- attention --------------------------------------------------------------------- */

/* What one head's attention needs to know about the call. */
typedef struct head_job {
    const model_config *c;
    const model_geometry *g;        /* the layer's mask, scale, softcap */
    const model_scratch *s;
    const kv_cache     *cache;
    const model_hooks  *hooks;
    int                 layer, n;   /* n: the call's new tokens */
    size_t              ld_kt;      /* keys per row of s->kt */
} head_job;

/* Out (rows, hd) = P·V for one block: gemm.c's product for a batch (the one-token
 * path keeps its sgemv, so decode is as it was). */
static void block_output(float *out, int ld, const float *p, const float *V, int rows,
                         int n_keys, int hd)
{
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, n_keys, hd, 1.0f, V, hd, p, 1, 0.0f, out, 1);
    else
        gemm_nn(out, (size_t)ld, p, (size_t)n_keys, V, (size_t)hd, rows, hd, n_keys, 1.0f, 0);
}

/* Scores (rows, n_keys) = scale · Q·Kᵀ for one block, from the keys transposed (kt, a
 * row of ld_kt per dimension) for a batch, or one sgemv for one token. */
static void block_scores(float *sc, const float *q, int ldq, const float *K, const float *kt,
                         size_t ld_kt, int rows, int n_keys, int hd, float scale)
{
    if (rows == 1)
        attention_scores(sc, (size_t)n_keys, q, ldq, K, 1, n_keys, hd, scale);
    else
        attention_scores_kt(sc, (size_t)n_keys, q, ldq, kt, ld_kt, rows, n_keys, hd, scale);
}

/* The first of a row's `len` keys a sliding query sees: the query is the last entry
 * and positions increase along the stream (kv_cache.h (1)), so the keys it sees are
 * the slots from the first one less than `window` positions behind it. */
static int window_start(const int32_t *pos, int len, int window)
{
    int lo = 0, hi = len - 1;   /* pos[hi] is the query's own: always seen */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (pos[len - 1] - pos[mid] < window)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Query head h, the call's rows r0 .. r0+ATT_ROWS-1: every new row attends to the
 * stream's slots up to its own entry (the stream held n_old entries before this call,
 * so row r sees n_old + r + 1 of them), minus those a sliding window leaves out. */
static void attend_block(const head_job *j, int h, int r0, float *sc)
{
    const model_config *c = j->c;
    const model_geometry *g = j->g;
    int hd = c->head_dim, ld = c->n_head * hd, kvh = h / (c->n_head / c->n_head_kv);
    const float *K = kv_cache_keys(j->cache, j->layer, kvh);
    const float *V = kv_cache_values(j->cache, j->layer, kvh);
    const float *kt = j->s->kt + (size_t)kvh * hd * j->ld_kt;
    const int32_t *kpos = kv_cache_positions(j->cache, j->layer, kvh);
    int n_old = kv_cache_size(j->cache, j->layer, kvh) - j->n;
    const model_hooks *hk = j->hooks;
    int rows = j->n - r0 < ATT_ROWS ? j->n - r0 : ATT_ROWS, n_keys = n_old + r0 + rows;
    const float *q = j->s->q + (size_t)r0 * ld + (size_t)h * hd;
    for (int i = 0; hk && hk->query && i < rows; i++)
        hk->query(hk->ctx, j->layer, h, j->s->pos[r0 + i], q + (size_t)i * ld, hd);
    block_scores(sc, q, ld, K, kt, j->ld_kt, rows, n_keys, hd, g->attn_scale);
    for (int i = 0; i < rows; i++) {
        float *row = sc + (size_t)i * n_keys;
        int len = n_old + r0 + i + 1;              /* causal: keys up to its own */
        int first = g->mask == MODEL_MASK_SLIDING ? window_start(kpos, len, g->window) : 0;
        if (g->softcap > 0.0f)
            attention_softcap(row + first, len - first, g->softcap);
        attention_softmax(row, first, len, n_keys);
        if (hk && hk->attn_row)
            hk->attn_row(hk->ctx, j->layer, h, j->s->pos[r0 + i], row, len);
    }
    block_output(j->s->att + (size_t)r0 * ld + (size_t)h * hd, ld, sc, V, rows, n_keys, hd);
}

/* Every KV head's keys of layer l transposed, kt[kvh][d][slot], for the batch's Q·Kᵀ. */
static void transpose_keys(model_scratch *s, const model_config *c, const kv_cache *cache,
                           int l, size_t ld_kt)
{
    const int hd = c->head_dim;
#pragma omp for schedule(static)
    for (int kvh = 0; kvh < c->n_head_kv; kvh++)
        gemm_transpose(s->kt + (size_t)kvh * hd * ld_kt, ld_kt, kv_cache_keys(cache, l, kvh),
                       (size_t)hd, kv_cache_size(cache, l, kvh), hd);
}

/* att = softmax(mask(Q·Kᵀ · scale))·V for every query head of layer l. */
static void attention(model *m, const kv_cache *cache, int l, int n, const model_hooks *hooks)
{
    head_job job = {.c = &m->cfg, .g = &m->geom[l], .s = &m->s, .cache = cache,
                    .hooks = hooks, .layer = l, .n = n, .ld_kt = m->s.ld_kt};
    size_t per_thread = m->s.cap_scores / (size_t)omp_get_max_threads();
    const int blocks = (n + ATT_ROWS - 1) / ATT_ROWS, n_head = m->cfg.n_head;
    const int in_order = hooks && (hooks->attn_row || hooks->query);
#pragma omp parallel
    {
        float *sc = m->s.scores + (size_t)omp_get_thread_num() * per_thread;
        if (n > 1)
            transpose_keys(&m->s, &m->cfg, cache, l, job.ld_kt);   /* ends in a barrier */
        if (in_order) {
            /* a hook sees one head's rows in order from one thread (model.h); static:
             * a thread takes consecutive heads, so a GQA group's keys and values are
             * read by one core while they are still in its cache */
#pragma omp for schedule(static)
            for (int h = 0; h < n_head; h++)
                for (int b = 0; b < blocks; b++)
                    attend_block(&job, h, b * ATT_ROWS, sc);
        } else {
            /* no hook: (head, block) pairs, the longest (last) blocks first */
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < n_head * blocks; i++)
                attend_block(&job, i % n_head, (blocks - 1 - i / n_head) * ATT_ROWS, sc);
        }
    }
}

/* RoPE, then the new keys and values join every stream of layer l.  One KV head (and
 * its group of query heads) at a time, at the positions its stream gives the new
 * tokens (kv_cache_rope_pos: the token's index, or the stream's size under compact
 * positions); the tables are recomputed only when those or the layer's frequencies
 * change, so a plain cache of a model whose layers share one RoPE computes them once
 * per call.  The streams were reserved, so appending cannot fail. */
static void rope_append(model *m, kv_cache *cache, int l, int n)
{
    const model_config *c = &m->cfg;
    const model_geometry *g = &m->geom[l];
    model_scratch *s = &m->s;
    const int G = c->n_head / c->n_head_kv, hd = c->head_dim;
    size_t kvd = (size_t)c->n_head_kv * hd;
    for (int h = 0; h < c->n_head_kv; h++) {
        int pos0 = kv_cache_rope_pos(cache, l, h);
        if (pos0 != s->rope_pos0 || !same_frequencies(g, s->rope_geom))
            rope_tables(s, g, pos0, n);
        rope(s->q, n, c->n_head, h * G, (h + 1) * G, s, g, hd);
        rope(s->k, n, c->n_head_kv, h, h + 1, s, g, hd);
        size_t off = (size_t)h * hd;
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

/* xb = the attention block's output for layer l: Wo · Attn(...) (+bo), post-normed
 * (gemma3), from x (model.h, the first five lines of the block). */
static void attention_block(model *m, kv_cache *cache, int l, int n, const model_hooks *hooks)
{
    const model_config *c = &m->cfg;
    const model_layer *w = &m->layers[l];
    model_scratch *s = &m->s;
    const int d = c->n_embd, hd = c->head_dim;
    norm(s->xb, s->x, w->attn_norm, w->attn_norm_b, n, d, c->rms_eps);
    const gemm_job qkv[] = {{s->q, w->wq.rows, &w->wq}, {s->k, w->wk.rows, &w->wk},
                            {s->v, w->wv.rows, &w->wv}};
    matmuls(m, s->xb, n, qkv, 3);
    add_bias(s->q, w->bq, n, w->wq.rows);
    add_bias(s->k, w->bk, n, w->wk.rows);
    add_bias(s->v, w->bv, n, w->wv.rows);
    if (w->q_norm) {   /* QK-norm: RMSNorm over each head's vector, before RoPE */
        rmsnorm(s->q, s->q, w->q_norm, n * c->n_head, hd, c->rms_eps);
        rmsnorm(s->k, s->k, w->k_norm, n * c->n_head_kv, hd, c->rms_eps);
    }
    rope_append(m, cache, l, n);
    attention(m, cache, l, n, hooks);
    matmul(m, s->xb, s->att, &w->wo, n);
    add_bias(s->xb, w->bo, n, d);
    if (w->post_attn_norm)
        rmsnorm(s->xb, s->xb, w->post_attn_norm, n, d, c->rms_eps);
}

/* xb2 = the feed-forward block's output for layer l, from x (model.h: F). */
static void ffn_block(model *m, int l, int n)
{
    const model_config *c = &m->cfg;
    const model_layer *w = &m->layers[l];
    model_scratch *s = &m->s;
    const int d = c->n_embd;
    const size_t nf = (size_t)n * c->n_ff;
    norm(s->xb2, s->x, w->ffn_norm, w->ffn_norm_b, n, d, c->rms_eps);
    if (c->ffn == MODEL_FFN_GELU) {
        matmul(m, s->hb, s->xb2, &w->w_up, n);
        add_bias(s->hb, w->b_up, n, c->n_ff);
        gelu(s->hb, nf);
    } else {
        const gemm_job gate_up[] = {{s->hb, c->n_ff, &w->w_gate}, {s->hb2, c->n_ff, &w->w_up}};
        matmuls(m, s->xb2, n, gate_up, 2);
        if (c->ffn == MODEL_FFN_GEGLU)
            geglu(s->hb, s->hb2, nf);
        else
            swiglu(s->hb, s->hb2, nf);
    }
    matmul(m, s->xb2, s->hb, &w->w_down, n);
    add_bias(s->xb2, w->b_down, n, d);
    if (w->post_ffn_norm)
        rmsnorm(s->xb2, s->xb2, w->post_ffn_norm, n, d, c->rms_eps);
}

/* NaN or infinite logits (NaN or huge weights, an overflow) would still pick a token
 * (argmax of NaNs is token 0): an error instead, naming the first position. */
static int check_logits(const float *logits, int rows, int V, int pos0, kv_err *err)
{
    for (size_t i = 0; i < (size_t)rows * V; i++)
        if (!isfinite(logits[i]))
            return kv_errorf(err, KV_EFORMAT, "the forward pass gave a non-finite logit (%g) "
                             "at position %d, token id %zu: the model's weights hold NaN or "
                             "inf values, or overflow", logits[i], pos0 + (int)(i / V),
                             i % V);
    return 0;
}

int model_forward(model *m, kv_cache *cache, const int32_t *tokens, int n,
                  model_logits which, float *logits, const model_hooks *hooks, kv_err *err)
{
    const model_config *c = &m->cfg;
    int rc = check_call(m, cache, tokens, n, err);
    if (!rc && m->dev)
        return model__forward_device(m, cache, tokens, n, which, logits, hooks, err);
    if (rc || (rc = scratch_reserve(m, n, max_keys_after(cache, n), err)) ||
        (rc = kv_cache_reserve(cache, n, err)))   /* so no append below can fail */
        return rc;
    model_scratch *s = &m->s;
    int d = c->n_embd;
    size_t nd = (size_t)n * d;

    /* token embeddings (scaled for gemma3) and positions; the RoPE tables follow per
     * stream (rope_append) */
    for (int t = 0; t < n; t++) {
        float *xt = s->x + (size_t)t * d;
        model__qmatrix_row(xt, &m->tok_embd, tokens[t]);
        for (int i = 0; c->embd_scale != 1.0f && i < d; i++)
            xt[i] *= c->embd_scale;
        s->pos[t] = kv_cache_next_pos(cache) + t;
    }
    s->rope_pos0 = -1;   /* no tables for this call's n yet */
    s->rope_geom = NULL;

    for (int l = 0; l < c->n_layer; l++) {
        attention_block(m, cache, l, n, hooks);          /* xb */
        if (c->parallel_residual) {                       /* x += attn(x) + F(x) */
            ffn_block(m, l, n);
            residual(s->x, s->xb, nd);
            residual(s->x, s->xb2, nd);
        } else {                                          /* x += attn(x); x += F(x) */
            residual(s->x, s->xb, nd);
            ffn_block(m, l, n);
            residual(s->x, s->xb2, nd);
        }
    }
    kv_cache_advance(cache, n);

    /* logits = Wout · (Norm(x) · output_norm), for the last token or for all */
    if (which == MODEL_LOGITS_NONE)
        return 0;
    int first = which == MODEL_LOGITS_LAST ? n - 1 : 0, rows = n - first;
    norm(s->xb, s->x + (size_t)first * d, m->output_norm, m->output_norm_b, rows, d, c->rms_eps);
    matmul(m, logits, s->xb, &m->output, rows);
    if (c->final_softcap > 0.0f)
        attention_softcap(logits, (size_t)rows * c->n_vocab, c->final_softcap);
    return check_logits(logits, rows, c->n_vocab, kv_cache_next_pos(cache) - rows, err);
}
