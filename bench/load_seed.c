/* load_seed: the load generator of the seed benchmark.
 *
 *   load_seed --port N [--host 127.0.0.1] [--concurrency C] [--warmup S]
 *             [--duration S] [--timeout-ms MS] [--query TEXT]
 *             [--sift-pid P] [--llm-pid P] [--inv-pid P]
 *
 * Keeps exactly C runs in flight against POST /v1/search (HTTP/1.1
 * keep-alive, one connection per slot, raw non-blocking sockets on one epoll
 * loop: a run costs it a few syscalls and a scan of the bytes), reads each
 * SSE stream to its end and checks that the final event (run.finished) came
 * and no error event did. After --warmup seconds it measures for --duration
 * seconds, then stops starting runs and waits for those in flight (up to the
 * timeout; their failures count as errors too).
 *
 * A run is an error when: the HTTP status is not 200 (http_status); the
 * stream or the connection ended without run.finished (truncated); an error
 * event came (run_error); it took longer than --timeout-ms (timeout); the
 * connection could not be made (connect).
 *
 * With --sift-pid (and the mocks' pids) it also reads, at the start and the
 * end of the measured window, each process's CPU (utime + stime from
 * /proc/PID/stat, and the sum of /proc/PID/task/T/schedstat, which has ns
 * resolution), samples sift's RSS every 100 ms, and takes sift's /metrics
 * before and after to get the window's event-loop lag p99.
 *
 * Prints one JSON object on stdout (the driver bench_seed reads it):
 * {"concurrency","window_s","completed","runs_per_s","lat_ms":{"p50","p90",
 *  "p99","max"},"errors":{"total","http_status","truncated","run_error",
 *  "timeout","connect"},"drained","sift":{"cpu_us","cpu_sys_us","cpu_ns_sched","rss_kb_max",
 *  "rss_kb_start"},"llm_cpu_us","inv_cpu_us","lag_p99_ms","lag_samples","self_cpu_us"}
 * (self_cpu_us: load_seed's own CPU over the window, to show it is not the
 * bottleneck) */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum cstate { C_IDLE, C_CONNECTING, C_WRITING, C_HEAD, C_BODY };
enum body_mode { B_CHUNKED, B_LENGTH, B_CLOSE };
enum chunk_state { K_SIZE, K_EXT, K_DATA, K_DATA_CR, K_TRAILER };
enum err_kind { E_HTTP, E_TRUNC, E_RUNERR, E_TIMEOUT, E_CONNECT, E_COUNT };
static const char *const err_names[E_COUNT] = {"http_status", "truncated", "run_error", "timeout",
                                               "connect"};

#define HEAD_MAX 2048
#define LINE_KEEP 24

struct conn {
    int fd;
    enum cstate state;
    double t_start;
    size_t wrote;
    char head[HEAD_MAX];
    size_t head_len;
    int status;
    int keep_alive;
    enum body_mode mode;
    long long remaining; /* B_LENGTH: body bytes left; chunked: data bytes left in the chunk */
    enum chunk_state ks;
    long long chunk_size;
    int trailer_blank;    /* in K_TRAILER: the current trailer line is empty so far */
    char line[LINE_KEEP]; /* the start of the current SSE line */
    int line_len;
    int saw_final, saw_error;
    double retry_at; /* > 0: a failed connect; the slot starts again then */
};

static struct {
    struct sockaddr_in addr;
    int epfd;
    struct conn *conns;
    int nconn;
    char *req;
    size_t req_len;
    double timeout_s;
    int measuring, stopping;
    double t0, t1;
    double *lat;
    size_t nlat, cap;
    long errors[E_COUNT];
    long completed;
    long drained;
    int inflight;
} G;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- /proc readings ---- */

/* utime + stime of a process, in µs (clock-tick resolution); -1 if gone.
 * *sys_us (may be NULL) gets stime alone. */
static long long proc_cpu_us(int pid, long long *sys_us)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* fields after the command name, which may hold spaces and parens */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    if (sys_us)
        *sys_us = (long long)(st * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100));
    return (long long)((ut + st) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100));
}

