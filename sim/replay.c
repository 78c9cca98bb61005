/*
 * replay.c — the replay engine (see replay.h): row blocks in, per-step metrics out.
 *
 * Invariants (tests/test_replay.c names each one it checks):
 *   (1) A query attends to B+1..B+s entries once eviction has begun: the engine drives
 *       each configuration's streams with policy_layer_step (policies/policy.h (2)),
 *       which asks it for the rows (gathered and renormalised over the kept entries)
 *       and lets it measure C_t, the entries query t attended, before the eviction.
 *   (2) Ties are the policy's business (policy.h (4)); the metrics' own ties are
 *       resolved as metrics.h says, the same for every configuration.
 *   (3) Results ignore the thread count: a layer job touches only its own layer's
 *       accumulators, sums in step order, and errors are reported for the lowest
 *       failing layer.
 *   (4) Memory is O(T) per stream, O(T·D) per KV head for the keys and values a policy
 *       or a metric reads, plus one block of REPLAY_BLOCK rows per head of the layer
 *       being replayed (floats, or the trace's f16 chunks: replay_source_rows); no
 *       T x T matrix is ever resident.
 *   (5) Each row block is read once per layer job and fed to every configuration;
 *       a second, earlier pass reads them once more only when an oracle needs the
 *       column totals (future_t(i) = total(i) − Σ_{τ≤t} p_τ(i)).
 *   (6) A sliding-window layer (src->window): its streams drop keys older than the
 *       window and budget a fraction of it (policy_layer_new); the metrics look only
 *       at the keys query t can see, t-W+1..t: top-B overlap and the full-cache
 *       score of consistency are taken over them (mass and output error need
 *       nothing: the rows are zero before).
 */
#include "replay.h"

#include "fp16.h"
#include "metrics.h"
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Per-step shared facts of one head: the top-n threshold for a few n at a time. */
#define THETA_MEMO 32   /* distinct cache sizes per step: budgets x strides of a sweep */
typedef struct theta_memo {
    int   count;
    int   n[THETA_MEMO], above[THETA_MEMO];
    float theta[THETA_MEMO];
    float last;   /* the threshold found last, kept across steps: a guess for the next */
} theta_memo;

/* Everything one layer job owns. */
typedef struct layer_job {
    replay_source     *src;
    const replay_plan *plan;
    int                l, li;        /* plan layer index and recorded layer index */
    int                T, D, H, K;   /* steps, head dim, plan heads, recorded KV heads */
    int                window;       /* W > 0: a sliding-window layer; 0: none */
    int                need_future;  /* an oracle runs: column totals and running sums */
    int                need_sums;    /* running column sums (oracle or consistency) */
    int                need_keys;    /* a policy reads key vectors */
    int                need_output;  /* output error */
    int                need_values;  /* output error, or a policy reads value vectors */
    int                need_queries; /* a policy reads queries (expected-attention) */
    float             *block;        /* (H, block_floats) each head's rows: floats, or
                                        f16 chunks (REPLAY_F16_COLS wide) */
    size_t             block_floats; /* REPLAY_BLOCK x T floats, or n_cols f16 chunks */
    replay_block      *rows;         /* (H,) the current block of each head */
    const unsigned char **cols;      /* (H, n_cols) each head's f16 chunks in block */
    int                n_cols;       /* ceil(T / REPLAY_F16_COLS) */
    float             *row_f;        /* (H, T) row t of an f16 block, as floats */
    int               *row_f_t;      /* (H,) the step row_f holds, -1 none */
    int                t0;           /* the block's first step */
    float             *keys;         /* (K, T, D) */
    float             *values;       /* (K, T, D) */
    float             *queries;      /* (H, T, D) post-RoPE, when need_queries */
    double            *total, *sums; /* (H, T) column totals and running sums */
    float             *o_full;       /* (H, D) full-cache output of each head at t */
    float             *o_kept;       /* (H, D) each member head's output over C_t */
    float             *full_score;   /* (T,) */
    float             *scores;       /* (T,) the policy's scores, for consistency */
    float             *scratch;      /* (2T,) selection */
    uint16_t          *half;         /* (T,) the f16 entries a gather keeps */
    double            *mass;         /* (H,) mass kept by each member of the stream
                                        being stepped */
    theta_memo        *memo;         /* (H,) */
    policy_layer     **layers;       /* (n_configs,) each configuration's streams */
    int               *head_id;      /* (H,) the shape of this layer's streams */
    int               *kv_of;        /* (H,) */
} layer_job;

