/*
 * tokenizer_impl.h — the inside of a tokenizer, shared by model/tokenizer*.c only.
 * The public contract is tokenizer.h; this file says how the pieces fit.
 *
 * Invariants once tokenizer_new has succeeded:
 *   (1) byte_token[b] is the token of byte b (BPE: its byte-level character;
 *       SentencePiece: <0xNN>), or -1 where the vocabulary has none (SmolLM2 lacks 21
 *       bytes, e.g. 0x04 and 0xFF).  BPE drops such bytes before merging, as HF
 *       tokenizers does; llama.cpp drops them after merging.
 *   (2) every merge's left, right and joined strings are tokens, so BPE works on ids
 *       and never builds a string (SentencePiece has no merges: scores instead).
 *   (3) specials lists the splittable tokens longest first (ties: lower id first).
 */
#ifndef TOKENIZER_IMPL_H
#define TOKENIZER_IMPL_H

#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* One vocabulary entry. */
typedef struct tokenizer_token {
    const char *text;          /* the string as stored in the vocabulary (byte-level form) */
    const char *bytes;         /* what it decodes to, NUL-terminated */
    uint32_t    text_len;
    uint32_t    bytes_len;
    int32_t     type;          /* tokenizer_type */
} tokenizer_token;

/* Merge table slot: the pair (left id, right id) -> rank and joined id. */
typedef struct tokenizer_merge {
    uint64_t key;              /* left << 32 | right; TOKENIZER__EMPTY when free */
    int32_t  rank;
    int32_t  id;
} tokenizer_merge;

#define TOKENIZER__EMPTY UINT64_MAX
#define TOKENIZER__MAX_REGEX 3

/* A pre-tokenizer: its regexes, applied in sequence, and the flags that come with it. */
typedef struct tokenizer_pre {
    const char  *name;                          /* as given: "smollm" (static storage) */
    pcre2_code  *re[TOKENIZER__MAX_REGEX];
    int          n_re;
    bool         ignore_merges;                 /* a piece that is a token is emitted whole */
    bool         add_bos;                       /* default when the spec says -1 */
} tokenizer_pre;

typedef enum tokenizer_chat_kind {
    TOKENIZER_CHAT_NONE, TOKENIZER_CHAT_CHATML, TOKENIZER_CHAT_GEMMA
} tokenizer_chat_kind;

struct tokenizer {
    tokenizer_info   info;         /* what tokenizer_get_info returns */
    char            *source;       /* for messages */
    tokenizer_token *tokens;       /* (n_vocab,) */
    bool             spm;          /* SentencePiece ("llama"); else byte-level BPE */
    float           *scores;       /* (n_vocab,) SentencePiece merge priorities, or NULL */
    char            *arena;        /* every token's text and bytes, NUL-separated */
    int32_t         *vocab_slots;  /* (vocab_mask + 1,) open addressing: id or -1 */
    uint32_t         vocab_mask;
    tokenizer_merge *merge_slots;  /* (merge_mask + 1,) open addressing */
    uint32_t         merge_mask;
    int32_t          byte_token[256];   /* invariant (1) */
    int32_t         *specials;     /* (n_specials,) invariant (3) */
    int32_t          n_specials;
    tokenizer_pre    pre;
    tokenizer_chat_kind chat;
    char            *system_prompt;     /* malloc'd, or NULL */
};

/* byte<->unicode map (tokenizer_bpe.c) */
uint32_t tokenizer__byte_to_cp(uint8_t b);
int      tokenizer__cp_to_byte(uint32_t cp);          /* -1 if cp is not in the map */

/* Token id of a byte-level string, or -1 (tokenizer.c). */
int32_t tokenizer__find(const tokenizer *t, const char *s, size_t len);

/* Rank and joined id of the pair (left, right); false if they do not merge. */
bool tokenizer__merge(const tokenizer *t, int32_t left, int32_t right, int32_t *rank,
                      int32_t *joined);

