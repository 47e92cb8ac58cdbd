/* The store contract (store_contract.h): checks moved here from
 * test_store.c so that every backend runs the same ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/store.h"
#include "store_contract.h"

static sift_product product(const char *sku, const char *title, int64_t version)
{
    static sift_attr attrs[] = {{"size", "42"}, {"colour", "black"}};
    sift_product p = {
        .sku = sku,
        .parent_id = "",
        .title = title,
        .brand = "Nike",
        .category = "Footwear > Running",
        .description = "A test shoe.",
        .attrs = attrs,
        .n_attrs = 2,
        .version = version,
    };
    return p;
}

static int upsert(store_contract *f, const char *sku, const char *title, int64_t version)
{
    sift_product p = product(sku, title, version);
    int applied = -1;
    sift_err e = {0};
    int rc = sift_store_upsert_product(f->s, &p, &applied, &e);
    if (rc)
        fail_msg("upsert %s: %s", sku, e.msg);
    return applied;
}

static int del(store_contract *f, const char *sku, int64_t version)
{
    int applied = -1;
    sift_err e = {0};
    if (sift_store_delete_product(f->s, sku, version, &applied, &e))
        fail_msg("delete %s: %s", sku, e.msg);
    return applied;
}

/* The title stored for sku, or NULL when it is absent or deleted. */
static const char *title_of(store_contract *f, const char *sku)
{
    sift_product p;
    sift_err e = {0};
    int rc = sift_store_get_product(f->s, sku, f->a, &p, &e);
    if (rc == SIFT_ENOTFOUND)
        return NULL;
    if (rc)
        fail_msg("get %s: %s", sku, e.msg);
    return p.title;
}

/* Number of hits for query, and whether sku is among them. */
static size_t search(store_contract *f, const char *q, const char *sku, int *found)
{
    sift_hit *h;
    size_t n;
    sift_err e = {0};
    if (sift_store_search_fts(f->s, q, 20, f->a, &h, &n, &e))
        fail_msg("search %s: %s", q, e.msg);
    *found = 0;
    for (size_t i = 0; i < n; i++)
        if (sku && strcmp(h[i].sku, sku) == 0)
            *found = 1;
    return n;
}

void store_contract_upsert_versions(store_contract *f)
{
    int found;
    assert_int_equal(upsert(f, "NIKE-PEG40-42", "Pegasus Alpha", 1), 1);
    /* Replaying the same version is a no-op. */
    assert_int_equal(upsert(f, "NIKE-PEG40-42", "Pegasus Alpha", 1), 0);
    assert_int_equal(upsert(f, "NIKE-PEG40-42", "Pegasus Other", 1), 0);
    assert_string_equal(title_of(f, "NIKE-PEG40-42"), "Pegasus Alpha");
    /* Newer wins, and the index follows. */
    assert_int_equal(upsert(f, "NIKE-PEG40-42", "Pegasus Bravo", 3), 1);
    assert_string_equal(title_of(f, "NIKE-PEG40-42"), "Pegasus Bravo");
    assert_int_equal(search(f, "bravo", "NIKE-PEG40-42", &found), 1);
    assert_true(found);
    assert_int_equal(search(f, "alpha", NULL, &found), 0);
    /* Older never overwrites newer. */
    assert_int_equal(upsert(f, "NIKE-PEG40-42", "Pegasus Charlie", 2), 0);
    assert_string_equal(title_of(f, "NIKE-PEG40-42"), "Pegasus Bravo");
    assert_int_equal(search(f, "charlie", NULL, &found), 0);
    if (f->check_index)
        f->check_index(f);
    /* SKUs compare case-insensitively. */
    assert_string_equal(title_of(f, "nike-peg40-42"), "Pegasus Bravo");

    sift_product got;
    sift_err e = {0};
    assert_int_equal(sift_store_get_product(f->s, "NIKE-PEG40-42", f->a, &got, &e), 0);
    assert_int_equal(got.version, 3);
    assert_int_equal(got.n_attrs, 2);
    assert_string_equal(got.attrs[1].key, "colour");
    assert_string_equal(got.attrs[1].value, "black");
    assert_string_equal(got.category, "Footwear > Running");
    assert_int_equal(sift_store_get_product(f->s, "NOPE-1", f->a, &got, &e), SIFT_ENOTFOUND);

    /* Invalid products are refused before they reach SQL. */
    sift_product bad = product("A B", "t", 1);
    assert_int_equal(sift_store_upsert_product(f->s, &bad, NULL, &e), SIFT_EINVAL);
    bad = product("A-B", "", 1);
    assert_int_equal(sift_store_upsert_product(f->s, &bad, NULL, &e), SIFT_EINVAL);
}

