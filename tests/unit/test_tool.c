/* Typed tools: generated structs, JSON Schema (golden files), the validating
 * decoder and its messages, run-time schemas, the registry and tool calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/group.h"
#include "sift/log.h"
#include "sift/tool.h"
#include "tool_samples.h"

/* ---- the sample tools ---- */

static void check_inventory(sift_tool_job *job, const struct check_inventory_args *args);
static void get_price(sift_tool_job *job, const struct get_price_args *args);
static void search_products(sift_tool_job *job, const struct search_products_args *args);

SIFT_TOOL_DEFINE(check_inventory, "Units in stock of one SKU at one warehouse",
                 check_inventory_args, check_inventory);
SIFT_TOOL_DEFINE(get_price, "Current price of one SKU", get_price_args, get_price);
SIFT_TOOL_DEFINE(search_products, "Searches the catalog for products", search_products_args,
                 search_products);

/* Answers from a fixed table: what the test checks is the plumbing. */
static void check_inventory(sift_tool_job *job, const struct check_inventory_args *args)
{
    if (strcmp(args->sku, "GONE") == 0) {
        sift_tool_job_fail(job, SIFT_ENOTFOUND, "no product with SKU %s", args->sku);
        return;
    }
    char out[128];
    snprintf(out, sizeof out, "{\"sku\":\"%s\",\"location\":\"%s\",\"units\":%d}", args->sku,
             args->location, strcmp(args->location, "HAN") == 0 ? 7 : 0);
    sift_tool_job_done(job, 0, out);
}

/* Completes later, from a timer on the job's loop, or at once when the
 * job's context is cancelled first: the contract of an asynchronous tool. */
struct price_timer {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_tool_job *job;
    char currency[4];
};

static void price_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void price_timer_fire(uv_timer_t *t)
{
    struct price_timer *pt = t->data;
    sift_ctx_remove_hook(&pt->hook);
    char out[64];
    snprintf(out, sizeof out, "{\"price\":%s,\"currency\":\"%s\"}",
             strcmp(pt->currency, "USD") == 0 ? "12.5" : "300000", pt->currency);
    sift_tool_job_done(pt->job, 0, out);
    uv_close((uv_handle_t *)&pt->timer, price_timer_closed);
}

static void price_timer_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    struct price_timer *pt =
        (struct price_timer *)((char *)hook - offsetof(struct price_timer, hook));
    uv_timer_stop(&pt->timer);
    sift_tool_job_done(pt->job, cause->code, cause->msg);
    uv_close((uv_handle_t *)&pt->timer, price_timer_closed);
}

static void get_price(sift_tool_job *job, const struct get_price_args *args)
{
    struct price_timer *pt = calloc(1, sizeof *pt);
    assert_non_null(pt);
    pt->job = job;
    snprintf(pt->currency, sizeof pt->currency, "%s", args->has_currency ? args->currency : "VND");
    uv_timer_init(sift_ctx_loop(job->ctx), &pt->timer);
    pt->timer.data = pt;
    uv_timer_start(&pt->timer, price_timer_fire, 1, 0);
    int rc = sift_ctx_add_hook(job->ctx, &pt->hook, price_timer_cancel);
    if (rc < 0) {
        uv_timer_stop(&pt->timer);
        sift_tool_job_done(job, rc, "cancelled");
        uv_close((uv_handle_t *)&pt->timer, price_timer_closed);
    }
}

static void search_products(sift_tool_job *job, const struct search_products_args *args)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_args_json(sift_args_schema(search_products_args), args, &b), 0);
    sift_tool_job_done(job, 0, b.data);
    sift_buf_free(&b);
}

static const sift_tool *sample_tools[] = {&check_inventory_tool, &get_price_tool,
                                          &search_products_tool};

static const sift_tool *sample_tool(const char *name)
{
    for (size_t i = 0; i < sizeof sample_tools / sizeof sample_tools[0]; i++) {
        if (strcmp(sample_tools[i]->name, name) == 0)
            return sample_tools[i];
    }
    fail_msg("no sample tool %s", name);
    return NULL;
}

/* ---- helpers ---- */

static const char *source_dir(void)
{
    const char *d = getenv("SIFT_SOURCE_DIR");
    return d ? d : SIFT_SOURCE_DIR;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    sift_buf b;
    sift_buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(sift_buf_append(&b, chunk, n), 0);
    fclose(f);
    return sift_buf_detach(&b, len);
}

/* Decodes `json` with the schema; returns the code, message in err. */
static int decode(const sift_schema *s, const char *json, sift_arena *a, const void **out,
                  sift_err *err)
{
    sift_err_clear(err);
    return sift_args_decode(s, json, json ? strlen(json) : 0, a, out, err);
}

static void expect_error(const sift_schema *s, const char *json, const char *msg)
{
    sift_arena *a = sift_arena_new(0);
    const void *out = (const void *)1;
    sift_err err = {0};
    int rc = decode(s, json, a, &out, &err);
    if (rc != SIFT_EINVAL)
        fail_msg("%s: expected SIFT_EINVAL, got %d (%s)", json, rc, err.msg);
    assert_null(out);
    if (strcmp(err.msg, msg) != 0)
        fail_msg("%s:\n  expected \"%s\"\n  got      \"%s\"", json, msg, err.msg);
    sift_arena_free(a);
}

/* ---- the generated struct ---- */

