/*
 * test_replay_window.c — replay of sliding-window (local) layers: a key older than a
 * local layer's window is already gone, the budget of a local layer is of its window,
 * and the metrics look at the keys the query sees (sim/replay.c invariant 6,
 * policies/policy.h policy_layer_new, docs/POLICIES.md "Sliding-window layers").
 *
 * Synthetic sources with window=W make layers 0, 2, ... local (rows are a softmax over
 * the last W keys, zero before) and the odd layers global; the expected numbers are
 * computed here from the source's own rows, not from the engine.  The Gemma 3 test
 * records a real trace of one local and one global layer.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"
#include "replay_run.h"
#include "results.h"
#include "test_shell.h"

#define W 24
#define T 120
#define SYNTH_W "synth:T=120,layers=2,heads=4,kv=2,dim=8,seed=7,prompt=60,window=24"

static void run_ok(run *r, const char *line)
{
    run_words(r, line);
    cr_assert_eq(r->rc, KV_OK, "%s: %s", line, r->err.msg);
}

/* --- what each query attended, per (configuration, layer) ------------------------- */

#define MAX_CONFIGS 64
typedef struct seen {
    int oldest_age[MAX_CONFIGS][2];   /* the largest t - position of a kept entry */
    int most[MAX_CONFIGS][2];         /* the largest |C_t| */
} seen;

/* Calls for one layer come from one thread, in step order: per-layer cells need no lock. */
static void watch(void *ctx, const replay_attended *a)
{
    seen *s = ctx;
    cr_assert(a->config < MAX_CONFIGS && a->layer < 2);
    for (int i = 0; i < a->n; i++)
        if (a->t - a->kept[i].position > s->oldest_age[a->config][a->layer])
            s->oldest_age[a->config][a->layer] = a->t - a->kept[i].position;
    if (a->n > s->most[a->config][a->layer])
        s->most[a->config][a->layer] = a->n;
}

/* Every policy, on a local layer: no kept key older than W - 1 steps, never more than
 * W entries; on the global layer the full cache keeps every key. */
Test(replay_window, keys_older_than_the_window_are_gone_for_every_policy)
{
    static const char *line = "sweep " SYNTH_W " --policies full,recency,streaming,h2o,mas,"
                              "roco,tova,scissorhands,knorm,oracle,snapkv,pyramidkv,fastgen,"
                              "adakv,pace,vatp,random --budgets 0.5,8 --metrics mass";
    run r;
    run_build(&r, line);
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    cr_assert_leq(r.setup.n_configs, MAX_CONFIGS);
    seen *s = calloc(1, sizeof *s);
    r.setup.plan.observe = watch;
    r.setup.plan.observe_ctx = s;
    const replay_plan *p = &r.setup.plan;
    r.acc = calloc((size_t)p->n_configs * p->n_layers * p->n_heads, sizeof *r.acc);
    cr_assert_eq(replay_setup_compute(&r.setup, r.acc, &r.err), KV_OK, "%s", r.err.msg);
    for (int c = 0; c < r.setup.n_configs; c++) {
        const char *name = r.setup.configs[c].policy.name;
        cr_assert_lt(s->oldest_age[c][0], W, "%s/%s kept a key %d steps old on the local "
                     "layer", name, r.setup.configs[c].budget_arg, s->oldest_age[c][0]);
        cr_assert_leq(s->most[c][0], W, "%s: %d entries on the local layer", name, s->most[c][0]);
    }
    cr_assert_eq(s->oldest_age[0][1], T - 1, "full keeps every key of the global layer");
    cr_assert_eq(s->most[0][1], T);
    cr_assert_eq(s->most[0][0], W, "full keeps the whole window of the local layer");
    free(s);
    run_free(&r);
}

/* The full cache keeps mass 1 on every layer, the local one included, and top-B overlap
 * 1: the keys before the window are not counted against it. */
Test(replay_window, full_keeps_mass_1_on_local_and_global_layers)
{
    run r;
    run_ok(&r, "replay " SYNTH_W " --policy full --budget 0.3");
    const replay_plan *p = &r.setup.plan;
    for (int l = 0; l < p->n_layers; l++)
        for (int h = 0; h < p->n_heads; h++) {
            results_line x = results_line_of(p, r.acc, 0, l, h);
            cr_assert_eq(x.steps, T - 36);
            cr_assert_float_eq(x.mass, 1.0, 1e-6, "layer %d head %d", l, h);
            cr_assert_float_eq(x.overlap, 1.0, 1e-12, "layer %d head %d", l, h);
            cr_assert_float_eq(x.output_error, 0.0, 1e-6);
            /* steps 36..119 of a local layer hold the W keys of the window */
            const double want = l == 0 ? W : (36 + 1 + T) / 2.0;
            cr_assert_float_eq(x.mean_cache, want, 1e-12, "layer %d", l);
        }
    run_free(&r);
}

