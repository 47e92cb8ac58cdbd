/* The PostgreSQL session store: the sessions table of a migrated database
 * (pg_schema.c), with the SQLite store's semantics.
 *
 *   sessions(id text PRIMARY KEY, messages text NOT NULL, updated_at bigint NOT NULL)
 *
 * messages is the JSON of sift_memory_to_json, updated_at the save time in
 * milliseconds since the epoch. A save is one upsert, so a reader on another
 * server sees the old conversation or the new one, never a mix: any server
 * behind a load balancer can continue any session.
 *
 * One blocking connection and its prepared statements per store object,
 * no lock: one object per thread, never on an event loop. A connection found
 * dead is re-established (PQreset) and the call retried once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/memory.h"
#include "sift/pgstore.h"
#include "sift/session.h"

enum { Q_GET, Q_PUT, Q_DEL, Q_PURGE, Q_PUT_IF, Q_COUNT };

static const char *const q_sql[Q_COUNT] = {
    [Q_GET] = "SELECT messages, updated_at FROM sessions WHERE id = $1",
    [Q_PUT] = "INSERT INTO sessions (id, messages, updated_at) VALUES ($1, $2, $3)"
              " ON CONFLICT (id) DO UPDATE SET messages = excluded.messages,"
              " updated_at = excluded.updated_at",
    [Q_DEL] = "DELETE FROM sessions WHERE id = $1",
    [Q_PURGE] = "DELETE FROM sessions WHERE updated_at < $1",
    /* compare-and-set: ON CONFLICT DO UPDATE locks the row and checks the
     * WHERE on its latest version, so two of these cannot both win */
    [Q_PUT_IF] = "INSERT INTO sessions (id, messages, updated_at) VALUES ($1, $2, $3)"
                 " ON CONFLICT (id) DO UPDATE SET messages = excluded.messages,"
                 " updated_at = excluded.updated_at"
                 " WHERE sessions.messages = $4 OR sessions.updated_at < $5",
};

typedef struct pg_sessions {
    sift_session_store base;
    PGconn *conn;
    int prepared;
    char where[512];
    int64_t ttl_ms;
    sift_session_clock clock;
    void *clock_ud;
} pg_sessions;

static int64_t wall_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(pg_sessions *q, const char *what, const char *id, sift_err *err)
{
    char msg[SIFT_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(q->conn));
    msg[strcspn(msg, "\n")] = '\0';
    return sift_err_set(err, SIFT_EIO, "session %s: postgres %s failed (%s): %s", id, what,
                        q->where, msg);
}

static int prepare(pg_sessions *q, sift_err *err)
{
    if (PQstatus(q->conn) != CONNECTION_OK) {
        PQreset(q->conn);
        q->prepared = 0;
        if (PQstatus(q->conn) != CONNECTION_OK)
            return fail(q, "reconnect", "*", err);
    }
    if (q->prepared)
        return 0;
    for (int i = 0; i < Q_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "sift_q%d", i);
        PGresult *r = PQprepare(q->conn, name, q_sql[i], 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return fail(q, "prepare", "*", err);
    }
    q->prepared = 1;
    return 0;
}

