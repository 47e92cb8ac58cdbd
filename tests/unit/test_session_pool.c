/* The session pool (session_pool.h): the "sessions" configuration section,
 * calls that run on the thread pool while the loop keeps serving (a slow
 * store double), cancelling a call that waits for a thread, store objects
 * reused rather than reopened, and the merge of two turns saved at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/config.h"
#include "sift/err.h"
#include "sift/memory.h"
#include "sift/model.h"
#include "sift/session.h"
#include "sift/session_pool.h"

static void must(int rc, const sift_err *err)
{
    if (rc)
        fail_msg("unexpected error %d: %s", rc, err->msg);
}

/* ---- configuration ---- */

static int read_yaml(const char *yaml, const char *store_url, sift_session_config *c, sift_err *err)
{
    sift_config cfg;
    /* the config loader wants a clean sift_err (it reads err->code) */
    *err = (sift_err){0};
    int rc = sift_config_load_text(&cfg, "t.yaml", yaml, strlen(yaml), err);
    if (rc)
        return rc;
    rc = sift_session_config_read(cfg.doc, "t.yaml", store_url, c, err);
    sift_config_free(&cfg);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    sift_session_config c = {0};
    sift_err err = {0};
    /* auto follows store.url */
    must(read_yaml("server: {port: 1}\n", "data/sift.db", &c, &err), &err);
    assert_string_equal(c.backend, "sqlite");
    assert_string_equal(c.url, "data/sift.db");
    assert_int_equal(c.ttl_ms, 0);
    assert_int_equal(c.timeout_ms, 5000);
    sift_session_config_free(&c);
    must(read_yaml("sessions: {ttl_ms: 60000}\n", "postgres://u@h/db", &c, &err), &err);
    assert_string_equal(c.backend, "postgres");
    assert_string_equal(c.url, "postgres://u@h/db");
    assert_int_equal(c.ttl_ms, 60000);
    sift_session_config_free(&c);
    /* memory: no url, caps kept */
    must(read_yaml("sessions: {store: memory, max_bytes: 1000, max_sessions: 5}\n", "x.db", &c,
                   &err),
         &err);
    assert_string_equal(c.backend, "memory");
    assert_null(c.url);
    assert_int_equal(c.max_bytes, 1000);
    assert_int_equal(c.max_sessions, 5);
    sift_session_config_free(&c);
    /* an explicit url overrides store.url */
    must(read_yaml("sessions: {store: sqlite, url: /tmp/s.db}\n", "postgres://h/db", &c, &err),
         &err);
    assert_string_equal(c.backend, "sqlite");
    assert_string_equal(c.url, "/tmp/s.db");
    sift_session_config_free(&c);
    /* mistakes name the key */
    assert_int_equal(read_yaml("sessions: {store: redis}\n", "x.db", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "t.yaml: sessions.store: must be one of"));
    assert_int_equal(read_yaml("sessions: {store: postgres}\n", "x.db", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "does not match sessions.url"));
    assert_int_equal(read_yaml("sessions: {ttl_ms: -1}\n", "x.db", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "sessions.ttl_ms: must be an integer"));
    assert_int_equal(read_yaml("sessions: {timeout_ms: 0}\n", "x.db", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "sessions.timeout_ms: must be an integer between 1"));
    must(read_yaml("sessions: {timeout_ms: 250}\n", "x.db", &c, &err), &err);
    assert_int_equal(c.timeout_ms, 250);
    sift_session_config_free(&c);
    assert_int_equal(read_yaml("sessions: [1]\n", "x.db", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "sessions: must be a mapping"));
    assert_int_equal(read_yaml("sessions: {store: sqlite}\n", NULL, &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "sessions.url: needed"));
}

/* ---- a slow store double: a memory store behind a delay ---- */

struct slow {
    sift_session_store base;
    sift_session_store *inner;
};

static sift_session_store *g_inner; /* shared by every slow store object */
static atomic_int g_opens, g_loads, g_delay_ms;
static atomic_int g_fail_open;

