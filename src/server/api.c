/* The HTTP API: /v1/search streams an agent run's events over SSE. The
 * admission and run machinery here is shared with the OpenAI-compatible
 * routes of chat.c through api_int.h. */
#include <cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sift/agent.h"
#include "sift/api.h"
#include "sift/embed.h"
#include "sift/events.h"
#include "sift/httptool.h"
#include "sift/log.h"
#include "sift/memory.h"
#include "sift/metrics.h"
#include "sift/pgstore.h"
#include "sift/search.h"
#include "sift/session.h"
#include "sift/shoptools.h"
#include "api_int.h"

#define MAX_WORKERS 1024
#define LAG_PERIOD_MS 100
#define TOOL_LABELS 32

struct worker_res {
    uv_loop_t *loop;
    sift_http_client *http;
    sift_model *model;
    sift_api *api;
    uv_timer_t lag;      /* fires every LAG_PERIOD_MS; how late it fires is the loop lag */
    uint64_t lag_expect; /* uv_hrtime() at which it should fire next */
    /* PostgreSQL: this loop's pool counters as last added to the metrics */
    int64_t pg_seen[6];
};

/* Metric families, registered once in sift_api_new. */
struct api_metrics {
    sift_metric *started, *finished, *run_s, *ttft_s, *model_s, *tool_s, *active, *requests,
        *rejected, *lag_s;
};

struct sift_api {
    const sift_config *cfg;
    sift_searcher *searcher; /* a snapshot of the catalog taken at start */
    sift_shop *shop;
    sift_httptools *htools;
    sift_tool_registry *tools;
    sift_session_pool *sessions; /* sift.yaml "sessions"; calls run on the thread pool */
    struct worker_res *workers[MAX_WORKERS];
    uint64_t next_run; /* only for run ids; races are harmless (ids stay distinct per worker) */
    sift_server *srv;  /* for the server's own counters in /metrics */
    sift_metrics *metrics;
    struct api_metrics m;
    _Atomic int active;         /* admitted runs not yet done */
    _Atomic uint64_t too_long;  /* queries refused with 413 here (the server counts bodies) */
    int64_t token_delay_ms;     /* offline provider: SIFT_OFFLINE_TOKEN_DELAY_MS */
    int nkeys;                  /* configured API keys; 0: no auth */
    uint64_t rate_interval_ns;  /* token bucket: one token per interval; 0: no limit */
    uint64_t rate_burst_ns;     /* bucket size, as time */
    _Atomic uint64_t *rate_tat; /* per key (+1 for "anonymous"): when the bucket is full again */
    int64_t created;            /* time(NULL) at sift_api_new */

    /* GET /v1/products/{sku} in flight (products.c) */
    _Atomic int product_lookups;
    /* each model request, measured by model_metrics.c */
    sift_metric *llm_req_s, *llm_first_s;
    /* PostgreSQL pools, summed over the workers (pg_pool_report) */
    sift_metric *pg[6];

    /* the embedding families (registered once) every provider made here
     * reports to, through the wrapper that also holds the query cache */
    sift_embed_wrap_opts embed_wrap;
    /* session loads and saves on the thread pool (open_sessions) */
    sift_metric *session_s, *session_errors, *session_merges;
};

static const char *const finish_reasons[] = {
    "ok", "deadline_exceeded", "cancelled", "limit_reached", "error", NULL};
static const char *const reject_reasons[] = {"auth", "rate", "busy", "too_large", NULL};

