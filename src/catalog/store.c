/* The store interface: argument checks shared by every backend, then a call
 * through the backend's operations; and the attrs encoding they share
 * (store_int.h). */
#include <string.h>

#include <cjson/cJSON.h>

#include "sift/pgstore.h"
#include "sift/store.h"
#include "store_int.h"

static int check_store(sift_store *s, sift_err *err)
{
    if (!s || !s->ops)
        return sift_err_set(err, SIFT_EINVAL, "store: not open");
    return 0;
}

static int check_sku(const char *what, const char *sku, sift_err *err)
{
    if (!sku)
        return sift_err_set(err, SIFT_EINVAL, "%s: missing", what);
    sift_err e = {0};
    int rc = sift_sku_check(sku, strlen(sku), &e);
    if (rc)
        return sift_err_set(err, rc, "%s: %s", what, e.msg);
    return 0;
}

static int check_version(int64_t v, sift_err *err)
{
    if (v < 0 || v > SIFT_VERSION_MAX)
        return sift_err_set(err, SIFT_EINVAL, "version: must be between 0 and 2^53");
    return 0;
}

int sift_store_open(const char *where, int readonly, sift_store **out, sift_err *err)
{
    *out = NULL;
    if (!where || !*where)
        return sift_err_set(err, SIFT_EINVAL, "store: no database path or URL");
    if (sift_pg_is_url(where)) {
        sift_store_pg_opts o = {.readonly = readonly};
        return sift_store_pg_open(where, &o, out, err);
    }
    sift_store_sqlite_opts o = {.readonly = readonly};
    return sift_store_sqlite_open(where, &o, out, err);
}

void sift_store_close(sift_store *s)
{
    if (s && s->ops)
        s->ops->close(s);
}

const char *sift_store_backend(const sift_store *s)
{
    return s && s->ops ? s->ops->name : "none";
}

int sift_store_begin(sift_store *s, sift_err *err)
{
    int rc = check_store(s, err);
    return rc ? rc : s->ops->begin(s, err);
}

int sift_store_commit(sift_store *s, sift_err *err)
{
    int rc = check_store(s, err);
    return rc ? rc : s->ops->commit(s, err);
}

int sift_store_rollback(sift_store *s, sift_err *err)
{
    int rc = check_store(s, err);
    return rc ? rc : s->ops->rollback(s, err);
}

int sift_store_upsert_product(sift_store *s, const sift_product *p, int *applied, sift_err *err)
{
    int rc;
    if (applied)
        *applied = 0;
    if ((rc = check_store(s, err)))
        return rc;
    if (!p || !p->title || !p->title[0])
        return sift_err_set(err, SIFT_EINVAL, "title: missing");
    if (!p->parent_id || !p->brand || !p->category || !p->description ||
        (p->n_attrs > 0 && !p->attrs))
        return sift_err_set(err, SIFT_EINVAL, "product: optional strings must be \"\", not NULL");
    if ((rc = check_sku("sku", p->sku, err)) || (rc = check_version(p->version, err)))
        return rc;
    return s->ops->upsert_product(s, p, applied, err);
}

int sift_store_delete_product(sift_store *s, const char *sku, int64_t version, int *applied,
                              sift_err *err)
{
    int rc;
    if (applied)
        *applied = 0;
    if ((rc = check_store(s, err)) || (rc = check_sku("sku", sku, err)) ||
        (rc = check_version(version, err)))
        return rc;
    return s->ops->delete_product(s, sku, version, applied, err);
}

int sift_store_get_product(sift_store *s, const char *sku, sift_arena *a, sift_product *out,
                           sift_err *err)
{
    int rc;
    if ((rc = check_store(s, err)) || (rc = check_sku("sku", sku, err)))
        return rc;
    return s->ops->get_product(s, sku, a, out, err);
}

int sift_store_set_stock(sift_store *s, const sift_stock *st, int *applied, sift_err *err)
{
    int rc;
    if (applied)
        *applied = 0;
    if ((rc = check_store(s, err)))
        return rc;
    if (!st || !st->warehouse || !st->warehouse[0] || strlen(st->warehouse) > SIFT_WAREHOUSE_MAX)
        return sift_err_set(err, SIFT_EINVAL, "warehouse: missing or too long");
    if (st->quantity < 0 || st->quantity > INT32_MAX)
        return sift_err_set(err, SIFT_EINVAL, "quantity: must be between 0 and %d", INT32_MAX);
    if ((rc = check_sku("sku", st->sku, err)) || (rc = check_version(st->version, err)))
        return rc;
    return s->ops->set_stock(s, st, applied, err);
}

int sift_store_get_stock(sift_store *s, const char *sku, const char *warehouse, sift_arena *a,
                         sift_stock **rows, size_t *n, sift_err *err)
{
    int rc;
    *rows = NULL;
    *n = 0;
    if ((rc = check_store(s, err)) || (rc = check_sku("sku", sku, err)))
        return rc;
    return s->ops->get_stock(s, sku, warehouse, a, rows, n, err);
}

int sift_store_set_price(sift_store *s, const sift_price *p, int *applied, sift_err *err)
{
    int rc;
    if (applied)
        *applied = 0;
    if ((rc = check_store(s, err)))
        return rc;
    if (!p || !p->currency || strlen(p->currency) != 3)
        return sift_err_set(err, SIFT_EINVAL, "currency: must be a three-letter ISO 4217 code");
    if (p->amount_minor < 0)
        return sift_err_set(err, SIFT_EINVAL, "amount: must not be negative");
    if ((rc = check_sku("sku", p->sku, err)) || (rc = check_version(p->version, err)))
        return rc;
    return s->ops->set_price(s, p, applied, err);
}

