/*
 * policy_scored.c — the score × scope family (EasyKV / RoCo's framing of eviction as
 * an importance score plus an eviction scope).
 *
 * Presets: scored, random, recency, streaming, h2o, mas, roco, tova, scissorhands,
 * knorm, oracle; pace and adakv build on the same statistics.  Per entry i, over the
 * queries τ that attended it (a_τ(i) = the reduced, renormalised row):
 *
 *     S(i) = Σ a_τ(i)      Q(i) = Σ a_τ(i)²      c(i) = number of such queries,
 *
 * counting the entry's own query, so c >= 1 at every eviction (invariant 2).  The sums
 * are doubles, accumulated in step order; scores are compared as floats (the double
 * value rounded once), so an independent reference can reproduce every choice
 * exactly (tests/fixtures/policy_reference.py).  Rules: docs/POLICIES.md.
 */
#include "policy_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct scored {
    double        *S;        /* (capacity,) Σ a */
    double        *Q;        /* (capacity,) Σ a² */
    int           *c;        /* (capacity,) queries that attended the entry */
    float         *last;     /* (capacity,) the latest reduced row (ltas) */
    float         *key;      /* (capacity,) uniform draws (random) */
    int           *unimp;    /* (capacity,) aqas: unimportant steps in the history */
    uint64_t      *bits;     /* (capacity, words) aqas: ring of "unimportant" bits */
    int            words;    /* 64-bit words per entry in `bits` */
    long           step;     /* rows observed so far: the ring's clock */
    float         *score;    /* (capacity,) scratch */
    unsigned char *mask;     /* (capacity,) scratch: 1 = candidate */
    int           *block;    /* (capacity,) scratch: pace's would-be victims */
    float         *sigma;    /* (capacity,) scratch: σ of the std scope */
} scored;

/* --- lifecycle ------------------------------------------------------------------- */

int policy__scored_uses(const policy_config *cfg, const char *key)
{
    if (!strcmp(key, "score") || !strcmp(key, "scope"))
        return 1;
    if (!strcmp(key, "sinks"))
        return (cfg->scope & POLICY_SCOPE_SINKS) != 0;
    if (!strcmp(key, "window"))
        return (cfg->scope & (POLICY_SCOPE_WINDOW | POLICY_SCOPE_STD)) != 0;
    if (!strcmp(key, "recent"))
        return (cfg->scope & POLICY_SCOPE_STD) != 0;
    if (!strcmp(key, "history"))
        return cfg->score == POLICY_SCORE_AQAS;
    if (!strcmp(key, "skip-layers"))
        return cfg->score == POLICY_SCORE_KNORM;
    return 0;
}

int policy__scored_init(policy *p, char *err, size_t errlen)
{
    if (p->cfg.score == POLICY_SCORE_PRESET)
        return policy__fail(err, errlen, "policy '%s' needs a score: aas, mas, ltas, aqas, "
                            "knorm, recency, random or oracle", p->info->name);
    scored *s = calloc(1, sizeof *s);
    if (!s)
        return policy__fail(err, errlen, "out of memory");
    p->state = s;
    if (p->cfg.score == POLICY_SCORE_AQAS)
        s->words = (p->cfg.history + 63) / 64;
    /* KnormPress skips the first layers: there the cache is kept whole (and the
     * driver's mean cache size says so). */
    if (p->cfg.score == POLICY_SCORE_KNORM && p->cfg.layer < p->cfg.skip_layers)
        p->budget = POLICY_BUDGET_UNLIMITED;
    return 0;
}

static int grow(void **ptr, size_t size)
{
    void *q = realloc(*ptr, size);
    if (!q)
        return -1;
    *ptr = q;
    return 0;
}

int policy__scored_reserve(policy *p, int capacity)
{
    scored *s = p->state;
    size_t n = (size_t)capacity;
    if (grow((void **)&s->S, n * sizeof *s->S) || grow((void **)&s->Q, n * sizeof *s->Q) ||
        grow((void **)&s->c, n * sizeof *s->c) || grow((void **)&s->last, n * sizeof *s->last) ||
        grow((void **)&s->key, n * sizeof *s->key) || grow((void **)&s->score, n * sizeof *s->score) ||
        grow((void **)&s->mask, n * sizeof *s->mask) || grow((void **)&s->block, n * sizeof *s->block) ||
        grow((void **)&s->sigma, n * sizeof *s->sigma))
        return -1;
    if (s->words && (grow((void **)&s->unimp, n * sizeof *s->unimp) ||
                     grow((void **)&s->bits, n * (size_t)s->words * sizeof *s->bits)))
        return -1;
    return 0;
}

