/* replay_args.c — the option tables of kvsim replay, sweep, std and scope; see
 * replay_args.h. */
#include "replay_args.h"

#include "input.h"
#include "opts.h"
#include "out.h"
#include "results.h"
#include "trace_file.h"
#include "vec.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define A(field) offsetof(replay_args, field)
#define END {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL}

static int load_policy_lib(const char *path, kv_err *err) { return policy_lib_load(path, err); }

/* The rows every replay command has: selections, outputs, threads. */
#define ROWS_COMMON                                                                       \
    {"layers", 0, OPTS_TEXT, A(req.layers), "L",                                          \
     "model layer numbers, e.g. 0,4,8-11 (default: all recorded)", 0, 0, NULL},           \
    {"heads", 0, OPTS_TEXT, A(req.heads), "H", "model query heads (default: all recorded)", \
     0, 0, NULL},                                                                          \
    {"layer-kind", 0, OPTS_TEXT, A(req.layer_kind), "K",                                  \
     "local (sliding-window layers) or global: only those of the\nselected layers "        \
     "(default: both; `kvtrace info` says which)", 0, 0, NULL},                          \
    {"output", 'o', OPTS_TEXT, A(csv), "FILE", "the CSV (default: stdout)", 0, 0, NULL},  \
    {"threads", 0, OPTS_INT, A(req.threads), "N",                                         \
     "OpenMP threads (results do not depend on it)", 1, 1024, NULL},                     \
    {"strict", 0, OPTS_FLAG, A(req.strict), NULL,                                         \
     "refuse an incomplete trace instead of replaying its steps", 0, 0, NULL},           \
    {"follow", 0, OPTS_FLAG, A(follow), NULL,                                             \
     "TRACE is being recorded: wait for it (showing its steps) and read\n"                \
     "the whole trace (a fractional budget needs the final T)", 0, 0, NULL},           \
    {"traces", 0, OPTS_TEXT, A(traces_file), "FILE",                                      \
     "more traces, one path per line (# comments); with TRACE...\nall go into one CSV "     \
     "(docs/SCALE.md)", 0, 0, NULL},                                                      \
    {"resume", 0, OPTS_TEXT, A(resume), "FILE",                                           \
     "journal of finished work units: units in FILE are not\nreplayed again, new ones "   \
     "are appended (docs/SCALE.md)", 0, 0, NULL}

/* The rows of the commands that replay policies. */
#define ROWS_REPLAYING                                                                    \
    ROWS_COMMON,                                                                          \
    {"json", 0, OPTS_TEXT, A(json), "FILE", "the JSON summary of the overall lines", 0, 0, \
     NULL},                                                                                \
    {"metrics", 0, OPTS_TEXT, A(req.metrics), "LIST",                                     \
     "mass,overlap,consistency,output_error,oracle_gap (default:\nall; oracle_gap replays " \
     "the oracle beside, after a pre-pass)", 0, 0, NULL},                                 \
    {"device", 0, OPTS_TEXT, A(req.device), "cpu|cuda",                                   \
     "where policies step (default cpu); cuda runs full and the\nscore x scope policies " \
     "that evict by the stride rule (h2o,\nmas, roco, tova, streaming, recency, scored: " \
     "scores\naas/mas/ltas/recency, scopes sinks/window/std, stream\nphase) for mass, "    \
     "overlap and output_error, with the CPU's\nnumbers bit for bit", 0, 0, NULL},        \
    {"policy-lib", 0, OPTS_EARLY, A(policy_lib), "FILE.so",                               \
     "load policies compiled against policies/policy.h\n(docs/POLICIES.md, \"Writing a "  \
     "policy\")", 0, 0, load_policy_lib}

static const opts_row replay_rows[] = {
    {"policy", 0, OPTS_TEXT, A(req.policies), "P", "the policy (kvsim policies)", 0, 0, NULL},
    {"budget", 0, OPTS_TEXT, A(req.budgets), "B",
     "0.4 = fraction of T, 512 = entries; >= T equals full", 0, 0, NULL},
    {"stride", 0, OPTS_TEXT, A(req.strides), "s", "entries evicted at once (default 1)", 0, 0,
     NULL},
    {"window", 0, OPTS_TEXT, A(req.windows), "r",
     "protected window: 0.3 = fraction of B, 32 = entries", 0, 0, NULL},
    {"model", 0, OPTS_TEXT, A(req.model), "FILE",
     "the GGUF the trace was recorded from, for policies that read\nthe output projection "
     "W_o (criticalkv, --critical); only its\nshapes are checked", 0, 0, NULL},
    {"kept", 0, OPTS_TEXT, A(kept), "FILE",
     "the kept set at the last step: layer,kv_head,position per entry", 0, 0, NULL},
    {"streams", 0, OPTS_TEXT, A(streams), "FILE",
     "one line per stream: layer,kv_head,kept and what the policy\nsays of it "
     "(fastgen: profile,recovered)", 0, 0, NULL},
    ROWS_REPLAYING,
    END,
};

