/* confirm_cli.c — options, configurations and result files of `kvsim confirm`; see
 * confirm_cli.h. */
#include "confirm_cli.h"

#include "cli.h"
#include "results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define MAX_ITEMS 64

/* Split a copy of a comma list; items point into buf. */
static int split(const char *list, char *buf, size_t len, char **items)
{
    int n = 0;
    snprintf(buf, len, "%s", list);
    for (char *t = strtok(buf, ","); t && n < MAX_ITEMS; t = strtok(NULL, ","))
        items[n++] = t;
    return n;
}

/* --- options (1) ------------------------------------------------------------------- */

static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

static const char **slot_of(confirm_args *a, const char *name)
{
    if (!strcmp(name, "policies") || !strcmp(name, "policy"))
        return &a->policies;
    if (!strcmp(name, "budgets") || !strcmp(name, "budget"))
        return &a->budgets;
    if (!strcmp(name, "strides") || !strcmp(name, "stride"))
        return &a->strides;
    if (!strcmp(name, "output"))
        return &a->csv;
    if (!strcmp(name, "json"))
        return &a->json;
    if (!strcmp(name, "threads"))
        return &a->threads;
    return NULL;
}

static int positional(confirm_args *a, const char *arg, kv_err *err)
{
    if (!a->model)
        a->model = arg;
    else if (!a->input)
        a->input = arg;
    else
        return kv_errorf(err, KV_EUSAGE, "unexpected argument '%s'", arg);
    return KV_OK;
}

int confirm_args_parse(int argc, char **argv, const char *extra, int inputs,
                       const char *usage, confirm_args *a, kv_err *err)
{
    memset(a, 0, sizeof *a);
    size_t used = (size_t)snprintf(a->command, sizeof a->command, "kvsim confirm");
    for (int i = 0; i < argc && used < sizeof a->command; i++)
        used += (size_t)snprintf(a->command + used, sizeof a->command - used, " %s", argv[i]);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 1;
        }
        if (arg[0] != '-' || !arg[1]) {
            if (positional(a, arg, err))
                return KV_EUSAGE;
            continue;
        }
        const char *name = !strcmp(arg, "-o") ? "output" : arg[1] == '-' ? arg + 2 : "";
        if (!strcmp(name, "reposition")) {   /* the one flag: it takes no value */
            a->reposition = 1;
            continue;
        }
        const char **slot = slot_of(a, name);
        const int own = listed(extra, name) || (policy_param_find(name) && !slot);
        if ((!slot && !own) || a->n_opts >= CONFIRM_MAX_OPTS)
            return kv_errorf(err, KV_EUSAGE, "unknown option '%s'; see --help", arg);
        if (i + 1 >= argc)
            return kv_errorf(err, KV_EUSAGE, "option '%s' needs a value", arg);
        if (slot) {
            *slot = argv[++i];
        } else {
            a->key[a->n_opts] = name;
            a->value[a->n_opts++] = argv[++i];
        }
    }
    if (!a->model || (inputs && !a->input))
        return kv_errorf(err, KV_EUSAGE, "missing %s; see --help", a->model ? "INPUT" : "MODEL");
    if (a->threads && confirm_int_list(a->threads, "threads", 1, 1024, &a->n_threads, 1, err) != 1)
        return KV_EUSAGE;
    /* experiments run for minutes: a typo in -o must not cost them */
    int rc = results_check_writable(a->csv, err);
    return rc == KV_OK ? results_check_writable(a->json, err) : rc;
}

const char *confirm_opt(const confirm_args *a, const char *name, const char *def)
{
    const char *v = def;
    for (int i = 0; i < a->n_opts; i++)
        if (!strcmp(a->key[i], name))
            v = a->value[i];
    return v;
}

int confirm_int_list(const char *text, const char *name, int lo, int hi, int *out, int max,
                     kv_err *err)
{
    int n = 0;
    for (const char *p = text; p && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < lo || v > hi || n >= max)
            return kv_errorf(err, KV_EUSAGE, "--%s '%s': expected up to %d integers in "
                             "[%d, %d], comma-separated", name, text, max, lo, hi);
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n ? n : kv_errorf(err, KV_EUSAGE, "--%s: empty list", name);
}

int confirm_double_list(const char *text, const char *name, double lo, double hi, double *out,
                        int max, kv_err *err)
{
    int n = 0;
    for (const char *p = text; p && *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(v >= lo && v <= hi) || n >= max)
            return kv_errorf(err, KV_EUSAGE, "--%s '%s': expected up to %d numbers in "
                             "[%g, %g], comma-separated", name, text, max, lo, hi);
        out[n++] = v;
        p = *end ? end + 1 : end;
    }
    return n ? n : kv_errorf(err, KV_EUSAGE, "--%s: empty list", name);
}

