/*
 * policy.h — eviction policies: the contract, the step, and how to write a policy.
 *
 * A policy manages one STREAM: the KV cache of one (layer, KV head) at the default
 * `kv-head` scope, of one query head at `query-head` scope, or of a whole layer at
 * `layer` scope.  The same compiled policy code is driven by the replay engine (rows
 * from a trace, restricted to the kept entries and renormalised), by live generation
 * (rows from the real attention over the compressed cache), by the tests and by the
 * GPU host path.  There is no second implementation.  Every rule, parameter and
 * default: ../docs/POLICIES.md.
 *
 * This header serves three readers:
 *   - drivers build one policy_layer per (configuration, model layer) and call
 *     policy_layer_step() once per token; the step order below is written once, in
 *     policies/policy_layer.c;
 *   - command lines build a policy_config with policy_config_set(), the one parser of
 *     policy parameters, and list policies and parameters from the registry;
 *   - authors write a policy as one file: a policy_def with its parameter table and
 *     its ops ("Writing a policy" below).  `--policy-lib FILE.so` loads one compiled
 *     apart against this header (and common/kv_err.h, which it includes).
 *
 * Invariants of the contract (the tests name each one they check):
 *
 *  (1) Slots.  The kept entries live in slots 0..n-1 in the order they joined, which
 *      is increasing original position.  Eviction removes slots and compacts the rest
 *      without reordering them, so slot order stays position order.
 *  (2) Step order, per token t, for every stream of a layer (policy_layer_step):
 *          the entry joins (slot n-1), lending its key and value vectors
 *          the driver gives the G rows of query t over the n kept entries; the
 *            policy observes them, reduced by cfg.gqa into one row
 *          after the prompt's last token, the prompt ends
 *          the driver measures what query t attended (optional)
 *      then, once every stream has observed, a policy that plans across the layer's
 *      streams plans (adakv), and each stream evicts what is due, telling the driver
 *      which slots went.  With budget B and stride s, eviction is due when the cache
 *      holds B + s entries and removes s of them at once, back to B.  So once eviction
 *      has begun, a query attends to between B + 1 and B + s entries; s = 1 is
 *      token-wise eviction.  Policies that size their own cache (fastgen, knorm in
 *      skipped layers, the adaptive stride of `pace`, soft/hard limits) decide how many
 *      go themselves; drivers never assume s and report the mean size actually kept.
 *  (3) A policy sees only what a real system could see at step t: rows up to t and
 *      the entries' metadata and vectors.  The one exception is the `oracle` score
 *      (POLICY_NEEDS_FUTURE): its driver hands it future attention sums before each
 *      eviction; without them it evicts nothing.
 *  (4) Ties (fp16 rows tie often): evict the lowest score, then the oldest position
 *      (then, across the streams of a layer that share a budget, the lowest stream).
 *      policy_pick_lowest() implements this once for every scoring policy.
 *  (5) Determinism: a policy's choices depend only on its config (seed and stream
 *      included) and on the rows and entries it was shown, never on thread count.
 *      Every random draw comes from policy_rand_u64(), seeded from (seed, stream id).
 *  (6) Pinned entries: the first policy_pinned() slots are never evicted (the prompt
 *      in the `decode` phase).  A policy's own protections (sinks, windows) come on
 *      top.
 *  (7) The budget is a hard limit for score × scope policies: protections (sinks,
 *      window, std set) are capped so that k candidates always remain; sinks first,
 *      then the newest, then the rest.  So sinks larger than B keep the oldest B.
 *
 * Errors follow common/kv_err.h: 0 or a negative KV_E* code with a message naming
 * what was wrong and the valid choices; lookups return NULL.  There is never a silent
 * fallback to the full cache.
 *
 * Ownership: a policy_layer owns its policies; everything passed in (rows, vectors,
 * tokens) is borrowed for the duration of the call.  Steady-state steps allocate
 * nothing.  This module does no I/O but loading --policy-lib files.
 */
#ifndef POLICY_H
#define POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

#define POLICY_ABI_VERSION 2   /* of this header, for --policy-lib files (2: policy_config
                                  grew decode-interval and layer-budgets) */

