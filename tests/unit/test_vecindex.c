/* The exact vector index: SIMD paths agree with the scalar one bit for bit,
 * int8 ranks like float, filters apply before the top-k cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/vecindex.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static double uniform(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = uniform(), v = uniform();
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* n random unit vectors of `dims`. */
static float *random_unit(size_t n, size_t dims)
{
    float *v = malloc(n * dims * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t d = 0; d < dims; d++) {
            double g = gauss();
            v[i * dims + d] = (float)g;
            s += g * g;
        }
        double inv = 1 / sqrt(s);
        for (size_t d = 0; d < dims; d++)
            v[i * dims + d] = (float)(v[i * dims + d] * inv);
    }
    return v;
}

static sift_vecindex *build(const float *v, size_t n, size_t dims, int kind)
{
    sift_vecindex *ix = NULL;
    sift_err err = {0};
    assert_int_equal(sift_vecindex_new(dims, kind, &ix, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sift_vecindex_put(ix, (uint32_t)i, v + i * dims, &err), 0);
    return ix;
}

static const int impls[] = {SIFT_VEC_SCALAR, SIFT_VEC_SSE2, SIFT_VEC_AVX2};

static void test_dot_products_identical(void **state)
{
    /* Say which paths this machine actually compared. */
    print_message("simd: sse2 %s, avx2 %s\n", sift_vec_simd_supported(SIFT_VEC_SSE2) ? "yes" : "no",
                  sift_vec_simd_supported(SIFT_VEC_AVX2) ? "yes" : "no");
    rng_state = 0x1234567;
    float a[300], b[300];
    int8_t qa[300], qb[300];
    for (int i = 0; i < 300; i++) {
        a[i] = (float)gauss();
        b[i] = (float)gauss();
        qa[i] = (int8_t)((int)(rnd() % 255) - 127);
        qb[i] = (int8_t)((int)(rnd() % 255) - 127);
    }
    size_t lens[] = {1, 15, 16, 17, 31, 32, 33, 100, 256, 300};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        float ref = sift_vec_dot_f32(SIFT_VEC_SCALAR, a, b, n);
        int32_t iref = sift_vec_dot_i8(SIFT_VEC_SCALAR, qa, qb, n);
        double exact = 0;
        int64_t iexact = 0;
        for (size_t i = 0; i < n; i++) {
            exact += (double)a[i] * b[i];
            iexact += (int64_t)qa[i] * qb[i];
        }
        assert_true(fabs(ref - exact) < 1e-3);
        assert_true(iref == iexact);
        for (size_t k = 0; k < 3; k++) {
            if (!sift_vec_simd_supported(impls[k]))
                continue;
            float f = sift_vec_dot_f32(impls[k], a, b, n);
            assert_memory_equal(&f, &ref, sizeof f);
            assert_int_equal(sift_vec_dot_i8(impls[k], qa, qb, n), iref);
        }
    }
}

static void test_search_identical_across_impls(void **state)
{
    rng_state = 42;
    const size_t n = 3000, dims = 100; /* not a multiple of the padding */
    float *v = random_unit(n, dims);
    float *q = random_unit(20, dims);
    for (int kind = SIFT_VEC_F32; kind <= SIFT_VEC_I8; kind++) {
        sift_vecindex *ix = build(v, n, dims, kind);
        sift_err err = {0};
        for (size_t qi = 0; qi < 20; qi++) {
            sift_vechit ref[50], got[50];
            size_t nref = 0, ngot = 0;
            assert_int_equal(sift_vecindex_set_simd(ix, SIFT_VEC_SCALAR, &err), 0);
            assert_string_equal(sift_vecindex_simd_name(ix), "scalar");
            assert_int_equal(sift_vecindex_search(ix, q + qi * dims, 50, NULL, ref, &nref, &err),
                             0);
            assert_int_equal(nref, 50);
            for (size_t k = 1; k < 3; k++) {
                if (!sift_vec_simd_supported(impls[k])) {
                    assert_int_equal(sift_vecindex_set_simd(ix, impls[k], &err), SIFT_EINVAL);
                    continue;
                }
                assert_int_equal(sift_vecindex_set_simd(ix, impls[k], &err), 0);
                assert_int_equal(
                    sift_vecindex_search(ix, q + qi * dims, 50, NULL, got, &ngot, &err), 0);
                assert_int_equal(ngot, nref);
                /* ids and score bits */
                assert_memory_equal(got, ref, nref * sizeof *ref);
            }
        }
        sift_vecindex_free(ix);
    }
    free(v);
    free(q);
}

