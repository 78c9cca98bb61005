/*
 * test_gemma.c — Gemma 3 270M ($KV_GEMMA_MODEL, `make model MODEL=gemma3-270m`) through
 * model/model.h, against HF transformers running the same GGUF file
 * (tests/fixtures/gemma3_hf.bin, made by make_gemma_fixtures.py): teacher-forced logits
 * over more than 500 positions, attention rows of local (sliding-window) and global
 * layers, greedy continuations; and the geometry the model reports, `kvtrace run` and
 * `kvtrace record` on it.  Agreement figures are printed to stderr.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_arrays.h"
#include "model.h"
#include "sampler.h"
#include "test_shell.h"

#define CHUNK 128  /* positions per forward call: Gemma's logits are 1 MB a row */

static model *open_gemma(void)
{
    kv_err err = {0};
    model *m = model_open(test_gemma_model(), &err);
    cr_assert_not_null(m, "model_open: %s", err.msg);
    return m;
}

static void load_fixture(fx_file *fx)
{
    cr_assert_eq(fx_load(fx, "gemma3_hf.bin"), 0, "tests/fixtures/gemma3_hf.bin: run "
                 "tests/fixtures/make_gemma_fixtures.py");
}

Test(gemma, geometry_of_local_and_global_layers)
{
    model *m = open_gemma();
    const model_config *c = model_config_of(m);
    cr_assert_str_eq(c->arch, "gemma3");
    cr_assert_eq(c->n_layer, 18);
    cr_assert_eq(c->n_sliding, 15, "global layers are 5, 11 and 17");
    cr_assert_eq(c->eot_id, 106, "<end_of_turn> ends a reply");
    cr_assert_float_eq(c->embd_scale, sqrtf(640.0f), 1e-6);
    for (int l = 0; l < c->n_layer; l++) {
        const model_geometry *g = model_layer_geometry(m, l);
        int global = l % 6 == 5;
        cr_assert_eq(g->mask, global ? MODEL_MASK_CAUSAL : MODEL_MASK_SLIDING, "layer %d", l);
        cr_assert_eq(g->window, global ? 0 : 512, "layer %d", l);
        cr_assert_float_eq(g->rope_base, global ? 1e6f : 1e4f, 1e-3, "layer %d", l);
        cr_assert_eq(g->rope, MODEL_ROPE_NEOX);
        cr_assert_eq(g->rope_scaling, MODEL_ROPE_SCALING_NONE);
        cr_assert_float_eq(g->attn_scale, 1.0f / 16.0f, 0.0);
        cr_assert_float_eq(g->softcap, 0.0f, 0.0);
    }
    cr_assert_null(model_layer_geometry(m, 18));
    model_free(m);
}

/* Teacher-forced: our argmax against HF's top-1, and our logits at HF's top-10 ids. */
typedef struct agreement {
    int    positions, top1;
    double max_dlogit;
} agreement;

static void compare_prompt(model *m, const fx_file *fx, int p, agreement *a)
{
    const fx_array *ids = fx_get(fx, "p%d.ids", p), *top = fx_get(fx, "p%d.top_ids", p);
    const fx_array *top_l = fx_get(fx, "p%d.top_logits", p);
    const int32_t *ti = top->data;
    const float *tl = top_l->data;
    int T = ids->dims[0], V = model_config_of(m)->n_vocab;
    float *logits = malloc((size_t)CHUNK * V * sizeof *logits);
    kv_cache *c = model_cache_new(m, T, NULL);
    cr_assert(logits && c);
    for (int t0 = 0; t0 < T; t0 += CHUNK) {
        int n = T - t0 < CHUNK ? T - t0 : CHUNK;
        kv_err err = {0};
        cr_assert_eq(model_forward(m, c, (const int32_t *)ids->data + t0, n, MODEL_LOGITS_ALL,
                                   logits, NULL, &err), 0, "%s", err.msg);
        for (int i = 0; i < n; i++) {
            const float *row = logits + (size_t)i * V;
            int t = t0 + i;
            a->positions++;
            a->top1 += sampler_argmax(row, V) == ti[t * 10];
            for (int j = 0; j < 10; j++)
                a->max_dlogit = fmax(a->max_dlogit, fabs(row[ti[t * 10 + j]] - tl[t * 10 + j]));
        }
    }
    kv_cache_free(c);
    free(logits);
}

Test(gemma, teacher_forced_logits_agree_with_transformers, .timeout = 900)
{
    model *m = open_gemma();
    fx_file fx;
    load_fixture(&fx);
    agreement a = {0};
    for (int p = 0; p < 3; p++)
        compare_prompt(m, &fx, p, &a);
    fprintf(stderr, "gemma3 forward vs transformers: %d positions, top-1 %.2f%%, max |dlogit| "
            "%.2e (HF's top-10 entries)\n", a.positions, 100.0 * a.top1 / a.positions,
            a.max_dlogit);
    cr_assert_geq(a.positions, 500);
    cr_assert_geq(a.top1, 0.99 * a.positions);
    cr_assert_lt(a.max_dlogit, 1e-2);
    fx_free(&fx);
    model_free(m);
}

/* Rows of the fixture's (layer, head) pairs at its query positions. */
typedef struct row_capture {
    const int32_t *pairs, *qpos;   /* (P, 2), (Q,) */
    int            P, Q, T;
    float         *rows;           /* (P, Q, T) */
    int            seen;
} row_capture;