/* =================================================================================
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
} policy_entry;

/* The key and value vectors of an entry as it joins one stream, borrowed for the
 * append only: `n` vectors of `dim` floats, vector i at key + i·stride (n = 1 for a
 * KV-head or query-head stream, the layer's KV heads for a layer stream).  key or
 * value is NULL when the driver has none (a trace recorded without them). */
typedef struct policy_vectors {
    const float *key, *value;
    int          dim, n;
    size_t       stride;
    /* The queries the entry's own token issued in this layer, for a policy that reads
     * them (POLICY_READS_QUERIES): n_query vectors of dim floats, contiguous, one per
     * member head of the stream in head order (the G heads of a KV-head stream, every
     * head of a layer stream; n_query is that count even without queries).  Post-RoPE,
     * at the entry's position, as the trace stores them (GGUF dimension order);
     * policy_rope_unrotate() undoes the rotation.  NULL when the driver has none. */
    const float *query;
    int          n_query;
    /* For a policy that reads them (POLICY_READS_OUT_PROJ): per member head, in the
     * order of `query`, ‖W_o,h v‖₁, the L1 norm of the entry's value through that
     * head's slice of the layer's output projection (policy_shape.out_proj); NULL
     * when the driver has no output projection. */
    const float *out_norm;
} policy_vectors;

/* The mean over the vectors of their L2 norm (each rounded to float, as the replay
 * engine always computed it); NAN without keys. */
float policy_key_norm(const policy_vectors *v);
/* The same for the values with the L1 (p = 1) or L2 (p = 2) norm; NAN without values. */
float policy_value_norm(const policy_vectors *v, int p);

/* =================================================================================
 * Configuration: the common parameters every policy is driven by, and the policy's
 * own parameters as written, checked against its table when it is created. */

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

typedef enum policy_scope_of {  /* how a layer's heads form streams (docs/POLICIES.md) */
    POLICY_SCOPE_OF_PRESET,     /* the policy's own: kv-head, except tova: layer */
    POLICY_SCOPE_OF_KV_HEAD,    /* a stream per (layer, KV head); G rows, cfg.gqa */
    POLICY_SCOPE_OF_QUERY_HEAD, /* a stream per (layer, query head); 1 row */
    POLICY_SCOPE_OF_LAYER,      /* a stream per layer; all H rows, cfg.gqa; the kept
                                   slots apply to every KV head of the layer */
} policy_scope_of;

#define POLICY_BUDGET_UNLIMITED 0     /* budget value meaning "never evict" */
#define POLICY_BUDGET_UNRESOLVED (-1) /* a fraction not yet resolved against T */

/* Parsed budget argument: "0.4" is a fraction of the sequence, "512" an entry count. */
typedef struct policy_budget {
    int    is_fraction;   /* 1 if written with a decimal point */
    double fraction;      /* in (0, 1] when is_fraction */
    long   entries;       /* >= 1 when !is_fraction; 0 when no budget was given */
} policy_budget;

#define POLICY_OWN_MAX   16   /* own parameters one configuration may set */
#define POLICY_LAYERS_MAX 128 /* layers `layer-budgets` may list */
#define POLICY_KEY_MAX   24
#define POLICY_VALUE_MAX 40

typedef struct policy_config {
    const char     *name;        /* `policy`: see policy_count()/policy_def_at() */
    int             budget;      /* `budget` B in entries; UNLIMITED = never; UNRESOLVED
                                    until policy_config_resolve() for a fraction */
    policy_budget   budget_arg;  /* `budget` as written */
    int             stride;      /* `stride` s >= 1: entries evicted at once */
    policy_phase    phase;       /* `phase` */
    policy_gqa      gqa;         /* `gqa`: reduction of a group's rows */
    policy_scope_of scope_of;    /* `scope-of`: read with policy_config_scope_of() */
    double          layer_decay; /* `layer-decay` d: B_l ∝ d^l, mean over layers = B */
    int             soft_limit;  /* `soft-limit`: no eviction below this length; 0 off */
    int             hard_limit;  /* `hard-limit`: B in force from this length on */
    int             decode_interval; /* `decode-interval` N: after the prompt, every N-th
                                        generated token compresses to decode_budget */
    int             decode_budget;   /* `decode-budget`: entries kept then */
    int             n_layer_budgets; /* `layer-budgets`: each layer's own B (0: none) */
    double          layer_budgets[POLICY_LAYERS_MAX]; /* > 0 entries, < 0 −fraction */
    int             resolved_len;/* T of policy_config_resolve (layer-budgets' fractions) */
    uint64_t        seed;        /* `seed` */
    int             prompt_len;  /* set by the driver: tokens in the prompt */
    uint32_t        set;         /* bit i: common parameter i was set explicitly */
    int             n_own;       /* the policy's own parameters as written, in order */
    struct { char key[POLICY_KEY_MAX], value[POLICY_VALUE_MAX]; } own[POLICY_OWN_MAX];
} policy_config;