static void *alloc_zero(size_t n, size_t size, int *failed)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        *failed = 1;
    return p;
}

/* --- reading ---------------------------------------------------------------------- */

/* Rows t0..t0+n-1 of plan head h into its part of block: f16 chunks or floats. */
static int read_rows(layer_job *j, int h, int t0, int n, kv_err *err)
{
    float *buf = j->block + (size_t)h * j->block_floats;
    j->rows[h].col = j->cols + (size_t)h * j->n_cols;
    j->row_f_t[h] = -1;
    j->t0 = t0;
    return replay_source_rows(j->src, j->li, j->plan->heads[h], t0, n, buf,
                              j->block_floats * sizeof *buf, (size_t)(t0 + n), &j->rows[h],
                              err);
}

static int read_kv(layer_job *j, int k, int t0, int n, kv_err *err)
{
    float *keys = j->need_keys ? j->keys + ((size_t)k * j->T + t0) * j->D : NULL;
    float *values = j->need_values ? j->values + ((size_t)k * j->T + t0) * j->D : NULL;
    return replay_source_read_kv(j->src, j->li, k, t0, n, keys, values, err);
}

/* Read rows t0..t0+n-1 of every plan head, and the keys/values of every KV head. */
static int read_block(layer_job *j, int t0, int n, kv_err *err)
{
    int rc = KV_OK;
    for (int h = 0; rc == KV_OK && h < j->H; h++)
        rc = read_rows(j, h, t0, n, err);
    for (int k = 0; rc == KV_OK && (j->need_keys || j->need_values) && k < j->K; k++)
        rc = read_kv(j, k, t0, n, err);
    for (int h = 0; rc == KV_OK && j->need_queries && h < j->H; h++)
        rc = replay_source_read_queries(j->src, j->li, j->plan->heads[h], t0, n,
                                        j->queries + ((size_t)h * j->T + t0) * j->D, err);
    return rc;
}

/* Row t of head h as floats, entries 0..t (all any metric reads): where it was read,
 * or converted once per step from an f16 block (only overlap, output error,
 * consistency, sums and observers need it; mass gathers the kept entries). */
static const float *row_of(const layer_job *j, int h, int t)
{
    const replay_block *b = &j->rows[h];
    const size_t r = (size_t)(t - j->t0);
    if (b->f32)
        return b->f32 + r * b->width;
    float *out = j->row_f + (size_t)h * j->T;
    if (j->row_f_t[h] != t) {
        for (int c0 = 0; c0 <= t; c0 += REPLAY_F16_COLS)
            fp16_bytes_to_f32_n(b->col[c0 / REPLAY_F16_COLS] + 2 * r * REPLAY_F16_COLS,
                                out + c0, t + 1 - c0 < REPLAY_F16_COLS ? (size_t)(t + 1 - c0)
                                                                 : REPLAY_F16_COLS);
        j->row_f_t[h] = t;
    }
    return out;
}

/* The values plan head h attends to: its KV head's (T, D). */
static const float *values_of(const layer_job *j, int h)
{
    return j->values + (size_t)j->src->kv_of_head[j->plan->heads[h]] * j->T * j->D;
}

/* Query heads summed together in one pass over their KV head's values (a GQA group). */
#define ROWS_MAX 8

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
            for (int r = 0; r < n; r++) {
                const float *row = row_of(j, h, t0 + r);
#pragma omp simd
                for (int i = 0; i <= t0 + r; i++)
                    total[i] += row[i];
            }
        }
    }
    return KV_OK;
}

/* --- streams ----------------------------------------------------------------------- */

void replay_shape_of(const replay_source *src, const replay_plan *plan, int l, int *head_id,
                     int *kv_of, policy_shape *out)
{
    for (int h = 0; h < plan->n_heads; h++) {
        head_id[h] = plan->heads[h];
        kv_of[h] = src->kv_of_head[plan->heads[h]];
    }
    *out = (policy_shape){.layer = src->layers[plan->layers[l]], .n_layers = src->model_layers,
                          .n_heads = plan->n_heads, .head_id = head_id, .kv_of = kv_of,
                          .n_kv = src->n_kv, .max_len = src->T,
                          .window = src->window ? src->window[plan->layers[l]] : 0};
    const int ml = src->layers[plan->layers[l]];
    if (plan->out_proj && ml < plan->out_layers) {
        out->out_proj = plan->out_proj[ml];
        out->out_rows = plan->out_rows;
        out->out_cols = plan->out_cols;
    }
    if (src->rope_freq)
        out->rope = (policy_rope){src->rope_freq + (size_t)plan->layers[l] * (src->head_dim / 2),
                                  src->head_dim, src->rope_halves};
}

