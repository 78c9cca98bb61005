/*
 * cmd_run.c — `kvtrace run MODEL PROMPT [options]`: tokenize the prompt (optionally
 * as a chat message), run it through the model in one batch, then sample tokens one at
 * a time until a stop token or --max-new-tokens, streaming their bytes to stdout.
 * Speeds go to stderr: prompt tokens/s (the batched prefill) and generated tokens/s.
 */
#include "cmd_run.h"

#include "gguf.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
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
           "options:\n"
           "  --chat              wrap PROMPT as one user message in the chat template\n"
           "  --max-new-tokens N  stop after N new tokens (default 256); generation also\n"
           "                      stops at an end-of-sequence token or the context's end\n"
           "  --temperature T     0 = greedy (default); otherwise sample at temperature T\n"
           "  --top-k K           sample among the K most likely tokens (default 0: all)\n"
           "  --top-p P           sample within the nucleus of mass P (default 1)\n"
           "  --seed S            seed of the sampler (default 0); runs repeat exactly\n"
           "  --threads N         CPU threads (default: OpenMP's, usually every core)\n"
           "  -h, --help          this help\n\n"
           "exit status: 0 success, 1 unreadable model or a prompt longer than the context,\n"
           "2 bad usage\n"
           "example:\n  kvtrace run models/SmolLM2-135M-Instruct.Q4_1.gguf \"What is 2+2?\" --chat\n",
           usage);
}

typedef struct options {
    const char    *model, *prompt;
    bool           chat;
    int            max_new, threads;
    sampler_config sampling;
} options;

/* Parse a number option's value; false (after a message) if it is not one. */
static bool number(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    *out = v ? strtod(v, &end) : 0.0;
    if (v && *v && !*end && *out >= lo && *out <= hi)
        return true;
    fprintf(stderr, "kvtrace run: %s expects a number in [%g, %g], got '%s'\n%s", opt, lo, hi,
            v ? v : "", usage);
    return false;
}

/* The options that take a number, with their ranges. */
typedef enum { OPT_MAX_NEW, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P, OPT_SEED, OPT_THREADS } opt_id;
static const struct numeric_option {
    const char *name;
    opt_id      id;
    double      lo, hi;
} numeric_options[] = {
    {"--max-new-tokens", OPT_MAX_NEW, 0, 1 << 30},  {"--temperature", OPT_TEMPERATURE, 0, 1e6},
    {"--top-k", OPT_TOP_K, 0, 1 << 30},             {"--top-p", OPT_TOP_P, 1e-9, 1},
    {"--seed", OPT_SEED, 0, 1.8e19},                {"--threads", OPT_THREADS, 1, 1024},
};

static void set_numeric(options *o, opt_id id, double x)
{
    switch (id) {
    case OPT_MAX_NEW:     o->max_new = (int)x; break;
    case OPT_TEMPERATURE: o->sampling.temperature = (float)x; break;
    case OPT_TOP_K:       o->sampling.top_k = (int)x; break;
    case OPT_TOP_P:       o->sampling.top_p = (float)x; break;
    case OPT_SEED:        o->sampling.seed = (uint64_t)x; break;
    case OPT_THREADS:     o->threads = (int)x; break;
    }
}

/* Option `a` with its possible value `v`: 0 (and *used = values consumed) or 2. */
static int parse_option(options *o, const char *a, const char *v, int *used)
{
    *used = 0;
    if (!strcmp(a, "--chat")) {
        o->chat = true;
        return 0;
    }
    for (size_t i = 0; i < sizeof numeric_options / sizeof *numeric_options; i++) {
        const struct numeric_option *n = &numeric_options[i];
        double x;
        if (strcmp(a, n->name))
            continue;
        if (!number(a, v, n->lo, n->hi, &x))
            return 2;
        set_numeric(o, n->id, x);
        *used = 1;
        return 0;
    }
    fprintf(stderr, "kvtrace run: unknown option '%s'\n%s", a, usage);
    return 2;
}

