/*
 * test_hostile.c — issue #17: the tools against hostile input and a hostile system.
 * The audit's one-line repros of item 9 (usage limits, a NaN model, a full disk at
 * creation), the inputs the trace fuzzer found (tests/fixtures/fuzz_*.h5), and the
 * damaged-file sweep: a small real trace damaged at a spread of offsets, every tool
 * run on every copy, each must exit 0 or 1 with a message naming the file: never a
 * signal, never a hang (each run under `timeout`), never a usage error.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "test_shell.h"

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/kvhostile-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static int rm_entry(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s, (void)flag, (void)f;
    return remove(p);
}

static void remove_dir(void) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

TestSuite(hostile, .init = make_dir, .fini = remove_dir);

static const char *bin(void) { return getenv("KV_BIN") ? getenv("KV_BIN") : "bin"; }

static const char *fixture(const char *name)
{
    static char p[4][512];
    static int next;
    char *s = p[next++ % 4];
    snprintf(s, 512, "%s/%s", getenv("KV_FIXTURES") ? getenv("KV_FIXTURES") : "tests/fixtures",
             name);
    return s;
}

/* ---------------------------------------------------------------- usage limits --- */

Test(hostile, a_seed_above_2_64_minus_1_is_a_usage_error_not_clamped)
{
    char cmd[1024], out[2048];
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' run '%s' hi --seed 18446744073709551616 2>&1",
             bin(), fixture("tiny_llama3.gguf"));
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--seed expects an integer in [0, 2^64 - 1]"), "%s", out);
}

Test(hostile, empty_list_items_are_refused)
{
    static const char *args[] = {
        "sweep %s --policies h2o,,tova --budgets 8",
        "sweep %s --policies h2o,tova, --budgets 8",
        "sweep %s --policies ,h2o --budgets 8",
        "sweep %s --policies h2o --budgets 8,,16",
        "replay %s --policy h2o --budget 8 --metrics mass,,overlap",
    };
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        char a[256], cmd[1024], out[2048];
        snprintf(a, sizeof a, args[i], "synth:T=40,layers=1,heads=2,kv=1");
        snprintf(cmd, sizeof cmd, "'%s/kvsim' %s -o '%s/out.csv' 2>&1", bin(), a, dir);
        cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s: %s", a, out);
        cr_assert(strstr(out, "empty item"), "%s: %s", a, out);
        snprintf(cmd, sizeof cmd, "%s/out.csv", dir);
        cr_assert_eq(access(cmd, F_OK), -1, "nothing was written");
    }
}

/* An unbounded prompt (/dev/zero) stops at the documented limit (common/input.h,
 * INPUT_MAX_BYTES: 64 MiB) instead of reading until memory runs out. */
Test(hostile, an_unbounded_prompt_file_is_refused_at_the_size_limit, .timeout = 60)
{
    char cmd[1024], out[2048];
    snprintf(cmd, sizeof cmd, "timeout 50 '%s/kvtrace' run '%s' --prompt-file /dev/zero 2>&1",
             bin(), fixture("tiny_llama3.gguf"));
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "/dev/zero: more than 64 MiB"), "%s", out);
}

/* ---------------------------------------------------------------- a NaN model ---- */

/* A copy of the tiny llama with every weight of one tensor set to `v`. */
static void poisoned_copy(const char *tensor, float v, char *path, size_t len)
{
    kv_err err = {0};
    gguf_file *g = gguf_open(fixture("tiny_llama3.gguf"), &err);
    cr_assert_not_null(g, "%s", err.msg);
    const gguf_tensor *t = gguf_find_tensor(g, tensor);
    cr_assert_not_null(t);
    cr_assert_eq(t->type, 0, "an F32 tensor");
    long at = (long)(gguf_data_offset(g) + t->offset);
    size_t n = t->nbytes / sizeof(float);
    gguf_close(g);
    snprintf(path, len, "%s/poisoned.gguf", dir);
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fixture("tiny_llama3.gguf"), path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0);
    FILE *fp = fopen(path, "r+b");
    cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(fwrite(&v, sizeof v, 1, fp), 1);
    fclose(fp);
}

/* NaN (or inf) weights make the forward pass an error naming the position, so `run`,
 * `record` and `generate` exit 1 instead of emitting token 0 (argmax of NaNs). */
