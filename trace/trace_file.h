/*
 * trace_file.h — the kvtrace attention trace: an HDF5 file, written by one writer
 * thread while the model computes, read back in row blocks by the replay engine.
 *
 * The layout (format "kvtrace", format_version 2; every field is described in
 * docs/TRACE_FORMAT.md).  L = recorded layers, H = recorded query heads,
 * K = KV heads those query heads use, T = steps (tokens), D = head_dim, Lr x Hr = the
 * (layer, head) pairs whose rows are stored; DT = the rows' and values' dtype, QT =
 * the queries' and keys' dtype: IEEE half (a custom type h5py reads as float16) or f32.
 *
 *   /                    attributes: format, format_version, tool and model identity,
 *                        architecture shapes, generation settings, device, created,
 *                        dtype, qk_dtype, compression, rows, mask, attn_scale,
 *                        attn_softcap, planned_steps (strings fixed-length: no
 *                        variable-length data anywhere in the file)
 *   /prompt     uint8    [n]            the prompt as given, UTF-8 bytes
 *   /layers     int32    [L]            model layer index of each recorded layer
 *   /heads      int32    [H]            recorded query heads
 *   /kv_heads   int32    [K]            KV heads they need: kv = q / (n_head / n_head_kv)
 *   /attn/window int32   [L]            0: a query sees every earlier key; W: the last W
 *   /attn/row_layers int32 [Lr]         layers whose rows are stored (absent: none)
 *   /attn/row_heads  int32 [Hr]         heads whose rows are stored
 *   /attn/probs DT       [Lr, Hr, T, T] row (l, h, t) = probs[l, h, t, 0:t+1]; zeros
 *                                       above the diagonal; chunk [1, 1, 64, 256]
 *   /tokens/id           int32   [T]
 *   /tokens/text_bytes   uint8   [N]    every token's text piece, back to back (UTF-8)
 *   /tokens/text_end     int64   [T]    end of piece t in text_bytes (start: end of t-1)
 *   /tokens/flags        uint8   [T]    bit0 special, bit1 punct-only, bit2 space-only
 *   /tokens/phase        uint8   [T]    0 prompt, 1 generated
 *   /tokens/position     int32   [T]
 *   /tokens/logprob_next float32 [T]    log p(token t+1 | tokens <= t); NaN if none
 *   /tokens/entropy_next float32 [T]    entropy (nats) of the next-token distribution
 *   /kv/keys    QT       [L, K, T, D]   post-RoPE; chunk [1, 1, 64, D]
 *   /kv/values  DT       [L, K, T, D]
 *   /kv/queries QT       [L, H, T, D]   post-RoPE, unscaled; whenever a row is not
 *                                       stored (or with record_queries)
 *   /status/complete int8  scalar       0 while writing, 1 once every step is on disk
 *   /status/steps    int64 scalar       steps whose data are all on disk
 *
 * Format 1 (variable-length strings, every row stored) is still read.
 *
 * Invariants the writer keeps and the reader relies on:
 *   (1) status/steps is raised only after the rows, tokens and KV of those steps were
 *       written and H5Fflush returned; dataset extents may exceed it by one batch.
 *   (2) status/complete is 1 only after the last step is on disk (trace_writer_close);
 *       an abort, a write error or a crash leaves 0.
 *   (3) A chunk of /attn/probs holds rows of one (layer, head) only, so reading a row
 *       block of one head never decompresses another; chunks wholly above the diagonal
 *       are never written, hence never allocated.
 *   (4) All HDF5 calls of a writer happen on its writer thread.
 *   (5) The file is written as NAME.partial, locked, in HDF5's single-writer /
 *       multiple-reader mode: a reader may open it while it grows, and after a crash
 *       (SIGKILL, power loss) it opens as it stood at the last flushed batch.  Close
 *       and abort rename it to NAME; a second writer of NAME is refused while the
 *       first holds the lock, and never touches either file.
 *
 * Errors follow common/kv_err.h.  Both sides silence HDF5's own error printing on the
 * threads that use them and put the innermost HDF5 message into the kv_err instead.
 */
