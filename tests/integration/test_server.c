/* The HTTP server over real sockets on 127.0.0.1: routes, bodies, limits,
 * SSE streams, many concurrent clients, disconnects, backpressure and
 * graceful shutdown. Clients are libcurl (easy and multi) and raw sockets.
 * Handlers run on the server's worker threads; they record what happened in
 * `rec` (under a mutex) and the test thread asserts on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/server.h"

/* ---- what the handlers saw ---- */

static struct {
    pthread_mutex_t mu;
    int cancels;
    char last_cancel[SIFT_ERR_MSG_MAX];
    int write_canceled; /* writes that returned SIFT_ECANCELED */
    int hang_cancels;
    int ebusy, drains, flood_done;
    size_t max_buffered, limit;
    int workers_started, workers_stopped;
    int streams_done;
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.mu);
    rec.cancels = rec.write_canceled = rec.hang_cancels = 0;
    rec.ebusy = rec.drains = rec.flood_done = rec.streams_done = 0;
    rec.max_buffered = 0;
    rec.last_cancel[0] = '\0';
    pthread_mutex_unlock(&rec.mu);
}

static int rec_get(const int *field)
{
    pthread_mutex_lock(&rec.mu);
    int v = *field;
    pthread_mutex_unlock(&rec.mu);
    return v;
}

static void rec_add(int *field, int n)
{
    pthread_mutex_lock(&rec.mu);
    *field += n;
    pthread_mutex_unlock(&rec.mu);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Waits up to 10 s for *field >= want. */
static int wait_for(const int *field, int want)
{
    double end = now_ms() + 10000;
    while (rec_get(field) < want) {
        if (now_ms() > end)
            return 0;
        usleep(2000);
    }
    return 1;
}

/* ---- handlers ---- */

static void h_hello(sift_http_exchange *x, void *udata)
{
    sift_http_respond(x, 200, "text/plain", "hello", 5);
}

static void h_echo(sift_http_exchange *x, void *udata)
{
    size_t len;
    const char *body = sift_http_body(x, &len);
    const char *xt = sift_http_header(x, "x-TEST", NULL);
    char q[64];
    if (sift_http_query_param(x, "q", q, sizeof(q)) < 0)
        strcpy(q, "-");
    sift_http_set_header(x, "X-Echo-Header", xt ? xt : "-");
    sift_http_set_header(x, "x-echo-q", q);
    sift_http_set_header(x, "x-echo-len", len == strlen(body) ? "nul-ok" : "bad");
    sift_http_respond(x, 200, "application/json", body, len);
}

static void h_product(sift_http_exchange *x, void *udata)
{
    char out[256];
    int n = snprintf(out, sizeof(out), "product=%s method=%s", sift_http_route_rest(x),
                     sift_http_method(x));
    sift_http_respond(x, 200, "text/plain", out, (size_t)n);
}

static void h_worker(sift_http_exchange *x, void *udata)
{
    int *data = sift_http_worker_data(x);
    char out[64];
    int n = snprintf(out, sizeof(out), "%d", data ? *data : -1);
    sift_http_respond(x, 200, "text/plain", out, (size_t)n);
}

static void h_error(sift_http_exchange *x, void *udata)
{
    sift_http_respond_error(x, 422, "invalid_argument", "bad \"quote\"\n and \\ slash");
}

/* A request that is never answered: only its context's cancellation ends it. */
struct hang {
    sift_ctx_hook hook;
    sift_http_exchange *x;
};

static void hang_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    struct hang *h = (struct hang *)hook;
    pthread_mutex_lock(&rec.mu);
    rec.hang_cancels++;
    rec.cancels++;
    snprintf(rec.last_cancel, sizeof(rec.last_cancel), "%s", cause->msg);
    pthread_mutex_unlock(&rec.mu);
    sift_http_exchange_release(h->x);
    sift_free(h);
}

static void h_hang(sift_http_exchange *x, void *udata)
{
    struct hang *h = sift_calloc(1, sizeof(*h));
    h->x = x;
    if (sift_ctx_add_hook(sift_http_ctx(x), &h->hook, hang_cancel) != 0) {
        sift_http_exchange_release(x);
        sift_free(h);
    }
}

/* An SSE producer: n events (0: forever), one every `ms` ms (0: as fast as
 * backpressure allows). lazy=1: the cancel hook only records, and the
 * producer learns of the disconnect from a write returning SIFT_ECANCELED
 * (the exchange must stay valid until then). */
