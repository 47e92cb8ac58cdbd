/* Kafka catalog sync (kafka.h): the event parser and the batching consumer.
 *
 * The consumer's one loop: collect a batch (count- and time-bounded), parse
 * every message (pure), apply the good ones in one store transaction, commit
 * it, deliver the bad ones to the dead-letter topic, and only then store and
 * commit the offsets. Nothing is acknowledged to Kafka before it is durable,
 * so a crash anywhere replays at most one batch, which versions make
 * harmless. */
#include <cJSON.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sift/kafka.h"
#include "sift/log.h"

/* ---- events ---- */

static const char *const op_names[] = {"upsert", "delete", "stock", "price"};

/* Prefixes a nested parser's message with the member it came from. */
static int nested(sift_err *err, int rc, const char *prefix)
{
    if (err && rc != SIFT_ENOMEM) {
        char msg[SIFT_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        sift_err_set(err, rc, "%s.%s", prefix, msg);
    }
    return rc;
}

/* The product member as a product line: the event's sku and version put in
 * (a product that names another SKU or version is refused: which one wins
 * would be a guess). */
static int parse_upsert(sift_arena *a, const cJSON *root, sift_kafka_event *ev, sift_err *err)
{
    const cJSON *prod = cJSON_GetObjectItemCaseSensitive(root, "product");
    if (!prod || cJSON_IsNull(prod))
        return sift_err_set(err, SIFT_EINVAL, "product: missing (an upsert carries the product)");
    if (!cJSON_IsObject(prod))
        return sift_err_set(err, SIFT_EINVAL, "product: must be an object");
    int rc = sift_catalog_check_members(prod, "product", err);
    if (rc)
        return rc;
    for (const cJSON *v = prod->child; v; v = v->next) {
        if (!v->string || cJSON_IsNull(v))
            continue;
        if (!strcmp(v->string, "sku") &&
            (!cJSON_IsString(v) || strcasecmp(v->valuestring, ev->sku) != 0))
            return sift_err_set(err, SIFT_EINVAL,
                                "product.sku: differs from the event's sku \"%s\"", ev->sku);
        if (!strcmp(v->string, "version") &&
            (!cJSON_IsNumber(v) || v->valuedouble != (double)ev->version))
            return sift_err_set(err, SIFT_EINVAL,
                                "product.version: differs from the event's version");
        if (!strcmp(v->string, "op"))
            return sift_err_set(err, SIFT_EINVAL,
                                "product.op: not allowed (the event's op says what to do)");
    }
    cJSON *copy = cJSON_Duplicate(prod, 1);
    if (!copy)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    while (cJSON_GetObjectItemCaseSensitive(copy, "sku"))
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "sku");
    while (cJSON_GetObjectItemCaseSensitive(copy, "version"))
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "version");
    while (cJSON_GetObjectItemCaseSensitive(copy, "op"))
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "op");
    char *line = NULL;
    /* the version is set after parsing, not printed: cJSON prints large
     * doubles with 15 significant digits when they compare "close enough",
     * which would change versions near 2^53 */
    if (!cJSON_AddStringToObject(copy, "sku", ev->sku) || !(line = cJSON_PrintUnformatted(copy))) {
        cJSON_Delete(copy);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    cJSON_Delete(copy);
    int op = SIFT_OP_UPSERT;
    rc = sift_product_parse(a, line, strlen(line), ev->version, &ev->product, &op, err);
    cJSON_free(line);
    if (rc)
        return nested(err, rc, "product");
    ev->product.version = ev->version;
    return 0;
}

