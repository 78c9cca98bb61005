/*
 * bench_model.c — the runtime on SmolLM2: prefill and decode speeds, the prefill's
 * share of the sgemm peak measured just before it, and peak memory.
 *
 * Prefill FLOPs count what the batch really computes: 2 · (weights of the layers) per
 * token, the attention's 4 · layers · heads · head_dim · (keys per query), and the
 * output matrix for the last token only.  Decode is timed over DECODE_STEPS tokens
 * after a prefill to the stated context, greedy, logits of every step computed.
 * The same model then goes beside llama.cpp (bench_llama.c).
 */
#include "bench.h"

#include "model.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_STEPS 32

/* sgemm GFLOP/s at the shape of SmolLM2's feed-forward for 512 tokens (the
 * "(SmolLM2 ffn)" row of bench_gemm), as the yardstick of the prefill rows. */
static double sgemm_peak(void)
{
    int M = 512, N = 1536, K = 576;
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    double best = 0.0;
    for (int r = 0; a && b && c && r < 5; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double g = 2.0 * M * N * K / (bench_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(a), free(b), free(c);
    return best;
}

/* The kernel's peak-RSS mark (VmHWM) is reset by writing 5 to clear_refs, so that the
 * figure is this benchmark's own and not the machine benchmarks' 512 MiB arrays. */
static void peak_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0.0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    return kb / 1024.0;
}

static double prefill_flops(const model_config *c, int T)
{
    double d = c->n_embd, qd = (double)c->n_head * c->head_dim, kvd = (double)c->n_head_kv * c->head_dim;
    double per_layer = d * qd * 2 + d * kvd * 2 + 3 * d * c->n_ff;
    double attn = 4.0 * c->n_layer * qd * (T + 1) / 2.0;   /* mean keys per query */
    return T * (2.0 * c->n_layer * per_layer + attn) + 2.0 * d * c->n_vocab;
}

/* Seconds for a prefill of T tokens into `cache` (which it leaves filled). */
static double time_prefill(model *m, kv_cache *cache, int T, float *logits)
{
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int i = 0; i < T; i++)
        ids[i] = 100 + (i * 7919) % 40000;
    double t0 = bench_now();
    int rc = model_forward(m, cache, ids, T, MODEL_LOGITS_LAST, logits, NULL, NULL);
    double dt = bench_now() - t0;
    free(ids);
    return rc ? -1.0 : dt;
}

static double time_decode(model *m, kv_cache *cache, float *logits)
{
    int V = model_config_of(m)->n_vocab;
    double t0 = bench_now();
    for (int i = 0; i < DECODE_STEPS; i++) {
        int32_t next = 0;
        for (int v = 1; v < V; v++)
            next = logits[v] > logits[next] ? v : next;
        if (model_forward(m, cache, &next, 1, MODEL_LOGITS_LAST, logits, NULL, NULL))
            return -1.0;
    }
    return bench_now() - t0;
}

double bench_model_prefill(model *m, int T)
{
    float *logits = malloc((size_t)model_config_of(m)->n_vocab * sizeof *logits);
    kv_cache *cache = logits ? model_cache_new(m, T, NULL) : NULL;
    double dt = cache ? time_prefill(m, cache, T, logits) : -1.0;
    kv_cache_free(cache);
    free(logits);
    return dt > 0 ? T / dt : -1.0;
}

double bench_model_decode(model *m, int context)
{
    float *logits = malloc((size_t)model_config_of(m)->n_vocab * sizeof *logits);
    kv_cache *cache = logits ? model_cache_new(m, context + DECODE_STEPS, NULL) : NULL;
    double dt = cache && time_prefill(m, cache, context, logits) > 0
                    ? time_decode(m, cache, logits) : -1.0;
    kv_cache_free(cache);
    free(logits);
    return dt > 0 ? DECODE_STEPS / dt : -1.0;
}

void bench_model(int threads, const char *path)
{
    kv_err err = {0};
    peak_rss_reset();
    double t0 = bench_now();
    model *m = model_open(path, &err);
    if (!m) {
        fprintf(stderr, "bench_model: %s (skipped)\n", err.msg);
        return;
    }
    model_set_threads(threads);
    bench_row("model load", "SmolLM2-135M Q4_1, GGUF blocks", threads, bench_now() - t0, "s");
    bench_row("model weights", "in memory", threads, model_weight_bytes(m) / 1e6, "MB");
    const model_config *c = model_config_of(m);
    float *logits = malloc((size_t)c->n_vocab * sizeof *logits);
    double peak = sgemm_peak();
    bench_row("sgemm yardstick", "512x576x1536", threads, peak, "GFLOP/s");
    const int lengths[] = {128, 512, 2048};
    char cfg[64];
    for (int i = 0; i < 3; i++) {
        int T = lengths[i];
        kv_cache *cache = model_cache_new(m, T + DECODE_STEPS, NULL);
        double dt = time_prefill(m, cache, T, logits);
        snprintf(cfg, sizeof cfg, "%d tokens", T);
        bench_row("prefill", cfg, threads, T / dt, "tok/s");
        snprintf(cfg, sizeof cfg, "%d tokens, %% of sgemm", T);
        bench_row("prefill GFLOP/s", cfg, threads, 100.0 * prefill_flops(c, T) / dt / 1e9 / peak, "%");
        if (T != 512) {
            snprintf(cfg, sizeof cfg, "context %d", T);
            bench_row("decode", cfg, threads, DECODE_STEPS / time_decode(m, cache, logits), "tok/s");
            bench_row("KV cache", cfg, threads, kv_cache_bytes(cache) / 1e6, "MB");
        }
        kv_cache_free(cache);
    }
    bench_row("peak RSS", "load + runs up to 2048 tokens", threads, peak_rss_mb(), "MB");
    free(logits);
    bench_llama(threads, path, m);
    model_free(m);
}
