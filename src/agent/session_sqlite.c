/* The SQLite session store.
 *
 *   sessions(id TEXT PRIMARY KEY, messages TEXT NOT NULL, updated_at INTEGER NOT NULL)
 *
 * messages is the JSON of sift_memory_to_json, updated_at the save time in
 * milliseconds since the epoch (wall clock, because it outlives the process).
 * A save is one UPSERT, so it replaces the row atomically: a reader sees the
 * old conversation or the new one, never a mix. The database runs in WAL mode
 * so loads on other connections do not wait for a save.
 *
 * Thread rules: the store owns one connection, opened with
 * SQLITE_OPEN_NOMUTEX, and its statements prepared once. It takes no lock,
 * so one store object belongs to one thread at a time; open one per worker
 * (or per pool thread) on the same file. */
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/memory.h"
#include "sift/session.h"

typedef struct sql_store {
    sift_session_store base;
    sqlite3 *db;
    sqlite3_stmt *get, *put, *del, *purge, *put_if;
    int64_t ttl_ms;
    sift_session_clock clock;
    void *clock_ud;
} sql_store;

static int64_t wall_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int db_fail(sql_store *q, const char *what, const char *id, sift_err *err)
{
    int code = sqlite3_errcode(q->db);
    if (code == SQLITE_NOMEM)
        return sift_err_set(err, SIFT_ENOMEM, "session %s: out of memory (sqlite %s)", id, what);
    return sift_err_set(err, SIFT_EIO, "session %s: sqlite %s failed: %s", id, what,
                        sqlite3_errmsg(q->db));
}

static int sql_load(sift_session_store *s, const char *id, sift_conv *out, bool *found,
                    sift_err *err)
{
    sql_store *q = (sql_store *)s;
    int rc = 0;
    sqlite3_bind_text(q->get, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(q->get);
    if (step == SQLITE_DONE)
        goto done;
    if (step != SQLITE_ROW) {
        rc = db_fail(q, "load", id, err);
        goto done;
    }
    int64_t updated = sqlite3_column_int64(q->get, 1);
    if (q->ttl_ms > 0 && q->clock(q->clock_ud) - updated > q->ttl_ms)
        goto done; /* expired: a new conversation; the row goes at the next purge or save */
    if (sqlite3_column_type(q->get, 0) != SQLITE_TEXT) {
        rc = sift_err_set(err, SIFT_EPROTO, "stored conversation: messages is not text");
        goto done;
    }
    const char *text = (const char *)sqlite3_column_text(q->get, 0);
    int len = sqlite3_column_bytes(q->get, 0);
    if (!text) {
        rc = sift_err_set(err, SIFT_ENOMEM, "session %s: out of memory (sqlite load)", id);
        goto done;
    }
    rc = sift_memory_from_json(text, (size_t)len, out, err);
    if (!rc)
        *found = true;
done:
    sqlite3_reset(q->get);
    sqlite3_clear_bindings(q->get);
    return rc;
}

/* A save; with `check`, through put_if, whose upsert updates only a row
 * holding `expect` (NULL matches no row) or one expired under the TTL. One
 * statement, so SQLite's write lock makes it atomic. */
static int sql_put(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                   bool check, const char *expect, bool *saved, sift_err *err)
{
    sql_store *q = (sql_store *)s;
    sqlite3_stmt *st = check ? q->put_if : q->put;
    int64_t now = q->clock(q->clock_ud);
    sift_buf b;
    *saved = false;
    /* SQLite's default string limit is 1e9 bytes; stay well under it. */
    sift_buf_init(&b, 256u << 20);
    int rc = sift_memory_to_json(msgs, n, &b, err);
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b.data, (int)b.len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if (check) {
        if (expect)
            sqlite3_bind_text(st, 4, expect, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, q->ttl_ms > 0 ? now - q->ttl_ms : INT64_MIN);
    }
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(q, "save", id, err);
    else
        *saved = !check || sqlite3_changes(q->db) > 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
out:
    sift_buf_free(&b);
    return rc;
}

static int sql_save(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                    sift_err *err)
{
    bool saved;
    return sql_put(s, id, msgs, n, false, NULL, &saved, err);
}

static int sql_save_if(sift_session_store *s, const char *id, const char *expect,
                       const sift_message *msgs, size_t n, bool *saved, sift_err *err)
{
    return sql_put(s, id, msgs, n, true, expect, saved, err);
}

static int sql_remove(sift_session_store *s, const char *id, sift_err *err)
{
    sql_store *q = (sql_store *)s;
    int rc = 0;
    sqlite3_bind_text(q->del, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(q->del) != SQLITE_DONE)
        rc = db_fail(q, "delete", id, err);
    sqlite3_reset(q->del);
    sqlite3_clear_bindings(q->del);
    return rc;
}

static void sql_close(sift_session_store *s)
{
    sql_store *q = (sql_store *)s;
    sqlite3_finalize(q->get);
    sqlite3_finalize(q->put);
    sqlite3_finalize(q->del);
    sqlite3_finalize(q->purge);
    sqlite3_finalize(q->put_if);
    sqlite3_close(q->db);
    sift_free(q);
}

static const sift_session_ops sql_ops = {
    .kind = "sqlite",
    .load = sql_load,
    .save = sql_save,
    .remove = sql_remove,
    .close = sql_close,
    .save_if = sql_save_if,
};

int sift_session_sqlite_purge(sift_session_store *s, size_t *removed, sift_err *err)
{
    if (removed)
        *removed = 0;
    if (!s || s->ops != &sql_ops)
        return sift_err_set(err, SIFT_EINVAL, "session purge: not a SQLite session store");
    sql_store *q = (sql_store *)s;
    if (q->ttl_ms <= 0)
        return 0;
    int rc = 0;
    sqlite3_bind_int64(q->purge, 1, q->clock(q->clock_ud) - q->ttl_ms);
    if (sqlite3_step(q->purge) != SQLITE_DONE)
        rc = db_fail(q, "purge", "*", err);
    else if (removed)
        *removed = (size_t)sqlite3_changes(q->db);
    sqlite3_reset(q->purge);
    return rc;
}

static int prepare(sql_store *q, const char *sql, sqlite3_stmt **st, const char *path,
                   sift_err *err)
{
    if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK)
        return 0;
    return sift_err_set(err, SIFT_EIO, "session store %s: %s", path, sqlite3_errmsg(q->db));
}

