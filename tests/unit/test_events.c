/* Run events: JSON per type, and the bounded queue to a slow consumer. */
#include <setjmp.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>

#include "sift/arena.h"
#include "sift/events.h"

static cJSON *encode(const sift_event *ev)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_event_json(ev, "r-1", 7, &b), 0);
    cJSON *j = cJSON_Parse(b.data);
    if (!j)
        fail_msg("not JSON: %s", b.data);
    sift_buf_free(&b);
    assert_string_equal(cJSON_GetObjectItem(j, "run_id")->valuestring, "r-1");
    assert_int_equal(cJSON_GetObjectItem(j, "seq")->valueint, 7);
    return j;
}

static const char *s(cJSON *j, const char *k)
{
    cJSON *v = cJSON_GetObjectItem(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_json_per_type(void **state)
{
    sift_event ev = {.type = SIFT_EV_RUN_STARTED,
                     .query = "nike \"42\"",
                     .session_id = NULL,
                     .model = "sift-offline-rules"};
    cJSON *j = encode(&ev);
    assert_string_equal(s(j, "query"), "nike \"42\"");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "session_id")));
    cJSON_Delete(j);

    ev = (sift_event){.type = SIFT_EV_TOKEN, .text = "Hel\nlo", .text_len = 6};
    j = encode(&ev);
    assert_string_equal(s(j, "text"), "Hel\nlo");
    cJSON_Delete(j);

    const char args[] = "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}";
    ev = (sift_event){.type = SIFT_EV_TOOL_STARTED,
                      .id = "call_1",
                      .name = "check_inventory",
                      .json = args,
                      .json_len = sizeof args - 1};
    j = encode(&ev);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "arguments"), "location")->valuestring, "HAN");
    cJSON_Delete(j);

    /* arguments the model botched are passed on as a string */
    ev.json = "{\"sku\":";
    ev.json_len = 7;
    j = encode(&ev);
    assert_string_equal(s(j, "arguments"), "{\"sku\":");
    cJSON_Delete(j);
    /* a value followed by more text is not JSON either */
    ev.json = "12 \"units\" left";
    ev.json_len = strlen(ev.json);
    j = encode(&ev);
    assert_string_equal(s(j, "arguments"), "12 \"units\" left");
    cJSON_Delete(j);

    ev = (sift_event){.type = SIFT_EV_TOOL_FINISHED,
                      .id = "call_1",
                      .name = "get_price",
                      .duration_us = 21500,
                      .code = SIFT_ETIMEDOUT,
                      .message = "get_price timed out after 200 ms"};
    j = encode(&ev);
    assert_true(cJSON_GetObjectItem(j, "duration_ms")->valuedouble == 21.5);
    cJSON *e = cJSON_GetObjectItem(j, "error");
    assert_string_equal(s(e, "code"), "deadline_exceeded");
    assert_string_equal(s(e, "message"), "get_price timed out after 200 ms");
    cJSON_Delete(j);
    ev.code = 0;
    j = encode(&ev);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "error")));
    cJSON_Delete(j);

    ev = (sift_event){.type = SIFT_EV_PRODUCTS, .json = "[{\"sku\":\"A\"}]", .json_len = 13};
    j = encode(&ev);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "products")));
    cJSON_Delete(j);

    sift_usage u = {10, 20, 30};
    sift_run_timings t = {100, 50, 80, 20};
    ev = (sift_event){.type = SIFT_EV_RUN_FINISHED, .steps = 3, .usage = &u, .timings = &t};
    j = encode(&ev);
    assert_int_equal(cJSON_GetObjectItem(j, "steps")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valueint,
                     30);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "timings"), "ttft_ms")->valueint,
                     50);
    cJSON_Delete(j);

    ev = (sift_event){
        .type = SIFT_EV_ERROR, .code = SIFT_ETIMEDOUT, .message = "deadline of 30000 ms exceeded"};
    j = encode(&ev);
    assert_string_equal(s(j, "code"), "deadline_exceeded");
    cJSON_Delete(j);

    assert_string_equal(sift_event_name(SIFT_EV_TOOL_FINISHED), "tool.finished");
    assert_string_equal(sift_event_name((sift_event_type)99), "unknown");
}

/* A consumer that takes events until told to be busy or gone. */
struct consumer {
    int busy;
    int gone;
    int n;
    char names[64][16];
    sift_buf all;
};

/* tool.finished's duration_ms is written without printf: the same text as
 * "%.3f" of duration_us / 1000. */
