/*
 * test_replay.c — the replay engine (sim/replay.c) and its commands on synthetic
 * sources.  Each test names the invariant of sim/replay.c or the property of the
 * issue it checks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"
#include "replay_setup.h"
#include "results.h"
#include "replay_run.h"

#define SYNTH "synth:T=200,layers=2,heads=6,kv=2,dim=8,seed=3"


static void run_ok(run *r, const char *line)
{
    run_words(r, line);
    cr_assert_eq(r->rc, KV_OK, "%s: %s", line, r->err.msg);
}

static results_line overall(const run *r, int c)
{
    return results_line_of(&r->setup.plan, r->acc, c, -1, -1);
}

/* Find the configuration (policy, budget text, stride) in a run. */
static int config_index(const run *r, const char *policy, const char *budget, int stride)
{
    for (int c = 0; c < r->setup.n_configs; c++) {
        const replay_config *cfg = &r->setup.configs[c];
        if (!strcmp(cfg->policy.name, policy) && !strcmp(cfg->budget_arg, budget) &&
            cfg->policy.stride == stride)
            return c;
    }
    cr_assert_fail("no configuration %s/%s/%d", policy, budget, stride);
    return -1;
}

/* Two configurations of two runs gave bit-identical sums for every head. */
static void assert_same_sums(const run *a, int ca, const run *b, int cb)
{
    const replay_plan *pa = &a->setup.plan, *pb = &b->setup.plan;
    cr_assert_eq(pa->n_layers, pb->n_layers);
    cr_assert_eq(pa->n_heads, pb->n_heads);
    for (int l = 0; l < pa->n_layers; l++)
        for (int h = 0; h < pa->n_heads; h++) {
            const replay_acc *x = replay_acc_at(a->acc, pa, ca, l, h);
            const replay_acc *y = replay_acc_at(b->acc, pb, cb, l, h);
            cr_assert(memcmp(x, y, sizeof *x) == 0,
                      "layer %d head %d: mass %.17g vs %.17g, overlap %.17g vs %.17g", l, h,
                      x->mass, y->mass, x->overlap, y->overlap);
        }
}

Test(replay, full_keeps_mass_1_and_overlap_1)
{
    run r;
    run_ok(&r, "replay " SYNTH " --policy full --budget 0.3");
    const replay_plan *p = &r.setup.plan;
    for (int l = 0; l < p->n_layers; l++)
        for (int h = 0; h < p->n_heads; h++) {
            results_line x = results_line_of(p, r.acc, 0, l, h);
            cr_assert_eq(x.steps, 200 - 60);
            cr_assert_float_eq(x.mass, 1.0, 1e-6);
            cr_assert_float_eq(x.overlap, 1.0, 1e-12);
            cr_assert_float_eq(x.output_error, 0.0, 1e-6);
        }
    run_free(&r);
}

/* (1) recency attends to exactly the last B + 1 entries: its mass is the row's tail */
Test(replay, recency_keeps_exactly_the_last_B)
{
    const int B = 37, T = 200;
    run r;
    run_ok(&r, "replay " SYNTH " --policy recency --budget 37 --layers 1 --heads 4");
    float *row = malloc((size_t)T * sizeof *row);
    double want = 0;
    replay_source *src = r.setup.src;
    for (int t = B; t < T; t++) {
        kv_err err;
        cr_assert_eq(src->ops->read_rows(src, 1, 4, t, 1, row, (size_t)t + 1, &err), KV_OK);
        for (int i = t - B; i <= t; i++)
            want += row[i];
    }
    results_line x = results_line_of(&r.setup.plan, r.acc, 0, 0, 0);
    cr_assert_eq(x.steps, T - B);
    cr_assert_float_eq(x.mean_cache, B + 1, 1e-12, "a query attends to B + 1 entries");
    cr_assert_float_eq(x.mass, want / (T - B), 1e-9);
    free(row);
    run_free(&r);
}

/* (1) with stride s a query attends to B+1..B+s entries: the mean is B + (s+1)/2 */
Test(replay, stride_s_attends_to_B_plus_1_through_B_plus_s)
{
    run r;
    run_ok(&r, "replay synth:T=64,layers=1,heads=2,kv=1 --policy recency --budget 16 "
               "--stride 4");
    /* steps 16..63: sizes 17,18,19,20 repeating from t = 16 */
    cr_assert_float_eq(overall(&r, 0).mean_cache, 16 + 2.5, 1e-12);
    run_free(&r);
}

