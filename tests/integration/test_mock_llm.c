/* The mock LLM (tests/support/mock_llm.h) driven by plain libcurl easy
 * handles: each scripted behaviour must produce exactly what it claims, in
 * OpenAI's chat.completion.chunk format. Timing is only checked as a lower
 * bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mock_llm.h"
#include "sift/buf.h"

/* ---- a client ---- */

typedef struct resp {
    long status;
    CURLcode rc;
    double ms;
    sift_buf body;
    char retry_after[32];
    char ctype[64];
    int stop_after_events; /* > 0: hang up once this many events have arrived */
} resp;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int count_events(const sift_buf *b)
{
    int n = 0;
    for (const char *p = b->data; p && (p = strstr(p, "\n\n")) != NULL; p += 2)
        n++;
    return n;
}

static size_t on_body(char *data, size_t size, size_t n, void *udata)
{
    resp *r = udata;
    sift_buf_append(&r->body, data, size * n);
    if (r->stop_after_events > 0 && count_events(&r->body) >= r->stop_after_events)
        return 0; /* curl aborts the transfer and closes the connection */
    return size * n;
}

static void copy_value(char *out, size_t n, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t i = (size_t)(colon - line) + 1;
    while (i < len && line[i] == ' ')
        i++;
    size_t end = len;
    while (end > i && (line[end - 1] == '\r' || line[end - 1] == '\n'))
        end--;
    snprintf(out, n, "%.*s", (int)(end - i), line + i);
}

static size_t on_header(char *line, size_t size, size_t n, void *udata)
{
    resp *r = udata;
    size_t len = size * n;
    if (len > 12 && strncasecmp(line, "retry-after:", 12) == 0)
        copy_value(r->retry_after, sizeof(r->retry_after), line, len);
    if (len > 13 && strncasecmp(line, "content-type:", 13) == 0)
        copy_value(r->ctype, sizeof(r->ctype), line, len);
    return len;
}

/* POST `body` (GET when NULL) to base_url + path. */
static void do_request(mock_llm *m, const char *path, const char *body, resp *r, long timeout_ms)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", mock_llm_base_url(m), path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    double t0 = now_ms();
    r->rc = curl_easy_perform(c);
    r->ms = now_ms() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void resp_init(resp *r)
{
    memset(r, 0, sizeof(*r));
    sift_buf_init(&r->body, 0);
}

/* ---- reading the stream ---- */

#define MAX_EVENTS 20000

typedef struct events {
    int n;
    char **data; /* payload of each `data:` event */
} events;

/* Splits an SSE body made only of "data: <payload>\n\n" frames. A trailing
 * partial frame (a cut stream) is ignored. */
static void split_events(const sift_buf *b, events *ev)
{
    ev->n = 0;
    ev->data = calloc(MAX_EVENTS, sizeof(char *));
    const char *p = b->data ? b->data : "";
    const char *end;
    while ((end = strstr(p, "\n\n")) != NULL) {
        assert_true(ev->n < MAX_EVENTS);
        assert_memory_equal(p, "data: ", 6);
        assert_null(memchr(p + 6, '\n', (size_t)(end - p - 6)));
        ev->data[ev->n++] = strndup(p + 6, (size_t)(end - p - 6));
        p = end + 2;
    }
}

