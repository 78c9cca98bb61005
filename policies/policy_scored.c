/*
 * policy_scored.c — the score × scope family (EasyKV / RoCo's framing of eviction as
 * an importance score plus an eviction scope) and its presets: scored, random,
 * recency, streaming, h2o, mas, roco, tova, scissorhands, knorm, oracle.  pace and
 * adakv build on the same statistics (policy_scored.h).  Per entry i, over the
 * queries τ that attended it (a_τ(i) = the reduced, renormalised row):
 *
 *     S(i) = Σ a_τ(i)      Q(i) = Σ a_τ(i)²      c(i) = number of such queries,
 *
 * counting the entry's own query, so c >= 1 at every eviction (invariant 2).  The sums
 * are doubles, accumulated in step order; scores are compared as floats (the double
 * value rounded once), so an independent reference can reproduce every choice
 * exactly (tests/fixtures/policy_reference.py).  Rules: docs/POLICIES.md.
 */
#include "policy_scored.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

static const policy_column scored_columns[] = {
    POLICY_COLUMN(scored, S),      POLICY_COLUMN(scored, Q),     POLICY_COLUMN(scored, c),
    POLICY_COLUMN(scored, last),   POLICY_COLUMN(scored, key),   POLICY_SCRATCH(scored, sc),
    POLICY_SCRATCH(scored, mask),  POLICY_SCRATCH(scored, block), POLICY_SCRATCH(scored, sigma),
    {0},
};

#define SCORE_NAMES "aas mas ltas aqas knorm recency random oracle"  /* policy_score - 1 */

static const policy_param scored_params[] = {
    {"score", POLICY_PARAM_CHOICE, offsetof(scored, score), "", 0, 0, SCORE_NAMES,
     "importance score: aas mas ltas aqas knorm recency random oracle"},
    {"scope", POLICY_PARAM_SET, offsetof(scored, scope), "none", 0, 0, "sinks window std",
     "protected entries: none | sinks, window, std joined by +"},
    {"sinks", POLICY_PARAM_INT, offsetof(scored, sinks), "4", 0, 1e9, NULL,
     "protected first positions (scope sinks)"},
    {"window", POLICY_PARAM_SPAN, offsetof(scored, window), "0.3", 0, 0, NULL,
     "protected size r of window/std: 0.3 = fraction of B, 12 = entries"},
    {"recent", POLICY_PARAM_INT, offsetof(scored, recent), "10", 0, 1e9, NULL,
     "newest entries the std scope always protects (EasyKV: 10)"},
    {"history", POLICY_PARAM_INT, offsetof(scored, history), "400", 1, 65536, NULL,
     "aqas: steps of history counted (Scissorhands window)"},
    {"skip-layers", POLICY_PARAM_INT, offsetof(scored, skip_layers), "0", 0, 1e6, NULL,
     "knorm: layers below this keep everything"},
    {0},
};

policy_score scored_score(const policy *p)
{
    const scored *s = policy_state(p);
    return s->score < 0 ? POLICY_SCORE_NONE : (policy_score)(s->score + 1);
}

/* --- lifecycle ------------------------------------------------------------------- */

int scored_uses(const policy *p, const char *key)
{
    const scored *s = policy_state(p);
    if (!strcmp(key, "sinks"))
        return (s->scope & POLICY_SCOPE_SINKS) != 0;
    if (!strcmp(key, "window"))
        return (s->scope & (POLICY_SCOPE_WINDOW | POLICY_SCOPE_STD)) != 0;
    if (!strcmp(key, "recent"))
        return (s->scope & POLICY_SCOPE_STD) != 0;
    if (!strcmp(key, "history"))
        return scored_score(p) == POLICY_SCORE_AQAS;
    if (!strcmp(key, "skip-layers"))
        return scored_score(p) == POLICY_SCORE_KNORM;
    return !strcmp(key, "score") || !strcmp(key, "scope");
}

