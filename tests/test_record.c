/*
 * test_record.c — `kvtrace record` on the real model: the shared short trace
 * ($KV_TRACE, recorded by the Makefile with the CLI) and small recordings made here,
 * against the forward pass's own hook and against transformers' attentions.  Numbered
 * items refer to recorder.h.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture_arrays.h"
#include "fp16.h"
#include "recorder.h"
#include "trace_file.h"
#include "test_shell.h"

static trace *open_shared(void)
{
    kv_err err = {0};
    trace *tr = trace_open(test_trace(), &err);
    cr_assert_not_null(tr, "the shared trace (make test records it): %s", err.msg);
    return tr;
}

Test(record, the_shared_trace_is_complete_causal_and_normalised)
{
    trace *tr = open_shared();
    const trace_meta *m = trace_get_meta(tr);
    cr_assert(m->complete);
    cr_assert_eq(m->header.n_layers_rec, 30);
    cr_assert_eq(m->header.n_heads_rec, 9);
    cr_assert_gt(m->steps, 80);
    int T = (int)m->steps;
    float *rows = malloc((size_t)T * T * sizeof *rows);
    kv_err err = {0};
    const int pairs[][2] = {{0, 0}, {7, 2}, {29, 8}};
    for (int p = 0; p < 3; p++) {
        cr_assert_eq(trace_read_rows(tr, pairs[p][0], pairs[p][1], 0, T, rows, T, &err), 0, "%s",
                     err.msg);
        for (int t = 0; t < T; t++) {
            double sum = 0;
            for (int k = 0; k <= t; k++)
                sum += rows[(size_t)t * T + k];
            cr_assert_lt(fabs(sum - 1.0), 2e-3, "layer %d head %d row %d sums to %f", pairs[p][0],
                         pairs[p][1], t, sum);
            for (int k = t + 1; k < T; k++)
                cr_assert_eq(rows[(size_t)t * T + k], 0.0f, "row %d has a key beyond itself", t);
        }
    }
    free(rows);
    trace_close(tr);
}

Test(record, tokens_round_trip_and_phases_split_prompt_from_generation)
{
    trace *tr = open_shared();
    const trace_meta *m = trace_get_meta(tr);
    const trace_tokens *tok = trace_get_tokens(tr);
    kv_err err = {0};
    gguf_file *f = gguf_open(test_model(), &err);
    tokenizer *tk = tokenizer_from_gguf(f, &err);
    cr_assert_not_null(tk, "%s", err.msg);
    tokenizer_ids ids = {0};
    const char *prompt = m->header.prompt;
    cr_assert_eq(tokenizer_encode(tk, prompt, strlen(prompt),
                                  TOKENIZER_ADD_SPECIAL | TOKENIZER_PARSE_SPECIAL, &ids, &err), 0);
    int generated = 0;
    for (int64_t t = 0; t < m->steps; t++) {
        cr_assert_eq(tok->position[t], t);
        if ((size_t)t < ids.n) {
            cr_assert_eq(tok->id[t], ids.ids[t], "prompt token %lld", (long long)t);
            cr_assert_eq(tok->phase[t], TRACE_PHASE_PROMPT);
        } else {
            cr_assert_eq(tok->phase[t], TRACE_PHASE_GENERATED);
            generated++;
        }
        if (t + 1 < m->steps)
            cr_assert(tok->logprob_next[t] <= 0 && tok->entropy_next[t] >= 0, "step %lld", (long long)t);
    }
    cr_assert_gt(generated, 0);
    tokenizer_ids_free(&ids);
    tokenizer_free(tk);
    gguf_close(f);
    trace_close(tr);
}

/* (3) perplexity from the trace alone: the prompt's mean negative log-likelihood is
 * that of the model's own logits, finite and plausible for English text. */
Test(record, next_token_log_probabilities_give_a_plausible_perplexity)
{
    trace *tr = open_shared();
    const trace_meta *m = trace_get_meta(tr);
    const trace_tokens *tok = trace_get_tokens(tr);
    double nll = 0;
    int n = 0;
    for (int64_t t = 0; t + 1 < m->steps; t++)
        if (tok->phase[t + 1] == TRACE_PHASE_PROMPT)
            nll -= tok->logprob_next[t], n++;
    double ppl = exp(nll / n);
    fprintf(stderr, "shared trace: prompt perplexity %.2f over %d tokens\n", ppl, n);
    cr_assert(ppl > 1.5 && ppl < 200, "perplexity %f", ppl);
    trace_close(tr);
}

