/* Kafka catalog events: the pure parser (every op, every refusal with its
 * message) and applying events to an in-memory SQLite store, replays
 * included. The consumer against a mock cluster is in
 * tests/integration/test_kafka.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/kafka.h"
#include "sift/store.h"

static int parse(sift_arena *a, const char *s, sift_kafka_event *ev, sift_err *e)
{
    return sift_kafka_event_parse(a, s, strlen(s), ev, e);
}

static void test_parse_ops(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_kafka_event ev;
    sift_err e = {0};
    assert_int_equal(
        parse(a,
              "{\"op\":\"upsert\",\"sku\":\"NIKE-PEG40-42\",\"version\":7,\"product\":{\"title\":"
              "\"Nike Pegasus 40\",\"brand\":\"Nike\",\"category\":[\"Footwear\",\"Running\"],"
              "\"attributes\":{\"size\":\"42\"}}}",
              &ev, &e),
        0);
    assert_int_equal(ev.op, SIFT_KAFKA_UPSERT);
    assert_string_equal(ev.sku, "NIKE-PEG40-42");
    assert_int_equal(ev.version, 7);
    assert_string_equal(ev.product.sku, "NIKE-PEG40-42");
    assert_int_equal(ev.product.version, 7);
    assert_string_equal(ev.product.title, "Nike Pegasus 40");
    assert_string_equal(ev.product.category, "Footwear > Running");
    assert_int_equal(ev.product.n_attrs, 1);

    /* the product may repeat the event's sku (any case) and version */
    assert_int_equal(parse(a,
                           "{\"op\":\"upsert\",\"sku\":\"A-1\",\"version\":2,\"product\":{\"sku\":"
                           "\"a-1\",\"version\":2,\"title\":\"T\"}}",
                           &ev, &e),
                     0);

    /* the largest version survives the product's round trip exactly (found
     * by the fuzzer: cJSON prints it with 15 digits) */
    assert_int_equal(parse(a,
                           "{\"op\":\"upsert\",\"sku\":\"A\",\"version\":9007199254740992,"
                           "\"product\":{\"title\":\"x\"}}",
                           &ev, &e),
                     0);
    assert_int_equal(ev.product.version, SIFT_VERSION_MAX);
    assert_int_equal(
        parse(a, "{\"op\":\"upsert\",\"sku\":\"A\",\"version\":0,\"product\":{}}", &ev, &e),
        SIFT_EINVAL);
    assert_int_equal(parse(a,
                           "{\"op\":\"upsert\",\"sku\":\"A\",\"version\":0,\"product\":{"
                           "\"title\":\"x\"}}",
                           &ev, &e),
                     0);
    assert_int_equal(ev.product.version, 0);

    assert_int_equal(parse(a, "{\"op\":\"delete\",\"sku\":\"A-1\",\"version\":9}", &ev, &e), 0);
    assert_int_equal(ev.op, SIFT_KAFKA_DELETE);
    assert_string_equal(ev.sku, "A-1");
    assert_int_equal(ev.version, 9);

    assert_int_equal(parse(a,
                           "{\"op\":\"stock\",\"sku\":\"A-1\",\"warehouse\":\"HAN\",\"quantity\":"
                           "3,\"version\":4}",
                           &ev, &e),
                     0);
    assert_int_equal(ev.op, SIFT_KAFKA_STOCK);
    assert_string_equal(ev.stock.warehouse, "HAN");
    assert_int_equal(ev.stock.quantity, 3);
    assert_int_equal(ev.stock.version, 4);

    assert_int_equal(parse(a,
                           "{\"op\":\"price\",\"sku\":\"A-1\",\"currency\":\"USD\",\"amount\":129."
                           "99,\"valid_from\":1767225600,\"version\":5}",
                           &ev, &e),
                     0);
    assert_int_equal(ev.op, SIFT_KAFKA_PRICE);
    assert_string_equal(ev.price.currency, "USD");
    assert_int_equal(ev.price.amount_minor, 12999);
    assert_int_equal(ev.price.valid_from, 1767225600);
    assert_int_equal(ev.price.version, 5);
    sift_arena_free(a);
}

