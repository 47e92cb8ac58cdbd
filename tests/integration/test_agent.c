/* The ReAct agent end to end: with the offline planner over the real shop
 * tools and the sample catalog, and with the OpenAI provider against the
 * mock LLM (parallel tools, deadline, max steps, loop detection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <unistd.h>

#include <cmocka.h>

#include "mock_llm.h"
#include "sift/agent.h"
#include "sift/shoptools.h"
#include "sift/store.h"

static uv_loop_t loop;

/* ---- what a run reported ---- */

struct seen {
    int done;
    int code;
    char message[SIFT_ERR_MSG_MAX];
    char answer[4096];
    int steps;
    int events;
    int events_after_done;
    int tokens;
    char streamed[4096]; /* the token texts, joined */
    size_t streamed_len;
    char kinds[256][16];
    char tools_started[16][32];
    int n_tools_started;
    int products;
    char error_code[32];
};

static void on_event(void *ud, const sift_event *ev)
{
    struct seen *s = ud;
    if (s->done)
        s->events_after_done++;
    if (s->events < 256)
        snprintf(s->kinds[s->events], 16, "%s", sift_event_name(ev->type));
    s->events++;
    if (ev->type == SIFT_EV_TOKEN) {
        s->tokens++;
        if (s->streamed_len + ev->text_len < sizeof s->streamed) {
            memcpy(s->streamed + s->streamed_len, ev->text, ev->text_len);
            s->streamed_len += ev->text_len;
            s->streamed[s->streamed_len] = '\0';
        }
    }
    if (ev->type == SIFT_EV_TOOL_STARTED && s->n_tools_started < 16)
        snprintf(s->tools_started[s->n_tools_started++], 32, "%s", ev->name);
    if (ev->type == SIFT_EV_PRODUCTS)
        s->products++;
    if (ev->type == SIFT_EV_ERROR)
        snprintf(s->error_code, sizeof s->error_code, "%s", sift_err_name(ev->code));
}

static void on_done(void *ud, const sift_agent_result *res)
{
    struct seen *s = ud;
    s->done++;
    s->code = res->code;
    s->steps = res->steps;
    if (res->message)
        snprintf(s->message, sizeof s->message, "%s", res->message);
    if (res->answer)
        snprintf(s->answer, sizeof s->answer, "%s", res->answer);
}

static void run_agent(sift_agent_opts *opts, const char *question, struct seen *s)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv conv;
    sift_conv_init(&conv, a);
    sift_err err = {0};
    assert_int_equal(sift_conv_add_system(&conv, "You help shoppers find products.", &err), 0);
    assert_int_equal(sift_conv_add_user(&conv, question, &err), 0);
    sift_ctx *root = sift_ctx_new_root(&loop);
    memset(s, 0, sizeof *s);
    opts->on_event = on_event;
    opts->udata = s;
    assert_int_equal(sift_agent_start(root, &conv, opts, on_done, s, &err), 0);
    assert_int_equal(s->done, 0); /* never inside start */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s->done, 1);
    assert_int_equal(s->events_after_done, 0);
    assert_string_equal(s->kinds[0], "run.started");
    assert_string_equal(s->kinds[s->events - 1], "run.finished");
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    sift_arena_free(a);
}

static const char nike_question[] = "Find Nike running shoes size 42 and check if they are in "
                                    "stock at the Hanoi, Da Nang, and HCMC warehouses";

/* ---- offline planner + real shop tools over the sample catalog ---- */

static void load(sift_store *st, const char *file, int kind)
{
    char path[1024];
    const char *src = getenv("SIFT_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/catalog/sample/%s", src ? src : ".", file);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    sift_err err = {0};
    sift_load_summary sum = {0};
    assert_int_equal(sift_catalog_load_jsonl(st, f, kind, NULL, &sum, &err), 0);
    assert_int_equal(sum.bad, 0);
    fclose(f);
}

