/*
 * policy_config.c — the one parser of policy configuration.
 *
 * Every CLI option and every "key=value" pair of cfg.params goes through
 * policy_config_set(), which reads POLICY_PARAM_MAP: each parameter's key, kind,
 * field, range, default and help line.  The defaults of policy_config_default() are
 * the same table's texts run through the same parser, so a documented default and
 * the value in force cannot differ.  Which parameters a policy reads is decided in
 * policy.c (the registry) and by the family's `uses` op.
 */
#include "policy_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum param_kind {
    K_POLICY, K_SCORE, K_SCOPE, K_SCOPE_OF, K_GQA, K_PHASE, K_POOL, /* names */
    K_BUDGET, K_WINDOW, K_INT, K_REAL, K_U64,                        /* numbers */
};

#define F(field) offsetof(policy_config, field)

/*  key            kind        field        common  lo    hi     default  help */
#define POLICY_PARAM_MAP(X)                                                              \
    X("policy",      K_POLICY,   F(name),       1, 0, 0,     "full",                      \
      "preset: see the list above")                                                      \
    X("score",       K_SCORE,    F(score),      0, 0, 0,     "",                          \
      "importance score, overrides the preset's: aas mas ltas aqas knorm recency random oracle") \
    X("scope",       K_SCOPE,    F(scope),      0, 0, 0,     "",                          \
      "protected entries, overrides the preset's: none | sinks, window, std joined by +") \
    X("scope-of",    K_SCOPE_OF, F(scope_of),   1, 0, 0,     "",                          \
      "streams: kv-head (default) | query-head | layer (tova's default)")                \
    X("gqa",         K_GQA,      F(gqa),        1, 0, 0,     "mean",                      \
      "reduction of a group's rows: mean | max | sum")                                   \
    X("budget",      K_BUDGET,   F(budget),     1, 0, 0,     "",                          \
      "B: 0.4 = fraction of the sequence, 512 = entries")                                \
    X("stride",      K_INT,      F(stride),     1, 1, 1e6,   "1",                         \
      "entries evicted at once, when the cache holds B + stride")                        \
    X("phase",       K_PHASE,    F(phase),      1, 0, 0,     "stream",                    \
      "stream | oneshot (compress the prompt once) | decode (prompt pinned)")            \
    X("layer-decay", K_REAL,     F(layer_decay),1, 1e-3, 1e3, "1",                        \
      "geometric per-layer budget B_l = B·L·d^l / Σ_j d^j")                               \
    X("soft-limit",  K_INT,      F(soft_limit), 1, 0, 1e9,   "0",                         \
      "length below which nothing is evicted (0 = off)")                                 \
    X("hard-limit",  K_INT,      F(hard_limit), 1, 0, 1e9,   "0",                         \
      "length from which B holds; linear between soft and hard")                         \
    X("sinks",       K_INT,      F(sinks),      0, 0, 1e9,   "4",                         \
      "protected first positions (scope sinks)")                                         \
    X("window",      K_WINDOW,   F(window),     0, 0, 0,     "0.3",                       \
      "protected size r of window/std: 0.3 = fraction of B, 12 = entries")               \
    X("recent",      K_INT,      F(recent),     0, 0, 1e9,   "10",                        \
      "newest entries the std scope always protects (EasyKV: 10)")                       \
    X("seed",        K_U64,      F(seed),       1, 0, 0,     "0",                         \
      "random seed (random score, nothing else)")                                        \
    X("history",     K_INT,      F(history),    0, 1, 65536, "400",                       \
      "aqas: steps of history counted (Scissorhands window)")                            \
    X("skip-layers", K_INT,      F(skip_layers),0, 0, 1e6,   "2",                         \
      "knorm: layers below this keep everything")                                        \
    X("obs-window",  K_INT,      F(obs_window), 0, 1, 1e6,   "32",                        \
      "snapkv: observation window w, the last w prompt queries")                         \
    X("kernel",      K_INT,      F(kernel),     0, 1, 999,   "7",                         \
      "snapkv: pooling width (odd)")                                                     \
    X("pool",        K_POOL,     F(pool),       0, 0, 0,     "max",                       \
      "snapkv: pooling, max | avg")                                                      \
    X("beta",        K_INT,      F(beta),       0, 1, 1e6,   "20",                        \
      "pyramidkv: bottom/top budget ratio")                                              \
    X("recovery",    K_REAL,     F(recovery),   0, 0, 1,     "0.95",                      \
      "fastgen: attention mass T a profile must recover")                                \
    X("r-f",         K_REAL,     F(r_f),        0, 0, 1,     "0.3",                       \
      "fastgen: frequent tokens kept, fraction of the length")                           \
    X("r-l",         K_REAL,     F(r_l),        0, 0, 1,     "0.3",                       \
      "fastgen: local window, fraction of the length")                                   \
    X("floor",       K_REAL,     F(floor),      0, 0, 1,     "0.2",                       \
      "adakv: each head keeps its top floor·B")                                          \
    X("stride-min",  K_INT,      F(stride_min), 0, 1, 1e6,   "1",                         \
      "pace: smallest block evicted")                                                    \
    X("stride-max",  K_INT,      F(stride_max), 0, 1, 1e6,   "8",                         \
      "pace: largest block evicted")                                                     \
    X("settle",      K_REAL,     F(settle),     0, 0, 1e6,   "1",                         \
      "pace: a block is settled below settle × the uniform weight 1/n")