static void events_free(events *ev)
{
    for (int i = 0; i < ev->n; i++)
        free(ev->data[i]);
    free(ev->data);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Parses chunk i and checks the members every chunk has. */
static cJSON *chunk(const events *ev, int i, const char *model)
{
    assert_true(i < ev->n);
    cJSON *c = cJSON_Parse(ev->data[i]);
    assert_non_null(c);
    assert_non_null(str(c, "id"));
    assert_memory_equal(str(c, "id"), "chatcmpl-", 9);
    assert_string_equal(str(c, "object"), "chat.completion.chunk");
    assert_true(cJSON_IsNumber(get(c, "created")));
    assert_string_equal(str(c, "model"), model);
    assert_true(cJSON_IsArray(get(c, "choices")));
    return c;
}

/* choices[0].delta of a chunk, checking index 0. */
static const cJSON *delta(const cJSON *c)
{
    const cJSON *ch = cJSON_GetArrayItem(get(c, "choices"), 0);
    assert_non_null(ch);
    assert_int_equal(get(ch, "index")->valueint, 0);
    assert_true(get(ch, "finish_reason") != NULL);
    return get(ch, "delta");
}

static const char *finish(const cJSON *c)
{
    const cJSON *ch = cJSON_GetArrayItem(get(c, "choices"), 0);
    return str(ch, "finish_reason");
}

/* Tool-call delta number 0 of a chunk, or NULL. */
static const cJSON *tool_delta(const cJSON *c)
{
    return cJSON_GetArrayItem(get(delta(c), "tool_calls"), 0);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    sift_err err = {0};
    mock_llm *m = mock_llm_start(2, &err);
    if (m == NULL)
        fprintf(stderr, "mock_llm_start: %s\n", err.msg);
    assert_non_null(m);
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    mock_llm_stop(*state);
    return 0;
}

static const char REQ_STREAM_USAGE[] =
    "{\"model\":\"gpt-test\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char REQ_STREAM[] = "{\"model\":\"gpt-test\",\"stream\":true,\"messages\":[{\"role\":"
                                 "\"user\",\"content\":\"hi\"}]}";
static const char REQ_PLAIN[] =
    "{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* ---- tests ---- */

static void test_stream_content_and_usage(void **state)
{
    mock_llm *m = *state;
    const char *text = "Hello brave  new\nworld. ";
    mock_llm_push(m, &(mock_reply){.content = text, .completion_tokens = 0});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM_USAGE, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/event-stream");
    events ev;
    split_events(&r.body, &ev);
    /* role, 4 words, finish, usage, [DONE] */
    assert_int_equal(ev.n, 8);
    cJSON *c = chunk(&ev, 0, "gpt-test");
    assert_string_equal(str(delta(c), "role"), "assistant");
    assert_string_equal(str(delta(c), "content"), "");
    assert_null(finish(c));
    assert_true(cJSON_IsNull(get(c, "usage")));
    cJSON_Delete(c);
    sift_buf all;
    sift_buf_init(&all, 0);
    for (int i = 1; i <= 4; i++) {
        c = chunk(&ev, i, "gpt-test");
        assert_null(get(delta(c), "role"));
        assert_non_null(str(delta(c), "content"));
        sift_buf_puts(&all, str(delta(c), "content"));
        assert_null(finish(c));
        assert_true(cJSON_IsNull(get(c, "usage")));
        cJSON_Delete(c);
    }
    assert_string_equal(all.data, text); /* one word per chunk, nothing lost */
    sift_buf_free(&all);
    c = chunk(&ev, 5, "gpt-test");
    assert_string_equal(finish(c), "stop");
    assert_true(cJSON_IsObject(delta(c)));
    assert_null(delta(c)->child); /* delta {} */
    cJSON_Delete(c);
    c = chunk(&ev, 6, "gpt-test");
    assert_int_equal(cJSON_GetArraySize(get(c, "choices")), 0);
    const cJSON *u = get(c, "usage");
    assert_int_equal(get(u, "completion_tokens")->valueint, 4);
    assert_int_equal(get(u, "prompt_tokens")->valueint, (int)(strlen(REQ_STREAM_USAGE) / 4));
    assert_int_equal(get(u, "total_tokens")->valueint, 4 + (int)(strlen(REQ_STREAM_USAGE) / 4));
    cJSON_Delete(c);
    assert_string_equal(ev.data[7], "[DONE]");
    events_free(&ev);
    sift_buf_free(&r.body);

    /* the request was recorded as sent */
    int n = mock_llm_requests(m);
    assert_true(n >= 1);
    char *body = mock_llm_request_body(m, n - 1);
    assert_string_equal(body, REQ_STREAM_USAGE);
    free(body);
    assert_null(mock_llm_request_body(m, n));
    assert_null(mock_llm_request_body(m, -1));
}

static void test_stream_tool_calls(void **state)
{
    mock_llm *m = *state;
    const char *a0 = "{\"city\":\"Đà Nẵng\",\"days\":3}";
    const char *a1 = "{\"q\":\"shoes\"}";
    mock_tool_call calls[2] = {
        {.id = "call_a", .name = "weather", .arguments = a0, .fragments = 5},
        {.id = NULL, .name = "search", .arguments = a1, .fragments = 1},
    };
    mock_llm_push(m, &(mock_reply){.tool_calls = calls, .n_tool_calls = 2});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0); /* no include_usage */
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body.data, "\"usage\""));
    events ev;
    split_events(&r.body, &ev);
    /* head + 5 fragments, head + 1 fragment, finish, [DONE] */
    assert_int_equal(ev.n, 10);
    int heads[2] = {0, 6};
    int nfrag[2] = {5, 1};
    const char *args[2] = {a0, a1};
    for (int k = 0; k < 2; k++) {
        cJSON *c = chunk(&ev, heads[k], "gpt-test");
        const cJSON *d = delta(c);
        if (k == 0) {
            assert_string_equal(str(d, "role"), "assistant");
            assert_true(cJSON_IsNull(get(d, "content")));
        } else {
            assert_null(get(d, "role"));
        }
        const cJSON *t = tool_delta(c);
        assert_int_equal(get(t, "index")->valueint, k);
        assert_string_equal(str(t, "id"), k == 0 ? "call_a" : "call_mock_1");
        assert_string_equal(str(t, "type"), "function");
        assert_string_equal(str(get(t, "function"), "name"), k == 0 ? "weather" : "search");
        assert_string_equal(str(get(t, "function"), "arguments"), "");
        cJSON_Delete(c);
        sift_buf all;
        sift_buf_init(&all, 0);
        for (int j = 1; j <= nfrag[k]; j++) {
            c = chunk(&ev, heads[k] + j, "gpt-test");
            t = tool_delta(c);
            assert_int_equal(get(t, "index")->valueint, k);
            assert_null(get(t, "id"));
            assert_null(get(get(t, "function"), "name"));
            const char *piece = str(get(t, "function"), "arguments");
            assert_non_null(piece);
            assert_true(strlen(piece) > 0);
            sift_buf_puts(&all, piece);
            assert_null(finish(c));
            cJSON_Delete(c);
        }
        assert_string_equal(all.data, args[k]); /* UTF-8 survived the split */
        sift_buf_free(&all);
    }
    cJSON *c = chunk(&ev, 8, "gpt-test");
    assert_string_equal(finish(c), "tool_calls");
    cJSON_Delete(c);
    assert_string_equal(ev.data[9], "[DONE]");
    events_free(&ev);
    sift_buf_free(&r.body);
}

