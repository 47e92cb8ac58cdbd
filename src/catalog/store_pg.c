/* The PostgreSQL store: the same interface and version rules as the SQLite
 * store, over one blocking libpq connection (schema: pg_schema.c).
 *
 * Each write is one statement: the product upsert and its chunk, the
 * tombstone and the chunk removal, the stock row and its warehouse are each
 * written by one statement with data-modifying CTEs, so a write outside
 * begin/commit is still atomic and costs one round trip. The version rules
 * are the WHERE clauses of the ON CONFLICT updates, as in SQLite; "applied"
 * is whether the statement returned a row.
 *
 * Full-text: chunks.tsv (weighted per field, see pg_schema.c) under a GIN
 * index. Query words are split in C the way the SQLite tokenizer splits them
 * (letters and digits; any non-ASCII byte is a letter), at most 8 distinct,
 * and stemmed by PostgreSQL (plainto_tsquery with the same configuration as
 * the index). The passes are the SQLite store's: exact SKUs first, then all
 * terms (AND), then, when that finds fewer than k, the rarest terms (OR)
 * whose documents fit FTS_CAP; a pass scores at most FTS_CAP documents.
 * Ranking is ts_rank with the field weights {1/3, 1/2, 2/3, 1} for D, C, B,
 * A and length normalisation 1 (divide by 1 + log(length)): term frequency
 * weighted by field like BM25, but without BM25's idf or saturation, so
 * scores are not comparable to the SQLite store's and the order of hits of
 * similar relevance can differ between the two backends.
 *
 * Statements are prepared once per connection. When the connection is lost
 * outside a transaction, a call reconnects (PQreset), prepares them again
 * and retries once; inside a transaction the call fails and the caller rolls
 * back, since the server has discarded the transaction's work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/buf.h"
#include "sift/pgstore.h"
#include "sift/store.h"
#include "store_int.h"

#define FTS_CAP 1000
#define FTS_MAX_TERMS 8
#define FTS_MAX_SKU_WORDS 8
#define FTS_EXACT_SCORE 1e9
#define FTS_TERM_MAX 64

/* ts_rank's weights, in the order D, C, B, A. */
#define RANK_WEIGHTS "'{0.333333333333,0.5,0.666666666667,1.0}'::float4[]"

enum {
    ST_UPSERT_PRODUCT,
    ST_DELETE_PRODUCT,
    ST_GET_PRODUCT,
    ST_LIST_VARIANTS,
    ST_SET_STOCK,
    ST_GET_STOCK,
    ST_SET_PRICE,
    ST_GET_PRICE,
    ST_LIST_WAREHOUSES,
    ST_SKU_EXACT,
    ST_TERM_DOCS,
    ST_SEARCH_AND,
    ST_SEARCH_OR,
    ST_COUNT
};

