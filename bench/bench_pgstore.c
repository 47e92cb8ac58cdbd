/* The PostgreSQL store, synchronous path (one blocking connection, as the
 * loader and the CLI use it):
 *
 *   bench_pgstore [COPIES]   (default 8: the sample catalog 8 times, 17,840 products)
 *
 * The catalog is catalog/sample/ repeated COPIES times, each copy's SKUs
 * suffixed "-Rk", with its inventory and prices. Against a throwaway cluster
 * started with tests/support/pg_cluster.sh (or the server of
 * SIFT_BENCH_PG_URL, where the bench creates and drops databases named
 * sift_bench_N), each figure the median of 3 runs into a fresh database:
 *   - JSON Lines load of products (parse + validate + chunk + SQL + tsvector + GIN), products/s
 *   - replaying the same versions (all stale), products/s
 *   - inventory and price rows, rows/s
 * then, on the last database, latency of sift_store_search_fts (k = 10, a
 * 16-query mix), get_stock (all warehouses of a SKU) and get_price, and the
 * database size per product. The asynchronous pool has its own benchmark. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"
#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/pgstore.h"
#include "sift/store.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static char g_dir[128];
static char g_base[256]; /* server URL without the database */
static int g_started;
static int g_dbs;

static const char *source_dir(void)
{
    const char *s = getenv("SIFT_SOURCE_DIR");
    return s ? s : SIFT_SOURCE_DIR;
}

static int cluster(const char *cmd, char *out, size_t cap)
{
    char line[1024];
    snprintf(line, sizeof line, "bash '%s/tests/support/pg_cluster.sh' %s '%s/pg'", source_dir(),
             cmd, g_dir);
    FILE *p = popen(line, "r");
    if (!p)
        return -1;
    char buf[512] = "";
    if (!fgets(buf, sizeof buf, p))
        buf[0] = '\0';
    int st = pclose(p);
    buf[strcspn(buf, "\n")] = '\0';
    if (out)
        snprintf(out, cap, "%s", buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void admin_sql(const char *text)
{
    char url[300];
    snprintf(url, sizeof url, "%s/postgres", g_base);
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, text);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: %s", text, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
}

/* A fresh migrated database; its URL in url. */
static void fresh_db(char *url, size_t cap)
{
    char text[96];
    snprintf(text, sizeof text, "CREATE DATABASE sift_bench_%d", ++g_dbs);
    admin_sql(text);
    snprintf(url, cap, "%s/sift_bench_%d", g_base, g_dbs);
    sift_err e = {0};
    if (sift_pg_migrate(url, &e)) {
        fprintf(stderr, "migrate: %s\n", e.msg);
        exit(1);
    }
}

static void drop_db(int n)
{
    char text[96];
    snprintf(text, sizeof text, "DROP DATABASE sift_bench_%d", n);
    admin_sql(text);
}

/* catalog/sample/NAME repeated `copies` times, each copy's "sku":"X" made
 * "sku":"X-Rk" (and "parent_id" likewise, so families stay families). */
static void replicate(const char *name, int copies, sift_buf *out, size_t *lines)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/catalog/sample/%s", source_dir(), name);
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char *line = NULL;
    size_t cap = 0;
    *lines = 0;
    while (getline(&line, &cap, f) > 0) {
        for (int k = 0; k < copies; k++) {
            const char *p = line;
            const char *keys[] = {"\"sku\":\"", "\"parent_id\":\""};
            while (*p) {
                const char *hit = NULL;
                size_t klen = 0;
                for (size_t i = 0; i < 2; i++) {
                    const char *h = strstr(p, keys[i]);
                    if (h && (!hit || h < hit)) {
                        hit = h;
                        klen = strlen(keys[i]);
                    }
                }
                if (!hit) {
                    sift_buf_puts(out, p);
                    break;
                }
                const char *end = strchr(hit + klen, '"');
                sift_buf_append(out, p, (size_t)(end - p));
                if (end > hit + klen) /* an empty parent_id stays empty */
                    sift_buf_printf(out, "-R%d", k);
                p = end;
            }
            (*lines)++;
        }
    }
    free(line);
    fclose(f);
}

