/*
 * confirm_ppl.c — `kvsim confirm ppl MODEL TEXT`: teacher-forced perplexity and
 * next-token accuracy of TEXT under a fixed KV cache per configuration (the
 * StreamingLLM experiment; confirm/perplexity.h).  `full` runs once, without a budget.
 */
#include "confirm.h"

#include "perplexity.h"

#include <math.h>
#include <stdio.h>

static const char *const COLS[] = {"tokens", "ppl", "accuracy", "tail_tokens", "ppl_tail",
                                   "accuracy_tail", "mean_cache", "kv_bytes_peak",
                                   "tokens_per_s"};
enum { C_TOKENS, C_PPL, C_ACC, C_TAIL, C_PPL_TAIL, C_ACC_TAIL, C_CACHE, C_BYTES, C_TPS, N_COLS };

typedef struct ppl_run {
    session *s;
    int      n;           /* tokens scored */
    int      reposition;
} ppl_run;

static int measure(void *ctx, const replay_config *c, int i, double *v, char *note,
                   size_t len, kv_err *err)
{
    (void)i;
    const ppl_run *p = ctx;
    perplexity_result r;
    int rc = perplexity_run(p->s->model, p->s->tok, p->s->prompt.ids, p->n, &c->policy,
                            p->reposition, &r, err);
    if (rc != KV_OK)
        return rc;
    const live_stats *s = &r.stats;
    v[C_TOKENS] = (double)r.tokens;
    v[C_PPL] = exp(r.nll / r.tokens);
    v[C_ACC] = (double)r.correct / r.tokens;
    v[C_TAIL] = (double)r.tail_tokens;
    v[C_PPL_TAIL] = r.tail_tokens ? exp(r.tail_nll / r.tail_tokens) : NAN;
    v[C_ACC_TAIL] = r.tail_tokens ? (double)r.tail_correct / r.tail_tokens : NAN;
    v[C_CACHE] = s->steps ? s->attended_sum / s->steps : NAN;
    v[C_BYTES] = (double)s->kv_bytes_peak;
    v[C_TPS] = r.seconds > 0 ? s->steps / r.seconds : NAN;
    snprintf(note, len, "ppl %.3f, accuracy %.3f (%.1f s)", v[C_PPL], v[C_ACC], r.seconds);
    return KV_OK;
}

int confirm_ppl(const confirm_request *r, const confirm_ppl_options *o, kv_err *err)
{
    static const confirm_experiment e = {"ppl", COLS, N_COLS, 1, 0, measure};
    session s = {0};
    confirm_table t = {0};
    int rc = confirm_open_text(&s, r, err);
    ppl_run p = {&s, (int)s.prompt.n < o->max_tokens ? (int)s.prompt.n : o->max_tokens,
                 r->reposition};
    if (rc == KV_OK && p.n < 2)
        rc = kv_errorf(err, KV_ERANGE, "%s: %d tokens, expected at least 2", r->input, p.n);
    if (rc == KV_OK) {
        const int prompt = o->prompt_tokens < p.n ? o->prompt_tokens : p.n - 1;
        rc = confirm_run(&e, r, p.n, prompt, &p, &t, err);
    }
    if (rc >= 0)
        rc = confirm_table_write(&t, r, r->input, err);
    confirm_table_free(&t);
    session_close(&s);
    return rc;
}