/* Defaults of DESIGN.md and docs/POLICIES.md: policy full, no budget, stride 1, stream
 * phase, gqa mean, no own parameters (each policy's table has its defaults). */
policy_config policy_config_default(void);

/* Set one parameter from its text, as a command-line option would:
 *   policy_config_set(&cfg, "policy", "roco", err);
 *   policy_config_set(&cfg, "budget", "0.4", err);
 *   policy_config_set(&cfg, "sinks", "8", err);
 * A common key goes to its field; any other key must be a parameter of some policy
 * (its value is checked against that table now, and against the chosen policy's when
 * the policy is created).  '_' reads as '-'.  Setting `score` or `scope` without a
 * policy selects `scored`.  0, or KV_EUSAGE with err naming the valid keys or values. */
int policy_config_set(policy_config *cfg, const char *key, const char *value, kv_err *err);

/* policy_config_set for each pair of "key=value,key=value" (tests, presets). */
int policy_config_set_list(policy_config *cfg, const char *pairs, kv_err *err);

/* Policy parameters as a command line gives them (--sinks 4 --phase decode), kept in
 * order and applied to each configuration with policy_config_apply. */
#define POLICY_ARGS_MAX 32
typedef struct policy_args {
    int         n;
    const char *key[POLICY_ARGS_MAX], *value[POLICY_ARGS_MAX];   /* borrowed */
} policy_args;

/* Take option --key (value) into args when key is a policy parameter: 1 taken (*used
 * = 1), 0 not one, KV_EUSAGE for a missing value or too many (common/opts.h's `other`
 * callback; args is a policy_args). */
int policy_args_take(void *args, const char *key, const char *value, int *used, kv_err *err);

/* The value of `key` given last in args, or NULL. */
const char *policy_args_get(const policy_args *args, const char *key);

/* policy_config_set for each pair in order. */
int policy_config_apply(policy_config *cfg, const policy_args *args, kv_err *err);

/* The text of parameter `key` in force for cfg->name, into buf[len]: as written, else
 * the policy's default; NULL when the policy has no such parameter. */
const char *policy_config_value(const policy_config *cfg, const char *key, char *buf,
                                size_t len);

/* Was `key` set explicitly (a common parameter or an own one)? */
int policy_config_is_set(const policy_config *cfg, const char *key);

/* Forget the parameters set explicitly that policy cfg->name does not read, so that
 * one parameter list can serve several policies (a sweep of h2o and tova with
 * --windows).  Their keys, space-separated, go to dropped[len] (may be NULL).
 * Returns how many were dropped. */
int policy_config_drop_unused(policy_config *cfg, char *dropped, size_t len);

/* Resolve a fractional budget against the sequence length T (replay: the trace
 * length; live generation: prompt + max new tokens). */
void policy_config_resolve(policy_config *cfg, int T);

/* The aggregation scope in force: the explicit one, else the policy's. */
policy_scope_of policy_config_scope_of(const policy_config *cfg);

/* Parse a budget argument.  0, negative, empty or malformed values are KV_EUSAGE. */
int policy_budget_parse(const char *text, policy_budget *out, kv_err *err);

/* Resolve against a sequence length T.  The result is >= 1; a budget >= T means
 * `full` (it resolves to T). */
int policy_budget_resolve(const policy_budget *b, int T);

/* A size written as entries ("32") or as a fraction of B ("0.3"), like `window`. */
typedef struct policy_span {
    int    entries;       /* when !is_fraction */
    double fraction;      /* in [0, 1] when is_fraction */
    int    is_fraction;
} policy_span;

