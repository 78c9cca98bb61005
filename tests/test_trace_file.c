/*
 * test_trace_file.c — the trace file of trace/trace_file.h, written and read back on
 * a small fake model: 3 layers of which 0 and 2 are recorded, 4 query heads of which
 * 0, 1 and 3 are recorded, 2 KV heads (GQA groups of 2), head_dim 8.  Rows are exact
 * softmaxes of deterministic queries and keys, so `kvtrace verify` can recompute
 * them.  Each test works in its own temporary directory, removed at the end.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "fp16.h"
#include "trace_file.h"

enum { L = 2, H = 3, K = 2, D = 8 };
static const int layers[L] = {0, 2}, heads[H] = {0, 1, 3}, kv_of[H] = {0, 0, 1};

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/kvtrace-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static int rm_entry(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s, (void)flag, (void)f;
    return remove(p);
}

static void remove_dir(void) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

TestSuite(trace_file, .init = make_dir, .fini = remove_dir);

static const char *path_in(const char *name)
{
    static char buf[8][128];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

/* ---------------------------------------------------------------- the fake model - */

static float query(int li, int hi, int t, int d) { return 2 * sinf(0.037f * (t + 1) * (d + 1) + li + 0.5f * hi); }
static float key(int li, int ki, int t, int d) { return cosf(0.023f * t * (d + 1) + 0.7f * li + ki); }
static float value(int li, int ki, int t, int d) { return (float)(li * 100 + ki * 10 + d) + 0.001f * t; }

/* The window of each recorded layer (0: none) and the softcap (0: none); the tests
 * of windows and caps set them. */
static int window[L];
static double softcap;

/* Row (li, hi, t) = softmax over keys lo..t of q.k / sqrt(D) (lo: the layer's window),
 * zeros before lo, into out (t+1,). */
static void attention_row(int li, int hi, int t, float *out)
{
    double s[512], mx = -INFINITY, sum = 0;
    const int lo = window[li] > 0 && t + 1 > window[li] ? t + 1 - window[li] : 0;
    for (int j = 0; j < lo; j++)
        s[j] = -INFINITY;
    for (int j = lo; j <= t; j++) {
        double dot = 0;
        for (int d = 0; d < D; d++)
            dot += (double)query(li, hi, t, d) * key(li, kv_of[hi], j, d);
        s[j] = dot / sqrt((double)D);
        s[j] = softcap > 0 ? softcap * tanh(s[j] / softcap) : s[j];
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = 0; j <= t; j++)
        sum += s[j] = exp(s[j] - mx);
    for (int j = 0; j <= t; j++)
        out[j] = (float)(s[j] / sum);
}

static trace_header fake_header(void)
{
    return (trace_header){
        .model_file = "fake.gguf", .model_sha256 = "0123456789abcdef", .architecture = "llama",
        .tensor_types = "F32:10", .n_layer = 3, .n_embd = 32, .n_head = 4, .n_head_kv = 2,
        .head_dim = D, .n_ctx = 1024, .vocab_size = 1000, .rope_base = 10000,
        .prompt = "héllo wörld", .chat = 1, .max_new_tokens = 40, .top_k = 40,
        .temperature = 0.7, .top_p = 0.9, .seed = 18446744073709551557ull, .device = "cpu",
        .threads = 2, .n_layers_rec = L, .layers = layers, .n_heads_rec = H, .heads = heads,
        .window = window, .attn_softcap = softcap,
    };
}

/* Storage for one step's pointers. */
typedef struct step_buf {
    float  rows[L * H][512], keys[L * K][D], values[L * K][D], queries[L * H][D];
    const float *row_p[L * H], *key_p[L * K], *value_p[L * K], *query_p[L * H];
    char   text[16];
} step_buf;

static trace_step fake_step(step_buf *b, int t)
{
    for (int li = 0; li < L; li++) {
        for (int hi = 0; hi < H; hi++) {
            attention_row(li, hi, t, b->rows[li * H + hi]);
            for (int d = 0; d < D; d++)
                b->queries[li * H + hi][d] = query(li, hi, t, d);
            b->row_p[li * H + hi] = b->rows[li * H + hi];
            b->query_p[li * H + hi] = b->queries[li * H + hi];
        }
        for (int ki = 0; ki < K; ki++) {
            for (int d = 0; d < D; d++) {
                b->keys[li * K + ki][d] = key(li, ki, t, d);
                b->values[li * K + ki][d] = value(li, ki, t, d);
            }
            b->key_p[li * K + ki] = b->keys[li * K + ki];
            b->value_p[li * K + ki] = b->values[li * K + ki];
        }
    }
    snprintf(b->text, sizeof b->text, t % 7 == 0 ? " " : "tok%d", t);
    return (trace_step){
        .token = 3 * t + 1, .text = b->text, .flags = (uint8_t)(t % 7 == 0 ? TRACE_TOKEN_SPACE : 0),
        .phase = (uint8_t)(t >= 20), .position = t, .logprob_next = NAN, .entropy_next = NAN,
        .rows = b->row_p, .keys = b->key_p, .values = b->value_p, .queries = b->query_p,
    };
}

typedef void (*tamper_fn)(int t, step_buf *b);

/* The rows of the pairs opt stores, in the writer's order, into out; NULL for none. */
static const float *const *stored_rows(const trace_options *opt, const step_buf *b,
                                       const float **out)
{
    if (!opt || opt->rows == TRACE_ROWS_ALL)
        return b->row_p;
    if (opt->rows == TRACE_ROWS_NONE)
        return NULL;
    int n = 0;
    for (int i = 0; i < opt->n_row_layers; i++)
        for (int j = 0; j < opt->n_row_heads; j++) {
            int li = 0, hi = 0;
            while (layers[li] != opt->row_layers[i])
                li++;
            while (heads[hi] != opt->row_heads[j])
                hi++;
            out[n++] = b->row_p[li * H + hi];
        }
    return out;
}

/* 1: write_fake hands the rows over already in f16 (trace_step.rows_f16). */
static int rows_as_f16;

/* Write T steps; `stop_at` >= 0 aborts after that many steps.  Returns the first
 * error of append or close. */
static int write_fake(const char *path, int T, const trace_options *opt, int stop_at,
                      tamper_fn tamper, kv_err *err)
{
    trace_header h = fake_header();
    trace_writer *w = trace_writer_open(path, &h, opt, err);
    if (!w)
        return err->code;
    step_buf *b = malloc(sizeof *b);
    int rc = KV_OK;
    for (int t = 0; t < T && rc == KV_OK; t++) {
        if (t == stop_at) {
            free(b);
            trace_writer_abort(w);
            return KV_OK;
        }
        trace_step s = fake_step(b, t);
        if (tamper)
            tamper(t, b);
        const float *stored[L * H];
        s.rows = stored_rows(opt, b, stored);
        static uint16_t half[L * H][512];
        const uint16_t *half_p[L * H];
        for (int r = 0; rows_as_f16 && s.rows && r < L * H; r++) {
            fp16_from_f32_n(s.rows[r], half[r], (size_t)t + 1);
            half_p[r] = half[r];
        }
        if (rows_as_f16 && s.rows)
            s.rows_f16 = half_p, s.rows = NULL;
        rc = trace_writer_append_step(w, &s, err);
        if (rc == KV_OK)
            rc = trace_writer_set_next(w, t, -0.5f - 0.01f * t, 1.0f + 0.001f * t, err);
    }
    free(b);
    if (rc < 0) {
        trace_writer_abort(w);
        return rc;
    }
    return trace_writer_close(w, NULL, err);
}