static void test_struct_layout(void **state)
{
    struct search_products_args a = {0};
    /* The members exist with the documented types (compile-time facts). */
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.query), const char *), "query");
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.k), int64_t), "k");
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.has_k), bool), "has_k");
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.tags), sift_strings), "tags");
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.filters), struct search_filters),
                   "filters");
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.filters.price_min), double), "num");
    _Static_assert(__builtin_types_compatible_p(__typeof__(a.filters.in_stock), bool), "bool");
    (void)a;

    const sift_schema *s = sift_args_schema(search_products_args);
    assert_string_equal(s->name, "search_products_args");
    assert_int_equal(s->size, sizeof(struct search_products_args));
    assert_int_equal(s->nfields, 4);
    assert_string_equal(s->fields[1].name, "filters");
    assert_int_equal(s->fields[1].type, SIFT_FIELD_OBJECT);
    assert_ptr_equal(s->fields[1].object, sift_args_schema(search_filters));
    assert_int_equal(s->fields[1].offset, offsetof(struct search_products_args, filters));
    assert_int_equal(s->fields[1].has_offset, offsetof(struct search_products_args, has_filters));
    assert_true(s->fields[0].required);
    assert_false(s->fields[3].required);
    assert_true(s->fields[3].has_min && s->fields[3].has_max);
    assert_true(s->fields[3].min == 1 && s->fields[3].max == 50);
    assert_int_equal(s->fields[2].max_items, 5);
    assert_int_equal(s->fields[2].max_len, 32);
    assert_string_equal(sift_args_schema(check_inventory_args)->fields[1].values, "HAN,DAD,SGN");
}

/* sift_schema_layout must place fields exactly where the compiler does, or a
 * run-time schema would not describe the struct it claims to. */
static void check_layout_matches(const sift_schema *compiled, sift_schema *nested_copy)
{
    sift_field fields[SIFT_SCHEMA_MAX_FIELDS];
    sift_schema s = {.name = compiled->name};
    memcpy(fields, compiled->fields, compiled->nfields * sizeof fields[0]);
    for (size_t i = 0; i < compiled->nfields; i++) {
        fields[i].offset = 12345;
        fields[i].has_offset = 12345;
        if (fields[i].type == SIFT_FIELD_OBJECT && nested_copy)
            fields[i].object = nested_copy;
    }
    sift_schema_layout(&s, fields, compiled->nfields);
    assert_int_equal(s.size, compiled->size);
    assert_int_equal(s.align, compiled->align);
    for (size_t i = 0; i < compiled->nfields; i++) {
        assert_int_equal(s.fields[i].offset, compiled->fields[i].offset);
        if (!compiled->fields[i].required)
            assert_int_equal(s.fields[i].has_offset, compiled->fields[i].has_offset);
    }
}

static void test_runtime_layout(void **state)
{
    check_layout_matches(sift_args_schema(check_inventory_args), NULL);
    check_layout_matches(sift_args_schema(get_price_args), NULL);
    check_layout_matches(sift_args_schema(search_filters), NULL);
    /* The parent again, with its nested schema laid out at run time too. */
    sift_field nf[SIFT_SCHEMA_MAX_FIELDS];
    const sift_schema *cf = sift_args_schema(search_filters);
    memcpy(nf, cf->fields, cf->nfields * sizeof nf[0]);
    sift_schema nested = {.name = "filters"};
    sift_schema_layout(&nested, nf, cf->nfields);
    check_layout_matches(sift_args_schema(search_products_args), &nested);
}

/* ---- schema checks ---- */

static void check_fails(const sift_field *fields, size_t n, const char *msg)
{
    sift_field copy[8];
    sift_schema s = {.name = "t"};
    memcpy(copy, fields, n * sizeof copy[0]);
    sift_schema_layout(&s, copy, n);
    sift_err err = {0};
    int rc = sift_schema_check(&s, &err);
    if (msg == NULL) {
        if (rc != 0)
            fail_msg("unexpected check failure: %s", err.msg);
        return;
    }
    assert_int_equal(rc, SIFT_EINVAL);
    if (strcmp(err.msg, msg) != 0)
        fail_msg("expected \"%s\"\n got \"%s\"", msg, err.msg);
}