/* Top-k by an independent double-precision scan, ids ascending on ties. */
static void oracle(const float *v, size_t n, size_t dims, const float *q, size_t k,
                   int (*keep)(uint32_t), uint32_t *out)
{
    double *best = malloc(k * sizeof *best);
    assert_non_null(best);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (keep && !keep((uint32_t)i))
            continue;
        double s = 0;
        for (size_t d = 0; d < dims; d++)
            s += (double)v[i * dims + d] * q[d];
        /* insertion into a sorted array of at most k */
        if (m == k && s <= best[k - 1])
            continue;
        size_t j = m < k ? m++ : k - 1;
        while (j > 0 && best[j - 1] < s) {
            best[j] = best[j - 1];
            out[j] = out[j - 1];
            j--;
        }
        best[j] = s;
        out[j] = (uint32_t)i;
    }
    free(best);
}

static void test_int8_agrees_with_float(void **state)
{
    rng_state = 7;
    const size_t n = 8000, dims = 256, nq = 60, k = 10;
    float *v = random_unit(n, dims);
    float *q = random_unit(nq, dims);
    sift_vecindex *f = build(v, n, dims, SIFT_VEC_F32);
    sift_vecindex *i8 = build(v, n, dims, SIFT_VEC_I8);
    sift_err err = {0};
    size_t hit_f = 0, hit_i = 0;
    for (size_t qi = 0; qi < nq; qi++) {
        uint32_t want[10];
        oracle(v, n, dims, q + qi * dims, k, NULL, want);
        sift_vechit hf[10], hi[10];
        size_t nf, ni;
        assert_int_equal(sift_vecindex_search(f, q + qi * dims, k, NULL, hf, &nf, &err), 0);
        assert_int_equal(sift_vecindex_search(i8, q + qi * dims, k, NULL, hi, &ni, &err), 0);
        assert_int_equal(nf, k);
        assert_int_equal(ni, k);
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b < k; b++) {
                hit_f += hf[b].id == want[a];
                hit_i += hi[b].id == want[a];
            }
        /* int8 scores approximate the cosine closely */
        assert_true(fabsf(hi[0].score - hf[0].score) < 0.02f);
    }
    double recall_f = (double)hit_f / (double)(nq * k), recall_i = (double)hit_i / (double)(nq * k);
    print_message("recall@10 vs exact: float %.4f, int8 %.4f\n", recall_f, recall_i);
    assert_true(recall_f >= 0.999);
    assert_true(recall_i >= 0.95);
    sift_vecindex_free(f);
    sift_vecindex_free(i8);
    free(v);
    free(q);
}

static int keep_1pct(uint32_t id)
{
    return id % 100 == 37;
}

static int keep_cb(void *ud, uint32_t id)
{
    (*(size_t *)ud)++;
    return keep_1pct(id);
}

static void test_filter_before_truncation(void **state)
{
    rng_state = 99;
    const size_t n = 10000, dims = 64, k = 10;
    float *v = random_unit(n, dims);
    float *q = random_unit(1, dims);
    uint32_t want[10];
    oracle(v, n, dims, q, k, keep_1pct, want);
    uint64_t bits[(10000 + 63) / 64] = {0};
    for (uint32_t i = 0; i < n; i++)
        if (keep_1pct(i))
            bits[i / 64] |= 1ULL << (i % 64);
    for (int kind = SIFT_VEC_F32; kind <= SIFT_VEC_I8; kind++) {
        sift_vecindex *ix = build(v, n, dims, kind);
        sift_err err = {0};
        sift_vechit h[10];
        size_t nh = 0, calls = 0;
        /* The callback form. */
        sift_vecfilter fc = {.keep = keep_cb, .ud = &calls};
        assert_int_equal(sift_vecindex_search(ix, q, k, &fc, h, &nh, &err), 0);
        assert_int_equal(nh, k);
        assert_int_equal(calls, n);
        for (size_t i = 0; i < k; i++) {
            assert_true(keep_1pct(h[i].id));
            if (kind == SIFT_VEC_F32)
                assert_int_equal(h[i].id, want[i]);
        }
        /* The bitset form gives the same answer. */
        sift_vechit hb[10];
        size_t nb = 0;
        sift_vecfilter fb = {.bits = bits, .nbits = n};
        assert_int_equal(sift_vecindex_search(ix, q, k, &fb, hb, &nb, &err), 0);
        assert_int_equal(nb, k);
        assert_memory_equal(hb, h, k * sizeof *h);
        /* A bitset shorter than the index drops the ids past its end: of
         * ids 0..5000, 50 end in 37. */
        sift_vechit hs[100];
        fb.nbits = 5001;
        assert_int_equal(sift_vecindex_search(ix, q, 100, &fb, hs, &nb, &err), 0);
        assert_int_equal(nb, 50);
        for (size_t i = 0; i < nb; i++)
            assert_true(hs[i].id < 5001 && keep_1pct(hs[i].id));
        sift_vecindex_free(ix);
    }
    free(v);
    free(q);
}

