/* attention.c — see attention.h. */
#include "attention.h"

#include "gemm.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void attention_scores_kt(float *sc, size_t ld_sc, const float *q, int ldq, const float *kt,
                         size_t ld_kt, int rows, int n_keys, int hd, float scale)
{
    gemm_nn(sc, ld_sc, q, (size_t)ldq, kt, ld_kt, rows, n_keys, hd, scale, 0);
}

void attention_scores(float *sc, size_t ld_sc, const float *q, int ldq, const float *K,
                      int rows, int n_keys, int hd, float scale)
{
    float *kt = rows > 1 ? malloc((size_t)n_keys * hd * sizeof *kt) : NULL;
    if (!kt) {   /* one query (or no memory for the transpose): a matrix-vector product */
        for (int i = 0; i < rows; i++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n_keys, hd, scale, K, hd,
                        q + (size_t)i * ldq, 1, 0.0f, sc + (size_t)i * ld_sc, 1);
        return;
    }
    gemm_transpose(kt, (size_t)n_keys, K, (size_t)hd, n_keys, hd);
    attention_scores_kt(sc, ld_sc, q, ldq, kt, (size_t)n_keys, rows, n_keys, hd, scale);
    free(kt);
}

/* e^x for x <= 0, the softmax's inputs once the maximum is subtracted, written so that
 * a loop of it vectorises: x = n·ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts, so r
 * is exact), e^r by its degree-7 Taylor polynomial (truncation below 2^-27 on that
 * range), times 2^n built in the exponent bits.  Below -87.3 (where e^x is no longer a
 * normal float) it returns 0.  Within 2 ulp of e^x: tests/test_attention.c. */
static inline float exp_nonpositive(float x)
{
    const float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.42860682030941723e-6f, r);
    float p = 1.0f / 5040;
    p = fmaf(p, r, 1.0f / 720);
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    /* n below -128 (x = -inf) or NaN (a NaN score: damaged weights or trace) would make
     * the cast undefined; clamped, e <= 0 gives a scale of 0 as before, and a NaN x
     * still comes out NaN (NaN * 0), for the caller's checks to see.  The comparison
     * is fmaxf(n, -128) for every n, NaN included (GCC calls libm for fmaxf, which
     * kept the loops below from being vectorised). */
    const int32_t e = (int32_t)(n > -128.0f ? n : -128.0f) + 127;   /* fmaxf, inline */
    int32_t bits = (e > 0 ? e : 0) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.33654f ? 0.0f : p * scale;
}

float attention_exp(float x) { return exp_nonpositive(x); }

/* The sum is taken in LANES fixed partial sums (element i goes to lane i % LANES), then
 * the lanes in a fixed tree: the same floats whether the compiler vectorises the loop
 * (one AVX-512 register is 16 lanes) or not, so the forward pass and a rebuild in any
 * build of this code (the sanitizer build too) agree bit for bit. */
#define LANES 16

void attention_softmax(float *row, int lo, int len, int width)
{
    float *x = row + lo;
    const int n = len - lo;
    float max = x[0], part[LANES] = {0};
#pragma omp simd reduction(max : max)
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            x[i + l] = exp_nonpositive(x[i + l] - max);
            part[l] += x[i + l];
        }
    for (int l = 0; i < n; i++, l++) {
        x[i] = exp_nonpositive(x[i] - max);
        part[l] += x[i];
    }
    for (int half = LANES / 2; half > 0; half /= 2)
        for (int l = 0; l < half; l++)
            part[l] += part[l + half];
    const float sum = part[0];
#pragma omp simd
    for (int j = 0; j < n; j++)
        x[j] /= sum;
    memset(row, 0, (size_t)lo * sizeof *row);
    memset(row + len, 0, (size_t)(width - len) * sizeof *row);
}

void attention_softcap(float *x, size_t n, float cap)
{
    for (size_t i = 0; i < n; i++)
        x[i] = cap * tanhf(x[i] / cap);
}
