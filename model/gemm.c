/*
 * gemm.c — the prefill's matrix product out = x · Wᵀ on the weights' own storage, with
 * every result defined by this file: out[t][r] is one fused multiply-add chain over
 * k = 0 .. cols-1 from +0, acc = fma(x[t][k], W[r][k], acc), with W[r][k] the
 * dequantised weight (model__qmatrix_row: d·q + m, as the decode kernels' blocks).
 *
 * Why not OpenBLAS's sgemm: its result for one element depends on the kernel it picks
 * for the element's place in a call (the Debian build's Haswell kernel sums some edge
 * tiles in another order), on the build's core detection (AVX2 kernels on an AVX-512
 * machine: half the multiply-adds per cycle) and on its own K blocking.  Tiles fixed
 * in size kept results independent of the thread count, at the cost of packing x and W
 * again for every tile (14% of prefill on one thread).  Here the arithmetic of an
 * element is the same whatever the tile, the thread, the vector width or the machine,
 * so work can be split freely, and each weight row is dequantised once per call, by the
 * thread that uses it, into a panel that stays in its cache (no 16 MB buffer).
 *
 * Layout: x is packed once per call into panels of GEMM_NT tokens, k-major
 * (xp[k][t], zeros past the last token); a thread takes GEMM_GROUP weight rows at a
 * time, dequantises them into k-major panels of GEMM_NR rows, and multiplies them with
 * every token panel, each token panel with all of the group's panels while it is in
 * the core's cache: a GEMM_NT × GEMM_NR block of accumulators in registers (AVX-512:
 * 2 × 12 of 16 lanes), a token per lane, each weight broadcast.  The portable version
 * does the same operations element by element (fmaf), so both give the same floats
 * (tests/test_gemm.c).  Without AVX-512, AVX2 blocks (16 tokens by 6 rows, 6 rows by
 * 16 columns) do the same again: a build with -mno-avx512f gives the same logits.
 */
#include "gemm.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* The block's sums, acc[j][t] (row j, token t), into out (row-major tokens x rows). */
static void store_block(float *out, int ldo, const float (*acc)[GEMM_NT], int nt, int nr)
{
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < nr; j++)
            out[(size_t)t * ldo + j] = acc[j][t];
}

#if defined(__AVX512F__)
/* r[i] lane j becomes r[j] lane i (16 x 16 floats). */
static inline __attribute__((always_inline)) void transpose16(__m512 *r)
{
    __m512 t[16], u[16], v[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 8)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v[i + k] = _mm512_shuffle_f32x4(u[i + k], u[i + 4 + k], 0x88);
            v[i + 4 + k] = _mm512_shuffle_f32x4(u[i + k], u[i + 4 + k], 0xDD);
        }
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) {
        r[k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(v[k], v[8 + k], 0xDD);
    }
}

/* 16 tokens' sums (a[j]: row j, a token per lane) into out rows t of GEMM_NR floats. */
static inline __attribute__((always_inline)) void
store_tokens(float *out, int ldo, const __m512 *a, int nt)
{
    __m512 r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
        r[j] = j < GEMM_NR ? a[j] : _mm512_setzero_ps();
    transpose16(r);
    const __mmask16 rows = (__mmask16)((1u << GEMM_NR) - 1u);
#pragma GCC unroll 16
    for (int t = 0; t < 16 && t < nt; t++)
        _mm512_mask_storeu_ps(out + (size_t)t * ldo, rows, r[t]);
}

_Static_assert(GEMM_NR <= 16 && GEMM_NT == 32, "a block's rows fit one register's lanes");

/* One block of GEMM_NT tokens by GEMM_NR rows. */
static void block_avx512(float *out, int ldo, const float *xp, const float *wp, int cols,
                         int nt)
{
    __m512 a0[GEMM_NR], a1[GEMM_NR];
#pragma GCC unroll 16
    for (int j = 0; j < GEMM_NR; j++)
        a0[j] = a1[j] = _mm512_setzero_ps();
    for (int k = 0; k < cols; k++, xp += GEMM_NT, wp += GEMM_NR) {
        const __m512 x0 = _mm512_loadu_ps(xp), x1 = _mm512_loadu_ps(xp + 16);
#pragma GCC unroll 16
        for (int j = 0; j < GEMM_NR; j++) {
            const __m512 b = _mm512_set1_ps(wp[j]);
            a0[j] = _mm512_fmadd_ps(x0, b, a0[j]);
            a1[j] = _mm512_fmadd_ps(x1, b, a1[j]);
        }
    }
    store_tokens(out, ldo, a0, nt);
    store_tokens(out + (size_t)16 * ldo, ldo, a1, nt - 16);
}
#endif

