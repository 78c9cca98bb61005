/* progress.c — see progress.h. */
#include "progress.h"

#include <stdio.h>
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
    *p = (progress){.label = label, .total = total, .unit = unit, .start = progress_now(),
                    .enabled = isatty(STDERR_FILENO) == 1};
}

void progress_update(progress *p, int64_t done, double megabytes)
{
    double now = progress_now();
    if (!p->enabled || (now - p->last_draw < 0.1 && done < p->total))
        return;
    p->last_draw = now;
    double elapsed = now - p->start, rate = elapsed > 0 ? (double)done / elapsed : 0;
    fprintf(stderr, "\r%s: %lld", p->label, (long long)done);
    if (p->total > 0)
        fprintf(stderr, "/%lld", (long long)p->total);
    fprintf(stderr, " %s, %.1f %s/s", p->unit, rate, p->unit);
    if (megabytes >= 0)
        fprintf(stderr, ", %.1f MB", megabytes);
    if (p->total > 0 && rate > 0 && done < p->total)
        fprintf(stderr, ", ETA %.0f s", (double)(p->total - done) / rate);
    fprintf(stderr, "\033[K");
    fflush(stderr);
}

void progress_finish(progress *p)
{
    if (p->enabled)
        fprintf(stderr, "\r\033[K");
}
