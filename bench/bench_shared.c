/*
 * bench_shared.c — the "shared machine" rows of `make bench` (issue 20, item 1).
 *
 * `kvtrace run` (a ~90-token prompt and 32 greedy tokens) and `kvsim replay` (h2o at
 * B = 0.2 T, mass only, on $KV_BENCH_TRACE) are run as new processes on 2 threads,
 * first as the machine is, then with two busy-loop processes beside them (forked here,
 * killed after), and the loaded speed is reported as a ratio of the unloaded one
 * measured in the same run (goal >= 0.4).  New processes, because each chooses how its
 * threads wait at its start (common/wait_policy.h), as a user's run does.
 * On 2 cores the fair share beside two busy loops is 0.5; OpenMP's default waiting
 * (spinning about 3 ms at every barrier) measured about 0.07 before the programs chose
 * their own (common/wait_policy.h).
 */
#include "bench.h"

#include "replay_setup.h"
#include "wait_policy.h"

#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUSY_LOOPS 2
#define RUN_DECODE 32
/* about 90 tokens */
#define RUN_PROMPT "Eviction policies decide which entries of the key-value cache a " \
    "language model keeps when memory runs short. A good policy keeps the entries that " \
    "later queries attend to; a poor one forgets them and the output drifts. Explain " \
    "how attention mass, top-k overlap and output error measure the difference, and " \
    "which of them a practitioner should watch first."

/* Start n processes that spin until killed; their pids go to pids[]. */
static int busy_start(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);   /* not outliving the benchmark */
            for (volatile unsigned long spin = 0;; spin++)
                ;
        }
        if (pids[i] < 0)
            return i;
    }
    return n;
}

static void busy_stop(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
}

/* Tokens per second (prompt and generated together) of `kvtrace run` on 2 threads, as
 * a user runs it: a new process, which chooses how its threads wait at its start. */
static double run_tokens_per_s(const char *model)
{
    char cmd[1024], line[512] = "";
    const char *bin = getenv("KV_BIN") ? getenv("KV_BIN") : "bin";
    snprintf(cmd, sizeof cmd, "\"%s/kvtrace\" run \"%s\" \"%s\" --max-new-tokens %d "
             "--threads 2 2>&1 >/dev/null", bin, model, RUN_PROMPT, RUN_DECODE);
    FILE *p = popen(cmd, "r");
    int n_prompt = 0, n_new = 0;
    double prompt_speed = 0, new_speed = 0;
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "prompt: %d tokens, %lf tokens/s; generated: %d tokens, %lf",
                   &n_prompt, &prompt_speed, &n_new, &new_speed) == 4)
            break;
    if (!p || pclose(p) != 0 || prompt_speed <= 0 || new_speed <= 0)
        return -1;
    return (n_prompt + n_new) / (n_prompt / prompt_speed + n_new / new_speed);
}

/* Elements per second of `kvsim replay` (h2o, B = 0.2 T, mass only, 2 threads), a new
 * process likewise; `elements` from an in-process replay of the same request. */
static double replay_elements_per_s(const char *trace, double elements)
{
    char cmd[1024];
    const char *bin = getenv("KV_BIN") ? getenv("KV_BIN") : "bin";
    snprintf(cmd, sizeof cmd, "\"%s/kvsim\" replay \"%s\" --policy h2o --budget 0.2 "
             "--metrics mass --threads 2 -o /dev/null 2>/dev/null", bin, trace);
    const double t0 = bench_now();
    const int rc = system(cmd);
    const double dt = bench_now() - t0;
    return rc == 0 ? elements / dt : -1;
}

/* The figure of `what` (0: the model run, 1: the replay), best of two. */
static double measure(int what, const char *path, double elements)
{
    double best = -1;
    for (int rep = 0; rep < 2; rep++) {
        double v = what == 0 ? run_tokens_per_s(path) : replay_elements_per_s(path, elements);
        best = v > best ? v : best;
    }
    return best;
}

static void loaded_rows(int what, const char *path, double elements)
{
    static const char *const names[] = {"run beside 2 busy", "replay beside 2 busy"};
    static const char *const units[] = {"tok/s", "Melem/s"};
    const double scale = what == 0 ? 1 : 1e-6;
    const double quiet = measure(what, path, elements);
    pid_t pids[BUSY_LOOPS];
    const int started = busy_start(pids, BUSY_LOOPS);
    const double loaded = started == BUSY_LOOPS ? measure(what, path, elements) : -1;
    busy_stop(pids, started);
    if (quiet <= 0 || loaded <= 0) {
        fprintf(stderr, "note: %s rows skipped (a run or a fork failed)\n", names[what]);
        return;
    }
    bench_row(names[what], what == 0 ? "90+32 tokens, machine as is" :
              "h2o B=0.2 mass, machine as is", 2, quiet * scale, units[what]);
    bench_row(names[what], "with 2 busy loops beside", 2, loaded * scale, units[what]);
    bench_row(names[what], "loaded / unloaded, goal >= 0.4", 2, loaded / quiet, "ratio");
}

void bench_shared(const char *model)
{
    fprintf(stderr, "note: OpenMP threads wait (this process): %s\n", wait_policy_describe());
    loaded_rows(0, model, 0);
    const char *trace = getenv("KV_BENCH_TRACE");
    double elements = 0;
    const replay_request req = {.policies = "h2o", .budgets = "0.2", .metrics = "mass"};
    if (!trace || bench_replay_seconds(req, trace, &elements) <= 0)
        fprintf(stderr, "note: replay-beside-busy rows skipped: set KV_BENCH_TRACE\n");
    else
        loaded_rows(1, trace, elements);
}
