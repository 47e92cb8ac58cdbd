#include "sift/buf.h"
#include "sift/arena.h"
#include "sift/err.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

void sift_buf_init(sift_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
}

void sift_buf_free(sift_buf *b)
{
    sift_free(b->data);
    sift_buf_init(b, b->limit);
}

void sift_buf_reset(sift_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int sift_buf_reserve(sift_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return SIFT_ETOOBIG;
    size_t need = b->len + extra;
    if (b->limit && need > b->limit)
        return SIFT_ETOOBIG;
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1)
        cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
    char *p = sift_realloc(b->data, cap);
    if (!p)
        return SIFT_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sift_buf_append(sift_buf *b, const void *p, size_t n)
{
    /* Room already (the common case: ~800 appends per seed run): no
     * reserve, and no realloc that could move bytes taken from b itself. */
    if (b->data && n < b->cap - b->len &&
        (!b->limit || (b->len <= b->limit && n <= b->limit - b->len))) {
        memmove(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    /* bytes from the buffer itself stay valid across the realloc */
    const char *src = p;
    int inside = b->data && src >= b->data && src < b->data + b->cap;
    size_t off = inside ? (size_t)(src - b->data) : 0;
    int rc = sift_buf_reserve(b, n);
    if (rc)
        return rc;
    if (inside)
        p = b->data + off;
    if (!b->data) /* reserve always allocates; this keeps the analyzer sure of it */
        return SIFT_ENOMEM;
    if (n)
        memmove(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int sift_buf_puts(sift_buf *b, const char *s)
{
    return sift_buf_append(b, s, strlen(s));
}

int sift_buf_putc(sift_buf *b, char c)
{
    return sift_buf_append(b, &c, 1);
}

int sift_buf_vprintf(sift_buf *b, const char *fmt, va_list ap)
{
    /* One pass when the text fits in the room already allocated (the usual
     * case: event JSON is printed into reused buffers); a second only when
     * it did not. */
    size_t room = b->data ? b->cap - b->len : 0;
    va_list ap2;
    va_copy(ap2, ap);
    int n = room ? vsnprintf(b->data + b->len, room, fmt, ap2) : vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    int rc = n < 0 ? SIFT_EINVAL : 0;
    if (!rc && (size_t)n < room) {
        if (!b->limit || b->len + (size_t)n <= b->limit) {
            b->len += (size_t)n;
            return 0;
        }
        rc = SIFT_ETOOBIG;
    }
    if (!rc)
        rc = sift_buf_reserve(b, (size_t)n);
    if (rc) {
        if (b->data) /* the failed pass may have written past len */
            b->data[b->len] = '\0';
        return rc;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sift_buf_printf(sift_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sift_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int sift_buf_json_escape(sift_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t start_len = b->len;
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        /* copy the longest run that needs no escaping in one append */
        size_t j = i;
#ifdef __SSE2__
        /* 16 bytes at a time: as signed bytes, control characters and
         * non-ASCII are both below 0x20 (model request bodies run to KBs) */
        const __m128i sp = _mm_set1_epi8(0x20), q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
        while (n - j >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + j));
            __m128i hit = _mm_or_si128(_mm_cmplt_epi8(v, sp),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));
            unsigned mask = (unsigned)_mm_movemask_epi8(hit);
            if (mask) {
                j += (size_t)__builtin_ctz(mask);
                break;
            }
            j += 16;
        }
#endif
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
            j++;
        if (j > i && (rc = sift_buf_append(b, p + i, j - i)))
            goto fail;
        i = j;
        if (i >= n)
            break;
        unsigned char c = p[i];
        char esc[7];
        const char *out = esc;
        size_t outlen = 2;
        esc[0] = '\\';
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\n') {
            esc[1] = 'n';
        } else if (c == '\r') {
            esc[1] = 'r';
        } else if (c == '\t') {
            esc[1] = 't';
        } else if (c < 0x20) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            outlen = 6;
        } else {
            size_t ulen = utf8_len(p + i, n - i);
            if (ulen) {
                out = (const char *)p + i;
                outlen = ulen;
            } else {
                out = "\xef\xbf\xbd"; /* U+FFFD for an invalid byte */
                outlen = 3;
                ulen = 1;
            }
            if ((rc = sift_buf_append(b, out, outlen)))
                goto fail;
            i += ulen;
            continue;
        }
        if ((rc = sift_buf_append(b, out, outlen)))
            goto fail;
        i++;
    }
    return 0;
fail:
    /* all or nothing, like the other appends */
    b->len = start_len;
    if (b->data)
        b->data[b->len] = '\0';
    return rc;
}

int sift_buf_json_string(sift_buf *b, const char *s, size_t n)
{
    if (!s)
        return sift_buf_puts(b, "null");
    size_t mark = b->len;
    int rc = sift_buf_putc(b, '"');
    if (rc == 0)
        rc = sift_buf_json_escape(b, s, n);
    if (rc == 0)
        rc = sift_buf_putc(b, '"');
    if (rc) {
        b->len = mark;
        if (b->data)
            b->data[mark] = '\0';
    }
    return rc;
}

void sift_buf_consume(sift_buf *b, size_t n)
{
    if (n >= b->len) {
        sift_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *sift_buf_detach(sift_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = sift_calloc(1, 1);
    sift_buf_init(b, b->limit);
    return p;
}
