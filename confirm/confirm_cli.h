/*
 * confirm_cli.h — what the `kvsim confirm` experiments share: their options, the
 * list of configurations they run, and the tidy CSV + JSON they write.
 *
 *  (1) Options: MODEL and INPUT positionals; --policies, --budgets, --strides lists;
 *      -o CSV (default stdout), --json FILE, --threads N; the flag --reposition
 *      (live.h (5), for every experiment that generates); each experiment's own
 *      options (named in `extra`); and every policy parameter (--sinks, --phase, ...),
 *      applied through policy_config_set() in command-line order.
 *  (2) Configurations: policies × budgets × strides, the last fastest; `full` takes
 *      no budget and appears once.  A budget fraction resolves against the T the
 *      experiment gives (prompt + generated tokens, or the text's length).
 *  (3) Files: the identifying columns of docs/RESULTS.md (written by
 *      results_write_csv_ids(), `trace` = the input's basename), then the
 *      experiment's measurement columns; an undefined value (NaN) is an empty field
 *      and null in JSON.  The JSON has one object per CSV line, the same keys.
 *      Files are written through results_write_atomic(): never half-written.
 */
#ifndef CONFIRM_CLI_H
#define CONFIRM_CLI_H

#include "kv_err.h"
#include "live.h"
#include "replay.h"
#include "session.h"

#define CONFIRM_MAX_OPTS 64

typedef struct confirm_args {
    const char *model, *input;              /* positionals */
    const char *policies, *budgets, *strides;
    const char *csv, *json, *threads;
    int         n_threads;                  /* --threads; 0: OpenMP's default */
    int         reposition;                 /* --reposition: live_set_reposition() */
    const char *key[CONFIRM_MAX_OPTS];      /* experiment options and policy parameters */
    const char *value[CONFIRM_MAX_OPTS];
    int         n_opts;
    char        command[1024];              /* argv joined, for JSON */
} confirm_args;

/* Parse argv (argv[0] = the experiment) with its own options `extra` ("max-tokens
 * seeds ..."); `inputs` is 1 when INPUT is required, 0 when it is optional.  0, 1
 * when --help printed `usage`, or KV_EUSAGE with err naming the option. */
int confirm_args_parse(int argc, char **argv, const char *extra, int inputs,
                       const char *usage, confirm_args *a, kv_err *err);

/* An experiment option as an integer in [lo, hi] (def when absent). */
int confirm_opt_int(const confirm_args *a, const char *name, int def, int lo, int hi,
                    int *out, kv_err *err);
/* An experiment option's text, or def. */
const char *confirm_opt(const confirm_args *a, const char *name, const char *def);
/* Split a comma list of integers in [lo, hi] into out[max]; the count, or a negative
 * KV_EUSAGE with err. */
int confirm_int_list(const char *text, const char *name, int lo, int hi, int *out, int max,
                     kv_err *err);

/* The same for numbers in [lo, hi] ("0.1,0.5,0.9"). */
int confirm_double_list(const char *text, const char *name, double lo, double hi, double *out,
                        int max, kv_err *err);
/* --policies with `full` first (added when absent, moved when elsewhere): the
 * reference of every experiment that compares with the full cache.  Into buf[len]. */
const char *confirm_with_full(const confirm_args *a, char *buf, size_t len);

/* (2) The configurations for sequence length T and prompt length prompt_len (0 when
 * each run sets its own); *out is malloc'd (free()).  0 or KV_EUSAGE naming what is wrong
 * (an unknown policy lists the valid ones). */
int confirm_configs(const confirm_args *a, int T, int prompt_len, replay_config **out,
                    int *n, kv_err *err);

/* (3) A table of measurements: row r belongs to configs[row_config[r]]. */
typedef struct confirm_table {
    const char          *input;       /* INPUT path (its basename is written) */
    const char          *command;
    const replay_config *configs;
    int                  n_configs;
    const char *const   *cols;        /* (n_cols,) measurement column names */
    int                  n_cols;
    const int           *row_config;  /* (n_rows,) */
    const double        *values;      /* (n_rows, n_cols); NaN = undefined */
    int                  n_rows;
} confirm_table;

int confirm_table_write(const confirm_table *t, const char *csv, const char *json, kv_err *err);

/* MODEL's file, tokenizer, model and a greedy sampler into s (no prompt), with
 * --threads applied; session_close() releases them, also after a failure. */
int confirm_open_model(session *s, const confirm_args *a, kv_err *err);

/* MODEL with INPUT as a text (read and encoded by session_open, no chat template);
 * a blank file is KV_ERANGE "empty text file". */
int confirm_open_text(session *s, const confirm_args *a, kv_err *err);

/* Generate greedily from prompt[n] under cfg (prompt_len set here to n): live_new +
 * live_set_reposition + live_generate.  out->tokens is the caller's (live_output_free)
 * in every case. */
int confirm_generate(session *s, const int32_t *prompt, int n, int max_new,
                     policy_config cfg, int reposition, live_output *out, kv_err *err);

/* Print "kvsim confirm EXP: message" and return the exit status for err. */
int confirm_fail(const char *experiment, const kv_err *err);

#endif /* CONFIRM_CLI_H */