static void test_schema_check(void **state)
{
    for (size_t i = 0; i < sizeof sample_tools / sizeof sample_tools[0]; i++) {
        sift_err err = {0};
        assert_int_equal(sift_schema_check(sample_tools[i]->args, &err), 0);
    }
    sift_field ok = {.name = "q", .type = SIFT_FIELD_STRING, .required = true, .max_len = 8};
    check_fails(&ok, 1, NULL);

    sift_field f;
    f = ok, f.name = "bad name";
    check_fails(&f, 1, "field \"bad name\": a name is 1 to 64 of A-Z a-z 0-9 _ -");
    f = ok, f.name = "";
    check_fails(&f, 1, "field \"\": a name is 1 to 64 of A-Z a-z 0-9 _ -");
    sift_field two[2] = {ok, ok};
    check_fails(two, 2, "field q: declared twice");
    f = ok, f.min_len = 9;
    check_fails(&f, 1, "field q: min_len is greater than max_len");
    f = ok, f.has_min = true;
    check_fails(&f, 1, "field q: min/max do not apply to a string");
    f = ok, f.type = SIFT_FIELD_INTEGER, f.max_len = 0, f.max_items = 3;
    check_fails(&f, 1, "field q: min_items/max_items do not apply to a integer");
    f = ok, f.type = SIFT_FIELD_INTEGER, f.max_len = 0, f.has_min = true, f.min = 0.5;
    check_fails(&f, 1, "field q: min is not an integer within 2^53");
    f = ok, f.type = SIFT_FIELD_NUMBER, f.max_len = 0, f.has_min = f.has_max = true, f.min = 2,
    f.max = 1;
    check_fails(&f, 1, "field q: min is greater than max");
    f = ok, f.type = SIFT_FIELD_ENUM, f.max_len = 0;
    check_fails(&f, 1, "field q: an enum needs values");
    f.values = "A,,B";
    check_fails(&f, 1, "field q: empty enum value in \"A,,B\"");
    f.values = "A, B ,A";
    check_fails(&f, 1, "field q: enum value \"A\" repeated");
    f.values = " A , B ";
    check_fails(&f, 1, NULL);
    f = ok, f.type = SIFT_FIELD_OBJECT, f.max_len = 0;
    check_fails(&f, 1, "field q: no nested schema");
    f = ok, f.type = (enum sift_field_type)42;
    check_fails(&f, 1, "field q: unknown type 42");

    /* Nesting deeper than OpenAI allows. */
    sift_field levels[SIFT_SCHEMA_MAX_DEPTH + 2];
    sift_schema objs[SIFT_SCHEMA_MAX_DEPTH + 2];
    for (int i = SIFT_SCHEMA_MAX_DEPTH + 1; i >= 0; i--) {
        levels[i] = (sift_field){.name = "o",
                                 .type = SIFT_FIELD_OBJECT,
                                 .required = true,
                                 .object = i == SIFT_SCHEMA_MAX_DEPTH + 1 ? NULL : &objs[i + 1]};
        if (i == SIFT_SCHEMA_MAX_DEPTH + 1)
            levels[i] = ok;
        objs[i] = (sift_schema){.name = "o"};
        sift_schema_layout(&objs[i], &levels[i], 1);
    }
    sift_err err = {0};
    assert_int_equal(sift_schema_check(&objs[1], &err), 0);
    assert_int_equal(sift_schema_check(&objs[0], &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "field o.o.o.o.o.o: objects nested deeper than 5 levels");
}

/* ---- JSON Schema golden files ---- */

static void compare_golden(const char *name, const char *generated)
{
    /* Golden files are pretty-printed for review; the comparison is on the
     * same document printed the same way, key order included. */
    cJSON *doc = cJSON_Parse(generated);
    if (doc == NULL)
        fail_msg("%s: generated schema is not JSON: %s", name, generated);
    char *compact = cJSON_PrintUnformatted(doc);
    assert_string_equal(compact, generated); /* nothing cJSON would write differently */
    char *pretty = cJSON_Print(doc);
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/unit/golden/%s", source_dir(), name);

    const char *update = getenv("SIFT_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fprintf(f, "%s\n", pretty);
        fclose(f);
        print_message("updated %s\n", path);
    }
    size_t len;
    char *want = read_file(path, &len);
    if (want == NULL) {
        fail_msg("missing golden file %s (run with SIFT_UPDATE_GOLDEN=1 to create it)", path);
        return;
    }
    if (len > 0 && want[len - 1] == '\n')
        want[len - 1] = '\0';
    if (strcmp(want, pretty) != 0)
        fail_msg("%s differs from the generated schema (SIFT_UPDATE_GOLDEN=1 rewrites it):\n%s",
                 path, pretty);
    sift_free(want);
    cJSON_free(pretty);
    cJSON_free(compact);
    cJSON_Delete(doc);
}

static void test_golden_schemas(void **state)
{
    for (size_t i = 0; i < sizeof sample_tools / sizeof sample_tools[0]; i++) {
        sift_buf b;
        sift_buf_init(&b, 0);
        assert_int_equal(sift_tool_json(sample_tools[i], &b), 0);
        char name[128];
        snprintf(name, sizeof name, "%s.tool.json", sample_tools[i]->name);
        compare_golden(name, b.data);

        /* "parameters" is exactly sift_schema_json. */
        sift_buf p;
        sift_buf_init(&p, 0);
        assert_int_equal(sift_schema_json(sample_tools[i]->args, &p), 0);
        assert_non_null(strstr(b.data, p.data));
        sift_buf_free(&p);
        sift_buf_free(&b);
    }
}

static void test_schema_shape(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_schema_json(sift_args_schema(get_price_args), &b), 0);
    assert_string_equal(
        b.data, "{\"type\":\"object\",\"properties\":{"
                "\"sku\":{\"type\":\"string\",\"description\":\"Product SKU (1 to 64 bytes)\"},"
                "\"currency\":{\"type\":[\"string\",\"null\"],\"description\":\"Currency of the "
                "price; VND when not given\",\"enum\":[\"VND\",\"USD\",null]}},"
                "\"required\":[\"sku\",\"currency\"],\"additionalProperties\":false}");

    /* Bounds in words, optional object as anyOf with null. */
    sift_buf_reset(&b);
    assert_int_equal(sift_schema_json(sift_args_schema(search_products_args), &b), 0);
    assert_non_null(strstr(b.data, "\"k\":{\"type\":[\"integer\",\"null\"],\"description\":"
                                   "\"Number of results (1 to 50)\"}"));
    assert_non_null(strstr(b.data, "\"description\":\"Tags that must all match (at most 5 "
                                   "items; each at most 32 bytes)\""));
    assert_non_null(strstr(b.data, "\"filters\":{\"anyOf\":[{\"type\":\"object\""));
    assert_non_null(strstr(b.data, "\"price_min\":{\"type\":[\"number\",\"null\"],"
                                   "\"description\":\"Lowest price in VND (at least 0)\"}"));
    /* No keyword that strict mode may refuse. */
    assert_null(strstr(b.data, "maxLength"));
    assert_null(strstr(b.data, "minimum"));
    assert_null(strstr(b.data, "maxItems"));

    /* A full buffer leaves nothing half-written. */
    sift_buf small;
    sift_buf_init(&small, 40);
    assert_int_equal(sift_buf_puts(&small, "[1,"), 0);
    assert_int_equal(sift_tool_json(&search_products_tool, &small), SIFT_ETOOBIG);
    assert_string_equal(small.data, "[1,");
    sift_buf_free(&small);
    sift_buf_free(&b);
}

/* ---- decoding ---- */

