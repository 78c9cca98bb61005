/*
 * live.c — the live-eviction driver; live.h states its invariants.
 *
 * Each layer's streams are a policy_layer (policies/policy.h), which owns the step
 * order; this file hands it the rows, the keys and values of the joining token, and
 * removes from the cache what it evicts.  The rows of the chunk being fed live in
 * `rows` until model_forward() returns:
 * rows[((i · L + l) · H + h) · width ...] is query head h of layer l for the chunk's
 * token i, its first n_keys floats written by the hook.
 */
#include "live.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct live {
    model              *m;
    const model_config *c;
    const tokenizer    *tok;         /* may be NULL: no token flags */
    kv_cache           *cache;
    policy_config       cfg;         /* as given */
    int                 L, H, K, G;  /* layers, query heads, KV heads, heads per KV head */
    int                 full;        /* `full`: no streams, no hooks (4) */
    int                 reposition;  /* (5) keys re-rotated to 0..n-1 after evictions */
    int                 vectors;     /* a policy reads key or value vectors */
    policy_layer      **layers;      /* (L,) each layer's streams */
    int                *head_id;     /* (H,) 0..H-1, the shape of every layer */
    int                *kv_of;       /* (H,) each query head's KV head */
    int                 t;           /* tokens fed: the next position */
    int                 seq_len;     /* the longest sequence the run feeds */
    int                 whole;       /* the cache was reserved for the whole sequence */
    int                 fitted;      /* (6) done once the prompt was fed */
    int                 t0, n, width;/* the chunk's first position, length, row stride */
    float              *rows;        /* (chunk, L, H, width) */
    size_t              rows_cap;    /* floats allocated */
    float              *vec;         /* (2, K, D) the joining token's keys and values */
    int                 queries_on;  /* a policy reads queries (expected-attention) */
    float              *queries;     /* (chunk, L, H, D) post-RoPE, from the query hook */
    size_t              queries_cap; /* floats allocated */
    float              *rope;        /* (L, n_rot/2) each layer's RoPE frequencies */
    live_stats          stats;
    int                 mark;        /* live_mark's position, -1: none */
    live_stats          mark_stats;
};

/* --- the hook: called by model_forward, possibly from several threads ------------- */

static void on_row(void *ctx, int layer, int q_head, int pos, const float *probs, int n)
{
    live *lv = ctx;
    size_t at = (((size_t)(pos - lv->t0) * lv->L + layer) * lv->H + q_head) * lv->width;
    memcpy(lv->rows + at, probs, (size_t)n * sizeof *probs);   /* (3) one place per head */
}

static void on_query(void *ctx, int layer, int q_head, int pos, const float *q, int dim)
{
    live *lv = ctx;
    size_t at = (((size_t)(pos - lv->t0) * lv->L + layer) * lv->H + q_head) * dim;
    memcpy(lv->queries + at, q, (size_t)dim * sizeof *q);
}

/* --- set-up ------------------------------------------------------------------------ */

