/* sift eval: relevance figures (NDCG@10, MRR@10, R@k) and latency of the
 * search over a queries file and a graded labels file (docs/eval.md). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "sift/catalog.h"
#include "sift/config.h"
#include "sift/embed.h"
#include "sift/eval.h"
#include "sift/search.h"
#include "sift/store.h"

static const char usage[] =
    "usage: sift eval --queries Q --labels L (--db PATH|URL | --products FILE) [options]\n"
    "\n"
    "Runs every query of Q (TSV: query_id<TAB>query, header line) through the search\n"
    "and scores the results against L (TSV: query_id<TAB>sku<TAB>gain, header line);\n"
    "docs/eval.md describes the formats and the metrics.\n"
    "\n"
    "options:\n"
    "  --queries FILE     queries file (required)\n"
    "  --labels FILE      graded labels file (required)\n"
    "  --db PATH|URL      SQLite file or postgres:// URL to search (opened read-only)\n"
    "  --products FILE    JSON Lines catalog loaded into a temporary in-memory store instead\n"
    "  --mode MODE        lexical, vector or hybrid (default hybrid)\n"
    "  --k N              depth of the recall figure, R@N (default 100, at most 1000)\n"
    "  --top-gain G       gain that counts as a hit for MRR (default: the labels' highest)\n"
    "  --candidates N     depth of each list before fusion (default max(N of --k, 100))\n"
    "  --w-lexical W      RRF weight of the BM25 list (default 1)\n"
    "  --w-vector W       RRF weight of the vector list (default 0.25)\n"
    "  --embed-full       embed whole chunks, descriptions included\n"
    "  --config FILE      configuration whose \"embed\" section (and SIFT_EMBED_* in the\n"
    "                     environment) chooses the embedding provider (default: ./sift.yaml\n"
    "                     when it exists; without one, the built-in hashed embedder)\n"
    "  --lexical-store    BM25 from the store's FTS5 index instead of the in-memory one\n"
    "  --json             print the figures as one JSON object\n"
    "  -h, --help         this text\n";

struct run {
    const sift_searcher *searcher;
    sift_store *store;
    sift_search_opts opts;
    /* a remote embedder's query vectors, one per query in set order (the
     * search itself never waits on the network) */
    const sift_eval_query *queries;
    const float *qvecs;
    size_t dims;
};

