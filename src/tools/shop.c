/* The built-in shop tools over the catalog store (shoptools.h).
 *
 * One call = one request: the tool function (on the loop) copies its
 * arguments into the request, registers a cancel hook and queues the query on
 * the uv thread pool; the pool thread borrows a read-only connection, runs
 * the bounded query and writes the result JSON into the request; the
 * after-work callback (on the loop) completes the job, unless the job was
 * already ended by cancellation, and frees the request. The request is freed
 * only there, so the pool thread never touches freed memory. */
#include "sift/search.h"
#include "sift/shoptools.h"

#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/ctx.h"
#include "sift/pgpool.h"
#include "sift/log.h"
#include "sift/pgstore.h"
#include "sift/query.h"
#include "sift/store.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

#define WAREHOUSE_CODES "HAN,DAD,SGN"
#define FILTER_COLOURS_MAX 4
#define FILTER_WAREHOUSES_MAX 8
#define RESULT_LIMIT ((size_t)256 * 1024) /* result JSON bytes; 50 chunks fit easily */

/* ---- argument declarations ---- */

#define SEARCH_FILTERS_FIELDS(F)                                                                   \
    F(STRING, brand, "Brand name, as the catalog spells it", SIFT_OPTIONAL, .max_len = 64)         \
    F(STRING, category, "Product type or category path, e.g. running shoes or Footwear > Running", \
      SIFT_OPTIONAL, .max_len = 128)                                                               \
    F(STRING, size, "Size label, e.g. 42 or M", SIFT_OPTIONAL, .max_len = 16)                      \
    F(ENUM, size_system, "Size system of the size", SIFT_OPTIONAL, .values = "EU,US,UK,INT")       \
    F(STRINGS, colour, "Acceptable colours (any of them)", SIFT_OPTIONAL,                          \
      .max_items = FILTER_COLOURS_MAX, .min_len = 1, .max_len = 32)                                \
    F(ENUM, gender, "Who the product is for", SIFT_OPTIONAL, .values = "men,women,kids,unisex")    \
    F(NUMBER, price_min, "Lowest price, in major units of currency", SIFT_OPTIONAL, SIFT_MIN(0))   \
    F(NUMBER, price_max, "Highest price, in major units of currency", SIFT_OPTIONAL, SIFT_MIN(0))  \
    F(ENUM, currency, "Currency of price_min and price_max; VND when not given", SIFT_OPTIONAL,    \
      .values = "VND,USD")                                                                         \
    F(BOOLEAN, in_stock, "Only products in stock", SIFT_OPTIONAL)                                  \
    F(STRINGS, warehouses, "With in_stock: in stock at one of these warehouses (HAN, DAD, SGN)",   \
      SIFT_OPTIONAL, .max_items = FILTER_WAREHOUSES_MAX, .min_len = 1, .max_len = 16)
/* Field order is the schema's order, so the struct is not packed for size. */
SIFT_TOOL_ARGS(shop_search_filters, // NOLINT(clang-analyzer-optin.performance.Padding)
               SEARCH_FILTERS_FIELDS);

#define SEARCH_PRODUCTS_FIELDS(F)                                                                  \
    F(STRING, query, "What the shopper is looking for, in their words, or a SKU", SIFT_REQUIRED,   \
      .min_len = 1, .max_len = 256)                                                                \
    F(OBJECT, filters, "Structured filters", SIFT_OPTIONAL, shop_search_filters)                   \
    F(INTEGER, k, "Number of results; 5 when not given", SIFT_OPTIONAL, SIFT_RANGE(1, 50))
SIFT_TOOL_ARGS(shop_search_args, SEARCH_PRODUCTS_FIELDS);

#define CHECK_INVENTORY_FIELDS(F)                                                                  \
    F(STRING, sku, "Product SKU, as found in search results", SIFT_REQUIRED, .min_len = 1,         \
      .max_len = SIFT_SKU_MAX)                                                                     \
    F(ENUM, location, "Warehouse code; every warehouse when not given", SIFT_OPTIONAL,             \
      .values = WAREHOUSE_CODES)
SIFT_TOOL_ARGS(shop_inventory_args, CHECK_INVENTORY_FIELDS);

#define GET_PRICE_FIELDS(F)                                                                        \
    F(STRING, sku, "Product SKU, as found in search results", SIFT_REQUIRED, .min_len = 1,         \
      .max_len = SIFT_SKU_MAX)                                                                     \
    F(ENUM, currency, "Currency of the price; VND when not given", SIFT_OPTIONAL,                  \
      .values = "VND,USD")
SIFT_TOOL_ARGS(shop_price_args, GET_PRICE_FIELDS);

/* list_warehouses takes no arguments: an object with no fields, which the
 * decoder still checks (any member is an unknown field). SIFT_TOOL_ARGS needs
 * at least one field, so this descriptor is written by hand. */
struct shop_no_args {
    char unused;
};
static const sift_schema shop_no_args__schema = {
    .name = "shop_no_args",
    .size = sizeof(struct shop_no_args),
    .align = _Alignof(struct shop_no_args),
    .fields = NULL,
    .nfields = 0,
};

static void search_products(sift_tool_job *job, const struct shop_search_args *args);
static void check_inventory(sift_tool_job *job, const struct shop_inventory_args *args);
static void get_price(sift_tool_job *job, const struct shop_price_args *args);
static void list_warehouses(sift_tool_job *job, const struct shop_no_args *args);

SIFT_TOOL_DEFINE(search_products,
                 "Searches the catalog. Returns products (sku, title, brand, category, "
                 "attributes), never stock or price: use check_inventory and get_price for those",
                 shop_search_args, search_products);
SIFT_TOOL_DEFINE(check_inventory, "Units in stock of one SKU, at one warehouse or at each",
                 shop_inventory_args, check_inventory);
SIFT_TOOL_DEFINE(get_price, "Current price of one SKU", shop_price_args, get_price);
SIFT_TOOL_DEFINE(list_warehouses, "The warehouses that hold stock, with their names", shop_no_args,
                 list_warehouses);

enum { TOOL_SEARCH, TOOL_INVENTORY, TOOL_PRICE, TOOL_WAREHOUSES, TOOL_COUNT };

/* ---- the shop: connection pool ---- */

struct searcher_ref {
    const sift_searcher *s;
    int owned;    /* the shop closes it (swapped in); 0: the caller's (sift_shop_opts) */
    int retired;  /* replaced: freed when the last search using it ends */
    size_t users; /* searches running on it */
};

struct sift_shop {
    sift_tool tools[TOOL_COUNT]; /* copies of the templates above, udata = this shop */
    char *path;
    char *default_currency;
    int busy_timeout_ms;
    void (*work_hook)(void *data);
    void *work_hook_data;
    /* The searcher in use; swapped whole by sift_shop_swap_searcher (a
     * refreshed catalog). Guarded by mu; a search holds a use count on the
     * one it started with, and a retired searcher is freed by its last user. */
    struct searcher_ref *searcher;

