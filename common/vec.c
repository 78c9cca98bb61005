/* vec.c — see vec.h. */
#include "vec.h"

#include <stdlib.h>

int vec_reserve(void **items, size_t size, size_t need, size_t *cap)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*items, n * size);
    if (!p)
        return -1;
    *items = p;
    *cap = n;
    return 0;
}
