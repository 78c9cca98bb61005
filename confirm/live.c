/*
 * live.c — the live-eviction driver; live.h states its invariants.
 *
 * Streams are stored layer-major: streams[l * per_layer + k] is KV head k of layer l
 * (kv-head scope) or the layer's one stream (layer scope, per_layer = 1).  The rows of
 * the chunk being fed live in `rows` until model_forward() returns:
 * rows[((i · L + l) · H + h) · width ...] is query head h of layer l for the chunk's
 * token i, its first n_keys floats written by the hook.
 */
#include "live.h"

#include "recorder.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct live {
    model              *m;
    const model_config *c;
    const tokenizer    *tok;         /* may be NULL: no token flags */
    kv_cache           *cache;
    policy_config       cfg;         /* as given; stream fields set per stream */
    int                 L, H, K, G;  /* layers, query heads, KV heads, heads per KV head */
    int                 per_layer;   /* streams per layer: K, or 1 at layer scope */
    int                 full;        /* `full`: no streams, no hooks (4) */
    int                 reposition;  /* (5) keys re-rotated to 0..n-1 after evictions */
    policy            **streams;     /* (L · per_layer,) */
    policy_group      **groups;      /* (L,) adakv's shared budgets, else NULL */
    int                 t;           /* tokens fed: the next position */
    int                 t0, width;   /* the chunk's first position and row stride */
    float              *rows;        /* (chunk, L, H, width) */
    size_t              rows_cap;    /* floats allocated */
    float              *obs;         /* (H, obs_cap) one stream's rows, packed */
    int                *slots;       /* (obs_cap,) evicted slots */
    int                 obs_cap;     /* entries obs and slots hold per row */
    live_stats          stats;
};

/* --- the hook: called by model_forward, possibly from several threads ------------- */

static void on_row(void *ctx, int layer, int q_head, int pos, const float *probs, int n)
{
    live *lv = ctx;
    size_t at = (((size_t)(pos - lv->t0) * lv->L + layer) * lv->H + q_head) * lv->width;
    memcpy(lv->rows + at, probs, (size_t)n * sizeof *probs);   /* (3) one place per head */
}

/* --- set-up ------------------------------------------------------------------------ */

static int refuse(const policy_config *cfg, policy_scope_of scope_of, kv_err *err)
{
    if (scope_of == POLICY_SCOPE_OF_QUERY_HEAD)
        return kv_errorf(err, KV_EUSAGE, "policy %s: scope-of query-head needs a KV cache per "
                         "query head; live eviction supports kv-head and layer", cfg->name);
    return KV_OK;
}

static int make_stream(live *lv, int l, int k, kv_err *err)
{
    char why[KV_ERR_MSG_MAX];
    policy_config pc = lv->cfg;
    pc.stream_id = (uint64_t)l * 1000 + (lv->per_layer > 1 ? (uint64_t)k : 0);  /* as replay */
    pc.layer = l;
    pc.n_layers = lv->L;
    pc.group = lv->groups ? lv->groups[l] : NULL;
    pc.group_member = k;
    policy *p = policy_new(&pc, why, sizeof why);
    if (!p)
        return kv_errorf(err, KV_EUSAGE, "%s", why);
    lv->streams[l * lv->per_layer + k] = p;
    if (policy_needs_future(p))
        return kv_errorf(err, KV_EUSAGE, "policy %s needs future attention: it runs in "
                         "replay only (kvsim replay)", pc.name);
    return KV_OK;
}

