/*
 * replay_gpu.c — `kvsim replay|sweep --device cuda`: the plan run by gpu/gpu_replay.cu.
 *
 * The host describes every stream of every configuration and layer from the streams
 * policy_layer_new builds for the CPU engine (members, the budget a CPU policy
 * resolves, with layer schedules, and its score x scope rules), reads each block of 64 rows for all selected (layer, head) pairs on the
 * OpenMP threads, uploads it, and lets one CUDA block per stream step through it.  The
 * accumulators come back into replay_acc, so results.c writes the same CSV.
 *
 * Peak memory: host and device hold one row block of every selected head,
 * L·H·64·T·4 bytes (page-locked on the host), plus 45·T bytes per stream and
 * 4·G·T per stream for its gathered rows; with output error the device holds every
 * value, L·K·T·D·4 bytes, the host one block of them.
 */
#include "replay_gpu.h"

#include "gpu_replay.h"
#include "progress.h"
#include "replay_rules.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why configuration cfg cannot run on the GPU, or NULL. */
static const char *unsupported(const replay_config *cfg)
{
    const policy_config *pc = &cfg->policy;
    if (pc->phase != POLICY_PHASE_STREAM)
        return "the GPU runs the stream phase only";
    if (pc->stride > GPU_REPLAY_MAX_STRIDE)
        return "the GPU evicts at most 64 entries at once (--stride <= 64)";
    if (pc->hard_limit || pc->soft_limit)
        return "the GPU has no length-adaptive limits (soft-limit, hard-limit)";
    return NULL;
}

static int gpu_score(policy_score score)
{
    switch (score) {
    case POLICY_SCORE_AAS:     return GPU_SCORE_AAS;
    case POLICY_SCORE_MAS:     return GPU_SCORE_MAS;
    case POLICY_SCORE_LTAS:    return GPU_SCORE_LTAS;
    case POLICY_SCORE_RECENCY: return GPU_SCORE_RECENCY;
    default:                   return -1;
    }
}

/* Why stream p's rules are not the kernel's, or NULL (rules filled; full: none). */
static const char *unsupported_rules(const policy *p, policy_rules *rules)
{
    const unsigned flags = policy_flags(p);
    if (flags & POLICY_NEVER_EVICTS)
        return NULL;
    if (policy_rules_of(p, rules) != 0 ||
        (flags & (POLICY_DECIDES_DUE | POLICY_PLANS_LAYER | POLICY_NEEDS_FUTURE)))
        return "the GPU runs full and the score x scope policies that evict by the stride "
               "rule (h2o, mas, roco, tova, streaming, recency, scored)";
    if (gpu_score(rules->score) < 0)
        return "the GPU scores are aas, mas, ltas and recency";
    if (rules->scope & ~(POLICY_SCOPE_SINKS | POLICY_SCOPE_WINDOW | POLICY_SCOPE_STD))
        return "the GPU scopes are sinks, window and std";
    if ((rules->scope & POLICY_SCOPE_WINDOW) && (rules->scope & POLICY_SCOPE_STD))
        return "the GPU does not combine the window and std scopes";
    return NULL;
}

/* --- streams, as the CPU engine builds them ------------------------------------------- */

typedef struct builder {
    const replay_source *src;
    const replay_plan   *plan;
    gpu_stream_desc     *desc;
    int                  n, cap;
    int                 *head_id, *kv_of;   /* (n_heads,) replay_shape_of's */
} builder;

/* Describe stream s of layer L, configuration c, plan layer l. */
static int add_stream(builder *b, const policy_layer *L, int s, int c, int l, kv_err *err)
{
    const policy *p = policy_layer_stream(L, s);
    const replay_config *cfg = &b->plan->configs[c];
    policy_rules rules = {0};
    const char *why = unsupported_rules(p, &rules);
    if (why)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: policy '%s': %s; run it on "
                         "the CPU", cfg->policy.name, why);
    const int full = (policy_flags(p) & POLICY_NEVER_EVICTS) != 0, B = policy_budget_of(p);
    const int *members;
    const int G = policy_layer_members(L, s, &members);
    gpu_stream_desc *d = &b->desc[b->n++];
    memset(d, 0, sizeof *d);
    d->layer = l;
    d->n_members = G;
    for (int g = 0; g < G; g++) {   /* the members' own KV heads: a layer stream spans all */
        d->members[g] = members[g];
        d->kv[g] = b->src->kv_of_head[b->plan->heads[members[g]]];
        d->acc[g] = (int)(((size_t)c * b->plan->n_layers + l) * b->plan->n_heads + members[g]);
    }
    const policy_config *in = policy_config_of(p);
    d->score = full ? GPU_SCORE_RECENCY : gpu_score(rules.score);
    d->gqa = in->gqa == POLICY_GQA_MAX ? GPU_GQA_MAX : in->gqa == POLICY_GQA_SUM ? GPU_GQA_SUM
                                                                                 : GPU_GQA_MEAN;
    d->budget = full || B == POLICY_BUDGET_UNLIMITED ? INT_MAX / 2 : B;
    d->stride = in->stride;
    d->sinks = rules.scope & POLICY_SCOPE_SINKS ? rules.sinks : 0;
    d->std_scope = (rules.scope & POLICY_SCOPE_STD) != 0;
    d->recent = rules.recent;
    if (rules.scope & (POLICY_SCOPE_WINDOW | POLICY_SCOPE_STD))
        d->window = rules.window;
    d->first = replay_first_step(cfg->policy.budget, b->src->T);
    return KV_OK;
}

