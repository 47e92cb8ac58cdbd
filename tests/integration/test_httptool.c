/* HTTP tools end to end: tools loaded from sift.yaml text, run by the tools
 * node, calling sift's own server on loopback (which echoes what it got) and
 * rawsrv (for a slow answer): URL templates, JSON bodies, headers from the
 * environment, timeouts, HTTP errors, non-JSON answers, config errors. */
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

#include "rawsrv.h"
#include "sift/arena.h"
#include "sift/config.h"
#include "sift/ctx.h"
#include "sift/http.h"
#include "sift/httptool.h"
#include "sift/server.h"
#include "sift/tool.h"
#include "sift/toolsnode.h"

/* ---- the service: answers with what it received ---- */

static void h_echo(sift_http_exchange *x, void *udata)
{
    (void)udata;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", sift_http_method(x));
    cJSON_AddStringToObject(o, "path", sift_http_path(x));
    cJSON_AddStringToObject(o, "query", sift_http_query(x));
    const char *auth = sift_http_header(x, "authorization", NULL);
    cJSON_AddStringToObject(o, "auth", auth ? auth : "");
    const char *ct = sift_http_header(x, "content-type", NULL);
    cJSON_AddStringToObject(o, "ctype", ct ? ct : "");
    size_t blen = 0;
    cJSON_AddStringToObject(o, "body", sift_http_body(x, &blen));
    char *s = cJSON_PrintUnformatted(o);
    sift_http_respond(x, 200, "application/json", s, strlen(s));
    free(s);
    cJSON_Delete(o);
}

static void h_fail(sift_http_exchange *x, void *udata)
{
    (void)udata;
    const char *b = "inventory db down\nretry later";
    sift_http_respond(x, 500, "text/plain", b, strlen(b));
}

static void h_text(sift_http_exchange *x, void *udata)
{
    (void)udata;
    const char *b = "12 \"units\" left";
    sift_http_respond(x, 200, "text/plain", b, strlen(b));
}

static void h_empty(sift_http_exchange *x, void *udata)
{
    (void)udata;
    sift_http_respond(x, 200, NULL, "", 0);
}

/* ---- fixture ---- */

struct fx {
    uv_loop_t loop;
    sift_ctx *root;
    sift_arena *arena;
    sift_http_client *client;
    sift_server *srv;
    rawsrv *raw;
    int port;
};

