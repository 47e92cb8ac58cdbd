/* Stream delta assembler cost: microseconds per chunk for content chunks and
 * for tool-call argument chunks, against a bare cJSON parse of the same
 * chunks. Median of several runs. Writes bench/results/stream.json and
 * stream.md (see benchutil.h). */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/model.h"

#include "benchutil.h"

#define RUNS 9
#define STREAMS 400 /* streams per run */
#define CHUNKS 50   /* delta chunks per stream */

/* CPU time of this process: the machine is shared, and CPU time is what a
 * single-threaded parser costs whatever else runs beside it. */
static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* An experiment for the question "is a per-chunk bump allocator for cJSON
 * worth it?": cJSON's hooks are process-wide, so the library does not set
 * them; the bench does, around one measurement only. Every chunk's tree is
 * deleted inside sift_stream_feed, so the bump space can be reused after each
 * call. */
static _Alignas(16) unsigned char bump_mem[1 << 16];
static size_t bump_off;

static void *bump_malloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (bump_off + n > sizeof(bump_mem))
        return malloc(n);
    void *p = bump_mem + bump_off;
    bump_off += n;
    return p;
}

static void bump_free(void *p)
{
    unsigned char *c = p;
    if (c < bump_mem || c >= bump_mem + sizeof(bump_mem))
        free(p);
}

static size_t cjson_allocs;
static void *count_malloc(size_t n)
{
    cjson_allocs++;
    return malloc(n);
}

#define HEAD                                                                                       \
    "{\"id\":\"chatcmpl-AXk3mNv8pQ2rT\",\"object\":\"chat.completion.chunk\",\"created\":"         \
    "1732530000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\","    \
    "\"choices\":[{\"index\":0,\"delta\":"
#define TAIL(fr) ",\"logprobs\":null,\"finish_reason\":" fr "}],\"usage\":null}"

typedef struct stream_def {
    const char *name;
    const char *first; /* opens the stream (not timed separately) */
    const char *chunk; /* repeated CHUNKS times */
    const char *last;  /* finish_reason */
} stream_def;

static const stream_def defs[] = {
    {"content", HEAD "{\"role\":\"assistant\",\"content\":\"\"}" TAIL("null"),
     HEAD "{\"content\":\" Pegasus\"}" TAIL("null"), HEAD "{}" TAIL("\"stop\"")},
    {"tool_call_args",
     HEAD "{\"tool_calls\":[{\"index\":0,\"id\":\"call_7Qm2HAN\",\"type\":\"function\","
          "\"function\":{\"name\":\"check_inventory\",\"arguments\":\"\"}}]}" TAIL("null"),
     HEAD
     "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"NIKE-PEG\"}}]}" TAIL("null"),
     HEAD "{}" TAIL("\"tool_calls\"")},
};

typedef struct result {
    const char *name;
    size_t chunk_bytes;
    double assemble_us; /* median µs per delta chunk through sift_stream_feed */
    double parse_us;    /* median µs per chunk for cJSON parse + delete only */
    double overhead_us; /* median of (assemble - parse) per run */
    double bump_us;     /* assemble with cJSON on a bump allocator */
    double cjson_allocs_per_chunk;
} result;

static int feed(sift_stream *s, const char *p, size_t n, bool bump, sift_err *err)
{
    int rc = sift_stream_feed(s, p, n, err);
    if (bump)
        bump_off = 0;
    return rc;
}

static double run_assembler(const stream_def *d, sift_stream *s, sift_arena *a, bool bump)
{
    size_t n1 = strlen(d->first), n = strlen(d->chunk), n2 = strlen(d->last);
    sift_err err = {0};
    sift_chat_result res;
    double t0 = now_us();
    for (int k = 0; k < STREAMS; k++) {
        int rc = feed(s, d->first, n1, bump, &err);
        for (int i = 0; i < CHUNKS && !rc; i++)
            rc = feed(s, d->chunk, n, bump, &err);
        if (!rc)
            rc = feed(s, d->last, n2, bump, &err);
        if (!rc)
            rc = sift_stream_finish(s, a, &res, &err);
        if (rc) {
            fprintf(stderr, "bench_stream: %s\n", err.msg);
            exit(1);
        }
        sift_stream_reset(s);
        sift_arena_reset(a);
    }
    return (now_us() - t0) / ((double)STREAMS * (CHUNKS + 2));
}

