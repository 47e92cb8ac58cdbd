/* The exact vector index: a flat array scanned with SIMD dot products.
 *
 * Identical results on every path is a design rule, not luck: int8 dots are
 * integer sums (exact in any order), and float dots accumulate in 16 lanes
 * (lane j takes elements j, j+16, j+32, ...) reduced by the same fixed tree
 * (lanes j and j+8, then j and j+4, j and j+2, j and j+1) in the scalar,
 * SSE2 (four 4-lane registers) and AVX2 (two 8-lane registers) code. Rows
 * are padded with zeros to a multiple of 32 so no path has a tail.
 *
 * Multiplication and addition stay separate operations: a fused
 * multiply-add would round differently. The x86-64 baseline and the avx2
 * target have no FMA, and clang is told not to contract. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/vecindex.h"

#if defined(__x86_64__) || defined(__i386__)
#define VEC_X86 1
#include <immintrin.h>
#endif

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define PAD 32

typedef float (*dotf_fn)(const float *a, const float *b, size_t n);
typedef int32_t (*doti_fn)(const int8_t *a, const int8_t *b, size_t n);

struct sift_vecindex {
    size_t dims, dpad; /* dpad: dims rounded up to PAD */
    int kind;
    int simd;
    dotf_fn dotf;
    doti_fn doti;
    size_t cap;        /* id slots allocated */
    size_t nslots;     /* 1 + the largest id ever put */
    size_t count;      /* present vectors */
    float *f32;        /* cap * dpad, SIFT_VEC_F32 */
    int8_t *i8;        /* cap * dpad, SIFT_VEC_I8 */
    float *scale;      /* cap, SIFT_VEC_I8 */
    uint64_t *present; /* cap / 64 words */
};

/* ---- dot products ------------------------------------------------------ */

/* n is a multiple of 16 in the f32 kernels and of 32 in the i8 kernels. */

static float reduce16(const float acc[16])
{
    float t[8], u[4];
    for (int j = 0; j < 8; j++)
        t[j] = acc[j] + acc[j + 8];
    for (int j = 0; j < 4; j++)
        u[j] = t[j] + t[j + 4];
    float v0 = u[0] + u[2], v1 = u[1] + u[3];
    return v0 + v1;
}

static float dotf_scalar(const float *a, const float *b, size_t n)
{
    float acc[16] = {0};
    for (size_t i = 0; i < n; i += 16)
        for (int j = 0; j < 16; j++) {
            float p = a[i + j] * b[i + j];
            acc[j] = acc[j] + p;
        }
    return reduce16(acc);
}

static int32_t doti_scalar(const int8_t *a, const int8_t *b, size_t n)
{
    int32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

#ifdef VEC_X86
static float dotf_sse2(const float *a, const float *b, size_t n)
{
    __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 16) {
        a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
        a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4)));
        a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_loadu_ps(a + i + 8), _mm_loadu_ps(b + i + 8)));
        a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_loadu_ps(a + i + 12), _mm_loadu_ps(b + i + 12)));
    }
    __m128 tlo = _mm_add_ps(a0, a2); /* t[0..3] */
    __m128 thi = _mm_add_ps(a1, a3); /* t[4..7] */
    __m128 u = _mm_add_ps(tlo, thi);
    __m128 v = _mm_add_ps(u, _mm_movehl_ps(u, u)); /* u0+u2, u1+u3 */
    __m128 w = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
    return _mm_cvtss_f32(w);
}

static int32_t hsum_epi32_sse2(__m128i v)
{
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(v);
}