int sift_kafka_event_parse(sift_arena *a, const char *msg, size_t len, sift_kafka_event *ev,
                           sift_err *err)
{
    memset(ev, 0, sizeof *ev);
    if (!msg || len == 0)
        return sift_err_set(err, SIFT_EINVAL, "empty message (an event is a JSON object)");
    if (len > SIFT_CATALOG_LINE_MAX)
        return sift_err_set(err, SIFT_ETOOBIG, "message longer than %d bytes",
                            SIFT_CATALOG_LINE_MAX);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(msg, len, &end, 0);
    int rc = 0;
    if (!root) {
        size_t at = end && end >= msg && end <= msg + len ? (size_t)(end - msg) : 0;
        return sift_err_set(err, SIFT_EINVAL, "invalid JSON at byte %zu", at + 1);
    }
    size_t off = end ? (size_t)(end - msg) : len;
    while (off < len &&
           (msg[off] == ' ' || msg[off] == '\t' || msg[off] == '\r' || msg[off] == '\n'))
        off++;
    if (off < len) {
        rc = sift_err_set(err, SIFT_EINVAL, "invalid JSON at byte %zu: data after the object",
                          off + 1);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        rc = sift_err_set(err, SIFT_EINVAL, "an event must be a JSON object");
        goto out;
    }
    if ((rc = sift_catalog_check_members(root, NULL, err)))
        goto out;
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!op || cJSON_IsNull(op)) {
        rc = sift_err_set(err, SIFT_EINVAL, "op: missing (upsert, delete, stock or price)");
        goto out;
    }
    ev->op = -1;
    for (int i = 0; cJSON_IsString(op) && i < 4; i++)
        if (!strcmp(op->valuestring, op_names[i]))
            ev->op = i;
    if (ev->op < 0) {
        rc = sift_err_set(err, SIFT_EINVAL, "op: must be one of upsert, delete, stock, price");
        goto out;
    }
    /* The version is required here (a file may default it, a stream may
     * not: an event without one could never be replaced). */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!v || cJSON_IsNull(v)) {
        rc = sift_err_set(err, SIFT_EINVAL, "version: missing (every event carries one)");
        goto out;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)SIFT_VERSION_MAX ||
        v->valuedouble != (double)(int64_t)v->valuedouble) {
        rc = sift_err_set(err, SIFT_EINVAL, "version: must be an integer between 0 and 2^53");
        goto out;
    }
    ev->version = (int64_t)v->valuedouble;
    const cJSON *sku = cJSON_GetObjectItemCaseSensitive(root, "sku");
    if (!sku || cJSON_IsNull(sku)) {
        rc = sift_err_set(err, SIFT_EINVAL, "sku: missing");
        goto out;
    }
    if (!cJSON_IsString(sku)) {
        rc = sift_err_set(err, SIFT_EINVAL, "sku: must be a string");
        goto out;
    }
    if ((rc = sift_sku_check(sku->valuestring, strlen(sku->valuestring), err))) {
        if (err && !strstr(err->msg, "sku")) {
            char why[SIFT_ERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            sift_err_set(err, rc, "sku: %s", why);
        }
        goto out;
    }
    if (!(ev->sku = sift_arena_strdup(a, sku->valuestring))) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto out;
    }
    switch (ev->op) {
    case SIFT_KAFKA_UPSERT:
        rc = parse_upsert(a, root, ev, err);
        break;
    case SIFT_KAFKA_DELETE: {
        int pop = SIFT_OP_DELETE;
        rc = sift_product_parse(a, msg, len, ev->version, &ev->product, &pop, err);
        memset(&ev->product, 0, sizeof ev->product);
        break;
    }
    case SIFT_KAFKA_STOCK:
        /* The stock line's own parser: "op" is a member it does not know,
         * which it ignores. */
        rc = sift_stock_parse(a, msg, len, ev->version, &ev->stock, err);
        break;
    default:
        rc = sift_price_parse(a, msg, len, ev->version, &ev->price, err);
        break;
    }
out:
    cJSON_Delete(root);
    return rc;
}

int sift_kafka_event_apply(sift_store *store, const sift_kafka_event *ev, int *applied,
                           sift_err *err)
{
    switch (ev->op) {
    case SIFT_KAFKA_UPSERT:
        return sift_store_upsert_product(store, &ev->product, applied, err);
    case SIFT_KAFKA_DELETE:
        return sift_store_delete_product(store, ev->sku, ev->version, applied, err);
    case SIFT_KAFKA_STOCK:
        return sift_store_set_stock(store, &ev->stock, applied, err);
    case SIFT_KAFKA_PRICE:
        return sift_store_set_price(store, &ev->price, applied, err);
    default:
        return sift_err_set(err, SIFT_EINVAL, "unknown event op %d", ev->op);
    }
}

/* ---- the consumer ---- */

#define DEFAULT_BATCH 1000
#define DEFAULT_BATCH_MS 200
#define RETRY_PAUSE_MS 1000
#define LOG_REPEAT_S 5.0 /* the same broker error is logged at most this often */

struct part {
    int32_t id;
    int eof;      /* at the end of the partition, nothing newer seen since */
    int64_t next; /* next offset to apply; -1 before the first durable batch */
    int64_t high; /* high watermark, -1 unknown */
    int64_t lag;
};

/* One message of the batch in progress. */
struct item {
    rd_kafka_message_t *m;
    sift_kafka_event ev;
    const char *reason; /* non-NULL: malformed, goes to the DLQ */
    int refused;        /* the reason came from the store (recomputed on a retry) */
};