static trace_options opts(trace_dtype dtype, const char *compression)
{
    trace_options o = {.dtype = dtype, .qk_dtype = dtype, .record_queries = 1};
    cr_assert_eq(trace_compression_parse(compression, &o.compression, NULL), KV_OK);
    return o;
}

static trace_options rows_opts(trace_stored_rows rows)
{
    trace_options o = opts(TRACE_F32, "deflate:1");
    o.rows = rows;
    o.record_queries = 0;   /* rebuilt rows bring their queries anyway */
    return o;
}

static trace *open_ok(const char *path)
{
    kv_err err = {0};
    trace *tr = trace_open(path, &err);
    cr_assert_not_null(tr, "trace_open(%s): %s", path, err.msg);
    return tr;
}

static float round_f16(float x) { return fp16_to_f32(fp16_from_f32(x)); }

/* Every row, key, value and query equals what was written, after rounding to the
 * trace dtype; returns the number of values compared. */
static long check_contents(trace *tr, int T, trace_dtype dtype)
{
    float expect[512], out[TRACE_BATCH * 512], kb[TRACE_BATCH * D], vb[TRACE_BATCH * D];
    long n_cmp = 0;
    for (int li = 0; li < L; li++)
        for (int hi = 0; hi < H; hi++)
            for (int t0 = 0; t0 < T; t0 += TRACE_BATCH) {
                int n = T - t0 < TRACE_BATCH ? T - t0 : TRACE_BATCH;
                size_t width = (size_t)(t0 + n);
                kv_err err = {0};
                cr_assert_eq(trace_read_rows(tr, li, hi, t0, n, out, width, &err), 0, "%s",
                             err.msg);
                for (int i = 0; i < n; i++) {
                    int t = t0 + i;
                    attention_row(li, hi, t, expect);
                    for (size_t j = 0; j < width; j++, n_cmp++) {
                        float want = (int)j <= t ? expect[j] : 0.0f;
                        want = dtype == TRACE_F16 ? round_f16(want) : want;
                        cr_assert_eq(out[i * width + j], want, "l%d h%d t%d j%zu: %g != %g", li,
                                     hi, t, j, out[i * width + j], want);
                    }
                }
                cr_assert_eq(trace_read_kv(tr, li, kv_of[hi], t0, n, kb, vb, &err), 0, "%s",
                             err.msg);
                for (int i = 0; i < n * D; i++) {
                    float k = key(li, kv_of[hi], t0 + i / D, i % D);
                    float v = value(li, kv_of[hi], t0 + i / D, i % D);
                    cr_assert_eq(kb[i], dtype == TRACE_F16 ? round_f16(k) : k);
                    cr_assert_eq(vb[i], dtype == TRACE_F16 ? round_f16(v) : v);
                }
                cr_assert_eq(trace_read_queries(tr, li, hi, t0, n, kb, &err), 0, "%s", err.msg);
                for (int i = 0; i < n * D; i++) {
                    float q = query(li, hi, t0 + i / D, i % D);
                    cr_assert_eq(kb[i], dtype == TRACE_F16 ? round_f16(q) : q);
                }
            }
    return n_cmp;
}

/* All T rows in one call (several chunk rows) equal the rows read block by block. */
static long check_whole_reads(trace *tr, int T)
{
    static float all[200 * 200], block[TRACE_BATCH * 200];
    kv_err err = {0};
    cr_assert_leq(T, 200);
    cr_assert_eq(trace_read_rows(tr, 1, 2, 0, T, all, (size_t)T, &err), 0, "%s", err.msg);
    for (int t0 = 0; t0 < T; t0 += TRACE_BATCH) {
        int n = T - t0 < TRACE_BATCH ? T - t0 : TRACE_BATCH;
        cr_assert_eq(trace_read_rows(tr, 1, 2, t0, n, block, (size_t)T, &err), 0, "%s", err.msg);
        cr_assert_arr_eq(block, all + (size_t)t0 * T, (size_t)n * T * sizeof *block);
    }
    return (long)T * T;
}

/* The split read (fetch under the lock, decode anywhere) gives trace_read_rows' bytes
 * for chunk-aligned blocks, and HDF5's path serves unaligned ones through the same
 * calls; returns the number of values compared. */
static long check_split_reads(trace *tr, int T)
{
    static float a[TRACE_BATCH * 512], b[TRACE_BATCH * 512];
    trace_chunk_buf *buf = trace_chunk_buf_new();
    long n_cmp = 0;
    kv_err err = {0};
    for (int li = 0; li < L; li++)
        for (int hi = 0; hi < H; hi++)
            for (int t0 = 0; t0 < T; t0 += TRACE_BATCH - 1) {   /* aligned, then not */
                int n = T - t0 < TRACE_BATCH ? T - t0 : TRACE_BATCH;
                size_t width = (size_t)(t0 + n) + 5;   /* room right of the diagonal */
                memset(b, 0x7f, sizeof b);
                cr_assert_eq(trace_read_rows(tr, li, hi, t0, n, a, width, &err), 0, "%s",
                             err.msg);
                cr_assert_eq(trace_fetch_rows(tr, li, hi, t0, n, buf, &err), 0, "%s", err.msg);
                cr_assert_eq(trace_decode_rows(buf, b, width, &err), 0, "%s", err.msg);
                for (size_t i = 0; i < (size_t)n * width; i++, n_cmp++)
                    cr_assert_eq(a[i], b[i], "l%d h%d t0 %d: element %zu: %g != %g", li, hi,
                                 t0, i, a[i], b[i]);
            }
    trace_chunk_buf_free(buf);
    return n_cmp + check_whole_reads(tr, T);
}

static void check_tokens(trace *tr, int T)
{
    const trace_tokens *tk = trace_get_tokens(tr);
    char text[16];
    for (int t = 0; t < T; t++) {
        snprintf(text, sizeof text, t % 7 == 0 ? " " : "tok%d", t);
        cr_assert_eq(tk->id[t], 3 * t + 1);
        cr_assert_str_eq(tk->text[t], text);
        cr_assert_eq(tk->flags[t], t % 7 == 0 ? TRACE_TOKEN_SPACE : 0);
        cr_assert_eq(tk->phase[t], t >= 20);
        cr_assert_eq(tk->position[t], t);
        cr_assert_eq(tk->entropy_next[t], 1.0f + 0.001f * t);
        cr_assert_eq(tk->logprob_next[t], -0.5f - 0.01f * t,
                     "step %d: the writer stores what it was given, the last step too", t);
    }
}

/* ---------------------------------------------------------------- round trips ---- */

