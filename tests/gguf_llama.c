/*
 * gguf_llama.c — gguf_builder_llama(): a llama GGUF of any shape with random Q4_0
 * weights and a SentencePiece vocabulary of byte tokens, streamed to a file, so that a
 * 7B-shaped model exists for speed measurements without a download (the weights mean
 * nothing; the shapes and the bytes moved are a real model's).
 */
#include "gguf_builder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { U32 = 4, I32 = 5, F32 = 6, STR = 8, ARR = 9 };
enum { GGML_F32 = 0, GGML_Q4_0 = 2 };
#define ALIGN 32

static void kv_u32(gbuf *b, const char *k, uint32_t v)
{
    gbuf_str(b, k), gbuf_u32(b, U32), gbuf_u32(b, v);
}

static void kv_f32(gbuf *b, const char *k, float v)
{
    gbuf_str(b, k), gbuf_u32(b, F32), gbuf_bytes(b, &v, 4);
}

static void kv_str(gbuf *b, const char *k, const char *v)
{
    gbuf_str(b, k), gbuf_u32(b, STR), gbuf_str(b, v);
}

/* <unk> <s> </s>, the 256 byte tokens, then "▁w<i>" pieces up to n_vocab. */
static void vocabulary(gbuf *b, int n_vocab)
{
    char piece[32];
    gbuf_str(b, "tokenizer.ggml.tokens"), gbuf_u32(b, ARR), gbuf_u32(b, STR), gbuf_u64(b, (uint64_t)n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        if (i < 3)
            snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else
            snprintf(piece, sizeof piece, "\xe2\x96\x81w%d", i);
        gbuf_str(b, piece);
    }
    gbuf_str(b, "tokenizer.ggml.scores"), gbuf_u32(b, ARR), gbuf_u32(b, F32), gbuf_u64(b, (uint64_t)n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        float s = -(float)i;
        gbuf_bytes(b, &s, 4);
    }
    gbuf_str(b, "tokenizer.ggml.token_type"), gbuf_u32(b, ARR), gbuf_u32(b, I32), gbuf_u64(b, (uint64_t)n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        int32_t t = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
        gbuf_bytes(b, &t, 4);
    }
}

typedef struct tensor_spec {
    char     name[64];
    uint64_t cols, rows;    /* rows 0: a 1-D norm of ones (F32) */
} tensor_spec;

static size_t tensor_bytes(const tensor_spec *t)
{
    return t->rows ? (size_t)(t->cols / 32 * 18 * t->rows) : (size_t)t->cols * 4;
}

static size_t padded(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* The model's tensors in file order; returns their count (at most 3 + 9 · n_layer). */
static int tensor_list(const gguf_llama_shape *s, tensor_spec *t)
{
    const uint64_t d = (uint64_t)s->n_embd, hd = d / (uint64_t)s->n_head;
    const uint64_t kvd = hd * (uint64_t)s->n_head_kv, ff = (uint64_t)s->n_ff;
    int n = 0;
    t[n++] = (tensor_spec){"token_embd.weight", d, (uint64_t)s->n_vocab};
    t[n++] = (tensor_spec){"output_norm.weight", d, 0};
    t[n++] = (tensor_spec){"output.weight", d, (uint64_t)s->n_vocab};
    for (int l = 0; l < s->n_layer; l++) {
        const struct { const char *name; uint64_t cols, rows; } w[9] = {
            {"attn_norm", d, 0}, {"attn_q", d, d},     {"attn_k", d, kvd},
            {"attn_v", d, kvd},  {"attn_output", d, d}, {"ffn_norm", d, 0},
            {"ffn_gate", d, ff}, {"ffn_up", d, ff},     {"ffn_down", ff, d},
        };
        for (int i = 0; i < 9; i++) {
            t[n] = (tensor_spec){"", w[i].cols, w[i].rows};
            snprintf(t[n++].name, sizeof t->name, "blk.%d.%s.weight", l, w[i].name);
        }
    }
    return n;
}

static void header(gbuf *b, const gguf_llama_shape *s, const tensor_spec *t, int n)
{
    gbuf_bytes(b, "GGUF", 4), gbuf_u32(b, 3), gbuf_u64(b, (uint64_t)n), gbuf_u64(b, 17);
    kv_str(b, "general.architecture", "llama");
    kv_str(b, "general.name", "random llama");
    kv_u32(b, "llama.block_count", (uint32_t)s->n_layer);
    kv_u32(b, "llama.embedding_length", (uint32_t)s->n_embd);
    kv_u32(b, "llama.feed_forward_length", (uint32_t)s->n_ff);
    kv_u32(b, "llama.attention.head_count", (uint32_t)s->n_head);
    kv_u32(b, "llama.attention.head_count_kv", (uint32_t)s->n_head_kv);
    kv_u32(b, "llama.context_length", (uint32_t)s->n_ctx);
    kv_f32(b, "llama.rope.freq_base", 10000.0f);
    kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_str(b, "tokenizer.ggml.model", "llama");
    vocabulary(b, s->n_vocab);   /* 3 keys */
    kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(b, "tokenizer.ggml.unknown_token_id", 0);
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        gbuf_str(b, t[i].name);
        gbuf_u32(b, t[i].rows ? 2 : 1);
        gbuf_u64(b, t[i].cols);
        if (t[i].rows)
            gbuf_u64(b, t[i].rows);
        gbuf_u32(b, t[i].rows ? GGML_Q4_0 : GGML_F32);
        gbuf_u64(b, offset);
        offset += padded(tensor_bytes(&t[i]));
    }
    gbuf_pad(b, ALIGN);
}

