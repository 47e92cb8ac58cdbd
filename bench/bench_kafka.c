/* Kafka catalog ingest, end to end: events produced first to librdkafka's
 * in-process mock cluster (loopback TCP), then timed from creating the
 * consumer until every partition is read to its end: fetch, parse, apply in
 * SQLite transactions (WAL, FTS5), DLQ check and offset commit per batch.
 *
 * Streams (3 partitions, keyed by SKU):
 *   upserts: 100,000 distinct products (every event writes a product and its
 *            chunk and updates the full-text index);
 *   mixed:   100,000 events over 20,000 SKUs: 40% upserts (versions out of
 *            order, some stale), 10% deletes, 30% stock, 20% prices;
 *   replay:  the mixed stream again into the same store (every event stale).
 * Each figure is the median of 3 runs into fresh stores and fresh groups. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "sift/kafka.h"
#include "sift/log.h"
#include "sift/store.h"

#define N 100000
#define SKUS 20000
#define REPS 3

static const char *bootstraps;

static int gen_mixed(int i, char *buf, size_t cap, char *key, size_t kcap)
{
    int sku = (int)(((long)i * 7919) % SKUS);
    snprintf(key, kcap, "P-%05d", sku);
    int k = i % 10;
    if (k <= 3)
        return snprintf(buf, cap,
                        "{\"op\":\"upsert\",\"sku\":\"%s\",\"version\":%d,\"product\":{\"title\":"
                        "\"Runner %d model %d\",\"brand\":\"%s\",\"category\":[\"Footwear\","
                        "\"Running\"],\"attributes\":{\"size\":\"%d\",\"colour\":\"%s\"},"
                        "\"description\":\"Shoe number %d.\"}}",
                        key, (i * 31) % 50 + 1, sku, i, (i & 1) ? "Nike" : "Adidas", 36 + i % 10,
                        (i & 2) ? "black" : "white", i);
    if (k == 4)
        return snprintf(buf, cap, "{\"op\":\"delete\",\"sku\":\"%s\",\"version\":%d}", key,
                        (i * 17) % 50 + 1);
    if (k <= 7)
        return snprintf(buf, cap,
                        "{\"op\":\"stock\",\"sku\":\"%s\",\"warehouse\":\"%s\",\"quantity\":%d,"
                        "\"version\":%d,\"updated_at\":%d}",
                        key, (const char *[]){"HAN", "DAD", "SGN"}[i % 3], i % 100,
                        (i * 13) % 40 + 1, 1767225600 + i);
    return snprintf(buf, cap,
                    "{\"op\":\"price\",\"sku\":\"%s\",\"currency\":\"%s\",\"amount\":%d,"
                    "\"version\":%d}",
                    key, (i & 1) ? "USD" : "VND", (i & 1) ? 100 + i % 50 : 1000000 + i,
                    (i * 11) % 30 + 1);
}

static int gen_upsert(int i, char *buf, size_t cap, char *key, size_t kcap)
{
    snprintf(key, kcap, "U-%06d", i);
    return snprintf(buf, cap,
                    "{\"op\":\"upsert\",\"sku\":\"%s\",\"version\":1,\"product\":{\"title\":"
                    "\"Trail runner %d\",\"brand\":\"%s\",\"category\":[\"Footwear\",\"Trail\"],"
                    "\"attributes\":{\"size\":\"%d\",\"colour\":\"%s\",\"gender\":\"%s\"},"
                    "\"description\":\"A grippy trail shoe with a rock plate, number %d.\"}}",
                    key, i, (const char *[]){"Nike", "Adidas", "Asics", "Hoka"}[i % 4], 36 + i % 10,
                    (i & 1) ? "black" : "blue", (i & 2) ? "men" : "women", i);
}

static long failed;
static char first_fail[256];

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err && failed++ == 0)
        snprintf(first_fail, sizeof first_fail, "%s", rd_kafka_err2str(m->err));
}

static void produce(const char *topic, int (*gen)(int, char *, size_t, char *, size_t))
{
    char msg[256], buf[1024], key[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, msg, sizeof msg);
    rd_kafka_conf_set(conf, "linger.ms", "5", msg, sizeof msg);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof msg);
    if (!p) {
        fprintf(stderr, "bench_kafka: producer: %s\n", msg);
        exit(1);
    }
    for (int i = 0; i < N; i++) {
        int n = gen(i, buf, sizeof buf, key, sizeof key);
        while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, (size_t)n),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
    }
    if (rd_kafka_flush(p, 60000)) {
        fprintf(stderr, "bench_kafka: produce to %s did not finish\n", topic);
        exit(1);
    }
    /* the mock keeps a bounded log per partition and drops its oldest
     * segments beyond it (measured: 100k events of ~330 bytes over 3
     * partitions kept only ~50k), so check that everything is still there */
    long total = 0;
    for (int part = 0; part < 8; part++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(p, topic, part, &lo, &hi, 10000);
        total += (long)(hi - lo);
    }
    if (total != N || failed) {
        fprintf(stderr, "bench_kafka: %s holds %ld of %d events (%ld not delivered: %s)\n", topic,
                total, N, failed, first_fail);
        exit(1);
    }
    rd_kafka_destroy(p);
}

