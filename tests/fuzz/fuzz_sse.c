/* Differential fuzz target for the SSE parser: the same input fed whole and
 * fed in pieces chosen by the fuzzer must give the same events and the same
 * final code, and nothing may crash or leak.
 *
 * Input layout: byte 0 picks the event size limit (small limits exercise the
 * SIFT_ETOOBIG paths), bytes 1..8 seed the split points, the rest is the
 * stream. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift/buf.h"
#include "sift/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int record(const sift_sse_event *ev, void *udata, sift_err *err)
{
    (void)err;
    sift_buf *log = udata;
    /* Lengths first, so that different events cannot serialise alike. */
    sift_buf_printf(log, "%zu:%zu:%zu:%lld|", ev->event_len, ev->data_len, ev->id_len,
                    (long long)ev->retry_ms);
    sift_buf_append(log, ev->event, ev->event_len);
    sift_buf_append(log, ev->data, ev->data_len);
    sift_buf_append(log, ev->id, ev->id_len);
    return 0;
}

static int run(const char *in, size_t len, size_t max, uint64_t seed, int split, sift_buf *log)
{
    sift_sse_parser p;
    sift_sse_init(&p, max);
    sift_err err = {0};
    size_t at = 0;
    int rc = 0;
    while (at < len && rc == 0) {
        size_t n = len - at;
        if (split) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            /* Mostly short pieces, sometimes empty ones. */
            n = (size_t)(seed >> 33) % (n < 17 ? n + 1 : 17);
        }
        rc = sift_sse_feed(&p, in + at, n, record, log, &err);
        at += n;
    }
    if (rc == 0)
        rc = sift_sse_finish(&p, record, log, &err);
    if (rc != 0 && err.code != rc)
        abort(); /* every error must come with its message */
    sift_sse_free(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    static const size_t limits[] = {0, 1, 2, 8, 16, 64, 1024};
    size_t max = limits[data[0] % (sizeof(limits) / sizeof(limits[0]))];
    uint64_t seed;
    memcpy(&seed, data + 1, sizeof(seed));
    const char *in = (const char *)data + 9;
    size_t len = size - 9;

    sift_buf whole, pieces;
    sift_buf_init(&whole, 0);
    sift_buf_init(&pieces, 0);
    int rc1 = run(in, len, max, seed, 0, &whole);
    int rc2 = run(in, len, max, seed, 1, &pieces);
    if (rc1 != rc2 || whole.len != pieces.len ||
        (whole.len && memcmp(whole.data, pieces.data, whole.len) != 0))
        abort();
    sift_buf_free(&whole);
    sift_buf_free(&pieces);
    return 0;
}