int sift_store_get_price(sift_store *s, const char *sku, const char *currency, int64_t at,
                         sift_arena *a, sift_price *out, sift_err *err)
{
    int rc;
    if ((rc = check_store(s, err)) || (rc = check_sku("sku", sku, err)))
        return rc;
    if (!currency || strlen(currency) != 3)
        return sift_err_set(err, SIFT_EINVAL, "currency: must be a three-letter ISO 4217 code");
    return s->ops->get_price(s, sku, currency, at, a, out, err);
}

int sift_store_list_warehouses(sift_store *s, sift_arena *a, const char ***codes, size_t *n,
                               sift_err *err)
{
    int rc;
    *codes = NULL;
    *n = 0;
    if ((rc = check_store(s, err)))
        return rc;
    return s->ops->list_warehouses(s, a, codes, n, err);
}

int sift_store_search_fts(sift_store *s, const char *query, size_t k, sift_arena *a,
                          sift_hit **hits, size_t *n, sift_err *err)
{
    int rc;
    *hits = NULL;
    *n = 0;
    if ((rc = check_store(s, err)))
        return rc;
    if (!query)
        return sift_err_set(err, SIFT_EINVAL, "query: missing");
    if (k == 0)
        return 0;
    if (k > 1000)
        k = 1000;
    return s->ops->search_fts(s, query, k, a, hits, n, err);
}

int sift_store_bulk(sift_store *s, int on, sift_err *err)
{
    int rc = check_store(s, err);
    if (rc || !s->ops->bulk)
        return rc;
    return s->ops->bulk(s, on, err);
}

int sift_store_scan_products(sift_store *s, sift_store_scan_fn fn, void *ud, sift_err *err)
{
    int rc;
    if ((rc = check_store(s, err)))
        return rc;
    if (!fn)
        return sift_err_set(err, SIFT_EINVAL, "scan: missing callback");
    if (!s->ops->scan_products)
        return sift_err_set(err, SIFT_ESTATE, "store %s: cannot scan products", s->ops->name);
    return s->ops->scan_products(s, fn, ud, err);
}

int sift_store_list_variants(sift_store *s, const char *parent_id, size_t max, sift_arena *a,
                             sift_product **out, size_t *n, sift_err *err)
{
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = check_store(s, err)) || (rc = check_sku("parent_id", parent_id, err)))
        return rc;
    if (!s->ops->list_variants)
        return sift_err_set(err, SIFT_ESTATE, "store %s: cannot list variants", s->ops->name);
    if (max > SIFT_VARIANTS_MAX)
        max = SIFT_VARIANTS_MAX;
    return max ? s->ops->list_variants(s, parent_id, max, a, out, n, err) : 0;
}

int sift_store_attrs_json(sift_buf *b, const sift_product *p)
{
    sift_buf_reset(b);
    int rc = sift_buf_putc(b, '{');
    for (size_t i = 0; !rc && i < p->n_attrs; i++) {
        if (i)
            rc = sift_buf_putc(b, ',');
        if (!rc)
            rc = sift_buf_putc(b, '"');
        if (!rc)
            rc = sift_buf_json_escape(b, p->attrs[i].key, strlen(p->attrs[i].key));
        if (!rc)
            rc = sift_buf_puts(b, "\":\"");
        if (!rc)
            rc = sift_buf_json_escape(b, p->attrs[i].value, strlen(p->attrs[i].value));
        if (!rc)
            rc = sift_buf_putc(b, '"');
    }
    if (!rc)
        rc = sift_buf_putc(b, '}');
    return rc;
}

int sift_store_attrs_parse(sift_arena *a, const char *json, sift_product *out, sift_err *err)
{
    out->attrs = NULL;
    out->n_attrs = 0;
    cJSON *j = cJSON_Parse(json);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sift_err_set(err, SIFT_EINTERNAL, "store: stored attributes are not a JSON object");
    }
    int n = cJSON_GetArraySize(j);
    int rc = 0;
    if (n > 0) {
        out->attrs = sift_arena_calloc(a, (size_t)n, sizeof *out->attrs);
        if (!out->attrs) {
            rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
            goto fail;
        }
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, j)
    {
        if (!cJSON_IsString(m) || !m->string || !out->attrs)
            continue;
        sift_attr *at = &out->attrs[out->n_attrs];
        at->key = sift_arena_strdup(a, m->string);
        at->value = sift_arena_strdup(a, m->valuestring);
        if (!at->key || !at->value) {
            rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
            goto fail;
        }
        out->n_attrs++;
    }
fail:
    cJSON_Delete(j);
    return rc;
}

static int sku_sep(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',';
}

int sift_store_next_sku_word(const char **p, const char **w, size_t *len)
{
    const char *s = *p;
    for (;;) {
        while (sku_sep(*s))
            s++;
        const char *start = s;
        while (*s && !sku_sep(*s))
            s++;
        size_t n = (size_t)(s - start);
        if (n == 0)
            break;
        /* Trailing sentence punctuation is not part of a SKU. */
        while (n > 1 && strchr(".;:!?)", start[n - 1]))
            n--;
        if (n >= 3 && sift_sku_check(start, n, NULL) == 0) {
            *p = s;
            *w = start;
            *len = n;
            return 1;
        }
    }
    *p = s;
    return 0;
}