struct producer {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_http_exchange *x;
    int i, n, ms, size, lazy, finished;
    char *pad;
};

static void prod_closed(uv_handle_t *h)
{
    struct producer *p = h->data;
    sift_free(p->pad);
    sift_free(p);
}

static void prod_finish(struct producer *p)
{
    if (p->finished)
        return;
    p->finished = 1;
    sift_ctx_remove_hook(&p->hook);
    uv_close((uv_handle_t *)&p->timer, prod_closed);
}

static void prod_step(struct producer *p);

static void prod_drain(sift_http_exchange *x, void *udata)
{
    struct producer *p = udata;
    rec_add(&rec.drains, 1);
    if (p->ms > 0)
        uv_timer_again(&p->timer);
    else
        prod_step(p);
}

static void prod_step(struct producer *p)
{
    if (p->x == NULL)
        return;
    while (p->n == 0 || p->i < p->n) {
        char data[64];
        int dn = snprintf(data, sizeof(data), "%d", p->i);
        int rc;
        if (p->size > 0) {
            /* "<i> <pad>" so the reader can check order and size */
            sift_buf b;
            sift_buf_init(&b, 0);
            sift_buf_printf(&b, "%d %s", p->i, p->pad);
            rc = sift_http_sse_send(p->x, "tick", b.data, b.len);
            sift_buf_free(&b);
        } else {
            rc = sift_http_sse_send(p->x, "tick", data, (size_t)dn);
        }
        if (rc == SIFT_EBUSY) {
            rec_add(&rec.ebusy, 1);
            if (p->ms > 0)
                uv_timer_stop(&p->timer);
            sift_http_stream_on_drain(p->x, prod_drain, p);
            return;
        }
        if (rc != 0) {
            if (rc == SIFT_ECANCELED)
                rec_add(&rec.write_canceled, 1);
            sift_http_stream_abort(p->x);
            p->x = NULL;
            prod_finish(p);
            return;
        }
        p->i++;
        size_t b = sift_http_stream_buffered(p->x);
        pthread_mutex_lock(&rec.mu);
        if (b > rec.max_buffered)
            rec.max_buffered = b;
        rec.limit = sift_http_stream_limit(p->x);
        pthread_mutex_unlock(&rec.mu);
        if (p->ms > 0)
            return;
    }
    if (sift_http_sse_send(p->x, "done", "end", 3) == SIFT_EBUSY) {
        sift_http_stream_on_drain(p->x, prod_drain, p);
        return;
    }
    sift_http_stream_end(p->x);
    p->x = NULL;
    rec_add(&rec.streams_done, 1);
    prod_finish(p);
}

static void prod_tick(uv_timer_t *t)
{
    prod_step(t->data);
}

static void prod_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    struct producer *p = (struct producer *)((char *)hook - offsetof(struct producer, hook));
    pthread_mutex_lock(&rec.mu);
    rec.cancels++;
    snprintf(rec.last_cancel, sizeof(rec.last_cancel), "%s", cause->msg);
    pthread_mutex_unlock(&rec.mu);
    if (p->lazy)
        return; /* the next tick's write reports SIFT_ECANCELED */
    if (p->x != NULL)
        sift_http_stream_abort(p->x);
    p->x = NULL;
    prod_finish(p);
}

static int qint(sift_http_exchange *x, const char *name, int def)
{
    char buf[32];
    return sift_http_query_param(x, name, buf, sizeof(buf)) > 0 ? atoi(buf) : def;
}

static void h_sse(sift_http_exchange *x, void *udata)
{
    struct producer *p = sift_calloc(1, sizeof(*p));
    p->x = x;
    p->n = qint(x, "n", 10);
    p->ms = qint(x, "ms", 0);
    p->size = qint(x, "size", 0);
    p->lazy = qint(x, "lazy", 0);
    if (p->size > 0) {
        p->pad = sift_malloc((size_t)p->size + 1);
        memset(p->pad, 'x', (size_t)p->size);
        p->pad[p->size] = '\0';
    }
    uv_timer_init(sift_http_loop(x), &p->timer);
    p->timer.data = p;
    if (sift_ctx_add_hook(sift_http_ctx(x), &p->hook, prod_cancel) != 0 ||
        sift_http_stream_start(x, 200, "text/event-stream") != 0) {
        sift_http_stream_abort(x);
        p->x = NULL;
        prod_finish(p);
        return;
    }
    if (p->ms > 0)
        uv_timer_start(&p->timer, prod_tick, (uint64_t)p->ms, (uint64_t)p->ms);
    else
        prod_step(p);
}

