/*
 * test_gemm.c — model/gemm.h, the prefill's products: each result is one chain of fused
 * multiply-adds over k from +0 (times the scale for gemm_nn), so the vector kernels, the
 * portable loops and a plain reference written here must agree bit for bit on every
 * shape, edge panels included; and the forward pass built on them gives the same
 * logits for any thread count and whether or not a hook forces heads in order.
 * Tolerance: none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "fp16.h"
#include "dequant.h"
#include "gemm.h"
#include "model_impl.h"
#include "test_shell.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;

static float uniform(float lo, float hi)   /* splitmix64 */
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 40) / (double)(1u << 24));
}

static float *random_floats(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = uniform(-scale, scale);
    return p;
}

/* A Q4_1 matrix of random blocks: d, m (fp16), 16 bytes of nibbles per 32 weights. */
static void random_q4_1(qmatrix *w, int rows, int cols)
{
    const size_t nb = (size_t)rows * cols / 32, bytes = nb * 20;
    uint8_t *data = malloc(bytes);
    cr_assert_not_null(data);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *p = data + b * 20;
        uint16_t d = fp16_from_f32(uniform(0.001f, 0.02f)), m = fp16_from_f32(uniform(-0.1f, 0.0f));
        memcpy(p, &d, 2);
        memcpy(p + 2, &m, 2);
        for (int i = 0; i < 16; i++)
            p[4 + i] = (uint8_t)(uniform(0.0f, 256.0f));
    }
    size_t held = 0;
    kv_err err = {0};
    cr_assert_eq(model__qmatrix_init(w, GGML_TYPE_Q4_1, rows, cols, data, 1, &held, &err), 0,
                 "%s", err.msg);
    cr_assert_not_null(w->raw, "Q4_1 is held as its own blocks");
    free(data);
}

/* out[t][r] = the chain over k of x[t][k] · W[r][k], W dequantised row by row. */
static float *reference(const float *x, int n, const qmatrix *w)
{
    float *out = malloc((size_t)n * w->rows * sizeof *out), *row = malloc((size_t)w->cols * 4);
    cr_assert(out && row);
    for (int r = 0; r < w->rows; r++) {
        model__qmatrix_row(row, w, r);
        for (int t = 0; t < n; t++) {
            float acc = 0.0f;
            for (int k = 0; k < w->cols; k++)
                acc = fmaf(x[(size_t)t * w->cols + k], row[k], acc);
            out[(size_t)t * w->rows + r] = acc;
        }
    }
    free(row);
    return out;
}

static void run_gemm(const float *x, int n, const gemm_job *jobs, int n_jobs, int portable)
{
    const int cols = jobs[0].w->cols;
    float *xp = malloc(gemm_pack_floats(n, cols) * sizeof *xp);
    float *panels = malloc((size_t)omp_get_max_threads() * gemm_panel_floats(cols) * 4);
    cr_assert(xp && panels);
    gemm(jobs, n_jobs, x, n, xp, panels, portable);
    free(xp), free(panels);
}

static int first_difference(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a))
            return (int)i;
    return -1;
}

/* Shapes with every kind of edge: tokens not a multiple of the 32 of a panel, rows not
 * a multiple of 12 (a panel) or 48 (a thread's group), and two jobs sharing x. */
Test(gemm, vector_portable_and_reference_agree_bit_for_bit)
{
    const int ns[] = {4, 31, 32, 33, 70}, rows[] = {12, 13, 50, 100}, colss[] = {32, 96, 576};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 3; c++) {
                const int n = ns[a], R = rows[b], cols = colss[c];
                qmatrix w1, w2;
                random_q4_1(&w1, R, cols);
                random_q4_1(&w2, 7, cols);
                float *x = random_floats((size_t)n * cols, 2.0f);
                const int ldo = R + 3;   /* out1 beside out2, as q beside k would be */
                float *fast = calloc((size_t)n * ldo, 4), *port = calloc((size_t)n * ldo, 4);
                float *fast2 = calloc((size_t)n * 7, 4), *port2 = calloc((size_t)n * 7, 4);
                cr_assert(fast && port && fast2 && port2);
                run_gemm(x, n, (gemm_job[]){{fast, ldo, &w1}, {fast2, 7, &w2}}, 2, 0);
                run_gemm(x, n, (gemm_job[]){{port, ldo, &w1}, {port2, 7, &w2}}, 2, 1);
                float *ref = reference(x, n, &w1), *ref2 = reference(x, n, &w2);
                for (int t = 0; t < n; t++) {
                    int i = first_difference(fast + (size_t)t * ldo, ref + (size_t)t * R, (size_t)R);
                    cr_assert_eq(i, -1, "n %d rows %d cols %d: token %d row %d: %a, reference %a",
                                 n, R, cols, t, i, fast[(size_t)t * ldo + i], ref[(size_t)t * R + i]);
                    i = first_difference(port + (size_t)t * ldo, ref + (size_t)t * R, (size_t)R);
                    cr_assert_eq(i, -1, "portable: n %d rows %d cols %d: token %d row %d", n, R,
                                 cols, t, i);
                }
                cr_assert_eq(first_difference(fast2, ref2, (size_t)n * 7), -1, "second job");
                cr_assert_eq(first_difference(port2, ref2, (size_t)n * 7), -1, "second job, portable");
                model__qmatrix_free(&w1), model__qmatrix_free(&w2);
                free(x), free(fast), free(port), free(fast2), free(port2), free(ref), free(ref2);
            }
}