static const opts_row sweep_rows[] = {
    {"policies", 0, OPTS_TEXT, A(req.policies), "A,B", "policies", 0, 0, NULL},
    {"budgets", 0, OPTS_TEXT, A(req.budgets), "LIST",
     "0.1:0.9:0.1 (inclusive range) or 0.2,0.4,512", 0, 0, NULL},
    {"windows", 0, OPTS_TEXT, A(req.windows), "LIST", "0.3,0.5 (fractions of B) or entry counts",
     0, 0, NULL},
    {"strides", 0, OPTS_TEXT, A(req.strides), "LIST", "1,4,16", 0, 0, NULL},
    ROWS_REPLAYING,
    END,
};

static const opts_row std_rows[] = {ROWS_COMMON, END};

static const opts_row scope_rows[] = {
    {"score", 0, OPTS_TEXT, A(req.scores), "LIST", "scores to compare, e.g. aas,mas (required)",
     0, 0, NULL},
    {"scopes", 0, OPTS_TEXT, A(req.scopes), "LIST", "scopes (default window,std)", 0, 0, NULL},
    {"budget", 0, OPTS_TEXT, A(req.budgets), "B", "the fixed budget (required)", 0, 0, NULL},
    {"sizes", 0, OPTS_TEXT, A(sizes), "LIST",
     "protected sizes r: 0.1,0.3,0.5 (fractions of B) or entries\n(required)", 0, 0, NULL},
    ROWS_REPLAYING,
    END,
};

static const char POLICY_PARAMS_HELP[] =
    "policy parameters: every parameter of `kvsim policies` as --KEY VALUE (--phase\n"
    "decode, --gqa max, --scope-of layer, --sinks 8, --seed 3 ...).\n";

#define MANY_HELP                                                                         \
    "Several traces (TRACE... or --traces FILE) go into one CSV, lines in trace order, "     \
    "and\none JSON with each trace's summary and the mean across traces with a 95%\n"       \
    "bootstrap interval per configuration.  Under MPI run bin/kvsim-mpi the same way\n"    \
    "(mpirun -np N bin/kvsim-mpi sweep ...): units (trace, layer, KV head) are dealt to\n" \
    "ranks, and the files are the same bytes as one process writes (docs/SCALE.md).\n"

static const struct {
    const char     *name, *usage, *about, *footer;
    const opts_row *rows;
} COMMANDS[] = {
    [REPLAY_CMD] = {"kvsim replay", "kvsim replay TRACE... --policy P --budget B [options]",
                    "Replay TRACE under one eviction policy and measure every step against the "
                    "full\ncache: mass kept, top-B overlap, score consistency, output error, "
                    "oracle gap\n(docs/METRICS.md).  Writes the metrics CSV of "
                    "docs/RESULTS.md.",
                    "TRACE may be synth:T=512,layers=2,heads=6,kv=2,dim=16,seed=1 (synthetic "
                    "rows;\nwindow=W makes its even layers slide over W keys).  On a "
                    "sliding-window layer a\npolicy manages at most the window: keys older "
                    "than W are gone, and a fractional\nbudget is of min(T, W) "
                    "(docs/POLICIES.md, \"Sliding-window layers\").\n" MANY_HELP, replay_rows},
    [SWEEP_CMD] = {"kvsim sweep", "kvsim sweep TRACE... --policies A,B --budgets LIST [options]",
                   "Run every configuration (policy x budget x window x stride) in one pass "
                   "over the\nrows: each row block is read once and fed to all of them.  One "
                   "tidy CSV (-o) and a\nJSON summary (--json) of the overall lines.",
                   "Each policy gets the parameters it reads: with --policies h2o,tova "
                   "--windows 8,16,\nh2o runs twice (scope window:8, window:16) and tova once.  "
                   "A parameter none of the\npolicies reads is an error.  At most 256 items per "
                   "list.\n", sweep_rows},
    [STD_CMD] = {"kvsim std", "kvsim std TRACE... [-o std.csv] [options]",
                 "Attention-std trajectories (docs/METRICS.md): for every recorded (layer, "
                 "head),\nthe std of each token's attention as a function of its age, in "
                 "log-spaced age\nbins (median and quartiles over tokens), into -o (default "
                 "std.csv), and a few\nsampled tokens' whole trajectories into "
                 "<output>_tokens.csv.  Memory: O(T) per\nhead on each thread.  On a "
                 "sliding-window layer a key is gone at age W:\nits ages stop at W - 1 "
                 "(--layer-kind global keeps the others).",
                 "With several traces both files get a leading `trace` column and hold every "
                 "trace's\nlines in order (one process; MPI and --resume are for replay, sweep "
                 "and scope).\n", std_rows},
    [SCOPE_CMD] = {"kvsim scope",
                   "kvsim scope TRACE... --score S --budget B --sizes LIST [options]",
                   "Eviction-scope sensitivity (RoCo): replay each score at a fixed budget "
                   "with the\nwindow and std scopes at every protected size r, and report each "
                   "metric's spread\nacross r (the robustness figure).",
                   MANY_HELP, scope_rows},
};

