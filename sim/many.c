/*
 * many.c — one request over many traces, on one process or the ranks of an MPI job;
 * see many.h for the units, the schedule, the reduction and the faults.
 */
#include "many.h"

#include "bootstrap.h"
#include "cli.h"
#include "journal.h"
#include "out.h"
#include "par.h"
#include "progress.h"
#include "results.h"
#include "scope_report.h"
#include "sha256.h"
#include "vec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ACC_FIELDS 9   /* a replay_acc as doubles (its longs are exact below 2^53) */

static void acc_pack(const replay_acc *a, double *v)
{
    const double x[ACC_FIELDS] = {(double)a->steps, a->cache, a->mass, a->overlap,
                                  a->consistency, a->output_error, (double)a->n_overlap,
                                  (double)a->n_consistency, (double)a->n_output};
    memcpy(v, x, sizeof x);
}

static void acc_unpack(const double *v, replay_acc *a)
{
    *a = (replay_acc){.steps = (long)v[0], .cache = v[1], .mass = v[2], .overlap = v[3],
                      .consistency = v[4], .output_error = v[5], .n_overlap = (long)v[6],
                      .n_consistency = (long)v[7], .n_output = (long)v[8]};
}

static replay_request with_trace(const replay_request *req, const char *path)
{
    replay_request r = *req;
    r.trace = path;
    return r;
}

/* --- shapes ------------------------------------------------------------------------ */

/* The journal's signature of a trace's plan: the path as given, its size and mtime
 * (a trace recorded again in place is another trace), name, T, layers, heads, metrics,
 * and every configuration's CSV labels and parameters (a unit computed with another
 * --sinks or --seed must not be restored).  Code loaded with --policy-lib is not in
 * it: change the library, start a new journal. */
