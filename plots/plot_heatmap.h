/*
 * plot_heatmap.h — the heatmap CSV, and the one function the trace side provides.
 *
 * `kvsim plot heatmap` draws a heatmap CSV (docs/PLOTS.md):
 *
 *     t,key,prob,kept        header; `kept` is optional (no overlay without it)
 *     40,0,0.31,1            query step t, key position, p_t(key), 1 kept / 0 evicted
 *
 * one line per (t, key) cell, any subset of cells (a causal triangle, a --range band).
 *
 * Drawing straight from a trace (`kvsim plot heatmap TRACE --layer L --head H
 * [--range a:b] [--policy P --budget B]`) is sim/heatmap_trace.h's: it reads the rows t
 * in [t_lo, t_hi) of (layer, head), replays the policy when one is named, and hands
 * each row to plot_heatmap_row().  The CSV goes next to the figure (attn.png ->
 * attn.csv) so heatmap.gp can be rerun by hand.
 */
#ifndef PLOT_HEATMAP_H
#define PLOT_HEATMAP_H

#include "kv_err.h"
#include "policy.h"

/* What the user asked for on the command line; strings borrowed. */
typedef struct plot_heatmap_request {
    const char *trace;   /* TRACE.h5 */
    int         layer;   /* model layer */
    int         head;    /* query head */
    int         t_lo;    /* first query step (--range a:b), 0 by default */
    int         t_hi;    /* one past the last; -1: the end of the trace */
    const char *policy;  /* overlay this policy's kept set; NULL: no overlay */
    const char *budget;  /* as written ("0.4" or "512"); set when policy is */
    policy_args params;  /* every other policy parameter (--phase oneshot, --stride 4 ...) */
} plot_heatmap_request;

typedef struct plot_heatmap_writer plot_heatmap_writer;  /* opaque */

/* Open `path` for writing, through a temporary name; with_kept adds the kept column.
 * NULL and *err filled on failure. */
plot_heatmap_writer *plot_heatmap_open(const char *path, int with_kept, kv_err *err);

/* One query's row: n cells, keys[i] the key position, prob[i] its probability,
 * kept[i] 1 or 0 (ignored, may be NULL, without the kept column). */
int plot_heatmap_row(plot_heatmap_writer *w, int t, int n, const int *keys,
                     const float *prob, const unsigned char *kept, kv_err *err);

/* Finish: commit renames the file into place, otherwise it is removed.  NULL is
 * harmless.  Returns 0 or the first write error. */
int plot_heatmap_close(plot_heatmap_writer *w, int commit, kv_err *err);

#endif /* PLOT_HEATMAP_H */
