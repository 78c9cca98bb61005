/*
 * replay_setup.c — requests into replay plans, and running them; see replay_setup.h.
 */
#include "replay_setup.h"

#include "index_list.h"

#include "replay_gpu.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* 1 if `word` is one of the space-separated words of `list`. */
static int has_word(const char *list, const char *word)
{
    const size_t n = strlen(word);
    for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* --- lists ------------------------------------------------------------------------ */

/* Parse "0,4,8-11" (common/index_list.h) into model numbers, map each to its recorded
 * index, and fail on one the trace does not hold.  NULL text selects everything
 * recorded.  Every failure is a usage error. */
static int select_indices(const char *text, const int *recorded, int n_recorded,
                          const char *what, int **out, int *n_out, kv_err *err)
{
    enum { MODEL_MAX = 1 << 16 };   /* more layers or heads than any model has */
    unsigned char *on = malloc(MODEL_MAX);
    int *sel = malloc((size_t)n_recorded * sizeof *sel);
    int rc = on && sel ? index_list_parse(text, MODEL_MAX, on, what, err)
                       : kv_errorf(err, KV_ENOMEM, "out of memory");
    *n_out = 0;
    if (rc >= 0 && !text) {   /* everything recorded */
        memset(on, 0, MODEL_MAX);
        for (int i = 0; i < n_recorded; i++)
            on[recorded[i]] = 1;
    }
    for (int v = 0, i = 0; rc >= 0 && v < MODEL_MAX; v++) {
        if (!on[v])
            continue;
        while (i < n_recorded && recorded[i] < v)   /* both lists increase */
            i++;
        if (i == n_recorded || recorded[i] != v)
            rc = kv_errorf(err, KV_EUSAGE, "--%s: %d is not in the trace (recorded: %d of "
                           "them, %d..%d)", what, v, n_recorded, recorded[0],
                           recorded[n_recorded - 1]);
        else
            sel[(*n_out)++] = i;
    }
    free(on);
    if (rc < 0) {
        free(sel);
        return rc;
    }
    *out = sel;
    return KV_OK;
}

/* Keep the selected layers of one kind: "local" (a sliding window) or "global".  A
 * kind the selection lacks is a usage error: an empty run would look like a result. */
static int select_kind(const char *kind, const replay_source *src, int *sel, int *n,
                       kv_err *err)
{
    if (!kind)
        return KV_OK;
    const int local = !strcmp(kind, "local");
    if (!local && strcmp(kind, "global"))
        return kv_errorf(err, KV_EUSAGE, "--layer-kind '%s': expected local or global", kind);
    int kept = 0;
    for (int i = 0; i < *n; i++)
        if ((src->window && src->window[sel[i]] > 0) == local)
            sel[kept++] = sel[i];
    if (!kept)
        return kv_errorf(err, KV_EUSAGE, "--layer-kind %s: none of the selected layers of %s "
                         "is %s (local layers have a sliding window)", kind, src->name,
                         local ? "local" : "global");
    *n = kept;
    return KV_OK;
}

#define MAX_ITEMS 256

static int too_many(const char *option, int max, kv_err *err)
{
    return kv_errorf(err, KV_EUSAGE, "--%s: more than %d items", option, max);
}

/* Split the comma list of --option in place into items[max]; returns the count, or
 * KV_EUSAGE for more than max items or an empty one ("h2o,,tova", a leading or a
 * trailing comma): a typo there must not silently run fewer configurations. */
static int split(char *list, char **items, int max, const char *option, kv_err *err)
{
    int n = 0;
    if (!*list)
        return kv_errorf(err, KV_EUSAGE, "--%s: empty list", option);
    for (char *tok = list; tok;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = '\0';
        if (!*tok)
            return kv_errorf(err, KV_EUSAGE, "--%s: empty item %d in the list (two commas, "
                             "or a comma at an end)", option, n + 1);
        if (n == max)
            return too_many(option, max, err);
        items[n++] = tok;
        tok = comma ? comma + 1 : NULL;
    }
    return n;
}

/* Format a budget as the user would have written it: fractions keep a point. */
static void budget_text(double v, int fraction, char *buf, size_t len)
{
    if (!fraction) {
        snprintf(buf, len, "%.0f", v);
        return;
    }
    snprintf(buf, len, "%.6g", v);
    if (!strpbrk(buf, ".e"))
        strncat(buf, ".0", len - strlen(buf) - 1);
}

/* Expand "a:b:step" (inclusive, to within step/1000) or "x,y,z" into budget texts. */
static int expand_budgets(const char *text, char (*out)[32], int *n, kv_err *err)
{
    double a, b, step;
    char tail;
    *n = 0;
    if (sscanf(text, "%lf:%lf:%lf%c", &a, &b, &step, &tail) == 3) {
        if (!(step > 0) || b < a)
            return kv_errorf(err, KV_EUSAGE, "--budgets '%s': expected FROM:TO:STEP with "
                             "FROM <= TO and STEP > 0", text);
        int fraction = strchr(text, '.') != NULL;
        for (int i = 0;; i++) {
            double v = a + i * step;
            if (v > b + step * 1e-3)
                break;
            if (*n == MAX_ITEMS)
                return too_many("budgets", MAX_ITEMS, err);
            budget_text(v, fraction, out[(*n)++], 32);
        }
        return KV_OK;
    }
    char copy[4096], *items[MAX_ITEMS];
    if (strlen(text) >= sizeof copy)
        return kv_errorf(err, KV_EUSAGE, "--budgets: the list is longer than %zu characters",
                         sizeof copy - 1);
    snprintf(copy, sizeof copy, "%s", text);
    int count = split(copy, items, MAX_ITEMS, "budgets", err);
    if (count < 0)
        return count;
    for (int i = 0; i < count; i++)
        if (strlen(items[i]) >= 32)
            return kv_errorf(err, KV_EUSAGE, "--budgets: '%.40s' is too long", items[i]);
        else
            memcpy(out[(*n)++], items[i], strlen(items[i]) + 1);
    return KV_OK;
}

/* --- configurations --------------------------------------------------------------- */

static int set_param(policy_config *cfg, const char *key, const char *value, kv_err *err)
{
    return value ? policy_config_set(cfg, key, value, err) : KV_OK;
}

static const char *param_of(const replay_request *a, const char *key)
{
    return policy_args_get(&a->params, key);
}

/* The axes of a configuration list, outermost first; a sweep runs their product. */
enum { AXIS_POLICY, AXIS_SCORE, AXIS_SCOPE, AXIS_BUDGET, AXIS_WINDOW, AXIS_STRIDE, N_AXES };
static const char *const AXIS_KEYS[N_AXES] = {"policy", "score", "scope", "budget", "window",
                                              "stride"};

/* A window the policy reads is part of its scope label, `window:r` with r in entries:
 * without it, the lines of a --windows sweep could not be told apart. */
static void label_window(replay_config *c, const replay_request *a, const char *const *item)
{
    char text[POLICY_VALUE_MAX];
    const char *window = item && item[AXIS_WINDOW] ? item[AXIS_WINDOW] : a ? param_of(a, "window") : NULL;
    const char *v = policy_config_value(&c->policy, "window", text, sizeof text);
    policy_span r;
    if (window && c->window_used && v && policy_span_parse(v, &r, NULL) == KV_OK)
        snprintf(c->scope_name + strlen(c->scope_name),
                 sizeof c->scope_name - strlen(c->scope_name), ":%d",
                 policy_span_entries(&r, c->policy.budget));
}

/* One configuration: one item of each axis (NULL: the default), then every other
 * parameter in command-line order, all through policy_config_set.  With several
 * policies (`shared`), parameters this policy does not read are dropped, their keys
 * in dropped[]; a single policy refuses them (policy_new says which it reads). */
static int make_config(const replay_request *a, const replay_source *src,
                       const char *const item[N_AXES], int shared, replay_config *c,
                       char dropped[128], kv_err *err)
{
    const char *budget = item[AXIS_BUDGET];
    memset(c, 0, sizeof *c);
    c->policy = policy_config_default();
    c->oracle = -1;
    if (strlen(budget) >= sizeof c->budget_arg)
        return kv_errorf(err, KV_EUSAGE, "--budget '%.40s...': too long", budget);
    memcpy(c->budget_arg, budget, strlen(budget) + 1);
    int rc = KV_OK;
    for (int x = 0; rc == KV_OK && x < N_AXES; x++)
        rc = set_param(&c->policy, AXIS_KEYS[x], item[x], err);
    if (rc == KV_OK)
        rc = policy_config_apply(&c->policy, &a->params, err);
    if (rc != KV_OK)
        return rc;
    dropped[0] = '\0';
    if (shared)
        policy_config_drop_unused(&c->policy, dropped, 128);
    c->window_used = !has_word(dropped, "window");
    policy_config_resolve(&c->policy, src->T);
    c->policy.prompt_len = src->prompt_len;
    rc = replay_config_finish(c, err);
    label_window(c, a, item);
    return rc;
}

/* The oracle at the budget of c: the driver's settings copied, nothing else.  Its
 * scope of aggregation is the one the user asked for (--scope-of, else kv-head), NOT
 * the one c's preset resolved to: tova's own layer scope would otherwise bring a second
 * `oracle` line at the same budget, and each policy's gap a different reference. */
static int make_oracle(const replay_config *c, replay_config *o, kv_err *err)
{
    memset(o, 0, sizeof *o);
    o->policy = policy_config_default();
    int rc = set_param(&o->policy, "policy", "oracle", err);
    if (rc != KV_OK)
        return rc;
    o->policy.budget = c->policy.budget;
    o->policy.budget_arg = c->policy.budget_arg;
    o->policy.stride = c->policy.stride;
    o->policy.phase = c->policy.phase;
    o->policy.gqa = c->policy.gqa;
    o->policy.scope_of = c->policy.scope_of;
    o->policy.seed = c->policy.seed;
    o->policy.prompt_len = c->policy.prompt_len;
    o->oracle = -1;
    memcpy(o->budget_arg, c->budget_arg, sizeof o->budget_arg);
    return replay_config_finish(o, err);
}

/* Two oracle configurations that would replay identically: one line, not two. */
static int same_oracle(const replay_config *x, const replay_config *y)
{
    return !strcmp(x->policy.name, "oracle") && !strcmp(y->policy.name, "oracle") &&
           x->policy.budget == y->policy.budget && x->policy.stride == y->policy.stride &&
           x->policy.phase == y->policy.phase && x->policy.gqa == y->policy.gqa &&
           x->scope_of == y->scope_of;
}

/* Point each configuration at the oracle of its budget, reusing a requested or an
 * earlier companion oracle when one replays identically (same_oracle), else adding
 * one.  configs has room for 2 * n.  Returns the new count, or a negative KV_E* code. */
static int add_oracles(replay_config *configs, int n, kv_err *err)
{
    int total = n;
    for (int c = 0; c < n; c++) {
        int rc = make_oracle(&configs[c], &configs[total], err);
        if (rc != KV_OK)
            return rc;
        for (int o = 0; o < total && configs[c].oracle < 0; o++)
            if (same_oracle(&configs[o], &configs[total]))
                configs[c].oracle = o;
        if (configs[c].oracle < 0) {
            configs[total].oracle = total;
            configs[c].oracle = total++;
        }
    }
    return total;
}

/* Split each axis's list into items (copies owned by s->strings); an absent list
 * is one NULL item.  Budgets are expanded separately (ranges). */
static int split_axes(replay_setup *s, const replay_request *a, char *budgets[MAX_ITEMS],
                      int n_budgets, char *items[N_AXES][MAX_ITEMS], int count[N_AXES],
                      kv_err *err)
{
    const char *lists[N_AXES] = {a->policies, a->scores, a->scopes, NULL, a->windows, a->strides};
    size_t total = N_AXES;
    for (int x = 0; x < N_AXES; x++)
        total += lists[x] ? strlen(lists[x]) : 0;
    if (!(s->strings = malloc(total)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    char *next = s->strings;
    for (int x = 0; x < N_AXES; x++) {
        if (x == AXIS_BUDGET) {
            memcpy(items[x], budgets, (size_t)n_budgets * sizeof *budgets);
            count[x] = n_budgets;
        } else if (!lists[x]) {
            items[x][0] = NULL;
            count[x] = 1;
        } else {
            size_t len = strlen(lists[x]) + 1;
            memcpy(next, lists[x], len);
            count[x] = split(next, items[x], MAX_ITEMS, AXIS_KEYS[x], err);
            next += len;
            if (count[x] < 0)
                return count[x];
        }
    }
    return KV_OK;
}

/* A configuration whose policy does not read an axis it has a later item of repeats
 * the one with the axis's first item: h2o and tova over --windows 8,16 make one tova. */
static int repeats_first_item(const char *dropped, const int at[N_AXES])
{
    for (int x = 0; x < N_AXES; x++)
        if (at[x] > 0 && has_word(dropped, AXIS_KEYS[x]))
            return 1;
    return 0;
}

/* How many configurations dropped each parameter. */
typedef struct dropped_keys {
    int  n;
    char key[POLICY_ARGS_MAX + N_AXES][24];
    long times[POLICY_ARGS_MAX + N_AXES];
} dropped_keys;

static void count_dropped(dropped_keys *d, const char *dropped)
{
    char copy[128], *save = NULL;
    snprintf(copy, sizeof copy, "%s", dropped);
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        int i = 0;
        while (i < d->n && strcmp(d->key[i], w))
            i++;
        if (i == d->n && d->n < POLICY_ARGS_MAX + N_AXES)
            snprintf(d->key[d->n++], sizeof d->key[0], "%s", w);
        if (i < d->n)
            d->times[i]++;
    }
}

/* A parameter no listed policy reads is a mistake, not something to drop silently. */
static int check_some_policy_reads(const dropped_keys *d, long n_configs,
                                   const char *policies, kv_err *err)
{
    for (int i = 0; i < d->n; i++)
        if (d->times[i] == n_configs)
            return kv_errorf(err, KV_EUSAGE, "parameter '%s' applies to none of the policies "
                             "%s (kvsim policies lists what each reads)", d->key[i], policies);
    return KV_OK;
}

static int build_configs(replay_setup *s, const replay_request *a, kv_err *err)
{
    if (!a->policies || !a->budgets)
        return kv_errorf(err, KV_EUSAGE, "--policy and --budget are required; see --help");
    char budget_text[MAX_ITEMS][32], *budgets[MAX_ITEMS], *items[N_AXES][MAX_ITEMS];
    int n_budgets, count[N_AXES], rc = expand_budgets(a->budgets, budget_text, &n_budgets, err);
    for (int i = 0; i < n_budgets; i++)
        budgets[i] = budget_text[i];
    if (rc == KV_OK)
        rc = split_axes(s, a, budgets, n_budgets, items, count, err);
    if (rc != KV_OK)
        return rc;
    long n = 1;
    for (int x = 0; x < N_AXES; x++)
        n *= count[x];
    if (n > 100000 || !(s->configs = calloc((size_t)2 * n, sizeof *s->configs)))
        return kv_errorf(err, n > 100000 ? KV_EUSAGE : KV_ENOMEM, "%ld configurations: too "
                         "many for one run", n);
    /* The product, the last axis fastest: an odometer over the item indices. */
    int at[N_AXES] = {0}, kept = 0;
    dropped_keys unused = {0};
    for (long c = 0; c < n; c++) {
        const char *item[N_AXES];
        char dropped[128];
        for (int x = 0; x < N_AXES; x++)
            item[x] = items[x][at[x]];
        if ((rc = make_config(a, s->src, item, count[AXIS_POLICY] > 1, &s->configs[kept],
                              dropped, err)) != KV_OK)
            return rc;
        count_dropped(&unused, dropped);
        kept += !repeats_first_item(dropped, at);
        for (int x = N_AXES - 1; x >= 0 && ++at[x] == count[x]; x--)
            at[x] = 0;
    }
    if ((rc = check_some_policy_reads(&unused, n, a->policies, err)) != KV_OK)
        return rc;
    s->n_requested = kept;
    s->n_configs = s->plan.metrics & REPLAY_ORACLE_GAP ? add_oracles(s->configs, kept, err)
                                                       : kept;
    return s->n_configs < 0 ? s->n_configs : KV_OK;
}

static unsigned parse_metrics(const char *text, kv_err *err)
{
    if (!text)
        return REPLAY_ALL;
    static const struct { const char *name; unsigned bit; } names[] = {
        {"mass", REPLAY_MASS}, {"overlap", REPLAY_OVERLAP},
        {"consistency", REPLAY_CONSISTENCY}, {"output_error", REPLAY_OUTPUT},
        {"oracle_gap", REPLAY_ORACLE_GAP}};
    char copy[256], *items[8];
    snprintf(copy, sizeof copy, "%s", text);
    unsigned bits = REPLAY_MASS;
    const int n = split(copy, items, 8, "metrics", err);
    if (n < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof names / sizeof *names; k++)
            if (!strcmp(items[i], names[k].name))
                bit = names[k].bit;
        if (!bit)
            return (unsigned)kv_errorf(err, KV_EUSAGE, "--metrics: unknown metric '%s'; valid: "
                                       "mass, overlap, consistency, output_error, oracle_gap", items[i]), 0;
        bits |= bit;
    }
    return bits;
}

/* --- setup ------------------------------------------------------------------------ */

/* fastgen sizes its own cache: B is not used, so B >= T says nothing about it. */
static int sizes_itself(const replay_config *c)
{
    const policy_def *def = policy_find(c->policy.name);
    return def && (def->flags & POLICY_SIZES_ITSELF);
}

/* #18 item 6: a budget is a budget.  knorm with skip-layers keeps its first layers
 * whole, so its cache is larger than B on average: say so, loudly, once per line. */
static void whole_layers_note(const replay_config *c, FILE *f)
{
    char text[POLICY_VALUE_MAX];
    const char *score = policy_config_value(&c->policy, "score", text, sizeof text);
    if (!score || strcmp(score, "knorm"))
        return;
    const char *skip = policy_config_value(&c->policy, "skip-layers", text, sizeof text);
    if (skip && atoi(skip) > 0)
        fprintf(f, "NOTE: %s at budget %s keeps layers 0..%d whole (skip-layers %s): its "
                "cache exceeds B on average; compare policies at equal cache by mean_cache\n",
                c->policy.name, c->budget_arg, atoi(skip) - 1, skip);
}

void replay_setup_notes(const replay_setup *s, FILE *f)
{
    const replay_source *src = s->src;
    for (int c = 0; c < s->n_requested; c++)
        if (s->configs[c].policy.budget >= src->T && !sizes_itself(&s->configs[c])) {
            fprintf(f, "note: budget %s resolves to %d >= T = %d: nothing is evicted, the "
                    "policy equals full; all steps are averaged\n", s->configs[c].budget_arg,
                    s->configs[c].policy.budget, src->T);
            break;
        }
    int local = 0, W = 0;
    for (int l = 0; src->window && l < s->plan.n_layers; l++)
        if (src->window[s->plan.layers[l]] > 0)
            local++, W = src->window[s->plan.layers[l]];
    if (local && s->n_requested)
        fprintf(f, "note: %d of the %d layers slide over a window of W = %d keys: there a "
                "key older than W is gone, a budget fraction is of min(T, W) and a count "
                "at most W (docs/POLICIES.md)\n", local, s->plan.n_layers, W);
    for (int c = 0; c < s->n_requested; c++)
        whole_layers_note(&s->configs[c], f);
    if (!src->has_values && (s->plan.metrics & REPLAY_OUTPUT))
        fprintf(f, "note: %s has no recorded values: output_error is left empty\n", src->name);
    if (s->n_configs > s->n_requested)
        fprintf(f, "note: the oracle is replayed at each budget for oracle_gap; its lines "
                "are written too\n");
}

static int open_source(replay_setup *s, const replay_request *a, kv_err *err)
{
    if (!(s->src = replay_source_open(a->trace, err)))
        return err && err->code ? err->code : KV_EIO;
    if (!s->src->complete) {
        if (a->strict)
            return kv_errorf(err, KV_EFORMAT, "%s: the trace is incomplete (%d steps on disk) "
                             "and --strict was given", a->trace, s->src->T);
        fprintf(stderr, "warning: %s is incomplete: replaying its %d complete steps\n",
                a->trace, s->src->T);
    }
    if (s->src->T < 1)
        return kv_errorf(err, KV_EFORMAT, "%s: the trace has no complete step", a->trace);
    return KV_OK;
}

int replay_setup_build(replay_setup *s, const replay_request *a, kv_err *err)
{
    memset(s, 0, sizeof *s);
#ifdef _OPENMP
    if (a->threads > 0)   /* first: the source keeps a decode buffer per thread */
        omp_set_num_threads(a->threads);
#endif
    int rc = open_source(s, a, err);
    if (rc == KV_OK)
        rc = select_indices(a->layers, s->src->layers, s->src->n_layers, "layers", &s->layers,
                            &s->plan.n_layers, err);
    if (rc == KV_OK)
        rc = select_kind(a->layer_kind, s->src, s->layers, &s->plan.n_layers, err);
    if (rc == KV_OK)
        rc = select_indices(a->heads, s->src->heads, s->src->n_heads, "heads", &s->heads,
                            &s->plan.n_heads, err);
    if (rc == KV_OK && a->device && strcmp(a->device, "cpu") && strcmp(a->device, "cuda"))
        rc = kv_errorf(err, KV_EUSAGE, "--device '%s': expected cpu or cuda", a->device);
    s->cuda = a->device && !strcmp(a->device, "cuda");
    /* the GPU computes mass, overlap and output error: its default, where the CPU's is
     * every metric */
    if (rc == KV_OK)
        s->plan.metrics = parse_metrics(a->metrics ? a->metrics
                                        : s->cuda  ? "mass,overlap,output_error"
                                                   : NULL, err);
    if (rc == KV_OK && !s->plan.metrics)
        rc = KV_EUSAGE;
    if (rc == KV_OK && a->policies)
        rc = build_configs(s, a, err);
    else if (rc == KV_OK && a->budgets)   /* a budget means a replay: it needs a policy */
        rc = kv_errorf(err, KV_EUSAGE, "--policy and --budget are required; see --help");
    if (rc == KV_OK && a->model)
        rc = out_proj_load(a->model, &s->proj, err);
    s->plan.out_proj = (const float *const *)s->proj.w;
    s->plan.out_layers = s->proj.n_layer;
    s->plan.out_rows = s->proj.rows;
    s->plan.out_cols = s->proj.cols;
    s->plan.layers = s->layers;
    s->plan.heads = s->heads;
    s->plan.configs = s->configs;
    s->plan.n_configs = s->n_configs;
    return rc;
}

void replay_setup_free(replay_setup *s)
{
    replay_source_close(s->src);
    free(s->configs);
    free(s->layers);
    free(s->heads);
    free(s->strings);
    out_proj_free(&s->proj);
    memset(s, 0, sizeof *s);
}

int replay_setup_compute(replay_setup *s, replay_acc *acc, kv_err *err)
{
    return s->cuda ? replay_run_gpu(s->src, &s->plan, acc, err)
                   : replay_run(s->src, &s->plan, acc, err);
}
