/* Tests for the SSE parser (include/sift/sse.h): a realistic OpenAI-style
 * stream fed at every split point and byte by byte, and each rule of the
 * format on its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/sse.h"

/* Every event is written to a log as one line, so that two runs can be
 * compared with one string comparison. */
typedef struct events {
    sift_buf log;
    int count;
    int stop_after; /* return SIFT_ECANCELED from the callback after this many; 0 = never */
} events;

static int on_event(const sift_sse_event *ev, void *udata, sift_err *err)
{
    (void)err;
    events *e = udata;
    assert_int_equal(strlen(ev->event), ev->event_len);
    assert_int_equal(strlen(ev->id), ev->id_len);
    assert_int_equal(ev->data[ev->data_len], '\0');
    sift_buf_printf(&e->log, "[%s|%s|%lld|", ev->event, ev->id, (long long)ev->retry_ms);
    sift_buf_append(&e->log, ev->data, ev->data_len);
    sift_buf_puts(&e->log, "]\n");
    e->count++;
    if (e->stop_after && e->count >= e->stop_after)
        return SIFT_ECANCELED;
    return 0;
}

static void events_init(events *e)
{
    memset(e, 0, sizeof(*e));
    sift_buf_init(&e->log, 0);
}

/* Parses `in` cut at the given offsets (ascending), then finishes. Returns
 * the final code; the log is left in `e`. */
static int parse_split(events *e, const char *in, size_t len, const size_t *cuts, int ncuts,
                       size_t max, sift_err *err)
{
    sift_sse_parser p;
    sift_sse_init(&p, max);
    size_t at = 0;
    int rc = 0;
    for (int i = 0; i <= ncuts && rc == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        rc = sift_sse_feed(&p, in + at, to - at, on_event, e, err);
        at = to;
    }
    if (rc == 0)
        rc = sift_sse_finish(&p, on_event, e, err);
    sift_sse_free(&p);
    return rc;
}

static char *parse_whole(const char *in, size_t len, size_t max, int *rc_out)
{
    events e;
    events_init(&e);
    sift_err err = {0};
    int rc = parse_split(&e, in, len, NULL, 0, max, &err);
    if (rc_out)
        *rc_out = rc;
    size_t n;
    return sift_buf_detach(&e.log, &n);
}

