/* The OpenAI-compatible face of the API: the agent served as a model.
 *
 *   POST /v1/chat/completions   one agent run per request, the client's
 *                               messages as the conversation; a
 *                               chat.completion body, or with "stream": true
 *                               an SSE stream of chat.completion.chunk
 *                               objects ending with "data: [DONE]"
 *   GET  /v1/models             the agent, as the one model
 *   GET  /v1/models/{id}        the same model, or 404 model_not_found
 *
 * Admission and the run itself are /v1/search's (api_int.h); what is here is
 * the request check and the translation of run events into OpenAI's shapes.
 * Tool activity travels in a "sift" member that OpenAI clients ignore:
 * streaming, on chunks with an empty delta; in one piece, as a timeline in
 * the body's top-level "sift" object. docs/api.md documents the shapes. */
#include <cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sift/agent.h"
#include "sift/memory.h"
#include "sift/session.h"
#include "api_int.h"

/* ---- OpenAI's error shape ---- */

static const char *error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 429:
        return "rate_limit_error";
    default:
        return status < 500 ? "invalid_request_error" : "server_error";
    }
}

/* {"error":{"message","type","param","code"}}: OpenAI's keys, and sift's
 * (code, message), so clients written for either read it. */
static int put_error(sift_buf *b, int status, const char *code, const char *param,
                     const char *message)
{
    int rc = sift_buf_puts(b, "{\"error\":{\"message\":");
    rc |= sift_buf_json_string(b, message, strlen(message));
    rc |= sift_buf_printf(b, ",\"type\":\"%s\",\"param\":", error_type(status));
    rc |= sift_buf_json_string(b, param, param ? strlen(param) : 0);
    rc |= sift_buf_puts(b, ",\"code\":");
    rc |= sift_buf_json_string(b, code, strlen(code));
    rc |= sift_buf_putc(b, '}');
    return rc ? SIFT_ENOMEM : 0;
}

static int respond_error_param(sift_http_exchange *x, int status, const char *code,
                               const char *param, const char *message)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = put_error(&b, status, code, param, message);
    if (!rc)
        rc = sift_buf_putc(&b, '}');
    if (rc)
        rc = sift_http_respond_error(x, 500, "out_of_memory", "out of memory");
    else
        rc = sift_http_respond(x, status, "application/json", b.data, b.len);
    sift_buf_free(&b);
    return rc;
}

/* A sift_api_error_fn. */
static int chat_error(sift_http_exchange *x, int status, const char *code, const char *message)
{
    return respond_error_param(x, status, code, NULL, message);
}

/* ---- The request ---- */

struct chat_req {
    const cJSON *messages; /* normalised (see normalise) */
    bool stream;
    bool include_usage;
    const char *session; /* sift.session_id, checked */
    /* a refusal: status, code, the field, the message */
    int status;
    const char *code;
    const char *param;
    char msg[SIFT_ERR_MSG_MAX + 64];
};

static int refuse(struct chat_req *cr, int status, const char *code, const char *param,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int refuse(struct chat_req *cr, int status, const char *code, const char *param,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cr->msg, sizeof cr->msg, fmt, ap);
    va_end(ap);
    cr->status = status;
    cr->code = code;
    cr->param = param;
    return status;
}

static const cJSON *get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* Rewrites what OpenAI accepts and the conversation loader does not read:
 * role "developer" (OpenAI's newer name for system) becomes "system", and
 * content given as an array of text parts becomes one string (the parts
 * joined by newlines). Other part types (images, audio) are refused. */
static int normalise(cJSON *msgs, struct chat_req *cr)
{
    int i = 0;
    cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "developer")) {
            cJSON *sys = cJSON_CreateString("system");
            if (!sys || !cJSON_ReplaceItemInObjectCaseSensitive(m, "role", sys)) {
                cJSON_Delete(sys);
                return refuse(cr, 500, "out_of_memory", NULL, "out of memory");
            }
        }
        if (cJSON_IsArray(content)) {
            sift_buf text;
            sift_buf_init(&text, 0);
            int k = 0, rc = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, content)
            {
                const cJSON *type = get(part, "type"), *t = get(part, "text");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
                    !cJSON_IsString(t)) {
                    sift_buf_free(&text);
                    return refuse(cr, 400, "invalid_request", "messages",
                                  "messages[%d].content[%d]: only text parts "
                                  "({\"type\":\"text\",\"text\":\"...\"}) are supported",
                                  i, k);
                }
                if (k++)
                    rc |= sift_buf_putc(&text, '\n');
                rc |= sift_buf_puts(&text, t->valuestring);
            }
            cJSON *s = rc ? NULL : cJSON_CreateString(text.data ? text.data : "");
            sift_buf_free(&text);
            if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(m, "content", s)) {
                cJSON_Delete(s);
                return refuse(cr, 500, "out_of_memory", NULL, "out of memory");
            }
        }
        i++;
    }
    return 0;
}

