/* trace_h5.c — HDF5 helpers shared by the trace writer and reader; see trace_h5.h. */
#include "trace_h5.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the library ---- */

/* No HDF5 exit handler.  A file whose close failed (its last flush hit a full disk)
 * stays in HDF5's table of open files, and 1.10.8's exit handler then closes it again
 * and crashes in H5F__close_cb, or prints "infinite loop closing library": the process
 * that had already reported the error cleanly would die of SIGSEGV.  Every trace is
 * closed explicitly (trace_writer_close / _abort, trace_close), so the handler has
 * nothing to do for a good file.  It must be switched off before any other HDF5 call,
 * hence a constructor: this object is linked into every program that uses HDF5. */
__attribute__((constructor)) static void no_exit_handler(void) { H5dont_atexit(); }

/* ---------------------------------------------------------------- types ---------- */

hid_t trace__f16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0)
        return t;
    /* Order matters: shrink the fields before the precision and size. */
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_ebias(t, 15) < 0 || H5Tset_size(t, 2) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

hid_t trace__dtype_type(trace_dtype dtype)
{
    return dtype == TRACE_F16 ? trace__f16_type() : H5Tcopy(H5T_IEEE_F32LE);
}

size_t trace_dtype_size(trace_dtype dtype) { return dtype == TRACE_F16 ? 2 : 4; }

const char *trace_dtype_name(trace_dtype dtype) { return dtype == TRACE_F16 ? "f16" : "f32"; }

/* ---------------------------------------------------------------- compression ---- */

int trace_compression_parse(const char *text, trace_compression *out, kv_err *err)
{
    const char *s = text ? text : "deflate:1";
    if (!strcmp(s, "none")) {
        *out = (trace_compression){TRACE_CODEC_NONE, 0};
        return KV_OK;
    }
    if (!strcmp(s, "lz4")) {
        *out = (trace_compression){TRACE_CODEC_LZ4, 0};
        return KV_OK;
    }
    if (!strcmp(s, "deflate")) {
        *out = (trace_compression){TRACE_CODEC_DEFLATE, 1};
        return KV_OK;
    }
    if (!strncmp(s, "deflate:", 8) && s[8] >= '1' && s[8] <= '9' && s[9] == '\0') {
        *out = (trace_compression){TRACE_CODEC_DEFLATE, s[8] - '0'};
        return KV_OK;
    }
    return kv_errorf(err, KV_EUSAGE,
                     "compression '%s': expected none, deflate, deflate:N (N = 1..9) or lz4",
                     s);
}

const char *trace_compression_name(trace_compression c, char *buf, size_t size)
{
    if (c.codec == TRACE_CODEC_DEFLATE)
        snprintf(buf, size, "deflate:%d", c.level);
    else
        snprintf(buf, size, "%s", c.codec == TRACE_CODEC_LZ4 ? "lz4" : "none");
    return buf;
}

/* ---------------------------------------------------------------- errors --------- */

void trace__h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

hid_t trace__h5_save_errors(void) { return H5Eget_current_stack(); }

void trace__h5_restore_errors(hid_t saved)
{
    if (saved >= 0)
        H5Eset_current_stack(saved);
}

/* The innermost entry of the stack is the one that knows the system's reason. */
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *ctx)
{
    if (n == 0 && e->desc)
        snprintf(ctx, KV_ERR_MSG_MAX, "%s", e->desc);
    return 0;
}

/* "…, errno = 28, error message = 'No space left on device', …" -> the quoted part. */
void trace__h5_reason(char *buf, size_t size)
{
    char desc[KV_ERR_MSG_MAX] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, desc);
    const char *key = "error message = '", *p = strstr(desc, key);
    if (p) {
        p += strlen(key);
        const char *q = strchr(p, '\'');
        snprintf(buf, size, "%.*s", (int)(q ? q - p : (long)strlen(p)), p);
    } else {
        snprintf(buf, size, "%s", desc);
    }
}