/* dst[k · ldd + i] = src[i · lds + k] for i < n_src, 0 for n_src <= i < lanes (<= 16), every
 * k < cols: rows turned k-major, 16 x 16 floats at a time in registers. */
static void transpose_rows(float *dst, size_t ldd, const float *src, size_t lds, int n_src,
                           int cols, int lanes)
{
    int k0 = 0;
#if defined(__AVX512F__)
    const __mmask16 mask = (__mmask16)((1u << lanes) - 1u);
    for (; k0 + 16 <= cols; k0 += 16) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i < n_src ? _mm512_loadu_ps(src + (size_t)i * lds + k0) : _mm512_setzero_ps();
        transpose16(r);
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++)
            _mm512_mask_storeu_ps(dst + (size_t)(k0 + k) * ldd, mask, r[k]);
    }
#endif
    for (int k = k0; k < cols; k++)
        for (int i = 0; i < lanes; i++)
            dst[(size_t)k * ldd + i] = i < n_src ? src[(size_t)i * lds + k] : 0.0f;
}

void gemm_transpose(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols)
{
    for (int i = 0; i < rows; i += 16) {
        const int n = rows - i < 16 ? rows - i : 16;
        transpose_rows(dst + i, ldd, src + (size_t)i * lds, lds, n, cols, n);
    }
}

/* Tokens t0 .. t0+GEMM_NT-1 of x (n, cols) as a k-major panel, zeros past token n. */
static void pack_panel(float *xp, const float *x, int n, int cols, int t0)
{
    for (int h = 0; h < GEMM_NT; h += 16) {
        const int left = n - t0 - h, rows = left < 0 ? 0 : left < 16 ? left : 16;
        transpose_rows(xp + h, GEMM_NT, x + (size_t)(t0 + h) * cols, (size_t)cols, rows, cols,
                       16);
    }
}

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HAVE_AVX2_BLOCK 1

/* One block on 8-lane registers: four passes of 16 tokens by 6 rows (12 accumulators),
 * each element's chain the same fused multiply-adds as everywhere else. */
static void block_avx2(float *out, int ldo, const float *xp0, const float *wp0, int cols,
                       int nt)
{
    for (int pass = 0; pass < 4; pass++) {
        const int t0 = pass / 2 * 16, j0 = pass % 2 * 6;
        const float *xp = xp0 + t0, *wp = wp0 + j0;
        __m256 a[6][2];
#pragma GCC unroll 6
        for (int j = 0; j < 6; j++)
            a[j][0] = a[j][1] = _mm256_setzero_ps();
        for (int k = 0; k < cols; k++, xp += GEMM_NT, wp += GEMM_NR) {
            const __m256 x0 = _mm256_loadu_ps(xp), x1 = _mm256_loadu_ps(xp + 8);
#pragma GCC unroll 6
            for (int j = 0; j < 6; j++) {
                const __m256 b = _mm256_set1_ps(wp[j]);
                a[j][0] = _mm256_fmadd_ps(x0, b, a[j][0]);
                a[j][1] = _mm256_fmadd_ps(x1, b, a[j][1]);
            }
        }
        float acc[6][16];
        for (int j = 0; j < 6; j++) {
            _mm256_storeu_ps(acc[j], a[j][0]);
            _mm256_storeu_ps(acc[j] + 8, a[j][1]);
        }
        for (int t = 0; t < 16 && t0 + t < nt; t++)
            for (int j = 0; j < 6; j++)
                out[(size_t)(t0 + t) * ldo + j0 + j] = acc[j][t];
    }
}
#endif

/* The same block element by element: the same fused multiply-adds in the same order. */
static void block_portable(float *out, int ldo, const float *xp, const float *wp, int cols,
                           int nt, int nr)
{
    float acc[GEMM_NR][GEMM_NT];
    for (int j = 0; j < nr; j++)
        for (int t = 0; t < GEMM_NT; t++)
            acc[j][t] = 0.0f;
    for (int k = 0; k < cols; k++, xp += GEMM_NT, wp += GEMM_NR)
        for (int j = 0; j < nr; j++)
            for (int t = 0; t < GEMM_NT; t++)
                acc[j][t] = fmaf(xp[t], wp[j], acc[j][t]);
    store_block(out, ldo, (const float(*)[GEMM_NT])acc, nt, nr);
}

