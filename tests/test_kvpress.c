/*
 * test_kvpress.c — our kvpress presets and kvpress-derived policies keep what kvpress
 * 0.5.5 itself keeps.
 *
 * tests/fixtures/kvpress_kept.txt holds, per kvpress press and compression ratio, the
 * positions kvpress kept in every (layer, KV head) of SmolLM2 on the committed prompt
 * (tests/fixtures/kvpress_fixture.py: transformers from the same GGUF, float32, eager
 * attention, fed our token ids), and the replay arguments that map it to ours
 * (docs/POLICIES.md, "kvpress").  The test records the same prompt with `kvtrace
 * record --max-new-tokens 1 --dtype f32` (as the script did), replays each mapping,
 * reads the cache the generated token attended (the compressed prompt, itself
 * excluded) and compares, stream by stream: Jaccard |ours ∩ theirs| / |ours ∪ theirs|.
 * Every stream must agree exactly, except inside a tie class the cut splits: where the
 * fixture lists the positions whose score is within 1e-6 (relative) of kvpress's lowest
 * kept score (ties, e.g. one token twice in layer 0, whose keys have equal norms in
 * exact arithmetic and in one forward pass, an ulp apart in the other), torch.topk keeps
 * some of them its own way and we evict the oldest first; the kept sets must then have
 * the same size and agree everywhere else.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay_run.h"
#include "test_shell.h"

#define KP_LAYERS 30
#define KP_KV     3
#define KP_GROUP  3     /* SmolLM2: 9 query heads over 3 KV heads */
#define KP_MAXLEN 1024

typedef struct kept_sets {
    int           prompt_len;   /* of the fixture's prompt */
    int           len;          /* positions compared: those the observed step saw */
    int           observe_t;    /* the step whose attended cache is compared */
    unsigned char ours[KP_LAYERS][KP_KV][KP_MAXLEN];
    unsigned char theirs[KP_LAYERS][KP_KV][KP_MAXLEN];
    unsigned char ties[KP_LAYERS][KP_KV][KP_MAXLEN];   /* 1: a split tie class */
    int           seen[KP_LAYERS][KP_KV];
} kept_sets;

/* The observed step (the first generated token: step prompt_len; after a decoding
 * compression, the last one) attended the compressed cache and itself. */
static void observe_kept(void *ctx, const replay_attended *a)
{
    kept_sets *k = ctx;
    if (a->t != k->observe_t || a->layer >= KP_LAYERS)
        return;
    const int kv = a->head / KP_GROUP;
    memset(k->ours[a->layer][kv], 0, KP_MAXLEN);
    for (int i = 0; i < a->n; i++)
        if (a->kept[i].position < k->len)
            k->ours[a->layer][kv][a->kept[i].position] = 1;
    k->seen[a->layer][kv] = 1;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void read_mask(const char *hex, int L, unsigned char *out)
{
    for (int i = 0; i < L; i++) {
        int d = hex_digit(hex[i / 4]);
        cr_assert(d >= 0, "bad hex digit in the fixture");
        out[i] = (d >> (i % 4)) & 1;
    }
}

/* Same size, and equal outside the tie class. */
static int agree_up_to_ties(const unsigned char *a, const unsigned char *b,
                            const unsigned char *tie, int L)
{
    int na = 0, nb = 0, off = 0;
    for (int i = 0; i < L; i++) {
        na += a[i];
        nb += b[i];
        off += a[i] != b[i] && !tie[i];
    }
    return na == nb && off == 0;
}

static double jaccard(const unsigned char *a, const unsigned char *b, int L)
{
    int both = 0, any = 0;
    for (int i = 0; i < L; i++) {
        both += a[i] && b[i];
        any += a[i] || b[i];
    }
    return any ? (double)both / any : 1.0;
}

static void record_trace(char *path, const char *prompt, int new_tokens)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' record '%s' --prompt-file '%s/%s' "
             "--max-new-tokens %d --dtype f32 --force -o '%s' 2>&1", getenv("KV_BIN"),
             test_model(), getenv("KV_FIXTURES"), prompt, new_tokens, path);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s\n%s", cmd, out);
}

/* One config: replay our mapping, compare every stream; returns the streams that
 * disagree beyond split ties and reports the figures. */
