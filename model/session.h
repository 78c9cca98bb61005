/*
 * session.h — what `kvtrace run`, `record` and `generate` share: the model, its
 * tokenizer, the prompt and the sampling settings, from one set of options.
 *
 * A command lists session_options_rows among its option groups (common/opts.h) and
 * MODEL and PROMPT among its positional arguments, checks them with session_check();
 * then session_open() loads the model and encodes the prompt (an argument,
 * `--prompt-file F`, or `-` for standard input; `--chat` wraps it as one user message
 * in the model's chat template).  session_close() releases whatever was opened, also
 * after a failed open.
 */
#ifndef SESSION_H
#define SESSION_H

#include <stdbool.h>
#include <stdio.h>

#include "gguf.h"
#include "kv_err.h"
#include "model.h"
#include "opts.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct session_options {
    const char    *model;        /* MODEL.gguf */
    const char    *prompt;       /* the PROMPT argument; "-" reads standard input */
    const char    *prompt_file;  /* --prompt-file F; NULL if not given */
    int            chat;         /* --chat */
    int            max_new;      /* --max-new-tokens (default 256) */
    int            threads;      /* --threads; 0: OpenMP's default */
    const char    *device;       /* --device cpu|cuda|auto; NULL: cpu (model_set_device) */
    sampler_config sampling;     /* --temperature --top-k --top-p --seed */
} session_options;

typedef struct session {
    gguf_file     *file;
    tokenizer     *tok;
    model         *model;
    sampler       *sampler;
    char          *prompt_text;  /* the prompt as read (file, stdin or argument copy) */
    tokenizer_ids  prompt;       /* its token ids, chat template applied */
} session;

session_options session_options_default(void);

/* The shared options (--chat, --prompt-file, --max-new-tokens, sampling, --threads,
 * --device)
 * as an opts table whose destination is a session_options. */
extern const opts_row session_options_rows[];

/* MODEL and a prompt (PROMPT, --prompt-file F, or '-'), not both: KV_EUSAGE otherwise. */
int  session_check(const session_options *o, kv_err *err);

/* Load the model and tokenizer (on --device: model_set_device), read and encode the
 * prompt, build the sampler.  A prompt longer than the context (or empty) is KV_ERANGE. */
int  session_open(session *s, const session_options *o, kv_err *err);
void session_close(session *s);

/* Does `id` end generation (tokenizer.ggml.eos_token_id or eot_token_id)? */
bool session_is_stop(const session *s, int32_t id);

#endif /* SESSION_H */