static void test_filter_partial_bitset(void **state)
{
    rng_state = 5;
    const size_t n = 1000, dims = 16;
    float *v = random_unit(n, dims);
    sift_vecindex *ix = build(v, n, dims, SIFT_VEC_I8);
    uint64_t bits[16];
    memset(bits, 0xff, sizeof bits);
    sift_vecfilter f = {.bits = bits, .nbits = 130}; /* ids 0..129 only */
    sift_vechit h[1000];
    size_t nh = 0;
    sift_err err = {0};
    assert_int_equal(sift_vecindex_search(ix, v, 1000, &f, h, &nh, &err), 0);
    assert_int_equal(nh, 130);
    for (size_t i = 0; i < nh; i++)
        assert_true(h[i].id < 130);
    /* its own vector is the best match */
    assert_int_equal(h[0].id, 0);
    sift_vecindex_free(ix);
    free(v);
}

static void test_ids_ties_and_updates(void **state)
{
    sift_vecindex *ix = NULL;
    sift_err err = {0};
    assert_int_equal(sift_vecindex_new(3, SIFT_VEC_F32, &ix, &err), 0);
    float x[3] = {1, 0, 0}, y[3] = {0, 1, 0}, xy[3] = {0.6f, 0.8f, 0};
    /* Sparse ids: 5 and 200 present, everything between absent. */
    assert_int_equal(sift_vecindex_put(ix, 200, x, &err), 0);
    assert_int_equal(sift_vecindex_put(ix, 5, x, &err), 0);
    assert_int_equal(sift_vecindex_put(ix, 70, y, &err), 0);
    assert_int_equal(sift_vecindex_count(ix), 3);
    sift_vechit h[10];
    size_t n = 0;
    assert_int_equal(sift_vecindex_search(ix, x, 10, NULL, h, &n, &err), 0);
    assert_int_equal(n, 3);
    /* equal scores: lower id first */
    assert_int_equal(h[0].id, 5);
    assert_int_equal(h[1].id, 200);
    assert_int_equal(h[2].id, 70);
    assert_true(h[0].score == 1.0f && h[2].score == 0.0f);
    /* k = 1 keeps the lower id of a tie */
    assert_int_equal(sift_vecindex_search(ix, x, 1, NULL, h, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].id, 5);
    /* replace and remove */
    assert_int_equal(sift_vecindex_put(ix, 5, xy, &err), 0);
    assert_int_equal(sift_vecindex_count(ix), 3);
    sift_vecindex_remove(ix, 200);
    sift_vecindex_remove(ix, 200);
    sift_vecindex_remove(ix, 100000); /* unknown: no-op */
    assert_int_equal(sift_vecindex_count(ix), 2);
    assert_int_equal(sift_vecindex_search(ix, x, 10, NULL, h, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].id, 5);
    assert_true(fabsf(h[0].score - 0.6f) < 1e-6f);
    assert_int_equal(h[1].id, 70);

    /* argument checks */
    assert_int_equal(sift_vecindex_search(ix, x, 0, NULL, h, &n, &err), SIFT_EINVAL);
    assert_int_equal(sift_vecindex_search(ix, x, SIFT_VEC_K_MAX + 1, NULL, h, &n, &err),
                     SIFT_EINVAL);
    float bad[3] = {NAN, 0, 0};
    assert_int_equal(sift_vecindex_search(ix, bad, 1, NULL, h, &n, &err), SIFT_EINVAL);
    assert_int_equal(sift_vecindex_put(ix, 1, bad, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "not finite"));
    assert_int_equal(sift_vecindex_put(ix, SIFT_VEC_ID_MAX, x, &err), SIFT_EINVAL);
    assert_int_equal(sift_vecindex_count(ix), 2);
    sift_vecindex_free(ix);

    assert_int_equal(sift_vecindex_new(0, SIFT_VEC_F32, &ix, &err), SIFT_EINVAL);
    assert_int_equal(sift_vecindex_new(SIFT_VEC_DIMS_MAX + 1, SIFT_VEC_I8, &ix, &err), SIFT_EINVAL);
    assert_int_equal(sift_vecindex_new(8, 7, &ix, &err), SIFT_EINVAL);
    sift_vecindex_free(NULL);
}