static void lines_drained(sift_http_exchange *x, void *udata)
{
    sift_http_sse_send(x, "drained", "yes", 3);
    sift_http_stream_end(x);
}

/* Multi-line data, a comment, an event without a name. */
static void h_lines(sift_http_exchange *x, void *udata)
{
    sift_http_stream_start(x, 200, "text/event-stream");
    sift_http_sse_send(x, "msg", "a\nb\r\nc\rd", 8);
    sift_http_sse_send(x, NULL, "tail\n", 5);
    sift_http_sse_send(x, "empty", "", 0);
    sift_http_sse_comment(x, "ping");
    int bad = sift_http_sse_send(x, "two\nlines", "x", 1);
    char out[32];
    snprintf(out, sizeof(out), "%d", bad);
    sift_http_sse_send(x, "bad", out, strlen(out));
    /* one write larger than the whole limit can never fit */
    size_t big = sift_http_stream_limit(x) + 1;
    char *huge = sift_calloc(1, big);
    snprintf(out, sizeof(out), "%d", sift_http_stream_write(x, huge, big));
    sift_free(huge);
    sift_http_sse_send(x, "huge", out, strlen(out));
    /* there is room: the drain callback comes on the next loop iteration */
    sift_http_stream_on_drain(x, lines_drained, NULL);
}

/* Mock-LLM style: two events, then the connection is dropped mid-stream. */
struct dropper {
    uv_timer_t timer;
    sift_http_exchange *x;
};

static void dropper_closed(uv_handle_t *h)
{
    sift_free(h->data);
}

static void dropper_fire(uv_timer_t *t)
{
    struct dropper *d = t->data;
    sift_http_stream_abort(d->x);
    uv_close((uv_handle_t *)&d->timer, dropper_closed);
}

static void h_drop(sift_http_exchange *x, void *udata)
{
    if (qint(x, "before", 0)) {
        sift_http_stream_abort(x); /* no response at all */
        return;
    }
    sift_http_stream_start(x, 200, "text/event-stream");
    sift_http_sse_send(x, "tick", "0", 1);
    sift_http_sse_send(x, "tick", "1", 1);
    struct dropper *d = sift_calloc(1, sizeof(*d));
    d->x = x;
    uv_timer_init(sift_http_loop(x), &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, dropper_fire, 30, 0);
}

/* Ending a stream that never started is a handler bug: 500. */
static void h_end_unstarted(sift_http_exchange *x, void *udata)
{
    int rc = sift_http_stream_end(x);
    rec_add(&rec.streams_done, rc == SIFT_ESTATE ? 1 : 0);
}

/* ---- server setup ---- */

static int worker_ids[16];

static int on_start(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    int i = sift_server_worker_index(w);
    worker_ids[i] = 100 + i;
    sift_server_worker_set_data(w, &worker_ids[i]);
    rec_add(&rec.workers_started, 1);
    return loop == sift_server_worker_loop(w) ? 0 : SIFT_EINTERNAL;
}

static void on_stop(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    rec_add(&rec.workers_stopped, 1);
}

