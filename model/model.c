/*
 * model.c — open a GGUF model of one of the architectures of model.h: hyper-parameters
 * from the metadata (keys of reference/inference.md §2, §2b), each layer's attention
 * geometry, every tensor the architecture needs checked against the shape the
 * hyper-parameters imply, weights copied as the GGUF's own blocks or converted
 * (model_kernels.c).  The file is closed again before model_open() returns: nothing is
 * borrowed from it.
 */
#include "model_impl.h"

#include "blas_check.h"
#include "dequant.h"
#include "gguf.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What each architecture switches on (model.h draws the block). */
typedef struct arch_info {
    const char *name;
    model_arch  id;
    model_rope  rope;
    model_norm  norm;
    model_ffn   ffn;
} arch_info;

static const arch_info archs[] = {
    {"llama",   MODEL_ARCH_LLAMA,   MODEL_ROPE_NORMAL, MODEL_NORM_RMS,   MODEL_FFN_SWIGLU},
    {"qwen2",   MODEL_ARCH_QWEN2,   MODEL_ROPE_NEOX,   MODEL_NORM_RMS,   MODEL_FFN_SWIGLU},
    {"qwen3",   MODEL_ARCH_QWEN3,   MODEL_ROPE_NEOX,   MODEL_NORM_RMS,   MODEL_FFN_SWIGLU},
    {"gemma3",  MODEL_ARCH_GEMMA3,  MODEL_ROPE_NEOX,   MODEL_NORM_RMS,   MODEL_FFN_GEGLU},
    {"gptneox", MODEL_ARCH_GPTNEOX, MODEL_ROPE_NEOX,   MODEL_NORM_LAYER, MODEL_FFN_GELU},
};
#define N_ARCHS (sizeof archs / sizeof *archs)

const char *model_supported_archs(void) { return "llama, qwen2, qwen3, gemma3, gptneox"; }

/* Gemma 3: a layer is local (sliding) unless its index is pattern-1 modulo the pattern
 * (llama.cpp's set_swa_pattern(6), HF's sliding_window_pattern); local layers use
 * their own RoPE base, 10000 (llama.cpp's rope_freq_base_train_swa). */
#define GEMMA3_SWA_PATTERN   6
#define GEMMA3_LOCAL_BASE    10000.0

/* ---- hyper-parameters -------------------------------------------------------------- */

static int require_int(const gguf_file *f, const char *arch, const char *key, int *out,
                       kv_err *err)
{
    char name[128];
    int64_t v;
    snprintf(name, sizeof name, "%s.%s", arch, key);
    int rc = gguf_require_int(f, name, &v, err);
    if (rc)
        return rc;
    if (v <= 0 || v > (1 << 30))
        return kv_errorf(err, KV_ERANGE, "%s: key '%s' is %lld, expected 1 .. 2^30",
                         gguf_path(f), name, (long long)v);
    *out = (int)v;
    return 0;
}

/* An optional integer key: `*out` keeps its default when the key is absent. */
static int optional_int(const gguf_file *f, const char *arch, const char *key, int *out,
                        kv_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    return gguf_find_key(f, name) < 0 ? 0 : require_int(f, arch, key, out, err);
}

/* An optional float key `{arch}.key`: `*out` keeps its default when the key is absent. */
static int optional_float(const gguf_file *f, const char *arch, const char *key, float *out,
                          kv_err *err)
{
    char name[128];
    double v;
    snprintf(name, sizeof name, "%s.%s", arch, key);
    if (gguf_find_key(f, name) < 0)
        return 0;
    int rc = gguf_require_float(f, name, &v, err);
    if (!rc && !(v >= 0.0 && v < 1e30))
        rc = kv_errorf(err, KV_ERANGE, "%s: key '%s' is %g, expected a finite value >= 0",
                       gguf_path(f), name, v);
    if (!rc)
        *out = (float)v;
    return rc;
}

static int32_t optional_id(const gguf_file *f, const char *key)
{
    int64_t v, i = gguf_find_key(f, key);
    return i >= 0 && !gguf_get_int(f, i, &v) && v >= 0 && v <= INT32_MAX ? (int32_t)v : -1;
}

/* The end-of-turn token when the file names none: chat models stop on it (llama.cpp
 * recognises the same texts).  Gemma 3's GGUF has no eot key, and it ends a reply
 * with <end_of_turn> rather than <eos>. */
