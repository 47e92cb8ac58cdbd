/* SSE parser throughput: a generated OpenAI-style stream (~64 MB) parsed in
 * 4 KB and 64 KB feeds (what socket reads deliver), five repetitions each,
 * median reported. Writes bench/results/sse.{json,md} (benchutil.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchutil.h"
#include "sift/buf.h"
#include "sift/sse.h"

#define REPS 5

static int count_event(const sift_sse_event *ev, void *udata, sift_err *err)
{
    (void)err;
    uint64_t *n = udata;
    *n += ev->data_len > 0;
    return 0;
}

/* Median MB/s over REPS parses of `in` fed in pieces of `chunk` bytes. */
static double measure(const char *in, size_t len, size_t chunk, uint64_t *events)
{
    double mbs[REPS];
    for (int r = 0; r < REPS; r++) {
        sift_sse_parser p;
        sift_sse_init(&p, 0);
        sift_err err = {0};
        uint64_t n = 0;
        double t0 = bench_now_s();
        for (size_t at = 0; at < len; at += chunk) {
            size_t k = len - at < chunk ? len - at : chunk;
            if (sift_sse_feed(&p, in + at, k, count_event, &n, &err) != 0) {
                fprintf(stderr, "bench_sse: parse failed: %s\n", err.msg);
                exit(1);
            }
        }
        sift_sse_finish(&p, count_event, &n, &err);
        double dt = bench_now_s() - t0;
        sift_sse_free(&p);
        mbs[r] = (double)len / 1e6 / dt;
        *events = n;
    }
    return bench_median(mbs, REPS);
}

int main(void)
{
    sift_buf s;
    sift_buf_init(&s, 0);
    size_t target = (size_t)64 << 20;
    for (unsigned i = 0; s.len < target; i++) {
        if (i % 50 == 0)
            sift_buf_puts(&s, ": keep-alive\r\n\r\n");
        sift_buf_printf(
            &s,
            "data: {\"id\":\"chatcmpl-%u\",\"object\":\"chat.completion.chunk\","
            "\"created\":1764061200,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,"
            "\"delta\":{\"content\":\" token %u\"},\"logprobs\":null,"
            "\"finish_reason\":null}]}\r\n\r\n",
            i / 100, i);
    }
    sift_buf_puts(&s, "data: [DONE]\r\n\r\n");

    struct bench_report r = {.name = "sse"};
    printf("sse parse: %.1f MB OpenAI-style stream, median of %d\n", (double)s.len / 1e6, REPS);
    uint64_t ev4 = 0, ev64 = 0;
    double mbs4 = measure(s.data, s.len, 4096, &ev4);
    double mbs64 = measure(s.data, s.len, 65536, &ev64);
    double avg = (double)s.len / (double)ev4;
    bench_add(&r, "stream size", (double)s.len / 1e6, "MB");
    bench_add(&r, "events", (double)ev4, "events");
    bench_add(&r, "average event size", avg, "bytes");
    bench_add(&r, "parse throughput, 4 KB feeds", mbs4, "MB/s");
    bench_add(&r, "parse throughput, 64 KB feeds", mbs64, "MB/s");
    bench_add(&r, "events per second, 4 KB feeds", mbs4 * 1e6 / avg / 1e6, "M events/s");
    bench_add(&r, "time per event, 4 KB feeds", avg / mbs4 * 1e3, "ns");
    bench_write(&r);
    sift_buf_free(&s);
    return 0;
}
