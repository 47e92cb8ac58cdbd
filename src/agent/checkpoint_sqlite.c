/* Graph checkpoints in SQLite.
 *
 * The calls are synchronous on the loop thread: each is one indexed write or
 * read of a row holding a run's state, which is short for a local file. The
 * database runs in WAL mode with synchronous=NORMAL, so a checkpoint survives
 * a crash of the process (not necessarily a power loss), which is what resume
 * after a crash needs. */
#include <sqlite3.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/graph.h"

struct sqlite_cp {
    sift_checkpointer base;
    sqlite3 *db;
    sqlite3_stmt *put, *get;
};

static int db_fail(struct sqlite_cp *s, sift_err *err, const char *what)
{
    return sift_err_set(err, SIFT_EIO, "checkpoints: %s: %s", what, sqlite3_errmsg(s->db));
}

static int cp_put(sift_checkpointer *cp, const char *thread_id, const sift_checkpoint *c,
                  sift_err *err)
{
    struct sqlite_cp *s = (struct sqlite_cp *)cp;
    sqlite3_reset(s->put);
    if (sqlite3_bind_text(s->put, 1, thread_id, -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(s->put, 2, c->step) ||
        sqlite3_bind_text(s->put, 3, c->next, -1, SQLITE_STATIC) ||
        sqlite3_bind_text(s->put, 4, c->state, -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(s->put, 5, (sqlite3_int64)time(NULL)))
        return db_fail(s, err, "cannot bind a checkpoint");
    int rc = sqlite3_step(s->put);
    sqlite3_clear_bindings(s->put);
    sqlite3_reset(s->put);
    if (rc != SQLITE_DONE)
        return sift_err_set(err, rc == SQLITE_NOMEM ? SIFT_ENOMEM : SIFT_EIO,
                            "checkpoints: cannot save step %lld of thread \"%s\": %s",
                            (long long)c->step, thread_id, sqlite3_errmsg(s->db));
    return 0;
}

static int cp_get_latest(sift_checkpointer *cp, const char *thread_id, sift_checkpoint *out,
                         sift_err *err)
{
    struct sqlite_cp *s = (struct sqlite_cp *)cp;
    memset(out, 0, sizeof(*out));
    sqlite3_reset(s->get);
    if (sqlite3_bind_text(s->get, 1, thread_id, -1, SQLITE_STATIC))
        return db_fail(s, err, "cannot bind a thread id");
    int rc = sqlite3_step(s->get), code = 0;
    if (rc == SQLITE_ROW) {
        out->step = sqlite3_column_int64(s->get, 0);
        const char *next = (const char *)sqlite3_column_text(s->get, 1);
        const char *state = (const char *)sqlite3_column_text(s->get, 2);
        out->next = sift_strdup(next ? next : "[]");
        out->state = sift_strdup(state ? state : "{}");
        if (!out->next || !out->state) {
            sift_checkpoint_clear(out);
            code = sift_err_set(err, SIFT_ENOMEM, "checkpoints: out of memory");
        }
    } else if (rc == SQLITE_DONE) {
        code = sift_err_set(err, SIFT_ENOTFOUND, "checkpoints: thread \"%s\" has no checkpoint",
                            thread_id);
    } else {
        code = sift_err_set(err, SIFT_EIO, "checkpoints: cannot read thread \"%s\": %s", thread_id,
                            sqlite3_errmsg(s->db));
    }
    sqlite3_clear_bindings(s->get);
    sqlite3_reset(s->get);
    return code;
}

static void cp_close(sift_checkpointer *cp)
{
    struct sqlite_cp *s = (struct sqlite_cp *)cp;
    sqlite3_finalize(s->put);
    sqlite3_finalize(s->get);
    sqlite3_close(s->db);
    sift_free(s);
}

static const sift_checkpointer_ops sqlite_ops = {
    .put = cp_put, .get_latest = cp_get_latest, .close = cp_close};

sift_checkpointer *sift_checkpointer_sqlite_open(const char *path, sift_err *err)
{
    static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS checkpoints ("
        " thread_id TEXT NOT NULL, step INTEGER NOT NULL, next TEXT NOT NULL,"
        " state TEXT NOT NULL, created_at INTEGER NOT NULL,"
        " PRIMARY KEY (thread_id, step))";
    struct sqlite_cp *s = sift_calloc(1, sizeof(*s));
    if (!s) {
        sift_err_set(err, SIFT_ENOMEM, "checkpoints: out of memory");
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        sift_err_set(err, SIFT_EIO, "checkpoints: cannot open %s: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 1000);
    if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO checkpoints (thread_id, step, next, state, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &s->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "SELECT step, next, state FROM checkpoints WHERE thread_id = ?1 "
                           "ORDER BY step DESC LIMIT 1",
                           -1, &s->get, NULL) != SQLITE_OK) {
        sift_err_set(err, SIFT_EIO, "checkpoints: cannot prepare %s: %s", path,
                     sqlite3_errmsg(s->db));
        goto fail;
    }
    return &s->base;
fail:
    cp_close(&s->base);
    return NULL;
}

void sift_checkpointer_close(sift_checkpointer *cp)
{
    if (cp)
        cp->ops->close(cp);
}
