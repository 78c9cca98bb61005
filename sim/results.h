/*
 * results.h — the metrics CSV and JSON summary of docs/RESULTS.md, from replay sums.
 *
 * A line is the mean over its steps of each metric; aggregate lines (per layer:
 * head = all; overall: layer = all, head = all) are the mean over their member heads
 * of those per-head means, with `steps` the total of (head, step) pairs.  A metric no
 * step defined stays empty in CSV and null in JSON.  Files are written by the output
 * rule of common/out.h: a failed write never leaves a file that looks complete.
 */
#ifndef RESULTS_H
#define RESULTS_H

#include <stdio.h>

#include "kv_err.h"
#include "replay.h"

typedef struct results_line {
    long   steps;
    double mean_cache, mass, overlap, consistency, output_error, oracle_gap;
    int    has_overlap, has_consistency, has_output, has_gap;
} results_line;

/* The line of (config c, plan layer l, plan head h); l or h = -1 aggregates. */
results_line results_line_of(const replay_plan *plan, const replay_acc *acc, int c, int l,
                             int h);

/* Where lines come from: the source's names, and the run's identity for JSON. */
typedef struct results_context {
    const replay_source *src;
    const replay_plan   *plan;
    const replay_acc    *acc;
    const char          *command;   /* the command line, for JSON provenance */
    const char          *sha256;    /* the trace file's digest (hex); NULL: JSON null.
                                       results_write_files fills it from src->path */
} results_context;

void results_write_csv_header(FILE *f);
/* The identifying columns of configuration c, trace .. phase, and a trailing comma;
 * policy and scope replace the configuration's labels when not NULL. */
void results_write_csv_ids(FILE *f, const results_context *rc, int c, const char *policy,
                           const char *scope);
/* Every line of configuration c: per head, per layer, overall. */
void results_write_csv_config(FILE *f, const results_context *rc, int c);
/* JSON pieces (docs/RESULTS.md), shared with sim/many.c: a configuration's labels as
 * an object left open ({"policy": ... "phase": "stream"; "budget", the resolved B,
 * only with_budget: across traces of different T it differs); the "trace" and
 * "trace_sha256" members; the entries of the "results" array, each on a new line
 * starting with indent. */
void results_write_json_config(FILE *f, const replay_config *cfg, int with_budget);
void results_write_json_identity(FILE *f, const results_context *rc, const char *indent);
void results_write_json_results(FILE *f, const results_context *rc, const char *indent);
/* Write the whole CSV (all configurations) and/or JSON; NULL paths are skipped and
 * "-" is stdout.  0 or KV_EIO naming the path. */
int  results_write_files(const results_context *rc, const char *csv_path,
                         const char *json_path, kv_err *err);

#endif /* RESULTS_H */
