/* The tools node: concurrency limit, result order, both error policies,
 * unknown tools, bad arguments, per-tool timeouts, the parent's deadline and
 * cancellation, and coalescing of identical calls. The tools here complete
 * from uv timers, as real asynchronous tools do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/ctx.h"
#include "sift/tool.h"
#include "sift/toolsnode.h"

/* ---- the test tool: answers after delay_ms, counts what it does ---- */

#define INV_FIELDS(F)                                                                              \
    F(STRING, sku, "Product SKU", SIFT_REQUIRED, .min_len = 1, .max_len = 64)                      \
    F(ENUM, location, "Warehouse code", SIFT_REQUIRED, .values = "HAN,DAD,SGN")                    \
    F(INTEGER, delay_ms, "Test: answer after this long", SIFT_OPTIONAL, SIFT_RANGE(0, 60000))      \
    F(BOOLEAN, fail, "Test: fail instead of answering", SIFT_OPTIONAL)
SIFT_TOOL_ARGS(inv_args, INV_FIELDS);

static struct {
    int started;   /* backend invocations */
    int in_flight; /* now */
    int peak;      /* most at once */
    int answered;  /* ended by their timer */
    int cancelled; /* ended by their context */
} inv;

struct inv_job {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_tool_job *job;
    char sku[65];
    char location[4];
    int fail;
};

static void inv_closed(uv_handle_t *h)
{
    free(h->data);
}

static void inv_fire(uv_timer_t *t)
{
    struct inv_job *ij = t->data;
    sift_ctx_remove_hook(&ij->hook);
    inv.in_flight--;
    inv.answered++;
    uv_close((uv_handle_t *)&ij->timer, inv_closed);
    if (ij->fail) {
        sift_tool_job_fail(ij->job, SIFT_EIO, "inventory service down for %s", ij->sku);
        return;
    }
    char out[160];
    snprintf(out, sizeof out, "{\"sku\":\"%s\",\"location\":\"%s\",\"units\":7}", ij->sku,
             ij->location);
    sift_tool_job_done(ij->job, 0, out);
}

static void inv_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    struct inv_job *ij = (struct inv_job *)((char *)hook - offsetof(struct inv_job, hook));
    uv_timer_stop(&ij->timer);
    inv.in_flight--;
    inv.cancelled++;
    uv_close((uv_handle_t *)&ij->timer, inv_closed);
    sift_tool_job_done(ij->job, cause->code, cause->msg);
}

static void check_inventory(sift_tool_job *job, const struct inv_args *args)
{
    inv.started++;
    struct inv_job *ij = calloc(1, sizeof *ij);
    assert_non_null(ij);
    ij->job = job;
    snprintf(ij->sku, sizeof ij->sku, "%s", args->sku);
    snprintf(ij->location, sizeof ij->location, "%s", args->location);
    ij->fail = args->has_fail && args->fail;
    uv_timer_init(sift_ctx_loop(job->ctx), &ij->timer);
    ij->timer.data = ij;
    assert_int_equal(sift_ctx_add_hook(job->ctx, &ij->hook, inv_cancel), 0);
    if (++inv.in_flight > inv.peak)
        inv.peak = inv.in_flight;
    uv_timer_start(&ij->timer, inv_fire, args->has_delay_ms ? (uint64_t)args->delay_ms : 1, 0);
}

SIFT_TOOL_DEFINE(check_inventory, "Units in stock of one SKU at one warehouse", inv_args,
                 check_inventory);

/* ---- fixture ---- */

struct fx {
    uv_loop_t loop;
    sift_ctx *root;
    sift_arena *arena;
    sift_tool_registry *reg;
};

struct outcome {
    int fired;
    int code;
    char errmsg[SIFT_ERR_MSG_MAX];
    size_t n;
    const sift_tool_result *results;
    int starts, ends;
    int end_after_done; /* a callback after done: must stay 0 */
    int in_cancel;      /* set around a sift_ctx_cancel: done must not fire inside */
    int done_in_cancel;
};

