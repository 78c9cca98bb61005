/*
 * test_replay_reference.c — `kvsim sweep` against the independent numpy replay
 * (issue 7's check).
 *
 * tests/fixtures/replay_reference.py, written from DESIGN.md, docs/POLICIES.md and
 * docs/METRICS.md and not from the C, replayed h2o, mas, roco, tova and streaming at
 * kv-head scope, and tova at its own layer scope, on tests/fixtures/replay_trace.h5
 * (a real SmolLM2 trace: layers 0, 15, 29, all 9 heads, 84 steps, f32) and wrote
 * every (layer, head), per-layer and overall line to replay_reference.txt.  The engine
 * must agree on every line: the same steps exactly, mass and overlap within 1e-6
 * (both sides take the same evictions; measured: identical to the 9 printed digits),
 * and output error within 1e-5 relative (the engine sums outputs in float, the
 * reference in double; measured: at most 9.6e-7).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "replay_args.h"
#include "results.h"

#define MASS_TOL    1e-6
#define OVERLAP_TOL 1e-6
#define ERROR_RTOL  1e-5

typedef struct ref_line {
    char   policy[16], scope_of[16], layer[8], head[8];
    int    budget;
    long   steps;
    double mass, overlap, output_error;
} ref_line;

static char *fixture(const char *name)
{
    const char *dir = getenv("KV_FIXTURES");
    cr_assert_not_null(dir, "KV_FIXTURES is not set (run through make test)");
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    return path;
}

/* Every line of the reference, comments skipped. */
static ref_line *read_reference(int *n)
{
    char *path = fixture("replay_reference.txt"), text[256];
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    ref_line *lines = NULL;
    *n = 0;
    while (fgets(text, sizeof text, f)) {
        if (text[0] == '#')
            continue;
        lines = realloc(lines, (size_t)(*n + 1) * sizeof *lines);
        ref_line *r = &lines[(*n)++];
        cr_assert_eq(sscanf(text, "%15s %15s %d %7s %7s %ld %lf %lf %lf", r->policy,
                            r->scope_of, &r->budget, r->layer, r->head, &r->steps, &r->mass,
                            &r->overlap, &r->output_error), 9, "%s", text);
    }
    fclose(f);
    free(path);
    return lines;
}

/* A sweep of the fixture trace. */
typedef struct sweep {
    char        *words[16];
    replay_args  args;
    replay_setup setup;
    replay_acc  *acc;
} sweep;

static void sweep_run(sweep *s, const char *options)
{
    memset(s, 0, sizeof *s);
    char *trace = fixture("replay_trace.h5"), line[512];
    snprintf(line, sizeof line, "sweep %s --budgets 16,40 --metrics mass,overlap,output_error %s",
             trace, options);
    free(trace);
    int argc = 0;
    for (char *w = strtok(line, " "); w && argc < 15; w = strtok(NULL, " "))
        s->words[argc++] = strdup(w);
    kv_err err = {0};
    cr_assert_eq(replay_args_parse(SWEEP_CMD, argc, s->words, &s->args, &err), KV_OK,
                 "%s", err.msg);
    cr_assert_eq(replay_setup_build(&s->setup, &s->args.req, &err), KV_OK, "%s", err.msg);
    const replay_plan *p = &s->setup.plan;
    s->acc = calloc((size_t)p->n_configs * p->n_layers * p->n_heads, sizeof *s->acc);
    cr_assert_eq(replay_run(s->setup.src, p, s->acc, &err), KV_OK, "%s", err.msg);
}

static void sweep_free(sweep *s)
{
    replay_setup_free(&s->setup);
    replay_args_free(&s->args);
    free(s->acc);
    for (int i = 0; s->words[i]; i++)
        free(s->words[i]);
}

/* The plan index of a model layer or head number ("all" = -1). */
static int plan_index(const char *text, const int *plan, int n, const int *model)
{
    if (!strcmp(text, "all"))
        return -1;
    for (int i = 0; i < n; i++)
        if (model[plan[i]] == atoi(text))
            return i;
    cr_assert_fail("%s is not in the plan", text);
    return -2;
}

static int config_of(const sweep *s, const ref_line *r)
{
    for (int c = 0; c < s->setup.n_requested; c++) {
        const replay_config *cfg = &s->setup.configs[c];
        if (!strcmp(cfg->policy.name, r->policy) && cfg->policy.budget == r->budget)
            return c;
    }
    return -1;
}

/* Compare every reference line of scope_of with the sweep; returns how many. */
static int compare(const sweep *s, const ref_line *ref, int n, const char *scope_of)
{
    const replay_plan *p = &s->setup.plan;
    int compared = 0;
    for (int i = 0; i < n; i++) {
        const ref_line *r = &ref[i];
        const int c = config_of(s, r);
        if (strcmp(r->scope_of, scope_of) || c < 0)
            continue;
        const int l = plan_index(r->layer, p->layers, p->n_layers, s->setup.src->layers);
        const int h = plan_index(r->head, p->heads, p->n_heads, s->setup.src->heads);
        results_line x = results_line_of(p, s->acc, c, l, h);
        cr_assert_eq(x.steps, r->steps, "%s B=%d %s/%s", r->policy, r->budget, r->layer, r->head);
        cr_assert_float_eq(x.mass, r->mass, MASS_TOL, "%s B=%d layer %s head %s: mass %.9g, "
                           "numpy %.9g", r->policy, r->budget, r->layer, r->head, x.mass, r->mass);
        cr_assert_float_eq(x.overlap, r->overlap, OVERLAP_TOL, "%s B=%d layer %s head %s: "
                           "overlap %.9g, numpy %.9g", r->policy, r->budget, r->layer, r->head,
                           x.overlap, r->overlap);
        cr_assert_float_eq(x.output_error, r->output_error, ERROR_RTOL * r->output_error,
                           "%s B=%d layer %s head %s: output error %.9g, numpy %.9g", r->policy,
                           r->budget, r->layer, r->head, x.output_error, r->output_error);
        compared++;
    }
    return compared;
}

Test(replay_reference, kv_head_presets_agree_with_numpy_on_every_head)
{
    int n;
    ref_line *ref = read_reference(&n);
    sweep s;
    sweep_run(&s, "--policies h2o,mas,roco,tova,streaming --scope-of kv-head");
    /* 5 presets x 2 budgets x (3 layers x (9 heads + 1) + 1) lines */
    cr_assert_eq(compare(&s, ref, n, "kv-head"), 5 * 2 * 31);
    sweep_free(&s);
    free(ref);
}

Test(replay_reference, tova_at_layer_scope_agrees_with_numpy_on_every_head)
{
    int n;
    ref_line *ref = read_reference(&n);
    sweep s;
    sweep_run(&s, "--policies tova");
    cr_assert_eq(s.setup.configs[0].scope_of, POLICY_SCOPE_OF_LAYER);
    cr_assert_eq(compare(&s, ref, n, "layer"), 2 * 31);
    sweep_free(&s);
    free(ref);
}
