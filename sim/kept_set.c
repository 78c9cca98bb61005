/* kept_set.c — the end-of-run kept set and stream descriptions; see kept_set.h. */
#include "kept_set.h"

#include "out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DESC_MAX 256

typedef struct stream_end {
    int32_t *pos;              /* (n,) positions kept, increasing */
    int      n;
    int      seen;             /* 1 once written */
    char     desc[DESC_MAX];   /* policy_describe */
} stream_end;

struct kept_set {
    const replay_source *src;   /* NULL for a live run */
    int                  config, L, K;
    const int           *layers; /* (L,) model numbers; NULL: 0..L-1 */
    stream_end          *s;      /* (L, K) */
};

static kept_set *alloc_set(int L, int K, kv_err *err)
{
    kept_set *k = calloc(1, sizeof *k);
    if (k && !(k->s = calloc((size_t)L * K, sizeof *k->s))) {
        free(k);
        k = NULL;
    }
    if (!k)
        kv_errorf(err, KV_ENOMEM, "out of memory for %d x %d kept sets", L, K);
    else
        k->L = L, k->K = K;
    return k;
}

kept_set *kept_set_new(const replay_source *src, int config, kv_err *err)
{
    kept_set *k = alloc_set(src->n_layers, src->n_kv > 0 ? src->n_kv : 1, err);
    if (k)
        k->src = src, k->config = config, k->layers = src->layers;
    return k;
}

kept_set *kept_set_new_shape(int L, int K, kv_err *err) { return alloc_set(L, K, err); }

void kept_set_free(kept_set *k)
{
    for (int i = 0; k && i < k->L * k->K; i++)
        free(k->s[i].pos);
    if (k)
        free(k->s);
    free(k);
}

int kept_set_put(kept_set *k, int li, int ki, const policy_entry *kept, int n,
                 const char *description, kv_err *err)
{
    stream_end *e = &k->s[(size_t)li * k->K + ki];
    int32_t *pos = realloc(e->pos, (size_t)(n > 0 ? n : 1) * sizeof *pos);
    if (!pos)
        return kv_errorf(err, KV_ENOMEM, "out of memory for a kept set of %d", n);
    for (int i = 0; i < n; i++)
        pos[i] = kept[i].position;
    e->pos = pos, e->n = n, e->seen = 1;
    snprintf(e->desc, sizeof e->desc, "%s", description ? description : "");
    return KV_OK;
}

static int index_of(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    return -1;
}

void kept_set_observe(void *ctx, const replay_attended *a)
{
    kept_set *k = ctx;
    const replay_source *src = k->src;
    if (a->config != k->config || a->t != src->T - 1)
        return;
    const int li = index_of(src->layers, src->n_layers, a->layer);
    const int hi = index_of(src->heads, src->n_heads, a->head);
    const int ki = hi >= 0 && src->kv_of_head ? src->kv_of_head[hi] : 0;
    if (li < 0 || hi < 0 || k->s[(size_t)li * k->K + ki].seen)
        return;   /* the other members of a KV group hold the same stream */
    char desc[DESC_MAX] = "";
    if (a->policy)
        policy_describe(a->policy, desc, sizeof desc);
    (void)kept_set_put(k, li, ki, a->kept, a->n, desc, NULL);   /* no memory: no line */
}

int kept_set_count(const kept_set *k, int li, int ki, const char **description)
{
    const stream_end *e = &k->s[(size_t)li * k->K + ki];
    if (description)
        *description = e->desc;
    return e->seen ? e->n : -1;
}

int kept_set_layers(const kept_set *k) { return k->L; }
int kept_set_kv_heads(const kept_set *k) { return k->K; }

static int layer_number(const kept_set *k, int li) { return k->layers ? k->layers[li] : li; }

static void write_kept(FILE *f, const void *ctx)
{
    const kept_set *k = ctx;
    fputs("layer,kv_head,position\n", f);
    for (int l = 0; l < k->L; l++)
        for (int h = 0; h < k->K; h++)
            for (int i = 0; i < k->s[(size_t)l * k->K + h].n; i++)
                fprintf(f, "%d,%d,%d\n", layer_number(k, l), h,
                        (int)k->s[(size_t)l * k->K + h].pos[i]);
}

/* "a=1 b=x" -> the keys (header) or the values (a line), comma-led. */
static void desc_fields(FILE *f, const char *desc, int keys)
{
    char copy[DESC_MAX], *save = NULL;
    snprintf(copy, sizeof copy, "%s", desc);
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(w, '=');
        if (!eq)
            continue;
        *eq = '\0';
        fprintf(f, ",%s", keys ? w : eq + 1);
    }
}

static void write_streams(FILE *f, const void *ctx)
{
    const kept_set *k = ctx;
    const char *first = "";
    for (int i = 0; i < k->L * k->K && !*first; i++)
        first = k->s[i].desc;
    fputs("layer,kv_head,kept", f);
    desc_fields(f, first, 1);
    fputc('\n', f);
    for (int l = 0; l < k->L; l++)
        for (int h = 0; h < k->K; h++) {
            const stream_end *e = &k->s[(size_t)l * k->K + h];
            if (!e->seen)   /* a layer the run did not select */
                continue;
            fprintf(f, "%d,%d,%d", layer_number(k, l), h, e->n);
            desc_fields(f, e->desc, 0);
            fputc('\n', f);
        }
}

int kept_set_write(const kept_set *k, const char *kept_csv, const char *streams_csv,
                   kv_err *err)
{
    int rc = kept_csv ? out_write(kept_csv, write_kept, k, err) : KV_OK;
    if (rc == KV_OK && streams_csv)
        rc = out_write(streams_csv, write_streams, k, err);
    return rc;
}
