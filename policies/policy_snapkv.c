/*
 * policy_snapkv.c — `snapkv` and `pyramidkv`: one-shot compression of the prompt.
 *
 * SnapKV (NeurIPS 2024): the last w prompt queries (the observation window) vote for
 * earlier keys with the sum of their attention; the votes are pooled along the key
 * axis (max or avg over `kernel` neighbours) so that spans survive together; the
 * window is kept and the prefix keeps its top B - w pooled votes.  Generated tokens
 * are never evicted (phase oneshot).  PyramidKV gives layer l its own budget on a
 * linear schedule, large at the bottom and small at the top, averaging B
 * (KVCache-Factory's integer arithmetic, docs/POLICIES.md).
 *
 * The votes need to know which rows are the last w of the prompt while they stream
 * by, so the driver sets cfg.prompt_len; memory stays O(T).
 */
#include "policy_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct snapkv {
    double        *vote;     /* (capacity,) Σ over the window rows */
    float         *pooled;   /* (capacity,) scratch: pooled votes, the eviction score */
    unsigned char *mask;     /* (capacity,) scratch: 1 = prefix entry */
    int            pyramid;  /* 1 for pyramidkv */
} snapkv;

static int snapkv_init(policy *p, char *err, size_t errlen)
{
    policy_config *c = &p->cfg;
    int phase_bit = policy__param_index("phase");
    if ((c->set & (1ull << phase_bit)) && c->phase != POLICY_PHASE_ONESHOT)
        return policy__fail(err, errlen, "%s compresses the prompt once: phase must be "
                            "oneshot", p->info->name);
    if (c->prompt_len <= 0)
        return policy__fail(err, errlen, "%s needs the prompt length: the driver must set "
                            "cfg.prompt_len", p->info->name);
    if (c->kernel % 2 == 0)
        return policy__fail(err, errlen, "%s: kernel %d must be odd", p->info->name, c->kernel);
    c->phase = POLICY_PHASE_ONESHOT;
    snapkv *s = calloc(1, sizeof *s);
    if (!s)
        return policy__fail(err, errlen, "out of memory");
    s->pyramid = !strcmp(p->info->name, "pyramidkv");
    p->state = s;
    return 0;
}

static int snapkv_reserve(policy *p, int capacity)
{
    snapkv *s = p->state;
    double *v = realloc(s->vote, (size_t)capacity * sizeof *v);
    if (v)
        s->vote = v;
    float *q = realloc(s->pooled, (size_t)capacity * sizeof *q);
    if (q)
        s->pooled = q;
    unsigned char *m = realloc(s->mask, (size_t)capacity);
    if (m)
        s->mask = m;
    return v && q && m ? 0 : -1;
}

static void snapkv_append(policy *p, int slot) { ((snapkv *)p->state)->vote[slot] = 0; }

/* Only the rows of the observation window vote: queries at prompt positions
 * prompt_len - w .. prompt_len - 1. */
static void snapkv_observe(policy *p, const float *row, int n)
{
    snapkv *s = p->state;
    int t = p->entries[n - 1].position;
    if (t >= p->cfg.prompt_len || t < p->cfg.prompt_len - p->cfg.obs_window)
        return;
    for (int i = 0; i < n; i++)
        s->vote[i] += row[i];
}

/* PyramidKV: min = (B-w)/β, max = 2(B-w) - min (clamped to the prefix), layer l keeps
 * w + max - l·((max-min)/(L-1)); no compression for a prompt within B, and the uniform
 * B when the prompt is shorter than 2(B-w). */
static int pyramid_budget(const policy *p, int q_len)
{
    const policy_config *c = &p->cfg;
    int B = p->budget, w = c->obs_window, L = c->n_layers;
    if (L <= 1 || q_len <= B || B <= w || q_len < 2 * (B - w))
        return B;
    int min_n = (B - w) / c->beta;
    int max_n = 2 * (B - w) - min_n;
    if (max_n >= q_len - w) {
        max_n = q_len - w;
        min_n = 2 * (B - w) - max_n;
    }
    int steps = (max_n - min_n) / (L - 1);
    int keep = w + max_n - c->layer * steps;
    return keep < 1 ? 1 : keep;
}

static void snapkv_end_prompt(policy *p)
{
    snapkv *s = p->state;
    if (s->pyramid && p->budget != POLICY_BUDGET_UNLIMITED)
        p->budget = pyramid_budget(p, p->n);
}

/* Pool the votes of the prefix slots [0, m): max with -inf padding or average with
 * zero padding over the full kernel (PyTorch's max_pool1d / avg_pool1d). */
static void pool_votes(policy *p, int m)
{
    snapkv *s = p->state;
    int half = p->cfg.kernel / 2;
    for (int i = 0; i < m; i++) {
        double acc = p->cfg.pool == POLICY_POOL_MAX ? -INFINITY : 0;
        for (int j = i - half; j <= i + half; j++) {
            if (j < 0 || j >= m)
                continue;
            acc = p->cfg.pool == POLICY_POOL_MAX ? fmax(acc, s->vote[j]) : acc + s->vote[j];
        }
        s->pooled[i] = (float)(p->cfg.pool == POLICY_POOL_MAX ? acc : acc / p->cfg.kernel);
    }
}

static int snapkv_window(const policy *p)
{
    int w = p->cfg.obs_window;
    return w < p->budget ? w : p->budget;
}

static int snapkv_choose(policy *p, int k, int *out)
{
    snapkv *s = p->state;
    int m = p->n - snapkv_window(p);   /* the prefix; the window is kept */
    pool_votes(p, m);
    for (int i = 0; i < p->n; i++)
        s->mask[i] = i < m;
    return policy_pick_lowest(p, s->pooled, s->mask, k, out);
}

static void snapkv_remove(policy *p, const int *slots, int k)
{
    snapkv *s = p->state;
    policy_compact(s->vote, sizeof *s->vote, p->n, slots, k);
}

static int snapkv_scores(const policy *p, float *out)
{
    const snapkv *s = p->state;
    for (int i = 0; i < p->n; i++)
        out[i] = (float)s->vote[i];
    return 0;
}

static void snapkv_destroy(policy *p)
{
    snapkv *s = p->state;
    if (!s)
        return;
    free(s->vote), free(s->pooled), free(s->mask);
    free(s);
}

const policy_ops policy_snapkv_ops = {
    .name = "snapkv",
    .init = snapkv_init,
    .reserve = snapkv_reserve,
    .append = snapkv_append,
    .observe = snapkv_observe,
    .choose = snapkv_choose,
    .remove = snapkv_remove,
    .end_prompt = snapkv_end_prompt,
    .scores = snapkv_scores,
    .destroy = snapkv_destroy,
};
