/* The asynchronous PostgreSQL pool against a real, throwaway cluster
 * (tests/support/pg_cluster.sh): queries and prepared statements, many
 * concurrent queries through two connections, the queue's bound and timeout,
 * server errors, cancellation by ctx (a pg_sleep(10) stopped at once, the
 * pool still usable), a failed connect, and the server restarted under load.
 * Exits 77 (skip) when the PostgreSQL server binaries are absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "pgtest.h"
#include "sift/arena.h"
#include "sift/ctx.h"
#include "sift/pgpool.h"

static pgtest_cluster cluster;

struct res {
    int called;
    int code;
    char msg[SIFT_ERR_MSG_MAX];
    char value[64];
    uint64_t at; /* uv_now when the callback ran */
    uv_loop_t *loop;
};

static void on_res(void *data, const PGresult *r, const sift_err *err)
{
    struct res *x = data;
    x->called++;
    x->at = uv_now(x->loop);
    if (err) {
        x->code = err->code;
        snprintf(x->msg, sizeof x->msg, "%s", err->msg);
        return;
    }
    x->code = 0;
    if (PQntuples(r) > 0 && PQnfields(r) > 0)
        snprintf(x->value, sizeof x->value, "%s", PQgetvalue(r, 0, 0));
}

/* Runs the loop until `*count` reaches `want` or `ms` pass. */
static void run_until(uv_loop_t *loop, const int *count, int want, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (*count < want && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
}

struct fixture {
    uv_loop_t loop;
    sift_ctx *root;
    sift_pgpool *pool;
};

static void fx_open(struct fixture *f, sift_pgpool_opts o)
{
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->root = sift_ctx_new_root(&f->loop);
    assert_non_null(f->root);
    if (!o.conninfo)
        o.conninfo = cluster.url;
    sift_err err = {0};
    assert_int_equal(sift_pgpool_new(&f->loop, &o, &f->pool, &err), 0);
}

static void fx_close(struct fixture *f)
{
    sift_pgpool_close(f->pool);
    sift_ctx_release(f->root);
    while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) {
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_query_and_prepared(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.size = 1});
    sift_err err = {0};
    int add = sift_pgpool_prepare(f.pool, "SELECT $1::int + $2::int", 2, &err);
    int nul = sift_pgpool_prepare(f.pool, "SELECT coalesce($1, 'null')", 1, &err);
    assert_true(add >= 0 && nul >= 0);
    /* The same statement twice on one connection: prepared once, run twice. */
    struct res a = {.loop = &f.loop}, b = {.loop = &f.loop}, c = {.loop = &f.loop};
    const char *v1[] = {"40", "2"}, *v2[] = {"1", "1"}, *v3[] = {NULL};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, add, 2, v1, on_res, &a, &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, add, 2, v2, on_res, &b, &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, nul, 1, v3, on_res, &c, &err), 0);
    assert_int_equal(a.called + b.called + c.called, 0); /* never from inside the call */
    run_until(&f.loop, &c.called, 1, 5000);
    assert_int_equal(a.called, 1);
    assert_int_equal(a.code, 0);
    assert_string_equal(a.value, "42");
    assert_string_equal(b.value, "2");
    assert_string_equal(c.value, "null");
    /* Wrong parameter count and unknown statement: refused, no callback. */
    assert_int_equal(sift_pgpool_query(f.pool, f.root, add, 1, v1, on_res, &a, &err), SIFT_EINVAL);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, 99, 0, NULL, on_res, &a, &err), SIFT_EINVAL);
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_int_equal(st.connects, 1);
    /* An idle connection does not keep the loop alive: uv_run(DEFAULT)
     * returns once the work is done (sift ask relies on it). */
    assert_int_equal(st.conns_ready, 1);
    assert_false(uv_loop_alive(&f.loop));
    fx_close(&f);
}

