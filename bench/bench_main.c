/*
 * bench_main.c — `make bench`: the machine's physical figures on 1 and 2 threads.
 *
 * Later benchmarks (prefill, decode, record, replay) are reported beside these, as
 * ratios measured in the same run.  Usage: build/bench [--dir DIR] [--threads N] [--quick]
 * (--quick: the machine and single-replay rows only).
 */
#include "bench.h"

#include "blas_check.h"

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

int main(int argc, char **argv)
{
    const char *dir = "build";
    int max_threads = 2, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            max_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--threads N] [--quick]\n", argv[0]);
            return 2;
        }
    }
    char why[256];
    if (!blas_is_openmp(why, sizeof why))
        fprintf(stderr, "warning: %s\n", why);
    printf("| %-22s | %-30s | %7s | %10s | %-8s |\n", "benchmark", "configuration", "threads",
           "value", "unit");
    printf("|%s|%s|%s|%s|%s|\n", "------------------------", "--------------------------------",
           "---------", "------------", "----------");
    for (int t = 1; t <= max_threads; t++) {
        omp_set_num_threads(t);
        blas_set_threads(t);
        bench_gemm(t);
        bench_memory(t);
        bench_disk(t, dir);
    }
    for (int t = 1; !quick && t <= max_threads; t++)
        bench_model(t, getenv("KV_MODEL") ? getenv("KV_MODEL") : "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!quick)
        bench_record(max_threads, getenv("KV_MODEL") ? getenv("KV_MODEL")
                                                     : "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    bench_replay(quick);
    return 0;
}