static sift_http_client *client_of(uv_loop_t *loop, void *udata)
{
    struct fx *f = udata;
    return loop == &f->loop ? f->client : NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->root = sift_ctx_new_root(&f->loop);
    f->arena = sift_arena_new(0);
    sift_err err = {0};
    f->client = sift_http_client_new(&f->loop, NULL, &err);
    assert_non_null(f->client);
    f->raw = rawsrv_start(&f->loop);
    assert_non_null(f->raw);
    sift_server_opts o = {0};
    o.workers = 1;
    o.shutdown_grace_ms = -1;
    f->srv = sift_server_new(&o, &err);
    assert_non_null(f->srv);
    assert_int_equal(sift_server_route(f->srv, NULL, "/inv/*", h_echo, NULL), 0);
    assert_int_equal(sift_server_route(f->srv, NULL, "/fail", h_fail, NULL), 0);
    assert_int_equal(sift_server_route(f->srv, NULL, "/text", h_text, NULL), 0);
    assert_int_equal(sift_server_route(f->srv, NULL, "/empty", h_empty, NULL), 0);
    assert_int_equal(sift_server_start(f->srv, &err), 0);
    f->port = sift_server_port(f->srv);
    setenv("SIFT_TEST_INV_TOKEN", "s3cret-token", 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sift_server_free(f->srv);
    sift_http_client_close(f->client, NULL, NULL);
    rawsrv_stop(f->raw, NULL, NULL);
    sift_ctx_release(f->root);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sift_arena_free(f->arena);
    free(f);
    return 0;
}

/* Loads `yaml` (a whole sift.yaml fragment with a tools: list). */
static int load(struct fx *f, const char *yaml, sift_httptools **out, sift_err *err)
{
    sift_err yerr = {0};
    cJSON *doc = sift_yaml_to_json("sift.yaml", yaml, strlen(yaml), &yerr);
    if (doc == NULL)
        fail_msg("yaml: %s", yerr.msg);
    sift_httptools_opts o = {.client = client_of, .udata = f};
    int rc = sift_httptools_load(cJSON_GetObjectItemCaseSensitive(doc, "tools"), &o, out, err);
    cJSON_Delete(doc);
    return rc;
}

struct outcome {
    int fired;
    int code;
    const sift_tool_result *results;
    size_t n;
};

static void on_done(int code, const sift_tool_result *results, size_t n, const sift_err *err,
                    void *udata)
{
    struct outcome *o = udata;
    (void)err;
    o->fired++;
    o->code = code;
    o->results = results;
    o->n = n;
}

/* Runs calls through the tools node and waits. */
static void run(struct fx *f, sift_httptools *h, const sift_tool_call *calls, size_t n,
                struct outcome *o)
{
    sift_tool_registry *reg = sift_tool_registry_new();
    sift_err err = {0};
    assert_int_equal(sift_httptools_register(h, reg, &err), 0);
    sift_tools_opts op = {.timeout_ms = 5000};
    assert_int_equal(sift_tools_run(reg, f->root, f->arena, calls, n, &op, on_done, o), 0);
    while (!o->fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    sift_tool_registry_free(reg);
}

static cJSON *parse_result(const sift_tool_result *r)
{
    cJSON *j = cJSON_ParseWithLength(r->content, r->content_len);
    assert_non_null(j);
    return j;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static sift_tool_call mkcall(const char *id, const char *name, const char *args)
{
    sift_tool_call c = {.id = id, .name = name, .arguments = args, .arguments_len = strlen(args)};
    return c;
}

/* ---- tests ---- */

static void test_get_url_template_and_env_header(void **state)
{
    struct fx *f = *state;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "tools:\n"
             "  - name: check_inventory\n"
             "    description: Units in stock of one SKU at one warehouse\n"
             "    method: GET\n"
             "    url: http://127.0.0.1:%d/inv/stock/{sku}?location={location}&n={n}&all={all}\n"
             "    headers:\n"
             "      Authorization: Bearer ${SIFT_TEST_INV_TOKEN}\n"
             "    timeout_ms: 3000\n"
             "    args:\n"
             "      - {name: sku, type: string, required: true, max_length: 64}\n"
             "      - {name: location, type: enum, values: [HAN, DAD, SGN], required: true}\n"
             "      - {name: n, type: integer, min: 1, max: 9}\n"
             "      - {name: all, type: boolean}\n",
             f->port);
    sift_httptools *h = NULL;
    sift_err err = {0};
    assert_int_equal(load(f, yaml, &h, &err), 0);
    assert_int_equal(sift_httptools_count(h), 1);
    assert_string_equal(sift_httptools_at(h, 0)->name, "check_inventory");

    sift_tool_call calls[3] = {
        mkcall("c0", "check_inventory", "{\"sku\":\"AB 12/x&y\",\"location\":\"HAN\",\"n\":3}"),
        mkcall("c1", "check_inventory", "{\"sku\":\"Z9\",\"location\":\"SGN\",\"all\":true}"),
        mkcall("c2", "check_inventory", "{\"sku\":\"Z9\",\"location\":\"PAR\"}"),
    };
    struct outcome o = {0};
    run(f, h, calls, 3, &o);
    assert_int_equal(o.code, 0);

    cJSON *r = parse_result(&o.results[0]);
    assert_string_equal(str(r, "method"), "GET");
    assert_string_equal(str(r, "query"), "location=HAN&n=3&all=");
    assert_string_equal(str(r, "auth"), "Bearer s3cret-token");
    /* The slash and the ampersand in the SKU were encoded: one path segment. */
    /* The server hands over the decoded path; the query above shows the '&'
     * was encoded (otherwise "y" would be a query parameter), and a raw space
     * would have broken the request line. */
    assert_string_equal(str(r, "path"), "/inv/stock/AB 12/x&y");
    assert_null(strchr(str(r, "query"), 'y'));
    cJSON_Delete(r);

    r = parse_result(&o.results[1]);
    assert_string_equal(str(r, "path"), "/inv/stock/Z9");
    assert_string_equal(str(r, "query"), "location=SGN&n=&all=true");
    cJSON_Delete(r);

    /* Bad arguments never reach the service. */
    assert_int_equal(o.results[2].code, SIFT_EINVAL);
    assert_non_null(strstr(o.results[2].content, "location: must be one of HAN, DAD, SGN"));
    sift_server_stats st;
    sift_server_stats_get(f->srv, &st);
    assert_int_equal(st.requests_total, 2);

    /* The schema the model sees comes from the same fields. */
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_tool_json(sift_httptools_at(h, 0), &b), 0);
    assert_non_null(strstr(b.data, "\"enum\""));
    assert_non_null(strstr(b.data, "\"SGN\""));
    assert_null(strstr(b.data, "s3cret")); /* secrets stay out of what the model sees */
    sift_buf_free(&b);
    sift_httptools_free(h);
}

static void test_post_json_body(void **state)
{
    struct fx *f = *state;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "tools:\n"
             "  - name: reserve_stock\n"
             "    description: Holds units for a cart\n"
             "    method: POST\n"
             "    url: http://127.0.0.1:%d/inv/reserve\n"
             "    body: json\n"
             "    args:\n"
             "      - {name: sku, type: string, required: true}\n"
             "      - {name: qty, type: integer, required: true, min: 1}\n"
             "      - {name: tags, type: array, max_items: 3}\n"
             "      - {name: note, type: string}\n",
             f->port);
    sift_httptools *h = NULL;
    sift_err err = {0};
    assert_int_equal(load(f, yaml, &h, &err), 0);
    sift_tool_call c =
        mkcall("c0", "reserve_stock", " {\"tags\":[\"gift\"], \"qty\": 2.0, \"sku\":\"A1\"}");
    struct outcome o = {0};
    run(f, h, &c, 1, &o);
    assert_int_equal(o.results[0].code, 0);
    cJSON *r = parse_result(&o.results[0]);
    assert_string_equal(str(r, "method"), "POST");
    assert_string_equal(str(r, "ctype"), "application/json");
    assert_string_equal(str(r, "body"), "{\"sku\":\"A1\",\"qty\":2,\"tags\":[\"gift\"]}");
    cJSON_Delete(r);
    sift_httptools_free(h);
}

