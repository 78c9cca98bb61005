/*
 * policy_layer.c — the streams of one layer and the step: the contract's order
 * (policy.h (2)) written once, for every driver.
 *
 * Streams follow the aggregation scope: one per KV head that has a query head (its G
 * member heads' rows reduced by cfg.gqa), one per query head, or one for the layer
 * (all H rows; its kept slots apply to every KV head).  A stream's id, which seeds
 * its generator, is layer · 1000 + KV head, + the query head's model number, or + 0.
 * Scratch for the rows, the oracle's future and evicted slots is the layer's, sized
 * by its largest stream; steps allocate only when a stream outgrows it.
 *
 * A sliding-window layer (policy.h, policy_layer_new): the model itself forgets keys
 * older than its window, so a step first drops them from every stream (the policy
 * never chooses them: they are not an eviction it made), and the budget is of the
 * window, not of the sequence.
 */
#include "policy_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct policy_layer {
    int      n;          /* streams */
    policy **stream;     /* (n,) */
    int     *first;      /* (n + 1,) stream s's members are member[first[s]..first[s+1]) */
    int     *member;     /* (H,) head indices 0..H-1 of the shape */
    int     *kv;         /* (n,) KV head of each stream, -1 for a layer stream */
    int      n_kv;
    int      window;     /* W > 0: keys older than W steps are gone; 0: none */
    int      max_g;      /* most members of one stream */
    int      plans;      /* the policy plans across the layer's streams */
    float   *rows;       /* (max_g, cap) rows of the stream being stepped */
    float   *future;     /* (cap,) */
    int     *slots;      /* (cap,) */
    int      cap;
    float   *query;      /* (max_g, query_dim) the member queries of the joining token */
    int      query_dim;
    float   *out_norm;   /* (max_g) ‖W_o,h v‖₁ of the members, when out_proj is given */
    const float *out_proj;   /* the shape's, borrowed */
    int      out_rows, out_cols;
    int     *head_id;    /* (H,) the shape's model head numbers, and their KV heads */
    int     *kv_of;
};

/* --- building ---------------------------------------------------------------------- */

/* Stream s: members heads[0..G), KV head kv. */
static void add_members(policy_layer *L, int s, const int *heads, int G, int kv)
{
    L->first[s + 1] = L->first[s] + G;
    memcpy(L->member + L->first[s], heads, (size_t)G * sizeof *heads);
    L->kv[s] = kv;
    L->max_g = G > L->max_g ? G : L->max_g;
}

/* The members and ids of every stream, in the order results are summed in; returns
 * how many streams, ids into id[]. */
static int lay_out(policy_layer *L, policy_scope_of of, const policy_shape *sh, uint64_t *id)
{
    const uint64_t lid = (uint64_t)sh->layer * 1000;
    int heads[sh->n_heads > 0 ? sh->n_heads : 1], n = 0;
    switch (of) {
    case POLICY_SCOPE_OF_PRESET:   /* resolved by policy_config_scope_of */
    case POLICY_SCOPE_OF_LAYER:
        for (int h = 0; h < sh->n_heads; h++)
            heads[h] = h;
        id[n] = lid;
        add_members(L, n++, heads, sh->n_heads, -1);
        break;
    case POLICY_SCOPE_OF_QUERY_HEAD:
        for (int h = 0; h < sh->n_heads; h++) {
            id[n] = lid + (uint64_t)sh->head_id[h];
            add_members(L, n++, &h, 1, sh->kv_of[h]);
        }
        break;
    case POLICY_SCOPE_OF_KV_HEAD:
        for (int k = 0; k < sh->n_kv; k++) {
            int G = 0;
            for (int h = 0; h < sh->n_heads; h++)
                if (sh->kv_of[h] == k)
                    heads[G++] = h;
            if (!G)   /* a KV head none of whose query heads is given has no stream */
                continue;
            id[n] = lid + (uint64_t)k;
            add_members(L, n++, heads, G, k);
        }
        break;
    }
    return n;
}

