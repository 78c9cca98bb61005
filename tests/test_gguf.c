/*
 * test_gguf.c — the GGUF reader of model/gguf.h: a tiny file with every value type,
 * the SmolLM2 model, and one test per kind of damage.  Every damaged file must give
 * NULL and a message naming the file, the offset and the field — never a crash (the
 * suite also runs under AddressSanitizer, which would catch any stray read).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dequant.h"
#include "gguf.h"
#include "gguf_builder.h"
#include "test_shell.h"

/* ---- helpers ----------------------------------------------------------------------- */

static gbuf tiny(tiny_layout *lay)
{
    gbuf b = {0};
    gguf_builder_tiny(&b, lay);
    return b;
}

/* Open n bytes as a real file "tiny.gguf" (mapped, then unlinked: the mapping stays). */
static gguf_file *open_bytes(const uint8_t *p, size_t n, kv_err *err)
{
    char path[256];
    gguf_builder_write_temp(p, n, "tiny.gguf", path);
    gguf_file *f = gguf_open(path, err);
    gguf_builder_remove_temp(path);
    return f;
}

/* The bytes must be refused with `code` and a message containing every needle. */
static void expect_refused(const uint8_t *p, size_t n, int code, const char *needles[])
{
    kv_err err = {0};
    gguf_file *f = open_bytes(p, n, &err);
    cr_assert_null(f, "a damaged file was accepted");
    cr_assert_eq(err.code, code, "code %s, expected %s: %s", kv_err_name(err.code),
                 kv_err_name(code), err.msg);
    cr_assert(strstr(err.msg, "tiny.gguf: offset "), "no file and offset in: %s", err.msg);
    for (int i = 0; needles[i]; i++)
        cr_assert(strstr(err.msg, needles[i]), "'%s' missing from: %s", needles[i], err.msg);
}

#define REFUSED(p, n, code, ...) expect_refused(p, n, code, (const char *[]){__VA_ARGS__, NULL})

static void put_u32(gbuf *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }
static void put_u64(gbuf *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }

static int64_t key(const gguf_file *f, const char *name)
{
    int64_t i = gguf_find_key(f, name);
    cr_assert_geq(i, 0, "key %s not found", name);
    return i;
}

static int64_t get_int(const gguf_file *f, const char *name)
{
    int64_t v;
    cr_assert_eq(gguf_get_int(f, key(f, name), &v), 0, "%s", name);
    return v;
}

