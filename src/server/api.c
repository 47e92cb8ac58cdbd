/* The HTTP API: /v1/search streams an agent run's events over SSE. */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#include "sift/agent.h"
#include "sift/api.h"
#include "sift/events.h"
#include "sift/httptool.h"
#include "sift/log.h"
#include "sift/memory.h"
#include "sift/session.h"
#include "sift/shoptools.h"

#define MAX_WORKERS 1024

struct worker_res {
    uv_loop_t *loop;
    sift_http_client *http;
    sift_model *model;
};

struct sift_api {
    const sift_config *cfg;
    sift_shop *shop;
    sift_httptools *htools;
    sift_tool_registry *tools;
    sift_session_store *sessions;
    struct worker_res *workers[MAX_WORKERS];
    uint64_t next_run; /* only for run ids; races are harmless (ids stay distinct per worker) */
};

static sift_http_client *client_of(uv_loop_t *loop, void *udata)
{
    sift_api *api = udata;
    for (int i = 0; i < MAX_WORKERS && api->workers[i]; i++)
        if (api->workers[i]->loop == loop)
            return api->workers[i]->http;
    return NULL;
}

int sift_api_new(const sift_config *cfg, sift_api **out, sift_err *err)
{
    sift_api *api = sift_calloc(1, sizeof *api);
    if (!api)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    api->cfg = cfg;
    sift_shop_opts so = {.store_path = cfg->store.url};
    sift_httptools_opts ho = {.client = client_of, .udata = api};
    sift_session_mem_opts mo = {0};
    int rc;
    api->tools = sift_tool_registry_new();
    if (!api->tools) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sift_shop_new(&so, &api->shop, err)) ||
        (rc = sift_shop_tools_register(api->tools, api->shop, err)) ||
        (rc = sift_httptools_load(cfg->tools, &ho, &api->htools, err)) ||
        (rc = sift_httptools_register(api->htools, api->tools, err)) ||
        (rc = sift_session_mem_new(&mo, &api->sessions, err)))
        goto fail;
    *out = api;
    return 0;
fail:
    sift_api_free(api);
    return rc;
}

void sift_api_free(sift_api *api)
{
    if (!api)
        return;
    sift_tool_registry_free(api->tools);
    sift_httptools_free(api->htools);
    sift_shop_free(api->shop);
    sift_session_close(api->sessions);
    sift_free(api);
}

static int worker_start(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    sift_api *api = udata;
    int i = sift_server_worker_index(w);
    if (i < 0 || i >= MAX_WORKERS)
        return SIFT_EINVAL;
    struct worker_res *wr = sift_calloc(1, sizeof *wr);
    sift_err err = {0};
    if (!wr)
        return SIFT_ENOMEM;
    wr->loop = loop;
    wr->http = sift_http_client_new(loop, NULL, &err);
    if (wr->http) {
        if (!strcmp(api->cfg->llm.provider, "openai")) {
            sift_openai_opts oo;
            sift_openai_opts_from_config(&oo, api->cfg);
            wr->model = sift_openai_new(loop, wr->http, &oo, &err);
        } else {
            wr->model = sift_offline_new(loop, NULL, &err);
        }
    }
    if (!wr->model) {
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "worker %d: %s", i, err.msg);
        if (wr->http)
            sift_http_client_close(wr->http, NULL, NULL);
        sift_free(wr);
        return err.code ? err.code : SIFT_ENOMEM;
    }
    api->workers[i] = wr;
    sift_server_worker_set_data(w, wr);
    return 0;
}

static void worker_stop(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    sift_api *api = udata;
    struct worker_res *wr = sift_server_worker_data(w);
    if (!wr)
        return;
    api->workers[sift_server_worker_index(w)] = NULL;
    sift_model_free(wr->model);
    /* the client's handles finish closing while the server runs the loop out */
    sift_http_client_close(wr->http, NULL, NULL);
    sift_free(wr);
}

void sift_api_server_opts(sift_api *api, sift_server_opts *opts)
{
    opts->on_worker_start = worker_start;
    opts->on_worker_stop = worker_stop;
    opts->worker_udata = api;
}

/* ---- POST /v1/search ---- */

enum search_state { SEARCH_RUNNING, SEARCH_DRAINING, SEARCH_FINISHED };

struct search {
    sift_http_exchange *x;
    sift_api *api;
    enum search_state state;
    int json_mode;
    sift_arena *arena;
    sift_conv conv;
    sift_event_queue q;
    sift_buf events; /* JSON mode: the events array */
    sift_ctx_hook gone;
    char run_id[32];
    char session[130];
};

static void set_state(struct search *s, enum search_state st)
{
    s->state = st;
}

