/*
 * cmd_record.c — `kvtrace record MODEL PROMPT -o TRACE.h5 [options]`: the command line
 * around trace/recorder.c.  Ctrl-C, SIGTERM and SIGHUP stop at the next step and leave
 * the trace marked incomplete; a second one kills the process as usual (and even
 * then, or after SIGKILL, TRACE.h5.partial opens as it stood at its last batch).
 */
#include "commands.h"

#include "opts.h"
#include "out.h"
#include "recorder.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct options {
    record_options record;
    const char    *output, *dtype, *qk_dtype, *compress;
} options;

#define R(field) offsetof(options, field)

static const opts_row record_rows[] = {
    {"output", 'o', OPTS_TEXT, R(output), "F", "the trace to write (required)", 0, 0, NULL},
    {"layers", 0, OPTS_TEXT, R(record.layers), "LIST",
     "layers to record, e.g. 0,4,8-11 (default: all)", 0, 0, NULL},
    {"heads", 0, OPTS_TEXT, R(record.heads), "LIST", "query heads to record (default: all)",
     0, 0, NULL},
    {"rows", 0, OPTS_TEXT, R(record.rows), "R",
     "whose attention rows are stored: none (default: each row\n"
     "is rebuilt from the queries and keys when read, bit for\n"
     "bit, and the trace grows with T, not T^2), all, or\n"
     "LAYERS:HEADS (e.g. 0,15:0-3)", 0, 0, NULL},
    {"dtype", 0, OPTS_TEXT, R(dtype), "f16|f32",
     "precision of stored rows and values (default f16)", 0, 0, NULL},
    {"qk-dtype", 0, OPTS_TEXT, R(qk_dtype), "f16|f32",
     "precision of queries and keys (default f32 when rows are\n"
     "rebuilt, as it decides theirs; else f16)", 0, 0, NULL},
    {"compress", 0, OPTS_TEXT, R(compress), "C",
     "none, deflate[:1-9] or lz4 (default: deflate:1 with\n"
     "stored rows, else none: queries and keys compress 1.1x)", 0, 0, NULL},
    {"record-queries", 0, OPTS_FLAG, R(record.trace.record_queries), NULL,
     "with --rows all, also store the queries (kvtrace verify\n"
     "then recomputes every row)", 0, 0, NULL},
    {"force", 0, OPTS_FLAG, R(record.trace.force), NULL, "overwrite an existing TRACE", 0, 0,
     NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static int parse_dtype(const char *option, const char *text, trace_dtype fallback,
                       trace_dtype *out, kv_err *err)
{
    if (!text)
        *out = fallback;
    else if (!strcmp(text, "f16") || !strcmp(text, "f32"))
        *out = strcmp(text, "f16") ? TRACE_F32 : TRACE_F16;
    else
        return kv_errorf(err, KV_EUSAGE, "--%s '%s': expected f16 or f32", option, text);
    return KV_OK;
}

static int check_trace_options(const session_options *so, options *o, kv_err *err)
{
    trace_options *t = &o->record.trace;
    if (!o->record.rows)
        o->record.rows = "none";
    const int rebuilt = strcmp(o->record.rows, "all") != 0;
    if (trace_compression_parse(o->compress ? o->compress : rebuilt ? "none" : "deflate:1",
                                &t->compression, err) != KV_OK)
        return kv_err_prefix(err, "--compress: ");
    if (parse_dtype("dtype", o->dtype, TRACE_F16, &t->dtype, err) != KV_OK ||
        parse_dtype("qk-dtype", o->qk_dtype, rebuilt ? TRACE_F32 : TRACE_F16, &t->qk_dtype,
                    err) != KV_OK)
        return KV_EUSAGE;
    if (!o->output)
        return kv_errorf(err, KV_EUSAGE, "-o TRACE.h5 is required");
    const char *inputs[] = {so->model, so->prompt_file};
    return out_check(o->output, inputs, 2, err);
}

static volatile sig_atomic_t interrupted;

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
enum { N_STOP = sizeof stop_signals / sizeof stop_signals[0] };

static void on_stop(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL);   /* a second one ends the process at once */
}

static void report(const char *path, const record_result *res)
{
    fprintf(stderr, "recorded %lld steps (%d prompt + %d generated) in %.2f s, %.1f tokens/s "
            "-> %s\n", (long long)res->steps, res->prompt_tokens, res->generated, res->seconds,
            res->seconds > 0 ? (double)res->steps / res->seconds : 0.0, path);
}

static int record(session_options *so, options *o, kv_err *err)
{
    int rc = session_check(so, err);
    if (rc == KV_OK)
        rc = check_trace_options(so, o, err);
    if (rc != KV_OK)
        return rc;
    const int stores_rows = strcmp(o->record.rows, "none") != 0;
    if (stores_rows && so->device && !strcmp(so->device, "cuda"))
        return kv_errorf(err, KV_EUSAGE, "--device cuda records row-free traces only (--rows "
                         "none); stored rows come from the CPU");
    if (stores_rows && so->device && !strcmp(so->device, "auto"))
        so->device = "cpu";   /* auto: where this trace can be made */
    o->record.progress = true;
    o->record.stop = &interrupted;
    interrupted = 0;
    struct sigaction sa = {.sa_handler = on_stop}, old[N_STOP];
    for (int i = 0; i < N_STOP; i++)
        sigaction(stop_signals[i], &sa, &old[i]);
    session s;
    record_result res;
    rc = session_open(&s, so, err);
    if (rc == KV_OK)
        rc = record_trace(&s, so, o->output, &o->record, &res, err);
    for (int i = 0; i < N_STOP; i++)
        sigaction(stop_signals[i], &old[i], NULL);
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
                 "cache\nand record what rebuilds every attention row of every recorded "
                 "layer and\nquery head: the post-RoPE queries and keys (f32), the values, "
                 "the tokens and\nthe model's next-token log-probabilities, in an HDF5 "
                 "trace\n(docs/TRACE_FORMAT.md); --rows all also stores the rows "
                 "themselves.  The file\nis written as TRACE.h5.partial and renamed when "
                 "the run ends.  PROMPT '-'\nreads standard input.",
        .groups = {{"options", record_rows, &c.o},
                   {"session options", session_options_rows, &c.so}},
        .positional = {&c.so.model, &c.so.prompt},
        .footer = "sizes: SmolLM2-135M keeps 104 KB per token without rows (8K tokens: 0.85 "
                  "GB);\nstored rows add 540 x T bytes per token (f16), T^2 in all (8K: "
                  "18 GB).\nmemory: the model and its cache, the writer's two batches of 64 "
                  "steps, and\nwith stored rows 2 x 64 x layers x heads x T bytes of row "
                  "buffers\n(4 x ... with --dtype f32; docs/TRACE_FORMAT.md, Memory).\n"
                  "exit status: 0 success, 1 runtime error or interrupted (the trace stays "
                  "marked\nincomplete), 2 bad usage\nexample:\n  kvtrace record "
                  "models/SmolLM2-135M-Instruct.Q4_1.gguf \"The cat\" -o cat.h5 "
                  "--max-new-tokens 32\n",
    };
    return opts_main(&cmd, argc, argv, run, &c);
}
