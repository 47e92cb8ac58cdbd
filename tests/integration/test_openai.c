/* Integration tests for the OpenAI-compatible provider (src/llm/openai.c,
 * include/sift/provider.h) against the mock LLM (tests/support/mock_llm.h),
 * which runs on its own threads; the provider runs on the test's loop.
 *
 * Every test ends by freeing the model, closing the HTTP client and checking
 * that the loop has no handle left (uv_loop_close succeeds), so a leaked
 * backoff timer fails the test, and leaked memory fails it under ASan.
 * Timing checks are lower bounds set by the mock's own delays (a Retry-After
 * of 1 s cannot be honoured in less than 1 s), or generous upper bounds
 * ("well before 5 s") that only a broken implementation can miss. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "mock_llm.h"
#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/http.h"
#include "sift/provider.h"

typedef struct fixture {
    uv_loop_t loop;
    mock_llm *mock;
    sift_http_client *http;
    sift_model *model;
    sift_ctx *root;
    sift_arena *arena;
    int client_closed;
} fixture;

/* What one generation reported. */
typedef struct run {
    fixture *f;
    sift_ctx *ctx;
    sift_buf tokens;
    int token_calls;
    int starts;
    size_t start_index[8];
    char start_id[8][64];
    char start_name[8][64];
    int done_calls;
    int code;
    sift_err err;
    sift_chat_result res;
    uint64_t t0, t_first_token, t_done; /* ms */
    int cancel_after_tokens;            /* > 0: cancel r->ctx in on_token after this many */
    int cancelled;
    int in_cancel; /* on_done must never run inside sift_ctx_cancel */
    int tokens_after_cancel;
    int done_in_cancel;
    int free_model_in_done;
} run;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_token(void *ud, const char *text, size_t len)
{
    run *r = ud;
    if (r->cancelled)
        r->tokens_after_cancel++;
    if (!r->token_calls)
        r->t_first_token = now_ms();
    r->token_calls++;
    assert_int_equal(sift_buf_append(&r->tokens, text, len), 0);
    if (r->cancel_after_tokens && r->token_calls == r->cancel_after_tokens) {
        r->cancelled = 1;
        r->in_cancel = 1;
        sift_ctx_cancel(r->ctx, SIFT_ECANCELED, "the shopper went away");
        r->in_cancel = 0;
    }
}

static void on_tool_call_start(void *ud, size_t index, const char *id, const char *name)
{
    run *r = ud;
    if (r->cancelled)
        r->tokens_after_cancel++;
    if (r->starts < 8) {
        r->start_index[r->starts] = index;
        snprintf(r->start_id[r->starts], 64, "%s", id ? id : "");
        snprintf(r->start_name[r->starts], 64, "%s", name ? name : "");
    }
    r->starts++;
}

static void on_done(void *ud, int code, const sift_chat_result *res, const sift_err *err)
{
    run *r = ud;
    if (r->in_cancel)
        r->done_in_cancel++;
    r->done_calls++;
    r->code = code;
    r->t_done = now_ms();
    if (code == 0) {
        assert_non_null(res);
        assert_null(err);
        r->res = *res; /* its strings live in the fixture's arena */
    } else {
        assert_null(res);
        assert_non_null(err);
        assert_int_equal(err->code, code);
        r->err = *err;
        print_message("on_done %s: %s\n", sift_err_name(code), err->msg);
    }
    if (r->free_model_in_done) {
        sift_model_free(r->f->model);
        r->f->model = NULL;
    }
}

static const sift_model_callbacks callbacks = {
    .on_token = on_token,
    .on_tool_call_start = on_tool_call_start,
    .on_done = on_done,
};

static void on_client_closed(void *udata)
{
    ((fixture *)udata)->client_closed = 1;
}

static void on_int_set_openai(void *udata)
{
    *(int *)udata = 1;
}

static int guard_fired;

static void on_guard(uv_timer_t *t)
{
    guard_fired = 1;
    uv_stop(t->loop);
}

