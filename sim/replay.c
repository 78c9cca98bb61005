/*
 * replay.c — the replay engine (see replay.h): row blocks in, per-step metrics out.
 *
 * Invariants (tests/test_replay.c names each one it checks):
 *   (1) A query attends to B+1..B+s entries once eviction has begun: the engine only
 *       follows the contract's step order (policies/policy.h (2)), per stream and token
 *           append t → attend (gather + renormalise) → observe → measure → evict when due
 *       and measures C_t, the entries query t attended, before the eviction.
 *   (2) Ties are the policy's business (policy.h (4)); the metrics' own ties are
 *       resolved as metrics.h says, the same for every configuration.
 *   (3) Results ignore the thread count: a layer job touches only its own layer's
 *       accumulators, sums in step order, and errors are reported for the lowest
 *       failing layer.
 *   (4) Memory is O(T) per stream plus one block of REPLAY_BLOCK rows per head of the
 *       layer being replayed; no T x T matrix is ever resident.
 *   (5) Each row block is read once per layer job and fed to every configuration;
 *       a second, earlier pass reads them once more only when an oracle needs the
 *       column totals (future_t(i) = total(i) − Σ_{τ≤t} p_τ(i)).
 */
#include "replay.h"

#include "metrics.h"
#include "progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* --- a stream: one policy and the heads whose rows it sees ------------------------- */

typedef struct stream {
    policy *p;
    int     cfg;          /* configuration index */
    int     first;        /* first step measured: replay_first_step(B, T) */
    int     n_members;    /* G: query heads whose rows the policy observes */
    int    *members;      /* (G,) plan head indices */
    int     kv;           /* recorded KV index for key norms; -1 = mean over the layer */
    float  *rows;         /* (G, T) gathered rows, renormalised, n floats each */
    double *mass;         /* (G,) mass kept by each member at this step */
    float  *future;       /* (T,) oracle: future attention of each kept slot */
    float  *scores;       /* (T,) the policy's scores, for consistency */
    int    *slots;        /* (T,) evicted slots */
} stream;

/* Per-step shared facts of one head: the top-n threshold for a few n at a time. */
#define THETA_MEMO 32   /* distinct cache sizes per step: budgets x strides of a sweep */
typedef struct theta_memo {
    int   count;
    int   n[THETA_MEMO], above[THETA_MEMO];
    float theta[THETA_MEMO];
} theta_memo;

/* Everything one layer job owns. */
typedef struct layer_job {
    replay_source     *src;
    const replay_plan *plan;
    int                l, li;        /* plan layer index and recorded layer index */
    int                T, D, H, K;   /* steps, head dim, plan heads, recorded KV heads */
    int                need_future;  /* an oracle runs: column totals and running sums */
    int                need_sums;    /* running column sums (oracle or consistency) */
    int                need_values;  /* output error */
    float             *block;        /* (H, REPLAY_BLOCK, T) the current rows */
    int                t0, width;    /* the block's first step and row stride */
    float             *keys;         /* (REPLAY_BLOCK, D) */
    float             *knorm;        /* (K, T) key norms */
    float             *values;       /* (K, T, D) */
    double            *total, *sums; /* (H, T) column totals and running sums */
    float             *o_full;       /* (H, D) full-cache output of each head at t */
    float             *o_kept;       /* (D,) */
    float             *full_score;   /* (T,) */
    float             *scratch;      /* (T,) selection */
    theta_memo        *memo;         /* (H,) */
    stream            *streams;      /* every configuration's, configuration by configuration */
    int                n_streams;
    int               *first;        /* (n_configs + 1,) config c owns streams first[c].. */
    policy_group     **groups;       /* (n_configs,) adakv's shared budget; NULL otherwise */
} layer_job;

static void *alloc_zero(size_t n, size_t size, int *failed)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        *failed = 1;
    return p;
}

/* --- reading ---------------------------------------------------------------------- */

static int read_rows(layer_job *j, int h, int t0, int n, kv_err *err)
{
    replay_source *src = j->src;
    float *out = j->block + (size_t)h * REPLAY_BLOCK * j->T;
    return replay_source_read_rows(src, j->li, j->plan->heads[h], t0, n, out,
                                   (size_t)(t0 + n), err);
}

