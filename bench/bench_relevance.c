/* Search quality on the public relevance sets in ../shared/datasets/
 * (datasets/README.md): each set's products are loaded into a temporary
 * in-memory store, and its dev queries run in lexical, vector and hybrid
 * mode; NDCG@10, MRR@10, R@100 and latency are printed beside the README's
 * SQLite FTS5 BM25 anchor and written to bench/results/relevance.{json,md}.
 *
 * The sets are evaluation data: they are read in place, never copied. The
 * directory comes from SIFT_DATASETS, else SIFT_SOURCE_DIR/../shared/datasets;
 * when it is absent the bench says so and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "benchutil.h"
#include "sift/catalog.h"
#include "sift/eval.h"
#include "sift/search.h"
#include "sift/store.h"

struct set {
    const char *name;
    double ndcg, mrr, recall; /* the README's BM25 anchor */
};

static const struct set sets[] = {
    {"crowdflower", 0.772, 0.800, 0.920},
    {"homedepot", 0.371, 0.342, 0.728},
};

struct run {
    const sift_searcher *se;
    sift_store *store;
    int mode;
    int lexical_store;
};

static int search_cb(void *ud, const sift_eval_query *q, size_t k, sift_arena *a,
                     const char *const **skus, size_t *n, sift_err *err)
{
    struct run *r = ud;
    sift_search_opts o = {.k = k, .mode = r->mode, .lexical_store = r->lexical_store};
    sift_search_hit *h;
    size_t nh;
    int rc = sift_search(r->se, r->store, q->text, &o, a, &h, &nh, err);
    if (rc)
        return rc;
    const char **s = sift_arena_calloc(a, nh + 1, sizeof *s);
    if (!s)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    for (size_t i = 0; i < nh; i++)
        s[i] = h[i].sku;
    *skus = s;
    *n = nh;
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int run_set(const char *dir, const struct set *set, struct bench_report *rep)
{
    char prod[1024], qp[1024], lp[1024], name[96];
    if (snprintf(prod, sizeof prod, "%s/%s/products.jsonl", dir, set->name) >= (int)sizeof prod ||
        snprintf(qp, sizeof qp, "%s/%s/queries.tsv", dir, set->name) >= (int)sizeof qp ||
        snprintf(lp, sizeof lp, "%s/%s/qrels.tsv", dir, set->name) >= (int)sizeof lp) {
        fprintf(stderr, "bench_relevance: path too long\n");
        return -1;
    }
    FILE *in = fopen(prod, "rb");
    if (!in) {
        printf("SKIP: %s not found\n", prod);
        return 0;
    }
    sift_err err = {0};
    sift_store *store = NULL;
    sift_searcher *se = NULL;
    sift_arena *a = sift_arena_new(1 << 20), *qa = sift_arena_new(1 << 16);
    sift_eval_set es;
    sift_load_summary sum = {0};
    int rc = -1;
    double t0 = bench_now_s();
    if (!a || !qa || sift_store_sqlite_open(":memory:", NULL, &store, &err) ||
        sift_catalog_load_jsonl(store, in, SIFT_CATALOG_PRODUCTS, NULL, &sum, &err) ||
        sift_searcher_open(store, NULL, &se, &err) || sift_eval_load(&es, a, qp, lp, &err)) {
        fprintf(stderr, "bench_relevance: %s: %s\n", set->name, err.msg);
        goto out;
    }
    printf("%s: %zu products loaded (%zu lines rejected by the parser), %zu queries, %.1f s\n",
           set->name, sift_searcher_count(se), sum.bad, es.n_queries, bench_now_s() - t0);
    printf("  %-8s %8s %8s %8s %9s %9s\n", "mode", "NDCG@10", "MRR@10", "R@100", "p50 ms",
           "p99 ms");
    printf("  %-8s %8.3f %8.3f %8.3f   (README anchor, SQLite FTS5 BM25)\n", "anchor", set->ndcg,
           set->mrr, set->recall);
    /* The last two rows take the BM25 list from the store's FTS5 index. */
    static const int modes[] = {SIFT_SEARCH_LEXICAL, SIFT_SEARCH_VECTOR, SIFT_SEARCH_HYBRID,
                                SIFT_SEARCH_LEXICAL, SIFT_SEARCH_HYBRID};
    static const char *const names[] = {"lexical", "vector", "hybrid", "lex-fts5", "hyb-fts5"};
    for (size_t m = 0; m < 5; m++) {
        struct run r = {se, store, modes[m], m >= 3};
        sift_eval_report er;
        sift_arena_reset(qa);
        if (sift_eval_run(&es, NULL, search_cb, &r, qa, &er, &err)) {
            fprintf(stderr, "bench_relevance: %s: %s\n", set->name, err.msg);
            goto out;
        }
        const char *mn = names[m];
        printf("  %-8s %8.3f %8.3f %8.3f %9.3f %9.3f\n", mn, er.ndcg, er.mrr, er.recall, er.ms_p50,
               er.ms_p99);
        snprintf(name, sizeof name, "%s %s NDCG@10", set->name, mn);
        bench_add(rep, name, er.ndcg, "");
        snprintf(name, sizeof name, "%s %s MRR@10", set->name, mn);
        bench_add(rep, name, er.mrr, "");
        snprintf(name, sizeof name, "%s %s R@100", set->name, mn);
        bench_add(rep, name, er.recall, "");
        snprintf(name, sizeof name, "%s %s p50", set->name, mn);
        bench_add(rep, name, er.ms_p50, "ms");
        snprintf(name, sizeof name, "%s %s p99", set->name, mn);
        bench_add(rep, name, er.ms_p99, "ms");
    }
    snprintf(name, sizeof name, "%s anchor NDCG@10", set->name);
    bench_add(rep, name, set->ndcg, "");
    rc = 0;
out:
    fclose(in);
    sift_searcher_close(se);
    sift_store_close(store);
    sift_arena_free(qa);
    sift_arena_free(a);
    return rc;
}

int main(void)
{
    char dflt[1024];
    const char *dir = getenv("SIFT_DATASETS");
    if (!dir) {
        const char *src = getenv("SIFT_SOURCE_DIR");
        snprintf(dflt, sizeof dflt, "%s/../shared/datasets", src ? src : SIFT_SOURCE_DIR);
        dir = dflt;
    }
    if (!is_dir(dir)) {
        printf("SKIP: ../shared/datasets not found (looked in %s; set SIFT_DATASETS)\n", dir);
        return 0;
    }
    struct bench_report rep = {.name = "relevance"};
    int ran = 0;
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        char p[1024];
        if (snprintf(p, sizeof p, "%s/%s", dir, sets[i].name) >= (int)sizeof p || !is_dir(p)) {
            printf("SKIP: %s not found\n", p);
            continue;
        }
        if (run_set(dir, &sets[i], &rep))
            return 1;
        ran++;
    }
    if (ran)
        bench_write(&rep);
    return 0;
}