int replay_config_finish(replay_config *c, kv_err *err)
{
    char text[POLICY_VALUE_MAX];
    const char *v = policy_config_value(&c->policy, "score", text, sizeof text);
    snprintf(c->score_name, sizeof c->score_name, "%s", v ? v : "");
    v = policy_config_value(&c->policy, "scope", text, sizeof text);
    snprintf(c->scope_name, sizeof c->scope_name, "%s", v ? v : "");
    const int head = 0, kv = 0;
    const policy_shape one = {.n_layers = 1, .n_heads = 1, .head_id = &head, .kv_of = &kv,
                              .n_kv = 1};
    policy_config probe = c->policy;
    if (probe.prompt_len <= 0)   /* set per run by confirm; snapkv needs one to exist */
        probe.prompt_len = 1;
    policy_layer *L = policy_layer_new(&probe, &one, err);
    if (!L)
        return KV_EUSAGE;
    const policy *p = policy_layer_stream(L, 0);
    policy_rules rules;
    c->score = policy_rules_of(p, &rules) == 0 ? rules.score : POLICY_SCORE_NONE;
    c->scope_of = policy_config_scope_of(policy_config_of(p));
    c->policy.phase = policy_config_of(p)->phase;
    c->policy.stride = policy_config_of(p)->stride;
    policy_layer_free(L);
    return KV_OK;
}

/* Every configuration's streams of this layer, and what they need read. */
static int build_layers(layer_job *j, kv_err *err)
{
    const replay_plan *plan = j->plan;
    policy_shape shape;
    replay_shape_of(j->src, plan, j->l, j->head_id, j->kv_of, &shape);
    for (int c = 0; c < plan->n_configs; c++) {
        if (!(j->layers[c] = policy_layer_new(&plan->configs[c].policy, &shape, err)))
            return err && err->code ? err->code : KV_EUSAGE;
        const policy_layer *L = j->layers[c];
        const unsigned flags = policy_layer_streams(L) ? policy_flags(policy_layer_stream(L, 0)) : 0;
        j->need_future |= (flags & POLICY_NEEDS_FUTURE) != 0;
        j->need_keys |= (flags & POLICY_READS_KEYS) != 0;
        j->need_values |= (flags & POLICY_READS_VALUES) != 0;
        if ((flags & (POLICY_READS_KEYS | POLICY_READS_VALUES)) && j->D == 0)
            return kv_errorf(err, KV_EUSAGE, "policy %s reads key and value vectors: %s has "
                             "none recorded", plan->configs[c].policy.name, j->src->name);
        j->need_queries |= (flags & POLICY_READS_QUERIES) != 0;
        if ((flags & POLICY_READS_QUERIES) && (!j->src->has_queries || !j->src->rope_freq))
            return kv_errorf(err, KV_EUSAGE, "policy %s reads the queries and the RoPE "
                             "frequencies: %s has %s", plan->configs[c].policy.name,
                             j->src->name, j->src->has_queries ? "no RoPE it can rebuild "
                             "(docs/POLICIES.md)" : "no queries recorded (record it with "
                             "--record-queries, or row-free)");
        if ((flags & POLICY_READS_OUT_PROJ) && !shape.out_proj)
            return kv_errorf(err, KV_EUSAGE, "policy %s reads the output projection W_o: "
                             "give --model FILE, the GGUF %s was recorded from",
                             plan->configs[c].policy.name, j->src->name);
        for (int h = 0; (flags & POLICY_READS_OUT_PROJ) && h < shape.n_heads; h++)
            if ((shape.head_id[h] + 1) * j->D > shape.out_cols)
                return kv_errorf(err, KV_EUSAGE, "--model: W_o has %d columns, too few for "
                                 "head %d of %d dimensions: not the model %s was recorded "
                                 "from", shape.out_cols, shape.head_id[h], j->D, j->src->name);
        if ((flags & POLICY_READS_VALUES) && !j->src->has_values)
            return kv_errorf(err, KV_EUSAGE, "policy %s reads value vectors: %s has none "
                             "recorded", plan->configs[c].policy.name, j->src->name);
    }
    return KV_OK;
}

