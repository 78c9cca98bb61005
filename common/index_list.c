/* index_list.c — see index_list.h. */
#include "index_list.h"

#include <stdlib.h>
#include <string.h>

/* One item "a" or "a-b" at *p; advances *p past it and its comma. */
static int parse_item(const char **p, long *lo, long *hi)
{
    char *end;
    *lo = *hi = strtol(*p, &end, 10);
    if (end == *p || *lo < 0 || **p == '-' || **p == '+')
        return -1;
    if (*end == '-') {
        const char *q = end + 1;
        *hi = strtol(q, &end, 10);
        if (end == q || *hi < *lo || *q == '-' || *q == '+')
            return -1;
    }
    if (*end && *end != ',')
        return -1;
    *p = *end ? end + 1 : end;
    return **p || !*end ? 0 : -1;   /* "1," (a trailing comma) is malformed */
}

int index_list_parse(const char *text, int n, unsigned char *on, const char *what,
                     kv_err *err)
{
    memset(on, text ? 0 : 1, (size_t)n);
    if (!text)
        return n;
    if (!*text)
        return kv_errorf(err, KV_EUSAGE, "--%s: empty list; expected numbers and ranges "
                         "like 0,4,8-11", what);
    int count = 0;
    for (const char *p = text; *p;) {
        long lo, hi;
        if (parse_item(&p, &lo, &hi) != 0)
            return kv_errorf(err, KV_EUSAGE, "--%s '%s': expected numbers and ranges like "
                             "0,4,8-11", what, text);
        if (hi >= n)
            return kv_errorf(err, KV_EUSAGE, "--%s: %ld is out of range 0..%d", what, hi, n - 1);
        for (long v = lo; v <= hi; v++) {
            count += !on[v];
            on[v] = 1;
        }
    }
    return count;
}
