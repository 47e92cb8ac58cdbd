/* Exchanges: one request and its response, on one worker's loop.
 *
 * An exchange is referenced from two sides. h2o holds it while the request is
 * alive (x->req != NULL): an anchor allocated in req->pool points back to it,
 * and its dispose callback tells us when h2o has dropped the request. The user
 * holds it until the finishing call (x->user_done). The memory goes, on a
 * later loop iteration, when both have let go. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "net/server_int.h"
#include "sift/arena.h"
#include "sift/log.h"

struct srv_xref {
    sift_http_exchange *x;
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 400 ? "OK" : "Error";
    }
}

static const char *state_name(enum x_state st)
{
    static const char *const names[] = {"open", "streaming", "closing", "done"};
    return names[st];
}

/* The one place an exchange changes state (debug logs show every change). */
static void set_state(sift_http_exchange *x, enum x_state st)
{
    if (x->state == st)
        return;
    if (sift_log_get_level() <= SIFT_LOG_DEBUG)
        sift_debug(NULL, "http %s %s: %s -> %s", x->method, x->path, state_name(x->state),
                   state_name(st));
    x->state = st;
}

static size_t buffered(const sift_http_exchange *x)
{
    return x->pending.len + (x->inflight ? x->sending.len : 0);
}

static void maybe_free(sift_http_exchange *x)
{
    if (x->user_done && x->req == NULL && !x->free_pending) {
        x->free_pending = 1;
        srv_worker_defer(x->w, x);
    }
}

/* h2o lets go of the exchange: after the final send, or because the request
 * is gone (client disconnected, connection closed). In the second case, if
 * the user still holds it, its context is cancelled: the hooks may call the
 * finishing function, which only sets flags and defers the free. */
static void detach(sift_http_exchange *x, int client_gone)
{
    if (x->req == NULL)
        return;
    sift_server *s = x->w->s;
    if (x->ref != NULL)
        x->ref->x = NULL;
    x->ref = NULL;
    x->req = NULL;
    x->inflight = 0;
    x->drain_cb = NULL;
    if (x->conn != NULL && x->conn->x == x)
        x->conn->x = NULL;
    x->conn = NULL;
    set_state(x, X_DONE);
    if (x->counted_stream) {
        x->counted_stream = 0;
        atomic_fetch_sub_explicit(&s->st_streams, 1, memory_order_relaxed);
    }
    if (x->counted_active) {
        x->counted_active = 0;
        atomic_fetch_sub_explicit(&s->st_active, 1, memory_order_relaxed);
    }
    if (!x->user_done) {
        if (client_gone && !x->client_gone) {
            x->client_gone = 1;
            atomic_fetch_add_explicit(&s->st_disconnects, 1, memory_order_relaxed);
        }
        /* A context already done keeps its first cause. */
        sift_ctx_cancel(x->ctx, SIFT_ECANCELED,
                        x->client_gone ? "client disconnected" : "server shutting down");
    }
    maybe_free(x);
}

static void on_pool_dispose(void *p)
{
    struct srv_xref *ref = p;
    if (ref->x != NULL)
        detach(ref->x, 1);
}

/* Sends what is pending with FINAL (or ERROR), from memory in req->pool
 * (nothing tells us when h2o has written a final buffer, but the pool lives
 * until then). The exchange is detached first, so whatever h2o calls back
 * finds nothing to do. */
static void send_last(sift_http_exchange *x, h2o_send_state_t st)
{
    h2o_req_t *req = x->req;
    h2o_iovec_t iov = {NULL, 0};
    size_t n = 0;
    if (st == H2O_SEND_STATE_FINAL && x->pending.len > 0 && !x->head) {
        iov = h2o_strdup(&req->pool, x->pending.data, x->pending.len);
        n = 1;
    }
    sift_buf_free(&x->pending);
    sift_buf_free(&x->sending);
    detach(x, 0);
    h2o_send(req, &iov, n, st);
}

