/* The PostgreSQL store against a throwaway cluster (tests/support/
 * pg_cluster.sh: initdb into a temporary directory, a free port on
 * loopback, removed at the end): migrations (idempotent, concurrent, a newer
 * schema refused), connection errors with the password masked, the store
 * contract shared with the SQLite store (tests/support/store_contract.c),
 * sessions, graph checkpoints, and a server restart under open connections.
 * Each test gets a database of its own. Exits 77 (skipped) when the
 * PostgreSQL server binaries are not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/memory.h"
#include "sift/model.h"
#include "sift/pgstore.h"
#include "sift/session.h"
#include "sift/store.h"
#include "store_contract.h"

static char g_dir[128];   /* the test's temporary directory */
static char g_base[256];  /* postgresql://postgres@127.0.0.1:PORT */
static char g_admin[300]; /* g_base + /postgres */
static int g_dbs;

static const char *source_dir(void)
{
    const char *s = getenv("SIFT_SOURCE_DIR");
    return s ? s : SIFT_SOURCE_DIR;
}

/* Runs pg_cluster.sh CMD on the test's cluster; its exit status. */
static int cluster(const char *cmd, char *out, size_t cap)
{
    char line[1024];
    snprintf(line, sizeof line,
             "bash '%s/tests/support/pg_cluster.sh' %s '%s/pg' 2>'%s/cluster.err'", source_dir(),
             cmd, g_dir, g_dir);
    FILE *p = popen(line, "r");
    if (!p)
        return -1;
    char buf[512] = "";
    if (!fgets(buf, sizeof buf, p))
        buf[0] = '\0';
    int st = pclose(p);
    buf[strcspn(buf, "\n")] = '\0';
    if (out)
        snprintf(out, cap, "%s", buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static PGconn *admin(void)
{
    PGconn *c = PQconnectdb(g_admin);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("admin connection: %s", PQerrorMessage(c));
    return c;
}

static void sql(const char *url, const char *text)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, text);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", text, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static long long sql_int(const char *url, const char *text)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, text);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", text, PQerrorMessage(c));
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

/* A new empty database; its URL in url. Migrated when `migrate`. */
static void new_db(char *url, size_t cap, int migrate)
{
    char text[64];
    snprintf(text, sizeof text, "CREATE DATABASE t%d", ++g_dbs);
    PGconn *c = admin();
    PGresult *r = PQexec(c, text);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", text, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    snprintf(url, cap, "%s/t%d", g_base, g_dbs);
    sift_err e = {0};
    if (migrate && sift_pg_migrate(url, &e))
        fail_msg("migrate: %s", e.msg);
}

/* ---- migrations and connections ---------------------------------------- */

static void test_migrate(void **state)
{
    (void)state;
    char url[300];
    new_db(url, sizeof url, 0);
    sift_err e = {0};
    sift_store *s = NULL;
    /* Not migrated: the store says what to do. */
    assert_int_equal(sift_store_pg_open(url, NULL, &s, &e), SIFT_ESTATE);
    assert_null(s);
    assert_non_null(strstr(e.msg, "run sift migrate"));

    int from = -1, to = -1;
    assert_int_equal(sift_pg_migrate_ex(url, &from, &to, &e), 0);
    assert_int_equal(from, 0);
    assert_int_equal(to, SIFT_PG_SCHEMA_VERSION);
    /* Again: nothing to do, nothing changed. */
    assert_int_equal(sift_pg_migrate_ex(url, &from, &to, &e), 0);
    assert_int_equal(from, SIFT_PG_SCHEMA_VERSION);
    assert_int_equal(to, SIFT_PG_SCHEMA_VERSION);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM schema_migrations"),
                     SIFT_PG_SCHEMA_VERSION);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM schema_migrations"
                                  " WHERE applied_at <= now()"),
                     SIFT_PG_SCHEMA_VERSION);
    /* The volatile tables have the shape the pool relies on. */
    assert_int_equal(sql_int(url, "SELECT count(*) FROM pg_indexes WHERE indexname IN"
                                  " ('inventory_key', 'prices_key', 'products_sku', 'chunks_tsv')"),
                     4);
    /* ...and the columns (the pool's queries name them). */
    static const char *const shapes[][2] = {
        {"inventory", "sku:text,warehouse:text,quantity:bigint,version:bigint,updated_at:bigint"},
        {"prices", "sku:text,currency:text,valid_from:bigint,amount_minor:bigint,version:bigint"},
        {"warehouses", "code:text"},
    };
    for (size_t i = 0; i < 3; i++) {
        char q[400];
        snprintf(q, sizeof q,
                 "SELECT (string_agg(column_name || ':' || data_type, ',' ORDER BY"
                 " ordinal_position) = '%s')::int FROM information_schema.columns"
                 " WHERE table_name = '%s'",
                 shapes[i][1], shapes[i][0]);
        if (sql_int(url, q) != 1)
            fail_msg("table %s is not %s", shapes[i][0], shapes[i][1]);
    }
    assert_int_equal(sift_store_pg_open(url, NULL, &s, &e), 0);
    assert_string_equal(sift_store_backend(s), "postgres");
    sift_store_close(s);

    /* A role that may not create tables there is told whom to run as. */
    sql(g_admin, "CREATE ROLE not_owner LOGIN");
    char other[300], fresh[300];
    new_db(fresh, sizeof fresh, 0);
    snprintf(other, sizeof other, "postgresql://not_owner@%s", strstr(fresh, "@") + 1);
    assert_int_equal(sift_pg_migrate(other, &e), SIFT_EIO);
    assert_non_null(strstr(e.msg, "as the database's owner"));

    /* A database from a newer sift is refused by migrate and by the store. */
    sql(url, "INSERT INTO schema_migrations (version) VALUES (99)");
    assert_int_equal(sift_pg_migrate(url, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "newer than this sift's"));
    assert_int_equal(sift_store_pg_open(url, NULL, &s, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "newer"));
    assert_null(s);
}

