/*
 * tokenizer.c — building a tokenizer from plain arrays, and the encode/decode drivers.
 * tokenizer.h states the contract and the encoding steps; tokenizer_impl.h the
 * invariants this file establishes.  The BPE merge loop lives in tokenizer_bpe.c, the
 * regexes in tokenizer_pre.c, the chat template in tokenizer_chat.c.
 *
 * Two hash tables keep encoding linear in the text: the vocabulary (string -> id) and
 * the merges ((left id, right id) -> rank, joined id), both open addressing with
 * linear probing over a power-of-two table at most half full.
 */
#include "tokenizer_impl.h"

#include "vec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUPPORTED_MODELS "gpt2, llama"
#define SPACE_MARK "\xE2\x96\x81"   /* U+2581: SentencePiece's space */

const char *tokenizer_supported_models(void) { return SUPPORTED_MODELS; }

tokenizer_spec tokenizer_spec_default(void)
{
    return (tokenizer_spec){.bos_id = -1, .eos_id = -1, .eot_id = -1, .unk_id = -1,
                            .pad_id = -1, .add_bos = -1, .add_eos = -1,
                            .add_space_prefix = -1};
}

/* --- UTF-8 ------------------------------------------------------------------------ */

size_t tokenizer_utf8_char(const char *s, size_t n, uint32_t *cp)
{
    const uint8_t *p = (const uint8_t *)s;
    if (n == 0)
        return 0;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    size_t len = (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3
               : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t c = p[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_cp[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;                   /* overlong, out of range, or a surrogate */
    *cp = c;
    return len;
}

/* Offset of the first byte that is not valid UTF-8, or SIZE_MAX. */
static size_t utf8_invalid_at(const char *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if ((k = tokenizer_utf8_char(s + i, n - i, &cp)) == 0)
            return i;
    return SIZE_MAX;
}

/* --- hash tables ------------------------------------------------------------------ */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;                         /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static uint32_t hash_pair(uint64_t key)
{
    key ^= key >> 33;                                 /* murmur3's finaliser */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (uint32_t)key;
}

static uint32_t table_mask(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return (uint32_t)(cap - 1);
}

int32_t tokenizer__find(const tokenizer *t, const char *s, size_t len)
{
    for (uint32_t i = hash_bytes(s, len) & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        int32_t id = t->vocab_slots[i];
        if (id < 0)
            return -1;
        const tokenizer_token *tok = &t->tokens[id];
        if (tok->text_len == len && !memcmp(tok->text, s, len))
            return id;
    }
}

bool tokenizer__merge(const tokenizer *t, int32_t left, int32_t right, int32_t *rank,
                      int32_t *joined)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = hash_pair(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const tokenizer_merge *m = &t->merge_slots[i];
        if (m->key == TOKENIZER__EMPTY)
            return false;
        if (m->key == key) {
            *rank = m->rank;
            *joined = m->id;
            return true;
        }
    }
}

/* A later duplicate replaces an earlier one, as in llama.cpp's token_to_id map. */
static void vocab_insert(tokenizer *t, int32_t id)
{
    const tokenizer_token *tok = &t->tokens[id];
    uint32_t i = hash_bytes(tok->text, tok->text_len) & t->vocab_mask;
    for (;; i = (i + 1) & t->vocab_mask) {
        int32_t other = t->vocab_slots[i];
        if (other < 0 || (t->tokens[other].text_len == tok->text_len &&
                          !memcmp(t->tokens[other].text, tok->text, tok->text_len)))
            break;
    }
    t->vocab_slots[i] = id;
}

/* A repeated pair keeps its first (lowest) rank. */
static void merge_insert(tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = hash_pair(key) & t->merge_mask;
    while (t->merge_slots[i].key != TOKENIZER__EMPTY && t->merge_slots[i].key != key)
        i = (i + 1) & t->merge_mask;
    if (t->merge_slots[i].key == TOKENIZER__EMPTY)
        t->merge_slots[i] = (tokenizer_merge){key, rank, id};
}

/* --- building --------------------------------------------------------------------- */

static size_t spec_len(const char *const *s, const size_t *lens, int32_t i)
{
    return lens ? lens[i] : (s[i] ? strlen(s[i]) : 0);
}

/* What a vocabulary string decodes to: each code point back through the byte map.
 * A character outside the map keeps its own bytes, so nothing is ever lost. */
static size_t token_bytes(const char *text, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0, step; i < n; i += step) {
        uint32_t cp;
        step = tokenizer_utf8_char(text + i, n - i, &cp);
        int b = step ? tokenizer__cp_to_byte(cp) : -1;
        if (b >= 0) {
            out[k++] = (char)b;
        } else {
            step = step ? step : 1;
            memcpy(out + k, text + i, step);
            k += step;
        }
    }
    return k;
}

/* SentencePiece: '▁' is a space, and a byte token <0xNN> is byte NN. */
static size_t spm_token_bytes(const char *text, size_t n, int32_t type, char *out)
{
    unsigned b;
    if (type == TOKENIZER_TYPE_BYTE && n == 6 && sscanf(text, "<0x%2X>", &b) == 1) {
        out[0] = (char)b;
        return 1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && !memcmp(text + i, SPACE_MARK, 3))
            out[k++] = ' ', i += 3;
        else
            out[k++] = text[i++];
    }
    return k;
}

