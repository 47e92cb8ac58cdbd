/* Integration tests for the curl-on-uv HTTP client (include/sift/http.h)
 * against rawsrv (tests/support/rawsrv.h) on the same loop. Every test ends
 * by closing the client and the server and checking that the loop has no
 * handle left (uv_loop_close succeeds), so a leaked handle fails the test and
 * leaked memory fails it under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rawsrv.h"
#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/http.h"
#include "sift/sse.h"

typedef struct fixture {
    uv_loop_t loop;
    rawsrv *srv;
    sift_http_client *cli;
    sift_ctx *root;
    int client_closed;
    int server_stopped;
} fixture;

/* What happened to one request. */
typedef struct result {
    fixture *f;
    sift_ctx *cancel_ctx;   /* cancel this from inside on_data ... */
    struct result *sibling; /* another request under cancel_ctx */
    sift_buf body;
    sift_sse_parser sse;     /* SSE streaming */
    int cancel_after_events; /* ... after this many events */
    int abort_rc;            /* on_data returns this (when non-zero) */
    int close_client_in_done;
    int close_client_in_data;
    int abort_in_response; /* on_response returns this */
    int in_cancel_call;    /* on_done must never fire while this is set */
    int done_calls;
    int code;
    int status;
    int responses;
    int data_calls;
    int data_after_cancel;
    int cancelled; /* set when the test cancelled it */
    int nheaders;
    int events;
    int done_event;
    char err[SIFT_ERR_MSG_MAX];
    char retry_after[32];
    char ctype[64];
    char xmethod[16];
    char xctype[64];
    /* build_body (test_build_body) */
    int builds;
    int build_rc;           /* returned instead of a body when non-zero */
    const char *build_text; /* the body built */
} result;

static void result_init(result *r, fixture *f)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->code = 1; /* not a valid outcome: proves on_done set it */
    sift_buf_init(&r->body, 0);
    sift_sse_init(&r->sse, 0);
}

static void result_free(result *r)
{
    sift_buf_free(&r->body);
    sift_sse_free(&r->sse);
}

static void copy_header(const sift_http_response *resp, const char *name, char *out, size_t n)
{
    const char *v = sift_http_response_header(resp, name);
    snprintf(out, n, "%s", v ? v : "");
}

static int on_response(sift_http_request *req, int status, const sift_http_response *resp,
                       void *udata)
{
    result *r = udata;
    assert_int_equal(r->done_calls, 0);
    r->responses++;
    r->status = status;
    assert_int_equal(resp->status, status);
    copy_header(resp, "Content-Type", r->ctype, sizeof(r->ctype));
    return r->abort_in_response;
}

static void on_client_closed(void *udata);

static int on_sse_event(const sift_sse_event *ev, void *udata, sift_err *err)
{
    result *r = udata;
    if (strcmp(ev->data, "[DONE]") == 0)
        r->done_event = 1;
    else
        r->events++;
    return 0;
}

static int on_data(sift_http_request *req, const char *chunk, size_t len, void *udata)
{
    result *r = udata;
    assert_int_equal(r->done_calls, 0);
    assert_int_equal(r->responses, 1);
    if (r->cancelled)
        r->data_after_cancel++;
    r->data_calls++;
    sift_buf_append(&r->body, chunk, len);
    assert_int_equal(sift_sse_feed(&r->sse, chunk, len, on_sse_event, r, NULL), 0);
    if (r->cancel_ctx && r->events >= r->cancel_after_events && !r->cancelled) {
        r->cancelled = 1;
        r->in_cancel_call = 1;
        if (r->sibling) {
            r->sibling->cancelled = 1;
            r->sibling->in_cancel_call = 1;
        }
        sift_ctx_cancel(r->cancel_ctx, SIFT_ECANCELED, "test cancels from on_data");
        r->in_cancel_call = 0;
        if (r->sibling)
            r->sibling->in_cancel_call = 0;
    }
    if (r->close_client_in_data && r->events >= 2 && !r->cancelled) {
        r->cancelled = 1;
        r->in_cancel_call = 1;
        sift_http_client_close(r->f->cli, on_client_closed, r->f);
        r->in_cancel_call = 0;
    }
    if (r->abort_rc && r->data_calls == 1)
        return r->abort_rc;
    return 0;
}

