/*
 * tokenizer_chat.c — chat templates.  GGUF files carry the template as Jinja text
 * (tokenizer.chat_template); rather than embed a Jinja interpreter we recognise the
 * template family and render it in C.  Two families.  Gemma (reference/inference.md
 * §2b), recognised by its <start_of_turn> and <end_of_turn> tokens, since Gemma 3
 * GGUFs may carry no template at all:
 *
 *     <bos><start_of_turn>user\n{system}\n\n{content}<end_of_turn>\n
 *     <start_of_turn>model\n{content}<end_of_turn>\n   ...
 *     <start_of_turn>model\n                   <- the generation prompt
 *
 * (contents trimmed, the system message if any in front of the first turn).  And
 * ChatML, as SmolLM2 uses it (reference/inference.md §2a):
 *
 *     <|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n
 *     <|im_start|>user\n{content}<|im_end|>\n
 *     <|im_start|>assistant\n                      <- the generation prompt
 *
 * The system block is the template's default system prompt, used only when the first
 * message is not a system message.  It is read from the template itself, so a ChatML
 * model with another default (or none) renders its own.
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IM_START "<|im_start|>"
#define IM_END   "<|im_end|>"
#define TURN_START "<start_of_turn>"
#define TURN_END   "<end_of_turn>"

/* The default system prompt is the plain text of a template literal
 * '<|im_start|>system\n...<|im_end|>' (the newline either real or written "\n").
 * Anything that looks like template code inside it means there is no fixed default. */
static int find_system_prompt(tokenizer *t, const char *tmpl, size_t len, kv_err *err)
{
    static const char head[] = IM_START "system";
    const char *p = memmem(tmpl, len, head, sizeof head - 1);
    if (!p)
        return 0;
    const char *end = tmpl + len;
    p += sizeof head - 1;
    if (p < end && *p == '\n')
        p += 1;
    else if (end - p >= 2 && p[0] == '\\' && p[1] == 'n')
        p += 2;
    else
        return 0;
    const char *stop = memmem(p, (size_t)(end - p), IM_END, sizeof IM_END - 1);
    if (!stop || memchr(p, '\'', (size_t)(stop - p)) || memchr(p, '{', (size_t)(stop - p)) ||
        memchr(p, '"', (size_t)(stop - p)))
        return 0;
    t->system_prompt = strndup(p, (size_t)(stop - p));
    if (!t->system_prompt)
        return kv_errorf(err, KV_ENOMEM, "%s: chat template: out of memory", t->source);
    return 0;
}

static bool has_token(const tokenizer *t, const char *text)
{
    return tokenizer__find(t, text, strlen(text)) >= 0;
}

int tokenizer__chat_init(tokenizer *t, const char *tmpl, size_t len, kv_err *err)
{
    t->chat = TOKENIZER_CHAT_NONE;
    if (has_token(t, TURN_START) && has_token(t, TURN_END) && t->info.bos_id >= 0 &&
        (!tmpl || memmem(tmpl, len, TURN_START, sizeof TURN_START - 1))) {
        t->chat = TOKENIZER_CHAT_GEMMA;
        t->info.chat = "gemma";
        return 0;
    }
    if (!tmpl || !memmem(tmpl, len, IM_START, sizeof IM_START - 1) ||
        tokenizer__find(t, IM_START, sizeof IM_START - 1) < 0 ||
        tokenizer__find(t, IM_END, sizeof IM_END - 1) < 0)
        return 0;
    t->chat = TOKENIZER_CHAT_CHATML;
    t->info.chat = "chatml";
    int rc = find_system_prompt(t, tmpl, len, err);
    t->info.system_prompt = t->system_prompt;
    return rc;
}

static void chatml_message(FILE *f, const char *role, const char *content)
{
    fprintf(f, IM_START "%s\n%s" IM_END "\n", role, content);
}

/* Jinja's `trim`, for ASCII whitespace: the span of s without leading and trailing. */
static void trimmed(const char *s, const char **start, int *len)
{
    size_t b = 0, e = strlen(s);
    while (b < e && strchr(" \t\n\r\v\f", s[b]))
        b++;
    while (e > b && strchr(" \t\n\r\v\f", s[e - 1]))
        e--;
    *start = s + b;
    *len = (int)(e - b);
}

static void gemma_render(const tokenizer *t, FILE *f, const tokenizer_message *msgs, size_t n,
                         bool add_generation_prompt)
{
    const tokenizer_token *bos = &t->tokens[t->info.bos_id];
    fwrite(bos->text, 1, bos->text_len, f);
    const char *prefix = NULL;          /* the system message, raw, before the first turn */
    if (n > 0 && !strcmp(msgs[0].role, "system"))
        prefix = msgs[0].content, msgs++, n--;
    for (size_t i = 0; i < n; i++) {
        const char *c;
        int len;
        trimmed(msgs[i].content, &c, &len);
        fprintf(f, TURN_START "%s\n", strcmp(msgs[i].role, "assistant") ? msgs[i].role : "model");
        if (i == 0 && prefix)
            fprintf(f, "%s\n\n", prefix);
        fprintf(f, "%.*s" TURN_END "\n", len, c);
    }
    if (add_generation_prompt)
        fputs(TURN_START "model\n", f);
}

int tokenizer_chat_render(const tokenizer *t, const tokenizer_message *msgs, size_t n,
                          bool add_generation_prompt, char **text, size_t *len, kv_err *err)
{
    if (t->chat == TOKENIZER_CHAT_NONE)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: tokenizer.chat_template: no ChatML or "
                         "Gemma template (the kinds supported)", t->source);
    size_t size = 0;
    FILE *f = open_memstream(text, &size);
    if (!f)
        return kv_errorf(err, KV_ENOMEM, "chat: out of memory");
    if (t->chat == TOKENIZER_CHAT_GEMMA) {
        gemma_render(t, f, msgs, n, add_generation_prompt);
    } else {
        if (t->system_prompt && n > 0 && strcmp(msgs[0].role, "system"))
            chatml_message(f, "system", t->system_prompt);
        for (size_t i = 0; i < n; i++)
            chatml_message(f, msgs[i].role, msgs[i].content);
        if (add_generation_prompt)
            fputs(IM_START "assistant\n", f);
    }
    int failed = ferror(f);
    failed |= fclose(f);               /* always close: it also finalises *text */
    if (failed) {
        free(*text);
        *text = NULL;
        return kv_errorf(err, KV_ENOMEM, "chat: out of memory");
    }
    if (len)
        *len = size;
    return 0;
}

int tokenizer_chat_encode(const tokenizer *t, const tokenizer_message *msgs, size_t n,
                          bool add_generation_prompt, tokenizer_ids *out, kv_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = tokenizer_chat_render(t, msgs, n, add_generation_prompt, &text, &len, err);
    /* a template that writes BOS itself (Gemma) must not get a second one */
    unsigned flags = TOKENIZER_PARSE_SPECIAL |
                     (t->chat == TOKENIZER_CHAT_GEMMA ? 0 : TOKENIZER_ADD_SPECIAL);
    if (!rc)
        rc = tokenizer_encode(t, text, len, flags, out, err);
    free(text);
    return rc;
}
