/* Arena and allocation wrappers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/err.h"

static void test_alignment_and_reuse(void **state)
{
    sift_arena *a = sift_arena_new(256);
    assert_non_null(a);
    for (size_t n = 1; n < 200; n += 7) {
        unsigned char *p = sift_arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, n); /* ASan catches an overrun into the next object */
    }
    assert_true(sift_arena_used(a) > 0);
    sift_arena_reset(a);
    assert_int_equal(sift_arena_used(a), 0);
    assert_non_null(sift_arena_alloc(a, 10));
    sift_arena_free(a);
}

static void test_large_blocks(void **state)
{
    sift_arena *a = sift_arena_new(1024);
    char *small1 = sift_arena_alloc(a, 16);
    char *big = sift_arena_alloc(a, 100000);
    char *small2 = sift_arena_alloc(a, 16);
    assert_non_null(small1);
    assert_non_null(big);
    assert_non_null(small2);
    memset(big, 1, 100000);
    /* the big request must not have consumed the small block */
    assert_true(small2 - small1 == 16);
    assert_true(sift_arena_reserved(a) >= 100000 + 1024);
    sift_arena_free(a);
}

static void test_strings(void **state)
{
    sift_arena *a = sift_arena_new(0);
    assert_string_equal(sift_arena_strdup(a, "héllo"), "héllo");
    assert_string_equal(sift_arena_strndup(a, "abcdef", 3), "abc");
    assert_string_equal(sift_arena_strndup(a, "ab", 10), "ab");
    assert_null(sift_arena_strdup(a, NULL));
    assert_string_equal(sift_arena_sprintf(a, "%s-%d", "sku", 42), "sku-42");
    char *z = sift_arena_calloc(a, 10, 10);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    assert_null(sift_arena_calloc(a, SIZE_MAX / 2, 4));
    assert_null(sift_arena_alloc(a, SIZE_MAX));
    sift_arena_free(a);
}

static int order[8];
static int norder;

static void record(void *p)
{
    order[norder++] = (int)(intptr_t)p;
}

static void test_defer_runs_newest_first(void **state)
{
    sift_arena *a = sift_arena_new(0);
    norder = 0;
    for (int i = 1; i <= 3; i++)
        assert_int_equal(sift_arena_defer(a, record, (void *)(intptr_t)i), 0);
    sift_arena_reset(a); /* reset runs them too */
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 3);
    assert_int_equal(order[2], 1);
    assert_int_equal(sift_arena_defer(a, record, (void *)(intptr_t)7), 0);
    sift_arena_free(a);
    assert_int_equal(norder, 4);
    assert_int_equal(order[3], 7);
}

static void free_heap(void *p)
{
    sift_free(p);
}

static void test_oom_injection(void **state)
{
    /* Every allocation point fails in turn; nothing crashes and, under ASan,
     * nothing leaks. */
    for (long n = 0; n < 12; n++) {
        sift_mem_fail_after(n);
        sift_arena *a = sift_arena_new(64);
        if (a) {
            for (int i = 0; i < 10; i++) {
                void *p = sift_arena_alloc(a, (size_t)(i * 40));
                (void)p;
                char *h = sift_strdup("heap");
                if (h && sift_arena_defer(a, free_heap, h) != 0)
                    sift_free(h);
            }
        }
        sift_mem_fail_after(-1);
        sift_arena_free(a);
    }
    sift_mem_fail_after(0);
    assert_null(sift_malloc(1));
    assert_null(sift_calloc(1, 1));
    assert_null(sift_realloc(NULL, 1));
    assert_null(sift_strdup("x"));
    sift_mem_fail_after(-1);
    void *p = sift_malloc(1);
    assert_non_null(p);
    sift_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_reuse),
        cmocka_unit_test(test_large_blocks),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_defer_runs_newest_first),
        cmocka_unit_test(test_oom_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