static sift_server *start_server(int grace_ms)
{
    sift_server_opts o = {0};
    o.workers = 2;
    o.max_body_bytes = 64 * 1024;
    o.stream_buffer_limit = 64 * 1024;
    o.shutdown_grace_ms = grace_ms;
    o.disconnect_check_ms = 50;
    o.on_worker_start = on_start;
    o.on_worker_stop = on_stop;
    sift_err err = {0};
    sift_server *s = sift_server_new(&o, &err);
    assert_non_null(s);
    assert_int_equal(sift_server_route(s, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(sift_server_route(s, "POST", "/echo", h_echo, NULL), 0);
    assert_int_equal(sift_server_route(s, "PUT", "/echo", h_echo, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/v1/products/*", h_product, NULL), 0);
    assert_int_equal(sift_server_route(s, NULL, "/v1/products/special", h_hello, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/worker", h_worker, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/error", h_error, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/hang", h_hang, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/sse", h_sse, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/lines", h_lines, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/drop", h_drop, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "/end-unstarted", h_end_unstarted, NULL), 0);
    assert_int_equal(sift_server_route(s, "GET", "bad", h_sse, NULL), SIFT_EINVAL);
    int rc = sift_server_start(s, &err);
    if (rc != 0)
        fail_msg("start: %s", err.msg);
    assert_true(sift_server_port(s) > 0);
    assert_int_equal(sift_server_route(s, "GET", "/late", h_hello, NULL), SIFT_ESTATE);
    return s;
}

/* ---- clients ---- */

struct resp {
    long status;
    sift_buf body;
    sift_buf headers;
    CURLcode rc;
    int abort_after_events; /* >0: abort the transfer after that many events */
    int events;
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct resp *r = arg;
    sift_buf_append(&r->body, p, sz * n);
    if (r->abort_after_events > 0) {
        int ev = 0;
        for (const char *q = r->body.data; (q = strstr(q, "\n\n")) != NULL; q += 2)
            ev++;
        r->events = ev;
        if (ev >= r->abort_after_events)
            return 0;
    }
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct resp *r = arg;
    sift_buf_append(&r->headers, p, sz * n);
    return sz * n;
}

static CURL *make_easy(int port, const char *method, const char *path, const char *body,
                       size_t body_len, struct curl_slist *hdrs, struct resp *r)
{
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    memset(r, 0, sizeof(*r));
    sift_buf_init(&r->body, 0);
    sift_buf_init(&r->headers, 0);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (hdrs != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    return c;
}

static void do_request(int port, const char *method, const char *path, const char *body,
                       size_t body_len, struct curl_slist *hdrs, struct resp *r)
{
    CURL *c = make_easy(port, method, path, body, body_len, hdrs, r);
    r->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
}

static void resp_free(struct resp *r)
{
    sift_buf_free(&r->body);
    sift_buf_free(&r->headers);
}

static int has_header(const struct resp *r, const char *line)
{
    return r->headers.data != NULL && strcasestr(r->headers.data, line) != NULL;
}

/* The body the /sse handler sends for n small events. */
static void expected_sse(sift_buf *b, int n)
{
    sift_buf_init(b, 0);
    for (int i = 0; i < n; i++)
        sift_buf_printf(b, "event: tick\ndata: %d\n\n", i);
    sift_buf_puts(b, "event: done\ndata: end\n\n");
}

static int raw_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void raw_send(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, 0), (ssize_t)n);
}

/* Reads until EOF (or 20 s). */
static void raw_read_all(int fd, sift_buf *out)
{
    char buf[65536];
    double end = now_ms() + 20000;
    while (now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return;
        sift_buf_append(out, buf, (size_t)n);
    }
}

/* ---- tests ---- */

static void test_routes(void **state)
{
    sift_server *s = start_server(2000);
    int port = sift_server_port(s);
    struct resp r;

    do_request(port, "GET", "/hello", NULL, 0, NULL, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello");
    assert_true(has_header(&r, "content-type: text/plain"));
    resp_free(&r);

    do_request(port, "GET", "/nope?x=1", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_true(has_header(&r, "content-type: application/json"));
    assert_non_null(strstr(r.body.data, "{\"error\":{\"code\":\"not_found\",\"message\":"));
    assert_non_null(strstr(r.body.data, "/nope"));
    resp_free(&r);

    do_request(port, "GET", "/echo", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body.data, "\"code\":\"method_not_allowed\""));
    assert_true(has_header(&r, "allow: POST, PUT"));
    resp_free(&r);

    /* prefix route, and an exact route inside the prefix that takes any method */
    do_request(port, "GET", "/v1/products/sku-42?ignored=1", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "product=sku-42 method=GET");
    resp_free(&r);
    do_request(port, "DELETE", "/v1/products/special", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "hello");
    resp_free(&r);
    do_request(port, "POST", "/v1/products/sku-42", "x", 1, NULL, &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);

    do_request(port, "GET", "/error", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 422);
    assert_string_equal(
        r.body.data,
        "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"bad \\\"quote\\\"\\n and \\\\ "
        "slash\"}}\n");
    resp_free(&r);

    do_request(port, "GET", "/worker", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    int wid = atoi(r.body.data);
    assert_true(wid == 100 || wid == 101);
    resp_free(&r);

    sift_server_stats st;
    sift_server_stats_get(s, &st);
    assert_int_equal(st.requests_total, 8);
    sift_server_free(s);
}

static void test_json_echo_and_413(void **state)
{
    sift_server *s = start_server(2000);
    int port = sift_server_port(s);
    struct resp r;
    struct curl_slist *h = curl_slist_append(NULL, "X-Test: yes please");
    h = curl_slist_append(h, "Content-Type: application/json");
    const char *json = "{\"query\":\"red shoes\",\"limit\":5}";
    do_request(port, "POST", "/echo?q=a%20b+c&z=1", json, strlen(json), h, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, json);
    assert_true(has_header(&r, "x-echo-header: yes please"));
    assert_true(has_header(&r, "x-echo-q: a b c"));
    assert_true(has_header(&r, "x-echo-len: nul-ok"));
    resp_free(&r);

    /* a body just under the limit is accepted whole */
    size_t big = 64 * 1024;
    char *body = malloc(big * 4);
    memset(body, 'a', big * 4);
    do_request(port, "POST", "/echo", body, big - 1, h, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, big - 1);
    resp_free(&r);

    /* over it: 413 with a JSON error, before the body is read */
    do_request(port, "POST", "/echo", body, big * 4, h, &r);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "content-type: application/json"));
    assert_non_null(strstr(r.body.data, "{\"error\":{\"code\":\"too_large\",\"message\":\""));
    resp_free(&r);

    /* chunked upload over the limit */
    struct curl_slist *h2 = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    do_request(port, "PUT", "/echo", body, big * 2, h2, &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body.data, "\"too_large\""));
    resp_free(&r);
    curl_slist_free_all(h2);

    free(body);
    curl_slist_free_all(h);
    sift_server_stats st;
    sift_server_stats_get(s, &st);
    assert_int_equal(st.too_large, 2);
    sift_server_free(s);
}

static void test_sse_many_events(void **state)
{
    sift_server *s = start_server(2000);
    struct resp r;
    do_request(sift_server_port(s), "GET", "/sse?n=5000", NULL, 0, NULL, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "content-type: text/event-stream"));
    assert_true(has_header(&r, "cache-control: no-cache"));
    sift_buf want;
    expected_sse(&want, 5000);
    assert_int_equal(r.body.len, want.len);
    assert_memory_equal(r.body.data, want.data, want.len);
    sift_buf_free(&want);
    resp_free(&r);

    /* multi-line data is split into data: lines */
    sift_server_free(s);
}

static void test_concurrent_sse_clients(void **state)
{
    enum { N = 500, EVENTS = 20 };
    sift_server *s = start_server(2000);
    int port = sift_server_port(s);
    CURLM *m = curl_multi_init();
    static struct resp rs[N];
    CURL *cs[N];
    for (int i = 0; i < N; i++) {
        cs[i] = make_easy(port, "GET", "/sse?n=20&ms=5", NULL, 0, NULL, &rs[i]);
        curl_easy_setopt(cs[i], CURLOPT_PRIVATE, &rs[i]);
        curl_multi_add_handle(m, cs[i]);
    }
    int running = 1, done = 0;
    double end = now_ms() + 60000;
    while (running && now_ms() < end) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct resp *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            r->rc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
            done++;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    assert_int_equal(done, N);
    sift_buf want;
    expected_sse(&want, EVENTS);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs[i].rc, CURLE_OK);
        assert_int_equal(rs[i].status, 200);
        assert_int_equal(rs[i].body.len, want.len);
        assert_memory_equal(rs[i].body.data, want.data, want.len);
        curl_multi_remove_handle(m, cs[i]);
        curl_easy_cleanup(cs[i]);
        resp_free(&rs[i]);
    }
    sift_buf_free(&want);
    curl_multi_cleanup(m);
    sift_server_stats st;
    sift_server_stats_get(s, &st);
    assert_int_equal(st.requests_total, N);
    assert_int_equal(st.disconnects, 0);
    sift_server_free(s);
}

