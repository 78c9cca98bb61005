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
#include "opts.h"
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

static int run(replay_command which, int argc, char **argv)
{
    replay_args a;
    replay_setup s = {0};
    kv_err err = {0};
    int rc = replay_args_parse(which, argc, argv, &a, &err);
    if (rc == OPTS_HELP)
        return 0;
    if (rc == KV_OK && which == SCOPE_CMD) {
        if (!a.req.scores || !a.req.budgets || !a.sizes)
            rc = kv_errorf(&err, KV_EUSAGE, "--score, --budget and --sizes are required; "
                           "see --help");
        a.req.policies = "scored";
        a.req.scopes = a.req.scopes ? a.req.scopes : "window,std";
        a.req.windows = a.sizes;
    }
    if (rc == KV_OK)
        rc = replay_setup_build(&s, &a.req, &err);
    if (rc == KV_OK && which == STD_CMD) {
        char tokens[1024];
        const char *csv = a.csv ? a.csv : "std.csv";
        tokens_path(csv, tokens, sizeof tokens);
        rc = std_run(&s, csv, tokens, &err);
    } else if (rc == KV_OK) {
        rc = replay_and_write(&s, &a, which == SCOPE_CMD, &err);
    }
    replay_setup_free(&s);
    static const char *const names[] = {"kvsim replay", "kvsim sweep", "kvsim std",
                                        "kvsim scope"};
    return rc == KV_OK ? 0 : opts_fail(names[which], &err);
}

int cmd_replay(int argc, char **argv) { return run(REPLAY_CMD, argc, argv); }
int cmd_sweep(int argc, char **argv) { return run(SWEEP_CMD, argc, argv); }
int cmd_std(int argc, char **argv) { return run(STD_CMD, argc, argv); }
int cmd_scope(int argc, char **argv) { return run(SCOPE_CMD, argc, argv); }
