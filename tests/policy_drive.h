/*
 * policy_drive.h — a tiny driver for the policy tests: the contract's step order on
 * hand-written streams.  Header-only (static functions) so each test file stays
 * self-contained; the Criterion suite links every test file together.
 */
#ifndef POLICY_DRIVE_H
#define POLICY_DRIVE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

#define DRIVE_MAX 128

/* The log of one drive: positions evicted at each step, and the cache size after. */
typedef struct drive_log {
    int n_gone[DRIVE_MAX];             /* entries evicted at step t */
    int gone[DRIVE_MAX][DRIVE_MAX];    /* their positions, ascending */
    int size[DRIVE_MAX];               /* policy_size() after step t */
} drive_log;

static inline policy *make_policy(const char *name, const char *params, int budget)
{
    policy_config cfg = policy_config_default();
    cfg.name = name;
    cfg.budget = budget;
    cfg.params = params;
    char err[512];
    policy *p = policy_new(&cfg, err, sizeof err);
    cr_assert_not_null(p, "policy_new(%s, %s): %s", name, params ? params : "", err);
    return p;
}

static inline policy *make_from(policy_config *cfg, const char *key_values)
{
    char err[512];
    cfg->params = key_values;
    policy *p = policy_new(cfg, err, sizeof err);
    cr_assert_not_null(p, "policy_new(%s): %s", key_values ? key_values : "", err);
    return p;
}

/* Step t's evictions after append and observe; end_prompt first when asked. */
static inline int drive_evict(policy *p, int t, int end_prompt, drive_log *log)
{
    int before[DRIVE_MAX], slots[DRIVE_MAX];
    if (end_prompt)
        policy_end_prompt(p);
    for (int i = 0; i < policy_size(p); i++)
        before[i] = policy_entries(p)[i].position;
    int due = policy_due(p);
    int k = due ? policy_evict(p, due, slots) : 0;
    cr_assert_eq(k, due, "t=%d: due %d, evicted %d", t, due, k);
    for (int i = 1; i < policy_size(p); i++)   /* invariant 1 */
        cr_assert_lt(policy_entries(p)[i - 1].position, policy_entries(p)[i].position);
    if (log && t < DRIVE_MAX) {
        log->n_gone[t] = k;
        for (int j = 0; j < k; j++)
            log->gone[t][j] = before[slots[j]];
        log->size[t] = policy_size(p);
    }
    return k;
}

/* Drive T steps; w(t, i) gives the full-cache weight of position i for query t, which
 * is renormalised over the kept entries, as the replay engine does. */
typedef double (*weight_fn)(int t, int i, void *ctx);

static inline void drive(policy *p, int T, int prompt_len, weight_fn w, void *ctx,
                         const float *key_norms, drive_log *log)
{
    float row[DRIVE_MAX];
    if (log)
        memset(log, 0, sizeof *log);
    for (int t = 0; t < T; t++) {
        policy_entry e = {.position = t, .token = t, .flags = 0,
                          .key_norm = key_norms ? key_norms[t] : NAN};
        cr_assert_eq(policy_append(p, &e), 0);
        int n = policy_size(p);
        double total = 0;
        for (int i = 0; i < n; i++)
            total += w(t, policy_entries(p)[i].position, ctx);
        for (int i = 0; i < n; i++)
            row[i] = (float)(w(t, policy_entries(p)[i].position, ctx) / total);
        policy_observe(p, row, 1);
        drive_evict(p, t, t == prompt_len - 1, log);
    }
}

static inline double uniform_w(int t, int i, void *ctx)
{
    (void)t, (void)i, (void)ctx;
    return 1.0;
}

/* A table of weights: ctx is a double[T][T] flattened with row length `DRIVE_W`. */
#define DRIVE_W 16
static inline double table_w(int t, int i, void *ctx)
{
    return ((const double *)ctx)[t * DRIVE_W + i];
}

static inline void assert_kept(const policy *p, const int *want, int n)
{
    cr_assert_eq(policy_size(p), n, "kept %d entries, expected %d", policy_size(p), n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(policy_entries(p)[i].position, want[i], "slot %d holds position %d, "
                     "expected %d", i, policy_entries(p)[i].position, want[i]);
}

#endif /* POLICY_DRIVE_H */
