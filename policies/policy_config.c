/*
 * policy_config.c — the one parser of policy configuration.
 *
 * Every command-line option that configures a policy goes through policy_config_set().
 * The common parameters (COMMON_MAP) are fields of policy_config; every other key is a
 * row of some policy's parameter table, kept as written in cfg.own and parsed into the
 * policy's state by policy__fill_params() when the policy is created, so a documented
 * default and the value in force cannot differ: both are the table's text through the
 * same parser.
 */
#include "policy_internal.h"

#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the common parameters ------------------------------------------------------- */

enum common_kind { C_POLICY, C_BUDGET, C_INT, C_REAL, C_CHOICE, C_U64, C_LIST };

#define F(field) offsetof(policy_config, field)

/*  key            kind      field           lo    hi    default   choices  help */
#define COMMON_MAP(X)                                                                   \
    X("policy",      C_POLICY, F(name),        0,    0,    "full",   NULL,                \
      "the policy: kvsim policies lists them")                                          \
    X("budget",      C_BUDGET, F(budget),      0,    0,    "",       NULL,                \
      "B: 0.4 = fraction of the sequence, 512 = entries")                               \
    X("stride",      C_INT,    F(stride),      1,    1e6,  "1",      NULL,                \
      "entries evicted at once, when the cache holds B + stride")                       \
    X("phase",       C_CHOICE, F(phase),       0,    0,    "stream", "stream oneshot decode", \
      "stream | oneshot (compress the prompt once) | decode (prompt pinned)")           \
    X("gqa",         C_CHOICE, F(gqa),         0,    0,    "mean",   "mean max sum",      \
      "reduction of a group's rows: mean | max | sum")                                  \
    X("scope-of",    C_CHOICE, F(scope_of),    0,    0,    "",       "preset kv-head query-head layer", \
      "streams: kv-head (default) | query-head | layer (tova's default)")               \
    X("layer-decay", C_REAL,   F(layer_decay), 1e-3, 1e3,  "1",      NULL,                \
      "geometric per-layer budget B_l = B·L·d^l / Σ_j d^j")                              \
    X("layer-budgets", C_LIST, F(layer_budgets), 0, 0,   "",       NULL,                \
      "each layer's own B, in layer order: 0.7,0.5,... (fractions) or\n245,105,... (entries); "\
      "--budget stays the nominal B (kvpress\nPerLayerCompressionPress)")                 \
    X("decode-interval", C_INT, F(decode_interval), 0, 1e9, "0",   NULL,                \
      "after the prompt, every N-th generated token compresses the cache\nto decode-budget "\
      "(0 = off; kvpress DecodingPress)")                                                 \
    X("decode-budget", C_INT,  F(decode_budget), 0,   1e9,  "0",      NULL,                \
      "entries kept by each decode-interval compression")                                \
    X("soft-limit",  C_INT,    F(soft_limit),  0,    1e9,  "0",      NULL,                \
      "length below which nothing is evicted (0 = off)")                                \
    X("hard-limit",  C_INT,    F(hard_limit),  0,    1e9,  "0",      NULL,                \
      "length from which B holds; linear between soft and hard")                        \
    X("seed",        C_U64,    F(seed),        0,    0,    "0",      NULL,                \
      "random seed (random score, nothing else)")

typedef struct common_param {
    policy_param     info;   /* key, default and help, as every table's rows */
    enum common_kind kind;
} common_param;

static const common_param commons[] = {
#define COMMON_ROW(key, kind, off, lo, hi, def, choices, help) \
    {{key, POLICY_PARAM_INT, off, def, lo, hi, choices, help}, kind},
    COMMON_MAP(COMMON_ROW)
#undef COMMON_ROW
};
#define N_COMMON ((int)(sizeof commons / sizeof commons[0]))
_Static_assert(sizeof commons / sizeof commons[0] <= 32, "policy_config.set is 32 bits");

