/* session.c — model, tokenizer, prompt and sampler from shared options; see session.h. */
#include "session.h"

#include "input.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

session_options session_options_default(void)
{
    return (session_options){.max_new = 256, .sampling = sampler_config_default()};
}

#define S(field) offsetof(session_options, field)

const opts_row session_options_rows[] = {
    {"chat", 0, OPTS_FLAG, S(chat), NULL,
     "wrap the prompt as one user message in the chat template", 0, 0, NULL},
    {"prompt-file", 0, OPTS_TEXT, S(prompt_file), "F",
     "read the prompt from file F (PROMPT '-' reads stdin); at\nmost 64 MiB, more is "
     "refused", 0, 0, NULL},
    {"max-new-tokens", 0, OPTS_INT, S(max_new), "N",
     "stop after N new tokens (default 256); generation also\nstops at an "
     "end-of-sequence token or the context's end", 0, 1 << 30, NULL},
    {"temperature", 0, OPTS_FLOAT, S(sampling.temperature), "T",
     "0 = greedy (default); otherwise sample at temperature T", 0, 1e6, NULL},
    {"top-k", 0, OPTS_INT, S(sampling.top_k), "K",
     "sample among the K most likely tokens (default 0: all)", 0, 1 << 30, NULL},
    {"top-p", 0, OPTS_FLOAT, S(sampling.top_p), "P",
     "sample within the nucleus of mass P (default 1)", 1e-9, 1, NULL},
    {"seed", 0, OPTS_U64, S(sampling.seed), "S",
     "seed of the sampler (default 0); runs repeat exactly", 0, 0, NULL},
    {"threads", 0, OPTS_INT, S(threads), "N",
     "CPU threads (default: OpenMP's, usually every core); idle\nthreads sleep "
     "at once when the machine is busy at start\n(docs/RUNTIME.md, 'Threads on a shared "
     "machine';\nOMP_WAIT_POLICY overrides)", 1, 1024, NULL},
    {"device", 0, OPTS_TEXT, S(device), "D",
     "cpu (default), cuda, or auto (cuda when a device is\npresent): where the forward "
     "pass runs (docs/RUNTIME.md)", 0, 0, NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

int session_check(const session_options *o, kv_err *err)
{
    if (!o->model)
        return kv_errorf(err, KV_EUSAGE, "expected MODEL and PROMPT (or --prompt-file F, or "
                         "- for stdin); see --help");
    if (!o->prompt && !o->prompt_file)
        return kv_errorf(err, KV_EUSAGE, "expected a PROMPT after MODEL (or --prompt-file F, "
                         "or - for stdin)");
    if (o->device && strcmp(o->device, "cpu") && strcmp(o->device, "cuda") &&
        strcmp(o->device, "auto"))
        return kv_errorf(err, KV_EUSAGE, "--device '%s': expected cpu, cuda or auto", o->device);
    if (o->prompt && o->prompt_file)
        return kv_errorf(err, KV_EUSAGE, "both PROMPT '%s' and --prompt-file %s: give one",
                         o->prompt, o->prompt_file);
    return KV_OK;
}

static int read_prompt(session *s, const session_options *o, kv_err *err)
{
    if (o->prompt_file) {
        FILE *fp = fopen(o->prompt_file, "rb");
        if (!fp)
            return kv_errorf(err, KV_EIO, "%s: cannot open the prompt file: %s", o->prompt_file,
                             strerror(errno));
        size_t len;
        s->prompt_text = input_read_all(fp, o->prompt_file, &len, err);
        fclose(fp);
    } else if (!strcmp(o->prompt, "-")) {
        size_t len;
        s->prompt_text = input_read_all(stdin, "standard input", &len, err);
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
        !(s->model = model_open(o->model, err)) ||
        model_set_device(s->model, s->file, o->device, err))
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
