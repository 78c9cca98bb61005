/*
 * replay_run.h — tests' shortcut through the kvsim pipeline: command-line words ->
 * replay_args (apps/replay_args.h) -> replay_setup -> replay_run, as `kvsim replay`
 * and `sweep` do it.
 */
#ifndef REPLAY_RUN_H
#define REPLAY_RUN_H

#include "replay.h"
#include "replay_args.h"

/* A plan built from command-line words, and its sums.  The argv strings are copies
 * because the parser keeps pointers into them. */
typedef struct run {
    char        *words[32];
    replay_args  args;
    replay_setup setup;
    replay_acc  *acc;
    kv_err       err;
    int          rc;
} run;

/* Parse `line` ("replay TRACE ..." or "sweep TRACE ..."), build and run it; r->rc and
 * r->err say how it went. */
void run_words(run *r, const char *line);
/* The same, with plan.observe = observe (every C_t to observe(ctx, ...)). */
void run_words_observe(run *r, const char *line, replay_observe_fn observe, void *ctx);
/* Only parse and build (r->acc stays NULL): a test that sets plan fields (an observer)
 * and computes itself. */
void run_build(run *r, const char *line);
void run_free(run *r);

#endif