static int make_layers(live *lv, int seq_len, kv_err *err)
{
    lv->layers = calloc((size_t)lv->L, sizeof *lv->layers);
    lv->head_id = calloc((size_t)lv->H, sizeof *lv->head_id);
    lv->kv_of = calloc((size_t)lv->H, sizeof *lv->kv_of);
    lv->vec = calloc((size_t)2 * lv->K * lv->c->head_dim, sizeof *lv->vec);
    const int half = lv->c->head_dim;   /* room for n_rot/2 <= head_dim frequencies */
    lv->rope = calloc((size_t)lv->L * half, sizeof *lv->rope);
    if (!lv->layers || !lv->head_id || !lv->kv_of || !lv->vec || !lv->rope)
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d layers of streams", lv->L);
    for (int h = 0; h < lv->H; h++)
        lv->head_id[h] = h, lv->kv_of[h] = h / lv->G;
    for (int l = 0; l < lv->L; l++) {
        /* window 0: the model masks a sliding window itself, and live eviction budgets
         * every layer against the sequence (docs/POLICIES.md, "Sliding-window layers") */
        const model_geometry *g = model_layer_geometry(lv->m, l);
        model_rope_freqs(lv->m, l, lv->rope + (size_t)l * half);
        const policy_shape shape = {l, lv->L, lv->H, lv->head_id, lv->kv_of, lv->K, seq_len, 0,
                                    {lv->rope + (size_t)l * half, g->n_rot,
                                     g->rope == MODEL_ROPE_NEOX}, NULL, 0, 0};
        if (!(lv->layers[l] = policy_layer_new(&lv->cfg, &shape, err)))
            return err && err->code ? err->code : KV_EUSAGE;
    }
    const unsigned flags = policy_flags(policy_layer_stream(lv->layers[0], 0));
    if (flags & POLICY_NEEDS_FUTURE)
        return kv_errorf(err, KV_EUSAGE, "policy %s needs future attention: it runs in "
                         "replay only (kvsim replay)", lv->cfg.name);
    if (flags & POLICY_READS_OUT_PROJ)   /* live generation does not lend W_o yet */
        return kv_errorf(err, KV_EUSAGE, "policy %s reads the output projection: it runs "
                         "in replay only (kvsim replay --model)", lv->cfg.name);
    lv->vectors = (flags & (POLICY_READS_KEYS | POLICY_READS_VALUES)) != 0;
    lv->queries_on = (flags & POLICY_READS_QUERIES) != 0;
    return KV_OK;
}

/* (6) Entries a stream may hold at once: policy_layer_capacity (B + s, pace's largest
 * block), or the whole sequence when a policy may keep it. */
static int reserve_of(const live *lv, int seq_len)
{
    int most = 0;
    for (int l = 0; !lv->full && l < lv->L; l++) {
        int cap = policy_layer_capacity(lv->layers[l]);
        if (cap == 0)
            return seq_len;
        most = cap > most ? cap : most;
    }
    return lv->full || most >= seq_len ? seq_len : most;
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
    lv->mark = -1;
    int rc = check_sizes(lv, seq_len, err);
    if (!rc && policy_config_scope_of(cfg) == POLICY_SCOPE_OF_QUERY_HEAD)
        rc = kv_errorf(err, KV_EUSAGE, "policy %s: scope-of query-head needs a KV cache per "
                       "query head; live eviction supports kv-head and layer", cfg->name);
    if (!rc && !lv->full)
        rc = make_layers(lv, seq_len, err);
    lv->seq_len = seq_len;
    lv->whole = !rc && !lv->full && reserve_of(lv, seq_len) == seq_len;
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
    for (int l = 0; lv->layers && l < lv->L; l++)
        policy_layer_free(lv->layers[l]);
    free(lv->layers);
    free(lv->head_id);
    free(lv->kv_of);
    free(lv->rows);
    free(lv->vec);
    free(lv->queries);
    free(lv->rope);
    kv_cache_free(lv->cache);
    free(lv);
}

int live_set_reposition(live *lv, int on, kv_err *err)
{
    if (lv->t > 0 || kv_cache_set_compact_positions(lv->cache, on))
        return kv_errorf(err, KV_EUSAGE, "--reposition must be chosen before the first token");
    if (on && lv->queries_on)   /* its queries would turn at compact positions */
        return kv_errorf(err, KV_EUSAGE, "policy %s reads queries at their positions: "
                         "--reposition is refused with it", lv->cfg.name);
    lv->reposition = on != 0;
    return KV_OK;
}

/* --- chunks (4) ----------------------------------------------------------------- */

int live_chunk(const live *lv, int want)
{
    int c = want;
    if (lv->t < lv->cfg.prompt_len && lv->t + c > lv->cfg.prompt_len)
        c = lv->cfg.prompt_len - lv->t;   /* the prompt ends on a chunk's last token */
    if (lv->full)
        return c < 1 ? 1 : c;
    c = c > LIVE_CHUNK ? LIVE_CHUNK : c;
    for (int l = 0; l < lv->L; l++) {   /* only the chunk's last token may evict */
        int quiet = policy_layer_quiet(lv->layers[l]);
        c = quiet < c - 1 ? quiet + 1 : c;
    }
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
    need = (size_t)n * lv->L * lv->H * lv->c->head_dim;
    if (lv->queries_on && need > lv->queries_cap) {
        if (grow(&lv->queries, need, sizeof *lv->queries))
            return kv_errorf(err, KV_ENOMEM, "out of memory for %zu queries",
                             (size_t)n * lv->L * lv->H);
        lv->queries_cap = need;
    }
    return KV_OK;
}

