/*
 * kv_cache.c — the eviction-ready KV cache of kv_cache.h: compact per-stream slots,
 * chunked growth, order-keeping removal, and byte accounting through one wrapper.
 */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

/* One (layer, KV head): three parallel arrays indexed by slot. */
typedef struct kv_stream {
    float   *keys;      /* (cap, head_dim) post-RoPE, slots 0..n-1 valid */
    float   *values;    /* (cap, head_dim) */
    int32_t *pos;       /* (cap,) the positions keys are rotated for, increasing */
    int      n;         /* entries held */
    int      cap;       /* entries allocated */
} kv_stream;

struct kv_cache {
    int        n_layer, n_kv_head, head_dim;
    int        next_pos;   /* tokens ever appended (kv_cache_advance) */
    int        compact;    /* (3) entries at positions 0..n-1 of their stream */
    size_t     bytes;      /* (5) everything allocated through kv_realloc */
    kv_stream *streams;    /* (n_layer * n_kv_head,) */
};

/* ---- the one allocation wrapper ---------------------------------------------------- */

/* realloc that keeps c->bytes exact: old_size bytes become new_size (0 frees).  On
 * failure NULL is returned, `p` is untouched and the count does not change. */
static void *kv_realloc(kv_cache *c, void *p, size_t old_size, size_t new_size)
{
    if (new_size == 0) {
        free(p);
        c->bytes -= old_size;
        return NULL;
    }
    void *q = realloc(p, new_size);
    if (q)
        c->bytes = c->bytes - old_size + new_size;
    return q;
}

/* ---- streams ---------------------------------------------------------------------- */

static kv_stream *stream_at(const kv_cache *c, int layer, int kv_head)
{
    return &c->streams[(size_t)layer * c->n_kv_head + kv_head];
}

static size_t row_bytes(const kv_cache *c) { return (size_t)c->head_dim * sizeof(float); }

/* Grow s to exactly `cap` entries; each array is reallocated on its own so a failure
 * leaves a consistent (if partly larger) stream behind. */
static int stream_grow(kv_cache *c, kv_stream *s, int cap)
{
    size_t rb = row_bytes(c), old = (size_t)s->cap, new = (size_t)cap;
    float *k = kv_realloc(c, s->keys, old * rb, new * rb);
    if (!k)
        return KV_ENOMEM;
    s->keys = k;
    float *v = kv_realloc(c, s->values, old * rb, new * rb);
    if (!v) {
        s->keys = kv_realloc(c, s->keys, new * rb, old * rb);
        return KV_ENOMEM;
    }
    s->values = v;
    int32_t *p = kv_realloc(c, s->pos, old * sizeof *p, new * sizeof *p);
    if (!p) {
        s->keys = kv_realloc(c, s->keys, new * rb, old * rb);
        s->values = kv_realloc(c, s->values, new * rb, old * rb);
        return KV_ENOMEM;
    }
    s->pos = p;
    s->cap = cap;
    return 0;
}

/* Grow s to hold at least `need` entries, by a chunk at a time (4). */
static int stream_reserve(kv_cache *c, kv_stream *s, int need)
{
    if (need <= s->cap)
        return 0;
    return stream_grow(c, s, s->cap + KV_CACHE_CHUNK > need ? s->cap + KV_CACHE_CHUNK : need);
}

int kv_cache_fit(kv_cache *c, int layer, int kv_head, int cap)
{
    kv_stream *s = stream_at(c, layer, kv_head);
    int want = cap > s->n ? cap : s->n;
    want = want > 1 ? want : 1;
    return want < s->cap ? stream_grow(c, s, want) : 0;
}

static void stream_release(kv_cache *c, kv_stream *s)
{
    size_t rb = row_bytes(c), cap = (size_t)s->cap;
    kv_realloc(c, s->keys, cap * rb, 0);
    kv_realloc(c, s->values, cap * rb, 0);
    kv_realloc(c, s->pos, cap * sizeof *s->pos, 0);
    *s = (kv_stream){0};
}

/* ---- lifecycle -------------------------------------------------------------------- */

kv_cache *kv_cache_new(int n_layer, int n_kv_head, int head_dim, int reserve, kv_err *err)
{
    if (n_layer <= 0 || n_kv_head <= 0 || head_dim <= 0 || reserve < 0) {
        kv_errorf(err, KV_ERANGE, "kv_cache_new: bad shape %d layers × %d KV heads × %d dims "
                  "(reserve %d), expected positive counts", n_layer, n_kv_head, head_dim, reserve);
        return NULL;
    }
    kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        goto oom;
    *c = (kv_cache){.n_layer = n_layer, .n_kv_head = n_kv_head, .head_dim = head_dim,
                    .bytes = sizeof *c};
    size_t n = (size_t)n_layer * n_kv_head;
    c->streams = kv_realloc(c, NULL, 0, n * sizeof *c->streams);
    if (!c->streams)
        goto oom;
    memset(c->streams, 0, n * sizeof *c->streams);
    /* exactly the reserve: live eviction sizes it to B + s, and its bytes are the point */
    for (size_t i = 0; i < n && reserve > 0; i++)
        if (stream_grow(c, &c->streams[i], reserve))
            goto oom;
    return c;
oom:
    kv_cache_free(c);
    kv_errorf(err, KV_ENOMEM, "kv_cache_new: out of memory for %d layers × %d KV heads × "
              "%d entries", n_layer, n_kv_head, reserve);
    return NULL;
}