static void test_non_streaming(void **state)
{
    mock_llm *m = *state;
    mock_tool_call call = {.id = "call_x", .name = "get_price", .arguments = "{\"sku\":\"A\"}"};
    mock_llm_push(m, &(mock_reply){.content = "Let me check.",
                                   .tool_calls = &call,
                                   .n_tool_calls = 1,
                                   .prompt_tokens = 11,
                                   .completion_tokens = 7});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    cJSON *o = cJSON_Parse(r.body.data);
    assert_non_null(o);
    assert_string_equal(str(o, "object"), "chat.completion");
    assert_string_equal(str(o, "model"), "gpt-test");
    const cJSON *ch = cJSON_GetArrayItem(get(o, "choices"), 0);
    assert_string_equal(str(ch, "finish_reason"), "tool_calls");
    const cJSON *msg = get(ch, "message");
    assert_string_equal(str(msg, "role"), "assistant");
    assert_string_equal(str(msg, "content"), "Let me check.");
    const cJSON *tc = cJSON_GetArrayItem(get(msg, "tool_calls"), 0);
    assert_string_equal(str(tc, "id"), "call_x");
    assert_string_equal(str(tc, "type"), "function");
    assert_string_equal(str(get(tc, "function"), "name"), "get_price");
    assert_string_equal(str(get(tc, "function"), "arguments"), "{\"sku\":\"A\"}");
    assert_int_equal(get(get(o, "usage"), "prompt_tokens")->valueint, 11);
    assert_int_equal(get(get(o, "usage"), "total_tokens")->valueint, 18);
    cJSON_Delete(o);
    sift_buf_free(&r.body);

    /* malformed_at cuts the body, disconnect_after drops the connection */
    mock_llm_push(m, &(mock_reply){.content = "x", .malformed_at = 1});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_equal(r.status, 200);
    assert_true(r.body.len > 0);
    assert_null(cJSON_Parse(r.body.data));
    sift_buf_free(&r.body);
    mock_llm_push(m, &(mock_reply){.content = "x", .disconnect_after = 1});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_int_equal(r.body.len, 0);
    sift_buf_free(&r.body);
}

