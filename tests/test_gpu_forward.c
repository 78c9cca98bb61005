/*
 * test_gpu_forward.c — the CUDA forward pass's per-element rules (gpu/forward_rules.h)
 * run on the CPU against the CPU runtime they must reproduce: every dequantiser bit for
 * bit against model/dequant.c's dequant_row, RoPE frequencies and rotation bit for bit
 * against model_rope_shift, the softcap against attention_softcap, and the activations
 * and RMSNorm scale against double-precision formulas.  Then `--device`: its words,
 * its error without a device, and — on a machine with a CUDA device only (skipped
 * otherwise: CI has none) — the CUDA forward's logits against the CPU's.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attention.h"
#include "dequant.h"
#include "forward_rules.h"
#include "gguf.h"
#include "gguf_builder.h"
#include "gpu.h"
#include "model.h"
#include "test_shell.h"
#include "tokenizer.h"

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A block of random bytes whose fp16 fields are finite: the scales of every layout
 * (d and m, or d and dmin, or Q6_K's d) are overwritten with values in ±[2^-10, 2]. */
static void random_block(int type, uint8_t *b, int bytes, uint32_t *s)
{
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)next_rand(s);
    int at[2] = {-1, -1};
    switch (type) {
    case FWD_F16: at[0] = 0; break;
    case FWD_Q4_0: case FWD_Q5_0: case FWD_Q8_0: case FWD_IQ4_NL: at[0] = 0; break;
    case FWD_Q4_1: case FWD_Q5_1: case FWD_Q4_K: case FWD_Q5_K: at[0] = 0, at[1] = 2; break;
    case FWD_Q6_K: at[0] = 208; break;
    case FWD_F32: {
        float f = (float)(int)(next_rand(s) % 2001 - 1000) / 97.0f;
        memcpy(b, &f, 4);
        return;
    }
    case FWD_BF16: b[1] = (uint8_t)(0x3c + next_rand(s) % 4); return;
    default: return;
    }
    for (int k = 0; k < 2; k++)
        if (at[k] >= 0) {   /* exponent 5..16 (2^-10 .. 2), random sign and mantissa */
            uint16_t h = (uint16_t)((next_rand(s) & 0x8000u) | (5 + next_rand(s) % 12) << 10 |
                                    (next_rand(s) & 0x3ffu));
            b[at[k]] = (uint8_t)h, b[at[k] + 1] = (uint8_t)(h >> 8);
        }
}

Test(gpu_forward, type_ids_and_block_sizes_are_ggmls)
{
    const int ids[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                       GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                       GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_BF16};
    const int fwd[] = {FWD_F32, FWD_F16, FWD_Q4_0, FWD_Q4_1, FWD_Q5_0, FWD_Q5_1, FWD_Q8_0,
                       FWD_Q4_K, FWD_Q5_K, FWD_Q6_K, FWD_IQ4_NL, FWD_BF16};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        cr_assert_eq(fwd[i], ids[i], "%s", ggml_type_name(ids[i]));
        cr_assert_eq(fwd_block_elems(fwd[i]), ggml_type_block(ids[i]), "%s", ggml_type_name(ids[i]));
        cr_assert_eq(fwd_block_bytes(fwd[i]), ggml_type_bytes(ids[i]), "%s", ggml_type_name(ids[i]));
    }
    cr_assert_eq(fwd_block_elems(GGML_TYPE_Q2_K), 0, "a type without a rule is refused");
}

/* Every element of 200 random rows of 512 of each type: fwd_dequant_at == dequant_row. */
Test(gpu_forward, dequantisers_are_dequant_row_bit_for_bit)
{
    const int types[] = {FWD_F32, FWD_F16, FWD_BF16, FWD_Q4_0, FWD_Q4_1, FWD_Q5_0, FWD_Q5_1,
                         FWD_Q8_0, FWD_Q4_K, FWD_Q5_K, FWD_Q6_K, FWD_IQ4_NL};
    enum { N = 512 };
    static uint8_t row[N * 4];
    static float cpu[N];
    uint32_t s = 7;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const int type = types[ti], be = fwd_block_elems(type), bb = fwd_block_bytes(type);
        long mismatches = 0;
        for (int r = 0; r < 200; r++) {
            for (int b = 0; b < N / be; b++)
                random_block(type, row + (size_t)b * bb, bb, &s);
            kv_err err = {0};
            cr_assert_eq(dequant_row(type, row, cpu, N, &err), 0, "%s", err.msg);
            for (int i = 0; i < N; i++) {
                float g = fwd_dequant_at(type, row, i);
                mismatches += memcmp(&g, &cpu[i], 4) != 0;
            }
        }
        cr_assert_eq(mismatches, 0, "%s: %ld of %d elements differ from dequant_row",
                     ggml_type_name(type), mismatches, 200 * N);
    }
}

