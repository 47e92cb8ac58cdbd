/* The HTTP server: lifecycle, worker threads, listening sockets, connections,
 * graceful shutdown, and h2o's own error responses turned into JSON.
 * Exchanges (requests and responses) are in server_http.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include "net/server_int.h"
#include "sift/arena.h"
#include "sift/log.h"

#define DEFAULT_MAX_BODY ((size_t)1024 * 1024)
#define DEFAULT_STREAM_LIMIT ((size_t)256 * 1024)
#define DEFAULT_GRACE_MS 5000
#define DEFAULT_CHECK_MS 500
#define DEFAULT_BACKLOG 4096
#define DRAIN_SWEEP_MS 50
#define NOFILE_LOW 10240

struct srv_handler {
    h2o_handler_t super;
    sift_server *s;
};

struct errfix_filter {
    h2o_filter_t super;
    sift_server *s;
};

struct errfix_ostream {
    h2o_ostream_t super;
    sift_server *s;
};

/* ---- h2o_conn_t * -> srv_conn * map ---- */

static size_t map_slot(const struct sift_server_worker *w, const h2o_conn_t *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (w->map_cap - 1);
}

static int map_grow(struct sift_server_worker *w)
{
    size_t ncap = w->map_cap ? w->map_cap * 2 : 64;
    struct srv_conn **old = w->map;
    size_t ocap = w->map_cap;
    struct srv_conn **nm = sift_calloc(ncap, sizeof(struct srv_conn *));
    if (nm == NULL)
        return SIFT_ENOMEM;
    w->map = nm;
    w->map_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i] == NULL)
            continue;
        size_t j = map_slot(w, old[i]->h2oconn);
        while (w->map[j] != NULL)
            j = (j + 1) & (ncap - 1);
        w->map[j] = old[i];
    }
    sift_free(old);
    return 0;
}

/* A stale entry for the same key (h2o freed a connection and reused its
 * memory before our close callback ran) is replaced. */
static void map_put(struct sift_server_worker *w, struct srv_conn *c)
{
    if ((w->map_len + 1) * 2 > w->map_cap && map_grow(w) != 0)
        return; /* no memory: this connection just is not found by lookups */
    size_t i = map_slot(w, c->h2oconn);
    while (w->map[i] != NULL) {
        if (w->map[i]->h2oconn == c->h2oconn) {
            w->map[i]->h2oconn = NULL; /* the stale one is no longer reachable */
            w->map[i] = c;
            return;
        }
        i = (i + 1) & (w->map_cap - 1);
    }
    w->map[i] = c;
    w->map_len++;
}

static void map_del(struct sift_server_worker *w, struct srv_conn *c)
{
    if (w->map_cap == 0 || c->h2oconn == NULL)
        return;
    size_t i = map_slot(w, c->h2oconn);
    while (w->map[i] != c) {
        if (w->map[i] == NULL)
            return;
        i = (i + 1) & (w->map_cap - 1);
    }
    /* Backward-shift deletion keeps every probe chain unbroken. */
    w->map[i] = NULL;
    w->map_len--;
    size_t j = i;
    for (;;) {
        j = (j + 1) & (w->map_cap - 1);
        if (w->map[j] == NULL)
            break;
        size_t home = map_slot(w, w->map[j]->h2oconn);
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            w->map[i] = w->map[j];
            w->map[j] = NULL;
            i = j;
        }
    }
}

struct srv_conn *srv_conn_lookup(struct sift_server_worker *w, h2o_conn_t *key)
{
    if (w->map_cap == 0 || key == NULL)
        return NULL;
    size_t i = map_slot(w, key);
    while (w->map[i] != NULL) {
        if (w->map[i]->h2oconn == key)
            return w->map[i];
        i = (i + 1) & (w->map_cap - 1);
    }
    return NULL;
}

/* ---- connections ---- */

static void on_conn_close(uv_handle_t *h)
{
    struct srv_conn *c = SIFT_CONTAINER_OF(h, struct srv_conn, tcp);
    struct sift_server_worker *w = c->w;
    c->state = CONN_CLOSED;
    map_del(w, c);
    srv_link_remove(&c->link);
    w->nconns--;
    atomic_fetch_sub_explicit(&w->s->st_conns, 1, memory_order_relaxed);
    if (c->x != NULL && c->x->conn == c)
        c->x->conn = NULL;
    sift_free(c);
    srv_worker_maybe_finish(w);
}

