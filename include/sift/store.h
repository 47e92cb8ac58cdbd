/* The catalog store: products, chunks and their full-text index, inventory and
 * prices, behind one interface so SQLite (embedded, the default) and
 * PostgreSQL (later) are interchangeable.
 *
 * Threading: a sift_store is one connection, used by one thread at a time; it
 * is synchronous. Open one per thread that needs it (SQLite in WAL mode lets
 * readers run beside the single writer). On a uv loop, calls go to the thread
 * pool through a small async layer (uv_queue_work), and each call is short
 * and bounded: no call scans the catalog, search_fts bounds its work. A
 * backend with a native async API (libpq) will get an async variant of these
 * operations; this synchronous interface stays the one the loader and the
 * tests use.
 *
 * Versioning (docs/catalog.md): each product, stock row and price row carries
 * a version. A write applies only when its version is newer than the stored
 * one, so replays and out-of-order delivery converge; a write that does not
 * apply is not an error, it is reported through `applied`. Deletes are
 * tombstones with a version: a delete with version v removes the product from
 * search, a later upsert with version <= v does not bring it back, one with
 * version > v does. At equal versions a delete wins over an upsert, so the
 * outcome does not depend on arrival order. */
#ifndef SIFT_STORE_H
#define SIFT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/err.h"

typedef struct sift_store sift_store;

/* One search result. */
typedef struct sift_hit {
    const char *sku;
    const char *title;
    double score;  /* higher is better; exact SKU matches rank above all others */
    int exact_sku; /* 1 when the query named this SKU exactly (case-insensitive) */
} sift_hit;

/* Called once per live product by sift_store_scan_products. `p` (attributes
 * included) and `chunk_text` (the indexed chunk, sift_chunk's text) are valid
 * during the call only. A non-zero return stops the scan and is returned. */
typedef int (*sift_store_scan_fn)(void *ud, const sift_product *p, const char *chunk_text,
                                  sift_err *err);

/* The backend operations. Every function returns 0 or a negative SIFT_E code
 * with details in err. `applied` (may be NULL) is set to 1 when the write
 * changed the store and 0 when a stored version was newer or equal. Results
 * are allocated from the caller's arena. */
typedef struct sift_store_ops {
    const char *name; /* "sqlite", "postgres" */
    void (*close)(sift_store *s);
    int (*begin)(sift_store *s, sift_err *err);
    int (*commit)(sift_store *s, sift_err *err);
    int (*rollback)(sift_store *s, sift_err *err);
    int (*upsert_product)(sift_store *s, const sift_product *p, int *applied, sift_err *err);
    int (*delete_product)(sift_store *s, const char *sku, int64_t version, int *applied,
                          sift_err *err);
    int (*get_product)(sift_store *s, const char *sku, sift_arena *a, sift_product *out,
                       sift_err *err);
    /* May be NULL (SIFT_ESTATE): a backend without a variants query. */
    int (*list_variants)(sift_store *s, const char *parent_id, size_t max, sift_arena *a,
                         sift_product **out, size_t *n, sift_err *err);
    int (*set_stock)(sift_store *s, const sift_stock *st, int *applied, sift_err *err);
    int (*get_stock)(sift_store *s, const char *sku, const char *warehouse, sift_arena *a,
                     sift_stock **rows, size_t *n, sift_err *err);
    int (*set_price)(sift_store *s, const sift_price *p, int *applied, sift_err *err);
    int (*get_price)(sift_store *s, const char *sku, const char *currency, int64_t at,
                     sift_arena *a, sift_price *out, sift_err *err);
    int (*list_warehouses)(sift_store *s, sift_arena *a, const char ***codes, size_t *n,
                           sift_err *err);
    int (*search_fts)(sift_store *s, const char *query, size_t k, sift_arena *a, sift_hit **hits,
                      size_t *n, sift_err *err);
    /* Added later (may be NULL in a backend without it: SIFT_ESTATE). */
    int (*scan_products)(sift_store *s, sift_store_scan_fn fn, void *ud, sift_err *err);
    /* Optional (NULL: nothing to do); see sift_store_bulk. */
    int (*bulk)(sift_store *s, int on, sift_err *err);
} sift_store_ops;

/* Every backend embeds this as its first member. */
struct sift_store {
    const sift_store_ops *ops;
};

/* SQLite backend options. Zero-initialise, then set what you need. */
typedef struct sift_store_sqlite_opts {
    int readonly;        /* open without write access (search and tool workers) */
    int busy_timeout_ms; /* wait this long for another connection's write lock; 0: 5000 */
} sift_store_sqlite_opts;

/* Opens (creating if needed) the SQLite store at `path` (":memory:" works for
 * tests): WAL journal, synchronous=NORMAL, schema created or checked,
 * statements prepared once and kept for the connection's life. `opts` may be
 * NULL. SIFT_EIO when the file cannot be opened, SIFT_EINVAL when it holds a
 * schema from a newer sift or is not a sift store. */
int sift_store_sqlite_open(const char *path, const sift_store_sqlite_opts *opts, sift_store **out,
                           sift_err *err);

/* Opens the store named by `where`: a postgres:// or postgresql:// URL opens
 * the PostgreSQL store (sift_store_pg_open, pgstore.h; the database must have
 * been migrated with `sift migrate`), anything else is a SQLite path
 * (sift_store_sqlite_open). `readonly` opens it without write access.
 * Errors are the backend's; messages never show a password from a URL. */