static void round_trip(trace_dtype dtype, const char *compression, int T)
{
    const char *p = path_in("rt.h5");
    trace_options o = opts(dtype, compression);
    kv_err err = {0};
    o.force = 1;
    cr_assert_eq(write_fake(p, T, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    const trace_meta *m = trace_get_meta(tr);
    cr_assert_eq(m->steps, T);
    cr_assert_eq(m->extent, T);
    cr_assert_eq(m->complete, 1);
    cr_assert_eq(m->options.dtype, dtype);
    cr_assert_eq(m->options.compression.codec, o.compression.codec);
    cr_assert_eq(m->options.compression.level, o.compression.level);
    cr_assert_eq(m->options.record_queries, 1);
    cr_assert(check_contents(tr, T, dtype) > 0);
    cr_assert(check_split_reads(tr, T) > 0);
    check_tokens(tr, T);
    trace_close(tr);
}

Test(trace_file, round_trip_f32_is_exact) { round_trip(TRACE_F32, "none", 150); }

Test(trace_file, round_trip_f16_equals_the_half_rounded_values) { round_trip(TRACE_F16, "none", 150); }

/* Rows converted by the caller (as the recorder does) give the same trace. */
Test(trace_file, round_trip_of_rows_given_in_f16)
{
    rows_as_f16 = 1;
    round_trip(TRACE_F16, "none", 150);
    trace_options o = opts(TRACE_F32, "none");
    kv_err err = {0};
    o.force = 1;
    cr_assert_eq(write_fake(path_in("rt32.h5"), 3, &o, -1, NULL, &err), KV_EUSAGE);
    cr_assert(strstr(err.msg, "f16"), "%s", err.msg);
    rows_as_f16 = 0;
}

Test(trace_file, round_trip_with_deflate) { round_trip(TRACE_F16, "deflate:1", 130); round_trip(TRACE_F32, "deflate:9", 70); }

Test(trace_file, round_trip_with_lz4_or_a_clear_error)
{
    if (H5Zfilter_avail(32004) > 0) {
        round_trip(TRACE_F16, "lz4", 130);
        return;
    }
    trace_options o = opts(TRACE_F16, "lz4");
    kv_err err = {0};
    cr_assert_eq(write_fake(path_in("lz4.h5"), 10, &o, -1, NULL, &err), KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "hdf5-filter-plugin"), "%s", err.msg);
}

Test(trace_file, header_round_trips)
{
    const char *p = path_in("hdr.h5");
    trace_options o = opts(TRACE_F16, NULL);
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 3, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    const trace_header *h = &trace_get_meta(tr)->header;
    trace_header w = fake_header();
    cr_assert_str_eq(h->model_file, w.model_file);
    cr_assert_str_eq(h->prompt, w.prompt);
    cr_assert_str_eq(h->tool_version, KV_VERSION);
    cr_assert_eq(h->seed, w.seed);
    cr_assert_eq(h->n_head_kv, 2);
    cr_assert_eq(h->temperature, 0.7);
    cr_assert_eq(h->attn_scale, 1 / sqrt(8.0));
    cr_assert_eq(strlen(h->created), 20, "ISO-8601 UTC: %s", h->created);
    cr_assert_eq(trace_get_meta(tr)->options.compression.codec, TRACE_CODEC_DEFLATE);
    cr_assert_eq(trace_layer_index(tr, 2), 1);
    cr_assert_eq(trace_layer_index(tr, 1), -1);
    cr_assert_eq(trace_head_index(tr, 3), 2);
    cr_assert_eq(trace_kv_index_of_head(tr, 2), 1, "query head 3 uses KV head 1");
    cr_assert_eq(trace_get_meta(tr)->n_kv_heads_rec, K);
    trace_close(tr);
}

/* Invariant (3): chunks hold 64 rows of one head; chunks above the diagonal are
 * never allocated. */
Test(trace_file, chunks_hold_one_head_and_skip_the_upper_triangle)
{
    const char *p = path_in("chunks.h5");
    trace_options o = opts(TRACE_F16, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 300, &o, -1, NULL, &err), 0, "%s", err.msg);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "attn/probs", H5P_DEFAULT), k = H5Dopen2(f, "kv/keys", H5P_DEFAULT);
    hid_t dc = H5Dget_create_plist(d), kc = H5Dget_create_plist(k), s = H5Dget_space(d);
    hsize_t chunk[4], n_chunks = 0;
    cr_assert_eq(H5Pget_chunk(dc, 4, chunk), 4);
    cr_assert(chunk[0] == 1 && chunk[1] == 1 && chunk[2] == 64 && chunk[3] == 256);
    cr_assert_eq(H5Pget_chunk(kc, 4, chunk), 4);
    cr_assert(chunk[0] == 1 && chunk[1] == 1 && chunk[2] == 64 && chunk[3] == D);
    H5Dget_num_chunks(d, s, &n_chunks);
    /* rows 0..255 need column chunk 0 only; rows 256..299 need chunks 0 and 1 */
    cr_assert_eq(n_chunks, (hsize_t)(L * H * (4 + 2)), "%llu chunks", (unsigned long long)n_chunks);
    H5Sclose(s);
    H5Pclose(kc);
    H5Pclose(dc);
    H5Dclose(k);
    H5Dclose(d);
    H5Fclose(f);
}

/* ---------------------------------------------------------------- completeness --- */

/* An abort before any step reached the disk leaves NAME as it was: no empty trace
 * replaces a good one (an interrupted re-record), and none appears where there was none. */
Test(trace_file, an_abort_before_the_first_step_leaves_the_file_as_it_was)
{
    const char *p = path_in("abort.h5");
    trace_options o = opts(TRACE_F32, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 150, &o, 0, NULL, &err), 0);
    cr_assert_eq(access(p, F_OK), -1, "an aborted empty recording left %s", p);
    cr_assert_eq(write_fake(p, 5, &o, -1, NULL, &err), 0, "%s", err.msg);
    o.force = 1;   /* a re-record over it, interrupted at once */
    cr_assert_eq(write_fake(p, 150, &o, 0, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->complete, 1, "the earlier trace is intact");
    cr_assert_eq(trace_get_meta(tr)->steps, 5);
    trace_close(tr);
}

Test(trace_file, abort_mid_way_keeps_every_appended_step)
{
    const char *p = path_in("abort.h5");
    trace_options o = opts(TRACE_F32, "deflate:1");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 300, &o, 150, NULL, &err), 0);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->complete, 0);
    cr_assert_eq(trace_get_meta(tr)->steps, 150);
    check_contents(tr, 150, TRACE_F32);
    trace_close(tr);
    char out[4096] = "";
    FILE *mem = fmemopen(out, sizeof out, "w");
    cr_assert_eq(trace_info_print(p, mem, &err), 0, "%s", err.msg);
    fclose(mem);
    cr_assert(strstr(out, "truncated at step 150"), "%s", out);
}

