/* Conversation memory: trimming under message and token budgets (with the
 * tool-call invariants checked at every budget), and the stored JSON form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"
#include "sift/memory.h"
#include "sift/model.h"

typedef struct fixture {
    sift_arena *arena;
    sift_conv conv;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->arena = sift_arena_new(0);
    sift_conv_init(&f->conv, f->arena);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sift_arena_free(f->arena);
    free(f);
    return 0;
}

static void must(int rc, const sift_err *err)
{
    if (rc)
        fail_msg("unexpected error %d: %s", rc, err->msg);
}

static void add(sift_conv *c, sift_role role, const char *text)
{
    sift_err err = {0};
    sift_message m = {.role = role, .content = text, .content_len = strlen(text)};
    must(sift_conv_append(c, &m, &err), &err);
}

static void add_calls(sift_conv *c, const char *const *ids, size_t n)
{
    sift_tool_call calls[8];
    assert_true(n <= 8);
    for (size_t k = 0; k < n; k++)
        calls[k] = (sift_tool_call){.id = ids[k],
                                    .name = "check_inventory",
                                    .arguments = "{\"sku\":\"A1\"}",
                                    .arguments_len = 12};
    sift_err err = {0};
    must(sift_conv_add_assistant(c, NULL, calls, n, &err), &err);
}

static void add_result(sift_conv *c, const char *id, const char *text)
{
    sift_err err = {0};
    must(sift_conv_add_tool_result(c, id, text, &err), &err);
}

/* A shop conversation: system, three turns, one with three parallel tool
 * calls, and an unfinished current turn that also calls tools. */
static void build_shop(sift_conv *c)
{
    static const char *const three[] = {"call_a", "call_b", "call_c"};
    static const char *const one[] = {"call_d"};
    static const char *const two[] = {"call_e", "call_f"};
    add(c, SIFT_ROLE_SYSTEM, "You are a shop assistant.");
    add(c, SIFT_ROLE_USER, "running shoes size 42");
    add_calls(c, three, 3);
    add_result(c, "call_a", "{\"HAN\":3}");
    add_result(c, "call_b", "{\"DAD\":0}");
    add_result(c, "call_c", "{\"SGN\":7}");
    add(c, SIFT_ROLE_ASSISTANT, "Pegasus 40 is in stock in Hanoi and Saigon.");
    add(c, SIFT_ROLE_USER, "and the price?");
    add_calls(c, one, 1);
    add_result(c, "call_d", "{\"VND\":3200000}");
    add(c, SIFT_ROLE_ASSISTANT, "3,200,000 VND.");
    add(c, SIFT_ROLE_USER, "anything cheaper in blue?");
    add_calls(c, two, 2);
    add_result(c, "call_e", "[]");
    add_result(c, "call_f", "[\"NIKE-REV6-42\"]");
}

static bool has_call_id(const sift_message *m, const char *id)
{
    for (size_t k = 0; k < m->n_tool_calls; k++)
        if (strcmp(m->tool_calls[k].id, id) == 0)
            return true;
    return false;
}

/* The invariants every trim result must satisfy, checked on the kept list. */
static void check_invariants(const sift_message *msgs, size_t n, size_t first)
{
    size_t n_sys = sift_memory_system_prefix(msgs, n);
    assert_true(first >= n_sys && first <= n);
    const sift_message *kept[64] = {0};
    size_t nk = 0;
    for (size_t i = 0; i < n; i++)
        if (i < n_sys || i >= first)
            kept[nk++] = &msgs[i];
    /* system kept */
    for (size_t i = 0; i < n_sys; i++)
        assert_ptr_equal(kept[i], &msgs[i]);
    /* newest user kept */
    size_t last_user = n;
    for (size_t i = n; i-- > 0;)
        if (msgs[i].role == SIFT_ROLE_USER) {
            last_user = i;
            break;
        }
    if (last_user < n)
        assert_true(first <= last_user);
    for (size_t i = 0; i < nk; i++) {
        const sift_message *m = kept[i];
        if (m->role == SIFT_ROLE_TOOL) {
            /* its call is kept, before it */
            bool found = false;
            for (size_t k = 0; k < i && !found; k++)
                found = has_call_id(kept[k], m->tool_call_id);
            assert_true(found);
        }
        for (size_t c = 0; c < m->n_tool_calls; c++) {
            /* every result is kept, after it */
            bool found = false;
            for (size_t k = i + 1; k < nk && !found; k++)
                found = kept[k]->role == SIFT_ROLE_TOOL &&
                        strcmp(kept[k]->tool_call_id, m->tool_calls[c].id) == 0;
            assert_true(found);
        }
    }
}

