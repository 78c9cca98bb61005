/*
 * policy_chunkkv.c — `chunkkv`: keep whole chunks of consecutive entries, the same
 * chunks in every KV head of a layer (ChunkKV, Liu et al., arXiv 2502.00299, as
 * kvpress's ChunkKVPress wraps a scorer).
 *
 * Once, after the prompt: a base score (`chunk-score`: kvpress's knorm, keydiff, cur
 * or lagkv, with their defaults) is summed over the layer's KV heads; the cache is cut
 * into chunks of `chunk` (20) entries, the last one shorter; a chunk scores the mean of
 * its entries; the int(chunks · f) best chunks stay, f the kept fraction (the budget
 * when written as a fraction, else B / prompt length), at least one.  So the cache
 * keeps about, not exactly, B entries; the driver reports the mean size kept.
 * Keeping spans whole preserves the local context a single token's score ignores.
 * One stream per layer (scope-of layer): the kept slots apply to every KV head.
 */
#include "policy_kvpress.h"

#include <stddef.h>

enum { BASE_KNORM, BASE_KEYDIFF, BASE_CUR, BASE_LAGKV };

typedef struct chunkkv {
    kvpress_scorer base;
    int            chunk;
    int            score;   /* BASE_* */
} chunkkv;

static const policy_param chunkkv_params[] = {
    {"chunk", POLICY_PARAM_INT, offsetof(chunkkv, chunk), "20", 1, 1e6, NULL,
     "chunkkv: entries per chunk"},
    {"chunk-score", POLICY_PARAM_CHOICE, offsetof(chunkkv, score), "knorm", 0, 0,
     "knorm keydiff cur lagkv", "chunkkv: the base score, summed over KV heads"},
    {0},
};

static int chunkkv_init(policy *p, kv_err *err) { return kvpress_oneshot(p, 1, err); }

static void base_scores(policy *p, int n, double *acc)
{
    chunkkv *c = policy_state(p);
    const policy_vecs *s = &c->base.vecs;
    for (int h = 0; h < s->per; h++)
        switch (c->score) {
        case BASE_KNORM:   kvpress_knorm_scores(s, h, n, acc); break;
        case BASE_KEYDIFF: kvpress_keydiff_scores(s, h, n, acc); break;
        case BASE_CUR:     /* CURPress's defaults: 4 sinks, windows of 16, kv-product */
            kvpress_cur_scores(s, h, n, 4, 16, 3, c->base.tmp, acc);
            break;
        default:           /* LagKVPress's: 4 sinks, lag 128 */
            kvpress_lagkv_scores(s, h, n, 4, 128, c->base.tmp, acc);
        }
}

/* Mark the kept chunks in score[] (1 kept, 0 not) and make their size the budget. */
static void chunkkv_end_prompt(policy *p)
{
    chunkkv *c = policy_state(p);
    const int n = policy_size(p), L = c->chunk;
    if (c->base.vecs.missing || policy_budget_of(p) == POLICY_BUDGET_UNLIMITED || n <= L)
        return;
    double *acc = c->base.acc;
    float *chunk_score = (float *)c->base.tmp + 2 * n;   /* tmp holds 4n floats */
    for (int i = 0; i < n; i++)
        acc[i] = 0;
    base_scores(p, n, acc);
    const int chunks = (n + L - 1) / L;
    for (int j = 0; j < chunks; j++) {
        const int a = j * L, b = a + L < n ? a + L : n;
        double sum = 0;
        for (int i = a; i < b; i++)
            sum += (float)acc[i];
        chunk_score[j] = (float)(sum / (b - a));
    }
    int keep = (int)(chunks * kvpress_kept_fraction(p, n)), kept = 0;
    keep = keep < 1 ? 1 : keep;
    for (int j = 0; j < chunks; j++) {   /* chunk j stays when fewer than keep beat it */
        int better = 0;
        for (int m = 0; m < chunks; m++)
            better += chunk_score[m] > chunk_score[j] ||
                      (chunk_score[m] == chunk_score[j] && m > j);
        for (int i = j * L; i < (j + 1) * L && i < n; i++)
            c->base.score[i] = better < keep;
        kept += better < keep ? (j + 1) * L < n ? L : n - j * L : 0;
    }
    policy_set_budget(p, kept);
}

static int chunkkv_choose(policy *p, int k, int *out)
{
    chunkkv *c = policy_state(p);
    int m = policy_pick_lowest(p, c->base.score, NULL, k, out);
    policy_vecs_drop(&c->base.vecs, policy_size(p), out, m, c->base.drop);
    return m;
}

const policy_def policy_chunkkv = {
    .name = "chunkkv",
    .summary = "oneshot: keep the best chunks of 20 by a base score summed over heads; "
               "same chunks for every head",
    .provenance = "ChunkKV (arXiv 2502.00299); kvpress ChunkKVPress",
    .params = chunkkv_params,
    .columns = kvpress_scorer_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_LAYER,
    .flags = POLICY_READS_KEYS | POLICY_READS_VALUES,
    .state_size = sizeof(chunkkv),
    .ops = {.init = chunkkv_init, .append = kvpress_scorer_append,
            .end_prompt = chunkkv_end_prompt, .choose = chunkkv_choose,
            .destroy = kvpress_scorer_destroy},
};
