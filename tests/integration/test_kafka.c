/* The Kafka consumer against librdkafka's in-process mock cluster (real TCP
 * on loopback ports the system picks), with kcat and the sift binary as
 * outside processes:
 *   - kcat can produce to the mock, and what it produced is applied;
 *   - 100,000 events replayed (a second group reading from the start) leave
 *     exactly the same store (every column of every table, row ids and
 *     timestamps included);
 *   - `sift ingest --kafka` killed with SIGKILL mid-stream and started again
 *     ends with the same catalog as one clean run: nothing lost, nothing
 *     doubled, and the restart resumes from the committed offsets;
 *   - the broker down and back mid-stream: the consumer waits, then finishes;
 *   - malformed events land in the DLQ with the reason, the rest is applied.
 * Groups are not under test, so consumers use assign (a group join costs
 * seconds on the mock). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sqlite3.h>

#include "sift/kafka.h"
#include "sift/store.h"

extern char **environ;

#define N_EVENTS 100000
#define N_SKUS 20000

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mc;
static const char *bootstraps;
static char dir[64];
static char ref_db[128]; /* the 100k events consumed once, cleanly */

/* Children started by spawn_ingest, killed at teardown if a failed test
 * left one running (it would retry the vanished brokers for ever). */
static pid_t children[16];
static int n_children;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Event i of the deterministic stream: upserts (versions out of order, so
 * some are stale), deletes, stock and prices, keyed by SKU so one SKU's
 * events keep their order in one partition. */
static int gen_event(int i, char *buf, size_t cap, char *key, size_t kcap)
{
    int sku = (int)(((long)i * 7919) % N_SKUS);
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

static rd_kafka_t *producer(void)
{
    char msg[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, msg, sizeof msg);
    rd_kafka_conf_set(conf, "linger.ms", "5", msg, sizeof msg);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof msg);
    assert_non_null(p);
    return p;
}

static void produce(rd_kafka_t *p, const char *topic, const char *key, const char *val, size_t n)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)val, n), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        assert_int_equal(e, RD_KAFKA_RESP_ERR__QUEUE_FULL);
        rd_kafka_poll(p, 10);
    }
}

