/*
 * replay_setup.h — from a request (a trace, lists of policies, budgets, windows and
 * strides, selections) to a replay plan, and running it on the device asked for.
 * What `kvsim replay`, `sweep`, `std` and `scope` share, and what benchmarks and tests
 * build without a command line.
 *
 * Lists: policies "h2o,mas"; budgets "0.1:0.9:0.1" (a range, inclusive) or
 * "0.2,0.4,512"; strides "1,4"; windows "0.3,0.5" (a fraction of B) or "32"; layers
 * and heads "0,4,8-11" are model numbers and must be in the trace.  TRACE is a trace
 * file or a `synth:` spec (trace/replay_source.h).
 */
#ifndef REPLAY_SETUP_H
#define REPLAY_SETUP_H

#include <stdio.h>

#include "kv_err.h"
#include "out_proj.h"
#include "policy.h"
#include "replay.h"
#include "replay_source.h"

/* What to replay; strings are borrowed, NULL means the default. */
typedef struct replay_request {
    const char *trace;                                    /* file or synth: spec */
    const char *policies, *budgets, *strides, *windows;   /* single values or lists */
    const char *scores, *scopes;                          /* `kvsim scope`'s axes */
    const char *layers, *heads;                           /* default: all recorded */
    const char *layer_kind;   /* "local" (a sliding window), "global", NULL: both */
    const char *metrics;      /* "mass,overlap,..."; default: all (cuda: its three) */
    const char *device;       /* "cpu" (NULL) or "cuda" */
    const char *model;        /* the GGUF the trace was recorded from: its output
                                 projections (criticalkv); NULL: none */
    int         threads;      /* OpenMP threads; 0: leave them */
    int         strict;       /* refuse an incomplete trace */
    policy_args params;       /* every other policy parameter, in order */
} replay_request;

/* Everything a run needs, built from the request; owned here. */
typedef struct replay_setup {
    replay_source *src;
    int            cuda;         /* --device cuda: replay_run_gpu */
    replay_config *configs;      /* (n_configs,) requested, then oracle companions */
    int            n_configs;
    int            n_requested;  /* configurations asked for (before companions) */
    int           *layers, *heads;
    replay_plan    plan;
    char          *strings;      /* owned copies behind configs' names */
    out_proj       proj;         /* --model's output projections, or empty */
} replay_setup;

/* Set the threads, open the source (warning on an incomplete trace, KV_EFORMAT when
 * strict), select layers (of the kind asked for) and heads, expand the lists into configurations (policy x
 * score x scope x budget x window x stride) and add an oracle at each distinct budget
 * for oracle_gap.  With several policies, each gets only the parameters it reads (a
 * windows axis makes one line for a policy without a window); a parameter that no
 * listed policy reads is KV_EUSAGE.  A window in force shows in the scope label as
 * `window:r`.  Without policies, the plan has no configuration (kvsim std). */
int  replay_setup_build(replay_setup *s, const replay_request *req, kv_err *err);
void replay_setup_free(replay_setup *s);   /* a zeroed or half-built setup is fine */

/* What a user should know before the numbers (a budget that equals full, metrics left
 * empty, the oracle's extra lines), one line each to f. */
void replay_setup_notes(const replay_setup *s, FILE *f);

/* Run the plan on the device asked for (replay_run or replay_run_gpu) into acc
 * (n_configs x n_layers x n_heads). */
int  replay_setup_compute(replay_setup *s, replay_acc *acc, kv_err *err);

#endif /* REPLAY_SETUP_H */
