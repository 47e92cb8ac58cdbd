/* Vector retrieval at catalog scale: the built-in embedder over 50,000
 * synthetic product titles, and exact top-10 search over them, int8 and
 * float, with and without a filter.
 *
 * The titles are generated here (brands, product types, colours, sizes,
 * materials, model numbers) so the bench needs no data set; queries are
 * partial titles, some with a typo, the way shoppers type them. Latencies
 * are per query, single thread; the search target is p99 <= 5 ms. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "sift/arena.h"
#include "sift/embed.h"
#include "sift/vecindex.h"

#define N_PRODUCTS 50000
#define N_QUERIES 2000
#define K 10
#define REPS 3

static uint64_t rng = 0x5eed;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const brands[] = {
    "Nike",     "Adidas",   "Puma",    "Samsung",   "Apple", "Sony",      "Bosch",
    "Makita",   "DeWalt",   "Philips", "Lenovo",    "Asus",  "Xiaomi",    "Canon",
    "Levi's",   "Uniqlo",   "Zara",    "IKEA",      "Tefal", "Sunhouse",  "Biti's",
    "Vinamilk", "Logitech", "Anker",   "Ryobi",     "Husky", "Milwaukee", "Glacier Bay",
    "Kohler",   "Moen",     "Behr",    "Rust-Oleum"};

static const char *const kinds[] = {
    "running shoes",    "sneakers",       "sandals",      "t-shirt",       "jeans",
    "hoodie",           "backpack",       "smartphone",   "tablet",        "laptop",
    "wireless earbuds", "headphones",     "smart watch",  "power bank",    "usb-c cable",
    "cordless drill",   "impact driver",  "circular saw", "angle grinder", "tool box",
    "rice cooker",      "frying pan",     "kettle",       "blender",       "air fryer",
    "vacuum cleaner",   "desk lamp",      "office chair", "bookshelf",     "mattress",
    "bathroom vanity",  "kitchen faucet", "shower head",  "toilet seat",   "paint sprayer",
    "interior paint",   "deck stain",     "garden hose",  "lawn mower",    "leaf blower",
    "camera lens",      "tripod",         "gaming mouse", "keyboard",      "monitor",
    "giày bóng đá",     "áo khoác",       "nồi cơm điện", "bàn phím cơ",   "tai nghe"};

static const char *const colours[] = {"black", "white", "red",  "blue",  "navy",   "grey",
                                      "green", "beige", "pink", "brown", "silver", "gold"};
static const char *const materials[] = {"cotton",    "leather", "mesh",    "stainless steel",
                                        "aluminium", "oak",     "plastic", "ceramic",
                                        "nylon",     "wool",    "bamboo",  "glass"};
static const char *const extras[] = {"men's",   "women's",    "kids",       "pro",      "2-pack",
                                     "compact", "heavy duty", "waterproof", "slim fit", "18V",
                                     "1.8L",    "27-inch",    "256GB",      "XL",       "size 42"};

static void make_title(char *out, size_t n, uint32_t i)
{
    snprintf(out, n, "%s %s %s %s %s %c%u", brands[rnd(sizeof brands / sizeof *brands)],
             extras[rnd(sizeof extras / sizeof *extras)],
             colours[rnd(sizeof colours / sizeof *colours)],
             materials[rnd(sizeof materials / sizeof *materials)],
             kinds[(i * 7 + rnd(3)) % (sizeof kinds / sizeof *kinds)], 'A' + (char)rnd(26),
             100 + rnd(900));
}

/* A query: two or three words of a title, sometimes with one letter
 * dropped (a typo). */
static void make_query(char *out, size_t n, const char *title)
{
    char words[8][64];
    int nw = 0;
    const char *p = title;
    while (*p && nw < 8) {
        while (*p == ' ')
            p++;
        int l = 0;
        while (p[l] && p[l] != ' ' && l < 63)
            l++;
        if (l == 0)
            break;
        memcpy(words[nw], p, (size_t)l);
        words[nw][l] = '\0';
        nw++;
        p += l;
    }
    int take = 2 + (int)rnd(2);
    out[0] = '\0';
    size_t len = 0;
    for (int t = 0; t < take && nw > 0; t++) {
        char *w = words[rnd((uint32_t)nw)];
        size_t wl = strlen(w);
        if (wl > 4 && rnd(4) == 0) { /* drop one letter */
            size_t at = 1 + rnd((uint32_t)(wl - 2));
            memmove(w + at, w + at + 1, wl - at);
        }
        len += (size_t)snprintf(out + len, n - len, "%s%s", len ? " " : "", w);
        if (len >= n)
            break;
    }
}