static int metrics_init(sift_api *api)
{
    static const double run_b[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    static const double tool_b[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static const double lag_b[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1};
    const int nrun = sizeof run_b / sizeof run_b[0], ntool = sizeof tool_b / sizeof tool_b[0];
    sift_metrics *r = api->metrics = sift_metrics_new();
    struct api_metrics *m = &api->m;
    if (!r)
        return SIFT_ENOMEM;
    m->started =
        sift_metrics_counter(r, "sift_runs_started_total", "Agent runs started.", NULL, NULL, 0);
    m->finished = sift_metrics_counter(r, "sift_runs_finished_total",
                                       "Agent runs finished, by how they ended.", "reason",
                                       finish_reasons, 0);
    m->run_s = sift_metrics_histogram(r, "sift_run_duration_seconds", "Agent run duration.", NULL,
                                      NULL, 0, run_b, nrun);
    m->ttft_s =
        sift_metrics_histogram(r, "sift_llm_ttft_seconds", "Run start to the first answer token.",
                               NULL, NULL, 0, run_b, nrun);
    m->model_s =
        sift_metrics_histogram(r, "sift_model_seconds", "Time a run spent waiting for the model.",
                               NULL, NULL, 0, run_b, nrun);
    m->tool_s = sift_metrics_histogram(r, "sift_tool_seconds", "Tool call latency, by tool.",
                                       "tool", NULL, TOOL_LABELS, tool_b, ntool);
    m->active = sift_metrics_gauge(r, "sift_active_runs", "Agent runs in flight.", NULL, NULL, 0);
    m->requests = sift_metrics_counter(r, "sift_http_requests_total",
                                       "HTTP requests received (all routes).", NULL, NULL, 0);
    m->rejected = sift_metrics_counter(r, "sift_http_rejected_total",
                                       "Requests refused before a run, by reason.", "reason",
                                       reject_reasons, 0);
    m->lag_s = sift_metrics_histogram(r, "sift_loop_lag_seconds",
                                      "How late a worker loop's periodic timer fired.", NULL, NULL,
                                      0, lag_b, sizeof lag_b / sizeof lag_b[0]);
    if (!m->started || !m->finished || !m->run_s || !m->ttft_s || !m->model_s || !m->tool_s ||
        !m->active || !m->requests || !m->rejected || !m->lag_s)
        return SIFT_ENOMEM;
    /* one model request each (model_metrics.c), beside the per-run figures */
    static const char *const outcomes[] = {"ok", "deadline_exceeded", "cancelled", "error", NULL};
    api->llm_req_s = sift_metrics_histogram(r, "sift_llm_request_seconds",
                                            "One model request, start to end, by outcome.",
                                            "outcome", outcomes, 0, run_b, nrun);
    api->llm_first_s = sift_metrics_histogram(
        r, "sift_llm_first_token_seconds",
        "One model request, start to its first token or tool call.", NULL, NULL, 0, tool_b, ntool);
    if (!api->llm_req_s || !api->llm_first_s)
        return SIFT_ENOMEM;
    /* PostgreSQL: the pools of all workers, in the order of pg_pool_report */
    api->pg[0] = sift_metrics_gauge(r, "sift_pg_pool_connections",
                                    "PostgreSQL pool connections open or opening.", NULL, NULL, 0);
    api->pg[1] = sift_metrics_gauge(r, "sift_pg_pool_queued",
                                    "Queries waiting for a PostgreSQL connection.", NULL, NULL, 0);
    api->pg[2] =
        sift_metrics_gauge(r, "sift_pg_pool_inflight",
                           "Queries sent to PostgreSQL and not yet answered.", NULL, NULL, 0);
    api->pg[3] =
        sift_metrics_counter(r, "sift_pg_pool_connections_lost_total",
                             "PostgreSQL pool connections that broke while open.", NULL, NULL, 0);
    api->pg[4] = sift_metrics_counter(r, "sift_pg_pool_connect_failures_total",
                                      "Failed PostgreSQL connection attempts.", NULL, NULL, 0);
    api->pg[5] = sift_metrics_counter(r, "sift_pg_pool_cancels_total",
                                      "Cancel requests sent to PostgreSQL.", NULL, NULL, 0);
    for (int i = 0; i < 6; i++) {
        if (!api->pg[i])
            return SIFT_ENOMEM;
    }
    return 0;
}

static int limits_init(sift_api *api)
{
    const sift_config *cfg = api->cfg;
    while (cfg->server.api_keys && cfg->server.api_keys[api->nkeys])
        api->nkeys++;
    api->rate_tat = sift_calloc((size_t)api->nkeys + 1, sizeof *api->rate_tat);
    if (!api->rate_tat)
        return SIFT_ENOMEM;
    if (cfg->server.rate_limit_rps > 0) {
        int burst =
            cfg->server.rate_burst > 0 ? cfg->server.rate_burst : cfg->server.rate_limit_rps;
        api->rate_interval_ns = 1000000000ull / (uint64_t)cfg->server.rate_limit_rps;
        api->rate_burst_ns = api->rate_interval_ns * (uint64_t)burst;
    }
    return 0;
}

/* ---- embedding: metrics and the query cache ---- */

/* Registers the embedding families, once, before any provider is made. */
static int embed_metrics_init(sift_api *api)
{
    static const double b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    static const char *const outcomes[] = {"ok", "deadline_exceeded", "cancelled", "error", NULL};
    static const char *const results[] = {"hit", "miss", NULL};
    sift_metrics *r = api->metrics;
    sift_embed_wrap_opts *o = &api->embed_wrap;
    o->seconds = sift_metrics_histogram(r, "sift_embed_request_seconds",
                                        "Embedding calls (query or catalog batch), start to end, "
                                        "by outcome.",
                                        "outcome", outcomes, 0, b, sizeof b / sizeof b[0]);
    o->texts = sift_metrics_counter(r, "sift_embed_texts_total",
                                    "Texts embedded by the provider (cache hits excluded).", NULL,
                                    NULL, 0);
    o->retries = sift_metrics_counter(r, "sift_embed_retries_total",
                                      "Embedding requests retried (429, 5xx, failed connection).",
                                      NULL, NULL, 0);
    o->cache = sift_metrics_counter(r, "sift_embed_query_cache_total",
                                    "Query-vector cache lookups, by result.", "result", results, 0);
    return o->seconds && o->texts && o->retries && o->cache ? 0 : SIFT_ENOMEM;
}

/* Wraps the provider *emb in the per-loop query cache (query_cache entries)
 * and the measurements (sift_embedder_wrap_new, which takes *emb over: on
 * failure it is freed and *emb is NULL). Registers nothing, so it may run
 * for every provider the api makes. */
static int embed_wrap(sift_api *api, size_t query_cache, sift_embedder **emb, sift_err *err)
{
    sift_embed_wrap_opts o = api->embed_wrap;
    o.query_cache = query_cache;
    sift_embedder *inner = *emb;
    *emb = NULL;
    return sift_embedder_wrap_new(inner, &o, emb, err);
}

static sift_http_client *client_of(uv_loop_t *loop, void *udata)
{
    sift_api *api = udata;
    for (int i = 0; i < MAX_WORKERS && api->workers[i]; i++)
        if (api->workers[i]->loop == loop)
            return api->workers[i]->http;
    return NULL;
}

int sift_api_searcher_opts(sift_api *api, sift_searcher_opts *out, sift_err *err)
{
    sift_embed_config ec;
    memset(out, 0, sizeof *out);
    int rc = sift_embed_config_read(api->cfg->doc, "config", &ec, err);
    if (rc)
        return rc;
    rc = sift_embed_config_embedder(&ec, client_of, api, &out->embedder, err);
    if (!rc)
        rc = embed_wrap(api, (size_t)ec.query_cache, &out->embedder, err);
    sift_embed_config_free(&ec);
    return rc;
}

/* The built-in shop tools whose names no HTTP tool has taken. */
static int shop_tools_register(sift_tool_registry *r, sift_shop *shop, sift_err *err)
{
    static const char *const names[] = {"search_products", "check_inventory", "get_price",
                                        "list_warehouses"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const sift_tool *t = sift_shop_tool(shop, names[i]);
        int rc;
        if (t && !sift_tool_registry_find(r, names[i]) && (rc = sift_tool_registry_add(r, t, err)))
            return rc;
    }
    return 0;
}

/* The session store sift.yaml "sessions" names (session_pool.h); by default
 * the one store.url is, so that any server on that store continues any
 * session. */
static int open_sessions(sift_api *api, sift_err *err)
{
    static const char *const ops[] = {"load", "save", NULL};
    static const double b[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5};
    api->session_s = sift_metrics_histogram(
        api->metrics, "sift_session_seconds",
        "Session load or save, queued on the thread pool to back on the loop.", "op", ops, 0, b,
        sizeof b / sizeof b[0]);
    api->session_errors = sift_metrics_counter(api->metrics, "sift_session_errors_total",
                                               "Session loads or saves that failed.", "op", ops, 0);
    api->session_merges = sift_metrics_counter(
        api->metrics, "sift_session_merges_total",
        "Saves that kept a turn another run saved since the load.", NULL, NULL, 0);
    if (!api->session_s || !api->session_errors || !api->session_merges)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    sift_session_config sc;
    int rc = sift_session_config_read(api->cfg->doc, "config", api->cfg->store.url, &sc, err);
    if (rc)
        return rc;
    rc = sift_session_pool_open(&sc, &api->sessions, err);
    if (rc) {
        /* say which setting this is: the store's message alone reads like a
         * catalog problem */
        sift_err why = *err;
        sift_err_set(err, rc,
                     "session store (%s; sessions.store: memory in sift.yaml keeps them in "
                     "the process): %s",
                     sc.backend, why.msg);
    } else {
        char shown[512]; /* a password in a postgres:// URL is never logged */
        sift_pg_url_mask(sc.url ? sc.url : "", shown, sizeof shown);
        sift_log(SIFT_LOG_INFO, NULL, NULL, "sessions: %s%s%s", sc.backend, sc.url ? " at " : "",
                 sc.url ? shown : "");
    }
    sift_session_config_free(&sc);
    return rc;
}

int sift_api_new(const sift_config *cfg, sift_api **out, sift_err *err)
{
    int rc;
    sift_api *api = sift_calloc(1, sizeof *api);
    if (!api)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    api->cfg = cfg;
    api->created = (int64_t)time(NULL);
    /* slows the offline answer down word by word: for demos of streaming and
     * for tests that need a run to last (admission) */
    const char *delay = getenv("SIFT_OFFLINE_TOKEN_DELAY_MS");
    if (delay)
        api->token_delay_ms = strtoll(delay, NULL, 10);
    if (api->token_delay_ms < 0 || api->token_delay_ms > 10000)
        api->token_delay_ms = 0;
    sift_shop_opts so = {.store_path = cfg->store.url};
    /* PostgreSQL: each worker loop's pool (store.pool) */
    so.pg = (sift_pgpool_opts){.size = (size_t)cfg->pgpool.size,
                               .pipeline_depth = (size_t)cfg->pgpool.pipeline_depth,
                               .queue_max = (size_t)cfg->pgpool.queue_max,
                               .queue_timeout_ms = cfg->pgpool.queue_timeout_ms,
                               .connect_timeout_ms = cfg->pgpool.connect_timeout_ms};
    /* The embedding provider (sift.yaml "embed"): a remote one embeds the
     * catalog here, before the server starts, and each worker's queries
     * through that worker's HTTP client (client_of). */
    sift_searcher_opts sopts = {0};
    /* the metrics first: the embedding provider reports to them */
    if (metrics_init(api) || embed_metrics_init(api)) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sift_api_searcher_opts(api, &sopts, err)) ||
        (rc = sift_searcher_open_sqlite(cfg->store.url, &sopts, &api->searcher, err)))
        goto fail;
    so.searcher = api->searcher;
    sift_httptools_opts ho = {.client = client_of, .udata = api};
    api->tools = sift_tool_registry_new();
    if (!api->tools || limits_init(api)) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto fail;
    }
    /* HTTP tools first: one named like a built-in shop tool replaces it (a
     * shop's own inventory service instead of the store's table) */
    if ((rc = sift_shop_new(&so, &api->shop, err)) ||
        (rc = sift_httptools_load(cfg->tools, &ho, &api->htools, err)) ||
        (rc = sift_httptools_register(api->htools, api->tools, err)) ||
        (rc = shop_tools_register(api->tools, api->shop, err)) || (rc = open_sessions(api, err)))
        goto fail;
    *out = api;
    return 0;