static int32_t doti_sse2(const int8_t *a, const int8_t *b, size_t n)
{
    __m128i acc = _mm_setzero_si128();
    for (size_t i = 0; i < n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(a + i));
        __m128i y = _mm_loadu_si128((const __m128i *)(b + i));
        /* Sign-extend bytes to 16 bits: SSE2 has no pmovsxbw. */
        __m128i xl = _mm_srai_epi16(_mm_unpacklo_epi8(x, x), 8);
        __m128i xh = _mm_srai_epi16(_mm_unpackhi_epi8(x, x), 8);
        __m128i yl = _mm_srai_epi16(_mm_unpacklo_epi8(y, y), 8);
        __m128i yh = _mm_srai_epi16(_mm_unpackhi_epi8(y, y), 8);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(xl, yl));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(xh, yh));
    }
    return hsum_epi32_sse2(acc);
}

__attribute__((target("avx2"))) static float dotf_avx2(const float *a, const float *b, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (size_t i = 0; i < n; i += 16) {
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
        a1 = _mm256_add_ps(a1,
                           _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
    }
    __m256 t = _mm256_add_ps(a0, a1);
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    __m128 v = _mm_add_ps(u, _mm_movehl_ps(u, u));
    __m128 w = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
    return _mm_cvtss_f32(w);
}

/* pmaddubsw multiplies unsigned by signed bytes: |a| times b with a's sign
 * moved onto b gives a*b. Stored and query values are in -127..127, so a
 * pair sum is at most 2 * 127 * 127 = 32258 and the 16-bit saturation
 * never triggers: the result is exact, like the other paths. */
__attribute__((target("avx2"))) static int32_t doti_avx2(const int8_t *a, const int8_t *b, size_t n)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i y = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
    }
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    return hsum_epi32_sse2(h);
}
#endif

int sift_vec_simd_supported(int simd)
{
    switch (simd) {
    case SIFT_VEC_AUTO:
    case SIFT_VEC_SCALAR:
        return 1;
#ifdef VEC_X86
    case SIFT_VEC_SSE2:
        return __builtin_cpu_supports("sse2") ? 1 : 0;
    case SIFT_VEC_AVX2:
        return __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
    default:
        return 0;
    }
}

static int best_simd(void)
{
    if (sift_vec_simd_supported(SIFT_VEC_AVX2))
        return SIFT_VEC_AVX2;
    if (sift_vec_simd_supported(SIFT_VEC_SSE2))
        return SIFT_VEC_SSE2;
    return SIFT_VEC_SCALAR;
}

static void pick(int simd, dotf_fn *f, doti_fn *i)
{
    *f = dotf_scalar;
    *i = doti_scalar;
#ifdef VEC_X86
    if (simd == SIFT_VEC_SSE2) {
        *f = dotf_sse2;
        *i = doti_sse2;
    } else if (simd == SIFT_VEC_AVX2) {
        *f = dotf_avx2;
        *i = doti_avx2;
    }
#endif
}

float sift_vec_dot_f32(int simd, const float *a, const float *b, size_t n)
{
    if (simd == SIFT_VEC_AUTO)
        simd = best_simd();
    if (!sift_vec_simd_supported(simd))
        return 0;
    dotf_fn f;
    doti_fn i;
    pick(simd, &f, &i);
    size_t body = n / 16 * 16;
    float s = f(a, b, body);
    if (body == n)
        return s;
    /* The tail is one more zero-padded block: exactly what a padded row
     * would give. Adding a separately reduced block would not. */
    float *pa = sift_calloc(body + 16, sizeof(float)), *pb = sift_calloc(body + 16, sizeof(float));
    if (!pa || !pb) {
        sift_free(pa);
        sift_free(pb);
        return 0;
    }
    memcpy(pa, a, n * sizeof(float));
    memcpy(pb, b, n * sizeof(float));
    s = f(pa, pb, body + 16);
    sift_free(pa);
    sift_free(pb);
    return s;
}

int32_t sift_vec_dot_i8(int simd, const int8_t *a, const int8_t *b, size_t n)
{
    if (simd == SIFT_VEC_AUTO)
        simd = best_simd();
    if (!sift_vec_simd_supported(simd))
        return 0;
    dotf_fn f;
    doti_fn i;
    pick(simd, &f, &i);
    size_t body = n / PAD * PAD;
    int32_t s = i(a, b, body);
    return s + doti_scalar(a + body, b + body, n - body);
}

