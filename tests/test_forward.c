/*
 * test_forward.c — the forward pass of model/model.h on SmolLM2 ($KV_MODEL), against
 * HF transformers running the same GGUF file (tests/fixtures/forward_hf.bin, made by
 * make_forward_fixtures.py), and the properties that need no fixture: RoPE pairing,
 * GQA head mapping, batching, thread count, context limit and loader errors.
 *
 * Agreement figures are printed to stderr so that a run records them.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fixture_arrays.h"
#include "gguf_builder.h"
#include "model.h"
#include "sampler.h"
#include "test_shell.h"

static model *open_model(void)
{
    const char *path = test_model();
    cr_assert_not_null(path, "KV_MODEL is not set");
    kv_err err = {0};
    model *m = model_open(path, &err);
    cr_assert_not_null(m, "model_open: %s", err.msg);
    return m;
}

static void load_fixture(fx_file *fx)
{
    cr_assert_eq(fx_load(fx, "forward_hf.bin"), 0, "tests/fixtures/forward_hf.bin: run make fixtures");
}

/* Logits (T, V) of a whole prompt from a fresh cache, in one call. */
static float *prompt_logits(model *m, const int32_t *ids, int T)
{
    int V = model_config_of(m)->n_vocab;
    kv_err err = {0};
    kv_cache *c = model_cache_new(m, T, &err);
    float *logits = malloc((size_t)T * V * sizeof *logits);
    cr_assert(c && logits);
    cr_assert_eq(model_forward(m, c, ids, T, MODEL_LOGITS_ALL, logits, NULL, &err), 0, "%s", err.msg);
    kv_cache_free(c);
    return logits;
}

/* How many of the reference's top-k ids are in our top-k at one position. */
static int topk_overlap(const float *row, int V, const int32_t *ref, int k)
{
    int hits = 0;
    for (int j = 0; j < k; j++) {
        int above = 0;   /* our rank of ref[j]: entries strictly larger */
        for (int i = 0; i < V && above < k; i++)
            above += row[i] > row[ref[j]];
        hits += above < k;
    }
    return hits;
}

typedef struct agreement {
    int    positions, top1, top5_hits;
    double max_dlogit;
} agreement;

static void compare_prompt(const fx_file *fx, int p, const float *logits, int V, agreement *a)
{
    const fx_array *ids = fx_get(fx, "p%d.ids", p), *top = fx_get(fx, "p%d.top_ids", p);
    const fx_array *top_l = fx_get(fx, "p%d.top_logits", p);
    const int32_t *ti = top->data;
    const float *tl = top_l->data;
    for (int t = 0; t < ids->dims[0]; t++) {
        const float *row = logits + (size_t)t * V;
        a->positions++;
        a->top1 += sampler_argmax(row, V) == ti[t * 10];
        a->top5_hits += topk_overlap(row, V, ti + t * 10, 5);
        for (int j = 0; j < 10; j++)
            a->max_dlogit = fmax(a->max_dlogit, fabs(row[ti[t * 10 + j]] - tl[t * 10 + j]));
    }
}

/* The whole logit vector at a few positions of prompts 0 and 4. */
static double compare_full(const fx_file *fx, int p, const float *logits, int V)
{
    const fx_array *pos = fx_get(fx, "p%d.full_pos", p), *full = fx_get(fx, "p%d.full_logits", p);
    const float *ref = full->data;
    double max = 0.0;
    for (int i = 0; i < pos->dims[0]; i++)
        for (int v = 0; v < V; v++)
            max = fmax(max, fabs(logits[(size_t)((int32_t *)pos->data)[i] * V + v] - ref[(size_t)i * V + v]));
    return max;
}