Test(hostile, nan_or_inf_weights_make_the_forward_pass_fail)
{
    const float poison[] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++) {
        char path[256];
        poisoned_copy("output_norm.weight", poison[i], path, sizeof path);
        kv_err err = {0};
        model *m = model_open(path, &err);
        cr_assert_not_null(m, "%s", err.msg);
        kv_cache *c = model_cache_new(m, 8, &err);
        cr_assert_not_null(c, "%s", err.msg);
        const int32_t ids[3] = {1, 5, 7};
        float *logits = malloc(3 * (size_t)model_config_of(m)->n_vocab * sizeof *logits);
        cr_assert_eq(model_forward(m, c, ids, 3, MODEL_LOGITS_ALL, logits, NULL, &err),
                     KV_EFORMAT, "%s", err.msg);
        cr_assert(strstr(err.msg, "non-finite logit") && strstr(err.msg, "at position 0"),
                  "%s", err.msg);
        free(logits);
        kv_cache_free(c);
        model_free(m);
    }
}

/* ---------------------------------------------------------------- a full disk ---- */

/* A disk full before the layout is written (simulated with the file-size limit, which
 * fails writes like ENOSPC does): exit 1 naming the reason, nothing left behind, and
 * no crash at exit (libhdf5's exit handler used to close the failed file again:
 * SIGSEGV, or "infinite loop closing library"). */
Test(hostile, a_full_disk_at_creation_leaves_nothing_and_exits_1)
{
    if (!test_model())
        cr_skip_test("KV_MODEL not set");
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f 2; '%s/kvtrace' record '%s' 'The cat' "
             "--layers 0 --heads 0 --max-new-tokens 1 -o '%s/full.h5' 2>&1; echo \"exit $?\"",
             bin(), test_model(), dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "exit 1\n"), "%s", out);
    cr_assert(strstr(out, "full.h5.partial: cannot lay out the trace file: File too large"),
              "%s", out);
    cr_assert_null(strstr(out, "infinite loop"), "%s", out);
    cr_assert_null(strstr(out, "HDF5"), "no HDF5 error stack: %s", out);
    char p[128];
    snprintf(p, sizeof p, "%s/full.h5", dir);
    cr_assert_eq(access(p, F_OK), -1, "no file is left");
    snprintf(p, sizeof p, "%s/full.h5.partial", dir);
    cr_assert_eq(access(p, F_OK), -1, "no partial file is left");
}

/* A file-size limit (ulimit -f 2000: 2000 KiB) reached mid-way, after the first batch
 * of 64 steps: the next batch is refused before HDF5 writes any of it, so the trace
 * keeps its first 64 steps, readable and marked incomplete.  Before, HDF5's writes
 * were cut off part-way (EFBIG) and the superblock promised more bytes than the file
 * held: "truncated file" at every open, the flushed steps lost with it. */
