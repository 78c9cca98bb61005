/* input.c — see input.h. */
#include "input.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vec.h"

char *input_read_all(FILE *fp, const char *name, size_t *len, kv_err *err)
{
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (vec_reserve((void **)&buf, 1, n + 4097, &cap) != 0) {
            kv_errorf(err, KV_ENOMEM, "%s: out of memory reading it", name);
            break;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (n > INPUT_MAX_BYTES) {
            kv_errorf(err, KV_ERANGE, "%s: more than %zu MiB: not a prompt or a text",
                      name, INPUT_MAX_BYTES >> 20);
            break;
        }
        if (got == 0 || feof(fp) || ferror(fp)) {
            if (ferror(fp)) {
                kv_errorf(err, KV_EIO, "%s: read error: %s", name, strerror(errno));
                break;
            }
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    free(buf);
    return NULL;
}