static void test_decode_all_types(void **state)
{
    sift_arena *a = sift_arena_new(0);
    sift_err err = {0};
    const void *out;
    char json[] = "{\"query\":\"running shoes\",\"k\":12,\"tags\":[\"sale\",\"new\"],"
                  "\"filters\":{\"brand\":\"Nike\",\"price_min\":0.5,\"price_max\":2e6,"
                  "\"in_stock\":false,\"size\":null}}";
    assert_int_equal(decode(sift_args_schema(search_products_args), json, a, &out, &err), 0);
    const struct search_products_args *p = out;
    /* Strings are copies in the arena, not pointers into the input. */
    memset(json, 'x', sizeof json - 1);
    assert_string_equal(p->query, "running shoes");
    assert_true(p->has_k);
    assert_int_equal(p->k, 12);
    assert_true(p->has_tags);
    assert_int_equal(p->tags.len, 2);
    assert_string_equal(p->tags.items[0], "sale");
    assert_string_equal(p->tags.items[1], "new");
    assert_true(p->has_filters);
    assert_true(p->filters.has_brand);
    assert_string_equal(p->filters.brand, "Nike");
    assert_true(p->filters.has_price_min);
    assert_true(p->filters.price_min == 0.5);
    assert_true(p->filters.price_max == 2e6);
    assert_true(p->filters.has_in_stock);
    assert_false(p->filters.in_stock);
    assert_false(p->filters.has_size); /* null = absent */
    assert_null(p->filters.size);
    assert_false(p->filters.has_colour);

    /* Optional fields left out are zero and flagged absent. */
    assert_int_equal(
        decode(sift_args_schema(search_products_args), "{\"query\":\"q\"}", a, &out, &err), 0);
    p = out;
    assert_false(p->has_k || p->has_tags || p->has_filters);
    assert_int_equal(p->k, 0);
    assert_null(p->tags.items);

    /* An empty array is present, with no items. */
    assert_int_equal(decode(sift_args_schema(search_products_args), "{\"query\":\"q\",\"tags\":[]}",
                            a, &out, &err),
                     0);
    p = out;
    assert_true(p->has_tags);
    assert_int_equal(p->tags.len, 0);

    /* Enum values come back as the declared string. */
    assert_int_equal(decode(sift_args_schema(check_inventory_args),
                            " {\"location\":\"DAD\",\"sku\":\"A-1\"} \n", a, &out, &err),
                     0);
    const struct check_inventory_args *c = out;
    assert_string_equal(c->location, "DAD");
    assert_string_equal(c->sku, "A-1");

    /* An escaped backslash followed by "u0000" is text, not a NUL. */
    assert_int_equal(decode(sift_args_schema(check_inventory_args),
                            "{\"sku\":\"A\\\\u0000\",\"location\":\"HAN\"}", a, &out, &err),
                     0);
    assert_string_equal(((const struct check_inventory_args *)out)->sku, "A\\u0000");

    /* Integers: 2.0 and 1e1 are integers; bounds are inclusive. */
    assert_int_equal(decode(sift_args_schema(search_products_args), "{\"query\":\"q\",\"k\":50.0}",
                            a, &out, &err),
                     0);
    assert_int_equal(((const struct search_products_args *)out)->k, 50);
    assert_int_equal(
        decode(sift_args_schema(search_products_args), "{\"query\":\"q\",\"k\":1}", a, &out, &err),
        0);
    sift_arena_free(a);
}

static void test_decode_errors(void **state)
{
    const sift_schema *sp = sift_args_schema(search_products_args);
    const sift_schema *ci = sift_args_schema(check_inventory_args);

    expect_error(ci, "{\"sku\":\"A\",\"location\":\"XYZ\"}",
                 "location: must be one of HAN, DAD, SGN");
    expect_error(sp, "{\"query\":\"q\",\"k\":1.5}", "k: must be an integer between 1 and 50");
    expect_error(sp, "{\"query\":\"q\",\"k\":true}", "k: must be an integer between 1 and 50");
    expect_error(sp, "{\"query\":\"q\",\"k\":1e300}", "k: must be an integer between 1 and 50");
    expect_error(sp, "{\"query\":\"q\",\"k\":-0.0001}", "k: must be an integer between 1 and 50");
    expect_error(sp, "{\"query\":\"q\",\"filters\":{\"size\":42}}",
                 "filters.size: must be a string");
    expect_error(sp, "{\"query\":\"q\",\"filters\":{\"price_max\":1e999}}",
                 "filters.price_max: must be a number, at least 0");
    expect_error(sp, "{\"query\":\"q\",\"filters\":[]}", "filters: must be an object");
    expect_error(sp, "{\"query\":\"q\",\"filters\":{\"colour\":\"red\",\"color\":\"red\"}}",
                 "filters: unexpected field \"color\"");
    expect_error(ci, "{\"sku\":\"A\",\"location\":\"HAN\",\"colour\":1}",
                 "unexpected field \"colour\"");
    expect_error(ci, "{\"sku\":\"A\",\"sku\":\"B\",\"location\":\"HAN\"}",
                 "duplicate field \"sku\"");
    expect_error(ci, "{\"location\":\"HAN\"}", "sku: is required");
    expect_error(ci, "", "sku: is required"); /* blank text is {} */
    expect_error(ci, NULL, "sku: is required");
    expect_error(ci, "[1]", "arguments must be a JSON object");
    expect_error(ci, "null", "arguments must be a JSON object");
    expect_error(ci, "{\"sku\":", "arguments are not valid JSON: unexpected end of text");
    expect_error(ci, "{\"sku\":\"A\", \"loc",
                 "arguments are not valid JSON: unexpected end of text");
    expect_error(ci, "[{\"sku\":[1,2]", "arguments are not valid JSON: unexpected end of text");
    expect_error(ci, "{\"sku\":\"A\",}", "arguments are not valid JSON: error near byte 11 ('}')");
    expect_error(ci, "{\"a\":1]", "arguments are not valid JSON: error near byte 6 (']')");
    expect_error(ci, "{\"a\":\xff}", "arguments are not valid JSON: error near byte 5 (byte 0xff)");
    expect_error(ci, "{} {}", "arguments are not valid JSON: unexpected '{' after the object");
    expect_error(ci, "{\"sku\":\"\x80\",\"location\":\"HAN\"}", "sku: must be valid UTF-8");
    expect_error(ci, "{\"sku\":\"\xed\xa0\x80\",\"location\":\"HAN\"}", "sku: must be valid UTF-8");
    expect_error(ci, "{\"sku\":\"\xc0\xaf\",\"location\":\"HAN\"}", "sku: must be valid UTF-8");
    expect_error(sp, "{\"query\":\"q\",\"tags\":[\"ok\",\"\xff\"]}",
                 "tags[1]: must be valid UTF-8");
    expect_error(ci, "{\"sku\":\"A\\u0000B\",\"location\":\"HAN\"}",
                 "strings in the arguments must not contain \\u0000");
    expect_error(ci, "{\"sku\":\"A\\\\\\u0000\",\"location\":\"HAN\"}",
                 "strings in the arguments must not contain \\u0000");
    expect_error(sp, "{\"query\":\"q\",\"filters\":{\"in_stock\":0}}",
                 "filters.in_stock: must be true or false");
    /* A hostile field name is cut and defanged before it reaches a message. */
    expect_error(ci, "{\"a\\\"b\\n0123456789012345678901234567890123456789\":1}",
                 "unexpected field \"a?b?012345678901234567890123456789012345...\"");

    /* Messages for one-sided bounds. */
    static const sift_field one_sided[] = {
        {.name = "n", .type = SIFT_FIELD_INTEGER, .has_max = true, .max = 9},
        {.name = "s", .type = SIFT_FIELD_STRING, .min_len = 1},
        {.name = "t", .type = SIFT_FIELD_STRING, .max_len = 1},
        {.name = "l", .type = SIFT_FIELD_STRINGS, .min_items = 2},
        {.name = "m", .type = SIFT_FIELD_STRINGS, .min_items = 1, .max_items = 2},
        {.name = "x",
         .type = SIFT_FIELD_NUMBER,
         .has_min = true,
         .min = 0.1,
         .has_max = true,
         .max = 1e20},
    };
    sift_field fields[6];
    memcpy(fields, one_sided, sizeof fields);
    sift_schema s = {.name = "t"};
    sift_schema_layout(&s, fields, 6);
    sift_err err = {0};
    assert_int_equal(sift_schema_check(&s, &err), 0);
    expect_error(&s, "{\"n\":10}", "n: must be an integer, at most 9");
    expect_error(&s, "{\"s\":\"\"}", "s: must be at least 1 byte long");
    expect_error(&s, "{\"t\":\"ab\"}", "t: must be at most 1 byte long");
    expect_error(&s, "{\"l\":[\"a\"]}", "l: must have at least 2 items");
    expect_error(&s, "{\"m\":[]}", "m: must have between 1 and 2 items");
    expect_error(&s, "{\"x\":0}", "x: must be a number between 0.1 and 1e+20");
}