#ifndef TRACE_FILE_H
#define TRACE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"

#define TRACE_FORMAT_NAME    "kvtrace"
#define TRACE_FORMAT_VERSION 2
#define TRACE_BATCH          64      /* steps per batch = rows per chunk */
#define TRACE_CHUNK_COLS     256     /* keys per /attn/probs chunk */

/* Named limits every number read from a file is checked against. */
#define TRACE_MAX_LAYERS     4096
#define TRACE_MAX_HEADS      4096
#define TRACE_MAX_HEAD_DIM   4096
#define TRACE_MAX_STEPS      (1 << 22)
#define TRACE_MAX_TEXT_BYTES ((int64_t)1 << 32)   /* all token pieces together */
#define TRACE_MAX_PROMPT     ((int64_t)1 << 28)   /* prompt bytes */
#define TRACE_MAX_CHUNK_BYTES ((size_t)1 << 26)   /* one chunk, plain (ours: <= 1 MiB) */

/* Token flags: the same bits as POLICY_FLAG_* in policies/policy.h. */
enum {
    TRACE_TOKEN_SPECIAL = 1u << 0,
    TRACE_TOKEN_PUNCT   = 1u << 1,
    TRACE_TOKEN_SPACE   = 1u << 2,
};
enum { TRACE_PHASE_PROMPT = 0, TRACE_PHASE_GENERATED = 1 };

typedef enum trace_dtype { TRACE_F16 = 0, TRACE_F32 = 1 } trace_dtype;

typedef enum trace_codec {
    TRACE_CODEC_NONE = 0,
    TRACE_CODEC_DEFLATE,     /* shuffle + deflate(level): any h5py reads it */
    TRACE_CODEC_LZ4,         /* shuffle + LZ4 (filter 32004, Debian hdf5-filter-plugin) */
} trace_codec;

typedef struct trace_compression {
    trace_codec codec;
    int         level;       /* deflate level 1..9; 0 otherwise */
} trace_compression;

/* What the trace describes.  The writer copies it; the reader fills it with strings
 * and arrays borrowed from the trace (valid until trace_close). */
typedef struct trace_header {
    const char *tool_version;   /* NULL: KV_VERSION */
    const char *model_file;     /* file name of the GGUF */
    const char *model_sha256;   /* 64 hex digits */
    const char *architecture;   /* "llama", "gemma3" */
    const char *tensor_types;   /* e.g. "Q4_1:211 F32:61" */
    int         n_layer, n_embd, n_head, n_head_kv, head_dim, n_ctx, vocab_size;
    double      rope_base;
    double      attn_scale;     /* applied to q.k before softmax; 0: 1/sqrt(head_dim) */
    double      attn_softcap;   /* 0: none; else scores s become cap · tanh(s / cap) */
    const int  *window;         /* (L,) per recorded layer: 0 = every earlier key, W = the
                                   last W keys (a sliding-window layer); NULL: all 0 */
    const char *prompt;         /* as given, before the chat template */
    int         chat;           /* 1: the chat template was applied */
    int         max_new_tokens, top_k;
    double      temperature, top_p;
    uint64_t    seed;
    const char *device;         /* "cpu" or the CUDA device name */
    int         threads;
    const char *created;        /* ISO-8601 UTC; NULL: the writer uses now */
    int         planned_steps;  /* steps the run may reach (prompt + max new); 0: unknown */
    int         n_layers_rec;   /* L */
    const int  *layers;         /* (L,) model layer indices, strictly increasing */
    int         n_heads_rec;    /* H */
    const int  *heads;          /* (H,) query head indices, strictly increasing */
} trace_header;

/* Which rows a trace stores: every recorded (layer, head), none (all rebuilt from the
 * queries and keys), or those of some layers and heads. */
