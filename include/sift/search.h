/* Hybrid product search: BM25 from the store, vectors from an in-memory exact
 * index, fused with reciprocal rank fusion, constrained by the structured
 * filters that query understanding (query.h) reads from the shopper's text.
 *
 * A sift_searcher is built once over a store (sift_searcher_open reads every
 * live product, embeds its chunk text (with the built-in hashed embedder, or
 * the provider given in opts.embedder, e.g. a remote /v1/embeddings) and
 * keeps, per product, its SKU, title, BM25 postings and the attributes filters
 * need: brand, size, colour and gender as small interned ids). After open it is
 * read-only: any number of threads may call sift_search on it at once.
 *
 * Threading and the store: a sift_store is one connection used by one thread
 * at a time (store.h), so the searcher does not hold one for searching. By
 * default everything a search needs is in the searcher's memory (BM25 index,
 * vectors, attributes, SKU table), and the store argument may be NULL. With
 * opts.lexical_store the BM25 list comes from the calling thread's own
 * store connection instead. The searcher is a snapshot of the catalog at
 * open: products written afterwards are found (through the store's BM25
 * only) when a new searcher is opened.
 *
 * Pipeline of one search (docs/search.md gives the measurements behind the
 * choices):
 *   1. sift_query_parse → brand, size, colours, gender (hard filters when
 *      the catalog knows the value; a value no product carries is ignored,
 *      so "nike" in a catalog without brands is just a word), product type
 *      and price (not filters here: the type stays a ranking signal through
 *      the text, prices are volatile and are checked by the shop tools).
 *   2. lexical list: BM25 over the product fields from the searcher's
 *      in-memory inverted index (every query term OR-ed, every posting
 *      scored, the filter applied while scoring), `candidates` deep; or,
 *      with lexical_store, sift_store_search_fts on the caller's connection
 *      (three times deeper when filters are active, at most 1000, then the
 *      filters), so truncation to k happens after filtering either way.
 *   3. vector list: the query embedded, the index scanned with the filter
 *      as a bitset applied before its top-k cut.
 *   4. RRF of the two lists with the configured weights; SKUs named exactly
 *      in the query come first, filters or not. */
#ifndef SIFT_SEARCH_H
#define SIFT_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "sift/arena.h"
#include "sift/embed.h"
#include "sift/err.h"
#include "sift/query.h"
#include "sift/store.h"

typedef struct sift_searcher sift_searcher;

typedef enum sift_search_mode {
    SIFT_SEARCH_HYBRID = 0, /* BM25 and vectors, fused */
    SIFT_SEARCH_LEXICAL = 1,
    SIFT_SEARCH_VECTOR = 2,
} sift_search_mode;

/* "hybrid", "lexical", "vector"; NULL for an unknown mode. */
const char *sift_search_mode_name(int mode);

/* Parses a mode name; SIFT_EINVAL for an unknown one. */
int sift_search_mode_parse(const char *name, int *mode, sift_err *err);

#define SIFT_SEARCH_K_MAX 1000
#define SIFT_SEARCH_CANDIDATES_DEFAULT 100

/* Options of one search. Zero-initialise: every zero field means its
 * default. */
typedef struct sift_search_opts {
    size_t k;          /* results wanted, 1..SIFT_SEARCH_K_MAX; 0: 10 */
    int mode;          /* sift_search_mode; 0: hybrid */
    size_t candidates; /* depth of each list before fusion; 0: max(k, 100); capped at 1000 */
    double w_lexical;  /* RRF weight of the BM25 list; 0: default (1); negative: 0 */
    double w_vector;   /* RRF weight of the vector list; 0: default (0.25); negative: 0 */
    double rrf_k;      /* RRF's constant; 0: 60 */
    /* Filters: NULL derives them from the text with sift_query_parse; a
     * query given here is used as it is (its brand, size, colours and
     * gender; keywords are not used, the text is searched). */
    const sift_query *filters;
    int no_filters; /* 1: no structured filters at all */
    /* 1: the BM25 list comes from the store (sift_store_search_fts, bounded,
     * sees products written after open); 0: from the searcher's in-memory
     * index (every posting scored, better on the dev sets: docs/search.md). */
    int lexical_store;
    /* The query's vector, computed beforehand (sift_searcher_embed_query):
     * required in hybrid and vector modes when the searcher's embedder is
     * remote, optional otherwise. query_vec_id names the embedder that made
     * it (its `id`); a vector from another embedder than the one that built
     * the index is refused with SIFT_EINVAL, never compared. */
    const float *query_vec; /* sift_searcher_dims() floats, or NULL */
    const char *query_vec_id;
} sift_search_opts;

