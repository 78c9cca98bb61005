/*
 * bench_main.c — `make bench`: the machine's physical figures on 1 and 2 threads.
 *
 * Later benchmarks (prefill, decode, record, replay) are reported beside these, as
 * ratios measured in the same run.  Usage: build/bench [--dir DIR] [--threads N] [--quick]
 * [--replay] [--shared] [--model] (--quick: the machine, single-replay and
 * shared-machine rows only; --replay: the single-replay rows only; --shared: the
 * shared-machine rows only; --model: the model rows, beside llama.cpp when built).
 */
#include "bench.h"

#include "blas_check.h"
#include "opts.h"

#include <stddef.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bench_row(const char *name, const char *config, int threads, double value, const char *unit)
{
    printf("| %-22s | %-30s | %7d | %10.2f | %-8s |\n", name, config, threads, value, unit);
    fflush(stdout);
}

typedef struct options {
    const char *dir;
    int         threads, quick, shared, replay, model;
} options;

static const opts_row bench_rows[] = {
    {"dir", 0, OPTS_TEXT, offsetof(options, dir), "DIR", "where the disk benchmark writes "
     "(default build)", 0, 0, NULL},
    {"threads", 0, OPTS_INT, offsetof(options, threads), "N", "the most threads measured "
     "(default 2)", 1, 1024, NULL},
    {"quick", 0, OPTS_FLAG, offsetof(options, quick), NULL, "the machine, single-replay "
     "and shared-machine rows only", 0, 0, NULL},
    {"replay", 0, OPTS_FLAG, offsetof(options, replay), NULL, "the single-replay rows only "
     "(beside memcpy of the same bytes)", 0, 0, NULL},
    {"shared", 0, OPTS_FLAG, offsetof(options, shared), NULL, "the shared-machine rows only "
     "(a run and a replay beside two busy loops)", 0, 0, NULL},
    {"model", 0, OPTS_FLAG, offsetof(options, model), NULL, "the model rows only (prefill, "
     "decode, peak RSS, beside llama.cpp when built)", 0, 0, NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

int main(int argc, char **argv)
{
    options o = {"build", 2, 0, 0, 0, 0};
    const opts_command cmd = {.prog = "bench", .usage = "build/bench [options]",
                              .about = "The benchmark table of `make bench` (bench/).",
                              .groups = {{"options", bench_rows, &o}}};
    kv_err err = {0};
    int rc = opts_parse(&cmd, argc, argv, &err);
    if (rc == OPTS_HELP)
        return 0;
    if (rc)
        return opts_fail(cmd.prog, &err);
    const char *dir = o.dir;
    const int max_threads = o.threads, quick = o.quick;
    char why[256];
    if (!blas_is_openmp(why, sizeof why))
        fprintf(stderr, "warning: %s\n", why);
    printf("| %-22s | %-30s | %7s | %10s | %-8s |\n", "benchmark", "configuration", "threads",
           "value", "unit");
    printf("|%s|%s|%s|%s|%s|\n", "------------------------", "--------------------------------",
           "---------", "------------", "----------");
    const char *model = getenv("KV_MODEL") ? getenv("KV_MODEL")
                                           : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    for (int t = 1; o.model && t <= max_threads; t++)
        bench_model(t, model);
    if (o.model)
        return 0;
    if (o.shared || o.replay) {
        if (o.replay)
            bench_replay(1);
        if (o.shared)
            bench_shared(model);
        return 0;
    }
    double yardstick = 0;
    for (int t = 1; t <= max_threads; t++) {
        omp_set_num_threads(t);
        blas_set_threads(t);
        yardstick = bench_gemm(t);
        bench_memory(t);
        bench_disk(t, dir);
    }
    for (int t = 1; !quick && t <= max_threads; t++)
        bench_model(t, model);
    if (!quick)
        bench_record(max_threads, model);
    bench_replay(quick);
    if (!quick)
        bench_rebuild(model, yardstick);
    bench_shared(model);
    return 0;
}
