/*
 * plot_cmd.c — `kvsim plot KIND INPUT -o OUT [options]`: the command line over
 * plot.h.  Exit status 0 drawn, 1 runtime error (gnuplot missing or failing, bad
 * CSV), 2 usage error.  The manual is docs/PLOTS.md.
 */
#include "plot.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: kvsim plot KIND INPUT -o OUT.png|OUT.svg [options]\n"
    "\n"
    "Draw a figure with gnuplot from a CSV that kvsim wrote (docs/PLOTS.md).\n"
    "\n"
    "  std      STD.csv      attention std vs token age, one curve per layer (kvsim std)\n"
    "  sweep    SWEEP.csv    a metric vs KV budget, one line per policy (kvsim sweep/replay)\n"
    "  scope    SCOPE.csv    a metric vs protected size r, window vs std scope (kvsim scope)\n"
    "  heatmap  HEAT.csv     one head's attention matrix, t,key,prob[,kept] per line\n"
    "           TRACE --layer L --head H [--range a:b] [--policy P --budget B]\n"
    "  confirm  POINTS.csv   simulated vs real metric, one point per (policy, budget), from\n"
    "                        kvsim confirm predict --points [--predict PREDICT.csv: rho]\n"
    "\n"
    "options:\n"
    "  -o, --output FILE    the figure; .png (pngcairo) or .svg by the extension\n"
    "  --metric M           sweep, scope: mass (default), overlap, consistency,\n"
    "                       output-error, oracle-gap\n"
    "  --title TEXT         replace the default title\n"
    "  --subtitle MODEL     model name, shown with the trace name under the title\n"
    "  --layers 0,4,8       std: layers to draw (default: all, or six evenly spaced)\n"
    "  --head H             std: one query head instead of the per-layer lines;\n"
    "                       heatmap from a trace: the query head\n"
    "  --policy P           heatmap: the policy whose kept set is overlaid (its name,\n"
    "                       with a CSV; replayed at --budget, with a trace)\n"
    "  --predict FILE       confirm: the kvsim confirm predict CSV; each budget's\n"
    "                       Spearman rho and interval go into the subtitle\n"
    "  --gnuplot PATH       the gnuplot program (default: gnuplot on PATH)\n"
    "  --script-only        print the complete gnuplot script instead of running it\n"
    "\n"
    "The scripts are plots/*.gp; rerun one by hand:\n"
    "  gnuplot -e \"csv='sweep.csv'; out='budget.png'\" plots/sweep.gp\n";

/* Everything the command line says, before it becomes a plot_request. */
typedef struct plot_args {
    plot_request         req;
    plot_heatmap_request heat;      /* only for a heatmap from a trace */
    const char          *head;      /* --head as written */
    const char          *range;     /* --range a:b */
    int                  has_layer; /* --layer given */
    int                  script_only;
} plot_args;

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "kvsim plot: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n'kvsim plot --help' lists the kinds and options.\n");
    return 2;
}

static int parse_int(const char *s, int *v)
{
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s || *end || x < 0 || x > 1 << 30)
        return -1;
    *v = (int)x;
    return 0;
}