static int slow_load(sift_session_store *s, const char *id, sift_conv *out, bool *found,
                     sift_err *err)
{
    usleep((useconds_t)atomic_load(&g_delay_ms) * 1000u);
    atomic_fetch_add(&g_loads, 1);
    return sift_session_load(((struct slow *)s)->inner, id, out, found, err);
}

static int slow_save(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                     sift_err *err)
{
    usleep((useconds_t)atomic_load(&g_delay_ms) * 1000u);
    return sift_session_save(((struct slow *)s)->inner, id, msgs, n, err);
}

/* Set by a test: runs once, on a pool thread, just before the next
 * save_if reaches the store: another server's save landing between the
 * pool's read and its write. */
static void (*g_before_save_if)(sift_session_store *inner, const char *id);
static atomic_int g_save_ifs;

static int slow_save_if(sift_session_store *s, const char *id, const char *expect,
                        const sift_message *msgs, size_t n, bool *saved, sift_err *err)
{
    void (*hook)(sift_session_store *, const char *) = g_before_save_if;
    g_before_save_if = NULL;
    if (hook)
        hook(((struct slow *)s)->inner, id);
    atomic_fetch_add(&g_save_ifs, 1);
    return sift_session_save_if(((struct slow *)s)->inner, id, expect, msgs, n, saved, err);
}

static int slow_remove(sift_session_store *s, const char *id, sift_err *err)
{
    return sift_session_delete(((struct slow *)s)->inner, id, err);
}

static void slow_close(sift_session_store *s)
{
    free(s);
}

static const sift_session_ops slow_ops = {.kind = "slow",
                                          .load = slow_load,
                                          .save = slow_save,
                                          .remove = slow_remove,
                                          .close = slow_close,
                                          .save_if = slow_save_if};

static int slow_open(void *ud, sift_session_store **out, sift_err *err)
{
    (void)ud;
    if (atomic_load(&g_fail_open))
        return sift_err_set(err, SIFT_EIO, "slow store: refused");
    struct slow *s = calloc(1, sizeof *s);
    if (!s)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    s->base.ops = &slow_ops;
    s->inner = g_inner;
    atomic_fetch_add(&g_opens, 1);
    *out = &s->base;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    sift_err err = {0};
    atomic_store(&g_opens, 0);
    atomic_store(&g_loads, 0);
    atomic_store(&g_delay_ms, 0);
    atomic_store(&g_fail_open, 0);
    atomic_store(&g_save_ifs, 0);
    g_before_save_if = NULL;
    return sift_session_mem_new(NULL, &g_inner, &err);
}

static int teardown(void **state)
{
    (void)state;
    sift_session_close(g_inner);
    g_inner = NULL;
    return 0;
}

static sift_session_pool *slow_pool(void)
{
    sift_session_pool_opts o = {.open = slow_open};
    sift_session_pool *p = NULL;
    sift_err err = {0};
    must(sift_session_pool_new(&o, &p, &err), &err);
    assert_string_equal(sift_session_pool_kind(p), "slow");
    return p;
}

/* a call in flight and what its done saw */
struct call {
    sift_session_op op;
    sift_arena *arena;
    sift_conv conv;
    int done;
    uv_thread_t thread; /* where done ran */
};

static void call_init(struct call *c)
{
    memset(c, 0, sizeof *c);
    c->arena = sift_arena_new(4096);
    assert_non_null(c->arena);
    sift_conv_init(&c->conv, c->arena);
}

static void call_free(struct call *c)
{
    sift_session_op_reset(&c->op);
    sift_arena_free(c->arena);
}

static int g_pending; /* calls whose done has not run */
static uv_timer_t g_tick;
static int g_ticks;

static void on_call_done(sift_session_op *op)
{
    struct call *c = (struct call *)((char *)op - offsetof(struct call, op));
    c->done++;
    c->thread = uv_thread_self();
    if (--g_pending == 0 && uv_is_active((uv_handle_t *)&g_tick))
        uv_timer_stop(&g_tick);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    g_ticks++;
}

