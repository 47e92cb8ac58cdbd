/* mock_llm: see mock_llm.h for what it answers. One request is one `mreq`
 * on its worker's loop: a timer for the delays, a cancel hook on the
 * exchange's context for a client that goes away, and an event generator
 * that builds one chunk at a time (nothing is rendered in advance, so a
 * thousand idle streams cost a thousand small structs). */
#include "mock_llm.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/server.h"

#define BODY_RING 64
#define FLUSH_POLL_MAX 5000 /* 1 ms polls before a scripted disconnect gives up waiting */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- deep copies of replies ---- */

struct qnode {
    struct qnode *next;
    mock_reply r; /* strings and tool_calls owned */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void reply_free(struct qnode *q)
{
    if (q == NULL)
        return;
    free((char *)q->r.error_message);
    free((char *)q->r.content);
    free((char *)q->r.finish_reason);
    for (int i = 0; i < q->r.n_tool_calls; i++) {
        mock_tool_call *c = (mock_tool_call *)&q->r.tool_calls[i];
        free((char *)c->id);
        free((char *)c->name);
        free((char *)c->arguments);
    }
    free((void *)q->r.tool_calls);
    free(q);
}

/* NULL when out of memory. */
static struct qnode *reply_dup(const mock_reply *r)
{
    struct qnode *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->r = *r;
    q->r.error_message = dup_or_null(r->error_message);
    q->r.content = dup_or_null(r->content);
    q->r.finish_reason = dup_or_null(r->finish_reason);
    q->r.tool_calls = NULL;
    q->r.n_tool_calls = 0;
    int fail = (r->error_message && !q->r.error_message) || (r->content && !q->r.content) ||
               (r->finish_reason && !q->r.finish_reason);
    if (!fail && r->n_tool_calls > 0 && r->tool_calls != NULL) {
        mock_tool_call *calls = calloc((size_t)r->n_tool_calls, sizeof(*calls));
        q->r.tool_calls = calls;
        fail = calls == NULL;
        for (int i = 0; !fail && i < r->n_tool_calls; i++) {
            const mock_tool_call *c = &r->tool_calls[i];
            q->r.n_tool_calls = i + 1;
            calls[i].fragments = c->fragments;
            calls[i].id = dup_or_null(c->id);
            calls[i].name = strdup(c->name ? c->name : "");
            calls[i].arguments = strdup(c->arguments ? c->arguments : "");
            fail = (c->id && !calls[i].id) || !calls[i].name || !calls[i].arguments;
        }
    }
    if (fail) {
        reply_free(q);
        return NULL;
    }
    return q;
}

/* ---- the mock ---- */

struct mock_llm {
    sift_server *srv;
    int port;
    char base_url[64];
    pthread_mutex_t mu;
    struct qnode *head, *tail; /* queued replies */
    struct qnode *def;         /* default reply, or NULL */
    mock_llm_responder fn;
    void *fn_udata;
    char *bodies[BODY_RING]; /* request i at i % BODY_RING */
    int nreq;                /* under mu; read with __atomic */
    int disconnects;         /* __atomic */
    long chunks;             /* __atomic */
    int stopping;            /* __atomic */
};

/* ---- one request ---- */

enum mr_state {
    MR_WAIT,  /* the timer runs: TTFT or the delay before the next event */
    MR_WRITE, /* writing events */
    MR_DRAIN, /* the stream buffer is full: waiting for the drain callback */
    MR_FLUSH, /* scripted disconnect: waiting for the written events to leave */
    MR_DONE,  /* the exchange is finished; the timer is closing */
};

enum mr_kind { K_ERROR, K_JSON, K_STREAM };

/* Where the event generator is. */
enum phase { P_ROLE, P_WORDS, P_CALL_HEAD, P_CALL_FRAG, P_FINISH, P_USAGE, P_DONE, P_END };

struct mreq {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_http_exchange *x;
    mock_llm *m;
    struct qnode *rep;
    enum mr_state state;
    enum mr_kind kind;
    int include_usage;
    int prompt_tokens, completion_tokens;
    int polls;
    char *prefix;        /* {"id":..,"object":"chat.completion","created":..,"model":.., */
    size_t prefix_split; /* where ".chunk" goes in the object name */
    /* the generator */
    enum phase phase;
    int ev; /* events written */
    size_t pos;
    int call, frag, nfrag, role_pending;
    sift_buf chunk; /* the next event, built but not yet written */
    int pending;
};

static void set_state(struct mreq *mr, enum mr_state st)
{
    mr->state = st;
}

static void mr_closed(uv_handle_t *h)
{
    struct mreq *mr = container_of(h, struct mreq, timer);
    reply_free(mr->rep);
    sift_buf_free(&mr->chunk);
    sift_free(mr->prefix);
    free(mr);
}

/* How mr_finish finishes the exchange: end the stream, drop the
 * connection, or answer in one piece with the error or the whole reply. */
enum finish_how { F_END, F_ABORT, F_ERROR, F_JSON };

static void respond_error(sift_http_exchange *x, int status, const char *message, int retry_after);
static void respond_json(struct mreq *mr);

/* The one way out: finishes the exchange, stops the timer and frees the
 * request in its close callback. The hook goes first, so that a finishing
 * call that notices the client has gone cannot re-enter through on_cancel. */
static void mr_finish(struct mreq *mr, enum finish_how how)
{
    if (mr->state == MR_DONE)
        return;
    set_state(mr, MR_DONE);
    sift_ctx_remove_hook(&mr->hook);
    const mock_reply *r = &mr->rep->r;
    switch (how) {
    case F_END:
        sift_http_stream_end(mr->x);
        break;
    case F_ABORT:
        sift_http_stream_abort(mr->x);
        break;
    case F_ERROR:
        respond_error(mr->x, r->status, r->error_message, r->retry_after_s);
        break;
    case F_JSON:
        respond_json(mr);
        break;
    }
    mr->x = NULL;
    uv_timer_stop(&mr->timer);
    uv_close((uv_handle_t *)&mr->timer, mr_closed);
}

static void on_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    struct mreq *mr = container_of(hook, struct mreq, hook);
    if (!__atomic_load_n(&mr->m->stopping, __ATOMIC_RELAXED))
        __atomic_add_fetch(&mr->m->disconnects, 1, __ATOMIC_RELAXED);
    mr_finish(mr, F_ABORT);
}