Test(trace_file, info_reports_a_complete_trace)
{
    const char *p = path_in("info.h5");
    trace_options o = opts(TRACE_F16, NULL);
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 64, &o, -1, NULL, &err), 0, "%s", err.msg);
    char out[4096] = "";
    FILE *mem = fmemopen(out, sizeof out, "w");
    cr_assert_eq(trace_info_print(p, mem, &err), 0, "%s", err.msg);
    fclose(mem);
    cr_assert(strstr(out, "T = 64 (20 prompt, 44 generated), complete"), "%s", out);
    cr_assert(strstr(out, "f16, deflate:1"), "%s", out);
    cr_assert(strstr(out, "ratio"), "%s", out);
}

/* ---------------------------------------------------------------- writer faults -- */

Test(trace_file, refuses_to_clobber_without_force)
{
    const char *p = path_in("exists.h5");
    FILE *f = fopen(p, "w");
    fputs("precious", f);
    fclose(f);
    trace_options o = opts(TRACE_F16, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 5, &o, -1, NULL, &err), KV_EEXIST);
    cr_assert(strstr(err.msg, "--force") && strstr(err.msg, p), "%s", err.msg);
    o.force = 1;
    cr_assert_eq(write_fake(p, 5, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace_close(open_ok(p));
}

Test(trace_file, unwritable_path_names_the_reason)
{
    const char *p = path_in("no/such/dir/t.h5");
    trace_options o = opts(TRACE_F16, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 5, &o, -1, NULL, &err), KV_EIO);
    cr_assert(strstr(err.msg, p) && strstr(err.msg, "No such file or directory"), "%s",
              err.msg);
}

Test(trace_file, selection_out_of_range_is_refused)
{
    trace_header h = fake_header();
    int bad_layers[2] = {0, 3}, bad_heads[2] = {1, 1};
    kv_err err = {0};
    h.layers = bad_layers;
    cr_assert_null(trace_writer_open(path_in("sel.h5"), &h, NULL, &err));
    cr_assert_eq(err.code, KV_ERANGE);
    cr_assert(strstr(err.msg, "layer 3 out of range"), "%s", err.msg);
    h = fake_header();
    h.n_heads_rec = 2;
    h.heads = bad_heads;
    cr_assert_null(trace_writer_open(path_in("sel.h5"), &h, NULL, &err));
    cr_assert(strstr(err.msg, "strictly increasing"), "%s", err.msg);
}

Test(trace_file, simulated_full_disk_fails_and_leaves_the_trace_incomplete)
{
    const char *p = path_in("full.h5");
    trace_options o = opts(TRACE_F16, "none");
    kv_err err = {0};
    setenv("KV_TEST_WRITE_CAP_BYTES", "200000", 1);
    int rc = write_fake(p, 400, &o, -1, NULL, &err);
    unsetenv("KV_TEST_WRITE_CAP_BYTES");
    cr_assert_eq(rc, KV_EIO);
    cr_assert(strstr(err.msg, "no space left on device (simulated by KV_TEST_WRITE_CAP_BYTES)"),
              "%s", err.msg);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->complete, 0);
    cr_assert(trace_get_meta(tr)->steps < 400);
    cr_assert_eq(trace_get_meta(tr)->steps % TRACE_BATCH, 0, "whole batches only");
    check_contents(tr, (int)trace_get_meta(tr)->steps, TRACE_F16);
    trace_close(tr);
}

Test(trace_file, set_next_applies_to_the_last_step_only)
{
    trace_header h = fake_header();
    kv_err err = {0};
    trace_writer *w = trace_writer_open(path_in("next.h5"), &h, NULL, &err);
    cr_assert_not_null(w, "%s", err.msg);
    step_buf *b = malloc(sizeof *b);
    for (int t = 0; t < 3; t++) {
        trace_step s = fake_step(b, t);
        cr_assert_eq(trace_writer_append_step(w, &s, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(trace_writer_set_next(w, 1, -1, 1, &err), KV_ERANGE);
    cr_assert_eq(trace_writer_set_next(w, 2, -1, 1, &err), 0);
    cr_assert_eq(trace_writer_steps(w), 3);
    free(b);
    cr_assert_eq(trace_writer_close(w, NULL, &err), 0, "%s", err.msg);
}

/* ---------------------------------------------------------------- reader faults -- */

static void expect_open_error(const char *p, int code, const char *text)
{
    kv_err err = {0};
    trace *tr = trace_open(p, &err);
    cr_assert_null(tr);
    cr_assert_eq(err.code, code, "%s: %s", kv_err_name(err.code), err.msg);
    cr_assert(strstr(err.msg, text), "expected '%s' in: %s", text, err.msg);
}

Test(trace_file, foreign_hdf5_file_is_not_a_trace)
{
    const char *p = path_in("foreign.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 4;
    hid_t s = H5Screate_simple(1, &n, NULL);
    H5Dclose(H5Dcreate2(f, "data", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(s);
    H5Fclose(f);
    expect_open_error(p, KV_EFORMAT, "not a kvtrace file");
}

/* Rewrite one integer root attribute of a finished trace. */
static void set_root_attr(const char *p, const char *name, int64_t v)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
    H5Fclose(f);
}

static const char *finished_trace(const char *name, int T)
{
    const char *p = path_in(name);
    trace_options o = opts(TRACE_F16, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, T, &o, -1, NULL, &err), 0, "%s", err.msg);
    return p;
}

Test(trace_file, newer_format_version_is_refused_clearly)
{
    const char *p = finished_trace("v3.h5", 10);
    set_root_attr(p, "format_version", 3);
    expect_open_error(p, KV_EUNSUPPORTED,
                      "format version 3 is newer than this kvsim supports (2)");
}

Test(trace_file, shapes_are_checked_against_the_header)
{
    const char *p = finished_trace("shape.h5", 10);
    set_root_attr(p, "head_dim", 16);
    expect_open_error(p, KV_EFORMAT, "/kv/keys");
}

Test(trace_file, truncated_and_non_hdf5_files_are_refused)
{
    const char *p = finished_trace("cut.h5", 100);
    struct stat st;
    stat(p, &st);
    cr_assert_eq(truncate(p, st.st_size / 2), 0);
    expect_open_error(p, KV_EFORMAT, "damaged or truncated HDF5 file");
    FILE *f = fopen(path_in("text.h5"), "w");
    fputs("hello, not HDF5\n", f);
    fclose(f);
    expect_open_error(path_in("text.h5"), KV_EFORMAT, "not an HDF5 file");
    expect_open_error(path_in("missing.h5"), KV_EIO, "No such file");
}

Test(trace_file, read_rows_rejects_indices_outside_the_trace)
{
    trace *tr = open_ok(finished_trace("range.h5", 100));
    float out[TRACE_BATCH * 128];
    kv_err err = {0};
    cr_assert_eq(trace_read_rows(tr, L, 0, 0, 1, out, 128, &err), KV_ERANGE);
    cr_assert(strstr(err.msg, "layer index 2 out of range"), "%s", err.msg);
    cr_assert_eq(trace_read_rows(tr, 0, -1, 0, 1, out, 128, &err), KV_ERANGE);
    cr_assert_eq(trace_read_rows(tr, 0, 0, 64, 64, out, 128, &err), KV_ERANGE);
    cr_assert(strstr(err.msg, "steps 64..127 out of range"), "%s", err.msg);
    cr_assert_eq(trace_read_rows(tr, 0, 0, 0, 64, out, 63, &err), KV_ERANGE);
    cr_assert_eq(trace_read_kv(tr, 0, K, 0, 1, out, NULL, &err), KV_ERANGE);
    /* a width beyond T is zero-filled */
    cr_assert_eq(trace_read_rows(tr, 0, 0, 64, 36, out, 128, &err), 0, "%s", err.msg);
    for (int i = 0; i < 36; i++)
        for (int j = 100; j < 128; j++)
            cr_assert_eq(out[i * 128 + j], 0.0f);
    trace_close(tr);
}

/* Overwrite 64 bytes in the middle of the stored chunk at addr (size bytes). */
static void overwrite_chunk(const char *p, haddr_t addr, hsize_t size)
{
    FILE *fp = fopen(p, "r+b");
    char junk[64];
    memset(junk, 0xa5, sizeof junk);
    cr_assert_eq(fseek(fp, (long)(addr + size / 2), SEEK_SET), 0);
    cr_assert_eq(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
    fclose(fp);
}

/* Overwrite the middle of the stored chunk of rows 64.. of (layer 0, head 0). */
static void damage_chunk(const char *p)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "attn/probs", H5P_DEFAULT);
    hsize_t at[4] = {0, 0, 64, 0}, size = 0;
    haddr_t addr = 0;
    unsigned mask = 0;
    cr_assert_geq(H5Dget_chunk_info_by_coord(d, at, &mask, &addr, &size), 0);
    H5Dclose(d);
    H5Fclose(f);
    overwrite_chunk(p, addr, size);
}

Test(trace_file, a_damaged_compressed_chunk_is_an_error_not_garbage)
{
    const char *p = path_in("bad.h5");
    trace_options o = opts(TRACE_F16, "deflate:1");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 100, &o, -1, NULL, &err), 0, "%s", err.msg);
    damage_chunk(p);
    trace *tr = open_ok(p);
    float out[TRACE_BATCH * 100];
    cr_assert_eq(trace_read_rows(tr, 0, 0, 0, 64, out, 64, &err), 0, "%s", err.msg);
    cr_assert_eq(trace_read_rows(tr, 0, 0, 64, 36, out, 100, &err), KV_EFORMAT);
    cr_assert(strstr(err.msg, "damaged chunk of steps 64"), "%s", err.msg);
    trace_close(tr);
}

/* Replace the chunk at `at` of dataset `name` with a valid deflate stream of only
 * 256 zero bytes (a chunk here is 1024), stored with filter mask `mask`: libhdf5 1.10's own read copied a
 * whole chunk out of it, past its buffer (the fuzzer's tests/fixtures/
 * fuzz_hdf5_overread.h5). */
static void store_short_chunk(const char *p, const char *name, const hsize_t *at,
                              uint32_t mask)
{
    unsigned char plain[256] = {0}, packed[512];
    uLongf packed_len = sizeof packed;
    cr_assert_eq(compress2(packed, &packed_len, plain, sizeof plain, 1), Z_OK);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite_chunk(d, H5P_DEFAULT, mask, at, packed_len, packed), 0);
    H5Dclose(d);
    H5Fclose(f);
}