typedef struct param {
    const char     *key;
    enum param_kind kind;
    size_t          offset;
    int             common;   /* applies to every policy */
    double          lo, hi;   /* range of K_INT and K_REAL */
    const char     *def;
    const char     *help;
} param;

static const param params[] = {
#define PARAM_ROW(key, kind, off, common, lo, hi, def, help) {key, kind, off, common, lo, hi, def, help},
    POLICY_PARAM_MAP(PARAM_ROW)
#undef PARAM_ROW
};
#define N_PARAMS ((int)(sizeof params / sizeof params[0]))
_Static_assert(sizeof params / sizeof params[0] <= 64, "policy_config.set is a 64-bit mask");

static const policy_param_info param_infos[] = {
#define PARAM_INFO(key, kind, off, common, lo, hi, def, help) {key, def, help},
    POLICY_PARAM_MAP(PARAM_INFO)
#undef PARAM_INFO
};

static const char *const score_names[] = {
    [POLICY_SCORE_PRESET] = "preset", [POLICY_SCORE_AAS] = "aas",
    [POLICY_SCORE_MAS] = "mas",       [POLICY_SCORE_LTAS] = "ltas",
    [POLICY_SCORE_AQAS] = "aqas",     [POLICY_SCORE_KNORM] = "knorm",
    [POLICY_SCORE_RECENCY] = "recency", [POLICY_SCORE_RANDOM] = "random",
    [POLICY_SCORE_ORACLE] = "oracle",
};
#define N_SCORES ((int)(sizeof score_names / sizeof score_names[0]))

static const char *const scope_names[] = {"sinks", "window", "std"}; /* bit order */
static const char *const scope_of_names[] = {"preset", "kv-head", "query-head", "layer"};
static const char *const gqa_names[] = {"mean", "max", "sum"};
static const char *const phase_names[] = {"stream", "oneshot", "decode"};
static const char *const pool_names[] = {"max", "avg"};

int policy__fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* --- lookups ---------------------------------------------------------------------- */

/* Keys compare with '_' read as '-', so "r_f" and "r-f" are one key. */
static int key_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

int policy__param_index(const char *key)
{
    for (int i = 0; key && i < N_PARAMS; i++)
        if (key_equal(params[i].key, key))
            return i;
    return -1;
}

int policy__param_is_common(int index) { return params[index].common; }
int policy_param_count(void) { return N_PARAMS; }
const policy_param_info *policy_param_list(void) { return param_infos; }

const policy_param_info *policy_param_find(const char *key)
{
    int i = policy__param_index(key);
    return i < 0 ? NULL : &param_infos[i];
}

static int name_index(const char *const *names, int n, const char *text)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], text) == 0)
            return i;
    return -1;
}

/* "a, b, c" from the first..n-1 names, for error messages. */
static const char *join(const char *const *names, int first, int n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = first; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i > first ? ", " : "",
                                 names[i]);
    return buf;
}

const char *policy__score_name(policy_score score)
{
    return (int)score >= 0 && (int)score < N_SCORES ? score_names[score] : "?";
}

policy_score policy__score_from_name(const char *name)
{
    int i = name ? name_index(score_names, N_SCORES, name) : -1;
    return i > 0 ? (policy_score)i : POLICY_SCORE_PRESET;
}

