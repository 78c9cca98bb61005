/*
 * test_many.c — many traces in one command, the same under MPI, faults and --resume
 * (sim/many.h, docs/SCALE.md), run as a user would run bin/kvsim and bin/kvsim-mpi.
 *
 * The reference is always the plain one-trace command: a sweep over traces A B C must
 * be the header and then exactly the lines of `sweep A`, `sweep B`, `sweep C`, and the
 * same bytes again from 1, 2 and 3 MPI ranks and from a run resumed after a kill.
 * Traces: the shared test trace (108 steps), the committed fixture trace (84 steps,
 * layers 0, 15, 29) and a copy of the first under another name; layers 0 and 15 (tiny
 * sweeps, a few seconds).  The MPI tests are reported skipped without mpirun or
 * bin/kvsim-mpi (a build without mpicc).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bootstrap.h"
#include "journal.h"
#include "test_shell.h"

#define SWEEP "sweep --policies h2o,tova,snapkv --budgets 0.3,0.6 --layers 0,15 --threads 2"
#define OUT_MAX (1 << 16)

typedef struct fixture {
    char dir[64], a[256], b[256], c[256], bin[1024];
} fixture;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Three traces in a fresh directory: A (the test trace), B (the fixture), C (A again). */
static int setup_traces(fixture *fx)
{
    const char *trace = test_trace(), *bin = getenv("KV_BIN"), *fix = getenv("KV_FIXTURES");
    if (!trace || !bin || !fix)
        return 0;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/kv_many_XXXXXX");
    cr_assert_not_null(mkdtemp(fx->dir));
    snprintf(fx->a, sizeof fx->a, "%s", trace);
    snprintf(fx->b, sizeof fx->b, "%s/replay_trace.h5", fix);
    snprintf(fx->c, sizeof fx->c, "%s/copy_of_a.h5", fx->dir);
    snprintf(fx->bin, sizeof fx->bin, "%s", bin);
    char cmd[2048], out[256];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fx->a, fx->c);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0);
    return 1;
}

static void cleanup(const fixture *fx)
{
    char cmd[256], out[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    test_shell(cmd, out, sizeof out);
}

/* Run `kvsim ARGS` (or kvsim-mpi under mpirun -np ranks when ranks > 0); exit status. */
static int kvsim(const fixture *fx, int ranks, const char *args, char *out)
{
    char cmd[8192];
    if (ranks > 0)
        snprintf(cmd, sizeof cmd, "mpirun --oversubscribe --allow-run-as-root -np %d "
                 "'%s/kvsim-mpi' %s 2>&1", ranks, fx->bin, args);
    else
        snprintf(cmd, sizeof cmd, "'%s/kvsim' %s 2>&1", fx->bin, args);
    return test_shell(cmd, out, OUT_MAX);
}

static int have_mpi(const fixture *fx)
{
    char path[1100], out[256];
    snprintf(path, sizeof path, "%s/kvsim-mpi", fx->bin);
    return access(path, X_OK) == 0 && test_shell("command -v mpirun", out, sizeof out) == 0;
}

/* The traces, and bin/kvsim-mpi with mpirun when mpi: else the test is skipped. */
static void need_traces(fixture *fx, int mpi)
{
    if (!setup_traces(fx))
        cr_skip_test("no test trace (make test builds build/test_trace.h5)");
    if (mpi && !have_mpi(fx)) {
        cleanup(fx);
        cr_skip_test("no mpirun or no bin/kvsim-mpi (built when mpicc is present)");
    }
}

/* The plain single-trace sweeps of A, B, C joined under one header. */
static char *expected_csv(const fixture *fx)
{
    char *out = malloc(OUT_MAX), args[2048], path[128];
    const char *const traces[3] = {fx->a, fx->b, fx->c};
    size_t cap = 1 << 20, len = 0;
    char *all = calloc(cap, 1);
    snprintf(path, sizeof path, "%s/single.csv", fx->dir);
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "%s '%s' -o '%s'", SWEEP, traces[i], path);
        cr_assert_eq(kvsim(fx, 0, args, out), 0, "%s", out);
        char *csv = slurp(path), *body = i ? strchr(csv, '\n') + 1 : csv;
        size_t n = strlen(body);
        cr_assert_lt(len + n, cap);
        memcpy(all + len, body, n + 1);
        len += n;
        free(csv);
    }
    free(out);
    return all;
}

