/* The shop tools: each tool run through a registry on a uv loop against a
 * temporary SQLite store (arguments decoded, query on the thread pool, job
 * completed on the loop), exact result JSON, argument errors, filters applied
 * before truncation, cancellation of queued and running queries, and every
 * SKU of the sample catalog found by its own SKU. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/ctx.h"
#include "sift/model.h"
#include "sift/planner.h"
#include "sift/search.h"
#include "sift/shoptools.h"
#include "sift/store.h"
#include "sift/tool.h"
#include "sift/toolsnode.h"

#ifndef SIFT_SOURCE_DIR
#define SIFT_SOURCE_DIR "."
#endif

/* Products, stock and prices of the small test catalog. Acme's 40 short
 * running-shoe titles outrank the two long Zeta titles for "running shoe",
 * so a brand filter on Zeta only works if it is applied before truncation. */
static const char products_head[] =
    "{\"sku\":\"NIKE-PEG40-42\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\","
    "\"brand\":\"Nike\",\"category\":[\"Footwear\",\"Running\",\"Road\"],"
    "\"attributes\":{\"size\":\"42\",\"size_system\":\"EU\",\"colour\":\"black\","
    "\"gender\":\"men\"}}\n"
    "{\"sku\":\"NIKE-PEG40-43\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\","
    "\"brand\":\"Nike\",\"category\":[\"Footwear\",\"Running\",\"Road\"],"
    "\"attributes\":{\"size\":\"43\",\"size_system\":\"EU\",\"colour\":\"black\","
    "\"gender\":\"men\"}}\n"
    "{\"sku\":\"ADI-UB22-42\",\"title\":\"Adidas Ultraboost 22 Women's Running Shoe - White\","
    "\"brand\":\"Adidas\",\"category\":[\"Footwear\",\"Running\",\"Road\"],"
    "\"attributes\":{\"size\":\"42\",\"size_system\":\"EU\",\"colour\":\"white\","
    "\"gender\":\"women\"}}\n"
    "{\"sku\":\"TEE-1\",\"title\":\"Cotton \\\"Basic\\\" Tee\",\"brand\":\"Acme\","
    "\"category\":[\"Apparel\",\"Tops\",\"T-Shirts\"],"
    "\"attributes\":{\"size\":\"M\",\"colour\":\"navy/grey\",\"gender\":\"unisex\"}}\n"
    "{\"sku\":\"ZETA-1\",\"title\":\"Zeta Trail Explorer Running Shoe for long mountain days "
    "on rocky wet ground in every season\",\"brand\":\"Zeta\","
    "\"category\":[\"Footwear\",\"Running\",\"Trail\"],\"attributes\":{\"size\":\"42\"}}\n"
    "{\"sku\":\"ZETA-2\",\"title\":\"Zeta Ridge Climber Running Shoe for long mountain days "
    "on rocky wet ground in every season\",\"brand\":\"Zeta\","
    "\"category\":[\"Footwear\",\"Running\",\"Trail\"],\"attributes\":{\"size\":\"43\"}}\n";

static const char inventory[] =
    "{\"sku\":\"NIKE-PEG40-42\",\"warehouse\":\"HAN\",\"quantity\":12}\n"
    "{\"sku\":\"NIKE-PEG40-42\",\"warehouse\":\"SGN\",\"quantity\":0}\n"
    "{\"sku\":\"NIKE-PEG40-43\",\"warehouse\":\"HAN\",\"quantity\":0}\n"
    "{\"sku\":\"NIKE-PEG40-43\",\"warehouse\":\"DAD\",\"quantity\":0}\n"
    "{\"sku\":\"ADI-UB22-42\",\"warehouse\":\"DAD\",\"quantity\":4}\n";

/* NIKE-PEG40-42 has an old price, the one in force, and a future sale. */
static const char prices[] =
    "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3000000}\n"
    "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3250000,\"valid_from\":1000}\n"
    "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":9,\"valid_from\":4000000000}\n"
    "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"USD\",\"amount\":129.9}\n"
    "{\"sku\":\"NIKE-PEG40-43\",\"currency\":\"VND\",\"amount\":3290000}\n"
    "{\"sku\":\"ADI-UB22-42\",\"currency\":\"VND\",\"amount\":4500000}\n";

typedef struct fixture {
    char dir[64];
    char path[128];
    uv_loop_t loop;
    sift_ctx *root;
    sift_arena *a;
    sift_shop *shop;
    sift_tool_registry *reg;
} fixture;

static void load_text(sift_store *st, const char *text, int kind)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    sift_err e = {0};
    sift_load_summary sum = {0};
    int rc = sift_catalog_load_jsonl(st, f, kind, NULL, &sum, &e);
    fclose(f);
    if (rc != 0 || sum.bad != 0)
        fail_msg("load kind %d: rc %d, %zu bad: %s", kind, rc, sum.bad, e.msg);
}

