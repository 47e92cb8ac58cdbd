/* The asynchronous PostgreSQL pool (pgpool.h).
 *
 * Objects and their states:
 *   query  QUEUED (in the pool's FIFO) -> SENT (in a connection's pipeline)
 *          -> DONE; or -> ABANDONED (callback already called: ctx done or pool
 *          closing) while its result is still on the wire, then freed when
 *          that result has been read. A query is freed only by the code that
 *          takes it off a list, never inside its own callback.
 *   conn   CONNECTING -> READY -> CLOSING (handles closing; freed in the
 *          timer's close callback). While CONNECTING it may first be
 *          resolving host names (resolve set, pg NULL); see conn_open.
 *   pool   OPEN -> CLOSING (teardown done at the outermost entry point, so a
 *          callback may close the pool) -> freed when the last handle closed
 *          and no cancel request is running on the thread pool.
 *
 * Each query on the wire is [Prepare] Bind/Execute Sync: its results are read
 * in three phases (prepare result, query result, sync), see conn_read. */
#include "sift/pgpool.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/log.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

enum q_state { Q_QUEUED = 1, Q_SENT, Q_ABANDONED, Q_DONE };

/* Times a query that was not cancelled itself is retried after failing with
 * query_canceled on a connection that was sent cancel requests. */
#define STRAY_CANCEL_RETRIES 3
enum q_phase { PH_PREP = 1, PH_RESULT, PH_SYNC };
enum c_state { C_CONNECTING = 1, C_READY, C_CLOSING };

struct pgq {
    struct pgq *prev, *next; /* in the pool's queue or a connection's pipeline */
    sift_pgpool *pool;
    struct pgconn *conn; /* while SENT or ABANDONED on the wire */
    sift_ctx_hook hook;
    enum q_state state;
    enum q_phase phase;
    int retries; /* after stray cancel requests */
    int stmt;
    int nparams;
    uint64_t queued_at; /* uv_now */
    sift_pgpool_cb cb;
    void *data;
    PGresult *res; /* the query's result, kept until the sync arrives */
    sift_err err;  /* the first error seen for this query */
    char *values[SIFT_PGPOOL_PARAMS_MAX];
};

struct qlist {
    struct pgq *head, *tail;
    size_t n;
};

struct pgpoll {
    uv_poll_t h;
};

struct pgconn {
    struct pgconn *prev, *next;
    sift_pgpool *pool;
    enum c_state state;
    uint64_t id;
    PGconn *pg;
    struct pgpoll *poll; /* NULL when none; replaced when libpq changes socket */
    int poll_fd;
    int poll_events;
    bool want_write;            /* PQflush left output behind */
    uv_timer_t timer;           /* connect timeout */
    struct qlist pipe;          /* queries on the wire, in order */
    uint32_t prepared;          /* bit i: statement i was sent for preparing */
    uint64_t cancels;           /* cancel requests sent on this connection */
    struct pgq *cancelled_head; /* the query a cancel request was sent for */
    struct pgresolve *resolve;  /* host names being resolved; pg is NULL meanwhile */
};

struct stmt {
    char *sql;
    int nparams;
    char name[16];
    /* Why preparing it last failed: the queries pipelined behind a failed
     * prepare fail with "prepared statement does not exist", and this says
     * the real cause instead. */
    sift_err prep_err;
};

struct sift_pgpool {
    uv_loop_t *loop;
    char *conninfo;
    PQconninfoOption *copts; /* conninfo parsed once; host names resolved per attempt */
    size_t size, depth_max, queue_max;
    int queue_timeout_ms, connect_timeout_ms, backoff_min_ms, backoff_max_ms;
    struct stmt stmts[SIFT_PGPOOL_STMTS_MAX];
    int nstmts;

    struct qlist queue;
    struct pgconn *conns; /* open or connecting (not closing) */
    size_t nconns;
    size_t handles; /* conns closing or open + pool timers not yet closed */
    size_t cancels_running;
    uint64_t next_conn_id;

    uv_timer_t queue_timer; /* fires when the queue's head times out */
    /* Pumps the queue when the reconnect backoff is over. */
    uv_timer_t pump_timer;
    /* Pumps the queries submitted outside the pool's callbacks, in the check
     * phase: after this iteration's I/O, so a connection the server closed
     * meanwhile is known dead before anything is sent on it. The idle handle
     * only keeps that iteration's poll from blocking while a pump is due. */
    uv_check_t pump_check;
    uv_idle_t pump_idle;
    bool pump_due;
    uint64_t next_connect_at;
    int backoff_ms;
    char last_error[SIFT_ERR_MSG_MAX];

    int depth; /* nesting of entry points (callbacks from uv or ctx) */
    bool closing, torn_down;
    sift_pgpool_stats st;
};

/* ---- lists ---- */

static void ql_push(struct qlist *l, struct pgq *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->n++;
}

static void ql_push_front(struct qlist *l, struct pgq *q)
{
    q->prev = NULL;
    q->next = l->head;
    if (l->head)
        l->head->prev = q;
    else
        l->tail = q;
    l->head = q;
    l->n++;
}

static void ql_remove(struct qlist *l, struct pgq *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    q->prev = q->next = NULL;
    l->n--;
}

/* ---- pool lifetime ---- */

static void pool_maybe_free(sift_pgpool *p)
{
    if (!p->torn_down || p->handles > 0 || p->cancels_running > 0)
        return;
    for (int i = 0; i < p->nstmts; i++)
        sift_free(p->stmts[i].sql);
    sift_free(p->conninfo);
    PQconninfoFree(p->copts);
    sift_free(p);
}

static void pump(sift_pgpool *p);
static void pool_teardown(sift_pgpool *p);