static int make_streams(live *lv, kv_err *err)
{
    int n = lv->L * lv->per_layer;
    lv->streams = calloc((size_t)n, sizeof *lv->streams);
    if (!lv->streams)
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d streams", n);
    if (!strcmp(lv->cfg.name, "adakv")) {   /* one shared budget per layer: policy.h (2) */
        char why[KV_ERR_MSG_MAX];
        if (!(lv->groups = calloc((size_t)lv->L, sizeof *lv->groups)))
            return kv_errorf(err, KV_ENOMEM, "out of memory");
        for (int l = 0; l < lv->L; l++)
            if (!(lv->groups[l] = policy_group_new(lv->per_layer, why, sizeof why)))
                return kv_errorf(err, KV_ENOMEM, "%s", why);
    }
    int rc = KV_OK;
    for (int l = 0; rc == KV_OK && l < lv->L; l++)
        for (int k = 0; rc == KV_OK && k < lv->per_layer; k++)
            rc = make_stream(lv, l, k, err);
    return rc;
}

/* The largest budget in force over the streams (per-layer schedules differ); 0 when
 * one of them is unlimited. */
static int largest_budget(const live *lv)
{
    int max = 0;
    for (int i = 0; i < lv->L * lv->per_layer; i++) {
        int B = policy_budget_of(lv->streams[i]);
        if (B <= 0)
            return 0;
        max = B > max ? B : max;
    }
    return max;
}

/* (6) Entries a stream may hold at once: B + s (pace's largest block when larger), or
 * the whole sequence when the policy keeps what it likes. */
static int reserve_of(const live *lv, int seq_len)
{
    if (lv->full)
        return seq_len;
    /* the configuration in force: presets set their own phase (snapkv: oneshot) */
    const policy_config *cfg = policy_config_of(lv->streams[0]);
    const int B = largest_budget(lv);
    int block = cfg->stride;
    if (!strcmp(cfg->name, "pace") && cfg->stride_max > block)
        block = cfg->stride_max;   /* the adaptive stride may wait up to stride-max */
    if (B <= 0 || cfg->phase != POLICY_PHASE_STREAM || !strcmp(cfg->name, "fastgen"))
        return seq_len;
    return B + block < seq_len ? B + block : seq_len;
}

static int check_sizes(const live *lv, int seq_len, kv_err *err)
{
    if (lv->cfg.budget == POLICY_BUDGET_UNRESOLVED)
        return kv_errorf(err, KV_EUSAGE, "the budget fraction was not resolved against the "
                         "sequence length");
    /* as written: resolving clamps an entry count to the sequence (policy.h) */
    const policy_budget *b = &lv->cfg.budget_arg;
    const double asked = b->is_fraction ? b->fraction * seq_len : (double)b->entries;
    if (asked > lv->c->n_ctx)
        return kv_errorf(err, KV_ERANGE, "budget %.0f is above the model's context of %d "
                         "entries", asked, lv->c->n_ctx);
    if (seq_len < 1 || seq_len > lv->c->n_ctx)
        return kv_errorf(err, KV_ERANGE, "a sequence of %d tokens does not fit the model's "
                         "context of %d", seq_len, lv->c->n_ctx);
    return KV_OK;
}

live *live_new(model *m, const tokenizer *tok, const policy_config *cfg, int seq_len,
               kv_err *err)
{
    live *lv = calloc(1, sizeof *lv);
    if (!lv) {
        kv_errorf(err, KV_ENOMEM, "out of memory");
        return NULL;
    }
    lv->m = m, lv->tok = tok, lv->cfg = *cfg, lv->c = model_config_of(m);
    lv->L = lv->c->n_layer, lv->H = lv->c->n_head, lv->K = lv->c->n_head_kv;
    lv->G = lv->H / lv->K;
    lv->full = !cfg->name || !strcmp(cfg->name, "full");
    policy_scope_of scope_of = policy_config_scope_of(cfg);
    lv->per_layer = scope_of == POLICY_SCOPE_OF_LAYER ? 1 : lv->K;
    int rc = check_sizes(lv, seq_len, err);
    if (!rc)
        rc = refuse(cfg, scope_of, err);
    if (!rc && !lv->full)
        rc = make_streams(lv, err);
    if (!rc && !(lv->cache = model_cache_new(m, reserve_of(lv, seq_len), err)))
        rc = err && err->code ? err->code : KV_ENOMEM;
    if (rc) {
        live_free(lv);
        return NULL;
    }
    return lv;
}

