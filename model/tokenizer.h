/*
 * tokenizer.h — text <-> token ids for GGUF language models: byte-level BPE
 * (tokenizer.ggml.model = "gpt2": SmolLM2, Llama 3, Qwen...), SentencePiece
 * (tokenizer.ggml.model = "llama": Gemma 3, Llama 2...), special tokens, and the
 * ChatML and Gemma chat templates.
 *
 * Encoding a text, in order (as llama.cpp's src/llama-vocab.cpp does it):
 *   1. Special tokens are cut out of the text, longest first: user-defined tokens
 *      always, control tokens only with TOKENIZER_PARSE_SPECIAL.
 *   2. BPE: each remaining fragment is split into pieces by the pre-tokenizer's
 *      regexes, applied in sequence: regex k splits every piece that regex k-1
 *      produced, and both the matches and the gaps between them become pieces.
 *   3. BPE: each byte of a piece becomes one symbol (the GPT-2 byte<->unicode map names
 *      a vocabulary token for it); adjacent symbols are merged, lowest merge rank first
 *      and leftmost on ties, until no merge applies.
 *   2'. SentencePiece instead: a fragment's spaces become '▁' (U+2581), with one in
 *      front when the model adds a space prefix and the fragment starts the text or
 *      follows a special token; its characters are merged, highest token score first
 *      and leftmost on ties; a character that is no token becomes <0xNN> byte tokens
 *      (tokenizer_spm.c).
 * Decoding maps every token back to its exact bytes: it is not lossy, and one token may
 * hold part of a UTF-8 character.  Encoding is lossless too, except for a byte the
 * vocabulary has no token for: like HF tokenizers, BPE drops it (SmolLM2 has none for
 * 21 bytes, such as the control characters 0x04 and 0x06).
 *
 * The full story: ../shared/reference/inference.md §4 (tokenizers from GGUF metadata,
 * pre-tokenizer regexes) and §2a (SmolLM2 facts, chat template, test vectors).
 * tests/test_tokenizer.c checks all of it against HF `tokenizers`.
 *
 * A tokenizer is immutable once built: encode and decode may run on many threads.
 * Errors follow kv_err.h.
 */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

typedef struct tokenizer tokenizer;      /* opaque; tokenizer_new / tokenizer_free */
typedef struct gguf_file gguf_file;      /* model/gguf.h */

/* tokenizer.ggml.token_type values */
typedef enum tokenizer_type {
    TOKENIZER_TYPE_NORMAL       = 1,
    TOKENIZER_TYPE_UNKNOWN      = 2,
    TOKENIZER_TYPE_CONTROL      = 3,     /* <|im_start|>: text only with PARSE_SPECIAL */
    TOKENIZER_TYPE_USER_DEFINED = 4,     /* always cut out of the text */
    TOKENIZER_TYPE_UNUSED       = 5,
    TOKENIZER_TYPE_BYTE         = 6,
} tokenizer_type;

/* Everything tokenizer_new needs, as plain arrays (a GGUF file's tokenizer.ggml.* keys
 * map one to one).  Strings carry lengths because GGUF strings are not NUL-terminated;
 * a NULL length array means the strings are.  tokenizer_new copies all of it. */
typedef struct tokenizer_spec {
    const char         *source;          /* names the origin in messages ("model.gguf"); may be NULL */
    const char         *model;           /* tokenizer.ggml.model: "gpt2" or "llama" */
    const char         *pre;             /* tokenizer.ggml.pre: "smollm", "gpt-2", "llama-bpe"... */
    int32_t             n_vocab;
    const char *const  *tokens;          /* (n_vocab,) byte-level strings, as stored */
    const size_t       *token_lens;      /* (n_vocab,) bytes; NULL: NUL-terminated */
    const int32_t      *token_types;     /* (n_vocab,) tokenizer_type; NULL: all normal */
    const float        *scores;          /* (n_vocab,) merge priority ("llama": required) */
    int32_t             n_merges;
    const char *const  *merges;          /* (n_merges,) "left right"; the rank is the index */
    const size_t       *merge_lens;      /* (n_merges,) bytes; NULL: NUL-terminated */
    int32_t             bos_id, eos_id, eot_id, unk_id, pad_id;   /* -1: none */
    int                 add_bos, add_eos;  /* 1, 0, or -1: the pre-tokenizer's default */
    int                 add_space_prefix;  /* "llama": 1, 0, or -1: the default (1) */
    const char         *chat_template;   /* tokenizer.chat_template (Jinja); NULL: none */
    size_t              chat_template_len;
} tokenizer_spec;

/* What a built tokenizer is; strings borrowed from it. */
typedef struct tokenizer_info {
    const char *model;                   /* "gpt2" or "llama" */
    const char *pre;                     /* "smollm"; "default" for "llama" (no regexes) */
    int32_t     n_vocab, n_merges;
    int32_t     bos_id, eos_id, eot_id, unk_id, pad_id;   /* -1: none */
    bool        add_bos, add_eos;        /* resolved: what TOKENIZER_ADD_SPECIAL adds */
    bool        add_space_prefix;        /* "llama": a '▁' before the text */
    const char *chat;                    /* "chatml", "gemma", or NULL: no template known */
    const char *system_prompt;           /* the template's default system prompt, or NULL */
} tokenizer_info;