Test(forward, logits_agree_with_transformers, .timeout = 900)
{
    model *m = open_model();
    fx_file fx;
    load_fixture(&fx);
    int V = model_config_of(m)->n_vocab;
    agreement a = {0};
    double full = 0.0;
    for (int p = 0; p < 5; p++) {
        const fx_array *ids = fx_get(&fx, "p%d.ids", p);
        float *logits = prompt_logits(m, ids->data, ids->dims[0]);
        compare_prompt(&fx, p, logits, V, &a);
        if (p == 0 || p == 4)
            full = fmax(full, compare_full(&fx, p, logits, V));
        free(logits);
    }
    fprintf(stderr, "forward vs transformers: %d positions, top-1 %.2f%%, top-5 overlap %.4f, "
            "max |dlogit| %.2e (top-10 entries), %.2e (full rows)\n", a.positions,
            100.0 * a.top1 / a.positions, a.top5_hits / (5.0 * a.positions), a.max_dlogit, full);
    cr_assert_geq(a.positions, 900);
    cr_assert_geq(a.top1, 0.99 * a.positions);
    cr_assert_geq(a.top5_hits, 0.98 * 5 * a.positions);
    cr_assert_lt(a.max_dlogit, 1e-2);
    cr_assert_lt(full, 1e-2);
    fx_free(&fx);
    model_free(m);
}

/* Rows of the hooked (layer, head) pairs, captured in full (T, T). */
typedef struct row_capture {
    const int32_t *pairs;   /* (P, 2) */
    int            P, T, calls, out_of_order;
    int            last_pos[8];
    float         *rows;    /* (P, T, T) */
} row_capture;

static void capture_row(void *ctx, int layer, int q_head, int pos, const float *probs, int n)
{
    row_capture *c = ctx;
    for (int i = 0; i < c->P; i++) {
        if (c->pairs[2 * i] != layer || c->pairs[2 * i + 1] != q_head)
            continue;
        c->out_of_order += pos <= c->last_pos[i] || n != pos + 1;
        c->last_pos[i] = pos;
        memcpy(c->rows + ((size_t)i * c->T + pos) * c->T, probs, (size_t)n * sizeof *probs);
        __atomic_add_fetch(&c->calls, 1, __ATOMIC_RELAXED);
    }
}

Test(forward, attention_rows_agree_with_transformers)
{
    model *m = open_model();
    fx_file fx;
    load_fixture(&fx);
    const fx_array *ids = fx_get(&fx, "p%d.ids", 0), *pairs = fx_find(&fx, "attn.pairs");
    const fx_array *ref = fx_find(&fx, "attn.rows");
    cr_assert(pairs && ref);
    int T = ids->dims[0], P = pairs->dims[0];
    row_capture cap = {.pairs = pairs->data, .P = P, .T = T,
                       .rows = calloc((size_t)P * T * T, sizeof(float))};
    for (int i = 0; i < 8; i++)
        cap.last_pos[i] = -1;
    model_hooks hooks = {.attn_row = capture_row, .ctx = &cap};
    kv_cache *c = model_cache_new(m, T, NULL);
    cr_assert_eq(model_forward(m, c, ids->data, T, MODEL_LOGITS_NONE, NULL, &hooks, NULL), 0);
    cr_assert_eq(cap.calls, P * T);
    cr_assert_eq(cap.out_of_order, 0, "rows of one head come in query order, over keys 0..t");
    double max = 0.0;
    for (size_t i = 0; i < (size_t)P * T * T; i++)
        max = fmax(max, fabs(cap.rows[i] - ((float *)ref->data)[i]));
    fprintf(stderr, "attention rows vs transformers: %d (layer, head) pairs x %d rows, max |dp| %.2e\n",
            P, T, max);
    cr_assert_lt(max, 1e-4);
    free(cap.rows);
    kv_cache_free(c);
    fx_free(&fx);
    model_free(m);
}

