/* The SQLite store: versioned upserts and deletes, inventory and prices, the
 * full-text index, and loading JSON Lines (including bad lines). Each test
 * uses a fresh store file in its own temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>
#include <sqlite3.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/store.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    sift_store *s;
    sift_arena *a;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/sift-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    sift_err e = {0};
    if (sift_store_sqlite_open(f->path, NULL, &f->s, &e) != 0) {
        fprintf(stderr, "open: %s\n", e.msg);
        return -1;
    }
    f->a = sift_arena_new(0);
    *state = f;
    return f->a ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sift_store_close(f->s);
    sift_arena_free(f->a);
    char p[160];
    const char *names[] = {"store.db", "v1.db"};
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t j = 0; j < 2; j++)
        for (size_t i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s%s", f->dir, names[j], suffix[i]);
            unlink(p);
        }
    if (rmdir(f->dir) != 0)
        fprintf(stderr, "test_store: %s left behind\n", f->dir);
    free(f);
    return 0;
}

/* FTS5's own check that the index holds exactly what chunks holds: after
 * any mix of upserts, replacements and deletes, nothing stale is left. */
static void fts_consistent(fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, "INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check')", NULL,
                          NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("FTS integrity-check: %s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM chunks) ="
                                        " (SELECT count(*) FROM products WHERE deleted = 0)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Below the document-frequency cap, the store's ranking is exactly FTS5's
 * bm25() with the documented column weights: compare every hit's score
 * with bm25() computed on a separate plain connection. */
static void same_as_bm25(fixture *f, const char *query, const char *match, size_t k)
{
    sift_hit *h;
    size_t n;
    sift_err e = {0};
    assert_int_equal(sift_store_search_fts(f->s, query, k, f->a, &h, &n, &e), 0);
    assert_int_equal(n, k); /* all from the all-terms pass */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT -bm25(chunks_fts, 2.0, 3.0, 2.0, 1.5, 1.5, 1.0)"
                                        " FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
                                        " WHERE chunks_fts MATCH ?1 AND c.sku = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < n; i++) {
        if (h[i].exact_sku)
            continue;
        sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, h[i].sku, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        double want = sqlite3_column_double(st, 0);
        if (fabs(want - h[i].score) > 1e-9 * fabs(want))
            fail_msg("%s: %s scored %.12f, bm25 %.12f", query, h[i].sku, h[i].score, want);
        if (i > 0 && !h[i - 1].exact_sku)
            assert_true(h[i - 1].score >= h[i].score);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

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

static int upsert(fixture *f, const char *sku, const char *title, int64_t version)
{
    sift_product p = product(sku, title, version);
    int applied = -1;
    sift_err e = {0};
    int rc = sift_store_upsert_product(f->s, &p, &applied, &e);
    if (rc)
        fail_msg("upsert %s: %s", sku, e.msg);
    return applied;
}

static int del(fixture *f, const char *sku, int64_t version)
{
    int applied = -1;
    sift_err e = {0};
    if (sift_store_delete_product(f->s, sku, version, &applied, &e))
        fail_msg("delete %s: %s", sku, e.msg);
    return applied;
}

/* The title stored for sku, or NULL when it is absent or deleted. */
static const char *title_of(fixture *f, const char *sku)
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
static size_t search(fixture *f, const char *q, const char *sku, int *found)
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

/* A newer version that indexes the same text skips the full-text work but
 * still replaces the product; one that changes the text is re-indexed. The
 * index matches the chunks after each step. */
static void test_upsert_same_text(void **state)
{
    fixture *f = *state;
    sift_err e = {0};
    int applied = 0, found = 0;
    sift_product p = product("SAME-1", "Trail Runner Xeno", 1);
    assert_int_equal(sift_store_upsert_product(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);

    p.version = 2;
    p.parent_id = "SAME"; /* not in the chunk */
    assert_int_equal(sift_store_upsert_product(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    sift_product got;
    assert_int_equal(sift_store_get_product(f->s, "SAME-1", f->a, &got, &e), 0);
    assert_int_equal(got.version, 2);
    assert_string_equal(got.parent_id, "SAME");
    assert_int_equal(search(f, "xeno", "SAME-1", &found), 1);
    assert_true(found);
    fts_consistent(f);

    p.version = 3;
    p.title = "Road Racer Yotta";
    assert_int_equal(sift_store_upsert_product(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(search(f, "xeno", "SAME-1", &found), 0);
    assert_int_equal(search(f, "yotta", "SAME-1", &found), 1);
    assert_true(found);
    fts_consistent(f);

    /* The SKU's case is part of the chunk: a change re-indexes it. */
    p.version = 4;
    p.sku = "same-1";
    assert_int_equal(sift_store_upsert_product(f->s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(search(f, "yotta", "same-1", &found), 1);
    assert_true(found);
    fts_consistent(f);
}

static void test_upsert_versions(void **state)
{
    fixture *f = *state;
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
    fts_consistent(f);
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

static void test_delete_tombstones(void **state)
{
    fixture *f = *state;
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
    fts_consistent(f);
}

static void test_transactions(void **state)
{
    fixture *f = *state;
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
    sift_store_sqlite_opts o = {.readonly = 1};
    assert_int_equal(sift_store_sqlite_open(f->path, &o, &ro, &e), 0);
    assert_string_equal(sift_store_backend(ro), "sqlite");
    sift_hit *h;
    size_t n;
    assert_int_equal(sift_store_search_fts(ro, "juliet", 5, f->a, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].sku, "TX-1");
    sift_product p = product("TX-2", "x", 1);
    assert_int_not_equal(sift_store_upsert_product(ro, &p, NULL, &e), 0);
    sift_store_close(ro);
}

static void test_stock_and_prices(void **state)
{
    fixture *f = *state;
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

static void test_load_bad_lines(void **state)
{
    fixture *f = *state;
    size_t cap = 4 * SIFT_CATALOG_LINE_MAX;
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

/* A mixed input of `lines` lines over 150 SKUs: upserts with versions out of
 * order, versioned deletes, invalid JSON, lines without a SKU, blank lines
 * and, every 400 lines, a line over the line limit. Deterministic. */
static char *mixed_input(size_t lines, size_t *len)
{
    size_t cap = lines * 160 + (lines / 400 + 1) * (SIFT_CATALOG_LINE_MAX + 64);
    char *in = malloc(cap);
    assert_non_null(in);
    size_t n = 0;
    uint32_t x = 12345;
    for (size_t i = 1; i <= lines; i++) {
        x = x * 1103515245u + 12345u;
        unsigned r = (x >> 8) % 100, sku = (x >> 4) % 150, v = (x >> 12) % 9;
        if (i % 400 == 0) {
            n += (size_t)snprintf(in + n, cap - n, "{\"sku\":\"MIX-%u\",\"title\":\"", sku);
            memset(in + n, 'z', SIFT_CATALOG_LINE_MAX);
            n += SIFT_CATALOG_LINE_MAX;
            n += (size_t)snprintf(in + n, cap - n, "\"}\n");
        } else if (r < 70) {
            n += (size_t)snprintf(in + n, cap - n,
                                  "{\"sku\":\"MIX-%u\",\"version\":%u,\"title\":\"Shoe %u v%u\","
                                  "\"attributes\":{\"size\":\"%u\"}}\n",
                                  sku, v, sku, v, 36 + v);
        } else if (r < 80) {
            n += (size_t)snprintf(
                in + n, cap - n, "{\"op\":\"delete\",\"sku\":\"MIX-%u\",\"version\":%u}\n", sku, v);
        } else if (r < 88) {
            n += (size_t)snprintf(in + n, cap - n, "{\"sku\":\"MIX-%u\",\"title\":}\n", sku);
        } else if (r < 94) {
            n += (size_t)snprintf(in + n, cap - n, "{\"title\":\"no sku %zu\"}\n", i);
        } else {
            n += (size_t)snprintf(in + n, cap - n, "  \n");
        }
    }
    *len = n;
    return in;
}

typedef struct bad_log {
    size_t n, sum_linenos;
    char last[SIFT_ERR_MSG_MAX + 32];
    size_t progress_calls;
} bad_log;

static void log_bad(void *ud, size_t lineno, const char *msg)
{
    bad_log *b = ud;
    b->n++;
    b->sum_linenos += lineno;
    snprintf(b->last, sizeof b->last, "%s", msg);
}

static void log_progress(void *ud, const sift_load_summary *s)
{
    (void)s;
    ((bad_log *)ud)->progress_calls++;
}

static int load_mixed(sift_store *s, const char *in, size_t len, int no_thread, size_t max_bad,
                      sift_load_summary *sum, bad_log *log, sift_err *e)
{
    FILE *fp = fmemopen((void *)in, len, "r");
    assert_non_null(fp);
    sift_load_opts o = {.batch = 7,
                        .on_bad = log_bad,
                        .on_progress = log_progress,
                        .ud = log,
                        .max_bad = max_bad,
                        .no_thread = no_thread};
    int rc = sift_catalog_load_jsonl(s, fp, SIFT_CATALOG_PRODUCTS, &o, sum, e);
    fclose(fp);
    return rc;
}

/* Each SKU's state (title and version, or gone) is the same in both stores. */
static void same_products(sift_store *a, sift_store *b, sift_arena *ar)
{
    for (unsigned i = 0; i < 150; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "MIX-%u", i);
        sift_product pa, pb;
        sift_err e = {0};
        int ra = sift_store_get_product(a, sku, ar, &pa, &e);
        int rb = sift_store_get_product(b, sku, ar, &pb, &e);
        assert_int_equal(ra, rb);
        if (ra == 0) {
            assert_string_equal(pa.title, pb.title);
            assert_int_equal(pa.version, pb.version);
        }
    }
}

/* Parsing on a second thread changes nothing: over an input of many blocks
 * with every kind of line, the summary, the bad-line reports (in order), the
 * batches and the stored products are those of the single-threaded load,
 * and so is a load that max_bad stops part-way. */
static void test_load_parser_thread(void **state)
{
    fixture *f = *state;
    size_t len;
    char *in = mixed_input(3000, &len);
    char path2[160];
    snprintf(path2, sizeof path2, "%s/v1.db", f->dir);
    sift_store *s2 = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(path2, NULL, &s2, &e), 0);

    sift_load_summary st = {0}, s1 = {0};
    bad_log lt = {0}, l1 = {0};
    assert_int_equal(load_mixed(f->s, in, len, 0, 0, &st, &lt, &e), 0);
    assert_int_equal(load_mixed(s2, in, len, 1, 0, &s1, &l1, &e), 0);
    assert_int_equal(st.lines, 3000);
    assert_true(st.bad > 300 && st.blank > 100 && st.applied > 100 && st.stale > 100);
    assert_true(st.deleted > 0);
    assert_memory_equal(&st, &s1, sizeof st);
    assert_int_equal(lt.n, st.bad);
    assert_int_equal(lt.n, l1.n);
    assert_int_equal(lt.sum_linenos, l1.sum_linenos);
    assert_string_equal(lt.last, l1.last);
    assert_int_equal(lt.progress_calls, st.batches);
    assert_int_equal(l1.progress_calls, s1.batches);
    same_products(f->s, s2, f->a);
    fts_consistent(f);

    /* Stopped by max_bad part-way through: same lines read, same batches
     * committed, the open batch rolled back in both. */
    sift_store_close(s2);
    s2 = NULL;
    unlink(path2);
    assert_int_equal(sift_store_sqlite_open(path2, NULL, &s2, &e), 0);
    sift_store_close(f->s);
    f->s = NULL;
    char p[200];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    assert_int_equal(sift_store_sqlite_open(f->path, NULL, &f->s, &e), 0);
    memset(&lt, 0, sizeof lt);
    memset(&l1, 0, sizeof l1);
    assert_int_equal(load_mixed(f->s, in, len, 0, 200, &st, &lt, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "stopped after 200 bad lines"));
    assert_int_equal(load_mixed(s2, in, len, 1, 200, &s1, &l1, &e), SIFT_EINVAL);
    assert_true(st.lines < 3000);
    assert_memory_equal(&st, &s1, sizeof st);
    assert_int_equal(lt.sum_linenos, l1.sum_linenos);
    same_products(f->s, s2, f->a);
    sift_store_close(s2);
    free(in);

    /* Tiny inputs, parsed before the thread that starts the parser has
     * gone on: each load still ends, on the calling thread. */
    static const char two[] = "{\"sku\":\"TINY-1\",\"title\":\"t\"}\n\n";
    for (int i = 0; i < 300; i++) {
        FILE *fp = fmemopen((void *)two, sizeof two - 1, "r");
        assert_non_null(fp);
        sift_load_summary sum;
        assert_int_equal(sift_catalog_load_jsonl(f->s, fp, SIFT_CATALOG_PRODUCTS, NULL, &sum, &e),
                         0);
        fclose(fp);
        assert_int_equal(sum.lines, 2);
        assert_int_equal(sum.applied + sum.stale, 1);
    }
}

/* `n` product lines, for the kill test. */
static char *product_lines(size_t n, size_t *len)
{
    size_t cap = n * 200;
    char *in = malloc(cap);
    assert_non_null(in);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(
            in + k, cap - k,
            "{\"sku\":\"KILL-%zu\",\"title\":\"Trail shoe %zu\",\"brand\":\"B%zu\","
            "\"description\":\"A shoe for the test of an interrupted load\"}\n",
            i, i, i % 7);
    *len = k;
    return in;
}

static void tell_parent(void *ud, const sift_load_summary *s)
{
    (void)s;
    ssize_t w = write(*(int *)ud, "b", 1);
    (void)w;
}

/* A load killed (SIGKILL) in the middle of bulk mode leaves a store that
 * opens, passes SQLite's and FTS5's integrity checks, and holds exactly the
 * batches committed before the kill. */
static void test_load_killed(void **state)
{
    fixture *f = *state;
    sift_store_close(f->s); /* the child opens its own */
    f->s = NULL;
    size_t len;
    char *in = product_lines(400000, &len);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        sift_store *s = NULL;
        sift_err e = {0};
        if (sift_store_sqlite_open(f->path, NULL, &s, &e))
            _exit(2);
        FILE *fp = fmemopen(in, len, "r");
        sift_load_opts o = {.batch = 1000, .on_progress = tell_parent, .ud = &pfd[1]};
        sift_load_summary sum;
        sift_catalog_load_jsonl(s, fp, SIFT_CATALOG_PRODUCTS, &o, &sum, &e);
        _exit(3); /* not reached: killed first */
    }
    close(pfd[1]);
    char c;
    for (int i = 0; i < 5; i++) /* five batches committed, more under way */
        assert_int_equal(read(pfd[0], &c, 1), 1);
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    close(pfd[0]);
    free(in);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM products", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_true(n >= 5000 && n < 400000);
    assert_int_equal(n % 1000, 0);
    fts_consistent(f);
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(f->path, NULL, &f->s, &e), 0);
    assert_string_equal(title_of(f, "KILL-4999"), "Trail shoe 4999");
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
static void test_sample_catalog(void **state)
{
    fixture *f = *state;
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
    /* Ranking: bm25 exactly, for terms under the frequency cap. */
    same_as_bm25(f, "pegasus", "\"pegasus\"", 50);
    same_as_bm25(f, "pegasus black", "\"pegasus\" \"black\"", 8);
    same_as_bm25(f, "asics jacket", "\"asics\" \"jacket\"", 20);
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
    fts_consistent(f);
}

/* Allocation failures while opening, writing and searching give
 * SIFT_ENOMEM (or an error naming the failed step), never a crash or a leak;
 * once allocation works again the store works. */
static void test_out_of_memory(void **state)
{
    fixture *f = *state;
    int opened = 0, wrote = 0;
    for (long n = 0; n < 400 && !(opened && wrote); n++) {
        sift_store *s = NULL;
        sift_err e = {0};
        sift_mem_fail_after(n);
        int rc = sift_store_sqlite_open(f->path, NULL, &s, &e);
        if (rc == 0) {
            opened = 1;
            sift_product p = product("OOM-1", "Memory November", 1 + n);
            int applied = 0;
            rc = sift_store_upsert_product(s, &p, &applied, &e);
            sift_hit *h;
            size_t nh;
            if (rc == 0)
                rc = sift_store_search_fts(s, "november", 5, f->a, &h, &nh, &e);
            if (rc == 0)
                wrote = 1;
        }
        sift_mem_fail_after(-1);
        if (rc != 0)
            assert_true(e.code != 0 && e.msg[0] != '\0');
        sift_store_close(s);
        sift_arena_reset(f->a);
    }
    assert_true(opened && wrote);
    assert_string_equal(title_of(f, "OOM-1"), "Memory November");
}

/* A store written by the first development schema (no stemming, FTS kept
 * by triggers) is upgraded in place when opened read-write, and refused
 * with an explanation when opened read-only. */
static void test_schema_upgrade(void **state)
{
    fixture *f = *state;
    sift_store_close(f->s);
    f->s = NULL;
    char path[sizeof f->path];
    snprintf(path, sizeof path, "%s/v1.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    const char *v1 =
        "CREATE TABLE products(id INTEGER PRIMARY KEY, sku TEXT NOT NULL COLLATE NOCASE UNIQUE,"
        " parent_id TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',"
        " brand TEXT NOT NULL DEFAULT '', category TEXT NOT NULL DEFAULT '',"
        " attrs TEXT NOT NULL DEFAULT '{}', description TEXT NOT NULL DEFAULT '',"
        " version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,"
        " updated_at INTEGER NOT NULL);"
        "CREATE TABLE chunks(id INTEGER PRIMARY KEY, sku TEXT NOT NULL, title TEXT NOT NULL,"
        " brand TEXT NOT NULL, category TEXT NOT NULL, attrs TEXT NOT NULL,"
        " description TEXT NOT NULL, text TEXT NOT NULL);"
        "CREATE VIRTUAL TABLE chunks_fts USING fts5(sku, title, brand, category, attrs,"
        " description, content='chunks', content_rowid='id',"
        " tokenize='unicode61 remove_diacritics 2');"
        "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN"
        " INSERT INTO chunks_fts(rowid, sku, title, brand, category, attrs, description)"
        " VALUES (new.id, new.sku, new.title, new.brand, new.category, new.attrs,"
        " new.description); END;"
        "CREATE TABLE inventory(sku TEXT NOT NULL COLLATE NOCASE, warehouse TEXT NOT NULL,"
        " quantity INTEGER NOT NULL, version INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        " PRIMARY KEY(sku, warehouse)) WITHOUT ROWID;"
        "CREATE TABLE prices(sku TEXT NOT NULL COLLATE NOCASE, currency TEXT NOT NULL,"
        " valid_from INTEGER NOT NULL, amount_minor INTEGER NOT NULL, version INTEGER NOT NULL,"
        " PRIMARY KEY(sku, currency, valid_from)) WITHOUT ROWID;"
        "CREATE TABLE warehouses(code TEXT PRIMARY KEY) WITHOUT ROWID;"
        "INSERT INTO products(id, sku, title, version, updated_at)"
        " VALUES (1, 'OLD-1', 'Trail Running Shoes', 1, 0);"
        "INSERT INTO chunks VALUES (1, 'OLD-1', 'Trail Running Shoes', '', '', '', '',"
        " 'OLD-1');"
        "PRAGMA user_version = 1;";
    assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    sift_err e = {0};
    sift_store_sqlite_opts ro = {.readonly = 1};
    sift_store *s = NULL;
    assert_int_equal(sift_store_sqlite_open(path, &ro, &s, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "open it once read-write"));
    assert_int_equal(sift_store_sqlite_open(path, NULL, &s, &e), 0);
    sift_hit *h;
    size_t n;
    assert_int_equal(sift_store_search_fts(s, "trail shoe", 5, f->a, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].sku, "OLD-1");
    /* The trigger is gone: a new upsert is indexed once, by the store. */
    sift_product p = product("NEW-1", "Road Running Shoe", 1);
    assert_int_equal(sift_store_upsert_product(s, &p, NULL, &e), 0);
    sift_store_close(s);
    snprintf(f->path, sizeof f->path, "%s", path);
    fts_consistent(f);
    assert_int_equal(sift_store_sqlite_open(path, NULL, &f->s, &e), 0);
    assert_int_equal(sift_store_search_fts(f->s, "running shoes", 5, f->a, &h, &n, &e), 0);
    assert_int_equal(n, 2);
}

static int page_size_of(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* New stores get 16 KB pages; a store made with 4 KB pages keeps them and
 * keeps working. */
static void test_page_size(void **state)
{
    fixture *f = *state;
    sift_err e = {0};
    sift_product p = product("PG-1", "Road Running Shoe", 1);
    assert_int_equal(sift_store_upsert_product(f->s, &p, NULL, &e), 0);
    assert_int_equal(page_size_of(f->path), 16384);

    char path[sizeof f->path];
    snprintf(path, sizeof path, "%s/v1.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA page_size=4096; CREATE TABLE t(x);", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    sift_store *s = NULL;
    assert_int_equal(sift_store_sqlite_open(path, NULL, &s, &e), 0);
    assert_int_equal(sift_store_upsert_product(s, &p, NULL, &e), 0);
    sift_product got;
    assert_int_equal(sift_store_get_product(s, "PG-1", f->a, &got, &e), 0);
    sift_store_close(s);
    assert_int_equal(page_size_of(path), 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upsert_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_same_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_and_prices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_parser_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_size, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
