/*
 * fixture_arrays.h — reads the named-array fixture files written by
 * tests/fixtures/make_forward_fixtures.py ("KVFWD1": a flat list of float32/int32
 * arrays, each with a name and a shape; the layout is in that script's docstring).
 */
#ifndef FIXTURE_ARRAYS_H
#define FIXTURE_ARRAYS_H

#include <stddef.h>
#include <stdint.h>

typedef struct fx_array {
    char    name[64];
    int     dtype;       /* 0 float32, 1 int32 */
    int     ndim;
    int     dims[4];
    size_t  count;       /* elements */
    void   *data;        /* float * or int32_t *, owned by the fx_file */
} fx_array;

typedef struct fx_file {
    fx_array *arrays;    /* (n,) */
    int       n;
} fx_file;

/* Load KV_FIXTURES/name; 0, or -1 (with a message on stderr) when absent or malformed. */
int             fx_load(fx_file *f, const char *name);
void            fx_free(fx_file *f);                       /* leaves f empty */
const fx_array *fx_find(const fx_file *f, const char *name); /* NULL if absent */

/* The array named by printf(fmt, i) ("p%d.ids"); a missing one fails the test. */
const fx_array *fx_get(const fx_file *f, const char *fmt, int i);

#endif
