/*
 * policy.c — the contract's bookkeeping, shared by every policy: the registry,
 * budgets and their schedules, slots and compaction, the step schedule (policy_due),
 * GQA reduction, the tie rule and the random generator.  See policy.h for the
 * invariants and docs/POLICIES.md for every rule.
 */
#include "policy_impl.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The registry: each preset once, with its family, its default score and scope, the
 * parameters it reads (beyond the common ones), its rule and its provenance.
 *
 *   name          ops                 score      scope        scope_of  keys          */
#define POLICY_MAP(X)                                                                   \
    X(full,         policy_full_ops,    "",        "",          KV_HEAD, "",             \
      "keep every entry (the reference)", "full KV cache")                              \
    X(scored,       policy_scored_ops,  "",        "none",      KV_HEAD, "",             \
      "any score in any scope: score=S, scope=none|sinks+window|std...",                 \
      "EasyKV/RoCo's score × scope framing (arXiv 2402.06262)")                         \
    X(random,       policy_scored_ops,  "random",  "none",      KV_HEAD, "",             \
      "evict uniformly at random (seeded)", "EasyKV `random`")                          \
    X(recency,      policy_scored_ops,  "recency", "none",      KV_HEAD, "",             \
      "evict the oldest entries: keep the last B", "sliding window")                    \
    X(streaming,    policy_scored_ops,  "recency", "sinks",     KV_HEAD, "sinks",        \
      "keep the sinks and the most recent entries", "StreamingLLM (ICLR 2024)")         \
    X(h2o,          policy_scored_ops,  "aas",     "window",    KV_HEAD, "window",       \
      "evict the lowest accumulated attention S outside the newest r",                  \
      "H2O (NeurIPS 2023); EasyKV `h2o_head`")                                          \
    X(mas,          policy_scored_ops,  "mas",     "window",    KV_HEAD, "window",       \
      "evict the lowest mean attention S/c outside the newest r",                       \
      "RoCo's MAS with a positional window (EasyKV `h2o_head_avg`)")                    \
    X(roco,         policy_scored_ops,  "mas",     "std+sinks", KV_HEAD,                 \
      "sinks window recent",                                                            \
      "evict the lowest S/c outside the sinks and the r largest-σ (newest 10 forced)",  \
      "RoCo (arXiv 2402.06262); EasyKV `roco`")                                         \
    X(tova,         policy_scored_ops,  "ltas",    "none",      LAYER,   "",             \
      "evict the lowest attention of the current query, per layer",                     \
      "TOVA (Transformers are Multi-State RNNs)")                                       \
    X(scissorhands, policy_scored_ops,  "aqas",    "window",    KV_HEAD, "window history", \
      "evict the largest share of unimportant steps (a < 1/n) outside the newest r",    \
      "Scissorhands (NeurIPS 2023), cold-compress reading")                             \
    X(knorm,        policy_scored_ops,  "knorm",   "none",      KV_HEAD, "skip-layers",  \
      "evict the largest key L2 norm; layers < skip-layers keep everything",            \
      "KnormPress (arXiv 2406.11430)")                                                  \
    X(oracle,       policy_scored_ops,  "oracle",  "none",      KV_HEAD, "",             \
      "evict the lowest future attention (replay only; a greedy reference)",            \
      "offline reference of this project")                                              \
    X(snapkv,       policy_snapkv_ops,  "",        "",          KV_HEAD,                 \
      "obs-window kernel pool",                                                         \
      "one-shot after the prompt: keep the window and the top pooled window votes",     \
      "SnapKV (NeurIPS 2024)")                                                          \
    X(pyramidkv,    policy_snapkv_ops,  "",        "",          KV_HEAD,                 \
      "obs-window kernel pool beta",                                                    \
      "snapkv with a linear per-layer budget, bottom layers larger",                    \
      "PyramidKV (KVCache-Factory schedule)")                                           \
    X(fastgen,      policy_fastgen_ops, "",        "",          KV_HEAD, "recovery r-f r-l", \
      "per-head profile on the prompt: cheapest of special/punct/frequent/local/full "  \
      "recovering >= T", "FastGen (ICLR 2024)")                                         \
    X(adakv,        policy_adakv_ops,   "mas",     "window",    KV_HEAD, "window floor", \
      "mas+window with the budget shared by the heads of a layer, floor per head",      \
      "AdaKV (kvpress AdaKVPress)")                                                     \
    X(pace,         policy_pace_ops,    "mas",     "std+sinks", KV_HEAD,                 \
      "sinks window recent stride-min stride-max settle",                               \
      "roco with an adaptive stride: large blocks where attention has settled",         \
      "this project (the \"reading pace\" study)")