    uv_mutex_t mu; /* guards the pool below and `searcher` */
    uv_cond_t cv;  /* signalled when a connection is returned or a slot frees */
    sift_store **idle;
    size_t n_idle;
    size_t opened; /* connections open or being opened */
    size_t max_conns;

    atomic_size_t inflight;

    /* PostgreSQL (pg set): one pool per loop. A slot is claimed under `mu`
     * and published by the release store to nloops; after that only its
     * loop's thread touches it, so finding the pool takes no lock. */
    bool pg;
    bool pg_threadpool; /* every tool on the thread pool (comparisons) */
    sift_pgpool_opts pg_opts;
    struct shop_loop {
        uv_loop_t *loop;
        sift_pgpool *pool;
        int st_inventory, st_price, st_warehouses;
    } loops[SIFT_SHOP_LOOPS_MAX];
    atomic_size_t nloops;
};

static size_t default_pool_size(void)
{
    const char *v = getenv("UV_THREADPOOL_SIZE");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end == '\0' && n > 0 && n <= 1024)
            return (size_t)n;
    }
    return 4;
}

int sift_shop_new(const sift_shop_opts *opts, sift_shop **out, sift_err *err)
{
    *out = NULL;
    if (!opts || !opts->store_path || !*opts->store_path)
        return sift_err_set(err, SIFT_EINVAL, "shop tools: no store path given");
    const char *cur = opts->default_currency ? opts->default_currency : "VND";
    if (strcmp(cur, "VND") != 0 && strcmp(cur, "USD") != 0)
        return sift_err_set(err, SIFT_EINVAL,
                            "shop tools: default currency \"%s\" is not one of VND, USD", cur);
    bool pg = sift_pgpool_is_url(opts->store_path);
    if (pg) {
        char *perr = NULL;
        PQconninfoOption *co = PQconninfoParse(opts->store_path, &perr);
        if (!co) {
            sift_err_set(err, SIFT_EINVAL, "shop tools: bad PostgreSQL URL: %s",
                         perr ? perr : "out of memory");
            PQfreemem(perr);
            return SIFT_EINVAL;
        }
        PQconninfoFree(co);
    }
    sift_shop *s = sift_calloc(1, sizeof *s);
    if (!s)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    s->pg = pg;
    s->pg_threadpool = opts->pg_threadpool != 0;
    s->pg_opts = opts->pg;
    atomic_init(&s->nloops, 0);
    s->max_conns = opts->max_conns ? opts->max_conns : default_pool_size();
    s->path = sift_strdup(opts->store_path);
    s->default_currency = sift_strdup(cur);
    s->idle = sift_calloc(s->max_conns, sizeof(sift_store *)); // NOLINT(bugprone-sizeof-expression)
    if (!s->path || !s->default_currency || !s->idle) {
        sift_free(s->path);
        sift_free(s->default_currency);
        sift_free(s->idle);
        sift_free(s);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    if (uv_mutex_init(&s->mu) != 0 || uv_cond_init(&s->cv) != 0)
        abort(); /* only fails when the system is out of resources for mutexes */
    s->busy_timeout_ms = opts->busy_timeout_ms;
    s->work_hook = opts->work_hook;
    s->work_hook_data = opts->work_hook_data;
    if (opts->searcher) {
        if (!(s->searcher = sift_calloc(1, sizeof *s->searcher))) {
            uv_cond_destroy(&s->cv);
            uv_mutex_destroy(&s->mu);
            sift_free(s->path);
            sift_free(s->default_currency);
            sift_free(s->idle);
            sift_free(s);
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        }
        s->searcher->s = opts->searcher;
    }
    atomic_init(&s->inflight, 0);
    s->tools[TOOL_SEARCH] = search_products_tool;
    s->tools[TOOL_INVENTORY] = check_inventory_tool;
    s->tools[TOOL_PRICE] = get_price_tool;
    s->tools[TOOL_WAREHOUSES] = list_warehouses_tool;
    for (int i = 0; i < TOOL_COUNT; i++)
        s->tools[i].udata = s;
    *out = s;
    return 0;
}

void sift_shop_free(sift_shop *s)
{
    if (!s)
        return;
    if (atomic_load(&s->inflight) != 0) {
        fprintf(stderr, "sift_shop_free: %zu tool calls still in flight\n",
                atomic_load(&s->inflight));
        abort();
    }
    for (size_t i = 0; i < atomic_load(&s->nloops); i++) {
        if (s->loops[i].pool) {
            fprintf(stderr, "sift_shop_free: a loop's PostgreSQL pool is still open "
                            "(call sift_shop_loop_close on that loop first)\n");
            abort();
        }
    }
    /* Nothing in flight means every opened connection is back on the idle list. */
    assert(s->n_idle == s->opened);
    for (size_t i = 0; i < s->n_idle; i++)
        sift_store_close(s->idle[i]);
    if (s->searcher && s->searcher->owned)
        sift_searcher_close((sift_searcher *)s->searcher->s);
    sift_free(s->searcher);
    uv_cond_destroy(&s->cv);
    uv_mutex_destroy(&s->mu);
    sift_free(s->idle);
    sift_free(s->path);
    sift_free(s->default_currency);
    sift_free(s);
}

static struct searcher_ref *searcher_acquire(sift_shop *s)
{
    uv_mutex_lock(&s->mu);
    struct searcher_ref *ref = s->searcher;
    if (ref)
        ref->users++;
    uv_mutex_unlock(&s->mu);
    return ref;
}

static void searcher_drop(struct searcher_ref *ref)
{
    if (ref->owned)
        sift_searcher_close((sift_searcher *)ref->s);
    sift_free(ref);
}

static void searcher_release(sift_shop *s, struct searcher_ref *ref)
{
    uv_mutex_lock(&s->mu);
    int last = --ref->users == 0 && ref->retired;
    uv_mutex_unlock(&s->mu);
    if (last)
        searcher_drop(ref);
}

int sift_shop_swap_searcher(sift_shop *shop, sift_searcher *next, sift_err *err)
{
    struct searcher_ref *ref = sift_calloc(1, sizeof *ref);
    if (!ref) {
        sift_searcher_close(next);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    ref->s = next;
    ref->owned = 1;
    uv_mutex_lock(&shop->mu);
    struct searcher_ref *old = shop->searcher;
    shop->searcher = ref;
    int idle = old && old->users == 0;
    if (old)
        old->retired = 1;
    uv_mutex_unlock(&shop->mu);
    if (idle)
        searcher_drop(old);
    return 0;
}

int sift_shop_tools_register(sift_tool_registry *r, sift_shop *shop, sift_err *err)
{
    for (int i = 0; i < TOOL_COUNT; i++) {
        int rc = sift_tool_registry_add(r, &shop->tools[i], err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const sift_tool *sift_shop_tool(const sift_shop *shop, const char *name)
{
    for (int i = 0; i < TOOL_COUNT; i++) {
        if (strcmp(shop->tools[i].name, name) == 0)
            return &shop->tools[i];
    }
    return NULL;
}

size_t sift_shop_inflight(const sift_shop *shop)
{
    return atomic_load(&shop->inflight);
}

/* Borrows a connection (pool thread). Waits only when max_conns connections
 * are all busy, which takes more concurrent queries than pool threads. */
static int conn_acquire(sift_shop *s, sift_store **out, sift_err *err)
{
    uv_mutex_lock(&s->mu);
    while (s->n_idle == 0 && s->opened >= s->max_conns)
        uv_cond_wait(&s->cv, &s->mu);
    if (s->n_idle > 0) {
        *out = s->idle[--s->n_idle];
        uv_mutex_unlock(&s->mu);
        return 0;
    }
    s->opened++; /* reserve the slot, open outside the lock */
    uv_mutex_unlock(&s->mu);

    sift_store_sqlite_opts so = {.readonly = 1, .busy_timeout_ms = s->busy_timeout_ms};
    /* A postgres:// URL: the PostgreSQL store (pgstore.h), read-only. */
    int rc = sift_pg_is_url(s->path) ? sift_store_open(s->path, 1, out, err)
                                     : sift_store_sqlite_open(s->path, &so, out, err);
    if (rc < 0) {
        uv_mutex_lock(&s->mu);
        s->opened--;
        uv_cond_signal(&s->cv);
        uv_mutex_unlock(&s->mu);
    }
    return rc;
}

static void conn_release(sift_shop *s, sift_store *st)
{
    uv_mutex_lock(&s->mu);
    assert(s->n_idle < s->max_conns);
    s->idle[s->n_idle++] = st;
    uv_cond_signal(&s->cv);
    uv_mutex_unlock(&s->mu);
}

/* ---- requests ---- */

enum req_state {
    REQ_QUEUED = 1, /* work queued or running; the job waits for it */
    REQ_ABANDONED,  /* the job was ended by cancellation; the result will be dropped */
    REQ_DONE,       /* the result went to the job */
};

struct search_req {
    const char *query;
    const char *retrieval; /* query plus the filter words that narrow the candidates */
    size_t k;
    const char *brand, *category, *size, *size_system, *gender;
    const char *colours[FILTER_COLOURS_MAX];
    size_t n_colours;
    bool has_price_min, has_price_max;
    double price_min, price_max;
    const char *currency;
    bool in_stock;
    const char *warehouses[FILTER_WAREHOUSES_MAX];
    size_t n_warehouses;
    /* the query's vector when the searcher's embedder is remote (fetched on
     * the loop before the work is queued); lexical_only when it could not be */
    const float *qvec;
    bool lexical_only;
};

struct shop_req {
    uv_work_t work;
    sift_ctx_hook hook;
    sift_shop *shop;
    sift_tool_job *job; /* NULL once abandoned */
    enum req_state state;
    int tool;             /* TOOL_* */
    sift_arena *arena;    /* the request's own: copied arguments, store results */
    const char *sku;      /* inventory, price */
    const char *location; /* inventory; NULL: every warehouse */
    const char *currency; /* price */
    struct search_req search;
    /* The searcher a search uses, held from the query's embedding (its
     * vector belongs to that searcher's embedder) to the end of the search;
     * NULL otherwise. */
    struct searcher_ref *sref;
    int64_t now; /* unix seconds at the call: prices in force then */
    /* Outcome, written by the pool thread, read on the loop after it. */
    int code;
    sift_buf out;
};

static void req_set_state(struct shop_req *r, enum req_state from, enum req_state to)
{
    if (r->state != from) {
        fprintf(stderr, "shop tool request: state %d, expected %d\n", (int)r->state, (int)from);
        abort();
    }
    r->state = to;
}

static void searcher_release(sift_shop *s, struct searcher_ref *ref);

static void req_free(struct shop_req *r)
{
    if (r->sref)
        searcher_release(r->shop, r->sref);
    sift_buf_free(&r->out);
    sift_arena_free(r->arena);
    sift_free(r);
}

/* A failure's result is the plain message (tool.h): the tools node turns it
 * into the model's {"error":{...}} object, so it must not be JSON already. */
static int put_error(sift_buf *b, int code, const char *msg)
{
    sift_buf_reset(b);
    return sift_buf_puts(b, msg[0] ? msg : sift_err_name(code));
}

static int put_str(sift_buf *b, const char *s)
{
    return sift_buf_json_string(b, s, strlen(s));
}

static int not_found_product(sift_err *err, const char *sku)
{
    return sift_err_set(err, SIFT_ENOTFOUND, "no product with sku \"%s\"", sku);
}

/* ---- the queries (pool thread) ---- */

static const char *attr_get(const sift_product *p, const char *key)
{
    for (size_t i = 0; i < p->n_attrs; i++) {
        if (strcmp(p->attrs[i].key, key) == 0)
            return p->attrs[i].value;
    }
    return NULL;
}

/* True when `word` occurs in `text` as a whole word, ignoring ASCII case
 * ("grey" in "black/grey", not "grey" in "greyish"). */
static bool has_word(const char *text, const char *word)
{
    size_t wl = strlen(word);
    if (wl == 0)
        return false;
    for (const char *p = text; *p; p++) {
        if (strncasecmp(p, word, wl) != 0)
            continue;
        bool start_ok =
            p == text || !((unsigned char)p[-1] < 0x80 && isalnum((unsigned char)p[-1]));
        unsigned char after = (unsigned char)p[wl];
        bool end_ok = after == '\0' || !(after < 0x80 && isalnum(after));
        if (start_ok && end_ok)
            return true;
    }
    return false;
}

/* True when the category path ("Footwear > Running > Road") has a level
 * equal to `seg` (ASCII case ignored); seg is `len` bytes. */
static bool path_has_segment(const char *path, const char *seg, size_t len)
{
    while (len > 0 && seg[0] == ' ')
        seg++, len--;
    while (len > 0 && seg[len - 1] == ' ')
        len--;
    if (len == 0)
        return true;
    const char *p = path;
    for (;;) {
        const char *end = strstr(p, " > ");
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen == len && strncasecmp(p, seg, len) == 0)
            return true;
        if (!end)
            return false;
        p = end + 3;
    }
}

/* The category filter: a product type the query vocabulary knows ("running
 * shoes", as the planner writes it) matches through its path segment
 * ("Running"); anything else is a path whose levels, separated by ">" or
 * "/", must each be a level of the product's category. */
static bool category_matches(const char *path, const char *want)
{
    size_t n = 0;
    const sift_query_term *types = sift_query_vocab_builtin(SIFT_QL_TYPE, &n);
    for (size_t i = 0; i < n; i++) {
        if (types[i].extra &&
            (strcasecmp(types[i].value, want) == 0 || strcasecmp(types[i].phrase, want) == 0))
            return path_has_segment(path, types[i].extra, strlen(types[i].extra));
    }
    const char *p = want;
    for (;;) {
        size_t len = strcspn(p, ">/");
        if (!path_has_segment(path, p, len))
            return false;
        if (p[len] == '\0')
            return true;
        p += len + 1;
    }
}

static bool attrs_match(const struct search_req *q, const sift_product *p)
{
    if (q->brand && strcasecmp(p->brand, q->brand) != 0)
        return false;
    if (q->category && !category_matches(p->category, q->category))
        return false;
    if (q->size) {
        const char *v = attr_get(p, "size");
        if (!v || strcasecmp(v, q->size) != 0)
            return false;
        const char *sys = attr_get(p, "size_system");
        if (q->size_system && sys && strcasecmp(sys, q->size_system) != 0)
            return false;
    }
    if (q->n_colours > 0) {
        const char *v = attr_get(p, "colour");
        if (!v)
            v = attr_get(p, "color");
        bool any = false;
        for (size_t i = 0; v && !any && i < q->n_colours; i++)
            any = has_word(v, q->colours[i]);
        if (!any)
            return false;
    }
    if (q->gender) {
        /* Unisex products suit anyone who asked for a gender. */
        const char *v = attr_get(p, "gender");
        if (!v || (strcasecmp(v, q->gender) != 0 && strcasecmp(v, "unisex") != 0))
            return false;
    }
    return true;
}

/* Price and stock filters, read live. *ok = 0 when the product fails them. */
static int live_match(struct shop_req *r, sift_store *st, const char *sku, bool *ok, sift_err *err)
{
    const struct search_req *q = &r->search;
    *ok = true;
    if (q->has_price_min || q->has_price_max) {
        sift_price pr;
        int rc = sift_store_get_price(st, sku, q->currency, r->now, r->arena, &pr, err);
        if (rc == SIFT_ENOTFOUND) {
            sift_err_clear(err);
            *ok = false; /* no price in that currency: cannot be within bounds */
            return 0;
        }
        if (rc < 0)
            return rc;
        double major = (double)pr.amount_minor;
        for (int i = sift_currency_exponent(q->currency); i > 0; i--)
            major /= 10;
        if ((q->has_price_min && major < q->price_min) ||
            (q->has_price_max && major > q->price_max)) {
            *ok = false;
            return 0;
        }
    }
    if (q->in_stock) {
        sift_stock *rows = NULL;
        size_t n = 0;
        int rc = sift_store_get_stock(st, sku, NULL, r->arena, &rows, &n, err);
        if (rc < 0)
            return rc;
        bool any = false;
        for (size_t i = 0; i < n && !any; i++) {
            if (rows[i].quantity <= 0)
                continue;
            if (q->n_warehouses == 0)
                any = true;
            for (size_t w = 0; w < q->n_warehouses && !any; w++)
                any = strcmp(rows[i].warehouse, q->warehouses[w]) == 0;
        }
        *ok = any;
    }
    return 0;
}

static int put_chunk(sift_buf *b, const sift_product *p)
{
    int rc = sift_buf_puts(b, "{\"sku\":");
    if (rc == 0)
        rc = put_str(b, p->sku);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"title\":");
    if (rc == 0)
        rc = put_str(b, p->title);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"brand\":");
    if (rc == 0)
        rc = put_str(b, p->brand);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"category\":");
    if (rc == 0)
        rc = put_str(b, p->category);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"attributes\":{");
    for (size_t i = 0; rc == 0 && i < p->n_attrs; i++) {
        if (i)
            rc = sift_buf_putc(b, ',');
        if (rc == 0)
            rc = put_str(b, p->attrs[i].key);
        if (rc == 0)
            rc = sift_buf_putc(b, ':');
        if (rc == 0)
            rc = put_str(b, p->attrs[i].value);
    }
    if (rc == 0)
        rc = sift_buf_puts(b, "}}");
    return rc;
}

