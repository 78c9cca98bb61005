/*
 * source_synth.c — a deterministic synthetic row source (see replay_source.h).
 *
 * Row (l, h, t) is softmax(z) over keys 0..t with
 *     z(i) = 3·[i = 0]  +  2·[i is a heavy hitter]  +  1.5·exp(-(t − i)/8)  +  u(l,h,t,i)
 * where heavy hitters are every 7th token and u is uniform in [-2, 2) from a hash of
 * (seed, l, h, t, i).  So policies that track accumulated attention beat recency, and
 * recency beats random: the orderings the property tests rely on hold by design.
 * Keys are uniform in [-1, 1), values in [-0.5, 1.5): a common direction, as real
 * values have, so relative output errors stay well below 1.
 * With a window W (spec.window), layers 0, 2, 4, ... slide: row t is the same softmax
 * over keys t-W+1..t only, zero before, as a model's sliding-window layer masks it.
 */
#include "replay_source.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct synth {
    replay_source     src;
    replay_synth_spec spec;
    int              *layers, *heads, *kv_of_head;   /* (L,), (H,), (H,) */
    int              *window;                        /* (L,) */
    policy_entry     *tokens;                        /* (T,) */
} synth;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Uniform in [-1, 1) from a hash of five coordinates. */
static float hash_unit(uint64_t seed, int a, int b, int c, int d)
{
    uint64_t x = mix(seed ^ mix((uint64_t)a * 0x9e3779b97f4a7c15ull ^ (uint64_t)b << 20 ^
                                (uint64_t)c << 40 ^ (uint64_t)d));
    return (float)((double)(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void synth_row(const synth *s, int l, int h, int t, float *out)
{
    const int W = s->window[l], lo = W > 0 && t + 1 > W ? t + 1 - W : 0;
    float zmax = -INFINITY;
    memset(out, 0, (size_t)lo * sizeof *out);
    for (int i = lo; i <= t; i++) {
        float z = 2.0f * hash_unit(s->spec.seed, l, h, t, i) +
                  1.5f * expf(-(float)(t - i) / 8.0f);
        if (i == 0)
            z += 3.0f;
        if (i % 7 == 3)
            z += 2.0f;
        out[i] = z;
        zmax = z > zmax ? z : zmax;
    }
    double sum = 0;
    for (int i = lo; i <= t; i++)
        sum += (out[i] = expf(out[i] - zmax));
    for (int i = lo; i <= t; i++)
        out[i] = (float)(out[i] / sum);
}

static int synth_read_rows(replay_source *src, int li, int hi, int t0, int n, float *out,
                           size_t width, kv_err *err)
{
    (void)err;
    const synth *s = src->impl;
    for (int r = 0; r < n; r++) {
        float *row = out + (size_t)r * width;
        synth_row(s, li, hi, t0 + r, row);
        memset(row + t0 + r + 1, 0, (width - (size_t)(t0 + r + 1)) * sizeof *row);
    }
    return KV_OK;
}

static int synth_read_kv(replay_source *src, int li, int ki, int t0, int n, float *keys,
                         float *values, kv_err *err)
{
    (void)err;
    const synth *s = src->impl;
    const int D = s->spec.head_dim;
    for (int r = 0; r < n; r++)
        for (int d = 0; d < D; d++) {
            if (keys)
                keys[(size_t)r * D + d] = hash_unit(s->spec.seed + 1, li, ki, t0 + r, d);
            if (values)
                values[(size_t)r * D + d] = 0.5f + hash_unit(s->spec.seed + 2, li, ki, t0 + r, d);
        }
    return KV_OK;
}

static void synth_close(replay_source *src)
{
    synth *s = src->impl;
    free(s->layers);
    free(s->heads);
    free(s->kv_of_head);
    free(s->window);
    free(s->tokens);
    free(s);
}

static const replay_source_ops synth_ops = {synth_read_rows, synth_read_kv, synth_close, NULL,
                                            NULL};

replay_source *replay_source_synth(const replay_synth_spec *spec, kv_err *err)
{
    if (spec->T < 1 || spec->n_layers < 1 || spec->n_heads < 1 || spec->n_kv < 1 ||
        spec->n_heads % spec->n_kv || spec->head_dim < 0) {
        kv_errorf(err, KV_EUSAGE, "synthetic source: T %d, layers %d, heads %d, kv heads %d "
                  "(must divide heads), head_dim %d", spec->T, spec->n_layers, spec->n_heads,
                  spec->n_kv, spec->head_dim);
        return NULL;
    }
    synth *s = calloc(1, sizeof *s);
    if (!s)
        return kv_errorf(err, KV_ENOMEM, "synthetic source: out of memory"), NULL;
    s->spec = *spec;
    s->src.impl = s;
    s->src.ops = &synth_ops;
    s->layers = malloc((size_t)spec->n_layers * sizeof *s->layers);
    s->heads = malloc((size_t)spec->n_heads * sizeof *s->heads);
    s->kv_of_head = malloc((size_t)spec->n_heads * sizeof *s->kv_of_head);
    s->tokens = malloc((size_t)spec->T * sizeof *s->tokens);
    s->window = calloc((size_t)spec->n_layers, sizeof *s->window);
    if (!s->layers || !s->heads || !s->kv_of_head || !s->tokens || !s->window) {
        synth_close(&s->src);
        return kv_errorf(err, KV_ENOMEM, "synthetic source: out of memory"), NULL;
    }
    const int prompt = spec->prompt_len > 0 && spec->prompt_len < spec->T ? spec->prompt_len
                                                                           : spec->T;
    for (int l = 0; l < spec->n_layers; l++) {
        s->layers[l] = l;
        s->window[l] = l % 2 == 0 && spec->window > 0 ? spec->window : 0;
    }
    for (int h = 0; h < spec->n_heads; h++) {
        s->heads[h] = h;
        s->kv_of_head[h] = h / (spec->n_heads / spec->n_kv);
    }
    for (int t = 0; t < spec->T; t++)
        s->tokens[t] = (policy_entry){.position = t, .token = 1000 + t % 97,
                                      .flags = t < prompt ? POLICY_FLAG_PROMPT : 0};
    s->src = (replay_source){
        .ops = &synth_ops, .name = "synthetic", .T = spec->T, .complete = spec->complete,
        .n_layers = spec->n_layers, .n_heads = spec->n_heads, .n_kv = spec->n_kv,
        .layers = s->layers, .heads = s->heads, .kv_of_head = s->kv_of_head,
        .model_layers = spec->n_layers, .window = s->window, .head_dim = spec->head_dim,
        .has_values = spec->head_dim > 0, .prompt_len = prompt, .tokens = s->tokens,
        .impl = s};
    return &s->src;
}

