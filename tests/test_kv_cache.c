/*
 * test_kv_cache.c — the invariants of model/kv_cache.h, each test naming the one it
 * checks, on small synthetic streams.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "kv_cache.h"
#include "policy.h"

#define HD 4

/* Append n entries to (layer, head) whose key, value and position all encode the
 * position p: key = (p, p, ...), value = (-p, ...). */
static void append_positions(kv_cache *c, int layer, int head, int p0, int n)
{
    float k[64 * HD], v[64 * HD];
    int32_t pos[64];
    for (int i = 0; i < n; i++) {
        pos[i] = p0 + i;
        for (int j = 0; j < HD; j++) {
            k[i * HD + j] = (float)(p0 + i);
            v[i * HD + j] = -(float)(p0 + i);
        }
    }
    cr_assert_eq(kv_cache_append(c, layer, head, k, v, HD, pos, n, NULL), 0);
}

static void assert_stream_is(const kv_cache *c, int layer, int head, const int32_t *want, int n)
{
    cr_assert_eq(kv_cache_size(c, layer, head), n);
    const float *k = kv_cache_keys(c, layer, head), *v = kv_cache_values(c, layer, head);
    const int32_t *pos = kv_cache_positions(c, layer, head);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(pos[i], want[i], "slot %d: position %d, expected %d", i, pos[i], want[i]);
        for (int j = 0; j < HD; j++) {
            cr_assert_eq(k[i * HD + j], (float)want[i]);
            cr_assert_eq(v[i * HD + j], -(float)want[i]);
        }
    }
}

/* (2) removing arbitrary ascending slots keeps the rest in order, aligned with what
 * policy_compact() does to a policy's own array */
Test(kv_cache, remove_keeps_rest_aligned_with_policy_compact)
{
    kv_cache *c = kv_cache_new(2, 3, HD, 0, NULL);
    cr_assert_not_null(c);
    append_positions(c, 1, 2, 0, 40);
    int32_t mirror[40];
    for (int i = 0; i < 40; i++)
        mirror[i] = i;
    int n = 40;
    const int rounds[][5] = {{0, 3, 4, 17, 39}, {1, 2, 3, 30, 34}, {5, 6, 7, 8, 9}, {0, 1, 2, 10, 24}};
    for (int r = 0; r < 4; r++) {
        kv_cache_remove(c, 1, 2, rounds[r], 5);
        policy_compact(mirror, sizeof *mirror, n, rounds[r], 5);
        n -= 5;
        assert_stream_is(c, 1, 2, mirror, n);
    }
    cr_assert_eq(kv_cache_size(c, 0, 0), 0, "other streams are untouched");
    kv_cache_free(c);
}

/* (1) slot order is join order, across appends after removals */
Test(kv_cache, appends_after_removal_join_at_the_end)
{
    kv_cache *c = kv_cache_new(1, 1, HD, 8, NULL);
    append_positions(c, 0, 0, 0, 6);
    int drop[] = {1, 4};
    kv_cache_remove(c, 0, 0, drop, 2);
    append_positions(c, 0, 0, 6, 3);
    int32_t want[] = {0, 2, 3, 5, 6, 7, 8};
    assert_stream_is(c, 0, 0, want, 7);
    kv_cache_free(c);
}

/* (4)+(5) growth happens per stream in chunks and is counted exactly; removal and
 * clearing keep the capacity, free releases everything */
Test(kv_cache, bytes_follow_the_allocations)
{
    kv_cache *c = kv_cache_new(2, 2, HD, 0, NULL);
    size_t empty = kv_cache_bytes(c);
    size_t per_entry = 2 * HD * sizeof(float) + sizeof(int32_t);
    append_positions(c, 0, 0, 0, 1);
    cr_assert_eq(kv_cache_bytes(c), empty + KV_CACHE_CHUNK * per_entry);
    append_positions(c, 0, 0, 1, 10);
    cr_assert_eq(kv_cache_bytes(c), empty + KV_CACHE_CHUNK * per_entry, "no growth inside a chunk");
    int drop[] = {0, 1, 2};
    kv_cache_remove(c, 0, 0, drop, 3);
    cr_assert_eq(kv_cache_bytes(c), empty + KV_CACHE_CHUNK * per_entry);
    cr_assert_eq(kv_cache_reserve(c, 300, NULL), 0);
    /* stream (0,0) holds 8 and grows by a chunk past 308; the empty ones to exactly 300 */
    cr_assert_eq(kv_cache_bytes(c), empty + (2 * KV_CACHE_CHUNK + 3 * 300) * per_entry);
    kv_cache_clear(c);
    cr_assert_eq(kv_cache_size(c, 0, 0), 0);
    cr_assert_eq(kv_cache_next_pos(c), 0);
    kv_cache_free(c);
}

/* (4) a stream reserved for B + s entries never reallocates while evicted back to B */
Test(kv_cache, reserve_covers_budget_plus_stride)
{
    kv_cache *c = kv_cache_new(1, 1, HD, 12, NULL);
    size_t bytes = kv_cache_bytes(c);
    const float *keys = NULL;
    for (int t = 0; t < 200; t += 2) {
        append_positions(c, 0, 0, t, 2);
        if (kv_cache_size(c, 0, 0) == 12) {
            int drop[] = {3, 7};
            kv_cache_remove(c, 0, 0, drop, 2);
        }
        if (!keys)
            keys = kv_cache_keys(c, 0, 0);
        cr_assert_eq(kv_cache_keys(c, 0, 0), keys);
    }
    cr_assert_eq(kv_cache_bytes(c), bytes);
    kv_cache_free(c);
}

Test(kv_cache, rejects_bad_shapes_and_frees_null)
{
    kv_err err = {0};
    cr_assert_null(kv_cache_new(0, 3, 64, 0, &err));
    cr_assert_eq(err.code, KV_ERANGE);
    kv_cache_free(NULL);
}
