/*
 * bench_record.c — `kvtrace record`'s cost: the same tokens recorded with each
 * compression, against the same tokens run without a hook (what `kvtrace run` does),
 * and the bytes on disk per attention element.
 *
 * The prompt is bench/bench_prompt.txt cut to `tokens` tokens, prefilled in the
 * recorder's chunks in both cases so that only the recording differs; a plain run goes
 * right before each recording and the best of them is the baseline.  Each trace is
 * written to build/ and removed.  Write MB/s counts the attention rows handed to the
 * writer (f16) over the recording's wall time: compare it with the "disk write" row.
 */
#include "bench.h"

#include "recorder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BENCH_RECORD_LENGTHS
#define BENCH_RECORD_LENGTHS 512, 2048   /* total tokens of the two recordings */
#endif
#ifndef BENCH_RECORD_CODECS   /* "rows none": the row-free default (queries and keys) */
#define BENCH_RECORD_CODECS "none", "lz4", "deflate:1", "deflate:4", "deflate:9", "rows none"
#endif

static int open_session(session *s, const char *model, int tokens)
{
    session_options so = session_options_default();
    so.model = model;
    so.prompt_file = "bench/bench_prompt.txt";
    so.max_new = 0;
    kv_err err = {0};
    if (session_open(s, &so, &err) != 0) {
        fprintf(stderr, "bench: record: %s\n", err.msg);
        return -1;
    }
    if ((int)s->prompt.n > tokens)
        s->prompt.n = (size_t)tokens;   /* the first `tokens` tokens of the text */
    return 0;
}

/* The same tokens through the model with no hook: the baseline. */
static double plain_seconds(session *s)
{
    kv_err err = {0};
    kv_cache *cache = model_cache_new(s->model, (int)s->prompt.n, &err);
    double t0 = bench_now();
    for (size_t i = 0; cache && i < s->prompt.n; i += RECORD_CHUNK) {
        int n = s->prompt.n - i < RECORD_CHUNK ? (int)(s->prompt.n - i) : RECORD_CHUNK;
        model_forward(s->model, cache, s->prompt.ids + i, n, MODEL_LOGITS_NONE, NULL, NULL, &err);
    }
    double dt = bench_now() - t0;
    kv_cache_free(cache);
    return dt;
}

static void one_compression(session *s, const char *model, const char *compress, double plain,
                            int threads)
{
    const char *path = "build/bench_record.h5";
    session_options so = session_options_default();
    so.model = model;   /* hashed into the trace's attributes, as kvtrace record does */
    so.max_new = 0;
    record_options ro = {.trace = {.dtype = TRACE_F16, .force = 1}};
    kv_err err = {0};
    const int row_free = !strcmp(compress, "rows none");
    if (row_free)
        ro.rows = "none", ro.trace.qk_dtype = TRACE_F32;   /* kvtrace record's default */
    else if (trace_compression_parse(compress, &ro.trace.compression, &err) != 0)
        return;
    record_result res;
    double t0 = bench_now();
    int rc = record_trace(s, &so, path, &ro, &res, &err);
    double dt = bench_now() - t0;
    trace *tr = rc ? NULL : trace_open(path, &err);
    trace_storage st;
    if (!tr || trace_get_storage(tr, &st, &err) != 0) {
        fprintf(stderr, "bench: record %s: %s\n", compress, err.msg);
        trace_close(tr);
        unlink(path);
        return;
    }
    double elements = (double)st.probs_elements;
    char config[64];
    snprintf(config, sizeof config, "%zu tok, %s", s->prompt.n, compress);
    bench_row("record / plain run", config, threads, dt / plain, "x");
    if (!row_free) {
        bench_row("record bytes/element", config, threads, (double)st.probs_stored / elements,
                  "B");
        bench_row("record rows MB/s", config, threads, elements * 2 / dt / 1e6, "MB/s");
    }
    trace_close(tr);
    unlink(path);
}

void bench_record(int threads, const char *model)
{
    const char *compressions[] = {BENCH_RECORD_CODECS};
    const int lengths[] = {BENCH_RECORD_LENGTHS};
    for (size_t l = 0; l < sizeof lengths / sizeof *lengths; l++) {
        session s;
        if (open_session(&s, model, lengths[l]) != 0)
            return;
        double plain = 1e30;   /* the best plain run so far: one right before each
                                  recording, so a busy machine slows both alike */
        for (size_t c = 0; c < sizeof compressions / sizeof *compressions; c++) {
            const double p = plain_seconds(&s);
            plain = p < plain ? p : plain;
            one_compression(&s, model, compressions[c], plain, threads);
        }
        session_close(&s);
    }
}
