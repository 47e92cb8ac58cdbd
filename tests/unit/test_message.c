/* Messages, the chat-completions request serialiser, and the response and
 * error body parsers. Every serialised request is parsed back with cJSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"
#include "sift/model.h"

static const char *const inventory_tool =
    "{\"type\":\"function\",\"function\":{\"name\":\"check_inventory\",\"description\":\"Stock "
    "of one SKU at one store\",\"parameters\":{\"type\":\"object\",\"properties\":{\"sku\":{"
    "\"type\":\"string\"},\"location\":{\"type\":\"string\",\"enum\":[\"HAN\",\"DAD\",\"SGN\"]}},"
    "\"required\":[\"sku\",\"location\"],\"additionalProperties\":false},\"strict\":true}}";
static const char *const price_tool =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_price\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"sku\":{\"type\":\"string\"}},\"required\":[\"sku\"]}}}";

/* Checks that s[0..n) is valid UTF-8 (what a strict JSON reader demands). */
static int valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t need;
        unsigned min;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1, min = 0x80, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, min = 0x800, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + need >= n)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Serialises r, checks the result is one valid JSON document in valid UTF-8,
 * and returns it parsed. */
static cJSON *roundtrip(const sift_chat_request *r)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_err err = {0};
    int rc = sift_chat_request_json(r, &b, &err);
    if (rc)
        fail_msg("serialise: %s", err.msg);
    assert_true(valid_utf8(b.data, b.len));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(b.data, &end, 1);
    if (!j)
        fail_msg("not JSON: %s", b.data);
    assert_int_equal(strlen(b.data), b.len);
    sift_buf_free(&b);
    return j;
}

