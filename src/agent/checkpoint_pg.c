/* Graph checkpoints in PostgreSQL: the checkpoints table of a migrated
 * database (pg_schema.c), with the SQLite checkpointer's semantics.
 *
 * The checkpointer interface is synchronous (graph.h), so each call is one
 * blocking round trip: fine for the CLI, tests and a thread-pool worker, not
 * for a loop serving other runs (an asynchronous checkpointer would go
 * through the pool in pgpool.h). A connection found dead is re-established
 * and the call retried once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/graph.h"
#include "sift/pgstore.h"

struct pg_cp {
    sift_checkpointer base;
    PGconn *conn;
    int prepared;
    char where[512];
};

static int fail(struct pg_cp *s, const char *what, sift_err *err)
{
    char msg[SIFT_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
    msg[strcspn(msg, "\n")] = '\0';
    return sift_err_set(err, SIFT_EIO, "checkpoints: %s (%s): %s", what, s->where, msg);
}

static int prepare(struct pg_cp *s, sift_err *err)
{
    if (PQstatus(s->conn) != CONNECTION_OK) {
        PQreset(s->conn);
        s->prepared = 0;
        if (PQstatus(s->conn) != CONNECTION_OK)
            return fail(s, "cannot reconnect", err);
    }
    if (s->prepared)
        return 0;
    /* Replacing the row with the same step, as INSERT OR REPLACE does. */
    PGresult *r = PQprepare(s->conn, "sift_cp_put",
                            "INSERT INTO checkpoints (thread_id, step, next, state, created_at)"
                            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (thread_id, step) DO UPDATE"
                            " SET next = excluded.next, state = excluded.state,"
                            " created_at = excluded.created_at",
                            0, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (ok) {
        r = PQprepare(s->conn, "sift_cp_get",
                      "SELECT step, next, state FROM checkpoints WHERE thread_id = $1"
                      " ORDER BY step DESC LIMIT 1",
                      0, NULL);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok)
        return fail(s, "cannot prepare", err);
    s->prepared = 1;
    return 0;
}

/* Runs a prepared statement; a dead connection (server restarted) is
 * re-established and the statement tried once more: both are idempotent. */
static PGresult *exec(struct pg_cp *s, const char *name, int n, const char *const *vals)
{
    PGresult *r = PQexecPrepared(s->conn, name, n, vals, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_FATAL_ERROR && PQstatus(s->conn) == CONNECTION_BAD) {
        sift_err ignored = {0};
        PQclear(r);
        if (prepare(s, &ignored))
            return NULL; /* PQerrorMessage says why */
        r = PQexecPrepared(s->conn, name, n, vals, NULL, NULL, 0);
    }
    return r;
}

static int cp_put(sift_checkpointer *cp, const char *thread_id, const sift_checkpoint *c,
                  sift_err *err)
{
    struct pg_cp *s = (struct pg_cp *)cp;
    int rc = prepare(s, err);
    if (rc)
        return rc;
    char step[24], now[24];
    snprintf(step, sizeof step, "%lld", (long long)c->step);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *vals[5] = {thread_id, step, c->next, c->state, now};
    PGresult *r = exec(s, "sift_cp_put", 5, vals);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char what[160];
        snprintf(what, sizeof what, "cannot save step %lld of thread \"%s\"", (long long)c->step,
                 thread_id);
        rc = fail(s, what, err);
    }
    PQclear(r);
    return rc;
}

static int cp_get_latest(sift_checkpointer *cp, const char *thread_id, sift_checkpoint *out,
                         sift_err *err)
{
    struct pg_cp *s = (struct pg_cp *)cp;
    memset(out, 0, sizeof(*out));
    int rc = prepare(s, err);
    if (rc)
        return rc;
    const char *vals[1] = {thread_id};
    PGresult *r = exec(s, "sift_cp_get", 1, vals);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char what[160];
        snprintf(what, sizeof what, "cannot read thread \"%s\"", thread_id);
        rc = fail(s, what, err);
    } else if (PQntuples(r) == 0) {
        rc = sift_err_set(err, SIFT_ENOTFOUND, "checkpoints: thread \"%s\" has no checkpoint",
                          thread_id);
    } else {
        out->step = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        out->next = sift_strdup(PQgetvalue(r, 0, 1));
        out->state = sift_strdup(PQgetvalue(r, 0, 2));
        if (!out->next || !out->state) {
            sift_checkpoint_clear(out);
            rc = sift_err_set(err, SIFT_ENOMEM, "checkpoints: out of memory");
        }
    }
    PQclear(r);
    return rc;
}

static void cp_close(sift_checkpointer *cp)
{
    struct pg_cp *s = (struct pg_cp *)cp;
    if (s->conn)
        PQfinish(s->conn);
    sift_free(s);
}

static const sift_checkpointer_ops pg_ops = {
    .put = cp_put, .get_latest = cp_get_latest, .close = cp_close};

sift_checkpointer *sift_checkpointer_pg_open(const char *url, sift_err *err)
{
    struct pg_cp *s = sift_calloc(1, sizeof(*s));
    if (!s) {
        sift_err_set(err, SIFT_ENOMEM, "checkpoints: out of memory");
        return NULL;
    }
    s->base.ops = &pg_ops;
    sift_pg_url_mask(url, s->where, sizeof s->where);
    if (sift_pg_connect(url, &s->conn, err) || sift_pg_schema_check(s->conn, s->where, err) ||
        prepare(s, err)) {
        cp_close(&s->base);
        return NULL;
    }
    return &s->base;
}
