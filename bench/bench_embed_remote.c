/* The OpenAI-compatible embedding provider against the mock server
 * (tests/support/mock_embed.h, one worker thread in this process): what the
 * client side costs, not what a model costs.
 *
 *   catalog: 20,000 titles through embed_sync (a private loop), 256 dims,
 *            batches of 64 with 4 in flight, and batches of 1 for contrast;
 *   query:   one text at a time through the asynchronous embed on a loop
 *            (the path a search takes), latency p50/p99 and client CPU.
 *
 * The mock renders and the client parses 256 numbers per text as JSON text,
 * so both sides' JSON work is in the figures; a real model adds its own
 * inference time on top. Results: bench/results/embed_remote.{json,md}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "benchutil.h"
#include "mock_embed.h"
#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/embed.h"
#include "sift/http.h"

#define DIMS 256
#define TITLES 20000
#define QUERIES 2000

static const char *const words[] = {
    "running", "shoe", "trail", "road", "jacket", "rain", "wool", "sock",   "nike",   "adidas",
    "black",   "red",  "size",  "42",   "women",  "men",  "kids", "cotton", "sandal", "leather"};

static char **make_titles(int n)
{
    char **t = malloc(sizeof *t * (size_t)n);
    unsigned x = 12345;
    for (int i = 0; i < n; i++) {
        char buf[128];
        int len = 0;
        for (int w = 0; w < 6; w++) {
            x = x * 1103515245u + 12345u;
            len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%s", w ? " " : "",
                            words[(x >> 16) % (sizeof words / sizeof words[0])]);
        }
        snprintf(buf + len, sizeof buf - (size_t)len, " %d", i);
        t[i] = strdup(buf);
    }
    return t;
}

static double catalog(const char *url, char **titles, size_t batch, int conc, int n)
{
    sift_openai_embed_opts o = {
        .base_url = url, .model = "bench", .dims = DIMS, .batch_size = batch, .concurrency = conc};
    sift_embedder *e = NULL;
    sift_err err = {0};
    if (sift_embedder_openai_new(&o, NULL, &e, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    float *out = malloc(sizeof(float) * DIMS * (size_t)n);
    double t0 = bench_now_s();
    if (sift_embedder_embed_sync(e, (const char *const *)titles, NULL, (size_t)n, out, &err)) {
        fprintf(stderr, "catalog: %s\n", err.msg);
        exit(1);
    }
    double dt = bench_now_s() - t0;
    free(out);
    sift_embedder_free(e);
    return dt;
}

struct qstate {
    int done;
    int code;
};

static void on_done(void *ud, int code, const sift_err *err)
{
    struct qstate *q = ud;
    q->done = 1;
    q->code = code;
    if (code)
        fprintf(stderr, "query: %s\n", err->msg);
}

int main(void)
{
    sift_err err = {0};
    mock_embed *m = mock_embed_start(&err);
    if (!m) {
        fprintf(stderr, "mock_embed: %s\n", err.msg);
        return 1;
    }
    mock_embed_set_dims(m, DIMS);
    const char *url = mock_embed_base_url(m);
    char **titles = make_titles(TITLES);
    struct bench_report r = {.name = "embed_remote"};
    printf("embed_remote: %d titles, %d dims, mock server in-process (1 thread)\n", TITLES, DIMS);

    double dt = catalog(url, titles, 64, 4, TITLES);
    bench_add(&r, "catalog, batch 64, 4 in flight", TITLES / dt, "texts/s");
    dt = catalog(url, titles, 1, 4, 2000);
    bench_add(&r, "catalog, batch 1, 4 in flight (2,000 titles)", 2000 / dt, "texts/s");

    /* the client's own share: validating and normalising one answer of 64
     * vectors, as the mock writes them (%.9g per number) */
    {
        sift_buf b;
        sift_buf_init(&b, 0);
        float vec[DIMS];
        sift_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < 64; i++) {
            mock_embed_vector(titles[i], strlen(titles[i]), DIMS, vec);
            sift_buf_printf(&b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":[",
                            i ? "," : "", i);
            for (int d = 0; d < DIMS; d++)
                sift_buf_printf(&b, "%s%.9g", d ? "," : "", (double)vec[d]);
            sift_buf_puts(&b, "]}");
        }
        sift_buf_puts(&b, "],\"model\":\"bench\"}");
        float *out = malloc(sizeof(float) * DIMS * 64);
        double runs[15];
        for (int k = 0; k < 15; k++) {
            double c0 = bench_cpu_s();
            for (int j = 0; j < 20; j++)
                if (sift_embed_openai_parse(b.data, b.len, 64, DIMS, out, &err))
                    return 1;
            runs[k] = (bench_cpu_s() - c0) / (20.0 * 64) * 1e6;
        }
        bench_add(&r, "client: validate + normalise one vector (cpu)", bench_median(runs, 15),
                  "us/text");
        bench_add(&r, "answer size per vector (JSON)", (double)b.len / 64, "B");
        free(out);
        sift_buf_free(&b);
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_http_client *cli = sift_http_client_new(&loop, NULL, &err);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_openai_embed_opts o = {.base_url = url, .model = "bench", .dims = DIMS};
    sift_embedder *e = NULL;
    if (!cli || !root || sift_embedder_openai_new(&o, cli, &e, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    double *lat = malloc(sizeof *lat * QUERIES), *cpu = malloc(sizeof *cpu * QUERIES);
    float v[DIMS];
    for (int i = 0; i < QUERIES; i++) {
        struct qstate q = {0};
        const char *t = titles[i];
        double t0 = bench_now_s(), c0 = bench_cpu_s();
        if (sift_embedder_embed(e, root, &t, NULL, 1, v, on_done, &q, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        while (!q.done)
            uv_run(&loop, UV_RUN_ONCE);
        lat[i] = (bench_now_s() - t0) * 1e6;
        cpu[i] = (bench_cpu_s() - c0) * 1e6; /* the mock's thread included */
        if (q.code)
            return 1;
    }
    bench_add(&r, "query embed, async on a loop, p50", bench_percentile(lat, QUERIES, 50), "us");
    bench_add(&r, "query embed, async on a loop, p99", bench_percentile(lat, QUERIES, 99), "us");
    bench_add(&r, "query embed, process cpu (client + mock) p50",
              bench_percentile(cpu, QUERIES, 50), "us");
    sift_http_stats st;
    sift_http_client_stats(cli, &st);
    bench_add(&r, "query embed, connections opened", (double)st.connections, "");
    sift_embedder_free(e);
    sift_ctx_release(root);
    sift_http_client_close(cli, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(lat);
    free(cpu);
    for (int i = 0; i < TITLES; i++)
        free(titles[i]);
    free(titles);
    mock_embed_stop(m);
    bench_write(&r);
    return 0;
}