/* Time on CPU of all the threads of a process, in ns (schedstat). Threads
 * that exited are missed, which the benchmark's processes do not have. */
static long long proc_sched_ns(int pid)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.16s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long ns = 0;
        if (f) {
            if (fscanf(f, "%llu", &ns) == 1)
                sum += (long long)ns;
            fclose(f);
        }
    }
    closedir(d);
    return sum;
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* ---- /metrics: the loop-lag histogram ---- */

#define LAG_BUCKETS 16
struct lag_hist {
    int n;
    double le[LAG_BUCKETS]; /* upper bounds; +Inf as HUGE */
    double count[LAG_BUCKETS];
};

/* One blocking GET /metrics on a fresh connection (5 s at most). The body is
 * scanned for sift_loop_lag_seconds_bucket lines. Returns 0 or -1. */
static int fetch_lag(struct lag_hist *h)
{
    memset(h, 0, sizeof *h);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static const char rq[] = "GET /metrics HTTP/1.1\r\nHost: sift\r\nConnection: close\r\n\r\n";
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int rc = -1;
    if (!buf || connect(fd, (struct sockaddr *)&G.addr, sizeof G.addr) ||
        write(fd, rq, sizeof rq - 1) != (ssize_t)(sizeof rq - 1))
        goto out;
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                goto out;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    static const char key[] = "sift_loop_lag_seconds_bucket{le=\"";
    for (char *p = strstr(buf, key); p && h->n < LAG_BUCKETS; p = strstr(p + 1, key)) {
        p += sizeof key - 1;
        double le = strncmp(p, "+Inf", 4) == 0 ? 1e300 : strtod(p, NULL);
        char *q = strchr(p, '}');
        if (!q)
            break;
        h->le[h->n] = le;
        h->count[h->n++] = strtod(q + 1, NULL);
    }
    rc = h->n > 0 ? 0 : -1;
out:
    free(buf);
    close(fd);
    return rc;
}

/* p99 of the observations between two snapshots, as the upper bound of the
 * bucket it falls in (ms); -1 without observations. Past the last finite
 * bucket it is that bound times 10 (the figure then reads "over it"). */
static double lag_p99_ms(const struct lag_hist *a, const struct lag_hist *b, double *samples)
{
    *samples = 0;
    if (a->n != b->n || b->n == 0)
        return -1;
    double total = b->count[b->n - 1] - a->count[a->n - 1];
    *samples = total;
    if (total <= 0)
        return -1;
    for (int i = 0; i < b->n; i++)
        if (b->count[i] - a->count[i] >= 0.99 * total)
            return b->le[i] >= 1e300 ? (i ? b->le[i - 1] * 10000 : -1) : b->le[i] * 1000;
    return -1;
}

/* ---- runs ---- */

static void record_lat(double ms)
{
    if (G.nlat == G.cap) {
        size_t cap = G.cap ? G.cap * 2 : 4096;
        double *n = realloc(G.lat, cap * sizeof *n);
        if (!n)
            return;
        G.lat = n;
        G.cap = cap;
    }
    G.lat[G.nlat++] = ms;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(G.epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_IDLE;
}

static int watch(struct conn *c, uint32_t ev, int op)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    return epoll_ctl(G.epfd, op, c->fd, &e);
}

static void start_run(struct conn *c);

/* A run ended (ok, or err >= 0). Counts it if it ended inside the window
 * (or while draining), then starts the next one unless stopping. */
static void run_end(struct conn *c, int err)
{
    double t = now_s();
    G.inflight--;
    if (G.stopping) {
        G.drained++;
        if (err >= 0)
            G.errors[err]++;
    } else if (G.measuring && t >= G.t0) {
        if (err >= 0) {
            G.errors[err]++;
        } else {
            G.completed++;
            record_lat((t - c->t_start) * 1000);
        }
    }
    if (err >= 0 || !c->keep_alive)
        conn_close(c);
    else
        c->state = C_IDLE;
    if (G.stopping)
        return;
    if (err == E_CONNECT)
        c->retry_at = t + 0.1; /* not at once: a refused connect would spin */
    else
        start_run(c);
}