static void on_reject_close(uv_handle_t *h)
{
    sift_free(SIFT_CONTAINER_OF(h, struct srv_conn, tcp));
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct sift_server_worker *w = SIFT_CONTAINER_OF(listener, struct sift_server_worker, listener);
    if (status != 0) {
        /* Out of file descriptors repeats for every pending connection: say
         * it at most once a second. */
        uint64_t now = uv_now(&w->loop);
        if (now - w->last_accept_warn >= 1000 || w->last_accept_warn == 0) {
            w->last_accept_warn = now;
            sift_warn(NULL, "server: accept failed on worker %d: %s%s", w->index,
                      uv_strerror(status),
                      status == UV_EMFILE || status == UV_ENFILE
                          ? " (open-file limit reached: raise ulimit -n)"
                          : "");
        }
        return;
    }
    struct srv_conn *c = sift_calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the connection waits in the backlog until memory frees up */
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* SSE events must not wait for Nagle */
    srv_link_insert(&w->conns, &c->link);
    w->nconns++;
    atomic_fetch_add_explicit(&w->s->st_conns, 1, memory_order_relaxed);
    c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_close);
    h2o_accept(&w->accept_ctx, c->sock);
    /* For plain HTTP/1 h2o creates the connection synchronously and keeps it
     * in sock->data: that is how an exchange finds its socket. */
    c->h2oconn = c->sock->data;
    if (c->h2oconn != NULL)
        map_put(w, c);
}

/* True when h2o is neither writing to the connection nor holding a partial
 * request: it only waits for the next request on a keep-alive connection.
 * (_cb.write is set by h2o_socket_write until the write completes.) */
static int conn_is_idle(const struct srv_conn *c)
{
    if (c->x != NULL || c->sock == NULL)
        return 0;
    if (c->sock->_cb.write != NULL)
        return 0;
    return c->sock->input == NULL || c->sock->input->size == 0;
}

/* shutdown(2) makes h2o's pending read or write fail, so h2o itself closes
 * the connection and disposes of its request through its normal path. */
static void conn_shutdown(struct srv_conn *c)
{
    if (c->state == CONN_OPEN && c->sock != NULL)
        shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
}

static void close_idle_conns(struct sift_server_worker *w)
{
    for (struct srv_link *l = w->conns.next; l != &w->conns; l = l->next) {
        struct srv_conn *c = SIFT_CONTAINER_OF(l, struct srv_conn, link);
        if (conn_is_idle(c))
            conn_shutdown(c);
    }
}

/* Checks exchanges whose response is idle (no write in flight) for a client
 * that has gone: h2o reads nothing while a handler works, so without this a
 * client that hangs up before the first byte would go unnoticed. */
