/* Relevance evaluation: NDCG@10, MRR@10 and Recall@100 of a search function
 * over a set of queries with graded labels (docs/eval.md).
 *
 * Files (UTF-8, TAB-separated, a header line first):
 *   queries.tsv   query_id<TAB>query
 *   qrels.tsv     query_id<TAB>sku<TAB>gain      (gain: a number >= 0)
 * A product not labelled for a query has gain 0 for it.
 *
 * Metrics, per query, then averaged over the "judged" queries (those with
 * at least one label of gain > 0, i.e. ideal DCG > 0); the others are run
 * and timed but not scored. MRR is averaged over the judged queries that
 * have a label reaching top_gain (the others cannot score), the convention
 * that reproduces the data sets' published anchors:
 *   NDCG@k   DCG = sum over ranks r = 1..k of gain(r) / log2(r + 1), divided
 *            by the DCG of the query's own labels sorted by gain, best first.
 *   MRR@k    1/r for the first rank r <= k holding a product whose gain is
 *            at least top_gain, 0 when there is none.
 *   R@k      products with gain > 0 found in the top k / products with
 *            gain > 0 labelled for the query.
 * A SKU repeated in a result list counts at its first rank only; later
 * repeats have gain 0. */
#ifndef SIFT_EVAL_H
#define SIFT_EVAL_H

#include <stddef.h>

#include "sift/arena.h"
#include "sift/err.h"

#define SIFT_EVAL_LINE_MAX 65536      /* bytes in one TSV line */
#define SIFT_EVAL_FILE_MAX 268435456u /* bytes in one file */
#define SIFT_EVAL_DEPTH_MAX 1000      /* largest k of any metric */

typedef struct sift_eval_label {
    const char *sku;
    double gain;
} sift_eval_label;

typedef struct sift_eval_query {
    const char *id;
    const char *text;
    sift_eval_label *labels; /* sorted by sku (strcmp) */
    size_t n_labels;
    size_t n_relevant; /* labels with gain > 0 */
    double max_gain;   /* highest label gain; 0 when none */
} sift_eval_query;

/* Queries in file order with their labels. Everything lives in `arena`. */
typedef struct sift_eval_set {
    sift_eval_query *queries;
    size_t n_queries;
    size_t n_labels;        /* qrels lines attached to a query */
    size_t n_orphan_labels; /* qrels lines whose query_id is not in the queries file: ignored */
    double max_gain;        /* highest gain in the set */
} sift_eval_set;

/* Parses a queries file and a qrels file held in memory into `set`
 * (allocated from `a`). `qname` and `rname` name the files in messages.
 * Errors (SIFT_EINVAL, with the file, the 1-based line and the reason):
 *   missing or wrong header, wrong number of fields, empty query_id, query
 *   or sku, a gain that is not a finite number >= 0, a query_id repeated in
 *   the queries file, a (query_id, sku) pair labelled twice, a line over
 *   SIFT_EVAL_LINE_MAX. Blank lines are skipped; "\r\n" endings are fine.
 * SIFT_ENOMEM when the arena is exhausted. */
int sift_eval_parse(sift_eval_set *set, sift_arena *a, const char *qname, const char *qdata,
                    size_t qlen, const char *rname, const char *rdata, size_t rlen, sift_err *err);

/* Reads both files and parses them (SIFT_EIO when a file cannot be read,
 * SIFT_ETOOBIG over SIFT_EVAL_FILE_MAX). */
int sift_eval_load(sift_eval_set *set, sift_arena *a, const char *queries_path,
                   const char *qrels_path, sift_err *err);

/* The gain of `sku` for query q (0 when unlabelled). */
double sift_eval_gain(const sift_eval_query *q, const char *sku);

typedef struct sift_eval_opts {
    double top_gain; /* MRR's hit threshold; 0: the set's max_gain (3 crowdflower, 2 homedepot) */
    size_t ndcg_k;   /* 0: 10 */
    size_t mrr_k;    /* 0: 10 */
    size_t recall_k; /* 0: 100 */
} sift_eval_opts;

/* Scores of one query. */
typedef struct sift_eval_scores {
    int judged;    /* 1 when the query has a label with gain > 0 */
    int has_top;   /* 1 when a label reaches top_gain */
    double ndcg;   /* 0..1; 0 when not judged */
    double rr;     /* reciprocal rank of the first top-gain product, 0 when none */
    double recall; /* 0..1 */
} sift_eval_scores;

/* Scores the ranked list ranked[0..n) (best first) against q's labels.
 * `opts` may be NULL (defaults; top_gain 0 then means q->max_gain). Pure. */
void sift_eval_score(const sift_eval_query *q, const char *const *ranked, size_t n,
                     const sift_eval_opts *opts, sift_eval_scores *out);

/* The search under test: fills *skus (allocated from `a`, which is reset
 * after each query) with at most `k` SKUs for `q`, best first. Returns 0 or
 * a negative code, which stops the run. */
typedef int (*sift_eval_search_fn)(void *ud, const sift_eval_query *q, size_t k, sift_arena *a,
                                   const char *const **skus, size_t *n, sift_err *err);

typedef struct sift_eval_result {
    const char *query_id;
    sift_eval_scores s;
    double ms; /* wall time of the search call */
    size_t n_results;
} sift_eval_result;

typedef struct sift_eval_report {
    size_t n_queries; /* queries run */
    size_t n_judged;  /* queries scored: the denominator of NDCG and recall */
    size_t n_has_top; /* judged queries with a label reaching top_gain: MRR's denominator */
    double top_gain;  /* the threshold used */
    double ndcg, mrr, recall;
    double ms_p50, ms_p99, ms_mean, ms_max; /* over all queries run */
    sift_eval_result *per_query;            /* n_queries, in file order, in the report's arena */
} sift_eval_report;

/* Runs `search` for every query of `set` (asking for max(ndcg_k, mrr_k,
 * recall_k) results), times each call, scores the lists and fills `rep`
 * (per_query allocated from `a`). A search error stops the run and is
 * returned with "query <id>: " before its message. */
int sift_eval_run(const sift_eval_set *set, const sift_eval_opts *opts, sift_eval_search_fn search,
                  void *ud, sift_arena *a, sift_eval_report *rep, sift_err *err);

#endif
