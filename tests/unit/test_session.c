/* Session stores: ids, the in-memory LRU (eviction order, byte cap, TTL,
 * four threads at once), the SQLite store (persistence across reopen, TTL,
 * corrupt rows), and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sift/arena.h"
#include "sift/err.h"
#include "sift/memory.h"
#include "sift/model.h"
#include "sift/session.h"

static void must(int rc, const sift_err *err)
{
    if (rc)
        fail_msg("unexpected error %d: %s", rc, err->msg);
}

/* A small conversation whose first user message names `tag`, with one tool
 * call answered. */
static void build(sift_conv *c, const char *tag)
{
    sift_err err = {0};
    sift_tool_call call = {
        .id = "call_1", .name = "get_price", .arguments = "{\"sku\":\"A\"}", .arguments_len = 11};
    must(sift_conv_add_system(c, "You sell shoes.", &err), &err);
    must(sift_conv_add_user(c, tag, &err), &err);
    must(sift_conv_add_assistant(c, NULL, &call, 1, &err), &err);
    must(sift_conv_add_tool_result(c, "call_1", "{\"VND\":1000}", &err), &err);
    must(sift_conv_add_assistant(c, "1,000 VND — giày đẹp", NULL, 0, &err), &err);
}

static void save_tag(sift_session_store *s, const char *id, const char *tag)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    build(&c, tag);
    sift_err err = {0};
    must(sift_session_save(s, id, c.msgs, c.len, &err), &err);
    sift_arena_free(a);
}

/* Loads `id` and returns whether it was found; when found, checks its shape
 * and that its user message is `tag` (NULL: any). */
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

static void test_ids(void **state)
{
    (void)state;
    sift_err err = {0};
    assert_int_equal(sift_session_id_check("abc-DEF_012.x:y", &err), 0);
    char longest[SIFT_SESSION_ID_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[SIFT_SESSION_ID_MAX] = '\0';
    assert_int_equal(sift_session_id_check(longest, &err), 0);
    longest[SIFT_SESSION_ID_MAX] = 'a';
    longest[SIFT_SESSION_ID_MAX + 1] = '\0';
    assert_int_equal(sift_session_id_check(longest, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "longer than 128"));
    assert_int_equal(sift_session_id_check("", &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(sift_session_id_check(NULL, &err), SIFT_EINVAL);
    static const char *const bad[] = {"a b", "a/b", "a'b", "x;DROP", "é", "a\nb", "a%b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sift_session_id_check(bad[i], &err), SIFT_EINVAL);
        assert_non_null(strstr(err.msg, "not allowed"));
    }

    /* The store calls check ids before touching anything. */
    sift_session_store *s = NULL;
    must(sift_session_mem_new(NULL, &s, &err), &err);
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    build(&c, "x");
    assert_int_equal(sift_session_save(s, "a b", c.msgs, c.len, &err), SIFT_EINVAL);
    assert_int_equal(sift_session_load(s, "", &c, NULL, &err), SIFT_EINVAL);
    assert_int_equal(sift_session_delete(s, longest, &err), SIFT_EINVAL);
    size_t n = 9;
    sift_session_mem_stats(s, &n, NULL);
    assert_int_equal(n, 0);
    sift_arena_free(a);
    sift_session_close(s);
}

static void test_mem_basic(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    must(sift_session_mem_new(NULL, &s, &err), &err);
    assert_false(load_tag(s, "s1", NULL));
    save_tag(s, "s1", "first");
    assert_true(load_tag(s, "s1", "first"));
    save_tag(s, "s1", "second"); /* replaces */
    assert_true(load_tag(s, "s1", "second"));
    size_t n = 0, bytes = 0;
    sift_session_mem_stats(s, &n, &bytes);
    assert_int_equal(n, 1);
    assert_true(bytes > 100);
    must(sift_session_delete(s, "s1", &err), &err);
    must(sift_session_delete(s, "s1", &err), &err); /* unknown: fine */
    assert_false(load_tag(s, "s1", NULL));
    sift_session_mem_stats(s, &n, &bytes);
    assert_int_equal(n, 0);
    assert_int_equal(bytes, 0);

    /* Enough sessions to grow the hash map several times. */
    char id[32];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "user:%d", i);
        save_tag(s, id, id);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "user:%d", i);
        assert_true(load_tag(s, id, id));
    }
    sift_session_mem_stats(s, &n, NULL);
    assert_int_equal(n, 500);
    sift_session_close(s);
    sift_session_close(NULL);
}

