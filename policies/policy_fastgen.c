/*
 * policy_fastgen.c — `fastgen`: a per-head compression profile chosen on the prompt
 * (FastGen, "Model Tells You What to Discard", ICLR 2024).
 *
 * Five nested profiles, each keeping a superset of the previous one:
 *     0 special    entries flagged POLICY_FLAG_SPECIAL
 *     1 punct      + POLICY_FLAG_PUNCT
 *     2 frequent   + the floor(r_f · len) entries with the largest accumulated S
 *     3 local      + the entries within distance r_l · len of the current token
 *     4 full       everything
 * where len = tokens seen so far and the current token is always kept.  While the
 * prompt streams by, each row τ is scored against every profile as it would stand
 * when query τ attends (S accumulated over rows < τ): the recovered mass is the
 * share of row τ on the profile's entries.  At the end of the prompt the head takes
 * the cheapest profile whose mean recovered mass is >= T (recovery), evicts what it
 * does not keep, and applies the same profile at every later step.  The budget B is
 * not used: fastgen sizes its own cache, and the driver reports its mean size.
 */
#include "policy_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PROFILE_SPECIAL, PROFILE_PUNCT, PROFILE_FREQUENT, PROFILE_LOCAL, PROFILE_FULL,
       N_PROFILES };
static const char *const profile_names[N_PROFILES] = {"special", "punct", "frequent",
                                                      "local", "full"};

typedef struct fastgen {
    double        *S;         /* (capacity,) accumulated attention */
    unsigned char *level;     /* (capacity,) scratch: the first profile keeping the slot */
    float         *Sf;        /* (capacity,) scratch: S as float, for the frequent set */
    double         mass[N_PROFILES];  /* Σ over prompt rows of the recovered mass */
    int            rows;      /* prompt rows scored */
    int            profile;   /* chosen at the end of the prompt; -1 before */
} fastgen;

static int fastgen_init(policy *p, char *err, size_t errlen)
{
    int phase_bit = policy__param_index("phase");
    if ((p->cfg.set & (1ull << phase_bit)) && p->cfg.phase != POLICY_PHASE_STREAM)
        return policy__fail(err, errlen, "fastgen profiles the prompt then applies its "
                            "profile: phase must be stream");
    fastgen *f = calloc(1, sizeof *f);
    if (!f)
        return policy__fail(err, errlen, "out of memory");
    f->profile = -1;
    p->state = f;
    return 0;
}

static int fastgen_reserve(policy *p, int capacity)
{
    fastgen *f = p->state;
    double *S = realloc(f->S, (size_t)capacity * sizeof *S);
    if (S)
        f->S = S;
    unsigned char *l = realloc(f->level, (size_t)capacity);
    if (l)
        f->level = l;
    float *Sf = realloc(f->Sf, (size_t)capacity * sizeof *Sf);
    if (Sf)
        f->Sf = Sf;
    return S && l && Sf ? 0 : -1;
}

static void fastgen_append(policy *p, int slot) { ((fastgen *)p->state)->S[slot] = 0; }

/* level[i] = the cheapest profile that keeps slot i at the current step. */
static void mark_levels(const policy *p)
{
    const fastgen *f = p->state;
    int n = p->n, len = p->seen, t = p->entries[n - 1].position;
    int n_freq = (int)floor(p->cfg.r_f * len);
    /* frequent: the n_freq largest S, ties to the newer */
    for (int i = 0; i < n; i++) {
        f->Sf[i] = (float)f->S[i];
        f->level[i] = 1;   /* a candidate of protect_top */
    }
    policy__protect_top(p, f->Sf, f->level, n_freq);
    for (int i = 0; i < n; i++)
        f->level[i] = f->level[i] ? PROFILE_FULL : PROFILE_FREQUENT;
    for (int i = 0; i < n; i++) {
        const policy_entry *e = &p->entries[i];
        unsigned char *lv = &f->level[i];
        if (*lv > PROFILE_LOCAL && t - e->position <= p->cfg.r_l * len)
            *lv = PROFILE_LOCAL;
        if (e->flags & POLICY_FLAG_PUNCT)
            *lv = PROFILE_PUNCT;
        if ((e->flags & POLICY_FLAG_SPECIAL) || i == n - 1)
            *lv = PROFILE_SPECIAL;
    }
}

static void fastgen_observe(policy *p, const float *row, int n)
{
    fastgen *f = p->state;
    if (f->profile < 0) {   /* profiling: score the row before it joins S */
        mark_levels(p);
        double by_level[N_PROFILES] = {0};
        for (int i = 0; i < n; i++)
            by_level[f->level[i]] += row[i];
        double cum = 0;
        for (int c = 0; c < N_PROFILES; c++)
            f->mass[c] += (cum += by_level[c]);
        f->rows++;
    }
    for (int i = 0; i < n; i++)
        f->S[i] += row[i];
}

static void fastgen_end_prompt(policy *p)
{
    fastgen *f = p->state;
    f->profile = PROFILE_FULL;
    for (int c = 0; c < PROFILE_FULL && f->rows > 0; c++)
        if (f->mass[c] / f->rows >= p->cfg.recovery) {
            f->profile = c;
            break;
        }
}

static int fastgen_due(const policy *p, int counted, int budget)
{
    (void)counted, (void)budget;
    const fastgen *f = p->state;
    if (f->profile < 0 || f->profile == PROFILE_FULL || p->n == 0)
        return 0;
    mark_levels(p);
    int due = 0;
    for (int i = p->n_pinned; i < p->n; i++)
        due += f->level[i] > f->profile;
    return due;
}

static int fastgen_choose(policy *p, int k, int *out)
{
    const fastgen *f = p->state;
    mark_levels(p);
    int m = 0;
    for (int i = p->n_pinned; i < p->n && m < k; i++)
        if (f->level[i] > f->profile)
            out[m++] = i;
    return m;
}

static void fastgen_remove(policy *p, const int *slots, int k)
{
    fastgen *f = p->state;
    policy_compact(f->S, sizeof *f->S, p->n, slots, k);
}

static void fastgen_destroy(policy *p)
{
    fastgen *f = p->state;
    if (!f)
        return;
    free(f->S), free(f->level), free(f->Sf);
    free(f);
}

const policy_ops policy_fastgen_ops = {
    .name = "fastgen",
    .init = fastgen_init,
    .reserve = fastgen_reserve,
    .append = fastgen_append,
    .observe = fastgen_observe,
    .due = fastgen_due,
    .choose = fastgen_choose,
    .remove = fastgen_remove,
    .end_prompt = fastgen_end_prompt,
    .destroy = fastgen_destroy,
};

const char *policy_profile(const policy *p)
{
    if (p->ops != &policy_fastgen_ops)
        return NULL;
    const fastgen *f = p->state;
    return f->profile < 0 ? NULL : profile_names[f->profile];
}
