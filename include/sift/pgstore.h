/* PostgreSQL: the schema, its migrations, and the synchronous store backends
 * (catalog store, session store, graph checkpoints) over libpq.
 *
 * The schema lives in src/catalog/pg_schema.c as numbered migrations, applied
 * in order by sift_pg_migrate (`sift migrate`), each in its own transaction,
 * recorded in schema_migrations(version, applied_at). Tables (migration 1):
 *   products    one row per SKU ever seen, live or tombstoned (deleted);
 *               unique on lower(sku): SKUs compare case-insensitively
 *   chunks      one row per live product (id = products.id): the atomic chunk
 *               and a tsvector of its fields, weighted, under a GIN index
 *   inventory   (lower(sku), warehouse) -> quantity, version, updated_at
 *   prices      (lower(sku), currency, valid_from) -> amount_minor, version
 *   warehouses  codes seen in inventory
 *   sessions    id -> conversation JSON, updated_at (ms since the epoch)
 *   checkpoints (thread_id, step) -> next, state, created_at
 * The volatile tables (inventory, prices, warehouses) are also read by the
 * shop tools through the asynchronous pool (pgpool.h, shoptools.h), which
 * writes nothing.
 *
 * The synchronous backends here block on the network: use them from the CLI,
 * the loader, tests and thread-pool workers, never on an event loop.
 *
 * URLs are libpq connection URIs (postgres:// or postgresql://). A password
 * in a URL is never printed: every message shows the URL through
 * sift_pg_url_mask. */
#ifndef SIFT_PGSTORE_H
#define SIFT_PGSTORE_H

#include <libpq-fe.h>
#include <stddef.h>

#include "sift/err.h"
#include "sift/graph.h"
#include "sift/session.h"
#include "sift/store.h"

/* The schema version this binary was built for: the number of the last
 * migration in pg_schema.c. */
#define SIFT_PG_SCHEMA_VERSION 1

/* 1 when `s` starts with postgres:// or postgresql:// (case-insensitive). */
int sift_pg_is_url(const char *s);

/* Writes `url` to out[0..cap) with any password replaced by "***", so it can
 * be logged: "postgres://sift:***@db:5432/sift". Also masks password=...
 * query parameters. Always NUL-terminates (cap > 0); truncates if needed. */
void sift_pg_url_mask(const char *url, char *out, size_t cap);

/* Connects (blocking) to `url` and returns the connection in *out, with
 * client_encoding UTF8, a 10 s connect timeout unless the URL sets one, and
 * server notices discarded. On failure, a message that says what to do: the
 * server is not reachable, the password was refused, the database does not
 * exist (create it), with the URL masked. SIFT_EINVAL for a malformed URL,
 * SIFT_EIO otherwise, SIFT_ENOMEM. */
int sift_pg_connect(const char *url, PGconn **out, sift_err *err);

/* Applies the migrations `url`'s database lacks, in order, each in its own
 * transaction under an advisory lock (two `sift migrate` at once are safe).
 * Idempotent: on an up-to-date database it changes nothing. *from and *to
 * (either may be NULL) receive the schema version before and after.
 * SIFT_EINVAL when the database has a schema newer than this binary's (use a
 * newer sift); SIFT_EIO for connection and SQL failures. */
int sift_pg_migrate_ex(const char *url, int *from, int *to, sift_err *err);

/* sift_pg_migrate_ex without the versions. */
int sift_pg_migrate(const char *url, sift_err *err);

/* Checks that `conn`'s database has exactly this binary's schema version: 0;
 * SIFT_ESTATE with "run sift migrate" when it has none or an older one;
 * SIFT_EINVAL when it is newer; SIFT_EIO. `what` names the database in
 * messages (a masked URL). */
int sift_pg_schema_check(PGconn *conn, const char *what, sift_err *err);

/* ---- catalog store ----------------------------------------------------- */

/* PostgreSQL store options. Zero-initialise. */
typedef struct sift_store_pg_opts {
    int readonly; /* a read-only session (default_transaction_read_only) */
} sift_store_pg_opts;

/* Opens the PostgreSQL store at `url`: connects, checks the schema (it must
 * have been migrated: `sift migrate`), prepares the statements. Same
 * semantics as the SQLite store (store.h), versions and tombstones included;
 * sift_store_backend says "postgres". `opts` may be NULL. Errors as
 * sift_pg_connect and sift_pg_schema_check. */
int sift_store_pg_open(const char *url, const sift_store_pg_opts *opts, sift_store **out,
                       sift_err *err);

/* ---- sessions ---------------------------------------------------------- */

typedef struct sift_session_pg_opts {
    int64_t ttl_ms;           /* 0: no expiry; else sessions not saved for longer load as empty */
    sift_session_clock clock; /* NULL: wall-clock ms since the epoch */
    void *clock_ud;
} sift_session_pg_opts;

/* A session store in the sessions table of `url`'s database (migrated), with
 * the semantics of the SQLite one (session.h). One connection per store
 * object, not locked: one object per thread. `opts` may be NULL. */
int sift_session_pg_open(const char *url, const sift_session_pg_opts *opts,
                         sift_session_store **out, sift_err *err);

/* Deletes the sessions expired under the TTL; *removed (may be NULL) gets
 * the count. `s` must be a PostgreSQL session store. SIFT_EIO. */
int sift_session_pg_purge(sift_session_store *s, size_t *removed, sift_err *err);

/* ---- graph checkpoints ------------------------------------------------- */

/* A checkpointer in the checkpoints table of `url`'s database (migrated),
 * with the semantics of sift_checkpointer_sqlite_open. NULL on error. */
sift_checkpointer *sift_checkpointer_pg_open(const char *url, sift_err *err);

#endif
