/*
 * cmd_confirm.c — `kvsim confirm EXPERIMENT MODEL [INPUT] [options]`: the command lines
 * of the experiments of confirm/confirm.h, one option table each, sharing the rows of
 * the configuration lists and the outputs.  What each measures: docs/CONFIRM.md.
 */
#include "commands.h"
#include "out.h"

#include "confirm.h"
#include "opts.h"
#include "plot.h"
#include "out.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Everything a confirm command line says. */
typedef struct confirm_cli {
    confirm_request              req;
    const char                  *policy_lib;
    confirm_ppl_options          ppl;
    confirm_passkey_options      passkey;
    confirm_fidelity_options     fidelity;
    confirm_reconstruct_options  reconstruct;
    confirm_predict_options      predict;
    confirm_study_options        study;
    confirm_fastgen_options      fastgen;
    confirm_passkey_study_options pstudy;
    char                         command[1024];
    const struct experiment     *experiment;
} confirm_cli;

#define C(field) offsetof(confirm_cli, field)
#define END {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL}

static int load_policy_lib(const char *path, kv_err *err) { return policy_lib_load(path, err); }

/* The configuration lists and what every generating experiment takes. */
static const opts_row shared_rows[] = {
    {"policies", 0, OPTS_TEXT, C(req.policies), "LIST", "policies (kvsim policies)", 0, 0, NULL},
    {"budgets", 0, OPTS_TEXT, C(req.budgets), "LIST",
     "64,128 entries, or fractions like 0.5 of the sequence", 0, 0, NULL},
    {"strides", 0, OPTS_TEXT, C(req.strides), "LIST", "entries evicted at once (default 1)", 0,
     0, NULL},
    {"reposition", 0, OPTS_FLAG, C(req.reposition), NULL,
     "re-rotate kept keys to positions 0..n-1 after each\neviction, the next token at "
     "position n (StreamingLLM)", 0, 0, NULL},
    {"output", 'o', OPTS_TEXT, C(req.csv), "FILE", "CSV (default stdout)", 0, 0, NULL},
    {"json", 0, OPTS_TEXT, C(req.json), "FILE", "the same rows as JSON", 0, 0, NULL},
    {"threads", 0, OPTS_INT, C(req.threads), "N", "CPU threads", 1, 1024, NULL},
    {"policy-lib", 0, OPTS_EARLY, C(policy_lib), "FILE.so",
     "load policies compiled against policies/policy.h", 0, 0, load_policy_lib},
    END,
};

static const opts_row ppl_rows[] = {
    {"max-tokens", 0, OPTS_INT, C(ppl.max_tokens), "N",
     "score the first N tokens of TEXT (default 1024)", 2, 1 << 30, NULL},
    {"prompt-tokens", 0, OPTS_INT, C(ppl.prompt_tokens), "P", "the first P tokens are the "
     "prompt (default 1): oneshot and\ndecode phases act at its end", 1, 1 << 30, NULL},
    END,
};

static const opts_row passkey_rows[] = {
    {"lengths", 0, OPTS_TEXT, C(passkey.lengths), "LIST", "prompt tokens (default 256)", 0, 0,
     NULL},
    {"depths", 0, OPTS_TEXT, C(passkey.depths), "LIST", "key depths in [0, 1] (default "
     "0.1,0.5,0.9)", 0, 0, NULL},
    {"seeds", 0, OPTS_INT, C(passkey.seeds), "N", "keys per (length, depth): seeds 1..N "
     "(default 3)", 1, 100000, NULL},
    {"max-new-tokens", 0, OPTS_INT, C(passkey.max_new), "N", "answer length (default 8)", 1,
     4096, NULL},
    END,
};

