/*
 * std_run.c — `kvsim std`'s computation: attention-std trajectories per layer and head.
 *
 * One job per (layer, head), on OpenMP threads: it streams the head's full-cache rows
 * in blocks of REPLAY_BLOCK, folds each into an std_tracker (analysis/stdtraj.h) and
 * keeps the log-binned summary plus the trajectories of 8 sampled tokens.  Jobs own
 * their outputs and lines are written in (layer, head) order, so the files do not
 * depend on the thread count.  Peak memory: threads x (REPLAY_BLOCK + 1) x T x 4 bytes
 * of rows and σ, + 16 T bytes of statistics, + L x H x age bins x STD_SIGMA_BINS x 8
 * bytes of histograms.
 */
#include "std_run.h"
#include "out.h"

#include "progress.h"
#include "replay.h"
#include "results.h"
#include "stdtraj.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STD_SAMPLES 8

typedef struct std_sample { int position, age; float sigma; } std_sample;

typedef struct std_job {
    std_summary summary;
    std_sample *samples;   /* sampled tokens' (position, age, σ) */
    int         n_samples, cap_samples;
    int         rc;
    kv_err      err;
} std_job;

typedef struct std_output {
    replay_source      *src;
    const replay_setup *setup;
    std_job            *jobs;   /* (n_layers * n_heads,) plan order */
    const char         *trace;  /* many traces: each line starts with its name */
} std_output;

/* The `trace` column of a line, when there is one. */
static void put_trace(FILE *f, const std_output *run)
{
    if (run->trace) {
        out_csv_text(f, run->trace);
        fputc(',', f);
    }
}

/* The k-th sampled token, k < STD_SAMPLES: evenly spaced from the first; -1 when
 * it repeats the previous one (T < STD_SAMPLES). */
static int sample_position(int k, int T)
{
    int i = (int)((long)k * T / STD_SAMPLES);
    return k && i == (int)((long)(k - 1) * T / STD_SAMPLES) ? -1 : i;
}

static void keep_samples(std_job *job, const float *sigma, int t, int T, int window)
{
    for (int k = 0; k < STD_SAMPLES; k++) {
        int i = sample_position(k, T);
        if (i >= 0 && i <= t && (window <= 0 || t - i < window) && std_sample_age(t - i) &&
            job->n_samples < job->cap_samples)
            job->samples[job->n_samples++] = (std_sample){i, t - i, sigma[i]};
    }
}

/* One (layer, head): every row, in blocks. */
static int std_head(replay_source *src, int li, int hi, std_job *job)
{
    const int T = src->T;
    std_tracker tr = {0};
    float *block = malloc((size_t)REPLAY_BLOCK * T * sizeof *block);
    float *sigma = malloc((size_t)T * sizeof *sigma);
    job->cap_samples = STD_SAMPLES * (16 + 4 * std_age_bins(T));
    job->samples = malloc((size_t)job->cap_samples * sizeof *job->samples);
    int rc = block && sigma && job->samples && std_tracker_init(&tr, T) == 0 &&
                     std_summary_init(&job->summary, T) == 0
                 ? KV_OK
                 : kv_errorf(&job->err, KV_ENOMEM, "out of memory for T = %d", T);
    tr.window = src->window ? src->window[li] : 0;   /* a local layer: ages < W */
    for (int t0 = 0; rc == KV_OK && t0 < T; t0 += REPLAY_BLOCK) {
        const int n = T - t0 < REPLAY_BLOCK ? T - t0 : REPLAY_BLOCK;
        rc = replay_source_read_rows(src, li, hi, t0, n, block, (size_t)(t0 + n), &job->err);
        for (int r = 0; rc == KV_OK && r < n; r++) {
            std_tracker_step(&tr, block + (size_t)r * (t0 + n), t0 + r, sigma, &job->summary);
            keep_samples(job, sigma, t0 + r, T, tr.window);
        }
    }
    std_tracker_free(&tr);
    free(block);
    free(sigma);
    return rc;
}

/* --- output ----------------------------------------------------------------------- */

/* max_age: T - 1, or W - 1 on a sliding-window layer. */
static void put_bins(FILE *f, const std_output *run, const std_summary *s, int max_age,
                     int layer, int head)
{
    for (int b = 0; b < s->n_bins; b++) {
        if (!s->count[b])
            continue;
        put_trace(f, run);
        int lo, hi;
        std_age_range(b, &lo, &hi);
        hi = hi < max_age ? hi : max_age;   /* the last bin holds the ages there are */
        if (head >= 0)
            fprintf(f, "%d,%d,", layer, head);
        else
            fprintf(f, "%d,all,", layer);
        fprintf(f, "%d,%d,%llu,%.9g,%.9g,%.9g,%.9g\n", lo, hi, (unsigned long long)s->count[b],
                s->sum[b] / (double)s->count[b], std_summary_quantile(s, b, 0.1),
                std_summary_quantile(s, b, 0.5), std_summary_quantile(s, b, 0.9));
    }
}

static void bins_header(FILE *f, int with_trace)
{
    fprintf(f, "%slayer,head,age_lo,age_hi,n,mean,p10,p50,p90\n", with_trace ? "trace," : "");
}

static void tokens_header(FILE *f, int with_trace)
{
    fprintf(f, "%slayer,head,position,age,sigma\n", with_trace ? "trace," : "");
}