/* Runs the loop until *counter >= target, or fails after `ms`. */
static void wait_for(fixture *f, const int *counter, int target, int ms)
{
    uv_timer_t guard;
    uv_timer_init(&f->loop, &guard);
    uv_timer_start(&guard, on_guard, (uint64_t)ms, 0);
    guard_fired = 0;
    while (*counter < target && !guard_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (*counter < target)
        fail_msg("timed out after %d ms", ms);
}

/* Runs the loop until *counter is 0, or fails after 5 s. */
static void wait_for_zero(fixture *f, const int *counter)
{
    for (int i = 0; i < 500 && *counter > 0; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (*counter > 0)
            uv_sleep(10);
    }
    assert_int_equal(*counter, 0);
}

static sift_model *new_model(fixture *f, const char *base_url, const char *key, int max_retries)
{
    sift_openai_opts o = {
        .base_url = base_url,
        .api_key = key,
        .model = "mock-model",
        .timeout_ms = 10000,
        .max_retries = max_retries,
        .backoff_base_ms = 20, /* keep the tests quick; the jitter formula is the same */
        .backoff_max_ms = 100,
    };
    sift_err err = {0};
    sift_model *m = sift_openai_new(&f->loop, f->http, &o, &err);
    if (!m)
        fail_msg("sift_openai_new: %s", err.msg);
    return m;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    sift_err err = {0};
    f->mock = mock_llm_start(1, &err);
    if (!f->mock)
        fail_msg("mock_llm_start: %s", err.msg);
    f->http = sift_http_client_new(&f->loop, NULL, &err);
    assert_non_null(f->http);
    f->root = sift_ctx_new_root(&f->loop);
    assert_non_null(f->root);
    f->arena = sift_arena_new(0);
    assert_non_null(f->arena);
    f->model = new_model(f, mock_llm_base_url(f->mock), NULL, 3);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sift_model_free(f->model);
    sift_http_client_close(f->http, on_client_closed, f);
    wait_for(f, &f->client_closed, 1, 5000);
    sift_ctx_release(f->root);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sift_arena_free(f->arena);
    mock_llm_stop(f->mock);
    free(f);
    return 0;
}

static void run_init(run *r, fixture *f, int64_t deadline_ms)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->code = 1;
    sift_buf_init(&r->tokens, 0);
    r->ctx = sift_ctx_new_timeout(f->root, deadline_ms);
    assert_non_null(r->ctx);
}

static void run_free(run *r)
{
    sift_buf_free(&r->tokens);
    sift_ctx_release(r->ctx);
}

/* A conversation of one system and one user message. */
static sift_message conv[2] = {
    {.role = SIFT_ROLE_SYSTEM, .content = "You help shoppers.", .content_len = 18},
    {.role = SIFT_ROLE_USER, .content = "nike running shoes size 42", .content_len = 26},
};

/* Starts a generation and runs the loop until on_done. */
static void generate(fixture *f, run *r, const sift_chat_request *req)
{
    sift_err err = {0};
    r->t0 = now_ms();
    int rc = sift_model_generate(f->model, r->ctx, f->arena, req, &callbacks, r, &err);
    if (rc)
        fail_msg("generate: %s", err.msg);
    assert_int_equal(r->done_calls, 0); /* never synchronous */
    wait_for(f, &r->done_calls, 1, 20000);
    /* and exactly once: give a late second call a chance to show up */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r->done_calls, 1);
}

static sift_chat_request stream_req(bool stream)
{
    sift_chat_request q = {.messages = conv, .n_messages = 2, .stream = stream};
    return q;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* ---- success paths ----------------------------------------------------- */

static void test_stream_content(void **state)
{
    fixture *f = *state;
    const char *text = "Pegasus 40 in black, size 42, is in stock in Hanoi.";
    mock_reply rep = {
        .content = text, .token_delay_ms = 25, .prompt_tokens = 31, .completion_tokens = 12};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.tokens.data, text);
    assert_true(r.token_calls >= 10); /* one word per chunk */
    /* tokens arrived while the stream was still going: after the first word
     * the mock waited 25 ms before each of the other 10 words and the end */
    assert_true(r.t_done - r.t_first_token >= 200);
    assert_int_equal(r.res.message.role, SIFT_ROLE_ASSISTANT);
    assert_int_equal(r.res.message.content_len, strlen(text));
    assert_string_equal(r.res.message.content, text);
    assert_int_equal(r.res.message.n_tool_calls, 0);
    assert_int_equal(r.res.finish, SIFT_FINISH_STOP);
    assert_string_equal(r.res.finish_text, "stop");
    assert_true(r.res.has_usage);
    assert_int_equal(r.res.usage.prompt_tokens, 31);
    assert_int_equal(r.res.usage.completion_tokens, 12);
    assert_int_equal(r.res.usage.total_tokens, 43);
    assert_int_equal(mock_llm_requests(f->mock), 1);
    run_free(&r);
}

