/*
 * gguf_info.c — `kvtrace info MODEL.gguf`'s description of a model file, for users
 * deciding what to run and for checking a download: architecture and shapes, tensor
 * types with counts and bytes, tokenizer facts and special tokens, file size and GGUF
 * version.  Absent or mistyped keys are shown as "-".
 */
#include "gguf.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dequant.h"

/* ---- small readers: absent or mistyped keys are shown as "-" ------------------------- */

/* "{arch}.{suffix}" when suffix starts with '.', else the key itself. */
static const char *arch_key(char *buf, size_t n, const char *arch, const char *suffix)
{
    snprintf(buf, n, "%s%s", suffix[0] == '.' ? arch : "", suffix);
    return buf;
}

static bool get_int(const gguf_file *f, const char *key, int64_t *v)
{
    return gguf_get_int(f, gguf_find_key(f, key), v) == 0;
}

static bool get_float(const gguf_file *f, const char *key, double *v)
{
    return gguf_get_float(f, gguf_find_key(f, key), v) == 0;
}

/* A string value as a printf precision and pointer: "%.*s". */
static const char *get_str(const gguf_file *f, const char *key, int *len)
{
    size_t n = 0;
    const char *s = gguf_get_str(f, gguf_find_key(f, key), &n);
    *len = s ? (n > 200 ? 200 : (int)n) : 1;
    return s ? s : "-";
}

/* Bytes from the file, printable: control and non-ASCII bytes as \xNN. */
static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isprint(c) && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

static void print_mib(uint64_t bytes)
{
    printf("%llu bytes (%.1f MiB)", (unsigned long long)bytes, (double)bytes / (1024.0 * 1024.0));
}

/* ---- sections -------------------------------------------------------------------------- */

static const char *file_type_name(int64_t t)
{
    static const struct { int id; const char *name; } names[] = {
        {0, "ALL_F32"}, {1, "MOSTLY_F16"}, {2, "MOSTLY_Q4_0"}, {3, "MOSTLY_Q4_1"},
        {7, "MOSTLY_Q8_0"}, {8, "MOSTLY_Q5_0"}, {9, "MOSTLY_Q5_1"}, {10, "MOSTLY_Q2_K"},
        {11, "MOSTLY_Q3_K_S"}, {12, "MOSTLY_Q3_K_M"}, {13, "MOSTLY_Q3_K_L"},
        {14, "MOSTLY_Q4_K_S"}, {15, "MOSTLY_Q4_K_M"}, {16, "MOSTLY_Q5_K_S"},
        {17, "MOSTLY_Q5_K_M"}, {18, "MOSTLY_Q6_K"}, {25, "MOSTLY_IQ4_NL"}, {32, "MOSTLY_BF16"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].id == t)
            return names[i].name;
    return "?";
}

static void print_file(const gguf_file *f)
{
    int n;
    const char *name = get_str(f, "general.name", &n);
    printf("file          %s\n", gguf_path(f));
    printf("format        GGUF v%u, ", gguf_version(f));
    print_mib(gguf_file_size(f));
    printf("\n              %lld metadata keys, %lld tensors, alignment %u, data at byte %llu\n",
           (long long)gguf_n_keys(f), (long long)gguf_n_tensors(f), gguf_alignment(f),
           (unsigned long long)gguf_data_offset(f));
    printf("name          %.*s\n", n, name);
    int64_t ft;
    if (get_int(f, "general.file_type", &ft))
        printf("file type     %lld (%s)\n", (long long)ft, file_type_name(ft));
}

/* One "  label  value" line for an integer key of the architecture, or "-". */
static void shape_int(const gguf_file *f, const char *arch, const char *label, const char *suffix)
{
    char key[160];
    int64_t v;
    if (get_int(f, arch_key(key, sizeof key, arch, suffix), &v))
        printf("  %-13s %lld\n", label, (long long)v);
    else
        printf("  %-13s -\n", label);
}

static void print_shapes(const gguf_file *f, const char *arch)
{
    char key[160];
    int64_t embd = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
    double v;
    printf("shapes\n");
    shape_int(f, arch, "layers", ".block_count");
    shape_int(f, arch, "embedding", ".embedding_length");
    get_int(f, arch_key(key, sizeof key, arch, ".embedding_length"), &embd);
    get_int(f, arch_key(key, sizeof key, arch, ".attention.head_count"), &heads);
    if (!get_int(f, arch_key(key, sizeof key, arch, ".attention.head_count_kv"), &kv_heads))
        kv_heads = heads;                     /* llama.cpp's default: no GQA */
    if (!get_int(f, arch_key(key, sizeof key, arch, ".attention.key_length"), &head_dim) && heads)
        head_dim = embd / heads;
    printf("  %-13s %lld (kv heads %lld", "heads", (long long)heads, (long long)kv_heads);
    if (kv_heads > 0 && heads % kv_heads == 0)
        printf(", GQA %lld:1", (long long)(heads / kv_heads));
    printf(")\n  %-13s %lld\n", "head dim", (long long)head_dim);
    shape_int(f, arch, "feed-forward", ".feed_forward_length");
    if (!get_int(f, arch_key(key, sizeof key, arch, ".vocab_size"), &vocab))
        vocab = (int64_t)gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.tokens"));
    printf("  %-13s %lld\n", "vocab", (long long)vocab);
    shape_int(f, arch, "context", ".context_length");
    if (get_float(f, arch_key(key, sizeof key, arch, ".rope.freq_base"), &v))
        printf("  %-13s %g\n", "rope base", v);
    else
        printf("  %-13s 10000 (default)\n", "rope base");
    shape_int(f, arch, "rope dims", ".rope.dimension_count");
    if (get_float(f, arch_key(key, sizeof key, arch, ".attention.layer_norm_rms_epsilon"), &v))
        printf("  %-13s %g\n", "rms eps", v);
    shape_int(f, arch, "sliding win", ".attention.sliding_window");
}

