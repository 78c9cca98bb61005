/*
 * cmd_record.c — `kvtrace record MODEL PROMPT -o TRACE.h5 [options]`: the command line
 * around trace/recorder.c.  Ctrl-C stops at the next step and leaves the trace marked
 * incomplete; a second Ctrl-C kills the process as usual.
 */
#include "commands.h"

#include "opts.h"
#include "recorder.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct options {
    record_options record;
    const char    *output, *dtype, *compress;
} options;

#define R(field) offsetof(options, field)

static const opts_row record_rows[] = {
    {"output", 'o', OPTS_TEXT, R(output), "F", "the trace to write (required)", 0, 0, NULL},
    {"layers", 0, OPTS_TEXT, R(record.layers), "LIST",
     "layers to record, e.g. 0,4,8-11 (default: all)", 0, 0, NULL},
    {"heads", 0, OPTS_TEXT, R(record.heads), "LIST", "query heads to record (default: all)",
     0, 0, NULL},
    {"dtype", 0, OPTS_TEXT, R(dtype), "f16|f32",
     "stored precision (default f16, read by h5py as float16)", 0, 0, NULL},
    {"compress", 0, OPTS_TEXT, R(compress), "C",
     "none, deflate[:1-9] (default deflate:1) or lz4", 0, 0, NULL},
    {"record-queries", 0, OPTS_FLAG, R(record.trace.record_queries), NULL,
     "also store the post-RoPE queries (for kvtrace verify)", 0, 0, NULL},
    {"force", 0, OPTS_FLAG, R(record.trace.force), NULL, "overwrite an existing TRACE", 0, 0,
     NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static int check_trace_options(options *o, kv_err *err)
{
    if (trace_compression_parse(o->compress, &o->record.trace.compression, err) != KV_OK)
        return kv_err_prefix(err, "--compress: ");
    if (!o->dtype || !strcmp(o->dtype, "f16"))
        o->record.trace.dtype = TRACE_F16;
    else if (!strcmp(o->dtype, "f32"))
        o->record.trace.dtype = TRACE_F32;
    else
        return kv_errorf(err, KV_EUSAGE, "--dtype '%s': expected f16 or f32", o->dtype);
    if (!o->output)
        return kv_errorf(err, KV_EUSAGE, "-o TRACE.h5 is required");
    return KV_OK;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL);   /* a second Ctrl-C ends the process at once */
}

static void report(const char *path, const record_result *res)
{
    fprintf(stderr, "recorded %lld steps (%d prompt + %d generated) in %.2f s, %.1f tokens/s "
            "-> %s\n", (long long)res->steps, res->prompt_tokens, res->generated, res->seconds,
            res->seconds > 0 ? (double)res->steps / res->seconds : 0.0, path);
}

static int record(const session_options *so, options *o, kv_err *err)
{
    int rc = session_check(so, err);
    if (rc == KV_OK)
        rc = check_trace_options(o, err);
    if (rc != KV_OK)
        return rc;
    o->record.progress = true;
    o->record.stop = &interrupted;
    interrupted = 0;
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigaction(SIGINT, &sa, &old);
    session s;
    record_result res;
    rc = session_open(&s, so, err);
    if (rc == KV_OK)
        rc = record_trace(&s, so, o->output, &o->record, &res, err);
    sigaction(SIGINT, &old, NULL);
    if (rc == KV_OK)
        report(o->output, &res);
    session_close(&s);
    return rc;
}

typedef struct record_cli {
    session_options so;
    options         o;
} record_cli;

static int run(void *ctx, kv_err *err)
{
    record_cli *c = ctx;
    return record(&c->so, &c->o, err);
}

int cmd_record(int argc, char **argv)
{
    record_cli c = {.so = session_options_default()};
    const opts_command cmd = {
        .prog = "kvtrace record",
        .usage = "kvtrace record MODEL.gguf PROMPT -o TRACE.h5 [options]",
        .about = "Run MODEL on PROMPT (and generate up to --max-new-tokens) with the full KV "
                 "cache,\nrecording every attention probability row of every recorded layer "
                 "and query\nhead, the post-RoPE keys and values, the tokens and the model's "
                 "next-token\nlog-probabilities to an HDF5 trace (docs/TRACE_FORMAT.md).  "
                 "PROMPT '-' reads\nstandard input.",
        .groups = {{"options", record_rows, &c.o},
                   {"session options", session_options_rows, &c.so}},
        .positional = {&c.so.model, &c.so.prompt},
        .footer = "memory: the model and its cache, plus 4 x 64 x layers x heads x T bytes of "
                  "row\nbuffers and the writer's batches (docs/TRACE_FORMAT.md); e.g. "
                  "SmolLM2, T = 1024,\nall rows: about 70 MB + 70 MB.\n"
                  "exit status: 0 success, 1 runtime error or interrupted (the trace stays "
                  "marked\nincomplete), 2 bad usage\nexample:\n  kvtrace record "
                  "models/SmolLM2-135M-Instruct.Q4_1.gguf \"The cat\" -o cat.h5 "
                  "--max-new-tokens 32\n",
    };
    return opts_main(&cmd, argc, argv, run, &c);
}