static void enter(sift_pgpool *p)
{
    p->depth++;
}

/* Leaves an entry point; the outermost one does what was deferred. The
 * pump and the teardown run still inside it (depth 1), because both call
 * user callbacks, which may submit queries or close the pool. */
static void leave(sift_pgpool *p)
{
    if (p->depth > 1) {
        p->depth--;
        return;
    }
    if (!p->closing)
        pump(p);
    if (p->closing && !p->torn_down)
        pool_teardown(p);
    p->depth--;
    if (p->torn_down)
        pool_maybe_free(p);
}

/* ---- queries ---- */

static void q_free(struct pgq *q)
{
    if (q->res)
        PQclear(q->res);
    for (int i = 0; i < q->nparams; i++)
        sift_free(q->values[i]);
    sift_free(q);
}

/* Calls the callback once with an error (the query stays where it is). */
static void q_fail(struct pgq *q, int code, const char *msg)
{
    sift_ctx_remove_hook(&q->hook);
    sift_err e = {0};
    sift_err_set(&e, code, "%s", msg);
    q->cb(q->data, NULL, &e);
}

static void on_queue_timer(uv_timer_t *t);

static void arm_queue_timer(sift_pgpool *p)
{
    if (!p->queue.head) {
        /* Nothing waits: an armed timer would keep the loop alive for nothing. */
        uv_timer_stop(&p->queue_timer);
        return;
    }
    if (uv_is_active((uv_handle_t *)&p->queue_timer))
        return;
    uint64_t due = p->queue.head->queued_at + (uint64_t)p->queue_timeout_ms;
    uint64_t now = uv_now(p->loop);
    uv_timer_start(&p->queue_timer, on_queue_timer, due > now ? due - now : 0, 0);
}

static void on_queue_timer(uv_timer_t *t)
{
    sift_pgpool *p = container_of(t, sift_pgpool, queue_timer);
    enter(p);
    uint64_t now = uv_now(p->loop);
    struct pgq *q;
    while (!p->closing && (q = p->queue.head) &&
           q->queued_at + (uint64_t)p->queue_timeout_ms <= now) {
        ql_remove(&p->queue, q);
        q->state = Q_DONE;
        char msg[SIFT_ERR_MSG_MAX];
        if (p->st.conns_ready == 0 && p->last_error[0])
            snprintf(msg, sizeof msg, "PostgreSQL pool: no connection free within %d ms (%.160s)",
                     p->queue_timeout_ms, p->last_error);
        else
            snprintf(msg, sizeof msg,
                     "PostgreSQL pool: no connection free within %d ms (%zu connections busy)",
                     p->queue_timeout_ms, p->nconns);
        q_fail(q, SIFT_ETIMEDOUT, msg);
        q_free(q);
    }
    if (!p->closing)
        arm_queue_timer(p);
    leave(p);
}

static void send_cancel(struct pgconn *c);

static void on_query_cancel(sift_ctx_hook *h, const sift_err *cause)
{
    struct pgq *q = container_of(h, struct pgq, hook);
    sift_pgpool *p = q->pool;
    enter(p);
    sift_err e = {0};
    sift_err_copy(&e, cause);
    if (!e.msg[0])
        sift_err_set(&e, cause->code, "%s", sift_err_name(cause->code));
    if (q->state == Q_QUEUED) {
        ql_remove(&p->queue, q);
        q->state = Q_DONE;
        q->cb(q->data, NULL, &e);
        q_free(q);
    } else if (q->state == Q_SENT) {
        /* Its result is still coming: keep the query as the placeholder for it. */
        q->state = Q_ABANDONED;
        if (q->conn->pipe.head == q && q->conn->state == C_READY)
            send_cancel(q->conn);
        q->cb(q->data, NULL, &e);
    } else {
        fprintf(stderr, "pgpool: cancel hook in query state %d\n", (int)q->state);
        abort();
    }
    leave(p);
}

/* ---- cancel requests (uv thread pool: PQcancel blocks) ---- */

struct cancel_work {
    uv_work_t w;
    sift_pgpool *pool;
    uint64_t conn_id;
    PGcancel *pc;
    int ok;
    char errbuf[256];
};

static void cancel_run(uv_work_t *w)
{
    struct cancel_work *cw = container_of(w, struct cancel_work, w);
    cw->ok = PQcancel(cw->pc, cw->errbuf, (int)sizeof cw->errbuf);
}

static void conn_close(struct pgconn *c, int code, const char *msg);

static void cancel_done(uv_work_t *w, int status)
{
    struct cancel_work *cw = container_of(w, struct cancel_work, w);
    sift_pgpool *p = cw->pool;
    p->cancels_running--;
    enter(p);
    if (!cw->ok && status == 0 && !p->closing) {
        /* The server may still be running the abandoned query: this
         * connection cannot be trusted to answer soon, so it goes. */
        for (struct pgconn *c = p->conns; c; c = c->next) {
            if (c->id == cw->conn_id) {
                char msg[SIFT_ERR_MSG_MAX];
                snprintf(msg, sizeof msg,
                         "PostgreSQL connection lost: cancel request failed: %.180s", cw->errbuf);
                conn_close(c, SIFT_EIO, msg);
                break;
            }
        }
    }
    PQfreeCancel(cw->pc);
    sift_free(cw);
    leave(p);
}

