/* mock_embed: see mock_embed.h. Test support code: simple over fast. A
 * delayed answer is one `ereq` on the worker's loop: the rendered answer, a
 * timer, and a cancel hook on the exchange's context for a client that goes
 * away before the timer fires. */
#include "mock_embed.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/server.h"

#define RING 256
#define QUEUE_MAX 64

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct mock_embed {
    sift_server *srv;
    char base_url[64];
    pthread_mutex_t mu;
    int dims;
    mock_embed_reply queue[QUEUE_MAX];
    int qhead, qlen;
    char *bodies[RING], *auths[RING];
    int nreq;
    int disconnects; /* __atomic */
};

void mock_embed_vector(const char *text, size_t len, int dims, float *out)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)text[i];
        h *= 0x100000001b3ULL;
    }
    for (int d = 0; d < dims; d++) {
        /* splitmix64 of (h, d): every component depends on the whole text */
        uint64_t z = h + 0x9e3779b97f4a7c15ULL * (uint64_t)(d + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        out[d] = (float)((int)(z % 2001) - 1000) / 1000.0f;
    }
}

static void respond_error(sift_http_exchange *x, int status, int retry_after)
{
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    const char *code = status == 401   ? "\"invalid_api_key\""
                       : status == 429 ? "\"rate_limit_exceeded\""
                                       : "null";
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"message\":\"mock error %d\",\"type\":\"%s\",\"param\":null,"
                     "\"code\":%s}}",
                     status, type, code);
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after);
        sift_http_set_header(x, "Retry-After", v);
    }
    sift_http_respond(x, status, "application/json", body, (size_t)n);
}

/* The answer to inputs `in` (an array of strings), rendered into b. */
static void render(sift_buf *b, const cJSON *in, const char *model, int dims, int fault)
{
    int n = cJSON_GetArraySize(in);
    float *v = malloc(sizeof(float) * (size_t)(dims > 0 ? dims : 1));
    if (!v)
        abort();
    sift_buf_puts(b, "{\"object\":\"list\",\"data\":[");
    int items = fault == MOCK_EMBED_TOO_FEW ? n - 1 : n;
    int first = 1;
    for (int i = n - 1; i >= n - items; i--) {
        const cJSON *t = cJSON_GetArrayItem(in, i);
        const char *s = cJSON_IsString(t) ? t->valuestring : "";
        mock_embed_vector(s, strlen(s), dims, v);
        sift_buf_puts(b, first ? "{" : ",{");
        if (!(fault == MOCK_EMBED_NO_INDEX && first))
            sift_buf_printf(b, "\"index\":%d,", i);
        sift_buf_puts(b, "\"object\":\"embedding\",\"embedding\":[");
        int nd = fault == MOCK_EMBED_WRONG_DIMS && i == n - items ? dims - 1 : dims;
        for (int d = 0; d < nd; d++) {
            if (d)
                sift_buf_putc(b, ',');
            if (fault == MOCK_EMBED_NON_NUMERIC && first && d == 0)
                sift_buf_puts(b, "\"x\"");
            else
                sift_buf_printf(b, "%.9g", (double)v[d]);
        }
        sift_buf_puts(b, "]}");
        first = 0;
    }
    sift_buf_puts(b, "],\"model\":");
    sift_buf_json_string(b, model, strlen(model));
    sift_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", n, n);
    if (fault == MOCK_EMBED_MALFORMED)
        b->len /= 2;
    free(v);
}

/* ---- delayed answers ---- */

typedef struct ereq {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_http_exchange *x;
    mock_embed *m;
    int status, retry_after;
    sift_buf body;
} ereq;

static void ereq_closed(uv_handle_t *h)
{
    ereq *r = container_of((uv_timer_t *)h, ereq, timer);
    sift_buf_free(&r->body);
    free(r);
}

static void ereq_send(ereq *r)
{
    if (r->status != 200)
        respond_error(r->x, r->status, r->retry_after);
    else
        sift_http_respond(r->x, 200, "application/json", r->body.data, r->body.len);
}

static void on_delay(uv_timer_t *t)
{
    ereq *r = container_of(t, ereq, timer);
    sift_ctx_remove_hook(&r->hook);
    ereq_send(r);
    uv_close((uv_handle_t *)&r->timer, ereq_closed);
}

static void on_gone(sift_ctx_hook *h, const sift_err *cause)
{
    ereq *r = container_of(h, ereq, hook);
    __atomic_add_fetch(&r->m->disconnects, 1, __ATOMIC_RELAXED);
    uv_timer_stop(&r->timer);
    sift_http_stream_abort(r->x);
    uv_close((uv_handle_t *)&r->timer, ereq_closed);
}

/* ---- the handler ---- */

