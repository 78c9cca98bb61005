/*
 * test_dequant.c — model/dequant.c against gguf-py (gguf.quants.dequantize).
 *
 * Fixtures (tests/fixtures/make_dequant_fixtures.py, which records the package versions
 * in them): random blocks of all twelve supported types, and sampled rows of every
 * tensor type in the SmolLM2 and Gemma 3 models, read here through model/gguf.c — and,
 * for the types model_kernels.c converts exactly (Q8_0, Q4_1, Q5_0, Q4_K...), through
 * the raw blocks the model keeps too; and those raw blocks against the 8-bit blocks
 * decode read before (the same products, bit for bit).
 *
 * Tolerance: none — outputs must be bit-identical.  gguf-py computes in float32 with
 * the operations and order of ggml's reference dequantizers (d*q; (d*q)+m;
 * (d*sc)*q - (dmin*mn)), and dequant.c does the same, one rounding per operation with
 * no fused multiply-add (dequant.c invariant (3)), so any difference is a bug.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dequant.h"
#include "gguf.h"
#include "model_impl.h"   /* how the model holds its weights */
#include "test_shell.h"

/* ---- fixture files ----------------------------------------------------------------- */

typedef struct fixture {
    uint8_t *p;       /* whole file */
    size_t   n;       /* its size */
    size_t   pos;     /* read position */
    char     path[512];
} fixture;

static void load(fixture *fx, const char *name, const char magic[8])
{
    const char *dir = getenv("KV_FIXTURES");
    snprintf(fx->path, sizeof fx->path, "%s/%s", dir ? dir : "tests/fixtures", name);
    FILE *fp = fopen(fx->path, "rb");
    cr_assert_not_null(fp, "cannot open %s (set KV_FIXTURES)", fx->path);
    fseek(fp, 0, SEEK_END);
    fx->n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    fx->p = malloc(fx->n);
    cr_assert_eq(fread(fx->p, 1, fx->n, fp), fx->n);
    fclose(fp);
    fx->pos = 0;
    cr_assert(fx->n >= 8 && !memcmp(fx->p, magic, 8), "%s: not a %.8s fixture", fx->path, magic);
    fx->pos = 8;
}

static const void *take(fixture *fx, size_t n)
{
    cr_assert_leq(n, fx->n - fx->pos, "%s: truncated at %zu", fx->path, fx->pos);
    const void *p = fx->p + fx->pos;
    fx->pos += n;
    return p;
}

static uint32_t take_u32(fixture *fx)
{
    uint32_t v;
    memcpy(&v, take(fx, 4), 4);
    return v;
}

/* The package-version line every fixture starts with, printed for the log. */
static void take_versions(fixture *fx)
{
    uint32_t len = take_u32(fx);
    const char *s = take(fx, len);
    cr_log_info("%s made with %.*s", fx->path, (int)len, s);
}

/* Compare n floats bit for bit (all fixtures are NaN-free). */
static void expect_same(const float *got, const void *want_bytes, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        float want;
        memcpy(&want, (const uint8_t *)want_bytes + 4 * i, 4);
        uint32_t gb, wb;
        memcpy(&gb, &got[i], 4), memcpy(&wb, &want, 4);
        cr_assert_eq(gb, wb, "%s: element %lld: got %.9g (0x%08x), gguf-py %.9g (0x%08x)", what,
                     (long long)i, got[i], gb, want, wb);
    }
}

/* Compare n floats by value: the 8-bit blocks compute d·q + m, which gives +0 where
 * gguf-py's d·q gives −0 (q = 0, d < 0); every other value is bit-identical. */
static void expect_equal(const float *got, const void *want_bytes, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        float want;
        memcpy(&want, (const uint8_t *)want_bytes + 4 * i, 4);
        cr_assert(got[i] == want, "%s: element %lld: got %.9g, gguf-py %.9g", what,
                  (long long)i, got[i], want);
    }
}

/* ---- against gguf-py ------------------------------------------------------------------ */