/* Greedy decoding one token at a time (the matrix-vector path) from a chat prompt. */
Test(forward, greedy_chat_generation_matches_transformers)
{
    model *m = open_model();
    fx_file fx;
    load_fixture(&fx);
    const fx_array *prompt = fx_find(&fx, "gen.prompt"), *gen = fx_find(&fx, "gen.ids");
    cr_assert(prompt && gen);
    int V = model_config_of(m)->n_vocab, n = gen->dims[0], same = 0;
    float *logits = malloc((size_t)V * sizeof *logits);
    kv_cache *c = model_cache_new(m, prompt->dims[0] + n, NULL);
    cr_assert_eq(model_forward(m, c, prompt->data, prompt->dims[0], MODEL_LOGITS_LAST, logits, NULL, NULL), 0);
    for (int i = 0; i < n; i++) {
        int32_t next = sampler_argmax(logits, V);
        if (next != ((int32_t *)gen->data)[i])
            break;
        same++;
        cr_assert_eq(model_forward(m, c, &next, 1, MODEL_LOGITS_LAST, logits, NULL, NULL), 0);
    }
    fprintf(stderr, "greedy generation vs transformers: %d of %d tokens identical\n", same, n);
    cr_assert_geq(same, 32);
    free(logits);
    kv_cache_free(c);
    fx_free(&fx);
    model_free(m);
}

/* The NEOX pairing on a GGUF llama file rotates the wrong pairs: agreement collapses. */
Test(forward, neox_pairing_breaks_agreement)
{
    model *m = open_model();
    fx_file fx;
    load_fixture(&fx);
    const fx_array *ids = fx_get(&fx, "p%d.ids", 2);
    int V = model_config_of(m)->n_vocab;
    agreement normal = {0}, neox = {0};
    float *logits = prompt_logits(m, ids->data, ids->dims[0]);
    compare_prompt(&fx, 2, logits, V, &normal);
    free(logits);
    model_set_rope(m, MODEL_ROPE_NEOX);
    logits = prompt_logits(m, ids->data, ids->dims[0]);
    compare_prompt(&fx, 2, logits, V, &neox);
    free(logits);
    fprintf(stderr, "rope pairing: NORMAL top-1 %d/%d, NEOX top-1 %d/%d, max |dlogit| %.2e vs %.2e\n",
            normal.top1, normal.positions, neox.top1, neox.positions, normal.max_dlogit, neox.max_dlogit);
    cr_assert_eq(normal.top1, normal.positions);
    cr_assert_lt(neox.top1, 0.9 * neox.positions);
    cr_assert_gt(neox.max_dlogit, 1.0);
    fx_free(&fx);
    model_free(m);
}

/* Query vectors of one layer at the last position, captured through the query hook. */
typedef struct query_capture {
    int    layer, pos, hd;
    float  q[64][128];
    float  rows[64][64];
    int    n_keys;
} query_capture;

static void capture_query(void *ctx, int layer, int h, int pos, const float *q, int hd)
{
    query_capture *c = ctx;
    if (layer == c->layer && pos == c->pos)
        memcpy(c->q[h], q, (size_t)hd * sizeof *q);
}

static void capture_last_row(void *ctx, int layer, int h, int pos, const float *p, int n)
{
    query_capture *c = ctx;
    if (layer == c->layer && pos == c->pos) {
        memcpy(c->rows[h], p, (size_t)n * sizeof *p);
        c->n_keys = n;
    }
}

/* max |softmax(q·Kᵀ/sqrt(hd)) − row| with K from one KV stream. */
static double row_error(const query_capture *c, const kv_cache *cache, int h, int kvh)
{
    const float *K = kv_cache_keys(cache, c->layer, kvh);
    double s[64], max = -1e30, sum = 0.0, err = 0.0;
    for (int j = 0; j < c->n_keys; j++) {
        s[j] = 0.0;
        for (int i = 0; i < c->hd; i++)
            s[j] += (double)c->q[h][i] * K[j * c->hd + i];
        s[j] /= sqrt((double)c->hd);
        max = fmax(max, s[j]);
    }
    for (int j = 0; j < c->n_keys; j++)
        sum += s[j] = exp(s[j] - max);
    for (int j = 0; j < c->n_keys; j++)
        err = fmax(err, fabs(s[j] / sum - c->rows[h][j]));
    return err;
}