static bool decodes_raw(int32_t type)
{
    return type == TOKENIZER_TYPE_CONTROL || type == TOKENIZER_TYPE_USER_DEFINED;
}

static int load_tokens(tokenizer *t, const tokenizer_spec *spec, kv_err *err)
{
    int32_t n = spec->n_vocab;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = spec_len(spec->tokens, spec->token_lens, i);
        if ((len && !spec->tokens[i]) || len > UINT32_MAX / 2)
            return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.tokens[%d]: %s", t->source,
                             i, len ? "bad length" : "missing");
        total += 2 * (len + 1);                       /* text, then its bytes (never longer) */
    }
    t->tokens = calloc((uint32_t)n, sizeof *t->tokens);   /* n > 0: check_spec */
    char *p = t->arena = malloc(total);
    if (!t->tokens || !p)
        return kv_errorf(err, KV_ENOMEM, "%s: %d tokens: out of memory", t->source, n);
    for (int32_t i = 0; i < n; i++) {
        tokenizer_token *tok = &t->tokens[i];
        int32_t type = spec->token_types ? spec->token_types[i] : TOKENIZER_TYPE_NORMAL;
        if (type < 0 || type > TOKENIZER_TYPE_BYTE)
            return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.token_type[%d] is %d, "
                             "expected 0..6", t->source, i, type);
        size_t len = spec_len(spec->tokens, spec->token_lens, i);
        tok->type = type;
        tok->text = memcpy(p, spec->tokens[i] ? spec->tokens[i] : "", len);
        tok->text_len = (uint32_t)len;
        p[len] = '\0';
        p += len + 1;
        tok->bytes = p;
        if (decodes_raw(type)) {
            tok->bytes_len = (uint32_t)len;
            memcpy(p, tok->text, len);
        } else if (t->spm) {
            tok->bytes_len = (uint32_t)spm_token_bytes(tok->text, len, type, p);
        } else {
            tok->bytes_len = (uint32_t)token_bytes(tok->text, len, p);
        }
        p[tok->bytes_len] = '\0';
        p += tok->bytes_len + 1;
    }
    return 0;
}

static int build_vocab(tokenizer *t, kv_err *err)
{
    t->vocab_mask = table_mask((size_t)t->info.n_vocab);
    t->vocab_slots = malloc(((size_t)t->vocab_mask + 1) * sizeof *t->vocab_slots);
    if (!t->vocab_slots)
        return kv_errorf(err, KV_ENOMEM, "%s: vocabulary table: out of memory", t->source);
    memset(t->vocab_slots, 0xFF, ((size_t)t->vocab_mask + 1) * sizeof *t->vocab_slots);
    for (int32_t i = 0; i < t->info.n_vocab; i++)
        vocab_insert(t, i);
    for (int b = 0; b < 256; b++) {                  /* invariant (1) */
        if (t->spm) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", b);
            int32_t id = tokenizer__find(t, s, 6);
            t->byte_token[b] = id >= 0 && t->tokens[id].type == TOKENIZER_TYPE_BYTE ? id : -1;
            continue;
        }
        uint32_t cp = tokenizer__byte_to_cp((uint8_t)b);
        char s[2] = {(char)(cp < 0x80 ? cp : 0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F))};
        t->byte_token[b] = tokenizer__find(t, s, cp < 0x80 ? 1 : 2);
    }
    return 0;
}