int policy_common_count(void) { return N_COMMON; }
const policy_param *policy_common_at(int i) { return &commons[i].info; }

/* --- names ------------------------------------------------------------------------- */

int policy__key_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static int common_index(const char *key)
{
    for (int i = 0; key && i < N_COMMON; i++)
        if (policy__key_equal(commons[i].info.key, key))
            return i;
    return -1;
}

int policy__is_common(const char *key) { return common_index(key) >= 0; }

/* The index of `word` among the space-separated `names`, or -1. */
static int choice_index(const char *names, const char *word, size_t len)
{
    int i = 0;
    for (const char *s = names; *s; i++) {
        size_t n = strcspn(s, " ");
        if (n == len && strncmp(s, word, len) == 0)
            return i;
        s += n + (s[n] == ' ');
    }
    return -1;
}

/* "a, b, c" from space-separated names, skipping the first `skip`. */
static const char *choices_text(const char *names, int skip, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    int i = 0;
    for (const char *s = names; *s && used < len; i++) {
        size_t n = strcspn(s, " ");
        if (i >= skip)
            used += (size_t)snprintf(buf + used, len - used, "%s%.*s", used ? ", " : "",
                                     (int)n, s);
        s += n + (s[n] == ' ');
    }
    return buf;
}

/* --- values ------------------------------------------------------------------------ */

static int parse_real(const char *key, const char *value, double lo, double hi, double *out,
                      kv_err *err)
{
    char *end = NULL;
    double v = strtod(value, &end);
    if (!*value || *end || !isfinite(v))
        return kv_errorf(err, KV_EUSAGE, "%s: '%s' is not a number", key, value);
    if (v < lo || v > hi)
        return kv_errorf(err, KV_EUSAGE, "%s: %s is out of range [%g, %g]", key, value, lo, hi);
    *out = v;
    return KV_OK;
}

static int parse_int(const char *key, const char *value, double lo, double hi, int *out,
                     kv_err *err)
{
    char *end = NULL;
    long v = strtol(value, &end, 10);
    if (!*value || *end)
        return kv_errorf(err, KV_EUSAGE, "%s: '%s' is not an integer", key, value);
    if (v < lo || v > hi)
        return kv_errorf(err, KV_EUSAGE, "%s: %s is out of range [%g, %g]", key, value, lo, hi);
    *out = (int)v;
    return KV_OK;
}

static int parse_choice(const char *key, const char *names, int skip, const char *value,
                        int *out, kv_err *err)
{
    char list[256];
    int i = choice_index(names, value, strlen(value));
    if (i < skip)
        return kv_errorf(err, KV_EUSAGE, "unknown %s '%s'; valid: %s", key, value,
                         choices_text(names, skip, list, sizeof list));
    *out = i;
    return KV_OK;
}

/* "none", or names of `choices` joined by '+', into a set of bits. */
static int parse_set(const char *key, const char *names, const char *value, int *out,
                     kv_err *err)
{
    char list[256];
    *out = 0;
    if (!strcmp(value, "none"))
        return KV_OK;
    for (const char *s = value; *s;) {
        size_t len = strcspn(s, "+");
        int bit = len ? choice_index(names, s, len) : -1;
        if (bit < 0)
            return kv_errorf(err, KV_EUSAGE, "unknown %s '%.*s' in '%s'; valid: none, or %s "
                             "joined by '+'", key, (int)len, s, value,
                             choices_text(names, 0, list, sizeof list));
        *out |= 1 << bit;
        s += len + (s[len] == '+');
    }
    return KV_OK;
}

/* "0.3" is a fraction of B in [0, 1]; "12" is an entry count >= 0. */
static int parse_size(const char *key, const char *value, policy_span *out, kv_err *err)
{
    memset(out, 0, sizeof *out);
    if (strchr(value, '.')) {
        out->is_fraction = 1;
        return parse_real(key, value, 0, 1, &out->fraction, err);
    }
    return parse_int(key, value, 0, 1e9, &out->entries, err);
}