static void send_cancel(struct pgconn *c)
{
    sift_pgpool *p = c->pool;
    if (c->cancelled_head == c->pipe.head)
        return; /* already asked for this one */
    struct cancel_work *cw = sift_calloc(1, sizeof *cw);
    PGcancel *pc = cw ? PQgetCancel(c->pg) : NULL;
    if (!pc) {
        sift_free(cw);
        conn_close(c, SIFT_EIO, "PostgreSQL connection lost: cannot make a cancel request");
        return;
    }
    cw->pool = p;
    cw->conn_id = c->id;
    cw->pc = pc;
    if (uv_queue_work(p->loop, &cw->w, cancel_run, cancel_done) != 0) {
        PQfreeCancel(pc);
        sift_free(cw);
        conn_close(c, SIFT_EIO, "PostgreSQL connection lost: cannot queue a cancel request");
        return;
    }
    p->cancels_running++;
    c->cancels++;
    c->cancelled_head = c->pipe.head;
    p->st.cancels_sent++;
}

/* ---- connections ---- */

static void poll_closed(uv_handle_t *h)
{
    sift_free(container_of((uv_poll_t *)h, struct pgpoll, h));
}

static void conn_timer_closed(uv_handle_t *h)
{
    struct pgconn *c = container_of((uv_timer_t *)h, struct pgconn, timer);
    sift_pgpool *p = c->pool;
    sift_free(c);
    p->handles--;
    if (p->depth == 0)
        pool_maybe_free(p);
}

static void poll_drop(struct pgconn *c)
{
    if (!c->poll)
        return;
    uv_poll_stop(&c->poll->h);
    uv_close((uv_handle_t *)&c->poll->h, poll_closed);
    c->poll = NULL;
    c->poll_events = 0;
}

static void resolve_abort(struct pgconn *c);

/* Closes a connection: every query on it is failed (`code`, `msg`) or, when
 * abandoned already, dropped. The memory goes in the timer's close callback. */
static void conn_close(struct pgconn *c, int code, const char *msg)
{
    sift_pgpool *p = c->pool;
    if (c->state == C_CLOSING)
        return;
    if (c->state == C_READY)
        p->st.conns_ready--;
    c->state = C_CLOSING;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->nconns--;
    p->st.conns = p->nconns;
    poll_drop(c); /* stop polling before PQfinish closes the socket */
    resolve_abort(c);
    PQfinish(c->pg);
    c->pg = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
    struct pgq *q;
    while ((q = c->pipe.head)) {
        ql_remove(&c->pipe, q);
        p->st.inflight--;
        enum q_state was = q->state;
        q->state = Q_DONE;
        if (was == Q_SENT)
            q_fail(q, code, msg);
        q_free(q);
    }
}

/* "PostgreSQL connection lost: <libpq's message on one line>" */
static void conn_lost(struct pgconn *c)
{
    char msg[SIFT_ERR_MSG_MAX];
    const char *pm = c->pg ? PQerrorMessage(c->pg) : "";
    /* The server usually says why before it goes ("terminating connection
     * due to administrator command"), as the error of the query it ran. */
    const struct pgq *h = c->pipe.head;
    if (h && h->err.code && strncmp(h->err.msg, "PostgreSQL: ", 12) == 0)
        pm = h->err.msg + 12;
    int n = snprintf(msg, sizeof msg, "PostgreSQL connection lost: %.200s",
                     pm && *pm ? pm : "the server closed the connection");
    for (int i = 0; i < n && i < (int)sizeof msg - 1; i++) {
        if (msg[i] == '\n')
            msg[i] = ' ';
    }
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == ' ')
        msg[--len] = '\0';
    c->pool->st.conns_lost++;
    snprintf(c->pool->last_error, sizeof c->pool->last_error, "%s", msg);
    sift_warn(NULL, "%s", msg);
    conn_close(c, SIFT_EIO, msg);
}

static void on_conn_poll(uv_poll_t *h, int status, int events);

/* An idle open connection must not keep the loop alive (uv_run would never
 * return once the work is done): only a connection with queries on the wire,
 * or one being opened, holds a reference on the loop. It is still polled, so
 * a server that closes it is noticed whenever the loop runs. */
static void conn_keepalive(struct pgconn *c)
{
    if (!c->poll)
        return;
    if (c->state == C_READY && c->pipe.n == 0)
        uv_unref((uv_handle_t *)&c->poll->h);
    else
        uv_ref((uv_handle_t *)&c->poll->h);
}

/* Polls libpq's socket for `events`, following a change of socket. */
static int conn_poll(struct pgconn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->poll && c->poll_fd != fd)
        poll_drop(c); /* libpq moved to another address: a new socket */
    if (!c->poll) {
        c->poll = sift_calloc(1, sizeof *c->poll);
        if (!c->poll)
            return -1;
        if (uv_poll_init_socket(c->pool->loop, &c->poll->h, fd) != 0) {
            sift_free(c->poll);
            c->poll = NULL;
            return -1;
        }
        c->poll->h.data = c;
        c->poll_fd = fd;
        c->poll_events = 0;
    }
    conn_keepalive(c);
    if (events == c->poll_events)
        return 0;
    c->poll_events = events;
    return uv_poll_start(&c->poll->h, events, on_conn_poll) == 0 ? 0 : -1;
}

static void backoff_failed(sift_pgpool *p)
{
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : p->backoff_min_ms;
    if (p->backoff_ms > p->backoff_max_ms)
        p->backoff_ms = p->backoff_max_ms;
    p->next_connect_at = uv_now(p->loop) + (uint64_t)p->backoff_ms;
}