/* One result. */
typedef struct sift_search_hit {
    const char *sku;   /* valid while the searcher is open */
    const char *title; /* valid while the searcher is open, or in the arena */
    double score;      /* the fused (RRF) score; higher is better */
    size_t lex_rank;   /* 1-based rank in the filtered BM25 list, 0 when absent */
    size_t vec_rank;   /* 1-based rank in the filtered vector list, 0 when absent */
    int exact_sku;     /* 1 when the query named this SKU */
} sift_search_hit;

/* Searcher options. Zero-initialise. */
typedef struct sift_searcher_opts {
    /* The provider that embeds the products and, when it is local, the
     * queries (embed.h). The searcher takes it over: it is freed with the
     * searcher, or at once when open fails. NULL: the built-in hashed
     * embedder with `dims`. A remote provider embeds the catalog at open
     * through embed_sync (batched, concurrent, retried: open waits for it,
     * so open a searcher off the serving loops). */
    struct sift_embedder *embedder;
    size_t dims;          /* hashed embedding dimensions; 0: SIFT_HASHED_DIMS_DEFAULT */
    int float_vectors;    /* 1: float storage instead of int8 */
    int embed_full_chunk; /* 1: embed the whole chunk (with description); 0: title,
                             brand, category and attributes only (better on the dev
                             sets, docs/search.md) */
} sift_searcher_opts;

/* Builds a searcher from every live product of `store` (sift_store_scan_products).
 * `opts` may be NULL. The store is not kept. SIFT_ENOMEM, store errors,
 * SIFT_ETOOBIG over 2^31 products. */
int sift_searcher_open(sift_store *store, const sift_searcher_opts *opts, sift_searcher **out,
                       sift_err *err);

/* sift_searcher_open over the SQLite store at `path` (or the PostgreSQL store
 * when `path` is a postgres:// URL, see sift_store_open), opened read-only
 * for the scan and closed again: the searcher needs no connection afterwards. */
int sift_searcher_open_sqlite(const char *path, const sift_searcher_opts *opts, sift_searcher **out,
                              sift_err *err);

/* Frees the searcher. NULL is a no-op. No search may be running. */
void sift_searcher_close(sift_searcher *s);

/* Products indexed. */
size_t sift_searcher_count(const sift_searcher *s);

/* The identity of the embedder that built the vector index (embed.h: e.g.
 * "hashed:256:w2:g1", "openai:text-embedding-3-small:1536"), valid while the
 * searcher is open; its dimensions; and 1 when it is remote, in which case
 * a hybrid or vector search needs opts.query_vec (the searcher never waits
 * on the network inside sift_search, which runs on pool threads). */
const char *sift_searcher_vector_id(const sift_searcher *s);
size_t sift_searcher_dims(const sift_searcher *s);
int sift_searcher_remote(const sift_searcher *s);

/* Embeds `text` with the searcher's own embedder into out (dims floats),
 * asynchronously on ctx's loop, for opts.query_vec (with query_vec_id =
 * sift_searcher_vector_id). The contract of sift_embedder_embed: 0 and
 * `done` fires exactly once (from the loop for a remote provider, before
 * returning for a local one; ctx's cancellation and deadline end it), or a
 * negative code and `done` never fires. `text` and `out` must stay valid
 * until `done`. Safe from several loops at once when the remote provider
 * was made with client_of. */
int sift_searcher_embed_query(const sift_searcher *s, struct sift_ctx *ctx, const char *text,
                              float *out, sift_embed_done_fn done, void *ud, sift_err *err);

/* Embeds texts[0..n) (NUL-terminated) with the searcher's own embedder on
 * the calling thread into out[0..n*dims), for opts.query_vec (with
 * query_vec_id = sift_searcher_vector_id): how a batch job (sift eval, the
 * relevance bench) gets query vectors from a remote provider, in batches
 * and with its retries. A remote provider runs a private loop for the call,
 * so never call this on a thread whose loop serves requests. The errors of
 * sift_embedder_embed_sync. */
int sift_searcher_embed_sync(const sift_searcher *s, const char *const *texts, size_t n, float *out,
                             sift_err *err);

/* Searches for `text` (NUL-terminated) and fills *hits (allocated from `a`)
 * with at most opts->k results, best first; *n gets how many. `store` is
 * the calling thread's connection to the same catalog (used in lexical and
 * hybrid modes with opts.lexical_store; may be NULL otherwise). `opts` may be NULL. A text with
 * no searchable word gives no results (not an error). Results are
 * deterministic: the same searcher, store contents, text and options give
 * the same list. SIFT_EINVAL for bad options, SIFT_ENOMEM, store errors. */
int sift_search(const sift_searcher *s, sift_store *store, const char *text,
                const sift_search_opts *opts, sift_arena *a, sift_search_hit **hits, size_t *n,
                sift_err *err);

#endif