static char *sweep_three(const fixture *fx, int ranks, const char *extra, int *status,
                         char *out)
{
    char args[4096], path[128];
    snprintf(path, sizeof path, "%s/many.csv", fx->dir);
    unlink(path);
    snprintf(args, sizeof args, "%s '%s' '%s' '%s' -o '%s' %s", SWEEP, fx->a, fx->b, fx->c,
             path, extra);
    *status = kvsim(fx, ranks, args, out);
    return slurp(path);
}

Test(many, three_traces_give_the_three_single_csvs_under_one_header, .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 0);
    char *want = expected_csv(&fx), *out = malloc(OUT_MAX);
    int status;
    char *got = sweep_three(&fx, 0, "", &status, out);
    cr_assert_eq(status, 0, "%s", out);
    cr_assert_not_null(got);
    cr_expect_str_eq(got, want, "the many-trace CSV is not the single CSVs joined");
    /* --traces FILE gives the same file as the trace arguments */
    char list[128], args[4096], path[128];
    snprintf(list, sizeof list, "%s/list.txt", fx.dir);
    FILE *f = fopen(list, "w");
    fprintf(f, "# three traces\n%s\n\n  %s\n%s\n", fx.a, fx.b, fx.c);
    fclose(f);
    snprintf(path, sizeof path, "%s/listed.csv", fx.dir);
    snprintf(args, sizeof args, "%s --traces '%s' -o '%s'", SWEEP, list, path);
    cr_assert_eq(kvsim(&fx, 0, args, out), 0, "%s", out);
    char *listed = slurp(path);
    cr_expect_str_eq(listed, want);
    free(listed);
    free(got);
    free(want);
    free(out);
    cleanup(&fx);
}

Test(many, the_json_holds_each_trace_and_the_mean_across_them, .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 0);
    char *out = malloc(OUT_MAX), json[128], extra[256];
    snprintf(json, sizeof json, "%s/many.json", fx.dir);
    snprintf(extra, sizeof extra, "--json '%s'", json);
    int status;
    free(sweep_three(&fx, 0, extra, &status, out));
    cr_assert_eq(status, 0, "%s", out);
    char *j = slurp(json);
    cr_assert_not_null(j);
    cr_expect_not_null(strstr(j, "\"format\": \"kvsim-results-many\""));
    cr_expect_not_null(strstr(j, "\"trace\": \"replay_trace.h5\""));
    cr_expect_not_null(strstr(j, "\"trace\": \"copy_of_a.h5\""));
    /* h2o at 0.3 is the first configuration: its mass in each trace, then across */
    double mass[3];
    const char *p = j;
    for (int i = 0; i < 3; i++) {
        p = strstr(p, "\"results\": [");
        cr_assert_not_null(p);
        const char *m = strstr(p, "\"mass\": ");
        cr_assert_eq(sscanf(m, "\"mass\": %lf", &mass[i]), 1);
        p = m;
    }
    const char *across = strstr(j, "\"across\": [");
    cr_assert_not_null(across);
    double mean, lo, hi;
    int n;
    cr_assert_eq(sscanf(strstr(across, "\"mass\": {"), "\"mass\": {\"mean\": %lf, \"ci95\": "
                        "[%lf, %lf], \"n\": %d", &mean, &lo, &hi, &n), 4);
    cr_expect_eq(n, 3);
    cr_expect_float_eq(mean, (mass[0] + mass[1] + mass[2]) / 3, 1e-8);
    cr_expect(lo <= mean && mean <= hi && lo < hi, "%g <= %g <= %g", lo, mean, hi);
    /* a resample's mean lies between the smallest and the largest trace's */
    const double min = fmin(mass[0], mass[1]), max = fmax(mass[0], mass[1]);
    cr_expect(lo >= min - 1e-12 && hi <= max + 1e-12);
    free(j);
    free(out);
    cleanup(&fx);
}