static int setup(void **state)
{
    memset(&inv, 0, sizeof inv);
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->root = sift_ctx_new_root(&f->loop);
    f->arena = sift_arena_new(0);
    f->reg = sift_tool_registry_new();
    sift_err err = {0};
    assert_int_equal(sift_tool_registry_add(f->reg, &check_inventory_tool, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sift_ctx_release(f->root);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sift_arena_free(f->arena);
    sift_tool_registry_free(f->reg);
    free(f);
    return 0;
}

static void on_done(int code, const sift_tool_result *results, size_t n, const sift_err *err,
                    void *udata)
{
    struct outcome *o = udata;
    o->fired++;
    o->code = code;
    o->n = n;
    o->results = results;
    if (err)
        snprintf(o->errmsg, sizeof o->errmsg, "%s", err->msg);
    if (o->in_cancel)
        o->done_in_cancel = 1;
}

static void on_start(size_t i, const sift_tool_call *call, void *udata)
{
    struct outcome *o = udata;
    (void)i;
    (void)call;
    o->starts++;
    if (o->fired)
        o->end_after_done = 1;
}

static void on_end(size_t i, const sift_tool_call *call, int code, int64_t us, const char *content,
                   void *udata)
{
    struct outcome *o = udata;
    (void)i;
    (void)call;
    (void)code;
    assert_true(us >= 0);
    assert_non_null(content);
    o->ends++;
    if (o->fired)
        o->end_after_done = 1;
}

static sift_tool_call mkcall(const char *id, const char *name, const char *args)
{
    sift_tool_call c = {.id = id, .name = name, .arguments = args, .arguments_len = strlen(args)};
    return c;
}

static sift_tools_opts mkopts(struct outcome *o)
{
    sift_tools_opts op = {0};
    op.on_tool_start = on_start;
    op.on_tool_end = on_end;
    op.udata = o;
    return op;
}

/* The error object's code and message, checked to be valid JSON. */
static void error_of(const sift_tool_result *r, char *code, char *msg, size_t n)
{
    cJSON *j = cJSON_ParseWithLength(r->content, r->content_len);
    assert_non_null(j);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_non_null(e);
    snprintf(code, 32, "%s", cJSON_GetObjectItemCaseSensitive(e, "code")->valuestring);
    snprintf(msg, n, "%s", cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring);
    cJSON_Delete(j);
}

static void run_until_done(struct fx *f, struct outcome *o)
{
    while (!o->fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(o->fired, 1);
    assert_int_equal(o->end_after_done, 0);
}

/* ---- tests ---- */

static void test_limit_and_order(void **state)
{
    struct fx *f = *state;
    /* Finishing order 2, 1, 0 (by delay); results still in call order. */
    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":40}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"B\",\"location\":\"DAD\",\"delay_ms\":20}"),
        mkcall("c2", "check_inventory", "{\"sku\":\"C\",\"location\":\"SGN\",\"delay_ms\":1}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.limit = 2;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 3, &op, on_done, &o), 0);
    assert_int_equal(o.fired, 0);
    assert_int_equal(inv.in_flight, 2); /* the third waits for a slot */
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(inv.peak, 2);
    assert_int_equal(inv.started, 3);
    assert_int_equal(o.starts, 3);
    assert_int_equal(o.ends, 3);
    assert_int_equal(o.n, 3);
    const char *want[3] = {"{\"sku\":\"A\",\"location\":\"HAN\",\"units\":7}",
                           "{\"sku\":\"B\",\"location\":\"DAD\",\"units\":7}",
                           "{\"sku\":\"C\",\"location\":\"SGN\",\"units\":7}"};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(o.results[i].tool_call_id, calls[i].id);
        assert_string_equal(o.results[i].content, want[i]);
        assert_int_equal(o.results[i].content_len, strlen(want[i]));
        assert_int_equal(o.results[i].code, 0);
    }
}

static void test_no_limit_runs_all(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[3] = {
        mkcall("a", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":5}"),
        mkcall("b", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":5}"),
        mkcall("c", "check_inventory", "{\"sku\":\"C\",\"location\":\"HAN\",\"delay_ms\":5}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 3, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(inv.peak, 3);
}

static void test_return_errors_one_fails(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":10}"),
        mkcall("c1", "check_inventory",
               "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":1,\"fail\":true}"),
        mkcall("c2", "check_inventory", "{\"sku\":\"C\",\"location\":\"HAN\",\"delay_ms\":10}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.limit = 2;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 3, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(inv.answered, 3);
    assert_int_equal(inv.cancelled, 0);
    assert_int_equal(o.results[0].code, 0);
    assert_int_equal(o.results[2].code, 0);
    assert_int_equal(o.results[1].code, SIFT_EIO);
    char code[32], msg[256];
    error_of(&o.results[1], code, msg, sizeof msg);
    assert_string_equal(code, "tool_error");
    assert_string_equal(msg, "inventory service down for B");
}

static void test_fail_fast_one_fails(void **state)
{
    struct fx *f = *state;
    /* c0 fails at once; c1 is slow and gets cancelled; c2 is queued (limit 2)
     * and never starts. */
    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory",
               "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":1,\"fail\":true}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":30000}"),
        mkcall("c2", "check_inventory", "{\"sku\":\"C\",\"location\":\"HAN\",\"delay_ms\":1}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.limit = 2;
    op.policy = SIFT_TOOLS_FAIL_FAST;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 3, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, SIFT_EIO);
    assert_string_equal(o.errmsg, "tool check_inventory failed: inventory service down for A");
    assert_int_equal(inv.started, 2);
    assert_int_equal(inv.answered, 1);
    assert_int_equal(inv.cancelled, 1);
    assert_int_equal(o.starts, 2);
    assert_int_equal(o.ends, 2);
    char code[32], msg[256];
    error_of(&o.results[1], code, msg, sizeof msg);
    assert_string_equal(code, "cancelled");
    assert_non_null(strstr(msg, "check_inventory cancelled"));
    error_of(&o.results[2], code, msg, sizeof msg);
    assert_string_equal(code, "cancelled");
    assert_non_null(strstr(msg, "not started"));
    assert_string_equal(o.results[2].tool_call_id, "c2");
}

static void test_fail_fast_all_succeed(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[2] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\"}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\"}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.policy = SIFT_TOOLS_FAIL_FAST;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 2, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.results[1].code, 0);
}

static void test_unknown_tool(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[2] = {
        mkcall("c0", "check_stock", "{\"sku\":\"A\"}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\"}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 2, &op, on_done, &o), 0);
    assert_int_equal(o.fired, 0); /* never synchronous, even when a call ends at once */
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.results[0].code, SIFT_ENOTFOUND);
    char code[32], msg[256];
    error_of(&o.results[0], code, msg, sizeof msg);
    assert_string_equal(code, "unknown_tool");
    assert_string_equal(msg, "unknown tool \"check_stock\"; the tools are: check_inventory");
    assert_int_equal(o.results[1].code, 0);

    /* Fail-fast: an unknown tool is a failure like any other. */
    struct outcome o2 = {0};
    op = mkopts(&o2);
    op.policy = SIFT_TOOLS_FAIL_FAST;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 1, &op, on_done, &o2), 0);
    run_until_done(f, &o2);
    assert_int_equal(o2.code, SIFT_ENOTFOUND);
    assert_non_null(strstr(o2.errmsg, "unknown tool \"check_stock\""));
}

static void test_invalid_arguments(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":"),
        mkcall("c1", "check_inventory", "{\"sku\":\"A\",\"location\":\"PAR\"}"),
        mkcall("c2", "check_inventory", "{\"location\":\"HAN\"}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 3, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(inv.started, 0); /* the tool never saw bad arguments */
    char code[32], msg[256];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o.results[i].code, SIFT_EINVAL);
        error_of(&o.results[i], code, msg, sizeof msg);
        assert_string_equal(code, "invalid_arguments");
    }
    error_of(&o.results[1], code, msg, sizeof msg);
    assert_string_equal(msg, "location: must be one of HAN, DAD, SGN");
    error_of(&o.results[2], code, msg, sizeof msg);
    assert_non_null(strstr(msg, "sku"));
    error_of(&o.results[0], code, msg, sizeof msg);
    assert_true(strlen(msg) > 0);
}