static void test_offline_nike_scenario_over_the_sample_catalog(void **state)
{
    char db[] = "/tmp/sift-agent-XXXXXX";
    int fd = mkstemp(db);
    assert_true(fd >= 0);
    close(fd);
    sift_err err = {0};
    sift_store *st = NULL;
    assert_int_equal(sift_store_sqlite_open(db, NULL, &st, &err), 0);
    load(st, "products.jsonl", SIFT_CATALOG_PRODUCTS);
    load(st, "inventory.jsonl", SIFT_CATALOG_INVENTORY);
    load(st, "prices.jsonl", SIFT_CATALOG_PRICES);
    sift_store_close(st);

    sift_shop *shop = NULL;
    sift_shop_opts so = {.store_path = db};
    assert_int_equal(sift_shop_new(&so, &shop, &err), 0);
    sift_tool_registry *reg = sift_tool_registry_new();
    assert_int_equal(sift_shop_tools_register(reg, shop, &err), 0);
    sift_model *model = sift_offline_new(&loop, NULL, &err);

    struct seen s;
    sift_agent_opts opts = {.model = model, .tools = reg, .run_id = "r-offline"};
    run_agent(&opts, nike_question, &s);
    if (s.code)
        fail_msg("run failed: %s", s.message);
    assert_int_equal(s.steps, 3); /* search, inventory+price, answer */
    assert_string_equal(s.tools_started[0], "search_products");
    int inventory = 0, price = 0;
    for (int i = 1; i < s.n_tools_started; i++) {
        inventory += !strcmp(s.tools_started[i], "check_inventory");
        price += !strcmp(s.tools_started[i], "get_price");
    }
    assert_int_equal(inventory, 3); /* one per warehouse, in parallel */
    assert_int_equal(price, 1);
    assert_int_equal(s.products, 1);
    assert_true(s.tokens > 10);
    if (!strstr(s.answer, "size 42") && !strstr(s.answer, "-42"))
        fail_msg("the answer names no size 42 product: %s", s.answer);
    assert_non_null(strstr(s.answer, "HAN"));
    assert_non_null(strstr(s.answer, "DAD"));
    assert_non_null(strstr(s.answer, "SGN"));

    sift_model_free(model);
    sift_tool_registry_free(reg);
    uv_run(&loop, UV_RUN_DEFAULT);
    sift_shop_free(shop);
    /* the shop's read-only connections close last, and a read-only
     * connection cannot remove the WAL files, so they go here */
    char side[sizeof db + 4];
    unlink(db);
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
}

/* ---- OpenAI provider against the mock LLM ---- */

#define INV_FIELDS(F)                                                                              \
    F(STRING, sku, "Product SKU", SIFT_REQUIRED, .min_len = 1, .max_len = 64)                      \
    F(ENUM, location, "Warehouse code", SIFT_REQUIRED, .values = "HAN,DAD,SGN")
SIFT_TOOL_ARGS(inv_args, INV_FIELDS);

/* check_inventory answering after tool_delay_ms, unless cancelled */
struct inv_job {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_tool_job *job;
    char result[160];
};

static int tool_delay_ms = 5;
static int inflight, peak, cancelled, started;

static void inv_closed(uv_handle_t *h)
{
    free(h);
}

static void inv_timer(uv_timer_t *t)
{
    struct inv_job *j = (struct inv_job *)t;
    sift_ctx_remove_hook(&j->hook);
    inflight--;
    sift_tool_job_done(j->job, 0, j->result);
    uv_close((uv_handle_t *)&j->timer, inv_closed);
}

static void inv_cancel(sift_ctx_hook *h, const sift_err *cause)
{
    struct inv_job *j = (struct inv_job *)((char *)h - offsetof(struct inv_job, hook));
    uv_timer_stop(&j->timer);
    inflight--;
    cancelled++;
    sift_tool_job_fail(j->job, cause->code, "%s", cause->msg);
    uv_close((uv_handle_t *)&j->timer, inv_closed);
}