static void produce_stream(const char *topic, int from, int to)
{
    rd_kafka_t *p = producer();
    char buf[1024], key[32];
    for (int i = from; i < to; i++) {
        int n = gen_event(i, buf, sizeof buf, key, sizeof key);
        produce(p, topic, key, buf, (size_t)n);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

static void topic(const char *name, int parts)
{
    assert_int_equal(rd_kafka_mock_topic_create(mc, name, parts, 1), 0);
}

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static int use_group; /* 1: consume() subscribes (group join) instead of assigning */

/* Consumes `t` to its end into the store at `path` (created if needed). */
static void consume(const char *path, const char *t, const char *group, size_t batch,
                    sift_kafka_stats *st)
{
    sift_store *s = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(path, NULL, &s, &e), 0);
    sift_kafka_opts o = {.brokers = bootstraps,
                         .topic = t,
                         .group = group,
                         .assign = !use_group,
                         .exit_at_end = 1,
                         .batch = batch,
                         .store = s};
    sift_kafka_consumer *c = NULL;
    assert_int_equal(sift_kafka_consumer_new(&o, &c, &e), 0);
    if (sift_kafka_consumer_run(c, &e))
        fail_msg("run: %s", e.msg);
    sift_kafka_consumer_stats(c, st);
    sift_kafka_consumer_free(c);
    sift_store_close(s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FNV-1a of every row of the catalog tables, rows sorted as text. `full`:
 * every column; otherwise without row ids and apply times (which depend on
 * when and in what order partitions were read, not on what was applied). */
static uint64_t dump_hash(const char *path, int full, long *rows)
{
    static const char *const q_full[] = {"SELECT * FROM products", "SELECT * FROM chunks",
                                         "SELECT * FROM inventory", "SELECT * FROM prices",
                                         "SELECT * FROM warehouses"};
    static const char *const q_content[] = {
        ("SELECT sku,parent_id,title,brand,category,attrs,description,version,deleted FROM "
         "products"),
        "SELECT sku,title,brand,category,attrs,description,text FROM chunks",
        "SELECT * FROM inventory", "SELECT * FROM prices", "SELECT * FROM warehouses"};
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    uint64_t h = 1469598103934665603ULL;
    *rows = 0;
    for (int t = 0; t < 5; t++) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, full ? q_full[t] : q_content[t], -1, &st, NULL),
                         SQLITE_OK);
        size_t n = 0, cap = 1024;
        char **lines = malloc(cap * sizeof *lines);
        while (sqlite3_step(st) == SQLITE_ROW) {
            size_t len = 0;
            char *line = NULL;
            FILE *mem = open_memstream(&line, &len);
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                fprintf(mem, "%s\x1f", v ? (const char *)v : "\\N");
            }
            fclose(mem);
            if (n == cap)
                lines = realloc(lines, (cap *= 2) * sizeof *lines);
            lines[n++] = line;
        }
        sqlite3_finalize(st);
        qsort(lines, n, sizeof *lines, cmp_str);
        for (size_t i = 0; i < n; i++) {
            for (const char *p = lines[i]; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ULL;
            h = (h ^ '\n') * 1099511628211ULL;
            free(lines[i]);
        }
        h = (h ^ (uint64_t)t) * 1099511628211ULL;
        free(lines);
        *rows += (long)n;
    }
    /* the full-text index agrees with its content table */
    char *err = NULL;
    sqlite3_close(db);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    int rc = sqlite3_exec(db, "INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check')", NULL,
                          NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("fts integrity-check: %s", err ? err : "?");
    sqlite3_close(db);
    return h;
}

static int setup_all(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/sift-test-kafka-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char msg[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", msg, sizeof msg);
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof msg);
    if (!mock_rk)
        return -1;
    mc = rd_kafka_mock_cluster_new(mock_rk, 1);
    if (!mc)
        return -1;
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    for (int i = 0; i < n_children; i++)
        if (waitpid(children[i], NULL, WNOHANG) == 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mock_rk);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* kcat, an outside process, produces to the mock; the consumer applies it. */
static void test_kcat_producer(void **state)
{
    (void)state;
    if (system("command -v kcat >/dev/null 2>&1") != 0)
        skip();
    topic("kc", 1);
    char in[160], cmd[512], db[160];
    path_in(in, sizeof in, "kcat.jsonl");
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    fputs("K-1|{\"op\":\"upsert\",\"sku\":\"K-1\",\"version\":1,\"product\":{\"title\":\"Red "
          "cap\"}}\n"
          "K-1|{\"op\":\"stock\",\"sku\":\"K-1\",\"warehouse\":\"HAN\",\"quantity\":4,"
          "\"version\":1}\n"
          "K-1|{\"op\":\"price\",\"sku\":\"K-1\",\"currency\":\"USD\",\"amount\":9.5,"
          "\"version\":1}\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "kcat -P -b %s -t kc -K '|' -l %s", bootstraps, in);
    assert_int_equal(system(cmd), 0);
    path_in(db, sizeof db, "kcat.db");
    sift_kafka_stats st;
    consume(db, "kc", "g-kcat", 100, &st);
    assert_int_equal(st.events, 3);
    assert_int_equal(st.applied, 3);
    assert_int_equal(st.dlq, 0);
    /* the same through a group join (subscribe and the rebalance callback);
     * then the group's committed offsets leave nothing to read (checked
     * without a second join: on the mock, joining the group again right
     * after the first member closed took 44 s, about the 45 s session
     * timeout) */
    use_group = 1;
    path_in(db, sizeof db, "kcat-group.db");
    consume(db, "kc", "g-kcat-group", 100, &st);
    use_group = 0;
    assert_int_equal(st.events, 3);
    assert_int_equal(st.applied, 3);
    consume(db, "kc", "g-kcat-group", 100, &st);
    assert_int_equal(st.events, 0);
}

/* 100,000 events, consumed, then read again from the start by another
 * group into the same store: nothing changes. */
static void test_replay_100k(void **state)
{
    (void)state;
    topic("catalog", 3);
    double t0 = now_s();
    produce_stream("catalog", 0, N_EVENTS);
    double t1 = now_s();
    path_in(ref_db, sizeof ref_db, "ref.db");
    sift_kafka_stats a, b;
    consume(ref_db, "catalog", "g-first", 1000, &a);
    double t2 = now_s();
    assert_int_equal(a.events, N_EVENTS);
    assert_int_equal(a.dlq, 0);
    assert_int_equal(a.applied + a.stale, N_EVENTS);
    assert_true(a.applied > N_EVENTS / 4 && a.stale > 0 && a.deleted > 0);
    long rows1 = 0, rows2 = 0;
    uint64_t h1 = dump_hash(ref_db, 1, &rows1);
    consume(ref_db, "catalog", "g-replay", 1000, &b);
    assert_int_equal(b.events, N_EVENTS);
    assert_int_equal(b.applied, 0);
    assert_int_equal(b.stale, N_EVENTS);
    /* product events are counted read, applied or not (40% upserts, 10% deletes) */
    assert_int_equal(a.product_events, N_EVENTS / 2);
    assert_int_equal(b.product_events, N_EVENTS / 2);
    assert_int_equal(b.products, 0);
    uint64_t h2 = dump_hash(ref_db, 1, &rows2);
    assert_int_equal(rows1, rows2);
    assert_true(h1 == h2);
    /* the first group's offsets were committed: it has nothing left */
    sift_kafka_stats c;
    consume(ref_db, "catalog", "g-first", 1000, &c);
    assert_int_equal(c.events, 0);
    fprintf(stderr, "# replay: produced %d events in %.2fs, consumed in %.2fs; %ld rows\n",
            N_EVENTS, t1 - t0, t2 - t1, rows1);
}

static pid_t spawn_ingest(const char *db, const char *group, int exit_at_end, const char *log)
{
    const char *bd = getenv("SIFT_BUILD_DIR");
    char bin[512];
    snprintf(bin, sizeof bin, "%s/sift", bd ? bd : "build/release");
    char *argv[] = {bin,        "ingest",
                    "--kafka",  (char *)bootstraps,
                    "--topic",  "catalog",
                    "--group",  (char *)group,
                    "--db",     (char *)db,
                    "--assign", "--batch",
                    "500",      exit_at_end ? "--exit-at-end" : NULL,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        fail_msg("spawn %s: %s", bin, strerror(rc));
    if (n_children < 16)
        children[n_children++] = pid;
    return pid;
}

static long count_rows(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    long n = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 2000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return n;
}

/* The event count of the summary line `sift ingest --kafka` wrote to `log`. */
static long summary_events(const char *log)
{
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[1024];
    long events = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "kafka catalog: ");
        if (p && strstr(line, " events in "))
            events = strtol(p + 15, NULL, 10);
    }
    fclose(f);
    return events;
}

/* SIGKILL mid-stream, then a restart to the end: the same catalog as the
 * clean run, and the restart did not start over. */
static void test_sigkill_restart(void **state)
{
    (void)state;
    if (!ref_db[0])
        skip();
    char db[160], log1[160], log2[160];
    path_in(db, sizeof db, "killed.db");
    path_in(log1, sizeof log1, "kill1.log");
    path_in(log2, sizeof log2, "kill2.log");
    pid_t pid = spawn_ingest(db, "g-kill", 0, log1);
    /* wait until some batches are durable but the stream is far from done */
    double until = now_s() + 60;
    long rows = 0;
    while (now_s() < until) {
        rows = count_rows(db, "SELECT count(*) FROM products");
        if (rows > 2000)
            break;
        usleep(2000);
    }
    assert_true(rows > 0);
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pid = spawn_ingest(db, "g-kill", 1, log2);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "cat %s >&2", log2);
        (void)system(cmd);
        fail_msg("restarted sift ingest did not exit 0");
    }
    /* the restart read fewer events than the whole stream */
    long events = summary_events(log2);
    assert_true(events > 0 && events < N_EVENTS);
    long r1 = 0, r2 = 0;
    uint64_t h1 = dump_hash(ref_db, 0, &r1), h2 = dump_hash(db, 0, &r2);
    assert_int_equal(r1, r2);
    assert_true(h1 == h2);
    fprintf(stderr, "# sigkill: killed at %ld products; the restart read %ld events\n", rows,
            events);
}