static void test_delays(void **state)
{
    mock_llm *m = *state;
    mock_llm_push(m,
                  &(mock_reply){.content = "one two three", .ttft_ms = 150, .token_delay_ms = 30});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    events ev;
    split_events(&r.body, &ev);
    assert_int_equal(ev.n, 6); /* role, 3 words, finish, [DONE] */
    assert_true(r.ms >= 150 + 5 * 30 - 5);
    events_free(&ev);
    sift_buf_free(&r.body);

    /* TTFT delays a whole reply, errors included */
    mock_llm_push(m, &(mock_reply){.content = "x", .ttft_ms = 120});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_equal(r.status, 200);
    assert_true(r.ms >= 115);
    sift_buf_free(&r.body);
    mock_llm_push(m, &(mock_reply){.status = 503, .ttft_ms = 120});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.status, 503);
    assert_true(r.ms >= 115);
    sift_buf_free(&r.body);
}

static void check_error_body(const resp *r, const char *type, const char *code, const char *message)
{
    assert_string_equal(r->ctype, "application/json");
    cJSON *o = cJSON_Parse(r->body.data);
    assert_non_null(o);
    const cJSON *e = get(o, "error");
    assert_string_equal(str(e, "type"), type);
    if (code)
        assert_string_equal(str(e, "code"), code);
    else
        assert_true(cJSON_IsNull(get(e, "code")));
    assert_true(cJSON_IsNull(get(e, "param")));
    if (message)
        assert_string_equal(str(e, "message"), message);
    else
        assert_true(strlen(str(e, "message")) > 0);
    cJSON_Delete(o);
}

static void test_http_errors(void **state)
{
    mock_llm *m = *state;
    mock_llm_push(m, &(mock_reply){.status = 429, .retry_after_s = 7});
    mock_llm_push(m, &(mock_reply){.status = 500, .error_message = "boom \"quoted\""});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "7");
    check_error_body(&r, "requests", "rate_limit_exceeded", NULL);
    sift_buf_free(&r.body);
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.retry_after, "");
    check_error_body(&r, "server_error", NULL, "boom \"quoted\"");
    sift_buf_free(&r.body);

    /* a body that is no chat request: 400, and the queue is not consumed */
    mock_llm_push(m, &(mock_reply){.content = "kept"});
    resp_init(&r);
    do_request(m, "/chat/completions", "{\"model\":", &r, 0);
    assert_int_equal(r.status, 400);
    check_error_body(&r, "invalid_request_error", NULL, NULL);
    sift_buf_free(&r.body);
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"content\":\"kept\""));
    sift_buf_free(&r.body);
}

