/* sift serve's catalog sync: a thread that consumes the catalog topic into
 * the server's store and keeps search_products' searcher fresh.
 *
 * The searcher is an in-memory snapshot (search.h). After a batch that
 * changed products, and at most once per refresh_ms, this thread builds a
 * new searcher from its own store connection (between batches, so it sees
 * exactly the committed batches) and swaps it into the shop
 * (sift_shop_swap_searcher): searches already running finish on the old
 * one, which is freed by its last user. Stock and prices need no refresh:
 * the shop tools read them live from the store. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/api_int.h"
#include "sift/api.h"
#include "sift/kafka.h"
#include "sift/log.h"
#include "sift/metrics.h"
#include "sift/pgstore.h"
#include "sift/search.h"
#include "sift/shoptools.h"
#include "sift/store.h"

#define LAG_SERIES_MAX 64

struct sift_api_kafka {
    sift_api *api;
    sift_shop *shop;
    sift_store *store; /* the consumer thread's own connection */
    sift_kafka_consumer *c;
    pthread_t th;
    int started;
    char *brokers, *topic, *group, *dlq;
    int refresh_ms;
    uint64_t products_seen; /* stats.product_events at the last batch */
    int dirty;              /* products changed since the searcher was built */
    double last_refresh;
    sift_metric *lag, *events, *dlq_total, *refreshes, *refresh_s;
    uint64_t n_refreshes;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void publish_lag(sift_api_kafka *k)
{
    sift_kafka_lag lag[LAG_SERIES_MAX];
    size_t n = 0;
    sift_kafka_consumer_lag(k->c, lag, LAG_SERIES_MAX, &n);
    for (size_t i = 0; i < n && i < LAG_SERIES_MAX; i++) {
        char part[16];
        snprintf(part, sizeof part, "%d", (int)lag[i].partition);
        if (lag[i].lag >= 0)
            sift_metric_set(k->lag, part, lag[i].lag);
    }
}

static void maybe_refresh(sift_api_kafka *k)
{
    double t = now_s();
    if (!k->dirty || (t - k->last_refresh) * 1000 < k->refresh_ms)
        return;
    sift_searcher *next = NULL;
    sift_searcher_opts so;
    sift_err e = {0};
    /* the embedder the server's searcher was built with, so query vectors
     * stay comparable (a remote one re-embeds the whole catalog) */
    int rc = sift_api_searcher_opts(k->api, &so, &e);
    if (!rc)
        rc = sift_searcher_open(k->store, &so, &next, &e);
    if (!rc)
        rc = sift_shop_swap_searcher(k->shop, next, &e);
    double took = now_s() - t;
    k->last_refresh = now_s();
    if (rc) {
        /* kept dirty: tried again after refresh_ms */
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "kafka: search index refresh failed: %s", e.msg);
        return;
    }
    k->dirty = 0;
    k->n_refreshes++;
    sift_metric_set(k->refreshes, NULL, (int64_t)k->n_refreshes);
    sift_metric_observe(k->refresh_s, NULL, took);
    sift_log(SIFT_LOG_INFO, NULL, NULL,
             "kafka: search index refreshed (%zu products, vectors %s, %.0f ms)",
             sift_searcher_count(next), sift_searcher_vector_id(next), took * 1000);
}

static void on_batch(void *ud, const sift_kafka_stats *st)
{
    sift_api_kafka *k = ud;
    sift_metric_set(k->events, NULL, (int64_t)st->events);
    sift_metric_set(k->dlq_total, NULL, (int64_t)st->dlq);
    publish_lag(k);
    /* product events read, applied or not: on a PostgreSQL store shared by
     * the replicas, another replica may have applied them first, and this
     * replica's searcher must follow all the same */
    if (st->product_events != k->products_seen) {
        k->products_seen = st->product_events;
        k->dirty = 1;
    }
    maybe_refresh(k);
}

static void on_idle(void *ud)
{
    sift_api_kafka *k = ud;
    publish_lag(k);
    maybe_refresh(k);
}

static void *run(void *ud)
{
    sift_api_kafka *k = ud;
    sift_err e = {0};
    if (sift_kafka_consumer_run(k->c, &e))
        sift_log(SIFT_LOG_ERROR, NULL, NULL,
                 "kafka: the catalog consumer stopped: %s; the server goes on with the catalog "
                 "as it is",
                 e.msg);
    return NULL;
}

/* The kafka: block of sift.yaml, then SIFT_KAFKA_BROKERS, SIFT_KAFKA_TOPIC
 * and SIFT_KAFKA_GROUP. */
static int get_str(const cJSON *sec, const char *key, const char *env, char **out, sift_err *err)
{
    const cJSON *v = sec ? cJSON_GetObjectItemCaseSensitive(sec, key) : NULL;
    const char *s = NULL;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || !*v->valuestring)
            return sift_err_set(err, SIFT_EINVAL, "kafka.%s: must be a non-empty string", key);
        s = v->valuestring;
    }
    const char *ev = env ? getenv(env) : NULL;
    if (ev && *ev)
        s = ev;
    if (s && !(*out = sift_strdup(s)))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    return 0;
}

static int get_num(const cJSON *sec, const char *key, long lo, long hi, long *out, sift_err *err)
{
    const cJSON *v = sec ? cJSON_GetObjectItemCaseSensitive(sec, key) : NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsBool(v) && lo == 0 && hi == 1) {
        *out = cJSON_IsTrue(v);
        return 0;
    }
    if (lo == 0 && hi == 1 && !cJSON_IsBool(v))
        return sift_err_set(err, SIFT_EINVAL, "kafka.%s: must be true or false", key);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        v->valuedouble != (double)(long)v->valuedouble)
        return sift_err_set(err, SIFT_EINVAL, "kafka.%s: must be an integer between %ld and %ld",
                            key, lo, hi);
    *out = (long)v->valuedouble;
    return 0;
}