static void test_http_error_text_and_empty(void **state)
{
    struct fx *f = *state;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "tools:\n"
             "  - {name: broken, url: \"http://127.0.0.1:%d/fail\"}\n"
             "  - {name: texty, url: \"http://127.0.0.1:%d/text\"}\n"
             "  - {name: empty, method: DELETE, url: \"http://127.0.0.1:%d/empty\"}\n",
             f->port, f->port, f->port);
    sift_httptools *h = NULL;
    sift_err err = {0};
    assert_int_equal(load(f, yaml, &h, &err), 0);
    sift_tool_call calls[3] = {mkcall("a", "broken", "{}"), mkcall("b", "texty", ""),
                               mkcall("c", "empty", "{}")};
    struct outcome o = {0};
    run(f, h, calls, 3, &o);
    assert_int_equal(o.results[0].code, SIFT_EHTTP);
    cJSON *r = parse_result(&o.results[0]);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    assert_string_equal(str(e, "code"), "tool_error");
    assert_string_equal(str(e, "message"), "broken: HTTP 500: inventory db down retry later");
    cJSON_Delete(r);
    assert_int_equal(o.results[1].code, 0);
    assert_string_equal(o.results[1].content, "\"12 \\\"units\\\" left\"");
    assert_int_equal(o.results[2].code, 0);
    assert_string_equal(o.results[2].content, "null");
    sift_httptools_free(h);
}

