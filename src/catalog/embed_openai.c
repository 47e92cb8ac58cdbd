/* The OpenAI-compatible /v1/embeddings provider (embed.h).
 *
 * One embed call is a `call`: its texts are cut into batches, and up to
 * `concurrency` workers each take the next batch, send it, retry it after a
 * backoff when the server is overloaded, and take another, until none is
 * left. Every request runs under the call's own child context, so the first
 * failure (or the caller's cancellation or deadline) cancels the call's
 * context and with it every transfer in flight; a worker waiting out a
 * backoff is stopped by the context's hook.
 *
 * Each worker owns a uv timer (its backoff). A worker that has finished
 * closes its timer, and the call ends in the close callback of the last one:
 * that is where `done` fires, always from the loop and never inside
 * sift_ctx_cancel or inside embed itself (deferred completion, as the HTTP
 * client does for on_done). */
#include <cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/embed.h"
#include "sift/http.h"
#include "sift/vecindex.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

#define BATCH_DEFAULT 64
#define BATCH_MAX 2048
#define CONCURRENCY_DEFAULT 4
#define CONCURRENCY_MAX 64
#define TIMEOUT_DEFAULT_MS 30000
#define RETRIES_DEFAULT 3
#define BACKOFF_DEFAULT_MS 500
#define BACKOFF_MAX_MS 30000
#define RETRY_AFTER_MAX_MS 60000
#define TEXT_BYTES_DEFAULT 8192
#define ERR_EXCERPT 160 /* bytes of a server's error message quoted */

typedef struct openai_emb {
    sift_embedder base; /* first: the interface pointer is the object */
    sift_http_client *client;
    sift_http_client *(*client_of)(uv_loop_t *loop, void *udata);
    void *client_udata;
    char *url; /* base_url + "/embeddings" */
    char *model;
    char *auth; /* "Authorization: Bearer KEY", or NULL */
    char *id;   /* "openai:MODEL:DIMS" */
    int send_dimensions;
    size_t batch;
    int concurrency;
    int64_t timeout_ms;
    int max_retries;
    int64_t backoff_ms;
    size_t max_text_bytes;
    _Atomic uint64_t retries; /* batches retried, for /metrics (several loops add) */
} openai_emb;

typedef struct ecall ecall;

enum wstate {
    W_SENDING, /* a request is in flight */
    W_BACKOFF, /* the timer runs before a retry */
    W_CLOSING, /* finished; the timer is closing */
};

typedef struct eworker {
    uv_timer_t timer;
    ecall *call;
    enum wstate state;
    size_t batch;    /* index of the batch in hand */
    int attempt;     /* attempts made for it */
    int64_t wait_ms; /* Retry-After of the last answer, -1 when none */
    sift_buf body;   /* request body of the batch in hand */
    sift_http_request *req;
} eworker;

struct ecall {
    openai_emb *e;
    sift_http_client *client;
    sift_ctx *ctx; /* child of the caller's; every request runs under it */
    sift_ctx_hook hook;
    const char *const *texts;
    const size_t *lens;
    size_t n;
    float *out;
    size_t next_batch, nbatches;
    int nworkers, open; /* workers, and timers not yet closed */
    int code;           /* first error, 0 while none */
    sift_err err;
    sift_embed_done_fn done;
    void *ud;
    eworker w[];
};

/* ---- the request body -------------------------------------------------- */

/* The length of s[0..len) cut to at most max bytes without splitting a UTF-8
 * character (continuation bytes are 10xxxxxx). */