static void on_done(sift_http_request *req, int code, sift_http_response *resp, const sift_err *err,
                    void *udata)
{
    result *r = udata;
    assert_int_equal(r->in_cancel_call, 0);
    r->done_calls++;
    r->code = code;
    assert_non_null(resp);
    assert_non_null(err);
    if (code != 0) {
        assert_int_equal(err->code, code);
        assert_true(strlen(err->msg) > 0);
    }
    if (r->status == 0)
        r->status = resp->status;
    assert_int_equal(r->status, resp->status);
    snprintf(r->err, sizeof(r->err), "%s", err->msg);
    if (resp->body) {
        assert_int_equal(resp->body[resp->body_len], '\0');
        sift_buf_append(&r->body, resp->body, resp->body_len);
    }
    copy_header(resp, "Retry-After", r->retry_after, sizeof(r->retry_after));
    copy_header(resp, "X-Method", r->xmethod, sizeof(r->xmethod));
    copy_header(resp, "X-Content-Type", r->xctype, sizeof(r->xctype));
    const char *n, *v;
    while (sift_http_response_header_at(resp, (size_t)r->nheaders, &n, &v) == 0)
        r->nheaders++;
    if (r->close_client_in_done)
        sift_http_client_close(r->f->cli, NULL, NULL);
}

static const sift_http_callbacks buffered_cb = {.on_response = on_response, .on_done = on_done};
static const sift_http_callbacks stream_cb = {
    .on_response = on_response, .on_data = on_data, .on_done = on_done};

/* ---- loop helpers -------------------------------------------------------- */

static int guard_fired;

static void on_guard(uv_timer_t *t)
{
    guard_fired = 1;
    uv_stop(t->loop);
}