Test(record, next_token_stats_by_hand)
{
    const float logits[3] = {0.0f, logf(2.0f), logf(5.0f)};   /* p = 1/8, 2/8, 5/8 */
    float lp, h;
    record_next_token_stats(logits, 3, 2, &lp, &h);
    cr_assert_float_eq(lp, logf(5.0f / 8), 1e-6);
    double want = -(0.125 * log(0.125) + 0.25 * log(0.25) + 0.625 * log(0.625));
    cr_assert_float_eq(h, want, 1e-6);
    record_next_token_stats(logits, 3, -1, &lp, &h);
    cr_assert(isnan(lp));
}

/* The scalar loop the statistics were first computed with: what a recording stores. */
static void stats_reference(const float *logits, int n, int32_t next, float *logprob,
                            float *entropy)
{
    float max = logits[0];
    for (int i = 1; i < n; i++)
        max = logits[i] > max ? logits[i] : max;
    double sum = 0, weighted = 0;
    for (int i = 0; i < n; i++) {
        double e = exp((double)logits[i] - max);
        sum += e;
        weighted += e * ((double)logits[i] - max);
    }
    double lse = log(sum);
    *entropy = (float)(lse - weighted / sum);
    *logprob = next >= 0 ? (float)((double)logits[next] - max - lse) : NAN;
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

/* Vocabulary-sized rows of logits (spreads from 0.01 to 300, ties, zeros, one
 * vocabulary of 7 and one of 1): the same bits as the scalar loop. */
Test(record, next_token_stats_bit_for_bit)
{
    enum { V = 49157 };
    float *l = malloc(V * sizeof *l);
    uint64_t seed = 42;
    const float spreads[] = {0.01f, 1.0f, 3.0f, 10.0f, 40.0f, 300.0f};
    for (int round = 0; round < 24; round++) {
        const float spread = spreads[round % 6];
        const int n = round == 22 ? 7 : round == 23 ? 1 : V;
        for (int i = 0; i < n; i++)
            l[i] = (float)((double)lcg(&seed) / 9007199254740992.0 - 0.5) * 2 * spread;
        if (round % 4 == 1)
            l[n / 2] = l[n / 3];   /* a tie */
        if (round % 4 == 2)
            for (int i = 0; i < n; i++)
                l[i] = l[i] > 0 ? -l[i] : l[i];   /* the maximum near 0 */
        if (round % 6 == 3)
            l[n - 1] = 0.0f, l[0] = -0.0f;
        float lp, h, lp_ref, h_ref;
        const int32_t next = (int32_t)(lcg(&seed) % (uint64_t)n);
        record_next_token_stats(l, n, next, &lp, &h);
        stats_reference(l, n, next, &lp_ref, &h_ref);
        cr_assert(memcmp(&lp, &lp_ref, sizeof lp) == 0 && memcmp(&h, &h_ref, sizeof h) == 0,
                  "round %d: logprob %a vs %a, entropy %a vs %a", round, lp, lp_ref, h, h_ref);
    }
    free(l);
}

#ifdef __AVX512F__
/* The vector exp against libm's over 8 million arguments of the statistics' range
 * (l - max, so at most 0), the fast path's edges and beyond them. */
Test(record, exp8_is_libm_exp)
{
    uint64_t seed = 7;
    double x[8], got[8];
    const double edges[8] = {0.0, -0x1p-54, -0x1p-55, -511.99, -512.0, -745.2, -0x1p-53, -1e-300};
    record__exp8(edges, got);
    for (int j = 0; j < 8; j++)
        cr_assert(memcmp(&got[j], &(double){exp(edges[j])}, 8) == 0, "exp(%a)", edges[j]);
    for (int i = 0; i < 1000000; i++) {
        const double range = i % 3 == 0 ? 1.0 : i % 3 == 1 ? 40.0 : 700.0;
        for (int j = 0; j < 8; j++)
            x[j] = -(double)lcg(&seed) / 9007199254740992.0 * range;
        record__exp8(x, got);
        for (int j = 0; j < 8; j++)
            if (memcmp(&got[j], &(double){exp(x[j])}, 8) != 0)
                cr_assert_fail("exp(%a): %a, libm %a", x[j], got[j], exp(x[j]));
    }
}
#endif

Test(record, token_flags_from_pieces)
{
    cr_assert_eq(tokenizer_flags_of(TOKENIZER_TYPE_CONTROL, "<|im_end|>", 10), TRACE_TOKEN_SPECIAL);
    cr_assert_eq(tokenizer_flags_of(TOKENIZER_TYPE_NORMAL, " ,", 2), TRACE_TOKEN_PUNCT);
    cr_assert_eq(tokenizer_flags_of(TOKENIZER_TYPE_NORMAL, "\n\n", 2), TRACE_TOKEN_SPACE);
    cr_assert_eq(tokenizer_flags_of(TOKENIZER_TYPE_NORMAL, " the", 4), 0);
    cr_assert_eq(tokenizer_flags_of(TOKENIZER_TYPE_NORMAL, "'s", 2), 0);
}

/* --- recordings made here, from token ids -------------------------------------------- */

typedef struct captured {
    int    layer, head, T;
    float *rows;   /* (T, T) */
} captured;

static void capture(void *ctx, int layer, int q_head, int pos, const float *probs, int n)
{
    captured *c = ctx;
    if (layer == c->layer && q_head == c->head)
        memcpy(c->rows + (size_t)pos * c->T, probs, (size_t)n * sizeof *probs);
}

/* Record `ids` (no generation) into path with the f32 dtype. */
static void record_ids(const int32_t *ids, int n, const char *path, const char *layers)
{
    session_options so = session_options_default();
    so.model = test_model();
    so.prompt = "x";
    so.max_new = 0;
    session s;
    kv_err err = {0};
    cr_assert_eq(session_open(&s, &so, &err), 0, "%s", err.msg);
    s.prompt.n = 0;
    for (int i = 0; i < n; i++) {   /* replace the encoded prompt by the fixture's ids */
        if (s.prompt.n == s.prompt.cap) {
            s.prompt.cap = 2 * s.prompt.cap + 16;
            s.prompt.ids = realloc(s.prompt.ids, s.prompt.cap * sizeof *s.prompt.ids);
        }
        s.prompt.ids[s.prompt.n++] = ids[i];
    }
    record_options ro = {.layers = layers, .trace = {.dtype = TRACE_F32, .force = 1}};
    record_result res;
    cr_assert_eq(record_trace(&s, &so, path, &ro, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.steps, n);
    session_close(&s);
}

/* (2) every recorded row is exactly the row the model's hook produced (f32 trace),
 * across the chunk boundary at RECORD_CHUNK. */
Test(record, rows_are_exactly_what_the_forward_hook_saw, .timeout = 120)
{
    fx_file fx;
    cr_assert_eq(fx_load(&fx, "forward_hf.bin"), 0);
    const fx_array *ids = fx_find(&fx, "p4.ids");   /* the long prompt */
    cr_assert_not_null(ids);
    int T = 100;
    cr_assert_geq(ids->dims[0], T);
    char path[] = "/tmp/kv_record_XXXXXX.h5";
    close(mkstemps(path, 3));
    record_ids(ids->data, T, path, "5");
    /* The reference: the same tokens through model_forward in RECORD_CHUNK chunks. */
    kv_err err = {0};
    model *m = model_open(test_model(), &err);
    kv_cache *cache = model_cache_new(m, T, &err);
    captured cap = {.layer = 5, .head = 7, .T = T, .rows = calloc((size_t)T * T, sizeof(float))};
    model_hooks hooks = {.attn_row = capture, .ctx = &cap};
    for (int t0 = 0; t0 < T; t0 += RECORD_CHUNK) {
        int n = T - t0 < RECORD_CHUNK ? T - t0 : RECORD_CHUNK;
        cr_assert_eq(model_forward(m, cache, (int32_t *)ids->data + t0, n, MODEL_LOGITS_NONE,
                                   NULL, &hooks, &err), 0, "%s", err.msg);
    }
    trace *tr = trace_open(path, &err);
    cr_assert_not_null(tr, "%s", err.msg);
    cr_assert_eq(trace_get_meta(tr)->header.n_layers_rec, 1, "--layers 5 records one layer");
    float *rows = malloc((size_t)T * T * sizeof *rows);
    cr_assert_eq(trace_read_rows(tr, 0, trace_head_index(tr, 7), 0, T, rows, T, &err), 0);
    cr_assert_arr_eq(rows, cap.rows, (size_t)T * T * sizeof *rows);
    free(rows);
    free(cap.rows);
    trace_close(tr);
    kv_cache_free(cache);
    model_free(m);
    fx_free(&fx);
    unlink(path);
}

/* A few rows against transformers' eager attentions (the forward-pass fixture). */
Test(record, rows_agree_with_transformers, .timeout = 120)
{
    fx_file fx;
    cr_assert_eq(fx_load(&fx, "forward_hf.bin"), 0);
    const fx_array *ids = fx_find(&fx, "p0.ids"), *pairs = fx_find(&fx, "attn.pairs");
    const fx_array *ref = fx_find(&fx, "attn.rows");
    cr_assert(ids && pairs && ref);
    int T = ids->dims[0], P = pairs->dims[0];
    char path[] = "/tmp/kv_record_XXXXXX.h5";
    close(mkstemps(path, 3));
    record_ids(ids->data, T, path, NULL);
    kv_err err = {0};
    trace *tr = trace_open(path, &err);
    cr_assert_not_null(tr, "%s", err.msg);
    float *rows = malloc((size_t)T * T * sizeof *rows);
    double max = 0;
    for (int p = 0; p < P; p++) {
        const int32_t *pair = (const int32_t *)pairs->data + 2 * p;
        cr_assert_eq(trace_read_rows(tr, trace_layer_index(tr, pair[0]),
                                     trace_head_index(tr, pair[1]), 0, T, rows, T, &err), 0);
        const float *want = (const float *)ref->data + (size_t)p * T * T;
        for (size_t i = 0; i < (size_t)T * T; i++)
            max = fmax(max, fabs(rows[i] - want[i]));
    }
    fprintf(stderr, "recorded rows vs transformers: %d (layer, head) pairs, max |dp| %.2e\n", P, max);
    cr_assert_lt(max, 1e-4);
    free(rows);
    trace_close(tr);
    fx_free(&fx);
    unlink(path);
}

/* --- faults, through the command line -------------------------------------------------- */

#define RECORD_CMD "'%s/kvtrace' record '%s' 'The cat sat on the mat.' "

Test(record_faults, refuses_to_clobber_without_force_and_an_unwritable_path)
{
    char cmd[1024], out[4096], path[] = "/tmp/kv_record_XXXXXX.h5";
    close(mkstemps(path, 3));
    snprintf(cmd, sizeof cmd, RECORD_CMD "--max-new-tokens 0 -o '%s' 2>&1", getenv("KV_BIN"),
             test_model(), path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "--force"), "the message suggests --force: %s", out);
    snprintf(cmd, sizeof cmd, RECORD_CMD "--max-new-tokens 0 -o /nonexistent/dir/t.h5 2>&1",
             getenv("KV_BIN"), test_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "/nonexistent/dir/t.h5"), "%s", out);
    unlink(path);
}

