/* A growable byte buffer with an optional size limit.
 *
 * The contents are always followed by a NUL byte (not counted in len), so a
 * buffer of text can be passed where a C string is expected. */
#ifndef SIFT_BUF_H
#define SIFT_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct sift_buf {
    char *data;   /* NULL until the first append */
    size_t len;   /* bytes in use */
    size_t cap;   /* bytes allocated (including room for the NUL) */
    size_t limit; /* most bytes the buffer may hold; 0 = no limit */
} sift_buf;

/* An empty buffer that refuses to grow past `limit` bytes (0: no limit).
 * Initialisation allocates nothing. */
void sift_buf_init(sift_buf *b, size_t limit);

/* Releases the memory and leaves an empty buffer with the same limit. */
void sift_buf_free(sift_buf *b);

/* Empties the buffer, keeping its memory. */
void sift_buf_reset(sift_buf *b);

/* Makes room for `extra` more bytes. SIFT_ETOOBIG past the limit (the buffer is
 * unchanged), SIFT_ENOMEM when out of memory. */
int sift_buf_reserve(sift_buf *b, size_t extra);

/* Appends bytes; same errors as sift_buf_reserve, and nothing is appended on
 * error. The bytes may come from the buffer itself. */
int sift_buf_append(sift_buf *b, const void *p, size_t n);
int sift_buf_puts(sift_buf *b, const char *s);
int sift_buf_putc(sift_buf *b, char c);
int sift_buf_printf(sift_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sift_buf_vprintf(sift_buf *b, const char *fmt, va_list ap);

/* Appends `s` (n bytes) as the inside of a JSON string: quotes, backslashes and
 * control characters escaped; the surrounding quotes are not added. Invalid
 * UTF-8 bytes are replaced by U+FFFD so the output is always valid JSON. */
int sift_buf_json_escape(sift_buf *b, const char *s, size_t n);

/* Appends a JSON string: `s` (n bytes) escaped as sift_buf_json_escape does,
 * between quotes; `null` when s is NULL. All or nothing. */
int sift_buf_json_string(sift_buf *b, const char *s, size_t n);

/* Removes the first n bytes (all of them if n >= len). */
void sift_buf_consume(sift_buf *b, size_t n);

/* Hands the contents to the caller (free with sift_free) and leaves the buffer
 * empty. Returns "" allocated fresh when the buffer was empty, NULL when out
 * of memory. */
char *sift_buf_detach(sift_buf *b, size_t *len);

#endif