typedef struct migrator {
    const char *url;
    int rc;
    sift_err e;
} migrator;

static void *migrate_main(void *arg)
{
    migrator *m = arg;
    m->rc = sift_pg_migrate(m->url, &m->e);
    return NULL;
}

/* Four `sift migrate` at once on a fresh database: each migration once. */
static void test_migrate_concurrent(void **state)
{
    (void)state;
    char url[300];
    new_db(url, sizeof url, 0);
    pthread_t t[4];
    migrator m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = (migrator){.url = url};
        assert_int_equal(pthread_create(&t[i], NULL, migrate_main, &m[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (m[i].rc)
            fail_msg("migrator %d: %s", i, m[i].e.msg);
    }
    assert_int_equal(sql_int(url, "SELECT count(*) FROM schema_migrations"),
                     SIFT_PG_SCHEMA_VERSION);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        fail_msg("cannot find a free port");
    close(fd); /* nothing listens there now */
    return ntohs(a.sin_port);
}

static void test_connect_errors(void **state)
{
    (void)state;
    /* URL masking itself: tests/unit/test_pgstore.c. */
    sift_err e = {0};
    sift_store *s = NULL;
    char url[300];
    /* Nothing listening. */
    snprintf(url, sizeof url, "postgresql://shop:s3cr3t-pw@127.0.0.1:%d/sift", free_port());
    assert_int_equal(sift_store_pg_open(url, NULL, &s, &e), SIFT_EIO);
    assert_non_null(strstr(e.msg, "cannot reach the PostgreSQL server"));
    assert_non_null(strstr(e.msg, "shop:***@127.0.0.1"));
    assert_null(strstr(e.msg, "s3cr3t-pw"));
    /* No such database. */
    snprintf(url, sizeof url, "%s/no_such_db", g_base);
    assert_int_equal(sift_store_pg_open(url, NULL, &s, &e), SIFT_EIO);
    assert_non_null(strstr(e.msg, "does not exist"));
    assert_non_null(strstr(e.msg, "create it"));
    /* A malformed URL. */
    assert_int_not_equal(
        sift_store_pg_open("postgres://u:s3cr3t-pw@127.0.0.1:notaport/x", NULL, &s, &e), 0);
    assert_null(strstr(e.msg, "s3cr3t-pw"));
    assert_int_equal(sift_store_open("", 0, &s, &e), SIFT_EINVAL);

    /* A refused password: a role with one, required by pg_hba for it alone
     * (the test cluster trusts everyone else). */
    sql(g_admin, "CREATE ROLE pwuser LOGIN PASSWORD 'right-pw'");
    char hba[256];
    static char text[1 << 16]; /* pg_hba.conf is ~5 KB, mostly comments */
    snprintf(hba, sizeof hba, "%s/pg/data/pg_hba.conf", g_dir);
    FILE *f = fopen(hba, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    assert_true(feof(f));
    fclose(f);
    f = fopen(hba, "w");
    assert_non_null(f);
    fprintf(f, "host all pwuser 127.0.0.1/32 scram-sha-256\n%s", text);
    fclose(f);
    sql(g_admin, "SELECT pg_reload_conf()");
    usleep(200 * 1000); /* the postmaster reloads asynchronously */
    char port[16];
    snprintf(port, sizeof port, "%s", strrchr(g_base, ':') + 1);
    snprintf(url, sizeof url, "postgresql://pwuser:wrong-pw@127.0.0.1:%s/postgres", port);
    PGconn *c = NULL;
    assert_int_equal(sift_pg_connect(url, &c, &e), SIFT_EIO);
    assert_null(c);
    assert_non_null(strstr(e.msg, "refused the login"));
    assert_null(strstr(e.msg, "wrong-pw"));
    snprintf(url, sizeof url, "postgresql://pwuser:right-pw@127.0.0.1:%s/postgres", port);
    assert_int_equal(sift_pg_connect(url, &c, &e), 0);
    PQfinish(c);
}

/* ---- the store contract ------------------------------------------------ */

typedef struct fixture {
    store_contract c; /* first */
    char url[300];
} fixture;

static int open_readonly(store_contract *c, sift_store **out, sift_err *err)
{
    sift_store_pg_opts o = {.readonly = 1};
    return sift_store_pg_open(((fixture *)c->ud)->url, &o, out, err);
}

/* The index holds exactly the live products: one chunk each, none for a
 * tombstone (the tsvector is a generated column, so it follows its chunk). */
static void check_index(store_contract *c)
{
    const char *url = ((fixture *)c->ud)->url;
    assert_int_equal(sql_int(url, "SELECT ((SELECT count(*) FROM chunks) ="
                                  " (SELECT count(*) FROM products WHERE NOT deleted))::int"),
                     1);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM chunks c JOIN products p ON p.id = c.id"
                                  " WHERE p.deleted OR lower(p.sku) <> lower(c.sku)"),
                     0);
}

/* Scores descend, and the title field weighs most: for a word in some titles
 * and in other products' descriptions only, the title matches come first. */
static void check_ranking(store_contract *c)
{
    static const char *const queries[] = {"pegasus", "pegasus black", "asics jacket"};
    for (size_t q = 0; q < 3; q++) {
        sift_hit *h;
        size_t n;
        sift_err e = {0};
        assert_int_equal(sift_store_search_fts(c->s, queries[q], 50, c->a, &h, &n, &e), 0);
        assert_true(n > 0);
        for (size_t i = 1; i < n; i++)
            assert_true(h[i - 1].score >= h[i].score);
        assert_non_null(strcasestr(h[0].title, q == 2 ? "asics" : "pegasus"));
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    new_db(f->url, sizeof f->url, 1);
    sift_err e = {0};
    if (sift_store_open(f->url, 0, &f->c.s, &e)) {
        fprintf(stderr, "open: %s\n", e.msg);
        return -1;
    }
    f->c.a = sift_arena_new(0);
    f->c.backend = "postgres";
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
    free(f);
    return 0;
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

/* Text that is not UTF-8 is refused before it reaches the server (which
 * would abort the transaction); a statement the server does refuse inside a
 * transaction aborts it, commit then reports that nothing was written, and
 * the store works afterwards. */
static void test_failed_transaction(void **state)
{
    fixture *f = *state;
    sift_err e = {0};
    sift_product p = {.sku = "TXF-1",
                      .parent_id = "",
                      .title = "Aborted Oscar",
                      .brand = "",
                      .category = "",
                      .description = "",
                      .version = 1};
    sift_product bad = p;
    bad.sku = "TXF-2";
    bad.title = "bad \xff byte";
    assert_int_equal(sift_store_begin(f->c.s, &e), 0);
    assert_int_equal(sift_store_upsert_product(f->c.s, &p, NULL, &e), 0);
    assert_int_equal(sift_store_upsert_product(f->c.s, &bad, NULL, &e), SIFT_EINVAL);
    assert_string_equal(e.msg, "title: not valid UTF-8");
    assert_int_equal(sift_store_commit(f->c.s, &e), 0);
    sift_product got;
    assert_int_equal(sift_store_get_product(f->c.s, "TXF-1", f->c.a, &got, &e), 0);

    /* A rule only the server knows (a constraint added for the test). */
    sql(f->url, "ALTER TABLE prices ADD CONSTRAINT test_cap CHECK (amount_minor < 1000000)");
    sift_price cheap = {.sku = "TXF-1", .currency = "USD", .amount_minor = 100, .version = 1};
    sift_price dear = cheap;
    dear.amount_minor = 5000000;
    dear.valid_from = 10;
    assert_int_equal(sift_store_begin(f->c.s, &e), 0);
    assert_int_equal(sift_store_set_price(f->c.s, &cheap, NULL, &e), 0);
    assert_int_equal(sift_store_set_price(f->c.s, &dear, NULL, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "test_cap"));
    assert_int_not_equal(sift_store_commit(f->c.s, &e), 0);
    assert_non_null(strstr(e.msg, "rolled back"));
    sift_price pr;
    assert_int_equal(sift_store_get_price(f->c.s, "TXF-1", "USD", 0, f->c.a, &pr, &e),
                     SIFT_ENOTFOUND);
    assert_int_equal(sift_store_set_price(f->c.s, &cheap, NULL, &e), 0);
    assert_int_equal(sift_store_get_price(f->c.s, "TXF-1", "USD", 0, f->c.a, &pr, &e), 0);
}

typedef struct scan_count {
    size_t n, stop_at;
    int has_text;
} scan_count;

static int count_product(void *ud, const sift_product *p, const char *chunk_text, sift_err *err)
{
    scan_count *c = ud;
    c->n++;
    c->has_text += strstr(chunk_text, p->sku) != NULL;
    return c->stop_at && c->n == c->stop_at ? 7 : 0;
}

/* The start-up scan: every live product once with its chunk, in one
 * snapshot; a callback that stops it early leaves the connection usable. */
static void test_scan(void **state)
{
    fixture *f = *state;
    sift_err e = {0};
    char line[128];
    for (int i = 0; i < 300; i++) {
        snprintf(line, sizeof line, "SCAN-%03d", i);
        sift_product p = {.sku = line,
                          .parent_id = "",
                          .title = "Scanned Papa",
                          .brand = "",
                          .category = "",
                          .description = "",
                          .version = 1};
        assert_int_equal(sift_store_upsert_product(f->c.s, &p, NULL, &e), 0);
    }
    int applied = 0;
    assert_int_equal(sift_store_delete_product(f->c.s, "SCAN-007", 2, &applied, &e), 0);
    assert_int_equal(applied, 1);
    scan_count c = {0};
    assert_int_equal(sift_store_scan_products(f->c.s, count_product, &c, &e), 0);
    assert_int_equal(c.n, 299);
    assert_int_equal(c.has_text, 299);
    c = (scan_count){.stop_at = 10};
    assert_int_equal(sift_store_scan_products(f->c.s, count_product, &c, &e), 7);
    assert_int_equal(c.n, 10);
    sift_product got;
    assert_int_equal(sift_store_get_product(f->c.s, "SCAN-299", f->c.a, &got, &e), 0);
    assert_int_equal(sift_store_scan_products(f->c.s, count_product, &c, &e), 0);
}

/* ---- sessions ---------------------------------------------------------- */

static void must(int rc, const sift_err *err)
{
    if (rc)
        fail_msg("unexpected error %d: %s", rc, err->msg);
}

static void save_tag(sift_session_store *s, const char *id, const char *tag)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    sift_tool_call call = {
        .id = "call_1", .name = "get_price", .arguments = "{\"sku\":\"A\"}", .arguments_len = 11};
    must(sift_conv_add_system(&c, "You sell shoes.", &err), &err);
    must(sift_conv_add_user(&c, tag, &err), &err);
    must(sift_conv_add_assistant(&c, NULL, &call, 1, &err), &err);
    must(sift_conv_add_tool_result(&c, "call_1", "{\"VND\":1000}", &err), &err);
    must(sift_conv_add_assistant(&c, "1,000 VND — giày đẹp", NULL, 0, &err), &err);
    must(sift_session_save(s, id, c.msgs, c.len, &err), &err);
    sift_arena_free(a);
}

static bool load_tag(sift_session_store *s, const char *id, const char *tag)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    bool found = true;
    must(sift_session_load(s, id, &c, &found, &err), &err);
    if (found) {
        assert_int_equal(c.len, 5);
        assert_int_equal(c.msgs[2].n_tool_calls, 1);
        assert_string_equal(c.msgs[3].tool_call_id, "call_1");
        assert_string_equal(c.msgs[4].content, "1,000 VND — giày đẹp");
        if (tag)
            assert_string_equal(c.msgs[1].content, tag);
    } else {
        assert_int_equal(c.len, 0);
    }
    sift_arena_free(a);
    return found;
}

static int64_t fake_now;

static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

/* Compare-and-set saves (sift_session_save_if), as two servers use them:
 * the expected text is what a load gave, serialised again, which must match
 * the stored text byte for byte, non-ASCII content included. */
static char *loaded_json(sift_session_store *s, const char *id)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_buf b;
    sift_err err = {0};
    bool found = false;
    sift_conv_init(&c, a);
    sift_buf_init(&b, 0);
    must(sift_session_load(s, id, &c, &found, &err), &err);
    assert_true(found);
    must(sift_memory_to_json(c.msgs, c.len, &b, &err), &err);
    must(sift_buf_putc(&b, 0), &err);
    char *out = strdup(b.data);
    sift_buf_free(&b);
    sift_arena_free(a);
    return out;
}

