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
#include "policy_scored.h"

#include <stddef.h>
#include <string.h>

typedef struct pace {
    scored base;          /* the family's parameters and statistics */
    int    stride_min, stride_max;
    double settle;
} pace;

static const policy_param pace_params[] = {
    {"stride-min", POLICY_PARAM_INT, offsetof(pace, stride_min), "1", 1, 1e6, NULL,
     "pace: smallest block evicted"},
    {"stride-max", POLICY_PARAM_INT, offsetof(pace, stride_max), "8", 1, 1e6, NULL,
     "pace: largest block evicted"},
    {"settle", POLICY_PARAM_REAL, offsetof(pace, settle), "1", 0, 1e6, NULL,
     "pace: a block is settled below settle × the uniform weight 1/n"},
    {0},
};

static int pace_uses(const policy *p, const char *key)
{
    return scored_uses(p, key) || !strcmp(key, "stride-min") || !strcmp(key, "stride-max") ||
           !strcmp(key, "settle");
}

static int pace_init(policy *p, kv_err *err)
{
    const pace *s = policy_state(p);
    policy_config *c = policy_config_edit(p);
    if (s->stride_min > s->stride_max)
        return kv_errorf(err, KV_EUSAGE, "pace: stride-min %d exceeds stride-max %d",
                         s->stride_min, s->stride_max);
    if (c->phase == POLICY_PHASE_ONESHOT)
        return kv_errorf(err, KV_EUSAGE, "pace: the adaptive stride needs phase stream or "
                         "decode, not oneshot");
    /* A stride given to pace would label lines it never shaped (#18 item 4). */
    if (policy_config_is_set(c, "stride"))
        return kv_errorf(err, KV_EUSAGE, "pace: parameter 'stride' does not apply: its "
                         "stride is adaptive, set its range with stride-min and stride-max "
                         "(run pace apart from a --strides list)");
    c->stride = s->stride_max;   /* the capacity the driver should expect: B + max */
    return scored_init(p, err);
}

static int pace_due(const policy *p, int counted, int budget)
{
    const pace *s = policy_state(p);
    if (budget == POLICY_BUDGET_UNLIMITED)
        return 0;
    int e = counted - budget;
    if (e < s->stride_min || e <= 0)
        return 0;
    if (e >= s->stride_max)
        return e;
    double mas, sigma, uniform = 1.0 / policy_size(p);
    scored_block(p, e, &mas, &sigma);
    int settled = mas <= s->settle * uniform && sigma <= s->settle * uniform;
    return settled ? 0 : e;
}

const policy_def policy_pace = {
    .name = "pace",
    .summary = "roco with an adaptive stride: large blocks where attention has settled",
    .provenance = "this project (the \"reading pace\" study)",
    .base = &policy_scored,
    .params = pace_params,
    .defaults = "score=mas,scope=std+sinks",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(pace),
    .ops = {.init = pace_init, .uses = pace_uses, .append = scored_append,
            .observe = scored_observe, .due = pace_due, .choose = scored_choose,
            .scores = scored_scores, .rules = scored_rules},
};