static int open_conn(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&G.addr, sizeof G.addr) && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = C_CONNECTING;
    if (watch(c, EPOLLOUT, EPOLL_CTL_ADD)) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void try_write(struct conn *c)
{
    while (c->wrote < G.req_len) {
        ssize_t n = write(c->fd, G.req + c->wrote, G.req_len - c->wrote);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            run_end(c, E_TRUNC);
            return;
        }
        c->wrote += (size_t)n;
    }
    c->state = C_HEAD;
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

static void start_run(struct conn *c)
{
    c->t_start = now_s();
    c->wrote = 0;
    c->head_len = 0;
    c->status = 0;
    c->keep_alive = 1;
    c->ks = K_SIZE;
    c->chunk_size = 0;
    c->remaining = 0;
    c->line_len = 0;
    c->saw_final = c->saw_error = 0;
    G.inflight++;
    if (c->fd < 0) {
        if (open_conn(c)) {
            run_end(c, E_CONNECT);
            return;
        }
        return; /* EPOLLOUT says when it is connected */
    }
    c->state = C_WRITING;
    watch(c, EPOLLOUT, EPOLL_CTL_MOD);
    try_write(c);
}

/* SSE bytes of the body: looks at the start of each line for the event
 * names that matter. */
static void sse_feed(struct conn *c, const char *p, size_t n)
{
    static const char fin[] = "event: run.finished", err[] = "event: error";
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = LINE_KEEP - 1 - (size_t)c->line_len;
        size_t k = take < room ? take : room;
        memcpy(c->line + c->line_len, p, k);
        c->line_len += (int)k;
        if (!nl)
            return;
        c->line[c->line_len] = 0;
        if (c->line_len > 0 && c->line[c->line_len - 1] == '\r')
            c->line[--c->line_len] = 0;
        if (strcmp(c->line, fin) == 0)
            c->saw_final = 1;
        else if (strcmp(c->line, err) == 0)
            c->saw_error = 1;
        c->line_len = 0;
        p = nl + 1;
        n -= take + 1;
    }
}

static void response_done(struct conn *c)
{
    int err = c->status != 200 ? E_HTTP : c->saw_error ? E_RUNERR : !c->saw_final ? E_TRUNC : -1;
    run_end(c, err);
}

/* Chunked decoding; returns 1 when the response is complete. */
static int chunked_feed(struct conn *c, const char *p, size_t n)
{
    while (n) {
        switch (c->ks) {
        case K_SIZE: {
            char ch = *p++;
            n--;
            if (isxdigit((unsigned char)ch))
                c->chunk_size = c->chunk_size * 16 +
                                (isdigit((unsigned char)ch) ? ch - '0' : (tolower(ch) - 'a' + 10));
            else if (ch == '\n')
                goto size_done;
            else
                c->ks = K_EXT;
            break;
        }
        case K_EXT: {
            const char *nl = memchr(p, '\n', n);
            if (!nl)
                return 0;
            n -= (size_t)(nl + 1 - p);
            p = nl + 1;
            goto size_done;
        }
        case K_DATA: {
            size_t k = (size_t)c->remaining < n ? (size_t)c->remaining : n;
            sse_feed(c, p, k);
            p += k;
            n -= k;
            c->remaining -= (long long)k;
            if (c->remaining == 0)
                c->ks = K_DATA_CR;
            break;
        }
        case K_DATA_CR: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->ks = K_SIZE;
                c->chunk_size = 0;
            }
            break;
        }
        case K_TRAILER: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                if (c->trailer_blank)
                    return 1;
                c->trailer_blank = 1;
            } else if (ch != '\r') {
                c->trailer_blank = 0;
            }
            break;
        }
        }
        continue;
    size_done:
        if (c->chunk_size == 0) {
            c->ks = K_TRAILER;
            c->trailer_blank = 1;
        } else {
            c->ks = K_DATA;
            c->remaining = c->chunk_size;
        }
    }
    return 0;
}