static size_t kept_tokens(const sift_message *msgs, size_t n, size_t first)
{
    size_t n_sys = sift_memory_system_prefix(msgs, n), t = 0;
    for (size_t i = 0; i < n; i++)
        if (i < n_sys || i >= first)
            t += sift_memory_estimate_tokens(&msgs[i]);
    return t;
}

static void test_estimate(void **state)
{
    (void)state;
    sift_message m = {.role = SIFT_ROLE_USER, .content = "abcdefgh", .content_len = 8};
    assert_int_equal(sift_memory_estimate_tokens(&m), 4 + 2);
    m.content_len = 9;
    assert_int_equal(sift_memory_estimate_tokens(&m), 4 + 3);
    m.content_len = 0;
    assert_int_equal(sift_memory_estimate_tokens(&m), 4);
    sift_tool_call c = {.id = "ab", .name = "cd", .arguments = "{}", .arguments_len = 2};
    sift_message a = {.role = SIFT_ROLE_ASSISTANT, .tool_calls = &c, .n_tool_calls = 1};
    assert_int_equal(sift_memory_estimate_tokens(&a), 4 + 2);
}

static void test_message_budget(void **state)
{
    fixture *f = *state;
    sift_conv *c = &f->conv;
    add(c, SIFT_ROLE_SYSTEM, "sys");
    add(c, SIFT_ROLE_USER, "u1");
    add(c, SIFT_ROLE_ASSISTANT, "a1");
    add(c, SIFT_ROLE_USER, "u2");
    add(c, SIFT_ROLE_ASSISTANT, "a2");
    add(c, SIFT_ROLE_USER, "u3");
    size_t first = 99;
    sift_memory_budget b = {0};
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 1); /* zero budget: no limit */
    b.max_messages = 6;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 1);
    b.max_messages = 5; /* dropping u1 alone would start at a1: whole turn goes */
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 3);
    b.max_messages = 4;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 3);
    b.max_messages = 2;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 5);
    b.max_messages = 1; /* system alone fills it; the newest question stays anyway */
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 5);

    size_t dropped = 0;
    b.max_messages = 4;
    assert_int_equal(sift_memory_trim_conv(c, &b, &dropped), 0);
    assert_int_equal(dropped, 2);
    assert_int_equal(c->len, 4);
    assert_string_equal(c->msgs[0].content, "sys");
    assert_string_equal(c->msgs[1].content, "u2");
    assert_string_equal(c->msgs[3].content, "u3");

    assert_int_equal(sift_memory_trim(NULL, 3, &b, &first), SIFT_EINVAL);
    assert_int_equal(sift_memory_trim(c->msgs, c->len, NULL, &first), SIFT_EINVAL);
    assert_int_equal(sift_memory_trim(NULL, 0, &b, &first), 0);
    assert_int_equal(first, 0);
}

static size_t len_counter(void *ud, const sift_message *m)
{
    (*(int *)ud)++;
    return m->content_len;
}