static int str_is(const char *s, size_t len, const char *want)
{
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

static int arr_str_is(const gguf_array *a, uint64_t j, const char *want)
{
    size_t len = 0;
    const char *s = gguf_array_str(a, j, &len);
    return str_is(s, len, want);
}

/* ---- a valid file ----------------------------------------------------------------- */

Test(gguf, reads_every_scalar_type_of_the_tiny_file)
{
    gbuf b = tiny(NULL);
    kv_err err = {0};
    gguf_file *f = open_bytes(b.p, b.n, &err);
    cr_assert_not_null(f, "%s", err.msg);
    cr_assert_eq(gguf_version(f), 3);
    cr_assert_eq(gguf_n_keys(f), TINY_N_KV);
    cr_assert_str_eq(gguf_key_name(f, 0), "general.architecture");
    cr_assert_eq(gguf_key_type(f, 0), GGUF_TYPE_STRING);

    cr_assert_eq(get_int(f, "t.u8"), 200);
    cr_assert_eq(get_int(f, "t.i8"), -5);
    cr_assert_eq(get_int(f, "t.u16"), 60000);
    cr_assert_eq(get_int(f, "t.i16"), -30000);
    cr_assert_eq(get_int(f, "llama.block_count"), 2);
    cr_assert_eq(get_int(f, "t.i32"), -2000000000);
    cr_assert_eq(get_int(f, "t.i64"), -(1ll << 40));
    cr_assert_eq(get_int(f, "t.bool"), 1);
    int64_t big;
    cr_assert_eq(gguf_get_int(f, key(f, "t.u64"), &big), KV_ERANGE, "uint64 above INT64_MAX");

    double d;
    cr_assert_eq(gguf_get_float(f, key(f, "llama.rope.freq_base"), &d), 0);
    cr_assert_eq(d, 10000.5);
    cr_assert_eq(gguf_get_float(f, key(f, "t.f64"), &d), 0);
    cr_assert_eq(d, 0.1);
    cr_assert_eq(gguf_get_float(f, key(f, "t.u64"), &d), 0);
    cr_assert_eq(d, 9223372036854775808.0);
    cr_assert_eq(gguf_get_float(f, key(f, "t.i16"), &d), 0, "integers read as floats");
    cr_assert_eq(d, -30000.0);

    size_t len;
    const char *s = gguf_get_str(f, key(f, "general.name"), &len);
    cr_assert(str_is(s, len, "tiny"));
    gguf_close(f);
    gbuf_free(&b);
}

Test(gguf, reads_string_integer_and_nested_arrays)
{
    gbuf b = tiny(NULL);
    kv_err err = {0};
    gguf_file *f = open_bytes(b.p, b.n, &err);
    cr_assert_not_null(f, "%s", err.msg);

    int64_t tok = key(f, "tokenizer.ggml.tokens");
    cr_assert_eq(gguf_arr_type(f, tok), GGUF_TYPE_STRING);
    cr_assert_eq(gguf_arr_len(f, tok), 3);
    size_t len;
    cr_assert(arr_str_is(gguf_get_arr(f, tok), 2, "<|im_start|>"));
    cr_assert_null(gguf_arr_str(f, tok, 3, &len), "index past the end");

    int64_t tt = key(f, "tokenizer.ggml.token_type"), v;
    cr_assert_eq(gguf_arr_int(f, tt, 2, &v), 0);
    cr_assert_eq(v, 3);
    cr_assert_eq(gguf_arr_int(f, tt, 3, &v), KV_ERANGE);

    const gguf_array *nested = gguf_get_arr(f, key(f, "t.nested"));
    cr_assert_eq(gguf_array_type(nested), GGUF_TYPE_ARRAY);
    cr_assert_eq(gguf_array_len(nested), 3);
    const gguf_array *a0 = gguf_array_sub(nested, 0), *a1 = gguf_array_sub(nested, 1),
                     *a2 = gguf_array_sub(nested, 2);
    cr_assert_eq(gguf_array_type(a0), GGUF_TYPE_UINT16);
    cr_assert_eq(gguf_array_int(a0, 1, &v), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(gguf_array_len(a1), 0);
    cr_assert_eq(gguf_array_type(a1), GGUF_TYPE_FLOAT32);
    cr_assert(arr_str_is(a2, 0, "x"));
    cr_assert_null(gguf_array_sub(nested, 3));
    cr_assert_null(gguf_array_sub(a0, 0), "a uint16 element is not an array");
    gguf_close(f);
    gbuf_free(&b);
}

Test(gguf, getters_refuse_wrong_types_and_bad_indices)
{
    gbuf b = tiny(NULL);
    kv_err err = {0};
    gguf_file *f = open_bytes(b.p, b.n, &err);
    cr_assert_not_null(f, "%s", err.msg);
    int64_t v;
    double d;
    size_t len;
    cr_assert_eq(gguf_find_key(f, "no.such.key"), -1);
    cr_assert_eq(gguf_get_int(f, key(f, "general.name"), &v), KV_EFORMAT);
    cr_assert_eq(gguf_get_int(f, key(f, "t.f64"), &v), KV_EFORMAT, "floats are not integers");
    cr_assert_eq(gguf_get_float(f, key(f, "tokenizer.ggml.tokens"), &d), KV_EFORMAT);
    cr_assert_null(gguf_get_str(f, key(f, "t.u8"), &len));
    cr_assert_eq(gguf_get_int(f, TINY_N_KV, &v), KV_ERANGE);
    cr_assert_null(gguf_key_name(f, -1));
    cr_assert_eq(gguf_key_type(f, TINY_N_KV), GGUF_TYPE_INVALID);
    cr_assert_eq(gguf_arr_type(f, key(f, "t.u8")), GGUF_TYPE_INVALID);
    cr_assert_eq(gguf_arr_len(f, key(f, "t.u8")), 0);
    cr_assert_eq(gguf_arr_int(f, key(f, "tokenizer.ggml.tokens"), 0, &v), KV_EFORMAT);
    cr_assert_null(gguf_tensor_at(f, 2));
    cr_assert_null(gguf_find_tensor(f, "c.weight"));
    gguf_close(f);
    gguf_close(NULL);
    gbuf_free(&b);
}

Test(gguf, places_tensors_in_the_aligned_data_section)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    kv_err err = {0};
    gguf_file *f = open_bytes(b.p, b.n, &err);
    cr_assert_not_null(f, "%s", err.msg);
    cr_assert_eq(gguf_alignment(f), 64);
    cr_assert_eq(gguf_data_offset(f), lay.data_at);
    cr_assert_eq(gguf_data_offset(f) % 64, 0);
    cr_assert_eq(gguf_n_tensors(f), 2);

    const gguf_tensor *a = gguf_find_tensor(f, "a.weight"), *q = gguf_find_tensor(f, "b.weight");
    cr_assert_not_null(a);
    cr_assert_eq(a, gguf_tensor_at(f, 0));
    cr_assert_eq(a->type, GGML_TYPE_F32);
    cr_assert_eq(a->n_dims, 2);
    cr_assert_eq(a->ne[0], 4);
    cr_assert_eq(a->ne[1], 2);
    cr_assert_eq(a->ne[2], 1);
    cr_assert_eq(a->nbytes, 32);
    float x;
    memcpy(&x, (const char *)a->data + 7 * 4, 4);
    cr_assert_eq(x, 7.0f);

    cr_assert_eq(q->type, GGML_TYPE_Q8_0);
    cr_assert_eq(q->offset, 64);
    cr_assert_eq(q->nbytes, 68);
    cr_assert_eq((const uint8_t *)q->data, (const uint8_t *)a->data + 64);
    gguf_close(f);
    gbuf_free(&b);
}

Test(gguf, opens_an_in_memory_buffer_the_same_way)
{
    gbuf b = tiny(NULL);
    kv_err err = {0};
    gguf_file *f = gguf_open_buffer(b.p, b.n, "mem.gguf", &err);
    cr_assert_not_null(f, "%s", err.msg);
    cr_assert_str_eq(gguf_path(f), "mem.gguf");
    cr_assert_eq(gguf_file_size(f), b.n);
    gguf_close(f);
    gbuf_free(&b);
}

/* ---- the real model ----------------------------------------------------------------- */

Test(gguf, reads_the_smollm2_model)
{
    const char *path = test_model();
    if (!path || access(path, R_OK) != 0)
        cr_skip_test("KV_MODEL not set or not readable");
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    cr_assert_not_null(f, "%s", err.msg);
    cr_assert_eq(gguf_version(f), 3);
    cr_assert_eq(gguf_n_keys(f), 33);
    cr_assert_eq(gguf_n_tensors(f), 272);
    cr_assert_eq(gguf_alignment(f), 32);
    cr_assert_eq(gguf_data_offset(f), 1785664, "as gguf-py reports");

    size_t len;
    const char *arch = gguf_get_str(f, key(f, "general.architecture"), &len);
    cr_assert(str_is(arch, len, "llama"));
    int64_t n;
    cr_assert_eq(gguf_require_int(f, "llama.block_count", &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 30);
    double eps;
    cr_assert_eq(gguf_require_float(f, "llama.attention.layer_norm_rms_epsilon", &eps, &err), 0);
    cr_assert_float_eq(eps, 1e-5, 1e-12);
    cr_assert_eq(gguf_arr_len(f, key(f, "tokenizer.ggml.tokens")), 49152);
    cr_assert_eq(gguf_arr_len(f, key(f, "tokenizer.ggml.merges")), 48900);
    int64_t tok = key(f, "tokenizer.ggml.tokens");
    cr_assert(arr_str_is(gguf_get_arr(f, tok), 1, "<|im_start|>"));

    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    cr_assert_not_null(emb);
    cr_assert_eq(emb->type, GGML_TYPE_Q8_0);
    cr_assert_eq(emb->ne[0], 576);
    cr_assert_eq(emb->ne[1], 49152);
    cr_assert_eq(emb->nbytes, (size_t)576 / 32 * 34 * 49152);
    cr_assert_null(gguf_find_tensor(f, "output.weight"), "embeddings are tied");
    gguf_close(f);
}

/* ---- damage: truncation ----------------------------------------------------------------- */

Test(gguf, rejects_a_file_truncated_in_the_header)
{
    gbuf b = tiny(NULL);
    REFUSED(b.p, 20, KV_EFORMAT, "offset 16", "metadata_kv_count needs 8 bytes", "ends 4 bytes later");
    REFUSED(b.p, 2, KV_EFORMAT, "offset 0", "magic needs 4 bytes");
    REFUSED(b.p, 6, KV_EFORMAT, "offset 4", "version");
    gbuf_free(&b);
}

Test(gguf, rejects_a_file_empty_or_missing)
{
    kv_err err = {0};
    REFUSED((const uint8_t *)"", 0, KV_EFORMAT, "empty file");
    cr_assert_null(gguf_open("/nonexistent/dir/model.gguf", &err));
    cr_assert_eq(err.code, KV_EIO);
    cr_assert(strstr(err.msg, "/nonexistent/dir/model.gguf: cannot open"), "%s", err.msg);
}

Test(gguf, rejects_a_file_truncated_inside_a_metadata_value)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    char at[32];
    snprintf(at, sizeof at, "offset %zu", lay.token2_len_at);
    REFUSED(b.p, lay.token2_len_at + 10, KV_EFORMAT, at, "'tokenizer.ggml.tokens'",
            "string element length 12 runs past the end");
    snprintf(at, sizeof at, "offset %zu", lay.tokens_at);
    REFUSED(b.p, lay.tokens_at + 3, KV_EFORMAT, at, "metadata pair #14", "key needs 8 bytes");
    gbuf_free(&b);
}

Test(gguf, rejects_a_file_truncated_inside_the_tensor_infos)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    char at[32];
    snprintf(at, sizeof at, "offset %zu", lay.infos_at);
    REFUSED(b.p, lay.infos_at + 5, KV_EFORMAT, at, "tensor info #0", "name needs 8 bytes");
    snprintf(at, sizeof at, "offset %zu", lay.b_type_at);
    REFUSED(b.p, lay.b_type_at + 2, KV_EFORMAT, at, "tensor #1 'b.weight'", "type needs 4 bytes");
    gbuf_free(&b);
}

