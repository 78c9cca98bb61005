/*
 * policy_internal.h — what the files of the policy library share behind policy.h:
 * the policy object, the per-stream primitives the step is made of, and parameter
 * bookkeeping.  Policies themselves use policy.h only; drivers use policy_layer.
 */
#ifndef POLICY_INTERNAL_H
#define POLICY_INTERNAL_H

#include "policy.h"

#define POLICY_COLUMNS_MAX 16   /* per-slot arrays of one policy */

struct policy {
    const policy_def *def;
    policy_config     cfg;        /* the caller's config, as the policy runs it */
    unsigned          flags;      /* POLICY_* capabilities of this instance */
    int               layer;      /* model layer, for per-layer schedules */
    int               n_layers;
    int               budget;     /* B in force (layer schedules change it) */
    int               n;          /* kept entries */
    int               seen;       /* entries ever appended (soft/hard limits) */
    int               capacity;   /* allocated slots */
    int               n_pinned;   /* the first n_pinned slots are never evicted */
    int               prompt_ended;
    int               oneshot_done;
    policy_entry     *entries;    /* (capacity,) slot order */
    float            *reduced;    /* (capacity,) scratch: the group-reduced row */
    policy_rank      *rank;       /* (capacity,) scratch for policy_pick_lowest */
    float            *values;     /* (capacity,) scratch for policy_protect_top */
    unsigned char    *mask;       /* (capacity,) scratch for policy_pick_outside */
    const float      *future;     /* (n,) set before an evict, oracle only */
    uint64_t          rng;        /* splitmix64 state */
    policy_rope       rope;       /* the layer's, freq an owned copy (or NULL) */
    void             *state;      /* def->state_size bytes, parameters filled */
    int               n_columns;
    policy_column     columns[POLICY_COLUMNS_MAX];
};

/* --- the per-stream primitives the step is made of (policy.h (2)) -------------------
 * Only policy_layer.c calls them, in the contract's order. */

/* A policy for one stream: cfg's parameters applied to def's table, then init.
 * stream_id seeds the generator; capacity_hint sizes the first allocation. */
policy *policy__new(const policy_config *cfg, int layer, int n_layers, uint64_t stream_id,
                    int capacity_hint, const policy_rope *rope, kv_err *err);
void    policy__free(policy *p);
int     policy__append(policy *p, const policy_entry *e, const policy_vectors *v);
void    policy__observe(policy *p, const float *rows, int n_rows);
void    policy__end_prompt(policy *p);
int     policy__due(const policy *p);
int     policy__evict(policy *p, int k, const float *future, int *slots);
/* Drop the kept entries at positions < oldest (a slot prefix: slot order is position
 * order), pinned ones too: a sliding window's keys the model no longer shows.  Their
 * slots go to slots[]; returns how many. */
int     policy__expire(policy *p, int32_t oldest, int *slots);
/* Drop the entries at positions >= pos (a slot suffix) and count `pos` entries seen:
 * the stream as it was when pos tokens had joined, for a policy that will never evict
 * again (policy_layer_truncate says which).  Returns how many went. */
int     policy__truncate(policy *p, int32_t pos);
/* How many more entries may join with nothing due after any of them (INT_MAX: none
 * can be due before the sequence ends). */
int     policy__quiet(const policy *p);
/* The most entries the stream may hold at once; 0: the whole sequence. */
int     policy__capacity(const policy *p);

/* --- parameters (policy_config.c) -------------------------------------------------- */

/* Fill def's parameters (its base's first) into state: table defaults, the presets'
 * defaults, then cfg's own values.  An own value the policy has no row for is
 * KV_EUSAGE naming its parameters. */
int  policy__fill_params(const policy_def *def, const policy_config *cfg, void *state,
                         kv_err *err);
/* def and its bases, the root first, into chain[POLICY_BASES_MAX]; returns how many. */
#define POLICY_BASES_MAX 8
int  policy__chain(const policy_def *def, const policy_def **chain);
/* The row called `key` in def's table or its base's; NULL if none. */
const policy_param *policy__def_param(const policy_def *def, const char *key);
/* Does the policy, its parameters in `state`, read `key`? */
int  policy__reads(const policy_def *def, const policy *bare, const char *key);
int  policy__key_equal(const char *a, const char *b);   /* '_' reads as '-' */
int  policy__is_common(const char *key);                /* budget, stride, ... */
/* Parse `value` by row pm into out (the value's storage: int, double or policy_span). */
int  policy__parse_value(const policy_param *pm, const char *value, void *out, kv_err *err);

#endif /* POLICY_INTERNAL_H */