static void test_token_budget(void **state)
{
    fixture *f = *state;
    sift_conv *c = &f->conv;
    add(c, SIFT_ROLE_SYSTEM, "0123456789");              /* 10 */
    add(c, SIFT_ROLE_USER, "aaaaaaaaaa");                /* 10 */
    add(c, SIFT_ROLE_ASSISTANT, "bbbbbbbbbbbbbbbbbbbb"); /* 20 */
    add(c, SIFT_ROLE_USER, "ccccc");                     /* 5 */
    add(c, SIFT_ROLE_ASSISTANT, "ddddd");                /* 5 */
    add(c, SIFT_ROLE_USER, "eeeee");                     /* 5 */
    int calls = 0;
    sift_memory_budget b = {.count = len_counter, .count_ud = &calls};
    size_t first = 0;
    b.max_tokens = 55;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 1);
    assert_true(calls > 0);
    b.max_tokens = 54; /* must drop u1, and so its answer */
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 3);
    b.max_tokens = 25;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 3);
    b.max_tokens = 24;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 5);
    b.max_tokens = 1;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 5);
    /* both limits: the tighter one wins */
    b.max_tokens = 100;
    b.max_messages = 3;
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &b, &first), 0);
    assert_int_equal(first, 5);

    /* the default estimator */
    sift_memory_budget d = {.max_tokens = 7 + 6 + 6 + 6};
    assert_int_equal(sift_memory_trim(c->msgs, c->len, &d, &first), 0);
    assert_int_equal(first, 3);
}

/* At every message and token budget the kept list is a valid history. */
static void test_tool_units_never_split(void **state)
{
    fixture *f = *state;
    sift_conv *c = &f->conv;
    build_shop(c);
    size_t n = c->len;
    size_t prev = n + 1;
    for (size_t budget = 0; budget <= n + 1; budget++) {
        sift_memory_budget b = {.max_messages = budget};
        size_t first = 0;
        assert_int_equal(sift_memory_trim(c->msgs, n, &b, &first), 0);
        check_invariants(c->msgs, n, first);
        size_t kept = 1 + (n - first);
        size_t last_user = 11;
        assert_int_equal(c->msgs[last_user].role, SIFT_ROLE_USER);
        if (budget && first < last_user)
            assert_true(kept <= budget);
        if (budget == 0)
            assert_int_equal(first, 1);
        /* oldest first: a bigger budget never keeps less */
        if (budget > 1)
            assert_true(first <= prev);
        prev = first;
    }
    size_t total = kept_tokens(c->msgs, n, 1);
    size_t prevt = 0;
    for (size_t budget = 0; budget <= total + 1; budget++) {
        sift_memory_budget b = {.max_tokens = budget};
        size_t first = 0;
        assert_int_equal(sift_memory_trim(c->msgs, n, &b, &first), 0);
        check_invariants(c->msgs, n, first);
        if (budget && first < 11)
            assert_true(kept_tokens(c->msgs, n, first) <= budget);
        if (budget > 1)
            assert_true(first <= prevt);
        prevt = first;
    }

    /* The three parallel results: whatever the budget, a kept result means
     * the assistant call and all three results are kept. */
    for (size_t budget = 1; budget <= n; budget++) {
        sift_memory_budget b = {.max_messages = budget};
        size_t first = 0;
        assert_int_equal(sift_memory_trim(c->msgs, n, &b, &first), 0);
        assert_true(first <= 2 || first > 5);
    }
}

/* Without user messages (a graph run), the cut falls between units. */
static void test_units_without_user(void **state)
{
    fixture *f = *state;
    sift_conv *c = &f->conv;
    static const char *const three[] = {"x1", "x2", "x3"};
    static const char *const one[] = {"y1"};
    add(c, SIFT_ROLE_SYSTEM, "plan");
    add_calls(c, three, 3);
    add_result(c, "x1", "r1");
    add_result(c, "x2", "r2");
    add_result(c, "x3", "r3");
    add_calls(c, one, 1);
    add_result(c, "y1", "r4");
    add(c, SIFT_ROLE_ASSISTANT, "done");
    size_t n = c->len;
    for (size_t budget = 0; budget <= n + 1; budget++) {
        sift_memory_budget b = {.max_messages = budget};
        size_t first = 0;
        assert_int_equal(sift_memory_trim(c->msgs, n, &b, &first), 0);
        check_invariants(c->msgs, n, first);
        if (budget)
            assert_true(1 + n - first <= budget || first == n);
    }
    sift_memory_budget b = {.max_messages = 4};
    size_t first = 0;
    assert_int_equal(sift_memory_trim(c->msgs, n, &b, &first), 0);
    assert_int_equal(first, 5); /* y1 call, its result, "done" */
    b.max_messages = 3;
    assert_int_equal(sift_memory_trim(c->msgs, n, &b, &first), 0);
    assert_int_equal(first, 7); /* the y1 unit cannot be halved */
}