Test(trace_file, a_chunk_that_decodes_short_is_an_error_not_an_overread)
{
    const char *p = path_in("short.h5");
    trace_options o = opts(TRACE_F16, "deflate:1");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 100, &o, -1, NULL, &err), 0, "%s", err.msg);
    const hsize_t key_chunk[4] = {1, 1, 64, 0};
    store_short_chunk(p, "kv/keys", key_chunk, 0);
    trace *tr = open_ok(p);
    float keys[100 * 64];
    cr_assert_eq(trace_read_kv(tr, 1, 0, 0, 64, keys, NULL, &err), KV_OK, "%s", err.msg);
    cr_assert_eq(trace_read_kv(tr, 1, 1, 60, 10, keys, NULL, &err), KV_EFORMAT);
    cr_assert(strstr(err.msg, "/kv/keys: damaged chunk"), "%s", err.msg);
    trace_close(tr);

    /* the compressor marked as skipped: the stored bytes are then the chunk itself,
     * and too few of them */
    store_short_chunk(p, "kv/keys", key_chunk, 2);
    tr = open_ok(p);
    cr_assert_eq(trace_read_kv(tr, 1, 1, 64, 1, keys, NULL, &err), KV_EFORMAT);
    trace_close(tr);

    /* a 1-D dataset: read whole when the trace opens */
    const hsize_t first[1] = {0};
    store_short_chunk(p, "tokens/position", first, 0);
    expect_open_error(p, KV_EFORMAT, "/tokens/position: damaged chunk");
}

/* ---------------------------------------------------------------- kvtrace verify - */

static int run_verify(const char *p)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/kvtrace verify %s >/dev/null 2>&1",
             getenv("KV_BIN") ? getenv("KV_BIN") : "bin", p ? p : "");
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(trace_file, verify_accepts_good_traces)
{
    cr_assert_eq(run_verify(finished_trace("good16.h5", 130)), 0);
    trace_options o = opts(TRACE_F32, "deflate:1");
    kv_err err = {0};
    cr_assert_eq(write_fake(path_in("good32.h5"), 70, &o, -1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(run_verify(path_in("good32.h5")), 0);
}

static void halve_row_40(int t, step_buf *b)
{
    if (t == 40)
        for (int j = 0; j <= t; j++)
            b->rows[1][j] *= 0.5f;
}

static void scale_queries_at_50(int t, step_buf *b)
{
    if (t == 50)
        for (int d = 0; d < D; d++)
            b->queries[0][d] *= 3;
}

static void verify_fails_with(tamper_fn tamper, const char *name)
{
    trace_options o = opts(TRACE_F16, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(path_in(name), 80, &o, -1, tamper, &err), 0, "%s", err.msg);
    cr_assert_eq(run_verify(path_in(name)), 1);
}

Test(trace_file, verify_rejects_a_row_that_does_not_sum_to_one)
{
    verify_fails_with(halve_row_40, "halved.h5");
}

static void nan_in_row_20(int t, step_buf *b)
{
    if (t == 20)
        b->rows[2][3] = NAN;
}

static void negative_in_row_30(int t, step_buf *b)
{
    if (t == 30) {
        b->rows[0][0] -= 0.5f;
        b->rows[0][1] += 0.5f;   /* still sums to 1 */
    }
}

static void nan_query_at_10(int t, step_buf *b)
{
    if (t == 10)
        b->queries[4][2] = NAN;
}

/* `kvsim replay` of path: its exit status, stderr in out. */
static int run_replay(const char *path, char *out, size_t len)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/kvsim replay %s --policy h2o --budget 0.5 -o /dev/null "
             "--json /dev/null 2>&1", getenv("KV_BIN") ? getenv("KV_BIN") : "bin", path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Rows holding NaN, negative or unnormalised values are an error naming the row, never
 * replayed (they used to replay with exit 0 and a JSON of bare inf and nan); a NaN query
 * of a row-free trace likewise. */
Test(trace_file, replay_refuses_damaged_rows_stored_or_rebuilt)
{
    const struct { tamper_fn tamper; trace_stored_rows rows; const char *name, *step; } cases[] = {
        {nan_in_row_20, TRACE_ROWS_ALL, "nan.h5", "step 20"},
        {negative_in_row_30, TRACE_ROWS_ALL, "neg.h5", "step 30"},
        {halve_row_40, TRACE_ROWS_ALL, "half.h5", "step 40"},
        {nan_query_at_10, TRACE_ROWS_NONE, "nanq.h5", "step 10"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        trace_options o = rows_opts(cases[i].rows);
        kv_err err = {0};
        char out[4096];
        cr_assert_eq(write_fake(path_in(cases[i].name), 80, &o, -1, cases[i].tamper, &err), 0,
                     "%s", err.msg);
        cr_assert_eq(run_replay(path_in(cases[i].name), out, sizeof out), 1, "%s: %s",
                     cases[i].name, out);
        cr_assert(strstr(out, "damaged") && strstr(out, cases[i].step), "%s: %s",
                  cases[i].name, out);
    }
}

Test(trace_file, verify_rejects_rows_that_disagree_with_queries_and_keys)
{
    verify_fails_with(scale_queries_at_50, "queries.h5");
}

Test(trace_file, verify_rejects_an_entry_above_the_diagonal)
{
    const char *p = finished_trace("upper.h5", 80);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "attn/probs", H5P_DEFAULT), s = H5Dget_space(d);
    hsize_t at[4] = {0, 1, 3, 10}, one[1] = {1};
    hid_t m = H5Screate_simple(1, one, NULL);
    float v = 0.25f;
    H5Sselect_elements(s, H5S_SELECT_SET, 1, at);
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, m, s, H5P_DEFAULT, &v), 0);
    H5Sclose(m);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    cr_assert_eq(run_verify(p), 1);
}

