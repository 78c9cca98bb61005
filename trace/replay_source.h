/*
 * replay_source.h — where the replay engine gets its rows: a small interface with
 * one backend per file.
 *
 *   trace/source_trace.c   an HDF5 trace written by `kvtrace record` (trace_file.h)
 *   trace/source_synth.c   deterministic synthetic rows, for tests and benchmarks
 *
 * A source describes the recorded layers and heads, the GQA map, the tokens' policy
 * metadata, and hands out blocks of consecutive full-cache rows of one (layer, query
 * head) as float32, plus keys and values of one (layer, KV head).  Indices are into
 * the RECORDED lists (li < n_layers, hi < n_heads, ki < n_kv); the model's own layer
 * and head numbers are in layers[] and heads[].
 *
 * Invariants:
 *   (1) Rows t < T exist and each sums to 1 within the recording dtype's tolerance.
 *   (2) Reads may run concurrently from several OpenMP threads: a backend whose
 *       library is not thread-safe serialises its own calls (source_trace.c holds a
 *       lock only to fetch stored bytes, and decodes outside it).
 *   (3) Everything a source returns is borrowed until replay_source_close().
 */
#ifndef REPLAY_SOURCE_H
#define REPLAY_SOURCE_H

#include <stddef.h>

#include "kv_err.h"
#include "policy.h"

typedef struct replay_source replay_source;

typedef struct replay_source_ops {
    /* Rows t0..t0+n-1 of (li, hi) into out, n x width row-major, width >= t0 + n;
     * columns past each row's diagonal are zero.  0 or a KV_E* code. */
    int  (*read_rows)(replay_source *s, int li, int hi, int t0, int n, float *out,
                      size_t width, kv_err *err);
    /* Keys and values of (li, ki), steps t0..t0+n-1, n x head_dim each; either
     * pointer may be NULL.  Only called when head_dim > 0. */
    int  (*read_kv)(replay_source *s, int li, int ki, int t0, int n, float *keys,
                    float *values, kv_err *err);
    void (*close)(replay_source *s);
    /* Optional: rows t0..t0+n-1 of (li, hi) as checked f16 chunks in buf (cap bytes),
     * col[c] set for c < ceil((t0+n) / REPLAY_F16_COLS) (replay_block); 1 done, 0 no
     * such form (read_rows is used instead), or a KV_E* code. */
    int  (*f16_rows)(replay_source *s, int li, int hi, int t0, int n, void *buf, size_t cap,
                     const unsigned char **col, kv_err *err);
    /* Optional (NULL: none): post-RoPE queries of (li, hi), steps t0..t0+n-1, n x
     * head_dim, for policies that read them (expected-attention). */
    int  (*read_queries)(replay_source *s, int li, int hi, int t0, int n, float *out,
                         kv_err *err);
} replay_source_ops;

struct replay_source {
    const replay_source_ops *ops;
    const char         *name;        /* for the CSV `trace` column (a basename) */
    const char         *path;        /* the file, for the JSON's trace_sha256; NULL
                                        for sources that are not a file */
    int                 T;           /* steps whose rows are all available */
    int                 complete;    /* 0: the recording stopped early at T */
    int                 n_layers;    /* L recorded */
    int                 n_heads;     /* H recorded query heads */
    int                 n_kv;        /* K recorded KV heads */
    const int          *layers;      /* (L,) model layer numbers */
    const int          *heads;       /* (H,) model query head numbers */
    const int          *kv_of_head;  /* (H,) recorded KV index of each query head */
    int                 model_layers;/* layers in the model, for per-layer schedules */
    const int          *window;      /* (L,) W > 0: a sliding-window layer whose query t
                                        sees keys t-W+1..t only (rows are zero before);
                                        0: every earlier key; NULL: all 0 */
    int                 head_dim;    /* D of keys and values; 0 = none recorded */
    int                 has_values;  /* 1: read_kv delivers values (output error) */
    int                 rows_rebuilt;/* 1: rows are rebuilt from queries and keys, not
                                        stored (a read costs ~D more: sim/many.c) */
    int                 prompt_len;  /* tokens of phase prompt, a prefix of 0..T-1 */
    const policy_entry *tokens;      /* (T,) position, token id, flags */
    void               *impl;        /* the backend's state */
    int                 has_queries; /* 1: read_queries delivers queries */
    const float        *rope_freq;   /* (L, head_dim/2) each recorded layer's RoPE
                                        frequencies, or NULL when the trace does not
                                        determine them (policy_rope) */
    int                 rope_halves; /* pairs (i, i + D/2) (NEOX), else (2i, 2i+1) */
};

/* Open TRACE as a source: a trace file, or `synth:T=512,layers=2,heads=6,kv=2,dim=16,
 * seed=1` (optionally prompt=N, complete=0, window=W: the even layers slide over W
 * keys) for deterministic synthetic rows (tests, benchmarks, trying a command without
 * a model).  NULL and err on failure. */
replay_source *replay_source_open(const char *spec, kv_err *err);

/* Open a trace file as a source.  NULL and err on failure (trace_open's messages). */
replay_source *replay_source_open_trace(const char *path, kv_err *err);

/* Synthetic rows: softmax of seeded pseudo-random logits with a few structures real
 * attention has (a sink at position 0, a recency bias, heavy-hitter tokens), and
 * seeded keys and values.  Same parameters, same numbers, on any machine. */
typedef struct replay_synth_spec {
    int           T, n_layers, n_heads, n_kv, head_dim;
    int           prompt_len;    /* 0: all prompt */
    int           complete;      /* 0: pretend the recording stopped at T */
    unsigned long seed;
    int           window;        /* W > 0: layers 0, 2, 4, ... slide over W keys */
} replay_synth_spec;

replay_source *replay_source_synth(const replay_synth_spec *spec, kv_err *err);

/* Close any source.  NULL does nothing. */
void replay_source_close(replay_source *s);

/* A block of rows as replay_source_rows hands it out, in the caller's buffer: floats
 * (f32 != NULL: entry (t0+r, i) = f32[r·width + i]), or f16 as the trace stores them,
 * in chunks of REPLAY_F16_COLS columns (entry (t0+r, i) = the f16 at
 * byte 2·(r·REPLAY_F16_COLS + i % REPLAY_F16_COLS) of col[i / REPLAY_F16_COLS], at any
 * alignment: metrics_gather_f16's layout).  Either way rows are checked (invariant 1). */
#define REPLAY_F16_COLS 256   /* = TRACE_CHUNK_COLS = METRICS_F16_COLS */
typedef struct replay_block {
    const float          *f32;
    size_t                width;
    const unsigned char **col;   /* the caller's, room for ceil(T / REPLAY_F16_COLS) */
} replay_block;

/* Rows t0..t0+n-1 of (li, hi) into buf (cap bytes): as f16 chunks when the source
 * has them (an f16 trace: nothing widened to float), else read_rows' n x width
 * floats.  0 or a KV_E* code. */
int replay_source_rows(replay_source *s, int li, int hi, int t0, int n, void *buf,
                       size_t cap, size_t width, replay_block *out, kv_err *err);

/* s->ops->read_rows / read_kv: callers use these, never the ops directly. */
int replay_source_read_rows(replay_source *s, int li, int hi, int t0, int n, float *out,
                            size_t width, kv_err *err);
int replay_source_read_kv(replay_source *s, int li, int ki, int t0, int n, float *keys,
                          float *values, kv_err *err);
/* KV_ENOTFOUND when the source has no queries. */
int replay_source_read_queries(replay_source *s, int li, int hi, int t0, int n, float *out,
                               kv_err *err);

#endif /* REPLAY_SOURCE_H */