static void test_malformed_and_omissions(void **state)
{
    mock_llm *m = *state;
    mock_llm_push(m, &(mock_reply){.content = "a b c", .malformed_at = 3});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    events ev;
    split_events(&r.body, &ev);
    assert_int_equal(ev.n, 6);
    for (int i = 0; i < 5; i++) {
        cJSON *c = cJSON_Parse(ev.data[i]);
        if (i == 2)
            assert_null(c); /* event 3 is broken */
        else
            assert_non_null(c);
        cJSON_Delete(c);
    }
    assert_string_equal(ev.data[5], "[DONE]");
    events_free(&ev);
    sift_buf_free(&r.body);

    mock_llm_push(m, &(mock_reply){.content = "a b", .omit_finish_reason = 1, .omit_done = 1});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    split_events(&r.body, &ev);
    assert_int_equal(ev.n, 3); /* role, a, b */
    for (int i = 0; i < ev.n; i++) {
        cJSON *c = chunk(&ev, i, "gpt-test");
        assert_null(finish(c));
        cJSON_Delete(c);
    }
    events_free(&ev);
    sift_buf_free(&r.body);

    /* usage = -1: no usage chunk even when asked */
    mock_llm_push(m, &(mock_reply){.content = "a", .usage = -1});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM_USAGE, &r, 0);
    split_events(&r.body, &ev);
    assert_int_equal(ev.n, 4); /* role, a, finish, [DONE] */
    assert_null(strstr(r.body.data, "\"usage\""));
    events_free(&ev);
    sift_buf_free(&r.body);
}

static int wait_disconnects(mock_llm *m, int want)
{
    double end = now_ms() + 10000;
    while (mock_llm_disconnects(m) < want) {
        if (now_ms() > end)
            return 0;
        usleep(5000);
    }
    return 1;
}

static void test_disconnects(void **state)
{
    mock_llm *m = *state;
    /* scripted: the server drops the connection after 3 events */
    mock_llm_push(m, &(mock_reply){.content = "w1 w2 w3 w4 w5 w6", .disconnect_after = 3});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_not_equal(r.rc, CURLE_OK); /* a truncated chunked response */
    assert_int_equal(r.status, 200);
    events ev;
    split_events(&r.body, &ev);
    assert_int_equal(ev.n, 3);
    assert_null(strstr(r.body.data, "[DONE]"));
    events_free(&ev);
    sift_buf_free(&r.body);
    assert_int_equal(mock_llm_disconnects(m), 0); /* the server's doing, not the client's */

    /* the client goes away during TTFT */
    mock_llm_push(m, &(mock_reply){.content = "late", .ttft_ms = 10000});
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 200);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    sift_buf_free(&r.body);
    assert_true(wait_disconnects(m, 1));

    /* ... and mid-stream, between two delayed chunks */
    mock_llm_push(m, &(mock_reply){.content = "a b c d e f g h i j", .token_delay_ms = 100});
    resp_init(&r);
    r.stop_after_events = 2;
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.rc, CURLE_WRITE_ERROR);
    sift_buf_free(&r.body);
    assert_true(wait_disconnects(m, 2));
}

static void test_backpressure(void **state)
{
    mock_llm *m = *state;
    /* far more than the server's per-stream buffer, written with no delay */
    sift_buf text;
    sift_buf_init(&text, 0);
    for (int i = 0; i < 6000; i++)
        sift_buf_printf(&text, "%sword%d", i ? " " : "", i);
    mock_llm_push(m, &(mock_reply){.content = text.data});
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_STREAM, &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    events ev;
    split_events(&r.body, &ev);
    assert_int_equal(ev.n, 6000 + 3);
    sift_buf all;
    sift_buf_init(&all, 0);
    for (int i = 1; i <= 6000; i++) {
        cJSON *c = cJSON_Parse(ev.data[i]);
        sift_buf_puts(&all, str(delta(c), "content"));
        cJSON_Delete(c);
    }
    assert_string_equal(all.data, text.data);
    sift_buf_free(&all);
    events_free(&ev);
    sift_buf_free(&r.body);
    sift_buf_free(&text);
}