/* entries, or floor(fraction · budget) (0 without a budget). */
int policy_span_entries(const policy_span *s, int budget);
/* Parse "32" or "0.3" (a fraction in [0, 1]).  0 or KV_EUSAGE. */
int policy_span_parse(const char *text, policy_span *out, kv_err *err);

/* =================================================================================
 * Layers and the step: how every driver runs policies. */

typedef struct policy        policy;
typedef struct policy_layer  policy_layer;

/* A layer's rotary position embedding, for policies that read queries and keys before
 * the rotation (expected-attention): dimension pair i of a head (i < n_rot/2) is turned
 * by the angle (float)position · freq[i], computed in float as the forward pass does
 * (RoPE scaling folded into freq); the pairs are (2i, 2i+1) (GGUF llama order) or
 * (i, i + n_rot/2) when `halves` (NEOX: qwen, gemma3, gptneox); dimensions from n_rot
 * on are not rotated.  freq is copied by policy_layer_new. */
typedef struct policy_rope {
    const float *freq;     /* (n_rot/2) radians per position; NULL: unknown */
    int          n_rot;
    int          halves;
} policy_rope;

/* The heads of one model layer as the driver has them. */
typedef struct policy_shape {
    int        layer;      /* the model layer number (schedules, stream ids) */
    int        n_layers;   /* layers in the model */
    int        n_heads;    /* H: query heads the driver gives rows of, 0..H-1 */
    const int *head_id;    /* (H,) the model number of each (query-head stream ids) */
    const int *kv_of;      /* (H,) the KV head 0..n_kv-1 each one reads */
    int        n_kv;       /* KV heads */
    int        max_len;    /* the longest sequence the driver will feed (0: unknown) */
    int        window;     /* W > 0: a sliding-window layer, query t sees only keys
                              t-W+1..t (0: every earlier key); see policy_layer_new */
    policy_rope rope;      /* the layer's rotary embedding (freq NULL: unknown) */
    /* The layer's output projection W_o, rows × cols floats row-major (rows = model
     * width, cols = query heads × head_dim; head h's slice is columns h·D..h·D+D-1 of
     * the model's head numbering, head_id), borrowed for the layer's life; NULL:
     * unknown.  The step turns it into policy_vectors.out_norm. */
    const float *out_proj;
    int          out_rows, out_cols;
} policy_shape;

/* The streams of one layer under cfg (budget resolved, prompt_len set): one per KV
 * head that has a query head, one per query head, or one for the layer, as
 * policy_config_scope_of(cfg) says; stream ids are layer · 1000 + KV head, + query
 * head, or + 0.  NULL and err (KV_EUSAGE for a refused configuration).
 * A sliding-window layer (shape->window = W > 0): a key the model no longer shows is
 * already gone, so each step first drops the kept entries at positions <= t - W (the
 * driver hears of them through io.evicted, pinned ones included), and a stream
 * manages at most the window: a fractional budget is of min(max_len, W) (max_len 0:
 * of W), an entry count is capped at W.  Layer schedules apply to that budget. */
policy_layer *policy_layer_new(const policy_config *cfg, const policy_shape *shape,
                               kv_err *err);
void          policy_layer_free(policy_layer *L);   /* NULL is allowed */

/* What a driver tells the step, and what the step asks of it. */
typedef struct policy_token {
    int32_t      position;   /* the token's position: step t */
    int32_t      token;      /* its id, -1 if unknown */
    uint32_t     flags;      /* POLICY_FLAG_* */
    const float *keys;       /* its keys in this layer, KV head k at keys + k·stride
                                (dim floats); NULL when the driver has none */
    const float *values;     /* the same for values; NULL when none */
    int          dim;
    size_t       stride;
    const float *queries;    /* its post-RoPE queries, head h (0..H-1 of the shape) at
                                queries + h·query_stride (dim floats); NULL: none.
                                Needed only by POLICY_READS_QUERIES policies */
    size_t       query_stride;
} policy_token;

