/*
 * model_kernels.c — weight matrices: how they are held, the decode matrix-vector
 * product, and dequantisation of rows for the prefill GEMM.
 *
 * Decode is bound by the bytes it reads per token (reference/inference.md §6), so a
 * matrix whose GGUF type converts exactly to w = d·q + m blocks of 32 (Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, and Q4_K/Q5_K, whose sub-blocks of 32 have one scale and one min)
 * is held as the GGUF's own blocks, copied byte for byte ("raw"; with AVX-512, Q4_0,
 * Q4_1 and Q8_0 reordered in groups of 16 rows, "groups of rows" below): SmolLM2's Q4_1
 * is read at 0.625 bytes a weight instead of the 1.25 of the 8-bit blocks (qblock) the
 * model used to widen everything to.  The kernels unpack a block into registers —
 * floats q, scale d, offset m, the very values the 8-bit block would hold — and then
 * do exactly what they did on 8-bit blocks: the dot product of a block is
 * d·Σ q·x + m·Σ x with Σ x per block computed once per vector, the same float
 * operations in the same order, so decode's logits are bit-identical to the 8-bit
 * blocks' (tests/test_dequant.c checks every type against them).  Activations stay
 * float32 (no 8-bit activations as llama.cpp's); that is what keeps the forward pass
 * equal to an fp32 reference.
 *
 * Types with no exact 8-bit form are requantised to 8-bit blocks (lossy, the fallback
 * for IQ4_NL and the like); Q6_K, Q3_K and Q2_K are kept as float32 rows.
 *
 * Dequantisation computes d·q + m as a multiply then an add, never a fused
 * multiply-add, so the floats equal ggml's dequantize_row_* for the exact types.
 * With AVX2 (the build uses -march=native) blocks are unpacked and multiplied with
 * intrinsics; without it the portable versions convert each block to a qblock and
 * loop over it, with the same results.
 */
#include "model_impl.h"

#include "dequant.h"
#include "fp16.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
 * (Q4_K and Q5_K convert exactly too, a 256-element block at a time: convert_super_k). */
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

/* One block of Q4_K or Q5_K (256 weights): each sub-block of 32 is w = d·q − m with q
 * at most 5 bits, so it becomes one 8-bit block exactly (m stored negated). */
static void convert_super_k(int type, const uint8_t *src, qblock *dst)
{
    float d[8], m[8];
    uint8_t q[8][32];
    dequant_k_sub_blocks(type, src, d, m, q);
    for (int k = 0; k < 8; k++) {
        dst[k] = (qblock){.d = d[k], .m = -m[k]};
        for (int l = 0; l < QBLOCK; l++)
            dst[k].q[l] = (int8_t)q[k][l];
    }
}

static int is_k_quant(int type) { return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K; }

int model__keeps_float(int type)
{
    return type == GGML_TYPE_Q6_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q2_K;
}

int model__keeps_raw(int type)
{
    qblock b;
    static const uint8_t zero[64];
    return convert_block_exact(type, zero, &b) || is_k_quant(type);
}

/* ---- unpacking: one unit of a row (a block of 32, or a K-quant's 8 sub-blocks) ------ */

/* Storage "type" of a matrix kept as 8-bit blocks: its unit is one qblock. */
#define TYPE_QBLOCK (-1)

#define GROUP_ROWS 16   /* rows interleaved in one group (one per lane of a 512-bit vector) */

static int unit_blocks(int type) { return is_k_quant(type) ? 8 : 1; }

static size_t unit_bytes(int type)
{
    return type == TYPE_QBLOCK ? sizeof(qblock) : (size_t)ggml_type_bytes(type);
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

/* fp16 d (and m) at b by F16C: exact, as fp16_to_f32 (which the load used), but for a
 * signalling NaN, which F16C quiets; a NaN scale poisons its rows either way. */
static inline float f16c_at(const uint8_t *b)
{
    uint16_t h;
    memcpy(&h, b, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

/* A block of 32 weights unpacked: elements 0..15 in lo, 16..31 in hi, as signed bytes
 * (every exact type's q fits: at most 5 bits, or Q8_0's int8). */
typedef struct qbytes {
    __m128i lo, hi;
    float   d, m;
} qbytes;

/* 16 bytes of packed nibbles: low nibbles (elements 0..15) and high (16..31). */
static inline void nibbles(const uint8_t *qs, __m128i *lo, __m128i *hi)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    *lo = _mm_and_si128(v, m4);
    *hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
}

/* Bit j of the little-endian u32 at p as byte j (0x10 or 0): Q5's fifth bits. */
static inline void fifth_bits(const uint8_t *p, __m128i *lo, __m128i *hi)
{
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    bytes = _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)),
                             _mm256_set1_epi8(0x10));
    *lo = _mm256_castsi256_si128(bytes);
    *hi = _mm256_extracti128_si256(bytes, 1);
}