/* Runs the loop until cond(arg) holds, or fails after `ms`. */
static void wait_until(fixture *f, int (*cond)(void *), void *arg, int ms)
{
    uv_timer_t guard;
    uv_timer_init(&f->loop, &guard);
    uv_timer_start(&guard, on_guard, (uint64_t)ms, 0);
    guard_fired = 0;
    while (!cond(arg) && !guard_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (!cond(arg))
        fail_msg("timed out after %d ms waiting for a condition", ms);
}

typedef struct counter_goal {
    int *counter;
    int target;
} counter_goal;

static int counter_reached(void *arg)
{
    counter_goal *g = arg;
    return *g->counter >= g->target;
}

/* Runs the loop until *counter >= target, or fails after `ms`. */
static void wait_for(fixture *f, int *counter, int target, int ms)
{
    counter_goal g = {counter, target};
    wait_until(f, counter_reached, &g, ms);
}

typedef struct abandoned_goal {
    rawsrv *srv;
    int target;
} abandoned_goal;

static int abandoned_reached(void *arg)
{
    abandoned_goal *g = arg;
    return rawsrv_get_stats(g->srv).abandoned >= g->target;
}

static void on_client_closed(void *udata)
{
    fixture *f = udata;
    f->client_closed = 1;
}

static void on_int_set(void *udata)
{
    *(int *)udata = 1;
}

static void on_server_stopped(void *udata)
{
    fixture *f = udata;
    f->server_stopped = 1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->srv = rawsrv_start(&f->loop);
    assert_non_null(f->srv);
    sift_err err = {0};
    f->cli = sift_http_client_new(&f->loop, NULL, &err);
    assert_non_null(f->cli);
    f->root = sift_ctx_new_root(&f->loop);
    assert_non_null(f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f->client_closed && f->cli)
        sift_http_client_close(f->cli, on_client_closed, f);
    wait_for(f, &f->client_closed, 1, 5000);
    rawsrv_stop(f->srv, on_server_stopped, f);
    sift_ctx_release(f->root);
    wait_for(f, &f->server_stopped, 1, 5000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static void url(fixture *f, const char *path, char *out)
{
    rawsrv_url(f->srv, path, out, 256);
}

static void start(fixture *f, sift_ctx *ctx, const sift_http_req_opts *o,
                  const sift_http_callbacks *cb, result *r)
{
    sift_err err = {0};
    int rc = sift_http_request_start(f->cli, ctx, o, cb, r, NULL, &err);
    if (rc != 0)
        fail_msg("start failed: %s", err.msg);
}

/* ---- tests --------------------------------------------------------------- */

static void test_get(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/hello", u);
    result r;
    result_init(&r, f);
    sift_http_req_opts o = {.url = u};
    start(f, f->root, &o, &buffered_cb, &r);
    assert_int_equal(r.done_calls, 0); /* never synchronous */
    wait_for(f, &r.done_calls, 1, 5000);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.responses, 1);
    assert_string_equal(r.body.data, "hello");
    assert_true(r.nheaders >= 1);
    sift_http_stats st;
    sift_http_client_stats(f->cli, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.easy_pooled, 1);
    result_free(&r);
}

static void test_post_and_methods(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/echo", u);
    const char *hdrs[] = {"Content-Type: application/json", "X-Other: 1", NULL};

    /* Copied body: the caller's buffer is overwritten right after start. */
    char body[] = "{\"q\":\"running shoes\"}";
    result r1;
    result_init(&r1, f);
    sift_http_req_opts o = {.url = u, .headers = hdrs, .body = body, .body_len = strlen(body)};
    start(f, f->root, &o, &buffered_cb, &r1);
    memset(body, 'z', strlen(body));

    /* Borrowed body, PUT. */
    static const char body2[] = "borrowed";
    result r2;
    result_init(&r2, f);
    sift_http_req_opts o2 = {.url = u,
                             .method = "PUT",
                             .headers = hdrs,
                             .body = body2,
                             .body_len = strlen(body2),
                             .body_borrowed = 1};
    start(f, f->root, &o2, &buffered_cb, &r2);

    /* DELETE without body, and HEAD. */
    result r3, r4;
    result_init(&r3, f);
    result_init(&r4, f);
    sift_http_req_opts o3 = {.url = u, .method = "DELETE"};
    sift_http_req_opts o4 = {.url = u, .method = "HEAD"};
    start(f, f->root, &o3, &buffered_cb, &r3);
    start(f, f->root, &o4, &buffered_cb, &r4);

    wait_for(f, &r1.done_calls, 1, 5000);
    wait_for(f, &r2.done_calls, 1, 5000);
    wait_for(f, &r3.done_calls, 1, 5000);
    wait_for(f, &r4.done_calls, 1, 5000);
    assert_int_equal(r1.code, 0);
    assert_string_equal(r1.body.data, "{\"q\":\"running shoes\"}");
    assert_string_equal(r1.xmethod, "POST");
    assert_string_equal(r1.xctype, "application/json");
    assert_int_equal(r2.code, 0);
    assert_string_equal(r2.body.data, "borrowed");
    assert_string_equal(r2.xmethod, "PUT");
    assert_int_equal(r3.code, 0);
    assert_string_equal(r3.xmethod, "DELETE");
    assert_int_equal(r4.code, 0);
    assert_string_equal(r4.xmethod, "HEAD");
    assert_int_equal(r4.body.len, 0);
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);
    result_free(&r4);
}

static void test_error_status_and_headers(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/status?code=503&retry_after=7", u);
    result r;
    result_init(&r, f);
    sift_http_req_opts o = {.url = u};
    start(f, f->root, &o, &buffered_cb, &r);
    wait_for(f, &r.done_calls, 1, 5000);
    assert_int_equal(r.code, 0); /* a completed exchange, whatever the status */
    assert_int_equal(r.status, 503);
    assert_string_equal(r.retry_after, "7");
    assert_string_equal(r.ctype, "text/plain");
    assert_string_equal(r.body.data, "status 503");
    result_free(&r);
}

static void test_streaming_sse(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/sse?n=5&delay=5", u);
    result r;
    result_init(&r, f);
    sift_http_req_opts o = {.url = u,
                            .headers = (const char *const[]){"Accept: text/event-stream", NULL}};
    start(f, f->root, &o, &stream_cb, &r);
    wait_for(f, &r.done_calls, 1, 5000);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/event-stream");
    assert_int_equal(r.events, 5);
    assert_int_equal(r.done_event, 1);
    assert_true(r.data_calls >= 2); /* it really streamed */
    result_free(&r);
}

/* Cancels a context from a timer, i.e. outside any curl callback. */
typedef struct canceller {
    uv_timer_t t;
    sift_ctx *ctx;
    result *r;
} canceller;

static void on_cancel_timer(uv_timer_t *t)
{
    canceller *k = (canceller *)t;
    k->r->cancelled = 1;
    k->r->in_cancel_call = 1;
    sift_ctx_cancel(k->ctx, SIFT_ECANCELED, "test cancels from a timer");
    k->r->in_cancel_call = 0;
}

static void test_cancel_mid_stream(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/sse?n=100000&delay=5", u);
    for (int from_timer = 0; from_timer < 2; from_timer++) {
        rawsrv_stats before = rawsrv_get_stats(f->srv);
        sift_ctx *ctx = sift_ctx_new(f->root);
        result r;
        result_init(&r, f);
        canceller k = {.ctx = ctx, .r = &r};
        if (!from_timer) {
            r.cancel_ctx = ctx;
            r.cancel_after_events = 3;
        }
        sift_http_req_opts o = {.url = u};
        start(f, ctx, &o, &stream_cb, &r);
        if (from_timer) {
            wait_for(f, &r.events, 3, 5000);
            uv_timer_init(&f->loop, &k.t);
            uv_timer_start(&k.t, on_cancel_timer, 1, 0);
        }
        wait_for(f, &r.done_calls, 1, 5000);
        assert_int_equal(r.code, SIFT_ECANCELED);
        assert_non_null(strstr(r.err, "test cancels"));
        assert_int_equal(r.data_after_cancel, 0);
        int events_at_done = r.events;
        /* The transfer was aborted: the server sees the client go. */
        abandoned_goal g = {f->srv, before.abandoned + 1};
        wait_until(f, abandoned_reached, &g, 5000);
        assert_int_equal(r.done_calls, 1);
        assert_int_equal(r.events, events_at_done);
        if (from_timer)
            uv_close((uv_handle_t *)&k.t, NULL);
        sift_ctx_release(ctx);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        result_free(&r);
    }
}

/* A request's on_data cancels a context shared with another transfer that
 * is in flight on another connection: both end once with SIFT_ECANCELED and
 * neither sees data afterwards. */
static void test_cancel_sibling_from_callback(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/sse?n=100000&delay=2", u);
    sift_ctx *ctx = sift_ctx_new(f->root);
    result a, b;
    result_init(&a, f);
    result_init(&b, f);
    sift_http_req_opts o = {.url = u};
    start(f, ctx, &o, &stream_cb, &b);
    wait_for(f, &b.events, 2, 5000);
    a.cancel_ctx = ctx;
    a.cancel_after_events = 2;
    a.sibling = &b;
    start(f, ctx, &o, &stream_cb, &a);
    wait_for(f, &a.done_calls, 1, 5000);
    wait_for(f, &b.done_calls, 1, 5000);
    assert_int_equal(a.code, SIFT_ECANCELED);
    assert_int_equal(b.code, SIFT_ECANCELED);
    assert_int_equal(a.data_after_cancel, 0);
    assert_int_equal(b.data_after_cancel, 0);
    abandoned_goal g = {f->srv, 2};
    wait_until(f, abandoned_reached, &g, 5000);
    assert_int_equal(a.done_calls, 1);
    assert_int_equal(b.done_calls, 1);
    sift_ctx_release(ctx);
    result_free(&a);
    result_free(&b);
}

/* The creator releases the context while the request is in flight: the hook
 * goes with it and the request completes normally. An on_response abort ends
 * the request before any data. */
static void test_ctx_released_and_response_abort(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/delay?ms=30", u);
    sift_ctx *ctx = sift_ctx_new_timeout(f->root, 60000);
    result r;
    result_init(&r, f);
    sift_http_req_opts o = {.url = u};
    start(f, ctx, &o, &buffered_cb, &r);
    sift_ctx_release(ctx);
    wait_for(f, &r.done_calls, 1, 5000);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.body.data, "hello");
    result_free(&r);

    url(f, "/sse?n=5&delay=1", u);
    result a;
    result_init(&a, f);
    a.abort_in_response = SIFT_EHTTP;
    sift_http_req_opts o2 = {.url = u};
    start(f, f->root, &o2, &stream_cb, &a);
    wait_for(f, &a.done_calls, 1, 5000);
    assert_int_equal(a.code, SIFT_EHTTP);
    assert_int_equal(a.responses, 1);
    assert_int_equal(a.data_calls, 0);
    assert_non_null(strstr(a.err, "on_response"));
    result_free(&a);
}