static void test_stream_parallel_tool_calls(void **state)
{
    fixture *f = *state;
    /* escapes and multi-byte UTF-8 in the arguments, cut into many pieces */
    static const mock_tool_call calls[3] = {
        {"call_a", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}", 5},
        {"call_b", "search_products",
         "{\"query\":\"gi\xc3\xa0y \\\"Nike\\\" \xe2\x80\x94 \\u0111en\\n\",\"k\":5}", 9},
        {"call_c", "get_price", "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\"}", 3},
    };
    mock_reply rep = {.tool_calls = calls, .n_tool_calls = 3};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.token_calls, 0);
    assert_int_equal(r.starts, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.start_index[i], (size_t)i);
        assert_string_equal(r.start_id[i], calls[i].id);
        assert_string_equal(r.start_name[i], calls[i].name);
    }
    assert_null(r.res.message.content);
    assert_int_equal(r.res.message.n_tool_calls, 3);
    for (int i = 0; i < 3; i++) {
        const sift_tool_call *tc = &r.res.message.tool_calls[i];
        assert_string_equal(tc->id, calls[i].id);
        assert_string_equal(tc->name, calls[i].name);
        assert_int_equal(tc->arguments_len, strlen(calls[i].arguments));
        assert_memory_equal(tc->arguments, calls[i].arguments, tc->arguments_len);
    }
    assert_int_equal(r.res.finish, SIFT_FINISH_TOOL_CALLS);
    assert_true(r.res.has_usage);
    run_free(&r);
}

static void test_nonstream(void **state)
{
    fixture *f = *state;
    static const mock_tool_call calls[1] = {
        {"call_x", "get_price", "{\"sku\":\"A-1\",\"currency\":\"USD\"}", 1}};
    mock_reply rep = {.content = "Let me check the price.",
                      .tool_calls = calls,
                      .n_tool_calls = 1,
                      .prompt_tokens = 5,
                      .completion_tokens = 6};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(false);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    /* the same callbacks as a stream: the content once, then the call */
    assert_int_equal(r.token_calls, 1);
    assert_string_equal(r.tokens.data, "Let me check the price.");
    assert_int_equal(r.starts, 1);
    assert_string_equal(r.start_name[0], "get_price");
    assert_string_equal(r.res.message.content, "Let me check the price.");
    assert_int_equal(r.res.message.n_tool_calls, 1);
    assert_string_equal(r.res.message.tool_calls[0].arguments, calls[0].arguments);
    assert_int_equal(r.res.finish, SIFT_FINISH_TOOL_CALLS);
    assert_true(r.res.has_usage);
    assert_int_equal(r.res.usage.total_tokens, 11);
    char *body = mock_llm_request_body(f->mock, 0);
    assert_non_null(body);
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    cJSON *stream = cJSON_GetObjectItemCaseSensitive(j, "stream");
    assert_true(stream == NULL || cJSON_IsFalse(stream));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "stream_options"));
    cJSON_Delete(j);
    free(body);
    run_free(&r);
}

static void test_request_body(void **state)
{
    fixture *f = *state;
    static const char *tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_price\",\"description\":\"Price of "
        "a SKU\",\"parameters\":{\"type\":\"object\",\"properties\":{\"sku\":{\"type\":"
        "\"string\"}},\"required\":[\"sku\"]}}}]";
    mock_reply rep = {.content = "ok"};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    q.tools_array = tools;
    q.tool_choice = SIFT_TOOL_CHOICE_AUTO;
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    char *body = mock_llm_request_body(f->mock, 0);
    assert_non_null(body);
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring, "mock-model");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream")));
    cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "tool_choice")->valuestring, "auto");
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tools");
    assert_int_equal(cJSON_GetArraySize(t), 1);
    cJSON *fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(t, 0), "function");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring, "get_price");
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 2);
    cJSON *m1 = cJSON_GetArrayItem(msgs, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m1, "role")->valuestring, "user");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m1, "content")->valuestring,
                        "nike running shoes size 42");
    cJSON_Delete(j);
    free(body);

    /* a request naming its own model overrides the default */
    run r2;
    run_init(&r2, f, 20000);
    sift_chat_request q2 = stream_req(true);
    q2.model = "other-model";
    generate(f, &r2, &q2);
    assert_int_equal(r2.code, 0);
    body = mock_llm_request_body(f->mock, 1);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"model\":\"other-model\""));
    free(body);
    run_free(&r2);
    run_free(&r);
}