static size_t cut_utf8(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int build_body(const openai_emb *e, const ecall *c, size_t first, size_t m, sift_buf *b)
{
    sift_buf_reset(b);
    int rc = sift_buf_puts(b, "{\"model\":");
    rc = rc ? rc : sift_buf_json_string(b, e->model, strlen(e->model));
    rc = rc ? rc : sift_buf_puts(b, ",\"input\":[");
    for (size_t i = 0; !rc && i < m; i++) {
        const char *t = c->texts[first + i];
        size_t len = c->lens ? c->lens[first + i] : strlen(t);
        if (i)
            rc = sift_buf_putc(b, ',');
        /* An empty input is refused by OpenAI ("'$.input' is invalid"); one
         * space embeds to the same nothing. */
        if (!rc && len == 0)
            rc = sift_buf_puts(b, "\" \"");
        else if (!rc)
            rc = sift_buf_json_string(b, t, cut_utf8(t, len, e->max_text_bytes));
    }
    rc = rc ? rc : sift_buf_puts(b, "],\"encoding_format\":\"float\"");
    if (!rc && e->send_dimensions)
        rc = sift_buf_printf(b, ",\"dimensions\":%zu", e->base.dims);
    return rc ? rc : sift_buf_putc(b, '}');
}

/* ---- the answer ---------------------------------------------------------- */

/* embed.h. Messages name the problem; the caller adds the URL. */
int sift_embed_openai_parse(const char *body, size_t len, size_t m, size_t dims, float *out,
                            sift_err *err)
{
    int rc = 0;
    unsigned char *seen = NULL;
    cJSON *doc = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(doc)) {
        rc = sift_err_set(err, SIFT_EPROTO, "embeddings: the answer is not a JSON object");
        goto done;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    if (!cJSON_IsArray(data)) {
        rc = sift_err_set(err, SIFT_EPROTO, "embeddings: the answer has no \"data\" array");
        goto done;
    }
    size_t nd = (size_t)cJSON_GetArraySize(data);
    if (nd != m) {
        rc = sift_err_set(err, SIFT_EPROTO, "embeddings: the answer has %zu items for %zu inputs",
                          nd, m);
        goto done;
    }
    seen = sift_calloc(m ? m : 1, 1);
    if (!seen) {
        rc = sift_err_set(err, SIFT_ENOMEM, "embeddings: out of memory");
        goto done;
    }
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, data)
    {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(it, "index");
        const cJSON *emb = cJSON_GetObjectItemCaseSensitive(it, "embedding");
        if (!cJSON_IsNumber(ix)) {
            rc = sift_err_set(err, SIFT_EPROTO, "embeddings: item %zu has no numeric \"index\"", k);
            goto done;
        }
        double dv = ix->valuedouble;
        if (!(dv >= 0 && dv < (double)m) || dv != floor(dv)) {
            rc = sift_err_set(err, SIFT_EPROTO, "embeddings: item %zu has index %g, outside 0..%zu",
                              k, dv, m - 1);
            goto done;
        }
        size_t idx = (size_t)dv;
        if (seen[idx]) {
            rc = sift_err_set(err, SIFT_EPROTO, "embeddings: index %zu appears twice", idx);
            goto done;
        }
        seen[idx] = 1;
        if (cJSON_IsString(emb)) {
            rc = sift_err_set(err, SIFT_EPROTO,
                              "embeddings: item %zu: embedding is a string (base64?), expected "
                              "an array of numbers",
                              k);
            goto done;
        }
        if (!cJSON_IsArray(emb)) {
            rc = sift_err_set(err, SIFT_EPROTO, "embeddings: item %zu has no \"embedding\" array",
                              k);
            goto done;
        }
        size_t ne = (size_t)cJSON_GetArraySize(emb);
        if (ne != dims) {
            rc = sift_err_set(err, SIFT_EPROTO,
                              "embeddings: item %zu: embedding has %zu numbers, expected %zu "
                              "(check embed.dimensions against the model)",
                              k, ne, dims);
            goto done;
        }
        float *v = out + idx * dims;
        double ss = 0;
        size_t d = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, emb)
        {
            if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || fabs(x->valuedouble) > 3.0e38) {
                rc = sift_err_set(err, SIFT_EPROTO,
                                  "embeddings: item %zu: component %zu is not a finite number", k,
                                  d);
                goto done;
            }
            v[d] = (float)x->valuedouble;
            ss += (double)v[d] * v[d];
            d++;
        }
        /* Servers differ: OpenAI's vectors are unit length, others' need not
         * be; a dot product is a cosine only for unit vectors. */
        if (ss > 0) {
            double inv = 1.0 / sqrt(ss);
            for (d = 0; d < dims; d++)
                v[d] = (float)(v[d] * inv);
        }
        k++;
    }
done:
    sift_free(seen);
    cJSON_Delete(doc);
    return rc;
}

/* The server's own error message ({"error":{"message":...}}), or the start
 * of the body, for quoting; "" when there is nothing useful. */