/* Hands pending bytes to h2o if it is not busy with earlier ones. */
static void flush(sift_http_exchange *x)
{
    if (x->req == NULL || x->inflight)
        return;
    if (x->kill_pending) {
        send_last(x, H2O_SEND_STATE_ERROR);
        return;
    }
    if (x->end_pending) {
        send_last(x, H2O_SEND_STATE_FINAL);
        return;
    }
    if (x->head)
        sift_buf_reset(&x->pending); /* a streamed body is dropped, not sent */
    if (x->pending.len == 0)
        return;
    sift_buf tmp = x->sending;
    x->sending = x->pending;
    x->pending = tmp;
    sift_buf_reset(&x->pending);
    x->iov = h2o_iovec_init(x->sending.data, x->sending.len);
    x->inflight = 1;
    h2o_send(x->req, &x->iov, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void call_drain(sift_http_exchange *x)
{
    if (x->drain_cb == NULL || x->req == NULL || x->state != X_STREAMING)
        return;
    if (buffered(x) > x->w->s->opts.stream_buffer_limit / 2)
        return;
    void (*cb)(sift_http_exchange *, void *) = x->drain_cb;
    x->drain_cb = NULL;
    cb(x, x->drain_udata);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    sift_http_exchange *x = SIFT_CONTAINER_OF(gen, sift_http_exchange, gen);
    /* h2o only asks for more while a stream is under way. */
    if (x->req == NULL || (x->state != X_STREAMING && x->state != X_CLOSING))
        return;
    x->inflight = 0;
    sift_buf_reset(&x->sending);
    flush(x);
    call_drain(x);
}

/* h2o ends the response abruptly: the connection is going away. */
static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    sift_http_exchange *x = SIFT_CONTAINER_OF(gen, sift_http_exchange, gen);
    if (x->state == X_DONE)
        return;
    detach(x, 1);
}

int srv_exchange_idle(const sift_http_exchange *x)
{
    return x->req != NULL && !x->inflight && !x->user_done && x->conn != NULL &&
           x->conn->state == CONN_OPEN && x->conn->sock != NULL;
}

/* Ends the response without finishing it and drops the connection: for the
 * user's abort, a client found gone, and a shutdown out of time. */
void srv_exchange_kill(sift_http_exchange *x, int client_gone)
{
    if (x->req == NULL)
        return;
    if (x->conn != NULL && x->conn->state == CONN_OPEN && x->conn->sock != NULL)
        shutdown(h2o_socket_get_fd(x->conn->sock), SHUT_RDWR);
    if (client_gone && !x->user_done && !x->client_gone) {
        /* Tell the user now; h2o will notice on its own write. */
        x->client_gone = 1;
        atomic_fetch_add_explicit(&x->w->s->st_disconnects, 1, memory_order_relaxed);
        sift_ctx_cancel(x->ctx, SIFT_ECANCELED, "client disconnected");
        if (x->req == NULL)
            return;
    }
    x->kill_pending = 1;
    if (x->inflight)
        return; /* the write fails on the shut socket: stop() follows */
    if (x->state == X_OPEN) {
        x->req->res.status = 500;
        x->req->res.reason = reason_phrase(500);
        h2o_start_response(x->req, &x->gen);
    }
    send_last(x, H2O_SEND_STATE_ERROR);
}

void srv_exchange_free(sift_http_exchange *x)
{
    struct sift_server_worker *w = x->w;
    /* Only reached at worker teardown while h2o still had it; unhook it. */
    if (x->ref != NULL)
        x->ref->x = NULL;
    srv_link_remove(&x->link);
    if (x->deferred)
        srv_link_remove(&x->defer_link);
    if (x->counted_stream)
        atomic_fetch_sub_explicit(&w->s->st_streams, 1, memory_order_relaxed);
    if (x->counted_active)
        atomic_fetch_sub_explicit(&w->s->st_active, 1, memory_order_relaxed);
    sift_ctx_release(x->ctx);
    sift_buf_free(&x->pending);
    sift_buf_free(&x->sending);
    sift_free(x);
}

void srv_run_deferred(struct sift_server_worker *w)
{
    struct srv_link batch;
    srv_link_init(&batch);
    /* Work on a snapshot: callbacks may queue more for the next iteration. */
    if (!srv_link_empty(&w->deferred)) {
        batch.next = w->deferred.next;
        batch.prev = w->deferred.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        srv_link_init(&w->deferred);
    }
    while (!srv_link_empty(&batch)) {
        sift_http_exchange *x = SIFT_CONTAINER_OF(batch.next, sift_http_exchange, defer_link);
        srv_link_remove(&x->defer_link);
        x->deferred = 0;
        if (x->free_pending) {
            srv_exchange_free(x);
            continue;
        }
        if (x->drain_now) {
            x->drain_now = 0;
            call_drain(x);
        }
    }
}

/* ---- dispatch ---- */

static const struct srv_route *find_route(const sift_server *s, const char *path, size_t len,
                                          h2o_iovec_t method, int *path_matched)
{
    const struct srv_route *best = NULL;
    *path_matched = 0;
    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (size_t i = 0; i < s->nroutes; i++) {
            const struct srv_route *r = &s->routes[i];
            if (r->prefix != pass)
                continue;
            if (pass == 0 ? (r->path_len != len || memcmp(r->path, path, len) != 0)
                          : (r->path_len > len || memcmp(r->path, path, r->path_len) != 0))
                continue;
            *path_matched = 1;
            if (r->method != NULL && (strlen(r->method) != method.len ||
                                      memcmp(r->method, method.base, method.len) != 0))
                continue;
            if (best == NULL || r->path_len > best->path_len)
                best = r;
        }
    }
    return best;
}