static int grow_scratch(policy_layer *L, int need)
{
    if (need <= L->cap)
        return KV_OK;
    int cap = L->cap ? L->cap : 64;
    while (cap < need)
        cap *= 2;
    float *rows = realloc(L->rows, (size_t)L->max_g * cap * sizeof *rows);
    if (rows)
        L->rows = rows;
    float *future = realloc(L->future, (size_t)cap * sizeof *future);
    if (future)
        L->future = future;
    int *slots = realloc(L->slots, (size_t)cap * sizeof *slots);
    if (slots)
        L->slots = slots;
    if (!rows || !future || !slots)
        return KV_ENOMEM;
    L->cap = cap;
    return KV_OK;
}

static policy_layer *fail_free(policy_layer *L)
{
    policy_layer_free(L);
    return NULL;
}

/* A sliding-window layer holds at most W keys, min(T, W) over a sequence of T: the
 * budget is of that, as a global layer's is of T.  Unlimited and unresolved budgets
 * stay (policy__new refuses the latter). */
static void window_budget(policy_config *c, const policy_shape *sh)
{
    const int W = sh->window, span = sh->max_len > 0 && sh->max_len < W ? sh->max_len : W;
    if (W <= 0 || c->budget <= 0)
        return;
    c->budget = c->budget_arg.is_fraction ? policy_budget_resolve(&c->budget_arg, span)
                                          : c->budget < W ? c->budget : W;
}

/* What member_out_norms needs of the shape: W_o (borrowed) and the head maps. */
static int keep_out_proj(policy_layer *L, const policy_shape *sh)
{
    const size_t H = (size_t)(sh->n_heads > 0 ? sh->n_heads : 1);
    L->head_id = malloc(H * sizeof *L->head_id);
    L->kv_of = malloc(H * sizeof *L->kv_of);
    L->out_norm = malloc((size_t)(L->max_g > 0 ? L->max_g : 1) * sizeof *L->out_norm);
    if (!L->head_id || !L->kv_of || !L->out_norm)
        return KV_ENOMEM;
    memcpy(L->head_id, sh->head_id, (size_t)sh->n_heads * sizeof *L->head_id);
    memcpy(L->kv_of, sh->kv_of, (size_t)sh->n_heads * sizeof *L->kv_of);
    L->out_proj = sh->out_proj;
    L->out_rows = sh->out_rows;
    L->out_cols = sh->out_cols;
    return KV_OK;
}

policy_layer *policy_layer_new(const policy_config *cfg, const policy_shape *shape,
                               kv_err *err)
{
    const int H = shape->n_heads;
    policy_layer *L = calloc(1, sizeof *L);
    uint64_t *id = calloc((size_t)(H + shape->n_kv + 1), sizeof *id);
    if (L) {
        L->first = calloc((size_t)H + shape->n_kv + 2, sizeof *L->first);
        L->member = calloc((size_t)(H > 0 ? H : 1), sizeof *L->member);
        L->kv = calloc((size_t)H + shape->n_kv + 1, sizeof *L->kv);
    }
    if (!L || !id || !L->first || !L->member || !L->kv) {
        free(id);
        kv_errorf(err, KV_ENOMEM, "out of memory for the streams of layer %d", shape->layer);
        return fail_free(L);
    }
    L->n_kv = shape->n_kv;
    L->window = shape->window > 0 ? shape->window : 0;
    const int n = lay_out(L, policy_config_scope_of(cfg), shape, id);
    L->stream = calloc((size_t)(n > 0 ? n : 1), sizeof *L->stream);
    int rc = L->stream ? KV_OK : kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int s = 0; rc == KV_OK && s < n; s++) {
        policy_config c = *cfg;
        window_budget(&c, shape);
        L->stream[s] = policy__new(&c, shape->layer, shape->n_layers, id[s], 0, &shape->rope,
                                   err);
        rc = L->stream[s] ? KV_OK : err ? err->code : KV_EUSAGE;
        L->n += L->stream[s] != NULL;
    }
    free(id);
    if (rc != KV_OK)
        return fail_free(L);
    L->plans = n > 0 && (policy_flags(L->stream[0]) & POLICY_PLANS_LAYER);
    if (n > 0 && (policy_flags(L->stream[0]) & POLICY_READS_OUT_PROJ) && shape->out_proj &&
        keep_out_proj(L, shape) != KV_OK) {
        kv_errorf(err, KV_ENOMEM, "out of memory for the streams of layer %d", shape->layer);
        return fail_free(L);
    }
    int cap = policy_layer_capacity(L);
    if (grow_scratch(L, cap > 0 && (!shape->max_len || cap < shape->max_len) ? cap
                        : shape->max_len > 0 ? shape->max_len : 64) != KV_OK) {
        kv_errorf(err, KV_ENOMEM, "out of memory for the streams of layer %d", shape->layer);
        return fail_free(L);
    }
    return L;
}