/* Checks the request and fills cr; 0, or the HTTP status of the refusal
 * (cr says why). Fields OpenAI defines and sift does not act on are
 * accepted and ignored (docs/api.md lists them). */
static int check_request(const sift_config *cfg, cJSON *req, struct chat_req *cr)
{
    const char *name = cfg->agent.name;
    if (!cJSON_IsObject(req))
        return refuse(cr, 400, "invalid_request", NULL, "the body must be a JSON object");
    const cJSON *model = get(req, "model");
    if (!cJSON_IsString(model) || !model->valuestring[0])
        return refuse(cr, 400, "invalid_request", "model",
                      "model: required, the agent's name (this server serves \"%s\")", name);
    if (strcmp(model->valuestring, name) != 0)
        return refuse(cr, 404, "model_not_found", "model",
                      "model: \"%.64s\" does not exist; this server serves \"%s\"",
                      model->valuestring, name);
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages");
    if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs))
        return refuse(cr, 400, "invalid_request", "messages",
                      "messages: must be a non-empty array");
    if (normalise(msgs, cr))
        return cr->status;
    int n = cJSON_GetArraySize(msgs);
    const cJSON *last = cJSON_GetArrayItem(msgs, n - 1);
    const cJSON *role = get(last, "role"), *content = get(last, "content");
    if (!cJSON_IsString(role) || strcmp(role->valuestring, "user") != 0 ||
        !cJSON_IsString(content) || !content->valuestring[0])
        return refuse(cr, 400, "invalid_request", "messages",
                      "messages[%d]: the last message must be a user message with non-empty "
                      "content: the question to answer",
                      n - 1);
    if (strlen(content->valuestring) > cfg->server.max_query_bytes)
        return refuse(cr, 413, "too_large", "messages",
                      "messages[%d].content: longer than %zu bytes", n - 1,
                      cfg->server.max_query_bytes);
    cr->messages = msgs;

    const cJSON *stream = get(req, "stream"), *so = get(req, "stream_options");
    if (stream && !cJSON_IsBool(stream))
        return refuse(cr, 400, "invalid_request", "stream", "stream: must be true or false");
    cr->stream = cJSON_IsTrue(stream);
    if (so && !cJSON_IsObject(so))
        return refuse(cr, 400, "invalid_request", "stream_options",
                      "stream_options: must be an object");
    const cJSON *iu = get(so, "include_usage");
    if (iu && !cJSON_IsBool(iu))
        return refuse(cr, 400, "invalid_request", "stream_options.include_usage",
                      "stream_options.include_usage: must be true or false");
    cr->include_usage = cJSON_IsTrue(iu);

    const cJSON *nc = get(req, "n");
    if (nc && (!cJSON_IsNumber(nc) || nc->valuedouble != 1))
        return refuse(cr, 400, "invalid_request", "n", "n: only 1 choice is supported");
    static const char *const client_tools[] = {"tools", "functions"};
    for (size_t k = 0; k < sizeof client_tools / sizeof client_tools[0]; k++) {
        const cJSON *t = get(req, client_tools[k]);
        if (t && (!cJSON_IsArray(t) || cJSON_GetArraySize(t) > 0))
            return refuse(cr, 400, "invalid_request", client_tools[k],
                          "%s: the agent runs its own tools; tools defined by the client are "
                          "not supported",
                          client_tools[k]);
    }

    const cJSON *ext = get(req, "sift");
    if (ext && !cJSON_IsObject(ext))
        return refuse(cr, 400, "invalid_request", "sift", "sift: must be an object");
    const cJSON *sid = get(ext, "session_id");
    if (sid) {
        sift_err err = {0};
        if (!cJSON_IsString(sid))
            return refuse(cr, 400, "invalid_request", "sift.session_id",
                          "sift.session_id: must be a string");
        if (sift_session_id_check(sid->valuestring, &err))
            return refuse(cr, 400, "invalid_request", "sift.session_id", "sift.session_id: %s",
                          err.msg);
        cr->session = sid->valuestring;
    }
    return 0;
}

