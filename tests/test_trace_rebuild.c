/*
 * test_trace_rebuild.c — row-free traces of the real model against row traces of the
 * same prompt, recorded here with the command line as a user would:
 *   rows   --rows all --dtype f32 --qk-dtype f32   every row stored (the forward pass's rows)
 *   free   --rows none --dtype f32        rows rebuilt from f32 queries and keys
 *   half   --rows none --qk-dtype f16     rows rebuilt from f16 queries and keys
 * Rebuilt rows must equal the stored ones bit for bit, a 20-configuration sweep must
 * print the same numbers, rows from f16 inputs must stay within the stated bound
 * (docs/TRACE_FORMAT.md, "Rebuilt rows"), and the Python reader (python/kvtrace.py)
 * must rebuild the same rows where numpy and h5py are installed.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay_source.h"
#include "test_shell.h"
#include "trace_file.h"

static char dir[] = "/tmp/kv_rebuild_XXXXXX";

static void record(const char *name, const char *options)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' record '%s' --prompt-file '%s/trace_prompt.txt' "
             "--max-new-tokens 24 %s -o '%s/%s.h5' 2>&1", getenv("KV_BIN"), test_model(),
             getenv("KV_FIXTURES"), options, dir, name);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
}

static void setup(void)
{
    test_model();
    cr_assert_not_null(mkdtemp(dir));
    record("rows", "--rows all --dtype f32 --qk-dtype f32");
}

static void teardown(void)
{
    char cmd[128], out[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    test_shell(cmd, out, sizeof out);
}

TestSuite(trace_rebuild, .init = setup, .fini = teardown, .timeout = 300);

static replay_source *open_source(const char *name)
{
    char path[128];
    kv_err err = {0};
    snprintf(path, sizeof path, "%s/%s.h5", dir, name);
    replay_source *s = replay_source_open(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    return s;
}

/* Every row of a and b, block by block; f(ctx, t, row_a, row_b, len) sees each pair. */
static void each_row(replay_source *a, replay_source *b,
                     void (*f)(void *ctx, int li, int hi, int t, const float *ra,
                               const float *rb, int len),
                     void *ctx)
{
    const int T = a->T;
    cr_assert_eq(T, b->T);
    float *ra = malloc((size_t)64 * T * sizeof *ra), *rb = malloc((size_t)64 * T * sizeof *rb);
    kv_err err = {0};
    for (int li = 0; li < a->n_layers; li++)
        for (int hi = 0; hi < a->n_heads; hi++)
            for (int t0 = 0; t0 < T; t0 += 64) {
                const int n = T - t0 < 64 ? T - t0 : 64, w = t0 + n;
                cr_assert_eq(replay_source_read_rows(a, li, hi, t0, n, ra, w, &err), 0, "%s",
                             err.msg);
                cr_assert_eq(replay_source_read_rows(b, li, hi, t0, n, rb, w, &err), 0, "%s",
                             err.msg);
                for (int i = 0; i < n; i++)
                    f(ctx, li, hi, t0 + i, ra + (size_t)i * w, rb + (size_t)i * w, w);
            }
    free(ra);
    free(rb);
}

static void same_bits(void *ctx, int li, int hi, int t, const float *ra, const float *rb,
                      int len)
{
    (void)ctx;
    cr_assert_arr_eq(ra, rb, (size_t)len * sizeof *ra, "layer %d head %d step %d", li, hi, t);
}


/* python/test_kvtrace.py with the first Python that has numpy and h5py (exit 77 when
 * none has them: the test then says skipped). */
Test(trace_rebuild, the_python_reader_rebuilds_the_same_rows)
{
    char cmd[2048], out[4096];
    record("free", "--rows none --dtype f32");
    snprintf(cmd, sizeof cmd, "cd '%s/python' && for py in python3 /usr/bin/python3; do "
             "$py -c 'import numpy, h5py' 2>/dev/null && exec $py test_kvtrace.py "
             "'%s/free.h5' '%s/rows.h5' 2>&1; done; exit 77", getenv("KV_ROOT"), dir, dir);
    int status = test_shell(cmd, out, sizeof out);
    if (status == 77)
        cr_skip_test("no Python with numpy and h5py (Debian: python3-numpy python3-h5py)");
    cr_assert_eq(status, 0, "%s", out);
    fprintf(stderr, "%s", out);
}