void store_contract_delete_tombstones(store_contract *f)
{
    int found;
    assert_int_equal(upsert(f, "ADI-1", "Boostline Delta", 2), 1);
    assert_int_equal(del(f, "ADI-1", 1), 0); /* older delete: ignored */
    assert_non_null(title_of(f, "ADI-1"));
    assert_int_equal(del(f, "ADI-1", 5), 1);
    assert_null(title_of(f, "ADI-1"));
    assert_int_equal(search(f, "delta", NULL, &found), 0);
    assert_int_equal(search(f, "ADI-1", NULL, &found), 0);
    /* An older upsert, or one at the delete's version, does not resurrect. */
    assert_int_equal(upsert(f, "ADI-1", "Boostline Delta", 4), 0);
    assert_int_equal(upsert(f, "ADI-1", "Boostline Delta", 5), 0);
    assert_null(title_of(f, "ADI-1"));
    assert_int_equal(del(f, "ADI-1", 5), 0); /* replayed delete */
    /* A newer one does. */
    assert_int_equal(upsert(f, "ADI-1", "Boostline Echo", 6), 1);
    assert_string_equal(title_of(f, "ADI-1"), "Boostline Echo");
    assert_int_equal(search(f, "echo", "ADI-1", &found), 1);
    assert_true(found);

    /* A delete for a SKU never seen is remembered. */
    assert_int_equal(del(f, "PUMA-9", 7), 1);
    assert_int_equal(upsert(f, "PUMA-9", "Velora Foxtrot", 6), 0);
    assert_null(title_of(f, "PUMA-9"));
    assert_int_equal(upsert(f, "PUMA-9", "Velora Foxtrot", 8), 1);
    assert_string_equal(title_of(f, "PUMA-9"), "Velora Foxtrot");

    /* Equal versions: the delete wins in either order. */
    assert_int_equal(upsert(f, "UA-3", "Hovrine Golf", 4), 1);
    assert_int_equal(del(f, "UA-3", 4), 1);
    assert_null(title_of(f, "UA-3"));
    assert_int_equal(del(f, "NB-4", 4), 1);
    assert_int_equal(upsert(f, "NB-4", "Arcline Hotel", 4), 0);
    assert_null(title_of(f, "NB-4"));
    if (f->check_index)
        f->check_index(f);
}

void store_contract_transactions(store_contract *f)
{
    sift_err e = {0};
    assert_int_equal(sift_store_begin(f->s, &e), 0);
    assert_int_equal(sift_store_begin(f->s, &e), SIFT_ESTATE);
    assert_int_equal(upsert(f, "TX-1", "Rollback India", 1), 1);
    assert_int_equal(sift_store_rollback(f->s, &e), 0);
    assert_null(title_of(f, "TX-1"));
    int found;
    assert_int_equal(search(f, "india", NULL, &found), 0);
    assert_int_equal(sift_store_commit(f->s, &e), SIFT_ESTATE);

    assert_int_equal(sift_store_begin(f->s, &e), 0);
    assert_int_equal(upsert(f, "TX-1", "Commit Juliet", 1), 1);
    assert_int_equal(sift_store_commit(f->s, &e), 0);
    assert_string_equal(title_of(f, "TX-1"), "Commit Juliet");

    /* A second connection (read-only, as search workers use) sees it. */
    sift_store *ro = NULL;
    if (f->open_readonly(f, &ro, &e))
        fail_msg("open read-only: %s", e.msg);
    assert_string_equal(sift_store_backend(ro), f->backend);
    sift_hit *h;
    size_t n;
    assert_int_equal(sift_store_search_fts(ro, "juliet", 5, f->a, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].sku, "TX-1");
    sift_product p = product("TX-2", "x", 1);
    assert_int_not_equal(sift_store_upsert_product(ro, &p, NULL, &e), 0);
    sift_store_close(ro);
}