static bool search_has_filters(const struct search_req *q)
{
    return q->brand || q->category || q->size || q->n_colours > 0 || q->gender ||
           q->has_price_min || q->has_price_max || q->in_stock;
}

/* SKUs to consider, best first: from the hybrid searcher when the shop has
 * one (the shop applies its own filters afterwards), else from the store's
 * full-text search. */
static int candidates(struct shop_req *r, sift_store *st, size_t pool, const char ***skus,
                      size_t *n, sift_err *err)
{
    const struct search_req *q = &r->search;
    int rc;
    struct searcher_ref *ref = r->sref ? r->sref : searcher_acquire(r->shop);
    r->sref = NULL;
    if (ref) {
        sift_search_opts so = {.k = pool, .no_filters = 1};
        if (q->qvec) {
            so.query_vec = q->qvec;
            so.query_vec_id = sift_searcher_vector_id(ref->s);
        }
        if (q->lexical_only)
            so.mode = SIFT_SEARCH_LEXICAL;
        sift_search_hit *hits = NULL;
        const char **out = NULL;
        rc = sift_search(ref->s, st, q->retrieval, &so, r->arena, &hits, n, err);
        /* hits point into the searcher, which may be retired once released */
        if (rc >= 0)
            out = sift_arena_calloc(r->arena, *n ? *n : 1, sizeof *out);
        for (size_t i = 0; rc >= 0 && out && i < *n; i++)
            if (!(out[i] = sift_arena_strdup(r->arena, hits[i].sku)))
                out = NULL;
        searcher_release(r->shop, ref);
        if (rc < 0)
            return rc;
        *skus = out;
    } else {
        sift_hit *hits = NULL;
        rc = sift_store_search_fts(st, q->retrieval, pool, r->arena, &hits, n, err);
        if (rc < 0)
            return rc;
        *skus = sift_arena_calloc(r->arena, *n ? *n : 1, sizeof **skus);
        for (size_t i = 0; *skus && i < *n; i++)
            (*skus)[i] = hits[i].sku;
    }
    if (*skus)
        return 0;
    sift_err_set(err, SIFT_ENOMEM, "out of memory");
    return SIFT_ENOMEM;
}

