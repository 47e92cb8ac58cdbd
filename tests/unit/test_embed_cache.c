/* The query-vector cache (CLOCK) and the serving wrapper: cache per loop,
 * metrics of the calls it forwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/ctx.h"
#include "sift/embed.h"
#include "sift/metrics.h"

#define DIMS 4

static void vec(float *v, float x)
{
    for (int i = 0; i < DIMS; i++)
        v[i] = x + (float)i;
}

static int has(sift_embed_cache *c, const char *id, const char *text, float want)
{
    float v[DIMS], w[DIMS];
    if (!sift_embed_cache_get(c, id, text, strlen(text), v))
        return 0;
    vec(w, want);
    assert_memory_equal(v, w, sizeof v);
    return 1;
}

static void put(sift_embed_cache *c, const char *id, const char *text, float x)
{
    float v[DIMS];
    vec(v, x);
    assert_int_equal(sift_embed_cache_put(c, id, text, strlen(text), v), 0);
}

static void test_get_put_normalise(void **state)
{
    (void)state;
    sift_embed_cache *c;
    sift_err err;
    assert_int_equal(sift_embed_cache_new(8, DIMS, &c, &err), 0);
    assert_false(has(c, "m1", "nike shoes", 1));
    put(c, "m1", "nike shoes", 1);
    assert_true(has(c, "m1", "nike shoes", 1));
    /* white space is normalised, case is not (a model may tell them apart) */
    assert_true(has(c, "m1", "  nike \t\n shoes ", 1));
    assert_false(has(c, "m1", "Nike shoes", 1));
    assert_false(has(c, "m1", "nikeshoes", 1));
    /* another embedder's vectors are another key */
    assert_false(has(c, "m2", "nike shoes", 1));
    /* the same key again replaces the vector, not adds an entry */
    put(c, "m1", " nike shoes", 7);
    assert_true(has(c, "m1", "nike shoes", 7));
    assert_int_equal(sift_embed_cache_count(c), 1);
    /* empty text is a key like any other */
    put(c, "m1", "", 3);
    assert_true(has(c, "m1", "   ", 3));
    /* a text over the limit is never cached, and that is not an error */
    static char big[SIFT_EMBED_CACHE_TEXT_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    put(c, "m1", big, 5);
    assert_false(has(c, "m1", big, 5));
    big[SIFT_EMBED_CACHE_TEXT_MAX] = '\0'; /* exactly the limit: cached */
    put(c, "m1", big, 6);
    assert_true(has(c, "m1", big, 6));
    assert_int_equal(sift_embed_cache_count(c), 3);
    sift_embed_cache_free(c);

    assert_int_equal(sift_embed_cache_new(0, DIMS, &c, &err), SIFT_EINVAL);
    assert_null(c);
    assert_int_equal(sift_embed_cache_new(4, 0, &c, &err), SIFT_EINVAL);
    assert_int_equal(sift_embed_cache_new((1u << 20) + 1, DIMS, &c, &err), SIFT_EINVAL);
    sift_embed_cache_free(NULL);
}

/* CLOCK: a text asked again survives the next eviction, one asked once goes. */
static void test_clock_eviction(void **state)
{
    (void)state;
    sift_embed_cache *c;
    sift_err err;
    assert_int_equal(sift_embed_cache_new(3, DIMS, &c, &err), 0);
    put(c, "m", "a", 1);
    put(c, "m", "b", 2);
    put(c, "m", "c", 3);
    assert_true(has(c, "m", "a", 1)); /* a gets its reference bit */
    put(c, "m", "d", 4);              /* hand: a (bit cleared), b evicted */
    assert_int_equal(sift_embed_cache_count(c), 3);
    assert_false(has(c, "m", "b", 2));
    assert_true(has(c, "m", "c", 3)); /* c and d earn bits, a's was cleared */
    assert_true(has(c, "m", "d", 4));
    /* the hand stands at c (slot 2): c's bit is cleared, then a (slot 0,
     * whose bit the last round cleared) is the victim */
    put(c, "m", "e", 5);
    assert_false(has(c, "m", "a", 1));
    assert_true(has(c, "m", "c", 3));
    assert_true(has(c, "m", "d", 4));
    assert_true(has(c, "m", "e", 5));
    /* every entry referenced: the hand goes round once and takes the first */
    put(c, "m", "f", 6);
    assert_int_equal(sift_embed_cache_count(c), 3);
    int left = has(c, "m", "c", 3) + has(c, "m", "d", 4) + has(c, "m", "e", 5);
    assert_int_equal(left, 2);
    assert_true(has(c, "m", "f", 6));
    sift_embed_cache_free(c);
}

