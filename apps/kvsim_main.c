/*
 * kvsim_main.c — the kvsim program: replay attention traces under eviction policies.
 * Each subcommand lives in its own file; this is the table.  Built twice when mpicc is
 * present: bin/kvsim (one process) and bin/kvsim-mpi (common/par.h over MPI).
 */
#include "cli.h"
#include "commands.h"
#include "par.h"

#include <stdio.h>

static const cli_command commands[] = {
    {"replay",   "TRACE... --policy P --budget B",          "replay one policy, write metrics",  cmd_replay},
    {"sweep",    "TRACE... --policies A,B --budgets L",     "many configurations in one pass",   cmd_sweep},
    {"std",      "TRACE... [-o std.csv]",                   "attention-std trajectories",        cmd_std},
    {"scope",    "TRACE... --score S --budget B --sizes L", "eviction-scope sensitivity",        cmd_scope},
    {"plot",     "std|sweep|scope|heatmap|confirm ...",   "draw a figure with gnuplot",       cmd_plot},
    {"confirm",  "EXPERIMENT MODEL [options]",            "confirm with real generation",     cmd_confirm},
    {"policies", "",                                      "list every policy and its defaults", cmd_policies},
    {"devices",  "",                                      "list CPU threads and CUDA devices", cmd_devices},
};

static const cli_program program = {
    .name = "kvsim",
    .tagline = "Replay attention traces under KV-cache eviction policies and measure them.",
    .commands = commands,
    .n_commands = (int)(sizeof commands / sizeof commands[0]),
    .footer = "example:\n  kvsim replay t.h5 --policy mas --budget 0.4\n"
              "docs: README.md, docs/POLICIES.md, docs/METRICS.md, docs/RESULTS.md\n",
};

/* bin/kvsim-mpi is this main with mpi/par_mpi.c: every rank runs the same command. */
int main(int argc, char **argv)
{
    if (par_init(&argc, &argv) != 0) {
        fputs("kvsim: MPI did not start\n", stderr);
        return 1;
    }
    int rc = cli_main(&program, argc, argv);
    par_finalize();
    return rc;
}
