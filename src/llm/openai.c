/* The OpenAI-compatible chat-model provider (OpenAI, vLLM, Ollama,
 * llama-server): one POST to {base_url}/chat/completions per attempt,
 * streamed through the SSE parser and the stream assembler, with retries
 * under the context's deadline. See include/sift/provider.h for the contract.
 *
 * A generation (oai_gen) lives on the heap, not in the caller's arena: it
 * owns a uv timer (backoff, and deferring on_done out of a cancel hook), and
 * a uv handle's memory may go only in its close callback, which can run after
 * the caller has already released its arena. */
#include "sift/provider.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sift/log.h"
#include "sift/sse.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#define DEFAULT_BACKOFF_BASE_MS 250
#define DEFAULT_BACKOFF_MAX_MS 8000
#define DEFAULT_RETRY_AFTER_MAX_MS 60000
#define DEFAULT_MAX_ERROR_BODY ((size_t)64 << 10)
#define DEFAULT_MAX_BODY ((size_t)16 << 20)

typedef struct oai_model {
    sift_model base; /* first: sift_model * converts to oai_model * */
    uv_loop_t *loop;
    sift_http_client *http;
    char *url;   /* base_url + "/chat/completions" */
    char *model; /* default model name */
    char *auth;  /* "Authorization: Bearer ..." or NULL; never logged */
    const char *hdr_stream[4];
    const char *hdr_plain[4];
    int64_t timeout_ms;
    int max_retries;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t retry_after_max_ms;
    size_t max_error_body;
    size_t max_body_bytes;
    size_t max_event_bytes;
    sift_stream_limits limits;
    bool stream_usage;
    uint64_t rng;         /* xorshift state for the backoff jitter (one model per loop: no lock) */
    int in_flight;        /* generations whose on_done has not returned yet */
    bool closing;         /* sift_model_free was called while generations were in flight */
    struct oai_gen *gens; /* generations not finished yet, for sift_model_free */
} oai_model;

typedef enum gen_state {
    GEN_REQUEST,   /* an HTTP attempt is in flight */
    GEN_BACKOFF,   /* waiting on the timer before the next attempt */
    GEN_CANCELLED, /* the context ended the backoff; on_done is due on a 0 ms timer */
    GEN_DONE,      /* on_done has fired; the timer is closing */
} gen_state;

typedef struct oai_gen {
    gen_state state;
    oai_model *m;
    struct oai_gen *prev, *next; /* in m->gens until finished */
    sift_http_request *req;      /* the attempt in flight (GEN_REQUEST), or NULL */
    sift_ctx *ctx;
    sift_arena *arena;
    sift_model_callbacks cb;
    void *udata;
    bool stream;
    bool emitted; /* something reached on_token/on_tool_call_start: no more retries */
    int attempts;
    sift_buf body; /* the request body, borrowed by every attempt */
    /* the request when its body is built only as the first attempt goes to
     * curl (creq.stable_until_done); creq.messages is NULL once built */
    sift_chat_request creq;
    /* per attempt */
    int status;
    int64_t retry_after_ms; /* -1: no usable Retry-After */
    sift_buf errbody;       /* streaming mode: an error response's body (bounded), or a
                               whole JSON answer (see `whole`) */
    bool whole;             /* asked to stream, the server answered with one JSON document */
    sift_sse_parser sse;
    sift_stream as;
    /* one buffer for two uses that never overlap (260 bytes less for each
     * of the thousands of generations waiting for a connection):
     * fail during an attempt (GEN_REQUEST; cleared when one starts), last
     * while waiting (GEN_BACKOFF, GEN_CANCELLED) */
    union {
        sift_err fail; /* why we aborted the attempt ourselves (malformed chunk...) */
        sift_err last; /* the error on_done will report when the wait is cancelled */
    };
    uv_timer_t timer;
    sift_ctx_hook hook;
} oai_gen;

static const char *const gen_state_names[] = {"request", "backoff", "cancelled", "done"};

