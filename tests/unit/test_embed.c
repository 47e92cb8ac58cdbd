/* The embedding interface and the built-in hashed n-gram embedder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/embed.h"

/* FNV-1a 64 over bytes, to fingerprint a vector's exact bits. */
static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t fingerprint(const float *v, size_t dims)
{
    /* Little-endian bytes of each float, whatever the host order. */
    unsigned char b[4 * 4096];
    for (size_t i = 0; i < dims; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * i + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    return fnv(b, 4 * dims);
}

static float dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

static sift_embedder *hashed(size_t dims)
{
    sift_embedder *e = NULL;
    sift_err err = {0};
    sift_hashed_opts o = {.dims = dims};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), 0);
    return e;
}

static void embed1(sift_embedder *e, const char *text, float *out)
{
    sift_err err = {0};
    const char *t[1] = {text};
    assert_int_equal(sift_embedder_embed_sync(e, t, NULL, 1, out, &err), 0);
}

/* Values from an independent Python implementation of the same definition
 * (FNV-1a 64 with the seed xor-ed into the offset basis, then fmix64). */
static void test_hash_reference_values(void **state)
{
    assert_true(sift_hash64("", 0, 0) == 0xefd01f60ba992926ULL);
    assert_true(sift_hash64("a", 1, 0) == 0x82a2a958a9bece5bULL);
    assert_true(sift_hash64("foobar", 6, 12345) == 0x26c887141770e040ULL);
}

static void fold_is(const char *in, const char *want)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_text_fold(in, strlen(in), &b), 0);
    assert_string_equal(b.data ? b.data : "", want);
    sift_buf_free(&b);
}

static void test_fold(void **state)
{
    fold_is("Giày Đá Bóng", "giay da bong");
    fold_is("Tiếng Việt có dấu: Ơ ư ỹ Ặ", "tieng viet co dau o u y a");
    fold_is("Crème Brûlée — ÆSIR Straße", "creme brulee aesir strasse");
    fold_is("  --Nike Air Max 90!!  ", "nike air max 90");
    fold_is("Łódź Œuvre ĳ", "lodz oeuvre ij");
    fold_is("cafe\xcc\x81", "cafe"); /* e + combining acute (decomposed) */
    fold_is("bad\xff\xfe"
            "byte",
            "bad byte"); /* invalid UTF-8 separates */
    fold_is("\xe2\x80\x9cquoted\xe2\x80\x9d", "quoted");
    fold_is("寿司 bar", "寿司 bar"); /* other scripts kept */
    fold_is("", "");
    fold_is("!!!", "");
    fold_is("5×10", "5 10");
}

static void test_fixed_vectors(void **state)
{
    /* Pinned against the Python reference: the same bits on every machine
     * and every run, or stored vectors stop matching new queries. */
    sift_embedder *e = hashed(256);
    float v[256];
    embed1(e, "Nike Pegasus 40 Men's Running Shoe - Black", v);
    assert_true(fingerprint(v, 256) == 0xfda67883c2f58739ULL);
    embed1(e, "a", v);
    assert_true(fingerprint(v, 256) == 0x0a6b6bdfe43be582ULL);
    embed1(e, "paint sprayer 2400 psi", v);
    assert_true(fingerprint(v, 256) == 0x98bf89b2360ff906ULL);
    sift_embedder_free(e);

    e = hashed(64);
    float w[64];
    embed1(e, "a", w);
    assert_true(fingerprint(w, 64) == 0x1dcaafb892b26876ULL);
    sift_embedder_free(e);
}

static void test_deterministic_and_normalised(void **state)
{
    sift_embedder *e = hashed(0);
    assert_int_equal(e->dims, SIFT_HASHED_DIMS_DEFAULT);
    float a[256], b[256];
    embed1(e, "Samsung Galaxy S24 Ultra 512GB", a);
    embed1(e, "Samsung Galaxy S24 Ultra 512GB", b);
    assert_memory_equal(a, b, sizeof a);
    assert_true(fabsf(dot(a, a, 256) - 1.0f) < 1e-5f);
    /* Folding makes case and diacritics irrelevant, bit for bit. */
    embed1(e, "Giày bóng đá NAM", a);
    embed1(e, "giay bong da nam", b);
    assert_memory_equal(a, b, sizeof a);
    /* No features: the zero vector, not NaNs. */
    embed1(e, " ... ", a);
    for (int i = 0; i < 256; i++)
        assert_true(a[i] == 0.0f);
    sift_embedder_free(e);
}

