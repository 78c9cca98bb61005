/*
 * policy_pace.c — `pace`: RoCo with an adaptive stride (this project's policy).
 *
 * Rationale: the "reading pace" study of eviction stride found that evicting s
 * entries at once trades quality for speed: fewer eviction rounds, but each round
 * judges s entries with the statistics of one moment.  That trade is cheap where the
 * cached attention has settled (the entries that would go draw little attention and
 * no longer fluctuate: judging them later changes nothing) and costly where it has
 * not.  So pace lets the cache run over its budget while the would-be victims are
 * settled, and evicts as soon as they are not:
 *
 *     e = counted - B                                  the excess over the budget
 *     e <  stride-min                      -> wait
 *     e >= stride-max                      -> evict e (the bound on memory)
 *     otherwise let E = the e entries roco would evict now (lowest S/c outside the
 *     sinks and the std set) and n the cache size:
 *        mean_E S/c <= settle/n  and  mean_E σ <= settle/n   -> settled: wait
 *        else                                                -> evict e now
 *
 * A settled region is therefore evicted in blocks of up to stride-max, an unsettled
 * one in blocks of stride-min.  1/n is the weight of a uniform row, so `settle` is
 * scale-free.  Statistics, scores and scopes are the score × scope family's.
 */
#include "policy_impl.h"

#include <string.h>

static int pace_uses(const policy_config *cfg, const char *key)
{
    return policy__scored_uses(cfg, key) || !strcmp(key, "stride-min") ||
           !strcmp(key, "stride-max") || !strcmp(key, "settle");
}

static int pace_init(policy *p, char *err, size_t errlen)
{
    const policy_config *c = &p->cfg;
    if (c->stride_min > c->stride_max)
        return policy__fail(err, errlen, "pace: stride-min %d exceeds stride-max %d",
                            c->stride_min, c->stride_max);
    if (c->phase == POLICY_PHASE_ONESHOT)
        return policy__fail(err, errlen, "pace: the adaptive stride needs phase stream or "
                            "decode, not oneshot");
    p->cfg.stride = c->stride_max;   /* the capacity the driver should expect: B + max */
    return policy__scored_init(p, err, errlen);
}

static int pace_due(const policy *p, int counted, int budget)
{
    if (budget == POLICY_BUDGET_UNLIMITED)
        return 0;
    int e = counted - budget;
    if (e < p->cfg.stride_min || e <= 0)
        return 0;
    if (e >= p->cfg.stride_max)
        return e;
    double mas, sigma, uniform = 1.0 / p->n;
    policy__scored_block(p, e, &mas, &sigma);
    int settled = mas <= p->cfg.settle * uniform && sigma <= p->cfg.settle * uniform;
    return settled ? 0 : e;
}

const policy_ops policy_pace_ops = {
    .name = "pace",
    .init = pace_init,
    .uses = pace_uses,
    .reserve = policy__scored_reserve,
    .append = policy__scored_append,
    .observe = policy__scored_observe,
    .due = pace_due,
    .choose = policy__scored_choose,
    .remove = policy__scored_remove,
    .scores = policy__scored_scores,
    .destroy = policy__scored_destroy,
};
