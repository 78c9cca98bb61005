/* session.c — model, tokenizer, prompt and sampler from shared options; see session.h. */
#include "session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

session_options session_options_default(void)
{
    return (session_options){.max_new = 256, .sampling = sampler_config_default()};
}

/* Parse a number option's value; false (after a message) if it is not one. */
static bool number(const char *prog, const char *opt, const char *v, double lo, double hi,
                   double *out)
{
    char *end;
    *out = v ? strtod(v, &end) : 0.0;
    if (v && *v && !*end && *out >= lo && *out <= hi)
        return true;
    fprintf(stderr, "%s: %s expects a number in [%g, %g], got '%s'\n", prog, opt, lo, hi,
            v ? v : "");
    return false;
}

int session_parse_option(session_options *o, const char *prog, const char *a, const char *v,
                         int *used)
{
    double x;
    *used = 1;
    if (!strcmp(a, "--chat")) {
        o->chat = true;
        *used = 0;
        return 0;
    }
    if (!strcmp(a, "--prompt-file")) {
        if (!v) {
            fprintf(stderr, "%s: --prompt-file expects a file name\n", prog);
            return 2;
        }
        o->prompt_file = v;
        return 0;
    }
    enum { AS_INT, AS_FLOAT, AS_U64 };
    const struct { const char *name; double lo, hi; int as; void *target; } numeric[] = {
        {"--max-new-tokens", 0, 1 << 30, AS_INT, &o->max_new},
        {"--temperature", 0, 1e6, AS_FLOAT, &o->sampling.temperature},
        {"--top-k", 0, 1 << 30, AS_INT, &o->sampling.top_k},
        {"--top-p", 1e-9, 1, AS_FLOAT, &o->sampling.top_p},
        {"--seed", 0, 1.8e19, AS_U64, &o->sampling.seed},
        {"--threads", 1, 1024, AS_INT, &o->threads},
    };
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++) {
        if (strcmp(a, numeric[i].name))
            continue;
        if (!number(prog, a, v, numeric[i].lo, numeric[i].hi, &x))
            return 2;
        if (numeric[i].as == AS_INT)
            *(int *)numeric[i].target = (int)x;
        else if (numeric[i].as == AS_FLOAT)
            *(float *)numeric[i].target = (float)x;
        else
            *(uint64_t *)numeric[i].target = (uint64_t)x;
        return 0;
    }
    return 1;
}

int session_positional(session_options *o, const char *prog, const char *arg)
{
    if (!o->model)
        o->model = arg;
    else if (!o->prompt && !o->prompt_file)
        o->prompt = arg;
    else {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, arg);
        return 2;
    }
    return 0;
}

int session_check(const session_options *o, const char *prog, const char *usage)
{
    if (o->model && (o->prompt || o->prompt_file))
        return 0;
    fprintf(stderr, "%s: expected MODEL and PROMPT (or --prompt-file F, or - for stdin)\n%s",
            prog, usage);
    return 2;
}

void session_print_options(FILE *out)
{
    fputs("  --chat              wrap the prompt as one user message in the chat template\n"
          "  --prompt-file F     read the prompt from file F (PROMPT '-' reads stdin)\n"
          "  --max-new-tokens N  stop after N new tokens (default 256); generation also\n"
          "                      stops at an end-of-sequence token or the context's end\n"
          "  --temperature T     0 = greedy (default); otherwise sample at temperature T\n"
          "  --top-k K           sample among the K most likely tokens (default 0: all)\n"
          "  --top-p P           sample within the nucleus of mass P (default 1)\n"
          "  --seed S            seed of the sampler (default 0); runs repeat exactly\n"
          "  --threads N         CPU threads (default: OpenMP's, usually every core)\n",
          out);
}

/* Read all of `fp` into a NUL-terminated buffer. */
static char *slurp(FILE *fp, const char *name, kv_err *err)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - 1 - len, fp);
        if (len < cap - 1)
            break;
        char *grown = realloc(buf, cap *= 2);
        if (!grown)
            free(buf);
        buf = grown;
    }
    if (!buf) {
        kv_errorf(err, KV_ENOMEM, "%s: out of memory reading the prompt", name);
        return NULL;
    }
    if (ferror(fp)) {
        kv_errorf(err, KV_EIO, "%s: read error: %s", name, strerror(errno));
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static int read_prompt(session *s, const session_options *o, kv_err *err)
{
    if (o->prompt_file) {
        FILE *fp = fopen(o->prompt_file, "rb");
        if (!fp)
            return kv_errorf(err, KV_EIO, "%s: cannot open the prompt file: %s", o->prompt_file,
                             strerror(errno));
        s->prompt_text = slurp(fp, o->prompt_file, err);
        fclose(fp);
    } else if (!strcmp(o->prompt, "-")) {
        s->prompt_text = slurp(stdin, "standard input", err);
    } else if (!(s->prompt_text = strdup(o->prompt))) {
        kv_errorf(err, KV_ENOMEM, "out of memory copying the prompt");
    }
    return s->prompt_text ? 0 : err->code;
}

static int encode_prompt(session *s, const session_options *o, kv_err *err)
{
    if (o->chat) {
        tokenizer_message msg = {"user", s->prompt_text};
        return tokenizer_chat_encode(s->tok, &msg, 1, true, &s->prompt, err);
    }
    return tokenizer_encode(s->tok, s->prompt_text, strlen(s->prompt_text),
                            TOKENIZER_ADD_SPECIAL | TOKENIZER_PARSE_SPECIAL, &s->prompt, err);
}

int session_open(session *s, const session_options *o, kv_err *err)
{
    memset(s, 0, sizeof *s);
    if (o->threads)
        model_set_threads(o->threads);
    if (read_prompt(s, o, err) != 0)
        return err->code;
    if (!(s->file = gguf_open(o->model, err)) || !(s->tok = tokenizer_from_gguf(s->file, err)) ||
        !(s->model = model_open(o->model, err)))
        return err->code ? err->code : KV_EIO;
    int rc = encode_prompt(s, o, err);
    if (rc)
        return rc;
    const model_config *c = model_config_of(s->model);
    int n = (int)s->prompt.n;
    if (n == 0 || n > c->n_ctx)
        return kv_errorf(err, KV_ERANGE, "%s: the prompt is %d tokens, expected 1 .. %d (the "
                         "model's context)", o->model, n, c->n_ctx);
    if (!(s->sampler = sampler_new(&o->sampling, c->n_vocab, err)))
        return err->code;
    return 0;
}

void session_close(session *s)
{
    tokenizer_ids_free(&s->prompt);
    sampler_free(s->sampler);
    model_free(s->model);
    tokenizer_free(s->tok);
    gguf_close(s->file);
    free(s->prompt_text);
    memset(s, 0, sizeof *s);
}

bool session_is_stop(const session *s, int32_t id)
{
    const model_config *c = model_config_of(s->model);
    return id == c->eos_id || id == c->eot_id;
}
