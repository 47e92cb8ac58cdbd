/* The PostgreSQL schema as numbered migrations, and the connection helpers
 * every PostgreSQL backend shares (URL masking, connecting with messages a
 * user can act on, the schema check).
 *
 * Migrations are append-only: a released migration is never edited, a change
 * is a new one. Each runs in its own transaction together with its row in
 * schema_migrations, under a transaction-scoped advisory lock, so a crash
 * leaves either all of a migration or none of it, and two `sift migrate` at
 * once apply each migration exactly once.
 *
 * Full-text (migration 1): chunks.tsv is a stored generated column, the chunk
 * fields run through the sift_en configuration and weighted with setweight.
 * sift_en is 'english' (Snowball stemming, like the SQLite store's Porter
 * stemmer) with accents removed from non-ASCII words first (the unaccent
 * extension, shipped with PostgreSQL and trusted since 13, so a database
 * owner may create it), so "giay" finds "giày" as in the SQLite store. PostgreSQL has
 * four weight classes, so the SQLite store's six BM25 field weights map onto
 * them: title A (3), sku and brand B (2), category and attrs C (1.5),
 * description D (1); the store ranks with ts_rank_cd and the weight array
 * {1/3, 1/2, 2/3, 1}, the same ratios. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/pgstore.h"

/* Any constant: the key of the advisory lock that serialises migrations. */
#define MIGRATE_LOCK_KEY 0x5f1f7d1bLL

static const char migration_1[] =
    "CREATE EXTENSION IF NOT EXISTS unaccent;"
    "CREATE TEXT SEARCH CONFIGURATION sift_en (COPY = english);"
    "ALTER TEXT SEARCH CONFIGURATION sift_en ALTER MAPPING FOR word, hword, hword_part"
    " WITH unaccent, english_stem;"
    "CREATE TABLE products ("
    " id bigserial PRIMARY KEY,"
    " sku text NOT NULL,"
    " parent_id text NOT NULL DEFAULT '',"
    " title text NOT NULL DEFAULT '',"
    " brand text NOT NULL DEFAULT '',"
    " category text NOT NULL DEFAULT '',"
    " attrs text NOT NULL DEFAULT '{}',"
    " description text NOT NULL DEFAULT '',"
    " version bigint NOT NULL,"
    " deleted boolean NOT NULL DEFAULT false,"
    " updated_at bigint NOT NULL);"
    "CREATE UNIQUE INDEX products_sku ON products (lower(sku));"
    "CREATE INDEX products_parent ON products (parent_id) WHERE parent_id <> '';"
    "CREATE TABLE chunks ("
    " id bigint PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,"
    " sku text NOT NULL, title text NOT NULL, brand text NOT NULL, category text NOT NULL,"
    " attrs text NOT NULL, description text NOT NULL, text text NOT NULL,"
    " tsv tsvector GENERATED ALWAYS AS ("
    "  setweight(to_tsvector('sift_en'::regconfig, title), 'A') ||"
    "  setweight(to_tsvector('sift_en'::regconfig, sku), 'B') ||"
    "  setweight(to_tsvector('sift_en'::regconfig, brand), 'B') ||"
    "  setweight(to_tsvector('sift_en'::regconfig, category), 'C') ||"
    "  setweight(to_tsvector('sift_en'::regconfig, attrs), 'C') ||"
    "  setweight(to_tsvector('sift_en'::regconfig, description), 'D')) STORED);"
    /* fastupdate off: with the pending list on, every search scans the
     * entries not yet merged, linearly; right after loading the sample
     * catalog that made a one-word search 4 ms instead of 0.3 ms, until a
     * vacuum. Loads pay a little instead (0.94 s against 0.67 s for the
     * sample catalog, on a busy machine). */
    "CREATE INDEX chunks_tsv ON chunks USING gin (tsv) WITH (fastupdate = off);"
    "CREATE TABLE inventory (sku text NOT NULL, warehouse text NOT NULL,"
    " quantity bigint NOT NULL, version bigint NOT NULL, updated_at bigint NOT NULL);"
    "CREATE UNIQUE INDEX inventory_key ON inventory (lower(sku), warehouse);"
    "CREATE TABLE prices (sku text NOT NULL, currency text NOT NULL, valid_from bigint NOT NULL,"
    " amount_minor bigint NOT NULL, version bigint NOT NULL);"
    "CREATE UNIQUE INDEX prices_key ON prices (lower(sku), currency, valid_from);"
    "CREATE TABLE warehouses (code text PRIMARY KEY);"
    "CREATE TABLE sessions (id text PRIMARY KEY, messages text NOT NULL,"
    " updated_at bigint NOT NULL);"
    "CREATE INDEX sessions_updated ON sessions (updated_at);"
    "CREATE TABLE checkpoints (thread_id text NOT NULL, step bigint NOT NULL,"
    " next text NOT NULL, state text NOT NULL, created_at bigint NOT NULL,"
    " PRIMARY KEY (thread_id, step));";