static inline void qbytes_from_qblock(qbytes *v, const qblock *b)
{
    v->d = b->d, v->m = b->m;
    v->lo = _mm_loadu_si128((const __m128i *)b->q);
    v->hi = _mm_loadu_si128((const __m128i *)(b->q + 16));
}

/* Q4_K: sub-block 2c is the low nibbles of qs[32c ..], 2c+1 the high ones. */
static inline void unpack_q4_k(const uint8_t *b, qbytes *v)
{
    float d[8], m[8];
    dequant_k_scales(GGML_TYPE_Q4_K, b, d, m);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * c));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        v[2 * c].lo = _mm256_castsi256_si128(lo), v[2 * c].hi = _mm256_extracti128_si256(lo, 1);
        v[2 * c + 1].lo = _mm256_castsi256_si128(hi), v[2 * c + 1].hi = _mm256_extracti128_si256(hi, 1);
    }
    for (int k = 0; k < 8; k++)
        v[k].d = d[k], v[k].m = -m[k];
}

/* One unit at b unpacked, the values convert_block_exact / convert_super_k give;
 * returns the blocks written (1, or 8 for a K-quant). */
static inline int unpack(int type, const uint8_t *b, qbytes *v)
{
    __m128i lo, hi, h_lo, h_hi;
    const __m128i eight = _mm_set1_epi8(8), sixteen = _mm_set1_epi8(16);
    switch (type) {
    case GGML_TYPE_Q8_0:
        v->d = f16c_at(b), v->m = 0.0f;
        v->lo = _mm_loadu_si128((const __m128i *)(b + 2));
        v->hi = _mm_loadu_si128((const __m128i *)(b + 18));
        return 1;
    case GGML_TYPE_Q4_0:
        v->d = f16c_at(b), v->m = 0.0f;
        nibbles(b + 2, &lo, &hi);
        v->lo = _mm_sub_epi8(lo, eight), v->hi = _mm_sub_epi8(hi, eight);
        return 1;
    case GGML_TYPE_Q4_1: {   /* d and m side by side: one conversion */
        uint32_t dm;
        memcpy(&dm, b, 4);
        __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dm));
        v->d = _mm_cvtss_f32(f), v->m = _mm_cvtss_f32(_mm_movehdup_ps(f));
        nibbles(b + 4, &v->lo, &v->hi);
        return 1;
    }
    case GGML_TYPE_Q5_0:
        v->d = f16c_at(b), v->m = 0.0f;
        nibbles(b + 6, &lo, &hi);
        fifth_bits(b + 2, &h_lo, &h_hi);
        v->lo = _mm_sub_epi8(_mm_or_si128(lo, h_lo), sixteen);
        v->hi = _mm_sub_epi8(_mm_or_si128(hi, h_hi), sixteen);
        return 1;
    case GGML_TYPE_Q4_K:
        unpack_q4_k(b, v);
        return 8;
    case TYPE_QBLOCK:
        qbytes_from_qblock(v, (const qblock *)b);
        return 1;
    default: {   /* Q5_1, Q5_K: through 8-bit blocks (no model we ship has them) */
        qblock t[8];
        int n = is_k_quant(type) ? (convert_super_k(type, b, t), 8)
                                 : convert_block_exact(type, b, t);
        for (int k = 0; k < n; k++)
            qbytes_from_qblock(&v[k], &t[k]);
        return n;
    }
    }
}

static inline __m256 i8_to_ps(__m128i v)   /* the low 8 signed bytes as floats */
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

