/*
 * test_tokenizer.c — model/tokenizer.h on the real SmolLM2 tokenizer ($KV_MODEL) against
 * the test vectors of reference/inference.md §2a and against HF `tokenizers`
 * (tests/fixtures/tokenizer_cases.tsv, written by make_tokenizer_fixtures.py), plus the
 * errors a bad spec must give and the exit statuses of `kvtrace tokenize`.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "gguf.h"
#include "tokenizer.h"
#include "test_shell.h"

/* --- helpers --------------------------------------------------------------------- */

typedef struct loaded {
    gguf_file *file;
    tokenizer *tok;
} loaded;

static loaded load_model_at(const char *path)
{
    kv_err err = {0};
    loaded m = {gguf_open(path, &err), NULL};
    cr_assert_not_null(m.file, "gguf_open: %s", err.msg);
    m.tok = tokenizer_from_gguf(m.file, &err);
    cr_assert_not_null(m.tok, "tokenizer_from_gguf: %s", err.msg);
    return m;
}

static loaded load_model(void) { return load_model_at(test_model()); }

static void unload(loaded *m)
{
    tokenizer_free(m->tok);
    gguf_close(m->file);
}

/* Encode with special-token parsing on, as the fixtures were made. */
static tokenizer_ids encode(const tokenizer *t, const char *text, size_t len)
{
    tokenizer_ids ids = {0};
    kv_err err = {0};
    int rc = tokenizer_encode(t, text, len, TOKENIZER_PARSE_SPECIAL, &ids, &err);
    cr_assert_eq(rc, 0, "encode: %s", err.msg);
    return ids;
}

static void assert_ids(const tokenizer_ids *got, const int32_t *want, size_t n, const char *what)
{
    cr_assert_eq(got->n, n, "%s: %zu tokens, expected %zu", what, got->n, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got->ids[i], want[i], "%s: token %zu is %d, expected %d", what, i,
                     got->ids[i], want[i]);
}

/* One line of tokenizer_cases.tsv: kind, unescaped text, expected ids. */
typedef struct tcase {
    char    kind[16];
    char   *text;              /* malloc'd, NUL-terminated, may hold NUL */
    size_t  len;
    int32_t ids[256];
    size_t  n_ids;
} tcase;

static size_t unescape(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            out[k++] = s[i];
            continue;
        }
        char c = s[++i];
        if (c == 'x' && i + 2 < n) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[k++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[k++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        }
    }
    return k;
}

static bool parse_case(char *line, tcase *c)
{
    char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    if (line[0] == '#' || !tab2)
        return false;
    snprintf(c->kind, sizeof c->kind, "%.*s", (int)(tab1 - line), line);
    c->text = malloc((size_t)(tab2 - tab1));
    c->len = unescape(tab1 + 1, (size_t)(tab2 - tab1 - 1), c->text);
    c->text[c->len] = '\0';
    c->n_ids = 0;
    for (char *p = tab2 + 1, *end; c->n_ids < 256; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        c->ids[c->n_ids++] = (int32_t)v;
    }
    return true;
}

/* Every case of a fixture file, in order; returns how many. */
static size_t load_cases_of(const char *file, tcase *cases, size_t cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", getenv("KV_FIXTURES"), file);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[8192];
    size_t n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        n += parse_case(line, &cases[n]);
    }
    fclose(f);
    return n;
}

static size_t load_cases(tcase *cases, size_t cap)
{
    return load_cases_of("tokenizer_cases.tsv", cases, cap);
}

static void free_cases(tcase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cases[i].text);
}

/* --- the reference and the fixtures ---------------------------------------------- */

