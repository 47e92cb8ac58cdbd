/* Integration tests for the OpenAI-compatible embeddings provider (embed.h)
 * against mock_embed (tests/support/mock_embed.h), a real HTTP server on its
 * own thread: batching, the bearer key, retries of 5xx, no retry of 401,
 * malformed answers, cancellation and deadlines on the caller's loop, and a
 * hybrid search whose vectors all come from the remote provider. Every test
 * closes its client and checks that its loop has no handle left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>
#include <math.h>

#include "mock_embed.h"
#include "sift/config.h"
#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/ctx.h"
#include "sift/embed.h"
#include "sift/http.h"
#include "sift/search.h"
#include "sift/shoptools.h"
#include "sift/store.h"
#include "sift/tool.h"

#define KEY "sk-test-0123456789"

typedef struct fixture {
    mock_embed *mock;
    uv_loop_t loop;
    sift_http_client *cli;
    sift_ctx *root;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    sift_err err = {0};
    f->mock = mock_embed_start(&err);
    if (!f->mock) {
        fprintf(stderr, "mock_embed: %s\n", err.msg);
        free(f);
        return -1;
    }
    uv_loop_init(&f->loop);
    f->cli = sift_http_client_new(&f->loop, NULL, &err);
    f->root = sift_ctx_new_root(&f->loop);
    *state = f;
    return f->cli && f->root ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sift_ctx_release(f->root);
    sift_http_client_close(f->cli, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop); /* UV_EBUSY: a handle leaked */
    mock_embed_stop(f->mock);
    free(f);
    assert_int_equal(rc, 0);
    return 0;
}