static int read_kv(layer_job *j, int k, int t0, int n, kv_err *err)
{
    replay_source *src = j->src;
    float *values = j->need_values ? j->values + ((size_t)k * j->T + t0) * j->D : NULL;
    int rc = replay_source_read_kv(src, j->li, k, t0, n, j->keys, values, err);
    for (int r = 0; rc == KV_OK && r < n; r++) {
        double s = 0;
        for (int d = 0; d < j->D; d++)
            s += (double)j->keys[(size_t)r * j->D + d] * j->keys[(size_t)r * j->D + d];
        j->knorm[(size_t)k * j->T + t0 + r] = (float)sqrt(s);
    }
    return rc;
}

/* Read rows t0..t0+n-1 of every plan head, and the keys/values of every KV head. */
static int read_block(layer_job *j, int t0, int n, kv_err *err)
{
    int rc = KV_OK;
    for (int h = 0; rc == KV_OK && h < j->H; h++)
        rc = read_rows(j, h, t0, n, err);
    for (int k = 0; rc == KV_OK && j->D > 0 && k < j->K; k++)
        rc = read_kv(j, k, t0, n, err);
    j->t0 = t0;
    j->width = t0 + n;
    return rc;
}

static const float *row_of(const layer_job *j, int h, int t)
{
    return j->block + (size_t)h * REPLAY_BLOCK * j->T + (size_t)(t - j->t0) * j->width;
}

/* The oracle's pre-pass: column totals of every head over the whole trace. */
static int read_totals(layer_job *j, kv_err *err)
{
    for (int t0 = 0; t0 < j->T; t0 += REPLAY_BLOCK) {
        int n = j->T - t0 < REPLAY_BLOCK ? j->T - t0 : REPLAY_BLOCK;
        for (int h = 0; h < j->H; h++) {
            int rc = read_rows(j, h, t0, n, err);
            if (rc != KV_OK)
                return rc;
            double *total = j->total + (size_t)h * j->T;
            const float *rows = j->block + (size_t)h * REPLAY_BLOCK * j->T;
            for (int r = 0; r < n; r++) {
                const float *row = rows + (size_t)r * (t0 + n);
#pragma omp simd
                for (int i = 0; i <= t0 + r; i++)
                    total[i] += row[i];
            }
        }
    }
    return KV_OK;
}

/* --- streams ---------------------------------------------------------------------- */

static void stream_free(stream *s)
{
    policy_free(s->p);
    free(s->members);
    free(s->rows);
    free(s->mass);
    free(s->future);
    free(s->scores);
    free(s->slots);
}

static int stream_init(layer_job *j, stream *s, int c, const int *members, int G, int kv,
                       uint64_t stream_id, kv_err *err)
{
    const replay_config *cfg = &j->plan->configs[c];
    policy_config pc = cfg->policy;
    pc.stream_id = stream_id;
    pc.group = j->groups[c];
    pc.group_member = j->n_streams - j->first[c];
    pc.layer = j->src->layers[j->li];
    pc.n_layers = j->src->model_layers;
    pc.capacity_hint = pc.budget > 0 && pc.budget + pc.stride < j->T ? pc.budget + pc.stride
                                                                      : j->T;
    char why[KV_ERR_MSG_MAX];
    int failed = 0;
    s->cfg = c;
    s->first = replay_first_step(pc.budget, j->T);
    s->n_members = G;
    s->kv = kv;
    s->p = policy_new(&pc, why, sizeof why);
    s->members = alloc_zero((size_t)G, sizeof *s->members, &failed);
    s->rows = alloc_zero((size_t)G * j->T, sizeof *s->rows, &failed);
    s->mass = alloc_zero((size_t)G, sizeof *s->mass, &failed);
    s->future = alloc_zero((size_t)j->T, sizeof *s->future, &failed);
    s->scores = alloc_zero((size_t)j->T, sizeof *s->scores, &failed);
    s->slots = alloc_zero((size_t)j->T, sizeof *s->slots, &failed);
    if (!s->p)
        return kv_errorf(err, KV_EUSAGE, "%s", why);
    if (failed)
        return kv_errorf(err, KV_ENOMEM, "out of memory for a stream of %d entries", j->T);
    memcpy(s->members, members, (size_t)G * sizeof *members);
    return KV_OK;
}

/* --- the streams of a configuration ------------------------------------------------ */