Test(many, mpi_one_two_and_three_ranks_write_the_plain_csv_byte_for_byte, .timeout = 600)
{
    fixture fx;
    need_traces(&fx, 1);
    char *want = expected_csv(&fx), *out = malloc(OUT_MAX);
    for (int ranks = 1; ranks <= 3; ranks++) {
        int status;
        char *got = sweep_three(&fx, ranks, "", &status, out);
        cr_assert_eq(status, 0, "%d ranks: %s", ranks, out);
        cr_assert_not_null(got);
        cr_expect_str_eq(got, want, "%d ranks: the CSV differs from the plain sweep", ranks);
        free(got);
    }
    free(want);
    free(out);
    cleanup(&fx);
}

Test(many, one_trace_under_two_ranks_writes_the_plain_csv_and_json, .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 1);
    char *out = malloc(OUT_MAX), args[4096], csv[128], json[128];
    snprintf(csv, sizeof csv, "%s/one.csv", fx.dir);
    snprintf(json, sizeof json, "%s/one.json", fx.dir);
    /* the same command line, so that the JSON's provenance is the same too */
    snprintf(args, sizeof args, "%s '%s' -o '%s' --json '%s'", SWEEP, fx.b, csv, json);
    char *text[2][2];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(kvsim(&fx, k ? 2 : 0, args, out), 0, "%s", out);
        text[k][0] = slurp(csv);
        text[k][1] = slurp(json);
    }
    cr_expect_str_eq(text[1][0], text[0][0]);
    cr_expect_str_eq(text[1][1], text[0][1]);
    cr_expect_not_null(strstr(text[0][1], "\"format\": \"kvsim-results\""));
    for (int k = 0; k < 4; k++)
        free(text[k / 2][k % 2]);
    free(out);
    cleanup(&fx);
}

Test(many, mpi_scope_over_two_traces_equals_the_plain_run, .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 1);
    char *out = malloc(OUT_MAX), args[4096];
    char *csv[2];
    for (int k = 0; k < 2; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s/scope%d.csv", fx.dir, k);
        snprintf(args, sizeof args, "scope '%s' '%s' --score aas,mas --budget 0.4 --sizes "
                 "0.2,0.5 --layers 0 -o '%s'", fx.a, fx.b, path);
        cr_assert_eq(kvsim(&fx, k ? 2 : 0, args, out), 0, "%s", out);
        csv[k] = slurp(path);
    }
    cr_expect_str_eq(csv[1], csv[0]);
    cr_expect_not_null(strstr(csv[0], "replay_trace.h5,spread,"));
    free(csv[0]);
    free(csv[1]);
    free(out);
    cleanup(&fx);
}

/* Each line of a one-trace std file with `trace,` in front, header dropped. */
static void append_prefixed(char *all, const char *path, const char *name)
{
    char *text = slurp(path), *line = strchr(text, '\n') + 1;
    for (char *end; *line; line = end + 1) {
        end = strchr(line, '\n');
        strcat(all, name);
        strcat(all, ",");
        strncat(all, line, (size_t)(end - line) + 1);
    }
    free(text);
}

Test(many, std_over_two_traces_is_each_std_with_a_trace_column, .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 0);
    char *out = malloc(OUT_MAX), args[4096], one[128], many[128], tok[160];
    char *want = calloc(1 << 20, 1), *want_tok = calloc(1 << 20, 1);
    strcpy(want, "trace,layer,head,age_lo,age_hi,n,mean,p10,p50,p90\n");
    strcpy(want_tok, "trace,layer,head,position,age,sigma\n");
    snprintf(one, sizeof one, "%s/one.csv", fx.dir);
    snprintf(tok, sizeof tok, "%s/one_tokens.csv", fx.dir);
    const char *slash = strrchr(fx.a, '/');
    const char *const traces[2] = {fx.a, fx.b}, *const names[2] = {slash ? slash + 1 : fx.a,
                                                                    "replay_trace.h5"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "std '%s' --layers 0,15 -o '%s'", traces[i], one);
        cr_assert_eq(kvsim(&fx, 0, args, out), 0, "%s", out);
        append_prefixed(want, one, names[i]);
        append_prefixed(want_tok, tok, names[i]);
    }
    snprintf(many, sizeof many, "%s/many.csv", fx.dir);
    snprintf(args, sizeof args, "std '%s' '%s' --layers 0,15 -o '%s'", fx.a, fx.b, many);
    cr_assert_eq(kvsim(&fx, 0, args, out), 0, "%s", out);
    char *got = slurp(many);
    snprintf(tok, sizeof tok, "%s/many_tokens.csv", fx.dir);
    char *got_tok = slurp(tok);
    cr_expect_str_eq(got, want);
    cr_expect_str_eq(got_tok, want_tok);
    cr_expect_not_null(strstr(got, "\nreplay_trace.h5,15,all,"));
    free(got);
    free(got_tok);
    free(want);
    free(want_tok);
    free(out);
    cleanup(&fx);
}