static const struct {
    int nparams;
    const char *sql;
} stmts[ST_COUNT] = {
    /* $1 sku .. $7 description, $8 version, $9 updated_at; $10 chunk text. The
     * chunk's fields are the chunk builder's (normalised), not the product's. */
    [ST_UPSERT_PRODUCT] =
        {16, "WITH p AS ("
             " INSERT INTO products (sku, parent_id, title, brand, category, attrs, description,"
             "  version, deleted, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, $9)"
             " ON CONFLICT (lower(sku)) DO UPDATE SET sku = excluded.sku,"
             "  parent_id = excluded.parent_id, title = excluded.title, brand = excluded.brand,"
             "  category = excluded.category, attrs = excluded.attrs,"
             "  description = excluded.description, version = excluded.version, deleted = false,"
             "  updated_at = excluded.updated_at"
             " WHERE excluded.version > products.version"
             " RETURNING id)"
             " INSERT INTO chunks (id, sku, title, brand, category, attrs, description, text)"
             " SELECT id, $10, $11, $12, $13, $14, $15, $16 FROM p"
             " ON CONFLICT (id) DO UPDATE SET sku = excluded.sku, title = excluded.title,"
             "  brand = excluded.brand, category = excluded.category, attrs = excluded.attrs,"
             "  description = excluded.description, text = excluded.text"
             " RETURNING id"},
    /* At equal versions the delete wins, so upsert(v) and delete(v) give the
     * same result in either order. */
    [ST_DELETE_PRODUCT] =
        {3, "WITH p AS ("
            " INSERT INTO products (sku, version, deleted, updated_at) VALUES ($1, $2, true, $3)"
            " ON CONFLICT (lower(sku)) DO UPDATE SET parent_id = '', title = '', brand = '',"
            "  category = '', attrs = '{}', description = '', version = excluded.version,"
            "  deleted = true, updated_at = excluded.updated_at"
            " WHERE excluded.version > products.version"
            "  OR (excluded.version = products.version AND NOT products.deleted)"
            " RETURNING id),"
            " d AS (DELETE FROM chunks WHERE id IN (SELECT id FROM p))"
            " SELECT id FROM p"},
    [ST_GET_PRODUCT] = {1, "SELECT sku, parent_id, title, brand, category, attrs, description,"
                           " version FROM products WHERE lower(sku) = lower($1) AND NOT deleted"},
    /* "parent_id <> ''" lets the planner use the partial index products_parent */
    [ST_LIST_VARIANTS] = {2, "SELECT sku, parent_id, title, brand, category, attrs, description,"
                             " version FROM products WHERE parent_id = $1 AND parent_id <> ''"
                             " AND NOT deleted ORDER BY id LIMIT $2"},
    [ST_SET_STOCK] =
        {5, "WITH s AS ("
            " INSERT INTO inventory (sku, warehouse, quantity, version, updated_at)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (lower(sku), warehouse) DO UPDATE SET quantity = excluded.quantity,"
            "  version = excluded.version, updated_at = excluded.updated_at"
            " WHERE excluded.version > inventory.version"
            " RETURNING warehouse),"
            " w AS (INSERT INTO warehouses (code) SELECT warehouse FROM s ON CONFLICT DO NOTHING)"
            " SELECT 1 FROM s"},
    /* COLLATE "C": byte order, as SQLite sorts, whatever the database's locale. */
    [ST_GET_STOCK] = {2, "SELECT sku, warehouse, quantity, version, updated_at FROM inventory"
                         " WHERE lower(sku) = lower($1) AND ($2::text IS NULL OR warehouse = $2)"
                         " ORDER BY warehouse COLLATE \"C\""},
    [ST_SET_PRICE] = {5, "INSERT INTO prices (sku, currency, valid_from, amount_minor, version)"
                         " VALUES ($1, $2, $3, $4, $5)"
                         " ON CONFLICT (lower(sku), currency, valid_from) DO UPDATE SET"
                         "  amount_minor = excluded.amount_minor, version = excluded.version"
                         " WHERE excluded.version > prices.version"
                         " RETURNING 1"},
    [ST_GET_PRICE] = {3, "SELECT sku, currency, amount_minor, valid_from, version FROM prices"
                         " WHERE lower(sku) = lower($1) AND currency = $2 AND valid_from <= $3"
                         " ORDER BY valid_from DESC LIMIT 1"},
    [ST_LIST_WAREHOUSES] = {0, "SELECT code FROM warehouses ORDER BY code COLLATE \"C\""},
    [ST_SKU_EXACT] = {1, "SELECT sku, title FROM products WHERE lower(sku) = lower($1)"
                         " AND NOT deleted"},
    /* Documents holding each term ($1, an array), counted up to $2: all the
     * OR pass needs to know is whether a term fits the budget. */
    [ST_TERM_DOCS] = {2, "SELECT (SELECT count(*) FROM (SELECT 1 FROM chunks"
                         "  WHERE tsv @@ plainto_tsquery('sift_en', t) LIMIT $2) x)"
                         " FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i"},
    /* Innermost: at most $3 matches, scored (bounded work); middle: the best
     * $2 of them; outer: their SKU and title. */
    [ST_SEARCH_AND] = {3, "SELECT c.sku, c.title, t.s FROM"
                          " (SELECT id, s FROM"
                          "   (SELECT id, ts_rank(" RANK_WEIGHTS ", tsv,"
                          "     plainto_tsquery('sift_en', $1), 1) AS s"
                          "    FROM chunks WHERE tsv @@ plainto_tsquery('sift_en', $1) LIMIT $3) m"
                          "  ORDER BY s DESC, id LIMIT $2) t"
                          " JOIN chunks c ON c.id = t.id ORDER BY t.s DESC, c.id"},
    /* The same over any of the terms: plainto_tsquery's ANDs turned into ORs
     * (the terms are letters and digits only, so the text form has no other
     * '&'). */
    [ST_SEARCH_OR] = {3, "SELECT c.sku, c.title, t.s FROM"
                         " (SELECT id, s FROM"
                         "   (SELECT id, ts_rank(" RANK_WEIGHTS ", tsv, q, 1) AS s"
                         "    FROM chunks, (SELECT replace(plainto_tsquery('sift_en', $1)::text,"
                         "      ' & ', ' | ')::tsquery AS q) qq"
                         "    WHERE tsv @@ q LIMIT $3) m"
                         "  ORDER BY s DESC, id LIMIT $2) t"
                         " JOIN chunks c ON c.id = t.id ORDER BY t.s DESC, c.id"},
};

