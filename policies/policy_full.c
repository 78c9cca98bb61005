/* policy_full.c — `full`: the reference that keeps every entry. */
#include "policy.h"

static int full_choose(policy *p, int k, int *out)
{
    (void)p, (void)k, (void)out;
    return 0;   /* never asked: POLICY_NEVER_EVICTS makes nothing due */
}

const policy_def policy_full = {
    .name = "full",
    .summary = "keep every entry (the reference)",
    .provenance = "full KV cache",
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_NEVER_EVICTS,
    .ops = {.choose = full_choose},
};
