/*
 * heatmap_trace.c — heatmap cells from a trace, optionally with a policy's kept set;
 * see heatmap_trace.h.
 *
 * Without a policy the rows are read straight from the source, block by block.  With
 * one, the replay engine runs a plan of that one configuration on that one layer
 * (every recorded head, so the head's KV group is the stream the policy really sees)
 * and its observer hook hands over C_t of the chosen head at each step: the overlay
 * is the engine's own kept set, not a second implementation of the policy.
 */
#include "heatmap_trace.h"

#include "replay.h"
#include "replay_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One heatmap being written: the rows wanted, the cell buffers, the first error. */
typedef struct heatmap_job {
    const plot_heatmap_request *req;
    plot_heatmap_writer        *w;
    int                         t_hi;    /* resolved: one past the last row */
    int                        *keys;    /* (T,) 0..T-1 */
    unsigned char              *kept;    /* (T,) 1 where the key is in C_t */
    int                         rc;      /* first write error */
    kv_err                      err;
} heatmap_job;

static int job_init(heatmap_job *job, const plot_heatmap_request *req, plot_heatmap_writer *w,
                    int T, kv_err *err)
{
    memset(job, 0, sizeof *job);
    job->req = req;
    job->w = w;
    job->t_hi = req->t_hi < 0 ? T : req->t_hi;
    if (req->t_lo >= T || job->t_hi > T)
        return kv_errorf(err, KV_ERANGE, "%s: --range %d:%d is past the trace's %d steps",
                         req->trace, req->t_lo, job->t_hi, T);
    job->keys = malloc((size_t)T * sizeof *job->keys);
    job->kept = calloc((size_t)T, 1);
    if (!job->keys || !job->kept)
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d steps", T);
    for (int i = 0; i < T; i++)
        job->keys[i] = i;
    return KV_OK;
}

static void job_free(heatmap_job *job)
{
    free(job->keys);
    free(job->kept);
}

/* The recorded index of a model number, or -1. */
static int recorded_index(const int *model, int n, int number)
{
    for (int i = 0; i < n; i++)
        if (model[i] == number)
            return i;
    return -1;
}

/* --- without a policy: the rows ------------------------------------------------------ */

static int write_rows(heatmap_job *job, replay_source *src, int li, int hi, kv_err *err)
{
    const int t_lo = job->req->t_lo, width = job->t_hi;
    float *block = malloc((size_t)REPLAY_BLOCK * width * sizeof *block);
    if (!block)
        return kv_errorf(err, KV_ENOMEM, "out of memory for a block of %d rows", REPLAY_BLOCK);
    int rc = KV_OK;
    for (int t0 = t_lo; rc == KV_OK && t0 < job->t_hi; t0 += REPLAY_BLOCK) {
        const int n = job->t_hi - t0 < REPLAY_BLOCK ? job->t_hi - t0 : REPLAY_BLOCK;
        rc = replay_source_read_rows(src, li, hi, t0, n, block, (size_t)width, err);
        for (int r = 0; rc == KV_OK && r < n; r++)
            rc = plot_heatmap_row(job->w, t0 + r, t0 + r + 1, job->keys,
                                  block + (size_t)r * width, NULL, err);
    }
    free(block);
    return rc;
}

/* --- with a policy: the engine's C_t ---------------------------------------------------- */

static void observe(void *ctx, const replay_attended *a)
{
    heatmap_job *job = ctx;
    if (a->layer != job->req->layer || a->head != job->req->head || a->t < job->req->t_lo ||
        a->t >= job->t_hi || job->rc != KV_OK)
        return;
    for (int i = 0; i < a->n; i++)
        job->kept[a->kept[i].position] = 1;
    job->rc = plot_heatmap_row(job->w, a->t, a->t + 1, job->keys, a->p, job->kept, &job->err);
    for (int i = 0; i < a->n; i++)
        job->kept[a->kept[i].position] = 0;
}

/* The plan of `kvsim replay TRACE --policy P --budget B --layers L --metrics mass`:
 * the same configuration, so the same kept sets, as the replay command. */
static int replay_policy(heatmap_job *job, kv_err *err)
{
    char layer[16];
    snprintf(layer, sizeof layer, "%d", job->req->layer);
    const replay_request request = {.trace = job->req->trace, .policies = job->req->policy,
                                    .budgets = job->req->budget, .layers = layer,
                                    .metrics = "mass", .params = job->req->params};
    replay_setup setup;
    int rc = replay_setup_build(&setup, &request, err);
    replay_acc *acc = NULL;
    if (rc == KV_OK && !(acc = calloc((size_t)setup.n_configs * setup.plan.n_heads, sizeof *acc)))
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    if (rc == KV_OK) {
        setup.plan.observe = observe;
        setup.plan.observe_ctx = job;
        rc = replay_run(setup.src, &setup.plan, acc, err);
    }
    if (rc == KV_OK && job->rc != KV_OK) {
        rc = job->rc;
        if (err)
            *err = job->err;
    }
    free(acc);
    replay_setup_free(&setup);
    return rc;
}

int heatmap_from_trace(const plot_heatmap_request *req, plot_heatmap_writer *w, kv_err *err)
{
    replay_source *src = replay_source_open_trace(req->trace, err);
    if (!src)
        return err ? err->code : KV_EIO;
    const int li = recorded_index(src->layers, src->n_layers, req->layer);
    const int hi = recorded_index(src->heads, src->n_heads, req->head);
    heatmap_job job;
    int rc = job_init(&job, req, w, src->T, err);
    if (rc == KV_OK && (li < 0 || hi < 0))
        rc = kv_errorf(err, KV_ERANGE, "%s: %s %d is not in the trace", req->trace,
                       li < 0 ? "layer" : "head", li < 0 ? req->layer : req->head);
    if (rc == KV_OK)
        rc = req->policy ? replay_policy(&job, err) : write_rows(&job, src, li, hi, err);
    job_free(&job);
    replay_source_close(src);
    return rc;
}
