/*
 * policy.h — the eviction-policy contract: one stream, rows over kept entries.
 *
 * A policy manages one STREAM: the KV cache of one (layer, KV head) at the default
 * `kv-head` scope, of one query head at `query-head` scope, or of a whole layer at
 * `layer` scope.  The same compiled policy code is driven by the replay engine (rows
 * from a trace, restricted to the kept entries and renormalised) and by live
 * generation (rows from the real attention over the compressed cache).  There is no
 * second implementation.  Definitions: ../docs/POLICIES.md and DESIGN.md.
 *
 * Invariants of the contract (tests/test_policy_contract.c names each one it checks):
 *
 *  (1) Slots.  The kept entries live in slots 0..n-1 in the order they joined, which
 *      is increasing original position.  Eviction removes slots and compacts the rest
 *      without reordering them, so slot order stays position order.
 *  (2) Step order, per token t:
 *          policy_append(p, &entry_t);         token t joins (slot n-1)
 *          policy_observe(p, rows, G);         query t attended to the n kept entries
 *          k = policy_due(p);                  how many must go now
 *          if (k) policy_evict(p, k, slots);   the caller drops the same slots
 *      With budget B and stride s, eviction is due when the cache holds B + s entries
 *      and removes s of them at once, back to B.  So once eviction has begun, a query
 *      attends to between B + 1 and B + s entries.  s = 1 is token-wise eviction.
 *  (3) A policy sees only what a real system could see at step t: rows up to t and
 *      the entries' metadata.  The one exception is a policy whose ops set
 *      `needs_future` (the oracle): its driver hands it future attention sums with
 *      policy_set_future() before each eviction.
 *  (4) Ties (fp16 rows tie often): evict the lowest score, then the oldest position.
 *      policy_pick_lowest() implements this once for every scoring policy.
 *  (5) Determinism: a policy's choices depend only on its config (seed and stream id
 *      included) and on the rows and entries it was shown, never on thread count.
 *      Every random draw comes from policy_rand_u64(), seeded from (seed, stream_id).
 *  (6) Pinned entries: the first n_pinned slots are never evicted (the prompt in the
 *      `decode` phase).  A policy's own protections (sinks, windows) come on top.
 *
 * Ownership: policy_new() allocates everything the policy holds; policy_free() releases
 * it and accepts NULL.  Rows, entries and slot arrays passed in are borrowed for the
 * duration of the call.  This module does no I/O and depends on nothing but libc.
 */
#ifndef POLICY_H
#define POLICY_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------
 * Entries: what a policy may know about a cached token besides its attention. */

enum policy_entry_flag {            /* same bits as the trace's /tokens/flags */
    POLICY_FLAG_SPECIAL = 1u << 0,  /* a control/special token (<|im_start|>, ...) */
    POLICY_FLAG_PUNCT   = 1u << 1,  /* the token's text is punctuation only */
    POLICY_FLAG_SPACE   = 1u << 2,  /* the token's text is whitespace only */
    POLICY_FLAG_PROMPT  = 1u << 3,  /* the token belongs to the prompt (phase 0) */
};

typedef struct policy_entry {
    int32_t  position;  /* original position in the sequence, 0-based */
    int32_t  token;     /* token id, or -1 when unknown */
    uint32_t flags;     /* POLICY_FLAG_* */
    float    key_norm;  /* L2 norm of the post-RoPE key of this stream; NAN if unknown */
} policy_entry;

/* ---------------------------------------------------------------------------------
 * Configuration. */

typedef enum policy_phase {
    POLICY_PHASE_STREAM,   /* evict from the first token on, s at a time ("stream") */
    POLICY_PHASE_ONESHOT,  /* keep the prompt whole until it ends, then compress it to B
                              once; later tokens are kept ("oneshot", SnapKV style) */
    POLICY_PHASE_DECODE,   /* the prompt is pinned and not counted; B applies to the
                              generated entries ("decode") */
} policy_phase;

typedef enum policy_gqa {   /* how the G query rows of one KV group become one row */
    POLICY_GQA_MEAN,
    POLICY_GQA_MAX,
    POLICY_GQA_SUM,
} policy_gqa;

#define POLICY_BUDGET_UNLIMITED 0  /* budget value meaning "never evict" */

typedef struct policy_config {
    const char  *name;          /* preset name, e.g. "recency"; see policy_list() */
    int          budget;        /* B, resolved to entries; POLICY_BUDGET_UNLIMITED = never */
    int          stride;        /* s >= 1: entries evicted at once */
    policy_phase phase;
    policy_gqa   gqa;           /* reduction of a group's rows in policy_observe() */
    int          sinks;         /* protected first positions where a policy uses sinks */
    int          window;        /* protected size r; -1 = the policy's default (0.3·B) */
    uint64_t     seed;          /* the user's seed */
    uint64_t     stream_id;     /* distinguishes streams: e.g. layer * 1000 + kv_head */
    int          layer;         /* this stream's layer, for per-layer schedules */
    int          n_layers;      /* layers in the model, for per-layer schedules */
    int          capacity_hint; /* expected peak entries (B + s, or T); 0 = unknown */
    const char  *params;        /* "key=value,key=value" policy-specific; NULL = none */
} policy_config;