static void load_file(sift_store *st, const char *name, int kind)
{
    const char *src = getenv("SIFT_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/catalog/sample/%s", src ? src : SIFT_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    sift_err e = {0};
    sift_load_summary sum = {0};
    int rc = sift_catalog_load_jsonl(st, f, kind, NULL, &sum, &e);
    fclose(f);
    if (rc != 0 || sum.bad != 0)
        fail_msg("load %s: rc %d, %zu bad: %s", path, rc, sum.bad, e.msg);
}

/* A fresh store: the small test catalog, or the sample catalog. */
static fixture *fixture_new(bool sample, const sift_shop_opts *extra)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sift-test-shop-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    sift_err e = {0};
    sift_store *st = NULL;
    if (sift_store_sqlite_open(f->path, NULL, &st, &e) != 0)
        fail_msg("open: %s", e.msg);
    if (sample) {
        load_file(st, "products.jsonl", SIFT_CATALOG_PRODUCTS);
        load_file(st, "inventory.jsonl", SIFT_CATALOG_INVENTORY);
        load_file(st, "prices.jsonl", SIFT_CATALOG_PRICES);
    } else {
        char line[256];
        sift_buf b;
        sift_buf_init(&b, 0);
        assert_int_equal(sift_buf_puts(&b, products_head), 0);
        for (int i = 0; i < 40; i++) {
            snprintf(line, sizeof line,
                     "{\"sku\":\"ACME-%02d\",\"title\":\"Acme Running Shoe %d\",\"brand\":\"Acme\","
                     "\"category\":[\"Footwear\",\"Running\",\"Road\"],"
                     "\"attributes\":{\"size\":\"42\"}}\n",
                     i, i);
            assert_int_equal(sift_buf_puts(&b, line), 0);
        }
        load_text(st, b.data, SIFT_CATALOG_PRODUCTS);
        sift_buf_free(&b);
        load_text(st, inventory, SIFT_CATALOG_INVENTORY);
        load_text(st, prices, SIFT_CATALOG_PRICES);
    }
    sift_store_close(st);

    sift_shop_opts o = extra ? *extra : (sift_shop_opts){0};
    o.store_path = f->path;
    if (sift_shop_new(&o, &f->shop, &e) != 0)
        fail_msg("shop: %s", e.msg);
    f->reg = sift_tool_registry_new();
    assert_non_null(f->reg);
    if (sift_shop_tools_register(f->reg, f->shop, &e) != 0)
        fail_msg("register: %s", e.msg);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->root = sift_ctx_new_root(&f->loop);
    f->a = sift_arena_new(0);
    assert_non_null(f->root);
    assert_non_null(f->a);
    return f;
}

static void fixture_free(fixture *f)
{
    sift_ctx_release(f->root);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_int_equal(sift_shop_inflight(f->shop), 0);
    sift_tool_registry_free(f->reg);
    sift_shop_free(f->shop);
    sift_arena_free(f->a);
    char p[160];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
}

struct outcome {
    int calls;
    int code;
    const char *result;
};

static void on_done(sift_tool_job *job, void *data)
{
    struct outcome *o = data;
    o->calls++;
    o->code = job->code;
    o->result = job->result;
}

/* Runs one call of tool `name` through the registry and the loop. */
static struct outcome call(fixture *f, const char *name, const char *args)
{
    const sift_tool *t = sift_tool_registry_find(f->reg, name);
    assert_non_null(t);
    struct outcome o = {0};
    sift_tool_job job;
    sift_tool_job_init(&job, t, f->root, f->a, NULL, on_done, &o);
    sift_tool_job_start(&job, args, strlen(args));
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(sift_shop_inflight(f->shop), 0);
    return o;
}

static void expect(fixture *f, const char *name, const char *args, int code, const char *result)
{
    struct outcome o = call(f, name, args);
    if (o.code != code || !o.result || strcmp(o.result, result) != 0)
        fail_msg("%s %s:\n  got  %d %s\n  want %d %s", name, args, o.code,
                 o.result ? o.result : "(null)", code, result);
}

static void test_registry(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    assert_int_equal(sift_tool_registry_count(f->reg), 4);
    const char *names[] = {"search_products", "check_inventory", "get_price", "list_warehouses"};
    for (size_t i = 0; i < 4; i++) {
        assert_ptr_equal(sift_tool_registry_at(f->reg, i), sift_shop_tool(f->shop, names[i]));
        assert_string_equal(sift_tool_registry_at(f->reg, i)->name, names[i]);
    }
    assert_null(sift_shop_tool(f->shop, "nope"));
    const char *json = sift_tool_registry_json(f->reg, NULL);
    assert_non_null(strstr(json, "\"enum\":[\"HAN\",\"DAD\",\"SGN\",null]"));
    /* A second registration into the same registry is refused by name. */
    sift_err e = {0};
    assert_int_equal(sift_shop_tools_register(f->reg, f->shop, &e), SIFT_EINVAL);
    fixture_free(f);

    /* Options are checked. */
    sift_shop *s = NULL;
    assert_int_equal(sift_shop_new(&(sift_shop_opts){0}, &s, &e), SIFT_EINVAL);
    assert_int_equal(
        sift_shop_new(&(sift_shop_opts){.store_path = "x", .default_currency = "EUR"}, &s, &e),
        SIFT_EINVAL);
    assert_string_equal(e.msg, "shop tools: default currency \"EUR\" is not one of VND, USD");
    assert_null(s);
}

