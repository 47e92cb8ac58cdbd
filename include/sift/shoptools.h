/* The built-in shop tools: search_products, check_inventory, get_price and
 * list_warehouses, typed tools (tool.h) over the catalog store (store.h).
 *
 * Stock and prices change by the second, so they are never index text: every
 * call reads them live from the store. search_products returns compact atomic
 * chunks (sku, title, brand, category, attributes) and never stock or price.
 *
 * Runtime. A tool call runs on its job's loop (the ctx's loop), but the store
 * is synchronous, so the query goes to the uv thread pool (uv_queue_work) and
 * the job is completed on the loop in the after-work callback. Each call is
 * one short, bounded unit of work (search_products examines at most
 * SIFT_SHOP_CANDIDATES_MAX candidates). The thread pool is process-wide (4
 * threads unless UV_THREADPOOL_SIZE says otherwise, shared with DNS and file
 * I/O), so the read-only SQLite connections are pooled per sift_shop, not per
 * loop: a mutex-protected free list, opened lazily, at most max_conns, each
 * used by one pool thread at a time. One sift_shop may serve many loops.
 *
 * With a searcher whose embedder is remote (search.h), search_products first
 * fetches the query's vector on the job's loop (the curl-on-uv client, under
 * the job's ctx), then queues the search with it, so no pool thread waits on
 * the network. When the provider fails (and the ctx is still live) the search
 * runs lexical-only and a warning is logged; a cancelled or expired ctx ends
 * the job with its code.
 *
 * PostgreSQL. When store_path is a postgres:// URL, check_inventory,
 * get_price and list_warehouses do not use the thread pool: each call is one
 * prepared statement on an asynchronous pool (pgpool.h) of the job's loop,
 * made on the loop's first call (one pool per loop, found without a lock)
 * and closed with sift_shop_loop_close. The ctx cancels the query (the pool
 * sends PostgreSQL a cancel request). Results are byte for byte those of the
 * SQLite path for the same data. search_products keeps the thread-pool path
 * above, over the synchronous PostgreSQL store (pgstore.h).
 *
 * Cancellation. When the job's ctx is cancelled while the query is still
 * queued, the work is uv_cancel'led; when it is already running it finishes
 * and its result is dropped. Either way the job ends at once, from the cancel
 * hook, with the ctx's code and message, and exactly once. The work item owns
 * copies of its arguments and its own memory, so nothing the pool thread
 * reads is freed before the after-work callback (deferred free).
 *
 * Results (what the offline planner, planner.h, reads):
 *   search_products  {"products":[{"sku":"NIKE-PEG40-42","title":"...","brand":"Nike",
 *                     "category":"Footwear > Running > Road",
 *                     "attributes":{"size":"42","colour":"black",...}}],"total":12}
 *                    total: candidates that passed the filters (of those examined)
 *   check_inventory  {"sku":"NIKE-PEG40-42","warehouses":[{"code":"DAD","quantity":0},
 *                     {"code":"HAN","quantity":12},...]}  one entry per known
 *                    warehouse (0 where the SKU has no stock row), or only the
 *                    requested location
 *   get_price        {"sku":"NIKE-PEG40-42","currency":"VND","amount":3290000}
 *                    the price in force now, amount in major units (129.99 USD)
 *   list_warehouses  {"warehouses":[{"code":"HAN","name":"Hanoi"},...]} (name left
 *                    out for a code with no known name)
 * A failure ends the job, as tool.h specifies for every tool, with a negative
 * SIFT_E code and a plain message for the model, never JSON: the tools node
 * (toolsnode.h) wraps it into the tool message {"error":{"code":..,"message":..}}
 * the planner reads. SIFT_ENOTFOUND "no product with sku \"X\"" or
 * "no USD price for sku \"X\""; SIFT_EINVAL with the decoder's message
 * ("location: must be one of HAN, DAD, SGN"); SIFT_EIO and the store's message
 * when the store cannot be read; the ctx's code and message when cancelled.
 *
 * Arguments (JSON Schema from sift_tool_registry_json):
 *   search_products  query (1..256 bytes), k (1..50, default 5), filters:
 *                    {brand, category, size, size_system (EU|US|UK|INT),
 *                     colour (array of alternatives), gender (men|women|kids|unisex),
 *                     price_min, price_max (major units of currency),
 *                     currency (VND|USD, default the shop's), in_stock,
 *                     warehouses (codes; in stock at one of these)}
 *                    (exactly the object sift_query_filters_json writes; every
 *                     member optional, null = absent)
 *   check_inventory  sku (1..64 bytes), location (HAN|DAD|SGN, optional)
 *   get_price        sku, currency (VND|USD, optional: the shop's default)
 *   list_warehouses  no arguments */
#ifndef SIFT_SHOPTOOLS_H
#define SIFT_SHOPTOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "sift/err.h"
#include "sift/pgpool.h"
#include "sift/tool.h"

/* search_products examines this many ranked candidates at most (20 x k, at
 * least 100), so filters apply before truncating to k and the work stays
 * bounded whatever the filters. */
#define SIFT_SHOP_CANDIDATES_MAX 250

typedef struct sift_shop sift_shop;