/* Recency at budget fraction f keeps the newest floor(f·min(T, W)) keys of a local layer
 * (an entry count is capped at W), floor(f·T) of a global one: its mass is the tail of
 * each row, summed here from the source's rows over the steps averaged (t >= B of the
 * configuration, B = f·T). */
static double recency_tail(replay_source *src, int li, int hi, int B, int from)
{
    float *row = malloc((size_t)T * sizeof *row);
    double sum = 0;
    for (int t = from; t < T; t++) {
        kv_err err;
        cr_assert_eq(replay_source_read_rows(src, li, hi, t, 1, row, (size_t)t + 1, &err), KV_OK);
        for (int i = t - B > 0 ? t - B : 0; i <= t; i++)
            sum += row[i];
    }
    free(row);
    return sum / (T - from);
}

Test(replay_window, the_budget_of_a_local_layer_is_of_its_window)
{
    static const struct { const char *budget; int from, local_B, global_B; } cases[] = {
        {"0.5", 60, 12, 60},   /* floor(0.5 · 24), floor(0.5 · 120) */
        {"100", 100, 24, 100}, /* an entry count: at most the window */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char line[256];
        run r;
        snprintf(line, sizeof line, "replay %s --policy recency --budget %s --heads 1",
                 SYNTH_W, cases[k].budget);
        run_ok(&r, line);
        const int B[2] = {cases[k].local_B, cases[k].global_B};
        for (int l = 0; l < 2; l++) {
            results_line x = results_line_of(&r.setup.plan, r.acc, 0, l, 0);
            /* B + 1 attended; a window of W holds at most W */
            const double cache = B[l] + 1 < (l == 0 ? W : T) ? B[l] + 1 : W;
            cr_assert_float_eq(x.mean_cache, cache, 1e-12, "budget %s layer %d",
                               cases[k].budget, l);
            cr_assert_float_eq(x.mass, recency_tail(r.setup.src, l, 1, B[l], cases[k].from),
                               1e-9, "budget %s layer %d", cases[k].budget, l);
        }
        run_free(&r);
    }
}

/* A window no shorter than the trace never bites: every policy's sums equal those of
 * the same rows without a window, bit for bit (SmolLM2's numbers stay as they were). */
Test(replay_window, a_window_of_at_least_T_changes_nothing)
{
    static const char *tail = " --policies full,h2o,roco,tova,snapkv,oracle --budgets 0.3,16";
    char a_line[512], b_line[512];
    snprintf(a_line, sizeof a_line, "sweep synth:T=120,layers=2,heads=4,kv=2,dim=8,seed=7,"
             "prompt=60,window=%d%s", T, tail);
    snprintf(b_line, sizeof b_line, "sweep synth:T=120,layers=2,heads=4,kv=2,dim=8,seed=7,"
             "prompt=60%s", tail);
    run a, b;
    run_ok(&a, a_line);
    run_ok(&b, b_line);
    const replay_plan *p = &a.setup.plan;
    cr_assert_eq(a.setup.n_configs, b.setup.n_configs);
    const size_t n = (size_t)p->n_configs * p->n_layers * p->n_heads;
    cr_assert(memcmp(a.acc, b.acc, n * sizeof *a.acc) == 0);
    run_free(&a);
    run_free(&b);
}

/* --layer-kind selects the local or the global layers; a kind the trace lacks is a usage
 * error, not an empty result. */