int policy__parse_value(const policy_param *pm, const char *value, void *out, kv_err *err)
{
    switch (pm->kind) {
    case POLICY_PARAM_INT:
        return parse_int(pm->key, value, pm->lo, pm->hi, out, err);
    case POLICY_PARAM_REAL:
        return parse_real(pm->key, value, pm->lo, pm->hi, out, err);
    case POLICY_PARAM_CHOICE:
        if (!*value) {   /* a required choice not given yet */
            *(int *)out = -1;
            return KV_OK;
        }
        return parse_choice(pm->key, pm->choices, 0, value, out, err);
    case POLICY_PARAM_SET:
        return parse_set(pm->key, pm->choices, value, out, err);
    case POLICY_PARAM_SPAN:
        return parse_size(pm->key, value, out, err);
    }
    return kv_errorf(err, KV_EUSAGE, "%s: parameter kind %d unknown", pm->key, (int)pm->kind);
}

int policy_span_entries(const policy_span *s, int budget)
{
    if (!s->is_fraction)
        return s->entries;
    return budget > 0 ? (int)floor(s->fraction * budget) : 0;
}

int policy_span_parse(const char *text, policy_span *out, kv_err *err)
{
    return parse_size("size", text, out, err);
}

/* --- budgets ----------------------------------------------------------------------- */

int policy_budget_parse(const char *text, policy_budget *out, kv_err *err)
{
    if (!text || !*text)
        return kv_errorf(err, KV_EUSAGE, "empty budget: expected a fraction like 0.4 or an "
                         "entry count like 512");
    char *end = NULL;
    memset(out, 0, sizeof *out);
    if (strpbrk(text, "eEiInN"))   /* 1e2, inf, nan: say which form is meant */
        return kv_errorf(err, KV_EUSAGE, "budget '%s': write a fraction with a decimal point "
                         "(0.4) or a whole entry count (512), without exponents", text);
    if (strchr(text, '.')) {
        double f = strtod(text, &end);
        if (*end || end == text)
            return kv_errorf(err, KV_EUSAGE, "budget '%s' is not a number", text);
        if (f <= 0)
            return kv_errorf(err, KV_EUSAGE, "budget '%s' must be > 0", text);
        if (f > 1)
            return kv_errorf(err, KV_EUSAGE, "budget '%s' is a fraction of the sequence (it "
                             "has a decimal point) and must be in (0, 1]; write a whole "
                             "number for an entry count", text);
        out->is_fraction = 1;
        out->fraction = f;
        return KV_OK;
    }
    long v = strtol(text, &end, 10);
    if (*end || end == text)
        return kv_errorf(err, KV_EUSAGE, "budget '%s' is not a number: expected 0.4 "
                         "(fraction) or 512 (entries)", text);
    if (v <= 0)
        return kv_errorf(err, KV_EUSAGE, "budget '%s' must be >= 1 entry", text);
    out->entries = v;
    return KV_OK;
}

int policy_budget_resolve(const policy_budget *b, int T)
{
    double v = b->is_fraction ? floor(b->fraction * T) : (double)b->entries;
    if (v < 1)
        v = 1;
    return v > T ? T : (int)v;
}

void policy_config_resolve(policy_config *cfg, int T)
{
    cfg->resolved_len = T;
    if (cfg->budget_arg.is_fraction || cfg->budget_arg.entries > 0)
        cfg->budget = policy_budget_resolve(&cfg->budget_arg, T);
}

/* --- the common fields ------------------------------------------------------------- */