void policy_layer_free(policy_layer *L)
{
    if (!L)
        return;
    for (int s = 0; L->stream && s < L->n; s++)
        policy__free(L->stream[s]);
    free(L->stream);
    free(L->first);
    free(L->member);
    free(L->kv);
    free(L->rows);
    free(L->future);
    free(L->slots);
    free(L->query);
    free(L->out_norm);
    free(L->head_id);
    free(L->kv_of);
    free(L);
}

/* --- the step ----------------------------------------------------------------------- */

/* Stream s's member queries of the token, gathered contiguous into L->query (NULL
 * without queries, or out of memory: the policy then has none, as with no keys). */
static const float *member_queries(policy_layer *L, int s, const policy_token *tok)
{
    if (!tok->queries || tok->dim < 1)
        return NULL;
    if (L->query_dim != tok->dim) {
        free(L->query);
        L->query = malloc((size_t)(L->max_g > 0 ? L->max_g : 1) * tok->dim * sizeof *L->query);
        L->query_dim = L->query ? tok->dim : 0;
        if (!L->query)
            return NULL;
    }
    for (int g = L->first[s]; g < L->first[s + 1]; g++)
        memcpy(L->query + (size_t)(g - L->first[s]) * tok->dim,
               tok->queries + (size_t)L->member[g] * tok->query_stride,
               (size_t)tok->dim * sizeof *L->query);
    return L->query;
}

/* ‖W_o,h v‖₁ for each member h of stream s, v its KV head's value: the value through
 * the head's columns of the output projection (kvpress CriticalKV's vwl1norm; one
 * float32 rounding of each output, summed in double).  NULL without them. */
static const float *member_out_norms(policy_layer *L, int s, const policy_token *tok)
{
    if (!L->out_norm || !tok->values)
        return NULL;
    const int D = tok->dim;
    for (int g = L->first[s]; g < L->first[s + 1]; g++) {
        const int m = L->member[g], col = L->head_id[m] * D;
        const float *v = tok->values + (size_t)L->kv_of[m] * tok->stride;
        if (col + D > L->out_cols)
            return NULL;
        double sum = 0;
        for (int r = 0; r < L->out_rows; r++) {
            const float *w = L->out_proj + (size_t)r * L->out_cols + col;
            double o = 0;
            for (int d = 0; d < D; d++)
                o += (double)w[d] * v[d];
            sum += fabsf((float)o);
        }
        L->out_norm[g - L->first[s]] = (float)sum;
    }
    return L->out_norm;
}

/* Stream s's view of the token's vectors: its KV head's, or every KV head's. */
static policy_vectors vectors_of(policy_layer *L, int s, const policy_token *tok)
{
    const int kv = L->kv[s];
    const size_t at = kv >= 0 ? (size_t)kv * tok->stride : 0;
    const unsigned flags = policy_flags(L->stream[s]);
    const float *q = flags & POLICY_READS_QUERIES ? member_queries(L, s, tok) : NULL;
    return (policy_vectors){
        .key = tok->keys ? tok->keys + at : NULL,
        .value = tok->values ? tok->values + at : NULL,
        .dim = tok->dim,
        .n = kv >= 0 ? 1 : L->n_kv,
        .stride = tok->stride,
        .query = q,
        .n_query = L->first[s + 1] - L->first[s],
        .out_norm = flags & POLICY_READS_OUT_PROJ ? member_out_norms(L, s, tok) : NULL,
    };
}

/* The token joins stream s, which observes its rows; the prompt ends after its last
 * token; then the driver may measure. */
static int attend(policy_layer *L, int s, const policy_token *tok, const policy_io *io,
                  void *ctx, kv_err *err)
{
    policy *p = L->stream[s];
    const policy_entry e = {tok->position, tok->token, tok->flags};
    const policy_vectors v = vectors_of(L, s, tok);
    if (grow_scratch(L, policy_size(p) + 1) != KV_OK || policy__append(p, &e, &v) != KV_OK)
        return kv_errorf(err, KV_ENOMEM, "out of memory in a policy at position %d",
                         tok->position);
    const int G = L->first[s + 1] - L->first[s];
    int rc = io->rows(ctx, s, p, L->rows, err);
    if (rc != KV_OK)
        return rc;
    policy__observe(p, L->rows, G);
    if (tok->position == policy_config_of(p)->prompt_len - 1)
        policy__end_prompt(p);
    if (io->attended)
        io->attended(ctx, s, p);
    return KV_OK;
}