static void test_default_and_responder(void **state)
{
    mock_llm *m = *state;
    resp r;
    /* nothing scripted: an empty "stop" reply */
    resp_init(&r);
    do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"content\":\"\""));
    sift_buf_free(&r.body);

    mock_llm_set_default(m, &(mock_reply){.content = "default"});
    mock_llm_push(m, &(mock_reply){.content = "queued"});
    const char *want[3] = {"queued", "default", "default"};
    for (int i = 0; i < 3; i++) {
        resp_init(&r);
        do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
        cJSON *o = cJSON_Parse(r.body.data);
        const cJSON *msg = get(cJSON_GetArrayItem(get(o, "choices"), 0), "message");
        assert_string_equal(str(msg, "content"), want[i]);
        cJSON_Delete(o);
        sift_buf_free(&r.body);
    }
    mock_llm_set_default(m, NULL);
}

static void test_seed_responder(void **state)
{
    mock_llm *m = *state;
    mock_llm_set_responder(m, mock_llm_seed_responder, NULL);
    resp r;
    resp_init(&r);
    do_request(m, "/chat/completions",
               "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\","
               "\"content\":\"Do you have Pegasus 40 in 42?\"}]}",
               &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    assert_true(r.ms >= 45); /* default TTFT 50 ms */
    events ev;
    split_events(&r.body, &ev);
    const char *locs[3] = {"HAN", "DAD", "SGN"};
    int call = -1, frags[3] = {0};
    sift_buf args[3];
    for (int k = 0; k < 3; k++)
        sift_buf_init(&args[k], 0);
    for (int i = 0; i < ev.n - 2; i++) {
        cJSON *c = chunk(&ev, i, "m");
        const cJSON *t = tool_delta(c);
        assert_non_null(t);
        int idx = get(t, "index")->valueint;
        if (str(t, "id")) {
            assert_int_equal(idx, call + 1);
            call = idx;
            assert_string_equal(str(get(t, "function"), "name"), "check_inventory");
        } else {
            assert_int_equal(idx, call);
            frags[idx]++;
            sift_buf_puts(&args[idx], str(get(t, "function"), "arguments"));
        }
        cJSON_Delete(c);
    }
    assert_int_equal(call, 2);
    for (int k = 0; k < 3; k++) {
        assert_true(frags[k] >= 3 && frags[k] <= 4);
        cJSON *a = cJSON_Parse(args[k].data);
        assert_string_equal(str(a, "sku"), "NIKE-PEG40-42");
        assert_string_equal(str(a, "location"), locs[k]);
        cJSON_Delete(a);
        sift_buf_free(&args[k]);
    }
    cJSON *c = chunk(&ev, ev.n - 2, "m");
    assert_string_equal(finish(c), "tool_calls");
    cJSON_Delete(c);
    events_free(&ev);
    sift_buf_free(&r.body);

    /* the tool results come back: the answer, one word per chunk */
    mock_seed_opts fast = {.ttft_ms = 0, .token_delay_ms = 0};
    mock_llm_set_responder(m, mock_llm_seed_responder, &fast);
    resp_init(&r);
    do_request(
        m, "/chat/completions",
        "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_inv_HAN\","
        "\"type\":\"function\",\"function\":{\"name\":\"check_inventory\",\"arguments\":"
        "\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_inv_HAN\",\"content\":\"3\"}]}",
        &r, 0);
    assert_int_equal(r.rc, CURLE_OK);
    split_events(&r.body, &ev);
    int words = ev.n - 3; /* role, finish, [DONE] */
    assert_true(words >= 55 && words <= 65);
    sift_buf all;
    sift_buf_init(&all, 0);
    for (int i = 1; i <= words; i++) {
        c = chunk(&ev, i, "m");
        sift_buf_puts(&all, str(delta(c), "content"));
        cJSON_Delete(c);
    }
    assert_string_equal(all.data, mock_llm_seed_answer);
    c = chunk(&ev, ev.n - 2, "m");
    assert_string_equal(finish(c), "stop");
    cJSON_Delete(c);
    sift_buf_free(&all);
    events_free(&ev);
    sift_buf_free(&r.body);
    mock_llm_set_responder(m, NULL, NULL);
}

static void test_models_stats_404(void **state)
{
    mock_llm *m = *state;
    resp r;
    resp_init(&r);
    do_request(m, "/models", NULL, &r, 0);
    assert_int_equal(r.status, 200);
    cJSON *o = cJSON_Parse(r.body.data);
    assert_string_equal(str(o, "object"), "list");
    assert_string_equal(str(cJSON_GetArrayItem(get(o, "data"), 0), "id"), "mock");
    cJSON_Delete(o);
    sift_buf_free(&r.body);
    resp_init(&r);
    do_request(m, "/embeddings", "{}", &r, 0);
    assert_int_equal(r.status, 404);
    sift_buf_free(&r.body);

    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/stats", mock_llm_port(m));
    resp_init(&r);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    o = cJSON_Parse(r.body.data);
    assert_non_null(o);
    assert_int_equal(get(o, "requests")->valueint, mock_llm_requests(m));
    assert_true(get(o, "cpu_user_us")->valuedouble + get(o, "cpu_sys_us")->valuedouble > 0);
    cJSON_Delete(o);
    sift_buf_free(&r.body);
}

/* Several threads at once on two workers, replies from the queue and the
 * default: every request gets exactly one complete reply. */
struct client_job {
    mock_llm *m;
    int ok;
};

static void *client_thread(void *arg)
{
    struct client_job *job = arg;
    mock_llm *m = job->m;
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        resp r;
        resp_init(&r);
        do_request(m, "/chat/completions", REQ_STREAM_USAGE, &r, 0);
        if (r.rc == CURLE_OK && r.status == 200 && r.body.data &&
            strstr(r.body.data, "data: [DONE]\n\n") != NULL)
            ok++;
        sift_buf_free(&r.body);
    }
    job->ok = ok;
    return NULL;
}

