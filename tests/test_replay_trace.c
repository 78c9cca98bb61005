/*
 * test_replay_trace.c — the replay engine on real trace files: a synthetic source
 * written with the trace writer (trace/trace_file.h) and read back through
 * source_trace.c must replay to the same numbers, and incomplete traces follow the
 * rules of the issue (replay the complete steps with a warning, or refuse with
 * --strict).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"
#include "replay_setup.h"
#include "results.h"
#include "sha256.h"
#include "trace_file.h"
#include "replay_run.h"

enum { T = 150, L = 2, H = 6, K = 2, D = 8, PROMPT = 100 };
#define SYNTH_SPEC "synth:T=150,layers=2,heads=6,kv=2,dim=8,seed=5,prompt=100"

static char path[64];

static void make_path(void)
{
    strcpy(path, "/tmp/kvsim-trace-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    remove(path);
}

static void remove_path(void) { remove(path); }

TestSuite(replay_trace, .init = make_path, .fini = remove_path);

/* A damage write_trace makes to one row entry when at >= 0: row (layer 1, head 4) of
 * step DAMAGED_STEP gets entry `at` replaced by `value`, or `value` added when add. */
enum { DAMAGED_STEP = 70 };
static struct { int at, add; float value; } damage = {-1, 0, 0};

/* Write the synthetic source's rows, keys and values as a trace; stop_at >= 0 aborts
 * the writer after that many steps (an incomplete trace). */
static void write_trace(trace_dtype dtype, int stop_at)
{
    replay_synth_spec spec = {T, L, H, K, D, PROMPT, 1, 5, 0};
    kv_err err;
    replay_source *src = replay_source_synth(&spec, &err);
    cr_assert_not_null(src, "%s", err.msg);
    static const int layers[L] = {0, 1}, heads[H] = {0, 1, 2, 3, 4, 5};
    trace_header h = {.model_file = "synthetic.gguf", .model_sha256 = "00", .architecture = "llama",
                      .tensor_types = "F32:1", .n_layer = L, .n_embd = H * D, .n_head = H,
                      .n_head_kv = K, .head_dim = D, .n_ctx = T, .vocab_size = 2000,
                      .rope_base = 10000, .prompt = "p", .device = "cpu", .threads = 1,
                      .n_layers_rec = L, .layers = layers, .n_heads_rec = H, .heads = heads};
    trace_options opt = {.dtype = dtype};
    trace_writer *w = trace_writer_open(path, &h, &opt, &err);
    cr_assert_not_null(w, "%s", err.msg);
    float *rows = malloc((size_t)L * H * T * sizeof *rows);
    float keys[L * K][D], values[L * K][D];
    const float *row_p[L * H], *key_p[L * K], *value_p[L * K];
    for (int t = 0; t < T; t++) {
        if (t == stop_at) {
            trace_writer_abort(w);
            w = NULL;
            break;
        }
        for (int i = 0; i < L * H; i++) {
            cr_assert_eq(src->ops->read_rows(src, i / H, i % H, t, 1, rows + (size_t)i * T,
                                             (size_t)t + 1, &err), KV_OK);
            row_p[i] = rows + (size_t)i * T;
        }
        if (damage.at >= 0 && t == DAMAGED_STEP) {
            float *e = rows + (size_t)(1 * H + 4) * T + damage.at;
            *e = damage.add ? *e + damage.value : damage.value;
        }
        for (int i = 0; i < L * K; i++) {
            cr_assert_eq(src->ops->read_kv(src, i / K, i % K, t, 1, keys[i], values[i], &err), KV_OK);
            key_p[i] = keys[i];
            value_p[i] = values[i];
        }
        trace_step s = {.token = src->tokens[t].token, .text = "x", .flags = 0,
                        .phase = (uint8_t)(t >= PROMPT), .position = t, .logprob_next = NAN,
                        .entropy_next = NAN, .rows = row_p, .keys = key_p, .values = value_p};
        cr_assert_eq(trace_writer_append_step(w, &s, &err), KV_OK, "%s", err.msg);
    }
    if (w)
        cr_assert_eq(trace_writer_close(w, NULL, &err), KV_OK, "%s", err.msg);
    free(rows);
    replay_source_close(src);
}


#define POLICIES " --policies full,h2o,mas,roco,tova,streaming,snapkv --budgets 0.2,0.5 --strides 1,4"

Test(replay_trace, an_f32_trace_replays_to_the_numbers_of_its_source)
{
    write_trace(TRACE_F32, -1);
    char line[512];
    run a, b;
    snprintf(line, sizeof line, "sweep %s" POLICIES, path);
    run_words(&a, line);
    cr_assert_eq(a.rc, KV_OK, "%s", a.err.msg);
    run_words(&b, "sweep " SYNTH_SPEC POLICIES);
    cr_assert_eq(b.rc, KV_OK, "%s", b.err.msg);
    cr_assert_eq(a.setup.n_configs, b.setup.n_configs);
    cr_assert_eq(a.setup.src->prompt_len, PROMPT);
    const replay_plan *p = &a.setup.plan;
    size_t n = (size_t)p->n_configs * p->n_layers * p->n_heads;
    for (size_t i = 0; i < n; i++)
        cr_assert(memcmp(&a.acc[i], &b.acc[i], sizeof a.acc[i]) == 0,
                  "sums %zu differ: mass %.17g vs %.17g", i, a.acc[i].mass, b.acc[i].mass);
    run_free(&a);
    run_free(&b);
}

