/*
 * policy_lagkv.c — `lagkv`: score each entry by how much it deviates from the block
 * that follows it (LagKV, Liang et al., arXiv 2504.04704, as kvpress's LagKVPress
 * scores it).  No attention is read.
 *
 * After the first `sinks` (4) entries the cache is cut into blocks of `lag` (128).
 * Each block but the last is compared with the next one (its "lag" reference): per
 * channel, keys and values are min-max normalised by the next block's range; an
 * entry's score is the standard deviation of its normalised channels, softmaxed over
 * its block, keys and values averaged.  kvpress then ranks the entries within their
 * block (rank / lag, so every block keeps about the same share); the sinks and the
 * last block with the remainder score 1 and stay.  A cache shorter than sinks + 2·lag
 * scores by position (the newest kept).
 */
#include "policy_kvpress.h"

#include <math.h>
#include <stddef.h>

typedef struct lagkv {
    kvpress_scorer base;
    int            sinks;
    int            lag;
} lagkv;

static const policy_param lagkv_params[] = {
    {"sinks", POLICY_PARAM_INT, offsetof(lagkv, sinks), "4", 0, 1e9, NULL,
     "protected first positions (score 1)"},
    {"lag", POLICY_PARAM_INT, offsetof(lagkv, lag), "128", 2, 1e6, NULL,
     "lagkv: block length; each block is normalised by the next"},
    KVPRESS_CHUNK_PARAM,
    KVPRESS_CRITICAL_PARAMS,
    {0},
};

static const float *vec(const policy_vecs *s, int slot, int head, int v)
{
    return v ? policy_vecs_value(s, slot, head) : policy_vecs_key(s, slot, head);
}

/* Block [a, a+lag) of keys (v = 0) or values (v = 1) against [a+lag, a+2·lag): the
 * softmax over the block of the std (unbiased) over channels of the entries min-max
 * normalised by the reference, into sm[0..lag), each rounded to float as torch's
 * float32 steps round. */
static void block_softmax(const policy_vecs *s, int head, int a, int lag, int v, float *sm)
{
    const int dim = s->dim;
    double *lo = s->work, *range = s->work + dim;
    for (int d = 0; d < dim; d++) {
        float mn = INFINITY, mx = -INFINITY;
        for (int j = a + lag; j < a + 2 * lag; j++) {
            const float x = vec(s, j, head, v)[d];
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        }
        lo[d] = mn;
        range[d] = (float)(mx - mn);
    }
    double max = -INFINITY, sum = 0;
    for (int j = 0; j < lag; j++) {
        const float *x = vec(s, a + j, head, v);
        double m = 0, q = 0;
        for (int d = 0; d < dim; d++)
            m += (float)((float)(x[d] - (float)lo[d]) / (float)range[d]);
        m /= dim;
        for (int d = 0; d < dim; d++) {
            double y = (float)((float)(x[d] - (float)lo[d]) / (float)range[d]) - m;
            q += y * y;
        }
        sm[j] = (float)sqrt(q / (dim - 1));
        max = sm[j] > max ? sm[j] : max;
    }
    for (int j = 0; j < lag; j++)
        sum += exp(sm[j] - max);
    for (int j = 0; j < lag; j++)
        sm[j] = (float)(exp(sm[j] - max) / sum);
}

/* Entries of block [a, a+lag) score rank/lag, rank 0 the lowest (keys + values)/2
 * (ties: the earlier ranks lower). */
static void block_ranks(const policy_vecs *s, int head, int a, int lag, float *sk, float *sv,
                        double *out)
{
    block_softmax(s, head, a, lag, 0, sk);
    block_softmax(s, head, a, lag, 1, sv);
    for (int j = 0; j < lag; j++)
        sk[j] = (sk[j] + sv[j]) / 2.0f;
    for (int j = 0; j < lag; j++) {
        int rank = 0;
        for (int m = 0; m < lag; m++)
            rank += sk[m] < sk[j] || (sk[m] == sk[j] && m < j);
        out[a + j] += (float)rank / (float)lag;
    }
}

void kvpress_lagkv_scores(const policy_vecs *s, int head, int n, int sinks, int lag,
                          double *tmp, double *out)
{
    if (n < sinks + 2 * lag) {   /* too short for a reference: by position */
        for (int i = 0; i < n; i++)
            out[i] += i < sinks ? 1.0 : (double)(float)((double)(i - sinks) / (n - sinks));
        return;
    }
    const int end = sinks + (n - sinks) / lag * lag;
    float *sk = (float *)tmp, *sv = sk + n;   /* 2n doubles hold 4n floats */
    for (int i = 0; i < n; i++)
        out[i] += i < sinks || i >= end - lag ? 1.0 : 0.0;
    for (int a = sinks; a + 2 * lag <= end; a += lag)
        block_ranks(s, head, a, lag, sk, sv, out);
}

static void lagkv_head(policy *p, const policy_vecs *v, int head, int n, double *tmp,
                       double *acc)
{
    const lagkv *l = policy_state(p);
    kvpress_lagkv_scores(v, head, n, l->sinks, l->lag, tmp, acc);
}

static int lagkv_init(policy *p, kv_err *err) { return kvpress_scorer_init(p, lagkv_head, err); }

const policy_def policy_lagkv = {
    .name = "lagkv",
    .summary = "rank entries within lag blocks by their deviation from the next block; "
               "sinks and the last block kept",
    .provenance = "LagKV (arXiv 2504.04704); kvpress LagKVPress",
    .params = lagkv_params,
    .columns = kvpress_scorer_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_READS_KEYS | POLICY_READS_VALUES,
    .state_size = sizeof(lagkv),
    .ops = KVPRESS_SCORER_OPS(lagkv_init),
};
