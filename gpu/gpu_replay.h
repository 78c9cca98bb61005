/*
 * gpu_replay.h — the replay engine's CUDA path (`kvsim replay --device cuda`): the
 * scored policies stepped on the GPU, one CUDA block per stream, over row blocks the
 * host reads and uploads (sim/replay_gpu.c drives it).
 *
 * What runs there is the CPU engine's step order (sim/replay.c invariant 1) for the
 * score x scope family with scores aas, mas, ltas, recency and scopes none, sinks,
 * window, std (h2o, mas, roco, tova, streaming, recency, scored), phase `stream`, any
 * stride up to 64, GQA reduction and scope of aggregation; metrics mass (with
 * mean_cache), overlap and output error.
 * Every floating-point operation is the CPU's, in the CPU's order (gather sums in four
 * interleaved partial sums, renormalisation, reduction, double score sums, the top-n
 * threshold by exact radix selection), so the numbers are the CPU engine's, bit for
 * bit; gpu/replay_rules.h holds the per-entry rules both sides share.
 */
#ifndef GPU_REPLAY_H
#define GPU_REPLAY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPU_REPLAY_MAX_MEMBERS 64   /* query heads one stream observes */
#define GPU_REPLAY_BLOCK       64   /* rows per upload: one trace chunk (TRACE_BATCH) */
#define GPU_REPLAY_MAX_STRIDE  64   /* entries evicted at once */

/* One stream: a policy instance over the rows of its member heads of one layer. */
typedef struct gpu_stream_desc {
    int layer;          /* plan layer index: which rows of the uploaded block */
    int n_members;      /* G */
    int members[GPU_REPLAY_MAX_MEMBERS];   /* plan head indices */
    int kv[GPU_REPLAY_MAX_MEMBERS];        /* recorded KV head of each member */
    int acc[GPU_REPLAY_MAX_MEMBERS];       /* accumulator index of each member */
    int score;          /* GPU_SCORE_* (replay_rules.h) */
    int gqa;            /* GPU_GQA_* */
    int budget;         /* B in force for this stream (layer schedules applied);
                           INT_MAX / 2 when unlimited */
    int stride;         /* s */
    int window;         /* r: protected newest entries, or the std scope's size */
    int sinks;          /* protected positions < sinks; 0 = none */
    int std_scope;      /* 1: the std scope (roco): `recent` newest + largest σ, r */
    int recent;         /* the std scope's forced newest */
    int first;          /* first step measured */
} gpu_stream_desc;

/* Per member head: what sim/replay.h's replay_acc holds for mass, overlap and output
 * error. */
typedef struct gpu_acc {
    long   steps, n_overlap, n_output;
    double cache, mass, overlap, output_error;
} gpu_acc;

#define GPU_REPLAY_MAX_DIM 256   /* head_dim for output error */

/* What the kernel measures besides mass: overlap, and output error from values of
 * head_dim `dim` over `n_kv` recorded KV heads (dim 0: none). */
typedef struct gpu_metrics {
    int overlap;
    int dim, n_kv;
} gpu_metrics;

typedef struct gpu_replay gpu_replay;   /* opaque */

/* Allocate the device state for `n_streams` streams over T steps, rows of n_layers x
 * n_heads plan heads, and `n_acc` accumulators (zeroed), measuring `m`.  NULL with
 * why[len] on failure (no device, out of memory, built without CUDA). */
gpu_replay *gpu_replay_new(const gpu_stream_desc *streams, int n_streams, int T,
                           int n_layers, int n_heads, int n_acc, const gpu_metrics *m,
                           char *why, size_t len);

/* The host buffers to fill before each gpu_replay_block, page-locked so the uploads
 * are one DMA each, owned by g: rows (n_layers, n_heads, 64, width) float32 for width
 * up to T; values (n_layers, n_kv, 64, dim) of the block's steps (NULL without output
 * error). */
float *gpu_replay_rows(gpu_replay *g);
float *gpu_replay_values(gpu_replay *g);

/* Step every stream through rows t0..t0+n-1 (n <= 64) laid out in gpu_replay_rows()
 * with row stride `width` (= t0 + n).  0, or -1 with why. */
int gpu_replay_block(gpu_replay *g, int t0, int n, int width, char *why, size_t len);

/* Copy the accumulators back: out holds n_acc. */
int gpu_replay_results(gpu_replay *g, gpu_acc *out, char *why, size_t len);

void gpu_replay_free(gpu_replay *g);

#ifdef __cplusplus
}
#endif

#endif /* GPU_REPLAY_H */