static void expect(const char *in, const char *want)
{
    int rc;
    char *got = parse_whole(in, strlen(in), 0, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(got, want);
    sift_free(got);
}

/* A chat-completions stream as the OpenAI API sends it: role chunk, content
 * deltas, a tool call assembled over several chunks, finish_reason, usage,
 * [DONE]. Written by hand after the documented format. */
static const char openai_stream[] =
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"content\":\"Let me check\"},\"logprobs\":null,\"finish_reason\":"
    "null}]}\n\n"
    ": keep-alive\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{"
    "\"index\":0,\"delta\":{\"content\":\" the stock \\u2014 \xe2\x9c\x93 \"},\"logprobs\":null,"
    "\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
    "\"index\":0,\"id\":\"call_Qm2\",\"type\":\"function\",\"function\":{\"name\":\"check_"
    "inventory\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
    "\"index\":0,\"function\":{\"arguments\":\"{\\\"sku\\\":\\\"SH-42\"}}]},\"logprobs\":null,"
    "\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
    "\"index\":0,\"function\":{\"arguments\":\"\\\",\\\"location\\\":\\\"HAN\\\"}\"}}]},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":"
    "null,\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: "
    "{\"id\":\"chatcmpl-9x1\",\"object\":\"chat.completion.chunk\",\"created\":1764061200,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":412,"
    "\"completion_tokens\":31,\"total_tokens\":443}}\n\n"
    "data: [DONE]\n\n";

static void test_openai_whole(void **state)
{
    (void)state;
    int rc;
    char *got = parse_whole(openai_stream, strlen(openai_stream), 0, &rc);
    assert_int_equal(rc, 0);
    /* 8 JSON chunks and [DONE]; the comment is not an event. */
    int lines = 0;
    for (const char *s = got; *s; s++)
        lines += *s == '\n';
    assert_int_equal(lines, 9);
    assert_non_null(strstr(got, "[message||-1|[DONE]]\n"));
    assert_non_null(strstr(got, "\"name\":\"check_inventory\""));
    assert_non_null(strstr(got, " the stock \\u2014 \xe2\x9c\x93 "));
    assert_null(strstr(got, "keep-alive"));
    sift_free(got);
}

static void test_openai_every_split(void **state)
{
    (void)state;
    size_t len = strlen(openai_stream);
    char *want = parse_whole(openai_stream, len, 0, NULL);
    for (size_t cut = 0; cut <= len; cut++) {
        events e;
        events_init(&e);
        sift_err err = {0};
        assert_int_equal(parse_split(&e, openai_stream, len, &cut, 1, 0, &err), 0);
        if (strcmp(e.log.data, want) != 0)
            fail_msg("split at %zu gives different events", cut);
        sift_buf_free(&e.log);
    }
    sift_free(want);
}

static void test_openai_byte_by_byte(void **state)
{
    (void)state;
    size_t len = strlen(openai_stream);
    char *want = parse_whole(openai_stream, len, 0, NULL);
    size_t *cuts = calloc(len, sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    events e;
    events_init(&e);
    sift_err err = {0};
    assert_int_equal(parse_split(&e, openai_stream, len, cuts, (int)len - 1, 0, &err), 0);
    assert_string_equal(e.log.data, want);
    sift_buf_free(&e.log);
    free(cuts);
    sift_free(want);
}

/* The same stream with "\r\n" and "\r" line ends gives the same events, at
 * every split point (which puts a "\r|\n" boundary between feeds). */
static char *replace_eol(const char *in, const char *eol)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    for (const char *s = in; *s; s++) {
        if (*s == '\n')
            sift_buf_puts(&b, eol);
        else
            sift_buf_putc(&b, *s);
    }
    size_t n;
    return sift_buf_detach(&b, &n);
}

static void test_line_endings_every_split(void **state)
{
    (void)state;
    char *want = parse_whole(openai_stream, strlen(openai_stream), 0, NULL);
    const char *eols[] = {"\r\n", "\r"};
    for (int k = 0; k < 2; k++) {
        char *in = replace_eol(openai_stream, eols[k]);
        size_t len = strlen(in);
        for (size_t cut = 0; cut <= len; cut++) {
            events e;
            events_init(&e);
            sift_err err = {0};
            assert_int_equal(parse_split(&e, in, len, &cut, 1, 0, &err), 0);
            if (strcmp(e.log.data, want) != 0)
                fail_msg("eol %d split at %zu gives different events", k, cut);
            sift_buf_free(&e.log);
        }
        sift_free(in);
    }
    sift_free(want);
}

/* Random three-piece splits of a stream mixing every feature. */
static void test_mixed_random_splits(void **state)
{
    (void)state;
    static const char in[] = "\xEF\xBB\xBF: comment\r\nretry: 1500\revent: delta\r\nid: 1\n"
                             "data: a\r\ndata:b\rdata\n\ndata:  c\r\n\r\n:x\rdata: d\r"
                             "id\nevent\ndata: e\n\n"
                             "data: tail";
    size_t len = strlen(in);
    char *want = parse_whole(in, len, 0, NULL);
    assert_string_equal(want, "[delta|1|1500|a\nb\n]\n"
                              "[message|1|1500| c]\n"
                              "[message||1500|d\ne]\n"
                              "[message||1500|tail]\n");
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        size_t cuts[2];
        seed = seed * 1103515245u + 12345u;
        cuts[0] = (seed >> 8) % (len + 1);
        seed = seed * 1103515245u + 12345u;
        cuts[1] = (seed >> 8) % (len + 1);
        if (cuts[0] > cuts[1]) {
            size_t t = cuts[0];
            cuts[0] = cuts[1];
            cuts[1] = t;
        }
        events e;
        events_init(&e);
        sift_err err = {0};
        assert_int_equal(parse_split(&e, in, len, cuts, 2, 0, &err), 0);
        if (strcmp(e.log.data, want) != 0)
            fail_msg("cuts %zu,%zu give different events", cuts[0], cuts[1]);
        sift_buf_free(&e.log);
    }
    sift_free(want);
}