static void test_check_inventory(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    /* Every known warehouse, 0 where the SKU has no row. */
    expect(f, "check_inventory", "{\"sku\":\"NIKE-PEG40-42\"}", 0,
           "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":\"DAD\",\"quantity\":0},"
           "{\"code\":\"HAN\",\"quantity\":12},{\"code\":\"SGN\",\"quantity\":0}]}");
    expect(f, "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}", 0,
           "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":\"HAN\",\"quantity\":12}]}");
    expect(f, "check_inventory", "{\"sku\":\"ADI-UB22-42\",\"location\":\"SGN\"}", 0,
           "{\"sku\":\"ADI-UB22-42\",\"warehouses\":[{\"code\":\"SGN\",\"quantity\":0}]}");
    expect(f, "check_inventory", "{\"sku\":\"TEE-1\",\"location\":null}", 0,
           "{\"sku\":\"TEE-1\",\"warehouses\":[{\"code\":\"DAD\",\"quantity\":0},"
           "{\"code\":\"HAN\",\"quantity\":0},{\"code\":\"SGN\",\"quantity\":0}]}");
    expect(f, "check_inventory", "{\"sku\":\"NOPE-1\",\"location\":\"HAN\"}", SIFT_ENOTFOUND,
           "no product with sku \"NOPE-1\"");
    /* Argument errors are the decoder's messages. */
    expect(f, "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"PAR\"}", SIFT_EINVAL,
           "location: must be one of HAN, DAD, SGN");
    expect(f, "check_inventory", "{\"location\":\"HAN\"}", SIFT_EINVAL, "sku: is required");
    fixture_free(f);
}

static void test_get_price(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    /* The price in force now: not the old one, not the future sale. */
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-42\"}", 0,
           "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3250000}");
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-42\",\"currency\":null}", 0,
           "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3250000}");
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"USD\"}", 0,
           "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"USD\",\"amount\":129.90}");
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-43\",\"currency\":\"USD\"}", SIFT_ENOTFOUND,
           "no USD price for sku \"NIKE-PEG40-43\"");
    expect(f, "get_price", "{\"sku\":\"GHOST\"}", SIFT_ENOTFOUND, "no product with sku \"GHOST\"");
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"EUR\"}", SIFT_EINVAL,
           "currency: must be one of VND, USD");
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-42\",\"price\":1}", SIFT_EINVAL,
           "unexpected field \"price\"");
    fixture_free(f);

    /* The shop's default currency applies when none is asked for. */
    f = fixture_new(false, &(sift_shop_opts){.default_currency = "USD"});
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-42\"}", 0,
           "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"USD\",\"amount\":129.90}");
    fixture_free(f);
}

static void test_list_warehouses(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    expect(
        f, "list_warehouses", "{}", 0,
        "{\"warehouses\":[{\"code\":\"DAD\",\"name\":\"Da Nang\"},"
        "{\"code\":\"HAN\",\"name\":\"Hanoi\"},{\"code\":\"SGN\",\"name\":\"Ho Chi Minh City\"}]}");
    expect(
        f, "list_warehouses", "", 0,
        "{\"warehouses\":[{\"code\":\"DAD\",\"name\":\"Da Nang\"},"
        "{\"code\":\"HAN\",\"name\":\"Hanoi\"},{\"code\":\"SGN\",\"name\":\"Ho Chi Minh City\"}]}");
    expect(f, "list_warehouses", "{\"all\":true}", SIFT_EINVAL, "unexpected field \"all\"");
    fixture_free(f);
}

#define NIKE42_CHUNK                                                                               \
    "{\"sku\":\"NIKE-PEG40-42\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\","         \
    "\"brand\":\"Nike\",\"category\":\"Footwear > Running > Road\",\"attributes\":{\"size\":"      \
    "\"42\",\"size_system\":\"EU\",\"colour\":\"black\",\"gender\":\"men\"}}"
#define NIKE43_CHUNK                                                                               \
    "{\"sku\":\"NIKE-PEG40-43\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\","         \
    "\"brand\":\"Nike\",\"category\":\"Footwear > Running > Road\",\"attributes\":{\"size\":"      \
    "\"43\",\"size_system\":\"EU\",\"colour\":\"black\",\"gender\":\"men\"}}"
#define ADI_CHUNK                                                                                  \
    "{\"sku\":\"ADI-UB22-42\",\"title\":\"Adidas Ultraboost 22 Women's Running Shoe - White\","    \
    "\"brand\":\"Adidas\",\"category\":\"Footwear > Running > Road\",\"attributes\":{\"size\":"    \
    "\"42\",\"size_system\":\"EU\",\"colour\":\"white\",\"gender\":\"women\"}}"
#define TEE_CHUNK                                                                                  \
    "{\"sku\":\"TEE-1\",\"title\":\"Cotton \\\"Basic\\\" Tee\",\"brand\":\"Acme\","                \
    "\"category\":\"Apparel > Tops > T-Shirts\",\"attributes\":{\"size\":\"M\","                   \
    "\"colour\":\"navy/grey\",\"gender\":\"unisex\"}}"

/* The SKUs of a search_products result, in order, comma-separated. */
static const char *skus_of(fixture *f, const char *result)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    const char *p = result;
    while ((p = strstr(p, "{\"sku\":\"")) != NULL) {
        p += 8;
        const char *end = strchr(p, '"');
        if (b.len)
            sift_buf_putc(&b, ',');
        sift_buf_append(&b, p, (size_t)(end - p));
        p = end;
    }
    const char *out = sift_arena_strdup(f->a, b.data ? b.data : "");
    sift_buf_free(&b);
    return out;
}

static void expect_skus(fixture *f, const char *args, const char *skus, int total)
{
    struct outcome o = call(f, "search_products", args);
    if (o.code != 0)
        fail_msg("search %s: %d %s", args, o.code, o.result);
    const char *got = skus_of(f, o.result);
    char tail[32];
    snprintf(tail, sizeof tail, "],\"total\":%d}", total);
    size_t rl = strlen(o.result), tl = strlen(tail);
    bool total_ok = total < 0 || (rl >= tl && strcmp(o.result + rl - tl, tail) == 0);
    if (strcmp(got, skus) != 0 || !total_ok)
        fail_msg("search %s:\n  got  %s (%s)\n  want %s total %d", args, got, o.result, skus,
                 total);
}

