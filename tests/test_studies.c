/*
 * test_studies.c — regressions of issue #18 ("nine wrong outputs"), each reproducing
 * what was wrong through the commands a researcher runs: labels that must join,
 * parameters that must be refused, memory that must follow the kept cache, budgets
 * that must hold on average.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_shell.h"

/* Field `col` (0-based) of the first CSV line whose second field is `policy`, into
 * buf; NULL when there is none. */
static const char *field_of(const char *csv, const char *policy, int col, char *buf,
                            size_t len)
{
    char key[64];
    snprintf(key, sizeof key, ",%s,", policy);
    for (const char *line = csv; line && *line; line = strchr(line, '\n'), line += !!line) {
        const char *comma = strchr(line, ',');
        if (!comma || strncmp(comma, key, strlen(key)))
            continue;
        const char *f = line;
        for (int c = 0; c < col && f; c++)
            f = strchr(f, ',') + 1;
        size_t n = strcspn(f, ",\n");
        snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), f);
        return buf;
    }
    return NULL;
}

/* Index of column `name` in a CSV header; -1 when absent. */
static int column_of(const char *csv, const char *name)
{
    int c = 0;
    size_t n = strlen(name);
    for (const char *f = csv; *f && *f != '\n'; c++) {
        if (!strncmp(f, name, n) && (f[n] == ',' || f[n] == '\n'))
            return c;
        f += strcspn(f, ",\n");
        f += *f == ',';
    }
    return -1;
}

/* (2) snapkv and pyramidkv carry one phase label in replay and in confirm, so that
 * `kvsim confirm predict` joins their lines. */
Test(studies, snapkv_phase_label_joins_replay_and_confirm)
{
    char cmd[4096], out[16384];
    const char *bin = getenv("KV_BIN"), *model = test_model(), *root = getenv("KV_ROOT");
    const int id = (int)getpid();
    snprintf(cmd, sizeof cmd,
             "%s/kvsim sweep %s --policies snapkv,pyramidkv --budgets 32 --metrics mass "
             "-o /tmp/kv_st_sim_%d.csv 2>/dev/null && "
             "%s/kvsim confirm ppl %s %s/data/lighthouses.txt --max-tokens 48 --prompt-tokens "
             "40 --policies snapkv,pyramidkv --budgets 32 --threads 1 -o /tmp/kv_st_real_%d.csv "
             "2>/dev/null && %s/kvsim confirm predict /tmp/kv_st_sim_%d.csv "
             "/tmp/kv_st_real_%d.csv --sim-metric mass --real-metric ppl 2>&1; s=$?; "
             "grep -h ',snapkv,' /tmp/kv_st_real_%d.csv; rm -f /tmp/kv_st_*_%d.csv; exit $s",
             bin, test_trace(), id, bin, model, root, id, bin, id, id, id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "mass,ppl,32,2,"), "both policies join at B = 32:\n%s", out);
    cr_assert(strstr(out, ",oneshot,"), "%s", out);
}

/* (4) pace's stride is adaptive: a --strides list is refused, not written as lines
 * labelled with strides pace never used. */
Test(studies, pace_refuses_strides)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model();
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm passkey %s --policies pace --budgets 32 "
             "--lengths 96 --depths 0.5 --seeds 1 --max-new-tokens 2 --strides 1,4 "
             "--threads 1 2>&1", bin, model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "pace") && strstr(out, "'stride' does not apply") &&
              strstr(out, "stride-max"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvsim sweep %s --policies pace --budgets 32 --strides 1,4 "
             "--metrics mass 2>&1", bin, test_trace());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "'stride' does not apply"), "%s", out);
    /* without --strides pace runs, at its own stride-max */
    snprintf(cmd, sizeof cmd, "%s/kvsim sweep %s --policies pace --budgets 32 --metrics mass "
             "2>/dev/null | grep -c ',pace,.*,32,32,8,stream,'", bin, test_trace());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
}

/* (7) A one-shot compression frees the prompt it compressed: after snapkv keeps 32 of
 * ~84 prompt entries, the cache holds about B + the tokens to come, not the prompt. */