typedef struct policy_io {
    /* The G rows of stream s's member heads over its n kept entries (slot order, the
     * joining entry last) into rows (G x n).  0, or a KV_E* code with err. */
    int  (*rows)(void *ctx, int s, const policy *p, float *rows, kv_err *err);
    /* Optional: query t attended stream s's kept entries, before any eviction. */
    void (*attended)(void *ctx, int s, const policy *p);
    /* Needed for POLICY_NEEDS_FUTURE: future[i] = Σ_{τ>t} p_τ(slot i) over the
     * stream's member heads, before stream s evicts. */
    void (*future)(void *ctx, int s, const policy *p, float *future);
    /* Optional: stream s evicted the ascending slots[k]; drop them from the driver's
     * own arrays the same way (policy_compact). */
    void (*evicted)(void *ctx, int s, const int *slots, int k);
} policy_io;

/* (2) Token `tok` through every stream of the layer.  0, or a KV_E* code with err. */
int policy_layer_step(policy_layer *L, const policy_token *tok, const policy_io *io,
                      void *ctx, kv_err *err);

/* Is every stream done evicting for good (a oneshot policy that has compressed, with no
 * decode-interval, no due or plan op of its own)?  Then what joins after has no say in
 * its choices and policy_layer_truncate can take the layer back. */
int           policy_layer_settled(const policy_layer *L);
/* Drop every stream's entries at positions >= pos, and count pos tokens seen.  Only
 * for a settled layer (KV_EUSAGE otherwise). */
int           policy_layer_truncate(policy_layer *L, int32_t pos, kv_err *err);

int           policy_layer_streams(const policy_layer *L);
policy       *policy_layer_stream(const policy_layer *L, int s);
/* Stream s's member heads (0..H-1 of the shape) into *heads; returns G. */
int           policy_layer_members(const policy_layer *L, int s, const int **heads);
/* Stream s's KV head, or -1 for a layer stream (every KV head of the layer). */
int           policy_layer_kv(const policy_layer *L, int s);
/* How many more tokens may join before any stream of the layer could have to evict
 * after one of them (INT_MAX: none can before the sequence ends).  A live driver
 * feeds at most this + 1 tokens in one forward (the last one may evict). */
int           policy_layer_quiet(const policy_layer *L);
/* The most entries any stream may hold at once (B + s, pace's largest block), or 0
 * when a stream may hold the whole sequence (full, oneshot and decode phases,
 * policies that size their own cache). */
int           policy_layer_capacity(const policy_layer *L);

/* =================================================================================
 * A policy, read-only (drivers and metrics). */

int                  policy_size(const policy *p);      /* n: kept entries */
int                  policy_budget_of(const policy *p); /* B in force for this stream */
const policy_entry  *policy_entries(const policy *p);   /* (n,) borrowed, slot order */
const policy_config *policy_config_of(const policy *p); /* as the policy runs it */
unsigned             policy_flags(const policy *p);     /* POLICY_* capabilities */
/* The policy's eviction score of every kept entry, slot order, lowest evicted first
 * (score-consistency metrics).  0, or -1 for policies without a score. */
int                  policy_scores(const policy *p, float *out);
/* A short description of what the policy decided so far ("profile=local"), for
 * reports; "" when there is nothing to say. */
const char          *policy_describe(const policy *p, char *buf, size_t len);

/* The score × scope vocabulary (EasyKV/RoCo): what a device kernel can run
 * (gpu/replay_rules.h) and what score consistency compares. */
typedef enum policy_score {
    POLICY_SCORE_NONE,       /* not a score × scope policy */
    POLICY_SCORE_AAS,        /* S: accumulated attention (H2O) */
    POLICY_SCORE_MAS,        /* S / c: mean attention (RoCo) */
    POLICY_SCORE_LTAS,       /* a_t: the current row (TOVA) */
    POLICY_SCORE_AQAS,       /* share of important steps in the history (Scissorhands) */
    POLICY_SCORE_KNORM,      /* -||k||: small key norms are kept (KnormPress) */
    POLICY_SCORE_RECENCY,    /* position */
    POLICY_SCORE_RANDOM,     /* a seeded uniform key drawn when the entry joins */
    POLICY_SCORE_ORACLE,     /* future attention (POLICY_NEEDS_FUTURE) */
} policy_score;

