/* Reciprocal rank fusion on hand-computed examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/fusion.h"

static sift_arena *arena;

static int setup(void **state)
{
    arena = sift_arena_new(0);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    sift_arena_free(arena);
    return 0;
}

#define LIST(w, ...)                                                                               \
    ((sift_fusion_list){.keys = (const char *const[]){__VA_ARGS__},                                \
                        .n = sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *),    \
                        .weight = (w)})

static void near(double got, double want)
{
    if (fabs(got - want) > 1e-12)
        fail_msg("got %.15f, want %.15f", got, want);
}

static void test_two_lists_by_hand(void **state)
{
    /* k = 60:  a: 1/61 + 1/62   c: 1/63 + 1/61   b: 1/62   d: 1/63 */
    sift_fusion_list l[2] = {LIST(1, "a", "b", "c"), LIST(1, "c", "a", "d")};
    sift_fused *f;
    size_t n;
    sift_err err = {0};
    assert_int_equal(sift_fusion_rrf(l, 2, 0, 10, arena, &f, &n, &err), 0);
    assert_int_equal(n, 4);
    const char *order[4] = {"a", "c", "b", "d"};
    double score[4] = {1.0 / 61 + 1.0 / 62, 1.0 / 63 + 1.0 / 61, 1.0 / 62, 1.0 / 63};
    size_t r0[4] = {1, 3, 2, 0}, r1[4] = {2, 1, 0, 3}, best[4] = {1, 1, 2, 3};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(f[i].key, order[i]);
        near(f[i].score, score[i]);
        assert_int_equal(f[i].ranks[0], r0[i]);
        assert_int_equal(f[i].ranks[1], r1[i]);
        assert_int_equal(f[i].best_rank, best[i]);
    }
    /* The key points at the caller's string in the first list holding it. */
    assert_ptr_equal(f[0].key, l[0].keys[0]);
    assert_ptr_equal(f[3].key, l[1].keys[2]);

    /* k cuts after sorting. */
    assert_int_equal(sift_fusion_rrf(l, 2, 0, 2, arena, &f, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(f[1].key, "c");
}

static void test_ties_are_deterministic(void **state)
{
    /* k = 1: u = 1/2 (best rank 1), z2 = 1/2 (best rank 1), v = 1/4 + 1/4
     * = 1/2 (best rank 3), z = z3 = 1/3 (best rank 2). Equal scores go by
     * best rank, then key. */
    sift_fusion_list l[2] = {LIST(1, "u", "z", "v"), LIST(1, "z2", "z3", "v")};
    sift_fused *f;
    size_t n;
    sift_err err = {0};
    assert_int_equal(sift_fusion_rrf(l, 2, 1, 10, arena, &f, &n, &err), 0);
    assert_int_equal(n, 5);
    const char *order[5] = {"u", "z2", "v", "z", "z3"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(f[i].key, order[i]);
    assert_true(f[0].score == 0.5 && f[1].score == 0.5 && f[2].score == 0.5);
    assert_int_equal(f[2].best_rank, 3);

    /* Swapping the lists changes nothing but the ranks' columns. */
    sift_fusion_list s[2] = {l[1], l[0]};
    assert_int_equal(sift_fusion_rrf(s, 2, 1, 10, arena, &f, &n, &err), 0);
    for (int i = 0; i < 5; i++)
        assert_string_equal(f[i].key, order[i]);

    /* Mirror lists: x and y tie on score and best rank; key decides. */
    sift_fusion_list m[2] = {LIST(1, "y", "x"), LIST(1, "x", "y")};
    assert_int_equal(sift_fusion_rrf(m, 2, 0, 10, arena, &f, &n, &err), 0);
    assert_string_equal(f[0].key, "x");
    assert_string_equal(f[1].key, "y");
}

static void test_weights_and_repeats(void **state)
{
    /* Weight 2 on the first list: a = 2/61 + 1/62 beats b = 2/62 + 1/61. */
    sift_fusion_list l[2] = {LIST(2, "a", "b"), LIST(1, "b", "a")};
    sift_fused *f;
    size_t n;
    sift_err err = {0};
    assert_int_equal(sift_fusion_rrf(l, 2, 0, 10, arena, &f, &n, &err), 0);
    assert_string_equal(f[0].key, "a");
    near(f[0].score, 2.0 / 61 + 1.0 / 62);
    near(f[1].score, 2.0 / 62 + 1.0 / 61);
    /* With the weights the other way round, b wins. */
    l[0].weight = 1;
    l[1].weight = 2;
    assert_int_equal(sift_fusion_rrf(l, 2, 0, 10, arena, &f, &n, &err), 0);
    assert_string_equal(f[0].key, "b");

    /* A repeated key counts at its first rank only. */
    sift_fusion_list r[1] = {LIST(1, "a", "b", "a", "c")};
    assert_int_equal(sift_fusion_rrf(r, 1, 0, 10, arena, &f, &n, &err), 0);
    assert_int_equal(n, 3);
    near(f[0].score, 1.0 / 61);
    assert_int_equal(f[0].ranks[0], 1);
    assert_string_equal(f[2].key, "c");
    assert_int_equal(f[2].ranks[0], 4);

    /* Weight 0: the list explains but does not score. */
    sift_fusion_list z[2] = {LIST(1, "a"), LIST(0, "q", "a")};
    assert_int_equal(sift_fusion_rrf(z, 2, 0, 10, arena, &f, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(f[0].key, "a");
    near(f[0].score, 1.0 / 61);
    assert_int_equal(f[0].ranks[1], 2);
    assert_string_equal(f[1].key, "q");
    assert_true(f[1].score == 0);
}

static void test_bad_arguments(void **state)
{
    sift_fused *f;
    size_t n = 7;
    sift_err err = {0};
    sift_fusion_list l[SIFT_FUSION_LISTS_MAX + 1];
    static const char *const one[] = {"a"};
    for (int i = 0; i <= SIFT_FUSION_LISTS_MAX; i++)
        l[i] = (sift_fusion_list){.keys = one, .n = 1, .weight = 1};
    assert_int_equal(sift_fusion_rrf(l, 0, 0, 10, arena, &f, &n, &err), SIFT_EINVAL);
    assert_int_equal(sift_fusion_rrf(l, SIFT_FUSION_LISTS_MAX + 1, 0, 10, arena, &f, &n, &err),
                     SIFT_EINVAL);
    assert_int_equal(sift_fusion_rrf(l, SIFT_FUSION_LISTS_MAX, 0, 10, arena, &f, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(f[0].ranks[SIFT_FUSION_LISTS_MAX - 1], 1);
    near(f[0].score, SIFT_FUSION_LISTS_MAX / 61.0);
    assert_int_equal(sift_fusion_rrf(l, 1, -1, 10, arena, &f, &n, &err), SIFT_EINVAL);
    assert_int_equal(sift_fusion_rrf(l, 1, INFINITY, 10, arena, &f, &n, &err), SIFT_EINVAL);
    l[0].weight = -0.5;
    assert_int_equal(sift_fusion_rrf(l, 1, 0, 10, arena, &f, &n, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "weight"));
    l[0].weight = NAN;
    assert_int_equal(sift_fusion_rrf(l, 1, 0, 10, arena, &f, &n, &err), SIFT_EINVAL);
    sift_fusion_list nk[1] = {LIST(1, "a", NULL)};
    assert_int_equal(sift_fusion_rrf(nk, 1, 0, 10, arena, &f, &n, &err), SIFT_EINVAL);
    /* Empty input: no results, no error. */
    sift_fusion_list e[2] = {{.keys = NULL, .n = 0, .weight = 1},
                             {.keys = NULL, .n = 0, .weight = 1}};
    assert_int_equal(sift_fusion_rrf(e, 2, 0, 10, arena, &f, &n, &err), 0);
    assert_int_equal(n, 0);
}

static void test_out_of_memory(void **state)
{
    sift_arena *a = sift_arena_new(64);
    assert_non_null(a);
    sift_fusion_list l[2] = {LIST(1, "a", "b", "c"), LIST(1, "c", "a", "d")};
    sift_fused *f;
    size_t n;
    sift_err err = {0};
    sift_mem_fail_after(0);
    assert_int_equal(sift_fusion_rrf(l, 2, 0, 10, a, &f, &n, &err), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    assert_int_equal(sift_fusion_rrf(l, 2, 0, 10, a, &f, &n, &err), 0);
    assert_int_equal(n, 4);
    sift_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_lists_by_hand),   cmocka_unit_test(test_ties_are_deterministic),
        cmocka_unit_test(test_weights_and_repeats), cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
