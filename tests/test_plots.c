/*
 * test_plots.c — `kvsim plot` (plots/plot.h): every figure renders from the small CSV
 * fixtures of tests/fixtures/plots/ into a valid PNG or SVG of sensible size; the
 * script carries the series, labels and titles a reader needs; a missing gnuplot, a
 * bad extension and a foreign CSV are refused with the promised status and message,
 * and never leave a file behind.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plot.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/kv_plots_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char plots[1024];
    snprintf(plots, sizeof plots, "%s/plots", getenv("KV_ROOT"));
    setenv("KV_PLOTS_DIR", plots, 1);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(plots, .init = setup, .fini = teardown, .timeout = 60);

static const char *fixture(const char *name)
{
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/plots/%s", getenv("KV_FIXTURES"), name);
    return p;
}

static const char *out_path(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static plot_request request(plot_kind kind, const char *csv, const char *out)
{
    return (plot_request){.kind = kind, .csv = fixture(csv), .out = out_path(out)};
}

/* Read a whole (small) file; the caller frees. */
static char *slurp(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s was not written", path);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)*size + 1);
    cr_assert_eq(fread(buf, 1, (size_t)*size, f), (size_t)*size);
    buf[*size] = '\0';
    fclose(f);
    return buf;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A PNG: the signature, then IHDR first with the canvas size the scripts ask for. */
static void assert_png(const char *path)
{
    long size;
    unsigned char *b = (unsigned char *)slurp(path, &size);
    cr_assert_gt(size, 5000, "%s: %ld bytes is too small for a drawn figure", path, size);
    cr_assert_lt(size, 2000000, "%s: %ld bytes", path, size);
    cr_assert_eq(memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0, "%s: not a PNG", path);
    cr_assert_eq(memcmp(b + 12, "IHDR", 4), 0, "%s: IHDR is not the first chunk", path);
    uint32_t w = be32(b + 16), h = be32(b + 20);
    cr_assert(w >= 600 && w <= 2000 && h >= 400 && h <= 2000, "%s: %ux%u", path, w, h);
    free(b);
}

static void assert_svg(const char *path)
{
    long size;
    char *s = slurp(path, &size);
    cr_assert_gt(size, 2000, "%s: %ld bytes", path, size);
    cr_assert(!strncmp(s, "<?xml", 5) || !strncmp(s, "<svg", 4), "%s: not SVG", path);
    cr_assert_not_null(strstr(s, "</svg>"), "%s: SVG not closed", path);
    free(s);
}

/* The script plot_write_script() produces for req; the caller frees. */
static char *script_of(const plot_request *req)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kv_err err = {0};
    cr_assert_eq(plot_write_script(req, f, &err), 0, "%s", err.msg);
    fclose(f);
    return buf;
}

static void assert_has(const char *text, const char *what)
{
    cr_assert_not_null(strstr(text, what), "the script lacks \"%s\"", what);
}

/* No figure and no temporary file may be left in the output directory. */
static void assert_dir_empty(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
    cr_assert_eq(system(cmd), 0, "files were left in %s", dir);
}

static void render(const plot_request *req)
{
    kv_err err = {0};
    cr_assert_eq(plot_render(req, &err), 0, "%s", err.msg);
}

/* ---- every figure renders --------------------------------------------------- */

Test(plots, std_renders_png_and_svg)
{
    plot_request req = request(PLOT_STD, "std.csv", "std.png");
    render(&req);
    assert_png(req.out);
    req.out = out_path("std.svg");
    render(&req);
    assert_svg(req.out);
}

Test(plots, sweep_renders_every_metric)
{
    const char *metrics[] = {"mass", "overlap", "consistency", "output-error", "oracle-gap"};
    for (size_t i = 0; i < sizeof metrics / sizeof *metrics; i++) {
        char name[64];
        snprintf(name, sizeof name, "sweep-%s.png", metrics[i]);
        plot_request req = request(PLOT_SWEEP, "sweep.csv", name);
        req.metric = metrics[i];
        render(&req);
        assert_png(req.out);
    }
}

Test(plots, scope_renders_png_and_svg)
{
    plot_request req = request(PLOT_SCOPE, "scope.csv", "scope.png");
    render(&req);
    assert_png(req.out);
    req.out = out_path("scope.svg");
    render(&req);
    assert_svg(req.out);
}