static void set_state(oai_gen *g, gen_state s)
{
    if (sift_log_get_level() <= SIFT_LOG_DEBUG)
        sift_debug(g->ctx ? sift_ctx_run_id(g->ctx) : NULL, "openai generation: %s -> %s",
                   gen_state_names[g->state], gen_state_names[s]);
    g->state = s;
}

static const char *run_id(const oai_gen *g)
{
    return g->ctx ? sift_ctx_run_id(g->ctx) : NULL;
}

/* ---- model lifetime ---------------------------------------------------- */

static void model_destroy(oai_model *m)
{
    sift_free(m->url);
    sift_free(m->model);
    if (m->auth) {
        /* the key should not linger in freed memory */
        explicit_bzero(m->auth, strlen(m->auth));
        sift_free(m->auth);
    }
    sift_free(m);
}

static void gen_unlink(oai_gen *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else if (g->m->gens == g)
        g->m->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    g->prev = g->next = NULL;
}

static void on_timer(uv_timer_t *t);

/* Ends a generation from outside the loop's callbacks for it (a cancel hook,
 * sift_model_free): on_done is deferred to the loop either way. */
static void gen_abort(oai_gen *g, const sift_err *why)
{
    if (g->state == GEN_REQUEST && g->req) {
        /* on_http_done follows from the loop and reports g->fail */
        if (!g->fail.code)
            sift_err_copy(&g->fail, why);
        sift_http_request_cancel(g->req, why->code);
    } else if (g->state == GEN_BACKOFF) {
        uv_timer_stop(&g->timer);
        sift_ctx_remove_hook(&g->hook);
        sift_err_copy(&g->last, why);
        set_state(g, GEN_CANCELLED);
        uv_timer_start(&g->timer, on_timer, 0, 0);
    }
}

static void oai_free(sift_model *base)
{
    oai_model *m = (oai_model *)base;
    if (m->closing)
        return; /* freed twice: a bug, but not worth a crash */
    if (m->in_flight > 0) {
        /* the last generation's finish releases the model */
        m->closing = true;
        sift_err why;
        sift_err_set(&why, SIFT_ECANCELED, "the model was closed while the answer was pending");
        for (oai_gen *g = m->gens; g; g = g->next)
            gen_abort(g, &why);
        return;
    }
    model_destroy(m);
}

/* ---- generation end ---------------------------------------------------- */

static void gen_closed(uv_handle_t *h)
{
    oai_gen *g = container_of(h, oai_gen, timer);
    sift_free(g);
}

static void gen_release(oai_gen *g)
{
    sift_buf_free(&g->body);
    sift_buf_free(&g->errbody);
    sift_sse_free(&g->sse);
    sift_stream_free(&g->as);
    uv_close((uv_handle_t *)&g->timer, gen_closed);
}

/* Fires on_done once and releases the generation. Called only from loop
 * callbacks (HTTP on_done, the timer), never from generate or a cancel
 * hook, which is what makes on_done never synchronous. */
static void gen_finish(oai_gen *g, int code, const sift_chat_result *res, const sift_err *err)
{
    oai_model *m = g->m;
    set_state(g, GEN_DONE);
    gen_unlink(g);
    sift_ctx_remove_hook(&g->hook);
    sift_err e = {0};
    if (code) {
        if (err && err->code == code)
            e = *err;
        else
            sift_err_set(&e, code, "%s", err && err->msg[0] ? err->msg : sift_err_name(code));
    }
    g->cb.on_done(g->udata, code, code ? NULL : res, code ? &e : NULL);
    gen_release(g);
    /* counted down only after on_done, so sift_model_free inside on_done is
     * deferred to here instead of freeing the model under our feet */
    m->in_flight--;
    if (m->closing && m->in_flight == 0)
        model_destroy(m);
}

/* The context is done: report its cause, whatever the attempt said. */
static bool finish_if_ctx_done(oai_gen *g)
{
    if (!g->ctx || !sift_ctx_err(g->ctx))
        return false;
    const sift_err *cause = sift_ctx_cause(g->ctx);
    gen_finish(g, cause->code, NULL, cause);
    return true;
}

/* ---- stream callbacks -------------------------------------------------- */

static int ctx_code(const oai_gen *g)
{
    return g->ctx ? sift_ctx_err(g->ctx) : 0;
}