typedef struct pg_store {
    sift_store base; /* first: the interface */
    PGconn *conn;
    char where[512]; /* the URL, masked, for messages */
    int readonly;
    int in_txn;
    int prepared;
    sift_chunk chunk; /* reused by every upsert */
    sift_buf attrs;   /* attrs JSON, reused */
    sift_buf match;   /* query terms, reused */
} pg_store;

/* Text parameters for one statement (NULL is SQL NULL); integers are
 * formatted into num. */
typedef struct params {
    const char *v[16];
    char num[16][24];
    int n;
} params;

static void p_str(params *p, const char *s)
{
    p->v[p->n++] = s;
}

static void p_i64(params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)x);
    p_str(p, p->num[p->n]);
}

/* A string of known length (not NUL-terminated): copied, terminated, to
 * scratch at *offs. The parameter is pointed at it once every field is in,
 * since appending may move the buffer. */
static int p_text(params *p, sift_buf *scratch, const char *s, size_t n, size_t *offs)
{
    *offs = scratch->len;
    if (sift_buf_append(scratch, s, n) || sift_buf_putc(scratch, '\0'))
        return SIFT_ENOMEM;
    p_str(p, NULL); /* fixed up once the scratch buffer stops moving */
    return 0;
}

static pg_store *impl(sift_store *s)
{
    return (pg_store *)s;
}

static int64_t now_seconds(void)
{
    return (int64_t)time(NULL);
}

/* A SIFT_E code for a failed result. */
static int code_of(PGconn *c, const PGresult *r)
{
    if (PQstatus(c) == CONNECTION_BAD)
        return SIFT_EIO;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return SIFT_EIO;
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03") ||
        !strcmp(state, "53300"))
        return SIFT_EBUSY; /* serialisation, deadlock, lock timeout, too many connections */
    if (!strcmp(state, "57014"))
        return SIFT_ECANCELED;
    if (!strncmp(state, "23", 2) || !strncmp(state, "22", 2))
        return SIFT_EINVAL; /* constraint, data exception */
    if (!strcmp(state, "25006"))
        return SIFT_EINVAL; /* read-only transaction */
    return SIFT_EIO;
}

static int pq_fail(pg_store *s, const PGresult *r, const char *what, sift_err *err)
{
    char msg[SIFT_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
    msg[strcspn(msg, "\n")] = '\0';
    if (PQstatus(s->conn) == CONNECTION_BAD)
        return sift_err_set(err, SIFT_EIO, "%s: %s: connection to PostgreSQL lost: %s", s->where,
                            what, msg);
    return sift_err_set(err, code_of(s->conn, r), "postgres: %s: %s", what, msg);
}

static int prepare_all(pg_store *s, sift_err *err)
{
    for (int i = 0; i < ST_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof name, "sift_s%d", i);
        PGresult *r = PQprepare(s->conn, name, stmts[i].sql, stmts[i].nparams, NULL);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pq_fail(s, r, "prepare", err);
        PQclear(r);
        if (rc)
            return rc;
    }
    s->prepared = 1;
    return 0;
}

/* Reconnects after a lost connection, when no transaction was open (inside
 * one the work is gone and the caller has to know). */
static int ensure_conn(pg_store *s, sift_err *err)
{
    if (PQstatus(s->conn) == CONNECTION_OK && s->prepared)
        return 0;
    if (s->in_txn)
        return sift_err_set(err, SIFT_EIO,
                            "%s: connection to PostgreSQL lost inside a transaction; roll back "
                            "and retry",
                            s->where);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        PQreset(s->conn);
        if (PQstatus(s->conn) != CONNECTION_OK) {
            char msg[SIFT_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
            msg[strcspn(msg, "\n")] = '\0';
            return sift_err_set(err, SIFT_EIO, "%s: cannot reconnect to PostgreSQL: %s", s->where,
                                msg);
        }
        s->prepared = 0;
        if (s->readonly) {
            PGresult *r = PQexec(s->conn, "SET default_transaction_read_only = on");
            int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pq_fail(s, r, "reconnect", err);
            PQclear(r);
            if (rc)
                return rc;
        }
    }
    return prepare_all(s, err);
}