static int run_search(struct shop_req *r, sift_store *st, sift_err *err)
{
    const struct search_req *q = &r->search;
    bool filtered = search_has_filters(q);
    size_t pool = q->k * 20 < 100 ? 100 : q->k * 20;
    if (pool > SIFT_SHOP_CANDIDATES_MAX)
        pool = SIFT_SHOP_CANDIDATES_MAX;
    const char **skus = NULL;
    size_t n = 0;
    int rc = candidates(r, st, pool, &skus, &n, err);
    if (rc < 0)
        return rc;
    size_t emitted = 0, total = 0;
    rc = sift_buf_puts(&r->out, "{\"products\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!filtered && emitted == q->k) {
            total = n; /* every candidate counts; no need to read the rest */
            break;
        }
        sift_product p;
        rc = sift_store_get_product(st, skus[i], r->arena, &p, err);
        if (rc == SIFT_ENOTFOUND) {
            /* Deleted between the index read and this one: not a result. */
            sift_err_clear(err);
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        if (filtered) {
            if (!attrs_match(q, &p))
                continue;
            bool ok;
            rc = live_match(r, st, p.sku, &ok, err);
            if (rc < 0 || !ok)
                continue;
        }
        total++;
        if (emitted < q->k) {
            if (emitted)
                rc = sift_buf_putc(&r->out, ',');
            if (rc == 0)
                rc = put_chunk(&r->out, &p);
            emitted++;
        }
    }
    if (rc == 0)
        rc = sift_buf_printf(&r->out, "],\"total\":%zu}", total);
    if (rc == SIFT_ENOMEM || rc == SIFT_ETOOBIG)
        sift_err_set(err, rc, rc == SIFT_ENOMEM ? "out of memory" : "search result too large");
    return rc;
}