static void server_message(const char *body, size_t len, char *out, size_t n)
{
    out[0] = '\0';
    if (!body || !len)
        return;
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
    if (cJSON_IsString(m) && m->valuestring) {
        snprintf(out, n, ": %s", m->valuestring);
    } else {
        size_t k = len < n - 3 ? len : n - 3;
        out[0] = ':';
        out[1] = ' ';
        memcpy(out + 2, body, k);
        out[2 + k] = '\0';
    }
    cJSON_Delete(doc);
    /* one line, whatever the server wrote */
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

/* Retry-After as delay-seconds, in ms; -1 when absent or not a number (an
 * HTTP date is rare for this API and falls back to the backoff). */
static int64_t retry_after_ms(const sift_http_response *resp)
{
    const char *v = sift_http_response_header(resp, "retry-after-ms");
    if (v && *v && v[strspn(v, "0123456789")] == '\0' && strlen(v) < 10)
        return strtoll(v, NULL, 10);
    v = sift_http_response_header(resp, "Retry-After");
    if (v && *v && v[strspn(v, "0123456789")] == '\0' && strlen(v) < 7)
        return strtoll(v, NULL, 10) * 1000;
    return -1;
}

/* ---- the call -------------------------------------------------------------- */

static void worker_next(eworker *w);

static void call_fail(ecall *c, const sift_err *err)
{
    if (c->code)
        return;
    c->code = err->code ? err->code : SIFT_EINTERNAL;
    sift_err_copy(&c->err, err);
    /* Stops every other batch: transfers abort, the hook ends backoffs. */
    sift_ctx_cancel(c->ctx, SIFT_EFAILED, "embeddings: another batch failed");
}

static void timer_closed(uv_handle_t *h)
{
    eworker *w = container_of((uv_timer_t *)h, eworker, timer);
    ecall *c = w->call;
    sift_buf_free(&w->body);
    if (--c->open > 0)
        return;
    /* the last worker: the call is over */
    sift_ctx_remove_hook(&c->hook);
    sift_ctx_release(c->ctx);
    sift_embed_done_fn done = c->done;
    void *ud = c->ud;
    int code = c->code;
    sift_err err = c->err;
    sift_free(c);
    done(ud, code, code ? &err : NULL);
}

static void worker_finish(eworker *w)
{
    if (w->state == W_CLOSING)
        return;
    w->state = W_CLOSING;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, timer_closed);
}

static void on_backoff(uv_timer_t *t)
{
    eworker *w = container_of(t, eworker, timer);
    if (w->state != W_BACKOFF)
        return;
    worker_next(w);
}

/* Retries the batch in hand after the backoff, or fails the call with `why`
 * when its retries are spent. */
static void retry_or_fail(eworker *w, const sift_err *why)
{
    ecall *c = w->call;
    openai_emb *e = c->e;
    if (w->attempt > e->max_retries) {
        sift_err err;
        sift_err_set(&err, why->code, "%s (after %d attempt%s)", why->msg, w->attempt,
                     w->attempt == 1 ? "" : "s");
        call_fail(c, &err);
        worker_finish(w);
        return;
    }
    int64_t wait = e->backoff_ms;
    for (int i = 1; i < w->attempt && wait < BACKOFF_MAX_MS; i++)
        wait *= 2;
    if (wait > BACKOFF_MAX_MS)
        wait = BACKOFF_MAX_MS;
    if (w->wait_ms >= 0)
        wait = w->wait_ms < RETRY_AFTER_MAX_MS ? w->wait_ms : RETRY_AFTER_MAX_MS;
    w->state = W_BACKOFF;
    atomic_fetch_add_explicit(&e->retries, 1, memory_order_relaxed);
    uv_timer_start(&w->timer, on_backoff, (uint64_t)wait, 0);
}