/* Zero-initialise, then set what you need. */
typedef struct sift_shop_opts {
    const char *store_path; /* SQLite path or postgres:// URL, opened read-only; required */
    /* Connections kept open at most; 0: UV_THREADPOOL_SIZE if set, else 4 (one
     * per pool thread, so a query never waits for a connection). */
    size_t max_conns;
    int busy_timeout_ms;          /* 0: the store's default */
    const char *default_currency; /* get_price and price filters; NULL: "VND" */
    /* Test hook, NULL in production: called on the pool thread just before
     * each query, with work_hook_data (lets a test hold a query "running"). */
    void (*work_hook)(void *data);
    void *work_hook_data;
    /* The hybrid searcher (search.h) search_products draws its candidates
     * from: BM25 and vectors fused, exact SKUs first. NULL: the store's
     * full-text search. It must outlive the shop; it is a snapshot of the
     * catalog taken when it was opened (sift_shop_swap_searcher refreshes). */
    const struct sift_searcher *searcher;
    /* PostgreSQL (store_path is a postgres:// URL): the pool each loop gets
     * (pgpool.h); conninfo is ignored (store_path is used). */
    sift_pgpool_opts pg;
    /* PostgreSQL: 1 runs every tool on the thread pool over the synchronous
     * store (pgstore.h) instead of the loop's pool; for comparisons
     * (bench_pg_inventory). */
    int pg_threadpool;
} sift_shop_opts;

/* Creates a shop context. Opens nothing yet (connections are opened on first
 * use) but checks that `store_path` is set. SIFT_EINVAL, SIFT_ENOMEM. */
int sift_shop_new(const sift_shop_opts *opts, sift_shop **out, sift_err *err);

/* Adds the four tools to `r`. They are owned by `shop` (their udata points to
 * it), so the shop must outlive the registry. SIFT_EINVAL when a name is
 * already taken, SIFT_ENOMEM. */
int sift_shop_tools_register(sift_tool_registry *r, sift_shop *shop, sift_err *err);

/* The shop's tool called `name` ("search_products", ...), or NULL. */
const sift_tool *sift_shop_tool(const sift_shop *shop, const char *name);

/* Replaces the searcher search_products uses with `next` (a fresher
 * snapshot of the catalog), atomically for every thread: a search already
 * running (its query embedding included) finishes on the searcher it started
 * with, the next one uses `next`. The shop owns `next` from then on (closed
 * when replaced and no longer in use, or with the shop); a searcher given in
 * sift_shop_opts stays the caller's. Thread-safe. SIFT_ENOMEM (then `next`
 * is closed). */
int sift_shop_swap_searcher(sift_shop *shop, struct sift_searcher *next, sift_err *err);

/* Tool calls whose work item (or query embedding) has not come back to its
 * loop yet (any loop). */
size_t sift_shop_inflight(const sift_shop *shop);

/* Loops one shop serves with PostgreSQL pools at most (server.workers is at
 * most 1024). */
#define SIFT_SHOP_LOOPS_MAX 1024

/* PostgreSQL: closes the pool of `loop` (see sift_pgpool_close; keep running
 * the loop until its handles have closed). Call it on the loop's thread, for
 * every loop that ran the shop's tools, before sift_shop_free. A no-op for a
 * SQLite shop or a loop without a pool. */
void sift_shop_loop_close(sift_shop *shop, uv_loop_t *loop);

/* PostgreSQL: the counters of `loop`'s pool (sift_pgpool_get_stats), on the
 * loop's thread. SIFT_ENOTFOUND when the loop has no pool (a SQLite shop, no
 * call on that loop yet, or the pool closed). */
int sift_shop_pg_stats(const sift_shop *shop, uv_loop_t *loop, sift_pgpool_stats *out);

/* Closes the connections and frees the shop. Every loop that ran its tools
 * must have finished their calls first (sift_shop_inflight() == 0) and, for
 * PostgreSQL, closed its pool (sift_shop_loop_close): freeing a shop with
 * work in flight or a pool open is a bug and aborts. NULL is a no-op. */
void sift_shop_free(sift_shop *shop);

/* ---- Other store reads on the shop's connections ---- */

struct sift_store;
struct uv_loop_s;

/* Runs on a pool thread with a borrowed read-only connection; returns 0 or a
 * negative SIFT_E code with err set. It must be short and bounded (a few
 * indexed lookups), like the tools' own queries. */
typedef int (*sift_shop_query_fn)(struct sift_store *st, void *ud, sift_err *err);

/* Runs on the loop after the query: code is fn's result (or the error that
 * kept it from running, e.g. SIFT_EIO when no connection could be opened). */
typedef void (*sift_shop_query_done_fn)(void *ud, int code, const sift_err *err);

/* Queues fn on the uv thread pool with one of the shop's pooled connections,
 * then calls done on `loop` exactly once, also during shutdown (the query is
 * not cancellable: it is short, and `ud` must stay valid until done). Counts
 * as in flight (sift_shop_inflight) until done has returned. For reads that
 * are not tools, such as GET /v1/products/{sku}. Returns 0, or SIFT_ENOMEM /
 * SIFT_EINTERNAL (nothing queued, done not called). */
int sift_shop_query(sift_shop *shop, struct uv_loop_s *loop, sift_shop_query_fn fn,
                    sift_shop_query_done_fn done, void *ud, sift_err *err);

#endif