int sift_store_open(const char *where, int readonly, sift_store **out, sift_err *err);

/* Closes the store and frees it. NULL is a no-op. An open transaction is
 * rolled back. */
void sift_store_close(sift_store *s);

/* Transactions. Writes outside begin/commit each run in their own implicit
 * transaction (slow in bulk: the loader batches). Nested begin is
 * SIFT_ESTATE. */
int sift_store_begin(sift_store *s, sift_err *err);
int sift_store_commit(sift_store *s, sift_err *err);
int sift_store_rollback(sift_store *s, sift_err *err);

/* Brackets a bulk load: on = 1 before its first transaction, on = 0 after
 * its last (whether it succeeded or not), outside any transaction. A
 * backend may put off its housekeeping until the end: the SQLite store
 * checkpoints its WAL every 256 MB and once at the end instead of every
 * 4 MB, since a checkpoint is an fsync of the WAL and the database. Durability and
 * consistency do not change: each committed transaction is in the WAL, and a
 * process killed mid-load leaves a store holding exactly the committed
 * batches. Returns 0, or the backend's error from the final housekeeping. */
int sift_store_bulk(sift_store *s, int on, sift_err *err);

/* Inserts or replaces a product and its chunk (built with sift_chunk_build)
 * and keeps the full-text index in step, if p->version is newer than the
 * stored version (or tombstone). The product is validated first
 * (SIFT_EINVAL for an invalid SKU or an empty title). */
int sift_store_upsert_product(sift_store *s, const sift_product *p, int *applied, sift_err *err);

/* Records a tombstone for `sku` at `version` and removes the product from
 * search, if version is newer than, or equal to, the stored upsert's. A
 * delete for an unknown SKU still records the tombstone, so an older upsert
 * arriving later stays ignored. */
int sift_store_delete_product(sift_store *s, const char *sku, int64_t version, int *applied,
                              sift_err *err);

/* The stored product; SIFT_ENOTFOUND when unknown or deleted. */
int sift_store_get_product(sift_store *s, const char *sku, sift_arena *a, sift_product *out,
                           sift_err *err);

/* The live products whose parent_id is `parent_id` (the variants of one
 * model: its sizes and colours), in catalog order, at most `max` (capped at
 * SIFT_VARIANTS_MAX), attributes included. One indexed read. An unknown
 * parent gives *n = 0. SIFT_ESTATE when the backend has no such query. */
#define SIFT_VARIANTS_MAX 100
int sift_store_list_variants(sift_store *s, const char *parent_id, size_t max, sift_arena *a,
                             sift_product **out, size_t *n, sift_err *err);

/* Sets the quantity of one SKU in one warehouse (versioned per row). A SKU
 * need not exist yet: stock may arrive before its product. */
int sift_store_set_stock(sift_store *s, const sift_stock *st, int *applied, sift_err *err);

/* Stock rows of `sku`, one per warehouse, ordered by warehouse code, or only
 * `warehouse`'s row when it is not NULL. No rows is not an error (*n = 0). */
int sift_store_get_stock(sift_store *s, const char *sku, const char *warehouse, sift_arena *a,
                         sift_stock **rows, size_t *n, sift_err *err);

/* Sets one price row, keyed by (sku, currency, valid_from), versioned per row. */
int sift_store_set_price(sift_store *s, const sift_price *p, int *applied, sift_err *err);

/* The price of `sku` in `currency` in force at `at` (unix seconds): the row
 * with the latest valid_from <= at. SIFT_ENOTFOUND when there is none. */
int sift_store_get_price(sift_store *s, const char *sku, const char *currency, int64_t at,
                         sift_arena *a, sift_price *out, sift_err *err);

/* Warehouse codes that have ever held stock rows, sorted. */
int sift_store_list_warehouses(sift_store *s, sift_arena *a, const char ***codes, size_t *n,
                               sift_err *err);

/* Full-text search, BM25 over the chunk fields with per-field weights, at most
 * k results (k is capped at 1000). Query words naming a SKU exactly
 * (case-insensitive) put that SKU first. Work is bounded whatever the query:
 * the first 8 distinct query terms, an all-terms (AND) pass first, and,
 * when that finds fewer than k, an any-term (OR) pass over the rarest terms
 * whose documents fit a fixed budget. A pass scores at most 1000 documents;
 * when more match (a query of only common words), the best of the first 1000
 * in index order are returned. An empty query gives no hits. */
int sift_store_search_fts(sift_store *s, const char *query, size_t k, sift_arena *a,
                          sift_hit **hits, size_t *n, sift_err *err);

/* Calls `fn` for every live (not deleted) product, in insertion order (the
 * store's row id), with one SQL statement, so the scan sees one snapshot.
 * This is the one call that walks the whole catalog: it is meant for building
 * in-memory indexes at start-up (sift_searcher_open), not for request paths.
 * Returns 0, fn's non-zero value, or a store error. */
int sift_store_scan_products(sift_store *s, sift_store_scan_fn fn, void *ud, sift_err *err);

/* The backend's name ("sqlite" or "postgres"). */
const char *sift_store_backend(const sift_store *s);

#endif