int replay_streams_of(const replay_source *src, const replay_plan *plan, int c, int l,
                      replay_stream_fn fn, void *ctx, kv_err *err)
{
    const int H = plan->n_heads;
    int *members = malloc((size_t)(H > 0 ? H : 1) * sizeof *members);
    if (!members)
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    const uint64_t lid = (uint64_t)src->layers[plan->layers[l]] * 1000;
    int rc = KV_OK;
    switch (plan->configs[c].scope_of) {
    case POLICY_SCOPE_OF_PRESET:   /* resolved by the setup; never reaches here */
    case POLICY_SCOPE_OF_LAYER:
        for (int h = 0; h < H; h++)
            members[h] = h;
        rc = fn(ctx, members, H, -1, lid, err);
        break;
    case POLICY_SCOPE_OF_QUERY_HEAD:
        for (int h = 0; rc == KV_OK && h < H; h++)
            rc = fn(ctx, &h, 1, src->kv_of_head[plan->heads[h]], lid + (uint64_t)plan->heads[h],
                    err);
        break;
    case POLICY_SCOPE_OF_KV_HEAD:
        for (int k = 0; rc == KV_OK && k < src->n_kv; k++) {
            int G = 0;
            for (int h = 0; h < H; h++)
                if (src->kv_of_head[plan->heads[h]] == k)
                    members[G++] = h;
            if (G)   /* a KV head none of whose query heads was selected has no stream */
                rc = fn(ctx, members, G, k, lid + (uint64_t)k, err);
        }
        break;
    }
    free(members);
    return rc;
}

static int count_stream(void *ctx, const int *members, int G, int kv, uint64_t id,
                        kv_err *err)
{
    (void)members, (void)G, (void)kv, (void)id, (void)err;
    ++*(int *)ctx;
    return KV_OK;
}

/* Streams of configuration c in this layer. */
static int streams_of(const layer_job *j, int c)
{
    int n = 0;
    replay_streams_of(j->src, j->plan, c, j->l, count_stream, &n, NULL);
    return n;
}

/* adakv shares one budget among the streams of a layer: policy.h (2). */
static int needs_group(const replay_config *cfg) { return !strcmp(cfg->policy.name, "adakv"); }

static int make_group(layer_job *j, int c, kv_err *err)
{
    char why[KV_ERR_MSG_MAX];
    j->groups[c] = policy_group_new(streams_of(j, c), why, sizeof why);
    return j->groups[c] ? KV_OK : kv_errorf(err, KV_ENOMEM, "%s", why);
}

typedef struct stream_builder {
    layer_job *j;
    int        c;
} stream_builder;

static int add_stream(void *ctx, const int *members, int G, int kv, uint64_t id, kv_err *err)
{
    const stream_builder *b = ctx;
    layer_job *j = b->j;
    int rc = stream_init(j, &j->streams[j->n_streams], b->c, members, G, kv, id, err);
    j->n_streams++;   /* counted even when it failed: job_free frees what was half built */
    return rc;
}

/* Build the streams of every configuration for this layer, in configuration order,
 * then in replay_streams_of's order: the order results are summed in. */
static int build_streams(layer_job *j, kv_err *err)
{
    const replay_plan *plan = j->plan;
    int total = 0;
    for (int c = 0; c < plan->n_configs; c++)
        total += streams_of(j, c);
    j->streams = calloc((size_t)(total ? total : 1), sizeof *j->streams);
    if (!j->streams)
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d streams", total);
    int rc = KV_OK;
    for (int c = 0; rc == KV_OK && c < plan->n_configs; c++) {
        j->first[c] = j->n_streams;
        stream_builder b = {j, c};
        if (needs_group(&plan->configs[c]) && (rc = make_group(j, c, err)) != KV_OK)
            break;
        rc = replay_streams_of(j->src, plan, c, j->l, add_stream, &b, err);
    }
    j->first[plan->n_configs] = j->n_streams;
    return rc;
}

/* --- one step --------------------------------------------------------------------- */

static float key_norm(const layer_job *j, const stream *s, int t)
{
    if (j->D == 0)
        return NAN;
    if (s->kv >= 0)
        return j->knorm[(size_t)s->kv * j->T + t];
    double sum = 0;   /* layer scope: one cache for every KV head; their mean norm */
    for (int k = 0; k < j->K; k++)
        sum += j->knorm[(size_t)k * j->T + t];
    return (float)(sum / j->K);
}

/* Top-n threshold of head h's row at this step, computed once per distinct n. */
static void top_n(layer_job *j, int h, const float *p, int len, int n, float *theta,
                  int *above)
{
    theta_memo *m = &j->memo[h];
    for (int i = 0; i < m->count; i++)
        if (m->n[i] == n) {
            *theta = m->theta[i];
            *above = m->above[i];
            return;
        }
    *theta = metrics_kth_largest(p, len, n, j->scratch, above);
    if (m->count < THETA_MEMO) {
        m->n[m->count] = n;
        m->theta[m->count] = *theta;
        m->above[m->count++] = *above;
    }
}

