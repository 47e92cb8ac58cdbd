/* Error codes and error details.
 *
 * Every fallible sift function returns 0 or a negative SIFT_E... code. Where a
 * caller needs to know why, it passes a sift_err, which holds the code and a
 * message written for the person who has to act on it ("location: must be one
 * of HAN, DAD, SGN"), not for the programmer who wrote the call. */
#ifndef SIFT_ERR_H
#define SIFT_ERR_H

#include <stddef.h>

enum {
    SIFT_OK = 0,
    SIFT_ENOMEM = -1,     /* allocation failed */
    SIFT_EINVAL = -2,     /* bad argument or bad input */
    SIFT_ECANCELED = -3,  /* cancelled by the caller, or the client went away */
    SIFT_ETIMEDOUT = -4,  /* a deadline or timeout expired */
    SIFT_EIO = -5,        /* I/O or connection failure */
    SIFT_EPROTO = -6,     /* the peer sent something malformed */
    SIFT_ETOOBIG = -7,    /* input over a size limit */
    SIFT_ENOTFOUND = -8,  /* no such thing */
    SIFT_EHTTP = -9,      /* the peer answered with an HTTP error status */
    SIFT_EBUSY = -10,     /* over capacity; try again later */
    SIFT_ESTATE = -11,    /* call not valid in the object's current state */
    SIFT_EFAILED = -12,   /* cancelled because a sibling task failed */
    SIFT_EINTERNAL = -13, /* a bug: an invariant did not hold */
    SIFT_ELIMIT = -14,    /* a run limit was reached (steps, repeated calls) */
};

/* Longest message kept in a sift_err, including the terminating NUL. */
#define SIFT_ERR_MSG_MAX 256

/* An error code with a message a user can act on. Zero-initialise it. */
typedef struct sift_err {
    int code;
    char msg[SIFT_ERR_MSG_MAX];
} sift_err;

/* Records `code` and a printf-style message in `e` (which may be NULL) and
 * returns `code`, so callers can write `return sift_err_set(e, ...)`. A message
 * longer than the buffer is truncated with "...". */
int sift_err_set(sift_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copies src into dst (either may be NULL) and returns src's code. */
int sift_err_copy(sift_err *dst, const sift_err *src);

/* Resets `e` to "no error". */
void sift_err_clear(sift_err *e);

/* A short stable name for a code, used in logs, metrics and API errors:
 * "ok", "out_of_memory", "invalid_argument", "cancelled", "deadline_exceeded",
 * "io_error", "protocol_error", "too_large", "not_found", "http_error",
 * "busy", "bad_state", "failed", "internal", "limit_reached", or "unknown". */
const char *sift_err_name(int code);

#endif