Test(dequant, matches_gguf_py_bit_for_bit_on_random_blocks_of_every_type)
{
    static const int want_types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16,
                                     GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K,
                                     GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL};
    fixture fx;
    load(&fx, "dequant_random.bin", "KVDQRND1");
    take_versions(&fx);
    uint32_t n_rec = take_u32(&fx);
    cr_assert_eq(n_rec, sizeof want_types / sizeof want_types[0]);
    for (uint32_t r = 0; r < n_rec; r++) {
        int type = (int)take_u32(&fx);
        uint32_t n = take_u32(&fx), nbytes = take_u32(&fx);
        cr_assert_eq(type, want_types[r], "record %u", r);
        size_t row;
        cr_assert_eq(ggml_row_size(type, n, &row, NULL), 0);
        cr_assert_eq(row, nbytes, "%s: %u elements take %zu bytes, fixture has %u",
                     ggml_type_name(type), n, row, nbytes);
        const void *raw = take(&fx, nbytes);
        const void *want = take(&fx, 4 * (size_t)n);
        float *got = malloc(4 * (size_t)n);
        kv_err err = {0};
        cr_assert_eq(dequant_row(type, raw, got, n, &err), 0, "%s", err.msg);
        expect_same(got, want, n, ggml_type_name(type));
        free(got);
    }
    cr_assert_eq(fx.pos, fx.n, "trailing bytes in %s", fx.path);
    free(fx.p);
}

/* Sampled rows of one tensor of each type of a model file (fixture `name`), through
 * dequant_row, and for the types the model holds exactly also as the model
 * dequantises them (model_kernels.c): both bit for bit.  Returns the types seen. */
static unsigned check_model_rows(const char *model, const char *name)
{
    kv_err err = {0};
    gguf_file *f = gguf_open(model, &err);
    cr_assert_not_null(f, "%s", err.msg);
    fixture fx;
    load(&fx, name, "KVDQMDL1");
    take_versions(&fx);
    uint64_t size;
    memcpy(&size, take(&fx, 8), 8);
    cr_assert_eq(size, gguf_file_size(f), "%s made from a different model file", name);
    uint32_t n_rec = take_u32(&fx);
    unsigned types = 0;
    for (uint32_t r = 0; r < n_rec; r++) {
        uint32_t len = take_u32(&fx);
        char tname[128];
        cr_assert_lt(len, sizeof tname);
        memcpy(tname, take(&fx, len), len);
        tname[len] = '\0';
        uint32_t row = take_u32(&fx), n = take_u32(&fx);
        const gguf_tensor *t = gguf_find_tensor(f, tname);
        cr_assert_not_null(t, "no tensor %s", tname);
        cr_assert_eq(t->ne[0], n);
        size_t row_bytes;
        cr_assert_eq(ggml_row_size(t->type, n, &row_bytes, NULL), 0);
        float *got = malloc(4 * (size_t)n);
        const uint8_t *src = (const uint8_t *)t->data + (size_t)row * row_bytes;
        cr_assert_eq(dequant_row(t->type, src, got, n, &err), 0, "%s", err.msg);
        char what[192];
        snprintf(what, sizeof what, "%s (%s) row %u", tname, ggml_type_name(t->type), row);
        const void *want = take(&fx, 4 * (size_t)n);
        expect_same(got, want, n, what);
        if (t->type != GGML_TYPE_F32 && n % 32 == 0) {   /* F32: norms, not matrices */
            qmatrix w;
            size_t held = 0;
            cr_assert_eq(model__qmatrix_init(&w, t->type, 1, (int)n, src, 1, &held, &err), 0,
                         "%s", err.msg);
            model__qmatrix_row(got, &w, 0);
            strcat(what, " as the model keeps it");
            expect_equal(got, want, n, what);
            model__qmatrix_free(&w);
        }
        types |= 1u << (t->type & 31);
        free(got);
    }
    cr_assert_eq(fx.pos, fx.n, "trailing bytes in %s", fx.path);
    free(fx.p);
    gguf_close(f);
    return types;
}

Test(dequant, matches_gguf_py_on_rows_of_the_smollm2_model)
{
    const char *model = test_model();
    if (!model || access(model, R_OK) != 0)
        cr_skip_test("KV_MODEL not set or not readable");
    unsigned types = check_model_rows(model, "dequant_model.bin");
    cr_assert(types & (1u << GGML_TYPE_Q4_1) && types & (1u << GGML_TYPE_Q8_0));
}