int policy__scope_parse(const char *text, int *out, char *err, size_t errlen)
{
    char names[128];
    *out = 0;
    if (strcmp(text, "none") == 0)
        return 0;
    for (const char *s = text; *s;) {
        size_t len = strcspn(s, "+");
        int bit = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(scope_names[i]) == len && strncmp(scope_names[i], s, len) == 0)
                bit = i;
        if (bit < 0)
            return policy__fail(err, errlen, "unknown scope '%.*s' in '%s'; valid scopes: "
                                "none, or %s joined by '+'", (int)len, s, text,
                                join(scope_names, 0, 3, names, sizeof names));
        *out |= 1 << bit;
        s += len + (s[len] == '+');
    }
    return 0;
}

const char *policy__scope_name(int scope, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    if (scope == 0)
        snprintf(buf, len, "none");
    for (int i = 0; i < 3 && used < len; i++)
        if (scope & (1 << i))
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "+" : "",
                                     scope_names[i]);
    return buf;
}

/* --- values ----------------------------------------------------------------------- */

static int parse_real(const param *pm, const char *value, double *out, char *err, size_t errlen)
{
    char *end = NULL;
    double v = strtod(value, &end);
    if (!*value || *end || !isfinite(v))
        return policy__fail(err, errlen, "%s: '%s' is not a number", pm->key, value);
    if (v < pm->lo || v > pm->hi)
        return policy__fail(err, errlen, "%s: %s is out of range [%g, %g]", pm->key, value,
                            pm->lo, pm->hi);
    *out = v;
    return 0;
}

static int parse_int(const param *pm, const char *value, int *out, char *err, size_t errlen)
{
    char *end = NULL;
    long v = strtol(value, &end, 10);
    if (!*value || *end)
        return policy__fail(err, errlen, "%s: '%s' is not an integer", pm->key, value);
    if (v < pm->lo || v > pm->hi)
        return policy__fail(err, errlen, "%s: %s is out of range [%g, %g]", pm->key, value,
                            pm->lo, pm->hi);
    *out = (int)v;
    return 0;
}

static int parse_named(const param *pm, const char *const *names, int first, int n,
                       const char *value, int *out, char *err, size_t errlen)
{
    char list[256];
    int i = name_index(names, n, value);
    if (i < first)
        return policy__fail(err, errlen, "unknown %s '%s'; valid: %s", pm->key, value,
                            join(names, first, n, list, sizeof list));
    *out = i;
    return 0;
}

/* "0.3" is a fraction of B in [0, 1]; "12" is an entry count >= 0. */
static int parse_window(policy_config *cfg, const char *value, char *err, size_t errlen)
{
    static const param frac = {"window", K_REAL, 0, 0, 0, 1, "", ""};
    static const param count = {"window", K_INT, 0, 0, 0, 1e9, "", ""};
    if (strchr(value, '.')) {
        cfg->window = -1;
        return parse_real(&frac, value, &cfg->window_frac, err, errlen);
    }
    return parse_int(&count, value, &cfg->window, err, errlen);
}

static int parse_budget(policy_config *cfg, const char *value, char *err, size_t errlen)
{
    if (!*value) {   /* the default: no budget, never evict */
        memset(&cfg->budget_arg, 0, sizeof cfg->budget_arg);
        cfg->budget = POLICY_BUDGET_UNLIMITED;
        return 0;
    }
    if (policy_budget_parse(value, &cfg->budget_arg, err, errlen) != 0)
        return -1;
    cfg->budget = cfg->budget_arg.is_fraction ? POLICY_BUDGET_UNRESOLVED
                                              : (int)(cfg->budget_arg.entries > 1000000000
                                                          ? 1000000000 : cfg->budget_arg.entries);
    return 0;
}

static int parse_policy(policy_config *cfg, const char *value, char *err, size_t errlen)
{
    char names[512];
    const policy_info *info = policy_find(value);
    if (!info)
        return policy__fail(err, errlen, "unknown policy '%s'; valid policies: %s", value,
                            policy_names(names, sizeof names));
    cfg->name = info->name;
    return 0;
}