static void check_inventory(sift_tool_job *job, const struct inv_args *args)
{
    struct inv_job *j = calloc(1, sizeof *j);
    j->job = job;
    snprintf(j->result, sizeof j->result,
             "{\"sku\":\"%s\",\"warehouses\":[{\"code\":\"%s\",\"quantity\":7}]}", args->sku,
             args->location);
    started++;
    if (++inflight > peak)
        peak = inflight;
    uv_timer_init(&loop, &j->timer);
    if (sift_ctx_add_hook(job->ctx, &j->hook, inv_cancel)) {
        inflight--;
        sift_tool_job_fail(job, sift_ctx_err(job->ctx), "cancelled");
        uv_close((uv_handle_t *)&j->timer, inv_closed);
        return;
    }
    uv_timer_start(&j->timer, inv_timer, (uint64_t)tool_delay_ms, 0);
}
SIFT_TOOL_DEFINE(check_inventory, "Stock of a SKU in one warehouse", inv_args, check_inventory);

struct mock_env {
    mock_llm *mock;
    sift_http_client *http;
    sift_model *model;
    sift_tool_registry *reg;
};

static void env_up(struct mock_env *e)
{
    sift_err err = {0};
    e->mock = mock_llm_start(1, &err);
    assert_non_null(e->mock);
    e->http = sift_http_client_new(&loop, NULL, &err);
    assert_non_null(e->http);
    sift_openai_opts o = {.base_url = mock_llm_base_url(e->mock), .model = "mock"};
    e->model = sift_openai_new(&loop, e->http, &o, &err);
    assert_non_null(e->model);
    e->reg = sift_tool_registry_new();
    assert_int_equal(sift_tool_registry_add(e->reg, &check_inventory_tool, &err), 0);
    inflight = peak = cancelled = started = 0;
}

static void env_down(struct mock_env *e)
{
    sift_model_free(e->model);
    sift_http_client_close(e->http, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    sift_tool_registry_free(e->reg);
    mock_llm_stop(e->mock);
}

static void test_three_parallel_tools_then_streamed_answer(void **state)
{
    struct mock_env e;
    env_up(&e);
    /* a word every 2 ms: each arrives in a read of its own */
    static const mock_seed_opts seed = {.ttft_ms = 5, .token_delay_ms = 2};
    mock_llm_set_responder(e.mock, mock_llm_seed_responder, (void *)&seed);
    tool_delay_ms = 20;
    struct seen s;
    sift_agent_opts opts = {.model = e.model, .tools = e.reg, .run_id = "r-seed"};
    run_agent(&opts, nike_question, &s);
    if (s.code)
        fail_msg("run failed: %s", s.message);
    assert_int_equal(started, 3);
    assert_int_equal(peak, 3); /* all three in flight at once */
    assert_int_equal(s.steps, 2);
    assert_true(s.tokens > 30); /* streamed word by word */
    assert_string_equal(s.answer, mock_llm_seed_answer);
    assert_string_equal(s.streamed, mock_llm_seed_answer);
    /* the second request carried the three tool results */
    char *body = mock_llm_request_body(e.mock, 1);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"role\":\"tool\""));
    assert_non_null(strstr(body, "quantity"));
    free(body);
    env_down(&e);
}

/* With no delay between words, the words that arrive in one read share one
 * token event (sift_stream_set_batch); the text is the same. */
static void test_streamed_answer_without_delay(void **state)
{
    struct mock_env e;
    env_up(&e);
    static const mock_seed_opts seed = {.ttft_ms = 5};
    mock_llm_set_responder(e.mock, mock_llm_seed_responder, (void *)&seed);
    tool_delay_ms = 1;
    struct seen s;
    sift_agent_opts opts = {.model = e.model, .tools = e.reg, .run_id = "r-fast"};
    run_agent(&opts, nike_question, &s);
    if (s.code)
        fail_msg("run failed: %s", s.message);
    assert_true(s.tokens >= 1);
    assert_string_equal(s.answer, mock_llm_seed_answer);
    assert_string_equal(s.streamed, mock_llm_seed_answer);
    env_down(&e);
}