static void test_mem_lru_order(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    sift_session_mem_opts o = {.max_sessions = 3};
    must(sift_session_mem_new(&o, &s, &err), &err);
    save_tag(s, "a", "a");
    save_tag(s, "b", "b");
    save_tag(s, "c", "c");
    assert_true(load_tag(s, "a", "a")); /* a is now the most recent; b the least */
    save_tag(s, "d", "d");
    assert_false(load_tag(s, "b", NULL));
    /* order now, least recent first: c a d */
    save_tag(s, "c", "c2"); /* a save is a use: a d c */
    save_tag(s, "e", "e");  /* evicts a */
    assert_false(load_tag(s, "a", NULL));
    assert_true(load_tag(s, "d", "d"));
    assert_true(load_tag(s, "c", "c2"));
    assert_true(load_tag(s, "e", "e"));
    size_t n = 0;
    sift_session_mem_stats(s, &n, NULL);
    assert_int_equal(n, 3);
    sift_session_close(s);
}

static void test_mem_byte_cap(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    /* Measure one session's charge first. */
    must(sift_session_mem_new(NULL, &s, &err), &err);
    save_tag(s, "s00", "t00");
    size_t one = 0;
    sift_session_mem_stats(s, NULL, &one);
    sift_session_close(s);

    sift_session_mem_opts o = {.max_bytes = one * 3 + one / 2};
    must(sift_session_mem_new(&o, &s, &err), &err);
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "s%02d", i);
        save_tag(s, id, id);
        size_t n = 0, bytes = 0;
        sift_session_mem_stats(s, &n, &bytes);
        assert_true(bytes <= o.max_bytes);
        assert_int_equal(n, i < 3 ? (size_t)i + 1 : 3);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "s%02d", i);
        assert_int_equal(load_tag(s, id, id), i >= 7); /* the three newest survive */
    }

    /* A conversation bigger than the whole cap is refused, and the session
     * keeps its previous conversation. */
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    build(&c, "big");
    char *huge = sift_arena_alloc(a, one * 4);
    memset(huge, 'x', one * 4 - 1);
    huge[one * 4 - 1] = '\0';
    must(sift_conv_add_user(&c, huge, &err), &err);
    assert_int_equal(sift_session_save(s, "s09", c.msgs, c.len, &err), SIFT_ETOOBIG);
    assert_non_null(strstr(err.msg, "cap"));
    assert_true(load_tag(s, "s09", "s09"));
    sift_arena_free(a);
    sift_session_close(s);
}

static int64_t fake_now;
static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

static void test_mem_ttl(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    fake_now = 1000;
    sift_session_mem_opts o = {.ttl_ms = 500, .clock = fake_clock, .clock_ud = &fake_now};
    must(sift_session_mem_new(&o, &s, &err), &err);
    save_tag(s, "a", "a");
    save_tag(s, "b", "b");
    fake_now = 1400;
    assert_true(load_tag(s, "a", "a")); /* a load is a use: a idle from 1400 */
    fake_now = 1600;
    assert_false(load_tag(s, "b", NULL)); /* idle 600 ms: gone */
    assert_true(load_tag(s, "a", "a"));
    size_t n = 0;
    sift_session_mem_stats(s, &n, NULL);
    assert_int_equal(n, 1); /* the expired one was dropped */
    fake_now = 2101;
    assert_false(load_tag(s, "a", NULL));
    sift_session_close(s);

    o.ttl_ms = -1;
    assert_int_equal(sift_session_mem_new(&o, &s, &err), SIFT_EINVAL);
    assert_null(s);
}

typedef struct worker {
    sift_session_store *s;
    unsigned seed;
    int loads_found;
    int errors;
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    char id[32];
    sift_arena *a = sift_arena_new(0);
    for (int i = 0; i < 1500; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        unsigned r = w->seed >> 8;
        snprintf(id, sizeof(id), "sess-%u", r % 40);
        sift_err err = {0};
        sift_conv c;
        sift_conv_init(&c, a);
        if (r % 7 == 0) {
            if (sift_session_delete(w->s, id, &err))
                w->errors++;
        } else if (r % 3 == 0) {
            build(&c, id);
            if (sift_session_save(w->s, id, c.msgs, c.len, &err))
                w->errors++;
        } else {
            bool found = false;
            if (sift_session_load(w->s, id, &c, &found, &err))
                w->errors++;
            /* Whatever thread saved it last, the conversation is whole and
             * belongs to this id. */
            if (found && (c.len != 5 || strcmp(c.msgs[1].content, id) != 0))
                w->errors++;
            w->loads_found += found;
        }
        sift_arena_reset(a);
    }
    sift_arena_free(a);
    return NULL;
}

static void test_mem_threads(void **state)
{
    (void)state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    /* Room for about 20 of the 40 ids, so evictions race with loads. */
    sift_session_mem_opts o = {.max_sessions = 20};
    must(sift_session_mem_new(&o, &s, &err), &err);
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.s = s, .seed = 17u + (unsigned)i * 7919u};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    int found = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
        found += w[i].loads_found;
    }
    assert_true(found > 0);
    size_t n = 0;
    sift_session_mem_stats(s, &n, NULL);
    assert_true(n <= 20);
    sift_session_close(s);
}

