/* mock_inventory: the mock inventory service of the seed workload.
 *
 *   mock_inventory [--port N] [--workers W] [--tool-ms 20]
 *
 *   GET /inventory?sku=S&location=L  {"sku":S,"location":L,"stock":N} after
 *                                    --tool-ms ms (a uv timer, never a sleep);
 *                                    400 without sku or location
 *   GET /stats                       {"requests":N,"disconnects":N,
 *                                     "cpu_user_us":N,"cpu_sys_us":N}
 *
 * Built on sift's own server (include/sift/server.h), like mock_llm. Prints
 * the port it listens on as the first line of stdout, then serves until
 * SIGINT or SIGTERM; on SIGUSR1 and at exit it prints the /stats object as
 * one line on stdout. The stock is a hash of sku and location, so the same
 * question always gets the same answer. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sift/server.h"

#define MAX_ARG 128

struct inv {
    sift_server *srv;
    int tool_ms;
    long requests;    /* atomic: the workers count */
    long disconnects; /* atomic */
};

/* One delayed answer; freed in its timer's close callback. */
struct ireq {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_http_exchange *x;
    struct inv *inv;
    int done;
    char sku[MAX_ARG], location[MAX_ARG];
};

static void ireq_closed(uv_handle_t *h)
{
    free((char *)h - offsetof(struct ireq, timer));
}

/* The one way out of a request: finishes the exchange (answer or abort), then
 * closes the timer. The hook goes first so that a finishing call that notices
 * the client has gone cannot re-enter through on_gone. */
static void ireq_finish(struct ireq *r, int answer)
{
    if (r->done)
        return;
    r->done = 1;
    sift_ctx_remove_hook(&r->hook);
    if (answer) {
        unsigned h = 2166136261u;
        for (const char *p = r->sku; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        for (const char *p = r->location; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        char body[2 * MAX_ARG + 64];
        /* sku and location were checked to be plain characters in h_inventory */
        int n = snprintf(body, sizeof body, "{\"sku\":\"%s\",\"location\":\"%s\",\"stock\":%u}",
                         r->sku, r->location, h % 25);
        sift_http_respond(r->x, 200, "application/json", body, (size_t)n);
    } else {
        sift_http_stream_abort(r->x);
    }
    r->x = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, ireq_closed);
}

static void on_timer(uv_timer_t *t)
{
    ireq_finish((struct ireq *)((char *)t - offsetof(struct ireq, timer)), 1);
}

static void on_gone(sift_ctx_hook *hook, const sift_err *cause)
{
    struct ireq *r = (struct ireq *)((char *)hook - offsetof(struct ireq, hook));
    __atomic_add_fetch(&r->inv->disconnects, 1, __ATOMIC_RELAXED);
    ireq_finish(r, 0);
}

static int plain(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return 0;
    return 1;
}

static void h_inventory(sift_http_exchange *x, void *udata)
{
    struct inv *inv = udata;
    __atomic_add_fetch(&inv->requests, 1, __ATOMIC_RELAXED);
    struct ireq *r = calloc(1, sizeof *r);
    if (!r) {
        sift_http_respond_error(x, 500, "out_of_memory", "mock_inventory: out of memory");
        return;
    }
    if (sift_http_query_param(x, "sku", r->sku, sizeof r->sku) <= 0 ||
        sift_http_query_param(x, "location", r->location, sizeof r->location) <= 0 ||
        !plain(r->sku) || !plain(r->location)) {
        free(r);
        sift_http_respond_error(x, 400, "invalid_argument",
                                "sku and location are required query parameters");
        return;
    }
    r->x = x;
    r->inv = inv;
    uv_timer_init(sift_http_loop(x), &r->timer);
    if (sift_ctx_add_hook(sift_http_ctx(x), &r->hook, on_gone) != 0) {
        ireq_finish(r, 0);
        return;
    }
    uv_timer_start(&r->timer, on_timer, (uint64_t)inv->tool_ms, 0);
}

static int stats_json(struct inv *inv, char *out, size_t size)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int n = snprintf(out, size,
                     "{\"requests\":%ld,\"disconnects\":%ld,\"cpu_user_us\":%lld,"
                     "\"cpu_sys_us\":%lld}\n",
                     __atomic_load_n(&inv->requests, __ATOMIC_RELAXED),
                     __atomic_load_n(&inv->disconnects, __ATOMIC_RELAXED),
                     (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
                     (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec);
    return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

static void h_stats(sift_http_exchange *x, void *udata)
{
    char out[256];
    int n = stats_json(udata, out, sizeof out);
    sift_http_respond(x, 200, "application/json", out, (size_t)n);
}

static void usage(void)
{
    fprintf(stderr, "usage: mock_inventory [--port N] [--workers W] [--tool-ms MS]\n");
    exit(2);
}

static int int_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        usage();
    char *end;
    errno = 0;
    long v = strtol(argv[++*i], &end, 10);
    if (errno || *end || v < 0 || v > 1000000)
        usage();
    return (int)v;
}

int main(int argc, char **argv)
{
    int port = 0, workers = 1;
    struct inv inv = {.tool_ms = 20};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0)
            port = int_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--workers") == 0)
            workers = int_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--tool-ms") == 0)
            inv.tool_ms = int_arg(argc, argv, &i);
        else
            usage();
    }
    /* Blocked before the workers start, so they inherit the mask and the
     * signals are taken only by sigwait below. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    sift_err err = {0};
    sift_server_opts o = {
        .host = "127.0.0.1",
        .port = port,
        .workers = workers > 0 ? workers : 1,
        .shutdown_grace_ms = 200,
    };
    char out[256];
    inv.srv = sift_server_new(&o, &err);
    if (!inv.srv || sift_server_route(inv.srv, "GET", "/inventory", h_inventory, &inv) ||
        sift_server_route(inv.srv, "GET", "/stats", h_stats, &inv) ||
        sift_server_start(inv.srv, &err)) {
        fprintf(stderr, "mock_inventory: %s\n", err.code ? err.msg : "cannot add routes");
        sift_server_free(inv.srv);
        return 1;
    }
    printf("%d\n", sift_server_port(inv.srv));
    fflush(stdout);
    fprintf(stderr, "mock_inventory: http://127.0.0.1:%d/inventory, %d worker(s), %d ms\n",
            sift_server_port(inv.srv), o.workers, inv.tool_ms);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGUSR1)
            break;
        stats_json(&inv, out, sizeof out);
        fputs(out, stdout);
        fflush(stdout);
    }
    stats_json(&inv, out, sizeof out);
    fputs(out, stdout);
    fflush(stdout);
    sift_server_free(inv.srv);
    return 0;
}
