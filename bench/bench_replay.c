/*
 * bench_replay.c — the replay engine's rows of `make bench` (issue 7, Performance).
 *
 * On a SmolLM2 trace of about 2048 tokens (all 30 layers x 9 heads):
 *   - single-policy replay (h2o, mas) in attention elements/s, beside the memory-copy
 *     bandwidth measured right before it for the same bytes (the rows as stored), on the
 *     uncompressed trace in page cache; mass only, then with overlap and output error;
 *   - 1 -> 2 thread scaling of the same replay;
 *   - a 50-configuration sweep against 50 x one single replay, on the default-compressed
 *     trace (reading and decompressing are shared by the sweep);
 *   - the peer: tests/fixtures/replay_reference.py (numpy, vectorised over streams) on
 *     the same replay, when python3 with numpy and h5py is there;
 *   - the same replay and a 50-configuration sweep with --device cuda, when there is a
 *     CUDA device.
 * The traces are $KV_BENCH_TRACE (compression none) and $KV_BENCH_TRACE_Z (deflate:1),
 * recorded by `make bench` into build/.  A missing trace skips its rows, with a note.
 */
#include "bench.h"

#include "gpu.h"
#include "replay.h"
#include "replay_setup.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double bench_replay_seconds(replay_request req, const char *trace, double *elements)
{
    replay_setup setup;
    kv_err err = {0};
    req.trace = trace;
    int rc = replay_setup_build(&setup, &req, &err);
    if (rc != KV_OK) {
        fprintf(stderr, "bench replay: %s\n", err.msg);
        replay_setup_free(&setup);
        return -1;
    }
    const replay_plan *p = &setup.plan;
    replay_acc *acc = calloc((size_t)p->n_configs * p->n_layers * p->n_heads, sizeof *acc);
    const double T = setup.src->T, start = bench_now();
    rc = acc ? replay_setup_compute(&setup, acc, &err) : KV_ENOMEM;
    const double seconds = bench_now() - start;
    if (rc != KV_OK)
        fprintf(stderr, "bench replay: %s\n", err.msg);
    *elements = (double)p->n_layers * p->n_heads * T * (T + 1) / 2;
    free(acc);
    replay_setup_free(&setup);
    return rc == KV_OK ? seconds : -1;
}

/* GB/s of memcpy over a buffer larger than the caches. */
static double copy_bandwidth(void)
{
    const size_t n = (size_t)256 << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b)
        return free(a), free(b), -1;
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = bench_now();
        memcpy(b, a, n);
        const double sec = bench_now() - t0;
        best = sec < best ? sec : best;
    }
    volatile char sink = b[n / 2];
    (void)sink;
    free(a);
    free(b);
    return (double)n / best / 1e9;
}

/* Warm the page cache with the file's bytes, so the replay reads memory, not disk. */
static void warm(const char *path)
{
    FILE *f = fopen(path, "rb");
    static char buf[1 << 20];
    while (f && fread(buf, 1, sizeof buf, f) == sizeof buf)
        ;
    if (f)
        fclose(f);
}

static void single_replays(const char *trace, double copy_gbs)
{
    static const char *const policies[] = {"h2o", "mas"};
    static const struct { const char *name, *metrics; } sets[] = {
        {"mass", "mass"}, {"mass+overlap+output", "mass,overlap,output_error"}};
    for (int s = 0; s < 2; s++)
        for (int pi = 0; pi < 2; pi++) {
            double t1 = 0;
            for (int threads = 1; threads <= 2; threads++) {
                char config[64];
                const replay_request req = {.policies = policies[pi], .budgets = "0.2",
                                            .metrics = sets[s].metrics};
                omp_set_num_threads(threads);
                const double copy_now = copy_bandwidth();   /* beside it: the same load */
                double elements, sec = bench_replay_seconds(req, trace, &elements);
                if (sec <= 0)
                    return;
                copy_gbs = copy_now > 0 ? copy_now : copy_gbs;
                snprintf(config, sizeof config, "%s B=0.2 %s", policies[pi], sets[s].name);
                bench_row("replay Melem/s", config, threads, elements / sec / 1e6, "Melem/s");
                /* f16 rows: 2 bytes per element, copied at copy_gbs */
                bench_row("replay % of memcpy", config, threads,
                          100 * (elements * 2 / (copy_gbs * 1e9)) / sec, "%");
                if (threads == 1)
                    t1 = sec;
                else
                    bench_row("replay 1->2 speedup", config, 2, t1 / sec, "x");
            }
        }
}