static void test_server_error(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.size = 1});
    sift_err err = {0};
    int bad = sift_pgpool_prepare(f.pool, "SELECT * FROM no_such_table", 0, &err);
    int div = sift_pgpool_prepare(f.pool, "SELECT 1 / $1::int", 1, &err);
    struct res a = {.loop = &f.loop}, b = {.loop = &f.loop}, c = {.loop = &f.loop},
               d = {.loop = &f.loop};
    const char *zero[] = {"0"}, *one[] = {"1"};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, bad, 0, NULL, on_res, &a, &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, div, 1, zero, on_res, &b, &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, div, 1, one, on_res, &c, &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, bad, 0, NULL, on_res, &d, &err), 0);
    run_until(&f.loop, &d.called, 1, 5000);
    assert_int_equal(a.code, SIFT_EIO);
    assert_non_null(strstr(a.msg, "no_such_table"));
    assert_non_null(strstr(a.msg, "42P01"));
    assert_int_equal(b.code, SIFT_EIO);
    assert_non_null(strstr(b.msg, "division by zero"));
    /* Each query has its own sync point: an error does not abort the next. */
    assert_int_equal(c.code, 0);
    assert_string_equal(c.value, "1");
    assert_int_equal(d.code, SIFT_EIO);
    assert_non_null(strstr(d.msg, "no_such_table"));
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_int_equal(st.conns_lost, 0);
    fx_close(&f);
}

#define MANY 1000

static void test_many_queue_on_two_connections(void **state)
{
    (void)state;
    for (size_t depth = 1; depth <= 8; depth += 7) {
        struct fixture f;
        fx_open(&f, (sift_pgpool_opts){.size = 2, .pipeline_depth = depth});
        sift_err err = {0};
        int echo = sift_pgpool_prepare(f.pool, "SELECT $1::int * 2", 1, &err);
        static struct res r[MANY];
        memset(r, 0, sizeof r);
        int done = 0;
        char vals[MANY][16];
        for (int i = 0; i < MANY; i++) {
            r[i].loop = &f.loop;
            snprintf(vals[i], sizeof vals[i], "%d", i);
            const char *v[] = {vals[i]};
            assert_int_equal(sift_pgpool_query(f.pool, f.root, echo, 1, v, on_res, &r[i], &err), 0);
        }
        sift_pgpool_stats st;
        sift_pgpool_get_stats(f.pool, &st);
        assert_int_equal(st.queued, MANY); /* nothing refused: all wait their turn */
        size_t max_conns = 0;
        uint64_t end = uv_now(&f.loop) + 20000;
        while (done < MANY && uv_now(&f.loop) < end) {
            uv_run(&f.loop, UV_RUN_ONCE);
            sift_pgpool_get_stats(f.pool, &st);
            if (st.conns > max_conns)
                max_conns = st.conns;
            done = 0;
            for (int i = 0; i < MANY; i++)
                done += r[i].called;
        }
        assert_int_equal(done, MANY);
        for (int i = 0; i < MANY; i++) {
            char want[16];
            snprintf(want, sizeof want, "%d", i * 2);
            assert_int_equal(r[i].called, 1);
            assert_int_equal(r[i].code, 0);
            assert_string_equal(r[i].value, want);
        }
        assert_true(max_conns <= 2);
        /* Both connections were started when the queries queued; on a busy
         * machine the first can drain the queue while the second is still
         * in its handshake, so wait for the handshake before counting. */
        while (st.conns_ready < st.conns && uv_now(&f.loop) < end) {
            uv_run(&f.loop, UV_RUN_ONCE);
            sift_pgpool_get_stats(f.pool, &st);
        }
        assert_int_equal(st.connects, 2);
        fx_close(&f);
    }
}