static char *signature_of(const replay_setup *s, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    const replay_plan *p = &s->plan;
    struct stat st;
    if (stat(path, &st) == 0)
        fprintf(f, "size=%lld mtime=%lld.%09ld ", (long long)st.st_size,
                (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    fprintf(f, "%s %s T=%d complete=%d metrics=%u layers", path, s->src->name, s->src->T,
            s->src->complete, p->metrics);
    for (int l = 0; l < p->n_layers; l++)
        fprintf(f, " %d", s->src->layers[p->layers[l]]);
    fputs(" heads", f);
    for (int h = 0; h < p->n_heads; h++)
        fprintf(f, " %d", s->src->heads[p->heads[h]]);
    fputc('\n', f);
    const results_context rc = {s->src, p, NULL, NULL, NULL};
    for (int c = 0; c < s->n_configs; c++) {
        results_write_csv_ids(f, &rc, c, NULL, NULL);
        const policy_config *pc = &s->configs[c].policy;
        fprintf(f, " decay=%.17g soft=%d hard=%d seed=%llu", pc->layer_decay,
                pc->soft_limit, pc->hard_limit, (unsigned long long)pc->seed);
        for (int i = 0; i < pc->n_own; i++)
            fprintf(f, " %s=%s", pc->own[i].key, pc->own[i].value);
        fputc('\n', f);
    }
    fclose(f);
    return text;
}

static int take_shape(many_trace *t, const replay_setup *s, kv_err *err)
{
    const replay_plan *p = &s->plan;
    t->n_configs = s->n_configs;
    t->n_layers = p->n_layers;
    t->n_heads = p->n_heads;
    t->T = s->src->T;
    t->n_kv = s->src->n_kv;
    t->head_dim = s->src->head_dim;
    t->rows_rebuilt = s->src->rows_rebuilt;
    for (int c = 0; c < s->n_configs; c++)
        t->layer_streams |= s->configs[c].scope_of == POLICY_SCOPE_OF_LAYER;
    const size_t n = (size_t)t->n_configs * t->n_layers * t->n_heads;
    t->kv_of = malloc((size_t)(t->n_heads ? t->n_heads : 1) * sizeof *t->kv_of);
    t->acc = calloc(n ? n : 1, sizeof *t->acc);
    t->signature = signature_of(s, t->path);
    if (!t->kv_of || !t->acc || !t->signature)
        return kv_errorf(err, KV_ENOMEM, "%s: out of memory", t->path);
    for (int h = 0; h < p->n_heads; h++)
        t->kv_of[h] = s->src->kv_of_head[p->heads[h]];
    return KV_OK;
}

/* The CSV's trace name of a path (trace/source_trace.c: its basename). */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Open each trace for its shape; rank 0 names every one that fails.  The status of the
 * first failure, with err saying how many failed; a usage error is returned as it is,
 * at once. */
static int open_all(many_run *m, const replay_request *req, kv_err *err)
{
    int status = KV_OK, failed = 0;
    for (int i = 0; i < m->n_traces; i++) {
        many_trace *t = &m->traces[i];
        replay_setup s = {0};
        kv_err e = {0};
        const replay_request r = with_trace(req, t->path);
        int rc = replay_setup_build(&s, &r, &e);
        if (rc == KV_OK)
            rc = take_shape(t, &s, &e);
        if (rc == KV_OK && i == 0 && m->rank == 0)
            replay_setup_notes(&s, stderr);
        replay_setup_free(&s);
        if (rc == KV_EUSAGE) {   /* the command's fault (a policy, a layer): say it once */
            *err = e;
            if (!strstr(err->msg, t->path))
                kv_err_prefix(err, "%s: ", t->path);
            return rc;
        }
        if (rc != KV_OK) {
            if (m->rank == 0 && strstr(e.msg, t->path))
                fprintf(stderr, "error: %s\n", e.msg);
            else if (m->rank == 0)
                fprintf(stderr, "error: %s: %s\n", t->path, e.msg);
            status = status ? status : rc;
            failed++;
        }
    }
    for (int i = 0; !failed && i < m->n_traces; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(base_name(m->traces[i].path), base_name(m->traces[k].path))) {
                return kv_errorf(err, KV_EUSAGE, "%s and %s have the same name, which the "
                                 "CSV's trace column could not tell apart: rename one",
                                 m->traces[k].path, m->traces[i].path);
            }
    if (failed)
        kv_errorf(err, status, "%d of %d traces could not be replayed (named above); "
                  "nothing was written", failed, m->n_traces);
    return status;
}

/* --- units and the schedule -------------------------------------------------------- */

static double unit_cost(const many_trace *t, int heads)
{
    const double T = t->T;
    return T * T * heads * (t->rows_rebuilt ? 1.0 + t->head_dim / 8.0 : 1.0);
}

/* Plan heads of unit u into heads[] (ascending); how many. */
static int unit_heads(const many_trace *t, const many_unit *u, int *heads)
{
    int n = 0;
    for (int h = 0; h < t->n_heads; h++)
        if (u->kv < 0 || t->kv_of[h] == u->kv)
            heads[n++] = h;
    return n;
}

static int add_unit(many_run *m, size_t *cap, many_unit u)
{
    if (vec_reserve((void **)&m->units, sizeof *m->units, (size_t)m->n_units + 1, cap) != 0)
        return KV_ENOMEM;
    m->units[m->n_units++] = u;
    return KV_OK;
}

/* Every trace's units in (trace, layer, KV head) order. */
static int make_units(many_run *m, kv_err *err)
{
    size_t cap = 0;
    int rc = KV_OK;
    for (int i = 0; rc == KV_OK && i < m->n_traces; i++) {
        const many_trace *t = &m->traces[i];
        int heads[t->n_heads > 0 ? t->n_heads : 1];
        const int k0 = t->layer_streams ? -1 : 0, k1 = t->layer_streams ? 0 : t->n_kv;
        for (int l = 0; rc == KV_OK && l < t->n_layers; l++)
            for (int k = k0; rc == KV_OK && k < k1; k++) {
                many_unit u = {i, l, k, 0, 0};
                const int G = unit_heads(t, &u, heads);
                u.cost = unit_cost(t, G);
                if (G)
                    rc = add_unit(m, &cap, u);
            }
    }
    return rc == KV_OK ? KV_OK : kv_errorf(err, rc, "out of memory for the work units");
}

static void unit_key(const many_run *m, const many_unit *u, char key[JOURNAL_KEY + 1])
{
    const many_trace *t = &m->traces[u->trace];
    const size_t n = strlen(t->signature);
    char *text = malloc(n + 64);
    if (!text) {
        memset(key, '0', JOURNAL_KEY);
        key[JOURNAL_KEY] = '\0';
        return;
    }
    memcpy(text, t->signature, n);
    const int extra = snprintf(text + n, 64, "unit layer=%d kv=%d\n", u->layer, u->kv);
    journal_key(text, n + (size_t)extra, key);
    free(text);
}

/* The accumulators of unit u, packed (configs x its heads x ACC_FIELDS), or the other
 * way round: restore them from v. */
static size_t unit_values(const many_trace *t, const many_unit *u)
{
    int heads[t->n_heads > 0 ? t->n_heads : 1];
    return (size_t)t->n_configs * unit_heads(t, u, heads) * ACC_FIELDS;
}

static void unit_copy(many_trace *t, const many_unit *u, const replay_acc *from_sub,
                      const double *from_values, double *to_values)
{
    int heads[t->n_heads > 0 ? t->n_heads : 1];
    const int G = unit_heads(t, u, heads);
    const replay_plan whole = {.n_configs = t->n_configs, .n_layers = t->n_layers,
                               .n_heads = t->n_heads};
    for (int c = 0, i = 0; c < t->n_configs; c++)
        for (int g = 0; g < G; g++, i++) {
            replay_acc *a = replay_acc_at(t->acc, &whole, c, u->layer, heads[g]);
            if (from_sub)
                *a = from_sub[i];
            if (from_values)
                acc_unpack(from_values + (size_t)i * ACC_FIELDS, a);
            if (to_values)
                acc_pack(a, to_values + (size_t)i * ACC_FIELDS);
        }
}

/* Units in the journal are restored (rank 0 fills their sums) and not scheduled. */
static void restore(many_run *m, const journal *j)
{
    for (int i = 0; j && i < m->n_units; i++) {
        many_unit *u = &m->units[i];
        char key[JOURNAL_KEY + 1];
        size_t n;
        unit_key(m, u, key);
        const double *v = journal_find(j, key, &n);
        if (!v || n != unit_values(&m->traces[u->trace], u))
            continue;
        u->rank = -1;
        m->restored++;
        if (m->rank == 0)
            unit_copy(&m->traces[u->trace], u, NULL, v, NULL);
    }
}

static const many_unit *sort_base;

static int by_cost(const void *a, const void *b)
{
    const many_unit *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
    if (x->cost != y->cost)
        return x->cost < y->cost ? 1 : -1;
    return *(const int *)a - *(const int *)b;   /* units are made in (trace, layer, kv) order */
}

/* Largest first to the least loaded rank (lowest on a tie): the same on every rank. */
static int schedule(many_run *m, kv_err *err)
{
    int *order = malloc((size_t)(m->n_units ? m->n_units : 1) * sizeof *order);
    double *load = calloc((size_t)m->size, sizeof *load);
    if (!order || !load) {
        free(order);
        free(load);
        return kv_errorf(err, KV_ENOMEM, "out of memory for the schedule");
    }
    int n = 0;
    for (int i = 0; i < m->n_units; i++)
        if (m->units[i].rank >= 0)
            order[n++] = i;
    sort_base = m->units;
    qsort(order, (size_t)n, sizeof *order, by_cost);
    for (int i = 0; i < n; i++) {
        many_unit *u = &m->units[order[i]];
        int best = 0;
        for (int r = 1; r < m->size; r++)
            if (load[r] < load[best])
                best = r;
        u->rank = best;
        load[best] += u->cost;
        m->cost_all += u->cost;
        if (best == m->rank)
            m->mine++, m->cost_mine += u->cost;
    }
    free(order);
    free(load);
    return KV_OK;
}

/* --- replaying this rank's units ---------------------------------------------------- */

/* Unit u of setup s on the calling thread: a plan of its layer and heads. */
static int replay_unit(many_run *m, const many_unit *u, replay_setup *s, journal *j,
                       kv_err *err)
{
    many_trace *t = &m->traces[u->trace];
    int heads[t->n_heads > 0 ? t->n_heads : 1];
    const int G = unit_heads(t, u, heads);
    for (int g = 0; g < G; g++)
        heads[g] = s->plan.heads[heads[g]];
    replay_plan plan = s->plan;
    plan.layers = &s->plan.layers[u->layer];
    plan.n_layers = 1;
    plan.heads = heads;
    plan.n_heads = G;
    plan.observe = NULL;
    plan.progress = 0;
    const size_t n_acc = (size_t)t->n_configs * G;
    replay_acc *sub = calloc(n_acc ? n_acc : 1, sizeof *sub);
    double *v = j ? malloc((n_acc ? n_acc : 1) * ACC_FIELDS * sizeof *v) : NULL;
    int rc = sub && (!j || v) ? replay_run_layer(s->src, &plan, 0, sub, err)
                              : kv_errorf(err, KV_ENOMEM, "out of memory");
    if (rc == KV_OK) {
        char key[JOURNAL_KEY + 1];
        unit_key(m, u, key);
#pragma omp critical(many_unit_done)
        {
            unit_copy(t, u, sub, NULL, v);
            if (j)
                rc = journal_append(j, key, v, n_acc * ACC_FIELDS, err);
        }
    }
    free(sub);
    free(v);
    return rc;
}

/* This rank's units of trace i, on OpenMP threads; the lowest failing unit's error. */
static int replay_trace(many_run *m, int i, const replay_request *req, journal *j,
                        progress *bar, int *done, kv_err *err)
{
    int n = 0;
    for (int k = 0; k < m->n_units; k++)
        n += m->units[k].trace == i && m->units[k].rank == m->rank;
    if (!n)
        return KV_OK;
    replay_setup s = {0};
    const replay_request r = with_trace(req, m->traces[i].path);
    int rc = replay_setup_build(&s, &r, err);
    int *idx = malloc((size_t)n * sizeof *idx), *rcs = calloc((size_t)n, sizeof *rcs);
    kv_err *errs = calloc((size_t)n, sizeof *errs);
    if (rc == KV_OK && (!idx || !rcs || !errs))
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int k = 0, at = 0; rc == KV_OK && k < m->n_units; k++)
        if (m->units[k].trace == i && m->units[k].rank == m->rank)
            idx[at++] = k;
    if (rc == KV_OK) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < n; k++) {
            rcs[k] = replay_unit(m, &m->units[idx[k]], &s, j, &errs[k]);
#pragma omp critical(many_progress)
            if (bar)
                progress_update(bar, ++*done, -1);
        }
        for (int k = 0; k < n && rc == KV_OK; k++)
            if ((rc = rcs[k]) != KV_OK)
                *err = errs[k];
    }
    if (rc != KV_OK && !strstr(err->msg, m->traces[i].path))
        kv_err_prefix(err, "%s: ", m->traces[i].path);
    replay_setup_free(&s);
    free(idx);
    free(rcs);
    free(errs);
    return rc;
}

