/*
 * plot.h — figures from kvsim's CSVs, drawn by gnuplot.
 *
 * The figures themselves are the readable scripts plots/{std,sweep,scope,heatmap,
 * confirm,study,fastgen,passkey}.gp,
 * which a user can rerun by hand on a CSV; plots/common.gp holds what they share (the
 * terminal, the one colour per policy, metric labels).  This module only
 *
 *   1. checks the CSV names the columns the figure needs (docs/RESULTS.md),
 *   2. writes one self-contained script: the variables, then common.gp, then the
 *      figure's .gp (this is what `--script-only` prints),
 *   3. runs gnuplot on it, drawing into a temporary file that is renamed over the
 *      output only when gnuplot succeeded: a failed plot never leaves a file that
 *      looks complete.
 *
 * Errors follow common/kv_err.h.  The CLI is apps/cmd_plot.c; docs/PLOTS.md is the manual.
 */
#ifndef PLOT_H
#define PLOT_H

#include <stdio.h>

#include "kv_err.h"
#include "plot_heatmap.h"

typedef enum plot_kind { PLOT_STD, PLOT_SWEEP, PLOT_SCOPE, PLOT_HEATMAP, PLOT_CONFIRM,
                         PLOT_STUDY, PLOT_FASTGEN, PLOT_PASSKEY } plot_kind;

/* One figure to draw.  Strings are borrowed; NULL means "the script's default". */
typedef struct plot_request {
    plot_kind   kind;
    const char *csv;      /* input: a CSV of docs/RESULTS.md, a heatmap CSV, or the
                             points of `kvsim confirm predict --points` */
    const char *out;      /* the figure: *.png (pngcairo) or *.svg */
    const char *metric;   /* sweep, scope: mass|overlap|consistency|output-error|oracle-gap */
    const char *title;    /* replaces the figure's default title */
    const char *model;    /* model name, first part of the subtitle */
    const char *trace;    /* trace name for the subtitle; NULL: the CSV's `trace` column */
    const char *layers;   /* std: "0,4,8"; NULL: all, or six evenly spaced */
    const char *head;     /* std: a query head index, or "all" (NULL) */
    const char *policy;   /* heatmap: the policy whose kept set is overlaid */
    const char *predict;  /* confirm: the `kvsim confirm predict` CSV (rho per budget) */
    const char *gnuplot;  /* the gnuplot program; NULL: `gnuplot` found on PATH */
    const char *plotdir;  /* where the .gp files live; NULL: plot_find_dir() */
} plot_request;

/* "std", "sweep", "scope", "heatmap", "confirm", "study", "fastgen", "passkey";
 * plot_kind_parse returns -1 for anything else. */
const char *plot_kind_name(plot_kind kind);
int         plot_kind_parse(const char *name);

/* The directory holding common.gp: $KV_PLOTS_DIR, else plots/ beside the running
 * binary's bin/, else ./plots.  Borrowed static storage; NULL if none has common.gp. */
const char *plot_find_dir(void);

/* Check req->out ends in .png or .svg; KV_EUSAGE naming both otherwise. */
int plot_check_output(const char *out, kv_err *err);

/* Write the complete script for req to f (variables set, common.gp inlined), reading
 * the CSV's header to check its columns.  0 or a negative KV_E*. */
int plot_write_script(const plot_request *req, FILE *f, kv_err *err);

/* Draw req->out with gnuplot.  KV_ENOTFOUND names the Debian package gnuplot-nox when
 * gnuplot cannot be found; a gnuplot failure is KV_EIO with the tail of its stderr. */
int plot_render(const plot_request *req, kv_err *err);

#endif /* PLOT_H */
