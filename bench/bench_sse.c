/* SSE parser throughput: a generated OpenAI-style stream (~64 MB) parsed in
 * 4 KB and 64 KB feeds (what socket reads deliver), five repetitions each,
 * median reported. Prints the figures and writes bench/results/sse.json and
 * bench/results/sse.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/buf.h"
#include "sift/sse.h"

#define REPS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_event(const sift_sse_event *ev, void *udata, sift_err *err)
{
    (void)err;
    uint64_t *n = udata;
    *n += ev->data_len > 0;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
        double t0 = now_s();
        for (size_t at = 0; at < len; at += chunk) {
            size_t k = len - at < chunk ? len - at : chunk;
            if (sift_sse_feed(&p, in + at, k, count_event, &n, &err) != 0) {
                fprintf(stderr, "bench_sse: parse failed: %s\n", err.msg);
                exit(1);
            }
        }
        sift_sse_finish(&p, count_event, &n, &err);
        double dt = now_s() - t0;
        sift_sse_free(&p);
        mbs[r] = (double)len / 1e6 / dt;
        *events = n;
    }
    qsort(mbs, REPS, sizeof(mbs[0]), cmp_double);
    return mbs[REPS / 2];
}

int main(int argc, char **argv)
{
    const char *outdir = argc > 1 ? argv[1] : SIFT_SOURCE_DIR "/bench/results";
    sift_buf s;
    sift_buf_init(&s, 0);
    size_t target = 64u << 20;
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

    uint64_t ev4 = 0, ev64 = 0;
    double mbs4 = measure(s.data, s.len, 4096, &ev4);
    double mbs64 = measure(s.data, s.len, 65536, &ev64);
    double avg = (double)s.len / (double)ev4;
    printf("sse parse: %.1f MB stream, %llu events of ~%.0f bytes\n", (double)s.len / 1e6,
           (unsigned long long)ev4, avg);
    printf("  4 KB feeds:  %.0f MB/s (%.2f M events/s), median of %d\n", mbs4,
           mbs4 * 1e6 / avg / 1e6, REPS);
    printf("  64 KB feeds: %.0f MB/s (%.2f M events/s), median of %d\n", mbs64,
           mbs64 * 1e6 / avg / 1e6, REPS);

    char path[4096];
    snprintf(path, sizeof(path), "%s/sse.json", outdir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "{\"bench\":\"sse_parse\",\"stream_bytes\":%zu,\"events\":%llu,"
                "\"avg_event_bytes\":%.0f,\"repetitions\":%d,\"mb_per_s_4k_feeds\":%.1f,"
                "\"mb_per_s_64k_feeds\":%.1f,\"events_per_s_4k_feeds\":%.0f}\n",
                s.len, (unsigned long long)ev4, avg, REPS, mbs4, mbs64, mbs4 * 1e6 / avg);
        fclose(f);
    } else {
        fprintf(stderr, "bench_sse: cannot write %s\n", path);
    }
    snprintf(path, sizeof(path), "%s/sse.md", outdir);
    f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "| SSE parse (OpenAI-style chunks, ~%.0f B/event) | %.0f MB/s in 4 KB feeds, "
                "%.0f MB/s in 64 KB feeds | %.2f M events/s | median of %d |\n",
                avg, mbs4, mbs64, mbs4 / avg, REPS);
        fclose(f);
    }
    sift_buf_free(&s);
    return 0;
}