static void test_queue_bound_and_timeout(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){
                    .size = 1, .pipeline_depth = 1, .queue_max = 3, .queue_timeout_ms = 300});
    sift_err err = {0};
    int sleep = sift_pgpool_prepare(f.pool, "SELECT pg_sleep($1::float8)::text", 1, &err);
    struct res r[4];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 4; i++)
        r[i].loop = &f.loop;
    const char *long_v[] = {"1"}, *short_v[] = {"0"};
    /* All three wait at first (the connection is being opened); then the
     * first runs for 1 s and the two behind it time out in the queue. */
    assert_int_equal(sift_pgpool_query(f.pool, f.root, sleep, 1, long_v, on_res, &r[0], &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, sleep, 1, short_v, on_res, &r[1], &err), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, sleep, 1, short_v, on_res, &r[2], &err), 0);
    sift_err_clear(&err);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, sleep, 1, short_v, on_res, &r[3], &err),
                     SIFT_EBUSY);
    assert_non_null(strstr(err.msg, "3 queries waiting"));
    uint64_t t0 = uv_now(&f.loop);
    run_until(&f.loop, &r[0].called, 1, 5000);
    assert_int_equal(r[0].code, 0);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].code, SIFT_ETIMEDOUT);
        assert_non_null(strstr(r[i].msg, "no connection free within 300 ms"));
        assert_true(r[i].at - t0 >= 250 && r[i].at - t0 < 900);
    }
    assert_int_equal(r[3].called, 0);
    /* The pool is fine afterwards. */
    struct res ok = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, sleep, 1, short_v, on_res, &ok, &err), 0);
    run_until(&f.loop, &ok.called, 1, 5000);
    assert_int_equal(ok.code, 0);
    fx_close(&f);
}

static void test_cancel_by_ctx(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.size = 1, .pipeline_depth = 4});
    sift_err err = {0};
    int sleep = sift_pgpool_prepare(f.pool, "SELECT pg_sleep($1::float8)::text", 1, &err);
    int one = sift_pgpool_prepare(f.pool, "SELECT 'one'", 0, &err);
    /* Warm the connection so the timing below measures only the cancel. */
    struct res w = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &w, &err), 0);
    run_until(&f.loop, &w.called, 1, 5000);
    assert_int_equal(w.code, 0);

    sift_ctx *run = sift_ctx_new_timeout(f.root, 200);
    const char *ten[] = {"10"};
    struct res s = {.loop = &f.loop}, behind = {.loop = &f.loop};
    uint64_t t0 = uv_now(&f.loop);
    assert_int_equal(sift_pgpool_query(f.pool, run, sleep, 1, ten, on_res, &s, &err), 0);
    /* Pipelined behind the sleeping query on the only connection. */
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &behind, &err), 0);
    run_until(&f.loop, &s.called, 1, 5000);
    assert_int_equal(s.code, SIFT_ETIMEDOUT);
    assert_true(s.at - t0 < 500);
    /* The server stops the sleep: the query behind it answers soon after. */
    run_until(&f.loop, &behind.called, 1, 5000);
    assert_int_equal(behind.code, 0);
    assert_string_equal(behind.value, "one");
    assert_true(behind.at - t0 < 2000);
    sift_ctx_release(run);

    /* Cancelled by hand while still queued. */
    sift_ctx *run2 = sift_ctx_new(f.root);
    struct res q = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, run2, sleep, 1, ten, on_res, &q, &err), 0);
    sift_ctx_cancel(run2, SIFT_ECANCELED, "client went away");
    assert_int_equal(q.called, 1);
    assert_int_equal(q.code, SIFT_ECANCELED);
    assert_string_equal(q.msg, "client went away");
    sift_ctx_release(run2);

    /* A ctx already done: refused at once. */
    sift_ctx *gone = sift_ctx_new(f.root);
    sift_ctx_cancel(gone, SIFT_ECANCELED, NULL);
    assert_int_equal(sift_pgpool_query(f.pool, gone, one, 0, NULL, on_res, &q, &err),
                     SIFT_ECANCELED);
    sift_ctx_release(gone);

    struct res after = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &after, &err), 0);
    run_until(&f.loop, &after.called, 1, 5000);
    assert_int_equal(after.code, 0);
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_int_equal(st.conns_lost, 0); /* the connection recovered */
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.cancels_sent, 1);
    fx_close(&f);
}

/* A cancel request sent as the cancelled query finishes can reach the
 * server while it runs the next query in the pipeline. That query must
 * still succeed (it is retried once). The timings straddle the end of the
 * cancelled query, so some rounds hit the race; all must pass. */