static void test_roundtrip(void **state)
{
    fixture *f = *state;
    sift_conv *c = &f->conv;
    build_shop(c);
    const char *tricky = "quote \" backslash \\ newline \n tab \t ctl \x01 slash / "
                         "Tiếng Việt giày 42 — 😀 日本";
    add(c, SIFT_ROLE_ASSISTANT, tricky);
    sift_tool_call tc = {.id = "call_\"q\"",
                         .name = "get_price",
                         .arguments = "{\"sku\":\"giày\\n\",\"n\":[1,2]}",
                         .arguments_len = strlen("{\"sku\":\"giày\\n\",\"n\":[1,2]}")};
    sift_err err = {0};
    must(sift_conv_add_assistant(c, "thinking", &tc, 1, &err), &err);
    add_result(c, "call_\"q\"", "");

    sift_buf b;
    sift_buf_init(&b, 0);
    must(sift_memory_to_json(c->msgs, c->len, &b, &err), &err);
    assert_non_null(strstr(b.data, "\"content\":null"));

    sift_conv back;
    sift_conv_init(&back, f->arena);
    must(sift_memory_from_json(b.data, b.len, &back, &err), &err);
    assert_int_equal(back.len, c->len);
    for (size_t i = 0; i < c->len; i++) {
        const sift_message *x = &c->msgs[i], *y = &back.msgs[i];
        assert_int_equal(x->role, y->role);
        if (x->content) {
            assert_non_null(y->content);
            assert_int_equal(x->content_len, y->content_len);
            assert_memory_equal(x->content, y->content, x->content_len);
        } else {
            assert_null(y->content);
        }
        if (x->tool_call_id)
            assert_string_equal(x->tool_call_id, y->tool_call_id);
        assert_int_equal(x->n_tool_calls, y->n_tool_calls);
        for (size_t k = 0; k < x->n_tool_calls; k++) {
            assert_string_equal(x->tool_calls[k].id, y->tool_calls[k].id);
            assert_string_equal(x->tool_calls[k].name, y->tool_calls[k].name);
            assert_int_equal(x->tool_calls[k].arguments_len, y->tool_calls[k].arguments_len);
            assert_memory_equal(x->tool_calls[k].arguments, y->tool_calls[k].arguments,
                                x->tool_calls[k].arguments_len);
        }
    }
    /* Serialising the loaded copy gives the same bytes. */
    sift_buf b2;
    sift_buf_init(&b2, 0);
    must(sift_memory_to_json(back.msgs, back.len, &b2, &err), &err);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);

    /* An empty conversation, and whitespace around the array. */
    sift_buf_reset(&b2);
    must(sift_memory_to_json(NULL, 0, &b2, &err), &err);
    assert_string_equal(b2.data, "[]");
    sift_conv e;
    sift_conv_init(&e, f->arena);
    must(sift_memory_from_json(" [ ]\n", 5, &e, &err), &err);
    assert_int_equal(e.len, 0);

    /* A limit too small: error, buffer unchanged. */
    sift_buf small;
    sift_buf_init(&small, 64);
    assert_int_equal(sift_memory_to_json(c->msgs, c->len, &small, &err), SIFT_ETOOBIG);
    assert_int_equal(small.len, 0);
    /* A message that does not fit its role is refused before anything is written. */
    sift_message badm = {.role = SIFT_ROLE_TOOL, .content = "x", .content_len = 1};
    assert_int_equal(sift_memory_to_json(&badm, 1, &b2, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "tool_call_id"));
    sift_buf_free(&small);
    sift_buf_free(&b);
    sift_buf_free(&b2);
}