/* A load that takes 300 ms on a pool thread: the loop's 10 ms timer keeps
 * firing meanwhile, and done runs on the loop's thread. */
static void test_loop_not_blocked(void **state)
{
    (void)state;
    uv_loop_t loop;
    sift_err err = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_session_pool *p = slow_pool();
    struct call c;
    call_init(&c);
    atomic_store(&g_delay_ms, 300);
    g_ticks = 0;
    g_pending = 1;
    uv_timer_init(&loop, &g_tick);
    uv_timer_start(&g_tick, on_tick, 10, 10);
    uint64_t t0 = uv_hrtime();
    must(sift_session_pool_load(p, &loop, &c.op, "s-1", &c.conv, on_call_done, &err), &err);
    assert_true(sift_session_op_pending(&c.op));
    /* a second call on the same op is refused, not queued */
    assert_int_equal(sift_session_pool_load(p, &loop, &c.op, "s-1", &c.conv, on_call_done, &err),
                     SIFT_EBUSY);
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t took_ms = (uv_hrtime() - t0) / 1000000u;
    assert_int_equal(c.done, 1);
    assert_int_equal(c.op.rc, 0);
    assert_false(c.op.found);
    assert_false(sift_session_op_pending(&c.op));
    assert_true(took_ms >= 300);
    /* about 30 ticks in 300 ms; a blocked loop would have had none until the end */
    assert_true(g_ticks >= 15);
    uv_thread_t self = uv_thread_self();
    assert_true(uv_thread_equal(&c.thread, &self));
    uv_close((uv_handle_t *)&g_tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    call_free(&c);
    sift_session_pool_free(p);
}

/* With every pool thread busy, a queued call is cancelled: its done runs
 * with SIFT_ECANCELED and the store never sees it. */
static void test_cancel_queued(void **state)
{
    (void)state;
    enum { N = 4 }; /* UV_THREADPOOL_SIZE is 2 in this test (main) */
    uv_loop_t loop;
    sift_err err = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_session_pool *p = slow_pool();
    struct call c[N + 1];
    atomic_store(&g_delay_ms, 200);
    g_pending = N + 1;
    for (int i = 0; i <= N; i++) {
        call_init(&c[i]);
        must(sift_session_pool_load(p, &loop, &c[i].op, "s-2", &c[i].conv, on_call_done, &err),
             &err);
    }
    sift_session_op_cancel(&c[N].op);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].done, 1);
        assert_int_equal(c[i].op.rc, 0);
    }
    assert_int_equal(c[N].done, 1);
    assert_int_equal(c[N].op.rc, SIFT_ECANCELED);
    assert_int_equal(atomic_load(&g_loads), N);
    /* no more store objects than threads ran calls at once (2), whatever
     * the number of calls */
    assert_true(atomic_load(&g_opens) <= 2);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (int i = 0; i <= N; i++)
        call_free(&c[i]);
    sift_session_pool_free(p);
}

static void run_one(uv_loop_t *loop, sift_session_pool *p, struct call *c, int save, const char *id)
{
    sift_err err = {0};
    g_pending = 1;
    if (save)
        must(sift_session_pool_save(p, loop, &c->op, id, &c->conv, on_call_done, &err), &err);
    else
        must(sift_session_pool_load(p, loop, &c->op, id, &c->conv, on_call_done, &err), &err);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(g_pending, 0);
}

static void add_turn(sift_conv *c, const char *question, const char *answer)
{
    sift_err err = {0};
    must(sift_conv_add_user(c, question, &err), &err);
    must(sift_conv_add_assistant(c, answer, NULL, 0, &err), &err);
}

/* The user messages of stored session `id`, joined by '|'. */
static void questions(const char *id, char *out, size_t cap)
{
    sift_arena *a = sift_arena_new(4096);
    sift_conv c;
    sift_err err = {0};
    bool found = false;
    sift_conv_init(&c, a);
    must(sift_session_load(g_inner, id, &c, &found, &err), &err);
    assert_true(found);
    out[0] = 0;
    for (size_t i = 0; i < c.len; i++)
        if (c.msgs[i].role == SIFT_ROLE_USER)
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "|" : "",
                     c.msgs[i].content);
    sift_arena_free(a);
}