static model *open_fixture(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", getenv("KV_FIXTURES"), name);
    kv_err err = {0};
    model *m = model_open(path, &err);
    cr_assert_not_null(m, "%s: %s", path, err.msg);
    return m;
}

/* The device's rotation by the host's table (forward_rules.h) of a vector at position
 * 0 to position p is the CPU's model_rope_shift by p, bit for bit: llama 3's scaled
 * frequencies with NORMAL pairs, and qwen2's NEOX halves. */
Test(gpu_forward, rope_is_the_cpus_frequencies_and_pairing_bit_for_bit)
{
    const char *files[] = {"tiny_llama3.gguf", "tiny_qwen2.gguf"};
    for (int fi = 0; fi < 2; fi++) {
        model *m = open_fixture(files[fi]);
        const model_config *c = model_config_of(m);
        const model_geometry *g = model_layer_geometry(m, 0);
        float *cpu = malloc((size_t)c->head_dim * sizeof *cpu);
        float *dev = malloc((size_t)c->head_dim * sizeof *dev);
        uint32_t s = 3;
        for (int p = 1; p < 3000; p += 37) {
            for (int j = 0; j < c->head_dim; j++)
                cpu[j] = dev[j] = (float)((int)(next_rand(&s) % 2001) - 1000) / 300.0f;
            model_rope_shift(m, 0, cpu, 1, p);
            for (int i = 0; i < g->n_rot / 2; i++) {
                float f = fwd_rope_inv_freq(g->rope_base, g->n_rot, i, (int)g->rope_scaling,
                                            g->rope_scale, g->rope_factors);
                float angle = (float)p * f;
                int a, b = fwd_rope_pair(g->rope == MODEL_ROPE_NEOX, g->n_rot, i, &a);
                fwd_rope_rotate(&dev[a], &dev[b], cosf(angle), sinf(angle));
            }
            cr_assert_eq(memcmp(cpu, dev, (size_t)c->head_dim * sizeof *cpu), 0,
                         "%s: position %d", files[fi], p);
        }
        cr_assert(fi == 0 ? g->rope_scaling == MODEL_ROPE_SCALING_FREQS : g->rope == MODEL_ROPE_NEOX,
                  "%s: the fixture exercises what it is here for", files[fi]);
        free(cpu), free(dev);
        model_free(m);
    }
}

Test(gpu_forward, softcap_is_attention_softcap_and_activations_are_their_formulas)
{
    float x[1000];
    for (int i = 0; i < 1000; i++)
        x[i] = (float)(i - 500) / 7.0f;
    float capped[1000];
    memcpy(capped, x, sizeof x);
    attention_softcap(capped, 1000, 30.0f);
    for (int i = 0; i < 1000; i++) {
        float f = fwd_softcap(x[i], 30.0f);
        cr_assert_eq(memcmp(&f, &capped[i], 4), 0, "softcap(%g)", x[i]);
        double g = x[i], u = 0.75;
        double silu = g / (1.0 + exp(-g)) * u;
        double gelu = 0.5 * g * (1.0 + tanh(sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g))) * u;
        cr_assert(fabs(fwd_silu_mul(x[i], 0.75f) - silu) <= 1e-5 * (1 + fabs(silu)), "silu(%g)", g);
        cr_assert(fabs(fwd_gelu_tanh_mul(x[i], 0.75f) - gelu) <= 1e-5 * (1 + fabs(gelu)), "gelu(%g)", g);
    }
    double ss = 0;
    for (int i = 0; i < 1000; i++)
        ss += (double)x[i] * x[i];
    double r = 1.0 / sqrt(ss / 1000 + 1e-5);
    cr_assert(fabs(fwd_rms_scale((float)ss, 1000, 1e-5f) - r) <= 1e-6 * r);
}

/* ---- --device ----------------------------------------------------------------------- */

static int have_device(char *desc, size_t len) { return gpu_device_count(desc, len) > 0; }