/* ---- SQLite ------------------------------------------------------------ */

typedef struct dbdir {
    char dir[64];
    char path[128];
} dbdir;

static int db_setup(void **state)
{
    dbdir *d = calloc(1, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/sift-session-XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    snprintf(d->path, sizeof(d->path), "%s/sessions.db", d->dir);
    *state = d;
    return 0;
}

static int db_teardown(void **state)
{
    dbdir *d = *state;
    char p[160];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", d->path, suffixes[i]);
        unlink(p);
    }
    rmdir(d->dir);
    free(d);
    return 0;
}

static void test_sqlite_persist(void **state)
{
    dbdir *d = *state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    must(sift_session_sqlite_open(d->path, NULL, &s, &err), &err);
    assert_false(load_tag(s, "shopper:1", NULL));
    save_tag(s, "shopper:1", "v1");
    save_tag(s, "shopper:1", "v2");
    save_tag(s, "shopper:2", "other");
    save_tag(s, "gone", "x");
    must(sift_session_delete(s, "gone", &err), &err);
    sift_session_close(s);

    /* Reopen: the same conversations, and a second connection sees them too. */
    sift_session_store *s2 = NULL, *s3 = NULL;
    must(sift_session_sqlite_open(d->path, NULL, &s2, &err), &err);
    must(sift_session_sqlite_open(d->path, NULL, &s3, &err), &err);
    assert_true(load_tag(s2, "shopper:1", "v2"));
    assert_true(load_tag(s2, "shopper:2", "other"));
    assert_false(load_tag(s2, "gone", NULL));
    save_tag(s3, "shopper:3", "from s3");
    assert_true(load_tag(s2, "shopper:3", "from s3"));
    sift_session_close(s2);
    sift_session_close(s3);

    /* The table is what the header says, in WAL mode. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(d->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sessions", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 3);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* A path that cannot be opened. */
    assert_int_equal(sift_session_sqlite_open("/nonexistent-dir/x/y.db", NULL, &s, &err), SIFT_EIO);
    assert_null(s);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x/y.db"));
}