static int as_content(void *ud, const char *text, size_t len)
{
    oai_gen *g = ud;
    int rc = ctx_code(g);
    if (rc)
        return rc;
    g->emitted = true;
    if (g->cb.on_token)
        g->cb.on_token(g->udata, text, len);
    /* the callback may have cancelled the context: nothing more goes out */
    return ctx_code(g);
}

static int as_tool_start(void *ud, size_t index, const char *id, const char *name)
{
    oai_gen *g = ud;
    int rc = ctx_code(g);
    if (rc)
        return rc;
    g->emitted = true;
    if (g->cb.on_tool_call_start)
        g->cb.on_tool_call_start(g->udata, index, id, name);
    return ctx_code(g);
}

static int on_sse_event(const sift_sse_event *ev, void *udata, sift_err *err)
{
    oai_gen *g = udata;
    return sift_stream_feed(&g->as, ev->data, ev->data_len, err);
}

/* ---- HTTP callbacks ---------------------------------------------------- */

/* Retry-After in ms: delay-seconds or an HTTP date; -1 when absent or not
 * understood. */
static int64_t parse_retry_after(const char *v)
{
    if (!v || !*v)
        return -1;
    if (v[strspn(v, "0123456789")] == '\0') {
        int64_t s = 0;
        for (const char *p = v; *p; p++) {
            s = s * 10 + (*p - '0');
            if (s > (int64_t)86400 * 365) /* absurd; and keeps the arithmetic in range */
                break;
        }
        return s * 1000;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -1;
    time_t now = time(NULL);
    return t > now ? (int64_t)(t - now) * 1000 : 0;
}

static int on_http_response(sift_http_request *req, int status, const sift_http_response *resp,
                            void *udata)
{
    (void)req;
    oai_gen *g = udata;
    g->status = status;
    if (status == 429 || status >= 500) {
        /* OpenAI and Azure also send the wait in milliseconds; it is the
         * more precise of the two when both are there */
        const char *ms = sift_http_response_header(resp, "retry-after-ms");
        if (ms && *ms && ms[strspn(ms, "0123456789")] == '\0' && strlen(ms) < 10)
            g->retry_after_ms = strtoll(ms, NULL, 10);
        else
            g->retry_after_ms = parse_retry_after(sift_http_response_header(resp, "Retry-After"));
    }
    if (g->stream && status >= 200 && status < 300) {
        /* some servers ignore "stream": accept their one-document answer
         * rather than reporting a stream with no events */
        const char *ct = sift_http_response_header(resp, "Content-Type");
        g->whole = ct && strncasecmp(ct, "application/json", 16) == 0;
    }
    return 0;
}

static int on_http_data(sift_http_request *req, const char *chunk, size_t len, void *udata)
{
    (void)req;
    oai_gen *g = udata;
    if (g->status < 200 || g->status >= 300) {
        /* keep the start of an error body for the message; the rest is
         * read and dropped so the connection stays reusable */
        size_t room = g->m->max_error_body - g->errbody.len;
        /* out of memory here only shortens the message: the status is kept */
        (void)sift_buf_append(&g->errbody, chunk, len < room ? len : room);
        return 0;
    }
    if (g->whole) {
        if (g->errbody.len + len > g->m->max_body_bytes)
            return sift_err_set(&g->fail, SIFT_ETOOBIG,
                                "the model's answer is over %zu bytes (max_body_bytes)",
                                g->m->max_body_bytes);
        int rc = sift_buf_append(&g->errbody, chunk, len);
        if (rc)
            sift_err_set(&g->fail, rc, "out of memory reading the model's answer");
        return rc;
    }
    int rc = sift_sse_feed(&g->sse, chunk, len, on_sse_event, g, &g->fail);
    if (!rc)
        rc = sift_stream_flush(&g->as, &g->fail);
    if (rc && !g->fail.code)
        sift_err_set(&g->fail, rc, "reading the model's stream: %s", sift_err_name(rc));
    return rc;
}

static void emit_nonstream(oai_gen *g, const sift_chat_result *res)
{
    const sift_message *msg = &res->message;
    if (msg->content_len && g->cb.on_token && !ctx_code(g))
        g->cb.on_token(g->udata, msg->content, msg->content_len);
    for (size_t i = 0; i < msg->n_tool_calls && g->cb.on_tool_call_start; i++) {
        if (ctx_code(g))
            return;
        g->cb.on_tool_call_start(g->udata, i, msg->tool_calls[i].id, msg->tool_calls[i].name);
    }
}

/* A 2xx response is complete: assemble the result. */
static int complete_ok(oai_gen *g, sift_http_response *resp, sift_chat_result *res, sift_err *e)
{
    if (!g->stream || g->whole) {
        const char *body = g->whole ? g->errbody.data : resp->body;
        size_t len = g->whole ? g->errbody.len : resp->body_len;
        int rc = sift_chat_response_parse(body ? body : "", body ? len : 0, g->arena, res, e);
        if (rc)
            return rc;
        emit_nonstream(g, res);
        return 0;
    }
    /* a last event without its blank line still counts (see sse.h) */
    int rc = sift_sse_finish(&g->sse, on_sse_event, g, e);
    if (!rc)
        rc = sift_stream_flush(&g->as, e);
    if (rc)
        return rc;
    return sift_stream_finish(&g->as, g->arena, res, e);
}

static int gen_attempt(oai_gen *g, sift_err *err);

static void on_ctx_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    oai_gen *g = container_of(hook, oai_gen, hook);
    /* inside sift_ctx_cancel: on_done must wait for the loop */
    if (g->state == GEN_BACKOFF)
        gen_abort(g, cause);
}

