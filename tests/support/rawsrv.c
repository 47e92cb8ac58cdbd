/* rawsrv: see rawsrv.h. Test support code: simple over fast. */
#include "rawsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define container_of(p, T, m) ((T *)((char *)(p)-offsetof(T, m)))

typedef struct conn conn;

struct rawsrv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    int stopping;
    int handles; /* open uv handles: listener + 2 per connection */
    rawsrv_stats st;
    conn *conns; /* doubly linked */
    void (*done)(void *);
    void *done_udata;
};

struct conn {
    rawsrv *s;
    uv_tcp_t tcp;
    uv_timer_t timer;
    char *in;
    size_t in_len, in_cap;
    int closing;
    int busy;        /* a response is in progress */
    int close_after; /* close once the pending writes are done */
    int keep_alive;
    int sse_left, sse_i, sse_delay, sse_hang;
    int delay_pending;
    int handles; /* 2 until both close callbacks ran */
    conn *prev, *next;
};

typedef struct wreq {
    uv_write_t w;
    conn *c;
    int close_conn;
    char data[];
} wreq;

static void maybe_done(rawsrv *s)
{
    if (s->stopping && s->handles == 0) {
        void (*done)(void *) = s->done;
        void *udata = s->done_udata;
        free(s);
        if (done)
            done(udata);
    }
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    rawsrv *s = c->s;
    s->handles--;
    if (--c->handles == 0) {
        free(c->in);
        free(c);
    }
    maybe_done(s);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    rawsrv *s = c->s;
    s->st.open--;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
    wreq *r = container_of(w, wreq, w);
    conn *c = r->c;
    int close_conn = r->close_conn;
    free(r);
    if (status == 0 && close_conn)
        conn_close(c);
}

static void send_bytes(conn *c, const char *p, size_t n, int close_conn)
{
    if (c->closing)
        return;
    wreq *r = malloc(sizeof(*r) + n);
    if (!r)
        abort();
    memcpy(r->data, p, n);
    r->c = c;
    r->close_conn = close_conn;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)n);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(r);
        conn_close(c);
    }
}

static void send_str(conn *c, const char *s)
{
    send_bytes(c, s, strlen(s), 0);
}

static void send_response(conn *c, int status, const char *extra_headers, const char *body,
                          size_t len)
{
    char head[1024];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                     len, c->keep_alive ? "" : "Connection: close\r\n",
                     extra_headers ? extra_headers : "");
    size_t total = (size_t)n + len;
    char *all = malloc(total);
    if (!all)
        abort();
    memcpy(all, head, (size_t)n);
    if (len)
        memcpy(all + n, body, len);
    send_bytes(c, all, total, !c->keep_alive);
    free(all);
}

static long qint(const char *query, const char *name, long def)
{
    if (!query)
        return def;
    size_t nl = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=')
            return strtol(p + nl + 1, NULL, 10);
    }
    return def;
}

static void process_input(conn *c);

static void sse_step(conn *c)
{
    char buf[128];
    if (c->sse_left > 0) {
        char ev[64];
        int n = snprintf(ev, sizeof(ev), "data: {\"i\":%d}\n\n", c->sse_i++);
        snprintf(buf, sizeof(buf), "%x\r\n%s\r\n", n, ev);
        send_str(c, buf);
        c->s->st.sse_events++;
        c->sse_left--;
        return;
    }
    if (c->sse_hang)
        return; /* stays open until the client goes */
    static const char done[] = "data: [DONE]\n\n";
    snprintf(buf, sizeof(buf), "%zx\r\n%s\r\n0\r\n\r\n", sizeof(done) - 1, done);
    send_str(c, buf);
    c->busy = 0;
    process_input(c);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = container_of(t, conn, timer);
    if (c->closing)
        return;
    if (c->delay_pending) {
        c->delay_pending = 0;
        c->busy = 0;
        send_response(c, 200, NULL, "hello", 5);
        process_input(c);
        return;
    }
    sse_step(c);
    if (!c->closing && c->busy && (c->sse_left > 0 || !c->sse_hang))
        uv_timer_start(&c->timer, on_timer, (uint64_t)c->sse_delay, 0);
}