static void print_tensor_types(const gguf_file *f)
{
    int64_t count[GGML_TYPE_COUNT] = {0};
    uint64_t bytes[GGML_TYPE_COUNT] = {0}, total = 0, params = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
        total += t->nbytes;
        params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    printf("tensor types  %-8s %6s %14s\n", "type", "count", "bytes");
    for (int ty = 0; ty < GGML_TYPE_COUNT; ty++)
        if (count[ty])
            printf("              %-8s %6lld %14llu%s\n", ggml_type_name(ty), (long long)count[ty],
                   (unsigned long long)bytes[ty], ggml_type_can_dequant(ty) ? "" : "  (no dequantisation)");
    printf("              %-8s %6lld %14llu  (%.2fM parameters)\n", "total",
           (long long)gguf_n_tensors(f), (unsigned long long)total, (double)params / 1e6);
}

/* "  label  id 'text'" for a special-token id key, or "-". */
static void special_token(const gguf_file *f, const char *label, const char *key)
{
    int64_t id;
    printf("  %-13s ", label);
    if (!get_int(f, key, &id)) {
        printf("-\n");
        return;
    }
    size_t n;
    const char *s = gguf_arr_str(f, gguf_find_key(f, "tokenizer.ggml.tokens"), (uint64_t)id, &n);
    printf("%lld", (long long)id);
    if (s) {
        printf(" '");
        print_escaped(s, n);
        printf("'");
    }
    printf("\n");
}

static void print_tokenizer(const gguf_file *f)
{
    int n_model, n_pre;
    const char *model = get_str(f, "tokenizer.ggml.model", &n_model);
    const char *pre = get_str(f, "tokenizer.ggml.pre", &n_pre);
    int64_t tt = gguf_find_key(f, "tokenizer.ggml.token_type"), control = 0, v, flag;
    for (uint64_t j = 0; j < gguf_arr_len(f, tt); j++)
        control += gguf_arr_int(f, tt, j, &v) == 0 && v == 3;   /* 3: control token */
    printf("tokenizer\n  %-13s %.*s\n  %-13s %.*s\n", "model", n_model, model, "pre", n_pre, pre);
    printf("  %-13s %llu\n", "tokens",
           (unsigned long long)gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.tokens")));
    printf("  %-13s %llu\n", "merges",
           (unsigned long long)gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.merges")));
    printf("  %-13s %lld\n", "control", (long long)control);
    special_token(f, "bos", "tokenizer.ggml.bos_token_id");
    special_token(f, "eos", "tokenizer.ggml.eos_token_id");
    special_token(f, "unknown", "tokenizer.ggml.unknown_token_id");
    special_token(f, "padding", "tokenizer.ggml.padding_token_id");
    if (get_int(f, "tokenizer.ggml.add_bos_token", &flag))
        printf("  %-13s %s\n", "add bos", flag ? "true" : "false");
    size_t tmpl = 0;
    if (gguf_get_str(f, gguf_find_key(f, "tokenizer.chat_template"), &tmpl))
        printf("  %-13s %zu bytes\n", "chat template", tmpl);
}

static void print_tensors(const gguf_file *f)
{
    printf("tensors\n");
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        printf("  %-28s %-7s [", t->name, ggml_type_name(t->type));
        for (int d = 0; d < (t->n_dims ? t->n_dims : 1); d++)
            printf("%s%lld", d ? ", " : "", (long long)t->ne[d]);
        printf("] %zu bytes\n", t->nbytes);
    }
}

/* ---- the description ------------------------------------------------------------------ */

int gguf_info_print(const char *path, int list_tensors, kv_err *err)
{
    gguf_file *f = gguf_open(path, err);
    if (!f)
        return err && err->code ? err->code : KV_EIO;
    int n;
    const char *arch = get_str(f, "general.architecture", &n);
    char arch_z[64];
    snprintf(arch_z, sizeof arch_z, "%.*s", n, arch);
    print_file(f);
    printf("architecture  %s\n", arch_z);
    print_shapes(f, arch_z);
    print_tensor_types(f);
    print_tokenizer(f);
    if (list_tensors)
        print_tensors(f);
    gguf_close(f);
    return KV_OK;   /* a write error on standard output is the caller's to report */
}

