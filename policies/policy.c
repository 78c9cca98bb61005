/*
 * policy.c — the contract's bookkeeping, shared by every policy: the registry,
 * budgets, slots and compaction, the step schedule (policy_due), GQA reduction, the
 * tie rule and the random generator.  See policy.h for the invariants.
 */
#include "policy_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*      name       ops                  summary / params / provenance */
#define POLICY_MAP(X)                                                                  \
    X(full,    policy_full_ops,    "keep every entry (the reference)", "",             \
      "full KV cache")                                                                 \
    X(recency, policy_recency_ops, "evict the oldest entries: keep the last B",        \
      "", "sliding window (StreamingLLM without sinks)")

static const policy_ops *const policy_ops_table[] = {
#define POLICY_OPS(name, ops, summary, params, prov) &ops,
    POLICY_MAP(POLICY_OPS)
#undef POLICY_OPS
};

static const policy_info policy_info_table[] = {
#define POLICY_INFO(name, ops, summary, params, prov) {#name, summary, params, prov},
    POLICY_MAP(POLICY_INFO)
#undef POLICY_INFO
};

#define POLICY_N ((int)(sizeof policy_info_table / sizeof policy_info_table[0]))

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

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

/* --- budgets --------------------------------------------------------------------- */

int policy_budget_parse(const char *text, policy_budget *out, char *err, size_t errlen)
{
    if (!text || !*text)
        return fail(err, errlen, "empty budget: expected a fraction like 0.4 or an entry count like 512");
    char *end = NULL;
    memset(out, 0, sizeof *out);
    if (strchr(text, '.') || strchr(text, 'e') || strchr(text, 'E')) {
        double f = strtod(text, &end);
        if (*end || !isfinite(f))
            return fail(err, errlen, "budget '%s' is not a number", text);
        if (f <= 0)
            return fail(err, errlen, "budget '%s' must be > 0", text);
        out->is_fraction = 1;
        out->fraction = f;
        return 0;
    }
    long v = strtol(text, &end, 10);
    if (*end || end == text)
        return fail(err, errlen, "budget '%s' is not a number: expected 0.4 (fraction) or 512 (entries)", text);
    if (v <= 0)
        return fail(err, errlen, "budget '%s' must be >= 1 entry", text);
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

/* --- lifecycle ------------------------------------------------------------------- */

policy_config policy_config_default(void)
{
    policy_config c;
    memset(&c, 0, sizeof c);
    c.name = "full";
    c.stride = 1;
    c.phase = POLICY_PHASE_STREAM;
    c.gqa = POLICY_GQA_MEAN;
    c.sinks = 4;
    c.window = -1;
    return c;
}

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
    if (p->ops->reserve && p->ops->reserve(p, cap) != 0)
        return -1;
    p->capacity = cap;
    return 0;
}

policy *policy_new(const policy_config *cfg, char *err, size_t errlen)
{
    char names[512];
    int idx = -1;
    for (int i = 0; cfg && cfg->name && i < POLICY_N; i++)
        if (strcmp(policy_info_table[i].name, cfg->name) == 0)
            idx = i;
    if (idx < 0) {
        fail(err, errlen, "unknown policy '%s'; valid policies: %s",
             cfg && cfg->name ? cfg->name : "(none)", policy_names(names, sizeof names));
        return NULL;
    }
    if (cfg->budget < 0 || cfg->stride < 1) {
        fail(err, errlen, "policy '%s': budget %d and stride %d must be >= 0 and >= 1",
             cfg->name, cfg->budget, cfg->stride);
        return NULL;
    }
    policy *p = calloc(1, sizeof *p);
    if (!p) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    p->ops = policy_ops_table[idx];
    p->cfg = *cfg;
    p->budget = cfg->budget;
    p->rng = cfg->seed ^ (cfg->stream_id * 0xd1b54a32d192ed03ull);
    if (p->ops->init && p->ops->init(p, err, errlen) != 0) {
        policy_free(p);
        return NULL;
    }
    int hint = cfg->capacity_hint > 0 ? cfg->capacity_hint : cfg->budget + cfg->stride;
    if (reserve(p, hint > 0 ? hint : 16) != 0) {
        fail(err, errlen, "out of memory reserving %d entries", hint);
        policy_free(p);
        return NULL;
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
    free(p);
}

/* --- the step -------------------------------------------------------------------- */

int policy_append(policy *p, const policy_entry *entry)
{
    if (reserve(p, p->n + 1) != 0)
        return -1;
    p->entries[p->n] = *entry;
    p->n++;
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
    if (p->ops->never_evicts || p->budget == POLICY_BUDGET_UNLIMITED)
        return 0;
    int counted = p->n - p->n_pinned;
    switch (p->cfg.phase) {
    case POLICY_PHASE_ONESHOT:
        if (!p->prompt_ended || p->oneshot_done)
            return 0;
        return counted > p->budget ? counted - p->budget : 0;
    case POLICY_PHASE_DECODE:
        if (!p->prompt_ended)
            return 0;
        /* the prompt is pinned; the generated entries stream */
        __attribute__((fallthrough));
    case POLICY_PHASE_STREAM:
        return counted >= p->budget + p->cfg.stride ? p->cfg.stride : 0;
    }
    return 0;
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
}

void policy_set_future(policy *p, const float *future) { p->future = future; }
int  policy_needs_future(const policy *p) { return p->ops->needs_future; }

int policy_size(const policy *p) { return p->n; }
int policy_budget_of(const policy *p) { return p->budget; }
const policy_entry *policy_entries(const policy *p) { return p->entries; }
const policy_config *policy_config_of(const policy *p) { return &p->cfg; }
const char *policy_name(const policy *p) { return p->ops->name; }

/* --- helpers --------------------------------------------------------------------- */

void policy_compact(void *array, size_t elem_size, int n, const int *slots, int k)
{
    char *a = array;
    int write = slots[0], next = 0;
    for (int read = slots[0]; read < n; read++) {
        if (next < k && read == slots[next]) {
            next++;
            continue;
        }
        if (write != read)
            memcpy(a + (size_t)write * elem_size, a + (size_t)read * elem_size, elem_size);
        write++;
    }
}

/* Is slot a a better eviction victim than slot b?  Lower score, then older. */
static int victim_before(const policy *p, const float *score, int a, int b)
{
    if (score[a] != score[b])
        return score[a] < score[b];
    return p->entries[a].position < p->entries[b].position;
}

int policy_pick_lowest(const policy *p, const float *score, const unsigned char *evictable,
                       int k, int *out)
{
    /* Insertion into a sorted list of the k best victims: O(n·k), fine for the small
     * strides of token- and block-wise eviction; one-shot eviction of many entries
     * is rare enough that clarity wins. */
    int chosen = 0;
    for (int i = p->n_pinned; i < p->n; i++) {
        if (evictable && !evictable[i])
            continue;
        if (chosen == k && !victim_before(p, score, i, out[k - 1]))
            continue;
        int j = chosen < k ? chosen++ : k - 1;
        while (j > 0 && victim_before(p, score, i, out[j - 1])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
    return chosen;
}