static void test_request_cancel_and_on_data_abort(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/sse?n=100000&delay=5", u);

    /* on_data returning 1: cancelled; returning a code: that code. */
    int codes[] = {1, SIFT_EPROTO};
    int want[] = {SIFT_ECANCELED, SIFT_EPROTO};
    for (int i = 0; i < 2; i++) {
        result r;
        result_init(&r, f);
        r.abort_rc = codes[i];
        sift_http_req_opts o = {.url = u};
        start(f, f->root, &o, &stream_cb, &r);
        wait_for(f, &r.done_calls, 1, 5000);
        assert_int_equal(r.code, want[i]);
        assert_int_equal(r.data_calls, 1);
        assert_non_null(strstr(r.err, "on_data"));
        result_free(&r);
    }

    /* sift_http_request_cancel outside any callback. */
    result r;
    result_init(&r, f);
    sift_http_request *req = NULL;
    sift_http_req_opts o = {.url = u};
    assert_int_equal(sift_http_request_start(f->cli, NULL, &o, &stream_cb, &r, &req, NULL), 0);
    assert_non_null(req);
    assert_ptr_equal(sift_http_request_udata(req), &r);
    wait_for(f, &r.events, 2, 5000);
    r.cancelled = 1;
    r.in_cancel_call = 1;
    sift_http_request_cancel(req, 0);
    sift_http_request_cancel(req, 0); /* a no-op while finishing */
    r.in_cancel_call = 0;
    wait_for(f, &r.done_calls, 1, 5000);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_int_equal(r.data_after_cancel, 0);
    result_free(&r);
}