/* ---- the index --------------------------------------------------------- */

int sift_vecindex_new(size_t dims, int kind, sift_vecindex **out, sift_err *err)
{
    *out = NULL;
    if (dims == 0 || dims > SIFT_VEC_DIMS_MAX)
        return sift_err_set(err, SIFT_EINVAL, "vector index: dims must be 1..%d, not %zu",
                            SIFT_VEC_DIMS_MAX, dims);
    if (kind != SIFT_VEC_F32 && kind != SIFT_VEC_I8)
        return sift_err_set(err, SIFT_EINVAL, "vector index: unknown storage kind %d", kind);
    sift_vecindex *ix = sift_calloc(1, sizeof *ix);
    if (!ix)
        return sift_err_set(err, SIFT_ENOMEM, "vector index: out of memory");
    ix->dims = dims;
    ix->dpad = (dims + PAD - 1) / PAD * PAD;
    ix->kind = kind;
    ix->simd = best_simd();
    pick(ix->simd, &ix->dotf, &ix->doti);
    *out = ix;
    return 0;
}

void sift_vecindex_free(sift_vecindex *ix)
{
    if (!ix)
        return;
    sift_free(ix->f32);
    sift_free(ix->i8);
    sift_free(ix->scale);
    sift_free(ix->present);
    sift_free(ix);
}

/* Grows storage to at least `need` slots (a multiple of 64), all-or-nothing:
 * to exactly that when `exact` (a reservation), else by doubling. */
static int grow(sift_vecindex *ix, size_t need, int exact)
{
    size_t cap = ix->cap ? ix->cap : 64;
    if (exact)
        cap = (need + 63) / 64 * 64;
    while (cap < need)
        cap *= 2;
    size_t row = ix->dpad;
    float *f32 = NULL, *scale = NULL;
    int8_t *i8 = NULL;
    uint64_t *present = sift_calloc(cap / 64, sizeof *present);
    if (!present)
        goto fail;
    if (ix->kind == SIFT_VEC_F32) {
        if (!(f32 = sift_calloc(cap, row * sizeof *f32)))
            goto fail;
        if (ix->cap)
            memcpy(f32, ix->f32, ix->cap * row * sizeof *f32);
    } else {
        if (!(i8 = sift_calloc(cap, row)) || !(scale = sift_calloc(cap, sizeof *scale)))
            goto fail;
        if (ix->cap) {
            memcpy(i8, ix->i8, ix->cap * row);
            memcpy(scale, ix->scale, ix->cap * sizeof *scale);
        }
    }
    if (ix->cap)
        memcpy(present, ix->present, ix->cap / 64 * sizeof *present);
    sift_free(ix->f32);
    sift_free(ix->i8);
    sift_free(ix->scale);
    sift_free(ix->present);
    ix->f32 = f32, ix->i8 = i8, ix->scale = scale, ix->present = present;
    ix->cap = cap;
    return 0;
fail:
    sift_free(f32);
    sift_free(i8);
    sift_free(scale);
    sift_free(present);
    return SIFT_ENOMEM;
}

/* Quantises v (dims floats) to q (dims int8 in -127..127) and returns the
 * scale: v ~ scale * q. -128 is never produced, so a sign flip cannot
 * overflow. */
