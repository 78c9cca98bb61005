/*
 * model_device.c — the model's forward pass on a CUDA device (model_set_device), behind
 * model_forward(): the weights go to gpu/gpu_forward.h as the GGUF file stores them,
 * and each call's new keys and values come back to join the CPU's kv_cache, so every
 * caller (record, run, generate with the full cache) sees the cache it always saw.
 *
 * What the CUDA path does not do (model__forward_device refuses it, naming the CPU as
 * the way): attention rows for the hook (rows are not copied back; a row-free trace
 * needs only queries, keys and values), a cache that has lost entries (live eviction),
 * and gptneox.  Queries go to the query hook from the copied-back buffer, in the order
 * model.h promises.
 */
#include "model_impl.h"

#include "gpu.h"
#include "gpu_forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEVICE_MAX_TOKENS 512    /* tokens per device call; longer calls are split */
#define DEVICE_MAX_CTX    32768  /* positions the device cache holds at most */

struct model_device {
    gpu_forward *g;
    float *k, *v, *q;           /* page-locked (n_layer, DEVICE_MAX_TOKENS, width) */
    int32_t *pos;               /* (DEVICE_MAX_TOKENS,) */
};

/* ---- the description of the weights ---------------------------------------------------- */

static gpu_tensor tensor(const gguf_file *f, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return (gpu_tensor){0};
    return (gpu_tensor){.type = t->type, .data = t->data, .rows = (int)t->ne[1],
                        .cols = (int)t->ne[0]};
}

static void describe_layer(const model *m, const gguf_file *f, int l, gpu_layer_desc *w)
{
    char name[96];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), tensor(f, name))
    *w = (gpu_layer_desc){
        .attn_norm = BLK("attn_norm.weight"), .wq = BLK("attn_q.weight"),
        .wk = BLK("attn_k.weight"), .wv = BLK("attn_v.weight"), .wo = BLK("attn_output.weight"),
        .bq = BLK("attn_q.bias"), .bk = BLK("attn_k.bias"), .bv = BLK("attn_v.bias"),
        .q_norm = BLK("attn_q_norm.weight"), .k_norm = BLK("attn_k_norm.weight"),
        .post_attn_norm = BLK("post_attention_norm.weight"), .ffn_norm = BLK("ffn_norm.weight"),
        .w_gate = BLK("ffn_gate.weight"), .w_up = BLK("ffn_up.weight"),
        .w_down = BLK("ffn_down.weight"), .post_ffn_norm = BLK("post_ffw_norm.weight"),
    };
#undef BLK
    const model_geometry *g = &m->geom[l];
    w->window = g->mask == MODEL_MASK_SLIDING ? g->window : 0;
    w->rope_neox = g->rope == MODEL_ROPE_NEOX;
    w->n_rot = g->n_rot;
    w->rope_base = g->rope_base;
    w->rope_scaling = (int)g->rope_scaling;   /* the same numbering as FWD_ROPE_SCALING_* */
    w->rope_scale = g->rope_scale;
    w->rope_factors = g->rope_factors;
    w->attn_scale = g->attn_scale;
    w->softcap = g->softcap;
}

static gpu_forward *upload(const model *m, const gguf_file *f, kv_err *err)
{
    const model_config *c = &m->cfg;
    gpu_layer_desc *layers = calloc((size_t)c->n_layer, sizeof *layers);
    if (!layers) {
        kv_errorf(err, KV_ENOMEM, "out of memory");
        return NULL;
    }
    for (int l = 0; l < c->n_layer; l++)
        describe_layer(m, f, l, &layers[l]);
    gpu_model_desc d = {
        .n_layer = c->n_layer, .n_embd = c->n_embd, .n_ff = c->n_ff, .n_head = c->n_head,
        .n_head_kv = c->n_head_kv, .head_dim = c->head_dim, .n_vocab = c->n_vocab,
        .rms_eps = c->rms_eps, .embd_scale = c->embd_scale, .final_softcap = c->final_softcap,
        .geglu = c->ffn == MODEL_FFN_GEGLU, .tok_embd = tensor(f, "token_embd.weight"),
        .output = tensor(f, "output.weight"), .output_norm = tensor(f, "output_norm.weight"),
        .layers = layers,
    };
    char why[256];
    const int n_ctx = c->n_ctx < DEVICE_MAX_CTX ? c->n_ctx : DEVICE_MAX_CTX;
    gpu_forward *g = gpu_forward_new(&d, n_ctx, DEVICE_MAX_TOKENS, why, sizeof why);
    free(layers);
    if (!g)
        kv_errorf(err, KV_EUNSUPPORTED, "%s: the CUDA forward pass: %s", gguf_path(f), why);
    return g;
}

static int alloc_host(model_device *dv, const model_config *c, kv_err *err)
{
    size_t rows = (size_t)c->n_layer * DEVICE_MAX_TOKENS * sizeof(float);
    dv->k = gpu_host_alloc(rows * c->n_head_kv * c->head_dim);
    dv->v = gpu_host_alloc(rows * c->n_head_kv * c->head_dim);
    dv->q = gpu_host_alloc(rows * c->n_head * c->head_dim);
    dv->pos = malloc(DEVICE_MAX_TOKENS * sizeof *dv->pos);
    if (!dv->k || !dv->v || !dv->q || !dv->pos)
        return kv_errorf(err, KV_ENOMEM, "out of page-locked memory for the CUDA forward's "
                         "copies back");
    return 0;
}

