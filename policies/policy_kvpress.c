/*
 * policy_kvpress.c — kvpress's defaults under kvpress's names, and what the policies
 * taken from kvpress share (policy_kvpress.h).
 *
 * kvpress runs every press once, at the end of the prefill, on the whole context, and
 * keeps n_kept = int(L·(1 − ratio)) entries per KV head.  Our presets of the same
 * names differ in defaults (a streaming phase, knorm skipping two layers, snapkv's
 * window 32 and max pooling): these presets set kvpress's, so that a user can switch
 * tools without re-deriving parameters.  `--budget N` with N = int(L·(1 − ratio))
 * reproduces kvpress's kept sets (docs/POLICIES.md, "kvpress", has the table and the
 * measured agreement).  snapkv-kvpress and pyramidkv-kvpress live beside snapkv.
 */
#include "policy_kvpress.h"
#include "policy_scored.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int kvpress_oneshot(policy *p, int only, kv_err *err)
{
    policy_config *c = policy_config_edit(p);
    if (!policy_config_is_set(c, "phase"))
        c->phase = POLICY_PHASE_ONESHOT;
    else if (only && c->phase != POLICY_PHASE_ONESHOT)
        return kv_errorf(err, KV_EUSAGE, "%s scores the whole context at once: phase must "
                         "be oneshot", c->name);
    if (c->phase == POLICY_PHASE_ONESHOT && c->prompt_len <= 0)
        return kv_errorf(err, KV_EUSAGE, "%s needs the prompt length: the driver must set "
                         "cfg.prompt_len", c->name);
    return KV_OK;
}

/* --- vectors per slot ----------------------------------------------------------------- */

static int vecs_reserve(policy_vecs *s, int slots)
{
    if (slots <= s->cap)
        return 0;
    int cap = s->cap ? s->cap : 64;
    while (cap < slots)
        cap *= 2;
    size_t bytes = (size_t)cap * s->per * s->dim * sizeof(float);
    float *k = realloc(s->key, bytes);
    if (k)
        s->key = k;
    float *v = k ? realloc(s->value, bytes) : NULL;
    if (v)
        s->value = v;
    if (!k || !v)
        return -1;
    s->cap = cap;
    return 0;
}

static void copy_vectors(float *dst, const float *src, const policy_vectors *v)
{
    for (int h = 0; h < v->n; h++)
        memcpy(dst + (size_t)h * v->dim, src + (size_t)h * v->stride,
               (size_t)v->dim * sizeof *dst);
}

void policy_vecs_put(policy_vecs *s, int slot, const policy_vectors *v)
{
    if (!v || !v->key || !v->value || v->n < 1 || v->dim < 1 ||
        (s->dim && (s->dim != v->dim || s->per != v->n))) {
        s->missing = 1;
        return;
    }
    s->per = v->n;
    s->dim = v->dim;
    if (!s->work)
        s->work = malloc(2 * (size_t)s->dim * sizeof *s->work);
    if (!s->work || vecs_reserve(s, slot + 1) != 0) {
        s->missing = 1;
        return;
    }
    const size_t at = (size_t)slot * s->per * s->dim;
    copy_vectors(s->key + at, v->key, v);
    copy_vectors(s->value + at, v->value, v);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void policy_vecs_drop(policy_vecs *s, int n, const int *slots, int k, int *scratch)
{
    if (k <= 0 || !s->key)
        return;
    memcpy(scratch, slots, (size_t)k * sizeof *scratch);
    qsort(scratch, (size_t)k, sizeof *scratch, cmp_int);
    const size_t row = (size_t)s->per * s->dim * sizeof(float);
    policy_compact(s->key, row, n, scratch, k);
    policy_compact(s->value, row, n, scratch, k);
}

void policy_vecs_free(policy_vecs *s)
{
    free(s->key);
    free(s->value);
    free(s->work);
    *s = (policy_vecs){0};
}

const float *policy_vecs_key(const policy_vecs *s, int slot, int head)
{
    return s->key + ((size_t)slot * s->per + head) * s->dim;
}

const float *policy_vecs_value(const policy_vecs *s, int slot, int head)
{
    return s->value + ((size_t)slot * s->per + head) * s->dim;
}

/* KnormPress: −‖k‖₂ (float32 in kvpress: the norm is rounded to float). */
void kvpress_knorm_scores(const policy_vecs *s, int head, int n, double *out)
{
    for (int i = 0; i < n; i++) {
        const float *k = policy_vecs_key(s, i, head);
        double sq = 0;
        for (int d = 0; d < s->dim; d++)
            sq += (double)k[d] * k[d];
        out[i] -= (float)sqrt(sq);
    }
}

/* --- the score × scope presets with kvpress's defaults -------------------------------- */

static int kvpress_scored_init(policy *p, kv_err *err)
{
    int rc = kvpress_oneshot(p, 0, err);
    return rc != KV_OK ? rc : scored_init(p, err);
}

#define KVPRESS_PRESET(id, name_, preset, of, summary_, provenance_)                     \
    const policy_def policy_##id = {                                                    \
        .name = name_, .summary = summary_, .provenance = provenance_,                  \
        .base = &policy_scored, .defaults = preset, .scope_of = POLICY_SCOPE_OF_##of,   \
        .state_size = sizeof(scored),                                                   \
        .ops = {.init = kvpress_scored_init, .uses = scored_uses,                       \
                .append = scored_append, .observe = scored_observe,                     \
                .choose = scored_choose, .scores = scored_scores, .rules = scored_rules}}

