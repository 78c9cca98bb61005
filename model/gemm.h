/*
 * gemm.h — the prefill's product of a batch of activations with a weight matrix
 * (gemm.c says how, and why not OpenBLAS's sgemm).  Inside the model module only.
 *
 *   gemm((gemm_job[]){{q, n_q, &Wq}, {k, n_k, &Wk}}, 2, x, n, xp, panels, 0);
 *
 * out[t][r] (row-major, leading dimension ldo) = Σ_k x[t][k] · W[r][k], computed as one
 * chain of fused multiply-adds over k from +0: the same floats for any thread count,
 * vector width or machine.
 */
#ifndef MODEL_GEMM_H
#define MODEL_GEMM_H

#include "model_impl.h"

#include <stddef.h>

#define GEMM_NT 32   /* tokens per panel (two 16-lane registers) */
#define GEMM_NR 12   /* weight rows per panel */
#define GEMM_GROUP (4 * GEMM_NR)   /* weight rows a thread takes at a time */

/* Floats of x packed for n tokens of cols; of one thread's weight panel and row. */
size_t gemm_pack_floats(int n, int cols);
size_t gemm_panel_floats(int cols);

/* One product of a call: out (n, w->rows; leading dimension ldo) = x · wᵀ. */
typedef struct gemm_job {
    float         *out;
    int            ldo;
    const qmatrix *w;
} gemm_job;

/* Every job's product with x (n, cols), all of the jobs' W having `cols` columns, in one
 * parallel region: x is packed once into xp (gemm_pack_floats(n, cols)), then the jobs'
 * rows are spread over the threads; panels holds omp_get_max_threads() ·
 * gemm_panel_floats(cols) floats.  portable: the element-by-element version only (the
 * tests compare the two). */
void gemm(const gemm_job *jobs, int n_jobs, const float *x, int n, float *xp, float *panels,
          int portable);

/* dst[c · ldd + r] = src[r · lds + c] for r < rows, c < cols (16 x 16 floats at a time in
 * registers where AVX-512 is built in). */
void gemm_transpose(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols);

/* C (M, N; row stride ldc) = scale · A (M, K; lda) · B (K, N; ldb), row-major floats,
 * each element one fma chain over k from +0, then times scale: attention's Q·Kᵀ (B the
 * keys transposed) and P·V.  Single-threaded (attention spreads heads over threads). */
void gemm_nn(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb,
             int M, int N, int K, float scale, int portable);

#endif