static void on_timer(uv_timer_t *t)
{
    oai_gen *g = container_of(t, oai_gen, timer);
    if (g->state == GEN_CANCELLED) {
        gen_finish(g, g->last.code, NULL, &g->last);
        return;
    }
    if (g->state != GEN_BACKOFF)
        return;
    sift_ctx_remove_hook(&g->hook);
    set_state(g, GEN_REQUEST);
    sift_err e = {0};
    int rc = gen_attempt(g, &e);
    if (rc) {
        if (finish_if_ctx_done(g))
            return;
        sift_err out;
        sift_err_set(&out, rc, "retry %d could not start: %s", g->attempts, e.msg);
        gen_finish(g, rc, NULL, &out);
    }
}

/* Full jitter: a uniform wait in [0, min(max, base * 2^(n-1))]. */
static int64_t backoff_ms(oai_model *m, int n)
{
    int64_t w = m->backoff_base_ms;
    for (int i = 1; i < n && w < m->backoff_max_ms; i++)
        w *= 2;
    if (w > m->backoff_max_ms)
        w = m->backoff_max_ms;
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return (int64_t)(m->rng % (uint64_t)(w + 1));
}

static const char *plural(int n)
{
    return n == 1 ? "attempt" : "attempts";
}

/* Decides between another attempt and the end, after attempt g->attempts
 * failed with `e`. */