static const opts_row passkey_study_rows[] = {
    {"lengths", 0, OPTS_TEXT, C(passkey.lengths), "LIST", "prompt tokens (default 256)", 0, 0,
     NULL},
    {"depths", 0, OPTS_TEXT, C(passkey.depths), "LIST", "key depths (default 0.25,0.75)", 0,
     0, NULL},
    {"seeds", 0, OPTS_INT, C(passkey.seeds), "N", "keys per (length, depth) (default 2)", 1,
     100000, NULL},
    {"max-new-tokens", 0, OPTS_INT, C(passkey.max_new), "N", "answer length (default 8)", 1,
     4096, NULL},
    {"stride-policy", 0, OPTS_TEXT, C(pstudy.stride_policy), "P",
     "the stride sweep's policy (default roco)", 0, 0, NULL},
    {"stride-budget", 0, OPTS_TEXT, C(pstudy.stride_budget), "B",
     "the stride sweep's budget (default 96)", 0, 0, NULL},
    {"figure", 0, OPTS_TEXT, C(pstudy.figure), "FILE.png",
     "also draw the study's figure (kvsim plot passkey) from -o", 0, 0, NULL},
    END,
};

static const opts_row fidelity_rows[] = {
    {"max-new-tokens", 0, OPTS_INT, C(fidelity.max_new), "N", "answer length (default 48)", 1,
     4096, NULL},
    {"chat", 0, OPTS_INT, C(fidelity.chat), "0|1", "wrap each prompt as a chat message "
     "(default 1)", 0, 1, NULL},
    END,
};

static const opts_row reconstruct_rows[] = {
    {"passage-tokens", 0, OPTS_INT, C(reconstruct.passage_tokens), "N",
     "tokens per passage (default 96)", 4, 4096, NULL},
    {"passages", 0, OPTS_INT, C(reconstruct.passages), "N",
     "passages, consecutive from the start of TEXT (default 3)", 1, 64, NULL},
    END,
};

static const opts_row predict_rows[] = {
    {"sim-metric", 0, OPTS_TEXT, C(predict.sim_metric), "M", "column of SIM.csv (default mass)",
     0, 0, NULL},
    {"real-metric", 0, OPTS_TEXT, C(predict.real_metric), "M",
     "column of REAL.csv (default ppl)", 0, 0, NULL},
    {"rounds", 0, OPTS_INT, C(predict.rounds), "N", "bootstrap resamples (default 2000)", 1,
     1000000, NULL},
    {"seed", 0, OPTS_INT, C(predict.seed), "S", "bootstrap seed (default 1)", 0, 1 << 30, NULL},
    {"output", 'o', OPTS_TEXT, C(req.csv), "FILE", "CSV (default stdout)", 0, 0, NULL},
    {"json", 0, OPTS_TEXT, C(req.json), "FILE", "the same rows as JSON", 0, 0, NULL},
    {"points", 0, OPTS_TEXT, C(predict.points), "FILE", "also the joined pairs, for kvsim plot "
     "confirm; columns:\nsim_metric real_metric policy budget_arg stride phase sim real", 0, 0,
     NULL},
    END,
};

static const opts_row study_rows[] = {
    {"max-tokens", 0, OPTS_INT, C(study.max_tokens), "N",
     "perplexity over the first N tokens of TEXT (default 384)", 2, 1 << 30, NULL},
    {"prompt-tokens", 0, OPTS_INT, C(study.prompt_tokens), "P",
     "generation: the first P tokens are the prompt (default 128)", 1, 1 << 30, NULL},
    {"max-new-tokens", 0, OPTS_INT, C(study.max_new), "N",
     "generation: tokens generated for TTFT and TPOT (default 32)", 1, 4096, NULL},
    {"figure", 0, OPTS_TEXT, C(study.figure), "FILE.png",
     "also draw the study's figure (kvsim plot study) from -o", 0, 0, NULL},
    END,
};

static const opts_row fastgen_rows[] = {
    {"max-new-tokens", 0, OPTS_INT, C(fastgen.max_new), "N",
     "tokens generated after TEXT (default 32)", 0, 4096, NULL},
    {"trace", 0, OPTS_TEXT, C(fastgen.trace), "TRACE.h5",
     "also replay fastgen over this recorded trace (its lines:\nsource replay)", 0, 0, NULL},
    {"figure", 0, OPTS_TEXT, C(fastgen.figure), "FILE.png",
     "also draw the memory bars and the profile heatmap from -o", 0, 0, NULL},
    END,
};

static const char POLICY_PARAMS[] =
    "policy parameters: any of `kvsim policies` as --KEY VALUE (--sinks 4, --phase\n"
    "stream, ...); with several policies each takes the ones it reads.";