static int replay_mine(many_run *m, const replay_request *req, journal *j, kv_err *err)
{
    progress bar = {0};
    int done = 0, rc = KV_OK;
    if (m->rank == 0)
        progress_start(&bar, "replay", m->mine, "units");
    for (int i = 0; i < m->n_traces && rc == KV_OK; i++)
        rc = replay_trace(m, i, req, j, m->rank == 0 ? &bar : NULL, &done, err);
    if (m->rank == 0)
        progress_finish(&bar);
    return rc;
}

/* Each trace's sums to rank 0: exact, as every sum has one owner (par_mpi.c). */
static int reduce(many_run *m, kv_err *err)
{
    for (int i = 0; i < m->n_traces; i++) {
        many_trace *t = &m->traces[i];
        const size_t n = (size_t)t->n_configs * t->n_layers * t->n_heads;
        double *v = malloc((n ? n : 1) * ACC_FIELDS * sizeof *v);
        if (!v)
            return kv_errorf(err, KV_ENOMEM, "out of memory for the sums of %s", t->path);
        for (size_t a = 0; a < n; a++)
            acc_pack(&t->acc[a], v + a * ACC_FIELDS);
        par_sum_doubles(v, n * ACC_FIELDS);
        if (m->rank == 0)
            for (size_t a = 0; a < n; a++)
                acc_unpack(v + a * ACC_FIELDS, &t->acc[a]);
        free(v);
    }
    return KV_OK;
}