void live_free(live *lv)
{
    if (!lv)
        return;
    for (int i = 0; lv->streams && i < lv->L * lv->per_layer; i++)
        policy_free(lv->streams[i]);
    for (int l = 0; lv->groups && l < lv->L; l++)
        policy_group_free(lv->groups[l]);   /* after its members */
    free(lv->streams);
    free(lv->groups);
    free(lv->rows);
    free(lv->obs);
    free(lv->slots);
    kv_cache_free(lv->cache);
    free(lv);
}

int live_set_reposition(live *lv, int on, kv_err *err)
{
    if (lv->t > 0 || kv_cache_set_compact_positions(lv->cache, on))
        return kv_errorf(err, KV_EUSAGE, "--reposition must be chosen before the first token");
    lv->reposition = on != 0;
    return KV_OK;
}

/* --- chunks (4) ----------------------------------------------------------------- */

/* Could stream p evict before the last of the next c steps?  Conservative: only
 * budgets a policy cannot exceed without evicting are trusted. */
static int may_evict_within(const live *lv, const policy *p, int c)
{
    const policy_config *pc = policy_config_of(p);
    const int in_prompt = lv->t < pc->prompt_len;
    if (in_prompt && pc->phase != POLICY_PHASE_STREAM)
        return 0;   /* oneshot and decode evict nothing before the prompt ends */
    if (policy_profile(p))
        return 1;   /* fastgen applies its profile at every step */
    int B = policy_budget_of(p);
    if (B <= 0)
        return 0;   /* unlimited (knorm's skipped layers) */
    if (pc->hard_limit > 0 && pc->soft_limit < B)
        B = pc->soft_limit > 0 ? pc->soft_limit : 1;   /* B_t may dip below B */
    int counted = policy_size(p) - (pc->phase == POLICY_PHASE_DECODE ? pc->prompt_len : 0);
    return counted + c - 1 > B;
}

int live_chunk(const live *lv, int want)
{
    int c = want;
    if (lv->t < lv->cfg.prompt_len && lv->t + c > lv->cfg.prompt_len)
        c = lv->cfg.prompt_len - lv->t;   /* the prompt ends on a chunk's last token */
    if (lv->full)
        return c < 1 ? 1 : c;
    c = c > LIVE_CHUNK ? LIVE_CHUNK : c;
    for (int i = 0; c > 1 && i < lv->L * lv->per_layer; i++)
        while (c > 1 && may_evict_within(lv, lv->streams[i], c))
            c--;
    return c < 1 ? 1 : c;
}

/* --- one chunk --------------------------------------------------------------------- */

static int largest_stream(const kv_cache *cache)
{
    int max = 0;
    for (int l = 0; l < kv_cache_n_layer(cache); l++)
        for (int k = 0; k < kv_cache_n_kv_head(cache); k++)
            max = kv_cache_size(cache, l, k) > max ? kv_cache_size(cache, l, k) : max;
    return max;
}

/* Grow *p to hold `need` elements of `size` bytes; 0 or -1 (then *p is unchanged). */
static int grow(void *p, size_t need, size_t size)
{
    void *q = realloc(*(void **)p, need * size);
    if (!q)
        return -1;
    *(void **)p = q;
    return 0;
}

/* Room for n tokens' rows, each up to the largest stream after they join. */
static int rows_reserve(live *lv, int n, kv_err *err)
{
    lv->width = largest_stream(lv->cache) + n;
    size_t need = (size_t)n * lv->L * lv->H * lv->width;
    if (need > lv->rows_cap) {
        if (grow(&lv->rows, need, sizeof *lv->rows))
            return kv_errorf(err, KV_ENOMEM, "out of memory for %zu attention rows of %d "
                             "floats", (size_t)n * lv->L * lv->H, lv->width);
        lv->rows_cap = need;
        lv->stats.row_bytes = need * sizeof *lv->rows;
    }
    if (lv->width > lv->obs_cap) {
        if (grow(&lv->obs, (size_t)lv->H * lv->width, sizeof *lv->obs) ||
            grow(&lv->slots, (size_t)lv->width, sizeof *lv->slots))
            return kv_errorf(err, KV_ENOMEM, "out of memory for rows of %d floats", lv->width);
        lv->obs_cap = lv->width;
    }
    return KV_OK;
}