fail:
    sift_api_free(api);
    return rc;
}

void sift_api_free(sift_api *api)
{
    if (!api)
        return;
    sift_tool_registry_free(api->tools);
    sift_httptools_free(api->htools);
    sift_shop_free(api->shop);
    sift_searcher_close(api->searcher);
    sift_session_pool_free(api->sessions);
    sift_metrics_free(api->metrics);
    sift_free((void *)api->rate_tat);
    sift_free(api);
}

/* Adds what changed in this worker's PostgreSQL pool since the last report
 * to the metrics (summed over workers). `gone`: the worker stops, so its
 * share of the gauges goes back to 0. */
static void pg_pool_report(struct worker_res *wr, bool gone)
{
    sift_pgpool_stats st = {0};
    if (!gone && sift_shop_pg_stats(wr->api->shop, wr->loop, &st) != 0)
        return;
    int64_t now[6] = {
        (int64_t)st.conns,      (int64_t)st.queued,           (int64_t)st.inflight,
        (int64_t)st.conns_lost, (int64_t)st.connect_failures, (int64_t)st.cancels_sent};
    for (int i = 0; i < 6; i++) {
        if (gone && i >= 3)
            break; /* counters keep what they counted */
        if (now[i] != wr->pg_seen[i])
            sift_metric_add(wr->api->pg[i], NULL, now[i] - wr->pg_seen[i]);
        wr->pg_seen[i] = now[i];
    }
}

