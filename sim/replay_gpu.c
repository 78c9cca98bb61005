/*
 * replay_gpu.c — `kvsim replay|sweep --device cuda`: the plan run by gpu/gpu_replay.cu.
 *
 * The host describes every stream of every configuration and layer as sim/replay.c
 * builds them (members, stream ids, the budget a CPU policy resolves, with layer
 * schedules), reads each block of 64 rows for all selected (layer, head) pairs on the
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

/* The presets whose rules the kernel has: the score x scope family (scored.c). */
static int family_on_gpu(const char *name)
{
    static const char *const names[] = {"scored", "h2o", "mas", "roco", "tova", "streaming",
                                        "recency", "full"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i]))
            return 1;
    return 0;
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

/* Why configuration cfg cannot run on the GPU, or NULL. */
static const char *unsupported(const replay_config *cfg)
{
    const policy_config *pc = &cfg->policy;
    if (!family_on_gpu(pc->name))
        return "the GPU runs full, scored, h2o, mas, roco, tova, streaming and recency";
    if (!strcmp(pc->name, "full"))
        return NULL;
    if (gpu_score(cfg->score) < 0)
        return "the GPU scores are aas, mas, ltas and recency";
    if (pc->phase != POLICY_PHASE_STREAM)
        return "the GPU runs the stream phase only";
    if (pc->stride > GPU_REPLAY_MAX_STRIDE)
        return "the GPU evicts at most 64 entries at once (--stride <= 64)";
    if (pc->hard_limit || pc->soft_limit)
        return "the GPU has no length-adaptive limits (soft-limit, hard-limit)";
    return NULL;
}

/* The scope in force, once the preset is applied: what the kernel's rules cover. */
static const char *unsupported_scope(int scope)
{
    if (scope & ~(POLICY_SCOPE_SINKS | POLICY_SCOPE_WINDOW | POLICY_SCOPE_STD))
        return "the GPU scopes are sinks, window and std";
    if ((scope & POLICY_SCOPE_WINDOW) && (scope & POLICY_SCOPE_STD))
        return "the GPU does not combine the window and std scopes";
    return NULL;
}

/* --- streams, as sim/replay.c builds them ------------------------------------------- */

typedef struct builder {
    const replay_source *src;
    const replay_plan   *plan;
    gpu_stream_desc     *desc;
    int                  n, cap;
    int                  c, l;   /* the configuration and layer being walked */
} builder;

/* Describe one stream of configuration b->c in plan layer b->l (replay_stream_fn). */
static int add_stream(void *ctx, const int *members, int G, int kv, uint64_t id, kv_err *err)
{
    builder *b = ctx;
    const int c = b->c, l = b->l;
    const replay_config *cfg = &b->plan->configs[c];
    policy_config pc = cfg->policy;
    pc.stream_id = id;
    pc.layer = b->src->layers[b->plan->layers[l]];
    pc.n_layers = b->src->model_layers;
    char why[KV_ERR_MSG_MAX];
    policy *p = policy_new(&pc, why, sizeof why);
    if (!p)
        return kv_errorf(err, KV_EUSAGE, "%s", why);
    const policy_config *in = policy_config_of(p);
    const int B = policy_budget_of(p), full = !strcmp(pc.name, "full");
    const char *scope_why = full ? NULL : unsupported_scope(in->scope);
    if (scope_why) {
        policy_free(p);
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: policy '%s': %s; run it on the "
                         "CPU", pc.name, scope_why);
    }
    gpu_stream_desc *d = &b->desc[b->n++];
    memset(d, 0, sizeof *d);
    d->layer = l;
    d->n_members = G;
    (void)kv;   /* the members' own KV heads below: a layer stream spans them all */
    for (int g = 0; g < G; g++) {
        d->members[g] = members[g];
        d->kv[g] = b->src->kv_of_head[b->plan->heads[members[g]]];
        d->acc[g] = (int)(((size_t)c * b->plan->n_layers + l) * b->plan->n_heads + members[g]);
    }
    d->score = full ? GPU_SCORE_RECENCY : gpu_score(in->score);
    d->gqa = in->gqa == POLICY_GQA_MAX ? GPU_GQA_MAX : in->gqa == POLICY_GQA_SUM ? GPU_GQA_SUM
                                                                                 : GPU_GQA_MEAN;
    d->budget = full || B == POLICY_BUDGET_UNLIMITED ? INT_MAX / 2 : B;
    d->stride = in->stride;
    d->sinks = in->scope & POLICY_SCOPE_SINKS ? in->sinks : 0;
    d->std_scope = (in->scope & POLICY_SCOPE_STD) != 0;
    d->recent = in->recent;
    if (in->scope & (POLICY_SCOPE_WINDOW | POLICY_SCOPE_STD))
        d->window = policy_window_entries(in, B);
    d->first = replay_first_step(cfg->policy.budget, b->src->T);
    policy_free(p);
    return KV_OK;
}

static int add_config(builder *b, int c, kv_err *err)
{
    int rc = KV_OK;
    b->c = c;
    for (b->l = 0; rc == KV_OK && b->l < b->plan->n_layers; b->l++)
        rc = replay_streams_of(b->src, b->plan, c, b->l, add_stream, b, err);
    return rc;
}

static int describe(builder *b, kv_err *err)
{
    const replay_plan *plan = b->plan;
    if (plan->n_heads > GPU_REPLAY_MAX_MEMBERS)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: at most %d heads per layer "
                         "(select fewer with --heads)", GPU_REPLAY_MAX_MEMBERS);
    b->cap = plan->n_configs * plan->n_layers * plan->n_heads;
    if (!(b->desc = calloc((size_t)(b->cap ? b->cap : 1), sizeof *b->desc)))
        return kv_errorf(err, KV_ENOMEM, "out of memory for the stream list");
    int rc = KV_OK;
    for (int c = 0; rc == KV_OK && c < plan->n_configs; c++) {
        const char *why = unsupported(&plan->configs[c]);
        rc = why ? kv_errorf(err, KV_EUNSUPPORTED, "--device cuda: policy '%s': %s; run it "
                             "on the CPU", plan->configs[c].policy.name, why)
                 : add_config(b, c, err);
    }
    return rc;
}

int replay_gpu_streams(const replay_source *src, const replay_plan *plan,
                       gpu_stream_desc **out, int *n, kv_err *err)
{
    builder b = {src, plan, NULL, 0, 0, 0, 0};
    int rc = describe(&b, err);
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
    if ((plan->metrics & ~allowed) || plan->observe)
        return kv_errorf(err, KV_EUNSUPPORTED, "--device cuda computes mass (and mean_cache), "
                         "overlap and output_error; ask for those with --metrics");
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
