/*
 * forward_rules.h — the per-element arithmetic of the CUDA forward pass
 * (gpu/gpu_forward.cu), written once for the device and the CPU, where
 * tests/test_gpu_forward.c checks it against the CPU runtime it must reproduce:
 *
 *   fwd_dequant      element j of one GGUF block, bit for bit model/dequant.c's
 *                    dequant_row (the same float32 operations in the same order, one
 *                    rounding each: on the device through __fmul_rn/__fadd_rn, which
 *                    are never fused into an FMA)
 *   fwd_rope_*       model/forward.c's frequencies (HF's float32 θ_i, then the layer's
 *                    scaling) and its rotation of one pair; the host computes the
 *                    cos/sin tables with these and uploads them, so the device rotates
 *                    by the CPU's very angles
 *   fwd_silu_mul, fwd_gelu_tanh_mul, fwd_softcap, fwd_rms_scale
 *                    the CPU's formulas; on the device expf/tanhf/sqrtf are CUDA's
 *                    (within 2 ulp of glibc), so these agree to rounding, not bit for bit
 *
 * ggml type ids are repeated here (gpu/ sits below model/ in the layer order); the test
 * checks them against model/dequant.h.
 */
#ifndef FORWARD_RULES_H
#define FORWARD_RULES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define FWD_FN __host__ __device__ static inline
#else
#define FWD_FN static inline
#endif

#ifdef __CUDA_ARCH__
#define FWD_MUL(a, b) __fmul_rn((a), (b))
#define FWD_ADD(a, b) __fadd_rn((a), (b))
#define FWD_SUB(a, b) __fsub_rn((a), (b))
#else
#define FWD_MUL(a, b) ((a) * (b))
#define FWD_ADD(a, b) ((a) + (b))
#define FWD_SUB(a, b) ((a) - (b))
#endif

/* ggml type ids (ggml.h) of the types the forward pass dequantises. */
enum {
    FWD_F32 = 0, FWD_F16 = 1, FWD_Q4_0 = 2, FWD_Q4_1 = 3, FWD_Q5_0 = 6, FWD_Q5_1 = 7,
    FWD_Q8_0 = 8, FWD_Q4_K = 12, FWD_Q5_K = 13, FWD_Q6_K = 14, FWD_IQ4_NL = 20, FWD_BF16 = 30,
};

/* Elements and bytes of one block of `type`; 0 for a type not listed above. */
FWD_FN int fwd_block_elems(int type)
{
    switch (type) {
    case FWD_F32: case FWD_F16: case FWD_BF16: return 1;
    case FWD_Q4_K: case FWD_Q5_K: case FWD_Q6_K: return 256;
    case FWD_Q4_0: case FWD_Q4_1: case FWD_Q5_0: case FWD_Q5_1: case FWD_Q8_0:
    case FWD_IQ4_NL: return 32;
    default: return 0;
    }
}

FWD_FN int fwd_block_bytes(int type)
{
    switch (type) {
    case FWD_F32: return 4;
    case FWD_F16: case FWD_BF16: return 2;
    case FWD_Q4_0: case FWD_IQ4_NL: return 18;
    case FWD_Q4_1: return 20;
    case FWD_Q5_0: return 22;
    case FWD_Q5_1: return 24;
    case FWD_Q8_0: return 34;
    case FWD_Q4_K: return 144;
    case FWD_Q5_K: return 176;
    case FWD_Q6_K: return 210;
    default: return 0;
    }
}

/* ---- readers: blocks start at any byte ----------------------------------------------- */

FWD_FN float fwd_bits_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* IEEE binary16 -> binary32, exact (common/fp16.h's fp16_to_f32). */
FWD_FN float fwd_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f)
        return fwd_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return fwd_bits_f32(sign);
        float v = FWD_MUL((float)man, 1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return fwd_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

FWD_FN float fwd_half_at(const uint8_t *p) { return fwd_half((uint16_t)(p[0] | p[1] << 8)); }

FWD_FN uint32_t fwd_u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- element j of one block ---------------------------------------------------------- */

/* Q4_0 / IQ4_NL / Q5_0 / Q5_1 / Q4_1: low nibbles are elements 0..15, high 16..31. */
FWD_FN int fwd_nibble(const uint8_t *qs, int j)
{
    return j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
}

/* The 5th bit of element j (bit j of the 32-bit qh). */
FWD_FN int fwd_bit5(const uint8_t *qh, int j) { return (int)((fwd_u32_at(qh) >> j) & 1u) << 4; }

/* Q4_K / Q5_K: element j = 32k + l of sub-block k, y = (d·sc_k)·q − dmin·mn_k. */
FWD_FN float fwd_k_elem(const uint8_t *b, int j, int five)
{
    const int k = j / 32, l = j % 32, c = k / 2;
    const uint8_t *s = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16) + 32 * c;
    int sc, mn;
    if (k < 4) {
        sc = s[k] & 63;
        mn = s[k + 4] & 63;
    } else {
        sc = (s[k + 4] & 0x0F) | ((s[k - 4] >> 6) << 4);
        mn = (s[k + 4] >> 4) | ((s[k] >> 6) << 4);
    }
    int q = k % 2 ? qs[l] >> 4 : qs[l] & 0x0F;
    if (five)
        q |= ((qh[l] >> k) & 1) << 4;
    float dk = FWD_MUL(fwd_half_at(b), (float)sc), mk = FWD_MUL(fwd_half_at(b + 2), (float)mn);
    float p = FWD_MUL(dk, (float)q);
    return FWD_SUB(p, mk);
}