static int evict_when_due(policy_layer *L, int s, const policy_io *io, void *ctx,
                          kv_err *err)
{
    policy *p = L->stream[s];
    const int due = policy__due(p);
    if (due <= 0)
        return KV_OK;
    const float *future = NULL;
    if (policy_flags(p) & POLICY_NEEDS_FUTURE) {
        if (!io->future)
            return kv_errorf(err, KV_EUSAGE, "policy %s needs future attention: it runs in "
                             "replay only", policy_config_of(p)->name);
        io->future(ctx, s, p, L->future);
        future = L->future;
    }
    const int k = policy__evict(p, due, future, L->slots);
    if (io->evicted && k > 0)
        io->evicted(ctx, s, L->slots, k);
    return KV_OK;
}

/* Keys a sliding window no longer shows query t (positions <= t - W) leave stream s
 * before t joins: the model evicted them, whatever the policy would keep. */
static void expire(policy_layer *L, int s, int32_t t, const policy_io *io, void *ctx)
{
    const int k = policy__expire(L->stream[s], t - L->window + 1, L->slots);
    if (io->evicted && k > 0)
        io->evicted(ctx, s, L->slots, k);
}

int policy_layer_step(policy_layer *L, const policy_token *tok, const policy_io *io,
                      void *ctx, kv_err *err)
{
    int rc = KV_OK;
    for (int s = 0; L->window && s < L->n; s++)
        expire(L, s, tok->position, io, ctx);
    for (int s = 0; rc == KV_OK && s < L->n; s++)
        rc = attend(L, s, tok, io, ctx, err);
    if (rc == KV_OK && L->plans)
        policy_def_of(L->stream[0])->ops.plan(L->stream, L->n);
    for (int s = 0; rc == KV_OK && s < L->n; s++)
        rc = evict_when_due(L, s, io, ctx, err);
    return rc;
}

/* --- queries ------------------------------------------------------------------------- */

int policy_layer_settled(const policy_layer *L)
{
    for (int s = 0; s < L->n; s++) {
        const policy *p = L->stream[s];
        if (p->cfg.phase != POLICY_PHASE_ONESHOT || !p->oneshot_done ||
            p->cfg.decode_interval > 0 ||
            (p->flags & (POLICY_DECIDES_DUE | POLICY_PLANS_LAYER | POLICY_SIZES_ITSELF)))
            return 0;
    }
    return 1;
}

int policy_layer_truncate(policy_layer *L, int32_t pos, kv_err *err)
{
    if (!policy_layer_settled(L))
        return kv_errorf(err, KV_EUSAGE, "policy_layer_truncate: the layer may still evict");
    for (int s = 0; s < L->n; s++)
        policy__truncate(L->stream[s], pos);
    return KV_OK;
}

int policy_layer_streams(const policy_layer *L) { return L->n; }
policy *policy_layer_stream(const policy_layer *L, int s) { return L->stream[s]; }
int policy_layer_kv(const policy_layer *L, int s) { return L->kv[s]; }

int policy_layer_members(const policy_layer *L, int s, const int **heads)
{
    *heads = L->member + L->first[s];
    return L->first[s + 1] - L->first[s];
}

int policy_layer_quiet(const policy_layer *L)
{
    int quiet = INT_MAX;
    for (int s = 0; s < L->n; s++) {
        const policy *p = L->stream[s];
        int q = policy__quiet(p);
        quiet = q < quiet ? q : quiet;
        if (L->window && policy_size(p) > 0) {   /* its oldest key expires at step a + W */
            q = policy_entries(p)[0].position + L->window - policy_seen(p);
            quiet = q < quiet ? (q > 0 ? q : 0) : quiet;
        }
    }
    return quiet;
}

int policy_layer_capacity(const policy_layer *L)
{
    int most = 0;
    for (int s = 0; s < L->n; s++) {
        int c = policy__capacity(L->stream[s]);
        if (c == 0)
            return 0;
        most = c > most ? c : most;
    }
    return most;
}