static sift_embedder *make(fixture *f, size_t dims, size_t batch, int conc, int retries,
                           const char *key, sift_http_client *cli)
{
    sift_openai_embed_opts o = {
        .base_url = mock_embed_base_url(f->mock),
        .model = "test-embed",
        .api_key = key,
        .dims = dims,
        .batch_size = batch,
        .concurrency = conc,
        .max_retries = retries,
        .backoff_ms = 10,
        .timeout_ms = 5000,
    };
    sift_embedder *e = NULL;
    sift_err err = {0};
    int rc = sift_embedder_openai_new(&o, cli, &e, &err);
    if (rc)
        fprintf(stderr, "openai_new: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return e;
}

typedef struct outcome {
    int calls;
    int code;
    char msg[SIFT_ERR_MSG_MAX];
} outcome;

static void on_done(void *ud, int code, const sift_err *err)
{
    outcome *o = ud;
    o->calls++;
    o->code = code;
    snprintf(o->msg, sizeof o->msg, "%s", err ? err->msg : "");
}

/* Runs one asynchronous embed call to its end on the fixture's loop. */
static void run(fixture *f, sift_embedder *e, sift_ctx *ctx, const char *const *texts, size_t n,
                float *out, outcome *o)
{
    memset(o, 0, sizeof *o);
    o->code = 1;
    sift_err err = {0};
    int rc = sift_embedder_embed(e, ctx, texts, NULL, n, out, on_done, o, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(o->calls, 0); /* never from inside embed */
    while (o->calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(o->calls, 1);
}

/* The vector the mock gives `t`, normalised as the provider must. */
static void expect_vec(const char *t, size_t dims, const float *got)
{
    float v[64];
    mock_embed_vector(t, strlen(t), (int)dims, v);
    double ss = 0;
    for (size_t d = 0; d < dims; d++)
        ss += (double)v[d] * v[d];
    for (size_t d = 0; d < dims; d++)
        assert_true(fabs(v[d] / sqrt(ss) - got[d]) < 1e-5);
}

static const char *const ten[] = {"red running shoe", "blue sandal", "giày đá bóng", "",
                                  "trail shoe 42",    "wool sock",   "rain jacket",  "cap",
                                  "\"quoted\"\n",     "tote bag"};

static void test_batches_key_and_vectors(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 4, 2, 0, KEY, f->cli);
    assert_string_equal(e->id, "openai:test-embed:8");
    float out[10 * 8];
    outcome o;
    run(f, e, f->root, ten, 10, out, &o);
    assert_int_equal(o.code, 0);
    /* 10 texts in batches of 4: 3 requests of 4, 4 and 2 inputs */
    assert_int_equal(mock_embed_requests(f->mock), 3);
    int sizes[3] = {0};
    for (int i = 0; i < 3; i++) {
        char *body, *auth;
        assert_int_equal(mock_embed_request(f->mock, i, &body, &auth), 0);
        assert_non_null(auth);
        assert_string_equal(auth, "Bearer " KEY);
        cJSON *j = cJSON_Parse(body);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "test-embed");
        sizes[i] = cJSON_GetArraySize(cJSON_GetObjectItem(j, "input"));
        assert_null(cJSON_GetObjectItem(j, "dimensions"));
        cJSON_Delete(j);
        free(body);
        free(auth);
    }
    /* batches may arrive in any order: two run at once */
    assert_int_equal(sizes[0] + sizes[1] + sizes[2], 10);
    assert_true((sizes[0] == 2) + (sizes[1] == 2) + (sizes[2] == 2) == 1);
    for (size_t i = 0; i < 10; i++)
        expect_vec(ten[i][0] ? ten[i] : " ", 8, out + i * 8);
    sift_embedder_free(e);
}

static void test_no_key_no_header_and_dimensions(void **state)
{
    fixture *f = *state;
    sift_openai_embed_opts o = {
        .base_url = mock_embed_base_url(f->mock), .model = "m", .dims = 16, .send_dimensions = 1};
    sift_embedder *e = NULL;
    assert_int_equal(sift_embedder_openai_new(&o, f->cli, &e, NULL), 0);
    float out[16];
    outcome oc;
    run(f, e, f->root, ten, 1, out, &oc);
    assert_int_equal(oc.code, 0);
    char *body, *auth;
    assert_int_equal(mock_embed_request(f->mock, 0, &body, &auth), 0);
    assert_null(auth);
    assert_non_null(strstr(body, "\"dimensions\":16"));
    free(body);
    expect_vec(ten[0], 16, out);
    sift_embedder_free(e);
}

static void test_sync_without_client(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 3, 2, 0, NULL, NULL);
    float out[10 * 8];
    sift_err err = {0};
    assert_int_equal(sift_embedder_embed_sync(e, ten, NULL, 10, out, &err), 0);
    assert_int_equal(mock_embed_requests(f->mock), 4);
    for (size_t i = 0; i < 10; i++)
        expect_vec(ten[i][0] ? ten[i] : " ", 8, out + i * 8);
    /* no client: the asynchronous path refuses, and says what to do */
    outcome o = {0};
    assert_int_equal(sift_embedder_embed(e, f->root, ten, NULL, 1, out, on_done, &o, &err),
                     SIFT_ESTATE);
    assert_int_equal(o.calls, 0);
    sift_embedder_free(e);
}

static void test_500_retried_then_fails(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 0, 0, 2, KEY, f->cli);
    mock_embed_reply r500 = {.status = 500};
    for (int i = 0; i < 3; i++)
        mock_embed_push(f->mock, &r500);
    float out[8];
    outcome o;
    run(f, e, f->root, ten, 1, out, &o);
    assert_int_equal(o.code, SIFT_EHTTP);
    assert_int_equal(mock_embed_requests(f->mock), 3); /* 1 + 2 retries */
    assert_int_equal(sift_embedder_retries(e), 2);
    assert_non_null(strstr(o.msg, "HTTP 500"));
    assert_non_null(strstr(o.msg, "mock error 500"));
    assert_non_null(strstr(o.msg, "after 3 attempts"));
    sift_embedder_free(e);
}

