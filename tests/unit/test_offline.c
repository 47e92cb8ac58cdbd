/* The offline provider: the planner behind the model interface, streamed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sift/provider.h"

static uv_loop_t loop;

struct rec {
    int tokens;
    char text[4096];
    size_t text_len;
    int calls_started;
    char call_names[8][32];
    int done;
    int code;
    char msg[SIFT_ERR_MSG_MAX];
    sift_chat_result result;
    int cancel_after; /* > 0: cancel `ctx` after this many tokens */
    sift_ctx *ctx;
    int in_cancel;
    int done_inside_cancel;
    sift_model *free_model_in_done;
};

static void on_token(void *ud, const char *text, size_t len)
{
    struct rec *r = ud;
    assert_int_equal(r->done, 0);
    memcpy(r->text + r->text_len, text, len);
    r->text_len += len;
    r->tokens++;
    if (r->cancel_after && r->tokens == r->cancel_after) {
        r->in_cancel = 1;
        sift_ctx_cancel(r->ctx, SIFT_ECANCELED, "client disconnected");
        r->in_cancel = 0;
    }
}

static void on_call(void *ud, size_t index, const char *id, const char *name)
{
    struct rec *r = ud;
    assert_int_equal((int)index, r->calls_started);
    snprintf(r->call_names[r->calls_started++ % 8], 32, "%s", name);
}

static void on_done(void *ud, int code, const sift_chat_result *res, const sift_err *err)
{
    struct rec *r = ud;
    r->done++;
    r->code = code;
    if (r->in_cancel)
        r->done_inside_cancel = 1;
    if (res)
        r->result = *res;
    if (err)
        snprintf(r->msg, sizeof r->msg, "%s", err->msg);
    if (r->free_model_in_done)
        sift_model_free(r->free_model_in_done);
}

static const sift_model_callbacks cbs = {on_token, on_call, on_done};

static void generate(sift_model *m, sift_ctx *ctx, sift_arena *a, sift_conv *c, struct rec *r)
{
    sift_chat_request req = {.model = NULL, .messages = c->msgs, .n_messages = c->len};
    sift_err err = {0};
    memset(r, 0, offsetof(struct rec, cancel_after));
    assert_int_equal(sift_model_generate(m, ctx, a, &req, &cbs, r, &err), 0);
    assert_int_equal(r->done, 0); /* never synchronously */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r->done, 1);
}

static const char search_result[] =
    "{\"products\":[{\"sku\":\"NIKE-PEG40-42\",\"title\":\"Nike Pegasus 40 Running Shoe\","
    "\"brand\":\"Nike\",\"category\":\"Footwear > Running\",\"attributes\":{\"size\":\"42\"}}],"
    "\"total\":1}";

static void test_nike_scenario_streams_word_by_word(void **state)
{
    sift_arena *a = sift_arena_new(0);
    sift_model *m = sift_offline_new(&loop, NULL, NULL);
    assert_string_equal(sift_model_provider(m), "offline");
    assert_string_equal(sift_model_name(m), "sift-offline-rules");
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    struct rec r;
    memset(&r, 0, sizeof r);
    assert_int_equal(sift_conv_add_user(&c,
                                        "Find Nike running shoes size 42 and check if they are in "
                                        "stock at the Hanoi, Da Nang, and HCMC warehouses",
                                        &err),
                     0);
    generate(m, root, a, &c, &r);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.calls_started, 1);
    assert_string_equal(r.call_names[0], "search_products");
    assert_int_equal(r.result.finish, SIFT_FINISH_TOOL_CALLS);
    assert_int_equal(r.result.message.n_tool_calls, 1);
    sift_conv_add_assistant(&c, NULL, r.result.message.tool_calls, 1, &err);
    sift_conv_add_tool_result(&c, r.result.message.tool_calls[0].id, search_result, &err);

    generate(m, root, a, &c, &r);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.calls_started, 4); /* 3 warehouses + the price, in one turn */
    assert_int_equal(r.result.message.n_tool_calls, 4);
    const sift_tool_call *calls = r.result.message.tool_calls;
    sift_conv_add_assistant(&c, NULL, calls, 4, &err);
    static const char *stock[] = {"HAN", "DAD", "SGN"};
    int qty = 12;
    for (size_t i = 0; i < 4; i++) {
        char buf[256];
        if (!strcmp(calls[i].name, "check_inventory")) {
            const char *loc = strstr(calls[i].arguments, "\"location\":\"");
            assert_non_null(loc);
            snprintf(buf, sizeof buf,
                     "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":\"%.3s\","
                     "\"quantity\":%d}]}",
                     loc + 12, qty);
            qty -= 6;
        } else {
            assert_string_equal(calls[i].name, "get_price");
            snprintf(buf, sizeof buf,
                     "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3290000}");
        }
        sift_conv_add_tool_result(&c, calls[i].id, buf, &err);
    }
    (void)stock;

    generate(m, root, a, &c, &r);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.result.finish, SIFT_FINISH_STOP);
    assert_true(r.tokens > 10); /* word by word, not in one piece */
    assert_int_equal(r.text_len, r.result.message.content_len);
    assert_memory_equal(r.text, r.result.message.content, r.text_len);
    r.text[r.text_len] = '\0';
    assert_non_null(strstr(r.text, "NIKE-PEG40-42"));
    assert_non_null(strstr(r.text, "HAN"));
    assert_non_null(strstr(r.text, "SGN"));

    sift_model_free(m);
    sift_ctx_release(root);
    sift_arena_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* A conversation at its final step, so the answer streams. */
