/* fp16.c — bulk half-precision conversions; F16C when the target has it. */
#include "fp16.h"

#ifdef __F16C__
#include <immintrin.h>
#endif

void fp16_to_f32_n(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++)
        dst[i] = fp16_to_f32(src[i]);
}

void fp16_bytes_to_f32_n(const unsigned char *src, float *dst, size_t n)
{
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
#endif
    for (; i < n; i++)
        dst[i] = fp16_to_f32(fp16_load(src + 2 * i));
}

void fp16_from_f32_n(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++)
        dst[i] = fp16_from_f32(src[i]);
}