/* Runs prepared statement `which`; *out gets the result (rows or none). */
static int run(pg_store *s, int which, const params *p, PGresult **out, const char *what,
               sift_err *err)
{
    *out = NULL;
    int rc = ensure_conn(s, err);
    if (rc)
        return rc;
    char name[16];
    snprintf(name, sizeof name, "sift_s%d", which);
    PGresult *r = PQexecPrepared(s->conn, name, p ? p->n : 0, p ? p->v : NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    /* The connection was found dead (server restarted, idle connection
     * dropped): outside a transaction, reconnect and try once more. Every
     * statement is safe to repeat: writes are version-gated, so a write that
     * did commit before the connection broke is a no-op the second time. */
    if (st == PGRES_FATAL_ERROR && !s->in_txn && PQstatus(s->conn) == CONNECTION_BAD) {
        PQclear(r);
        if ((rc = ensure_conn(s, err)))
            return rc;
        r = PQexecPrepared(s->conn, name, p ? p->n : 0, p ? p->v : NULL, NULL, NULL, 0);
        st = PQresultStatus(r);
    }
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = pq_fail(s, r, what, err);
        PQclear(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int simple(pg_store *s, const char *sql, const char *what, sift_err *err)
{
    PGresult *r = PQexec(s->conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pq_fail(s, r, what, err);
    PQclear(r);
    return rc;
}

static char *col_str(sift_arena *a, const PGresult *r, int row, int col)
{
    return sift_arena_strndup(a, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void pg_close(sift_store *base)
{
    pg_store *s = impl(base);
    if (s->in_txn && s->conn && PQstatus(s->conn) == CONNECTION_OK)
        PQclear(PQexec(s->conn, "ROLLBACK"));
    if (s->conn)
        PQfinish(s->conn);
    sift_chunk_free(&s->chunk);
    sift_buf_free(&s->attrs);
    sift_buf_free(&s->match);
    sift_free(s);
}

static int pg_begin(sift_store *base, sift_err *err)
{
    pg_store *s = impl(base);
    if (s->in_txn)
        return sift_err_set(err, SIFT_ESTATE, "store: a transaction is already open");
    int rc = ensure_conn(s, err);
    if (!rc)
        rc = simple(s, "BEGIN", "begin", err);
    if (!rc)
        s->in_txn = 1;
    return rc;
}

static int pg_commit(sift_store *base, sift_err *err)
{
    pg_store *s = impl(base);
    if (!s->in_txn)
        return sift_err_set(err, SIFT_ESTATE, "store: no transaction to commit");
    /* COMMIT of a transaction that failed earlier answers ROLLBACK without
     * an error: report it, since nothing was written. */
    PGresult *r = PQexec(s->conn, "COMMIT");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = pq_fail(s, r, "commit", err);
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
        rc = sift_err_set(err, SIFT_EIO,
                          "postgres: commit: the transaction had failed and was rolled back");
    PQclear(r);
    s->in_txn = 0;
    return rc;
}

static int pg_rollback(sift_store *base, sift_err *err)
{
    pg_store *s = impl(base);
    if (!s->in_txn)
        return sift_err_set(err, SIFT_ESTATE, "store: no transaction to roll back");
    s->in_txn = 0;
    if (PQstatus(s->conn) != CONNECTION_OK)
        return 0; /* the server dropped the transaction with the connection */
    return simple(s, "ROLLBACK", "rollback", err);
}

/* attrs as a JSON object in input order, for get_product. */

/* PostgreSQL refuses text that is not UTF-8, and a refused statement aborts
 * the whole transaction (the loader's batch) where SQLite would have stored
 * the bytes. Checking first turns it into one bad line. */
static int check_utf8(const sift_product *p, sift_err *err)
{
    const char *names[] = {"parent_id", "title", "brand", "category", "description"};
    const char *vals[] = {p->parent_id, p->title, p->brand, p->category, p->description};
    for (size_t i = 0; i < 5; i++)
        if (!sift_utf8_valid(vals[i], strlen(vals[i])))
            return sift_err_set(err, SIFT_EINVAL, "%s: not valid UTF-8", names[i]);
    for (size_t i = 0; i < p->n_attrs; i++)
        if (!sift_utf8_valid(p->attrs[i].key, strlen(p->attrs[i].key)) ||
            !sift_utf8_valid(p->attrs[i].value, strlen(p->attrs[i].value)))
            return sift_err_set(err, SIFT_EINVAL, "attributes: not valid UTF-8");
    return 0;
}

static int pg_upsert_product(sift_store *base, const sift_product *p, int *applied, sift_err *err)
{
    pg_store *s = impl(base);
    int rc = check_utf8(p, err);
    if (!rc)
        rc = sift_chunk_build(&s->chunk, p, err);
    if (rc)
        return rc;
    if (sift_store_attrs_json(&s->attrs, p) || sift_buf_putc(&s->attrs, '\0'))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    params pa = {0};
    p_str(&pa, p->sku);
    p_str(&pa, p->parent_id);
    p_str(&pa, p->title);
    p_str(&pa, p->brand);
    p_str(&pa, p->category);
    p_str(&pa, s->attrs.data);
    p_str(&pa, p->description);
    p_i64(&pa, p->version);
    p_i64(&pa, now_seconds());
    /* The chunk's fields are length-delimited: copy them, NUL-terminated,
     * into one scratch buffer and point at it once it is complete. */
    const sift_chunk *c = &s->chunk;
    const char *f[7] = {c->sku, c->title, c->brand, c->category, c->attrs, c->description, c->text};
    size_t flen[7] = {c->sku_len,   c->title_len,       c->brand_len, c->category_len,
                      c->attrs_len, c->description_len, c->text_len};
    size_t offs[7];
    sift_buf_reset(&s->match);
    for (int i = 0; i < 7; i++)
        if (p_text(&pa, &s->match, f[i], flen[i], &offs[i]))
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    for (int i = 0; i < 7; i++)
        pa.v[9 + i] = s->match.data + offs[i];
    PGresult *r;
    if ((rc = run(s, ST_UPSERT_PRODUCT, &pa, &r, "upsert product", err)))
        return rc;
    if (applied)
        *applied = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

static int pg_delete_product(sift_store *base, const char *sku, int64_t version, int *applied,
                             sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, sku);
    p_i64(&pa, version);
    p_i64(&pa, now_seconds());
    PGresult *r;
    int rc = run(s, ST_DELETE_PRODUCT, &pa, &r, "delete product", err);
    if (rc)
        return rc;
    if (applied)
        *applied = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

/* Row `row` of (sku, parent_id, title, brand, category, attrs, description,
 * version) into out. */
static int product_of(sift_arena *a, const PGresult *r, int row, sift_product *out, sift_err *err)
{
    memset(out, 0, sizeof *out);
    out->sku = col_str(a, r, row, 0);
    out->parent_id = col_str(a, r, row, 1);
    out->title = col_str(a, r, row, 2);
    out->brand = col_str(a, r, row, 3);
    out->category = col_str(a, r, row, 4);
    out->description = col_str(a, r, row, 6);
    out->version = col_i64(r, row, 7);
    if (!out->sku || !out->parent_id || !out->title || !out->brand || !out->category ||
        !out->description)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    return sift_store_attrs_parse(a, PQgetvalue(r, row, 5), out, err);
}

static int pg_get_product(sift_store *base, const char *sku, sift_arena *a, sift_product *out,
                          sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, sku);
    PGresult *r;
    int rc = run(s, ST_GET_PRODUCT, &pa, &r, "get product", err);
    if (rc)
        return rc;
    if (PQntuples(r) == 0)
        rc = sift_err_set(err, SIFT_ENOTFOUND, "sku %s: no such product", sku);
    else
        rc = product_of(a, r, 0, out, err);
    PQclear(r);
    return rc;
}

static int pg_list_variants(sift_store *base, const char *parent_id, size_t max, sift_arena *a,
                            sift_product **out, size_t *n, sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, parent_id);
    p_i64(&pa, (int64_t)max);
    PGresult *r;
    int rc = run(s, ST_LIST_VARIANTS, &pa, &r, "list variants", err);
    if (rc)
        return rc;
    int cnt = PQntuples(r);
    sift_product *v = sift_arena_calloc(a, cnt ? (size_t)cnt : 1, sizeof *v);
    if (!v) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < cnt; i++) {
        if ((rc = product_of(a, r, i, &v[i], err)))
            goto out;
        *n = (size_t)i + 1;
    }
    *out = v;
out:
    PQclear(r);
    return rc;
}

static int pg_set_stock(sift_store *base, const sift_stock *stk, int *applied, sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, stk->sku);
    p_str(&pa, stk->warehouse);
    p_i64(&pa, stk->quantity);
    p_i64(&pa, stk->version);
    p_i64(&pa, stk->updated_at > 0 ? stk->updated_at : now_seconds());
    PGresult *r;
    int rc = run(s, ST_SET_STOCK, &pa, &r, "set stock", err);
    if (rc)
        return rc;
    if (applied)
        *applied = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

static int pg_get_stock(sift_store *base, const char *sku, const char *warehouse, sift_arena *a,
                        sift_stock **rows, size_t *n, sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, sku);
    p_str(&pa, warehouse);
    PGresult *r;
    *rows = NULL;
    *n = 0;
    int rc = run(s, ST_GET_STOCK, &pa, &r, "get stock", err);
    if (rc)
        return rc;
    int cnt = PQntuples(r);
    sift_stock *out = cnt ? sift_arena_calloc(a, (size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < cnt; i++) {
        out[i].sku = col_str(a, r, i, 0);
        out[i].warehouse = col_str(a, r, i, 1);
        out[i].quantity = col_i64(r, i, 2);
        out[i].version = col_i64(r, i, 3);
        out[i].updated_at = col_i64(r, i, 4);
        if (!out[i].sku || !out[i].warehouse) {
            rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
            goto out;
        }
    }
    *rows = out;
    *n = (size_t)cnt;
out:
    PQclear(r);
    return rc;
}

static int pg_set_price(sift_store *base, const sift_price *p, int *applied, sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, p->sku);
    p_str(&pa, p->currency);
    p_i64(&pa, p->valid_from);
    p_i64(&pa, p->amount_minor);
    p_i64(&pa, p->version);
    PGresult *r;
    int rc = run(s, ST_SET_PRICE, &pa, &r, "set price", err);
    if (rc)
        return rc;
    if (applied)
        *applied = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

static int pg_get_price(sift_store *base, const char *sku, const char *currency, int64_t at,
                        sift_arena *a, sift_price *out, sift_err *err)
{
    pg_store *s = impl(base);
    params pa = {0};
    p_str(&pa, sku);
    p_str(&pa, currency);
    p_i64(&pa, at);
    PGresult *r;
    int rc = run(s, ST_GET_PRICE, &pa, &r, "get price", err);
    if (rc)
        return rc;
    if (PQntuples(r) == 0) {
        rc = sift_err_set(err, SIFT_ENOTFOUND, "sku %s: no %s price", sku, currency);
    } else {
        out->sku = col_str(a, r, 0, 0);
        out->currency = col_str(a, r, 0, 1);
        out->amount_minor = col_i64(r, 0, 2);
        out->valid_from = col_i64(r, 0, 3);
        out->version = col_i64(r, 0, 4);
        if (!out->sku || !out->currency)
            rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

static int pg_list_warehouses(sift_store *base, sift_arena *a, const char ***codes, size_t *n,
                              sift_err *err)
{
    pg_store *s = impl(base);
    PGresult *r;
    *codes = NULL;
    *n = 0;
    int rc = run(s, ST_LIST_WAREHOUSES, NULL, &r, "list warehouses", err);
    if (rc)
        return rc;
    int cnt = PQntuples(r);
    const char **out = cnt ? sift_arena_calloc(a, (size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < cnt; i++)
        if (!(out[i] = col_str(a, r, i, 0))) {
            rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
            goto out;
        }
    *codes = out;
    *n = (size_t)cnt;
out:
    PQclear(r);
    return rc;
}

/* ---- search ---- */

typedef struct terms {
    char t[FTS_MAX_TERMS][FTS_TERM_MAX];
    int64_t docs[FTS_MAX_TERMS];
    size_t n;
} terms;

static int word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* The first FTS_MAX_TERMS distinct words of q (ASCII lower-cased), split the
 * way unicode61 splits: runs of letters and digits. Overlong words are
 * skipped, as the SQLite store skips them. */
static void split_terms(const char *q, size_t len, terms *ts)
{
    size_t i = 0;
    while (i < len && ts->n < FTS_MAX_TERMS) {
        while (i < len && !word_byte((unsigned char)q[i]))
            i++;
        size_t start = i;
        while (i < len && word_byte((unsigned char)q[i]))
            i++;
        size_t n = i - start;
        if (n == 0 || n >= FTS_TERM_MAX)
            continue;
        char w[FTS_TERM_MAX];
        for (size_t j = 0; j < n; j++) {
            char c = q[start + j];
            w[j] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        w[n] = '\0';
        size_t k;
        for (k = 0; k < ts->n; k++)
            if (!strcmp(ts->t[k], w))
                break;
        if (k == ts->n)
            memcpy(ts->t[ts->n++], w, n + 1);
    }
}

/* The chosen terms joined by spaces (for plainto_tsquery), or as a text[]
 * literal when `array`. */
static int join_terms(sift_buf *b, const terms *ts, const int *use, int array)
{
    sift_buf_reset(b);
    int rc = array ? sift_buf_putc(b, '{') : 0;
    int first = 1;
    for (size_t i = 0; !rc && i < ts->n; i++) {
        if (use && !use[i])
            continue;
        if (!first)
            rc = sift_buf_putc(b, array ? ',' : ' ');
        first = 0;
        /* Terms are letters and digits: nothing to escape, but quote array
         * elements so a term like "null" stays a string. */
        if (!rc && array)
            rc = sift_buf_putc(b, '"');
        if (!rc)
            rc = sift_buf_puts(b, ts->t[i]);
        if (!rc && array)
            rc = sift_buf_putc(b, '"');
    }
    if (!rc && array)
        rc = sift_buf_putc(b, '}');
    if (!rc)
        rc = sift_buf_putc(b, '\0');
    return rc;
}

typedef struct hitlist {
    sift_hit *h;
    size_t n, k;
} hitlist;

static int has_sku(const hitlist *hl, const char *sku)
{
    for (size_t i = 0; i < hl->n; i++)
        if (strcasecmp(hl->h[i].sku, sku) == 0)
            return 1;
    return 0;
}

static int add_hit(hitlist *hl, sift_arena *a, const PGresult *r, int row, double score, int exact)
{
    const char *sku = PQgetvalue(r, row, 0);
    if (hl->n == hl->k || has_sku(hl, sku))
        return 0;
    sift_hit *h = &hl->h[hl->n];
    h->sku = col_str(a, r, row, 0);
    h->title = col_str(a, r, row, 1);
    if (!h->sku || !h->title)
        return SIFT_ENOMEM;
    h->score = score;
    h->exact_sku = exact;
    hl->n++;
    return 0;
}

/* Query words that are whole SKUs go first. */
static int search_exact(pg_store *s, const char *q, hitlist *hl, sift_arena *a, sift_err *err)
{
    size_t tried = 0;
    const char *p = q, *w;
    size_t len;
    while (tried < FTS_MAX_SKU_WORDS && hl->n < hl->k && sift_store_next_sku_word(&p, &w, &len)) {
        tried++;
        char word[SIFT_SKU_MAX + 1];
        memcpy(word, w, len);
        word[len] = '\0';
        params pa = {0};
        p_str(&pa, word);
        PGresult *r;
        int rc = run(s, ST_SKU_EXACT, &pa, &r, "search sku", err);
        if (rc)
            return rc;
        if (PQntuples(r) > 0)
            rc = add_hit(hl, a, r, 0, FTS_EXACT_SCORE, 1);
        PQclear(r);
        if (rc)
            return sift_err_set(err, rc, "out of memory");
    }
    return 0;
}

static int search_pass(pg_store *s, int which, hitlist *hl, sift_arena *a, sift_err *err)
{
    params pa = {0};
    p_str(&pa, s->match.data);
    p_i64(&pa, (int64_t)hl->k);
    p_i64(&pa, FTS_CAP);
    PGresult *r;
    int rc = run(s, which, &pa, &r, "search", err);
    if (rc)
        return rc;
    for (int i = 0; !rc && i < PQntuples(r); i++)
        rc = add_hit(hl, a, r, i, strtod(PQgetvalue(r, i, 2), NULL), 0);
    PQclear(r);
    return rc ? sift_err_set(err, rc, "out of memory") : 0;
}

static int term_docs(pg_store *s, terms *ts, sift_err *err)
{
    if (join_terms(&s->match, ts, NULL, 1))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    params pa = {0};
    p_str(&pa, s->match.data);
    p_i64(&pa, FTS_CAP + 1);
    PGresult *r;
    int rc = run(s, ST_TERM_DOCS, &pa, &r, "term statistics", err);
    if (rc)
        return rc;
    for (size_t i = 0; i < ts->n; i++)
        ts->docs[i] = (int)i < PQntuples(r) ? col_i64(r, (int)i, 0) : 0;
    PQclear(r);
    return 0;
}

static int pg_search_fts(sift_store *base, const char *query, size_t k, sift_arena *a,
                         sift_hit **hits, size_t *n, sift_err *err)
{
    pg_store *s = impl(base);
    hitlist hl = {.k = k};
    hl.h = sift_arena_calloc(a, k ? k : 1, sizeof *hl.h);
    if (!hl.h)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    int rc = search_exact(s, query, &hl, a, err);
    if (rc)
        goto out;
    terms ts = {0};
    size_t qlen = strlen(query);
    if (qlen > 4096)
        qlen = sift_utf8_truncate(query, qlen, 4096);
    split_terms(query, qlen, &ts);
    if (ts.n == 0 || hl.n == hl.k)
        goto out;

    /* Pass 1: every term (AND), the precise answer. */
    if (join_terms(&s->match, &ts, NULL, 0))
        goto oom;
    if ((rc = search_pass(s, ST_SEARCH_AND, &hl, a, err)) || ts.n == 1 || hl.n == hl.k)
        goto out;

    /* Pass 2: any term (OR), rarest first, only while their postings fit in
     * FTS_CAP; a query of only common terms falls back to the rarest one. */
    if ((rc = term_docs(s, &ts, err)))
        goto out;
    int use[FTS_MAX_TERMS] = {0};
    int64_t budget = 0;
    size_t used = 0;
    for (;;) {
        size_t best = ts.n;
        for (size_t i = 0; i < ts.n; i++)
            if (!use[i] && ts.docs[i] > 0 && (best == ts.n || ts.docs[i] < ts.docs[best]))
                best = i;
        if (best == ts.n || (used > 0 && budget + ts.docs[best] > FTS_CAP))
            break;
        use[best] = 1;
        budget += ts.docs[best];
        used++;
    }
    if (used == 0)
        goto out;
    if (join_terms(&s->match, &ts, use, 0))
        goto oom;
    rc = search_pass(s, ST_SEARCH_OR, &hl, a, err);
    goto out;
oom:
    rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
out:
    *hits = hl.h;
    *n = rc ? 0 : hl.n;
    return rc;
}

/* The whole catalog in one statement (one snapshot), fetched in single-row
 * mode so memory stays flat over any catalog size. */
static int pg_scan_products(sift_store *base, sift_store_scan_fn fn, void *ud, sift_err *err)
{
    pg_store *s = impl(base);
    int rc = ensure_conn(s, err);
    if (rc)
        return rc;
    if (!PQsendQuery(s->conn, "SELECT p.sku, p.parent_id, p.title, p.brand, p.category, p.attrs,"
                              " p.description, p.version, c.text FROM products p JOIN chunks c"
                              " ON c.id = p.id WHERE NOT p.deleted ORDER BY p.id") ||
        !PQsetSingleRowMode(s->conn))
        return pq_fail(s, NULL, "scan products", err);
    sift_arena *a = sift_arena_new(0);
    if (!a)
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
    PGresult *r;
    /* Every result must be read, even after a failure, before the
     * connection can be used again. */
    while ((r = PQgetResult(s->conn))) {
        ExecStatusType st = PQresultStatus(r);
        if (!rc && st == PGRES_SINGLE_TUPLE) {
            sift_product p;
            sift_arena_reset(a);
            rc = product_of(a, r, 0, &p, err);
            if (!rc)
                rc = fn(ud, &p, PQgetvalue(r, 0, 8), err);
        } else if (!rc && st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE) {
            rc = pq_fail(s, r, "scan products", err);
        }
        PQclear(r);
        if (rc && PQstatus(s->conn) == CONNECTION_OK) {
            /* Stop the server sending the rest. */
            PGcancel *cancel = PQgetCancel(s->conn);
            char buf[256];
            if (cancel) {
                PQcancel(cancel, buf, sizeof buf);
                PQfreeCancel(cancel);
            }
            while ((r = PQgetResult(s->conn)))
                PQclear(r);
            break;
        }
    }
    sift_arena_free(a);
    return rc;
}

static const sift_store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .upsert_product = pg_upsert_product,
    .delete_product = pg_delete_product,
    .get_product = pg_get_product,
    .list_variants = pg_list_variants,
    .set_stock = pg_set_stock,
    .get_stock = pg_get_stock,
    .set_price = pg_set_price,
    .get_price = pg_get_price,
    .list_warehouses = pg_list_warehouses,
    .search_fts = pg_search_fts,
    .scan_products = pg_scan_products,
};

int sift_store_pg_open(const char *url, const sift_store_pg_opts *opts, sift_store **out,
                       sift_err *err)
{
    *out = NULL;
    pg_store *s = sift_calloc(1, sizeof *s);
    if (!s)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    s->base.ops = &pg_ops;
    s->readonly = opts && opts->readonly;
    sift_pg_url_mask(url, s->where, sizeof s->where);
    sift_chunk_init(&s->chunk);
    sift_buf_init(&s->attrs, 0);
    sift_buf_init(&s->match, 0);
    int rc;
    if ((rc = sift_pg_connect(url, &s->conn, err)) ||
        (rc = sift_pg_schema_check(s->conn, s->where, err)))
        goto fail;
    if (s->readonly && (rc = simple(s, "SET default_transaction_read_only = on", "open", err)))
        goto fail;
    if ((rc = prepare_all(s, err)))
        goto fail;
    *out = &s->base;
    return 0;
fail:
    pg_close(&s->base);
    return rc;
}