/* The step's side of the policy_io callbacks: which layer and chunk token. */
typedef struct step_ctx {
    live *lv;
    int   l, i;
} step_ctx;

/* (2), (3) Stream s's member heads' real rows of chunk token i over its kept slots. */
static int copy_rows(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    (void)err;
    const step_ctx *x = ctx;
    const live *lv = x->lv;
    const int *heads;
    const int G = policy_layer_members(lv->layers[x->l], s, &heads), n = policy_size(p);
    for (int g = 0; g < G; g++)
        memcpy(rows + (size_t)g * n,
               lv->rows + (((size_t)x->i * lv->L + x->l) * lv->H + heads[g]) * lv->width,
               (size_t)n * sizeof *rows);
    return KV_OK;
}

/* (2), (5) Drop what stream s evicted from the cache of its KV head(s). */
static void drop_slots(void *ctx, int s, const int *slots, int k)
{
    const step_ctx *x = ctx;
    live *lv = x->lv;
    const int kv = policy_layer_kv(lv->layers[x->l], s);
    for (int h = kv >= 0 ? kv : 0; h < (kv >= 0 ? kv + 1 : lv->K); h++) {
        kv_cache_remove(lv->cache, x->l, h, slots, k);
        if (lv->reposition)
            model_cache_reposition(lv->m, lv->cache, x->l, h);
    }
    lv->stats.evicted += k;
    lv->stats.evictions++;
}

/* Chunk token i's keys and values in layer l, every KV head, from the cache: evictions
 * happen only at a chunk's last token (4), so it sits n - 1 - i slots from the end. */
static void token_vectors(live *lv, int l, int i, policy_token *tok)
{
    const int D = lv->c->head_dim;
    for (int k = 0; k < lv->K; k++) {
        const size_t slot = (size_t)kv_cache_size(lv->cache, l, k) - (size_t)(lv->n - i);
        memcpy(lv->vec + (size_t)k * D, kv_cache_keys(lv->cache, l, k) + slot * D,
               (size_t)D * sizeof *lv->vec);
        memcpy(lv->vec + ((size_t)lv->K + k) * D, kv_cache_values(lv->cache, l, k) + slot * D,
               (size_t)D * sizeof *lv->vec);
    }
    tok->keys = lv->vec;
    tok->values = lv->vec + (size_t)lv->K * D;
    tok->dim = D;
    tok->stride = (size_t)D;
}

static double mean_cache_size(const live *lv)
{
    double sum = 0;
    for (int l = 0; l < lv->L; l++)
        for (int k = 0; k < lv->K; k++)
            sum += kv_cache_size(lv->cache, l, k);
    return sum / ((double)lv->L * lv->K);
}

/* Chunk token i through every layer's streams (policies/policy_layer.c keeps the
 * order); the last token of the chunk is the only one at which eviction can be due (4). */
