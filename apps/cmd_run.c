/*
 * cmd_run.c — `kvtrace run MODEL PROMPT [options]`: tokenize the prompt (optionally
 * as a chat message), run it through the model in one batch, then sample tokens one at
 * a time until a stop token or --max-new-tokens, streaming their bytes to stdout.
 * Speeds go to stderr: prompt tokens/s (the batched prefill) and generated tokens/s.
 */
#include "commands.h"

#include "opts.h"
#include "session.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

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

static int run(void *ctx, kv_err *err)
{
    const session_options *o = ctx;
    session s = {0};
    int rc = session_check(o, err);
    if (rc == KV_OK)
        rc = session_open(&s, o, err);
    if (rc == KV_OK)
        rc = generate(&s, o, err);
    session_close(&s);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    session_options o = session_options_default();
    const opts_command cmd = {
        .prog = "kvtrace run",
        .usage = "kvtrace run MODEL.gguf PROMPT [options]",
        .about = "Generate a continuation of PROMPT with the full KV cache and stream it to\n"
                 "standard output.  Prompt and generation speeds are reported on standard "
                 "error.",
        .groups = {{"options", session_options_rows, &o}},
        .positional = {&o.model, &o.prompt},
        .footer = "exit status: 0 success, 1 unreadable model or a prompt longer than the "
                  "context,\n2 bad usage\nexample:\n  kvtrace run "
                  "models/SmolLM2-135M-Instruct.Q4_1.gguf \"What is 2+2?\" --chat\n",
    };
    return opts_main(&cmd, argc, argv, run, &o);
}