/* Two runs load the same session, each adds a turn and saves: the second
 * save keeps the first one's turn. A run that loaded nothing new replaces;
 * a save without a load (the chat route) replaces. */
static void test_merge(void **state)
{
    (void)state;
    uv_loop_t loop;
    sift_err err = {0};
    char q[256];
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_session_pool *p = slow_pool();
    struct call seed, a, b, d;
    call_init(&seed);
    call_init(&a);
    call_init(&b);
    call_init(&d);
    must(sift_conv_add_system(&seed.conv, "You sell shoes.", &err), &err);
    add_turn(&seed.conv, "q1", "a1");
    run_one(&loop, p, &seed, 1, "s-3");
    assert_false(seed.op.merged);
    /* both load q1 */
    run_one(&loop, p, &a, 0, "s-3");
    run_one(&loop, p, &b, 0, "s-3");
    assert_true(a.op.found && b.op.found);
    add_turn(&a.conv, "q2a", "a2a");
    add_turn(&b.conv, "q2b", "a2b");
    run_one(&loop, p, &a, 1, "s-3");
    assert_int_equal(a.op.rc, 0);
    assert_false(a.op.merged);
    questions("s-3", q, sizeof q);
    assert_string_equal(q, "q1|q2a");
    run_one(&loop, p, &b, 1, "s-3");
    assert_int_equal(b.op.rc, 0);
    assert_true(b.op.merged);
    questions("s-3", q, sizeof q);
    assert_string_equal(q, "q1|q2a|q2b");
    /* a new session created by someone else between load and save */
    run_one(&loop, p, &d, 0, "s-4");
    assert_false(d.op.found);
    must(sift_conv_add_system(&d.conv, "You sell shoes.", &err), &err);
    add_turn(&d.conv, "d1", "x");
    struct call other;
    call_init(&other);
    must(sift_conv_add_system(&other.conv, "You sell shoes.", &err), &err);
    add_turn(&other.conv, "o1", "y");
    run_one(&loop, p, &other, 1, "s-4");
    run_one(&loop, p, &d, 1, "s-4");
    assert_true(d.op.merged);
    questions("s-4", q, sizeof q);
    assert_string_equal(q, "o1|d1");
    /* a save with no load before it replaces */
    run_one(&loop, p, &seed, 1, "s-3");
    assert_false(seed.op.merged);
    questions("s-3", q, sizeof q);
    assert_string_equal(q, "q1");
    assert_int_equal(uv_loop_close(&loop), 0);
    call_free(&seed);
    call_free(&a);
    call_free(&b);
    call_free(&d);
    call_free(&other);
    sift_session_pool_free(p);
}

/* Another server saves between the pool's read and its write: the
 * compare-and-set fails, the pool reads again and keeps all three turns. */
static void race_in(sift_session_store *inner, const char *id)
{
    sift_arena *a = sift_arena_new(4096);
    sift_conv c;
    sift_err err = {0};
    bool found = false;
    sift_conv_init(&c, a);
    must(sift_session_load(inner, id, &c, &found, &err), &err);
    add_turn(&c, "q-race", "a-race");
    must(sift_session_save(inner, id, c.msgs, c.len, &err), &err);
    sift_arena_free(a);
}