static void check_disconnect(sift_server *s, const char *path)
{
    rec_reset();
    struct resp r;
    CURL *c = make_easy(sift_server_port(s), "GET", path, NULL, 0, NULL, &r);
    r.abort_after_events = 3;
    r.rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    assert_int_equal(r.rc, CURLE_WRITE_ERROR);
    assert_true(r.events >= 3);
    resp_free(&r);
    /* The server notices on its next write, cancels the request's context and
     * the producer stops (its hook or its next write). */
    assert_true(wait_for(&rec.cancels, 1));
    pthread_mutex_lock(&rec.mu);
    assert_string_equal(rec.last_cancel, "client disconnected");
    pthread_mutex_unlock(&rec.mu);
}

static void test_client_disconnect_mid_stream(void **state)
{
    sift_server *s = start_server(2000);
    check_disconnect(s, "/sse?n=0&ms=5");
    /* lazy: the hook does not release; the producer's timer keeps the
     * exchange and learns from its next write. */
    check_disconnect(s, "/sse?n=0&ms=5&lazy=1");
    assert_true(wait_for(&rec.write_canceled, 1));

    /* A client that hangs up while the handler has not answered at all is
     * found by the periodic check. */
    rec_reset();
    int fd = raw_connect(sift_server_port(s), 0);
    assert_true(fd >= 0);
    raw_send(fd, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    usleep(100 * 1000);
    assert_int_equal(rec_get(&rec.hang_cancels), 0);
    close(fd);
    assert_true(wait_for(&rec.hang_cancels, 1));
    pthread_mutex_lock(&rec.mu);
    assert_string_equal(rec.last_cancel, "client disconnected");
    pthread_mutex_unlock(&rec.mu);

    sift_server_stats st;
    sift_server_stats_get(s, &st);
    assert_int_equal(st.disconnects, 3);
    double end = now_ms() + 5000;
    do {
        sift_server_stats_get(s, &st);
    } while ((st.requests_active != 0 || st.streams_active != 0) && now_ms() < end);
    assert_int_equal(st.requests_active, 0);
    assert_int_equal(st.streams_active, 0);
    sift_server_free(s);
}

static void test_backpressure(void **state)
{
    sift_server *s = start_server(2000);
    rec_reset();
    enum { EVENTS = 6000, SIZE = 1000 };
    int fd = raw_connect(sift_server_port(s), 4096);
    assert_true(fd >= 0);
    char req[128];
    snprintf(req, sizeof(req), "GET /sse?n=%d&size=%d HTTP/1.0\r\n\r\n", EVENTS, SIZE);
    raw_send(fd, req);
    /* Not reading: the producer fills the socket buffers, then the stream
     * buffer, and is told SIFT_EBUSY. */
    assert_true(wait_for(&rec.ebusy, 1));
    usleep(50 * 1000);
    sift_buf got;
    sift_buf_init(&got, 0);
    raw_read_all(fd, &got);
    close(fd);
    assert_true(wait_for(&rec.streams_done, 1));
    assert_true(rec_get(&rec.drains) >= 1);
    pthread_mutex_lock(&rec.mu);
    assert_true(rec.max_buffered <= rec.limit);
    assert_true(rec.max_buffered > 0);
    pthread_mutex_unlock(&rec.mu);
    /* every event arrived, in order, whole */
    const char *p = strstr(got.data, "\r\n\r\n");
    assert_non_null(p);
    p += 4;
    for (int i = 0; i < EVENTS; i++) {
        char head[64];
        int n = snprintf(head, sizeof(head), "event: tick\ndata: %d ", i);
        assert_memory_equal(p, head, (size_t)n);
        p += n;
        for (int k = 0; k < SIZE; k++)
            assert_int_equal(p[k], 'x');
        p += SIZE;
        assert_memory_equal(p, "\n\n", 2);
        p += 2;
    }
    assert_string_equal(p, "event: done\ndata: end\n\n");
    sift_buf_free(&got);
    sift_server_free(s);
}

static void test_graceful_shutdown(void **state)
{
    rec_reset();
    int started = rec_get(&rec.workers_started), stopped = rec_get(&rec.workers_stopped);
    /* The quick stream takes ~200 ms, well inside the 1.5 s grace period. */
    sift_server *s = start_server(1500);
    int port = sift_server_port(s);
    assert_int_equal(rec_get(&rec.workers_started), started + 2);
    CURLM *m = curl_multi_init();
    struct resp quick, endless;
    CURL *cq = make_easy(port, "GET", "/sse?n=10&ms=20", NULL, 0, NULL, &quick);
    CURL *ce = make_easy(port, "GET", "/sse?n=0&ms=20", NULL, 0, NULL, &endless);
    curl_multi_add_handle(m, cq);
    curl_multi_add_handle(m, ce);
    int running = 1, stopped_server = 0;
    double end = now_ms() + 20000;
    while (running && now_ms() < end) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            if (msg->easy_handle == cq)
                quick.rc = msg->data.result;
            else
                endless.rc = msg->data.result;
        }
        /* Stop once both streams are under way. */
        if (!stopped_server && quick.body.len > 0 && endless.body.len > 0) {
            sift_server_stop(s);
            stopped_server = 1;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    assert_true(stopped_server);
    assert_false(running);
    /* The quick stream finished within the grace period, whole. */
    assert_int_equal(quick.rc, CURLE_OK);
    sift_buf want;
    expected_sse(&want, 10);
    assert_int_equal(quick.body.len, want.len);
    assert_memory_equal(quick.body.data, want.data, want.len);
    sift_buf_free(&want);
    /* The endless one was cut off, and its handler was told why. */
    assert_int_not_equal(endless.rc, CURLE_OK);
    pthread_mutex_lock(&rec.mu);
    assert_string_equal(rec.last_cancel, "server shutting down");
    pthread_mutex_unlock(&rec.mu);
    curl_multi_remove_handle(m, cq);
    curl_multi_remove_handle(m, ce);
    curl_easy_cleanup(cq);
    curl_easy_cleanup(ce);
    curl_multi_cleanup(m);
    resp_free(&quick);
    resp_free(&endless);

    sift_server_wait(s);
    assert_int_equal(rec_get(&rec.workers_stopped), stopped + 2);
    /* Nobody listens any more. */
    assert_int_equal(raw_connect(port, 0), -1);
    sift_server_free(s);
}

static void test_start_errors(void **state)
{
    sift_server *a = start_server(100);
    sift_server_opts o = {0};
    o.port = sift_server_port(a);
    o.workers = 1;
    sift_err err = {0};
    sift_server *b = sift_server_new(&o, &err);
    assert_non_null(b);
    /* SO_REUSEPORT lets the same user share a port, so take a bad host. */
    sift_server_free(b);
    o.host = "not-an-ip";
    b = sift_server_new(&o, &err);
    assert_non_null(b);
    assert_int_equal(sift_server_start(b, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "not-an-ip"));
    sift_server_free(b);
    sift_server_free(a);
}

static void test_sse_format_abort_and_keepalive(void **state)
{
    sift_server *s = start_server(2000);
    int port = sift_server_port(s);
    struct resp r;
    do_request(port, "GET", "/lines", NULL, 0, NULL, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_string_equal(r.body.data, "event: msg\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
                                     "data: tail\ndata: \n\n"
                                     "event: empty\ndata: \n\n"
                                     ": ping\n\n"
                                     "event: bad\ndata: -2\n\n"
                                     "event: huge\ndata: -7\n\n"
                                     "event: drained\ndata: yes\n\n");
    resp_free(&r);

    /* the handler drops the connection after two events */
    do_request(port, "GET", "/drop", NULL, 0, NULL, &r);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_string_equal(r.body.data, "event: tick\ndata: 0\n\nevent: tick\ndata: 1\n\n");
    resp_free(&r);
    do_request(port, "GET", "/drop?before=1", NULL, 0, NULL, &r);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);

    rec_reset();
    do_request(port, "GET", "/end-unstarted", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body.data, "\"code\":\"internal\""));
    assert_true(wait_for(&rec.streams_done, 1)); /* recorded after the response went */
    resp_free(&r);

    /* One keep-alive connection carries a stream, then plain requests. */
    struct resp a;
    CURL *c = make_easy(port, "GET", "/sse?n=50", NULL, 0, NULL, &a);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    char url[128];
    for (int i = 0; i < 3; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", port);
        curl_easy_setopt(c, CURLOPT_URL, url);
        sift_buf_reset(&a.body);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        assert_string_equal(a.body.data, "hello");
        long fresh = -1;
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &fresh);
        assert_int_equal(fresh, 0);
    }
    /* An idle keep-alive connection does not hold up shutdown. */
    double t0 = now_ms();
    sift_server_stop(s);
    sift_server_wait(s);
    assert_true(now_ms() - t0 < 1500);
    curl_easy_cleanup(c);
    resp_free(&a);
    sift_server_stats st;
    sift_server_stats_get(s, &st);
    assert_int_equal(st.requests_active, 0);
    assert_int_equal(st.streams_active, 0);
    assert_int_equal(st.connections, 0);
    sift_server_free(s);
}