/* ---- Run events in OpenAI's shapes ---- */

struct chat {
    char id[48];       /* chatcmpl-<run id> */
    const char *model; /* the agent's name as a JSON string */
    long long created;
    bool include_usage;
    bool content_sent; /* streaming: answer text went out */
    bool failed;       /* streaming: the error went out */
    sift_buf chunk;    /* scratch, kept across events */
    sift_buf out;
    sift_buf text;
};

static void free_bufs(void *p)
{
    struct chat *c = p;
    sift_buf_free(&c->chunk);
    sift_buf_free(&c->out);
    sift_buf_free(&c->text);
}

/* The value of a member the run event's JSON ends with, as JSON text:
 * events.c writes token and answer as {"run_id",...,"seq",...,"text":"..."}
 * and the key cannot occur earlier unescaped (run ids are escaped strings).
 * So the answer's text is forwarded without parsing it again. */
static const char *text_of(const char *json, size_t len, size_t *n)
{
    static const char key[] = ",\"text\":";
    const char *p = memmem(json, len, key, sizeof key - 1);
    if (!p || len < 2 || json[len - 1] != '}')
        return NULL;
    p += sizeof key - 1;
    *n = (size_t)(json + len - 1 - p);
    return *n >= 2 && *p == '"' ? p : NULL;
}

/* The text of a token or answer event as a JSON string: text_of's slice, or
 * (should events.c ever write these events another way) parsed and written
 * again into c->text. NULL when there is none. */
static const char *token_text(struct chat *c, const char *json, size_t len, size_t *n)
{
    const char *t = text_of(json, len, n);
    if (t)
        return t;
    cJSON *ev = cJSON_ParseWithLength(json, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, "text");
    sift_buf_reset(&c->text);
    int rc = cJSON_IsString(v)
                 ? sift_buf_json_string(&c->text, v->valuestring, strlen(v->valuestring))
                 : SIFT_EPROTO;
    cJSON_Delete(ev);
    *n = c->text.len;
    return rc ? NULL : c->text.data;
}

/* "sift":{"event":"<name>", ...the run event's members...} */
static int put_ext(sift_buf *b, const char *name, const char *json, size_t len)
{
    int rc = sift_buf_printf(b, "{\"event\":\"%s\"%s", name, len > 2 ? "," : "");
    if (len > 2)
        rc |= sift_buf_append(b, json + 1, len - 1);
    else
        rc |= sift_buf_putc(b, '}');
    return rc;
}

/* What one chat.completion.chunk carries. */
struct chunk {
    bool role;           /* delta.role "assistant": the first chunk */
    const char *content; /* delta.content, as a JSON string (quoted) */
    size_t content_len;
    const char *finish; /* finish_reason; NULL: null */
    bool no_choices;    /* "choices":[]: the usage chunk */
    const char *usage;  /* the usage object's JSON */
    size_t usage_len;
    const char *event; /* the run event for "sift"; NULL: none */
    const char *json;
    size_t json_len;
};

