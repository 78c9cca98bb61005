/*
 * trace_h5.h — HDF5 helpers shared by the trace writer and reader (internal to
 * trace/): the IEEE-half type, attributes, and turning HDF5's error stack into a
 * kv_err.  Every hid_t returned is owned by the caller, who closes it.
 */
#ifndef TRACE_H5_H
#define TRACE_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "trace_file.h"

/* IEEE binary16 as an HDF5 float type: exactly what h5py writes for '<f2', so h5py
 * reads it back as numpy.float16.  Used as file AND memory type: HDF5 1.10 converts
 * floats ~14x slower than common/fp16.h, so conversion is ours. */
hid_t trace__f16_type(void);
hid_t trace__dtype_type(trace_dtype dtype);     /* f16 custom or IEEE f32 LE */

/* Stop HDF5 printing its error stack on this thread: we report through kv_err. */
void trace__h5_quiet(void);
/* Any HDF5 call clears the error stack, cleanup included: keep the stack of a
 * failed call across the cleanup with save (clears it) and restore (consumes it). */
hid_t trace__h5_save_errors(void);
void  trace__h5_restore_errors(hid_t saved);
/* Record `code` with the formatted message, followed by ": " and the innermost
 * message of the current HDF5 error stack when there is one. */
int  trace__h5_fail(kv_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The innermost message of the current HDF5 error stack (the system's reason when
 * there is one) into buf; "" when the stack is empty.  Leaves the stack as it is. */
void trace__h5_reason(char *buf, size_t size);

/* Strings are written fixed-length (stored in the object header, not HDF5's global
 * heap, whose damaged bytes crash libhdf5 1.10 before we could check them). */
int trace__attr_put_str(hid_t obj, const char *name, const char *value);
int trace__attr_put_i64(hid_t obj, const char *name, int64_t value);
int trace__attr_put_u64(hid_t obj, const char *name, uint64_t value);
int trace__attr_put_f64(hid_t obj, const char *name, double value);

/* Readers: 0, or KV_ENOTFOUND when absent, KV_EFORMAT when of the wrong class.
 * *out of get_str is malloc'ed UTF-8 (the caller frees); a variable-length string
 * is KV_EFORMAT, never read (its bytes are in the global heap, see above). */
int trace__attr_get_str(hid_t obj, const char *name, char **out);
int trace__attr_get_i64(hid_t obj, const char *name, int64_t *out);
int trace__attr_get_u64(hid_t obj, const char *name, uint64_t *out);
int trace__attr_get_f64(hid_t obj, const char *name, double *out);

/* Dataset names, one place. */
#define TRACE_DS_PROMPT     "prompt"
#define TRACE_DS_LAYERS     "layers"
#define TRACE_DS_HEADS      "heads"
#define TRACE_DS_KV_HEADS   "kv_heads"
#define TRACE_DS_WINDOW     "attn/window"
#define TRACE_DS_ROW_LAYERS "attn/row_layers"
#define TRACE_DS_ROW_HEADS  "attn/row_heads"
#define TRACE_DS_PROBS      "attn/probs"
#define TRACE_DS_KEYS       "kv/keys"
#define TRACE_DS_VALUES     "kv/values"
#define TRACE_DS_QUERIES    "kv/queries"
#define TRACE_DS_ID         "tokens/id"
#define TRACE_DS_TEXT       "tokens/text"          /* format 1: variable-length */
#define TRACE_DS_TEXT_BYTES "tokens/text_bytes"
#define TRACE_DS_TEXT_END   "tokens/text_end"
#define TRACE_DS_FLAGS      "tokens/flags"
#define TRACE_DS_PHASE      "tokens/phase"
#define TRACE_DS_POSITION   "tokens/position"
#define TRACE_DS_LOGPROB    "tokens/logprob_next"
#define TRACE_DS_ENTROPY    "tokens/entropy_next"
#define TRACE_DS_COMPLETE   "status/complete"
#define TRACE_DS_STEPS      "status/steps"

#define TRACE_LZ4_FILTER    32004
#define TRACE_TOKEN_CHUNK   1024    /* rows per chunk of the /tokens datasets */

#endif /* TRACE_H5_H */
