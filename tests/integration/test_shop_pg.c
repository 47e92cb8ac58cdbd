/* The shop tools on PostgreSQL give the same results as on SQLite for the
 * same data: the sample catalog is loaded into a SQLite store and, after
 * `sift migrate`, into a throwaway PostgreSQL cluster, and check_inventory, get_price and
 * list_warehouses are called on both shops for every SKU (plus a deleted one,
 * a lower-cased one and an unknown one); code and result must match byte for
 * byte. Also: search_products works on PostgreSQL (thread pool, pgstore), a
 * cancelled run ends its PostgreSQL tool call at once, and PostgreSQL
 * restarted under 100 concurrent calls fails only the calls caught on a
 * dying connection, with a clear error, and the pool recovers. Exits 77 (skip) when
 * the PostgreSQL server binaries are absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "pgtest.h"
#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/ctx.h"
#include "sift/pgstore.h"
#include "sift/shoptools.h"
#include "sift/store.h"
#include "sift/tool.h"

#ifndef SIFT_SOURCE_DIR
#define SIFT_SOURCE_DIR "."
#endif

static pgtest_cluster cluster;
static char sqlite_dir[64], sqlite_path[128];

static void load_file(sift_store *st, const char *name, int kind)
{
    const char *src = getenv("SIFT_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/catalog/sample/%s", src ? src : SIFT_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    sift_err e = {0};
    sift_load_summary sum = {0};
    int rc = sift_catalog_load_jsonl(st, f, kind, NULL, &sum, &e);
    fclose(f);
    if (rc != 0 || sum.bad != 0)
        fail_msg("load %s: rc %d, %zu bad: %s", path, rc, sum.bad, e.msg);
}

/* Loads the sample catalog, with one product deleted, into `st`. */
static void load_sample(sift_store *st)
{
    load_file(st, "products.jsonl", SIFT_CATALOG_PRODUCTS);
    load_file(st, "inventory.jsonl", SIFT_CATALOG_INVENTORY);
    load_file(st, "prices.jsonl", SIFT_CATALOG_PRICES);
    /* A deleted product keeps its stock and price rows: the tools must still
     * say it does not exist. */
    sift_err e = {0};
    int applied = 0;
    assert_int_equal(sift_store_delete_product(st, "NIKE-PEG40-42", 1000000, &applied, &e), 0);
    assert_int_equal(applied, 1);
}

/* The same data in both stores, through the same loader: a SQLite file, and
 * the PostgreSQL database after `sift migrate` (sift_pg_migrate). */
static int setup(void **state)
{
    (void)state;
    snprintf(sqlite_dir, sizeof sqlite_dir, "/tmp/sift-test-shoppg-XXXXXX");
    assert_non_null(mkdtemp(sqlite_dir));
    snprintf(sqlite_path, sizeof sqlite_path, "%s/store.db", sqlite_dir);
    sift_err e = {0};
    sift_store *st = NULL;
    if (sift_store_sqlite_open(sqlite_path, NULL, &st, &e) != 0)
        fail_msg("open: %s", e.msg);
    load_sample(st);
    sift_store_close(st);
    if (sift_pg_migrate(cluster.url, &e) != 0)
        fail_msg("migrate: %s", e.msg);
    if (sift_store_pg_open(cluster.url, NULL, &st, &e) != 0)
        fail_msg("open: %s", e.msg);
    load_sample(st);
    sift_store_close(st);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char p[160];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", sqlite_path, suffix[i]);
        unlink(p);
    }
    rmdir(sqlite_dir);
    return 0;
}

/* ---- running tools ---- */

struct shop {
    sift_shop *shop;
    sift_tool_registry *reg;
};

struct outcome {
    int calls;
    int code;
    char *result; /* malloc'd copy */
};

static void on_done(sift_tool_job *job, void *data)
{
    struct outcome *o = data;
    o->calls++;
    o->code = job->code;
    o->result = strdup(job->result ? job->result : "(null)");
}

static void shop_open(struct shop *s, const char *path)
{
    sift_err e = {0};
    sift_shop_opts o = {.store_path = path, .pg = {.size = 2}};
    if (sift_shop_new(&o, &s->shop, &e) != 0)
        fail_msg("shop: %s", e.msg);
    s->reg = sift_tool_registry_new();
    assert_non_null(s->reg);
    assert_int_equal(sift_shop_tools_register(s->reg, s->shop, &e), 0);
}

/* After sift_shop_loop_close and the loop run until its handles closed. */
static void shop_free(struct shop *s)
{
    assert_int_equal(sift_shop_inflight(s->shop), 0);
    sift_tool_registry_free(s->reg);
    sift_shop_free(s->shop);
}

/* Starts a job; the loop completes it. */
static void start(struct shop *s, sift_ctx *ctx, sift_arena *a, sift_tool_job *job,
                  const char *name, const char *args, struct outcome *o)
{
    const sift_tool *t = sift_tool_registry_find(s->reg, name);
    assert_non_null(t);
    sift_tool_job_init(job, t, ctx, a, NULL, on_done, o);
    sift_tool_job_start(job, args, strlen(args));
}