static bool save_if_tag(sift_session_store *s, const char *id, const char *expect, const char *tag)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_err err = {0};
    bool saved = false;
    sift_conv_init(&c, a);
    must(sift_conv_add_user(&c, tag, &err), &err);
    must(sift_conv_add_assistant(&c, "giày đẹp", NULL, 0, &err), &err);
    must(sift_session_save_if(s, id, expect, c.msgs, c.len, &saved, &err), &err);
    sift_arena_free(a);
    return saved;
}

static void test_sessions_save_if(void **state)
{
    (void)state;
    char url[300];
    new_db(url, sizeof url, 1);
    sift_err err = {0};
    sift_session_store *s = NULL, *s2 = NULL;
    fake_now = 1000000;
    sift_session_pg_opts o = {.ttl_ms = 60000, .clock = fake_clock, .clock_ud = &fake_now};
    must(sift_session_pg_open(url, &o, &s, &err), &err);
    must(sift_session_pg_open(url, &o, &s2, &err), &err);
    save_tag(s, "cas", "v1");
    char *v1 = loaded_json(s2, "cas");
    /* both servers loaded v1; the first write wins, the second loses */
    assert_true(save_if_tag(s2, "cas", v1, "from s2"));
    assert_false(save_if_tag(s, "cas", v1, "from s"));
    char *now = loaded_json(s, "cas");
    assert_non_null(strstr(now, "from s2"));
    /* expecting no session: a new id is written, an existing one is not */
    assert_false(save_if_tag(s, "cas", NULL, "over"));
    assert_true(save_if_tag(s, "cas-new", NULL, "new"));
    /* an expired session counts as none */
    fake_now += 120000;
    assert_true(save_if_tag(s, "cas", NULL, "after expiry"));
    free(v1);
    free(now);
    sift_session_close(s2);
    sift_session_close(s);
}