static void test_timeout(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[2] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":30000}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":1}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.timeout_ms = 200;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 2, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.results[0].code, SIFT_ETIMEDOUT);
    char code[32], msg[256];
    error_of(&o.results[0], code, msg, sizeof msg);
    assert_string_equal(code, "timeout");
    assert_string_equal(msg, "check_inventory timed out after 200 ms");
    assert_int_equal(o.results[1].code, 0);
    assert_int_equal(inv.cancelled, 1);
}

static void test_parent_deadline_cancels_all(void **state)
{
    struct fx *f = *state;
    sift_ctx *step = sift_ctx_new_timeout(f->root, 50);
    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":30000}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":30000}"),
        mkcall("c2", "check_inventory", "{\"sku\":\"C\",\"location\":\"HAN\",\"delay_ms\":30000}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.limit = 2;
    op.timeout_ms = 20000;
    assert_int_equal(sift_tools_run(f->reg, step, f->arena, calls, 3, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, SIFT_ETIMEDOUT);
    assert_non_null(strstr(o.errmsg, "tools step stopped"));
    assert_int_equal(inv.cancelled, 2);
    assert_int_equal(inv.in_flight, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o.results[i].code, SIFT_ETIMEDOUT);
    char code[32], msg[256];
    error_of(&o.results[0], code, msg, sizeof msg);
    assert_string_equal(code, "timeout");
    assert_non_null(strstr(msg, "check_inventory cancelled"));
    sift_ctx_release(step);
}

static void test_cancel_defers_done(void **state)
{
    struct fx *f = *state;
    sift_ctx *step = sift_ctx_new(f->root);
    sift_tool_call calls[2] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":30000}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":30000}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    assert_int_equal(sift_tools_run(f->reg, step, f->arena, calls, 2, &op, on_done, &o), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    o.in_cancel = 1;
    sift_ctx_cancel(step, SIFT_ECANCELED, "client disconnected");
    o.in_cancel = 0;
    assert_int_equal(o.fired, 0);
    assert_int_equal(inv.cancelled, 2); /* every tool stopped inside the cancel */
    run_until_done(f, &o);
    assert_int_equal(o.done_in_cancel, 0);
    assert_int_equal(o.code, SIFT_ECANCELED);
    assert_string_equal(o.errmsg, "tools step stopped: client disconnected");
    assert_int_equal(o.ends, 2);
    sift_ctx_release(step);
}

static void test_no_calls(void **state)
{
    struct fx *f = *state;
    struct outcome o = {0};
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, NULL, 0, NULL, on_done, &o), 0);
    assert_int_equal(o.fired, 0);
    run_until_done(f, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.n, 0);
    assert_int_equal(sift_tools_run(NULL, f->root, f->arena, NULL, 0, NULL, on_done, &o),
                     SIFT_EINVAL);
}

