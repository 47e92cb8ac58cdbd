/* Stream delta assembler cost: microseconds per chunk for content chunks and
 * for tool-call argument chunks, against a bare cJSON parse of the same
 * chunks. Median of several runs. Writes bench/results/stream.json and
 * stream.md. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/model.h"

#define RUNS 9
#define STREAMS 400 /* streams per run */
#define CHUNKS 50   /* delta chunks per stream */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
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
    double cjson_allocs_per_chunk;
} result;

static double run_assembler(const stream_def *d, sift_stream *s, sift_arena *a)
{
    size_t n1 = strlen(d->first), n = strlen(d->chunk), n2 = strlen(d->last);
    sift_err err = {0};
    sift_chat_result res;
    double t0 = now_us();
    for (int k = 0; k < STREAMS; k++) {
        int rc = sift_stream_feed(s, d->first, n1, &err);
        for (int i = 0; i < CHUNKS && !rc; i++)
            rc = sift_stream_feed(s, d->chunk, n, &err);
        if (!rc)
            rc = sift_stream_feed(s, d->last, n2, &err);
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

static double run_parse(const stream_def *d)
{
    size_t n = strlen(d->chunk);
    double t0 = now_us();
    for (int k = 0; k < STREAMS * (CHUNKS + 2); k++) {
        cJSON *j = cJSON_ParseWithLength(d->chunk, n);
        if (!j)
            exit(1);
        cJSON_Delete(j);
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
    double as[RUNS], ps[RUNS];
    run_assembler(d, &s, a); /* warm-up: buffers reach their final size */
    for (int i = 0; i < RUNS; i++) {
        as[i] = run_assembler(d, &s, a);
        ps[i] = run_parse(d);
    }
    qsort(as, RUNS, sizeof(double), cmp_double);
    qsort(ps, RUNS, sizeof(double), cmp_double);
    r.assemble_us = as[RUNS / 2];
    r.parse_us = ps[RUNS / 2];

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
    size_t n = sizeof(defs) / sizeof(defs[0]);
    result res[sizeof(defs) / sizeof(defs[0])];
    for (size_t i = 0; i < n; i++) {
        res[i] = measure(&defs[i]);
        printf("%-15s chunk %3zu B  assemble %.3f us/chunk  cJSON parse alone %.3f us/chunk  "
               "cJSON allocations/chunk %.1f\n",
               res[i].name, res[i].chunk_bytes, res[i].assemble_us, res[i].parse_us,
               res[i].cjson_allocs_per_chunk);
    }

    const char *jpath = SIFT_SOURCE_DIR "/bench/results/stream.json";
    const char *mpath = SIFT_SOURCE_DIR "/bench/results/stream.md";
    FILE *j = fopen(jpath, "w");
    FILE *m = fopen(mpath, "w");
    if (!j || !m) {
        fprintf(stderr, "bench_stream: cannot write %s or %s\n", jpath, mpath);
        return 1;
    }
    fprintf(j, "{\"bench\":\"stream\",\"runs\":%d,\"chunks_per_run\":%d,\"results\":[", RUNS,
            STREAMS * (CHUNKS + 2));
    fprintf(m,
            "# Stream delta assembler\n\n"
            "Median of %d runs, %d chunks each (%d streams of %d delta chunks plus open and "
            "finish chunks). `assemble` is sift_stream_feed per chunk (cJSON parse, checks, "
            "buffering, events); `parse` is cJSON_ParseWithLength + cJSON_Delete of the same "
            "chunk alone.\n\n"
            "| chunks | bytes | assemble µs/chunk | parse µs/chunk | cJSON allocs/chunk |\n"
            "|---|---|---|---|---|\n",
            RUNS, STREAMS * (CHUNKS + 2), STREAMS, CHUNKS);
    for (size_t i = 0; i < n; i++) {
        fprintf(j,
                "%s{\"chunks\":\"%s\",\"chunk_bytes\":%zu,\"assemble_us_per_chunk\":%.4f,"
                "\"parse_only_us_per_chunk\":%.4f,\"cjson_allocs_per_chunk\":%.1f}",
                i ? "," : "", res[i].name, res[i].chunk_bytes, res[i].assemble_us, res[i].parse_us,
                res[i].cjson_allocs_per_chunk);
        fprintf(m, "| %s | %zu | %.3f | %.3f | %.1f |\n", res[i].name, res[i].chunk_bytes,
                res[i].assemble_us, res[i].parse_us, res[i].cjson_allocs_per_chunk);
    }
    fprintf(j, "]}\n");
    fclose(j);
    fclose(m);
    printf("wrote %s and %s\n", jpath, mpath);
    return 0;
}