/* SIGTERM mid-stream: exit 0 after committing what is durable, so a
 * restart reads exactly the rest (no event read twice, none skipped). */
static void test_sigterm_commits(void **state)
{
    (void)state;
    if (!ref_db[0])
        skip();
    char db[160], log1[160], log2[160];
    path_in(db, sizeof db, "term.db");
    path_in(log1, sizeof log1, "term1.log");
    path_in(log2, sizeof log2, "term2.log");
    pid_t pid = spawn_ingest(db, "g-term", 0, log1);
    double until = now_s() + 60;
    while (now_s() < until && count_rows(db, "SELECT count(*) FROM products") <= 2000)
        usleep(2000);
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    long first = summary_events(log1), second;
    assert_true(first > 0 && first < N_EVENTS);
    pid = spawn_ingest(db, "g-term", 1, log2);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    second = summary_events(log2);
    assert_int_equal(first + second, N_EVENTS);
    long r1 = 0, r2 = 0;
    assert_true(dump_hash(ref_db, 0, &r1) == dump_hash(db, 0, &r2));
    assert_int_equal(r1, r2);
    fprintf(stderr, "# sigterm: %ld events before the stop, %ld after the restart\n", first,
            second);
}

struct bg {
    sift_kafka_consumer *c;
    int rc;
    sift_err e;
};