static const char *str_at(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* ---- conversation ------------------------------------------------------- */

static void test_conv(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(256);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    char text[32];
    snprintf(text, sizeof(text), "%s", "Find running shoes");
    assert_int_equal(sift_conv_add_system(&c, "You are a shop assistant.", &err), 0);
    assert_int_equal(sift_conv_add_user(&c, text, &err), 0);
    char args[64];
    snprintf(args, sizeof(args), "%s", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}");
    sift_tool_call call = {.id = "call_1",
                           .name = "check_inventory",
                           .arguments = args,
                           .arguments_len = strlen(args)};
    assert_int_equal(sift_conv_add_assistant(&c, NULL, &call, 1, &err), 0);
    assert_int_equal(sift_conv_add_tool_result(&c, "call_1", "{\"in_stock\":3}", &err), 0);
    /* Many more turns, past the first growth steps. */
    for (int i = 0; i < 40; i++)
        assert_int_equal(sift_conv_add_user(&c, "more", &err), 0);
    assert_int_equal(c.len, 44);

    /* Appending copied the text: changing the caller's buffers changes nothing. */
    memset(text, 'x', sizeof(text) - 1);
    memset(args, 'y', sizeof(args) - 1);
    assert_string_equal(c.msgs[1].content, "Find running shoes");
    assert_int_equal(c.msgs[2].role, SIFT_ROLE_ASSISTANT);
    assert_null(c.msgs[2].content);
    assert_string_equal(c.msgs[2].tool_calls[0].arguments,
                        "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}");
    assert_string_equal(c.msgs[3].tool_call_id, "call_1");

    /* Content with NUL bytes inside keeps its length. */
    sift_message m = {.role = SIFT_ROLE_USER, .content = "a\0b", .content_len = 3};
    assert_int_equal(sift_conv_append(&c, &m, &err), 0);
    assert_int_equal(c.msgs[44].content_len, 3);
    assert_memory_equal(c.msgs[44].content, "a\0b", 3);
    sift_arena_free(a);
}

static void test_conv_invalid(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    assert_int_equal(sift_conv_add_tool_result(&c, NULL, "x", &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "messages[0]: tool result without tool_call_id");
    assert_int_equal(sift_conv_add_user(&c, NULL, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "messages[0]: user message without content");
    sift_tool_call call = {.id = "call_1", .name = "", .arguments = "{}", .arguments_len = 2};
    assert_int_equal(sift_conv_add_assistant(&c, NULL, &call, 1, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "messages[0].tool_calls[0]: name missing");
    sift_message m = {
        .role = SIFT_ROLE_USER, .content = "x", .tool_calls = &call, .n_tool_calls = 1};
    assert_int_equal(sift_conv_append(&c, &m, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "messages[0]: a user message cannot have tool calls");
    m = (sift_message){.role = (sift_role)9, .content = "x"};
    assert_int_equal(sift_conv_append(&c, &m, &err), SIFT_EINVAL);
    assert_int_equal(c.len, 0);
    sift_arena_free(a);
}

static void test_conv_oom(void **state)
{
    (void)state;
    int failed = 0, ok = 0;
    for (long k = 0; k < 100 && !ok; k++) {
        sift_arena *a = sift_arena_new(128);
        assert_non_null(a);
        sift_conv c;
        sift_conv_init(&c, a);
        sift_err err = {0};
        sift_tool_call call = {.id = "call_1",
                               .name = "get_price",
                               .arguments = "{\"sku\":\"NIKE-PEG40-42\"}",
                               .arguments_len = 22};
        sift_mem_fail_after(k);
        int rc = 0;
        for (int i = 0; i < 12 && !rc; i++)
            rc = sift_conv_add_assistant(&c, "Checking the price for you now.", &call, 1, &err);
        sift_mem_fail_after(-1);
        if (rc) {
            assert_int_equal(rc, SIFT_ENOMEM);
            failed++;
        } else {
            ok = 1;
            assert_int_equal(c.len, 12);
        }
        sift_arena_free(a);
    }
    assert_true(ok);
    assert_true(failed > 0);
}

/* ---- request ------------------------------------------------------------ */

static void test_request_roundtrip(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    assert_int_equal(sift_conv_add_system(&c, "You help shoppers.", &err), 0);
    assert_int_equal(sift_conv_add_user(&c, "Pegasus 40 size 42 in Hà Nội?", &err), 0);
    const char *args = "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}";
    sift_tool_call calls[2] = {
        {.id = "call_a",
         .name = "check_inventory",
         .arguments = args,
         .arguments_len = strlen(args)},
        {.id = "call_b",
         .name = "get_price",
         .arguments = "{\"sku\":\"NIKE-PEG40-42\"}",
         .arguments_len = 22},
    };
    assert_int_equal(sift_conv_add_assistant(&c, NULL, calls, 2, &err), 0);
    assert_int_equal(sift_conv_add_tool_result(&c, "call_a", "{\"HAN\":3}", &err), 0);
    assert_int_equal(sift_conv_add_tool_result(&c, "call_b", "{\"vnd\":3290000}", &err), 0);
    assert_int_equal(sift_conv_add_assistant(&c, "3 pairs in stock.", NULL, 0, &err), 0);

    const char *tools[2] = {inventory_tool, price_tool};
    sift_chat_request r = {.model = "gpt-4o-mini",
                           .messages = c.msgs,
                           .n_messages = c.len,
                           .tools = tools,
                           .n_tools = 2,
                           .tool_choice = SIFT_TOOL_CHOICE_AUTO,
                           .parallel_tool_calls = 1,
                           .stream = true,
                           .include_usage = true,
                           .has_temperature = true,
                           .temperature = 0.2,
                           .max_tokens = 512};
    cJSON *j = roundtrip(&r);
    assert_string_equal(str_at(j, "model"), "gpt-4o-mini");
    const cJSON *msgs = cJSON_GetObjectItem(j, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 6);
    const char *roles[] = {"system", "user", "assistant", "tool", "tool", "assistant"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(str_at(cJSON_GetArrayItem(msgs, i), "role"), roles[i]);
    assert_string_equal(str_at(cJSON_GetArrayItem(msgs, 1), "content"),
                        "Pegasus 40 size 42 in Hà Nội?");
    const cJSON *m2 = cJSON_GetArrayItem(msgs, 2);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(m2, "content")));
    const cJSON *tc = cJSON_GetObjectItem(m2, "tool_calls");
    assert_int_equal(cJSON_GetArraySize(tc), 2);
    const cJSON *tc0 = cJSON_GetArrayItem(tc, 0);
    assert_string_equal(str_at(tc0, "id"), "call_a");
    assert_string_equal(str_at(tc0, "type"), "function");
    const cJSON *fn = cJSON_GetObjectItem(tc0, "function");
    assert_string_equal(str_at(fn, "name"), "check_inventory");
    assert_string_equal(str_at(fn, "arguments"), args);
    assert_string_equal(str_at(cJSON_GetArrayItem(msgs, 4), "tool_call_id"), "call_b");
    assert_string_equal(str_at(cJSON_GetArrayItem(msgs, 4), "content"), "{\"vnd\":3290000}");
    assert_string_equal(str_at(cJSON_GetArrayItem(msgs, 5), "content"), "3 pairs in stock.");
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 5), "tool_calls"));

    /* The tools are inserted verbatim. */
    const cJSON *jt = cJSON_GetObjectItem(j, "tools");
    assert_int_equal(cJSON_GetArraySize(jt), 2);
    for (int i = 0; i < 2; i++) {
        cJSON *orig = cJSON_Parse(tools[i]);
        assert_true(cJSON_Compare(orig, cJSON_GetArrayItem(jt, i), 1));
        cJSON_Delete(orig);
    }
    assert_string_equal(str_at(j, "tool_choice"), "auto");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "parallel_tool_calls")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    assert_true(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"), "include_usage")));
    assert_true(cJSON_GetObjectItem(j, "temperature")->valuedouble == 0.2);
    assert_int_equal(cJSON_GetObjectItem(j, "max_tokens")->valueint, 512);
    cJSON_Delete(j);

    /* Specific function, parallel calls off. */
    r.tool_choice = SIFT_TOOL_CHOICE_FUNCTION;
    r.tool_choice_name = "get_price";
    r.parallel_tool_calls = -1;
    j = roundtrip(&r);
    const cJSON *choice = cJSON_GetObjectItem(j, "tool_choice");
    assert_string_equal(str_at(choice, "type"), "function");
    assert_string_equal(str_at(cJSON_GetObjectItem(choice, "function"), "name"), "get_price");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "parallel_tool_calls")));
    cJSON_Delete(j);

    const char *names[] = {NULL, "auto", "none", "required"};
    for (int k = SIFT_TOOL_CHOICE_NONE; k <= SIFT_TOOL_CHOICE_REQUIRED; k++) {
        r.tool_choice = (sift_tool_choice)k;
        j = roundtrip(&r);
        assert_string_equal(str_at(j, "tool_choice"), names[k]);
        cJSON_Delete(j);
    }
    sift_arena_free(a);
}