static void test_500_then_success(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 0, 0, 2, KEY, f->cli);
    mock_embed_reply r500 = {.status = 503}, r429 = {.status = 429, .retry_after_s = 0};
    mock_embed_push(f->mock, &r500);
    mock_embed_push(f->mock, &r429);
    float out[8];
    outcome o;
    run(f, e, f->root, ten, 1, out, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(mock_embed_requests(f->mock), 3);
    assert_int_equal(sift_embedder_retries(e), 2);
    expect_vec(ten[0], 8, out);
    sift_embedder_free(e);
}

/* Retry-After gives the wait; a refused connection is retried too. */
static void test_retry_after_and_refused(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 0, 0, 2, KEY, f->cli);
    mock_embed_reply r429 = {.status = 429, .retry_after_s = 1};
    mock_embed_push(f->mock, &r429);
    float out[8];
    outcome o;
    uv_update_time(&f->loop);
    uint64_t t0 = uv_now(&f->loop);
    run(f, e, f->root, ten, 1, out, &o);
    uv_update_time(&f->loop);
    assert_int_equal(o.code, 0);
    assert_int_equal(mock_embed_requests(f->mock), 2);
    assert_true(uv_now(&f->loop) - t0 >= 990); /* not the 10 ms backoff */
    sift_embedder_free(e);

    /* nothing listens on port 1 */
    sift_openai_embed_opts oo = {.base_url = "http://127.0.0.1:1/v1",
                                 .model = "m",
                                 .dims = 8,
                                 .max_retries = 1,
                                 .backoff_ms = 10};
    assert_int_equal(sift_embedder_openai_new(&oo, f->cli, &e, NULL), 0);
    run(f, e, f->root, ten, 1, out, &o);
    assert_int_equal(o.code, SIFT_EIO);
    assert_non_null(strstr(o.msg, "127.0.0.1:1/v1/embeddings"));
    assert_non_null(strstr(o.msg, "after 2 attempts"));
    sift_embedder_free(e);
}

static void test_401_not_retried(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 0, 0, 3, KEY, f->cli);
    mock_embed_reply r401 = {.status = 401};
    mock_embed_push(f->mock, &r401);
    float out[8];
    outcome o;
    run(f, e, f->root, ten, 1, out, &o);
    assert_int_equal(o.code, SIFT_EHTTP);
    assert_int_equal(mock_embed_requests(f->mock), 1);
    assert_non_null(strstr(o.msg, "HTTP 401"));
    assert_non_null(strstr(o.msg, "API key was refused"));
    assert_int_equal(sift_embedder_retries(e), 0);
    assert_null(strstr(o.msg, KEY)); /* never the secret */
    sift_embedder_free(e);
}

static void expect_fault(fixture *f, int fault, const char *needle)
{
    sift_embedder *e = make(f, 8, 0, 0, 3, NULL, f->cli);
    mock_embed_reply r = {.fault = fault};
    mock_embed_push(f->mock, &r);
    float out[3 * 8];
    outcome o;
    int before = mock_embed_requests(f->mock);
    run(f, e, f->root, ten, 3, out, &o);
    assert_int_equal(o.code, SIFT_EPROTO);
    if (!strstr(o.msg, needle))
        fail_msg("\"%s\" does not say \"%s\"", o.msg, needle);
    assert_int_equal(mock_embed_requests(f->mock) - before, 1); /* not retried */
    sift_embedder_free(e);
}

static void test_malformed_answers(void **state)
{
    fixture *f = *state;
    expect_fault(f, MOCK_EMBED_MALFORMED, "not a JSON object");
    expect_fault(f, MOCK_EMBED_WRONG_DIMS, "7 numbers, expected 8");
    expect_fault(f, MOCK_EMBED_NO_INDEX, "no numeric \"index\"");
    expect_fault(f, MOCK_EMBED_NON_NUMERIC, "component 0 is not a finite number");
    expect_fault(f, MOCK_EMBED_TOO_FEW, "2 items for 3 inputs");
    /* the answer is the right shape, but the model gives 16, not 8 */
    mock_embed_set_dims(f->mock, 16);
    expect_fault(f, MOCK_EMBED_OK, "16 numbers, expected 8");
}