Test(replay_trace, full_keeps_mass_1_on_an_f16_trace)
{
    write_trace(TRACE_F16, -1);
    char line[512];
    run r;
    snprintf(line, sizeof line, "sweep %s --policies full,recency --budgets 0.3", path);
    run_words(&r, line);
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    results_line x = results_line_of(&r.setup.plan, r.acc, 0, -1, -1);
    cr_assert_float_eq(x.mass, 1.0, 2e-3, "fp16 rows sum to 1 within their rounding");
    cr_assert_float_eq(x.overlap, 1.0, 1e-12);
    run_free(&r);
}

Test(replay_trace, an_incomplete_trace_replays_its_complete_steps_or_is_refused)
{
    write_trace(TRACE_F32, 100);
    char line[512];
    run r;
    snprintf(line, sizeof line, "sweep %s --policies recency --budgets 10", path);
    run_words(&r, line);
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    cr_assert_eq(r.setup.src->complete, 0);
    cr_assert_eq(r.setup.src->T, 100, "the steps appended before the abort");
    run_free(&r);
    snprintf(line, sizeof line, "sweep %s --policies recency --budgets 10 --strict", path);
    run_words(&r, line);
    cr_assert_eq(r.rc, KV_EFORMAT);
    cr_assert(strstr(r.err.msg, "incomplete"), "%s", r.err.msg);
    run_free(&r);
}

Test(replay_trace, the_json_summary_names_the_trace_by_its_sha256)
{
    write_trace(TRACE_F32, -1);
    char line[512], json[96], hex[65], text[8192] = "", want[100];
    run r;
    snprintf(line, sizeof line, "sweep %s --policies h2o --budgets 0.3", path);
    run_words(&r, line);
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    snprintf(json, sizeof json, "%s.json", path);
    results_context ctx = {r.setup.src, &r.setup.plan, r.acc, "kvsim replay", NULL};
    cr_assert_eq(results_write_files(&ctx, NULL, json, &r.err), KV_OK, "%s", r.err.msg);
    cr_assert_eq(sha256_file(path, hex, &r.err), KV_OK);
    FILE *f = fopen(json, "r");
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    remove(json);
    snprintf(want, sizeof want, "\"trace_sha256\": \"%s\"", hex);
    cr_assert(strstr(text, want), "%s", text);
    run_free(&r);
}

/* A trace may be called anything: its name is a quoted CSV field when it needs one. */
Test(replay_trace, an_odd_trace_name_is_quoted_in_the_csv)
{
    write_trace(TRACE_F32, -1);
    char odd[128], line[256], csv[160], text[256] = "";
    snprintf(odd, sizeof odd, "%s-a,\"b\".h5", path);
    cr_assert_eq(rename(path, odd), 0);
    run r;
    snprintf(line, sizeof line, "replay %s --policy h2o --budget 0.3 --metrics mass", odd);
    run_words(&r, line);
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    snprintf(csv, sizeof csv, "%s.csv", path);
    results_context ctx = {r.setup.src, &r.setup.plan, r.acc, "kvsim replay", NULL};
    cr_assert_eq(results_write_files(&ctx, csv, NULL, &r.err), KV_OK, "%s", r.err.msg);
    FILE *f = fopen(csv, "r");
    cr_assert(fgets(text, sizeof text, f) && fgets(text, sizeof text, f));   /* header, line 1 */
    fclose(f);
    char want[160];
    snprintf(want, sizeof want, "\"%s-a,\"\"b\"\".h5\",h2o,", strrchr(path, '/') + 1);
    cr_assert(!strncmp(text, want, strlen(want)), "line '%s' does not start with '%s'", text,
              want);
    remove(csv);
    run_free(&r);
    remove(odd);
}

/* Every row is checked before a policy sees it (invariant 1): an entry that is not a
 * probability, or a row that does not sum to 1, anywhere in the row (the vectorised part
 * or the tail), in f32 or f16, stops the replay with an error naming the row. */
Test(replay_trace, a_damaged_row_is_an_error_naming_it)
{
    static const struct { int at, add; float value; const char *says; } cases[] = {
        {5, 0, -0.25f, "an entry that is not a probability"},
        {40, 0, NAN, "an entry that is not a probability"},
        {68, 0, 2.0f, "an entry that is not a probability"},
        {69, 0, INFINITY, "an entry that is not a probability"},
        {17, 1, 0.0625f, "the row does not sum to 1"},
        {70, 1, 0.0625f, "the row does not sum to 1"},
    };
    static const trace_dtype dtypes[] = {TRACE_F32, TRACE_F16};
    for (size_t d = 0; d < 2; d++)
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            damage.at = cases[c].at, damage.add = cases[c].add, damage.value = cases[c].value;
            remove(path);
            write_trace(dtypes[d], -1);
            damage.at = -1;
            char line[512];
            run r;
            snprintf(line, sizeof line, "replay %s --policy h2o --budget 0.5", path);
            run_words(&r, line);
            cr_assert_eq(r.rc, KV_EFORMAT, "dtype %zu case %zu: rc %d (%s)", d, c, r.rc,
                         r.err.msg);
            cr_assert(strstr(r.err.msg, "layer 1 head 4 step 70") &&
                          strstr(r.err.msg, cases[c].says),
                      "dtype %zu case %zu: %s", d, c, r.err.msg);
            run_free(&r);
        }
}
