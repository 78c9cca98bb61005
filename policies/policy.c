/*
 * policy.c — the base object every policy shares: budgets and their schedules, slots
 * and their per-slot arrays, the per-stream primitives of the step (policy_layer.c
 * puts them in order), GQA reduction, the tie rule and the random generator.  See
 * policy.h for the invariants and docs/POLICIES.md for every rule.
 */
#include "policy_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- budgets --------------------------------------------------------------------- */

/* Geometric layer schedule: B_l = floor(B · L · d^l / Σ_j d^j), at least 1, so the
 * mean over layers is B (up to flooring) and only the shape changes. */
static int layer_budget(const policy *p)
{
    const policy_config *c = &p->cfg;
    if (c->n_layer_budgets > 0 && p->layer < c->n_layer_budgets) {   /* checked in new */
        const double b = c->layer_budgets[p->layer];
        const policy_budget own = {b < 0, -b, b > 0 ? (long)b : 0};
        return policy_budget_resolve(&own, c->resolved_len > 0 ? c->resolved_len : INT_MAX / 2);
    }
    if (c->budget <= 0 || c->layer_decay == 1.0 || p->n_layers <= 1)
        return c->budget;
    double total = 0;
    for (int j = 0; j < p->n_layers; j++)
        total += pow(c->layer_decay, j);
    double b = floor(c->budget * (double)p->n_layers * pow(c->layer_decay, p->layer) / total);
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

/* Column i's pointer field in the state. */
static void **column_field(const policy *p, int i)
{
    return (void **)((char *)p->state + p->columns[i].offset);
}

static int grow(void **ptr, size_t size)
{
    void *q = realloc(*ptr, size ? size : 1);
    if (!q)
        return -1;
    *ptr = q;
    return 0;
}

static int reserve(policy *p, int capacity)
{
    if (capacity <= p->capacity)
        return 0;
    int cap = p->capacity ? p->capacity : 16;
    while (cap < capacity)
        cap *= 2;
    const size_t n = (size_t)cap;
    if (grow((void **)&p->entries, n * sizeof *p->entries) ||
        grow((void **)&p->reduced, n * sizeof *p->reduced) ||
        grow((void **)&p->rank, n * sizeof *p->rank) ||
        grow((void **)&p->values, n * sizeof *p->values) ||
        grow((void **)&p->mask, n * sizeof *p->mask))
        return -1;
    for (int i = 0; i < p->n_columns; i++)
        if (grow(column_field(p, i), n * p->columns[i].size))
            return -1;
    p->capacity = cap;
    return 0;
}

int policy_add_column(policy *p, size_t offset, size_t size, int scratch, kv_err *err)
{
    if (p->n_columns == POLICY_COLUMNS_MAX)
        return kv_errorf(err, KV_EUSAGE, "policy '%s': more than %d columns", p->def->name,
                         POLICY_COLUMNS_MAX);
    p->columns[p->n_columns++] = (policy_column){offset, size, scratch};
    if (p->capacity && grow(column_field(p, p->n_columns - 1), (size_t)p->capacity * size))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    return KV_OK;
}

/* The columns of def's chain, the root's first. */
static int add_declared_columns(policy *p, kv_err *err)
{
    const policy_def *chain[POLICY_BASES_MAX];
    const int n = policy__chain(p->def, chain);
    for (int i = 0; i < n; i++)
        for (const policy_column *c = chain[i]->columns; c && c->size; c++)
            if (policy_add_column(p, c->offset, c->size, c->scratch, err) != KV_OK)
                return KV_EUSAGE;
    return KV_OK;
}

static int check_config(const policy_config *c, kv_err *err)
{
    if (c->budget == POLICY_BUDGET_UNRESOLVED)
        return kv_errorf(err, KV_EUSAGE, "policy '%s': budget %g is a fraction; resolve it "
                         "against the sequence length first (policy_config_resolve)",
                         c->name, c->budget_arg.fraction);
    if (c->budget < 0 || c->stride < 1)
        return kv_errorf(err, KV_EUSAGE, "policy '%s': budget %d and stride %d must be >= 0 "
                         "and >= 1", c->name, c->budget, c->stride);
    if ((c->soft_limit || c->hard_limit) && c->soft_limit >= c->hard_limit)
        return kv_errorf(err, KV_EUSAGE, "soft-limit %d must be below hard-limit %d",
                         c->soft_limit, c->hard_limit);
    return KV_OK;
}

/* Parameters set explicitly must be read: `--recovery 0.9` on h2o is an error, not a
 * silent no-op. */
static int check_reads(const policy *p, kv_err *err)
{
    for (int i = 0; i < p->cfg.n_own; i++) {
        const char *key = p->cfg.own[i].key;
        if (policy__reads(p->def, p, key))
            continue;
        char list[512];
        policy_params_of(p->def, &p->cfg, list, sizeof list);
        return kv_errorf(err, KV_EUSAGE, "parameter '%s' does not apply to policy '%s' as "
                         "configured; its parameters: %s (and the common ones: kvsim "
                         "policies)", key, p->def->name, list[0] ? list : "none");
    }
    return KV_OK;
}

static policy *fail_free(policy *p)
{
    policy__free(p);
    return NULL;
}

/* The layer's RoPE, its frequencies copied (the shape's are borrowed).  0 or -1. */
static int copy_rope(policy *p, const policy_rope *rope)
{
    if (!rope || !rope->freq || rope->n_rot < 2)
        return 0;
    float *f = malloc((size_t)(rope->n_rot / 2) * sizeof *f);
    if (!f)
        return -1;
    memcpy(f, rope->freq, (size_t)(rope->n_rot / 2) * sizeof *f);
    p->rope = (policy_rope){f, rope->n_rot, rope->halves};
    return 0;
}

policy *policy__new(const policy_config *cfg, int layer, int n_layers, uint64_t stream_id,
                    int capacity_hint, const policy_rope *rope, kv_err *err)
{
    char names[512];
    const policy_def *def = cfg ? policy_find(cfg->name) : NULL;
    if (!def) {
        kv_errorf(err, KV_EUSAGE, "unknown policy '%s'; valid policies: %s",
                  cfg && cfg->name ? cfg->name : "(none)", policy_names(names, sizeof names));
        return NULL;
    }
    policy *p = calloc(1, sizeof *p);
    if (!p || !(p->state = calloc(1, def->state_size ? def->state_size : 1))) {
        free(p);
        kv_errorf(err, KV_ENOMEM, "out of memory");
        return NULL;
    }
    p->def = def;
    p->cfg = *cfg;
    p->cfg.name = def->name;
    p->cfg.scope_of = policy_config_scope_of(cfg);
    p->flags = def->flags | (def->ops.plan ? POLICY_PLANS_LAYER : 0) |
               (def->ops.due ? POLICY_DECIDES_DUE : 0);
    p->layer = layer;
    p->n_layers = n_layers;
    if (copy_rope(p, rope) != 0) {
        kv_errorf(err, KV_ENOMEM, "out of memory");
        return fail_free(p);
    }
    const int nominal = p->cfg.budget_arg.is_fraction || p->cfg.budget_arg.entries > 0;
    if (p->cfg.n_layer_budgets > 0 &&
        (layer >= p->cfg.n_layer_budgets || !nominal || p->cfg.layer_decay != 1.0)) {
        kv_errorf(err, KV_EUSAGE, "layer-budgets lists %d layers: layer %d has none, or "
                  "--budget (the nominal B) is missing, or layer-decay is set too",
                  p->cfg.n_layer_budgets, layer);
        return fail_free(p);
    }
    if (check_config(&p->cfg, err) || policy__fill_params(def, &p->cfg, p->state, err) ||
        check_reads(p, err) || add_declared_columns(p, err))
        return fail_free(p);
    p->budget = layer_budget(p);
    if (p->cfg.decode_interval > 0 &&
        (p->cfg.decode_budget < 1 || p->cfg.prompt_len <= 0 ||
         (p->flags & (POLICY_DECIDES_DUE | POLICY_SIZES_ITSELF | POLICY_PLANS_LAYER)))) {
        kv_errorf(err, KV_EUSAGE, "policy '%s': decode-interval needs decode-budget >= 1, the "
                  "prompt length, and a policy that evicts by the budget rule", def->name);
        return fail_free(p);
    }
    p->rng = p->cfg.seed ^ (stream_id * 0xd1b54a32d192ed03ull);
    if (def->ops.init && def->ops.init(p, err) != KV_OK)
        return fail_free(p);
    int hint = capacity_hint > 0 ? capacity_hint : p->budget + p->cfg.stride;
    if (reserve(p, hint > 0 ? hint : 16) != 0) {
        kv_errorf(err, KV_ENOMEM, "out of memory reserving %d entries", hint);
        return fail_free(p);
    }
    return p;
}

void policy__free(policy *p)
{
    if (!p)
        return;
    if (p->def->ops.destroy)
        p->def->ops.destroy(p);
    for (int i = 0; i < p->n_columns; i++)
        free(*column_field(p, i));
    free(p->entries);
    free(p->reduced);
    free(p->rank);
    free(p->values);
    free(p->mask);
    free((float *)p->rope.freq);
    free(p->state);
    free(p);
}

/* --- the primitives of the step ---------------------------------------------------- */

int policy__append(policy *p, const policy_entry *e, const policy_vectors *v)
{
    if (reserve(p, p->n + 1) != 0)
        return KV_ENOMEM;
    p->entries[p->n] = *e;
    p->n++;
    p->seen++;
    if (p->def->ops.append)
        p->def->ops.append(p, p->n - 1, v);
    return KV_OK;
}

static void reduce_rows(policy *p, const float *rows, int n_rows, float *out)
{
    int n = p->n;
    memcpy(out, rows, (size_t)n * sizeof *out);
    for (int g = 1; g < n_rows; g++) {
        const float *row = rows + (size_t)g * n;
        /* omp simd: out never overlaps rows, and each entry's result is the same */
        if (p->cfg.gqa == POLICY_GQA_MAX)
#pragma omp simd
            for (int i = 0; i < n; i++)
                out[i] = row[i] > out[i] ? row[i] : out[i];
        else
#pragma omp simd
            for (int i = 0; i < n; i++)
                out[i] += row[i];
    }
    if (p->cfg.gqa == POLICY_GQA_MEAN && n_rows > 1)
#pragma omp simd
        for (int i = 0; i < n; i++)
            out[i] /= (float)n_rows;
}

void policy__observe(policy *p, const float *rows, int n_rows)
{
    if (!p->def->ops.observe || n_rows < 1)
        return;
    if (n_rows == 1) {
        p->def->ops.observe(p, rows, p->n);
        return;
    }
    reduce_rows(p, rows, n_rows, p->reduced);
    p->def->ops.observe(p, p->reduced, p->n);
}

void policy__end_prompt(policy *p)
{
    p->prompt_ended = 1;
    if (p->cfg.phase == POLICY_PHASE_DECODE)
        p->n_pinned = p->n;
    if (p->def->ops.end_prompt)
        p->def->ops.end_prompt(p);
}

/* kvpress's DecodingPress: at generated tokens N, 2N, ... the cache goes back to the
 * decode budget (the prompt's own rule, or the oneshot compression, came before). */
static int decode_due(const policy *p, int counted)
{
    const policy_config *c = &p->cfg;
    const int g = p->seen - c->prompt_len;
    return g % c->decode_interval == 0 && counted > c->decode_budget
               ? counted - c->decode_budget : 0;
}

int policy__due(const policy *p)
{
    if (p->flags & POLICY_NEVER_EVICTS)
        return 0;
    int counted = p->n - p->n_pinned;
    if (p->cfg.decode_interval > 0 && p->prompt_ended && p->seen > p->cfg.prompt_len)
        return decode_due(p, counted);
    if (p->cfg.phase == POLICY_PHASE_ONESHOT && (!p->prompt_ended || p->oneshot_done))
        return 0;
    if (p->cfg.phase == POLICY_PHASE_DECODE && !p->prompt_ended)
        return 0;   /* the prompt will be pinned; nothing streams before it ends */
    int budget = budget_now(p);
    if (p->def->ops.due)
        return p->def->ops.due(p, counted, budget);
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

int policy__evict(policy *p, int k, const float *future, int *slots)
{
    int evictable = p->n - p->n_pinned;
    if (k > evictable)
        k = evictable;
    if (k <= 0)
        return 0;
    p->future = future;
    k = p->def->ops.choose(p, k, slots);
    p->future = NULL;
    if (k <= 0)
        return 0;
    qsort(slots, (size_t)k, sizeof *slots, cmp_int);
    for (int i = 0; i < p->n_columns; i++)
        if (!p->columns[i].scratch)
            policy_compact(*column_field(p, i), p->columns[i].size, p->n, slots, k);
    policy_compact(p->entries, sizeof *p->entries, p->n, slots, k);
    p->n -= k;
    if (p->cfg.phase == POLICY_PHASE_ONESHOT && p->prompt_ended)
        p->oneshot_done = 1;
    return k;
}

int policy__truncate(policy *p, int32_t pos)
{
    const int n = p->n;
    while (p->n > p->n_pinned && p->entries[p->n - 1].position >= pos)
        p->n--;   /* the suffix: every per-slot array is simply shorter */
    p->seen = pos < p->seen ? pos : p->seen;
    return n - p->n;
}

int policy__expire(policy *p, int32_t oldest, int *slots)
{
    int k = 0;
    while (k < p->n && p->entries[k].position < oldest) {
        slots[k] = k;
        k++;
    }
    if (k == 0)
        return 0;
    for (int i = 0; i < p->n_columns; i++)
        if (!p->columns[i].scratch)
            policy_compact(*column_field(p, i), p->columns[i].size, p->n, slots, k);
    policy_compact(p->entries, sizeof *p->entries, p->n, slots, k);
    p->n -= k;
    p->n_pinned = p->n_pinned > k ? p->n_pinned - k : 0;
    return k;
}

int policy__quiet(const policy *p)
{
    const policy_config *c = &p->cfg;
    if (p->flags & POLICY_NEVER_EVICTS)
        return INT_MAX;
    if (!p->prompt_ended && c->phase != POLICY_PHASE_STREAM) {
        int left = c->prompt_len - p->seen - 1;   /* joins before the last prompt token */
        return left > 0 ? left : 0;
    }
    if ((p->flags & POLICY_SIZES_ITSELF) && p->prompt_ended)
        return 0;   /* its own rule may evict at any step */
    if (c->decode_interval > 0 && p->prompt_ended)   /* the next multiple of N */
        return c->decode_interval - 1 - (p->seen - c->prompt_len) % c->decode_interval;
    int B = p->budget;
    if (B <= 0)
        return INT_MAX;   /* unlimited (knorm's skipped layers) */
    if (c->hard_limit > 0 && c->soft_limit < B)
        B = c->soft_limit > 0 ? c->soft_limit : 1;   /* B_t may dip below B */
    int quiet = B - (p->n - p->n_pinned);
    return quiet > 0 ? quiet : 0;
}

int policy__capacity(const policy *p)
{
    if ((p->flags & (POLICY_NEVER_EVICTS | POLICY_SIZES_ITSELF)) || p->cfg.decode_interval ||
        p->budget <= 0 || p->cfg.phase != POLICY_PHASE_STREAM)
        return 0;
    /* length-adaptive limits: the cache reaches soft-limit entries before B holds */
    const int most = p->cfg.hard_limit > 0 && p->cfg.soft_limit > p->budget ? p->cfg.soft_limit
                                                                            : p->budget;
    return most + p->cfg.stride;
}

/* --- queries and what ops may do ---------------------------------------------------- */

int policy_size(const policy *p) { return p->n; }
int policy_budget_of(const policy *p) { return p->budget; }
const policy_entry *policy_entries(const policy *p) { return p->entries; }
const policy_config *policy_config_of(const policy *p) { return &p->cfg; }
unsigned policy_flags(const policy *p) { return p->flags; }
void *policy_state(const policy *p) { return p->state; }
int policy_pinned(const policy *p) { return p->n_pinned; }
int policy_seen(const policy *p) { return p->seen; }
int policy_prompt_ended(const policy *p) { return p->prompt_ended; }
int policy_layer_number(const policy *p) { return p->layer; }
int policy_model_layers(const policy *p) { return p->n_layers; }
const policy_def *policy_def_of(const policy *p) { return p->def; }
const float *policy_future(const policy *p) { return p->future; }
const policy_rope *policy_rope_of(const policy *p) { return &p->rope; }

/* The forward pass turned pair (a, b) into (a·c − b·s, a·s + b·c) with c, s the float
 * cos and sin of the float angle; the transpose turns it back. */
void policy_rope_unrotate(const policy_rope *r, float *x, int position)
{
    const int pair = r->halves ? 1 : 2, partner = r->halves ? r->n_rot / 2 : 1;
    for (int i = 0; r->freq && i < r->n_rot / 2; i++) {
        const float angle = (float)position * r->freq[i];
        const float c = cosf(angle), s = sinf(angle);
        const float a = x[i * pair], b = x[i * pair + partner];
        x[i * pair] = a * c + b * s;
        x[i * pair + partner] = b * c - a * s;
    }
}
void policy_add_flags(policy *p, unsigned flags) { p->flags |= flags; }
void policy_set_budget(policy *p, int budget) { p->budget = budget; }
policy_config *policy_config_edit(policy *p) { return &p->cfg; }

int policy_scores(const policy *p, float *out)
{
    return p->def->ops.scores ? p->def->ops.scores(p, out) : -1;
}

int policy_rules_of(const policy *p, policy_rules *out)
{
    return p->def->ops.rules ? p->def->ops.rules(p, out) : -1;
}

const char *policy_describe(const policy *p, char *buf, size_t len)
{
    if (len)
        buf[0] = '\0';
    if (p->def->ops.describe && len)
        p->def->ops.describe(p, buf, len);
    return buf;
}

/* --- vectors --------------------------------------------------------------------- */

static float mean_norm(const float *x, const policy_vectors *v, int p_norm)
{
    if (!x || v->n < 1)
        return NAN;
    double sum = 0;
    for (int i = 0; i < v->n; i++) {
        const float *vec = x + (size_t)i * v->stride;
        double s = 0;
        for (int d = 0; d < v->dim; d++)
            s += p_norm == 1 ? fabs((double)vec[d]) : (double)vec[d] * vec[d];
        sum += (double)(float)(p_norm == 1 ? s : sqrt(s));
    }
    return (float)(sum / v->n);
}

float policy_key_norm(const policy_vectors *v) { return v ? mean_norm(v->key, v, 2) : NAN; }

float policy_value_norm(const policy_vectors *v, int p)
{
    return v ? mean_norm(v->value, v, p == 1 ? 1 : 2) : NAN;
}

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

void policy_select_lowest(policy_rank *items, int n, int k)
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

void policy_protect_top(const policy *p, const float *value, unsigned char *cand, int want)
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

void policy_protect_newest(const policy *p, unsigned char *cand, int want, int *room)
{
    for (int i = p->n - 1; i >= p->n_pinned && want > 0 && *room > 0; i--)
        if (cand[i]) {
            cand[i] = 0;
            want--, (*room)--;
        }
}

int policy_pick_outside(policy *p, const float *score, int sinks, int window, int k,
                        int *out)
{
    int room = p->n - p->n_pinned - k;
    memset(p->mask, 0, (size_t)p->n_pinned);
    memset(p->mask + p->n_pinned, 1, (size_t)(p->n - p->n_pinned));
    for (int i = p->n_pinned; i < p->n && room > 0 && p->entries[i].position < sinks; i++)
        p->mask[i] = 0, room--;
    policy_protect_newest(p, p->mask, window, &room);
    return policy_pick_lowest(p, score, p->mask, k, out);
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

/* k = 1, the usual stride: the least score's first slot (the oldest of tied ones, as
 * rank_before orders them), in two passes the compiler vectorises, where pick_small's
 * insertion branches on every slot.  A NaN score among the candidates takes
 * pick_small's path, whose answer then depends on where it stands. */
static int pick_least(const policy *p, const float *score, const unsigned char *evictable,
                      int *out)
{
    float least = INFINITY;
    int nan = 0;
#pragma omp simd reduction(min : least) reduction(| : nan)
    for (int i = p->n_pinned; i < p->n; i++) {
        const int can = !evictable || evictable[i];
        least = can && score[i] < least ? score[i] : least;
        nan |= can && score[i] != score[i];
    }
    if (nan)
        return pick_small(p, score, evictable, 1, out);
    int first = p->n;
#pragma omp simd reduction(min : first)
    for (int i = p->n_pinned; i < p->n; i++)
        first = (!evictable || evictable[i]) && score[i] == least && i < first ? i : first;
    if (first == p->n)
        return 0;
    out[0] = first;
    return 1;
}

int policy_pick_lowest(const policy *p, const float *score, const unsigned char *evictable,
                       int k, int *out)
{
    if (k <= 0)
        return 0;
    if (k == 1)
        return pick_least(p, score, evictable, out);
    if (k <= PICK_SMALL)
        return pick_small(p, score, evictable, k, out);
    int m = 0;
    for (int i = p->n_pinned; i < p->n; i++)
        if (!evictable || evictable[i])
            p->rank[m++] = (policy_rank){score[i], p->entries[i].position, 0, i};
    if (k > m)
        k = m;
    policy_select_lowest(p->rank, m, k);
    for (int i = 0; i < k; i++)
        out[i] = p->rank[i].slot;
    return k;
}
