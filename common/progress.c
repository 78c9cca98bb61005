/* progress.c — see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_start(progress *p, const char *label, int64_t total, const char *unit)
{
    const char *mode = getenv("KV_PROGRESS");
    const int lines = mode && !strcmp(mode, "lines");
    const int never = mode && !strcmp(mode, "never");
    *p = (progress){.label = label, .total = total, .unit = unit, .start = progress_now(),
                    .enabled = !never && (lines || isatty(STDERR_FILENO) == 1),
                    .lines = lines, .last_draw = -1e9};
}

void progress_update(progress *p, int64_t done, double megabytes)
{
    double now = progress_now();
    const double every = p->lines ? 1.0 : 0.1;   /* a log gets a line a second */
    if (!p->enabled || (now - p->last_draw < every && done < p->total))
        return;
    p->last_draw = now;
    double elapsed = now - p->start, rate = elapsed > 0 ? (double)done / elapsed : 0;
    fprintf(stderr, "%s%s: %lld", p->lines ? "" : "\r", p->label, (long long)done);
    if (p->total > 0)
        fprintf(stderr, "/%lld", (long long)p->total);
    fprintf(stderr, " %s, %.1f %s/s", p->unit, rate, p->unit);
    if (megabytes >= 0)
        fprintf(stderr, ", %.1f MB", megabytes);
    if (p->total > 0 && rate > 0 && done < p->total)
        fprintf(stderr, ", ETA %.0f s", (double)(p->total - done) / rate);
    fputs(p->lines ? "\n" : "\033[K", stderr);
    fflush(stderr);
}

void progress_finish(progress *p)
{
    if (p->enabled && !p->lines)
        fprintf(stderr, "\r\033[K");
}