static int set_value(policy_config *cfg, const param *pm, const char *v, char *err, size_t errlen)
{
    void *field = (char *)cfg + pm->offset;
    int tmp = 0, rc = 0;
    switch (pm->kind) {
    case K_POLICY: return parse_policy(cfg, v, err, errlen);
    case K_BUDGET: return parse_budget(cfg, v, err, errlen);
    case K_WINDOW: return parse_window(cfg, v, err, errlen);
    case K_INT:    return parse_int(pm, v, field, err, errlen);
    case K_REAL:   return parse_real(pm, v, field, err, errlen);
    case K_SCOPE:
        if (!*v) {
            cfg->scope = POLICY_SCOPE_PRESET;
            return 0;
        }
        return policy__scope_parse(v, &cfg->scope, err, errlen);
    case K_U64: {
        char *end = NULL;
        unsigned long long x = strtoull(v, &end, 0);
        if (!*v || *end || *v == '-')
            return policy__fail(err, errlen, "seed: '%s' is not a non-negative integer", v);
        cfg->seed = x;
        return 0;
    }
    case K_SCORE:
        if (!*v) {
            cfg->score = POLICY_SCORE_PRESET;
            return 0;
        }
        rc = parse_named(pm, score_names, 1, N_SCORES, v, &tmp, err, errlen);
        cfg->score = (policy_score)tmp;
        return rc;
    case K_SCOPE_OF:
        if (!*v) {
            cfg->scope_of = POLICY_SCOPE_OF_PRESET;
            return 0;
        }
        rc = parse_named(pm, scope_of_names, 1, 4, v, &tmp, err, errlen);
        cfg->scope_of = (policy_scope_of)tmp;
        return rc;
    case K_GQA:
        rc = parse_named(pm, gqa_names, 0, 3, v, &tmp, err, errlen);
        cfg->gqa = (policy_gqa)tmp;
        return rc;
    case K_PHASE:
        rc = parse_named(pm, phase_names, 0, 3, v, &tmp, err, errlen);
        cfg->phase = (policy_phase)tmp;
        return rc;
    case K_POOL:
        rc = parse_named(pm, pool_names, 0, 2, v, &tmp, err, errlen);
        cfg->pool = (policy_pool)tmp;
        return rc;
    }
    return -1;
}

/* --- the public entry points ----------------------------------------------------- */

int policy_config_set(policy_config *cfg, const char *key, const char *value, char *err,
                      size_t errlen)
{
    char keys[1024];
    int i = policy__param_index(key);
    if (i < 0) {
        size_t used = 0;
        keys[0] = '\0';
        for (int j = 0; j < N_PARAMS && used < sizeof keys; j++)
            used += (size_t)snprintf(keys + used, sizeof keys - used, "%s%s", j ? ", " : "",
                                     params[j].key);
        return policy__fail(err, errlen, "unknown parameter '%s'; valid parameters: %s",
                            key ? key : "(null)", keys);
    }
    if (!value)
        return policy__fail(err, errlen, "%s: missing value", params[i].key);
    if (set_value(cfg, &params[i], value, err, errlen) != 0)
        return -1;
    cfg->set |= 1ull << i;
    /* A score or scope alone composes a policy: select the `scored` preset. */
    int is_compose = params[i].kind == K_SCORE || params[i].kind == K_SCOPE;
    if (is_compose && !(cfg->set & (1ull << policy__param_index("policy"))))
        cfg->name = "scored";
    return 0;
}

policy_config policy_config_default(void)
{
    policy_config c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < N_PARAMS; i++)
        set_value(&c, &params[i], params[i].def, NULL, 0);
    c.set = 0;
    return c;
}

void policy_config_resolve(policy_config *cfg, int T)
{
    if (cfg->budget_arg.is_fraction || cfg->budget_arg.entries > 0)
        cfg->budget = policy_budget_resolve(&cfg->budget_arg, T);
}

/* Apply cfg->params ("k=v,k=v") through policy_config_set. */
int policy__config_apply_params(policy_config *cfg, char *err, size_t errlen)
{
    char pair[256];
    for (const char *s = cfg->params; s && *s;) {
        size_t len = strcspn(s, ",");
        if (len >= sizeof pair)
            return policy__fail(err, errlen, "params: '%.*s' is too long", (int)len, s);
        memcpy(pair, s, len);
        pair[len] = '\0';
        s += len + (s[len] == ',');
        char *eq = strchr(pair, '=');
        if (!eq)
            return policy__fail(err, errlen, "params: '%s' is not key=value", pair);
        *eq = '\0';
        if (policy__param_index(pair) == policy__param_index("policy"))
            return policy__fail(err, errlen, "params: 'policy' cannot be set inside params");
        if (policy_config_set(cfg, pair, eq + 1, err, errlen) != 0)
            return -1;
    }
    return 0;
}
