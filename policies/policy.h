/*
 * policy.h — the eviction-policy contract: one stream, rows over kept entries.
 *
 * A policy manages one STREAM: the KV cache of one (layer, KV head) at the default
 * `kv-head` scope, of one query head at `query-head` scope, or of a whole layer at
 * `layer` scope.  The same compiled policy code is driven by the replay engine (rows
 * from a trace, restricted to the kept entries and renormalised) and by live
 * generation (rows from the real attention over the compressed cache).  There is no
 * second implementation.  Every rule, parameter and default: ../docs/POLICIES.md.
 *
 * Invariants of the contract (the tests name each one they check):
 *
 *  (1) Slots.  The kept entries live in slots 0..n-1 in the order they joined, which
 *      is increasing original position.  Eviction removes slots and compacts the rest
 *      without reordering them, so slot order stays position order.
 *  (2) Step order, per token t:
 *          policy_append(p, &entry_t);         token t joins (slot n-1)
 *          policy_observe(p, rows, G);         query t attended to the n kept entries
 *          [policy_group_plan(g);]             adakv only, once per layer and step
 *          k = policy_due(p);                  how many must go now
 *          [policy_set_future(p, future);]     oracle only, when k > 0
 *          if (k) policy_evict(p, k, slots);   the caller drops the same slots
 *      and policy_end_prompt(p) right after the step of the last prompt token.
 *      With budget B and stride s, eviction is due when the cache holds B + s entries
 *      and removes s of them at once, back to B.  So once eviction has begun, a query
 *      attends to between B + 1 and B + s entries.  s = 1 is token-wise eviction.
 *      Policies that size their own cache (fastgen, knorm in skipped layers, the
 *      adaptive stride of `pace`, soft/hard limits) decide k themselves; the driver
 *      never assumes k = s and reports the mean policy_size() it actually kept.
 *  (3) A policy sees only what a real system could see at step t: rows up to t and
 *      the entries' metadata.  The one exception is the `oracle` score
 *      (policy_needs_future()): its driver hands it future attention sums with
 *      policy_set_future() before each eviction; without them it evicts nothing.
 *  (4) Ties (fp16 rows tie often): evict the lowest score, then the oldest position
 *      (then, across the heads of an adakv group, the lowest member index).
 *      policy_pick_lowest() implements this once for every scoring policy.
 *  (5) Determinism: a policy's choices depend only on its config (seed and stream id
 *      included) and on the rows and entries it was shown, never on thread count.
 *      Every random draw comes from policy_rand_u64(), seeded from (seed, stream_id).
 *  (6) Pinned entries: the first n_pinned slots are never evicted (the prompt in the
 *      `decode` phase).  A policy's own protections (sinks, windows) come on top.
 *  (7) The budget is a hard limit for score × scope policies: protections (sinks,
 *      window, std set) are capped so that k candidates always remain; sinks first,
 *      then the newest, then the rest.  So sinks larger than B keep the oldest B.
 *
 * Configuration is parsed in ONE place, policy_config_set(), used by every CLI
 * (`kvsim replay`, `kvtrace generate`) and by cfg.params strings.  Unknown policies,
 * scores, scopes, parameters and values are errors that name the valid choices;
 * there is never a silent fallback to the full cache.
 *
 * Ownership: policy_new() allocates everything the policy holds; policy_free() releases
 * it and accepts NULL.  Rows, entries and slot arrays passed in are borrowed for the
 * duration of the call.  Steady-state steps allocate nothing.  This module does no I/O
 * and depends on nothing but libc.
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

typedef enum policy_score {  /* importance; the lowest is evicted (docs/POLICIES.md) */
    POLICY_SCORE_PRESET,     /* the preset's own score */
    POLICY_SCORE_AAS,        /* S: accumulated attention (H2O) */
    POLICY_SCORE_MAS,        /* S / c: mean attention (RoCo) */
    POLICY_SCORE_LTAS,       /* a_t: the current row (TOVA) */
    POLICY_SCORE_AQAS,       /* share of important steps in the history (Scissorhands) */
    POLICY_SCORE_KNORM,      /* -||k||: small key norms are kept (KnormPress) */
    POLICY_SCORE_RECENCY,    /* position */
    POLICY_SCORE_RANDOM,     /* a seeded uniform key drawn when the entry joins */
    POLICY_SCORE_ORACLE,     /* future attention, from policy_set_future() */
} policy_score;

