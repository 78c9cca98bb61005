/*
 * live.h — live eviction: the policies of policies/ drive a real, shrinking KV cache
 * inside model_forward(), seeing the real attention rows over the kept entries.
 *
 * Like the replay engine (sim/replay.c), it drives each layer's streams with
 * policy_layer_step (policies/policy.h), so replayed and live runs step alike
 * (docs/CONFIRM.md).  Invariants (tests/test_live.c names each one it checks):
 *
 *  (1) Streams.  policy_layer_new's: one per (layer, KV head) at `kv-head` scope, one
 *      per layer at `layer` scope (its kept slots are removed from every KV head of
 *      the layer), with the ids replay gives them.  `query-head` scope would need a
 *      cache per query head and is refused, as is a policy that needs the future.
 *  (2) Step order: policy.h (2), written once in policies/policy_layer.c.  The driver
 *      gives the G (or H) real rows of query t over the kept slots, own entry last,
 *      and the token's keys and values when a policy reads them; the slots a stream
 *      evicts are removed from the cache by kv_cache_remove(), which compacts like
 *      policy_compact(), so policy slots and cache slots stay aligned.
 *  (3) Rows.  The attn_row hook copies each (token, layer, query head) row into a
 *      buffer (distinct heads write distinct places: no lock); the policies see them
 *      once model_forward() returns.  Evicting after the whole forward of token t
 *      equals evicting layer by layer inside it: layer l's stream is read only by
 *      layer l, and token t + 1 has not started.
 *  (4) Chunks.  A forward carries several tokens only while no stream can evict
 *      within them (live_chunk(), from policy_layer_quiet()): the prompt of the
 *      oneshot and decode phases, streams still within their budget, and `full`.  Otherwise tokens go one at a
 *      time, so query t attends to exactly the B + 1 .. B + s entries of the step
 *      order.  `full` runs without hooks: the same forward calls as `kvtrace run`.
 *  (5) Positions.  By default keys keep the RoPE rotation of their original position
 *      (kv_cache.h (3)) and token t takes position t whatever was evicted.  With
 *      live_set_reposition() (StreamingLLM): after every eviction the kept keys of the
 *      stream are re-rotated to positions 0..n-1 in slot order
 *      (model_cache_reposition), and a new token's key and query take position n, the
 *      entries its stream held before it joined.  Positions are per stream, so the KV
 *      heads of a layer may differ (adakv).  Policies still see original positions
 *      (recency, ties, sinks), and with no eviction both modes give the same tokens.
 *  (6) Accounting.  KV bytes are kv_cache_bytes(), the allocator's own count; the
 *      cache is reserved for B + s entries per stream (the whole sequence when the
 *      policy may hold it), so the bytes follow the budget.  When the prompt has been
 *      fed, a cache reserved for the whole sequence is fitted (kv_cache_fit) to what
 *      each stream kept plus the tokens still to come, or its layer's capacity when
 *      smaller (a per-layer budget: the whole-sequence reserve was another layer's):
 *      a one-shot compression frees the prompt it compressed.  kv_bytes_peak counts from then on (the cache a
 *      run holds); kv_bytes_prefill is the largest while the prompt was fed.
 *
 * Memory on top of the model and cache: the row buffer, 4 · chunk · L · H · n_max
 * bytes (n_max: the largest stream during a chunk), and O(n) per stream in policies.
 */
#ifndef LIVE_H
#define LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"
#include "model.h"
#include "policy.h"
#include "sampler.h"
#include "tokenizer.h"

#define LIVE_CHUNK 64   /* most tokens per forward when no stream can evict */

typedef struct live live;   /* opaque */