/* Elements 8k .. 8k+7 of a block as floats. */
static inline __m256 q_ps(const qbytes *v, int k)
{
    __m128i h = k < 2 ? v->lo : v->hi;
    return i8_to_ps(k & 1 ? _mm_srli_si128(h, 8) : h);
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The dot product of one block, lane by lane: p = q·x over elements l, 8+l, 16+l,
 * 24+l of lane l (a multiply, then three fused multiply-adds), then acc += d·p. */
static inline __m256 block_dot(__m256 acc, const qbytes *v, const float *x)
{
    __m256 p = _mm256_mul_ps(q_ps(v, 0), _mm256_loadu_ps(x));
    p = _mm256_fmadd_ps(q_ps(v, 1), _mm256_loadu_ps(x + 8), p);
    p = _mm256_fmadd_ps(q_ps(v, 2), _mm256_loadu_ps(x + 16), p);
    p = _mm256_fmadd_ps(q_ps(v, 3), _mm256_loadu_ps(x + 24), p);
    return _mm256_fmadd_ps(_mm256_set1_ps(v->d), p, acc);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define PAIRS 1   /* two blocks' q·x in one 16-lane register */

/* Elements 8k .. 8k+7 of blocks a (lanes 0..7) and b (lanes 8..15) as floats. */
static inline __m512 pair_ps(const qbytes *a, const qbytes *b, int k)
{
    __m128i ha = k < 2 ? a->lo : a->hi, hb = k < 2 ? b->lo : b->hi;
    __m128i q = k & 1 ? _mm_unpackhi_epi64(ha, hb) : _mm_unpacklo_epi64(ha, hb);
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
}

/* block_dot of blocks a then b, their p computed side by side from xp, the pair's 64
 * activations reordered by pair_x: the same operations on the same values. */
static inline __m256 pair_dot(__m256 acc, const qbytes *a, const qbytes *b, const float *xp)
{
    __m512 p = _mm512_mul_ps(pair_ps(a, b, 0), _mm512_loadu_ps(xp));
    p = _mm512_fmadd_ps(pair_ps(a, b, 1), _mm512_loadu_ps(xp + 16), p);
    p = _mm512_fmadd_ps(pair_ps(a, b, 2), _mm512_loadu_ps(xp + 32), p);
    p = _mm512_fmadd_ps(pair_ps(a, b, 3), _mm512_loadu_ps(xp + 48), p);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a->d), _mm512_castps512_ps256(p), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(b->d), _mm512_extractf32x8_ps(p, 1), acc);
}
#else
#define PAIRS 0
#endif

#if defined(__AVX512F__)
#define GROUPS 1   /* Q4_0, Q4_1 and Q8_0 rows interleaved in groups of 16 */

/* Field j of a group block as 16 integers, one per row: byte j of the payload (P: the
 * first payload byte), zero- or sign-extended. */
static inline __m512i payload_u8(const uint8_t *P, int j)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(P + 16 * j)));
}

static inline __m512 low_nibbles(__m512i v, int bias)
{
    v = _mm512_and_si512(v, _mm512_set1_epi32(0x0F));
    return _mm512_cvtepi32_ps(bias ? _mm512_sub_epi32(v, _mm512_set1_epi32(bias)) : v);
}

static inline __m512 high_nibbles(__m512i v, int bias)
{
    v = _mm512_srli_epi32(v, 4);
    return _mm512_cvtepi32_ps(bias ? _mm512_sub_epi32(v, _mm512_set1_epi32(bias)) : v);
}

/* Elements l, 8+l, 16+l and 24+l of one block of 16 rows as floats (q[k]: element 8k+l
 * of each row), from the group block's payload P. */
static inline void group_q(int type, const uint8_t *P, int l, __m512 q[4])
{
    if (type == GGML_TYPE_Q8_0) {
        for (int k = 0; k < 4; k++)
            q[k] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(P + 16 * (8 * k + l)))));
        return;
    }
    const int bias = type == GGML_TYPE_Q4_0 ? 8 : 0;   /* byte j: elements j and 16+j */
    __m512i v0 = payload_u8(P, l), v1 = payload_u8(P, 8 + l);
    q[0] = low_nibbles(v0, bias), q[2] = high_nibbles(v0, bias);
    q[1] = low_nibbles(v1, bias), q[3] = high_nibbles(v1, bias);
}

/* in[j] (byte i: row i's payload byte j) transposed in place, so that in[i] holds row
 * i's 16 bytes: four rounds of interleaving rows k and k+8 (each round rotates the bits of
 * (row, byte) by one, four rounds swap them). */
static inline void transpose16(__m128i a[16])
{
    for (int round = 0; round < 4; round++) {
        __m128i b[16];
        for (int k = 0; k < 8; k++) {
            b[2 * k] = _mm_unpacklo_epi8(a[k], a[k + 8]);
            b[2 * k + 1] = _mm_unpackhi_epi8(a[k], a[k + 8]);
        }
        memcpy(a, b, sizeof b);
    }
}

/* row_dot of 16 rows at once, one row per lane: acc[l] holds lane l of row_dot's acc
 * for every row, off its offset; the same operations in the same order on the same
 * values, so the same 16 results bit for bit.  g: the group's first block. */