static void retry_or_fail(oai_gen *g, const sift_err *e, bool retryable)
{
    oai_model *m = g->m;
    sift_err out;
    if (!retryable || m->closing) {
        gen_finish(g, e->code, NULL, e);
        return;
    }
    if (g->emitted) {
        sift_err_set(&out, e->code, "the answer broke off after it had started (not retried): %s",
                     e->msg);
        gen_finish(g, e->code, NULL, &out);
        return;
    }
    if (g->attempts > m->max_retries) {
        if (g->attempts == 1)
            gen_finish(g, e->code, NULL, e);
        else {
            sift_err_set(&out, e->code, "giving up after %d attempts: %s", g->attempts, e->msg);
            gen_finish(g, e->code, NULL, &out);
        }
        return;
    }
    int64_t delay;
    if (g->retry_after_ms >= 0) {
        if (g->retry_after_ms > m->retry_after_max_ms) {
            sift_err_set(&out, e->code,
                         "giving up after %d %s: the server asks to wait %lld s, more than the "
                         "%lld s allowed: %s",
                         g->attempts, plural(g->attempts), (long long)(g->retry_after_ms / 1000),
                         (long long)(m->retry_after_max_ms / 1000), e->msg);
            gen_finish(g, e->code, NULL, &out);
            return;
        }
        delay = g->retry_after_ms;
    } else {
        delay = backoff_ms(m, g->attempts);
    }
    int64_t left = g->ctx ? sift_ctx_remaining_ms(g->ctx) : SIFT_NO_DEADLINE;
    if (left != SIFT_NO_DEADLINE && delay >= left) {
        sift_err_set(&out, e->code,
                     "giving up after %d %s: a retry in %lld ms would start after the "
                     "deadline (%lld ms left): %s",
                     g->attempts, plural(g->attempts), (long long)delay, (long long)left, e->msg);
        gen_finish(g, e->code, NULL, &out);
        return;
    }
    sift_warn(run_id(g), "model request failed, retrying in %lld ms (attempt %d of %d): %s",
              (long long)delay, g->attempts + 1, m->max_retries + 1, e->msg);
    sift_err_copy(&g->last, e);
    if (g->ctx && sift_ctx_add_hook(g->ctx, &g->hook, on_ctx_cancel)) {
        gen_finish(g, sift_ctx_err(g->ctx), NULL, sift_ctx_cause(g->ctx));
        return;
    }
    set_state(g, GEN_BACKOFF);
    uv_timer_start(&g->timer, on_timer, (uint64_t)delay, 0);
}

static void on_http_done(sift_http_request *req, int code, sift_http_response *resp,
                         const sift_err *err, void *udata)
{
    (void)req;
    oai_gen *g = udata;
    g->req = NULL;
    if (g->state != GEN_REQUEST)
        return; /* cannot happen: one attempt at a time */
    if (finish_if_ctx_done(g))
        return;
    sift_err e = {0};
    if (code == 0 && g->status >= 200 && g->status < 300) {
        sift_chat_result res;
        int rc = complete_ok(g, resp, &res, &e);
        if (finish_if_ctx_done(g))
            return;
        if (rc == 0)
            gen_finish(g, 0, &res, NULL);
        else
            gen_finish(g, rc, NULL, &e);
        return;
    }
    if (code == 0) {
        const char *body = g->stream ? g->errbody.data : resp->body;
        size_t len = g->stream ? g->errbody.len : resp->body_len;
        sift_chat_error_parse(g->status, body ? body : "", body ? len : 0, &e);
        /* OpenAI answers 429 also when the account is out of credit, which
         * no wait will fix */
        bool quota = body && strstr(body, "insufficient_quota");
        retry_or_fail(g, &e, (g->status == 429 && !quota) || g->status >= 500);
        return;
    }
    if (g->fail.code) {
        /* we aborted the attempt: a malformed chunk or a limit, not retried */
        gen_finish(g, g->fail.code, NULL, &g->fail);
        return;
    }
    sift_err_copy(&e, err);
    if (!e.code)
        sift_err_set(&e, code, "model request failed: %s", sift_err_name(code));
    retry_or_fail(g, &e, code == SIFT_EIO || code == SIFT_ETIMEDOUT);
}

/* Serialises the request into g->body and gives the doubling slack back:
 * the body is kept for retries (a seed run's second request: 4.7 KB in an
 * 8 KB buffer). */
static int gen_build(oai_gen *g, const sift_chat_request *r, sift_err *err)
{
    int rc = sift_chat_request_json(r, &g->body, err);
    if (rc)
        return rc;
    if (g->body.cap > g->body.len + 1) {
        char *fit = sift_realloc(g->body.data, g->body.len + 1);
        if (fit) { /* else keep the larger buffer */
            g->body.data = fit;
            g->body.cap = g->body.len + 1;
        }
    }
    return 0;
}

/* The HTTP client's build_body: the first attempt's body, built when the
 * request leaves the host queue, so the thousands of generations waiting for
 * a connection at high concurrency hold no body. */
static int gen_build_body(void *udata, const char **body, size_t *len, sift_err *err)
{
    oai_gen *g = udata;
    int rc = gen_build(g, &g->creq, err);
    g->creq.messages = NULL; /* built: the caller's messages are no longer used */
    if (rc)
        return rc;
    *body = g->body.data;
    *len = g->body.len;
    return 0;
}