/* What a run kept and spent, sampled at every step after eviction. */
typedef struct live_stats {
    long   steps;           /* tokens fed */
    double attended_sum;    /* Σ_t mean over streams of the entries query t attended */
    double kept_final;      /* mean entries per stream now */
    long   evicted;         /* entries evicted, summed over streams */
    long   evictions;       /* eviction rounds (a stream dropping a block), summed */
    double policy_s;        /* wall seconds in the policies' steps (scores, selection) */
    size_t kv_bytes;        /* kv_cache_bytes() now */
    size_t kv_bytes_peak;   /* its largest value once the prompt was fed (6) */
    size_t kv_bytes_prefill;/* its largest value while the prompt was fed, before (6) */
    size_t row_bytes;       /* the row buffer's size */
} live_stats;

/* A driver for model m under cfg.  cfg's budget must be resolved (a fraction against
 * prompt + max new tokens: policy_config_resolve) and cfg->prompt_len set; seq_len is
 * the longest sequence the run will feed (for the cache reserve and the budget
 * check).  `tok` (may be NULL) gives the token flags policies read.  NULL and err:
 * KV_EUSAGE for a refused policy or scope (1), KV_ERANGE for a budget above the
 * model's context or a sequence longer than it, KV_ENOMEM. */
live *live_new(model *m, const tokenizer *tok, const policy_config *cfg, int seq_len,
               kv_err *err);
void  live_free(live *lv);   /* NULL does nothing */

/* (5) Re-rotate kept keys to contiguous positions after every eviction (on = 1), or
 * keep original positions (0, the default).  Before the first live_feed(); KV_EUSAGE
 * after it. */
int   live_set_reposition(live *lv, int on, kv_err *err);

/* (4) How many of the next `want` tokens may go in one live_feed() call (>= 1). */
int   live_chunk(const live *lv, int want);

/* Feed n tokens (n <= live_chunk(lv, n)) at the next positions: forward, observe,
 * end the prompt when its last token passes, evict when due.  `which`/`logits` as
 * model_forward().  0 or a KV_E* code with err. */
int   live_feed(live *lv, const int32_t *tokens, int n, model_logits which, float *logits,
                kv_err *err);

void              live_get_stats(const live *lv, live_stats *out);
const kv_cache   *live_cache(const live *lv);    /* borrowed */
int               live_streams(const live *lv);  /* policies driven */
/* The policy of (layer, KV head) (KV head ignored at layer scope); NULL for `full`. */
const policy     *live_policy(const live *lv, int layer, int kv_head);

/* ---- generation ------------------------------------------------------------------ */

typedef void (*live_token_fn)(void *ctx, int32_t id);

typedef struct live_output {
    int32_t   *tokens;        /* (n,) generated ids, stop token excluded; malloc'd */
    int        n;
    double     ttft_s;        /* prompt fed to first-token logits */
    double     decode_s;      /* the decode loop */
    live_stats stats;
} live_output;

/* Feed the prompt (cfg.prompt_len tokens given to live_new), then sample up to max_new
 * tokens, stopping at the model's end-of-sequence or end-of-turn token or the end of
 * the context.  on_token (may be NULL) sees each token as it comes.  0 or a KV_E*
 * code; out->tokens is owned by the caller (live_output_free) in both cases. */
int  live_generate(live *lv, sampler *smp, const int32_t *prompt, int n_prompt, int max_new,
                   live_token_fn on_token, void *ctx, live_output *out, kv_err *err);
void live_output_free(live_output *out);   /* frees tokens; NULL does nothing */

/* ---- one compressed context, several questions ------------------------------------ */

/* Feed n tokens in the chunks live_generate would (the context, no sampling). */
int  live_prefill(live *lv, const int32_t *tokens, int n, kv_err *err);
/* Remember this point (after the context) to come back to: 1 when every layer is
 * settled (policy_layer_settled: a oneshot policy that compressed and will never evict
 * again, so what joins later has no say), 0 when a rewind could not equal a fresh
 * prefill (then prefill again).  Not with --reposition. */
int  live_mark(live *lv);
/* Back to the mark: the cache and every stream forget what joined since (positions >=
 * the mark's), the statistics are the mark's.  KV_EUSAGE without a mark. */
int  live_rewind(live *lv, kv_err *err);

#endif /* LIVE_H */
