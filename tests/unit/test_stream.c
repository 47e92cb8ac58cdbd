/* The stream delta assembler: recorded streams, every split of the tool
 * arguments, malformed chunks, limits, callbacks and allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"
#include "sift/model.h"

/* ---- event recorder ------------------------------------------------------ */

#define MAXCALLS 8

typedef struct rec {
    sift_buf log;            /* one line per event */
    sift_buf content;        /* concatenated on_content text */
    sift_buf args[MAXCALLS]; /* concatenated on_tool_args per index */
    int n_content_events;
    int n_args_events;
    int partial_utf8; /* pieces that ended inside a UTF-8 character */
    int stop_at;      /* event number at which to return stop_code (0: never) */
    int stop_code;
    int events;
} rec;

static void rec_init(rec *r)
{
    memset(r, 0, sizeof(*r));
    sift_buf_init(&r->log, 0);
    sift_buf_init(&r->content, 0);
    for (int i = 0; i < MAXCALLS; i++)
        sift_buf_init(&r->args[i], 0);
}

static void rec_free(rec *r)
{
    sift_buf_free(&r->log);
    sift_buf_free(&r->content);
    for (int i = 0; i < MAXCALLS; i++)
        sift_buf_free(&r->args[i]);
}

static const char *rec_log(rec *r)
{
    return r->log.data ? r->log.data : "";
}

/* True when s[0..n) ends inside a multi-byte character. */
static int ends_partial(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (i + need > n)
            return 1;
        i += need;
    }
    return 0;
}

static int rec_next(rec *r)
{
    r->events++;
    return r->stop_at && r->events == r->stop_at ? r->stop_code : 0;
}

static int on_content(void *ud, const char *text, size_t len)
{
    rec *r = ud;
    assert_true(len > 0);
    r->n_content_events++;
    r->partial_utf8 += ends_partial(text, len);
    assert_int_equal(sift_buf_append(&r->content, text, len), 0);
    assert_int_equal(sift_buf_printf(&r->log, "content:%.*s\n", (int)len, text), 0);
    return rec_next(r);
}

static int on_tool_start(void *ud, size_t index, const char *id, const char *name)
{
    rec *r = ud;
    assert_int_equal(sift_buf_printf(&r->log, "start:%zu:%s:%s\n", index, id, name), 0);
    return rec_next(r);
}

static int on_tool_args(void *ud, size_t index, const char *frag, size_t len)
{
    rec *r = ud;
    assert_true(index < MAXCALLS);
    assert_true(len > 0);
    r->n_args_events++;
    r->partial_utf8 += ends_partial(frag, len);
    assert_int_equal(sift_buf_append(&r->args[index], frag, len), 0);
    return rec_next(r);
}

static int on_tool_done(void *ud, size_t index, const sift_tool_call *call)
{
    rec *r = ud;
    assert_int_equal(sift_buf_printf(&r->log, "done:%zu:%s:%s:%.*s\n", index, call->id, call->name,
                                     (int)call->arguments_len, call->arguments),
                     0);
    return rec_next(r);
}

static int on_finish(void *ud, sift_finish finish, const char *text)
{
    rec *r = ud;
    assert_int_equal(sift_buf_printf(&r->log, "finish:%d:%s\n", (int)finish, text), 0);
    return rec_next(r);
}

static int on_usage(void *ud, const sift_usage *u)
{
    rec *r = ud;
    assert_int_equal(sift_buf_printf(&r->log, "usage:%lld/%lld/%lld\n", (long long)u->prompt_tokens,
                                     (long long)u->completion_tokens, (long long)u->total_tokens),
                     0);
    return rec_next(r);
}

static sift_stream_cbs rec_cbs(rec *r)
{
    sift_stream_cbs cbs = {.ud = r,
                           .on_content = on_content,
                           .on_tool_start = on_tool_start,
                           .on_tool_args = on_tool_args,
                           .on_tool_done = on_tool_done,
                           .on_finish = on_finish,
                           .on_usage = on_usage};
    return cbs;
}

