/*
 * model_kernels.c — 8-bit weight blocks: conversion from GGUF tensors, the decode
 * matrix-vector product, and dequantisation of rows for the prefill GEMM.
 *
 * Why 8-bit blocks with a float scale and offset (qblock, model_impl.h): SmolLM2's
 * GGUF mixes Q4_1 and Q8_0, Gemma 3's Q5_0, Q8_0 and Q4_K, and all of them fit
 * w = d·q + m exactly (a K-quant's sub-block of 32 has one scale and one min), so one
 * kernel reads every matrix at 10 bits per weight.  Decode is bound by the bytes it reads per token
 * (reference/inference.md §6): 168 MB here instead of 538 MB as float32.  The dot
 * product of a block is d·Σ q·x + m·Σ x; Σ x per block is computed once per vector.
 *
 * Dequantisation computes d·q + m as a multiply then an add, never a fused
 * multiply-add, so the floats equal ggml's dequantize_row_* for the exact types.
 * With AVX2 (the build uses -march=native) the loops are vectorised by hand; without
 * it the portable versions at the end of the file are compiled instead.
 */
#include "model_impl.h"

#include "dequant.h"
#include "fp16.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- conversion from GGUF blocks ------------------------------------------------- */

static float f16_at(const uint8_t *p) { return fp16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Nibbles of a 16-byte run: low nibbles are elements 0..15, high nibbles 16..31. */
static void unpack_nibbles(int8_t *q, const uint8_t *qs, int bias)
{
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0x0F) - bias);
        q[j + 16] = (int8_t)((qs[j] >> 4) - bias);
    }
}

/* The fifth bits of Q5_0/Q5_1: bit j of the little-endian u32 qh goes to element j;
 * `offset` is then subtracted (16 for the symmetric Q5_0). */
static void add_high_bits(int8_t *q, const uint8_t *qh4, int offset)
{
    uint32_t qh = (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 | (uint32_t)qh4[2] << 16 |
                  (uint32_t)qh4[3] << 24;
    for (int j = 0; j < QBLOCK; j++)
        q[j] = (int8_t)(q[j] + (int)((qh >> j & 1u) << 4) - offset);
}

/* One GGUF block of an exactly convertible 32-element type; 0 if `type` is not one
 * (Q4_K and Q5_K convert exactly too, a 256-element block at a time: convert_row_k). */
static int convert_block_exact(int type, const uint8_t *b, qblock *out)
{
    switch (type) {
    case GGML_TYPE_Q8_0:
        *out = (qblock){.d = f16_at(b), .m = 0.0f};
        memcpy(out->q, b + 2, QBLOCK);
        return 1;
    case GGML_TYPE_Q4_0:
        *out = (qblock){.d = f16_at(b), .m = 0.0f};
        unpack_nibbles(out->q, b + 2, 8);
        return 1;
    case GGML_TYPE_Q4_1:
        *out = (qblock){.d = f16_at(b), .m = f16_at(b + 2)};
        unpack_nibbles(out->q, b + 4, 0);
        return 1;
    case GGML_TYPE_Q5_0:   /* q = (nibble | bit << 4) - 16 */
        *out = (qblock){.d = f16_at(b), .m = 0.0f};
        unpack_nibbles(out->q, b + 6, 0);
        add_high_bits(out->q, b + 2, 16);
        return 1;
    case GGML_TYPE_Q5_1:   /* q = nibble | bit << 4, 0..31 */
        *out = (qblock){.d = f16_at(b), .m = f16_at(b + 2)};
        unpack_nibbles(out->q, b + 8, 0);
        add_high_bits(out->q, b + 4, 0);
        return 1;
    default:
        return 0;
    }
}

/* Requantise 32 floats to 8 bits over their range [lo, hi]: the fallback for types
 * with no exact 8-bit form. */
static void requantise_block(const float *x, qblock *out)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < QBLOCK; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    float d = (hi - lo) / 255.0f, m = lo + 128.0f * d;
    *out = (qblock){.d = d, .m = m};
    for (int i = 0; i < QBLOCK; i++) {
        float q = d > 0.0f ? roundf((x[i] - m) / d) : 0.0f;
        out->q[i] = (int8_t)fminf(127.0f, fmaxf(-128.0f, q));
    }
}

/* One row of Q4_K or Q5_K: each sub-block of 32 is w = d·q − m with q at most 5 bits,
 * so it becomes one 8-bit block exactly (m stored negated). */
static void convert_row_k(int type, const uint8_t *src, qblock *dst, int cols)
{
    size_t block_bytes = (size_t)ggml_type_bytes(type);
    for (int sb = 0; sb < cols / 256; sb++) {
        float d[8], m[8];
        uint8_t q[8][32];
        dequant_k_sub_blocks(type, src + (size_t)sb * block_bytes, d, m, q);
        for (int k = 0; k < 8; k++) {
            qblock *b = &dst[sb * 8 + k];
            *b = (qblock){.d = d[k], .m = -m[k]};
            for (int l = 0; l < QBLOCK; l++)
                b->q[l] = (int8_t)q[k][l];
        }
    }
}

int model__keeps_float(int type)
{
    return type == GGML_TYPE_Q6_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q2_K;
}