/* --- one step --------------------------------------------------------------------- */

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
    /* consecutive steps' thresholds are close: the last one narrows the search */
    *theta = metrics_kth_largest_near(p, len, n, m->last, j->scratch, above);
    m->last = *theta;
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

/* The full-cache score of keys 0..len-1; with a window, the keys it dropped (before
 * lo) score 0, below every visible key but a zero-scored one (invariant 6). */
static void full_score(const layer_job *j, policy_score score, int h, const float *p,
                       int lo, int len, float *out)
{
    const double *S = j->sums + (size_t)h * j->T;
    if (score == POLICY_SCORE_AAS)
        metrics_full_score_aas(S, len, out);
    else if (score == POLICY_SCORE_MAS)
        metrics_full_score_mas(S, len, out);
    else
        memcpy(out, p, (size_t)len * sizeof *out);
    memset(out, 0, (size_t)lo * sizeof *out);
}

/* The step's side of the policy_io callbacks: which configuration and step. */
typedef struct step_ctx {
    layer_job  *j;
    int         c, t;
    replay_acc *acc;
} step_ctx;

/* Gather and renormalise each member head's row over stream s's kept entries. */
static int gather_rows(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    (void)err;
    const step_ctx *x = ctx;
    layer_job *j = x->j;
    const int *heads;
    const int G = policy_layer_members(j->layers[x->c], s, &heads), n = policy_size(p);
    for (int g = 0; g < G; g++) {
        const replay_block *b = &j->rows[heads[g]];
        const size_t r = (size_t)(x->t - j->t0);
        j->mass[g] = b->f32 ? metrics_gather(b->f32 + r * b->width, policy_entries(p), n,
                                             rows + (size_t)g * n)
                            : metrics_gather_f16(b->col, r * REPLAY_F16_COLS,
                                                 policy_entries(p), n, j->half,
                                                 rows + (size_t)g * n);
    }
    return KV_OK;
}

static void tell_observer(const step_ctx *x, const int *heads, int G, const policy *p)
{
    const layer_job *j = x->j;
    for (int g = 0; g < G; g++) {
        replay_attended a = {x->c, j->src->layers[j->li], j->src->heads[j->plan->heads[heads[g]]],
                             x->t, row_of(j, heads[g], x->t), policy_entries(p), policy_size(p),
                             p};
        j->plan->observe(j->plan->observe_ctx, &a);
    }
}

/* Each member head's output over the kept entries into o_kept (G, D): members that
 * share a KV head in one pass over its values. */
static void kept_outputs(layer_job *j, const int *heads, int G, int t,
                         const policy_entry *kept, int n)
{
    for (int g0 = 0; g0 < G;) {
        const float *p[ROWS_MAX];
        float *o[ROWS_MAX];
        const float *v = values_of(j, heads[g0]);
        int R = 0;
        for (; R < ROWS_MAX && g0 + R < G && values_of(j, heads[g0 + R]) == v; R++) {
            p[R] = row_of(j, heads[g0 + R], t);
            o[R] = j->o_kept + (size_t)(g0 + R) * j->D;
        }
        metrics_output_kept_rows(p, R, kept, n, j->mass + g0, v, j->D, o);
        g0 += R;
    }
}

