#include "sift/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sift_err_set(sift_err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    if (!fmt) {
        snprintf(e->msg, sizeof e->msg, "%s", sift_err_name(code));
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof e->msg)
        memcpy(e->msg + sizeof e->msg - 4, "...", 4);
    return code;
}

int sift_err_copy(sift_err *dst, const sift_err *src)
{
    if (!src)
        return 0;
    if (dst && dst != src)
        *dst = *src;
    return src->code;
}

void sift_err_clear(sift_err *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}

const char *sift_err_name(int code)
{
    switch (code) {
    case SIFT_OK:
        return "ok";
    case SIFT_ENOMEM:
        return "out_of_memory";
    case SIFT_EINVAL:
        return "invalid_argument";
    case SIFT_ECANCELED:
        return "cancelled";
    case SIFT_ETIMEDOUT:
        return "deadline_exceeded";
    case SIFT_EIO:
        return "io_error";
    case SIFT_EPROTO:
        return "protocol_error";
    case SIFT_ETOOBIG:
        return "too_large";
    case SIFT_ENOTFOUND:
        return "not_found";
    case SIFT_EHTTP:
        return "http_error";
    case SIFT_EBUSY:
        return "busy";
    case SIFT_ESTATE:
        return "bad_state";
    case SIFT_EFAILED:
        return "failed";
    case SIFT_EINTERNAL:
        return "internal";
    case SIFT_ELIMIT:
        return "limit_reached";
    default:
        return "unknown";
    }
}