/* Appends one chunk, as one SSE event, to c->out. */
static int put_chunk(struct chat *c, const struct chunk *k)
{
    sift_buf *b = &c->chunk;
    sift_buf_reset(b);
    int rc = sift_buf_printf(b,
                             "{\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                             "\"model\":%s,\"system_fingerprint\":null,\"choices\":[",
                             c->id, c->created, c->model);
    if (!k->no_choices) {
        rc |= sift_buf_puts(b, "{\"index\":0,\"delta\":{");
        if (k->role)
            rc |= sift_buf_puts(b, "\"role\":\"assistant\"");
        if (k->content) {
            rc |= sift_buf_puts(b, k->role ? ",\"content\":" : "\"content\":");
            rc |= sift_buf_append(b, k->content, k->content_len);
        }
        rc |= sift_buf_puts(b, "},\"logprobs\":null,\"finish_reason\":");
        rc |= k->finish ? sift_buf_printf(b, "\"%s\"}", k->finish) : sift_buf_puts(b, "null}");
    }
    rc |= sift_buf_putc(b, ']');
    if (k->usage) {
        rc |= sift_buf_puts(b, ",\"usage\":");
        rc |= sift_buf_append(b, k->usage, k->usage_len);
    } else if (c->include_usage) {
        rc |= sift_buf_puts(b, ",\"usage\":null");
    }
    if (k->event) {
        rc |= sift_buf_puts(b, ",\"sift\":");
        rc |= put_ext(b, k->event, k->json, k->json_len);
    }
    rc |= sift_buf_putc(b, '}');
    return rc ? SIFT_ENOMEM : sift_http_sse_format(&c->out, NULL, b->data, b->len);
}

/* The usage object inside run.finished's JSON ({"prompt_tokens",
 * "completion_tokens","total_tokens"}, OpenAI's names), or NULL. */
static const char *usage_of(const char *json, size_t len, size_t *n)
{
    static const char key[] = "\"usage\":{";
    const char *p = memmem(json, len, key, sizeof key - 1);
    if (!p)
        return NULL;
    p += sizeof key - 2;
    const char *end = memchr(p, '}', (size_t)(json + len - p));
    if (!end)
        return NULL;
    *n = (size_t)(end + 1 - p);
    return p;
}

/* A failed run, mid-stream: {"error":{...},"sift":{the error event}} as
 * OpenAI-compatible servers send it; the SDKs raise it as an APIError. */