/* ---- choosing the device ------------------------------------------------------------- */

void model__device_free(model_device *dv)
{
    if (!dv)
        return;
    gpu_forward_free(dv->g);
    gpu_host_free(dv->k), gpu_host_free(dv->v), gpu_host_free(dv->q);
    free(dv->pos);
    free(dv);
}

int model_set_device(model *m, const gguf_file *f, const char *device, kv_err *err)
{
    if (!device)
        device = "cpu";
    const int cuda = !strcmp(device, "cuda"), autod = !strcmp(device, "auto");
    if (!cuda && !autod && strcmp(device, "cpu"))
        return kv_errorf(err, KV_EUSAGE, "--device '%s': expected cpu, cuda or auto", device);
    model__device_free(m->dev);
    m->dev = NULL;
    if (!cuda && !autod)
        return 0;
    char desc[256];
    const int have = gpu_device_count(desc, sizeof desc) > 0;
    if (autod && (!have || m->cfg.arch_id == MODEL_ARCH_GPTNEOX))
        return 0;   /* auto: the CPU, where CUDA cannot serve */
    if (!have)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: %s", desc);
    if (m->cfg.arch_id == MODEL_ARCH_GPTNEOX)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: the CUDA forward pass does not "
                         "run %s models yet (use --device cpu)", m->cfg.arch);
    model_device *dv = calloc(1, sizeof *dv);
    if (!dv)
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    int rc = alloc_host(dv, &m->cfg, err);
    if (!rc && !(dv->g = upload(m, f, err)))
        rc = err->code;
    if (rc) {
        model__device_free(dv);
        return rc;
    }
    m->dev = dv;
    return 0;
}

const char *model_device_name(const model *m)
{
    return m->dev ? gpu_forward_device(m->dev->g) : "cpu";
}

/* ---- the forward pass through the device ------------------------------------------------ */

/* The device keeps the full sequence: a cache that has lost entries cannot follow. */
static int check_full(const kv_cache *cache, kv_err *err)
{
    const int next = kv_cache_next_pos(cache);
    for (int l = 0; l < kv_cache_n_layer(cache); l++)
        for (int h = 0; h < kv_cache_n_kv_head(cache); h++)
            if (kv_cache_size(cache, l, h) != next)
                return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda keeps the full KV "
                                 "cache; live eviction runs on the CPU (--device cpu)");
    return 0;
}

/* The piece's keys and values join the CPU cache; its queries go to the hook. */
static void take_back(model *m, kv_cache *cache, int n, const model_hooks *hooks)
{
    const model_config *c = &m->cfg;
    const model_device *dv = m->dev;
    const int hd = c->head_dim, kvd = c->n_head_kv * hd, qd = c->n_head * hd;
    for (int l = 0; l < c->n_layer; l++) {
        const size_t at = (size_t)l * n;
        for (int h = 0; h < c->n_head_kv; h++)
            kv_cache_append(cache, l, h, dv->k + at * kvd + (size_t)h * hd,
                            dv->v + at * kvd + (size_t)h * hd, (size_t)kvd, dv->pos, n, NULL);
        for (int h = 0; hooks && hooks->query && h < c->n_head; h++)
            for (int t = 0; t < n; t++)
                hooks->query(hooks->ctx, l, h, dv->pos[t],
                             dv->q + (at + (size_t)t) * qd + (size_t)h * hd, hd);
    }
}

int model__forward_device(model *m, kv_cache *cache, const int32_t *tokens, int n,
                          model_logits which, float *logits, const model_hooks *hooks,
                          kv_err *err)
{
    model_device *dv = m->dev;
    int rc = check_full(cache, err);
    if (!rc && hooks && hooks->attn_row)
        rc = kv_errorf(err, KV_EUNSUPPORTED, "--device cuda copies no attention rows back "
                       "(it records row-free traces and runs the full cache): use --device "
                       "cpu for stored rows and live eviction");
    if (rc || (rc = kv_cache_reserve(cache, n, err)))
        return rc;
    const int V = m->cfg.n_vocab, pos0 = kv_cache_next_pos(cache);
    if (pos0 == 0)
        gpu_forward_reset(dv->g);   /* a new cache: the device starts over too */
    for (int t0 = 0; t0 < n; t0 += DEVICE_MAX_TOKENS) {
        const int k = n - t0 < DEVICE_MAX_TOKENS ? n - t0 : DEVICE_MAX_TOKENS;
        const int last = t0 + k == n;
        gpu_forward_out out = {.k = dv->k, .v = dv->v, .q = hooks && hooks->query ? dv->q : NULL};
        if (which == MODEL_LOGITS_ALL)
            out.logits = logits + (size_t)t0 * V, out.n_logits = k;
        else if (which == MODEL_LOGITS_LAST && last)
            out.logits = logits, out.n_logits = 1;
        for (int t = 0; t < k; t++)
            dv->pos[t] = pos0 + t0 + t;
        char why[256];
        if (gpu_forward_run(dv->g, tokens + t0, k, pos0 + t0, &out, why, sizeof why))
            return kv_errorf(err, KV_EIO, "the CUDA forward pass: %s", why);
        take_back(m, cache, k, hooks);
    }
    kv_cache_advance(cache, n);
    return 0;
}
