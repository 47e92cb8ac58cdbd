/* Session stores for an event loop: every load and save runs on the libuv
 * thread pool, and its result comes back on the loop that asked.
 *
 * The session stores (session.h) block: SQLite does file I/O, PostgreSQL a
 * network round trip. A pool keeps a free list of store objects, each with
 * its own connection, and a call on a pool thread takes one, uses it alone
 * and gives it back. A store object is opened on the first call that finds
 * the list empty, so there are never more objects than calls that ran at
 * once, which is at most the number of libuv pool threads (UV_THREADPOOL_SIZE,
 * 4 by default): a pool thread never waits for a connection. The memory
 * store is thread-safe, so a pool over it shares one object.
 *
 * Which store (sift.yaml "sessions", read by sift_session_config_read):
 *   sessions:
 *     store: auto      # auto (the default): where store.url is, SQLite or
 *                      # PostgreSQL; or memory, sqlite, postgres
 *     url: ...         # sqlite/postgres: the file or URL; default store.url
 *     ttl_ms: 0        # 0: sessions never expire; else expired rows are
 *                      # deleted by a save, at most once per min(TTL, 10 min)
 *     timeout_ms: 5000 # how long one load or save may wait for the store
 *                      # (a locked SQLite file, a PostgreSQL lock or slow query)
 *     max_bytes: 0     # memory: 0 is 64 MB
 *     max_sessions: 0  # memory: 0 is no limit besides max_bytes
 *
 * Concurrent turns of one session. A save after a run that loaded the
 * session merges: on the pool thread it reads the session again, and if it
 * is no longer what the run loaded (another run, on this server or another,
 * saved in between), it stores what is there now followed by this run's turn
 * (its last user message and everything after it), instead of replacing it.
 * So two turns answered at once on two servers are both kept, in the order
 * their saves finished. The write is a compare-and-set
 * (sift_session_save_if): it happens only if the session is still what was
 * just read, so a save landing between the read and the write makes this one
 * read again and merge again (up to 4 times; then, since the stored text is
 * evidently not in sift's form, it replaces). A store without save_if writes
 * unconditionally. A save of a run that did not load (the OpenAI-compatible
 * route, whose client sends the whole conversation) replaces the session. */
#ifndef SIFT_SESSION_POOL_H
#define SIFT_SESSION_POOL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/err.h"
#include "sift/model.h"
#include "sift/session.h"

/* ---- configuration ----------------------------------------------------- */

typedef struct sift_session_config {
    char *backend; /* "memory", "sqlite" or "postgres" (auto resolved) */
    char *url;     /* sqlite: the file; postgres: the URL; memory: NULL */
    int64_t ttl_ms;
    int timeout_ms;      /* sqlite: busy timeout; postgres: statement_timeout; 0: 5000 */
    size_t max_bytes;    /* memory only */
    size_t max_sessions; /* memory only */
} sift_session_config;

/* Reads the "sessions" section of `doc` (the configuration's JSON document,
 * config.h; NULL: none) with `store_url` (store.url) for store: auto and as
 * the default url. `name` is the file's name in messages: "sift.yaml:
 * sessions.store: must be one of auto, memory, sqlite, postgres". SIFT_EINVAL,
 * SIFT_ENOMEM. Free with sift_session_config_free. */
int sift_session_config_read(const cJSON *doc, const char *name, const char *store_url,
                             sift_session_config *c, sift_err *err);

/* Frees what sift_session_config_read allocated. */
void sift_session_config_free(sift_session_config *c);

/* ---- the pool ---------------------------------------------------------- */

typedef struct sift_session_pool sift_session_pool;

/* Opens one store object (called on pool threads, and once by
 * sift_session_pool_new on the caller's thread). */
typedef int (*sift_session_open_fn)(void *ud, sift_session_store **out, sift_err *err);

typedef struct sift_session_pool_opts {
    sift_session_open_fn open;
    void *open_ud;
    bool shared; /* one object serves every call: the store is thread-safe (memory) */
} sift_session_pool_opts;

/* A pool over the stores `opts->open` makes. Opens one store at once, so a
 * wrong URL, a missing migration or an unwritable file fails here, at
 * start-up, with the store's message. SIFT_EINVAL, SIFT_ENOMEM, or the
 * open function's error. */
int sift_session_pool_new(const sift_session_pool_opts *opts, sift_session_pool **out,
                          sift_err *err);

/* A pool over the store `c` describes (memory, SQLite or PostgreSQL). Errors
 * as sift_session_pool_new; the pool keeps its own copy of `c`. */
int sift_session_pool_open(const sift_session_config *c, sift_session_pool **out, sift_err *err);

/* "memory", "sqlite", "postgres", or the store's ops->kind for a custom one. */
const char *sift_session_pool_kind(const sift_session_pool *p);

/* Closes every store object and frees the pool. No call may be in flight.
 * NULL is a no-op. */
void sift_session_pool_free(sift_session_pool *p);

/* ---- calls ------------------------------------------------------------- */

typedef struct sift_session_op sift_session_op;

/* Called on the loop when a call has finished (op->rc says how). */
typedef void (*sift_session_done_fn)(sift_session_op *op);

/* One call in flight, embedded in its caller's object (get back to it with
 * container_of). Zero it once (or sift_session_op_init); the same op may be
 * used for a load and then a save, never for two calls at once. */
struct sift_session_op {
    uv_work_t work; /* private */
    sift_session_pool *pool;
    int kind;
    char id[SIFT_SESSION_ID_MAX + 1];
    sift_conv *conv;
    sift_session_done_fn done;
    uint64_t queued_ns; /* uv_hrtime() when the call was submitted (for latency metrics) */
    char *base;         /* private: the loaded conversation as JSON, for the merge */
    bool loaded;        /* a load succeeded: the next save merges */
    /* results, valid in done */
    int rc;       /* 0, SIFT_ECANCELED (sift_session_op_cancel), or the store's error */
    sift_err err; /* the message when rc != 0 */
    bool found;   /* load: the session existed */
    bool merged;  /* save: another turn had been saved since the load, and was kept */
};

/* Loads session `id` on a pool thread, appending it to `conv` (as
 * sift_session_load). Until `done` runs, conv and its arena belong to the
 * pool thread: the caller must not touch them. Returns 0 (done will be
 * called exactly once, on `loop`), or SIFT_EINVAL (bad id) / SIFT_EBUSY
 * (another call in flight on op) without calling done. */
int sift_session_pool_load(sift_session_pool *p, uv_loop_t *loop, sift_session_op *op,
                           const char *id, sift_conv *conv, sift_session_done_fn done,
                           sift_err *err);

/* Saves conv as session `id` on a pool thread: replacing it, or, when op's
 * last load succeeded, merging as the header comment says. The caller must
 * not change conv until `done`. Returns like sift_session_pool_load. */
int sift_session_pool_save(sift_session_pool *p, uv_loop_t *loop, sift_session_op *op,
                           const char *id, const sift_conv *conv, sift_session_done_fn done,
                           sift_err *err);

/* Cancels a call that has not started on a pool thread yet: its done then
 * runs with SIFT_ECANCELED. A call already running finishes normally (it is
 * short). Either way done runs once, so the caller frees its object there. */
void sift_session_op_cancel(sift_session_op *op);

/* True from a successful load/save call until its done has returned. */
bool sift_session_op_pending(const sift_session_op *op);

/* Frees what an op holds between calls (the loaded conversation's JSON).
 * Not while pending. */
void sift_session_op_reset(sift_session_op *op);

#endif