static float quantise(const float *v, size_t dims, int8_t *q)
{
    float m = 0;
    for (size_t d = 0; d < dims; d++) {
        float a = fabsf(v[d]);
        if (a > m)
            m = a;
    }
    if (m == 0) {
        memset(q, 0, dims);
        return 0;
    }
    float inv = 127.0f / m;
    for (size_t d = 0; d < dims; d++) {
        long r = lrintf(v[d] * inv);
        q[d] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    return m / 127.0f;
}

static int check_finite(const float *v, size_t dims)
{
    for (size_t d = 0; d < dims; d++)
        if (!isfinite(v[d]))
            return (int)d;
    return -1;
}

int sift_vecindex_put(sift_vecindex *ix, uint32_t id, const float *vec, sift_err *err)
{
    if (id >= SIFT_VEC_ID_MAX)
        return sift_err_set(err, SIFT_EINVAL, "vector index: id %u over the maximum %u", id,
                            SIFT_VEC_ID_MAX - 1);
    int bad = check_finite(vec, ix->dims);
    if (bad >= 0)
        return sift_err_set(err, SIFT_EINVAL, "vector index: component %d of id %u is not finite",
                            bad, id);
    if ((size_t)id >= ix->cap && grow(ix, (size_t)id + 1, 0))
        return sift_err_set(err, SIFT_ENOMEM, "vector index: out of memory at id %u", id);
    size_t row = (size_t)id * ix->dpad;
    if (ix->kind == SIFT_VEC_F32) {
        memcpy(ix->f32 + row, vec, ix->dims * sizeof *vec);
    } else {
        ix->scale[id] = quantise(vec, ix->dims, ix->i8 + row);
    }
    uint64_t bit = 1ULL << (id % 64);
    if (!(ix->present[id / 64] & bit)) {
        ix->present[id / 64] |= bit;
        ix->count++;
    }
    if ((size_t)id >= ix->nslots)
        ix->nslots = (size_t)id + 1;
    return 0;
}

int sift_vecindex_reserve(sift_vecindex *ix, size_t n, sift_err *err)
{
    if (n > SIFT_VEC_ID_MAX)
        return sift_err_set(err, SIFT_EINVAL,
                            "vector index: cannot reserve %zu ids, the maximum is %u", n,
                            SIFT_VEC_ID_MAX);
    if (n > ix->cap && grow(ix, n, 1))
        return sift_err_set(err, SIFT_ENOMEM, "vector index: out of memory reserving %zu ids", n);
    return 0;
}

void sift_vecindex_remove(sift_vecindex *ix, uint32_t id)
{
    if ((size_t)id >= ix->nslots)
        return;
    uint64_t bit = 1ULL << (id % 64);
    if (ix->present[id / 64] & bit) {
        ix->present[id / 64] &= ~bit;
        ix->count--;
    }
}

/* ---- top-k ------------------------------------------------------------- */

/* a ranks below b: lower score, or equal score and higher id. */
static int worse(const sift_vechit *a, const sift_vechit *b)
{
    return a->score < b->score || (a->score == b->score && a->id > b->id);
}

/* A min-heap (worst at the root) of at most k hits, kept in the output. */
typedef struct topk {
    sift_vechit *h;
    size_t n, k;
} topk;

static void sift_down(topk *t, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && worse(&t->h[l], &t->h[m]))
            m = l;
        if (r < t->n && worse(&t->h[r], &t->h[m]))
            m = r;
        if (m == i)
            return;
        sift_vechit tmp = t->h[i];
        t->h[i] = t->h[m];
        t->h[m] = tmp;
        i = m;
    }
}

static void offer(topk *t, uint32_t id, float score)
{
    sift_vechit c = {.id = id, .score = score};
    if (t->n < t->k) {
        size_t i = t->n++;
        t->h[i] = c;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(&t->h[i], &t->h[p]))
                break;
            sift_vechit tmp = t->h[i];
            t->h[i] = t->h[p];
            t->h[p] = tmp;
            i = p;
        }
        return;
    }
    if (worse(&t->h[0], &c)) {
        t->h[0] = c;
        sift_down(t, 0);
    }
}