static void test_late_cancel_spares_the_next_query(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.size = 1, .pipeline_depth = 4});
    sift_err err = {0};
    int sleep = sift_pgpool_prepare(f.pool, "SELECT pg_sleep($1::float8)::text", 1, &err);
    int slow_one = sift_pgpool_prepare(f.pool, "SELECT pg_sleep(0.2)::text || 'one'", 0, &err);
    const char *v[] = {"0.1"};
    for (int round = 0; round < 12; round++) {
        sift_ctx *run = sift_ctx_new_timeout(f.root, 96 + round);
        struct res a = {.loop = &f.loop}, b = {.loop = &f.loop};
        assert_int_equal(sift_pgpool_query(f.pool, run, sleep, 1, v, on_res, &a, &err), 0);
        assert_int_equal(sift_pgpool_query(f.pool, f.root, slow_one, 0, NULL, on_res, &b, &err), 0);
        run_until(&f.loop, &b.called, 1, 5000);
        assert_int_equal(a.called, 1);
        assert_int_equal(b.called, 1);
        if (b.code != 0)
            fail_msg("round %d: %s", round, b.msg);
        assert_string_equal(b.value, "one");
        sift_ctx_release(run);
    }
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_int_equal(st.conns_lost, 0);
    assert_true(st.cancels_sent > 0); /* (st.retries counts the rounds that hit the race) */
    fx_close(&f);
}

static void test_connect_failure(void **state)
{
    (void)state;
    /* A port nobody listens on (the cluster's, plus one, is free enough). */
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.conninfo = "postgresql://postgres@127.0.0.1:1/sift",
                                   .queue_timeout_ms = 400,
                                   .backoff_min_ms = 50});
    sift_err err = {0};
    int one = sift_pgpool_prepare(f.pool, "SELECT 1", 0, &err);
    struct res r = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r, &err), 0);
    run_until(&f.loop, &r.called, 1, 5000);
    assert_int_equal(r.code, SIFT_ETIMEDOUT);
    assert_non_null(strstr(r.msg, "PostgreSQL connect failed"));
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_true(st.connect_failures >= 2); /* retried with backoff meanwhile */
    assert_true(st.connect_failures < 20); /* but not in a tight loop */
    fx_close(&f);
}

/* Closing the pool from inside one of its callbacks, with a query on the
 * wire and one queued: both fail "PostgreSQL pool closed", every handle
 * closes (the loop ends), nothing leaks (ASan). */
struct closer {
    struct res r;
    sift_pgpool *pool;
};

static void close_in_cb(void *data, const PGresult *res, const sift_err *err)
{
    struct closer *c = data;
    on_res(&c->r, res, err);
    sift_pgpool_close(c->pool);
}

