/*
 * replay.h — the replay engine: drive eviction policies over recorded attention rows
 * and measure each step against the full cache.
 *
 * One call, replay_run(), replays any number of configurations in ONE pass over the
 * rows: each row block is read once and fed to every configuration (that is all a
 * sweep is; a replay is a sweep of one).  The metrics are docs/METRICS.md's, computed
 * by analysis/metrics.h, accumulated per (configuration, layer, query head) over the
 * steps t >= B (all steps when B >= T), in step order.
 *
 * Work is split by layer: a layer job reads its heads' row blocks (64 rows each) and
 * keys/values, and steps every stream of every configuration of that layer.  Jobs run
 * on OpenMP threads; each writes only its own accumulators, so the numbers do not
 * depend on the thread count.  Peak memory: docs/METRICS.md.
 */
#ifndef REPLAY_H
#define REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"
#include "policy.h"
#include "replay_source.h"

#define REPLAY_BLOCK 64   /* rows per read: one trace chunk (TRACE_BATCH) */

enum replay_metric {      /* plan.metrics: which metrics to compute */
    REPLAY_MASS        = 1 << 0,   /* and mean_cache: always on */
    REPLAY_OVERLAP     = 1 << 1,
    REPLAY_CONSISTENCY = 1 << 2,
    REPLAY_OUTPUT      = 1 << 3,
    REPLAY_ORACLE_GAP  = 1 << 4,   /* replays the oracle beside: a pre-pass, one config */
    REPLAY_ALL         = 0x1f,
};

/* One configuration: a policy and how it is driven, plus the labels of its CSV lines. */
typedef struct replay_config {
    policy_config   policy;         /* budget resolved against T, prompt_len set */
    policy_scope_of scope_of;       /* resolved: kv-head, query-head or layer */
    policy_score    score;          /* resolved; consistency needs aas, mas or ltas */
    char            score_name[16]; /* CSV `score` ("" for full) */
    char            scope_name[32]; /* CSV `scope` ("window:12" in `kvsim scope`) */
    char            budget_arg[32]; /* as the user wrote it */
    int             oracle;         /* index of the oracle config at equal budget, -1 */
    int             window_used;    /* the policy reads its window (scope_name shows it) */
} replay_config;

/* Fill c's derived fields from c->policy (its name, parameters and resolved budget):
 * the CSV labels score_name and scope_name (the parameters in force, "" when the
 * policy has none), scope_of, score, and the phase and stride the policy runs with
 * (snapkv: oneshot; pace: its largest block), by building the policy once.  0, or
 * KV_EUSAGE naming what is wrong with the configuration. */
int replay_config_finish(replay_config *c, kv_err *err);

/* What query t of one member head attended: C_t (before the step's eviction) and the
 * full-cache row.  Everything is borrowed for the duration of the call. */
typedef struct replay_attended {
    int                 config;   /* configuration index */
    int                 layer;    /* model layer */
    int                 head;     /* model query head */
    int                 t;        /* step */
    const float        *p;        /* (t + 1,) the full-cache row p_t */
    const policy_entry *kept;     /* (n,) C_t, slot order = position order */
    int                 n;
    const policy       *policy;   /* the stream's policy (policy_describe), borrowed */
} replay_attended;

/* Called for every (stream member, step), from the thread replaying that layer:
 * calls for different layers may run concurrently, those of one layer in step order. */
typedef void (*replay_observe_fn)(void *ctx, const replay_attended *a);

typedef struct replay_plan {
    const replay_config *configs;   /* (n_configs,) */
    int                  n_configs;
    const int           *layers;    /* (n_layers,) recorded layer indices, increasing */
    int                  n_layers;
    const int           *heads;     /* (n_heads,) recorded query head indices, increasing */
    int                  n_heads;
    unsigned             metrics;   /* REPLAY_* bits */
    replay_observe_fn    observe;   /* optional: who wants each C_t (the heatmap) */
    void                *observe_ctx;
    int                  progress;  /* 1: layers done on stderr (a terminal only) */
    const float *const  *out_proj;  /* (out_layers,) each model layer's W_o, out_rows x
                                       out_cols (policy_shape.out_proj), or NULL */
    int                  out_layers, out_rows, out_cols;
} replay_plan;

/* The sums behind one CSV line: one (configuration, layer, query head). */
typedef struct replay_acc {
    long   steps;             /* steps averaged */
    double cache;             /* Σ |C_t| */
    double mass, overlap;     /* Σ over the steps */
    double consistency;       /* Σ over n_consistency steps */
    double output_error;      /* Σ over n_output steps */
    long   n_overlap, n_consistency, n_output;
} replay_acc;

/* The accumulator of (config c, plan layer l, plan head h) in an array laid out
 * [n_configs][n_layers][n_heads]. */
static inline replay_acc *replay_acc_at(replay_acc *acc, const replay_plan *plan, int c,
                                        int l, int h)
{
    return acc + ((size_t)c * plan->n_layers + l) * plan->n_heads + h;
}

/* The policy_shape of plan layer l (policy.h): the plan's heads with their recorded
 * indices as head ids and their recorded KV heads, so that the CPU engine and the GPU
 * path build the same streams with policy_layer_new.  head_id and kv_of hold
 * plan->n_heads ints; the shape points into them. */
void replay_shape_of(const replay_source *src, const replay_plan *plan, int l, int *head_id,
                     int *kv_of, policy_shape *out);

/* The first step averaged for budget B over T steps: B, or 0 when B >= T. */
static inline int replay_first_step(int B, int T) { return B > 0 && B < T ? B : 0; }

/* Replay every configuration of `plan` over `src` and fill acc (zeroed first;
 * n_configs x n_layers x n_heads).  Uses the current OpenMP thread count.
 * 0, or a KV_E* code with err (the error of the lowest failing layer). */
int replay_run(replay_source *src, const replay_plan *plan, replay_acc *acc, kv_err *err);

/* One layer job of replay_run, plan layer l, on the calling thread, adding into acc
 * (zeroed by the caller): for callers that deal out work units themselves (sim/many.h).
 * Calls for different layers or plans may run on concurrent threads. */
int replay_run_layer(replay_source *src, const replay_plan *plan, int l, replay_acc *acc,
                     kv_err *err);

#endif /* REPLAY_H */
