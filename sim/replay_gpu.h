/*
 * replay_gpu.h — the replay engine on a CUDA device (sim/replay_gpu.c, gpu/gpu_replay.cu).
 */
#ifndef REPLAY_GPU_H
#define REPLAY_GPU_H

#include "gpu_replay.h"
#include "replay.h"

/* replay_run's contract on the GPU, for the configurations the kernel has rules for
 * (full and the score x scope family with scores aas, mas, ltas, recency and scopes
 * sinks, window and std, phase stream, stride <= 64) and the metrics mass, overlap and
 * output error:
 * the same numbers, bit for bit.  KV_EUNSUPPORTED naming what to change otherwise,
 * and when there is no device or no CUDA in this build. */
int replay_run_gpu(replay_source *src, const replay_plan *plan, replay_acc *acc, kv_err *err);

/* The streams replay_run_gpu steps, described for the kernel (policy_layer_new's streams in order,
 * budgets and windows as the CPU policies resolve them); no device needed.  *out is
 * malloc'ed (the caller frees it), *n its length.  0, or KV_EUNSUPPORTED naming what
 * the GPU cannot run. */
int replay_gpu_streams(const replay_source *src, const replay_plan *plan,
                       gpu_stream_desc **out, int *n, kv_err *err);

#endif /* REPLAY_GPU_H */
