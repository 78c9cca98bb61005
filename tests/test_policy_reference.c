/*
 * test_policy_reference.c — the C policies against an independent reference.
 *
 * tests/fixtures/policy_reference.py implements aas, mas, ltas and aqas in every
 * scope, and snapkv, from the published algorithms (not from this code) and records
 * random streams with every eviction, the final kept set and the final scores in
 * policy_reference.txt.  Here each case is replayed through policy_config_set() and
 * policy_layer_step, the contract's step order; every eviction, the kept set and the scores must be
 * exactly equal (invariants 2, 4 and 7 on real-looking data).
 */
#include "policy_drive.h"

#include <stdlib.h>

#define MAX_T 32
#define MAX_G 3
#define N_STREAMS 4

typedef struct stream { int T, G; int w[MAX_T][MAX_G][MAX_T]; } stream;

static stream streams[N_STREAMS];

static FILE *open_fixture(void)
{
    char path[1024];
    const char *dir = getenv("KV_FIXTURES");
    snprintf(path, sizeof path, "%s/policy_reference.txt", dir ? dir : "tests/fixtures");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    return f;
}

static void read_stream(FILE *f, const char *line)
{
    int id, T, G;
    cr_assert_eq(sscanf(line, "stream %d %d %d", &id, &T, &G), 3);
    cr_assert(id >= 0 && id < N_STREAMS && T <= MAX_T && G <= MAX_G);
    streams[id].T = T, streams[id].G = G;
    for (int t = 0; t < T; t++)
        for (int g = 0; g < G; g++)
            for (int i = 0; i <= t; i++)
                cr_assert_eq(fscanf(f, "%d", &streams[id].w[t][g][i]), 1);
}

/* "key=value" of a case line, or NULL. */
static const char *field(const char *line, const char *key, char *buf, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *s = strstr(line, pat);
    if (!s)
        return NULL;
    s += strlen(pat);
    size_t n = strcspn(s, " \n");
    snprintf(buf, len, "%.*s", (int)n, s);
    return buf;
}

static void set(policy_config *cfg, const char *key, const char *value)
{
    kv_err err = {0};
    cr_assert_eq(policy_config_set(cfg, key, value, &err), 0, "%s=%s: %s", key, value,
                 err.msg);
}

/* The config of a case, through the one parser.  Parameters are set only where the
 * policy reads them: anything else would be (rightly) rejected by policy_layer_new. */
static policy_config case_config(const char *line, int T)
{
    char v[64], scope[64];
    policy_config cfg = policy_config_default();
    int snap = strcmp(field(line, "kind", v, sizeof v), "snapkv") == 0;
    set(&cfg, "policy", snap ? "snapkv" : "scored");
    set(&cfg, "budget", field(line, "budget", v, sizeof v));
    set(&cfg, "stride", field(line, "stride", v, sizeof v));
    set(&cfg, "gqa", field(line, "gqa", v, sizeof v));
    if (snap) {
        set(&cfg, "obs-window", field(line, "obs_window", v, sizeof v));
        set(&cfg, "kernel", field(line, "kernel", v, sizeof v));
        set(&cfg, "pool", field(line, "pool", v, sizeof v));
        cfg.prompt_len = T;
        return cfg;
    }
    set(&cfg, "score", field(line, "score", v, sizeof v));
    set(&cfg, "scope", field(line, "scope", scope, sizeof scope));
    if (strstr(scope, "sinks"))
        set(&cfg, "sinks", field(line, "sinks", v, sizeof v));
    if ((strstr(scope, "window") || strstr(scope, "std")) && strcmp(field(line, "window", v, sizeof v), "-1"))
        set(&cfg, "window", v);
    if (strstr(scope, "std"))
        set(&cfg, "recent", field(line, "recent", v, sizeof v));
    if (!strcmp(field(line, "score", v, sizeof v), "aqas"))
        set(&cfg, "history", field(line, "history", v, sizeof v));
    return cfg;
}

/* The step's side of the callbacks: the stream, the step, what went. */
typedef struct step_ctx {
    const stream *s;
    int           t, k;
    int           before[MAX_T], gone[MAX_T];
} step_ctx;

/* One step's rows: each head's weights over the kept positions, renormalised. */
static int rows_over(void *ctx, int si, const policy *p, float *rows, kv_err *err)
{
    (void)si, (void)err;
    const step_ctx *x = ctx;
    const policy_entry *e = policy_entries(p);
    int n = policy_size(p);
    for (int g = 0; g < x->s->G; g++) {
        double total = 0;
        for (int i = 0; i < n; i++)
            total += x->s->w[x->t][g][e[i].position];
        for (int i = 0; i < n; i++)
            rows[g * n + i] = (float)(x->s->w[x->t][g][e[i].position] / total);
    }
    return 0;
}

static void note_positions(void *ctx, int si, const policy *p)
{
    (void)si;
    step_ctx *x = ctx;
    for (int i = 0; i < policy_size(p); i++)
        x->before[i] = policy_entries(p)[i].position;
}

