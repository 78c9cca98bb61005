/*
 * dequant.c — ggml type table and block dequantisers; see dequant.h.
 *
 * Invariants:
 *  (1) Every block function reads exactly ggml_type_bytes(type) bytes and writes
 *      exactly ggml_type_block(type) floats; rows are whole blocks.
 *  (2) Multi-byte fields are read with memcpy: blocks start at any byte (an 18-byte
 *      Q4_0 block puts every other scale at an odd address).
 *  (3) Each output is computed with the float32 operations of ggml's reference
 *      dequantizers, in the same order, each in its own statement.  C only lets a
 *      compiler fuse a*b+c into one FMA within one expression (and GCC's ISO C modes
 *      never fuse), so results are bit-identical to ggml and gguf-py.
 */
#include "dequant.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fp16.h"

/* ---- the type table ---------------------------------------------------------------- */

typedef struct type_info {
    const char *name;   /* NULL for ids not in GGML_TYPE_MAP */
    int         block;  /* elements per block */
    int         bytes;  /* bytes per block */
} type_info;

static const type_info types[GGML_TYPE_COUNT] = {
#define GGML_TYPE_ROW(name, id, block, bytes) [id] = {#name, block, bytes},
    GGML_TYPE_MAP(GGML_TYPE_ROW)
#undef GGML_TYPE_ROW
};

static const type_info *lookup(int type)
{
    if (type < 0 || type >= GGML_TYPE_COUNT || !types[type].name)
        return NULL;
    return &types[type];
}

const char *ggml_type_name(int type)
{
    const type_info *t = lookup(type);
    return t ? t->name : NULL;
}

int ggml_type_from_name(const char *name)
{
    for (int i = 0; i < GGML_TYPE_COUNT; i++)
        if (types[i].name && !strcasecmp(types[i].name, name))
            return i;
    return -1;
}

int ggml_type_block(int type)
{
    const type_info *t = lookup(type);
    return t ? t->block : 0;
}

int ggml_type_bytes(int type)
{
    const type_info *t = lookup(type);
    return t ? t->bytes : 0;
}

int ggml_row_size(int type, int64_t n, size_t *out, kv_err *err)
{
    *out = 0;
    const type_info *t = lookup(type);
    if (!t)
        return kv_errorf(err, KV_EUNSUPPORTED, "unknown ggml type id %d", type);
    if (n < 0 || n % t->block != 0)
        return kv_errorf(err, KV_EFORMAT,
                         "%s row of %lld elements, expected a multiple of its block size %d",
                         t->name, (long long)n, t->block);
    /* n / block blocks of at most 292 bytes cannot overflow size_t from an int64 n. */
    *out = (size_t)(n / t->block) * (size_t)t->bytes;
    return 0;
}

/* ---- small readers ----------------------------------------------------------------- */

static inline float half_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return fp16_to_f32(h);
}

static inline uint32_t u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- block dequantisers: one block from q into y ------------------------------------ */

typedef void (*block_fn)(const uint8_t *q, float *y);

static void block_f32(const uint8_t *q, float *y) { memcpy(y, q, 4); }
static void block_f16(const uint8_t *q, float *y) { *y = half_at(q); }

static void block_bf16(const uint8_t *q, float *y)
{
    uint16_t b;
    memcpy(&b, q, 2);
    *y = bf16_to_f32(b);
}

/* Q8_0: d@0, int8 qs[32]@2.  y = d * q. */
static void block_q8_0(const uint8_t *q, float *y)
{
    float d = half_at(q);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(int8_t)q[2 + j];
}

/* Q4_0: d@0, qs[16]@2.  Low nibbles are elements 0..15, high nibbles 16..31. */
static void block_q4_0(const uint8_t *q, float *y)
{
    float d = half_at(q);
    const uint8_t *qs = q + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 0x0F) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1: d@0, m@2, qs[16]@4.  y = d * q + m, q in 0..15. */
