/*
 * policy_adakv.c — `adakv`: the heads of one layer share one budget (AdaKV, as
 * kvpress's AdaKVPress wraps a scorer), and the policy_group that makes it possible.
 *
 * Each head keeps its own cache and statistics (mas+window by default: mean
 * attention is comparable across heads, a sum would favour busy heads).  Once per
 * step, after every head has appended and observed, policy_group_plan() looks at the
 * whole layer: with H heads of budget B and stride s, when the heads together hold
 * H·B + H·s unpinned entries, the layer evicts back to H·B, choosing among all heads
 * at once:
 *
 *   1. per head, the scope protects its sinks/window/std set (uncapped);
 *   2. per head, the floor protects its ceil(floor·B) best-scored entries, so no head
 *      starves;
 *   3. of what is left, the lowest scores across the layer go, ties to the oldest
 *      position, then the lowest head index (invariant 4).
 *
 * Heads therefore end up with different cache sizes; the layer's total is exact.
 */
#include "policy_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct policy_group {
    int            n;          /* members (KV heads of the layer) */
    policy       **member;     /* (n,) borrowed; NULL until a member joins */
    int           *due;        /* (n,) planned evictions of the current step */
    int           *stamp;      /* (n,) member's `seen` when planned: stale plans are 0 */
    policy_rank   *items;      /* (cap,) candidates of the layer; chosen ones first */
    int            cap;
    int            chosen;     /* items[0..chosen) are this step's victims */
    float         *score;      /* (cap,) scratch per member */
    unsigned char *mask;       /* (cap,) scratch per member */
};

policy_group *policy_group_new(int n_members, char *err, size_t errlen)
{
    if (n_members < 1) {
        policy__fail(err, errlen, "policy group: %d members, expected >= 1", n_members);
        return NULL;
    }
    policy_group *g = calloc(1, sizeof *g);
    if (g) {
        g->n = n_members;
        g->member = calloc((size_t)n_members, sizeof *g->member);
        g->due = calloc((size_t)n_members, sizeof *g->due);
        g->stamp = calloc((size_t)n_members, sizeof *g->stamp);
    }
    if (!g || !g->member || !g->due || !g->stamp) {
        policy_group_free(g);
        policy__fail(err, errlen, "out of memory");
        return NULL;
    }
    return g;
}

void policy_group_free(policy_group *g)
{
    if (!g)
        return;
    free(g->member), free(g->due), free(g->stamp);
    free(g->items), free(g->score), free(g->mask);
    free(g);
}

int policy__group_join(policy_group *g, int member, policy *p, char *err, size_t errlen)
{
    if (member < 0 || member >= g->n)
        return policy__fail(err, errlen, "adakv: group member %d outside 0..%d", member, g->n - 1);
    if (g->member[member])
        return policy__fail(err, errlen, "adakv: group member %d joined twice", member);
    g->member[member] = p;
    return 0;
}

void policy__group_leave(policy_group *g, int member) { g->member[member] = NULL; }

/* Grow the scratch to the layer's total size; only when the caches grow. */
static int group_reserve(policy_group *g, int total)
{
    if (total <= g->cap)
        return 0;
    int cap = total * 2;
    policy_rank *it = realloc(g->items, (size_t)cap * sizeof *it);
    if (it)
        g->items = it;
    float *s = realloc(g->score, (size_t)cap * sizeof *s);
    if (s)
        g->score = s;
    unsigned char *m = realloc(g->mask, (size_t)cap);
    if (m)
        g->mask = m;
    if (!it || !s || !m)
        return -1;
    g->cap = cap;
    return 0;
}

/* Append member h's candidates after the scope and the floor to items[*count..). */
static void gather(policy_group *g, int h, int *count)
{
    policy *p = g->member[h];
    policy__scored_candidates(p, 0, g->score, g->mask);
    int floor_n = (int)ceil(p->cfg.floor * p->budget), open = 0;
    policy_rank *mine = g->items + *count;
    for (int i = p->n_pinned; i < p->n; i++)
        if (g->mask[i])
            mine[open++] = (policy_rank){g->score[i], p->entries[i].position, h, i};
    int leave = open > floor_n ? open - floor_n : 0;   /* the floor keeps the best */
    policy__select_lowest(mine, open, leave);
    *count += leave;
}

static int member_gated(const policy *p)
{
    return p->cfg.phase == POLICY_PHASE_STREAM || p->prompt_ended;
}

void policy_group_plan(policy_group *g)
{
    int counted = 0, budget = 0, stride = 0, total = 0;
    g->chosen = 0;
    for (int h = 0; h < g->n; h++) {
        policy *p = g->member[h];
        g->due[h] = 0;
        if (!p || !member_gated(p) || p->budget == POLICY_BUDGET_UNLIMITED)
            continue;
        counted += p->n - p->n_pinned;
        budget += p->budget;
        stride += p->cfg.stride;
        total += p->n;
    }
    int over = counted - budget;
    if (over <= 0 || over < stride || group_reserve(g, total) != 0)
        return;
    int count = 0;
    for (int h = 0; h < g->n; h++)
        if (g->member[h] && member_gated(g->member[h]))
            gather(g, h, &count);
    g->chosen = over < count ? over : count;
    policy__select_lowest(g->items, count, g->chosen);
    for (int j = 0; j < g->chosen; j++)
        g->due[g->items[j].member]++;
    for (int h = 0; h < g->n; h++)
        if (g->member[h])
            g->stamp[h] = g->member[h]->seen;
}

/* --- the member policy ----------------------------------------------------------- */

static int adakv_uses(const policy_config *cfg, const char *key)
{
    return policy__scored_uses(cfg, key) || !strcmp(key, "floor");
}

static int adakv_init(policy *p, char *err, size_t errlen)
{
    if (!p->cfg.group)
        return policy__fail(err, errlen, "adakv shares a budget across the heads of a layer: "
                            "the driver must create a policy_group per layer and set "
                            "cfg.group and cfg.group_member");
    if (p->cfg.phase == POLICY_PHASE_ONESHOT)
        return policy__fail(err, errlen, "adakv: phase oneshot is not supported (stream or decode)");
    if (policy__scored_init(p, err, errlen) != 0)
        return -1;
    return policy__group_join(p->cfg.group, p->cfg.group_member, p, err, errlen);
}

static int adakv_due(const policy *p, int counted, int budget)
{
    (void)counted, (void)budget;
    const policy_group *g = p->cfg.group;
    int h = p->cfg.group_member;
    return g->stamp[h] == p->seen ? g->due[h] : 0;
}

static int adakv_choose(policy *p, int k, int *out)
{
    const policy_group *g = p->cfg.group;
    int h = p->cfg.group_member, m = 0;
    for (int j = 0; j < g->chosen && m < k; j++)
        if (g->items[j].member == h)
            out[m++] = g->items[j].slot;
    return m;
}

static void adakv_destroy(policy *p)
{
    if (p->cfg.group && p->state) {
        policy_group *g = p->cfg.group;
        if (g->member[p->cfg.group_member] == p)
            policy__group_leave(g, p->cfg.group_member);
    }
    policy__scored_destroy(p);
}

const policy_ops policy_adakv_ops = {
    .name = "adakv",
    .init = adakv_init,
    .uses = adakv_uses,
    .reserve = policy__scored_reserve,
    .append = policy__scored_append,
    .observe = policy__scored_observe,
    .due = adakv_due,
    .choose = adakv_choose,
    .remove = policy__scored_remove,
    .scores = policy__scored_scores,
    .destroy = adakv_destroy,
};
