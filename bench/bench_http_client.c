/* HTTP client (curl multi-socket on uv) against rawsrv running in a forked
 * child process, so that the figures are the client's alone:
 *  - sequential keep-alive GETs: requests/s and latency percentiles;
 *  - 64 requests in flight: requests/s and connections opened;
 *  - 1000 SSE streams held open at once: resident memory per stream (curl
 *    easy handle with CURLOPT_BUFFERSIZE 1024, connection, uv_poll, request).
 * Median of 3 repetitions for the rates. Writes bench/results/http_client.{json,md}. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"
#include "rawsrv.h"
#include "sift/http.h"

#define REPS 3
#define SEQ_N 3000
#define CONC_N 20000
#define CONC_INFLIGHT 64
#define STREAMS 1000

typedef struct bench {
    uv_loop_t *loop;
    sift_http_client *cli;
    char url_hello[128];
    char url_sse[128];
    int started, done, failed, target, inflight_max;
    double *lat;
    int closed;
    int streams_ready;
} bench;

typedef struct one {
    bench *b;
    uint64_t t0;
    int got_data;
} one;

static void start_one(bench *b);

static void on_done(sift_http_request *req, int code, sift_http_response *resp, const sift_err *err,
                    void *udata)
{
    one *o = udata;
    bench *b = o->b;
    if (code != 0 || resp->status != 200) {
        if (b->failed++ == 0)
            fprintf(stderr, "bench_http_client: %s (status %d)\n", err->msg, resp->status);
    }
    if (b->lat)
        b->lat[b->done] = (double)(uv_hrtime() - o->t0) / 1e3;
    b->done++;
    free(o);
    if (b->started < b->target)
        start_one(b);
}

static const sift_http_callbacks cbs = {.on_done = on_done};

static void start_one(bench *b)
{
    one *o = calloc(1, sizeof(*o));
    if (!o)
        abort();
    o->b = b;
    o->t0 = uv_hrtime();
    sift_http_req_opts opts = {.url = b->url_hello};
    sift_err err = {0};
    if (sift_http_request_start(b->cli, NULL, &opts, &cbs, o, NULL, &err) != 0) {
        fprintf(stderr, "bench_http_client: %s\n", err.msg);
        exit(1);
    }
    b->started++;
}

/* `n` requests with `inflight` at a time; returns requests/s. */
static double run_requests(bench *b, int n, int inflight, double *lat)
{
    b->started = b->done = b->failed = 0;
    b->target = n;
    b->lat = lat;
    double t0 = bench_now_s();
    for (int i = 0; i < inflight && i < n; i++)
        start_one(b);
    while (b->done < n)
        uv_run(b->loop, UV_RUN_ONCE);
    double dt = bench_now_s() - t0;
    if (b->failed) {
        fprintf(stderr, "bench_http_client: %d requests failed\n", b->failed);
        exit(1);
    }
    return n / dt;
}

static int on_stream_data(sift_http_request *req, const char *chunk, size_t len, void *udata)
{
    one *o = udata;
    if (!o->got_data) {
        o->got_data = 1;
        o->b->streams_ready++;
    }
    return 0;
}

static void on_stream_done(sift_http_request *req, int code, sift_http_response *resp,
                           const sift_err *err, void *udata)
{
    one *o = udata;
    o->b->done++;
    free(o);
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void on_closed(void *udata)
{
    bench *b = udata;
    b->closed = 1;
}

/* The child: a rawsrv on its own loop; reports its port through the pipe. */
static void serve(int wfd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    rawsrv *s = rawsrv_start(&loop);
    if (!s)
        _exit(1);
    int port = rawsrv_port(s);
    if (write(wfd, &port, sizeof(port)) != (ssize_t)sizeof(port))
        _exit(1);
    close(wfd);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(0);
}

int main(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        serve(fds[1]);
    }
    close(fds[1]);
    int port = 0;
    if (read(fds[0], &port, sizeof(port)) != (ssize_t)sizeof(port)) {
        fprintf(stderr, "bench_http_client: the server did not start\n");
        return 1;
    }
    close(fds[0]);

    bench b = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    b.loop = &loop;
    snprintf(b.url_hello, sizeof(b.url_hello), "http://127.0.0.1:%d/hello", port);
    snprintf(b.url_sse, sizeof(b.url_sse), "http://127.0.0.1:%d/sse?n=1&hang=1", port);
    sift_http_client_opts co = {.max_host_connections = STREAMS, .max_total_connections = 4096};
    sift_err err = {0};
    b.cli = sift_http_client_new(&loop, &co, &err);
    if (!b.cli) {
        fprintf(stderr, "bench_http_client: %s\n", err.msg);
        return 1;
    }

    struct bench_report r = {.name = "http_client"};
    printf("http client vs rawsrv (child process), loopback, median of %d\n", REPS);
    run_requests(&b, 200, 1, NULL); /* warm-up: connection, easy handle pool */

    double seq[REPS], conc[REPS];
    double *lat = malloc(sizeof(double) * SEQ_N);
    double p50 = 0, p99 = 0;
    for (int i = 0; i < REPS; i++) {
        seq[i] = run_requests(&b, SEQ_N, 1, lat);
        if (i == REPS - 1) {
            p50 = bench_percentile(lat, SEQ_N, 50);
            p99 = bench_percentile(lat, SEQ_N, 99);
        }
    }
    free(lat);
    sift_http_stats st0, st1;
    sift_http_client_stats(b.cli, &st0);
    for (int i = 0; i < REPS; i++)
        conc[i] = run_requests(&b, CONC_N, CONC_INFLIGHT, NULL);
    sift_http_client_stats(b.cli, &st1);
    bench_add(&r, "sequential keep-alive GET", bench_median(seq, REPS), "req/s");
    bench_add(&r, "sequential GET latency p50", p50, "us");
    bench_add(&r, "sequential GET latency p99", p99, "us");
    bench_add(&r, "GET with 64 in flight", bench_median(conc, REPS), "req/s");
    bench_add(&r, "connections opened for 64-in-flight runs",
              (double)(st1.connections - st0.connections), "connections");

    /* Memory per open stream. */
    b.done = 0;
    long rss0 = rss_kb();
    for (int i = 0; i < STREAMS; i++) {
        one *o = calloc(1, sizeof(*o));
        o->b = &b;
        sift_http_req_opts opts = {.url = b.url_sse};
        sift_http_callbacks scb = {.on_data = on_stream_data, .on_done = on_stream_done};
        if (sift_http_request_start(b.cli, NULL, &opts, &scb, o, NULL, &err) != 0) {
            fprintf(stderr, "bench_http_client: %s\n", err.msg);
            return 1;
        }
    }
    double t0 = bench_now_s();
    while (b.streams_ready < STREAMS && bench_now_s() - t0 < 30)
        uv_run(&loop, UV_RUN_ONCE);
    long rss1 = rss_kb();
    if (b.streams_ready < STREAMS)
        fprintf(stderr, "bench_http_client: only %d of %d streams opened\n", b.streams_ready,
                STREAMS);
    bench_add(&r, "streams held open", (double)b.streams_ready, "streams");
    bench_add(&r, "client memory per open stream (RSS delta)",
              (double)(rss1 - rss0) / (b.streams_ready ? b.streams_ready : 1), "KB");

    sift_http_client_close(b.cli, on_closed, &b);
    while (!b.closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    bench_write(&r);
    return 0;
}