static void test_close_with_work(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_pgpool *p = NULL;
    sift_err err = {0};
    assert_int_equal(
        sift_pgpool_new(
            &loop, &(sift_pgpool_opts){.conninfo = cluster.url, .size = 1, .pipeline_depth = 2}, &p,
            &err),
        0);
    int one = sift_pgpool_prepare(p, "SELECT 'one'", 0, &err);
    int sleep = sift_pgpool_prepare(p, "SELECT pg_sleep($1::float8)::text", 1, &err);
    struct closer first = {.r = {.loop = &loop}, .pool = p};
    struct res sleeping = {.loop = &loop}, queued = {.loop = &loop};
    const char *v[] = {"5"};
    assert_int_equal(sift_pgpool_query(p, root, one, 0, NULL, close_in_cb, &first, &err), 0);
    assert_int_equal(sift_pgpool_query(p, root, sleep, 1, v, on_res, &sleeping, &err), 0);
    assert_int_equal(sift_pgpool_query(p, root, one, 0, NULL, on_res, &queued, &err), 0);
    uint64_t t0 = uv_now(&loop);
    while (uv_run(&loop, UV_RUN_DEFAULT) != 0) {
    }
    /* The loop ended: the pool closed its handles and freed itself. */
    assert_true(uv_now(&loop) - t0 < 3000);
    assert_int_equal(first.r.called, 1);
    assert_int_equal(first.r.code, 0);
    assert_string_equal(first.r.value, "one");
    assert_int_equal(sleeping.called, 1);
    assert_int_equal(sleeping.code, SIFT_ECANCELED);
    assert_string_equal(sleeping.msg, "PostgreSQL pool closed");
    assert_int_equal(queued.called, 1);
    assert_int_equal(queued.code, SIFT_ECANCELED);
    /* The server was asked to stop the sleep: no backend is still in it. */
    assert_int_equal(sift_pgpool_new(&loop, &(sift_pgpool_opts){.conninfo = cluster.url}, &p, &err),
                     0);
    int busy = sift_pgpool_prepare(p,
                                   "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                                   " AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
                                   0, &err);
    char last[64] = "";
    for (int i = 0; i < 20 && strcmp(last, "0") != 0; i++) {
        struct res b = {.loop = &loop};
        assert_int_equal(sift_pgpool_query(p, root, busy, 0, NULL, on_res, &b, &err), 0);
        run_until(&loop, &b.called, 1, 5000);
        assert_int_equal(b.code, 0);
        snprintf(last, sizeof last, "%s", b.value);
        uv_sleep(50);
    }
    assert_string_equal(last, "0");
    sift_pgpool_close(p);
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Two hosts, the first refusing: libpq closes its socket and opens another
 * (often with the same descriptor number) inside PQconnectPoll. */
static void test_second_host(void **state)
{
    (void)state;
    const char *port = strrchr(cluster.url, ':') + 1; /* "PORT/sift" */
    char url[300];
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:1,127.0.0.1:%.*s/sift",
             (int)strcspn(port, "/"), port);
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.conninfo = url, .connect_timeout_ms = 3000});
    sift_err err = {0};
    int one = sift_pgpool_prepare(f.pool, "SELECT 'one'", 0, &err);
    struct res r = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r, &err), 0);
    run_until(&f.loop, &r.called, 1, 5000);
    if (r.code != 0)
        fail_msg("%s", r.msg);
    assert_string_equal(r.value, "one");
    fx_close(&f);
}

/* Host names are resolved with uv_getaddrinfo before libpq starts (never by
 * libpq on the loop). "localhost" twice, the first on a port nobody listens
 * on: the per-host port list follows the names through the resolution. */
static void test_host_name(void **state)
{
    (void)state;
    const char *port = strrchr(cluster.url, ':') + 1; /* "PORT/sift" */
    int plen = (int)strcspn(port, "/");
    char url[300];
    snprintf(url, sizeof url, "postgresql://postgres@localhost:%.*s/sift", plen, port);
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.conninfo = url, .connect_timeout_ms = 3000});
    sift_err err = {0};
    int one = sift_pgpool_prepare(f.pool, "SELECT 'one'", 0, &err);
    struct res r = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r, &err), 0);
    run_until(&f.loop, &r.called, 1, 5000);
    if (r.code != 0)
        fail_msg("%s", r.msg);
    assert_string_equal(r.value, "one");
    fx_close(&f);

    snprintf(url, sizeof url, "postgresql://postgres@localhost:1,localhost:%.*s/sift", plen, port);
    fx_open(&f, (sift_pgpool_opts){.conninfo = url, .connect_timeout_ms = 3000});
    one = sift_pgpool_prepare(f.pool, "SELECT 'two'", 0, &err);
    struct res r2 = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r2, &err), 0);
    run_until(&f.loop, &r2.called, 1, 5000);
    if (r2.code != 0)
        fail_msg("%s", r2.msg);
    assert_string_equal(r2.value, "two");
    fx_close(&f);

    /* hostaddr given: the name is not resolved (it could not be), only kept. */
    snprintf(url, sizeof url,
             "host=sift-no-such-host.invalid hostaddr=127.0.0.1 port=%.*s user=postgres "
             "dbname=sift",
             plen, port);
    fx_open(&f, (sift_pgpool_opts){.conninfo = url, .connect_timeout_ms = 3000});
    one = sift_pgpool_prepare(f.pool, "SELECT 'three'", 0, &err);
    struct res r3 = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r3, &err), 0);
    run_until(&f.loop, &r3.called, 1, 5000);
    if (r3.code != 0)
        fail_msg("%s", r3.msg);
    assert_string_equal(r3.value, "three");
    fx_close(&f);
}

/* A name that does not resolve fails the attempt with a clear error, and
 * the pool retries with its backoff. */