/* ---- splitting text ---- */

static int is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* End of the word piece starting at pos: the whitespace before the word, the
 * word, and the trailing whitespace when nothing follows it. */
static size_t word_end(const char *s, size_t len, size_t pos)
{
    size_t i = pos;
    while (i < len && is_space(s[i]))
        i++;
    while (i < len && !is_space(s[i]))
        i++;
    size_t j = i;
    while (j < len && is_space(s[j]))
        j++;
    return j == len ? len : i;
}

/* End of argument fragment j of n that starts at `start`: an even split,
 * moved forward off UTF-8 continuation bytes, never empty. */
static size_t frag_end(const char *s, size_t len, size_t start, int j, int n)
{
    if (j >= n - 1)
        return len;
    size_t end = len * (size_t)(j + 1) / (size_t)n;
    if (end <= start)
        end = start + 1;
    while (end < len && ((unsigned char)s[end] & 0xC0) == 0x80)
        end++;
    return end < len ? end : len;
}

static int nfrags(const mock_tool_call *c)
{
    size_t len = strlen(c->arguments);
    int n = c->fragments > 0 ? c->fragments : 1;
    return len < (size_t)n ? (int)len : n;
}

/* Content and argument pieces: the completion tokens we report. */
static int count_pieces(const mock_reply *r)
{
    int n = 0;
    if (r->content) {
        size_t len = strlen(r->content);
        for (size_t p = 0; p < len; p = word_end(r->content, len, p))
            n++;
    }
    for (int i = 0; i < r->n_tool_calls; i++) {
        const mock_tool_call *c = &r->tool_calls[i];
        size_t len = strlen(c->arguments), p = 0;
        for (int j = 0, k = nfrags(c); j < k && p < len; j++, n++)
            p = frag_end(c->arguments, len, p, j, k);
    }
    return n;
}

