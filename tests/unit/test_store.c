/* The SQLite store: the store contract shared with the PostgreSQL store
 * (tests/support/store_contract.c: versioned upserts and deletes, inventory
 * and prices, the full-text index, loading JSON Lines), checked here with
 * FTS5's integrity check and bm25(), plus what only SQLite has (allocation
 * failures, schema upgrade). Each test uses a fresh store file in its own
 * temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>
#include <sqlite3.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/store.h"
#include "store_contract.h"

typedef struct fixture {
    store_contract c; /* first: the contract's callbacks get back to the fixture */
    char dir[64];
    char path[128];
} fixture;

static void check_index(store_contract *c);
static void check_ranking(store_contract *c);
static int open_readonly(store_contract *c, sift_store **out, sift_err *err);

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
    if (sift_store_sqlite_open(f->path, NULL, &f->c.s, &e) != 0) {
        fprintf(stderr, "open: %s\n", e.msg);
        return -1;
    }
    f->c.a = sift_arena_new(0);
    f->c.backend = "sqlite";
    f->c.open_readonly = open_readonly;
    f->c.check_index = check_index;
    f->c.check_ranking = check_ranking;
    f->c.ud = f;
    *state = f;
    return f->c.a ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sift_store_close(f->c.s);
    sift_arena_free(f->c.a);
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
    assert_int_equal(sift_store_search_fts(f->c.s, query, k, f->c.a, &h, &n, &e), 0);
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

static void check_index(store_contract *c)
{
    fts_consistent(c->ud);
}

static void check_ranking(store_contract *c)
{
    /* Ranking: bm25 exactly, for terms under the frequency cap. */
    same_as_bm25(c->ud, "pegasus", "\"pegasus\"", 50);
    same_as_bm25(c->ud, "pegasus black", "\"pegasus\" \"black\"", 8);
    same_as_bm25(c->ud, "asics jacket", "\"asics\" \"jacket\"", 20);
}

static int open_readonly(store_contract *c, sift_store **out, sift_err *err)
{
    fixture *f = c->ud;
    sift_store_sqlite_opts o = {.readonly = 1};
    return sift_store_sqlite_open(f->path, &o, out, err);
}

#define CONTRACT(name)                                                                             \
    static void test_##name(void **state)                                                          \
    {                                                                                              \
        fixture *f = *state;                                                                       \
        store_contract_##name(&f->c);                                                              \
    }
CONTRACT(upsert_versions)
CONTRACT(delete_tombstones)
CONTRACT(transactions)
CONTRACT(stock_and_prices)
CONTRACT(load_bad_lines)
CONTRACT(sample_catalog)

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

static const char *title_of(fixture *f, const char *sku)
{
    sift_product p;
    sift_err e = {0};
    int rc = sift_store_get_product(f->c.s, sku, f->c.a, &p, &e);
    if (rc == SIFT_ENOTFOUND)
        return NULL;
    if (rc)
        fail_msg("get %s: %s", sku, e.msg);
    return p.title;
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
                rc = sift_store_search_fts(s, "november", 5, f->c.a, &h, &nh, &e);
            if (rc == 0)
                wrote = 1;
        }
        sift_mem_fail_after(-1);
        if (rc != 0)
            assert_true(e.code != 0 && e.msg[0] != '\0');
        sift_store_close(s);
        sift_arena_reset(f->c.a);
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
    sift_store_close(f->c.s);
    f->c.s = NULL;
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
    assert_int_equal(sift_store_search_fts(s, "trail shoe", 5, f->c.a, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].sku, "OLD-1");
    /* The trigger is gone: a new upsert is indexed once, by the store. */
    sift_product p = product("NEW-1", "Road Running Shoe", 1);
    assert_int_equal(sift_store_upsert_product(s, &p, NULL, &e), 0);
    sift_store_close(s);
    snprintf(f->path, sizeof f->path, "%s", path);
    fts_consistent(f);
    assert_int_equal(sift_store_sqlite_open(path, NULL, &f->c.s, &e), 0);
    assert_int_equal(sift_store_search_fts(f->c.s, "running shoes", 5, f->c.a, &h, &n, &e), 0);
    assert_int_equal(n, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upsert_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_and_prices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_upgrade, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