/* Parse merge i, "left right" (split at the first space after the first byte, as
 * llama.cpp does), into three ids; invariant (2). */
static int parse_merge(tokenizer *t, const tokenizer_spec *spec, int32_t i, char *buf,
                       int32_t ids[3], kv_err *err)
{
    size_t n = spec_len(spec->merges, spec->merge_lens, i);
    const char *m = spec->merges[i] ? spec->merges[i] : "";
    const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
    if (!sp)
        return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.merges[%d] '%.*s': expected "
                         "'left right'", t->source, i, (int)n, m);
    size_t nl = (size_t)(sp - m), nr = n - nl - 1;
    memcpy(buf, m, nl);
    memcpy(buf + nl, sp + 1, nr);
    ids[0] = tokenizer__find(t, m, nl);
    ids[1] = tokenizer__find(t, sp + 1, nr);
    ids[2] = tokenizer__find(t, buf, nl + nr);
    for (int k = 0; k < 3; k++)
        if (ids[k] < 0)
            return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.merges[%d] '%.*s': '%.*s' "
                             "is not a token", t->source, i, (int)n, m,
                             (int)(k == 0 ? nl : k == 1 ? nr : nl + nr),
                             k == 0 ? m : k == 1 ? sp + 1 : buf);
    return 0;
}

static int build_merges(tokenizer *t, const tokenizer_spec *spec, kv_err *err)
{
    t->merge_mask = table_mask((size_t)spec->n_merges);
    t->merge_slots = malloc(((size_t)t->merge_mask + 1) * sizeof *t->merge_slots);
    if (!t->merge_slots)
        return kv_errorf(err, KV_ENOMEM, "%s: merge table: out of memory", t->source);
    for (uint32_t i = 0; i <= t->merge_mask; i++)
        t->merge_slots[i].key = TOKENIZER__EMPTY;
    size_t longest = 0;
    for (int32_t i = 0; i < spec->n_merges; i++) {
        size_t n = spec_len(spec->merges, spec->merge_lens, i);
        longest = n > longest ? n : longest;
    }
    char *buf = malloc(longest + 1);
    if (!buf)
        return kv_errorf(err, KV_ENOMEM, "%s: merges: out of memory", t->source);
    int rc = 0;
    for (int32_t i = 0; i < spec->n_merges && !rc; i++) {
        int32_t ids[3] = {-1, -1, -1};
        rc = parse_merge(t, spec, i, buf, ids, err);
        if (!rc)
            merge_insert(t, ids[0], ids[1], i, ids[2]);
    }
    free(buf);
    return rc;
}

typedef struct special_key { uint32_t len; int32_t id; } special_key;