static void answer_conv(sift_conv *c)
{
    sift_err err = {0};
    sift_tool_call call = {"call_1", "search_products", "{\"query\":\"nike\"}", 16};
    sift_conv_add_user(c, "Nike running shoes size 42", &err);
    sift_conv_add_assistant(c, NULL, &call, 1, &err);
    sift_conv_add_tool_result(c, "call_1", search_result, &err);
    sift_tool_call price = {"call_2", "get_price", "{\"sku\":\"NIKE-PEG40-42\"}", 22};
    sift_conv_add_assistant(c, NULL, &price, 1, &err);
    sift_conv_add_tool_result(
        c, "call_2", "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3290000}", &err);
}

static void test_cancel_mid_stream(void **state)
{
    sift_arena *a = sift_arena_new(0);
    sift_model *m = sift_offline_new(&loop, NULL, NULL);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_conv c;
    sift_conv_init(&c, a);
    answer_conv(&c);
    struct rec r;
    memset(&r, 0, sizeof r);
    r.cancel_after = 3;
    r.ctx = root;
    sift_chat_request req = {.messages = c.msgs, .n_messages = c.len};
    sift_err err = {0};
    assert_int_equal(sift_model_generate(m, root, a, &req, &cbs, &r, &err), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.tokens, 3); /* nothing after the cancel */
    assert_int_equal(r.done, 1);
    assert_int_equal(r.done_inside_cancel, 0);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_string_equal(r.msg, "client disconnected");

    /* a context already done: refused, no callback */
    memset(&r, 0, sizeof r);
    assert_int_equal(sift_model_generate(m, root, a, &req, &cbs, &r, &err), SIFT_ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.done, 0);
    sift_model_free(m);
    sift_ctx_release(root);
    sift_arena_free(a);
}

static void test_free_with_generation_in_flight(void **state)
{
    sift_arena *a = sift_arena_new(0);
    sift_offline_opts opts = {.token_delay_ms = 1000};
    sift_model *m = sift_offline_new(&loop, &opts, NULL);
    sift_conv c;
    sift_conv_init(&c, a);
    answer_conv(&c);
    struct rec r;
    memset(&r, 0, sizeof r);
    sift_chat_request req = {.messages = c.msgs, .n_messages = c.len};
    assert_int_equal(sift_model_generate(m, NULL, a, &req, &cbs, &r, NULL), 0);
    uv_run(&loop, UV_RUN_ONCE); /* first word */
    sift_model_free(m);
    assert_int_equal(r.done, 0);
    uint64_t t0 = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(uv_now(&loop) - t0 < 500); /* did not wait for the next word */
    assert_int_equal(r.done, 1);
    assert_int_equal(r.code, SIFT_ECANCELED);
    assert_string_equal(r.msg, "the model was closed while the answer was pending");
    sift_arena_free(a);
}

static void test_free_model_inside_done(void **state)
{
    sift_arena *a = sift_arena_new(0);
    sift_model *m = sift_offline_new(&loop, NULL, NULL);
    sift_conv c;
    sift_conv_init(&c, a);
    answer_conv(&c);
    struct rec r;
    memset(&r, 0, sizeof r);
    r.free_model_in_done = m;
    sift_chat_request req = {.messages = c.msgs, .n_messages = c.len};
    assert_int_equal(sift_model_generate(m, NULL, a, &req, &cbs, &r, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.code, 0);
    sift_arena_free(a);
}

static int setup(void **state)
{
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nike_scenario_streams_word_by_word),
        cmocka_unit_test(test_cancel_mid_stream),
        cmocka_unit_test(test_free_with_generation_in_flight),
        cmocka_unit_test(test_free_model_inside_done),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