/* The result of check_inventory (and of its PostgreSQL path): one entry per
 * code, in the order given. */
static int put_inventory(sift_buf *b, const char *sku, const char *const *codes, const int64_t *qty,
                         size_t n)
{
    int rc = sift_buf_puts(b, "{\"sku\":");
    if (rc == 0)
        rc = put_str(b, sku);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"warehouses\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = sift_buf_putc(b, ',');
        if (rc == 0)
            rc = sift_buf_puts(b, "{\"code\":");
        if (rc == 0)
            rc = put_str(b, codes[i]);
        if (rc == 0)
            rc = sift_buf_printf(b, ",\"quantity\":%lld}", (long long)qty[i]);
    }
    if (rc == 0)
        rc = sift_buf_puts(b, "]}");
    return rc;
}

/* The result of get_price. */
static int put_price(sift_buf *b, const char *sku, const char *currency, int64_t minor)
{
    int rc = sift_buf_puts(b, "{\"sku\":");
    if (rc == 0)
        rc = put_str(b, sku);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"currency\":");
    if (rc == 0)
        rc = put_str(b, currency);
    if (rc == 0)
        rc = sift_buf_puts(b, ",\"amount\":");
    if (rc == 0)
        rc = sift_amount_json(b, minor, currency);
    if (rc == 0)
        rc = sift_buf_putc(b, '}');
    return rc;
}

/* The result of list_warehouses. */
static int put_warehouses(sift_buf *b, const char *const *codes, size_t n)
{
    int rc = sift_buf_puts(b, "{\"warehouses\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *name = sift_query_warehouse_name(codes[i]);
        if (i)
            rc = sift_buf_putc(b, ',');
        if (rc == 0)
            rc = sift_buf_puts(b, "{\"code\":");
        if (rc == 0)
            rc = put_str(b, codes[i]);
        if (rc == 0 && name) {
            rc = sift_buf_puts(b, ",\"name\":");
            if (rc == 0)
                rc = put_str(b, name);
        }
        if (rc == 0)
            rc = sift_buf_putc(b, '}');
    }
    if (rc == 0)
        rc = sift_buf_puts(b, "]}");
    return rc;
}

static int run_inventory(struct shop_req *r, sift_store *st, sift_err *err)
{
    sift_product p;
    int rc = sift_store_get_product(st, r->sku, r->arena, &p, err);
    if (rc == SIFT_ENOTFOUND)
        return not_found_product(err, r->sku);
    if (rc < 0)
        return rc;
    sift_stock *rows = NULL;
    size_t n = 0;
    rc = sift_store_get_stock(st, r->sku, r->location, r->arena, &rows, &n, err);
    if (rc < 0)
        return rc;
    const char **codes = NULL;
    size_t nc = 0;
    if (r->location) {
        codes = &r->location;
        nc = 1;
    } else {
        rc = sift_store_list_warehouses(st, r->arena, &codes, &nc, err);
        if (rc < 0)
            return rc;
    }
    int64_t *qty = sift_arena_calloc(r->arena, nc ? nc : 1, sizeof *qty);
    if (!qty)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    /* A warehouse with no row has none in stock. */
    for (size_t i = 0; i < nc; i++) {
        for (size_t j = 0; j < n; j++) {
            if (strcmp(rows[j].warehouse, codes[i]) == 0)
                qty[i] = rows[j].quantity;
        }
    }
    rc = put_inventory(&r->out, r->sku, codes, qty, nc);
    if (rc < 0)
        sift_err_set(err, rc, "out of memory");
    return rc;
}

static int run_price(struct shop_req *r, sift_store *st, sift_err *err)
{
    sift_product p;
    int rc = sift_store_get_product(st, r->sku, r->arena, &p, err);
    if (rc == SIFT_ENOTFOUND)
        return not_found_product(err, r->sku);
    if (rc < 0)
        return rc;
    sift_price pr;
    rc = sift_store_get_price(st, r->sku, r->currency, r->now, r->arena, &pr, err);
    if (rc == SIFT_ENOTFOUND)
        return sift_err_set(err, SIFT_ENOTFOUND, "no %s price for sku \"%s\"", r->currency, r->sku);
    if (rc < 0)
        return rc;
    rc = put_price(&r->out, r->sku, r->currency, pr.amount_minor);
    if (rc < 0)
        sift_err_set(err, rc, "out of memory");
    return rc;
}

static int run_warehouses(struct shop_req *r, sift_store *st, sift_err *err)
{
    const char **codes = NULL;
    size_t n = 0;
    int rc = sift_store_list_warehouses(st, r->arena, &codes, &n, err);
    if (rc < 0)
        return rc;
    rc = put_warehouses(&r->out, codes, n);
    if (rc < 0)
        sift_err_set(err, rc, "out of memory");
    return rc;
}

/* Pool thread. Touches only the request and the shop's pool, never the job,
 * its arena or its ctx, which may be gone once the job was cancelled. */
static void on_work(uv_work_t *w)
{
    struct shop_req *r = container_of(w, struct shop_req, work);
    sift_shop *s = r->shop;
    sift_err err = {0};
    sift_store *st = NULL;
    int rc = conn_acquire(s, &st, &err);
    if (rc == 0) {
        if (s->work_hook)
            s->work_hook(s->work_hook_data);
        switch (r->tool) {
        case TOOL_SEARCH:
            rc = run_search(r, st, &err);
            break;
        case TOOL_INVENTORY:
            rc = run_inventory(r, st, &err);
            break;
        case TOOL_PRICE:
            rc = run_price(r, st, &err);
            break;
        default:
            rc = run_warehouses(r, st, &err);
            break;
        }
        conn_release(s, st);
    }
    r->code = rc;
    if (rc < 0 && put_error(&r->out, rc, err.msg) < 0)
        sift_buf_free(&r->out); /* the loop reports the code without a result */
}

/* Loop thread: always called, also after a successful uv_cancel. */
static void after_work(uv_work_t *w, int status)
{
    struct shop_req *r = container_of(w, struct shop_req, work);
    /* Not in flight any more: the done callback below may check, or free the shop. */
    atomic_fetch_sub(&r->shop->inflight, 1);
    if (r->state == REQ_QUEUED) {
        assert(status == 0); /* only the cancel hook cancels, and it abandons first */
        req_set_state(r, REQ_QUEUED, REQ_DONE);
        sift_ctx_remove_hook(&r->hook);
        sift_tool_job *job = r->job;
        r->job = NULL;
        if (r->code < 0 && r->out.len == 0)
            sift_tool_job_fail(job, r->code, "%s", "out of memory writing the tool error");
        else
            sift_tool_job_done(job, r->code, r->out.data);
    } else if (r->state != REQ_ABANDONED) {
        fprintf(stderr, "shop tool request: after-work in state %d\n", (int)r->state);
        abort();
    }
    (void)status;
    req_free(r);
}