/* The CSV of `kvsim sweep` on one trace without its `trace` column. */
static void sweep(const char *name, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/kvsim' sweep '%s/%s.h5' --policies "
             "h2o,tova,snapkv,knorm,oracle --budgets 0.2,0.5 --strides 1,4 -o - 2>/dev/null "
             "| cut -d, -f2-", getenv("KV_BIN"), dir, name);
    cr_assert_eq(test_shell(cmd, out, len), 0, "%s", out);
}

/* From f32 queries and keys: every row bit for bit, so every number of a sweep. */
Test(trace_rebuild, f32_inputs_give_the_recorded_rows_bit_for_bit_and_the_same_sweep)
{
    record("free", "--rows none --dtype f32");
    replay_source *ra = open_source("free"), *rb = open_source("rows");
    each_row(ra, rb, same_bits, NULL);
    replay_source_close(ra);
    replay_source_close(rb);
    static char a[1 << 20], b[1 << 20];
    sweep("free", a, sizeof a);
    sweep("rows", b, sizeof b);
    cr_assert_gt(strlen(a), 20 * 30 * 9 * 10, "every (configuration, layer, head) line");
    cr_assert_str_eq(a, b);
}

/* From f16 inputs: each logit may be off by delta = scale · Σ_d |q_d k_d| · (2^-10 +
 * D · 2^-24) (both factors rounded to half, then an f32 dot product), so a probability
 * by at most e^(2 delta) - 1, plus the f32 softmax's own (t + 2) · 2^-24. */
typedef struct bound_check {
    trace  *half;          /* for its f16 queries and keys */
    float  *q, *k;         /* (1, D) and (T, D) */
    int     li_k, ki_k;    /* the keys held */
    double  worst, worst_bound;
} bound_check;

static double logit_error(bound_check *c, int li, int hi, int t)
{
    const trace_meta *m = trace_get_meta(c->half);
    const int D = m->header.head_dim, ki = trace_kv_index_of_head(c->half, hi);
    kv_err err = {0};
    if (c->li_k != li || c->ki_k != ki) {
        cr_assert_eq(trace_read_kv(c->half, li, ki, 0, (int)m->steps, c->k, NULL, &err), 0);
        c->li_k = li, c->ki_k = ki;
    }
    cr_assert_eq(trace_read_queries(c->half, li, hi, t, 1, c->q, &err), 0, "%s", err.msg);
    double worst = 0;
    for (int j = 0; j <= t; j++) {
        double mag = 0;
        for (int d = 0; d < D; d++)
            mag += fabs((double)c->q[d] * c->k[(size_t)j * D + d]);
        worst = mag > worst ? mag : worst;
    }
    return m->header.attn_scale * worst * (0x1p-10 + D * 0x1p-24);
}

static void within_bound(void *ctx, int li, int hi, int t, const float *ra, const float *rb,
                         int len)
{
    bound_check *c = ctx;
    double diff = 0;
    for (int j = 0; j < len; j++)
        diff = fmax(diff, fabs((double)ra[j] - rb[j]));
    const double bound = expm1(2 * logit_error(c, li, hi, t)) + (t + 2) * 0x1p-24;
    cr_assert_leq(diff, bound, "layer %d head %d step %d: %g > %g", li, hi, t, diff, bound);
    c->worst = fmax(c->worst, diff);
    c->worst_bound = fmax(c->worst_bound, bound);
}

Test(trace_rebuild, rows_rebuilt_from_f16_queries_and_keys_stay_within_the_bound)
{
    record("half", "--rows none --dtype f32 --qk-dtype f16");
    replay_source *a = open_source("half"), *b = open_source("rows");
    char path[128];
    kv_err err = {0};
    snprintf(path, sizeof path, "%s/half.h5", dir);
    bound_check c = {.half = trace_open(path, &err), .li_k = -1, .ki_k = -1};
    cr_assert_not_null(c.half, "%s", err.msg);
    const int D = trace_get_meta(c.half)->header.head_dim, T = a->T;
    c.q = malloc((size_t)D * sizeof *c.q);
    c.k = malloc((size_t)T * D * sizeof *c.k);
    each_row(a, b, within_bound, &c);
    fprintf(stderr, "rows from f16 queries and keys vs the forward pass: max |dp| %.3g "
            "(largest bound %.3g)\n", c.worst, c.worst_bound);
    cr_assert_gt(c.worst, 0, "f16 inputs do change the rows");
    free(c.q);
    free(c.k);
    trace_close(c.half);
    replay_source_close(a);
    replay_source_close(b);
}
