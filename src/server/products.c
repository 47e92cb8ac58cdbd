/* GET /v1/products/{sku}: one product with its live stock and prices.
 *
 * The store is synchronous, so the lookup runs on the uv thread pool through
 * the shop's pooled read-only connections (sift_shop_query), exactly as the
 * shop tools read stock and prices; the loop only parses the path and writes
 * the answer. A lookup is a handful of indexed reads (the product, its stock
 * rows, the warehouse list, one price per currency). Lookups are not runs:
 * they need the API key when keys are set but take no run slot and no rate
 * token (the page fetches one per product card); what bounds them is
 * PRODUCT_LOOKUPS_MAX in flight per process, past which they get 503.
 *
 * GET /readyz is here too: it is one more store read on the same pool. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/log.h"
#include "sift/query.h"
#include "sift/shoptools.h"
#include "sift/store.h"
#include "api_int.h"

/* Lookups queued or running at once; each holds a pool slot only briefly,
 * but the queue in front of the pool must not grow without bound. */
#define PRODUCT_LOOKUPS_MAX 256
#define PRODUCT_JSON_LIMIT ((size_t)64 * 1024)

/* The currencies the shop prices in (the get_price tool's enum). */
static const char *const currencies[] = {"VND", "USD"};

struct lookup {
    sift_http_exchange *x;
    sift_api *api;
    char sku[SIFT_SKU_MAX + 1];
    int64_t now; /* prices in force at the request */
    sift_buf out;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes of s[0..n) into out (`size` bytes with the NUL).
 * (decode 0: copies). Returns the length, or -1 for a bad escape, a NUL byte or an over-long
 * value; '+' stays '+' (a path is not a form). */
static int decode_segment(const char *s, size_t n, int decode, char *out, size_t size)
{
    size_t o = 0;
    for (const char *end = s + n; s < end; s++) {
        int c = (unsigned char)*s;
        if (c == '%' && decode) {
            int hi = end - s > 2 ? hexval(s[1]) : -1, lo = hi < 0 ? -1 : hexval(s[2]);
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            s += 2;
        }
        if (c == 0 || o + 1 >= size)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

static int put_member(sift_buf *b, const char *name, const char *value)
{
    int rc = sift_buf_printf(b, ",\"%s\":", name);
    return rc ? rc : sift_buf_json_string(b, value, strlen(value));
}

static int put_attrs(sift_buf *b, const sift_product *p)
{
    int rc = sift_buf_puts(b, "\"attributes\":{");
    for (size_t i = 0; i < p->n_attrs; i++) {
        rc |= sift_buf_puts(b, i ? "," : "");
        rc |= sift_buf_json_string(b, p->attrs[i].key, strlen(p->attrs[i].key));
        rc |= sift_buf_putc(b, ':');
        rc |= sift_buf_json_string(b, p->attrs[i].value, strlen(p->attrs[i].value));
    }
    return rc | sift_buf_putc(b, '}');
}

static int put_product(sift_buf *b, const sift_product *p)
{
    int rc = sift_buf_puts(b, "{\"sku\":");
    rc |= sift_buf_json_string(b, p->sku, strlen(p->sku));
    if (p->parent_id[0])
        rc |= put_member(b, "parent_id", p->parent_id);
    else
        rc |= sift_buf_puts(b, ",\"parent_id\":null");
    rc |= put_member(b, "title", p->title);
    rc |= put_member(b, "brand", p->brand);
    rc |= put_member(b, "category", p->category);
    rc |= put_member(b, "description", p->description);
    rc |= sift_buf_putc(b, ',');
    rc |= put_attrs(b, p);
    rc |= sift_buf_printf(b, ",\"version\":%lld", (long long)p->version);
    return rc;
}

/* The other products of the same model (the same parent_id; for a product
 * without one, those whose parent it is), this one included, so a client can
 * offer the other sizes and colours; null when the store cannot list them. */
static int put_variants(sift_buf *b, sift_store *st, sift_arena *a, const sift_product *p,
                        sift_err *err)
{
    sift_product *v = NULL;
    size_t n = 0;
    int rc = sift_store_list_variants(st, p->parent_id[0] ? p->parent_id : p->sku,
                                      SIFT_VARIANTS_MAX, a, &v, &n, err);
    if (rc == SIFT_ESTATE) {
        sift_err_clear(err);
        return sift_buf_puts(b, ",\"variants\":null");
    }
    if (rc)
        return rc;
    rc = sift_buf_puts(b, ",\"variants\":[");
    for (size_t i = 0; i < n; i++) {
        rc |= sift_buf_puts(b, i ? ",{\"sku\":" : "{\"sku\":");
        rc |= sift_buf_json_string(b, v[i].sku, strlen(v[i].sku));
        rc |= put_member(b, "title", v[i].title);
        rc |= sift_buf_putc(b, ',');
        rc |= put_attrs(b, &v[i]);
        rc |= sift_buf_putc(b, '}');
    }
    return rc | sift_buf_putc(b, ']');
}

/* Every known warehouse, 0 where the SKU has no stock row (as
 * check_inventory answers), with its name and when the row last changed. */
static int put_stock(sift_buf *b, sift_store *st, sift_arena *a, const char *sku, sift_err *err)
{
    sift_stock *rows = NULL;
    const char **codes = NULL;
    size_t n = 0, nc = 0;
    int rc = sift_store_get_stock(st, sku, NULL, a, &rows, &n, err);
    if (rc || (rc = sift_store_list_warehouses(st, a, &codes, &nc, err)))
        return rc;
    int64_t total = 0;
    rc = sift_buf_puts(b, ",\"stock\":[");
    for (size_t i = 0; i < nc; i++) {
        const sift_stock *row = NULL;
        for (size_t j = 0; j < n; j++)
            if (!strcmp(rows[j].warehouse, codes[i]))
                row = &rows[j];
        const char *name = sift_query_warehouse_name(codes[i]);
        rc |= sift_buf_puts(b, i ? ",{\"code\":" : "{\"code\":");
        rc |= sift_buf_json_string(b, codes[i], strlen(codes[i]));
        if (name)
            rc |= put_member(b, "name", name);
        rc |= sift_buf_printf(b, ",\"quantity\":%lld", (long long)(row ? row->quantity : 0));
        if (row)
            rc |= sift_buf_printf(b, ",\"updated_at\":%lld}", (long long)row->updated_at);
        else
            rc |= sift_buf_puts(b, ",\"updated_at\":null}");
        total += row ? row->quantity : 0;
    }
    rc |= sift_buf_printf(b, "],\"in_stock\":%s", total > 0 ? "true" : "false");
    return rc;
}

/* The price in force now in each currency that has one. */
static int put_prices(sift_buf *b, sift_store *st, sift_arena *a, const char *sku, int64_t now,
                      sift_err *err)
{
    int rc = sift_buf_puts(b, ",\"prices\":[");
    int first = 1;
    for (size_t i = 0; i < sizeof currencies / sizeof currencies[0]; i++) {
        sift_price pr;
        int qrc = sift_store_get_price(st, sku, currencies[i], now, a, &pr, err);
        if (qrc == SIFT_ENOTFOUND) {
            sift_err_clear(err);
            continue;
        }
        if (qrc)
            return qrc;
        rc |= sift_buf_puts(b, first ? "{\"currency\":" : ",{\"currency\":");
        rc |= sift_buf_json_string(b, currencies[i], strlen(currencies[i]));
        rc |= sift_buf_puts(b, ",\"amount\":");
        rc |= sift_amount_json(b, pr.amount_minor, currencies[i]);
        rc |= sift_buf_putc(b, '}');
        first = 0;
    }
    return rc | sift_buf_puts(b, "]}");
}

/* Pool thread: reads only the lookup and the store. */
static int lookup_run(sift_store *st, void *ud, sift_err *err)
{
    struct lookup *l = ud;
    sift_arena *a = sift_arena_new(16384);
    sift_product p;
    int rc;
    if (!a)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    rc = sift_store_get_product(st, l->sku, a, &p, err);
    if (rc == SIFT_ENOTFOUND) {
        rc = sift_err_set(err, SIFT_ENOTFOUND, "no product with sku \"%s\"", l->sku);
        goto out;
    }
    if (rc)
        goto out;
    if (!(rc = put_product(&l->out, &p)) && !(rc = put_variants(&l->out, st, a, &p, err)) &&
        !(rc = put_stock(&l->out, st, a, l->sku, err)))
        rc = put_prices(&l->out, st, a, l->sku, l->now, err);
    /* the writers OR the buffer's codes together; a store error has set err */
    if (rc && !err->code)
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory writing the product");
out:
    sift_arena_free(a);
    return rc;
}

/* Loop: answers and frees the lookup. */
static void lookup_done(void *ud, int code, const sift_err *err)
{
    struct lookup *l = ud;
    if (code == 0) {
        /* stock and prices change by the second: never cached */
        sift_http_set_header(l->x, "cache-control", "no-store");
        sift_http_respond(l->x, 200, "application/json", l->out.data, l->out.len);
    } else if (code == SIFT_ENOTFOUND) {
        sift_http_respond_error(l->x, 404, "not_found", err->msg);
    } else {
        sift_http_respond_error(l->x, 500, sift_err_name(code),
                                err->msg[0] ? err->msg : "the store could not be read");
    }
    atomic_fetch_sub(sift_api_product_lookups(l->api), 1);
    sift_buf_free(&l->out);
    sift_free(l);
}

static void product_get(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    _Atomic int *inflight = sift_api_product_lookups(api);
    char sku[SIFT_SKU_MAX + 1];
    char msg[SIFT_ERR_MSG_MAX + 16];
    sift_err err = {0};
    if (sift_api_authenticate(api, x, sift_http_respond_error) < 0)
        return;
    /* The SKU is decoded from the path as sent: the server's normalised path
     * is decoded already, but ends at a "%00" and would decode "%2541" twice.
     * A client that encoded the prefix itself gets the normalised rest. */
    static const char prefix[] = "/v1/products/";
    size_t rawlen;
    const char *raw = sift_http_raw_path(x, &rawlen);
    int n;
    if (raw && rawlen >= sizeof prefix - 1 && !memcmp(raw, prefix, sizeof prefix - 1))
        n = decode_segment(raw + sizeof prefix - 1, rawlen - (sizeof prefix - 1), 1, sku,
                           sizeof sku);
    else
        n = decode_segment(sift_http_route_rest(x), strlen(sift_http_route_rest(x)), 0, sku,
                           sizeof sku);
    if (n < 0) {
        snprintf(msg, sizeof msg,
                 "sku: must be 1 to %d bytes of printable ASCII, percent-encoded in the path",
                 SIFT_SKU_MAX);
        sift_http_respond_error(x, 400, "invalid_request", msg);
        return;
    }
    if (sift_sku_check(sku, (size_t)n, &err)) {
        snprintf(msg, sizeof msg, "sku: %s", err.msg);
        sift_http_respond_error(x, 400, "invalid_request", msg);
        return;
    }
    if (atomic_fetch_add(inflight, 1) >= PRODUCT_LOOKUPS_MAX) {
        atomic_fetch_sub(inflight, 1);
        sift_http_set_header(x, "retry-after", "1");
        sift_http_respond_error(x, 503, "busy",
                                "too many product lookups in flight; retry shortly");
        return;
    }
    struct lookup *l = sift_calloc(1, sizeof *l);
    if (!l) {
        atomic_fetch_sub(inflight, 1);
        sift_http_respond_error(x, 503, "busy", "out of memory");
        return;
    }
    l->x = x;
    l->api = api;
    memcpy(l->sku, sku, (size_t)n + 1);
    l->now = (int64_t)time(NULL);
    sift_buf_init(&l->out, PRODUCT_JSON_LIMIT);
    if (sift_shop_query(sift_api_shop(api), sift_http_loop(x), lookup_run, lookup_done, l, &err)) {
        atomic_fetch_sub(inflight, 1);
        sift_free(l);
        sift_http_respond_error(x, 500, sift_err_name(err.code), err.msg);
    }
}

/* ---- GET /readyz: ready when the store answers ---- */

struct ready {
    sift_http_exchange *x;
    sift_api *api;
};

/* Pool thread: the cheapest read that needs a working connection. */
static int ready_run(sift_store *st, void *ud, sift_err *err)
{
    (void)ud;
    sift_arena *a = sift_arena_new(1024);
    const char **codes = NULL;
    size_t n = 0;
    if (!a)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    int rc = sift_store_list_warehouses(st, a, &codes, &n, err);
    sift_arena_free(a);
    return rc;
}

static void ready_done(void *ud, int code, const sift_err *err)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    struct ready *r = ud;
    sift_http_set_header(r->x, "cache-control", "no-store");
    if (code == 0) {
        sift_http_respond(r->x, 200, "application/json", ok, sizeof ok - 1);
    } else {
        /* /readyz is open: the store's own words (host, port, user, path)
         * go to the log, not to whoever asks */
        sift_log(SIFT_LOG_WARN, NULL, NULL, "readyz: the store cannot be read: %s",
                 err->msg[0] ? err->msg : sift_err_name(code));
        sift_http_respond_error(r->x, 503, "not_ready",
                                "the store cannot be read (the server log says why)");
    }
    atomic_fetch_sub(sift_api_product_lookups(r->api), 1);
    sift_free(r);
}

/* Open, like /healthz, but it reads the store through the same pool as the
 * tools, so an instance whose store is gone or broken (a PostgreSQL server
 * down, a replaced file) is taken out of rotation. Shares the lookups'
 * bound, since it queues pool work for anyone who asks. */
static void readyz(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    _Atomic int *inflight = sift_api_product_lookups(api);
    sift_err err = {0};
    if (atomic_fetch_add(inflight, 1) >= PRODUCT_LOOKUPS_MAX) {
        atomic_fetch_sub(inflight, 1);
        sift_http_set_header(x, "retry-after", "1");
        sift_http_respond_error(x, 503, "busy", "too many store reads in flight; retry shortly");
        return;
    }
    struct ready *r = sift_calloc(1, sizeof *r);
    if (!r) {
        atomic_fetch_sub(inflight, 1);
        sift_http_respond_error(x, 503, "busy", "out of memory");
        return;
    }
    r->x = x;
    r->api = api;
    if (sift_shop_query(sift_api_shop(api), sift_http_loop(x), ready_run, ready_done, r, &err)) {
        atomic_fetch_sub(inflight, 1);
        sift_free(r);
        sift_http_respond_error(x, 503, "not_ready", err.msg);
    }
}

int sift_api_products_mount(sift_api *api, sift_server *srv)
{
    if (sift_server_route(srv, "GET", "/readyz", readyz, api))
        return SIFT_ENOMEM;
    return sift_server_route(srv, "GET", "/v1/products/*", product_get, api);
}