static void test_parse_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *in, *msg;
    } cases[] = {
        {"", "empty message"},
        {"{\"op\":", "invalid JSON at byte"},
        {"[1]", "must be a JSON object"},
        {"{\"op\":\"upsert\"} x", "data after the object"},
        {"{\"sku\":\"A\",\"version\":1}", "op: missing"},
        {"{\"op\":\"merge\",\"sku\":\"A\",\"version\":1}", "op: must be one of"},
        {"{\"op\":7,\"sku\":\"A\",\"version\":1}", "op: must be one of"},
        {"{\"op\":\"delete\",\"sku\":\"A\"}", "version: missing"},
        {"{\"op\":\"delete\",\"sku\":\"A\",\"version\":1.5}", "version: must be an integer"},
        {"{\"op\":\"delete\",\"sku\":\"A\",\"version\":-1}", "version: must be an integer"},
        {"{\"op\":\"delete\",\"version\":1}", "sku: missing"},
        {"{\"op\":\"delete\",\"sku\":3,\"version\":1}", "sku: must be a string"},
        {"{\"op\":\"delete\",\"sku\":\"A B\",\"version\":1}", "sku"},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1}", "product: missing"},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":[]}",
         "product: must be an object"},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{}}",
         "product.title: missing"},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{\"sku\":\"B\",\"title\":"
         "\"T\"}}",
         "product.sku: differs"},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{\"version\":2,\"title\":"
         "\"T\"}}",
         "product.version: differs"},
        /* a repeated member cannot smuggle in another SKU (found by the fuzzer) */
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{\"sku\":\"A\",\"title\":"
         "\"T\",\"sku\":\"B\"}}",
         "duplicate member \"product.sku\""},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{\"title\":\"T\","
         "\"brand\":\"X\",\"title\":\"U\"}}",
         "duplicate member \"product.title\""},
        {"{\"op\":\"delete\",\"sku\":\"A\",\"version\":1,\"sku\":\"B\"}",
         "duplicate member \"sku\""},
        {"{\"op\":\"delete\",\"sku\":\"A\",\"version\":1,\"op\":\"upsert\"}",
         "duplicate member \"op\""},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{\"op\":\"delete\","
         "\"title\":\"T\"}}",
         "product.op: not allowed"},
        {"{\"op\":\"upsert\",\"sku\":\"A\",\"version\":1,\"product\":{\"title\":\"T\","
         "\"attributes\":{\"price\":\"3\"}}}",
         "product.attributes.price"},
        {"{\"op\":\"stock\",\"sku\":\"A\",\"version\":1,\"warehouse\":\"HAN\"}", "quantity"},
        {"{\"op\":\"stock\",\"sku\":\"A\",\"version\":1,\"warehouse\":\"han\",\"quantity\":1}",
         "warehouse"},
        {"{\"op\":\"price\",\"sku\":\"A\",\"version\":1,\"currency\":\"VND\",\"amount\":1.5}",
         "amount: more than 0 decimals"},
        {"{\"op\":\"price\",\"sku\":\"A\",\"version\":1,\"currency\":\"USD\"}", "amount: missing"},
    };
    sift_arena *a = sift_arena_new(0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sift_kafka_event ev;
        sift_err e = {0};
        int rc = parse(a, cases[i].in, &ev, &e);
        if (rc != SIFT_EINVAL || !strstr(e.msg, cases[i].msg))
            fail_msg("%s: rc %d, message \"%s\", wanted \"%s\"", cases[i].in, rc, e.msg,
                     cases[i].msg);
    }
    /* a message over the line limit */
    static char big[SIFT_CATALOG_LINE_MAX + 2];
    memset(big, ' ', sizeof big);
    sift_kafka_event ev;
    sift_err e = {0};
    assert_int_equal(sift_kafka_event_parse(a, big, sizeof big, &ev, &e), SIFT_ETOOBIG);
    sift_arena_free(a);
}

static int apply(sift_store *s, sift_arena *a, const char *msg, int *applied)
{
    sift_kafka_event ev;
    sift_err e = {0};
    int rc = parse(a, msg, &ev, &e);
    if (rc)
        fail_msg("%s: %s", msg, e.msg);
    return sift_kafka_event_apply(s, &ev, applied, &e);
}