/* Many keys through a small cache: chains stay consistent under eviction. */
static void test_churn(void **state)
{
    (void)state;
    sift_embed_cache *c;
    sift_err err;
    assert_int_equal(sift_embed_cache_new(16, DIMS, &c, &err), 0);
    char t[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(t, sizeof t, "query %d", i);
        put(c, "m", t, (float)i);
        assert_true(has(c, "m", t, (float)i));
        if (i % 3 == 0) { /* re-ask an older one, if it is still there */
            int old = i / 2;
            snprintf(t, sizeof t, "query %d", old);
            (void)has(c, "m", t, (float)old);
        }
    }
    assert_int_equal(sift_embed_cache_count(c), 16);
    int found = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(t, sizeof t, "query %d", i);
        found += has(c, "m", t, (float)i);
    }
    assert_int_equal(found, 16);
    sift_embed_cache_free(c);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    sift_err err;
    sift_embed_cache *c;
    for (long n = 0; n < 5; n++) {
        sift_mem_fail_after(n);
        int rc = sift_embed_cache_new(4, DIMS, &c, &err);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            sift_embed_cache_free(c);
            break;
        }
        assert_int_equal(rc, SIFT_ENOMEM);
        assert_null(c);
    }
    assert_int_equal(sift_embed_cache_new(4, DIMS, &c, &err), 0);
    put(c, "m", "warm", 1); /* the key buffer has its memory now */
    float v[DIMS];
    vec(v, 2);
    sift_mem_fail_after(0);
    assert_int_equal(sift_embed_cache_put(c, "m", "new", 3, v), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    assert_int_equal(sift_embed_cache_count(c), 1);
    assert_false(has(c, "m", "new", 2));
    assert_true(has(c, "m", "warm", 1));
    sift_embed_cache_free(c);
}

/* ---- the wrapper, over a provider that counts and fails on demand ---- */

typedef struct fake {
    sift_embedder base;
    int calls, texts, fail_next, sync_calls;
    int freed;
} fake;

static int fake_embed(sift_embedder *e, struct sift_ctx *ctx, const char *const *texts,
                      const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                      sift_err *err)
{
    (void)ctx;
    (void)err;
    fake *f = (fake *)e;
    f->calls++;
    f->texts += (int)n;
    for (size_t i = 0; i < n; i++)
        vec(out + i * DIMS, (float)(lens ? lens[i] : strlen(texts[i])));
    if (f->fail_next) {
        f->fail_next = 0;
        sift_err e2;
        sift_err_set(&e2, SIFT_EIO, "provider down");
        done(ud, SIFT_EIO, &e2);
    } else {
        done(ud, 0, NULL);
    }
    return 0;
}

static int fake_sync(sift_embedder *e, const char *const *texts, const size_t *lens, size_t n,
                     float *out, sift_err *err)
{
    (void)err;
    fake *f = (fake *)e;
    f->sync_calls++;
    f->texts += (int)n;
    for (size_t i = 0; i < n; i++)
        vec(out + i * DIMS, (float)(lens ? lens[i] : strlen(texts[i])));
    return 0;
}

static uint64_t fake_retries(sift_embedder *e)
{
    (void)e;
    return 7;
}

static int frees;
static void fake_free(sift_embedder *e)
{
    (void)e;
    frees++;
}

static const sift_embedder_ops fake_ops = {.name = "fake",
                                           .embed = fake_embed,
                                           .embed_sync = fake_sync,
                                           .free = fake_free,
                                           .retries = fake_retries};

struct done_rec {
    int calls, code;
};

static void on_done(void *ud, int code, const sift_err *err)
{
    (void)err;
    struct done_rec *d = ud;
    d->calls++;
    d->code = code;
}