Test(gguf, rejects_a_file_truncated_inside_the_tensor_data)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    REFUSED(b.p, lay.size - 10, KV_EFORMAT, "tensor #1 'b.weight'", "runs past the end of the file");
    size_t infos_end = lay.b_offset_at + 8;
    cr_assert_lt(infos_end, lay.data_at, "the tiny file pads its infos");
    REFUSED(b.p, infos_end, KV_EFORMAT, "tensor data section would start at");
    gbuf_free(&b);
}

/* Every prefix of a valid file is refused cleanly: each is an exact-size heap copy, so
 * AddressSanitizer sees any read past its end. */
Test(gguf, rejects_every_truncation_of_the_tiny_file)
{
    gbuf b = tiny(NULL);
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.p, n);
        kv_err err = {0};
        gguf_file *f = gguf_open_buffer(copy, n, "cut.gguf", &err);
        cr_assert_null(f, "a prefix of %zu bytes was accepted", n);
        cr_assert_eq(err.code, KV_EFORMAT, "cut at %zu: %s", n, err.msg);
        cr_assert(strstr(err.msg, "cut.gguf: offset "), "cut at %zu: %s", n, err.msg);
        free(copy);
    }
    gbuf_free(&b);
}

/* ---- damage: fields -------------------------------------------------------------------- */