Test(replay, any_policy_with_budget_at_least_T_equals_full)
{
    run a, b;
    run_ok(&a, "replay " SYNTH " --policy recency --budget 500");
    run_ok(&b, "replay " SYNTH " --policy full --budget 500");
    assert_same_sums(&a, 0, &b, 0);
    cr_assert_eq(overall(&a, 0).steps, 200 * 12, "B >= T averages every step");
    run_free(&a);
    run_free(&b);
}

Test(replay, replay_and_sweep_give_identical_numbers)
{
    run one, many;
    run_ok(&one, "replay " SYNTH " --policy recency --budget 0.25 --stride 2");
    run_ok(&many, "sweep " SYNTH " --policies full,recency --budgets 0.1:0.5:0.05 "
                  "--strides 1,2");
    cr_assert_eq(many.setup.n_requested, 2 * 9 * 2);
    assert_same_sums(&one, 0, &many, config_index(&many, "recency", "0.25", 2));
    run_free(&one);
    run_free(&many);
}

/* (3) results ignore the thread count */
Test(replay, one_and_two_threads_give_identical_numbers)
{
    run a, b;
    omp_set_num_threads(1);
    run_ok(&a, "sweep " SYNTH " --policies recency,full --budgets 0.2,0.6");
    omp_set_num_threads(2);
    run_ok(&b, "sweep " SYNTH " --policies recency,full --budgets 0.2,0.6");
    for (int c = 0; c < a.setup.n_configs; c++)
        assert_same_sums(&a, c, &b, c);
    run_free(&a);
    run_free(&b);
}

Test(replay, query_head_and_layer_scopes_build_their_own_streams)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies recency --budgets 20 --scope-of query-head");
    results_line q = overall(&r, 0);
    run_free(&r);
    run_ok(&r, "sweep " SYNTH " --policies recency --budgets 20 --scope-of layer");
    results_line l = overall(&r, 0);
    run_free(&r);
    /* recency keeps the same entries whatever the stream: the scopes agree */
    cr_assert_float_eq(q.mass, l.mass, 1e-12);
    cr_assert_float_eq(q.mean_cache, 21, 1e-12);
}

Test(replay, a_trace_without_values_leaves_output_error_empty)
{
    run r;
    run_ok(&r, "replay synth:T=50,layers=1,heads=2,kv=1,dim=0 --policy recency --budget 10");
    results_line x = overall(&r, 0);
    cr_assert(!x.has_output);
    cr_assert(x.has_overlap);
    run_free(&r);
}