static void test_similar_closer_than_dissimilar(void **state)
{
    sift_embedder *e = hashed(256);
    float q[256], near[256], far[256];
    struct {
        const char *q, *near, *far;
    } cases[] = {
        {"running shoes for men", "Men's Running Shoe", "stainless steel kitchen knife"},
        {"paint sprayr", "paint sprayer", "garden hose"},
        {"bathroom vanitys", "bathroom vanity with sink", "bath towel"},
        {"iphone 15 case", "Apple iPhone 15 silicone case", "Samsung TV remote"},
        {"tai nghe bluetooth", "Tai nghe Bluetooth không dây", "bàn phím cơ"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        embed1(e, cases[i].q, q);
        embed1(e, cases[i].near, near);
        embed1(e, cases[i].far, far);
        float dn = dot(q, near, 256), df = dot(q, far, 256);
        if (!(dn > df + 0.1f))
            fail_msg("case %zu: near %.3f, far %.3f", i, (double)dn, (double)df);
    }
    sift_embedder_free(e);
}

static int done_calls, done_code;

static void on_done(void *ud, int code, const sift_err *err)
{
    done_calls++;
    done_code = code;
    *(int *)ud = 1;
}

static void test_async_interface(void **state)
{
    sift_embedder *e = hashed(128);
    const char *texts[3] = {"red dress", "blue jeans", "green hat"};
    size_t lens[3] = {3, 4, 5}; /* "red", "blue", "green" */
    float out[3 * 128], ref[128];
    int flag = 0;
    sift_err err = {0};
    done_calls = 0;
    assert_int_equal(sift_embedder_embed(e, NULL, texts, lens, 3, out, on_done, &flag, &err), 0);
    /* The built-in provider completes before embed returns. */
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_code, 0);
    assert_int_equal(flag, 1);
    embed1(e, "green", ref);
    assert_memory_equal(out + (size_t)2 * 128, ref, sizeof ref);
    embed1(e, "red", ref);
    assert_memory_equal(out, ref, sizeof ref);

    /* Refused calls never fire the callback. */
    const char *bad[2] = {"ok", NULL};
    done_calls = 0;
    assert_int_equal(sift_embedder_embed(e, NULL, bad, NULL, 2, out, on_done, &flag, &err),
                     SIFT_EINVAL);
    assert_int_equal(done_calls, 0);
    e->max_batch = 2;
    assert_int_equal(sift_embedder_embed(e, NULL, texts, NULL, 3, out, on_done, &flag, &err),
                     SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "at most 2"));
    assert_int_equal(done_calls, 0);
    /* The synchronous call splits batches over max_batch instead. */
    assert_int_equal(sift_embedder_embed_sync(e, texts, NULL, 3, out, &err), 0);
    embed1(e, "green hat", ref);
    assert_memory_equal(out + (size_t)2 * 128, ref, sizeof ref);
    sift_embedder_free(e);
    sift_embedder_free(NULL);
}

static void test_options(void **state)
{
    sift_embedder *e = NULL;
    sift_err err = {0};
    sift_hashed_opts o = {.dims = SIFT_HASHED_DIMS_MAX + 1};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), SIFT_EINVAL);
    assert_null(e);
    o = (sift_hashed_opts){.word_weight = -1, .gram_weight = -1};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), SIFT_EINVAL);
    o = (sift_hashed_opts){.word_weight = 101};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), SIFT_EINVAL);

    /* Words only: texts sharing no whole word are orthogonal unless hashes
     * collide, and "shoe" vs "shoes" share nothing. */
    o = (sift_hashed_opts){.dims = 4096, .gram_weight = -1};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), 0);
    float a[4096], b[4096];
    embed1(e, "shoe", a);
    embed1(e, "shoes", b);
    float words_only = dot(a, b, 4096);
    sift_embedder_free(e);
    o = (sift_hashed_opts){.dims = 4096};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), 0);
    embed1(e, "shoe", a);
    embed1(e, "shoes", b);
    assert_true(dot(a, b, 4096) > words_only + 0.3f);
    sift_embedder_free(e);

    /* Only the first max_bytes of a text count. */
    o = (sift_hashed_opts){.max_bytes = 8};
    assert_int_equal(sift_embedder_hashed_new(&o, &e, &err), 0);
    embed1(e, "red shoe and a lot more words", a);
    embed1(e, "red shoe", b);
    assert_memory_equal(a, b, 256 * sizeof(float));
    sift_embedder_free(e);
}

static void test_out_of_memory(void **state)
{
    sift_err err = {0};
    sift_embedder *e = NULL;
    sift_mem_fail_after(0);
    assert_int_equal(sift_embedder_hashed_new(NULL, &e, &err), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    e = hashed(32);
    float v[32];
    const char *t[1] = {"x"};
    sift_mem_fail_after(0);
    assert_int_equal(sift_embedder_embed_sync(e, t, NULL, 1, v, &err), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    sift_embedder_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_reference_values),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_fixed_vectors),
        cmocka_unit_test(test_deterministic_and_normalised),
        cmocka_unit_test(test_similar_closer_than_dissimilar),
        cmocka_unit_test(test_async_interface),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
