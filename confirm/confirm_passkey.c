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
#include "confirm.h"

#include "passkey.h"
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const COLS[] = {"length", "depth", "trials", "accuracy", "context_tokens",
                                   "mean_cache", "kv_bytes_peak", "policy_ms_per_token",
                                   "mean_block", "full_accuracy", "calibrated",
                                   "stride_sweep"};
enum { C_LENGTH, C_DEPTH, C_TRIALS, C_ACC, C_TOKENS, C_CACHE, C_BYTES, C_POLICY_MS, C_BLOCK,
       C_FULL, C_CAL, C_SWEEP, N_COLS };

#define MAX_LIST 64

typedef struct plan {
    int      lengths[MAX_LIST], n_lengths;
    double   depths[MAX_LIST];
    int      n_depths, seeds, max_new;
    int      reposition;   /* --reposition */
    session *s;
    int      length;       /* the length being run */
    double   full_acc;     /* the full cache's accuracy at that length */
    double   full_first;   /* ... at the first length (the study's stride sweep) */
    int      stride_sweep; /* rows of the study's stride sweep (C_SWEEP) */
} plan;

static int parse_plan(const confirm_request *r, const confirm_passkey_options *o, plan *p,
                      kv_err *err)
{
    p->n_lengths = confirm_int_list(o->lengths ? o->lengths : "256", "lengths", 16, 1 << 20,
                                    p->lengths, MAX_LIST, err);
    if (p->n_lengths < 0)
        return KV_EUSAGE;
    p->n_depths = confirm_double_list(o->depths ? o->depths : "0.1,0.5,0.9", "depths", 0, 1,
                                      p->depths, MAX_LIST, err);
    if (p->n_depths < 0)
        return KV_EUSAGE;
    p->reposition = r->reposition;
    p->seeds = o->seeds;
    p->max_new = o->max_new;
    return KV_OK;
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
        /* the eviction cost per token fed, and the entries a stream evicts at once */
        v[C_POLICY_MS] += out.stats.steps ? 1e3 * out.stats.policy_s / out.stats.steps : 0;
        v[C_BLOCK] += out.stats.evictions ? (double)out.stats.evicted / out.stats.evictions
                                          : 0;
    }
    free(answer);
    live_output_free(&out);
    passkey_sample_free(&smp);
    return rc;
}

/* The mean accuracy over rows[n_depths]. */
static double mean_accuracy(const double *rows, int n_depths)
{
    double sum = 0;
    for (int d = 0; d < n_depths; d++)
        sum += rows[(size_t)d * N_COLS + C_ACC];
    return sum / n_depths;
}

/* Every depth × seed of configuration c at one length: one row per depth.  `full`
 * comes first: its accuracy calibrates the length (>= 90%: `calibrated`). */
static int measure(void *ctx, const replay_config *c, int i, double *rows, char *note,
                   size_t len, kv_err *err)
{
    (void)i;
    plan *p = ctx;
    int rc = KV_OK;
    for (int d = 0; rc == KV_OK && d < p->n_depths; d++) {
        double *v = rows + (size_t)d * N_COLS;
        v[C_LENGTH] = p->length;
        v[C_DEPTH] = p->depths[d];
        for (int seed = 1; rc == KV_OK && seed <= p->seeds; seed++)
            rc = trial(p->s, p, c, p->length, p->depths[d], seed, v, err);
        for (int k = C_ACC; rc == KV_OK && k <= C_BLOCK; k++)
            v[k] /= v[C_TRIALS];
    }
    if (rc != KV_OK)
        return rc;
    const double acc = mean_accuracy(rows, p->n_depths);
    if (!strcmp(c->policy.name, "full"))
        p->full_acc = acc;
    if (!strcmp(c->policy.name, "full") && p->length == p->lengths[0])
        p->full_first = acc;
    for (int d = 0; d < p->n_depths; d++) {
        rows[(size_t)d * N_COLS + C_FULL] = p->full_acc;
        rows[(size_t)d * N_COLS + C_CAL] = p->full_acc >= 0.9;
        rows[(size_t)d * N_COLS + C_SWEEP] = p->stride_sweep;
    }
    snprintf(note, len, "length %d: %.0f%% over %d depths%s", p->length, 100 * acc,
             p->n_depths, strcmp(c->policy.name, "full") ? ""
             : p->full_acc >= 0.9 ? " (calibrated)" : " (below 90%: too long for the model)");
    return KV_OK;
}

