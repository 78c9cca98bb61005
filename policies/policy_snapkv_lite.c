/*
 * policy_snapkv_lite.c — `snapkv-lite`: SnapKV without attention, as the kvcompress
 * study defines it (its "SnapKV-Lite"; reference/seed-studies.md section A).
 *
 * The newest w = `obs-window` entries are kept (SnapKV's observation window); every
 * older entry is scored by its inverted key L2 norm, −‖k_i‖₂ (KnormPress's signal:
 * a small key norm marks a key that draws attention), smoothed by max pooling over
 * `kernel` neighbours among the older entries, so that spans survive together; the
 * lowest pooled scores go.  It needs no attention rows at all ("lite"), and unlike
 * snapkv it streams (phase stream, the stride rule): the study applies it to the
 * cache whenever it is over size.  Our snapkv votes with the window's attention and
 * compresses the prompt once; the two are different policies.
 */
#include "policy.h"

#include <math.h>
#include <stddef.h>

typedef struct snapkv_lite {
    int            obs_window;  /* w */
    int            kernel;      /* pooling width, odd */
    float         *norm;        /* (slot) ‖k‖₂, NaN when unknown */
    float         *pooled;      /* (slot, scratch) the eviction score */
    unsigned char *mask;        /* (slot, scratch) 1 = older than the window */
} snapkv_lite;

static const policy_param lite_params[] = {
    {"obs-window", POLICY_PARAM_INT, offsetof(snapkv_lite, obs_window), "32", 1, 1e6, NULL,
     "snapkv: observation window w, the last w prompt queries"},
    {"kernel", POLICY_PARAM_INT, offsetof(snapkv_lite, kernel), "7", 1, 999, NULL,
     "snapkv: pooling width (odd)"},
    {0},
};

static const policy_column lite_columns[] = {
    POLICY_COLUMN(snapkv_lite, norm), POLICY_SCRATCH(snapkv_lite, pooled),
    POLICY_SCRATCH(snapkv_lite, mask), {0},
};

static int lite_init(policy *p, kv_err *err)
{
    const snapkv_lite *s = policy_state(p);
    if (s->kernel % 2 == 0)
        return kv_errorf(err, KV_EUSAGE, "snapkv-lite: kernel %d must be odd", s->kernel);
    policy_add_flags(p, POLICY_READS_KEYS);
    return KV_OK;
}

static void lite_append(policy *p, int slot, const policy_vectors *v)
{
    ((snapkv_lite *)policy_state(p))->norm[slot] = policy_key_norm(v);
}

/* Max pooling of −‖k‖ over the kernel within the older slots [0, m); an entry with an
 * unknown norm is never chosen (+inf), as knorm. */
static void pool_norms(snapkv_lite *s, int m)
{
    const int half = s->kernel / 2;
    for (int i = 0; i < m; i++) {
        float best = -INFINITY;
        for (int j = i - half; j <= i + half; j++)
            if (j >= 0 && j < m && !isnan(s->norm[j]))
                best = fmaxf(best, -s->norm[j]);
        s->pooled[i] = isnan(s->norm[i]) ? INFINITY : best;
    }
}

static int lite_choose(policy *p, int k, int *out)
{
    snapkv_lite *s = policy_state(p);
    const int n = policy_size(p), B = policy_budget_of(p);
    const int w = s->obs_window < B ? s->obs_window : B;
    const int m = n - w > 0 ? n - w : 0;   /* the newest w are kept */
    pool_norms(s, m);
    for (int i = 0; i < n; i++)
        s->mask[i] = i < m;
    return policy_pick_lowest(p, s->pooled, s->mask, k, out);
}

static int lite_scores(const policy *p, float *out)
{
    const snapkv_lite *s = policy_state(p);
    for (int i = 0; i < policy_size(p); i++)
        out[i] = -s->norm[i];
    return 0;
}

const policy_def policy_snapkv_lite = {
    .name = "snapkv-lite",
    .summary = "keep the newest obs-window; older entries by max-pooled inverted key norm",
    .provenance = "kvcompress study's SnapKV-Lite (no attention voting)",
    .params = lite_params,
    .columns = lite_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(snapkv_lite),
    .ops = {.init = lite_init, .append = lite_append, .choose = lite_choose,
            .scores = lite_scores},
};
