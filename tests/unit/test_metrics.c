/* Metrics registry: exact Prometheus text, cumulative buckets, the label cap,
 * concurrent updates. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sift/buf.h"
#include "sift/err.h"
#include "sift/metrics.h"

static char *render(sift_metrics *m, sift_buf *b)
{
    sift_buf_init(b, 0);
    assert_int_equal(sift_metrics_render(m, b), 0);
    return b->data ? b->data : "";
}

static void test_counter_gauge_format(void **state)
{
    (void)state;
    sift_metrics *m = sift_metrics_new();
    assert_non_null(m);
    static const char *const reasons[] = {"ok", "error", NULL};
    sift_metric *started = sift_metrics_counter(m, "runs_total", "Runs started.", NULL, NULL, 0);
    sift_metric *fin =
        sift_metrics_counter(m, "finished_total", "Runs \\ done\nby reason.", "reason", reasons, 0);
    sift_metric *active = sift_metrics_gauge(m, "active", "Active runs.", NULL, NULL, 0);
    assert_non_null(started);
    assert_non_null(fin);
    assert_non_null(active);
    assert_int_equal(sift_metric_add(started, NULL, 3), 0);
    assert_int_equal(sift_metric_add(fin, "error", 2), 0);
    assert_int_equal(sift_metric_add(fin, "nope", 1), SIFT_EINVAL);
    assert_int_equal(sift_metric_add(fin, NULL, 1), SIFT_EINVAL);
    assert_int_equal(sift_metric_add(started, NULL, -1), SIFT_EINVAL);
    assert_int_equal(sift_metric_add(active, NULL, 5), 0);
    assert_int_equal(sift_metric_add(active, NULL, -7), 0);
    assert_int_equal(sift_metric_value(fin, "error"), 2);
    sift_buf b;
    assert_string_equal(render(m, &b), "# HELP runs_total Runs started.\n"
                                       "# TYPE runs_total counter\n"
                                       "runs_total 3\n"
                                       "# HELP finished_total Runs \\\\ done\\nby reason.\n"
                                       "# TYPE finished_total counter\n"
                                       "finished_total{reason=\"ok\"} 0\n"
                                       "finished_total{reason=\"error\"} 2\n"
                                       "# HELP active Active runs.\n"
                                       "# TYPE active gauge\n"
                                       "active -2\n");
    sift_buf_free(&b);
    sift_metrics_free(m);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    sift_metrics *m = sift_metrics_new();
    static const double bounds[] = {0.5, 1, 2.5};
    sift_metric *h = sift_metrics_histogram(m, "lat_seconds", "Latency.", NULL, NULL, 0, bounds, 3);
    assert_non_null(h);
    static const double obs[] = {0.25, 0.5, 0.75, 2, 10};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        assert_int_equal(sift_metric_observe(h, NULL, obs[i]), 0);
    assert_int_equal(sift_metric_add(h, NULL, 1), SIFT_EINVAL);
    sift_buf b;
    assert_string_equal(render(m, &b), "# HELP lat_seconds Latency.\n"
                                       "# TYPE lat_seconds histogram\n"
                                       "lat_seconds_bucket{le=\"0.5\"} 2\n"
                                       "lat_seconds_bucket{le=\"1\"} 3\n"
                                       "lat_seconds_bucket{le=\"2.5\"} 4\n"
                                       "lat_seconds_bucket{le=\"+Inf\"} 5\n"
                                       "lat_seconds_sum 13.5\n"
                                       "lat_seconds_count 5\n");
    sift_buf_free(&b);
    /* bad bounds are refused */
    static const double bad[] = {1, 1};
    assert_null(sift_metrics_histogram(m, "x", "x", NULL, NULL, 0, bad, 2));
    sift_metrics_free(m);
}

