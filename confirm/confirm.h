/*
 * confirm.h — confirmation with real generation: the experiments of `kvsim confirm`
 * and what they share.  Each experiment runs the policies of policies/ inside live
 * inference on a truly compressed cache (confirm/live.h) and writes a tidy CSV + JSON.
 * What each one measures and how: docs/CONFIRM.md.
 *
 *  (1) Configurations: policies × budgets × strides, the last fastest; `full` takes no
 *      budget and appears once.  A budget fraction resolves against the T the
 *      experiment gives (prompt + generated tokens, or the text's length).  With
 *      several policies each keeps the parameters it reads, as in a sweep.
 *  (2) One runner, confirm_run: every configuration measured into its rows (one, or
 *      passkey's one per depth), `full` first when the experiment calibrates against
 *      it, a progress line per configuration on stderr.
 *  (3) Files: the identifying columns of docs/RESULTS.md (`trace` = the input's
 *      basename), then the experiment's columns; an undefined value (NaN) is an empty
 *      field and null in JSON.  Written through out_write(): never
 *      half-written.
 */
#ifndef CONFIRM_H
#define CONFIRM_H

#include "kv_err.h"
#include "live.h"
#include "plot.h"
#include "policy.h"
#include "replay.h"
#include "session.h"

/* What every experiment is asked; strings are borrowed. */
typedef struct confirm_request {
    const char *model, *input;                /* MODEL.gguf and TEXT/PROMPTS/CSV */
    const char *policies, *budgets, *strides; /* lists */
    const char *csv, *json;                   /* outputs: csv NULL = stdout */
    int         threads;                      /* 0: OpenMP's default */
    int         reposition;                   /* live_set_reposition() */
    policy_args params;                       /* every other policy parameter */
    const char *command;                      /* the command line, for JSON */
} confirm_request;

/* --- the experiments ---------------------------------------------------------------- */

typedef struct confirm_ppl_options {
    int max_tokens;      /* score the first N tokens of TEXT */
    int prompt_tokens;   /* the first P tokens are the prompt */
} confirm_ppl_options;

typedef struct confirm_passkey_options {
    const char *lengths;   /* "256,512": prompt tokens */
    const char *depths;    /* "0.1,0.5,0.9" */
    int         seeds;     /* keys per (length, depth) */
    int         max_new;   /* answer length */
} confirm_passkey_options;

typedef struct confirm_fidelity_options {
    int max_new;         /* answer length */
    int chat;            /* wrap each prompt as a chat message */
} confirm_fidelity_options;

typedef struct confirm_reconstruct_options {
    int passage_tokens;  /* tokens per passage */
    int passages;        /* passages, consecutive from the start of TEXT */
} confirm_reconstruct_options;

typedef struct confirm_predict_options {
    const char *sim_metric, *real_metric;   /* columns of SIM.csv and REAL.csv */
    int         rounds;                     /* bootstrap resamples */
    int         seed;
    const char *points;                     /* also write the joined pairs here */
} confirm_predict_options;

typedef struct confirm_study_options {
    int         max_tokens;     /* perplexity over the first N tokens of TEXT */
    int         prompt_tokens;  /* generation: its first P tokens are the prompt ... */
    int         max_new;        /* ... and this many are generated (TTFT, TPOT) */
    const char *figure;         /* the study's figure (PNG/SVG), or NULL */
} confirm_study_options;

typedef struct confirm_fastgen_options {
    int         max_new;        /* tokens generated after TEXT */
    const char *trace;          /* also replay this trace (NULL: live only) */
    const char *figure;         /* the memory bars and profile heatmap, or NULL */
} confirm_fastgen_options;

typedef struct confirm_passkey_study_options {
    const char *stride_policy;  /* the stride sweep's policy (roco) */
    const char *stride_budget;  /* its fixed budget */
    const char *figure;         /* accuracy vs budget, vs stride, cost vs stride */
} confirm_passkey_study_options;

/* Each returns 0 or a KV_E* code with err (KV_EUSAGE for a bad option value). */
int confirm_ppl(const confirm_request *r, const confirm_ppl_options *o, kv_err *err);
int confirm_passkey(const confirm_request *r, const confirm_passkey_options *o, kv_err *err);
int confirm_fidelity(const confirm_request *r, const confirm_fidelity_options *o, kv_err *err);
int confirm_reconstruct(const confirm_request *r, const confirm_reconstruct_options *o,
                        kv_err *err);
