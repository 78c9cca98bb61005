/* replay_source.c — what every row source shares: closing and the read calls. */
#include "replay_source.h"

void replay_source_close(replay_source *s)
{
    if (s)
        s->ops->close(s);
}

int replay_source_read_rows(replay_source *s, int li, int hi, int t0, int n, float *out,
                            size_t width, kv_err *err)
{
    return s->ops->read_rows(s, li, hi, t0, n, out, width, err);
}

int replay_source_read_kv(replay_source *s, int li, int ki, int t0, int n, float *keys,
                          float *values, kv_err *err)
{
    return s->ops->read_kv(s, li, ki, t0, n, keys, values, err);
}