/* Runs `name(args)` on both shops and compares. */
static void same(uv_loop_t *loop, sift_ctx *root, struct shop *lite, struct shop *pg,
                 const char *name, const char *args)
{
    sift_arena *a = sift_arena_new(0);
    sift_tool_job j1, j2;
    struct outcome o1 = {0}, o2 = {0};
    start(lite, root, a, &j1, name, args, &o1);
    start(pg, root, a, &j2, name, args, &o2);
    while (o1.calls == 0 || o2.calls == 0)
        uv_run(loop, UV_RUN_ONCE);
    if (o1.code != o2.code || strcmp(o1.result, o2.result) != 0)
        fail_msg("%s %s:\n  sqlite   %d %s\n  postgres %d %s", name, args, o1.code, o1.result,
                 o2.code, o2.result);
    free(o1.result);
    free(o2.result);
    sift_arena_free(a);
}

static void test_same_results_as_sqlite(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_ctx *root = sift_ctx_new_root(&loop);
    struct shop lite, pg;
    shop_open(&lite, sqlite_path);
    shop_open(&pg, cluster.url);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(sqlite_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sku FROM products ORDER BY id", -1, &st, NULL),
                     SQLITE_OK);
    int n = 0;
    char args[256];
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *sku = (const char *)sqlite3_column_text(st, 0);
        snprintf(args, sizeof args, "{\"sku\":\"%s\"}", sku);
        same(&loop, root, &lite, &pg, "check_inventory", args);
        same(&loop, root, &lite, &pg, "get_price", args);
        snprintf(args, sizeof args, "{\"sku\":\"%s\",\"location\":\"DAD\"}", sku);
        same(&loop, root, &lite, &pg, "check_inventory", args);
        snprintf(args, sizeof args, "{\"sku\":\"%s\",\"currency\":\"USD\"}", sku);
        same(&loop, root, &lite, &pg, "get_price", args);
        n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_true(n > 2000);
    /* Deleted, lower-cased, unknown. */
    const char *odd[] = {"NIKE-PEG40-42", "nike-peg40-43", "NO-SUCH-SKU"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "{\"sku\":\"%s\"}", odd[i]);
        same(&loop, root, &lite, &pg, "check_inventory", args);
        same(&loop, root, &lite, &pg, "get_price", args);
    }
    same(&loop, root, &lite, &pg, "list_warehouses", "{}");
    /* Argument errors come from the decoder, the same on both. */
    same(&loop, root, &lite, &pg, "check_inventory", "{\"sku\":\"X\",\"location\":\"PAR\"}");

    /* search_products keeps the thread pool, over the PostgreSQL store. */
    sift_arena *a = sift_arena_new(0);
    sift_tool_job j;
    struct outcome o = {0};
    start(&pg, root, a, &j, "search_products", "{\"query\":\"NIKE-PEG40-43\"}", &o);
    while (o.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    if (o.code != 0 || !strstr(o.result, "\"sku\":\"NIKE-PEG40-43\""))
        fail_msg("search_products: %d %s", o.code, o.result);
    free(o.result);

    /* A run cancelled while its call is in flight ends the call at once. */
    sift_ctx *run = sift_ctx_new(root);
    struct outcome oc = {0};
    start(&pg, run, a, &j, "check_inventory", "{\"sku\":\"NIKE-PEG40-43\"}", &oc);
    sift_ctx_cancel(run, SIFT_ECANCELED, "client went away");
    assert_int_equal(oc.calls, 1);
    assert_int_equal(oc.code, SIFT_ECANCELED);
    assert_string_equal(oc.result, "client went away");
    free(oc.result);
    sift_ctx_release(run);
    sift_arena_free(a);

    sift_shop_loop_close(lite.shop, &loop); /* a no-op for SQLite */
    sift_shop_loop_close(pg.shop, &loop);
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    shop_free(&lite);
    shop_free(&pg);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- PostgreSQL restarted under load ---- */

#define LOAD_SLOTS 100

struct load {
    struct shop *pg;
    sift_ctx *root;
    const sift_tool *tool;
    struct load_slot {
        sift_tool_job job;
        sift_arena *arena;
        struct load *l;
    } slots[LOAD_SLOTS];
    int inflight;
    int stop;
    int restarted; /* the restart command has exited */
    int ok, ok_after, lost, other;
    char other_msg[SIFT_ERR_MSG_MAX];
};

static void load_start(struct load_slot *s);

static void load_done(sift_tool_job *job, void *data)
{
    struct load_slot *s = data;
    struct load *l = s->l;
    l->inflight--;
    if (job->code == 0) {
        l->ok++;
        l->ok_after += l->restarted;
    } else if (job->code == SIFT_EIO && strstr(job->result, "PostgreSQL connection lost")) {
        l->lost++;
    } else {
        if (!l->other)
            snprintf(l->other_msg, sizeof l->other_msg, "%d %s", job->code, job->result);
        l->other++;
    }
    sift_arena_reset(s->arena);
    if (!l->stop)
        load_start(s);
}

static void load_start(struct load_slot *s)
{
    static const char args[] = "{\"sku\":\"NIKE-PEG40-43\"}";
    s->l->inflight++;
    sift_tool_job_init(&s->job, s->l->tool, s->l->root, s->arena, NULL, load_done, s);
    sift_tool_job_start(&s->job, args, sizeof args - 1);
}

static void on_restart_exit(uv_process_t *p, int64_t status, int sig)
{
    struct load *l = p->data;
    l->restarted = status == 0 ? 1 : -1;
    (void)sig;
    uv_close((uv_handle_t *)p, NULL);
}

/* Calls in flight all the time while the server restarts: the ones caught on
 * a dying connection fail with "PostgreSQL connection lost", every other one
 * succeeds (the pool reconnects while calls wait in its queue), and the pool
 * closes cleanly afterwards (ASan: no leak). */
static void test_restart_under_load(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct shop pg;
    shop_open(&pg, cluster.url);
    static struct load l;
    memset(&l, 0, sizeof l);
    l.pg = &pg;
    l.root = sift_ctx_new_root(&loop);
    l.tool = sift_shop_tool(pg.shop, "check_inventory");
    for (int i = 0; i < LOAD_SLOTS; i++) {
        l.slots[i].l = &l;
        l.slots[i].arena = sift_arena_new(0);
        load_start(&l.slots[i]);
    }
    uint64_t end = uv_now(&loop) + 300;
    while (uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(l.ok > 0);
    uv_process_t proc;
    proc.data = &l;
    char script[512], *argv[5];
    pgtest_argv(&cluster, "restart", script, sizeof script, argv);
    uv_process_options_t po = {.file = "bash", .args = argv, .exit_cb = on_restart_exit};
    assert_int_equal(uv_spawn(&loop, &proc, &po), 0);
    end = uv_now(&loop) + 30000;
    while (!l.restarted && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(l.restarted, 1);
    end = uv_now(&loop) + 500;
    while (uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    l.stop = 1;
    end = uv_now(&loop) + 10000;
    while (l.inflight > 0 && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(l.inflight, 0);
    if (l.other)
        fail_msg("%d calls failed otherwise, first: %s", l.other, l.other_msg);
    assert_true(l.lost > 0);
    assert_true(l.ok_after > 0);
    sift_shop_loop_close(pg.shop, &loop);
    sift_ctx_release(l.root);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < LOAD_SLOTS; i++)
        sift_arena_free(l.slots[i].arena);
    shop_free(&pg);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- one shop, several loops ---- */

#define THREADS 4
#define CALLS_PER_THREAD 300

struct worker {
    uv_thread_t tid;
    struct shop *pg;
    int ok, failed;
    char msg[SIFT_ERR_MSG_MAX];
};

static void count_done(sift_tool_job *job, void *data)
{
    struct worker *w = data;
    if (job->code == 0 && strstr(job->result, "\"warehouses\":[")) {
        w->ok++;
    } else {
        if (!w->failed)
            snprintf(w->msg, sizeof w->msg, "%d %s", job->code, job->result);
        w->failed++;
    }
}

/* A worker thread: its own loop, and so its own pool in the shared shop. */
static void worker_run(void *arg)
{
    struct worker *w = arg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_arena *a = sift_arena_new(0);
    static const char args[] = "{\"sku\":\"NIKE-PEG40-43\"}";
    const sift_tool *t = sift_shop_tool(w->pg->shop, "check_inventory");
    sift_tool_job *jobs = calloc(CALLS_PER_THREAD, sizeof *jobs);
    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        sift_tool_job_init(&jobs[i], t, root, a, NULL, count_done, w);
        sift_tool_job_start(&jobs[i], args, sizeof args - 1);
    }
    while (w->ok + w->failed < CALLS_PER_THREAD)
        uv_run(&loop, UV_RUN_ONCE);
    sift_shop_loop_close(w->pg->shop, &loop);
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(jobs);
    sift_arena_free(a);
}

/* Loops on several threads share one shop: each gets its own pool (found
 * without a lock once made), all calls succeed, each loop closes its pool. */
static void test_loops_share_a_shop(void **state)
{
    (void)state;
    struct shop pg;
    shop_open(&pg, cluster.url);
    struct worker w[THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].pg = &pg;
        assert_int_equal(uv_thread_create(&w[i].tid, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(uv_thread_join(&w[i].tid), 0);
        if (w[i].failed)
            fail_msg("thread %d: %d failed, first: %s", i, w[i].failed, w[i].msg);
        assert_int_equal(w[i].ok, CALLS_PER_THREAD);
    }
    shop_free(&pg);
}

int main(void)
{
    int rc = pgtest_start(&cluster);
    if (rc == PGTEST_SKIP) {
        fprintf(stderr, "test_shop_pg: no PostgreSQL server binaries; skipped\n");
        return 77;
    }
    if (rc != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_results_as_sqlite),
        cmocka_unit_test(test_restart_under_load),
        cmocka_unit_test(test_loops_share_a_shop),
    };
    rc = cmocka_run_group_tests(tests, setup, teardown);
    pgtest_destroy(&cluster);
    return rc;
}