int model__qmatrix_from_gguf(qmatrix *w, int type, const void *data, kv_err *err)
{
    size_t row_bytes;
    if (ggml_row_size(type, w->cols, &row_bytes, err))
        return err ? err->code : KV_EFORMAT;
    if (w->f) {   /* float rows: dequantised once, exactly */
        int rc = 0;
        for (int r = 0; r < w->rows && !rc; r++)
            rc = dequant_row(type, (const uint8_t *)data + (size_t)r * row_bytes,
                             w->f + (size_t)r * w->cols, w->cols, err);
        return rc;
    }
    int nb = w->cols / QBLOCK, exact = convert_block_exact(type, data, &w->blocks[0]);
    const int k_quant = type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K;
    size_t type_bytes = (size_t)ggml_type_bytes(type);
    float *tmp = exact || k_quant ? NULL : malloc((size_t)w->cols * sizeof *tmp);
    if (!exact && !k_quant && !tmp)
        return kv_errorf(err, KV_ENOMEM, "out of memory converting a %d-wide row", w->cols);
    int rc = 0;
    for (int r = 0; r < w->rows && !rc; r++) {
        const uint8_t *src = (const uint8_t *)data + (size_t)r * row_bytes;
        qblock *dst = w->blocks + (size_t)r * nb;
        if (exact) {
            for (int b = 0; b < nb; b++)
                convert_block_exact(type, src + (size_t)b * type_bytes, &dst[b]);
            continue;
        }
        if (k_quant) {
            convert_row_k(type, src, dst, w->cols);
            continue;
        }
        rc = dequant_row(type, src, tmp, w->cols, err);
        for (int b = 0; b < nb && !rc; b++)
            requantise_block(tmp + b * QBLOCK, &dst[b]);
    }
    free(tmp);
    return rc;
}

/* ---- kernels --------------------------------------------------------------------- */

/* Σ x over each block of 32, for the offset term m·Σ x. */
static void block_sums(float *xs, const float *x, int nb)
{
    for (int b = 0; b < nb; b++) {
        float s = 0.0f;
        for (int i = 0; i < QBLOCK; i++)
            s += x[b * QBLOCK + i];
        xs[b] = s;
    }
}

#ifdef __AVX2__
#include <immintrin.h>

static inline __m256 q8_to_ps(const int8_t *q)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Σ_b d_b · (q_b · x_b) + m_b · xs_b over one row of nb blocks. */
static float qrow_dot(const qblock *b, int nb, const float *x, const float *xs)
{
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    for (int i = 0; i < nb; i++, x += QBLOCK) {
        __m256 p = _mm256_mul_ps(q8_to_ps(b[i].q), _mm256_loadu_ps(x));
        p = _mm256_fmadd_ps(q8_to_ps(b[i].q + 8), _mm256_loadu_ps(x + 8), p);
        p = _mm256_fmadd_ps(q8_to_ps(b[i].q + 16), _mm256_loadu_ps(x + 16), p);
        p = _mm256_fmadd_ps(q8_to_ps(b[i].q + 24), _mm256_loadu_ps(x + 24), p);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d), p, acc);
        offset += b[i].m * xs[i];
    }
    return hsum(acc) + offset;
}

static void qblock_dequant(float *y, const qblock *b)
{
    __m256 d = _mm256_set1_ps(b->d), m = _mm256_set1_ps(b->m);
    for (int i = 0; i < QBLOCK; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(q8_to_ps(b->q + i), d), m));
}

#else /* portable versions */

static float qrow_dot(const qblock *b, int nb, const float *x, const float *xs)
{
    float acc = 0.0f;
    for (int i = 0; i < nb; i++, x += QBLOCK) {
        float p = 0.0f;
        for (int j = 0; j < QBLOCK; j++)
            p += (float)b[i].q[j] * x[j];
        acc += b[i].d * p + b[i].m * xs[i];
    }
    return acc;
}

static void qblock_dequant(float *y, const qblock *b)
{
    for (int i = 0; i < QBLOCK; i++)
        y[i] = (float)b->q[i] * b->d + b->m;
}

#endif

void model__matvec(float *out, const qmatrix *w, const float *x)
{
    if (w->f) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, w->rows, w->cols, 1.0f, w->f, w->cols, x, 1,
                    0.0f, out, 1);
        return;
    }
    int nb = w->cols / QBLOCK;
    float xs[MODEL_MAX_COLS / QBLOCK];   /* model_open refuses wider rows */
    block_sums(xs, x, nb);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < w->rows; r++)
        out[r] = qrow_dot(w->blocks + (size_t)r * nb, nb, x, xs);
}

void model__qmatrix_row(float *dst, const qmatrix *w, int r)
{
    if (w->f) {
        memcpy(dst, w->f + (size_t)r * w->cols, (size_t)w->cols * sizeof *dst);
        return;
    }
    int nb = w->cols / QBLOCK;
    const qblock *b = w->blocks + (size_t)r * nb;
    for (int i = 0; i < nb; i++)
        qblock_dequant(dst + i * QBLOCK, &b[i]);
}

void model__dequant_rows(float *dst, const qmatrix *w, int r0, int n)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++)
        model__qmatrix_row(dst + (size_t)r * w->cols, w, r0 + r);
}