/* The merge loop's state, shared by BPE (tokenizer_bpe.c) and SentencePiece
 * (tokenizer_spm.c): a list of symbols and a min-heap of adjacent pairs. */
typedef struct bpe_symbol {
    int32_t  id;               /* BPE: token id; -1 once merged into its left neighbour */
    int32_t  prev, next;       /* neighbour indices, -1 at the ends */
    uint32_t off, len;         /* SPM: the symbol's bytes in the text; len 0 once merged */
} bpe_symbol;

typedef struct bpe_pair {
    double  key;               /* lower merges first: BPE's merge rank, SPM's −score */
    int32_t left, right;       /* symbol indices; left is also the position */
    int32_t left_id, right_id; /* BPE: ids when pushed (SPM: lengths); a mismatch on pop
                                  means the pair is stale */
    int32_t joined;            /* id of the merged token */
} bpe_pair;

typedef struct tokenizer_bpe_scratch {
    bpe_symbol *sym;           /* (cap_sym,) one per byte (BPE) or character (SPM) */
    size_t      cap_sym;
    bpe_pair   *heap;          /* (cap_heap,) binary min-heap on (key, left) */
    size_t      n_heap, cap_heap;
    char       *mapped;        /* (cap_mapped,) the piece in vocabulary form */
    size_t      cap_mapped;
} tokenizer_bpe_scratch;

int      tokenizer__heap_push(tokenizer_bpe_scratch *s, bpe_pair p);   /* 0 or KV_ENOMEM */
bpe_pair tokenizer__heap_pop(tokenizer_bpe_scratch *s);               /* n_heap > 0 */

/* Append the ids of one raw fragment encoded by SentencePiece rules (tokenizer_spm.c):
 * ' ' becomes U+2581, a leading one is added when `prefix`, adjacent symbols merge
 * highest score first, and symbols that are no token fall back to <0xNN> bytes.
 * 0 or KV_ENOMEM. */
int tokenizer__spm_fragment(const tokenizer *t, tokenizer_bpe_scratch *s, const char *text,
                            size_t len, bool prefix, tokenizer_ids *out);

/* BPE scratch, reused across the pieces of one encode call (tokenizer_bpe.c). */
tokenizer_bpe_scratch *tokenizer__bpe_scratch_new(void);
void tokenizer__bpe_scratch_free(tokenizer_bpe_scratch *s);

/* Append the ids of one pre-tokenized piece to out; 0 or KV_ENOMEM. */
int tokenizer__bpe_piece(const tokenizer *t, tokenizer_bpe_scratch *s, const uint8_t *piece,
                         size_t len, tokenizer_ids *out);

/* Pre-tokenizer (tokenizer_pre.c). */
int  tokenizer__pre_init(tokenizer_pre *pre, const char *name, const char *source, kv_err *err);
void tokenizer__pre_free(tokenizer_pre *pre);

/* A span of the input text. */
typedef struct tokenizer_span { size_t off, len; } tokenizer_span;

typedef struct tokenizer_spans {
    tokenizer_span *v;         /* (n,) */
    size_t          n, cap;
} tokenizer_spans;

int tokenizer__spans_push(tokenizer_spans *s, size_t off, size_t len);

/* Split text[frag] into pieces with every regex in turn; pieces replaced, not appended.
 * `tmp` is scratch.  0, or KV_ENOMEM / KV_EFORMAT (a PCRE2 failure). */
int tokenizer__pre_split(const tokenizer_pre *pre, pcre2_match_data *md, const char *text,
                         tokenizer_span frag, tokenizer_spans *pieces, tokenizer_spans *tmp,
                         kv_err *err);

/* Chat template recognition (tokenizer_chat.c): sets t->chat and t->system_prompt. */
int tokenizer__chat_init(tokenizer *t, const char *tmpl, size_t len, kv_err *err);

int tokenizer__ids_push(tokenizer_ids *ids, int32_t id);

#endif /* TOKENIZER_IMPL_H */