enum policy_scope_bit {      /* policy_rules.scope is a set of these; 0 = `none` */
    POLICY_SCOPE_SINKS  = 1 << 0,  /* the first `sinks` positions */
    POLICY_SCOPE_WINDOW = 1 << 1,  /* the r newest entries */
    POLICY_SCOPE_STD    = 1 << 2,  /* the `recent` newest + the largest σ, r in all */
};

typedef struct policy_rules {
    policy_score score;
    int          scope;      /* POLICY_SCOPE_* set */
    int          sinks;      /* protected first positions */
    int          window;     /* r in entries under the budget in force */
    int          recent;     /* the std scope's forced newest */
} policy_rules;

/* The rules of a score × scope policy; -1 when p is not one. */
int policy_rules_of(const policy *p, policy_rules *out);

/* =================================================================================
 * The registry: every policy compiled in or loaded, for help texts and lookups. */

typedef struct policy_def   policy_def;
typedef struct policy_param policy_param;

int                 policy_count(void);
const policy_def   *policy_def_at(int i);                 /* 0 <= i < policy_count() */
const policy_def   *policy_find(const char *name);        /* NULL if unknown */
/* The row of common parameter `key`, else the first row called `key` in any policy's
 * table ('_' reads as '-'), or NULL: is `--key` a policy parameter? */
const policy_param *policy_param_find(const char *key);
/* "full, recency, ..." into buf (error messages); returns buf. */
const char         *policy_names(char *buf, size_t len);
/* The parameters policy `def` reads under cfg (presets applied), space-separated,
 * "key=value" with the value in force, into buf; returns buf. */
const char         *policy_params_of(const policy_def *def, const policy_config *cfg,
                                     char *buf, size_t len);
/* The common parameters' keys, defaults and help (`kvsim policies`, --help). */
int                 policy_common_count(void);
const policy_param *policy_common_at(int i);

/* Load the policies of a shared object built against this header (--policy-lib):
 * it exports `policy_lib` (POLICY_LIB below).  A missing file or symbol, another ABI
 * version or a name already taken is KV_EUNSUPPORTED/KV_EIO naming the file. */
int policy_lib_load(const char *path, kv_err *err);

/* =================================================================================
 * Writing a policy.
 *
 * A policy is one file defining a `const policy_def`: its name and help, its
 * parameter table, the size of its state, capability flags and ops; one line in
 * policies/policy_registry.c (or POLICY_LIB for a --policy-lib file) lists it.  The
 * base object keeps the entries, the budget and its schedules, the phase, pinning and
 * the random state; the ops keep the policy's statistics, in its state.  Per-slot
 * arrays of the state (its columns) are grown with the cache, compacted on eviction
 * and freed by the base.  docs/POLICIES.md, "Writing a policy", walks through one. */

typedef enum policy_param_kind {
    POLICY_PARAM_INT,     /* int, in [lo, hi] */
    POLICY_PARAM_REAL,    /* double, in [lo, hi] */
    POLICY_PARAM_CHOICE,  /* int: the index of the value among `choices` */
    POLICY_PARAM_SET,     /* int: bit i for the i-th of `choices`, joined by '+';
                             "none" = 0 */
    POLICY_PARAM_SPAN,    /* policy_span: entries ("32") or a fraction of B ("0.3") */
} policy_param_kind;

struct policy_param {
    const char       *key;      /* "obs-window" */
    policy_param_kind kind;
    size_t            offset;   /* where the value lives in the state (offsetof) */
    const char       *def;      /* default, as text; "" = required */
    double            lo, hi;   /* range of INT and REAL */
    const char       *choices;  /* CHOICE and SET: names separated by spaces */
    const char       *help;     /* one line */
};

enum policy_capability {
    POLICY_NEVER_EVICTS  = 1u << 0,   /* full: nothing is ever due */
    POLICY_NEEDS_FUTURE  = 1u << 1,   /* the driver must give io.future (oracle) */
    POLICY_READS_KEYS    = 1u << 2,   /* append needs key vectors */
    POLICY_READS_VALUES  = 1u << 3,   /* append needs value vectors */
    POLICY_SIZES_ITSELF  = 1u << 4,   /* B does not bound the cache: the policy's own
                                         rule sizes it, at any step (fastgen) */
    POLICY_DECIDES_DUE   = 1u << 5,   /* set for a policy with a `due` op */
    POLICY_PLANS_LAYER   = 1u << 6,   /* set for a policy with a `plan` op */
    POLICY_READS_QUERIES = 1u << 7,   /* append needs the entry's queries and the layer's
                                         RoPE (policy_shape.rope) */
    POLICY_READS_OUT_PROJ = 1u << 8,  /* append needs out_norm (policy_shape.out_proj) */
};