static void test_sqlite_corrupt(void **state)
{
    dbdir *d = *state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    must(sift_session_sqlite_open(d->path, NULL, &s, &err), &err);
    save_tag(s, "ok", "fine");

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(d->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO sessions VALUES('torn', '[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"tool\",\"tool_call_id\":\"c9\",\"content\":\"x\"}]', 1);"
                     "INSERT INTO sessions VALUES('cut', '[{\"role\":\"user\",\"con', 1);"
                     "INSERT INTO sessions VALUES('blob', x'00ff10', 1);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    bool found = true;
    assert_int_equal(sift_session_load(s, "torn", &c, &found, &err), SIFT_EPROTO);
    assert_false(found);
    assert_int_equal(c.len, 0);
    assert_non_null(strstr(err.msg, "session torn: "));
    assert_non_null(strstr(err.msg, "messages[1].tool_call_id"));
    assert_int_equal(sift_session_load(s, "cut", &c, &found, &err), SIFT_EPROTO);
    assert_non_null(strstr(err.msg, "invalid JSON"));
    assert_int_equal(sift_session_load(s, "blob", &c, &found, &err), SIFT_EPROTO);
    assert_non_null(strstr(err.msg, "session blob: "));
    assert_int_equal(c.len, 0);
    /* The store still works, and saving over a corrupt session repairs it. */
    assert_true(load_tag(s, "ok", "fine"));
    save_tag(s, "torn", "mended");
    assert_true(load_tag(s, "torn", "mended"));
    sift_arena_free(a);
    sift_session_close(s);
}

static void test_sqlite_ttl(void **state)
{
    dbdir *d = *state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    fake_now = 1700000000000;
    sift_session_sqlite_opts o = {.ttl_ms = 60000, .clock = fake_clock, .clock_ud = &fake_now};
    must(sift_session_sqlite_open(d->path, &o, &s, &err), &err);
    save_tag(s, "old", "old");
    fake_now += 30000;
    save_tag(s, "new", "new");
    fake_now += 40000; /* old: 70 s, new: 40 s */
    assert_false(load_tag(s, "old", NULL));
    assert_true(load_tag(s, "new", "new"));
    size_t removed = 0;
    must(sift_session_sqlite_purge(s, &removed, &err), &err);
    assert_int_equal(removed, 1);
    sift_session_close(s);

    /* Without a TTL the row is still there for the same clock. */
    sift_session_sqlite_opts none = {.clock = fake_clock, .clock_ud = &fake_now};
    must(sift_session_sqlite_open(d->path, &none, &s, &err), &err);
    assert_false(load_tag(s, "old", NULL)); /* purged */
    assert_true(load_tag(s, "new", "new"));
    must(sift_session_sqlite_purge(s, &removed, &err), &err);
    assert_int_equal(removed, 0);
    sift_session_close(s);

    sift_session_store *m = NULL;
    must(sift_session_mem_new(NULL, &m, &err), &err);
    assert_int_equal(sift_session_sqlite_purge(m, &removed, &err), SIFT_EINVAL);
    sift_session_close(m);
}

typedef struct sql_worker {
    const char *path;
    int index;
    int errors;
    int found;
} sql_worker;

/* One store object (one connection) per thread on one file, as the header
 * asks: each thread writes its own sessions and reads everyone's. */
static void *sql_worker_main(void *p)
{
    sql_worker *w = p;
    sift_err err = {0};
    sift_session_store *s = NULL;
    if (sift_session_sqlite_open(w->path, NULL, &s, &err)) {
        w->errors++;
        return NULL;
    }
    sift_arena *a = sift_arena_new(0);
    char id[32];
    for (int i = 0; i < 60; i++) {
        sift_conv c;
        sift_conv_init(&c, a);
        snprintf(id, sizeof(id), "t%d-%d", w->index, i % 10);
        build(&c, id);
        if (sift_session_save(s, id, c.msgs, c.len, &err))
            w->errors++;
        snprintf(id, sizeof(id), "t%d-%d", (w->index + 1) % 4, i % 10);
        sift_conv_init(&c, a);
        bool found = false;
        if (sift_session_load(s, id, &c, &found, &err))
            w->errors++;
        if (found && (c.len != 5 || strcmp(c.msgs[1].content, id) != 0))
            w->errors++;
        w->found += found;
        sift_arena_reset(a);
    }
    sift_arena_free(a);
    sift_session_close(s);
    return NULL;
}

static void test_sqlite_threads(void **state)
{
    dbdir *d = *state;
    sift_err err = {0};
    sift_session_store *s = NULL;
    must(sift_session_sqlite_open(d->path, NULL, &s, &err), &err); /* creates the table */
    sift_session_close(s);
    pthread_t t[4];
    sql_worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (sql_worker){.path = d->path, .index = i};
        assert_int_equal(pthread_create(&t[i], NULL, sql_worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    must(sift_session_sqlite_open(d->path, NULL, &s, &err), &err);
    char id[32];
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 10; k++) {
            snprintf(id, sizeof(id), "t%d-%d", i, k);
            assert_true(load_tag(s, id, id));
        }
    sift_session_close(s);
}

/* ---- allocation failures ------------------------------------------------ */

static void test_oom(void **state)
{
    dbdir *d = *state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    build(&c, "oom");

    /* Memory store: creation, save and load each fail at every allocation
     * in turn; a failed save leaves the previous conversation in place. */
    bool done = false;
    for (long n = 0; n < 200 && !done; n++) {
        sift_err err = {0};
        sift_session_store *s = NULL;
        sift_mem_fail_after(n);
        int rc = sift_session_mem_new(NULL, &s, &err);
        if (rc == 0)
            rc = sift_session_save(s, "k", c.msgs, c.len, &err);
        sift_arena *la = NULL;
        sift_conv back = {0};
        bool found = false;
        if (rc == 0) {
            la = sift_arena_new(0);
            rc = la ? 0 : SIFT_ENOMEM;
        }
        if (rc == 0) {
            sift_conv_init(&back, la);
            rc = sift_session_load(s, "k", &back, &found, &err);
        }
        sift_mem_fail_after(-1);
        if (rc) {
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_int_equal(back.len, 0);
        } else {
            assert_true(found);
            assert_int_equal(back.len, c.len);
            done = true;
        }
        sift_arena_free(la);
        sift_session_close(s);
    }
    assert_true(done);

    /* SQLite store: sift's own allocations fail (SQLite's are its own). */
    done = false;
    for (long n = 0; n < 200 && !done; n++) {
        sift_err err = {0};
        sift_session_store *s = NULL;
        sift_mem_fail_after(n);
        int rc = sift_session_sqlite_open(d->path, NULL, &s, &err);
        if (rc == 0)
            rc = sift_session_save(s, "k", c.msgs, c.len, &err);
        sift_mem_fail_after(-1);
        if (rc)
            assert_int_equal(rc, SIFT_ENOMEM);
        else
            done = true;
        sift_session_close(s);
    }
    assert_true(done);
    sift_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_mem_basic),
        cmocka_unit_test(test_mem_lru_order),
        cmocka_unit_test(test_mem_byte_cap),
        cmocka_unit_test(test_mem_ttl),
        cmocka_unit_test(test_mem_threads),
        cmocka_unit_test_setup_teardown(test_sqlite_persist, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_corrupt, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_ttl, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_threads, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_oom, db_setup, db_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
