/*
 * bench_rebuild.c — row-free traces in `make bench` (docs/TRACE_FORMAT.md, "Rebuilt
 * rows"): what rebuilding rows costs beside reading them, and the long context.
 *
 *   - replay of h2o at B = 0.2 T (mass) from the row-free 2048-token trace, in attention
 *     elements/s, and its ratio to the same replay from the stored-row traces
 *     ($KV_BENCH_TRACE uncompressed in page cache, $KV_BENCH_TRACE_Z deflate:1);
 *   - the QK^T part alone (attention_scores over every row block of two layers) in
 *     GFLOP/s, as a share of the sgemm yardstick measured in the same run;
 *   - at 8K tokens ($KV_BENCH_LONG, a text of build/): `kvtrace record` (row-free)
 *     against the plain forward pass, bytes per token of the trace, and `kvsim replay`
 *     of h2o with mass and overlap: its time and peak RSS (a child process's);
 *   - bytes per token of each trace kind at 1K and 8K: measured for row-free traces and
 *     rows at 1K, computed from the chunk layout for rows at 8K (recording 17 GB here
 *     would measure the disk, not the format).
 */
#include "bench.h"

#include "attention.h"
#include "recorder.h"
#include "replay_setup.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Seconds of one in-process replay (mass only) of h2o at B = 0.2 T, and its elements. */
static double replay_seconds(const char *trace, double *elements)
{
    const replay_request req = {.trace = trace, .policies = "h2o", .budgets = "0.2",
                                .metrics = "mass"};
    replay_setup setup;
    kv_err err = {0};
    double seconds = -1;
    if (replay_setup_build(&setup, &req, &err) == KV_OK) {
        const replay_plan *p = &setup.plan;
        replay_acc *acc = calloc((size_t)p->n_configs * p->n_layers * p->n_heads, sizeof *acc);
        const double T = setup.src->T, t0 = bench_now();
        if (acc && replay_setup_compute(&setup, acc, &err) == KV_OK)
            seconds = bench_now() - t0;
        *elements = (double)p->n_layers * p->n_heads * T * (T + 1) / 2;
        free(acc);
    }
    if (seconds < 0)
        fprintf(stderr, "bench rebuild: %s: %s\n", trace, err.msg);
    replay_setup_free(&setup);
    return seconds;
}

static void replay_rows(const char *free_trace, const char *plain, const char *packed)
{
    double e_free, e, free_s = replay_seconds(free_trace, &e_free);
    if (free_s <= 0)
        return;
    bench_row("rebuilt replay Melem/s", "h2o B=0.2 mass, row-free 2K", 2, e_free / free_s / 1e6,
              "Melem/s");
    const struct { const char *trace, *config; } others[] = {
        {plain, "vs stored none, page cache"}, {packed, "vs stored deflate:1"}};
    for (int i = 0; i < 2; i++) {
        double s = others[i].trace ? replay_seconds(others[i].trace, &e) : -1;
        if (s > 0)
            bench_row("rebuilt / stored speed", others[i].config, 2, s / free_s, "x");
    }
}

/* The scores of every row block of layers 0 and 15, all heads: attention_scores alone
 * on queries and keys read beforehand. */
static void qk_rows(const char *free_trace, double yardstick)
{
    kv_err err = {0};
    trace *tr = trace_open(free_trace, &err);
    if (!tr) {
        fprintf(stderr, "bench rebuild: %s\n", err.msg);
        return;
    }
    const trace_meta *m = trace_get_meta(tr);
    const int T = (int)m->steps, D = m->header.head_dim, H = m->header.n_heads_rec;
    float *q = malloc((size_t)H * T * D * sizeof *q), *k = malloc((size_t)T * D * sizeof *k);
    float *sc = malloc((size_t)omp_get_max_threads() * 64 * T * sizeof *sc);
    double seconds = 0, flops = 0;
    for (int layer = 0; q && k && sc && layer < m->header.n_layers_rec; layer += 15) {
        const int ki = 0;
        int ok = trace_read_kv(tr, layer, ki, 0, T, k, NULL, &err) == KV_OK;
        for (int hi = 0; ok && hi < H; hi++)
            ok = trace_read_queries(tr, layer, hi, 0, T, q + (size_t)hi * T * D, &err) == KV_OK;
        if (!ok)
            break;
        const double t0 = bench_now();
#pragma omp parallel for schedule(dynamic, 1) collapse(2) reduction(+ : flops)
        for (int hi = 0; hi < H; hi++)
            for (int b = 0; b < (T + 63) / 64; b++) {
                const int t = b * 64, n = T - t < 64 ? T - t : 64;
                attention_scores(sc + (size_t)omp_get_thread_num() * 64 * T, (size_t)(t + n),
                                 q + ((size_t)hi * T + t) * D, D, k, n, t + n, D, 1.0f);
                flops += 2.0 * D * n * (t + n);
            }
        seconds += bench_now() - t0;
    }
    if (seconds > 0) {
        bench_row("rebuild QK^T GFLOP/s", "64-row blocks, D = 64", 2, flops / seconds / 1e9,
                  "GFLOP/s");
        bench_row("QK^T % of sgemm", "goal >= 50", 2, 100 * flops / seconds / 1e9 / yardstick,
                  "%");
    }
    free(q), free(k), free(sc);
    trace_close(tr);
}