static void on_lag_timer(uv_timer_t *t)
{
    struct worker_res *wr = (struct worker_res *)((char *)t - offsetof(struct worker_res, lag));
    uint64_t now = uv_hrtime();
    uint64_t late = now > wr->lag_expect ? now - wr->lag_expect : 0;
    sift_metric_observe(wr->api->m.lag_s, NULL, (double)late / 1e9);
    wr->lag_expect = now + (uint64_t)LAG_PERIOD_MS * 1000000u;
    pg_pool_report(wr, false);
}

static void on_lag_closed(uv_handle_t *h)
{
    sift_free((char *)h - offsetof(struct worker_res, lag));
}

static int worker_start(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    sift_api *api = udata;
    int i = sift_server_worker_index(w);
    if (i < 0 || i >= MAX_WORKERS)
        return SIFT_EINVAL;
    struct worker_res *wr = sift_calloc(1, sizeof *wr);
    sift_err err = {0};
    if (!wr)
        return SIFT_ENOMEM;
    wr->loop = loop;
    /* every upstream host may use upstream_connections; the total bound
     * leaves room for the model and a few tool hosts */
    sift_http_client_opts co = {
        .max_host_connections = api->cfg->server.upstream_connections,
        .max_total_connections = 4L * api->cfg->server.upstream_connections,
    };
    wr->http = sift_http_client_new(loop, &co, &err);
    if (wr->http) {
        if (!strcmp(api->cfg->llm.provider, "openai")) {
            sift_openai_opts oo;
            sift_openai_opts_from_config(&oo, api->cfg);
            wr->model = sift_openai_new(loop, wr->http, &oo, &err);
        } else {
            sift_offline_opts oo = {.token_delay_ms = api->token_delay_ms};
            wr->model = sift_offline_new(loop, &oo, &err);
        }
        /* every model request measured for /metrics (model_metrics.c) */
        if (wr->model &&
            !(wr->model = sift_api_model_measured(wr->model, api->llm_req_s, api->llm_first_s)))
            sift_err_set(&err, SIFT_ENOMEM, "out of memory");
    }
    if (!wr->model) {
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "worker %d: %s", i, err.msg);
        if (wr->http)
            sift_http_client_close(wr->http, NULL, NULL);
        sift_free(wr);
        return err.code ? err.code : SIFT_ENOMEM;
    }
    wr->api = api;
    uv_timer_init(loop, &wr->lag);
    wr->lag_expect = uv_hrtime() + (uint64_t)LAG_PERIOD_MS * 1000000u;
    uv_timer_start(&wr->lag, on_lag_timer, LAG_PERIOD_MS, LAG_PERIOD_MS);
    api->workers[i] = wr;
    sift_server_worker_set_data(w, wr);
    return 0;
}

static void worker_stop(sift_server_worker *w, uv_loop_t *loop, void *udata)
{
    sift_api *api = udata;
    struct worker_res *wr = sift_server_worker_data(w);
    if (!wr)
        return;
    api->workers[sift_server_worker_index(w)] = NULL;
    sift_model_free(wr->model);
    /* PostgreSQL: this loop's pool closes while the server runs the loop out */
    pg_pool_report(wr, true);
    sift_shop_loop_close(api->shop, loop);
    /* the client's handles finish closing while the server runs the loop out */
    sift_http_client_close(wr->http, NULL, NULL);
    /* the timer is embedded: wr is freed when it has closed */
    uv_close((uv_handle_t *)&wr->lag, on_lag_closed);
}

void sift_api_server_opts(sift_api *api, sift_server_opts *opts)
{
    opts->on_worker_start = worker_start;
    opts->on_worker_stop = worker_stop;
    opts->worker_udata = api;
}

_Atomic int *sift_api_product_lookups(sift_api *api)
{
    return &api->product_lookups;
}

/* ---- Admission and protection ---- */

/* Answers a refused request (JSON error, optional header) and counts it. */
static void reject(sift_api *api, sift_http_exchange *x, sift_api_error_fn error,
                   const char *reason, int status, const char *code, const char *msg,
                   const char *hdr, const char *value)
{
    sift_metric_add(api->m.rejected, reason, 1);
    if (hdr)
        sift_http_set_header(x, hdr, value);
    error(x, status, code, msg);
}

const sift_config *sift_api_config(const sift_api *api)
{
    return api->cfg;
}

sift_shop *sift_api_shop(sift_api *api)
{
    return api->shop;
}

