/* Kafka catalog sync: a consumer that applies catalog events from a topic to
 * a store (SQLite or any backend behind store.h).
 *
 * Events are JSON, one per message (docs/catalog.md, "Kafka events"):
 *   {"op":"upsert","sku":"A-1","version":7,"product":{...product line...}}
 *   {"op":"delete","sku":"A-1","version":8}
 *   {"op":"stock","sku":"A-1","warehouse":"HAN","quantity":3,"version":2}
 *   {"op":"price","sku":"A-1","currency":"USD","amount":129.99,"valid_from":0,"version":2}
 * Every event must carry a version: the store applies a write only when its
 * version is newer (store.h), which is what makes a replay change nothing.
 *
 * Delivery: at least once. Messages are applied in batches (bounded by count
 * and by time), each batch inside one store transaction; the batch's offsets
 * are stored and committed (rd_kafka_commit) only after the transaction has
 * committed and the batch's dead-letter messages have been delivered. A crash
 * at any point replays at most the batch in flight, which the versions make
 * harmless.
 *
 * A malformed event (bad JSON, unknown op, a field the catalog rules refuse)
 * is produced to the dead-letter topic with the original key and value and
 * the reason in the header "sift-error" (plus "sift-topic", "sift-partition",
 * "sift-offset"); consumption goes on, so a bad event never stalls its
 * partition.
 *
 * Threading: sift_kafka_consumer_run blocks (it polls librdkafka) and must
 * run on a thread of its own, never on a uv loop. The store is used only by
 * that thread. sift_kafka_consumer_stop and sift_kafka_consumer_lag may be
 * called from any thread (stop also from a signal handler). */
#ifndef SIFT_KAFKA_H
#define SIFT_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/err.h"
#include "sift/store.h"

/* ---- events (pure) ---- */

enum sift_kafka_op {
    SIFT_KAFKA_UPSERT = 0,
    SIFT_KAFKA_DELETE = 1,
    SIFT_KAFKA_STOCK = 2,
    SIFT_KAFKA_PRICE = 3,
};

/* One parsed event. Only the member of its op is filled; sku and version
 * are set for every op. */
typedef struct sift_kafka_event {
    int op; /* enum sift_kafka_op */
    const char *sku;
    int64_t version;
    sift_product product; /* upsert: the product, its version the event's */
    sift_stock stock;     /* stock */
    sift_price price;     /* price */
} sift_kafka_event;

/* Parses one message value (`len` bytes, need not be NUL-terminated) into
 * `ev`, strings allocated from `a`. Pure: no I/O, no globals. On a bad event
 * returns SIFT_EINVAL or SIFT_ETOOBIG with a message naming the field
 * ("op: must be one of upsert, delete, stock, price", "version: missing",
 * "product.title: missing", "product.sku: \"B\" differs from sku \"A\"").
 * The product, stock and price members follow the JSON Lines rules of
 * docs/catalog.md. SIFT_ENOMEM when the arena is exhausted. */
int sift_kafka_event_parse(sift_arena *a, const char *msg, size_t len, sift_kafka_event *ev,
                           sift_err *err);

/* Applies a parsed event to `store` (the caller holds the transaction).
 * `applied` as in store.h. Store errors as the store returns them; SIFT_EINVAL
 * when the store refuses the event's content. */
int sift_kafka_event_apply(sift_store *store, const sift_kafka_event *ev, int *applied,
                           sift_err *err);

/* ---- the consumer ---- */

typedef struct sift_kafka_consumer sift_kafka_consumer;

