/* An asynchronous PostgreSQL connection pool on one uv loop (libpq's async API).
 *
 * One pool per worker loop: every function here is called on the pool's loop
 * thread and nothing takes a lock. Connections are opened lazily, at most
 * `size` of them, with PQconnectStart/PQconnectPoll driven by uv_poll on
 * PQsocket, then switched to non-blocking mode. Statements are registered on
 * the pool once (sift_pgpool_prepare) and prepared on each connection the
 * first time it runs them (PQsendPrepare, once per connection).
 *
 * Pipelining. Each query is sent as PQsendQueryPrepared followed by its own
 * PQpipelineSync, with the connection in pipeline mode (libpq 14+), so up to
 * `pipeline_depth` queries ride one connection without waiting for each
 * other's round trip, and an error in one query does not abort the next (each
 * has its own sync point). A connection takes a new query when it has fewer
 * than pipeline_depth in flight; idle connections are preferred, and a new
 * connection is opened before an existing one is pipelined deeper. Queries
 * submitted outside the pool's own callbacks are sent in the loop's check
 * phase, after that iteration's I/O: together, and never on a connection the
 * server has closed meanwhile.
 *
 * Loop liveness. An idle open connection does not keep the loop alive (its
 * poll handle is unref'd while nothing is on the wire), so uv_run returns
 * when the work is done; the socket is still watched whenever the loop runs.
 *
 * Queueing. When every connection is at its depth, a query waits in a FIFO
 * queue: at most `queue_max` waiting (beyond that sift_pgpool_query returns
 * SIFT_EBUSY at once), each for at most `queue_timeout_ms` (then its callback
 * gets SIFT_ETIMEDOUT "PostgreSQL pool: no connection free within N ms").
 *
 * Cancellation. A query is bound to a sift_ctx. When the ctx is done (run
 * cancelled, deadline passed) the callback is called at once with the ctx's
 * code and message. A query still queued is simply dropped. A query already
 * sent is abandoned: its result, when it comes, is discarded; and when it is
 * the one the server is running (the head of its connection's pipeline), a
 * cancel request is sent to the server. PQcancel blocks (it opens a new
 * connection to the server), so it runs on the uv thread pool, with its own
 * PGcancel object (thread-safe by libpq's contract), never on the loop. The
 * connection stays in the pool: the server answers the cancelled query with
 * an error and the connection carries on. A cancel request can arrive late
 * and hit the next query in the pipeline; a query that fails with
 * query_canceled (57014) on a connection that was sent a cancel, and was not
 * cancelled itself, is retried (up to 3 times). When the cancel request
 * cannot be sent, the connection is discarded (its other queries fail as
 * connection lost).
 *
 * Broken connections. A connection whose socket fails (server restart,
 * network) fails every query it carries with SIFT_EIO "PostgreSQL connection
 * lost: <libpq's message>", is closed, and is replaced on demand. Connection
 * attempts after a failure are spaced by an exponential backoff
 * (backoff_min_ms doubling up to backoff_max_ms, reset by a successful
 * connection); queued queries wait (within their queue timeout) meanwhile.
 *
 * DNS. libpq would resolve a host name inside PQconnectStart, blocking the
 * loop. So before each connection attempt the pool resolves the names in
 * `host` (from conninfo, else PGHOST; every name of a comma-separated list)
 * with uv_getaddrinfo on the uv thread pool, and starts libpq with the
 * addresses as `hostaddr` (all addresses of a name, tried in turn; `host`
 * kept for TLS verification and .pgpass). Numeric hosts, Unix-socket
 * directories and a conninfo that gives hostaddr are passed as they are.
 * Nothing is cached: each attempt resolves afresh. A name that does not
 * resolve fails the attempt ("PostgreSQL connect failed: cannot resolve host
 * "x": ..."), which goes through the backoff below; the connect timeout
 * covers resolving. Not covered: a host given only through a service file
 * (service=), which libpq still resolves itself.
 *
 * Tested on plain TCP (loopback) only; TLS (sslmode=require) has not been
 * exercised with this pool yet.
 *
 * Closing. sift_pgpool_close fails everything queued or in flight with
 * SIFT_ECANCELED, sends a cancel request for each statement still running
 * (a backend notices a closed client only when it next writes), and closes
 * every handle; the memory is released from the last close callback, so run
 * the loop afterwards (uv_run) until it is. */
#ifndef SIFT_PGPOOL_H
#define SIFT_PGPOOL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/ctx.h"
#include "sift/err.h"

