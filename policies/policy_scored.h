/*
 * policy_scored.h — the score × scope family (policy_scored.c), for the policies that
 * build on its statistics: pace (an adaptive stride) and adakv (a layer-wide budget).
 * Their state begins with a `scored` so the family's parameters and ops apply.
 */
#ifndef POLICY_SCORED_H
#define POLICY_SCORED_H

#include "policy.h"

typedef struct scored {
    /* parameters (the family's table) */
    int            score;    /* index into "aas mas ltas ...": policy_score - 1; -1 unset */
    int            scope;    /* POLICY_SCOPE_* set */
    int            sinks;
    policy_span    window;   /* r of the window and std scopes */
    int            recent;   /* the std scope's forced newest */
    int            history;  /* aqas look-back in steps */
    int            skip_layers; /* knorm keeps layers below this whole */
    /* statistics, per slot */
    double        *S;        /* Σ a */
    double        *Q;        /* Σ a² */
    int           *c;        /* queries that attended the entry */
    float         *last;     /* the latest reduced row (ltas) */
    float         *key;      /* uniform draws (random) or key norms (knorm) */
    int           *unimp;    /* aqas: unimportant steps in the history */
    uint64_t      *bits;     /* (words per slot) aqas: ring of "unimportant" bits */
    int            words;
    long           step;     /* rows observed so far: the ring's clock */
    /* scratch, per slot */
    float         *sc;       /* scores */
    unsigned char *mask;     /* 1 = candidate */
    int           *block;    /* pace's would-be victims */
    float         *sigma;    /* σ of the std scope */
} scored;

extern const policy_def policy_scored;   /* the family's root: its table and ops */

policy_score scored_score(const policy *p);
/* Fill score[n] and cand[n] (1 = candidate) for evicting k now: the scope's
 * protections capped so that k candidates remain (invariant 7).  k = 0: uncapped. */
void   scored_candidates(const policy *p, int k, float *score, unsigned char *cand);
/* σ(slot) = sqrt(max(0, Q/c - (S/c)^2)), 0 when unobserved. */
double scored_sigma(const policy *p, int slot);
/* Mean MAS and mean σ over the block of k entries scored would evict now (pace's
 * settledness test); 0 and 0 when nothing is evictable. */
void   scored_block(const policy *p, int k, double *mean_mas, double *mean_sigma);
/* The family's ops, for policies that reuse some of them. */
int    scored_init(policy *p, kv_err *err);
int    scored_uses(const policy *p, const char *key);
void   scored_append(policy *p, int slot, const policy_vectors *v);
void   scored_observe(policy *p, const float *row, int n);
int    scored_choose(policy *p, int k, int *out);
int    scored_scores(const policy *p, float *out);
int    scored_rules(const policy *p, policy_rules *out);

#endif /* POLICY_SCORED_H */
