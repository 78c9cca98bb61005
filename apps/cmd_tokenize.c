/*
 * cmd_tokenize.c — `kvtrace tokenize MODEL TEXT [--chat] [--ids]`: the model's own
 * tokenizer (model/tokenizer.h) applied to a text, for users checking a prompt and
 * for tests.  One line per token, "id<TAB>piece", the piece's exact bytes quoted and
 * escaped so that spaces, newlines and partial UTF-8 stay visible.
 */
#include "commands.h"

#include "gguf.h"
#include "input.h"
#include "opts.h"
#include "tokenizer.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct options {
    const char *model, *text;
    int         chat, ids_only, no_special;
} options;

#define T(field) offsetof(options, field)

static const opts_row tokenize_rows[] = {
    {"chat", 0, OPTS_FLAG, T(chat), NULL,
     "wrap TEXT as one user message in the model's chat template\n(ChatML: its default "
     "system prompt, the message, then the\nassistant generation prompt)", 0, 0, NULL},
    {"ids", 0, OPTS_FLAG, T(ids_only), NULL, "print only the ids, space-separated, on one line",
     0, 0, NULL},
    {"no-special", 0, OPTS_FLAG, T(no_special), NULL,
     "treat control-token text in TEXT (\"<|im_start|>\") as plain\ntext instead of the "
     "control token", 0, 0, NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

/* Print a token's bytes so that every byte can be read back. */
static void print_piece(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        uint32_t cp;
        size_t k = c >= 0x80 ? tokenizer_utf8_char(s + i, n - i, &cp) : 1;
        if (c == '\n' || c == '\t' || c == '\r' || c == '"' || c == '\\')
            printf("\\%c", c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : (char)c);
        else if (c < 0x20 || c == 0x7F || k == 0)
            printf("\\x%02X", c);
        else
            fwrite(s + i, 1, k, stdout);
        i += k ? k : 1;
    }
    putchar('"');
}

static void print_ids(const tokenizer *t, const tokenizer_ids *ids, int ids_only)
{
    for (size_t i = 0; i < ids->n; i++) {
        if (ids_only) {
            printf("%s%d", i ? " " : "", ids->ids[i]);
            continue;
        }
        size_t len;
        const char *piece = tokenizer_piece(t, ids->ids[i], &len);
        printf("%d\t", ids->ids[i]);
        print_piece(piece, len);
        putchar('\n');
    }
    if (ids_only)
        putchar('\n');
}

static int encode(const tokenizer *t, const options *o, const char *text, size_t len,
                  tokenizer_ids *ids, kv_err *err)
{
    if (o->chat) {
        tokenizer_message msg = {"user", text};
        return tokenizer_chat_encode(t, &msg, 1, true, ids, err);
    }
    unsigned flags = TOKENIZER_ADD_SPECIAL | (o->no_special ? 0 : TOKENIZER_PARSE_SPECIAL);
    return tokenizer_encode(t, text, len, flags, ids, err);
}

static int run(const options *o, const char *text, size_t len, kv_err *err)
{
    tokenizer_ids ids = {0};
    gguf_file *f = gguf_open(o->model, err);
    tokenizer *t = f ? tokenizer_from_gguf(f, err) : NULL;
    int rc = t ? encode(t, o, text, len, &ids, err) : (err->code ? err->code : KV_EIO);
    if (rc == KV_OK)
        print_ids(t, &ids, o->ids_only);   /* write errors: cli_main */
    tokenizer_ids_free(&ids);
    tokenizer_free(t);
    gguf_close(f);
    return rc;
}

/* TEXT, or all of standard input for '-'. */
static int tokenize(void *ctx, kv_err *err)
{
    const options *o = ctx;
    if (strcmp(o->text, "-"))
        return run(o, o->text, strlen(o->text), err);
    size_t len;
    char *text = input_read_all(stdin, "standard input", &len, err);
    if (!text)
        return err->code;
    int rc = o->chat && strlen(text) != len
                 ? kv_errorf(err, KV_EFORMAT, "standard input: a NUL byte in a chat message")
                 : run(o, text, len, err);
    free(text);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    options o = {0};
    char about[1024];
    snprintf(about, sizeof about,
             "Tokenize TEXT with the tokenizer stored in MODEL.gguf and print one line per\n"
             "token: the id, a tab, and the token's bytes in double quotes, with \\n, \\t,\n"
             "\\r, \\\", \\\\ and \\xNN for other control bytes and for bytes that are "
             "only part\nof a UTF-8 character.  TEXT '-' reads standard input; '--' before a "
             "TEXT\nthat starts with '-'.\n\ntokenizer models: %s\npre-tokenizers: %s",
             tokenizer_supported_models(), tokenizer_supported_pres());
    const opts_command cmd = {
        .prog = "kvtrace tokenize",
        .usage = "kvtrace tokenize MODEL.gguf TEXT [--chat] [--ids] [--no-special]",
        .about = about,
        .groups = {{"options", tokenize_rows, &o}},
        .positional = {&o.model, &o.text},
        .required = 2,
        .footer = "exit status: 0 success, 1 unreadable model or text, 2 bad usage\n"
                  "example:\n  kvtrace tokenize models/SmolLM2-135M-Instruct.Q4_1.gguf "
                  "\"Hello world!\"\n",
    };
    return opts_main(&cmd, argc, argv, tokenize, &o);
}