Test(gpu_forward, device_words_and_no_device_are_clear_errors)
{
    model *m = open_fixture("tiny_llama3.gguf");
    char path[4096], desc[256];
    snprintf(path, sizeof path, "%s/tiny_llama3.gguf", getenv("KV_FIXTURES"));
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    cr_assert_not_null(f, "%s", err.msg);
    cr_assert_eq(model_set_device(m, f, "gpu", &err), KV_EUSAGE);
    cr_assert(strstr(err.msg, "cpu, cuda or auto"), "%s", err.msg);
    cr_assert_eq(model_set_device(m, f, "cpu", &err), 0);
    cr_assert_str_eq(model_device_name(m), "cpu");
    cr_assert_eq(model_set_device(m, f, "auto", &err), 0, "%s", err.msg);
    if (!have_device(desc, sizeof desc)) {
        cr_assert_str_eq(model_device_name(m), "cpu", "auto without a device is the CPU");
        err = (kv_err){0};
        cr_assert_eq(model_set_device(m, f, "cuda", &err), KV_EUNSUPPORTED);
        cr_assert(strstr(err.msg, "--device cuda") && strstr(err.msg, desc), "%s", err.msg);
    }
    gguf_close(f);
    model_free(m);
}

/* Through the shared option: cuda without a device is exit 1 and says why, an unknown
 * word exit 2 before the model is read (auto without a device: the test above). */
Test(gpu_forward, kvtrace_run_device_cuda_without_a_device_exits_1)
{
    char desc[256], cmd[8192], out[4096];
    const char *model = test_model();
    if (have_device(desc, sizeof desc))
        cr_skip_test("this machine has a CUDA device (%s): the no-device error cannot show", desc);
    const char *fmt = "%s/kvtrace run %s 'The capital of France is' --max-new-tokens 3 %s";
    snprintf(cmd, sizeof cmd, fmt, getenv("KV_BIN"), model, "--device cuda 2>&1");
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "--device cuda: ") && strstr(out, desc), "%s", out);
    snprintf(cmd, sizeof cmd, fmt, getenv("KV_BIN"), model, "--device tpu 2>&1");
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
}

/* ---- the CUDA forward against the CPU's (a device only) ------------------------------ */

/* Queries of two layers, every head, every position, captured by the query hook. */
typedef struct two_layers {
    int l[2], H, D, T;
    float *q;   /* (2, H, T, D) */
} two_layers;

static void capture_query(void *ctx, int layer, int h, int pos, const float *q, int d)
{
    two_layers *c = ctx;
    for (int i = 0; i < 2; i++)
        if (layer == c->l[i] && pos < c->T)
            memcpy(c->q + (((size_t)i * c->H + h) * c->T + pos) * c->D, q, (size_t)d * 4);
}

/* max |Δp| between the rows both sides' queries and keys give for layer index i:
 * rebuilt as the trace reader rebuilds them (attention.h). */
static double row_difference(const model *m, const two_layers *a, const kv_cache *ca,
                             const two_layers *b, const kv_cache *cb, int i)
{
    const model_config *c = model_config_of(m);
    const model_geometry *g = model_layer_geometry(m, a->l[i]);
    const int T = a->T, D = a->D;
    float *sa = malloc((size_t)T * T * 4), *sb = malloc((size_t)T * T * 4);
    double dmax = 0;
    for (int h = 0; h < c->n_head; h++) {
        const int kv = h / (c->n_head / c->n_head_kv);
        const float *qa = a->q + (((size_t)i * a->H + h) * T) * D;
        const float *qb = b->q + (((size_t)i * b->H + h) * T) * D;
        attention_scores(sa, T, qa, D, kv_cache_keys(ca, a->l[i], kv), T, T, D, g->attn_scale);
        attention_scores(sb, T, qb, D, kv_cache_keys(cb, a->l[i], kv), T, T, D, g->attn_scale);
        for (int r = 0; r < T; r++) {
            const int lo = g->window && r + 1 > g->window ? r + 1 - g->window : 0;
            for (float *row = sa; row; row = row == sa ? sb : NULL) {
                if (g->softcap > 0)
                    attention_softcap(row + (size_t)r * T + lo, (size_t)(r + 1 - lo), g->softcap);
                attention_softmax(row + (size_t)r * T, lo, r + 1, T);
            }
            for (int k = 0; k <= r; k++)
                dmax = fmax(dmax, fabs((double)sa[(size_t)r * T + k] - sb[(size_t)r * T + k]));
        }
    }
    free(sa), free(sb);
    return dmax;
}

/* The logits of tokens ids[0..T) in one call, then of `steps` single-token calls, on
 * the CPU and on CUDA; top-1 agreement, max |Δlogit| and (rows != 0) max |Δp| of the
 * first and last layers' rows go to the log.  fp16 weights and GEMM inputs against
 * the CPU's 8-bit blocks: top-1 must agree on 90% of positions, |Δlogit| stay under 5%
 * of the logits' range and |Δp| under 0.05 (bounds to tighten once measured). */
