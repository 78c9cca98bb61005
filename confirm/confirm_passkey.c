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

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const COLS[] = {"length", "depth", "trials", "accuracy", "context_tokens",
                                   "mean_cache", "kv_bytes_peak", "full_accuracy",
                                   "calibrated"};
enum { C_LENGTH, C_DEPTH, C_TRIALS, C_ACC, C_TOKENS, C_CACHE, C_BYTES, C_FULL, C_CAL, N_COLS };

#define MAX_LIST 64

typedef struct plan {
    int      lengths[MAX_LIST], n_lengths;
    double   depths[MAX_LIST];
    int      n_depths, seeds, max_new;
    int      reposition;   /* --reposition */
    session *s;
    int      length;       /* the length being run */
    double   full_acc;     /* the full cache's accuracy at that length */
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
        for (int k = C_ACC; rc == KV_OK && k <= C_BYTES; k++)
            v[k] /= v[C_TRIALS];
    }
    if (rc != KV_OK)
        return rc;
    const double acc = mean_accuracy(rows, p->n_depths);
    if (!strcmp(c->policy.name, "full"))
        p->full_acc = acc;
    for (int d = 0; d < p->n_depths; d++) {
        rows[(size_t)d * N_COLS + C_FULL] = p->full_acc;
        rows[(size_t)d * N_COLS + C_CAL] = p->full_acc >= 0.9;
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