/* stable_until_done: the body is built when the request goes to curl, not
 * in generate. With one connection to the model, the second generation waits
 * behind the first; a change to its messages before it is sent (which the
 * flag's contract rules out for real callers) shows when it was built. Its
 * retry after a 500 sends the same body again. */
static void test_body_built_when_sent(void **state)
{
    fixture *f = *state;
    sift_http_client_opts co = {.max_host_connections = 1};
    sift_err err = {0};
    sift_http_client *h1 = sift_http_client_new(&f->loop, &co, &err);
    assert_non_null(h1);
    sift_openai_opts o = {.base_url = mock_llm_base_url(f->mock),
                          .model = "mock-model",
                          .timeout_ms = 10000,
                          .max_retries = 2,
                          .backoff_base_ms = 20,
                          .backoff_max_ms = 100};
    sift_model *m = sift_openai_new(&f->loop, h1, &o, &err);
    assert_non_null(m);

    mock_reply slow = {.content = "one two three four", .token_delay_ms = 50};
    mock_reply bad = {.status = 500, .error_message = "The server had an error"};
    mock_reply ok = {.content = "second"};
    mock_llm_push(f->mock, &slow);
    mock_llm_push(f->mock, &bad);
    mock_llm_push(f->mock, &ok);

    sift_message msgs[2] = {
        {.role = SIFT_ROLE_SYSTEM, .content = "You help shoppers.", .content_len = 18},
        {.role = SIFT_ROLE_USER, .content = "before", .content_len = 6},
    };
    run r1, r2;
    run_init(&r1, f, 20000);
    run_init(&r2, f, 20000);
    sift_chat_request q1 = stream_req(true);
    q1.stable_until_done = true;
    assert_int_equal(sift_model_generate(m, r1.ctx, f->arena, &q1, &callbacks, &r1, &err), 0);
    sift_chat_request q2 = {
        .messages = msgs, .n_messages = 2, .stream = true, .stable_until_done = true};
    assert_int_equal(sift_model_generate(m, r2.ctx, f->arena, &q2, &callbacks, &r2, &err), 0);
    msgs[1].content = "after";
    msgs[1].content_len = 5;
    wait_for(f, &r2.done_calls, 1, 20000);
    assert_int_equal(r1.code, 0);
    assert_int_equal(r2.code, 0);
    assert_string_equal(r2.tokens.data, "second");
    assert_int_equal(mock_llm_requests(f->mock), 3);
    char *b1 = mock_llm_request_body(f->mock, 1);
    char *b2 = mock_llm_request_body(f->mock, 2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_contains(b1, "\"content\":\"after\"");
    assert_string_equal(b1, b2); /* the retry reuses the built body */
    free(b1);
    free(b2);

    sift_model_free(m);
    int closed = 0;
    sift_http_client_close(h1, on_int_set_openai, &closed);
    wait_for(f, &closed, 1, 5000);
    run_free(&r1);
    run_free(&r2);
}

/* ---- errors and retries ------------------------------------------------ */

static void test_401_not_retried(void **state)
{
    fixture *f = *state;
    mock_reply rep = {.status = 401, .error_message = "Incorrect API key provided"};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EHTTP);
    assert_contains(r.err.msg, "provider error 401: Incorrect API key provided");
    assert_int_equal(mock_llm_requests(f->mock), 1);
    assert_int_equal(r.token_calls, 0);
    run_free(&r);
}