typedef enum trace_stored_rows {
    TRACE_ROWS_ALL = 0, TRACE_ROWS_NONE, TRACE_ROWS_SOME
} trace_stored_rows;

typedef struct trace_options {
    trace_dtype       dtype;          /* rows and values; TRACE_F16 by default (zero) */
    trace_dtype       qk_dtype;       /* queries and keys (kvtrace record: f32 when rows
                                         are rebuilt, their precision is the rows') */
    trace_compression compression;    /* zero = none; see trace_compression_parse */
    int               force;          /* 1: overwrite an existing file */
    int               record_queries; /* 1: write /kv/queries even with every row stored */
    trace_stored_rows rows;           /* TRACE_ROWS_ALL by default (zero) */
    int               n_row_layers;   /* TRACE_ROWS_SOME: model layers and query heads */
    const int        *row_layers;     /*   whose rows are stored, increasing, each one a */
    int               n_row_heads;    /*   recorded layer / head */
    const int        *row_heads;
} trace_options;

/* 1 when the trace keeps queries: some row is rebuilt, or record_queries. */
static inline int trace_options_queries(const trace_options *o)
{
    return o->rows != TRACE_ROWS_ALL || o->record_queries;
}

/* Parse "none", "deflate", "deflate:N" (1..9, default 1) or "lz4".  NULL means the
 * default, "deflate:1" (a plain h5py reads it).  KV_EUSAGE on anything else. */
int         trace_compression_parse(const char *text, trace_compression *out, kv_err *err);
/* "none", "deflate:3", "lz4" into buf; returns buf. */
const char *trace_compression_name(trace_compression c, char *buf, size_t size);
const char *trace_dtype_name(trace_dtype dtype);                   /* "f16", "f32" */
size_t      trace_dtype_size(trace_dtype dtype);                   /* 2, 4 bytes */

/* The GQA group of query head q: kv = q / (n_head / n_head_kv). */
static inline int trace_kv_head_of(const trace_header *h, int q)
{
    return q / (h->n_head / h->n_head_kv);
}

/* ---------------------------------------------------------------- writer --------- */

typedef struct trace_writer trace_writer;   /* opaque */

/* One step t: the token and everything query t produced.  All pointers are borrowed
 * for the duration of trace_writer_append_step; the writer copies what it keeps. */
typedef struct trace_step {
    int32_t      token;
    const char  *text;           /* UTF-8 piece; NULL is stored as "" */
    uint8_t      flags;          /* TRACE_TOKEN_* */
    uint8_t      phase;          /* TRACE_PHASE_* */
    int32_t      position;
    float        logprob_next;   /* NaN if not known yet: see trace_writer_set_next */
    float        entropy_next;   /* NaN if not known yet */
    const float *const *rows;    /* [Lr*Hr] the stored pairs' rows, (t+1,) each: row
                                    (layer i, head j of the stored lists) at rows[i*Hr+j];
                                    NULL when no row is stored */
    const uint16_t *const *rows_f16; /* or the same rows already in f16 (a trace of
                                    dtype f16 only): copied, not converted */
    const float *const *keys;    /* [L*K] key (li, ki) at keys[li*K + ki], (D,) */
    const float *const *values;  /* [L*K] likewise */
    const float *const *queries; /* [L*H] (D,) each; required iff trace_options_queries */
} trace_step;

/* Create `path` and start the writer thread.  Refuses an existing file unless
 * opt->force (KV_EEXIST); an unwritable path is KV_EIO naming the path and the
 * system's reason; an unavailable LZ4 filter is KV_EUNSUPPORTED naming the Debian
 * package hdf5-filter-plugin.  opt NULL = defaults (f16, deflate:1).  NULL on error. */
trace_writer *trace_writer_open(const char *path, const trace_header *hdr,
                                const trace_options *opt, kv_err *err);

/* Append step t = the number of steps appended so far.  Copies (and, for f16,
 * converts) the step into the current batch; a full batch goes to the writer thread
 * when the next step arrives, so the caller blocks only when the thread is a whole
 * batch behind.  A write error of an earlier batch is returned here (KV_EIO); after
 * an error every call fails and only trace_writer_abort remains useful. */