Test(trace_file, verify_usage_and_unreadable_files)
{
    cr_assert_eq(run_verify(NULL), 2);
    cr_assert_eq(run_verify(path_in("missing.h5")), 1);
}

/* ---------------------------------------------------------------- rebuilt rows --- */

/* Rows of (li, hi) through trace_rows against the double-precision reference: stored
 * f32 rows exactly, rebuilt ones within the f32 arithmetic of the rebuild. */
static double max_row_error(trace *tr, int li, int hi, int T)
{
    float expect[512], out[TRACE_BATCH * 512];
    double worst = 0;
    for (int t0 = 0; t0 < T; t0 += TRACE_BATCH) {
        int n = T - t0 < TRACE_BATCH ? T - t0 : TRACE_BATCH;
        size_t width = (size_t)(t0 + n);
        kv_err err = {0};
        cr_assert_eq(trace_rows(tr, li, hi, t0, n, out, width, &err), 0, "%s", err.msg);
        for (int i = 0; i < n; i++) {
            attention_row(li, hi, t0 + i, expect);
            for (size_t j = 0; j < width; j++) {
                double want = (int)j <= t0 + i ? expect[j] : 0;
                double d = fabs(out[i * width + j] - want);
                worst = d > worst ? d : worst;
            }
        }
    }
    return worst;
}


Test(trace_file, a_row_free_trace_rebuilds_every_row_from_queries_and_keys)
{
    const char *p = path_in("free.h5");
    trace_options o = rows_opts(TRACE_ROWS_NONE);
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 150, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    const trace_meta *m = trace_get_meta(tr);
    cr_assert_eq(m->options.rows, TRACE_ROWS_NONE);
    cr_assert_eq(m->options.record_queries, 1);
    for (int li = 0; li < L; li++)
        for (int hi = 0; hi < H; hi++) {
            cr_assert_not(trace_rows_stored(tr, li, hi));
            double e = max_row_error(tr, li, hi, 150);
            cr_assert_leq(e, 1e-6, "layer %d head %d: rebuilt rows off by %g", li, hi, e);
        }
    float out[64 * 64];
    cr_assert_eq(trace_read_rows(tr, 0, 0, 0, 64, out, 64, &err), KV_ENOTFOUND);
    cr_assert(strstr(err.msg, "not stored") && strstr(err.msg, "/attn/probs"), "%s", err.msg);
    trace_storage st;
    cr_assert_eq(trace_get_storage(tr, &st, &err), 0);
    cr_assert_eq(st.probs_elements, 0);
    cr_assert_eq(st.row_elements, (uint64_t)L * H * 150 * 151 / 2);
    trace_close(tr);
    cr_assert_eq(run_verify(p), 0);
}

Test(trace_file, some_rows_stored_and_the_others_rebuilt)
{
    const int rl[1] = {2}, rh[2] = {1, 3};
    const char *p = path_in("some.h5");
    trace_options o = rows_opts(TRACE_ROWS_SOME);
    o.n_row_layers = 1, o.row_layers = rl, o.n_row_heads = 2, o.row_heads = rh;
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 100, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->options.rows, TRACE_ROWS_SOME);
    for (int li = 0; li < L; li++)
        for (int hi = 0; hi < H; hi++) {
            int stored = li == 1 && hi >= 1;   /* layer 2, heads 1 and 3 */
            cr_assert_eq(trace_rows_stored(tr, li, hi), stored, "l%d h%d", li, hi);
            double e = max_row_error(tr, li, hi, 100);
            cr_assert_leq(e, stored ? 0 : 1e-6, "l%d h%d off by %g", li, hi, e);
        }
    trace_close(tr);
    int bad_layer[1] = {1};
    o.row_layers = bad_layer;
    cr_assert_eq(write_fake(path_in("bad.h5"), 3, &o, -1, NULL, &err), KV_ERANGE);
    cr_assert(strstr(err.msg, "layer 1 is not recorded"), "%s", err.msg);
}

Test(trace_file, a_window_masks_rebuilt_rows_and_verify_checks_it)
{
    window[1] = 5;   /* model layer 2 sees its last 5 keys */
    const char *p = path_in("window.h5");
    trace_options o = rows_opts(TRACE_ROWS_NONE);
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 90, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->header.window[0], 0);
    cr_assert_eq(trace_get_meta(tr)->header.window[1], 5);
    for (int hi = 0; hi < H; hi++)
        cr_assert_leq(max_row_error(tr, 1, hi, 90), 1e-6);
    trace_close(tr);
    cr_assert_eq(run_verify(p), 0);
    window[1] = 0;
}

/* ---------------------------------------------------------------- refusals ------- */

static void delete_root_attr_and_put(const char *p, const char *name, hid_t type,
                                     const void *v)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Adelete(f, name), 0);
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Awrite(a, type, v), 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Fclose(f);
}

static void put_fixed_string(const char *p, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    delete_root_attr_and_put(p, name, t, v);
    H5Tclose(t);
}