Test(gguf, rejects_a_wrong_magic)
{
    gbuf b = tiny(NULL);
    memcpy(b.p, "GGML", 4);
    REFUSED(b.p, b.n, KV_EFORMAT, "offset 0", "magic is 47 47 4d 4c, expected \"GGUF\"");
    gbuf_free(&b);
}

Test(gguf, rejects_an_unsupported_version)
{
    gbuf b = tiny(NULL);
    put_u32(&b, 4, 1);
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, "offset 4", "GGUF version 1, expected 2 or 3");
    put_u32(&b, 4, 4);
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, "offset 4", "GGUF version 4, expected 2 or 3");
    put_u32(&b, 4, 0x03000000);
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, "offset 4", "big-endian");
    put_u32(&b, 4, 0);                           /* #17: 0 is not a byte-swapped version */
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, "offset 4", "GGUF version 0, expected 2 or 3");
    put_u32(&b, 4, 2);
    kv_err err = {0};
    gguf_file *f = open_bytes(b.p, b.n, &err);
    cr_assert_not_null(f, "version 2 has the same layout: %s", err.msg);
    gguf_close(f);
    gbuf_free(&b);
}

Test(gguf, rejects_a_string_length_past_the_end)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u64(&b, lay.name_len_at, 1000000000000ull);
    char at[32];
    snprintf(at, sizeof at, "offset %zu", lay.name_len_at);
    REFUSED(b.p, b.n, KV_EFORMAT, at, "'general.name'", "length 1000000000000 runs past the end");
    put_u64(&b, lay.name_len_at, UINT64_MAX);
    REFUSED(b.p, b.n, KV_EFORMAT, at, "length 18446744073709551615 runs past the end");
    gbuf_free(&b);
}