static void test_timeout_and_deadline(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/delay?ms=10000", u);

    result r1;
    result_init(&r1, f);
    sift_http_req_opts o = {.url = u, .timeout_ms = 100};
    start(f, f->root, &o, &buffered_cb, &r1);

    sift_ctx *ctx = sift_ctx_new_timeout(f->root, 150);
    result r2;
    result_init(&r2, f);
    sift_http_req_opts o2 = {.url = u, .timeout_ms = 60000};
    start(f, ctx, &o2, &buffered_cb, &r2);

    uint64_t t0 = uv_now(&f->loop);
    wait_for(f, &r1.done_calls, 1, 5000);
    wait_for(f, &r2.done_calls, 1, 5000);
    assert_true(uv_now(&f->loop) - t0 < 5000);
    assert_int_equal(r1.code, SIFT_ETIMEDOUT);
    assert_non_null(strstr(r1.err, "timed out"));
    assert_int_equal(r2.code, SIFT_ETIMEDOUT);
    assert_int_equal(r1.status, 0);
    sift_ctx_release(ctx);
    result_free(&r1);
    result_free(&r2);
}

/* With one connection per host, a request queued behind a slow one still
 * times out on time. */
static void test_timeout_while_queued(void **state)
{
    fixture *f = *state;
    sift_http_client_opts co = {.max_host_connections = 1};
    sift_err err = {0};
    sift_http_client *c1 = sift_http_client_new(&f->loop, &co, &err);
    assert_non_null(c1);
    char u[256], u2[256];
    url(f, "/delay?ms=3000", u);
    url(f, "/hello", u2);
    result slow, quick;
    result_init(&slow, f);
    result_init(&quick, f);
    sift_http_req_opts o = {.url = u};
    assert_int_equal(sift_http_request_start(c1, NULL, &o, &buffered_cb, &slow, NULL, &err), 0);
    sift_http_req_opts o2 = {.url = u2, .timeout_ms = 200};
    assert_int_equal(sift_http_request_start(c1, NULL, &o2, &buffered_cb, &quick, NULL, &err), 0);
    uint64_t t0 = uv_now(&f->loop);
    wait_for(f, &quick.done_calls, 1, 5000);
    assert_int_equal(quick.code, SIFT_ETIMEDOUT);
    assert_true(uv_now(&f->loop) - t0 < 2000);
    assert_int_equal(slow.done_calls, 0);
    int closed = 0;
    sift_http_client_close(c1, on_int_set, &closed);
    wait_for(f, &closed, 1, 5000);
    assert_int_equal(slow.code, SIFT_ECANCELED);
    result_free(&slow);
    result_free(&quick);
}

static int build_body(void *udata, const char **body, size_t *len, sift_err *err)
{
    result *r = udata;
    r->builds++;
    if (r->build_rc)
        return sift_err_set(err, r->build_rc, "test: the body cannot be built");
    *body = r->build_text;
    *len = strlen(r->build_text);
    return 0;
}

/* build_body runs when the request goes to curl: at once when a connection
 * is free, only when the slot frees up for a queued request, never for one
 * cancelled while queued; a failure comes back from start or from on_done. */