Test(plots, heatmap_renders_with_and_without_overlay)
{
    plot_request req = request(PLOT_HEATMAP, "heatmap.csv", "attn.png");
    req.policy = "h2o";
    render(&req);
    assert_png(req.out);
    /* The writer the trace side uses, without a kept column: no overlay. */
    kv_err err = {0};
    char csv[1024];
    snprintf(csv, sizeof csv, "%s", out_path("plain.csv"));
    plot_heatmap_writer *w = plot_heatmap_open(csv, 0, &err);
    cr_assert_not_null(w, "%s", err.msg);
    for (int t = 0; t < 32; t++) {
        int keys[32];
        float prob[32];
        for (int k = 0; k <= t; k++)
            keys[k] = k, prob[k] = 1.0f / (float)(t + 1);
        cr_assert_eq(plot_heatmap_row(w, t, t + 1, keys, prob, NULL, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(plot_heatmap_close(w, 1, &err), 0, "%s", err.msg);
    plot_request plain = {.kind = PLOT_HEATMAP, .csv = csv, .out = out_path("plain.svg")};
    render(&plain);
    assert_svg(plain.out);
    char *s = script_of(&plain);
    cr_assert_null(strstr(s, "\npolicy = "), "no policy was named, so none is set");
    free(s);
}

/* The confirm figure from the points of `kvsim confirm predict --points`, with the
 * rho of each budget from its predict CSV, and without.  Skipped, not failed, on a
 * machine without gnuplot: the script itself is checked below either way. */
Test(plots, confirm_renders_points_with_and_without_rho)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        cr_skip_test("gnuplot is not on PATH");
    plot_request req = request(PLOT_CONFIRM, "confirm_points.csv", "confirm.png");
    req.predict = fixture("confirm_predict.csv");
    render(&req);
    assert_png(req.out);
    req.predict = NULL;
    req.out = out_path("confirm.svg");
    render(&req);
    assert_svg(req.out);
}

/* ---- the scripts carry what a reader needs ---------------------------------- */

Test(plots, sweep_script_names_policies_axes_and_subtitle)
{
    plot_request req = request(PLOT_SWEEP, "sweep.csv", "b.png");
    req.metric = "overlap";
    req.model = "SmolLM2-135M";
    req.title = "Budget sweep";
    char *s = script_of(&req);
    assert_has(s, "metric = 'overlap'");
    assert_has(s, "title = 'Budget sweep'");
    assert_has(s, "model = 'SmolLM2-135M'");
    assert_has(s, "trace = 'demo.h5'");            /* from the CSV's trace column */
    assert_has(s, "'KV budget B (entries kept per stream)'");
    assert_has(s, "top-B overlap with the full cache");
    assert_has(s, "'full cache'");
    assert_has(s, "p eq 'oracle'       ? '#8c8c8c'");  /* the one colour table, inlined */
    assert_has(s, "p eq 'full'         ? '#000000'");
    assert_has(s, "set terminal pngcairo");
    free(s);
}

Test(plots, std_scope_heatmap_scripts_carry_their_labels)
{
    plot_request std = request(PLOT_STD, "std.csv", "s.svg");
    std.layers = "0,2";
    char *s = script_of(&std);
    assert_has(s, "layers = '0 2'");
    assert_has(s, "fmt = 'svg'");
    assert_has(s, "set logscale x 2");
    assert_has(s, "token age t − i (query steps, log scale)");
    assert_has(s, "'layer '.word(layers, i)");
    free(s);
    plot_request scope = request(PLOT_SCOPE, "scope.csv", "r.png");
    s = script_of(&scope);
    assert_has(s, "protected size r (entries the scope shields from eviction)");
    assert_has(s, "'%s score, %s scope%s (spread %s)'");
    free(s);
    plot_request heat = request(PLOT_HEATMAP, "heatmap.csv", "a.png");
    heat.policy = "h2o";
    s = script_of(&heat);
    assert_has(s, "policy = 'h2o'");
    assert_has(s, "set logscale cb");
    assert_has(s, "'query step t (token index)'");
    assert_has(s, "'veiled: evicted by '.policy");
    free(s);
}

Test(plots, confirm_script_reads_rho_per_budget_and_labels_both_axes)
{
    plot_request req = request(PLOT_CONFIRM, "confirm_points.csv", "c.png");
    req.predict = fixture("confirm_predict.csv");
    char *s = script_of(&req);
    assert_has(s, "predict = '");
    assert_has(s, "confirm_predict.csv'");
    assert_has(s, "# ---- confirm.gp");
    assert_has(s, "'simulated (replay): '.metric_label(sim_metric)");
    assert_has(s, "'real (live generation): '.real_metric");
    assert_has(s, "sprintf('%.2f [%.2f, %.2f]', r, lo, hi)");
    assert_has(s, "'Spearman ρ '.rho_all");
    assert_has(s, "pt variable");
    free(s);
}

Test(plots, script_quotes_awkward_strings)
{
    plot_request req = request(PLOT_SWEEP, "sweep.csv", "b.png");
    req.title = "it's H2O";
    char *s = script_of(&req);
    assert_has(s, "title = 'it''s H2O'");
    free(s);
}

/* ---- refusals ---------------------------------------------------------------- */

/* Run bin/kvsim with arguments; stdout+stderr into out[]; returns the exit status. */
static int kvsim(const char *args, char *out, size_t len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/kvsim' plot %s 2>&1", getenv("KV_BIN"), args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(plots, missing_gnuplot_exits_1_naming_the_package)
{
    char args[4096], out[4096];
    snprintf(args, sizeof args, "sweep '%s' -o '%s' --gnuplot /nonexistent",
             fixture("sweep.csv"), out_path("b.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "gnuplot-nox"), "%s", out);
    cr_assert_not_null(strstr(out, "--gnuplot"), "%s", out);
    assert_dir_empty();
}

Test(plots, bad_extension_exits_2_naming_both_formats)
{
    char args[4096], out[4096];
    snprintf(args, sizeof args, "sweep '%s' -o '%s'", fixture("sweep.csv"), out_path("b.jpg"));
    cr_assert_eq(kvsim(args, out, sizeof out), 2, "%s", out);
    cr_assert_not_null(strstr(out, ".png"), "%s", out);
    cr_assert_not_null(strstr(out, ".svg"), "%s", out);
    assert_dir_empty();
}

Test(plots, script_only_prints_and_draws_nothing)
{
    char args[4096], out[65536];
    snprintf(args, sizeof args, "scope '%s' -o '%s' --script-only --subtitle M",
             fixture("scope.csv"), out_path("r.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 0, "%s", out);
    assert_has(out, "model = 'M'");
    assert_has(out, "# ---- scope.gp");
    assert_dir_empty();
}

Test(plots, foreign_csv_exits_1_naming_the_column)
{
    char args[4096], out[4096];
    snprintf(args, sizeof args, "sweep '%s' -o '%s'", fixture("std.csv"), out_path("b.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "no column 'trace'"), "%s", out);
    assert_dir_empty();
}

/* The confirm plot wants the points CSV, and --predict a predict CSV: each swapped
 * for another of kvsim's CSVs is refused with the column named, before gnuplot. */
Test(plots, confirm_refuses_foreign_csvs_and_predict_elsewhere)
{
    char args[4096], out[4096];
    snprintf(args, sizeof args, "confirm '%s' -o '%s'", fixture("sweep.csv"), out_path("c.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "no column 'sim_metric'"), "%s", out);
    snprintf(args, sizeof args, "confirm '%s' --predict '%s' -o '%s'",
             fixture("confirm_points.csv"), fixture("sweep.csv"), out_path("c.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "no column 'spearman'"), "%s", out);
    snprintf(args, sizeof args, "confirm '%s/none.csv' -o '%s'", dir, out_path("c.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "none.csv: cannot open"), "%s", out);
    snprintf(args, sizeof args, "sweep '%s' --predict '%s' -o '%s'", fixture("sweep.csv"),
             fixture("confirm_predict.csv"), out_path("c.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 2, "%s", out);
    cr_assert_not_null(strstr(out, "--predict"), "%s", out);
    assert_dir_empty();
}

Test(plots, gnuplot_failure_shows_its_stderr_and_leaves_no_file)
{
    /* A gnuplot that draws half a file, complains and fails. */
    char fake[256];
    snprintf(fake, sizeof fake, "%s/fake-gnuplot", dir);
    FILE *f = fopen(fake, "w");
    fprintf(f, "#!/bin/sh\necho 'line 7: undefined variable: bogus' >&2\nexit 1\n");
    fclose(f);
    chmod(fake, 0755);
    plot_request req = request(PLOT_SWEEP, "sweep.csv", "b.png");
    req.gnuplot = fake;
    kv_err err = {0};
    cr_assert_eq(plot_render(&req, &err), KV_EIO);
    cr_assert_not_null(strstr(err.msg, "undefined variable: bogus"), "%s", err.msg);
    cr_assert_neq(access(req.out, F_OK), 0, "a failed plot left %s", req.out);
    remove(fake);
    assert_dir_empty();
}

Test(plots, an_unknown_metric_is_a_usage_error_and_a_missing_trace_a_runtime_error)
{
    char args[4096], out[4096];
    snprintf(args, sizeof args, "sweep '%s' -o '%s' --metric speed", fixture("sweep.csv"),
             out_path("b.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 2, "%s", out);
    cr_assert_not_null(strstr(out, "output-error"), "%s", out);
    snprintf(args, sizeof args, "heatmap t.h5 -o '%s' --layer 0 --head 1", out_path("a.png"));
    cr_assert_eq(kvsim(args, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "t.h5"), "the error names the trace: %s", out);
    cr_assert_neq(access(out_path("a.png"), F_OK), 0, "no figure after an error");
}