int scored_init(policy *p, kv_err *err)
{
    scored *s = policy_state(p);
    const policy_score score = scored_score(p);
    if (score == POLICY_SCORE_NONE)
        return kv_errorf(err, KV_EUSAGE, "policy '%s' needs a score: aas, mas, ltas, aqas, "
                         "knorm, recency, random or oracle", policy_config_of(p)->name);
    if (score == POLICY_SCORE_ORACLE)
        policy_add_flags(p, POLICY_NEEDS_FUTURE);
    if (score == POLICY_SCORE_KNORM)
        policy_add_flags(p, POLICY_READS_KEYS);
    /* KnormPress skips the first layers: there the cache is kept whole (and the
     * driver's mean cache size says so). */
    if (score == POLICY_SCORE_KNORM && policy_layer_number(p) < s->skip_layers)
        policy_set_budget(p, POLICY_BUDGET_UNLIMITED);
    int rc = KV_OK;
    if (score == POLICY_SCORE_AQAS) {   /* a ring of history bits per entry */
        s->words = (s->history + 63) / 64;
        rc = policy_add_column(p, offsetof(scored, unimp), sizeof *s->unimp, 0, err);
        if (rc == KV_OK)
            rc = policy_add_column(p, offsetof(scored, bits),
                                   (size_t)s->words * sizeof *s->bits, 0, err);
    }
    return rc;
}

/* --- statistics ------------------------------------------------------------------ */

void scored_append(policy *p, int slot, const policy_vectors *v)
{
    scored *s = policy_state(p);
    const policy_score score = scored_score(p);
    s->S[slot] = s->Q[slot] = 0;
    s->c[slot] = 0;
    s->last[slot] = 0;
    /* random: 24 random bits, exactly representable, uniform in [0, 1) */
    s->key[slot] = score == POLICY_SCORE_RANDOM ? (float)(policy_rand_u64(p) >> 40) *
                                                      (1.0f / 16777216.0f)
                   : score == POLICY_SCORE_KNORM ? policy_key_norm(v)
                                                 : 0;
    if (s->words) {
        s->unimp[slot] = 0;
        memset(s->bits + (size_t)slot * s->words, 0, (size_t)s->words * sizeof *s->bits);
    }
}

/* Scissorhands: a step is unimportant for i when a_τ(i) < 1/|cache at τ|.  A ring of
 * `history` bits per entry, indexed by the shared step clock, drops the step that
 * leaves the history as the new one enters; bits of steps before the entry joined
 * were cleared by append. */
static void observe_aqas(scored *s, const float *row, int n)
{
    int bit = (int)(s->step % s->history);
    uint64_t m = 1ull << (bit % 64);
    double uniform = 1.0 / n;
    for (int i = 0; i < n; i++) {
        uint64_t *w = s->bits + (size_t)i * s->words + bit / 64;
        int was = (*w & m) != 0, now = (double)row[i] < uniform;
        s->unimp[i] += now - was;
        *w = now ? (*w | m) : (*w & ~m);
    }
}

void scored_observe(policy *p, const float *row, int n)
{
    scored *s = policy_state(p);
#pragma omp simd   /* the columns and row never overlap; each entry's sums are as before */
    for (int i = 0; i < n; i++) {
        double a = row[i];
        s->S[i] += a;
        s->Q[i] += a * a;
        s->c[i]++;
    }
    memcpy(s->last, row, (size_t)n * sizeof *row);
    if (s->words)
        observe_aqas(s, row, n);
    s->step++;
}

double scored_sigma(const policy *p, int slot)
{
    const scored *s = policy_state(p);
    if (s->c[slot] == 0)
        return 0;
    double mean = s->S[slot] / s->c[slot];
    double var = s->Q[slot] / s->c[slot] - mean * mean;
    return var > 0 ? sqrt(var) : 0;   /* rounding can make var slightly negative */
}

/* --- scores ---------------------------------------------------------------------- */