/* Feeds every chunk; returns the first error code (and stops there). */
static int feed_all(sift_stream *s, const char *const *chunks, size_t n, sift_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = sift_stream_feed(s, chunks[i], strlen(chunks[i]), err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- a recorded stream: three parallel check_inventory calls ------------ */

#define HEAD                                                                                       \
    "{\"id\":\"chatcmpl-AXk3mNv8pQ2rT\",\"object\":\"chat.completion.chunk\",\"created\":"         \
    "1732530000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\","    \
    "\"choices\":[{\"index\":0,\"delta\":"
#define TAIL(fr) ",\"logprobs\":null,\"finish_reason\":" fr "}],\"usage\":null}"
#define START(i, id)                                                                               \
    HEAD "{\"tool_calls\":[{\"index\":" #i ",\"id\":\"" id "\",\"type\":\"function\","             \
         "\"function\":{\"name\":\"check_inventory\",\"arguments\":\"\"}}]}" TAIL("null")
#define ARGS(i, a)                                                                                 \
    HEAD "{\"tool_calls\":[{\"index\":" #i ",\"function\":{\"arguments\":\"" a "\"}}]}" TAIL("nul" \
                                                                                             "l")

static const char *const parallel_stream[] = {
    HEAD "{\"role\":\"assistant\",\"content\":null,\"refusal\":null}" TAIL("null"),
    START(0, "call_7Qm2HAN"),
    ARGS(0, "{\\\"sku\\\": \\\"NI"),
    ARGS(0, "KE-PEG40-42\\\", "),
    ARGS(0, "\\\"location\\\": \\\"HA"),
    ARGS(0, "N\\\"}"),
    START(1, "call_R8c1DAD"),
    ARGS(1, "{\\\"sku\\\": "),
    ARGS(1, "\\\"NIKE-PEG40-42\\\""),
    ARGS(1, ", \\\"location\\\": \\\"DAD\\\"}"),
    START(2, "call_Zp4kSGN"),
    ARGS(2, "{\\\"sku\\\""),
    ARGS(2, ": \\\"NIKE-PEG40"),
    ARGS(2, "-42\\\", \\\"location"),
    ARGS(2, "\\\": \\\"SGN\\\"}"),
    HEAD "{}" TAIL("\"tool_calls\""),
    "{\"id\":\"chatcmpl-AXk3mNv8pQ2rT\",\"object\":\"chat.completion.chunk\",\"created\":"
    "1732530000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":412,\"completion_tokens\":71,"
    "\"total_tokens\":483,\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
    "[DONE]",
};

static const char *const expect_args[3] = {
    "{\"sku\": \"NIKE-PEG40-42\", \"location\": \"HAN\"}",
    "{\"sku\": \"NIKE-PEG40-42\", \"location\": \"DAD\"}",
    "{\"sku\": \"NIKE-PEG40-42\", \"location\": \"SGN\"}",
};

static void test_parallel_tool_calls(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    sift_stream_cbs cbs = rec_cbs(&r);
    sift_stream s;
    sift_stream_init(&s, &cbs, NULL);
    sift_err err = {0};
    size_t n = sizeof(parallel_stream) / sizeof(parallel_stream[0]);
    assert_int_equal(feed_all(&s, parallel_stream, n, &err), 0);
    assert_int_equal(s.state, SIFT_STREAM_DONE);

    const char *want = "start:0:call_7Qm2HAN:check_inventory\n"
                       "start:1:call_R8c1DAD:check_inventory\n"
                       "start:2:call_Zp4kSGN:check_inventory\n"
                       "done:0:call_7Qm2HAN:check_inventory:{\"sku\": \"NIKE-PEG40-42\", "
                       "\"location\": \"HAN\"}\n"
                       "done:1:call_R8c1DAD:check_inventory:{\"sku\": \"NIKE-PEG40-42\", "
                       "\"location\": \"DAD\"}\n"
                       "done:2:call_Zp4kSGN:check_inventory:{\"sku\": \"NIKE-PEG40-42\", "
                       "\"location\": \"SGN\"}\n"
                       "finish:3:tool_calls\n"
                       "usage:412/71/483\n";
    assert_string_equal(rec_log(&r), want);
    for (int i = 0; i < 3; i++)
        assert_string_equal(r.args[i].data, expect_args[i]);
    assert_int_equal(r.n_args_events, 11);
    assert_int_equal(r.n_content_events, 0);

    sift_arena *a = sift_arena_new(0);
    assert_non_null(a);
    sift_chat_result res;
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), 0);
    assert_int_equal(res.message.role, SIFT_ROLE_ASSISTANT);
    assert_null(res.message.content);
    assert_int_equal(res.message.n_tool_calls, 3);
    assert_string_equal(res.message.tool_calls[1].id, "call_R8c1DAD");
    assert_string_equal(res.message.tool_calls[2].name, "check_inventory");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res.message.tool_calls[i].arguments_len, strlen(expect_args[i]));
        assert_string_equal(res.message.tool_calls[i].arguments, expect_args[i]);
    }
    assert_int_equal(res.finish, SIFT_FINISH_TOOL_CALLS);
    assert_string_equal(res.finish_text, "tool_calls");
    assert_true(res.has_usage);
    assert_int_equal(res.usage.total_tokens, 483);

    /* The result can go straight into the conversation. */
    sift_conv conv;
    sift_conv_init(&conv, a);
    assert_int_equal(sift_conv_append(&conv, &res.message, &err), 0);
    assert_int_equal(conv.msgs[0].n_tool_calls, 3);

    /* Reuse after reset: the same stream gives the same result. */
    sift_stream_reset(&s);
    sift_buf_reset(&r.log);
    for (int i = 0; i < 3; i++)
        sift_buf_reset(&r.args[i]);
    assert_int_equal(feed_all(&s, parallel_stream, n, &err), 0);
    assert_string_equal(rec_log(&r), want);
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), 0);
    assert_string_equal(res.message.tool_calls[0].arguments, expect_args[0]);

    sift_arena_free(a);
    sift_stream_free(&s);
    rec_free(&r);
}

/* ---- chunks built with cJSON, for programmatic re-chunking -------------- */