static void test_wrapper(void **state)
{
    (void)state;
    fake f = {.base = {.ops = &fake_ops, .dims = DIMS, .id = "fake:4", .remote = 1}};
    sift_metrics *m = sift_metrics_new();
    static const char *const outcomes[] = {"ok", "deadline_exceeded", "cancelled", "error", NULL};
    static const char *const results[] = {"hit", "miss", NULL};
    static const double b[] = {0.1, 1};
    sift_embed_wrap_opts o = {
        .query_cache = 4,
        .seconds = sift_metrics_histogram(m, "s", "s", "outcome", outcomes, 0, b, 2),
        .texts = sift_metrics_counter(m, "t", "t", NULL, NULL, 0),
        .retries = sift_metrics_counter(m, "r", "r", NULL, NULL, 0),
        .cache = sift_metrics_counter(m, "c", "c", "result", results, 0),
    };
    sift_embedder *w;
    sift_err err;
    frees = 0;
    assert_int_equal(sift_embedder_wrap_new(&f.base, &o, &w, &err), 0);
    assert_string_equal(w->id, "fake:4");
    assert_int_equal(w->dims, DIMS);
    assert_int_equal(w->remote, 1);
    assert_int_equal(sift_embedder_retries(w), 7);

    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *ctx = sift_ctx_new_root(&loop);
    const char *q = "running shoes";
    float v[DIMS], want[DIMS];
    vec(want, (float)strlen(q));
    struct done_rec d = {0};
    /* miss, forwarded, stored */
    assert_int_equal(sift_embedder_embed(w, ctx, &q, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(f.calls, 1);
    /* hit: answered before embed returns, the provider not called */
    memset(v, 0, sizeof v);
    const char *q2 = " running  shoes ";
    assert_int_equal(sift_embedder_embed(w, ctx, &q2, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(d.calls, 2);
    assert_int_equal(d.code, 0);
    assert_int_equal(f.calls, 1);
    assert_memory_equal(v, want, sizeof v);
    assert_int_equal(sift_metric_value(o.cache, "hit"), 1);
    assert_int_equal(sift_metric_value(o.cache, "miss"), 1);
    assert_int_equal(sift_metric_value(o.texts, NULL), 1);
    assert_int_equal(sift_metric_value(o.seconds, "ok"), 1);
    assert_int_equal(sift_metric_value(o.retries, NULL), 7);

    /* a failed call is counted as an error and not cached */
    const char *q3 = "sandals";
    f.fail_next = 1;
    assert_int_equal(sift_embedder_embed(w, ctx, &q3, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(d.code, SIFT_EIO);
    assert_int_equal(sift_metric_value(o.seconds, "error"), 1);
    assert_int_equal(sift_embedder_embed(w, ctx, &q3, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(d.code, 0);
    assert_int_equal(f.calls, 3);
    assert_int_equal(sift_metric_value(o.cache, "miss"), 3);

    /* no context (no loop), several texts, and embed_sync: never cached */
    assert_int_equal(sift_embedder_embed(w, NULL, &q, NULL, 1, v, on_done, &d, &err), 0);
    const char *two[] = {"a", "bb"};
    float v2[2 * DIMS];
    assert_int_equal(sift_embedder_embed(w, ctx, two, NULL, 2, v2, on_done, &d, &err), 0);
    assert_int_equal(sift_embedder_embed_sync(w, two, NULL, 2, v2, &err), 0);
    assert_int_equal(f.calls, 5);
    assert_int_equal(f.sync_calls, 1);
    assert_int_equal(sift_metric_value(o.cache, "hit") + sift_metric_value(o.cache, "miss"), 4);
    assert_int_equal(sift_metric_value(o.texts, NULL), 1 + 1 + 1 + 2 + 2);
    assert_int_equal(sift_metric_value(o.seconds, "ok"), 5);

    /* another loop has a cache of its own */
    uv_loop_t loop2;
    uv_loop_init(&loop2);
    sift_ctx *ctx2 = sift_ctx_new_root(&loop2);
    assert_int_equal(sift_embedder_embed(w, ctx2, &q, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(f.calls, 6);
    assert_int_equal(sift_embedder_embed(w, ctx2, &q, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(f.calls, 6);
    sift_ctx_release(ctx2);
    uv_run(&loop2, UV_RUN_DEFAULT);
    uv_loop_close(&loop2);

    sift_embedder_free(w);
    assert_int_equal(frees, 1);

    /* query_cache 0: no lookups at all; and no metrics is fine */
    sift_embed_wrap_opts none = {0};
    f.calls = 0;
    assert_int_equal(sift_embedder_wrap_new(&f.base, &none, &w, &err), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sift_embedder_embed(w, ctx, &q, NULL, 1, v, on_done, &d, &err), 0);
    assert_int_equal(f.calls, 2);
    sift_embedder_free(w);
    assert_int_equal(frees, 2);

    /* bad arguments: the inner provider is freed all the same */
    assert_int_equal(sift_embedder_wrap_new(NULL, &none, &w, &err), SIFT_EINVAL);
    sift_embed_wrap_opts huge = {.query_cache = (1u << 20) + 1};
    assert_int_equal(sift_embedder_wrap_new(&f.base, &huge, &w, &err), SIFT_EINVAL);
    assert_null(w);
    assert_int_equal(frees, 3);

    /* out of memory: making the wrapper (the inner provider is freed), and
     * a forwarded call (refused, `done` never fires) */
    sift_mem_fail_after(0);
    assert_int_equal(sift_embedder_wrap_new(&f.base, &none, &w, &err), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    assert_null(w);
    assert_int_equal(frees, 4);
    assert_int_equal(sift_embedder_wrap_new(&f.base, &none, &w, &err), 0);
    d.calls = 0;
    f.calls = 0;
    sift_mem_fail_after(0);
    assert_int_equal(sift_embedder_embed(w, ctx, &q, NULL, 1, v, on_done, &d, &err), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    assert_int_equal(d.calls, 0);
    assert_int_equal(f.calls, 0);
    sift_embedder_free(w);

    sift_ctx_release(ctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sift_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_normalise),
        cmocka_unit_test(test_clock_eviction),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_wrapper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