/* Compare C_t with the full cache for each member head and add to its accumulator. */
static void measure(void *ctx, int s, const policy *p)
{
    const step_ctx *x = ctx;
    layer_job *j = x->j;
    const replay_plan *plan = j->plan;
    const replay_config *cfg = &plan->configs[x->c];
    const int *heads;
    const int G = policy_layer_members(j->layers[x->c], s, &heads);
    if (plan->observe)
        tell_observer(x, heads, G, p);
    if (x->t < replay_first_step(cfg->policy.budget, j->T))
        return;
    const policy_entry *kept = policy_entries(p);
    const int n = policy_size(p), len = x->t + 1;
    const int lo = j->window > 0 && len > j->window ? len - j->window : 0;   /* (6) */
    const int consistent = (plan->metrics & REPLAY_CONSISTENCY) &&
                           score_has_full_version(cfg->score) &&
                           policy_scores(p, j->scores) == 0;
    const int needs_row = (plan->metrics & REPLAY_OVERLAP) || j->need_output || consistent;
    if (j->need_output)
        kept_outputs(j, heads, G, x->t, kept, n);
    for (int g = 0; g < G; g++) {
        const int h = heads[g];
        const float *row = needs_row ? row_of(j, h, x->t) : NULL;   /* mass: gathered */
        replay_acc *a = replay_acc_at(x->acc, plan, x->c, j->l, h);
        a->steps++;
        a->cache += n;
        a->mass += j->mass[g];
        if (plan->metrics & REPLAY_OVERLAP) {
            float theta;
            int above;
            top_n(j, h, row + lo, len - lo, n, &theta, &above);
            a->overlap += metrics_overlap(row, kept, n, theta, above);
            a->n_overlap++;
        }
        if (j->need_output) {
            a->output_error += metrics_relative_error(j->o_kept + (size_t)g * j->D,
                                                      j->o_full + (size_t)h * j->D, j->D);
            a->n_output++;
        }
        if (consistent) {
            full_score(j, cfg->score, h, row, lo, len, j->full_score);
            a->consistency += metrics_consistency(j->scores, kept, n, j->full_score, len,
                                                  policy_budget_of(p), j->scratch);
            a->n_consistency++;
        }
    }
}

/* The oracle's view of the future: Σ over the member heads of total − running sum. */
static void fill_future(void *ctx, int s, const policy *p, float *future)
{
    const step_ctx *x = ctx;
    const layer_job *j = x->j;
    const int *heads;
    const int G = policy_layer_members(j->layers[x->c], s, &heads);
    const policy_entry *kept = policy_entries(p);
    for (int i = 0; i < policy_size(p); i++) {
        double f = 0;
        for (int g = 0; g < G; g++) {
            const size_t at = (size_t)heads[g] * j->T + kept[i].position;
            f += j->total[at] - j->sums[at];
        }
        future[i] = (float)(f > 0 ? f : 0);
    }
}

/* Step t of configuration c: the contract's order, policies/policy_layer.c (invariant 1). */
static int replay_step(layer_job *j, int c, int t, replay_acc *acc, kv_err *err)
{
    static const policy_io io = {gather_rows, measure, fill_future, NULL};
    step_ctx x = {j, c, t, acc};
    const policy_entry *e = &j->src->tokens[t];
    const policy_token tok = {
        .position = e->position, .token = e->token, .flags = e->flags,
        .keys = j->need_keys ? j->keys + (size_t)t * j->D : NULL,
        .values = j->need_values ? j->values + (size_t)t * j->D : NULL,
        .dim = j->D,
        .stride = (size_t)j->T * j->D,
        .queries = j->need_queries ? j->queries + (size_t)t * j->D : NULL,
        .query_stride = (size_t)j->T * j->D,
    };
    return policy_layer_step(j->layers[c], &tok, &io, &x, err);
}

/* Full-cache outputs of step t: the heads that share a KV head in one pass. */
static void step_full_outputs(layer_job *j, int t)
{
    for (int h0 = 0; h0 < j->H;) {
        const float *p[ROWS_MAX];
        float *o[ROWS_MAX];
        int R = 0;
        for (; R < ROWS_MAX && h0 + R < j->H && values_of(j, h0 + R) == values_of(j, h0); R++) {
            p[R] = row_of(j, h0 + R, t);
            o[R] = j->o_full + (size_t)(h0 + R) * j->D;
        }
        metrics_output_full_rows(p, R, t + 1, values_of(j, h0), j->D, o);
        h0 += R;
    }
}

/* What every stream of step t shares: running sums, full outputs, fresh memos. */
static void step_shared(layer_job *j, int t)
{
    for (int h = 0; h < j->H; h++) {
        if (j->need_sums) {
            const float *p = row_of(j, h, t);
            double *S = j->sums + (size_t)h * j->T;
#pragma omp simd
            for (int i = 0; i <= t; i++)
                S[i] += p[i];
        }
        j->memo[h].count = 0;
    }
    if (j->need_output)
        step_full_outputs(j, t);
}

/* --- a layer job ------------------------------------------------------------------- */