/* Query head h reads KV head h / (n_head / n_head_kv), and no other. */
Test(forward, gqa_maps_query_heads_to_consecutive_groups)
{
    model *m = open_model();
    const model_config *cfg = model_config_of(m);
    int32_t ids[12] = {504, 3575, 282, 4649, 314, 19556, 28, 392, 416, 722, 905, 17};
    static query_capture cap;
    cap = (query_capture){.layer = 5, .pos = 11, .hd = cfg->head_dim};
    model_hooks hooks = {.attn_row = capture_last_row, .query = capture_query, .ctx = &cap};
    kv_cache *c = model_cache_new(m, 12, NULL);
    cr_assert_eq(model_forward(m, c, ids, 12, MODEL_LOGITS_NONE, NULL, &hooks, NULL), 0);
    cr_assert_eq(cap.n_keys, 12);
    int group = cfg->n_head / cfg->n_head_kv;
    for (int h = 0; h < cfg->n_head; h++)
        for (int kvh = 0; kvh < cfg->n_head_kv; kvh++) {
            double e = row_error(&cap, c, h, kvh);
            if (kvh == h / group)
                cr_assert_lt(e, 1e-5, "head %d with its KV head %d: error %g", h, kvh, e);
            else
                cr_assert_gt(e, 1e-3, "head %d also fits KV head %d", h, kvh);
        }
    kv_cache_free(c);
    model_free(m);
}

/* Next-token logits after `ids`, fed in calls of `chunk` tokens. */
static void logits_in_chunks(model *m, const int32_t *ids, int T, int chunk, float *out)
{
    kv_cache *c = model_cache_new(m, T, NULL);
    for (int t = 0; t < T; t += chunk) {
        int n = T - t < chunk ? T - t : chunk;
        cr_assert_eq(model_forward(m, c, ids + t, n, MODEL_LOGITS_LAST, out, NULL, NULL), 0);
    }
    kv_cache_free(c);
}

static double max_diff(const float *a, const float *b, int n)
{
    double max = 0.0;
    for (int i = 0; i < n; i++)
        max = fmax(max, fabs(a[i] - b[i]));
    return max;
}

/* One batch, chunks of it and token-by-token decoding give the same logits. */
Test(forward, batched_chunked_and_one_by_one_agree)
{
    model *m = open_model();
    int V = model_config_of(m)->n_vocab;
    int32_t ids[24];
    for (int i = 0; i < 24; i++)
        ids[i] = 200 + 37 * i;
    float *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4), *c = malloc((size_t)V * 4);
    logits_in_chunks(m, ids, 24, 24, a);
    logits_in_chunks(m, ids, 24, 10, b);
    logits_in_chunks(m, ids, 24, 1, c);
    double ab = max_diff(a, b, V), ac = max_diff(a, c, V);
    fprintf(stderr, "batched vs chunked max |dlogit| %.2e, batched vs one by one %.2e\n", ab, ac);
    cr_assert_lt(ab, 1e-3);
    cr_assert_lt(ac, 1e-3);
    free(a), free(b), free(c);
    model_free(m);
}

Test(forward, one_and_two_threads_agree)
{
    model *m = open_model();
    int V = model_config_of(m)->n_vocab;
    int32_t ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = 1000 + 91 * i;
    float *one = malloc((size_t)V * 4), *two = malloc((size_t)V * 4);
    for (int chunk = 1; chunk <= 20; chunk += 19) {   /* the one-token path, then batches */
        model_set_threads(1);
        logits_in_chunks(m, ids, 20, chunk, one);
        model_set_threads(2);
        logits_in_chunks(m, ids, 20, chunk, two);
        double d = max_diff(one, two, V);
        fprintf(stderr, "1 vs 2 threads, calls of %d tokens: max |dlogit| %.2e\n", chunk, d);
        cr_assert_eq(d, 0.0, "logits of calls of %d tokens depend on the thread count", chunk);
    }
    free(one), free(two);
    model_free(m);
}