static void test_empty_and_zero_query(void **state)
{
    sift_vecindex *ix = NULL;
    sift_err err = {0};
    assert_int_equal(sift_vecindex_new(8, SIFT_VEC_I8, &ix, &err), 0);
    float z[8] = {0};
    sift_vechit h[4];
    size_t n = 9;
    assert_int_equal(sift_vecindex_search(ix, z, 4, NULL, h, &n, &err), 0);
    assert_int_equal(n, 0);
    for (uint32_t i = 0; i < 6; i++) {
        float v[8] = {0};
        v[i] = 1;
        assert_int_equal(sift_vecindex_put(ix, i, v, &err), 0);
    }
    /* A zero query scores everything 0: ids ascending. */
    assert_int_equal(sift_vecindex_search(ix, z, 4, NULL, h, &n, &err), 0);
    assert_int_equal(n, 4);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(h[i].id, i);
        assert_true(h[i].score == 0.0f);
    }
    sift_vecindex_free(ix);
}

static void test_memory_report(void **state)
{
    sift_vecindex *f = NULL, *q = NULL;
    sift_err err = {0};
    assert_int_equal(sift_vecindex_new(256, SIFT_VEC_F32, &f, &err), 0);
    assert_int_equal(sift_vecindex_new(256, SIFT_VEC_I8, &q, &err), 0);
    assert_true(sift_vecindex_bytes_per_vector(f) == 1024.125);
    assert_true(sift_vecindex_bytes_per_vector(q) == 260.125);
    assert_int_equal(sift_vecindex_kind(q), SIFT_VEC_I8);
    assert_int_equal(sift_vecindex_dims(q), 256);
    float v[256] = {1};
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(sift_vecindex_put(q, i, v, &err), 0);
    /* storage doubles: at most twice the vectors' bytes, plus the struct */
    size_t m = sift_vecindex_memory(q);
    assert_true(m >= (size_t)1000 * 260);
    assert_true(m <= (size_t)2 * 1024 * 261 + 256);
    /* A reservation allocates once, to size, and puts then stay inside it. */
    assert_int_equal(sift_vecindex_reserve(f, 1000, &err), 0);
    size_t r = sift_vecindex_memory(f);
    assert_true(r >= (size_t)1024 * 1024 && r <= (size_t)1024 * 1025 + 512);
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(sift_vecindex_put(f, i, v, &err), 0);
    assert_int_equal(sift_vecindex_memory(f), r);
    assert_int_equal(sift_vecindex_count(f), 1000);
    assert_int_equal(sift_vecindex_reserve(f, (size_t)SIFT_VEC_ID_MAX + 1, &err), SIFT_EINVAL);
    sift_vecindex_free(f);
    sift_vecindex_free(q);
}

static void test_out_of_memory(void **state)
{
    sift_vecindex *ix = NULL;
    sift_err err = {0};
    sift_mem_fail_after(0);
    assert_int_equal(sift_vecindex_new(8, SIFT_VEC_I8, &ix, &err), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    assert_int_equal(sift_vecindex_new(8, SIFT_VEC_I8, &ix, &err), 0);
    float v[8] = {1, 2, 3};
    assert_int_equal(sift_vecindex_put(ix, 0, v, &err), 0);
    /* growing fails part-way: the index keeps what it had */
    for (long after = 0; after < 3; after++) {
        sift_mem_fail_after(after);
        assert_int_equal(sift_vecindex_put(ix, 1000, v, &err), SIFT_ENOMEM);
        sift_mem_fail_after(-1);
    }
    assert_int_equal(sift_vecindex_count(ix), 1);
    sift_vechit h[2];
    size_t n = 0;
    assert_int_equal(sift_vecindex_search(ix, v, 2, NULL, h, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].id, 0);
    sift_vecindex_free(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_products_identical),
        cmocka_unit_test(test_search_identical_across_impls),
        cmocka_unit_test(test_int8_agrees_with_float),
        cmocka_unit_test(test_filter_before_truncation),
        cmocka_unit_test(test_filter_partial_bitset),
        cmocka_unit_test(test_ids_ties_and_updates),
        cmocka_unit_test(test_empty_and_zero_query),
        cmocka_unit_test(test_memory_report),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