static int set_budget(policy_config *cfg, const char *value, kv_err *err)
{
    if (!*value) {   /* the default: no budget, never evict */
        memset(&cfg->budget_arg, 0, sizeof cfg->budget_arg);
        cfg->budget = POLICY_BUDGET_UNLIMITED;
        return KV_OK;
    }
    if (policy_budget_parse(value, &cfg->budget_arg, err) != KV_OK)
        return KV_EUSAGE;
    cfg->budget = cfg->budget_arg.is_fraction ? POLICY_BUDGET_UNRESOLVED
                  : cfg->budget_arg.entries > 1000000000 ? 1000000000
                                                         : (int)cfg->budget_arg.entries;
    return KV_OK;
}

/* "0.7,0.5" or "245,105": one budget per layer, stored > 0 entries, < 0 −fraction. */
static int set_layer_budgets(policy_config *cfg, const char *v, kv_err *err)
{
    cfg->n_layer_budgets = 0;
    for (const char *s = v; *v && s;) {
        char item[64];
        const size_t n = strcspn(s, ",");
        policy_budget b;
        snprintf(item, sizeof item, "%.*s", (int)(n < 63 ? n : 63), s);
        if (cfg->n_layer_budgets == POLICY_LAYERS_MAX)
            return kv_errorf(err, KV_EUSAGE, "layer-budgets: more than %d layers",
                             POLICY_LAYERS_MAX);
        if (policy_budget_parse(item, &b, err) != KV_OK) {
            kv_err_prefix(err, "layer-budgets, layer %d: ", cfg->n_layer_budgets);
            return KV_EUSAGE;
        }
        cfg->layer_budgets[cfg->n_layer_budgets++] = b.is_fraction ? -b.fraction
                                                                   : (double)b.entries;
        s = s[n] ? s + n + 1 : NULL;
    }
    return KV_OK;
}

static int set_common(policy_config *cfg, const common_param *c, const char *v, kv_err *err)
{
    void *field = (char *)cfg + c->info.offset;
    char names[512];
    switch (c->kind) {
    case C_POLICY: {
        const policy_def *def = policy_find(v);
        if (!def)
            return kv_errorf(err, KV_EUSAGE, "unknown policy '%s'; valid policies: %s", v,
                             policy_names(names, sizeof names));
        cfg->name = def->name;
        return KV_OK;
    }
    case C_BUDGET:
        return set_budget(cfg, v, err);
    case C_LIST:
        return set_layer_budgets(cfg, v, err);
    case C_INT:
        return parse_int(c->info.key, v, c->info.lo, c->info.hi, field, err);
    case C_REAL:
        return parse_real(c->info.key, v, c->info.lo, c->info.hi, field, err);
    case C_CHOICE: {
        int i = 0, skip = !strcmp(c->info.key, "scope-of");   /* "preset" is no value */
        if (!*v && skip) {
            cfg->scope_of = POLICY_SCOPE_OF_PRESET;
            return KV_OK;
        }
        if (parse_choice(c->info.key, c->info.choices, skip, v, &i, err) != KV_OK)
            return KV_EUSAGE;
        *(int *)field = i;   /* the enums follow their choices' order */
        return KV_OK;
    }
    case C_U64: {
        char *end = NULL;
        unsigned long long x = strtoull(v, &end, 0);
        if (!*v || *end || *v == '-')
            return kv_errorf(err, KV_EUSAGE, "seed: '%s' is not a non-negative integer", v);
        cfg->seed = x;
        return KV_OK;
    }
    }
    return KV_EUSAGE;
}

/* --- the public entry points ------------------------------------------------------- */

policy_config policy_config_default(void)
{
    policy_config c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < N_COMMON; i++)
        set_common(&c, &commons[i], commons[i].info.def, NULL);
    c.set = 0;
    return c;
}