static void test_429_retry_after(void **state)
{
    fixture *f = *state;
    mock_reply busy = {.status = 429, .error_message = "Rate limit reached", .retry_after_s = 1};
    mock_reply ok = {.content = "after the wait"};
    mock_llm_push(f->mock, &busy);
    mock_llm_push(f->mock, &ok);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.res.message.content, "after the wait");
    assert_int_equal(mock_llm_requests(f->mock), 2);
    assert_true(r.t_done - r.t0 >= 1000); /* Retry-After: 1 was honoured */
    run_free(&r);
}

static void test_500_twice_then_success(void **state)
{
    fixture *f = *state;
    mock_reply bad = {.status = 500, .error_message = "The server had an error"};
    mock_reply ok = {.content = "third time lucky"};
    mock_llm_push(f->mock, &bad);
    mock_llm_push(f->mock, &bad);
    mock_llm_push(f->mock, &ok);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.tokens.data, "third time lucky");
    assert_int_equal(mock_llm_requests(f->mock), 3);
    run_free(&r);
}

static void test_retries_exhausted(void **state)
{
    fixture *f = *state;
    mock_reply bad = {.status = 503, .error_message = "Overloaded"};
    mock_llm_set_default(f->mock, &bad);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EHTTP);
    assert_contains(r.err.msg, "giving up after 4 attempts: provider error 503: Overloaded");
    assert_int_equal(mock_llm_requests(f->mock), 4); /* 1 + max_retries 3 */
    run_free(&r);
}

static void test_retry_stops_at_deadline(void **state)
{
    fixture *f = *state;
    mock_reply busy = {.status = 429, .error_message = "Rate limit reached", .retry_after_s = 5};
    mock_llm_set_default(f->mock, &busy);
    run r;
    run_init(&r, f, 300);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EHTTP);
    assert_contains(r.err.msg, "giving up after 1 attempt");
    assert_contains(r.err.msg, "deadline");
    assert_contains(r.err.msg, "Rate limit reached");
    assert_true(r.t_done - r.t0 < 2500); /* not the 5 s the server asked for */
    assert_int_equal(mock_llm_requests(f->mock), 1);
    run_free(&r);
}

static void on_cancel_timer(uv_timer_t *t)
{
    run *r = t->data;
    r->in_cancel = 1;
    sift_ctx_cancel(r->ctx, SIFT_ECANCELED, "stopped by the test");
    r->in_cancel = 0;
}

static void test_cancel_during_backoff(void **state)
{
    fixture *f = *state;
    mock_reply busy = {.status = 429, .error_message = "Rate limit reached", .retry_after_s = 3};
    mock_llm_set_default(f->mock, &busy);
    run r;
    run_init(&r, f, 20000);
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = &r;
    uv_timer_start(&t, on_cancel_timer, 300, 0);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_contains(r.err.msg, "stopped by the test");
    assert_int_equal(r.done_in_cancel, 0);
    assert_true(r.t_done - r.t0 < 2500);
    assert_int_equal(mock_llm_requests(f->mock), 1);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* t lives on this stack frame */
    run_free(&r);
}

static void test_connection_refused(void **state)
{
    fixture *f = *state;
    /* a port nobody listens on: bind one, read it back, close it */
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&f->loop, &tcp);
    assert_int_equal(uv_tcp_bind(&tcp, (const struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&tcp, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", port);
    sift_model_free(f->model);
    f->model = new_model(f, url, NULL, 2);

    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EIO);
    assert_contains(r.err.msg, "giving up after 3 attempts");
    run_free(&r);
}

static void test_malformed_chunk(void **state)
{
    fixture *f = *state;
    mock_reply rep = {.content = "one two three four", .malformed_at = 3};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EPROTO);
    assert_contains(r.err.msg, "stream chunk 3");
    assert_int_equal(mock_llm_requests(f->mock), 1); /* a broken server is not retried */
    run_free(&r);
}

static void test_missing_finish_reason(void **state)
{
    fixture *f = *state;
    mock_reply rep = {.content = "never finished", .omit_finish_reason = 1};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EPROTO);
    assert_contains(r.err.msg, "without finish_reason");
    run_free(&r);
}

