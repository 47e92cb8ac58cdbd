/* HTTP server throughput: requests/s for a small JSON GET over keep-alive
 * connections, SSE events/s for streams of many small events, and resident
 * memory per open idle SSE stream. The server runs in-process (1 worker);
 * the client is this thread with raw sockets and epoll, so the two share the
 * machine's cores. Median of several short runs. Writes
 * bench/results/server.json and server.md (see benchutil.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sift/arena.h"
#include "sift/log.h"
#include "sift/server.h"

#include "benchutil.h"

#define RUNS 3
#define RUN_S 1.5
#define JSON_CONNS 32
#define SSE_CONNS 16
#define IDLE_STREAMS_DEFAULT 2000
#define IDLE_STREAMS_MAX 9500

static const char json_body[] = "{\"ok\":true,\"products\":[{\"sku\":\"NIKE-PEG-40\",\"price\":"
                                "129.0,\"in_stock\":true}]}";

static void h_json(sift_http_exchange *x, void *udata)
{
    sift_http_respond(x, 200, "application/json", json_body, sizeof(json_body) - 1);
}

/* Streams tiny events as fast as backpressure allows, until the client goes. */
struct producer {
    sift_ctx_hook hook;
    sift_http_exchange *x;
    long i;
    int idle;
};

static void prod_run(sift_http_exchange *x, void *udata)
{
    struct producer *p = udata;
    char data[32];
    for (;;) {
        int n = snprintf(data, sizeof(data), "%ld", p->i);
        int rc = sift_http_sse_send(x, "tick", data, (size_t)n);
        if (rc == SIFT_EBUSY) {
            sift_http_stream_on_drain(x, prod_run, p);
            return;
        }
        if (rc != 0) {
            sift_ctx_remove_hook(&p->hook);
            sift_http_stream_abort(x);
            sift_free(p);
            return;
        }
        p->i++;
    }
}

static void prod_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    struct producer *p = (struct producer *)hook;
    sift_http_stream_abort(p->x);
    sift_free(p);
}

static void h_sse(sift_http_exchange *x, void *udata)
{
    struct producer *p = sift_calloc(1, sizeof(*p));
    p->x = x;
    p->idle = udata != NULL;
    if (sift_ctx_add_hook(sift_http_ctx(x), &p->hook, prod_cancel) != 0 ||
        sift_http_stream_start(x, 200, "text/event-stream") != 0) {
        sift_ctx_remove_hook(&p->hook);
        sift_http_stream_abort(x);
        sift_free(p);
        return;
    }
    if (p->idle)
        sift_http_sse_send(x, "hello", "1", 1); /* then nothing until the client goes */
    else
        prod_run(x, p);
}

/* ---- client ---- */

struct conn {
    int fd;
    char buf[65536];
    size_t len;
    char last;
    long events;
};

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t k = send(fd, s + off, n - off, 0);
        if (k <= 0) {
            perror("send");
            exit(1);
        }
        off += (size_t)k;
    }
}

/* Parses complete responses out of c->buf; returns how many. */
static long parse_responses(struct conn *c)
{
    long done = 0;
    size_t off = 0;
    for (;;) {
        char *start = c->buf + off;
        char *end = memmem(start, c->len - off, "\r\n\r\n", 4);
        if (end == NULL)
            break;
        size_t head = (size_t)(end - start) + 4;
        size_t cl = 0;
        for (char *p = start; p < end; p++) {
            if ((*p == 'c' || *p == 'C') && strncasecmp(p, "content-length:", 15) == 0) {
                cl = strtoul(p + 15, NULL, 10);
                break;
            }
        }
        if (c->len - off < head + cl)
            break;
        off += head + cl;
        done++;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return done;
}

static double run_json(int port)
{
    static struct conn cs[JSON_CONNS];
    const char *req = "GET /json HTTP/1.1\r\nHost: bench\r\n\r\n";
    int ep = epoll_create1(0);
    for (int i = 0; i < JSON_CONNS; i++) {
        cs[i].fd = dial(port);
        cs[i].len = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        send_all(cs[i].fd, req);
    }
    long total = 0;
    double t0 = bench_now_s(), t1 = t0;
    while ((t1 = bench_now_s()) - t0 < RUN_S) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
            if (k <= 0) {
                fprintf(stderr, "json connection closed\n");
                exit(1);
            }
            c->len += (size_t)k;
            long got = parse_responses(c);
            total += got;
            for (long j = 0; j < got; j++)
                send_all(c->fd, req);
        }
    }
    for (int i = 0; i < JSON_CONNS; i++)
        close(cs[i].fd);
    close(ep);
    return (double)total / (t1 - t0);
}