static void connect_failed(struct pgconn *c, const char *why)
{
    sift_pgpool *p = c->pool;
    char msg[SIFT_ERR_MSG_MAX];
    int n = snprintf(msg, sizeof msg, "PostgreSQL connect failed: %s", why);
    for (int i = 0; i < n && i < (int)sizeof msg - 1; i++) {
        if (msg[i] == '\n')
            msg[i] = ' ';
    }
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == ' ')
        msg[--len] = '\0';
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    p->st.connect_failures++;
    backoff_failed(p);
    sift_warn(NULL, "%s (next attempt in %d ms)", msg, p->backoff_ms);
    conn_close(c, SIFT_EIO, msg);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct pgconn *c = container_of(t, struct pgconn, timer);
    sift_pgpool *p = c->pool;
    enter(p);
    char why[64];
    snprintf(why, sizeof why, "no answer within %d ms", p->connect_timeout_ms);
    connect_failed(c, why);
    leave(p);
}

static void conn_connect_step(struct pgconn *c)
{
    sift_pgpool *p = c->pool;
    PostgresPollingStatusType ps = PQconnectPoll(c->pg);
    /* PQconnectPoll may have closed its socket and opened another (next
     * host or address), often under the same descriptor number, which epoll
     * has silently forgotten: poll afresh after every step of connecting. */
    poll_drop(c);
    switch (ps) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        if (conn_poll(c, ps == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE) < 0)
            connect_failed(c, "cannot poll the socket");
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    /* Pipeline mode needs the extended protocol, which PQsendQueryPrepared uses. */
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    uv_timer_stop(&c->timer);
    if (conn_poll(c, UV_READABLE) < 0) {
        connect_failed(c, "cannot poll the socket");
        return;
    }
    c->state = C_READY;
    conn_keepalive(c);
    p->st.conns_ready++;
    p->st.connects++;
    p->backoff_ms = 0;
    p->next_connect_at = 0;
    p->last_error[0] = '\0';
}

/* ---- resolving host names ----
 *
 * libpq resolves a host name inside PQconnectStart/PQconnectPoll with a
 * blocking getaddrinfo. So before each attempt the names in `host` are
 * resolved here with uv_getaddrinfo (on the uv thread pool), one after the
 * other, and the connection is started with the addresses as `hostaddr`:
 * libpq then connects to those without resolving, and still uses `host` for
 * TLS verification and .pgpass. Every address of a name is kept (the name is
 * repeated in `host`, once per address, and its port with it), so libpq tries
 * them in turn as it would have. Nothing is cached: each attempt resolves
 * afresh, so a DNS change is seen at the next connection. */