__attribute__((noreturn)) static void die(const char *what, const sift_err *err)
{
    fprintf(stderr, "bench vectors: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        die("out of memory", NULL);
    return p;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* p50/p99 in microseconds of top-10 searches over all queries: wall time,
 * and this thread's CPU time, which a shared machine's other load does not
 * inflate (it still pollutes the caches). */
static void time_search(struct bench_report *r, const char *label, const sift_vecindex *ix,
                        const float *qv, size_t dims, const sift_vecfilter *filter)
{
    static double lat[N_QUERIES], cpu[N_QUERIES];
    sift_vechit hits[K];
    size_t n;
    sift_err err = {0};
    double p50[REPS], p99[REPS], c50[REPS], c99[REPS];
    for (int rep = 0; rep < REPS; rep++) {
        for (int q = 0; q < N_QUERIES; q++) {
            double t0 = bench_now_s(), c0 = thread_cpu_s();
            if (sift_vecindex_search(ix, qv + (size_t)q * dims, K, filter, hits, &n, &err))
                die("search", &err);
            cpu[q] = (thread_cpu_s() - c0) * 1e6;
            lat[q] = (bench_now_s() - t0) * 1e6;
            if (n != K) {
                fprintf(stderr, "bench vectors: %s: %zu hits, expected %d\n", label, n, K);
                exit(1);
            }
        }
        p50[rep] = bench_percentile(lat, N_QUERIES, 50);
        p99[rep] = bench_percentile(lat, N_QUERIES, 99);
        c50[rep] = bench_percentile(cpu, N_QUERIES, 50);
        c99[rep] = bench_percentile(cpu, N_QUERIES, 99);
    }
    char name[96];
    snprintf(name, sizeof name, "%s p50", label);
    bench_add(r, name, bench_median(p50, REPS), "us");
    snprintf(name, sizeof name, "%s p99", label);
    bench_add(r, name, bench_median(p99, REPS), "us");
    snprintf(name, sizeof name, "%s cpu p50", label);
    bench_add(r, name, bench_median(c50, REPS), "us");
    snprintf(name, sizeof name, "%s cpu p99", label);
    bench_add(r, name, bench_median(c99, REPS), "us");
}

int main(void)
{
    struct bench_report r = {.name = "vectors"};
    printf("bench vectors: %d products, %d queries, top-%d, median of %d\n", N_PRODUCTS, N_QUERIES,
           K, REPS);

    char(*titles)[160] = xcalloc(N_PRODUCTS, sizeof *titles);
    const char **tp = xcalloc(N_PRODUCTS, sizeof *tp);
    char(*queries)[160] = xcalloc(N_QUERIES, sizeof *queries);
    const char **qp = xcalloc(N_QUERIES, sizeof *qp);
    for (uint32_t i = 0; i < N_PRODUCTS; i++) {
        make_title(titles[i], sizeof titles[i], i);
        tp[i] = titles[i];
    }
    for (uint32_t q = 0; q < N_QUERIES; q++) {
        make_query(queries[q], sizeof queries[q], titles[rnd(N_PRODUCTS)]);
        qp[q] = queries[q];
    }

    sift_embedder *e = NULL;
    sift_err err = {0};
    if (sift_embedder_hashed_new(NULL, &e, &err))
        die("embedder", &err);
    size_t dims = e->dims;
    float *tv = xcalloc((size_t)N_PRODUCTS * dims, sizeof *tv);
    float *qv = xcalloc((size_t)N_QUERIES * dims, sizeof *qv);

    double v[REPS];
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = thread_cpu_s();
        if (sift_embedder_embed_sync(e, tp, NULL, N_PRODUCTS, tv, &err))
            die("embed", &err);
        v[rep] = (thread_cpu_s() - t0) / N_PRODUCTS * 1e6;
    }
    bench_add(&r, "embed title (hashed, 256 dims), cpu", bench_median(v, REPS), "us/text");
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = thread_cpu_s();
        if (sift_embedder_embed_sync(e, qp, NULL, N_QUERIES, qv, &err))
            die("embed", &err);
        v[rep] = (thread_cpu_s() - t0) / N_QUERIES * 1e6;
    }
    bench_add(&r, "embed query (hashed, 256 dims), cpu", bench_median(v, REPS), "us/text");

    sift_vecindex *ix[2] = {NULL, NULL};
    const char *kname[2] = {"float", "int8"};
    for (int k = 0; k < 2; k++) {
        if (sift_vecindex_new(dims, k == 0 ? SIFT_VEC_F32 : SIFT_VEC_I8, &ix[k], &err))
            die("index", &err);
        double t0 = bench_now_s();
        if (sift_vecindex_reserve(ix[k], N_PRODUCTS, &err))
            die("reserve", &err);
        for (uint32_t i = 0; i < N_PRODUCTS; i++)
            if (sift_vecindex_put(ix[k], i, tv + (size_t)i * dims, &err))
                die("put", &err);
        char name[96];
        snprintf(name, sizeof name, "%s index build (50k puts)", kname[k]);
        bench_add(&r, name, (bench_now_s() - t0) * 1e3, "ms");
        snprintf(name, sizeof name, "%s bytes per vector", kname[k]);
        bench_add(&r, name, sift_vecindex_bytes_per_vector(ix[k]), "B");
        snprintf(name, sizeof name, "%s index memory", kname[k]);
        bench_add(&r, name, (double)sift_vecindex_memory(ix[k]) / (1024.0 * 1024.0), "MiB");
    }
    printf("  scan implementation: %s\n", sift_vecindex_simd_name(ix[1]));

    /* Filters: 10% and 1% of the catalog (a brand, a brand + colour). */
    size_t words = (N_PRODUCTS + 63) / 64;
    uint64_t *f10 = xcalloc(words, 8), *f1 = xcalloc(words, 8);
    for (uint32_t i = 0; i < N_PRODUCTS; i++) {
        if (i % 10 == 3)
            f10[i / 64] |= 1ULL << (i % 64);
        if (i % 100 == 3)
            f1[i / 64] |= 1ULL << (i % 64);
    }
    sift_vecfilter filt10 = {.bits = f10, .nbits = N_PRODUCTS};
    sift_vecfilter filt1 = {.bits = f1, .nbits = N_PRODUCTS};

    char label[96];
    for (int k = 1; k >= 0; k--) {
        snprintf(label, sizeof label, "%s %s search top-10", kname[k],
                 sift_vecindex_simd_name(ix[k]));
        time_search(&r, label, ix[k], qv, dims, NULL);
        snprintf(label, sizeof label, "%s search top-10, 10%% filter", kname[k]);
        time_search(&r, label, ix[k], qv, dims, &filt10);
        snprintf(label, sizeof label, "%s search top-10, 1%% filter", kname[k]);
        time_search(&r, label, ix[k], qv, dims, &filt1);
    }
    /* What the SIMD buys: the same int8 and float scans on the scalar path. */
    for (int k = 1; k >= 0; k--) {
        if (sift_vecindex_set_simd(ix[k], SIFT_VEC_SCALAR, &err))
            die("simd", &err);
        snprintf(label, sizeof label, "%s scalar search top-10", kname[k]);
        time_search(&r, label, ix[k], qv, dims, NULL);
        sift_vecindex_set_simd(ix[k], SIFT_VEC_AUTO, &err);
    }

    /* Quality of int8 against float on real embeddings: share of float's
     * top-10 that int8 also returns. */
    size_t same = 0;
    for (int q = 0; q < N_QUERIES; q++) {
        sift_vechit a[K], b[K];
        size_t na, nb;
        sift_vecindex_search(ix[0], qv + (size_t)q * dims, K, NULL, a, &na, &err);
        sift_vecindex_search(ix[1], qv + (size_t)q * dims, K, NULL, b, &nb, &err);
        for (size_t i = 0; i < na; i++)
            for (size_t j = 0; j < nb; j++)
                same += a[i].id == b[j].id;
    }
    bench_add(&r, "int8 recall@10 of float top-10", (double)same / (N_QUERIES * K), "ratio");

    bench_write(&r);
    sift_vecindex_free(ix[0]);
    sift_vecindex_free(ix[1]);
    sift_embedder_free(e);
    free(f10);
    free(f1);
    free(tv);
    free(qv);
    free(titles);
    free(tp);
    free(queries);
    free(qp);
    return 0;
}