static int cmp_best_first(const void *pa, const void *pb)
{
    const sift_vechit *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int sift_vecindex_search(const sift_vecindex *ix, const float *query, size_t k,
                         const sift_vecfilter *filter, sift_vechit *out, size_t *n, sift_err *err)
{
    *n = 0;
    if (k == 0 || k > SIFT_VEC_K_MAX)
        return sift_err_set(err, SIFT_EINVAL, "vector search: k must be 1..%d, not %zu",
                            SIFT_VEC_K_MAX, k);
    int bad = check_finite(query, ix->dims);
    if (bad >= 0)
        return sift_err_set(err, SIFT_EINVAL, "vector search: query component %d is not finite",
                            bad);
    /* The padded query lives on the stack: searches allocate nothing. */
    float qf[SIFT_VEC_DIMS_MAX] __attribute__((aligned(32)));
    int8_t qi[SIFT_VEC_DIMS_MAX] __attribute__((aligned(32)));
    float qscale = 1;
    if (ix->kind == SIFT_VEC_F32) {
        memcpy(qf, query, ix->dims * sizeof *qf);
        memset(qf + ix->dims, 0, (ix->dpad - ix->dims) * sizeof *qf);
    } else {
        qscale = quantise(query, ix->dims, qi);
        memset(qi + ix->dims, 0, ix->dpad - ix->dims);
    }

    topk t = {.h = out, .n = 0, .k = k};
    size_t words = (ix->nslots + 63) / 64;
    for (size_t w = 0; w < words; w++) {
        uint64_t live = ix->present[w];
        if (filter && filter->bits) {
            /* Ids at or past nbits are dropped; mask the partial word. */
            size_t base = w * 64;
            uint64_t fb = 0;
            if (base < filter->nbits) {
                fb = filter->bits[w];
                if (filter->nbits - base < 64)
                    fb &= (1ULL << (filter->nbits - base)) - 1;
            }
            live &= fb;
        }
        while (live) {
            uint32_t id = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(live));
            live &= live - 1;
            if (filter && filter->keep && !filter->keep(filter->ud, id))
                continue;
            float s;
            if (ix->kind == SIFT_VEC_F32)
                s = ix->dotf(ix->f32 + (size_t)id * ix->dpad, qf, ix->dpad);
            else
                s = (float)ix->doti(ix->i8 + (size_t)id * ix->dpad, qi, ix->dpad) * ix->scale[id];
            offer(&t, id, s);
        }
    }
    qsort(out, t.n, sizeof *out, cmp_best_first);
    if (ix->kind == SIFT_VEC_I8)
        for (size_t i = 0; i < t.n; i++)
            out[i].score *= qscale;
    *n = t.n;
    return 0;
}

int sift_vecindex_set_simd(sift_vecindex *ix, int simd, sift_err *err)
{
    if (!sift_vec_simd_supported(simd))
        return sift_err_set(err, SIFT_EINVAL,
                            "vector index: this CPU or build cannot run implementation %d", simd);
    ix->simd = simd == SIFT_VEC_AUTO ? best_simd() : simd;
    pick(ix->simd, &ix->dotf, &ix->doti);
    return 0;
}

const char *sift_vecindex_simd_name(const sift_vecindex *ix)
{
    switch (ix->simd) {
    case SIFT_VEC_AVX2:
        return "avx2";
    case SIFT_VEC_SSE2:
        return "sse2";
    default:
        return "scalar";
    }
}

size_t sift_vecindex_count(const sift_vecindex *ix)
{
    return ix->count;
}

size_t sift_vecindex_dims(const sift_vecindex *ix)
{
    return ix->dims;
}

int sift_vecindex_kind(const sift_vecindex *ix)
{
    return ix->kind;
}

double sift_vecindex_bytes_per_vector(const sift_vecindex *ix)
{
    double row = ix->kind == SIFT_VEC_F32 ? (double)ix->dpad * sizeof(float)
                                          : (double)ix->dpad + sizeof(float);
    return row + 1.0 / 8;
}

size_t sift_vecindex_memory(const sift_vecindex *ix)
{
    size_t row = ix->kind == SIFT_VEC_F32 ? ix->dpad * sizeof(float) : ix->dpad + sizeof(float);
    return sizeof *ix + ix->cap * row + ix->cap / 8;
}
