/*
 * progress.h — a one-line progress report on stderr, drawn only when stderr is a
 * terminal (pipes and CI logs stay clean), at most ten times a second.  KV_PROGRESS
 * changes that for every command: `lines` writes a plain line at most once a second
 * (batch jobs, logs, and the tests that wait for a run to be under way), `never`
 * stays silent.
 */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct progress {
    const char *label;      /* "record" */
    int64_t     total;      /* units expected; 0 if unknown */
    const char *unit;       /* "tokens" */
    double      start;      /* seconds, monotonic */
    double      last_draw;
    bool        enabled;    /* stderr is a terminal, or KV_PROGRESS=lines */
    bool        lines;      /* KV_PROGRESS=lines: whole lines, no redraws */
} progress;

void progress_start(progress *p, const char *label, int64_t total, const char *unit);

/* Redraw with `done` units and an extra figure (e.g. megabytes written; < 0: none). */
void progress_update(progress *p, int64_t done, double megabytes);

/* Clear the line (the caller prints its own summary). */
void progress_finish(progress *p);

double progress_now(void);   /* monotonic seconds */

#endif