static void test_disconnect_after_tokens_not_retried(void **state)
{
    fixture *f = *state;
    /* events: 1 role, 2 "one", 3 " two", then the connection drops */
    mock_reply rep = {.content = "one two three four five", .disconnect_after = 3};
    mock_reply ok = {.content = "must not be fetched"};
    mock_llm_push(f->mock, &rep);
    mock_llm_push(f->mock, &ok);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_EIO);
    assert_contains(r.err.msg, "not retried");
    assert_string_equal(r.tokens.data, "one two");
    assert_int_equal(mock_llm_requests(f->mock), 1);
    run_free(&r);
}

static void test_disconnect_before_tokens_retried(void **state)
{
    fixture *f = *state;
    /* only the role chunk (no text) went out before the drop: nothing was
     * shown to the caller, so the request is repeated */
    mock_reply rep = {.content = "one two", .disconnect_after = 1};
    mock_reply ok = {.content = "second try"};
    mock_llm_push(f->mock, &rep);
    mock_llm_push(f->mock, &ok);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.tokens.data, "second try");
    assert_int_equal(mock_llm_requests(f->mock), 2);
    run_free(&r);
}

static void test_cancel_mid_stream(void **state)
{
    fixture *f = *state;
    mock_reply rep = {.content = "a b c d e f g h i j k l m n o p q r s t u v w x y z",
                      .token_delay_ms = 20};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    r.cancel_after_tokens = 3;
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_contains(r.err.msg, "the shopper went away");
    assert_int_equal(r.done_in_cancel, 0);
    assert_int_equal(r.tokens_after_cancel, 0);
    assert_int_equal(r.token_calls, 3);
    assert_string_equal(r.tokens.data, "a b c");
    assert_int_equal(mock_llm_requests(f->mock), 1);
    /* the transfer was aborted: the mock sees its client go away */
    for (int i = 0; i < 200 && mock_llm_disconnects(f->mock) < 1; i++) {
        uv_sleep(10);
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(mock_llm_disconnects(f->mock), 1);
    run_free(&r);
}

static void test_free_model_in_done(void **state)
{
    fixture *f = *state;
    mock_reply rep = {.content = "bye"};
    mock_llm_push(f->mock, &rep);
    run r;
    run_init(&r, f, 20000);
    r.free_model_in_done = 1;
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_null(f->model);
    run_free(&r);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    sift_err err = {0};
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = {.n_messages = 0}; /* no messages */
    assert_int_equal(sift_model_generate(f->model, r.ctx, f->arena, &q, &callbacks, &r, &err),
                     SIFT_EINVAL);
    q = stream_req(true);
    sift_model_callbacks nodone = {.on_token = on_token};
    assert_int_equal(sift_model_generate(f->model, r.ctx, f->arena, &q, &nodone, &r, &err),
                     SIFT_EINVAL);
    sift_ctx_cancel(r.ctx, SIFT_ECANCELED, NULL);
    assert_int_equal(sift_model_generate(f->model, r.ctx, f->arena, &q, &callbacks, &r, &err),
                     SIFT_ECANCELED);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(mock_llm_requests(f->mock), 0);

    sift_openai_opts o = {.base_url = "ftp://example.com", .model = "m"};
    assert_null(sift_openai_new(&f->loop, f->http, &o, &err));
    assert_contains(err.msg, "http:// or https://");
    o.base_url = "http://127.0.0.1:1/v1";
    o.model = NULL;
    assert_null(sift_openai_new(&f->loop, f->http, &o, &err));
    assert_contains(err.msg, "llm.model");
    run_free(&r);
}

/* ---- the Authorization header ------------------------------------------ */

/* The mock does not show request headers, so this test uses a minimal
 * HTTP/1.1 server on the test's loop that records them: it reads one request
 * per connection (headers and a Content-Length body), answers with a fixed
 * non-streaming completion and closes. */
typedef struct capsrv {
    uv_tcp_t listen;
    int port;
    int requests;
    int open_conns;
    char headers[4096];         /* of the last request */
    const char *const *replies; /* reply to request i; the last one repeats; NULL: cap_reply */
    int n_replies;
} capsrv;

typedef struct capconn {
    uv_tcp_t tcp;
    capsrv *srv;
    sift_buf in;
    uv_write_t wr;
} capconn;

static const char cap_reply[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    "Content-Length: 155\r\n\r\n"
    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":"
    "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":"
    "\"stop\"}]}";

static void cap_conn_closed(uv_handle_t *h)
{
    capconn *c = (capconn *)h;
    c->srv->open_conns--;
    sift_buf_free(&c->in);
    free(c);
}

static void cap_written(uv_write_t *w, int status)
{
    (void)status;
    capconn *c = w->data;
    uv_close((uv_handle_t *)&c->tcp, cap_conn_closed);
}

static void cap_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static char slab[16384];
    b->base = slab;
    b->len = sizeof(slab);
}

static void cap_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    capconn *c = (capconn *)s;
    if (n < 0) {
        uv_close((uv_handle_t *)&c->tcp, cap_conn_closed);
        return;
    }
    assert_int_equal(sift_buf_append(&c->in, b->base, (size_t)n), 0);
    const char *end = c->in.data ? strstr(c->in.data, "\r\n\r\n") : NULL;
    if (!end)
        return;
    size_t hlen = (size_t)(end - c->in.data);
    const char *cl = strcasestr(c->in.data, "\r\ncontent-length:");
    size_t blen = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    if (c->in.len < hlen + 4 + blen)
        return;
    snprintf(c->srv->headers, sizeof(c->srv->headers), "%.*s", (int)hlen, c->in.data);
    c->srv->requests++;
    uv_read_stop(s);
    const char *reply = cap_reply;
    if (c->srv->n_replies > 0) {
        int i = c->srv->requests - 1;
        reply = c->srv->replies[i < c->srv->n_replies ? i : c->srv->n_replies - 1];
    }
    uv_buf_t out = uv_buf_init((char *)reply, (unsigned)strlen(reply));
    c->wr.data = c;
    uv_write(&c->wr, s, &out, 1, cap_written);
}