static cJSON *new_chunk(cJSON **delta, const char *finish)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", "chatcmpl-split");
    cJSON_AddStringToObject(j, "object", "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    *delta = cJSON_AddObjectToObject(c, "delta");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    return j;
}

/* A chunk with one tool-call fragment: bytes [from, to) of args. */
static char *tool_chunk(int index, const char *id, const char *args, size_t from, size_t to)
{
    cJSON *delta;
    cJSON *j = new_chunk(&delta, NULL);
    cJSON *arr = cJSON_AddArrayToObject(delta, "tool_calls");
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, tc);
    cJSON_AddNumberToObject(tc, "index", index);
    if (id) {
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
    }
    cJSON *fn = cJSON_AddObjectToObject(tc, "function");
    if (id)
        cJSON_AddStringToObject(fn, "name", "check_inventory");
    /* The fragment is a piece of the decoded string: it may stop inside an
     * escape of the inner JSON or inside a UTF-8 character. cJSON prints
     * such bytes through unchanged and parses them back unchanged. */
    char *frag = strndup(args + from, to - from);
    assert_non_null(frag);
    cJSON_AddStringToObject(fn, "arguments", frag);
    free(frag);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    assert_non_null(out);
    return out;
}

static char *content_chunk(const char *text, size_t from, size_t to)
{
    cJSON *delta;
    cJSON *j = new_chunk(&delta, NULL);
    char *frag = strndup(text + from, to - from);
    assert_non_null(frag);
    cJSON_AddStringToObject(delta, "content", frag);
    free(frag);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static char *finish_chunk(const char *reason)
{
    cJSON *delta;
    cJSON *j = new_chunk(&delta, reason);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static void feed_owned(sift_stream *s, char *chunk)
{
    sift_err err = {0};
    int rc = sift_stream_feed(s, chunk, strlen(chunk), &err);
    if (rc)
        fail_msg("%s (chunk %s)", err.msg, chunk);
    free(chunk);
}

/* Arguments with escapes of the inner JSON (\", \\, \n, \u00e9, a surrogate
 * pair) and raw multi-byte UTF-8 (2, 3 and 4 bytes). */
static const char hard_args[] =
    "{\"sku\":\"NIKE-PEG40-42\",\"note\":\"say \\\"hi\\\" \\\\ caf\\u00e9 \\ud83d\\udc5f\\n\","
    "\"city\":\"\xC4\x90\xC3\xA0 N\xE1\xBA\xB5ng \xF0\x9F\x91\x9F\",\"location\":\"DAD\"}";

/* Runs one stream: the arguments of call 0 cut at the given points (sorted,
 * inside (0, len)), then a finish chunk. Checks the assembled arguments and
 * the streamed fragments are byte-identical to the input. */
static void run_split(const size_t *cuts, size_t n_cuts)
{
    size_t len = strlen(hard_args);
    rec r;
    rec_init(&r);
    sift_stream_cbs cbs = rec_cbs(&r);
    sift_stream s;
    sift_stream_init(&s, &cbs, NULL);
    size_t from = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        size_t to = k < n_cuts ? cuts[k] : len;
        feed_owned(&s, tool_chunk(0, k == 0 ? "call_split" : NULL, hard_args, from, to));
        from = to;
    }
    feed_owned(&s, finish_chunk("tool_calls"));
    assert_int_equal(r.args[0].len, len);
    assert_memory_equal(r.args[0].data, hard_args, len);
    assert_int_equal(r.partial_utf8, 0);

    sift_arena *a = sift_arena_new(0);
    sift_chat_result res;
    sift_err err = {0};
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), 0);
    assert_int_equal(res.message.n_tool_calls, 1);
    assert_int_equal(res.message.tool_calls[0].arguments_len, len);
    assert_memory_equal(res.message.tool_calls[0].arguments, hard_args, len);
    sift_arena_free(a);
    sift_stream_free(&s);
    rec_free(&r);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    size_t len = strlen(hard_args);
    /* The arguments must be what the model meant: valid JSON. */
    cJSON *check = cJSON_Parse(hard_args);
    assert_non_null(check);
    cJSON_Delete(check);
    run_split(NULL, 0);
    for (size_t p = 1; p < len; p++)
        run_split(&p, 1);
}

static void test_split_every_pair(void **state)
{
    (void)state;
    size_t len = strlen(hard_args);
    for (size_t p = 1; p < len; p++)
        for (size_t q = p + 1; q < len; q++) {
            size_t cuts[2] = {p, q};
            run_split(cuts, 2);
        }
}

