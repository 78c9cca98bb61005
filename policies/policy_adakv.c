/*
 * policy_adakv.c — `adakv`: the streams of one layer share one budget (AdaKV, as
 * kvpress's AdaKVPress wraps a scorer).
 *
 * Each stream keeps its own cache and statistics (mas+window by default: mean
 * attention is comparable across heads, a sum would favour busy heads).  Once per
 * step, after every stream has appended and observed, the plan looks at the whole
 * layer: with H streams of budget B and stride s, when they together hold H·B + H·s
 * unpinned entries, the layer evicts back to H·B, choosing among all streams at once:
 *
 *   1. per stream, the scope protects its sinks/window/std set (uncapped);
 *   2. per stream, the floor protects its ceil(floor·B) best-scored entries, so no
 *      stream starves;
 *   3. of what is left, the lowest scores across the layer go, ties to the oldest
 *      position, then the lowest stream (invariant 4).
 *
 * Streams therefore end up with different cache sizes; the layer's total is exact.
 * With phase oneshot (kvpress's AdaKVPress compresses the prompt once) the layer plans
 * once, when the prompt ends, down to H·B at once; generated tokens are kept.
 */
#include "policy_scored.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct adakv {
    scored       base;       /* the family's parameters and statistics */
    double       floor;      /* each stream keeps its top ceil(floor · B) */
    int          due;        /* evictions planned for this stream ... */
    int          stamp;      /* ... when it had seen this many entries */
    int         *victims;    /* (slot, scratch) the planned slots */
    policy_rank *items;      /* the layer's candidates (the first stream's only) */
    int          cap;
    int          planned;    /* oneshot: the layer's one plan was made (first stream's) */
} adakv;

static const policy_param adakv_params[] = {
    {"floor", POLICY_PARAM_REAL, offsetof(adakv, floor), "0.2", 0, 1, NULL,
     "adakv: each head keeps its top floor·B"},
    {0},
};

static int adakv_uses(const policy *p, const char *key)
{
    return scored_uses(p, key) || !strcmp(key, "floor");
}

static const policy_column adakv_columns[] = {POLICY_SCRATCH(adakv, victims), {0}};

static int adakv_init(policy *p, kv_err *err)
{
    return scored_init(p, err);
}

static int is_oneshot(const policy *p)
{
    return policy_config_of(p)->phase == POLICY_PHASE_ONESHOT;
}

/* Does the budget govern stream p yet (a decode-phase stream waits for its prompt)? */
static int gated(const policy *p)
{
    return policy_config_of(p)->phase == POLICY_PHASE_STREAM || policy_prompt_ended(p);
}

/* Append stream h's candidates after the scope and the floor to items[*count..). */
static void gather(policy *p, int h, policy_rank *items, int *count)
{
    scored *s = policy_state(p);
    const adakv *a = policy_state(p);
    const policy_entry *e = policy_entries(p);
    scored_candidates(p, 0, s->sc, s->mask);
    int floor_n = (int)ceil(a->floor * policy_budget_of(p)), open = 0;
    policy_rank *mine = items + *count;
    for (int i = policy_pinned(p); i < policy_size(p); i++)
        if (s->mask[i])
            mine[open++] = (policy_rank){s->sc[i], e[i].position, h, i};
    int leave = open > floor_n ? open - floor_n : 0;   /* the floor keeps the best */
    policy_select_lowest(mine, open, leave);
    *count += leave;
}

/* Room for `total` candidates in the first stream's state. */
static int reserve(adakv *lead, int total)
{
    if (total <= lead->cap)
        return 0;
    policy_rank *it = realloc(lead->items, (size_t)total * 2 * sizeof *it);
    if (!it)
        return -1;
    lead->items = it;
    lead->cap = total * 2;
    return 0;
}

static void adakv_plan(policy *const *streams, int n)
{
    int counted = 0, budget = 0, stride = 0, total = 0;
    for (int h = 0; h < n; h++) {
        adakv *a = policy_state(streams[h]);
        a->due = 0;
        if (!gated(streams[h]) || policy_budget_of(streams[h]) == POLICY_BUDGET_UNLIMITED)
            continue;
        counted += policy_size(streams[h]) - policy_pinned(streams[h]);
        budget += policy_budget_of(streams[h]);
        stride += policy_config_of(streams[h])->stride;
        total += policy_size(streams[h]);
    }
    adakv *lead = policy_state(streams[0]);
    const int over = counted - budget;
    /* oneshot (kvpress's AdaKVPress): one plan when the prompt ends, down to H·B at
     * once whatever the stride; nothing after it */
    const int once = is_oneshot(streams[0]);
    if (once && (lead->planned || !policy_prompt_ended(streams[0])))
        return;
    lead->planned |= once;
    if (over <= 0 || (!once && over < stride) || reserve(lead, total) != 0)
        return;
    int count = 0;
    for (int h = 0; h < n; h++)
        if (gated(streams[h]))
            gather(streams[h], h, lead->items, &count);
    const int chosen = over < count ? over : count;
    policy_select_lowest(lead->items, count, chosen);
    for (int j = 0; j < chosen; j++) {
        adakv *a = policy_state(streams[lead->items[j].member]);
        a->victims[a->due++] = lead->items[j].slot;
    }
    for (int h = 0; h < n; h++)
        ((adakv *)policy_state(streams[h]))->stamp = policy_seen(streams[h]);
}

static int adakv_due(const policy *p, int counted, int budget)
{
    (void)counted, (void)budget;
    const adakv *a = policy_state(p);
    return a->stamp == policy_seen(p) ? a->due : 0;
}

static int adakv_choose(policy *p, int k, int *out)
{
    const adakv *a = policy_state(p);
    int m = k < a->due ? k : a->due;
    memcpy(out, a->victims, (size_t)m * sizeof *out);
    return m;
}

static void adakv_destroy(policy *p)
{
    free(((adakv *)policy_state(p))->items);
}

const policy_def policy_adakv = {
    .name = "adakv",
    .summary = "mas+window with the budget shared by the heads of a layer, floor per head",
    .provenance = "AdaKV (kvpress AdaKVPress)",
    .base = &policy_scored,
    .params = adakv_params,
    .columns = adakv_columns,
    .defaults = "score=mas,scope=window",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(adakv),
    .ops = {.init = adakv_init, .uses = adakv_uses, .append = scored_append,
            .observe = scored_observe, .due = adakv_due, .choose = adakv_choose,
            .plan = adakv_plan, .scores = scored_scores, .rules = scored_rules,
            .destroy = adakv_destroy},
};
