/* kv_err.c — error recording; see kv_err.h for the convention. */
#include "kv_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kv_errorf(kv_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int kv_err_prefix(kv_err *err, const char *fmt, ...)
{
    if (!err)
        return KV_OK;
    char head[KV_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    /* Shift the old message right by the head's length, truncating its tail. */
    size_t nh = strlen(head), nm = strlen(err->msg), cap = sizeof err->msg - 1;
    if (nh > cap)
        nh = cap;
    if (nh + nm > cap)
        nm = cap - nh;
    memmove(err->msg + nh, err->msg, nm);
    memcpy(err->msg, head, nh);
    err->msg[nh + nm] = '\0';
    return err->code;
}

const char *kv_err_name(int code)
{
#define KV_ERR_NAME(name, value, exit_status, text) if (code == value) return #name;
    KV_ERROR_MAP(KV_ERR_NAME)
#undef KV_ERR_NAME
    return "KV_E?";
}

const char *kv_err_text(int code)
{
#define KV_ERR_TEXT(name, value, exit_status, text) if (code == value) return text;
    KV_ERROR_MAP(KV_ERR_TEXT)
#undef KV_ERR_TEXT
    return "unknown error";
}

int kv_err_exit_status(int code)
{
#define KV_ERR_EXIT(name, value, exit_status, text) if (code == value) return exit_status;
    KV_ERROR_MAP(KV_ERR_EXIT)
#undef KV_ERR_EXIT
    return 1;
}
