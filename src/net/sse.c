/* Server-Sent Events parser; the rules and the one deviation from the WHATWG
 * spec are described in include/sift/sse.h. */
#include "sift/sse.h"

#include <string.h>

static const unsigned char bom_bytes[3] = {0xEF, 0xBB, 0xBF};

void sift_sse_init(sift_sse_parser *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof(*p));
    p->max_event = max_event_bytes ? max_event_bytes : SIFT_SSE_DEFAULT_MAX_EVENT;
    /* The buffers are bounded by our own checks, which know which limit was
     * hit and can say so; the sift_buf limits stay off. */
    sift_buf_init(&p->line, 0);
    sift_buf_init(&p->data, 0);
    sift_buf_init(&p->name, 0);
    sift_buf_init(&p->id, 0);
    p->retry_ms = -1;
}

void sift_sse_reset(sift_sse_parser *p)
{
    sift_buf_reset(&p->line);
    sift_buf_reset(&p->data);
    sift_buf_reset(&p->name);
    sift_buf_reset(&p->id);
    p->retry_ms = -1;
    p->events = 0;
    p->error = 0;
    p->bom = 0;
    p->cr = 0;
    p->skip = 0;
}

void sift_sse_free(sift_sse_parser *p)
{
    sift_buf_free(&p->line);
    sift_buf_free(&p->data);
    sift_buf_free(&p->name);
    sift_buf_free(&p->id);
}

uint64_t sift_sse_count(const sift_sse_parser *p)
{
    return p->events;
}

/* Stops the parser for good with `code`. */
static int stop(sift_sse_parser *p, int code)
{
    p->error = code;
    return code;
}

static int too_big_line(sift_sse_parser *p, size_t n, sift_err *err)
{
    sift_err_set(err, SIFT_ETOOBIG,
                 "SSE line of %zu+ bytes is over the %zu-byte limit (max_event_bytes); the "
                 "server sends larger events than allowed",
                 n, p->max_event);
    return stop(p, SIFT_ETOOBIG);
}

static int too_big_event(sift_sse_parser *p, size_t n, sift_err *err)
{
    sift_err_set(err, SIFT_ETOOBIG,
                 "SSE event of %zu+ bytes (data, name and id) is over the %zu-byte limit "
                 "(max_event_bytes); the server sends larger events than allowed",
                 n, p->max_event);
    return stop(p, SIFT_ETOOBIG);
}

static int no_memory(sift_sse_parser *p, sift_err *err)
{
    sift_err_set(err, SIFT_ENOMEM, "out of memory while buffering an SSE event");
    return stop(p, SIFT_ENOMEM);
}

static int dispatch(sift_sse_parser *p, sift_sse_event_fn cb, void *udata, sift_err *err)
{
    if (p->data.len == 0) {
        /* No data line: per the spec there is no event, and its name is
         * forgotten. */
        sift_buf_reset(&p->name);
        return 0;
    }
    /* Every data line was stored with a "\n"; the last one is not part of
     * the data. */
    p->data.len--;
    p->data.data[p->data.len] = '\0';

    sift_sse_event ev = {
        .event = p->name.len ? p->name.data : "message",
        .event_len = p->name.len ? p->name.len : 7,
        .data = p->data.data,
        .data_len = p->data.len,
        .id = p->id.len ? p->id.data : "",
        .id_len = p->id.len,
        .retry_ms = p->retry_ms,
    };
    p->events++;
    int rc = cb ? cb(&ev, udata, err) : 0;
    sift_buf_reset(&p->data);
    sift_buf_reset(&p->name);
    if (rc != 0) {
        if (rc > 0)
            rc = SIFT_ECANCELED;
        if (err && err->code == 0)
            sift_err_set(err, rc, "SSE event handler stopped the stream (%s)", sift_err_name(rc));
        return stop(p, rc);
    }
    return 0;
}

static int field_is(const char *name, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(name, lit, l) == 0;
}

/* Replaces the contents of `b` with v[0..n). */
static int set_buf(sift_buf *b, const char *v, size_t n)
{
    sift_buf_reset(b);
    return n ? sift_buf_append(b, v, n) : 0;
}