struct sift_kafka_consumer {
    sift_kafka_opts o;
    char *brokers, *topic, *group, *dlq;
    rd_kafka_t *rk;   /* the consumer */
    rd_kafka_t *prod; /* the DLQ producer */
    atomic_int stop;
    atomic_int dlq_failed; /* DLQ deliveries that failed since the last produce round */

    pthread_mutex_t mu; /* guards parts, n_parts, st and last_err* (other threads) */
    struct part *parts;
    size_t n_parts, cap_parts;
    sift_kafka_stats st;

    sift_arena *arena; /* the batch's events */
    struct item *items;
    size_t n_items;
    int fatal;
    char fatal_msg[SIFT_ERR_MSG_MAX];
    int commit_pending; /* offsets stored whose commit failed: retried at the next */
    int last_err;
    double last_err_at;
    double last_lag_at;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sleeps `ms` in short steps so a stop is seen quickly. */
static void pause_ms(sift_kafka_consumer *c, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&c->stop); t += 50)
        sleep_ms(50);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0-3 errors, 4 warnings, 5-6 notices and info, 7 debug */
    int lv = level <= 3   ? SIFT_LOG_ERROR
             : level == 4 ? SIFT_LOG_WARN
             : level <= 6 ? SIFT_LOG_INFO
                          : SIFT_LOG_DEBUG;
    sift_log(lv, NULL, NULL, "kafka %s: %s: %s", rd_kafka_name(rk), fac, buf);
}

/* Errors librdkafka reports from its own threads: brokers going away and
 * coming back are retried by librdkafka itself; we say so once per
 * LOG_REPEAT_S, and stop only on a fatal error. */
static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    sift_kafka_consumer *c = opaque;
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        char msg[256];
        rd_kafka_fatal_error(rk, msg, sizeof msg);
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "kafka: fatal error: %s", msg);
        return;
    }
    double t = now_s();
    if (c) {
        /* librdkafka calls this from its own threads */
        pthread_mutex_lock(&c->mu);
        int repeat = code == c->last_err && t - c->last_err_at < LOG_REPEAT_S;
        if (!repeat) {
            c->last_err = code;
            c->last_err_at = t;
        }
        pthread_mutex_unlock(&c->mu);
        if (repeat)
            return;
    }
    sift_log(SIFT_LOG_WARN, NULL, NULL, "kafka: %s: %s (%s); retrying", rd_kafka_name(rk),
             rd_kafka_err2str((rd_kafka_resp_err_t)code), reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    sift_kafka_consumer *c = opaque;
    if (m->err) {
        atomic_fetch_add(&c->dlq_failed, 1);
        sift_log(SIFT_LOG_WARN, NULL, NULL, "kafka: dead-letter message to %s not delivered: %s",
                 c->dlq, rd_kafka_err2str(m->err));
    }
}

static struct part *part_find(sift_kafka_consumer *c, int32_t id)
{
    for (size_t i = 0; i < c->n_parts; i++)
        if (c->parts[i].id == id)
            return &c->parts[i];
    return NULL;
}

/* Adds the partitions of `l` that are of our topic (under c->mu). */
static int parts_add(sift_kafka_consumer *c, const rd_kafka_topic_partition_list_t *l)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < l->cnt; i++) {
        if (strcmp(l->elems[i].topic, c->topic) != 0 || part_find(c, l->elems[i].partition))
            continue;
        if (c->n_parts == c->cap_parts) {
            size_t cap = c->cap_parts ? c->cap_parts * 2 : 16;
            struct part *p = sift_realloc(c->parts, cap * sizeof *p);
            if (!p) {
                rc = SIFT_ENOMEM;
                break;
            }
            c->parts = p;
            c->cap_parts = cap;
        }
        c->parts[c->n_parts++] =
            (struct part){.id = l->elems[i].partition, .next = -1, .high = -1, .lag = -1};
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void parts_remove(sift_kafka_consumer *c, const rd_kafka_topic_partition_list_t *l)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < l->cnt; i++) {
        struct part *p = part_find(c, l->elems[i].partition);
        if (p && !strcmp(l->elems[i].topic, c->topic))
            *p = c->parts[--c->n_parts];
    }
    pthread_mutex_unlock(&c->mu);
}