static void test_multiline_data(void **state)
{
    (void)state;
    expect("data: a\ndata: b\ndata: c\n\n", "[message||-1|a\nb\nc]\n");
    expect("data:\n\n", "[message||-1|]\n");
    expect("data\ndata\n\n", "[message||-1|\n]\n");
}

static void test_comments(void **state)
{
    (void)state;
    expect(": hello\n\n:\n\n", "");
    expect(": one\ndata: x\n: two\n\n", "[message||-1|x]\n");
}

static void test_crlf_split_between_feeds(void **state)
{
    (void)state;
    /* If the "\n" after a "\r" that ended the previous feed were taken as a
     * line end of its own, it would be a blank line and split the event. */
    events e;
    events_init(&e);
    sift_sse_parser p;
    sift_sse_init(&p, 0);
    sift_err err = {0};
    assert_int_equal(sift_sse_feed(&p, "data: a\r", 8, on_event, &e, &err), 0);
    assert_int_equal(sift_sse_feed(&p, "\ndata: b\r", 9, on_event, &e, &err), 0);
    assert_int_equal(sift_sse_feed(&p, "\n", 1, on_event, &e, &err), 0);
    assert_int_equal(e.count, 0);
    assert_int_equal(sift_sse_feed(&p, "\r", 1, on_event, &e, &err), 0);
    assert_int_equal(e.count, 1);
    assert_int_equal(sift_sse_feed(&p, "\n", 1, on_event, &e, &err), 0);
    assert_int_equal(sift_sse_finish(&p, on_event, &e, &err), 0);
    assert_string_equal(e.log.data, "[message||-1|a\nb]\n");
    sift_sse_free(&p);
    sift_buf_free(&e.log);

    /* "\r\r" is two line ends, hence a blank line. */
    expect("data: a\r\rdata: b\r\r", "[message||-1|a]\n[message||-1|b]\n");
}

static void test_field_without_colon_and_space(void **state)
{
    (void)state;
    expect("data:nospace\n\n", "[message||-1|nospace]\n");
    expect("data:  two\n\n", "[message||-1| two]\n");
    expect("data: a:b: c\n\n", "[message||-1|a:b: c]\n");
    expect("event\ndata: x\n\n", "[message||-1|x]\n");
    expect("unknown: field\nDATA: upper\ndata: x\n\n", "[message||-1|x]\n");
}

static void test_bom(void **state)
{
    (void)state;
    expect("\xEF\xBB\xBF"
           "data: x\n\n",
           "[message||-1|x]\n");
    /* Only one BOM, only at the start: a second one is part of the name. */
    expect("\xEF\xBB\xBF\xEF\xBB\xBF"
           "data: x\n\n",
           "");
    /* Part of a BOM is not a BOM. */
    expect("\xEF\xBB"
           "data: x\n\ndata: y\n\n",
           "[message||-1|y]\n");
    expect("\xEF", "");
    /* BOM bytes later in the stream are data. */
    expect("data: \xEF\xBB\xBF\n\n", "[message||-1|\xEF\xBB\xBF]\n");

    /* Fed one byte at a time. */
    static const char in[] = "\xEF\xBB\xBF"
                             "data: z\n\n";
    size_t cuts[] = {1, 2, 3, 4};
    events e;
    events_init(&e);
    sift_err err = {0};
    assert_int_equal(parse_split(&e, in, strlen(in), cuts, 4, 0, &err), 0);
    assert_string_equal(e.log.data, "[message||-1|z]\n");
    sift_buf_free(&e.log);
}