static int32_t eot_by_text(const gguf_file *f)
{
    static const char *const texts[] = {"<end_of_turn>", "<|eot_id|>"};
    int64_t k = gguf_find_key(f, "tokenizer.ggml.tokens");
    uint64_t n = k >= 0 && gguf_arr_type(f, k) == GGUF_TYPE_STRING ? gguf_arr_len(f, k) : 0;
    for (uint64_t j = 0; j < n && j <= INT32_MAX; j++) {
        size_t len;
        const char *s = gguf_arr_str(f, k, j, &len);
        for (size_t t = 0; s && t < sizeof texts / sizeof *texts; t++)
            if (len == strlen(texts[t]) && !memcmp(s, texts[t], len))
                return (int32_t)j;
    }
    return -1;
}

static int read_arch(const gguf_file *f, model_config *c, kv_err *err)
{
    const char *s;
    size_t len;
    int rc = gguf_require_str(f, "general.architecture", &s, &len, err);
    if (rc)
        return rc;
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)len, s);
    for (size_t i = 0; i < N_ARCHS; i++)
        if (!strcmp(c->arch, archs[i].name) && len < sizeof c->arch) {
            c->arch_id = archs[i].id, c->rope = archs[i].rope;
            c->norm = archs[i].norm, c->ffn = archs[i].ffn;
            return 0;
        }
    return kv_errorf(err, KV_EUNSUPPORTED, "%s: architecture '%.*s' is not supported, "
                     "expected one of: %s", gguf_path(f), (int)len, s, model_supported_archs());
}

/* {arch}.rope.scaling.type and .factor: none, or linear (llama.cpp's default type when
 * only a factor is given); anything else (yarn, longrope...) is refused by name. */
static int read_rope_scaling(const gguf_file *f, const char *a, float *scale, kv_err *err)
{
    char key[128];
    *scale = 1.0f;
    int rc = optional_float(f, a, "rope.scaling.factor", scale, err);
    if (rc)
        return rc;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    int64_t i = gguf_find_key(f, key);
    const char *type = "linear";
    size_t len = 6;
    if (i >= 0 && !(type = gguf_get_str(f, i, &len)))
        return kv_errorf(err, KV_EFORMAT, "%s: key '%s' is not a string", gguf_path(f), key);
    bool none = len == 4 && !memcmp(type, "none", 4);
    if (!none && !(len == 6 && !memcmp(type, "linear", 6)))
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: RoPE scaling '%.*s' (%s) is not "
                         "supported, expected none or linear", gguf_path(f), (int)len, type, key);
    if (none || *scale == 0.0f)
        *scale = 1.0f;
    return 0;
}

static int read_config(const gguf_file *f, model_config *c, kv_err *err)
{
    int rc = read_arch(f, c, err);
    const char *a = c->arch;
    if (rc || (rc = require_int(f, a, "block_count", &c->n_layer, err)) ||
        (rc = require_int(f, a, "embedding_length", &c->n_embd, err)) ||
        (rc = require_int(f, a, "feed_forward_length", &c->n_ff, err)) ||
        (rc = require_int(f, a, "attention.head_count", &c->n_head, err)) ||
        (rc = require_int(f, a, "context_length", &c->n_ctx, err)))
        return rc;
    c->n_head_kv = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    if ((rc = optional_int(f, a, "attention.head_count_kv", &c->n_head_kv, err)) ||
        (rc = optional_int(f, a, "attention.key_length", &c->head_dim, err)))
        return rc;
    c->n_rot = c->head_dim;
    if ((rc = optional_int(f, a, "rope.dimension_count", &c->n_rot, err)))
        return rc;
    char key[128];
    double v = 10000.0;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if (gguf_find_key(f, key) >= 0 && (rc = gguf_require_float(f, key, &v, err)))
        return rc;
    c->rope_base = (float)v;
    snprintf(key, sizeof key, "%s.attention.%s", a, c->norm == MODEL_NORM_LAYER
             ? "layer_norm_epsilon" : "layer_norm_rms_epsilon");
    if ((rc = gguf_require_float(f, key, &v, err)))
        return rc;
    c->rms_eps = (float)v;
    c->parallel_residual = 0;
    snprintf(key, sizeof key, "%s.use_parallel_residual", a);
    if (c->arch_id == MODEL_ARCH_GPTNEOX) {
        int64_t p = 1, k = gguf_find_key(f, key);
        if (k >= 0 && gguf_get_int(f, k, &p))
            return kv_errorf(err, KV_EFORMAT, "%s: key '%s' is not a bool", gguf_path(f), key);
        c->parallel_residual = p != 0;
    }
    c->embd_scale = c->arch_id == MODEL_ARCH_GEMMA3 ? sqrtf((float)c->n_embd) : 1.0f;
    c->final_softcap = 0.0f;
    if ((rc = optional_float(f, a, "final_logit_softcapping", &c->final_softcap, err)))
        return rc;
    c->bos_id = optional_id(f, "tokenizer.ggml.bos_token_id");
    c->eos_id = optional_id(f, "tokenizer.ggml.eos_token_id");
    c->eot_id = optional_id(f, "tokenizer.ggml.eot_token_id");
    if (c->eot_id < 0)
        c->eot_id = eot_by_text(f);
    return 0;
}