sift_metrics *sift_api_metrics(sift_api *api)
{
    return api->metrics;
}

int64_t sift_api_created(const sift_api *api)
{
    return api->created;
}

void sift_api_count_too_long(sift_api *api)
{
    atomic_fetch_add(&api->too_long, 1);
}

/* Equal without an early exit, so the time taken does not say how much of a
 * key matched (only the length of what the client sent). */
static int same_secret(const char *given, size_t n, const char *key)
{
    size_t klen = strlen(key);
    unsigned char d = n != klen;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)given[i] ^ (unsigned char)key[i % klen];
    return d == 0;
}

/* With API keys configured: the index of the key in "Authorization: Bearer
 * <key>", or -1 after answering 401. Without keys: 0 ("anonymous"). Every
 * key is compared, whichever matches. */
int sift_api_authenticate(sift_api *api, sift_http_exchange *x, sift_api_error_fn error)
{
    if (!api->nkeys)
        return 0;
    size_t len = 0;
    const char *h = sift_http_header(x, "authorization", &len);
    int found = -1;
    if (h && len > 7 && !strncasecmp(h, "bearer ", 7)) {
        const char *tok = h + 7;
        size_t n = len - 7;
        while (n && *tok == ' ')
            tok++, n--;
        for (int i = 0; i < api->nkeys; i++)
            if (same_secret(tok, n, api->cfg->server.api_keys[i]) && found < 0)
                found = i;
    }
    if (found < 0)
        reject(api, x, error, "auth", 401, "unauthorized",
               "a valid API key is required: Authorization: Bearer <key>", "WWW-Authenticate",
               "Bearer");
    return found;
}

/* Takes one token from key's bucket, or answers 429 and returns 0. The
 * bucket is kept as the time at which it would be full again (GCRA), so one
 * compare-and-swap updates it from any worker. */
int sift_api_rate_take(sift_api *api, sift_http_exchange *x, int key, sift_api_error_fn error)
{
    if (!api->rate_interval_ns)
        return 1;
    _Atomic uint64_t *tat = &api->rate_tat[key];
    uint64_t now = uv_hrtime();
    uint64_t old = atomic_load(tat);
    for (;;) {
        uint64_t next = (old > now ? old : now) + api->rate_interval_ns;
        if (next - now > api->rate_burst_ns) {
            uint64_t wait_ns = next - now - api->rate_burst_ns;
            char secs[24];
            snprintf(secs, sizeof secs, "%llu",
                     (unsigned long long)((wait_ns + 999999999u) / 1000000000u));
            reject(api, x, error, "rate", 429, "rate_limited", "too many requests; retry later",
                   "Retry-After", secs);
            return 0;
        }
        if (atomic_compare_exchange_weak(tat, &old, next))
            return 1;
    }
}

/* Takes a run slot, or answers 503 and returns 0: past the cap a request is
 * refused at once, never queued. */
int sift_api_admit(sift_api *api, sift_http_exchange *x, sift_api_error_fn error)
{
    if (atomic_fetch_add(&api->active, 1) < api->cfg->server.max_runs)
        return 1;
    atomic_fetch_sub(&api->active, 1);
    reject(api, x, error, "busy", 503, "busy", "too many runs in flight; retry shortly",
           "Retry-After", "1");
    return 0;
}

static const char *finish_reason(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case SIFT_ETIMEDOUT:
        return "deadline_exceeded";
    case SIFT_ECANCELED:
    case SIFT_EFAILED:
        return "cancelled";
    case SIFT_ELIMIT:
        return "limit_reached";
    default:
        return "error";
    }
}

/* A run admitted by admit() has ended (res NULL: it could not start). */
static void run_done(sift_api *api, const sift_agent_result *res)
{
    atomic_fetch_sub(&api->active, 1);
    sift_metric_add(api->m.finished, finish_reason(res ? res->code : SIFT_EINTERNAL), 1);
    if (!res)
        return;
    sift_metric_observe(api->m.run_s, NULL, res->timings.total_ms / 1000);
    sift_metric_observe(api->m.model_s, NULL, res->timings.model_ms / 1000);
    if (res->timings.ttft_ms > 0)
        sift_metric_observe(api->m.ttft_s, NULL, res->timings.ttft_ms / 1000);
}

/* ---- One agent run tied to an exchange (api_int.h) ---- */

static void run_set_state(sift_api_run *r, enum sift_api_run_state st)
{
    r->state = st;
}

static void run_free(sift_api_run *r)
{
    sift_session_op_reset(&r->sop);
    sift_event_queue_free(&r->q);
    sift_buf_free(&r->events);
    sift_arena_free(r->arena);
    sift_free(r);
}

void sift_api_run_abandon(sift_api_run *r)
{
    atomic_fetch_sub(&r->api->active, 1);
    run_free(r);
}

static void finish_stream(sift_api_run *r)
{
    run_set_state(r, SIFT_API_RUN_FINISHED);
    sift_ctx_remove_hook(&r->gone);
    sift_http_stream_end(r->x);
    run_free(r);
}

static void on_drain(sift_http_exchange *x, void *ud);

static void want_drain(sift_api_run *r)
{
    if (sift_event_queue_pending(&r->q) > 0)
        sift_http_stream_on_drain(r->x, on_drain, r);
}

static void on_drain(sift_http_exchange *x, void *ud)
{
    sift_api_run *r = ud;
    sift_event_queue_flush(&r->q);
    if (sift_event_queue_pending(&r->q) > 0)
        want_drain(r);
    else if (r->state == SIFT_API_RUN_DRAINING)
        finish_stream(r);
}