static void search_free(struct search *s)
{
    sift_event_queue_free(&s->q);
    sift_buf_free(&s->events);
    sift_arena_free(s->arena);
    sift_free(s);
}

static void finish_stream(struct search *s)
{
    set_state(s, SEARCH_FINISHED);
    sift_ctx_remove_hook(&s->gone);
    sift_http_stream_end(s->x);
    search_free(s);
}

static void on_drain(sift_http_exchange *x, void *ud);

static void want_drain(struct search *s)
{
    if (sift_event_queue_pending(&s->q) > 0)
        sift_http_stream_on_drain(s->x, on_drain, s);
}

static void on_drain(sift_http_exchange *x, void *ud)
{
    struct search *s = ud;
    sift_event_queue_flush(&s->q);
    if (sift_event_queue_pending(&s->q) > 0)
        want_drain(s);
    else if (s->state == SEARCH_DRAINING)
        finish_stream(s);
}

static void on_client_gone(sift_ctx_hook *h, const sift_err *cause)
{
    struct search *s = (struct search *)((char *)h - offsetof(struct search, gone));
    if (s->state == SEARCH_DRAINING)
        finish_stream(s);
}

static int sse_write(void *ud, const char *name, const char *json, size_t len)
{
    struct search *s = ud;
    return sift_http_sse_send(s->x, name, json, len);
}

static int json_write(void *ud, const char *name, const char *json, size_t len)
{
    struct search *s = ud;
    int rc = sift_buf_printf(&s->events, "%s{\"event\":\"%s\",\"data\":", s->events.len ? "," : "",
                             name);
    if (!rc)
        rc = sift_buf_append(&s->events, json, len);
    return rc ? rc : sift_buf_putc(&s->events, '}');
}

static void on_event(void *ud, const sift_event *ev)
{
    struct search *s = ud;
    int rc = sift_event_queue_push(&s->q, ev);
    if (rc == SIFT_ETOOBIG)
        sift_ctx_cancel(sift_http_ctx(s->x), SIFT_ECANCELED,
                        "the client is not reading fast enough");
    else if (rc == 0 && !s->json_mode)
        want_drain(s);
}

static void on_done(void *ud, const sift_agent_result *res)
{
    struct search *s = ud;
    if (res->code == 0 && s->session[0]) {
        sift_err err = {0};
        if (sift_session_save(s->api->sessions, s->session, s->conv.msgs, s->conv.len, &err))
            sift_log(SIFT_LOG_WARN, s->run_id, NULL, "session %s not saved: %s", s->session,
                     err.msg);
    }
    if (s->json_mode) {
        sift_buf body;
        sift_buf_init(&body, 0);
        int rc = sift_buf_printf(&body, "{\"run_id\":\"%s\",\"answer\":", s->run_id);
        if (res->answer) {
            rc |= sift_buf_putc(&body, '"');
            rc |= sift_buf_json_escape(&body, res->answer, strlen(res->answer));
            rc |= sift_buf_putc(&body, '"');
        } else {
            rc |= sift_buf_puts(&body, "null");
        }
        if (res->code) {
            rc |= sift_buf_printf(&body, ",\"error\":{\"code\":\"%s\",\"message\":\"",
                                  sift_err_name(res->code));
            rc |= sift_buf_json_escape(&body, res->message ? res->message : "",
                                       res->message ? strlen(res->message) : 0);
            rc |= sift_buf_puts(&body, "\"}");
        } else {
            rc |= sift_buf_puts(&body, ",\"error\":null");
        }
        rc |= sift_buf_puts(&body, ",\"events\":[");
        rc |= sift_buf_append(&s->events, "", 0);
        rc |= sift_buf_append(&body, s->events.data ? s->events.data : "", s->events.len);
        rc |= sift_buf_puts(&body, "]}");
        set_state(s, SEARCH_FINISHED);
        if (rc)
            sift_http_respond_error(s->x, 500, "out_of_memory", "out of memory");
        else
            sift_http_respond(s->x, 200, "application/json", body.data, body.len);
        sift_buf_free(&body);
        search_free(s);
        return;
    }
    sift_event_queue_flush(&s->q);
    if (sift_event_queue_pending(&s->q) == 0 || sift_ctx_err(sift_http_ctx(s->x))) {
        finish_stream(s);
        return;
    }
    /* the last events wait for the client; a client that leaves meanwhile
     * ends the exchange through the hook */
    set_state(s, SEARCH_DRAINING);
    if (sift_ctx_add_hook(sift_http_ctx(s->x), &s->gone, on_client_gone))
        finish_stream(s);
    else
        want_drain(s);
}

static int accepts_json(sift_http_exchange *x)
{
    const char *accept = sift_http_header(x, "accept", NULL);
    return accept && strstr(accept, "application/json") && !strstr(accept, "text/event-stream");
}

