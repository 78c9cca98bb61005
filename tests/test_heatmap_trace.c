/*
 * test_heatmap_trace.c — `kvsim plot heatmap TRACE` on the shared real trace
 * ($KV_TRACE): the figure is a valid PNG, the CSV beside it holds the requested rows
 * of the causal triangle, and the overlay is the engine's kept set (recency keeps the
 * newest B + s = B + 1 entries at every step once eviction has begun).
 */
#include <criterion/criterion.h>

#include "test_shell.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/wait.h>

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/kvsim-heatmap-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(heatmap_trace, .init = make_dir, .fini = remove_dir);

/* Run `kvsim plot heatmap $KV_TRACE OPTIONS -o DIR/attn.png`; its exit status. */
static int plot_heatmap(const char *options)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/kvsim' plot heatmap '%s' %s -o '%s/attn.png' 2>/dev/null",
             getenv("KV_BIN"), test_trace(), options, dir);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void assert_png(const char *path)
{
    unsigned char b[16] = {0};
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s was not drawn", path);
    cr_assert_eq(fread(b, 1, sizeof b, f), sizeof b);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_eq(memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0, "%s: not a PNG", path);
    cr_assert_gt(size, 5000, "%s: %ld bytes is too small for a drawn figure", path, size);
}

/* Per query step t of the CSV: cells, kept cells, the first kept key, and Σ prob. */
typedef struct row_stats {
    int    cells, kept, first_kept;
    double mass;
} row_stats;

static row_stats *read_csv(int T, int with_kept)
{
    char path[128], line[128];
    snprintf(path, sizeof path, "%s/attn.csv", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s was not written", path);
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, with_kept ? "t,key,prob,kept\n" : "t,key,prob\n");
    row_stats *rows = calloc((size_t)T, sizeof *rows);
    int t, key, kept = 0;
    double p;
    while (fgets(line, sizeof line, f)) {
        cr_assert_geq(sscanf(line, "%d,%d,%lf,%d", &t, &key, &p, &kept), 3, "%s", line);
        cr_assert(t >= 0 && t < T && key >= 0 && key <= t, "%s", line);
        if (kept && !rows[t].kept++)
            rows[t].first_kept = key;
        rows[t].cells++;
        rows[t].mass += p;
    }
    fclose(f);
    return rows;
}

Test(heatmap_trace, a_range_of_rows_draws_a_png_beside_its_csv)
{
    cr_assert_eq(plot_heatmap("--layer 3 --head 4 --range 30:80"), 0);
    char png[128];
    snprintf(png, sizeof png, "%s/attn.png", dir);
    assert_png(png);
    row_stats *rows = read_csv(2048, 0);
    for (int t = 0; t < 2048 && t < 100; t++) {
        const int wanted = t >= 30 && t < 80;
        cr_assert_eq(rows[t].cells, wanted ? t + 1 : 0, "t = %d: %d cells", t, rows[t].cells);
        if (wanted)
            cr_assert_float_eq(rows[t].mass, 1.0, 2e-3, "t = %d: row sums to %g", t, rows[t].mass);
    }
    free(rows);
}

Test(heatmap_trace, the_overlay_is_the_engines_kept_set_recency_keeps_B_plus_1)
{
    enum { B = 20 };
    cr_assert_eq(plot_heatmap("--layer 3 --head 4 --policy recency --budget 20"), 0);
    char png[128];
    snprintf(png, sizeof png, "%s/attn.png", dir);
    assert_png(png);
    row_stats *rows = read_csv(2048, 1);
    int seen = 0;
    for (int t = 0; t < 2048 && rows[t].cells; t++, seen++) {
        cr_assert_eq(rows[t].cells, t + 1);
        const int want = t >= B ? B + 1 : t + 1;   /* C_t: B kept + token t once evicting */
        cr_assert_eq(rows[t].kept, want, "t = %d: %d kept", t, rows[t].kept);
        cr_assert_eq(rows[t].first_kept, t + 1 - want, "t = %d: recency keeps the newest", t);
    }
    cr_assert_gt(seen, 100, "the whole trace is drawn without --range");
    free(rows);
}

Test(heatmap_trace, a_layer_not_in_the_trace_or_a_range_past_its_end_is_an_error)
{
    cr_assert_eq(plot_heatmap("--layer 99 --head 0"), 1);
    cr_assert_eq(plot_heatmap("--layer 0 --head 0 --range 10:100000"), 1);
    char png[128];
    snprintf(png, sizeof png, "%s/attn.png", dir);
    cr_assert_eq(access(png, F_OK), -1, "no figure after an error");
}