static int search_cb(void *ud, const sift_eval_query *q, size_t k, sift_arena *a,
                     const char *const **skus, size_t *n, sift_err *err)
{
    struct run *r = ud;
    sift_search_opts o = r->opts;
    o.k = k;
    if (r->qvecs) {
        o.query_vec = r->qvecs + (size_t)(q - r->queries) * r->dims;
        o.query_vec_id = sift_searcher_vector_id(r->searcher);
    }
    sift_search_hit *h;
    size_t nh;
    int rc = sift_search(r->searcher, r->store, q->text, &o, a, &h, &nh, err);
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

static void on_bad(void *ud, size_t lineno, const char *msg)
{
    (void)lineno;
    fprintf(stderr, "sift eval: %s: skipped %s\n", (const char *)ud, msg);
}

/* A JSON string: the embedder's id comes from the configuration. */
static void print_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Embeds every query up front, in the provider's batches: one request per
 * batch instead of one per query, and the search timings stay the search's. */
static int embed_queries(struct run *r, const sift_eval_set *set, sift_arena *a, double *secs,
                         sift_err *err)
{
    size_t n = set->n_queries, dims = sift_searcher_dims(r->searcher);
    const char **texts = sift_arena_calloc(a, n + 1, sizeof *texts);
    float *v = n ? sift_arena_alloc(a, n * dims * sizeof *v) : NULL;
    if (!texts || (n && !v))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory for %zu query vectors", n);
    for (size_t i = 0; i < n; i++)
        texts[i] = set->queries[i].text;
    uint64_t t0 = uv_hrtime();
    int rc = sift_searcher_embed_sync(r->searcher, texts, n, v, err);
    *secs = (double)(uv_hrtime() - t0) / 1e9;
    if (rc)
        return rc;
    r->queries = set->queries;
    r->qvecs = v;
    r->dims = dims;
    return 0;
}

static int parse_num(const char *name, const char *arg, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (!*arg || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "sift eval: --%s must be a number from %g to %g\n", name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_eval(int argc, char **argv)
{
    static const struct option longopts[] = {{"queries", required_argument, NULL, 'q'},
                                             {"labels", required_argument, NULL, 'l'},
                                             {"db", required_argument, NULL, 'd'},
                                             {"products", required_argument, NULL, 'p'},
                                             {"mode", required_argument, NULL, 'm'},
                                             {"k", required_argument, NULL, 'k'},
                                             {"top-gain", required_argument, NULL, 'g'},
                                             {"candidates", required_argument, NULL, 'c'},
                                             {"w-lexical", required_argument, NULL, 'L'},
                                             {"w-vector", required_argument, NULL, 'V'},
                                             {"embed-full", no_argument, NULL, 'E'},
                                             {"lexical-store", no_argument, NULL, 'S'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"config", required_argument, NULL, 'C'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *qpath = NULL, *lpath = NULL, *db = NULL, *products = NULL, *config = NULL;
    struct run r = {0};
    sift_eval_opts eo = {0};
    sift_searcher_opts so = {0};
    int json = 0, c;
    double v;
    sift_err err = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'q':
            qpath = optarg;
            break;
        case 'l':
            lpath = optarg;
            break;
        case 'd':
            db = optarg;
            break;
        case 'p':
            products = optarg;
            break;
        case 'm':
            if (sift_search_mode_parse(optarg, &r.opts.mode, &err)) {
                fprintf(stderr, "sift eval: --%s\n", err.msg);
                return CLI_USAGE;
            }
            break;
        case 'k':
            if (parse_num("k", optarg, 1, SIFT_EVAL_DEPTH_MAX, &v) || v != (size_t)v)
                return CLI_USAGE;
            eo.recall_k = (size_t)v;
            break;
        case 'c':
            if (parse_num("candidates", optarg, 1, SIFT_SEARCH_K_MAX, &v))
                return CLI_USAGE;
            r.opts.candidates = (size_t)v;
            break;
        case 'g':
            if (parse_num("top-gain", optarg, 1e-9, 1e9, &v))
                return CLI_USAGE;
            eo.top_gain = v;
            break;
        case 'L':
        case 'V':
            if (parse_num(c == 'L' ? "w-lexical" : "w-vector", optarg, 0, 1e6, &v))
                return CLI_USAGE;
            /* 0 means "default" in the options; a weight of 0 is asked with -1. */
            if (c == 'L')
                r.opts.w_lexical = v > 0 ? v : -1;
            else
                r.opts.w_vector = v > 0 ? v : -1;
            break;
        case 'E':
            so.embed_full_chunk = 1;
            break;
        case 'S':
            r.opts.lexical_store = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'C':
            config = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            fputs(usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc || !qpath || !lpath || (!db == !products)) {
        fprintf(stderr, "sift eval: %s\n\n%s",
                optind != argc     ? "unexpected argument"
                : !qpath || !lpath ? "--queries and --labels are required"
                                   : "give exactly one of --db and --products",
                usage);
        return CLI_USAGE;
    }

    if (!config && access("sift.yaml", R_OK) == 0)
        config = "sift.yaml";
    sift_config cfg;
    if (sift_config_load(&cfg, config, &err)) {
        fprintf(stderr, "sift eval: %s\n", err.msg);
        return CLI_FAIL;
    }
    int status = CLI_FAIL;
    double embed_s = -1;
    sift_arena *a = sift_arena_new(1 << 20), *qa = sift_arena_new(1 << 16);
    sift_store *store = NULL;
    sift_searcher *searcher = NULL;
    FILE *in = NULL;
    sift_eval_set set;
    sift_eval_report rep;
    if (!a || !qa) {
        fprintf(stderr, "sift eval: out of memory\n");
        goto out;
    }
    if (sift_eval_load(&set, a, qpath, lpath, &err)) {
        fprintf(stderr, "sift eval: %s\n", err.msg);
        goto out;
    }
    if (db) {
        if (sift_store_open(db, 1, &store, &err)) {
            fprintf(stderr, "sift eval: %s\n", err.msg);
            goto out;
        }
    } else {
        if (!(in = fopen(products, "rb"))) {
            fprintf(stderr, "sift eval: cannot open %s: %s\n", products, strerror(errno));
            goto out;
        }
        sift_load_opts lo = {.on_bad = on_bad, .ud = (void *)products};
        if (sift_store_sqlite_open(":memory:", NULL, &store, &err) ||
            sift_catalog_load_jsonl(store, in, SIFT_CATALOG_PRODUCTS, &lo, NULL, &err)) {
            fprintf(stderr, "sift eval: %s: %s\n", products, err.msg);
            goto out;
        }
    }
    /* the embedding provider of the configuration (docs/vectors.md), as sift
     * serve and sift ask read it; no loop here, so a remote one answers
     * through embed_sync */
    sift_embed_config ec;
    if (sift_embed_config_read(cfg.doc, config ? config : "config", &ec, &err)) {
        fprintf(stderr, "sift eval: %s\n", err.msg);
        goto out;
    }
    int erc = sift_embed_config_embedder(&ec, NULL, NULL, &so.embedder, &err);
    sift_embed_config_free(&ec);
    if (erc || sift_searcher_open(store, &so, &searcher, &err)) {
        fprintf(stderr, "sift eval: %s\n", err.msg);
        goto out;
    }
    r.searcher = searcher;
    r.store = store;
    if (r.opts.mode != SIFT_SEARCH_LEXICAL && sift_searcher_remote(searcher) &&
        embed_queries(&r, &set, a, &embed_s, &err)) {
        fprintf(stderr, "sift eval: embedding the queries: %s\n", err.msg);
        goto out;
    }
    if (sift_eval_run(&set, &eo, search_cb, &r, qa, &rep, &err)) {
        fprintf(stderr, "sift eval: %s\n", err.msg);
        goto out;
    }
    size_t rk = eo.recall_k ? eo.recall_k : 100;
    const char *mode = sift_search_mode_name(r.opts.mode);
    const char *eid = sift_searcher_vector_id(searcher);
    if (json) {
        printf("{\"embedder\":");
        print_json_str(eid);
        if (embed_s >= 0)
            printf(",\"query_embed_s\":%.3f", embed_s);
        printf(",\"mode\":\"%s\",\"products\":%zu,\"queries\":%zu,\"judged\":%zu,"
               "\"with_top_gain\":%zu,\"top_gain\":%g,\"ndcg@10\":%.4f,\"mrr@10\":%.4f,"
               "\"recall@%zu\":%.4f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
               mode, sift_searcher_count(searcher), rep.n_queries, rep.n_judged, rep.n_has_top,
               rep.top_gain, rep.ndcg, rep.mrr, rk, rep.recall, rep.ms_p50, rep.ms_p99);
    } else {
        printf("mode       %s (%zu products)\n", mode, sift_searcher_count(searcher));
        printf("embedder   %s\n", eid);
        if (embed_s >= 0)
            printf("embedding  %zu queries in %.3f s, before the searches (not in the latency)\n",
                   set.n_queries, embed_s);
        printf("queries    %zu run, %zu judged, %zu with a label of gain >= %g\n", rep.n_queries,
               rep.n_judged, rep.n_has_top, rep.top_gain);
        printf("NDCG@10    %.4f\n", rep.ndcg);
        printf("MRR@10     %.4f\n", rep.mrr);
        printf("R@%-8zu %.4f\n", rk, rep.recall);
        printf("latency    p50 %.3f ms, p99 %.3f ms\n", rep.ms_p50, rep.ms_p99);
    }
    status = CLI_OK;
out:
    if (in)
        fclose(in);
    sift_searcher_close(searcher);
    sift_store_close(store);
    sift_arena_free(qa);
    sift_arena_free(a);
    sift_config_free(&cfg);
    return status;
}
