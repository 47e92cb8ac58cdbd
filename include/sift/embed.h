/* Embedding providers: text in, unit-length float vectors out.
 *
 * One interface covers two kinds of provider:
 *  - the built-in hashed n-gram embedder, which needs no model and no network
 *    and computes on the calling thread (microseconds per text);
 *  - the remote provider, an OpenAI-compatible /v1/embeddings endpoint
 *    through the curl-on-uv client (http.h), which answers later on the loop.
 * Both implement the asynchronous `embed`: the caller supplies the output
 * array and a completion callback. A provider that computes on the spot (the
 * built-in one) calls the callback before `embed` returns; a remote one calls
 * it from the loop. Callers therefore must not touch anything after `embed`
 * returns 0 that the callback may have released. Both also answer
 * synchronously through `embed_sync`, which loaders and benchmarks use off
 * the loop (the remote one runs a private loop for the call: never call it
 * on a thread whose loop serves requests).
 *
 * Every provider has an identity string (`id`): what produced its vectors
 * ("hashed:256:w2:g1", "openai:text-embedding-3-small:1536"). Vectors of
 * different identities are not comparable; the searcher records the identity
 * that built its index and refuses query vectors of another (search.h).
 *
 * Vectors are `dims` floats per text, row-major in `out` (n * dims floats),
 * L2-normalised (a text with no features gets the zero vector), so a dot
 * product is the cosine similarity. */
#ifndef SIFT_EMBED_H
#define SIFT_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sift/buf.h"
#include "sift/err.h"

struct sift_ctx;
struct sift_http_client;
typedef struct sift_embedder sift_embedder;

/* Completion of one embed call: code 0 when `out` holds every vector, or a
 * negative SIFT_E code with err (valid during the call only) telling why;
 * on error the contents of `out` are unspecified. */
typedef void (*sift_embed_done_fn)(void *ud, int code, const sift_err *err);

typedef struct sift_embedder_ops {
    const char *name; /* "hashed", "openai" */
    /* Embeds texts[0..n) (lens[i] bytes each, or NUL-terminated when lens
     * is NULL) into out[0..n*dims). ctx (may be NULL for local providers)
     * cancels a remote call. Returns 0 when accepted, after which `done`
     * fires exactly once (possibly before embed returns); a negative code
     * when refused, in which case `done` never fires. */
    int (*embed)(sift_embedder *e, struct sift_ctx *ctx, const char *const *texts,
                 const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                 sift_err *err);
    /* The same, on the calling thread; NULL when the provider can only
     * answer asynchronously. */
    int (*embed_sync)(sift_embedder *e, const char *const *texts, const size_t *lens, size_t n,
                      float *out, sift_err *err);
    void (*free)(sift_embedder *e);
    /* Batches retried so far (a count kept with atomics, read from any
     * thread); NULL: the provider never retries. */
    uint64_t (*retries)(sift_embedder *e);
} sift_embedder_ops;

/* The common head of every provider; implementations embed it first in their
 * own struct. */
struct sift_embedder {
    const sift_embedder_ops *ops;
    size_t dims;      /* floats per vector */
    size_t max_batch; /* most texts per call; 0: no limit */
    const char *id;   /* identity of the vectors (see above); owned by the provider */
    /* 1: embedding goes over the network, so embed_sync waits on I/O: a
     * request path (a loop, or a pool thread) must use the asynchronous
     * embed instead. 0: computed on the spot. */
    int remote;
};

/* Calls e->ops->embed after checking the arguments (SIFT_EINVAL for n over
 * max_batch or a NULL text). */
int sift_embedder_embed(sift_embedder *e, struct sift_ctx *ctx, const char *const *texts,
                        const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                        sift_err *err);

/* Synchronous embedding; SIFT_ESTATE when the provider can only answer
 * asynchronously. Batches larger than max_batch are split. */
int sift_embedder_embed_sync(sift_embedder *e, const char *const *texts, const size_t *lens,
                             size_t n, float *out, sift_err *err);

/* Frees the provider. NULL is a no-op. A remote provider must have no embed
 * call in flight. */
void sift_embedder_free(sift_embedder *e);

/* Batches the provider has retried since it was created (429, 5xx, failed
 * connections); 0 for a provider that never retries. Any thread. */
uint64_t sift_embedder_retries(sift_embedder *e);