/* Counts since the consumer was created. */
typedef struct sift_kafka_stats {
    uint64_t events;   /* messages applied or sent to the DLQ (durable) */
    uint64_t applied;  /* events that changed the store */
    uint64_t deleted;  /* of which deletes */
    uint64_t products; /* of which upserts and deletes (the search index must follow) */
    /* valid upserts and deletes read, applied or not: on a store shared by
     * several consumers another one may have applied them first */
    uint64_t product_events;
    uint64_t stale;   /* valid events whose version was not newer */
    uint64_t dlq;     /* malformed events sent to the dead-letter topic */
    uint64_t batches; /* store transactions committed */
    uint64_t commits; /* successful offset commits */
    uint64_t retries; /* store or broker operations retried */
    int64_t lag;      /* sum of the partitions' lag at the last batch; -1: unknown */
} sift_kafka_stats;

/* Lag of one assigned partition. */
typedef struct sift_kafka_lag {
    int32_t partition;
    int64_t next; /* next offset to apply: everything before is durable; -1: unknown */
    int64_t high; /* high watermark (offset of the next message produced); -1: unknown */
    int64_t lag;  /* high - next, or high - low watermark before anything was read */
} sift_kafka_lag;

typedef struct sift_kafka_opts {
    const char *brokers; /* bootstrap servers "host:port,..." (required) */
    const char *topic;   /* catalog topic (required) */
    const char *group;   /* consumer group id; NULL: "sift" */
    const char *dlq;     /* dead-letter topic; NULL: "<topic>.dlq" */
    /* 1: read every partition of the topic without joining the group
     * (rd_kafka_assign; offsets are still read from and committed to the
     * group). For one consumer per group: it skips the group join (seconds).
     * 0: subscribe and let the group balance partitions. */
    int assign;
    size_t batch;    /* events per transaction; 0: 1000 */
    int batch_ms;    /* a batch waits at most this long to fill; 0: 200 */
    int exit_at_end; /* 1: run returns once every assigned partition is at its end */
    /* Extra librdkafka properties, "key=value" strings, NULL-terminated;
     * applied to the consumer and the DLQ producer (security, timeouts). */
    const char *const *conf;
    sift_store *store; /* where events go (required); used by run's thread only */
    /* Called on run's thread after each durable batch (and offset commit
     * attempt). May be NULL. */
    void (*on_batch)(void *ud, const sift_kafka_stats *st);
    /* Called on run's thread about every 100 ms while no message arrives
     * (work deferred from on_batch can be finished there). May be NULL. */
    void (*on_idle)(void *ud);
    void *ud;
} sift_kafka_opts;

/* Creates the consumer and the DLQ producer (nothing is contacted yet).
 * SIFT_EINVAL for missing options or a librdkafka property it refuses (the
 * message names it), SIFT_ENOMEM. */
int sift_kafka_consumer_new(const sift_kafka_opts *opts, sift_kafka_consumer **out, sift_err *err);

/* Consumes until sift_kafka_consumer_stop, or, with exit_at_end, until every
 * assigned partition is at its end. A broker that is down is retried with
 * warnings in the log, without end; a store error rolls the batch back and
 * retries it after a pause. Returns 0 after a clean stop (the last durable
 * batch committed, or its commit attempted), or a negative code on a fatal
 * error (unknown topic, authentication, a store error that persists after
 * stop was asked). */
int sift_kafka_consumer_run(sift_kafka_consumer *c, sift_err *err);

/* Asks run to stop after the batch in progress. Async-signal-safe. */
void sift_kafka_consumer_stop(sift_kafka_consumer *c);

/* The counts so far (thread-safe copy). */
void sift_kafka_consumer_stats(sift_kafka_consumer *c, sift_kafka_stats *out);

/* Copies the lag of at most `max` assigned partitions into `out` and sets *n
 * to how many there are (may exceed max). Thread-safe; no broker round trip:
 * the high watermarks are the ones the last fetches brought back. */
void sift_kafka_consumer_lag(sift_kafka_consumer *c, sift_kafka_lag *out, size_t max, size_t *n);

/* Closes the consumer (leaving the group) and the producer, and frees it.
 * Does not close the store. NULL is a no-op. */
void sift_kafka_consumer_free(sift_kafka_consumer *c);

#endif
