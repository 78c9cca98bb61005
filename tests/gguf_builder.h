/*
 * gguf_builder.h — writes small GGUF files for the tests and the fuzz seed corpus.
 *
 * gguf_builder_tiny() produces one valid version-3 file holding every metadata value
 * type (nested arrays included), an alignment of 64 and two tensors with data, and
 * reports where its fields lie so that tests can damage exactly one of them.
 */
#ifndef GGUF_BUILDER_H
#define GGUF_BUILDER_H

#include <stddef.h>
#include <stdint.h>

typedef struct gbuf {
    uint8_t *p;      /* bytes written so far */
    size_t   n;      /* their count */
    size_t   cap;    /* allocated */
} gbuf;

void gbuf_bytes(gbuf *b, const void *p, size_t n);
void gbuf_u32(gbuf *b, uint32_t v);
void gbuf_u64(gbuf *b, uint64_t v);
void gbuf_str(gbuf *b, const char *s);      /* u64 length + bytes */
void gbuf_pad(gbuf *b, size_t alignment);   /* zeros up to a multiple of alignment */
void gbuf_free(gbuf *b);

/* Where the fields of the tiny file lie (byte offsets). */
typedef struct tiny_layout {
    size_t n_kv_at;           /* header metadata_kv_count */
    size_t kv_at;             /* first metadata pair */
    size_t name_len_at;       /* the u64 length of general.name's string value */
    size_t tokens_at;         /* the tokenizer.ggml.tokens pair */
    size_t token2_len_at;     /* the u64 length of its third string, "<|im_start|>" */
    size_t infos_at;          /* first tensor info */
    size_t b_type_at;         /* tensor 'b.weight' ggml type field */
    size_t b_offset_at;       /* tensor 'b.weight' offset field */
    size_t data_at;           /* start of the data section */
    size_t size;              /* whole file */
} tiny_layout;

#define TINY_N_KV      17
#define TINY_N_TENSORS 2

/* Build the tiny file into b (which must start empty); fills lay if non-NULL. */
void gguf_builder_tiny(gbuf *b, tiny_layout *lay);

/* A llama of this shape (head_dim n_embd / n_head) with random Q4_0 weights, norms of
 * ones, an untied output and a SentencePiece vocabulary of <unk> <s> </s>, the 256 byte
 * tokens and filler pieces (n_vocab >= 259), streamed to `path` (tests/gguf_llama.c):
 * for speed measurements of real shapes without a download.  0, or -1 when the file
 * cannot be written. */
typedef struct gguf_llama_shape {
    int n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
} gguf_llama_shape;

int gguf_builder_llama(const char *path, const gguf_llama_shape *s);

/* Write n bytes to a file `name` in a new temporary directory; its path goes to `path`. */
void gguf_builder_write_temp(const void *p, size_t n, const char *name, char path[256]);

/* Remove the file and the directory made by gguf_builder_write_temp. */
void gguf_builder_remove_temp(const char path[256]);

#endif /* GGUF_BUILDER_H */