/* ---- the query-vector cache ----
 *
 * A bounded map from (embedder id, normalised text) to a vector of `dims`
 * floats, so a query asked again is not embedded again (a remote call costs
 * a round trip; docs/vectors.md has the figures). Normalised: leading and
 * trailing white space dropped and every run of white space made one space;
 * case and accents are kept, since a model may embed "Nike" and "nike"
 * differently. Eviction is CLOCK: a hit sets the entry's reference bit, and
 * the hand clears bits until it finds an entry without one, so a full
 * cache keeps the texts asked again and loses those asked once.
 *
 * Not thread-safe, on purpose: one cache per event loop (sift_embedder_wrap_new
 * keeps one per loop), so a lookup takes no lock. Memory: entries x dims x 4
 * bytes of vectors plus the texts (1024 x 1536 floats: 6 MiB). */
typedef struct sift_embed_cache sift_embed_cache;

/* Texts longer than this (after normalising) are never cached. */
#define SIFT_EMBED_CACHE_TEXT_MAX 4096

/* A cache of `entries` (1..2^20) vectors of `dims` (1..SIFT_VEC_DIMS_MAX)
 * floats. SIFT_EINVAL, SIFT_ENOMEM. */
int sift_embed_cache_new(size_t entries, size_t dims, sift_embed_cache **out, sift_err *err);

/* Frees the cache. NULL is a no-op. */
void sift_embed_cache_free(sift_embed_cache *c);

/* Looks up text[0..len) embedded by `id`: 1 and the vector copied to out
 * (dims floats) on a hit, 0 on a miss. */
int sift_embed_cache_get(sift_embed_cache *c, const char *id, const char *text, size_t len,
                         float *out);

/* Stores the vector v (dims floats) of text[0..len) embedded by `id`,
 * replacing the vector a key already has, or the CLOCK victim when the
 * cache is full. 0 (also when the text is too long to cache), SIFT_ENOMEM
 * (nothing stored, the cache unchanged). */
int sift_embed_cache_put(sift_embed_cache *c, const char *id, const char *text, size_t len,
                         const float *v);

/* Entries held. */
size_t sift_embed_cache_count(const sift_embed_cache *c);

/* ---- the serving wrapper: query cache and metrics ----
 *
 * A provider that forwards to `inner` (same id, dims, max_batch, remote) and
 *  - answers a one-text `embed` under a context from the cache of the
 *    context's loop when it can (the callback then fires before `embed`
 *    returns, as the provider contract allows), and stores what the inner
 *    provider returns for it; several texts (catalog batches) and
 *    `embed_sync` are never cached;
 *  - observes every call it forwards (embed and embed_sync): its duration in
 *    `seconds` by outcome (ok, deadline_exceeded, cancelled, error; a call
 *    the inner provider refuses counts as error), the texts of successful
 *    calls in `texts`, and, after each call, the inner provider's retry
 *    count in `retries`; each cache lookup in `cache` (hit, miss).
 * One cache per loop, made at the loop's first query and kept until the
 * wrapper is freed; at most SIFT_EMBED_WRAP_LOOPS loops get one (later
 * loops run uncached). The loops must outlive their use of the wrapper. */
#define SIFT_EMBED_WRAP_LOOPS 64

struct sift_metric;
typedef struct sift_embed_wrap_opts {
    size_t query_cache; /* entries per loop (as sift_embed_cache_new); 0: no cache */
    /* metrics (metrics.h), each may be NULL: */
    struct sift_metric *seconds; /* histogram, label outcome (the four values above) */
    struct sift_metric *texts;   /* counter, unlabelled */
    struct sift_metric *retries; /* counter, unlabelled (set to the inner count) */
    struct sift_metric *cache;   /* counter, label result: hit, miss */
} sift_embed_wrap_opts;

/* Wraps `inner`, which the wrapper takes over: it is freed with the
 * wrapper, or at once when this fails. SIFT_EINVAL (no inner, a cache size
 * out of range), SIFT_ENOMEM. */
int sift_embedder_wrap_new(sift_embedder *inner, const sift_embed_wrap_opts *opts,
                           sift_embedder **out, sift_err *err);