static void cancel_cb(uv_timer_t *t)
{
    sift_ctx_cancel(t->data, SIFT_ECANCELED, "shopper went away");
}

static void test_cancel_and_deadline(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 0, 0, 3, NULL, f->cli);
    mock_embed_reply slow = {.delay_ms = 5000};
    float out[8];
    outcome o;

    /* cancellation: the call ends at once, with the context's cause */
    mock_embed_push(f->mock, &slow);
    sift_ctx *ctx = sift_ctx_new(f->root);
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = ctx;
    uv_timer_start(&t, cancel_cb, 50, 0);
    uint64_t t0 = uv_now(&f->loop);
    run(f, e, ctx, ten, 1, out, &o);
    uv_update_time(&f->loop);
    assert_int_equal(o.code, SIFT_ECANCELED);
    assert_non_null(strstr(o.msg, "shopper went away"));
    assert_true(uv_now(&f->loop) - t0 < 2000);
    sift_ctx_release(ctx);
    uv_close((uv_handle_t *)&t, NULL);

    /* deadline */
    mock_embed_push(f->mock, &slow);
    ctx = sift_ctx_new_timeout(f->root, 100);
    t0 = uv_now(&f->loop);
    run(f, e, ctx, ten, 1, out, &o);
    uv_update_time(&f->loop);
    assert_int_equal(o.code, SIFT_ETIMEDOUT);
    assert_true(uv_now(&f->loop) - t0 < 2000);
    sift_ctx_release(ctx);

    /* a context that is already done refuses the call: done never fires */
    ctx = sift_ctx_new(f->root);
    sift_ctx_cancel(ctx, SIFT_ECANCELED, NULL);
    o.calls = 0;
    assert_int_equal(sift_embedder_embed(e, ctx, ten, NULL, 1, out, on_done, &o, NULL),
                     SIFT_ECANCELED);
    sift_ctx_release(ctx);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(o.calls, 0);

    /* the server saw both clients go */
    for (int i = 0; i < 200 && mock_embed_disconnects(f->mock) < 2; i++)
        usleep(10000);
    assert_int_equal(mock_embed_disconnects(f->mock), 2);
    sift_embedder_free(e);
}

/* One failing batch cancels the batches still in flight. */
static void test_fail_fast(void **state)
{
    fixture *f = *state;
    sift_embedder *e = make(f, 8, 2, 4, 0, NULL, f->cli);
    mock_embed_reply slow = {.delay_ms = 5000}, r400 = {.status = 400, .delay_ms = 50};
    mock_embed_push(f->mock, &r400);
    for (int i = 0; i < 3; i++)
        mock_embed_push(f->mock, &slow);
    float out[8 * 8];
    outcome o;
    uint64_t t0 = uv_now(&f->loop);
    run(f, e, f->root, ten, 8, out, &o);
    uv_update_time(&f->loop);
    assert_int_equal(o.code, SIFT_EHTTP);
    assert_non_null(strstr(o.msg, "HTTP 400"));
    assert_true(uv_now(&f->loop) - t0 < 2000);
    sift_embedder_free(e);
}

static void test_bad_options(void **state)
{
    fixture *f = *state;
    sift_embedder *e = NULL;
    sift_err err = {0};
    sift_openai_embed_opts o = {.base_url = "ftp://x", .model = "m", .dims = 8};
    assert_int_equal(sift_embedder_openai_new(&o, f->cli, &e, &err), SIFT_EINVAL);
    o.base_url = "http://x/v1";
    o.dims = 0;
    assert_int_equal(sift_embedder_openai_new(&o, f->cli, &e, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "embed.dimensions"));
    o.dims = 8;
    o.api_key = "abc\n";
    assert_int_equal(sift_embedder_openai_new(&o, f->cli, &e, &err), SIFT_EINVAL);
    assert_null(strstr(err.msg, "abc"));
    assert_null(e);
}

