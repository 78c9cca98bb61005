/*
 * vec.h — the one growable array: a pointer, a count and a capacity that doubles.
 *
 *     if (vec_reserve((void **)&v->ids, sizeof *v->ids, v->n + 1, &v->cap) != 0)
 *         return KV_ENOMEM;
 *     v->ids[v->n++] = id;
 */
#ifndef VEC_H
#define VEC_H

#include <stddef.h>

/* Make room for `need` elements of `size` bytes at *items, whose capacity is *cap:
 * doubling from 16.  0, or -1 when memory runs out (then *items and *cap are as they
 * were). */
int vec_reserve(void **items, size_t size, size_t need, size_t *cap);

#endif /* VEC_H */