/* Q4_0 rows of `cols` with d = 0.3 / sqrt(cols) (activations keep their scale) and
 * random nibbles, or a norm of ones. */
static int write_tensor(FILE *fp, const tensor_spec *t, uint64_t *rng, uint8_t *buf, size_t cap)
{
    if (!t->rows) {
        const float one = 1.0f;
        for (uint64_t i = 0; i < t->cols; i++)
            if (fwrite(&one, 4, 1, fp) != 1)
                return -1;
    }
    const float d = 0.3f / sqrtf((float)t->cols);
    uint16_t h;   /* fp16 of d: 2^e · (1 + m/1024), d well inside the normal range */
    int e;
    float m = frexpf(d, &e);   /* d = m · 2^e, m in [0.5, 1) */
    h = (uint16_t)((e - 1 + 15) << 10 | (int)((m * 2 - 1) * 1024));
    size_t blocks = (size_t)(t->cols / 32 * t->rows), per = cap / 18;
    for (size_t b0 = 0; t->rows && b0 < blocks; b0 += per) {
        size_t k = blocks - b0 < per ? blocks - b0 : per;
        for (size_t i = 0; i < k; i++) {
            uint8_t *blk = buf + i * 18;
            memcpy(blk, &h, 2);
            for (int j = 0; j < 16; j += 8) {
                *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
                memcpy(blk + 2 + j, rng, 8);
            }
        }
        if (fwrite(buf, 18, k, fp) != k)
            return -1;
    }
    static const uint8_t zeros[ALIGN];
    size_t pad = padded(tensor_bytes(t)) - tensor_bytes(t);
    return pad && fwrite(zeros, 1, pad, fp) != pad ? -1 : 0;
}

int gguf_builder_llama(const char *path, const gguf_llama_shape *s)
{
    tensor_spec *t = malloc((size_t)(3 + 9 * s->n_layer) * sizeof *t);
    uint8_t *buf = malloc(18 << 16);
    FILE *fp = fopen(path, "wb");
    int rc = t && buf && fp ? 0 : -1;
    if (!rc) {
        int n = tensor_list(s, t);
        gbuf b = {0};
        header(&b, s, t, n);
        rc = fwrite(b.p, 1, b.n, fp) == b.n ? 0 : -1;
        gbuf_free(&b);
        uint64_t rng = 0x9E3779B97F4A7C15ull;
        for (int i = 0; !rc && i < n; i++)
            rc = write_tensor(fp, &t[i], &rng, buf, 18 << 16);
    }
    if (fp && fclose(fp))
        rc = -1;
    free(t), free(buf);
    return rc;
}