/* Every byte as its own fragment, three calls interleaved round-robin. */
static void test_split_interleaved(void **state)
{
    (void)state;
    const char *args[3] = {hard_args, expect_args[1], "{\"q\":\"\xE2\x82\xAC \\u20ac\"}"};
    size_t len[3], pos[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        len[i] = strlen(args[i]);
    rec r;
    rec_init(&r);
    sift_stream_cbs cbs = rec_cbs(&r);
    sift_stream s;
    sift_stream_init(&s, &cbs, NULL);
    const char *ids[3] = {"call_a", "call_b", "call_c"};
    for (int i = 0; i < 3; i++) {
        feed_owned(&s, tool_chunk(i, ids[i], args[i], 0, 1));
        pos[i] = 1;
    }
    for (int more = 1; more;) {
        more = 0;
        for (int i = 0; i < 3; i++)
            if (pos[i] < len[i]) {
                feed_owned(&s, tool_chunk(i, NULL, args[i], pos[i], pos[i] + 1));
                pos[i]++;
                more = 1;
            }
    }
    feed_owned(&s, finish_chunk("tool_calls"));
    assert_int_equal(r.partial_utf8, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.args[i].len, len[i]);
        assert_memory_equal(r.args[i].data, args[i], len[i]);
    }
    sift_arena *a = sift_arena_new(0);
    sift_chat_result res;
    sift_err err = {0};
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(res.message.tool_calls[i].id, ids[i]);
        assert_memory_equal(res.message.tool_calls[i].arguments, args[i], len[i]);
    }
    sift_arena_free(a);
    sift_stream_free(&s);
    rec_free(&r);
}

/* Content cut inside UTF-8 characters reaches on_content in whole characters,
 * and the assembled content is byte-identical. */
static void test_content_utf8_split(void **state)
{
    (void)state;
    const char *text = "Gi\xC3\xA0y ch\xE1\xBA\xA1y b\xE1\xBB\x99 \xF0\x9F\x91\x9F!";
    size_t len = strlen(text);
    for (size_t p = 1; p < len; p++) {
        rec r;
        rec_init(&r);
        sift_stream_cbs cbs = rec_cbs(&r);
        sift_stream s;
        sift_stream_init(&s, &cbs, NULL);
        feed_owned(&s, content_chunk(text, 0, p));
        feed_owned(&s, content_chunk(text, p, len));
        feed_owned(&s, finish_chunk("stop"));
        assert_int_equal(r.partial_utf8, 0);
        assert_int_equal(r.content.len, len);
        assert_memory_equal(r.content.data, text, len);
        sift_stream_free(&s);
        rec_free(&r);
    }
}

/* ---- batch mode: the chunks of one read become one content event -------- */

static void test_batch_content(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    sift_stream_cbs cbs = rec_cbs(&r);
    sift_stream s;
    sift_stream_init(&s, &cbs, NULL);
    sift_stream_set_batch(&s, true);
    sift_err err = {0};
    /* "Gi\xC3\xA0y": the second piece ends inside the two-byte character */
    const char *text = "Hello Gi\xC3\xA0y";
    feed_owned(&s, content_chunk(text, 0, 3));
    feed_owned(&s, content_chunk(text, 3, 9));
    assert_int_equal(r.n_content_events, 0); /* nothing before the flush */
    assert_int_equal(sift_stream_flush(&s, &err), 0);
    assert_int_equal(r.n_content_events, 1);
    assert_string_equal(rec_log(&r), "content:Hello Gi\n"); /* the incomplete tail is held */
    assert_int_equal(sift_stream_flush(&s, &err), 0);
    assert_int_equal(r.n_content_events, 1); /* nothing new: no empty event */
    feed_owned(&s, content_chunk(text, 9, strlen(text)));
    /* a tool call after the text: the text goes out first, without a flush */
    const char *start = START(0, "call_7Qm2HAN");
    assert_int_equal(sift_stream_feed(&s, start, strlen(start), &err), 0);
    feed_owned(&s, content_chunk("!", 0, 1));
    feed_owned(&s, finish_chunk("stop")); /* finish_reason gives out what is pending */
    assert_string_equal(rec_log(&r), "content:Hello Gi\n"
                                     "content:\xC3\xA0y\n"
                                     "start:0:call_7Qm2HAN:check_inventory\n"
                                     "content:!\n"
                                     "done:0:call_7Qm2HAN:check_inventory:\n"
                                     "finish:1:stop\n");
    assert_int_equal(r.partial_utf8, 0);
    assert_int_equal(sift_stream_flush(&s, &err), 0);
    assert_int_equal(r.n_content_events, 3);

    /* a callback's stop code comes back from the flush, and the assembler fails */
    sift_stream_reset(&s);
    r.stop_at = r.events + 1;
    r.stop_code = SIFT_ECANCELED;
    feed_owned(&s, content_chunk("abc", 0, 3));
    assert_int_equal(sift_stream_flush(&s, &err), SIFT_ECANCELED);
    assert_int_equal(s.state, SIFT_STREAM_FAILED);
    assert_int_equal(sift_stream_flush(&s, &err), 0); /* failed: nothing more goes out */

    /* text gathered before a bad chunk still goes out, before the error */
    sift_stream_reset(&s);
    r.stop_at = 0;
    int before = r.n_content_events;
    feed_owned(&s, content_chunk("ok", 0, 2));
    assert_int_equal(r.n_content_events, before);
    assert_int_equal(sift_stream_feed(&s, "{\"choices\":", 12, &err), SIFT_EPROTO);
    assert_int_equal(r.n_content_events, before + 1);
    assert_non_null(strstr(rec_log(&r), "content:ok\n"));
    sift_stream_free(&s);
    rec_free(&r);
}