static float score_of(const policy *p, int i)
{
    const scored *s = policy_state(p);
    switch (scored_score(p)) {
    case POLICY_SCORE_AAS:     return (float)s->S[i];
    case POLICY_SCORE_MAS:     return s->c[i] ? (float)(s->S[i] / s->c[i]) : 0.0f;
    case POLICY_SCORE_LTAS:    return s->last[i];
    case POLICY_SCORE_AQAS: {
        int h = s->c[i] < s->history ? s->c[i] : s->history;
        return h ? (float)((double)(h - s->unimp[i]) / h) : 1.0f;
    }
    case POLICY_SCORE_KNORM:   /* small norms are kept; an unknown norm is never chosen */
        return isnan(s->key[i]) ? INFINITY : -s->key[i];
    case POLICY_SCORE_RECENCY: return (float)policy_entries(p)[i].position;
    case POLICY_SCORE_RANDOM:  return s->key[i];
    case POLICY_SCORE_ORACLE:  return policy_future(p) ? policy_future(p)[i] : 0.0f;
    case POLICY_SCORE_NONE:    break;
    }
    return 0;
}

/* S / c, 0 where nothing attended, written so that the loop vectorises (with a
 * branch, or a select, it stayed scalar): where c = 0, S = 0 too (an entry's sum grows
 * only with its count), so S / 1 · 0 is the same +0. */
static void mean_attention(const double *S, const int *count, int n, float *out)
{
#pragma omp simd
    for (int i = 0; i < n; i++) {
        const int c = count[i];
        out[i] = (float)(S[i] / (double)(c + (c == 0))) * (float)(c != 0);
    }
}

