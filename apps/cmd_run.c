/*
 * cmd_run.c — `kvtrace run MODEL PROMPT [options]`: tokenize the prompt (optionally
 * as a chat message), run it through the model in one batch, then sample tokens one at
 * a time until a stop token or --max-new-tokens, streaming their bytes to stdout.
 * Speeds go to stderr: prompt tokens/s (the batched prefill) and generated tokens/s.
 */
#include "cmd_run.h"

#include "session.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kvtrace run MODEL.gguf PROMPT [--chat] [--max-new-tokens N] [--temperature T]\n"
    "                   [--top-k K] [--top-p P] [--seed S] [--threads N]\n";

static void print_help(void)
{
    printf("%s\n"
           "Generate a continuation of PROMPT with the full KV cache and stream it to\n"
           "standard output.  Prompt and generation speeds are reported on standard error.\n\n"
           "options:\n", usage);
    session_print_options(stdout);
    printf("  -h, --help          this help\n\n"
           "exit status: 0 success, 1 unreadable model or a prompt longer than the context,\n"
           "2 bad usage\n"
           "example:\n  kvtrace run models/SmolLM2-135M-Instruct.Q4_1.gguf \"What is 2+2?\" --chat\n");
}

/* 0: run; 2: usage error (reported); -1: help printed. */
static int parse_args(int argc, char **argv, session_options *o)
{
    *o = session_options_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = 0, rc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help();
            return -1;
        }
        if (a[0] == '-' && a[1]) {
            rc = session_parse_option(o, "kvtrace run", a, i + 1 < argc ? argv[i + 1] : NULL,
                                      &used);
            if (rc == 1)
                fprintf(stderr, "kvtrace run: unknown option '%s'\n%s", a, usage);
            if (rc)
                return 2;
            i += used;
        } else if (session_positional(o, "kvtrace run", a)) {
            return 2;
        }
    }
    return session_check(o, "kvtrace run", usage);
}

/* Prefill, then sample and stream until a stop token, max_new or the context's end. */
static int generate(session *s, const session_options *o, kv_err *err)
{
    const model_config *c = model_config_of(s->model);
    int n_prompt = (int)s->prompt.n, n_new = 0;
    kv_cache *cache = model_cache_new(s->model, n_prompt + o->max_new, err);
    float *logits = malloc((size_t)c->n_vocab * sizeof *logits);
    if (!cache || !logits) {
        kv_cache_free(cache);
        free(logits);
        return cache ? kv_errorf(err, KV_ENOMEM, "out of memory for the logits") : err->code;
    }
    double t0 = omp_get_wtime();
    int rc = model_forward(s->model, cache, s->prompt.ids, n_prompt, MODEL_LOGITS_LAST, logits,
                           NULL, err);
    double t1 = omp_get_wtime();
    while (!rc && n_new < o->max_new) {
        int32_t next = sampler_sample(s->sampler, logits);
        if (session_is_stop(s, next))
            break;
        size_t len;
        const char *piece = tokenizer_piece(s->tok, next, &len);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        n_new++;
        if (kv_cache_next_pos(cache) == c->n_ctx)
            break;
        rc = model_forward(s->model, cache, &next, 1, MODEL_LOGITS_LAST, logits, NULL, err);
    }
    double t2 = omp_get_wtime();
    printf("\n");
    fprintf(stderr, "prompt: %d tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s "
            "(%d threads)\n", n_prompt, n_prompt / (t1 - t0), n_new,
            n_new ? n_new / (t2 - t1) : 0.0, omp_get_max_threads());
    kv_cache_free(cache);
    free(logits);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    session_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    kv_err err = {0};
    session s;
    rc = session_open(&s, &o, &err);
    if (!rc)
        rc = generate(&s, &o, &err);
    if (rc)
        fprintf(stderr, "kvtrace run: %s\n", err.msg);
    session_close(&s);
    return rc ? kv_err_exit_status(rc) : 0;
}