static int step(live *lv, int i, int32_t id, kv_err *err)
{
    static const policy_io io = {copy_rows, NULL, NULL, drop_slots};
    const int t = lv->t0 + i;
    lv->stats.attended_sum += mean_cache_size(lv) - (lv->n - 1 - i);
    policy_token tok = {.position = t, .token = id,
                        .flags = (t < lv->cfg.prompt_len ? POLICY_FLAG_PROMPT : 0) |
                                 (lv->tok ? tokenizer_token_flags(lv->tok, id) : 0)};
    int rc = KV_OK;
    for (int l = 0; rc == KV_OK && !lv->full && l < lv->L; l++) {
        step_ctx x = {lv, l, i};
        if (lv->vectors)
            token_vectors(lv, l, i, &tok);
        if (lv->queries_on) {
            tok.queries = lv->queries + ((size_t)i * lv->L + l) * lv->H * lv->c->head_dim;
            tok.query_stride = (size_t)lv->c->head_dim;
        }
        rc = policy_layer_step(lv->layers[l], &tok, &io, &x, err);
    }
    lv->stats.steps++;
    return rc;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* (6) The bytes after a feed: the prefill's largest, then, once the prompt is in, the
 * whole-sequence reserve fitted to what each stream kept plus the tokens to come. */
static void account(live *lv)
{
    const int in_prompt = lv->t0 < lv->cfg.prompt_len;
    if (in_prompt)
        lv->stats.kv_bytes_prefill = max_size(lv->stats.kv_bytes_prefill,
                                              kv_cache_bytes(lv->cache));
    if (lv->t >= lv->cfg.prompt_len && !lv->fitted) {
        lv->fitted = 1;
        const int to_come = lv->seq_len - lv->t;
        for (int l = 0; lv->whole && l < lv->L; l++) {
            const int cap = policy_layer_capacity(lv->layers[l]);   /* 0: may hold all */
            for (int k = 0; k < lv->K; k++) {   /* a failed shrink keeps the larger stream */
                const int need = kv_cache_size(lv->cache, l, k) + to_come;
                (void)kv_cache_fit(lv->cache, l, k, cap > 0 && cap < need ? cap : need);
            }
        }
    }
    lv->stats.kv_bytes = kv_cache_bytes(lv->cache);
    if (lv->t >= lv->cfg.prompt_len)
        lv->stats.kv_bytes_peak = max_size(lv->stats.kv_bytes_peak, lv->stats.kv_bytes);
}

int live_feed(live *lv, const int32_t *tokens, int n, model_logits which, float *logits,
              kv_err *err)
{
    int rc = lv->full ? KV_OK : rows_reserve(lv, n, err);
    if (rc)
        return rc;
    model_hooks hooks = {on_row, lv->queries_on ? on_query : NULL, lv};
    lv->t0 = lv->t;
    lv->n = n;
    rc = model_forward(lv->m, lv->cache, tokens, n, which, logits, lv->full ? NULL : &hooks, err);
    const double t0 = omp_get_wtime();   /* the eviction cost: observe, score, select */
    for (int i = 0; rc == KV_OK && i < n; i++)
        rc = step(lv, i, tokens[i], err);
    lv->stats.policy_s += omp_get_wtime() - t0;
    if (rc == KV_OK)
        lv->t += n;
    account(lv);
    lv->stats.kept_final = mean_cache_size(lv);
    return rc;
}

void live_get_stats(const live *lv, live_stats *out) { *out = lv->stats; }
const kv_cache *live_cache(const live *lv) { return lv->cache; }
int live_streams(const live *lv)
{
    int n = 0;
    for (int l = 0; !lv->full && l < lv->L; l++)
        n += policy_layer_streams(lv->layers[l]);
    return n;
}

const policy *live_policy(const live *lv, int layer, int kv_head)
{
    if (lv->full)
        return NULL;
    const policy_layer *L = lv->layers[layer];
    return policy_layer_stream(L, policy_layer_streams(L) == 1 ? 0 : kv_head);
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

int live_prefill(live *lv, const int32_t *tokens, int n, kv_err *err)
{
    float *logits = malloc((size_t)lv->c->n_vocab * sizeof *logits);
    if (!logits)
        return kv_errorf(err, KV_ENOMEM, "out of memory for the logits");
    int rc = feed_prompt(lv, tokens, n, logits, err);
    free(logits);
    return rc;
}

int live_mark(live *lv)
{
    for (int l = 0; !lv->full && l < lv->L; l++)
        if (!policy_layer_settled(lv->layers[l]))
            return 0;
    if (lv->reposition)
        return 0;
    lv->mark = lv->t;
    lv->mark_stats = lv->stats;
    return 1;
}

int live_rewind(live *lv, kv_err *err)
{
    if (lv->mark < 0)
        return kv_errorf(err, KV_EUSAGE, "live_rewind: no mark");
    int rc = KV_OK;
    for (int l = 0; rc == KV_OK && !lv->full && l < lv->L; l++)
        rc = policy_layer_truncate(lv->layers[l], lv->mark, err);
    kv_cache_truncate(lv->cache, lv->mark);
    lv->t = lv->mark;
    lv->stats = lv->mark_stats;
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
