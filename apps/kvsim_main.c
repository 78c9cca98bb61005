/*
 * kvsim_main.c — the kvsim program: replay attention traces under eviction policies.
 * Each subcommand lives in its own file; this is the table.
 */
#include "cli.h"
#include "commands.h"

static const cli_command commands[] = {
    {"replay",   "TRACE --policy P --budget B [options]", "replay one policy, write metrics", cmd_replay},
    {"sweep",    "TRACE --policies A,B --budgets LIST",   "many configurations in one pass",  cmd_sweep},
    {"std",      "TRACE [-o std.csv]",                    "attention-std trajectories",       cmd_std},
    {"scope",    "TRACE --score S --budget B --sizes L",  "eviction-scope sensitivity",       cmd_scope},
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

int main(int argc, char **argv) { return cli_main(&program, argc, argv); }