void policy__scored_destroy(policy *p)
{
    scored *s = p->state;
    if (!s)
        return;
    free(s->S), free(s->Q), free(s->c), free(s->last), free(s->key);
    free(s->unimp), free(s->bits), free(s->score), free(s->mask), free(s->block), free(s->sigma);
    free(s);
}

/* --- statistics ------------------------------------------------------------------ */

void policy__scored_append(policy *p, int slot)
{
    scored *s = p->state;
    s->S[slot] = s->Q[slot] = 0;
    s->c[slot] = 0;
    s->last[slot] = 0;
    /* 24 random bits: exactly representable, uniform in [0, 1). */
    s->key[slot] = p->cfg.score == POLICY_SCORE_RANDOM
                       ? (float)(policy_rand_u64(p) >> 40) * (1.0f / 16777216.0f) : 0;
    if (s->words) {
        s->unimp[slot] = 0;
        memset(s->bits + (size_t)slot * s->words, 0, (size_t)s->words * sizeof *s->bits);
    }
}

/* Scissorhands: a step is unimportant for i when a_τ(i) < 1/|cache at τ|.  A ring of
 * `history` bits per entry, indexed by the shared step clock, drops the step that
 * leaves the history as the new one enters; bits of steps before the entry joined
 * were cleared by append. */
static void observe_aqas(policy *p, const float *row, int n)
{
    scored *s = p->state;
    int bit = (int)(s->step % p->cfg.history);
    uint64_t m = 1ull << (bit % 64);
    double uniform = 1.0 / n;
    for (int i = 0; i < n; i++) {
        uint64_t *w = s->bits + (size_t)i * s->words + bit / 64;
        int was = (*w & m) != 0, now = (double)row[i] < uniform;
        s->unimp[i] += now - was;
        *w = now ? (*w | m) : (*w & ~m);
    }
}

void policy__scored_observe(policy *p, const float *row, int n)
{
    scored *s = p->state;
    for (int i = 0; i < n; i++) {
        double a = row[i];
        s->S[i] += a;
        s->Q[i] += a * a;
        s->c[i]++;
    }
    memcpy(s->last, row, (size_t)n * sizeof *row);
    if (s->words)
        observe_aqas(p, row, n);
    s->step++;
}

void policy__scored_remove(policy *p, const int *slots, int k)
{
    scored *s = p->state;
    int n = p->n;
    policy_compact(s->S, sizeof *s->S, n, slots, k);
    policy_compact(s->Q, sizeof *s->Q, n, slots, k);
    policy_compact(s->c, sizeof *s->c, n, slots, k);
    policy_compact(s->last, sizeof *s->last, n, slots, k);
    policy_compact(s->key, sizeof *s->key, n, slots, k);
    if (s->words) {
        policy_compact(s->unimp, sizeof *s->unimp, n, slots, k);
        policy_compact(s->bits, (size_t)s->words * sizeof *s->bits, n, slots, k);
    }
}

double policy__scored_sigma(const policy *p, int slot)
{
    const scored *s = p->state;
    if (s->c[slot] == 0)
        return 0;
    double mean = s->S[slot] / s->c[slot];
    double var = s->Q[slot] / s->c[slot] - mean * mean;
    return var > 0 ? sqrt(var) : 0;   /* rounding can make var slightly negative */
}

/* --- scores ---------------------------------------------------------------------- */

static float score_of(const policy *p, int i)
{
    const scored *s = p->state;
    switch (p->cfg.score) {
    case POLICY_SCORE_AAS:     return (float)s->S[i];
    case POLICY_SCORE_MAS:     return s->c[i] ? (float)(s->S[i] / s->c[i]) : 0.0f;
    case POLICY_SCORE_LTAS:    return s->last[i];
    case POLICY_SCORE_AQAS: {
        int h = s->c[i] < p->cfg.history ? s->c[i] : p->cfg.history;
        return h ? (float)((double)(h - s->unimp[i]) / h) : 1.0f;
    }
    case POLICY_SCORE_KNORM: {  /* small norms are kept; an unknown norm is never chosen */
        float norm = p->entries[i].key_norm;
        return isnan(norm) ? INFINITY : -norm;
    }
    case POLICY_SCORE_RECENCY: return (float)p->entries[i].position;
    case POLICY_SCORE_RANDOM:  return s->key[i];
    case POLICY_SCORE_ORACLE:  return p->future ? p->future[i] : 0.0f;
    case POLICY_SCORE_PRESET:  break;
    }
    return 0;
}