static void test_event_id_retry(void **state)
{
    (void)state;
    expect("event: ping\nid: 7\ndata: x\n\ndata: y\n\n", "[ping|7|-1|x]\n[message|7|-1|y]\n");
    expect("id: 7\ndata: x\n\nid\ndata: y\n\n", "[message|7|-1|x]\n[message||-1|y]\n");
    /* An id with a NUL byte is ignored. */
    static const char nul_id[] = "id: 5\n\nid: a\0b\ndata: x\n\n";
    int rc;
    char *got = parse_whole(nul_id, sizeof(nul_id) - 1, 0, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(got, "[message|5|-1|x]\n");
    sift_free(got);
    expect("retry: 3000\ndata: x\n\nretry: 3x\ndata: y\n\nretry:\ndata: z\n\n",
           "[message||3000|x]\n[message||3000|y]\n[message||3000|z]\n");
    /* An event without data is not dispatched and its name is forgotten. */
    expect("event: foo\n\ndata: x\n\n", "[message||-1|x]\n");
}

static void test_missing_final_blank_line(void **state)
{
    (void)state;
    expect("data: x", "[message||-1|x]\n");
    expect("data: x\n", "[message||-1|x]\n");
    expect("data: x\r", "[message||-1|x]\n");
    expect("data: x\ndata: y", "[message||-1|x\ny]\n");
    expect("event: e\n", "");
    expect(": only a comment", "");

    /* The parser is reusable after finish. */
    events e;
    events_init(&e);
    sift_sse_parser p;
    sift_sse_init(&p, 0);
    sift_err err = {0};
    assert_int_equal(sift_sse_feed(&p, "id: 1\ndata: a", 13, on_event, &e, &err), 0);
    assert_int_equal(sift_sse_finish(&p, on_event, &e, &err), 0);
    assert_int_equal(sift_sse_feed(&p, "data: b\n\n", 9, on_event, &e, &err), 0);
    assert_int_equal(sift_sse_finish(&p, on_event, &e, &err), 0);
    assert_string_equal(e.log.data, "[message|1|-1|a]\n[message||-1|b]\n");
    assert_int_equal(sift_sse_count(&p), 2);
    sift_sse_free(&p);
    sift_buf_free(&e.log);
}

static void test_limits(void **state)
{
    (void)state;
    char line[200];
    memset(line, 'x', sizeof(line));
    for (int i = 0; i < 6; i++)
        line[i] = "data: "[i];
    line[sizeof(line) - 2] = '\n';
    line[sizeof(line) - 1] = '\n';

    /* A line over the limit, whole or byte by byte: SIFT_ETOOBIG and the
     * buffer never grows much past the limit. */
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        events e;
        events_init(&e);
        sift_sse_parser p;
        sift_sse_init(&p, 64);
        sift_err err = {0};
        int rc = 0;
        if (bytewise) {
            for (size_t i = 0; i < sizeof(line) && rc == 0; i++)
                rc = sift_sse_feed(&p, line + i, 1, on_event, &e, &err);
        } else {
            rc = sift_sse_feed(&p, line, sizeof(line), on_event, &e, &err);
        }
        assert_int_equal(rc, SIFT_ETOOBIG);
        assert_int_equal(err.code, SIFT_ETOOBIG);
        assert_non_null(strstr(err.msg, "64-byte limit"));
        assert_true(p.line.cap <= 2 * 64 + 64);
        assert_int_equal(e.count, 0);
        /* Stopped for good. */
        sift_err err2 = {0};
        assert_int_equal(sift_sse_feed(&p, "data: x\n\n", 9, on_event, &e, &err2), SIFT_ETOOBIG);
        assert_int_equal(sift_sse_finish(&p, on_event, &e, &err2), SIFT_ETOOBIG);
        assert_int_equal(e.count, 0);
        sift_sse_free(&p);
        sift_buf_free(&e.log);
    }

    /* Many short data lines adding up to more than the limit. */
    {
        sift_buf in;
        sift_buf_init(&in, 0);
        sift_buf_puts(&in, "data: ok\n\n");
        for (int i = 0; i < 20; i++)
            sift_buf_puts(&in, "data: 0123456789\n");
        sift_buf_puts(&in, "\n");
        events e;
        events_init(&e);
        sift_err err = {0};
        assert_int_equal(parse_split(&e, in.data, in.len, NULL, 0, 100, &err), SIFT_ETOOBIG);
        assert_non_null(strstr(err.msg, "SSE event"));
        assert_int_equal(e.count, 1);
        sift_buf_free(&e.log);
        sift_buf_free(&in);
    }

    /* An event exactly at the limit passes: 10 data bytes, limit 10. */
    {
        events e;
        events_init(&e);
        sift_err err = {0};
        static const char in[] = "data: 0123\ndata: 1234\n\n";
        /* data "0123\n1234\n" is 10 bytes buffered */
        assert_int_equal(parse_split(&e, in, strlen(in), NULL, 0, 10, &err), 0);
        assert_string_equal(e.log.data, "[message||-1|0123\n1234]\n");
        sift_buf_free(&e.log);
    }

    /* Comments are not buffered, whatever their size. */
    {
        char *big = malloc(100000);
        assert_non_null(big);
        memset(big, 'c', 100000);
        big[0] = ':';
        events e;
        events_init(&e);
        sift_sse_parser p;
        sift_sse_init(&p, 64);
        sift_err err = {0};
        for (size_t i = 0; i < 100000; i += 1000)
            assert_int_equal(sift_sse_feed(&p, big + i, 1000, on_event, &e, &err), 0);
        assert_int_equal(p.line.cap, 0);
        assert_int_equal(sift_sse_feed(&p, "\ndata: x\n\n", 10, on_event, &e, &err), 0);
        assert_int_equal(e.count, 1);
        sift_sse_free(&p);
        sift_buf_free(&e.log);
        free(big);
    }
}