/* Gemma 3's Q4_K_M file: Q8_0, Q5_0, Q4_K (raw blocks) and Q6_K (floats), all exact. */
Test(dequant, matches_gguf_py_on_rows_of_the_gemma3_model)
{
    unsigned types = check_model_rows(test_gemma_model(), "dequant_gemma3.bin");
    cr_assert(types & (1u << GGML_TYPE_Q4_K) && types & (1u << GGML_TYPE_Q6_K) &&
              types & (1u << GGML_TYPE_Q5_0) && types & (1u << GGML_TYPE_Q8_0));
}

/* ---- the model's raw blocks against its 8-bit blocks ----------------------------------- */

/* A (rows, n) matrix of record `raw` (one row of n weights of `type`), row r rotated by
 * r units, held both ways; matvec and dequantised rows must agree bit for bit, and the
 * products must match a double-precision sum over gguf-py's weights `want`.  37 rows:
 * two groups of 16 and 5 rows after them, where the model interleaves rows in groups
 * (model_kernels.c); model__dequant_rows is read from an odd row to an odd row, across
 * both groups and into the rows after them. */
static void check_raw_against_blocks(int type, const uint8_t *raw, const float *want, int n)
{
    enum { ROWS = 37 };
    size_t row_bytes, ub = (size_t)ggml_type_bytes(type);
    cr_assert_eq(ggml_row_size(type, n, &row_bytes, NULL), 0);
    const size_t units = row_bytes / ub, per = (size_t)ggml_type_block(type);
    uint8_t *m = malloc(ROWS * row_bytes);
    float *wf = malloc(sizeof *wf * ROWS * (size_t)n), *x = malloc(sizeof *x * (size_t)n);
    for (int r = 0; r < ROWS; r++)
        for (size_t u = 0; u < units; u++) {
            size_t from = (u + (size_t)r) % units;
            memcpy(m + r * row_bytes + u * ub, raw + from * ub, ub);
            memcpy(wf + (size_t)r * n + u * per, want + from * per, per * sizeof *wf);
        }
    for (int i = 0; i < n; i++)
        x[i] = (float)sin(0.37 * i + 0.1) * (i % 7 == 3 ? 4.0f : 1.0f);
    qmatrix nat, blk;
    size_t held_nat = 0, held_blk = 0;
    kv_err err = {0};
    cr_assert_eq(model__qmatrix_init(&nat, type, ROWS, n, m, 1, &held_nat, &err), 0, "%s", err.msg);
    cr_assert_eq(model__qmatrix_init(&blk, type, ROWS, n, m, 0, &held_blk, &err), 0, "%s", err.msg);
    cr_assert_not_null(nat.raw, "%s is held as its own blocks", ggml_type_name(type));
    cr_assert_eq(held_nat, ROWS * row_bytes, "%s: raw blocks hold the file's bytes", ggml_type_name(type));
#ifdef __AVX512F__   /* the grouped kernel is the one under test for these types */
    cr_assert_eq(nat.grouped, type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q8_0,
                 "%s grouped", ggml_type_name(type));
#endif
    float y_nat[ROWS], y_blk[ROWS];
    model__matvec(y_nat, &nat, x);
    model__matvec(y_blk, &blk, x);
    /* several matrices in one region (q, k, v): the first 21 rows as a matrix of their
     * own between two whole ones, and the 8-bit form, each as model__matvec gives it */
    qmatrix part;
    size_t held_part = 0;
    cr_assert_eq(model__qmatrix_init(&part, type, 21, n, m, 1, &held_part, &err), 0, "%s", err.msg);
    float y_many[3][ROWS], y_blk_many[ROWS];
    float *const outs[] = {y_many[0], y_many[1], y_many[2], y_blk_many};
    const qmatrix *const ws[] = {&nat, &part, &nat, &blk};
    model__matvec_many(outs, ws, 3, x);           /* one type: together */
    model__matvec_many(outs + 2, ws + 2, 2, x);   /* two forms: one by one */
    cr_assert(!memcmp(y_many[0], y_nat, sizeof y_nat) && !memcmp(y_many[2], y_nat, sizeof y_nat) &&
              !memcmp(y_many[1], y_nat, 21 * sizeof *y_nat) && !memcmp(y_blk_many, y_blk, sizeof y_blk),
              "%s: model__matvec_many differs from model__matvec", ggml_type_name(type));
    model__qmatrix_free(&part);
    for (int r = 0; r < ROWS; r++) {
        cr_assert(!memcmp(&y_nat[r], &y_blk[r], 4), "%s row %d: raw %.9g, 8-bit %.9g",
                  ggml_type_name(type), r, y_nat[r], y_blk[r]);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            ref += (double)wf[(size_t)r * n + i] * x[i];
            mag += fabs((double)wf[(size_t)r * n + i] * x[i]);
        }
        cr_assert(fabs(y_nat[r] - ref) <= (n + 8) * 6e-8 * mag + 1e-30, "%s row %d: %.9g, float64 %.9g",
                  ggml_type_name(type), r, y_nat[r], ref);
    }
    float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
    for (int r = 0; r < ROWS; r++) {
        model__qmatrix_row(a, &nat, r);
        model__qmatrix_row(b, &blk, r);
        cr_assert(!memcmp(a, b, sizeof *a * (size_t)n), "%s row %d dequantised", ggml_type_name(type), r);
        char what[64];
        snprintf(what, sizeof what, "%s row %d raw", ggml_type_name(type), r);
        expect_equal(a, wf + (size_t)r * n, n, what);
    }
    enum { R0 = 3, NR = ROWS - 4 };
    float *rows = malloc(sizeof *rows * NR * (size_t)n);
    model__dequant_rows(rows, &nat, R0, NR);
    char what[64];
    snprintf(what, sizeof what, "%s rows %d .. %d", ggml_type_name(type), R0, R0 + NR - 1);
    expect_equal(rows, wf + (size_t)R0 * n, NR * n, what);
    free(rows);
    model__qmatrix_free(&nat), model__qmatrix_free(&blk);
    free(a), free(b), free(m), free(wf), free(x);
}