static const char *finish_reason(const mock_reply *r)
{
    if (r->finish_reason)
        return r->finish_reason;
    return r->n_tool_calls > 0 ? "tool_calls" : "stop";
}

static void put_json_str(sift_buf *b, const char *s, size_t n)
{
    sift_buf_putc(b, '"');
    sift_buf_json_escape(b, s, n);
    sift_buf_putc(b, '"');
}

static void put_usage(sift_buf *b, const struct mreq *mr)
{
    sift_buf_printf(
        b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
        mr->prompt_tokens, mr->completion_tokens, mr->prompt_tokens + mr->completion_tokens);
}

/* ---- the event generator ---- */

/* The members every object starts with; `chunk` names it a
 * chat.completion.chunk rather than a chat.completion. */
static void put_prefix(sift_buf *b, const struct mreq *mr, int chunk)
{
    sift_buf_append(b, mr->prefix, mr->prefix_split);
    if (chunk)
        sift_buf_puts(b, ".chunk");
    sift_buf_puts(b, mr->prefix + mr->prefix_split);
}

static void chunk_open(struct mreq *mr)
{
    put_prefix(&mr->chunk, mr, 1);
    sift_buf_puts(&mr->chunk, "\"choices\":[{\"index\":0,\"delta\":{");
    if (mr->role_pending) {
        sift_buf_puts(&mr->chunk, "\"role\":\"assistant\",\"content\":null,");
        mr->role_pending = 0;
    }
}

static void chunk_close(struct mreq *mr, const char *fr)
{
    if (fr)
        sift_buf_printf(&mr->chunk, "},\"logprobs\":null,\"finish_reason\":\"%s\"}]", fr);
    else
        sift_buf_puts(&mr->chunk, "},\"logprobs\":null,\"finish_reason\":null}]");
    sift_buf_puts(&mr->chunk, mr->include_usage ? ",\"usage\":null}" : "}");
}