/* One experiment's command line and its run. */
typedef struct experiment experiment;
struct experiment {
    const char     *name, *summary, *usage, *about, *footer;
    const opts_row *rows;
    int             generates;   /* takes the shared rows and policy parameters */
    int             input;       /* INPUT: 1 required, 0 none */
    int           (*run)(confirm_cli *c, kv_err *err);
};

static int run_ppl(confirm_cli *c, kv_err *err) { return confirm_ppl(&c->req, &c->ppl, err); }
static int run_passkey(confirm_cli *c, kv_err *err)
{
    return confirm_passkey(&c->req, &c->passkey, err);
}
static int run_passkey_study(confirm_cli *c, kv_err *err)
{
    if (confirm_figure_check(c->req.csv, c->pstudy.figure, err))
        return KV_EUSAGE;
    if (!c->passkey.depths)
        c->passkey.depths = "0.25,0.75";
    if (c->passkey.seeds == 3)
        c->passkey.seeds = 2;
    return confirm_passkey_study(&c->req, &c->passkey, &c->pstudy, err);
}
static int run_fidelity(confirm_cli *c, kv_err *err)
{
    return confirm_fidelity(&c->req, &c->fidelity, err);
}
static int run_reconstruct(confirm_cli *c, kv_err *err)
{
    return confirm_reconstruct(&c->req, &c->reconstruct, err);
}
static int run_study(confirm_cli *c, kv_err *err)
{
    if (c->req.params.n || c->req.strides)
        return kv_errorf(err, KV_EUSAGE, "study: each method sets its own parameters (--%s "
                         "is not taken); docs/CONFIRM.md lists them",
                         c->req.params.n ? c->req.params.key[0] : "strides");
    return confirm_study(&c->req, &c->study, err);
}
static int run_fastgen(confirm_cli *c, kv_err *err)
{
    if (c->req.policies || c->req.budgets || c->req.strides)
        return kv_errorf(err, KV_EUSAGE, "fastgen-memory runs fastgen only, without a budget "
                         "(its parameters: --recovery, --r-f, --r-l)");
    return confirm_fastgen_memory(&c->req, &c->fastgen, err);
}
static int run_predict(confirm_cli *c, kv_err *err)
{
    return confirm_predict(&c->req, &c->predict, err);
}