/* Which layers of a Gemma 3 file are local: {arch}.attention.sliding_window_pattern
 * as an integer P (layer l local iff l % P < P - 1) or one bool per layer, else P = 6. */
static int gemma3_local(const gguf_file *f, const model_config *c, int l, int *local,
                        kv_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", c->arch);
    int64_t k = gguf_find_key(f, key), v = GEMMA3_SWA_PATTERN;
    if (k >= 0 && gguf_arr_len(f, k) == (uint64_t)c->n_layer) {
        if (gguf_arr_int(f, k, (uint64_t)l, &v))
            return kv_errorf(err, KV_EFORMAT, "%s: key '%s'[%d] is not a bool", gguf_path(f), key, l);
        *local = v != 0;
        return 0;
    }
    if (k >= 0 && (gguf_get_int(f, k, &v) || v < 1))
        return kv_errorf(err, KV_EFORMAT, "%s: key '%s': expected a positive integer or one "
                         "bool per layer", gguf_path(f), key);
    *local = l % v < v - 1;
    return 0;
}

/* Every layer's geometry (model.h): masks, RoPE bases and scaling, scale, softcap. */
static int read_geometry(const gguf_file *f, model *m, kv_err *err)
{
    model_config *c = &m->cfg;
    const char *a = c->arch;
    int window = 0, rc;
    float scale, softcap = 0.0f, local_base = (float)GEMMA3_LOCAL_BASE;
    if ((rc = optional_int(f, a, "attention.sliding_window", &window, err)) ||
        (rc = read_rope_scaling(f, a, &scale, err)) ||
        (rc = optional_float(f, a, "attn_logit_softcapping", &softcap, err)) ||
        (rc = optional_float(f, a, "rope.freq_base_swa", &local_base, err)))
        return rc;
    if (c->arch_id == MODEL_ARCH_GEMMA3 && window == 0)
        return kv_errorf(err, KV_ENOTFOUND, "%s: missing required key '%s.attention."
                         "sliding_window' (Gemma 3 local layers)", gguf_path(f), a);
    if (!(m->geom = calloc((size_t)c->n_layer, sizeof *m->geom)))
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d layers", c->n_layer);
    /* Gemma 3 27B scales queries by 1/sqrt(n_embd / n_head), not 1/sqrt(head_dim)
     * (HF query_pre_attn_scalar 168; llama.cpp tells it by its 62 layers). */
    int q_scalar = c->arch_id == MODEL_ARCH_GEMMA3 && c->n_layer == 62 ? c->n_embd / c->n_head
                                                                       : c->head_dim;
    c->n_sliding = 0;
    for (int l = 0; l < c->n_layer; l++) {
        int local = window > 0;
        if (c->arch_id == MODEL_ARCH_GEMMA3 && (rc = gemma3_local(f, c, l, &local, err)))
            return rc;
        model_geometry *g = &m->geom[l];
        *g = (model_geometry){.mask = MODEL_MASK_CAUSAL, .rope = c->rope, .n_rot = c->n_rot,
                              .rope_base = c->rope_base, .rope_scale = 1.0f,
                              .attn_scale = 1.0f / sqrtf((float)q_scalar), .softcap = softcap};
        if (local) {
            g->mask = MODEL_MASK_SLIDING, g->window = window;
            c->n_sliding++;
        }
        bool gemma_local = c->arch_id == MODEL_ARCH_GEMMA3 && local;
        if (gemma_local)
            g->rope_base = local_base;   /* and no scaling: it is the global layers' */
        else if (scale != 1.0f)
            g->rope_scaling = MODEL_ROPE_SCALING_LINEAR, g->rope_scale = scale;
        if (m->rope_factors && !gemma_local)
            g->rope_scaling = MODEL_ROPE_SCALING_FREQS, g->rope_factors = m->rope_factors;
    }
    return 0;
}

