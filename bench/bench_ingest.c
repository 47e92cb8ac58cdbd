/* Catalog ingest and full-text search on the SQLite store.
 *
 *   bench_ingest [N]     (default 50000 products)
 *
 * Generates N products in memory (deterministic, the sample catalog's
 * shape: brands, models, colours, sizes, ~150-byte descriptions), then
 * measures, each the median of 5 runs into a fresh store file:
 *   - JSON Lines load (split + parse + validate + chunk + SQL + FTS), products/s,
 *     with the parser on its own thread (the default) and on the writing thread
 *   - store only (pre-parsed products: chunk + SQL + FTS), products/s
 *   - replaying the same versions (all stale), products/s
 *   - re-loading at a newer version, with the same text (the index is kept)
 *     and with one word of every description changed (every chunk
 *     re-indexed), products/s
 * and search latency (sift_store_search_fts, k = 10) over the loaded store
 * for a fixed query mix, including common-term queries: medians over 5
 * passes of each pass's percentiles, wall and thread CPU time. Results go to
 * bench/results/ingest.{json,md}. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/store.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static const char *pick(const char *const *v, size_t n)
{
    return v[rnd() % n];
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *const brands[] = {"Nike",        "Adidas",       "Puma",   "Asics",
                                     "New Balance", "Under Armour", "Biti's", "Saucony"};
static const char *const kinds[] = {
    "Running Shoe", "Trail Shoe", "Training Shoe", "Basketball Shoe", "Slide",
    "T-Shirt",      "Shorts",     "Jacket",        "Hoodie",          "Leggings"};
static const char *const cats[] = {"Footwear > Running > Road",  "Footwear > Running > Trail",
                                   "Footwear > Training",        "Footwear > Basketball",
                                   "Footwear > Sandals",         "Apparel > Tops > T-Shirts",
                                   "Apparel > Bottoms > Shorts", "Apparel > Outerwear > Jackets",
                                   "Apparel > Tops > Hoodies",   "Apparel > Bottoms > Leggings"};
static const char *const colours[] = {"black", "white", "grey",   "navy", "red",
                                      "blue",  "green", "orange", "pink", "beige"};
static const char *const materials[] = {"engineered mesh", "knit",  "synthetic",   "leather",
                                        "polyester",       "nylon", "cotton blend"};
static const char *const genders[] = {"men", "women", "unisex"};
static const char *const syll[] = {"vel",  "ora", "zen", "tri", "nova", "arc", "flux", "peg",
                                   "ster", "ion", "cas", "rid", "lum",  "kai", "dor"};
static const char *const openers[] = {"Neutral road running shoe", "Lightweight trainer",
                                      "Cushioned daily shoe",      "Breathable training top",
                                      "Packable wind jacket",      "Soft fleece layer"};
static const char *const details[] = {
    "with a responsive foam midsole", "with a durable rubber outsole",
    "with sweat-wicking fabric",      "with reflective details for low light",
    "with a supportive heel counter", "with four-way stretch"};

/* Appends one product line of the generated catalog. */
static void gen_line(sift_buf *b, size_t i)
{
    size_t model = i / 40; /* 40 variants per model: colours x sizes */
    uint64_t saved = rng_state;
    rng_state = 0x9e3779b97f4a7c15ULL ^ (model * 0x100000001b3ULL);
    for (int w = 0; w < 4; w++)
        rnd();
    const char *brand = pick(brands, N_OF(brands));
    size_t kind = rnd() % N_OF(kinds);
    char name[64];
    snprintf(name, sizeof name, "%s%s %d", pick(syll, N_OF(syll)), pick(syll, N_OF(syll)),
             (int)(rnd() % 30) + 1);
    name[0] = (char)(name[0] - 32);
    const char *material = pick(materials, N_OF(materials));
    const char *gender = pick(genders, N_OF(genders));
    const char *opener = pick(openers, N_OF(openers));
    const char *detail = pick(details, N_OF(details));
    rng_state = saved;
    const char *colour = colours[(i / 10) % 4 + (model % 6)];
    int shoe = kind < 5;
    char size[8];
    if (shoe)
        snprintf(size, sizeof size, "%d", 36 + (int)(i % 10));
    else
        snprintf(size, sizeof size, "%s", (const char *[]){"XS", "S", "M", "L", "XL"}[i % 5]);
    sift_buf_printf(b,
                    "{\"sku\":\"B%06zu-%02zu-%s\",\"version\":1,\"parent_id\":\"B%06zu\","
                    "\"title\":\"%s %s %s %s - %s\",\"brand\":\"%s\",\"category\":\"%s\","
                    "\"attributes\":{\"size\":\"%s\",\"colour\":\"%s\",\"material\":\"%s\","
                    "\"gender\":\"%s\"},\"description\":\"%s %s and a %s %s. Model %zu, "
                    "built for everyday use in hot weather.\"}\n",
                    model, i % 40, size, model, brand, name, gender, kinds[kind], colour, brand,
                    cats[kind], size, colour, material, gender, opener, detail, material,
                    shoe ? "upper" : "build", model);
}