/* Defaults of DESIGN.md: stride 1, stream phase, gqa mean, 4 sinks, window 0.3·B. */
policy_config policy_config_default(void);

/* ---------------------------------------------------------------------------------
 * Budgets: "0.4" is a fraction of the sequence, "512" an entry count. */

typedef struct policy_budget {
    int    is_fraction;   /* 1 if written with a decimal point */
    double fraction;      /* in (0, +inf) when is_fraction */
    long   entries;       /* >= 1 when !is_fraction */
} policy_budget;

/* Parse a budget argument.  0, negative, empty or malformed values are errors (the
 * message goes to err[errlen] and -1 is returned); 0 on success. */
int policy_budget_parse(const char *text, policy_budget *out, char *err, size_t errlen);

/* Resolve against a sequence length T (replay: the trace length; live generation:
 * prompt + max new tokens).  The result is >= 1; a budget >= T means `full`. */
int policy_budget_resolve(const policy_budget *b, int T);

/* ---------------------------------------------------------------------------------
 * The policy object. */

typedef struct policy policy;

/* Create a policy from cfg.  Unknown names and parameters are errors that name the
 * valid choices: NULL is returned and err[errlen] says why.  There is never a silent
 * fallback to the full cache. */
policy *policy_new(const policy_config *cfg, char *err, size_t errlen);
void    policy_free(policy *p);   /* NULL is allowed */

/* (2) Token joins the cache at slot n.  Returns 0, or -1 when memory runs out. */
int  policy_append(policy *p, const policy_entry *entry);

/* (2) The current query(ies) attended to the n kept entries: `rows` holds n_rows rows
 * of policy_size(p) floats each, in slot order, each renormalised over the kept
 * entries.  The rows of a GQA group are reduced by cfg.gqa into one row before the
 * policy sees it.  At least one row is required. */
void policy_observe(policy *p, const float *rows, int n_rows);

/* (2) How many entries must be evicted now (0 if none), from the phase, budget,
 * stride, the current size and the pinned prefix. */
int  policy_due(const policy *p);

/* (2) Choose k evictable slots, remove them from the policy's state, and write them in
 * ascending order to slots[k], so the caller can compact its own arrays the same way
 * (policy_compact()).  Returns k, or fewer only when fewer entries are evictable. */
int  policy_evict(policy *p, int k, int *slots);

/* The prompt has ended: ONESHOT becomes due to compress, DECODE pins the prompt. */
void policy_end_prompt(policy *p);

/* (3) Only for ops with needs_future: future[i] = Σ_{τ>t} p_τ(slot i), valid for the
 * next policy_evict() call. */
void policy_set_future(policy *p, const float *future);
int  policy_needs_future(const policy *p);

int                  policy_size(const policy *p);      /* n: kept entries */
int                  policy_budget_of(const policy *p); /* B in force for this stream */
const policy_entry  *policy_entries(const policy *p);   /* (n,) borrowed, slot order */
const policy_config *policy_config_of(const policy *p); /* as given to policy_new */
const char          *policy_name(const policy *p);

/* ---------------------------------------------------------------------------------
 * The registry: every preset, for `kvsim policies` and --help. */

typedef struct policy_info {
    const char *name;        /* CLI name */
    const char *summary;     /* one line: the rule */
    const char *params;      /* parameters and defaults, one line; "" if none */
    const char *provenance;  /* paper or system it reproduces */
} policy_info;

int                policy_count(void);
const policy_info *policy_list(void);                 /* (policy_count(),) static */
const policy_info *policy_find(const char *name);     /* NULL if unknown */
/* Write "full, recency, ..." to buf (for error messages); returns buf. */
const char        *policy_names(char *buf, size_t len);

/* ---------------------------------------------------------------------------------
 * Helpers shared by policy implementations and drivers. */

/* Remove the k ascending `slots` from an array of n elements of elem_size bytes,
 * keeping the order of the rest (invariant 1).  O(n). */
void policy_compact(void *array, size_t elem_size, int n, const int *slots, int k);

/* (4) Choose the k evictable slots with the lowest score, ties to the oldest
 * position.  evictable[i] != 0 marks candidates; NULL means every unpinned slot.
 * Writes the chosen slots (any order) to out[] and returns how many were chosen. */
int  policy_pick_lowest(const policy *p, const float *score, const unsigned char *evictable,
                        int k, int *out);

/* (5) The stream's deterministic generator (splitmix64). */
uint64_t policy_rand_u64(policy *p);

#endif /* POLICY_H */