void kv_cache_free(kv_cache *c)
{
    if (!c)
        return;
    size_t n = (size_t)c->n_layer * c->n_kv_head;
    for (size_t i = 0; c->streams && i < n; i++)
        stream_release(c, &c->streams[i]);
    kv_realloc(c, c->streams, n * sizeof *c->streams, 0);
    free(c);
}

/* ---- entries ---------------------------------------------------------------------- */

int kv_cache_append(kv_cache *c, int layer, int kv_head, const float *keys,
                    const float *values, size_t stride, const int32_t *positions, int n,
                    kv_err *err)
{
    kv_stream *s = stream_at(c, layer, kv_head);
    if (stream_reserve(c, s, s->n + n))
        return kv_errorf(err, KV_ENOMEM, "kv_cache: out of memory growing layer %d KV head "
                         "%d to %d entries", layer, kv_head, s->n + n);
    size_t hd = (size_t)c->head_dim;
    for (int i = 0; i < n; i++) {
        memcpy(s->keys + (s->n + (size_t)i) * hd, keys + i * stride, row_bytes(c));
        memcpy(s->values + (s->n + (size_t)i) * hd, values + i * stride, row_bytes(c));
    }
    memcpy(s->pos + s->n, positions, (size_t)n * sizeof *positions);
    s->n += n;
    return 0;
}

int kv_cache_reserve(kv_cache *c, int extra, kv_err *err)
{
    size_t n = (size_t)c->n_layer * c->n_kv_head;
    for (size_t i = 0; i < n; i++)
        if (stream_reserve(c, &c->streams[i], c->streams[i].n + extra))
            return kv_errorf(err, KV_ENOMEM, "kv_cache: out of memory reserving %d more "
                             "entries per stream", extra);
    return 0;
}

/* Close the gaps left by k ascending slots in an array of n rows of `w` bytes: each
 * surviving run moves down once, so only entries after slots[0] move. */
static void compact_rows(void *array, size_t w, int n, const int *slots, int k)
{
    char *a = array;
    int dst = slots[0];
    for (int j = 0; j < k; j++) {
        int run_start = slots[j] + 1;
        int run_end = j + 1 < k ? slots[j + 1] : n;
        memmove(a + (size_t)dst * w, a + (size_t)run_start * w, (size_t)(run_end - run_start) * w);
        dst += run_end - run_start;
    }
}

void kv_cache_remove(kv_cache *c, int layer, int kv_head, const int *slots_ascending, int k)
{
    if (k <= 0)
        return;
    kv_stream *s = stream_at(c, layer, kv_head);
    compact_rows(s->keys, row_bytes(c), s->n, slots_ascending, k);
    compact_rows(s->values, row_bytes(c), s->n, slots_ascending, k);
    compact_rows(s->pos, sizeof *s->pos, s->n, slots_ascending, k);
    s->n -= k;
}

void kv_cache_clear(kv_cache *c)
{
    size_t n = (size_t)c->n_layer * c->n_kv_head;
    for (size_t i = 0; i < n; i++)
        c->streams[i].n = 0;
    c->next_pos = 0;
}

void kv_cache_truncate(kv_cache *c, int pos)
{
    size_t n = (size_t)c->n_layer * c->n_kv_head;
    for (size_t i = 0; i < n; i++) {
        kv_stream *s = &c->streams[i];
        while (s->n > 0 && s->pos[s->n - 1] >= pos)
            s->n--;
    }
    c->next_pos = pos < c->next_pos ? pos : c->next_pos;
}

/* ---- queries ---------------------------------------------------------------------- */

int kv_cache_size(const kv_cache *c, int layer, int kv_head)
{
    return stream_at(c, layer, kv_head)->n;
}

const float *kv_cache_keys(const kv_cache *c, int layer, int kv_head)
{
    return stream_at(c, layer, kv_head)->keys;
}

const float *kv_cache_values(const kv_cache *c, int layer, int kv_head)
{
    return stream_at(c, layer, kv_head)->values;
}

const int32_t *kv_cache_positions(const kv_cache *c, int layer, int kv_head)
{
    return stream_at(c, layer, kv_head)->pos;
}

int    kv_cache_next_pos(const kv_cache *c) { return c->next_pos; }
void   kv_cache_advance(kv_cache *c, int n) { c->next_pos += n; }
size_t kv_cache_bytes(const kv_cache *c) { return c ? c->bytes : 0; }

int kv_cache_set_compact_positions(kv_cache *c, int on)
{
    size_t n = (size_t)c->n_layer * c->n_kv_head;
    for (size_t i = 0; i < n; i++)
        if (c->streams[i].n > 0)
            return KV_EUSAGE;   /* its keys are rotated for the other numbering */
    c->compact = on != 0;
    return 0;
}

int kv_cache_rope_pos(const kv_cache *c, int layer, int kv_head)
{
    return c->compact ? stream_at(c, layer, kv_head)->n : c->next_pos;
}

float *kv_cache__keys_rw(kv_cache *c, int layer, int kv_head)
{
    return stream_at(c, layer, kv_head)->keys;
}

int32_t *kv_cache__positions_rw(kv_cache *c, int layer, int kv_head)
{
    return stream_at(c, layer, kv_head)->pos;
}
int    kv_cache_n_layer(const kv_cache *c) { return c->n_layer; }
int    kv_cache_n_kv_head(const kv_cache *c) { return c->n_kv_head; }
int    kv_cache_head_dim(const kv_cache *c) { return c->head_dim; }