Test(replay_window, layer_kind_selects_local_or_global_layers)
{
    run r;
    run_ok(&r, "replay " SYNTH_W " --policy h2o --budget 0.5 --layer-kind local");
    cr_assert_eq(r.setup.plan.n_layers, 1);
    cr_assert_eq(r.setup.src->layers[r.setup.plan.layers[0]], 0);
    run_free(&r);
    run_ok(&r, "replay " SYNTH_W " --policy h2o --budget 0.5 --layer-kind global");
    cr_assert_eq(r.setup.plan.n_layers, 1);
    cr_assert_eq(r.setup.src->layers[r.setup.plan.layers[0]], 1);
    run_free(&r);
    run_words(&r, "replay synth:T=64 --policy h2o --budget 0.5 --layer-kind local");
    cr_assert_eq(r.rc, KV_EUSAGE);
    cr_assert(strstr(r.err.msg, "local"), "%s", r.err.msg);
    run_free(&r);
    run_words(&r, "replay " SYNTH_W " --policy h2o --budget 0.5 --layer-kind sliding");
    cr_assert_eq(r.rc, KV_EUSAGE);
    run_free(&r);
}

/* The GPU kernel knows no window: it refuses a local layer rather than replay it wrong. */
Test(replay_window, the_gpu_refuses_local_layers)
{
    run r;
    run_words(&r, "replay " SYNTH_W " --policy h2o --budget 0.5 --device cuda");
    cr_assert_eq(r.rc, KV_EUNSUPPORTED);
    cr_assert(strstr(r.err.msg, "sliding window"), "%s", r.err.msg);
    run_free(&r);
}

/* kvsim std on a local layer: ages stop at W - 1 (the key is gone after), while the
 * global layer's reach T - 1. */
Test(replay_window, std_of_a_local_layer_stops_at_the_window)
{
    char cmd[1024], out[256], path[] = "/tmp/kv_std_window_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "\"%s/kvsim\" std %s -o %s 2>&1 && awk -F, 'NR > 1 && $2 == "
             "\"all\" { if ($4 > m[$1]) m[$1] = $4 } END { print m[0], m[1] }' %s",
             getenv("KV_BIN"), SYNTH_W, path, path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    int local, global;
    cr_assert_eq(sscanf(out, "%d %d", &local, &global), 2, "%s", out);
    cr_assert_eq(local, W - 1);
    cr_assert_eq(global, T - 1);
    unlink(path);
    char tokens[sizeof path + 16];
    snprintf(tokens, sizeof tokens, "%s_tokens.csv", path);
    unlink(tokens);
}

/* A real Gemma 3 trace (row-free, one local layer 4 and the global layer 5): the full
 * policy keeps mass 1 on both.  The prompt is short (the window is 512 keys, and
 * recording past it costs a minute here), so this checks the reading of the windows
 * and the full policy on real rows; the synthetic tests above check the window biting. */
Test(replay_window, gemma3_full_keeps_mass_1_on_local_and_global_layers, .timeout = 300)
{
    const char *model = test_gemma_model();
    char dir[] = "/tmp/kv_gemma_window_XXXXXX", cmd[4096], out[8192];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "\"%s/kvtrace\" record \"%s\" 'The capital of France is Paris, "
             "and the capital of Italy is Rome.' --max-new-tokens 8 --layers 4,5 "
             "-o %s/g.h5 2>&1 >/dev/null && \"%s/kvtrace\" info %s/g.h5 && "
             "\"%s/kvsim\" sweep %s/g.h5 --policies full,h2o --budgets 0.5 -o %s/s.csv 2>&1 && "
             "awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } "
             "$c[\"head\"] == \"all\" { print $c[\"policy\"], $c[\"layer\"], $c[\"mass\"] }' "
             "%s/s.csv", getenv("KV_BIN"), model, dir, getenv("KV_BIN"), dir, getenv("KV_BIN"),
             dir, dir, dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "1 of the layers with a sliding window"), "%s", out);
    int full_lines = 0;
    for (char *line = strstr(out, "full "); line; line = strstr(line + 1, "full ")) {
        char layer[16];
        double mass;
        cr_assert_eq(sscanf(line, "full %15s %lf", layer, &mass), 2, "%s", line);
        cr_assert_float_eq(mass, 1.0, 1e-5, "full, layer %s: mass %.9g", layer, mass);
        full_lines++;
    }
    cr_assert_eq(full_lines, 3, "layers 4, 5 and all: %s", out);
    snprintf(cmd, sizeof cmd, "\"%s/kvsim\" replay %s/g.h5 --policy full --budget 0.5 "
             "--layer-kind local 2>/dev/null | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) "
             "c[$i] = i; next } $c[\"head\"] == \"all\" && $c[\"policy\"] == \"full\" "
             "{ print $c[\"layer\"] }'; rm -rf %s",
             getenv("KV_BIN"), dir, dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "4\nall\n", "the local layer of the two is 4");
}
