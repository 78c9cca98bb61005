/*
 * confirm_passkey.c — `kvsim confirm passkey MODEL`: passkey retrieval (analysis/
 * passkey.h) under each (policy, budget, stride), over seeds × depths × lengths.
 *
 * The full cache runs first at every length (added when --policies lacks it): its
 * accuracy calibrates the lengths — a length counts as calibrated when the full cache
 * retrieves >= 90% of the keys there — and is written on every row of that length
 * (`full_accuracy`, `calibrated`), so a policy's score reads against what the model
 * can do at all.  Budget fractions resolve against length + max new tokens.
 */
#include "confirm_experiments.h"

#include "confirm_cli.h"
#include "passkey.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: kvsim confirm passkey MODEL.gguf --policies A,B --budgets LIST [options]\n\n"
    "Passkey retrieval: a random 5-digit key hidden at a depth of filler text, then\n"
    "\"What is the pass key?\"; right when the first number generated is the key.\n"
    "Accuracy per (policy, budget, stride, length, depth) over the seeds.  The full\n"
    "cache always runs: lengths where it scores >= 90% are `calibrated`.\n\n"
    "  --policies LIST     presets (full is added)      --budgets LIST   64,128 or 0.5\n"
    "  --strides LIST      1,4,16: the stride sweep (\"reading pace\")\n"
    "  --lengths LIST      prompt tokens (default 256)\n"
    "  --depths LIST       key depths in [0, 1] (default 0.1,0.5,0.9)\n"
    "  --seeds N           keys per (length, depth): seeds 1..N (default 3)\n"
    "  --max-new-tokens N  answer length (default 8)\n"
    "  --reposition        re-rotate kept keys to positions 0..n-1 after each eviction\n"
    "  --PARAM V           any policy parameter     -o FILE, --json FILE, --threads N\n\n"
    "columns after the identifying ones: length depth trials accuracy context_tokens\n"
    "mean_cache kv_bytes_peak full_accuracy calibrated\n";

static const char *const COLS[] = {"length", "depth", "trials", "accuracy", "context_tokens",
                                   "mean_cache", "kv_bytes_peak", "full_accuracy",
                                   "calibrated"};
enum { C_LENGTH, C_DEPTH, C_TRIALS, C_ACC, C_TOKENS, C_CACHE, C_BYTES, C_FULL, C_CAL, N_COLS };

#define MAX_LIST 64

typedef struct plan {
    int    lengths[MAX_LIST], n_lengths;
    double depths[MAX_LIST];
    int    n_depths, seeds, max_new;
    int    reposition;   /* --reposition */
} plan;

static int parse_plan(const confirm_args *a, plan *p, kv_err *err)
{
    p->n_lengths = confirm_int_list(confirm_opt(a, "lengths", "256"), "lengths", 16, 1 << 20,
                                    p->lengths, MAX_LIST, err);
    if (p->n_lengths < 0)
        return KV_EUSAGE;
    p->n_depths = confirm_double_list(confirm_opt(a, "depths", "0.1,0.5,0.9"), "depths", 0, 1,
                                      p->depths, MAX_LIST, err);
    if (p->n_depths < 0)
        return KV_EUSAGE;
    p->reposition = a->reposition;
    int rc = confirm_opt_int(a, "seeds", 3, 1, 100000, &p->seeds, err);
    return rc ? rc : confirm_opt_int(a, "max-new-tokens", 8, 1, 4096, &p->max_new, err);
}

/* One trial: is the key retrieved?  Adds the run's sizes to row v. */
static int trial(session *s, const plan *p, const replay_config *c, int length, double depth,
                 int seed, double *v, kv_err *err)
{
    passkey_sample smp;
    int rc = passkey_make(s->tok, length, depth, (uint64_t)seed, &smp, err);
    live_output out = {0};
    char *answer = NULL;
    if (!rc)
        rc = confirm_generate(s, smp.ids.ids, smp.n_tokens, p->max_new, c->policy,
                              p->reposition, &out, err);
    if (!rc)
        rc = tokenizer_decode(s->tok, out.tokens, (size_t)out.n, &answer, NULL, err);
    if (!rc) {
        v[C_TRIALS] += 1;
        v[C_ACC] += passkey_correct(answer, smp.key);
        v[C_TOKENS] += smp.n_tokens;
        v[C_CACHE] += out.stats.steps ? out.stats.attended_sum / out.stats.steps : 0;
        v[C_BYTES] += (double)out.stats.kv_bytes_peak;
    }
    free(answer);
    live_output_free(&out);
    passkey_sample_free(&smp);
    return rc;
}

/* Every depth × seed of configuration c at one length: one row per depth. */
static int run_config(session *s, const plan *p, const replay_config *c, int length, double *rows,
                      kv_err *err)
{
    int rc = KV_OK;
    for (int d = 0; rc == KV_OK && d < p->n_depths; d++) {
        double *v = rows + (size_t)d * N_COLS;
        v[C_LENGTH] = length;
        v[C_DEPTH] = p->depths[d];
        for (int seed = 1; rc == KV_OK && seed <= p->seeds; seed++)
            rc = trial(s, p, c, length, p->depths[d], seed, v, err);
        for (int k = C_ACC; rc == KV_OK && k <= C_BYTES; k++)
            v[k] /= v[C_TRIALS];
        if (rc == KV_OK)
                fprintf(stderr, "passkey: %-10s B=%-5d stride %-3d length %d depth %.2f: %.0f%%\n",
                    c->policy.name, c->policy.budget, c->policy.stride, length, p->depths[d],
                    100 * v[C_ACC]);
    }
    return rc;
}