static void test_search_products(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    /* Exact result shape: compact chunks, no stock and no price. */
    expect(f, "search_products", "{\"query\":\"pegasus\",\"k\":5}", 0,
           "{\"products\":[" NIKE42_CHUNK "," NIKE43_CHUNK "],\"total\":2}");
    expect(f, "search_products", "{\"query\":\"basic tee\"}", 0,
           "{\"products\":[" TEE_CHUNK "],\"total\":1}");
    expect(f, "search_products", "{\"query\":\"flux capacitor\"}", 0,
           "{\"products\":[],\"total\":0}");
    /* An exact SKU comes first, before the same model's other size. */
    expect_skus(f, "{\"query\":\"pegasus NIKE-PEG40-43\",\"k\":2}", "NIKE-PEG40-43,NIKE-PEG40-42",
                3);
    /* (other products share its size token "42": total counts them; not checked) */
    expect_skus(f, "{\"query\":\"nike-peg40-42\",\"k\":1}", "NIKE-PEG40-42", -1);

    /* Structured filters on the attributes. */
    const char *q = "{\"query\":\"running shoe\",\"k\":50,\"filters\":";
    char args[512];
#define FILTERED(fj) (snprintf(args, sizeof args, "%s%s}", q, fj), args)
    expect_skus(f, FILTERED("{\"brand\":\"nike\"}"), "NIKE-PEG40-42,NIKE-PEG40-43", 2);
    expect_skus(f, FILTERED("{\"brand\":\"Nike\",\"size\":\"43\",\"size_system\":\"EU\"}"),
                "NIKE-PEG40-43", 1);
    expect_skus(f, FILTERED("{\"brand\":\"Nike\",\"size\":\"43\",\"size_system\":\"US\"}"), "", 0);
    expect_skus(f, FILTERED("{\"colour\":[\"white\",\"red\"]}"), "ADI-UB22-42", 1);
    expect_skus(f, FILTERED("{\"gender\":\"women\"}"), "ADI-UB22-42", 1);
    expect_skus(f, FILTERED("{\"category\":\"trail running shoes\"}"), "ZETA-1,ZETA-2", 2);
    expect_skus(f, FILTERED("{\"category\":\"Footwear > Running > Trail\"}"), "ZETA-1,ZETA-2", 2);
    expect_skus(f, FILTERED("{\"category\":\"apparel\"}"), "", 0);
    /* Live facts: stock (anywhere, or at the warehouses named) and price. */
    expect_skus(f, FILTERED("{\"in_stock\":true}"), "NIKE-PEG40-42,ADI-UB22-42", 2);
    expect_skus(f, FILTERED("{\"in_stock\":true,\"warehouses\":[\"DAD\",\"SGN\"]}"), "ADI-UB22-42",
                1);
    expect_skus(f, FILTERED("{\"in_stock\":false,\"brand\":\"Adidas\"}"), "ADI-UB22-42", 1);
    expect_skus(f, FILTERED("{\"price_max\":3260000}"), "NIKE-PEG40-42", 1);
    expect_skus(f, FILTERED("{\"price_min\":3260000,\"price_max\":4500000}"),
                "NIKE-PEG40-43,ADI-UB22-42", 2);
    expect_skus(f, FILTERED("{\"price_max\":129.9,\"currency\":\"USD\"}"), "NIKE-PEG40-42", 1);
    expect_skus(f, FILTERED("{\"price_max\":129.89,\"currency\":\"USD\"}"), "", 0);
    /* Exactly what the offline planner writes (sift_query_filters_json). */
    expect_skus(f,
                FILTERED("{\"brand\":\"Nike\",\"category\":\"running shoes\",\"size\":\"42\","
                         "\"size_system\":\"EU\",\"colour\":null,\"gender\":null,"
                         "\"price_min\":null,\"price_max\":4000000,\"currency\":\"VND\","
                         "\"in_stock\":true,\"warehouses\":[\"HAN\",\"DAD\",\"SGN\"]}"),
                "NIKE-PEG40-42", 1);
    expect_skus(f, "{\"query\":\"tee\",\"filters\":{\"gender\":\"men\",\"colour\":[\"grey\"]}}",
                "TEE-1", 1);
    expect_skus(f, "{\"query\":\"tee\",\"filters\":{\"colour\":[\"gre\"]}}", "", 0);

    /* Filters apply before truncating to k: the 2 Zeta shoes rank below 40
     * Acme ones, yet a brand filter with k=3 returns both. */
    struct outcome o = call(f, "search_products", "{\"query\":\"running shoe\",\"k\":3}");
    assert_int_equal(o.code, 0);
    assert_null(strstr(o.result, "ZETA"));
    expect_skus(f, "{\"query\":\"running shoe\",\"k\":3,\"filters\":{\"brand\":\"Zeta\"}}",
                "ZETA-1,ZETA-2", 2);
    expect_skus(f, "{\"query\":\"running shoe\",\"k\":1,\"filters\":{\"brand\":\"Zeta\"}}",
                "ZETA-1", 2);

    /* Argument errors. */
    expect(f, "search_products", "{\"query\":\"x\",\"k\":0}", SIFT_EINVAL,
           "k: must be an integer between 1 and 50");
    expect(f, "search_products", "{\"query\":\"x\",\"k\":51}", SIFT_EINVAL,
           "k: must be an integer between 1 and 50");
    expect(f, "search_products", "{\"query\":\"x\",\"filters\":{\"tags\":[]}}", SIFT_EINVAL,
           "filters: unexpected field \"tags\"");
    expect(f, "search_products", "{\"query\":\"\"}", SIFT_EINVAL,
           "query: must be between 1 and 256 bytes long");
    expect(f, "search_products", "{\"query\":\"x\",\"filters\":{\"warehouses\":[\"HAN\",\"PAR\"]}}",
           SIFT_EINVAL, "filters.warehouses[1]: must be one of HAN, DAD, SGN");
    expect(f, "search_products", "{\"query\":\"x\",\"filters\":{\"price_min\":10,\"price_max\":5}}",
           SIFT_EINVAL, "filters.price_min: must not exceed price_max");
#undef FILTERED
    fixture_free(f);
}

