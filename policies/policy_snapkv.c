/*
 * policy_snapkv.c — `snapkv` and `pyramidkv`: one-shot compression of the prompt.
 *
 * SnapKV (NeurIPS 2024): the last w prompt queries (the observation window) vote for
 * earlier keys with the sum of their attention; the votes are pooled along the key
 * axis (max or avg over `kernel` neighbours) so that spans survive together; the
 * window is kept and the prefix keeps its top B - w pooled votes.  Generated tokens
 * are never evicted (phase oneshot).  PyramidKV gives layer l its own budget on a
 * linear schedule, large at the bottom and small at the top, averaging B (as the
 * paper allocates; KVCache-Factory's rounding averaged over it: docs/POLICIES.md).
 *
 * The votes need to know which rows are the last w of the prompt while they stream
 * by: cfg.prompt_len, set by the driver; memory stays O(T).
 */
#include "policy.h"

#include <math.h>
#include <stddef.h>

enum { POOL_MAX, POOL_AVG };
enum { SCHEDULE_FACTORY, SCHEDULE_KVPRESS };

typedef struct snapkv {
    int            obs_window;  /* w */
    int            kernel;      /* pooling width, odd */
    int            pool;        /* POOL_* */
    int            beta;        /* pyramidkv: bottom/top ratio */
    int            schedule;    /* pyramidkv: SCHEDULE_* */
    double        *vote;        /* (slot) Σ over the window rows */
    float         *pooled;      /* (slot, scratch) pooled votes, the eviction score */
    unsigned char *mask;        /* (slot, scratch) 1 = prefix entry */
} snapkv;

static const policy_param snapkv_params[] = {
    {"obs-window", POLICY_PARAM_INT, offsetof(snapkv, obs_window), "32", 1, 1e6, NULL,
     "snapkv: observation window w, the last w prompt queries"},
    {"kernel", POLICY_PARAM_INT, offsetof(snapkv, kernel), "7", 1, 999, NULL,
     "snapkv: pooling width (odd)"},
    {"pool", POLICY_PARAM_CHOICE, offsetof(snapkv, pool), "max", 0, 0, "max avg",
     "snapkv: pooling, max | avg"},
    {0},
};

static const policy_param pyramidkv_params[] = {
    {"beta", POLICY_PARAM_INT, offsetof(snapkv, beta), "20", 1, 1e6, NULL,
     "pyramidkv: bottom/top budget ratio"},
    {"schedule", POLICY_PARAM_CHOICE, offsetof(snapkv, schedule), "factory", 0, 0,
     "factory kvpress", "pyramidkv: KVCache-Factory's integer schedule or kvpress's"},
    {0},
};

static const policy_column snapkv_columns[] = {
    POLICY_COLUMN(snapkv, vote), POLICY_SCRATCH(snapkv, pooled), POLICY_SCRATCH(snapkv, mask),
    {0},
};

static int snapkv_init(policy *p, kv_err *err)
{
    snapkv *s = policy_state(p);
    policy_config *c = policy_config_edit(p);
    const char *name = c->name;
    if (policy_config_is_set(c, "phase") && c->phase != POLICY_PHASE_ONESHOT)
        return kv_errorf(err, KV_EUSAGE, "%s compresses the prompt once: phase must be "
                         "oneshot", name);
    if (c->prompt_len <= 0)
        return kv_errorf(err, KV_EUSAGE, "%s needs the prompt length: the driver must set "
                         "cfg.prompt_len", name);
    if (s->kernel % 2 == 0)
        return kv_errorf(err, KV_EUSAGE, "%s: kernel %d must be odd", name, s->kernel);
    c->phase = POLICY_PHASE_ONESHOT;
    return KV_OK;
}

static void snapkv_append(policy *p, int slot, const policy_vectors *v)
{
    (void)v;
    ((snapkv *)policy_state(p))->vote[slot] = 0;
}

/* Only the rows of the observation window vote: queries at prompt positions
 * prompt_len - w .. prompt_len - 1. */
static void snapkv_observe(policy *p, const float *row, int n)
{
    snapkv *s = policy_state(p);
    const int t = policy_entries(p)[n - 1].position, end = policy_config_of(p)->prompt_len;
    if (t >= end || t < end - s->obs_window)
        return;
    for (int i = 0; i < n; i++)
        s->vote[i] += row[i];
}

/* PyramidKV: min = (B-w)/β, max = 2(B-w) - min (clamped to the prefix), layer l keeps
 * w + max - l·((max-min)/(L-1)); no compression for a prompt within B, and the uniform
 * B when the prompt is shorter than 2(B-w). */
static int pyramid_budget(const policy *p, int q_len)
{
    const snapkv *s = policy_state(p);
    int B = policy_budget_of(p), w = s->obs_window, L = policy_model_layers(p);
    if (L <= 1 || q_len <= B || B <= w || q_len < 2 * (B - w))
        return B;
    int min_n = (B - w) / s->beta;
    int max_n = 2 * (B - w) - min_n;
    if (max_n >= q_len - w) {
        max_n = q_len - w;
        min_n = 2 * (B - w) - max_n;
    }
    /* KVCache-Factory steps by ⌊(max − min)/(L − 1)⌋, which averages up to 15% over B
     * (#18 item 6); ⌈l·(max − min)/(L − 1)⌉ keeps layers l and L−1−l at 2B or one
     * below, so the mean over layers is B or up to half an entry under it. */
    const long span = max_n - min_n, l = policy_layer_number(p);
    int keep = w + max_n - (int)((l * span + L - 2) / (L - 1));
    return keep < 1 ? 1 : keep;
}