static int special_order(const void *a, const void *b)
{
    const special_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Invariant (3): the tokens cut out of text before BPE, longest first. */
static int collect_specials(tokenizer *t, kv_err *err)
{
    size_t n = 0;
    special_key *keys = malloc((size_t)t->info.n_vocab * sizeof *keys);
    t->specials = malloc((size_t)t->info.n_vocab * sizeof *t->specials);
    if (!keys || !t->specials) {
        free(keys);
        return kv_errorf(err, KV_ENOMEM, "%s: special tokens: out of memory", t->source);
    }
    for (int32_t i = 0; i < t->info.n_vocab; i++) {
        int32_t type = t->tokens[i].type;
        if (t->tokens[i].text_len > 0 && (type == TOKENIZER_TYPE_CONTROL ||
            type == TOKENIZER_TYPE_USER_DEFINED || type == TOKENIZER_TYPE_UNKNOWN))
            keys[n++] = (special_key){t->tokens[i].text_len, i};
    }
    qsort(keys, n, sizeof *keys, special_order);
    for (size_t i = 0; i < n; i++)
        t->specials[i] = keys[i].id;
    t->n_specials = (int32_t)n;
    free(keys);
    return 0;
}

static int check_id(const tokenizer *t, const char *key, int32_t id, kv_err *err)
{
    if (id < -1 || id >= t->info.n_vocab)
        return kv_errorf(err, KV_ERANGE, "%s: tokenizer.ggml.%s is %d, expected 0..%d",
                         t->source, key, id, t->info.n_vocab - 1);
    return 0;
}

static int set_info(tokenizer *t, const tokenizer_spec *spec, kv_err *err)
{
    tokenizer_info *in = &t->info;
    in->model = t->spm ? "llama" : "gpt2";
    in->pre = t->spm ? "default" : t->pre.name;
    in->n_merges = spec->n_merges;
    in->bos_id = spec->bos_id, in->eos_id = spec->eos_id, in->eot_id = spec->eot_id;
    in->unk_id = spec->unk_id, in->pad_id = spec->pad_id;
    int rc = check_id(t, "bos_token_id", in->bos_id, err);
    rc = rc ? rc : check_id(t, "eos_token_id", in->eos_id, err);
    rc = rc ? rc : check_id(t, "eot_token_id", in->eot_id, err);
    rc = rc ? rc : check_id(t, "unknown_token_id", in->unk_id, err);
    rc = rc ? rc : check_id(t, "padding_token_id", in->pad_id, err);
    in->add_bos = spec->add_bos < 0 ? t->spm || t->pre.add_bos : spec->add_bos != 0;
    in->add_eos = spec->add_eos > 0;
    in->add_space_prefix = t->spm && spec->add_space_prefix != 0;   /* llama.cpp's default: on */
    return rc;
}

static int check_spec(const tokenizer_spec *spec, const char *source, kv_err *err)
{
    bool bpe = spec->model && !strcmp(spec->model, "gpt2");
    bool spm = spec->model && !strcmp(spec->model, "llama");
    if (!bpe && !spm)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: tokenizer.ggml.model: unknown tokenizer "
                         "model '%s'; supported: %s", source,
                         spec->model ? spec->model : "(missing)", SUPPORTED_MODELS);
    if (spec->n_vocab <= 0 || !spec->tokens)
        return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.tokens: %d tokens, expected "
                         "at least one", source, spec->n_vocab);
    if (spec->n_merges < 0 || (spec->n_merges > 0 && !spec->merges))
        return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.merges: %d merges without "
                         "data", source, spec->n_merges);
    if (spm && !spec->scores)
        return kv_errorf(err, KV_EFORMAT, "%s: tokenizer.ggml.scores: missing, the "
                         "SentencePiece tokenizer ('llama') needs one per token", source);
    return 0;
}

/* SentencePiece's scores, copied. */
static int load_scores(tokenizer *t, const tokenizer_spec *spec, kv_err *err)
{
    if (!t->spm)
        return 0;
    size_t bytes = (size_t)spec->n_vocab * sizeof *t->scores;
    if (!(t->scores = malloc(bytes)))
        return kv_errorf(err, KV_ENOMEM, "%s: scores: out of memory", t->source);
    memcpy(t->scores, spec->scores, bytes);
    return 0;
}

tokenizer *tokenizer_new(const tokenizer_spec *spec, kv_err *err)
{
    const char *source = spec->source ? spec->source : "tokenizer";
    if (check_spec(spec, source, err))
        return NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->source = strdup(source))) {
        free(t);
        kv_errorf(err, KV_ENOMEM, "%s: tokenizer: out of memory", source);
        return NULL;
    }
    t->info.n_vocab = spec->n_vocab;
    t->spm = !strcmp(spec->model, "llama");   /* SentencePiece has no pre-tokenizer */
    int rc = t->spm ? 0 : tokenizer__pre_init(&t->pre, spec->pre, t->source, err);
    rc = rc ? rc : load_tokens(t, spec, err);
    rc = rc ? rc : load_scores(t, spec, err);
    rc = rc ? rc : build_vocab(t, err);
    rc = rc ? rc : build_merges(t, spec, err);
    rc = rc ? rc : collect_specials(t, err);
    rc = rc ? rc : set_info(t, spec, err);
    rc = rc ? rc : tokenizer__chat_init(t, spec->chat_template, spec->chat_template_len, err);
    if (rc) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(tokenizer *t)
{
    if (!t)
        return;
    tokenizer__pre_free(&t->pre);
    free(t->scores);
    free(t->system_prompt);
    free(t->specials);
    free(t->merge_slots);
    free(t->vocab_slots);
    free(t->arena);
    free(t->tokens);
    free(t->source);
    free(t);
}

