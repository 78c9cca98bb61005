/* plot_heatmap.c — the heatmap CSV writer; see plot_heatmap.h for the format. */
#include "plot_heatmap.h"

#include "out.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct plot_heatmap_writer {
    out_file *out;       /* by the output rule: never a half-written CSV */
    FILE     *f;
    char     *path;
    int       with_kept; /* 1: the kept column is written */
    int       failed;    /* a write failed: close() will not commit */
};

plot_heatmap_writer *plot_heatmap_open(const char *path, int with_kept, kv_err *err)
{
    plot_heatmap_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        kv_errorf(err, KV_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    w->with_kept = with_kept;
    if (!(w->out = out_open(path, err))) {
        plot_heatmap_close(w, 0, NULL);
        return NULL;
    }
    w->f = out_stream(w->out);
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
        return kv_errorf(err, KV_EIO, "%s: write failed at row %d", w->path, t);
    }
    return 0;
}

int plot_heatmap_close(plot_heatmap_writer *w, int commit, kv_err *err)
{
    if (!w)
        return 0;
    int rc = out_close(w->out, commit && !w->failed, err);
    if (commit && w->failed && rc == 0)
        rc = kv_errorf(err, KV_EIO, "%s: not written: an earlier write failed", w->path);
    free(w->path);
    free(w);
    return rc;
}