static int check_config(const char *trace, const char *label, const char *args, kept_sets *k)
{
    char line[2048], given[512];
    snprintf(given, sizeof given, "%s", args);
    char *model = strstr(given, "--model MODEL");   /* the fixture's stand-in for ours */
    if (model)
        snprintf(model, sizeof given - (size_t)(model - given), "--model %s%s", test_model(),
                 strstr(args, "--model MODEL") + 13);
    snprintf(line, sizeof line, "replay %s %s --metrics mass", trace, given);
    memset(k->seen, 0, sizeof k->seen);
    run r;
    run_words_observe(&r, line, observe_kept, k);
    cr_assert_eq(r.rc, 0, "%s: %s", line, r.err.msg);
    run_free(&r);
    double min = 1, sum = 0;
    int exact = 0, tied = 0, bad = 0;
    for (int l = 0; l < KP_LAYERS; l++)
        for (int h = 0; h < KP_KV; h++) {
            cr_assert(k->seen[l][h], "%s: no cache seen for layer %d head %d", args, l, h);
            double j = jaccard(k->ours[l][h], k->theirs[l][h], k->len);
            min = j < min ? j : min;
            sum += j;
            exact += j == 1.0;
            if (j < 1.0 && agree_up_to_ties(k->ours[l][h], k->theirs[l][h], k->ties[l][h],
                                            k->len))
                tied++;
            else if (j < 1.0)
                bad++;
        }
    printf("kvpress parity: %-60.60s | %-48s | exact %2d/90, split ties %d, other %d; "
           "Jaccard mean %.4f, min %.4f\n", label, args, exact, tied, bad, sum / 90, min);
    memset(k->ties, 0, sizeof k->ties);
    return bad;
}

Test(kvpress, kept_sets_match_kvpress, .timeout = 1800)
{
    if (!test_model())
        cr_skip_test("the model is not here (make test-fast)");
    char path[] = "/tmp/kv_kvpress_XXXXXX.h5", fixture[1024], line[4096];
    char decode[] = "/tmp/kv_kvpress_decode_XXXXXX.h5", prompt[256];
    const char *trace = path;
    close(mkstemps(path, 3));
    close(mkstemps(decode, 3));
    record_trace(path, "kvpress_prompt.txt", 1);
    snprintf(fixture, sizeof fixture, "%s/kvpress_kept.txt", getenv("KV_FIXTURES"));
    FILE *f = fopen(fixture, "r");
    cr_assert_not_null(f, "%s", fixture);
    static kept_sets k;
    char label[512] = "", args[512] = "";
    int current = -1, failed = 0, configs = 0;
    while (fgets(line, sizeof line, f)) {
        int id, layer, head;
        char hex[KP_MAXLEN / 4 + 2], ties[KP_MAXLEN / 4 + 2];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        int new_tokens, len;
        if (sscanf(line, "prompt_len %d", &k.prompt_len) == 1) {
            cr_assert(k.prompt_len > 0 && k.prompt_len <= KP_MAXLEN);
            k.len = k.observe_t = k.prompt_len;
        } else if (sscanf(line, "decode_trace %200s %d %d", prompt, &new_tokens, &len) == 3) {
            if (current >= 0)   /* the configurations above ran on the prompt's trace */
                failed += check_config(trace, label, args, &k) > 0, configs++, current = -1;
            cr_assert(len > 0 && len < KP_MAXLEN && new_tokens > 0, "%s", line);
            record_trace(decode, prompt, new_tokens);
            trace = decode;
            k.len = k.observe_t = len;   /* the last generated token */
        } else if (!strncmp(line, "config ", 7)) {
            if (current >= 0)
                failed += check_config(trace, label, args, &k) > 0, configs++;
            char *bar1 = strchr(line, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
            cr_assert(bar1 && bar2, "config line without two '|': %s", line);
            snprintf(label, sizeof label, "%.*s", (int)(bar2 - bar1 - 2), bar1 + 2);
            snprintf(args, sizeof args, "%s", bar2 + 2);
            args[strcspn(args, "\n")] = '\0';
            current = atoi(line + 7);
        } else {
            int got = sscanf(line, "%d %d %d %256s %256s", &id, &layer, &head, hex, ties);
            cr_assert(got >= 4 && id == current && layer < KP_LAYERS && head < KP_KV, "%s",
                      line);
            read_mask(hex, k.len, k.theirs[layer][head]);
            if (got == 5)
                read_mask(ties, k.len, k.ties[layer][head]);
        }
    }
    fclose(f);
    if (current >= 0)
        failed += check_config(trace, label, args, &k) > 0, configs++;
    unlink(path);
    unlink(decode);
    cr_assert_gt(configs, 0, "no configuration in %s", fixture);
    cr_assert_eq(failed, 0, "%d of %d kvpress configurations disagree (see the lines above)",
                 failed, configs);
}

/* dir/context.txt (a short harbour passage) and dir/questions.txt = `questions`. */
static void write_context(const char *dir, const char *questions)
{
    char path[600];
    snprintf(path, sizeof path, "%s/context.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("The harbour master wrote each arrival in green ink. The code for the customs "
          "shed that week was 4817, and only she and her deputy knew it. The fourth ship, "
          "the Lantern, came in late at night without signalling.\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/questions.txt", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(questions, f);
    fclose(f);
}

/* kvpress's way of asking: the context is compressed once as the policy's prompt, the
 * questions come after it; each question sees the same compressed context. */
Test(kvpress, generate_answers_questions_from_the_compressed_context, .timeout = 600)
{
    if (!test_model())
        cr_skip_test("the model is not here (make test-fast)");
    char dir[] = "/tmp/kv_ctx_XXXXXX", cmd[2048], out[8192];
    cr_assert_not_null(mkdtemp(dir));
    write_context(dir, "What was the code for the customs shed?\n\n"
                       "Which ship came without signalling?\n");
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' generate '%s' --context %s/context.txt "
             "--questions %s/questions.txt --policy snapkv-kvpress --obs-window 8 "
             "--budget 0.5 --max-new-tokens 2 2>&1", getenv("KV_BIN"), test_model(), dir, dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    const char *q1 = strstr(out, "Q: What was the code"), *q2 = strstr(out, "Q: Which ship");
    cr_assert(q1 && q2 && q1 < q2, "two questions, in order:\n%s", out);
    /* the same compression for both: the same budget and the same entries evicted */
    const char *e1 = strstr(q1, "evicted "), *e2 = strstr(q2, "evicted ");
    const char *b1 = strstr(q1, "budget "), *b2 = strstr(q2, "budget ");
    cr_assert(e1 && e2 && b1 && b2, "%s", out);
    cr_assert_eq(atol(e1 + 8), atol(e2 + 8), "%s", out);
    cr_assert_gt(atol(e1 + 8), 0, "the context was compressed:\n%s", out);
    cr_assert_eq(atoi(b1 + 7), atoi(b2 + 7), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' generate '%s' --context %s/context.txt "
             "--policy snapkv-kvpress --budget 0.5 2>&1", getenv("KV_BIN"), test_model(), dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "--context needs --questions: %s", out);
    cr_assert(strstr(out, "--context and --questions go together"), "%s", out);
    /* the kept set never replaces an input, and never goes to the GPU's full cache */
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' generate '%s' --context %s/context.txt "
             "--questions %s/questions.txt --policy h2o --budget 0.5 --kept "
             "%s/questions.txt 2>&1", getenv("KV_BIN"), test_model(), dir, dir, dir);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "--kept over --questions: %s", out);
    cr_assert(strstr(out, "is an input"), "%s", out);
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' generate '%s' hello --policy h2o --budget 8 "
             "--device cuda 2>&1", getenv("KV_BIN"), test_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "eviction on --device cuda: %s", out);
}