const char *confirm_with_full(const confirm_args *a, char *buf, size_t len)
{
    char copy[1024], *items[MAX_ITEMS];
    int n = split(a->policies ? a->policies : "", copy, sizeof copy, items);
    size_t used = (size_t)snprintf(buf, len, "full");
    for (int i = 0; i < n && used < len; i++)
        if (strcmp(items[i], "full"))
            used += (size_t)snprintf(buf + used, len - used, ",%s", items[i]);
    return buf;
}

int confirm_opt_int(const confirm_args *a, const char *name, int def, int lo, int hi,
                    int *out, kv_err *err)
{
    const char *v = confirm_opt(a, name, NULL);
    *out = def;
    return v && confirm_int_list(v, name, lo, hi, out, 1, err) != 1 ? KV_EUSAGE : KV_OK;
}

/* --- configurations (2) ------------------------------------------------------------ */

static int set(policy_config *cfg, const char *key, const char *value, kv_err *err)
{
    return value ? policy_config_set(cfg, key, value, err) : KV_OK;
}

/* One configuration: policy, budget, stride, then every parameter in order; with
 * several policies (`shared`) each keeps the parameters it reads, as in a sweep. */
static int make(const confirm_args *a, const char *policy, const char *budget,
                const char *stride, int T, int prompt_len, int shared, replay_config *c,
                kv_err *err)
{
    memset(c, 0, sizeof *c);
    c->policy = policy_config_default();
    c->oracle = -1;
    int rc = set(&c->policy, "policy", policy, err);
    if (!rc)
        rc = set(&c->policy, "budget", budget, err);
    if (!rc)
        rc = set(&c->policy, "stride", stride, err);
    for (int i = 0; !rc && i < a->n_opts; i++)
        if (policy_param_find(a->key[i]))
            rc = set(&c->policy, a->key[i], a->value[i], err);
    if (rc)
        return rc;
    if (shared)
        policy_config_drop_unused(&c->policy, NULL, 0);
    policy_config_resolve(&c->policy, T);
    c->policy.prompt_len = prompt_len;
    snprintf(c->budget_arg, sizeof c->budget_arg, "%s", budget ? budget : "");
    return replay_config_finish(c, err);
}