/* ---- cancellation ---- */

/* Blocks a pool thread until released. */
struct blocker {
    uv_work_t work;
    uv_sem_t *started, *release;
    int after;
};

static void block_work(uv_work_t *w)
{
    struct blocker *b = w->data;
    uv_sem_post(b->started);
    uv_sem_wait(b->release);
}

static void block_after(uv_work_t *w, int status)
{
    struct blocker *b = w->data;
    assert_int_equal(status, 0);
    b->after++;
}

#define POOL_THREADS 4 /* main() sets UV_THREADPOOL_SIZE to this */

/* A query still queued behind busy pool threads is uv_cancel'led: the job
 * ends at once with the ctx's cause, once, and nothing leaks. */
/* A searcher swapped in replaces the snapshot for the next searches; the
 * replaced ones are freed (ASan checks there is no leak and no double free). */
static void test_searcher_swap(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    sift_err e = {0};
    sift_searcher *before = NULL, *after = NULL;
    assert_int_equal(sift_searcher_open_sqlite(f->path, NULL, &before, &e), 0);
    assert_int_equal(sift_shop_swap_searcher(f->shop, before, &e), 0);
    sift_store *st = NULL;
    assert_int_equal(sift_store_sqlite_open(f->path, NULL, &st, &e), 0);
    sift_product p = {.sku = "QUOKKA-1",
                      .parent_id = "",
                      .title = "Quokka Trail Shoe",
                      .brand = "",
                      .category = "",
                      .description = "",
                      .version = 1};
    int applied = 0;
    assert_int_equal(sift_store_upsert_product(st, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    sift_store_close(st);
    /* the snapshot predates the product (the vectors still bring neighbours) */
    struct outcome o = call(f, "search_products", "{\"query\":\"quokka trail shoe\"}");
    assert_int_equal(o.code, 0);
    assert_null(strstr(o.result, "QUOKKA-1"));
    assert_int_equal(sift_searcher_open_sqlite(f->path, NULL, &after, &e), 0);
    assert_int_equal(sift_shop_swap_searcher(f->shop, after, &e), 0);
    o = call(f, "search_products", "{\"query\":\"quokka trail shoe\",\"k\":1}");
    assert_int_equal(o.code, 0);
    assert_non_null(strstr(o.result, "{\"products\":[{\"sku\":\"QUOKKA-1\""));
    fixture_free(f);
}

static void test_cancel_queued(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    uv_sem_t started, release;
    assert_int_equal(uv_sem_init(&started, 0), 0);
    assert_int_equal(uv_sem_init(&release, 0), 0);
    struct blocker b[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        b[i] = (struct blocker){.started = &started, .release = &release};
        b[i].work.data = &b[i];
        assert_int_equal(uv_queue_work(&f->loop, &b[i].work, block_work, block_after), 0);
    }
    for (int i = 0; i < POOL_THREADS; i++)
        uv_sem_wait(&started); /* every pool thread is now busy */

    sift_ctx *ctx = sift_ctx_new(f->root);
    struct outcome o = {0};
    sift_tool_job job;
    const char *args = "{\"sku\":\"NIKE-PEG40-42\"}";
    sift_tool_job_init(&job, sift_shop_tool(f->shop, "get_price"), ctx, f->a, NULL, on_done, &o);
    sift_tool_job_start(&job, args, strlen(args));
    assert_int_equal(o.calls, 0);
    assert_int_equal(sift_shop_inflight(f->shop), 1);
    sift_ctx_cancel(ctx, SIFT_ECANCELED, "shopper left");
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, SIFT_ECANCELED);
    assert_string_equal(o.result, "shopper left");

    for (int i = 0; i < POOL_THREADS; i++)
        uv_sem_post(&release);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(sift_shop_inflight(f->shop), 0);
    for (int i = 0; i < POOL_THREADS; i++)
        assert_int_equal(b[i].after, 1);
    sift_ctx_release(ctx);
    uv_sem_destroy(&started);
    uv_sem_destroy(&release);
    fixture_free(f);
}

struct hold {
    uv_sem_t running, release;
    int active;
};

static void hold_hook(void *data)
{
    struct hold *h = data;
    if (!h->active)
        return;
    uv_sem_post(&h->running);
    uv_sem_wait(&h->release);
}

/* A query already running finishes; its result is dropped and the job,
 * already ended by the cancellation, is not completed again. The job and its
 * arena are gone before the query ends. */
static void test_cancel_running(void **state)
{
    (void)state;
    struct hold h = {0};
    assert_int_equal(uv_sem_init(&h.running, 0), 0);
    assert_int_equal(uv_sem_init(&h.release, 0), 0);
    fixture *f =
        fixture_new(false, &(sift_shop_opts){.work_hook = hold_hook, .work_hook_data = &h});
    h.active = 1;

    sift_ctx *ctx = sift_ctx_new_timeout(f->root, 60000);
    sift_arena *ja = sift_arena_new(0);
    struct outcome o = {0};
    sift_tool_job *job = malloc(sizeof *job);
    assert_non_null(job);
    const char *args = "{\"query\":\"running shoe\",\"filters\":{\"in_stock\":true}}";
    sift_tool_job_init(job, sift_shop_tool(f->shop, "search_products"), ctx, ja, NULL, on_done, &o);
    sift_tool_job_start(job, args, strlen(args));
    uv_sem_wait(&h.running); /* the query holds a connection on a pool thread */
    sift_ctx_cancel(ctx, SIFT_ETIMEDOUT, NULL);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, SIFT_ETIMEDOUT);
    /* Everything the job owned goes now, while the query still runs. */
    free(job);
    sift_arena_free(ja);
    sift_ctx_release(ctx);
    assert_int_equal(sift_shop_inflight(f->shop), 1);
    uv_sem_post(&h.release);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(sift_shop_inflight(f->shop), 0);

    /* The connection went back to the pool: the next call works. */
    h.active = 0;
    expect(f, "get_price", "{\"sku\":\"ADI-UB22-42\"}", 0,
           "{\"sku\":\"ADI-UB22-42\",\"currency\":\"VND\",\"amount\":4500000}");
    fixture_free(f);
    uv_sem_destroy(&h.running);
    uv_sem_destroy(&h.release);
}