static int flush_batch(sift_kafka_consumer *c, sift_err *err);
static void release_batch(sift_kafka_consumer *c);

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *l,
                         void *opaque)
{
    sift_kafka_consumer *c = opaque;
    int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *ie = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (coop)
            ie = rd_kafka_incremental_assign(rk, l);
        else
            re = rd_kafka_assign(rk, l);
        if (parts_add(c, l))
            sift_log(SIFT_LOG_ERROR, NULL, NULL, "kafka: out of memory tracking partitions");
        sift_log(SIFT_LOG_INFO, NULL, NULL, "kafka: %d partition(s) of %s assigned to group %s",
                 l->cnt, c->topic, c->group);
    } else {
        /* A revoke comes from inside a poll, possibly while a batch is
         * being collected: make it durable and commit it while the
         * partitions are still ours, so their next owner starts after it.
         * If that fails, the next owner replays it (harmless: versions). */
        if (c->n_items) {
            sift_err fe = {0};
            if (flush_batch(c, &fe))
                sift_log(SIFT_LOG_WARN, NULL, NULL,
                         "kafka: batch in progress at a rebalance not committed: %s; the "
                         "partitions' next owner replays it",
                         fe.msg);
            release_batch(c);
        }
        if (coop)
            ie = rd_kafka_incremental_unassign(rk, l);
        else
            re = rd_kafka_assign(rk, NULL);
        parts_remove(c, l);
        sift_log(SIFT_LOG_INFO, NULL, NULL, "kafka: %d partition(s) of %s revoked", l->cnt,
                 c->topic);
    }
    if (ie) {
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "kafka: rebalance: %s", rd_kafka_error_string(ie));
        rd_kafka_error_destroy(ie);
    } else if (re) {
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "kafka: rebalance: %s", rd_kafka_err2str(re));
    }
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, sift_err *err)
{
    char msg[256];
    if (rd_kafka_conf_set(conf, k, v, msg, sizeof msg) != RD_KAFKA_CONF_OK)
        return sift_err_set(err, SIFT_EINVAL, "kafka property %s=%s: %s", k, v, msg);
    return 0;
}

/* The shared properties, then the caller's "key=value" list. */
static rd_kafka_conf_t *conf_new(sift_kafka_consumer *c, int producer, sift_err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        sift_err_set(err, SIFT_ENOMEM, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    if (conf_set(conf, "bootstrap.servers", c->brokers, err) ||
        conf_set(conf, "client.id", producer ? "sift-dlq" : "sift-ingest", err))
        goto fail;
    if (producer) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        if (conf_set(conf, "acks", "all", err) ||
            conf_set(conf, "message.timeout.ms", "30000", err))
            goto fail;
    } else {
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        /* offsets are stored and committed by hand, after the store commit */
        if (conf_set(conf, "group.id", c->group, err) ||
            conf_set(conf, "enable.auto.commit", "false", err) ||
            conf_set(conf, "enable.auto.offset.store", "false", err) ||
            conf_set(conf, "auto.offset.reset", "earliest", err) ||
            conf_set(conf, "enable.partition.eof", "true", err))
            goto fail;
    }
    for (const char *const *kv = c->o.conf; kv && *kv; kv++) {
        const char *eq = strchr(*kv, '=');
        if (!eq || eq == *kv) {
            sift_err_set(err, SIFT_EINVAL, "kafka property \"%s\": expected key=value", *kv);
            goto fail;
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - *kv), *kv);
        char msg[256];
        rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, eq + 1, msg, sizeof msg);
        /* a consumer-only property given to the producer (or the reverse)
         * is not an error: the list is shared */
        if (r == RD_KAFKA_CONF_INVALID) {
            sift_err_set(err, SIFT_EINVAL, "kafka property %s: %s", *kv, msg);
            goto fail;
        }
        if (r == RD_KAFKA_CONF_UNKNOWN) {
            sift_err_set(err, SIFT_EINVAL, "kafka property %s: unknown to librdkafka %s", key,
                         rd_kafka_version_str());
            goto fail;
        }
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int sift_kafka_consumer_new(const sift_kafka_opts *opts, sift_kafka_consumer **out, sift_err *err)
{
    *out = NULL;
    if (!opts || !opts->brokers || !*opts->brokers)
        return sift_err_set(err, SIFT_EINVAL, "kafka: no brokers given (host:port,...)");
    if (!opts->topic || !*opts->topic)
        return sift_err_set(err, SIFT_EINVAL, "kafka: no topic given");
    if (!opts->store)
        return sift_err_set(err, SIFT_EINVAL, "kafka: no store to apply events to");
    sift_kafka_consumer *c = sift_calloc(1, sizeof *c);
    if (!c)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    c->o = *opts;
    if (!c->o.batch)
        c->o.batch = DEFAULT_BATCH;
    if (c->o.batch_ms <= 0)
        c->o.batch_ms = DEFAULT_BATCH_MS;
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->stop, 0);
    atomic_init(&c->dlq_failed, 0);
    c->st.lag = -1;
    c->brokers = sift_strdup(opts->brokers);
    c->topic = sift_strdup(opts->topic);
    c->group = sift_strdup(opts->group && *opts->group ? opts->group : "sift");
    size_t tl = strlen(opts->topic);
    c->dlq = opts->dlq && *opts->dlq ? sift_strdup(opts->dlq) : sift_malloc(tl + 5);
    c->arena = sift_arena_new((size_t)64 * 1024);
    c->items = sift_calloc(c->o.batch, sizeof *c->items);
    if (!c->brokers || !c->topic || !c->group || !c->dlq || !c->arena || !c->items) {
        sift_kafka_consumer_free(c);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    if (!opts->dlq || !*opts->dlq)
        snprintf(c->dlq, tl + 5, "%s.dlq", opts->topic);
    if (!strcmp(c->dlq, c->topic)) {
        sift_kafka_consumer_free(c);
        return sift_err_set(err, SIFT_EINVAL,
                            "kafka: the dead-letter topic must differ from the topic");
    }
    char msg[512];
    rd_kafka_conf_t *conf = conf_new(c, 0, err);
    if (!conf)
        goto fail;
    if (!(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, msg, sizeof msg))) {
        rd_kafka_conf_destroy(conf);
        sift_err_set(err, SIFT_EINVAL, "kafka consumer: %s", msg);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    if (!(conf = conf_new(c, 1, err)))
        goto fail;
    if (!(c->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof msg))) {
        rd_kafka_conf_destroy(conf);
        sift_err_set(err, SIFT_EINVAL, "kafka producer: %s", msg);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    sift_kafka_consumer_free(c);
    return err ? err->code : SIFT_EINVAL;
}

