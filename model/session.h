/*
 * session.h — what `kvtrace run`, `record` and `generate` share: the model, its
 * tokenizer, the prompt and the sampling settings, from one set of options.
 *
 * A command parses its own options first and hands the rest to
 * session_parse_option(); then session_open() loads the model and encodes the
 * prompt (an argument, `--prompt-file F`, or `-` for standard input; `--chat` wraps
 * it as one user message in the model's chat template).  session_close() releases
 * whatever was opened, also after a failed open.
 */
#ifndef SESSION_H
#define SESSION_H

#include <stdbool.h>
#include <stdio.h>

#include "gguf.h"
#include "kv_err.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct session_options {
    const char    *model;        /* MODEL.gguf */
    const char    *prompt;       /* the PROMPT argument; "-" reads standard input */
    const char    *prompt_file;  /* --prompt-file F; NULL if not given */
    bool           chat;         /* --chat */
    int            max_new;      /* --max-new-tokens (default 256) */
    int            threads;      /* --threads; 0: OpenMP's default */
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

/* Try one option `a` (with its value v, possibly NULL).  Returns 0 and sets *used to
 * the number of values consumed when it is a session option, 1 when it is not (the
 * caller reports it), 2 after printing a usage error that names `prog`. */
int  session_parse_option(session_options *o, const char *prog, const char *a, const char *v,
                          int *used);

/* Take a positional argument (MODEL, then PROMPT); 2 after a usage error. */
int  session_positional(session_options *o, const char *prog, const char *arg);

/* Check that MODEL and a prompt were given; 2 after a usage error. */
int  session_check(const session_options *o, const char *prog, const char *usage);

/* The shared options, for a command's --help. */
void session_print_options(FILE *out);

/* Load the model and tokenizer, read and encode the prompt, build the sampler.  A
 * prompt longer than the context (or empty) is KV_ERANGE. */
int  session_open(session *s, const session_options *o, kv_err *err);
void session_close(session *s);

/* Does `id` end generation (tokenizer.ggml.eos_token_id or eot_token_id)? */
bool session_is_stop(const session *s, int32_t id);

#endif /* SESSION_H */