/* The same chunks as run_assembler, through cJSON alone. */
static double run_parse(const stream_def *d)
{
    const char *chunks[3] = {d->first, d->chunk, d->last};
    size_t lens[3] = {strlen(d->first), strlen(d->chunk), strlen(d->last)};
    double t0 = now_us();
    for (int k = 0; k < STREAMS; k++) {
        for (int i = 0; i < CHUNKS + 2; i++) {
            int w = i == 0 ? 0 : i == CHUNKS + 1 ? 2 : 1;
            cJSON *j = cJSON_ParseWithLength(chunks[w], lens[w]);
            if (!j)
                exit(1);
            cJSON_Delete(j);
        }
    }
    return (now_us() - t0) / ((double)STREAMS * (CHUNKS + 2));
}

static result measure(const stream_def *d)
{
    result r = {.name = d->name, .chunk_bytes = strlen(d->chunk)};
    sift_stream s;
    sift_stream_init(&s, NULL, NULL);
    sift_arena *a = sift_arena_new(0);
    if (!a)
        exit(1);
    double as[RUNS], ps[RUNS], ds[RUNS], bs[RUNS];
    run_assembler(d, &s, a, false); /* warm-up: buffers reach their final size */
    for (int i = 0; i < RUNS; i++) {
        as[i] = run_assembler(d, &s, a, false);
        cJSON_Hooks bump = {.malloc_fn = bump_malloc, .free_fn = bump_free};
        cJSON_InitHooks(&bump);
        bs[i] = run_assembler(d, &s, a, true);
        cJSON_InitHooks(NULL);
        ps[i] = run_parse(d);
        /* Each run measures both back to back, so their difference holds up
         * better than either figure when the machine is busy. */
        ds[i] = as[i] - ps[i];
    }
    r.assemble_us = bench_median(as, RUNS);
    r.parse_us = bench_median(ps, RUNS);
    r.overhead_us = bench_median(ds, RUNS);
    r.bump_us = bench_median(bs, RUNS);

    /* cJSON allocates every node with malloc; sift's own buffers are reused,
     * so after the first chunks the assembler adds no allocation of its own. */
    sift_err err = {0};
    sift_stream_reset(&s);
    if (sift_stream_feed(&s, d->first, strlen(d->first), &err))
        exit(1);
    cJSON_Hooks hooks = {.malloc_fn = count_malloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
    cjson_allocs = 0;
    for (int i = 0; i < 100; i++)
        if (sift_stream_feed(&s, d->chunk, strlen(d->chunk), &err)) {
            fprintf(stderr, "bench_stream: %s\n", err.msg);
            exit(1);
        }
    r.cjson_allocs_per_chunk = (double)cjson_allocs / 100.0;
    cJSON_InitHooks(NULL);

    sift_arena_free(a);
    sift_stream_free(&s);
    return r;
}

int main(void)
{
    struct bench_report rep = {.name = "stream"};
    printf("bench_stream: median of %d runs of %d chunks (%d streams x %d delta chunks + open "
           "and finish)\n",
           RUNS, STREAMS * (CHUNKS + 2), STREAMS, CHUNKS);
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        result r = measure(&defs[i]);
        char name[96];
        snprintf(name, sizeof(name), "%s chunk size", r.name);
        bench_add(&rep, name, (double)r.chunk_bytes, "bytes");
        snprintf(name, sizeof(name), "%s: sift_stream_feed", r.name);
        bench_add(&rep, name, r.assemble_us, "us/chunk");
        snprintf(name, sizeof(name), "%s: cJSON parse+delete alone", r.name);
        bench_add(&rep, name, r.parse_us, "us/chunk");
        snprintf(name, sizeof(name), "%s: assembler beyond the cJSON parse", r.name);
        bench_add(&rep, name, r.overhead_us, "us/chunk");
        snprintf(name, sizeof(name), "%s: feed, cJSON on a bump allocator", r.name);
        bench_add(&rep, name, r.bump_us, "us/chunk");
        snprintf(name, sizeof(name), "%s: cJSON allocations", r.name);
        bench_add(&rep, name, r.cjson_allocs_per_chunk, "allocs/chunk");
    }
    bench_write(&rep);
    return 0;
}