/* Consumes `topic` to its end into `db`; returns the seconds taken and the
 * CPU seconds in *cpu. */
static double consume(const char *db, const char *topic, const char *group, size_t batch,
                      double *cpu, sift_kafka_stats *st)
{
    sift_store *s = NULL;
    sift_err e = {0};
    if (sift_store_sqlite_open(db, NULL, &s, &e)) {
        fprintf(stderr, "bench_kafka: %s\n", e.msg);
        exit(1);
    }
    sift_kafka_opts o = {.brokers = bootstraps,
                         .topic = topic,
                         .group = group,
                         .assign = 1,
                         .exit_at_end = 1,
                         .batch = batch,
                         .store = s};
    sift_kafka_consumer *c = NULL;
    double c0 = bench_cpu_s(), t0 = bench_now_s();
    if (sift_kafka_consumer_new(&o, &c, &e) || sift_kafka_consumer_run(c, &e)) {
        fprintf(stderr, "bench_kafka: %s\n", e.msg);
        exit(1);
    }
    sift_kafka_consumer_stats(c, st);
    sift_kafka_consumer_free(c);
    double t = bench_now_s() - t0;
    *cpu = bench_cpu_s() - c0;
    sift_store_close(s);
    if (st->events != N) {
        fprintf(stderr, "bench_kafka: %s: %llu events consumed, expected %d\n", topic,
                (unsigned long long)st->events, N);
        exit(1);
    }
    return t;
}

static void rm_db(const char *path)
{
    char p[300];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

int main(void)
{
    sift_log_set_level(SIFT_LOG_ERROR);
    char dir[] = "/tmp/sift-bench-kafka-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char msg[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", msg, sizeof msg);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof msg);
    rd_kafka_mock_cluster_t *mc = rk ? rd_kafka_mock_cluster_new(rk, 1) : NULL;
    if (!mc) {
        fprintf(stderr, "bench_kafka: cannot start the mock cluster\n");
        return 1;
    }
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, "upserts", 8, 1);
    rd_kafka_mock_topic_create(mc, "mixed", 3, 1);
    printf("bench_kafka: producing 2 x %d events to the mock cluster at %s\n", N, bootstraps);
    fflush(stdout);
    double tp = bench_now_s();
    produce("upserts", gen_upsert);
    produce("mixed", gen_mixed);
    double produce_s = bench_now_s() - tp;

    struct bench_report r = {.name = "kafka"};
    double up[REPS], up_cpu[REPS], mix[REPS], mix_cpu[REPS], rep[REPS], mix100[REPS];
    char db[300], group[64];
    sift_kafka_stats st;
    for (int i = 0; i < REPS; i++) {
        double cpu;
        snprintf(db, sizeof db, "%s/upserts.db", dir);
        rm_db(db);
        snprintf(group, sizeof group, "u%d", i);
        double t = consume(db, "upserts", group, 1000, &cpu, &st);
        up[i] = N / t;
        up_cpu[i] = N / cpu;

        snprintf(db, sizeof db, "%s/mixed.db", dir);
        rm_db(db);
        snprintf(group, sizeof group, "m%d", i);
        t = consume(db, "mixed", group, 1000, &cpu, &st);
        mix[i] = N / t;
        mix_cpu[i] = N / cpu;
        snprintf(group, sizeof group, "r%d", i);
        t = consume(db, "mixed", group, 1000, &cpu, &st);
        rep[i] = N / t;
        if (st.applied != 0) {
            fprintf(stderr, "bench_kafka: the replay applied %llu events\n",
                    (unsigned long long)st.applied);
            return 1;
        }

        rm_db(db);
        snprintf(group, sizeof group, "s%d", i);
        t = consume(db, "mixed", group, 100, &cpu, &st);
        mix100[i] = N / t;
    }
    rm_db(db);
    snprintf(db, sizeof db, "%s/upserts.db", dir);
    rm_db(db);
    rmdir(dir);
    bench_add(&r, "upserts, 100k distinct products, batch 1000", bench_median(up, REPS),
              "events/s");
    bench_add(&r, "upserts per CPU second (consumer+mock broker)", bench_median(up_cpu, REPS),
              "events/cpu-s");
    bench_add(&r, "mixed stream 100k, batch 1000", bench_median(mix, REPS), "events/s");
    bench_add(&r, "mixed per CPU second (consumer+mock broker)", bench_median(mix_cpu, REPS),
              "events/cpu-s");
    bench_add(&r, "mixed stream replayed (all stale), batch 1000", bench_median(rep, REPS),
              "events/s");
    bench_add(&r, "mixed stream 100k, batch 100", bench_median(mix100, REPS), "events/s");
    bench_add(&r, "producing 200k events to the mock (setup, not timed above)", produce_s, "s");
    bench_write(&r);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
