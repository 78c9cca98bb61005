/*
 * test_rank_corr.c — Spearman's ρ and its bootstrap interval (analysis/rank_corr.h),
 * worked by hand, and `kvsim confirm predict` joining a replay CSV with a confirm CSV.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rank_corr.h"
#include "test_shell.h"

/* (1) monotone is ±1; ties take mid-ranks: x ranks 1 2.5 2.5 4, y 1 3 2 4 give
 * 4.5 / sqrt(4.5 · 5) */
Test(rank_corr, spearman_by_hand)
{
    const double a[] = {1, 2, 3, 4, 5}, b[] = {10, 20, 30, 40, 50}, c[] = {5, 4, 3, 2, 1};
    cr_assert_float_eq(rank_spearman(a, b, 5), 1.0, 1e-12);
    cr_assert_float_eq(rank_spearman(a, c, 5), -1.0, 1e-12);
    const double x[] = {1, 2, 2, 3}, y[] = {1, 3, 2, 4};
    cr_assert_float_eq(rank_spearman(x, y, 4), 4.5 / sqrt(22.5), 1e-12);
    const double flat[] = {7, 7, 7};
    cr_assert(isnan(rank_spearman(flat, a, 3)), "a constant side has no ranking");
    cr_assert(isnan(rank_spearman(a, b, 1)));
}

/* (2) a perfectly monotone sample stays at 1 in every defined resample; the seed
 * fixes the interval */
Test(rank_corr, bootstrap_interval)
{
    const double a[] = {1, 2, 3, 4, 5, 6}, b[] = {2, 4, 6, 8, 10, 12};
    double lo, hi;
    cr_assert_gt(rank_spearman_ci(a, b, 6, 500, 0.05, 1, &lo, &hi), 400);
    cr_assert_float_eq(lo, 1.0, 1e-12);
    cr_assert_float_eq(hi, 1.0, 1e-12);
    const double noisy[] = {2, 1, 4, 3, 6, 5};
    double lo1, hi1, lo2, hi2;
    rank_spearman_ci(a, noisy, 6, 500, 0.05, 9, &lo1, &hi1);
    rank_spearman_ci(a, noisy, 6, 500, 0.05, 9, &lo2, &hi2);
    cr_assert(lo1 == lo2 && hi1 == hi2, "same seed, same interval");
    cr_assert(lo1 <= rank_spearman(a, noisy, 6) && rank_spearman(a, noisy, 6) <= hi1);
}

/* A replay CSV at B = 8: a per-layer line (not joined) and three overall ones. */
static const char SIM_B8[] =
    "trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase,layer,head,"
    "steps,mean_cache,mass\n"
    "t,h2o,aas,window,kv-head,mean,8,8,1,stream,0,0,5,8,0.1\n"
    "t,h2o,aas,window,kv-head,mean,8,8,1,stream,all,all,5,8,0.9\n"
    "t,recency,recency,none,kv-head,mean,8,8,1,stream,all,all,5,8,0.5\n"
    "t,roco,mas,std+sinks,kv-head,mean,8,8,1,stream,all,all,5,8,0.95\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* predict: overall replay lines join confirm lines per budget; full is no point */
Test(rank_corr, predict_joins_replay_and_confirm_lines_per_budget)
{
    char sim[64], real[64], cmd[1024], out[4096];
    snprintf(sim, sizeof sim, "/tmp/kv_sim_%d.csv", (int)getpid());
    snprintf(real, sizeof real, "/tmp/kv_real_%d.csv", (int)getpid());
    write_file(sim, SIM_B8);
    write_file(real,
               "trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase,tokens,ppl\n"
               "x,full,,,kv-head,mean,,0,1,stream,9,10\n"
               "x,h2o,aas,window,kv-head,mean,8,8,1,stream,9,12\n"
               "x,recency,recency,none,kv-head,mean,8,8,1,stream,9,30\n"
               "x,roco,mas,std+sinks,kv-head,mean,8,8,1,stream,9,11\n");
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm predict %s %s --sim-metric mass --real-metric "
             "ppl --rounds 200", getenv("KV_BIN"), sim, real);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    remove(sim);
    remove(real);
    cr_assert_str_eq(strchr(out, '\n') + 1, "mass,ppl,8,3,-1,-1,-1\n",
                     "more mass, lower perplexity: rho = -1 over three policies:\n%s", out);
}

/* --points: one line per (policy, budget) in both files, the sim and real values side
 * by side; full (no budget) and per-layer lines are no points.  Two CSVs that join
 * nowhere are an error, not a table of empty correlations. */
Test(rank_corr, predict_points_are_the_joined_pairs)
{
    char sim[64], real[64], points[64], cmd[1024], out[4096];
    snprintf(sim, sizeof sim, "/tmp/kv_psim_%d.csv", (int)getpid());
    snprintf(real, sizeof real, "/tmp/kv_preal_%d.csv", (int)getpid());
    snprintf(points, sizeof points, "/tmp/kv_points_%d.csv", (int)getpid());
    char sim_text[2048];
    snprintf(sim_text, sizeof sim_text, "%s%s", SIM_B8,
             "t,h2o,aas,window,kv-head,mean,16,16,1,stream,all,all,5,16,0.97\n"
             "t,tova,ltas,none,layer,mean,16,16,1,stream,all,all,5,16,0.96\n");
    write_file(sim, sim_text);
    write_file(real,
               "trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase,tokens,ppl\n"
               "x,full,,,kv-head,mean,,0,1,stream,9,10\n"
               "x,h2o,aas,window,kv-head,mean,8,8,1,stream,9,12\n"
               "x,h2o,aas,window,kv-head,mean,16,16,1,stream,9,10.5\n"
               "x,recency,recency,none,kv-head,mean,8,8,1,stream,9,30\n"
               "x,scissorhands,aqas,window,kv-head,mean,8,8,1,stream,9,11\n");
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm predict %s %s --rounds 50 --points %s "
             ">/dev/null && cat %s", getenv("KV_BIN"), sim, real, points, points);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "sim_metric,real_metric,policy,budget_arg,stride,phase,sim,real\n"
                          "mass,ppl,h2o,8,1,stream,0.9,12\n"
                          "mass,ppl,h2o,16,1,stream,0.97,10.5\n"
                          "mass,ppl,recency,8,1,stream,0.5,30\n",
                     "scissorhands has no sim line, roco and tova no real one, full no "
                     "budget:\n%s", out);
    write_file(real, "trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase,"
                     "tokens,ppl\nx,h2o,aas,window,kv-head,mean,32,32,1,stream,9,12\n");
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm predict %s %s 2>&1", getenv("KV_BIN"), sim, real);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "no line joins"), "%s", out);
    remove(sim);
    remove(real);
    remove(points);
}
