/*
 * cmd_generate.c — `kvtrace generate MODEL PROMPT --policy P --budget B [options]`:
 * `kvtrace run` with a truly compressed KV cache (confirm/live.h).  The text streams to
 * stdout; the stats go to stderr: kept entries, KV bytes (the cache allocator's own
 * count), time to first token and decode speed.
 *
 * Options are the session's (session.h) plus every policy parameter, each handed to
 * policy_config_set() as written (--policy, --budget, --stride, --phase, --sinks ...).
 * --seed seeds both the sampler and the policy.  A budget fraction resolves against
 * prompt + --max-new-tokens.  --reposition re-rotates the kept keys to contiguous
 * positions after every eviction (live.h (5)).
 *
 * --context FILE --questions FILE asks as kvpress's pipeline does: the context is the
 * prompt the policy compresses (a oneshot policy compresses it once, at its end; a
 * budget fraction resolves against the context), then each question (one per line,
 * not seen by the compression) is fed after it and answered.  Each question starts
 * from the same compressed cache: the context is fed once and, after each answer, the
 * cache and the policy's streams are rewound to it (live_mark, live_rewind), which is
 * what a fresh prefill would give when the policy will never evict again (a oneshot
 * policy that compressed); otherwise, or with --reprefill, the context is prefilled
 * again for each question (the run is deterministic: the same kept entries).
 */
#include "commands.h"

#include "kept_set.h"
#include "live.h"
#include "out.h"
#include "opts.h"
#include "policy.h"
#include "session.h"
#include "input.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static int load_policy_lib(const char *path, kv_err *err) { return policy_lib_load(path, err); }

typedef struct options {
    int reposition;
    int reprefill;   /* --reprefill: the context fed again for each question */
    const char *kept, *streams;   /* the kept set and per-stream lines after the run */
    const char *policy_lib;   /* loaded as soon as it is read (OPTS_EARLY) */
    const char *context, *questions;   /* --context FILE --questions FILE */
} options;