/* Every stream of configuration c in plan layer l, from policy_layer_new. */
static int add_layer(builder *b, int c, int l, kv_err *err)
{
    policy_shape shape;
    replay_shape_of(b->src, b->plan, l, b->head_id, b->kv_of, &shape);
    policy_layer *L = policy_layer_new(&b->plan->configs[c].policy, &shape, err);
    if (!L)
        return err && err->code ? err->code : KV_EUSAGE;
    int rc = KV_OK;
    for (int s = 0; rc == KV_OK && s < policy_layer_streams(L); s++)
        rc = add_stream(b, L, s, c, l, err);
    policy_layer_free(L);
    return rc;
}

static int describe(builder *b, kv_err *err)
{
    const replay_plan *plan = b->plan;
    if (plan->n_heads > GPU_REPLAY_MAX_MEMBERS)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: at most %d heads per layer "
                         "(select fewer with --heads)", GPU_REPLAY_MAX_MEMBERS);
    b->cap = plan->n_configs * plan->n_layers * plan->n_heads;
    b->desc = calloc((size_t)(b->cap ? b->cap : 1), sizeof *b->desc);
    b->head_id = calloc((size_t)(plan->n_heads ? plan->n_heads : 1), sizeof *b->head_id);
    b->kv_of = calloc((size_t)(plan->n_heads ? plan->n_heads : 1), sizeof *b->kv_of);
    if (!b->desc || !b->head_id || !b->kv_of)
        return kv_errorf(err, KV_ENOMEM, "out of memory for the stream list");
    int rc = KV_OK;
    for (int c = 0; rc == KV_OK && c < plan->n_configs; c++) {
        const char *why = unsupported(&plan->configs[c]);
        if (why)
            rc = kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: policy '%s': %s; run it on "
                           "the CPU", plan->configs[c].policy.name, why);
        for (int l = 0; rc == KV_OK && l < plan->n_layers; l++)
            rc = add_layer(b, c, l, err);
    }
    return rc;
}

int replay_gpu_streams(const replay_source *src, const replay_plan *plan,
                       gpu_stream_desc **out, int *n, kv_err *err)
{
    builder b = {src, plan, NULL, 0, 0, NULL, NULL};
    int rc = describe(&b, err);
    free(b.head_id);
    free(b.kv_of);
    if (rc != KV_OK) {
        free(b.desc);
        b.desc = NULL;
        b.n = 0;
    }
    *out = b.desc;
    *n = b.n;
    return rc;
}

/* --- the run ------------------------------------------------------------------------ */

/* A parallel loop's first failure (r, its message in mine) into *rc and err. */
static void keep_first_error(int r, const kv_err *mine, int *rc, kv_err *err)
{
#pragma omp critical(replay_gpu_error)
    if (*rc == KV_OK) {
        *rc = r;
        if (err)
            *err = *mine;
    }
}

/* Rows t0..t0+n-1 of every selected (layer, head), row stride t0 + n, into rows. */
static int read_block(replay_source *src, const replay_plan *plan, int t0, int n,
                      float *rows, kv_err *err)
{
    const int L = plan->n_layers, H = plan->n_heads, width = t0 + n;
    int rc = KV_OK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < L * H; i++) {
        kv_err mine = {0};
        float *out = rows + (size_t)i * GPU_REPLAY_BLOCK * width;
        int r = replay_source_read_rows(src, plan->layers[i / H], plan->heads[i % H], t0, n,
                                        out, (size_t)width, &mine);
        if (r != KV_OK)
            keep_first_error(r, &mine, &rc, err);
    }
    return rc;
}