void sift_kafka_consumer_stop(sift_kafka_consumer *c)
{
    atomic_store(&c->stop, 1);
}

void sift_kafka_consumer_stats(sift_kafka_consumer *c, sift_kafka_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

void sift_kafka_consumer_lag(sift_kafka_consumer *c, sift_kafka_lag *out, size_t max, size_t *n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_parts && i < max; i++)
        out[i] = (sift_kafka_lag){.partition = c->parts[i].id,
                                  .next = c->parts[i].next,
                                  .high = c->parts[i].high,
                                  .lag = c->parts[i].lag};
    *n = c->n_parts;
    pthread_mutex_unlock(&c->mu);
}

/* Refreshes each partition's lag from the watermarks librdkafka cached from
 * its last fetches (no broker round trip). Run's thread only. */
static void lag_update(sift_kafka_consumer *c)
{
    int64_t total = 0;
    int known = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_parts; i++) {
        struct part *p = &c->parts[i];
        int64_t low = -1, high = -1;
        rd_kafka_get_watermark_offsets(c->rk, c->topic, p->id, &low, &high);
        p->high = high;
        int64_t from = p->next >= 0 ? p->next : low;
        p->lag = high >= 0 && from >= 0 ? (high > from ? high - from : 0) : -1;
        if (p->lag >= 0) {
            total += p->lag;
            known = 1;
        }
    }
    c->st.lag = known ? total : -1;
    pthread_mutex_unlock(&c->mu);
    c->last_lag_at = now_s();
}

static int all_eof(sift_kafka_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    int all = c->n_parts > 0;
    for (size_t i = 0; all && i < c->n_parts; i++)
        all = c->parts[i].eof;
    pthread_mutex_unlock(&c->mu);
    return all;
}

static void set_eof(sift_kafka_consumer *c, int32_t part, int eof)
{
    pthread_mutex_lock(&c->mu);
    struct part *p = part_find(c, part);
    if (p)
        p->eof = eof;
    pthread_mutex_unlock(&c->mu);
}

/* Errors that no retry will cure. */
static int is_fatal(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR__AUTHENTICATION || e == RD_KAFKA_RESP_ERR__FATAL ||
           e == RD_KAFKA_RESP_ERR__INVALID_ARG;
}

/* Fills c->items: up to batch messages, waiting at most batch_ms after the
 * first one. Returns with an empty batch when idle and at the end (with
 * exit_at_end), or when stop is asked. */