static const experiment EXPERIMENTS[] = {
    {"ppl", "teacher-forced perplexity and accuracy, fixed cache",
     "kvsim confirm ppl MODEL.gguf TEXT --policies A,B --budgets 128,256,512 [options]",
     "Teacher-forced perplexity and next-token accuracy of TEXT under a fixed KV cache per\n"
     "policy (the StreamingLLM experiment): every token is fed, the cache evicts, and the\n"
     "logits score the next token.  `full` runs once, without a budget.",
     "columns after docs/RESULTS.md's identifying ones: tokens ppl accuracy tail_tokens\n"
     "ppl_tail accuracy_tail (predictions at steps >= B) mean_cache (entries attended per\n"
     "stream) kv_bytes_peak tokens_per_s\n"
     "example: kvsim confirm ppl models/SmolLM2-135M-Instruct.Q4_1.gguf data/lighthouses.txt \\\n"
     "           --policies full,recency,streaming,h2o,roco --budgets 128,256,512\n",
     ppl_rows, 1, 1, run_ppl},
    {"passkey", "passkey retrieval over lengths, depths, seeds",
     "kvsim confirm passkey MODEL.gguf --policies A,B --budgets LIST [options]",
     "Passkey retrieval: a random 5-digit key hidden at a depth of filler text, then\n"
     "\"What is the pass key?\"; right when the first number generated is the key.\n"
     "Accuracy per (policy, budget, stride, length, depth) over the seeds.  The full\n"
     "cache always runs first: lengths where it scores >= 90% are `calibrated`.",
     "columns after the identifying ones: length depth trials accuracy context_tokens\n"
     "mean_cache kv_bytes_peak full_accuracy calibrated\n",
     passkey_rows, 1, 0, run_passkey},
    {"passkey-study", "passkey: accuracy vs budget, vs stride (with pace), cost vs stride",
     "kvsim confirm passkey-study MODEL.gguf [-o passkey.csv --figure passkey.png]",
     "The passkey study (docs/CONFIRM.md): retrieval accuracy against the budget (stride\n"
     "1) at each length and depth for --policies (default roco,streaming; --budgets\n"
     "default 48,96,160), then at the first length and --stride-budget, accuracy and the\n"
     "eviction cost per token against --strides (default 1,4,16,32) for --stride-policy,\n"
     "with pace (its adaptive stride) on the same axes.",
     "columns: those of kvsim confirm passkey; stride_sweep is 1 on the stride sweep's\n"
     "lines; policy_ms_per_token is the wall time of the policies' steps per token fed,\n"
     "mean_block the entries a stream evicted at once\n",
     passkey_study_rows, 1, 0, run_passkey_study},
    {"fidelity", "answers against the full cache's; speed and memory",
     "kvsim confirm fidelity MODEL.gguf PROMPTS --policies A,B --budgets LIST [options]",
     "Greedy answers to each line of PROMPTS under each configuration, against the full\n"
     "cache's answers: ROUGE-L, BLEU, METEOR (exact), token agreement, first divergence;\n"
     "with TTFT, decode tokens/s and KV bytes (the speed/memory table).  Full is added.",
     "columns after the identifying ones: prompts rouge_l bleu bleu_corpus meteor\n"
     "token_agreement first_divergence generated mean_cache kv_bytes_peak ttft_s\n"
     "tokens_per_s budget_mean\n"
     "example: kvsim confirm fidelity models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n"
     "           data/fidelity_prompts.txt --policies streaming,h2o,roco --budgets 32,64\n",
     fidelity_rows, 1, 1, run_fidelity},
    {"reconstruct", "repeat a passage just read: BLEU, ROUGE-L",
     "kvsim confirm reconstruct MODEL.gguf TEXT --policies A,B --budgets LIST [options]",
     "Context reconstruction: the model repeats a passage of TEXT it has just read; BLEU\n"
     "and ROUGE-L of its greedy answer against the passage, per configuration.  Full is\n"
     "added.",
     "columns after the identifying ones: passages rouge_l bleu bleu_corpus generated\n"
     "mean_cache kv_bytes_peak\n",
     reconstruct_rows, 1, 1, run_reconstruct},
    {"study", "the kvcompress study: eight methods, PPL/accuracy/TTFT/TPOT/bytes",
     "kvsim confirm study MODEL.gguf TEXT [--budgets 64,128] [-o study.csv --figure "
     "study.png]",
     "The kvcompress study (docs/CONFIRM.md): its eight methods (L2, fix-size-L2,\n"
     "StreamingLLM, H2O-L2, SnapKV-Lite, pyramid, adaptive-L2, recent-only) and the full\n"
     "cache at each budget: teacher-forced perplexity and next-token accuracy over the\n"
     "text, tokens/s, peak KV bytes, mean entries; TTFT and TPOT of a greedy\n"
     "continuation; each also as % of full, with a verdict.  --policies picks methods.",
     "columns: text method policy budget tokens ppl accuracy ttft_s tpot_s tokens_per_s\n"
     "kv_bytes mean_cache, then ppl accuracy ttft_s tpot_s tokens_per_s kv_bytes as _pct\n"
     "of full, verdict (ppl <= 105% good, <= 120% fair, else poor)\n"
     "example: kvsim confirm study models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n"
     "           data/lighthouses.txt -o study.csv --json study.json --figure study.png\n",
     study_rows, 1, 1, run_study},
    {"fastgen-memory", "FastGen's per-layer raw vs compressed KV MB, head profiles",
     "kvsim confirm fastgen-memory MODEL.gguf TEXT [--trace T.h5] [-o fg.csv --figure "
     "fg.png]",
     "The FastGen memory table (docs/CONFIRM.md): fastgen with the study's T = 0.95,\n"
     "r_f = r_l = 0.8 on TEXT as the prompt and a greedy continuation, in a live\n"
     "compressed cache (and replayed over --trace): per layer the raw and compressed KV\n"
     "MB and the saving, a mean line, and each (layer, KV head)'s chosen profile.",
     "columns: source layer kv_head raw_entries kept_entries raw_mb compressed_mb\n"
     "saving_pct profile recovered (kv_head `all`: the layer; layer `mean`: the mean)\n"
     "example: kvsim confirm fastgen-memory models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n"
     "           data/fastgen_prompt.txt -o fg.csv --figure fg.png\n",
     fastgen_rows, 1, 1, run_fastgen},
    {"predict", "Spearman rho per budget, replayed vs real metrics",
     "kvsim confirm predict SIM.csv REAL.csv --sim-metric M --real-metric M [options]",
     "Spearman's rho across policies, per budget, between a replayed metric (SIM.csv from\n"
     "kvsim replay/sweep: mass, overlap, output_error, ...) and a real one (REAL.csv from\n"
     "kvsim confirm: ppl, accuracy, rouge_l, ...), with a bootstrap interval over the\n"
     "policies.  Lines join on policy, budget_arg, stride, phase.",
     "columns: sim_metric real_metric budget_arg policies spearman ci_low ci_high\n",
     predict_rows, 0, 1, run_predict},
};
#define N_EXPERIMENTS ((int)(sizeof EXPERIMENTS / sizeof *EXPERIMENTS))