/* Builds the next event into mr->chunk; 0 when there is none left. */
static int next_event(struct mreq *mr)
{
    const mock_reply *r = &mr->rep->r;
    sift_buf_reset(&mr->chunk);
    for (;;) {
        switch (mr->phase) {
        case P_ROLE:
            put_prefix(&mr->chunk, mr, 1);
            sift_buf_puts(&mr->chunk, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                                      "\"content\":\"\"");
            chunk_close(mr, NULL);
            mr->phase = P_WORDS;
            return 1;
        case P_WORDS: {
            size_t len = r->content ? strlen(r->content) : 0;
            if (mr->pos >= len) {
                mr->phase = P_CALL_HEAD;
                break;
            }
            size_t end = word_end(r->content, len, mr->pos);
            chunk_open(mr);
            sift_buf_puts(&mr->chunk, "\"content\":");
            put_json_str(&mr->chunk, r->content + mr->pos, end - mr->pos);
            chunk_close(mr, NULL);
            mr->pos = end;
            return 1;
        }
        case P_CALL_HEAD: {
            if (mr->call >= r->n_tool_calls) {
                mr->phase = P_FINISH;
                break;
            }
            const mock_tool_call *c = &r->tool_calls[mr->call];
            chunk_open(mr);
            sift_buf_printf(&mr->chunk, "\"tool_calls\":[{\"index\":%d,\"id\":", mr->call);
            if (c->id)
                put_json_str(&mr->chunk, c->id, strlen(c->id));
            else
                sift_buf_printf(&mr->chunk, "\"call_mock_%d\"", mr->call);
            sift_buf_puts(&mr->chunk, ",\"type\":\"function\",\"function\":{\"name\":");
            put_json_str(&mr->chunk, c->name, strlen(c->name));
            sift_buf_puts(&mr->chunk, ",\"arguments\":\"\"}}]");
            chunk_close(mr, NULL);
            mr->phase = P_CALL_FRAG;
            mr->frag = 0;
            mr->nfrag = nfrags(c);
            mr->pos = 0;
            return 1;
        }
        case P_CALL_FRAG: {
            const mock_tool_call *c = &r->tool_calls[mr->call];
            size_t len = strlen(c->arguments);
            if (mr->frag >= mr->nfrag || mr->pos >= len) {
                mr->call++;
                mr->phase = P_CALL_HEAD;
                break;
            }
            size_t end = frag_end(c->arguments, len, mr->pos, mr->frag, mr->nfrag);
            chunk_open(mr);
            sift_buf_printf(&mr->chunk,
                            "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", mr->call);
            put_json_str(&mr->chunk, c->arguments + mr->pos, end - mr->pos);
            sift_buf_puts(&mr->chunk, "}}]");
            chunk_close(mr, NULL);
            mr->pos = end;
            mr->frag++;
            return 1;
        }
        case P_FINISH:
            mr->phase = P_USAGE;
            if (r->omit_finish_reason)
                break;
            chunk_open(mr);
            chunk_close(mr, finish_reason(r));
            return 1;
        case P_USAGE:
            mr->phase = P_DONE;
            if (!mr->include_usage || r->usage < 0)
                break;
            put_prefix(&mr->chunk, mr, 1);
            sift_buf_puts(&mr->chunk, "\"choices\":[],");
            put_usage(&mr->chunk, mr);
            sift_buf_putc(&mr->chunk, '}');
            return 1;
        case P_DONE:
            mr->phase = P_END;
            if (r->omit_done)
                break;
            sift_buf_puts(&mr->chunk, "[DONE]");
            return 1;
        case P_END:
            return 0;
        }
    }
}

/* Cuts a rendered JSON text so that it is no longer valid. */
static void make_malformed(sift_buf *b)
{
    if (b->len > 1) {
        b->len /= 2;
        b->data[b->len] = '\0';
    }
}

/* ---- streaming ---- */

static void mr_step(struct mreq *mr);

static void on_drain(sift_http_exchange *x, void *udata)
{
    struct mreq *mr = udata;
    if (mr->state != MR_DRAIN)
        return;
    set_state(mr, MR_WRITE);
    mr_step(mr);
}

static void on_flush_poll(uv_timer_t *t)
{
    struct mreq *mr = container_of(t, struct mreq, timer);
    if (mr->state != MR_FLUSH)
        return;
    if (sift_http_stream_buffered(mr->x) == 0 || ++mr->polls > FLUSH_POLL_MAX)
        mr_finish(mr, F_ABORT);
}

static void on_delay(uv_timer_t *t);

/* Writes events until the stream ends, a delay starts or the buffer fills. */
static void mr_step(struct mreq *mr)
{
    const mock_reply *r = &mr->rep->r;
    while (mr->state == MR_WRITE) {
        if (!mr->pending) {
            if (!next_event(mr)) {
                mr_finish(mr, F_END);
                return;
            }
            if (mr->ev + 1 == r->malformed_at)
                make_malformed(&mr->chunk);
            mr->pending = 1;
        }
        int rc = sift_http_sse_send(mr->x, NULL, mr->chunk.data, mr->chunk.len);
        if (mr->state != MR_WRITE)
            return; /* the write noticed the client had gone: on_cancel ran */
        if (rc == SIFT_EBUSY) {
            set_state(mr, MR_DRAIN);
            if (sift_http_stream_on_drain(mr->x, on_drain, mr) != 0)
                mr_finish(mr, F_ABORT);
            return;
        }
        if (rc != 0) {
            if (rc == SIFT_ECANCELED && !__atomic_load_n(&mr->m->stopping, __ATOMIC_RELAXED))
                __atomic_add_fetch(&mr->m->disconnects, 1, __ATOMIC_RELAXED);
            mr_finish(mr, F_ABORT);
            return;
        }
        mr->pending = 0;
        mr->ev++;
        __atomic_add_fetch(&mr->m->chunks, 1, __ATOMIC_RELAXED);
        if (r->disconnect_after > 0 && mr->ev == r->disconnect_after) {
            set_state(mr, MR_FLUSH);
            uv_timer_start(&mr->timer, on_flush_poll, 0, 1);
            return;
        }
        if (r->token_delay_ms > 0 && mr->phase != P_END) {
            set_state(mr, MR_WAIT);
            uv_timer_start(&mr->timer, on_delay, (uint64_t)r->token_delay_ms, 0);
            return;
        }
    }
}