static void on_client_gone(sift_ctx_hook *h, const sift_err *cause)
{
    sift_api_run *r = (sift_api_run *)((char *)h - offsetof(sift_api_run, gone));
    if (r->state == SIFT_API_RUN_DRAINING)
        finish_stream(r);
    else if (r->state == SIFT_API_RUN_LOADING)
        sift_session_op_cancel(&r->sop); /* the load's done frees the run */
}

static void on_event(void *ud, const sift_event *ev)
{
    sift_api_run *r = ud;
    if (ev->type == SIFT_EV_TOOL_FINISHED && ev->name)
        sift_metric_observe(r->api->m.tool_s, ev->name, (double)ev->duration_us / 1e6);
    int rc = sift_event_queue_push(&r->q, ev);
    if (rc == SIFT_ETOOBIG)
        sift_ctx_cancel(sift_http_ctx(r->x), SIFT_ECANCELED,
                        "the client is not reading fast enough");
    else if (rc == 0 && !r->json_mode)
        want_drain(r);
}

/* The run has ended and its session, if any, is saved: answer the client. */
static void run_finish(sift_api_run *r, const sift_agent_result *res)
{
    if (r->json_mode) {
        run_set_state(r, SIFT_API_RUN_FINISHED);
        r->fe->respond(r, res);
        run_free(r);
        return;
    }
    sift_event_queue_flush(&r->q);
    if (sift_event_queue_pending(&r->q) == 0 || sift_ctx_err(sift_http_ctx(r->x))) {
        finish_stream(r);
        return;
    }
    /* the last events wait for the client; a client that leaves meanwhile
     * ends the exchange through the hook */
    run_set_state(r, SIFT_API_RUN_DRAINING);
    if (sift_ctx_add_hook(sift_http_ctx(r->x), &r->gone, on_client_gone))
        finish_stream(r);
    else
        want_drain(r);
}

static void observe_session(sift_api *api, const sift_session_op *op, const char *what)
{
    sift_metric_observe(api->session_s, what, (double)(uv_hrtime() - op->queued_ns) / 1e9);
    if (op->rc && op->rc != SIFT_ECANCELED)
        sift_metric_add(api->session_errors, what, 1);
}

static void on_saved(sift_session_op *op)
{
    sift_api_run *r = (sift_api_run *)((char *)op - offsetof(sift_api_run, sop));
    observe_session(r->api, op, "save");
    if (op->merged)
        sift_metric_add(r->api->session_merges, NULL, 1);
    if (op->rc)
        sift_log(SIFT_LOG_WARN, r->run_id, NULL, "session %s not saved: %s", r->session,
                 op->err.msg);
    else if (op->merged)
        sift_log(SIFT_LOG_INFO, r->run_id, NULL,
                 "session %s: another turn was saved meanwhile; this turn was added after it",
                 r->session);
    run_finish(r, &r->res);
}

static void on_done(void *ud, const sift_agent_result *res)
{
    sift_api_run *r = ud;
    run_done(r->api, res);
    if (res->code != 0 || !r->session[0]) {
        run_finish(r, res);
        return;
    }
    /* Saved before the client hears the end, so that a follow-up sent as
     * soon as it does finds this turn on any server. The result is only valid
     * during this callback: keep a copy. */
    sift_err err = {0};
    r->res = *res;
    r->res.answer = res->answer ? sift_arena_strdup(r->arena, res->answer) : NULL;
    r->res.message = res->message ? sift_arena_strdup(r->arena, res->message) : NULL;
    if ((res->answer && !r->res.answer) || (res->message && !r->res.message)) {
        sift_log(SIFT_LOG_WARN, r->run_id, NULL, "session %s not saved: out of memory", r->session);
        run_finish(r, res);
        return;
    }
    run_set_state(r, SIFT_API_RUN_SAVING);
    if (sift_session_pool_save(r->api->sessions, sift_http_loop(r->x), &r->sop, r->session,
                               &r->conv, on_saved, &err)) {
        sift_log(SIFT_LOG_WARN, r->run_id, NULL, "session %s not saved: %s", r->session, err.msg);
        run_finish(r, &r->res);
    }
}

sift_api_run *sift_api_run_new(sift_api *api, sift_http_exchange *x, const sift_api_frontend *fe,
                               int json_mode, const char *session)
{
    sift_api_run *r = sift_calloc(1, sizeof *r);
    /* a seed-workload run uses ~3.5 KB of its arena; the first block is held
     * for the whole run, so its size is memory per concurrent run */
    if (!r || !(r->arena = sift_arena_new(4096))) {
        sift_free(r);
        atomic_fetch_sub(&api->active, 1);
        fe->error(x, 503, "busy", "out of memory");
        return NULL;
    }
    r->x = x;
    r->api = api;
    r->fe = fe;
    r->json_mode = json_mode;
    run_set_state(r, SIFT_API_RUN_RUNNING);
    sift_buf_init(&r->events, 0);
    snprintf(r->run_id, sizeof r->run_id, "r-%d-%llx",
             sift_server_worker_index(sift_http_worker(x)), (unsigned long long)uv_hrtime());
    if (session)
        snprintf(r->session, sizeof r->session, "%s", session);
    sift_event_queue_init(&r->q, r->run_id, 0, fe->write, r);
    sift_conv_init(&r->conv, r->arena);
    return r;
}