/* Every allocation of the provider and of its call may fail: the
 * constructor and embed refuse cleanly (done never fires), or the call ends
 * once with SIFT_ENOMEM (or succeeds); nothing leaks (ASan) and no handle is
 * left (teardown). Each round has a fresh HTTP client, so that the
 * allocations of its first connection (the socket watch) fail too; the
 * timeout is long, so a transfer stuck after such a failure would show as
 * SIFT_ETIMEDOUT, which is refused. */
static void test_out_of_memory(void **state)
{
    fixture *f = *state;
    int ok = 0, watch_failed = 0;
    for (long k = 0; k < 400 && ok < 3; k++) {
        sift_err cerr = {0};
        sift_http_client *cli = sift_http_client_new(&f->loop, NULL, &cerr);
        assert_non_null(cli);
        sift_openai_embed_opts o = {.base_url = mock_embed_base_url(f->mock),
                                    .model = "m",
                                    .api_key = KEY,
                                    .dims = 8,
                                    .batch_size = 2,
                                    .timeout_ms = 5000,
                                    .max_retries = -1};
        sift_embedder *e = NULL;
        sift_err err = {0};
        sift_mem_fail_after(k);
        int rc = sift_embedder_openai_new(&o, cli, &e, &err);
        if (rc) {
            sift_mem_fail_after(-1);
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_null(e);
            sift_http_client_close(cli, NULL, NULL);
            continue;
        }
        float out[5 * 8];
        outcome oc = {.code = 1};
        rc = sift_embedder_embed(e, f->root, ten, NULL, 5, out, on_done, &oc, &err);
        if (rc == 0) {
            while (!oc.calls)
                uv_run(&f->loop, UV_RUN_ONCE);
        }
        sift_mem_fail_after(-1);
        if (rc)
            assert_int_equal(oc.calls, 0);
        else
            assert_int_equal(oc.calls, 1);
        int code = rc ? rc : oc.code;
        if (code == 0)
            ok++;
        else if (code != SIFT_ENOMEM && code != SIFT_EIO)
            fail_msg("k=%ld: code %d: %s", k, code, rc ? err.msg : oc.msg);
        if (!rc && strstr(oc.msg, "watching the connection's socket"))
            watch_failed++;
        sift_embedder_free(e);
        sift_http_client_close(cli, NULL, NULL);
    }
    assert_int_equal(ok, 3);
    assert_true(watch_failed > 0); /* the path this test is about was reached */
}

/* ---- hybrid search with the remote provider ---- */

