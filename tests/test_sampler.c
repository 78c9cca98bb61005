/*
 * test_sampler.c — model/sampler.h: greedy is the argmax, a seed repeats a run, and
 * the filters keep only what they promise.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "sampler.h"

#define V 1000

static void make_logits(float *l, unsigned seed)
{
    for (int i = 0; i < V; i++)
        l[i] = (float)sin((double)(i * 7919 + seed * 104729) * 0.001) * 4.0f;
}

static sampler *make(float t, int k, float p, uint64_t seed)
{
    sampler_config cfg = {.temperature = t, .top_k = k, .top_p = p, .seed = seed};
    sampler *s = sampler_new(&cfg, V, NULL);
    cr_assert_not_null(s);
    return s;
}

Test(sampler, greedy_is_argmax_lowest_id_on_ties)
{
    float l[V] = {0};
    l[17] = l[400] = 3.0f;
    sampler *s = make(0.0f, 0, 1.0f, 0);
    cr_assert_eq(sampler_sample(s, l), 17);
    sampler_free(s);
}

Test(sampler, same_seed_same_tokens_other_seed_differs)
{
    float l[V];
    int32_t a[64], b[64], c[64];
    sampler *s1 = make(1.0f, 50, 0.95f, 42), *s2 = make(1.0f, 50, 0.95f, 42), *s3 = make(1.0f, 50, 0.95f, 43);
    int differ = 0;
    for (int t = 0; t < 64; t++) {
        make_logits(l, (unsigned)t);
        a[t] = sampler_sample(s1, l);
        b[t] = sampler_sample(s2, l);
        c[t] = sampler_sample(s3, l);
        cr_assert_eq(a[t], b[t], "step %d", t);
        differ += a[t] != c[t];
    }
    cr_assert_gt(differ, 0);
    sampler_free(s1);
    sampler_free(s2);
    sampler_free(s3);
}

Test(sampler, top_k_one_is_greedy_and_top_k_bounds_the_choice)
{
    float l[V];
    sampler *one = make(2.0f, 1, 1.0f, 1), *five = make(5.0f, 5, 1.0f, 1);
    for (int t = 0; t < 50; t++) {
        make_logits(l, (unsigned)t);
        int32_t best = sampler_argmax(l, V), pick = sampler_sample(five, l);
        cr_assert_eq(sampler_sample(one, l), best);
        int above = 0;   /* tokens with a larger logit than the pick */
        for (int i = 0; i < V; i++)
            above += l[i] > l[pick];
        cr_assert_lt(above, 5);
    }
    sampler_free(one);
    sampler_free(five);
}

Test(sampler, tiny_top_p_keeps_only_the_most_likely)
{
    float l[V];
    sampler *s = make(1.0f, 0, 1e-6f, 9);
    for (int t = 0; t < 20; t++) {
        make_logits(l, (unsigned)t);
        cr_assert_eq(sampler_sample(s, l), sampler_argmax(l, V));
    }
    sampler_free(s);
}

Test(sampler, rejects_bad_settings)
{
    kv_err err = {0};
    sampler_config bad[] = {{.temperature = -1.0f, .top_p = 1.0f}, {.top_k = -2, .top_p = 1.0f},
                            {.top_p = 0.0f}, {.top_p = 1.5f}};
    for (int i = 0; i < 4; i++) {
        cr_assert_null(sampler_new(&bad[i], V, &err));
        cr_assert_eq(err.code, KV_ERANGE);
    }
    sampler_free(NULL);
}
