/*
 * plot.c — scripts and gnuplot runs for kvsim's figures; see plot.h.
 *
 * Invariants:
 *   (1) the script printed by --script-only is the script that runs, byte for byte,
 *       except that `out` names the temporary file while gnuplot draws;
 *   (2) the output path exists only if gnuplot succeeded and wrote a non-empty file;
 *   (3) a CSV missing a column the figure needs is refused before gnuplot runs,
 *       with the file and the column named.
 */
#include "plot.h"

#include "out.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- figure table */

typedef struct plot_figure {
    const char *name;      /* CLI name and script stem: sweep -> plots/sweep.gp */
    const char *columns;   /* columns the script reads, besides the metric's */
    int         metric;    /* 1: the --metric column is required too */
} plot_figure;

static const plot_figure figures[] = {
    [PLOT_STD]     = {"std", "layer,head,age_lo,age_hi,mean,p10,p90", 0},
    [PLOT_SWEEP]   = {"sweep", "trace,policy,layer,head,budget", 1},
    [PLOT_SCOPE]   = {"scope", "trace,policy,score,scope,layer,head,budget", 1},
    [PLOT_HEATMAP] = {"heatmap", "t,key,prob", 0},
    [PLOT_CONFIRM] = {"confirm", "sim_metric,real_metric,policy,budget_arg,sim,real", 0},
    [PLOT_STUDY]   = {"study", "method,budget,ppl,tokens_per_s,kv_bytes,ppl_pct,accuracy_pct,"
                      "ttft_pct,tpot_pct,tokens_per_s_pct,kv_bytes_pct", 0},
    [PLOT_FASTGEN] = {"fastgen", "source,layer,kv_head,raw_mb,compressed_mb,profile", 0},
    [PLOT_PASSKEY] = {"passkey", "policy,budget,stride,length,accuracy,policy_ms_per_token,"
                      "mean_block,stride_sweep", 0},
};

const char *plot_kind_name(plot_kind kind) { return figures[kind].name; }

int plot_kind_parse(const char *name)
{
    for (int k = 0; k < (int)(sizeof figures / sizeof *figures); k++)
        if (!strcmp(figures[k].name, name))
            return k;
    return -1;
}

/* The metrics a figure can show: CLI name -> CSV column. */
static const char *metric_column(const char *metric)
{
    static const char *const map[][2] = {
        {"mass", "mass"},       {"overlap", "overlap"},           {"consistency", "consistency"},
        {"output-error", "output_error"}, {"oracle-gap", "oracle_gap"},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(metric, map[i][0]))
            return map[i][1];
    return NULL;
}

/* ---------------------------------------------------------------- small helpers */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

int plot_check_output(const char *out, kv_err *err)
{
    if (out && (ends_with(out, ".png") || ends_with(out, ".svg")))
        return 0;
    return kv_errorf(err, KV_EUSAGE,
                     "output '%s': unknown format; expected a name ending in .png (pngcairo) "
                     "or .svg (svg)", out ? out : "");
}

static int file_has(const char *dir, const char *name)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

const char *plot_find_dir(void)
{
    static char dir[PATH_MAX + 16];
    const char *env = getenv("KV_PLOTS_DIR");
    if (env && file_has(env, "common.gp"))
        return env;
    /* bin/kvsim finds ../plots: the scripts travel with the checkout, not the binary. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dir, sizeof dir, "%s/../plots", exe);
            if (file_has(dir, "common.gp"))
                return dir;
        }
    }
    return file_has("plots", "common.gp") ? "plots" : NULL;
}

/* Write s as a gnuplot single-quoted string: '' stands for one quote. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void put_var(FILE *f, const char *name, const char *value)
{
    if (!value)
        return;
    fprintf(f, "%s = ", name);
    put_quoted(f, value);
    fputc('\n', f);
}

/* Copy a script file into the output, so the printed script needs no other file. */
static int put_file(FILE *f, const char *dir, const char *name, kv_err *err)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *in = fopen(path, "r");
    if (!in)
        return kv_errorf(err, KV_ENOTFOUND, "%s: cannot read: %s", path, strerror(errno));
    char buf[4096];
    size_t n;
    fprintf(f, "\n# ---- %s\n", name);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, f);
    int bad = ferror(in);
    fclose(in);
    return bad ? kv_errorf(err, KV_EIO, "%s: read error", path) : 0;
}

/* ---------------------------------------------------------------- the CSV header */

/* The CSV's header and first data line, split in place into fields. */
typedef struct plot_csv_head {
    char  header[4096];
    char  first[4096];
    char *name[128];     /* header fields */
    char *value[128];    /* first line's fields, aligned with name; may be fewer */
    int   n_names, n_values;
} plot_csv_head;

