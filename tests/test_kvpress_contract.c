/*
 * test_kvpress_contract.c — what the kvpress-derived policies need from the contract,
 * without the model (the fast tier): the RoPE rotation a policy undoes, the drivers'
 * refusals when a source cannot give queries or the output projection, and per-layer
 * budgets (`layer-budgets`, kvpress's PerLayerCompressionPress).  Their kept sets are
 * checked against kvpress itself in tests/test_kvpress.c.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "policy.h"
#include "replay_run.h"

/* The forward pass's rotation of pair (a, b) by the float angle position · freq. */
static void rotate(float *x, const float *freq, int dim, int halves, int position)
{
    const int pair = halves ? 1 : 2, partner = halves ? dim / 2 : 1;
    for (int i = 0; i < dim / 2; i++) {
        const float angle = (float)position * freq[i];
        const float c = cosf(angle), s = sinf(angle);
        const float a = x[i * pair], b = x[i * pair + partner];
        x[i * pair] = a * c - b * s;
        x[i * pair + partner] = a * s + b * c;
    }
}

Test(kvpress_contract, rope_unrotate_inverts_both_pairings)
{
    enum { D = 16 };
    float freq[D / 2];
    for (int i = 0; i < D / 2; i++)
        freq[i] = 1.0f / powf(10000.0f, (float)(2 * i) / D);
    for (int halves = 0; halves <= 1; halves++)
        for (int position = 0; position < 5000; position += 611) {
            float x[D], y[D];
            for (int d = 0; d < D; d++)
                x[d] = y[d] = sinf(0.7f * (float)d + 0.1f * halves) * (float)(d + 1);
            rotate(y, freq, D, halves, position);
            if (position > 0)
                cr_assert(fabsf(y[0] - x[0]) + fabsf(y[D - 2] - x[D - 2]) > 1e-3f,
                          "the rotation moved the vector");
            const policy_rope r = {freq, D, halves};
            policy_rope_unrotate(&r, y, position);
            for (int d = 0; d < D; d++)
                cr_assert(fabsf(y[d] - x[d]) <= 2e-6f * (fabsf(x[d]) + 1),
                          "pairing %d, position %d, dim %d: %g after the round trip, was %g",
                          halves, position, d, y[d], x[d]);
        }
}

static void refused(const char *line, const char *says)
{
    run r;
    run_words(&r, line);
    cr_assert_eq(r.rc, KV_EUSAGE, "%s: rc %d (%s)", line, r.rc, r.err.msg);
    cr_assert(strstr(r.err.msg, says), "%s: '%s' should say '%s'", line, r.err.msg, says);
    run_free(&r);
}

Test(kvpress_contract, drivers_refuse_what_they_cannot_lend)
{
    /* a synthetic source records keys and values but no queries, and no model */
    refused("replay synth:T=64,layers=1,heads=2,kv=1,dim=8 --policy expected-attention "
            "--budget 16", "no queries recorded");
    refused("replay synth:T=64,layers=1,heads=2,kv=1,dim=8 --policy keydiff --critical 0.5 "
            "--budget 16", "give --model FILE");
    refused("replay synth:T=64,layers=1,heads=2,kv=1,dim=8 --policy keydiff --critical 0.5 "
            "--scope-of layer --budget 16", "critical runs per KV head");
    refused("replay synth:T=64,layers=2,heads=2,kv=1,dim=8 --policy recency --budget 16 "
            "--layer-budgets 8", "layer 1 has none");
    refused("replay synth:T=64,layers=1,heads=2,kv=1,dim=8 --policy recency --budget 16 "
            "--layer-budgets 8,x", "layer-budgets, layer 1");
}

/* Each layer keeps its own B; the nominal --budget decides the steps averaged. */
Test(kvpress_contract, layer_budgets_give_each_layer_its_own_budget)
{
    run r;
    run_words(&r, "replay synth:T=64,layers=2,heads=2,kv=1,dim=8 --policy recency "
                  "--budget 8 --layer-budgets 4,0.25 --metrics mass");
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    const replay_plan *plan = &r.setup.plan;
    /* steps t = 8..63: layer 0 (B 4) attends B + 1 = 5 entries at each; layer 1 (B =
     * floor(0.25 · 64) = 16) attends t + 1 up to 17 */
    const double want[2] = {5.0, (9 + 10 + 11 + 12 + 13 + 14 + 15 + 16 + 48.0 * 17) / 56};
    for (int l = 0; l < 2; l++) {
        const replay_acc *a = replay_acc_at(r.acc, plan, 0, l, 0);
        cr_assert_eq(a->steps, 56, "layer %d: %ld steps", l, a->steps);
        cr_assert_float_eq(a->cache / a->steps, want[l], 1e-12, "layer %d: mean cache %g",
                           l, a->cache / a->steps);
    }
    run_free(&r);
}