static int unknown_key(const char *key, kv_err *err)
{
    char keys[1536];
    size_t used = 0;
    keys[0] = '\0';
    for (int j = 0; j < N_COMMON; j++)
        used += (size_t)snprintf(keys + used, sizeof keys - used, "%s%s", j ? ", " : "",
                                 commons[j].info.key);
    for (int d = 0; d < policy_count() && used < sizeof keys; d++)
        for (const policy_param *pm = policy_def_at(d)->params; pm && pm->key; pm++)
            if (policy_param_find(pm->key) == pm && used < sizeof keys)
                used += (size_t)snprintf(keys + used, sizeof keys - used, ", %s", pm->key);
    return kv_errorf(err, KV_EUSAGE, "unknown parameter '%s'; valid parameters: %s",
                     key ? key : "(null)", keys);
}

/* Keep `value` for the own parameter of row pm, replacing an earlier one. */
static int set_own(policy_config *cfg, const policy_param *pm, const char *value, kv_err *err)
{
    union { int i; double d; policy_span s; } scratch;
    if (policy__parse_value(pm, value, &scratch, err) != KV_OK)
        return KV_EUSAGE;
    if (strlen(value) >= POLICY_VALUE_MAX)
        return kv_errorf(err, KV_EUSAGE, "%s: '%.40s...' is longer than %d characters",
                         pm->key, value, POLICY_VALUE_MAX - 1);
    int i = 0;
    while (i < cfg->n_own && strcmp(cfg->own[i].key, pm->key))
        i++;
    if (i == POLICY_OWN_MAX)
        return kv_errorf(err, KV_EUSAGE, "more than %d policy parameters", POLICY_OWN_MAX);
    snprintf(cfg->own[i].key, sizeof cfg->own[i].key, "%s", pm->key);
    snprintf(cfg->own[i].value, sizeof cfg->own[i].value, "%s", value);
    cfg->n_own += i == cfg->n_own;
    return KV_OK;
}

int policy_config_set(policy_config *cfg, const char *key, const char *value, kv_err *err)
{
    int i = common_index(key);
    const policy_param *own = i < 0 ? policy_param_find(key) : NULL;
    if (i < 0 && !own)
        return unknown_key(key, err);
    if (!value)
        return kv_errorf(err, KV_EUSAGE, "%s: missing value", key);
    if (own) {
        if (set_own(cfg, own, value, err) != KV_OK)
            return KV_EUSAGE;
        /* A score or scope alone composes a policy: the score x scope family's `scored`. */
        const int compose = !strcmp(own->key, "score") || !strcmp(own->key, "scope");
        if (compose && !(cfg->set & (1u << common_index("policy"))))
            cfg->name = "scored";
        return KV_OK;
    }
    if (set_common(cfg, &commons[i], value, err) != KV_OK)
        return KV_EUSAGE;
    cfg->set |= 1u << i;
    return KV_OK;
}

int policy_config_set_list(policy_config *cfg, const char *pairs, kv_err *err)
{
    char pair[256];
    for (const char *s = pairs; s && *s;) {
        size_t len = strcspn(s, ",");
        if (len >= sizeof pair)
            return kv_errorf(err, KV_EUSAGE, "'%.*s' is too long", (int)len, s);
        memcpy(pair, s, len);
        pair[len] = '\0';
        s += len + (s[len] == ',');
        char *eq = strchr(pair, '=');
        if (!eq)
            return kv_errorf(err, KV_EUSAGE, "'%s' is not key=value", pair);
        *eq = '\0';
        if (policy_config_set(cfg, pair, eq + 1, err) != KV_OK)
            return KV_EUSAGE;
    }
    return KV_OK;
}

int policy_args_take(void *args, const char *key, const char *value, int *used, kv_err *err)
{
    policy_args *a = args;
    if (!policy_param_find(key))
        return 0;
    if (!value)
        return kv_errorf(err, KV_EUSAGE, "option '--%s' needs a value", key);
    if (a->n == POLICY_ARGS_MAX)
        return kv_errorf(err, KV_EUSAGE, "more than %d policy parameters", POLICY_ARGS_MAX);
    a->key[a->n] = policy_param_find(key)->key;
    a->value[a->n++] = value;
    *used = 1;
    return 1;
}