/* migrations[i] is version i + 1. */
static const char *const migrations[] = {migration_1};

_Static_assert(sizeof migrations / sizeof migrations[0] == SIFT_PG_SCHEMA_VERSION,
               "SIFT_PG_SCHEMA_VERSION must be the number of migrations");

int sift_pg_is_url(const char *s)
{
    return s && (!strncasecmp(s, "postgres://", 11) || !strncasecmp(s, "postgresql://", 13));
}

/* Appends [s, s+n) to out at *len, keeping room for the NUL. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    while (n-- && *len + 1 < cap)
        out[(*len)++] = *s++;
    out[*len] = '\0';
}

void sift_pg_url_mask(const char *url, char *out, size_t cap)
{
    if (!cap)
        return;
    size_t len = 0;
    out[0] = '\0';
    if (!url)
        return;
    const char *p = url;
    const char *scheme = strstr(url, "://");
    if (scheme) {
        /* userinfo is what precedes the last '@' of the authority (a '@' in
         * a password must be percent-encoded, but be safe either way). */
        const char *auth = scheme + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *q = auth; q < end; q++)
            if (*q == '@')
                at = q;
        if (at) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            if (colon) {
                put(out, cap, &len, url, (size_t)(colon + 1 - url));
                put(out, cap, &len, "***", 3);
                p = at;
            }
        }
    }
    /* password=... in a query string or a keyword/value connection string. */
    while (*p) {
        if (!strncasecmp(p, "password=", 9) && (p == url || strchr("?& \t", p[-1]))) {
            put(out, cap, &len, p, 9);
            put(out, cap, &len, "***", 3);
            p += 9;
            p += strcspn(p, "& \t");
            continue;
        }
        put(out, cap, &len, p, 1);
        p++;
    }
}

/* Replaces every occurrence of the non-empty `secret` in msg with ***, in
 * one left-to-right pass (a secret made of '*' cannot loop). */
static void scrub(char *msg, size_t cap, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n == 0 || cap == 0)
        return;
    char out[SIFT_ERR_MSG_MAX * 2];
    size_t len = 0;
    const char *p = msg;
    while (*p) {
        if (!strncmp(p, secret, n)) {
            put(out, sizeof out, &len, "***", 3);
            p += n;
        } else {
            put(out, sizeof out, &len, p, 1);
            p++;
        }
    }
    snprintf(msg, cap, "%s", out);
}

/* libpq's message, first line only, with the password removed in case libpq
 * ever quotes it (it quotes bad URI parts). */
