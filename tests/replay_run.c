/* replay_run.c — see replay_run.h. */
#include "replay_run.h"

#include <stdlib.h>
#include <string.h>

void run_build(run *r, const char *line)
{
    memset(r, 0, sizeof *r);
    char *copy = strdup(line);
    int argc = 0;
    for (char *w = strtok(copy, " "); w && argc < 31; w = strtok(NULL, " "))
        r->words[argc++] = strdup(w);
    free(copy);
    const replay_command which = !strcmp(r->words[0], "sweep") ? SWEEP_CMD : REPLAY_CMD;
    r->rc = replay_args_parse(which, argc, r->words, &r->args, &r->err);
    if (r->rc == KV_OK)
        r->rc = replay_setup_build(&r->setup, &r->args.req, &r->err);
}

void run_words(run *r, const char *line) { run_words_observe(r, line, NULL, NULL); }

void run_words_observe(run *r, const char *line, replay_observe_fn observe, void *ctx)
{
    run_build(r, line);
    if (r->rc != KV_OK)
        return;
    r->setup.plan.observe = observe;
    r->setup.plan.observe_ctx = ctx;
    const replay_plan *p = &r->setup.plan;
    r->acc = calloc((size_t)p->n_configs * p->n_layers * p->n_heads, sizeof *r->acc);
    r->rc = replay_setup_compute(&r->setup, r->acc, &r->err);
}

void run_free(run *r)
{
    replay_setup_free(&r->setup);
    replay_args_free(&r->args);
    free(r->acc);
    for (int i = 0; r->words[i]; i++)
        free(r->words[i]);
}