/* Every type the model keeps as raw GGUF blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
 * Q5_K) gives the 8-bit blocks' results bit for bit: decode did not change. */
Test(dequant, raw_blocks_compute_what_8_bit_blocks_compute)
{
    fixture fx;
    load(&fx, "dequant_random.bin", "KVDQRND1");
    take_versions(&fx);
    uint32_t n_rec = take_u32(&fx), checked = 0;
    for (uint32_t r = 0; r < n_rec; r++) {
        int type = (int)take_u32(&fx);
        uint32_t n = take_u32(&fx), nbytes = take_u32(&fx);
        const uint8_t *raw = take(&fx, nbytes);
        float *want = malloc(4 * (size_t)n);
        memcpy(want, take(&fx, 4 * (size_t)n), 4 * (size_t)n);
        if (model__keeps_raw(type) && n % 32 == 0) {
            check_raw_against_blocks(type, raw, want, (int)n);
            checked |= 1u << type;
        }
        free(want);
    }
    cr_assert_eq(checked, 1u << GGML_TYPE_Q8_0 | 1u << GGML_TYPE_Q4_0 | 1u << GGML_TYPE_Q4_1 |
                          1u << GGML_TYPE_Q5_0 | 1u << GGML_TYPE_Q5_1 | 1u << GGML_TYPE_Q4_K |
                          1u << GGML_TYPE_Q5_K);
    free(fx.p);
}

/* SmolLM2's weights are held in the bytes the GGUF stores them in (plus float norms):
 * not widened (the 8-bit blocks took 1.8x). */