Test(studies, oneshot_compression_frees_memory)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model(), *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "%s/kvtrace generate %s --prompt-file "
             "%s/tests/fixtures/trace_prompt.txt --max-new-tokens 4 --threads 1 "
             "--policy %%s --budget 32 2>&1 >/dev/null | grep 'KV bytes'", bin, model, root);
    char line[4200];
    size_t bytes[2][3];
    const char *names[2] = {"full", "snapkv"};
    for (int i = 0; i < 2; i++) {
        snprintf(line, sizeof line, cmd, names[i]);
        cr_assert_eq(test_shell(line, out, sizeof out), 0, "%s", out);
        cr_assert_eq(sscanf(out, "KV bytes (allocator): %zu final, %zu peak after the prompt, "
                            "%zu while", &bytes[i][0], &bytes[i][1], &bytes[i][2]), 3, "%s", out);
    }
    /* the prompt of ~84 tokens is held once by both, while it is fed */
    cr_assert_eq(bytes[1][2], bytes[0][2], "prefill: snapkv %zu, full %zu", bytes[1][2],
                 bytes[0][2]);
    /* then snapkv holds 32 + 4 entries per stream: well under half of full's ~88 */
    cr_assert_lt(bytes[1][0] * 2, bytes[0][0], "final: snapkv %zu, full %zu", bytes[1][0],
                 bytes[0][0]);
    cr_assert_eq(bytes[1][1], bytes[1][0], "nothing grows after the fit");
}

/* (3) kv_bytes_peak of `kvsim confirm` is what the compressed cache holds: below the
 * full cache's for snapkv, fastgen and knorm on a passkey prompt. */
Test(studies, confirm_bytes_follow_the_compressed_cache)
{
    char cmd[4096], out[8192], a[64], b[64];
    const char *bin = getenv("KV_BIN"), *model = test_model();
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm passkey %s --policies snapkv,fastgen,knorm "
             "--budgets 32 --lengths 128 --depths 0.5 --seeds 1 --max-new-tokens 2 "
             "--threads 1 2>/dev/null", bin, model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    const int col = column_of(out, "kv_bytes_peak");
    cr_assert_geq(col, 0, "%s", out);
    cr_assert_not_null(field_of(out, "full", col, a, sizeof a), "%s", out);
    const char *pol[] = {"snapkv", "fastgen", "knorm"};
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(field_of(out, pol[i], col, b, sizeof b), "%s", out);
        cr_assert_lt(strtod(b, NULL), strtod(a, NULL), "%s %s vs full %s:\n%s", pol[i], b, a,
                     out);
    }
}

/* (6) A budget is a budget: knorm by default keeps no layer whole, so at equal B it
 * holds the cache h2o holds (mean_cache of the overall lines), not 7-27% more. */
Test(studies, knorm_default_meets_the_budget)
{
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s/kvsim sweep %s --policies knorm,h2o --budgets 32 "
             "--metrics mass --json - -o /dev/null 2>/dev/null | grep -o '\"policy\": \"[a-z0-9]*\"\\|"
             "\"mean_cache\": [0-9.]*'", getenv("KV_BIN"), test_trace());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\"policy\": \"knorm\"\n\"mean_cache\": 33\n\"policy\": \"h2o\"\n"
                          "\"mean_cache\": 33\n"), "%s", out);
    /* the paper's skip-layers 2 keeps more than B, and the replay says so loudly */
    snprintf(cmd, sizeof cmd, "%s/kvsim replay %s --policy knorm --skip-layers 2 --budget 32 "
             "--metrics mass -o /dev/null 2>&1", getenv("KV_BIN"), test_trace());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "NOTE: knorm at budget 32 keeps layers 0..1 whole"), "%s", out);
}

/* (5) fastgen sizes its own cache: a budget >= T is no "equals full" note; each
 * stream's chosen profile is reported, and a profile short of full recovered at least
 * the recovery threshold T on the prompt. */