/* One complete line, without its line end. */
static int process_line(sift_sse_parser *p, const char *line, size_t n, sift_sse_event_fn cb,
                        void *udata, sift_err *err)
{
    if (n == 0)
        return dispatch(p, cb, udata, err);
    if (line[0] == ':')
        return 0;
    if (n > p->max_event)
        return too_big_line(p, n, err);

    const char *colon = memchr(line, ':', n);
    size_t nlen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = (size_t)(line + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }

    if (field_is(line, nlen, "data")) {
        size_t total = p->data.len + p->name.len + p->id.len + vlen + 1;
        if (total > p->max_event)
            return too_big_event(p, total, err);
        if (sift_buf_reserve(&p->data, vlen + 1) != 0)
            return no_memory(p, err);
        memcpy(p->data.data + p->data.len, v, vlen);
        p->data.len += vlen;
        p->data.data[p->data.len++] = '\n';
        p->data.data[p->data.len] = '\0';
    } else if (field_is(line, nlen, "event")) {
        size_t total = p->data.len + p->id.len + vlen;
        if (total > p->max_event)
            return too_big_event(p, total, err);
        if (set_buf(&p->name, v, vlen) != 0)
            return no_memory(p, err);
    } else if (field_is(line, nlen, "id")) {
        if (memchr(v, '\0', vlen))
            return 0; /* the spec ignores such ids */
        size_t total = p->data.len + p->name.len + vlen;
        if (total > p->max_event)
            return too_big_event(p, total, err);
        if (set_buf(&p->id, v, vlen) != 0)
            return no_memory(p, err);
    } else if (field_is(line, nlen, "retry")) {
        int64_t ms = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return 0; /* not all digits: ignored, as the spec says */
            if (ms < INT64_MAX / 10 - 9)
                ms = ms * 10 + (v[i] - '0');
        }
        if (vlen > 0)
            p->retry_ms = ms;
    }
    return 0;
}

/* The line machinery, after the byte order mark has been dealt with. */
static int scan(sift_sse_parser *p, const char *buf, size_t len, sift_sse_event_fn cb, void *udata,
                sift_err *err)
{
    const char *s = buf;
    const char *end = buf + len;
    while (s < end) {
        if (p->cr) {
            p->cr = 0;
            if (*s == '\n') {
                s++;
                continue;
            }
        }
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *cr = memchr(s, '\r', (size_t)((nl ? nl : end) - s));
        const char *eol = cr ? cr : nl;
        if (!eol) {
            /* The line goes on in the next feed. */
            if (p->skip)
                return 0;
            if (p->line.len == 0 && *s == ':') {
                p->skip = 1;
                return 0;
            }
            size_t n = p->line.len + (size_t)(end - s);
            if (n > p->max_event)
                return too_big_line(p, n, err);
            if (sift_buf_append(&p->line, s, (size_t)(end - s)) != 0)
                return no_memory(p, err);
            return 0;
        }
        size_t n = (size_t)(eol - s);
        int rc = 0;
        if (p->skip) {
            p->skip = 0;
        } else if (p->line.len == 0) {
            /* The common case: the whole line is in this feed, no copy. */
            rc = process_line(p, s, n, cb, udata, err);
        } else {
            if (p->line.len + n > p->max_event)
                return too_big_line(p, p->line.len + n, err);
            if (sift_buf_append(&p->line, s, n) != 0)
                return no_memory(p, err);
            rc = process_line(p, p->line.data, p->line.len, cb, udata, err);
            sift_buf_reset(&p->line);
        }
        if (rc != 0)
            return rc;
        if (*eol == '\r')
            p->cr = 1;
        s = eol + 1;
    }
    return 0;
}

static int stopped(const sift_sse_parser *p, sift_err *err)
{
    return sift_err_set(err, p->error, "SSE parser stopped after an earlier error (%s)",
                        sift_err_name(p->error));
}

/* A stream that began with part of a byte order mark and then went on with
 * something else: those bytes were text after all. */
static int replay_bom(sift_sse_parser *p, sift_sse_event_fn cb, void *udata, sift_err *err)
{
    size_t n = p->bom;
    p->bom = 3;
    return n ? scan(p, (const char *)bom_bytes, n, cb, udata, err) : 0;
}

int sift_sse_feed(sift_sse_parser *p, const char *buf, size_t len, sift_sse_event_fn cb,
                  void *udata, sift_err *err)
{
    if (p->error)
        return stopped(p, err);
    size_t i = 0;
    while (p->bom < 3 && i < len) {
        if ((unsigned char)buf[i] == bom_bytes[p->bom]) {
            p->bom++;
            i++;
            continue;
        }
        int rc = replay_bom(p, cb, udata, err);
        if (rc != 0)
            return rc;
    }
    if (i == len)
        return 0;
    return scan(p, buf + i, len - i, cb, udata, err);
}

int sift_sse_finish(sift_sse_parser *p, sift_sse_event_fn cb, void *udata, sift_err *err)
{
    if (p->error)
        return stopped(p, err);
    int rc = 0;
    if (p->bom < 3)
        rc = replay_bom(p, cb, udata, err);
    if (rc == 0 && !p->skip && p->line.len > 0)
        rc = process_line(p, p->line.data, p->line.len, cb, udata, err);
    if (rc == 0)
        rc = dispatch(p, cb, udata, err);
    if (rc != 0)
        return rc;
    uint64_t events = p->events;
    sift_sse_reset(p);
    p->events = events;
    return 0;
}