static void test_host_unresolvable(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.conninfo =
                                       "postgresql://postgres@sift-no-such-host.invalid:5432/sift",
                                   .queue_timeout_ms = 1500,
                                   .backoff_min_ms = 50});
    sift_err err = {0};
    int one = sift_pgpool_prepare(f.pool, "SELECT 1", 0, &err);
    struct res r = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r, &err), 0);
    run_until(&f.loop, &r.called, 1, 10000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.code, SIFT_ETIMEDOUT);
    if (!strstr(r.msg, "PostgreSQL connect failed: cannot resolve host "
                       "\"sift-no-such-host.invalid\": "))
        fail_msg("%s", r.msg);
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_true(st.connect_failures >= 2); /* retried with backoff meanwhile */
    assert_int_equal(st.connects, 0);
    fx_close(&f);
}

/* Closing the pool while a name is being resolved: the query fails "pool
 * closed", the loop ends, nothing is used after free or leaked (ASan). */
static void test_close_while_resolving(void **state)
{
    (void)state;
    const char *hosts[] = {"localhost", "sift-no-such-host.invalid"};
    for (int i = 0; i < 2; i++) {
        char url[300];
        snprintf(url, sizeof url, "postgresql://postgres@%s:5432/sift", hosts[i]);
        struct fixture f;
        fx_open(&f, (sift_pgpool_opts){.conninfo = url});
        sift_err err = {0};
        int one = sift_pgpool_prepare(f.pool, "SELECT 1", 0, &err);
        struct res r = {.loop = &f.loop};
        assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r, &err), 0);
        uv_run(&f.loop, UV_RUN_NOWAIT); /* the pump opens a connection: resolving */
        sift_pgpool_stats st;
        sift_pgpool_get_stats(f.pool, &st);
        assert_int_equal(st.conns, 1);
        assert_int_equal(st.conns_ready, 0);
        assert_int_equal(r.called, 0);
        fx_close(&f); /* runs the loop to its end; uv_loop_close succeeds */
        assert_int_equal(r.called, 1);
        assert_int_equal(r.code, SIFT_ECANCELED);
    }
}

/* Keeps every uv thread-pool thread busy for a while, so a uv_getaddrinfo
 * queued meanwhile is still pending (and cancellable). */
static _Atomic int busy_started;

static void busy_work(uv_work_t *w)
{
    (void)w;
    busy_started++;
    uv_sleep(1000);
}

static void busy_done(uv_work_t *w, int status)
{
    (void)status;
    free(w);
}

static void block_threadpool(uv_loop_t *loop)
{
    const char *env = getenv("UV_THREADPOOL_SIZE");
    int n = env ? atoi(env) : 4;
    if (n < 1 || n > 1024)
        n = 4;
    for (int i = 0; i < n; i++) {
        uv_work_t *w = calloc(1, sizeof *w);
        assert_non_null(w);
        assert_int_equal(uv_queue_work(loop, w, busy_work, busy_done), 0);
    }
    /* Every thread is asleep before the test goes on. */
    for (int i = 0; i < 200 && busy_started < n; i++)
        uv_sleep(5);
    assert_int_equal(busy_started, n);
    busy_started = 0;
}

/* The connect timeout covers resolving: with the thread pool busy, the
 * attempt times out while its lookup is pending (the lookup is cancelled and
 * freed in its callback), the loop keeps running meanwhile, and a later
 * attempt connects once the pool is free. Closing with a lookup pending is
 * clean too (ASan). */