static void test_sessions(void **state)
{
    (void)state;
    char url[300];
    new_db(url, sizeof url, 1);
    sift_err err = {0};
    sift_session_store *s = NULL, *s2 = NULL;
    must(sift_session_pg_open(url, NULL, &s, &err), &err);
    assert_false(load_tag(s, "shopper:1", NULL));
    save_tag(s, "shopper:1", "v1");
    save_tag(s, "shopper:1", "v2");
    save_tag(s, "shopper:2", "other");
    save_tag(s, "gone", "x");
    must(sift_session_delete(s, "gone", &err), &err);
    must(sift_session_delete(s, "never-saved", &err), &err);
    /* A second connection (another server) continues the same sessions. */
    must(sift_session_pg_open(url, NULL, &s2, &err), &err);
    assert_true(load_tag(s2, "shopper:1", "v2"));
    assert_true(load_tag(s2, "shopper:2", "other"));
    assert_false(load_tag(s2, "gone", NULL));
    save_tag(s2, "shopper:3", "from s2");
    assert_true(load_tag(s, "shopper:3", "from s2"));
    assert_int_equal(sift_session_save(s, "bad id", NULL, 0, &err), SIFT_EINVAL);
    sift_session_close(s2);
    sift_session_close(s);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM sessions"), 3);

    /* Corrupt rows are reported, not trusted, and a save repairs them. */
    sql(url, "INSERT INTO sessions VALUES ('torn', '[{\"role\":\"user\",\"content\":\"hi\"},"
             "{\"role\":\"tool\",\"tool_call_id\":\"c9\",\"content\":\"x\"}]', 1),"
             " ('cut', '[{\"role\":\"user\",\"con', 1)");
    must(sift_session_pg_open(url, NULL, &s, &err), &err);
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    bool found = true;
    assert_int_equal(sift_session_load(s, "torn", &c, &found, &err), SIFT_EPROTO);
    assert_false(found);
    assert_non_null(strstr(err.msg, "messages[1].tool_call_id"));
    assert_int_equal(sift_session_load(s, "cut", &c, &found, &err), SIFT_EPROTO);
    assert_int_equal(c.len, 0);
    save_tag(s, "torn", "mended");
    assert_true(load_tag(s, "torn", "mended"));
    sift_arena_free(a);
    size_t removed = 9;
    must(sift_session_pg_purge(s, &removed, &err), &err); /* no TTL: nothing */
    assert_int_equal(removed, 0);
    sift_session_close(s);

    /* TTL: expired sessions load as empty; purge deletes them. */
    fake_now = 1700000000000;
    sift_session_pg_opts o = {.ttl_ms = 60000, .clock = fake_clock, .clock_ud = &fake_now};
    must(sift_session_pg_open(url, &o, &s, &err), &err);
    save_tag(s, "old", "old");
    fake_now += 30000;
    save_tag(s, "new", "new");
    fake_now += 40000; /* old: 70 s, new: 40 s */
    assert_false(load_tag(s, "old", NULL));
    assert_true(load_tag(s, "new", "new"));
    must(sift_session_pg_purge(s, &removed, &err), &err);
    /* "old", and "cut" (saved at time 1 above); the others were saved by
     * the wall clock, later than the fake one. */
    assert_int_equal(removed, 2);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM sessions WHERE id IN ('old', 'cut')"), 0);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM sessions WHERE id = 'new'"), 1);
    sift_session_close(s);
    assert_int_equal(sift_session_pg_purge(NULL, &removed, &err), SIFT_EINVAL);
}