Test(studies, fastgen_reports_its_profiles_not_equals_full)
{
    char cmd[4096], out[16384];
    const int id = (int)getpid();
    snprintf(cmd, sizeof cmd, "%s/kvsim replay %s --policy fastgen --budget 200 --metrics mass "
             "-o /dev/null --streams /tmp/kv_fg_%d.csv 2>&1; cat /tmp/kv_fg_%d.csv; "
             "rm -f /tmp/kv_fg_%d.csv", getenv("KV_BIN"), test_trace(), id, id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_null(strstr(out, "equals full"), "%s", out);
    const char *line = strstr(out, "layer,kv_head,kept,profile,recovered\n");
    cr_assert_not_null(line, "%s", out);
    int streams = 0, short_of_full = 0;
    for (line = strchr(line, '\n') + 1; *line; line = strchr(line, '\n') + 1, streams++) {
        int l, k, n;
        char profile[16];
        double rec;
        cr_assert_eq(sscanf(line, "%d,%d,%d,%15[a-z],%lf", &l, &k, &n, profile, &rec), 5,
                     "%.60s", line);
        cr_assert(strstr(" special punct frequent local full ", profile), "%s", profile);
        if (strcmp(profile, "full")) {
            short_of_full++;
            cr_assert_geq(rec, 0.95, "layer %d head %d: %s recovered %g", l, k, profile, rec);
        }
    }
    cr_assert_eq(streams, 90, "30 layers x 3 KV heads");
    cr_assert_gt(short_of_full, 0, "some heads compress: %s", out);
}

/* (9) The kept set after a one-shot compression, from replay and from live generation
 * of the trace's own prompt: snapkv votes on the same full-cache rows in both, so the
 * two tools keep the same positions (32 of the prompt + the 24 generated, per stream). */
Test(studies, kept_set_agrees_between_replay_and_live)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *root = getenv("KV_ROOT");
    const int id = (int)getpid();
    snprintf(cmd, sizeof cmd,
             "%s/kvsim replay %s --policy snapkv --budget 32 --metrics mass -o /dev/null "
             "--kept /tmp/kv_kr_%d.csv 2>/dev/null && "
             "%s/kvtrace generate %s --prompt-file %s/tests/fixtures/trace_prompt.txt "
             "--max-new-tokens 24 --threads 1 --policy snapkv --budget 32 "
             "--kept /tmp/kv_kg_%d.csv >/dev/null 2>&1 && "
             "cmp /tmp/kv_kr_%d.csv /tmp/kv_kg_%d.csv && head -1 /tmp/kv_kr_%d.csv && "
             "grep -c '^7,1,' /tmp/kv_kr_%d.csv; s=$?; rm -f /tmp/kv_k[rg]_%d.csv; exit $s",
             bin, test_trace(), id, bin, test_model(), root, id, id, id, id, id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "layer,kv_head,position\n56\n");
}

/* (9) A heatmap of a trace takes the policy's parameters (was: "unknown or incomplete
 * option" for --phase). */
Test(studies, heatmap_takes_policy_parameters)
{
    char cmd[4096], out[8192];
    const int id = (int)getpid();
    snprintf(cmd, sizeof cmd, "%s/kvsim plot heatmap %s --layer 3 --head 0 --policy adakv "
             "--budget 32 --phase oneshot -o /tmp/kv_hm_%d.svg 2>&1 && "
             "awk -F, 'NR > 1 && $1 == 100 && $4 == 1' /tmp/kv_hm_%d.csv | wc -l; "
             "rm -f /tmp/kv_hm_%d.svg /tmp/kv_hm_%d.csv", getenv("KV_BIN"), test_trace(), id,
             id, id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "wrote"), "%s", out);
    /* query 100 attended part of its 101 keys: the one-shot plan evicted the rest */
    const char *last = strchr(strstr(out, "wrote"), '\n');
    const int kept = last ? atoi(last + 1) : -1;
    cr_assert(kept > 24 && kept < 101, "kept %d at t = 100:\n%s", kept, out);
}