/* ---- coalescing ---- */

static void test_coalesce_identical_calls(void **state)
{
    struct fx *f = *state;
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    assert_non_null(co);
    /* Four spellings of one call (key order, blanks, 7.0 for 7) and one other. */
    sift_tool_call calls[5] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":7}"),
        mkcall("c1", "check_inventory", "{\"location\":\"HAN\",\"sku\":\"A\",\"delay_ms\":7}"),
        mkcall("c2", "check_inventory",
               " { \"delay_ms\" : 7.0 , \"sku\":\"A\",\"location\":\"HAN\"}"),
        mkcall("c3", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":7}"),
        mkcall("c4", "check_inventory", "{\"sku\":\"B\",\"location\":\"HAN\",\"delay_ms\":7}"),
    };
    struct outcome o = {0}, o2 = {0};
    sift_tools_opts op = mkopts(&o);
    op.coalescer = co;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 5, &op, on_done, &o), 0);
    /* A second run (another shopper) asking the same thing at the same time. */
    sift_tools_opts op2 = mkopts(&o2);
    op2.coalescer = co;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 1, &op2, on_done, &o2), 0);
    run_until_done(f, &o);
    run_until_done(f, &o2);
    assert_int_equal(inv.started, 2); /* one backend call for A, one for B */
    sift_coalescer_stats st;
    sift_coalescer_get_stats(co, &st);
    assert_int_equal(st.backend_calls, 2);
    assert_int_equal(st.joined, 4);
    assert_int_equal(st.in_flight, 0);
    const char *a = "{\"sku\":\"A\",\"location\":\"HAN\",\"units\":7}";
    for (int i = 0; i < 4; i++) {
        assert_string_equal(o.results[i].content, a);
        assert_string_equal(o.results[i].tool_call_id, calls[i].id);
    }
    assert_string_equal(o.results[4].content, "{\"sku\":\"B\",\"location\":\"HAN\",\"units\":7}");
    assert_string_equal(o2.results[0].content, a);
    /* Each copy lives in the caller's arena, not the flight's (freed). */
    assert_ptr_not_equal(o.results[0].content, o.results[1].content);

    /* Once the flight has ended, the same call runs the backend again. */
    struct outcome o3 = {0};
    sift_tools_opts op3 = mkopts(&o3);
    op3.coalescer = co;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 1, &op3, on_done, &o3), 0);
    run_until_done(f, &o3);
    assert_int_equal(inv.started, 3);
    sift_coalescer_free(co);
}