/* ---- answers in one piece ---- */

static const char *error_type(int status, const char **code)
{
    *code = NULL;
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        *code = "invalid_api_key";
        return "invalid_request_error";
    case 404:
        *code = "model_not_found";
        return "invalid_request_error";
    case 429:
        *code = "rate_limit_exceeded";
        return "requests";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static void respond_error(sift_http_exchange *x, int status, const char *message, int retry_after)
{
    const char *code;
    const char *type = error_type(status, &code);
    if (message == NULL)
        message = status == 429   ? "Rate limit reached for requests (mock)"
                  : status >= 500 ? "The server had an error while processing your request (mock)"
                                  : "The request was refused (mock)";
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_buf_puts(&b, "{\"error\":{\"message\":");
    put_json_str(&b, message, strlen(message));
    sift_buf_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":", type);
    sift_buf_puts(&b, code ? "\"" : "null");
    if (code)
        sift_buf_printf(&b, "%s\"", code);
    sift_buf_puts(&b, "}}");
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof(v), "%d", retry_after);
        sift_http_set_header(x, "Retry-After", v);
    }
    sift_http_respond(x, status, "application/json", b.data, b.len);
    sift_buf_free(&b);
}

/* The chat.completion object for "stream": false. */
static void respond_json(struct mreq *mr)
{
    const mock_reply *r = &mr->rep->r;
    sift_buf *b = &mr->chunk;
    sift_buf_reset(b);
    put_prefix(b, mr, 0);
    sift_buf_puts(b, "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (r->content)
        put_json_str(b, r->content, strlen(r->content));
    else
        sift_buf_puts(b, r->n_tool_calls > 0 ? "null" : "\"\"");
    if (r->n_tool_calls > 0) {
        sift_buf_puts(b, ",\"tool_calls\":[");
        for (int i = 0; i < r->n_tool_calls; i++) {
            const mock_tool_call *c = &r->tool_calls[i];
            sift_buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
            if (c->id)
                put_json_str(b, c->id, strlen(c->id));
            else
                sift_buf_printf(b, "\"call_mock_%d\"", i);
            sift_buf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":");
            put_json_str(b, c->name, strlen(c->name));
            sift_buf_puts(b, ",\"arguments\":");
            put_json_str(b, c->arguments, strlen(c->arguments));
            sift_buf_puts(b, "}}");
        }
        sift_buf_putc(b, ']');
    }
    sift_buf_puts(b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
    if (r->omit_finish_reason)
        sift_buf_puts(b, "null");
    else
        put_json_str(b, finish_reason(r), strlen(finish_reason(r)));
    sift_buf_puts(b, "}]");
    if (r->usage >= 0) {
        sift_buf_putc(b, ',');
        put_usage(b, mr);
    }
    sift_buf_puts(b, "}\n");
    if (r->malformed_at > 0)
        make_malformed(b);
    sift_http_respond(mr->x, 200, "application/json", b->data, b->len);
}

/* After TTFT (or at once): the first thing the client gets. */
static void mr_begin(struct mreq *mr)
{
    const mock_reply *r = &mr->rep->r;
    switch (mr->kind) {
    case K_ERROR:
        mr_finish(mr, F_ERROR);
        return;
    case K_JSON:
        mr_finish(mr, r->disconnect_after > 0 ? F_ABORT : F_JSON);
        return;
    case K_STREAM:
        set_state(mr, MR_WRITE);
        mr_step(mr);
        return;
    }
}

static void on_delay(uv_timer_t *t)
{
    struct mreq *mr = container_of(t, struct mreq, timer);
    if (mr->state != MR_WAIT)
        return;
    if (mr->ev == 0 && mr->kind != K_STREAM) {
        mr_begin(mr);
        return;
    }
    set_state(mr, MR_WRITE);
    mr_step(mr);
}

/* ---- the handlers ---- */

/* Keeps a copy of the body; returns the request's number. */
static int record_body(mock_llm *m, const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, body, len);
        copy[len] = '\0';
    }
    pthread_mutex_lock(&m->mu);
    int n = m->nreq;
    free(m->bodies[n % BODY_RING]);
    m->bodies[n % BODY_RING] = copy;
    __atomic_store_n(&m->nreq, n + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* The reply for this request, owned by the caller; NULL when out of memory. */
static struct qnode *take_reply(mock_llm *m, const char *body, size_t len)
{
    pthread_mutex_lock(&m->mu);
    struct qnode *q = m->head;
    if (q) {
        m->head = q->next;
        if (m->head == NULL)
            m->tail = NULL;
        pthread_mutex_unlock(&m->mu);
        return q;
    }
    mock_llm_responder fn = m->fn;
    void *udata = m->fn_udata;
    if (fn == NULL) {
        static const mock_reply empty = {0};
        q = reply_dup(m->def ? &m->def->r : &empty);
        pthread_mutex_unlock(&m->mu);
        return q;
    }
    pthread_mutex_unlock(&m->mu);
    mock_reply out;
    memset(&out, 0, sizeof(out));
    fn(body, len, &out, udata);
    return reply_dup(&out);
}

/* Renders the members every object starts with (see put_prefix). */
static char *make_prefix(int reqno, const cJSON *model, size_t *split)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_buf_printf(&b, "{\"id\":\"chatcmpl-mock-%d\",\"object\":\"chat.completion", reqno);
    *split = b.len;
    sift_buf_printf(&b, "\",\"created\":%ld,\"model\":", (long)time(NULL));
    const char *name = cJSON_IsString(model) ? model->valuestring : "mock";
    put_json_str(&b, name, strlen(name));
    sift_buf_puts(&b, ",\"system_fingerprint\":null,");
    return sift_buf_detach(&b, NULL);
}