/* One token panel of a group: out's nr rows from the weight panel wp (k-major). */
static void block(float *o, int ldo, const float *xp, const float *wp, int cols, int nt,
                  int nr, int portable)
{
#if defined(__AVX512F__)
    if (!portable && nr == GEMM_NR) {
        block_avx512(o, ldo, xp, wp, cols, nt);
        return;
    }
#elif defined(HAVE_AVX2_BLOCK)
    if (!portable && nr == GEMM_NR) {
        block_avx2(o, ldo, xp, wp, cols, nt);
        return;
    }
#endif
    (void)portable;
    block_portable(o, ldo, xp, wp, cols, nt, nr);
}

/* A group of rows (its panels at wp, GEMM_NR rows each, `rows` in all) with every token
 * panel: token panels outside, so that one panel of x serves every weight panel of the
 * group from the core's cache. */
static void row_group(float *out, int ldo, const float *xp, int n, const float *wp,
                      int cols, int rows, int portable)
{
    for (int t0 = 0; t0 < n; t0 += GEMM_NT, xp += (size_t)GEMM_NT * cols) {
        const int nt = n - t0 < GEMM_NT ? n - t0 : GEMM_NT;
        for (int r0 = 0; r0 < rows; r0 += GEMM_NR) {
            const int nr = rows - r0 < GEMM_NR ? rows - r0 : GEMM_NR;
            block(out + (size_t)t0 * ldo + r0, ldo, xp, wp + (size_t)r0 * cols, cols, nt, nr,
                  portable);
        }
    }
}

size_t gemm_pack_floats(int n, int cols)
{
    return (size_t)((n + GEMM_NT - 1) / GEMM_NT) * GEMM_NT * (size_t)cols;
}

size_t gemm_panel_floats(int cols) { return (size_t)(GEMM_GROUP + GEMM_NR) * (size_t)cols; }

/* Rows r0 .. r0+nr-1 of W as k-major panels of GEMM_NR rows, wp[panel][k][GEMM_NR]
 * (rows: scratch for GEMM_NR dequantised rows). */
static void weight_panels(float *wp, float *rows, const qmatrix *w, int r0, int nr)
{
    const int cols = w->cols;
    for (int p0 = 0; p0 < nr; p0 += GEMM_NR) {
        const int np = nr - p0 < GEMM_NR ? nr - p0 : GEMM_NR;
        const float *src = w->f ? w->f + (size_t)(r0 + p0) * cols : rows;
        for (int j = 0; !w->f && j < np; j++)
            model__qmatrix_row(rows + (size_t)j * cols, w, r0 + p0 + j);
        transpose_rows(wp + (size_t)p0 * cols, GEMM_NR, src, (size_t)cols, np, cols, GEMM_NR);
    }
}

/* Group g of the jobs' rows, counted across the jobs: its job and first row. */
static const gemm_job *group_job(const gemm_job *jobs, int g, int *r0)
{
    for (;; jobs++) {
        const int groups = (jobs->w->rows + GEMM_GROUP - 1) / GEMM_GROUP;
        if (g < groups) {
            *r0 = g * GEMM_GROUP;
            return jobs;
        }
        g -= groups;
    }
}

void gemm(const gemm_job *jobs, int n_jobs, const float *x, int n, float *xp, float *panels,
          int portable)
{
    const int cols = jobs[0].w->cols, token_panels = (n + GEMM_NT - 1) / GEMM_NT;
    int groups = 0;
    for (int i = 0; i < n_jobs; i++)
        groups += (jobs[i].w->rows + GEMM_GROUP - 1) / GEMM_GROUP;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int p = 0; p < token_panels; p++)
            pack_panel(xp + (size_t)p * GEMM_NT * cols, x, n, cols, p * GEMM_NT);
        float *mine = panels + (size_t)omp_get_thread_num() * gemm_panel_floats(cols);
#pragma omp for schedule(static)
        for (int g = 0; g < groups; g++) {
            int r0;
            const gemm_job *j = group_job(jobs, g, &r0);
            const int rows = j->w->rows - r0 < GEMM_GROUP ? j->w->rows - r0 : GEMM_GROUP;
            weight_panels(mine, mine + (size_t)GEMM_GROUP * cols, j->w, r0, rows);
            row_group(j->out + r0, j->ldo, xp, n, mine, cols, rows, portable);
        }
    }
}

/* ---- plain float products for attention ------------------------------------------- */

#define NN_ROWS 6   /* rows of C per block: 6 x 4 registers of accumulators */

#if defined(__AVX512F__)
/* C rows i0 .. i0+R-1, lanes j0 .. j0+16E-1 (the last register masked by `last`). */
static inline __attribute__((always_inline)) void
nn_block_avx512(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb,
                int K, float scale, const int R, const int E, __mmask16 last)
{
    __m512 acc[NN_ROWS][4];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int e = 0; e < E; e++)
            acc[i][e] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, b += ldb) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int e = 0; e < E; e++)
            bv[e] = e == E - 1 ? _mm512_maskz_loadu_ps(last, b + 16 * e)
                               : _mm512_loadu_ps(b + 16 * e);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m512 av = _mm512_set1_ps(a[(size_t)i * lda + k]);
