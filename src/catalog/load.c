/* Loading JSON Lines into a store: split lines, parse each, apply it, commit
 * every `batch` lines. A bad line is reported with its number and skipped;
 * only I/O and store failures stop a load. */
#include <errno.h>
#include <string.h>

#include "sift/catalog.h"
#include "sift/store.h"

#define READ_SIZE ((size_t)64 * 1024)

typedef struct loader {
    sift_store *store;
    int kind;
    sift_load_opts o;
    sift_load_summary sum;
    sift_arena *arena; /* per line; reset after each */
    size_t in_batch;
    int in_txn;
    sift_err *err;
} loader;

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

static int bad_line(loader *l, size_t lineno, const char *msg)
{
    char full[SIFT_ERR_MSG_MAX + 32];
    snprintf(full, sizeof full, "line %zu: %s", lineno, msg);
    l->sum.bad++;
    if (l->o.on_bad)
        l->o.on_bad(l->o.ud, lineno, full);
    if (l->o.max_bad && l->sum.bad >= l->o.max_bad)
        return sift_err_set(l->err, SIFT_EINVAL, "stopped after %zu bad lines (last: %s)",
                            l->sum.bad, full);
    return 0;
}

/* Applies one parsed line. Returns 0 (counted), 1 (bad input the store
 * refused: the message is in e) or a negative store error. */
static int apply(loader *l, const char *line, size_t len, sift_err *e)
{
    int rc, applied = 0, op = SIFT_OP_UPSERT;
    switch (l->kind) {
    case SIFT_CATALOG_PRODUCTS: {
        sift_product p;
        if ((rc = sift_product_parse(l->arena, line, len, l->o.default_version, &p, &op, e)))
            break;
        rc = op == SIFT_OP_DELETE
                 ? sift_store_delete_product(l->store, p.sku, p.version, &applied, e)
                 : sift_store_upsert_product(l->store, &p, &applied, e);
        break;
    }
    case SIFT_CATALOG_INVENTORY: {
        sift_stock st;
        if (!(rc = sift_stock_parse(l->arena, line, len, l->o.default_version, &st, e)))
            rc = sift_store_set_stock(l->store, &st, &applied, e);
        break;
    }
    default: {
        sift_price pr;
        if (!(rc = sift_price_parse(l->arena, line, len, l->o.default_version, &pr, e)))
            rc = sift_store_set_price(l->store, &pr, &applied, e);
        break;
    }
    }
    if (rc == SIFT_EINVAL || rc == SIFT_ETOOBIG)
        return 1;
    if (rc)
        return rc;
    if (applied) {
        l->sum.applied++;
        if (op == SIFT_OP_DELETE)
            l->sum.deleted++;
    } else {
        l->sum.stale++;
    }
    return 0;
}

static int flush(loader *l)
{
    if (!l->in_txn)
        return 0;
    int rc = sift_store_commit(l->store, l->err);
    if (rc)
        return rc;
    l->in_txn = 0;
    l->in_batch = 0;
    l->sum.batches++;
    if (l->o.on_progress)
        l->o.on_progress(l->o.ud, &l->sum);
    return 0;
}

static int on_line(void *ud, size_t lineno, const char *line, size_t len)
{
    loader *l = ud;
    l->sum.lines++;
    if (!line) {
        char msg[64];
        snprintf(msg, sizeof msg, "longer than %d bytes", SIFT_CATALOG_LINE_MAX);
        return bad_line(l, lineno, msg);
    }
    if (is_blank(line, len)) {
        l->sum.blank++;
        return 0;
    }
    int rc;
    if (!l->in_txn) {
        if ((rc = sift_store_begin(l->store, l->err)))
            return rc;
        l->in_txn = 1;
    }
    sift_err e = {0};
    rc = apply(l, line, len, &e);
    sift_arena_reset(l->arena);
    if (rc == 1)
        return bad_line(l, lineno, e.msg);
    if (rc) {
        sift_err_set(l->err, rc, "line %zu: %s", lineno, e.msg);
        return rc;
    }
    if (++l->in_batch >= l->o.batch)
        return flush(l);
    return 0;
}

int sift_catalog_load_jsonl(struct sift_store *store, FILE *f, int kind, const sift_load_opts *opts,
                            sift_load_summary *sum, sift_err *err)
{
    loader l = {.store = store, .kind = kind, .err = err};
    if (opts)
        l.o = *opts;
    if (l.o.batch == 0)
        l.o.batch = 5000;
    if (l.o.default_version <= 0)
        l.o.default_version = 1;
    int rc = 0;
    char *buf = NULL;
    sift_jsonl_reader r;
    sift_jsonl_init(&r, on_line, &l);
    if (kind != SIFT_CATALOG_PRODUCTS && kind != SIFT_CATALOG_INVENTORY &&
        kind != SIFT_CATALOG_PRICES) {
        rc = sift_err_set(err, SIFT_EINVAL, "load: unknown catalog kind %d", kind);
        goto out;
    }
    if (!store || !f) {
        rc = sift_err_set(err, SIFT_EINVAL, "load: no store or no input");
        goto out;
    }
    /* Big enough that a maximal line fits without growing the arena. */
    l.arena = sift_arena_new((size_t)SIFT_CATALOG_LINE_MAX * 2);
    buf = sift_malloc(READ_SIZE);
    if (!l.arena || !buf) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        size_t n = fread(buf, 1, READ_SIZE, f);
        if (n > 0 && (rc = sift_jsonl_feed(&r, buf, n)))
            break;
        if (n < READ_SIZE) {
            if (ferror(f)) {
                rc = sift_err_set(err, SIFT_EIO, "load: read error: %s", strerror(errno));
                break;
            }
            if (feof(f))
                break;
        }
    }
    if (!rc)
        rc = sift_jsonl_finish(&r);
    if (!rc)
        rc = flush(&l);
    if (rc == SIFT_ENOMEM && err && err->code != SIFT_ENOMEM)
        sift_err_set(err, rc, "out of memory");
out:
    if (l.in_txn) {
        sift_err ignored = {0};
        sift_store_rollback(store, &ignored);
    }
    sift_jsonl_free(&r);
    sift_free(buf);
    sift_arena_free(l.arena);
    if (sum)
        *sum = l.sum;
    return rc;
}
