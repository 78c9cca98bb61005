/*
 * tokenizer_bpe.c — the byte-level half of BPE: the GPT-2 byte<->unicode map and the
 * merge loop over one pre-tokenized piece.  See tokenizer.h for where this sits, and
 * reference/inference.md §4.3 for the map and the merge order.
 *
 * The merge loop works on token ids, never on strings (invariants (1) and (2) of
 * tokenizer_impl.h): every byte starts as its own token, and a min-heap of adjacent
 * pairs, keyed by (merge rank, position), picks the next merge.  Heap entries go stale
 * when a neighbour merges first; they are recognised on pop and skipped, as in
 * llama.cpp's llm_tokenizer_bpe and HF's BPE::merge_all.
 */
#include "tokenizer_impl.h"

#include "vec.h"

#include <stdlib.h>
#include <string.h>

/* --- byte <-> unicode ------------------------------------------------------------- */

/* GPT-2 keeps the 188 printable bytes as their own code points and moves the other 68
 * (0x00-0x20, 0x7F-0xA0, 0xAD), in increasing order, to U+0100..U+0143, so that every
 * byte has a visible, non-space character in the vocabulary. */
static bool byte_is_printable(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tokenizer__byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 0x100 + b;                     /* 33 bytes: U+0100..U+0120 */
    if (b <= 0xA0)
        return 0x100 + 33 + (b - 0x7F);       /* 34 bytes: U+0121..U+0142 */
    return 0x100 + 67;                        /* 0xAD: U+0143 */
}

int tokenizer__cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 0x100;
    if (n <= 32)
        return (int)n;
    if (n <= 66)
        return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}

/* --- scratch ---------------------------------------------------------------------- */

tokenizer_bpe_scratch *tokenizer__bpe_scratch_new(void)
{
    return calloc(1, sizeof(tokenizer_bpe_scratch));
}

void tokenizer__bpe_scratch_free(tokenizer_bpe_scratch *s)
{
    if (!s)
        return;
    free(s->sym);
    free(s->heap);
    free(s->mapped);
    free(s);
}

/* --- heap ------------------------------------------------------------------------- */

static bool pair_before(const bpe_pair *a, const bpe_pair *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void heap_swap(bpe_pair *h, size_t i, size_t j)
{
    bpe_pair tmp = h[i];
    h[i] = h[j];
    h[j] = tmp;
}

int tokenizer__heap_push(tokenizer_bpe_scratch *s, bpe_pair p)
{
    if (vec_reserve((void **)&s->heap, sizeof *s->heap, s->n_heap + 1, &s->cap_heap))
        return KV_ENOMEM;
    size_t i = s->n_heap++;
    s->heap[i] = p;
    while (i > 0 && pair_before(&s->heap[i], &s->heap[(i - 1) / 2])) {
        heap_swap(s->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return 0;
}

bpe_pair tokenizer__heap_pop(tokenizer_bpe_scratch *s)
{
    bpe_pair top = s->heap[0];
    s->heap[0] = s->heap[--s->n_heap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->n_heap && pair_before(&s->heap[l], &s->heap[m]))
            m = l;
        if (r < s->n_heap && pair_before(&s->heap[r], &s->heap[m]))
            m = r;
        if (m == i)
            break;
        heap_swap(s->heap, i, m);
        i = m;
    }
    return top;
}

/* --- merge loop ------------------------------------------------------------------- */

/* Push the pair (left, left.next) if those two tokens merge. */
static int push_pair(const tokenizer *t, tokenizer_bpe_scratch *s, int32_t left)
{
    if (left < 0 || s->sym[left].next < 0)
        return 0;
    bpe_pair p = {.left = left, .right = s->sym[left].next};
    p.left_id = s->sym[p.left].id;
    p.right_id = s->sym[p.right].id;
    int32_t rank;
    if (!tokenizer__merge(t, p.left_id, p.right_id, &rank, &p.joined))
        return 0;
    p.key = rank;
    return tokenizer__heap_push(s, p);
}

static bool pair_is_stale(const tokenizer_bpe_scratch *s, const bpe_pair *p)
{
    const bpe_symbol *l = &s->sym[p->left], *r = &s->sym[p->right];
    return l->id != p->left_id || l->next != p->right || r->id != p->right_id;
}

/* Merge p.right into p.left, then offer the two new neighbouring pairs. */
static int apply_pair(const tokenizer *t, tokenizer_bpe_scratch *s, const bpe_pair *p)
{
    bpe_symbol *l = &s->sym[p->left], *r = &s->sym[p->right];
    l->id = p->joined;
    l->next = r->next;
    if (r->next >= 0)
        s->sym[r->next].prev = p->left;
    r->id = -1;
    int rc = push_pair(t, s, l->prev);
    return rc ? rc : push_pair(t, s, p->left);
}

/* One symbol per byte that has a token.  A byte without one (SmolLM2 has no token for
 * 21 bytes, 0x04 and 0xFF among them) is dropped before merging, as HF tokenizers does
 * in a byte-level BPE without an unknown token; returns the number of symbols. */
static int32_t seed_symbols(const tokenizer *t, tokenizer_bpe_scratch *s, const uint8_t *piece,
                            size_t len)
{
    if (vec_reserve((void **)&s->sym, sizeof *s->sym, len, &s->cap_sym))
        return -1;
    int32_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (t->byte_token[piece[i]] >= 0) {
            s->sym[n] = (bpe_symbol){.id = t->byte_token[piece[i]], .prev = n - 1, .next = n + 1};
            n++;
        }
    if (n > 0)
        s->sym[n - 1].next = -1;
    s->n_heap = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (push_pair(t, s, i))
            return -1;
    return n;
}

/* With ignore_merges (Llama 3), a piece that is already a token is emitted whole,
 * even where the merges would have split it differently. */
static int32_t whole_piece_token(const tokenizer *t, tokenizer_bpe_scratch *s,
                                 const uint8_t *piece, size_t len)
{
    if (vec_reserve((void **)&s->mapped, 1, 2 * len, &s->cap_mapped))
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t cp = tokenizer__byte_to_cp(piece[i]);   /* < U+0800: one or two bytes */
        if (cp < 0x80) {
            s->mapped[n++] = (char)cp;
        } else {
            s->mapped[n++] = (char)(0xC0 | (cp >> 6));
            s->mapped[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return tokenizer__find(t, s->mapped, n);
}

int tokenizer__bpe_piece(const tokenizer *t, tokenizer_bpe_scratch *s, const uint8_t *piece,
                         size_t len, tokenizer_ids *out)
{
    if (len == 0)
        return 0;
    if (t->pre.ignore_merges) {
        int32_t id = whole_piece_token(t, s, piece, len);
        if (id >= 0)
            return tokenizer__ids_push(out, id);
    }
    int32_t n = seed_symbols(t, s, piece, len);
    if (n < 0)
        return KV_ENOMEM;
    while (s->n_heap > 0) {
        bpe_pair p = tokenizer__heap_pop(s);
        if (!pair_is_stale(s, &p) && apply_pair(t, s, &p))
            return KV_ENOMEM;
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = s->sym[i].next)
        if (tokenizer__ids_push(out, s->sym[i].id))
            return KV_ENOMEM;
    return 0;
}