static void capture_row(void *ctx, int layer, int q_head, int pos, const float *probs, int n)
{
    row_capture *c = ctx;
    for (int i = 0; i < c->P; i++)
        for (int q = 0; q < c->Q; q++)
            if (c->pairs[2 * i] == layer && c->pairs[2 * i + 1] == q_head && c->qpos[q] == pos) {
                memcpy(c->rows + ((size_t)i * c->Q + q) * c->T, probs, (size_t)n * sizeof *probs);
                __atomic_add_fetch(&c->seen, 1, __ATOMIC_RELAXED);
            }
}

Test(gemma, attention_rows_of_local_and_global_layers_agree_with_transformers, .timeout = 900)
{
    model *m = open_gemma();
    fx_file fx;
    load_fixture(&fx);
    const fx_array *ids = fx_get(&fx, "p%d.ids", 0), *pairs = fx_find(&fx, "attn.pairs");
    const fx_array *qpos = fx_find(&fx, "attn.pos"), *ref = fx_find(&fx, "attn.rows");
    cr_assert(pairs && qpos && ref);
    int T = ids->dims[0];
    row_capture cap = {.pairs = pairs->data, .qpos = qpos->data, .P = pairs->dims[0],
                       .Q = qpos->dims[0], .T = T};
    cap.rows = calloc((size_t)cap.P * cap.Q * T, sizeof(float));
    model_hooks hooks = {.attn_row = capture_row, .ctx = &cap};
    kv_cache *c = model_cache_new(m, T, NULL);
    cr_assert_eq(model_forward(m, c, ids->data, T, MODEL_LOGITS_NONE, NULL, &hooks, NULL), 0);
    cr_assert_eq(cap.seen, cap.P * cap.Q);
    double max[2] = {0, 0};   /* local, global */
    int outside = 0;
    for (int i = 0; i < cap.P; i++) {
        const model_geometry *g = model_layer_geometry(m, cap.pairs[2 * i]);
        for (int q = 0; q < cap.Q; q++) {
            const float *got = cap.rows + ((size_t)i * cap.Q + q) * T;
            const float *want = (const float *)ref->data + ((size_t)i * cap.Q + q) * T;
            for (int k = 0; k < T; k++) {
                max[g->mask == MODEL_MASK_CAUSAL] = fmax(max[g->mask == MODEL_MASK_CAUSAL],
                                                         fabs(got[k] - want[k]));
                if (g->mask == MODEL_MASK_SLIDING && k <= cap.qpos[q] - g->window)
                    outside += got[k] != 0.0f;
            }
        }
    }
    fprintf(stderr, "gemma3 attention rows vs transformers: %d (layer, head) pairs x %d rows of "
            "%d keys, max |dp| %.2e (local layers), %.2e (global)\n", cap.P, cap.Q, T, max[0], max[1]);
    cr_assert_eq(outside, 0, "a local layer's row is zero outside its window");
    cr_assert_lt(max[0], 1e-4);
    cr_assert_lt(max[1], 1e-4);
    free(cap.rows);
    kv_cache_free(c);
    fx_free(&fx);
    model_free(m);
}

/* Greedy decoding one token at a time (the matrix-vector path). */
Test(gemma, greedy_generation_matches_transformers, .timeout = 900)
{
    model *m = open_gemma();
    fx_file fx;
    load_fixture(&fx);
    int V = model_config_of(m)->n_vocab;
    float *logits = malloc((size_t)V * sizeof *logits);
    for (int g = 0; g < 2; g++) {
        const fx_array *prompt = fx_get(&fx, "gen%d.prompt", g), *gen = fx_get(&fx, "gen%d.ids", g);
        int n = gen->dims[0], same = 0;
        kv_cache *c = model_cache_new(m, prompt->dims[0] + n, NULL);
        cr_assert_eq(model_forward(m, c, prompt->data, prompt->dims[0], MODEL_LOGITS_LAST, logits,
                                   NULL, NULL), 0);
        for (int i = 0; i < n; i++) {
            int32_t next = sampler_argmax(logits, V);
            if (next != ((int32_t *)gen->data)[i])
                break;
            same++;
            cr_assert_eq(model_forward(m, c, &next, 1, MODEL_LOGITS_LAST, logits, NULL, NULL), 0);
        }
        fprintf(stderr, "gemma3 greedy generation %d vs transformers: %d of %d tokens identical\n",
                g, same, n);
        cr_assert_geq(same, 32);
        kv_cache_free(c);
    }
    free(logits);
    fx_free(&fx);
    model_free(m);
}

/* The prompt, "The capital of France is", continues " the capital of the
 * country of France. It is the largest city in France..." here and in transformers
 * alike (fixture gen0, checked above): this is the base model.  One more word and it
 * names the city. */
Test(gemma, kvtrace_run_knows_the_capital_of_france)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "\"%s/kvtrace\" run \"%s\" 'The capital of France is the city of' "
             "--max-new-tokens 4 2>/dev/null", getenv("KV_BIN"), test_gemma_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    fprintf(stderr, "gemma3: The capital of France is the city of%s", out);
    cr_assert(strstr(out, "Paris"), "greedy continuation: '%s'", out);
}