Test(hostile, a_file_size_limit_mid_way_keeps_every_flushed_batch_readable, .timeout = 300)
{
    if (!test_model() || !getenv("KV_ROOT"))
        cr_skip_test("KV_MODEL or KV_ROOT not set");
    char cmd[2048], out[4096];
    /* a prompt of about 200 tokens (prefilled in chunks: quicker than generating) */
    snprintf(cmd, sizeof cmd, "head -c 900 '%s/bench/bench_prompt.txt' > '%s/p.txt' && "
             "trap '' XFSZ; prlimit --fsize=2048000 '%s/kvtrace' record '%s' "
             "--prompt-file '%s/p.txt' --layers 0,1 --rows all --compress none "
             "--max-new-tokens 0 -o '%s/t.h5' 2>&1; echo \"exit $?\"", getenv("KV_ROOT"), dir,
             bin(), test_model(), dir, dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "exit 1\n"), "%s", out);
    cr_assert(strstr(out, "64 steps on disk, marked incomplete") &&
              strstr(out, "past the file-size limit (ulimit -f)"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' info '%s/t.h5' 2>&1", bin(), dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "T = 64 (64 prompt, 0 generated), truncated at step 64"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' verify '%s/t.h5' 2>&1", bin(), dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "rows ok, but the trace is incomplete"), "%s", out);
}

/* ---------------------------------------------------------------- damaged traces - */

/* Run each tool on `path` (under a timeout); every one must exit 0 or 1, and name the
 * file when it fails.  `what` labels the failure messages. */
static void every_tool_copes(const char *path, const char *what)
{
    static const char *tools[] = {
        "'%s/kvtrace' info '%s'",
        "'%s/kvtrace' verify '%s'",
        "'%s/kvsim' replay '%s' --policy h2o --budget 4 --threads 1 -o '%s/out.csv'",
    };
    for (size_t i = 0; i < sizeof tools / sizeof *tools; i++) {
        char tool[1024], cmd[1400], out[4096];
        snprintf(tool, sizeof tool, tools[i], bin(), path, dir);
        snprintf(cmd, sizeof cmd, "rm -f '%s/out.csv'; timeout 20 %s >/dev/null 2>'%s/err'; "
                 "s=$?; cat '%s/err'; exit $s", dir, tool, dir, dir);
        int st = test_shell(cmd, out, sizeof out);
        cr_assert(st == 0 || st == 1, "%s: `%s` exited %d (124: a hang, 2: usage, -1 and "
                  ">128: a signal): %s", what, tool, st, out);
        if (st == 1)
            cr_assert(strstr(out, path), "%s: `%s` failed without naming the file: %s", what,
                      tool, out);
    }
}

/* The inputs the trace fuzzer found: a damaged block an SWMR reader re-read forever
 * (HDF5's 100 attempts with doubling sleeps), and NaN keys whose scores made the
 * softmax convert NaN to int (UB). */
Test(hostile, the_fuzzer_findings_fail_cleanly, .timeout = 120)
{
    every_tool_copes(fixture("fuzz_swmr_retry_hang.h5"), "fuzz_swmr_retry_hang.h5");
    every_tool_copes(fixture("fuzz_nan_score_ub.h5"), "fuzz_nan_score_ub.h5");
    /* key chunks that inflate short: libhdf5 1.10's own read overran its buffer */
    every_tool_copes(fixture("fuzz_hdf5_overread.h5"), "fuzz_hdf5_overread.h5");
}

enum { N_DAMAGED = 40 };

/* Copy `src` to `dst` with 8 bytes at `at` flipped (mode 0) or zeroed (mode 1). */
static void damaged_copy(const char *src, const char *dst, long at, int mode)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    cr_assert(in && out);
    int c;
    for (long i = 0; (c = fgetc(in)) != EOF; i++)
        fputc(i >= at && i < at + 8 ? (mode ? 0 : c ^ 0xff) : c, out);
    fclose(in);
    fclose(out);
}

/* A small real trace (2 layers x 2 heads, rows of layer 0 head 0 stored, the others
 * rebuilt, deflate) damaged at N_DAMAGED offsets: the superblock and the first object
 * headers (the first 2 KiB, densely), then evenly over the rest. */
Test(hostile, every_tool_survives_a_damaged_trace, .timeout = 300)
{
    if (!test_model())
        cr_skip_test("KV_MODEL not set");
    char src[128], cmd[1024], out[4096];
    snprintf(src, sizeof src, "%s/small.h5", dir);
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' record '%s' 'The cat sat on the mat.' "
             "--layers 0,1 --heads 0,3 --rows 0:0 --compress deflate:1 --max-new-tokens 4 "
             "--threads 1 -o '%s' 2>&1", bin(), test_model(), src);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    every_tool_copes(src, "the undamaged trace");
    struct stat st;
    cr_assert_eq(stat(src, &st), 0);
    int failed_somewhere = 0;
    for (int i = 0; i < N_DAMAGED; i++) {
        long at = i < 16 ? i * 128L : 2048 + (st.st_size - 2056) * (i - 16) / (N_DAMAGED - 16);
        char dst[160], what[64];
        snprintf(dst, sizeof dst, "%s/d%02d.h5", dir, i);
        snprintf(what, sizeof what, "%s at offset %ld", i % 2 ? "zeroed" : "flipped", at);
        damaged_copy(src, dst, at, i % 2);
        every_tool_copes(dst, what);
        snprintf(cmd, sizeof cmd, "'%s/kvtrace' verify '%s' >/dev/null 2>&1", bin(), dst);
        failed_somewhere += test_shell(cmd, out, sizeof out) != 0;
        unlink(dst);
    }
    cr_assert_gt(failed_somewhere, N_DAMAGED / 4, "the damage was seen: %d of %d copies "
                 "failed verify", failed_somewhere, N_DAMAGED);
}
