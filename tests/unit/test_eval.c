/* Relevance metrics on hand-computed examples, the TSV readers and their
 * errors, and timed runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/eval.h"

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

static void near(double got, double want)
{
    if (fabs(got - want) > 1e-9)
        fail_msg("got %.12f, want %.12f", got, want);
}

static const char queries[] = "query_id\tquery\n"
                              "q1\tred running shoes\r\n"
                              "q2\tnothing relevant\n"
                              "\n"
                              "q3\tonly partial matches\n"
                              "q4\ttop product never found\n";

static const char qrels[] = "query_id\tsku\tgain\n"
                            "q1\ta\t3\n"
                            "q1\tb\t2\n"
                            "q1\tc\t2.0\n"
                            "q1\td\t0\n"
                            "q1\te\t1\n"
                            "q2\tf\t0\n"
                            "q3\tg\t1\n"
                            "q4\th\t3\n"
                            "q4\ti\t1\n"
                            "q9\tz\t3\n"; /* no such query: ignored */

static void parse_ok(sift_eval_set *set)
{
    sift_err err = {0};
    int rc = sift_eval_parse(set, arena, "queries.tsv", queries, strlen(queries), "qrels.tsv",
                             qrels, strlen(qrels), &err);
    if (rc)
        fail_msg("%s", err.msg);
}

static void test_parse(void **state)
{
    sift_eval_set set;
    parse_ok(&set);
    assert_int_equal(set.n_queries, 4);
    assert_string_equal(set.queries[0].id, "q1");
    assert_string_equal(set.queries[0].text, "red running shoes"); /* \r stripped */
    assert_string_equal(set.queries[3].text, "top product never found");
    assert_int_equal(set.n_labels, 9);
    assert_int_equal(set.n_orphan_labels, 1);
    assert_true(set.max_gain == 3);
    const sift_eval_query *q1 = &set.queries[0];
    assert_int_equal(q1->n_labels, 5);
    assert_int_equal(q1->n_relevant, 4);
    near(sift_eval_gain(q1, "c"), 2);
    near(sift_eval_gain(q1, "d"), 0);
    near(sift_eval_gain(q1, "zz"), 0);
    assert_int_equal(set.queries[1].n_relevant, 0);
}