static void check_clients(struct sift_server_worker *w)
{
    for (struct srv_link *l = w->exchanges.next; l != &w->exchanges; l = l->next) {
        sift_http_exchange *x = SIFT_CONTAINER_OF(l, sift_http_exchange, link);
        if (!srv_exchange_idle(x))
            continue;
        char b;
        ssize_t n = recv(h2o_socket_get_fd(x->conn->sock), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            srv_exchange_kill(x, 1);
    }
}

/* ---- worker lifecycle ---- */

static void set_worker_state(struct sift_server_worker *w, enum worker_state st)
{
    sift_debug(NULL, "server: worker %d state %d -> %d", w->index, (int)w->state, (int)st);
    w->state = st;
}

static void on_check_timer(uv_timer_t *t)
{
    struct sift_server_worker *w = SIFT_CONTAINER_OF(t, struct sift_server_worker, check_timer);
    if (w->state == W_RUNNING || w->state == W_DRAINING)
        check_clients(w);
    if (w->state == W_DRAINING)
        close_idle_conns(w);
}

static void on_defer_timer(uv_timer_t *t)
{
    srv_run_deferred(SIFT_CONTAINER_OF(t, struct sift_server_worker, defer_timer));
}

void srv_worker_defer(struct sift_server_worker *w, sift_http_exchange *x)
{
    if (!x->deferred) {
        x->deferred = 1;
        srv_link_insert(&w->deferred, &x->defer_link);
    }
    /* Once the worker is closing, leftovers are freed after its loop ends. */
    if (w->handles_inited && w->state < W_CLOSING && !uv_is_active((uv_handle_t *)&w->defer_timer))
        uv_timer_start(&w->defer_timer, on_defer_timer, 0, 0);
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Everything the worker owns goes, in an order where nothing still running
 * can see freed memory: users are told (root context cancelled), the stop
 * hook runs, our handles close; exchanges users still hold are freed only
 * once the loop has stopped and no user callback can run any more. */
static void worker_close(struct sift_server_worker *w)
{
    sift_server *s = w->s;
    set_worker_state(w, W_CLOSING);
    if (w->root != NULL)
        sift_ctx_cancel(w->root, SIFT_ECANCELED, "server shutting down");
    if (s->opts.on_worker_stop != NULL && w->start_rc == 0)
        s->opts.on_worker_stop(w, &w->loop, s->opts.worker_udata);
    sift_ctx_release(w->root);
    w->root = NULL;
    if (w->handles_inited) {
        pthread_mutex_lock(&s->mu);
        close_if_open((uv_handle_t *)&w->stop_async);
        pthread_mutex_unlock(&s->mu);
        close_if_open((uv_handle_t *)&w->grace_timer);
        close_if_open((uv_handle_t *)&w->check_timer);
        close_if_open((uv_handle_t *)&w->defer_timer);
        close_if_open((uv_handle_t *)&w->listener);
    }
    if (w->listen_fd >= 0) { /* init failed before the handle adopted it */
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    if (w->h2o_inited) {
        /* h2o_context_request_shutdown armed HTTP/2's GOAWAY resend timer on
         * one_sec_timeout; dispose asserts that no entry is left. */
        if (h2o_timeout_is_linked(&w->h2octx.http2._graceful_shutdown_timeout))
            h2o_timeout_unlink(&w->h2octx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&w->h2octx);
        w->h2o_inited = 0;
    }
}

void srv_worker_maybe_finish(struct sift_server_worker *w)
{
    if ((w->state == W_DRAINING || w->state == W_FORCING) && w->nconns == 0)
        worker_close(w);
}

static void worker_force(struct sift_server_worker *w)
{
    if (w->state != W_DRAINING)
        return;
    set_worker_state(w, W_FORCING);
    uv_timer_stop(&w->check_timer);
    /* Users' hooks run now and may finish their exchanges themselves. */
    sift_ctx_cancel(w->root, SIFT_ECANCELED, "server shutting down");
    for (struct srv_link *l = w->exchanges.next; l != &w->exchanges; l = l->next) {
        sift_http_exchange *x = SIFT_CONTAINER_OF(l, sift_http_exchange, link);
        srv_exchange_kill(x, 0);
    }
    for (struct srv_link *l = w->conns.next; l != &w->conns; l = l->next)
        conn_shutdown(SIFT_CONTAINER_OF(l, struct srv_conn, link));
    srv_worker_maybe_finish(w);
}

static void on_grace_timer(uv_timer_t *t)
{
    struct sift_server_worker *w = SIFT_CONTAINER_OF(t, struct sift_server_worker, grace_timer);
    if (w->state == W_FORCING) {
        /* Should not happen: every socket was shut down. Say what we wait for. */
        sift_warn(NULL, "server: worker %d still waits for %zu connections to close", w->index,
                  w->nconns);
        return;
    }
    worker_force(w);
    if (w->state == W_FORCING)
        uv_timer_start(&w->grace_timer, on_grace_timer, 1000, 1000);
}

static void worker_begin_drain(struct sift_server_worker *w)
{
    if (w->state != W_RUNNING)
        return;
    set_worker_state(w, W_DRAINING);
    close_if_open((uv_handle_t *)&w->listener);
    h2o_context_request_shutdown(&w->h2octx);
    close_idle_conns(w);
    /* Keep closing connections as their last response completes. */
    uv_timer_start(&w->check_timer, on_check_timer, DRAIN_SWEEP_MS, DRAIN_SWEEP_MS);
    int grace = w->s->opts.shutdown_grace_ms;
    if (grace <= 0) {
        on_grace_timer(&w->grace_timer);
        return;
    }
    uv_timer_start(&w->grace_timer, on_grace_timer, (uint64_t)grace, 0);
    srv_worker_maybe_finish(w);
}

static void on_stop_async(uv_async_t *a)
{
    worker_begin_drain(SIFT_CONTAINER_OF(a, struct sift_server_worker, stop_async));
}

static void close_leftover(uv_handle_t *h, void *arg)
{
    int *n = arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
        (*n)++;
    }
}

static int worker_init(struct sift_server_worker *w)
{
    sift_server *s = w->s;
    int rc;
    if ((w->root = sift_ctx_new_root(&w->loop)) == NULL)
        return sift_err_set(&w->start_err, SIFT_ENOMEM, "out of memory starting worker %d",
                            w->index);
    /* Every connection waiting for its response holds one empty input
     * buffer of this size (libuv reads until EAGAIN into a fresh one). h2o's
     * 8 KB was a fifth of sift's memory per run at 10,000 open streams; 4 KB
     * still holds one read of h2o's 4 KB minimum. Set before the thread's
     * first socket, as h2o recycles buffers of exactly this size. */
    h2o_socket_buffer_prototype._initial_buf.capacity = H2O_SOCKET_INITIAL_INPUT_BUFFER_SIZE;
    h2o_context_init(&w->h2octx, &w->loop, &s->h2oconf);
    w->h2o_inited = 1;
    w->accept_ctx.ctx = &w->h2octx;
    w->accept_ctx.hosts = s->h2oconf.hosts;
    uv_tcp_init(&w->loop, &w->listener);
    uv_async_init(&w->loop, &w->stop_async, on_stop_async);
    uv_timer_init(&w->loop, &w->grace_timer);
    uv_timer_init(&w->loop, &w->check_timer);
    uv_timer_init(&w->loop, &w->defer_timer);
    w->handles_inited = 1;
    if ((rc = uv_tcp_open(&w->listener, w->listen_fd)) != 0)
        return sift_err_set(&w->start_err, SIFT_EIO, "worker %d: cannot adopt socket: %s", w->index,
                            uv_strerror(rc));
    w->listen_fd = -1; /* the handle owns it now */
    if ((rc = uv_listen((uv_stream_t *)&w->listener, s->opts.backlog, on_accept)) != 0)
        return sift_err_set(&w->start_err, SIFT_EIO, "worker %d: listen failed: %s", w->index,
                            uv_strerror(rc));
    if (s->opts.disconnect_check_ms > 0)
        uv_timer_start(&w->check_timer, on_check_timer, (uint64_t)s->opts.disconnect_check_ms,
                       (uint64_t)s->opts.disconnect_check_ms);
    if (s->opts.on_worker_start != NULL) {
        rc = s->opts.on_worker_start(w, &w->loop, s->opts.worker_udata);
        if (rc != 0)
            return sift_err_set(&w->start_err, rc < 0 ? rc : SIFT_EINTERNAL,
                                "worker %d: start hook failed (%s)", w->index,
                                sift_err_name(rc < 0 ? rc : SIFT_EINTERNAL));
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct sift_server_worker *w = arg;
    sift_server *s = w->s;
    int rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        sift_err_set(&w->start_err, SIFT_EIO, "worker %d: cannot create loop: %s", w->index,
                     uv_strerror(rc));
        w->start_rc = SIFT_EIO;
        pthread_mutex_lock(&s->mu);
        s->workers_ready++;
        s->workers_exited++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    w->start_rc = worker_init(w);

    pthread_mutex_lock(&s->mu);
    if (w->start_rc == 0)
        set_worker_state(w, W_RUNNING);
    s->workers_ready++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);

    if (w->start_rc != 0)
        worker_close(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);

    /* Handles a stop hook forgot would keep the loop from closing. */
    if (uv_loop_close(&w->loop) == UV_EBUSY) {
        int n = 0;
        uv_walk(&w->loop, close_leftover, &n);
        if (n > 0)
            sift_warn(NULL, "server: worker %d closed %d handles left open on its loop", w->index,
                      n);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
    }
    while (!srv_link_empty(&w->exchanges))
        srv_exchange_free(SIFT_CONTAINER_OF(w->exchanges.next, sift_http_exchange, link));
    sift_free(w->map);
    w->map = NULL;

    pthread_mutex_lock(&s->mu);
    set_worker_state(w, W_DONE);
    s->workers_exited++;
    if (s->workers_exited == s->nworkers && s->exit_notify != NULL)
        uv_async_send(s->exit_notify);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- h2o glue ---- */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct sift_server_worker *w =
        SIFT_CONTAINER_OF(req->conn->ctx, struct sift_server_worker, h2octx);
    srv_dispatch(w, req);
    return 0;
}

/* h2o answers some requests itself before any handler sees them (413 for a
 * body over the limit, 400 for a malformed request) with a text body. They
 * are bound to the host's fallback path; this filter rewrites their body
 * into the API's JSON error shape. */
static void errfix_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
                           h2o_send_state_t state)
{
    struct errfix_ostream *os = (struct errfix_ostream *)self;
    if (state != H2O_SEND_STATE_FINAL || req->bytes_sent != 0) {
        h2o_ostream_send_next(self, req, bufs, n, state);
        return;
    }
    sift_buf msg, out;
    sift_buf_init(&msg, 512);
    sift_buf_init(&out, 0);
    for (size_t i = 0; i < n; i++)
        if (sift_buf_append(&msg, bufs[i].base, bufs[i].len) != 0)
            break;
    while (msg.len > 0 && (msg.data[msg.len - 1] == '\n' || msg.data[msg.len - 1] == '\r'))
        msg.len--;
    const char *code = "http_error";
    switch (req->res.status) {
    case 400:
        code = "invalid_argument";
        break;
    case 404:
        code = "not_found";
        break;
    case 413:
        code = "too_large";
        break;
    default:
        if (req->res.status >= 500)
            code = "internal";
        break;
    }
    if (req->res.status == 413) {
        atomic_fetch_add_explicit(&os->s->st_too_large, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&os->s->st_requests, 1, memory_order_relaxed);
    }
    int rc = sift_buf_printf(&out, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    if (rc == 0 && req->res.status == 413)
        rc = sift_buf_printf(&out, "request body is larger than the limit of %zu bytes",
                             os->s->opts.max_body_bytes);
    else if (rc == 0)
        rc = sift_buf_json_escape(&out, msg.data ? msg.data : "", msg.len);
    if (rc == 0)
        rc = sift_buf_puts(&out, "\"}}\n");
    if (rc != 0) {
        sift_buf_free(&msg);
        sift_buf_free(&out);
        h2o_ostream_send_next(self, req, bufs, n, state);
        return;
    }
    h2o_iovec_t body = h2o_strdup(&req->pool, out.data, out.len);
    sift_buf_free(&msg);
    sift_buf_free(&out);
    req->res.content_length = body.len;
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                   H2O_STRLIT("application/json"), 1);
    h2o_ostream_send_next(self, req, &body, 1, state);
}

static void errfix_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    if (req->res.status >= 400) {
        struct errfix_ostream *os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
        os->super.do_send = errfix_do_send;
        os->s = ((struct errfix_filter *)self)->s;
        slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

static void setup_h2o(sift_server *s)
{
    h2o_config_init(&s->h2oconf);
    s->h2oconf_inited = 1;
    s->h2oconf.server_name = h2o_iovec_init(H2O_STRLIT("sift"));
    s->h2oconf.max_request_entity_size = s->opts.max_body_bytes;
    /* One request at a time per connection: exchanges map 1:1 to sockets. */
    s->h2oconf.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->h2oconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct srv_handler *h = (void *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->s = s;
    struct errfix_filter *f = (void *)h2o_create_filter(&host->fallback_path, sizeof(*f));
    f->super.on_setup_ostream = errfix_setup;
    f->s = s;
}

/* ---- sockets and process setup ---- */

static int resolve(const sift_server *s, int port, struct sockaddr_storage *ss, sift_err *err)
{
    const char *host = s->host;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return sift_err_set(err, SIFT_EINVAL,
                        "server host \"%s\" is not an IP address (use e.g. 127.0.0.1 or ::)",
                        s->host);
}

static int open_listener(sift_server *s, int port, int *fd_out, int *port_out, sift_err *err)
{
    struct sockaddr_storage ss;
    int rc = resolve(s, port, &ss, err);
    if (rc != 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sift_err_set(err, SIFT_EIO, "cannot create a socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        rc = sift_err_set(err, SIFT_EIO, "SO_REUSEPORT not available: %s", strerror(errno));
        goto fail;
    }
    socklen_t len =
        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        rc = sift_err_set(err, SIFT_EIO, "cannot listen on %s:%d: %s", s->host, port,
                          strerror(errno));
        goto fail;
    }
    if (listen(fd, s->opts.backlog) != 0) {
        rc = sift_err_set(err, SIFT_EIO, "listen on %s:%d failed: %s", s->host, port,
                          strerror(errno));
        goto fail;
    }
    len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            sift_info(NULL, "raised the open-file limit from %llu to %llu", (unsigned long long)old,
                      (unsigned long long)rl.rlim_max);
        else
            rl.rlim_cur = old;
    }
    if (rl.rlim_cur < NOFILE_LOW)
        sift_warn(NULL,
                  "the open-file limit is %llu: every client connection holds one, so the "
                  "server cannot hold more than about that many streams; raise the hard "
                  "limit (ulimit -Hn, LimitNOFILE=) to at least %d",
                  (unsigned long long)rl.rlim_cur, NOFILE_LOW * 2);
}

#ifdef SIFT_SANITIZE
/* h2o keeps per-thread free lists of memory-pool chunks and socket buffers
 * (at most 16 of each) in thread-local variables it never releases when a
 * thread exits, and the pool's list is not reachable from outside h2o. That
 * bounded cache is all LeakSanitizer would report for a server that shut
 * down cleanly, so it is the one thing suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\n";
}
#endif

/* ---- public API ---- */

sift_server *sift_server_new(const sift_server_opts *opts, sift_err *err)
{
    sift_server *s = sift_calloc(1, sizeof(*s));
    if (s == NULL) {
        sift_err_set(err, SIFT_ENOMEM, "out of memory creating the server");
        return NULL;
    }
    if (opts != NULL)
        s->opts = *opts;
    const char *host = s->opts.host ? s->opts.host : "127.0.0.1";
    if (strlen(host) >= sizeof(s->host) || s->opts.port < 0 || s->opts.port > 65535) {
        sift_err_set(err, SIFT_EINVAL, "bad server address %s:%d", host, s->opts.port);
        sift_free(s);
        return NULL;
    }
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->opts.host = s->host;
    if (s->opts.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->opts.workers = n > 0 ? (int)n : 1;
    }
    if (s->opts.max_body_bytes == 0)
        s->opts.max_body_bytes = DEFAULT_MAX_BODY;
    if (s->opts.stream_buffer_limit == 0)
        s->opts.stream_buffer_limit = DEFAULT_STREAM_LIMIT;
    if (s->opts.shutdown_grace_ms == 0)
        s->opts.shutdown_grace_ms = DEFAULT_GRACE_MS;
    if (s->opts.disconnect_check_ms == 0)
        s->opts.disconnect_check_ms = DEFAULT_CHECK_MS;
    if (s->opts.backlog <= 0)
        s->opts.backlog = DEFAULT_BACKLOG;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    atomic_store(&s->state, S_NEW);
    return s;
}

int sift_server_route(sift_server *s, const char *method, const char *path, sift_http_handler fn,
                      void *udata)
{
    if (atomic_load(&s->state) != S_NEW)
        return SIFT_ESTATE;
    if (path == NULL || path[0] != '/' || fn == NULL)
        return SIFT_EINVAL;
    struct srv_route *nr = sift_realloc(s->routes, (s->nroutes + 1) * sizeof(*nr));
    if (nr == NULL)
        return SIFT_ENOMEM;
    s->routes = nr;
    struct srv_route *r = &nr[s->nroutes];
    memset(r, 0, sizeof(*r));
    size_t len = strlen(path);
    r->prefix = path[len - 1] == '*';
    r->path = sift_strndup(path, r->prefix ? len - 1 : len);
    r->method = method ? sift_strdup(method) : NULL;
    if (r->path == NULL || (method != NULL && r->method == NULL)) {
        sift_free(r->path);
        sift_free(r->method);
        return SIFT_ENOMEM;
    }
    r->path_len = strlen(r->path);
    r->fn = fn;
    r->udata = udata;
    s->nroutes++;
    return 0;
}

int sift_server_start(sift_server *s, sift_err *err)
{
    int expected = S_NEW;
    if (!atomic_compare_exchange_strong(&s->state, &expected, S_STARTING))
        return sift_err_set(err, SIFT_ESTATE, "the server was already started");
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    setup_h2o(s);

    int rc = 0;
    s->workers = sift_calloc((size_t)s->opts.workers, sizeof(*s->workers));
    if (s->workers == NULL) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory starting the server");
        goto fail;
    }
    s->nworkers = s->opts.workers;
    int port = s->opts.port;
    for (int i = 0; i < s->nworkers; i++) {
        struct sift_server_worker *w = &s->workers[i];
        w->s = s;
        w->index = i;
        w->listen_fd = -1;
        srv_link_init(&w->conns);
        srv_link_init(&w->exchanges);
        srv_link_init(&w->deferred);
    }
    for (int i = 0; i < s->nworkers; i++) {
        rc = open_listener(s, port, &s->workers[i].listen_fd, &port, err);
        if (rc != 0)
            goto fail;
    }
    s->port = port;
    for (int i = 0; i < s->nworkers; i++) {
        struct sift_server_worker *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            rc = sift_err_set(err, SIFT_EIO, "cannot start worker thread %d", i);
            close(w->listen_fd);
            w->listen_fd = -1;
            /* Workers not started count as exited for the waiters. */
            pthread_mutex_lock(&s->mu);
            s->workers_ready += s->nworkers - i;
            s->workers_exited += s->nworkers - i;
            pthread_mutex_unlock(&s->mu);
            for (int j = i + 1; j < s->nworkers; j++) {
                close(s->workers[j].listen_fd);
                s->workers[j].listen_fd = -1;
            }
            break;
        }
        w->thread_started = 1;
    }
    pthread_mutex_lock(&s->mu);
    while (s->workers_ready < s->nworkers)
        pthread_cond_wait(&s->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers && rc == 0; i++)
        if (s->workers[i].start_rc != 0)
            rc = sift_err_copy(err, &s->workers[i].start_err);
    if (rc != 0) {
        atomic_store(&s->state, S_RUNNING);
        sift_server_stop(s);
        sift_server_wait(s);
        atomic_store(&s->state, S_STOPPED);
        s->port = 0;
        return rc;
    }
    atomic_store(&s->state, S_RUNNING);
    sift_info(NULL, "server listening on %s:%d with %d workers", s->host, s->port, s->nworkers);
    return 0;
fail:
    if (s->workers != NULL)
        for (int i = 0; i < s->nworkers; i++)
            if (s->workers[i].listen_fd >= 0)
                close(s->workers[i].listen_fd);
    s->nworkers = 0;
    atomic_store(&s->state, S_STOPPED);
    return rc;
}