static void handle(conn *c, const char *method, const char *path, const char *ctype,
                   const char *body, size_t blen)
{
    char target[512];
    snprintf(target, sizeof(target), "%s", path);
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    c->s->st.requests++;

    if (strcmp(target, "/hello") == 0) {
        send_response(c, 200, NULL, "hello", 5);
    } else if (strcmp(target, "/echo") == 0) {
        char hdr[512];
        snprintf(hdr, sizeof(hdr), "X-Method: %s\r\nX-Content-Type: %s\r\n", method,
                 ctype ? ctype : "");
        send_response(c, 200, hdr, body, blen);
    } else if (strcmp(target, "/status") == 0) {
        long code = qint(query, "code", 500);
        long ra = qint(query, "retry_after", -1);
        char hdr[128] = "";
        if (ra >= 0)
            snprintf(hdr, sizeof(hdr), "Retry-After: %ld\r\nContent-Type: text/plain\r\n", ra);
        char b[64];
        int n = snprintf(b, sizeof(b), "status %ld", code);
        send_response(c, (int)code, hdr, b, (size_t)n);
    } else if (strcmp(target, "/sse") == 0) {
        c->busy = 1;
        c->sse_left = (int)qint(query, "n", 3);
        c->sse_delay = (int)qint(query, "delay", 0);
        c->sse_hang = (int)qint(query, "hang", 0);
        c->sse_i = 0;
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
        uv_timer_start(&c->timer, on_timer, (uint64_t)c->sse_delay, 0);
    } else if (strcmp(target, "/close-early") == 0) {
        c->busy = 1;
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
        send_bytes(c, r, sizeof(r) - 1, 1);
    } else if (strcmp(target, "/garbage") == 0) {
        c->busy = 1;
        static const char r[] = "SSH-2.0-OpenSSH_9.2 this is not HTTP at all\r\n\r\n";
        send_bytes(c, r, sizeof(r) - 1, 1);
    } else if (strcmp(target, "/delay") == 0) {
        c->busy = 1;
        c->delay_pending = 1;
        uv_timer_start(&c->timer, on_timer, (uint64_t)qint(query, "ms", 100), 0);
    } else if (strcmp(target, "/big") == 0 || strcmp(target, "/bigchunked") == 0) {
        long n = qint(query, "n", 1000);
        char *b = malloc((size_t)n + 1);
        if (!b)
            abort();
        memset(b, 'x', (size_t)n);
        if (strcmp(target, "/big") == 0) {
            send_response(c, 200, NULL, b, (size_t)n);
        } else {
            char h[64];
            send_str(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for (long at = 0; at < n; at += 4096) {
                long k = n - at < 4096 ? n - at : 4096;
                snprintf(h, sizeof(h), "%lx\r\n", k);
                send_str(c, h);
                send_bytes(c, b + at, (size_t)k, 0);
                send_str(c, "\r\n");
            }
            send_str(c, "0\r\n\r\n");
        }
        free(b);
    } else if (strcmp(target, "/close") == 0) {
        c->keep_alive = 0;
        send_response(c, 200, NULL, "bye", 3);
    } else {
        send_response(c, 404, NULL, "not found", 9);
    }
}

/* Finds header `name` in the header block [h, end); copies its value. */
static int header_value(const char *h, const char *end, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = h; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            size_t k = (size_t)(eol - v) < n - 1 ? (size_t)(eol - v) : n - 1;
            memcpy(out, v, k);
            out[k] = '\0';
            return 1;
        }
        p = eol + 2;
    }
    return 0;
}

static void process_input(conn *c)
{
    while (!c->busy && !c->closing && c->in_len > 0) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end)
            return;
        size_t head_len = (size_t)(end - c->in) + 4;
        char method[16], path[512];
        if (sscanf(c->in, "%15s %511s", method, path) != 2) {
            conn_close(c);
            return;
        }
        const char *hstart = memchr(c->in, '\n', head_len);
        hstart = hstart ? hstart + 1 : end;
        char val[256];
        size_t clen = 0;
        if (header_value(hstart, end, "Content-Length", val, sizeof(val)))
            clen = (size_t)strtoul(val, NULL, 10);
        if (c->in_len < head_len + clen)
            return; /* body not complete yet */
        char ctype[256];
        int has_ctype = header_value(hstart, end, "Content-Type", ctype, sizeof(ctype));
        c->keep_alive = !(header_value(hstart, end, "Connection", val, sizeof(val)) &&
                          strcasecmp(val, "close") == 0);
        char *body = malloc(clen + 1);
        if (!body)
            abort();
        memcpy(body, c->in + head_len, clen);
        body[clen] = '\0';
        size_t used = head_len + clen;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        handle(c, method, path, has_ctype ? ctype : NULL, body, clen);
        free(body);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    if (c->in_cap - c->in_len < 4096) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
        char *p = realloc(c->in, cap);
        if (!p)
            abort();
        c->in = p;
        c->in_cap = cap;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    if (nread < 0) {
        c->s->st.peer_gone++;
        if (c->busy)
            c->s->st.abandoned++;
        conn_close(c);
        return;
    }
    c->in_len += (size_t)nread;
    process_input(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    rawsrv *s = container_of(l, rawsrv, listener);
    if (status < 0 || s->stopping)
        return;
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    s->handles += 2;
    c->handles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->st.open++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    s->st.accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

rawsrv *rawsrv_start(uv_loop_t *loop)
{
    rawsrv *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = loop;
    uv_tcp_init(loop, &s->listener);
    s->handles = 1;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&s->listener, 1024, on_connection) != 0) {
        fprintf(stderr, "rawsrv: cannot listen on 127.0.0.1\n");
        rawsrv_stop(s, NULL, NULL);
        return NULL;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return s;
}

int rawsrv_port(const rawsrv *s)
{
    return s->port;
}

void rawsrv_url(const rawsrv *s, const char *path, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", s->port, path);
}

rawsrv_stats rawsrv_get_stats(const rawsrv *s)
{
    return s->st;
}

static void listener_closed(uv_handle_t *h)
{
    rawsrv *s = container_of(h, rawsrv, listener);
    s->handles--;
    maybe_done(s);
}

void rawsrv_stop(rawsrv *s, void (*done)(void *udata), void *udata)
{
    s->stopping = 1;
    s->done = done;
    s->done_udata = udata;
    while (s->conns)
        conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, listener_closed);
}