static inline __attribute__((always_inline)) void
group_dot(int type, const uint8_t *g, int nb, const float *x, const float *xs, float *out)
{
    const size_t gb = GROUP_ROWS * (size_t)ggml_type_bytes(type);
    const int has_m = type == GGML_TYPE_Q4_1;
    const uint8_t *P0 = g + GROUP_ROWS * (has_m ? 4 : 2);
    __m512 acc[8], off = _mm512_setzero_ps();
    for (int l = 0; l < 8; l++)
        acc[l] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, g += gb, P0 += gb, x += QBLOCK) {
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        if (has_m) {
            __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
            off = _mm512_add_ps(off, _mm512_mul_ps(m, _mm512_set1_ps(xs[b])));
        }
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++) {
            __m512 q[4];
            group_q(type, P0, l, q);
            __m512 p = _mm512_mul_ps(q[0], _mm512_set1_ps(x[l]));
            p = _mm512_fmadd_ps(q[1], _mm512_set1_ps(x[8 + l]), p);
            p = _mm512_fmadd_ps(q[2], _mm512_set1_ps(x[16 + l]), p);
            p = _mm512_fmadd_ps(q[3], _mm512_set1_ps(x[24 + l]), p);
            acc[l] = _mm512_fmadd_ps(d, p, acc[l]);
        }
    }
    /* hsum's tree, lane by lane: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), then + off */
    __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
                             _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])));
    _mm512_storeu_ps(out, _mm512_add_ps(t, off));
}
#else
#define GROUPS 0
#endif

/* x reordered for pair_dot: for blocks 2i and 2i+1, 16 floats per k holding elements
 * 8k .. 8k+7 of each. */
static void pair_x(float *xp, const float *x, int nb)
{
    for (int i = 0; i + 1 < nb; i += 2, x += 2 * QBLOCK, xp += 2 * QBLOCK)
        for (int k = 0; k < 4; k++) {
            memcpy(xp + 16 * k, x + 8 * k, 8 * sizeof *x);
            memcpy(xp + 16 * k + 8, x + QBLOCK + 8 * k, 8 * sizeof *x);
        }
}

/* Types whose m is always 0: their offsets 0·Σx are skipped (the sum stays +0, as it
 * did when they were added, for any finite activations). */
static inline int symmetric(int type)
{
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0;
}

/* Σ_b d_b · (q_b · x_b) + m_b · xs_b over one row of `cols` weights of `type`; with
 * AVX-512 blocks go two at a time (xp: pair_x of x).  (Two rows side by side, to
 * overlap their chains of additions, measured slower: registers ran out.) */
static inline __attribute__((always_inline)) float
row_dot(int type, const uint8_t *src, int cols, const float *x, const float *xp,
        const float *xs)
{
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    const size_t ub = unit_bytes(type);
    const int nb = cols / QBLOCK;
    qbytes v[8];
    for (int i = 0; i < nb;) {
        int n = unpack(type, src, v);
        src += ub;
        if (PAIRS && n == 1 && i + 1 < nb) {   /* a second block to pair with */
            n += unpack(type, src, v + 1);
            src += ub;
        }
        int k = 0;
#if PAIRS
        for (; k + 1 < n; k += 2, i += 2) {
            acc = pair_dot(acc, &v[k], &v[k + 1], xp + (size_t)i * QBLOCK);
            if (!symmetric(type)) {
                offset += v[k].m * xs[i];
                offset += v[k + 1].m * xs[i + 1];
            }
        }
#endif
        for (; k < n; k++, i++) {
            acc = block_dot(acc, &v[k], x + (size_t)i * QBLOCK);
            if (!symmetric(type))
                offset += v[k].m * xs[i];
        }
    }
    (void)xp;
    return hsum(acc) + offset;
}

/* y = q·d + m, a multiply then an add, for one row. */
static inline __attribute__((always_inline)) void
row_dequant(int type, const uint8_t *src, int cols, float *y)
{
    const size_t ub = unit_bytes(type);
    qbytes v[8];
    for (int i = 0; i < cols / QBLOCK; src += ub) {
        int n = unpack(type, src, v);
        for (int k = 0; k < n; k++, i++, y += QBLOCK) {
            __m256 d = _mm256_set1_ps(v[k].d), m = _mm256_set1_ps(v[k].m);
            for (int j = 0; j < 4; j++)
                _mm256_storeu_ps(y + 8 * j, _mm256_add_ps(_mm256_mul_ps(q_ps(&v[k], j), d), m));
        }
    }
}

#else /* portable versions: each unit through 8-bit blocks */

static inline int unpack(int type, const uint8_t *b, qblock *v)
{
    if (type == TYPE_QBLOCK) {
        *v = *(const qblock *)b;
        return 1;
    }
    if (is_k_quant(type)) {
        convert_super_k(type, b, v);
        return 8;
    }
    return convert_block_exact(type, b, v);
}