static void on_cancel(sift_ctx_hook *h, const sift_err *cause)
{
    struct shop_req *r = container_of(h, struct shop_req, hook);
    req_set_state(r, REQ_QUEUED, REQ_ABANDONED);
    /* Still queued: the work never runs (after_work gets UV_ECANCELED). Already
     * running (UV_EBUSY): it finishes and after_work drops the result. */
    (void)uv_cancel((uv_req_t *)&r->work);
    sift_tool_job *job = r->job;
    r->job = NULL;
    sift_tool_job_done(job, cause->code, cause->msg[0] ? cause->msg : sift_err_name(cause->code));
}

/* ---- PostgreSQL: the volatile tools as async queries on the loop's pool ---- */

/* One round trip per call. Each statement first checks that the SKU names a
 * live product (the SQLite path reads the product first) and sorts codes by
 * byte (COLLATE "C"), as SQLite's BINARY order does, so both stores give the
 * same result for the same data. SKUs compare case-insensitively (the
 * lower(sku) indexes), like SQLite's COLLATE NOCASE for ASCII SKUs. */
#define PG_LIVE_PRODUCT                                                                            \
    "(SELECT EXISTS (SELECT 1 FROM products WHERE lower(sku) = lower($1) AND NOT deleted) AS ok) " \
    "p"
static const char pg_inventory_sql[] =
    "SELECT p.ok, w.code, coalesce(i.quantity, 0)::text FROM " PG_LIVE_PRODUCT
    " LEFT JOIN (SELECT code FROM warehouses WHERE $2::text IS NULL"
    "            UNION ALL SELECT $2::text WHERE $2::text IS NOT NULL) w ON p.ok"
    " LEFT JOIN inventory i ON lower(i.sku) = lower($1) AND i.warehouse = w.code"
    " ORDER BY w.code COLLATE \"C\"";
static const char pg_price_sql[] =
    "SELECT p.ok, pr.amount_minor::text FROM " PG_LIVE_PRODUCT
    " LEFT JOIN LATERAL (SELECT amount_minor FROM prices WHERE lower(sku) = lower($1)"
    "  AND currency = $2 AND valid_from <= $3::bigint ORDER BY valid_from DESC LIMIT 1) pr"
    " ON p.ok";
static const char pg_warehouses_sql[] = "SELECT code FROM warehouses ORDER BY code COLLATE \"C\"";

/* The pool of `loop`, made on its first call. Only `loop`'s thread calls
 * this for `loop`, so a found slot needs no lock. */
static int loop_pool(sift_shop *s, uv_loop_t *loop, struct shop_loop **out, sift_err *err)
{
    size_t n = atomic_load_explicit(&s->nloops, memory_order_acquire);
    struct shop_loop *sl = NULL;
    for (size_t i = 0; i < n && !sl; i++) {
        if (s->loops[i].loop == loop)
            sl = &s->loops[i];
    }
    if (!sl) {
        uv_mutex_lock(&s->mu);
        n = atomic_load_explicit(&s->nloops, memory_order_relaxed);
        if (n < SIFT_SHOP_LOOPS_MAX) {
            sl = &s->loops[n];
            sl->loop = loop;
            atomic_store_explicit(&s->nloops, n + 1, memory_order_release);
        }
        uv_mutex_unlock(&s->mu);
        if (!sl) {
            sift_err_set(err, SIFT_EINTERNAL, "shop tools: more than %d loops",
                         SIFT_SHOP_LOOPS_MAX);
            return SIFT_EINTERNAL;
        }
    }
    if (!sl->pool) {
        sift_pgpool_opts o = s->pg_opts;
        o.conninfo = s->path;
        sift_pgpool *p = NULL;
        int rc = sift_pgpool_new(loop, &o, &p, err);
        if (rc < 0)
            return rc;
        sl->st_inventory = sift_pgpool_prepare(p, pg_inventory_sql, 2, err);
        sl->st_price = sift_pgpool_prepare(p, pg_price_sql, 3, err);
        sl->st_warehouses = sift_pgpool_prepare(p, pg_warehouses_sql, 0, err);
        int bad = sl->st_inventory < 0 ? sl->st_inventory
                  : sl->st_price < 0   ? sl->st_price
                                       : sl->st_warehouses;
        if (bad < 0) {
            sift_pgpool_close(p);
            return bad;
        }
        sl->pool = p;
    }
    *out = sl;
    return 0;
}

void sift_shop_loop_close(sift_shop *s, uv_loop_t *loop)
{
    size_t n = atomic_load_explicit(&s->nloops, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (s->loops[i].loop == loop && s->loops[i].pool) {
            sift_pgpool_close(s->loops[i].pool);
            s->loops[i].pool = NULL;
        }
    }
}

int sift_shop_pg_stats(const sift_shop *s, uv_loop_t *loop, sift_pgpool_stats *out)
{
    size_t n = atomic_load_explicit(&s->nloops, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (s->loops[i].loop == loop && s->loops[i].pool) {
            sift_pgpool_get_stats(s->loops[i].pool, out);
            return 0;
        }
    }
    return SIFT_ENOTFOUND;
}

static bool pg_live(const PGresult *res)
{
    return PQntuples(res) > 0 && PQgetvalue(res, 0, 0)[0] == 't';
}

static int pg_inventory(struct shop_req *r, const PGresult *res, sift_err *err)
{
    if (!pg_live(res))
        return not_found_product(err, r->sku);
    int rows = PQntuples(res);
    const char **codes = sift_arena_calloc(r->arena, (size_t)rows, sizeof *codes);
    int64_t *qty = sift_arena_calloc(r->arena, (size_t)rows, sizeof *qty);
    if (!codes || !qty)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    size_t n = 0;
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 1))
            continue; /* no warehouse at all: the one row of the left join */
        codes[n] = PQgetvalue(res, i, 1);
        qty[n++] = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    }
    int rc = put_inventory(&r->out, r->sku, codes, qty, n);
    return rc < 0 ? sift_err_set(err, rc, "out of memory") : 0;
}

static int pg_price(struct shop_req *r, const PGresult *res, sift_err *err)
{
    if (!pg_live(res))
        return not_found_product(err, r->sku);
    if (PQgetisnull(res, 0, 1))
        return sift_err_set(err, SIFT_ENOTFOUND, "no %s price for sku \"%s\"", r->currency, r->sku);
    int rc = put_price(&r->out, r->sku, r->currency, strtoll(PQgetvalue(res, 0, 1), NULL, 10));
    return rc < 0 ? sift_err_set(err, rc, "out of memory") : 0;
}

static int pg_warehouses(struct shop_req *r, const PGresult *res, sift_err *err)
{
    int rows = PQntuples(res);
    const char **codes = sift_arena_calloc(r->arena, rows ? (size_t)rows : 1, sizeof *codes);
    if (!codes)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    for (int i = 0; i < rows; i++)
        codes[i] = PQgetvalue(res, i, 0);
    int rc = put_warehouses(&r->out, codes, (size_t)rows);
    return rc < 0 ? sift_err_set(err, rc, "out of memory") : 0;
}