static sift_http_exchange *new_exchange(struct sift_server_worker *w, h2o_req_t *req,
                                        const char *path, size_t path_len)
{
    h2o_iovec_t query = {"", 0};
    if (req->query_at != SIZE_MAX) {
        query.base = req->path.base + req->query_at + 1;
        query.len = req->path.len - req->query_at - 1;
    }
    size_t body_len = req->entity.base ? req->entity.len : 0;
    size_t size = sizeof(sift_http_exchange) + req->headers.size * sizeof(struct srv_header);
    size += req->method.len + 1 + path_len + 1 + query.len + 1 + body_len + 1;
    for (size_t i = 0; i < req->headers.size; i++)
        size += req->headers.entries[i].name->len + 1 + req->headers.entries[i].value.len + 1;
    /* Not calloc: the body may be up to max_body_bytes and is copied over. */
    sift_http_exchange *x = sift_malloc(size);
    if (x == NULL)
        return NULL;
    memset(x, 0, sizeof(*x));
    x->headers = (struct srv_header *)(x + 1);
    char *p = (char *)(x->headers + req->headers.size);
#define COPY(dst, src, n)                                                                          \
    do {                                                                                           \
        if ((n) > 0)                                                                               \
            memcpy(p, (src), (n));                                                                 \
        p[(n)] = '\0';                                                                             \
        (dst) = p;                                                                                 \
        p += (n) + 1;                                                                              \
    } while (0)
    COPY(x->method, req->method.base, req->method.len);
    COPY(x->path, path, path_len);
    COPY(x->query, query.base, query.len);
    COPY(x->body, req->entity.base, body_len);
    x->body_len = body_len;
    x->nheaders = req->headers.size;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        struct srv_header *d = &x->headers[i];
        COPY(d->name, h->name->base, h->name->len);
        d->name_len = h->name->len;
        COPY(d->value, h->value.base, h->value.len);
        d->value_len = h->value.len;
    }
#undef COPY
    x->rest = x->path + path_len;
    x->w = w;
    x->req = req;
    x->gen.proceed = on_proceed;
    x->gen.stop = on_stop;
    sift_buf_init(&x->pending, 0);
    sift_buf_init(&x->sending, 0);
    srv_link_init(&x->defer_link);
    if ((x->ctx = sift_ctx_new(w->root)) == NULL) {
        sift_free(x);
        return NULL;
    }
    x->ref = h2o_mem_alloc_shared(&req->pool, sizeof(*x->ref), on_pool_dispose);
    x->ref->x = x;
    struct srv_conn *c = srv_conn_lookup(w, req->conn);
    if (c != NULL && c->x == NULL) {
        c->x = x;
        x->conn = c;
    }
    srv_link_insert(&w->exchanges, &x->link);
    x->counted_active = 1;
    atomic_fetch_add_explicit(&w->s->st_active, 1, memory_order_relaxed);
    return x;
}

static void reply_405(sift_http_exchange *x, const sift_server *s)
{
    char allow[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct srv_route *r = &s->routes[i];
        size_t len = strlen(x->path);
        int match = r->prefix ? (r->path_len <= len && memcmp(r->path, x->path, r->path_len) == 0)
                              : (r->path_len == len && memcmp(r->path, x->path, len) == 0);
        if (!match || r->method == NULL || strstr(allow, r->method) != NULL)
            continue;
        int n = snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "", r->method);
        if (n < 0 || (size_t)n >= sizeof(allow) - used)
            break;
        used += (size_t)n;
    }
    /* a GET route answers HEAD too (srv_dispatch) */
    if (strstr(allow, "GET") != NULL && used + 6 < sizeof(allow))
        memcpy(allow + used, ", HEAD", 7);
    sift_http_set_header(x, "allow", allow);
    char msg[160];
    snprintf(msg, sizeof(msg), "method %s is not allowed here; allowed: %s", x->method, allow);
    sift_http_respond_error(x, 405, "method_not_allowed", msg);
}