int sift_server_port(const sift_server *s)
{
    return s->port;
}

void sift_server_stop(sift_server *s)
{
    int st = atomic_load(&s->state);
    if (st != S_RUNNING && st != S_STOPPING)
        return;
    atomic_store(&s->state, S_STOPPING);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nworkers; i++) {
        struct sift_server_worker *w = &s->workers[i];
        /* stop_async is closed under the same mutex, so it is live here. */
        if (w->handles_inited && !uv_is_closing((uv_handle_t *)&w->stop_async))
            uv_async_send(&w->stop_async);
    }
    pthread_mutex_unlock(&s->mu);
}

void sift_server_wait(sift_server *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->workers_exited < s->nworkers)
        pthread_cond_wait(&s->cond, &s->mu);
    int join = !s->joined;
    s->joined = 1;
    pthread_mutex_unlock(&s->mu);
    if (!join)
        return;
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].thread_started)
            pthread_join(s->workers[i].thread, NULL);
    if (atomic_load(&s->state) == S_STOPPING)
        atomic_store(&s->state, S_STOPPED);
}

struct sig_waiter {
    sift_server *s;
    uv_signal_t sigint, sigterm;
    uv_async_t exited;
    int signum;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct sig_waiter *sw = h->data;
    if (sw->signum == 0) {
        sw->signum = signum;
        sift_info(NULL, "received %s: shutting down (grace period %d ms)",
                  signum == SIGINT ? "SIGINT" : "SIGTERM", sw->s->opts.shutdown_grace_ms);
    }
    sift_server_stop(sw->s);
}

