/*
 * test_replay_analysis.c — std trajectories (analysis/stdtraj.h) on rows worked by
 * hand, and the `kvsim std` / `kvsim scope` commands end to end on synthetic rows.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "stdtraj.h"

Test(stdtraj, age_bins_double_in_width)
{
    const int ages[] = {0, 1, 2, 3, 4, 7, 8, 1000};
    const int bins[] = {0, 1, 2, 2, 3, 3, 4, 10};
    for (size_t i = 0; i < sizeof ages / sizeof *ages; i++)
        cr_assert_eq(std_age_bin(ages[i]), bins[i], "age %d", ages[i]);
    int lo, hi;
    std_age_range(4, &lo, &hi);
    cr_assert(lo == 8 && hi == 15);
    cr_assert_eq(std_age_bins(1024), 11, "ages 0..1023");
}

Test(stdtraj, sigma_bins_are_within_6_percent_of_their_value)
{
    cr_assert_eq(std_sigma_bin(0), 0);
    cr_assert_eq(std_sigma_value(0), 0);
    for (float x = 1e-7f; x < 1; x *= 1.01f) {
        int b = std_sigma_bin(x);
        double v = std_sigma_value(b);
        cr_assert(v / x < 1.0607 && x / v < 1.0607, "sigma %g -> bin %d -> %g", x, b, v);
        cr_assert_geq(std_sigma_bin(x * 1.01f), b, "bins grow with sigma");
    }
}

/* Token 0 receives 1, 0.5, 0.25 at steps 0, 1, 2: population std 0.311805. */
Test(stdtraj, welford_sigma_of_a_hand_worked_token)
{
    const float rows[3][3] = {{1, 0, 0}, {0.5f, 0.5f, 0}, {0.25f, 0.25f, 0.5f}};
    std_tracker tr;
    std_summary s;
    cr_assert_eq(std_tracker_init(&tr, 3), 0);
    cr_assert_eq(std_summary_init(&s, 3), 0);
    float sigma[3];
    for (int t = 0; t < 3; t++)
        std_tracker_step(&tr, rows[t], t, sigma, &s);
    cr_assert_float_eq(sigma[0], 0.311805, 1e-6);
    cr_assert_float_eq(sigma[1], 0.125, 1e-7, "token 1: {0.5, 0.25}");
    cr_assert_float_eq(sigma[2], 0, 1e-7, "a token's first step has no spread");
    /* age 0: three zeros; age 1: σ_0(1) = 0.25, σ_1(2) = 0.125; age 2: σ_0(2) */
    cr_assert_eq(s.count[0], 3);
    cr_assert_eq(s.count[1], 2);
    cr_assert_float_eq(s.sum[1] / 2, 0.1875, 1e-7);
    cr_assert_eq(s.count[2], 1);
    double median = std_summary_quantile(&s, 2, 0.5);
    cr_assert(median / 0.311805 < 1.0607 && 0.311805 / median < 1.0607, "%g", median);
    std_tracker_free(&tr);
    std_summary_free(&s);
}

static int run_cmd(int (*cmd)(int, char **), const char *line)
{
    char *copy = strdup(line), *argv[32];
    int argc = 0;
    for (char *w = strtok(copy, " "); w && argc < 31; w = strtok(NULL, " "))
        argv[argc++] = w;
    int rc = cmd(argc, argv);
    free(copy);
    return rc;
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += !needle || strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

Test(kvsim_std, writes_bins_per_head_and_layer_and_a_token_sample)
{
    char line[256];
    snprintf(line, sizeof line, "std synth:T=100,layers=1,heads=2,kv=1 -o /tmp/kvsim_std_%d.csv",
             (int)getpid());
    cr_assert_eq(run_cmd(cmd_std, line), 0);
    char csv[64], tokens[64];
    snprintf(csv, sizeof csv, "/tmp/kvsim_std_%d.csv", (int)getpid());
    snprintf(tokens, sizeof tokens, "/tmp/kvsim_std_%d_tokens.csv", (int)getpid());
    /* ages 0..99: 8 bins, for 2 heads and the layer line */
    cr_assert_eq(count_lines(csv, NULL), 1 + 3 * 8);
    cr_assert_eq(count_lines(csv, "0,all,64,99,"), 1, "the last bin ends at age T - 1");
    cr_assert_gt(count_lines(tokens, NULL), 8);
    remove(csv);
    remove(tokens);
}

Test(kvsim_scope, one_spread_line_per_score_and_scope)
{
    char line[256], csv[64];
    snprintf(csv, sizeof csv, "/tmp/kvsim_scope_%d.csv", (int)getpid());
    snprintf(line, sizeof line, "scope synth:T=120,layers=1,heads=4,kv=2 --score aas,mas "
             "--budget 0.3 --sizes 0.1,0.3,0.5 -o %s", csv);
    cr_assert_eq(run_cmd(cmd_scope, line), 0);
    cr_assert_eq(count_lines(csv, ",spread,"), 4);
    cr_assert_eq(count_lines(csv, ",spread,mas,std,"), 1);
    cr_assert_eq(count_lines(csv, "scored,aas,window:10,"), 6, "four heads, layer, overall");
    cr_assert_eq(count_lines(csv, "scored,mas,std:18,"), 6);
    remove(csv);
}

Test(kvsim_scope, requires_score_budget_and_sizes)
{
    cr_assert_eq(run_cmd(cmd_scope, "scope synth:T=50 --score aas --budget 0.3"), 2);
}
