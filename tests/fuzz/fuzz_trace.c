/*
 * fuzz_trace.c — libFuzzer target for the trace reader (trace/trace_read.c and the
 * chunk, rebuild, info and verify paths over it).  Built and run by `make fuzz`,
 * never in CI.
 *
 * Each input is written to one file in /dev/shm (trace_open takes a path, and the
 * bytes must reach HDF5 exactly as a file on disk would) and read the way the tools
 * read it: open (every attribute and shape check) and every row block of every
 * (layer, head) whichever way it is stored (read, fetch + decode, f16, rebuild), keys,
 * values and queries; or `kvtrace info`; or `kvtrace verify`.  A refused input must say so through a kv_err
 * naming the file; anything else AddressSanitizer, UBSan or the -timeout catch.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trace_file.h"

static char path[64];
static FILE *sink;

static void refused(const kv_err *err)
{
    if (err->code >= 0 || !strstr(err->msg, path))
        abort();                          /* every refusal is explained, naming the file */
}

/* The block as f16 chunks (the replay's path: trace_fetch_f16), checked as it is. */
static unsigned char f16_block[(4096 / TRACE_CHUNK_COLS + 1) * TRACE_F16_CHUNK_BYTES];

static void read_f16(trace *tr, int li, int hi, int64_t t0, int n, trace_chunk_buf *cb)
{
    const unsigned char *col[4096 / TRACE_CHUNK_COLS + 1];
    kv_err err = {0};
    if (trace_fetch_f16(tr, li, hi, t0, n, cb, f16_block, sizeof f16_block, &err) == 1 &&
        trace_decode_f16(cb, col, &err) == 0)
        trace_check_f16(tr, li, hi, t0, n, col, &err);
}

/* Every block of rows of (li, hi), through each reader that applies. */
static void read_pair(trace *tr, int li, int hi, float *out, size_t width,
                      trace_chunk_buf *cb, trace_rebuild_buf *rb)
{
    const int64_t T = trace_get_meta(tr)->steps;
    kv_err err = {0};
    for (int64_t t0 = 0; t0 < T; t0 += TRACE_BATCH) {
        int n = (int)(T - t0 < TRACE_BATCH ? T - t0 : TRACE_BATCH);
        if (trace_rows(tr, li, hi, t0, n, out, width, &err) == 0)
            trace_check_rows(tr, li, hi, t0, n, out, width, &err);
        if (trace_rows_stored(tr, li, hi)) {
            if (trace_fetch_rows(tr, li, hi, t0, n, cb, &err) == 0)
                trace_decode_rows(cb, out, width, &err);
            read_f16(tr, li, hi, t0, n, cb);
        } else if (trace_fetch_inputs(tr, li, hi, t0, n, rb, &err) == 0) {
            trace_rebuild_rows(rb, out, width, &err);
        }
        trace_read_queries(tr, li, hi, t0, n, out, &err);
    }
}

static void read_all(trace *tr)
{
    const trace_meta *m = trace_get_meta(tr);
    const int64_t T = m->steps;
    const size_t width = (size_t)((T + TRACE_BATCH - 1) / TRACE_BATCH * TRACE_BATCH);
    if (T <= 0 || T > 4096)
        return;                           /* keep each input fast; open was the point */
    size_t cells = (size_t)TRACE_BATCH * (width > (size_t)m->header.head_dim
                                          ? width : (size_t)m->header.head_dim);
    float *out = malloc(cells * sizeof *out), *v = malloc(cells * sizeof *v);
    trace_chunk_buf *cb = trace_chunk_buf_new();
    trace_rebuild_buf *rb = trace_rebuild_buf_new();
    kv_err err = {0};
    for (int li = 0; out && v && cb && rb && li < m->header.n_layers_rec; li++) {
        for (int hi = 0; hi < m->header.n_heads_rec; hi++)
            read_pair(tr, li, hi, out, width, cb, rb);
        for (int ki = 0; ki < m->n_kv_heads_rec; ki++)
            for (int64_t t0 = 0; t0 < T; t0 += TRACE_BATCH)
                trace_read_kv(tr, li, ki, t0, (int)(T - t0 < TRACE_BATCH ? T - t0 : TRACE_BATCH),
                              out, v, &err);
    }
    trace_storage st;
    trace_get_storage(tr, &st, &err);
    trace_chunk_buf_free(cb);
    trace_rebuild_buf_free(rb);
    free(out);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/dev/shm/fuzz_trace_%d.h5", (int)getpid());
        sink = fopen("/dev/null", "w");
    }
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
        abort();
    /* One of the three readers per input (by its length), as each opens the file
     * again: a third of the cost, and every reader still sees every kind of input. */
    kv_err err = {0};
    if (size % 3 == 1) {
        if (trace_info_print(path, sink, &err) != 0)
            refused(&err);
        return 0;
    }
    if (size % 3 == 2) {
        if (trace_verify(path, sink, &err) != 0)
            refused(&err);
        return 0;
    }
    trace *tr = trace_open(path, &err);
    if (!tr) {
        refused(&err);
        return 0;
    }
    read_all(tr);
    trace_close(tr);
    return 0;
}
