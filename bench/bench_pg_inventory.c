/* check_inventory against PostgreSQL: throughput and latency with 1,000 calls
 * in flight on one loop, through the shop tool (argument decoding, the
 * loop's asynchronous pool, result JSON), for a few pool sizes and pipeline
 * depths. Each call is its own run: a child ctx with a deadline, as the agent
 * gives a tool call. The data: 50,000 products, 3 warehouses, a stock row per
 * product and warehouse, in a throwaway cluster on loopback (server and bench
 * share this machine's cores).
 *
 * The first configuration is the thread-pool path over the synchronous
 * store (pgstore.h), for comparison: UV_THREADPOOL_SIZE (4) threads, each
 * blocking on its own connection.
 *
 * Latency is measured per call, from the tool job's start to its completion;
 * it includes the time the call waits in the pool's queue, which is most of
 * it at 1,000 concurrent calls. Figures are medians of 3 repetitions.
 * Skips (exit 0, with a message) when the PostgreSQL server binaries are
 * absent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "benchutil.h"
#include "pgtest.h"
#include "sift/arena.h"
#include "sift/ctx.h"
#include "sift/pgstore.h"
#include "sift/shoptools.h"
#include "sift/tool.h"

#define CONCURRENCY 1000
#define CALLS 20000
#define WARMUP 2000
#define REPS 3
#define PRODUCTS 50000

/* The data, on the schema of `sift migrate` (sift_pg_migrate). */
static const char setup_sql[] =
    "INSERT INTO warehouses VALUES ('HAN'), ('DAD'), ('SGN');\n"
    "INSERT INTO products (sku, title, version, updated_at)"
    " SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, 1, 0"
    " FROM generate_series(1, 50000) g;\n"
    "INSERT INTO inventory SELECT 'SKU-' || lpad(g::text, 5, '0'), w, (g * 7) % 50, 1, 0"
    " FROM generate_series(1, 50000) g, unnest(ARRAY['HAN', 'DAD', 'SGN']) w;\n"
    "ANALYZE;\n";

struct slot {
    sift_tool_job job;
    sift_arena *arena;
    sift_ctx *ctx;
    uint64_t t0_ns;
    char args[64];
};

struct runner {
    uv_loop_t *loop;
    sift_ctx *root;
    const sift_tool *tool;
    struct slot slots[CONCURRENCY];
    int total, started, done, failed;
    double *lat_ms;
    char first_error[256];
    unsigned rng;
};

static void start_call(struct runner *r, struct slot *s);

static void on_done(sift_tool_job *job, void *data)
{
    struct runner *r = data;
    struct slot *s = (struct slot *)(void *)job; /* job is the slot's first member */
    r->lat_ms[r->done] = (double)(uv_hrtime() - s->t0_ns) / 1e6;
    r->done++;
    if (job->code != 0) {
        if (!r->failed)
            snprintf(r->first_error, sizeof r->first_error, "%s", job->result);
        r->failed++;
    }
    sift_ctx_release(s->ctx);
    s->ctx = NULL;
    sift_arena_reset(s->arena);
    if (r->started < r->total)
        start_call(r, s);
}

static void start_call(struct runner *r, struct slot *s)
{
    r->rng = r->rng * 1103515245u + 12345u;
    int sku = (int)((r->rng >> 8) % PRODUCTS) + 1;
    int n = snprintf(s->args, sizeof s->args, "{\"sku\":\"SKU-%05d\"}", sku);
    s->ctx = sift_ctx_new_timeout(r->root, 30000);
    r->started++;
    s->t0_ns = uv_hrtime();
    sift_tool_job_init(&s->job, r->tool, s->ctx, s->arena, NULL, on_done, r);
    sift_tool_job_start(&s->job, s->args, (size_t)n);
}

/* Runs `total` calls with CONCURRENCY in flight; returns the seconds taken. */
static double run_calls(struct runner *r, int total)
{
    r->total = total;
    r->started = r->done = r->failed = 0;
    double t0 = bench_now_s();
    for (int i = 0; i < CONCURRENCY && r->started < total; i++)
        start_call(r, &r->slots[i]);
    while (r->done < total)
        uv_run(r->loop, UV_RUN_ONCE);
    return bench_now_s() - t0;
}

