/*
 * policy_lazy.c — `simlayerkv` and `duo-attention`: streams whose attention already
 * sits on the first and the most recent entries are "lazy" and keep only those; the
 * others keep everything.  One rule, two granularities:
 *
 *   - simlayerkv (SimLayerKV, Zhang et al., arXiv 2410.13846, as kvpress's
 *     SimLayerKVPress runs it): per layer (scope-of layer, the mean over all heads);
 *   - duo-attention (DuoAttention, Xiao et al., arXiv 2410.10819): per KV head, its
 *     streaming heads keep sinks + a recent window and its retrieval heads keep all.
 *     DuoAttention learns which heads stream (kvpress loads the learned patterns, which
 *     exist only for a few Llama and Mistral checkpoints, or estimates them from BookSum
 *     with mean queries and keys); here a head streams when the attention it actually
 *     pays on the prompt has the lazy shape, the SimLayerKV test per head.
 *
 * Once, at the end of the prompt: the last `n-last` prompt queries' rows (group-reduced,
 * mean), restricted to the keys before them, put mass m on the first `n-initial` plus
 * the `n-recent` newest of those keys; m > `lazy-threshold` makes the stream lazy, and
 * it keeps its first n-initial entries and its newest n-recent − n-last (kvpress's
 * slice).  A prompt of n-initial + n-recent + n-last entries or fewer, or a threshold
 * of 1, compresses nothing.  B is not used; the driver reports the mean size kept.
 */
#include "policy_kvpress.h"

#include <stddef.h>
#include <stdio.h>

typedef struct lazy {
    int            initial, recent, last;
    double         threshold;
    double         mass;      /* Σ over the last n-last rows of the lazy-shaped mass */
    float         *keep;      /* (slot, scratch) 1 kept, 0 evicted */
} lazy;

static const policy_param lazy_params[] = {
    {"n-initial", POLICY_PARAM_INT, offsetof(lazy, initial), "4", 0, 1e9, NULL,
     "simlayerkv/duo-attention: first entries a lazy stream keeps"},
    {"n-recent", POLICY_PARAM_INT, offsetof(lazy, recent), "1024", 1, 1e9, NULL,
     "simlayerkv/duo-attention: recent window of the test and of a lazy stream"},
    {"n-last", POLICY_PARAM_INT, offsetof(lazy, last), "1", 1, 1e6, NULL,
     "simlayerkv/duo-attention: last prompt queries whose rows are tested"},
    {"lazy-threshold", POLICY_PARAM_REAL, offsetof(lazy, threshold), "1", 0, 1, NULL,
     "simlayerkv/duo-attention: lazy when that mass exceeds this (1: never)"},
    {0},
};

static const policy_column lazy_columns[] = {POLICY_SCRATCH(lazy, keep), {0}};

static int lazy_init(policy *p, kv_err *err) { return kvpress_oneshot(p, 1, err); }

/* Rows of queries L − n-last .. L − 1 over keys [0, L − n-last): the first n-initial
 * and the newest n-recent of those (kvpress sums both slices, overlap and all). */
static void lazy_observe(policy *p, const float *row, int n)
{
    lazy *z = policy_state(p);
    const int L = policy_config_of(p)->prompt_len, t = policy_entries(p)[n - 1].position;
    if (t >= L || t < L - z->last)
        return;
    const int end = L - z->last, from = end - z->recent > 0 ? end - z->recent : 0;
    float m = 0;
    for (int i = 0; i < z->initial && i < end; i++)
        m += row[i];
    for (int i = from; i < end; i++)
        m += row[i];
    z->mass += m;
}

static void lazy_end_prompt(policy *p)
{
    lazy *z = policy_state(p);
    const int n = policy_size(p), kept_recent = z->recent - z->last;
    const int lazy_now = z->threshold < 1.0 && n > z->initial + z->recent + z->last &&
                         (float)(z->mass / z->last) > z->threshold;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        z->keep[i] = !lazy_now || i < z->initial || i >= n - kept_recent;
        kept += z->keep[i] != 0;
    }
    policy_set_budget(p, lazy_now ? kept : POLICY_BUDGET_UNLIMITED);
}

static int lazy_choose(policy *p, int k, int *out)
{
    return policy_pick_lowest(p, ((lazy *)policy_state(p))->keep, NULL, k, out);
}

static void lazy_describe(const policy *p, char *buf, size_t len)
{
    if (policy_prompt_ended(p))
        snprintf(buf, len, "%s", policy_budget_of(p) == POLICY_BUDGET_UNLIMITED ? "full"
                                                                                : "lazy");
}

#define LAZY_OPS                                                                        \
    {.init = lazy_init, .observe = lazy_observe, .end_prompt = lazy_end_prompt,         \
     .choose = lazy_choose, .describe = lazy_describe}

const policy_def policy_simlayerkv = {
    .name = "simlayerkv",
    .summary = "oneshot, per layer: a lazy layer (last query's mass on the first and recent "
               "entries > threshold) keeps only those",
    .provenance = "SimLayerKV (arXiv 2410.13846); kvpress SimLayerKVPress",
    .params = lazy_params,
    .columns = lazy_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_LAYER,
    .state_size = sizeof(lazy),
    .ops = LAZY_OPS,
};

const policy_def policy_duo_attention = {
    .name = "duo-attention",
    .summary = "oneshot, per KV head: streaming heads (lazy-shaped attention) keep 128 sinks "
               "+ 256 recent, retrieval heads all",
    .provenance = "DuoAttention (arXiv 2410.10819), heads measured on the prompt",
    .base = &policy_simlayerkv,
    .defaults = "n-initial=128,n-recent=256,lazy-threshold=0.9",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(lazy),
    .ops = LAZY_OPS,
};