KVPRESS_PRESET(streaming_kvpress, "streaming-kvpress", "score=recency,scope=sinks,sinks=4",
               KV_HEAD, "kvpress StreamingLLMPress: oneshot, the 4 sinks and the newest",
               "StreamingLLM (ICLR 2024) as kvpress 0.5.5 runs it");
KVPRESS_PRESET(tova_kvpress, "tova-kvpress", "score=ltas,scope=none", LAYER,
               "kvpress TOVAPress: oneshot, the last query's attention, mean of all heads",
               "TOVA (arXiv 2401.06104) as kvpress 0.5.5 runs it");
KVPRESS_PRESET(knorm_kvpress, "knorm-kvpress", "score=knorm,scope=none,skip-layers=0",
               KV_HEAD, "kvpress KnormPress: oneshot, keep the smallest key norms, every layer",
               "KnormPress (arXiv 2406.11430) as kvpress 0.5.5 runs it");
KVPRESS_PRESET(observed_attention, "observed-attention", "score=mas,scope=none", KV_HEAD,
               "kvpress ObservedAttentionPress: oneshot, mean attention S/c over the prompt",
               "H2O's observed attention, kvpress 0.5.5 (divided by the queries that "
               "saw each key)");

/* --- policies that score the cache from its vectors ------------------------------------ */

const policy_column kvpress_scorer_columns[] = {
    POLICY_COLUMN(kvpress_scorer, wov),
    POLICY_SCRATCH(kvpress_scorer, score), POLICY_SCRATCH(kvpress_scorer, acc),
    POLICY_SCRATCH(kvpress_scorer, drop),  POLICY_SCRATCH(kvpress_scorer, rank),
    {offsetof(kvpress_scorer, tmp), 2 * sizeof(double), 1}, {0},
};

int kvpress_scorer_init(policy *p, kvpress_head_fn fn, kv_err *err)
{
    kvpress_scorer *s = policy_state(p);
    s->fn = fn;
    if (s->critical > 0) {
        const policy_config *c = policy_config_of(p);
        if (policy_config_scope_of(c) != POLICY_SCOPE_OF_KV_HEAD || s->chunk > 0)
            return kv_errorf(err, KV_EUSAGE, "%s: critical runs per KV head (scope-of "
                             "kv-head), without press-chunk", c->name);
        policy_add_flags(p, POLICY_READS_OUT_PROJ);
    }
    return kvpress_oneshot(p, s->chunk > 0, err);
}

double kvpress_kept_fraction(const policy *p, int n)
{
    const policy_config *cfg = policy_config_of(p);
    return cfg->budget_arg.is_fraction ? cfg->budget_arg.fraction
                                       : (double)policy_budget_of(p) / n;
}

/* acc[from .. from+n) += the score of slots from .. from+n-1 taken as a cache of their
 * own (a view of the vectors), summed over the stream's heads. */