/* Scores whose full-cache version the engine can compute: consistency is defined. */
static int score_has_full_version(policy_score score)
{
    return score == POLICY_SCORE_AAS || score == POLICY_SCORE_MAS || score == POLICY_SCORE_LTAS;
}

static void full_score(const layer_job *j, policy_score score, int h, const float *p,
                       int len, float *out)
{
    const double *S = j->sums + (size_t)h * j->T;
    if (score == POLICY_SCORE_AAS)
        metrics_full_score_aas(S, len, out);
    else if (score == POLICY_SCORE_MAS)
        metrics_full_score_mas(S, len, out);
    else
        memcpy(out, p, (size_t)len * sizeof *out);
}

/* Compare C_t with the full cache for each member head and add to its accumulator. */
static void measure(layer_job *j, stream *s, int t, replay_acc *acc)
{
    const replay_plan *plan = j->plan;
    const replay_config *cfg = &plan->configs[s->cfg];
    const policy_entry *kept = policy_entries(s->p);
    const int n = policy_size(s->p), len = t + 1;
    const int consistent = (plan->metrics & REPLAY_CONSISTENCY) &&
                           score_has_full_version(cfg->score) &&
                           policy_scores(s->p, s->scores) == 0;
    for (int g = 0; g < s->n_members; g++) {
        const int h = s->members[g];
        const float *p = row_of(j, h, t);
        replay_acc *a = replay_acc_at(acc, plan, s->cfg, j->l, h);
        a->steps++;
        a->cache += n;
        a->mass += s->mass[g];
        if (plan->metrics & REPLAY_OVERLAP) {
            float theta;
            int above;
            top_n(j, h, p, len, n, &theta, &above);
            a->overlap += metrics_overlap(p, kept, n, theta, above);
            a->n_overlap++;
        }
        if (j->need_values) {
            const float *v = j->values + (size_t)j->src->kv_of_head[plan->heads[h]] * j->T * j->D;
            metrics_output_kept(p, kept, n, s->mass[g], v, j->D, j->o_kept);
            a->output_error += metrics_relative_error(j->o_kept, j->o_full + (size_t)h * j->D, j->D);
            a->n_output++;
        }
        if (consistent) {
            full_score(j, cfg->score, h, p, len, j->full_score);
            a->consistency += metrics_consistency(s->scores, kept, n, j->full_score, len,
                                                  policy_budget_of(s->p), j->scratch);
            a->n_consistency++;
        }
    }
}

/* The oracle's view of the future: Σ over the member heads of total − running sum. */
static void fill_future(const layer_job *j, stream *s)
{
    const policy_entry *kept = policy_entries(s->p);
    const int n = policy_size(s->p);
    for (int i = 0; i < n; i++) {
        const int pos = kept[i].position;
        double f = 0;
        for (int g = 0; g < s->n_members; g++) {
            const size_t at = (size_t)s->members[g] * j->T + pos;
            f += j->total[at] - j->sums[at];
        }
        s->future[i] = (float)(f > 0 ? f : 0);
    }
}

static void tell_observer(const layer_job *j, const stream *s, int t,
                          const policy_entry *kept, int n)
{
    for (int g = 0; g < s->n_members; g++) {
        const int h = s->members[g];
        replay_attended a = {s->cfg, j->src->layers[j->li], j->src->heads[j->plan->heads[h]],
                             t, row_of(j, h, t), kept, n};
        j->plan->observe(j->plan->observe_ctx, &a);
    }
}

/* Token t joins the stream and query t attends: append, gather and renormalise each
 * member's row over the kept entries, observe, and measure C_t. */
static int attend(layer_job *j, stream *s, int t, replay_acc *acc)
{
    policy_entry entry = j->src->tokens[t];
    entry.key_norm = key_norm(j, s, t);
    if (policy_append(s->p, &entry) != 0)
        return KV_ENOMEM;

    const policy_entry *kept = policy_entries(s->p);
    const int n = policy_size(s->p);
    for (int g = 0; g < s->n_members; g++)
        s->mass[g] = metrics_gather(row_of(j, s->members[g], t), kept, n,
                                    s->rows + (size_t)g * n);
    if (j->plan->observe)
        tell_observer(j, s, t, kept, n);
    policy_observe(s->p, s->rows, s->n_members);
    if (t == j->src->prompt_len - 1)
        policy_end_prompt(s->p);

    if (t >= s->first)
        measure(j, s, t, acc);
    return KV_OK;
}