Test(trace_file, a_softcap_is_applied_to_rebuilt_rows)
{
    softcap = 2.0;   /* the fake scores reach about 4: the cap bends them */
    const char *p = path_in("cap.h5");
    trace_options o = rows_opts(TRACE_ROWS_NONE);
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 70, &o, -1, NULL, &err), 0, "%s", err.msg);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->header.attn_softcap, 2.0);
    for (int hi = 0; hi < H; hi++)
        cr_assert_leq(max_row_error(tr, 0, hi, 70), 1e-6);
    trace_close(tr);
    softcap = 0;
}

Test(trace_file, unknown_masks_caps_and_old_or_variable_length_data_are_refused)
{
    trace_options o = rows_opts(TRACE_ROWS_NONE);
    kv_err err = {0};
    const char *p = path_in("mask.h5");
    cr_assert_eq(write_fake(p, 10, &o, -1, NULL, &err), 0, "%s", err.msg);
    put_fixed_string(p, "mask", "alibi");
    expect_open_error(p, KV_EUNSUPPORTED, "mask 'alibi' is unknown");

    p = path_in("cap.h5");
    cr_assert_eq(write_fake(p, 10, &o, -1, NULL, &err), 0, "%s", err.msg);
    double cap = -1;
    delete_root_attr_and_put(p, "attn_softcap", H5T_NATIVE_DOUBLE, &cap);
    expect_open_error(p, KV_EFORMAT, "attn_softcap -1");

    p = path_in("noq.h5");
    cr_assert_eq(write_fake(p, 10, &o, -1, NULL, &err), 0, "%s", err.msg);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Ldelete(f, "kv/queries", H5P_DEFAULT), 0);
    H5Fclose(f);
    expect_open_error(p, KV_EFORMAT, "/kv/queries is missing");

    p = finished_trace("v1.h5", 10);
    set_root_attr(p, "format_version", 1);
    expect_open_error(p, KV_EUNSUPPORTED, "a format 1 trace");

    p = finished_trace("vlen.h5", 10);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    const char *arch = "llama";
    delete_root_attr_and_put(p, "architecture", t, &arch);
    H5Tclose(t);
    expect_open_error(p, KV_EFORMAT, "'architecture'");
}

/* ---------------------------------------------------------------- the file's life */

/* A second writer of the same trace is refused while the first holds it, touches
 * neither file, and the first finishes a whole trace. */
Test(trace_file, a_second_writer_is_refused_and_touches_nothing)
{
    const char *p = path_in("two.h5");
    trace_options o = opts(TRACE_F16, "none");
    trace_header h = fake_header();
    kv_err err = {0};
    trace_writer *a = trace_writer_open(p, &h, &o, &err);
    cr_assert_not_null(a, "%s", err.msg);
    step_buf *b = malloc(sizeof *b);
    for (int t = 0; t < 70; t++) {
        trace_step s = fake_step(b, t);
        cr_assert_eq(trace_writer_append_step(a, &s, &err), 0, "%s", err.msg);
    }
    o.force = 1;
    cr_assert_null(trace_writer_open(p, &h, &o, &err));
    cr_assert_eq(err.code, KV_EEXIST);
    cr_assert(strstr(err.msg, "another kvtrace is recording"), "%s", err.msg);
    cr_assert_eq(trace_writer_close(a, NULL, &err), 0, "%s", err.msg);
    free(b);
    trace *tr = open_ok(p);
    cr_assert_eq(trace_get_meta(tr)->steps, 70);
    cr_assert_eq(trace_get_meta(tr)->complete, 1);
    trace_close(tr);
    char partial[160];
    snprintf(partial, sizeof partial, "%s.partial", p);
    cr_assert_eq(access(partial, F_OK), -1);
}

/* Steps on disk in `p` as a reader sees them now; -1 while it does not open. */
static int64_t steps_seen(const char *p)
{
    kv_err err = {0};
    trace *tr = trace_open(p, &err);
    int64_t n = tr ? trace_get_meta(tr)->steps : -1;
    trace_close(tr);
    return n;
}

/* A writer killed (SIGKILL) after two batches: a reader followed the file while it
 * grew, and afterwards NAME.partial opens with both batches intact; a new writer keeps
 * it unless forced. */
