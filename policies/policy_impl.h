/*
 * policy_impl.h — what a policy implementation sees: the object and its ops table.
 *
 * Callers use policy.h only.  A new policy is one file, policies/policy_<name>.c,
 * defining `const policy_ops policy_<name>_ops`, plus one line in POLICY_MAP
 * (policy.c).  The base object owns the entries array and the bookkeeping of the
 * contract (slots, pinning, budget, stride, phase, random state); the ops own the
 * policy's statistics, in `state`.
 */
#ifndef POLICY_IMPL_H
#define POLICY_IMPL_H

#include "policy.h"

typedef struct policy_ops {
    const char *name;
    int  needs_future;   /* 1 only for the oracle (contract invariant 3) */
    int  never_evicts;   /* 1 for `full`: policy_due() is always 0 */
    /* Parse cfg->params, allocate `state`; write a message and return -1 on error. */
    int  (*init)(policy *p, char *err, size_t errlen);
    /* Grow per-slot statistics to hold `capacity` entries; -1 when out of memory. */
    int  (*reserve)(policy *p, int capacity);
    /* The entry at `slot` (= n-1) has joined: initialise its statistics. */
    void (*append)(policy *p, int slot);
    /* One reduced row over the n kept entries. */
    void (*observe)(policy *p, const float *row, int n);
    /* Choose k distinct evictable slots (>= n_pinned) into out[]; return how many. */
    int  (*choose)(policy *p, int k, int *out);
    /* The ascending `slots` are gone: compact the statistics (policy_compact()). */
    void (*remove)(policy *p, const int *slots, int k);
    void (*destroy)(policy *p);   /* free `state`; may be NULL */
} policy_ops;

struct policy {
    const policy_ops *ops;
    policy_config     cfg;        /* copy of the caller's config */
    int               budget;     /* B in force (a schedule may change cfg.budget) */
    int               n;          /* kept entries */
    int               capacity;   /* allocated slots */
    int               n_pinned;   /* the first n_pinned slots are never evicted */
    int               prompt_ended;
    int               oneshot_done;
    policy_entry     *entries;    /* (capacity,) slot order */
    float            *reduced;    /* (capacity,) scratch: the group-reduced row */
    const float      *future;     /* (n,) set by policy_set_future, oracle only */
    uint64_t          rng;        /* splitmix64 state */
    void             *state;      /* the ops' statistics */
};

/* Every policy compiled in; the table in policy.c lists each once. */
extern const policy_ops policy_full_ops;
extern const policy_ops policy_recency_ops;

#endif /* POLICY_IMPL_H */