int confirm_configs(const confirm_args *a, int T, int prompt_len, replay_config **out,
                    int *n, kv_err *err)
{
    char pb[1024], bb[1024], sb[256], *pol[MAX_ITEMS], *bud[MAX_ITEMS], *str[MAX_ITEMS];
    int np = split(a->policies ? a->policies : "full", pb, sizeof pb, pol);
    int nb = split(a->budgets ? a->budgets : "", bb, sizeof bb, bud);
    int ns = split(a->strides ? a->strides : "1", sb, sizeof sb, str);
    *n = 0;
    if (!(*out = calloc((size_t)np * (nb ? nb : 1) * ns, sizeof **out)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int p = 0; p < np; p++) {
        const int is_full = !strcmp(pol[p], "full");
        if (!is_full && !nb)
            return kv_errorf(err, KV_EUSAGE, "--budgets is required for policy %s", pol[p]);
        for (int b = 0; b < (is_full ? 1 : nb); b++)
            for (int s = 0; s < (is_full ? 1 : ns); s++) {
                int rc = make(a, pol[p], is_full ? NULL : bud[b], is_full ? NULL : str[s], T,
                              prompt_len, np > 1, &(*out)[*n], err);
                if (rc)
                    return rc;
                (*n)++;
            }
    }
    return KV_OK;
}

/* --- files (3) --------------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The identifying columns of row r, as results_write_csv_ids writes them. */
static void write_ids(FILE *f, const confirm_table *t, int r)
{
    replay_source src = {.name = base_name(t->input)};
    replay_plan plan = {.configs = t->configs, .n_configs = t->n_configs};
    results_context rc = {.src = &src, .plan = &plan, .command = t->command};
    results_write_csv_ids(f, &rc, t->row_config[r], NULL, NULL);
}

static void write_csv(FILE *f, const void *ctx)
{
    const confirm_table *t = ctx;
    fputs("trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase", f);
    for (int c = 0; c < t->n_cols; c++)
        fprintf(f, ",%s", t->cols[c]);
    fputc('\n', f);
    for (int r = 0; r < t->n_rows; r++) {
        write_ids(f, t, r);
        for (int c = 0; c < t->n_cols; c++) {
            double v = t->values[(size_t)r * t->n_cols + c];
            if (isfinite(v))
                fprintf(f, "%s%.9g", c ? "," : "", v);
            else
                fputs(c ? "," : "", f);
        }
        fputc('\n', f);
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    fputc('"', f);
}

/* A CSV field as a JSON value: empty → null, else a number or a string. */
static void json_field(FILE *f, const char *v, int number)
{
    if (!*v)
        fputs("null", f);
    else if (number)
        fputs(v, f);
    else
        json_string(f, v);
}

/* The identifying fields of row r: the CSV ids split at their commas (names carry
 * none), so JSON and CSV cannot disagree. */
static void json_ids(FILE *f, const confirm_table *t, int r)
{
    static const char *const names[] = {"trace", "policy", "score", "scope", "scope_of", "gqa",
                                        "budget_arg", "budget", "stride", "phase"};
    char line[1024];
    FILE *m = fmemopen(line, sizeof line, "w");
    write_ids(m, t, r);
    fputc('\0', m);
    fclose(m);
    char *field = line;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *comma = strchr(field, ',');
        if (comma)
            *comma = '\0';
        fprintf(f, "%s\"%s\": ", i ? ", " : "", names[i]);
        json_field(f, field, !strcmp(names[i], "budget") || !strcmp(names[i], "stride"));
        field = comma ? comma + 1 : field + strlen(field);
    }
}

static void write_json(FILE *f, const void *ctx)
{
    const confirm_table *t = ctx;
    fprintf(f, "{\n  \"format\": \"kvsim-confirm\",\n  \"format_version\": 1,\n"
               "  \"tool_version\": \"%s\",\n  \"input\": ", KV_VERSION);
    json_string(f, base_name(t->input));
    fputs(",\n  \"command\": ", f);
    json_string(f, t->command ? t->command : "");
    fputs(",\n  \"results\": [", f);
    for (int r = 0; r < t->n_rows; r++) {
        fprintf(f, "%s\n    {", r ? "," : "");
        json_ids(f, t, r);
        for (int c = 0; c < t->n_cols; c++) {
            double v = t->values[(size_t)r * t->n_cols + c];
            fprintf(f, ", \"%s\": ", t->cols[c]);
            if (isfinite(v))
                fprintf(f, "%.9g", v);
            else
                fputs("null", f);
        }
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
}

int confirm_table_write(const confirm_table *t, const char *csv, const char *json, kv_err *err)
{
    int rc = results_write_atomic(csv ? csv : "-", write_csv, t, err);
    if (rc == KV_OK && json)
        rc = results_write_atomic(json, write_json, t, err);
    return rc;
}

/* --- running ----------------------------------------------------------------------- */

int confirm_open_model(session *s, const confirm_args *a, kv_err *err)
{
    memset(s, 0, sizeof *s);
    if (a->n_threads)
        model_set_threads(a->n_threads);
    sampler_config greedy = sampler_config_default();
    if (!(s->file = gguf_open(a->model, err)) || !(s->tok = tokenizer_from_gguf(s->file, err)) ||
        !(s->model = model_open(a->model, err)))
        return err->code ? err->code : KV_EIO;
    s->sampler = sampler_new(&greedy, model_config_of(s->model)->n_vocab, err);
    return s->sampler ? KV_OK : err->code;
}

int confirm_open_text(session *s, const confirm_args *a, kv_err *err)
{
    session_options so = session_options_default();
    so.model = a->model;
    so.prompt_file = a->input;
    so.threads = a->n_threads;
    int rc = session_open(s, &so, err);
    if (s->prompt_text && !s->prompt_text[strspn(s->prompt_text, " \t\r\n")])
        rc = kv_errorf(err, KV_ERANGE, "%s: empty text file", a->input);
    return rc;
}

int confirm_generate(session *s, const int32_t *prompt, int n, int max_new,
                     policy_config cfg, int reposition, live_output *out, kv_err *err)
{
    memset(out, 0, sizeof *out);
    const int n_ctx = model_config_of(s->model)->n_ctx;
    cfg.prompt_len = n;
    live *lv = live_new(s->model, s->tok, &cfg, n + max_new < n_ctx ? n + max_new : n_ctx, err);
    if (!lv)
        return err->code;
    int rc = live_set_reposition(lv, reposition, err);
    if (rc == KV_OK)
        rc = live_generate(lv, s->sampler, prompt, n, max_new, NULL, NULL, out, err);
    live_free(lv);
    return rc;
}

int confirm_fail(const char *experiment, const kv_err *err)
{
    fprintf(stderr, "kvsim confirm %s: %s\n", experiment, err->msg);
    return kv_err_exit_status(err->code);
}