/* ---- the OpenAI-compatible remote provider ----
 *
 * POST {base_url}/embeddings with {"model": M, "input": [texts...],
 * "encoding_format": "float"} (plus "dimensions": dims when send_dimensions
 * is set) and, when an API key is set, "Authorization: Bearer KEY" (the key
 * is never logged nor put in an error message). The answer must be
 * {"data": [{"index": i, "embedding": [dims numbers]}, ...]} with exactly one
 * item per input, in any order; anything else fails the call with
 * SIFT_EPROTO and a message naming the problem ("item 2: embedding has 768
 * numbers, expected 1536"). Vectors are L2-normalised on arrival.
 *
 * One embed call may carry any number of texts: they are sent in batches of
 * batch_size, at most `concurrency` requests in flight; the first batch that
 * fails cancels the others and fails the call (fail-fast). A batch answered
 * with 429 or 5xx, or whose connection failed or timed out, is retried up to
 * max_retries times after backoff_ms, 2 x backoff_ms, ... (capped at 30 s;
 * a Retry-After header, when sent, gives the wait instead, up to 60 s). A
 * 4xx other than 429 fails at once (401/403: the key was refused).
 *
 * Codes given to `done`: 0; SIFT_EHTTP (an error status, after retries for
 * 429/5xx), SIFT_EPROTO (a malformed answer), SIFT_EIO (connection failed,
 * after retries), SIFT_ETIMEDOUT (timeout_ms per attempt, after retries, or
 * the context's deadline), SIFT_ECANCELED (the context was cancelled),
 * SIFT_ENOMEM. Texts must stay valid until `done` fires; each is truncated to
 * max_text_bytes (at a UTF-8 character boundary). */
typedef struct sift_openai_embed_opts {
    const char *base_url;  /* e.g. "https://api.openai.com/v1" (required; copied) */
    const char *model;     /* e.g. "text-embedding-3-small" (required; copied) */
    const char *api_key;   /* NULL or "": no Authorization header (copied) */
    size_t dims;           /* the vector length the model returns (required, <= 4096) */
    int send_dimensions;   /* 1: send "dimensions": dims (models that can shorten) */
    size_t batch_size;     /* texts per request; 0: 64; at most 2048 */
    int concurrency;       /* requests in flight per embed call; 0: 4; at most 64 */
    int64_t timeout_ms;    /* per request attempt; 0: 30000 */
    int max_retries;       /* retries of one batch; 0: 3; negative: none */
    int64_t backoff_ms;    /* first retry delay, doubled each retry; 0: 500 */
    size_t max_text_bytes; /* bytes of each text sent; 0: 8192 */
    /* The HTTP client of the loop a call runs on (the loop of its ctx), for
     * a provider shared by several loops (one per server worker); NULL: use
     * the `client` given to sift_embedder_openai_new. */
    struct sift_http_client *(*client_of)(uv_loop_t *loop, void *udata);
    void *client_udata;
} sift_openai_embed_opts;

/* Creates the remote provider. `client` (may be NULL) is the HTTP client
 * `embed` uses when opts->client_of is NULL; with neither, only `embed_sync`
 * works (`embed` fails with SIFT_ESTATE). Clients must outlive the provider.
 * The provider itself is immutable after creation, so with client_of one
 * provider may serve calls on several loops at once. SIFT_EINVAL for a
 * missing URL or model, dims 0 or over 4096, or an option out of range;
 * SIFT_ENOMEM. */
int sift_embedder_openai_new(const sift_openai_embed_opts *opts, struct sift_http_client *client,
                             sift_embedder **out, sift_err *err);

/* Validates an OpenAI embeddings answer (body, len bytes) to a batch of n
 * inputs of `dims` numbers each, as described above, and writes the vectors,
 * unit length, to out[0..n*dims). Pure (no I/O): the provider's parser,
 * exposed for tests and fuzzing. 0; SIFT_EPROTO with the problem named
 * ("embeddings: item 2: embedding has 768 numbers, expected 1536 ..."), in
 * which case `out` is partly written; SIFT_ENOMEM. */
int sift_embed_openai_parse(const char *body, size_t len, size_t n, size_t dims, float *out,
                            sift_err *err);