Test(record_faults, a_selection_out_of_range_is_a_usage_error_naming_the_range)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, RECORD_CMD "--layers 0,30 -o /tmp/never.h5 2>&1", getenv("KV_BIN"),
             test_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--layers: 30 is out of range 0..29"), "%s", out);
    snprintf(cmd, sizeof cmd, RECORD_CMD "--heads 9 -o /tmp/never.h5 2>&1", getenv("KV_BIN"),
             test_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--heads: 9 is out of range 0..8"), "%s", out);
    cr_assert_eq(access("/tmp/never.h5", F_OK), -1, "no file is created for a bad selection");
    snprintf(cmd, sizeof cmd, RECORD_CMD "--dtype f8 -o /tmp/never.h5 2>&1", getenv("KV_BIN"),
             test_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
}

/* (4) a full disk (simulated by the writer's test-only cap) leaves an incomplete file:
 * the prompt's first batch of 64 steps already overflows the cap */
/* The disk fills before the first batch is on it: nothing was recorded, so the file
 * named by -o stays as it was (here the empty file mkstemps made), no .partial is left,
 * and the error says both. */
Test(record_faults, a_full_disk_before_the_first_batch_leaves_the_file_as_it_was)
{
    char cmd[1024], out[4096], path[] = "/tmp/kv_record_XXXXXX.h5", partial[64];
    close(mkstemps(path, 3));
    snprintf(partial, sizeof partial, "%s.partial", path);
    snprintf(cmd, sizeof cmd, "KV_TEST_WRITE_CAP_BYTES=1000 '%s/kvtrace' record '%s' "
             "--prompt-file '%s/trace_prompt.txt' --layers 0 --heads 0 --max-new-tokens 0 "
             "--force --compress none -o '%s' 2>&1", getenv("KV_BIN"), test_model(),
             getenv("KV_FIXTURES"), path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "no space left on device"), "%s", out);
    cr_assert(strstr(out, "nothing recorded (the file is as it was)"), "%s", out);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 0, "the file named by -o was replaced");
    cr_assert_eq(access(partial, F_OK), -1, "%s was left behind", partial);
    unlink(path);
}

