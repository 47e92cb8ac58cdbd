/* An in-memory exact vector index: top-k by dot product over every vector.
 *
 * No approximation: at catalog sizes (tens of thousands of products) an
 * exact scan of int8 vectors takes about a millisecond and never misses a
 * neighbour, so there is nothing to tune and nothing to rebuild.
 *
 * Vectors are stored either as floats or as int8 with one float scale per
 * vector (value = scale * q, scale = max|x| / 127), which cuts memory and
 * scan time by four. In int8 mode the query is quantised the same way and
 * the dot product is computed in integers, so it is exact and independent
 * of summation order; the float mode sums in a fixed order of 16 lanes. Both
 * give bit-identical results on the scalar, SSE2 and AVX2 paths, chosen at
 * run time from what the CPU supports.
 *
 * Ids are the caller's (a row number in its SKU table): put(id, vec) stores or
 * replaces the vector of `id`; ids never put, or removed, are absent and never
 * returned. A filter is applied during the scan, before the top-k cut, so a
 * filter that keeps 1% of the products still yields k results when k of them
 * exist.
 *
 * Threading: searches only read the index and may run concurrently from any
 * number of threads; put and remove need exclusive access. */
#ifndef SIFT_VECINDEX_H
#define SIFT_VECINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "sift/err.h"

typedef struct sift_vecindex sift_vecindex;

/* Storage of the vectors. */
enum sift_vec_kind {
    SIFT_VEC_F32 = 0, /* 4 bytes per dimension */
    SIFT_VEC_I8 = 1,  /* 1 byte per dimension + a 4-byte scale per vector */
};

/* Implementation of the scan. */
enum sift_vec_simd {
    SIFT_VEC_AUTO = 0, /* the best the CPU supports */
    SIFT_VEC_SCALAR = 1,
    SIFT_VEC_SSE2 = 2,
    SIFT_VEC_AVX2 = 3,
};

#define SIFT_VEC_DIMS_MAX 4096
#define SIFT_VEC_K_MAX 1000
#define SIFT_VEC_ID_MAX 0x7fffffffu /* ids are 0..SIFT_VEC_ID_MAX-1 */

/* Which ids a search may return. Both parts are optional and combine with
 * AND. The bitset is the fast path: a cleared bit skips the vector without
 * computing its dot product. */
typedef struct sift_vecfilter {
    const uint64_t *bits; /* bit (id % 64) of bits[id / 64] set: keep; NULL: no bitset */
    size_t nbits;         /* ids >= nbits are dropped when bits is set */
    int (*keep)(void *ud, uint32_t id); /* non-zero: keep; NULL: no callback */
    void *ud;
} sift_vecfilter;

typedef struct sift_vechit {
    uint32_t id;
    float score; /* dot product with the query (cosine for unit vectors) */
} sift_vechit;

/* A new empty index of `dims`-dimensional vectors stored as `kind`.
 * SIFT_EINVAL for dims 0 or over SIFT_VEC_DIMS_MAX or an unknown kind. */
int sift_vecindex_new(size_t dims, int kind, sift_vecindex **out, sift_err *err);

/* Frees the index. NULL is a no-op. */
void sift_vecindex_free(sift_vecindex *ix);

/* Stores `vec` (dims floats, finite) as the vector of `id`, replacing any
 * earlier one. Storage grows to cover the largest id, so ids should be dense
 * (row numbers). SIFT_EINVAL for an id over the maximum or a NaN/infinite
 * component, SIFT_ENOMEM. */
int sift_vecindex_put(sift_vecindex *ix, uint32_t id, const float *vec, sift_err *err);

/* Allocates room for ids 0..n-1 at once, so a bulk load does not regrow and
 * copy the storage as it goes. SIFT_EINVAL over the id maximum, SIFT_ENOMEM. */
int sift_vecindex_reserve(sift_vecindex *ix, size_t n, sift_err *err);

/* Makes `id` absent. Unknown ids are a no-op. */
void sift_vecindex_remove(sift_vecindex *ix, uint32_t id);

/* The `k` (1..SIFT_VEC_K_MAX) present vectors with the highest dot product
 * with `query` that pass `filter` (may be NULL), best first; equal scores
 * are ordered by id, lower first. `out` has room for k hits; *n gets how
 * many were found (fewer than k only when fewer vectors pass). SIFT_EINVAL
 * for k out of range or a non-finite query. */
int sift_vecindex_search(const sift_vecindex *ix, const float *query, size_t k,
                         const sift_vecfilter *filter, sift_vechit *out, size_t *n, sift_err *err);

/* Chooses the scan implementation (SIFT_VEC_AUTO by default). SIFT_EINVAL
 * when this CPU or build lacks it. Searches must not run concurrently. */
int sift_vecindex_set_simd(sift_vecindex *ix, int simd, sift_err *err);

/* The implementation in use: "scalar", "sse2" or "avx2". */
const char *sift_vecindex_simd_name(const sift_vecindex *ix);

/* 1 when this CPU and build can run `simd`, else 0. */
int sift_vec_simd_supported(int simd);

/* Present vectors, dimensions, and storage kind. */
size_t sift_vecindex_count(const sift_vecindex *ix);
size_t sift_vecindex_dims(const sift_vecindex *ix);
int sift_vecindex_kind(const sift_vecindex *ix);

/* Bytes of storage per id slot (vector, scale, presence bit, rounded), and
 * bytes held by the whole index. */
double sift_vecindex_bytes_per_vector(const sift_vecindex *ix);
size_t sift_vecindex_memory(const sift_vecindex *ix);

/* The dot product of a and b (n floats) computed by `simd` in the index's
 * fixed order; exported so tests can compare the implementations. Returns
 * 0 for an implementation that is not supported. */
float sift_vec_dot_f32(int simd, const float *a, const float *b, size_t n);

/* The same for int8 vectors, exact. Components must be in -127..127, the
 * range quantisation produces (the AVX2 path relies on it). */
int32_t sift_vec_dot_i8(int simd, const int8_t *a, const int8_t *b, size_t n);

#endif
