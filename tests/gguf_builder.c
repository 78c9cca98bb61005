/* gguf_builder.c — small GGUF files for tests and fuzzing; see gguf_builder.h. */
#include "gguf_builder.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tests abort on allocation failure: there is nothing to recover. */
static void grow(gbuf *b, size_t n)
{
    if (b->n + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        abort();
    b->cap = cap;
}

void gbuf_bytes(gbuf *b, const void *p, size_t n)
{
    grow(b, n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

void gbuf_u32(gbuf *b, uint32_t v) { gbuf_bytes(b, &v, 4); }
void gbuf_u64(gbuf *b, uint64_t v) { gbuf_bytes(b, &v, 8); }

void gbuf_str(gbuf *b, const char *s)
{
    gbuf_u64(b, strlen(s));
    gbuf_bytes(b, s, strlen(s));
}

void gbuf_pad(gbuf *b, size_t alignment)
{
    static const uint8_t zero[256];
    gbuf_bytes(b, zero, (alignment - b->n % alignment) % alignment);
}

void gbuf_free(gbuf *b)
{
    free(b->p);
    *b = (gbuf){0};
}

/* A key and its type; the caller appends the value. */
static void key(gbuf *b, const char *name, uint32_t type)
{
    gbuf_str(b, name);
    gbuf_u32(b, type);
}

static void scalar(gbuf *b, const char *name, uint32_t type, const void *v, size_t n)
{
    key(b, name, type);
    gbuf_bytes(b, v, n);
}

/* Type ids, spelled out so the builder does not depend on the reader's header. */
enum { U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 };

static void metadata(gbuf *b, tiny_layout *lay)
{
    uint8_t u8 = 200, t = 1;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint32_t block_count = 2, alignment = 64;
    int32_t i32 = -2000000000;
    float rope = 10000.5f;
    uint64_t u64 = (1ull << 63) + 1;
    int64_t i64 = -(1ll << 40);
    double f64 = 0.1;

    lay->kv_at = b->n;
    key(b, "general.architecture", STR), gbuf_str(b, "llama");
    key(b, "general.name", STR);
    lay->name_len_at = b->n;
    gbuf_str(b, "tiny");
    scalar(b, "general.alignment", U32, &alignment, 4);
    scalar(b, "llama.block_count", U32, &block_count, 4);
    scalar(b, "llama.rope.freq_base", F32, &rope, 4);
    scalar(b, "t.u8", U8, &u8, 1);
    scalar(b, "t.i8", I8, &i8, 1);
    scalar(b, "t.u16", U16, &u16, 2);
    scalar(b, "t.i16", I16, &i16, 2);
    scalar(b, "t.i32", I32, &i32, 4);
    scalar(b, "t.u64", U64, &u64, 8);
    scalar(b, "t.i64", I64, &i64, 8);
    scalar(b, "t.f64", F64, &f64, 8);
    scalar(b, "t.bool", BOOL, &t, 1);

    lay->tokens_at = b->n;
    key(b, "tokenizer.ggml.tokens", ARR), gbuf_u32(b, STR), gbuf_u64(b, 3);
    gbuf_str(b, "a"), gbuf_str(b, "bc");
    lay->token2_len_at = b->n;
    gbuf_str(b, "<|im_start|>");

    int32_t types[3] = {1, 1, 3};
    key(b, "tokenizer.ggml.token_type", ARR), gbuf_u32(b, I32), gbuf_u64(b, 3);
    gbuf_bytes(b, types, sizeof types);

    /* [[1, 2] (uint16), [] (float32), ["x"] (string)] */
    uint16_t one_two[2] = {1, 2};
    key(b, "t.nested", ARR), gbuf_u32(b, ARR), gbuf_u64(b, 3);
    gbuf_u32(b, U16), gbuf_u64(b, 2), gbuf_bytes(b, one_two, sizeof one_two);
    gbuf_u32(b, F32), gbuf_u64(b, 0);
    gbuf_u32(b, STR), gbuf_u64(b, 1), gbuf_str(b, "x");
}

static void tensor_info(gbuf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                        uint32_t type, uint64_t offset, size_t *type_at, size_t *offset_at)
{
    gbuf_str(b, name);
    gbuf_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        gbuf_u64(b, ne[d]);
    if (type_at)
        *type_at = b->n;
    gbuf_u32(b, type);
    if (offset_at)
        *offset_at = b->n;
    gbuf_u64(b, offset);
}

/* a.weight: F32 [4, 2] = 0..7; b.weight: Q8_0 [32, 2], d = 0.5, q = j - 16 (row 1: 16 - j). */
static void tensors(gbuf *b, tiny_layout *lay)
{
    uint64_t ne_a[2] = {4, 2}, ne_b[2] = {32, 2};
    lay->infos_at = b->n;
    tensor_info(b, "a.weight", 2, ne_a, 0, 0, NULL, NULL);
    tensor_info(b, "b.weight", 2, ne_b, 8, 64, &lay->b_type_at, &lay->b_offset_at);
    gbuf_pad(b, 64);
    lay->data_at = b->n;
    for (int i = 0; i < 8; i++) {
        float v = (float)i;
        gbuf_bytes(b, &v, 4);
    }
    gbuf_pad(b, 64);
    for (int r = 0; r < 2; r++) {
        uint8_t block[34] = {0x00, 0x38};            /* fp16 0.5, little-endian */
        for (int j = 0; j < 32; j++)
            block[2 + j] = (uint8_t)(int8_t)(r ? 16 - j : j - 16);
        gbuf_bytes(b, block, sizeof block);
    }
}

void gguf_builder_tiny(gbuf *b, tiny_layout *lay)
{
    tiny_layout scratch;
    if (!lay)
        lay = &scratch;
    gbuf_bytes(b, "GGUF", 4);
    gbuf_u32(b, 3);
    gbuf_u64(b, TINY_N_TENSORS);
    lay->n_kv_at = b->n;
    gbuf_u64(b, TINY_N_KV);
    metadata(b, lay);
    tensors(b, lay);
    lay->size = b->n;
}

void gguf_builder_write_temp(const void *p, size_t n, const char *name, char path[256])
{
    char dir[] = "/tmp/kvtest-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(path, 256, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp) != 0)
        abort();
}

void gguf_builder_remove_temp(const char path[256])
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", path);
    unlink(path);
    rmdir(dirname(copy));
}