static void test_deadline_cancels_tools_in_flight(void **state)
{
    struct mock_env e;
    env_up(&e);
    static const mock_seed_opts seed = {.ttft_ms = 1};
    mock_llm_set_responder(e.mock, mock_llm_seed_responder, (void *)&seed);
    tool_delay_ms = 10000;
    struct seen s;
    sift_agent_opts opts = {.model = e.model, .tools = e.reg, .deadline_ms = 300};
    uint64_t t0 = uv_now(&loop);
    run_agent(&opts, nike_question, &s);
    assert_true(uv_now(&loop) - t0 < 3000);
    assert_int_equal(s.code, SIFT_ETIMEDOUT);
    assert_string_equal(s.error_code, "deadline_exceeded");
    assert_int_equal(started, 3);
    assert_int_equal(cancelled, 3); /* every tool stopped at once */
    assert_int_equal(inflight, 0);
    assert_int_equal(mock_llm_requests(e.mock), 1); /* no model call after */

    /* memory is back to its baseline: a second run that hits the deadline
     * leaves the heap where the first left it (pools and caches warmed up
     * by the first). mallinfo2 reads glibc's heap; under ASan it reads 0
     * and the leak checker does this job instead. */
    size_t base = mallinfo2().uordblks;
    for (int i = 0; i < 3; i++) {
        run_agent(&opts, nike_question, &s);
        assert_int_equal(s.code, SIFT_ETIMEDOUT);
    }
    size_t after = mallinfo2().uordblks;
    if (after > base + 64 * 1024)
        fail_msg("heap grew from %zu to %zu bytes over three cancelled runs", base, after);
    env_down(&e);
}

static void test_max_steps(void **state)
{
    struct mock_env e;
    env_up(&e);
    static const char *locs[] = {"HAN", "DAD", "SGN"};
    char args[3][64];
    mock_tool_call calls[3];
    for (int i = 0; i < 3; i++) {
        snprintf(args[i], sizeof args[i], "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"%s\"}",
                 locs[i]);
        calls[i] = (mock_tool_call){"call_x", "check_inventory", args[i], 2};
        mock_reply r = {.tool_calls = &calls[i], .n_tool_calls = 1};
        mock_llm_push(e.mock, &r);
    }
    tool_delay_ms = 1;
    struct seen s;
    sift_agent_opts opts = {.model = e.model, .tools = e.reg, .max_steps = 2};
    run_agent(&opts, nike_question, &s);
    assert_int_equal(s.code, SIFT_ELIMIT);
    assert_string_equal(s.message, "max steps (2) reached without an answer");
    assert_string_equal(s.error_code, "limit_reached");
    assert_int_equal(mock_llm_requests(e.mock), 2);
    env_down(&e);
}

static void test_loop_is_nudged_then_stopped(void **state)
{
    struct mock_env e;
    env_up(&e);
    mock_tool_call call = {"call_1", "check_inventory",
                           "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}", 3};
    mock_reply r = {.tool_calls = &call, .n_tool_calls = 1};
    mock_llm_set_default(e.mock, &r);
    tool_delay_ms = 1;
    struct seen s;
    sift_agent_opts opts = {.model = e.model, .tools = e.reg, .loop_limit = 2};
    run_agent(&opts, nike_question, &s);
    assert_int_equal(s.code, SIFT_ELIMIT);
    assert_non_null(strstr(s.message, "stopped a loop"));
    assert_int_equal(started, 1); /* the repeats were never run */
    assert_int_equal(mock_llm_requests(e.mock), 3);
    char *body = mock_llm_request_body(e.mock, 2); /* the model was nudged */
    assert_non_null(body);
    assert_non_null(strstr(body, "repeated_call"));
    free(body);
    env_down(&e);
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
        cmocka_unit_test(test_offline_nike_scenario_over_the_sample_catalog),
        cmocka_unit_test(test_three_parallel_tools_then_streamed_answer),
        cmocka_unit_test(test_streamed_answer_without_delay),
        cmocka_unit_test(test_deadline_cancels_tools_in_flight),
        cmocka_unit_test(test_max_steps),
        cmocka_unit_test(test_loop_is_nudged_then_stopped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