static void test_build_body(void **state)
{
    fixture *f = *state;
    sift_http_client_opts co = {.max_host_connections = 1};
    sift_err err = {0};
    sift_http_client *c1 = sift_http_client_new(&f->loop, &co, &err);
    assert_non_null(c1);
    char u[256], slow_u[256];
    url(f, "/echo", u);
    url(f, "/delay?ms=300", slow_u);
    const char *hdrs[] = {"Content-Type: text/plain", NULL};

    /* a free slot: built inside start; a failure is start's */
    result bad;
    result_init(&bad, f);
    bad.build_rc = SIFT_EINVAL;
    sift_http_req_opts ob = {.url = u, .build_body = build_body};
    assert_int_equal(sift_http_request_start(c1, NULL, &ob, &buffered_cb, &bad, NULL, &err),
                     SIFT_EINVAL);
    assert_int_equal(bad.builds, 1);
    assert_non_null(strstr(err.msg, "cannot be built"));

    result slow, first, queued, gone, late_bad;
    result_init(&slow, f);
    result_init(&first, f);
    result_init(&queued, f);
    result_init(&gone, f);
    result_init(&late_bad, f);
    slow.build_text = "slow";
    sift_http_req_opts os = {.url = slow_u, .build_body = build_body};
    assert_int_equal(sift_http_request_start(c1, NULL, &os, &buffered_cb, &slow, NULL, &err), 0);
    assert_int_equal(slow.builds, 1);

    /* queued behind the slow one: nothing is built yet */
    queued.build_text = "built late";
    sift_http_req_opts oq = {.url = u, .headers = hdrs, .build_body = build_body};
    assert_int_equal(sift_http_request_start(c1, NULL, &oq, &buffered_cb, &queued, NULL, &err), 0);
    sift_http_request *greq = NULL;
    gone.build_text = "never";
    assert_int_equal(sift_http_request_start(c1, NULL, &oq, &buffered_cb, &gone, &greq, &err), 0);
    late_bad.build_rc = SIFT_ETOOBIG;
    assert_int_equal(sift_http_request_start(c1, NULL, &oq, &buffered_cb, &late_bad, NULL, &err),
                     0);
    sift_http_request_cancel(greq, 0);
    assert_int_equal(queued.builds + gone.builds + late_bad.builds, 0);

    wait_for(f, &late_bad.done_calls, 1, 5000);
    assert_int_equal(slow.code, 0);
    assert_int_equal(queued.builds, 1);
    assert_int_equal(queued.code, 0);
    assert_string_equal(queued.xmethod, "POST"); /* a built body means POST */
    assert_string_equal(queued.body.data, "built late");
    assert_int_equal(gone.done_calls, 1);
    assert_int_equal(gone.code, SIFT_ECANCELED);
    assert_int_equal(gone.builds, 0);
    assert_int_equal(late_bad.builds, 1);
    assert_int_equal(late_bad.code, SIFT_ETOOBIG);
    assert_non_null(strstr(late_bad.err, "cannot be built"));
    assert_int_equal(bad.done_calls, 0);

    int closed = 0;
    sift_http_client_close(c1, on_int_set, &closed);
    wait_for(f, &closed, 1, 5000);
    result_free(&bad);
    result_free(&slow);
    result_free(&queued);
    result_free(&gone);
    result_free(&late_bad);
}

static void test_connection_errors(void **state)
{
    fixture *f = *state;
    char u[256];

    url(f, "/close-early", u);
    result r1;
    result_init(&r1, f);
    sift_http_req_opts o1 = {.url = u};
    start(f, f->root, &o1, &buffered_cb, &r1);

    /* Garbage instead of an HTTP status line: curl refuses it as HTTP/0.9. */
    url(f, "/garbage", u);
    result r2;
    result_init(&r2, f);
    sift_http_req_opts o2 = {.url = u};
    start(f, f->root, &o2, &buffered_cb, &r2);

    /* Connection refused: a port that was just free. */
    uv_tcp_t t;
    uv_tcp_init(&f->loop, &t);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&a, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", port);
    result r3;
    result_init(&r3, f);
    sift_http_req_opts o3 = {.url = u};
    start(f, f->root, &o3, &buffered_cb, &r3);

    wait_for(f, &r1.done_calls, 1, 5000);
    wait_for(f, &r2.done_calls, 1, 5000);
    wait_for(f, &r3.done_calls, 1, 5000);
    assert_int_equal(r1.code, SIFT_EIO);
    assert_int_equal(r1.status, 200);
    assert_int_equal(r2.code, SIFT_EPROTO);
    assert_int_equal(r3.code, SIFT_EIO);
    assert_non_null(strstr(r3.err, u));

    /* Refused synchronously, no callback. */
    sift_err err = {0};
    result r4;
    result_init(&r4, f);
    sift_http_req_opts o4 = {.url = "ftp://127.0.0.1/x"};
    assert_int_equal(sift_http_request_start(f->cli, NULL, &o4, &buffered_cb, &r4, NULL, &err),
                     SIFT_EINVAL);
    sift_http_req_opts o6 = {.url = u, .headers = (const char *const[]){"X-A: 1\r\nX-B: 2", NULL}};
    assert_int_equal(sift_http_request_start(f->cli, NULL, &o6, &buffered_cb, &r4, NULL, &err),
                     SIFT_EINVAL);
    sift_http_req_opts o7 = {.url = u, .method = "GET /x HTTP/1.1"};
    assert_int_equal(sift_http_request_start(f->cli, NULL, &o7, &buffered_cb, &r4, NULL, &err),
                     SIFT_EINVAL);
    sift_ctx *dead = sift_ctx_new(f->root);
    sift_ctx_cancel(dead, SIFT_ECANCELED, "gone");
    sift_http_req_opts o5 = {.url = u};
    assert_int_equal(sift_http_request_start(f->cli, dead, &o5, &buffered_cb, &r4, NULL, &err),
                     SIFT_ECANCELED);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r4.done_calls, 0);
    sift_ctx_release(dead);
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);
    result_free(&r4);
}