static confirm_cli defaults(void)
{
    return (confirm_cli){
        .ppl = {.max_tokens = 1024, .prompt_tokens = 1},
        .passkey = {.seeds = 3, .max_new = 8},
        .fidelity = {.max_new = 48, .chat = 1},
        .reconstruct = {.passage_tokens = 96, .passages = 3},
        .predict = {.sim_metric = "mass", .real_metric = "ppl", .rounds = 2000, .seed = 1},
        .study = {.max_tokens = 384, .prompt_tokens = 128, .max_new = 32},
        .fastgen = {.max_new = 32},
        .pstudy = {.stride_policy = "roco", .stride_budget = "96"},
    };
}

/* Check the outputs before the experiment runs for minutes: a typo in -o must not cost
 * them; then run it. */
static int run(void *ctx, kv_err *err)
{
    confirm_cli *c = ctx;
    const char *inputs[2] = {c->req.model, c->req.input};
    int rc = out_check(c->req.csv, inputs, 2, err);
    if (rc == KV_OK)
        rc = out_check(c->req.json, inputs, 2, err);
    return rc == KV_OK ? c->experiment->run(c, err) : rc;
}

static int run_experiment(const experiment *x, int argc, char **argv)
{
    static confirm_cli c;   /* the experiments' options: large enough to keep off the stack */
    c = defaults();
    c.experiment = x;
    char prog[64];
    snprintf(prog, sizeof prog, "kvsim confirm %s", x->name);
    c.req.command = opts_command_line("kvsim confirm", argc, argv, c.command, sizeof c.command);
    const opts_command cmd = {
        .prog = prog,
        .usage = x->usage,
        .about = x->about,
        .groups = {{"options", x->rows, &c},
                   {"configurations and outputs", x->generates ? shared_rows : NULL, &c}},
        .positional = {&c.req.model, x->input ? &c.req.input : NULL},
        .required = 1 + x->input,
        .other = x->generates ? policy_args_take : NULL,
        .other_ctx = &c.req.params,
        .other_help = x->generates ? POLICY_PARAMS : NULL,
        .footer = x->footer,
    };
    return opts_main(&cmd, argc, argv, run, &c);
}

static void print_help(FILE *f)
{
    fputs("usage: kvsim confirm EXPERIMENT MODEL.gguf [INPUT] [options]\n\n"
          "Confirm with real generation: the eviction policies run inside live inference on\n"
          "a truly compressed KV cache.  Experiments (each has --help):\n", f);
    for (int i = 0; i < N_EXPERIMENTS; i++)
        fprintf(f, "  %-12s %s\n", EXPERIMENTS[i].name, EXPERIMENTS[i].summary);
    fputs("docs: docs/CONFIRM.md\n", f);
}

int cmd_confirm(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < N_EXPERIMENTS; i++)
        if (!strcmp(argv[1], EXPERIMENTS[i].name))
            return run_experiment(&EXPERIMENTS[i], argc - 1, argv + 1);
    fprintf(stderr, "kvsim confirm: unknown experiment '%s'\n", argv[1]);
    print_help(stderr);
    return 2;
}