/* --- queries ---------------------------------------------------------------------- */

const tokenizer_info *tokenizer_get_info(const tokenizer *t) { return &t->info; }

const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->info.n_vocab)
        return NULL;
    if (len)
        *len = t->tokens[id].bytes_len;
    return t->tokens[id].bytes;
}

int tokenizer_token_type(const tokenizer *t, int32_t id)
{
    return id < 0 || id >= t->info.n_vocab ? 0 : t->tokens[id].type;
}

unsigned tokenizer_flags_of(int token_type, const char *piece, size_t len)
{
    unsigned flags = 0;
    if (token_type == TOKENIZER_TYPE_CONTROL || token_type == TOKENIZER_TYPE_USER_DEFINED)
        flags |= TOKENIZER_FLAG_SPECIAL;
    size_t spaces = 0, puncts = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)piece[i];
        spaces += ch < 0x80 && isspace(ch);
        puncts += ch < 0x80 && ispunct(ch);
    }
    if (len > 0 && spaces == len)
        flags |= TOKENIZER_FLAG_SPACE;
    if (puncts > 0 && puncts + spaces == len)
        flags |= TOKENIZER_FLAG_PUNCT;
    return flags;
}

unsigned tokenizer_token_flags(const tokenizer *t, int32_t id)
{
    size_t len = 0;
    const char *piece = tokenizer_piece(t, id, &len);
    return piece ? tokenizer_flags_of(tokenizer_token_type(t, id), piece, len) : 0;
}

int tokenizer__ids_push(tokenizer_ids *v, int32_t id)
{
    if (vec_reserve((void **)&v->ids, sizeof *v->ids, v->n + 1, &v->cap) != 0)
        return KV_ENOMEM;
    v->ids[v->n++] = id;
    return 0;
}

void tokenizer_ids_free(tokenizer_ids *v)
{
    if (!v)
        return;
    free(v->ids);
    *v = (tokenizer_ids){0};
}

/* --- encode ----------------------------------------------------------------------- */

/* A fragment of the text: raw text (id < 0) or one special token already found. */
typedef struct fragment { size_t off, len; int32_t id; } fragment;

typedef struct fragments { fragment *v; size_t n, cap; } fragments;

/* Everything one encode call allocates, freed together. */
typedef struct encoder {
    fragments              frags, next;
    tokenizer_spans        pieces, tmp;
    pcre2_match_data      *md;
    tokenizer_bpe_scratch *bpe;
} encoder;

static int frag_push(fragments *f, size_t off, size_t len, int32_t id)
{
    if (vec_reserve((void **)&f->v, sizeof *f->v, f->n + 1, &f->cap) != 0)
        return KV_ENOMEM;
    f->v[f->n++] = (fragment){off, len, id};
    return 0;
}

/* Cut every occurrence of special token `id` out of the raw fragment f. */
static int cut_special(const tokenizer *t, const char *text, fragment f, int32_t id,
                       fragments *out)
{
    const tokenizer_token *tok = &t->tokens[id];
    size_t at = f.off, end = f.off + f.len;
    const char *hit;
    while ((hit = memmem(text + at, end - at, tok->text, tok->text_len))) {
        size_t pos = (size_t)(hit - text);
        if ((pos > at && frag_push(out, at, pos - at, -1)) ||
            frag_push(out, pos, tok->text_len, id))
            return KV_ENOMEM;
        at = pos + tok->text_len;
    }
    return at < end ? frag_push(out, at, end - at, -1) : 0;
}

/* llama.cpp's tokenizer_st_partition: each special, longest first, claims all of its
 * occurrences in what the longer ones left as raw text. */
