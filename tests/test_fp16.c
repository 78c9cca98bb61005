/* test_fp16.c — our half-precision conversions against exhaustive and known values. */
#include <criterion/criterion.h>
#include <math.h>

#include "fp16.h"

Test(fp16, every_half_round_trips_through_f32)
{
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = fp16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        cr_assert_eq(fp16_from_f32(f), h, "0x%04x -> %g -> 0x%04x", h, f, fp16_from_f32(f));
    }
}

Test(fp16, known_values_and_rounding)
{
    cr_assert_eq(fp16_from_f32(1.0f), 0x3c00);
    cr_assert_eq(fp16_from_f32(-2.0f), 0xc000);
    cr_assert_eq(fp16_from_f32(65504.0f), 0x7bff);
    cr_assert_eq(fp16_from_f32(65520.0f), 0x7c00, "rounds up to infinity");
    cr_assert_eq(fp16_from_f32(5.9604645e-8f), 0x0001, "smallest subnormal");
    cr_assert_eq(fp16_from_f32(1.0f + 1.0f / 2048), 0x3c00, "tie rounds to even");
    cr_assert_eq(fp16_from_f32(1.0f + 3.0f / 2048), 0x3c02, "tie rounds to even");
    cr_assert(isnan(fp16_to_f32(fp16_from_f32(NAN))));
    cr_assert_eq(bf16_from_f32(1.0f), 0x3f80);
    cr_assert_float_eq(bf16_to_f32(0x4049), 3.140625f, 0);
}

Test(fp16, bulk_matches_scalar)
{
    enum { N = 1003 };
    float src[N], back[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++)
        src[i] = sinf((float)i) * powf(2.0f, (float)(i % 40 - 25));
    fp16_from_f32_n(src, h, N);
    fp16_to_f32_n(h, back, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(h[i], fp16_from_f32(src[i]), "i=%d", i);
        cr_assert_eq(back[i], fp16_to_f32(h[i]), "i=%d", i);
    }
}