static void test_timeout(void **state)
{
    struct fx *f = *state;
    char url[256], yaml[1024];
    rawsrv_url(f->raw, "/delay?ms=3000", url, sizeof url);
    snprintf(yaml, sizeof yaml,
             "tools:\n"
             "  - name: slow_service\n"
             "    url: \"%s\"\n"
             "    timeout_ms: 100\n",
             url);
    sift_httptools *h = NULL;
    sift_err err = {0};
    assert_int_equal(load(f, yaml, &h, &err), 0);
    sift_tool_call c = mkcall("a", "slow_service", "{}");
    struct outcome o = {0};
    uint64_t t0 = uv_hrtime();
    run(f, h, &c, 1, &o);
    assert_int_equal(o.results[0].code, SIFT_ETIMEDOUT);
    assert_non_null(strstr(o.results[0].content, "\"timeout\""));
    assert_non_null(strstr(o.results[0].content, "slow_service: "));
    /* Bounded by the tool's 100 ms, not the server's 3 s (generous margin). */
    assert_true((uv_hrtime() - t0) / 1000000 < 2500);
    sift_httptools_free(h);
}

/* Three shoppers asking the same stock question at once: one request. */
static void test_coalesced_calls_one_request(void **state)
{
    struct fx *f = *state;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "tools:\n"
             "  - name: check_inventory\n"
             "    url: http://127.0.0.1:%d/inv/stock/{sku}?location={location}\n"
             "    args:\n"
             "      - {name: sku, type: string, required: true}\n"
             "      - {name: location, type: enum, values: [HAN, DAD, SGN], required: true}\n",
             f->port);
    sift_httptools *h = NULL;
    sift_err err = {0};
    assert_int_equal(load(f, yaml, &h, &err), 0);
    sift_tool_registry *reg = sift_tool_registry_new();
    assert_int_equal(sift_httptools_register(h, reg, &err), 0);
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    sift_tool_call calls[3] = {
        mkcall("a", "check_inventory", "{\"sku\":\"Q1\",\"location\":\"DAD\"}"),
        mkcall("b", "check_inventory", "{\"location\":\"DAD\",\"sku\":\"Q1\"}"),
        mkcall("c", "check_inventory", "{ \"sku\" : \"Q1\", \"location\" : \"DAD\" }"),
    };
    struct outcome o[3] = {{0}};
    sift_tools_opts op = {.coalescer = co, .timeout_ms = 5000};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sift_tools_run(reg, f->root, f->arena, &calls[i], 1, &op, on_done, &o[i]),
                         0);
    for (int i = 0; i < 3; i++) {
        while (!o[i].fired)
            uv_run(&f->loop, UV_RUN_ONCE);
        assert_int_equal(o[i].results[0].code, 0);
        cJSON *r = parse_result(&o[i].results[0]);
        assert_string_equal(str(r, "path"), "/inv/stock/Q1");
        assert_string_equal(str(r, "query"), "location=DAD");
        cJSON_Delete(r);
    }
    sift_server_stats st;
    sift_server_stats_get(f->srv, &st);
    assert_int_equal(st.requests_total, 1);
    sift_coalescer_stats cs;
    sift_coalescer_get_stats(co, &cs);
    assert_int_equal(cs.backend_calls, 1);
    assert_int_equal(cs.joined, 2);
    sift_coalescer_free(co);
    sift_tool_registry_free(reg);
    sift_httptools_free(h);
}

static void test_no_client_on_loop(void **state)
{
    struct fx *f = *state;
    sift_err yerr = {0};
    const char *yaml = "tools:\n  - {name: t, url: \"http://127.0.0.1:1/x\"}\n";
    cJSON *doc = sift_yaml_to_json("sift.yaml", yaml, strlen(yaml), &yerr);
    sift_httptools_opts o = {.client = client_of, .udata = NULL};
    struct fx other = {0};
    o.udata = &other; /* another "worker": this loop has no client there */
    sift_httptools *h = NULL;
    sift_err err = {0};
    assert_int_equal(
        sift_httptools_load(cJSON_GetObjectItemCaseSensitive(doc, "tools"), &o, &h, &err), 0);
    cJSON_Delete(doc);
    sift_tool_call c = mkcall("a", "t", "{}");
    struct outcome out = {0};
    run(f, h, &c, 1, &out);
    assert_int_equal(out.results[0].code, SIFT_ESTATE);
    assert_non_null(strstr(out.results[0].content, "no HTTP client"));
    sift_httptools_free(h);
}