void store_contract_stock_and_prices(store_contract *f)
{
    sift_err e = {0};
    int applied;
    sift_stock st = {.sku = "NIKE-PEG40-42", .warehouse = "HAN", .quantity = 5, .version = 1};
    assert_int_equal(sift_store_set_stock(f->s, &st, &applied, &e), 0);
    assert_int_equal(applied, 1);
    st.quantity = 7;
    assert_int_equal(sift_store_set_stock(f->s, &st, &applied, &e), 0);
    assert_int_equal(applied, 0); /* same version: ignored */
    st.version = 2;
    assert_int_equal(sift_store_set_stock(f->s, &st, &applied, &e), 0);
    assert_int_equal(applied, 1);
    st.quantity = 1;
    st.version = 1;
    assert_int_equal(sift_store_set_stock(f->s, &st, &applied, &e), 0);
    assert_int_equal(applied, 0);
    sift_stock sgn = {.sku = "NIKE-PEG40-42",
                      .warehouse = "SGN",
                      .quantity = 0,
                      .version = 1,
                      .updated_at = 1700000000};
    assert_int_equal(sift_store_set_stock(f->s, &sgn, &applied, &e), 0);
    sift_stock dad = {.sku = "NIKE-PEG40-42", .warehouse = "DAD", .quantity = 12, .version = 1};
    assert_int_equal(sift_store_set_stock(f->s, &dad, &applied, &e), 0);

    sift_stock *rows;
    size_t n;
    assert_int_equal(sift_store_get_stock(f->s, "NIKE-PEG40-42", NULL, f->a, &rows, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].warehouse, "DAD");
    assert_int_equal(rows[0].quantity, 12);
    assert_string_equal(rows[1].warehouse, "HAN");
    assert_int_equal(rows[1].quantity, 7);
    assert_int_equal(rows[1].version, 2);
    assert_string_equal(rows[2].warehouse, "SGN");
    assert_int_equal(rows[2].updated_at, 1700000000);
    assert_int_equal(sift_store_get_stock(f->s, "NIKE-PEG40-42", "SGN", f->a, &rows, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].quantity, 0);
    assert_int_equal(sift_store_get_stock(f->s, "NONE-1", NULL, f->a, &rows, &n, &e), 0);
    assert_int_equal(n, 0);

    const char **codes;
    assert_int_equal(sift_store_list_warehouses(f->s, f->a, &codes, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(codes[0], "DAD");
    assert_string_equal(codes[1], "HAN");
    assert_string_equal(codes[2], "SGN");

    /* Prices: versioned per row, scheduled by valid_from. */
    sift_price p = {.sku = "NIKE-PEG40-42", .currency = "USD", .amount_minor = 12999, .version = 1};
    assert_int_equal(sift_store_set_price(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    sift_price later = p;
    later.valid_from = 2000;
    later.amount_minor = 9999;
    assert_int_equal(sift_store_set_price(f->s, &later, &applied, &e), 0);
    sift_price got;
    assert_int_equal(sift_store_get_price(f->s, "NIKE-PEG40-42", "USD", 1999, f->a, &got, &e), 0);
    assert_int_equal(got.amount_minor, 12999);
    assert_int_equal(sift_store_get_price(f->s, "NIKE-PEG40-42", "USD", 2000, f->a, &got, &e), 0);
    assert_int_equal(got.amount_minor, 9999);
    assert_int_equal(got.valid_from, 2000);
    p.amount_minor = 1;
    assert_int_equal(sift_store_set_price(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 0);
    p.version = 2;
    p.amount_minor = 11999;
    assert_int_equal(sift_store_set_price(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(sift_store_get_price(f->s, "NIKE-PEG40-42", "USD", 10, f->a, &got, &e), 0);
    assert_int_equal(got.amount_minor, 11999);
    assert_int_equal(got.version, 2);
    assert_int_equal(sift_store_get_price(f->s, "NIKE-PEG40-42", "VND", 10, f->a, &got, &e),
                     SIFT_ENOTFOUND);
}

typedef struct reports {
    char msgs[16][SIFT_ERR_MSG_MAX + 32];
    size_t n;
    size_t progress_calls;
} reports;

static void on_bad(void *ud, size_t lineno, const char *msg)
{
    reports *r = ud;
    if (r->n < 16)
        snprintf(r->msgs[r->n++], sizeof r->msgs[0], "%s", msg);
}

static void on_progress(void *ud, const sift_load_summary *s)
{
    ((reports *)ud)->progress_calls++;
}

void store_contract_load_bad_lines(store_contract *f)
{
    size_t cap = (size_t)4 * SIFT_CATALOG_LINE_MAX;
    char *in = malloc(cap);
    assert_non_null(in);
    size_t len = 0;
#define ADD(s) (len += (size_t)snprintf(in + len, cap - len, "%s\n", (s)))
    ADD("{\"sku\":\"OK-1\",\"title\":\"Good Kilo\",\"version\":1}");        /* 1 */
    ADD("{\"sku\":\"OK-2\",\"title\":\"Good Lima\"");                       /* 2: invalid JSON */
    ADD("");                                                                /* 3: blank */
    ADD("{\"title\":\"No Sku\"}");                                          /* 4 */
    ADD("{\"sku\":\"OK-3\",\"title\":\"x\",\"attributes\":{\"size\":40}}"); /* 5 */
    char title[SIFT_TITLE_MAX + 50];
    memset(title, 't', sizeof title - 1);
    title[sizeof title - 1] = '\0';
    len += (size_t)snprintf(in + len, cap - len, "{\"sku\":\"OK-4\",\"title\":\"%s\"}\n",
                            title); /* 6 */
    /* 7: a line over the line limit */
    len += (size_t)snprintf(in + len, cap - len, "{\"sku\":\"OK-5\",\"title\":\"");
    memset(in + len, 'y', SIFT_CATALOG_LINE_MAX);
    len += SIFT_CATALOG_LINE_MAX;
    len += (size_t)snprintf(in + len, cap - len, "\"}\n");
    ADD("{\"sku\":\"OK-1\",\"title\":\"Good Kilo\",\"version\":1}"); /* 8: stale replay */
    ADD("{\"op\":\"delete\",\"sku\":\"OK-6\",\"version\":2}");       /* 9: tombstone */
    len += (size_t)snprintf(in + len, cap - len,
                            "{\"sku\":\"OK-7\",\"title\":\"Good Mike\"}"); /* 10 */
#undef ADD
    FILE *fp = fmemopen(in, len, "r");
    assert_non_null(fp);
    reports r = {0};
    sift_load_opts o = {.batch = 2, .on_bad = on_bad, .on_progress = on_progress, .ud = &r};
    sift_load_summary sum;
    sift_err e = {0};
    assert_int_equal(sift_catalog_load_jsonl(f->s, fp, SIFT_CATALOG_PRODUCTS, &o, &sum, &e), 0);
    fclose(fp);
    free(in);

    assert_int_equal(sum.lines, 10);
    assert_int_equal(sum.blank, 1);
    assert_int_equal(sum.bad, 5);
    assert_int_equal(sum.applied, 3); /* OK-1, OK-6 tombstone, OK-7 */
    assert_int_equal(sum.deleted, 1);
    assert_int_equal(sum.stale, 1);
    assert_true(sum.batches >= 2);
    assert_int_equal(r.progress_calls, sum.batches);
    assert_int_equal(r.n, 5);
    assert_true(strncmp(r.msgs[0], "line 2: invalid JSON at byte ", 29) == 0);
    assert_string_equal(r.msgs[1], "line 4: sku: missing");
    assert_string_equal(r.msgs[2], "line 5: attributes.size: must be a string");
    assert_string_equal(r.msgs[3], "line 6: title: longer than 512 bytes");
    assert_string_equal(r.msgs[4], "line 7: longer than 65536 bytes");
    assert_string_equal(title_of(f, "OK-1"), "Good Kilo");
    assert_string_equal(title_of(f, "OK-7"), "Good Mike");
    assert_null(title_of(f, "OK-3"));
    assert_null(title_of(f, "OK-5"));

    /* max_bad stops the load and says why. */
    const char *two_bad = "{}\n{}\n{\"sku\":\"OK-8\",\"title\":\"t\"}\n";
    fp = fmemopen((void *)two_bad, strlen(two_bad), "r");
    assert_non_null(fp);
    o.max_bad = 2;
    memset(&r, 0, sizeof r);
    assert_int_equal(sift_catalog_load_jsonl(f->s, fp, SIFT_CATALOG_PRODUCTS, &o, &sum, &e),
                     SIFT_EINVAL);
    fclose(fp);
    assert_int_equal(sum.bad, 2);
    assert_true(strstr(e.msg, "stopped after 2 bad lines") != NULL);
    assert_null(title_of(f, "OK-8"));

    /* Inventory and price files: bad lines reported the same way. */
    const char *inv = "{\"sku\":\"OK-1\",\"warehouse\":\"HAN\",\"quantity\":4}\n"
                      "{\"sku\":\"OK-1\",\"warehouse\":\"HAN\",\"quantity\":\"four\"}\n";
    fp = fmemopen((void *)inv, strlen(inv), "r");
    o.max_bad = 0;
    memset(&r, 0, sizeof r);
    assert_int_equal(sift_catalog_load_jsonl(f->s, fp, SIFT_CATALOG_INVENTORY, &o, &sum, &e), 0);
    fclose(fp);
    assert_int_equal(sum.applied, 1);
    assert_string_equal(r.msgs[0], "line 2: quantity: must be an integer");
    const char *pr = "{\"sku\":\"OK-1\",\"currency\":\"USD\",\"amount\":1.999}\n"
                     "{\"sku\":\"OK-1\",\"currency\":\"USD\",\"amount\":19.99}\n";
    fp = fmemopen((void *)pr, strlen(pr), "r");
    memset(&r, 0, sizeof r);
    assert_int_equal(sift_catalog_load_jsonl(f->s, fp, SIFT_CATALOG_PRICES, &o, &sum, &e), 0);
    fclose(fp);
    assert_int_equal(sum.applied, 1);
    assert_string_equal(r.msgs[0], "line 1: amount: more than 2 decimals for USD");
}

static FILE *open_sample(const char *name)
{
    const char *src = getenv("SIFT_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/catalog/sample/%s", src ? src : SIFT_SOURCE_DIR, name);
    FILE *fp = fopen(path, "r");
    if (!fp)
        fail_msg("cannot open %s", path);
    return fp;
}

/* Every SKU of the sample catalog is found by its own SKU string, first,
 * through the search function; the stock and prices load alongside. */
void store_contract_sample_catalog(store_contract *f)
{
    const char *files[] = {"products.jsonl", "inventory.jsonl", "prices.jsonl"};
    const int kinds[] = {SIFT_CATALOG_PRODUCTS, SIFT_CATALOG_INVENTORY, SIFT_CATALOG_PRICES};
    sift_load_summary sum;
    sift_err e = {0};
    size_t products = 0;
    for (int i = 0; i < 3; i++) {
        FILE *fp = open_sample(files[i]);
        if (sift_catalog_load_jsonl(f->s, fp, kinds[i], NULL, &sum, &e))
            fail_msg("%s: %s", files[i], e.msg);
        fclose(fp);
        assert_int_equal(sum.bad, 0);
        assert_int_equal(sum.stale, 0);
        assert_int_equal(sum.applied, sum.lines - sum.blank);
        if (i == 0)
            products = sum.applied;
    }
    assert_true(products >= 2000);

    FILE *fp = open_sample("products.jsonl");
    char *line = NULL;
    size_t cap = 0, checked = 0;
    ssize_t n;
    sift_arena *pa = sift_arena_new(0);
    assert_non_null(pa);
    while ((n = getline(&line, &cap, fp)) > 0) {
        sift_product p;
        assert_int_equal(sift_product_parse(pa, line, (size_t)n - 1, 1, &p, NULL, &e), 0);
        sift_hit *h;
        size_t nh;
        assert_int_equal(sift_store_search_fts(f->s, p.sku, 5, f->a, &h, &nh, &e), 0);
        if (nh == 0 || strcmp(h[0].sku, p.sku) != 0 || !h[0].exact_sku)
            fail_msg("%s: not the first hit for its own SKU (got %s)", p.sku,
                     nh ? h[0].sku : "nothing");
        checked++;
        sift_arena_reset(pa);
        sift_arena_reset(f->a);
    }
    free(line);
    fclose(fp);
    sift_arena_free(pa);
    assert_int_equal(checked, products);

    /* Lower case, and inside a sentence. */
    sift_hit *h;
    size_t nh;
    assert_int_equal(
        sift_store_search_fts(f->s, "is nike-peg40-42 in stock?", 5, f->a, &h, &nh, &e), 0);
    assert_true(nh >= 1);
    assert_string_equal(h[0].sku, "NIKE-PEG40-42");
    /* Words find the model; every hit for "pegasus" is a Pegasus. */
    assert_int_equal(sift_store_search_fts(f->s, "pegasus 40 running", 10, f->a, &h, &nh, &e), 0);
    assert_int_equal(nh, 10);
    for (size_t i = 0; i < nh; i++)
        assert_true(strncmp(h[i].sku, "NIKE-PEG40", 10) == 0);
    /* Words are stemmed: "shoes" finds "Shoe", "runs" finds "Running". */
    assert_int_equal(sift_store_search_fts(f->s, "nike pegasus runs shoes", 10, f->a, &h, &nh, &e),
                     0);
    assert_int_equal(nh, 10);
    for (size_t i = 0; i < nh; i++)
        assert_true(strncmp(h[i].sku, "NIKE-PEG40", 10) == 0);
    /* Ranking: the backend's own check (SQLite: bm25 exactly). */
    if (f->check_ranking)
        f->check_ranking(f);
    /* Diacritics are folded. */
    assert_int_equal(sift_store_search_fts(f->s, "pégasus", 3, f->a, &h, &nh, &e), 0);
    assert_int_equal(nh, 3);
    /* Terms that match nothing together fall back to any term (OR). */
    assert_int_equal(sift_store_search_fts(f->s, "pegasus zzyzx", 5, f->a, &h, &nh, &e), 0);
    assert_int_equal(nh, 5);
    /* Query syntax is not interpreted. */
    assert_int_equal(sift_store_search_fts(f->s, "\"NEAR( OR * ^", 5, f->a, &h, &nh, &e), 0);
    assert_int_equal(sift_store_search_fts(f->s, "", 5, f->a, &h, &nh, &e), 0);
    assert_int_equal(nh, 0);

    sift_stock *rows;
    assert_int_equal(sift_store_get_stock(f->s, "NIKE-PEG40-42", NULL, f->a, &rows, &nh, &e), 0);
    assert_int_equal(nh, 3);
    sift_price pr;
    assert_int_equal(sift_store_get_price(f->s, "NIKE-PEG40-42", "VND", 0, f->a, &pr, &e), 0);
    assert_true(pr.amount_minor > 1000000);
    const char **codes;
    assert_int_equal(sift_store_list_warehouses(f->s, f->a, &codes, &nh, &e), 0);
    assert_int_equal(nh, 3);

    /* Loading the same files again changes nothing. */
    fp = open_sample("products.jsonl");
    assert_int_equal(sift_catalog_load_jsonl(f->s, fp, SIFT_CATALOG_PRODUCTS, NULL, &sum, &e), 0);
    fclose(fp);
    assert_int_equal(sum.applied, 0);
    assert_int_equal(sum.stale, products);
    if (f->check_index)
        f->check_index(f);
}