void srv_dispatch(struct sift_server_worker *w, h2o_req_t *req)
{
    sift_server *s = w->s;
    atomic_fetch_add_explicit(&s->st_requests, 1, memory_order_relaxed);
    const char *path = req->path_normalized.base;
    size_t path_len = req->path_normalized.len;
    int path_matched;
    const struct srv_route *r = find_route(s, path, path_len, req->method, &path_matched);
    int head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    /* HEAD is GET without the body (RFC 9110 9.3.2): a route for GET
     * answers it, and h2o would send the body, so the sends below leave it
     * out */
    if (r == NULL && head)
        r = find_route(s, path, path_len, h2o_iovec_init(H2O_STRLIT("GET")), &path_matched);
    sift_http_exchange *x = new_exchange(w, req, path, path_len);
    if (x == NULL) {
        h2o_send_error_500(req, "Internal Server Error", "out of memory", 0);
        return;
    }
    x->head = head;
    x->route = r;
    if (r == NULL) {
        if (path_matched) {
            reply_405(x, s);
        } else {
            char msg[160];
            snprintf(msg, sizeof(msg), "no route for %.20s %.100s", x->method, x->path);
            sift_http_respond_error(x, 404, "not_found", msg);
        }
        return;
    }
    if (r->prefix)
        x->rest = x->path + r->path_len;
    r->fn(x, r->udata);
}

/* ---- request accessors ---- */

const char *sift_http_method(const sift_http_exchange *x)
{
    return x->method;
}

const char *sift_http_path(const sift_http_exchange *x)
{
    return x->path;
}

const char *sift_http_query(const sift_http_exchange *x)
{
    return x->query;
}

const char *sift_http_route_rest(const sift_http_exchange *x)
{
    return x->rest;
}

const char *sift_http_header(const sift_http_exchange *x, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < x->nheaders; i++) {
        const struct srv_header *h = &x->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
            if (len != NULL)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

const char *sift_http_body(const sift_http_exchange *x, size_t *len)
{
    if (len != NULL)
        *len = x->body_len;
    return x->body;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sift_http_query_param(const sift_http_exchange *x, const char *name, char *buf, size_t bufsize)
{
    size_t nlen = strlen(name);
    const char *q = x->query;
    while (*q != '\0') {
        const char *end = strchr(q, '&');
        if (end == NULL)
            end = q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - q) == nlen && memcmp(q, name, nlen) == 0) {
            size_t o = 0;
            for (const char *v = eq ? eq + 1 : end; v < end; v++) {
                char c = *v;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && end - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    c = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 2;
                }
                if (o + 1 < bufsize)
                    buf[o] = c;
                o++;
            }
            if (bufsize > 0)
                buf[o < bufsize ? o : bufsize - 1] = '\0';
            return (int)o;
        }
        q = *end ? end + 1 : end;
    }
    return -1;
}

uv_loop_t *sift_http_loop(sift_http_exchange *x)
{
    return &x->w->loop;
}

sift_ctx *sift_http_ctx(sift_http_exchange *x)
{
    return x->ctx;
}

sift_server_worker *sift_http_worker(sift_http_exchange *x)
{
    return x->w;
}

void *sift_http_worker_data(sift_http_exchange *x)
{
    return x->w->data;
}

/* ---- responses ---- */

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

int sift_http_set_header(sift_http_exchange *x, const char *name, const char *value)
{
    if (x->req == NULL)
        return SIFT_ECANCELED;
    if (x->state != X_OPEN)
        return SIFT_ESTATE;
    if (name[0] == '\0' || has_crlf(name) || has_crlf(value) || strchr(name, ':') != NULL)
        return SIFT_EINVAL;
    h2o_req_t *req = x->req;
    h2o_iovec_t n = h2o_strdup(&req->pool, name, strlen(name));
    h2o_strtolower(n.base, n.len);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
    h2o_set_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, v.base, v.len, 1);
    return 0;
}

static void start_head(sift_http_exchange *x, int status, const char *content_type)
{
    h2o_req_t *req = x->req;
    x->status = status;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (content_type != NULL)
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       h2o_strdup(&req->pool, content_type, strlen(content_type)).base,
                       strlen(content_type), 1);
}