static void test_config_errors(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *yaml;
        const char *msg;
    } cases[] = {
        {"tools:\n  - {name: a, url: \"http://h/{sku}\", args: [{name: sku, type: string}]}\n"
         "  - {name: b, url: \"http://h/{loc}\", args: [{name: location, type: string}]}\n",
         "tools[1].url: placeholder {loc} is not an argument"},
        {"tools:\n  - name: a\n    url: http://h/x\n    headers:\n"
         "      Authorization: Bearer ${SIFT_TEST_SURELY_UNSET_VAR}\n",
         "tools[0].headers.Authorization: environment variable SIFT_TEST_SURELY_UNSET_VAR is "
         "not set"},
        {"tools:\n  - {name: a, method: PATCH, url: \"http://h/x\"}\n",
         "tools[0].method: must be GET, POST, PUT or DELETE"},
        {"tools:\n  - {name: a, url: \"ftp://h/x\"}\n",
         "tools[0].url: must start with http:// or https://"},
        {"tools:\n  - {name: a}\n",
         "tools[0].url: required: the service URL, with {argument} placeholders"},
        {"tools:\n  - {name: a, urll: \"http://h/x\"}\n",
         "tools[0].urll: unknown key (expected name, description, method, url, headers, "
         "timeout_ms, args, body)"},
        {"tools:\n  - {name: a, url: \"http://h/x\", args: [{name: q, type: text}]}\n",
         "tools[0].args[0].type: must be one of string, integer, number, boolean, enum, array"},
        {"tools:\n  - {name: a, url: \"http://h/x\", args: [{name: q, type: enum}]}\n",
         "tools[0].args[0].values: an enum needs a list of values"},
        {"tools:\n  - {name: a, url: \"http://h/x\", args: [{name: q, type: string, max: 3}]}\n",
         "tools[0].args[0].max: only an integer or number has max"},
        {"tools:\n  - {name: a, url: \"http://h/{t}\", args: [{name: t, type: array}]}\n",
         "tools[0].url: placeholder {t} is an array; only single values go in the url"},
        {"tools:\n  - {name: a, url: \"http://h/x\"}\n  - {name: a, url: \"http://h/y\"}\n",
         "tools[1].name: tools[0] already has this name"},
        {"tools:\n  - {name: \"bad name\", url: \"http://h/x\"}\n",
         "tools[0].name: must be 1 to 64 of A-Z a-z 0-9 _ -"},
        {"tools:\n  - {name: a, url: \"http://h/x\", timeout_ms: 0}\n",
         "tools[0].timeout_ms: must be an integer between 1 and 3600000"},
        {"tools:\n  - {name: a, url: \"http://h/x\", body: xml}\n",
         "tools[0].body: the only body format is json"},
        {"tools: {a: 1}\n", "tools: must be a list of tool entries"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sift_httptools *h = (sift_httptools *)1;
        sift_err err = {0};
        int rc = load(f, cases[i].yaml, &h, &err);
        if (rc != SIFT_EINVAL || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: rc %d, message \"%s\", expected \"%s\"", i, rc, err.msg,
                     cases[i].msg);
        assert_null(h);
    }
    /* No tools: an empty set. */
    sift_httptools *h = NULL;
    sift_err err = {0};
    sift_httptools_opts o = {.client = client_of, .udata = f};
    assert_int_equal(sift_httptools_load(NULL, &o, &h, &err), 0);
    assert_int_equal(sift_httptools_count(h), 0);
    sift_httptools_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_url_template_and_env_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_json_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_error_text_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesced_calls_one_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_client_on_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