static uint32_t token_flags(const live *lv, int32_t id, int t)
{
    uint32_t flags = t < lv->cfg.prompt_len ? POLICY_FLAG_PROMPT : 0;
    if (lv->tok) {
        size_t len;
        const char *piece = tokenizer_piece(lv->tok, id, &len);
        flags |= record_token_flags(tokenizer_token_type(lv->tok, id), piece, len);
    }
    return flags;
}

/* The L2 norm of slot i's key in KV head k of layer l; every KV head's mean at layer
 * scope (as replay). */
static float key_norm(const live *lv, int l, int k, int slot)
{
    const int D = lv->c->head_dim, k0 = lv->per_layer > 1 ? k : 0;
    const int k1 = lv->per_layer > 1 ? k + 1 : lv->K;
    double sum = 0;
    for (int kv = k0; kv < k1; kv++) {
        const float *key = kv_cache_keys(lv->cache, l, kv) + (size_t)slot * D;
        double s = 0;
        for (int d = 0; d < D; d++)
            s += (double)key[d] * key[d];
        sum += sqrt(s);
    }
    return (float)(sum / (k1 - k0));
}

/* (2) Stream (l, k) takes chunk token i: append, observe its heads' rows, end the
 * prompt after the prompt's last token. */
static int attend(live *lv, int l, int k, int i, int32_t id)
{
    policy *p = lv->streams[l * lv->per_layer + k];
    const int t = lv->t0 + i;
    policy_entry e = {.position = t, .token = id, .flags = token_flags(lv, id, t)};
    e.key_norm = key_norm(lv, l, k, policy_size(p));
    if (policy_append(p, &e) != 0)
        return KV_ENOMEM;
    const int n = policy_size(p), h0 = lv->per_layer > 1 ? k * lv->G : 0;
    const int G = lv->per_layer > 1 ? lv->G : lv->H;
    for (int g = 0; g < G; g++)
        memcpy(lv->obs + (size_t)g * n,
               lv->rows + (((size_t)i * lv->L + l) * lv->H + h0 + g) * lv->width,
               (size_t)n * sizeof *lv->obs);
    policy_observe(p, lv->obs, G);
    if (t == lv->cfg.prompt_len - 1)
        policy_end_prompt(p);
    return KV_OK;
}

/* (2) Evict what stream (l, k) says is due, from the policy and the cache alike. */
static void evict_when_due(live *lv, int l, int k)
{
    policy *p = lv->streams[l * lv->per_layer + k];
    int due = policy_due(p);
    if (due <= 0)
        return;
    int got = policy_evict(p, due, lv->slots);
    for (int kv = lv->per_layer > 1 ? k : 0; kv < (lv->per_layer > 1 ? k + 1 : lv->K); kv++) {
        kv_cache_remove(lv->cache, l, kv, lv->slots, got);
        if (lv->reposition && got > 0)
            model_cache_reposition(lv->m, lv->cache, l, kv);   /* (5) */
    }
    lv->stats.evicted += got;
}

static double mean_cache_size(const live *lv)
{
    double sum = 0;
    for (int l = 0; l < lv->L; l++)
        for (int k = 0; k < lv->K; k++)
            sum += kv_cache_size(lv->cache, l, k);
    return sum / ((double)lv->L * lv->K);
}

/* Chunk token i through every stream in the contract's order; the last token of the
 * chunk is the only one at which eviction can be due (4). */