static void search(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    const sift_config *cfg = api->cfg;
    struct worker_res *wr = sift_http_worker_data(x);
    size_t len;
    const char *body = sift_http_body(x, &len);
    cJSON *req = cJSON_ParseWithLength(body, len);
    cJSON *q = req ? cJSON_GetObjectItemCaseSensitive(req, "query") : NULL;
    cJSON *sid = req ? cJSON_GetObjectItemCaseSensitive(req, "session_id") : NULL;
    sift_err err = {0};
    if (!cJSON_IsObject(req)) {
        sift_http_respond_error(x, 400, "invalid_request", "the body must be a JSON object");
        goto out;
    }
    if (!q || !cJSON_IsString(q) || !q->valuestring[0]) {
        sift_http_respond_error(x, 400, "invalid_request", "query: must be a non-empty string");
        goto out;
    }
    if (strlen(q->valuestring) > cfg->server.max_query_bytes) {
        char msg[96];
        snprintf(msg, sizeof msg, "query: longer than %zu bytes", cfg->server.max_query_bytes);
        sift_http_respond_error(x, 413, "too_large", msg);
        goto out;
    }
    if (sid && !cJSON_IsNull(sid) &&
        (!cJSON_IsString(sid) || sift_session_id_check(sid->valuestring, &err))) {
        char msg[SIFT_ERR_MSG_MAX + 16];
        snprintf(msg, sizeof msg, "session_id: %s",
                 cJSON_IsString(sid) ? err.msg : "must be a string");
        sift_http_respond_error(x, 400, "invalid_request", msg);
        goto out;
    }
    struct search *s = sift_calloc(1, sizeof *s);
    if (!s || !(s->arena = sift_arena_new(8192))) {
        sift_free(s);
        sift_http_respond_error(x, 503, "busy", "out of memory");
        goto out;
    }
    s->x = x;
    s->api = api;
    s->json_mode = accepts_json(x);
    set_state(s, SEARCH_RUNNING);
    sift_buf_init(&s->events, 0);
    snprintf(s->run_id, sizeof s->run_id, "r-%d-%llx",
             sift_server_worker_index(sift_http_worker(x)), (unsigned long long)uv_hrtime());
    if (sid && cJSON_IsString(sid))
        snprintf(s->session, sizeof s->session, "%s", sid->valuestring);
    sift_event_queue_init(&s->q, s->run_id, 0, s->json_mode ? json_write : sse_write, s);
    sift_conv_init(&s->conv, s->arena);
    bool found = false;
    sift_memory_budget budget = {.max_messages = 64, .max_tokens = 12000};
    if ((s->session[0] && sift_session_load(api->sessions, s->session, &s->conv, &found, &err)) ||
        (!found && sift_conv_add_system(&s->conv, SIFT_AGENT_SHOP_PROMPT, &err)) ||
        sift_conv_add_user(&s->conv, q->valuestring, &err) ||
        sift_memory_trim_conv(&s->conv, &budget, NULL)) {
        sift_http_respond_error(x, 500, sift_err_name(err.code), err.msg);
        search_free(s);
        goto out;
    }
    if (!s->json_mode && sift_http_stream_start(x, 200, "text/event-stream")) {
        sift_http_stream_abort(x);
        search_free(s);
        goto out;
    }
    sift_agent_opts opts = {
        .model = wr->model,
        .tools = api->tools,
        .max_steps = cfg->agent.max_steps,
        .deadline_ms = cfg->agent.deadline_ms,
        .tools_opts = {.limit = cfg->agent.tool_limit, .timeout_ms = cfg->agent.tool_timeout_ms},
        .run_id = s->run_id,
        .session_id = s->session[0] ? s->session : NULL,
        .on_event = on_event,
        .udata = s,
    };
    if (sift_agent_start(sift_http_ctx(x), &s->conv, &opts, on_done, s, &err)) {
        if (s->json_mode)
            sift_http_respond_error(x, 500, sift_err_name(err.code), err.msg);
        else
            sift_http_stream_abort(x);
        search_free(s);
    }
out:
    cJSON_Delete(req);
}

static void healthz(sift_http_exchange *x, void *udata)
{
    static const char body[] = "{\"status\":\"ok\"}";
    sift_http_respond(x, 200, "application/json", body, sizeof body - 1);
}

int sift_api_mount(sift_api *api, sift_server *srv, sift_err *err)
{
    if (sift_server_route(srv, "GET", "/healthz", healthz, api) ||
        sift_server_route(srv, "GET", "/readyz", healthz, api) ||
        sift_server_route(srv, "POST", "/v1/search", search, api))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory adding routes");
    return 0;
}
