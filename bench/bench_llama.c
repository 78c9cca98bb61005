/*
 * bench_llama.c — our runtime beside llama.cpp on the same GGUF and the same thread
 * count (issue 20, item 4): decode at context 128, prefill of 512 tokens and peak RSS,
 * each as a ratio measured in this run.
 *
 * llama.cpp is found at $KV_LLAMA_BENCH or build/llama.cpp/bin/llama-bench (built by
 * scripts/build_llama_cpp.sh from PyPI's llama-cpp-python source distribution); when
 * there is none the rows say "not measured" and how to build one.  The speeds
 * alternate, ours then llama-bench's, BENCH_ROUNDS times, and each side's best is
 * kept: on a shared machine noise only ever slows a run down.  Peak RSS is each
 * program's own as a new process (its VmHWM): `kvtrace run` of the same
 * ~512-token prompt and 32 greedy tokens, and llama-bench's -pg 512,32 (one context).
 * llama.cpp's numbers are from 8-bit activations (its Q4_1/Q8_0 dot products); ours
 * keep float32 activations, exact to the fp32 reference (docs/RUNTIME.md).
 */
#include "bench.h"

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define BENCH_ROUNDS   3
#define DECODE_CONTEXT 128
#define PREFILL_TOKENS 512
#define RSS_NEW_TOKENS 32
#define PROMPT_512     "build/bench_prompt512.txt"

static const char *llama_bench_path(void)
{
    const char *p = getenv("KV_LLAMA_BENCH");
    p = p ? p : "build/llama.cpp/bin/llama-bench";
    return access(p, X_OK) == 0 ? p : NULL;
}

/* VmHWM of a running process in MB, or -1 once it has exited (no memory left). */
static double vm_hwm_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

/* Run argv as a new process, its standard output into out (cap bytes, NUL-ended; more
 * is left in the pipe, which then stalls the child: the programs run here print
 * little), standard error discarded; *rss_mb its peak RSS.  0 on a clean exit.  The peak is the
 * process's own VmHWM, polled until it exits: wait4's ru_maxrss would also count this
 * benchmark's memory, which a spawned child holds until its exec. */
