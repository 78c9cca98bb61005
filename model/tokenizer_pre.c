/*
 * tokenizer_pre.c — pre-tokenizers: the regexes that cut text into the pieces BPE
 * works on, chosen by tokenizer.ggml.pre.  Regexes and names follow llama.cpp's
 * llm_tokenizer_bpe (src/llama-vocab.cpp); reference/inference.md §4.3 lists them.
 *
 * A family's regexes run in sequence: regex k splits every piece that regex k-1
 * produced, and the unmatched gaps become pieces too, so no byte is ever dropped.
 * Each piece is matched on its own, so a lookahead such as `\s+(?!\S)` never sees
 * past the end of its piece (HF `tokenizers` behaves the same way).
 */
#include "tokenizer_impl.h"

#include "vec.h"

#include <stdlib.h>
#include <string.h>

/* GPT-2, with the trailing `\s+` that HF's ByteLevel and llama.cpp's hand-written
 * splitter both have.  `\s+(?!\S)` leaves a run's last space to the next word. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Llama 3: case-insensitive contractions, digits in groups of up to three. */
#define RE_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])" \
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"     \
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Every digit its own piece (HF Digits(individual_digits = true)). */
#define RE_DIGIT "\\p{N}"

typedef enum pre_family_id { PRE_GPT2, PRE_STARCODER, PRE_LLAMA3 } pre_family_id;

typedef struct pre_family {
    const char *regex[TOKENIZER__MAX_REGEX];   /* NULL-terminated when shorter */
    bool        ignore_merges;
    bool        add_bos;
} pre_family;

static const pre_family families[] = {
    [PRE_GPT2]      = {{RE_GPT2},           false, false},
    [PRE_STARCODER] = {{RE_DIGIT, RE_GPT2}, false, false},
    [PRE_LLAMA3]    = {{RE_LLAMA3},         true,  true},
};

/* tokenizer.ggml.pre names accepted, and the family each selects (as llama.cpp maps them). */
#define TOKENIZER_PRE_NAMES(X)                                                          \
    X("gpt-2", PRE_GPT2) X("phi-2", PRE_GPT2) X("mpt", PRE_GPT2) X("olmo", PRE_GPT2)    \
    X("jais", PRE_GPT2)                                                                 \
    X("smollm", PRE_STARCODER) X("starcoder", PRE_STARCODER) X("refact", PRE_STARCODER) \
    X("command-r", PRE_STARCODER) X("codeshell", PRE_STARCODER)                         \
    X("exaone", PRE_STARCODER) X("minerva-7b", PRE_STARCODER)                           \
    X("llama-bpe", PRE_LLAMA3) X("llama3", PRE_LLAMA3) X("llama-v3", PRE_LLAMA3)        \
    X("falcon3", PRE_LLAMA3) X("pixtral", PRE_LLAMA3)

static const struct { const char *name; pre_family_id family; } pre_names[] = {
#define PRE_ENTRY(name, family) {name, family},
    TOKENIZER_PRE_NAMES(PRE_ENTRY)
#undef PRE_ENTRY
};

const char *tokenizer_supported_pres(void)
{
#define PRE_LIST(name, family) ", " name
    return &(TOKENIZER_PRE_NAMES(PRE_LIST))[2];
#undef PRE_LIST
}

/* The table's entry for a name, or -1. */
static int find_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (!strcmp(pre_names[i].name, name))
            return (int)i;
    return -1;
}

static int compile_regex(pcre2_code **out, const char *pattern, const char *source,
                         kv_err *err)
{
    int code;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                         &code, &at, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: pre-tokenizer regex, offset %zu: %s",
                         source, (size_t)at, (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);   /* failure only means slower matching */
    return 0;
}

int tokenizer__pre_init(tokenizer_pre *pre, const char *name, const char *source, kv_err *err)
{
    memset(pre, 0, sizeof *pre);
    int k = find_name(name);
    if (k < 0)
        return kv_errorf(err, KV_EUNSUPPORTED,
                         "%s: tokenizer.ggml.pre: unknown pre-tokenizer '%s'; supported: %s",
                         source, name ? name : "(missing)", tokenizer_supported_pres());
    const pre_family *fam = &families[pre_names[k].family];
    pre->name = pre_names[k].name;
    pre->ignore_merges = fam->ignore_merges;
    pre->add_bos = fam->add_bos;
    for (int i = 0; i < TOKENIZER__MAX_REGEX && fam->regex[i]; i++) {
        int rc = compile_regex(&pre->re[i], fam->regex[i], source, err);
        if (rc)
            return rc;
        pre->n_re = i + 1;
    }
    return 0;
}

void tokenizer__pre_free(tokenizer_pre *pre)
{
    for (int i = 0; i < pre->n_re; i++)
        pcre2_code_free(pre->re[i]);
    pre->n_re = 0;
}

int tokenizer__spans_push(tokenizer_spans *s, size_t off, size_t len)
{
    if (vec_reserve((void **)&s->v, sizeof *s->v, s->n + 1, &s->cap) != 0)
        return KV_ENOMEM;
    s->v[s->n++] = (tokenizer_span){off, len};
    return 0;
}

/* Length of the UTF-8 character with this lead byte (the text is valid UTF-8). */
static size_t utf8_len(uint8_t lead)
{
    return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

/* Split one piece with one regex; matches and gaps both go to `out`. */
static int split_one(const pcre2_code *re, pcre2_match_data *md, const char *text,
                     tokenizer_span piece, tokenizer_spans *out, kv_err *err)
{
    PCRE2_SPTR subject = (PCRE2_SPTR)(text + piece.off);
    size_t start = 0, gap = 0;
    while (start < piece.len) {
        int rc = pcre2_match(re, subject, piece.len, start, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return kv_errorf(err, KV_ERANGE, "pre-tokenizer: byte %zu: %s",
                             piece.off + start, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) {            /* an empty match: step over one character */
            if (ov[0] >= piece.len)
                break;
            start = ov[0] + utf8_len(subject[ov[0]]);
            continue;
        }
        if ((ov[0] > gap && tokenizer__spans_push(out, piece.off + gap, ov[0] - gap)) ||
            tokenizer__spans_push(out, piece.off + ov[0], ov[1] - ov[0]))
            return KV_ENOMEM;
        start = gap = ov[1];
    }
    if (gap < piece.len && tokenizer__spans_push(out, piece.off + gap, piece.len - gap))
        return KV_ENOMEM;
    return 0;
}

int tokenizer__pre_split(const tokenizer_pre *pre, pcre2_match_data *md, const char *text,
                         tokenizer_span frag, tokenizer_spans *pieces, tokenizer_spans *tmp,
                         kv_err *err)
{
    pieces->n = 0;
    if (tokenizer__spans_push(pieces, frag.off, frag.len))
        return KV_ENOMEM;
    for (int k = 0; k < pre->n_re; k++) {
        tmp->n = 0;
        for (size_t i = 0; i < pieces->n; i++) {
            int rc = split_one(pre->re[k], md, text, pieces->v[i], tmp, err);
            if (rc)
                return rc;
        }
        tokenizer_spans swap = *pieces;
        *pieces = *tmp;
        *tmp = swap;
    }
    return 0;
}
