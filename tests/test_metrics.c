/*
 * test_metrics.c — the metric functions of analysis/metrics.h on rows small enough to
 * work by hand.  The numbers are docs/METRICS.md's worked example: if one changes,
 * the other must.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp16.h"
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

/* The guessed search (replay: the last step's threshold) finds exactly what the full
 * one finds, whatever the guess: right, near, far, zero, tiny, huge — on the row shapes
 * above, rounded to f16 as traces store them (ties and zeros). */
Test(metrics, kth_largest_near_equals_kth_largest_for_any_guess)
{
    enum { N = 3000 };
    static float v[N], scratch[2 * N], scratch2[N];
    unsigned x = 777;
    for (int shape = 0; shape < 4; shape++) {
        for (int i = 0; i < N; i++) {
            x = x * 1103515245u + 12345u;
            const float u = (float)(x >> 8) / (float)(1u << 24);
            const float w = shape == 0 ? u : shape == 1 ? expf(-30.0f * u)
                          : shape == 2 ? (float)((x >> 20) % 5) : (i % 3 ? 0.0f : u);
            v[i] = fp16_to_f32(fp16_from_f32(w));
        }
        for (int k = 1; k <= N; k += 53) {
            int want_above;
            const float want = metrics_kth_largest(v, N, k, scratch2, &want_above);
            const float guesses[] = {want, want * 1.7f, want / 3.0f, want * 40.0f,
                                     want / 1000.0f, 0.0f, 1e-40f, 1e30f, 3e38f};
            for (size_t g = 0; g < sizeof guesses / sizeof *guesses; g++) {
                int above;
                const float theta = metrics_kth_largest_near(v, N, k, guesses[g], scratch,
                                                             &above);
                cr_assert_eq(theta, want, "shape %d k=%d guess %g: %g != %g", shape, k,
                             guesses[g], theta, want);
                cr_assert_eq(above, want_above, "shape %d k=%d guess %g", shape, k,
                             guesses[g]);
            }
        }
    }
}

/* The rows version of the outputs equals the plain loop — Σ over the keys in order of
 * the rounded product, no contraction — bit for bit, for any number of rows sharing the
 * values (more than are summed at once) and any D (whole tiles, a tail, no tile). */
Test(metrics, output_rows_equal_the_plain_loop_bit_for_bit)
{
    enum { LEN = 300, ROWS = 9, DMAX = 136 };
    static float p[ROWS][LEN], values[LEN * DMAX], o[ROWS][DMAX], want[DMAX];
    unsigned x = 4242;
    for (int i = 0; i < LEN * DMAX; i++) {
        x = x * 1103515245u + 12345u;
        values[i] = (float)((int)(x >> 9) - (1 << 22)) / (float)(1 << 20);
    }
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < LEN; i++) {
            x = x * 1103515245u + 12345u;
            p[r][i] = expf(-8.0f * (float)(x >> 8) / (float)(1u << 24)) / LEN;
        }
    policy_entry kept[LEN / 3];
    for (int j = 0; j < LEN / 3; j++)
        kept[j] = (policy_entry){.position = 3 * j + j % 3, .token = -1, .flags = 0};
    const float *rows[ROWS];
    float *outs[ROWS];
    const double mass[ROWS] = {0.5, 0.25, 1, 0.75, 0.1, 0.9, 0.33, 0.66, 0};
    for (int r = 0; r < ROWS; r++)
        rows[r] = p[r], outs[r] = o[r];
    static const int dims[] = {8, 64, 72, 128, 136};
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int D = dims[di];
        for (int R = 1; R <= ROWS; R++) {
            metrics_output_full_rows(rows, R, LEN, values, D, outs);
            for (int r = 0; r < R; r++) {
                memset(want, 0, sizeof want);
                for (int i = 0; i < LEN; i++)
                    for (int d = 0; d < D; d++) {
                        const float prod = p[r][i] * values[i * D + d];
                        want[d] = want[d] + prod;
                    }
                cr_assert(memcmp(o[r], want, (size_t)D * sizeof *want) == 0,
                          "full: D=%d R=%d row %d differs", D, R, r);
            }
            metrics_output_kept_rows(rows, R, kept, LEN / 3, mass, values, D, outs);
            for (int r = 0; r < R; r++) {
                memset(want, 0, sizeof want);
                for (int j = 0; j < LEN / 3; j++)
                    for (int d = 0; d < D; d++) {
                        const int i = kept[j].position;
                        const float prod = p[r][i] * values[i * D + d];
                        want[d] = want[d] + prod;
                    }
                const float scale = mass[r] > 0 ? (float)(1.0 / mass[r]) : 0.0f;
                for (int d = 0; d < D; d++)
                    want[d] *= scale;
                cr_assert(memcmp(o[r], want, (size_t)D * sizeof *want) == 0,
                          "kept: D=%d R=%d row %d differs", D, R, r);
            }
        }
    }
}

/* The f16 gather from chunked rows gives metrics_gather's floats and mass bit for bit on
 * the converted row: its mass is summed in another order, exact for f16 probabilities. */
Test(metrics, gather_f16_equals_gather_on_the_converted_row)
{
    enum { T = 3 * METRICS_F16_COLS + 77, ROW = 5 };   /* row 5 of a 64-row chunk */
    static unsigned char chunks[4][64 * METRICS_F16_COLS * 2];
    static float row[T], a[T], b[T];
    static uint16_t half[T];
    const unsigned char *col[4] = {chunks[0], chunks[1], chunks[2], chunks[3]};
    unsigned x = 99;
    for (int n_kept = 1; n_kept <= T; n_kept += 97) {
        double total = 0;
        for (int i = 0; i < T; i++) {
            x = x * 1103515245u + 12345u;
            row[i] = fp16_to_f32(fp16_from_f32(expf(-12.0f * (float)(x >> 8) / 16777216.0f)));
            total += row[i];
        }
        policy_entry kept[T];
        int n = 0;
        for (int i = 0; i < T && n < n_kept; i++)
            if (i % 2 == 0 || i > T - n_kept)
                kept[n++] = (policy_entry){.position = i, .token = -1, .flags = 0};
        for (int i = 0; i < T; i++) {
            row[i] = fp16_to_f32(fp16_from_f32(row[i] / (float)total));
            const uint16_t h = fp16_from_f32(row[i]);
            memcpy(chunks[i / METRICS_F16_COLS] + 2 * (ROW * METRICS_F16_COLS + i % METRICS_F16_COLS),
                   &h, 2);
        }
        const double ma = metrics_gather(row, kept, n, a);
        const double mb = metrics_gather_f16(col, ROW * METRICS_F16_COLS, kept, n, half, b);
        cr_assert(ma == mb, "n=%d: mass %.17g != %.17g", n, ma, mb);
        cr_assert(memcmp(a, b, (size_t)n * sizeof *a) == 0, "n=%d: rows differ", n);
    }
}
