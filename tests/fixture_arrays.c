/* fixture_arrays.c — see fixture_arrays.h. */
#include "fixture_arrays.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_u32(FILE *fp, uint32_t *v) { return fread(v, 4, 1, fp) == 1 ? 0 : -1; }

static int read_array(FILE *fp, fx_array *a)
{
    uint32_t len, dtype, ndim;
    if (read_u32(fp, &len) || len >= sizeof a->name || fread(a->name, 1, len, fp) != len)
        return -1;
    a->name[len] = 0;
    if (read_u32(fp, &dtype) || read_u32(fp, &ndim) || dtype > 1 || ndim < 1 || ndim > 4)
        return -1;
    a->dtype = (int)dtype;
    a->ndim = (int)ndim;
    a->count = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        uint32_t d;
        if (read_u32(fp, &d))
            return -1;
        a->dims[i] = (int)d;
        a->count *= d;
    }
    a->data = malloc(a->count * 4 + 1);
    return a->data && fread(a->data, 4, a->count, fp) == a->count ? 0 : -1;
}

int fx_load(fx_file *f, const char *name)
{
    *f = (fx_file){0};
    const char *dir = getenv("KV_FIXTURES");
    char path[1024], magic[8];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", name);
    FILE *fp = fopen(path, "rb");
    uint32_t n;
    if (!fp || fread(magic, 1, 8, fp) != 8 || memcmp(magic, "KVFWD1\0\0", 8) || read_u32(fp, &n) ||
        !(f->arrays = calloc(n, sizeof *f->arrays))) {
        fprintf(stderr, "fx_load: cannot read %s\n", path);
        if (fp)
            fclose(fp);
        return -1;
    }
    for (f->n = 0; f->n < (int)n; f->n++)
        if (read_array(fp, &f->arrays[f->n])) {
            fprintf(stderr, "fx_load: %s: array %d is malformed\n", path, f->n);
            f->n++;
            fx_free(f);
            fclose(fp);
            return -1;
        }
    fclose(fp);
    return 0;
}

void fx_free(fx_file *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->arrays[i].data);
    free(f->arrays);
    *f = (fx_file){0};
}

const fx_array *fx_find(const fx_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->arrays[i].name, name))
            return &f->arrays[i];
    return NULL;
}

const fx_array *fx_get(const fx_file *f, const char *fmt, int i)
{
    char name[64];
    snprintf(name, sizeof name, fmt, i);
    const fx_array *a = fx_find(f, name);
    cr_assert_not_null(a, "fixture array %s is missing", name);
    return a;
}
