/*
 * recorder.h — `kvtrace record`'s engine: run a session with the full KV cache and
 * write every attention row, key, value and next-token log-probability to a trace
 * (docs/TRACE_FORMAT.md, trace/trace_file.h).
 *
 * How it runs (numbered so tests can name what they check):
 *  (1) The prompt goes through the model in chunks of RECORD_CHUNK tokens (one batched
 *      forward each, logits for every position); generated tokens one at a time.
 *  (2) The model's attention-row hook copies the row of each (layer, head) whose rows
 *      are stored into a chunk buffer, and its query hook each recorded head's query
 *      when rows are rebuilt; once the chunk's forward returns, its steps are appended
 *      to the trace writer, whose own thread compresses and writes them while the
 *      model computes the next chunk.  A trace that stores no rows installs no row
 *      hook at all.
 *  (3) Step t's logprob_next is log p(token t+1 | tokens ≤ t) under the raw logits
 *      (no temperature), and entropy_next the entropy of that distribution, so
 *      full-cache perplexity comes from the trace alone.  The last step has NaN when
 *      no next token was produced.
 *  (4) An interrupt (the `stop` flag: SIGINT, SIGTERM, SIGHUP), a write error or a
 *      full disk aborts the writer: the file keeps the whole batches already written
 *      and stays marked incomplete (complete = 0), never looking whole.
 *
 * Memory on top of the model and its cache: the chunk buffer, e · RECORD_CHUNK · Lr · Hr
 * · T bytes for T steps (e: 2 for f16 rows, 4 for f32) and Lr x Hr stored (layer, head) pairs (+ queries 4 ·
 * RECORD_CHUNK · L · H · D), the chunk's logits 4 · RECORD_CHUNK · n_vocab, and the
 * writer's two batches (docs/TRACE_FORMAT.md).
 */
#ifndef RECORDER_H
#define RECORDER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "trace_file.h"

#define RECORD_CHUNK 64   /* prompt tokens per forward: one writer batch */

typedef struct record_options {
    const char                  *layers;    /* "0,4,8-11"; NULL: every layer */
    const char                  *heads;     /* query heads; NULL: every head */
    const char                  *rows;      /* "all", "none" or "LAYERS:HEADS" of the
                                               recorded ones: whose rows are stored;
                                               NULL: "all" */
    trace_options                trace;     /* dtypes, compression, force, record_queries
                                               (its rows fields are set from `rows`) */
    bool                         progress;  /* progress line on stderr (when a terminal) */
    volatile sig_atomic_t       *stop;      /* non-zero: abort at the next step; may be NULL */
} record_options;

typedef struct record_result {
    int64_t steps;            /* steps written */
    int     prompt_tokens;
    int     generated;
    double  seconds;          /* wall time of the forward passes and writing */
    size_t  buffer_bytes;     /* the recorder's own buffers (not model, cache, writer) */
} record_result;

/* Record session `s` (opened with `so`) into `path`.  0, or a negative KV_E* with err
 * filled: KV_EUSAGE/KV_ERANGE for a bad selection, KV_EEXIST for an existing file
 * without force, KV_EIO for a write error, KV_EINTERRUPTED when *stop was set. */
int record_trace(session *s, const session_options *so, const char *path,
                 const record_options *ro, record_result *res, kv_err *err);

/* The entropy (nats) of softmax(logits[n]) and the log-probability of token `next`
 * under it (NaN when next < 0). */
void record_next_token_stats(const float *logits, int n, int32_t next, float *logprob,
                             float *entropy);

#ifdef __AVX512F__
/* out[0..8) = exp(x[0..8)), bit for bit libm's (next_token_stats.c; for the tests). */
void record__exp8(const double *x, double *out);
#endif

#endif /* RECORDER_H */