/* ---- checkpoints ------------------------------------------------------- */

/* A checkpointer on url, or the test fails (abort: for the analyser,
 * which does not know fail_msg does not return). */
static sift_checkpointer *open_cp(const char *url)
{
    sift_err e = {0};
    sift_checkpointer *cp = sift_checkpointer_pg_open(url, &e);
    if (!cp) {
        fail_msg("open checkpointer: %s", e.msg);
        abort();
    }
    return cp;
}

static void put(sift_checkpointer *cp, const char *thread, int64_t step, const char *next,
                const char *state)
{
    sift_err e = {0};
    sift_checkpoint c = {.step = step, .next = (char *)next, .state = (char *)state};
    if (cp->ops->put(cp, thread, &c, &e))
        fail_msg("put: %s", e.msg);
}

static void test_checkpoints(void **state)
{
    (void)state;
    char url[300];
    new_db(url, sizeof url, 1);
    sift_err e = {0};
    sift_checkpointer *cp = open_cp(url);
    sift_checkpoint got = {0};
    assert_int_equal(cp->ops->get_latest(cp, "t-1", &got, &e), SIFT_ENOTFOUND);
    put(cp, "t-1", 1, "[\"plan\"]", "{\"counter\":1}");
    put(cp, "t-1", 3, "[\"a\",\"b\"]", "{\"counter\":3}");
    put(cp, "t-1", 2, "[\"c\"]", "{\"counter\":2}");
    put(cp, "t-2", 7, "[]", "{\"done\":true}");
    assert_int_equal(cp->ops->get_latest(cp, "t-1", &got, &e), 0);
    assert_int_equal(got.step, 3);
    assert_string_equal(got.next, "[\"a\",\"b\"]");
    assert_string_equal(got.state, "{\"counter\":3}");
    sift_checkpoint_clear(&got);
    /* The same step again replaces it. */
    put(cp, "t-1", 3, "[]", "{\"counter\":33}");
    sift_checkpointer_close(cp);

    /* Another connection (a server that resumes the thread) sees it all. */
    cp = open_cp(url);
    assert_int_equal(cp->ops->get_latest(cp, "t-1", &got, &e), 0);
    assert_int_equal(got.step, 3);
    assert_string_equal(got.next, "[]");
    assert_string_equal(got.state, "{\"counter\":33}");
    sift_checkpoint_clear(&got);
    assert_int_equal(cp->ops->get_latest(cp, "t-2", &got, &e), 0);
    assert_int_equal(got.step, 7);
    sift_checkpoint_clear(&got);
    sift_checkpointer_close(cp);
    assert_int_equal(sql_int(url, "SELECT count(*) FROM checkpoints"), 4);

    char bad[300];
    snprintf(bad, sizeof bad, "%s/no_such_db", g_base);
    assert_null(sift_checkpointer_pg_open(bad, &e));
    assert_non_null(strstr(e.msg, "does not exist"));
}

