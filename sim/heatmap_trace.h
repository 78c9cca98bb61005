/*
 * heatmap_trace.h — the trace side of `kvsim plot heatmap TRACE` (plots/plot_heatmap.h).
 *
 * Reads the rows t in [t_lo, t_hi) of one (layer, query head) of a trace and writes
 * them as heatmap cells (t, key, p_t(key)) for keys 0..t.  With --policy P --budget B
 * the replay engine (sim/replay.h) replays P over the head's whole stream (its KV
 * group at kv-head scope, the layer at layer scope: the same kept sets `kvsim replay`
 * measures) and each cell also says whether the key was in C_t, the entries query t
 * attended.  Memory: one layer job of the engine (docs/METRICS.md) plus O(T).
 */
#ifndef HEATMAP_TRACE_H
#define HEATMAP_TRACE_H

#include "plot_heatmap.h"

/* Fill w from req.  0, or a KV_E* code with err naming the trace, the layer
 * or head not recorded, the range past the trace's end, or the policy's error. */
int heatmap_from_trace(const plot_heatmap_request *req, plot_heatmap_writer *w, kv_err *err);

#endif /* HEATMAP_TRACE_H */