/* Feeding the context once and rewinding the compressed cache after each answer gives
 * the answers that prefilling the context again for each question gives (byte for
 * byte), where the policy is done evicting; otherwise it prefills again. */
Test(kvpress, rewinding_the_context_answers_as_a_fresh_prefill, .timeout = 600)
{
    if (!test_model())
        cr_skip_test("the model is not here (make test-fast)");
    char dir[] = "/tmp/kv_rewind_XXXXXX", cmd[2048], base[1024];
    static char once[8192], again[8192], note[8192];
    cr_assert_not_null(mkdtemp(dir));
    write_context(dir, "Which ship came without signalling?\n"
                       "Who wrote each arrival, and in what ink?\n"
                       "What was the code for the customs shed?\n");
    static const char *const policies[] = {
        "snapkv-kvpress --obs-window 8 --budget 0.5", "knorm-kvpress --budget 0.6",
        "expected-attention --budget 0.4"};
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
        snprintf(base, sizeof base, "'%s/kvtrace' generate '%s' --context %s/context.txt "
                 "--questions %s/questions.txt --policy %s --max-new-tokens 10",
                 getenv("KV_BIN"), test_model(), dir, dir, policies[i]);
        snprintf(cmd, sizeof cmd, "%s 2>/dev/null", base);
        cr_assert_eq(test_shell(cmd, once, sizeof once), 0, "%s", once);
        snprintf(cmd, sizeof cmd, "%s --reprefill 2>/dev/null", base);
        cr_assert_eq(test_shell(cmd, again, sizeof again), 0, "%s", again);
        cr_assert(strstr(once, "Q: What was the code"), "%s", once);
        cr_assert_str_eq(once, again, "%s: rewound vs prefilled again", policies[i]);
        snprintf(cmd, sizeof cmd, "%s 2>&1 >/dev/null", base);
        cr_assert_eq(test_shell(cmd, note, sizeof note), 0, "%s", note);
        cr_assert(strstr(note, "fed once; the cache is rewound"), "%s took the rewind: %s",
                  policies[i], note);
    }
    /* h2o streams: its choices read what each question adds, so it prefills again */
    snprintf(cmd, sizeof cmd, "'%s/kvtrace' generate '%s' --context %s/context.txt "
             "--questions %s/questions.txt --policy h2o --budget 0.5 --max-new-tokens 2 "
             "2>&1 >/dev/null", getenv("KV_BIN"), test_model(), dir, dir);
    cr_assert_eq(test_shell(cmd, note, sizeof note), 0, "%s", note);
    cr_assert_null(strstr(note, "fed once"), "h2o cannot rewind: %s", note);
}