static const opts_row generate_rows[] = {
    {"reposition", 0, OPTS_FLAG, offsetof(options, reposition), NULL,
     "after each eviction, re-rotate the kept keys to positions\n0..n-1 and give the next "
     "token position n (StreamingLLM)", 0, 0, NULL},
    {"kept", 0, OPTS_TEXT, offsetof(options, kept), "FILE",
     "after the run, the kept set: layer,kv_head,position per entry\n(with --questions: "
     "after the last question)", 0, 0, NULL},
    {"streams", 0, OPTS_TEXT, offsetof(options, streams), "FILE",
     "after the run, one line per stream: layer,kv_head,kept and\nwhat the policy says "
     "of it (fastgen: profile,recovered)", 0, 0, NULL},
    {"policy-lib", 0, OPTS_EARLY, offsetof(options, policy_lib), "FILE.so",
     "load policies compiled against policies/policy.h\n(docs/POLICIES.md, \"Writing a "
     "policy\")", 0, 0, load_policy_lib},
    {"context", 0, OPTS_TEXT, offsetof(options, context), "FILE",
     "the context to compress (instead of PROMPT); then answer\neach line of --questions "
     "from its compressed cache", 0, 0, NULL},
    {"questions", 0, OPTS_TEXT, offsetof(options, questions), "FILE",
     "with --context: one question per line, asked after the\ncontext, unseen by the "
     "compression (kvpress's pipeline)", 0, 0, NULL},
    {"reprefill", 0, OPTS_FLAG, offsetof(options, reprefill), NULL,
     "with --questions: prefill the context again for each question\n(default: feed it "
     "once and rewind the compressed cache after\neach answer, where the policy is done "
     "evicting)", 0, 0, NULL},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static void print_token(void *ctx, int32_t id)
{
    size_t len;
    const char *piece = tokenizer_piece(ctx, id, &len);
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

static void print_stats(const policy_config *cfg, int n_prompt, const live_output *out,
                        int streams)
{
    const live_stats *s = &out->stats;
    fprintf(stderr, "policy %s: budget %d, stride %d, %d streams\n", cfg->name ? cfg->name : "full",
            cfg->budget, cfg->stride, streams);
    fprintf(stderr, "prompt: %d tokens, TTFT %.3f s; generated: %d tokens, %.1f tokens/s\n",
            n_prompt, out->ttft_s, out->n,
            out->n && out->decode_s > 0 ? out->n / out->decode_s : 0.0);
    fprintf(stderr, "kept entries per stream: mean attended %.1f over %ld steps, final %.1f; "
            "evicted %ld\n", s->steps ? s->attended_sum / s->steps : 0.0, s->steps,
            s->kept_final, s->evicted);
    fprintf(stderr, "KV bytes (allocator): %zu final, %zu peak after the prompt, %zu while "
            "the prompt was fed\n", s->kv_bytes, s->kv_bytes_peak, s->kv_bytes_prefill);
}

/* Each stream's entries at the end of the run (a policy's original positions; the
 * cache's for `full`, which never evicts) into --kept / --streams. */
static int write_kept(const live *lv, const options *o, kv_err *err)
{
    const kv_cache *c = live_cache(lv);
    const int L = kv_cache_n_layer(c), K = kv_cache_n_kv_head(c);
    kept_set *ks = kept_set_new_shape(L, K, err);
    int rc = ks ? KV_OK : KV_ENOMEM;
    policy_entry *tmp = NULL;
    for (int l = 0; rc == KV_OK && l < L; l++)
        for (int k = 0; rc == KV_OK && k < K; k++) {
            const policy *p = live_policy(lv, l, k);
            char desc[256] = "";
            if (p) {
                policy_describe(p, desc, sizeof desc);
                rc = kept_set_put(ks, l, k, policy_entries(p), policy_size(p), desc, err);
                continue;
            }
            const int n = kv_cache_size(c, l, k);
            policy_entry *t = realloc(tmp, (size_t)(n > 0 ? n : 1) * sizeof *t);
            if (!t) {
                rc = kv_errorf(err, KV_ENOMEM, "out of memory");
                break;
            }
            tmp = t;
            for (int i = 0; i < n; i++)
                tmp[i] = (policy_entry){.position = kv_cache_positions(c, l, k)[i]};
            rc = kept_set_put(ks, l, k, tmp, n, NULL, err);
        }
    if (rc == KV_OK)
        rc = kept_set_write(ks, o->kept, o->streams, err);
    free(tmp);
    kept_set_free(ks);
    return rc;
}

/* Generate after ids[0..n_prompt); the policy's prompt is the first n_compress of them
 * (all of them, or the context before a question), and a budget fraction resolves
 * against `resolve_len`. */
static int generate(session *s, const session_options *o, policy_config *cfg,
                    const options *opt, const int32_t *ids, int n_prompt, int n_compress,
                    int resolve_len, kv_err *err)
{
    const int n_ctx = model_config_of(s->model)->n_ctx;
    const int T = n_prompt + o->max_new < n_ctx ? n_prompt + o->max_new : n_ctx;
    policy_config_resolve(cfg, resolve_len);
    cfg->prompt_len = n_compress;
    live *lv = live_new(s->model, s->tok, cfg, T, err);
    if (!lv)
        return err->code;
    live_output out = {0};
    int rc = live_set_reposition(lv, opt->reposition, err);
    if (rc == KV_OK)
        rc = live_generate(lv, s->sampler, ids, n_prompt, o->max_new, print_token,
                           s->tok, &out, err);
    printf("\n");
    fflush(stdout);
    if (rc == KV_OK)
        print_stats(cfg, n_prompt, &out, live_streams(lv));
    if (rc == KV_OK && (opt->kept || opt->streams))
        rc = write_kept(lv, opt, err);
    live_output_free(&out);
    live_free(lv);
    return rc;
}

/* The questions file: its non-blank lines (pointers into text, NUL-terminated) and the
 * token ids of each after the context, all in one array; q[i] starts at at[i]. */
typedef struct questions {
    char          *text;
    char         **line;
    size_t        *at;    /* (n + 1,) offsets into ids */
    tokenizer_ids  ids;
    int            n;
} questions;

static void questions_free(questions *q)
{
    free(q->text);
    free(q->line);
    free(q->at);
    tokenizer_ids_free(&q->ids);
}

static int read_questions(const session *s, const char *path, questions *q, kv_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kv_errorf(err, KV_EIO, "%s: cannot open the questions file", path);
    size_t len;
    q->text = input_read_all(fp, path, &len, err);
    fclose(fp);
    if (!q->text)
        return err->code;
    q->line = calloc(len + 1, sizeof *q->line);
    q->at = calloc(len + 2, sizeof *q->at);
    int rc = q->line && q->at ? KV_OK : kv_errorf(err, KV_ENOMEM, "out of memory");
    for (char *line = q->text, *next; rc == KV_OK && line < q->text + len; line = next) {
        next = line + strcspn(line, "\n");
        *next++ = '\0';
        if (!line[strspn(line, " \t\r")])
            continue;   /* blank lines separate nothing */
        q->line[q->n++] = line;
        rc = tokenizer_encode(s->tok, line, strlen(line), 0, &q->ids, err);
        q->at[q->n] = q->ids.n;
    }
    if (rc == KV_OK && !q->n)
        rc = kv_errorf(err, KV_EUSAGE, "%s: no question (one per line)", path);
    return rc;
}

/* The context prefilled again before each question. */
static int ask_prefilling(session *s, const session_options *o, const policy_config *cfg,
                          const options *opt, const questions *q, kv_err *err)
{
    const int n_context = (int)s->prompt.n;
    int32_t *ids = malloc((n_context + q->ids.n + 1) * sizeof *ids);
    int rc = ids ? KV_OK : kv_errorf(err, KV_ENOMEM, "out of memory for a question");
    for (int i = 0; rc == KV_OK && i < q->n; i++) {
        const int n_q = (int)(q->at[i + 1] - q->at[i]);
        memcpy(ids, s->prompt.ids, (size_t)n_context * sizeof *ids);
        memcpy(ids + n_context, q->ids.ids + q->at[i], (size_t)n_q * sizeof *ids);
        printf("Q: %s\nA: ", q->line[i]);
        policy_config c = *cfg;
        rc = generate(s, o, &c, opt, ids, n_context + n_q, n_context, n_context, err);
    }
    free(ids);
    return rc;
}

/* The context fed once; after each answer the cache goes back to it (live_rewind).
 * *done = 0 when the policy could still evict after the context (then prefill). */
static int ask_rewinding(session *s, const session_options *o, policy_config cfg,
                         const options *opt, const questions *q, int *done, kv_err *err)
{
    const int n_context = (int)s->prompt.n, n_ctx = model_config_of(s->model)->n_ctx;
    size_t longest = 0;
    for (int i = 0; i < q->n; i++)
        longest = q->at[i + 1] - q->at[i] > longest ? q->at[i + 1] - q->at[i] : longest;
    const long want = (long)n_context + (long)longest + o->max_new;
    policy_config_resolve(&cfg, n_context);
    cfg.prompt_len = n_context;
    live *lv = live_new(s->model, s->tok, &cfg, want < n_ctx ? (int)want : n_ctx, err);
    if (!lv)
        return err->code;
    int rc = live_prefill(lv, s->prompt.ids, n_context, err);
    *done = rc == KV_OK && live_mark(lv);
    if (*done)
        fprintf(stderr, "context: %d tokens fed once; the cache is rewound to it after each "
                "answer\n", n_context);
    for (int i = 0; rc == KV_OK && *done && i < q->n; i++) {
        const int n_q = (int)(q->at[i + 1] - q->at[i]);
        live_output out = {0};
        printf("Q: %s\nA: ", q->line[i]);
        rc = live_generate(lv, s->sampler, q->ids.ids + q->at[i], n_q, o->max_new,
                           print_token, s->tok, &out, err);
        printf("\n");
        fflush(stdout);
        if (rc == KV_OK)
            print_stats(&cfg, n_context + n_q, &out, live_streams(lv));
        if (rc == KV_OK && i == q->n - 1 && (opt->kept || opt->streams))
            rc = write_kept(lv, opt, err);
        live_output_free(&out);
        if (rc == KV_OK)
            rc = live_rewind(lv, err);
    }
    live_free(lv);
    return rc;
}

/* --context/--questions: each line of the questions file after the context. */
static int ask_questions(session *s, const session_options *o, const policy_config *cfg,
                         const options *opt, kv_err *err)
{
    questions q = {0};
    int rc = read_questions(s, opt->questions, &q, err), done = 0;
    if (rc == KV_OK && !opt->reprefill && !opt->reposition)
        rc = ask_rewinding(s, o, *cfg, opt, &q, &done, err);
    if (rc == KV_OK && !done)
        rc = ask_prefilling(s, o, cfg, opt, &q, err);
    questions_free(&q);
    return rc;
}

/* Does the run evict (a --policy other than full)?  The GPU holds the full cache only. */
static int cfg_evicts(const policy_args *params)
{
    const char *name = policy_args_get(params, "policy");
    return (name && strcmp(name, "full") != 0) || policy_args_get(params, "score");
}

typedef struct generate_cli {
    session_options so;
    options         o;
    policy_args     params;
} generate_cli;

static int run(void *ctx, kv_err *err)
{
    generate_cli *c = ctx;
    policy_config cfg = policy_config_default();
    int rc = KV_OK;
    if (!c->o.context != !c->o.questions)
        rc = kv_errorf(err, KV_EUSAGE, "--context and --questions go together");
    else if (c->o.context && (c->so.prompt || c->so.prompt_file || c->so.chat))
        rc = kv_errorf(err, KV_EUSAGE, "--context replaces PROMPT and --prompt-file, and "
                       "does not take --chat");
    else if (c->o.context)
        c->so.prompt_file = c->o.context;
    if (rc == KV_OK)
        rc = session_check(&c->so, err);
    const int evicts = cfg_evicts(&c->params);
    if (rc == KV_OK && evicts && c->so.device && !strcmp(c->so.device, "cuda"))
        rc = kv_errorf(err, KV_EUSAGE, "--device cuda runs the full cache only: live eviction "
                       "runs on the CPU (--device cpu or auto)");
    if (evicts && c->so.device && !strcmp(c->so.device, "auto"))
        c->so.device = "cpu";   /* auto: where an evicting policy can run */
    const char *inputs[] = {c->so.model, c->so.prompt_file, c->o.questions};
    const char *outputs[] = {c->o.kept, c->o.streams};
    if (rc == KV_OK)
        rc = out_check_all(outputs, 2, inputs, 3, err);
    if (rc == KV_OK)
        rc = policy_config_apply(&cfg, &c->params, err);
    cfg.seed = c->so.sampling.seed;
    session s = {0};
    if (rc == KV_OK)
        rc = session_open(&s, &c->so, err);
    if (rc == KV_OK && c->o.context)
        rc = ask_questions(&s, &c->so, &cfg, &c->o, err);
    else if (rc == KV_OK)
        rc = generate(&s, &c->so, &cfg, &c->o, s.prompt.ids, (int)s.prompt.n,
                      (int)s.prompt.n, (int)s.prompt.n + c->so.max_new, err);
    session_close(&s);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    generate_cli c = {.so = session_options_default()};
    const opts_command cmd = {
        .prog = "kvtrace generate",
        .usage = "kvtrace generate MODEL.gguf PROMPT --policy P --budget B [options]\n"
                 "       kvtrace generate MODEL.gguf --context FILE --questions FILE "
                 "--policy P --budget B",
        .about = "Generate a continuation of PROMPT while an eviction policy keeps each "
                 "(layer, KV\nhead) cache within budget B, seeing the real attention over "
                 "the kept entries.\nThe text streams to stdout; kept entries, KV bytes, "
                 "TTFT and decode speed\ngo to stderr.",
        .groups = {{"options", generate_rows, &c.o},
                   {"session options", session_options_rows, &c.so}},
        .positional = {&c.so.model, &c.so.prompt},
        .other = policy_args_take,
        .other_ctx = &c.params,
        .other_help = "policy parameters (any of `kvsim policies`, as --key value):\n"
                      "  --policy P          full, streaming, h2o, mas, roco, tova, snapkv, ...\n"
                      "  --budget B          0.4 = a fraction of prompt + max new tokens; "
                      "512 = entries\n"
                      "  --stride S          evict S entries at once when the cache holds B + S\n"
                      "  --phase PH          stream (default), oneshot, decode\n"
                      "  --seed S            seeds both the sampler and the policy",
        .footer = "exit status: 0 success, 1 unreadable model or a prompt longer than the "
                  "context,\n2 bad usage (unknown policy, bad budget, budget above the "
                  "context)\nexample:\n  kvtrace generate "
                  "models/SmolLM2-135M-Instruct.Q4_1.gguf \"Tell me a story\" --chat "
                  "--policy roco --budget 0.4\n  kvtrace generate "
                  "models/SmolLM2-135M-Instruct.Q4_1.gguf --context doc.txt --questions q.txt "
                  "\\\n      --policy snapkv-kvpress --budget 0.5\n",
    };
    return opts_main(&cmd, argc, argv, run, &c);
}