static const policy_ops *const policy_ops_table[] = {
#define POLICY_OPS(name, ops, score, scope, of, keys, summary, prov) &ops,
    POLICY_MAP(POLICY_OPS)
#undef POLICY_OPS
};

static const policy_info policy_info_table[] = {
#define POLICY_INFO(name, ops, score, scope, of, keys, summary, prov) \
    {#name, score, scope, keys, summary, prov},
    POLICY_MAP(POLICY_INFO)
#undef POLICY_INFO
};

static const policy_scope_of policy_scope_of_table[] = {
#define POLICY_OF(name, ops, score, scope, of, keys, summary, prov) POLICY_SCOPE_OF_##of,
    POLICY_MAP(POLICY_OF)
#undef POLICY_OF
};

#define POLICY_N ((int)(sizeof policy_info_table / sizeof policy_info_table[0]))

/* --- registry -------------------------------------------------------------------- */

int policy_count(void) { return POLICY_N; }
const policy_info *policy_list(void) { return policy_info_table; }

const policy_info *policy_find(const char *name)
{
    for (int i = 0; name && i < POLICY_N; i++)
        if (strcmp(policy_info_table[i].name, name) == 0)
            return &policy_info_table[i];
    return NULL;
}

const char *policy_names(char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < POLICY_N && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                                 policy_info_table[i].name);
    return buf;
}

policy_scope_of policy_config_scope_of(const policy_config *cfg)
{
    if (cfg->scope_of != POLICY_SCOPE_OF_PRESET)
        return cfg->scope_of;
    const policy_info *info = policy_find(cfg->name);
    return info ? policy_scope_of_table[info - policy_info_table] : POLICY_SCOPE_OF_KV_HEAD;
}

/* --- budgets --------------------------------------------------------------------- */

int policy_budget_parse(const char *text, policy_budget *out, char *err, size_t errlen)
{
    if (!text || !*text)
        return policy__fail(err, errlen, "empty budget: expected a fraction like 0.4 or an entry count like 512");
    char *end = NULL;
    memset(out, 0, sizeof *out);
    if (strpbrk(text, "eEiInN"))   /* 1e2, inf, nan: say which form is meant */
        return policy__fail(err, errlen, "budget '%s': write a fraction with a decimal point "
                            "(0.4) or a whole entry count (512), without exponents", text);
    if (strchr(text, '.')) {
        double f = strtod(text, &end);
        if (*end || end == text)
            return policy__fail(err, errlen, "budget '%s' is not a number", text);
        if (f <= 0)
            return policy__fail(err, errlen, "budget '%s' must be > 0", text);
        if (f > 1)
            return policy__fail(err, errlen, "budget '%s' is a fraction of the sequence (it "
                                "has a decimal point) and must be in (0, 1]; write a whole "
                                "number for an entry count", text);
        out->is_fraction = 1;
        out->fraction = f;
        return 0;
    }
    long v = strtol(text, &end, 10);
    if (*end || end == text)
        return policy__fail(err, errlen, "budget '%s' is not a number: expected 0.4 (fraction) or 512 (entries)", text);
    if (v <= 0)
        return policy__fail(err, errlen, "budget '%s' must be >= 1 entry", text);
    out->entries = v;
    return 0;
}

int policy_budget_resolve(const policy_budget *b, int T)
{
    double v = b->is_fraction ? floor(b->fraction * T) : (double)b->entries;
    if (v < 1)
        v = 1;
    return v > T ? T : (int)v;
}

/* Geometric layer schedule: B_l = floor(B · L · d^l / Σ_j d^j), at least 1, so the
 * mean over layers is B (up to flooring) and only the shape changes. */
