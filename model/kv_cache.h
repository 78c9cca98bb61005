/*
 * kv_cache.h — a KV cache built for eviction: one compact stream per (layer, KV head).
 *
 * Each stream holds its entries in slots 0..n-1: the post-RoPE key, the value and the
 * original position of every token it keeps.  The invariants (tests/test_kv_cache.c
 * checks each one):
 *
 *  (1) Slot order is join order, which is increasing original position.
 *  (2) kv_cache_remove() drops k ascending slots and closes the gaps without
 *      reordering the rest — exactly policy_compact() of policies/policy.h — so a
 *      policy's slots and the cache's slots stay aligned.  It moves only the entries
 *      after the first removed slot: O(entries moved), no allocation.
 *  (3) Keys keep the RoPE rotation of the position kv_cache_positions() gives them:
 *      their original position, so removal never re-rotates them.  With compact
 *      positions (kv_cache_set_compact_positions: live eviction's --reposition) a
 *      stream's entries sit at 0..n-1 in slot order instead; removal still moves
 *      no rotation, and the model re-rotates the kept keys afterwards
 *      (model_cache_reposition), so that the positions read 0..n-1 again.
 *  (4) Streams grow one at a time, by chunks (KV_CACHE_CHUNK entries, or the reserve
 *      given to kv_cache_new); the cache as a whole is never reallocated.  Removal
 *      keeps the stream's capacity: a stream evicted back to B + s never reallocates.
 *  (5) Every byte the cache holds was counted by its one allocation wrapper at the
 *      malloc/realloc/free that made or released it; kv_cache_bytes() is that count,
 *      not a formula.
 *
 * Keys and values are float32 rows of head_dim floats, slot-major: stream s's key of
 * slot i is kv_cache_keys(c, layer, h)[i * head_dim ...].  Pointers returned by the
 * accessors are borrowed and valid until the next call that appends to or removes from
 * that stream.  A cache is not thread-safe for writes; reads of different streams may
 * run concurrently.  Errors follow kv_err.h.
 */
#ifndef KV_CACHE_H
#define KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

#define KV_CACHE_CHUNK 256   /* entries a stream grows by when its reserve is full */

typedef struct kv_cache kv_cache;   /* opaque */

/* An empty cache of n_layer × n_kv_head streams of head_dim-wide entries.  `reserve`
 * entries per stream are allocated up front (0: none; live eviction passes B + s, a
 * full-cache run the expected sequence length).  NULL and err on bad shapes or when
 * memory runs out. */
kv_cache *kv_cache_new(int n_layer, int n_kv_head, int head_dim, int reserve, kv_err *err);
void      kv_cache_free(kv_cache *c);               /* NULL does nothing */

/* Append n entries to stream (layer, kv_head): entry i's key and value are the
 * head_dim floats at keys + i·stride and values + i·stride (stride >= head_dim, so
 * one head can be taken out of a row holding every head), its position positions[i].
 * 0, or KV_ENOMEM with the stream unchanged. */
int  kv_cache_append(kv_cache *c, int layer, int kv_head, const float *keys,
                     const float *values, size_t stride, const int32_t *positions, int n,
                     kv_err *err);

/* Make every stream able to take `extra` more entries without allocating, so that a
 * forward pass cannot fail halfway through its layers.  0 or KV_ENOMEM. */
int  kv_cache_reserve(kv_cache *c, int extra, kv_err *err);

/* (4) Shrink stream (layer, kv_head) to max(cap, its size, 1) entries and give the rest
 * back (counted by (5)): after a one-shot compression the cache holds what was kept,
 * not the prompt it was chosen from.  A stream at or below that size is untouched; it
 * grows by chunks again when appended to.  0, or KV_ENOMEM with the stream unchanged. */
int  kv_cache_fit(kv_cache *c, int layer, int kv_head, int cap);

/* (2) Remove the k slots in slots[] (strictly ascending, each < the stream's size) and
 * compact the rest in order. */
void kv_cache_remove(kv_cache *c, int layer, int kv_head, const int *slots_ascending, int k);

/* Empty every stream and forget the positions seen; capacities are kept. */
void kv_cache_clear(kv_cache *c);
/* Forget every entry at an original position >= pos (each stream's newest: slots are in
 * position order) and rewind the next position to pos: back to the cache as it was
 * when pos tokens had joined, less what was evicted before (a compressed context asked
 * several questions).  Not with compact positions. */
void kv_cache_truncate(kv_cache *c, int pos);

int            kv_cache_size(const kv_cache *c, int layer, int kv_head);   /* entries n */
const float   *kv_cache_keys(const kv_cache *c, int layer, int kv_head);   /* (n, head_dim) */
const float   *kv_cache_values(const kv_cache *c, int layer, int kv_head); /* (n, head_dim) */
/* (n,) the position each key is rotated for (3) */
const int32_t *kv_cache_positions(const kv_cache *c, int layer, int kv_head);

/* The position the next token takes: tokens ever appended through the model
 * (kv_cache_advance), whatever was evicted since. */
int  kv_cache_next_pos(const kv_cache *c);
void kv_cache_advance(kv_cache *c, int n);          /* n tokens have joined every stream */

/* (3) Compact positions on (1) or off (0, the default); only on an empty cache, whose
 * every stream then numbers its entries 0..n-1.  Returns 0, or KV_EUSAGE when the
 * cache already holds entries. */
int  kv_cache_set_compact_positions(kv_cache *c, int on);

/* The position the next token takes in stream (layer, kv_head), for its RoPE:
 * kv_cache_next_pos(), or the stream's size n with compact positions. */
int  kv_cache_rope_pos(const kv_cache *c, int layer, int kv_head);

/* Writable keys and positions of one stream, for the model's re-rotation only
 * (model_cache_reposition); borrowed like kv_cache_keys(). */
float   *kv_cache__keys_rw(kv_cache *c, int layer, int kv_head);
int32_t *kv_cache__positions_rw(kv_cache *c, int layer, int kv_head);

/* (5) Bytes currently allocated by the cache (streams and bookkeeping). */
size_t kv_cache_bytes(const kv_cache *c);

int kv_cache_n_layer(const kv_cache *c);
int kv_cache_n_kv_head(const kv_cache *c);
int kv_cache_head_dim(const kv_cache *c);

#endif /* KV_CACHE_H */