static void block_q4_1(const uint8_t *q, float *y)
{
    float d = half_at(q), m = half_at(q + 2);
    const uint8_t *qs = q + 4;
    for (int j = 0; j < 16; j++) {
        float lo = d * (float)(qs[j] & 0x0F);
        float hi = d * (float)(qs[j] >> 4);
        y[j] = lo + m;
        y[j + 16] = hi + m;
    }
}

/* Q5_0: d@0, qh[4]@2, qs[16]@6.  Bit j of qh is the 5th bit of element j. */
static void block_q5_0(const uint8_t *q, float *y)
{
    float d = half_at(q);
    uint32_t qh = u32_at(q + 2);
    const uint8_t *qs = q + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

/* Q5_1: d@0, m@2, qh[4]@4, qs[16]@8.  y = d * q + m, q in 0..31. */
static void block_q5_1(const uint8_t *q, float *y)
{
    float d = half_at(q), m = half_at(q + 2);
    uint32_t qh = u32_at(q + 4);
    const uint8_t *qs = q + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0F) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        float plo = d * (float)lo;
        float phi = d * (float)hi;
        y[j] = plo + m;
        y[j + 16] = phi + m;
    }
}

/* IQ4_NL: d@0, qs[16]@2, Q4_0's nibble order, each nibble indexing a non-linear table. */
static void block_iq4_nl(const uint8_t *q, float *y)
{
    static const int8_t kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};
    float d = half_at(q);
    const uint8_t *qs = q + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)kvalues[qs[j] & 0x0F];
        y[j + 16] = d * (float)kvalues[qs[j] >> 4];
    }
}

/* The 6-bit (scale, min) pair of sub-block k of Q4_K/Q5_K, packed in 12 bytes
 * (ggml's get_scale_min_k4; layout in reference/inference.md §1.3). */
static void scale_min_k4(int k, const uint8_t *s, uint8_t *sc, uint8_t *mn)
{
    if (k < 4) {
        *sc = s[k] & 63;
        *mn = s[k + 4] & 63;
    } else {
        *sc = (uint8_t)((s[k + 4] & 0x0F) | ((s[k - 4] >> 6) << 4));
        *mn = (uint8_t)((s[k + 4] >> 4) | ((s[k] >> 6) << 4));
    }
}

int dequant_k_sub_blocks(int type, const void *block, float d[8], float m[8],
                         uint8_t q[8][32])
{
    if (type != GGML_TYPE_Q4_K && type != GGML_TYPE_Q5_K)
        return KV_EUNSUPPORTED;
    const uint8_t *b = block;
    const bool five = type == GGML_TYPE_Q5_K;
    const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);
    /* chunk c (64 outputs) reads qs[32c..]: low nibbles form sub-block 2c, high
     * nibbles sub-block 2c+1; Q5_K's bit s of qh[l] is the 5th bit of element l of
     * sub-block s */
    for (int c = 0; c < 4; c++, qs += 32)
        for (int l = 0; l < 32; l++) {
            q[2 * c][l] = (uint8_t)((qs[l] & 0x0F) | (five ? ((qh[l] >> (2 * c)) & 1) << 4 : 0));
            q[2 * c + 1][l] = (uint8_t)((qs[l] >> 4) | (five ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0));
        }
    return dequant_k_scales(type, block, d, m);
}

int dequant_k_scales(int type, const void *block, float d[8], float m[8])
{
    if (type != GGML_TYPE_Q4_K && type != GGML_TYPE_Q5_K)
        return KV_EUNSUPPORTED;
    const uint8_t *b = block;
    float d0 = half_at(b), dmin = half_at(b + 2);
    for (int k = 0; k < 8; k++) {
        uint8_t sc, mn;
        scale_min_k4(k, b + 4, &sc, &mn);
        d[k] = d0 * (float)sc;
        m[k] = dmin * (float)mn;
    }
    return 0;
}