static void compare_devices(const char *path, const int32_t *ids, int T, int steps, int rows)
{
    char desc[256];
    if (!have_device(desc, sizeof desc))
        cr_skip_test("no CUDA device here: %s", desc);
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    model *cpu = model_open(path, &err), *gpu = model_open(path, &err);
    cr_assert(f && cpu && gpu, "%s", err.msg);
    cr_assert_eq(model_set_device(gpu, f, "cuda", &err), 0, "%s", err.msg);
    const model_config *c = model_config_of(cpu);
    const int N = T + steps, V = c->n_vocab;
    float *a = malloc((size_t)N * V * sizeof *a), *b = malloc((size_t)N * V * sizeof *b);
    two_layers qa = {{0, c->n_layer - 1}, c->n_head, c->head_dim, T, NULL}, qb = qa;
    qa.q = malloc((size_t)2 * c->n_head * T * c->head_dim * 4);
    qb.q = malloc((size_t)2 * c->n_head * T * c->head_dim * 4);
    model_hooks ha = {NULL, capture_query, &qa}, hb = {NULL, capture_query, &qb};
    kv_cache *ca = model_cache_new(cpu, N, &err), *cb = model_cache_new(gpu, N, &err);
    double start = omp_get_wtime();
    cr_assert_eq(model_forward(cpu, ca, ids, T, MODEL_LOGITS_ALL, a, rows ? &ha : NULL, &err), 0, "%s", err.msg);
    double mid = omp_get_wtime();
    cr_assert_eq(model_forward(gpu, cb, ids, T, MODEL_LOGITS_ALL, b, rows ? &hb : NULL, &err), 0, "%s", err.msg);
    double end = omp_get_wtime();
    for (int t = T; t < N; t++) {
        cr_assert_eq(model_forward(cpu, ca, ids + t, 1, MODEL_LOGITS_LAST, a + (size_t)t * V, NULL, &err), 0);
        cr_assert_eq(model_forward(gpu, cb, ids + t, 1, MODEL_LOGITS_LAST, b + (size_t)t * V, NULL, &err), 0, "%s", err.msg);
    }
    int agree = 0;
    double dmax = 0, lo = INFINITY, hi = -INFINITY;
    for (int t = 0; t < N; t++) {
        const float *x = a + (size_t)t * V, *y = b + (size_t)t * V;
        int ax = 0, ay = 0;
        for (int i = 0; i < V; i++) {
            ax = x[i] > x[ax] ? i : ax, ay = y[i] > y[ay] ? i : ay;
            dmax = fmax(dmax, fabs((double)x[i] - y[i]));
            lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
        }
        agree += ax == ay;
    }
    double dp[2] = {0, 0};
    for (int i = 0; rows && i < 2; i++)
        dp[i] = row_difference(cpu, &qa, ca, &qb, cb, i);
    cr_log_info("FORWARD %s on %s: %d tokens + %d steps: top-1 %.1f%% (%d/%d), max |dlogit| "
                "%.4f (logit range %.2f); rows of layers %d and %d: max |dp| %.2e, %.2e; "
                "prefill cpu %.3f s, cuda %.3f s (first call, uploads excluded)", path,
                model_device_name(gpu), T, steps, 100.0 * agree / N, agree, N, dmax, hi - lo,
                qa.l[0], qa.l[1], dp[0], dp[1], mid - start, end - mid);
    cr_expect_geq(agree * 10, N * 9, "top-1 agreement %d/%d", agree, N);
    cr_expect_leq(dmax, 0.05 * (hi - lo), "max |dlogit| %.4f of a range %.2f", dmax, hi - lo);
    cr_expect(dp[0] <= 0.05 && dp[1] <= 0.05, "max |dp| %.3g %.3g", dp[0], dp[1]);
    cr_expect_eq(kv_cache_size(cb, 0, 0), N, "the device's keys joined the CPU cache");
    kv_cache_free(ca), kv_cache_free(cb);
    free(a), free(b), free(qa.q), free(qb.q);
    model_free(cpu), model_free(gpu);
    gguf_close(f);
}

static void compare_on_ids(const char *path, int T, int steps)
{
    int32_t ids[64];
    for (int t = 0; t < T + steps; t++)
        ids[t] = (int32_t)((t * 7919 + 13) % 100);   /* the tiny vocabularies hold 128 */
    compare_devices(path, ids, T, steps, 1);
}

