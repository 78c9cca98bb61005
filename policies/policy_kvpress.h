/*
 * policy_kvpress.h — what the policies taken from kvpress (NVIDIA's press library)
 * share: kvpress compresses the context once, at the end of the prefill, so they run
 * in the `oneshot` phase unless --phase says otherwise; and most of its presses score
 * the cache from its key and value vectors, which the contract lends only while an
 * entry joins, so those policies keep a copy per slot (policy_vecs).  The scores are
 * kvpress's exactly (same formulas, rounded once to float), so that the kept sets can
 * be checked against kvpress itself (tests/test_kvpress.c).  docs/POLICIES.md,
 * "kvpress".
 */
#ifndef POLICY_KVPRESS_H
#define POLICY_KVPRESS_H

#include "policy.h"

#include <stddef.h>

/* In init: the oneshot phase unless the configuration set a phase.  With `only`, any
 * other phase is KV_EUSAGE (a policy that needs the whole context at once). */
int kvpress_oneshot(policy *p, int only, kv_err *err);

/* The key and value vectors of every kept entry, slot order: `per` vectors (1 for a KV
 * head, every KV head for a layer stream) of `dim` floats each.  A slot whose vectors
 * were not lent (a trace without keys or values) is marked missing; policies then
 * evict nothing, as knorm does with unknown norms. */
typedef struct policy_vecs {
    float  *key, *value;  /* (cap, per, dim) */
    double *work;         /* (2·dim) scratch of the scorers */
    int    per, dim, cap;
    int    missing;       /* some entry came without keys or values (or memory ran out) */
} policy_vecs;

void         policy_vecs_put(policy_vecs *s, int slot, const policy_vectors *v);
/* Remove the k slots (any order; `scratch` holds k ints) as the base removes entries. */
void         policy_vecs_drop(policy_vecs *s, int n, const int *slots, int k, int *scratch);
void         policy_vecs_free(policy_vecs *s);
const float *policy_vecs_key(const policy_vecs *s, int slot, int head);
const float *policy_vecs_value(const policy_vecs *s, int slot, int head);

/* A policy that scores the cache from its vectors begins its state with this; its
 * columns table is kvpress_scorer_columns (or starts with those rows). */
typedef struct kvpress_scorer {
    policy_vecs vecs;
    float      *score;   /* (slot, scratch) the score compared, rounded once */
    double     *acc;     /* (slot, scratch) the score summed over the stream's heads */
    int        *drop;    /* (slot, scratch) victims, sorted */
    double     *tmp;     /* (slot, scratch) two doubles per slot for the scorers */
    policy_rank *rank;   /* (slot, scratch) a chunk's candidates */
    int          chunk;  /* `press-chunk`: score and cut each chunk of this many apart */
    double       critical;     /* `critical`: CriticalKV's first-stage share (0: off) */
    double       critical_eps; /* `critical-epsilon` */
    float       *wov;    /* (slot) ‖W_o v‖₁, the mean over the stream's query heads */
    void       (*fn)(policy *p, const policy_vecs *v, int head, int n, double *tmp,
                     double *acc);   /* the policy's score of one head */
} kvpress_scorer;

extern const policy_column kvpress_scorer_columns[];

/* kvpress's ChunkPress as a parameter of every such policy: the row of its table. */
#define KVPRESS_CHUNK_PARAM                                                              \
    {"press-chunk", POLICY_PARAM_INT, offsetof(kvpress_scorer, chunk), "0", 0, 1e9, NULL, \
     "keydiff/lagkv/cur: score and cut each chunk of this many\nentries apart, each "     \
     "keeping its share (kvpress ChunkPress; 0: off)"}

/* kvpress's CriticalKVPress around the scorer: its two parameters (rows of the table). */
#define KVPRESS_CRITICAL_PARAMS                                                          \
    {"critical", POLICY_PARAM_REAL, offsetof(kvpress_scorer, critical), "0", 0, 1, NULL,  \
     "CriticalKV's first stage: this share of the kept entries by\nthe score alone, the "  \
     "rest by (score + critical-epsilon) x ||W_o v||_1\n(0: off; needs the output "        \
     "projection, kvsim replay --model)"},                                               \
    {"critical-epsilon", POLICY_PARAM_REAL, offsetof(kvpress_scorer, critical_eps), "1e-4", \
     0, 1e9, NULL, "CriticalKV: added to the score before the projected norm"}

/* Add head h's score of the n entries of v (slots 0..n-1 of the view) to acc[n]
 * (higher = kept); tmp holds 2n doubles of scratch. */
typedef void (*kvpress_head_fn)(policy *p, const policy_vecs *v, int head, int n, double *tmp,
                                double *acc);

/* The ops such a policy shares.  init: the oneshot phase (required with press-chunk)
 * and its score; append keeps the vectors; end_prompt cuts each press-chunk chunk to
 * its share; choose sums fn over the stream's heads, evicts the k lowest (ties: the
 * oldest) and drops their vectors; destroy frees them. */
int  kvpress_scorer_init(policy *p, kvpress_head_fn fn, kv_err *err);
void kvpress_scorer_append(policy *p, int slot, const policy_vectors *v);
void kvpress_scorer_end_prompt(policy *p);
int  kvpress_scorer_choose(policy *p, int k, int *out);
void kvpress_scorer_destroy(policy *p);

#define KVPRESS_SCORER_OPS(init_)                                                        \
    {.init = init_, .append = kvpress_scorer_append,                                     \
     .end_prompt = kvpress_scorer_end_prompt, .choose = kvpress_scorer_choose,           \
     .destroy = kvpress_scorer_destroy}

/* The kept fraction f of kvpress's ratio: the budget's own when written as a fraction
 * (1 − ratio exactly), else B over n. */
double kvpress_kept_fraction(const policy *p, int n);

/* kvpress's scorers over slots 0..n-1 of one head (higher = kept), for the policies
 * that wrap them (chunkkv).  Each adds its score to out[n] (out is not cleared). */
void kvpress_knorm_scores(const policy_vecs *s, int head, int n, double *out);
void kvpress_keydiff_scores(const policy_vecs *s, int head, int n, double *out);
void kvpress_cur_scores(const policy_vecs *s, int head, int n, int sinks, int window,
                        int type, double *tmp, double *out);
void kvpress_lagkv_scores(const policy_vecs *s, int head, int n, int sinks, int lag,
                          double *tmp, double *out);
/* tmp: 2n doubles of scratch (kvpress_scorer.tmp). */

#endif /* POLICY_KVPRESS_H */
