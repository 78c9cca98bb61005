/*
 * policy_expected.c — `expected-attention`: keep the entries that future queries are
 * expected to attend, weighted by their value norm (Expected Attention, Devoto et al.,
 * arXiv 2510.00636, as kvpress's ExpectedAttentionPress scores it).
 *
 * The queries a model will issue are modelled as a Gaussian: the mean μ and covariance
 * Σ of the pre-RoPE queries seen so far (those of positions >= `sinks`), per query head.
 * The next `n-future` (512) positions q_len .. q_len + n-future − 1 will rotate them, so
 * both are turned by the rotation R̄ averaged over those positions (per dimension pair
 * the 2x2 block [c̄ −s̄; s̄ c̄] of the mean cos and sin).  Under that Gaussian the expected
 * exp(q·k/√D) is exp(k·μ'/√D + kᵀΣ'k/(2D)); its softmax over the cache (the first
 * `sinks` entries excluded) is averaged over the group's query heads and multiplied by
 * ‖v‖₂ (+ `epsilon` first; `vnorm` no: not multiplied).  The sinks are always kept.
 *
 * Queries reach a policy post-RoPE (the trace stores them so, and the live forward pass
 * shows them so); each one is turned back at its position with the layer's frequencies
 * (policy_rope_unrotate: the transpose of the forward pass's float rotation, exact to a
 * few ulp), so the policy needs both (POLICY_READS_QUERIES; docs/POLICIES.md).  Memory:
 * G·D² doubles per stream for Σ (48 KiB for SmolLM2's 3 heads of 64), plus the keys and
 * values kept, as every kvpress scorer.
 */
#include "policy_kvpress.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct expected {
    kvpress_scorer base;
    int            future;     /* n-future */
    int            sinks;
    int            covariance; /* 0 no, 1 yes */
    int            vnorm;      /* 0 no, 1 yes */
    double         epsilon;
    int            G, D;       /* queries per stream and their size, from the first */
    long           count;      /* queries summed */
    double        *sum;        /* (G, D) Σ q */
    double        *outer;      /* (G, D, D) Σ q qᵀ */
    double        *mu, *cov;   /* (D), (D, D) one head's rotated statistics */
    double        *cbar, *sbar;/* (D/2) the averaged rotation per pair */
    float         *q;          /* (D) one query turned back */
    int            missing;    /* a query or the RoPE was not lent */
} expected;

static const policy_param expected_params[] = {
    {"n-future", POLICY_PARAM_INT, offsetof(expected, future), "512", 1, 1e7, NULL,
     "expected-attention: future positions the RoPE rotation is averaged over"},
    {"sinks", POLICY_PARAM_INT, offsetof(expected, sinks), "4", 0, 1e9, NULL,
     "protected first positions (their queries are not counted)"},
    {"covariance", POLICY_PARAM_CHOICE, offsetof(expected, covariance), "yes", 0, 0,
     "no yes", "expected-attention: use the queries' covariance (no: the mean only)"},
    {"vnorm", POLICY_PARAM_CHOICE, offsetof(expected, vnorm), "yes", 0, 0, "no yes",
     "expected-attention: multiply by the value L2 norm"},
    {"epsilon", POLICY_PARAM_REAL, offsetof(expected, epsilon), "0", 0, 1e9, NULL,
     "expected-attention: added to the score before the value norm"},
    KVPRESS_CRITICAL_PARAMS,
    {0},
};

static int stats_alloc(expected *e, int G, int D)
{
    e->G = G;
    e->D = D;
    e->sum = calloc((size_t)G * D, sizeof *e->sum);
    e->outer = calloc((size_t)G * D * D, sizeof *e->outer);
    e->mu = calloc((size_t)D, sizeof *e->mu);
    e->cov = calloc((size_t)D * D, sizeof *e->cov);
    e->cbar = calloc((size_t)D, sizeof *e->cbar);
    e->sbar = calloc((size_t)D, sizeof *e->sbar);
    e->q = calloc((size_t)D, sizeof *e->q);
    return e->sum && e->outer && e->mu && e->cov && e->cbar && e->sbar && e->q ? 0 : -1;
}