static void on_loaded(sift_session_op *op)
{
    sift_api_run *r = (sift_api_run *)((char *)op - offsetof(sift_api_run, sop));
    sift_http_exchange *x = r->x;
    sift_err err = {0};
    observe_session(r->api, op, "load");
    sift_ctx_remove_hook(&r->gone);
    if (op->rc == SIFT_ECANCELED || sift_ctx_err(sift_http_ctx(x))) {
        /* the client has gone: nobody to answer */
        sift_http_stream_abort(x);
        sift_api_run_abandon(r);
        return;
    }
    if (op->rc) {
        sift_log(SIFT_LOG_WARN, r->run_id, NULL, "session %s not loaded: %s", r->session,
                 op->err.msg);
        r->fe->error(x, op->rc == SIFT_EPROTO ? 500 : 503, sift_err_name(op->rc), op->err.msg);
        sift_api_run_abandon(r);
        return;
    }
    run_set_state(r, SIFT_API_RUN_RUNNING);
    if ((!op->found && sift_conv_add_system(&r->conv, SIFT_AGENT_SHOP_PROMPT, &err)) ||
        sift_conv_add_user(&r->conv, r->query, &err)) {
        r->fe->error(x, 500, sift_err_name(err.code), err.msg);
        sift_api_run_abandon(r);
        return;
    }
    sift_api_run_start(r);
}

void sift_api_run_load_and_start(sift_api_run *r, const char *query)
{
    sift_http_exchange *x = r->x;
    sift_err err = {0};
    if (!(r->query = sift_arena_strdup(r->arena, query))) {
        r->fe->error(x, 503, "busy", "out of memory");
        sift_api_run_abandon(r);
        return;
    }
    run_set_state(r, SIFT_API_RUN_LOADING);
    if (sift_session_pool_load(r->api->sessions, sift_http_loop(x), &r->sop, r->session, &r->conv,
                               on_loaded, &err)) {
        r->fe->error(x, 500, sift_err_name(err.code), err.msg);
        sift_api_run_abandon(r);
        return;
    }
    /* a client that leaves while the load waits for a pool thread cancels
     * it; if it has gone already, on_loaded sees that */
    sift_ctx_add_hook(sift_http_ctx(x), &r->gone, on_client_gone);
}

int sift_api_run_start(sift_api_run *r)
{
    sift_api *api = r->api;
    const sift_config *cfg = api->cfg;
    sift_http_exchange *x = r->x;
    struct worker_res *wr = sift_http_worker_data(x);
    sift_err err = {0};
    int rc;
    sift_memory_budget budget = {.max_messages = 64, .max_tokens = 12000};
    if ((rc = sift_memory_trim_conv(&r->conv, &budget, NULL))) {
        r->fe->error(x, 500, sift_err_name(rc), "the conversation could not be trimmed");
        sift_api_run_abandon(r);
        return rc;
    }
    if (!r->json_mode && (rc = sift_http_stream_start(x, 200, "text/event-stream"))) {
        sift_http_stream_abort(x);
        sift_api_run_abandon(r);
        return rc;
    }
    sift_agent_opts opts = {
        .model = wr->model,
        .tools = api->tools,
        .max_steps = cfg->agent.max_steps,
        .deadline_ms = cfg->agent.deadline_ms,
        .tools_opts = {.limit = cfg->agent.tool_limit, .timeout_ms = cfg->agent.tool_timeout_ms},
        .run_id = r->run_id,
        .session_id = r->session[0] ? r->session : NULL,
        .on_event = on_event,
        .udata = r,
    };
    /* counted before the start so that started = finished + active holds */
    sift_metric_add(api->m.started, NULL, 1);
    if ((rc = sift_agent_start(sift_http_ctx(x), &r->conv, &opts, on_done, r, &err))) {
        run_done(api, NULL);
        if (r->json_mode)
            r->fe->error(x, 500, sift_err_name(err.code), err.msg);
        else
            sift_http_stream_abort(x);
        run_free(r);
        return rc;
    }
    return 0;
}

/* ---- POST /v1/search ---- */

static int sse_write(void *ud, const char *name, const char *json, size_t len)
{
    sift_api_run *r = ud;
    return sift_http_sse_send(r->x, name, json, len);
}

static int json_write(void *ud, const char *name, const char *json, size_t len)
{
    sift_api_run *r = ud;
    int rc = sift_buf_printf(&r->events, "%s{\"event\":\"%s\",\"data\":", r->events.len ? "," : "",
                             name);
    if (!rc)
        rc = sift_buf_append(&r->events, json, len);
    return rc ? rc : sift_buf_putc(&r->events, '}');
}

static void search_respond(sift_api_run *r, const sift_agent_result *res)
{
    sift_buf body;
    sift_buf_init(&body, 0);
    int rc = sift_buf_printf(&body, "{\"run_id\":\"%s\",\"answer\":", r->run_id);
    if (res->answer) {
        rc |= sift_buf_putc(&body, '"');
        rc |= sift_buf_json_escape(&body, res->answer, strlen(res->answer));
        rc |= sift_buf_putc(&body, '"');
    } else {
        rc |= sift_buf_puts(&body, "null");
    }
    if (res->code) {
        rc |= sift_buf_printf(&body, ",\"error\":{\"code\":\"%s\",\"message\":\"",
                              sift_err_name(res->code));
        rc |= sift_buf_json_escape(&body, res->message ? res->message : "",
                                   res->message ? strlen(res->message) : 0);
        rc |= sift_buf_puts(&body, "\"}");
    } else {
        rc |= sift_buf_puts(&body, ",\"error\":null");
    }
    rc |= sift_buf_puts(&body, ",\"events\":[");
    rc |= sift_buf_append(&r->events, "", 0);
    rc |= sift_buf_append(&body, r->events.data ? r->events.data : "", r->events.len);
    rc |= sift_buf_puts(&body, "]}");
    if (rc)
        sift_http_respond_error(r->x, 500, "out_of_memory", "out of memory");
    else
        sift_http_respond(r->x, 200, "application/json", body.data, body.len);
    sift_buf_free(&body);
}