static void on_http_done(sift_http_request *req, int code, sift_http_response *resp,
                         const sift_err *herr, void *udata)
{
    eworker *w = udata;
    ecall *c = w->call;
    openai_emb *e = c->e;
    w->req = NULL;
    if (c->code || sift_ctx_err(c->ctx)) {
        /* the call is ending: a failure elsewhere, or the caller's context */
        if (!c->code)
            call_fail(c, sift_ctx_cause(c->ctx));
        worker_finish(w);
        return;
    }
    sift_err err = {0};
    w->wait_ms = -1;
    if (code) {
        /* the request's own timeout or a lost connection: worth retrying */
        sift_err_set(&err, code, "embeddings: %s", herr ? herr->msg : sift_err_name(code));
        if (code == SIFT_EIO || code == SIFT_ETIMEDOUT) {
            retry_or_fail(w, &err);
        } else {
            call_fail(c, &err);
            worker_finish(w);
        }
        return;
    }
    int st = resp->status;
    if (st != 200) {
        char msg[ERR_EXCERPT];
        server_message(resp->body, resp->body_len, msg, sizeof msg);
        if (st == 401 || st == 403) {
            sift_err_set(&err, SIFT_EHTTP,
                         "embeddings: HTTP %d from %s: the API key was refused (embed.api_key or "
                         "SIFT_EMBED_API_KEY)%s",
                         st, e->url, msg);
        } else {
            sift_err_set(&err, SIFT_EHTTP, "embeddings: HTTP %d from %s%s", st, e->url, msg);
        }
        if (st == 429 || st >= 500) {
            w->wait_ms = retry_after_ms(resp);
            retry_or_fail(w, &err);
        } else {
            call_fail(c, &err);
            worker_finish(w);
        }
        return;
    }
    size_t first = w->batch * e->batch;
    size_t m = c->n - first < e->batch ? c->n - first : e->batch;
    if (sift_embed_openai_parse(resp->body, resp->body_len, m, e->base.dims,
                                c->out + first * e->base.dims, &err)) {
        if (err.code == SIFT_EPROTO) {
            sift_err with_url;
            sift_err_set(&with_url, err.code, "%s (from %s)", err.msg, e->url);
            err = with_url;
        }
        call_fail(c, &err);
        worker_finish(w);
        return;
    }
    /* this batch is done: the next one, or the end */
    w->attempt = 0;
    if (c->next_batch >= c->nbatches) {
        worker_finish(w);
        return;
    }
    w->batch = c->next_batch++;
    worker_next(w);
}

/* Sends (or re-sends) the batch in hand. */
static void worker_next(eworker *w)
{
    ecall *c = w->call;
    openai_emb *e = c->e;
    sift_err err = {0};
    size_t first = w->batch * e->batch;
    size_t m = c->n - first < e->batch ? c->n - first : e->batch;
    if (w->attempt == 0 && build_body(e, c, first, m, &w->body)) {
        sift_err_set(&err, SIFT_ENOMEM, "embeddings: out of memory building a request");
        goto fail;
    }
    const char *headers[3] = {"Content-Type: application/json", e->auth, NULL};
    sift_http_req_opts ro = {
        .method = "POST",
        .url = e->url,
        .headers = headers,
        .body = w->body.data,
        .body_len = w->body.len,
        .body_borrowed = 1, /* w->body is kept until on_done */
        .timeout_ms = e->timeout_ms,
        /* 4096 floats as JSON text run to ~90 KB; a generous bound per text */
        .max_body_bytes = (size_t)m * (e->base.dims * 32 + 512) + 65536,
    };
    static const sift_http_callbacks cb = {.on_done = on_http_done};
    w->attempt++;
    w->state = W_SENDING;
    if (sift_http_request_start(c->client, c->ctx, &ro, &cb, w, &w->req, &err))
        goto fail;
    return;
fail:
    call_fail(c, &err);
    worker_finish(w);
}

static void on_ctx_done(sift_ctx_hook *h, const sift_err *cause)
{
    ecall *c = container_of(h, ecall, hook);
    if (!c->code) {
        c->code = cause->code;
        sift_err_set(&c->err, cause->code, "embeddings: %s", cause->msg);
    }
    /* requests in flight end through their on_done; backoffs end here */
    for (int i = 0; i < c->nworkers; i++)
        if (c->w[i].state == W_BACKOFF)
            worker_finish(&c->w[i]);
}

