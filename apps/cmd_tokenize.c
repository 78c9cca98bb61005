/*
 * cmd_tokenize.c — `kvtrace tokenize MODEL TEXT [--chat] [--ids]`: the model's own
 * tokenizer (model/tokenizer.h) applied to a text, for users checking a prompt and
 * for tests.  One line per token, "id<TAB>piece", the piece's exact bytes quoted and
 * escaped so that spaces, newlines and partial UTF-8 stay visible.
 */
#include "cmd_tokenize.h"

#include "gguf.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kvtrace tokenize MODEL.gguf TEXT [--chat] [--ids] [--no-special]\n";

static void print_help(void)
{
    printf("%s\n"
           "Tokenize TEXT with the tokenizer stored in MODEL.gguf and print one line per\n"
           "token: the id, a tab, and the token's bytes in double quotes, with \\n, \\t,\n"
           "\\r, \\\", \\\\ and \\xNN for other control bytes and for bytes that are only part\n"
           "of a UTF-8 character.  TEXT '-' reads standard input.\n\n"
           "options:\n"
           "  --chat        wrap TEXT as one user message in the model's chat template\n"
           "                (ChatML: its default system prompt, the message, then the\n"
           "                assistant generation prompt)\n"
           "  --ids         print only the ids, space-separated, on one line\n"
           "  --no-special  treat control-token text in TEXT (\"<|im_start|>\") as plain\n"
           "                text instead of the control token\n"
           "  -h, --help    this help\n\n"
           "tokenizer models: %s\npre-tokenizers: %s\n"
           "exit status: 0 success, 1 unreadable model or text, 2 bad usage\n"
           "example:\n  kvtrace tokenize models/SmolLM2-135M-Instruct.Q4_1.gguf \"Hello world!\"\n",
           usage, tokenizer_supported_models(), tokenizer_supported_pres());
}

typedef struct options {
    const char *model, *text;
    bool        chat, ids_only, special;
} options;

/* 0: run; 2: usage error (reported); -1: help printed. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.special = true};
    int positional = 0;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (dashdash || a[0] != '-' || !strcmp(a, "-")) {
            if (positional == 2) {
                fprintf(stderr, "kvtrace tokenize: unexpected argument '%s'\n%s", a, usage);
                return 2;
            }
            *(positional++ ? &o->text : &o->model) = a;
        } else if (!strcmp(a, "--")) {
            dashdash = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help();
            return -1;
        } else if (!strcmp(a, "--chat")) {
            o->chat = true;
        } else if (!strcmp(a, "--ids")) {
            o->ids_only = true;
        } else if (!strcmp(a, "--no-special")) {
            o->special = false;
        } else {
            fprintf(stderr, "kvtrace tokenize: unknown option '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (positional < 2) {
        fprintf(stderr, "kvtrace tokenize: expected MODEL and TEXT\n%s", usage);
        return 2;
    }
    return 0;
}

/* All of standard input, NUL-terminated; NULL on a read error. */
static char *read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    if (buf && ferror(stdin)) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

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

static void print_ids(const tokenizer *t, const tokenizer_ids *ids, bool ids_only)
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
    unsigned flags = TOKENIZER_ADD_SPECIAL | (o->special ? TOKENIZER_PARSE_SPECIAL : 0);
    return tokenizer_encode(t, text, len, flags, ids, err);
}

static int run(const options *o, const char *text, size_t len)
{
    kv_err err = {0};
    tokenizer_ids ids = {0};
    gguf_file *f = gguf_open(o->model, &err);
    tokenizer *t = f ? tokenizer_from_gguf(f, &err) : NULL;
    int rc = t ? encode(t, o, text, len, &ids, &err) : (err.code ? err.code : KV_EIO);
    if (rc)
        fprintf(stderr, "kvtrace tokenize: %s\n", err.msg);
    else
        print_ids(t, &ids, o->ids_only);
    tokenizer_ids_free(&ids);
    tokenizer_free(t);
    gguf_close(f);
    return rc ? kv_err_exit_status(rc) : 0;
}

int cmd_tokenize(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (strcmp(o.text, "-"))
        return run(&o, o.text, strlen(o.text));
    size_t len;
    char *text = read_stdin(&len);
    if (!text) {
        fprintf(stderr, "kvtrace tokenize: standard input: read error\n");
        return 1;
    }
    if (o.chat && strlen(text) != len) {
        fprintf(stderr, "kvtrace tokenize: standard input: a NUL byte in a chat message\n");
        free(text);
        return 1;
    }
    rc = run(&o, text, len);
    free(text);
    return rc;
}
