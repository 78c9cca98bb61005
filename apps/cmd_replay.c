/*
 * cmd_replay.c — `kvsim replay`, `sweep`, `std` and `scope`: options (replay_args.c)
 * into a replay setup (sim/replay_setup.h), run on the device asked for, written.
 *
 * A replay is a sweep of one configuration: both build a plan with
 * replay_setup_build() and run it with replay_setup_compute(), so the same
 * configuration gives the same numbers whichever command ran it (tests/test_replay.c
 * checks it).
 */
#include "commands.h"

#include "kept_set.h"
#include "many.h"
#include "opts.h"
#include "par.h"
#include "replay_args.h"
#include "results.h"
#include "scope_report.h"
#include "std_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run the plan and write its CSV and JSON (or scope's report). */
static int replay_and_write(replay_setup *s, const replay_args *a, int scope, kv_err *err)
{
    const size_t n = (size_t)s->n_configs * s->plan.n_layers * s->plan.n_heads;
    replay_acc *acc = calloc(n ? n : 1, sizeof *acc);
    if (!acc)
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d configurations", s->n_configs);
    replay_setup_notes(s, stderr);
    s->plan.progress = 1;
    kept_set *ks = NULL;
    if ((a->kept || a->streams) && !(ks = kept_set_new(s->src, 0, err))) {
        free(acc);
        return KV_ENOMEM;
    }
    if (ks) {
        s->plan.observe = kept_set_observe;
        s->plan.observe_ctx = ks;
    }
    int rc = replay_setup_compute(s, acc, err);
    if (rc == KV_OK && ks)
        rc = kept_set_write(ks, a->kept, a->streams, err);
    kept_set_free(ks);
    if (rc == KV_OK && scope)
        rc = scope_report_write(s, acc, a->command, a->csv, a->json, err);
    else if (rc == KV_OK) {
        results_context ctx = {s->src, &s->plan, acc, a->command, NULL};
        rc = results_write_files(&ctx, a->csv ? a->csv : "-", a->json, err);
    }
    free(acc);
    return rc;
}

/* "std.csv" -> "std_tokens.csv"; "-" -> "std_tokens.csv". */
static void tokens_path(const char *csv, char *out, size_t len)
{
    const char *base = strcmp(csv, "-") ? csv : "std.csv";
    size_t n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".csv"))
        n -= 4;
    snprintf(out, len, "%.*s_tokens.csv", (int)n, base);
}

/* Many traces, a journal or an MPI job: sim/many.h deals out the units.  *speak: this
 * rank reports the error (rank 0, or the rank whose own unit failed). */
static int run_many(const replay_args *a, int scope, int *speak, kv_err *err)
{
    if (a->req.device && strcmp(a->req.device, "cpu"))
        return kv_errorf(err, KV_EUSAGE, "--device %s replays one trace in one process; "
                         "many traces, --resume and MPI run on the CPU", a->req.device);
    if (a->kept || a->streams)
        return kv_errorf(err, KV_EUSAGE, "--kept and --streams write one trace's kept set: "
                         "not with several traces, --resume or MPI");
    many_run m;
    int rc = many_run_all(&m, &a->req, a->traces, a->n_traces, a->resume, err);
    if (rc == KV_OK)
        rc = many_write(&m, &a->req, a->command, scope, a->csv ? a->csv : "-", a->json, err);
    *speak = m.rank == 0 || m.failed_here;
    many_free(&m);
    return rc;
}

static int uses_many(const replay_args *a)
{
    return a->n_traces > 1 || a->resume || par_size() > 1;
}

/* kvsim std: its files over one trace (s) or every trace of a (s NULL). */
static int run_std(const replay_setup *s, const replay_args *a, kv_err *err)
{
    char tokens[1024];
    const char *csv = a->csv ? a->csv : "std.csv";
    tokens_path(csv, tokens, sizeof tokens);
    return s ? std_run(s, csv, tokens, err)
             : std_run_many(&a->req, a->traces, a->n_traces, csv, tokens, err);
}

/* One trace in one process: the setup, then std's files or the metrics. */
static int run_one(replay_command which, const replay_args *a, kv_err *err)
{
    replay_setup s = {0};
    int rc = replay_setup_build(&s, &a->req, err);
    if (rc == KV_OK && which == STD_CMD) {
        rc = run_std(&s, a, err);
    } else if (rc == KV_OK) {
        rc = replay_and_write(&s, a, which == SCOPE_CMD, err);
    }
    replay_setup_free(&s);
    return rc;
}

static int run(replay_command which, int argc, char **argv)
{
    replay_args a;
    kv_err err = {0};
    int rc = replay_args_parse(which, argc, argv, &a, &err), speak = par_rank() == 0;
    if (rc == OPTS_HELP) {
        replay_args_free(&a);
        return 0;
    }
    if (rc == KV_OK && which == SCOPE_CMD) {
        if (!a.req.scores || !a.req.budgets || !a.sizes)
            rc = kv_errorf(&err, KV_EUSAGE, "--score, --budget and --sizes are required; "
                           "see --help");
        a.req.policies = "scored";
        a.req.scopes = a.req.scopes ? a.req.scopes : "window,std";
        a.req.windows = a.sizes;
    }
    if (rc != KV_OK)
        ;
    else if (which == STD_CMD && (a.resume || par_size() > 1))
        rc = kv_errorf(&err, KV_EUSAGE, "kvsim std runs in one process without --resume "
                       "(MPI and --resume: replay, sweep and scope)");
    else if (which == STD_CMD && a.n_traces > 1)
        rc = run_std(NULL, &a, &err);
    else if (uses_many(&a))
        rc = run_many(&a, which == SCOPE_CMD, &speak, &err);
    else
        rc = run_one(which, &a, &err);
    replay_args_free(&a);
    static const char *const names[] = {"kvsim replay", "kvsim sweep", "kvsim std",
                                        "kvsim scope"};
    if (rc == KV_OK)
        return 0;
    return speak ? opts_fail(names[which], &err) : kv_err_exit_status(err.code);
}

int cmd_replay(int argc, char **argv) { return run(REPLAY_CMD, argc, argv); }
int cmd_sweep(int argc, char **argv) { return run(SWEEP_CMD, argc, argv); }
int cmd_std(int argc, char **argv) { return run(STD_CMD, argc, argv); }
int cmd_scope(int argc, char **argv) { return run(SCOPE_CMD, argc, argv); }