static void pq_message(const char *raw, const char *url, char *out, size_t cap)
{
    snprintf(out, cap, "%s", raw ? raw : "");
    out[strcspn(out, "\n")] = '\0';
    PQconninfoOption *opts = url ? PQconninfoParse(url, NULL) : NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (!strcmp(o->keyword, "password") && o->val)
            scrub(out, cap, o->val);
    PQconninfoFree(opts);
    /* The raw (percent-encoded) form too. */
    char masked[1024];
    sift_pg_url_mask(url, masked, sizeof masked);
    if (url && strcmp(masked, url) != 0) {
        const char *auth = strstr(url, "://");
        const char *at = auth ? strchr(auth + 3, '@') : NULL;
        const char *colon = at ? memchr(auth + 3, ':', (size_t)(at - auth - 3)) : NULL;
        if (colon) {
            char raw_pw[256];
            size_t n = (size_t)(at - colon - 1);
            if (n < sizeof raw_pw) {
                memcpy(raw_pw, colon + 1, n);
                raw_pw[n] = '\0';
                scrub(out, cap, raw_pw);
            }
        }
    }
}

static int contains(const char *hay, const char *needle)
{
    return hay && strcasestr(hay, needle) != NULL;
}

static void quiet(void *ud, const char *message)
{
    (void)ud;
    (void)message;
}

int sift_pg_connect(const char *url, PGconn **out, sift_err *err)
{
    *out = NULL;
    char where[512], why[512];
    sift_pg_url_mask(url, where, sizeof where);
    if (!sift_pg_is_url(url))
        return sift_err_set(err, SIFT_EINVAL,
                            "%s: not a PostgreSQL URL (postgres://user@host:port/db)", where);
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &perr);
    if (!parsed) {
        pq_message(perr, url, why, sizeof why);
        PQfreemem(perr);
        return sift_err_set(err, SIFT_EINVAL, "%s: bad PostgreSQL URL: %s", where, why);
    }
    PQconninfoFree(parsed);

    /* Parameters before dbname are defaults the URL may override (a
     * connect timeout, so a silent host cannot hang a command forever; a name
     * in pg_stat_activity); those after it are fixed: sift's text is UTF-8. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", "client_encoding", NULL};
    const char *vals[] = {"10", "sift", url, "UTF8", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c)
        return sift_err_set(err, SIFT_ENOMEM, "postgres: out of memory");
    if (PQstatus(c) == CONNECTION_OK) {
        /* Notices ("text-search query contains only stop words", "relation
         * already exists, skipping") are not errors: keep them off stderr. */
        PQsetNoticeProcessor(c, quiet, NULL);
        *out = c;
        return 0;
    }
    const char *raw = PQerrorMessage(c);
    pq_message(raw, url, why, sizeof why);
    int rc;
    if (contains(raw, "password authentication failed") || contains(raw, "no password supplied") ||
        contains(raw, "authentication failed"))
        rc = sift_err_set(err, SIFT_EIO,
                          "%s: PostgreSQL refused the login: %s; check the user and password "
                          "(in the URL, PGPASSWORD or ~/.pgpass)",
                          where, why);
    else if (contains(raw, "does not exist") && contains(raw, "database"))
        rc = sift_err_set(err, SIFT_EIO,
                          "%s: %s; create it first (createdb, or CREATE DATABASE), then run "
                          "sift migrate",
                          where, why);
    else if (contains(raw, "Connection refused") || contains(raw, "could not connect") ||
             contains(raw, "timeout expired") || contains(raw, "could not translate host") ||
             contains(raw, "No such file or directory"))
        rc = sift_err_set(err, SIFT_EIO,
                          "%s: cannot reach the PostgreSQL server: %s; is it running and "
                          "listening at that host and port?",
                          where, why);
    else
        rc = sift_err_set(err, SIFT_EIO, "%s: cannot connect to PostgreSQL: %s", where, why);
    PQfinish(c);
    return rc;
}

/* Runs `sql` (one or more statements, no parameters). */
/* What to do about a failed statement, for the errors a deployment meets. */
static const char *hint_for(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (state && !strcmp(state, "42501"))
        return "; run sift migrate as the database's owner (or a role that may create in it "
               "and in its public schema)";
    if (msg && strstr(msg, "unaccent"))
        return "; sift needs the unaccent extension, shipped with PostgreSQL's contrib "
               "modules: install them on the server";
    return "";
}