/* A context already done never reaches the store. */
static void test_cancel_before(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    sift_ctx *ctx = sift_ctx_new(f->root);
    sift_ctx_cancel(ctx, SIFT_ECANCELED, "gone");
    struct outcome o = {0};
    sift_tool_job job;
    sift_tool_job_init(&job, sift_shop_tool(f->shop, "list_warehouses"), ctx, f->a, NULL, on_done,
                       &o);
    sift_tool_job_start(&job, "{}", 2);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, SIFT_ECANCELED);
    assert_int_equal(sift_shop_inflight(f->shop), 0);
    sift_ctx_release(ctx);
    fixture_free(f);
}

/* Many calls at once on one loop share at most max_conns connections. */
static void test_concurrent(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, &(sift_shop_opts){.max_conns = 2});
    enum { N = 64 };
    struct outcome o[N];
    sift_tool_job *jobs = calloc(N, sizeof *jobs);
    assert_non_null(jobs);
    const char *args = "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}";
    for (int i = 0; i < N; i++) {
        o[i] = (struct outcome){0};
        sift_tool_job_init(&jobs[i], sift_shop_tool(f->shop, "check_inventory"), f->root, f->a,
                           NULL, on_done, &o[i]);
        sift_tool_job_start(&jobs[i], args, strlen(args));
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].code, 0);
        assert_string_equal(o[i].result, "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":"
                                         "[{\"code\":\"HAN\",\"quantity\":12}]}");
    }
    free(jobs);
    fixture_free(f);
}

/* Every SKU of the sample catalog is found first by its own SKU. */
static void test_sample_skus(void **state)
{
    (void)state;
    fixture *f = fixture_new(true, NULL);
    const char *src = getenv("SIFT_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/catalog/sample/products.jsonl", src ? src : SIFT_SOURCE_DIR);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    char line[8192];
    size_t n = 0;
    while (fgets(line, sizeof line, in)) {
        char *p = strstr(line, "\"sku\":\"");
        assert_non_null(p);
        p += 7;
        char *end = strchr(p, '"');
        *end = '\0';
        char args[160], want[96];
        snprintf(args, sizeof args, "{\"query\":\"%s\",\"k\":1}", p);
        snprintf(want, sizeof want, "{\"products\":[{\"sku\":\"%s\",", p);
        struct outcome o = call(f, "search_products", args);
        if (o.code != 0 || strncmp(o.result, want, strlen(want)) != 0)
            fail_msg("%s: %d %.200s", p, o.code, o.result);
        n++;
        if (n % 256 == 0)
            sift_arena_reset(f->a); /* results of earlier calls are no longer needed */
    }
    fclose(in);
    assert_int_equal(n, 2230);
    /* The sample's live facts come through too. */
    expect(f, "get_price", "{\"sku\":\"NIKE-PEG40-39\",\"currency\":\"USD\"}", 0,
           "{\"sku\":\"NIKE-PEG40-39\",\"currency\":\"USD\",\"amount\":130.00}");
    fixture_free(f);
}

/* The offline planner drives the real tools on the sample catalog: its tool
 * arguments decode, and the results it reads come back without errors. */
static const char *planner_loop(fixture *f, const char *question, const char **search_result)
{
    sift_conv c;
    sift_conv_init(&c, f->a);
    sift_err err = {0};
    assert_int_equal(sift_conv_add_user(&c, question, &err), 0);
    *search_result = NULL;
    for (int turn = 0; turn < 4; turn++) {
        sift_planner_step s;
        if (sift_planner_next(c.msgs, c.len, NULL, f->a, &s, &err) != 0)
            fail_msg("planner: %s", err.msg);
        if (s.kind == SIFT_PLAN_ANSWER)
            return s.text;
        assert_int_equal(sift_conv_add_assistant(&c, NULL, s.calls, s.n_calls, &err), 0);
        for (size_t i = 0; i < s.n_calls; i++) {
            struct outcome o = call(f, s.calls[i].name, s.calls[i].arguments);
            if (o.code != 0)
                fail_msg("%s %s: %d %s", s.calls[i].name, s.calls[i].arguments, o.code, o.result);
            if (strcmp(s.calls[i].name, "search_products") == 0)
                *search_result = o.result;
            assert_int_equal(sift_conv_add_tool_result(&c, s.calls[i].id, o.result, &err), 0);
        }
    }
    fail_msg("no answer after 4 turns");
    return NULL;
}

