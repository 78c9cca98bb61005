/*
 * std_run.h — `kvsim std`: attention-std trajectories, sigma_i(t) = std{p_tau(i) :
 * i <= tau <= t} from the full-cache rows against the age t - i, for every (layer,
 * head) of a replay setup's plan (analysis/stdtraj.h does the arithmetic).
 */
#ifndef STD_RUN_H
#define STD_RUN_H

#include "kv_err.h"
#include "replay_setup.h"

/* Compute and write: per layer and head, the mean and the 10/50/90% quantiles of
 * sigma over log-binned ages, and per-layer lines (head = all), into csv; the
 * trajectories of 8 sampled tokens into tokens_csv.  Files are written atomically.
 * 0 or a KV_E* code with err. */
int std_run(const replay_setup *s, const char *csv, const char *tokens_csv, kv_err *err);

/* The same over several traces, one after the other in this process: both files get a
 * leading `trace` column (the trace's name) and hold every trace's lines in order;
 * committed only when every trace succeeded (a trace that fails is named in err).
 * `req` is the request of each, with its trace replaced. */
int std_run_many(const replay_request *req, const char *const *paths, int n_paths,
                 const char *csv, const char *tokens_csv, kv_err *err);

#endif /* STD_RUN_H */