typedef struct policy_ops {
    /* Everything the base needs filled: the parameters are in the state already.
     * Validate, register per-slot arrays, set flags.  0 or KV_EUSAGE with err. */
    int  (*init)(policy *p, kv_err *err);
    /* Optional: does the policy read parameter `key` as configured?  NULL: every row
     * of its table (and of its base's) is read. */
    int  (*uses)(const policy *p, const char *key);
    /* Optional: the entry at `slot` (= n-1) joined with vectors v. */
    void (*append)(policy *p, int slot, const policy_vectors *v);
    /* Optional: one reduced row over the n kept entries. */
    void (*observe)(policy *p, const float *row, int n);
    /* Optional: entries due now, when the policy decides its own steps (pace's
     * adaptive stride, fastgen's profile, adakv's plan); `counted` are the unpinned
     * entries, `budget` the B in force.  NULL: the stride rule. */
    int  (*due)(const policy *p, int counted, int budget);
    /* Choose k distinct evictable slots (>= policy_pinned()) into out[]; return how
     * many.  The base removes them from the entries and every slot array. */
    int  (*choose)(policy *p, int k, int *out);
    /* Optional: the prompt has ended (after the base's own bookkeeping). */
    void (*end_prompt)(policy *p);
    /* Optional: plan the evictions of the layer's n streams of this policy together,
     * once per step after every one observed (adakv); `due` then reads the plan. */
    void (*plan)(policy *const *streams, int n);
    /* Optional: eviction scores, lowest evicted first (policy_scores()). */
    int  (*scores)(const policy *p, float *out);
    /* Optional: policy_rules_of(). */
    int  (*rules)(const policy *p, policy_rules *out);
    /* Optional: policy_describe(). */
    void (*describe)(const policy *p, char *buf, size_t len);
    /* Optional: free what init allocated besides slot arrays. */
    void (*destroy)(policy *p);
} policy_ops;

/* A per-slot array of the state: the pointer field at `offset` holds one `size`-byte
 * element per kept entry, in slot order.  The base grows it with the cache, compacts
 * it on eviction (statistics) or only grows it (scratch), and frees it.  Declare them
 * in the def's `columns` table, or add them in init with policy_add_column(). */
typedef struct policy_column {
    size_t offset;    /* of the field, a T * in the state */
    size_t size;      /* bytes per slot: sizeof(T), or more for a row of T */
    int    scratch;   /* 1: never compacted (per-step scratch) */
} policy_column;

#define POLICY_COLUMN(state, field)  {offsetof(state, field), sizeof *((state *)0)->field, 0}
#define POLICY_SCRATCH(state, field) {offsetof(state, field), sizeof *((state *)0)->field, 1}

struct policy_def {
    const char         *name;        /* CLI name */
    const char         *summary;     /* one line: the rule */
    const char         *provenance;  /* paper or system it reproduces */
    const policy_def   *base;        /* a policy whose parameters this one extends (its
                                        state must begin with the base's), or NULL */
    const policy_param *params;      /* own parameters, ended by a row with key NULL */
    const char         *defaults;    /* "score=aas,scope=window": parameters as this
                                        preset sets them ("" none) */
    policy_scope_of     scope_of;    /* the default aggregation scope */
    unsigned            flags;       /* POLICY_* capabilities of every instance */
    size_t              state_size;  /* bytes of state, zeroed, parameters filled */
    const policy_column *columns;    /* its per-slot arrays, ended by a row of size 0
                                        (a base's columns are the base's) */
    policy_ops          ops;
};

/* --- what ops may read and do ----------------------------------------------------- */