static void bins_lines(FILE *f, const std_output *run)
{
    const replay_plan *plan = &run->setup->plan;
    for (int l = 0; l < plan->n_layers; l++) {
        const int layer = run->src->layers[plan->layers[l]];
        const int W = run->src->window ? run->src->window[plan->layers[l]] : 0;
        const int max_age = W > 0 && W < run->src->T ? W - 1 : run->src->T - 1;
        std_summary all = {0};
        int ok = std_summary_init(&all, run->src->T) == 0;
        for (int h = 0; h < plan->n_heads; h++) {
            const std_summary *s = &run->jobs[l * plan->n_heads + h].summary;
            put_bins(f, run, s, max_age, layer, run->src->heads[plan->heads[h]]);
            if (ok)
                std_summary_merge(&all, s);
        }
        if (ok)
            put_bins(f, run, &all, max_age, layer, -1);
        std_summary_free(&all);
    }
}

static void write_bins(FILE *f, const void *ctx)
{
    bins_header(f, 0);
    bins_lines(f, ctx);
}

static void tokens_lines(FILE *f, const std_output *run)
{
    const replay_plan *plan = &run->setup->plan;
    for (int l = 0; l < plan->n_layers; l++)
        for (int h = 0; h < plan->n_heads; h++) {
            const std_job *job = &run->jobs[l * plan->n_heads + h];
            for (int k = 0; k < STD_SAMPLES; k++) {   /* token by token, ages increasing */
                const int pos = sample_position(k, run->src->T);
                for (int i = 0; pos >= 0 && i < job->n_samples; i++)
                    if (job->samples[i].position == pos) {
                        put_trace(f, run);
                        fprintf(f, "%d,%d,%d,%d,%.9g\n", run->src->layers[plan->layers[l]],
                                run->src->heads[plan->heads[h]], pos, job->samples[i].age,
                                job->samples[i].sigma);
                    }
            }
        }
}

static void write_tokens(FILE *f, const void *ctx)
{
    tokens_header(f, 0);
    tokens_lines(f, ctx);
}

/* Every job on the OpenMP threads, with progress; the first failure's error. */
static int run_jobs(const replay_setup *s, std_job *jobs, kv_err *err)
{
    const int n_jobs = s->plan.n_layers * s->plan.n_heads;
    progress bar;
    int done = 0, rc = KV_OK;
    progress_start(&bar, "std", n_jobs, "heads");
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < n_jobs; j++) {
        jobs[j].rc = std_head(s->src, s->plan.layers[j / s->plan.n_heads],
                              s->plan.heads[j % s->plan.n_heads], &jobs[j]);
#pragma omp critical(std_progress)
        progress_update(&bar, ++done, -1);
    }
    progress_finish(&bar);
    for (int j = 0; j < n_jobs && rc == KV_OK; j++)
        if ((rc = jobs[j].rc) != KV_OK && err)
            *err = jobs[j].err;
    return rc;
}

static void free_jobs(std_job *jobs, int n_jobs)
{
    for (int j = 0; jobs && j < n_jobs; j++) {
        std_summary_free(&jobs[j].summary);
        free(jobs[j].samples);
    }
    free(jobs);
}

int std_run(const replay_setup *s, const char *csv, const char *tokens_csv, kv_err *err)
{
    const int n_jobs = s->plan.n_layers * s->plan.n_heads;
    std_job *jobs = calloc((size_t)(n_jobs ? n_jobs : 1), sizeof *jobs);
    int rc = jobs ? run_jobs(s, jobs, err) : kv_errorf(err, KV_ENOMEM, "out of memory");
    std_output out = {s->src, s, jobs, NULL};
    if (rc == KV_OK)
        rc = out_write(csv, write_bins, &out, err);
    if (rc == KV_OK)
        rc = out_write(tokens_csv, write_tokens, &out, err);
    free_jobs(jobs, n_jobs);
    return rc;
}

/* One trace of std_run_many: its jobs, its lines into both files. */
static int std_trace(const replay_request *req, const char *path, out_file *bins,
                     out_file *tokens, kv_err *err)
{
    replay_setup s = {0};
    replay_request r = *req;
    r.trace = path;
    int rc = replay_setup_build(&s, &r, err);
    const int n_jobs = rc == KV_OK ? s.plan.n_layers * s.plan.n_heads : 0;
    std_job *jobs = rc == KV_OK ? calloc((size_t)(n_jobs ? n_jobs : 1), sizeof *jobs) : NULL;
    if (rc == KV_OK)
        rc = jobs ? run_jobs(&s, jobs, err) : kv_errorf(err, KV_ENOMEM, "out of memory");
    if (rc == KV_OK) {
        std_output out = {s.src, &s, jobs, s.src->name};
        bins_lines(out_stream(bins), &out);
        tokens_lines(out_stream(tokens), &out);
    }
    if (rc != KV_OK)
        kv_err_prefix(err, "%s: ", path);
    free_jobs(jobs, n_jobs);
    replay_setup_free(&s);
    return rc;
}

int std_run_many(const replay_request *req, const char *const *paths, int n_paths,
                 const char *csv, const char *tokens_csv, kv_err *err)
{
    out_file *bins = out_open(csv, err), *tokens = bins ? out_open(tokens_csv, err) : NULL;
    int rc = bins && tokens ? KV_OK : err->code;
    if (rc == KV_OK) {
        bins_header(out_stream(bins), 1);
        tokens_header(out_stream(tokens), 1);
    }
    for (int i = 0; rc == KV_OK && i < n_paths; i++)
        rc = std_trace(req, paths[i], bins, tokens, err);
    int closed = out_close(bins, rc == KV_OK, err);   /* a failure leaves neither */
    rc = rc == KV_OK ? closed : rc;
    closed = out_close(tokens, rc == KV_OK, err);
    return rc == KV_OK ? closed : rc;
}