static double file_mb(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size / 1e6 : -1;
}

/* Run argv to completion; its wall seconds and peak RSS (MB).  -1 on failure. */
static double run_child(char *const argv[], double *rss_mb)
{
    const double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return -1;
    *rss_mb = (double)ru.ru_maxrss / 1024;
    return bench_now() - t0;
}

/* 8K tokens: record row-free against the plain forward pass, bytes per token, replay. */
static void long_context(const char *model, const char *text)
{
    const char *path = "build/bench_long.h5";
    char *rec[] = {"bin/kvtrace", "record", (char *)model, "--prompt-file", (char *)text,
                   "--max-new-tokens", "0", "--force", "-o", (char *)path, NULL};
    char *run[] = {"bin/kvtrace", "run", (char *)model, "--prompt-file", (char *)text,
                   "--max-new-tokens", "0", NULL};
    char *replay[] = {"bin/kvsim", "replay", (char *)path, "--policy", "h2o", "--budget",
                      "0.2", "--metrics", "mass,overlap", "-o", "/dev/null", NULL};
    double rss, rec_s = run_child(rec, &rss), run_s = run_child(run, &rss);
    kv_err err = {0};
    trace *tr = rec_s > 0 ? trace_open(path, &err) : NULL;
    if (!tr || run_s <= 0) {
        fprintf(stderr, "bench rebuild: 8K record failed (%s)\n", err.msg);
        trace_close(tr);
        return;
    }
    const trace_meta *m = trace_get_meta(tr);
    const double T = (double)m->steps, L = m->header.n_layers_rec, H = m->header.n_heads_rec;
    const double K = m->n_kv_heads_rec, D = m->header.head_dim;
    trace_close(tr);
    char config[64];
    snprintf(config, sizeof config, "%.0f tok, row-free, goal <= 1.3", T);
    bench_row("record / plain run", config, 2, rec_s / run_s, "x");
    bench_row("trace KB/token", "8K, row-free (f32 q,k)", 2, file_mb(path) * 1e3 / T, "KB");
    /* rows: f16 in 64 x 256 chunks over the causal triangle, plus f16 keys and values */
    const double rows_mb = (L * H * (T * (T + 256) / 2) * 2 + L * K * D * 4 * T) / 1e6;
    bench_row("trace KB/token", "8K, rows (computed)", 2, rows_mb * 1e3 / T, "KB");
    bench_row("row-free / row trace", "8K, goal <= 5%", 2, 100 * file_mb(path) / rows_mb, "%");
    double replay_s = run_child(replay, &rss);
    if (replay_s > 0) {
        bench_row("replay 8K", "h2o B=0.2 mass+overlap", 2, replay_s, "s");
        bench_row("replay 8K peak RSS", "goal < 1000", 2, rss, "MB");
    }
    unlink(path);
}

/* Bytes per token of both kinds at 1K tokens. */
static void one_k(const char *model)
{
    static const struct { const char *rows, *name; } kinds[] = {
        {"none", "1K, row-free"}, {"all", "1K, rows (deflate:1)"}};
    for (int i = 0; i < 2; i++) {
        char *rec[] = {"bin/kvtrace", "record", (char *)model, "--prompt-file",
                       "data/lighthouses.txt", "--max-new-tokens", "0", "--rows",
                       (char *)kinds[i].rows, "--force", "-o", "build/bench_1k.h5", NULL};
        double rss;
        kv_err err = {0};
        trace *tr = run_child(rec, &rss) > 0 ? trace_open("build/bench_1k.h5", &err) : NULL;
        if (!tr)
            continue;
        const double T = (double)trace_get_meta(tr)->steps;
        trace_close(tr);
        bench_row("trace KB/token", kinds[i].name, 2, file_mb("build/bench_1k.h5") * 1e3 / T,
                  "KB");
        unlink("build/bench_1k.h5");
    }
}

void bench_rebuild(const char *model, double yardstick)
{
    const char *free_trace = getenv("KV_BENCH_TRACE_FREE"), *text = getenv("KV_BENCH_LONG");
    if (!free_trace) {
        fprintf(stderr, "note: rebuilt-row rows skipped: set KV_BENCH_TRACE_FREE (make bench "
                "records it)\n");
        return;
    }
    omp_set_num_threads(2);
    replay_rows(free_trace, getenv("KV_BENCH_TRACE"), getenv("KV_BENCH_TRACE_Z"));
    qk_rows(free_trace, yardstick);
    one_k(model);
    if (text)
        long_context(model, text);
    else
        fprintf(stderr, "note: 8K rows skipped: set KV_BENCH_LONG (make bench makes it)\n");
}