/* Parses the status line and the headers that matter; -1 if malformed. */
static int parse_head(struct conn *c, size_t end)
{
    c->head[end] = 0;
    if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1)
        return -1;
    c->mode = B_CLOSE;
    c->keep_alive = strncmp(c->head, "HTTP/1.1", 8) == 0;
    for (char *l = strstr(c->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        char *h = l + 2;
        if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strcasestr(h, "chunked"))
            c->mode = B_CHUNKED;
        else if (strncasecmp(h, "content-length:", 15) == 0) {
            c->mode = B_LENGTH;
            c->remaining = strtoll(h + 15, NULL, 10);
        } else if (strncasecmp(h, "connection:", 11) == 0 && strcasestr(h, "close"))
            c->keep_alive = 0;
    }
    return 0;
}

/* Body bytes: returns 1 when the response is complete. */
static int body_feed(struct conn *c, const char *p, size_t n)
{
    if (c->mode == B_CHUNKED)
        return chunked_feed(c, p, n);
    if (c->mode == B_LENGTH) {
        size_t k = (size_t)c->remaining < n ? (size_t)c->remaining : n;
        sse_feed(c, p, k);
        c->remaining -= (long long)k;
        return c->remaining == 0;
    }
    sse_feed(c, p, n);
    return 0;
}

static void on_readable(struct conn *c)
{
    static char buf[1 << 16];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* the end of a read-to-close body is the end of the response */
            if (n == 0 && c->state == C_BODY && c->mode == B_CLOSE) {
                c->keep_alive = 0;
                response_done(c);
            } else {
                run_end(c, E_TRUNC);
            }
            return;
        }
        const char *p = buf;
        size_t len = (size_t)n;
        if (c->state == C_HEAD) {
            size_t k = len < HEAD_MAX - 1 - c->head_len ? len : HEAD_MAX - 1 - c->head_len;
            memcpy(c->head + c->head_len, p, k);
            size_t old = c->head_len;
            c->head_len += k;
            c->head[c->head_len] = 0;
            char *e = strstr(c->head, "\r\n\r\n");
            if (!e) {
                if (c->head_len < HEAD_MAX - 1)
                    continue;
                run_end(c, E_HTTP);
                return;
            }
            size_t end = (size_t)(e - c->head) + 4;
            if (parse_head(c, end - 2)) {
                run_end(c, E_HTTP);
                return;
            }
            c->state = C_BODY;
            p += end - old;
            len -= end - old;
            if (c->mode == B_LENGTH && c->remaining == 0) {
                response_done(c);
                return;
            }
        }
        if (len && body_feed(c, p, len)) {
            response_done(c);
            return;
        }
    }
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) {
            run_end(c, E_CONNECT);
            return;
        }
        c->state = C_WRITING;
        try_write(c);
        return;
    }
    if (c->state == C_WRITING) {
        try_write(c);
        return;
    }
    if (c->state == C_HEAD || c->state == C_BODY)
        on_readable(c);
}

static void check_timeouts(double t)
{
    for (int i = 0; i < G.nconn; i++) {
        struct conn *c = &G.conns[i];
        if (c->state != C_IDLE && t - c->t_start > G.timeout_s) {
            c->keep_alive = 0;
            run_end(c, E_TIMEOUT);
        } else if (c->state == C_IDLE && c->retry_at > 0 && t >= c->retry_at && !G.stopping) {
            c->retry_at = 0;
            start_run(c);
        }
    }
}

/* Runs the loop until `until` (or, when draining, until nothing is in
 * flight); calls tick every 100 ms. */
static void loop_until(double until, void (*tick)(void))
{
    struct epoll_event evs[512];
    double next_tick = now_s() + 0.1;
    for (;;) {
        double t = now_s();
        if (t >= until || (G.stopping && G.inflight == 0))
            return;
        if (t >= next_tick) {
            check_timeouts(t);
            if (tick)
                tick();
            next_tick = t + 0.1;
        }
        int n = epoll_wait(G.epfd, evs, 512, 20);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
}

static int sift_pid;
static long rss_max, rss_samples;
static double rss_sum;

static void sample_rss(void)
{
    if (sift_pid <= 0)
        return;
    long kb = proc_rss_kb(sift_pid);
    if (kb > rss_max)
        rss_max = kb;
    if (kb > 0) {
        rss_sum += (double)kb;
        rss_samples++;
    }
}

/* This process's CPU (user + system), in µs. */
static double self_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!G.nlat)
        return 0;
    size_t r = (size_t)(p / 100.0 * (double)G.nlat + 0.999999);
    if (r < 1)
        r = 1;
    if (r > G.nlat)
        r = G.nlat;
    return G.lat[r - 1];
}

