/* The OpenAI-compatible embedding provider against the mock server
 * (tests/support/mock_embed.h, one worker thread in this process): what the
 * client side costs, not what a model costs.
 *
 *   catalog: 20,000 titles through embed_sync (a private loop), 256 dims,
 *            batches of 64 with 4 in flight, and batches of 1 for contrast;
 *   query:   one text at a time through the asynchronous embed on a loop
 *            (the path a search takes), latency p50/p99 and client CPU;
 *   cache:   the same through the query-vector cache (sift_embedder_wrap_new,
 *            1024 entries) on a stream of QUERIES queries drawn from DISTINCT
 *            texts with Zipf(1) frequencies (a synthetic stand-in for real
 *            traffic, whose repeat rate decides the saving): hit rate,
 *            requests sent, hit and miss latency; and the CPU of one hit
 *            at 1,536 dimensions (a real model's width), 1,024 entries.
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
#define DISTINCT 500

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
    double plain_mean = 0;
    for (int i = 0; i < QUERIES; i++)
        plain_mean += lat[i] / QUERIES;

    /* the query cache on a stream with repeats */
    sift_embedder *inner = NULL, *ce = NULL;
    sift_embed_wrap_opts wo = {.query_cache = 1024};
    if (sift_embedder_openai_new(&o, cli, &inner, &err) ||
        sift_embedder_wrap_new(inner, &wo, &ce, &err)) {
        fprintf(stderr, "cache setup: %s\n", err.msg);
        return 1;
    }
    double cum[DISTINCT], tot = 0;
    for (int k = 0; k < DISTINCT; k++)
        cum[k] = (tot += 1.0 / (k + 1));
    double *hit_lat = malloc(sizeof *hit_lat * QUERIES),
           *miss_lat = malloc(sizeof *miss_lat * QUERIES);
    int nhit = 0, nmiss = 0, req0 = mock_embed_requests(m);
    double mean = 0;
    unsigned x = 777;
    for (int i = 0; i < QUERIES; i++) {
        x = x * 1103515245u + 12345u;
        double u = (double)(x >> 8) / (double)(1u << 24) * tot;
        int k = 0;
        while (k < DISTINCT - 1 && cum[k] < u)
            k++;
        struct qstate q = {0};
        const char *t = titles[k];
        double t0 = bench_now_s();
        if (sift_embedder_embed(ce, root, &t, NULL, 1, v, on_done, &q, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        int hit = q.done; /* a hit answers before embed returns */
        while (!q.done)
            uv_run(&loop, UV_RUN_ONCE);
        double us = (bench_now_s() - t0) * 1e6;
        mean += us / QUERIES;
        if (q.code)
            return 1;
        if (hit)
            hit_lat[nhit++] = us;
        else
            miss_lat[nmiss++] = us;
    }
    int sent = mock_embed_requests(m) - req0;
    bench_add(&r, "cache: Zipf stream, hit rate", 100.0 * nhit / QUERIES, "%");
    bench_add(&r, "cache: Zipf stream, requests sent (of 2,000)", sent, "");
    bench_add(&r, "cache: hit latency p50", bench_percentile(hit_lat, nhit, 50), "us");
    bench_add(&r, "cache: miss latency p50", bench_percentile(miss_lat, nmiss, 50), "us");
    bench_add(&r, "cache: Zipf stream, mean latency", mean, "us");
    bench_add(&r, "no cache: same loop, mean latency", plain_mean, "us");
    free(hit_lat);
    free(miss_lat);
    /* the lookup alone at a real model's width: 1,024 entries of 1,536 floats */
    {
        sift_embed_cache *c = NULL;
        float *big = calloc(1536, sizeof *big);
        if (!big || sift_embed_cache_new(1024, 1536, &c, &err))
            return 1;
        for (int i = 0; i < 1024; i++)
            sift_embed_cache_put(c, "openai:m:1536", titles[i], strlen(titles[i]), big);
        double runs[9];
        for (int k = 0; k < 9; k++) {
            double c0 = bench_cpu_s();
            int hits = 0;
            for (int j = 0; j < 100000; j++) {
                const char *t = titles[j % 1024];
                hits += sift_embed_cache_get(c, "openai:m:1536", t, strlen(t), big);
            }
            runs[k] = (bench_cpu_s() - c0) / 100000 * 1e6;
            if (hits != 100000)
                return 1;
        }
        bench_add(&r, "cache: hit at 1,536 dims, 1,024 entries (cpu)", bench_median(runs, 9), "us");
        sift_embed_cache_free(c);
        free(big);
    }
    sift_embedder_free(ce);
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