/* Returns -1 when parsing went well, otherwise the exit status. */
static int parse_options(int argc, char **argv, plot_args *a)
{
    enum { O_METRIC = 256, O_TITLE, O_SUBTITLE, O_LAYERS, O_HEAD, O_LAYER, O_RANGE, O_POLICY,
           O_BUDGET, O_GNUPLOT, O_SCRIPT, O_PREDICT };
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},    {"metric", required_argument, 0, O_METRIC},
        {"title", required_argument, 0, O_TITLE}, {"subtitle", required_argument, 0, O_SUBTITLE},
        {"layers", required_argument, 0, O_LAYERS}, {"head", required_argument, 0, O_HEAD},
        {"layer", required_argument, 0, O_LAYER}, {"range", required_argument, 0, O_RANGE},
        {"policy", required_argument, 0, O_POLICY}, {"budget", required_argument, 0, O_BUDGET},
        {"gnuplot", required_argument, 0, O_GNUPLOT}, {"script-only", no_argument, 0, O_SCRIPT},
        {"predict", required_argument, 0, O_PREDICT},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    optind = 0; /* GNU: start afresh, so the command can run twice in one process */
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1;) {
        switch (c) {
        case 'o': a->req.out = optarg; break;
        case O_METRIC: a->req.metric = optarg; break;
        case O_TITLE: a->req.title = optarg; break;
        case O_SUBTITLE: a->req.model = optarg; break;
        case O_LAYERS: a->req.layers = optarg; break;
        case O_HEAD: a->head = optarg; break;
        case O_RANGE: a->range = optarg; break;
        case O_POLICY: a->req.policy = a->heat.policy = optarg; break;
        case O_BUDGET: a->heat.budget = optarg; break;
        case O_GNUPLOT: a->req.gnuplot = optarg; break;
        case O_SCRIPT: a->script_only = 1; break;
        case O_PREDICT: a->req.predict = optarg; break;
        case O_LAYER:
            if (parse_int(optarg, &a->heat.layer))
                return usage_error("--layer %s: expected a layer index", optarg);
            a->has_layer = 1;
            break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    return -1;
}

/* KIND INPUT, and the options each kind needs. */
static int check_args(int argc, char **argv, plot_args *a)
{
    if (optind + 2 != argc)
        return usage_error("%s", optind >= argc ? "expected KIND INPUT -o OUT"
                                                : "expected exactly one INPUT after KIND");
    int kind = plot_kind_parse(argv[optind]);
    if (kind < 0)
        return usage_error("unknown plot '%s'; expected std, sweep, scope, heatmap or confirm",
                           argv[optind]);
    a->req.kind = (plot_kind)kind;
    a->req.csv = argv[optind + 1];
    if (!a->req.out)
        return usage_error("%s", "-o OUT.png or -o OUT.svg is required");
    kv_err err = {0};
    if (plot_check_output(a->req.out, &err))
        return usage_error("%s", err.msg);
    if (kind == PLOT_STD)
        a->req.head = a->head;
    if (a->req.predict && kind != PLOT_CONFIRM)
        return usage_error("%s", "--predict belongs to the confirm plot");
    return -1;
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
static int extract_heatmap(plot_args *a, plot_heatmap_extract_fn extract, char *csv, size_t len)
{
    plot_heatmap_request *h = &a->heat;
    if (!extract)
        return usage_error("heatmap of '%s': reading traces is not in this build; give a "
                           "heatmap CSV (t,key,prob[,kept]), see docs/PLOTS.md", a->req.csv);
    if (!a->has_layer || !a->head || parse_int(a->head, &h->head))
        return usage_error("%s", "a heatmap of a trace needs --layer L and --head H");
    if (parse_range(a->range, h))
        return usage_error("--range %s: expected a:b with a < b (query steps)", a->range);
    if ((h->policy == NULL) != (h->budget == NULL))
        return usage_error("%s", "--policy and --budget go together");
    h->trace = a->req.csv;
    snprintf(csv, len, "%.*s.csv", (int)(strlen(a->req.out) - 4), a->req.out);
    kv_err err = {0};
    plot_heatmap_writer *w = plot_heatmap_open(csv, h->policy != NULL, &err);
    int rc = w ? extract(h, w, &err) : err.code;
    rc = plot_heatmap_close(w, rc == 0, rc ? NULL : &err) ? err.code : rc;
    if (rc) {
        fprintf(stderr, "kvsim plot heatmap: %s\n", err.msg);
        return kv_err_exit_status(rc);
    }
    a->req.csv = csv;
    return -1;
}

int cmd_plot(int argc, char **argv, plot_heatmap_extract_fn extract)
{
    plot_args a = {0};
    int rc = parse_options(argc, argv, &a);
    if (rc < 0)
        rc = check_args(argc, argv, &a);
    char csv[4096], subtitle[4200];
    if (rc < 0 && a.req.kind == PLOT_HEATMAP && !is_csv(a.req.csv)) {
        rc = extract_heatmap(&a, extract, csv, sizeof csv);
        snprintf(subtitle, sizeof subtitle, "%s, layer %d, head %d", a.heat.trace, a.heat.layer,
                 a.heat.head);
        a.req.trace = subtitle;
    }
    if (rc >= 0)
        return rc;
    kv_err err = {0};
    int code = a.script_only ? plot_write_script(&a.req, stdout, &err) : plot_render(&a.req, &err);
    if (code) {
        fprintf(stderr, "kvsim plot %s: %s\n", plot_kind_name(a.req.kind), err.msg);
        return kv_err_exit_status(code);
    }
    if (!a.script_only)
        fprintf(stderr, "kvsim plot %s: wrote %s\n", plot_kind_name(a.req.kind), a.req.out);
    return 0;
}