/* A trace that cannot be read among good ones: named, status 1, no CSV at -o. */
static void expect_fault_reported(const fixture *fx, int ranks)
{
    char bad[128], missing[128], path[128], args[4096], cmd[512];
    char *out = malloc(OUT_MAX);
    snprintf(bad, sizeof bad, "%s/corrupt.h5", fx->dir);
    snprintf(missing, sizeof missing, "%s/missing.h5", fx->dir);
    snprintf(path, sizeof path, "%s/faulty.csv", fx->dir);
    snprintf(cmd, sizeof cmd, "head -c 4096 '%s' > '%s'", fx->a, bad);   /* truncated */
    cr_assert_eq(test_shell(cmd, out, OUT_MAX), 0);
    snprintf(args, sizeof args, "%s '%s' '%s' '%s' -o '%s'", SWEEP, fx->a, bad, fx->b, path);
    cr_expect_eq(kvsim(fx, ranks, args, out), 1, "%s", out);
    cr_expect_not_null(strstr(out, bad), "the corrupt trace is not named: %s", out);
    cr_expect_not_null(strstr(out, "1 of 3 traces could not be replayed"), "%s", out);
    cr_expect_neq(access(path, F_OK), 0, "a CSV was written despite the bad trace");
    snprintf(args, sizeof args, "%s '%s' '%s' '%s' -o '%s'", SWEEP, fx->a, fx->b, missing,
             path);
    cr_expect_eq(kvsim(fx, ranks, args, out), 1, "%s", out);
    cr_expect_not_null(strstr(out, missing), "the missing trace is not named: %s", out);
    cr_expect_neq(access(path, F_OK), 0);
    free(out);
}

Test(many, a_corrupt_or_missing_trace_among_three_is_named_and_nothing_is_written,
     .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 0);
    expect_fault_reported(&fx, 0);
    if (have_mpi(&fx))
        expect_fault_reported(&fx, 2);
    cleanup(&fx);
}

/* Keep the first `keep` records of the journal and half of the next: a killed run. */
static void cut_journal(const char *path, int keep)
{
    char *text = slurp(path), *p = text;
    cr_assert_not_null(text);
    for (int i = 0; i < keep; i++) {
        p = strchr(p, '\n');
        cr_assert_not_null(p, "the journal has fewer than %d records", keep + 1);
        p++;
    }
    const char *next = strchr(p, '\n');
    cr_assert_not_null(next);
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, (size_t)(p - text) + (size_t)(next - p) / 2, f);
    fclose(f);
    free(text);
}