int trace_writer_append_step(trace_writer *w, const trace_step *step, kv_err *err);

/* Set the next-token log-probability and entropy of step t, which must be the last
 * step appended (they are known once token t+1 is sampled).  KV_ERANGE otherwise. */
int trace_writer_set_next(trace_writer *w, int64_t t, float logprob_next,
                          float entropy_next, kv_err *err);

int64_t trace_writer_steps(const trace_writer *w);   /* steps appended so far */

/* Write the last batch, mark the trace complete, close the file and free w, on every
 * path.  The last step's logprob_next is stored as given: NaN when no next token was
 * produced, the stop token's log-probability when generation ended on one.  Returns the first error of
 * the whole write (KV_EIO), in which case the file stays complete = 0 — and when no
 * batch reached the disk, NAME stays as it was, as after trace_writer_abort.
 * *on_disk (may be NULL) receives the steps the file holds. */
int trace_writer_close(trace_writer *w, int64_t *on_disk, kv_err *err);

/* The Ctrl-C / error path: write the steps already appended, leave complete = 0, close
 * the file and free w.  Returns the steps the file now holds (its /status/steps; 0 for
 * NULL).  Never fails: a write error here only means fewer steps on disk. */
int64_t trace_writer_abort(trace_writer *w);

/* ---------------------------------------------------------------- reader --------- */

typedef struct trace trace;   /* opaque */

/* Token arrays, each (steps,), borrowed from the trace. */
typedef struct trace_tokens {
    const int32_t *id;
    const char *const *text;
    const uint8_t *flags;
    const uint8_t *phase;
    const int32_t *position;
    const float   *logprob_next;
    const float   *entropy_next;
} trace_tokens;

/* Everything known about an open trace; borrowed, valid until trace_close. */
typedef struct trace_meta {
    trace_header  header;
    trace_options options;        /* dtypes, compression, rows and the stored lists,
                                     record_queries = queries present (force = 0) */
    int           n_kv_heads_rec; /* K */
    const int    *kv_heads;       /* (K,) */
    int           format_version;
    int64_t       steps;          /* T: steps whose rows are all on disk */
    int64_t       prompt_len;     /* the leading steps of phase prompt */
    int64_t       extent;         /* rows allocated in the datasets (>= steps) */
    int           complete;       /* 1: the writer finished; 0: truncated at `steps` */
} trace_meta;

/* Open and validate a trace: format name and version, every attribute, every
 * dataset's shape against the header.  KV_EFORMAT for a non-HDF5, damaged or foreign
 * file, KV_EUNSUPPORTED for a newer format version.  Reads the token arrays (O(T)).
 * An incomplete trace opens; check meta->complete.  NULL on error. */
trace *trace_open(const char *path, kv_err *err);
void   trace_close(trace *tr);                        /* NULL does nothing */

const trace_meta   *trace_get_meta(const trace *tr);
const trace_tokens *trace_get_tokens(const trace *tr);
const char         *trace_path(const trace *tr);

/* Index of model layer / query head / KV head in the recorded lists; -1 if absent. */
int trace_layer_index(const trace *tr, int model_layer);
int trace_head_index(const trace *tr, int head);
int trace_kv_index(const trace *tr, int kv_head);
/* Index in kv_heads of the KV head that recorded query head index hi uses. */
int trace_kv_index_of_head(const trace *tr, int hi);

/* 1 when the rows of (layer index li, head index hi) are stored, 0 when they are
 * rebuilt from queries and keys (trace/source_trace.c; trace_read_rows refuses them). */
int trace_rows_stored(const trace *tr, int li, int hi);