static int check_config(const gguf_file *f, const model_config *c, kv_err *err)
{
    if (c->n_head % c->n_head_kv || c->n_rot > c->head_dim || c->n_rot % 2 ||
        c->head_dim % 8)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: %d heads, %d KV heads, head_dim %d, "
                         "rope dims %d: expected KV heads dividing heads, an even rope "
                         "width <= head_dim and head_dim a multiple of 8", gguf_path(f),
                         c->n_head, c->n_head_kv, c->head_dim, c->n_rot);
    if (c->n_embd % QBLOCK || c->n_ff % QBLOCK || (c->n_head * c->head_dim) % QBLOCK ||
        c->n_embd > MODEL_MAX_COLS || c->n_ff > MODEL_MAX_COLS)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: widths %d (embedding) and %d "
                         "(feed-forward) must be multiples of %d and at most %d",
                         gguf_path(f), c->n_embd, c->n_ff, QBLOCK, MODEL_MAX_COLS);
    if (c->arch_id == MODEL_ARCH_GPTNEOX && (c->n_head_kv != c->n_head ||
                                             c->head_dim * c->n_head != c->n_embd))
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: gptneox with %d KV heads and head_dim "
                         "%d: expected one KV head per head and heads spanning the "
                         "embedding (%d)", gguf_path(f), c->n_head_kv, c->head_dim, c->n_embd);
    return 0;
}

/* ---- tensors ----------------------------------------------------------------------- */

/* The tensor `name` with ne = (cols, rows); rows 0 checks a 1-D tensor. */
static const gguf_tensor *find_shaped(const gguf_file *f, const char *name, int cols,
                                      int rows, kv_err *err)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        kv_errorf(err, KV_ENOTFOUND, "%s: missing tensor '%s'", gguf_path(f), name);
        return NULL;
    }
    int64_t want1 = rows ? rows : 1;
    if (t->ne[0] != cols || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1) {
        kv_errorf(err, KV_EFORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], "
                  "expected [%d, %lld]", gguf_path(f), name, (long long)t->ne[0],
                  (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], cols,
                  (long long)want1);
        return NULL;
    }
    return t;
}

/* A 1-D float tensor of n values (norm weights, biases, RoPE factors). */
static int load_vec(model *m, const gguf_file *f, const char *name, int n, float **out,
                    kv_err *err)
{
    const gguf_tensor *t = find_shaped(f, name, n, 0, err);
    if (!t)
        return err ? err->code : KV_ENOTFOUND;
    if (!(*out = malloc((size_t)n * sizeof **out)))
        return kv_errorf(err, KV_ENOMEM, "out of memory for '%s'", name);
    m->weight_bytes += (size_t)n * sizeof **out;
    int rc = dequant_row(t->type, t->data, *out, n, err);
    return rc ? kv_err_prefix(err, "%s: tensor '%s': ", gguf_path(f), name) : 0;
}

/* Rows r0 .. r0+rows-1 of tensor t (cols wide) as the model holds them
 * (model_kernels.c); the file's pages of them are released once copied, so that the
 * peak memory of loading is the weights once, not twice. */
static int load_rows(model *m, const gguf_file *f, const gguf_tensor *t, int r0, int rows,
                     int cols, qmatrix *w, kv_err *err)
{
    size_t row_bytes;
    if (ggml_row_size(t->type, cols, &row_bytes, err))
        return kv_err_prefix(err, "%s: tensor '%s': ", gguf_path(f), t->name);
    const uint8_t *src = (const uint8_t *)t->data + (size_t)r0 * row_bytes;
    int rc = model__qmatrix_init(w, t->type, rows, cols, src, 1, &m->weight_bytes, err);
    gguf_release(f, src, (size_t)rows * row_bytes);
    return rc ? kv_err_prefix(err, "%s: tensor '%s': ", gguf_path(f), t->name) : 0;
}

static int load_matrix(model *m, const gguf_file *f, const char *name, int rows, int cols,
                       qmatrix *w, kv_err *err)
{
    const gguf_tensor *t = find_shaped(f, name, cols, rows, err);
    return t ? load_rows(m, f, t, 0, rows, cols, w, err) : err ? err->code : KV_ENOTFOUND;
}

/* GPT-NeoX's fused attn_qkv: rows 0..q-1 are Wq, then Wk, then Wv (the converter has
 * already regrouped HF's per-head [q k v] rows), and the bias is split the same way. */