/* Runs query `which`; the result (tuples or command) in *out. */
static int run(pg_sessions *q, int which, int n, const char *const *vals, PGresult **out,
               const char *what, const char *id, sift_err *err)
{
    *out = NULL;
    int rc = prepare(q, err);
    if (rc)
        return rc;
    char name[16];
    snprintf(name, sizeof name, "sift_q%d", which);
    PGresult *r = PQexecPrepared(q->conn, name, n, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    /* A dead connection (server restarted): reconnect and try once more;
     * every statement here is safe to repeat. */
    if (st == PGRES_FATAL_ERROR && PQstatus(q->conn) == CONNECTION_BAD) {
        PQclear(r);
        if ((rc = prepare(q, err)))
            return rc;
        r = PQexecPrepared(q->conn, name, n, vals, NULL, NULL, 0);
        st = PQresultStatus(r);
    }
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = fail(q, what, id, err);
        PQclear(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int pg_load(sift_session_store *s, const char *id, sift_conv *out, bool *found,
                   sift_err *err)
{
    pg_sessions *q = (pg_sessions *)s;
    PGresult *r;
    const char *vals[1] = {id};
    int rc = run(q, Q_GET, 1, vals, &r, "load", id, err);
    if (rc)
        return rc;
    if (PQntuples(r) == 0)
        goto done;
    int64_t updated = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    if (q->ttl_ms > 0 && q->clock(q->clock_ud) - updated > q->ttl_ms)
        goto done; /* expired: a new conversation; the row goes at the next purge or save */
    rc = sift_memory_from_json(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), out, err);
    if (!rc)
        *found = true;
done:
    PQclear(r);
    return rc;
}

/* A save; with `check`, the compare-and-set Q_PUT_IF (expect NULL matches
 * no row; an expired row always matches). */
static int pg_put(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                  bool check, const char *expect, bool *saved, sift_err *err)
{
    pg_sessions *q = (pg_sessions *)s;
    sift_buf b;
    *saved = false;
    /* PostgreSQL's text limit is 1 GB; stay well under it, as SQLite does. */
    sift_buf_init(&b, 256u << 20);
    int rc = sift_memory_to_json(msgs, n, &b, err);
    if (!rc && (rc = sift_buf_putc(&b, '\0')))
        rc = sift_err_set(err, rc, "session %s: conversation too large or out of memory", id);
    if (rc)
        goto out;
    int64_t now = q->clock(q->clock_ud);
    char ms[24], cut[24];
    snprintf(ms, sizeof ms, "%lld", (long long)now);
    snprintf(cut, sizeof cut, "%lld", (long long)(q->ttl_ms > 0 ? now - q->ttl_ms : INT64_MIN));
    const char *vals[5] = {id, b.data, ms, expect, cut};
    PGresult *r;
    if (!(rc = run(q, check ? Q_PUT_IF : Q_PUT, check ? 5 : 3, vals, &r, "save", id, err))) {
        *saved = !check || strcmp(PQcmdTuples(r), "0") != 0;
        PQclear(r);
    }
out:
    sift_buf_free(&b);
    return rc;
}

static int pg_save(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                   sift_err *err)
{
    bool saved;
    return pg_put(s, id, msgs, n, false, NULL, &saved, err);
}

static int pg_save_if(sift_session_store *s, const char *id, const char *expect,
                      const sift_message *msgs, size_t n, bool *saved, sift_err *err)
{
    return pg_put(s, id, msgs, n, true, expect, saved, err);
}

static int pg_remove(sift_session_store *s, const char *id, sift_err *err)
{
    pg_sessions *q = (pg_sessions *)s;
    const char *vals[1] = {id};
    PGresult *r;
    int rc = run(q, Q_DEL, 1, vals, &r, "delete", id, err);
    PQclear(r);
    return rc;
}

static void pg_close(sift_session_store *s)
{
    pg_sessions *q = (pg_sessions *)s;
    if (q->conn)
        PQfinish(q->conn);
    sift_free(q);
}

static const sift_session_ops pg_ops = {
    .kind = "postgres",
    .load = pg_load,
    .save = pg_save,
    .remove = pg_remove,
    .close = pg_close,
    .save_if = pg_save_if,
};

int sift_session_pg_purge(sift_session_store *s, size_t *removed, sift_err *err)
{
    if (removed)
        *removed = 0;
    if (!s || s->ops != &pg_ops)
        return sift_err_set(err, SIFT_EINVAL, "session purge: not a PostgreSQL session store");
    pg_sessions *q = (pg_sessions *)s;
    if (q->ttl_ms <= 0)
        return 0;
    char cut[24];
    snprintf(cut, sizeof cut, "%lld", (long long)(q->clock(q->clock_ud) - q->ttl_ms));
    const char *vals[1] = {cut};
    PGresult *r;
    int rc = run(q, Q_PURGE, 1, vals, &r, "purge", "*", err);
    if (!rc && removed)
        *removed = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rc;
}

int sift_session_pg_open(const char *url, const sift_session_pg_opts *opts,
                         sift_session_store **out, sift_err *err)
{
    sift_session_pg_opts o = {0};
    if (opts)
        o = *opts;
    if (!out || !url || !*url)
        return sift_err_set(err, SIFT_EINVAL, "session store: no database URL");
    *out = NULL;
    if (o.ttl_ms < 0)
        return sift_err_set(err, SIFT_EINVAL, "session store: ttl_ms must not be negative");
    pg_sessions *q = sift_calloc(1, sizeof(*q));
    if (!q)
        return sift_err_set(err, SIFT_ENOMEM, "session store: out of memory");
    q->base.ops = &pg_ops;
    q->ttl_ms = o.ttl_ms;
    q->clock = o.clock ? o.clock : wall_ms;
    q->clock_ud = o.clock ? o.clock_ud : NULL;
    sift_pg_url_mask(url, q->where, sizeof q->where);
    int rc;
    if ((rc = sift_pg_connect(url, &q->conn, err)) ||
        (rc = sift_pg_schema_check(q->conn, q->where, err)) || (rc = prepare(q, err)))
        goto fail;
    *out = &q->base;
    return 0;
fail:
    pg_close(&q->base);
    return rc;
}