Test(forward, positions_beyond_the_context_are_an_error)
{
    model *m = open_model();
    int n_ctx = model_config_of(m)->n_ctx;
    kv_cache *c = model_cache_new(m, 0, NULL);
    kv_cache_advance(c, n_ctx - 2);
    int32_t ids[3] = {1, 2, 3};
    kv_err err = {0};
    cr_assert_eq(model_forward(m, c, ids, 3, MODEL_LOGITS_LAST, NULL, NULL, &err), KV_ERANGE);
    cr_assert(strstr(err.msg, "exceed the context"), "%s", err.msg);
    cr_assert_eq(kv_cache_size(c, 0, 0), 0, "nothing joined the cache");
    int32_t bad = 1 << 20;
    cr_assert_eq(model_forward(m, c, &bad, 1, MODEL_LOGITS_NONE, NULL, NULL, &err), KV_ERANGE);
    kv_cache_free(c);
    model_free(m);
}

Test(kvtrace_run, prompt_longer_than_the_context_is_an_error)
{
    size_t cap = 64 * 1024;
    char *cmd = malloc(cap + 1024);
    int n = snprintf(cmd, cap, "\"%s/kvtrace\" run \"%s\" '", getenv("KV_BIN"), test_model());
    for (int i = 0; i < 9000; i++)
        n += snprintf(cmd + n, cap - n, " 7");
    snprintf(cmd + n, cap - n, "' --max-new-tokens 1 2>&1");
    FILE *p = popen(cmd, "r");
    char out[4096] = {0};
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int status = pclose(p);
    cr_assert_eq(WEXITSTATUS(status), 1, "exit status, output: %s", out);
    cr_assert(strstr(out, "expected 1 .. 8192"), "message: %s", out);
    free(cmd);
}

Test(kvtrace_run, same_seed_same_text)
{
    char cmd[2048], a[4096] = {0}, b[4096] = {0};
    snprintf(cmd, sizeof cmd, "\"%s/kvtrace\" run \"%s\" 'Once upon a time' --max-new-tokens 12 "
             "--temperature 0.9 --top-k 40 --top-p 0.9 --seed 7 --threads 2 2>/dev/null",
             getenv("KV_BIN"), test_model());
    for (int r = 0; r < 2; r++) {
        FILE *p = popen(cmd, "r");
        size_t got = fread(r ? b : a, 1, 4095, p);
        cr_assert_eq(pclose(p), 0);
        cr_assert_gt(got, 0);
    }
    cr_assert_str_eq(a, b);
}

/* ---- loader errors, on small GGUF files built here ---------------------------------- */

static void kv_str(gbuf *b, const char *key, const char *value)
{
    gbuf_str(b, key);
    gbuf_u32(b, 8);
    gbuf_str(b, value);
}

static void kv_u32(gbuf *b, const char *key, uint32_t value)
{
    gbuf_str(b, key);
    gbuf_u32(b, 4);
    gbuf_u32(b, value);
}

/* A GGUF with no tensors and the given architecture; block_count only if asked. */
static model *open_built(const char *arch, int with_blocks, kv_err *err)
{
    gbuf b = {0};
    gbuf_bytes(&b, "GGUF", 4);
    gbuf_u32(&b, 3);
    gbuf_u64(&b, 0);
    gbuf_u64(&b, with_blocks ? 2 : 1);
    kv_str(&b, "general.architecture", arch);
    if (with_blocks)
        kv_u32(&b, "llama.embedding_length", 64);
    char path[256];
    gguf_builder_write_temp(b.p, b.n, "bad.gguf", path);
    model *m = model_open(path, err);
    gguf_builder_remove_temp(path);
    gbuf_free(&b);
    return m;
}

Test(model_open, names_missing_keys_and_unsupported_architectures)
{
    kv_err err = {0};
    cr_assert_null(open_built("mamba", 0, &err));
    cr_assert_eq(err.code, KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "architecture 'mamba' is not supported"), "%s", err.msg);
    cr_assert_null(open_built("llama", 1, &err));
    cr_assert_eq(err.code, KV_ENOTFOUND);
    cr_assert(strstr(err.msg, "missing required key 'llama.block_count'"), "%s", err.msg);
    cr_assert_null(model_open("/nonexistent.gguf", &err));
    model_free(NULL);
}