Test(gguf, rejects_tensor_data_past_the_end)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u64(&b, lay.b_offset_at, 1 << 20);
    REFUSED(b.p, b.n, KV_EFORMAT, "tensor #1 'b.weight'", "is past the end of the file");
    put_u64(&b, lay.b_offset_at, (b.n - lay.data_at) / 64 * 64);   /* starts inside, ends past */
    REFUSED(b.p, b.n, KV_EFORMAT, "tensor #1 'b.weight'", "runs past the end of the file");
    put_u64(&b, lay.b_offset_at, UINT64_MAX - 63);   /* start + offset wraps (#17) */
    REFUSED(b.p, b.n, KV_EFORMAT, "tensor #1 'b.weight'",
            "data offset 18446744073709551552 is past the end of the file");
    gbuf_free(&b);
}

Test(gguf, rejects_an_unaligned_tensor_offset)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u64(&b, lay.b_offset_at, 40);
    REFUSED(b.p, b.n, KV_EFORMAT, "'b.weight'", "offset 40 is not a multiple of the alignment 64");
    gbuf_free(&b);
}

Test(gguf, rejects_an_unknown_tensor_type)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    char at[32];
    snprintf(at, sizeof at, "offset %zu", lay.b_type_at);
    put_u32(&b, lay.b_type_at, 4);              /* Q4_2, removed from ggml */
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, at, "tensor #1 'b.weight'", "unknown ggml type id 4");
    put_u32(&b, lay.b_type_at, 9999);
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, at, "unknown ggml type id 9999");
    gbuf_free(&b);
}

Test(gguf, rejects_a_row_that_is_not_whole_blocks)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u64(&b, lay.b_type_at - 16, 33);         /* b.weight ne[0] */
    REFUSED(b.p, b.n, KV_EFORMAT, "'b.weight'", "Q8_0 row of 33 elements",
            "multiple of its block size 32");
    gbuf_free(&b);
}

Test(gguf, rejects_too_many_dims)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u32(&b, lay.infos_at + 8 + strlen("a.weight"), 5);
    REFUSED(b.p, b.n, KV_EFORMAT, "'a.weight'", "5 dims, expected at most 4");
    gbuf_free(&b);
}

Test(gguf, rejects_counts_larger_than_the_file)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u64(&b, lay.n_kv_at, 1ull << 60);
    REFUSED(b.p, b.n, KV_EFORMAT, "offset 16", "metadata_kv_count 1152921504606846976");
    put_u64(&b, lay.n_kv_at, TINY_N_KV);
    put_u64(&b, 8, UINT64_MAX);
    REFUSED(b.p, b.n, KV_EFORMAT, "offset 8", "tensor_count 18446744073709551615");
    gbuf_free(&b);
}

