/* Fuzz target for query understanding and the offline planner.
 *
 * The input is a shopper's message: it must parse, the filters must be valid
 * JSON, the keywords valid UTF-8, and a second parse must give the same
 * output. Then the same bytes drive a whole planner conversation, standing in
 * for the user's text and for every tool result (search, inventory, price),
 * so the result readers see arbitrary JSON and non-JSON. Every step must
 * succeed and every answer's tokens must add up to its text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/model.h"
#include "sift/planner.h"
#include "sift/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : 4;
        if (*p >= 0xF8 || (*p >= 0x80 && *p < 0xC2))
            return 0;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xC0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

static void render(const sift_query *q, sift_buf *b)
{
    if (sift_query_filters_json(q, b) != 0 || sift_query_summary(q, b) != 0)
        abort();
    sift_buf_puts(b, q->keywords);
}

static void check_answer(const sift_planner_step *s)
{
    size_t at = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        if (s->tokens[i].text != s->text + at)
            abort();
        at += s->tokens[i].len;
    }
    if (at != s->text_len)
        abort();
}

static void planner_run(const char *text, size_t size, sift_arena *a)
{
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    /* sift_conv_add_user wants a C string: the text up to its first NUL. */
    if (sift_conv_add_user(&c, text, &err) != 0)
        return;
    for (int step = 0; step < 4; step++) {
        sift_planner_step s;
        if (sift_planner_next(c.msgs, c.len, NULL, a, &s, &err) != 0)
            abort();
        if (s.kind == SIFT_PLAN_ANSWER) {
            check_answer(&s);
            return;
        }
        if (s.n_calls == 0 || sift_conv_add_assistant(&c, NULL, s.calls, s.n_calls, &err) != 0)
            abort();
        for (size_t i = 0; i < s.n_calls; i++) {
            cJSON *args = cJSON_Parse(s.calls[i].arguments);
            if (!cJSON_IsObject(args))
                abort();
            cJSON_Delete(args);
            sift_message m = {.role = SIFT_ROLE_TOOL,
                              .content = text,
                              .content_len = size,
                              .tool_call_id = s.calls[i].id};
            if (sift_conv_append(&c, &m, &err) != 0)
                return;
        }
    }
    abort(); /* the planner must answer within three steps */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    sift_arena *a = sift_arena_new(0);
    if (!a) {
        free(text);
        return 0;
    }

    sift_query q1, q2;
    if (sift_query_parse(text, size, a, &q1) != 0 || sift_query_parse(text, size, a, &q2) != 0)
        abort();
    if (!valid_utf8(q1.keywords))
        abort();
    sift_buf b1, b2;
    sift_buf_init(&b1, 0);
    sift_buf_init(&b2, 0);
    if (sift_query_filters_json(&q1, &b1) != 0)
        abort();
    cJSON *j = cJSON_Parse(b1.data);
    if (!cJSON_IsObject(j))
        abort();
    cJSON_Delete(j);
    sift_buf_reset(&b1);
    render(&q1, &b1);
    render(&q2, &b2);
    if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
        abort();
    sift_buf_free(&b1);
    sift_buf_free(&b2);

    planner_run(text, strlen(text), a);

    sift_arena_free(a);
    free(text);
    return 0;
}