/* pool 0: the thread-pool path over the synchronous store, for comparison. */
static int bench_config(const char *url, size_t pool, size_t depth, struct bench_report *rep)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_err err = {0};
    sift_shop *shop = NULL;
    sift_shop_opts so = {.store_path = url,
                         .pg = {.size = pool, .pipeline_depth = depth, .queue_timeout_ms = 30000},
                         .pg_threadpool = pool == 0};
    if (sift_shop_new(&so, &shop, &err) != 0) {
        fprintf(stderr, "bench_pg_inventory: %s\n", err.msg);
        return -1;
    }
    static struct runner r;
    memset(&r, 0, sizeof r);
    r.loop = &loop;
    r.root = sift_ctx_new_root(&loop);
    r.tool = sift_shop_tool(shop, "check_inventory");
    r.rng = 12345;
    r.lat_ms = calloc(CALLS, sizeof *r.lat_ms);
    for (int i = 0; i < CONCURRENCY; i++)
        r.slots[i].arena = sift_arena_new(4096);

    run_calls(&r, WARMUP);
    double rate[REPS], p50[REPS], p99[REPS], cpu_us[REPS];
    int rc = 0;
    for (int k = 0; k < REPS; k++) {
        double c0 = bench_cpu_s();
        double secs = run_calls(&r, CALLS);
        cpu_us[k] = (bench_cpu_s() - c0) / CALLS * 1e6;
        if (r.failed) {
            fprintf(stderr, "bench_pg_inventory: %d calls failed: %s\n", r.failed, r.first_error);
            rc = -1;
        }
        rate[k] = CALLS / secs;
        p50[k] = bench_percentile(r.lat_ms, CALLS, 50);
        p99[k] = bench_percentile(r.lat_ms, CALLS, 99);
    }
    char label[64], name[96];
    if (pool == 0)
        snprintf(label, sizeof label, "thread pool, sync store");
    else
        snprintf(label, sizeof label, "pool %zu, pipeline %zu", pool, depth);
    snprintf(name, sizeof name, "%s: calls/s", label);
    bench_add(rep, name, bench_median(rate, REPS), "calls/s");
    snprintf(name, sizeof name, "%s: latency p50", label);
    bench_add(rep, name, bench_median(p50, REPS), "ms");
    snprintf(name, sizeof name, "%s: latency p99", label);
    bench_add(rep, name, bench_median(p99, REPS), "ms");
    snprintf(name, sizeof name, "%s: client CPU per call", label);
    bench_add(rep, name, bench_median(cpu_us, REPS), "us");

    sift_shop_loop_close(shop, &loop);
    sift_ctx_release(r.root);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < CONCURRENCY; i++)
        sift_arena_free(r.slots[i].arena);
    free(r.lat_ms);
    sift_shop_free(shop);
    uv_loop_close(&loop);
    return rc;
}

int main(void)
{
    pgtest_cluster c;
    int rc = pgtest_start(&c);
    if (rc == PGTEST_SKIP) {
        printf("bench_pg_inventory: skipped: no PostgreSQL server binaries "
               "(apt install postgresql)\n");
        return 0;
    }
    if (rc != 0)
        return 1;
    sift_err err = {0};
    if (sift_pg_migrate(c.url, &err) != 0) {
        fprintf(stderr, "bench_pg_inventory: %s\n", err.msg);
        pgtest_destroy(&c);
        return 1;
    }
    if (pgtest_psql(&c, setup_sql) != 0) {
        fprintf(stderr, "bench_pg_inventory: cannot load the data\n");
        pgtest_destroy(&c);
        return 1;
    }
    struct bench_report rep = {.name = "pg_inventory"};
    printf("check_inventory on PostgreSQL, %d calls in flight on one loop, %d calls per run\n",
           CONCURRENCY, CALLS);
    /* {0, 0}: the thread-pool path (UV_THREADPOOL_SIZE threads, one blocking
     * connection each), as the volatile tools ran before the pool. */
    static const size_t configs[][2] = {{0, 0}, {4, 1}, {2, 8}, {4, 8}, {8, 8}};
    rc = 0;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        rc |= bench_config(c.url, configs[i][0], configs[i][1], &rep);
    pgtest_destroy(&c);
    if (rc != 0)
        return 1;
    bench_write(&rep);
    return 0;
}