static int load_fused_qkv(model *m, const gguf_file *f, int l, model_layer *w, kv_err *err)
{
    const model_config *c = &m->cfg;
    int d = c->n_embd, q = c->n_head * c->head_dim, k = c->n_head_kv * c->head_dim;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_qkv.weight", l);
    const gguf_tensor *t = find_shaped(f, name, d, q + 2 * k, err);
    float *b = NULL;
    int rc = t ? 0 : err ? err->code : KV_ENOTFOUND;
    if (!rc)
        snprintf(name, sizeof name, "blk.%d.attn_qkv.bias", l);
    if (rc || (rc = load_rows(m, f, t, 0, q, d, &w->wq, err)) ||
        (rc = load_rows(m, f, t, q, k, d, &w->wk, err)) ||
        (rc = load_rows(m, f, t, q + k, k, d, &w->wv, err)) ||
        (rc = load_vec(m, f, name, q + 2 * k, &b, err)))
        return rc;
    w->bq = b;                     /* one allocation: bk and bv point into it */
    w->bk = b + q, w->bv = b + q + k;
    w->fused_bias = 1;
    return 0;
}

static int load_layer(model *m, const gguf_file *f, int l, kv_err *err)
{
    const model_config *c = &m->cfg;
    model_layer *w = &m->layers[l];
    const model_arch arch = c->arch_id;
    const bool gemma = arch == MODEL_ARCH_GEMMA3, neox = arch == MODEL_ARCH_GPTNEOX;
    const bool layer_norm = c->norm == MODEL_NORM_LAYER;
    int d = c->n_embd, hd = c->head_dim;
    int q_dim = c->n_head * hd, kv_dim = c->n_head_kv * hd;
    char name[64];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix ".weight", l), name)
#define BIAS(suffix) (snprintf(name, sizeof name, "blk.%d." suffix ".bias", l), name)
    int rc;
    if ((rc = load_vec(m, f, BLK("attn_norm"), d, &w->attn_norm, err)) ||
        (layer_norm && (rc = load_vec(m, f, BIAS("attn_norm"), d, &w->attn_norm_b, err))))
        return rc;
    if (neox)
        rc = load_fused_qkv(m, f, l, w, err);
    else if ((rc = load_matrix(m, f, BLK("attn_q"), q_dim, d, &w->wq, err)) ||
             (rc = load_matrix(m, f, BLK("attn_k"), kv_dim, d, &w->wk, err)) ||
             (rc = load_matrix(m, f, BLK("attn_v"), kv_dim, d, &w->wv, err)))
        return rc;
    if (rc || (arch == MODEL_ARCH_QWEN2 &&
               ((rc = load_vec(m, f, BIAS("attn_q"), q_dim, &w->bq, err)) ||
                (rc = load_vec(m, f, BIAS("attn_k"), kv_dim, &w->bk, err)) ||
                (rc = load_vec(m, f, BIAS("attn_v"), kv_dim, &w->bv, err)))))
        return rc;
    if ((rc = load_matrix(m, f, BLK("attn_output"), d, q_dim, &w->wo, err)) ||
        (neox && (rc = load_vec(m, f, BIAS("attn_output"), d, &w->bo, err))) ||
        ((gemma || arch == MODEL_ARCH_QWEN3) &&
         ((rc = load_vec(m, f, BLK("attn_q_norm"), hd, &w->q_norm, err)) ||
          (rc = load_vec(m, f, BLK("attn_k_norm"), hd, &w->k_norm, err)))) ||
        (gemma && (rc = load_vec(m, f, BLK("post_attention_norm"), d, &w->post_attn_norm, err))))
        return rc;
    if ((rc = load_vec(m, f, BLK("ffn_norm"), d, &w->ffn_norm, err)) ||
        (layer_norm && (rc = load_vec(m, f, BIAS("ffn_norm"), d, &w->ffn_norm_b, err))) ||
        (c->ffn != MODEL_FFN_GELU &&
         (rc = load_matrix(m, f, BLK("ffn_gate"), c->n_ff, d, &w->w_gate, err))) ||
        (rc = load_matrix(m, f, BLK("ffn_up"), c->n_ff, d, &w->w_up, err)) ||
        (rc = load_matrix(m, f, BLK("ffn_down"), d, c->n_ff, &w->w_down, err)) ||
        (neox && ((rc = load_vec(m, f, BIAS("ffn_up"), c->n_ff, &w->b_up, err)) ||
                  (rc = load_vec(m, f, BIAS("ffn_down"), d, &w->b_down, err)))) ||
        (gemma && (rc = load_vec(m, f, BLK("post_ffw_norm"), d, &w->post_ffn_norm, err))))
        return rc;