/* The cases shared with the ajv test (tests/e2e/check_tool_schemas.js). */
static void test_shared_cases(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/unit/golden/tool_cases.json", source_dir());
    char *text = read_file(path, NULL);
    assert_non_null(text);
    cJSON *doc = cJSON_Parse(text);
    assert_non_null(doc);
    cJSON *cases = cJSON_GetObjectItem(doc, "cases");
    assert_true(cJSON_GetArraySize(cases) > 30);

    int i = 0;
    for (cJSON *c = cases->child; c; c = c->next, i++) {
        const sift_tool *t = sample_tool(cJSON_GetObjectItem(c, "tool")->valuestring);
        cJSON *raw = cJSON_GetObjectItem(c, "raw");
        char *args = raw ? NULL : cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "args"));
        const char *json = raw ? raw->valuestring : args;
        bool valid = cJSON_IsTrue(cJSON_GetObjectItem(c, "valid"));
        cJSON *want = cJSON_GetObjectItem(c, "error");

        sift_arena *a = sift_arena_new(0);
        const void *out;
        sift_err err = {0};
        int rc = decode(t->args, json, a, &out, &err);
        if (valid && rc != 0)
            fail_msg("case %d (%s): expected valid, got \"%s\"", i, json, err.msg);
        if (!valid && rc != SIFT_EINVAL)
            fail_msg("case %d (%s): expected invalid, got %d", i, json, rc);
        if (want && strcmp(want->valuestring, err.msg) != 0)
            fail_msg("case %d (%s):\n  expected \"%s\"\n  got      \"%s\"", i, json,
                     want->valuestring, err.msg);
        sift_arena_free(a);
        cJSON_free(args);
    }
    cJSON_Delete(doc);
    sift_free(text);
}

/* decode -> encode -> decode gives the same document. */
static void test_args_json_roundtrip(void **state)
{
    const char *in = "{\"k\":7,\"filters\":{\"in_stock\":true,\"brand\":\"N\\\"ike\","
                     "\"price_max\":0.1,\"colour\":null},\"tags\":[\"a\",\"\\u00e9\"],"
                     "\"query\":\"shoes\\n\"}";
    const char *want = "{\"query\":\"shoes\\n\",\"filters\":{\"brand\":\"N\\\"ike\","
                       "\"price_max\":0.1,\"in_stock\":true},\"tags\":[\"a\",\"é\"],\"k\":7}";
    const sift_schema *s = sift_args_schema(search_products_args);
    sift_arena *a = sift_arena_new(0);
    sift_err err = {0};
    const void *out;
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(decode(s, in, a, &out, &err), 0);
    assert_int_equal(sift_args_json(s, out, &b), 0);
    assert_string_equal(b.data, want);
    assert_int_equal(decode(s, b.data, a, &out, &err), 0);
    sift_buf_reset(&b);
    assert_int_equal(sift_args_json(s, out, &b), 0);
    assert_string_equal(b.data, want);
    sift_buf_free(&b);
    sift_arena_free(a);
}

/* A tool declared at run time (as sift.yaml will) describes the same
 * arguments as its macro twin: same schema text, same decoded values. */