/* gemm_nn on every rows remainder (of 6), column counts around the 16 and 64 of its
 * registers, strides wider than the matrices. */
Test(gemm, nn_vector_portable_and_reference_agree_bit_for_bit)
{
    const int Ms[] = {2, 5, 6, 7, 13, 64}, Ns[] = {1, 15, 16, 17, 63, 64, 65, 130}, Ks[] = {1, 64, 100};
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 8; b++)
            for (int c = 0; c < 3; c++) {
                const int M = Ms[a], N = Ns[b], K = Ks[c];
                const size_t lda = (size_t)K + 5, ldb = (size_t)N + 3, ldc = (size_t)N + 9;
                float *A = random_floats((size_t)M * lda, 1.0f), *B = random_floats((size_t)K * ldb, 1.0f);
                float *fast = calloc((size_t)M * ldc, 4), *port = calloc((size_t)M * ldc, 4);
                cr_assert(fast && port);
                gemm_nn(fast, ldc, A, lda, B, ldb, M, N, K, 0.125f, 0);
                gemm_nn(port, ldc, A, lda, B, ldb, M, N, K, 0.125f, 1);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        float acc = 0.0f;
                        for (int k = 0; k < K; k++)
                            acc = fmaf(A[(size_t)i * lda + k], B[(size_t)k * ldb + j], acc);
                        acc *= 0.125f;
                        cr_assert(!memcmp(&acc, &fast[(size_t)i * ldc + j], 4),
                                  "M %d N %d K %d (%d, %d): %a, reference %a", M, N, K, i, j,
                                  fast[(size_t)i * ldc + j], acc);
                        cr_assert(!memcmp(&acc, &port[(size_t)i * ldc + j], 4),
                                  "portable: M %d N %d K %d (%d, %d)", M, N, K, i, j);
                    }
                for (int i = 0; i < M; i++)   /* nothing written past N */
                    for (size_t j = (size_t)N; j < ldc; j++)
                        cr_assert_eq(fast[(size_t)i * ldc + j], 0.0f);
                free(A), free(B), free(fast), free(port);
            }
}

/* The scores of several queries from keys as stored equal those from keys transposed:
 * a trace's rebuilt rows are the forward pass's. */
Test(gemm, scores_from_keys_and_from_transposed_keys_agree)
{
    const int rows = 9, n_keys = 77, hd = 64, ldq = 3 * hd;
    float *q = random_floats((size_t)rows * ldq, 1.0f), *K = random_floats((size_t)n_keys * hd, 1.0f);
    float *kt = malloc((size_t)hd * n_keys * 4), *a = malloc((size_t)rows * n_keys * 4),
          *b = malloc((size_t)rows * n_keys * 4);
    cr_assert(kt && a && b);
    for (int d = 0; d < hd; d++)
        for (int k = 0; k < n_keys; k++)
            kt[(size_t)d * n_keys + k] = K[(size_t)k * hd + d];
    attention_scores(a, (size_t)n_keys, q, ldq, K, rows, n_keys, hd, 0.125f);
    attention_scores_kt(b, (size_t)n_keys, q, ldq, kt, (size_t)n_keys, rows, n_keys, hd, 0.125f);
    cr_assert_eq(first_difference(a, b, (size_t)rows * n_keys), -1);
    free(q), free(K), free(kt), free(a), free(b);
}

static void no_op_row(void *ctx, int layer, int q_head, int pos, const float *p, int n)
{
    (void)ctx, (void)layer, (void)q_head, (void)pos, (void)p, (void)n;
}

/* Logits (T, V) of a prompt in one call, on `threads` threads, with or without a hook. */
static float *logits_of(model *m, const int32_t *ids, int T, int threads, int hooked)
{
    const int V = model_config_of(m)->n_vocab;
    model_set_threads(threads);
    kv_err err = {0};
    kv_cache *c = model_cache_new(m, T, &err);
    float *out = malloc((size_t)T * V * sizeof *out);
    cr_assert(c && out, "%s", err.msg);
    const model_hooks hooks = {.attn_row = no_op_row};
    cr_assert_eq(model_forward(m, c, ids, T, MODEL_LOGITS_ALL, out, hooked ? &hooks : NULL,
                               &err), 0, "%s", err.msg);
    kv_cache_free(c);
    return out;
}

/* 150 tokens: several token panels and attention blocks of 64, whose work is spread
 * over threads differently for each count, and in (head, block) pairs unless a hook
 * needs a head's rows in order. */
Test(gemm, forward_batch_is_the_same_for_any_threads_and_hooks, .timeout = 300)
{
    const char *path = test_model();
    cr_assert_not_null(path, "KV_MODEL is not set");
    kv_err err = {0};
    model *m = model_open(path, &err);
    cr_assert_not_null(m, "model_open: %s", err.msg);
    enum { T = 150 };
    int32_t ids[T];
    for (int i = 0; i < T; i++)
        ids[i] = 300 + (i * 7919) % 20000;
    const size_t nv = (size_t)T * model_config_of(m)->n_vocab;
    float *one = logits_of(m, ids, T, 1, 0);
    const int runs[][2] = {{2, 0}, {3, 0}, {2, 1}, {1, 1}};
    for (int r = 0; r < 4; r++) {
        float *other = logits_of(m, ids, T, runs[r][0], runs[r][1]);
        const int i = first_difference(one, other, nv);
        cr_assert_eq(i, -1, "%d threads%s: logit %d differs from 1 thread's", runs[r][0],
                     runs[r][1] ? ", hooked" : "", i);
        free(other);
    }
    free(one);
    model_free(m);
}