static void h_chat(sift_http_exchange *x, void *udata)
{
    mock_llm *m = udata;
    size_t len;
    const char *body = sift_http_body(x, &len);
    int reqno = record_body(m, body, len);
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(req) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(req, "messages"))) {
        cJSON_Delete(req);
        respond_error(x, 400, "the body must be a JSON object with a \"messages\" array", 0);
        return;
    }
    struct mreq *mr = calloc(1, sizeof(*mr));
    struct qnode *rep = mr ? take_reply(m, body, len) : NULL;
    size_t split = 0;
    char *prefix =
        rep ? make_prefix(reqno, cJSON_GetObjectItemCaseSensitive(req, "model"), &split) : NULL;
    if (prefix == NULL) {
        cJSON_Delete(req);
        reply_free(rep);
        free(mr);
        respond_error(x, 500, "mock_llm: out of memory", 0);
        return;
    }
    const mock_reply *r = &rep->r;
    mr->m = m;
    mr->x = x;
    mr->rep = rep;
    mr->prefix = prefix;
    mr->prefix_split = split;
    sift_buf_init(&mr->chunk, 0);
    int stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "stream"));
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(req, "stream_options");
    mr->include_usage = stream && r->usage >= 0 &&
                        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    cJSON_Delete(req);
    mr->prompt_tokens = r->prompt_tokens > 0 ? r->prompt_tokens : (int)(len / 4);
    mr->completion_tokens = r->completion_tokens > 0 ? r->completion_tokens : count_pieces(r);
    mr->kind = (r->status != 0 && r->status != 200) ? K_ERROR : stream ? K_STREAM : K_JSON;
    int has_content = r->content && r->content[0];
    mr->phase = (has_content || r->n_tool_calls == 0) ? P_ROLE : P_CALL_HEAD;
    mr->role_pending = mr->phase == P_CALL_HEAD;
    uv_timer_init(sift_http_loop(x), &mr->timer);
    set_state(mr, MR_WAIT);
    if (sift_ctx_add_hook(sift_http_ctx(x), &mr->hook, on_cancel) != 0) {
        mr_finish(mr, F_ABORT);
        return;
    }
    if (mr->kind == K_STREAM && sift_http_stream_start(x, 200, "text/event-stream") != 0) {
        mr_finish(mr, F_ABORT);
        return;
    }
    if (r->ttft_ms > 0) {
        uv_timer_start(&mr->timer, on_delay, (uint64_t)r->ttft_ms, 0);
        return;
    }
    mr_begin(mr);
}