static void on_workers_exited(uv_async_t *a)
{
    struct sig_waiter *sw = a->data;
    uv_close((uv_handle_t *)&sw->sigint, NULL);
    uv_close((uv_handle_t *)&sw->sigterm, NULL);
    uv_close((uv_handle_t *)&sw->exited, NULL);
}

int sift_server_run_until_signal(sift_server *s)
{
    struct sig_waiter sw;
    uv_loop_t loop;
    memset(&sw, 0, sizeof(sw));
    sw.s = s;
    if (uv_loop_init(&loop) != 0) {
        sift_server_stop(s);
        sift_server_wait(s);
        return 0;
    }
    uv_signal_init(&loop, &sw.sigint);
    uv_signal_init(&loop, &sw.sigterm);
    uv_async_init(&loop, &sw.exited, on_workers_exited);
    sw.sigint.data = sw.sigterm.data = sw.exited.data = &sw;
    uv_signal_start(&sw.sigint, on_signal, SIGINT);
    uv_signal_start(&sw.sigterm, on_signal, SIGTERM);
    pthread_mutex_lock(&s->mu);
    s->exit_notify = &sw.exited;
    if (s->workers_exited == s->nworkers)
        uv_async_send(&sw.exited);
    pthread_mutex_unlock(&s->mu);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_mutex_lock(&s->mu);
    s->exit_notify = NULL;
    pthread_mutex_unlock(&s->mu);
    uv_loop_close(&loop);
    sift_server_wait(s);
    return sw.signum;
}