static void test_merge_race(void **state)
{
    (void)state;
    uv_loop_t loop;
    sift_err err = {0};
    char q[256];
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_session_pool *p = slow_pool();
    struct call seed, a, b;
    call_init(&seed);
    call_init(&a);
    call_init(&b);
    must(sift_conv_add_system(&seed.conv, "You sell shoes.", &err), &err);
    add_turn(&seed.conv, "q1", "a1");
    run_one(&loop, p, &seed, 1, "s-7");
    run_one(&loop, p, &a, 0, "s-7");
    run_one(&loop, p, &b, 0, "s-7");
    add_turn(&a.conv, "q2a", "a2a");
    add_turn(&b.conv, "q2b", "a2b");
    run_one(&loop, p, &a, 1, "s-7");
    /* b's save: its read sees q2a (merge), then q-race lands before its write */
    g_before_save_if = race_in;
    run_one(&loop, p, &b, 1, "s-7");
    assert_int_equal(b.op.rc, 0);
    assert_true(b.op.merged);
    assert_int_equal(atomic_load(&g_save_ifs), 3); /* a once, b twice */
    questions("s-7", q, sizeof q);
    assert_string_equal(q, "q1|q2a|q-race|q2b");
    assert_int_equal(uv_loop_close(&loop), 0);
    call_free(&seed);
    call_free(&a);
    call_free(&b);
    sift_session_pool_free(p);
}

/* save_if of the memory and SQLite stores: it writes only over the text
 * expected, or, expecting nothing, over no session or an expired one. */
static int64_t g_now = 1000000;
static int64_t fake_clock(void *ud)
{
    (void)ud;
    return g_now;
}

static void check_save_if(sift_session_store *st)
{
    sift_err err = {0};
    sift_arena *ar = sift_arena_new(4096);
    sift_conv v1, v2, v3, got;
    sift_buf j1;
    bool saved = true, found = false;
    sift_conv_init(&v1, ar);
    sift_conv_init(&v2, ar);
    sift_conv_init(&v3, ar);
    sift_conv_init(&got, ar);
    add_turn(&v1, "v1", "x");
    add_turn(&v2, "v2", "x");
    add_turn(&v3, "v3", "x");
    sift_buf_init(&j1, 0);
    must(sift_memory_to_json(v1.msgs, v1.len, &j1, &err), &err);
    must(sift_buf_putc(&j1, 0), &err);
    /* expecting nothing: a new id is written, an existing one is not */
    must(sift_session_save_if(st, "c-1", NULL, v1.msgs, v1.len, &saved, &err), &err);
    assert_true(saved);
    must(sift_session_save_if(st, "c-1", NULL, v2.msgs, v2.len, &saved, &err), &err);
    assert_false(saved);
    /* expecting v1: written once; the second writer expecting v1 loses */
    must(sift_session_save_if(st, "c-1", j1.data, v2.msgs, v2.len, &saved, &err), &err);
    assert_true(saved);
    must(sift_session_save_if(st, "c-1", j1.data, v3.msgs, v3.len, &saved, &err), &err);
    assert_false(saved);
    must(sift_session_load(st, "c-1", &got, &found, &err), &err);
    assert_true(found);
    assert_string_equal(got.msgs[0].content, "v2");
    /* an expired session counts as none */
    g_now += 600000; /* ten minutes, past the 60 s TTL */
    must(sift_session_save_if(st, "c-1", NULL, v3.msgs, v3.len, &saved, &err), &err);
    assert_true(saved);
    sift_buf_free(&j1);
    sift_arena_free(ar);
}

static void test_save_if_stores(void **state)
{
    (void)state;
    sift_session_store *st = NULL;
    sift_err err = {0};
    sift_session_mem_opts mo = {.ttl_ms = 60000, .clock = fake_clock};
    must(sift_session_mem_new(&mo, &st, &err), &err);
    check_save_if(st);
    sift_session_close(st);
    char dir[] = "/tmp/sift-session-cas-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/s.db", dir);
    sift_session_sqlite_opts so = {.ttl_ms = 60000, .clock = fake_clock};
    must(sift_session_sqlite_open(path, &so, &st, &err), &err);
    check_save_if(st);
    sift_session_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* With a TTL, saves purge the rows of expired sessions (at most once per
 * TTL here, since it is under 10 minutes). */