int confirm_passkey(const confirm_request *r, const confirm_passkey_options *o, kv_err *err)
{
    static plan p;   /* large lists: not on the stack */
    memset(&p, 0, sizeof p);
    session s = {0};
    confirm_table t = {0};
    const confirm_experiment e = {"passkey", COLS, N_COLS, 0, 1, measure};
    int rc = r->input ? kv_errorf(err, KV_EUSAGE, "unexpected argument '%s': the prompts are "
                                  "generated", r->input)
                      : parse_plan(r, o, &p, err);
    confirm_experiment by_depth = e;
    by_depth.rows = p.n_depths;
    if (rc == KV_OK)
        rc = confirm_open_model(&s, r, err);
    p.s = &s;
    for (int l = 0; rc >= 0 && l < p.n_lengths; l++) {
        p.length = p.lengths[l];
        rc = confirm_run(&by_depth, r, p.length + p.max_new, 0, &p, &t, err);
    }
    if (rc >= 0)
        rc = confirm_table_write(&t, r, "passkey", err);
    confirm_table_free(&t);
    session_close(&s);
    return rc;
}

/* The passkey study (docs/CONFIRM.md): accuracy against the budget (stride 1, every
 * length and depth), then, at the first length and o->stride_budget, accuracy and the
 * eviction cost against the stride for o->stride_policy, and pace (its adaptive
 * stride; `mean_block` says how many entries it evicted at once) on the same axes. */
int confirm_passkey_study(const confirm_request *r, const confirm_passkey_options *o,
                          const confirm_passkey_study_options *so, kv_err *err)
{
    static plan p;
    memset(&p, 0, sizeof p);
    session s = {0};
    confirm_table t = {0};
    const confirm_experiment e = {"passkey", COLS, N_COLS, 0, 1, measure};
    confirm_experiment by_depth = e;
    int rc = r->input ? kv_errorf(err, KV_EUSAGE, "unexpected argument '%s': the prompts are "
                                  "generated", r->input)
                      : parse_plan(r, o, &p, err);
    by_depth.rows = p.n_depths;
    confirm_request budgets = *r, strides = *r, pace = *r;
    budgets.policies = r->policies ? r->policies : "roco,streaming";
    budgets.budgets = r->budgets ? r->budgets : "48,96,160";
    budgets.strides = NULL;
    strides.policies = so->stride_policy;
    strides.budgets = pace.budgets = so->stride_budget;
    strides.strides = r->strides ? r->strides : "1,4,16,32";
    pace.policies = "pace";
    pace.strides = NULL;
    if (rc == KV_OK)
        rc = confirm_open_model(&s, r, err);
    p.s = &s;
    for (int l = 0; rc >= 0 && l < p.n_lengths; l++) {
        p.length = p.lengths[l];
        rc = confirm_run(&by_depth, &budgets, p.length + p.max_new, 0, &p, &t, err);
    }
    by_depth.full_first = 0;   /* the sweep at the first length reads its calibration */
    p.length = p.lengths[0];
    p.full_acc = p.full_first;
    p.stride_sweep = 1;
    if (rc >= 0)
        rc = confirm_run(&by_depth, &strides, p.length + p.max_new, 0, &p, &t, err);
    if (rc >= 0)
        rc = confirm_run(&by_depth, &pace, p.length + p.max_new, 0, &p, &t, err);
    if (rc >= 0)
        rc = confirm_table_write(&t, r, "passkey", err);
    if (rc >= 0)
        rc = confirm_figure(r->csv, so->figure, PLOT_PASSKEY, err);
    confirm_table_free(&t);
    session_close(&s);
    return rc;
}