Test(dequant, the_smollm2_model_holds_its_gguf_bytes)
{
    const char *path = test_model();
    if (!path || access(path, R_OK) != 0)
        cr_skip_test("KV_MODEL not set or not readable");
    kv_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    cr_assert_not_null(f, "%s", err.msg);
    size_t tensors = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++)
        tensors += gguf_tensor_at(f, i)->nbytes;
    gguf_close(f);
    model *m = model_open(path, &err);
    cr_assert_not_null(m, "%s", err.msg);
    size_t held = model_weight_bytes(m);
    model_free(m);
    cr_assert(held <= tensors + tensors / 100, "holds %zu bytes, the file's tensors %zu", held,
              tensors);
}

/* ---- the table and the edges --------------------------------------------------------- */

Test(dequant, type_table_matches_ggml)
{
    cr_assert_str_eq(ggml_type_name(GGML_TYPE_Q4_K), "Q4_K");
    cr_assert_eq(ggml_type_block(GGML_TYPE_Q4_K), 256);
    cr_assert_eq(ggml_type_bytes(GGML_TYPE_Q4_K), 144);
    cr_assert_eq(ggml_type_bytes(GGML_TYPE_Q6_K), 210);
    cr_assert_eq(ggml_type_bytes(GGML_TYPE_IQ4_NL), 18);
    cr_assert_eq(ggml_type_bytes(GGML_TYPE_BF16), 2);
    cr_assert_eq(ggml_type_from_name("q8_0"), GGML_TYPE_Q8_0);
    cr_assert_eq(ggml_type_from_name("Q4_2"), -1);
    static const int removed[] = {-1, 4, 5, 31, 32, 33, 36, 37, 38, GGML_TYPE_COUNT, 1000};
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++) {
        cr_assert_null(ggml_type_name(removed[i]), "id %d", removed[i]);
        cr_assert_eq(ggml_type_block(removed[i]), 0);
        cr_assert_eq(ggml_type_can_dequant(removed[i]), 0);
    }
    cr_assert(ggml_type_can_dequant(GGML_TYPE_Q5_K));
    cr_assert_not(ggml_type_can_dequant(GGML_TYPE_Q2_K));
}

Test(dequant, refuses_partial_blocks_and_types_it_cannot_convert)
{
    uint8_t raw[256] = {0};
    float out[64];
    kv_err err = {0};
    cr_assert_eq(dequant_row(GGML_TYPE_Q4_0, raw, out, 33, &err), KV_EFORMAT);
    cr_assert(strstr(err.msg, "Q4_0 row of 33 elements, expected a multiple of its block size 32"),
              "%s", err.msg);
    cr_assert_eq(dequant_row(GGML_TYPE_Q8_0, raw, out, -32, &err), KV_EFORMAT);
    cr_assert_eq(dequant_row(GGML_TYPE_Q2_K, raw, out, 256, &err), KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "no dequantisation for ggml type Q2_K (id 10)"), "%s", err.msg);
    cr_assert_eq(dequant_row(4, raw, out, 32, &err), KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "unknown ggml type id 4"), "%s", err.msg);
    cr_assert_eq(dequant_row(GGML_TYPE_F32, raw, out, 0, &err), 0, "an empty row is fine");
}

/* Rows start at any byte in real files; UBSan checks that no block is read through a
 * misaligned pointer, and the result must not depend on the address. */
Test(dequant, reads_blocks_at_odd_addresses)
{
    static const int types[] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q5_1, GGML_TYPE_Q6_K,
                                GGML_TYPE_F32};
    uint8_t aligned[2 * 210], shifted[2 * 210 + 1];
    for (size_t i = 0; i < sizeof aligned; i++)
        aligned[i] = (uint8_t)(i * 37 + 11);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int n = ggml_type_block(types[t]) == 1 ? 64 : 2 * ggml_type_block(types[t]);
        memcpy(shifted + 1, aligned, sizeof aligned);
        float a[512], b[512];
        cr_assert_eq(dequant_row(types[t], aligned, a, n, NULL), 0);
        cr_assert_eq(dequant_row(types[t], shifted + 1, b, n, NULL), 0);
        for (int i = 0; i < n; i++)     /* F16C quiets signalling NaNs, the scalar path keeps them */
            cr_assert(isnan(a[i]) ? isnan(b[i]) : !memcmp(&a[i], &b[i], 4), "%s element %d",
                      ggml_type_name(types[t]), i);
    }
}