static void h_embeddings(sift_http_exchange *x, void *udata)
{
    mock_embed *m = udata;
    size_t len;
    const char *body = sift_http_body(x, &len);
    const char *auth = sift_http_header(x, "Authorization", NULL);
    mock_embed_reply rep = {0};
    pthread_mutex_lock(&m->mu);
    int i = m->nreq++;
    free(m->bodies[i % RING]);
    free(m->auths[i % RING]);
    m->bodies[i % RING] = strdup(body);
    m->auths[i % RING] = auth ? strdup(auth) : NULL;
    if (m->qlen > 0) {
        rep = m->queue[m->qhead];
        m->qhead = (m->qhead + 1) % QUEUE_MAX;
        m->qlen--;
    }
    int dims = m->dims;
    pthread_mutex_unlock(&m->mu);

    cJSON *req = cJSON_ParseWithLength(body, len);
    cJSON *in = cJSON_GetObjectItemCaseSensitive(req, "input");
    if (cJSON_IsString(in)) {
        cJSON *arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, cJSON_CreateString(in->valuestring));
        cJSON_ReplaceItemInObjectCaseSensitive(req, "input", arr);
        in = arr;
    }
    if (!cJSON_IsArray(in)) {
        cJSON_Delete(req);
        respond_error(x, 400, 0);
        return;
    }
    const cJSON *dj = cJSON_GetObjectItemCaseSensitive(req, "dimensions");
    if (cJSON_IsNumber(dj) && dj->valueint > 0 && dj->valueint <= 8192)
        dims = dj->valueint;
    const cJSON *mj = cJSON_GetObjectItemCaseSensitive(req, "model");
    ereq *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->x = x;
    r->m = m;
    r->status = rep.status ? rep.status : 200;
    r->retry_after = rep.retry_after_s;
    sift_buf_init(&r->body, 0);
    if (r->status == 200)
        render(&r->body, in, cJSON_IsString(mj) ? mj->valuestring : "mock-embed", dims, rep.fault);
    cJSON_Delete(req);
    uv_timer_init(sift_http_loop(x), &r->timer);
    if (rep.delay_ms <= 0) {
        ereq_send(r);
        uv_close((uv_handle_t *)&r->timer, ereq_closed);
        return;
    }
    if (sift_ctx_add_hook(sift_http_ctx(x), &r->hook, on_gone) != 0) {
        sift_http_stream_abort(x);
        uv_close((uv_handle_t *)&r->timer, ereq_closed);
        return;
    }
    uv_timer_start(&r->timer, on_delay, (uint64_t)rep.delay_ms, 0);
}

/* ---- public API ---- */

mock_embed *mock_embed_start(sift_err *err)
{
    mock_embed *m = calloc(1, sizeof *m);
    if (!m) {
        sift_err_set(err, SIFT_ENOMEM, "mock_embed: out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->dims = 8;
    sift_server_opts o = {
        .host = "127.0.0.1",
        .port = 0,
        .workers = 1,
        .max_body_bytes = 16u << 20,
        .shutdown_grace_ms = 200,
    };
    m->srv = sift_server_new(&o, err);
    if (!m->srv || sift_server_route(m->srv, "POST", "/v1/embeddings", h_embeddings, m) ||
        sift_server_start(m->srv, err) != 0) {
        if (err && err->code == 0)
            sift_err_set(err, SIFT_ENOMEM, "mock_embed: cannot add the route");
        mock_embed_stop(m);
        return NULL;
    }
    snprintf(m->base_url, sizeof m->base_url, "http://127.0.0.1:%d/v1", sift_server_port(m->srv));
    return m;
}

const char *mock_embed_base_url(const mock_embed *m)
{
    return m->base_url;
}

void mock_embed_set_dims(mock_embed *m, int dims)
{
    pthread_mutex_lock(&m->mu);
    m->dims = dims;
    pthread_mutex_unlock(&m->mu);
}

void mock_embed_push(mock_embed *m, const mock_embed_reply *r)
{
    pthread_mutex_lock(&m->mu);
    if (m->qlen == QUEUE_MAX)
        abort(); /* a test helper: a lost reply would make the test lie */
    m->queue[(m->qhead + m->qlen) % QUEUE_MAX] = *r;
    m->qlen++;
    pthread_mutex_unlock(&m->mu);
}

int mock_embed_requests(const mock_embed *m)
{
    mock_embed *mm = (mock_embed *)m;
    pthread_mutex_lock(&mm->mu);
    int n = mm->nreq;
    pthread_mutex_unlock(&mm->mu);
    return n;
}

int mock_embed_request(mock_embed *m, int i, char **body, char **auth)
{
    int rc = -1;
    *body = NULL;
    *auth = NULL;
    pthread_mutex_lock(&m->mu);
    if (i >= 0 && i < m->nreq && i >= m->nreq - RING) {
        *body = m->bodies[i % RING] ? strdup(m->bodies[i % RING]) : NULL;
        *auth = m->auths[i % RING] ? strdup(m->auths[i % RING]) : NULL;
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int mock_embed_disconnects(const mock_embed *m)
{
    return __atomic_load_n(&m->disconnects, __ATOMIC_RELAXED);
}

void mock_embed_stop(mock_embed *m)
{
    if (!m)
        return;
    sift_server_free(m->srv);
    for (int i = 0; i < RING; i++) {
        free(m->bodies[i]);
        free(m->auths[i]);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}
