/*
 * test_metrics.c — the metric functions of analysis/metrics.h on rows small enough to
 * work by hand.  The numbers are docs/METRICS.md's worked example: if one changes,
 * the other must.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "metrics.h"

/* The worked example: query t = 5 over six entries; the policy kept 0, 1, 2, 5. */
static const float P[6] = {0.30f, 0.05f, 0.20f, 0.10f, 0.15f, 0.20f};
static const float V[6 * 2] = {1, 0, 0, 1, 1, 1, 2, 0, 0, 2, 1, -1};

static void kept_set(const int *pos, int n, policy_entry *out)
{
    for (int j = 0; j < n; j++)
        out[j] = (policy_entry){.position = pos[j], .token = -1, .flags = 0};
}

Test(metrics, worked_example_mass_kept_and_renormalised_row)
{
    policy_entry C[4];
    kept_set((const int[]){0, 1, 2, 5}, 4, C);
    float row[4];
    double m = metrics_gather(P, C, 4, row);
    cr_assert_float_eq(m, 0.75, 1e-7);
    cr_assert_float_eq(row[0], 0.30 / 0.75, 1e-6);
    cr_assert_float_eq(row[1], 0.05 / 0.75, 1e-6);
    cr_assert_float_eq(row[3], 0.20 / 0.75, 1e-6);
}

Test(metrics, worked_example_top_n_overlap)
{
    policy_entry C[4];
    kept_set((const int[]){0, 1, 2, 5}, 4, C);
    float scratch[6];
    int above;
    float theta = metrics_kth_largest(P, 6, 4, scratch, &above);
    cr_assert_float_eq(theta, 0.15f, 1e-7);
    cr_assert_eq(above, 3);
    cr_assert_float_eq(metrics_overlap(P, C, 4, theta, above), 0.75, 1e-12);
}

Test(metrics, overlap_counts_a_tied_entry_as_interchangeable)
{
    /* Top_2 of P is {0} plus one of the tied 0.20s (2 or 5): holding 5 is as good. */
    policy_entry C[2];
    kept_set((const int[]){0, 5}, 2, C);
    float scratch[6];
    int above;
    float theta = metrics_kth_largest(P, 6, 2, scratch, &above);
    cr_assert_float_eq(theta, 0.20f, 1e-7);
    cr_assert_eq(above, 1);
    cr_assert_float_eq(metrics_overlap(P, C, 2, theta, above), 1.0, 1e-12);
    /* ... but both tied entries cannot fill one place */
    kept_set((const int[]){2, 5}, 2, C);
    cr_assert_float_eq(metrics_overlap(P, C, 2, theta, above), 0.5, 1e-12);
}

Test(metrics, worked_example_output_error)
{
    policy_entry C[4];
    kept_set((const int[]){0, 1, 2, 5}, 4, C);
    float full[2], kept[2];
    metrics_output_full(P, 6, V, 2, full);
    cr_assert_float_eq(full[0], 0.90f, 1e-6);
    cr_assert_float_eq(full[1], 0.35f, 1e-6);
    metrics_output_kept(P, C, 4, 0.75, V, 2, kept);
    cr_assert_float_eq(kept[0], 0.70f / 0.75f, 1e-6);
    cr_assert_float_eq(kept[1], 0.05f / 0.75f, 1e-6);
    cr_assert_float_eq(metrics_relative_error(kept, full, 2), 0.295432, 1e-5);
}

Test(metrics, relative_error_of_equal_outputs_is_zero_and_of_a_zero_reference_infinite)
{
    const float a[2] = {1, 2}, z[2] = {0, 0};
    cr_assert_eq(metrics_relative_error(a, a, 2), 0);
    cr_assert_eq(metrics_relative_error(z, z, 2), 0);
    cr_assert(isinf(metrics_relative_error(a, z, 2)));
}

Test(metrics, worked_example_score_consistency)
{
    policy_entry C[4];
    kept_set((const int[]){0, 1, 2, 5}, 4, C);
    const float pol[4] = {0.9f, 0.1f, 0.5f, 0.4f};           /* slots: positions 0,1,2,5 */
    const float full[6] = {1.0f, 0.2f, 0.3f, 0.6f, 0.1f, 0.5f};
    float scratch[6];
    cr_assert_float_eq(metrics_consistency(pol, C, 4, full, 6, 2, scratch), 0.5, 1e-12);
    cr_assert_float_eq(metrics_consistency(pol, C, 4, full, 6, 3, scratch), 2.0 / 3, 1e-12);
}