enum policy_scope_bit {      /* cfg.scope is a set of these; 0 = `none` */
    POLICY_SCOPE_SINKS  = 1 << 0,  /* the first `sinks` positions */
    POLICY_SCOPE_WINDOW = 1 << 1,  /* the r newest entries */
    POLICY_SCOPE_STD    = 1 << 2,  /* the `recent` newest + the largest σ, r in all */
};
#define POLICY_SCOPE_PRESET (-1)   /* cfg.scope: the preset's own scope */

typedef enum policy_scope_of {  /* how the driver builds streams (docs/POLICIES.md) */
    POLICY_SCOPE_OF_PRESET,     /* kv-head, except tova: layer */
    POLICY_SCOPE_OF_KV_HEAD,    /* a stream per (layer, KV head); G rows, cfg.gqa */
    POLICY_SCOPE_OF_QUERY_HEAD, /* a stream per (layer, query head); 1 row */
    POLICY_SCOPE_OF_LAYER,      /* a stream per layer; all H rows, cfg.gqa; the kept
                                   slots apply to every KV head of the layer */
} policy_scope_of;

typedef enum policy_pool { POLICY_POOL_MAX, POLICY_POOL_AVG } policy_pool;

#define POLICY_BUDGET_UNLIMITED 0    /* budget value meaning "never evict" */
#define POLICY_BUDGET_UNRESOLVED (-1) /* a fraction not yet resolved against T */

/* Parsed budget argument: "0.4" is a fraction of the sequence, "512" an entry count. */
typedef struct policy_budget {
    int    is_fraction;   /* 1 if written with a decimal point */
    double fraction;      /* in (0, +inf) when is_fraction */
    long   entries;       /* >= 1 when !is_fraction; 0 when no budget was given */
} policy_budget;

typedef struct policy_group policy_group;  /* adakv: heads sharing a budget */

/* Every field named in a comment as `key` is set by policy_config_set(cfg, "key", ..)
 * and listed, with its default, by policy_param_list(). */
typedef struct policy_config {
    /* What runs. */
    const char     *name;        /* `policy`: preset name; see policy_list() */
    policy_score    score;       /* `score`: PRESET = the preset's */
    int             scope;       /* `scope`: POLICY_SCOPE_* set, or POLICY_SCOPE_PRESET */
    policy_scope_of scope_of;    /* `scope-of`: read with policy_config_scope_of() */
    policy_gqa      gqa;         /* `gqa`: reduction of a group's rows in observe */

    /* Budget and its schedules. */
    int             budget;      /* B in entries; UNLIMITED = never; UNRESOLVED until
                                    policy_config_resolve() for a fraction */
    policy_budget   budget_arg;  /* `budget` as written */
    int             stride;      /* `stride` s >= 1: entries evicted at once */
    policy_phase    phase;       /* `phase` */
    double          layer_decay; /* `layer-decay` d: B_l ∝ d^l, mean over layers = B */
    int             soft_limit;  /* `soft-limit`: no eviction below this length; 0 off */
    int             hard_limit;  /* `hard-limit`: B in force from this length on */

    /* Protections (scopes). */
    int             sinks;       /* `sinks`: protected first positions */
    int             window;      /* `window` r in entries, or -1: window_frac · B */
    double          window_frac; /* `window` written as a fraction of B */
    int             recent;      /* `recent`: newest entries the std scope forces */

    /* Per-policy parameters. */
    int             history;     /* `history`: aqas look-back in steps */
    int             skip_layers; /* `skip-layers`: knorm keeps layers < this whole */
    int             obs_window;  /* `obs-window`: snapkv's observation window w */
    int             kernel;      /* `kernel`: snapkv pooling width (odd) */
    policy_pool     pool;        /* `pool`: snapkv pooling, max | avg */
    int             beta;        /* `beta`: pyramidkv top/bottom ratio */
    double          recovery;    /* `recovery`: fastgen T */
    double          r_f;         /* `r-f`: fastgen frequent fraction */
    double          r_l;         /* `r-l`: fastgen local fraction */
    double          floor;       /* `floor`: adakv per-head floor, fraction of B */
    int             stride_min;  /* `stride-min`: pace's smallest block */
    int             stride_max;  /* `stride-max`: pace's largest block */
    double          settle;      /* `settle`: pace's settledness threshold, × 1/n */

    /* The stream, set by the driver. */
    uint64_t        seed;        /* `seed`: the user's seed */
    uint64_t        stream_id;   /* distinguishes streams: e.g. layer * 1000 + kv_head */
    int             layer;       /* this stream's layer, for per-layer schedules */
    int             n_layers;    /* layers in the model, for per-layer schedules */
    int             prompt_len;  /* tokens in the prompt; snapkv/pyramidkv need it */
    int             capacity_hint; /* expected peak entries (B + s, or T); 0 = unknown */
    policy_group   *group;       /* adakv: the layer's group (policy_group_new) */
    int             group_member;/* adakv: this head's index in the group */

    const char     *params;      /* "key=value,key=value" applied by policy_new() on
                                    top of the fields; NULL = none */
    uint64_t        set;         /* bit i: parameter i was set explicitly (private) */
} policy_config;