static int start_call(openai_emb *e, sift_http_client *client, sift_ctx *ctx,
                      const char *const *texts, const size_t *lens, size_t n, float *out,
                      sift_embed_done_fn done, void *ud, sift_err *err)
{
    size_t nb = (n + e->batch - 1) / e->batch;
    int nw = nb < (size_t)e->concurrency ? (int)nb : e->concurrency;
    if (nw == 0)
        nw = 1; /* no text: one worker that finds nothing to do ends the call on the loop */
    if (sift_ctx_err(ctx))
        return sift_err_copy(err, sift_ctx_cause(ctx));
    ecall *c = sift_calloc(1, sizeof *c + (size_t)nw * sizeof c->w[0]);
    if (!c)
        return sift_err_set(err, SIFT_ENOMEM, "embeddings: out of memory");
    c->ctx = sift_ctx_new(ctx);
    if (!c->ctx) {
        sift_free(c);
        return sift_err_set(err, SIFT_ENOMEM, "embeddings: out of memory");
    }
    c->e = e;
    c->client = client;
    c->texts = texts;
    c->lens = lens;
    c->n = n;
    c->out = out;
    c->nbatches = nb;
    c->nworkers = nw;
    c->done = done;
    c->ud = ud;
    sift_ctx_add_hook(c->ctx, &c->hook, on_ctx_done); /* live: checked above */
    uv_loop_t *loop = sift_ctx_loop(c->ctx);
    for (int i = 0; i < nw; i++) {
        eworker *w = &c->w[i];
        w->call = c;
        w->wait_ms = -1;
        sift_buf_init(&w->body, 0);
        uv_timer_init(loop, &w->timer);
        c->open++;
    }
    /* From here on the call always ends through `done`. */
    for (int i = 0; i < nw; i++) {
        eworker *w = &c->w[i];
        if (c->code || c->next_batch >= c->nbatches) {
            worker_finish(w);
            continue;
        }
        w->batch = c->next_batch++;
        worker_next(w);
    }
    return 0;
}

/* ---- the provider ---------------------------------------------------------- */

static int openai_embed(sift_embedder *eb, sift_ctx *ctx, const char *const *texts,
                        const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                        sift_err *err)
{
    openai_emb *e = (openai_emb *)eb;
    if (!ctx)
        return sift_err_set(err, SIFT_EINVAL,
                            "embeddings: the openai provider needs a context (deadline, cancel)");
    sift_http_client *cl =
        e->client_of ? e->client_of(sift_ctx_loop(ctx), e->client_udata) : e->client;
    if (!cl)
        return sift_err_set(err, SIFT_ESTATE,
                            "embeddings: no HTTP client for this loop; use "
                            "sift_embedder_embed_sync off the loop");
    return start_call(e, cl, ctx, texts, lens, n, out, done, ud, err);
}

struct sync_wait {
    int finished;
    int code;
    sift_err err;
};

static void sync_done(void *ud, int code, const sift_err *err)
{
    struct sync_wait *sw = ud;
    sw->finished = 1;
    sw->code = code;
    if (code)
        sift_err_copy(&sw->err, err);
}

/* Off the loop: a private loop and client for the duration of the call, so a
 * loader gets the same batching, concurrency and retries as the loop does. */
static int openai_embed_sync(sift_embedder *eb, const char *const *texts, const size_t *lens,
                             size_t n, float *out, sift_err *err)
{
    openai_emb *e = (openai_emb *)eb;
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc)
        return sift_err_set(err, SIFT_ENOMEM, "embeddings: cannot make a loop: %s",
                            uv_strerror(rc));
    sift_http_client_opts co = {.max_host_connections = e->concurrency};
    sift_http_client *cl = sift_http_client_new(&loop, &co, err);
    sift_ctx *root = cl ? sift_ctx_new_root(&loop) : NULL;
    struct sync_wait sw = {0};
    if (!cl) {
        rc = err && err->code ? err->code : SIFT_ENOMEM;
    } else if (!root) {
        rc = sift_err_set(err, SIFT_ENOMEM, "embeddings: out of memory");
    } else if ((rc = start_call(e, cl, root, texts, lens, n, out, sync_done, &sw, err)) == 0) {
        while (!sw.finished)
            uv_run(&loop, UV_RUN_ONCE);
        rc = sw.code ? sift_err_copy(err, &sw.err) : 0;
    }
    sift_ctx_release(root);
    if (cl)
        sift_http_client_close(cl, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* the client's and the context's close callbacks */
    uv_loop_close(&loop);
    return rc;
}

static void openai_free(sift_embedder *eb)
{
    openai_emb *e = (openai_emb *)eb;
    sift_free(e->url);
    sift_free(e->model);
    if (e->auth) {
        /* the key should not linger in freed memory */
        explicit_bzero(e->auth, strlen(e->auth));
        sift_free(e->auth);
    }
    sift_free(e->id);
    sift_free(e);
}

static uint64_t openai_retries(sift_embedder *eb)
{
    return atomic_load_explicit(&((openai_emb *)eb)->retries, memory_order_relaxed);
}