static int partition(const tokenizer *t, encoder *e, const char *text, size_t len,
                     bool parse_special)
{
    e->frags.n = 0;
    if (len && frag_push(&e->frags, 0, len, -1))
        return KV_ENOMEM;
    for (int32_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        const tokenizer_token *tok = &t->tokens[id];
        if (!parse_special && tok->type != TOKENIZER_TYPE_USER_DEFINED)
            continue;
        if (!memmem(text, len, tok->text, tok->text_len))
            continue;                  /* the common case: nothing to cut */
        e->next.n = 0;
        for (size_t i = 0; i < e->frags.n; i++) {
            fragment f = e->frags.v[i];
            int rc = f.id >= 0 ? frag_push(&e->next, f.off, f.len, f.id)
                               : cut_special(t, text, f, id, &e->next);
            if (rc)
                return rc;
        }
        fragments swap = e->frags;
        e->frags = e->next;
        e->next = swap;
    }
    return 0;
}

/* One fragment's ids; *prev_special says whether the fragment before was a special
 * token (or there was none): SentencePiece's space prefix goes there. */
static int encode_fragment(const tokenizer *t, encoder *e, const char *text, fragment f,
                           bool *prev_special, tokenizer_ids *out, kv_err *err)
{
    bool after_special = *prev_special;
    *prev_special = f.id >= 0;
    if (f.id >= 0)
        return tokenizer__ids_push(out, f.id);
    if (t->spm)
        return tokenizer__spm_fragment(t, e->bpe, text + f.off, f.len,
                                       t->info.add_space_prefix && after_special, out);
    int rc = tokenizer__pre_split(&t->pre, e->md, text, (tokenizer_span){f.off, f.len},
                                  &e->pieces, &e->tmp, err);
    for (size_t i = 0; i < e->pieces.n && !rc; i++) {
        tokenizer_span p = e->pieces.v[i];
        rc = tokenizer__bpe_piece(t, e->bpe, (const uint8_t *)text + p.off, p.len, out);
    }
    return rc;
}

static int encode_all(const tokenizer *t, encoder *e, const char *text, size_t len,
                      unsigned flags, tokenizer_ids *out, kv_err *err)
{
    bool add = flags & TOKENIZER_ADD_SPECIAL, prev_special = true;
    int rc = partition(t, e, text, len, flags & TOKENIZER_PARSE_SPECIAL);
    if (!rc && add && t->info.add_bos && t->info.bos_id >= 0)
        rc = tokenizer__ids_push(out, t->info.bos_id);
    for (size_t i = 0; i < e->frags.n && !rc; i++)
        rc = encode_fragment(t, e, text, e->frags.v[i], &prev_special, out, err);
    if (!rc && add && t->info.add_eos && t->info.eos_id >= 0)
        rc = tokenizer__ids_push(out, t->info.eos_id);
    return rc;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, unsigned flags,
                     tokenizer_ids *out, kv_err *err)
{
    size_t bad = utf8_invalid_at(text, len);
    if (bad != SIZE_MAX)
        return kv_errorf(err, KV_EFORMAT, "text: byte %zu: invalid UTF-8 (0x%02X), expected "
                         "UTF-8 text", bad, (uint8_t)text[bad]);
    size_t n0 = out->n;
    encoder e = {.md = pcre2_match_data_create(1, NULL), .bpe = tokenizer__bpe_scratch_new()};
    int rc = e.md && e.bpe ? encode_all(t, &e, text, len, flags, out, err) : KV_ENOMEM;
    if (rc == KV_ENOMEM)
        kv_errorf(err, rc, "text: %zu bytes: out of memory while encoding", len);
    if (rc)
        out->n = n0;
    free(e.frags.v);
    free(e.next.v);
    free(e.pieces.v);
    free(e.tmp.v);
    pcre2_match_data_free(e.md);
    tokenizer__bpe_scratch_free(e.bpe);
    return rc;
}

/* --- decode ----------------------------------------------------------------------- */

int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text,
                     size_t *len, kv_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->info.n_vocab)
            return kv_errorf(err, KV_ERANGE, "ids[%zu] is %d, expected 0..%d", i, ids[i],
                             t->info.n_vocab - 1);
        total += t->tokens[ids[i]].bytes_len;
    }
    char *s = malloc(total + 1);
    if (!s)
        return kv_errorf(err, KV_ENOMEM, "decode: %zu bytes: out of memory", total);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s + k, t->tokens[ids[i]].bytes, t->tokens[ids[i]].bytes_len);
        k += t->tokens[ids[i]].bytes_len;
    }
    s[k] = '\0';
    *text = s;
    if (len)
        *len = k;
    return 0;
}