Test(gguf, rejects_a_duplicate_key)
{
    gbuf b = tiny(NULL);
    uint8_t *i8 = memmem(b.p, b.n, "t.i8", 4);
    cr_assert_not_null(i8);
    memcpy(i8, "t.u8", 4);
    REFUSED(b.p, b.n, KV_EFORMAT, "repeats key 't.u8'");
    gbuf_free(&b);
}

Test(gguf, rejects_a_bad_alignment)
{
    gbuf b = tiny(NULL);
    uint8_t *k = memmem(b.p, b.n, "general.alignment", 17);
    cr_assert_not_null(k);
    uint32_t three = 3;
    memcpy(k + 17 + 4, &three, 4);
    REFUSED(b.p, b.n, KV_EFORMAT, "general.alignment = 3, expected a non-zero power of two");
    uint32_t int32_type = GGUF_TYPE_INT32;
    memcpy(k + 17, &int32_type, 4);
    REFUSED(b.p, b.n, KV_EFORMAT, "'general.alignment' is int32, expected uint32");
    gbuf_free(&b);
}

Test(gguf, rejects_an_unknown_value_type)
{
    gbuf b = tiny(NULL);
    uint8_t *k = memmem(b.p, b.n, "t.bool", 6);
    cr_assert_not_null(k);
    put_u32(&b, (size_t)(k - b.p) + 6, 13);
    REFUSED(b.p, b.n, KV_EFORMAT, "'t.bool'", "value type 13 is not a GGUF value type");
    gbuf_free(&b);
}

Test(gguf, rejects_arrays_nested_too_deep)
{
    gbuf b = {0};
    gbuf_bytes(&b, "GGUF", 4), gbuf_u32(&b, 3), gbuf_u64(&b, 0), gbuf_u64(&b, 1);
    gbuf_str(&b, "deep"), gbuf_u32(&b, GGUF_TYPE_ARRAY);
    for (int d = 0; d < GGUF_MAX_DEPTH + 1; d++)
        gbuf_u32(&b, GGUF_TYPE_ARRAY), gbuf_u64(&b, 1);
    gbuf_u32(&b, GGUF_TYPE_UINT8), gbuf_u64(&b, 0);
    REFUSED(b.p, b.n, KV_EUNSUPPORTED, "'deep'", "arrays nested 9 deep, at most 8 supported");
    gbuf_free(&b);
}

Test(gguf, reports_a_missing_required_key)
{
    gbuf b = tiny(NULL);
    kv_err err = {0};
    gguf_file *f = open_bytes(b.p, b.n, &err);
    cr_assert_not_null(f, "%s", err.msg);
    int64_t n;
    double d;
    const char *s;
    size_t len;
    cr_assert_eq(gguf_require_int(f, "llama.context_length", &n, &err), KV_ENOTFOUND);
    cr_assert(strstr(err.msg, "tiny.gguf: missing required key 'llama.context_length'"), "%s",
              err.msg);
    cr_assert_eq(gguf_require_int(f, "general.name", &n, &err), KV_EFORMAT);
    cr_assert(strstr(err.msg, "key 'general.name' is string, expected an integer"), "%s", err.msg);
    cr_assert_eq(gguf_require_float(f, "general.name", &d, &err), KV_EFORMAT);
    cr_assert_eq(gguf_require_str(f, "t.u8", &s, &len, &err), KV_EFORMAT);
    cr_assert_eq(gguf_require_int(f, "t.u64", &n, &err), KV_ERANGE);
    cr_assert_eq(gguf_require_str(f, "general.architecture", &s, &len, &err), 0);
    cr_assert(str_is(s, len, "llama"));
    gguf_close(f);
    gbuf_free(&b);
}

/* ---- kvtrace info ------------------------------------------------------------------------ */

typedef struct run_result {
    int  status;         /* exit status */
    char out[8192];      /* start of stdout */
    char err[2048];      /* start of stderr */
} run_result;

static void slurp(const char *path, char *buf, size_t n)
{
    FILE *fp = fopen(path, "rb");
    size_t got = fp ? fread(buf, 1, n - 1, fp) : 0;
    buf[got] = '\0';
    if (fp)
        fclose(fp);
}