/* Every query of the joining entry, turned back, into Σ q and Σ q qᵀ (upper half). */
static void add_queries(policy *p, expected *e, const policy_vectors *v, int position)
{
    const int D = v->dim;
    for (int g = 0; g < v->n_query; g++) {
        memcpy(e->q, v->query + (size_t)g * D, (size_t)D * sizeof *e->q);
        policy_rope_unrotate(policy_rope_of(p), e->q, position);
        double *sum = e->sum + (size_t)g * D, *outer = e->outer + (size_t)g * D * D;
        for (int a = 0; a < D; a++) {
            sum[a] += e->q[a];
            for (int b = a; b < D; b++)
                outer[(size_t)a * D + b] += (double)e->q[a] * e->q[b];
        }
    }
    e->count++;
}

static void expected_append(policy *p, int slot, const policy_vectors *v)
{
    expected *e = policy_state(p);
    kvpress_scorer_append(p, slot, v);
    if (e->missing)
        return;
    if (!v || !v->query || v->n_query < 1 || !policy_rope_of(p)->freq ||
        (e->G && (e->G != v->n_query || e->D != v->dim)) ||
        (!e->G && stats_alloc(e, v->n_query, v->dim) != 0)) {
        e->missing = 1;
        return;
    }
    const int position = policy_entries(p)[slot].position;
    if (position >= e->sinks)
        add_queries(p, e, v, position);
}

/* The rotation averaged over positions q_len .. q_len + n-future − 1, per pair, the
 * angles in float as the forward pass forms them (kvpress: torch's rotary embedding). */
static void average_rotation(policy *p, expected *e)
{
    const policy_rope *r = policy_rope_of(p);
    const int q_len = policy_seen(p);
    for (int i = 0; i < r->n_rot / 2; i++) {
        double c = 0, s = 0;
        for (int t = q_len; t < q_len + e->future; t++) {
            const float angle = (float)t * r->freq[i];
            c += cosf(angle);
            s += sinf(angle);
        }
        e->cbar[i] = c / e->future;
        e->sbar[i] = s / e->future;
    }
}

/* x ← R̄ x for a vector of D (a pair's block; dimensions past n_rot unchanged). */
static void turn(const policy_rope *r, const expected *e, double *x, size_t step)
{
    const int pair = r->halves ? 1 : 2, partner = r->halves ? r->n_rot / 2 : 1;
    for (int i = 0; i < r->n_rot / 2; i++) {
        double *a = x + (size_t)i * pair * step, *b = x + (size_t)(i * pair + partner) * step;
        const double xa = *a, xb = *b;
        *a = e->cbar[i] * xa - e->sbar[i] * xb;
        *b = e->sbar[i] * xa + e->cbar[i] * xb;
    }
}

/* μ' = R̄ μ and Σ' = R̄ Σ R̄ᵀ of query head g, Σ = Σqqᵀ/N − μμᵀ (kvpress: the centred
 * sum over N, the same in exact arithmetic). */
static void rotated_stats(policy *p, expected *e, int g)
{
    const int D = e->D;
    const double N = (double)e->count;
    const double *sum = e->sum + (size_t)g * D, *outer = e->outer + (size_t)g * D * D;
    for (int a = 0; a < D; a++)
        e->mu[a] = sum[a] / N;
    for (int a = 0; a < D; a++)
        for (int b = a; b < D; b++)
            e->cov[(size_t)a * D + b] = e->cov[(size_t)b * D + a] =
                outer[(size_t)a * D + b] / N - e->mu[a] * e->mu[b];
    const policy_rope *r = policy_rope_of(p);
    turn(r, e, e->mu, 1);
    for (int a = 0; a < D; a++)   /* R̄ Σ: each column */
        turn(r, e, e->cov + a, (size_t)D);
    for (int a = 0; a < D; a++)   /* (R̄ Σ) R̄ᵀ: each row */
        turn(r, e, e->cov + (size_t)a * D, 1);
}