#define PAIRS 0
#define GROUPS 0

static void pair_x(float *xp, const float *x, int nb) { (void)xp, (void)x, (void)nb; }

static float row_dot(int type, const uint8_t *src, int cols, const float *x, const float *xp,
                     const float *xs)
{
    (void)xp;
    float acc = 0.0f;
    const size_t ub = unit_bytes(type);
    qblock v[8];
    for (int i = 0; i < cols / QBLOCK; src += ub) {
        int n = unpack(type, src, v);
        for (int k = 0; k < n; k++, i++, x += QBLOCK) {
            float p = 0.0f;
            for (int j = 0; j < QBLOCK; j++)
                p += (float)v[k].q[j] * x[j];
            acc += v[k].d * p + v[k].m * xs[i];
        }
    }
    return acc;
}

static void row_dequant(int type, const uint8_t *src, int cols, float *y)
{
    const size_t ub = unit_bytes(type);
    qblock v[8];
    for (int i = 0; i < cols / QBLOCK; src += ub) {
        int n = unpack(type, src, v);
        for (int k = 0; k < n; k++, i++, y += QBLOCK)
            for (int j = 0; j < QBLOCK; j++)
                y[j] = (float)v[k].q[j] * v[k].d + v[k].m;
    }
}

#endif

/* ---- groups of rows ----------------------------------------------------------------
 *
 * Decode's kernel works on one row at a time when the matrix is row-major: per block it
 * unpacks 32 weights, runs four lanes of multiply-adds, then adds d·p into one
 * accumulator, a chain of dependent additions per row with half its work spent
 * rearranging bytes.  With AVX-512, Q4_0, Q4_1 and Q8_0 (the types SmolLM2 and the like
 * are made of) are held with every 16 consecutive rows interleaved, block by block:
 * a group block is the 16 rows' block b, each field of the GGUF block laid out for 16
 * rows side by side —
 *
 *     d[16] (fp16) | m[16] (fp16, Q4_1 only) | payload byte 0 of rows 0..15 | byte 1 ... |
 *
 * so that one load gives a field of 16 rows, one lane per row, and the kernel
 * (group_dot) computes row_dot's very operations for 16 rows in the 16 lanes, with no
 * shuffles and no horizontal sums.  The bytes are the GGUF's (a group block of type T is
 * 16 of its blocks), only reordered; the rows past the last full group stay row-major,
 * where they were, and go through row_dot.  Single rows (the embedding, the prefill's
 * dequantisation) are read back by ungroup_block. */

static int grouped_type(int type)
{
    return GROUPS && (type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q8_0);
}

/* Bytes of the fp16 header (d, or d and m) of a block of a grouped type. */
static int header_bytes(int type) { return type == GGML_TYPE_Q4_1 ? 4 : 2; }

/* Group block of the 16 blocks at src, src + row_bytes, ... (one per row). */
static void group_block(uint8_t *dst, const uint8_t *src, size_t row_bytes, int type)
{
    const int ub = ggml_type_bytes(type), h = header_bytes(type);
    for (int i = 0; i < GROUP_ROWS; i++, src += row_bytes) {
        for (int f = 0; f < h; f += 2)
            memcpy(dst + GROUP_ROWS * f + 2 * i, src + f, 2);
        for (int j = h; j < ub; j++)
            dst[GROUP_ROWS * j + i] = src[j];
    }
}

/* Row i's GGUF block out of group block g: group_block undone. */
static void ungroup_block(uint8_t *dst, const uint8_t *g, int i, int type)
{
    const int ub = ggml_type_bytes(type), h = header_bytes(type);
    for (int f = 0; f < h; f += 2)
        memcpy(dst + f, g + GROUP_ROWS * f + 2 * i, 2);
    for (int j = h; j < ub; j++)
        dst[j] = g[GROUP_ROWS * j + i];
}

/* The 16 GGUF blocks of group block g, row i's at dst + i·(block bytes): ungroup_block
 * for all 16 rows, with AVX-512 the payload by byte transposes. */
static void ungroup_blocks(uint8_t *dst, const uint8_t *g, int type)
{
    const int ub = ggml_type_bytes(type), h = header_bytes(type);
#if GROUPS
    for (int i = 0; i < GROUP_ROWS; i++)
        for (int f = 0; f < h; f += 2)
            memcpy(dst + i * ub + f, g + GROUP_ROWS * f + 2 * i, 2);
    for (int j0 = h; j0 < ub; j0 += 16) {   /* payload bytes j0 .. j0+15 */
        __m128i a[16];
        for (int j = 0; j < 16; j++)
            a[j] = _mm_loadu_si128((const __m128i *)(g + GROUP_ROWS * (j0 + j)));
        transpose16(a);
        for (int i = 0; i < GROUP_ROWS; i++)
            _mm_storeu_si128((__m128i *)(dst + i * ub + j0), a[i]);
    }
#else
    for (int i = 0; i < GROUP_ROWS; i++)
        ungroup_block(dst + i * ub, g, i, type);
    (void)h;
#endif
}

