/* The ReAct agent on the graph engine: model -> tools -> model ... -> END. */
#include <cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sift/agent.h"
#include "sift/graph.h"
#include "sift/log.h"

struct react_state {
    sift_agent_run *run; /* not a graph field: the engine copies it as bytes */
    int64_t turns;
};

struct call_count {
    char *key; /* tool name, a separator, the argument text (in the arena) */
    int count;
};

enum run_state { RUN_STARTING, RUN_RUNNING, RUN_DONE };

struct sift_agent_run {
    uv_timer_t timer; /* starts the graph on a later turn; its close frees the run */
    enum run_state state;
    sift_agent_opts opts;
    char run_id[64];
    char session_id[130];
    sift_ctx *ctx; /* the run: parent + deadline */
    sift_conv *conv;
    sift_arena *arena;
    struct react_state st;
    sift_agent_done_fn done;
    void *udata;
    sift_graph_node_run *node; /* the node in flight */
    sift_tool_registry *empty_tools;
    int steps;
    sift_usage usage;
    uint64_t t0, step_t0, first_token;
    double model_ms, tools_ms;
    struct call_count *counts;
    size_t ncounts, capcounts;
    int nudged;
    /* a node's own words for why the run stops, in the run's arena when
     * there are some (256 bytes in every run before) */
    const char *why;
    /* the tools step */
    const sift_tool_call *calls; /* the assistant's calls */
    size_t ncalls;
    sift_tool_call *run_calls; /* those actually run */
    size_t *run_index;         /* their index among `calls` */
    size_t nrun;
    const char **nudge; /* per call: the nudge result, or NULL */
};

static void set_state(sift_agent_run *r, enum run_state s)
{
    r->state = s;
}

static void emit(sift_agent_run *r, const sift_event *ev)
{
    if (r->opts.on_event)
        r->opts.on_event(r->opts.udata, ev);
}

static double ms_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e6;
}

/* Ends the node in flight with an error, keeping the message for the run's
 * result without the graph engine's prefix. */