int policy__scored_scores(const policy *p, float *out)
{
    const scored *s = p->state;
    int n = p->n;
    switch (p->cfg.score) {   /* one loop per score: this runs at every eviction */
    case POLICY_SCORE_AAS:
        for (int i = 0; i < n; i++)
            out[i] = (float)s->S[i];
        break;
    case POLICY_SCORE_MAS:
        for (int i = 0; i < n; i++)
            out[i] = s->c[i] ? (float)(s->S[i] / s->c[i]) : 0.0f;
        break;
    case POLICY_SCORE_LTAS:
        memcpy(out, s->last, (size_t)n * sizeof *out);
        break;
    case POLICY_SCORE_RANDOM:
        memcpy(out, s->key, (size_t)n * sizeof *out);
        break;
    default:
        for (int i = 0; i < n; i++)
            out[i] = score_of(p, i);
    }
    return 0;
}

/* --- scopes ---------------------------------------------------------------------- */

/* Protect up to `want` of the newest candidates, at most `*room` in all. */
static void protect_newest(const policy *p, unsigned char *cand, int want, int *room)
{
    for (int i = p->n - 1; i >= p->n_pinned && want > 0 && *room > 0; i--)
        if (cand[i]) {
            cand[i] = 0;
            want--, (*room)--;
        }
}

/* The std scope's σ part: protect the `want` largest-σ candidates (ties: the newer). */
static void protect_largest_sigma(const policy *p, unsigned char *cand, int want)
{
    scored *s = p->state;
    for (int i = p->n_pinned; i < p->n; i++)
        s->sigma[i] = cand[i] ? (float)policy__scored_sigma(p, i) : 0.0f;
    policy__protect_top(p, s->sigma, cand, want);
}

void policy__scored_candidates(const policy *p, int k, float *score, unsigned char *cand)
{
    const policy_config *c = &p->cfg;
    int room = p->n - p->n_pinned - k;   /* invariant 7: k candidates always remain */
    int r = policy__window_size(p);
    policy__scored_scores(p, score);
    memset(cand, 0, (size_t)p->n_pinned);
    memset(cand + p->n_pinned, 1, (size_t)(p->n - p->n_pinned));
    if (c->scope & POLICY_SCOPE_SINKS)
        for (int i = p->n_pinned; i < p->n && room > 0 && p->entries[i].position < c->sinks; i++)
            cand[i] = 0, room--;
    if (c->scope & POLICY_SCOPE_WINDOW)
        protect_newest(p, cand, r, &room);
    if (c->scope & POLICY_SCOPE_STD) {
        int std_r = r < room ? r : room;
        int newest = c->recent < std_r ? c->recent : std_r;
        int left = newest;
        protect_newest(p, cand, newest, &left);
        protect_largest_sigma(p, cand, std_r - (newest - left));
    }
}

int policy__scored_choose(policy *p, int k, int *out)
{
    scored *s = p->state;
    if (p->cfg.score == POLICY_SCORE_ORACLE && !p->future)
        return 0;   /* invariant 3: the oracle never guesses without the future */
    policy__scored_candidates(p, k, s->score, s->mask);
    return policy_pick_lowest(p, s->score, s->mask, k, out);
}

void policy__scored_block(const policy *p, int k, double *mean_mas, double *mean_sigma)
{
    scored *s = p->state;
    *mean_mas = *mean_sigma = 0;
    policy__scored_candidates(p, k, s->score, s->mask);
    int m = policy_pick_lowest(p, s->score, s->mask, k, s->block);
    for (int j = 0; j < m; j++) {
        int i = s->block[j];
        *mean_mas += s->c[i] ? s->S[i] / s->c[i] : 0;
        *mean_sigma += policy__scored_sigma(p, i);
    }
    if (m) {
        *mean_mas /= m;
        *mean_sigma /= m;
    }
}

const policy_ops policy_scored_ops = {
    .name = "scored",
    .init = policy__scored_init,
    .uses = policy__scored_uses,
    .reserve = policy__scored_reserve,
    .append = policy__scored_append,
    .observe = policy__scored_observe,
    .choose = policy__scored_choose,
    .remove = policy__scored_remove,
    .scores = policy__scored_scores,
    .destroy = policy__scored_destroy,
};