/* The full cache's accuracy over rows[n_depths] of one length. */
static double mean_accuracy(const double *rows, int n_depths)
{
    double sum = 0;
    for (int d = 0; d < n_depths; d++)
        sum += rows[(size_t)d * N_COLS + C_ACC];
    return sum / n_depths;
}

typedef struct table_build {
    replay_config *configs;      /* every length's configurations, length-major */
    int           *row_config;
    double        *values;
    int            n_configs, n_rows;
} table_build;

/* All configurations at one length, the full cache first; rows appended to t. */
static int run_length(session *s, const confirm_args *a, const plan *p, int length, table_build *t,
                      kv_err *err)
{
    char policies[1100];
    confirm_args with_full = *a;
    with_full.policies = confirm_with_full(a, policies, sizeof policies);
    replay_config *cfgs = NULL;
    int n = 0, rc = confirm_configs(&with_full, length + p->max_new, 0, &cfgs, &n, err);
    int full = 0;
    while (rc == KV_OK && full < n && strcmp(cfgs[full].policy.name, "full"))
        full++;
    double *rows = rc ? NULL : calloc((size_t)n * p->n_depths * N_COLS, sizeof *rows);
    if (!rc && !rows)
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    if (!rc)
        rc = run_config(s, p, &cfgs[full], length, rows + (size_t)full * p->n_depths * N_COLS, err);
    const double full_acc = rc ? 0 : mean_accuracy(rows + (size_t)full * p->n_depths * N_COLS,
                                                   p->n_depths);
    if (!rc)
        fprintf(stderr, "passkey calibration: full cache at length %d: %.0f%% (%s)\n", length,
                100 * full_acc,
                full_acc >= 0.9 ? "calibrated" : "below 90%: too long for the model");
    for (int c = 0; rc == KV_OK && c < n; c++)
        if (c != full)
            rc = run_config(s, p, &cfgs[c], length, rows + (size_t)c * p->n_depths * N_COLS, err);
    for (int r = 0; rc == KV_OK && r < n * p->n_depths; r++) {
        rows[(size_t)r * N_COLS + C_FULL] = full_acc;
        rows[(size_t)r * N_COLS + C_CAL] = full_acc >= 0.9;
        memcpy(t->values + (size_t)t->n_rows * N_COLS, rows + (size_t)r * N_COLS,
               N_COLS * sizeof *rows);
        t->configs[t->n_configs + r / p->n_depths] = cfgs[r / p->n_depths];
        t->row_config[t->n_rows++] = t->n_configs + r / p->n_depths;
    }
    t->n_configs += n;
    free(rows);
    free(cfgs);
    return rc;
}

/* Configurations per length: the same list at every length (budgets resolve apart). */
static int count_configs(const confirm_args *a, const plan *p, kv_err *err)
{
    char policies[1100];
    confirm_args with_full = *a;
    with_full.policies = confirm_with_full(a, policies, sizeof policies);
    replay_config *cfgs = NULL;
    int n = 0, rc = confirm_configs(&with_full, p->lengths[0] + p->max_new, 0, &cfgs, &n, err);
    free(cfgs);
    return rc ? rc : n;
}

static int run(session *s, const confirm_args *a, const plan *p, kv_err *err)
{
    const int per_length = count_configs(a, p, err);
    if (per_length < 0)
        return per_length;
    table_build t = {0};
    t.configs = calloc((size_t)p->n_lengths * per_length, sizeof *t.configs);
    t.row_config = calloc((size_t)p->n_lengths * per_length * p->n_depths, sizeof *t.row_config);
    t.values = calloc((size_t)p->n_lengths * per_length * p->n_depths * N_COLS, sizeof *t.values);
    int rc = t.configs && t.row_config && t.values ? KV_OK
                                                   : kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int l = 0; rc == KV_OK && l < p->n_lengths; l++)
        rc = run_length(s, a, p, p->lengths[l], &t, err);
    confirm_table table = {.input = "passkey", .command = a->command, .configs = t.configs,
                           .n_configs = t.n_configs, .cols = COLS, .n_cols = N_COLS,
                           .row_config = t.row_config, .values = t.values, .n_rows = t.n_rows};
    if (rc == KV_OK)
        rc = confirm_table_write(&table, a->csv, a->json, err);
    free(t.configs);
    free(t.row_config);
    free(t.values);
    return rc;
}

int confirm_passkey(int argc, char **argv)
{
    confirm_args a;
    plan p;
    kv_err err = {0};
    int rc = confirm_args_parse(argc, argv, "lengths depths seeds max-new-tokens", 0, USAGE, &a,
                                &err);
    if (rc == 1)
        return 0;
    if (!rc && a.input)
        rc = kv_errorf(&err, KV_EUSAGE, "unexpected argument '%s': the prompts are generated",
                       a.input);
    if (!rc)
        rc = parse_plan(&a, &p, &err);
    session s = {0};
    if (!rc)
        rc = confirm_open_model(&s, &a, &err);
    if (!rc)
        rc = run(&s, &a, &p, &err);
    session_close(&s);
    return rc ? confirm_fail("passkey", &err) : 0;
}