Test(replay, errors_name_what_was_wrong)
{
    static const struct { const char *line, *needle; int code; } cases[] = {
        {"replay " SYNTH " --policy h2oo --budget 0.4", "valid policies: full", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 0", "must be >= 1", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget -0.2", "must be > 0", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 0.4x", "not a number", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 4 --layers 2", "--layers: 2 is not in", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 4 --heads 1,9", "--heads: 9 is not in", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 4 --heads 1-", "expected numbers", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 4 --phase later", "stream", KV_EUSAGE},
        {"replay " SYNTH " --policy h2o --budget 4 --recovery 0.9", "does not apply", KV_EUSAGE},
        {"replay " SYNTH " --policy h2o --budget 4 --score loud", "aas", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 4 --frobnicate 1", "unknown option", KV_EUSAGE},
        {"replay " SYNTH " --policy full --budget 4 --metrics mass,speed", "unknown metric", KV_EUSAGE},
        {"replay " SYNTH " --policy full", "--policy and --budget are required", KV_EUSAGE},
        {"replay " SYNTH " --budget 0.3", "--policy and --budget are required", KV_EUSAGE},
        {"replay missing.h5 --policy full --budget 4", "missing.h5", KV_EIO},
        {"replay " SYNTH " --policy h2o --budget 4 -o /nonexistent/dir/r.csv",
         "/nonexistent/dir/r.csv: cannot create", KV_EIO},
        {"replay " SYNTH " --policy h2o --budget 4 --device tpu", "expected cpu or cuda",
         KV_EUSAGE},
        {"replay " SYNTH " --policy snapkv --budget 4 --device cuda", "run it on the CPU",
         KV_EUNSUPPORTED},
        {"replay " SYNTH " --policy h2o --budget 4 --device cuda --metrics consistency",
         "computes mass", KV_EUNSUPPORTED},
        {"sweep " SYNTH " --policies tova,streaming --budgets 4 --windows 2,3",
         "'window' applies to none of the policies tova,streaming", KV_EUSAGE},
        {"sweep " SYNTH " --policies h2o --budgets 1:300:1", "more than 256 items", KV_EUSAGE},
        {"sweep " SYNTH " --policies h2o --budgets 4 --metrics mass,mass,mass,mass,mass,mass,"
         "mass,mass,mass", "more than 8 items", KV_EUSAGE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run r;
        run_words(&r, cases[i].line);
        cr_assert_neq(r.rc, KV_OK, "%s: accepted", cases[i].line);
        cr_assert(strstr(r.err.msg, cases[i].needle), "%s: message '%s' lacks '%s'",
                  cases[i].line, r.err.msg, cases[i].needle);
        if (cases[i].code != KV_EIO)
            cr_assert_eq(r.rc, cases[i].code, "%s: code %d", cases[i].line, r.rc);
        run_free(&r);
    }
}

Test(replay, an_incomplete_trace_replays_its_steps_or_is_refused_with_strict)
{
    run r;
    run_ok(&r, "replay synth:T=40,layers=1,heads=2,kv=1,complete=0 --policy recency --budget 8");
    cr_assert_eq(overall(&r, 0).steps, 2 * (40 - 8));
    run_free(&r);
    run_words(&r, "replay synth:T=40,layers=1,heads=2,kv=1,complete=0 --policy recency "
                  "--budget 8 --strict");
    cr_assert_eq(r.rc, KV_EFORMAT);
    cr_assert(strstr(r.err.msg, "incomplete"), "%s", r.err.msg);
    run_free(&r);
}

Test(replay, the_csv_has_the_schema_columns_and_empty_undefined_fields)
{
    run r;
    run_ok(&r, "replay synth:T=40,layers=1,heads=2,kv=1,dim=4 --policy recency --budget 8");
    char path[] = "/tmp/kvsim_test_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    results_context ctx = {r.setup.src, &r.setup.plan, r.acc, "kvsim replay", NULL};
    char json[64];
    snprintf(json, sizeof json, "%s.json", path);
    cr_assert_eq(results_write_files(&ctx, path, json, &r.err), KV_OK, "%s", r.err.msg);
    FILE *f = fopen(path, "r");
    char line[1024];
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,"
                           "phase,layer,head,steps,mean_cache,mass,overlap,consistency,"
                           "output_error,oracle_gap\n");
    int lines = 0, overall_seen = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (strstr(line, "recency,") && strstr(line, ",all,all,")) {
            overall_seen = 1;
            cr_assert(strstr(line, "synthetic,recency,recency,none,kv-head,mean,8,8,1,stream,"
                                   "all,all,64,9,"), "%s", line);
            cr_assert(strstr(line, ",,"), "consistency of recency must be empty: %s", line);
        }
    }
    fclose(f);
    cr_assert_eq(lines, 2 * (2 + 1 + 1), "recency and its oracle: two heads, one layer "
                 "line, one overall line each");
    cr_assert(overall_seen);
    f = fopen(json, "r");
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_assert(strstr(text, "\"format\": \"kvsim-results\""));
    cr_assert(strstr(text, "\"consistency\": null"));
    cr_assert(strstr(text, "\"trace_sha256\": null"), "a synthetic source is no file");
    remove(path);
    remove(json);
    run_free(&r);
}

/* The presets of the policy library, driven through the engine. */
Test(replay, oracle_beats_random_and_recency_on_mass_at_every_budget)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies oracle,random,recency --budgets 0.1:0.7:0.2");
    for (int b = 0; b < 4; b++) {
        char budget[8];
        snprintf(budget, sizeof budget, "%.1f", 0.1 + 0.2 * b);
        double oracle = overall(&r, config_index(&r, "oracle", budget, 1)).mass;
        double random = overall(&r, config_index(&r, "random", budget, 1)).mass;
        double recency = overall(&r, config_index(&r, "recency", budget, 1)).mass;
        cr_assert_gt(oracle, random, "budget %s: oracle %g, random %g", budget, oracle, random);
        cr_assert_gt(oracle, recency, "budget %s: oracle %g, recency %g", budget, oracle,
                     recency);
    }
    run_free(&r);
}

Test(replay, every_line_has_an_oracle_gap_against_the_oracle_at_equal_budget)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies h2o,recency --budgets 0.2,0.5");
    cr_assert_eq(r.setup.n_requested, 4);
    cr_assert_eq(r.setup.n_configs, 4 + 2, "one oracle per budget, shared");
    for (int c = 0; c < 4; c++) {
        results_line x = overall(&r, c);
        results_line o = overall(&r, r.setup.configs[c].oracle);
        cr_assert(x.has_gap);
        cr_assert_float_eq(x.oracle_gap, o.mass - x.mass, 1e-12);
    }
    run_free(&r);
}

/* Regression: tova resolves to layer scope, and its oracle companion used to be a
 * second, layer-scope oracle, so a sweep with `oracle` wrote two different oracle
 * lines per budget.  One reference oracle per budget, shared by every policy. */