/* kvpress's PyramidKVPress (0.5.5): the same line in floating point around the mean
 * kept size m = q·(1 − ratio), window included, rounded half to even (Python's round);
 * the uniform round(m) when the line leaves [w, q].  m is q times the budget's
 * fraction when written as one (kvpress's ratio exactly), else B. */
static int pyramid_budget_kvpress(const policy *p, int q_len)
{
    const snapkv *s = policy_state(p);
    const policy_config *c = policy_config_of(p);
    const double m = c->budget_arg.is_fraction ? q_len * c->budget_arg.fraction
                                               : policy_budget_of(p);
    const int w = s->obs_window, L = policy_model_layers(p);
    double min_n = m / s->beta, max_n = 2 * m - min_n;
    if (max_n >= q_len - w) {
        max_n = q_len - w;
        min_n = 2 * m - max_n;
    }
    if (!(q_len >= max_n && max_n >= min_n && min_n >= w)) {
        double r = nearbyint(m);
        return r < 1 ? 1 : (int)r;
    }
    double steps = L > 1 ? (max_n - min_n) / (L - 1) : 0.0;
    return (int)nearbyint(max_n - policy_layer_number(p) * steps);
}

static void pyramidkv_end_prompt(policy *p)
{
    const snapkv *s = policy_state(p);
    if (policy_budget_of(p) == POLICY_BUDGET_UNLIMITED)
        return;
    policy_set_budget(p, s->schedule == SCHEDULE_KVPRESS
                             ? pyramid_budget_kvpress(p, policy_size(p))
                             : pyramid_budget(p, policy_size(p)));
}

/* Pool the votes of the prefix slots [0, m): max with -inf padding or average with
 * zero padding over the full kernel (PyTorch's max_pool1d / avg_pool1d). */
static void pool_votes(snapkv *s, int m)
{
    int half = s->kernel / 2;
    for (int i = 0; i < m; i++) {
        double acc = s->pool == POOL_MAX ? -INFINITY : 0;
        for (int j = i - half; j <= i + half; j++) {
            if (j < 0 || j >= m)
                continue;
            acc = s->pool == POOL_MAX ? fmax(acc, s->vote[j]) : acc + s->vote[j];
        }
        s->pooled[i] = (float)(s->pool == POOL_MAX ? acc : acc / s->kernel);
    }
}

static int snapkv_choose(policy *p, int k, int *out)
{
    snapkv *s = policy_state(p);
    const int n = policy_size(p), B = policy_budget_of(p);
    const int m = n - (s->obs_window < B ? s->obs_window : B);   /* the window is kept */
    pool_votes(s, m);
    for (int i = 0; i < n; i++)
        s->mask[i] = i < m;
    return policy_pick_lowest(p, s->pooled, s->mask, k, out);
}

static int snapkv_scores(const policy *p, float *out)
{
    const snapkv *s = policy_state(p);
    for (int i = 0; i < policy_size(p); i++)
        out[i] = (float)s->vote[i];
    return 0;
}

const policy_def policy_snapkv = {
    .name = "snapkv",
    .summary = "one-shot after the prompt: keep the window and the top pooled window votes",
    .provenance = "SnapKV (NeurIPS 2024)",
    .params = snapkv_params,
    .columns = snapkv_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(snapkv),
    .ops = {.init = snapkv_init, .append = snapkv_append, .observe = snapkv_observe,
            .choose = snapkv_choose, .scores = snapkv_scores},
};

#define SNAPKV_OPS                                                                      \
    {.init = snapkv_init, .append = snapkv_append, .observe = snapkv_observe,           \
     .choose = snapkv_choose, .scores = snapkv_scores}
#define PYRAMIDKV_OPS                                                                   \
    {.init = snapkv_init, .append = snapkv_append, .observe = snapkv_observe,           \
     .end_prompt = pyramidkv_end_prompt, .choose = snapkv_choose, .scores = snapkv_scores}

const policy_def policy_pyramidkv = {
    .name = "pyramidkv",
    .summary = "snapkv with a linear per-layer budget, bottom layers larger",
    .provenance = "PyramidKV (KVCache-Factory schedule)",
    .base = &policy_snapkv,
    .params = pyramidkv_params,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(snapkv),
    .ops = PYRAMIDKV_OPS,
};

/* kvpress's defaults under kvpress's names (policy_kvpress.c has the others). */
const policy_def policy_snapkv_kvpress = {
    .name = "snapkv-kvpress",
    .summary = "kvpress SnapKVPress: window 64, kernel 5, average pooling",
    .provenance = "SnapKV (NeurIPS 2024) as kvpress 0.5.5 runs it",
    .base = &policy_snapkv,
    .defaults = "obs-window=64,kernel=5,pool=avg",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(snapkv),
    .ops = SNAPKV_OPS,
};

const policy_def policy_pyramidkv_kvpress = {
    .name = "pyramidkv-kvpress",
    .summary = "kvpress PyramidKVPress: snapkv-kvpress with kvpress's layer schedule",
    .provenance = "PyramidKV (arXiv 2406.02069) as kvpress 0.5.5 runs it",
    .base = &policy_pyramidkv,
    .defaults = "obs-window=64,kernel=5,pool=avg,schedule=kvpress",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(snapkv),
    .ops = PYRAMIDKV_OPS,
};