static void test_label_cap_and_escaping(void **state)
{
    (void)state;
    sift_metrics *m = sift_metrics_new();
    static const double bounds[] = {1};
    sift_metric *h =
        sift_metrics_histogram(m, "tool_seconds", "Tools.", "tool", NULL, 3, bounds, 1);
    assert_non_null(h);
    assert_int_equal(sift_metric_observe(h, "a\"b\\c\nd", 0.5), 0);
    assert_int_equal(sift_metric_observe(h, "second", 2), 0);
    /* the cap is 3 series including "other": these two fall into it */
    assert_int_equal(sift_metric_observe(h, "third", 2), 0);
    assert_int_equal(sift_metric_observe(h, "fourth", 0.5), 0);
    assert_int_equal(sift_metric_observe(h, "second", 0.5), 0);
    assert_int_equal(sift_metric_value(h, "second"), 2);
    assert_int_equal(sift_metric_value(h, "other"), 2);
    assert_int_equal(sift_metric_value(h, "third"), 2); /* reads as "other" */
    sift_buf b;
    assert_string_equal(render(m, &b),
                        "# HELP tool_seconds Tools.\n"
                        "# TYPE tool_seconds histogram\n"
                        "tool_seconds_bucket{tool=\"a\\\"b\\\\c\\nd\",le=\"1\"} 1\n"
                        "tool_seconds_bucket{tool=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 1\n"
                        "tool_seconds_sum{tool=\"a\\\"b\\\\c\\nd\"} 0.5\n"
                        "tool_seconds_count{tool=\"a\\\"b\\\\c\\nd\"} 1\n"
                        "tool_seconds_bucket{tool=\"second\",le=\"1\"} 1\n"
                        "tool_seconds_bucket{tool=\"second\",le=\"+Inf\"} 2\n"
                        "tool_seconds_sum{tool=\"second\"} 2.5\n"
                        "tool_seconds_count{tool=\"second\"} 2\n"
                        "tool_seconds_bucket{tool=\"other\",le=\"1\"} 1\n"
                        "tool_seconds_bucket{tool=\"other\",le=\"+Inf\"} 2\n"
                        "tool_seconds_sum{tool=\"other\"} 2.5\n"
                        "tool_seconds_count{tool=\"other\"} 2\n");
    sift_buf_free(&b);
    sift_metrics_free(m);
}

struct worker_arg {
    sift_metric *c, *h;
};

#define THREADS 4
#define ITERS 20000

static void *hammer(void *p)
{
    struct worker_arg *a = p;
    char name[16];
    for (int i = 0; i < ITERS; i++) {
        snprintf(name, sizeof name, "t%d", i % 8);
        sift_metric_add(a->c, name, 1);
        sift_metric_observe(a->h, NULL, 1.0);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    sift_metrics *m = sift_metrics_new();
    static const double bounds[] = {0.5, 2};
    struct worker_arg a = {
        .c = sift_metrics_counter(m, "calls_total", "Calls.", "tool", NULL, 32),
        .h = sift_metrics_histogram(m, "h_seconds", "H.", NULL, NULL, 0, bounds, 2),
    };
    assert_non_null(a.c);
    assert_non_null(a.h);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &a), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    int64_t total = 0;
    char name[16];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "t%d", i);
        assert_int_equal(sift_metric_value(a.c, name), THREADS * ITERS / 8);
        total += sift_metric_value(a.c, name);
    }
    assert_int_equal(total, THREADS * ITERS);
    assert_int_equal(sift_metric_value(a.c, "other"), 0);
    assert_int_equal(sift_metric_value(a.h, NULL), THREADS * ITERS);
    sift_buf b;
    char *text = render(m, &b);
    char want[128];
    snprintf(want, sizeof want, "h_seconds_sum %d\nh_seconds_count %d\n", THREADS * ITERS,
             THREADS * ITERS);
    assert_non_null(strstr(text, want));
    /* each distinct value got exactly one series */
    int series = 0;
    for (char *p = text; (p = strstr(p, "calls_total{")); p++)
        series++;
    assert_int_equal(series, 8);
    sift_buf_free(&b);
    sift_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_format),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_label_cap_and_escaping),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
