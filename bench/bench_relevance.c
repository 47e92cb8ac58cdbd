/* Search quality on the public relevance sets in ../shared/datasets/
 * (datasets/README.md): each set's products are loaded into a temporary
 * in-memory store, and its dev queries run in lexical, vector and hybrid
 * mode; NDCG@10, MRR@10, R@100 and latency are printed beside the README's
 * SQLite FTS5 BM25 anchor and written to bench/results/relevance.{json,md}.
 *
 *   bench_relevance [CONFIG]
 *
 * The embedder is the one the "embed" section of CONFIG (a sift.yaml) and
 * SIFT_EMBED_* in the environment select (docs/vectors.md; the built-in
 * hashed one by default), named in the output
 * and in the results as the figure "<set> embedder <id>" (its dimensions). A
 * remote provider embeds each set's queries up front, in its batches, so
 * the latencies stay the search's; its results go to relevance_remote.*
 * instead, beside the hashed reference figures.
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
#include "sift/config.h"
#include "sift/embed.h"
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
    const sift_eval_query *queries; /* a remote embedder's query vectors, in set order */
    const float *qvecs;
    size_t dims;
};

static int search_cb(void *ud, const sift_eval_query *q, size_t k, sift_arena *a,
                     const char *const **skus, size_t *n, sift_err *err)
{
    struct run *r = ud;
    sift_search_opts o = {.k = k, .mode = r->mode, .lexical_store = r->lexical_store};
    if (r->qvecs && r->mode != SIFT_SEARCH_LEXICAL) {
        o.query_vec = r->qvecs + (size_t)(q - r->queries) * r->dims;
        o.query_vec_id = sift_searcher_vector_id(r->se);
    }
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

/* The queries' vectors from a remote provider, all up front (from `a`). */
static float *embed_queries(const sift_searcher *se, const sift_eval_set *es, sift_arena *a,
                            sift_err *err)
{
    size_t n = es->n_queries, dims = sift_searcher_dims(se);
    const char **t = sift_arena_calloc(a, n + 1, sizeof *t);
    float *v = sift_arena_alloc(a, (n ? n : 1) * dims * sizeof *v);
    if (!t || !v) {
        sift_err_set(err, SIFT_ENOMEM, "out of memory for %zu query vectors", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        t[i] = es->queries[i].text;
    return sift_searcher_embed_sync(se, t, n, v, err) ? NULL : v;
}

static int run_set(const char *dir, const struct set *set, const sift_embed_config *ec,
                   struct bench_report *rep)
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
    const float *qvecs = NULL;
    double t0 = bench_now_s(), tq = 0;
    sift_searcher_opts so = {0};
    int erc = sift_embed_config_embedder(ec, NULL, NULL, &so.embedder, &err);
    if (erc || !a || !qa || sift_store_sqlite_open(":memory:", NULL, &store, &err) ||
        sift_catalog_load_jsonl(store, in, SIFT_CATALOG_PRODUCTS, NULL, &sum, &err)) {
        fprintf(stderr, "bench_relevance: %s: %s\n", set->name,
                erc || (a && qa) ? err.msg : "out of memory");
        goto out;
    }
    int src = sift_searcher_open(store, &so, &se, &err);
    so.embedder = NULL; /* the searcher took it over, even on failure */
    if (src || sift_eval_load(&es, a, qp, lp, &err)) {
        fprintf(stderr, "bench_relevance: %s: %s\n", set->name, err.msg);
        goto out;
    }
    if (sift_searcher_remote(se)) {
        tq = bench_now_s();
        if (!(qvecs = embed_queries(se, &es, a, &err))) {
            fprintf(stderr, "bench_relevance: %s: embedding the queries: %s\n", set->name, err.msg);
            goto out;
        }
        tq = bench_now_s() - tq;
    }
    printf("%s: %zu products loaded (%zu lines rejected by the parser), %zu queries, %.1f s\n",
           set->name, sift_searcher_count(se), sum.bad, es.n_queries, bench_now_s() - t0);
    printf("  embedder %s (%zu dimensions)", sift_searcher_vector_id(se), sift_searcher_dims(se));
    if (qvecs)
        printf(", queries embedded up front in %.2f s", tq);
    printf("\n");
    snprintf(name, sizeof name, "%s embedder %s", set->name, sift_searcher_vector_id(se));
    bench_add(rep, name, (double)sift_searcher_dims(se), "dims");
    printf("  %-8s %8s %8s %8s %9s %9s\n", "mode", "NDCG@10", "MRR@10", "R@100", "p50 ms",
           "p99 ms");
    printf("  %-8s %8.3f %8.3f %8.3f   (README anchor, SQLite FTS5 BM25)\n", "anchor", set->ndcg,
           set->mrr, set->recall);
    /* The last two rows take the BM25 list from the store's FTS5 index. */
    static const int modes[] = {SIFT_SEARCH_LEXICAL, SIFT_SEARCH_VECTOR, SIFT_SEARCH_HYBRID,
                                SIFT_SEARCH_LEXICAL, SIFT_SEARCH_HYBRID};
    static const char *const names[] = {"lexical", "vector", "hybrid", "lex-fts5", "hyb-fts5"};
    for (size_t m = 0; m < 5; m++) {
        struct run r = {se, store, modes[m], m >= 3, es.queries, qvecs, sift_searcher_dims(se)};
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
    sift_embedder_free(so.embedder);
    sift_searcher_close(se);
    sift_store_close(store);
    sift_arena_free(qa);
    sift_arena_free(a);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: bench_relevance [CONFIG]\n");
        return 2;
    }
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
    /* the embedding provider, as sift serve reads it */
    sift_config cfg;
    sift_embed_config ec;
    sift_err err = {0};
    const char *cpath = argc == 2 ? argv[1] : NULL;
    if (sift_config_load(&cfg, cpath, &err)) {
        fprintf(stderr, "bench_relevance: %s\n", err.msg);
        return 1;
    }
    int erc = sift_embed_config_read(cfg.doc, cpath ? cpath : "config", &ec, &err);
    sift_config_free(&cfg);
    if (erc) {
        fprintf(stderr, "bench_relevance: %s\n", err.msg);
        return 1;
    }
    /* a remote provider's figures go beside the hashed reference ones */
    if (strcmp(ec.provider, "hashed") != 0)
        snprintf(rep.name, sizeof rep.name, "relevance_remote");
    int ran = 0;
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        char p[1024];
        if (snprintf(p, sizeof p, "%s/%s", dir, sets[i].name) >= (int)sizeof p || !is_dir(p)) {
            printf("SKIP: %s not found\n", p);
            continue;
        }
        if (run_set(dir, &sets[i], &ec, &rep)) {
            sift_embed_config_free(&ec);
            return 1;
        }
        ran++;
    }
    sift_embed_config_free(&ec);
    if (ran)
        bench_write(&rep);
    return 0;
}
