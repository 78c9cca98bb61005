/*
 * tokenizer_chat.c — chat templates.  GGUF files carry the template as Jinja text
 * (tokenizer.chat_template); rather than embed a Jinja interpreter we recognise the
 * template family and render it in C.  One family so far, ChatML, as SmolLM2 uses it
 * (reference/inference.md §2a):
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

int tokenizer__chat_init(tokenizer *t, const char *tmpl, size_t len, kv_err *err)
{
    t->chat = TOKENIZER_CHAT_NONE;
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

int tokenizer_chat_render(const tokenizer *t, const tokenizer_message *msgs, size_t n,
                          bool add_generation_prompt, char **text, size_t *len, kv_err *err)
{
    if (t->chat != TOKENIZER_CHAT_CHATML)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: tokenizer.chat_template: no ChatML "
                         "template (the only kind supported)", t->source);
    size_t size = 0;
    FILE *f = open_memstream(text, &size);
    if (!f)
        return kv_errorf(err, KV_ENOMEM, "chat: out of memory");
    if (t->system_prompt && n > 0 && strcmp(msgs[0].role, "system"))
        chatml_message(f, "system", t->system_prompt);
    for (size_t i = 0; i < n; i++)
        chatml_message(f, msgs[i].role, msgs[i].content);
    if (add_generation_prompt)
        fputs(IM_START "assistant\n", f);
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
    if (!rc)
        rc = tokenizer_encode(t, text, len, TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_SPECIAL,
                              out, err);
    free(text);
    return rc;
}
