/*
 * cmd_plot.c — `kvsim plot KIND INPUT -o OUT [options]`: the command line over
 * plots/plot.h, and heatmaps straight from a trace through sim/heatmap_trace.h.  Exit
 * status 0 drawn, 1 runtime error (gnuplot missing or failing, bad CSV), 2 usage
 * error.  The manual is docs/PLOTS.md.
 */
#include "commands.h"

#include "heatmap_trace.h"
#include "opts.h"
#include "plot.h"
#include "policy.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Everything the command line says, before it becomes a plot_request. */
typedef struct plot_args {
    plot_request         req;
    plot_heatmap_request heat;      /* only for a heatmap from a trace */
    const char          *kind;      /* KIND as written */
    const char          *head;      /* --head as written */
    const char          *layer;     /* --layer as written */
    const char          *range;     /* --range a:b */
    int                  script_only;
} plot_args;

#define P(field) offsetof(plot_args, field)

static const opts_row plot_rows[] = {
    {"output", 'o', OPTS_TEXT, P(req.out), "FILE",
     "the figure; .png (pngcairo) or .svg by the extension", 0, 0, NULL},
    {"metric", 0, OPTS_TEXT, P(req.metric), "M", "sweep, scope: mass (default), overlap, "
     "consistency,\noutput-error, oracle-gap", 0, 0, NULL},
    {"title", 0, OPTS_TEXT, P(req.title), "TEXT", "replace the default title", 0, 0, NULL},
    {"subtitle", 0, OPTS_TEXT, P(req.model), "MODEL",
     "model name, shown with the trace name under the title", 0, 0, NULL},
    {"layers", 0, OPTS_TEXT, P(req.layers), "0,4,8",
     "std: layers to draw (default: all, or six evenly spaced)", 0, 0, NULL},
    {"head", 0, OPTS_TEXT, P(head), "H", "std: one query head instead of the per-layer "
     "lines;\nheatmap from a trace: the query head", 0, 0, NULL},
    {"layer", 0, OPTS_TEXT, P(layer), "L", "heatmap from a trace: the layer", 0, 0, NULL},
    {"range", 0, OPTS_TEXT, P(range), "a:b", "heatmap from a trace: query steps a..b-1", 0, 0,
     NULL},
    {"policy", 0, OPTS_TEXT, P(req.policy), "P", "heatmap: the policy whose kept set is "
     "overlaid (its name,\nwith a CSV; replayed at --budget, with a trace)", 0, 0, NULL},
    {"budget", 0, OPTS_TEXT, P(heat.budget), "B", "heatmap from a trace: the policy's budget",
     0, 0, NULL},
    {"predict", 0, OPTS_TEXT, P(req.predict), "FILE", "confirm: the kvsim confirm predict "
     "CSV; each budget's\nSpearman rho and interval go into the subtitle", 0, 0, NULL},
    {"gnuplot", 0, OPTS_TEXT, P(req.gnuplot), "PATH",
     "the gnuplot program (default: gnuplot on PATH)", 0, 0, NULL},
    {"script-only", 0, OPTS_FLAG, P(script_only), NULL,
     "print the complete gnuplot script instead of running it", 0, 0, NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static int parse_int(const char *s, int *v)
{
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s || *end || x < 0 || x > 1 << 30)
        return -1;
    *v = (int)x;
    return 0;
}

static int is_csv(const char *path);

/* The options each kind needs. */
static int check_args(plot_args *a, kv_err *err)
{
    int kind = plot_kind_parse(a->kind);
    if (kind < 0)
        return kv_errorf(err, KV_EUSAGE, "unknown plot '%s'; expected std, sweep, scope, study, fastgen, passkey, "
                         "heatmap or confirm", a->kind);
    a->req.kind = (plot_kind)kind;
    if (!a->req.out)
        return kv_errorf(err, KV_EUSAGE, "-o OUT.png or -o OUT.svg is required");
    if (plot_check_output(a->req.out, err))
        return KV_EUSAGE;
    if (kind == PLOT_STD)
        a->req.head = a->head;
    if (a->req.predict && kind != PLOT_CONFIRM)
        return kv_errorf(err, KV_EUSAGE, "--predict belongs to the confirm plot");
    if (a->heat.params.n && (kind != PLOT_HEATMAP || is_csv(a->req.csv)))
        return kv_errorf(err, KV_EUSAGE, "--%s: policy parameters belong to a heatmap of a "
                         "trace with --policy", a->heat.params.key[0]);
    return KV_OK;
}

/* --range a:b into [t_lo, t_hi); an empty b means the end of the trace. */
static int parse_range(const char *s, plot_heatmap_request *h)
{
    h->t_lo = 0;
    h->t_hi = -1;
    if (!s)
        return 0;
    char lo[32], hi[32] = "";
    if (sscanf(s, "%31[0-9]:%31[0-9]", lo, hi) < 1 || parse_int(lo, &h->t_lo) ||
        (hi[0] && (parse_int(hi, &h->t_hi) || h->t_hi <= h->t_lo)))
        return -1;
    return 0;
}

static int is_csv(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && !strcasecmp(path + n - 4, ".csv");
}

/* A heatmap of a trace: extract its matrix into OUT.csv (kept for reruns by hand),
 * then plot that.  csv[] receives the CSV's name. */
static int extract_heatmap(plot_args *a, char *csv, size_t len, kv_err *err)
{
    plot_heatmap_request *h = &a->heat;
    h->policy = a->req.policy;
    if (!a->layer || parse_int(a->layer, &h->layer) || !a->head || parse_int(a->head, &h->head))
        return kv_errorf(err, KV_EUSAGE, "a heatmap of a trace needs --layer L and --head H");
    if (parse_range(a->range, h))
        return kv_errorf(err, KV_EUSAGE, "--range %s: expected a:b with a < b (query steps)",
                         a->range);
    if ((h->policy == NULL) != (h->budget == NULL))
        return kv_errorf(err, KV_EUSAGE, "--policy and --budget go together");
    if (!h->policy && h->params.n)
        return kv_errorf(err, KV_EUSAGE, "--%s is a policy parameter: it needs --policy and "
                         "--budget", h->params.key[0]);
    h->trace = a->req.csv;
    snprintf(csv, len, "%.*s.csv", (int)(strlen(a->req.out) - 4), a->req.out);
    plot_heatmap_writer *w = plot_heatmap_open(csv, h->policy != NULL, err);
    int rc = w ? heatmap_from_trace(h, w, err) : err->code;
    kv_err close_err = {0};
    if (plot_heatmap_close(w, rc == KV_OK, &close_err) != KV_OK && rc == KV_OK) {
        rc = close_err.code;
        *err = close_err;
    }
    a->req.csv = csv;
    return rc;
}

static int plot(void *ctx, kv_err *err)
{
    plot_args *a = ctx;
    int rc = check_args(a, err);
    char csv[4096], subtitle[4200];
    if (rc == KV_OK && a->req.kind == PLOT_HEATMAP && !is_csv(a->req.csv)) {
        rc = extract_heatmap(a, csv, sizeof csv, err);
        snprintf(subtitle, sizeof subtitle, "%s, layer %d, head %d", a->heat.trace,
                 a->heat.layer, a->heat.head);
        a->req.trace = subtitle;
    }
    if (rc == KV_OK)
        rc = a->script_only ? plot_write_script(&a->req, stdout, err) : plot_render(&a->req, err);
    if (rc == KV_OK && !a->script_only)
        fprintf(stderr, "kvsim plot %s: wrote %s\n", plot_kind_name(a->req.kind), a->req.out);
    return rc;
}

int cmd_plot(int argc, char **argv)
{
    plot_args a = {0};
    const opts_command cmd = {
        .prog = "kvsim plot",
        .usage = "kvsim plot KIND INPUT -o OUT.png|OUT.svg [options]",
        .about = "Draw a figure with gnuplot from a CSV that kvsim wrote (docs/PLOTS.md).\n\n"
                 "  std      STD.csv      attention std vs token age, one curve per layer "
                 "(kvsim std)\n"
                 "  sweep    SWEEP.csv    a metric vs KV budget, one line per configuration (kvsim "
                 "sweep/replay)\n"
                 "  scope    SCOPE.csv    a metric vs protected size r, window vs std scope "
                 "(kvsim scope)\n"
                 "  heatmap  HEAT.csv     one head's attention matrix, t,key,prob[,kept] per "
                 "line\n"
                 "           TRACE --layer L --head H [--range a:b] [--policy P --budget B]\n"
                 "  study    STUDY.csv    the kvcompress study (kvsim confirm study)\n"
                 "  fastgen  FASTGEN.csv  KV MB per layer and head profiles (confirm "
                 "fastgen-memory)\n"
                 "  passkey  PASSKEY.csv  accuracy vs budget and stride, cost vs stride "
                 "(passkey-study)\n"
                 "  confirm  POINTS.csv   simulated vs real metric, one point per (policy, "
                 "budget), from\n"
                 "                        kvsim confirm predict --points [--predict "
                 "PREDICT.csv: rho]",
        .groups = {{"options", plot_rows, &a}},
        .positional = {&a.kind, &a.req.csv},
        .required = 2,
        .other = policy_args_take,   /* a heatmap's policy takes any of its parameters */
        .other_ctx = &a.heat.params,
        .other_help = "heatmap from a trace: every policy parameter of `kvsim policies` as "
                      "--KEY VALUE\n(--phase oneshot, --stride 4, --obs-window 16 ...).\n",
        .footer = "The scripts are plots/*.gp; rerun one by hand:\n"
                  "  gnuplot -e \"csv='sweep.csv'; out='budget.png'\" plots/sweep.gp\n",
    };
    return opts_main(&cmd, argc, argv, plot, &a);
}