Test(tokenizer, reference_vectors_of_inference_md)
{
    static const struct { const char *text; int32_t ids[16]; size_t n; } v[] = {
        {"The capital of France is", {504, 3575, 282, 4649, 314}, 5},
        {"Hello, we can use", {19556, 28, 392, 416, 722}, 5},
        {"Hello world! 123", {19556, 905, 17, 216, 33, 34, 35}, 7},
        {"  multiple   spaces", {216, 2701, 256, 5600}, 4},
        {"\n", {198}, 1},
        {"Café déjà vu.", {51, 1939, 2756, 32564, 90, 16739, 386, 101, 30}, 9},
    };
    loaded m = load_model();
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        tokenizer_ids ids = encode(m.tok, v[i].text, strlen(v[i].text));
        assert_ids(&ids, v[i].ids, v[i].n, v[i].text);
        tokenizer_ids_free(&ids);
    }
    unload(&m);
}

Test(tokenizer, matches_hf_tokenizers_on_every_fixture_case)
{
    static tcase cases[256];
    size_t n = load_cases(cases, 256), plain = 0;
    cr_assert_geq(n, 40, "only %zu fixture cases", n);
    loaded m = load_model();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cases[i].kind, "plain") && strcmp(cases[i].kind, "lossy"))
            continue;
        tokenizer_ids ids = encode(m.tok, cases[i].text, cases[i].len);
        assert_ids(&ids, cases[i].ids, cases[i].n_ids, cases[i].text);
        tokenizer_ids_free(&ids);
        plain++;
    }
    cr_assert_geq(plain, 40);
    unload(&m);
    free_cases(cases, n);
}

Test(tokenizer, decode_round_trips_exact_bytes_of_every_plain_case)
{
    static tcase cases[256];
    size_t n = load_cases(cases, 256);
    loaded m = load_model();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cases[i].kind, "plain"))
            continue;                  /* lossy cases hold bytes with no token */
        char *text;
        size_t len;
        kv_err err = {0};
        cr_assert_eq(tokenizer_decode(m.tok, cases[i].ids, cases[i].n_ids, &text, &len, &err),
                     0, "%s", err.msg);
        cr_assert(len == cases[i].len && !memcmp(text, cases[i].text, len),
                  "decode of '%s' gave '%s'", cases[i].text, text);
        free(text);
    }
    unload(&m);
    free_cases(cases, n);
}

/* The vocabulary of SmolLM2 with the other pre-tokenizer families, against HF built
 * the same way: checks the gpt-2 and llama-bpe regexes and ignore_merges. */
Test(tokenizer, gpt2_and_llama_bpe_pre_tokenizers_match_hf_tokenizers)
{
    static tcase cases[256];
    size_t n = load_cases(cases, 256);
    loaded m = load_model();
    static const char *const families[] = {"gpt-2", "llama-bpe"};
    for (int k = 0; k < 2; k++) {
        kv_err err = {0};
        tokenizer *tok = tokenizer_from_gguf_pre(m.file, families[k], &err);
        cr_assert_not_null(tok, "%s", err.msg);
        size_t checked = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(cases[i].kind, families[k]))
                continue;
            tokenizer_ids ids = encode(tok, cases[i].text, cases[i].len);
            assert_ids(&ids, cases[i].ids, cases[i].n_ids, cases[i].text);
            tokenizer_ids_free(&ids);
            checked++;
        }
        cr_assert_geq(checked, 40, "%s: %zu cases", families[k], checked);
        tokenizer_free(tok);
    }
    unload(&m);
    free_cases(cases, n);
}

Test(tokenizer, chat_template_matches_the_jinja_rendering)
{
    static tcase cases[256];
    size_t n = load_cases(cases, 256), chats = 0;
    loaded m = load_model();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cases[i].kind, "chat"))
            continue;
        tokenizer_message msg = {"user", cases[i].text};
        tokenizer_ids ids = {0};
        kv_err err = {0};
        cr_assert_eq(tokenizer_chat_encode(m.tok, &msg, 1, true, &ids, &err), 0, "%s", err.msg);
        assert_ids(&ids, cases[i].ids, cases[i].n_ids, cases[i].text);
        tokenizer_ids_free(&ids);
        chats++;
    }
    cr_assert_geq(chats, 1);
    unload(&m);
    free_cases(cases, n);
}

/* --- Gemma 3: SentencePiece and the Gemma template --------------------------------- */