/* Read rows t0 .. t0+n-1 of (layer index li, head index hi) as float32 into out,
 * row-major n x width: out[i*width + j] = p(query t0+i, key j).  width >= t0+n (the
 * causal part of the block); columns from `steps` on are zero.  The replay's natural
 * call is t0 a multiple of TRACE_BATCH, n = TRACE_BATCH, width = t0+n: it reads whole
 * chunks of one head only.  KV_ERANGE for an index or range outside the trace;
 * KV_ENOTFOUND, naming the pair, for rows the trace does not store.
 * Not thread-safe: one thread reads, others compute. */
int trace_read_rows(trace *tr, int li, int hi, int64_t t0, int n, float *out,
                    size_t width, kv_err *err);

/* The same row block in two halves, so that only the first needs the HDF5 library
 * (serialised) and the second runs on any thread: trace_fetch_rows copies the stored
 * chunks into b (not thread-safe, like every reader call), trace_decode_rows
 * decompresses and converts them into out exactly as trace_read_rows would (touching
 * only b and out).  Blocks that do not start on a chunk (t0 % TRACE_BATCH != 0), and
 * filter pipelines other than the writer's, are read by trace_read_rows inside the
 * fetch.  One buffer per decoding thread; it grows to one block and is reused. */
typedef struct trace_chunk_buf trace_chunk_buf;   /* opaque */
trace_chunk_buf *trace_chunk_buf_new(void);       /* NULL when out of memory */
void             trace_chunk_buf_free(trace_chunk_buf *b);
int trace_fetch_rows(trace *tr, int li, int hi, int64_t t0, int n, trace_chunk_buf *b,
                     kv_err *err);
int trace_decode_rows(trace_chunk_buf *b, float *out, size_t width, kv_err *err);

/* The same row block as f16 chunks in the caller's buffer, never widened to float
 * (the replay gathers the few entries it keeps: metrics_gather_f16): trace_fetch_f16
 * fetches the stored chunks (unfiltered ones straight into dst; not thread-safe), then
 * trace_decode_f16 decompresses the others into dst (any thread) and sets col[c], for
 * c < ceil((t0+n) / TRACE_CHUNK_COLS), to the chunk of columns c·TRACE_CHUNK_COLS..:
 * entry (t0+r, i) is the f16 at byte 2·(r·TRACE_CHUNK_COLS + i % TRACE_CHUNK_COLS) of
 * col[i / TRACE_CHUNK_COLS].  dst holds cap bytes; TRACE_F16_CHUNK_BYTES per chunk are
 * needed.  trace_fetch_f16 returns 1, or 0 when the block has no such form (f32 rows,
 * a block off the chunk grid, an unknown pipeline, dst too small: use
 * trace_fetch_rows), or KV_E* as trace_fetch_rows; trace_decode_f16 returns 0 or
 * KV_EFORMAT (a damaged chunk).  Check the rows with trace_check_f16. */
#define TRACE_F16_CHUNK_BYTES ((size_t)TRACE_BATCH * TRACE_CHUNK_COLS * 2)
int trace_fetch_f16(trace *tr, int li, int hi, int64_t t0, int n, trace_chunk_buf *b,
                    unsigned char *dst, size_t cap, kv_err *err);
int trace_decode_f16(trace_chunk_buf *b, const unsigned char **col, kv_err *err);

/* Rows the trace does not store, rebuilt from its queries and keys (trace_rebuild.c),
 * in the same two halves: trace_fetch_inputs reads what rows t0..t0+n-1 of (li, hi)
 * need into b (the keys of the head's KV head that b does not hold yet, and the
 * block's queries; not thread-safe), trace_rebuild_rows computes them into out, as
 * trace_read_rows lays them out (any thread).  b holds the keys of one layer (K·T·D
 * floats) and keeps them while consecutive blocks of that layer advance. */
typedef struct trace_rebuild_buf trace_rebuild_buf;   /* opaque */
trace_rebuild_buf *trace_rebuild_buf_new(void);       /* NULL when out of memory */
void               trace_rebuild_buf_free(trace_rebuild_buf *b);
int trace_fetch_inputs(trace *tr, int li, int hi, int64_t t0, int n, trace_rebuild_buf *b,
                       kv_err *err);