/* Values of steps t0..t0+n-1 of every selected layer's KV heads, (L, K, 64, D). */
static int read_values(replay_source *src, const replay_plan *plan, int t0, int n,
                       float *values, kv_err *err)
{
    const int L = plan->n_layers, K = src->n_kv, D = src->head_dim;
    int rc = KV_OK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < L * K; i++) {
        kv_err mine = {0};
        int r = replay_source_read_kv(src, plan->layers[i / K], i % K, t0, n, NULL,
                                      values + (size_t)i * GPU_REPLAY_BLOCK * D, &mine);
        if (r != KV_OK)
            keep_first_error(r, &mine, &rc, err);
    }
    return rc;
}

static void copy_results(const gpu_acc *g, int n, replay_acc *acc)
{
    for (int i = 0; i < n; i++)
        acc[i] = (replay_acc){.steps = g[i].steps, .cache = g[i].cache, .mass = g[i].mass,
                              .overlap = g[i].overlap, .n_overlap = g[i].n_overlap,
                              .output_error = g[i].output_error, .n_output = g[i].n_output};
}

int replay_run_gpu(replay_source *src, const replay_plan *plan, replay_acc *acc, kv_err *err)
{
    const unsigned allowed = REPLAY_MASS | REPLAY_OVERLAP | REPLAY_OUTPUT;
    if (plan->observe)
        return kv_errorf(err, KV_EUSAGE, "--device cuda does not report kept sets (--kept, "
                         "--streams): replay on the CPU for those");
    if (plan->metrics & ~allowed)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda computes mass (and mean_cache), "
                         "overlap and output_error; ask for those with --metrics");
    for (int l = 0; src->window && l < plan->n_layers; l++)
        if (src->window[plan->layers[l]] > 0)   /* the kernel knows no sliding window */
            return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: layer %d has a sliding "
                             "window of %d keys, which the GPU replay does not apply yet; "
                             "replay it on the CPU, or select global layers (--layer-kind "
                             "global)", src->layers[plan->layers[l]], src->window[plan->layers[l]]);
    const int output = (plan->metrics & REPLAY_OUTPUT) && src->has_values && src->head_dim > 0;
    const gpu_metrics m = {(plan->metrics & REPLAY_OVERLAP) != 0, output ? src->head_dim : 0,
                           src->n_kv};
    gpu_stream_desc *desc = NULL;
    int n_streams = 0;
    const int n_acc = plan->n_configs * plan->n_layers * plan->n_heads;
    gpu_acc *out = calloc((size_t)(n_acc ? n_acc : 1), sizeof *out);
    char why[KV_ERR_MSG_MAX];
    int rc = out ? replay_gpu_streams(src, plan, &desc, &n_streams, err)
                 : kv_errorf(err, KV_ENOMEM, "out of memory");
    gpu_replay *g = NULL;
    if (rc == KV_OK && !(g = gpu_replay_new(desc, n_streams, src->T, plan->n_layers,
                                            plan->n_heads, n_acc, &m, why, sizeof why)))
        rc = kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: %s", why);
    double reading = 0, stepping = 0;   /* seconds: host reads, uploads and kernels */
    for (int t0 = 0; rc == KV_OK && t0 < src->T; t0 += GPU_REPLAY_BLOCK) {
        const int n = src->T - t0 < GPU_REPLAY_BLOCK ? src->T - t0 : GPU_REPLAY_BLOCK;
        const double start = progress_now();
        rc = read_block(src, plan, t0, n, gpu_replay_rows(g), err);
        if (rc == KV_OK && output)
            rc = read_values(src, plan, t0, n, gpu_replay_values(g), err);
        const double read = progress_now();
        if (rc == KV_OK && gpu_replay_block(g, t0, n, t0 + n, why, sizeof why) != 0)
            rc = kv_errorf(err, KV_EIO, "%s", why);
        reading += read - start;
        stepping += progress_now() - read;
    }
    if (rc == KV_OK)
        fprintf(stderr, "note: --device cuda: %d streams; reading rows %.2f s, upload and "
                "steps on the device %.2f s\n", n_streams, reading, stepping);
    if (rc == KV_OK && gpu_replay_results(g, out, why, sizeof why) != 0)
        rc = kv_errorf(err, KV_EIO, "%s", why);
    if (rc == KV_OK)
        copy_results(out, n_acc, acc);
    gpu_replay_free(g);
    free(desc);
    free(out);
    return rc;
}