/* Defaults of DESIGN.md and docs/POLICIES.md: policy full, stride 1, stream phase,
 * gqa mean, 4 sinks, window 0.3·B, recent 10, ... (policy_param_list()). */
policy_config policy_config_default(void);

/* Set one parameter from its text, as a CLI option or a params pair would:
 *   policy_config_set(&cfg, "policy", "roco", err, sizeof err);
 *   policy_config_set(&cfg, "budget", "0.4", err, sizeof err);
 * Keys: policy score scope scope-of gqa budget stride phase layer-decay soft-limit
 * hard-limit sinks window recent seed history skip-layers obs-window kernel pool beta
 * recovery r-f r-l floor stride-min stride-max settle ('_' reads as '-').  Scopes
 * combine with '+': "std+sinks".  Setting score or scope without a policy selects the
 * `scored` preset.  Values are borrowed only for `policy` (cfg->name points at the
 * registry's copy).  Returns 0, or -1 with err naming the valid keys or values. */
int policy_config_set(policy_config *cfg, const char *key, const char *value, char *err,
                      size_t errlen);

/* Forget the parameters set explicitly on cfg that policy cfg->name does not read
 * (with cfg's score and scope, presets applied), so that one parameter list can serve
 * several policies (a sweep of h2o and tova with --windows).  Their keys, space-
 * separated, go to dropped[len] (may be NULL).  Returns how many were dropped; an
 * unknown policy drops nothing (policy_new reports it). */
int policy_config_drop_unused(policy_config *cfg, char *dropped, size_t len);

/* The protected window r in entries under budget B: `window` as entries, or
 * floor(fraction · B) when it was written as a fraction (0 without a budget). */
int policy_window_entries(const policy_config *cfg, int budget);

/* Resolve a fractional budget against the sequence length T (replay: the trace
 * length; live generation: prompt + max new tokens). */
void policy_config_resolve(policy_config *cfg, int T);

/* The aggregation scope in force: the explicit one, else the preset's.  The driver
 * reads it before building streams. */
policy_scope_of policy_config_scope_of(const policy_config *cfg);

/* Parse a budget argument.  0, negative, empty or malformed values are errors (the
 * message goes to err[errlen] and -1 is returned); 0 on success. */
int policy_budget_parse(const char *text, policy_budget *out, char *err, size_t errlen);

/* Resolve against a sequence length T.  The result is >= 1; a budget >= T means
 * `full` (it resolves to T). */
int policy_budget_resolve(const policy_budget *b, int T);

/* ---------------------------------------------------------------------------------
 * The policy object. */

typedef struct policy policy;

/* Create a policy from cfg (and cfg->params).  Unknown names, parameters that do not
 * apply to the policy, and missing driver inputs are errors that name the valid
 * choices: NULL is returned and err[errlen] says why. */
policy *policy_new(const policy_config *cfg, char *err, size_t errlen);
void    policy_free(policy *p);   /* NULL is allowed */

/* (2) Token joins the cache at slot n.  Returns 0, or -1 when memory runs out. */
int  policy_append(policy *p, const policy_entry *entry);

/* (2) The current query(ies) attended to the n kept entries: `rows` holds n_rows rows
 * of policy_size(p) floats each, in slot order, each renormalised over the kept
 * entries.  The rows of a GQA group are reduced by cfg.gqa into one row before the
 * policy sees it.  At least one row is required. */
void policy_observe(policy *p, const float *rows, int n_rows);