static void test_concurrent(void **state)
{
    mock_llm *m = *state;
    mock_llm_set_default(m, &(mock_reply){.content = "from the default", .token_delay_ms = 1});
    for (int i = 0; i < 20; i++)
        mock_llm_push(m, &(mock_reply){.content = "from the queue"});
    int before = mock_llm_requests(m);
    pthread_t t[6];
    struct client_job jobs[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (struct client_job){.m = m};
        pthread_create(&t[i], NULL, client_thread, &jobs[i]);
    }
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
    }
    assert_int_equal(ok, 60);
    assert_int_equal(mock_llm_requests(m) - before, 60);
    mock_llm_set_default(m, NULL);

    /* only the last 64 bodies are kept */
    while (mock_llm_requests(m) < 66) {
        resp r;
        resp_init(&r);
        do_request(m, "/chat/completions", REQ_PLAIN, &r, 0);
        sift_buf_free(&r.body);
    }
    int n = mock_llm_requests(m);
    assert_null(mock_llm_request_body(m, n - 65));
    char *b = mock_llm_request_body(m, n - 64);
    assert_non_null(b);
    free(b);
    b = mock_llm_request_body(m, n - 1);
    assert_string_equal(b, REQ_PLAIN);
    free(b);
}

/* Stopping with a reply still waiting out its TTFT finishes it cleanly (no
 * leak, no hang); it is not counted as a client disconnect. */
static void *slow_client(void *arg)
{
    resp r;
    resp_init(&r);
    do_request(arg, "/chat/completions", REQ_STREAM, &r, 0);
    sift_buf_free(&r.body);
    return NULL;
}

static void test_stop_in_flight(void **state)
{
    sift_err err = {0};
    mock_llm *m = mock_llm_start(1, &err);
    assert_non_null(m);
    mock_llm_push(m, &(mock_reply){.content = "never", .ttft_ms = 60000});
    pthread_t t;
    pthread_create(&t, NULL, slow_client, m);
    double end = now_ms() + 10000;
    while (mock_llm_requests(m) < 1 && now_ms() < end)
        usleep(2000);
    assert_int_equal(mock_llm_requests(m), 1);
    double t0 = now_ms();
    mock_llm_stop(m);
    assert_true(now_ms() - t0 < 10000);
    pthread_join(t, NULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_content_and_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_tool_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_and_omissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_and_responder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_responder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models_stats_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test(test_stop_in_flight),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