#undef BLK
#undef BIAS
    return 0;
}

static int load_weights(model *m, const gguf_file *f, kv_err *err)
{
    model_config *c = &m->cfg;
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb)
        return kv_errorf(err, KV_ENOTFOUND, "%s: missing tensor 'token_embd.weight'", gguf_path(f));
    c->n_vocab = (int)emb->ne[1];
    int rc = load_matrix(m, f, "token_embd.weight", c->n_vocab, c->n_embd, &m->tok_embd, err);
    if (rc || (rc = load_vec(m, f, "output_norm.weight", c->n_embd, &m->output_norm, err)) ||
        (c->norm == MODEL_NORM_LAYER &&
         (rc = load_vec(m, f, "output_norm.bias", c->n_embd, &m->output_norm_b, err))))
        return rc;
    c->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (c->tied_output) {
        m->output = m->tok_embd;
        m->output.shared = 1;
    }
    else if ((rc = load_matrix(m, f, "output.weight", c->n_vocab, c->n_embd, &m->output, err)))
        return rc;
    if (gguf_find_tensor(f, "rope_freqs.weight") &&
        (rc = load_vec(m, f, "rope_freqs.weight", c->n_rot / 2, &m->rope_factors, err)))
        return rc;
    if (!(m->layers = calloc((size_t)c->n_layer, sizeof *m->layers)))
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d layers", c->n_layer);
    for (int l = 0; l < c->n_layer && !rc; l++)
        rc = load_layer(m, f, l, err);
    return rc;
}

/* ---- lifecycle --------------------------------------------------------------------- */

model *model_open(const char *path, kv_err *err)
{
    gguf_file *f = gguf_open(path, err);
    if (!f)
        return NULL;
    model *m = calloc(1, sizeof *m);
    int rc = m ? 0 : kv_errorf(err, KV_ENOMEM, "out of memory opening %s", path);
    if (!rc && !(rc = read_config(f, &m->cfg, err)) &&
        !(rc = check_config(f, &m->cfg, err)) && !(rc = load_weights(m, f, err)))
        rc = read_geometry(f, m, err);
    gguf_close(f);
    if (rc) {
        model_free(m);
        return NULL;
    }
    return m;
}

static void free_layer(model_layer *w)
{
    float *vecs[] = {w->attn_norm, w->attn_norm_b, w->bq, w->bo, w->q_norm, w->k_norm,
                     w->post_attn_norm, w->ffn_norm, w->ffn_norm_b, w->b_up, w->b_down,
                     w->post_ffn_norm};
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++)
        free(vecs[i]);
    if (!w->fused_bias)            /* else bk and bv point into bq */
        free(w->bk), free(w->bv);
    qmatrix *mats[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
    for (size_t i = 0; i < sizeof mats / sizeof *mats; i++)
        model__qmatrix_free(mats[i]);
}

void model_free(model *m)
{
    if (!m)
        return;
    for (int l = 0; m->layers && l < m->cfg.n_layer; l++)
        free_layer(&m->layers[l]);
    free(m->layers);
    model__qmatrix_free(&m->output);   /* only forgets tok_embd's when tied */
    model__qmatrix_free(&m->tok_embd);
    free(m->output_norm);
    free(m->output_norm_b);
    free(m->rope_factors);
    free(m->geom);
    model__scratch_free(&m->s);
    model__device_free(m->dev);
    free(m);
}

/* ---- small accessors ------------------------------------------------------------- */

const model_config *model_config_of(const model *m) { return &m->cfg; }

const model_geometry *model_layer_geometry(const model *m, int layer)
{
    return layer >= 0 && layer < m->cfg.n_layer ? &m->geom[layer] : NULL;
}

void model_set_rope(model *m, model_rope rope)
{
    m->cfg.rope = rope;
    for (int l = 0; l < m->cfg.n_layer; l++)
        m->geom[l].rope = rope;
}
size_t model_weight_bytes(const model *m) { return m->weight_bytes; }

kv_cache *model_cache_new(const model *m, int reserve, kv_err *err)
{
    return kv_cache_new(m->cfg.n_layer, m->cfg.n_head_kv, m->cfg.head_dim, reserve, err);
}

void model_set_threads(int n)
{
    omp_set_num_threads(n);
    blas_set_threads(n);
}