static int layer_budget(const policy_config *cfg)
{
    if (cfg->budget <= 0 || cfg->layer_decay == 1.0 || cfg->n_layers <= 1)
        return cfg->budget;
    double total = 0;
    for (int j = 0; j < cfg->n_layers; j++)
        total += pow(cfg->layer_decay, j);
    double b = floor(cfg->budget * (double)cfg->n_layers * pow(cfg->layer_decay, cfg->layer) / total);
    return b < 1 ? 1 : b > INT_MAX / 2 ? INT_MAX / 2 : (int)b;
}

/* Length-adaptive limits: nothing is evicted up to `soft` tokens seen; from `hard`
 * on, B holds; in between B_t = floor(soft + (B - soft)·(seen - soft)/(hard - soft)),
 * linear from soft to B. */
static int budget_now(const policy *p)
{
    const policy_config *c = &p->cfg;
    if (p->budget == POLICY_BUDGET_UNLIMITED || c->hard_limit == 0)
        return p->budget;
    if (p->seen <= c->soft_limit)
        return POLICY_BUDGET_UNLIMITED;
    if (p->seen >= c->hard_limit)
        return p->budget;
    double done = (double)(p->seen - c->soft_limit) / (c->hard_limit - c->soft_limit);
    double b = floor(c->soft_limit + (p->budget - c->soft_limit) * done);
    return b < 1 ? 1 : (int)b;
}

/* --- lifecycle ------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t policy_rand_u64(policy *p) { return splitmix64(&p->rng); }

static int reserve(policy *p, int capacity)
{
    if (capacity <= p->capacity)
        return 0;
    int cap = p->capacity ? p->capacity : 16;
    while (cap < capacity)
        cap *= 2;
    policy_entry *e = realloc(p->entries, (size_t)cap * sizeof *e);
    if (!e)
        return -1;
    p->entries = e;
    float *r = realloc(p->reduced, (size_t)cap * sizeof *r);
    if (!r)
        return -1;
    p->reduced = r;
    policy_rank *k = realloc(p->rank, (size_t)cap * sizeof *k);
    if (!k)
        return -1;
    p->rank = k;
    float *v = realloc(p->values, (size_t)cap * sizeof *v);
    if (!v)
        return -1;
    p->values = v;
    if (p->ops->reserve && p->ops->reserve(p, cap) != 0)
        return -1;
    p->capacity = cap;
    return 0;
}

static int in_list(const char *list, const char *key)
{
    size_t len = strlen(key);
    for (const char *s = list; *s;) {
        size_t n = strcspn(s, " ");
        if (n == len && strncmp(s, key, n) == 0)
            return 1;
        s += n + (s[n] == ' ');
    }
    return 0;
}

static int reads_param(const policy_ops *ops, const policy_info *info,
                       const policy_config *cfg, const char *key)
{
    return ops->uses ? ops->uses(cfg, key) : in_list(info->params, key);
}

/* Parameters set explicitly must be read by the policy: `--recovery 0.9` on h2o is an
 * error, not a silent no-op. */
static int check_uses(const policy *p, char *err, size_t errlen)
{
    for (int i = 0; i < policy_param_count(); i++) {
        if (!(p->cfg.set & (1ull << i)) || policy__param_is_common(i))
            continue;
        const char *key = policy_param_list()[i].key;
        int used = reads_param(p->ops, p->info, &p->cfg, key);
        if (!used)
            return policy__fail(err, errlen, "parameter '%s' does not apply to policy '%s'; "
                                "its parameters: %s (and budget stride phase gqa scope-of "
                                "seed layer-decay soft-limit hard-limit)", key, p->info->name,
                                p->info->params[0] ? p->info->params : "none");
    }
    return 0;
}

/* The registry's defaults for what the config leaves to the preset. */
static int apply_preset(policy_config *cfg, const policy_info *info, char *err, size_t errlen)
{
    if (cfg->score == POLICY_SCORE_PRESET)
        cfg->score = policy__score_from_name(info->score);
    if (cfg->scope == POLICY_SCOPE_PRESET && info->scope[0])
        if (policy__scope_parse(info->scope, &cfg->scope, err, errlen) != 0)
            return -1;
    cfg->scope_of = policy_config_scope_of(cfg);
    return 0;
}