/* Start a long recording into `path`, send it `sig` once it reports its first step
 * (KV_PROGRESS=lines on a FIFO: an event, not a delay), and return its exit status
 * followed by the rest of its stderr in out. */
static void record_until_signal(const char *sig, const char *path, char *out, size_t len)
{
    char cmd[2048], dir[] = "/tmp/kv_rec_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cd '%s' && mkfifo events || exit 9; KV_PROGRESS=lines "
             RECORD_CMD "--max-new-tokens 4000 --force -o '%s' 2>events & "
             "pid=$!; { IFS= read -r first; kill -%s $pid; cat > rest; } < '%s/events'; "
             "wait $pid; echo $?; cat '%s/rest'; rm -rf '%s'",
             dir, getenv("KV_BIN"), test_model(), path, sig, dir, dir, dir);
    cr_assert_eq(test_shell(cmd, out, len), 0);
}

static void expect_truncated(const char *path)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' info '%s' 2>&1", getenv("KV_BIN"), path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "truncated at step"), "kvtrace info: %s", out);
}

/* (4) Ctrl-C, SIGTERM or SIGHUP mid-run: exit 1, a clear message, and a trace in place
 * that says it is truncated. */
Test(record_faults, sigint_sigterm_and_sighup_leave_a_truncated_trace)
{
    const char *sigs[] = {"INT", "TERM", "HUP"};
    for (int i = 0; i < 3; i++) {
        char out[4096], path[] = "/tmp/kv_record_XXXXXX.h5";
        close(mkstemps(path, 3));
        record_until_signal(sigs[i], path, out, sizeof out);
        cr_assert_eq(atoi(out), 1, "exit status after SIG%s: %s", sigs[i], out);
        cr_assert(strstr(out, "interrupted"), "stderr: %s", out);
        expect_truncated(path);
        unlink(path);
    }
}

