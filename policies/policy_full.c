/* policy_full.c — `full`: the reference that keeps every entry. */
#include "policy_impl.h"

static int full_choose(policy *p, int k, int *out)
{
    (void)p, (void)k, (void)out;
    return 0;   /* never asked: never_evicts makes policy_due() return 0 */
}

const policy_ops policy_full_ops = {
    .name = "full",
    .never_evicts = 1,
    .choose = full_choose,
};