typedef struct sift_pgpool sift_pgpool;

/* Parameters of one query at most. */
#define SIFT_PGPOOL_PARAMS_MAX 16
/* Statements registered on one pool at most. */
#define SIFT_PGPOOL_STMTS_MAX 32

/* Zero-initialise, then set what you need; 0 means the default. */
typedef struct sift_pgpool_opts {
    const char *conninfo;   /* postgres:// URL or "key=value ..." string; required */
    size_t size;            /* connections open at most; default 4 */
    size_t pipeline_depth;  /* queries in flight per connection; default 8; 1: no pipelining */
    size_t queue_max;       /* queries waiting for a connection at most; default 10000 */
    int queue_timeout_ms;   /* longest wait in the queue; default 5000 */
    int connect_timeout_ms; /* one connection attempt at most; default 5000 */
    int backoff_min_ms;     /* first wait before reconnecting after a failure; default 100 */
    int backoff_max_ms;     /* longest wait between attempts; default 5000 */
} sift_pgpool_opts;

/* Counters, for tests and metrics. */
typedef struct sift_pgpool_stats {
    size_t conns;       /* connections open or being opened */
    size_t conns_ready; /* of which connected */
    size_t queued;      /* queries waiting for a connection */
    size_t inflight;    /* queries sent and not yet answered (abandoned ones included) */
    uint64_t connects;  /* successful connections since the pool was made */
    uint64_t connect_failures;
    uint64_t conns_lost;   /* connections that broke while open */
    uint64_t cancels_sent; /* cancel requests sent to the server */
    uint64_t retries;      /* queries retried after a stray cancel */
} sift_pgpool_stats;

/* The outcome of a query, called exactly once, on the loop, never from inside
 * sift_pgpool_query. On success `res` is the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK), owned by the pool and cleared after the callback
 * returns, and err is NULL. On failure `res` is NULL and `err` says why:
 * SIFT_EIO (connection lost, or the server's error message with its
 * SQLSTATE), SIFT_ETIMEDOUT (queue timeout), SIFT_ECANCELED (pool closed), or
 * the ctx's code and message when the ctx was done first. */
typedef void (*sift_pgpool_cb)(void *data, const PGresult *res, const sift_err *err);

/* A pool on `loop`. Checks the options and copies conninfo; connects nothing
 * yet. SIFT_EINVAL (conninfo missing or unparsable, option out of range),
 * SIFT_ENOMEM. */
int sift_pgpool_new(uv_loop_t *loop, const sift_pgpool_opts *opts, sift_pgpool **out,
                    sift_err *err);

/* Registers a statement: `sql` with $1..$nparams placeholders (text
 * parameters; cast in SQL, e.g. $1::bigint). Returns its id (>= 0) for
 * sift_pgpool_query, or SIFT_EINVAL (too many statements or parameters),
 * SIFT_ENOMEM. Register statements before the first query. */
int sift_pgpool_prepare(sift_pgpool *p, const char *sql, int nparams, sift_err *err);

/* Runs statement `stmt` with `nparams` text values (NULL entries are SQL
 * NULL; the values are copied), bound to `ctx`, and calls cb(data, ...) once
 * when done. Returns 0 when the query was accepted (queued or sent): cb will
 * be called later. Otherwise returns, and cb is never called: SIFT_EINVAL
 * (unknown statement, wrong parameter count), SIFT_EBUSY (queue full: "N
 * queries waiting"), SIFT_ESTATE (pool closing), SIFT_ENOMEM, or the ctx's
 * code when it is already done. */
int sift_pgpool_query(sift_pgpool *p, sift_ctx *ctx, int stmt, int nparams,
                      const char *const *values, sift_pgpool_cb cb, void *data, sift_err *err);

/* The pool's counters now. */
void sift_pgpool_get_stats(const sift_pgpool *p, sift_pgpool_stats *out);

/* The pool's loop. */
uv_loop_t *sift_pgpool_loop(const sift_pgpool *p);

/* Fails every queued and in-flight query (SIFT_ECANCELED, "PostgreSQL pool
 * closed"), closes the connections and handles, and frees the pool once the
 * last handle has closed (keep running the loop). NULL is a no-op. */
void sift_pgpool_close(sift_pgpool *p);

/* True when `s` names a PostgreSQL database (postgres:// or postgresql://). */
int sift_pgpool_is_url(const char *s);

#endif