static int put_stream_error(struct chat *c, const char *json, size_t len)
{
    cJSON *ev = cJSON_ParseWithLength(json, len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(ev, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ev, "message");
    sift_buf *b = &c->chunk;
    sift_buf_reset(b);
    int rc = put_error(b, 500, cJSON_IsString(code) ? code->valuestring : "error", NULL,
                       cJSON_IsString(msg) ? msg->valuestring : "the run failed");
    cJSON_Delete(ev);
    rc |= sift_buf_puts(b, ",\"sift\":");
    rc |= put_ext(b, "error", json, len);
    rc |= sift_buf_putc(b, '}');
    return rc ? SIFT_ENOMEM : sift_http_sse_format(&c->out, NULL, b->data, b->len);
}

/* Streaming: one run event as zero or more chunks, written all or nothing
 * (a retry after SIFT_EBUSY formats it again). */
static int chat_sse_write(void *ud, const char *name, const char *json, size_t len)
{
    sift_api_run *r = ud;
    struct chat *c = r->fe_data;
    bool content = false, failed = false;
    int rc = 0;
    sift_buf_reset(&c->out);
    if (!strcmp(name, "token") || !strcmp(name, "answer")) {
        /* the answer repeats what the tokens said; it is sent only when no
         * token was (a provider that does not stream) */
        size_t n = 0;
        const char *t = token_text(c, json, len, &n);
        if ((name[0] == 'a' && c->content_sent) || !t || n <= 2)
            return 0;
        rc = put_chunk(c, &(struct chunk){.content = t, .content_len = n});
        content = true;
    } else if (!strcmp(name, "run.started")) {
        rc = put_chunk(c, &(struct chunk){.role = true,
                                          .content = "\"\"",
                                          .content_len = 2,
                                          .event = name,
                                          .json = json,
                                          .json_len = len});
    } else if (!strcmp(name, "error")) {
        rc = put_stream_error(c, json, len);
        failed = true;
    } else if (!strcmp(name, "run.finished")) {
        if (!c->failed)
            rc = put_chunk(
                c, &(struct chunk){.finish = "stop", .event = name, .json = json, .json_len = len});
        size_t n = 0;
        const char *u = usage_of(json, len, &n);
        if (!rc && !c->failed && c->include_usage && u)
            rc = put_chunk(c, &(struct chunk){.no_choices = true, .usage = u, .usage_len = n});
        if (!rc)
            rc = sift_buf_puts(&c->out, "data: [DONE]\n\n");
    } else {
        rc = put_chunk(c, &(struct chunk){.event = name, .json = json, .json_len = len});
    }
    if (rc)
        return rc;
    rc = sift_http_stream_write(r->x, c->out.data, c->out.len);
    if (rc == 0) {
        c->content_sent |= content;
        c->failed |= failed;
    }
    return rc;
}

/* JSON mode: the timeline for the body's "sift" object; the answer comes
 * whole from the run's result. */
static int chat_json_write(void *ud, const char *name, const char *json, size_t len)
{
    sift_api_run *r = ud;
    if (!strcmp(name, "token") || !strcmp(name, "answer"))
        return 0;
    int rc = r->events.len ? sift_buf_putc(&r->events, ',') : 0;
    return rc ? rc : put_ext(&r->events, name, json, len) ? SIFT_ENOMEM : 0;
}

/* The HTTP status of a run that did not answer. */
static int run_status(int code)
{
    switch (code) {
    case SIFT_ETIMEDOUT:
        return 504;
    case SIFT_EHTTP:
    case SIFT_EPROTO:
    case SIFT_EIO:
        return 502; /* the model provider failed */
    case SIFT_ECANCELED:
    case SIFT_EBUSY:
        return 503;
    default:
        return 500;
    }
}

static void chat_respond(sift_api_run *r, const sift_agent_result *res)
{
    struct chat *c = r->fe_data;
    sift_buf body;
    sift_buf_init(&body, 0);
    int rc = 0, status = 200;
    if (res->code) {
        status = run_status(res->code);
        rc |= put_error(&body, status, sift_err_name(res->code), NULL,
                        res->message ? res->message : sift_err_name(res->code));
    } else {
        const char *answer = res->answer ? res->answer : "";
        rc |= sift_buf_printf(&body,
                              "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%lld,"
                              "\"model\":%s,\"system_fingerprint\":null,\"choices\":[{\"index\":0,"
                              "\"message\":{\"role\":\"assistant\",\"content\":",
                              c->id, c->created, c->model);
        rc |= sift_buf_json_string(&body, answer, strlen(answer));
        rc |= sift_buf_printf(&body,
                              ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                              "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                              "\"total_tokens\":%lld}",
                              (long long)res->usage.prompt_tokens,
                              (long long)res->usage.completion_tokens,
                              (long long)res->usage.total_tokens);
    }
    rc |= sift_buf_printf(&body, ",\"sift\":{\"run_id\":\"%s\",\"session_id\":", r->run_id);
    rc |= sift_buf_json_string(&body, r->session[0] ? r->session : NULL, strlen(r->session));
    rc |= sift_buf_printf(&body, ",\"steps\":%d,\"events\":[", res->steps);
    rc |= sift_buf_append(&body, r->events.data ? r->events.data : "", r->events.len);
    rc |= sift_buf_puts(&body, "]}}");
    if (rc)
        chat_error(r->x, 500, "out_of_memory", "out of memory");
    else
        sift_http_respond(r->x, status, "application/json", body.data, body.len);
    sift_buf_free(&body);
}

static const sift_api_frontend chat_sse = {
    .write = chat_sse_write, .respond = chat_respond, .error = chat_error};
static const sift_api_frontend chat_json = {
    .write = chat_json_write, .respond = chat_respond, .error = chat_error};

/* ---- Routes ---- */

static void chat_completions(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    const sift_config *cfg = sift_api_config(api);
    int key = sift_api_authenticate(api, x, chat_error);
    if (key < 0 || !sift_api_rate_take(api, x, key, chat_error))
        return;
    size_t len;
    const char *body = sift_http_body(x, &len);
    cJSON *req = cJSON_ParseWithLength(body, len);
    struct chat_req cr = {0};
    char *msgs = NULL;
    if (check_request(cfg, req, &cr)) {
        if (cr.status == 413)
            sift_api_count_too_long(api);
        respond_error_param(x, cr.status, cr.code, cr.param, cr.msg);
        goto out;
    }
    if (!sift_api_admit(api, x, chat_error))
        goto out;
    sift_api_run *r =
        sift_api_run_new(api, x, cr.stream ? &chat_sse : &chat_json, !cr.stream, cr.session);
    if (!r)
        goto out;
    struct chat *c = sift_arena_calloc(r->arena, 1, sizeof *c);
    sift_buf model;
    sift_buf_init(&model, 0);
    if (!c || sift_buf_json_string(&model, cfg->agent.name, strlen(cfg->agent.name)) ||
        !(c->model = sift_arena_strdup(r->arena, model.data)) ||
        sift_arena_defer(r->arena, free_bufs, c)) {
        sift_buf_free(&model);
        chat_error(x, 503, "busy", "out of memory");
        sift_api_run_abandon(r);
        goto out;
    }
    sift_buf_free(&model);
    snprintf(c->id, sizeof c->id, "chatcmpl-%s", r->run_id);
    c->created = (long long)time(NULL);
    c->include_usage = cr.include_usage;
    r->fe_data = c;
    /* sift's shop prompt first: the client's system messages add to it,
     * they do not replace it (the agent needs it to use its tools) */
    sift_err err = {0};
    msgs = cJSON_PrintUnformatted(cr.messages);
    if (!msgs || sift_conv_add_system(&r->conv, SIFT_AGENT_SHOP_PROMPT, &err) ||
        sift_memory_from_json(msgs, strlen(msgs), &r->conv, &err)) {
        /* the loader's words are for stored sessions; here it read the request */
        static const char stored[] = "stored conversation: ";
        const char *why = err.msg;
        if (!strncmp(why, stored, sizeof stored - 1))
            why += sizeof stored - 1;
        if (err.code == SIFT_EPROTO)
            respond_error_param(x, 400, "invalid_request", "messages", why);
        else
            chat_error(x, 503, "busy", "out of memory");
        sift_api_run_abandon(r);
        goto out;
    }
    sift_api_run_start(r);
out:
    cJSON_free(msgs);
    cJSON_Delete(req);
}

static int put_model(sift_buf *b, sift_api *api)
{
    const char *name = sift_api_config(api)->agent.name;
    int rc = sift_buf_puts(b, "{\"id\":");
    rc |= sift_buf_json_string(b, name, strlen(name));
    rc |= sift_buf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"sift\"}",
                          (long long)sift_api_created(api));
    return rc;
}