/* Cases of gemma3_tokenizer_cases.tsv (make_gemma_fixtures.py: sentencepiece itself on
 * the GGUF's pieces, after llama.cpp's special-token partition). */
Test(tokenizer, gemma3_matches_sentencepiece_and_decodes_back)
{
    loaded m = load_model_at(test_gemma_model());
    static tcase cases[256];
    size_t n = load_cases_of("gemma3_tokenizer_cases.tsv", cases, 256), plain = 0;
    const tokenizer_info *in = tokenizer_get_info(m.tok);
    cr_assert_str_eq(in->model, "llama");
    cr_assert(in->add_bos && !in->add_space_prefix && in->bos_id == 2 && in->eos_id == 1);
    for (size_t i = 0; i < n; i++) {
        bool lossy = !strcmp(cases[i].kind, "lossy");   /* a '▁' in the text */
        if (strcmp(cases[i].kind, "plain") && !lossy)
            continue;
        tokenizer_ids ids = encode(m.tok, cases[i].text, cases[i].len);
        assert_ids(&ids, cases[i].ids, cases[i].n_ids, cases[i].text);
        plain++;
        if (lossy) {
            tokenizer_ids_free(&ids);
            continue;
        }
        char *text;
        size_t len;
        kv_err err = {0};
        cr_assert_eq(tokenizer_decode(m.tok, ids.ids, ids.n, &text, &len, &err), 0, "%s", err.msg);
        cr_assert(len == cases[i].len && !memcmp(text, cases[i].text, len),
                  "decode of '%s' gave '%s'", cases[i].text, text);
        free(text);
        tokenizer_ids_free(&ids);
    }
    cr_assert_geq(plain, 60, "only %zu plain cases", plain);
    unload(&m);
    free_cases(cases, n);
}

/* The chat cases hold "role:content" messages separated by 0x1E. */
Test(tokenizer, gemma3_chat_template_matches_the_jinja_rendering)
{
    loaded m = load_model_at(test_gemma_model());
    static tcase cases[256];
    size_t n = load_cases_of("gemma3_tokenizer_cases.tsv", cases, 256), chats = 0;
    cr_assert_str_eq(tokenizer_get_info(m.tok)->chat, "gemma");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cases[i].kind, "chat"))
            continue;
        tokenizer_message msgs[8];
        size_t k = 0;
        for (char *p = cases[i].text, *next; p && k < 8; p = next) {
            next = strchr(p, '\x1e');
            if (next)
                *next++ = '\0';
            char *colon = strchr(p, ':');
            cr_assert_not_null(colon);
            *colon = '\0';
            msgs[k++] = (tokenizer_message){p, colon + 1};
        }
        tokenizer_ids ids = {0};
        kv_err err = {0};
        cr_assert_eq(tokenizer_chat_encode(m.tok, msgs, k, true, &ids, &err), 0, "%s", err.msg);
        assert_ids(&ids, cases[i].ids, cases[i].n_ids, msgs[k - 1].content);
        cr_assert_eq(ids.ids[1] == 2, 0, "one BOS, not two");
        tokenizer_ids_free(&ids);
        chats++;
    }
    cr_assert_geq(chats, 4);
    unload(&m);
    free_cases(cases, n);
}