static void collect(sift_kafka_consumer *c)
{
    double deadline = 0;
    c->n_items = 0;
    while (c->n_items < c->o.batch && !atomic_load(&c->stop) && !c->fatal) {
        int timeout = 100;
        if (c->n_items) {
            double rem = deadline - now_s();
            if (rem <= 0)
                break;
            if (rem * 1000 < timeout)
                timeout = (int)(rem * 1000) + 1;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout);
        if (now_s() - c->last_lag_at > 1.0)
            lag_update(c);
        if (!m) {
            if (!c->n_items && c->o.exit_at_end && all_eof(c))
                break;
            if (!c->n_items && c->o.on_idle)
                c->o.on_idle(c->o.ud);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            set_eof(c, m->partition, 1);
            rd_kafka_message_destroy(m);
            if (c->o.exit_at_end && all_eof(c))
                break;
            continue;
        }
        if (m->err) {
            if (is_fatal(m->err) ||
                (c->o.exit_at_end && (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                                      m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))) {
                c->fatal = m->err;
                snprintf(c->fatal_msg, sizeof c->fatal_msg, "%s", rd_kafka_message_errstr(m));
            } else {
                on_error(c->rk, m->err, rd_kafka_message_errstr(m), c);
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        set_eof(c, m->partition, 0);
        if (!c->n_items)
            deadline = now_s() + c->o.batch_ms / 1000.0;
        c->items[c->n_items++] = (struct item){.m = m};
    }
}

/* Parses every message of the batch; the bad ones get their reason. */
static int parse_batch(sift_kafka_consumer *c, sift_err *err)
{
    for (size_t i = 0; i < c->n_items; i++) {
        struct item *it = &c->items[i];
        sift_err e = {0};
        int rc = sift_kafka_event_parse(c->arena, it->m->payload, it->m->len, &it->ev, &e);
        if (rc == SIFT_ENOMEM)
            return sift_err_set(err, rc, "out of memory parsing events");
        if (rc && !(it->reason = sift_arena_strdup(c->arena, e.msg)))
            return sift_err_set(err, SIFT_ENOMEM, "out of memory parsing events");
    }
    return 0;
}

struct counts {
    uint64_t applied, deleted, products, product_events, stale, dlq;
};

/* One store transaction for the good events. The store refusing an event's
 * content makes it bad (to the DLQ); any other store error rolls back. */
static int apply_batch(sift_kafka_consumer *c, struct counts *n, sift_err *err)
{
    int rc;
    memset(n, 0, sizeof *n);
    if ((rc = sift_store_begin(c->o.store, err)))
        return rc;
    for (size_t i = 0; i < c->n_items; i++) {
        struct item *it = &c->items[i];
        if (it->reason) {
            n->dlq++;
            continue;
        }
        int applied = 0;
        sift_err e = {0};
        rc = sift_kafka_event_apply(c->o.store, &it->ev, &applied, &e);
        if (rc == SIFT_EINVAL || rc == SIFT_ETOOBIG) {
            if (!(it->reason = sift_arena_strdup(c->arena, e.msg))) {
                rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
                goto fail;
            }
            it->refused = 1;
            n->dlq++;
            continue;
        }
        if (rc) {
            sift_err_copy(err, &e);
            goto fail;
        }
        if (it->ev.op == SIFT_KAFKA_UPSERT || it->ev.op == SIFT_KAFKA_DELETE)
            n->product_events++;
        if (applied) {
            n->applied++;
            if (it->ev.op == SIFT_KAFKA_DELETE)
                n->deleted++;
            if (it->ev.op == SIFT_KAFKA_UPSERT || it->ev.op == SIFT_KAFKA_DELETE)
                n->products++;
        } else {
            n->stale++;
        }
    }
    if ((rc = sift_store_commit(c->o.store, err)))
        goto fail;
    return 0;
fail:
    sift_store_rollback(c->o.store, NULL);
    return rc;
}

/* Produces the batch's bad messages to the DLQ and waits until every one is
 * delivered; retried while the broker is away. SIFT_ECANCELED when stop was
 * asked before they were all delivered. */
static int deliver_dlq(sift_kafka_consumer *c, sift_err *err)
{
    size_t bad = 0;
    for (size_t i = 0; i < c->n_items; i++)
        bad += c->items[i].reason != NULL;
    if (!bad)
        return 0;
    for (;;) {
        atomic_store(&c->dlq_failed, 0);
        for (size_t i = 0; i < c->n_items; i++) {
            struct item *it = &c->items[i];
            if (!it->reason)
                continue;
            char part[16], off[24];
            snprintf(part, sizeof part, "%d", (int)it->m->partition);
            snprintf(off, sizeof off, "%lld", (long long)it->m->offset);
            for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                    c->prod, RD_KAFKA_V_TOPIC(c->dlq), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(it->m->key, it->m->key_len),
                    RD_KAFKA_V_VALUE(it->m->payload, it->m->len),
                    RD_KAFKA_V_HEADER("sift-error", it->reason, -1),
                    RD_KAFKA_V_HEADER("sift-topic", c->topic, -1),
                    RD_KAFKA_V_HEADER("sift-partition", part, -1),
                    RD_KAFKA_V_HEADER("sift-offset", off, -1), RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                    break;
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    return sift_err_set(err, SIFT_EIO, "kafka: cannot produce to %s: %s", c->dlq,
                                        rd_kafka_err2str(e));
                rd_kafka_poll(c->prod, 100);
            }
        }
        while (rd_kafka_flush(c->prod, 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (atomic_load(&c->stop) && rd_kafka_outq_len(c->prod) > 0)
                return sift_err_set(err, SIFT_ECANCELED,
                                    "kafka: stopped before the dead-letter topic %s took %d "
                                    "message(s); their offsets are not committed",
                                    c->dlq, rd_kafka_outq_len(c->prod));
            sift_log(SIFT_LOG_WARN, NULL, NULL,
                     "kafka: waiting for the dead-letter topic %s (%d message(s) queued)", c->dlq,
                     rd_kafka_outq_len(c->prod));
        }
        if (atomic_load(&c->dlq_failed) == 0)
            return 0;
        if (atomic_load(&c->stop))
            return sift_err_set(err, SIFT_EIO,
                                "kafka: dead-letter messages to %s not delivered; their offsets "
                                "are not committed",
                                c->dlq);
        pthread_mutex_lock(&c->mu);
        c->st.retries++;
        pthread_mutex_unlock(&c->mu);
        pause_ms(c, RETRY_PAUSE_MS); /* produce the whole set again: duplicates beat losses */
    }
}

/* Stores the batch's next offsets and commits them. A failed commit is not
 * fatal: the stored offsets go with the next commit, and a replay of what
 * was not committed is harmless. */
static void commit_offsets(sift_kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    if (!l)
        return;
    for (size_t i = 0; i < c->n_items; i++) {
        rd_kafka_message_t *m = c->items[i].m;
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(l, c->topic, m->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(l, c->topic, m->partition);
        if (tp->offset < m->offset + 1)
            tp->offset = m->offset + 1;
    }
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < l->cnt; i++) {
        struct part *p = part_find(c, l->elems[i].partition);
        if (p)
            p->next = l->elems[i].offset;
    }
    pthread_mutex_unlock(&c->mu);
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (e)
        sift_log(SIFT_LOG_WARN, NULL, NULL, "kafka: storing offsets: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    e = rd_kafka_commit(c->rk, NULL, 0);
    c->commit_pending = e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET;
    pthread_mutex_lock(&c->mu);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        c->st.commits++;
    else
        c->st.retries++;
    pthread_mutex_unlock(&c->mu);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sift_log(SIFT_LOG_WARN, NULL, NULL,
                 "kafka: offset commit failed: %s; the batch is durable in the store and its "
                 "offsets go with the next commit",
                 rd_kafka_err2str(e));
}

static void release_batch(sift_kafka_consumer *c)
{
    for (size_t i = 0; i < c->n_items; i++)
        rd_kafka_message_destroy(c->items[i].m);
    c->n_items = 0;
    if (c->arena)
        sift_arena_reset(c->arena);
}

/* Makes the collected batch durable, then commits its offsets. */
static int flush_batch(sift_kafka_consumer *c, sift_err *err)
{
    int rc;
    struct counts n;
    if ((rc = parse_batch(c, err)))
        return rc;
    while ((rc = apply_batch(c, &n, err))) {
        if (rc == SIFT_ENOMEM || atomic_load(&c->stop))
            return rc;
        sift_log(SIFT_LOG_WARN, NULL, NULL,
                 "kafka: store: %s; batch of %zu events rolled back, retrying in %d ms", err->msg,
                 c->n_items, RETRY_PAUSE_MS);
        pthread_mutex_lock(&c->mu);
        c->st.retries++;
        pthread_mutex_unlock(&c->mu);
        pause_ms(c, RETRY_PAUSE_MS);
        /* reasons the store gave are recomputed on the retry */
        for (size_t i = 0; i < c->n_items; i++)
            if (c->items[i].refused) {
                c->items[i].reason = NULL;
                c->items[i].refused = 0;
            }
    }
    for (size_t i = 0; i < c->n_items; i++)
        if (c->items[i].reason)
            sift_log(SIFT_LOG_WARN, NULL, NULL, "kafka: %s [%d] offset %lld: %s; sent to %s",
                     c->topic, (int)c->items[i].m->partition, (long long)c->items[i].m->offset,
                     c->items[i].reason, c->dlq);
    if ((rc = deliver_dlq(c, err)))
        return rc;
    commit_offsets(c);
    pthread_mutex_lock(&c->mu);
    c->st.events += c->n_items;
    c->st.applied += n.applied;
    c->st.deleted += n.deleted;
    c->st.products += n.products;
    c->st.product_events += n.product_events;
    c->st.stale += n.stale;
    c->st.dlq += n.dlq;
    c->st.batches++;
    pthread_mutex_unlock(&c->mu);
    lag_update(c);
    if (c->o.on_batch) {
        sift_kafka_stats st;
        sift_kafka_consumer_stats(c, &st);
        c->o.on_batch(c->o.ud, &st);
    }
    return 0;
}

/* assign mode: every partition of the topic from the group's committed
 * offsets (earliest when none), without a group join. */
static int assign_all(sift_kafka_consumer *c, sift_err *err)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(c->rk, c->topic, NULL);
    if (!t)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    int rc = 0;
    while (!atomic_load(&c->stop)) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(c->rk, 0, t, &md, 2000);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && !md->topics[0].err &&
            md->topics[0].partition_cnt > 0) {
            rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
            for (int i = 0; l && i < md->topics[0].partition_cnt; i++)
                rd_kafka_topic_partition_list_add(l, c->topic, md->topics[0].partitions[i].id)
                    ->offset = RD_KAFKA_OFFSET_STORED;
            rd_kafka_metadata_destroy(md);
            if (!l) {
                rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
                break;
            }
            if ((e = rd_kafka_assign(c->rk, l)) == RD_KAFKA_RESP_ERR_NO_ERROR)
                rc = parts_add(c, l);
            else
                rc = sift_err_set(err, SIFT_EIO, "kafka: assign: %s", rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(l);
            sift_log(SIFT_LOG_INFO, NULL, NULL,
                     "kafka: reading %zu partition(s) of %s (offsets of group %s)", c->n_parts,
                     c->topic, c->group);
            break;
        }
        rd_kafka_resp_err_t te = e ? e : md->topic_cnt ? md->topics[0].err : e;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (c->o.exit_at_end && te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            rc = sift_err_set(err, SIFT_ENOTFOUND, "kafka: topic %s does not exist", c->topic);
            break;
        }
        sift_log(SIFT_LOG_WARN, NULL, NULL, "kafka: metadata of topic %s from %s: %s; retrying",
                 c->topic, c->brokers, te ? rd_kafka_err2str(te) : "no partitions");
        pthread_mutex_lock(&c->mu);
        c->st.retries++;
        pthread_mutex_unlock(&c->mu);
        pause_ms(c, RETRY_PAUSE_MS);
    }
    rd_kafka_topic_destroy(t);
    return rc;
}

int sift_kafka_consumer_run(sift_kafka_consumer *c, sift_err *err)
{
    int rc = 0;
    if (c->o.assign) {
        if ((rc = assign_all(c, err)))
            return rc;
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        if (!l)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        rd_kafka_topic_partition_list_add(l, c->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (e)
            return sift_err_set(err, SIFT_EIO, "kafka: subscribe to %s: %s", c->topic,
                                rd_kafka_err2str(e));
        sift_log(SIFT_LOG_INFO, NULL, NULL, "kafka: joining group %s for topic %s at %s", c->group,
                 c->topic, c->brokers);
    }
    while (!atomic_load(&c->stop)) {
        collect(c);
        if (c->n_items && (rc = flush_batch(c, err)))
            break;
        release_batch(c);
        if (c->fatal) {
            rc = sift_err_set(err, SIFT_EIO, "kafka: %s: %s",
                              rd_kafka_err2str((rd_kafka_resp_err_t)c->fatal), c->fatal_msg);
            break;
        }
        if (c->o.exit_at_end && all_eof(c))
            break;
    }
    /* A batch collected when stop came has been applied too (it is short);
     * one that could not be made durable is left for the replay. Offsets
     * whose commit failed get one more try (closing does not commit). */
    release_batch(c);
    if (c->commit_pending) {
        rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            sift_log(SIFT_LOG_INFO, NULL, NULL, "kafka: offsets committed at stop");
        else
            sift_log(SIFT_LOG_WARN, NULL, NULL,
                     "kafka: offsets not committed at stop: %s; the last batches are replayed "
                     "next time (harmless: versions)",
                     rd_kafka_err2str(e));
    }
    return rc == SIFT_ECANCELED && atomic_load(&c->stop) ? 0 : rc;
}

void sift_kafka_consumer_free(sift_kafka_consumer *c)
{
    if (!c)
        return;
    release_batch(c);
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    if (c->prod) {
        rd_kafka_flush(c->prod, 1000);
        rd_kafka_destroy(c->prod);
    }
    pthread_mutex_destroy(&c->mu);
    sift_free(c->parts);
    sift_free(c->items);
    sift_arena_free(c->arena);
    sift_free(c->brokers);
    sift_free(c->topic);
    sift_free(c->group);
    sift_free(c->dlq);
    sift_free(c);
}
