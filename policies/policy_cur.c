/*
 * policy_cur.c — `cur`: keep the entries with the largest approximate CUR leverage of
 * their key and value (CurDKV, Sengupta et al., arXiv 2509.15038, as kvpress's CURPress
 * scores it).
 *
 * A row's leverage in a CUR decomposition is approximated by its squared norm, taken
 * relative to its neighbours: ‖k_i‖² is divided by the sum over its window of
 * `local-window` (16) consecutive entries (0: over the whole cache), and the same for
 * ‖v_i‖²; `leverage` combines them (kv-product by default: an entry matters when both
 * its key and its value stand out).  Scores are normalised to sum to 1 and the first
 * `sinks` (4) positions score 1.  kvpress's random-projection option draws from
 * torch's generator and is not offered.
 */
#include "policy_kvpress.h"

#include <stddef.h>

enum { LEV_KEY, LEV_VALUE, LEV_AVG, LEV_PRODUCT };

typedef struct cur {
    kvpress_scorer base;
    int            sinks;
    int            window;    /* local-window; 0: global */
    int            leverage;  /* LEV_* */
} cur;

static const policy_param cur_params[] = {
    {"sinks", POLICY_PARAM_INT, offsetof(cur, sinks), "4", 0, 1e9, NULL,
     "protected first positions (score 1)"},
    {"local-window", POLICY_PARAM_INT, offsetof(cur, window), "16", 0, 1e6, NULL,
     "cur: squared norms relative to windows of this many entries (0: global)"},
    {"leverage", POLICY_PARAM_CHOICE, offsetof(cur, leverage), "kv-product", 0, 0,
     "key value kv-avg kv-product", "cur: key | value | kv-avg | kv-product"},
    KVPRESS_CHUNK_PARAM,
    KVPRESS_CRITICAL_PARAMS,
    {0},
};

static float sq_norm(const float *x, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++)
        s += (double)x[d] * x[d];
    return (float)s;
}

/* x[i] / Σ over i's window of w (aligned from slot 0); unchanged for w = 0. */
static void relative(double *x, int n, int w)
{
    for (int a = 0; w > 0 && a < n; a += w) {
        int b = a + w < n ? a + w : n;
        double sum = 0;
        for (int i = a; i < b; i++)
            sum += x[i];
        for (int i = a; i < b; i++)
            x[i] /= sum;
    }
}

void kvpress_cur_scores(const policy_vecs *s, int head, int n, int sinks, int window,
                        int type, double *tmp, double *out)
{
    double *k2 = tmp, *v2 = tmp + n, total = 0;
    for (int i = 0; i < n; i++) {
        k2[i] = sq_norm(policy_vecs_key(s, i, head), s->dim);
        v2[i] = sq_norm(policy_vecs_value(s, i, head), s->dim);
    }
    relative(k2, n, window);
    relative(v2, n, window);
    for (int i = 0; i < n; i++) {
        k2[i] = type == LEV_KEY ? k2[i] : type == LEV_VALUE ? v2[i]
              : type == LEV_AVG ? (k2[i] + v2[i]) / 2 : k2[i] * v2[i];
        total += k2[i];
    }
    for (int i = 0; i < n; i++)
        out[i] += i < sinks ? 1.0 : k2[i] / total;   /* the first of the cache given */
}

static void cur_head(policy *p, const policy_vecs *v, int head, int n, double *tmp,
                     double *acc)
{
    const cur *c = policy_state(p);
    kvpress_cur_scores(v, head, n, c->sinks, c->window, c->leverage, tmp, acc);
}

static int cur_init(policy *p, kv_err *err) { return kvpress_scorer_init(p, cur_head, err); }

const policy_def policy_cur = {
    .name = "cur",
    .summary = "keep the largest local CUR leverage of key and value (product); 4 sinks",
    .provenance = "CurDKV (arXiv 2509.15038); kvpress CURPress",
    .params = cur_params,
    .columns = kvpress_scorer_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_READS_KEYS | POLICY_READS_VALUES,
    .state_size = sizeof(cur),
    .ops = KVPRESS_SCORER_OPS(cur_init),
};
