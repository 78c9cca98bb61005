/* policy_recency.c — `recency`: keep the most recent B entries (a sliding window).
 *
 * Slots are in position order (contract invariant 1), so the oldest evictable
 * entries are simply the first unpinned slots. */
#include "policy_impl.h"

static int recency_choose(policy *p, int k, int *out)
{
    int n = 0;
    for (int slot = p->n_pinned; slot < p->n && n < k; slot++)
        out[n++] = slot;
    return n;
}

const policy_ops policy_recency_ops = {
    .name = "recency",
    .choose = recency_choose,
};
