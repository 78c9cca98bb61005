/* plot_heatmap.c — the heatmap CSV writer; see plot_heatmap.h for the format. */
#include "plot_heatmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct plot_heatmap_writer {
    FILE *f;          /* the temporary file being written */
    char *path;       /* final name */
    char *tmp;        /* path + ".partial": never mistaken for a finished CSV */
    int   with_kept;  /* 1: the kept column is written */
    int   failed;     /* a write failed: close() will not commit */
};

plot_heatmap_writer *plot_heatmap_open(const char *path, int with_kept, kv_err *err)
{
    plot_heatmap_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path);
    if (w) {
        w->path = strdup(path);
        w->tmp = malloc(n + sizeof ".partial");
    }
    if (!w || !w->path || !w->tmp) {
        kv_errorf(err, KV_ENOMEM, "%s: out of memory", path);
        plot_heatmap_close(w, 0, NULL);
        return NULL;
    }
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".partial", sizeof ".partial");
    w->with_kept = with_kept;
    w->f = fopen(w->tmp, "w");
    if (!w->f) {
        kv_errorf(err, KV_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
        plot_heatmap_close(w, 0, NULL);
        return NULL;
    }
    fputs(with_kept ? "t,key,prob,kept\n" : "t,key,prob\n", w->f);
    return w;
}

int plot_heatmap_row(plot_heatmap_writer *w, int t, int n, const int *keys,
                     const float *prob, const unsigned char *kept, kv_err *err)
{
    if (w->with_kept && !kept)
        return kv_errorf(err, KV_EUSAGE, "%s: row %d: the kept column needs kept[]", w->path, t);
    for (int i = 0; i < n; i++) {
        fprintf(w->f, "%d,%d,%.9g", t, keys[i], (double)prob[i]);
        fputs(w->with_kept ? (kept[i] ? ",1\n" : ",0\n") : "\n", w->f);
    }
    if (ferror(w->f)) {
        w->failed = 1;
        return kv_errorf(err, KV_EIO, "%s: write failed at row %d", w->tmp, t);
    }
    return 0;
}

int plot_heatmap_close(plot_heatmap_writer *w, int commit, kv_err *err)
{
    if (!w)
        return 0;
    int rc = 0;
    if (w->f && fclose(w->f) != 0 && commit)
        rc = kv_errorf(err, KV_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    if (w->f && commit && !w->failed && rc == 0 && rename(w->tmp, w->path) != 0)
        rc = kv_errorf(err, KV_EIO, "%s: cannot rename into place: %s", w->path, strerror(errno));
    if (w->f && (!commit || w->failed || rc != 0))
        remove(w->tmp);
    if (commit && w->failed && rc == 0)
        rc = kv_errorf(err, KV_EIO, "%s: not written: an earlier write failed", w->path);
    free(w->path);
    free(w->tmp);
    free(w);
    return rc;
}