static void evict_when_due(const layer_job *j, stream *s)
{
    int k = policy_due(s->p);
    if (k <= 0)
        return;
    if (policy_needs_future(s->p)) {
        fill_future(j, s);
        policy_set_future(s->p, s->future);
    }
    policy_evict(s->p, k, s->slots);
}

/* Step t of configuration c, in the contract's order (invariant 1): every stream
 * attends and observes, adakv's group plans, then each stream evicts when due. */
static int replay_step(layer_job *j, int c, int t, replay_acc *acc)
{
    for (int i = j->first[c]; i < j->first[c + 1]; i++)
        if (attend(j, &j->streams[i], t, acc) != KV_OK)
            return KV_ENOMEM;
    if (j->groups[c])
        policy_group_plan(j->groups[c]);
    for (int i = j->first[c]; i < j->first[c + 1]; i++)
        evict_when_due(j, &j->streams[i]);
    return KV_OK;
}

/* What every stream of step t shares: running sums, full outputs, fresh memos. */
static void step_shared(layer_job *j, int t)
{
    for (int h = 0; h < j->H; h++) {
        const float *p = row_of(j, h, t);
        if (j->need_sums) {
            double *S = j->sums + (size_t)h * j->T;
#pragma omp simd
            for (int i = 0; i <= t; i++)
                S[i] += p[i];
        }
        if (j->need_values) {
            const float *v = j->values + (size_t)j->src->kv_of_head[j->plan->heads[h]] * j->T * j->D;
            metrics_output_full(p, t + 1, v, j->D, j->o_full + (size_t)h * j->D);
        }
        j->memo[h].count = 0;
    }
}

/* --- a layer job ------------------------------------------------------------------- */

static void job_free(layer_job *j)
{
    for (int i = 0; i < j->n_streams; i++)
        stream_free(&j->streams[i]);
    for (int c = 0; j->groups && c < j->plan->n_configs; c++)
        policy_group_free(j->groups[c]);   /* after its members */
    free(j->streams);
    free(j->first);
    free(j->groups);
    free(j->block);
    free(j->keys);
    free(j->knorm);
    free(j->values);
    free(j->total);
    free(j->sums);
    free(j->o_full);
    free(j->o_kept);
    free(j->full_score);
    free(j->scratch);
    free(j->memo);
}

static int plan_needs_future(const replay_plan *plan)
{
    for (int c = 0; c < plan->n_configs; c++) {
        policy *p = policy_new(&plan->configs[c].policy, NULL, 0);
        int needs = p && policy_needs_future(p);
        policy_free(p);
        if (needs)
            return 1;
    }
    return 0;
}

static int plan_needs_consistency(const replay_plan *plan)
{
    for (int c = 0; c < plan->n_configs; c++)
        if (score_has_full_version(plan->configs[c].score))
            return (plan->metrics & REPLAY_CONSISTENCY) != 0;
    return 0;
}

static int job_init(layer_job *j, replay_source *src, const replay_plan *plan, int l,
                    kv_err *err)
{
    memset(j, 0, sizeof *j);
    j->src = src;
    j->plan = plan;
    j->l = l;
    j->li = plan->layers[l];
    j->T = src->T;
    j->D = src->head_dim;
    j->H = plan->n_heads;
    j->K = src->n_kv;
    j->need_future = plan_needs_future(plan);
    j->need_sums = j->need_future || plan_needs_consistency(plan);
    j->need_values = (plan->metrics & REPLAY_OUTPUT) && src->has_values && j->D > 0;
    const size_t T = (size_t)j->T, D = (size_t)j->D, H = (size_t)j->H, K = (size_t)j->K;
    int failed = 0;
    j->block = alloc_zero(H * REPLAY_BLOCK * T, sizeof *j->block, &failed);
    j->keys = alloc_zero(REPLAY_BLOCK * D, sizeof *j->keys, &failed);
    j->knorm = alloc_zero(K * T, sizeof *j->knorm, &failed);
    if (j->need_values)
        j->values = alloc_zero(K * T * D, sizeof *j->values, &failed);
    if (j->need_sums) {
        j->total = alloc_zero(H * T, sizeof *j->total, &failed);
        j->sums = alloc_zero(H * T, sizeof *j->sums, &failed);
    }
    j->o_full = alloc_zero(H * D, sizeof *j->o_full, &failed);
    j->o_kept = alloc_zero(D, sizeof *j->o_kept, &failed);
    j->full_score = alloc_zero(T, sizeof *j->full_score, &failed);
    j->scratch = alloc_zero(T, sizeof *j->scratch, &failed);
    j->memo = alloc_zero(H, sizeof *j->memo, &failed);
    j->first = alloc_zero((size_t)plan->n_configs + 1, sizeof *j->first, &failed);
    j->groups = alloc_zero((size_t)plan->n_configs, sizeof *j->groups, &failed);
    if (failed)
        return kv_errorf(err, KV_ENOMEM, "out of memory for a layer of %d heads x %d steps",
                         j->H, j->T);
    return build_streams(j, err);
}

