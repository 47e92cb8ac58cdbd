/* Internals shared by server.c (lifecycle, workers, connections, routing) and
 * server_http.c (exchanges: requests, responses, streams). */
#ifndef SIFT_SERVER_INT_H
#define SIFT_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <h2o.h>

#include "sift/buf.h"
#include "sift/server.h"

#define SIFT_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct srv_route {
    char *method; /* NULL: any */
    char *path;   /* without the trailing '*' for prefix routes */
    size_t path_len;
    int prefix;
    sift_http_handler fn;
    void *udata;
};

/* An intrusive doubly linked list node/head. */
struct srv_link {
    struct srv_link *prev, *next;
};

enum conn_state {
    CONN_OPEN = 0, /* h2o owns the socket */
    CONN_CLOSED,   /* the uv handle has closed; memory may go */
};

/* One accepted client connection. The uv handle is ours (memory freed in its
 * close callback); the h2o socket and connection on top of it are h2o's. */
struct srv_conn {
    uv_tcp_t tcp;
    enum conn_state state;
    struct sift_server_worker *w;
    h2o_socket_t *sock;
    h2o_conn_t *h2oconn;          /* sock->data after h2o_accept: the map key */
    struct sift_http_exchange *x; /* the exchange in progress on it, if any */
    struct srv_link link;         /* worker's connection list */
};

enum worker_state {
    W_INIT = 0, /* thread starting */
    W_RUNNING,  /* accepting */
    W_DRAINING, /* listeners closed, waiting for requests to finish */
    W_FORCING,  /* grace over: everything cancelled, waiting for sockets */
    W_CLOSING,  /* tearing the loop down */
    W_DONE,     /* thread finished */
};

struct sift_server_worker {
    struct sift_server *s;
    int index;
    enum worker_state state;
    pthread_t thread;
    int thread_started;
    int listen_fd; /* bound and listening; adopted by `listener` */
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop_async;
    uv_timer_t grace_timer;
    uv_timer_t check_timer; /* idle-client check */
    uv_timer_t defer_timer; /* runs deferred frees and drain callbacks */
    int handles_inited;
    h2o_context_t h2octx;
    h2o_accept_ctx_t accept_ctx;
    int h2o_inited;
    sift_ctx *root;
    void *data;
    struct srv_link conns; /* srv_conn.link */
    size_t nconns;
    struct srv_link exchanges; /* every live exchange (x->link) */
    struct srv_link deferred;  /* exchanges with deferred work (x->defer_link) */
    /* h2o_conn_t * -> srv_conn *, open addressing with linear probing */
    struct srv_conn **map;
    size_t map_cap, map_len;
    int start_rc;
    sift_err start_err;
    uint64_t last_accept_warn; /* uv_now of the last accept-failure log line */
};

enum server_state {
    S_NEW = 0,
    S_STARTING,
    S_RUNNING,
    S_STOPPING,
    S_STOPPED,
};

struct sift_server {
    sift_server_opts opts;
    char host[64];
    _Atomic int state;
    int port;
    struct srv_route *routes;
    size_t nroutes;
    h2o_globalconf_t h2oconf;
    int h2oconf_inited;
    struct sift_server_worker *workers;
    int nworkers;
    pthread_mutex_t mu; /* start barrier, wait, run_until_signal */
    pthread_cond_t cond;
    int workers_ready;
    int workers_exited;
    int joined;
    uv_async_t *exit_notify; /* set by run_until_signal */
    _Atomic uint64_t st_requests, st_active, st_streams, st_too_large, st_disconnects, st_conns;
};

enum x_state {
    X_OPEN = 0,  /* with the handler; no response yet */
    X_STREAMING, /* headers sent; body being streamed */
    X_CLOSING,   /* user finished; the final send waits for h2o's proceed */
    X_DONE,      /* h2o is done with it (final sent or request gone) */
};

struct srv_xref; /* the exchange's anchor in req->pool */

struct sift_http_exchange {
    enum x_state state;
    h2o_generator_t gen;
    struct sift_server_worker *w;
    h2o_req_t *req;       /* NULL once detached from h2o */
    struct srv_xref *ref; /* NULL once detached */
    struct srv_conn *conn;
    sift_ctx *ctx;
    const struct srv_route *route;
    unsigned user_done : 1;    /* the user made the finishing call */
    unsigned inflight : 1;     /* h2o_send done, proceed not yet called */
    unsigned end_pending : 1;  /* send FINAL at the next proceed */
    unsigned kill_pending : 1; /* send ERROR at the next proceed */
    unsigned client_gone : 1;
    unsigned counted_stream : 1;
    unsigned counted_active : 1;
    unsigned deferred : 1;  /* on w->deferred */
    unsigned drain_now : 1; /* call the drain callback from the deferred run */
    unsigned free_pending : 1;
    unsigned head : 1; /* a HEAD request: headers as for GET, the body never sent */
    int status;
    sift_buf pending; /* written, not yet handed to h2o */
    sift_buf sending; /* handed to h2o, waiting for proceed */
    h2o_iovec_t iov;
    void (*drain_cb)(sift_http_exchange *x, void *udata);
    void *drain_udata;
    struct srv_link link;
    struct srv_link defer_link;
    /* request copies; they live in the same allocation, after the struct */
    const char *method, *path, *query, *rest, *body;
    size_t body_len;
    size_t nheaders;
    struct srv_header {
        const char *name, *value;
        size_t name_len, value_len;
    } * headers;
};

/* server_http.c */
void srv_dispatch(struct sift_server_worker *w, h2o_req_t *req);
void srv_exchange_kill(sift_http_exchange *x, int client_gone);
void srv_exchange_free(sift_http_exchange *x);
void srv_run_deferred(struct sift_server_worker *w);
int srv_exchange_idle(const sift_http_exchange *x);

/* server.c */
void srv_worker_defer(struct sift_server_worker *w, sift_http_exchange *x);
struct srv_conn *srv_conn_lookup(struct sift_server_worker *w, h2o_conn_t *key);
void srv_worker_maybe_finish(struct sift_server_worker *w);

static inline void srv_link_init(struct srv_link *head)
{
    head->prev = head->next = head;
}

static inline int srv_link_empty(const struct srv_link *head)
{
    return head->next == head;
}

/* Inserts node at the tail of the list. */
static inline void srv_link_insert(struct srv_link *head, struct srv_link *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void srv_link_remove(struct srv_link *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

#endif