/* Every rank learns whether any failed (a collective, so also a barrier); a rank that
 * did not fail says so when another did. */
static int agree(const many_run *m, int rc, kv_err *err)
{
    const int worst = par_max_int(rc == KV_OK ? 0 : 1);
    if (rc != KV_OK && m->size > 1 && m->rank > 0)
        kv_err_prefix(err, "rank %d: ", m->rank);
    if (worst && rc == KV_OK)
        rc = kv_errorf(err, KV_EIO, "another rank failed (its error is above); nothing "
                       "was written");
    return rc;
}

static void tell_schedule(const many_run *m, const char *journal_path)
{
    if (m->rank != 0 || (m->size == 1 && !journal_path))
        return;
    fprintf(stderr, "%d units over %d rank%s (%s): rank 0 replays %d of %d (cost share "
            "%.3f)", m->n_units, m->size, m->size > 1 ? "s" : "", par_kind(), m->mine,
            m->n_units - m->restored, m->cost_all > 0 ? m->cost_mine / m->cost_all : 0.0);
    if (journal_path)
        fprintf(stderr, "; %d restored from %s", m->restored, journal_path);
    fputc('\n', stderr);
}

int many_run_all(many_run *m, const replay_request *req, const char *const *paths,
                 int n_paths, const char *journal_path, kv_err *err)
{
    memset(m, 0, sizeof *m);
    m->rank = par_rank();
    m->size = par_size();
    m->n_traces = n_paths;
    if (!(m->traces = calloc((size_t)(n_paths ? n_paths : 1), sizeof *m->traces)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int i = 0; i < n_paths; i++)
        m->traces[i].path = paths[i];
    int rc = open_all(m, req, err);
    journal *j = NULL;
    if (rc == KV_OK && journal_path && !(j = journal_open(journal_path, err)))
        rc = err->code;
    if (rc == KV_OK && (rc = make_units(m, err)) == KV_OK) {
        restore(m, j);
        rc = schedule(m, err);
    }
    /* all ranks have read the journal before any appends to it */
    if ((rc = agree(m, rc, err)) == KV_OK) {
        tell_schedule(m, journal_path);
        rc = replay_mine(m, req, j, err);
        m->failed_here = rc != KV_OK;
    }
    journal_close(j);
    if ((rc = agree(m, rc, err)) == KV_OK)
        rc = reduce(m, err);
    return rc;
}

/* --- writing (rank 0) --------------------------------------------------------------- */

enum { N_METRICS = 6 };
static const char *const METRIC_NAMES[N_METRICS] = {"mean_cache", "mass", "overlap",
                                                    "consistency", "output_error",
                                                    "oracle_gap"};

/* Metric k of a line, and whether it is defined. */
static int metric_of(const results_line *r, int k, double *v)
{
    const double x[N_METRICS] = {r->mean_cache, r->mass, r->overlap, r->consistency,
                                 r->output_error, r->oracle_gap};
    const int has[N_METRICS] = {r->steps > 0, r->steps > 0, r->has_overlap,
                                r->has_consistency, r->has_output, r->has_gap};
    *v = x[k];
    return has[k];
}

typedef struct writer {
    out_file     *csv, *json;
    int           scope;
    int           n_requested;  /* configurations summarised across traces */
    char        **labels;       /* (n_requested,) their JSON labels, the first trace's */
    results_line *overall;      /* (n_traces x n_requested) each trace's overall lines */
} writer;

/* From the first trace: the requested configurations' labels, room for the lines. */
static int take_labels(writer *w, const replay_setup *s, int n_traces, kv_err *err)
{
    w->n_requested = s->n_requested;
    w->labels = calloc((size_t)s->n_requested + 1, sizeof *w->labels);
    w->overall = calloc((size_t)n_traces * s->n_requested + 1, sizeof *w->overall);
    for (int c = 0; w->labels && c < s->n_requested; c++) {
        size_t len;
        FILE *f = open_memstream(&w->labels[c], &len);
        if (!f)
            break;
        results_write_json_config(f, &s->configs[c], 0);
        fclose(f);
    }
    for (int c = 0; w->labels && c < s->n_requested; c++)
        if (!w->labels[c])
            return kv_errorf(err, KV_ENOMEM, "out of memory");
    return w->labels && w->overall ? KV_OK : kv_errorf(err, KV_ENOMEM, "out of memory");
}

static void write_trace_json(FILE *f, const results_context *ctx, int i)
{
    fprintf(f, "%s\n    {\n", i ? "," : "");
    results_write_json_identity(f, ctx, "      ");
    fputs(",\n      \"results\": [", f);
    results_write_json_results(f, ctx, "        ");
    fputs("\n      ]\n    }", f);
}

/* Trace i's CSV lines and JSON entry, rebuilt from its setup and the reduced sums. */
static int write_trace(writer *w, const many_run *m, int i, const replay_request *req,
                       const char *command, kv_err *err)
{
    const many_trace *t = &m->traces[i];
    replay_setup s = {0};
    const replay_request r = with_trace(req, t->path);
    int rc = replay_setup_build(&s, &r, err);
    char hex[65];
    results_context ctx = {s.src, &s.plan, t->acc, command, NULL};
    if (rc == KV_OK && w->csv && w->scope)
        scope_report_lines(out_stream(w->csv), &s, t->acc);
    for (int c = 0; rc == KV_OK && w->csv && !w->scope && c < s.n_configs; c++)
        results_write_csv_config(out_stream(w->csv), &ctx, c);
    if (rc == KV_OK && w->json && s.src->path &&
        (rc = sha256_file(s.src->path, hex, err)) == KV_OK)
        ctx.sha256 = hex;
    if (rc == KV_OK && w->json)
        write_trace_json(out_stream(w->json), &ctx, i);
    if (rc == KV_OK && !w->labels)
        rc = take_labels(w, &s, m->n_traces, err);
    for (int c = 0; rc == KV_OK && c < w->n_requested && c < s.n_requested; c++)
        w->overall[(size_t)i * w->n_requested + c] = results_line_of(&s.plan, t->acc, c, -1, -1);
    replay_setup_free(&s);
    return rc;
}

/* Per requested configuration: each metric's mean over the traces that define it and
 * its 95% bootstrap interval. */
static int write_across(FILE *f, const writer *w, int n_traces)
{
    double *v = malloc((size_t)(n_traces ? n_traces : 1) * sizeof *v);
    if (!v)
        return -1;
    fputs(",\n  \"across\": [", f);
    for (int c = 0; c < w->n_requested; c++) {
        fprintf(f, "%s\n    %s, \"traces\": %d", c ? "," : "", w->labels[c], n_traces);
        for (int k = 0; k < N_METRICS; k++) {
            int n = 0;
            for (int i = 0; i < n_traces; i++)
                n += metric_of(&w->overall[(size_t)i * w->n_requested + c], k, &v[n]);
            bootstrap_ci ci;
            fprintf(f, ", \"%s\": ", METRIC_NAMES[k]);
            if (!n || bootstrap_mean_ci(v, n, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED, &ci)) {
                fputs("null", f);
                continue;
            }
            fputs("{\"mean\": ", f);
            out_json_number(f, ci.mean);
            fputs(", \"ci95\": [", f);
            out_json_number(f, ci.lo);
            fputs(", ", f);
            out_json_number(f, ci.hi);
            fprintf(f, "], \"n\": %d}", n);
        }
        fputc('}', f);
    }
    fputs("\n  ]", f);
    free(v);
    return 0;
}

static void json_head(FILE *f, const char *command)
{
    fprintf(f, "{\n  \"format\": \"kvsim-results-many\",\n  \"format_version\": 1,\n"
               "  \"tool_version\": \"%s\",\n  \"command\": ", KV_VERSION);
    out_json_string(f, command ? command : "");
    fprintf(f, ",\n  \"bootstrap\": {\"resamples\": %d, \"seed\": %llu, \"level\": 0.95},"
               "\n  \"traces\": [", BOOTSTRAP_RESAMPLES, (unsigned long long)BOOTSTRAP_SEED);
}

/* One trace: the one-trace files (cmd_replay.c's writers), so that --resume or MPI
 * on one trace writes what the plain command writes. */
static int write_one(const many_run *m, const replay_request *req, const char *command,
                     int scope, const char *csv, const char *json, kv_err *err)
{
    replay_setup s = {0};
    const replay_request r = with_trace(req, m->traces[0].path);
    int rc = replay_setup_build(&s, &r, err);
    const results_context ctx = {s.src, &s.plan, m->traces[0].acc, command, NULL};
    if (rc == KV_OK)
        rc = scope ? scope_report_write(&s, m->traces[0].acc, command, csv, json, err)
                   : results_write_files(&ctx, csv, json, err);
    replay_setup_free(&s);
    return rc;
}

int many_write(const many_run *m, const replay_request *req, const char *command,
               int scope, const char *csv, const char *json, kv_err *err)
{
    if (m->rank != 0)
        return KV_OK;
    if (m->n_traces == 1)
        return write_one(m, req, command, scope, csv, json, err);
    writer w = {.scope = scope};
    int rc = KV_OK;
    if (csv && !(w.csv = out_open(csv, err)))
        rc = err->code;
    if (rc == KV_OK && json && !(w.json = out_open(json, err)))
        rc = err->code;
    if (rc == KV_OK && w.csv)
        results_write_csv_header(out_stream(w.csv));
    if (rc == KV_OK && w.json)
        json_head(out_stream(w.json), command);
    for (int i = 0; rc == KV_OK && i < m->n_traces; i++)
        rc = write_trace(&w, m, i, req, command, err);
    if (rc == KV_OK && w.json) {
        fputs("\n  ]", out_stream(w.json));
        rc = write_across(out_stream(w.json), &w, m->n_traces) == 0
                 ? KV_OK : kv_errorf(err, KV_ENOMEM, "out of memory");
        fputs("\n}\n", out_stream(w.json));
    }
    /* a failure drops every file not yet put in place (common/out.h) */
    int closed = out_close(w.csv, rc == KV_OK, err);
    rc = rc == KV_OK ? closed : rc;
    closed = out_close(w.json, rc == KV_OK, err);
    rc = rc == KV_OK ? closed : rc;
    for (int c = 0; w.labels && c < w.n_requested; c++)
        free(w.labels[c]);
    free(w.labels);
    free(w.overall);
    return rc;
}

void many_free(many_run *m)
{
    for (int i = 0; m->traces && i < m->n_traces; i++) {
        free(m->traces[i].kv_of);
        free(m->traces[i].signature);
        free(m->traces[i].acc);
    }
    free(m->traces);
    free(m->units);
    memset(m, 0, sizeof *m);
}
