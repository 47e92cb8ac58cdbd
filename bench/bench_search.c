/* Search latency on a 50,000-product synthetic catalog (generated here,
 * deterministically): p50/p99 of sift_search in lexical, vector and hybrid
 * mode over a few hundred generated queries (plain words, brand + type +
 * size, colours, misspellings, SKUs). The catalog goes into a store file in
 * transactions of 5000 in bulk mode, as `sift ingest` writes it, so the
 * full-text index has the shape (segments) of an ingested one. After a
 * warm-up pass, PASSES timed passes: each figure is the median over the
 * passes of that pass's percentile, in wall time and in thread CPU time.
 * Figures go to bench/results/search.{json,md}. The target (issue 5) is
 * p99 <= 5 ms for lexical and hybrid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "sift/catalog.h"
#include "sift/search.h"
#include "sift/store.h"

#define N_PRODUCTS 50000
#define N_QUERIES 400
#define PASSES 5
#define BATCH 5000

static const char *const brands[] = {"Nike",   "Adidas",  "Puma",  "Asics",    "Bosch",
                                     "Makita", "DeWalt",  "Ryobi", "Samsung",  "Sony",
                                     "Apple",  "Lenovo",  "Dell",  "Uniqlo",   "Zara",
                                     "IKEA",   "Philips", "Dyson", "Logitech", "Canon"};
static const char *const types[] = {
    "running shoes", "trail shoes",   "sandals",    "backpack",       "rain jacket",
    "t-shirt",       "hoodie",        "jeans",      "cordless drill", "impact driver",
    "circular saw",  "paint sprayer", "headphones", "smartphone",     "laptop",
    "monitor",       "keyboard",      "mouse",      "vacuum cleaner", "air purifier",
    "desk lamp",     "office chair",  "bookshelf",  "coffee maker",   "kettle",
    "blender",       "camera",        "tripod",     "water bottle",   "yoga mat"};
static const char *const adjs[] = {"lightweight", "waterproof", "compact",   "premium",
                                   "classic",     "wireless",   "ergonomic", "heavy duty",
                                   "slim",        "breathable", "foldable",  "professional"};
static const char *const colours[] = {"black", "white", "red",   "blue", "green",
                                      "grey",  "navy",  "beige", "pink", "yellow"};
static const char *const sizes[] = {"38", "39", "40", "41", "42", "43", "44", "S", "M", "L", "XL"};

#define NELEM(a) (sizeof(a) / sizeof *(a))

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

#define PICK(a) ((a)[next() % NELEM(a)])

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fill(sift_store *s)
{
    sift_err err = {0};
    char sku[32], title[256], desc[512];
    if (sift_store_bulk(s, 1, &err))
        goto fail;
    for (int i = 0; i < N_PRODUCTS; i++) {
        if (i % BATCH == 0 && (i == 0 || !sift_store_commit(s, &err)) && sift_store_begin(s, &err))
            goto fail;
        if (err.code)
            goto fail;
        const char *b = PICK(brands), *t = PICK(types), *a = PICK(adjs), *c = PICK(colours);
        const char *z = PICK(sizes);
        snprintf(sku, sizeof sku, "SKU-%06d", i);
        snprintf(title, sizeof title, "%s %s %s %u - %s", b, a, t, next() % 900 + 100, c);
        snprintf(desc, sizeof desc, "A %s %s from %s in %s, size %s. %s and %s.", a, t, b, c, z,
                 PICK(adjs), PICK(adjs));
        sift_attr at[2] = {{"size", z}, {"colour", c}};
        sift_product p = {.sku = sku,
                          .parent_id = "",
                          .title = title,
                          .brand = b,
                          .category = t,
                          .description = desc,
                          .attrs = at,
                          .n_attrs = 2,
                          .version = 1};
        if (sift_store_upsert_product(s, &p, NULL, &err))
            goto fail;
    }
    if (sift_store_commit(s, &err) || sift_store_bulk(s, 0, &err))
        goto fail;
    return 0;
fail:
    fprintf(stderr, "bench_search: %s\n", err.msg);
    return -1;
}

/* A misspelling: one letter dropped from the middle of the word. */
static void typo(const char *w, char *out, size_t n)
{
    size_t l = strlen(w), cut = l / 2;
    snprintf(out, n, "%.*s%s", (int)cut, w, w + cut + 1);
}