static int gen_attempt(oai_gen *g, sift_err *err)
{
    oai_model *m = g->m;
    g->attempts++;
    g->status = 0;
    g->whole = false;
    g->retry_after_ms = -1;
    sift_buf_reset(&g->errbody);
    sift_err_clear(&g->fail);
    sift_sse_reset(&g->sse);
    sift_stream_reset(&g->as);
    sift_http_req_opts o = {
        .method = "POST",
        .url = m->url,
        .headers = g->stream ? m->hdr_stream : m->hdr_plain,
        .body = g->body.data,
        .body_len = g->body.len,
        .body_borrowed = 1,
        .timeout_ms = m->timeout_ms,
        .max_body_bytes = g->stream ? 0 : m->max_body_bytes,
        .build_body = g->creq.messages ? gen_build_body : NULL,
        /* a model stream arrives in bursts of several KB: with curl's 1 KB
         * buffer each KB cost a recvfrom and a poll (bench/README.md) */
        .buffer_size = g->stream ? 4096 : 0,
    };
    sift_http_callbacks cbs = {
        .on_response = on_http_response,
        .on_data = g->stream ? on_http_data : NULL,
        .on_done = on_http_done,
    };
    return sift_http_request_start(m->http, g->ctx, &o, &cbs, g, &g->req, err);
}

/* ---- generate ---------------------------------------------------------- */

static int oai_generate(sift_model *base, sift_ctx *ctx, sift_arena *arena,
                        const sift_chat_request *req, const sift_model_callbacks *cb, void *udata,
                        sift_err *err)
{
    oai_model *m = (oai_model *)base;
    if (m->closing)
        return sift_err_set(err, SIFT_ESTATE, "model generate: the model is being freed");
    sift_chat_request r = *req;
    if (!r.model || !*r.model)
        r.model = m->model;
    r.include_usage = r.stream && m->stream_usage;

    oai_gen *g = sift_calloc(1, sizeof(*g));
    if (!g)
        return sift_err_set(err, SIFT_ENOMEM, "model generate: out of memory");
    g->m = m;
    g->ctx = ctx;
    g->arena = arena;
    g->cb = *cb;
    g->udata = udata;
    g->stream = r.stream;
    sift_buf_init(&g->body, 0);
    sift_buf_init(&g->errbody, 0);
    sift_sse_init(&g->sse, m->max_event_bytes);
    sift_stream_cbs scb = {.ud = g, .on_content = as_content, .on_tool_start = as_tool_start};
    sift_stream_init(&g->as, &scb, &m->limits);
    /* one token event per read of the model's stream, not one per chunk:
     * per-event work was ~18% of a run's instructions (bench/README.md) */
    sift_stream_set_batch(&g->as, true);
    g->state = GEN_REQUEST;

    int rc = 0;
    if (r.stable_until_done && r.messages) {
        g->creq = r; /* built by gen_build_body when the first attempt is sent */
    } else {
        rc = gen_build(g, &r, err);
        if (rc)
            goto fail_nohandle;
    }
    rc = uv_timer_init(m->loop, &g->timer);
    if (rc) {
        rc = sift_err_set(err, SIFT_EIO, "model generate: timer: %s", uv_strerror(rc));
        goto fail_nohandle;
    }
    rc = gen_attempt(g, err);
    if (rc) {
        set_state(g, GEN_DONE);
        gen_release(g); /* frees g in the close callback; no user callback runs */
        return rc;
    }
    m->in_flight++;
    g->next = m->gens;
    if (m->gens)
        m->gens->prev = g;
    m->gens = g;
    return 0;

fail_nohandle:
    sift_buf_free(&g->body);
    sift_buf_free(&g->errbody);
    sift_sse_free(&g->sse);
    sift_stream_free(&g->as);
    sift_free(g);
    return rc;
}

static const sift_model_vtable oai_vtable = {.generate = oai_generate, .free = oai_free};

/* ---- construction ------------------------------------------------------ */