static void test_duration_text(void **state)
{
    static const int64_t us[] = {0,      1,          999, 1000,  21500,     1818,         99999,
                                 100000, 1234567891, -1,  -1500, INT64_MAX, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        sift_event ev = {
            .type = SIFT_EV_TOOL_FINISHED, .id = "c", .name = "t", .duration_us = us[i]};
        sift_buf b;
        sift_buf_init(&b, 0);
        assert_int_equal(sift_event_json(&ev, "r", 1, &b), 0);
        char want[64];
        if (us[i] > -(INT64_C(1) << 53) && us[i] < (INT64_C(1) << 53))
            snprintf(want, sizeof want, "\"duration_ms\":%.3f,", (double)us[i] / 1000);
        else /* beyond a double's exact integers: the exact decimal */
            snprintf(want, sizeof want, "\"duration_ms\":%s%" PRIu64 ".%03u,", us[i] < 0 ? "-" : "",
                     (us[i] < 0 ? 0 - (uint64_t)us[i] : (uint64_t)us[i]) / 1000,
                     (unsigned)((us[i] < 0 ? 0 - (uint64_t)us[i] : (uint64_t)us[i]) % 1000));
        if (!strstr(b.data, want))
            fail_msg("%" PRId64 " us: %s, want %s", us[i], b.data, want);
        sift_buf_free(&b);
    }
}

/* run.finished is written without printf: the same text as the format it
 * replaced, for integers of every sign and doubles where "%.3f" rounds
 * (ties included), over many values. */
static void check_finished(int steps, int64_t tok, double ms)
{
    sift_usage u = {tok, -tok, INT64_MIN};
    sift_run_timings t = {ms, ms / 7, ms * 3, -ms};
    sift_event ev = {.type = SIFT_EV_RUN_FINISHED, .steps = steps, .usage = &u, .timings = &t};
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_event_json(&ev, "r", 1, &b), 0);
    char want[512];
    snprintf(want, sizeof want,
             "{\"run_id\":\"r\",\"seq\":1,\"steps\":%d,\"usage\":{\"prompt_tokens\":%" PRId64
             ",\"completion_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64
             "},\"timings\":{\"total_ms\":%.3f,\"ttft_ms\":%.3f,\"model_ms\":%.3f,"
             "\"tools_ms\":%.3f}}",
             steps, u.prompt_tokens, u.completion_tokens, u.total_tokens, t.total_ms, t.ttft_ms,
             t.model_ms, t.tools_ms);
    if (strcmp(b.data, want) != 0)
        fail_msg("%.17g ms: %s, want %s", ms, b.data, want);
    sift_buf_free(&b);
}

static void test_finished_text(void **state)
{
    static const double ms[] = {0,        -0.0,   0.0005,           0.0015, 0.0625, 0.1875,
                                1.0625,   2.5e-3, 4.9e-324,         1e-310, 0.9995, 999.9995,
                                120.4567, 1e11,   9.99999999999e11, 1e12,   1e15,   123456789.0625};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        check_finished((int)i - 3, (int64_t)i * 1000003, ms[i]);
    check_finished(INT32_MIN, INT64_MAX, 1.0 / 0.0);
    /* nanosecond counts as the agent makes them, and arbitrary bit patterns */
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check_finished(i, (int64_t)x, (double)(x % 100000000000u) / 1e6);
        double d;
        uint64_t bits = x >> 2; /* positive, finite, up to ~1e77 */
        memcpy(&d, &bits, sizeof d);
        check_finished(i, -(int64_t)(x >> 1), d);
        /* exact ties: (2n + 1) / 2000 is dyadic when 125 divides 2n + 1 */
        check_finished(i, 0, (double)(125 * (2 * (x % 1000000) + 1)) / 2000);
    }
}

static int take(void *ud, const char *name, const char *json, size_t len)
{
    struct consumer *c = ud;
    if (c->gone)
        return SIFT_ECANCELED;
    if (c->busy)
        return SIFT_EBUSY;
    cJSON *j = cJSON_ParseWithLength(json, len);
    assert_non_null(j);
    cJSON_Delete(j);
    snprintf(c->names[c->n++ % 64], 16, "%s", name);
    sift_buf_append(&c->all, json, len);
    sift_buf_putc(&c->all, '\n');
    return 0;
}

static void push_token(sift_event_queue *q, const char *t, int expect)
{
    sift_event ev = {.type = SIFT_EV_TOKEN, .text = t, .text_len = strlen(t)};
    assert_int_equal(sift_event_queue_push(q, &ev), expect);
}

