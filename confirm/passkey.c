/* passkey.c — the passkey-retrieval generator; see passkey.h. */
#include "passkey.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HEAD[] = "There is an important info hidden inside a lot of irrelevant text. "
                           "Find it and memorize it. I will quiz you about the important "
                           "information there.";
static const char QUESTION[] = "\nWhat is the pass key? The pass key is";
static const char *const FILLER[] = {" The grass is green.", " The sky is blue.",
                                     " The sun is yellow.", " Here we go.",
                                     " There and back again."};
#define N_FILLER 5

int passkey_key(uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;   /* splitmix64, one draw */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return 10000 + (int)(z % 90000);
}

static int count_tokens(const tokenizer *tok, const char *text, kv_err *err)
{
    tokenizer_ids ids = {0};
    int rc = tokenizer_encode(tok, text, strlen(text), TOKENIZER_ADD_SPECIAL, &ids, err);
    int n = rc ? rc : (int)ids.n;
    tokenizer_ids_free(&ids);
    return n;
}

/* The text with k filler sentences, the key after the first `at` of them. */
static char *compose(int k, int at, int key)
{
    char needle[96];
    snprintf(needle, sizeof needle, " The pass key is %d. Remember it. %d is the pass key.", key,
             key);
    size_t len = sizeof HEAD + sizeof QUESTION + strlen(needle) + (size_t)k * 32;
    char *text = malloc(len);
    if (!text)
        return NULL;
    size_t o = (size_t)snprintf(text, len, "%s", HEAD);
    for (int i = 0; i <= k; i++) {
        if (i == at)
            o += (size_t)snprintf(text + o, len - o, "%s", needle);
        if (i < k)
            o += (size_t)snprintf(text + o, len - o, "%s", FILLER[i % N_FILLER]);
    }
    snprintf(text + o, len - o, "%s", QUESTION);
    return text;
}

/* (1) Filler sentences for about `tokens` tokens: the fixed part, plus the mean
 * tokens of one filler cycle. */
static int filler_count(const tokenizer *tok, int tokens, int key, kv_err *err)
{
    char *bare = compose(0, 0, key), *cycle = compose(N_FILLER, 0, key);
    int fixed = bare ? count_tokens(tok, bare, err) : KV_ENOMEM;
    int five = cycle && fixed >= 0 ? count_tokens(tok, cycle, err) - fixed : KV_ENOMEM;
    free(bare);
    free(cycle);
    if (fixed < 0 || five <= 0)
        return fixed < 0 ? fixed : kv_errorf(err, KV_ENOMEM, "out of memory");
    if (tokens < fixed)
        return kv_errorf(err, KV_ERANGE, "%d tokens cannot hold the %d tokens of "
                         "instructions, key and question", tokens, fixed);
    return (int)lround((double)(tokens - fixed) * N_FILLER / five);
}

int passkey_make(const tokenizer *tok, int tokens, double depth, uint64_t seed,
                 passkey_sample *out, kv_err *err)
{
    memset(out, 0, sizeof *out);
    if (!(depth >= 0 && depth <= 1))
        return kv_errorf(err, KV_ERANGE, "depth %g, expected 0 .. 1", depth);
    out->key = passkey_key(seed);
    int k = filler_count(tok, tokens, out->key, err);
    if (k < 0)
        return k;
    if (!(out->prompt = compose(k, (int)lround(depth * k), out->key)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    int rc = tokenizer_encode(tok, out->prompt, strlen(out->prompt), TOKENIZER_ADD_SPECIAL,
                              &out->ids, err);
    out->n_tokens = (int)out->ids.n;
    if (rc)
        passkey_sample_free(out);
    return rc;
}

void passkey_sample_free(passkey_sample *s)
{
    if (!s)
        return;
    free(s->prompt);
    tokenizer_ids_free(&s->ids);
    memset(s, 0, sizeof *s);
}

int passkey_correct(const char *answer, int key)
{
    while (*answer && !isdigit((unsigned char)*answer))
        answer++;
    char *end;
    long v = strtol(answer, &end, 10);
    return end != answer && v == key && end - answer == 5;
}