#pragma GCC unroll 4
            for (int e = 0; e < E; e++)
                acc[i][e] = _mm512_fmadd_ps(av, bv[e], acc[i][e]);
        }
    }
    const __m512 s = _mm512_set1_ps(scale);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int e = 0; e < E; e++) {
            float *ci = c + (size_t)i * ldc + 16 * e;
            const __m512 v = _mm512_mul_ps(acc[i][e], s);
            if (e == E - 1)
                _mm512_mask_storeu_ps(ci, last, v);
            else
                _mm512_storeu_ps(ci, v);
        }
}

/* The rows of one block, R of them, over every column: four registers at a time, then
 * one (the last masked). */
static inline __attribute__((always_inline)) void
nn_rows_avx512(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb,
               int N, int K, float scale, const int R)
{
    int j = 0;
    for (; j + 64 <= N; j += 64)
        nn_block_avx512(c + j, ldc, a, lda, b + j, ldb, K, scale, R, 4, 0xFFFF);
    for (; j < N; j += 16) {
        const int left = N - j < 16 ? N - j : 16;
        nn_block_avx512(c + j, ldc, a, lda, b + j, ldb, K, scale, R, 1,
                        (__mmask16)((1u << left) - 1u));
    }
}
#endif

#if defined(HAVE_AVX2_BLOCK)
/* C rows 0 .. R-1, columns j0 .. j0+15 (the first `left` of them) on 8-lane registers. */
static inline __attribute__((always_inline)) void
nn_block_avx2(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb,
              int K, float scale, const int R, int left)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(left - 8), lane);
    __m256 acc[NN_ROWS][2];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++, b += ldb) {
        const __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m256 av = _mm256_set1_ps(a[(size_t)i * lda + k]);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const __m256 s = _mm256_set1_ps(scale);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        _mm256_maskstore_ps(c + (size_t)i * ldc, m0, _mm256_mul_ps(acc[i][0], s));
        _mm256_maskstore_ps(c + (size_t)i * ldc + 8, m1, _mm256_mul_ps(acc[i][1], s));
    }
}

static inline __attribute__((always_inline)) void
nn_rows_avx2(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb,
             int N, int K, float scale, const int R)
{
    for (int j = 0; j < N; j += 16)
        nn_block_avx2(c + j, ldc, a, lda, b + j, ldb, K, scale, R, N - j < 16 ? N - j : 16);
}
#endif

/* C[i][j] = scale · (one fma chain over k from +0 of A[i][k] · B[k][j]): each element's
 * chain in C's row itself, k outside and j inside so that the compiler vectorises it. */
static void nn_portable(float *c, size_t ldc, const float *a, size_t lda, const float *b,
                        size_t ldb, int M, int N, int K, float scale)
{
    for (int i = 0; i < M; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < N; j++)
            ci[j] = 0.0f;
        for (int k = 0; k < K; k++) {
            const float aik = a[(size_t)i * lda + k], *bk = b + (size_t)k * ldb;
            for (int j = 0; j < N; j++)
                ci[j] = fmaf(aik, bk[j], ci[j]);
        }
        for (int j = 0; j < N; j++)
            ci[j] *= scale;
    }
}

#if defined(__AVX512F__)
#define nn_rows_vector nn_rows_avx512
#elif defined(HAVE_AVX2_BLOCK)
#define nn_rows_vector nn_rows_avx2
#endif

void gemm_nn(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb,
             int M, int N, int K, float scale, int portable)
{
#ifdef nn_rows_vector
    if (!portable) {
        int i = 0;
#define NN_ROWS_AT(R) nn_rows_vector(c + (size_t)i * ldc, ldc, a + (size_t)i * lda, lda, b, \
                                     ldb, N, K, scale, R)
        for (; i + NN_ROWS <= M; i += NN_ROWS)
            NN_ROWS_AT(NN_ROWS);
        switch (M - i) {   /* the last rows: R a constant in each case */
        case 5: NN_ROWS_AT(5); break;
        case 4: NN_ROWS_AT(4); break;
        case 3: NN_ROWS_AT(3); break;
        case 2: NN_ROWS_AT(2); break;
        case 1: NN_ROWS_AT(1); break;
        default: break;
        }
#undef NN_ROWS_AT
        return;
    }
#endif
    (void)portable;
    nn_portable(c, ldc, a, lda, b, ldb, M, N, K, scale);
}
