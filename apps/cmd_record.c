/*
 * cmd_record.c — `kvtrace record MODEL PROMPT -o TRACE.h5 [options]`: the command line
 * around recorder.c.  Ctrl-C stops at the next step and leaves the trace marked
 * incomplete; a second Ctrl-C kills the process as usual.
 */
#include "cmd_record.h"

#include "recorder.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: kvtrace record MODEL.gguf PROMPT -o TRACE.h5 [--chat] [--max-new-tokens N]\n"
    "                      [--layers 0,4,8-11] [--heads 0-8] [--dtype f16|f32]\n"
    "                      [--compress none|deflate[:N]|lz4] [--record-queries] [--force]\n"
    "                      [sampling options of kvtrace run]\n";

static void print_help(void)
{
    printf("%s\n"
           "Run MODEL on PROMPT (and generate up to --max-new-tokens) with the full KV cache,\n"
           "recording every attention probability row of every recorded layer and query\n"
           "head, the post-RoPE keys and values, the tokens and the model's next-token\n"
           "log-probabilities to an HDF5 trace (docs/TRACE_FORMAT.md).  PROMPT '-' reads\n"
           "standard input.\n\n"
           "options:\n"
           "  -o, --output F      the trace to write (required)\n"
           "  --layers LIST       layers to record, e.g. 0,4,8-11 (default: all)\n"
           "  --heads LIST        query heads to record (default: all)\n"
           "  --dtype f16|f32     stored precision (default f16, read by h5py as float16)\n"
           "  --compress C        none, deflate[:1-9] (default deflate:1) or lz4\n"
           "  --record-queries    also store the post-RoPE queries (for kvtrace verify)\n"
           "  --force             overwrite an existing TRACE\n", usage);
    session_print_options(stdout);
    printf("  -h, --help          this help\n\n"
           "memory: the model and its cache, plus 4 x 64 x layers x heads x T bytes of row\n"
           "buffers and the writer's batches (docs/TRACE_FORMAT.md); e.g. SmolLM2, T = 1024,\n"
           "all rows: about 70 MB + 70 MB.\n"
           "exit status: 0 success, 1 runtime error or interrupted (the trace stays marked\n"
           "incomplete), 2 bad usage\n"
           "example:\n  kvtrace record models/SmolLM2-135M-Instruct.Q4_1.gguf \"The cat\" "
           "-o cat.h5 --max-new-tokens 32\n");
}

typedef struct options {
    session_options session;
    record_options  record;
    const char     *output, *dtype, *compress;
} options;

/* Options of this command; 1 if `a` is not one of them, 2 after a usage error. */
static int parse_own(options *o, const char *a, const char *v, int *used)
{
    const char **value = !strcmp(a, "-o") || !strcmp(a, "--output") ? &o->output
                         : !strcmp(a, "--layers")                   ? &o->record.layers
                         : !strcmp(a, "--heads")                    ? &o->record.heads
                         : !strcmp(a, "--dtype")                    ? &o->dtype
                         : !strcmp(a, "--compress")                 ? &o->compress
                                                                    : NULL;
    *used = 0;
    if (!strcmp(a, "--force"))
        o->record.trace.force = 1;
    else if (!strcmp(a, "--record-queries"))
        o->record.trace.record_queries = 1;
    else if (!value)
        return 1;
    else if (!v) {
        fprintf(stderr, "kvtrace record: %s expects a value\n%s", a, usage);
        return 2;
    } else {
        *value = v;
        *used = 1;
    }
    return 0;
}

static int parse_trace_options(options *o)
{
    kv_err err = {0};
    if (trace_compression_parse(o->compress, &o->record.trace.compression, &err) != 0) {
        fprintf(stderr, "kvtrace record: --compress: %s\n", err.msg);
        return 2;
    }
    if (!o->dtype || !strcmp(o->dtype, "f16"))
        o->record.trace.dtype = TRACE_F16;
    else if (!strcmp(o->dtype, "f32"))
        o->record.trace.dtype = TRACE_F32;
    else {
        fprintf(stderr, "kvtrace record: --dtype '%s': expected f16 or f32\n", o->dtype);
        return 2;
    }
    if (!o->output) {
        fprintf(stderr, "kvtrace record: -o TRACE.h5 is required\n%s", usage);
        return 2;
    }
    return 0;
}

/* 0: record; 2: usage error (reported); -1: help printed. */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->session = session_options_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 0, rc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help();
            return -1;
        }
        if (a[0] != '-' || !a[1]) {
            if (session_positional(&o->session, "kvtrace record", a))
                return 2;
            continue;
        }
        rc = parse_own(o, a, v, &used);
        if (rc == 1)
            rc = session_parse_option(&o->session, "kvtrace record", a, v, &used);
        if (rc == 1)
            fprintf(stderr, "kvtrace record: unknown option '%s'\n%s", a, usage);
        if (rc)
            return 2;
        i += used;
    }
    int rc = session_check(&o->session, "kvtrace record", usage);
    return rc ? rc : parse_trace_options(o);
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

int cmd_record(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    o.record.progress = true;
    o.record.stop = &interrupted;
    interrupted = 0;
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigaction(SIGINT, &sa, &old);
    kv_err err = {0};
    session s;
    record_result res;
    rc = session_open(&s, &o.session, &err);
    if (!rc)
        rc = record_trace(&s, &o.session, o.output, &o.record, &res, &err);
    sigaction(SIGINT, &old, NULL);
    if (rc)
        fprintf(stderr, "kvtrace record: %s\n", err.msg);
    else
        report(o.output, &res);
    session_close(&s);
    return rc ? kv_err_exit_status(rc) : 0;
}