void sift_server_free(sift_server *s)
{
    if (s == NULL)
        return;
    sift_server_stop(s);
    sift_server_wait(s);
    if (s->h2oconf_inited)
        h2o_config_dispose(&s->h2oconf);
    for (size_t i = 0; i < s->nroutes; i++) {
        sift_free(s->routes[i].path);
        sift_free(s->routes[i].method);
    }
    sift_free(s->routes);
    sift_free(s->workers);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    sift_free(s);
}

void sift_server_stats_get(const sift_server *s, sift_server_stats *out)
{
    sift_server *m = (sift_server *)s;
    out->requests_total = atomic_load_explicit(&m->st_requests, memory_order_relaxed);
    out->requests_active = atomic_load_explicit(&m->st_active, memory_order_relaxed);
    out->streams_active = atomic_load_explicit(&m->st_streams, memory_order_relaxed);
    out->too_large = atomic_load_explicit(&m->st_too_large, memory_order_relaxed);
    out->disconnects = atomic_load_explicit(&m->st_disconnects, memory_order_relaxed);
    out->connections = atomic_load_explicit(&m->st_conns, memory_order_relaxed);
}

int sift_server_worker_index(const sift_server_worker *w)
{
    return w->index;
}

uv_loop_t *sift_server_worker_loop(sift_server_worker *w)
{
    return &w->loop;
}

void sift_server_worker_set_data(sift_server_worker *w, void *data)
{
    w->data = data;
}

void *sift_server_worker_data(const sift_server_worker *w)
{
    return w->data;
}

sift_ctx *sift_server_worker_ctx(sift_server_worker *w)
{
    return w->root;
}

sift_server *sift_server_worker_server(sift_server_worker *w)
{
    return w->s;
}
