/*
 * trace_follow.c — `kvsim ... --follow`: wait for a recording in progress.
 *
 * The writer holds an exclusive flock on NAME.partial from before it writes the file
 * until it has renamed it onto NAME (trace_write.c); so a reader that cannot take a
 * shared lock on NAME.partial knows a writer is at work.  While it is, this reports the
 * steps on disk (the file opens in SWMR mode while it grows) twice a second; then it
 * names the file to read: NAME once the writer renamed it, NAME.partial if the writer
 * was killed (its flushed steps are a readable, incomplete trace).
 *
 * Why wait rather than replay while the file grows: a budget given as a fraction of T,
 * the oracle's column totals and a sweep's first step all depend on the final T, which
 * is known only when the writer stops.
 */
#include "trace_file.h"

#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define FOLLOW_POLL_NS 500000000L   /* how often the lock and the steps are looked at */

/* 1 while a writer holds `partial`, 0 when nobody does (or it is gone). */
static int writer_at_work(const char *partial)
{
    int fd = open(partial, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);   /* releases our shared lock, if we took it */
    return busy;
}

static int64_t steps_on_disk(const char *partial, int64_t *planned)
{
    kv_err err = {0};
    trace *tr = trace_open(partial, &err);
    int64_t steps = tr ? trace_get_meta(tr)->steps : 0;
    if (tr)
        *planned = trace_get_meta(tr)->header.planned_steps;
    trace_close(tr);
    return steps;
}

int trace_follow(const char *path, char *out, size_t len, kv_err *err)
{
    char partial[4096];
    if ((size_t)snprintf(partial, sizeof partial, "%s.partial", path) >= sizeof partial)
        return kv_errorf(err, KV_EUSAGE, "%s: the path is too long", path);
    progress bar = {0};
    int64_t planned = 0, shown = -1;
    while (writer_at_work(partial)) {
        const int64_t steps = steps_on_disk(partial, &planned);
        if (shown < 0)
            progress_start(&bar, "following", planned, "steps");
        if (steps != shown)
            progress_update(&bar, steps, -1);
        shown = steps;
        const struct timespec nap = {0, FOLLOW_POLL_NS};
        nanosleep(&nap, NULL);
    }
    if (shown >= 0)
        progress_finish(&bar);
    const char *found = access(path, F_OK) == 0 ? path
                        : access(partial, F_OK) == 0 ? partial : NULL;
    if (!found)
        return kv_errorf(err, KV_EIO, "%s: no such trace, and no recording of it (%s) in "
                         "progress", path, partial);
    snprintf(out, len, "%s", found);
    return KV_OK;
}