/* W's rows from data into w->raw, the full groups interleaved. */
static void group_rows(qmatrix *w, const uint8_t *data)
{
    const size_t ub = (size_t)ggml_type_bytes(w->type), group = GROUP_ROWS * w->row_bytes;
    const int groups = w->rows / GROUP_ROWS, nb = w->cols / QBLOCK;
    uint8_t *dst = (uint8_t *)w->raw;
    for (int g = 0; g < groups; g++)
        for (int b = 0; b < nb; b++)
            group_block(dst + g * group + b * GROUP_ROWS * ub, data + g * group + b * ub,
                        w->row_bytes, w->type);
    memcpy(dst + groups * group, data + groups * group,
           (size_t)(w->rows % GROUP_ROWS) * w->row_bytes);
    w->grouped = 1;
}

/* Row r of a grouped W as floats (as row_dequant gives them from the GGUF's blocks). */
static void grouped_row(float *dst, const qmatrix *w, int r)
{
    const size_t ub = (size_t)ggml_type_bytes(w->type);
    const uint8_t *g = w->raw + (size_t)(r / GROUP_ROWS) * GROUP_ROWS * w->row_bytes;
    uint8_t block[64];
    for (int b = 0; b < w->cols / QBLOCK; b++, g += GROUP_ROWS * ub, dst += QBLOCK) {
        ungroup_block(block, g, r % GROUP_ROWS, w->type);
        row_dequant(w->type, block, QBLOCK, dst);
    }
}

/* ---- holding a matrix ------------------------------------------------------------- */

/* Memory for `bytes` of weights: 2 MiB aligned and advised to use huge pages, so that
 * decode's stream through them misses the TLB less. */
static void *weights_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (posix_memalign(&p, bytes >= huge ? huge : 64, bytes ? bytes : 1))
        return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= huge)
        madvise(p, bytes - bytes % huge, MADV_HUGEPAGE);   /* advice only */
#endif
    return p;
}

/* Rows of an inexact type: dequantised, then requantised block by block. */
static int requantise_rows(qmatrix *w, const uint8_t *data, kv_err *err)
{
    int nb = w->cols / QBLOCK, rc = 0;
    float *tmp = malloc((size_t)w->cols * sizeof *tmp);
    if (!tmp)
        return kv_errorf(err, KV_ENOMEM, "out of memory converting a %d-wide row", w->cols);
    for (int r = 0; r < w->rows && !rc; r++) {
        rc = dequant_row(w->type, data + (size_t)r * w->row_bytes, tmp, w->cols, err);
        for (int b = 0; b < nb && !rc; b++)
            requantise_block(tmp + b * QBLOCK, &w->blocks[(size_t)r * nb + b]);
    }
    free(tmp);
    return rc;
}

/* Rows of an exact type as 8-bit blocks (the form before raw blocks; kept for the
 * tests that hold raw blocks to it). */
static void convert_rows(qmatrix *w, const uint8_t *data)
{
    const int nb = w->cols / QBLOCK, per = unit_blocks(w->type);
    const size_t ub = (size_t)ggml_type_bytes(w->type);
    for (int r = 0; r < w->rows; r++) {
        const uint8_t *src = data + (size_t)r * w->row_bytes;
        qblock *dst = w->blocks + (size_t)r * nb;
        for (int b = 0; b < nb; b += per, src += ub)
            if (per == 8)
                convert_super_k(w->type, src, &dst[b]);
            else
                convert_block_exact(w->type, src, &dst[b]);
    }
}

static int float_rows(qmatrix *w, const uint8_t *data, kv_err *err)
{
    int rc = 0;
    for (int r = 0; r < w->rows && !rc; r++)
        rc = dequant_row(w->type, data + (size_t)r * w->row_bytes, w->f + (size_t)r * w->cols,
                         w->cols, err);
    return rc;
}