static int run_child(char *const argv[], char *out, size_t cap, double *rss_mb)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), status = 0;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    *rss_mb = -1;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    size_t n = 0;
    ssize_t got;
    while (rc == 0) {
        while (n + 1 < cap && (got = read(fds[0], out + n, cap - 1 - n)) > 0)
            n += (size_t)got;
        double hwm = vm_hwm_mb(pid);
        *rss_mb = hwm > *rss_mb ? hwm : *rss_mb;
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid || done < 0) {
            rc = done < 0;
            break;
        }
        usleep(2000);
    }
    while (rc == 0 && n + 1 < cap && (got = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = '\0';
    close(fds[0]);
    return rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* llama-bench's tokens/s of one test ("-p P -n N -d D", or "-pg P,N" when pg), and its
 * peak RSS. */
static double llama_tps(const char *exe, const char *model, int threads, int p, int n,
                        int depth, int pg, double *rss_mb)
{
    char t[16], ps[16], ns[16], ds[16], pgs[32], out[1 << 14];
    snprintf(t, sizeof t, "%d", threads);
    snprintf(ps, sizeof ps, "%d", pg ? 0 : p);
    snprintf(ns, sizeof ns, "%d", pg ? 0 : n);
    snprintf(ds, sizeof ds, "%d", depth);
    snprintf(pgs, sizeof pgs, "%d,%d", p, n);
    char *argv[] = {(char *)exe, "-m", (char *)model, "-t", t, "-p", ps, "-n", ns, "-d", ds,
                    "-r", "1", "-o", "csv", pg ? "-pg" : NULL, pgs, NULL};
    if (run_child(argv, out, sizeof out, rss_mb))
        return -1;
    /* the header names the columns; avg_ts is tokens/s */
    char *header = strstr(out, "avg_ts");
    if (!header)
        return -1;
    int col = 0;
    for (char *c = out; c < header; c++)
        col += *c == ',';
    char *line = strchr(header, '\n');
    double v = -1;
    for (char *c = line ? line + 1 : NULL; c && *c && *c != '\n'; c++)
        if (*c == ',' && --col == 0) {
            v = atof(c + 1 + (c[1] == '"'));
            break;
        }
    return v;
}

/* The first PREFILL_TOKENS tokens of bench/bench_prompt.txt as text (re-encoded it
 * may differ by a token or two; peak RSS does not notice). */
static int write_prompt_512(const char *model)
{
    kv_err err = {0};
    gguf_file *f = gguf_open(model, &err);
    tokenizer *tok = f ? tokenizer_from_gguf(f, &err) : NULL;
    FILE *in = fopen("bench/bench_prompt.txt", "rb");
    char *text = malloc(1 << 20), *out = NULL;
    size_t len = in && text ? fread(text, 1, (1 << 20) - 1, in) : 0, out_len = 0;
    tokenizer_ids ids = {0};
    int rc = !tok || !len || tokenizer_encode(tok, text, len, 0, &ids, &err) ||
             ids.n < PREFILL_TOKENS ||
             tokenizer_decode(tok, ids.ids, PREFILL_TOKENS, &out, &out_len, &err);
    FILE *o = rc ? NULL : fopen(PROMPT_512, "wb");
    rc = rc || !o || fwrite(out, 1, out_len, o) != out_len;
    if (o)
        rc |= fclose(o) != 0;
    if (in)
        fclose(in);
    free(out), free(text);
    tokenizer_ids_free(&ids);
    tokenizer_free(tok);
    gguf_close(f);
    return rc ? -1 : 0;
}

/* Peak RSS of `kvtrace run` on that prompt with 32 greedy tokens. */
static double ours_rss(const char *model, int threads)
{
    const char *bin = getenv("KV_BIN") ? getenv("KV_BIN") : "bin";
    char exe[512], t[16], n[16], out[1 << 14];
    snprintf(exe, sizeof exe, "%s/kvtrace", bin);
    snprintf(t, sizeof t, "%d", threads);
    snprintf(n, sizeof n, "%d", RSS_NEW_TOKENS);
    char *argv[] = {exe, "run", (char *)model, "--prompt-file", PROMPT_512,
                    "--max-new-tokens", n, "--threads", t, NULL};
    double rss = -1;
    return run_child(argv, out, sizeof out, &rss) ? -1 : rss;
}

static void row_text(const char *name, const char *config, int threads, const char *text)
{
    printf("| %-22s | %-30s | %7d | %10s | %-8s |\n", name, config, threads, text, "");
    fflush(stdout);
}

static double best(double a, double b) { return a > b ? a : b; }

/* One pair of rows: ours and llama.cpp's figure, then their ratio. */
static void pair_rows(const char *name, const char *config, int threads, double ours,
                      double theirs, const char *unit, const char *goal)
{
    char cfg[96];
    if (ours <= 0 || theirs <= 0) {
        row_text(name, config, threads, "failed");
        return;
    }
    snprintf(cfg, sizeof cfg, "%s, llama.cpp", config);
    bench_row(name, cfg, threads, theirs, unit);
    snprintf(cfg, sizeof cfg, "ours / llama.cpp, %s", goal);
    bench_row(name, cfg, threads, ours / theirs, "ratio");
}

void bench_llama(int threads, const char *path, model *m)
{
    static const char *const names[] = {"decode vs llama.cpp", "prefill vs llama.cpp",
                                        "peak RSS vs llama.cpp"};
    const char *exe = llama_bench_path();
    if (!exe) {
        for (int i = 0; i < 3; i++)
            row_text(names[i], "not measured", threads, "-");
        fprintf(stderr, "note: llama.cpp rows not measured: build one with "
                        "scripts/build_llama_cpp.sh (or set KV_LLAMA_BENCH)\n");
        return;
    }
    double ours_dec = -1, ours_pre = -1, their_dec = -1, their_pre = -1, rss;
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        ours_dec = best(ours_dec, bench_model_decode(m, DECODE_CONTEXT));
        their_dec = best(their_dec, llama_tps(exe, path, threads, 0, 32, DECODE_CONTEXT, 0, &rss));
        ours_pre = best(ours_pre, bench_model_prefill(m, PREFILL_TOKENS));
        their_pre = best(their_pre, llama_tps(exe, path, threads, PREFILL_TOKENS, 0, 0, 0, &rss));
    }
    char cfg[64];
    snprintf(cfg, sizeof cfg, "context %d, ours", DECODE_CONTEXT);
    bench_row(names[0], cfg, threads, ours_dec, "tok/s");
    pair_rows(names[0], "context 128", threads, ours_dec, their_dec, "tok/s", "goal >= 1");
    bench_row(names[1], "512 tokens, ours", threads, ours_pre, "tok/s");
    pair_rows(names[1], "512 tokens", threads, ours_pre, their_pre, "tok/s", "goal >= 2");
    double their_rss = -1, our_rss = -1;
    if (write_prompt_512(path) == 0) {
        our_rss = ours_rss(path, threads);
        llama_tps(exe, path, threads, PREFILL_TOKENS, RSS_NEW_TOKENS, 0, 1, &their_rss);
    }
    bench_row(names[2], "512+32 tokens, kvtrace run", threads, our_rss, "MB");
    pair_rows(names[2], "512+32 tokens", threads, our_rss, their_rss, "MB", "goal <= 1.2");
}