static int add_trace(void *ctx, const char *path, kv_err *err)
{
    replay_args *a = ctx;
    if (vec_reserve((void **)&a->traces, sizeof *a->traces, (size_t)a->n_traces + 1,
                    &a->cap_traces) != 0)
        return kv_errorf(err, KV_ENOMEM, "out of memory for %d traces", a->n_traces + 1);
    a->traces[a->n_traces++] = path;
    return KV_OK;
}

/* --traces FILE: one path per line, blank lines and # comments skipped. */
static int read_trace_list(replay_args *a, kv_err *err)
{
    FILE *f = fopen(a->traces_file, "r");
    if (!f)
        return kv_errorf(err, KV_EIO, "--traces %s: cannot open it: %s", a->traces_file,
                         strerror(errno));
    size_t len;
    a->list_text = input_read_all(f, a->traces_file, &len, err);
    fclose(f);
    if (!a->list_text)
        return err->code;
    int rc = KV_OK;
    for (char *line = strtok(a->list_text, "\r\n"); rc == KV_OK && line;
         line = strtok(NULL, "\r\n")) {
        line += strspn(line, " \t");
        size_t n = strlen(line);
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = '\0';
        if (n && line[0] != '#')
            rc = add_trace(a, line, err);
    }
    return rc;
}

/* Every trace named, at least one; --follow waits for one recording only. */
static int gather_traces(replay_args *a, const char *usage, kv_err *err)
{
    int rc = a->traces_file ? read_trace_list(a, err) : KV_OK;
    if (rc == KV_OK && a->n_traces == 0)
        rc = kv_errorf(err, KV_EUSAGE, "missing arguments: usage: %s", usage);
    if (rc == KV_OK && a->follow && a->n_traces > 1)
        rc = kv_errorf(err, KV_EUSAGE, "--follow waits for one recording: give one trace");
    if (rc == KV_OK)
        a->req.trace = a->traces[0];
    return rc;
}

void replay_args_free(replay_args *a)
{
    free(a->traces);
    free(a->list_text);
    a->traces = NULL;
    a->list_text = NULL;
}

int replay_args_parse(replay_command which, int argc, char **argv, replay_args *out,
                      kv_err *err)
{
    memset(out, 0, sizeof *out);
    opts_command_line("kvsim", argc, argv, out->command, sizeof out->command);
    const int replays = which != STD_CMD;
    const opts_command cmd = {
        .prog = COMMANDS[which].name,
        .usage = COMMANDS[which].usage,
        .about = COMMANDS[which].about,
        .groups = {{"options", COMMANDS[which].rows, out}},
        .more = add_trace,
        .more_ctx = out,
        .other = replays ? policy_args_take : NULL,
        .other_ctx = &out->req.params,
        .other_help = replays ? POLICY_PARAMS_HELP : NULL,
        .footer = COMMANDS[which].footer,
    };
    int rc = opts_parse(&cmd, argc, argv, err);
    if (rc == KV_OK)
        rc = gather_traces(out, cmd.usage, err);
    if (rc != KV_OK)
        return rc;
    /* the inputs: every trace and the list naming them */
    if (out->traces_file && (rc = add_trace(out, out->traces_file, err)) != KV_OK)
        return rc;
    const char *outputs[] = {out->csv, out->json, out->resume, out->kept, out->streams};
    rc = out_check_all(outputs, 5, out->traces, out->n_traces, err);
    if (out->traces_file)
        out->n_traces--;
    if (rc == KV_OK && out->follow &&
        (rc = trace_follow(out->req.trace, out->followed, sizeof out->followed, err)) == KV_OK)
        out->req.trace = out->traces[0] = out->followed;
    return rc;
}