int trace_rebuild_rows(trace_rebuild_buf *b, float *out, size_t width, kv_err *err);

/* Rows t0 .. t0+n-1 of (li, hi) whichever way the trace has them: stored rows read as
 * trace_read_rows does, others rebuilt (in a buffer the trace owns).  Not
 * thread-safe; a reader on several threads uses the halves above. */
int trace_rows(trace *tr, int li, int hi, int64_t t0, int n, float *out, size_t width,
               kv_err *err);

/* |Σ − 1| allowed for row t (t+1 entries) of a row of `dtype`: the f32 softmax's
 * (t+2)·2⁻²⁴, and for f16 the rounding of each entry, 2⁻¹¹ + (t+1)·2⁻²⁵.  Rebuilt rows
 * are f32. */
double trace_row_sum_tolerance(trace_dtype dtype, int64_t t);

/* A block of rows of (li, hi) as the readers hand it out: every entry finite and in
 * [0, 1 + tolerance], each row summing to 1 within trace_row_sum_tolerance.  0, or
 * KV_EFORMAT naming the first bad row (the trace is damaged: kvtrace verify lists
 * every bad row).  The row source checks every block it reads. */
int trace_check_rows(const trace *tr, int li, int hi, int64_t t0, int n, const float *rows,
                     size_t width, kv_err *err);

/* trace_check_rows for a block of f16 chunks (trace_decode_f16): the same checks, sums
 * and messages, read from the chunks.  Touches only them: any thread. */
int trace_check_f16(const trace *tr, int li, int hi, int64_t t0, int n,
                    const unsigned char *const *col, kv_err *err);

/* Keys and values of (layer index li, KV head index ki), steps t0 .. t0+n-1, as
 * float32 (n x D each).  keys or values may be NULL to skip one.  Not thread-safe. */
int trace_read_kv(trace *tr, int li, int ki, int64_t t0, int n, float *keys,
                  float *values, kv_err *err);

/* Queries of (li, hi), n x D; KV_ENOTFOUND when the trace has none. */
int trace_read_queries(trace *tr, int li, int hi, int64_t t0, int n, float *out,
                       kv_err *err);

/* Bytes: on disk (allocated storage) and raw (uncompressed, causal rows only). */
typedef struct trace_storage {
    uint64_t file_bytes;                  /* size of the file */
    uint64_t probs_stored, probs_raw;     /* /attn/probs */
    uint64_t kv_stored, kv_raw;           /* /kv/ * together */
    uint64_t probs_elements;              /* Lr*Hr*T*(T+1)/2 stored attention elements */
    uint64_t row_elements;                /* L*H*T*(T+1)/2: every row, stored or rebuilt */
} trace_storage;
int trace_get_storage(const trace *tr, trace_storage *out, kv_err *err);

/* Wait while a recording of `path` is in progress (its NAME.partial locked by the
 * writer), showing the steps it has on disk; then the file to read goes to out: `path`
 * once the writer renamed it, NAME.partial when the writer was killed
 * (trace_follow.c says why this waits instead of replaying a growing file).  0, or
 * KV_EIO when there is neither. */
int trace_follow(const char *path, char *out, size_t len, kv_err *err);

/* `kvtrace info` for a trace: model, T, shapes, dtype, bytes on disk vs raw,
 * compression ratio, complete or "truncated at step N".  0 or a KV_E* code. */
int trace_info_print(const char *path, FILE *out, kv_err *err);

/* kvtrace verify (trace/trace_verify.c): every row sums to 1 within the dtype's
 * tolerance and has zeros above the diagonal, the token arrays are consistent, and with
 * queries recorded every row equals softmax(q.k) recomputed; the summary goes to out.
 * 0 when every check passed on a complete trace; KV_EFORMAT when a check failed or the
 * trace is incomplete; trace_open's errors. */
int trace_verify(const char *path, FILE *out, kv_err *err);

#endif /* TRACE_FILE_H */