static void *bg_run(void *ud)
{
    struct bg *b = ud;
    b->rc = sift_kafka_consumer_run(b->c, &b->e);
    return NULL;
}

/* The broker goes down mid-stream and comes back 3 s later: the consumer
 * logs, waits, and finishes with every event applied exactly once. */
static void test_broker_down_and_back(void **state)
{
    (void)state;
    topic("bounce", 2);
    enum { N = 30000 };
    produce_stream("bounce", 0, N);
    char db[160];
    path_in(db, sizeof db, "bounce.db");
    sift_store *s = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(db, NULL, &s, &e), 0);
    sift_kafka_opts o = {.brokers = bootstraps,
                         .topic = "bounce",
                         .group = "g-bounce",
                         .assign = 1,
                         .exit_at_end = 1,
                         .batch = 200,
                         .store = s};
    struct bg b = {0};
    assert_int_equal(sift_kafka_consumer_new(&o, &b.c, &e), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_run, &b), 0);
    sift_kafka_stats st;
    double until = now_s() + 30;
    do {
        usleep(1000);
        sift_kafka_consumer_stats(b.c, &st);
    } while (st.events == 0 && now_s() < until);
    assert_int_equal(rd_kafka_mock_broker_set_down(mc, 1), 0);
    sift_kafka_stats mid;
    sift_kafka_consumer_stats(b.c, &mid);
    sleep(3);
    sift_kafka_stats down;
    sift_kafka_consumer_stats(b.c, &down);
    assert_int_equal(rd_kafka_mock_broker_set_up(mc, 1), 0);
    pthread_join(th, NULL);
    if (b.rc)
        fail_msg("run: %s", b.e.msg);
    sift_kafka_consumer_stats(b.c, &st);
    /* at the end every partition's lag is 0 */
    sift_kafka_lag lag[4];
    size_t nl = 0;
    sift_kafka_consumer_lag(b.c, lag, 4, &nl);
    assert_int_equal(nl, 2);
    for (size_t i = 0; i < nl; i++) {
        assert_int_equal(lag[i].lag, 0);
        assert_true(lag[i].next > 0 && lag[i].next == lag[i].high);
    }
    assert_int_equal(st.lag, 0);
    sift_kafka_consumer_free(b.c);
    sift_store_close(s);
    /* it was mid-stream when the broker went, with events still to read */
    assert_true(mid.lag > 0);
    assert_true(mid.events < N);
    assert_int_equal(st.events, N);
    assert_int_equal(st.applied + st.stale, N);
    fprintf(stderr, "# bounce: %llu events before the broker went down, %llu while down\n",
            (unsigned long long)mid.events, (unsigned long long)down.events);
    /* what was applied is committed: the group has nothing left */
    sift_kafka_stats again;
    consume(db, "bounce", "g-bounce", 200, &again);
    assert_int_equal(again.events, 0);
}

/* A store that refuses writes (opened read-only): every batch rolls back and
 * is retried, nothing is committed to Kafka; after stop, the same group on a
 * writable store still gets every event. */
static void test_store_failure_commits_nothing(void **state)
{
    (void)state;
    topic("stuck", 1);
    produce_stream("stuck", 0, 500);
    char db[160];
    path_in(db, sizeof db, "stuck.db");
    sift_store *s = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(db, NULL, &s, &e), 0); /* create it */
    sift_store_close(s);
    sift_store_sqlite_opts ro = {.readonly = 1};
    assert_int_equal(sift_store_sqlite_open(db, &ro, &s, &e), 0);
    sift_kafka_opts o = {.brokers = bootstraps,
                         .topic = "stuck",
                         .group = "g-stuck",
                         .assign = 1,
                         .batch = 100,
                         .store = s};
    struct bg b = {0};
    assert_int_equal(sift_kafka_consumer_new(&o, &b.c, &e), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_run, &b), 0);
    sift_kafka_stats st;
    double until = now_s() + 20;
    do {
        usleep(10000);
        sift_kafka_consumer_stats(b.c, &st);
    } while (st.retries < 2 && now_s() < until);
    sift_kafka_consumer_stop(b.c);
    pthread_join(th, NULL);
    assert_true(b.rc < 0); /* the store error outlived the stop */
    sift_kafka_consumer_stats(b.c, &st);
    assert_true(st.retries >= 2);
    assert_int_equal(st.events, 0);
    assert_int_equal(st.commits, 0);
    sift_kafka_consumer_free(b.c);
    sift_store_close(s);
    consume(db, "stuck", "g-stuck", 100, &st);
    assert_int_equal(st.events, 500);
}

