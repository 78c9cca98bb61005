/* policy_vatp.c — `vatp`: value-aware token pruning (Guo, Kamigaito and Watanabe, EMNLP
 * 2024): an entry's importance is H2O's accumulated attention S(i) times the L1 norm of
 * its value vector; the attention sinks and the newest r entries are kept. */
#include "policy.h"

#include <stddef.h>

typedef struct vatp {
    int         sinks;    /* protected first positions */
    policy_span window;   /* protected newest entries r */
    double     *S;        /* (slot) Σ a */
    float      *vnorm;    /* (slot) ||v||_1 */
    float      *score;    /* (slot, scratch) S · ||v||_1 */
} vatp;

static const policy_param vatp_params[] = {
    {"sinks", POLICY_PARAM_INT, offsetof(vatp, sinks), "4", 0, 1e9, NULL,
     "protected first positions (attention sinks)"},
    {"window", POLICY_PARAM_SPAN, offsetof(vatp, window), "0.3", 0, 0, NULL,
     "protected newest entries r: 0.3 = fraction of B, 12 = entries"},
    {0},
};

static const policy_column vatp_columns[] = {
    POLICY_COLUMN(vatp, S), POLICY_COLUMN(vatp, vnorm), POLICY_SCRATCH(vatp, score), {0},
};

static void vatp_append(policy *p, int slot, const policy_vectors *vectors)
{
    vatp *v = policy_state(p);
    v->S[slot] = 0;
    v->vnorm[slot] = policy_value_norm(vectors, 1);
}

static void vatp_observe(policy *p, const float *row, int n)
{
    vatp *v = policy_state(p);
    for (int i = 0; i < n; i++)
        v->S[i] += row[i];
}

static int vatp_choose(policy *p, int k, int *out)
{
    vatp *v = policy_state(p);
    for (int i = 0; i < policy_size(p); i++)
        v->score[i] = (float)(v->S[i] * v->vnorm[i]);
    int r = policy_span_entries(&v->window, policy_budget_of(p));
    return policy_pick_outside(p, v->score, v->sinks, r, k, out);
}

const policy_def policy_vatp = {
    .name = "vatp", .summary = "evict the lowest S·||v||_1 outside the sinks and the newest r",
    .provenance = "VATP (Guo et al., EMNLP 2024, arXiv 2406.12335)",
    .params = vatp_params, .columns = vatp_columns, .state_size = sizeof(vatp),
    .scope_of = POLICY_SCOPE_OF_KV_HEAD, .flags = POLICY_READS_VALUES,
    .ops = {.append = vatp_append, .observe = vatp_observe, .choose = vatp_choose},
};