static void h_models(sift_http_exchange *x, void *udata)
{
    static const char body[] =
        "{\"object\":\"list\",\"data\":[{\"id\":\"mock\",\"object\":\"model\","
        "\"created\":0,\"owned_by\":\"sift\"}]}\n";
    sift_http_respond(x, 200, "application/json", body, sizeof(body) - 1);
}

static void h_stats(sift_http_exchange *x, void *udata)
{
    char out[256];
    int n = mock_llm_stats_json(udata, out, sizeof(out));
    sift_http_respond(x, 200, "application/json", out, (size_t)n);
}

/* ---- public API ---- */

mock_llm *mock_llm_start_port(int port, int workers, sift_err *err)
{
    mock_llm *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        sift_err_set(err, SIFT_ENOMEM, "mock_llm: out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    sift_server_opts o = {
        .host = "127.0.0.1",
        .port = port,
        .workers = workers > 0 ? workers : 1,
        .max_body_bytes = 16u << 20,
        .shutdown_grace_ms = 200,
    };
    m->srv = sift_server_new(&o, err);
    if (m->srv == NULL || sift_server_route(m->srv, "POST", "/v1/chat/completions", h_chat, m) ||
        sift_server_route(m->srv, "GET", "/v1/models", h_models, m) ||
        sift_server_route(m->srv, "GET", "/stats", h_stats, m) ||
        sift_server_start(m->srv, err) != 0) {
        if (err && err->code == 0)
            sift_err_set(err, SIFT_ENOMEM, "mock_llm: cannot add routes");
        mock_llm_stop(m);
        return NULL;
    }
    m->port = sift_server_port(m->srv);
    snprintf(m->base_url, sizeof(m->base_url), "http://127.0.0.1:%d/v1", m->port);
    return m;
}

mock_llm *mock_llm_start(int workers, sift_err *err)
{
    return mock_llm_start_port(0, workers, err);
}

int mock_llm_port(const mock_llm *m)
{
    return m->port;
}

const char *mock_llm_base_url(const mock_llm *m)
{
    return m->base_url;
}

void mock_llm_push(mock_llm *m, const mock_reply *r)
{
    struct qnode *q = reply_dup(r);
    if (q == NULL)
        abort(); /* a test helper: a lost reply would make the test lie */
    pthread_mutex_lock(&m->mu);
    if (m->tail)
        m->tail->next = q;
    else
        m->head = q;
    m->tail = q;
    pthread_mutex_unlock(&m->mu);
}

void mock_llm_set_default(mock_llm *m, const mock_reply *r)
{
    struct qnode *q = r ? reply_dup(r) : NULL;
    if (r && q == NULL)
        abort();
    pthread_mutex_lock(&m->mu);
    struct qnode *old = m->def;
    m->def = q;
    pthread_mutex_unlock(&m->mu);
    reply_free(old);
}

void mock_llm_set_responder(mock_llm *m, mock_llm_responder fn, void *udata)
{
    pthread_mutex_lock(&m->mu);
    m->fn = fn;
    m->fn_udata = udata;
    pthread_mutex_unlock(&m->mu);
}