/* SIGKILL: no handler runs, yet NAME.partial opens (SWMR) with every flushed batch,
 * and a new recording neither takes it over nor loses it without --force. */
Test(record_faults, sigkill_leaves_a_readable_partial_trace)
{
    char out[4096], cmd[2048], path[] = "/tmp/kv_record_XXXXXX.h5", partial[64];
    close(mkstemps(path, 3));
    unlink(path);
    snprintf(partial, sizeof partial, "%s.partial", path);
    record_until_signal("KILL", path, out, sizeof out);
    cr_assert_eq(atoi(out), 137, "exit status after SIGKILL: %s", out);
    cr_assert_eq(access(path, F_OK), -1, "NAME appears only when the writer finishes");
    expect_truncated(partial);
    snprintf(cmd, sizeof cmd, RECORD_CMD "--max-new-tokens 0 -o '%s' 2>&1", getenv("KV_BIN"),
             test_model(), path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "did not finish"), "%s", out);
    snprintf(cmd, sizeof cmd, RECORD_CMD "--max-new-tokens 0 --force -o '%s' 2>&1",
             getenv("KV_BIN"), test_model(), path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_eq(access(partial, F_OK), -1, "the partial trace became NAME");
    unlink(path);
}

/* A trace is a function of the model and the prompt: recorded with 1 and with 2
 * threads, every dataset is the same bit for bit (only `threads` and `created` differ). */
Test(record, traces_do_not_depend_on_the_thread_count, .timeout = 300)
{
    static const char *const datasets[] = {
        "attn/probs", "kv/keys", "kv/values", "kv/queries", "tokens/id", "tokens/text_bytes",
        "tokens/logprob_next", "tokens/entropy_next", "status/steps"};
    char dir[] = "/tmp/kv_threads_XXXXXX", cmd[2048], out[4096];
    cr_assert_not_null(mkdtemp(dir));
    for (int threads = 1; threads <= 2; threads++) {
        snprintf(cmd, sizeof cmd, "'%s/kvtrace' record '%s' --prompt-file '%s/trace_prompt.txt' "
                 "--max-new-tokens 24 --rows all --record-queries --threads %d -o '%s/t%d.h5' "
                 "2>&1", getenv("KV_BIN"), test_model(), getenv("KV_FIXTURES"), threads, dir,
                 threads);
        cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    }
    for (size_t i = 0; i < sizeof datasets / sizeof *datasets; i++) {
        snprintf(cmd, sizeof cmd, "h5diff '%s/t1.h5' '%s/t2.h5' /%s /%s 2>&1", dir, dir,
                 datasets[i], datasets[i]);
        cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "/%s differs: %s", datasets[i], out);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    test_shell(cmd, out, sizeof out);
}