static void test_apply_versions(void **state)
{
    (void)state;
    sift_store *s = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(":memory:", NULL, &s, &e), 0);
    sift_arena *a = sift_arena_new(0);
    static const char *const events[] = {
        "{\"op\":\"upsert\",\"sku\":\"A-1\",\"version\":1,\"product\":{\"title\":\"Red shoe\"}}",
        "{\"op\":\"upsert\",\"sku\":\"A-1\",\"version\":3,\"product\":{\"title\":\"Blue shoe\"}}",
        "{\"op\":\"upsert\",\"sku\":\"A-1\",\"version\":2,\"product\":{\"title\":\"Old shoe\"}}",
        "{\"op\":\"stock\",\"sku\":\"A-1\",\"warehouse\":\"HAN\",\"quantity\":5,\"version\":2}",
        "{\"op\":\"stock\",\"sku\":\"A-1\",\"warehouse\":\"HAN\",\"quantity\":9,\"version\":1}",
        "{\"op\":\"price\",\"sku\":\"A-1\",\"currency\":\"VND\",\"amount\":3250000,\"version\":1}",
        "{\"op\":\"upsert\",\"sku\":\"B-1\",\"version\":1,\"product\":{\"title\":\"Cap\"}}",
        "{\"op\":\"delete\",\"sku\":\"B-1\",\"version\":2}",
        "{\"op\":\"upsert\",\"sku\":\"B-1\",\"version\":2,\"product\":{\"title\":\"Cap again\"}}",
    };
    static const int want[] = {1, 1, 0, 1, 0, 1, 1, 1, 0};
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof events / sizeof *events; i++) {
            int applied = -1;
            assert_int_equal(apply(s, a, events[i], &applied), 0);
            /* the second round is a replay: nothing applies */
            if (applied != (round ? 0 : want[i]))
                fail_msg("round %d event %zu: applied %d", round, i, applied);
        }
    }
    sift_product p;
    assert_int_equal(sift_store_get_product(s, "A-1", a, &p, &e), 0);
    assert_string_equal(p.title, "Blue shoe");
    assert_int_equal(p.version, 3);
    assert_int_equal(sift_store_get_product(s, "B-1", a, &p, &e), SIFT_ENOTFOUND);
    sift_stock *rows = NULL;
    size_t n = 0;
    assert_int_equal(sift_store_get_stock(s, "A-1", NULL, a, &rows, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].quantity, 5);
    sift_price pr;
    assert_int_equal(sift_store_get_price(s, "A-1", "VND", 0, a, &pr, &e), 0);
    assert_int_equal(pr.amount_minor, 3250000);
    sift_arena_free(a);
    sift_store_close(s);
}

static void test_consumer_opts(void **state)
{
    (void)state;
    sift_store *s = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(":memory:", NULL, &s, &e), 0);
    sift_kafka_consumer *c = NULL;
    sift_kafka_opts o = {.topic = "t", .store = s};
    assert_int_equal(sift_kafka_consumer_new(&o, &c, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "brokers"));
    o.brokers = "127.0.0.1:1";
    o.dlq = "t";
    assert_int_equal(sift_kafka_consumer_new(&o, &c, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "dead-letter topic must differ"));
    o.dlq = NULL;
    const char *const bad[] = {"no.such.property=1", NULL};
    o.conf = bad;
    assert_int_equal(sift_kafka_consumer_new(&o, &c, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "no.such.property"));
    const char *const good[] = {"session.timeout.ms=6000", NULL};
    o.conf = good;
    assert_int_equal(sift_kafka_consumer_new(&o, &c, &e), 0);
    /* nothing assigned yet: no lag rows */
    sift_kafka_lag lag[4];
    size_t n = 99;
    sift_kafka_consumer_lag(c, lag, 4, &n);
    assert_int_equal(n, 0);
    sift_kafka_consumer_free(c);
    sift_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ops),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_apply_versions),
        cmocka_unit_test(test_consumer_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