/* ---- configuration: the "embed" section of sift.yaml ----
 *
 *   embed:
 *     provider: hashed      # hashed (built in, no model) or openai
 *     dimensions: 256       # hashed: buckets (default 256); openai: the model's
 *                           # vector length (required, e.g. 1536)
 *     base_url: https://api.openai.com/v1   # openai: where /embeddings is
 *     model: text-embedding-3-small          # openai (default)
 *     api_key: ...          # openai; better from the environment
 *     send_dimensions: false                 # openai: send "dimensions"
 *     batch_size: 64        # openai: texts per request
 *     concurrency: 4        # openai: requests in flight per call
 *     timeout_ms: 30000     # openai: per request attempt
 *     max_retries: 3        # openai: retries of a 429/5xx/failed connection
 *     query_cache: 1024     # query vectors kept per server loop (0: no cache)
 *
 * Environment overrides, applied after the file: SIFT_EMBED_PROVIDER,
 * SIFT_EMBED_BASE_URL (setting it also selects "openai"), SIFT_EMBED_MODEL,
 * SIFT_EMBED_API_KEY; without a key from either, OPENAI_API_KEY is used, but
 * only when the base URL is https://api.openai.com/..., so an OpenAI key is
 * never sent to another server. */
typedef struct sift_embed_config {
    char *provider; /* "hashed" or "openai" */
    size_t dims;
    char *base_url, *model, *api_key; /* openai */
    int send_dimensions;
    long batch_size, concurrency, timeout_ms, max_retries;
    long query_cache; /* entries per loop of sift_embedder_wrap_new; 0: none */
} sift_embed_config;

struct cJSON;

/* Reads the "embed" mapping of `doc` (the whole configuration document, as
 * sift_config.doc holds it; NULL: defaults) and the environment into `out`.
 * `name` (the file's) prefixes messages: "sift.yaml: embed.dimensions: must
 * be an integer between 1 and 4096". SIFT_EINVAL, SIFT_ENOMEM; on error `out`
 * holds nothing to free. */
int sift_embed_config_read(const struct cJSON *doc, const char *name, sift_embed_config *out,
                           sift_err *err);

/* Frees the strings of `c` (the API key is wiped first). */
void sift_embed_config_free(sift_embed_config *c);

/* Creates the configured provider: the hashed embedder, or the openai one
 * finding each loop's HTTP client through client_of (may be NULL: then only
 * embed_sync works). Errors of the constructors. */
int sift_embed_config_embedder(const sift_embed_config *c,
                               struct sift_http_client *(*client_of)(uv_loop_t *loop, void *udata),
                               void *udata, sift_embedder **out, sift_err *err);

/* The built-in embedder.
 *
 * Text is folded (lower case; Latin-1, Latin Extended-A and Vietnamese letters
 * lose their diacritics: "Giày Đá Bóng" -> "giay da bong"), split into words
 * at anything that is not a letter or digit, and each word contributes:
 *  - itself, with weight word_weight;
 *  - each character 3-gram of "^word$" (the markers make prefixes and
 *    suffixes features of their own), with weight gram_weight.
 * Each feature is hashed (sift_hash64) to one of `dims` buckets and a sign,
 * so collisions cancel on average instead of piling up. Counts are integers
 * and the only floating-point steps are one square root and one division per
 * component, so a text gets bit-identical vectors on every IEEE-754 machine. */
typedef struct sift_hashed_opts {
    size_t dims;      /* 0: SIFT_HASHED_DIMS_DEFAULT; at most SIFT_HASHED_DIMS_MAX */
    int word_weight;  /* 0: 2; negative: words are not features */
    int gram_weight;  /* 0: 1; negative: 3-grams are not features */
    size_t max_bytes; /* bytes of each text read; 0: 4096 (titles and chunks fit) */
} sift_hashed_opts;

#define SIFT_HASHED_DIMS_DEFAULT 256
#define SIFT_HASHED_DIMS_MAX 4096

/* Creates the built-in embedder. `opts` may be NULL. SIFT_EINVAL for dims
 * over the maximum or both feature kinds off, SIFT_ENOMEM. */
int sift_embedder_hashed_new(const sift_hashed_opts *opts, sift_embedder **out, sift_err *err);

/* Appends to `out` the folded form of s[0..len): lower-case, diacritics
 * removed from the letters listed above, every run of non-letters and
 * non-digits turned into one space, no leading or trailing space. Other
 * letters (Greek, CJK, ...) are kept as they are; invalid UTF-8 bytes count
 * as separators. Returns 0, SIFT_ENOMEM or SIFT_ETOOBIG (the buffer's limit). */
int sift_text_fold(const char *s, size_t len, sift_buf *out);

/* A fixed 64-bit hash: FNV-1a over the bytes starting from `seed` xor the FNV
 * offset basis, then the MurmurHash3 fmix64 finaliser so that the low bits
 * (the bucket) depend on every input byte. Same value on every machine. */
uint64_t sift_hash64(const void *p, size_t len, uint64_t seed);

#endif