/* The expected logit of key k under head g's rotated statistics. */
static double expected_logit(const expected *e, const float *k)
{
    const int D = e->D;
    double lin = 0, quad = 0;
    for (int a = 0; a < D; a++) {
        lin += k[a] * e->mu[a];
        if (e->covariance) {
            double row = 0;
            for (int b = 0; b < D; b++)
                row += e->cov[(size_t)a * D + b] * k[b];
            quad += k[a] * row;
        }
    }
    return lin / sqrt((double)D) + quad / D / 2;
}

static float l2(const float *x, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++)
        s += (double)x[d] * x[d];
    return (float)sqrt(s);
}

/* KV head `head`: the mean over its query heads of the softmax of the expected logits
 * over slots sinks..n-1, times ‖v‖₂; the sinks score above everything. */
static void expected_head(policy *p, const policy_vecs *v, int head, int n, double *tmp,
                          double *acc)
{
    expected *e = policy_state(p);
    const int G = e->G / v->per, lo = e->sinks < n ? e->sinks : n;
    double *z = tmp, *mean = tmp + n;
    for (int i = 0; i < n; i++)
        mean[i] = 0;
    for (int g = head * G; g < (head + 1) * G; g++) {
        rotated_stats(p, e, g);
        double top = -INFINITY, sum = 0;
        for (int i = lo; i < n; i++) {
            z[i] = expected_logit(e, policy_vecs_key(v, i, head));
            top = z[i] > top ? z[i] : top;
        }
        for (int i = lo; i < n; i++)
            sum += z[i] = exp(z[i] - top);
        for (int i = lo; i < n; i++)
            mean[i] += z[i] / sum / G;
    }
    for (int i = 0; i < n; i++)
        acc[i] += i < lo ? 1e30
                : e->vnorm ? (mean[i] + e->epsilon) * l2(policy_vecs_value(v, i, head), v->dim)
                           : mean[i];
}

static int expected_choose(policy *p, int k, int *out)
{
    expected *e = policy_state(p);
    if (e->missing || e->count == 0)
        return 0;   /* no queries, no expectation: nothing is chosen (knorm's rule) */
    average_rotation(p, e);
    return kvpress_scorer_choose(p, k, out);
}

/* The RoPE and the queries are the driver's to give (POLICY_READS_QUERIES: replay and
 * live generation refuse a source without them); a stream without them evicts nothing. */
static int expected_init(policy *p, kv_err *err)
{
    return kvpress_scorer_init(p, expected_head, err);
}

static void expected_destroy(policy *p)
{
    expected *e = policy_state(p);
    free(e->sum);
    free(e->outer);
    free(e->mu);
    free(e->cov);
    free(e->cbar);
    free(e->sbar);
    free(e->q);
    kvpress_scorer_destroy(p);
}

#define EXPECTED_OPS                                                                    \
    {.init = expected_init, .append = expected_append,                                   \
     .end_prompt = kvpress_scorer_end_prompt, .choose = expected_choose,                 \
     .destroy = expected_destroy}

const policy_def policy_expected_attention = {
    .name = "expected-attention",
    .summary = "keep the largest expected future attention (query mean and covariance, "
               "averaged RoPE) x value norm; 4 sinks; oneshot",
    .provenance = "Expected Attention (arXiv 2510.00636); kvpress ExpectedAttentionPress",
    .params = expected_params,
    .columns = kvpress_scorer_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_READS_KEYS | POLICY_READS_VALUES | POLICY_READS_QUERIES,
    .state_size = sizeof(expected),
    .ops = EXPECTED_OPS,
};

/* kvpress's CriticalKVPress as it is used: around ExpectedAttentionPress without its
 * value norm (kvpress warns that use_vnorm should be off there), first stage 0.5. */
const policy_def policy_criticalkv = {
    .name = "criticalkv",
    .summary = "CriticalKV around expected-attention (vnorm no): half the kept entries by "
               "the score, the rest by score x ||W_o v||_1; oneshot",
    .provenance = "CriticalKV (arXiv 2502.03805); kvpress CriticalKVPress(ExpectedAttentionPress)",
    .base = &policy_expected_attention,
    .defaults = "critical=0.5,vnorm=no",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_READS_KEYS | POLICY_READS_VALUES | POLICY_READS_QUERIES,
    .state_size = sizeof(expected),
    .ops = EXPECTED_OPS,
};