static const sift_api_frontend search_sse = {
    .write = sse_write, .respond = search_respond, .error = sift_http_respond_error};
static const sift_api_frontend search_json = {
    .write = json_write, .respond = search_respond, .error = sift_http_respond_error};

static int accepts_json(sift_http_exchange *x)
{
    const char *accept = sift_http_header(x, "accept", NULL);
    return accept && strstr(accept, "application/json") && !strstr(accept, "text/event-stream");
}

static void search(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    const sift_config *cfg = api->cfg;
    size_t len;
    int key = sift_api_authenticate(api, x, sift_http_respond_error);
    if (key < 0 || !sift_api_rate_take(api, x, key, sift_http_respond_error))
        return;
    const char *body = sift_http_body(x, &len);
    cJSON *req = cJSON_ParseWithLength(body, len);
    cJSON *q = req ? cJSON_GetObjectItemCaseSensitive(req, "query") : NULL;
    cJSON *sid = req ? cJSON_GetObjectItemCaseSensitive(req, "session_id") : NULL;
    sift_err err = {0};
    if (!cJSON_IsObject(req)) {
        sift_http_respond_error(x, 400, "invalid_request", "the body must be a JSON object");
        goto out;
    }
    if (!q || !cJSON_IsString(q) || !q->valuestring[0]) {
        sift_http_respond_error(x, 400, "invalid_request", "query: must be a non-empty string");
        goto out;
    }
    if (strlen(q->valuestring) > cfg->server.max_query_bytes) {
        char msg[96];
        snprintf(msg, sizeof msg, "query: longer than %zu bytes", cfg->server.max_query_bytes);
        sift_api_count_too_long(api);
        sift_http_respond_error(x, 413, "too_large", msg);
        goto out;
    }
    if (sid && !cJSON_IsNull(sid) &&
        (!cJSON_IsString(sid) || sift_session_id_check(sid->valuestring, &err))) {
        char msg[SIFT_ERR_MSG_MAX + 16];
        snprintf(msg, sizeof msg, "session_id: %s",
                 cJSON_IsString(sid) ? err.msg : "must be a string");
        sift_http_respond_error(x, 400, "invalid_request", msg);
        goto out;
    }
    if (!sift_api_admit(api, x, sift_http_respond_error))
        goto out;
    const sift_api_frontend *fe = accepts_json(x) ? &search_json : &search_sse;
    sift_api_run *r = sift_api_run_new(api, x, fe, fe == &search_json,
                                       sid && cJSON_IsString(sid) ? sid->valuestring : NULL);
    if (!r)
        goto out;
    if (r->session[0]) {
        sift_api_run_load_and_start(r, q->valuestring);
        goto out;
    }
    if (sift_conv_add_system(&r->conv, SIFT_AGENT_SHOP_PROMPT, &err) ||
        sift_conv_add_user(&r->conv, q->valuestring, &err)) {
        sift_http_respond_error(x, 500, sift_err_name(err.code), err.msg);
        sift_api_run_abandon(r);
        goto out;
    }
    sift_api_run_start(r);
out:
    cJSON_Delete(req);
}

static void healthz(sift_http_exchange *x, void *udata)
{
    static const char body[] = "{\"status\":\"ok\"}";
    sift_http_respond(x, 200, "application/json", body, sizeof body - 1);
}

/* GET /metrics: Prometheus text. Behind the API keys when they are set,
 * since run counts and tool names say something about the traffic. */
static void metrics(sift_http_exchange *x, void *udata)
{
    sift_api *api = udata;
    if (sift_api_authenticate(api, x, sift_http_respond_error) < 0)
        return;
    sift_server_stats st = {0};
    if (api->srv)
        sift_server_stats_get(api->srv, &st);
    sift_metric_set(api->m.requests, NULL, (int64_t)st.requests_total);
    sift_metric_set(api->m.rejected, "too_large",
                    (int64_t)(st.too_large + atomic_load(&api->too_long)));
    sift_metric_set(api->m.active, NULL, atomic_load(&api->active));
    sift_buf out;
    sift_buf_init(&out, 0);
    if (sift_metrics_render(api->metrics, &out))
        sift_http_respond_error(x, 500, "out_of_memory", "out of memory");
    else
        sift_http_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    sift_buf_free(&out);
}

int sift_api_mount(sift_api *api, sift_server *srv, sift_err *err)
{
    api->srv = srv;
    if (sift_server_route(srv, "GET", "/healthz", healthz, api) ||
        sift_server_route(srv, "GET", "/metrics", metrics, api) ||
        sift_server_route(srv, "POST", "/v1/search", search, api))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory adding routes");
    /* the product lookups and /readyz (products.c), the search page (page.c) */
    if (sift_api_products_mount(api, srv) || sift_api_page_mount(api, srv))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory adding routes");
    /* the OpenAI-compatible routes (chat.c) */
    if (sift_api_chat_mount(api, srv))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory adding routes");
    return 0;
}
