/*
 * policy_drive.h — the policy tests' driver: one stream (a layer of one query head, or
 * of G heads sharing a KV head) stepped by policy_layer_step, exactly as replay and
 * live generation step theirs, over hand-written rows.  Header-only (static
 * functions) so each test file stays self-contained; the Criterion suite links every
 * test file together.
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

/* The full-cache weight of position i for query t (every member head's); the driver
 * renormalises it over the kept entries, as the replay engine does. */
typedef double (*weight_fn)(int t, int i, void *ctx);

/* What a drive feeds besides the rows. */
typedef struct drive_input {
    weight_fn    w;
    void        *ctx;
    const float *keys;     /* (T,) a one-float key per token (its norm), or NULL */
    const float *values;   /* (T,) a one-float value per token, or NULL */
    const float *future;   /* (T,) the oracle's future per position, or NULL */
    uint32_t     flags[DRIVE_MAX];   /* token flags (POLICY_FLAG_PROMPT is added) */
} drive_input;

typedef struct drive_state {
    const policy_layer *L;
    const drive_input *in;
    int                t;
    int                before[DRIVE_MAX];   /* positions before this step's eviction */
    drive_log         *log;
} drive_state;

/* The stream's policy (the layer has one stream). */
static inline policy *stream_of(const policy_layer *L) { return policy_layer_stream(L, 0); }

/* One stream of cfg in layer `layer` of `n_layers`, observing G member heads. */
static inline policy_layer *stream_new_g(const policy_config *cfg, int layer, int n_layers,
                                         int G)
{
    int head_id[8] = {0, 1, 2, 3, 4, 5, 6, 7}, kv_of[8] = {0};
    const policy_shape shape = {layer, n_layers, G, head_id, kv_of, 1, 0, 0,
                                {NULL, 0, 0}, NULL, 0, 0};
    kv_err err = {0};
    policy_layer *L = policy_layer_new(cfg, &shape, &err);
    cr_assert_not_null(L, "policy_layer_new(%s): %s", cfg->name, err.msg);
    return L;
}

static inline policy_layer *stream_new(const policy_config *cfg)
{
    return stream_new_g(cfg, 0, 1, 1);
}

/* policy `name` with "key=value,..." params, budget B entries, the prompt's length. */
static inline policy_config config_of(const char *name, const char *params, int budget,
                                      int prompt_len)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cfg.budget = budget;   /* a budget= in params takes over */
    cfg.prompt_len = prompt_len;
    cr_assert_eq(policy_config_set(&cfg, "policy", name, &err), 0, "%s", err.msg);
    cr_assert_eq(policy_config_set_list(&cfg, params, &err), 0, "%s: %s", params, err.msg);
    return cfg;
}

static inline policy_layer *make_policy(const char *name, const char *params, int budget)
{
    policy_config cfg = config_of(name, params, budget, 0);
    return stream_new(&cfg);
}

/* cfg must be refused when its layer is made, with a message containing `needle`. */
static inline void expect_refused(const policy_config *cfg, const char *needle)
{
    const int head = 0, kv = 0;
    const policy_shape one = {0, 1, 1, &head, &kv, 1, 0, 0, {NULL, 0, 0}, NULL, 0, 0};
    kv_err err = {0};
    cr_assert_null(policy_layer_new(cfg, &one, &err), "%s accepted", cfg->name);
    cr_assert(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", cfg->name, err.msg,
              needle);
}

/* --- the step's callbacks ------------------------------------------------------------ */

static inline int drive_rows(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    (void)err;
    const drive_state *d = ctx;
    const int n = policy_size(p);
    const int *heads;
    const int G = policy_layer_members(d->L, s, &heads);
    for (int g = 0; g < G; g++) {
        double total = 0;
        for (int i = 0; i < n; i++)
            total += d->in->w(d->t, policy_entries(p)[i].position, d->in->ctx);
        for (int i = 0; i < n; i++)
            rows[(size_t)g * n + i] =
                (float)(d->in->w(d->t, policy_entries(p)[i].position, d->in->ctx) / total);
    }
    return 0;
}

/* After observe, before eviction: note the positions, check invariant (1). */
static inline void drive_attended(void *ctx, int s, const policy *p)
{
    (void)s;
    drive_state *d = ctx;
    for (int i = 0; i < policy_size(p); i++) {
        d->before[i] = policy_entries(p)[i].position;
        if (i)
            cr_assert_lt(d->before[i - 1], d->before[i], "invariant 1: slots out of order");
    }
}

static inline void drive_future(void *ctx, int s, const policy *p, float *future)
{
    (void)s;
    const drive_state *d = ctx;
    for (int i = 0; i < policy_size(p); i++)
        future[i] = d->in->future[policy_entries(p)[i].position];
}

static inline void drive_evicted(void *ctx, int s, const int *slots, int k)
{
    (void)s;
    drive_state *d = ctx;
    for (int j = 0; j < k; j++) {
        if (j)
            cr_assert_lt(slots[j - 1], slots[j], "evicted slots are not ascending");
        if (d->log && d->t < DRIVE_MAX)
            d->log->gone[d->t][d->log->n_gone[d->t]++] = d->before[slots[j]];
    }
}

/* --- drives ---------------------------------------------------------------------------- */

/* Step tokens t0..t1-1 of `in` through the stream (the prompt's end comes from the
 * config's prompt_len).  0, or the first step's error code (err filled). */
static inline int drive_steps(policy_layer *L, int t0, int t1, const drive_input *in,
                              drive_log *log, kv_err *err)
{
    const policy_io io = {drive_rows, drive_attended, in->future ? drive_future : NULL,
                          drive_evicted};
    drive_state d = {L, in, 0, {0}, log};
    for (int t = t0; t < t1; t++) {
        d.t = t;
        const int prompt_len = policy_config_of(stream_of(L))->prompt_len;
        const policy_token tok = {
            .position = t, .token = t,
            .flags = in->flags[t < DRIVE_MAX ? t : 0] | (t < prompt_len ? POLICY_FLAG_PROMPT : 0),
            .keys = in->keys ? in->keys + t : NULL, .values = in->values ? in->values + t : NULL,
            .dim = 1, .stride = 1};
        int rc = policy_layer_step(L, &tok, &io, &d, err);
        if (rc)
            return rc;
        if (log && t < DRIVE_MAX)
            log->size[t] = policy_size(stream_of(L));
    }
    return 0;
}

/* Drive steps 0..T-1 with weights w and optional key norms; every step must succeed. */
static inline void drive(policy_layer *L, int T, weight_fn w, void *ctx, const float *key_norms,
                         drive_log *log)
{
    drive_input in = {.w = w, .ctx = ctx, .keys = key_norms};
    kv_err err = {0};
    if (log)
        memset(log, 0, sizeof *log);
    cr_assert_eq(drive_steps(L, 0, T, &in, log, &err), 0, "%s", err.msg);
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

static inline void assert_kept(const policy_layer *L, const int *want, int n)
{
    const policy *p = stream_of(L);
    cr_assert_eq(policy_size(p), n, "kept %d entries, expected %d", policy_size(p), n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(policy_entries(p)[i].position, want[i], "slot %d holds position %d, "
                     "expected %d", i, policy_entries(p)[i].position, want[i]);
}

#endif /* POLICY_DRIVE_H */