/* The query's outcome, on the loop; also the ctx's cause when it was
 * cancelled first (the pool calls back at once then). */
static void pg_done(void *data, const PGresult *res, const sift_err *qerr)
{
    struct shop_req *r = data;
    atomic_fetch_sub(&r->shop->inflight, 1);
    req_set_state(r, REQ_QUEUED, REQ_DONE);
    sift_tool_job *job = r->job;
    r->job = NULL;
    sift_err err = {0};
    int rc;
    if (qerr) {
        rc = sift_err_copy(&err, qerr);
    } else if (r->tool == TOOL_INVENTORY) {
        rc = pg_inventory(r, res, &err);
    } else if (r->tool == TOOL_PRICE) {
        rc = pg_price(r, res, &err);
    } else {
        rc = pg_warehouses(r, res, &err);
    }
    if (rc < 0)
        sift_tool_job_done(job, rc, err.msg[0] ? err.msg : sift_err_name(rc));
    else
        sift_tool_job_done(job, 0, r->out.data);
    req_free(r);
}

/* Sends the request's query to the loop's pool, or ends the job. */
static void pg_submit(struct shop_req *r)
{
    sift_shop *s = r->shop;
    sift_tool_job *job = r->job;
    sift_err err = {0};
    struct shop_loop *sl = NULL;
    int rc = loop_pool(s, sift_ctx_loop(job->ctx), &sl, &err);
    if (rc < 0) {
        req_free(r);
        sift_tool_job_done(job, rc, err.msg);
        return;
    }
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)r->now);
    const char *v[3] = {r->sku, NULL, NULL};
    int stmt, nparams;
    if (r->tool == TOOL_INVENTORY) {
        v[1] = r->location;
        stmt = sl->st_inventory;
        nparams = 2;
    } else if (r->tool == TOOL_PRICE) {
        v[1] = r->currency;
        v[2] = now;
        stmt = sl->st_price;
        nparams = 3;
    } else {
        stmt = sl->st_warehouses;
        nparams = 0;
    }
    r->state = REQ_QUEUED;
    atomic_fetch_add(&s->inflight, 1);
    rc = sift_pgpool_query(sl->pool, job->ctx, stmt, nparams, v, pg_done, r, &err);
    if (rc < 0) {
        atomic_fetch_sub(&s->inflight, 1);
        req_free(r);
        sift_tool_job_done(job, rc, err.msg[0] ? err.msg : sift_err_name(rc));
    }
}

/* ---- the tool functions (loop thread) ---- */

static struct shop_req *req_new(sift_tool_job *job, int tool)
{
    struct shop_req *r = sift_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->arena = sift_arena_new(16384);
    if (!r->arena) {
        sift_free(r);
        return NULL;
    }
    r->shop = job->tool->udata;
    r->job = job;
    r->tool = tool;
    r->now = (int64_t)time(NULL);
    sift_buf_init(&r->out, RESULT_LIMIT);
    return r;
}

/* Queues the request, or ends the job and frees it. */
static void req_submit(struct shop_req *r)
{
    sift_tool_job *job = r->job;
    if (!job->ctx) {
        req_free(r);
        sift_tool_job_fail(job, SIFT_EINVAL,
                           "shop tools need a job context (its loop runs "
                           "the store queries)");
        return;
    }
    /* search_products keeps the thread pool: its store (SQLite or PostgreSQL,
     * pgstore.h) is synchronous and the searcher is too. */
    if (r->shop->pg && !r->shop->pg_threadpool && r->tool != TOOL_SEARCH) {
        pg_submit(r);
        return;
    }
    int rc = sift_ctx_add_hook(job->ctx, &r->hook, on_cancel);
    if (rc < 0) {
        const sift_err *cause = sift_ctx_cause(job->ctx);
        req_free(r);
        sift_tool_job_done(job, cause->code, cause->msg[0] ? cause->msg : NULL);
        return;
    }
    r->state = REQ_QUEUED;
    atomic_fetch_add(&r->shop->inflight, 1);
    rc = uv_queue_work(sift_ctx_loop(job->ctx), &r->work, on_work, after_work);
    if (rc != 0) {
        atomic_fetch_sub(&r->shop->inflight, 1);
        sift_ctx_remove_hook(&r->hook);
        req_free(r);
        sift_tool_job_fail(job, SIFT_EINTERNAL, "cannot queue the store query: %s",
                           uv_strerror(rc));
    }
}

static void fail_oom(sift_tool_job *job)
{
    sift_tool_job_fail(job, SIFT_ENOMEM, "out of memory");
}

/* ---- the query vector of a remote embedder (loop thread) ---- */

/* The query's vector has arrived (or not): queue the search. */
static void on_query_vec(void *ud, int code, const sift_err *err)
{
    struct shop_req *r = ud;
    sift_tool_job *job = r->job;
    atomic_fetch_sub(&r->shop->inflight, 1); /* req_submit counts the work item anew */
    if (code && sift_ctx_err(job->ctx)) {
        const sift_err *cause = sift_ctx_cause(job->ctx);
        req_free(r);
        sift_tool_job_done(job, cause->code, cause->msg[0] ? cause->msg : NULL);
        return;
    }
    if (code) {
        /* The provider is down or refuses: lexical candidates beat none, and
         * the log says why the vectors are missing. */
        sift_log(SIFT_LOG_WARN, sift_ctx_run_id(job->ctx), "\"tool\":\"search_products\"",
                 "no query vector, lexical search only: %s", err ? err->msg : "");
        r->search.qvec = NULL;
        r->search.lexical_only = true;
    }
    req_submit(r);
}

/* Queues a search; with a remote embedder, after fetching the query's
 * vector asynchronously on the job's loop (under its context, so the
 * deadline and cancellation reach the HTTP request), because the pool thread
 * that runs the search must not wait on the network. */
static void search_submit(struct shop_req *r)
{
    struct searcher_ref *ref = searcher_acquire(r->shop);
    const sift_searcher *se = ref ? ref->s : NULL;
    sift_tool_job *job = r->job;
    if (!se || !sift_searcher_remote(se) || !job->ctx) {
        if (ref)
            searcher_release(r->shop, ref);
        req_submit(r);
        return;
    }
    r->sref = ref; /* searched with the embedder that makes its vector */
    float *qv = sift_arena_alloc(r->arena, sift_searcher_dims(se) * sizeof *qv);
    if (!qv) {
        req_free(r);
        fail_oom(job);
        return;
    }
    r->search.qvec = qv;
    /* counted while the embedding runs: the shop (and its searcher's
     * embedder) must not be freed under it */
    atomic_fetch_add(&r->shop->inflight, 1);
    sift_err err = {0};
    int rc =
        sift_searcher_embed_query(se, job->ctx, r->search.retrieval, qv, on_query_vec, r, &err);
    if (rc)
        on_query_vec(r, rc, &err); /* refused: `done` will not fire */
}