static void test_resolve_pending(void **state)
{
    (void)state;
    const char *port = strrchr(cluster.url, ':') + 1;
    char url[300];
    snprintf(url, sizeof url, "postgresql://postgres@localhost:%.*s/sift", (int)strcspn(port, "/"),
             port);
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.conninfo = url,
                                   .connect_timeout_ms = 300,
                                   .backoff_min_ms = 50,
                                   .queue_timeout_ms = 5000});
    block_threadpool(&f.loop);
    sift_err err = {0};
    int one = sift_pgpool_prepare(f.pool, "SELECT 'one'", 0, &err);
    struct res r = {.loop = &f.loop};
    uint64_t t0 = uv_now(&f.loop);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r, &err), 0);
    run_until(&f.loop, &r.called, 1, 10000);
    if (r.code != 0)
        fail_msg("%s", r.msg);
    assert_string_equal(r.value, "one");
    if (uv_now(&f.loop) - t0 < 700) /* it waited for the thread pool */
        fail_msg("answered after %llu ms", (unsigned long long)(uv_now(&f.loop) - t0));
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_true(st.connect_failures >= 1); /* "no answer within 300 ms" */
    assert_int_equal(st.connects, 1);
    fx_close(&f);

    fx_open(&f, (sift_pgpool_opts){.conninfo = url});
    block_threadpool(&f.loop);
    one = sift_pgpool_prepare(f.pool, "SELECT 1", 0, &err);
    struct res r2 = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &r2, &err), 0);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(r2.called, 0);
    fx_close(&f);
    assert_int_equal(r2.called, 1);
    assert_int_equal(r2.code, SIFT_ECANCELED);
}

/* Allocation failures at every step of a pool's life: each one ends in a
 * clear error (or success), never a crash, a hang or a leak (ASan). */
static void test_out_of_memory(void **state)
{
    (void)state;
    int succeeded = 0;
    for (long n = 0; n < 40; n++) {
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        sift_ctx *root = sift_ctx_new_root(&loop);
        assert_non_null(root);
        sift_err err = {0};
        sift_pgpool *p = NULL;
        struct res r = {.loop = &loop};
        const char *v[] = {"7"};
        sift_mem_fail_after(n);
        int rc = sift_pgpool_new(
            &loop, &(sift_pgpool_opts){.conninfo = cluster.url, .queue_timeout_ms = 300}, &p, &err);
        int stmt = rc == 0 ? sift_pgpool_prepare(p, "SELECT $1::int", 1, &err) : -1;
        if (stmt >= 0)
            rc = sift_pgpool_query(p, root, stmt, 1, v, on_res, &r, &err);
        else if (rc == 0)
            rc = stmt;
        if (rc == 0) {
            run_until(&loop, &r.called, 1, 5000);
            assert_int_equal(r.called, 1);
            if (r.code == 0) {
                assert_string_equal(r.value, "7");
                succeeded++;
            } else {
                assert_true(r.msg[0] != '\0');
            }
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_string_equal(err.msg, "out of memory");
        }
        sift_mem_fail_after(-1);
        sift_pgpool_close(p);
        sift_ctx_release(root);
        while (uv_run(&loop, UV_RUN_DEFAULT) != 0) {
        }
        assert_int_equal(uv_loop_close(&loop), 0);
    }
    assert_true(succeeded > 0); /* the later rounds had enough memory */
}

/* The server restarts while the pool's connection is idle and the loop is
 * not running: the next query must not be sent on the dead connection (the
 * pool reads the socket before it dispatches), so it succeeds. */
static void test_idle_connection_after_restart(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f, (sift_pgpool_opts){.size = 1});
    sift_err err = {0};
    int one = sift_pgpool_prepare(f.pool, "SELECT 'one'", 0, &err);
    struct res a = {.loop = &f.loop}, b = {.loop = &f.loop};
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &a, &err), 0);
    run_until(&f.loop, &a.called, 1, 5000);
    assert_int_equal(a.code, 0);
    assert_int_equal(pgtest_ctl(&cluster, "restart"), 0);
    assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &b, &err), 0);
    run_until(&f.loop, &b.called, 1, 10000);
    if (b.code != 0)
        fail_msg("%s", b.msg);
    assert_string_equal(b.value, "one");
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_int_equal(st.conns_lost, 1);
    assert_int_equal(st.connects, 2);
    fx_close(&f);
}

/* ---- PostgreSQL restarted under load ---- */

struct restart {
    uv_process_t proc;
    int exited;
    int64_t status;
};

static void on_restart_exit(uv_process_t *p, int64_t status, int sig)
{
    struct restart *r = p->data;
    r->exited = 1;
    r->status = status;
    (void)sig;
    uv_close((uv_handle_t *)p, NULL);
}