static void job_free(layer_job *j)
{
    for (int c = 0; j->layers && c < j->plan->n_configs; c++)
        policy_layer_free(j->layers[c]);
    free(j->layers);
    free(j->head_id);
    free(j->kv_of);
    free(j->block);
    free(j->rows);
    free(j->cols);
    free(j->row_f);
    free(j->row_f_t);
    free(j->keys);
    free(j->values);
    free(j->queries);
    free(j->total);
    free(j->sums);
    free(j->o_full);
    free(j->o_kept);
    free(j->full_score);
    free(j->scores);
    free(j->scratch);
    free(j->half);
    free(j->mass);
    free(j->memo);
}

static int plan_needs_consistency(const replay_plan *plan)
{
    for (int c = 0; c < plan->n_configs; c++)
        if (score_has_full_version(plan->configs[c].score))
            return (plan->metrics & REPLAY_CONSISTENCY) != 0;
    return 0;
}

/* The streams first (what they read decides what is read), then the buffers. */
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
    j->window = src->window ? src->window[j->li] : 0;
    const size_t T = (size_t)j->T, D = (size_t)j->D, H = (size_t)j->H, K = (size_t)j->K;
    int failed = 0;
    j->layers = alloc_zero((size_t)plan->n_configs, sizeof *j->layers, &failed);
    j->head_id = alloc_zero(H, sizeof *j->head_id, &failed);
    j->kv_of = alloc_zero(H, sizeof *j->kv_of, &failed);
    int rc = failed ? kv_errorf(err, KV_ENOMEM, "out of memory") : build_layers(j, err);
    if (rc != KV_OK)
        return rc;
    j->need_sums = j->need_future || plan_needs_consistency(plan);
    j->need_output = (plan->metrics & REPLAY_OUTPUT) && src->has_values && j->D > 0;
    j->need_values |= j->need_output;
    j->n_cols = (j->T + REPLAY_F16_COLS - 1) / REPLAY_F16_COLS;
    const size_t f16_floats = (size_t)j->n_cols * REPLAY_BLOCK * REPLAY_F16_COLS / 2;
    j->block_floats = REPLAY_BLOCK * T > f16_floats ? REPLAY_BLOCK * T : f16_floats;
    j->block = alloc_zero(H * j->block_floats, sizeof *j->block, &failed);
    j->rows = alloc_zero(H, sizeof *j->rows, &failed);
    j->cols = alloc_zero(H * (size_t)j->n_cols, sizeof *j->cols, &failed);
    j->row_f = alloc_zero(H * T, sizeof *j->row_f, &failed);
    j->row_f_t = alloc_zero(H, sizeof *j->row_f_t, &failed);
    if (j->need_keys)
        j->keys = alloc_zero(K * T * D, sizeof *j->keys, &failed);
    if (j->need_values)
        j->values = alloc_zero(K * T * D, sizeof *j->values, &failed);
    if (j->need_queries)
        j->queries = alloc_zero(H * T * D, sizeof *j->queries, &failed);
    if (j->need_sums) {
        j->total = alloc_zero(H * T, sizeof *j->total, &failed);
        j->sums = alloc_zero(H * T, sizeof *j->sums, &failed);
    }
    j->o_full = alloc_zero(H * D, sizeof *j->o_full, &failed);
    j->o_kept = alloc_zero((size_t)H * D, sizeof *j->o_kept, &failed);
    j->full_score = alloc_zero(T, sizeof *j->full_score, &failed);
    j->scores = alloc_zero(T, sizeof *j->scores, &failed);
    j->scratch = alloc_zero(2 * T, sizeof *j->scratch, &failed);
    j->half = alloc_zero(T, sizeof *j->half, &failed);
    j->mass = alloc_zero(H, sizeof *j->mass, &failed);
    j->memo = alloc_zero(H, sizeof *j->memo, &failed);
    return failed ? kv_errorf(err, KV_ENOMEM, "out of memory for a layer of %d heads x %d "
                              "steps", j->H, j->T)
                  : KV_OK;
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
                rc = replay_step(&j, c, t, acc, err);
        }
    }
    if (rc != KV_OK)
        kv_err_prefix(err, "layer %d: ", src->layers[j.li]);
    job_free(&j);
    return rc;
}

int replay_run_layer(replay_source *src, const replay_plan *plan, int l, replay_acc *acc,
                     kv_err *err)
{
    return replay_layer(src, plan, l, acc, err);
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