/* The text the candidates are retrieved with: the query plus the brand, size
 * and (single) colour filters when the query does not say them already. The
 * chunks hold those values ("brand: Nike", "colour: red"), so the words draw
 * the products that can pass the filters into the bounded candidate pool
 * instead of leaving it to the query's most generic words ("running shoes"
 * alone ranks thousands of shoes). The filters are still checked exactly. */
static const char *retrieval_query(sift_arena *a, const struct search_req *q)
{
    const char *words[3] = {q->brand, q->size, q->n_colours == 1 ? q->colours[0] : NULL};
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_puts(&b, q->query);
    for (size_t i = 0; rc == 0 && i < 3; i++) {
        if (words[i] && !has_word(q->query, words[i]))
            rc = sift_buf_printf(&b, " %s", words[i]);
    }
    const char *out = rc == 0 ? sift_arena_strdup(a, b.data) : NULL;
    sift_buf_free(&b);
    return out;
}

static void search_products(sift_tool_job *job, const struct shop_search_args *args)
{
    sift_shop *s = job->tool->udata;
    const struct shop_search_filters *f = &args->filters;
    bool has_f = args->has_filters;
    if (has_f && f->has_warehouses) {
        for (size_t i = 0; i < f->warehouses.len; i++) {
            const char *w = f->warehouses.items[i];
            if (strcmp(w, "HAN") != 0 && strcmp(w, "DAD") != 0 && strcmp(w, "SGN") != 0) {
                sift_tool_job_fail(job, SIFT_EINVAL,
                                   "filters.warehouses[%zu]: must be one of HAN, DAD, SGN", i);
                return;
            }
        }
    }
    if (has_f && f->has_price_min && f->has_price_max && f->price_min > f->price_max) {
        sift_tool_job_fail(job, SIFT_EINVAL, "filters.price_min: must not exceed price_max");
        return;
    }
    struct shop_req *r = req_new(job, TOOL_SEARCH);
    if (!r) {
        fail_oom(job);
        return;
    }
    struct search_req *q = &r->search;
    sift_arena *a = r->arena;
    bool oom = !(q->query = sift_arena_strdup(a, args->query));
    q->k = args->has_k ? (size_t)args->k : 5;
    q->currency = s->default_currency;
    if (has_f) {
        /* Copies: the job's arena may be gone before the pool thread is done. */
        if (f->has_brand && f->brand[0])
            oom |= !(q->brand = sift_arena_strdup(a, f->brand));
        if (f->has_category && f->category[0])
            oom |= !(q->category = sift_arena_strdup(a, f->category));
        if (f->has_size && f->size[0])
            oom |= !(q->size = sift_arena_strdup(a, f->size));
        if (f->has_size_system)
            oom |= !(q->size_system = sift_arena_strdup(a, f->size_system));
        if (f->has_gender)
            oom |= !(q->gender = sift_arena_strdup(a, f->gender));
        if (f->has_currency)
            oom |= !(q->currency = sift_arena_strdup(a, f->currency));
        for (size_t i = 0; f->has_colour && i < f->colour.len; i++)
            oom |= !(q->colours[q->n_colours++] = sift_arena_strdup(a, f->colour.items[i]));
        for (size_t i = 0; f->has_warehouses && i < f->warehouses.len; i++)
            oom |=
                !(q->warehouses[q->n_warehouses++] = sift_arena_strdup(a, f->warehouses.items[i]));
        q->has_price_min = f->has_price_min;
        q->price_min = f->price_min;
        q->has_price_max = f->has_price_max;
        q->price_max = f->price_max;
        q->in_stock = f->has_in_stock && f->in_stock;
    }
    oom |= !oom && !(q->retrieval = retrieval_query(a, q));
    if (oom) {
        req_free(r);
        fail_oom(job);
        return;
    }
    search_submit(r);
}

static void check_inventory(sift_tool_job *job, const struct shop_inventory_args *args)
{
    struct shop_req *r = req_new(job, TOOL_INVENTORY);
    if (!r) {
        fail_oom(job);
        return;
    }
    r->sku = sift_arena_strdup(r->arena, args->sku);
    bool oom = !r->sku;
    if (args->has_location)
        oom |= !(r->location = sift_arena_strdup(r->arena, args->location));
    if (oom) {
        req_free(r);
        fail_oom(job);
        return;
    }
    req_submit(r);
}

static void get_price(sift_tool_job *job, const struct shop_price_args *args)
{
    sift_shop *s = job->tool->udata;
    struct shop_req *r = req_new(job, TOOL_PRICE);
    if (!r) {
        fail_oom(job);
        return;
    }
    r->sku = sift_arena_strdup(r->arena, args->sku);
    r->currency =
        sift_arena_strdup(r->arena, args->has_currency ? args->currency : s->default_currency);
    if (!r->sku || !r->currency) {
        req_free(r);
        fail_oom(job);
        return;
    }
    req_submit(r);
}

static void list_warehouses(sift_tool_job *job, const struct shop_no_args *args)
{
    (void)args;
    struct shop_req *r = req_new(job, TOOL_WAREHOUSES);
    if (!r) {
        fail_oom(job);
        return;
    }
    req_submit(r);
}

/* ---- sift_shop_query: other reads on the pooled connections ---- */

struct shop_query {
    uv_work_t work;
    sift_shop *shop;
    sift_shop_query_fn fn;
    sift_shop_query_done_fn done;
    void *ud;
    int code;
    sift_err err;
};

static void query_work(uv_work_t *w)
{
    struct shop_query *q = container_of(w, struct shop_query, work);
    sift_store *st = NULL;
    q->code = conn_acquire(q->shop, &st, &q->err);
    if (q->code < 0)
        return;
    if (q->shop->work_hook)
        q->shop->work_hook(q->shop->work_hook_data);
    q->code = q->fn(st, q->ud, &q->err);
    conn_release(q->shop, st);
}

static void query_after(uv_work_t *w, int status)
{
    struct shop_query *q = container_of(w, struct shop_query, work);
    /* nothing cancels these requests, so the work has always run */
    assert(status == 0);
    (void)status;
    q->done(q->ud, q->code, &q->err);
    atomic_fetch_sub(&q->shop->inflight, 1);
    sift_free(q);
}

int sift_shop_query(sift_shop *shop, uv_loop_t *loop, sift_shop_query_fn fn,
                    sift_shop_query_done_fn done, void *ud, sift_err *err)
{
    struct shop_query *q = sift_calloc(1, sizeof *q);
    if (!q)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    q->shop = shop;
    q->fn = fn;
    q->done = done;
    q->ud = ud;
    atomic_fetch_add(&shop->inflight, 1);
    int rc = uv_queue_work(loop, &q->work, query_work, query_after);
    if (rc != 0) {
        atomic_fetch_sub(&shop->inflight, 1);
        sift_free(q);
        return sift_err_set(err, SIFT_EINTERNAL, "cannot queue the store query: %s",
                            uv_strerror(rc));
    }
    return 0;
}
