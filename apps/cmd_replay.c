/*
 * cmd_replay.c — `kvsim replay` and `kvsim sweep`: one engine, one plan.
 *
 * A replay is a sweep of one configuration: both build a plan with
 * replay_setup_build() and run it with replay_setup_run(), so the same configuration
 * gives the same numbers whichever command ran it (tests/test_replay.c checks it).
 */
#include "cmd_replay.h"

#include "replay_cli.h"

#include <stdio.h>

static const char REPLAY_USAGE[] =
    "usage: kvsim replay TRACE --policy P --budget B [options]\n\n"
    "Replay TRACE under one eviction policy and measure every step against the full\n"
    "cache: mass kept, top-B overlap, score consistency, output error, oracle gap\n"
    "(docs/METRICS.md).  Writes the metrics CSV of docs/RESULTS.md.\n\n"
    "  --policy P          a preset (kvsim policies)\n"
    "  --budget B          0.4 = fraction of T, 512 = entries; >= T equals full\n"
    "  --stride s          entries evicted at once (default 1)\n"
    "  --phase X           stream | oneshot | decode (default stream)\n"
    "  --gqa X             mean | max | sum: a KV group's rows (default mean)\n"
    "  --scope-of X        kv-head | query-head | layer (default kv-head)\n"
    "  --window r          protected window: 0.3 = fraction of B, 32 = entries\n"
    "  --sinks n, --seed n policy parameters\n"
    "  --layers L, --heads H  model numbers, e.g. 0,4,8-11 (default: all recorded)\n"
    "  --metrics LIST      mass,overlap,consistency,output_error,oracle_gap (default:\n"
    "                      all; oracle_gap replays the oracle beside, after a pre-pass)\n"
    "  -o FILE             CSV (default: stdout)      --json FILE  summary\n"
    "  --threads N         OpenMP threads (results do not depend on it)\n"
    "  --device cpu|cuda   where policies step (default cpu); cuda runs full and the\n"
    "                      score x scope family (h2o, mas, roco, tova, streaming,\n"
    "                      recency, scored: scores aas/mas/ltas/recency, scopes\n"
    "                      sinks/window/std, stream phase) for mass, overlap and\n"
    "                      output_error, with the CPU's numbers bit for bit\n"
    "  --strict            refuse an incomplete trace instead of replaying its steps\n\n"
    "TRACE may be synth:T=512,layers=2,heads=6,kv=2,dim=16,seed=1 (synthetic rows).\n";

static const char SWEEP_USAGE[] =
    "usage: kvsim sweep TRACE --policies A,B --budgets LIST [options]\n\n"
    "Run every configuration (policy x budget x window x stride) in one pass over the\n"
    "rows: each row block is read once and fed to all of them.  One tidy CSV (-o) and a\n"
    "JSON summary (--json) of the overall lines.\n\n"
    "  --policies A,B,...  presets\n"
    "  --budgets LIST      0.1:0.9:0.1 (inclusive range) or 0.2,0.4,512\n"
    "  --windows LIST      0.3,0.5 (fractions of B) or entry counts\n"
    "  --strides LIST      1,4,16\n"
    "  and every option of `kvsim replay --help` but --policy/--budget.\n\n"
    "Each policy gets the parameters it reads: with --policies h2o,tova --windows 8,16,\n"
    "h2o runs twice (scope window:8, window:16) and tova once.  A parameter none of the\n"
    "policies reads is an error.  At most 256 items per list.\n";

static int run(const char *cmd, int argc, char **argv, const char *allowed, const char *usage)
{
    replay_args args;
    replay_setup setup = {0};
    kv_err err = {0};
    int rc = replay_args_parse(argc, argv, allowed, usage, &args, &err);
    if (rc == 1)
        return 0;
    if (rc == KV_OK)
        rc = replay_setup_build(&setup, &args, &err);
    if (rc == KV_OK)
        rc = replay_setup_run(&setup, &args, &err);
    replay_setup_free(&setup);
    return rc == KV_OK ? 0 : replay_fail(cmd, &err);
}

int cmd_replay(int argc, char **argv)
{
    return run("replay", argc, argv, REPLAY_OPTIONS,
               REPLAY_USAGE);
}

int cmd_sweep(int argc, char **argv)
{
    return run("sweep", argc, argv, SWEEP_OPTIONS,
               SWEEP_USAGE);
}