static void node_fail(sift_agent_run *r, sift_graph_node_run *node, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void node_fail(sift_agent_run *r, sift_graph_node_run *node, int code, const char *fmt, ...)
{
    char why[SIFT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    /* out of memory: the graph's message, which has the same words */
    r->why = sift_arena_strdup(r->arena, why);
    sift_graph_node_done(node, code, "%s", why);
}

/* ---- the model node ---- */

static void on_token(void *ud, const char *text, size_t len)
{
    sift_agent_run *r = ud;
    if (!r->first_token)
        r->first_token = uv_hrtime();
    sift_event ev = {.type = SIFT_EV_TOKEN, .text = text, .text_len = len};
    emit(r, &ev);
}

static void on_model_done(void *ud, int code, const sift_chat_result *res, const sift_err *err)
{
    sift_agent_run *r = ud;
    sift_graph_node_run *node = r->node;
    r->model_ms += ms_since(r->step_t0);
    if (code) {
        node_fail(r, node, code, "%s", err ? err->msg : sift_err_name(code));
        return;
    }
    r->steps++;
    if (res->has_usage) {
        r->usage.prompt_tokens += res->usage.prompt_tokens;
        r->usage.completion_tokens += res->usage.completion_tokens;
        r->usage.total_tokens += res->usage.total_tokens;
    }
    sift_err e = {0};
    sift_message m = res->message;
    m.role = SIFT_ROLE_ASSISTANT;
    if (!m.content && m.n_tool_calls == 0) {
        m.content = ""; /* an empty answer is still an answer */
        m.content_len = 0;
    }
    int rc = sift_conv_append(r->conv, &m, &e);
    if (rc)
        node_fail(r, node, rc, "%s", e.msg);
    else
        sift_graph_node_done(node, 0, NULL);
}

static void model_node(sift_graph_node_run *node, struct react_state *st)
{
    sift_agent_run *r = st->run;
    st->turns++;
    if (r->steps >= r->opts.max_steps) {
        node_fail(r, node, SIFT_ELIMIT, "max steps (%d) reached without an answer",
                  r->opts.max_steps);
        return;
    }
    const sift_tool_registry *tools = r->opts.tools ? r->opts.tools : r->empty_tools;
    size_t tools_len = 0;
    const char *tools_json = sift_tool_registry_json(tools, &tools_len);
    sift_chat_request req = {
        .model = r->opts.model_name,
        .messages = r->conv->msgs,
        .n_messages = r->conv->len,
        .tools_array = tools_len > 2 ? tools_json : NULL,
        .tools_prechecked = true,
        .tool_choice = SIFT_TOOL_CHOICE_AUTO,
        .stream = true,
        .include_usage = true,
        /* the conversation lives in the run's arena and only grows after
         * on_done: the body can wait until the request is sent */
        .stable_until_done = true,
    };
    static const sift_model_callbacks cbs = {on_token, NULL, on_model_done};
    sift_err err = {0};
    r->node = node;
    r->step_t0 = uv_hrtime();
    int rc = sift_model_generate(r->opts.model, sift_graph_node_ctx(node), r->arena, &req, &cbs, r,
                                 &err);
    if (rc)
        node_fail(r, node, rc, "%s", err.msg);
}

/* ---- the tools node ---- */

static const sift_tool_call *last_calls(const sift_conv *c, size_t *n)
{
    const sift_message *m = c->len ? &c->msgs[c->len - 1] : NULL;
    *n = m && m->role == SIFT_ROLE_ASSISTANT ? m->n_tool_calls : 0;
    return *n ? m->tool_calls : NULL;
}

static int route_after_model(const struct react_state *st, void *udata, const char **out, int max)
{
    size_t n;
    last_calls(st->run->conv, &n);
    out[0] = n ? "tools" : SIFT_GRAPH_END;
    return 1;
}

/* Counts this call; returns how many times it has been asked for. */
static int count_call(sift_agent_run *r, const sift_tool_call *c)
{
    char *key = sift_arena_sprintf(r->arena, "%s\x1f%.*s", c->name, (int)c->arguments_len,
                                   c->arguments ? c->arguments : "");
    if (!key)
        return SIFT_ENOMEM;
    for (size_t i = 0; i < r->ncounts; i++)
        if (!strcmp(r->counts[i].key, key))
            return ++r->counts[i].count;
    if (r->ncounts == r->capcounts) {
        size_t cap = r->capcounts ? r->capcounts * 2 : 8;
        struct call_count *nc = sift_arena_alloc(r->arena, cap * sizeof *nc);
        if (!nc)
            return SIFT_ENOMEM;
        if (r->ncounts)
            memcpy(nc, r->counts, r->ncounts * sizeof *nc);
        r->counts = nc;
        r->capcounts = cap;
    }
    r->counts[r->ncounts].key = key;
    r->counts[r->ncounts].count = 1;
    return r->counts[r->ncounts++].count;
}

static void on_tool_start(size_t i, const sift_tool_call *call, void *ud)
{
    sift_agent_run *r = ud;
    sift_event ev = {.type = SIFT_EV_TOOL_STARTED,
                     .id = call->id,
                     .name = call->name,
                     .json = call->arguments,
                     .json_len = call->arguments_len};
    emit(r, &ev);
}

static void emit_products(sift_agent_run *r, const char *content)
{
    cJSON *j = cJSON_Parse(content);
    cJSON *products = j ? cJSON_GetObjectItemCaseSensitive(j, "products") : NULL;
    char *text = cJSON_IsArray(products) ? cJSON_PrintUnformatted(products) : NULL;
    if (text) {
        sift_event ev = {.type = SIFT_EV_PRODUCTS, .json = text, .json_len = strlen(text)};
        emit(r, &ev);
    }
    cJSON_free(text);
    cJSON_Delete(j);
}

static void on_tool_end(size_t i, const sift_tool_call *call, int code, int64_t duration_us,
                        const char *content, void *ud)
{
    sift_agent_run *r = ud;
    sift_event ev = {.type = SIFT_EV_TOOL_FINISHED,
                     .id = call->id,
                     .name = call->name,
                     .duration_us = duration_us,
                     .code = code,
                     .message = code ? content : NULL};
    emit(r, &ev);
    if (code == 0 && content && !strcmp(call->name, "search_products"))
        emit_products(r, content);
}

static void append_results(sift_agent_run *r, const sift_tool_result *results)
{
    sift_err e = {0};
    size_t k = 0;
    for (size_t i = 0; i < r->ncalls; i++) {
        const char *content = r->nudge[i];
        if (!content)
            content = results[k++].content;
        int rc = sift_conv_add_tool_result(r->conv, r->calls[i].id ? r->calls[i].id : "",
                                           content ? content : "", &e);
        if (rc) {
            node_fail(r, r->node, rc, "%s", e.msg);
            return;
        }
    }
    sift_graph_node_done(r->node, 0, NULL);
}

static void on_tools_done(int code, const sift_tool_result *results, size_t n, const sift_err *err,
                          void *ud)
{
    sift_agent_run *r = ud;
    r->tools_ms += ms_since(r->step_t0);
    if (code) {
        node_fail(r, r->node, code, "%s", err ? err->msg : sift_err_name(code));
        return;
    }
    append_results(r, results);
}

static void tools_node(sift_graph_node_run *node, struct react_state *st)
{
    sift_agent_run *r = st->run;
    r->node = node;
    r->step_t0 = uv_hrtime();
    r->calls = last_calls(r->conv, &r->ncalls);
    r->nudge = sift_arena_calloc(r->arena, r->ncalls, sizeof *r->nudge);
    r->run_calls = sift_arena_calloc(r->arena, r->ncalls, sizeof *r->run_calls);
    if (!r->nudge || !r->run_calls) {
        node_fail(r, node, SIFT_ENOMEM, "out of memory");
        return;
    }
    r->nrun = 0;
    for (size_t i = 0; i < r->ncalls; i++) {
        const sift_tool_call *c = &r->calls[i];
        int count = count_call(r, c);
        if (count < 0) {
            node_fail(r, node, count, "out of memory");
            return;
        }
        if (count > r->opts.loop_limit && r->nudged) {
            node_fail(r, node, SIFT_ELIMIT,
                      "stopped a loop: the model called %s with the same arguments %d times",
                      c->name, count);
            return;
        }
        if (count >= r->opts.loop_limit) {
            r->nudged = 1;
            r->nudge[i] = sift_arena_sprintf(
                r->arena,
                "{\"error\":{\"code\":\"repeated_call\",\"message\":\"you already called %s "
                "with these arguments %d times: use the result you have, or answer\"}}",
                c->name, count);
            continue;
        }
        r->run_calls[r->nrun++] = *c;
    }
    sift_tools_opts topts = r->opts.tools_opts;
    topts.on_tool_start = on_tool_start;
    topts.on_tool_end = on_tool_end;
    topts.udata = r;
    const sift_tool_registry *tools = r->opts.tools ? r->opts.tools : r->empty_tools;
    int rc = sift_tools_run(tools, sift_graph_node_ctx(node), r->arena, r->run_calls, r->nrun,
                            &topts, on_tools_done, r);
    if (rc)
        node_fail(r, node, rc, "the tools could not start: %s", sift_err_name(rc));
}

/* ---- the graph, built once per process ---- */

SIFT_GRAPH_NODE_FN(model_node, struct react_state);
SIFT_GRAPH_NODE_FN(tools_node, struct react_state);
SIFT_GRAPH_ROUTER_FN(route_after_model, struct react_state);

static sift_graph *react_graph;
static sift_err react_graph_err;
static pthread_once_t react_once = PTHREAD_ONCE_INIT;

static void build_graph(void)
{
    static const sift_graph_field fields[] = {
        SIFT_GRAPH_FIELD(struct react_state, turns, sift_graph_i64),
    };
    static const char *const targets[] = {"tools", SIFT_GRAPH_END, NULL};
    sift_graph *g = SIFT_GRAPH_NEW("react", struct react_state, fields, &react_graph_err);
    if (!g)
        return;
    if (sift_graph_add_node(g, "model", &model_node_node, NULL) ||
        sift_graph_add_node(g, "tools", &tools_node_node, NULL) ||
        sift_graph_add_edge(g, SIFT_GRAPH_START, "model") ||
        sift_graph_add_branch(g, "model", &route_after_model_router, NULL, targets) ||
        sift_graph_add_edge(g, "tools", "model") || sift_graph_compile(g, &react_graph_err)) {
        if (!react_graph_err.code)
            sift_err_set(&react_graph_err, SIFT_ENOMEM, "out of memory building the agent graph");
        sift_graph_free(g);
        return;
    }
    react_graph = g;
}

/* ---- the run ---- */

static void on_closed(uv_handle_t *h)
{
    sift_agent_run *r = (sift_agent_run *)h;
    sift_tool_registry_free(r->empty_tools);
    sift_free(r);
}

static void finish(sift_agent_run *r, int code, const char *msg)
{
    set_state(r, RUN_DONE);
    sift_agent_result res = {
        .code = code, .message = code ? msg : NULL, .steps = r->steps, .usage = r->usage};
    res.timings.total_ms = ms_since(r->t0);
    res.timings.ttft_ms = r->first_token ? (double)(r->first_token - r->t0) / 1e6 : 0;
    res.timings.model_ms = r->model_ms;
    res.timings.tools_ms = r->tools_ms;
    if (code == 0 && r->conv->len) {
        const sift_message *last = &r->conv->msgs[r->conv->len - 1];
        res.answer = last->content ? last->content : "";
        sift_event ev = {.type = SIFT_EV_ANSWER,
                         .text = res.answer,
                         .text_len = last->content ? last->content_len : 0};
        emit(r, &ev);
    } else {
        sift_event ev = {.type = SIFT_EV_ERROR, .code = code, .message = msg};
        emit(r, &ev);
        sift_log(SIFT_LOG_WARN, r->run_id[0] ? r->run_id : NULL, NULL, "run stopped: %s: %s",
                 sift_err_name(code), msg);
    }
    sift_event fin = {.type = SIFT_EV_RUN_FINISHED,
                      .steps = r->steps,
                      .usage = &r->usage,
                      .timings = &res.timings};
    emit(r, &fin);
    r->done(r->udata, &res);
    sift_ctx_release(r->ctx);
    r->ctx = NULL;
    uv_close((uv_handle_t *)&r->timer, on_closed);
}

static void on_graph_done(const sift_graph_result *gr, void *ud)
{
    sift_agent_run *r = ud;
    int code = gr->status == SIFT_GRAPH_DONE ? 0 : gr->code ? gr->code : SIFT_EINTERNAL;
    const char *msg = r->why && r->why[0] ? r->why : gr->msg ? gr->msg : sift_err_name(code);
    /* a deadline or a cancel says why in the context's own words */
    if (code && sift_ctx_err(r->ctx) && code == sift_ctx_err(r->ctx))
        msg = sift_ctx_cause(r->ctx)->msg;
    finish(r, code, msg);
}

static void on_start_timer(uv_timer_t *t)
{
    sift_agent_run *r = (sift_agent_run *)t;
    set_state(r, RUN_RUNNING);
    sift_event ev = {.type = SIFT_EV_RUN_STARTED,
                     .query = r->conv->len ? r->conv->msgs[r->conv->len - 1].content : NULL,
                     .session_id = r->session_id[0] ? r->session_id : NULL,
                     .model =
                         r->opts.model_name ? r->opts.model_name : sift_model_name(r->opts.model)};
    emit(r, &ev);
    sift_graph_opts gopts = {.max_steps = 2 * r->opts.max_steps + 2};
    sift_err err = {0};
    int rc = sift_graph_run(react_graph, r->ctx, &r->st, &gopts, on_graph_done, r, &err);
    if (rc)
        finish(r, rc, err.msg);
}

int sift_agent_start(sift_ctx *parent, sift_conv *conv, const sift_agent_opts *opts,
                     sift_agent_done_fn done, void *udata, sift_err *err)
{
    if (!parent || !conv || !opts || !opts->model || !done)
        return sift_err_set(err, SIFT_EINVAL, "agent: parent, conv, model and done are required");
    if (sift_ctx_err(parent))
        return sift_err_copy(err, sift_ctx_cause(parent));
    pthread_once(&react_once, build_graph);
    if (!react_graph)
        return sift_err_copy(err, &react_graph_err);
    sift_agent_run *r = sift_calloc(1, sizeof *r);
    if (!r)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    r->opts = *opts;
    if (r->opts.max_steps <= 0)
        r->opts.max_steps = 8;
    if (r->opts.loop_limit <= 0)
        r->opts.loop_limit = 3;
    int64_t deadline = r->opts.deadline_ms == 0 ? 30000 : r->opts.deadline_ms;
    snprintf(r->run_id, sizeof r->run_id, "%s", opts->run_id ? opts->run_id : "");
    snprintf(r->session_id, sizeof r->session_id, "%s", opts->session_id ? opts->session_id : "");
    r->opts.run_id = r->run_id;
    r->opts.session_id = r->session_id;
    r->conv = conv;
    r->arena = conv->arena;
    r->done = done;
    r->udata = udata;
    r->st.run = r;
    r->t0 = uv_hrtime();
    r->ctx = deadline > 0 ? sift_ctx_new_timeout(parent, deadline) : sift_ctx_new(parent);
    if (!opts->tools)
        r->empty_tools = sift_tool_registry_new();
    if (!r->ctx || (!opts->tools && !r->empty_tools)) {
        sift_ctx_release(r->ctx);
        sift_tool_registry_free(r->empty_tools);
        sift_free(r);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    if (r->run_id[0])
        sift_ctx_set_run_id(r->ctx, r->run_id);
    set_state(r, RUN_STARTING);
    uv_timer_init(sift_ctx_loop(parent), &r->timer);
    uv_timer_start(&r->timer, on_start_timer, 0, 0);
    return 0;
}