/* ---- content-only stream with a usage chunk ----------------------------- */

static const char *const content_stream[] = {
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":null}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"content\":\"lo! The Pegasus 40 \\\"size 42\\\"\\nis in stock.\"},\"finish_reason\":null}],"
    "\"usage\":null}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}],\"usage\":null}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{"
    "\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}",
    " [DONE]\n",
};

static void test_content_with_usage(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    sift_stream_cbs cbs = rec_cbs(&r);
    sift_stream s;
    sift_stream_init(&s, &cbs, NULL);
    sift_err err = {0};
    assert_int_equal(feed_all(&s, content_stream, 6, &err), 0);
    assert_string_equal(rec_log(&r), "content:Hel\n"
                                     "content:lo! The Pegasus 40 \"size 42\"\nis in stock.\n"
                                     "finish:1:stop\n"
                                     "usage:9/12/21\n");
    sift_arena *a = sift_arena_new(0);
    sift_chat_result res;
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), 0);
    assert_string_equal(res.message.content, "Hello! The Pegasus 40 \"size 42\"\nis in stock.");
    assert_int_equal(res.message.n_tool_calls, 0);
    assert_int_equal(res.finish, SIFT_FINISH_STOP);
    assert_int_equal(res.usage.prompt_tokens, 9);
    assert_int_equal(res.usage.completion_tokens, 12);
    sift_arena_free(a);
    sift_stream_free(&s);
    rec_free(&r);
}

/* A stream without [DONE] but with finish_reason is complete; one without
 * finish_reason is not, [DONE] or not. */
static void test_missing_finish_reason(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_chat_result res;
    sift_err err = {0};
    sift_stream s;
    sift_stream_init(&s, NULL, NULL);

    assert_int_equal(feed_all(&s, content_stream, 3, &err), 0);
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), SIFT_EPROTO);
    assert_string_equal(err.msg, "stream ended without finish_reason");
    assert_null(res.message.content);

    sift_stream_reset(&s);
    const char *with_done[] = {content_stream[1], "[DONE]"};
    assert_int_equal(feed_all(&s, with_done, 2, &err), 0);
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), SIFT_EPROTO);
    assert_string_equal(err.msg, "stream ended without finish_reason");

    sift_stream_reset(&s);
    assert_int_equal(feed_all(&s, content_stream, 4, &err), 0);
    assert_int_equal(sift_stream_finish(&s, a, &res, &err), 0);
    assert_false(res.has_usage);

    sift_arena_free(a);
    sift_stream_free(&s);
}

/* ---- malformed chunks --------------------------------------------------- */

typedef struct bad_case {
    const char *chunk; /* fed as chunk 2, after a good first chunk */
    int code;
    const char *msg;
} bad_case;

#define TC(x) "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[" x "]}}]}"

