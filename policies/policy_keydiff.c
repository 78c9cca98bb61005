/*
 * policy_keydiff.c — `keydiff`: keep the keys least like the average key (KeyDiff,
 * Park et al., arXiv 2504.15364, as kvpress's KeyDiffPress scores it).
 *
 * The anchor is the mean of the cache's L2-normalised keys; an entry's score is
 * −cos(k_i, anchor), so keys pointing away from the crowd are kept.  No attention is
 * read: it works with any attention kernel.  kvpress applies it once to the context
 * (the default here); the paper evicts block by block, which `--phase stream --stride
 * S` gives (the anchor then averages the entries in the cache at that moment).
 */
#include "policy_kvpress.h"

#include <math.h>

/* torch: F.normalize divides by max(‖x‖, 1e-12); cosine_similarity by max(‖x‖·‖y‖, 1e-8). */
static double norm2(const float *x, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++)
        s += (double)x[d] * x[d];
    return sqrt(s);
}

void kvpress_keydiff_scores(const policy_vecs *s, int head, int n, double *out)
{
    double *anchor = s->work;
    const int dim = s->dim;
    for (int d = 0; d < dim; d++)
        anchor[d] = 0;
    for (int i = 0; i < n; i++) {
        const float *k = policy_vecs_key(s, i, head);
        double len = fmax(norm2(k, dim), 1e-12);
        for (int d = 0; d < dim; d++)
            anchor[d] += k[d] / len;
    }
    double alen = 0;
    for (int d = 0; d < dim; d++) {
        anchor[d] /= n;
        alen += anchor[d] * anchor[d];
    }
    alen = sqrt(alen);
    for (int i = 0; i < n; i++) {
        const float *k = policy_vecs_key(s, i, head);
        double dot = 0;
        for (int d = 0; d < dim; d++)
            dot += k[d] * anchor[d];
        out[i] -= dot / fmax(norm2(k, dim) * alen, 1e-8);
    }
}

static void keydiff_head(policy *p, const policy_vecs *v, int head, int n, double *tmp,
                         double *acc)
{
    (void)p, (void)tmp;
    kvpress_keydiff_scores(v, head, n, acc);
}

static int keydiff_init(policy *p, kv_err *err)
{
    return kvpress_scorer_init(p, keydiff_head, err);
}

static const policy_param keydiff_params[] = {KVPRESS_CHUNK_PARAM, KVPRESS_CRITICAL_PARAMS,
                                               {0}};

const policy_def policy_keydiff = {
    .name = "keydiff",
    .summary = "keep the keys least similar (cosine) to the mean normalised key; oneshot",
    .provenance = "KeyDiff (arXiv 2504.15364); kvpress KeyDiffPress",
    .params = keydiff_params,
    .columns = kvpress_scorer_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_READS_KEYS | POLICY_READS_VALUES,
    .state_size = sizeof(kvpress_scorer),
    .ops = KVPRESS_SCORER_OPS(keydiff_init),
};
