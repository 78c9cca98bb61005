/*
 * test_tiny.c — the other families of model/model.h on tiny random-weight GGUFs
 * (tests/fixtures/tiny_<family>.gguf, ~30 KB each) against HF transformers running the
 * same weights (tiny_hf.bin; both made by make_tiny_fixtures.py): llama with llama 3
 * RoPE scaling, mistral's sliding window, qwen2's Q/K/V biases, qwen3's QK-norm and
 * gptneox (LayerNorm with bias, fused QKV, partial rotary, GELU, parallel residual).
 * Every logit and every attention row of every layer and head is compared; and a
 * missing tensor or an unknown architecture is an error that names it.  No model
 * download: these run in the fast tier too.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_arrays.h"
#include "gguf_builder.h"
#include "model.h"

static model *open_tiny(const char *family)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tiny_%s.gguf", getenv("KV_FIXTURES"), family);
    kv_err err = {0};
    model *m = model_open(path, &err);
    cr_assert_not_null(m, "model_open: %s", err.msg);
    return m;
}

/* Every row of every (layer, head), captured in full: rows[l][h][t][0..t]. */
typedef struct all_rows {
    int    H, T;
    float *rows;   /* (L, H, T, T) */
} all_rows;

static void capture(void *ctx, int layer, int q_head, int pos, const float *p, int n)
{
    all_rows *c = ctx;
    memcpy(c->rows + (((size_t)layer * c->H + q_head) * c->T + pos) * c->T, p, (size_t)n * 4);
}

/* max |Δlogit| and max |Δp| of one family against transformers. */
static void compare(const char *family, double *dlogit, double *dp)
{
    fx_file fx;
    cr_assert_eq(fx_load(&fx, "tiny_hf.bin"), 0, "run tests/fixtures/make_tiny_fixtures.py");
    char name[64];
    snprintf(name, sizeof name, "%s.ids", family);
    const fx_array *ids = fx_find(&fx, name);
    snprintf(name, sizeof name, "%s.logits", family);
    const fx_array *logits = fx_find(&fx, name);
    snprintf(name, sizeof name, "%s.rows", family);
    const fx_array *rows = fx_find(&fx, name);
    cr_assert(ids && logits && rows, "%s: fixture arrays missing", family);
    model *m = open_tiny(family);
    const model_config *c = model_config_of(m);
    int T = ids->dims[0], V = c->n_vocab;
    cr_assert_eq(V, logits->dims[1]);
    cr_assert_eq(rows->dims[0], c->n_layer);
    cr_assert_eq(rows->dims[1], c->n_head);
    all_rows cap = {.H = c->n_head, .T = T, .rows = calloc(rows->count, sizeof(float))};
    float *got = malloc((size_t)T * V * sizeof *got);
    kv_cache *cache = model_cache_new(m, T, NULL);
    model_hooks hooks = {.attn_row = capture, .ctx = &cap};
    kv_err err = {0};
    cr_assert_eq(model_forward(m, cache, ids->data, T, MODEL_LOGITS_ALL, got, &hooks, &err), 0,
                 "%s", err.msg);
    *dlogit = *dp = 0.0;
    for (size_t i = 0; i < (size_t)T * V; i++)
        *dlogit = fmax(*dlogit, fabs(got[i] - ((float *)logits->data)[i]));
    for (size_t i = 0; i < rows->count; i++)
        *dp = fmax(*dp, fabs(cap.rows[i] - ((float *)rows->data)[i]));
    fprintf(stderr, "tiny %-8s vs transformers: %d tokens, max |dlogit| %.2e, max |dp| %.2e over "
            "%d x %d rows\n", family, T, *dlogit, *dp, c->n_layer, c->n_head);
    free(got);
    free(cap.rows);
    kv_cache_free(cache);
    model_free(m);
    fx_free(&fx);
}

static void agrees(const char *family)
{
    double dlogit, dp;
    compare(family, &dlogit, &dp);
    cr_assert_lt(dlogit, 1e-4, "%s: logits", family);
    cr_assert_lt(dp, 1e-5, "%s: attention rows", family);
}

Test(tiny, llama3_rope_scaling_agrees_with_transformers)
{
    agrees("llama3");
    model *m = open_tiny("llama3");
    const model_geometry *g = model_layer_geometry(m, 1);
    cr_assert_eq(g->rope_scaling, MODEL_ROPE_SCALING_FREQS);
    cr_assert_float_eq(g->rope_factors[7], 8.0f, 0.0, "low frequencies divided by the factor");
    cr_assert_eq(g->rope, MODEL_ROPE_NORMAL);
    model_free(m);
}

Test(tiny, mistral_sliding_window_agrees_with_transformers)
{
    agrees("mistral");
    model *m = open_tiny("mistral");
    for (int l = 0; l < 2; l++) {
        cr_assert_eq(model_layer_geometry(m, l)->mask, MODEL_MASK_SLIDING);
        cr_assert_eq(model_layer_geometry(m, l)->window, 8);
    }
    cr_assert_eq(model_config_of(m)->n_sliding, 2);
    model_free(m);
}

Test(tiny, qwen2_biases_agree_with_transformers) { agrees("qwen2"); }
Test(tiny, qwen3_qk_norm_agrees_with_transformers) { agrees("qwen3"); }

Test(tiny, gptneox_agrees_with_transformers)
{
    agrees("gptneox");
    model *m = open_tiny("gptneox");
    const model_config *c = model_config_of(m);
    cr_assert(c->parallel_residual && c->norm == MODEL_NORM_LAYER && c->ffn == MODEL_FFN_GELU);
    cr_assert_eq(model_layer_geometry(m, 0)->n_rot, 4, "rotary on 4 of 16 dimensions");
    model_free(m);
}

/* A one-token-at-a-time run equals the batch (the sliding window in the decode path). */
Test(tiny, decode_path_equals_the_batch_under_a_sliding_window)
{
    model *m = open_tiny("mistral");
    int V = model_config_of(m)->n_vocab;
    int32_t ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = (7 * i + 3) % V;
    float *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
    kv_cache *c1 = model_cache_new(m, 20, NULL), *c2 = model_cache_new(m, 20, NULL);
    cr_assert_eq(model_forward(m, c1, ids, 20, MODEL_LOGITS_LAST, a, NULL, NULL), 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(model_forward(m, c2, &ids[i], 1, MODEL_LOGITS_LAST, b, NULL, NULL), 0);
    double d = 0;
    for (int v = 0; v < V; v++)
        d = fmax(d, fabs(a[v] - b[v]));
    cr_assert_lt(d, 1e-4, "batch vs one by one: %g", d);
    free(a), free(b);
    kv_cache_free(c1), kv_cache_free(c2);
    model_free(m);
}

/* The qwen2 file with one bias renamed (same length, so the file stays valid). */
Test(tiny, a_missing_tensor_is_an_error_naming_it)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tiny_qwen2.gguf", getenv("KV_FIXTURES"));
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint8_t *hit = memmem(buf, n, "blk.1.attn_k.bias", 17);
    cr_assert_not_null(hit);
    memcpy(hit, "blk.1.attn_k.bixs", 17);
    char tmp[256];
    gguf_builder_write_temp(buf, n, "renamed.gguf", tmp);
    kv_err err = {0};
    cr_assert_null(model_open(tmp, &err));
    gguf_builder_remove_temp(tmp);
    cr_assert_eq(err.code, KV_ENOTFOUND);
    cr_assert(strstr(err.msg, "missing tensor 'blk.1.attn_k.bias'"), "%s", err.msg);
}