Test(gpu_forward, cuda_logits_are_the_cpus_on_the_tiny_families)
{
    const char *files[] = {"tiny_llama3.gguf", "tiny_mistral.gguf", "tiny_qwen2.gguf",
                           "tiny_qwen3.gguf"};
    char path[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", getenv("KV_FIXTURES"), files[i]);
        compare_on_ids(path, 24, 8);
    }
}

/* scripts/gpu_check.sh's figures: 512 tokens of bench/bench_prompt.txt then 32 more
 * steps on SmolLM2, rows of its first and last layers; Gemma 3 on ids. */
Test(gpu_forward, cuda_logits_are_the_cpus_on_smollm2_and_gemma3, .timeout = 600)
{
    const char *path = test_model();
    char desc[256], text[8192];
    if (!have_device(desc, sizeof desc))
        cr_skip_test("no CUDA device here: %s", desc);
    snprintf(text, sizeof text, "%s/bench/bench_prompt.txt", getenv("KV_ROOT"));
    FILE *fp = fopen(text, "rb");
    cr_assert_not_null(fp, "%s", text);
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    while (n > 0 && text[n - 1] != ' ')   /* whole words: no UTF-8 sequence cut */
        n--;
    text[n] = '\0';
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    tokenizer *tok = f ? tokenizer_from_gguf(f, &err) : NULL;
    tokenizer_ids ids = {0};
    cr_assert(tok && tokenizer_encode(tok, text, n, TOKENIZER_ADD_SPECIAL, &ids, &err) == 0, "%s", err.msg);
    cr_assert_geq(ids.n, 544, "bench_prompt.txt's first 8 KB give %zu tokens", ids.n);
    compare_devices(path, ids.ids, 512, 32, 1);
    tokenizer_ids_free(&ids);
    tokenizer_free(tok);
    gguf_close(f);
    compare_on_ids(test_gemma_model(), 40, 8);
}

/* ---- the random llama of gguf_builder_llama (the speed model of scripts/gpu_check.sh) -- */

Test(gpu_forward, a_random_llama_opens_tokenizes_and_runs)
{
    char dir[] = "/tmp/kv-llama-XXXXXX", path[300];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.gguf", dir);
    const gguf_llama_shape shape = {2, 64, 160, 4, 2, 300, 64};
    cr_assert_eq(gguf_builder_llama(path, &shape), 0);
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    model *m = f ? model_open(path, &err) : NULL;
    tokenizer *tok = m ? tokenizer_from_gguf(f, &err) : NULL;
    cr_assert(tok, "%s", err.msg);
    const model_config *c = model_config_of(m);
    cr_assert(c->n_layer == 2 && c->n_head_kv == 2 && c->head_dim == 16 && c->n_vocab == 300);
    tokenizer_ids ids = {0};
    cr_assert_eq(tokenizer_encode(tok, "héllo", 6, TOKENIZER_ADD_SPECIAL, &ids, &err), 0, "%s", err.msg);
    cr_assert_geq(ids.n, 6, "BOS and byte tokens");
    kv_cache *cache = model_cache_new(m, 16, &err);
    float *logits = malloc((size_t)ids.n * c->n_vocab * sizeof *logits);
    cr_assert_eq(model_forward(m, cache, ids.ids, (int)ids.n, MODEL_LOGITS_ALL, logits, NULL, &err), 0, "%s", err.msg);
    double spread = 0;
    for (size_t i = 0; i < ids.n * (size_t)c->n_vocab; i++) {
        cr_assert(isfinite(logits[i]));
        spread = fmax(spread, fabs(logits[i] - logits[0]));
    }
    cr_assert_gt(spread, 1e-3, "random weights give logits that differ");
    free(logits);
    kv_cache_free(cache);
    tokenizer_ids_free(&ids);
    tokenizer_free(tok);
    model_free(m);
    gguf_close(f);
    remove(path), rmdir(dir);
}

/* The 7B-shaped llama (LLaMA-2-7B's shapes, 3.8 GB) for scripts/gpu_check.sh: written
 * only when $KV_SYNTH_GGUF names where (skipped otherwise). */
Test(gpu_forward, write_the_7b_shaped_llama, .timeout = 600)
{
    const char *path = getenv("KV_SYNTH_GGUF");
    if (!path)
        cr_skip_test("$KV_SYNTH_GGUF is not set: scripts/gpu_check.sh writes the 7B-shaped model");
    const gguf_llama_shape shape = {32, 4096, 11008, 32, 32, 32000, 4096};
    cr_assert_eq(gguf_builder_llama(path, &shape), 0, "%s: cannot write", path);
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    cr_assert_not_null(f, "%s", err.msg);
    cr_assert_eq(gguf_n_tensors(f), 3 + 9 * 32);
    gguf_close(f);
}