static void note_gone(void *ctx, int si, const int *slots, int k)
{
    (void)si;
    step_ctx *x = ctx;
    for (int j = 0; j < k; j++)
        x->gone[j] = x->before[slots[j]];
    x->k = k;
}

/* Parse "evict t p p p" / "kept p p" / "scores x x" into vals; returns the count. */
static int numbers(const char *rest, double *vals, int max)
{
    int n = 0;
    char *end;
    for (const char *s = rest; n < max;) {
        double x = strtod(s, &end);
        if (end == s)
            break;
        vals[n++] = x;
        s = end;
    }
    return n;
}

typedef struct events {
    int n;                    /* eviction steps */
    int t[MAX_T];             /* the step of each */
    int k[MAX_T];             /* entries evicted */
    int pos[MAX_T][MAX_T];    /* their positions, ascending */
} events;

/* Read the case's "evict" lines; leaves the "kept" line in `line`. */
static void read_events(FILE *f, events *ev, char *line, size_t len)
{
    double vals[MAX_T + 1];
    ev->n = 0;
    while (fgets(line, (int)len, f) && !strncmp(line, "evict ", 6)) {
        int m = numbers(line + 6, vals, MAX_T + 1);
        ev->t[ev->n] = (int)vals[0];
        ev->k[ev->n] = m - 1;
        for (int j = 1; j < m; j++)
            ev->pos[ev->n][j - 1] = (int)vals[j];
        ev->n++;
    }
}

/* One step through policy_layer_step; the positions evicted (ascending) in x->gone. */
static int step(policy_layer *L, step_ctx *x, int t)
{
    static const policy_io io = {rows_over, note_positions, NULL, note_gone};
    const policy_token tok = {.position = t, .token = t};
    kv_err err = {0};
    x->t = t;
    x->k = 0;
    cr_assert_eq(policy_layer_step(L, &tok, &io, x, &err), 0, "%s", err.msg);
    return x->k;
}

static void check_final(FILE *f, const policy *p, const char *case_line, const char *kept_line)
{
    char line[8192];
    double vals[MAX_T];
    cr_assert(!strncmp(kept_line, "kept ", 5), "%s: expected the kept line, read %s",
              case_line, kept_line);
    int n_kept = numbers(kept_line + 5, vals, MAX_T);
    cr_assert_eq(policy_size(p), n_kept, "%s: kept %d, the reference %d", case_line,
                 policy_size(p), n_kept);
    for (int i = 0; i < n_kept; i++)
        cr_assert_eq(policy_entries(p)[i].position, (int)vals[i], "%s: kept slot %d",
                     case_line, i);
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_eq(numbers(line + 7, vals, MAX_T), n_kept);
    float scores[MAX_T];
    cr_assert_eq(policy_scores(p, scores), 0);
    for (int i = 0; i < n_kept; i++)
        cr_assert_eq(scores[i], (float)vals[i], "%s: score of slot %d: %.9g, the reference %.9g",
                     case_line, i, scores[i], vals[i]);
}

static void run_case(FILE *f, const char *case_line, int *n_cases)
{
    char v[64], line[8192];
    step_ctx x = {.s = &streams[atoi(field(case_line, "stream", v, sizeof v))]};
    int T = atoi(field(case_line, "T", v, sizeof v));
    policy_config cfg = case_config(case_line, T);
    policy_layer *L = stream_new_g(&cfg, 0, 1, x.s->G);
    events ev;
    read_events(f, &ev, line, sizeof line);
    int next = 0, *gone = x.gone;
    for (int t = 0; t < T; t++) {
        int k = step(L, &x, t);
        if (next < ev.n && ev.t[next] == t) {
            cr_assert_eq(k, ev.k[next], "%s\nt=%d: evicted %d, the reference %d", case_line, t,
                         k, ev.k[next]);
            for (int j = 0; j < k; j++)
                cr_assert_eq(gone[j], ev.pos[next][j], "%s\nt=%d: evicted position %d, the "
                             "reference %d", case_line, t, gone[j], ev.pos[next][j]);
            next++;
        } else {
            cr_assert_eq(k, 0, "%s\nt=%d: evicted %d, the reference none", case_line, t, k);
        }
    }
    cr_assert_eq(next, ev.n, "%s: %d of %d reference evictions happened", case_line, next, ev.n);
    check_final(f, stream_of(L), case_line, line);
    policy_layer_free(L);
    (*n_cases)++;
}

Test(policy_reference, every_eviction_kept_set_and_score_matches_the_reference)
{
    FILE *f = open_fixture();
    char line[8192];
    int n_cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "stream ", 7))
            read_stream(f, line);
        else if (!strncmp(line, "case ", 5))
            run_case(f, line, &n_cases);
    }
    fclose(f);
    cr_assert_geq(n_cases, 70, "only %d cases read", n_cases);
}
