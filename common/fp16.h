/*
 * fp16.h — IEEE half and bfloat16 conversions, done in our own code.
 *
 * HDF5 1.10 has no native float16 and its soft conversion is ~14x slower than
 * converting ourselves, and GGUF stores F16/BF16 tensors and block scales: both
 * sides use these.  Scalar versions are exact (round to nearest even, NaN and
 * infinities preserved); the bulk versions use F16C when the compiler targets it.
 */
#ifndef FP16_H
#define FP16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float fp16_bits_as_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t fp16_f32_as_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/* IEEE binary16 -> binary32, exact for every input. */
static inline float fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f)                       /* inf or NaN */
        return fp16_bits_as_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return fp16_bits_as_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return fp16_bits_as_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* binary32 -> binary16, round to nearest even; overflow gives inf, NaN stays NaN. */
static inline uint16_t fp16_from_f32(float f)
{
    uint32_t x = fp16_f32_as_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u)                 /* NaN: keep it quiet and non-zero */
        return sign | 0x7e00u;
    if (abs >= 0x477ff000u)                /* rounds to >= 65520: infinity */
        return sign | 0x7c00u;
    if (abs < 0x38800000u) {               /* below 2^-14: subnormal or zero */
        float v = fp16_bits_as_f32(abs) * 16777216.0f;   /* in units of 2^-24 */
        uint32_t m = (uint32_t)v;
        float rest = v - (float)m;
        if (rest > 0.5f || (rest == 0.5f && (m & 1u)))
            m++;
        return sign | (uint16_t)m;
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);  /* nearest even at bit 13 */
    return sign | (uint16_t)((rounded - 0x38000000u) >> 13);
}

/* bfloat16 -> binary32 (exact) and binary32 -> bfloat16 (nearest even). */
static inline float bf16_to_f32(uint16_t b) { return fp16_bits_as_f32((uint32_t)b << 16); }

static inline uint16_t bf16_from_f32(float f)
{
    uint32_t x = fp16_f32_as_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* The f16 at p, which need not be 2-byte aligned (HDF5 places chunks at any byte). */
static inline uint16_t fp16_load(const void *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return h;
}

/* Bulk conversions of n values; fp16_bytes_to_f32_n reads n f16 at any byte. */
void fp16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void fp16_bytes_to_f32_n(const unsigned char *src, float *dst, size_t n);
void fp16_from_f32_n(const float *src, uint16_t *dst, size_t n);

#endif /* FP16_H */