static void make_query(int i, char *q, size_t n)
{
    char tmp[64];
    switch (i % 6) {
    case 0:
        snprintf(q, n, "%s", PICK(types));
        break;
    case 1:
        snprintf(q, n, "%s %s", PICK(adjs), PICK(types));
        break;
    case 2:
        snprintf(q, n, "%s %s size %s", PICK(brands), PICK(types), PICK(sizes));
        break;
    case 3:
        snprintf(q, n, "%s %s under $100", PICK(colours), PICK(types));
        break;
    case 4:
        typo(PICK(types), tmp, sizeof tmp);
        snprintf(q, n, "%s", tmp);
        break;
    default:
        snprintf(q, n, "SKU-%06u", next() % N_PRODUCTS);
        break;
    }
}

int main(void)
{
    sift_err err = {0};
    sift_store *store = NULL;
    sift_searcher *se = NULL;
    struct bench_report rep = {.name = "search"};
    static char queries[N_QUERIES][96];
    static double ms[N_QUERIES], cpu[N_QUERIES];
    char dir[64] = "/tmp/sift-bench-search-XXXXXX", path[128];
    if (!mkdtemp(dir)) {
        perror("bench_search: mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/store.db", dir);
    sift_arena *a = sift_arena_new(1 << 16);
    if (!a || sift_store_sqlite_open(path, NULL, &store, &err)) {
        fprintf(stderr, "bench_search: %s\n", err.msg);
        return 1;
    }
    /* Other processes share this machine: their load is part of the result. */
    double load1 = 0;
    if (getloadavg(&load1, 1) == 1)
        bench_add(&rep, "machine load average (1 min) at the start", load1, "");
    double t0 = bench_now_s();
    if (fill(store))
        return 1;
    double t1 = bench_now_s();
    if (sift_searcher_open(store, NULL, &se, &err)) {
        fprintf(stderr, "bench_search: %s\n", err.msg);
        return 1;
    }
    double t2 = bench_now_s();
    printf("bench_search: %d products (load %.1f s, searcher open %.2f s), %d queries\n",
           N_PRODUCTS, t1 - t0, t2 - t1, N_QUERIES);
    bench_add(&rep, "searcher open (50k products)", (t2 - t1) * 1000, "ms");
    for (int i = 0; i < N_QUERIES; i++)
        make_query(i, queries[i], sizeof queries[i]);

    static const int modes[] = {SIFT_SEARCH_LEXICAL, SIFT_SEARCH_VECTOR, SIFT_SEARCH_HYBRID};
    for (size_t m = 0; m < NELEM(modes); m++) {
        sift_search_opts o = {.k = 10, .mode = modes[m]};
        size_t total = 0;
        double p50[PASSES], p99[PASSES], c50[PASSES], c99[PASSES];
        /* One warm-up pass (page cache, branch predictors), then the timed ones. */
        for (int pass = 0; pass <= PASSES; pass++) {
            for (int i = 0; i < N_QUERIES; i++) {
                sift_search_hit *h;
                size_t n;
                sift_arena_reset(a);
                double s = bench_now_s(), c = thread_cpu_s();
                if (sift_search(se, store, queries[i], &o, a, &h, &n, &err)) {
                    fprintf(stderr, "bench_search: \"%s\": %s\n", queries[i], err.msg);
                    return 1;
                }
                ms[i] = (bench_now_s() - s) * 1000;
                cpu[i] = (thread_cpu_s() - c) * 1000;
                total += pass == 1 ? n : 0;
            }
            if (pass == 0)
                continue;
            p50[pass - 1] = bench_percentile(ms, N_QUERIES, 50);
            p99[pass - 1] = bench_percentile(ms, N_QUERIES, 99);
            c50[pass - 1] = bench_percentile(cpu, N_QUERIES, 50);
            c99[pass - 1] = bench_percentile(cpu, N_QUERIES, 99);
        }
        char name[96];
        const char *mn = sift_search_mode_name(modes[m]);
        snprintf(name, sizeof name, "%s top-10 p50", mn);
        bench_add(&rep, name, bench_median(p50, PASSES), "ms");
        snprintf(name, sizeof name, "%s top-10 p99", mn);
        bench_add(&rep, name, bench_median(p99, PASSES), "ms");
        snprintf(name, sizeof name, "%s top-10 CPU p50", mn);
        bench_add(&rep, name, bench_median(c50, PASSES), "ms");
        snprintf(name, sizeof name, "%s top-10 CPU p99", mn);
        bench_add(&rep, name, bench_median(c99, PASSES), "ms");
        snprintf(name, sizeof name, "%s results per query", mn);
        bench_add(&rep, name, (double)total / N_QUERIES, "");
    }
    bench_write(&rep);
    sift_searcher_close(se);
    sift_store_close(store);
    sift_arena_free(a);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}