static void put(sift_store *st, const char *sku, const char *title, const char *brand,
                const char *category)
{
    sift_product p = {.sku = sku,
                      .parent_id = "",
                      .title = title,
                      .brand = brand,
                      .category = category,
                      .description = "",
                      .version = 1};
    sift_err e = {0};
    int applied = 0;
    assert_int_equal(sift_store_upsert_product(st, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
}

static void test_hybrid_search_remote(void **state)
{
    fixture *f = *state;
    sift_store *st = NULL;
    sift_err err = {0};
    assert_int_equal(sift_store_sqlite_open(":memory:", NULL, &st, &err), 0);
    char sku[32], title[64];
    for (int i = 0; i < 25; i++) {
        snprintf(sku, sizeof sku, "SKU-%02d", i);
        snprintf(title, sizeof title, "Product number %d", i);
        put(st, sku, title, i % 2 ? "Acme" : "Zenith", "Things");
    }
    put(st, "SOFA-1", "Grey three seat sofa", "Homely", "Furniture");

    /* open: 26 products embedded through the mock, 8 per request, 3 at once */
    sift_embedder *e = make(f, 32, 8, 3, 1, KEY, f->cli);
    mock_embed_set_dims(f->mock, 32);
    sift_searcher_opts so = {.embedder = e};
    sift_searcher *se = NULL;
    if (sift_searcher_open(st, &so, &se, &err))
        fail_msg("open: %s", err.msg);
    assert_int_equal(mock_embed_requests(f->mock), 4); /* 8 + 8 + 8 + 2 */
    assert_string_equal(sift_searcher_vector_id(se), "openai:test-embed:32");
    assert_int_equal(sift_searcher_remote(se), 1);
    assert_int_equal(sift_searcher_dims(se), 32);

    /* the query vector, fetched on the loop before the search runs; the
     * query is the sofa's own embed text, so its cosine is 1 */
    const char *q = "Grey three seat sofa Homely Furniture";
    float qv[32];
    outcome o = {.code = 1};
    assert_int_equal(sift_searcher_embed_query(se, f->root, q, qv, on_done, &o, &err), 0);
    while (!o.calls)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(o.code, 0);
    assert_int_equal(mock_embed_requests(f->mock), 5);

    sift_arena *a = sift_arena_new(0);
    sift_search_hit *hits;
    size_t n;
    sift_search_opts opt = {.k = 5, .query_vec = qv, .query_vec_id = sift_searcher_vector_id(se)};
    assert_int_equal(sift_search(se, NULL, q, &opt, a, &hits, &n, &err), 0);
    assert_true(n >= 1);
    assert_string_equal(hits[0].sku, "SOFA-1");
    assert_int_equal(hits[0].vec_rank, 1);
    assert_int_equal(hits[0].lex_rank, 1);
    opt.mode = SIFT_SEARCH_VECTOR;
    assert_int_equal(sift_search(se, NULL, "anything", &opt, a, &hits, &n, &err), 0);
    assert_string_equal(hits[0].sku, "SOFA-1");

    /* vectors of another embedder are refused, not compared */
    opt.query_vec_id = "hashed:32:w2:g1";
    assert_int_equal(sift_search(se, NULL, q, &opt, a, &hits, &n, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "built by openai:test-embed:32"));
    /* and without a vector the searcher does not block on the network */
    opt.query_vec = NULL;
    opt.mode = SIFT_SEARCH_HYBRID;
    assert_int_equal(sift_search(se, NULL, q, &opt, a, &hits, &n, &err), SIFT_ESTATE);
    assert_int_equal(mock_embed_requests(f->mock), 5);
    /* lexical mode needs no vector */
    opt.mode = SIFT_SEARCH_LEXICAL;
    assert_int_equal(sift_search(se, NULL, q, &opt, a, &hits, &n, &err), 0);
    assert_string_equal(hits[0].sku, "SOFA-1");
    sift_arena_free(a);
    sift_searcher_close(se);

    /* a failing provider fails open with its message (and frees it) */
    mock_embed_reply r401 = {.status = 401};
    mock_embed_push(f->mock, &r401);
    so.embedder = make(f, 32, 8, 1, 1, KEY, f->cli);
    assert_int_equal(sift_searcher_open(st, &so, &se, &err), SIFT_EHTTP);
    assert_non_null(strstr(err.msg, "HTTP 401"));
    assert_null(se);
    sift_store_close(st);
}

/* ---- the search_products tool with the remote provider ---- */

struct tool_outcome {
    int calls;
    int code;
    char result[2048];
};

static void on_tool_done(sift_tool_job *job, void *data)
{
    struct tool_outcome *o = data;
    o->calls++;
    o->code = job->code;
    snprintf(o->result, sizeof o->result, "%s", job->result ? job->result : "");
}

static void run_tool(fixture *f, const sift_tool *t, sift_ctx *ctx, const char *args,
                     struct tool_outcome *o)
{
    memset(o, 0, sizeof *o);
    sift_arena *a = sift_arena_new(0);
    sift_tool_job job;
    sift_tool_job_init(&job, t, ctx, a, NULL, on_tool_done, o);
    sift_tool_job_start(&job, args, strlen(args));
    while (!o->calls)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(o->calls, 1);
    sift_arena_free(a);
}

static void test_shop_tool_remote(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/sift-embed-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/store.db", dir);
    sift_store *st = NULL;
    sift_err err = {0};
    assert_int_equal(sift_store_sqlite_open(path, NULL, &st, &err), 0);
    put(st, "SOFA-1", "Grey three seat sofa", "Homely", "Furniture");
    put(st, "LAMP-1", "Brass floor lamp", "Homely", "Lighting");
    put(st, "RUG-1", "Wool rug", "Homely", "Textiles");
    sift_store_close(st);

    mock_embed_set_dims(f->mock, 16);
    sift_searcher_opts so = {.embedder = make(f, 16, 0, 0, 1, KEY, f->cli)};
    sift_searcher *se = NULL;
    if (sift_searcher_open_sqlite(path, &so, &se, &err))
        fail_msg("open: %s", err.msg);
    sift_shop_opts sho = {.store_path = path, .searcher = se};
    sift_shop *shop = NULL;
    assert_int_equal(sift_shop_new(&sho, &shop, &err), 0);
    const sift_tool *t = sift_shop_tool(shop, "search_products");
    int before = mock_embed_requests(f->mock);

    /* the query vector comes from the provider, on the loop */
    struct tool_outcome o;
    run_tool(f, t, f->root, "{\"query\":\"couch\"}", &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(mock_embed_requests(f->mock), before + 1);
    char *body, *auth;
    assert_int_equal(mock_embed_request(f->mock, before, &body, &auth), 0);
    assert_non_null(strstr(body, "\"input\":[\"couch\"]"));
    assert_string_equal(auth, "Bearer " KEY);
    free(body);
    free(auth);
    /* "couch" shares no word with any title: only the vector list finds
     * anything, so a product in the result proves the vector was used */
    assert_non_null(strstr(o.result, "\"sku\":\""));

    /* the provider fails: lexical only, the call still answers */
    mock_embed_reply r401 = {.status = 401};
    mock_embed_push(f->mock, &r401);
    run_tool(f, t, f->root, "{\"query\":\"sofa\"}", &o);
    assert_int_equal(o.code, 0);
    assert_non_null(strstr(o.result, "SOFA-1"));

    /* the run's deadline reaches the embedding request */
    mock_embed_reply slow = {.delay_ms = 5000};
    mock_embed_push(f->mock, &slow);
    sift_ctx *ctx = sift_ctx_new_timeout(f->root, 100);
    uint64_t t0 = uv_now(&f->loop);
    run_tool(f, t, ctx, "{\"query\":\"sofa\"}", &o);
    uv_update_time(&f->loop);
    assert_int_equal(o.code, SIFT_ETIMEDOUT);
    assert_true(uv_now(&f->loop) - t0 < 2000);
    sift_ctx_release(ctx);

    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(sift_shop_inflight(shop), 0);
    sift_shop_free(shop);
    sift_searcher_close(se);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[96];
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* ---- configuration ---- */

static int read_yaml(const char *yaml, sift_embed_config *c, sift_err *err)
{
    cJSON *doc = sift_yaml_to_json("t.yaml", yaml, strlen(yaml), err);
    assert_non_null(doc);
    int rc = sift_embed_config_read(doc, "t.yaml", c, err);
    cJSON_Delete(doc);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    unsetenv("SIFT_EMBED_BASE_URL");
    unsetenv("SIFT_EMBED_PROVIDER");
    unsetenv("SIFT_EMBED_MODEL");
    unsetenv("SIFT_EMBED_API_KEY");
    unsetenv("OPENAI_API_KEY");
    sift_embed_config c;
    sift_err err = {0};
    /* defaults: the built-in embedder */
    assert_int_equal(sift_embed_config_read(NULL, "t", &c, &err), 0);
    assert_string_equal(c.provider, "hashed");
    assert_int_equal(c.dims, 256);
    assert_int_equal(c.query_cache, 1024);
    sift_embedder *e = NULL;
    assert_int_equal(sift_embed_config_embedder(&c, NULL, NULL, &e, &err), 0);
    assert_string_equal(e->id, "hashed:256:w2:g1");
    assert_int_equal(e->remote, 0);
    sift_embedder_free(e);
    sift_embed_config_free(&c);

    assert_int_equal(read_yaml("embed:\n  provider: openai\n  base_url: http://127.0.0.1:1/v1\n"
                               "  model: nomic-embed-text\n  dimensions: 768\n  batch_size: 16\n"
                               "  send_dimensions: true\n  max_retries: 0\n",
                               &c, &err),
                     0);
    assert_string_equal(c.provider, "openai");
    assert_int_equal(c.dims, 768);
    assert_int_equal(c.batch_size, 16);
    assert_int_equal(c.send_dimensions, 1);
    assert_null(c.api_key);
    assert_int_equal(c.query_cache, 1024);
    assert_int_equal(sift_embed_config_embedder(&c, NULL, NULL, &e, &err), 0);
    assert_string_equal(e->id, "openai:nomic-embed-text:768");
    assert_int_equal(e->remote, 1);
    sift_embedder_free(e);
    sift_embed_config_free(&c);

    /* errors name the key */
    assert_int_equal(read_yaml("embed:\n  provider: openai\n", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "t.yaml: embed.dimensions: required"));
    assert_int_equal(read_yaml("embed:\n  provider: bert\n", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "embed.provider: must be one of hashed, openai"));
    assert_int_equal(read_yaml("embed:\n  dimensions: 99999\n", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "embed.dimensions: must be an integer between 1 and 4096"));
    assert_int_equal(read_yaml("embed:\n  query_cache: 0\n", &c, &err), 0);
    assert_int_equal(c.query_cache, 0); /* 0: no cache */
    sift_embed_config_free(&c);
    assert_int_equal(read_yaml("embed:\n  query_cache: -1\n", &c, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "embed.query_cache: must be an integer between 0 and 1048576"));
    assert_int_equal(read_yaml("embed:\n  send_dimensions: 3\n", &c, &err), SIFT_EINVAL);

    /* the environment: a base URL selects openai; OPENAI_API_KEY only goes
     * to api.openai.com */
    setenv("SIFT_EMBED_BASE_URL", "http://127.0.0.1:9/v1", 1);
    setenv("OPENAI_API_KEY", "sk-openai", 1);
    assert_int_equal(read_yaml("embed:\n  dimensions: 8\n", &c, &err), 0);
    assert_string_equal(c.provider, "openai");
    assert_string_equal(c.base_url, "http://127.0.0.1:9/v1");
    assert_null(c.api_key);
    sift_embed_config_free(&c);
    setenv("SIFT_EMBED_API_KEY", "sk-local", 1);
    setenv("SIFT_EMBED_MODEL", "m2", 1);
    assert_int_equal(read_yaml("embed:\n  dimensions: 8\n  api_key: from-file\n", &c, &err), 0);
    assert_string_equal(c.api_key, "sk-local");
    assert_string_equal(c.model, "m2");
    sift_embed_config_free(&c);
    unsetenv("SIFT_EMBED_BASE_URL");
    unsetenv("SIFT_EMBED_API_KEY");
    unsetenv("SIFT_EMBED_MODEL");
    assert_int_equal(read_yaml("embed:\n  provider: openai\n  dimensions: 8\n", &c, &err), 0);
    assert_string_equal(c.base_url, "https://api.openai.com/v1");
    assert_string_equal(c.api_key, "sk-openai");
    sift_embed_config_free(&c);
    unsetenv("OPENAI_API_KEY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches_key_and_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_key_no_header_and_dimensions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_without_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_retried_then_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_and_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hybrid_search_remote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shop_tool_remote, setup, teardown),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