static void test_metrics_by_hand(void **state)
{
    sift_eval_set set;
    parse_ok(&set);
    const sift_eval_query *q1 = &set.queries[0];
    sift_eval_scores s;
    sift_eval_opts o = {.top_gain = 3};

    /* gains by rank: 0 2 3 0 2
     * DCG  = 2/log2(3) + 3/log2(4) + 2/log2(6)
     * IDCG = 3/log2(2) + 2/log2(3) + 2/log2(4) + 1/log2(5)   (labels 3,2,2,1,0) */
    const char *run[] = {"x", "b", "a", "d", "c"};
    sift_eval_score(q1, run, 5, &o, &s);
    double dcg = 2 / log2(3) + 3 / log2(4) + 2 / log2(6);
    double idcg = 3 / log2(2) + 2 / log2(3) + 2 / log2(4) + 1 / log2(5);
    assert_int_equal(s.judged, 1);
    assert_int_equal(s.has_top, 1);
    near(s.ndcg, dcg / idcg);
    near(s.rr, 1.0 / 3);     /* "a" (gain 3) at rank 3 */
    near(s.recall, 3.0 / 4); /* a, b, c of a, b, c, e */

    /* MRR with top gain 2: "b" at rank 2. Recall@3: b and a. */
    o = (sift_eval_opts){.top_gain = 2, .recall_k = 3};
    sift_eval_score(q1, run, 5, &o, &s);
    near(s.rr, 0.5);
    near(s.recall, 2.0 / 4);

    /* Ties in gain: either order of b and c is ideal. */
    o = (sift_eval_opts){.top_gain = 3};
    const char *ideal1[] = {"a", "b", "c", "e"}, *ideal2[] = {"a", "c", "b", "e"};
    sift_eval_score(q1, ideal1, 4, &o, &s);
    near(s.ndcg, 1);
    near(s.rr, 1);
    near(s.recall, 1);
    sift_eval_score(q1, ideal2, 4, &o, &s);
    near(s.ndcg, 1);
    /* ...and swapping tied items elsewhere gives the same figure */
    const char *t1[] = {"x", "b", "c"}, *t2[] = {"x", "c", "b"};
    double v1, v2;
    sift_eval_score(q1, t1, 3, &o, &s);
    v1 = s.ndcg;
    sift_eval_score(q1, t2, 3, &o, &s);
    v2 = s.ndcg;
    near(v1, v2);
    near(v1, (2 / log2(3) + 2 / log2(4)) / idcg);

    /* Only the top 10 count for NDCG and MRR. */
    const char *deep[12] = {"x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "a", "b"};
    sift_eval_score(q1, deep, 12, &o, &s);
    near(s.ndcg, 0);
    near(s.rr, 0);
    near(s.recall, 2.0 / 4);

    /* A repeated SKU counts once. */
    const char *rep[] = {"a", "a", "a"};
    sift_eval_score(q1, rep, 3, &o, &s);
    near(s.ndcg, 3 / idcg);
    near(s.recall, 1.0 / 4);

    /* Nothing relevant labelled: not judged. */
    const char *any[] = {"f"};
    sift_eval_score(&set.queries[1], any, 1, &o, &s);
    assert_int_equal(s.judged, 0);

    /* No label reaches the top gain: rr 0 even with the best product first. */
    const char *g[] = {"g"};
    sift_eval_score(&set.queries[2], g, 1, &o, &s);
    assert_int_equal(s.judged, 1);
    assert_int_equal(s.has_top, 0);
    near(s.rr, 0);
    near(s.ndcg, 1);

    /* The top-gain product exists but is never returned: rr 0. */
    const char *miss[] = {"i", "x"};
    sift_eval_score(&set.queries[3], miss, 2, &o, &s);
    assert_int_equal(s.has_top, 1);
    near(s.rr, 0);
    near(s.ndcg, (1 / log2(2)) / (3 / log2(2) + 1 / log2(3)));
    near(s.recall, 0.5);

    /* Empty result list. */
    sift_eval_score(q1, NULL, 0, &o, &s);
    near(s.ndcg, 0);
    near(s.rr, 0);
    near(s.recall, 0);
}

/* The search under test: canned lists per query. */
static const char *const *canned(const char *id, size_t *n)
{
    static const char *const r1[] = {"x", "b", "a", "d", "c"};
    static const char *const r3[] = {"g"};
    static const char *const r4[] = {"i", "x"};
    if (strcmp(id, "q1") == 0)
        return *n = 5, r1;
    if (strcmp(id, "q3") == 0)
        return *n = 1, r3;
    if (strcmp(id, "q4") == 0)
        return *n = 2, r4;
    return *n = 0, NULL;
}

static int search_calls;

static int search(void *ud, const sift_eval_query *q, size_t k, sift_arena *a,
                  const char *const **skus, size_t *n, sift_err *err)
{
    search_calls++;
    assert_int_equal(k, 100);
    if (ud && strcmp(q->id, (const char *)ud) == 0)
        return sift_err_set(err, SIFT_EIO, "store went away");
    /* Results may live in the scratch arena. */
    const char *const *c = canned(q->id, n);
    const char **copy = sift_arena_calloc(a, *n ? *n : 1, sizeof *copy);
    for (size_t i = 0; i < *n; i++)
        copy[i] = sift_arena_strdup(a, c[i]);
    *skus = copy;
    return 0;
}

static void test_run(void **state)
{
    sift_eval_set set;
    parse_ok(&set);
    sift_eval_report rep;
    sift_err err = {0};
    search_calls = 0;
    /* top_gain 0: the set's highest gain, 3 */
    assert_int_equal(sift_eval_run(&set, NULL, search, NULL, arena, &rep, &err), 0);
    assert_int_equal(search_calls, 4);
    assert_int_equal(rep.n_queries, 4);
    assert_int_equal(rep.n_judged, 3);  /* q2 has no relevant label */
    assert_int_equal(rep.n_has_top, 2); /* q3 has no label of gain 3 */
    near(rep.top_gain, 3);
    double idcg1 = 3 / log2(2) + 2 / log2(3) + 2 / log2(4) + 1 / log2(5);
    double n1 = (2 / log2(3) + 3 / log2(4) + 2 / log2(6)) / idcg1;
    double n3 = 1, n4 = 1 / (3 + 1 / log2(3));
    near(rep.ndcg, (n1 + n3 + n4) / 3);
    near(rep.mrr, (1.0 / 3 + 0) / 2); /* q1 and q4 */
    near(rep.recall, (0.75 + 1 + 0.5) / 3);
    assert_string_equal(rep.per_query[1].query_id, "q2");
    assert_int_equal(rep.per_query[1].s.judged, 0);
    assert_int_equal(rep.per_query[0].n_results, 5);
    assert_true(rep.ms_p50 >= 0 && rep.ms_p50 <= rep.ms_p99 && rep.ms_p99 <= rep.ms_max);

    /* A search error stops the run and names the query. */
    search_calls = 0;
    assert_int_equal(sift_eval_run(&set, NULL, search, "q3", arena, &rep, &err), SIFT_EIO);
    assert_int_equal(search_calls, 3);
    assert_string_equal(err.msg, "query q3: store went away");

    sift_eval_opts o = {.recall_k = SIFT_EVAL_DEPTH_MAX + 1};
    assert_int_equal(sift_eval_run(&set, &o, search, NULL, arena, &rep, &err), SIFT_EINVAL);
    o = (sift_eval_opts){.top_gain = -1};
    assert_int_equal(sift_eval_run(&set, &o, search, NULL, arena, &rep, &err), SIFT_EINVAL);
}

/* Parses and expects an error whose message contains `want`. */
static void bad(const char *q, const char *r, int code, const char *want)
{
    sift_eval_set set;
    sift_err err = {0};
    int rc =
        sift_eval_parse(&set, arena, "queries.tsv", q, strlen(q), "qrels.tsv", r, strlen(r), &err);
    if (rc != code || !strstr(err.msg, want))
        fail_msg("rc %d, message \"%s\"; wanted %d and \"%s\"", rc, err.msg, code, want);
    assert_int_equal(set.n_queries, 0);
}

static void test_reader_errors(void **state)
{
    const char *okq = "query_id\tquery\n1\tfoo\n2\tbar\n";
    const char *okr = "query_id\tsku\tgain\n1\ta\t1\n";
    bad("", okr, SIFT_EINVAL, "queries.tsv: empty file");
    bad("1\tfoo\n", okr, SIFT_EINVAL, "queries.tsv line 1: expected the header");
    bad(okq, "query_id\tsku\n", SIFT_EINVAL, "qrels.tsv line 1: expected the header");
    bad("query_id\tquery\n1\tfoo\n2 bar\n", okr, SIFT_EINVAL,
        "queries.tsv line 3: expected 2 TAB-separated fields (query_id, query), found 1");
    bad("query_id\tquery\n1\tfoo\tx\ty\n", okr, SIFT_EINVAL, "line 2: expected 2");
    bad("query_id\tquery\n\tfoo\n", okr, SIFT_EINVAL, "queries.tsv line 2: empty query_id");
    bad("query_id\tquery\n1\t  \n", okr, SIFT_EINVAL, "queries.tsv line 2: empty query");
    bad("query_id\tquery\n1\tfoo\n2\tbar\n\n1\tagain\n", okr, SIFT_EINVAL,
        "queries.tsv line 5: query_id \"1\" already on line 2");
    bad(okq, "query_id\tsku\tgain\n1\ta\n", SIFT_EINVAL,
        "qrels.tsv line 2: expected 3 TAB-separated fields (query_id, sku, gain), found 2");
    bad(okq, "query_id\tsku\tgain\n1\ta\tabc\n", SIFT_EINVAL,
        "qrels.tsv line 2: gain \"abc\" is not a finite number >= 0");
    bad(okq, "query_id\tsku\tgain\n1\ta\t1\n1\tb\t-1\n", SIFT_EINVAL, "line 3: gain \"-1\"");
    bad(okq, "query_id\tsku\tgain\n1\ta\tnan\n", SIFT_EINVAL, "line 2: gain");
    bad(okq, "query_id\tsku\tgain\n1\ta\tinf\n", SIFT_EINVAL, "line 2: gain");
    bad(okq, "query_id\tsku\tgain\n1\ta\t\n", SIFT_EINVAL, "line 2: gain \"\"");
    bad(okq, "query_id\tsku\tgain\n1\ta\t2x\n", SIFT_EINVAL, "line 2: gain \"2x\"");
    bad(okq, "query_id\tsku\tgain\n1\t\t2\n", SIFT_EINVAL, "qrels.tsv line 2: empty sku");
    bad(okq, "query_id\tsku\tgain\n1\ta\t1\n2\ta\t1\n1\ta\t2\n", SIFT_EINVAL,
        "qrels.tsv line 4: query_id \"1\", sku \"a\" already labelled on line 2");

    /* A line over the limit is refused, not cut. */
    size_t big = SIFT_EVAL_LINE_MAX + 10;
    char *q = malloc(big + 64);
    assert_non_null(q);
    int off = snprintf(q, 64, "query_id\tquery\n1\t");
    memset(q + off, 'x', big);
    q[(size_t)off + big] = '\0';
    bad(q, okr, SIFT_EINVAL, "queries.tsv line 2: 65548 bytes, longer than the limit");
    free(q);

    /* Header names are case-insensitive; spaces around a gain are fine;
     * a missing final newline is fine. */
    sift_eval_set set;
    sift_err err = {0};
    const char *q2 = "Query_ID\tQuery\n1\tfoo";
    const char *r2 = "QUERY_ID\tSKU\tGAIN\n1\ta\t 1.5 ";
    assert_int_equal(sift_eval_parse(&set, arena, "q", q2, strlen(q2), "r", r2, strlen(r2), &err),
                     0);
    assert_int_equal(set.n_queries, 1);
    near(set.queries[0].labels[0].gain, 1.5);
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
}

static void test_load_files(void **state)
{
    char dir[] = "/tmp/sift-eval-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char qp[128], rp[128];
    snprintf(qp, sizeof qp, "%s/queries.tsv", dir);
    snprintf(rp, sizeof rp, "%s/qrels.tsv", dir);
    write_file(qp, queries);
    write_file(rp, "query_id\tsku\tgain\nq1\ta\t3\nq1\tb\tx\n");
    sift_eval_set set;
    sift_err err = {0};
    assert_int_equal(sift_eval_load(&set, arena, qp, rp, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "qrels.tsv line 3: gain \"x\" is not a finite number >= 0");
    write_file(rp, qrels);
    assert_int_equal(sift_eval_load(&set, arena, qp, rp, &err), 0);
    assert_int_equal(set.n_queries, 4);
    assert_int_equal(set.n_labels, 9);
    unlink(rp);
    assert_int_equal(sift_eval_load(&set, arena, qp, rp, &err), SIFT_EIO);
    assert_non_null(strstr(err.msg, "qrels.tsv: cannot open"));
    assert_int_equal(sift_eval_load(&set, arena, dir, qp, &err), SIFT_EIO);
    unlink(qp);
    rmdir(dir);
}

static void test_out_of_memory(void **state)
{
    sift_eval_set set;
    sift_err err = {0};
    /* Every allocation point in turn fails cleanly, then parsing succeeds. */
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        sift_arena *a = sift_arena_new(64);
        assert_non_null(a);
        sift_mem_fail_after(n);
        int rc = sift_eval_parse(&set, a, "q", queries, strlen(queries), "r", qrels, strlen(qrels),
                                 &err);
        sift_mem_fail_after(-1);
        if (rc == 0)
            ok = 1;
        else
            assert_int_equal(rc, SIFT_ENOMEM);
        sift_arena_free(a);
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),      cmocka_unit_test(test_metrics_by_hand),
        cmocka_unit_test(test_run),        cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_load_files), cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
