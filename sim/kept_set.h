/*
 * kept_set.h — which positions each stream holds at the end of a replay, and what the
 * policy says of each stream (policy_describe: fastgen's chosen profile and the mass
 * it recovered), for comparing kept sets between tools (#18 item 9).
 *
 * It is a replay observer (replay_plan.observe): it keeps C_t of the last step of one
 * configuration, the entries the last query attended (after a one-shot compression,
 * the kept prompt and the tokens generated since).  Layers run on different threads;
 * each writes only its own layer's slots, so nothing is locked.
 *
 *   --kept FILE      layer,kv_head,position            one line per kept entry
 *   --streams FILE   layer,kv_head,kept[,KEY...]        one line per stream; KEY are the
 *                    keys of the policy's description ("profile=local recovered=0.97")
 */
#ifndef KEPT_SET_H
#define KEPT_SET_H

#include "replay.h"

typedef struct kept_set kept_set;   /* opaque */

/* A recorder of configuration `config` of a plan over src (which it borrows). */
kept_set *kept_set_new(const replay_source *src, int config, kv_err *err);
void      kept_set_free(kept_set *k);   /* NULL does nothing */

/* The replay_observe_fn; ctx is the kept_set. */
void kept_set_observe(void *ctx, const replay_attended *a);

/* One stream's end state, as the live driver hands it over (kvtrace generate). */
int kept_set_put(kept_set *k, int li, int ki, const policy_entry *kept, int n,
                 const char *description, kv_err *err);
/* An empty recorder of L layers x K KV heads (model numbering: layer li, KV head ki). */
kept_set *kept_set_new_shape(int L, int K, kv_err *err);

/* Entries stream (li, ki) held (-1 when never seen) and its description (borrowed,
 * "" when none); li, ki index the recorder's layers and KV heads. */
int kept_set_count(const kept_set *k, int li, int ki, const char **description);
int kept_set_layers(const kept_set *k);
int kept_set_kv_heads(const kept_set *k);

/* Write either file (NULL: not wanted) by the output rule.  0 or KV_EIO. */
int kept_set_write(const kept_set *k, const char *kept_csv, const char *streams_csv,
                   kv_err *err);

#endif /* KEPT_SET_H */