static const sift_embedder_ops openai_ops = {
    .name = "openai",
    .embed = openai_embed,
    .embed_sync = openai_embed_sync,
    .free = openai_free,
    .retries = openai_retries,
};

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    va_list ap;
    va_start(ap, fmt);
    int rc = sift_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc) {
        sift_buf_free(&b);
        return NULL;
    }
    return sift_buf_detach(&b, NULL);
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int sift_embedder_openai_new(const sift_openai_embed_opts *opts, sift_http_client *client,
                             sift_embedder **out, sift_err *err)
{
    *out = NULL;
    if (!opts || !opts->base_url || !*opts->base_url)
        return sift_err_set(err, SIFT_EINVAL, "embeddings: no base URL (embed.base_url)");
    if (strncmp(opts->base_url, "http://", 7) != 0 && strncmp(opts->base_url, "https://", 8) != 0)
        return sift_err_set(err, SIFT_EINVAL,
                            "embeddings: base URL \"%s\" must start with http:// or https://",
                            opts->base_url);
    if (!opts->model || !*opts->model || has_ctl(opts->model))
        return sift_err_set(err, SIFT_EINVAL, "embeddings: no model name (embed.model)");
    if (opts->dims == 0 || opts->dims > SIFT_VEC_DIMS_MAX)
        return sift_err_set(err, SIFT_EINVAL,
                            "embeddings: dimensions must be 1..%d, the length of the model's "
                            "vectors (embed.dimensions)",
                            SIFT_VEC_DIMS_MAX);
    if (opts->batch_size > BATCH_MAX)
        return sift_err_set(err, SIFT_EINVAL, "embeddings: batch size over %d", BATCH_MAX);
    if (opts->concurrency < 0 || opts->concurrency > CONCURRENCY_MAX)
        return sift_err_set(err, SIFT_EINVAL, "embeddings: concurrency must be 1..%d",
                            CONCURRENCY_MAX);
    if (opts->timeout_ms < 0 || opts->backoff_ms < 0)
        return sift_err_set(err, SIFT_EINVAL, "embeddings: negative timeout or backoff");
    if (opts->api_key && has_ctl(opts->api_key))
        return sift_err_set(err, SIFT_EINVAL,
                            "embeddings: the API key holds a control character (a stray newline?)");
    openai_emb *e = sift_calloc(1, sizeof *e);
    if (!e)
        return sift_err_set(err, SIFT_ENOMEM, "embeddings: out of memory");
    size_t bl = strlen(opts->base_url);
    while (bl > 0 && opts->base_url[bl - 1] == '/')
        bl--;
    e->url = dup_printf("%.*s/embeddings", (int)bl, opts->base_url);
    e->model = dup_printf("%s", opts->model);
    e->id = dup_printf("openai:%s:%zu", opts->model, opts->dims);
    if (opts->api_key && *opts->api_key)
        e->auth = dup_printf("Authorization: Bearer %s", opts->api_key);
    if (!e->url || !e->model || !e->id || (opts->api_key && *opts->api_key && !e->auth)) {
        openai_free(&e->base);
        return sift_err_set(err, SIFT_ENOMEM, "embeddings: out of memory");
    }
    e->base.ops = &openai_ops;
    e->base.dims = opts->dims;
    e->base.max_batch = 0; /* the provider batches itself */
    e->base.id = e->id;
    e->base.remote = 1;
    e->client = client;
    e->client_of = opts->client_of;
    e->client_udata = opts->client_udata;
    e->send_dimensions = opts->send_dimensions;
    e->batch = opts->batch_size ? opts->batch_size : BATCH_DEFAULT;
    e->concurrency = opts->concurrency ? opts->concurrency : CONCURRENCY_DEFAULT;
    e->timeout_ms = opts->timeout_ms ? opts->timeout_ms : TIMEOUT_DEFAULT_MS;
    e->max_retries = opts->max_retries < 0 ? 0
                     : opts->max_retries   ? opts->max_retries
                                           : RETRIES_DEFAULT;
    e->backoff_ms = opts->backoff_ms ? opts->backoff_ms : BACKOFF_DEFAULT_MS;
    e->max_text_bytes = opts->max_text_bytes ? opts->max_text_bytes : TEXT_BYTES_DEFAULT;
    *out = &e->base;
    return 0;
}