static void test_runtime_schema(void **state)
{
    sift_field ff[] = {
        {.name = "brand", .type = SIFT_FIELD_STRING, .description = "Brand name", .max_len = 64},
        {.name = "size",
         .type = SIFT_FIELD_STRING,
         .description = "Size label, e.g. M or 42",
         .max_len = 16},
        {.name = "colour", .type = SIFT_FIELD_STRING, .description = "Colour name", .max_len = 32},
        {.name = "category",
         .type = SIFT_FIELD_STRING,
         .description = "Category path, e.g. shoes/running",
         .max_len = 128},
        {.name = "price_min",
         .type = SIFT_FIELD_NUMBER,
         .description = "Lowest price in VND",
         .has_min = true},
        {.name = "price_max",
         .type = SIFT_FIELD_NUMBER,
         .description = "Highest price in VND",
         .has_min = true},
        {.name = "in_stock", .type = SIFT_FIELD_BOOLEAN, .description = "Only products in stock"},
    };
    sift_schema filters = {.name = "filters"};
    sift_schema_layout(&filters, ff, 7);
    sift_field pf[] = {
        {.name = "query",
         .type = SIFT_FIELD_STRING,
         .required = true,
         .description = "What the shopper is looking for, in their words",
         .min_len = 1,
         .max_len = 256},
        {.name = "filters",
         .type = SIFT_FIELD_OBJECT,
         .description = "Structured filters",
         .object = &filters},
        {.name = "tags",
         .type = SIFT_FIELD_STRINGS,
         .description = "Tags that must all match",
         .max_items = 5,
         .max_len = 32},
        {.name = "k",
         .type = SIFT_FIELD_INTEGER,
         .description = "Number of results",
         .has_min = true,
         .min = 1,
         .has_max = true,
         .max = 50},
    };
    sift_schema params = {.name = "runtime_search"};
    sift_schema_layout(&params, pf, 4);
    sift_err err = {0};
    assert_int_equal(sift_schema_check(&params, &err), 0);

    sift_buf a, b;
    sift_buf_init(&a, 0);
    sift_buf_init(&b, 0);
    assert_int_equal(sift_schema_json(&params, &a), 0);
    assert_int_equal(sift_schema_json(sift_args_schema(search_products_args), &b), 0);
    assert_string_equal(a.data, b.data);

    const char *doc = "{\"query\":\"q\",\"filters\":{\"in_stock\":true,\"price_max\":9},\"k\":3}";
    sift_arena *ar = sift_arena_new(0);
    const void *o1, *o2;
    assert_int_equal(decode(&params, doc, ar, &o1, &err), 0);
    assert_int_equal(decode(sift_args_schema(search_products_args), doc, ar, &o2, &err), 0);
    sift_buf_reset(&a);
    sift_buf_reset(&b);
    assert_int_equal(sift_args_json(&params, o1, &a), 0);
    assert_int_equal(sift_args_json(sift_args_schema(search_products_args), o2, &b), 0);
    assert_string_equal(a.data, b.data);
    /* Same layout, so the run-time result reads as the C struct too. */
    const struct search_products_args *p = o1;
    assert_int_equal(p->k, 3);
    assert_true(p->filters.in_stock && p->filters.price_max == 9);
    sift_arena_free(ar);
    sift_buf_free(&a);
    sift_buf_free(&b);
}

/* Every allocation failure is reported as SIFT_ENOMEM, never a crash or a
 * leak (the sanitizer build checks the leaks). */
static void test_decode_oom(void **state)
{
    const char *doc = "{\"query\":\"running shoes\",\"k\":12,\"tags\":[\"sale\",\"new\",\"x\"],"
                      "\"filters\":{\"brand\":\"Nike\",\"price_min\":0.5,\"colour\":\"red\"}}";
    bool succeeded = false;
    for (long n = 0; n < 200 && !succeeded; n++) {
        /* A small block size so the arena has to grow several times. */
        sift_arena *a = sift_arena_new(64);
        assert_non_null(a);
        sift_err err = {0};
        const void *out;
        sift_mem_fail_after(n);
        int rc = decode(sift_args_schema(search_products_args), doc, a, &out, &err);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            succeeded = true;
            assert_string_equal(((const struct search_products_args *)out)->tags.items[2], "x");
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_non_null(strstr(err.msg, "out of memory"));
        }
        sift_arena_free(a);
    }
    assert_true(succeeded);
}

/* ---- registry ---- */