static int replay_layer(replay_source *src, const replay_plan *plan, int l, replay_acc *acc,
                        kv_err *err)
{
    layer_job j;
    int rc = job_init(&j, src, plan, l, err);
    if (rc == KV_OK && j.need_future)
        rc = read_totals(&j, err);
    for (int t0 = 0; rc == KV_OK && t0 < j.T; t0 += REPLAY_BLOCK) {
        const int n = j.T - t0 < REPLAY_BLOCK ? j.T - t0 : REPLAY_BLOCK;
        rc = read_block(&j, t0, n, err);
        for (int t = t0; rc == KV_OK && t < t0 + n; t++) {
            step_shared(&j, t);
            for (int c = 0; rc == KV_OK && c < plan->n_configs; c++)
                rc = replay_step(&j, c, t, acc);
        }
    }
    if (rc == KV_ENOMEM && err && !err->msg[0])
        kv_errorf(err, rc, "out of memory in a policy");
    if (rc != KV_OK)
        kv_err_prefix(err, "layer %d: ", src->layers[j.li]);
    job_free(&j);
    return rc;
}

/* --- the run ----------------------------------------------------------------------- */

int replay_run(replay_source *src, const replay_plan *plan, replay_acc *acc, kv_err *err)
{
    const int L = plan->n_layers;
    memset(acc, 0, (size_t)plan->n_configs * L * plan->n_heads * sizeof *acc);
    int *rc = calloc((size_t)(L > 0 ? L : 1), sizeof *rc);
    kv_err *errs = calloc((size_t)(L > 0 ? L : 1), sizeof *errs);
    if (!rc || !errs) {
        free(rc);
        free(errs);
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    }
    progress bar = {0};
    int done = 0;
    if (plan->progress)
        progress_start(&bar, "replay", L, "layers");
#pragma omp parallel for schedule(dynamic, 1)
    for (int l = 0; l < L; l++) {
        rc[l] = replay_layer(src, plan, l, acc, &errs[l]);
        if (plan->progress) {
#pragma omp critical(replay_progress)
            progress_update(&bar, ++done, -1);
        }
    }
    if (plan->progress)
        progress_finish(&bar);
    int status = KV_OK;
    for (int l = 0; l < L && status == KV_OK; l++)
        if (rc[l] != KV_OK) {
            status = rc[l];
            if (err)
                *err = errs[l];
        }
    free(rc);
    free(errs);
    return status;
}

size_t replay_peak_bytes(const replay_source *src, const replay_plan *plan, int threads)
{
    const size_t T = (size_t)src->T, D = (size_t)src->head_dim, H = (size_t)plan->n_heads;
    const size_t K = (size_t)src->n_kv;
    size_t job = H * REPLAY_BLOCK * T * 4      /* row blocks */
                 + K * T * (D + 1) * 4          /* values and key norms */
                 + H * T * 16                   /* column totals and running sums */
                 + 2 * T * 4;                   /* selection scratch, full score */
    for (int c = 0; c < plan->n_configs; c++) {
        const policy_scope_of of = plan->configs[c].scope_of;
        const size_t G = of == POLICY_SCOPE_OF_LAYER     ? H                    /* rows seen */
                         : of == POLICY_SCOPE_OF_KV_HEAD ? (H + K - 1) / K : 1;
        const size_t streams = of == POLICY_SCOPE_OF_LAYER        ? 1
                               : of == POLICY_SCOPE_OF_QUERY_HEAD ? H : K;
        /* per stream: gathered rows, future, scores, slots, and the policy's O(T)
         * state (entries of 16 bytes plus a few floats per entry) */
        job += streams * (G * T * 4 + 3 * T * 4 + T * 32);
    }
    const size_t acc = (size_t)plan->n_configs * plan->n_layers * H * sizeof(replay_acc);
    return (size_t)threads * job + acc;
}
