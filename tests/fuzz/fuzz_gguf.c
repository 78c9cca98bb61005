/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (model/gguf.c) and the row
 * dequantisers (model/dequant.c).  Built and run by `make fuzz`, never in CI.
 *
 * Each input is opened as an in-memory file.  A refused input must come with a
 * message naming an offset; an accepted one is walked through every getter, nested
 * arrays included, and the first row of each tensor is dequantised, so that
 * AddressSanitizer sees any read the open-time checks failed to cover.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"
#include "gguf.h"

static void walk_array(const gguf_array *a)
{
    int64_t iv;
    double fv;
    size_t len;
    for (uint64_t j = 0; j < gguf_array_len(a); j++) {
        gguf_array_int(a, j, &iv);
        gguf_array_float(a, j, &fv);
        const char *s = gguf_array_str(a, j, &len);
        if (s && len && (s[0] == 0x7f || s[len - 1] == 0x7f))   /* touch both ends */
            iv++;
        walk_array(gguf_array_sub(a, j));
    }
}

static void walk_keys(const gguf_file *f)
{
    for (int64_t i = 0; i < gguf_n_keys(f); i++) {
        const char *name = gguf_key_name(f, i);
        if (gguf_find_key(f, name) != i)
            abort();                             /* names are unique: lookup finds i */
        int64_t iv;
        double fv;
        size_t len;
        gguf_get_int(f, i, &iv);
        gguf_get_float(f, i, &fv);
        const char *s = gguf_get_str(f, i, &len);
        if (s && len && s[len - 1] == 0x7f)
            iv++;
        walk_array(gguf_get_arr(f, i));
    }
}

static void walk_tensors(const gguf_file *f)
{
    static float row[1 << 16];
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (gguf_find_tensor(f, t->name) != t)
            abort();
        size_t row_bytes;
        if (ggml_row_size(t->type, t->ne[0], &row_bytes, NULL) != 0)
            abort();                             /* open checked whole blocks */
        if (t->nbytes == 0 || t->ne[0] > (int64_t)(sizeof row / sizeof row[0]))
            continue;
        if (ggml_type_can_dequant(t->type) && dequant_row(t->type, t->data, row, t->ne[0], NULL))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kv_err err = {0};
    gguf_file *f = gguf_open_buffer(data, size, "fuzz.gguf", &err);
    if (!f) {
        if (err.code >= 0 || !strstr(err.msg, "fuzz.gguf: "))
            abort();                             /* every refusal is explained */
        return 0;
    }
    walk_keys(f);
    walk_tensors(f);
    gguf_close(f);
    return 0;
}
