/*
 * bench.h — the benchmark table printed by `make bench`.
 *
 * Benchmarks measure; they never assert.  Each one prints rows of
 * (benchmark, configuration, threads, value, unit) so later benchmarks can be read
 * as ratios of the machine's physical figures measured in the same run.
 */
#ifndef BENCH_H
#define BENCH_H

#include "model.h"
#include "replay_setup.h"

double bench_now(void);   /* monotonic seconds */
void   bench_row(const char *name, const char *config, int threads, double value,
                 const char *unit);

/* machine figures (bench_machine.c); bench_gemm returns its best GFLOP/s, the sgemm
 * yardstick later rows are measured against */
double bench_gemm(int threads);
void bench_memory(int threads);
void bench_disk(int threads, const char *dir);

/* the model runtime (bench_model.c): prefill, decode, peak RSS for the GGUF at path;
 * tokens/s of one prefill of T tokens, and of decode after a prefill to `context` */
void   bench_model(int threads, const char *path);
double bench_model_prefill(model *m, int T);
double bench_model_decode(model *m, int context);

/* the same model beside llama.cpp (bench_llama.c): decode, prefill and peak RSS as
 * ratios, or "not measured" rows when no llama.cpp build is found */
void bench_llama(int threads, const char *path, model *m);

/* the recorder (bench_record.c): record time vs a plain run, bytes per element and
 * write MB/s for each compression, at 512 and 2048 tokens */
void bench_record(int threads, const char *model);

/* the replay engine (bench_replay.c) on $KV_BENCH_TRACE / $KV_BENCH_TRACE_Z; quick:
 * single replays only */
void bench_replay(int quick);

/* row-free traces (bench_rebuild.c): rebuilt vs stored replay on $KV_BENCH_TRACE_FREE,
 * the QK^T part against the sgemm yardstick, bytes per token, and 8K tokens of
 * $KV_BENCH_LONG recorded and replayed */
void bench_rebuild(const char *model, double yardstick);

/* Seconds of one in-process replay of `req` on `trace` (the engine `kvsim sweep` runs);
 * *elements = attention probabilities replayed (L x H x T(T+1)/2).  Negative on
 * failure.  (bench_replay.c) */
double bench_replay_seconds(replay_request req, const char *trace, double *elements);

/* the shared-machine rows (bench_shared.c): a model run and a replay beside two
 * busy-loop processes, as ratios of the unloaded figures */
void bench_shared(const char *model);

#endif
