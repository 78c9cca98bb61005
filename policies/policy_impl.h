/*
 * policy_impl.h — what a policy implementation sees: the object and its ops table.
 *
 * Callers use policy.h only.  A new policy family is one file, policies/policy_<name>.c,
 * defining its `const policy_ops`, plus lines in POLICY_MAP (policy.c).  The base
 * object owns the entries array and the bookkeeping of the contract (slots, pinning,
 * budget and its schedules, stride, phase, random state); the ops own the policy's
 * statistics, in `state`.  Internals shared across files carry a double underscore.
 */
#ifndef POLICY_IMPL_H
#define POLICY_IMPL_H

#include "policy.h"

typedef struct policy_ops {
    const char *name;
    int  never_evicts;   /* 1 for `full`: policy_due() is always 0 */
    /* Read p->cfg (presets applied), allocate `state`; message and -1 on error. */
    int  (*init)(policy *p, char *err, size_t errlen);
    /* Does the policy read parameter `key` under p->cfg?  NULL: the registry's list. */
    int  (*uses)(const policy_config *cfg, const char *key);
    /* Grow per-slot statistics to hold `capacity` entries; -1 when out of memory. */
    int  (*reserve)(policy *p, int capacity);
    /* The entry at `slot` (= n-1) has joined: initialise its statistics. */
    void (*append)(policy *p, int slot);
    /* One reduced row over the n kept entries. */
    void (*observe)(policy *p, const float *row, int n);
    /* Optional: entries due now, when the policy sizes its own steps; `counted` are
     * the unpinned entries, `budget` the B in force.  NULL: the stride rule. */
    int  (*due)(const policy *p, int counted, int budget);
    /* Choose k distinct evictable slots (>= n_pinned) into out[]; return how many. */
    int  (*choose)(policy *p, int k, int *out);
    /* The ascending `slots` are gone: compact the statistics (policy_compact()). */
    void (*remove)(policy *p, const int *slots, int k);
    /* Optional: the prompt has ended (after the base's own bookkeeping). */
    void (*end_prompt)(policy *p);
    /* Optional: eviction scores, lowest evicted first (policy_scores()). */
    int  (*scores)(const policy *p, float *out);
    void (*destroy)(policy *p);   /* free `state`; may be NULL */
} policy_ops;

/* One candidate in a selection: a strict total order on (score, position, member),
 * so the chosen set never depends on the selection algorithm. */
typedef struct policy_rank {
    float   score;
    int32_t position;
    int32_t member;   /* the head within an adakv group; 0 otherwise */
    int32_t slot;
} policy_rank;

struct policy {
    const policy_ops *ops;
    const policy_info *info;      /* the registry entry */
    policy_config     cfg;        /* the caller's config, presets and params applied */
    int               budget;     /* B in force (layer schedules change cfg.budget) */
    int               n;          /* kept entries */
    int               seen;       /* entries ever appended (soft/hard limits) */
    int               capacity;   /* allocated slots */
    int               n_pinned;   /* the first n_pinned slots are never evicted */
    int               prompt_ended;
    int               oneshot_done;
    policy_entry     *entries;    /* (capacity,) slot order */
    float            *reduced;    /* (capacity,) scratch: the group-reduced row */
    policy_rank      *rank;       /* (capacity,) scratch for policy_pick_lowest */
    float            *values;     /* (capacity,) scratch for policy__protect_top */
    const float      *future;     /* (n,) set by policy_set_future, oracle only */
    uint64_t          rng;        /* splitmix64 state */
    void             *state;      /* the ops' statistics */
};

/* Every policy family compiled in; POLICY_MAP in policy.c lists each preset once. */
extern const policy_ops policy_full_ops;
extern const policy_ops policy_scored_ops;
extern const policy_ops policy_pace_ops;
extern const policy_ops policy_adakv_ops;
extern const policy_ops policy_snapkv_ops;
extern const policy_ops policy_fastgen_ops;

/* --- shared internals ------------------------------------------------------------ */

/* The k lowest of items[0..n) by (score, position, member) move to items[0..k),
 * ordered best victim first.  Quickselect: O(n) expected, then O(k log k). */
void policy__select_lowest(policy_rank *items, int n, int k);

/* Among the slots with cand[i] set, clear the `want` largest by (value, then the
 * newer): the protected set of a top-r rule, by the same total order as the tie rule.
 * O(n) expected: a float quickselect finds the threshold. */
void policy__protect_top(const policy *p, const float *value, unsigned char *cand, int want);

/* The protected size r of the window and std scopes: cfg.window, or
 * floor(window_frac · B) with B the budget in force. */
int  policy__window_size(const policy *p);

/* Parameter bookkeeping of policy_config.c. */
int  policy__param_index(const char *key);            /* -1 if unknown */
int  policy__param_is_common(int index);              /* applies to every policy */
int  policy__scope_parse(const char *text, int *out, char *err, size_t errlen);
const char *policy__scope_name(int scope, char *buf, size_t len);
const char *policy__score_name(policy_score score);
policy_score policy__score_from_name(const char *name);   /* PRESET if unknown */
int  policy__config_apply_params(policy_config *cfg, char *err, size_t errlen);
int  policy__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The score × scope family, reused by pace and adakv (policy_scored.c). */
int  policy__scored_init(policy *p, char *err, size_t errlen);
int  policy__scored_uses(const policy_config *cfg, const char *key);
int  policy__scored_reserve(policy *p, int capacity);
void policy__scored_append(policy *p, int slot);
void policy__scored_observe(policy *p, const float *row, int n);
int  policy__scored_choose(policy *p, int k, int *out);
void policy__scored_remove(policy *p, const int *slots, int k);
int  policy__scored_scores(const policy *p, float *out);
void policy__scored_destroy(policy *p);
/* Fill score[n] and evictable[n] (1 = candidate) for evicting k now: the scope's
 * protections capped so that k candidates remain (invariant 7). */
void policy__scored_candidates(const policy *p, int k, float *score,
                               unsigned char *evictable);
/* σ(slot) = sqrt(max(0, Q/c - (S/c)^2)), 0 when unobserved. */
double policy__scored_sigma(const policy *p, int slot);
/* Mean MAS and mean σ over the block of k entries policy__scored_choose would evict
 * now (pace's settledness test); 0 and 0 when nothing is evictable. */
void policy__scored_block(const policy *p, int k, double *mean_mas, double *mean_sigma);
/* The group an adakv member belongs to plans its evictions (policy_adakv.c). */
int  policy__group_join(policy_group *g, int member, policy *p, char *err, size_t errlen);
void policy__group_leave(policy_group *g, int member);

#endif /* POLICY_IMPL_H */
