/*
 * test_confirm.c — the confirmation experiments (`kvsim confirm`, docs/CONFIRM.md) on
 * the real model, kept to a few dozen tokens each: perplexity against the recorder's
 * own log-probabilities, a budget covering the text equals the full cache, the CSV
 * and JSON agree, and bad input is refused.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "perplexity.h"
#include "trace_file.h"
#include "test_shell.h"

static int count(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* Full-cache perplexity over the shared trace's tokens is the recorder's: both feed
 * chunks of 64 and score the same logits (recorder.h (3)). */
Test(confirm, full_perplexity_matches_the_recorded_logprobs)
{
    kv_err err = {0};
    trace *tr = trace_open(test_trace(), &err);
    cr_assert_not_null(tr, "%s", err.msg);
    const trace_tokens *tok = trace_get_tokens(tr);
    const int T = (int)trace_get_meta(tr)->steps;
    double nll = 0;
    for (int t = 0; t + 1 < T; t++)
        nll -= tok->logprob_next[t];
    model_set_threads(1);
    model *m = model_open(test_model(), &err);
    cr_assert_not_null(m, "%s", err.msg);
    policy_config cfg = policy_config_default();
    cfg.prompt_len = 1;
    perplexity_result r;
    cr_assert_eq(perplexity_run(m, NULL, tok->id, T, &cfg, 0, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.tokens, T - 1);
    cr_assert_float_eq(r.nll, nll, 1e-3 * nll, "%f vs the trace's %f", r.nll, nll);
    cr_assert_eq(r.tail_tokens, r.tokens, "no budget: every prediction is in the tail");
    model_free(m);
    trace_close(tr);
}

/* A CSV line per configuration (full once), JSON with the same rows, a budget
 * covering the text equal to full, and a small one that evicts. */
Test(confirm, ppl_cli_writes_matching_csv_and_json)
{
    char cmd[4096], out[8192], json[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model(), *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm ppl %s %s/data/lighthouses.txt --policies "
             "full,streaming --budgets 40,8 --max-tokens 40 --threads 1 --sinks 2 "
             "--json /tmp/kv_confirm_%d.json 2>/dev/null", bin, model, root, (int)getpid());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(!strncmp(out, "trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,"
                            "phase,tokens,ppl,accuracy", 60), "%s", out);
    cr_assert_eq(count(out, "\n"), 4, "header + full + 2 budgets:\n%s", out);
    double ppl[3];
    const char *line = strchr(out, '\n') + 1;
    for (int i = 0; i < 3; i++, line = strchr(line, '\n') + 1) {
        const char *f = line;
        for (int c = 0; c < 11; c++)
            f = strchr(f, ',') + 1;
        ppl[i] = strtod(f, NULL);
    }
    cr_assert_eq(ppl[1], ppl[0], "B = 40 covers the 40 tokens: %g vs full %g", ppl[1], ppl[0]);
    cr_assert_neq(ppl[2], ppl[0], "B = 8 evicts");
    snprintf(cmd, sizeof cmd, "cat /tmp/kv_confirm_%d.json; rm -f /tmp/kv_confirm_%d.json",
             (int)getpid(), (int)getpid());
    cr_assert_eq(test_shell(cmd, json, sizeof json), 0);
    cr_assert_eq(count(json, "\"policy\": "), 3, "%s", json);
    cr_assert(strstr(json, "\"budget_arg\": \"8\", \"budget\": 8"), "%s", json);
}

Test(confirm, ppl_rejects_bad_input)
{
    char cmd[4096], out[4096];
    const char *bin = getenv("KV_BIN"), *model = test_model(), *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "printf '  \\n' > /tmp/kv_empty_%d.txt && %s/kvsim confirm ppl %s "
             "/tmp/kv_empty_%d.txt --budgets 8 2>&1; status=$?; rm -f /tmp/kv_empty_%d.txt; "
             "exit $status", (int)getpid(), bin, model, (int)getpid(), (int)getpid());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "empty text file"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm ppl %s %s/data/lighthouses.txt --policies "
             "nosuch --budgets 8 2>&1", bin, model, root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "nosuch") && strstr(out, "streaming"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm ppl %s %s/data/lighthouses.txt --policies "
             "h2o 2>&1", bin, model, root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--budgets"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm nosuch 2>&1", bin);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "ppl"), "%s", out);
    /* an unwritable output is refused before the model runs */
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm ppl %s %s/data/lighthouses.txt --policies h2o "
             "--budgets 8 -o /nonexistent/dir/ppl.csv 2>&1", bin, model, root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "/nonexistent/dir/ppl.csv: cannot create"), "%s", out);
}

/* passkey end to end: the full cache runs first and calibrates the length */
Test(confirm, passkey_cli_calibrates_with_the_full_cache)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model();
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm passkey %s --policies streaming --budgets 32 "
             "--lengths 96 --depths 0.5 --seeds 1 --max-new-tokens 4 --threads 1 "
             "-o /tmp/kv_pk_%d.csv 2>&1 | grep 'passkey: full'; rm -f /tmp/kv_pk_%d.csv", bin,
             model, (int)getpid(), (int)getpid());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "length 96: ") && (strstr(out, "(calibrated)") ||
                                               strstr(out, "(below 90%")), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm passkey %s --policies streaming --budgets 32 "
             "--lengths 96 --depths 0.5 --seeds 1 --max-new-tokens 4 --threads 1 2>/dev/null",
             bin, model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, ",length,depth,trials,accuracy,"), "%s", out);
    cr_assert(strstr(out, "\npasskey,full,") && strstr(out, "\npasskey,streaming,"), "%s", out);
    cr_assert_eq(count(out, "\n"), 3, "%s", out);
}

/* fidelity end to end: full against itself is perfect, a tiny budget is not */
Test(confirm, fidelity_cli_scores_full_as_perfect)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model();
    snprintf(cmd, sizeof cmd, "printf 'Name three colours.\\n' > /tmp/kv_fid_%d.txt && "
             "%s/kvsim confirm fidelity %s /tmp/kv_fid_%d.txt --policies streaming --budgets 12 "
             "--max-new-tokens 8 --threads 1 2>/dev/null; rm -f /tmp/kv_fid_%d.txt", (int)getpid(),
             bin, model, (int)getpid(), (int)getpid());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, ",prompts,rouge_l,bleu,bleu_corpus,meteor,token_agreement,"), "%s", out);
    const char *full = strstr(out, ",full,");
    cr_assert_not_null(full, "%s", out);
    cr_assert(strstr(full, ",stream,1,1,100,100,"), "full: ROUGE-L 1, BLEU 100: %s", out);
    cr_assert_eq(count(out, "\n"), 3, "%s", out);
}

/* reconstruct end to end: a passage repeated with the full cache and a small one */
Test(confirm, reconstruct_cli_scores_against_the_passage)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model(), *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm reconstruct %s %s/data/lighthouses.txt "
             "--policies streaming --budgets 24 --passage-tokens 16 --passages 1 --threads 1 "
             "2>/dev/null", bin, model, root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, ",passages,rouge_l,bleu,bleu_corpus,generated,"), "%s", out);
    cr_assert(strstr(out, "\nlighthouses.txt,full,") &&
              strstr(out, "\nlighthouses.txt,streaming,"), "%s", out);
}