int model__qmatrix_init(qmatrix *w, int type, int rows, int cols, const void *data,
                        int native, size_t *bytes, kv_err *err)
{
    *w = (qmatrix){.type = type, .rows = rows, .cols = cols};
    if (ggml_row_size(type, cols, &w->row_bytes, err))
        return err ? err->code : KV_EFORMAT;
    if (!ggml_type_can_dequant(type))
        return kv_errorf(err, KV_EUNSUPPORTED, "no dequantisation for ggml type %s (id %d)",
                         ggml_type_name(type), type);
    const int keep_float = model__keeps_float(type), raw = native && model__keeps_raw(type);
    size_t n = keep_float ? (size_t)rows * cols * sizeof(float)
             : raw ? (size_t)rows * w->row_bytes
             : (size_t)rows * (cols / QBLOCK) * sizeof(qblock);
    void *p = weights_alloc(n);
    if (!p)
        return kv_errorf(err, KV_ENOMEM, "out of memory for a %d x %d matrix (%zu bytes)",
                         rows, cols, n);
    *bytes += n;
    int rc = 0;
    if (raw) {
        w->raw = p;
        if (grouped_type(type))
            group_rows(w, data);
        else
            memcpy(p, data, n);
    } else if (keep_float) {
        w->f = p;
        rc = float_rows(w, data, err);
    } else {
        w->blocks = p;
        if (model__keeps_raw(type))
            convert_rows(w, data);
        else
            rc = requantise_rows(w, data, err);
    }
    return rc;
}

void model__qmatrix_free(qmatrix *w)
{
    if (!w->shared) {
        free((void *)w->raw);
        free(w->blocks);
        free(w->f);
    }
    *w = (qmatrix){0};
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

/* Row r of W: its storage "type" and first byte. */
static int row_at(const qmatrix *w, int r, const uint8_t **src)
{
    if (w->raw) {
        *src = w->raw + (size_t)r * w->row_bytes;
        return w->type;
    }
    *src = (const uint8_t *)(w->blocks + (size_t)r * (w->cols / QBLOCK));
    return TYPE_QBLOCK;
}

/* out[r] for every row, the loop written out for each storage type T, a constant
 * inside the parallel region (OpenMP outlines it: a variable would not be folded into
 * row_dot). */
#define MATVEC_ROWS(T)                                                                  \
    _Pragma("omp parallel for schedule(static)")                                        \
    for (int r = 0; r < w->rows; r++) {                                                 \
        const uint8_t *src;                                                             \
        row_at(w, r, &src);                                                             \
        out[r] = row_dot(T, src, w->cols, x, xp, xs);                                   \
    }

#if GROUPS
/* Item i of a grouped W's product: group i (16 rows), or, past the groups, one of the
 * rows after them. */
static inline __attribute__((always_inline)) void
group_item(int type, const qmatrix *w, float *out, int i, const float *x, const float *xp,
           const float *xs)
{
    const int groups = w->rows / GROUP_ROWS;
    const size_t r = i < groups ? (size_t)i * GROUP_ROWS
                                : (size_t)groups * GROUP_ROWS + (size_t)(i - groups);
    const uint8_t *src = w->raw + r * w->row_bytes;
    if (i < groups)
        group_dot(type, src, w->cols / QBLOCK, x, xs, out + r);
    else
        out[r] = row_dot(type, src, w->cols, x, xp, xs);
}

static int group_items(const qmatrix *w) { return w->rows / GROUP_ROWS + w->rows % GROUP_ROWS; }
#endif

/* Every item of the `count` grouped matrices, first[k] the first item of W_k. */
#define MATVEC_GROUPS(T)                                                                \
    _Pragma("omp parallel for schedule(static)")                                        \
    for (int i = 0; i < first[count]; i++) {                                            \
        int k = 0;                                                                      \
        while (i >= first[k + 1])                                                       \
            k++;                                                                        \
        group_item(T, w[k], out[k], i - first[k], x, xp, xs);                           \
    }

void model__matvec_many(float *const *out, const qmatrix *const *w, int count, const float *x)
{
    int together = GROUPS && count <= MATVEC_MANY;
    for (int k = 0; k < count && together; k++)
        together = w[k]->grouped && w[k]->type == w[0]->type && w[k]->cols == w[0]->cols;
    if (!together) {
        for (int k = 0; k < count; k++)
            model__matvec(out[k], w[k], x);
        return;
    }
#if GROUPS
    const int cols = w[0]->cols;
    float xs[MODEL_MAX_COLS / QBLOCK];
    block_sums(xs, x, cols / QBLOCK);
    float xp[cols];   /* for the rows after the groups */
    pair_x(xp, x, cols / QBLOCK);
    int first[MATVEC_MANY + 1] = {0};
    for (int k = 0; k < count; k++)
        first[k + 1] = first[k] + group_items(w[k]);
    switch (w[0]->type) {
    case GGML_TYPE_Q4_0: MATVEC_GROUPS(GGML_TYPE_Q4_0) break;
    case GGML_TYPE_Q4_1: MATVEC_GROUPS(GGML_TYPE_Q4_1) break;
    default:             MATVEC_GROUPS(GGML_TYPE_Q8_0) break;
    }
#endif
}

void model__matvec(float *out, const qmatrix *w, const float *x)
{
    if (w->grouped) {
        model__matvec_many(&out, &w, 1, x);
        return;
    }
    if (w->f) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, w->rows, w->cols, 1.0f, w->f, w->cols, x, 1,
                    0.0f, out, 1);
        return;
    }
    float xs[MODEL_MAX_COLS / QBLOCK];   /* model_open refuses wider rows */
    block_sums(xs, x, w->cols / QBLOCK);
    float xp[PAIRS ? w->cols : 1];   /* at most 256 KiB, on the calling thread's stack */
    if (PAIRS)
        pair_x(xp, x, w->cols / QBLOCK);
    const uint8_t *src0;
    const int type = row_at(w, 0, &src0);
    switch (type) {
    case GGML_TYPE_Q4_0: MATVEC_ROWS(GGML_TYPE_Q4_0) break;
    case GGML_TYPE_Q4_1: MATVEC_ROWS(GGML_TYPE_Q4_1) break;
    case GGML_TYPE_Q5_0: MATVEC_ROWS(GGML_TYPE_Q5_0) break;
    case GGML_TYPE_Q8_0: MATVEC_ROWS(GGML_TYPE_Q8_0) break;
    case GGML_TYPE_Q4_K: MATVEC_ROWS(GGML_TYPE_Q4_K) break;
    case TYPE_QBLOCK:    MATVEC_ROWS(TYPE_QBLOCK) break;
    default:             MATVEC_ROWS(type) break;
    }
}
#undef MATVEC_ROWS
#undef MATVEC_GROUPS