int policy_config_drop_unused(policy_config *cfg, char *dropped, size_t len)
{
    const policy_info *info = policy_find(cfg->name);
    policy_config c = *cfg;
    char why[256];
    int n = 0;
    if (dropped && len)
        dropped[0] = '\0';
    if (!info || apply_preset(&c, info, why, sizeof why) != 0)
        return 0;
    for (int i = 0; i < policy_param_count(); i++) {
        const char *key = policy_param_list()[i].key;
        if (!(cfg->set & (1ull << i)) || policy__param_is_common(i) ||
            reads_param(policy_ops_table[info - policy_info_table], info, &c, key))
            continue;
        cfg->set &= ~(1ull << i);
        if (dropped && strlen(dropped) + strlen(key) + 2 <= len)
            strcat(strcat(dropped, n ? " " : ""), key);
        n++;
    }
    return n;
}

static int check_config(const policy_config *c, char *err, size_t errlen)
{
    if (c->budget == POLICY_BUDGET_UNRESOLVED)
        return policy__fail(err, errlen, "policy '%s': budget %g is a fraction; resolve it "
                            "against the sequence length first (policy_config_resolve)",
                            c->name, c->budget_arg.fraction);
    if (c->budget < 0 || c->stride < 1)
        return policy__fail(err, errlen, "policy '%s': budget %d and stride %d must be >= 0 and >= 1",
                            c->name, c->budget, c->stride);
    if ((c->soft_limit || c->hard_limit) && c->soft_limit >= c->hard_limit)
        return policy__fail(err, errlen, "soft-limit %d must be below hard-limit %d",
                            c->soft_limit, c->hard_limit);
    return 0;
}

static policy *fail_free(policy *p)
{
    policy_free(p);
    return NULL;
}

policy *policy_new(const policy_config *cfg, char *err, size_t errlen)
{
    char names[512];
    const policy_info *info = cfg ? policy_find(cfg->name) : NULL;
    if (!info) {
        policy__fail(err, errlen, "unknown policy '%s'; valid policies: %s",
                     cfg && cfg->name ? cfg->name : "(none)", policy_names(names, sizeof names));
        return NULL;
    }
    policy *p = calloc(1, sizeof *p);
    if (!p) {
        policy__fail(err, errlen, "out of memory");
        return NULL;
    }
    p->info = info;
    p->ops = policy_ops_table[info - policy_info_table];
    p->cfg = *cfg;
    p->cfg.name = info->name;
    if (policy__config_apply_params(&p->cfg, err, errlen) != 0 ||
        apply_preset(&p->cfg, info, err, errlen) != 0 ||
        check_config(&p->cfg, err, errlen) != 0 || check_uses(p, err, errlen) != 0)
        return fail_free(p);
    p->budget = layer_budget(&p->cfg);
    p->rng = p->cfg.seed ^ (p->cfg.stream_id * 0xd1b54a32d192ed03ull);
    if (p->ops->init && p->ops->init(p, err, errlen) != 0)
        return fail_free(p);
    int hint = cfg->capacity_hint > 0 ? cfg->capacity_hint : p->budget + p->cfg.stride;
    if (reserve(p, hint > 0 ? hint : 16) != 0) {
        policy__fail(err, errlen, "out of memory reserving %d entries", hint);
        return fail_free(p);
    }
    return p;
}

void policy_free(policy *p)
{
    if (!p)
        return;
    if (p->ops->destroy)
        p->ops->destroy(p);
    free(p->entries);
    free(p->reduced);
    free(p->rank);
    free(p->values);
    free(p);
}

/* --- the step -------------------------------------------------------------------- */

int policy_append(policy *p, const policy_entry *entry)
{
    if (reserve(p, p->n + 1) != 0)
        return -1;
    p->entries[p->n] = *entry;
    p->n++;
    p->seen++;
    if (p->ops->append)
        p->ops->append(p, p->n - 1);
    return 0;
}

static void reduce_rows(policy *p, const float *rows, int n_rows, float *out)
{
    int n = p->n;
    memcpy(out, rows, (size_t)n * sizeof *out);
    for (int g = 1; g < n_rows; g++) {
        const float *row = rows + (size_t)g * n;
        if (p->cfg.gqa == POLICY_GQA_MAX)
            for (int i = 0; i < n; i++)
                out[i] = row[i] > out[i] ? row[i] : out[i];
        else
            for (int i = 0; i < n; i++)
                out[i] += row[i];
    }
    if (p->cfg.gqa == POLICY_GQA_MEAN && n_rows > 1)
        for (int i = 0; i < n; i++)
            out[i] /= (float)n_rows;
}