static int split_fields(char *line, char **fields, int max)
{
    line[strcspn(line, "\r\n")] = '\0';
    int n = 0;
    for (char *p = line; n < max;) {
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static int read_csv_head(const char *path, plot_csv_head *h, kv_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return kv_errorf(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
    int have_header = fgets(h->header, sizeof h->header, f) != NULL;
    int have_row = have_header && fgets(h->first, sizeof h->first, f) != NULL;
    fclose(f);
    if (!have_row)
        return kv_errorf(err, KV_EFORMAT, "%s: %s; expected a header line and data lines",
                         path, have_header ? "no data lines" : "empty file");
    h->n_names = split_fields(h->header, h->name, 128);
    h->n_values = split_fields(h->first, h->value, 128);
    return 0;
}

static int find_column(const plot_csv_head *h, const char *name)
{
    for (int i = 0; i < h->n_names; i++)
        if (!strcmp(h->name[i], name))
            return i;
    return -1;
}

/* Every name of the comma-separated list `columns` must be in the header. */
static int require_columns(const plot_csv_head *h, const char *path, const char *kind,
                           const char *columns, kv_err *err)
{
    char list[512];
    snprintf(list, sizeof list, "%s", columns);
    for (char *save, *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save))
        if (find_column(h, c) < 0)
            return kv_errorf(err, KV_EFORMAT,
                             "%s: no column '%s'; the %s plot needs %s (docs/RESULTS.md, "
                             "docs/PLOTS.md)", path, c, kind, columns);
    return 0;
}

/* ---------------------------------------------------------------- the script */

/* `draw_to` is where gnuplot writes: req->out, or the temporary file while rendering. */
static void put_variables(const plot_request *req, const char *draw_to, const plot_csv_head *h,
                          FILE *f)
{
    put_var(f, "csv", req->csv);
    put_var(f, "out", draw_to);
    put_var(f, "fmt", ends_with(req->out, ".svg") ? "svg" : "png");
    put_var(f, "metric", req->metric);
    put_var(f, "title", req->title);
    put_var(f, "model", req->model);
    int col = find_column(h, "trace");
    const char *trace = req->trace;
    if (!trace && col >= 0 && col < h->n_values)
        trace = h->value[col];
    put_var(f, "trace", trace);
    put_var(f, "head", req->head);
    put_var(f, "policy", req->policy);
    put_var(f, "predict", req->predict);
    if (req->layers) {
        /* The CLI takes 0,4,8; the script iterates over words. */
        char words[256];
        snprintf(words, sizeof words, "%s", req->layers);
        for (char *c = words; *c; c++)
            if (*c == ',')
                *c = ' ';
        put_var(f, "layers", words);
    }
}

/* The rho of `kvsim confirm predict` that the confirm figure quotes per budget. */
static int check_predict(const char *path, kv_err *err)
{
    plot_csv_head p;
    int rc = read_csv_head(path, &p, err);
    return rc ? rc : require_columns(&p, path, "confirm (--predict)",
                                     "budget_arg,spearman,ci_low,ci_high", err);
}

static int check_request(const plot_request *req, plot_csv_head *h, kv_err *err)
{
    int rc = plot_check_output(req->out, err);
    if (rc)
        return rc;
    const plot_figure *fig = &figures[req->kind];
    const char *metric = req->metric ? req->metric : "mass";
    const char *column = metric_column(metric);
    if (!column)
        return kv_errorf(err, KV_EUSAGE, "--metric %s: expected mass, overlap, consistency, "
                         "output-error or oracle-gap", metric);
    if ((rc = read_csv_head(req->csv, h, err)) || (rc = require_columns(h, req->csv, fig->name,
                                                                        fig->columns, err)))
        return rc;
    if (req->predict && (rc = check_predict(req->predict, err)))
        return rc;
    return fig->metric ? require_columns(h, req->csv, fig->name, column, err) : 0;
}

static int write_script(const plot_request *req, const char *draw_to, FILE *f, kv_err *err)
{
    plot_csv_head h;
    int rc = check_request(req, &h, err);
    if (rc)
        return rc;
    const char *dir = req->plotdir ? req->plotdir : plot_find_dir();
    if (!dir)
        return kv_errorf(err, KV_ENOTFOUND, "cannot find the gnuplot scripts (plots/common.gp) "
                         "beside the binary or in ./plots; set KV_PLOTS_DIR");
    const char *name = figures[req->kind].name;
    fprintf(f, "# kvsim plot %s: plots/common.gp and plots/%s.gp with their variables set.\n"
               "# Rerun with: gnuplot THIS_FILE\n", name, name);
    put_variables(req, draw_to, &h, f);
    char script[64];
    snprintf(script, sizeof script, "%s.gp", name);
    if ((rc = put_file(f, dir, "common.gp", err)))
        return rc;
    return put_file(f, dir, script, err);
}

int plot_write_script(const plot_request *req, FILE *f, kv_err *err)
{
    return write_script(req, req->out, f, err);
}

/* ---------------------------------------------------------------- running gnuplot */

/* Resolve the gnuplot program: an explicit path must be executable; otherwise search
 * PATH, so a missing gnuplot is named before anything is spawned. */
static int find_gnuplot(const char *given, char *path, size_t len, kv_err *err)
{
    static const char hint[] = "install the Debian package gnuplot-nox "
                               "(apt-get install gnuplot-nox, or `make deps`) or pass --gnuplot PATH";
    if (given) {
        snprintf(path, len, "%s", given);
        if (access(path, X_OK) == 0)
            return 0;
        return kv_errorf(err, KV_ENOTFOUND, "gnuplot not found at %s: %s", given, hint);
    }
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", env ? env : "/usr/bin:/bin");
    for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, len, "%s/gnuplot", d);
        if (access(path, X_OK) == 0)
            return 0;
    }
    return kv_errorf(err, KV_ENOTFOUND, "gnuplot not found on PATH: %s", hint);
}