static void respond_model_json(sift_http_exchange *x, sift_buf *b, int rc)
{
    if (rc)
        chat_error(x, 500, "out_of_memory", "out of memory");
    else
        sift_http_respond(x, 200, "application/json", b->data, b->len);
    sift_buf_free(b);
}

static void models(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    if (sift_api_authenticate(api, x, chat_error) < 0)
        return;
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    rc |= put_model(&b, api);
    rc |= sift_buf_puts(&b, "]}");
    respond_model_json(x, &b, rc);
}

static void model(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    if (sift_api_authenticate(api, x, chat_error) < 0)
        return;
    const char *id = sift_http_route_rest(x), *name = sift_api_config(api)->agent.name;
    if (strcmp(id, name) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "model \"%.64s\" does not exist; this server serves \"%s\"", id,
                 name);
        respond_error_param(x, 404, "model_not_found", "model", msg);
        return;
    }
    sift_buf b;
    sift_buf_init(&b, 0);
    respond_model_json(x, &b, put_model(&b, api));
}

int sift_api_chat_mount(sift_api *api, sift_server *srv)
{
    if (sift_server_route(srv, "POST", "/v1/chat/completions", chat_completions, api) ||
        sift_server_route(srv, "GET", "/v1/models", models, api) ||
        sift_server_route(srv, "GET", "/v1/models/*", model, api))
        return SIFT_ENOMEM;
    return 0;
}