static double run_sse(int port)
{
    static struct conn cs[SSE_CONNS];
    int ep = epoll_create1(0);
    for (int i = 0; i < SSE_CONNS; i++) {
        cs[i].fd = dial(port);
        cs[i].events = 0;
        cs[i].last = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        send_all(cs[i].fd, "GET /sse HTTP/1.0\r\n\r\n");
    }
    long total = 0;
    double t0 = bench_now_s(), t1 = t0;
    while ((t1 = bench_now_s()) - t0 < RUN_S) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t k = recv(c->fd, c->buf, sizeof(c->buf), 0);
            if (k <= 0) {
                fprintf(stderr, "sse connection closed\n");
                exit(1);
            }
            /* events end with a blank line: count "\n\n", also across reads */
            char prev = c->last;
            for (ssize_t j = 0; j < k; j++) {
                if (c->buf[j] == '\n' && prev == '\n')
                    total++;
                prev = c->buf[j];
            }
            c->last = prev;
        }
    }
    for (int i = 0; i < SSE_CONNS; i++)
        close(cs[i].fd);
    close(ep);
    return (double)total / (t1 - t0);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* SIFT_BENCH_IDLE_STREAMS overrides the number of idle streams (client and
 * server share this process's open-file limit: two descriptors per stream). */
static int idle_streams(void)
{
    const char *e = getenv("SIFT_BENCH_IDLE_STREAMS");
    int n = e ? atoi(e) : IDLE_STREAMS_DEFAULT;
    return n < 1 ? 1 : n > IDLE_STREAMS_MAX ? IDLE_STREAMS_MAX : n;
}

static double idle_stream_kb(sift_server *s, int port, int nstreams)
{
    static int fds[IDLE_STREAMS_MAX];
    long before = rss_kb();
    for (int i = 0; i < nstreams; i++) {
        fds[i] = dial(port);
        send_all(fds[i], "GET /idle HTTP/1.1\r\nHost: b\r\n\r\n");
    }
    sift_server_stats st;
    double end = bench_now_s() + 10;
    do {
        usleep(10000);
        sift_server_stats_get(s, &st);
    } while (st.streams_active < (uint64_t)nstreams && bench_now_s() < end);
    long after = rss_kb();
    uint64_t opened = st.streams_active;
    for (int i = 0; i < nstreams; i++)
        close(fds[i]);
    do {
        usleep(10000);
        sift_server_stats_get(s, &st);
    } while (st.streams_active > 0 && bench_now_s() < end + 5);
    if (opened < (uint64_t)nstreams)
        fprintf(stderr, "only %llu of %d idle streams opened\n", (unsigned long long)opened,
                nstreams);
    return (double)(after - before) / nstreams;
}

int main(void)
{
    if (getenv("SIFT_LOG_LEVEL") == NULL)
        sift_log_set_level(SIFT_LOG_WARN);
    sift_server_opts o = {0};
    o.workers = 1;
    o.shutdown_grace_ms = 1000;
    sift_err err = {0};
    sift_server *s = sift_server_new(&o, &err);
    sift_server_route(s, "GET", "/json", h_json, NULL);
    sift_server_route(s, "GET", "/sse", h_sse, NULL);
    sift_server_route(s, "GET", "/idle", h_sse, (void *)1);
    if (s == NULL || sift_server_start(s, &err) != 0) {
        fprintf(stderr, "bench_server: %s\n", err.msg);
        return 1;
    }
    int port = sift_server_port(s);
    struct bench_report r = {.name = "server"};
    printf("bench_server: 1 worker, client in the same process, %d runs of %.1f s\n", RUNS, RUN_S);

    double v[RUNS];
    double cpu0 = bench_cpu_s();
    for (int i = 0; i < RUNS; i++)
        v[i] = run_json(port);
    double cpu_json = bench_cpu_s() - cpu0;
    bench_add(&r, "JSON GET, 32 keep-alive connections", bench_median(v, RUNS), "req/s");
    bench_add(&r, "JSON GET: process CPU per run", cpu_json / RUNS, "s");

    for (int i = 0; i < RUNS; i++)
        v[i] = run_sse(port);
    bench_add(&r, "SSE events (~22 B), 16 streams", bench_median(v, RUNS), "events/s");

    int nidle = idle_streams();
    double kb = idle_stream_kb(s, port, nidle);
    char name[96];
    snprintf(name, sizeof(name), "RSS per open idle SSE stream (%d streams)", nidle);
    bench_add(&r, name, kb, "KB");

    sift_server_stats st;
    sift_server_stats_get(s, &st);
    bench_add(&r, "requests served", (double)st.requests_total, "requests");
    sift_server_free(s);
    bench_write(&r);
    return 0;
}