int scored_scores(const policy *p, float *out)
{
    const scored *s = policy_state(p);
    int n = policy_size(p);
    switch (scored_score(p)) {   /* one loop per score: this runs at every eviction */
    case POLICY_SCORE_AAS:
#pragma omp simd   /* -O2 leaves it scalar */
        for (int i = 0; i < n; i++)
            out[i] = (float)s->S[i];
        break;
    case POLICY_SCORE_MAS:
        mean_attention(s->S, s->c, n, out);
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

static int window_of(const policy *p)
{
    const scored *s = policy_state(p);
    return policy_span_entries(&s->window, policy_budget_of(p));
}

/* The std scope's σ part: protect the `want` largest-σ candidates (ties: the newer). */
static void protect_largest_sigma(const policy *p, unsigned char *cand, int want)
{
    scored *s = policy_state(p);
    for (int i = policy_pinned(p); i < policy_size(p); i++)
        s->sigma[i] = cand[i] ? (float)scored_sigma(p, i) : 0.0f;
    policy_protect_top(p, s->sigma, cand, want);
}

void scored_candidates(const policy *p, int k, float *score, unsigned char *cand)
{
    const scored *s = policy_state(p);
    const int n = policy_size(p), pinned = policy_pinned(p);
    const policy_entry *e = policy_entries(p);
    int room = n - pinned - k;   /* invariant 7: k candidates always remain */
    int r = window_of(p);
    scored_scores(p, score);
    memset(cand, 0, (size_t)pinned);
    memset(cand + pinned, 1, (size_t)(n - pinned));
    if (s->scope & POLICY_SCOPE_SINKS)
        for (int i = pinned; i < n && room > 0 && e[i].position < s->sinks; i++)
            cand[i] = 0, room--;
    if (s->scope & POLICY_SCOPE_WINDOW)
        policy_protect_newest(p, cand, r, &room);
    if (s->scope & POLICY_SCOPE_STD) {
        int std_r = r < room ? r : room;
        int newest = s->recent < std_r ? s->recent : std_r;
        int left = newest;
        policy_protect_newest(p, cand, newest, &left);
        protect_largest_sigma(p, cand, std_r - (newest - left));
    }
}

int scored_choose(policy *p, int k, int *out)
{
    scored *s = policy_state(p);
    if (scored_score(p) == POLICY_SCORE_ORACLE && !policy_future(p))
        return 0;   /* invariant 3: the oracle never guesses without the future */
    scored_candidates(p, k, s->sc, s->mask);
    return policy_pick_lowest(p, s->sc, s->mask, k, out);
}

void scored_block(const policy *p, int k, double *mean_mas, double *mean_sigma)
{
    scored *s = policy_state(p);
    *mean_mas = *mean_sigma = 0;
    scored_candidates(p, k, s->sc, s->mask);
    int m = policy_pick_lowest(p, s->sc, s->mask, k, s->block);
    for (int j = 0; j < m; j++) {
        int i = s->block[j];
        *mean_mas += s->c[i] ? s->S[i] / s->c[i] : 0;
        *mean_sigma += scored_sigma(p, i);
    }
    if (m) {
        *mean_mas /= m;
        *mean_sigma /= m;
    }
}

int scored_rules(const policy *p, policy_rules *out)
{
    const scored *s = policy_state(p);
    *out = (policy_rules){scored_score(p), s->scope, s->sinks, window_of(p), s->recent};
    return 0;
}

/* --- the presets -------------------------------------------------------------------- */

#define SCORED_OPS                                                                      \
    {.init = scored_init, .uses = scored_uses, .append = scored_append,                 \
     .observe = scored_observe, .choose = scored_choose, .scores = scored_scores,       \
     .rules = scored_rules}

#define SCORED_PRESET(id, preset, of, summary_, provenance_)                            \
    const policy_def policy_##id = {                                                    \
        .name = #id, .summary = summary_, .provenance = provenance_,                    \
        .base = &policy_scored, .defaults = preset, .scope_of = POLICY_SCOPE_OF_##of,   \
        .state_size = sizeof(scored), .ops = SCORED_OPS}

const policy_def policy_scored = {
    .name = "scored",
    .summary = "any score in any scope: score=S, scope=none|sinks+window|std...",
    .provenance = "EasyKV/RoCo's score × scope framing (arXiv 2402.06262)",
    .params = scored_params,
    .columns = scored_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .state_size = sizeof(scored),
    .ops = SCORED_OPS,
};

SCORED_PRESET(random, "score=random,scope=none", KV_HEAD,
              "evict uniformly at random (seeded)", "EasyKV `random`");
SCORED_PRESET(recency, "score=recency,scope=none", KV_HEAD,
              "evict the oldest entries: keep the last B", "sliding window");
SCORED_PRESET(streaming, "score=recency,scope=sinks", KV_HEAD,
              "keep the sinks and the most recent entries", "StreamingLLM (ICLR 2024)");
SCORED_PRESET(h2o, "score=aas,scope=window", KV_HEAD,
              "evict the lowest accumulated attention S outside the newest r",
              "H2O (NeurIPS 2023); EasyKV `h2o_head`");
SCORED_PRESET(mas, "score=mas,scope=window", KV_HEAD,
              "evict the lowest mean attention S/c outside the newest r",
              "RoCo's MAS with a positional window (EasyKV `h2o_head_avg`)");
SCORED_PRESET(roco, "score=mas,scope=std+sinks", KV_HEAD,
              "evict the lowest S/c outside the sinks and the r largest-σ (newest 10 forced)",
              "RoCo (arXiv 2402.06262); EasyKV `roco`");
SCORED_PRESET(tova, "score=ltas,scope=none", LAYER,
              "evict the lowest attention of the current query, per layer",
              "TOVA (Transformers are Multi-State RNNs)");
SCORED_PRESET(scissorhands, "score=aqas,scope=window", KV_HEAD,
              "evict the largest share of unimportant steps (a < 1/n) outside the newest r",
              "Scissorhands (NeurIPS 2023), cold-compress reading");
SCORED_PRESET(knorm, "score=knorm,scope=none", KV_HEAD,
              "evict the largest key L2 norm; layers < skip-layers keep everything",
              "KnormPress (arXiv 2406.11430)");
SCORED_PRESET(oracle, "score=oracle,scope=none", KV_HEAD,
              "evict the lowest future attention (replay only; a greedy reference)",
              "offline reference of this project");