void sift_openai_opts_from_config(sift_openai_opts *o, const sift_config *cfg)
{
    memset(o, 0, sizeof(*o));
    o->base_url = cfg->llm.base_url;
    o->api_key = cfg->llm.api_key;
    o->model = cfg->llm.model;
    o->timeout_ms = cfg->llm.timeout_ms;
    o->max_retries = cfg->llm.max_retries;
}

sift_model *sift_openai_new(uv_loop_t *loop, sift_http_client *http, const sift_openai_opts *opts,
                            sift_err *err)
{
    const char *why = NULL;
    if (!loop || !http || !opts)
        why = "loop, http client and options are required";
    else if (!opts->base_url || !*opts->base_url)
        why = "llm.base_url is not set";
    else if (strncasecmp(opts->base_url, "http://", 7) != 0 &&
             strncasecmp(opts->base_url, "https://", 8) != 0)
        why = "llm.base_url must start with http:// or https://";
    else if (!opts->model || !*opts->model)
        why = "llm.model is not set";
    else if (opts->max_retries < 0)
        why = "llm.max_retries must be 0 or more";
    else if (opts->api_key && strpbrk(opts->api_key, "\r\n"))
        why = "the API key contains a line break";
    if (why) {
        sift_err_set(err, SIFT_EINVAL, "openai provider: %s", why);
        return NULL;
    }

    oai_model *m = sift_calloc(1, sizeof(*m));
    if (!m)
        goto nomem;
    m->loop = loop;
    m->http = http;
    size_t blen = strlen(opts->base_url);
    while (blen > 0 && opts->base_url[blen - 1] == '/')
        blen--;
    static const char path[] = "/chat/completions";
    if (!(m->url = sift_malloc(blen + sizeof(path))))
        goto nomem;
    memcpy(m->url, opts->base_url, blen);
    memcpy(m->url + blen, path, sizeof(path));
    if (!(m->model = sift_strdup(opts->model)))
        goto nomem;
    if (opts->api_key && *opts->api_key) {
        static const char pre[] = "Authorization: Bearer ";
        size_t klen = strlen(opts->api_key);
        if (!(m->auth = sift_malloc(sizeof(pre) + klen)))
            goto nomem;
        memcpy(m->auth, pre, sizeof(pre) - 1);
        memcpy(m->auth + sizeof(pre) - 1, opts->api_key, klen + 1);
    }
    int i = 0;
    m->hdr_stream[i] = "Content-Type: application/json";
    m->hdr_plain[i++] = "Content-Type: application/json";
    m->hdr_stream[i] = "Accept: text/event-stream";
    m->hdr_plain[i++] = "Accept: application/json";
    if (m->auth) {
        m->hdr_stream[i] = m->auth;
        m->hdr_plain[i++] = m->auth;
    }
    m->hdr_stream[i] = NULL;
    m->hdr_plain[i] = NULL;

    m->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 0;
    m->max_retries = opts->max_retries;
    m->backoff_base_ms =
        opts->backoff_base_ms > 0 ? opts->backoff_base_ms : DEFAULT_BACKOFF_BASE_MS;
    m->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (m->backoff_max_ms < m->backoff_base_ms)
        m->backoff_max_ms = m->backoff_base_ms;
    m->retry_after_max_ms =
        opts->retry_after_max_ms > 0 ? opts->retry_after_max_ms : DEFAULT_RETRY_AFTER_MAX_MS;
    m->max_error_body = opts->max_error_body ? opts->max_error_body : DEFAULT_MAX_ERROR_BODY;
    m->max_body_bytes = opts->max_body_bytes ? opts->max_body_bytes : DEFAULT_MAX_BODY;
    m->max_event_bytes = opts->max_event_bytes;
    m->limits = opts->limits;
    m->stream_usage = !opts->no_stream_usage;
    m->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)m;
    if (!m->rng)
        m->rng = 0x9e3779b97f4a7c15ULL;
    m->base.vt = &oai_vtable;
    m->base.provider = "openai";
    m->base.name = m->model;
    return &m->base;

nomem:
    sift_err_set(err, SIFT_ENOMEM, "openai provider: out of memory");
    if (m)
        model_destroy(m);
    return NULL;
}