/* Runs `sql` (one or more statements, no parameters). `where` names the
 * database (masked URL). */
static int exec(PGconn *c, const char *where, const char *sql, const char *what, sift_err *err)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        rc = sift_err_set(err, SIFT_EIO, "%s: %s: %s%s", where, what, msg, hint_for(r));
    }
    PQclear(r);
    return rc;
}

/* The highest applied version, 0 when there is no schema_migrations table. */
static int current_version(PGconn *c, int *version, sift_err *err)
{
    PGresult *r = PQexec(c, "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN -1"
                            " ELSE 0 END");
    int rc = 0;
    *version = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = sift_err_set(err, SIFT_EIO, "postgres: reading the schema version: %s",
                          PQerrorMessage(c));
        goto out;
    }
    if (atoi(PQgetvalue(r, 0, 0)) < 0)
        goto out;
    PQclear(r);
    r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = sift_err_set(err, SIFT_EIO, "postgres: reading the schema version: %s",
                          PQerrorMessage(c));
        goto out;
    }
    *version = atoi(PQgetvalue(r, 0, 0));
out:
    PQclear(r);
    return rc;
}

static int newer(const char *where, int version, sift_err *err)
{
    return sift_err_set(err, SIFT_EINVAL,
                        "%s: database schema version %d is newer than this sift's (%d); use a "
                        "newer sift",
                        where, version, SIFT_PG_SCHEMA_VERSION);
}

int sift_pg_migrate_ex(const char *url, int *from, int *to, sift_err *err)
{
    char where[512];
    sift_pg_url_mask(url, where, sizeof where);
    PGconn *c = NULL;
    int rc = sift_pg_connect(url, &c, err);
    if (rc)
        return rc;
    int start = -1, version = 0;
    char sql[128];
    for (int v = 1; v <= SIFT_PG_SCHEMA_VERSION; v++) {
        snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%lld)",
                 (long long)MIGRATE_LOCK_KEY);
        if ((rc = exec(c, where, sql, "migrate", err)) ||
            (rc = exec(c, where,
                       "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version integer PRIMARY KEY,"
                       " applied_at timestamptz NOT NULL DEFAULT now())",
                       "migrate", err)) ||
            (rc = current_version(c, &version, err)))
            goto fail;
        if (start < 0)
            start = version;
        if (version > SIFT_PG_SCHEMA_VERSION) {
            rc = newer(where, version, err);
            goto fail;
        }
        if (version < v) {
            char what[64];
            snprintf(what, sizeof what, "migration %d", v);
            snprintf(sql, sizeof sql, "INSERT INTO schema_migrations (version) VALUES (%d)", v);
            if ((rc = exec(c, where, migrations[v - 1], what, err)) ||
                (rc = exec(c, where, sql, what, err)))
                goto fail;
            version = v;
        }
        if ((rc = exec(c, where, "COMMIT", "migrate", err)))
            goto fail;
    }
    if (from)
        *from = start < 0 ? 0 : start;
    if (to)
        *to = version;
    PQfinish(c);
    return 0;
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    return rc;
}

int sift_pg_migrate(const char *url, sift_err *err)
{
    return sift_pg_migrate_ex(url, NULL, NULL, err);
}

int sift_pg_schema_check(PGconn *conn, const char *what, sift_err *err)
{
    int version = 0;
    int rc = current_version(conn, &version, err);
    if (rc)
        return rc;
    if (version > SIFT_PG_SCHEMA_VERSION)
        return newer(what, version, err);
    if (version == 0)
        return sift_err_set(err, SIFT_ESTATE,
                            "%s: no sift schema in this database; run sift migrate --db URL first",
                            what);
    if (version < SIFT_PG_SCHEMA_VERSION)
        return sift_err_set(err, SIFT_ESTATE,
                            "%s: database schema version %d is older than this sift's (%d); run "
                            "sift migrate --db URL",
                            what, version, SIFT_PG_SCHEMA_VERSION);
    return 0;
}