static void cap_connection(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    capsrv *srv = (capsrv *)l;
    capconn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = srv;
    sift_buf_init(&c->in, 1 << 20);
    uv_tcp_init(l->loop, &c->tcp);
    srv->open_conns++;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, cap_alloc, cap_read);
}

static void cap_start(fixture *f, capsrv *srv)
{
    memset(srv, 0, sizeof(*srv));
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&f->loop, &srv->listen);
    assert_int_equal(uv_tcp_bind(&srv->listen, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listen, 16, cap_connection), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&srv->listen, (struct sockaddr *)&ss, &len);
    srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void test_api_key_header(void **state)
{
    fixture *f = *state;
    capsrv srv;
    cap_start(f, &srv);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/", srv.port); /* trailing / is fine */

    sift_model_free(f->model);
    f->model = new_model(f, url, "sk-test-123", 0);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(false);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.res.message.content, "hi");
    assert_int_equal(srv.requests, 1);
    assert_contains(srv.headers, "POST /v1/chat/completions HTTP/1.1");
    assert_contains(srv.headers, "\r\nAuthorization: Bearer sk-test-123");
    assert_contains(srv.headers, "\r\nContent-Type: application/json");
    run_free(&r);

    /* no key configured: no Authorization header at all */
    sift_model_free(f->model);
    f->model = new_model(f, url, "", 0);
    run_init(&r, f, 20000);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_int_equal(srv.requests, 2);
    assert_null(strcasestr(srv.headers, "authorization"));
    run_free(&r);

    uv_close((uv_handle_t *)&srv.listen, NULL);
    wait_for_zero(f, &srv.open_conns);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* srv lives on this stack frame */
}

static void test_stream_answered_with_json(void **state)
{
    fixture *f = *state;
    capsrv srv;
    cap_start(f, &srv);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", srv.port);
    sift_model_free(f->model);
    f->model = new_model(f, url, NULL, 0);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true); /* the server ignores "stream" */
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_contains(srv.headers, "\r\nAccept: text/event-stream");
    assert_string_equal(r.tokens.data, "hi");
    assert_string_equal(r.res.message.content, "hi");
    assert_int_equal(r.res.finish, SIFT_FINISH_STOP);
    run_free(&r);
    uv_close((uv_handle_t *)&srv.listen, NULL);
    wait_for_zero(f, &srv.open_conns);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Answers the first request with `busy`, the second with cap_reply, and
 * returns the time the generation took. */
