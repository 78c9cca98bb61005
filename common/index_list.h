/*
 * index_list.h — "0,4,8-11": the layer and head selections of kvtrace and kvsim.
 */
#ifndef INDEX_LIST_H
#define INDEX_LIST_H

#include "kv_err.h"

/* Parse `text` (numbers and inclusive ranges, comma-separated) into on[0..n):
 * on[i] = 1 for every i named, 0 otherwise; NULL text selects all n.  A number >= n
 * and a malformed list are KV_EUSAGE ("--layers: 31 is out of range 0..29");
 * `what` names the option in messages.  Returns how many are selected, or the error. */
int index_list_parse(const char *text, int n, unsigned char *on, const char *what,
                     kv_err *err);

#endif