static void sweep_marginal(const char *trace)
{
    double elements;
    omp_set_num_threads(2);
    const replay_request single = {.policies = "h2o", .budgets = "0.2", .metrics = "mass"};
    const replay_request sweep = {.policies = "h2o,mas", .budgets = "0.02:0.5:0.02",
                                  .metrics = "mass"};
    double one = bench_replay_seconds(single, trace, &elements);
    double fifty = bench_replay_seconds(sweep, trace, &elements);
    if (one <= 0 || fifty <= 0)
        return;
    bench_row("sweep 50 configs", "h2o,mas x 25 budgets, deflate:1", 2, fifty, "s");
    bench_row("sweep / 50 singles", "goal <= 0.20", 2, fifty / (50 * one), "ratio");
    bench_row("sweep marginal config", "(t50 - t1) / 49", 2, (fifty - one) / 49, "s");
}

/* The numpy peer on the same replay (h2o at B = 0.2 T, mass, overlap, output error). */
static void numpy_peer(const char *trace)
{
    char cmd[1024], out[64] = "";
    double elements;
    omp_set_num_threads(2);
    replay_request req = {.policies = "h2o", .budgets = "410",
                          .metrics = "mass,overlap,output_error"};
    req.params.n = 1;
    req.params.key[0] = "scope-of";
    req.params.value[0] = "kv-head";
    double ours = bench_replay_seconds(req, trace, &elements);
    snprintf(cmd, sizeof cmd, "python3 tests/fixtures/replay_reference.py '%s' --policies h2o "
             "--budgets 410 --time 2>/dev/null", trace);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(out, sizeof out, p) || ours <= 0) {
        if (p)
            pclose(p);
        fprintf(stderr, "note: numpy peer skipped (python3 with numpy and h5py needed)\n");
        return;
    }
    pclose(p);
    double theirs = atof(out);
    bench_row("numpy peer", "h2o B=410, 3 metrics", 1, theirs, "s");
    bench_row("kvsim vs numpy", "goal >= 20", 2, theirs / ours, "x");
}

/* The same single replay and 50-configuration sweep with --device cuda, beside the
 * CPU's, when this machine has a CUDA device (a note otherwise). */
static void gpu_rows(const char *trace)
{
    char desc[256];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        fprintf(stderr, "note: GPU replay rows skipped: %s\n", desc);
        return;
    }
    static const struct { const char *name; replay_request req; } runs[] = {
        {"h2o B=0.2 mass+overlap", {.policies = "h2o", .budgets = "0.2",
                                    .metrics = "mass,overlap"}},
        {"h2o,mas x 25 budgets", {.policies = "h2o,mas", .budgets = "0.02:0.5:0.02",
                                  .metrics = "mass"}},
    };
    omp_set_num_threads(2);
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        double elements;
        replay_request gpu = runs[i].req;
        gpu.device = "cuda";
        const double cpu_s = bench_replay_seconds(runs[i].req, trace, &elements);
        const double gpu_s = bench_replay_seconds(gpu, trace, &elements);
        if (cpu_s <= 0 || gpu_s <= 0)
            return;
        bench_row("replay on the GPU", runs[i].name, 2, gpu_s, "s");
        bench_row("GPU vs CPU replay", runs[i].name, 2, cpu_s / gpu_s, "x");
    }
}

void bench_replay(int quick)
{
    const char *plain = getenv("KV_BENCH_TRACE"), *packed = getenv("KV_BENCH_TRACE_Z");
    if (!plain || !packed) {
        fprintf(stderr, "note: replay rows skipped: set KV_BENCH_TRACE and KV_BENCH_TRACE_Z "
                "(make bench records them)\n");
        return;
    }
    double copy_gbs = copy_bandwidth();
    bench_row("memcpy", "256 MiB", 1, copy_gbs, "GB/s");
    warm(plain);
    single_replays(plain, copy_gbs);
    if (quick)
        return;
    sweep_marginal(packed);
    numpy_peer(plain);
    gpu_rows(plain);
}