int sift_http_respond(sift_http_exchange *x, int status, const char *content_type, const void *body,
                      size_t len)
{
    x->user_done = 1;
    if (x->req == NULL) {
        maybe_free(x);
        return SIFT_ECANCELED;
    }
    if (x->state != X_OPEN) {
        srv_exchange_kill(x, 0);
        maybe_free(x);
        return SIFT_ESTATE;
    }
    start_head(x, status, content_type);
    x->req->res.content_length = len;
    h2o_req_t *req = x->req;
    int head = x->head;
    h2o_iovec_t iov = head ? h2o_iovec_init("", 0) : h2o_strdup(&req->pool, body ? body : "", len);
    h2o_start_response(req, &x->gen);
    detach(x, 0);
    h2o_send(req, &iov, head ? 0 : 1, H2O_SEND_STATE_FINAL);
    return 0;
}

int sift_http_respond_error(sift_http_exchange *x, int status, const char *code,
                            const char *message)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_puts(&b, "{\"error\":{\"code\":\"");
    if (rc == 0)
        rc = sift_buf_json_escape(&b, code ? code : "error", code ? strlen(code) : 5);
    if (rc == 0)
        rc = sift_buf_puts(&b, "\",\"message\":\"");
    if (rc == 0)
        rc = sift_buf_json_escape(&b, message ? message : "", message ? strlen(message) : 0);
    if (rc == 0)
        rc = sift_buf_puts(&b, "\"}}\n");
    if (rc != 0) {
        sift_buf_free(&b);
        static const char oom[] =
            "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}\n";
        return sift_http_respond(x, 500, "application/json", oom, sizeof(oom) - 1);
    }
    rc = sift_http_respond(x, status, "application/json", b.data, b.len);
    sift_buf_free(&b);
    return rc;
}

/* ---- streaming ---- */

int sift_http_stream_start(sift_http_exchange *x, int status, const char *content_type)
{
    if (x->req == NULL || x->kill_pending)
        return SIFT_ECANCELED;
    if (x->state != X_OPEN || x->user_done)
        return SIFT_ESTATE;
    start_head(x, status, content_type);
    h2o_req_t *req = x->req;
    if (content_type != NULL && strncmp(content_type, "text/event-stream", 17) == 0) {
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL,
                       H2O_STRLIT("no-cache"), 1);
        h2o_set_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0,
                              H2O_STRLIT("no"), 1);
    }
    h2o_start_response(req, &x->gen);
    set_state(x, X_STREAMING);
    x->counted_stream = 1;
    atomic_fetch_add_explicit(&x->w->s->st_streams, 1, memory_order_relaxed);
    /* Sending no bytes flushes the status line and headers right away. */
    x->inflight = 1;
    sift_buf_reset(&x->sending);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

static int write_check(sift_http_exchange *x, size_t len)
{
    if (x->req == NULL || x->kill_pending || sift_ctx_err(x->ctx) != 0)
        return SIFT_ECANCELED;
    if (x->state != X_STREAMING || x->user_done)
        return SIFT_ESTATE;
    size_t limit = x->w->s->opts.stream_buffer_limit;
    if (len > limit)
        return SIFT_ETOOBIG;
    if (buffered(x) + len > limit)
        return SIFT_EBUSY;
    return 0;
}

int sift_http_stream_write(sift_http_exchange *x, const void *data, size_t len)
{
    int rc = write_check(x, len);
    if (rc != 0 || len == 0)
        return rc;
    if ((rc = sift_buf_append(&x->pending, data, len)) != 0)
        return rc;
    flush(x);
    return 0;
}

/* Calls fn for each line of data (split on \n, \r\n, \r); one empty line for
 * empty data. */
static void each_line(const char *data, size_t len, void (*fn)(void *, const char *, size_t),
                      void *arg)
{
    size_t start = 0, i = 0;
    if (len == 0) {
        fn(arg, "", 0);
        return;
    }
    /* the usual event is one line of JSON: two memchr scans, not a byte loop */
    if (!memchr(data, '\n', len) && !memchr(data, '\r', len)) {
        fn(arg, data, len);
        return;
    }
    while (i < len) {
        if (data[i] == '\n' || data[i] == '\r') {
            fn(arg, data + start, i - start);
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
                i++;
            start = ++i;
            continue;
        }
        i++;
    }
    if (start < len || data[len - 1] == '\n' || data[len - 1] == '\r')
        fn(arg, data + start, len - start);
}

static void count_line(void *arg, const char *line, size_t n)
{
    *(size_t *)arg += 6 + n + 1; /* "data: " line "\n" */
}

