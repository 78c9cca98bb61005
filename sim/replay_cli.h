/*
 * replay_cli.h — what `kvsim replay`, `sweep`, `std` and `scope` share: the option
 * parser, opening the source, selecting layers and heads, expanding configuration
 * lists into a replay plan, and the notes and warnings of docs/METRICS.md.
 *
 * Lists: `--policies h2o,mas`; `--budgets 0.1:0.9:0.1` (a range, inclusive) or
 * `0.2,0.4,512`; `--strides 1,4`; `--windows 0.3,0.5` (a fraction of B) or `32`;
 * `--layers 0,4,8-11` and `--heads ...` are model numbers and must be in the trace.
 * TRACE is a trace file, or `synth:T=512,layers=2,heads=6,kv=2,dim=16,seed=1` for
 * deterministic synthetic rows (tests, benchmarks, trying the CLI without a model);
 * `prompt=N` sets the prompt length, `complete=0` plays a truncated recording.
 */
#ifndef REPLAY_CLI_H
#define REPLAY_CLI_H

#include "kv_err.h"
#include "replay.h"
#include "replay_source.h"

/* The options each command accepts (replay_args_parse's `allowed`). */
#define REPLAY_COMMON_OPTIONS "layers heads output json threads metrics strict params"
#define REPLAY_OPTIONS "policy budget stride window device " REPLAY_COMMON_OPTIONS
#define SWEEP_OPTIONS  "policies budgets strides windows device " REPLAY_COMMON_OPTIONS

#define REPLAY_MAX_PARAMS 32

typedef struct replay_args {
    const char *trace;
    const char *policies, *budgets, *strides, *windows;   /* single values or lists */
    const char *score, *scopes, *sizes;                   /* `kvsim scope` */
    const char *layers, *heads, *csv, *json, *threads, *metrics;
    const char *device;                                   /* "cpu" (NULL) or "cuda" */
    int         strict;
    /* Every other --KEY VALUE that is a policy parameter (policy_param_find), in
     * command-line order, for policy_config_set: --phase, --gqa, --sinks, --score ... */
    const char *param_key[REPLAY_MAX_PARAMS], *param_value[REPLAY_MAX_PARAMS];
    int         n_params;
    char        command[1024];                            /* argv joined, for JSON */
} replay_args;

/* Parse argv (argv[0] = the subcommand) against the options `allowed`, a string of
 * option names separated by spaces ("policy budget stride ..."; "params" admits every
 * parameter of the policy library).  Returns 0, 1 when
 * --help was asked (usage printed), or KV_EUSAGE with err naming the option. */
int replay_args_parse(int argc, char **argv, const char *allowed, const char *usage,
                      replay_args *out, kv_err *err);

/* Everything a run needs, built from the arguments; owned here. */
typedef struct replay_setup {
    replay_source *src;
    int            cuda;         /* --device cuda: replay_run_gpu */
    replay_config *configs;      /* (n_configs,) requested, then oracle companions */
    int            n_configs;
    int            n_requested;  /* configurations asked for (before companions) */
    int           *layers, *heads;
    replay_plan    plan;
    char          *strings;      /* owned copies behind configs' names */
} replay_setup;

/* Set --threads, open the source (warning on an incomplete trace, KV_EFORMAT with
 * --strict), select layers and heads, expand the lists into configurations (policy x
 * score x scope x budget x window x stride) and add an oracle at each distinct budget
 * for oracle_gap.  With several policies, each gets only the parameters it reads (a
 * --windows axis makes one line for a policy without a window); a parameter that no
 * listed policy reads is KV_EUSAGE.  A window in force shows in the scope label as
 * `window:r`. */
int  replay_setup_build(replay_setup *s, const replay_args *a, kv_err *err);
void replay_setup_free(replay_setup *s);   /* a zeroed or half-built setup is fine */

/* Run the plan on the device asked for (replay_run or replay_run_gpu) into acc. */
int  replay_setup_compute(replay_setup *s, replay_acc *acc, kv_err *err);

/* Run the plan, write the CSV and JSON.  0 or a KV_E* code. */
int  replay_setup_run(replay_setup *s, const replay_args *a, kv_err *err);

/* --threads: set the OpenMP thread count (NULL: leave it).  0 or KV_EUSAGE.
 * replay_setup_build calls it before opening the source. */
int  replay_set_threads(const char *text, kv_err *err);

/* Open TRACE: a trace file or a `synth:` spec. */
replay_source *replay_open_source(const char *spec, kv_err *err);

/* Print err to stderr as "kvsim CMD: message" and return the exit status. */
int replay_fail(const char *cmd, const kv_err *err);

#endif /* REPLAY_CLI_H */