/* (1) `kvsim plot sweep` draws each configuration it is given: h2o and its oracle at
 * strides 1 and 16 are four lines with their own legend entries (they were averaged
 * into one line per policy). */
Test(studies, plot_sweep_draws_each_configuration)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN");
    const int id = (int)getpid();
    snprintf(cmd, sizeof cmd,
             "%s/kvsim sweep synth:T=128,layers=1,heads=2,kv=1,dim=8,seed=2 --policies h2o "
             "--budgets 16,32 --strides 1,16 --metrics overlap,oracle_gap "
             "-o /tmp/kv_sw_%d.csv 2>/dev/null && %s/kvsim plot sweep /tmp/kv_sw_%d.csv "
             "--metric overlap -o /tmp/kv_sw_%d.svg 2>/dev/null && "
             "grep -o '<text[^>]*>[^<]*</text>' /tmp/kv_sw_%d.svg | sed 's/<[^>]*>//g' | "
             "grep -x 'h2o s=1\\|h2o s=16\\|oracle s=1\\|oracle s=16\\|h2o\\|oracle'; "
             "s=$?; rm -f /tmp/kv_sw_%d.*; exit $s", bin, id, bin, id, id, id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "h2o s=1\nh2o s=16\noracle s=1\noracle s=16\n");
}

/* Study A (`kvsim confirm study`): full first as the 100% reference, each method's row
 * with its % of full; a method's compressed cache holds fewer bytes than full's. */
Test(studies, kvcompress_study_table)
{
    char cmd[4096], out[8192], v[64];
    const char *bin = getenv("KV_BIN"), *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm study %s %s/data/lighthouses.txt --budgets 16 "
             "--max-tokens 32 --prompt-tokens 20 --max-new-tokens 2 --threads 1 "
             "--policies StreamingLLM,SnapKV-Lite 2>/dev/null", bin, test_model(), root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(!strncmp(out, "text,method,policy,budget,tokens,ppl,accuracy,ttft_s,tpot_s,"
                            "tokens_per_s,kv_bytes,mean_cache,ppl_pct,accuracy_pct,ttft_pct,"
                            "tpot_pct,tokens_per_s_pct,kv_bytes_pct,verdict\n", 150), "%s", out);
    const int pct = column_of(out, "kv_bytes_pct"), ver = column_of(out, "verdict");
    cr_assert_str_eq(field_of(out, "full", pct, v, sizeof v), "100");
    cr_assert_str_eq(field_of(out, "full", ver, v, sizeof v), "reference");
    cr_assert_lt(strtod(field_of(out, "StreamingLLM", pct, v, sizeof v), NULL), 100, "%s", out);
    cr_assert_lt(strtod(field_of(out, "SnapKV-Lite", pct, v, sizeof v), NULL), 100, "%s", out);
    cr_assert_eq(column_of(out, "ppl"), 5);
    /* a parameter the methods set themselves is refused */
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm study %s %s/data/lighthouses.txt --window 8 "
             "2>&1", bin, test_model(), root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
}

/* Study B (`kvsim confirm fastgen-memory`): per (layer, KV head) lines with the chosen
 * profile, a line per layer summing its heads, and the mean line; fastgen keeps at most
 * what was fed, and a head that chose `full` kept everything. */
