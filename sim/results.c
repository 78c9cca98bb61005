/* results.c — the metrics CSV and JSON summary; see results.h and docs/RESULTS.md. */
#include "results.h"

#include "cli.h"
#include "out.h"
#include "sha256.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const PHASE_NAMES[] = {"stream", "oneshot", "decode"};
static const char *const GQA_NAMES[] = {"mean", "max", "sum"};
static const char *const SCOPE_OF_NAMES[] = {"preset", "kv-head", "query-head", "layer"};

/* --- lines ------------------------------------------------------------------------ */

static results_line head_line(const replay_acc *a)
{
    results_line r = {0};
    r.steps = a->steps;
    if (a->steps) {
        r.mean_cache = a->cache / a->steps;
        r.mass = a->mass / a->steps;
    }
    if ((r.has_overlap = a->n_overlap > 0))
        r.overlap = a->overlap / a->n_overlap;
    if ((r.has_consistency = a->n_consistency > 0))
        r.consistency = a->consistency / a->n_consistency;
    if ((r.has_output = a->n_output > 0))
        r.output_error = a->output_error / a->n_output;
    return r;
}

/* Mean of the member heads' means; each metric over the heads that define it. */
static results_line mean_line(const replay_plan *plan, const replay_acc *acc, int c, int l)
{
    results_line r = {0};
    int n = 0, n_overlap = 0, n_cons = 0, n_out = 0;
    for (int li = l < 0 ? 0 : l; li < (l < 0 ? plan->n_layers : l + 1); li++)
        for (int h = 0; h < plan->n_heads; h++) {
            results_line x = head_line(replay_acc_at((replay_acc *)acc, plan, c, li, h));
            if (!x.steps)
                continue;
            r.steps += x.steps;
            r.mean_cache += x.mean_cache;
            r.mass += x.mass;
            n++;
            if (x.has_overlap)
                r.overlap += x.overlap, n_overlap++;
            if (x.has_consistency)
                r.consistency += x.consistency, n_cons++;
            if (x.has_output)
                r.output_error += x.output_error, n_out++;
        }
    if (n)
        r.mean_cache /= n, r.mass /= n;
    if ((r.has_overlap = n_overlap > 0))
        r.overlap /= n_overlap;
    if ((r.has_consistency = n_cons > 0))
        r.consistency /= n_cons;
    if ((r.has_output = n_out > 0))
        r.output_error /= n_out;
    return r;
}

static results_line line_without_gap(const replay_plan *plan, const replay_acc *acc, int c,
                                     int l, int h)
{
    if (l >= 0 && h >= 0)
        return head_line(replay_acc_at((replay_acc *)acc, plan, c, l, h));
    return mean_line(plan, acc, c, l);
}

results_line results_line_of(const replay_plan *plan, const replay_acc *acc, int c, int l,
                             int h)
{
    results_line r = line_without_gap(plan, acc, c, l, h);
    const int o = plan->configs[c].oracle;
    if (o >= 0 && r.steps) {
        results_line oracle = line_without_gap(plan, acc, o, l, h);
        r.oracle_gap = oracle.mass - r.mass;
        r.has_gap = oracle.steps > 0;
    }
    return r;
}

/* --- CSV -------------------------------------------------------------------------- */

void results_write_csv_header(FILE *f)
{
    fputs("trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase,layer,head,"
          "steps,mean_cache,mass,overlap,consistency,output_error,oracle_gap\n", f);
}

static void put_metric(FILE *f, int has, double v)
{
    fputc(',', f);
    out_csv_number(f, has ? v : NAN);
}

void results_write_csv_ids(FILE *f, const results_context *rc, int c, const char *policy,
                           const char *scope)
{
    const replay_config *cfg = &rc->plan->configs[c];
    const policy_config *pc = &cfg->policy;
    out_csv_text(f, rc->src->name);
    fprintf(f, ",%s,%s,%s,%s,%s,%s,%d,%d,%s,", policy ? policy : pc->name,
            cfg->score_name, scope ? scope : cfg->scope_name, SCOPE_OF_NAMES[cfg->scope_of],
            cfg->scope_of == POLICY_SCOPE_OF_KV_HEAD ? GQA_NAMES[pc->gqa] : "", cfg->budget_arg,
            pc->budget, pc->stride, PHASE_NAMES[pc->phase]);
}

static void put_line(FILE *f, const results_context *rc, int c, int l, int h)
{
    results_write_csv_ids(f, rc, c, NULL, NULL);
    if (l >= 0)
        fprintf(f, "%d,", rc->src->layers[rc->plan->layers[l]]);
    else
        fputs("all,", f);
    if (h >= 0)
        fprintf(f, "%d", rc->src->heads[rc->plan->heads[h]]);
    else
        fputs("all", f);
    results_line r = results_line_of(rc->plan, rc->acc, c, l, h);
    fprintf(f, ",%ld", r.steps);
    put_metric(f, r.steps > 0, r.mean_cache);
    put_metric(f, r.steps > 0, r.mass);
    put_metric(f, r.has_overlap, r.overlap);
    put_metric(f, r.has_consistency, r.consistency);
    put_metric(f, r.has_output, r.output_error);
    put_metric(f, r.has_gap, r.oracle_gap);
    fputc('\n', f);
}