int mock_llm_requests(const mock_llm *m)
{
    return __atomic_load_n(&m->nreq, __ATOMIC_ACQUIRE);
}

char *mock_llm_request_body(mock_llm *m, int i)
{
    char *out = NULL;
    pthread_mutex_lock(&m->mu);
    if (i >= 0 && i < m->nreq && i >= m->nreq - BODY_RING && m->bodies[i % BODY_RING])
        out = strdup(m->bodies[i % BODY_RING]);
    pthread_mutex_unlock(&m->mu);
    return out;
}

int mock_llm_disconnects(const mock_llm *m)
{
    return __atomic_load_n(&m->disconnects, __ATOMIC_RELAXED);
}

long mock_llm_chunks(const mock_llm *m)
{
    return __atomic_load_n(&m->chunks, __ATOMIC_RELAXED);
}

int mock_llm_stats_json(const mock_llm *m, char *out, size_t size)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int n = snprintf(out, size,
                     "{\"requests\":%d,\"disconnects\":%d,\"chunks\":%ld,\"cpu_user_us\":%lld,"
                     "\"cpu_sys_us\":%lld}\n",
                     mock_llm_requests(m), mock_llm_disconnects(m), mock_llm_chunks(m),
                     (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
                     (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec);
    return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

void mock_llm_stop(mock_llm *m)
{
    if (m == NULL)
        return;
    __atomic_store_n(&m->stopping, 1, __ATOMIC_RELAXED);
    sift_server_free(m->srv);
    while (m->head) {
        struct qnode *q = m->head;
        m->head = q->next;
        reply_free(q);
    }
    reply_free(m->def);
    for (int i = 0; i < BODY_RING; i++)
        free(m->bodies[i]);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- the seed workload ---- */

static const mock_tool_call seed_calls[3] = {
    {"call_inv_HAN", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}", 3},
    {"call_inv_DAD", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"DAD\"}", 4},
    {"call_inv_SGN", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"SGN\"}", 3},
};

const char mock_llm_seed_answer[] =
    "I checked the Nike Pegasus 40 in size 42 (NIKE-PEG40-42) at all three of our stores: "
    "Hanoi, Da Nang and Ho Chi Minh City. The stock figures above are live, so those pairs "
    "are on the shelf right now. I can reserve a pair for pickup today at any store that has "
    "one, or ship it to you within two days.";

void mock_llm_seed_responder(const char *request_body, size_t len, mock_reply *out, void *udata)
{
    const mock_seed_opts *o = udata;
    out->ttft_ms = o ? o->ttft_ms : 50;
    out->token_delay_ms = o ? o->token_delay_ms : 0;
    /* The last "role":"..." member is the last message's (the tools array
     * that follows has none); an unescaped quote cannot occur inside a
     * string, so the pattern cannot match message text. This keeps the mock
     * from parsing each request twice (h_chat validated it already), which
     * was most of its CPU in the seed benchmark. Other layouts go to cJSON. */
    static const char pat[] = "\"role\":\"";
    const char *last = NULL;
    for (const char *p = request_body;
         (p = memmem(p, len - (size_t)(p - request_body), pat, sizeof pat - 1));
         p += sizeof pat - 1)
        last = p + sizeof pat - 1;
    int after_tools;
    if (last) {
        after_tools = strncmp(last, "tool\"", 5) == 0;
    } else {
        cJSON *req = cJSON_ParseWithLength(request_body, len);
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages");
        int n = cJSON_GetArraySize(msgs);
        const cJSON *lm = n > 0 ? cJSON_GetArrayItem(msgs, n - 1) : NULL;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(lm, "role");
        after_tools = cJSON_IsString(role) && strcmp(role->valuestring, "tool") == 0;
        cJSON_Delete(req);
    }
    if (after_tools) {
        out->content = mock_llm_seed_answer;
    } else {
        out->tool_calls = seed_calls;
        out->n_tool_calls = 3;
    }
}