/* Every product of a search result holds each of the strings given; at least one product. */
static void each_product(const char *result, const char *a, const char *b, const char *c)
{
    if (!result) {
        fail_msg("no search_products call");
        return;
    }
    const char *p = result;
    int n = 0;
    while ((p = strstr(p, "{\"sku\":\"")) != NULL) {
        const char *end = strstr(p, "}}");
        assert_non_null(end);
        char one[1024];
        snprintf(one, sizeof one, "%.*s", (int)(end - p), p);
        if (!strstr(one, a) || !strstr(one, b) || (c && !strstr(one, c)))
            fail_msg("product outside the filters: %s", one);
        n++;
        p = end;
    }
    if (n == 0)
        fail_msg("no products: %s", result);
}

static void test_planner_loop(void **state)
{
    (void)state;
    fixture *f = fixture_new(true, NULL);
    const char *found = NULL;
    const char *answer = planner_loop(f,
                                      "Find Nike running shoes size 42 and check if they are in "
                                      "stock at the Hanoi, Da Nang, and HCMC warehouses",
                                      &found);
    /* Filters applied: every product is a Nike running shoe in size 42. */
    each_product(found, "\"brand\":\"Nike\"", "\"size\":\"42\"", "> Running");
    if (!strstr(answer, "(NIKE-"))
        fail_msg("answer names no product: %s", answer);

    /* A generic query ("running shoes") with narrow filters still finds the
     * few red ones in stock in Da Nang under 2,000,000 VND (the sample has them). */
    answer = planner_loop(f, "red running shoes under 2,000,000 VND in stock in Da Nang", &found);
    each_product(found, "\"colour\":\"red\"", "> Running", NULL);
    if (!strstr(answer, "(DAD)"))
        fail_msg("answer has no Da Nang stock: %s", answer);
    fixture_free(f);
}

/* A store that cannot be opened is a SIFT_EIO failure naming it, not a crash. */
static void test_store_missing(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    sift_shop *bad = NULL;
    sift_err e = {0};
    char path[192];
    snprintf(path, sizeof path, "%s/nothing-here.db", f->dir);
    assert_int_equal(sift_shop_new(&(sift_shop_opts){.store_path = path}, &bad, &e), 0);
    struct outcome o = {0};
    sift_tool_job job;
    sift_tool_job_init(&job, sift_shop_tool(bad, "get_price"), f->root, f->a, NULL, on_done, &o);
    sift_tool_job_start(&job, "{\"sku\":\"X\"}", 11);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, SIFT_EIO);
    /* SQLite's own words for the missing file, with the path. */
    if (!strstr(o.result, "nothing-here.db"))
        fail_msg("%s", o.result);
    sift_shop_free(bad);
    fixture_free(f);
}

/* Allocation failures on the loop thread (request, argument copies) end
 * the job once with SIFT_ENOMEM, or it succeeds; nothing leaks. */
static void test_oom(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    const char *args =
        "{\"query\":\"pegasus\",\"filters\":{\"brand\":\"Nike\",\"colour\":[\"black\"],"
        "\"warehouses\":[\"HAN\"],\"in_stock\":true}}";
    int ok = 0, failed = 0;
    for (long n = 0; n < 40 && ok < 3; n++) {
        struct outcome o = {0};
        sift_tool_job job;
        sift_arena *ja = sift_arena_new(0);
        assert_non_null(ja);
        sift_tool_job_init(&job, sift_shop_tool(f->shop, "search_products"), f->root, ja, NULL,
                           on_done, &o);
        sift_mem_fail_after(n);
        sift_tool_job_start(&job, args, strlen(args));
        sift_mem_fail_after(-1);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(o.calls, 1);
        if (o.code == 0) {
            assert_non_null(strstr(o.result, "\"total\":1}"));
            ok++;
        } else {
            assert_int_equal(o.code, SIFT_ENOMEM);
            failed++;
        }
        sift_arena_free(ja);
    }
    assert_true(ok > 0);
    assert_true(failed > 0);
    assert_int_equal(sift_shop_inflight(f->shop), 0);
    fixture_free(f);
}

struct node_out {
    int calls;
    int code;
    sift_tool_result res[4];
    size_t n;
};

static void node_done(int code, const sift_tool_result *results, size_t n, const sift_err *err,
                      void *udata)
{
    (void)err;
    struct node_out *o = udata;
    o->calls++;
    o->code = code;
    o->n = n;
    for (size_t i = 0; i < n && i < 4; i++)
        o->res[i] = results[i];
}

/* Through the tools node (what the agent runs): results and failures become
 * the tool messages the model reads, with identical calls coalesced. */
