/*
 * replay_args.h — the command lines of `kvsim replay`, `sweep`, `std` and `scope`: one
 * option table per command (common/opts.h) into a replay_request (sim/replay_setup.h)
 * and the output files.  TRACE may be repeated and --traces LIST_FILE adds one path per
 * line (blank lines and lines starting with # skipped).  Every other --KEY VALUE that
 * is a policy parameter (--phase, --gqa, --sinks, --score ...) goes to the request's
 * policy_args, in order.
 */
#ifndef REPLAY_ARGS_H
#define REPLAY_ARGS_H

#include "kv_err.h"
#include "replay_setup.h"

typedef enum replay_command { REPLAY_CMD, SWEEP_CMD, STD_CMD, SCOPE_CMD } replay_command;

typedef struct replay_args {
    replay_request req;          /* req.trace: the first trace */
    const char   **traces;       /* (n_traces,) TRACE... then --traces' lines, in order */
    int            n_traces;
    size_t         cap_traces;
    char          *list_text;    /* --traces' file, owned: traces point into it */
    const char    *traces_file;  /* --traces LIST_FILE */
    const char    *resume;       /* --resume FILE: the unit journal (sim/many.h) */
    const char    *csv, *json;   /* -o (default stdout), --json */
    const char    *sizes;        /* kvsim scope: the protected sizes r */
    const char    *kept, *streams;/* kvsim replay: the end kept set, per-stream lines */
    const char    *policy_lib;   /* --policy-lib, loaded while parsing */
    int            follow;       /* --follow: wait for a recording in progress */
    char           followed[4096];/* the file --follow found (NAME or NAME.partial) */
    char           command[1024];/* the command line, for the JSON's provenance */
} replay_args;

/* Parse argv (argv[0] = the subcommand) with `which`'s table.  0, OPTS_HELP when the
 * help was printed, or KV_EUSAGE with err naming the option.  The outputs are checked
 * for writability here, so a typo in -o costs nothing; with --follow, this waits for
 * the recording to end (trace_follow). */
int replay_args_parse(replay_command which, int argc, char **argv, replay_args *out,
                      kv_err *err);
void replay_args_free(replay_args *a);

#endif /* REPLAY_ARGS_H */