/* Q4_K: d@0, dmin@2, scales[12]@4, qs[128]@16; Q5_K: d@0, dmin@2, scales[12]@4,
 * qh[32]@16, qs[128]@48.  y = (d*sc) * q - (dmin*mn) per sub-block of 32. */
static void block_k(int type, const uint8_t *b, float *y)
{
    float d[8], m[8];
    uint8_t q[8][32];
    dequant_k_sub_blocks(type, b, d, m, q);
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 32; l++) {
            float p = d[k] * (float)q[k][l];
            y[32 * k + l] = p - m[k];
        }
}

static void block_q4_k(const uint8_t *q, float *y) { block_k(GGML_TYPE_Q4_K, q, y); }
static void block_q5_k(const uint8_t *q, float *y) { block_k(GGML_TYPE_Q5_K, q, y); }

/* Q6_K: ql[128]@0, qh[64]@128, int8 scales[16]@192, d@208.  Two halves of 128; in
 * half h, output l + 32k takes 4 low bits from ql and 2 high bits (bits 2k..2k+1)
 * from qh[l], minus 32, times d * scales[l/16 + 2k]. */
static void block_q6_k(const uint8_t *q, float *y)
{
    float d = half_at(q + 208);
    const int8_t *sc = (const int8_t *)(q + 192);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = q + 64 * h, *qh = q + 128 + 32 * h;
        float *yh = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16 + 8 * h;
            int v[4] = {
                (ql[l] & 0x0F) | ((qh[l] >> 0 & 3) << 4),
                (ql[l + 32] & 0x0F) | ((qh[l] >> 2 & 3) << 4),
                (ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4),
                (ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4),
            };
            for (int k = 0; k < 4; k++) {
                float ds = d * (float)sc[is + 2 * k];
                yh[l + 32 * k] = ds * (float)(v[k] - 32);
            }
        }
    }
}

static const block_fn block_fns[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = block_f32,       [GGML_TYPE_F16] = block_f16,
    [GGML_TYPE_BF16] = block_bf16,     [GGML_TYPE_Q8_0] = block_q8_0,
    [GGML_TYPE_Q4_0] = block_q4_0,     [GGML_TYPE_Q4_1] = block_q4_1,
    [GGML_TYPE_Q5_0] = block_q5_0,     [GGML_TYPE_Q5_1] = block_q5_1,
    [GGML_TYPE_Q4_K] = block_q4_k,     [GGML_TYPE_Q5_K] = block_q5_k,
    [GGML_TYPE_Q6_K] = block_q6_k,     [GGML_TYPE_IQ4_NL] = block_iq4_nl,
};

int ggml_type_can_dequant(int type)
{
    return lookup(type) && block_fns[type];
}

/* ---- rows ---------------------------------------------------------------------------- */

int dequant_row(int type, const void *src, float *dst, int64_t n, kv_err *err)
{
    size_t row_bytes;
    int rc = ggml_row_size(type, n, &row_bytes, err);
    if (rc)
        return rc;
    if (!block_fns[type])
        return kv_errorf(err, KV_EUNSUPPORTED, "no dequantisation for ggml type %s (id %d)",
                         types[type].name, type);
    const uint8_t *q = src;
    if (type == GGML_TYPE_F32) {           /* the one type that needs no conversion */
        memcpy(dst, q, row_bytes);
        return 0;
    }
    if (type == GGML_TYPE_F16 && ((uintptr_t)q & 1) == 0) {   /* F16C bulk path */
        fp16_to_f32_n((const uint16_t *)q, dst, (size_t)n);
        return 0;
    }
    const type_info *t = &types[type];
    block_fn fn = block_fns[type];
    for (int64_t b = 0; b < n / t->block; b++)
        fn(q + (size_t)b * (size_t)t->bytes, dst + b * t->block);
    return 0;
}