static void test_body_limits(void **state)
{
    fixture *f = *state;
    const char *paths[] = {"/big?n=100000", "/bigchunked?n=100000"};
    for (int i = 0; i < 2; i++) {
        char u[256];
        url(f, paths[i], u);
        result r;
        result_init(&r, f);
        sift_http_req_opts o = {.url = u, .max_body_bytes = 1000};
        start(f, f->root, &o, &buffered_cb, &r);
        wait_for(f, &r.done_calls, 1, 5000);
        assert_int_equal(r.code, SIFT_ETOOBIG);
        assert_true(r.body.len <= 1000);
        result_free(&r);

        result ok;
        result_init(&ok, f);
        sift_http_req_opts o2 = {.url = u};
        start(f, f->root, &o2, &buffered_cb, &ok);
        wait_for(f, &ok.done_calls, 1, 5000);
        assert_int_equal(ok.code, 0);
        assert_int_equal(ok.body.len, 100000);
        result_free(&ok);
    }
}

static void test_connection_reuse(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/hello", u);
    for (int i = 0; i < 10; i++) {
        result r;
        result_init(&r, f);
        sift_http_req_opts o = {.url = u};
        start(f, f->root, &o, &buffered_cb, &r);
        wait_for(f, &r.done_calls, 1, 5000);
        assert_int_equal(r.code, 0);
        result_free(&r);
    }
    sift_http_stats st;
    sift_http_client_stats(f->cli, &st);
    assert_int_equal(st.requests, 10);
    assert_int_equal(st.connections, 1);
    assert_int_equal(rawsrv_get_stats(f->srv).accepted, 1);
    assert_int_equal(rawsrv_get_stats(f->srv).requests, 10);
}

static void test_concurrent_100(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/delay?ms=20", u);
    enum { N = 100 };
    result *r = calloc(N, sizeof(*r));
    assert_non_null(r);
    for (int i = 0; i < N; i++) {
        result_init(&r[i], f);
        sift_http_req_opts o = {.url = u};
        start(f, f->root, &o, &buffered_cb, &r[i]);
    }
    for (int i = 0; i < N; i++) {
        wait_for(f, &r[i].done_calls, 1, 10000);
        assert_int_equal(r[i].code, 0);
        assert_string_equal(r[i].body.data, "hello");
    }
    uv_run(&f->loop, UV_RUN_NOWAIT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].done_calls, 1);
        result_free(&r[i]);
    }
    /* At most 64 connections per host by default; the rest queued. */
    rawsrv_stats st = rawsrv_get_stats(f->srv);
    assert_true(st.accepted <= 64);
    assert_int_equal(st.requests, N);
    free(r);
}