Test(metrics, consistency_breaks_policy_ties_toward_the_newer_entry)
{
    policy_entry C[3];
    kept_set((const int[]){0, 1, 2}, 3, C);
    const float pol[3] = {0.5f, 0.5f, 0.5f};   /* all tied: top-1 is the newest, 2 */
    const float full[3] = {0.1f, 0.2f, 0.9f};
    float scratch[3];
    cr_assert_float_eq(metrics_consistency(pol, C, 3, full, 3, 1, scratch), 1.0, 1e-12);
}

Test(metrics, full_cache_scores_aas_and_mas)
{
    const double S[3] = {1.2, 0.5, 0.3};   /* t = 2: entry i was attended t - i + 1 times */
    float aas[3], mas[3];
    metrics_full_score_aas(S, 3, aas);
    metrics_full_score_mas(S, 3, mas);
    cr_assert_float_eq(aas[0], 1.2f, 1e-7);
    cr_assert_float_eq(mas[0], 0.4f, 1e-7);
    cr_assert_float_eq(mas[1], 0.25f, 1e-7);
    cr_assert_float_eq(mas[2], 0.3f, 1e-7);
}

Test(metrics, kth_largest_agrees_with_sorting_on_rows_with_many_ties)
{
    float v[200], scratch[200];
    for (int i = 0; i < 200; i++)
        v[i] = (float)((i * 37) % 11) / 10.0f;   /* 11 distinct values, many ties */
    for (int k = 1; k <= 200; k += 7) {
        int above, want_above = 0, at_or_above = 0;
        float theta = metrics_kth_largest(v, 200, k, scratch, &above);
        for (int i = 0; i < 200; i++) {
            want_above += v[i] > theta;
            at_or_above += v[i] >= theta;
        }
        cr_assert_eq(above, want_above);
        cr_assert(above < k && at_or_above >= k, "k=%d: theta %g is not the k-th largest", k,
                  theta);
    }
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Long rows of every shape (spread, attention-like, few values, mostly zeros): the
 * k-th largest is exact, ties included, against a full sort. */
Test(metrics, kth_largest_is_exact_on_long_rows_of_every_shape)
{
    enum { N = 3000 };
    static float v[N], sorted[N], scratch[N];
    unsigned x = 12345;
    for (int shape = 0; shape < 4; shape++) {
        for (int i = 0; i < N; i++) {
            x = x * 1103515245u + 12345u;
            const float u = (float)(x >> 8) / (float)(1u << 24);
            v[i] = shape == 0 ? u                                    /* uniform */
                 : shape == 1 ? expf(-20.0f * u)                     /* attention-like */
                 : shape == 2 ? (float)((x >> 20) % 5)               /* few values, ties */
                 : (i % 3 ? 0.0f : u);                               /* mostly zeros */
        }
        memcpy(sorted, v, sizeof v);
        qsort(sorted, N, sizeof *sorted, cmp_desc);
        for (int k = 1; k <= N; k += 37) {
            int above, want_above = 0;
            float theta = metrics_kth_largest(v, N, k, scratch, &above);
            for (int i = 0; i < N; i++)
                want_above += v[i] > theta;
            cr_assert_eq(theta, sorted[k - 1], "shape %d k=%d: %g != %g", shape, k, theta,
                         sorted[k - 1]);
            cr_assert_eq(above, want_above, "shape %d k=%d", shape, k);
        }
    }
}

Test(metrics, an_underflowed_cache_gets_a_uniform_row)
{
    const float zero[3] = {0, 0, 0};
    policy_entry C[2];
    kept_set((const int[]){0, 2}, 2, C);
    float row[2];
    cr_assert_eq(metrics_gather(zero, C, 2, row), 0);
    cr_assert_float_eq(row[0], 0.5f, 1e-7);
    cr_assert_float_eq(row[1], 0.5f, 1e-7);
}