static void test_coalesce_failure_shared(void **state)
{
    struct fx *f = *state;
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    sift_tool_call calls[2] = {
        mkcall("c0", "check_inventory",
               "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":3,\"fail\":true}"),
        mkcall("c1", "check_inventory",
               "{\"fail\":true,\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":3}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.coalescer = co;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 2, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(inv.started, 1);
    char code[32], msg[256];
    for (int i = 0; i < 2; i++) {
        error_of(&o.results[i], code, msg, sizeof msg);
        assert_string_equal(code, "tool_error");
        assert_string_equal(msg, "inventory service down for A");
    }
    sift_coalescer_free(co);
}

static int only_other(const sift_tool *t, void *udata)
{
    (void)udata;
    return strcmp(t->name, "check_inventory") != 0;
}

static void test_coalesce_predicate(void **state)
{
    struct fx *f = *state;
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    sift_tool_call calls[2] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":3}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":3}"),
    };
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.coalescer = co;
    op.coalesce = only_other;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, calls, 2, &op, on_done, &o), 0);
    run_until_done(f, &o);
    assert_int_equal(inv.started, 2); /* this tool is not coalesced */
    sift_coalescer_free(co);
}

/* A waiter that leaves does not cancel the shared call while others wait;
 * when the last one leaves, the backend call is cancelled. */
static void test_coalesce_waiter_cancel(void **state)
{
    struct fx *f = *state;
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    sift_ctx *sa = sift_ctx_new(f->root), *sb = sift_ctx_new(f->root);
    sift_tool_call call =
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":30}");
    struct outcome oa = {0}, ob = {0};
    sift_tools_opts opa = mkopts(&oa), opb = mkopts(&ob);
    opa.coalescer = opb.coalescer = co;
    assert_int_equal(sift_tools_run(f->reg, sa, f->arena, &call, 1, &opa, on_done, &oa), 0);
    assert_int_equal(sift_tools_run(f->reg, sb, f->arena, &call, 1, &opb, on_done, &ob), 0);
    assert_int_equal(inv.started, 1);
    sift_ctx_cancel(sa, SIFT_ECANCELED, "shopper A left");
    run_until_done(f, &oa);
    assert_int_equal(oa.code, SIFT_ECANCELED);
    assert_int_equal(oa.results[0].code, SIFT_ECANCELED);
    assert_int_equal(inv.cancelled, 0); /* B still waits: the backend goes on */
    run_until_done(f, &ob);
    assert_int_equal(ob.code, 0);
    assert_string_equal(ob.results[0].content, "{\"sku\":\"A\",\"location\":\"HAN\",\"units\":7}");
    assert_int_equal(inv.answered, 1);

    /* Both leave: the backend is cancelled. (A backend far slower than C's
     * timeout, so a stalled loop cannot let it answer first.) */
    call =
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":30000}");
    sift_ctx *sc = sift_ctx_new(f->root), *sd = sift_ctx_new(f->root);
    struct outcome oc = {0}, od = {0};
    sift_tools_opts opc = mkopts(&oc), opd = mkopts(&od);
    opc.coalescer = opd.coalescer = co;
    opc.timeout_ms = 20; /* C leaves by its own timeout */
    assert_int_equal(sift_tools_run(f->reg, sc, f->arena, &call, 1, &opc, on_done, &oc), 0);
    assert_int_equal(sift_tools_run(f->reg, sd, f->arena, &call, 1, &opd, on_done, &od), 0);
    assert_int_equal(inv.started, 2);
    run_until_done(f, &oc);
    char code[32], msg[256];
    error_of(&oc.results[0], code, msg, sizeof msg);
    assert_string_equal(msg, "check_inventory timed out after 20 ms");
    assert_int_equal(inv.cancelled, 0);
    sift_ctx_cancel(sd, SIFT_ECANCELED, NULL);
    assert_int_equal(inv.cancelled, 1);
    run_until_done(f, &od);
    assert_int_equal(od.code, SIFT_ECANCELED);
    sift_coalescer_stats st;
    sift_coalescer_get_stats(co, &st);
    assert_int_equal(st.in_flight, 0);
    sift_ctx_release(sa);
    sift_ctx_release(sb);
    sift_ctx_release(sc);
    sift_ctx_release(sd);
    sift_coalescer_free(co);
}