/* Q6_K: half h = j / 128; in it, output l + 32k takes 4 low bits from ql and bits
 * 2k..2k+1 of qh[l], minus 32, times d · scales[l/16 + 8h + 2k]. */
FWD_FN float fwd_q6_k_elem(const uint8_t *b, int j)
{
    const int h = j / 128, r = j % 128, k = r / 32, l = r % 32;
    const uint8_t *ql = b + 64 * h + (k % 2 ? 32 : 0), *qh = b + 128 + 32 * h;
    int lo = k < 2 ? ql[l] & 0x0F : ql[l] >> 4;
    int v = lo | ((qh[l] >> (2 * k) & 3) << 4);
    float ds = FWD_MUL(fwd_half_at(b + 208), (float)(int8_t)b[192 + l / 16 + 8 * h + 2 * k]);
    return FWD_MUL(ds, (float)(v - 32));
}

/* Element j (0 .. fwd_block_elems(type)-1) of the block at b.  0 for an unknown type. */
FWD_FN float fwd_dequant(int type, const uint8_t *b, int j)
{
    switch (type) {
    case FWD_F32: return fwd_bits_f32(fwd_u32_at(b));
    case FWD_F16: return fwd_half_at(b);
    case FWD_BF16: return fwd_bits_f32((uint32_t)(b[0] | b[1] << 8) << 16);
    case FWD_Q8_0: return FWD_MUL(fwd_half_at(b), (float)(int8_t)b[2 + j]);
    case FWD_Q4_0: return FWD_MUL(fwd_half_at(b), (float)(fwd_nibble(b + 2, j) - 8));
    case FWD_Q4_1: {
        float p = FWD_MUL(fwd_half_at(b), (float)fwd_nibble(b + 4, j));
        return FWD_ADD(p, fwd_half_at(b + 2));
    }
    case FWD_Q5_0:
        return FWD_MUL(fwd_half_at(b), (float)((fwd_nibble(b + 6, j) | fwd_bit5(b + 2, j)) - 16));
    case FWD_Q5_1: {
        float p = FWD_MUL(fwd_half_at(b), (float)(fwd_nibble(b + 8, j) | fwd_bit5(b + 4, j)));
        return FWD_ADD(p, fwd_half_at(b + 2));
    }
    case FWD_IQ4_NL: {
        const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};
        return FWD_MUL(fwd_half_at(b), (float)kv[fwd_nibble(b + 2, j)]);
    }
    case FWD_Q4_K: return fwd_k_elem(b, j, 0);
    case FWD_Q5_K: return fwd_k_elem(b, j, 1);
    case FWD_Q6_K: return fwd_q6_k_elem(b, j);
    default: return 0.0f;
    }
}

/* Element i of a row of `type` starting at `row`. */
FWD_FN float fwd_dequant_at(int type, const uint8_t *row, long long i)
{
    const int be = fwd_block_elems(type);
    return fwd_dequant(type, row + (i / be) * fwd_block_bytes(type), (int)(i % be));
}

/* ---- RoPE ------------------------------------------------------------------------------ */

enum { FWD_ROPE_SCALING_NONE = 0, FWD_ROPE_SCALING_LINEAR = 1, FWD_ROPE_SCALING_FREQS = 2 };

/* θ_i = base^(−2i/n_rot) in float32 (HF), divided by rope_factors[i] (FREQS) or by
 * scale (LINEAR): model/forward.c's rope_inv_freq. */
FWD_FN float fwd_rope_inv_freq(float base, int n_rot, int i, int scaling, float scale,
                               const float *factors)
{
    float f = 1.0f / powf(base, (float)(2 * i) / (float)n_rot);
    if (scaling == FWD_ROPE_SCALING_FREQS)
        f /= factors[i];
    else if (scaling == FWD_ROPE_SCALING_LINEAR)
        f /= scale;
    return f;
}

/* Rotate the pair (a, b) by the angle whose cos and sin are cs, sn. */
FWD_FN void fwd_rope_rotate(float *a, float *b, float cs, float sn)
{
    float x = *a, y = *b;
    *a = FWD_SUB(FWD_MUL(x, cs), FWD_MUL(y, sn));
    *b = FWD_ADD(FWD_MUL(x, sn), FWD_MUL(y, cs));
}

/* Index of the partner of pair i's first element: NORMAL pairs (2i, 2i+1), NEOX pairs
 * (i, i + n_rot/2).  *first receives the first element's index. */
FWD_FN int fwd_rope_pair(int neox, int n_rot, int i, int *first)
{
    *first = neox ? i : 2 * i;
    return neox ? i + n_rot / 2 : 2 * i + 1;
}

/* ---- activations, softcap, RMSNorm ---------------------------------------------------- */

FWD_FN float fwd_silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

FWD_FN float fwd_gelu_tanh_mul(float g, float u)
{
    return 0.5f * g * (1.0f + tanhf(0.7978845608f * (g + 0.044715f * g * g * g))) * u;
}

FWD_FN float fwd_softcap(float x, float cap) { return cap * tanhf(x / cap); }

/* 1 / sqrt(mean(x²) + eps) from the sum of squares of d values. */
FWD_FN float fwd_rms_scale(float sum_sq, int d, float eps)
{
    return 1.0f / sqrtf(sum_sq / (float)d + eps);
}

#endif /* FORWARD_RULES_H */