static void score_range(policy *p, int from, int n)
{
    kvpress_scorer *s = policy_state(p);
    policy_vecs view = s->vecs;
    const size_t at = (size_t)from * view.per * view.dim;
    view.key += at;
    view.value += at;
    for (int i = from; i < from + n; i++)
        s->acc[i] = 0;
    for (int h = 0; h < view.per; h++)
        s->fn(p, &view, h, n, s->tmp + 2 * (size_t)from, s->acc + from);
}

/* ChunkPress: each chunk keeps its max(1, int(len·f)) best (ties: the newer), marked 1
 * in score[]; the total becomes the budget. */
void kvpress_scorer_end_prompt(policy *p)
{
    kvpress_scorer *s = policy_state(p);
    const int n = policy_size(p), c = s->chunk;
    if (!c || s->vecs.missing || policy_budget_of(p) == POLICY_BUDGET_UNLIMITED)
        return;
    const double f = kvpress_kept_fraction(p, n);
    const policy_entry *e = policy_entries(p);
    int kept = 0;
    for (int a = 0; a < n; a += c) {
        const int m = a + c < n ? c : n - a;
        int keep = (int)(m * f);
        keep = keep < 1 ? 1 : keep;
        score_range(p, a, m);
        for (int i = 0; i < m; i++) {
            s->rank[i] = (policy_rank){(float)s->acc[a + i], e[a + i].position, 0, a + i};
            s->score[a + i] = 1;
        }
        policy_select_lowest(s->rank, m, m - keep);
        for (int j = 0; j < m - keep; j++)
            s->score[s->rank[j].slot] = 0;
        kept += keep;
    }
    policy_set_budget(p, kept);
}

void kvpress_scorer_append(policy *p, int slot, const policy_vectors *v)
{
    kvpress_scorer *s = policy_state(p);
    policy_vecs_put(&s->vecs, slot, v);
    if (s->critical <= 0)
        return;
    if (!v || !v->out_norm || v->n_query < 1) {
        s->vecs.missing = 1;
        return;
    }
    float sum = 0;   /* kvpress: the float32 mean over the KV head's query heads */
    for (int g = 0; g < v->n_query; g++)
        sum += v->out_norm[g];
    s->wov[slot] = sum / (float)v->n_query;
}

/* CriticalKV's two stages over score[n]: the max(1, int(f·n·critical)) best by the
 * score alone are kept (score FLT_MAX; ties: the newer), every other entry scores
 * (score + epsilon)·‖W_o v‖₁, in float32 as kvpress computes it. */
static void critical_stages(policy *p, kvpress_scorer *s, int n)
{
    int sel = (int)(kvpress_kept_fraction(p, n) * n * s->critical);
    sel = sel < 1 ? 1 : sel > n ? n : sel;
    const policy_entry *e = policy_entries(p);
    for (int i = 0; i < n; i++)
        s->rank[i] = (policy_rank){-s->score[i], -e[i].position, 0, i};
    policy_select_lowest(s->rank, n, sel);
    for (int i = 0; i < n; i++)
        s->score[i] = (s->score[i] + (float)s->critical_eps) * s->wov[i];
    for (int j = 0; j < sel; j++)
        s->score[s->rank[j].slot] = FLT_MAX;
}

int kvpress_scorer_choose(policy *p, int k, int *out)
{
    kvpress_scorer *s = policy_state(p);
    const int n = policy_size(p);
    if (s->vecs.missing)
        return 0;   /* no vectors, no score: nothing is chosen (knorm's rule) */
    if (!s->chunk) {   /* else end_prompt marked the kept entries in score[] */
        score_range(p, 0, n);
        for (int i = 0; i < n; i++)
            s->score[i] = (float)s->acc[i];
        if (s->critical > 0)
            critical_stages(p, s, n);
    }
    int m = policy_pick_lowest(p, s->score, NULL, k, out);
    policy_vecs_drop(&s->vecs, n, out, m, s->drop);
    return m;
}

void kvpress_scorer_destroy(policy *p)
{
    policy_vecs_free(&((kvpress_scorer *)policy_state(p))->vecs);
}