/* Freeing the coalescer with a call in flight ends it (with cancellation)
 * and the memory goes once the backend has reported. */
static void test_coalescer_free_in_flight(void **state)
{
    struct fx *f = *state;
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    sift_tool_call call =
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":30000}");
    struct outcome o = {0};
    sift_tools_opts op = mkopts(&o);
    op.coalescer = co;
    assert_int_equal(sift_tools_run(f->reg, f->root, f->arena, &call, 1, &op, on_done, &o), 0);
    sift_coalescer_free(co);
    run_until_done(f, &o);
    assert_int_equal(o.results[0].code, SIFT_ECANCELED);
    assert_int_equal(inv.cancelled, 1);
}

/* Out of memory at every allocation in turn: either the run is refused with
 * SIFT_ENOMEM and nothing fires, or done fires exactly once with one result
 * per call (errors where memory ran out); nothing leaks (ASan). */
static void test_out_of_memory(void **state)
{
    struct fx *f = *state;
    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":1}"),
        mkcall("c1", "check_stock", "{}"),
        mkcall("c2", "check_inventory", "{\"sku\":\"A\",\"location\":\"HAN\",\"delay_ms\":1}"),
    };
    int refused = 0, completed = 0;
    for (long n = 0; n < 120; n++) {
        sift_arena *arena = sift_arena_new(256);
        sift_coalescer *co = sift_coalescer_new(&f->loop);
        assert_non_null(arena);
        assert_non_null(co);
        struct outcome o = {0};
        sift_tools_opts op = mkopts(&o);
        op.limit = 2;
        op.timeout_ms = 5000;
        op.coalescer = n % 2 ? co : NULL;
        sift_mem_fail_after(n);
        int rc = sift_tools_run(f->reg, f->root, arena, calls, 3, &op, on_done, &o);
        if (rc == 0) {
            while (!o.fired)
                uv_run(&f->loop, UV_RUN_ONCE);
            sift_mem_fail_after(-1);
            completed++;
            assert_int_equal(o.n, 3);
            for (int i = 0; i < 3; i++) {
                assert_non_null(o.results[i].content);
                cJSON *j = cJSON_ParseWithLength(o.results[i].content, o.results[i].content_len);
                assert_non_null(j);
                cJSON_Delete(j);
            }
        } else {
            sift_mem_fail_after(-1);
            assert_int_equal(rc, SIFT_ENOMEM);
            refused++;
            uv_run(&f->loop, UV_RUN_NOWAIT);
            assert_int_equal(o.fired, 0);
        }
        uv_run(&f->loop, UV_RUN_NOWAIT); /* close the run's timer */
        sift_coalescer_free(co);
        sift_arena_free(arena);
    }
    assert_true(refused > 0);
    assert_true(completed > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limit_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_limit_runs_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_errors_one_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_fast_one_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_fast_all_succeed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_tool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parent_deadline_cancels_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_defers_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_identical_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_failure_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_predicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_waiter_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalescer_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