static void test_close_with_requests_in_flight(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/sse?n=2&delay=1&hang=1", u);
    enum { N = 5 };
    result r[N];
    for (int i = 0; i < N; i++) {
        result_init(&r[i], f);
        sift_http_req_opts o = {.url = u};
        start(f, f->root, &o, &stream_cb, &r[i]);
    }
    char u2[256];
    url(f, "/delay?ms=10000", u2);
    result slow;
    result_init(&slow, f);
    sift_http_req_opts o2 = {.url = u2};
    start(f, f->root, &o2, &buffered_cb, &slow);
    for (int i = 0; i < N; i++)
        wait_for(f, &r[i].events, 2, 5000);
    sift_http_client_close(f->cli, on_client_closed, f);
    for (int i = 0; i < N; i++)
        r[i].cancelled = 1;
    sift_err err = {0};
    sift_http_req_opts o3 = {.url = u2};
    assert_int_equal(sift_http_request_start(f->cli, NULL, &o3, &buffered_cb, &slow, NULL, &err),
                     SIFT_ESTATE);
    assert_int_equal(f->client_closed, 0);
    wait_for(f, &f->client_closed, 1, 5000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].done_calls, 1);
        assert_int_equal(r[i].code, SIFT_ECANCELED);
        assert_int_equal(r[i].data_after_cancel, 0);
        result_free(&r[i]);
    }
    assert_int_equal(slow.done_calls, 1);
    assert_int_equal(slow.code, SIFT_ECANCELED);
    result_free(&slow);
}

static void test_close_from_on_done(void **state)
{
    fixture *f = *state;
    char u[256], u2[256];
    url(f, "/hello", u);
    url(f, "/delay?ms=10000", u2);
    result slow;
    result_init(&slow, f);
    sift_http_req_opts o2 = {.url = u2};
    start(f, f->root, &o2, &buffered_cb, &slow);
    result r;
    result_init(&r, f);
    r.close_client_in_done = 1;
    sift_http_req_opts o = {.url = u};
    start(f, f->root, &o, &buffered_cb, &r);
    wait_for(f, &r.done_calls, 1, 5000);
    assert_int_equal(r.code, 0);
    wait_for(f, &slow.done_calls, 1, 5000);
    assert_int_equal(slow.code, SIFT_ECANCELED);
    /* The close was started without a callback; teardown's final uv_run
     * lets it finish and uv_loop_close proves it did. */
    f->cli = NULL;
    f->client_closed = 1;
    result_free(&r);
    result_free(&slow);
}

/* Closing the client from inside on_data (inside curl): the request ends once
 * with SIFT_ECANCELED, later, and the close completes. */
static void test_close_from_on_data(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/sse?n=100000&delay=2", u);
    result r;
    result_init(&r, f);
    r.close_client_in_data = 1;
    sift_http_req_opts o = {.url = u};
    start(f, f->root, &o, &stream_cb, &r);
    wait_for(f, &f->client_closed, 1, 5000);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_int_equal(r.data_after_cancel, 0);
    result_free(&r);
}

/* Allocation failures at start: either the request is refused with
 * SIFT_ENOMEM and no callback ever fires, or it runs to completion; nothing
 * leaks (ASan). Same for creating a client. */
static void test_out_of_memory(void **state)
{
    fixture *f = *state;
    char u[256];
    url(f, "/echo", u);
    const char *hdrs[] = {"Content-Type: text/plain", NULL};
    sift_ctx *ctx = sift_ctx_new(f->root);
    int refused = 0, ran = 0;
    for (long n = 0; n < 12; n++) {
        result r;
        result_init(&r, f);
        sift_http_req_opts o = {
            .url = u, .headers = hdrs, .body = "abc", .body_len = 3, .timeout_ms = 5000};
        sift_err err = {0};
        sift_mem_fail_after(n);
        int rc = sift_http_request_start(f->cli, ctx, &o, &buffered_cb, &r, NULL, &err);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            ran++;
            wait_for(f, &r.done_calls, 1, 5000);
            assert_true(r.code == 0 || r.code == SIFT_ENOMEM);
        } else {
            refused++;
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_int_equal(err.code, SIFT_ENOMEM);
            uv_run(&f->loop, UV_RUN_NOWAIT);
            assert_int_equal(r.done_calls, 0);
        }
        result_free(&r);
    }
    assert_true(refused > 0);
    assert_true(ran > 0);
    sift_ctx_release(ctx);

    for (long n = 0; n < 6; n++) {
        sift_err err = {0};
        sift_mem_fail_after(n);
        sift_http_client *c = sift_http_client_new(&f->loop, NULL, &err);
        sift_mem_fail_after(-1);
        if (!c) {
            assert_int_equal(err.code, SIFT_ENOMEM);
            continue;
        }
        int closed = 0;
        sift_http_client_close(c, on_int_set, &closed);
        wait_for(f, &closed, 1, 5000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_status_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming_sse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_sibling_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_released_and_response_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_cancel_and_on_data_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_while_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_100, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_requests_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_on_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_on_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