/* The kvcompress study (confirm_study.c): r->policies lists study methods (NULL: all). */
int confirm_study(const confirm_request *r, const confirm_study_options *o, kv_err *err);
/* The passkey study (confirm_passkey.c): a budget sweep, a stride sweep with pace. */
int confirm_passkey_study(const confirm_request *r, const confirm_passkey_options *o,
                          const confirm_passkey_study_options *so, kv_err *err);
/* The FastGen memory table (confirm_fastgen.c). */
int confirm_fastgen_memory(const confirm_request *r, const confirm_fastgen_options *o,
                           kv_err *err);
/* SIM.csv is r->model, REAL.csv r->input. */
int confirm_predict(const confirm_request *r, const confirm_predict_options *o, kv_err *err);

/* --- what they share ------------------------------------------------------------------- */

/* (1) The configurations for sequence length T and prompt length prompt_len (0 when
 * each run sets its own); with_full puts `full` first (added when absent).  *out is
 * malloc'd (free()).  0 or KV_EUSAGE naming what is wrong. */
int confirm_configs(const confirm_request *r, int T, int prompt_len, int with_full,
                    replay_config **out, int *n, kv_err *err);

/* (3) A table of measurements, grown as configurations are measured: row i belongs to
 * configs[row_config[i]]. */
typedef struct confirm_table {
    const char *const *cols;      /* (n_cols,) measurement column names */
    int                n_cols;
    replay_config     *configs;
    int                n_configs, cap_configs;
    int               *row_config;
    double            *values;    /* (n_rows, n_cols); NaN = undefined */
    int                n_rows, cap_rows;
} confirm_table;

/* (2) An experiment as the runner sees it. */
typedef struct confirm_experiment {
    const char         *name;          /* "ppl": progress lines */
    const char *const  *cols;          /* (n_cols,) */
    int                 n_cols;
    int                 rows;          /* rows per configuration (>= 1) */
    int                 full_first;    /* `full` is added and measured first */
    /* Measure configuration c (index i of this run) into rows (rows x n_cols, zeroed).
     * Its progress text (after "name: policy B=.. stride ..: ") into note[len]. */
    int (*measure)(void *ctx, const replay_config *c, int i, double *rows, char *note,
                   size_t len, kv_err *err);
} confirm_experiment;

/* (2) Measure every configuration of r resolved against T into t (appended: passkey
 * runs once per length).  Returns the index of the first row written, or a negative
 * KV_E* code with err. */
int confirm_run(const confirm_experiment *e, const confirm_request *r, int T, int prompt_len,
                void *ctx, confirm_table *t, kv_err *err);

/* (3) Write the table to r->csv (stdout when NULL) and r->json; `input` names the
 * trace column. */
int  confirm_table_write(const confirm_table *t, const confirm_request *r, const char *input,
                         kv_err *err);
void confirm_table_free(confirm_table *t);

/* The JSON file's head every experiment writes, up to the opening of "results". */
void confirm_json_head(FILE *f, const char *format, const char *input, const char *command);

/* --figure FILE: it is drawn from the CSV, so -o FILE.csv is needed, and FILE must end
 * in .png or .svg (checked before a run); confirm_figure() draws it after.  NULL
 * figure: nothing.  0 or KV_EUSAGE / plot_render's code. */
int confirm_figure_check(const char *csv, const char *figure, kv_err *err);
int confirm_figure(const char *csv, const char *figure, plot_kind kind, kv_err *err);

/* MODEL's file, tokenizer, model and a greedy sampler into s (no prompt), with the
 * request's threads; session_close() releases them, also after a failure. */
int confirm_open_model(session *s, const confirm_request *r, kv_err *err);

/* MODEL with INPUT as a text (read and encoded by session_open, no chat template);
 * a blank file is KV_ERANGE "empty text file". */
int confirm_open_text(session *s, const confirm_request *r, kv_err *err);

/* Generate greedily from prompt[n] under cfg (prompt_len set here to n): live_new +
 * live_set_reposition + live_generate.  out->tokens is the caller's (live_output_free)
 * in every case. */
int confirm_generate(session *s, const int32_t *prompt, int n, int max_new,
                     policy_config cfg, int reposition, live_output *out, kv_err *err);

/* Split a comma list of integers (doubles) in [lo, hi] into out[max]; the count, or a
 * negative KV_EUSAGE naming --name. */
int confirm_int_list(const char *text, const char *name, int lo, int hi, int *out, int max,
                     kv_err *err);
int confirm_double_list(const char *text, const char *name, double lo, double hi, double *out,
                        int max, kv_err *err);

#endif /* CONFIRM_H */
