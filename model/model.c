/*
 * model.c — open a llama-family GGUF model: hyper-parameters from the metadata (keys
 * of reference/inference.md §2), every tensor checked against the shape they imply,
 * weights converted to 8-bit blocks (model_kernels.c).  The file is closed again
 * before model_open() returns: nothing is borrowed from the mapping.
 */
#include "model_impl.h"

#include "blas_check.h"
#include "dequant.h"
#include "gguf.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const supported_archs[] = {"llama"};

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

static int32_t optional_id(const gguf_file *f, const char *key)
{
    int64_t v, i = gguf_find_key(f, key);
    return i >= 0 && !gguf_get_int(f, i, &v) && v >= 0 && v <= INT32_MAX ? (int32_t)v : -1;
}

static int read_arch(const gguf_file *f, model_config *c, kv_err *err)
{
    const char *s;
    size_t len;
    int rc = gguf_require_str(f, "general.architecture", &s, &len, err);
    if (rc)
        return rc;
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)len, s);
    for (size_t i = 0; i < sizeof supported_archs / sizeof *supported_archs; i++)
        if (!strcmp(c->arch, supported_archs[i]) && len < sizeof c->arch)
            return 0;
    return kv_errorf(err, KV_EUNSUPPORTED, "%s: architecture '%.*s' is not supported, "
                     "expected 'llama'", gguf_path(f), (int)len, s);
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
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if ((rc = gguf_require_float(f, key, &v, err)))
        return rc;
    c->rms_eps = (float)v;
    c->rope = MODEL_ROPE_NORMAL;
    c->bos_id = optional_id(f, "tokenizer.ggml.bos_token_id");
    c->eos_id = optional_id(f, "tokenizer.ggml.eos_token_id");
    c->eot_id = optional_id(f, "tokenizer.ggml.eot_token_id");
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

static int load_norm(model *m, const gguf_file *f, const char *name, float **out, kv_err *err)
{
    int d = m->cfg.n_embd;
    const gguf_tensor *t = find_shaped(f, name, d, 0, err);
    if (!t)
        return err ? err->code : KV_ENOTFOUND;
    if (!(*out = malloc((size_t)d * sizeof **out)))
        return kv_errorf(err, KV_ENOMEM, "out of memory for '%s'", name);
    m->weight_bytes += (size_t)d * sizeof **out;
    int rc = dequant_row(t->type, t->data, *out, d, err);
    return rc ? kv_err_prefix(err, "%s: tensor '%s': ", gguf_path(f), name) : 0;
}

static int load_matrix(model *m, const gguf_file *f, const char *name, int rows, int cols,
                       qmatrix *w, kv_err *err)
{
    const gguf_tensor *t = find_shaped(f, name, cols, rows, err);
    if (!t)
        return err ? err->code : KV_ENOTFOUND;
    size_t bytes = (size_t)rows * (cols / QBLOCK) * sizeof(qblock);
    *w = (qmatrix){.blocks = malloc(bytes), .rows = rows, .cols = cols};
    if (!w->blocks)
        return kv_errorf(err, KV_ENOMEM, "out of memory for '%s' (%zu bytes)", name, bytes);
    m->weight_bytes += bytes;
    int rc = model__qmatrix_from_gguf(w, t->type, t->data, err);
    return rc ? kv_err_prefix(err, "%s: tensor '%s': ", gguf_path(f), name) : 0;
}

static int load_layer(model *m, const gguf_file *f, int l, kv_err *err)
{
    const model_config *c = &m->cfg;
    model_layer *w = &m->layers[l];
    int d = c->n_embd, q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    char name[64];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix ".weight", l), name)
    int rc;
    if ((rc = load_norm(m, f, BLK("attn_norm"), &w->attn_norm, err)) ||
        (rc = load_matrix(m, f, BLK("attn_q"), q_dim, d, &w->wq, err)) ||
        (rc = load_matrix(m, f, BLK("attn_k"), kv_dim, d, &w->wk, err)) ||
        (rc = load_matrix(m, f, BLK("attn_v"), kv_dim, d, &w->wv, err)) ||
        (rc = load_matrix(m, f, BLK("attn_output"), d, q_dim, &w->wo, err)) ||
        (rc = load_norm(m, f, BLK("ffn_norm"), &w->ffn_norm, err)) ||
        (rc = load_matrix(m, f, BLK("ffn_gate"), c->n_ff, d, &w->w_gate, err)) ||
        (rc = load_matrix(m, f, BLK("ffn_up"), c->n_ff, d, &w->w_up, err)) ||
        (rc = load_matrix(m, f, BLK("ffn_down"), d, c->n_ff, &w->w_down, err)))
        return rc;
#undef BLK
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
    if (rc || (rc = load_norm(m, f, "output_norm.weight", &m->output_norm, err)))
        return rc;
    c->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (c->tied_output)
        m->output = m->tok_embd;
    else if ((rc = load_matrix(m, f, "output.weight", c->n_vocab, c->n_embd, &m->output, err)))
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
    if (!rc && !(rc = read_config(f, &m->cfg, err)) && !(rc = check_config(f, &m->cfg, err)))
        rc = load_weights(m, f, err);
    gguf_close(f);
    if (rc) {
        model_free(m);
        return NULL;
    }
    return m;
}

static void free_layer(model_layer *w)
{
    free(w->attn_norm);
    free(w->wq.blocks);
    free(w->wk.blocks);
    free(w->wv.blocks);
    free(w->wo.blocks);
    free(w->ffn_norm);
    free(w->w_gate.blocks);
    free(w->w_up.blocks);
    free(w->w_down.blocks);
}

void model_free(model *m)
{
    if (!m)
        return;
    for (int l = 0; m->layers && l < m->cfg.n_layer; l++)
        free_layer(&m->layers[l]);
    free(m->layers);
    if (m->output.blocks != m->tok_embd.blocks)
        free(m->output.blocks);
    free(m->tok_embd.blocks);
    free(m->output_norm);
    model__scratch_free(&m->s);
    free(m);
}

/* ---- small accessors ------------------------------------------------------------- */

const model_config *model_config_of(const model *m) { return &m->cfg; }
void   model_set_rope(model *m, model_rope rope) { m->cfg.rope = rope; }
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