/* (2) How many entries must be evicted now (0 if none), from the phase, the budget
 * in force, the stride, the current size, the pinned prefix, and for some policies
 * (pace, fastgen, adakv) their own state. */
int  policy_due(const policy *p);

/* (2) Choose k evictable slots, remove them from the policy's state, and write them in
 * ascending order to slots[k], so the caller can compact its own arrays the same way
 * (policy_compact()).  Returns k, or fewer only when fewer entries are evictable. */
int  policy_evict(policy *p, int k, int *slots);

/* The prompt has ended: ONESHOT becomes due to compress, DECODE pins the prompt,
 * fastgen picks its profile, pyramidkv sets this layer's budget. */
void policy_end_prompt(policy *p);

/* (3) Only for the oracle score (policy_needs_future()): future[i] = Σ_{τ>t} p_τ(slot
 * i), the full-cache attention of the future queries, valid for the next
 * policy_evict() call. */
void policy_set_future(policy *p, const float *future);
int  policy_needs_future(const policy *p);

/* The policy's eviction score of every kept entry, slot order, lowest evicted first
 * (for score-consistency metrics).  Returns 0, or -1 for policies without a score
 * (full, fastgen). */
int  policy_scores(const policy *p, float *out);

int                  policy_size(const policy *p);      /* n: kept entries */
int                  policy_budget_of(const policy *p); /* B in force for this stream */
const policy_entry  *policy_entries(const policy *p);   /* (n,) borrowed, slot order */
const policy_config *policy_config_of(const policy *p); /* resolved: presets applied */
const char          *policy_name(const policy *p);
/* fastgen's profile for this stream ("special", "punct", "frequent", "local", "full"),
 * or NULL before the prompt ends and for other policies. */
const char          *policy_profile(const policy *p);

/* ---------------------------------------------------------------------------------
 * Groups: the KV heads of one layer sharing one budget (adakv).  The driver creates
 * one group per layer with n_members = KV heads, sets cfg.group and cfg.group_member
 * on each head's config, and calls policy_group_plan() once per step after every
 * member has appended and observed, before asking any member policy_due().  The
 * group is freed after its members. */

policy_group *policy_group_new(int n_members, char *err, size_t errlen);
void          policy_group_free(policy_group *g);   /* NULL is allowed */
void          policy_group_plan(policy_group *g);

/* ---------------------------------------------------------------------------------
 * The registry: every preset and parameter, for `kvsim policies` and --help. */

typedef struct policy_info {
    const char *name;        /* CLI name */
    const char *score;       /* the preset's score ("" if it has none) */
    const char *scope;       /* the preset's scope ("" if none) */
    const char *params;      /* the keys it reads, space-separated (policy_param_find) */
    const char *summary;     /* one line: the rule */
    const char *provenance;  /* paper or system it reproduces */
} policy_info;

typedef struct policy_param_info {
    const char *key;         /* as given to policy_config_set() */
    const char *def;         /* default, as text ("" when none) */
    const char *help;        /* one line */
} policy_param_info;

int                      policy_count(void);
const policy_info       *policy_list(void);               /* (policy_count(),) static */
const policy_info       *policy_find(const char *name);   /* NULL if unknown */
int                      policy_param_count(void);
const policy_param_info *policy_param_list(void);         /* (policy_param_count(),) */
const policy_param_info *policy_param_find(const char *key); /* NULL if unknown */
/* Write "full, recency, ..." to buf (for error messages); returns buf. */
const char              *policy_names(char *buf, size_t len);

/* ---------------------------------------------------------------------------------
 * Helpers shared by policy implementations and drivers. */

/* Remove the k ascending `slots` from an array of n elements of elem_size bytes,
 * keeping the order of the rest (invariant 1).  O(n). */
void policy_compact(void *array, size_t elem_size, int n, const int *slots, int k);

/* (4) Choose the k evictable slots with the lowest score, ties to the oldest
 * position.  evictable[i] != 0 marks candidates; NULL means every unpinned slot.
 * Writes the chosen slots, best victim first, to out[] and returns how many were
 * chosen.  O(n) expected (selection), plus O(k log k) to order the k. */
int  policy_pick_lowest(const policy *p, const float *score, const unsigned char *evictable,
                        int k, int *out);

/* (5) The stream's deterministic generator (splitmix64). */
uint64_t policy_rand_u64(policy *p);

#endif /* POLICY_H */