static int fail_second(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    return sift_server_worker_index(w) == 1 ? SIFT_EIO : 0;
}

static void test_start_hook_failure(void **state)
{
    sift_server_opts o = {0};
    o.workers = 3;
    o.on_worker_start = fail_second;
    sift_err err = {0};
    sift_server *s = sift_server_new(&o, &err);
    assert_non_null(s);
    assert_int_equal(sift_server_route(s, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(sift_server_start(s, &err), SIFT_EIO);
    assert_non_null(strstr(err.msg, "worker 1"));
    assert_int_equal(sift_server_start(s, &err), SIFT_ESTATE);
    sift_server_free(s);
}

struct delayed {
    sift_server *s;
    int signum; /* 0: call sift_server_stop instead */
};

static void *delayed_stop(void *arg)
{
    struct delayed *d = arg;
    usleep(200 * 1000);
    if (d->signum != 0)
        kill(getpid(), d->signum);
    else
        sift_server_stop(d->s);
    return NULL;
}

static void test_run_until_signal(void **state)
{
    for (int round = 0; round < 2; round++) {
        sift_server *s = start_server(500);
        struct delayed d = {s, round == 0 ? 0 : SIGTERM};
        pthread_t t;
        pthread_create(&t, NULL, delayed_stop, &d);
        int got = sift_server_run_until_signal(s);
        pthread_join(t, NULL);
        assert_int_equal(got, d.signum);
        assert_int_equal(raw_connect(sift_server_port(s), 0), -1);
        sift_server_free(s);
    }
}

/* The client goes; the producer keeps its exchange (lazy) and the server
 * shuts down before the producer's next tick. The worker's loop keeps
 * running until that timer is closed, and only then frees the exchange. */
static void test_shutdown_with_held_exchange(void **state)
{
    sift_server *s = start_server(2000);
    rec_reset();
    struct resp r;
    CURL *c = make_easy(sift_server_port(s), "GET", "/sse?n=0&ms=300&lazy=1", NULL, 0, NULL, &r);
    r.abort_after_events = 1;
    assert_int_equal(curl_easy_perform(c), CURLE_WRITE_ERROR);
    curl_easy_cleanup(c);
    resp_free(&r);
    assert_true(wait_for(&rec.cancels, 1));
    assert_int_equal(rec_get(&rec.write_canceled), 0);
    sift_server_stop(s);
    sift_server_wait(s);
    assert_int_equal(rec_get(&rec.write_canceled), 1);
    sift_server_free(s);
}

/* Many clients hang up at different points of their streams at once; every
 * request's context is cancelled and nothing is left behind. */
static void test_many_disconnects(void **state)
{
    enum { N = 200 };
    sift_server *s = start_server(2000);
    rec_reset();
    CURLM *m = curl_multi_init();
    static struct resp rs[N];
    CURL *cs[N];
    for (int i = 0; i < N; i++) {
        cs[i] = make_easy(sift_server_port(s), "GET", i % 2 ? "/sse?n=0&ms=2" : "/sse?n=0", NULL, 0,
                          NULL, &rs[i]);
        rs[i].abort_after_events = 1 + i % 7;
        curl_multi_add_handle(m, cs[i]);
    }
    int running = 1;
    double end = now_ms() + 30000;
    while (running && now_ms() < end) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    assert_false(running);
    for (int i = 0; i < N; i++) {
        curl_multi_remove_handle(m, cs[i]);
        curl_easy_cleanup(cs[i]);
        resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    assert_true(wait_for(&rec.cancels, N));
    sift_server_stats st;
    end = now_ms() + 5000;
    do {
        sift_server_stats_get(s, &st);
    } while ((st.requests_active != 0 || st.connections != 0) && now_ms() < end);
    assert_int_equal(st.requests_active, 0);
    assert_int_equal(st.streams_active, 0);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.disconnects, N);
    sift_server_free(s);
}

/* No grace period: streams are cut off at once. */
static void test_shutdown_without_grace(void **state)
{
    sift_server *s = start_server(-1);
    rec_reset();
    int fd = raw_connect(sift_server_port(s), 0);
    assert_true(fd >= 0);
    raw_send(fd, "GET /sse?n=0&ms=20 HTTP/1.0\r\n\r\n");
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), 0); /* headers (and maybe an event) */
    assert_true(n > 0);
    sift_server_stop(s);
    sift_buf rest;
    sift_buf_init(&rest, 0);
    raw_read_all(fd, &rest); /* ends when the server drops the connection */
    close(fd);
    sift_buf_free(&rest);
    sift_server_wait(s);
    assert_int_equal(rec_get(&rec.cancels), 1);
    pthread_mutex_lock(&rec.mu);
    assert_string_equal(rec.last_cancel, "server shutting down");
    pthread_mutex_unlock(&rec.mu);
    sift_server_free(s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_json_echo_and_413),
        cmocka_unit_test(test_sse_many_events),
        cmocka_unit_test(test_concurrent_sse_clients),
        cmocka_unit_test(test_client_disconnect_mid_stream),
        cmocka_unit_test(test_many_disconnects),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_graceful_shutdown),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_sse_format_abort_and_keepalive),
        cmocka_unit_test(test_start_hook_failure),
        cmocka_unit_test(test_run_until_signal),
        cmocka_unit_test(test_shutdown_with_held_exchange),
        cmocka_unit_test(test_shutdown_without_grace),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