static void usage(void)
{
    fprintf(stderr, "usage: load_seed --port N [--host 127.0.0.1] [--concurrency C] "
                    "[--warmup S] [--duration S] [--timeout-ms MS] [--query TEXT] "
                    "[--sift-pid P] [--llm-pid P] [--inv-pid P]\n");
    exit(2);
}

static double num_arg(int argc, char **argv, int *i, double min, double max)
{
    if (*i + 1 >= argc)
        usage();
    char *end;
    double v = strtod(argv[++*i], &end);
    if (*end || v < min || v > max)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *query = "Nike running shoes in size 42 in stock in Hanoi, Da Nang or Saigon?";
    int port = 0, conc = 10, llm_pid = 0, inv_pid = 0;
    double warmup = 2, duration = 5, timeout_ms = 60000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--query") && i + 1 < argc)
            query = argv[++i];
        else if (!strcmp(argv[i], "--port"))
            port = (int)num_arg(argc, argv, &i, 1, 65535);
        else if (!strcmp(argv[i], "--concurrency"))
            conc = (int)num_arg(argc, argv, &i, 1, 1000000);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = num_arg(argc, argv, &i, 0, 3600);
        else if (!strcmp(argv[i], "--duration"))
            duration = num_arg(argc, argv, &i, 0.1, 3600);
        else if (!strcmp(argv[i], "--timeout-ms"))
            timeout_ms = num_arg(argc, argv, &i, 1, 3600000);
        else if (!strcmp(argv[i], "--sift-pid"))
            sift_pid = (int)num_arg(argc, argv, &i, 1, 1 << 30);
        else if (!strcmp(argv[i], "--llm-pid"))
            llm_pid = (int)num_arg(argc, argv, &i, 1, 1 << 30);
        else if (!strcmp(argv[i], "--inv-pid"))
            inv_pid = (int)num_arg(argc, argv, &i, 1, 1 << 30);
        else
            usage();
    }
    if (!port)
        usage();
    signal(SIGPIPE, SIG_IGN);
    /* one socket per slot, plus a few: the soft limit goes to the hard one */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur < (long long)conc + 32) {
            fprintf(stderr,
                    "load_seed: %d runs need %d open files; the limit is %llu (raise the hard "
                    "limit: ulimit -Hn)\n",
                    conc, conc + 32, (unsigned long long)rl.rlim_cur);
            return 3;
        }
    }
    G.addr.sin_family = AF_INET;
    G.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &G.addr.sin_addr) != 1) {
        fprintf(stderr, "load_seed: --host must be an IPv4 address\n");
        return 2;
    }
    char body[1024];
    int bl = snprintf(body, sizeof body, "{\"query\":\"%s\"}", query);
    if (bl <= 0 || (size_t)bl >= sizeof body || strpbrk(query, "\"\\")) {
        fprintf(stderr, "load_seed: --query must be short and have no quotes or backslashes\n");
        return 2;
    }
    G.req = malloc(2048);
    G.req_len = (size_t)snprintf(G.req, 2048,
                                 "POST /v1/search HTTP/1.1\r\nHost: %s:%d\r\n"
                                 "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                                 "Content-Length: %d\r\n\r\n%s",
                                 host, port, bl, body);
    G.timeout_s = timeout_ms / 1000;
    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    G.conns = calloc((size_t)conc, sizeof *G.conns);
    if (G.epfd < 0 || !G.conns) {
        fprintf(stderr, "load_seed: out of memory\n");
        return 1;
    }
    G.nconn = conc;
    for (int i = 0; i < conc; i++) {
        G.conns[i].fd = -1;
        start_run(&G.conns[i]);
    }
    double t = now_s();
    loop_until(t + warmup, NULL);

    struct lag_hist lag0, lag1;
    int have_lag = fetch_lag(&lag0) == 0;
    long rss_start = sift_pid > 0 ? proc_rss_kb(sift_pid) : -1;
    long long sys0 = 0, sys1 = 0;
    long long cpu0 = sift_pid > 0 ? proc_cpu_us(sift_pid, &sys0) : -1;
    long long sched0 = sift_pid > 0 ? proc_sched_ns(sift_pid) : -1;
    long long llm0 = llm_pid > 0 ? proc_cpu_us(llm_pid, NULL) : -1;
    long long inv0 = inv_pid > 0 ? proc_cpu_us(inv_pid, NULL) : -1;
    double self0 = self_cpu_us();
    G.t0 = now_s();
    G.measuring = 1;
    loop_until(G.t0 + duration, sample_rss);
    G.t1 = now_s();
    double self1 = self_cpu_us();
    long long cpu1 = sift_pid > 0 ? proc_cpu_us(sift_pid, &sys1) : -1;
    long long sched1 = sift_pid > 0 ? proc_sched_ns(sift_pid) : -1;
    long long llm1 = llm_pid > 0 ? proc_cpu_us(llm_pid, NULL) : -1;
    long long inv1 = inv_pid > 0 ? proc_cpu_us(inv_pid, NULL) : -1;
    G.measuring = 0;
    have_lag = have_lag && fetch_lag(&lag1) == 0;
    G.stopping = 1;
    loop_until(now_s() + G.timeout_s + 1, NULL);
    /* whatever is still in flight after the timeout is a timeout */
    for (int i = 0; i < G.nconn; i++)
        if (G.conns[i].state != C_IDLE) {
            G.errors[E_TIMEOUT]++;
            G.inflight--;
            conn_close(&G.conns[i]);
        }
    for (int i = 0; i < G.nconn; i++)
        conn_close(&G.conns[i]);

    qsort(G.lat, G.nlat, sizeof *G.lat, cmp_d);
    double window = G.t1 - G.t0, samples = 0;
    double lag = have_lag ? lag_p99_ms(&lag0, &lag1, &samples) : -1;
    long etotal = 0;
    for (int i = 0; i < E_COUNT; i++)
        etotal += G.errors[i];
    printf("{\"concurrency\":%d,\"window_s\":%.3f,\"completed\":%ld,\"runs_per_s\":%.3f,"
           "\"lat_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
           "\"errors\":{\"total\":%ld",
           conc, window, G.completed, window > 0 ? (double)G.completed / window : 0, pct(50),
           pct(90), pct(99), G.nlat ? G.lat[G.nlat - 1] : 0, etotal);
    for (int i = 0; i < E_COUNT; i++)
        printf(",\"%s\":%ld", err_names[i], G.errors[i]);
    printf("},\"drained\":%ld,\"sift\":{\"cpu_us\":%lld,\"cpu_sys_us\":%lld,\"cpu_ns_sched\":%lld,"
           "\"rss_kb_max\":%ld,"
           "\"rss_kb_mean\":%.0f,\"rss_kb_start\":%ld},\"llm_cpu_us\":%lld,\"inv_cpu_us\":%lld,"
           "\"lag_p99_ms\":%.3f,\"lag_samples\":%.0f,\"self_cpu_us\":%.0f}\n",
           G.drained, cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1, sys1 - sys0,
           sched0 >= 0 && sched1 >= 0 ? sched1 - sched0 : -1, rss_max,
           rss_samples ? rss_sum / (double)rss_samples : 0, rss_start,
           llm0 >= 0 && llm1 >= 0 ? llm1 - llm0 : -1, inv0 >= 0 && inv1 >= 0 ? inv1 - inv0 : -1,
           lag, samples, self1 - self0);
    fflush(stdout);
    free(G.conns);
    free(G.lat);
    free(G.req);
    close(G.epfd);
    return 0;
}