Test(many, resume_after_a_killed_run_reproduces_the_uninterrupted_csv, .timeout = 600)
{
    fixture fx;
    need_traces(&fx, 0);
    char *want = expected_csv(&fx), *out = malloc(OUT_MAX), journal[128], extra[256];
    snprintf(journal, sizeof journal, "%s/units.journal", fx.dir);
    snprintf(extra, sizeof extra, "--resume '%s'", journal);
    int status;
    /* a real kill: SIGKILL once the journal holds a record */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s/kvsim' %s '%s' '%s' '%s' -o '%s/many.csv' %s "
             "2>/dev/null & pid=$!; while [ ! -s '%s' ] && kill -0 $pid 2>/dev/null; do "
             "sleep 0.05; done; kill -9 $pid 2>/dev/null; { wait $pid; } 2>/dev/null; exit 0", fx.bin, SWEEP,
             fx.a, fx.b, fx.c, fx.dir, extra, journal);
    cr_assert_eq(test_shell(cmd, out, OUT_MAX), 0);
    char *got = sweep_three(&fx, 0, extra, &status, out);
    cr_assert_eq(status, 0, "%s", out);
    cr_expect_str_eq(got, want, "resumed after SIGKILL: %s", out);
    free(got);
    /* a journal cut inside its fourth record: three restored, the torn one replayed */
    cut_journal(journal, 3);
    got = sweep_three(&fx, 0, extra, &status, out);
    cr_assert_eq(status, 0, "%s", out);
    cr_expect_not_null(strstr(out, "; 3 restored from"), "%s", out);
    cr_expect_str_eq(got, want);
    free(got);
    /* a complete journal: nothing replayed, same bytes; under MPI from a cut one too */
    got = sweep_three(&fx, 0, extra, &status, out);
    cr_expect_not_null(strstr(out, "rank 0 replays 0 of 0"), "%s", out);
    cr_expect_str_eq(got, want);
    free(got);
    if (have_mpi(&fx)) {   /* a fresh journal of a whole run, cut inside its 5th record */
        unlink(journal);
        free(sweep_three(&fx, 0, extra, &status, out));
        cut_journal(journal, 4);
        got = sweep_three(&fx, 2, extra, &status, out);
        cr_assert_eq(status, 0, "%s", out);
        cr_expect_not_null(strstr(out, "; 4 restored from"), "%s", out);
        cr_expect_str_eq(got, want, "2 ranks resumed: %s", out);
        free(got);
    }
    free(want);
    free(out);
    cleanup(&fx);
}

/* --- the bootstrap (analysis/bootstrap.h) ------------------------------------------- */

Test(many, bootstrap_interval_matches_the_normal_theory_for_many_values)
{
    /* 400 values of a known spread: the 95% percentile interval of the mean is
     * mean +- 1.96 s / sqrt(n) up to resampling noise (large-sample theory, not the
     * code under test) */
    enum { N = 400 };
    double v[N], sum = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        v[i] = (i * 7919 % N) / (double)N;   /* uniform-like on [0, 1) */
        sum += v[i];
    }
    const double mean = sum / N;
    for (int i = 0; i < N; i++)
        sq += (v[i] - mean) * (v[i] - mean);
    const double half = 1.96 * sqrt(sq / (N - 1)) / sqrt(N);
    bootstrap_ci ci;
    cr_assert_eq(bootstrap_mean_ci(v, N, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED, &ci), 0);
    cr_expect_float_eq(ci.mean, mean, 1e-12);
    cr_expect_float_eq(ci.hi - ci.lo, 2 * half, 0.1 * 2 * half, "%g vs %g", ci.hi - ci.lo,
                       2 * half);
    cr_expect_float_eq((ci.hi + ci.lo) / 2, mean, 0.1 * half);
    bootstrap_ci again;
    bootstrap_mean_ci(v, N, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED, &again);
    cr_expect(again.lo == ci.lo && again.hi == ci.hi, "not deterministic");
}

Test(many, bootstrap_of_one_or_equal_values_is_a_point)
{
    const double one = 0.25, same[3] = {0.5, 0.5, 0.5};
    bootstrap_ci ci;
    cr_assert_eq(bootstrap_mean_ci(&one, 1, 100, 0.95, 1, &ci), 0);
    cr_expect(ci.lo == 0.25 && ci.hi == 0.25 && ci.mean == 0.25);
    cr_assert_eq(bootstrap_mean_ci(same, 3, 100, 0.95, 1, &ci), 0);
    cr_expect(ci.lo == 0.5 && ci.hi == 0.5);
    cr_expect_eq(bootstrap_mean_ci(same, 0, 100, 0.95, 1, &ci), -1);
}

/* A journal restores a unit only for the same parameters: after --sinks changes, the
 * resumed sweep is the fresh one with the new value, not the journal's numbers. */