const char *policy_args_get(const policy_args *args, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < args->n; i++)
        if (policy__key_equal(args->key[i], key))
            v = args->value[i];
    return v;
}

int policy_config_apply(policy_config *cfg, const policy_args *args, kv_err *err)
{
    for (int i = 0; i < args->n; i++)
        if (policy_config_set(cfg, args->key[i], args->value[i], err) != KV_OK)
            return KV_EUSAGE;
    return KV_OK;
}

int policy_config_is_set(const policy_config *cfg, const char *key)
{
    int i = common_index(key);
    if (i >= 0)
        return (cfg->set & (1u << i)) != 0;
    for (int j = 0; j < cfg->n_own; j++)
        if (policy__key_equal(cfg->own[j].key, key))
            return 1;
    return 0;
}

policy_scope_of policy_config_scope_of(const policy_config *cfg)
{
    if (cfg->scope_of != POLICY_SCOPE_OF_PRESET)
        return cfg->scope_of;
    const policy_def *def = policy_find(cfg->name);
    return def && def->scope_of != POLICY_SCOPE_OF_PRESET ? def->scope_of
                                                          : POLICY_SCOPE_OF_KV_HEAD;
}

/* --- a policy's own parameters -------------------------------------------------------- */

const policy_param *policy__def_param(const policy_def *def, const char *key)
{
    for (; def; def = def->base)
        for (const policy_param *pm = def->params; pm && pm->key; pm++)
            if (policy__key_equal(pm->key, key))
                return pm;
    return NULL;
}

int policy__chain(const policy_def *def, const policy_def **chain)
{
    int n = 0;
    for (const policy_def *d = def; d && n < POLICY_BASES_MAX; d = d->base)
        n++;
    int i = n;
    for (const policy_def *d = def; d && i > 0; d = d->base)
        chain[--i] = d;
    return n;
}

/* The value of `key` in a "k=v,k=v" list, into buf; NULL when absent. */
static const char *pair_value(const char *pairs, const char *key, char *buf, size_t len)
{
    for (const char *s = pairs; s && *s;) {
        size_t n = strcspn(s, ","), k = strcspn(s, "=");
        if (k < n && k == strlen(key) && !strncmp(s, key, k)) {
            snprintf(buf, len, "%.*s", (int)(n - k - 1), s + k + 1);
            return buf;
        }
        s += n + (s[n] == ',');
    }
    return NULL;
}

/* The default of `key` for def: the nearest preset's, else the table's. */
static const char *default_value(const policy_def *def, const policy_param *pm, char *buf,
                                 size_t len)
{
    for (const policy_def *d = def; d; d = d->base)
        if (pair_value(d->defaults, pm->key, buf, len))
            return buf;
    return pm->def;
}

const char *policy_config_value(const policy_config *cfg, const char *key, char *buf,
                                size_t len)
{
    const policy_def *def = policy_find(cfg->name);
    const policy_param *pm = def ? policy__def_param(def, key) : NULL;
    if (!pm)
        return NULL;
    for (int i = 0; i < cfg->n_own; i++)
        if (!strcmp(cfg->own[i].key, pm->key)) {
            snprintf(buf, len, "%s", cfg->own[i].value);
            return buf;
        }
    const char *v = default_value(def, pm, buf, len);
    if (v != buf)
        snprintf(buf, len, "%s", v);
    return buf;
}

/* Parse every row of def's chain into state: defaults, then cfg's values.  strict:
 * a value no row takes is an error; otherwise it is skipped (policy__reads's bare
 * objects of policy_config_drop_unused). */