void sift_api_kafka_stop(sift_api_kafka *k)
{
    if (!k)
        return;
    if (k->started) {
        sift_kafka_consumer_stop(k->c);
        pthread_join(k->th, NULL);
    }
    sift_kafka_consumer_free(k->c);
    sift_store_close(k->store);
    sift_free(k->brokers);
    sift_free(k->topic);
    sift_free(k->group);
    sift_free(k->dlq);
    sift_free(k);
}

int sift_api_kafka_start(sift_api *api, sift_api_kafka **out, sift_err *err)
{
    *out = NULL;
    const sift_config *cfg = sift_api_config(api);
    const cJSON *sec = cfg->doc ? cJSON_GetObjectItemCaseSensitive(cfg->doc, "kafka") : NULL;
    if (sec && !cJSON_IsObject(sec) && !cJSON_IsNull(sec))
        return sift_err_set(err, SIFT_EINVAL, "kafka: must be a mapping");
    sift_api_kafka *k = sift_calloc(1, sizeof *k);
    if (!k)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    long batch = 0, batch_ms = 0, refresh_ms = 1000, assign = 1;
    int rc;
    if ((rc = get_str(sec, "brokers", "SIFT_KAFKA_BROKERS", &k->brokers, err)) ||
        (rc = get_str(sec, "topic", "SIFT_KAFKA_TOPIC", &k->topic, err)) ||
        (rc = get_str(sec, "group", "SIFT_KAFKA_GROUP", &k->group, err)) ||
        (rc = get_str(sec, "dlq", NULL, &k->dlq, err)) ||
        (rc = get_num(sec, "batch", 1, 100000, &batch, err)) ||
        (rc = get_num(sec, "batch_ms", 1, 60000, &batch_ms, err)) ||
        (rc = get_num(sec, "refresh_ms", 0, 3600000, &refresh_ms, err)) ||
        (rc = get_num(sec, "assign", 0, 1, &assign, err)))
        goto fail;
    if (!k->brokers && !k->topic) {
        sift_api_kafka_stop(k); /* not configured */
        return 0;
    }
    if (!k->brokers || !k->topic) {
        rc = sift_err_set(err, SIFT_EINVAL, "kafka: needs both brokers and topic (%s is missing)",
                          k->brokers ? "topic" : "brokers");
        goto fail;
    }
    if (!k->group) {
        /* each replica its own group, so every replica reads every event */
        char host[256] = "local";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        size_t n = strlen(host) + 6;
        if (!(k->group = sift_malloc(n))) {
            rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
            goto fail;
        }
        snprintf(k->group, n, "sift-%s", host);
    }
    k->refresh_ms = (int)refresh_ms;
    k->api = api;
    k->shop = sift_api_shop(api);
    sift_metrics *m = sift_api_metrics(api);
    k->lag = sift_metrics_gauge(m, "sift_kafka_consumer_lag",
                                "Catalog events not yet durable in the store, by partition.",
                                "partition", NULL, LAG_SERIES_MAX);
    k->events = sift_metrics_counter(m, "sift_kafka_events_total",
                                     "Catalog events made durable (applied, unchanged or DLQ).",
                                     NULL, NULL, 0);
    k->dlq_total = sift_metrics_counter(m, "sift_kafka_dlq_total",
                                        "Malformed catalog events sent to the dead-letter topic.",
                                        NULL, NULL, 0);
    k->refreshes =
        sift_metrics_counter(m, "sift_kafka_index_refreshes_total",
                             "Search index rebuilds after catalog changes.", NULL, NULL, 0);
    static const double bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 30};
    k->refresh_s =
        sift_metrics_histogram(m, "sift_kafka_index_refresh_seconds",
                               "Time to rebuild the search index.", NULL, NULL, 0, bounds, 7);
    if (!k->lag || !k->events || !k->dlq_total || !k->refreshes || !k->refresh_s) {
        rc = sift_err_set(err, SIFT_ENOMEM, "kafka: cannot register the metrics");
        goto fail;
    }
    if ((rc = sift_store_open(cfg->store.url, 0, &k->store, err)))
        goto fail;
    sift_kafka_opts ko = {.brokers = k->brokers,
                          .topic = k->topic,
                          .group = k->group,
                          .dlq = k->dlq,
                          .assign = (int)assign,
                          .batch = (size_t)batch,
                          .batch_ms = (int)batch_ms,
                          .store = k->store,
                          .on_batch = on_batch,
                          .on_idle = on_idle,
                          .ud = k};
    if ((rc = sift_kafka_consumer_new(&ko, &k->c, err)))
        goto fail;
    k->last_refresh = now_s();
    if (pthread_create(&k->th, NULL, run, k) != 0) {
        rc = sift_err_set(err, SIFT_ENOMEM, "kafka: cannot start the consumer thread");
        goto fail;
    }
    k->started = 1;
    char where[512];
    sift_pg_url_mask(cfg->store.url, where, sizeof where);
    sift_log(SIFT_LOG_INFO, NULL, NULL,
             "kafka: consuming %s from %s as group %s into %s (index refresh every %d ms)",
             k->topic, k->brokers, k->group, where, k->refresh_ms);
    *out = k;
    return 0;
fail:
    sift_api_kafka_stop(k);
    return rc;
}
