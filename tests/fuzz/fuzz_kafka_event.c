/* Fuzz target for the Kafka catalog event parser.
 *
 * Any bytes must give either an event whose strings respect the catalog
 * limits (and whose op-specific member carries the event's SKU and version),
 * or SIFT_EINVAL/SIFT_ETOOBIG with a message. Parsing the same bytes twice
 * gives the same outcome (the parser is pure). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sift/arena.h"
#include "sift/kafka.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sift_arena *a = sift_arena_new(0);
    if (!a)
        return 0;
    sift_kafka_event ev, ev2;
    sift_err e = {0}, e2 = {0};
    int rc = sift_kafka_event_parse(a, (const char *)data, size, &ev, &e);
    int rc2 = sift_kafka_event_parse(a, (const char *)data, size, &ev2, &e2);
    check(rc == rc2);
    if (rc == 0) {
        check(ev.op >= SIFT_KAFKA_UPSERT && ev.op <= SIFT_KAFKA_PRICE);
        check(ev.sku && strlen(ev.sku) >= 1 && strlen(ev.sku) <= SIFT_SKU_MAX);
        check(ev.version >= 0 && ev.version <= SIFT_VERSION_MAX);
        check(ev.version == ev2.version && !strcmp(ev.sku, ev2.sku));
        switch (ev.op) {
        case SIFT_KAFKA_UPSERT:
            check(!strcasecmp(ev.product.sku, ev.sku) && ev.product.version == ev.version);
            check(ev.product.title && *ev.product.title &&
                  strlen(ev.product.title) <= SIFT_TITLE_MAX);
            check(ev.product.n_attrs <= SIFT_ATTRS_MAX);
            break;
        case SIFT_KAFKA_STOCK:
            check(!strcmp(ev.stock.sku, ev.sku) && ev.stock.version == ev.version);
            check(ev.stock.quantity >= 0);
            break;
        case SIFT_KAFKA_PRICE:
            check(!strcmp(ev.price.sku, ev.sku) && ev.price.version == ev.version);
            check(ev.price.amount_minor >= 0 && strlen(ev.price.currency) == 3);
            break;
        default:
            break;
        }
    } else {
        check(rc == SIFT_EINVAL || rc == SIFT_ETOOBIG || rc == SIFT_ENOMEM);
        check(e.msg[0] != '\0' && !strcmp(e.msg, e2.msg));
    }
    sift_arena_free(a);
    return 0;
}
