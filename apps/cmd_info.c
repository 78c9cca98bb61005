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

/* 1 when the first bytes look like text (printable ASCII, whitespace, UTF-8). */
static int looks_like_text(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t')
            return 0;
    return n > 0;
}

/* A file that is neither kind is named for what it is, not by a GGUF magic error. */
static int neither(const char *path, const unsigned char *head, size_t got, kv_err *err)
{
    if (got == 0)
        return kv_errorf(err, KV_EFORMAT, "%s: empty file: neither a GGUF model nor an HDF5 "
                         "trace", path);
    if (looks_like_text(head, got))
        return kv_errorf(err, KV_EFORMAT, "%s: a text file, not a GGUF model (magic \"GGUF\") "
                         "or an HDF5 trace (magic \"\\x89HDF\")", path);
    return kv_errorf(err, KV_EFORMAT, "%s: neither a GGUF model (magic \"GGUF\") nor an HDF5 "
                     "trace (magic \"\\x89HDF\"): it starts %02x %02x %02x %02x", path, head[0],
                     head[1], head[2], head[3]);
}

static int describe(void *ctx, kv_err *err)
{
    const options *o = ctx;
    unsigned char head[256] = {0};
    FILE *fp = fopen(o->path, "rb");
    if (!fp)
        return kv_errorf(err, KV_EIO, "%s: cannot open: %s", o->path, strerror(errno));
    size_t got = fread(head, 1, sizeof head, fp);
    fclose(fp);
    if (got >= 4 && !memcmp(head, "\x89HDF", 4))
        return trace_info_print(o->path, stdout, err);
    if (got >= 4 && !memcmp(head, "GGUF", 4))
        return gguf_info_print(o->path, o->tensors, err);
    return neither(o->path, head, got, err);
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