static void test_tools_node(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    sift_coalescer *co = sift_coalescer_new(&f->loop);
    assert_non_null(co);
    const sift_tool_call calls[4] = {
        {.id = "c1", .name = "check_inventory", .arguments = "{\"sku\":\"NOPE\"}"},
        {.id = "c2", .name = "get_price", .arguments = "{\"sku\":\"ADI-UB22-42\"}"},
        {.id = "c3", .name = "get_price", .arguments = "{ \"sku\" : \"ADI-UB22-42\" }"},
        {.id = "c4",
         .name = "check_inventory",
         .arguments = "{\"sku\":\"X\",\"location\":\"PAR\"}"},
    };
    sift_tool_call cs[4];
    for (size_t i = 0; i < 4; i++) {
        cs[i] = calls[i];
        cs[i].arguments_len = strlen(cs[i].arguments);
    }
    struct node_out o = {0};
    sift_tools_opts opts = {.coalescer = co};
    assert_int_equal(sift_tools_run(f->reg, f->root, f->a, cs, 4, &opts, node_done, &o), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.n, 4);
    assert_int_equal(o.res[0].code, SIFT_ENOTFOUND);
    assert_string_equal(o.res[0].content, "{\"error\":{\"code\":\"not_found\",\"message\":"
                                          "\"no product with sku \\\"NOPE\\\"\"}}");
    assert_string_equal(o.res[1].content,
                        "{\"sku\":\"ADI-UB22-42\",\"currency\":\"VND\",\"amount\":4500000}");
    assert_string_equal(o.res[2].content, o.res[1].content);
    assert_int_equal(o.res[3].code, SIFT_EINVAL);
    assert_string_equal(o.res[3].content, "{\"error\":{\"code\":\"invalid_arguments\",\"message\":"
                                          "\"location: must be one of HAN, DAD, SGN\"}}");
    sift_coalescer_stats st;
    sift_coalescer_get_stats(co, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.joined, 1); /* c3 shared c2's query: the tools are asynchronous */
    sift_coalescer_free(co);
    fixture_free(f);
}

/* sift_shop_query: fn on a pool thread with a connection of the shop's
 * pool, done once on the loop with fn's code and error, counted in flight
 * meanwhile; a store that cannot be opened reaches done as SIFT_EIO. */
struct query_probe {
    uv_thread_t loop_thread, fn_thread;
    int fn_calls, done_calls, done_code;
    size_t inflight_in_done;
    sift_shop *shop;
    char title[128];
    char msg[SIFT_ERR_MSG_MAX];
};

static int probe_fn(struct sift_store *st, void *ud, sift_err *err)
{
    struct query_probe *p = ud;
    p->fn_calls++;
    p->fn_thread = uv_thread_self();
    sift_arena *a = sift_arena_new(0);
    sift_product prod;
    int rc = sift_store_get_product(st, "NIKE-PEG40-42", a, &prod, err);
    if (rc == 0)
        snprintf(p->title, sizeof p->title, "%s", prod.title);
    if (rc == 0)
        rc = sift_store_get_product(st, "NO-SUCH", a, &prod, err);
    sift_arena_free(a);
    return rc;
}

static void probe_done(void *ud, int code, const sift_err *err)
{
    struct query_probe *p = ud;
    p->done_calls++;
    p->done_code = code;
    p->inflight_in_done = sift_shop_inflight(p->shop);
    snprintf(p->msg, sizeof p->msg, "%s", err->msg);
    uv_thread_t self = uv_thread_self();
    assert_true(uv_thread_equal(&self, &p->loop_thread));
}

static void test_shop_query(void **state)
{
    (void)state;
    fixture *f = fixture_new(false, NULL);
    struct query_probe p = {.loop_thread = uv_thread_self(), .shop = f->shop};
    sift_err e = {0};
    assert_int_equal(sift_shop_query(f->shop, &f->loop, probe_fn, probe_done, &p, &e), 0);
    assert_int_equal(sift_shop_inflight(f->shop), 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.fn_calls, 1);
    assert_int_equal(p.done_calls, 1);
    assert_false(uv_thread_equal(&p.fn_thread, &p.loop_thread));
    assert_string_equal(p.title, "Nike Pegasus 40 Men's Running Shoe - Black");
    assert_int_equal(p.done_code, SIFT_ENOTFOUND);
    assert_int_equal(p.inflight_in_done, 1);
    assert_int_equal(sift_shop_inflight(f->shop), 0);

    /* no store at the path: fn never runs, done gets the open error */
    sift_shop *bad = NULL;
    char path[192];
    snprintf(path, sizeof path, "%s/nothing-here.db", f->dir);
    assert_int_equal(sift_shop_new(&(sift_shop_opts){.store_path = path}, &bad, &e), 0);
    struct query_probe q = {.loop_thread = uv_thread_self(), .shop = bad};
    assert_int_equal(sift_shop_query(bad, &f->loop, probe_fn, probe_done, &q, &e), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(q.fn_calls, 0);
    assert_int_equal(q.done_calls, 1);
    assert_int_equal(q.done_code, SIFT_EIO);
    if (!strstr(q.msg, "nothing-here.db"))
        fail_msg("%s", q.msg);
    sift_shop_free(bad);
    fixture_free(f);
}

int main(void)
{
    /* The pool size must be known for the queued-cancellation test; it is
     * read once, when the pool first starts. */
    setenv("UV_THREADPOOL_SIZE", "4", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),        cmocka_unit_test(test_check_inventory),
        cmocka_unit_test(test_get_price),       cmocka_unit_test(test_list_warehouses),
        cmocka_unit_test(test_search_products), cmocka_unit_test(test_searcher_swap),
        cmocka_unit_test(test_cancel_queued),   cmocka_unit_test(test_cancel_running),
        cmocka_unit_test(test_cancel_before),   cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_sample_skus),     cmocka_unit_test(test_planner_loop),
        cmocka_unit_test(test_store_missing),   cmocka_unit_test(test_oom),
        cmocka_unit_test(test_tools_node),      cmocka_unit_test(test_shop_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
