/*
 * sampler.c — greedy and temperature / top-k / top-p sampling (sampler.h), with a
 * splitmix64 generator so that runs repeat exactly for a seed.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

typedef struct candidate {
    int32_t id;
    float   p;      /* logit, then probability */
} candidate;

struct sampler {
    sampler_config cfg;
    int            n_vocab;
    uint64_t       state;       /* splitmix64 */
    candidate     *cand;        /* (n_vocab,) */
};

sampler_config sampler_config_default(void)
{
    return (sampler_config){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
}

sampler *sampler_new(const sampler_config *cfg, int n_vocab, kv_err *err)
{
    if (!(cfg->temperature >= 0.0f) || cfg->top_k < 0 || !(cfg->top_p > 0.0f && cfg->top_p <= 1.0f)) {
        kv_errorf(err, KV_ERANGE, "sampler: temperature %g, top-k %d, top-p %g: expected "
                  "temperature >= 0, top-k >= 0 and top-p in (0, 1]", cfg->temperature,
                  cfg->top_k, cfg->top_p);
        return NULL;
    }
    sampler *s = calloc(1, sizeof *s);
    if (s)
        s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s || !s->cand) {
        sampler_free(s);
        kv_errorf(err, KV_ENOMEM, "sampler: out of memory for %d candidates", n_vocab);
        return NULL;
    }
    s->cfg = *cfg;
    s->n_vocab = n_vocab;
    s->state = cfg->seed;
    return s;
}

void sampler_free(sampler *s)
{
    if (!s)
        return;
    free(s->cand);
    free(s);
}

int32_t sampler_argmax(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* A uniform float in [0, 1) from splitmix64. */
static float next_uniform(sampler *s)
{
    uint64_t z = (s->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* Decreasing logit, then increasing id: a total order, so qsort's result is unique. */
static int by_logit_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Insert c into best[0..*n) (sorted by by_logit_desc, at most k long) if it belongs
 * among the k best: O(k) only when it does, which is rare after the first few. */
static void keep_best(candidate *best, int *n, int k, candidate c)
{
    if (*n == k && by_logit_desc(&c, &best[k - 1]) >= 0)
        return;
    int i = *n < k ? (*n)++ : k - 1;
    for (; i > 0 && by_logit_desc(&c, &best[i - 1]) < 0; i--)
        best[i] = best[i - 1];
    best[i] = c;
}

/* The candidates the filters allow, as probabilities at the temperature, sorted by
 * decreasing probability; returns how many.  Tokens below (1 − top_p)/(V − 1) cannot
 * be in the nucleus (llama2.c's argument), so they are dropped before sorting. */
static int filter(sampler *s, const float *logits)
{
    int V = s->n_vocab, n = 0, k = s->cfg.top_k > 0 && s->cfg.top_k < V ? s->cfg.top_k : V;
    float max = logits[sampler_argmax(logits, V)], sum = 0.0f, inv_t = 1.0f / s->cfg.temperature;
    for (int i = 0; i < V; i++)
        sum += expf((logits[i] - max) * inv_t);
    float cutoff = s->cfg.top_p < 1.0f ? (1.0f - s->cfg.top_p) / (float)(V - 1) : 0.0f;
    for (int i = 0; i < V; i++) {
        candidate c = {.id = i, .p = expf((logits[i] - max) * inv_t) / sum};
        if (c.p < cutoff)
            continue;
        if (k < V)
            keep_best(s->cand, &n, k, c);
        else
            s->cand[n++] = c;
    }
    if (k == V && s->cfg.top_p < 1.0f)
        qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
    float mass = 0.0f;
    for (int i = 0; i < n && s->cfg.top_p < 1.0f; i++)
        if ((mass += s->cand[i].p) >= s->cfg.top_p)
            return i + 1;
    return n;
}

int32_t sampler_sample(sampler *s, const float *logits)
{
    if (s->cfg.temperature == 0.0f)
        return sampler_argmax(logits, s->n_vocab);
    int n = filter(s, logits);
    float mass = 0.0f;
    for (int i = 0; i < n; i++)
        mass += s->cand[i].p;
    float r = next_uniform(s) * mass, cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += s->cand[i].p;
        if (r < cdf)
            return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}