/* The tools array in one piece, as the tool registry builds it. */
static void test_request_tools_array(void **state)
{
    (void)state;
    sift_message m = {.role = SIFT_ROLE_USER, .content = "hi", .content_len = 2};
    char arr[2048];
    snprintf(arr, sizeof(arr), "[%s,%s]", inventory_tool, price_tool);
    sift_chat_request r = {.model = "m",
                           .messages = &m,
                           .n_messages = 1,
                           .tools_array = arr,
                           .tool_choice = SIFT_TOOL_CHOICE_FUNCTION,
                           .tool_choice_name = "get_price"};
    cJSON *j = roundtrip(&r);
    cJSON *orig = cJSON_Parse(arr);
    assert_true(cJSON_Compare(orig, cJSON_GetObjectItem(j, "tools"), 1));
    cJSON_Delete(orig);
    cJSON_Delete(j);

    /* Prechecked tools give the same request without the check. */
    sift_buf b1, b2;
    sift_buf_init(&b1, 0);
    sift_buf_init(&b2, 0);
    sift_err e1 = {0};
    assert_int_equal(sift_chat_request_json(&r, &b1, &e1), 0);
    r.tools_prechecked = true;
    assert_int_equal(sift_chat_request_json(&r, &b2, &e1), 0);
    assert_string_equal(b1.data, b2.data);
    r.tools_array = " [ ]";
    sift_buf_reset(&b2);
    assert_int_equal(sift_chat_request_json(&r, &b2, &e1), SIFT_EINVAL);
    assert_string_equal(e1.msg, "tool_choice: requires a tool but no tools are given");
    r.tools_prechecked = false;
    sift_buf_free(&b1);
    sift_buf_free(&b2);

    /* An empty array means no tools: no tools field, no tool options. */
    r.tools_array = " [ ] ";
    r.tool_choice = SIFT_TOOL_CHOICE_AUTO;
    r.parallel_tool_calls = 1;
    j = roundtrip(&r);
    assert_null(cJSON_GetObjectItem(j, "tools"));
    assert_null(cJSON_GetObjectItem(j, "tool_choice"));
    assert_null(cJSON_GetObjectItem(j, "parallel_tool_calls"));
    cJSON_Delete(j);

    sift_buf b;
    sift_buf_init(&b, 0);
    sift_err err = {0};
    r.tools_array = "[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},{\"type\":\"x\"}]";
    assert_int_equal(sift_chat_request_json(&r, &b, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tools[1].type: expected \"function\"");
    r.tools_array = "{}";
    assert_int_equal(sift_chat_request_json(&r, &b, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tools_array: expected a JSON array");
    r.tools_array = "[";
    assert_int_equal(sift_chat_request_json(&r, &b, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tools_array: invalid JSON at byte 1");
    const char *one[] = {price_tool};
    r.tools_array = arr;
    r.tools = one;
    r.n_tools = 1;
    assert_int_equal(sift_chat_request_json(&r, &b, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tools: give tools or tools_array, not both");
    r.tools_array = "[]";
    r.tools = NULL;
    r.n_tools = 0;
    r.tool_choice = SIFT_TOOL_CHOICE_REQUIRED;
    assert_int_equal(sift_chat_request_json(&r, &b, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tool_choice: requires a tool but no tools are given");
    assert_int_equal(b.len, 0);
    sift_buf_free(&b);
}

/* Unset options are left out, and tool options only go with tools. */
static void test_request_minimal(void **state)
{
    (void)state;
    sift_message m = {.role = SIFT_ROLE_USER, .content = "hi", .content_len = 2};
    sift_chat_request r = {.model = "m",
                           .messages = &m,
                           .n_messages = 1,
                           .tool_choice = SIFT_TOOL_CHOICE_AUTO,
                           .parallel_tool_calls = 1,
                           .include_usage = true};
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_err err = {0};
    assert_int_equal(sift_chat_request_json(&r, &b, &err), 0);
    assert_string_equal(b.data,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    sift_buf_free(&b);
}

static void test_request_invalid(void **state)
{
    (void)state;
    sift_message m = {.role = SIFT_ROLE_USER, .content = "hi", .content_len = 2};
    const char *bad_json[] = {"{\"type\":\"function\",\"function\":{\"name\":\"x\"}"};
    const char *not_fn[] = {"{\"type\":\"retrieval\"}"};
    const char *no_name[] = {"{\"type\":\"function\",\"function\":{}}"};
    const char *arr[] = {"[]"};
    const char *trailing[] = {"{\"type\":\"function\",\"function\":{\"name\":\"x\"}} x"};
    const char *good[] = {price_tool};
    struct {
        sift_chat_request r;
        const char *msg;
    } cases[] = {
        {{.messages = &m, .n_messages = 1}, "model: missing"},
        {{.model = "m"}, "messages: at least one message is needed"},
        {{.model = "m", .messages = &m, .n_messages = 1, .tools = bad_json, .n_tools = 1},
         "tools[0]: invalid JSON at byte 42"},
        {{.model = "m", .messages = &m, .n_messages = 1, .tools = trailing, .n_tools = 1},
         "tools[0]: invalid JSON at byte 44"},
        {{.model = "m", .messages = &m, .n_messages = 1, .tools = arr, .n_tools = 1},
         "tools[0]: expected a JSON object"},
        {{.model = "m", .messages = &m, .n_messages = 1, .tools = not_fn, .n_tools = 1},
         "tools[0].type: expected \"function\""},
        {{.model = "m", .messages = &m, .n_messages = 1, .tools = no_name, .n_tools = 1},
         "tools[0].function.name: expected a string"},
        {{.model = "m", .messages = &m, .n_messages = 1, .tool_choice = SIFT_TOOL_CHOICE_REQUIRED},
         "tool_choice: requires a tool but no tools are given"},
        {{.model = "m",
          .messages = &m,
          .n_messages = 1,
          .tools = good,
          .n_tools = 1,
          .tool_choice = SIFT_TOOL_CHOICE_FUNCTION,
          .tool_choice_name = "check_inventory"},
         "tool_choice: no tool named \"check_inventory\""},
        {{.model = "m",
          .messages = &m,
          .n_messages = 1,
          .has_temperature = true,
          .temperature = 1.0 / 0.0},
         "temperature: not a finite number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sift_buf b;
        sift_buf_init(&b, 0);
        assert_int_equal(sift_buf_puts(&b, "keep"), 0);
        sift_err err = {0};
        int rc = sift_chat_request_json(&cases[i].r, &b, &err);
        if (rc != SIFT_EINVAL || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: got %d \"%s\", want \"%s\"", i, rc, err.msg, cases[i].msg);
        assert_string_equal(b.data, "keep");
        sift_buf_free(&b);
    }
}

/* Over the buffer's limit: SIFT_ETOOBIG, and the buffer is as before. */
static void test_request_too_big(void **state)
{
    (void)state;
    char big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sift_message m = {.role = SIFT_ROLE_USER, .content = big, .content_len = strlen(big)};
    sift_chat_request r = {.model = "m", .messages = &m, .n_messages = 1};
    sift_buf b;
    sift_buf_init(&b, 512);
    assert_int_equal(sift_buf_puts(&b, "prefix"), 0);
    sift_err err = {0};
    assert_int_equal(sift_chat_request_json(&r, &b, &err), SIFT_ETOOBIG);
    assert_string_equal(err.msg, "chat request larger than 512 bytes");
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "prefix");
    sift_buf_free(&b);
}

/* Hostile text survives as exactly valid JSON: quotes, backslashes, every
 * control character, DEL, and invalid UTF-8 (which becomes U+FFFD). */
static void test_request_hostile(void **state)
{
    (void)state;
    char hostile[128];
    size_t n = 0;
    const char *head = "\"}],\"model\":\"evil\\\n\r\t";
    memcpy(hostile, head, strlen(head));
    n = strlen(head);
    for (int c = 1; c < 0x20; c++)
        hostile[n++] = (char)c;
    hostile[n++] = 0x7f;
    hostile[n] = '\0';
    sift_message msgs[3] = {
        {.role = SIFT_ROLE_USER, .content = hostile, .content_len = n},
        {.role = SIFT_ROLE_USER,
         .content = "a\xff"
                    "b",
         .content_len = 3},
        {.role = SIFT_ROLE_TOOL, .tool_call_id = "id\"\n", .content = "caf\xc3", .content_len = 4},
    };
    sift_chat_request r = {.model = "m\"odel", .messages = msgs, .n_messages = 3};
    cJSON *j = roundtrip(&r);
    assert_string_equal(str_at(j, "model"), "m\"odel");
    const cJSON *jm = cJSON_GetObjectItem(j, "messages");
    assert_int_equal(cJSON_GetArraySize(jm), 3);
    assert_string_equal(str_at(cJSON_GetArrayItem(jm, 0), "content"), hostile);
    assert_string_equal(str_at(cJSON_GetArrayItem(jm, 1), "content"), "a\xEF\xBF\xBD"
                                                                      "b");
    assert_string_equal(str_at(cJSON_GetArrayItem(jm, 2), "content"), "caf\xEF\xBF\xBD");
    assert_string_equal(str_at(cJSON_GetArrayItem(jm, 2), "tool_call_id"), "id\"\n");
    cJSON_Delete(j);
}

/* ---- response ----------------------------------------------------------- */

static const char tool_response[] =
    "{\n  \"id\": \"chatcmpl-B1\",\n  \"object\": \"chat.completion\",\n  \"created\": 1732530000,"
    "\n  \"model\": \"gpt-4o-mini-2024-07-18\",\n  \"choices\": [{\"index\": 0, \"message\": {"
    "\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call_x1\", \"type\": "
    "\"function\", \"function\": {\"name\": \"check_inventory\", \"arguments\": "
    "\"{\\\"sku\\\":\\\"NIKE-PEG40-42\\\",\\\"location\\\":\\\"SGN\\\"}\"}}], \"refusal\": null}, "
    "\"logprobs\": null, \"finish_reason\": \"tool_calls\"}],\n  \"usage\": {\"prompt_tokens\": "
    "180, \"completion_tokens\": 24, \"total_tokens\": 204, \"completion_tokens_details\": "
    "{\"reasoning_tokens\": 0}},\n  \"system_fingerprint\": \"fp_0ba0d124f1\"\n}\n";

static void test_response_parse(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_chat_result res;
    sift_err err = {0};
    assert_int_equal(sift_chat_response_parse(tool_response, strlen(tool_response), a, &res, &err),
                     0);
    assert_int_equal(res.message.role, SIFT_ROLE_ASSISTANT);
    assert_null(res.message.content);
    assert_int_equal(res.message.n_tool_calls, 1);
    assert_string_equal(res.message.tool_calls[0].id, "call_x1");
    assert_string_equal(res.message.tool_calls[0].name, "check_inventory");
    assert_string_equal(res.message.tool_calls[0].arguments,
                        "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"SGN\"}");
    assert_int_equal(res.finish, SIFT_FINISH_TOOL_CALLS);
    assert_true(res.has_usage);
    assert_int_equal(res.usage.prompt_tokens, 180);
    assert_int_equal(res.usage.completion_tokens, 24);
    assert_int_equal(res.usage.total_tokens, 204);

    const char *text = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                       "\"Size 42 is in stock in S\\u00e0i G\\u00f2n.\"},\"finish_reason\":"
                       "\"length\"}]}";
    assert_int_equal(sift_chat_response_parse(text, strlen(text), a, &res, &err), 0);
    assert_string_equal(res.message.content, "Size 42 is in stock in Sài Gòn.");
    assert_int_equal(res.message.n_tool_calls, 0);
    assert_int_equal(res.finish, SIFT_FINISH_LENGTH);
    assert_string_equal(res.finish_text, "length");
    assert_false(res.has_usage);
    assert_int_equal(sift_finish_parse("stop"), SIFT_FINISH_STOP);
    assert_int_equal(sift_finish_parse("content_filter"), SIFT_FINISH_CONTENT_FILTER);
    assert_int_equal(sift_finish_parse("function_call"), SIFT_FINISH_TOOL_CALLS);
    assert_int_equal(sift_finish_parse("eos"), SIFT_FINISH_OTHER);
    assert_int_equal(sift_finish_parse(NULL), SIFT_FINISH_NONE);
    sift_arena_free(a);
}

static void test_response_invalid(void **state)
{
    (void)state;
    struct {
        const char *body;
        int code;
        const char *msg;
    } cases[] = {
        {"{\"choices\":[", SIFT_EPROTO, "chat response: invalid JSON at byte 11"},
        {"[]", SIFT_EPROTO, "chat response: (top level): expected an object"},
        {"{\"choices\":[]}", SIFT_EPROTO, "chat response: choices: expected a non-empty array"},
        {"{\"choices\":[{\"message\":1}]}", SIFT_EPROTO,
         "chat response: choices[0].message: expected an object"},
        {"{\"choices\":[{\"message\":{\"content\":1}}]}", SIFT_EPROTO,
         "chat response: choices[0].message.content: expected a string or null"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":{}}}]}", SIFT_EPROTO,
         "chat response: choices[0].message.tool_calls: expected an array"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\","
         "\"arguments\":\"{}\"}},{\"id\":\"b\",\"function\":{\"name\":\"f\",\"arguments\":{}}}]}}]"
         "}",
         SIFT_EPROTO,
         "chat response: choices[0].message.tool_calls[1].function.arguments: expected a string"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{}}]}}]}", SIFT_EPROTO,
         "chat response: choices[0].message.tool_calls[0].id: expected a string"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":[]}]}}]}",
         SIFT_EPROTO,
         "chat response: choices[0].message.tool_calls[0].function: expected an object"},
        {"{\"choices\":[{\"message\":{\"tool_calls\":[7]}}]}", SIFT_EPROTO,
         "chat response: choices[0].message.tool_calls[0]: expected an object"},
        {"{\"choices\":[{\"message\":{},\"finish_reason\":0}]}", SIFT_EPROTO,
         "chat response: choices[0].finish_reason: expected a string or null"},
        {"{\"choices\":[{\"message\":{}}],\"usage\":{\"total_tokens\":1.5}}", SIFT_EPROTO,
         "chat response: usage.total_tokens: expected a token count"},
        {"{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}",
         SIFT_EHTTP, "provider error: The server had an error"},
    };
    sift_arena *a = sift_arena_new(0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sift_chat_result res;
        sift_err err = {0};
        int rc = sift_chat_response_parse(cases[i].body, strlen(cases[i].body), a, &res, &err);
        if (rc != cases[i].code || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: got %d \"%s\", want \"%s\"", i, rc, err.msg, cases[i].msg);
        assert_int_equal(res.message.n_tool_calls, 0);
    }
    sift_arena_free(a);
}

static void test_response_oom(void **state)
{
    (void)state;
    int ok = 0, failed = 0;
    for (long k = 0; k < 50 && !ok; k++) {
        sift_arena *a = sift_arena_new(64);
        assert_non_null(a);
        sift_chat_result res;
        sift_err err = {0};
        sift_mem_fail_after(k);
        int rc = sift_chat_response_parse(tool_response, strlen(tool_response), a, &res, &err);
        sift_mem_fail_after(-1);
        if (rc) {
            assert_int_equal(rc, SIFT_ENOMEM);
            failed++;
        } else {
            ok = 1;
            assert_string_equal(res.message.tool_calls[0].id, "call_x1");
        }
        sift_arena_free(a);
    }
    assert_true(ok);
    assert_true(failed > 0);
}

/* ---- error bodies ------------------------------------------------------- */

static void test_error_parse(void **state)
{
    (void)state;
    sift_err err = {0};
    const char *body = "{\n    \"error\": {\n        \"message\": \"Incorrect API key provided\",\n"
                       "        \"type\": \"invalid_request_error\",\n        \"param\": null,\n"
                       "        \"code\": \"invalid_api_key\"\n    }\n}\n";
    assert_int_equal(sift_chat_error_parse(401, body, strlen(body), &err), SIFT_EHTTP);
    assert_int_equal(err.code, SIFT_EHTTP);
    assert_string_equal(err.msg, "provider error 401: Incorrect API key provided");

    const char *typed = "{\"error\":{\"message\":\"\",\"type\":\"server_error\"}}";
    assert_int_equal(sift_chat_error_parse(500, typed, strlen(typed), &err), SIFT_EHTTP);
    assert_string_equal(err.msg, "provider error 500: server_error");

    const char *flat = "{\"error\":\"model not found\"}";
    assert_int_equal(sift_chat_error_parse(404, flat, strlen(flat), &err), SIFT_EHTTP);
    assert_string_equal(err.msg, "provider error 404: model not found");

    const char *html = "<html>\r\n<h1>502 Bad Gateway</h1></html>";
    assert_int_equal(sift_chat_error_parse(502, html, strlen(html), &err), SIFT_EHTTP);
    assert_string_equal(err.msg, "provider error 502: <html>  <h1>502 Bad Gateway</h1></html>");

    char longbody[400];
    memset(longbody, 'z', sizeof(longbody));
    assert_int_equal(sift_chat_error_parse(503, longbody, sizeof(longbody), &err), SIFT_EHTTP);
    assert_non_null(strstr(err.msg, "zzz..."));

    assert_int_equal(sift_chat_error_parse(429, "", 0, &err), SIFT_EHTTP);
    assert_string_equal(err.msg, "provider error 429 (empty body)");
    assert_int_equal(sift_chat_error_parse(429, NULL, 0, &err), SIFT_EHTTP);
    assert_string_equal(err.msg, "provider error 429 (empty body)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_conv_invalid),
        cmocka_unit_test(test_conv_oom),
        cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_request_tools_array),
        cmocka_unit_test(test_request_minimal),
        cmocka_unit_test(test_request_invalid),
        cmocka_unit_test(test_request_too_big),
        cmocka_unit_test(test_request_hostile),
        cmocka_unit_test(test_response_parse),
        cmocka_unit_test(test_response_invalid),
        cmocka_unit_test(test_response_oom),
        cmocka_unit_test(test_error_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
