/* Embedding providers: text in, unit-length float vectors out.
 *
 * One interface covers two kinds of provider:
 *  - the built-in hashed n-gram embedder, which needs no model and no network
 *    and computes on the calling thread (microseconds per text);
 *  - remote providers (an OpenAI-compatible /v1/embeddings endpoint through
 *    the curl-on-uv client), which answer later on the loop.
 * Both implement the asynchronous `embed`: the caller supplies the output
 * array and a completion callback. A provider that computes on the spot (the
 * built-in one) calls the callback before `embed` returns; a remote one calls
 * it from the loop. Callers therefore must not touch anything after `embed`
 * returns 0 that the callback may have released. Providers that can also
 * answer synchronously set `embed_sync`, which loaders and benchmarks use
 * off the loop.
 *
 * Vectors are `dims` floats per text, row-major in `out` (n * dims floats),
 * L2-normalised (a text with no features gets the zero vector), so a dot
 * product is the cosine similarity. */
#ifndef SIFT_EMBED_H
#define SIFT_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "sift/buf.h"
#include "sift/err.h"

struct sift_ctx;
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
    /* The same, on the calling thread; NULL for remote providers. */
    int (*embed_sync)(sift_embedder *e, const char *const *texts, const size_t *lens, size_t n,
                      float *out, sift_err *err);
    void (*free)(sift_embedder *e);
} sift_embedder_ops;

/* The common head of every provider; implementations embed it first in their
 * own struct. */
struct sift_embedder {
    const sift_embedder_ops *ops;
    size_t dims;      /* floats per vector */
    size_t max_batch; /* most texts per call; 0: no limit */
};

/* Calls e->ops->embed after checking the arguments (SIFT_EINVAL for n over
 * max_batch or a NULL text). */
int sift_embedder_embed(sift_embedder *e, struct sift_ctx *ctx, const char *const *texts,
                        const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                        sift_err *err);

/* Synchronous embedding; SIFT_ESTATE when the provider can only answer
 * asynchronously (a remote one). Batches larger than max_batch are split. */
int sift_embedder_embed_sync(sift_embedder *e, const char *const *texts, const size_t *lens,
                             size_t n, float *out, sift_err *err);

/* Frees the provider. NULL is a no-op. */
void sift_embedder_free(sift_embedder *e);

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