void results_write_csv_config(FILE *f, const results_context *rc, int c)
{
    for (int l = 0; l < rc->plan->n_layers; l++) {
        for (int h = 0; h < rc->plan->n_heads; h++)
            put_line(f, rc, c, l, h);
        put_line(f, rc, c, l, -1);
    }
    put_line(f, rc, c, -1, -1);
}

static void write_csv(FILE *f, const void *ctx)
{
    const results_context *rc = ctx;
    results_write_csv_header(f);
    for (int c = 0; c < rc->plan->n_configs; c++)
        results_write_csv_config(f, rc, c);
}

/* --- JSON ------------------------------------------------------------------------- */

static void json_metric(FILE *f, const char *key, int has, double v)
{
    fprintf(f, ", \"%s\": ", key);
    out_json_number(f, has ? v : NAN);
}

void results_write_json_config(FILE *f, const replay_config *cfg, int with_budget)
{
    const policy_config *pc = &cfg->policy;
    fputs("{\"policy\": ", f);
    out_json_string(f, pc->name);
    fprintf(f, ", \"score\": \"%s\", \"scope\": \"%s\", \"scope_of\": \"%s\", \"gqa\": ",
            cfg->score_name, cfg->scope_name, SCOPE_OF_NAMES[cfg->scope_of]);
    if (cfg->scope_of == POLICY_SCOPE_OF_KV_HEAD)
        fprintf(f, "\"%s\"", GQA_NAMES[pc->gqa]);
    else
        fputs("null", f);
    fprintf(f, ", \"budget_arg\": \"%s\"", cfg->budget_arg);
    if (with_budget)
        fprintf(f, ", \"budget\": %d", pc->budget);
    fprintf(f, ", \"stride\": %d, \"phase\": \"%s\"", pc->stride, PHASE_NAMES[pc->phase]);
}

void results_write_json_results(FILE *f, const results_context *rc, const char *indent)
{
    for (int c = 0; c < rc->plan->n_configs; c++) {
        results_line r = results_line_of(rc->plan, rc->acc, c, -1, -1);
        fprintf(f, "%s\n%s", c ? "," : "", indent);
        results_write_json_config(f, &rc->plan->configs[c], 1);
        fprintf(f, ", \"steps\": %ld", r.steps);
        json_metric(f, "mean_cache", r.steps > 0, r.mean_cache);
        json_metric(f, "mass", r.steps > 0, r.mass);
        json_metric(f, "overlap", r.has_overlap, r.overlap);
        json_metric(f, "consistency", r.has_consistency, r.consistency);
        json_metric(f, "output_error", r.has_output, r.output_error);
        json_metric(f, "oracle_gap", r.has_gap, r.oracle_gap);
        fputc('}', f);
    }
}

void results_write_json_identity(FILE *f, const results_context *rc, const char *indent)
{
    fprintf(f, "%s\"trace\": ", indent);
    out_json_string(f, rc->src->name);
    fprintf(f, ",\n%s\"trace_sha256\": ", indent);
    if (rc->sha256)
        out_json_string(f, rc->sha256);
    else
        fputs("null", f);
}

static void write_json(FILE *f, const void *ctx)
{
    const results_context *rc = ctx;
    fprintf(f, "{\n  \"format\": \"kvsim-results\",\n  \"format_version\": 1,\n"
               "  \"tool_version\": \"%s\",\n", KV_VERSION);
    results_write_json_identity(f, rc, "  ");
    fputs(",\n  \"command\": ", f);
    out_json_string(f, rc->command ? rc->command : "");
    fputs(",\n  \"results\": [", f);
    results_write_json_results(f, rc, "    ");
    fputs("\n  ]\n}\n", f);
}

/* --- files ------------------------------------------------------------------------ */

int results_write_files(const results_context *rc, const char *csv_path,
                        const char *json_path, kv_err *err)
{
    int status = KV_OK;
    if (csv_path)
        status = out_write(csv_path, write_csv, rc, err);
    if (status != KV_OK || !json_path)
        return status;
    /* Provenance names the exact bytes replayed; hashing reads the file once more,
     * so it is done only when a JSON summary is asked for. */
    results_context with_sha = *rc;
    char hex[65];
    if (!with_sha.sha256 && rc->src->path) {
        if ((status = sha256_file(rc->src->path, hex, err)) != KV_OK)
            return status;
        with_sha.sha256 = hex;
    }
    return out_write(json_path, write_json, &with_sha, err);
}
