/*
 * cmd_info.c — `kvtrace info FILE`: describe a model or a trace.  The file kind is
 * read from its magic bytes: GGUF models by gguf_info_print() (model/gguf_info.c),
 * HDF5 traces by trace_info_print() (trace/trace_info.c).
 */
#include "commands.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "gguf.h"
#include "opts.h"
#include "trace_file.h"

typedef struct options {
    const char *path;
    int         tensors;
} options;

static const opts_row info_rows[] = {
    {"tensors", 0, OPTS_FLAG, offsetof(options, tensors), NULL,
     "also list every tensor of a model: name, type, shape, bytes", 0, 0, NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static int describe(void *ctx, kv_err *err)
{
    const options *o = ctx;
    unsigned char magic[8] = {0};
    FILE *fp = fopen(o->path, "rb");
    if (!fp)
        return kv_errorf(err, KV_EIO, "%s: cannot open: %s", o->path, strerror(errno));
    size_t got = fread(magic, 1, sizeof magic, fp);
    fclose(fp);
    if (got >= 4 && !memcmp(magic, "\x89HDF", 4))
        return trace_info_print(o->path, stdout, err);
    return gguf_info_print(o->path, o->tensors, err);   /* its errors name a wrong magic */
}

int cmd_info(int argc, char **argv)
{
    options o = {0};
    const opts_command cmd = {
        .prog = "kvtrace info",
        .usage = "kvtrace info MODEL.gguf [--tensors] | TRACE.h5",
        .about = "Describe a GGUF model: architecture, shapes (layers, embedding, heads, KV "
                 "heads,\nhead dim, feed-forward, vocab, context, RoPE base, RMS epsilon), "
                 "tensor types\nwith counts and bytes, tokenizer (model, pre-tokenizer, vocab, "
                 "merges, special\ntoken ids), file size and GGUF version; or an HDF5 trace: "
                 "its model, shapes,\nrecorded layers and heads, steps and options.  The file "
                 "kind is read from its magic.",
        .groups = {{"options", info_rows, &o}},
        .positional = {&o.path},
        .required = 1,
        .footer = "exit status: 0 success, 1 unreadable or malformed file, 2 usage error\n",
    };
    return opts_main(&cmd, argc, argv, describe, &o);
}
