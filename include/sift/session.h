/* Session stores: where a conversation waits between turns.
 *
 * A session is a conversation under an id chosen by the client. Before a run
 * the server loads it, after the run it saves the whole conversation back
 * (replacing what was stored, or, with sift_session_save_if, only if it is
 * still what was loaded). Every store keeps the conversation in the JSON
 * form of sift_memory_to_json, so a session written by one store can be read
 * by another, and loading checks it like any untrusted input.
 *
 * Stores implement one interface (a vtable); call them through the
 * sift_session_* functions, which check the id first:
 *   - memory (sift_session_mem_new): an LRU cache in the process, capped in
 *     bytes and sessions, shared by all worker threads (it locks a mutex);
 *   - SQLite (sift_session_sqlite_open): a table in a database file, one
 *     connection per store object; use one object per thread.
 *
 * The calls block (the SQLite store does file I/O): from an event loop, run
 * them on the thread pool.
 *
 * Session ids are 1 to 128 bytes of [A-Za-z0-9_.:-]; anything else is
 * SIFT_EINVAL, so an id is always safe to log and to use as a key. */
#ifndef SIFT_SESSION_H
#define SIFT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sift/err.h"
#include "sift/model.h"

#define SIFT_SESSION_ID_MAX 128

typedef struct sift_session_store sift_session_store;

/* What a store implements. Ids reaching these are already valid. */
typedef struct sift_session_ops {
    const char *kind; /* "memory", "sqlite", ... for logs */
    int (*load)(sift_session_store *s, const char *id, sift_conv *out, bool *found, sift_err *err);
    int (*save)(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                sift_err *err);
    int (*remove)(sift_session_store *s, const char *id, sift_err *err);
    void (*close)(sift_session_store *s);
    /* Optional (NULL: the store cannot): sift_session_save_if. */
    int (*save_if)(sift_session_store *s, const char *id, const char *expect,
                   const sift_message *msgs, size_t n, bool *saved, sift_err *err);
} sift_session_ops;

/* The base every store embeds first. */
struct sift_session_store {
    const sift_session_ops *ops;
};

/* Milliseconds from some clock, for TTLs; tests pass a fake one. */
typedef int64_t (*sift_session_clock)(void *ud);

/* 0 when `id` is a valid session id, else SIFT_EINVAL with a message that
 * says what is wrong (empty, too long, which byte is not allowed). */
int sift_session_id_check(const char *id, sift_err *err);

/* Appends the stored conversation of session `id` to `out` (its copies go to
 * out's arena). An unknown or expired session is not an error: nothing is
 * appended and *found (may be NULL) is false. SIFT_EINVAL for a bad id,
 * SIFT_EPROTO when the stored data is corrupt (the message names the session
 * and the bad field; `out` is unchanged), SIFT_EIO for a storage failure,
 * SIFT_ENOMEM. */
int sift_session_load(sift_session_store *s, const char *id, sift_conv *out, bool *found,
                      sift_err *err);

/* Stores msgs[0..n) as the whole conversation of `id`, replacing any earlier
 * one. SIFT_EINVAL for a bad id or a message that does not fit its role,
 * SIFT_ETOOBIG when the conversation alone is over the store's size cap,
 * SIFT_EIO, SIFT_ENOMEM. On failure the stored session is unchanged. */
int sift_session_save(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                      sift_err *err);

/* A compare-and-set save: stores msgs[0..n) as the conversation of `id` only
 * if what is stored now is `expect`, the JSON text sift_memory_to_json makes
 * of the conversation a load returned, or, with `expect` NULL, if there is no
 * live session (none, or expired under the TTL). One atomic step in the
 * store, so of two writers that loaded the same conversation only one
 * succeeds. *saved says whether it saved (0 is returned either way).
 * SIFT_EINVAL when the store has no save_if (check ops->save_if), or as
 * sift_session_save. */
int sift_session_save_if(sift_session_store *s, const char *id, const char *expect,
                         const sift_message *msgs, size_t n, bool *saved, sift_err *err);

/* Forgets session `id`; deleting an unknown session is not an error. */
int sift_session_delete(sift_session_store *s, const char *id, sift_err *err);

/* Closes the store and frees it. NULL is a no-op. */
void sift_session_close(sift_session_store *s);

/* ---- in-memory LRU ----------------------------------------------------- */

typedef struct sift_session_mem_opts {
    size_t max_bytes;         /* 0: 64 MB. Stored JSON + id + per-entry overhead */
    size_t max_sessions;      /* 0: no limit besides max_bytes */
    int64_t ttl_ms;           /* 0: no expiry; else sessions idle longer load as empty */
    sift_session_clock clock; /* NULL: CLOCK_MONOTONIC */
    void *clock_ud;
} sift_session_mem_opts;

/* An in-memory store. Load and save each count as a use; when a save takes
 * the store past a cap, the least recently used sessions are evicted until it
 * fits. Get and put are O(1) (a hash map over a doubly-linked list in use
 * order). Thread-safe: one mutex, held only for map work and copies, never
 * while parsing or serialising. `opts` may be NULL. SIFT_ENOMEM. */
int sift_session_mem_new(const sift_session_mem_opts *opts, sift_session_store **out,
                         sift_err *err);

/* Sessions held and bytes charged, for metrics and tests. `s` must be a
 * memory store. */
void sift_session_mem_stats(sift_session_store *s, size_t *sessions, size_t *bytes);

/* ---- SQLite ------------------------------------------------------------ */

typedef struct sift_session_sqlite_opts {
    int64_t ttl_ms;           /* 0: no expiry; else sessions not saved for longer load as empty */
    int busy_timeout_ms;      /* 0: 5000 */
    sift_session_clock clock; /* NULL: wall-clock ms since the epoch (stored, so it must be) */
    void *clock_ud;
} sift_session_sqlite_opts;

/* Opens (creating if needed) the database file `path` in WAL mode with the
 * table sessions(id TEXT PRIMARY KEY, messages TEXT, updated_at INTEGER ms).
 * The store owns one connection and its prepared statements; it is not
 * locked, so use one store object per thread (several objects on one file
 * are fine: WAL lets readers and a writer work at once, and a writer waits
 * up to busy_timeout_ms for another). `opts` may be NULL. SIFT_EIO with
 * SQLite's message, SIFT_ENOMEM. */
int sift_session_sqlite_open(const char *path, const sift_session_sqlite_opts *opts,
                             sift_session_store **out, sift_err *err);

/* Deletes the sessions that have expired under the TTL and returns how many
 * in *removed (may be NULL); with no TTL it removes nothing. `s` must be a
 * SQLite store. SIFT_EIO. */
int sift_session_sqlite_purge(sift_session_store *s, size_t *removed, sift_err *err);

#endif