static int fill(const policy_def *def, const policy_config *cfg, void *state, int strict,
                kv_err *err)
{
    char buf[POLICY_VALUE_MAX];
    for (const policy_def *d = def; d; d = d->base)
        for (const policy_param *pm = d->params; pm && pm->key; pm++)
            if (policy__parse_value(pm, default_value(def, pm, buf, sizeof buf),
                                    (char *)state + pm->offset, err) != KV_OK) {
                kv_err_prefix(err, "policy '%s', its default: ", def->name);
                return KV_EUSAGE;
            }
    for (int i = 0; i < cfg->n_own; i++) {
        const policy_param *pm = policy__def_param(def, cfg->own[i].key);
        if (!pm && !strict)
            continue;
        if (!pm) {
            char list[512];
            return kv_errorf(err, KV_EUSAGE, "parameter '%s' does not apply to policy '%s'; "
                             "its parameters: %s (and the common ones: kvsim policies)",
                             cfg->own[i].key, def->name,
                             policy_params_of(def, cfg, list, sizeof list)[0] ? list : "none");
        }
        if (policy__parse_value(pm, cfg->own[i].value, (char *)state + pm->offset, err))
            return KV_EUSAGE;
    }
    return KV_OK;
}

int policy__fill_params(const policy_def *def, const policy_config *cfg, void *state,
                        kv_err *err)
{
    return fill(def, cfg, state, 1, err);
}

int policy__reads(const policy_def *def, const policy *bare, const char *key)
{
    if (!policy__def_param(def, key))
        return 0;
    for (const policy_def *d = def; d; d = d->base)
        if (d->ops.uses)
            return d->ops.uses(bare, key);
    return 1;
}

/* A policy object with its parameters filled and nothing else, for questions about
 * what it reads; free with free_bare. */
static policy *bare_policy(const policy_def *def, const policy_config *cfg)
{
    policy *p = calloc(1, sizeof *p);
    if (!p || !(p->state = calloc(1, def->state_size ? def->state_size : 1))) {
        free(p);
        return NULL;
    }
    p->def = def;
    p->cfg = *cfg;
    p->cfg.name = def->name;
    if (fill(def, cfg, p->state, 0, NULL) != KV_OK) {
        free(p->state);
        free(p);
        return NULL;
    }
    return p;
}

static void free_bare(policy *p)
{
    if (p)
        free(p->state);
    free(p);
}

int policy_config_drop_unused(policy_config *cfg, char *dropped, size_t len)
{
    const policy_def *def = policy_find(cfg->name);
    policy *bare = def ? bare_policy(def, cfg) : NULL;
    int n = 0, kept = 0;
    if (dropped && len)
        dropped[0] = '\0';
    if (!bare)
        return 0;
    for (int i = 0; i < cfg->n_own; i++) {
        if (policy__reads(def, bare, cfg->own[i].key)) {
            cfg->own[kept++] = cfg->own[i];
            continue;
        }
        if (dropped && strlen(dropped) + strlen(cfg->own[i].key) + 2 <= len)
            strcat(strcat(dropped, n ? " " : ""), cfg->own[i].key);
        n++;
    }
    cfg->n_own = kept;
    free_bare(bare);
    return n;
}

/* "key=value" for each parameter policy `def` reads under cfg, leaving out those its
 * preset sets (they show as its defaults). */
const char *policy_params_of(const policy_def *def, const policy_config *cfg, char *buf,
                             size_t len)
{
    policy_config c = cfg ? *cfg : policy_config_default();
    c.name = def->name;
    policy *bare = bare_policy(def, &c);
    char value[POLICY_VALUE_MAX], scratch[POLICY_VALUE_MAX];
    const policy_def *chain[POLICY_BASES_MAX];
    int n = policy__chain(def, chain);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; bare && i < n; i++)
        for (const policy_param *pm = chain[i]->params; pm && pm->key && used < len; pm++) {
            if (!policy__reads(def, bare, pm->key) ||
                pair_value(def->defaults, pm->key, scratch, sizeof scratch))
                continue;
            const char *v = policy_config_value(&c, pm->key, value, sizeof value);
            used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", used ? " " : "",
                                     pm->key, v && *v ? v : "(required)");
        }
    free_bare(bare);
    return buf;
}