Test(replay, one_oracle_line_per_budget_whatever_the_presets_scopes)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies h2o,tova,oracle --budgets 0.2,0.4");
    cr_assert_eq(r.setup.n_configs, r.setup.n_requested, "the requested oracle is the "
                 "reference: no companion is added");
    int oracles = 0;
    for (int c = 0; c < r.setup.n_configs; c++) {
        const replay_config *cfg = &r.setup.configs[c];
        const replay_config *o = &r.setup.configs[cfg->oracle];
        oracles += !strcmp(cfg->policy.name, "oracle");
        cr_assert_str_eq(o->policy.name, "oracle");
        cr_assert_eq(o->scope_of, POLICY_SCOPE_OF_KV_HEAD, "%s", cfg->policy.name);
        cr_assert_eq(o->policy.budget, cfg->policy.budget);
    }
    cr_assert_eq(oracles, 2, "one oracle configuration per budget");
    run_free(&r);
}

Test(replay, an_explicit_scope_of_moves_the_reference_oracle_too)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies h2o,tova --budgets 0.3 --scope-of layer");
    cr_assert_eq(r.setup.n_configs, 3, "h2o and tova share one layer-scope oracle");
    cr_assert_eq(r.setup.configs[2].scope_of, POLICY_SCOPE_OF_LAYER);
    run_free(&r);
}

Test(replay, consistency_is_defined_for_attention_scores_only)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies h2o,mas,tova,recency,knorm --budgets 0.3");
    for (int c = 0; c < r.setup.n_requested; c++) {
        const char *name = r.setup.configs[c].policy.name;
        results_line x = overall(&r, c);
        int attention = strcmp(name, "recency") && strcmp(name, "knorm");
        cr_assert_eq(x.has_consistency, attention, "%s", name);
        if (attention)
            cr_assert(x.consistency > 0 && x.consistency <= 1, "%s: %g", name, x.consistency);
    }
    run_free(&r);
}

Test(replay, h2o_keeps_more_mass_than_recency_on_rows_with_heavy_hitters)
{
    run r;
    run_ok(&r, "sweep " SYNTH " --policies h2o,recency --budgets 0.2");
    cr_assert_gt(overall(&r, 0).mass, overall(&r, 1).mass);
    run_free(&r);
}

Test(replay, every_preset_runs_and_keeps_its_budget)
{
    run r;
    run_ok(&r, "sweep synth:T=120,layers=2,heads=6,kv=2,dim=8,prompt=80 --policies "
               "full,random,recency,streaming,h2o,mas,roco,tova,scissorhands,knorm,oracle,"
               "snapkv,pyramidkv,fastgen,adakv,pace --budgets 0.25");
    for (int c = 0; c < r.setup.n_requested; c++) {
        results_line x = overall(&r, c);
        cr_assert_gt(x.steps, 0, "%s", r.setup.configs[c].policy.name);
        cr_assert(x.mass > 0 && x.mass <= 1 + 1e-6, "%s: mass %g",
                  r.setup.configs[c].policy.name, x.mass);
    }
    run_free(&r);
}

Test(replay, tova_replays_one_cache_per_layer)
{
    run r;
    run_ok(&r, "replay " SYNTH " --policy tova --budget 0.3");
    cr_assert_eq(r.setup.configs[0].scope_of, POLICY_SCOPE_OF_LAYER);
    run_free(&r);
}

/* The issue's own example: one --windows list for policies with and without a window.
 * Each policy gets the parameters it reads; a policy without a window makes one line,
 * not one per window, and the window in force shows in the scope label. */
Test(replay, a_sweep_hands_each_policy_only_the_parameters_it_reads)
{
    run r, h2o;
    run_ok(&r, "sweep " SYNTH " --policies h2o,tova,streaming --budgets 20 --windows 4,8 "
           "--metrics mass");
    run_ok(&h2o, "replay " SYNTH " --policy h2o --budget 20 --window 8 --metrics mass");
    static const char *const want[][2] = {
        {"h2o", "window:4"}, {"h2o", "window:8"}, {"tova", "none"}, {"streaming", "sinks"}};
    cr_assert_eq(r.setup.n_configs, 4);
    for (int c = 0; c < 4; c++) {
        cr_assert_str_eq(r.setup.configs[c].policy.name, want[c][0]);
        cr_assert_str_eq(r.setup.configs[c].scope_name, want[c][1]);
    }
    cr_assert_str_eq(h2o.setup.configs[0].scope_name, "window:8");
    assert_same_sums(&r, 1, &h2o, 0);
    run_free(&r);
    run_free(&h2o);
}