static double load(sift_store *s, const sift_buf *text, int kind, size_t *applied)
{
    FILE *f = fmemopen(text->data, text->len, "r");
    sift_load_summary sum = {0};
    sift_err e = {0};
    double t0 = bench_now_s();
    if (sift_catalog_load_jsonl(s, f, kind, NULL, &sum, &e)) {
        fprintf(stderr, "load: %s\n", e.msg);
        exit(1);
    }
    double dt = bench_now_s() - t0;
    fclose(f);
    if (sum.bad) {
        fprintf(stderr, "load: %zu bad lines\n", sum.bad);
        exit(1);
    }
    *applied = sum.applied;
    return (double)sum.lines / dt;
}

static sift_store *open_store(const char *url)
{
    sift_store *s = NULL;
    sift_err e = {0};
    if (sift_store_open(url, 0, &s, &e)) {
        fprintf(stderr, "open: %s\n", e.msg);
        exit(1);
    }
    return s;
}

static void stop(void)
{
    if (g_started) {
        cluster("destroy", NULL, 0);
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_pgstore: %s left behind\n", g_dir);
    }
}

int main(int argc, char **argv)
{
    int copies = argc > 1 ? atoi(argv[1]) : 8;
    if (copies <= 0)
        copies = 8;
    const char *given = getenv("SIFT_BENCH_PG_URL");
    if (given) {
        snprintf(g_base, sizeof g_base, "%s", given);
        char *slash = strrchr(g_base, '/');
        if (slash && slash > strstr(g_base, "://") + 2)
            *slash = '\0';
    } else {
        snprintf(g_dir, sizeof g_dir, "/tmp/sift-bench-pg-XXXXXX");
        if (!mkdtemp(g_dir) || chmod(g_dir, 0755))
            return 1;
        char url[256];
        int st = cluster("start", url, sizeof url);
        if (st == 77) {
            rmdir(g_dir);
            printf("bench_pgstore: skipped: no PostgreSQL server binaries\n");
            return 0;
        }
        g_started = 1;
        atexit(stop);
        if (st != 0) {
            fprintf(stderr, "bench_pgstore: the throwaway cluster did not start\n");
            return 1;
        }
        *strrchr(url, '/') = '\0';
        snprintf(g_base, sizeof g_base, "%s", url);
    }

    sift_buf prod, inv, price;
    sift_buf_init(&prod, 0);
    sift_buf_init(&inv, 0);
    sift_buf_init(&price, 0);
    size_t n_prod, n_inv, n_price;
    replicate("products.jsonl", copies, &prod, &n_prod);
    replicate("inventory.jsonl", copies, &inv, &n_inv);
    replicate("prices.jsonl", copies, &price, &n_price);
    printf("bench_pgstore: %zu products, %zu stock rows, %zu price rows\n", n_prod, n_inv, n_price);

    struct bench_report r = {.name = "pgstore"};
    double lp[3], ls[3], li[3], lpr[3];
    char url[300];
    long long db_bytes = 0, empty_bytes = 0;
    for (int rep = 0; rep < 3; rep++) {
        fresh_db(url, sizeof url);
        sift_store *s = open_store(url);
        PGconn *c = PQconnectdb(url);
        PGresult *q = PQexec(c, "SELECT pg_database_size(current_database())");
        empty_bytes = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
        PQclear(q);
        size_t applied;
        lp[rep] = load(s, &prod, SIFT_CATALOG_PRODUCTS, &applied);
        if (applied != n_prod) {
            fprintf(stderr, "load: applied %zu of %zu\n", applied, n_prod);
            return 1;
        }
        ls[rep] = load(s, &prod, SIFT_CATALOG_PRODUCTS, &applied);
        if (applied != 0) {
            fprintf(stderr, "replay: applied %zu\n", applied);
            return 1;
        }
        li[rep] = load(s, &inv, SIFT_CATALOG_INVENTORY, &applied);
        lpr[rep] = load(s, &price, SIFT_CATALOG_PRICES, &applied);
        q = PQexec(c, "SELECT pg_database_size(current_database())");
        db_bytes = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
        PQclear(q);
        PQfinish(c);
        sift_store_close(s);
        printf("  run %d: products %.0f/s, replay %.0f/s, stock %.0f/s, prices %.0f/s\n", rep + 1,
               lp[rep], ls[rep], li[rep], lpr[rep]);
        if (rep < 2)
            drop_db(g_dbs);
    }
    bench_add(&r, "JSONL products load (parse+store+tsvector+GIN)", bench_median(lp, 3),
              "products/s");
    bench_add(&r, "replay of same versions (all stale)", bench_median(ls, 3), "products/s");
    bench_add(&r, "JSONL inventory load", bench_median(li, 3), "rows/s");
    bench_add(&r, "JSONL prices load", bench_median(lpr, 3), "rows/s");
    bench_add(&r, "database growth per product (with its stock and prices)",
              (double)(db_bytes - empty_bytes) / (double)n_prod, "bytes");

    sift_store *s = open_store(url);
    static const char *const queries[] = {
        "nike running shoe",   "black",         "shoe",          "running shoe black 42",
        "adidas jacket women", "mesh",          "red hoodie",    "puma",
        "trail shoe 44",       "leggings navy", "NIKE-PEG40-42", "pegasus",
        "reflective jacket",   "men",           "xyzzy nothing", "asics gel running shoe men 42"};
    enum { REPS = 50 };
    size_t nq = N_OF(queries);
    double *lat = calloc(nq * REPS, sizeof *lat);
    if (!lat)
        return 1;
    double worst_p99 = 0;
    const char *worst = "";
    sift_arena *a = sift_arena_new(0);
    sift_err e = {0};
    for (size_t qi = 0; qi < nq; qi++) {
        double per[REPS];
        for (int i = 0; i < REPS; i++) {
            sift_hit *h;
            size_t nh;
            double t0 = bench_now_s();
            if (sift_store_search_fts(s, queries[qi], 10, a, &h, &nh, &e)) {
                fprintf(stderr, "search %s: %s\n", queries[qi], e.msg);
                free(lat);
                return 1;
            }
            per[i] = (bench_now_s() - t0) * 1e3;
            lat[qi * REPS + (size_t)i] = per[i];
            sift_arena_reset(a);
        }
        double p99 = bench_percentile(per, REPS, 99);
        printf("    %-34s p50 %.3f ms  p99 %.3f ms\n", queries[qi], bench_percentile(per, REPS, 50),
               p99);
        if (p99 > worst_p99) {
            worst_p99 = p99;
            worst = queries[qi];
        }
    }
    int total = (int)nq * REPS;
    bench_add(&r, "search k=10 p50 (16-query mix)", bench_percentile(lat, total, 50), "ms");
    bench_add(&r, "search k=10 p99 (16-query mix)", bench_percentile(lat, total, 99), "ms");
    char label[96];
    snprintf(label, sizeof label, "search worst query p99 (%.40s)", worst);
    bench_add(&r, label, worst_p99, "ms");

    /* Point reads, one connection, one round trip each. */
    enum { POINT = 2000 };
    double *ps = calloc(POINT, sizeof *ps), *pp = calloc(POINT, sizeof *pp);
    for (int i = 0; i < POINT; i++) {
        char sku[64];
        snprintf(sku, sizeof sku, "NIKE-PEG40-42-R%d", i % copies);
        sift_stock *rows;
        size_t nr;
        sift_price pr;
        double t0 = bench_now_s();
        if (sift_store_get_stock(s, sku, NULL, a, &rows, &nr, &e) || nr == 0) {
            fprintf(stderr, "get_stock %s: %s\n", sku, e.msg);
            return 1;
        }
        double t1 = bench_now_s();
        if (sift_store_get_price(s, sku, "VND", 2000000000, a, &pr, &e)) {
            fprintf(stderr, "get_price %s: %s\n", sku, e.msg);
            return 1;
        }
        double t2 = bench_now_s();
        ps[i] = (t1 - t0) * 1e3;
        pp[i] = (t2 - t1) * 1e3;
        sift_arena_reset(a);
    }
    bench_add(&r, "get_stock (all warehouses) p50, one connection", bench_percentile(ps, POINT, 50),
              "ms");
    bench_add(&r, "get_stock p99", bench_percentile(ps, POINT, 99), "ms");
    bench_add(&r, "get_price p50, one connection", bench_percentile(pp, POINT, 50), "ms");
    bench_add(&r, "get_price p99", bench_percentile(pp, POINT, 99), "ms");
    free(ps);
    free(pp);
    free(lat);
    sift_arena_free(a);
    sift_store_close(s);
    drop_db(g_dbs);
    bench_write(&r);
    sift_buf_free(&prod);
    sift_buf_free(&inv);
    sift_buf_free(&price);
    return 0;
}
