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
#include "policy.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>

enum { PROFILE_SPECIAL, PROFILE_PUNCT, PROFILE_FREQUENT, PROFILE_LOCAL, PROFILE_FULL,
       N_PROFILES };
static const char *const profile_names[N_PROFILES] = {"special", "punct", "frequent",
                                                      "local", "full"};

typedef struct fastgen {
    double         recovery;  /* T */
    double         r_f, r_l;  /* frequent and local fractions of the length */
    double        *S;         /* (slot) accumulated attention */
    unsigned char *level;     /* (slot, scratch) the first profile keeping the slot */
    float         *Sf;        /* (slot, scratch) S as float, for the frequent set */
    double         mass[N_PROFILES];  /* Σ over prompt rows of the recovered mass */
    int            rows;      /* prompt rows scored */
    int            profile;   /* chosen at the end of the prompt; -1 before */
} fastgen;

static const policy_param fastgen_params[] = {
    {"recovery", POLICY_PARAM_REAL, offsetof(fastgen, recovery), "0.95", 0, 1, NULL,
     "fastgen: attention mass T a profile must recover"},
    {"r-f", POLICY_PARAM_REAL, offsetof(fastgen, r_f), "0.3", 0, 1, NULL,
     "fastgen: frequent tokens kept, fraction of the length"},
    {"r-l", POLICY_PARAM_REAL, offsetof(fastgen, r_l), "0.3", 0, 1, NULL,
     "fastgen: local window, fraction of the length"},
    {0},
};

static const policy_column fastgen_columns[] = {
    POLICY_COLUMN(fastgen, S), POLICY_SCRATCH(fastgen, level), POLICY_SCRATCH(fastgen, Sf),
    {0},
};

static int fastgen_init(policy *p, kv_err *err)
{
    fastgen *f = policy_state(p);
    const policy_config *c = policy_config_of(p);
    if (policy_config_is_set(c, "phase") && c->phase != POLICY_PHASE_STREAM)
        return kv_errorf(err, KV_EUSAGE, "fastgen profiles the prompt then applies its "
                         "profile: phase must be stream");
    f->profile = -1;
    return KV_OK;
}

static void fastgen_append(policy *p, int slot, const policy_vectors *v)
{
    (void)v;
    ((fastgen *)policy_state(p))->S[slot] = 0;
}

/* level[i] = the cheapest profile that keeps slot i at the current step. */
static void mark_levels(const policy *p)
{
    const fastgen *f = policy_state(p);
    const policy_entry *entries = policy_entries(p);
    int n = policy_size(p), len = policy_seen(p), t = entries[n - 1].position;
    int n_freq = (int)floor(f->r_f * len);
    /* frequent: the n_freq largest S, ties to the newer */
    for (int i = 0; i < n; i++) {
        f->Sf[i] = (float)f->S[i];
        f->level[i] = 1;   /* a candidate of protect_top */
    }
    policy_protect_top(p, f->Sf, f->level, n_freq);
    for (int i = 0; i < n; i++)
        f->level[i] = f->level[i] ? PROFILE_FULL : PROFILE_FREQUENT;
    for (int i = 0; i < n; i++) {
        const policy_entry *e = &entries[i];
        unsigned char *lv = &f->level[i];
        if (*lv > PROFILE_LOCAL && t - e->position <= f->r_l * len)
            *lv = PROFILE_LOCAL;
        if (e->flags & POLICY_FLAG_PUNCT)
            *lv = PROFILE_PUNCT;
        if ((e->flags & POLICY_FLAG_SPECIAL) || i == n - 1)
            *lv = PROFILE_SPECIAL;
    }
}

static void fastgen_observe(policy *p, const float *row, int n)
{
    fastgen *f = policy_state(p);
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
    fastgen *f = policy_state(p);
    f->profile = PROFILE_FULL;
    for (int c = 0; c < PROFILE_FULL && f->rows > 0; c++)
        if (f->mass[c] / f->rows >= f->recovery) {
            f->profile = c;
            break;
        }
}

static int fastgen_due(const policy *p, int counted, int budget)
{
    (void)counted, (void)budget;
    const fastgen *f = policy_state(p);
    if (f->profile < 0 || f->profile == PROFILE_FULL || policy_size(p) == 0)
        return 0;
    mark_levels(p);
    int due = 0;
    for (int i = policy_pinned(p); i < policy_size(p); i++)
        due += f->level[i] > f->profile;
    return due;
}

static int fastgen_choose(policy *p, int k, int *out)
{
    const fastgen *f = policy_state(p);
    mark_levels(p);
    int m = 0;
    for (int i = policy_pinned(p); i < policy_size(p) && m < k; i++)
        if (f->level[i] > f->profile)
            out[m++] = i;
    return m;
}

static void fastgen_describe(const policy *p, char *buf, size_t len)
{
    const fastgen *f = policy_state(p);
    if (f->profile >= 0)
        snprintf(buf, len, "profile=%s recovered=%.4f", profile_names[f->profile],
                 f->rows ? f->mass[f->profile] / f->rows : 1.0);
}

const policy_def policy_fastgen = {
    .name = "fastgen",
    .summary = "per-head profile on the prompt: cheapest of special/punct/frequent/local/full "
               "recovering >= T",
    .provenance = "FastGen (ICLR 2024)",
    .params = fastgen_params,
    .columns = fastgen_columns,
    .defaults = "",
    .scope_of = POLICY_SCOPE_OF_KV_HEAD,
    .flags = POLICY_SIZES_ITSELF,
    .state_size = sizeof(fastgen),
    .ops = {.init = fastgen_init, .append = fastgen_append, .observe = fastgen_observe,
            .due = fastgen_due, .choose = fastgen_choose, .end_prompt = fastgen_end_prompt,
            .describe = fastgen_describe},
};