/* Run `$KV_BIN/kvtrace info ARGS` with stdout and stderr captured. */
static void run_info(const char *args, run_result *r)
{
    const char *bin = getenv("KV_BIN");
    char dir[] = "/tmp/kvinfo-XXXXXX", cmd[1024], out[64], err[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' info %s >%s 2>%s", bin ? bin : "bin", args, out, err);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "%s did not exit", cmd);
    r->status = WEXITSTATUS(st);
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
    unlink(out), unlink(err), rmdir(dir);
}

Test(kvtrace_info, exits_1_naming_the_offset_on_a_damaged_model)
{
    tiny_layout lay;
    gbuf b = tiny(&lay);
    put_u32(&b, lay.b_type_at, 9999);
    char path[256], args[300];
    gguf_builder_write_temp(b.p, b.n, "bad.gguf", path);
    snprintf(args, sizeof args, "'%s'", path);
    run_result r;
    run_info(args, &r);
    gguf_builder_remove_temp(path);
    cr_assert_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
    cr_assert(strstr(r.err, "bad.gguf: offset "), "stderr: %s", r.err);
    cr_assert(strstr(r.err, "tensor #1 'b.weight': unknown ggml type id 9999"), "stderr: %s", r.err);
    cr_assert_str_empty(r.out);
    gbuf_free(&b);
}

Test(kvtrace_info, describes_the_smollm2_model)
{
    const char *model = test_model();
    if (!model || access(model, R_OK) != 0)
        cr_skip_test("KV_MODEL not set or not readable");
    char args[600];
    snprintf(args, sizeof args, "'%s'", model);
    run_result r;
    run_info(args, &r);
    cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
    static const char *facts[] = {
        "GGUF v3, 98362432 bytes", "architecture  llama", "layers        30",
        "embedding     576", "heads         9 (kv heads 3, GQA 3:1)", "head dim      64",
        "feed-forward  1536", "vocab         49152", "context       8192",
        "rope base     100000", "rms eps       1e-05", "Q4_1        210",
        "Q8_0          1", "F32          61", "model         gpt2", "pre           smollm",
        "merges        48900", "bos           1 '<|im_start|>'", "eos           2 '<|im_end|>'",
    };
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
        cr_assert(strstr(r.out, facts[i]), "'%s' missing from:\n%s", facts[i], r.out);
}

Test(kvtrace_info, tells_an_hdf5_trace_from_a_model_and_reports_usage_errors)
{
    char path[256], args[300];
    gguf_builder_write_temp("\x89HDF\r\n\x1a\n", 8, "t.h5", path);
    snprintf(args, sizeof args, "'%s'", path);
    run_result r;
    run_info(args, &r);
    gguf_builder_remove_temp(path);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "t.h5: damaged or truncated HDF5 file"),
              "an HDF5 file goes to the trace reader: %s", r.err);
    run_info("", &r);
    cr_assert_eq(r.status, 2);
    run_info("--frobnicate x.gguf", &r);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "unknown option '--frobnicate'"), "%s", r.err);
    run_info("--help", &r);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "usage: kvtrace info MODEL.gguf"), "%s", r.out);
}

/* #17: an empty, a text or an unknown binary file is called what it is, not a GGUF with
 * a wrong magic. */
Test(kvtrace_info, names_an_empty_text_or_unknown_file_for_what_it_is)
{
    static const struct { const char *bytes; size_t n; const char *says; } cases[] = {
        {"", 0, "empty file: neither a GGUF model nor an HDF5 trace"},
        {"hello world\nthis is text\n", 25, "a text file, not a GGUF model"},
        {"\x7f" "ELF\x02\x01", 6, "it starts 7f 45 4c 46"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256], args[300];
        gguf_builder_write_temp(cases[i].bytes, cases[i].n, "what.bin", path);
        snprintf(args, sizeof args, "'%s'", path);
        run_result r;
        run_info(args, &r);
        gguf_builder_remove_temp(path);
        cr_assert_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
        cr_assert(strstr(r.err, "what.bin: ") && strstr(r.err, cases[i].says), "%s", r.err);
        cr_assert_null(strstr(r.err, "magic is"), "not a GGUF magic error: %s", r.err);
    }
}