void policy_observe(policy *p, const float *rows, int n_rows)
{
    if (!p->ops->observe || n_rows < 1)
        return;
    if (n_rows == 1) {
        p->ops->observe(p, rows, p->n);
        return;
    }
    reduce_rows(p, rows, n_rows, p->reduced);
    p->ops->observe(p, p->reduced, p->n);
}

int policy_due(const policy *p)
{
    if (p->ops->never_evicts)
        return 0;
    int counted = p->n - p->n_pinned;
    if (p->cfg.phase == POLICY_PHASE_ONESHOT && (!p->prompt_ended || p->oneshot_done))
        return 0;
    if (p->cfg.phase == POLICY_PHASE_DECODE && !p->prompt_ended)
        return 0;   /* the prompt will be pinned; nothing streams before it ends */
    int budget = budget_now(p);
    if (p->ops->due)
        return p->ops->due(p, counted, budget);
    if (budget == POLICY_BUDGET_UNLIMITED || counted <= budget)
        return 0;
    if (p->cfg.phase == POLICY_PHASE_ONESHOT)
        return counted - budget;
    return counted >= budget + p->cfg.stride ? counted - budget : 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int policy_evict(policy *p, int k, int *slots)
{
    int evictable = p->n - p->n_pinned;
    if (k > evictable)
        k = evictable;
    if (k <= 0)
        return 0;
    k = p->ops->choose(p, k, slots);
    if (k <= 0)
        return 0;
    qsort(slots, (size_t)k, sizeof *slots, cmp_int);
    if (p->ops->remove)
        p->ops->remove(p, slots, k);
    policy_compact(p->entries, sizeof *p->entries, p->n, slots, k);
    p->n -= k;
    if (p->cfg.phase == POLICY_PHASE_ONESHOT && p->prompt_ended)
        p->oneshot_done = 1;
    p->future = NULL;
    return k;
}

void policy_end_prompt(policy *p)
{
    p->prompt_ended = 1;
    if (p->cfg.phase == POLICY_PHASE_DECODE)
        p->n_pinned = p->n;
    if (p->ops->end_prompt)
        p->ops->end_prompt(p);
}

void policy_set_future(policy *p, const float *future) { p->future = future; }
int  policy_needs_future(const policy *p) { return p->cfg.score == POLICY_SCORE_ORACLE; }

int policy_scores(const policy *p, float *out)
{
    return p->ops->scores ? p->ops->scores(p, out) : -1;
}

int policy_size(const policy *p) { return p->n; }
int policy_budget_of(const policy *p) { return p->budget; }
const policy_entry *policy_entries(const policy *p) { return p->entries; }
const policy_config *policy_config_of(const policy *p) { return &p->cfg; }
const char *policy_name(const policy *p) { return p->info->name; }

/* --- helpers --------------------------------------------------------------------- */

void policy_compact(void *array, size_t elem_size, int n, const int *slots, int k)
{
    /* Move each run of survivors between two removed slots down in one memmove. */
    char *a = array;
    int write = slots[0];
    for (int j = 0; j < k; j++) {
        int from = slots[j] + 1, to = j + 1 < k ? slots[j + 1] : n;
        if (to > from)
            memmove(a + (size_t)write * elem_size, a + (size_t)from * elem_size,
                    (size_t)(to - from) * elem_size);
        write += to - from;
    }
}

int policy_window_entries(const policy_config *cfg, int budget)
{
    if (cfg->window >= 0)
        return cfg->window;
    return budget > 0 ? (int)floor(cfg->window_frac * budget) : 0;
}

int policy__window_size(const policy *p) { return policy_window_entries(&p->cfg, p->budget); }

/* Is a a better eviction victim than b?  Lower score, then older, then lower member. */
static int rank_before(const policy_rank *a, const policy_rank *b)
{
    if (a->score != b->score)
        return a->score < b->score;
    if (a->position != b->position)
        return a->position < b->position;
    return a->member < b->member;
}

static int rank_cmp(const void *a, const void *b)
{
    return rank_before(a, b) ? -1 : rank_before(b, a) ? 1 : 0;
}

static void rank_swap(policy_rank *a, policy_rank *b)
{
    policy_rank t = *a;
    *a = *b;
    *b = t;
}

/* Lomuto partition around the median of three; returns the pivot's final index. */
static int partition(policy_rank *it, int lo, int hi)
{
    int mid = lo + (hi - lo) / 2;
    if (rank_before(&it[mid], &it[lo]))
        rank_swap(&it[mid], &it[lo]);
    if (rank_before(&it[hi], &it[lo]))
        rank_swap(&it[hi], &it[lo]);
    if (rank_before(&it[mid], &it[hi]))
        rank_swap(&it[mid], &it[hi]);   /* the median now sits at hi */
    int store = lo;
    for (int i = lo; i < hi; i++)
        if (rank_before(&it[i], &it[hi]))
            rank_swap(&it[i], &it[store++]);
    rank_swap(&it[store], &it[hi]);
    return store;
}

void policy__select_lowest(policy_rank *items, int n, int k)
{
    if (k <= 0 || n <= 0)
        return;
    if (k < n) {
        int lo = 0, hi = n - 1;
        while (lo < hi) {
            int m = partition(items, lo, hi);
            if (m == k - 1 || m == k)
                break;
            if (m < k)
                lo = m + 1;
            else
                hi = m - 1;
        }
    }
    qsort(items, (size_t)(k < n ? k : n), sizeof *items, rank_cmp);
}

/* The value at index k of v[0..n) if it were sorted (Hoare quickselect; v is
 * reordered). */
static float kth_smallest(float *v, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return v[k];
}

void policy__protect_top(const policy *p, const float *value, unsigned char *cand, int want)
{
    int open = 0;
    for (int i = p->n_pinned; i < p->n; i++)
        if (cand[i])
            p->values[open++] = value[i];
    if (want <= 0 || open == 0)
        return;
    /* thr = the smallest protected value; ties at thr protect the newest first */
    float thr = want >= open ? -INFINITY : kth_smallest(p->values, open, open - want);
    int above = 0;
    for (int i = p->n_pinned; i < p->n; i++)
        above += cand[i] && value[i] > thr;
    int ties = want - above;
    for (int i = p->n - 1; i >= p->n_pinned; i--) {
        if (!cand[i])
            continue;
        if (value[i] > thr)
            cand[i] = 0;
        else if (value[i] == thr && ties > 0)
            cand[i] = 0, ties--;
    }
}

/* The k <= PICK_SMALL lowest in one pass, kept sorted by insertion: the common case
 * (token- and block-wise strides) without touching the rank scratch. */
#define PICK_SMALL 16

static int pick_small(const policy *p, const float *score, const unsigned char *evictable,
                      int k, int *out)
{
    policy_rank best[PICK_SMALL];
    int m = 0;
    for (int i = p->n_pinned; i < p->n; i++) {
        if ((evictable && !evictable[i]) || (m == k && score[i] > best[k - 1].score))
            continue;
        policy_rank r = {score[i], p->entries[i].position, 0, i};
        if (m == k && !rank_before(&r, &best[k - 1]))
            continue;
        int j = m < k ? m++ : k - 1;
        for (; j > 0 && rank_before(&r, &best[j - 1]); j--)
            best[j] = best[j - 1];
        best[j] = r;
    }
    for (int j = 0; j < m; j++)
        out[j] = best[j].slot;
    return m;
}

int policy_pick_lowest(const policy *p, const float *score, const unsigned char *evictable,
                       int k, int *out)
{
    if (k <= 0)
        return 0;
    if (k <= PICK_SMALL)
        return pick_small(p, score, evictable, k, out);
    int m = 0;
    for (int i = p->n_pinned; i < p->n; i++)
        if (!evictable || evictable[i])
            p->rank[m++] = (policy_rank){score[i], p->entries[i].position, 0, i};
    if (k > m)
        k = m;
    policy__select_lowest(p->rank, m, k);
    for (int i = 0; i < k; i++)
        out[i] = p->rank[i].slot;
    return k;
}