/* Reads every message of `t` (from the start) into arrays of values and
 * sift-error headers. */
static int read_topic(const char *t, char vals[][512], char reasons[][256], int max)
{
    char msg[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, msg, sizeof msg);
    rd_kafka_conf_set(conf, "group.id", "reader", msg, sizeof msg);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", msg, sizeof msg);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, msg, sizeof msg);
    assert_non_null(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *th = rd_kafka_topic_new(rk, t, NULL);
    assert_int_equal(rd_kafka_metadata(rk, 0, th, &md, 10000), 0);
    int parts = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, t, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(th);
    assert_int_equal(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0, eofs = 0;
    double until = now_s() + 20;
    while (eofs < parts && now_s() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else if (!m->err && n < max) {
            snprintf(vals[n], 512, "%.*s", (int)m->len, (const char *)m->payload);
            rd_kafka_headers_t *hs = NULL;
            const void *v = NULL;
            size_t vn = 0;
            reasons[n][0] = 0;
            if (rd_kafka_message_headers(m, &hs) == 0 &&
                rd_kafka_header_get_last(hs, "sift-error", &v, &vn) == 0)
                snprintf(reasons[n], 256, "%.*s", (int)vn, (const char *)v);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static void test_dlq(void **state)
{
    (void)state;
    topic("mixed", 2);
    static const struct {
        const char *val, *reason;
    } bad[] = {
        {"{\"op\":\"upsert\",\"sku\":", "invalid JSON"},
        {"{\"op\":\"merge\",\"sku\":\"M-1\",\"version\":1}", "op: must be one of"},
        {"{\"op\":\"stock\",\"sku\":\"M-1\",\"warehouse\":\"HAN\",\"quantity\":1}",
         "version: missing"},
        {"{\"op\":\"upsert\",\"sku\":\"M-2\",\"version\":1,\"product\":{\"title\":\"x\","
         "\"attributes\":{\"price\":\"9\"}}}",
         "product.attributes.price"},
        {"", "empty message"},
    };
    enum { GOOD = 50 };
    rd_kafka_t *p = producer();
    char buf[512], key[32];
    for (int i = 0; i < GOOD; i++) {
        snprintf(key, sizeof key, "M-%d", 100 + i);
        int n = snprintf(buf, sizeof buf,
                         "{\"op\":\"upsert\",\"sku\":\"%s\",\"version\":1,\"product\":{\"title\":"
                         "\"Mixed %d\"}}",
                         key, i);
        produce(p, "mixed", key, buf, (size_t)n);
        if (i % 10 == 0)
            produce(p, "mixed", "bad", bad[i / 10].val, strlen(bad[i / 10].val));
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    char db[160];
    path_in(db, sizeof db, "mixed.db");
    sift_kafka_stats st;
    consume(db, "mixed", "g-mixed", 7, &st);
    assert_int_equal(st.events, GOOD + 5);
    assert_int_equal(st.applied, GOOD);
    assert_int_equal(st.dlq, 5);
    assert_int_equal(count_rows(db, "SELECT count(*) FROM products"), GOOD);
    static char vals[16][512], reasons[16][256];
    int n = read_topic("mixed.dlq", vals, reasons, 16);
    assert_int_equal(n, 5);
    for (int b = 0; b < 5; b++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(vals[i], bad[b].val) && strstr(reasons[i], bad[b].reason))
                found = 1;
        if (!found)
            fail_msg("no DLQ message for %s with reason %s", bad[b].val, bad[b].reason);
    }
    /* replayed by another group: the same five go to the DLQ again (at least
     * once), nothing else changes */
    consume(db, "mixed", "g-mixed-2", 7, &st);
    assert_int_equal(st.applied, 0);
    assert_int_equal(st.dlq, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kcat_producer),
        cmocka_unit_test(test_dlq),
        cmocka_unit_test(test_broker_down_and_back),
        cmocka_unit_test(test_replay_100k),
        cmocka_unit_test(test_sigkill_restart),
        cmocka_unit_test(test_sigterm_commits),
        cmocka_unit_test(test_store_failure_commits_nothing),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