static void test_restart_mid_load(void **state)
{
    (void)state;
    struct fixture f;
    fx_open(&f,
            (sift_pgpool_opts){
                .size = 3, .queue_timeout_ms = 10000, .backoff_min_ms = 50, .backoff_max_ms = 400});
    sift_err err = {0};
    int sleep = sift_pgpool_prepare(f.pool, "SELECT pg_sleep($1::float8)::text", 1, &err);
    enum { N = 30 };
    struct res r[N];
    memset(r, 0, sizeof r);
    const char *v[] = {"3"};
    for (int i = 0; i < N; i++) {
        r[i].loop = &f.loop;
        assert_int_equal(sift_pgpool_query(f.pool, f.root, sleep, 1, v, on_res, &r[i], &err), 0);
    }
    /* Let them reach the server, then restart it from a child process so the
     * loop keeps running. */
    uint64_t end = uv_now(&f.loop) + 500;
    while (uv_now(&f.loop) < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    sift_pgpool_stats st;
    sift_pgpool_get_stats(f.pool, &st);
    assert_true(st.inflight > 0);
    struct restart rs = {0};
    rs.proc.data = &rs;
    char script[512], *argv[5];
    pgtest_argv(&cluster, "restart", script, sizeof script, argv);
    uv_process_options_t po = {.file = "bash", .args = argv, .exit_cb = on_restart_exit};
    assert_int_equal(uv_spawn(&f.loop, &rs.proc, &po), 0);
    int done = 0;
    end = uv_now(&f.loop) + 30000;
    while ((done < N || !rs.exited) && uv_now(&f.loop) < end) {
        uv_run(&f.loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].called;
    }
    assert_true(rs.exited);
    assert_int_equal(rs.status, 0);
    assert_int_equal(done, N);
    int lost = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].called, 1);
        if (r[i].code != 0) {
            /* Every failure says what happened. */
            assert_int_equal(r[i].code, SIFT_EIO);
            assert_non_null(strstr(r[i].msg, "PostgreSQL connection lost"));
            lost++;
        }
    }
    assert_true(lost > 0);
    /* The pool reconnects by itself. */
    int one = sift_pgpool_prepare(f.pool, "SELECT 'back'", 0, &err);
    struct res b[5];
    memset(b, 0, sizeof b);
    int nb = 0;
    for (int i = 0; i < 5; i++) {
        b[i].loop = &f.loop;
        assert_int_equal(sift_pgpool_query(f.pool, f.root, one, 0, NULL, on_res, &b[i], &err), 0);
    }
    end = uv_now(&f.loop) + 15000;
    while (nb < 5 && uv_now(&f.loop) < end) {
        uv_run(&f.loop, UV_RUN_ONCE);
        nb = 0;
        for (int i = 0; i < 5; i++)
            nb += b[i].called;
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(b[i].called, 1);
        assert_int_equal(b[i].code, 0);
        assert_string_equal(b[i].value, "back");
    }
    sift_pgpool_get_stats(f.pool, &st);
    assert_true(st.conns_lost > 0);
    assert_true(st.connects > 1);
    fx_close(&f);
}

int main(void)
{
    int rc = pgtest_start(&cluster);
    if (rc == PGTEST_SKIP) {
        fprintf(stderr, "test_pgpool: no PostgreSQL server binaries; skipped\n");
        return 77;
    }
    if (rc != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_and_prepared),
        cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_many_queue_on_two_connections),
        cmocka_unit_test(test_queue_bound_and_timeout),
        cmocka_unit_test(test_cancel_by_ctx),
        cmocka_unit_test(test_late_cancel_spares_the_next_query),
        cmocka_unit_test(test_connect_failure),
        cmocka_unit_test(test_close_with_work),
        cmocka_unit_test(test_second_host),
        cmocka_unit_test(test_host_name),
        cmocka_unit_test(test_host_unresolvable),
        cmocka_unit_test(test_close_while_resolving),
        cmocka_unit_test(test_resolve_pending),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_idle_connection_after_restart),
        cmocka_unit_test(test_restart_mid_load),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgtest_destroy(&cluster);
    return rc;
}