void model__qmatrix_row(float *dst, const qmatrix *w, int r)
{
    if (w->f) {
        memcpy(dst, w->f + (size_t)r * w->cols, (size_t)w->cols * sizeof *dst);
        return;
    }
    if (w->grouped && r < w->rows / GROUP_ROWS * GROUP_ROWS) {
        grouped_row(dst, w, r);
        return;
    }
    const uint8_t *src;
    int type = row_at(w, r, &src);
    row_dequant(type, src, w->cols, dst);
}

/* Rows lo .. hi-1 of group g of a grouped W, as floats at dst + (r - r0)·cols. */
static void group_dequant(float *dst, const qmatrix *w, int g, int r0, int lo, int hi)
{
    const size_t ub = (size_t)ggml_type_bytes(w->type);
    const uint8_t *src = w->raw + (size_t)g * GROUP_ROWS * w->row_bytes;
    uint8_t blocks[GROUP_ROWS * 64];
    for (int b = 0; b < w->cols / QBLOCK; b++, src += GROUP_ROWS * ub) {
        ungroup_blocks(blocks, src, w->type);
        for (int r = lo; r < hi; r++)
            row_dequant(w->type, blocks + (size_t)(r - g * GROUP_ROWS) * ub, QBLOCK,
                        dst + (size_t)(r - r0) * w->cols + (size_t)b * QBLOCK);
    }
}

/* model__dequant_rows of a grouped W: a group at a time (one byte transpose for its 16
 * rows), the rows after the last group one by one. */
static void grouped_dequant_rows(float *dst, const qmatrix *w, int r0, int n)
{
    const int full = w->rows / GROUP_ROWS * GROUP_ROWS, r1 = r0 + n;
    const int g0 = r0 / GROUP_ROWS, g1 = r0 < full ? ((r1 < full ? r1 : full) + GROUP_ROWS - 1) / GROUP_ROWS : g0;
    const int t0 = r0 > full ? r0 : full, groups = g1 - g0;
    const int items = groups + (r1 > t0 ? r1 - t0 : 0);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < items; i++) {
        if (i < groups) {
            const int g = g0 + i, lo = g * GROUP_ROWS, hi = lo + GROUP_ROWS;
            group_dequant(dst, w, g, r0, lo > r0 ? lo : r0, hi < r1 ? hi : r1);
        } else {
            const int r = t0 + i - groups;
            model__qmatrix_row(dst + (size_t)(r - r0) * w->cols, w, r);
        }
    }
}

void model__dequant_rows(float *dst, const qmatrix *w, int r0, int n)
{
    if (w->grouped) {
        grouped_dequant_rows(dst, w, r0, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++)
        model__qmatrix_row(dst + (size_t)r * w->cols, w, r0 + r);
}