static void test_callback_stops(void **state)
{
    (void)state;
    events e;
    events_init(&e);
    e.stop_after = 2;
    sift_sse_parser p;
    sift_sse_init(&p, 0);
    sift_err err = {0};
    static const char in[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_int_equal(sift_sse_feed(&p, in, strlen(in), on_event, &e, &err), SIFT_ECANCELED);
    assert_int_equal(e.count, 2);
    assert_int_equal(err.code, SIFT_ECANCELED);
    assert_int_equal(sift_sse_feed(&p, in, strlen(in), on_event, &e, &err), SIFT_ECANCELED);
    assert_int_equal(e.count, 2);
    sift_sse_reset(&p);
    e.stop_after = 0;
    assert_int_equal(sift_sse_feed(&p, in, strlen(in), on_event, &e, &err), 0);
    assert_int_equal(e.count, 5);
    sift_sse_free(&p);
    sift_buf_free(&e.log);
}

/* Allocation failures end the stream with SIFT_ENOMEM, never a crash, at
 * whichever allocation they hit. */
static void test_out_of_memory(void **state)
{
    (void)state;
    static const char in[] = "event: e\nid: 1\ndata: partial line split";
    static const char rest[] = " here\ndata: more\n\n";
    int saw_enomem = 0;
    for (long n = 0; n < 10; n++) {
        sift_sse_parser p;
        sift_sse_init(&p, 0);
        sift_err err = {0};
        sift_mem_fail_after(n);
        int rc = sift_sse_feed(&p, in, strlen(in), NULL, NULL, &err);
        if (rc == 0)
            rc = sift_sse_feed(&p, rest, strlen(rest), NULL, NULL, &err);
        sift_mem_fail_after(-1);
        assert_true(rc == 0 || rc == SIFT_ENOMEM);
        if (rc == SIFT_ENOMEM) {
            saw_enomem = 1;
            assert_int_equal(err.code, SIFT_ENOMEM);
            assert_int_equal(sift_sse_feed(&p, "x", 1, NULL, NULL, NULL), SIFT_ENOMEM);
        }
        sift_sse_free(&p);
    }
    assert_true(saw_enomem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_whole),
        cmocka_unit_test(test_openai_every_split),
        cmocka_unit_test(test_openai_byte_by_byte),
        cmocka_unit_test(test_line_endings_every_split),
        cmocka_unit_test(test_mixed_random_splits),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_crlf_split_between_feeds),
        cmocka_unit_test(test_field_without_colon_and_space),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_event_id_retry),
        cmocka_unit_test(test_missing_final_blank_line),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