/* 0: run; 2: usage error (reported); -1: help printed. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.max_new = 256, .sampling = sampler_config_default()};
    int positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help();
            return -1;
        }
        if (a[0] == '-' && a[1]) {
            if (parse_option(o, a, i + 1 < argc ? argv[i + 1] : NULL, &used))
                return 2;
            i += used;
        } else if (positional < 2) {
            *(positional++ ? &o->prompt : &o->model) = a;
        } else {
            fprintf(stderr, "kvtrace run: unexpected argument '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (positional < 2) {
        fprintf(stderr, "kvtrace run: expected MODEL and PROMPT\n%s", usage);
        return 2;
    }
    return 0;
}

/* Everything one run holds; released by run_close whatever was opened. */
typedef struct run_state {
    gguf_file     *file;
    tokenizer     *tok;
    model         *model;
    kv_cache      *cache;
    sampler       *sampler;
    float         *logits;   /* (n_vocab,) */
    tokenizer_ids  prompt;
} run_state;

static void run_close(run_state *r)
{
    tokenizer_ids_free(&r->prompt);
    free(r->logits);
    sampler_free(r->sampler);
    kv_cache_free(r->cache);
    model_free(r->model);
    tokenizer_free(r->tok);
    gguf_close(r->file);
}

static int encode_prompt(run_state *r, const options *o, kv_err *err)
{
    if (o->chat) {
        tokenizer_message msg = {"user", o->prompt};
        return tokenizer_chat_encode(r->tok, &msg, 1, true, &r->prompt, err);
    }
    return tokenizer_encode(r->tok, o->prompt, strlen(o->prompt),
                            TOKENIZER_ADD_SPECIAL | TOKENIZER_PARSE_SPECIAL, &r->prompt, err);
}

static int run_open(run_state *r, const options *o, kv_err *err)
{
    if (!(r->file = gguf_open(o->model, err)) || !(r->tok = tokenizer_from_gguf(r->file, err)) ||
        !(r->model = model_open(o->model, err)))
        return err->code ? err->code : KV_EIO;
    int rc = encode_prompt(r, o, err);
    const model_config *c = model_config_of(r->model);
    int n = (int)r->prompt.n;
    if (!rc && (n == 0 || n > c->n_ctx))
        rc = kv_errorf(err, KV_ERANGE, "%s: the prompt is %d tokens, expected 1 .. %d (the "
                       "model's context)", o->model, n, c->n_ctx);
    if (rc || !(r->sampler = sampler_new(&o->sampling, c->n_vocab, err)) ||
        !(r->cache = model_cache_new(r->model, n + o->max_new, err)))
        return rc ? rc : err->code;
    if (!(r->logits = malloc((size_t)c->n_vocab * sizeof *r->logits)))
        return kv_errorf(err, KV_ENOMEM, "out of memory for the logits");
    return 0;
}

static bool is_stop(const model_config *c, int32_t id)
{
    return id == c->eos_id || id == c->eot_id;
}

/* Prefill, then sample and stream until a stop token, max_new or the context's end. */
static int generate(run_state *r, const options *o, kv_err *err)
{
    const model_config *c = model_config_of(r->model);
    int n_prompt = (int)r->prompt.n, n_new = 0;
    double t0 = omp_get_wtime();
    int rc = model_forward(r->model, r->cache, r->prompt.ids, n_prompt, MODEL_LOGITS_LAST,
                           r->logits, NULL, err);
    double t1 = omp_get_wtime();
    while (!rc && n_new < o->max_new) {
        int32_t next = sampler_sample(r->sampler, r->logits);
        if (is_stop(c, next))
            break;
        size_t len;
        const char *piece = tokenizer_piece(r->tok, next, &len);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        n_new++;
        if (kv_cache_next_pos(r->cache) == c->n_ctx)
            break;
        rc = model_forward(r->model, r->cache, &next, 1, MODEL_LOGITS_LAST, r->logits, NULL, err);
    }
    double t2 = omp_get_wtime();
    printf("\n");
    fprintf(stderr, "prompt: %d tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s "
            "(%d threads)\n", n_prompt, n_prompt / (t1 - t0), n_new,
            n_new ? n_new / (t2 - t1) : 0.0, omp_get_max_threads());
    return rc;
}

int cmd_run(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.threads)
        model_set_threads(o.threads);
    kv_err err = {0};
    run_state r = {0};
    rc = run_open(&r, &o, &err);
    if (!rc)
        rc = generate(&r, &o, &err);
    if (rc)
        fprintf(stderr, "kvtrace run: %s\n", err.msg);
    run_close(&r);
    return rc ? kv_err_exit_status(rc) : 0;
}