static void test_corrupt_rejected(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        {"", "invalid JSON"},
        {"[{\"role\":\"user\",\"content\":\"hi\"}", "invalid JSON"},
        {"{\"role\":\"user\"}", "expected a JSON array"},
        {"[1]", "messages[0]: expected an object"},
        {"[{\"role\":\"admin\",\"content\":\"x\"}]", "messages[0].role"},
        {"[{\"content\":\"x\"}]", "messages[0].role"},
        {"[{\"role\":\"user\",\"content\":null}]", "messages[0].content: expected a string"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]", "messages[0].content"},
        {"[{\"role\":\"assistant\",\"content\":5}]", "expected a string or null"},
        {"[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]", "only assistant"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":{}}]", "expected an array"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\","
         "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]",
         "messages[0].tool_calls[0].id"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\","
         "\"arguments\":{}}}]}]",
         "tool_calls[0].function.arguments: expected a string"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"arguments\":"
         "\"{}\"}}]}]",
         "function.name"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"type\":\"code\",\"function\":{"
         "\"name\":\"f\",\"arguments\":\"{}\"}}]}]",
         ".type"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\","
         "\"arguments\":\"\"}},{\"id\":\"a\",\"function\":{\"name\":\"g\",\"arguments\":\"\"}}]}]",
         "the same id twice"},
        {"[{\"role\":\"tool\",\"content\":\"r\"}]", "messages[0].tool_call_id"},
        {"[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"tool\",\"tool_call_id\":\"zz\","
         "\"content\":\"r\"}]",
         "messages[1].tool_call_id: answers no tool call"},
        {"[{\"role\":\"user\",\"content\":\"x\"}] trailing", "unexpected data after"},
    };
    sift_conv *c = &f->conv;
    add(c, SIFT_ROLE_USER, "already here");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sift_err err = {0};
        int rc = sift_memory_from_json(cases[i].json, strlen(cases[i].json), c, &err);
        if (rc != SIFT_EPROTO || !strstr(err.msg, cases[i].want))
            fail_msg("case %zu (%s): rc %d, message \"%s\", wanted \"%s\"", i, cases[i].json, rc,
                     err.msg, cases[i].want);
        assert_int_equal(err.code, SIFT_EPROTO);
        assert_int_equal(c->len, 1); /* unchanged */
    }
    /* Bytes that are not text at all. */
    char junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 37 + 11);
    sift_err err = {0};
    assert_int_equal(sift_memory_from_json(junk, sizeof(junk), c, &err), SIFT_EPROTO);
    assert_int_equal(sift_memory_from_json(NULL, 0, c, &err), SIFT_EPROTO);
    assert_int_equal(c->len, 1);
}

static void test_oom(void **state)
{
    (void)state;
    /* Every allocation fails in turn; each attempt either succeeds or fails
     * cleanly with ENOMEM, leaving nothing behind (ASan checks leaks). */
    sift_arena *a = sift_arena_new(0);
    assert_non_null(a);
    sift_conv c;
    sift_conv_init(&c, a);
    build_shop(&c);
    sift_err err = {0};
    bool ok = false;
    for (long n = 0; n < 400 && !ok; n++) {
        sift_buf b;
        sift_buf_init(&b, 0);
        sift_mem_fail_after(n);
        int rc = sift_memory_to_json(c.msgs, c.len, &b, &err);
        sift_mem_fail_after(-1);
        if (rc) {
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_int_equal(b.len, 0);
        }
        ok = rc == 0;
        sift_buf_free(&b);
    }
    assert_true(ok);

    sift_buf json;
    sift_buf_init(&json, 0);
    must(sift_memory_to_json(c.msgs, c.len, &json, &err), &err);
    ok = false;
    for (long n = 0; n < 400 && !ok; n++) {
        sift_arena *la = sift_arena_new(256);
        assert_non_null(la);
        sift_conv back;
        sift_conv_init(&back, la);
        sift_mem_fail_after(n);
        int rc = sift_memory_from_json(json.data, json.len, &back, &err);
        sift_mem_fail_after(-1);
        if (rc) {
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_int_equal(back.len, 0);
        } else {
            assert_int_equal(back.len, c.len);
            ok = true;
        }
        sift_arena_free(la);
    }
    assert_true(ok);
    sift_buf_free(&json);
    sift_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate),
        cmocka_unit_test_setup_teardown(test_message_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_units_never_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_units_without_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_rejected, setup, teardown),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