/* The last `max` bytes of a file, for an error message. */
static void read_tail(const char *path, char *buf, size_t max)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)max - 1 ? size - (long)max + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, max - 1, f);
    buf[n] = '\0';
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
}

/* Run `gnuplot script` with stderr captured into errfile; returns its exit status,
 * or -1 if it could not be started. */
static int spawn_gnuplot(const char *gnuplot, const char *script, const char *errfile)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {(char *)gnuplot, (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Temporary names: the script and stderr under /tmp, the figure beside its final
 * name (so the rename cannot cross file systems), hidden and marked partial. */
typedef struct plot_temps {
    char script[64];
    char errors[64];
    char figure[PATH_MAX];
} plot_temps;

static int make_temps(const char *out, plot_temps *t, kv_err *err)
{
    snprintf(t->script, sizeof t->script, "/tmp/kvsim-plot-XXXXXX");
    snprintf(t->errors, sizeof t->errors, "/tmp/kvsim-plot-err-XXXXXX");
    const char *slash = strrchr(out, '/');
    int dirlen = slash ? (int)(slash - out + 1) : 0;
    snprintf(t->figure, sizeof t->figure, "%.*s.%s.partial-XXXXXX", dirlen, out,
             slash ? slash + 1 : out);
    int fds[3] = {mkstemp(t->script), mkstemp(t->errors), mkstemp(t->figure)};
    int ok = fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0;
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (!ok)
        return kv_errorf(err, KV_EIO, "%s: cannot create temporary files: %s", out,
                         strerror(errno));
    return 0;
}

static void remove_temps(const plot_temps *t)
{
    remove(t->script);
    remove(t->errors);
    remove(t->figure);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int run_script(const char *gnuplot, const plot_request *req, const plot_temps *t,
                      kv_err *err)
{
    int status = spawn_gnuplot(gnuplot, t->script, t->errors);
    if (status == 0 && file_size(t->figure) > 0)
        return 0;
    char tail[360];
    read_tail(t->errors, tail, sizeof tail);
    if (status < 0)
        return kv_errorf(err, KV_EIO, "%s: cannot run %s: %s", req->out, gnuplot, strerror(errno));
    return kv_errorf(err, KV_EIO, "%s: gnuplot failed (exit %d) on plots/%s.gp; it said:\n%s",
                     req->out, status, figures[req->kind].name, tail[0] ? tail : "(nothing)");
}

int plot_render(const plot_request *req, kv_err *err)
{
    char gnuplot[PATH_MAX];
    plot_temps t;
    int rc = plot_check_output(req->out, err);
    if (rc || (rc = find_gnuplot(req->gnuplot, gnuplot, sizeof gnuplot, err)) ||
        (rc = make_temps(req->out, &t, err)))
        return rc;
    /* Invariant (1): the same script, drawing into the temporary file. */
    FILE *f = fopen(t.script, "w");
    if (!f)
        rc = kv_errorf(err, KV_EIO, "%s: cannot write: %s", t.script, strerror(errno));
    else {
        rc = write_script(req, t.figure, f, err);
        if (fclose(f) != 0 && rc == 0)
            rc = kv_errorf(err, KV_EIO, "%s: write failed", t.script);
    }
    if (rc == 0)
        rc = run_script(gnuplot, req, &t, err);
    if (rc == 0)   /* mkstemp made it 0600: the output rule gives it the usual mode */
        rc = out_place(t.figure, req->out, err);
    remove_temps(&t);
    return rc;
}
