/* replay_source.c — what every row source shares: opening by name, closing and the
 * read calls. */
#include "replay_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* key=N of a synth: spec, or def when absent; -1 when malformed. */
static int synth_field(const char *spec, const char *key, long def, long *out)
{
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    *out = def;
    for (const char *p = strstr(spec, pat); p; p = strstr(p + 1, pat))
        if (p[-1] == ':' || p[-1] == ',') {
            char *end;
            *out = strtol(p + strlen(pat), &end, 10);
            return *end == ',' || *end == '\0' ? 0 : -1;
        }
    return 0;
}

replay_source *replay_source_open(const char *spec, kv_err *err)
{
    if (strncmp(spec, "synth:", 6) != 0)
        return replay_source_open_trace(spec, err);
    long T, L, H, K, D, seed, prompt, complete, window;
    if (synth_field(spec, "T", 256, &T) || synth_field(spec, "layers", 2, &L) ||
        synth_field(spec, "heads", 6, &H) || synth_field(spec, "kv", 2, &K) ||
        synth_field(spec, "dim", 16, &D) || synth_field(spec, "seed", 1, &seed) ||
        synth_field(spec, "prompt", 0, &prompt) || synth_field(spec, "complete", 1, &complete) ||
        synth_field(spec, "window", 0, &window) || window < 0 || window > (1 << 20) ||
        T > (1 << 20) || L > 4096 || H > 4096) {
        kv_errorf(err, KV_EUSAGE, "'%s': expected synth:T=N,layers=N,heads=N,kv=N,dim=N,"
                  "seed=N,prompt=N,complete=0|1,window=N (integers, T <= 2^20)", spec);
        return NULL;
    }
    replay_synth_spec s = {(int)T, (int)L, (int)H, (int)K, (int)D, (int)prompt, complete != 0,
                           (unsigned long)seed, (int)window};
    return replay_source_synth(&s, err);
}

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

int replay_source_rows(replay_source *s, int li, int hi, int t0, int n, void *buf,
                       size_t cap, size_t width, replay_block *out, kv_err *err)
{
    int rc = s->ops->f16_rows ? s->ops->f16_rows(s, li, hi, t0, n, buf, cap, out->col, err)
                              : 0;
    out->f32 = rc == 1 ? NULL : buf;
    out->width = width;
    if (rc == 0)
        rc = s->ops->read_rows(s, li, hi, t0, n, buf, width, err);
    return rc == 1 ? KV_OK : rc;
}

int replay_source_read_queries(replay_source *s, int li, int hi, int t0, int n, float *out,
                               kv_err *err)
{
    if (!s->has_queries || !s->ops->read_queries)
        return kv_errorf(err, KV_ENOTFOUND, "%s has no queries recorded", s->name);
    return s->ops->read_queries(s, li, hi, t0, n, out, err);
}
