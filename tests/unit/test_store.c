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
#include <signal.h>
#include <sys/wait.h>
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

/* Number of hits for query, and whether sku is among them. */
static size_t search(fixture *f, const char *q, const char *sku, int *found)
{
    sift_hit *h;
    size_t n;
    sift_err e = {0};
    if (sift_store_search_fts(f->c.s, q, 20, f->c.a, &h, &n, &e))
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
    assert_int_equal(sift_store_upsert_product(f->c.s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);

    p.version = 2;
    p.parent_id = "SAME"; /* not in the chunk */
    assert_int_equal(sift_store_upsert_product(f->c.s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    sift_product got;
    assert_int_equal(sift_store_get_product(f->c.s, "SAME-1", f->c.a, &got, &e), 0);
    assert_int_equal(got.version, 2);
    assert_string_equal(got.parent_id, "SAME");
    assert_int_equal(search(f, "xeno", "SAME-1", &found), 1);
    assert_true(found);
    fts_consistent(f);

    p.version = 3;
    p.title = "Road Racer Yotta";
    assert_int_equal(sift_store_upsert_product(f->c.s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(search(f, "xeno", "SAME-1", &found), 0);
    assert_int_equal(search(f, "yotta", "SAME-1", &found), 1);
    assert_true(found);
    fts_consistent(f);

    /* The SKU's case is part of the chunk: a change re-indexes it. */
    p.version = 4;
    p.sku = "same-1";
    assert_int_equal(sift_store_upsert_product(f->c.s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(search(f, "yotta", "same-1", &found), 1);
    assert_true(found);
    fts_consistent(f);
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
    assert_int_equal(load_mixed(f->c.s, in, len, 0, 0, &st, &lt, &e), 0);
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
    same_products(f->c.s, s2, f->c.a);
    fts_consistent(f);

    /* Stopped by max_bad part-way through: same lines read, same batches
     * committed, the open batch rolled back in both. */
    sift_store_close(s2);
    s2 = NULL;
    unlink(path2);
    assert_int_equal(sift_store_sqlite_open(path2, NULL, &s2, &e), 0);
    sift_store_close(f->c.s);
    f->c.s = NULL;
    char p[200];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    assert_int_equal(sift_store_sqlite_open(f->path, NULL, &f->c.s, &e), 0);
    memset(&lt, 0, sizeof lt);
    memset(&l1, 0, sizeof l1);
    assert_int_equal(load_mixed(f->c.s, in, len, 0, 200, &st, &lt, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "stopped after 200 bad lines"));
    assert_int_equal(load_mixed(s2, in, len, 1, 200, &s1, &l1, &e), SIFT_EINVAL);
    assert_true(st.lines < 3000);
    assert_memory_equal(&st, &s1, sizeof st);
    assert_int_equal(lt.sum_linenos, l1.sum_linenos);
    same_products(f->c.s, s2, f->c.a);
    sift_store_close(s2);
    free(in);

    /* Tiny inputs, parsed before the thread that starts the parser has
     * gone on: each load still ends, on the calling thread. */
    static const char two[] = "{\"sku\":\"TINY-1\",\"title\":\"t\"}\n\n";
    for (int i = 0; i < 300; i++) {
        FILE *fp = fmemopen((void *)two, sizeof two - 1, "r");
        assert_non_null(fp);
        sift_load_summary sum;
        assert_int_equal(sift_catalog_load_jsonl(f->c.s, fp, SIFT_CATALOG_PRODUCTS, NULL, &sum, &e),
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
    sift_store_close(f->c.s); /* the child opens its own */
    f->c.s = NULL;
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
    assert_int_equal(sift_store_sqlite_open(f->path, NULL, &f->c.s, &e), 0);
    assert_string_equal(title_of(f, "KILL-4999"), "Trail shoe 4999");
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
    assert_int_equal(sift_store_upsert_product(f->c.s, &p, NULL, &e), 0);
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
    assert_int_equal(sift_store_get_product(s, "PG-1", f->c.a, &got, &e), 0);
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