static uint64_t retry_with(fixture *f, const char *busy)
{
    const char *replies[2] = {busy, cap_reply};
    capsrv srv;
    cap_start(f, &srv);
    srv.replies = replies;
    srv.n_replies = 2;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", srv.port);
    sift_model_free(f->model);
    f->model = new_model(f, url, NULL, 1);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(false);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_int_equal(srv.requests, 2);
    run_free(&r);
    uv_close((uv_handle_t *)&srv.listen, NULL);
    wait_for_zero(f, &srv.open_conns);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return r.t_done - r.t0;
}

static const char busy_body[] = "{\"error\":{\"message\":\"Slow down\",\"type\":\"requests\"}}";

static void test_retry_after_http_date(void **state)
{
    fixture *f = *state;
    /* Retry-After as an HTTP date 2 s ahead (whole seconds: 1 to 2 s of wait) */
    char date[64], busy[512];
    time_t when = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(busy, sizeof(busy),
             "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
             "Retry-After: %s\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
             date, sizeof(busy_body) - 1, busy_body);
    /* at least 900 ms: the date was honoured, not the 20 ms backoff */
    assert_true(retry_with(f, busy) >= 900);
}

static void test_retry_after_ms(void **state)
{
    fixture *f = *state;
    char busy[512];
    snprintf(busy, sizeof(busy),
             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             "retry-after-ms: 600\r\nRetry-After: 30\r\nConnection: close\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             sizeof(busy_body) - 1, busy_body);
    uint64_t ms = retry_with(f, busy);
    assert_true(ms >= 550);  /* the 600 ms were waited... */
    assert_true(ms < 15000); /* ...and the 30 s were not */
}

static void test_attempt_timeout_retried(void **state)
{
    fixture *f = *state;
    mock_reply slow = {.content = "too late", .ttft_ms = 1500};
    mock_reply quick = {.content = "in time"};
    mock_llm_push(f->mock, &slow);
    mock_llm_push(f->mock, &quick);
    sift_openai_opts o = {.base_url = mock_llm_base_url(f->mock),
                          .model = "mock-model",
                          .timeout_ms = 300,
                          .max_retries = 1,
                          .backoff_base_ms = 10};
    sift_err err = {0};
    sift_model_free(f->model);
    f->model = sift_openai_new(&f->loop, f->http, &o, &err);
    assert_non_null(f->model);
    run r;
    run_init(&r, f, 20000);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.tokens.data, "in time");
    assert_int_equal(mock_llm_requests(f->mock), 2);
    run_free(&r);
}

static void on_free_timer(uv_timer_t *t)
{
    run *r = t->data;
    r->in_cancel = 1; /* on_done must not run inside sift_model_free either */
    sift_model_free(r->f->model);
    r->f->model = NULL;
    r->in_cancel = 0;
}

/* Frees the model 200 ms into a generation that is streaming (mid == 1) or
 * waiting to retry (mid == 0). */
static void free_model_during(fixture *f, int mid)
{
    mock_reply slow = {.content = "a b c d e f g h i j k l m n o p q r s t u v w x y z",
                       .token_delay_ms = 30};
    mock_reply busy = {.status = 429, .error_message = "Rate limit reached", .retry_after_s = 3};
    mock_llm_push(f->mock, mid ? &slow : &busy);
    run r;
    run_init(&r, f, 20000);
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = &r;
    uv_timer_start(&t, on_free_timer, 200, 0);
    sift_chat_request q = stream_req(true);
    generate(f, &r, &q);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_contains(r.err.msg, "the model was closed");
    assert_int_equal(r.done_in_cancel, 0);
    assert_true(r.t_done - r.t0 < 2500);
    assert_int_equal(mock_llm_requests(f->mock), 1);
    if (mid)
        assert_true(r.token_calls >= 1);
    assert_null(f->model);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    run_free(&r);
}

static void test_free_model_mid_stream(void **state)
{
    free_model_during(*state, 1);
}

static void test_free_model_during_backoff(void **state)
{
    free_model_during(*state, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_parallel_tool_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_built_when_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_twice_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_stops_at_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_finish_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_after_tokens_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_before_tokens_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_model_in_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_key_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_answered_with_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_http_date, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_ms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_timeout_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_model_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_model_during_backoff, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