static void test_registry(void **state)
{
    sift_tool_registry *r = sift_tool_registry_new();
    sift_err err = {0};
    assert_string_equal(sift_tool_registry_json(r, NULL), "[]");
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(sift_tool_registry_add(r, sample_tools[i], &err), 0);
    assert_int_equal(sift_tool_registry_count(r), 3);
    assert_ptr_equal(sift_tool_registry_find(r, "get_price"), &get_price_tool);
    assert_null(sift_tool_registry_find(r, "get_prices"));
    assert_ptr_equal(sift_tool_registry_at(r, 2), &search_products_tool);
    assert_null(sift_tool_registry_at(r, 3));

    assert_int_equal(sift_tool_registry_add(r, &get_price_tool, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tool get_price: a tool of that name is already registered");
    sift_tool bad = get_price_tool;
    bad.name = "get price";
    assert_int_equal(sift_tool_registry_add(r, &bad, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tool name \"get price\": a name is 1 to 64 of A-Z a-z 0-9 _ -");
    sift_field f = {.name = "x", .type = SIFT_FIELD_ENUM, .required = true};
    sift_schema s = {.name = "x"};
    sift_schema_layout(&s, &f, 1);
    bad.name = "broken";
    bad.args = &s;
    assert_int_equal(sift_tool_registry_add(r, &bad, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "tool broken: field x: an enum needs values");
    assert_int_equal(sift_tool_registry_count(r), 3);

    /* The tools array is the three tool documents, in order. */
    size_t len;
    const char *json = sift_tool_registry_json(r, &len);
    assert_int_equal(len, strlen(json));
    sift_buf want;
    sift_buf_init(&want, 0);
    sift_buf_putc(&want, '[');
    for (size_t i = 0; i < 3; i++) {
        if (i)
            sift_buf_putc(&want, ',');
        assert_int_equal(sift_tool_json(sample_tools[i], &want), 0);
    }
    sift_buf_putc(&want, ']');
    assert_string_equal(json, want.data);
    cJSON *doc = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(doc), 3);
    cJSON_Delete(doc);
    sift_buf_free(&want);
    sift_tool_registry_free(r);
}

static void test_registry_oom(void **state)
{
    bool succeeded = false;
    for (long n = 0; n < 100 && !succeeded; n++) {
        sift_mem_fail_after(n);
        sift_tool_registry *r = sift_tool_registry_new();
        int rc = r ? 0 : SIFT_ENOMEM;
        sift_err err = {0};
        for (size_t i = 0; i < 3 && rc == 0; i++)
            rc = sift_tool_registry_add(r, sample_tools[i], &err);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            succeeded = true;
            assert_int_equal(sift_tool_registry_count(r), 3);
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
            /* What was added before the failure is intact. */
            if (r) {
                cJSON *doc = cJSON_Parse(sift_tool_registry_json(r, NULL));
                assert_non_null(doc);
                cJSON_Delete(doc);
            }
        }
        sift_tool_registry_free(r);
    }
    assert_true(succeeded);
}

/* ---- tool calls ---- */

struct outcome {
    int calls;
    int code;
    char result[256];
};

static void on_done(sift_tool_job *job, void *data)
{
    struct outcome *o = data;
    assert_int_equal(job->state, SIFT_TOOL_JOB_DONE);
    o->calls++;
    o->code = job->code;
    snprintf(o->result, sizeof o->result, "%s", job->result ? job->result : "(null)");
}

static struct outcome run_call(const sift_tool *tool, sift_ctx *ctx, sift_arena *a,
                               const char *args)
{
    struct outcome o = {0};
    sift_tool_job job;
    sift_tool_job_init(&job, tool, ctx, a, NULL, on_done, &o);
    assert_int_equal(job.state, SIFT_TOOL_JOB_NEW);
    sift_tool_job_start(&job, args, strlen(args));
    uv_run(sift_ctx_loop(ctx), UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    return o;
}

static void test_tool_calls(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_arena *a = sift_arena_new(0);
    struct outcome o;

    o = run_call(&check_inventory_tool, root, a, "{\"sku\":\"S1\",\"location\":\"HAN\"}");
    assert_int_equal(o.code, 0);
    assert_string_equal(o.result, "{\"sku\":\"S1\",\"location\":\"HAN\",\"units\":7}");

    o = run_call(&check_inventory_tool, root, a, "{\"sku\":\"S1\",\"location\":\"PAR\"}");
    assert_int_equal(o.code, SIFT_EINVAL);
    assert_string_equal(o.result, "location: must be one of HAN, DAD, SGN");

    o = run_call(&check_inventory_tool, root, a, "{\"sku\":\"GONE\",\"location\":\"HAN\"}");
    assert_int_equal(o.code, SIFT_ENOTFOUND);
    assert_string_equal(o.result, "no product with SKU GONE");

    /* Asynchronous completion, from a timer on the loop. */
    o = run_call(&get_price_tool, root, a, "{\"sku\":\"S1\",\"currency\":\"USD\"}");
    assert_int_equal(o.code, 0);
    assert_string_equal(o.result, "{\"price\":12.5,\"currency\":\"USD\"}");
    o = run_call(&get_price_tool, root, a, "{\"sku\":\"S1\",\"currency\":null}");
    assert_string_equal(o.result, "{\"price\":300000,\"currency\":\"VND\"}");

    o = run_call(&search_products_tool, root, a, "{\"k\":3,\"query\":\"socks\"}");
    assert_int_equal(o.code, 0);
    assert_string_equal(o.result, "{\"query\":\"socks\",\"k\":3}");

    /* A context already done never reaches the tool. */
    sift_ctx *child = sift_ctx_new(root);
    sift_ctx_cancel(child, SIFT_ECANCELED, "client went away");
    o = run_call(&check_inventory_tool, child, a, "{\"sku\":\"S1\",\"location\":\"HAN\"}");
    assert_int_equal(o.code, SIFT_ECANCELED);
    assert_string_equal(o.result, "client went away");
    sift_ctx_release(child);

    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sift_arena_free(a);
}

/* A result that cannot be stored still ends the job, as SIFT_ENOMEM. */
static void big_result(sift_tool_job *job, const struct check_inventory_args *args)
{
    static char big[8192];
    memset(big, 'x', sizeof big - 1);
    sift_mem_fail_after(0);
    sift_tool_job_done(job, 0, big);
    sift_mem_fail_after(-1);
}
SIFT_TOOL_DEFINE(big_result, "Returns more than the arena can take", check_inventory_args,
                 big_result);

static void test_tool_job_oom(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_arena *a = sift_arena_new(512);
    struct outcome o = run_call(&big_result_tool, root, a, "{\"sku\":\"S1\",\"location\":\"HAN\"}");
    assert_int_equal(o.code, SIFT_ENOMEM);
    assert_string_equal(o.result, "out of memory storing the tool result");
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sift_arena_free(a);
}

/* Cancelling the context of a job in flight ends it at once, with the cause. */
static void test_tool_call_cancelled(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_ctx *ctx = sift_ctx_new(root);
    sift_arena *a = sift_arena_new(0);
    struct outcome o = {0};
    sift_tool_job job;
    sift_tool_job_init(&job, &get_price_tool, ctx, a, NULL, on_done, &o);
    const char *args = "{\"sku\":\"S1\"}";
    sift_tool_job_start(&job, args, strlen(args));
    assert_int_equal(job.state, SIFT_TOOL_JOB_RUNNING);
    assert_int_equal(o.calls, 0);
    sift_ctx_cancel(ctx, SIFT_ETIMEDOUT, "tool deadline of %d ms passed", 500);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, SIFT_ETIMEDOUT);
    assert_string_equal(o.result, "tool deadline of 500 ms passed");
    uv_run(&loop, UV_RUN_DEFAULT); /* the timer closes; it must not report again */
    assert_int_equal(o.calls, 1);
    sift_ctx_release(ctx);
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sift_arena_free(a);
}

/* How the tools node runs a model turn's tool calls: one sift_group task per
 * job, errors collected (they go back to the model), results in order. */
struct group_call {
    sift_tool_job job;
    sift_task *task;
    const char *args;
};

static void group_call_done(sift_tool_job *job, void *data)
{
    struct group_call *gc = data;
    sift_task_done(gc->task, job->code, gc, job->code < 0 ? job->result : NULL);
}

static void group_call_start(sift_task *task, sift_ctx *ctx, void *arg)
{
    struct group_call *gc = arg;
    gc->task = task;
    gc->job.ctx = ctx;
    sift_tool_job_start(&gc->job, gc->args, strlen(gc->args));
}

static void group_done(sift_group *g, int err, void *udata)
{
    *(int *)udata = err == 0 ? 1 : 2;
}

static void test_tool_calls_in_group(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_arena *a = sift_arena_new(0);
    struct group_call calls[] = {
        {.args = "{\"sku\":\"S1\",\"currency\":\"USD\"}"},
        {.args = "{\"sku\":\"S1\",\"location\":\"XYZ\"}"},
        {.args = "{\"query\":\"socks\",\"k\":5}"},
    };
    const sift_tool *tools[] = {&get_price_tool, &check_inventory_tool, &search_products_tool};
    int finished = 0;
    sift_group *g = sift_group_new(root, 2, SIFT_GROUP_COLLECT, group_done, &finished);
    assert_non_null(g);
    for (int i = 0; i < 3; i++) {
        sift_tool_job_init(&calls[i].job, tools[i], NULL, a, NULL, group_call_done, &calls[i]);
        assert_int_equal(sift_group_go(g, group_call_start, &calls[i]), i);
    }
    sift_group_close(g);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(finished, 2); /* one job had bad arguments */

    void *res;
    const char *msg;
    assert_int_equal(sift_group_result(g, 0, &res, &msg), 0);
    assert_string_equal(calls[0].job.result, "{\"price\":12.5,\"currency\":\"USD\"}");
    assert_int_equal(sift_group_result(g, 1, &res, &msg), SIFT_EINVAL);
    assert_string_equal(msg, "location: must be one of HAN, DAD, SGN");
    assert_int_equal(sift_group_result(g, 2, &res, &msg), 0);
    assert_ptr_equal(res, &calls[2]);
    assert_string_equal(calls[2].job.result, "{\"query\":\"socks\",\"k\":5}");
    sift_group_free(g);
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sift_arena_free(a);
}

/* A tool declared at run time (an HTTP tool from sift.yaml, say): generic
 * function, its own data in udata, arguments forwarded as validated JSON. */
static void forward(sift_tool_job *job, const void *args)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_buf_printf(&b, "{\"url\":\"%s\",\"body\":", (const char *)job->tool->udata);
    assert_int_equal(sift_args_json(job->tool->args, args, &b), 0);
    sift_buf_putc(&b, '}');
    sift_tool_job_done(job, 0, b.data);
    sift_buf_free(&b);
}

static void test_runtime_tool(void **state)
{
    sift_field fields[] = {
        {.name = "order_id", .type = SIFT_FIELD_STRING, .required = true, .max_len = 20},
        {.name = "carrier", .type = SIFT_FIELD_ENUM, .values = "GHN,VTP"},
    };
    sift_schema args = {.name = "track_order"};
    sift_schema_layout(&args, fields, 2);
    sift_tool tool = {.name = "track_order",
                      .description = "Where an order is",
                      .args = &args,
                      .fn = forward,
                      .udata = "http://127.0.0.1:9/track"};
    sift_tool_registry *r = sift_tool_registry_new();
    sift_err err = {0};
    assert_int_equal(sift_tool_registry_add(r, &tool, &err), 0);
    assert_int_equal(sift_tool_registry_add(r, &check_inventory_tool, &err), 0);
    assert_non_null(strstr(sift_tool_registry_json(r, NULL),
                           "\"carrier\":{\"type\":[\"string\",\"null\"],\"enum\":[\"GHN\","
                           "\"VTP\",null]}"));

    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_arena *a = sift_arena_new(0);
    struct outcome o =
        run_call(sift_tool_registry_find(r, "track_order"), root, a, "{\"order_id\":\"A-7\"}");
    assert_int_equal(o.code, 0);
    assert_string_equal(o.result,
                        "{\"url\":\"http://127.0.0.1:9/track\",\"body\":{\"order_id\":\"A-7\"}}");
    o = run_call(sift_tool_registry_find(r, "track_order"), root, a,
                 "{\"order_id\":\"A-7\",\"carrier\":\"DHL\"}");
    assert_int_equal(o.code, SIFT_EINVAL);
    assert_string_equal(o.result, "carrier: must be one of GHN, VTP");
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sift_arena_free(a);
    sift_tool_registry_free(r);
}

static void twice(sift_tool_job *job, const struct check_inventory_args *args)
{
    sift_tool_job_done(job, 0, "{}");
    sift_tool_job_done(job, 0, "{}");
}
SIFT_TOOL_DEFINE(twice, "Reports twice: a bug", check_inventory_args, twice);

/* Reporting twice is a bug that must stop the process, not a second answer. */
static void test_double_done_aborts(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sift_log_set_level(SIFT_LOG_OFF);
        sift_arena *a = sift_arena_new(0);
        sift_tool_job job;
        sift_tool_job_init(&job, &twice_tool, NULL, a, NULL, NULL, NULL);
        const char *args = "{\"sku\":\"S1\",\"location\":\"HAN\"}";
        sift_tool_job_start(&job, args, strlen(args));
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_struct_layout),       cmocka_unit_test(test_runtime_layout),
        cmocka_unit_test(test_schema_check),        cmocka_unit_test(test_golden_schemas),
        cmocka_unit_test(test_schema_shape),        cmocka_unit_test(test_decode_all_types),
        cmocka_unit_test(test_decode_errors),       cmocka_unit_test(test_shared_cases),
        cmocka_unit_test(test_args_json_roundtrip), cmocka_unit_test(test_runtime_schema),
        cmocka_unit_test(test_decode_oom),          cmocka_unit_test(test_registry),
        cmocka_unit_test(test_registry_oom),        cmocka_unit_test(test_tool_calls),
        cmocka_unit_test(test_tool_job_oom),        cmocka_unit_test(test_tool_call_cancelled),
        cmocka_unit_test(test_tool_calls_in_group), cmocka_unit_test(test_runtime_tool),
        cmocka_unit_test(test_double_done_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