Test(studies, fastgen_memory_table)
{
    char cmd[4096], out[32768];
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm fastgen-memory %s %s/data/fastgen_prompt.txt "
             "--max-new-tokens 4 --threads 1 2>/dev/null", getenv("KV_BIN"), test_model(),
             getenv("KV_ROOT"));
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(!strncmp(out, "source,layer,kv_head,raw_entries,kept_entries,raw_mb,compressed_mb,"
                            "saving_pct,profile,recovered\n", 95), "%s", out);
    int lines = 0, heads = 0, layer_kept = 0, sum_kept = 0;
    for (const char *l = strchr(out, '\n') + 1; *l; l = strchr(l, '\n') + 1, lines++) {
        char layer[8], head[8], profile[16] = "";
        int raw, kept;
        cr_assert_geq(sscanf(l, "live,%7[^,],%7[^,],%d,%d,%*[^,],%*[^,],%*[^,],%15[a-z]", layer,
                             head, &raw, &kept, profile), 4, "%.80s", l);
        cr_assert_leq(kept, raw, "%.80s", l);
        if (!strcmp(head, "all")) {
            layer_kept = kept;
            if (strcmp(layer, "mean"))
                cr_assert_eq(layer_kept, sum_kept, "layer %s", layer);
            sum_kept = 0;
            continue;
        }
        heads++;
        sum_kept += kept;
        cr_assert(strstr(" special punct frequent local full ", profile), "%.80s", l);
        if (!strcmp(profile, "full"))
            cr_assert_eq(kept, raw, "%.80s", l);
    }
    cr_assert_eq(heads, 90);
    cr_assert_eq(lines, 90 + 30 + 1);
}

/* Study C (`kvsim confirm passkey-study`): the budget sweep at stride 1, then the
 * stride sweep at one budget with pace on it.  roco evicts exactly its stride at once
 * (mean_block), pace a mean block within its range [1, 8].  (Its cost column is a
 * wall time: measured by the study, never asserted by a test.) */
Test(studies, passkey_study_sweeps_budget_and_stride)
{
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm passkey-study %s --lengths 80 --depths 0.5 "
             "--seeds 1 --budgets 32 --stride-budget 40 --strides 1,8 --max-new-tokens 2 "
             "--threads 1 2>/dev/null | cut -d, -f2,8,9,19,22", getenv("KV_BIN"),
             test_model());
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(!strncmp(out, "policy,budget,stride,mean_block,stride_sweep\nfull,0,1,", 52),
              "%s", out);
    cr_assert(strstr(out, "\nroco,32,1,1,0\n") && strstr(out, "\nroco,40,1,1,1\n") &&
              strstr(out, "\nroco,40,8,8,1\n"), "%s", out);
    double block;
    const char *pace = strstr(out, "\npace,40,8,");
    cr_assert(pace && sscanf(pace, "\npace,40,8,%lf", &block) == 1, "%s", out);
    cr_assert(block >= 1 && block <= 8, "pace's mean block %g", block);
}

/* Study D: tasks with reference answers.  A PROMPT<TAB>REFERENCE line is scored against
 * its reference (the *_ref columns), the full cache's answer too; a file without
 * references leaves the columns empty. */
Test(studies, fidelity_scores_against_reference_answers)
{
    char cmd[4096], out[8192], v[64];
    const int id = (int)getpid();
    snprintf(cmd, sizeof cmd, "printf 'Name the planet closest to the Sun.\\tMercury is the "
             "planet closest to the Sun.\\n' > /tmp/kv_ref_%d.tsv && %s/kvsim confirm fidelity "
             "%s /tmp/kv_ref_%d.tsv --policies streaming --budgets 12 --max-new-tokens 12 "
             "--threads 1 2>/dev/null; rm -f /tmp/kv_ref_%d.tsv", id, getenv("KV_BIN"),
             test_model(), id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    const int col = column_of(out, "rouge_l_ref");
    cr_assert_geq(col, 0, "%s", out);
    const double full = strtod(field_of(out, "full", col, v, sizeof v), NULL);
    cr_assert(full > 0 && full <= 1, "the full cache's answer names Mercury: %s", out);
    cr_assert_not_null(field_of(out, "streaming", col, v, sizeof v));
    snprintf(cmd, sizeof cmd, "printf 'Name three colours.\\n' > /tmp/kv_ref_%d.txt && "
             "%s/kvsim confirm fidelity %s /tmp/kv_ref_%d.txt --policies streaming --budgets 12 "
             "--max-new-tokens 4 --threads 1 2>/dev/null; rm -f /tmp/kv_ref_%d.txt", id,
             getenv("KV_BIN"), test_model(), id, id);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(field_of(out, "full", column_of(out, "rouge_l_ref"), v, sizeof v), "");
}
