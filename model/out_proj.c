/* out_proj.c — see out_proj.h. */
#include "out_proj.h"

#include "dequant.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>

/* Layer l's W_o into a new rows × cols array; shapes must agree across layers. */
static int read_layer(const gguf_file *f, int l, out_proj *o, kv_err *err)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return kv_errorf(err, KV_ENOTFOUND, "%s: missing tensor '%s'", gguf_path(f), name);
    if (t->n_dims != 2 || t->ne[0] < 1 || t->ne[1] < 1 || t->ne[0] > (1 << 20) ||
        t->ne[1] > (1 << 20) || (o->cols && (t->ne[0] != o->cols || t->ne[1] != o->rows)))
        return kv_errorf(err, KV_EFORMAT, "%s: tensor '%s' has shape [%lld, %lld]: expected "
                         "one 2-D shape for every layer", gguf_path(f), name,
                         (long long)t->ne[0], (long long)t->ne[1]);
    o->cols = (int)t->ne[0];
    o->rows = (int)t->ne[1];
    size_t row_bytes;
    int rc = ggml_row_size(t->type, o->cols, &row_bytes, err);
    if (rc != KV_OK)
        return rc;
    if (!(o->w[l] = malloc((size_t)o->rows * o->cols * sizeof *o->w[l])))
        return kv_errorf(err, KV_ENOMEM, "out of memory for '%s'", name);
    for (int r = 0; rc == KV_OK && r < o->rows; r++)
        rc = dequant_row(t->type, (const char *)t->data + (size_t)r * row_bytes,
                         o->w[l] + (size_t)r * o->cols, o->cols, err);
    return rc;
}

int out_proj_load(const char *path, out_proj *out, kv_err *err)
{
    *out = (out_proj){0};
    gguf_file *f = gguf_open(path, err);
    if (!f)
        return err && err->code ? err->code : KV_EIO;
    int n = 0;
    char name[64];
    do   /* layers are blk.0 .. blk.n-1 */
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", n);
    while (gguf_find_tensor(f, name) && ++n < 4096);
    int rc = n > 0 ? KV_OK : kv_errorf(err, KV_ENOTFOUND, "%s: no blk.0.attn_output.weight",
                                       path);
    if (rc == KV_OK && !(out->w = calloc((size_t)n, sizeof *out->w)))
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    out->n_layer = rc == KV_OK ? n : 0;
    for (int l = 0; rc == KV_OK && l < n; l++)
        rc = read_layer(f, l, out, err);
    gguf_close(f);
    if (rc != KV_OK)
        out_proj_free(out);
    return rc;
}

void out_proj_free(out_proj *o)
{
    for (int l = 0; o->w && l < o->n_layer; l++)
        free(o->w[l]);
    free(o->w);
    *o = (out_proj){0};
}