static void test_queue_merges_tokens_for_a_slow_reader(void **state)
{
    struct consumer c = {0};
    sift_buf_init(&c.all, 0);
    sift_event_queue q;
    sift_event_queue_init(&q, "r-2", 4096, take, &c);
    sift_event started = {.type = SIFT_EV_RUN_STARTED, .query = "q"};
    assert_int_equal(sift_event_queue_push(&q, &started), 0);
    push_token(&q, "a ", 0);
    assert_int_equal(c.n, 2); /* written straight through */
    assert_int_equal(sift_event_queue_pending(&q), 0);

    c.busy = 1;
    for (int i = 0; i < 500; i++)
        push_token(&q, "w ", 0);
    sift_event tool = {
        .type = SIFT_EV_TOOL_STARTED, .id = "c1", .name = "t", .json = "{}", .json_len = 2};
    assert_int_equal(sift_event_queue_push(&q, &tool), 0);
    push_token(&q, "x", 0);
    assert_int_equal(sift_event_queue_pending(&q) >= 1001, 1);
    assert_int_equal(c.n, 2);

    c.busy = 0;
    assert_int_equal(sift_event_queue_flush(&q), 0);
    assert_int_equal(c.n, 5); /* one merged token, the tool, one token */
    assert_string_equal(c.names[2], "token");
    assert_string_equal(c.names[3], "tool.started");
    assert_string_equal(c.names[4], "token");
    assert_int_equal(sift_event_queue_pending(&q), 0);
    /* the merged token holds all 500 words, and seq numbers still increase */
    const char *third = strstr(c.all.data, "\"seq\":3");
    assert_non_null(third);
    assert_non_null(strstr(c.all.data, "\"seq\":4"));
    assert_non_null(strstr(c.all.data, "\"seq\":5"));
    sift_event_queue_free(&q);
    sift_buf_free(&c.all);
}

static void test_queue_is_bounded(void **state)
{
    struct consumer c = {.busy = 1};
    sift_buf_init(&c.all, 0);
    sift_event_queue q;
    sift_event_queue_init(&q, "r-3", 1000, take, &c);
    int i = 0;
    char word[32];
    for (;; i++) {
        snprintf(word, sizeof word, "word%d ", i);
        sift_event ev = {.type = SIFT_EV_TOKEN, .text = word, .text_len = strlen(word)};
        int rc = sift_event_queue_push(&q, &ev);
        if (rc) {
            assert_int_equal(rc, SIFT_ETOOBIG);
            break;
        }
    }
    assert_true(i > 50);
    assert_true(sift_event_queue_pending(&q) <= 1000);
    assert_true(q.peak <= 1000);
    /* a structural event does not fit either */
    sift_event err = {.type = SIFT_EV_ERROR, .code = SIFT_ECANCELED, .message = "x"};
    sift_event_queue_push(&q, &err);
    assert_true(sift_event_queue_pending(&q) <= 1000);
    sift_event_queue_free(&q);
    sift_buf_free(&c.all);
}

static void test_consumer_gone(void **state)
{
    struct consumer c = {0};
    sift_buf_init(&c.all, 0);
    sift_event_queue q;
    sift_event_queue_init(&q, "r-4", 0, take, &c);
    c.busy = 1;
    push_token(&q, "a", 0);
    c.busy = 0;
    c.gone = 1;
    assert_int_equal(sift_event_queue_flush(&q), SIFT_ECANCELED);
    push_token(&q, "b", SIFT_ECANCELED);
    sift_event_queue_free(&q);
    sift_buf_free(&c.all);
}

static void test_oom(void **state)
{
    for (long n = 0; n < 20; n++) {
        struct consumer c = {.busy = 1};
        sift_buf_init(&c.all, 0);
        sift_event_queue q;
        sift_event_queue_init(&q, "r", 0, take, &c);
        sift_mem_fail_after(n);
        for (int i = 0; i < 5; i++) {
            sift_event ev = {.type = SIFT_EV_ANSWER, .text = "answer", .text_len = 6};
            int rc = sift_event_queue_push(&q, &ev);
            assert_true(rc == 0 || rc == SIFT_ENOMEM);
            sift_event tok = {.type = SIFT_EV_TOKEN, .text = "t", .text_len = 1};
            rc = sift_event_queue_push(&q, &tok);
            assert_true(rc == 0 || rc == SIFT_ENOMEM);
        }
        sift_mem_fail_after(-1);
        sift_event_queue_free(&q);
        sift_buf_free(&c.all);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_per_type),
        cmocka_unit_test(test_duration_text),
        cmocka_unit_test(test_finished_text),
        cmocka_unit_test(test_queue_merges_tokens_for_a_slow_reader),
        cmocka_unit_test(test_queue_is_bounded),
        cmocka_unit_test(test_consumer_gone),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