void               *policy_state(const policy *p);       /* the state (state_size) */
int                 policy_pinned(const policy *p);      /* slots never evicted */
int                 policy_seen(const policy *p);        /* entries ever appended */
int                 policy_prompt_ended(const policy *p);
int                 policy_layer_number(const policy *p);/* the model layer */
int                 policy_model_layers(const policy *p);
const policy_def   *policy_def_of(const policy *p);
/* Future attention of each kept slot, valid in choose (POLICY_NEEDS_FUTURE), or NULL. */
const float        *policy_future(const policy *p);
/* The layer's rotary embedding (policy_shape.rope; freq NULL when the driver gave none). */
const policy_rope  *policy_rope_of(const policy *p);
/* Undo the rotation of one head vector x[dim] at `position` in place (the pre-RoPE query
 * or key), in float as the forward pass turned it. */
void                policy_rope_unrotate(const policy_rope *r, float *x, int position);
/* (5) The stream's deterministic generator (splitmix64). */
uint64_t            policy_rand_u64(policy *p);

/* In init: one more column (sizes known only then), as in the columns table.
 * 0, or KV_ENOMEM. */
int  policy_add_column(policy *p, size_t offset, size_t size, int scratch, kv_err *err);
/* In init: add capability flags for this instance (POLICY_NEEDS_FUTURE, ...). */
void policy_add_flags(policy *p, unsigned flags);
/* In init or end_prompt: the budget in force for this stream. */
void policy_set_budget(policy *p, int budget);
/* In init: the common parameters this policy overrides (snapkv: phase; pace: the
 * stride its largest block needs), read back by drivers with policy_config_of(). */
policy_config *policy_config_edit(policy *p);

/* (4) Choose the k evictable slots with the lowest score, ties to the oldest
 * position.  evictable[i] != 0 marks candidates; NULL means every unpinned slot.
 * Writes the chosen slots, best victim first, to out[] and returns how many were
 * chosen.  O(n) expected (selection), plus O(k log k) to order the k. */
int  policy_pick_lowest(const policy *p, const float *score, const unsigned char *evictable,
                        int k, int *out);
/* A candidate of a selection across the streams of a layer (a `plan` op): the strict
 * total order of invariant (4) on (score, position, member). */
typedef struct policy_rank {
    float   score;
    int32_t position;
    int32_t member;   /* the stream's index in the plan */
    int32_t slot;
} policy_rank;

/* The k lowest of items[0..n) by (score, position, member) move to items[0..k),
 * ordered best victim first.  Quickselect: O(n) expected, then O(k log k). */
void policy_select_lowest(policy_rank *items, int n, int k);

/* Among the slots with cand[i] set, clear the `want` largest by (value, then the
 * newer): the protected set of a top-r rule, by the same total order as the tie rule.
 * O(n) expected. */
void policy_protect_top(const policy *p, const float *value, unsigned char *cand, int want);
/* The k lowest-scored slots outside the first `sinks` positions and the newest
 * `window` entries, those protections capped so that k candidates remain (invariant
 * 7): sinks first, then the newest.  policy_pick_lowest's order and result. */
int  policy_pick_outside(policy *p, const float *score, int sinks, int window, int k,
                         int *out);
/* Clear up to `want` of the newest candidates, at most *room in all (*room shrinks). */
void policy_protect_newest(const policy *p, unsigned char *cand, int want, int *room);
/* Remove the k ascending `slots` from an array of n elements of elem_size bytes,
 * keeping the order of the rest (invariant 1).  O(n). */
void policy_compact(void *array, size_t elem_size, int n, const int *slots, int k);

/* A --policy-lib file lists its policies with
 *     POLICY_LIB(&my_policy, &my_other_policy);
 * which exports the symbol `policy_lib` the loader reads. */
typedef struct policy_lib_info {
    int                       abi;     /* POLICY_ABI_VERSION */
    int                       n;
    const policy_def *const  *defs;
} policy_lib_info;

#define POLICY_LIB(...)                                                              \
    static const policy_def *const policy_lib_defs_[] = {__VA_ARGS__};               \
    const policy_lib_info policy_lib = {                                             \
        POLICY_ABI_VERSION, (int)(sizeof policy_lib_defs_ / sizeof *policy_lib_defs_), \
        policy_lib_defs_}

#endif /* POLICY_H */