int sift_session_sqlite_open(const char *path, const sift_session_sqlite_opts *opts,
                             sift_session_store **out, sift_err *err)
{
    sift_session_sqlite_opts o = {0};
    if (opts)
        o = *opts;
    if (!out || !path || !*path)
        return sift_err_set(err, SIFT_EINVAL, "session store: no database path");
    *out = NULL;
    if (o.ttl_ms < 0)
        return sift_err_set(err, SIFT_EINVAL, "session store: ttl_ms must not be negative");
    sql_store *q = sift_calloc(1, sizeof(*q));
    if (!q)
        return sift_err_set(err, SIFT_ENOMEM, "session store: out of memory");
    q->base.ops = &sql_ops;
    q->ttl_ms = o.ttl_ms;
    q->clock = o.clock ? o.clock : wall_ms;
    q->clock_ud = o.clock ? o.clock_ud : NULL;

    int rc;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &q->db, flags, NULL) != SQLITE_OK) {
        rc = sift_err_set(err, q->db ? SIFT_EIO : SIFT_ENOMEM, "session store %s: cannot open: %s",
                          path, q->db ? sqlite3_errmsg(q->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(q->db, o.busy_timeout_ms > 0 ? o.busy_timeout_ms : 5000);
    char *msg = NULL;
    if (sqlite3_exec(q->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, messages TEXT "
                     "NOT NULL, updated_at INTEGER NOT NULL);",
                     NULL, NULL, &msg) != SQLITE_OK) {
        rc = sift_err_set(err, SIFT_EIO, "session store %s: %s", path,
                          msg ? msg : sqlite3_errmsg(q->db));
        sqlite3_free(msg);
        goto fail;
    }
    if ((rc = prepare(q, "SELECT messages, updated_at FROM sessions WHERE id = ?1", &q->get, path,
                      err)) ||
        (rc = prepare(q,
                      "INSERT INTO sessions(id, messages, updated_at) VALUES(?1, ?2, ?3) "
                      "ON CONFLICT(id) DO UPDATE SET messages = excluded.messages, "
                      "updated_at = excluded.updated_at",
                      &q->put, path, err)) ||
        (rc = prepare(q, "DELETE FROM sessions WHERE id = ?1", &q->del, path, err)) ||
        (rc = prepare(q, "DELETE FROM sessions WHERE updated_at < ?1", &q->purge, path, err)) ||
        (rc = prepare(q,
                      "INSERT INTO sessions(id, messages, updated_at) VALUES(?1, ?2, ?3) "
                      "ON CONFLICT(id) DO UPDATE SET messages = excluded.messages, "
                      "updated_at = excluded.updated_at "
                      "WHERE sessions.messages IS ?4 OR sessions.updated_at < ?5",
                      &q->put_if, path, err)))
        goto fail;
    *out = &q->base;
    return 0;
fail:
    sql_close(&q->base);
    return rc;
}