static void put_line(void *arg, const char *line, size_t n)
{
    sift_buf *b = arg;
    /* Room was reserved up front: these appends cannot fail. */
    sift_buf_append(b, "data: ", 6);
    sift_buf_append(b, line, n);
    sift_buf_append(b, "\n", 1);
}

size_t sift_http_sse_size(const char *event, const char *data, size_t len)
{
    size_t need = 1;
    if (event != NULL)
        need += 7 + strlen(event) + 1;
    each_line(data ? data : "", data ? len : 0, count_line, &need);
    return need;
}

int sift_http_sse_format(sift_buf *out, const char *event, const char *data, size_t len)
{
    if (event != NULL && has_crlf(event))
        return SIFT_EINVAL;
    int rc = sift_buf_reserve(out, sift_http_sse_size(event, data, len));
    if (rc != 0)
        return rc;
    if (event != NULL) {
        sift_buf_append(out, "event: ", 7);
        sift_buf_puts(out, event);
        sift_buf_append(out, "\n", 1);
    }
    each_line(data ? data : "", data ? len : 0, put_line, out);
    sift_buf_append(out, "\n", 1);
    return 0;
}

int sift_http_sse_send(sift_http_exchange *x, const char *event, const char *data, size_t len)
{
    if (event != NULL && has_crlf(event))
        return SIFT_EINVAL;
    int rc = write_check(x, sift_http_sse_size(event, data, len));
    if (rc != 0)
        return rc;
    if ((rc = sift_http_sse_format(&x->pending, event, data, len)) != 0)
        return rc;
    flush(x);
    return 0;
}

int sift_http_sse_comment(sift_http_exchange *x, const char *text)
{
    if (has_crlf(text))
        return SIFT_EINVAL;
    size_t n = strlen(text);
    int rc = write_check(x, n + 4);
    if (rc != 0)
        return rc;
    if ((rc = sift_buf_reserve(&x->pending, n + 4)) != 0)
        return rc;
    sift_buf_append(&x->pending, ": ", 2);
    sift_buf_append(&x->pending, text, n);
    sift_buf_append(&x->pending, "\n\n", 2);
    flush(x);
    return 0;
}

size_t sift_http_stream_buffered(const sift_http_exchange *x)
{
    return buffered(x);
}

size_t sift_http_stream_limit(const sift_http_exchange *x)
{
    return x->w->s->opts.stream_buffer_limit;
}

int sift_http_stream_on_drain(sift_http_exchange *x, void (*cb)(sift_http_exchange *x, void *udata),
                              void *udata)
{
    if (x->req == NULL || x->kill_pending)
        return SIFT_ECANCELED;
    if (x->state != X_STREAMING || x->user_done)
        return SIFT_ESTATE;
    x->drain_cb = cb;
    x->drain_udata = udata;
    if (buffered(x) <= x->w->s->opts.stream_buffer_limit / 2) {
        x->drain_now = 1;
        srv_worker_defer(x->w, x);
    }
    return 0;
}

int sift_http_stream_end(sift_http_exchange *x)
{
    x->user_done = 1;
    x->drain_cb = NULL;
    if (x->req == NULL || x->kill_pending) {
        maybe_free(x);
        return SIFT_ECANCELED;
    }
    if (x->state == X_OPEN) {
        static const char msg[] = "{\"error\":{\"code\":\"internal\",\"message\":\"the handler "
                                  "ended a response it had not started\"}}\n";
        sift_http_respond(x, 500, "application/json", msg, sizeof(msg) - 1);
        return SIFT_ESTATE;
    }
    if (x->state != X_STREAMING)
        return SIFT_ESTATE;
    x->end_pending = 1;
    set_state(x, X_CLOSING);
    flush(x);
    return 0;
}

void sift_http_stream_abort(sift_http_exchange *x)
{
    x->user_done = 1;
    x->drain_cb = NULL;
    if (x->req != NULL) {
        set_state(x, x->state == X_OPEN ? X_OPEN : X_CLOSING);
        srv_exchange_kill(x, 0);
    }
    maybe_free(x);
}

void sift_http_exchange_release(sift_http_exchange *x)
{
    sift_http_stream_abort(x);
}

/* ---- the request target as sent (GET /v1/products/{sku}) ---- */

const char *sift_http_raw_path(const sift_http_exchange *x, size_t *len)
{
    if (x->req == NULL) {
        *len = 0;
        return NULL;
    }
    *len = x->req->query_at != SIZE_MAX ? x->req->query_at : x->req->path.len;
    return x->req->path.base;
}
