/*
 * tokenizer_gguf.c — a tokenizer from a GGUF file's tokenizer.* metadata.  Reads the
 * keys listed in reference/inference.md §4 into a tokenizer_spec, checking each key's
 * type and each array's length first, and hands the spec to tokenizer_new, which
 * copies what it keeps: nothing here outlives the call.
 */
#include "tokenizer.h"

#include "gguf.h"

#include <stdlib.h>
#include <string.h>

/* Borrowed string arrays, with lengths (GGUF strings are not NUL-terminated). */
typedef struct str_array {
    const char **s;            /* (n,) */
    size_t      *len;          /* (n,) */
    uint64_t     n;
} str_array;

static void str_array_free(str_array *a)
{
    free(a->s);
    free(a->len);
}

/* A string key copied into `buf`; an absent key leaves buf empty. */
static int read_name(const gguf_file *f, const char *key, char *buf, size_t cap, kv_err *err)
{
    buf[0] = '\0';
    int64_t i = gguf_find_key(f, key);
    if (i < 0)
        return 0;
    size_t len;
    const char *s = gguf_get_str(f, i, &len);
    if (!s)
        return kv_errorf(err, KV_EFORMAT, "%s: %s is %s, expected a string", gguf_path(f),
                         key, gguf_type_name(gguf_key_type(f, i)));
    if (len >= cap)
        len = cap - 1;                 /* long enough to name it in an error */
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

/* A token id key; absent: -1. */
static int read_id(const gguf_file *f, const char *key, int32_t *out, kv_err *err)
{
    *out = -1;
    int64_t i = gguf_find_key(f, key), v;
    if (i < 0)
        return 0;
    if (gguf_get_int(f, i, &v) || v < 0 || v > INT32_MAX)
        return kv_errorf(err, KV_EFORMAT, "%s: %s is not a token id (%s)", gguf_path(f), key,
                         gguf_type_name(gguf_key_type(f, i)));
    *out = (int32_t)v;
    return 0;
}

/* A boolean key; absent: -1 (the tokenizer then uses its default). */
static int read_flag(const gguf_file *f, const char *key, int *out, kv_err *err)
{
    *out = -1;
    int64_t i = gguf_find_key(f, key), v;
    if (i < 0)
        return 0;
    if (gguf_get_int(f, i, &v))
        return kv_errorf(err, KV_EFORMAT, "%s: %s is %s, expected a bool", gguf_path(f), key,
                         gguf_type_name(gguf_key_type(f, i)));
    *out = v != 0;
    return 0;
}

static int read_strings(const gguf_file *f, const char *key, bool required, str_array *a,
                        kv_err *err)
{
    *a = (str_array){0};
    int64_t i = gguf_find_key(f, key);
    if (i < 0)
        return required ? kv_errorf(err, KV_EFORMAT, "%s: %s: missing, the tokenizer needs "
                                    "it", gguf_path(f), key) : 0;
    if (gguf_arr_type(f, i) != GGUF_TYPE_STRING)
        return kv_errorf(err, KV_EFORMAT, "%s: %s: expected an array of strings",
                         gguf_path(f), key);
    a->n = gguf_arr_len(f, i);
    if (a->n > INT32_MAX)
        return kv_errorf(err, KV_ERANGE, "%s: %s: %llu entries, expected at most %d",
                         gguf_path(f), key, (unsigned long long)a->n, INT32_MAX);
    a->s = malloc((a->n + 1) * sizeof *a->s);
    a->len = malloc((a->n + 1) * sizeof *a->len);
    if (!a->s || !a->len)
        return kv_errorf(err, KV_ENOMEM, "%s: %s: out of memory", gguf_path(f), key);
    for (uint64_t j = 0; j < a->n; j++)
        a->s[j] = gguf_arr_str(f, i, j, &a->len[j]);
    return 0;
}

/* tokenizer.ggml.token_type: optional, but if present one int per token. */
static int read_types(const gguf_file *f, uint64_t n_vocab, int32_t **out, kv_err *err)
{
    static const char key[] = "tokenizer.ggml.token_type";
    *out = NULL;
    int64_t i = gguf_find_key(f, key);
    if (i < 0)
        return 0;
    if (gguf_arr_len(f, i) != n_vocab)
        return kv_errorf(err, KV_EFORMAT, "%s: %s: %llu entries, expected one per token (%llu)",
                         gguf_path(f), key, (unsigned long long)gguf_arr_len(f, i),
                         (unsigned long long)n_vocab);
    *out = malloc(n_vocab * sizeof **out);
    if (!*out)
        return kv_errorf(err, KV_ENOMEM, "%s: %s: out of memory", gguf_path(f), key);
    for (uint64_t j = 0; j < n_vocab; j++) {
        int64_t v;
        if (gguf_arr_int(f, i, j, &v) || v < INT32_MIN || v > INT32_MAX)
            return kv_errorf(err, KV_EFORMAT, "%s: %s[%llu]: expected an integer",
                             gguf_path(f), key, (unsigned long long)j);
        (*out)[j] = (int32_t)v;
    }
    return 0;
}

/* tokenizer.ggml.scores: optional (SentencePiece needs it), one float per token. */
static int read_scores(const gguf_file *f, uint64_t n_vocab, float **out, kv_err *err)
{
    static const char key[] = "tokenizer.ggml.scores";
    *out = NULL;
    int64_t i = gguf_find_key(f, key);
    if (i < 0)
        return 0;
    const gguf_array *a = gguf_get_arr(f, i);
    if (!a || gguf_array_len(a) != n_vocab)
        return kv_errorf(err, KV_EFORMAT, "%s: %s: expected an array of one number per token "
                         "(%llu)", gguf_path(f), key, (unsigned long long)n_vocab);
    if (!(*out = malloc(n_vocab * sizeof **out + 1)))
        return kv_errorf(err, KV_ENOMEM, "%s: %s: out of memory", gguf_path(f), key);
    for (uint64_t j = 0; j < n_vocab; j++) {
        double v;
        if (gguf_array_float(a, j, &v))
            return kv_errorf(err, KV_EFORMAT, "%s: %s[%llu]: expected a number", gguf_path(f),
                             key, (unsigned long long)j);
        (*out)[j] = (float)v;
    }
    return 0;
}

static int read_ids(const gguf_file *f, tokenizer_spec *spec, kv_err *err)
{
    int rc = read_id(f, "tokenizer.ggml.bos_token_id", &spec->bos_id, err);
    rc = rc ? rc : read_id(f, "tokenizer.ggml.eos_token_id", &spec->eos_id, err);
    rc = rc ? rc : read_id(f, "tokenizer.ggml.eot_token_id", &spec->eot_id, err);
    rc = rc ? rc : read_id(f, "tokenizer.ggml.unknown_token_id", &spec->unk_id, err);
    rc = rc ? rc : read_id(f, "tokenizer.ggml.padding_token_id", &spec->pad_id, err);
    rc = rc ? rc : read_flag(f, "tokenizer.ggml.add_bos_token", &spec->add_bos, err);
    rc = rc ? rc : read_flag(f, "tokenizer.ggml.add_eos_token", &spec->add_eos, err);
    rc = rc ? rc : read_flag(f, "tokenizer.ggml.add_space_prefix", &spec->add_space_prefix, err);
    return rc;
}

static void read_template(const gguf_file *f, tokenizer_spec *spec)
{
    int64_t i = gguf_find_key(f, "tokenizer.chat_template");
    if (i >= 0)
        spec->chat_template = gguf_get_str(f, i, &spec->chat_template_len);
}

tokenizer *tokenizer_from_gguf(const gguf_file *f, kv_err *err)
{
    return tokenizer_from_gguf_pre(f, NULL, err);
}

tokenizer *tokenizer_from_gguf_pre(const gguf_file *f, const char *pre_override, kv_err *err)
{
    char model[64], pre[64];
    str_array tokens = {0}, merges = {0};
    int32_t *types = NULL;
    float *scores = NULL;
    tokenizer *t = NULL;
    tokenizer_spec spec = tokenizer_spec_default();
    int rc = read_name(f, "tokenizer.ggml.model", model, sizeof model, err);
    rc = rc ? rc : read_name(f, "tokenizer.ggml.pre", pre, sizeof pre, err);
    rc = rc ? rc : read_strings(f, "tokenizer.ggml.tokens", true, &tokens, err);
    rc = rc ? rc : read_strings(f, "tokenizer.ggml.merges", false, &merges, err);
    rc = rc ? rc : read_types(f, tokens.n, &types, err);
    rc = rc ? rc : read_scores(f, tokens.n, &scores, err);
    rc = rc ? rc : read_ids(f, &spec, err);
    if (!rc) {
        read_template(f, &spec);
        spec.source = gguf_path(f);
        spec.model = model[0] ? model : NULL;
        spec.pre = pre_override ? pre_override : pre[0] ? pre : NULL;
        spec.n_vocab = (int32_t)tokens.n;
        spec.tokens = tokens.s;
        spec.token_lens = tokens.len;
        spec.token_types = types;
        spec.scores = scores;
        spec.n_merges = (int32_t)merges.n;
        spec.merges = merges.s;
        spec.merge_lens = merges.len;
        t = tokenizer_new(&spec, err);
    }
    str_array_free(&tokens);
    str_array_free(&merges);
    free(types);
    free(scores);
    return t;
}