static void test_malformed(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}", SIFT_EPROTO,
         "stream chunk 2: invalid JSON at byte 46"},
        {"data: {}", SIFT_EPROTO, "stream chunk 2: invalid JSON at byte 0"},
        {"{} {}", SIFT_EPROTO, "stream chunk 2: invalid JSON at byte 3"},
        {"", SIFT_EPROTO, "stream chunk 2: invalid JSON at byte 0"},
        {"[1]", SIFT_EPROTO, "stream chunk 2: expected a JSON object"},
        {"{\"choices\":{}}", SIFT_EPROTO, "stream chunk 2: choices: expected an array"},
        {"{\"choices\":[3]}", SIFT_EPROTO, "stream chunk 2: choices[0]: expected an object"},
        {"{\"choices\":[{\"index\":0,\"delta\":[]}]}", SIFT_EPROTO,
         "stream chunk 2: choices[0].delta: expected an object"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":5}}]}", SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.content: expected a string"},
        {"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":1}]}", SIFT_EPROTO,
         "stream chunk 2: choices[0].finish_reason: expected a string"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":{}}}]}", SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls: expected an array"},
        {TC("{\"id\":\"c\",\"function\":{\"name\":\"f\"}}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].index missing"},
        {TC("{\"index\":-1}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].index: expected a non-negative "
         "integer"},
        {TC("{\"index\":\"0\"}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].index: expected a non-negative "
         "integer"},
        {TC("{\"index\":1,\"id\":\"c\",\"function\":{\"name\":\"f\"}}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].index jumps to 1 after 0 tool "
         "call(s)"},
        {TC("{\"index\":0,\"function\":{\"name\":\"f\"}}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].id missing on the first fragment"},
        {TC("{\"index\":0,\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].function.name missing on the first "
         "fragment"},
        {TC("{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":{}}}"),
         SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].function.arguments: expected a string"},
        {TC("{\"index\":0,\"id\":7}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].id: expected a string"},
        {TC("{\"index\":0,\"id\":\"c\",\"function\":\"f\"}"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[0].function: expected an object"},
        {TC("{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\"}},7"), SIFT_EPROTO,
         "stream chunk 2: choices[0].delta.tool_calls[1]: expected an object"},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":\"9\"}}", SIFT_EPROTO,
         "stream chunk 2: usage.prompt_tokens: expected a token count"},
        {"{\"choices\":[],\"usage\":[]}", SIFT_EPROTO, "stream chunk 2: usage: expected an object"},
        {"{\"error\":{\"message\":\"Rate limit reached for gpt-4o-mini\",\"type\":\"requests\","
         "\"code\":\"rate_limit_exceeded\"}}",
         SIFT_EHTTP, "provider error: Rate limit reached for gpt-4o-mini"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sift_stream s;
        sift_stream_init(&s, NULL, NULL);
        sift_err err = {0};
        assert_int_equal(sift_stream_feed(&s, content_stream[0], strlen(content_stream[0]), &err),
                         0);
        int rc = sift_stream_feed(&s, cases[i].chunk, strlen(cases[i].chunk), &err);
        if (rc != cases[i].code || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, rc, err.msg, cases[i].code,
                     cases[i].msg);
        assert_int_equal(s.state, SIFT_STREAM_FAILED);
        /* A failed assembler refuses more input and has no result. */
        assert_int_equal(sift_stream_feed(&s, "[DONE]", 6, &err), SIFT_ESTATE);
        sift_arena *a = sift_arena_new(0);
        sift_chat_result res;
        assert_int_equal(sift_stream_finish(&s, a, &res, &err), SIFT_ESTATE);
        sift_arena_free(a);
        sift_stream_free(&s);
    }
}

/* Errors that depend on what came before: chunk numbers count from 1. */
static void test_malformed_sequence(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_stream s;

    /* The brief's example: index missing in chunk 3. */
    sift_stream_init(&s, NULL, NULL);
    const char *a[] = {START(0, "call_1"), ARGS(0, "{"),
                       TC("{\"function\":{\"arguments\":\"}\"}}")};
    assert_int_equal(feed_all(&s, a, 3, &err), SIFT_EPROTO);
    assert_string_equal(err.msg, "stream chunk 3: choices[0].delta.tool_calls[0].index missing");
    sift_stream_free(&s);

    /* Index jumping from 0 to 2. */
    sift_stream_init(&s, NULL, NULL);
    const char *b[] = {START(0, "call_1"), START(2, "call_3")};
    assert_int_equal(feed_all(&s, b, 2, &err), SIFT_EPROTO);
    assert_string_equal(err.msg,
                        "stream chunk 2: choices[0].delta.tool_calls[0].index jumps to 2 after "
                        "1 tool call(s)");
    sift_stream_free(&s);

    /* A fragment that names a different id for an existing index. */
    sift_stream_init(&s, NULL, NULL);
    const char *c[] = {START(0, "call_1"), START(0, "call_2")};
    assert_int_equal(feed_all(&s, c, 2, &err), SIFT_EPROTO);
    assert_string_equal(err.msg,
                        "stream chunk 2: choices[0].delta.tool_calls[0].id changed to \"call_2\"");
    sift_stream_free(&s);

    /* Content after finish_reason, and data after [DONE]. */
    sift_stream_init(&s, NULL, NULL);
    const char *d[] = {content_stream[1], content_stream[3], content_stream[2]};
    assert_int_equal(feed_all(&s, d, 3, &err), SIFT_EPROTO);
    assert_string_equal(err.msg, "stream chunk 3: delta after finish_reason \"stop\"");
    sift_stream_free(&s);

    sift_stream_init(&s, NULL, NULL);
    const char *e[] = {content_stream[3], "[DONE]", content_stream[4]};
    assert_int_equal(feed_all(&s, e, 3, &err), SIFT_EPROTO);
    assert_string_equal(err.msg, "stream chunk 3: data after [DONE]");
    sift_stream_free(&s);

    /* Repeated id and name on later fragments are accepted. */
    sift_stream_init(&s, NULL, NULL);
    const char *f[] = {START(0, "call_1"), START(0, "call_1"), HEAD "{}" TAIL("\"tool_calls\"")};
    assert_int_equal(feed_all(&s, f, 3, &err), 0);
    sift_stream_free(&s);

    /* A repeated finish_reason is ignored; "" counts as null. */
    rec r;
    rec_init(&r);
    sift_stream_cbs cbs = rec_cbs(&r);
    sift_stream_init(&s, &cbs, NULL);
    const char *h[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},"
        "\"finish_reason\":\"\"}]}",
        content_stream[3],
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],"
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}",
        "[DONE]"};
    assert_int_equal(feed_all(&s, h, 4, &err), 0);
    assert_string_equal(rec_log(&r), "content:a\nfinish:1:stop\nusage:1/1/2\n");
    sift_stream_free(&s);
    rec_free(&r);

    /* A failed stream leaves nothing behind for the next one. */
    sift_stream_limits lim = {.max_tool_calls = 4};
    sift_stream_init(&s, NULL, &lim);
    char longname[400];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    char *bad = NULL;
    assert_true(asprintf(&bad, TC("{\"index\":0,\"id\":\"call_x\",\"function\":{\"name\":\"%s\"}}"),
                         longname) > 0);
    assert_int_equal(sift_stream_feed(&s, bad, strlen(bad), &err), SIFT_ETOOBIG);
    assert_string_equal(err.msg, "stream chunk 1: tool call name longer than 256 bytes");
    free(bad);
    sift_stream_reset(&s);
    const char *k[] = {START(0, "call_1"), HEAD "{}" TAIL("\"tool_calls\"")};
    assert_int_equal(feed_all(&s, k, 2, &err), 0);
    sift_arena *ar0 = sift_arena_new(0);
    sift_chat_result res0;
    assert_int_equal(sift_stream_finish(&s, ar0, &res0, &err), 0);
    assert_string_equal(res0.message.tool_calls[0].id, "call_1");
    assert_string_equal(res0.message.tool_calls[0].name, "check_inventory");
    sift_arena_free(ar0);
    sift_stream_free(&s);

    /* Choices other than index 0 are not merged into the message. */
    sift_stream_init(&s, NULL, NULL);
    const char *g[] = {
        "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}},"
        "{\"index\":0,\"delta\":{\"content\":\"mine\"},\"finish_reason\":\"stop\"}]}"};
    assert_int_equal(feed_all(&s, g, 1, &err), 0);
    sift_arena *ar = sift_arena_new(0);
    sift_chat_result res;
    assert_int_equal(sift_stream_finish(&s, ar, &res, &err), 0);
    assert_string_equal(res.message.content, "mine");
    sift_arena_free(ar);
    sift_stream_free(&s);
}

/* ---- limits and callbacks ----------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_stream s;
    sift_stream_limits lim = {.max_content = 10, .max_arguments = 20, .max_tool_calls = 2};

    sift_stream_init(&s, NULL, &lim);
    const char *a[] = {content_stream[1], content_stream[2]};
    assert_int_equal(feed_all(&s, a, 2, &err), SIFT_ETOOBIG);
    assert_string_equal(err.msg, "stream chunk 2: content longer than 10 bytes");
    sift_stream_free(&s);

    sift_stream_init(&s, NULL, &lim);
    const char *b[] = {START(0, "call_1"), ARGS(0, "{\\\"sku\\\": \\\"NIKE-PE"),
                       ARGS(0, "G40-42\\\"}")};
    assert_int_equal(feed_all(&s, b, 3, &err), SIFT_ETOOBIG);
    assert_string_equal(err.msg, "stream chunk 3: tool call arguments longer than 20 bytes");
    sift_stream_free(&s);

    sift_stream_init(&s, NULL, &lim);
    const char *c[] = {START(0, "call_1"), START(1, "call_2"), START(2, "call_3")};
    assert_int_equal(feed_all(&s, c, 3, &err), SIFT_ETOOBIG);
    assert_string_equal(err.msg, "stream chunk 3: more than 2 tool calls");
    sift_stream_free(&s);

    /* Exactly at the limits is fine. */
    lim.max_content = strlen("Hello! The Pegasus 40 \"size 42\"\nis in stock.");
    sift_stream_init(&s, NULL, &lim);
    assert_int_equal(feed_all(&s, content_stream, 6, &err), 0);
    sift_stream_free(&s);
}

static void test_callback_stops(void **state)
{
    (void)state;
    size_t n = sizeof(parallel_stream) / sizeof(parallel_stream[0]);
    /* 3 starts, 11 argument pieces, 3 done, finish, usage: 19 events. Stop at
     * each in turn; the assembler must stop cleanly with the callback's code. */
    for (int stop = 1; stop <= 19; stop++) {
        rec r;
        rec_init(&r);
        r.stop_at = stop;
        r.stop_code = SIFT_ECANCELED;
        sift_stream_cbs cbs = rec_cbs(&r);
        sift_stream s;
        sift_stream_init(&s, &cbs, NULL);
        sift_err err = {0};
        assert_int_equal(feed_all(&s, parallel_stream, n, &err), SIFT_ECANCELED);
        assert_non_null(strstr(err.msg, "callback stopped the stream (cancelled)"));
        assert_int_equal(r.events, stop);
        sift_stream_free(&s);
        rec_free(&r);
    }
}

/* ---- property: a stream assembles to what the same non-streaming response
 * parses to, for random messages cut at random points ---------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Random text from pieces that are hard to split: escapes of an inner JSON
 * document, quotes, control characters, 2- to 4-byte UTF-8. */
static void random_text(char *out, size_t cap)
{
    static const char *const pieces[] = {"a",
                                         "NIKE-PEG40-42",
                                         "\\\"",
                                         "\\u00e9",
                                         "\xC3\xA9",
                                         "\xE1\xBA\xB5",
                                         "\xF0\x9F\x91\x9F",
                                         "\n",
                                         "\t",
                                         "{\"k\":[1,2]}",
                                         " ",
                                         "\\\\"};
    size_t n = 0, want = rnd(40);
    out[0] = '\0';
    for (size_t i = 0; i < want; i++) {
        const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
        size_t l = strlen(p);
        if (n + l + 1 > cap)
            break;
        memcpy(out + n, p, l + 1);
        n += l;
    }
}

static void test_stream_matches_response(void **state)
{
    (void)state;
    for (int iter = 0; iter < 300; iter++) {
        char content[512];
        char args[4][512];
        char ids[4][32];
        random_text(content, sizeof(content));
        int ncalls = (int)rnd(5);
        bool has_content = content[0] || ncalls == 0;

        /* The non-streaming response. */
        cJSON *resp = cJSON_CreateObject();
        cJSON *choices = cJSON_AddArrayToObject(resp, "choices");
        cJSON *c0 = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, c0);
        cJSON *msg = cJSON_AddObjectToObject(c0, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        if (has_content)
            cJSON_AddStringToObject(msg, "content", content);
        else
            cJSON_AddNullToObject(msg, "content");
        cJSON *tcs = ncalls ? cJSON_AddArrayToObject(msg, "tool_calls") : NULL;
        for (int i = 0; i < ncalls; i++) {
            random_text(args[i], sizeof(args[i]));
            snprintf(ids[i], sizeof(ids[i]), "call_%d_%d", iter, i);
            cJSON *tc = cJSON_CreateObject();
            cJSON_AddItemToArray(tcs, tc);
            cJSON_AddStringToObject(tc, "id", ids[i]);
            cJSON_AddStringToObject(tc, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(tc, "function");
            cJSON_AddStringToObject(fn, "name", "check_inventory");
            cJSON_AddStringToObject(fn, "arguments", args[i]);
        }
        const char *fr = ncalls ? "tool_calls" : "stop";
        cJSON_AddStringToObject(c0, "finish_reason", fr);
        char *body = cJSON_PrintUnformatted(resp);
        cJSON_Delete(resp);

        /* The same message as a stream: content cut at random points, then each
         * call's arguments cut at random points, calls started in order. */
        sift_stream s;
        sift_stream_init(&s, NULL, NULL);
        size_t clen = strlen(content), pos = 0;
        while (pos < clen) {
            size_t to = pos + 1 + rnd((uint32_t)(clen - pos));
            feed_owned(&s, content_chunk(content, pos, to));
            pos = to;
        }
        for (int i = 0; i < ncalls; i++) {
            size_t alen = strlen(args[i]);
            size_t to = alen ? rnd((uint32_t)alen + 1) : 0;
            feed_owned(&s, tool_chunk(i, ids[i], args[i], 0, to));
            for (pos = to; pos < alen; pos = to) {
                to = pos + 1 + rnd((uint32_t)(alen - pos));
                feed_owned(&s, tool_chunk(i, NULL, args[i], pos, to));
            }
        }
        feed_owned(&s, finish_chunk(fr));

        sift_arena *a = sift_arena_new(0);
        sift_chat_result want, got;
        sift_err err = {0};
        assert_int_equal(sift_chat_response_parse(body, strlen(body), a, &want, &err), 0);
        assert_int_equal(sift_stream_finish(&s, a, &got, &err), 0);
        assert_int_equal(got.finish, want.finish);
        assert_string_equal(got.finish_text, want.finish_text);
        if (want.message.content) {
            assert_non_null(got.message.content);
            assert_int_equal(got.message.content_len, want.message.content_len);
            assert_memory_equal(got.message.content, want.message.content,
                                want.message.content_len);
        } else {
            assert_null(got.message.content);
        }
        assert_int_equal(got.message.n_tool_calls, want.message.n_tool_calls);
        for (size_t i = 0; i < want.message.n_tool_calls; i++) {
            const sift_tool_call *g = &got.message.tool_calls[i], *w = &want.message.tool_calls[i];
            assert_string_equal(g->id, w->id);
            assert_string_equal(g->name, w->name);
            assert_int_equal(g->arguments_len, w->arguments_len);
            assert_memory_equal(g->arguments, w->arguments, w->arguments_len);
        }
        sift_arena_free(a);
        sift_stream_free(&s);
        free(body);
    }
}

/* ---- allocation failure ------------------------------------------------- */

static void test_oom(void **state)
{
    (void)state;
    size_t n = sizeof(parallel_stream) / sizeof(parallel_stream[0]);
    int succeeded = 0, failed = 0;
    for (long k = 0; k < 200 && !succeeded; k++) {
        sift_arena *a = sift_arena_new(0);
        assert_non_null(a);
        sift_stream s;
        sift_stream_init(&s, NULL, NULL);
        sift_err err = {0};
        sift_chat_result res;
        sift_mem_fail_after(k);
        int rc = feed_all(&s, parallel_stream, n, &err);
        if (rc == 0)
            rc = sift_stream_finish(&s, a, &res, &err);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            assert_string_equal(res.message.tool_calls[2].arguments, expect_args[2]);
            succeeded = 1;
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
            failed++;
        }
        sift_stream_free(&s);
        sift_arena_free(a);
    }
    assert_true(succeeded);
    assert_true(failed > 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_tool_calls),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_split_every_pair),
        cmocka_unit_test(test_split_interleaved),
        cmocka_unit_test(test_content_utf8_split),
        cmocka_unit_test(test_batch_content),
        cmocka_unit_test(test_content_with_usage),
        cmocka_unit_test(test_missing_finish_reason),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_malformed_sequence),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_stream_matches_response),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