Test(trace_file, a_killed_writer_leaves_a_partial_trace_a_reader_can_follow)
{
    const char *p = path_in("killed.h5");
    char partial[160];
    snprintf(partial, sizeof partial, "%s.partial", p);
    int hold[2];
    cr_assert_eq(pipe(hold), 0);
    pid_t pid = fork();
    if (pid == 0) {   /* the writer: 129 steps hand over two batches, then it waits */
        trace_options o = opts(TRACE_F32, "deflate:1");
        trace_header h = fake_header();
        kv_err err = {0};
        trace_writer *w = trace_writer_open(p, &h, &o, &err);
        step_buf *b = malloc(sizeof *b);
        for (int t = 0; w && t < 129; t++) {
            trace_step s = fake_step(b, t);
            trace_writer_append_step(w, &s, &err);
        }
        char c;
        (void)!read(hold[0], &c, 1);   /* until the parent kills it */
        _exit(3);
    }
    close(hold[0]);
    int64_t seen = -1;
    while ((seen = steps_seen(partial)) < 128)   /* an event: the file says 128 */
        cr_assert(seen <= 128 && waitpid(pid, NULL, WNOHANG) == 0, "the writer died early");
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    close(hold[1]);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    cr_assert_eq(access(p, F_OK), -1, "NAME appears only when the writer finishes");
    trace *tr = open_ok(partial);
    cr_assert_eq(trace_get_meta(tr)->steps, 128);
    cr_assert_eq(trace_get_meta(tr)->complete, 0);
    cr_assert(check_contents(tr, 128, TRACE_F32) > 0);
    trace_close(tr);
    trace_options o = opts(TRACE_F32, "none");
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 5, &o, -1, NULL, &err), KV_EEXIST);
    cr_assert(strstr(err.msg, "did not finish"), "%s", err.msg);
    o.force = 1;
    cr_assert_eq(write_fake(p, 5, &o, -1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(access(partial, F_OK), -1);
    cr_assert_eq(steps_seen(p), 5);
}

/* Links are written through, other kinds of file refused, a replaced file's mode kept. */
Test(trace_file, the_output_rule_links_fifos_and_modes)
{
    trace_options o = opts(TRACE_F16, "none");
    o.force = 1;
    kv_err err = {0};
    const char *target = path_in("target.h5"), *link = path_in("link.h5");
    cr_assert_eq(write_fake(target, 3, &o, -1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(chmod(target, 0640), 0);
    cr_assert_eq(symlink("target.h5", link), 0);
    cr_assert_eq(write_fake(link, 7, &o, -1, NULL, &err), 0, "%s", err.msg);
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_assert(S_ISLNK(st.st_mode), "the link stays a link");
    cr_assert_eq(stat(target, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640, "mode %o", st.st_mode & 0777);
    cr_assert_eq(steps_seen(target), 7);
    const char *fifo = path_in("fifo.h5");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(write_fake(fifo, 3, &o, -1, NULL, &err), KV_EIO);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
}

/* `kvsim replay --follow NAME` started while NAME.partial is being written waits for the
 * writer (it holds the partial file's lock) and replays the whole trace once NAME is in
 * place; with the writer killed instead, it replays the partial trace. */
static void follow_case(int kill_writer)
{
    const char *p = path_in("followed.h5"), *csv = path_in("followed.csv");
    int hold[2];   /* close-on-exec: the follower must not hold the writer's pipe open */
    cr_assert_eq(pipe2(hold, O_CLOEXEC), 0);
    pid_t writer = fork();
    if (writer == 0) {   /* 129 steps, wait for the parent, then 71 more and close */
        close(hold[1]);
        trace_options o = opts(TRACE_F32, "none");
        trace_header h = fake_header();
        kv_err err = {0};
        trace_writer *w = trace_writer_open(p, &h, &o, &err);
        step_buf *b = malloc(sizeof *b);
        for (int t = 0; w && t < 200; t++) {
            trace_step s = fake_step(b, t);
            trace_writer_append_step(w, &s, &err);
            char c;
            if (t == 128)
                (void)!read(hold[0], &c, 1);
        }
        _exit(trace_writer_close(w, NULL, &err) == KV_OK ? 0 : 1);
    }
    close(hold[0]);
    char partial[160], cmd[512];
    snprintf(partial, sizeof partial, "%s.partial", p);
    while (steps_seen(partial) < 128)   /* the writer is under way: an event */
        cr_assert_eq(waitpid(writer, NULL, WNOHANG), 0, "the writer died early");
    /* The follower's first progress line (KV_PROGRESS=lines, through a FIFO) says it is
     * waiting: only then does the writer go on, or die. */
    const char *events = path_in("events");
    cr_assert_eq(mkfifo(events, 0600), 0);
    snprintf(cmd, sizeof cmd, "KV_PROGRESS=lines %s/kvsim replay %s --follow --policy full "
             "--budget 1 -o %s 2>%s", getenv("KV_BIN") ? getenv("KV_BIN") : "bin", p, csv,
             events);
    FILE *follower = popen(cmd, "r"), *progress = fopen(events, "r");
    char said[256] = "";
    cr_assert_not_null(fgets(said, sizeof said, progress), "the follower said nothing");
    cr_assert(strstr(said, "following"), "%s", said);
    if (kill_writer)
        kill(writer, SIGKILL);
    close(hold[1]);   /* the writer goes on (unless killed) */
    int status;
    waitpid(writer, &status, 0);
    while (fgets(said, sizeof said, progress))   /* until the follower closes it */
        ;
    fclose(progress);
    cr_assert_eq(WEXITSTATUS(pclose(follower)), 0, "kvsim replay --follow failed");
    /* the CSV's overall line (the last): `steps` (column 13) counts steps 1 .. T-1 of
     * each of the L x H = 6 heads */
    FILE *f = fopen(csv, "r");
    char line[512] = "", last[512] = "";
    while (f && fgets(line, sizeof line, f))
        snprintf(last, sizeof last, "%s", line);
    if (f)
        fclose(f);
    int steps = 0, column = 1;
    for (char *tok = strtok(last, ","); tok; tok = strtok(NULL, ","), column++)
        if (column == 13)
            steps = atoi(tok);
    cr_assert_eq(steps, L * H * (kill_writer ? 127 : 199), "steps replayed: %d (%s)", steps,
                 line);
}

Test(trace_file, replay_follows_a_recording_in_progress) { follow_case(0); }

Test(trace_file, replay_follows_a_recording_whose_writer_was_killed) { follow_case(1); }

/* ---------------------------------------------------------------- #17, item 9 ---- */

/* A NaN attn_scale (or rope_base) is refused at open, never used to rebuild a row. */
Test(trace_file, a_nan_attn_scale_is_refused)
{
    trace_options o = rows_opts(TRACE_ROWS_NONE);
    kv_err err = {0};
    const char *p = path_in("nanscale.h5");
    cr_assert_eq(write_fake(p, 10, &o, -1, NULL, &err), 0, "%s", err.msg);
    double nan = NAN;
    delete_root_attr_and_put(p, "attn_scale", H5T_NATIVE_DOUBLE, &nan);
    expect_open_error(p, KV_EFORMAT, "attn_scale nan");
}

/* A dataset that is there by name but cannot be opened (a dangling link, a group) is
 * "missing or unreadable", not a dataset of "rank -1". */
Test(trace_file, an_unreadable_dataset_is_named_not_given_rank_minus_1)
{
    const char *p = finished_trace("heads.h5", 10);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Ldelete(f, "heads", H5P_DEFAULT), 0);
    cr_assert_geq(H5Lcreate_soft("/nowhere", f, "heads", H5P_DEFAULT, H5P_DEFAULT), 0);
    H5Fclose(f);
    expect_open_error(p, KV_EFORMAT, "dataset /heads is missing or unreadable");
    kv_err err = {0};
    cr_assert_null(trace_open(p, &err));
    cr_assert_null(strstr(err.msg, "rank -1"), "%s", err.msg);
}

/* A file another program holds open for writing (HDF5's mark in the superblock; here
 * a child that opens it read-write and exits without closing, like a killed writer)
 * is reported as such, with the way out, not as damaged or truncated. */
Test(trace_file, a_file_marked_open_for_writing_says_so)
{
    const char *p = finished_trace("held.h5", 10);
    pid_t pid = fork();
    if (pid == 0) {
        hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        _exit(f >= 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0 ? 0 : 3);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kv_err err = {0};
    cr_assert_null(trace_open(p, &err));
    cr_assert(strstr(err.msg, "another program has this file open for writing"), "%s", err.msg);
    cr_assert(strstr(err.msg, "h5clear -s"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "damaged"), "%s", err.msg);
}

/* Item 5: `kvtrace verify` decodes every key and value chunk, queries recorded or not
 * (it used to read them only to recompute rows from queries, and passed a trace whose
 * value chunks replay then failed to inflate). */
Test(trace_file, verify_rejects_a_damaged_value_chunk_without_queries)
{
    const char *p = path_in("kvbad.h5");
    trace_options o = opts(TRACE_F16, "deflate:1");
    o.record_queries = 0;
    kv_err err = {0};
    cr_assert_eq(write_fake(p, 130, &o, -1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(run_verify(p), 0, "the undamaged trace verifies");
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "kv/values", H5P_DEFAULT);
    hsize_t n = 0, at[4], size = 0;
    haddr_t addr = 0;
    unsigned mask = 0;
    hid_t space = H5Dget_space(d);
    cr_assert_geq(H5Dget_num_chunks(d, space, &n), 0);
    cr_assert_geq(H5Dget_chunk_info(d, space, n / 2, at, &mask, &addr, &size), 0);
    cr_assert(n > 1 && size > 0 && addr != HADDR_UNDEF);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    overwrite_chunk(p, addr, size);
    cr_assert_eq(run_verify(p), 1, "a damaged value chunk fails verify");
}