static int step(live *lv, int i, int n, int32_t id)
{
    lv->stats.attended_sum += mean_cache_size(lv) - (n - 1 - i);
    for (int l = 0; !lv->full && l < lv->L; l++) {
        for (int k = 0; k < lv->per_layer; k++)
            if (attend(lv, l, k, i, id) != KV_OK)
                return KV_ENOMEM;
        if (lv->groups)
            policy_group_plan(lv->groups[l]);
        for (int k = 0; k < lv->per_layer; k++)
            evict_when_due(lv, l, k);
    }
    lv->stats.steps++;
    return KV_OK;
}

int live_feed(live *lv, const int32_t *tokens, int n, model_logits which, float *logits,
              kv_err *err)
{
    int rc = lv->full ? KV_OK : rows_reserve(lv, n, err);
    if (rc)
        return rc;
    model_hooks hooks = {on_row, NULL, lv};
    lv->t0 = lv->t;
    rc = model_forward(lv->m, lv->cache, tokens, n, which, logits, lv->full ? NULL : &hooks, err);
    for (int i = 0; rc == KV_OK && i < n; i++)
        if ((rc = step(lv, i, n, tokens[i])) != KV_OK)
            kv_errorf(err, rc, "out of memory in a policy at position %d", lv->t0 + i);
    if (rc == KV_OK)
        lv->t += n;
    size_t bytes = kv_cache_bytes(lv->cache);
    lv->stats.kv_bytes = bytes;
    lv->stats.kv_bytes_peak = bytes > lv->stats.kv_bytes_peak ? bytes : lv->stats.kv_bytes_peak;
    lv->stats.kept_final = mean_cache_size(lv);
    return rc;
}

void live_get_stats(const live *lv, live_stats *out) { *out = lv->stats; }
const kv_cache *live_cache(const live *lv) { return lv->cache; }
int live_streams(const live *lv) { return lv->full ? 0 : lv->L * lv->per_layer; }

const policy *live_policy(const live *lv, int layer, int kv_head)
{
    return lv->full ? NULL : lv->streams[layer * lv->per_layer + (lv->per_layer > 1 ? kv_head : 0)];
}

/* --- generation -------------------------------------------------------------------- */

static int is_stop(const live *lv, int32_t id)
{
    return id == lv->c->eos_id || id == lv->c->eot_id;
}

/* The prompt in the largest chunks (4) allows; the last chunk's logits are kept. */
static int feed_prompt(live *lv, const int32_t *prompt, int n_prompt, float *logits, kv_err *err)
{
    int rc = KV_OK;
    for (int at = 0; rc == KV_OK && at < n_prompt;) {
        int c = live_chunk(lv, n_prompt - at);
        rc = live_feed(lv, prompt + at, c, MODEL_LOGITS_LAST, logits, err);
        at += c;
    }
    return rc;
}

int live_generate(live *lv, sampler *smp, const int32_t *prompt, int n_prompt, int max_new,
                  live_token_fn on_token, void *ctx, live_output *out, kv_err *err)
{
    memset(out, 0, sizeof *out);
    float *logits = malloc((size_t)lv->c->n_vocab * sizeof *logits);
    out->tokens = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof *out->tokens);
    if (!logits || !out->tokens) {
        free(logits);
        return kv_errorf(err, KV_ENOMEM, "out of memory for the logits");
    }
    double t0 = omp_get_wtime();
    int rc = feed_prompt(lv, prompt, n_prompt, logits, err);
    double t1 = omp_get_wtime();
    while (rc == KV_OK && out->n < max_new) {
        int32_t next = sampler_sample(smp, logits);
        if (is_stop(lv, next))
            break;
        out->tokens[out->n++] = next;
        if (on_token)
            on_token(ctx, next);
        if (lv->t == lv->c->n_ctx)
            break;
        rc = live_feed(lv, &next, 1, MODEL_LOGITS_LAST, logits, err);
    }
    out->ttft_s = t1 - t0;
    out->decode_s = omp_get_wtime() - t1;
    live_get_stats(lv, &out->stats);
    free(logits);
    return rc;
}

void live_output_free(live_output *out)
{
    if (!out)
        return;
    free(out->tokens);
    out->tokens = NULL;
    out->n = 0;
}
