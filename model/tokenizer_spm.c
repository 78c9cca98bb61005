/*
 * tokenizer_spm.c — SentencePiece-style encoding (tokenizer.ggml.model = "llama":
 * Gemma 3, Llama 2, Mistral), one raw fragment at a time; reference/inference.md §4.2.
 *
 * The fragment's spaces become U+2581 '▁' (and one is put in front when the model
 * adds a space prefix), its UTF-8 characters are the first symbols, and adjacent
 * symbols whose concatenation is a token merge, the pair whose token has the highest
 * score first and the leftmost on ties — SentencePiece's BPE encoder and llama.cpp's
 * llm_tokenizer_spm alike.  Only normal, user-defined and unused tokens take part
 * (SentencePiece keeps control and byte pieces out of its piece table).  A symbol
 * left that is no token falls back to one <0xNN> token per byte.
 *
 * The merge loop shares its heap with BPE (tokenizer_bpe.c): a pair's key is −score,
 * and a pair goes stale when either symbol has changed length since it was pushed.
 */
#include "tokenizer_impl.h"

#include "vec.h"

#include <string.h>

#define SPACE_MARK "\xE2\x96\x81"   /* U+2581, what ' ' becomes */

/* May a token of this type be the result of a merge? */
static bool mergeable(int32_t type)
{
    return type == TOKENIZER_TYPE_NORMAL || type == TOKENIZER_TYPE_USER_DEFINED ||
           type == TOKENIZER_TYPE_UNUSED;
}

/* The id of text[off .. off+len) if it is a token that symbols may become, else -1. */
static int32_t piece_id(const tokenizer *t, const char *text, uint32_t off, uint32_t len)
{
    int32_t id = tokenizer__find(t, text + off, len);
    return id >= 0 && mergeable(t->tokens[id].type) ? id : -1;
}

/* Push the pair (left, left.next) if their concatenation is a token. */
static int push_pair(const tokenizer *t, tokenizer_bpe_scratch *s, int32_t left)
{
    if (left < 0 || s->sym[left].next < 0)
        return 0;
    const bpe_symbol *l = &s->sym[left], *r = &s->sym[l->next];
    int32_t id = piece_id(t, s->mapped, l->off, l->len + r->len);
    if (id < 0)
        return 0;
    bpe_pair p = {.key = -(double)t->scores[id], .left = left, .right = l->next,
                  .left_id = (int32_t)l->len, .right_id = (int32_t)r->len, .joined = id};
    return tokenizer__heap_push(s, p);
}

static bool pair_is_stale(const tokenizer_bpe_scratch *s, const bpe_pair *p)
{
    const bpe_symbol *l = &s->sym[p->left], *r = &s->sym[p->right];
    return l->len != (uint32_t)p->left_id || r->len != (uint32_t)p->right_id ||
           l->next != p->right;
}

/* The fragment in vocabulary form in s->mapped (spaces as ▁), one symbol per
 * character; returns the number of symbols, or -1 when memory runs out. */
static int32_t seed(tokenizer_bpe_scratch *s, const char *text, size_t len, bool prefix)
{
    if (vec_reserve((void **)&s->mapped, 1, 3 * (len + 1), &s->cap_mapped) ||
        vec_reserve((void **)&s->sym, sizeof *s->sym, len + 1, &s->cap_sym))
        return -1;
    size_t n = 0;
    if (prefix)
        memcpy(s->mapped, SPACE_MARK, 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(s->mapped + n, SPACE_MARK, 3), n += 3;
        else
            s->mapped[n++] = text[i];
    }
    int32_t k = 0;
    for (uint32_t i = 0, step; i < n; i += step, k++) {
        uint32_t cp;
        step = (uint32_t)tokenizer_utf8_char(s->mapped + i, n - i, &cp);   /* valid UTF-8 */
        s->sym[k] = (bpe_symbol){.prev = k - 1, .next = k + 1, .off = i, .len = step};
    }
    if (k > 0)
        s->sym[k - 1].next = -1;
    return k;
}

/* Emit one final symbol: its token, or a token per byte (byte fallback). */
static int emit(const tokenizer *t, const tokenizer_bpe_scratch *s, const bpe_symbol *sym,
                tokenizer_ids *out)
{
    int32_t id = piece_id(t, s->mapped, sym->off, sym->len);
    if (id >= 0)
        return tokenizer__ids_push(out, id);
    for (uint32_t i = 0; i < sym->len; i++) {   /* a byte without a token: <unk>, or dropped */
        int32_t b = t->byte_token[(uint8_t)s->mapped[sym->off + i]];
        b = b >= 0 ? b : t->info.unk_id;
        if (b >= 0 && tokenizer__ids_push(out, b))
            return KV_ENOMEM;
    }
    return 0;
}

int tokenizer__spm_fragment(const tokenizer *t, tokenizer_bpe_scratch *s, const char *text,
                            size_t len, bool prefix, tokenizer_ids *out)
{
    int32_t n = seed(s, text, len, prefix);
    if (n < 0)
        return KV_ENOMEM;
    s->n_heap = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (push_pair(t, s, i))
            return KV_ENOMEM;
    while (s->n_heap > 0) {
        bpe_pair p = tokenizer__heap_pop(s);
        if (pair_is_stale(s, &p))
            continue;
        bpe_symbol *l = &s->sym[p.left], *r = &s->sym[p.right];
        l->len += r->len;                /* merge right into left */
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = p.left;
        r->len = 0;
        if (push_pair(t, s, l->prev) || push_pair(t, s, p.left))
            return KV_ENOMEM;
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = s->sym[i].next)
        if (emit(t, s, &s->sym[i], out))
            return KV_ENOMEM;
    return 0;
}