Test(many, resume_recomputes_units_whose_parameters_changed, .timeout = 300)
{
    fixture fx;
    need_traces(&fx, 0);
    static char out[OUT_MAX];
    char args[4096], journal[128], fresh[128], resumed[128];
    snprintf(journal, sizeof journal, "%s/journal", fx.dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.csv", fx.dir);
    snprintf(resumed, sizeof resumed, "%s/resumed.csv", fx.dir);
    const char *base = "sweep --policies streaming --budgets 24 --layers 0 --threads 1";
    snprintf(args, sizeof args, "%s '%s' '%s' --sinks 4 --resume '%s' -o /dev/null", base,
             fx.a, fx.b, journal);
    cr_assert_eq(kvsim(&fx, 0, args, out), 0, "%s", out);
    snprintf(args, sizeof args, "%s '%s' '%s' --sinks 16 -o '%s'", base, fx.a, fx.b, fresh);
    cr_assert_eq(kvsim(&fx, 0, args, out), 0, "%s", out);
    snprintf(args, sizeof args, "%s '%s' '%s' --sinks 16 --resume '%s' -o '%s'", base, fx.a,
             fx.b, journal, resumed);
    cr_assert_eq(kvsim(&fx, 0, args, out), 0, "%s", out);
    char *a = slurp(fresh), *b = slurp(resumed);
    cr_assert_str_eq(b, a, "units journaled with --sinks 4 were restored for --sinks 16");
    free(a), free(b);
    cleanup(&fx);
}

/* Outputs never replace an input or each other, and --kept is one trace's. */
Test(many, outputs_clash_with_no_input_and_no_other_output, .timeout = 120)
{
    fixture fx;
    need_traces(&fx, 0);
    static char out[OUT_MAX];
    char args[4096], list[128], csv[128], cmd[1024];
    snprintf(list, sizeof list, "%s/list.txt", fx.dir);
    snprintf(csv, sizeof csv, "%s/x.csv", fx.dir);
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' '%s' > '%s'", fx.a, fx.b, list);
    cr_assert_eq(test_shell(cmd, out, OUT_MAX), 0);
    const char *run = "sweep --policies h2o --budgets 24 --layers 0";
    snprintf(args, sizeof args, "%s --traces '%s' -o '%s'", run, list, list);
    cr_assert_eq(kvsim(&fx, 0, args, out), 2, "the list file is an input: %s", out);
    snprintf(args, sizeof args, "%s '%s' -o '%s' --json '%s'", run, fx.a, csv, csv);
    cr_assert_eq(kvsim(&fx, 0, args, out), 2, "-o and --json share a file: %s", out);
    cr_assert(strstr(out, "the same file"), "%s", out);
    snprintf(args, sizeof args, "replay '%s' '%s' --policy h2o --budget 24 --kept '%s'", fx.a,
             fx.b, csv);
    cr_assert_eq(kvsim(&fx, 0, args, out), 2, "--kept with two traces: %s", out);
    cr_assert_eq(access(csv, F_OK), -1, "nothing written");
    char *l = slurp(list);
    cr_assert(strstr(l, fx.a) && strstr(l, fx.b), "the list is intact");
    free(l);
    cleanup(&fx);
}

/* The journal's index: every one of 3000 records is found after reopening, a key
 * journaled twice keeps its first record, an unknown key is absent. */
Test(many, the_journal_finds_every_record_and_keeps_the_first_of_twins)
{
    char path[] = "/tmp/kvsim_journal_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    kv_err err = {0};
    journal *j = journal_open(path, &err);
    cr_assert_not_null(j, "%s", err.msg);
    char key[JOURNAL_KEY + 1], text[32];
    for (int i = 0; i < 3000; i++) {
        const double v[2] = {i, -0.5 * i};
        snprintf(text, sizeof text, "unit %d", i % 2500);   /* 500 twins */
        journal_key(text, strlen(text), key);
        cr_assert_eq(journal_append(j, key, v, 2, &err), KV_OK, "%s", err.msg);
    }
    journal_close(j);
    j = journal_open(path, &err);
    cr_assert_not_null(j, "%s", err.msg);
    cr_assert_eq(journal_records(j), 2500);
    for (int i = 0; i < 2500; i++) {
        size_t n;
        snprintf(text, sizeof text, "unit %d", i);
        journal_key(text, strlen(text), key);
        const double *v = journal_find(j, key, &n);
        cr_assert(v && n == 2 && v[0] == i && v[1] == -0.5 * i, "unit %d", i);
    }
    size_t n = 7;
    journal_key("no such unit", 12, key);
    cr_assert_null(journal_find(j, key, &n));
    cr_assert_eq(n, 0);
    journal_close(j);
    unlink(path);
}