/* ---- restart ----------------------------------------------------------- */

/* The server restarts under open connections: a call outside a transaction
 * reconnects and succeeds; inside one it fails with a clear error, the
 * rollback is accepted, and the store works again. Runs last. */
static void test_server_restart(void **state)
{
    (void)state;
    char url[300];
    new_db(url, sizeof url, 1);
    sift_err e = {0};
    sift_store *s = NULL;
    sift_session_store *ss = NULL;
    assert_int_equal(sift_store_open(url, 0, &s, &e), 0);
    must(sift_session_pg_open(url, NULL, &ss, &e), &e);
    sift_checkpointer *cp = open_cp(url);
    sift_stock st = {.sku = "RS-1", .warehouse = "HAN", .quantity = 5, .version = 1};
    int applied = 0;
    assert_int_equal(sift_store_set_stock(s, &st, &applied, &e), 0);
    save_tag(ss, "keep", "before restart");

    assert_int_equal(cluster("restart", NULL, 0), 0);
    sift_arena *a = sift_arena_new(0);
    sift_stock *rows;
    size_t n;
    assert_int_equal(sift_store_get_stock(s, "RS-1", NULL, a, &rows, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].quantity, 5);
    assert_true(load_tag(ss, "keep", "before restart"));
    put(cp, "t-r", 1, "[]", "{}");

    assert_int_equal(sift_store_begin(s, &e), 0);
    st.version = 2;
    assert_int_equal(sift_store_set_stock(s, &st, &applied, &e), 0);
    assert_int_equal(cluster("restart", NULL, 0), 0);
    st.version = 3;
    assert_int_equal(sift_store_set_stock(s, &st, &applied, &e), SIFT_EIO);
    assert_non_null(strstr(e.msg, "connection"));
    assert_int_equal(sift_store_rollback(s, &e), 0);
    assert_int_equal(sift_store_get_stock(s, "RS-1", NULL, a, &rows, &n, &e), 0);
    assert_int_equal(rows[0].version, 1); /* the transaction's write is gone */
    assert_int_equal(sift_store_set_stock(s, &st, &applied, &e), 0);
    assert_int_equal(applied, 1);
    sift_arena_free(a);
    sift_checkpointer_close(cp);
    sift_session_close(ss);
    sift_store_close(s);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sift-pgstore-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    /* Under root the cluster runs as "postgres", who must reach the dir. */
    chmod(g_dir, 0755);
    char url[256];
    int st = cluster("start", url, sizeof url);
    if (st != 0 || strncmp(url, "postgresql://", 13) != 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "cat '%s/cluster.err' >&2", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no cluster log)\n");
        cluster("destroy", NULL, 0);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "test_pgstore: %s left behind\n", g_dir);
        if (st == 77) {
            fprintf(stderr, "test_pgstore: skipped: no PostgreSQL server binaries\n");
            return 77;
        }
        fprintf(stderr, "test_pgstore: the throwaway cluster did not start (status %d)\n", st);
        return 1;
    }
    /* .../sift -> base URL and the admin database. */
    *strrchr(url, '/') = '\0';
    snprintf(g_base, sizeof g_base, "%s", url);
    snprintf(g_admin, sizeof g_admin, "%s/postgres", g_base);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test_setup_teardown(test_upsert_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_and_prices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_sessions_save_if),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_server_restart),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cluster("destroy", NULL, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_pgstore: %s left behind\n", g_dir);
    return rc;
}