static int count_rows(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM sessions", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_purge_on_save(void **state)
{
    (void)state;
    char dir[] = "/tmp/sift-session-purge-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/s.db", dir);
    sift_session_config c = {.backend = "sqlite", .url = path, .ttl_ms = 500};
    sift_session_pool *p = NULL;
    sift_err err = {0};
    must(sift_session_pool_open(&c, &p, &err), &err);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct call a, b, d;
    call_init(&a);
    call_init(&b);
    call_init(&d);
    add_turn(&a.conv, "old", "x");
    add_turn(&b.conv, "new", "x");
    add_turn(&d.conv, "newer", "x");
    run_one(&loop, p, &a, 1, "s-old");
    assert_int_equal(count_rows(path), 1);
    usleep(600 * 1000); /* s-old expires; the next purge is due */
    run_one(&loop, p, &b, 1, "s-new");
    assert_int_equal(b.op.rc, 0);
    assert_int_equal(count_rows(path), 1); /* s-old purged, s-new kept */
    run_one(&loop, p, &d, 1, "s-newer");
    assert_int_equal(count_rows(path), 2); /* not due again yet: nothing purged */
    assert_int_equal(uv_loop_close(&loop), 0);
    call_free(&a);
    call_free(&b);
    call_free(&d);
    sift_session_pool_free(p);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Sequential calls reuse the one store object opened at start; a store that
 * cannot be opened fails the pool at start with its message; a bad id is
 * refused before anything is queued. */
static void test_open_and_reuse(void **state)
{
    (void)state;
    uv_loop_t loop;
    sift_err err = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    sift_session_pool *p = slow_pool();
    struct call c;
    call_init(&c);
    for (int i = 0; i < 10; i++)
        run_one(&loop, p, &c, 0, "s-5");
    assert_int_equal(atomic_load(&g_opens), 1);
    assert_int_equal(sift_session_pool_load(p, &loop, &c.op, "bad id", &c.conv, on_call_done, &err),
                     SIFT_EINVAL);
    assert_false(sift_session_op_pending(&c.op));
    call_free(&c);
    sift_session_pool_free(p);
    assert_int_equal(uv_loop_close(&loop), 0);

    atomic_store(&g_fail_open, 1);
    sift_session_pool_opts o = {.open = slow_open};
    assert_int_equal(sift_session_pool_new(&o, &p, &err), SIFT_EIO);
    assert_null(p);
    assert_string_equal(err.msg, "slow store: refused");
}

/* sift_session_pool_open over a real SQLite file: two pools (two servers)
 * on one file see each other's sessions. */
static void test_sqlite_shared(void **state)
{
    (void)state;
    char dir[] = "/tmp/sift-session-pool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/s.db", dir);
    sift_session_config c = {.backend = "sqlite", .url = path};
    sift_session_pool *p1 = NULL, *p2 = NULL;
    sift_err err = {0};
    must(sift_session_pool_open(&c, &p1, &err), &err);
    must(sift_session_pool_open(&c, &p2, &err), &err);
    assert_string_equal(sift_session_pool_kind(p1), "sqlite");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct call w, r;
    call_init(&w);
    call_init(&r);
    must(sift_conv_add_system(&w.conv, "You sell shoes.", &err), &err);
    add_turn(&w.conv, "from p1", "ok");
    run_one(&loop, p1, &w, 1, "s-6");
    assert_int_equal(w.op.rc, 0);
    run_one(&loop, p2, &r, 0, "s-6");
    assert_int_equal(r.op.rc, 0);
    assert_true(r.op.found);
    assert_int_equal(r.conv.len, 3);
    assert_string_equal(r.conv.msgs[1].content, "from p1");
    assert_int_equal(uv_loop_close(&loop), 0);
    call_free(&w);
    call_free(&r);
    sift_session_pool_free(p1);
    sift_session_pool_free(p2);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    /* before the loop library starts its pool: two threads make "every
     * thread busy" easy to reach */
    setenv("UV_THREADPOOL_SIZE", "2", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup_teardown(test_loop_not_blocked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_race, setup, teardown),
        cmocka_unit_test(test_save_if_stores),
        cmocka_unit_test_setup_teardown(test_open_and_reuse, setup, teardown),
        cmocka_unit_test(test_sqlite_shared),
        cmocka_unit_test(test_purge_on_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