static void tmp_path(char *dir, size_t dn, char *path, size_t pn)
{
    snprintf(dir, dn, "/tmp/sift-bench-ingest-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(path, pn, "%s/store.db", dir);
}

static void rm_store(const char *dir, const char *path)
{
    char p[600];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

static sift_store *open_store(const char *path)
{
    sift_store *s = NULL;
    sift_err e = {0};
    if (sift_store_sqlite_open(path, NULL, &s, &e)) {
        fprintf(stderr, "open: %s\n", e.msg);
        exit(1);
    }
    return s;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the last load_jsonl, so a figure can be given per CPU
 * second as well: the machine is shared, and wall time moves with the
 * neighbours' load. */
static double last_cpu, last_thread_cpu;

static double load_jsonl(sift_store *s, const sift_buf *text, size_t n, int no_thread,
                         size_t *applied)
{
    FILE *f = fmemopen(text->data, text->len, "r");
    sift_load_summary sum;
    sift_err e = {0};
    sift_load_opts o = {.no_thread = no_thread};
    double t0 = bench_now_s(), c0 = bench_cpu_s(), tc0 = thread_cpu_s();
    if (sift_catalog_load_jsonl(s, f, SIFT_CATALOG_PRODUCTS, &o, &sum, &e)) {
        fprintf(stderr, "load: %s\n", e.msg);
        exit(1);
    }
    double dt = bench_now_s() - t0;
    last_cpu = bench_cpu_s() - c0;
    last_thread_cpu = thread_cpu_s() - tc0;
    fclose(f);
    if (sum.bad || sum.lines != n) {
        fprintf(stderr, "load: %zu bad lines of %zu\n", sum.bad, sum.lines);
        exit(1);
    }
    *applied = sum.applied;
    return (double)n / dt;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 50000;
    if (n == 0)
        n = 50000;
    struct bench_report r = {.name = "ingest"};
    printf("bench_ingest: %zu products\n", n);
    /* Other processes share this machine: their load is part of the result. */
    double load1 = 0;
    if (getloadavg(&load1, 1) == 1)
        bench_add(&r, "machine load average (1 min) at the start", load1, "");

    sift_buf text;
    sift_buf_init(&text, 0);
    for (size_t i = 0; i < n; i++)
        gen_line(&text, i);

    /* Pre-parsed copies for the store-only figure. */
    sift_arena *pa = sift_arena_new(1 << 20);
    sift_product *prods = sift_calloc(n, sizeof *prods);
    if (!pa || !prods)
        return 1;
    {
        const char *p = text.data;
        for (size_t i = 0; i < n; i++) {
            const char *nl = strchr(p, '\n');
            sift_err e = {0};
            if (sift_product_parse(pa, p, (size_t)(nl - p), 1, &prods[i], NULL, &e)) {
                fprintf(stderr, "generated line %zu: %s\n", i + 1, e.msg);
                return 1;
            }
            p = nl + 1;
        }
    }

    enum { REPS = 5 };
    double jsonl_writer[REPS], update[REPS], update_cpu[REPS], change[REPS], change_cpu[REPS];
    /* The same catalog at version 2: every line replaces its product (the
     * old chunk is unindexed, the new one indexed). Same length, so the
     * version digit is patched in place. */
    sift_buf text2;
    sift_buf_init(&text2, 0);
    if (sift_buf_append(&text2, text.data, text.len))
        return 1;
    for (char *p = text2.data; (p = strstr(p, "\"version\":1,")) != NULL; p += 11)
        p[10] = '2';
    /* And at version 3 with one word of every description changed, so every
     * chunk is unindexed and indexed again. */
    sift_buf text3;
    sift_buf_init(&text3, 0);
    if (sift_buf_append(&text3, text2.data, text2.len))
        return 1;
    for (char *p = text3.data; (p = strstr(p, "\"version\":2,")) != NULL; p += 11)
        p[10] = '3';
    for (char *p = text3.data; (p = strstr(p, "hot weather")) != NULL; p += 11)
        p[0] = 'w', p[1] = 'e', p[2] = 't'; /* same length: in place */
    double jsonl[REPS], jsonl_cpu[REPS], jsonl1[REPS], jsonl1_cpu[REPS], direct[REPS],
        direct_cpu[REPS], stale[REPS];
    char dir[64], path[128];
    long long db_bytes = 0;
    for (int rep = 0; rep < REPS; rep++) {
        size_t applied = 0;
        tmp_path(dir, sizeof dir, path, sizeof path);
        sift_store *s = open_store(path);
        jsonl[rep] = load_jsonl(s, &text, n, 0, &applied);
        jsonl_cpu[rep] = (double)n / last_cpu;
        jsonl_writer[rep] = last_thread_cpu * 1e6 / (double)n;
        if (applied != n) {
            fprintf(stderr, "load: applied %zu of %zu\n", applied, n);
            return 1;
        }
        stale[rep] = load_jsonl(s, &text, n, 0, &applied);
        sift_store_close(s);
        struct stat st;
        if (stat(path, &st) == 0)
            db_bytes = st.st_size;
        s = open_store(path);
        update[rep] = load_jsonl(s, &text2, n, 0, &applied);
        update_cpu[rep] = (double)n / last_cpu;
        change[rep] = load_jsonl(s, &text3, n, 0, &applied);
        change_cpu[rep] = (double)n / last_cpu;
        if (applied != n) {
            fprintf(stderr, "change: applied %zu of %zu\n", applied, n);
            return 1;
        }
        if (applied != n) {
            fprintf(stderr, "update: applied %zu of %zu\n", applied, n);
            return 1;
        }
        sift_store_close(s);
        rm_store(dir, path);

        /* The same load with parsing on the writing thread. */
        tmp_path(dir, sizeof dir, path, sizeof path);
        s = open_store(path);
        jsonl1[rep] = load_jsonl(s, &text, n, 1, &applied);
        printf("    run %d: JSONL load %.0f/s, on one thread %.0f/s\n", rep + 1, jsonl[rep],
               jsonl1[rep]);
        jsonl1_cpu[rep] = (double)n / last_cpu;
        sift_store_close(s);
        rm_store(dir, path);

        tmp_path(dir, sizeof dir, path, sizeof path);
        s = open_store(path);
        sift_err e = {0};
        double t0 = bench_now_s(), c0 = bench_cpu_s();
        sift_store_bulk(s, 1, &e); /* as the loader does */
        for (size_t i = 0; i < n; i += 5000) {
            sift_store_begin(s, &e);
            for (size_t j = i; j < n && j < i + 5000; j++)
                if (sift_store_upsert_product(s, &prods[j], NULL, &e)) {
                    fprintf(stderr, "upsert: %s\n", e.msg);
                    return 1;
                }
            if (sift_store_commit(s, &e)) {
                fprintf(stderr, "commit: %s\n", e.msg);
                return 1;
            }
        }
        if (sift_store_bulk(s, 0, &e)) {
            fprintf(stderr, "bulk: %s\n", e.msg);
            return 1;
        }
        direct[rep] = (double)n / (bench_now_s() - t0);
        direct_cpu[rep] = (double)n / (bench_cpu_s() - c0);
        sift_store_close(s);
        if (rep < REPS - 1)
            rm_store(dir, path);
    }
    bench_add(&r, "JSONL load (parse+store+FTS)", bench_median(jsonl, REPS), "products/s");
    bench_add(&r, "JSONL load per CPU second (user+sys)", bench_median(jsonl_cpu, REPS),
              "products/cpu-s");
    /* The writing thread's share bounds the rate when a core is free for
     * the parser: 1e6 / this many products/s. */
    bench_add(&r, "JSONL load, writing thread CPU per product", bench_median(jsonl_writer, REPS),
              "us");
    bench_add(&r, "JSONL load, parsing on the writing thread", bench_median(jsonl1, REPS),
              "products/s");
    bench_add(&r, "JSONL load, parsing on the writing thread, per CPU second",
              bench_median(jsonl1_cpu, REPS), "products/cpu-s");
    bench_add(&r, "store only (pre-parsed, chunk+SQL+FTS)", bench_median(direct, REPS),
              "products/s");
    bench_add(&r, "store only per CPU second (user+sys)", bench_median(direct_cpu, REPS),
              "products/cpu-s");
    bench_add(&r, "replay of same versions (all stale)", bench_median(stale, REPS), "products/s");
    bench_add(&r, "re-load at a newer version, same text (products replaced, index kept)",
              bench_median(update, REPS), "products/s");
    bench_add(&r, "re-load at a newer version, same text, per CPU second",
              bench_median(update_cpu, REPS), "products/cpu-s");
    bench_add(&r, "re-load at a newer version, changed text (every chunk re-indexed)",
              bench_median(change, REPS), "products/s");
    bench_add(&r, "re-load at a newer version, changed text, per CPU second",
              bench_median(change_cpu, REPS), "products/cpu-s");
    bench_add(&r, "store file size per product (after WAL checkpoint)",
              (double)db_bytes / (double)n, "bytes");

    if (getenv("SIFT_BENCH_NOSEARCH")) { /* ingest figures only, no results file */
        rm_store(dir, path);
        return 0;
    }
    /* Search over the last store. */
    sift_store *s = open_store(path);
    static const char *const queries[] = {
        "nike running shoe",   "black",         "shoe",          "running shoe black 42",
        "adidas jacket women", "mesh",          "red hoodie",    "puma",
        "trail shoe 44",       "leggings navy", "B000123-05-41", "novaarc",
        "reflective jacket",   "men",           "xyzzy nothing", "asics gel running shoe men 42"};
    /* PASSES passes of `reps` runs of each query; each figure is the median
     * over the passes of that pass's percentile, so one preemption on a
     * shared machine does not make the p99. */
    enum { PASSES = 5 };
    const int reps = 20;
    size_t nq = N_OF(queries), per_pass = nq * (size_t)reps;
    double *lat = sift_calloc(per_pass, sizeof *lat);
    double *cpu = sift_calloc(per_pass, sizeof *cpu);
    double *qp99 = sift_calloc(nq * PASSES, sizeof *qp99);
    double p50[PASSES], p99[PASSES], c50[PASSES], c99[PASSES];
    sift_arena *a = sift_arena_new(0);
    if (!lat || !cpu || !qp99 || !a)
        return 1;
    for (int pass = 0; pass < PASSES; pass++) {
        for (size_t q = 0; q < nq; q++) {
            double *per = &lat[q * (size_t)reps];
            for (int i = 0; i < reps; i++) {
                sift_hit *h;
                size_t nh;
                sift_err e = {0};
                double t0 = bench_now_s(), c0 = thread_cpu_s();
                if (sift_store_search_fts(s, queries[q], 10, a, &h, &nh, &e)) {
                    fprintf(stderr, "search %s: %s\n", queries[q], e.msg);
                    return 1;
                }
                per[i] = (bench_now_s() - t0) * 1e3;
                cpu[q * (size_t)reps + (size_t)i] = (thread_cpu_s() - c0) * 1e3;
                sift_arena_reset(a);
            }
            /* bench_percentile sorts: copy first, lat stays in query order. */
            double tmp[20];
            memcpy(tmp, per, sizeof tmp);
            qp99[q * PASSES + (size_t)pass] = bench_percentile(tmp, reps, 99);
        }
        p50[pass] = bench_percentile(lat, (int)per_pass, 50);
        p99[pass] = bench_percentile(lat, (int)per_pass, 99);
        c50[pass] = bench_percentile(cpu, (int)per_pass, 50);
        c99[pass] = bench_percentile(cpu, (int)per_pass, 99);
    }
    double worst_p99 = 0;
    const char *worst = "";
    for (size_t q = 0; q < nq; q++) {
        double m = bench_median(&qp99[q * PASSES], PASSES);
        printf("    %-34s p99 %.3f ms\n", queries[q], m);
        if (m > worst_p99) {
            worst_p99 = m;
            worst = queries[q];
        }
    }
    bench_add(&r, "search k=10 p50 (16-query mix)", bench_median(p50, PASSES), "ms");
    bench_add(&r, "search k=10 p99 (16-query mix)", bench_median(p99, PASSES), "ms");
    bench_add(&r, "search k=10 CPU p50 (16-query mix)", bench_median(c50, PASSES), "ms");
    bench_add(&r, "search k=10 CPU p99 (16-query mix)", bench_median(c99, PASSES), "ms");
    char label[96];
    snprintf(label, sizeof label, "search worst query p99 (%.40s)", worst);
    bench_add(&r, label, worst_p99, "ms");
    sift_arena_free(a);
    sift_free(lat);
    sift_free(cpu);
    sift_free(qp99);
    sift_store_close(s);
    if (getenv("SIFT_BENCH_KEEP")) /* for poking at the store with sqlite3 */
        printf("  kept %s\n", path);
    else
        rm_store(dir, path);

    bench_write(&r);
    sift_free(prods);
    sift_arena_free(pa);
    sift_buf_free(&text);
    sift_buf_free(&text2);
    sift_buf_free(&text3);
    return 0;
}