Test(tokenizer, chat_render_uses_the_default_system_prompt_without_a_period)
{
    loaded m = load_model();
    const tokenizer_info *info = tokenizer_get_info(m.tok);
    cr_assert_str_eq(info->chat, "chatml");
    cr_assert_str_eq(info->system_prompt,
                     "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    tokenizer_message msg = {"user", "Hi"};
    char *text;
    kv_err err = {0};
    cr_assert_eq(tokenizer_chat_render(m.tok, &msg, 1, true, &text, NULL, &err), 0);
    cr_assert_str_eq(text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                           "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(text);
    tokenizer_message own[] = {{"system", "Be brief."}, {"user", "Hi"}};
    cr_assert_eq(tokenizer_chat_render(m.tok, own, 2, false, &text, NULL, &err), 0);
    cr_assert_str_eq(text, "<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\nHi<|im_end|>\n");
    free(text);
    unload(&m);
}

/* --- special tokens, pieces, bad input ------------------------------------------- */

Test(tokenizer, control_token_text_is_plain_text_without_parse_special)
{
    loaded m = load_model();
    tokenizer_ids on = encode(m.tok, "<|im_start|>", 12), off = {0};
    cr_assert_eq(tokenizer_encode(m.tok, "<|im_start|>", 12, 0, &off, NULL), 0);
    cr_assert(on.n == 1 && on.ids[0] == 1);
    cr_assert_gt(off.n, 1, "without PARSE_SPECIAL the text must not become id 1");
    for (size_t i = 0; i < off.n; i++)
        cr_assert_neq(off.ids[i], 1);
    tokenizer_ids_free(&on);
    tokenizer_ids_free(&off);
    unload(&m);
}

Test(tokenizer, pieces_are_exact_bytes)
{
    loaded m = load_model();
    size_t len;
    cr_assert_str_eq(tokenizer_piece(m.tok, 216, &len), " ");
    cr_assert_str_eq(tokenizer_piece(m.tok, 198, &len), "\n");
    cr_assert_str_eq(tokenizer_piece(m.tok, 1, &len), "<|im_start|>");
    tokenizer_ids ids = encode(m.tok, "🤖", 4);      /* three tokens: UTF-8 cut in pieces */
    cr_assert_eq(ids.n, 3);
    cr_assert_lt(strlen(tokenizer_piece(m.tok, ids.ids[0], &len)), 4);
    cr_assert_null(tokenizer_piece(m.tok, 49152, &len));
    cr_assert_null(tokenizer_piece(m.tok, -1, &len));
    tokenizer_ids_free(&ids);
    unload(&m);
}

Test(tokenizer, invalid_utf8_is_an_error_naming_the_byte)
{
    loaded m = load_model();
    tokenizer_ids ids = {0};
    kv_err err = {0};
    cr_assert_eq(tokenizer_encode(m.tok, "ok\xC3(", 4, 0, &ids, &err), KV_EFORMAT);
    cr_assert(strstr(err.msg, "byte 2"), "message: %s", err.msg);
    cr_assert_eq(ids.n, 0);
    int32_t bad = 49152;
    char *text;
    cr_assert_eq(tokenizer_decode(m.tok, &bad, 1, &text, NULL, &err), KV_ERANGE);
    unload(&m);
}

/* --- specs built by hand ----------------------------------------------------------- */

/* The 256 byte tokens in byte-level form, plus "ab" and the merge "a b". */
typedef struct tiny {
    char         text[258][4];
    const char  *tokens[258];
    const char  *merges[1];
    tokenizer_spec spec;
} tiny;

static void tiny_init(tiny *t, const char *pre)
{
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int n = b <= 0x20 ? b : b <= 0xA0 ? 33 + b - 0x7F : 67;
        unsigned cp = keep ? (unsigned)b : 0x100u + (unsigned)n;
        if (cp < 0x80)
            snprintf(t->text[b], 4, "%c", (char)cp);
        else
            snprintf(t->text[b], 4, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
        t->tokens[b] = t->text[b];
    }
    t->tokens[256] = "ab";
    t->merges[0] = "a b";
    t->spec = tokenizer_spec_default();
    t->spec.model = "gpt2";
    t->spec.pre = pre;
    t->spec.n_vocab = 257;
    t->spec.tokens = t->tokens;
    t->spec.n_merges = 1;
    t->spec.merges = t->merges;
}

Test(tokenizer, builds_from_plain_arrays)
{
    tiny t;
    tiny_init(&t, "gpt-2");
    kv_err err = {0};
    tokenizer *tok = tokenizer_new(&t.spec, &err);
    cr_assert_not_null(tok, "%s", err.msg);
    tokenizer_ids ids = encode(tok, "aab b", 5);      /* token b is byte b; 256 is "ab" */
    int32_t want[] = {'a', 256, ' ', 'b'};
    assert_ids(&ids, want, 4, "aab b");
    tokenizer_ids_free(&ids);
    tokenizer_free(tok);
    tokenizer_free(NULL);
}

Test(tokenizer, unknown_pre_tokenizer_is_an_error_naming_it)
{
    tiny t;
    tiny_init(&t, "no-such-pre");
    kv_err err = {0};
    cr_assert_null(tokenizer_new(&t.spec, &err));
    cr_assert_eq(err.code, KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "'no-such-pre'"), "message: %s", err.msg);
    cr_assert(strstr(err.msg, "smollm") && strstr(err.msg, "llama-bpe") &&
              strstr(err.msg, "gpt-2"), "message lists the supported ones: %s", err.msg);
}

Test(tokenizer, unknown_tokenizer_model_is_an_error_naming_it)
{
    tiny t;
    tiny_init(&t, "smollm");
    t.spec.model = "wordpiece";
    kv_err err = {0};
    cr_assert_null(tokenizer_new(&t.spec, &err));
    cr_assert(strstr(err.msg, "'wordpiece'") && strstr(err.msg, "gpt2, llama"), "message: %s",
              err.msg);
    t.spec.model = "llama";            /* SentencePiece without scores */
    cr_assert_null(tokenizer_new(&t.spec, &err));
    cr_assert(strstr(err.msg, "tokenizer.ggml.scores: missing"), "message: %s", err.msg);
}

Test(tokenizer, merge_of_unknown_tokens_is_an_error_naming_it)
{
    tiny t;
    tiny_init(&t, "smollm");
    t.merges[0] = "a c";               /* "ac" is not a token */
    kv_err err = {0};
    cr_assert_null(tokenizer_new(&t.spec, &err));
    cr_assert(strstr(err.msg, "merges[0]") && strstr(err.msg, "'ac'"), "message: %s", err.msg);
}

/* --- kvtrace tokenize ------------------------------------------------------------ */

/* Run a shell command; its exit status, and its first output line in `out`. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    out[0] = '\0';
    if (fgets(out, (int)cap, p))
        out[strcspn(out, "\n")] = '\0';
    while (fgetc(p) != EOF)
        ;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int kvtrace(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "\"%s/kvtrace\" tokenize %s 2>/dev/null", getenv("KV_BIN"), args);
    return run(cmd, out, cap);
}

Test(kvtrace_tokenize, prints_ids_and_escaped_pieces)
{
    char args[4096], out[4096];
    snprintf(args, sizeof args, "\"%s\" 'Hello world! 123' --ids", test_model());
    cr_assert_eq(kvtrace(args, out, sizeof out), 0);
    cr_assert_str_eq(out, "19556 905 17 216 33 34 35");
    snprintf(args, sizeof args, "\"%s\" '  multiple'", test_model());
    cr_assert_eq(kvtrace(args, out, sizeof out), 0);
    cr_assert_str_eq(out, "216\t\" \"");
    snprintf(args, sizeof args, "\"%s\" Hi --chat --ids", test_model());
    cr_assert_eq(kvtrace(args, out, sizeof out), 0);
    cr_assert(!strncmp(out, "1 9690 198 2683 ", 16), "chat ids: %s", out);
}

Test(kvtrace_tokenize, exit_statuses)
{
    char args[4096], out[4096];
    cr_assert_eq(kvtrace("/nonexistent/model.gguf hello", out, sizeof out), 1);
    cr_assert_eq(kvtrace("", out, sizeof out), 2);
    snprintf(args, sizeof args, "\"%s\" hello --bogus", test_model());
    cr_assert_eq(kvtrace(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "\"%s\" a b", test_model());
    cr_assert_eq(kvtrace(args, out, sizeof out), 2);
    cr_assert_eq(kvtrace("--help", out, sizeof out), 0);
    cr_assert(strstr(out, "usage: kvtrace tokenize"), "help: %s", out);
}