int trace__h5_fail(kv_err *err, int code, const char *fmt, ...)
{
    char head[KV_ERR_MSG_MAX], reason[KV_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    trace__h5_reason(reason, sizeof reason);
    H5Eclear2(H5E_DEFAULT);
    if (reason[0])
        return kv_errorf(err, code, "%s: %s", head, reason);
    return kv_errorf(err, code, "%s", head);
}

/* ---------------------------------------------------------------- attributes ----- */

static int attr_put(hid_t obj, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space < 0 ? -1 : H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a < 0 || H5Awrite(a, type, value) < 0) ? -1 : 0;
    if (a >= 0)
        H5Aclose(a);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

int trace__attr_put_str(hid_t obj, const char *name, const char *value)
{
    const char *v = value ? value : "";
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return -1;
    H5Tset_size(t, strlen(v) + 1);   /* NUL-terminated: h5py reads it as bytes */
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_put(obj, name, t, v);
    H5Tclose(t);
    return rc;
}

int trace__attr_put_i64(hid_t obj, const char *name, int64_t value)
{
    return attr_put(obj, name, H5T_STD_I64LE, &value);
}

int trace__attr_put_u64(hid_t obj, const char *name, uint64_t value)
{
    return attr_put(obj, name, H5T_STD_U64LE, &value);
}

int trace__attr_put_f64(hid_t obj, const char *name, double value)
{
    return attr_put(obj, name, H5T_IEEE_F64LE, &value);
}

/* Open attribute `name` if it exists, is a single value, and is of `cls`. */
static int attr_open(hid_t obj, const char *name, H5T_class_t cls, hid_t *out)
{
    if (H5Aexists(obj, name) <= 0)
        return KV_ENOTFOUND;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return KV_EFORMAT;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    hssize_t n = s < 0 ? -1 : H5Sget_simple_extent_npoints(s);
    int ok = n == 1 && (c == cls || (cls == H5T_FLOAT && c == H5T_INTEGER));
    if (t >= 0)
        H5Tclose(t);
    if (s >= 0)
        H5Sclose(s);
    if (!ok) {
        H5Aclose(a);
        return KV_EFORMAT;
    }
    *out = a;
    return KV_OK;
}

static int attr_get(hid_t obj, const char *name, H5T_class_t cls, hid_t mem, void *out)
{
    hid_t a;
    int rc = attr_open(obj, name, cls, &a);
    if (rc < 0)
        return rc;
    rc = H5Aread(a, mem, out) < 0 ? KV_EFORMAT : KV_OK;
    H5Aclose(a);
    return rc;
}

int trace__attr_get_i64(hid_t obj, const char *name, int64_t *out)
{
    return attr_get(obj, name, H5T_INTEGER, H5T_NATIVE_INT64, out);
}

int trace__attr_get_u64(hid_t obj, const char *name, uint64_t *out)
{
    return attr_get(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, out);
}

int trace__attr_get_f64(hid_t obj, const char *name, double *out)
{
    return attr_get(obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, out);
}

/* Fixed-length strings only: a variable-length one would make HDF5 read the global
 * heap, which it cannot do safely when the file is damaged. */
int trace__attr_get_str(hid_t obj, const char *name, char **out)
{
    hid_t a;
    int rc = attr_open(obj, name, H5T_STRING, &a);
    if (rc < 0)
        return rc;
    hid_t ft = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    size_t size = H5Tget_size(ft);
    *out = NULL;
    if (H5Tis_variable_str(ft) == 0 && size < (1u << 20) && (*out = calloc(1, size + 1))) {
        H5Tset_size(mt, size + 1);
        H5Tset_cset(mt, H5Tget_cset(ft));
        if (H5Aread(a, mt, *out) < 0) {
            free(*out);
            *out = NULL;
        }
    }
    H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(a);
    return *out ? KV_OK : KV_EFORMAT;
}
