/*
 * many.h — one replay request over many traces, in one process or spread over the
 * ranks of an MPI job (common/par.h): `kvsim sweep|replay|scope TRACE... | --traces
 * FILE`, and the same under `mpirun bin/kvsim-mpi` (docs/SCALE.md).
 *
 * Work is cut into units (trace, layer, KV head): the query heads of one KV head in one
 * layer, whose streams and sums nothing else touches (policies/policy_layer.c lays
 * streams out per KV head or per query head).  When a configuration's streams span a
 * layer (scope_of = layer), that trace's units are whole layers.  Each unit costs
 * about T² x (its query heads) row elements, x (1 + D/8) when the trace's rows are
 * rebuilt from queries and keys (a D-long dot product per element, 8 lanes wide).
 *
 * The schedule is static and the same on every rank: units sorted by cost (largest
 * first, ties in (trace, layer, KV head) order) each go to the least loaded rank
 * (the lowest on a tie).  A rank opens a trace to read its shape, then reads only its
 * own units' rows; units run on OpenMP threads (replay_run_layer).  Each trace's sums
 * are then reduced to rank 0 (every sum is computed by exactly one rank: the result is
 * bit for bit the single-process one, for any rank count), which writes the CSV and
 * JSON by the output rule (common/out.h): one file, committed only when every trace
 * and unit succeeded.
 *
 * Faults: a trace that cannot be opened is named (all of them, by rank 0) before any
 * replay, and nothing is written; a unit that fails names its trace and layer, and
 * nothing is written either.  With a journal (--resume FILE, common/journal.h), every
 * finished unit is appended to it and units already in it are restored instead of
 * replayed (by rank 0), so a rerun of an interrupted job finishes it with the same
 * bytes.  A unit's journal key covers the trace's name and T, the plan's layers,
 * heads and metrics, and every configuration's CSV labels, so a changed request
 * never restores stale sums.
 */
#ifndef MANY_H
#define MANY_H

#include "kv_err.h"
#include "replay_setup.h"

typedef struct many_unit {
    int    trace;   /* index into the traces */
    int    layer;   /* plan layer index */
    int    kv;      /* recorded KV head index; -1: every head of the layer */
    int    rank;    /* who replays it; -1: restored from the journal */
    double cost;
} many_unit;

typedef struct many_trace {
    const char *path;
    int         n_configs, n_layers, n_heads;   /* the plan's shape: acc's */
    int         T, n_kv, head_dim, rows_rebuilt, layer_streams;
    int        *kv_of;      /* (n_heads,) recorded KV index of each plan head */
    char       *signature;  /* what the journal keys cover (see above) */
    replay_acc *acc;        /* (n_configs x n_layers x n_heads), whole on rank 0 */
} many_trace;

typedef struct many_run {
    many_trace *traces;
    int         n_traces;
    many_unit  *units;
    int         n_units;
    int         rank, size;
    int         restored;               /* units restored from the journal */
    int         mine;                   /* units this rank replays */
    int         failed_here;            /* one of this rank's own units failed */
    double      cost_all, cost_mine;    /* of the units to replay */
} many_run;

/* Open every trace, deal out the units, replay this rank's, journal them, and reduce
 * the sums to rank 0.  Collective; returns the same status on every rank: 0, or a
 * KV_E* code with err (rank 0 has named each trace that failed on stderr). */
int  many_run_all(many_run *m, const replay_request *req, const char *const *paths,
                  int n_paths, const char *journal_path, kv_err *err);

/* Rank 0: the CSV (csv; "-" stdout) of every trace, one header, lines in trace order
 * (scope: scope_report's lines and spreads), and the JSON summary (json, may be NULL):
 * each trace's overall lines and, per requested configuration, the mean across traces
 * of each metric with its 95% bootstrap interval (analysis/bootstrap.h).  One trace
 * gets the one-trace files (results.h, scope_report.h) instead.  Other ranks return 0.
 * 0 or a KV_E* code; nothing is left half-written. */
int  many_write(const many_run *m, const replay_request *req, const char *command,
                int scope, const char *csv, const char *json, kv_err *err);

void many_free(many_run *m);

#endif /* MANY_H */