/* A growing list of token ids; zero-initialised is empty.  Encoders append to it. */
typedef struct tokenizer_ids {
    int32_t *ids;                        /* (n,) */
    size_t   n, cap;
} tokenizer_ids;

enum tokenizer_flags {
    TOKENIZER_PARSE_SPECIAL = 1u << 0,   /* control-token text becomes the control token */
    TOKENIZER_ADD_SPECIAL   = 1u << 1,   /* add BOS / EOS where the model asks for them */
};

/* One chat message; both strings NUL-terminated UTF-8. */
typedef struct tokenizer_message {
    const char *role;                    /* "system", "user", "assistant" */
    const char *content;
} tokenizer_message;

/* --- lifecycle ------------------------------------------------------------------- */

/* Build a tokenizer from plain arrays.  NULL and err on failure: an unknown model or
 * pre-tokenizer name (the message lists the supported ones), a merge whose parts or
 * result are not tokens, a token type or special id out of range. */
tokenizer *tokenizer_new(const tokenizer_spec *spec, kv_err *err);

/* Build from an open GGUF file's tokenizer.* keys (model/tokenizer_gguf.c); nothing
 * is borrowed from f afterwards. */
tokenizer *tokenizer_from_gguf(const gguf_file *f, kv_err *err);

/* The same with pre-tokenizer `pre` in place of the file's tokenizer.ggml.pre (NULL:
 * the file's), for a file whose name is missing or wrong, and for experiments. */
tokenizer *tokenizer_from_gguf_pre(const gguf_file *f, const char *pre, kv_err *err);

void tokenizer_free(tokenizer *t);                   /* NULL does nothing */
void tokenizer_ids_free(tokenizer_ids *ids);         /* frees the array, leaves it empty */

/* A spec with every id -1, add_bos/add_eos -1 and nothing else set. */
tokenizer_spec tokenizer_spec_default(void);

/* The names tokenizer_new accepts, comma-separated (for messages and --help). */
const char *tokenizer_supported_models(void);
const char *tokenizer_supported_pres(void);

/* --- query --------------------------------------------------------------------- */

const tokenizer_info *tokenizer_get_info(const tokenizer *t);   /* borrowed */

/* A token's exact bytes: normal tokens mapped back through the byte<->unicode map
 * (BPE) or with '▁' as a space and <0xNN> as byte NN (SentencePiece), control and
 * user-defined tokens as their text.  Borrowed, NUL-terminated for
 * convenience (but may contain NUL); NULL for an id out of range. */
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);

/* A token's type (tokenizer_type), or 0 for an id out of range. */
int tokenizer_token_type(const tokenizer *t, int32_t id);

/* What eviction policies may know of a token from its text (the trace's /tokens/flags
 * and policies/policy.h's POLICY_FLAG_* use the same bits). */
enum tokenizer_flag {
    TOKENIZER_FLAG_SPECIAL = 1u << 0,   /* a control or user-defined token */
    TOKENIZER_FLAG_PUNCT   = 1u << 1,   /* its text is punctuation (and spaces) only */
    TOKENIZER_FLAG_SPACE   = 1u << 2,   /* its text is whitespace only */
};

/* The flags of a token of `token_type` whose bytes are piece[len]. */
unsigned tokenizer_flags_of(int token_type, const char *piece, size_t len);
/* The flags of token `id` (0 for an id out of range). */
unsigned tokenizer_token_flags(const tokenizer *t, int32_t id);

/* The length of the valid UTF-8 character at s (at most n bytes), with its code point
 * in *cp; 0 if the bytes there are not one (overlong, surrogate, truncated...). */
size_t tokenizer_utf8_char(const char *s, size_t n, uint32_t *cp);

/* --- encode / decode ----------------------------------------------------------- */

/* Append the ids of `len` bytes of UTF-8 `text` to `out`.  KV_EFORMAT (naming the byte
 * offset) for invalid UTF-8, KV_ENOMEM; on failure `out` keeps what it had. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, unsigned flags,
                     tokenizer_ids *out, kv_err *err);

/* The bytes of `n` tokens, concatenated, in a malloc'd NUL-terminated buffer that the
 * caller frees.  KV_ERANGE names the first id out of range. */
int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text,
                     size_t *len, kv_err *err);

/* --- chat ---------------------------------------------------------------------- */

/* Render messages with the model's chat template.  ChatML: the default system prompt
 * first when the first message is not a system one, then each message, then
 * `<|im_start|>assistant\n` when add_generation_prompt.  Gemma: `<bos>`, then
 * `<start_of_turn>{user|model}\n{content, trimmed}<end_of_turn>\n` per message (a
 * system message goes in front of the first user message, followed by a blank line;
 * "assistant" is "model"), then `<start_of_turn>model\n`.  The text is malloc'd and
 * NUL-terminated.  KV_EUNSUPPORTED when the model has no template of either kind. */
int tokenizer_chat_render(const tokenizer *t, const tokenizer_message *msgs, size_t n,
                          bool add_generation_prompt, char **text, size_t *len, kv_err *err);

/* Render, then encode with special-token parsing on (so <|im_start|> is one token);
 * BOS is added where the model asks for it, unless the template already wrote it. */
int tokenizer_chat_encode(const tokenizer *t, const tokenizer_message *msgs, size_t n,
                          bool add_generation_prompt, tokenizer_ids *out, kv_err *err);

#endif /* TOKENIZER_H */