/* A string that grows; `bad` once an allocation failed. */
struct sbuf {
    char *s;
    size_t len, cap;
    bool bad;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (!b->s || b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = sift_realloc(b->s, cap);
        if (!ns) {
            b->bad = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* Adds `s` as the next item of a comma-separated list. */
static void sb_item(struct sbuf *b, const char *s, size_t n)
{
    if (b->len > 0 || b->s)
        sb_add(b, ",", 1);
    else
        sb_add(b, "", 0); /* marks the list as started: its first item may be empty */
    sb_add(b, s, n);
}

struct pgresolve {
    uv_getaddrinfo_t req;
    struct pgconn *c;   /* NULL once the connection is gone: the callback only frees */
    const char *ports;  /* the `port` list, or NULL */
    const char *at;     /* the host item being resolved */
    size_t nports, idx; /* items in `ports`; index of the host item at `at` */
    char name[256];     /* the host item being resolved, for the error message */
    struct sbuf host, hostaddr, port;
};

static void resolve_free(struct pgresolve *r)
{
    sift_free(r->host.s);
    sift_free(r->hostaddr.s);
    sift_free(r->port.s);
    sift_free(r);
}

/* Cancels a pending resolution: the request is freed in its callback, which
 * libuv calls in any case (UV_EAI_CANCELED when it had not started). */
static void resolve_abort(struct pgconn *c)
{
    if (!c->resolve)
        return;
    c->resolve->c = NULL;
    uv_cancel((uv_req_t *)&c->resolve->req);
    c->resolve = NULL;
}

static const char *copt(const sift_pgpool *p, const char *key)
{
    for (const PQconninfoOption *o = p->copts; o->keyword; o++) {
        if (strcmp(o->keyword, key) == 0)
            return o->val && *o->val ? o->val : NULL;
    }
    return NULL;
}

/* The length of the comma-separated item at `s`. */
static size_t item_len(const char *s)
{
    const char *e = strchr(s, ',');
    return e ? (size_t)(e - s) : strlen(s);
}

/* Item `i` of the list `s` (a single item applies to every index). */
static const char *list_item(const char *s, size_t n, size_t i, size_t *len)
{
    if (n > 1) {
        for (size_t k = 0; k < i && s; k++) {
            s = strchr(s, ',');
            s = s ? s + 1 : NULL;
        }
    }
    if (!s) {
        *len = 0;
        return "";
    }
    *len = item_len(s);
    return s;
}

/* True when libpq would need DNS for this host item: not empty, not a Unix
 * socket directory, not a numeric address. */
static bool needs_dns(const char *h, size_t n)
{
    char buf[64];
    unsigned char addr[16];
    if (n == 0 || h[0] == '/' || h[0] == '@')
        return false;
    if (n >= sizeof buf)
        return true;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return uv_inet_pton(AF_INET, buf, addr) != 0 && uv_inet_pton(AF_INET6, buf, addr) != 0;
}

static void conn_start(struct pgconn *c, const char *host, const char *hostaddr, const char *port);
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* Adds the current host item as is (no DNS needed), then moves to the next
 * one; resolves the next that needs it, or starts the connection when none is
 * left. Returns 0, or -1 after failing the attempt. */
static int resolve_next(struct pgresolve *r)
{
    struct pgconn *c = r->c;
    while (r->at) {
        size_t n = item_len(r->at);
        size_t plen;
        const char *pt = r->ports ? list_item(r->ports, r->nports, r->idx, &plen) : "";
        if (!r->ports)
            plen = 0;
        if (needs_dns(r->at, n)) {
            snprintf(r->name, sizeof r->name, "%.*s", (int)n, r->at);
            struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
            int rc = uv_getaddrinfo(c->pool->loop, &r->req, on_resolved, r->name, NULL, &hints);
            if (rc != 0) {
                char why[SIFT_ERR_MSG_MAX];
                snprintf(why, sizeof why, "cannot resolve host \"%.100s\": %.100s", r->name,
                         uv_strerror(rc));
                c->resolve = NULL;
                resolve_free(r);
                connect_failed(c, why);
                return -1;
            }
            return 0;
        }
        sb_item(&r->host, r->at, n);
        sb_item(&r->hostaddr, "", 0);
        sb_item(&r->port, pt, plen);
        r->at = r->at[n] == ',' ? r->at + n + 1 : NULL;
        r->idx++;
    }
    c->resolve = NULL;
    if (r->host.bad || r->hostaddr.bad || r->port.bad) {
        resolve_free(r);
        connect_failed(c, "out of memory");
        return -1;
    }
    if (!r->host.s) { /* every name resolved to no IPv4 or IPv6 address */
        char why[SIFT_ERR_MSG_MAX];
        snprintf(why, sizeof why, "cannot resolve host \"%.100s\": no IPv4 or IPv6 address",
                 r->name);
        resolve_free(r);
        connect_failed(c, why);
        return -1;
    }
    conn_start(c, r->host.s, r->hostaddr.s, r->ports ? r->port.s : NULL);
    resolve_free(r);
    return c->state == C_CLOSING ? -1 : 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct pgresolve *r = container_of(req, struct pgresolve, req);
    struct pgconn *c = r->c;
    if (!c) { /* the connection was closed meanwhile (timeout, pool closed) */
        uv_freeaddrinfo(res);
        resolve_free(r);
        return;
    }
    sift_pgpool *p = c->pool;
    enter(p);
    if (status != 0) {
        char why[SIFT_ERR_MSG_MAX];
        snprintf(why, sizeof why, "cannot resolve host \"%.100s\": %.100s", r->name,
                 uv_strerror(status));
        c->resolve = NULL;
        resolve_free(r);
        connect_failed(c, why);
        uv_freeaddrinfo(res);
        leave(p);
        return;
    }
    size_t n = item_len(r->at);
    size_t plen = 0;
    const char *pt = r->ports ? list_item(r->ports, r->nports, r->idx, &plen) : "";
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        char ip[64];
        int rc = -1;
        if (a->ai_family == AF_INET)
            rc = uv_ip4_name((const struct sockaddr_in *)(const void *)a->ai_addr, ip, sizeof ip);
        else if (a->ai_family == AF_INET6)
            rc = uv_ip6_name((const struct sockaddr_in6 *)(const void *)a->ai_addr, ip, sizeof ip);
        if (rc != 0)
            continue;
        sb_item(&r->host, r->at, n);
        sb_item(&r->hostaddr, ip, strlen(ip));
        sb_item(&r->port, pt, plen);
    }
    uv_freeaddrinfo(res);
    r->at = r->at[n] == ',' ? r->at + n + 1 : NULL;
    r->idx++;
    resolve_next(r);
    leave(p);
}

/* Starts libpq's connection with the options parsed from conninfo, `host`,
 * `hostaddr` and `port` replaced when not NULL. */
static void conn_start(struct pgconn *c, const char *host, const char *hostaddr, const char *port)
{
    sift_pgpool *p = c->pool;
    size_t n = 0;
    for (const PQconninfoOption *o = p->copts; o->keyword; o++)
        n++;
    const char **keys = sift_calloc(n + 4, sizeof *keys);
    const char **vals = sift_calloc(n + 4, sizeof *vals);
    if (!keys || !vals) {
        sift_free(keys);
        sift_free(vals);
        connect_failed(c, "out of memory");
        return;
    }
    size_t k = 0;
    for (const PQconninfoOption *o = p->copts; o->keyword; o++) {
        const char *v = o->val;
        if (host && strcmp(o->keyword, "host") == 0)
            v = host;
        else if (hostaddr && strcmp(o->keyword, "hostaddr") == 0)
            v = hostaddr;
        else if (port && strcmp(o->keyword, "port") == 0)
            v = port;
        if (!v)
            continue;
        keys[k] = o->keyword;
        vals[k++] = v;
    }
    c->pg = PQconnectStartParams(keys, vals, 0);
    sift_free(keys);
    sift_free(vals);
    if (!c->pg) {
        connect_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    /* PQconnectStart leaves the connection as if PQconnectPoll had said WRITING. */
    if (conn_poll(c, UV_WRITABLE) < 0)
        connect_failed(c, "cannot poll the socket");
}

static struct pgconn *conn_open(sift_pgpool *p)
{
    struct pgconn *c = sift_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->pool = p;
    c->id = ++p->next_conn_id;
    c->state = C_CONNECTING;
    uv_timer_init(p->loop, &c->timer);
    p->handles++;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->nconns++;
    p->st.conns = p->nconns;
    /* The timeout covers resolving the names too. */
    uv_timer_start(&c->timer, on_connect_timeout, (uint64_t)p->connect_timeout_ms, 0);
    const char *hosts = copt(p, "host");
    if (!hosts && !copt(p, "hostaddr"))
        hosts = getenv("PGHOST"); /* libpq's default, resolved the same way */
    bool dns = false;
    if (hosts && !copt(p, "hostaddr") && !getenv("PGHOSTADDR")) {
        for (const char *h = hosts; h; h = strchr(h, ',') ? strchr(h, ',') + 1 : NULL)
            dns = dns || needs_dns(h, item_len(h));
    }
    if (!dns) {
        conn_start(c, NULL, NULL, NULL);
        return c->state == C_CLOSING ? NULL : c;
    }
    struct pgresolve *r = sift_calloc(1, sizeof *r);
    if (!r) {
        connect_failed(c, "out of memory");
        return NULL;
    }
    r->c = c;
    r->at = hosts;
    r->ports = copt(p, "port");
    if (!r->ports)
        r->ports = getenv("PGPORT");
    if (r->ports) {
        r->nports = 1;
        for (const char *s = r->ports; (s = strchr(s, ',')); s++)
            r->nports++;
    }
    size_t nhosts = 1;
    for (const char *s = hosts; (s = strchr(s, ',')); s++)
        nhosts++;
    if (r->nports > 1 && r->nports != nhosts) {
        /* libpq refuses this before resolving anything: let it say so. */
        c->resolve = NULL;
        resolve_free(r);
        conn_start(c, NULL, NULL, NULL);
        return c->state == C_CLOSING ? NULL : c;
    }
    c->resolve = r;
    return resolve_next(r) == 0 ? c : NULL;
}

static void conn_flush(struct pgconn *c)
{
    int rc = PQflush(c->pg);
    if (rc < 0) {
        conn_lost(c);
        return;
    }
    c->want_write = rc == 1;
    if (conn_poll(c, UV_READABLE | (c->want_write ? UV_WRITABLE : 0)) < 0)
        conn_lost(c);
}

/* Puts a query on the wire: [Prepare] Bind/Execute, Sync. */
static void conn_send(struct pgconn *c, struct pgq *q)
{
    sift_pgpool *p = c->pool;
    struct stmt *s = &p->stmts[q->stmt];
    uint32_t bit = (uint32_t)1 << q->stmt;
    q->phase = PH_RESULT;
    if (!(c->prepared & bit)) {
        if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL))
            goto lost;
        c->prepared |= bit;
        q->phase = PH_PREP;
    }
    q->state = Q_SENT;
    q->conn = c;
    ql_push(&c->pipe, q);
    p->st.inflight++;
    if (!PQsendQueryPrepared(c->pg, s->name, q->nparams, (const char *const *)q->values, NULL, NULL,
                             0) ||
        !PQpipelineSync(c->pg)) {
        conn_lost(c);
        return;
    }
    conn_flush(c);
    return;
lost:
    q->state = Q_SENT;
    q->conn = c;
    ql_push(&c->pipe, q);
    p->st.inflight++;
    conn_lost(c);
}

static void err_from_result(sift_err *e, const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!m)
        m = PQresultErrorMessage(r);
    sift_err_set(e, SIFT_EIO, "PostgreSQL: %s%s%s%s", m && *m ? m : "query failed",
                 state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
}

/* A query's results are all in: complete it, retry it, or drop it. */
static void conn_complete(struct pgconn *c, struct pgq *q)
{
    sift_pgpool *p = c->pool;
    ql_remove(&c->pipe, q);
    p->st.inflight--;
    if (c->cancelled_head == q)
        c->cancelled_head = NULL;
    /* An abandoned query that now reaches the head is the one the server
     * runs next: ask the server to stop it. */
    struct pgq *next = c->pipe.head;
    if (next && next->state == Q_ABANDONED)
        send_cancel(c);
    if (q->state == Q_ABANDONED) {
        q->state = Q_DONE;
        q_free(q);
        return;
    }
    if (q->err.code && q->retries < STRAY_CANCEL_RETRIES && c->cancels > 0 &&
        strstr(q->err.msg, "(SQLSTATE 57014)")) {
        /* A cancel request meant for an earlier query arrived late. More
         * than one can be in flight (each waits for a pool thread), so a
         * query may be hit more than once. */
        q->retries++;
        sift_err_clear(&q->err);
        if (q->res) {
            PQclear(q->res);
            q->res = NULL;
        }
        q->state = Q_QUEUED;
        q->conn = NULL;
        ql_push_front(&p->queue, q);
        p->st.retries++;
        return;
    }
    q->state = Q_DONE;
    sift_ctx_remove_hook(&q->hook);
    if (q->err.code || !q->res) {
        if (!q->err.code)
            sift_err_set(&q->err, SIFT_EPROTO, "PostgreSQL: no result for the query");
        q->cb(q->data, NULL, &q->err);
    } else {
        q->cb(q->data, q->res, NULL);
    }
    q_free(q);
}

/* Reads every result that has arrived, in pipeline order. */
static void conn_read(struct pgconn *c)
{
    /* On failure, still read what arrived: the server's last words (why it
     * closed) are in it. A broken connection yields a few results at most,
     * so `spins` bounds that reading. */
    bool ok = PQconsumeInput(c->pg) == 1;
    /* Data on an idle connection is usually the server's last words
     * ("terminating connection ..."), with the end of the stream right
     * behind: read again so that end is seen now, not by the next query. */
    if (ok && c->pipe.n == 0)
        ok = PQconsumeInput(c->pg) == 1;
    int spins = 0;
    struct pgq *q;
    while (c->state == C_READY && (q = c->pipe.head) && !PQisBusy(c->pg) && (ok || spins++ < 16)) {
        PGresult *r = PQgetResult(c->pg);
        if (q->phase == PH_PREP) {
            if (!r) {
                q->phase = PH_RESULT;
                continue;
            }
            if (PQresultStatus(r) != PGRES_COMMAND_OK && !q->err.code) {
                err_from_result(&q->err, r);
                sift_err_copy(&c->pool->stmts[q->stmt].prep_err, &q->err);
                /* Not prepared after all; the queries behind it fail the same way. */
                c->prepared &= ~((uint32_t)1 << q->stmt);
            }
            PQclear(r);
        } else if (q->phase == PH_RESULT) {
            if (!r) {
                q->phase = PH_SYNC;
                continue;
            }
            ExecStatusType st = PQresultStatus(r);
            if ((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) && !q->res && !q->err.code) {
                q->res = r;
            } else {
                const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                const sift_err *pe = &c->pool->stmts[q->stmt].prep_err;
                if (!q->err.code && code && strcmp(code, "26000") == 0 && pe->code)
                    sift_err_copy(&q->err, pe);
                else if (st != PGRES_PIPELINE_ABORTED && !q->err.code)
                    err_from_result(&q->err, r);
                else if (!q->err.code)
                    sift_err_set(&q->err, SIFT_EIO, "PostgreSQL: query aborted in the pipeline");
                PQclear(r);
            }
        } else {
            if (!r)
                break; /* the sync has not arrived yet */
            ExecStatusType st = PQresultStatus(r);
            PQclear(r);
            if (st == PGRES_PIPELINE_SYNC)
                conn_complete(c, q);
        }
    }
    if (c->state == C_READY && (!ok || PQstatus(c->pg) == CONNECTION_BAD))
        conn_lost(c);
    else if (c->state == C_READY)
        conn_keepalive(c);
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
    struct pgconn *c = h->data;
    sift_pgpool *p = c->pool;
    enter(p);
    if (c->state == C_CONNECTING) {
        conn_connect_step(c);
    } else if (c->state == C_READY) {
        if (status < 0) {
            conn_lost(c);
        } else {
            if (events & UV_WRITABLE)
                conn_flush(c);
            if (c->state == C_READY && (events & UV_READABLE))
                conn_read(c);
        }
    }
    leave(p);
}

/* ---- dispatch ---- */

static void on_pump_idle(uv_idle_t *h)
{
    (void)h;
}

static void on_pump_check(uv_check_t *h)
{
    sift_pgpool *p = container_of(h, sift_pgpool, pump_check);
    uv_check_stop(&p->pump_check);
    uv_idle_stop(&p->pump_idle);
    p->pump_due = false;
    enter(p);
    leave(p); /* leave pumps */
}

static void pump_soon(sift_pgpool *p)
{
    if (p->pump_due)
        return;
    p->pump_due = true;
    uv_check_start(&p->pump_check, on_pump_check);
    uv_idle_start(&p->pump_idle, on_pump_idle);
}

static void on_pump_timer(uv_timer_t *t)
{
    sift_pgpool *p = container_of(t, sift_pgpool, pump_timer);
    enter(p);
    leave(p); /* leave pumps */
}

/* Sends queued queries to connections, opening connections as needed. */
static void pump(sift_pgpool *p)
{
    while (p->queue.head) {
        struct pgconn *best = NULL;
        size_t connecting = 0;
        for (struct pgconn *c = p->conns; c; c = c->next) {
            if (c->state == C_CONNECTING)
                connecting++;
            else if (c->state == C_READY && c->pipe.n < p->depth_max &&
                     (!best || c->pipe.n < best->pipe.n))
                best = c;
        }
        /* Open another connection rather than pipeline deeper, unless the
         * ones already connecting will take what is waiting. */
        if ((!best || best->pipe.n > 0) && p->nconns < p->size &&
            connecting * p->depth_max < p->queue.n) {
            uint64_t now = uv_now(p->loop);
            if (now >= p->next_connect_at) {
                if (!conn_open(p) && p->next_connect_at <= now) {
                    /* Out of memory: treat as a failed attempt, so this loop ends. */
                    backoff_failed(p);
                }
                continue;
            }
            if (!uv_is_active((uv_handle_t *)&p->pump_timer))
                uv_timer_start(&p->pump_timer, on_pump_timer, p->next_connect_at - now, 0);
        }
        if (!best)
            break;
        struct pgq *q = p->queue.head;
        ql_remove(&p->queue, q);
        conn_send(best, q);
    }
    arm_queue_timer(p);
}

/* ---- public ---- */

int sift_pgpool_is_url(const char *s)
{
    return s && (strncmp(s, "postgres://", 11) == 0 || strncmp(s, "postgresql://", 13) == 0);
}

int sift_pgpool_new(uv_loop_t *loop, const sift_pgpool_opts *o, sift_pgpool **out, sift_err *err)
{
    *out = NULL;
    if (!o || !o->conninfo || !*o->conninfo)
        return sift_err_set(err, SIFT_EINVAL, "PostgreSQL pool: no connection string given");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(o->conninfo, &perr);
    if (!opts) {
        sift_err_set(err, SIFT_EINVAL, "PostgreSQL pool: bad connection string: %s",
                     perr ? perr : "out of memory");
        PQfreemem(perr);
        return SIFT_EINVAL;
    }
    if (o->queue_timeout_ms < 0 || o->connect_timeout_ms < 0 || o->backoff_min_ms < 0 ||
        o->backoff_max_ms < 0 || o->size > 1000 || o->pipeline_depth > 1000) {
        PQconninfoFree(opts);
        return sift_err_set(err, SIFT_EINVAL,
                            "PostgreSQL pool: timeouts must be >= 0, size and pipeline depth "
                            "at most 1000");
    }
    sift_pgpool *p = sift_calloc(1, sizeof *p);
    if (!p || !(p->conninfo = sift_strdup(o->conninfo))) {
        sift_free(p);
        PQconninfoFree(opts);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    p->copts = opts;
    p->loop = loop;
    p->size = o->size ? o->size : 4;
    p->depth_max = o->pipeline_depth ? o->pipeline_depth : 8;
    p->queue_max = o->queue_max ? o->queue_max : 10000;
    p->queue_timeout_ms = o->queue_timeout_ms ? o->queue_timeout_ms : 5000;
    p->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    p->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 100;
    p->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 5000;
    if (p->backoff_max_ms < p->backoff_min_ms)
        p->backoff_max_ms = p->backoff_min_ms;
    uv_timer_init(loop, &p->queue_timer);
    uv_timer_init(loop, &p->pump_timer);
    uv_check_init(loop, &p->pump_check);
    uv_idle_init(loop, &p->pump_idle);
    p->handles = 4;
    *out = p;
    return 0;
}

int sift_pgpool_prepare(sift_pgpool *p, const char *sql, int nparams, sift_err *err)
{
    if (p->nstmts >= SIFT_PGPOOL_STMTS_MAX)
        return sift_err_set(err, SIFT_EINVAL, "PostgreSQL pool: more than %d statements",
                            SIFT_PGPOOL_STMTS_MAX);
    if (nparams < 0 || nparams > SIFT_PGPOOL_PARAMS_MAX)
        return sift_err_set(err, SIFT_EINVAL, "PostgreSQL pool: %d parameters (at most %d)",
                            nparams, SIFT_PGPOOL_PARAMS_MAX);
    struct stmt *s = &p->stmts[p->nstmts];
    if (!(s->sql = sift_strdup(sql)))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    s->nparams = nparams;
    snprintf(s->name, sizeof s->name, "sift_%d", p->nstmts);
    return p->nstmts++;
}

int sift_pgpool_query(sift_pgpool *p, sift_ctx *ctx, int stmt, int nparams,
                      const char *const *values, sift_pgpool_cb cb, void *data, sift_err *err)
{
    if (p->closing)
        return sift_err_set(err, SIFT_ESTATE, "PostgreSQL pool closed");
    if (stmt < 0 || stmt >= p->nstmts)
        return sift_err_set(err, SIFT_EINVAL, "PostgreSQL pool: no statement %d", stmt);
    if (nparams != p->stmts[stmt].nparams)
        return sift_err_set(err, SIFT_EINVAL, "PostgreSQL pool: statement %d takes %d parameters",
                            stmt, p->stmts[stmt].nparams);
    if (p->queue.n >= p->queue_max)
        return sift_err_set(err, SIFT_EBUSY,
                            "PostgreSQL pool: %zu queries waiting for a connection already; "
                            "try again later",
                            p->queue.n);
    struct pgq *q = sift_calloc(1, sizeof *q);
    if (!q)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    q->pool = p;
    q->stmt = stmt;
    q->cb = cb;
    q->data = data;
    q->nparams = nparams; /* q_free frees the copies made so far (the rest are NULL) */
    for (int i = 0; i < nparams; i++) {
        if (values[i] && !(q->values[i] = sift_strdup(values[i]))) {
            q_free(q);
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        }
    }
    int rc = sift_ctx_add_hook(ctx, &q->hook, on_query_cancel);
    if (rc < 0) {
        sift_err_copy(err, sift_ctx_cause(ctx));
        q_free(q);
        return rc;
    }
    q->state = Q_QUEUED;
    q->queued_at = uv_now(p->loop);
    ql_push(&p->queue, q);
    /* Sending could fail the query at once (a connection found broken), and
     * the callback must not run inside this call: outside the pool's own
     * callbacks the queue is pumped in this iteration's check phase (after
     * its I/O), which also puts the queries submitted in one iteration on
     * the wire together. */
    if (p->depth == 0)
        pump_soon(p);
    arm_queue_timer(p);
    return 0;
}

void sift_pgpool_get_stats(const sift_pgpool *p, sift_pgpool_stats *out)
{
    *out = p->st;
    out->queued = p->queue.n;
    out->conns = p->nconns;
}

uv_loop_t *sift_pgpool_loop(const sift_pgpool *p)
{
    return p->loop;
}

static void pool_handle_closed(uv_handle_t *h)
{
    sift_pgpool *p = h->data;
    p->handles--;
    if (p->depth == 0)
        pool_maybe_free(p);
}

static void pool_teardown(sift_pgpool *p)
{
    p->torn_down = true;
    struct pgq *q;
    while ((q = p->queue.head)) {
        ql_remove(&p->queue, q);
        q->state = Q_DONE;
        q_fail(q, SIFT_ECANCELED, "PostgreSQL pool closed");
        q_free(q);
    }
    /* A backend notices a closed client only when it next writes: stop the
     * statement each connection is running, or it runs on to its end. */
    for (struct pgconn *c = p->conns; c; c = c->next) {
        if (c->state == C_READY && c->pipe.n > 0)
            send_cancel(c); /* a failure closes c; the loop below sees that */
    }
    while (p->conns)
        conn_close(p->conns, SIFT_ECANCELED, "PostgreSQL pool closed");
    p->queue_timer.data = p;
    p->pump_timer.data = p;
    p->pump_check.data = p;
    p->pump_idle.data = p;
    uv_close((uv_handle_t *)&p->queue_timer, pool_handle_closed);
    uv_close((uv_handle_t *)&p->pump_timer, pool_handle_closed);
    uv_close((uv_handle_t *)&p->pump_check, pool_handle_closed);
    uv_close((uv_handle_t *)&p->pump_idle, pool_handle_closed);
}

void sift_pgpool_close(sift_pgpool *p)
{
    if (!p || p->closing)
        return;
    p->closing = true;
    enter(p);
    leave(p); /* tears down now, or at the end of the callback we are in */
}
