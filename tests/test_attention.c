/*
 * test_attention.c — model/attention.h, the arithmetic the forward pass and rebuilt
 * trace rows share: its exp against the C library's in double precision, and the
 * masked softmax against a double-precision one.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attention.h"

/* Distance in units in the last place of `want` (as a float). */
static double ulps(float got, double want)
{
    const float w = (float)want;
    const double ulp = w == 0 ? 0x1p-149 : fabs((double)nextafterf(w, INFINITY) - w);
    return fabs(got - want) / ulp;
}

Test(attention, exp_is_within_2_ulp_on_the_softmax_range)
{
    double worst = 0, at = 0;
    for (float x = -87.3f; x <= 0; x += 3.1e-5f) {
        double u = ulps(attention_exp(x), exp((double)x));
        if (u > worst)
            worst = u, at = x;
    }
    for (int i = 0; i < 1000; i++) {   /* the small ones, densely */
        float x = -1e-3f * (float)i / 1000;
        double u = ulps(attention_exp(x), exp((double)x));
        if (u > worst)
            worst = u, at = x;
    }
    fprintf(stderr, "attention_exp: worst %.2f ulp (at x = %g)\n", worst, at);
    cr_assert_leq(worst, 2.0, "worst %.2f ulp at x = %g", worst, at);
    cr_assert_eq(attention_exp(0), 1.0f);
    cr_assert_eq(attention_exp(-100), 0.0f);
    cr_assert_eq(attention_exp(-INFINITY), 0.0f);
}

Test(attention, softmax_masks_and_matches_double_precision)
{
    enum { W = 300 };
    float row[W];
    double ref[W];
    for (int lo = 0; lo < 40; lo += 13)
        for (int len = lo + 1; len <= W; len += 37) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < W; j++)
                row[j] = 8 * sinf(0.37f * j) + 0.01f * j;
            for (int j = lo; j < len; j++)
                mx = fmax(mx, row[j]);
            for (int j = lo; j < len; j++)
                sum += ref[j] = exp((double)row[j] - mx);
            attention_softmax(row, lo, len, W);
            double total = 0;
            for (int j = 0; j < W; j++) {
                double want = j >= lo && j < len ? ref[j] / sum : 0;
                cr_assert_leq(fabs(row[j] - want), 1e-6 * (want > 1e-3 ? want * 100 : 1),
                              "lo %d len %d key %d: %g vs %g", lo, len, j, row[j], want);
                total += row[j];
            }
            cr_assert_leq(fabs(total - 1), 1e-5, "lo %d len %d sums to %.9f", lo, len, total);
        }
}
