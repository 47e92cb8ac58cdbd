/* HTTP client: libcurl multi-socket on a uv loop. The contract is in
 * include/sift/http.h; this file is about how it is kept.
 *
 * The one rule everything here follows: curl must never be re-entered from
 * inside one of its own callbacks, and no object is freed inside its own
 * callback. User code runs inside curl's header and write callbacks
 * (on_response, on_data), and that code may cancel contexts, which runs our
 * cancel hooks for any number of requests. So a cancellation never touches
 * curl directly while we are inside curl_multi_socket_action (in_curl > 0):
 * it moves the request to ABORTING, and the request's easy handle is removed
 * right after curl_multi_socket_action returns. Outside curl (a deadline
 * timer, user code in its own callbacks) it is removed at once. Either way
 * on_done is queued and fired from `drain`, which runs only where no curl
 * frame and no user callback of ours is on the stack: at the end of our poll
 * and timer callbacks, and from a uv_idle handle that is active only while
 * the queue is not empty.
 *
 * Request states (one set_state, every callback checks the state):
 *   RUNNING    easy handle in the multi; on_response/on_data may fire
 *   ABORTING   outcome decided while inside curl; handle still in the multi,
 *              curl callbacks for it return an error, no user callback fires
 *   FINISHING  handle out of the multi, outcome recorded, on_done queued
 *   DONE       on_done fired; freed right after it returns */
#include "sift/http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sift/arena.h"
#include "sift/log.h"

#define container_of(p, T, m) ((T *)((char *)(p)-offsetof(T, m)))

#define HEADERS_MAX ((size_t)64 * 1024)
#define BUFFERED_BODY_DEFAULT ((size_t)16 * 1024 * 1024)

/* A minimal intrusive doubly linked list with a sentinel. */
typedef struct qlink {
    struct qlink *prev, *next;
} qlink;

static void q_init(qlink *h)
{
    h->prev = h->next = h;
}

static int q_empty(const qlink *h)
{
    return h->next == h;
}

static void q_push(qlink *h, qlink *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void q_remove(qlink *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

enum client_state { CLIENT_OPEN, CLIENT_CLOSING, CLIENT_CLOSED };
enum req_state { REQ_RUNNING, REQ_ABORTING, REQ_FINISHING, REQ_DONE };

static const char *const req_state_names[] = {"running", "aborting", "finishing", "done"};

typedef struct sock_watch {
    uv_poll_t poll;
    curl_socket_t fd;
    sift_http_client *c;
    qlink node; /* in c->socks */
    int idle;   /* curl stopped watching it (a pooled connection); the socket is still open */
} sock_watch;

struct sift_http_request {
    sift_http_client *c;
    enum req_state state;
    CURL *easy;
    int in_multi;
    sift_ctx_hook hook;
    sift_http_callbacks cb;
    void *udata;
    char method[16];
    char *url;
    char *body_copy;
    struct curl_slist *hdrs;
    size_t max_body;
    long buffer_size; /* CURLOPT_BUFFERSIZE for this transfer */
    size_t body_seen;
    int responded;
    /* With a timeout the hook sits on a child context of our own whose
     * deadline is the timeout: curl does not time out transfers still queued
     * for a connection, a context timer does. */
    sift_ctx *own_ctx;
    sift_ctx *parent_ctx; /* the caller's context (kept alive by own_ctx) */
    int64_t timeout_ms;
    uint64_t t0;
    int code;
    /* the message for on_done's sift_err, allocated when the request fails:
     * a sift_err in every request was 260 of its 656 bytes, and thousands
     * wait in the host queues */
    char *errmsg;
    sift_http_response resp;
    /* curl's message, allocated when the request goes to curl: thousands of
     * requests may wait in the host queues without needing one */
    char *errbuf;
    qlink node;       /* in c->reqs until DONE */
    qlink qnode;      /* in c->aborting (ABORTING) or c->done (FINISHING) */
    int host;         /* index in c->hosts, or -1 (not counted per host) */
    int counted;      /* holds one of its host's slots (added to curl) */
    int queued;       /* waiting in its host's queue, not yet given to curl (and
                         without an easy handle: thousands may wait) */
    const char *body; /* what setup_easy sends: body_copy or the caller's */
    size_t body_len;
    /* builds body/body_len when the request goes to curl (opts.build_body);
     * NULL once called */
    int (*build_body)(void *udata, const char **body, size_t *len, sift_err *err);
    qlink wnode; /* in c->hosts[host].wait while queued */
};

/* Requests per host (scheme://host:port) given to curl at once. Past the
 * limit they wait here, in order, rather than in curl's pending list:
 * curl_multi_remove_handle walks that whole list, which made every finished
 * transfer cost O(transfers waiting), 20% of sift's CPU at 3,000 concurrent
 * runs. */
#define MAX_HOSTS 16
struct host_slots {
    char key[128];
    int active;
    qlink wait;
};

struct sift_http_client {
    uv_loop_t *loop;
    enum client_state state;
    CURLM *multi;
    uv_timer_t timer;
    uv_idle_t idle;
    int handles_open; /* uv handles not closed yet: timer, idle, polls */
    int in_curl;      /* depth inside curl_multi_socket_action */
    int draining;
    qlink reqs;
    qlink aborting;
    qlink done;
    qlink socks;
    /* Watchers by fd, kept while a pooled connection sits idle: curl
     * removes a socket when its transfer ends and adds it again when the
     * connection is reused, and a new uv_poll each time cost six syscalls
     * per request (FIONBIO and five epoll_ctl). Dropped when curl closes the
     * socket (on_close_socket). */
    sock_watch **byfd;
    int nbyfd;
    struct host_slots hosts[MAX_HOSTS];
    int nhosts;
    long per_host;
    CURL **pool;
    int npool;
    int pool_max;
    long buffer_size;
    long connect_timeout_ms;
    char *user_agent;
    sift_ctx *root; /* parent of own_ctx for requests started without a context */
    sift_http_stats stats;
    void (*close_cb)(void *);
    void *close_udata;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void set_state(sift_http_request *req, enum req_state s)
{
    if (sift_log_get_level() <= SIFT_LOG_DEBUG)
        sift_debug(NULL, "http %s %s: %s -> %s", req->method, req->url, req_state_names[req->state],
                   req_state_names[s]);
    req->state = s;
}

static void client_set_state(sift_http_client *c, enum client_state s)
{
    static const char *const names[] = {"open", "closing", "closed"};
    if (sift_log_get_level() <= SIFT_LOG_DEBUG)
        sift_debug(NULL, "http client %p: %s -> %s", (void *)c, names[c->state], names[s]);
    c->state = s;
}

static void drain(sift_http_client *c);
static void close_finish(sift_http_client *c);
static void on_idle(uv_idle_t *h);

/* ---- easy handle pool ---------------------------------------------------- */

static CURL *easy_get(sift_http_client *c)
{
    if (c->npool > 0)
        return c->pool[--c->npool];
    return curl_easy_init();
}

static void easy_put(sift_http_client *c, CURL *e)
{
    if (c->state == CLIENT_OPEN && c->npool < c->pool_max) {
        curl_easy_reset(e);
        c->pool[c->npool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

/* ---- completion ---------------------------------------------------------- */

static void ensure_idle(sift_http_client *c)
{
    if (!uv_is_active((uv_handle_t *)&c->idle) && c->state != CLIENT_CLOSED)
        uv_idle_start(&c->idle, on_idle);
}

/* Unregisters the cancel hook and lets go of the request's own context. Safe
 * inside the hook itself: sift_ctx_cancel holds the contexts it walks. */
static void drop_hook(sift_http_request *req)
{
    sift_ctx_remove_hook(&req->hook);
    if (req->own_ctx) {
        sift_ctx_release(req->own_ctx);
        req->own_ctx = NULL;
    }
}

/* The slot of the host of `url` ("scheme://host:port"), or -1 when the
 * table is full (then curl alone bounds that host). */
static int host_of(sift_http_client *c, const char *url)
{
    const char *p = strstr(url, "://");
    size_t n = p ? strcspn(p + 3, "/?#") + (size_t)(p + 3 - url) : 0;
    if (!p || n >= sizeof c->hosts[0].key)
        return -1;
    for (int i = 0; i < c->nhosts; i++)
        if (strncmp(c->hosts[i].key, url, n) == 0 && c->hosts[i].key[n] == '\0')
            return i;
    if (c->nhosts == MAX_HOSTS)
        return -1;
    struct host_slots *h = &c->hosts[c->nhosts];
    memcpy(h->key, url, n);
    h->key[n] = '\0';
    h->active = 0;
    q_init(&h->wait);
    return c->nhosts++;
}

static CURLcode setup_easy(sift_http_client *c, sift_http_request *req, const char *body,
                           size_t body_len);
static void req_set_msg(sift_http_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Gives the request an easy handle and to curl, and takes a slot of its
 * host. Returns 0, or a negative SIFT_E code with err set. */
static int add_to_curl(sift_http_client *c, sift_http_request *req, sift_err *err)
{
    CURLMcode mrc = CURLM_OK;
    if (req->build_body) {
        /* the body is built only now: a request waiting in its host's
         * queue holds none (thousands may wait, see bench/README.md) */
        int (*build)(void *, const char **, size_t *, sift_err *) = req->build_body;
        req->build_body = NULL;
        int rc = build(req->udata, &req->body, &req->body_len, err);
        if (rc) {
            if (!err->code)
                sift_err_set(err, rc, "%s %s: building the request body failed", req->method,
                             req->url);
            return rc;
        }
    }
    if (!req->easy) {
        req->easy = easy_get(c);
        if (!req->easy) {
            mrc = CURLM_OUT_OF_MEMORY;
            goto fail;
        }
        CURLcode crc = setup_easy(c, req, req->body, req->body_len);
        if (crc != CURLE_OK) {
            mrc = crc == CURLE_OUT_OF_MEMORY ? CURLM_OUT_OF_MEMORY : CURLM_INTERNAL_ERROR;
            goto fail;
        }
    }
    mrc = curl_multi_add_handle(c->multi, req->easy);
    if (mrc != CURLM_OK)
        goto fail;
    req->in_multi = 1;
    if (req->host >= 0) {
        req->counted = 1;
        c->hosts[req->host].active++;
    }
    return 0;

fail:
    return sift_err_set(err, mrc == CURLM_OUT_OF_MEMORY ? SIFT_ENOMEM : SIFT_EINTERNAL, "%s %s: %s",
                        req->method, req->url, curl_multi_strerror(mrc));
}

static void req_finish(sift_http_request *req);

/* Starts waiting requests of host h while it has free slots. */
static void start_waiting(sift_http_client *c, int h)
{
    struct host_slots *hs = &c->hosts[h];
    while (c->state == CLIENT_OPEN && hs->active < c->per_host && !q_empty(&hs->wait)) {
        sift_http_request *req = container_of(hs->wait.next, sift_http_request, wnode);
        q_remove(&req->wnode);
        req->queued = 0;
        sift_err e = {0};
        int rc = add_to_curl(c, req, &e);
        if (rc) {
            req->code = rc;
            req_set_msg(req, "%s", e.msg);
            drop_hook(req);
            req_finish(req);
        }
    }
}

/* Takes the request out of curl and queues its on_done. Never inside curl. */
static void req_finish(sift_http_request *req)
{
    sift_http_client *c = req->c;
    if (req->queued) {
        q_remove(&req->wnode);
        req->queued = 0;
    }
    int freed = -1; /* the host whose slot this request gives back */
    if (req->counted) {
        req->counted = 0;
        c->hosts[req->host].active--;
        freed = req->host;
    }
    if (req->easy) {
        long nconn = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK)
            c->stats.connections += (uint64_t)nconn;
        if (req->resp.status == 0) {
            long st = 0;
            if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK)
                req->resp.status = (int)st;
        }
        if (req->in_multi)
            curl_multi_remove_handle(c->multi, req->easy);
        req->in_multi = 0;
        easy_put(c, req->easy);
        req->easy = NULL;
    }
    /* after the removal, so that curl sees the connection free for the next */
    if (freed >= 0)
        start_waiting(c, freed);
    drop_hook(req);
    set_state(req, REQ_FINISHING);
    q_push(&c->done, &req->qnode);
    ensure_idle(c);
}

/* Keeps the message on_done will get (out of memory: the code's name). */
static void req_set_msg(sift_http_request *req, const char *fmt, ...)
{
    char msg[SIFT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sift_free(req->errmsg);
    req->errmsg = NULL;
    if (req->errbuf) /* room kept after curl's message (setup_easy) */
        memcpy(req->errbuf + CURL_ERROR_SIZE, msg, sizeof msg);
    else
        req->errmsg = sift_strdup(msg); /* out of memory: on_done names the code */
}

static void req_record(sift_http_request *req, int code, const char *fmt, va_list ap)
{
    char msg[SIFT_ERR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    req->code = code;
    req_set_msg(req, "%s %s: %s", req->method, req->url, msg);
}

/* Decides the request's outcome now and stops it: at once outside curl, right
 * after curl_multi_socket_action returns otherwise. */
static void req_abort(sift_http_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_abort(sift_http_request *req, int code, const char *fmt, ...)
{
    if (req->state != REQ_RUNNING)
        return;
    va_list ap;
    va_start(ap, fmt);
    req_record(req, code, fmt, ap);
    va_end(ap);
    drop_hook(req);
    if (req->c->in_curl > 0) {
        set_state(req, REQ_ABORTING);
        q_push(&req->c->aborting, &req->qnode);
    } else {
        req_finish(req);
    }
}

/* Like req_abort, but the request always leaves curl later, from drain: for
 * curl callbacks that curl may also call from curl_multi_add_handle or
 * curl_multi_remove_handle, where in_curl is 0 and removing a handle would
 * re-enter curl. */
static void req_abort_later(sift_http_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_abort_later(sift_http_request *req, int code, const char *fmt, ...)
{
    if (req->state != REQ_RUNNING)
        return;
    va_list ap;
    va_start(ap, fmt);
    req_record(req, code, fmt, ap);
    va_end(ap);
    drop_hook(req);
    set_state(req, REQ_ABORTING);
    q_push(&req->c->aborting, &req->qnode);
    ensure_idle(req->c);
}

static void req_free(sift_http_request *req)
{
    sift_free(req->url);
    sift_free(req->body_copy);
    sift_free(req->errbuf);
    sift_free(req->errmsg);
    curl_slist_free_all(req->hdrs);
    sift_buf_free(&req->resp.headers);
    sift_buf_free(&req->resp.bodybuf);
    sift_free(req);
}

/* Fires the queued on_done callbacks. Runs only where no curl frame and no
 * user callback of this client is on the stack. */
static void drain(sift_http_client *c)
{
    if (c->draining)
        return;
    c->draining = 1;
    while (!q_empty(&c->aborting) || !q_empty(&c->done)) {
        if (!q_empty(&c->aborting)) {
            /* stopped by req_abort_later; may be refilled by user code
             * below (a new request whose socket cannot be watched) */
            sift_http_request *req = container_of(c->aborting.next, sift_http_request, qnode);
            q_remove(&req->qnode);
            req_finish(req);
            continue;
        }
        sift_http_request *req = container_of(c->done.next, sift_http_request, qnode);
        q_remove(&req->qnode);
        q_remove(&req->node);
        set_state(req, REQ_DONE);
        if (!req->cb.on_data) {
            req->resp.body = req->resp.bodybuf.data ? req->resp.bodybuf.data : "";
            req->resp.body_len = req->resp.bodybuf.len;
        }
        req->resp.total_ms = (double)(uv_hrtime() - req->t0) / 1e6;
        c->stats.completed++;
        c->stats.in_flight--;
        sift_err e = {0};
        if (req->code) {
            e.code = req->code;
            const char *m = req->errmsg ? req->errmsg
                            : req->errbuf && req->errbuf[CURL_ERROR_SIZE]
                                ? req->errbuf + CURL_ERROR_SIZE
                                : sift_err_name(req->code);
            snprintf(e.msg, sizeof e.msg, "%s", m);
        }
        req->cb.on_done(req, req->code, &req->resp, &e, req->udata);
        req_free(req);
    }
    c->draining = 0;
    if (uv_is_active((uv_handle_t *)&c->idle))
        uv_idle_stop(&c->idle);
    if (c->state == CLIENT_CLOSING && q_empty(&c->reqs))
        close_finish(c);
}

static void on_idle(uv_idle_t *h)
{
    sift_http_client *c = container_of(h, sift_http_client, idle);
    drain(c);
}

static int map_curl_code(sift_http_request *req, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return SIFT_ETIMEDOUT;
    case CURLE_URL_MALFORMAT:
        return SIFT_EINVAL;
    case CURLE_FILESIZE_EXCEEDED:
        return SIFT_ETOOBIG;
    case CURLE_OUT_OF_MEMORY:
        return SIFT_ENOMEM;
    case CURLE_UNSUPPORTED_PROTOCOL: /* the scheme was checked at start: this is
                                        curl refusing an HTTP/0.9 reply */
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_TOO_MANY_REDIRECTS:
        return SIFT_EPROTO;
    default:
        return SIFT_EIO;
    }
}

/* Records the outcome of transfers curl has finished and takes them out. */
static void check_done(sift_http_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result;
        sift_http_request *req = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        if (!req)
            continue;
        if (req->state == REQ_ABORTING) {
            q_remove(&req->qnode); /* outcome already recorded */
        } else if (req->state == REQ_RUNNING) {
            req->code = map_curl_code(req, rc);
            if (req->code == SIFT_ETOOBIG) {
                req_set_msg(req, "%s %s: response body is over the %zu-byte limit (max_body_bytes)",
                            req->method, req->url, req->max_body);
            } else if (req->code != 0) {
                req_set_msg(req, "%s %s: %s", req->method, req->url,
                            req->errbuf && req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc));
            }
        } else {
            continue;
        }
        req_finish(req);
    }
}

/* Runs curl for one socket event or the timeout, then everything that had to
 * wait until curl returned. */
static void action(sift_http_client *c, curl_socket_t fd, int flags)
{
    int running = 0;
    c->in_curl++;
    CURLMcode mrc = curl_multi_socket_action(c->multi, fd, flags, &running);
    c->in_curl--;
    if (mrc != CURLM_OK)
        sift_error(NULL, "http: curl_multi_socket_action failed: %s", curl_multi_strerror(mrc));
    if (c->in_curl > 0)
        return;
    check_done(c);
    while (!q_empty(&c->aborting)) {
        sift_http_request *req = container_of(c->aborting.next, sift_http_request, qnode);
        q_remove(&req->qnode);
        req_finish(req);
    }
    drain(c);
}

/* ---- curl callbacks ------------------------------------------------------ */

static void poll_closed(uv_handle_t *h)
{
    sock_watch *w = container_of(h, sock_watch, poll);
    sift_http_client *c = w->c;
    sift_free(w);
    c->handles_open--;
    close_finish(c);
}

static void watch_close(sock_watch *w)
{
    sift_http_client *c = w->c;
    q_remove(&w->node);
    if (!w->idle)
        c->stats.sockets--;
    if (w->fd >= 0 && w->fd < c->nbyfd && c->byfd[w->fd] == w)
        c->byfd[w->fd] = NULL;
    uv_close((uv_handle_t *)&w->poll, poll_closed);
}

/* Curl closes a socket: its idle watcher goes first, while the fd is still
 * this socket's (closing a watcher removes its fd from epoll). A watcher
 * curl has not removed may still be handed back to us by curl (as socketp,
 * with CURL_POLL_REMOVE among others): it is only forgotten here, and
 * closed when curl removes it or the client closes, as before. */
static int on_close_socket(void *clientp, curl_socket_t s)
{
    sift_http_client *c = clientp;
    sock_watch *w = s >= 0 && s < c->nbyfd ? c->byfd[s] : NULL;
    if (w && w->idle)
        watch_close(w);
    else if (w)
        c->byfd[s] = NULL;
    return close(s);
}

/* The idle watcher of fd s, or NULL. */
static sock_watch *idle_watch(sift_http_client *c, curl_socket_t s)
{
    sock_watch *w = s >= 0 && s < c->nbyfd ? c->byfd[s] : NULL;
    return w && w->idle ? w : NULL;
}

static int remember_watch(sift_http_client *c, sock_watch *w)
{
    if (w->fd >= c->nbyfd) {
        int n = c->nbyfd ? c->nbyfd : 64;
        while (n <= w->fd)
            n *= 2;
        sock_watch **t = sift_realloc(c->byfd, (size_t)n * sizeof(sock_watch *));
        if (!t)
            return -1;
        memset(t + c->nbyfd, 0, (size_t)(n - c->nbyfd) * sizeof(sock_watch *));
        c->byfd = t;
        c->nbyfd = n;
    }
    c->byfd[w->fd] = w;
    return 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_watch *w = container_of(h, sock_watch, poll);
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    /* `w` may be closed during the action: do not touch it afterwards. */
    action(w->c, w->fd, flags);
}

/* A socket of `easy` cannot be watched. Returning -1 to curl would abort
 * every transfer of the multi handle (CURLMOPT_SOCKETFUNCTION), and with curl
 * 7.88 this one then hung until its timeout, so only this transfer is
 * stopped, with the cause. */
static void socket_failed(CURL *easy, int code, const char *what)
{
    sift_http_request *req = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req) != CURLE_OK || !req)
        return; /* curl's own handle (closing a connection): nothing waits on it */
    req_abort_later(req, code, "%s", what);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    sift_http_client *c = userp;
    sock_watch *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            curl_multi_assign(c->multi, s, NULL);
            if (s < c->nbyfd && c->byfd[s] == w) {
                uv_poll_stop(&w->poll);
                w->idle = 1;
                c->stats.sockets--;
            } else {
                watch_close(w);
            }
        }
        return 0;
    }
    if (!w && (w = idle_watch(c, s))) {
        w->idle = 0;
        c->stats.sockets++;
        curl_multi_assign(c->multi, s, w);
    }
    if (!w) {
        w = sift_calloc(1, sizeof(*w));
        if (!w) {
            socket_failed(easy, SIFT_ENOMEM, "out of memory watching the connection's socket");
            return 0;
        }
        if (uv_poll_init_socket(c->loop, &w->poll, s) != 0) {
            sift_error(NULL, "http: cannot watch socket %d", (int)s);
            sift_free(w);
            socket_failed(easy, SIFT_EIO, "cannot watch the connection's socket");
            return 0;
        }
        w->fd = s;
        w->c = c;
        q_init(&w->node);
        q_push(&c->socks, &w->node);
        c->handles_open++;
        c->stats.sockets++;
        curl_multi_assign(c->multi, s, w);
        remember_watch(c, w); /* without memory it is simply not kept when idle */
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&w->poll, ev, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    sift_http_client *c = container_of(t, sift_http_client, timer);
    action(c, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    sift_http_client *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else if (c->state != CLIENT_CLOSED)
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* A callback asked to stop: non-zero that is not a SIFT_E code means cancel. */
static void abort_by_callback(sift_http_request *req, int rc, const char *which)
{
    int code = rc < 0 && rc >= SIFT_EINTERNAL ? rc : SIFT_ECANCELED;
    req_abort(req, code, "aborted by %s (%s)", which, sift_err_name(code));
}

static int store_header(sift_http_request *req, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return 0; /* not a header line (or obsolete folding): ignored */
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    sift_buf *h = &req->resp.headers;
    size_t old = h->len;
    int rc = sift_buf_append(h, line, nlen);
    rc = rc ? rc : sift_buf_putc(h, '\0');
    rc = rc ? rc : sift_buf_append(h, v, (size_t)(end - v));
    rc = rc ? rc : sift_buf_putc(h, '\0');
    if (rc)
        h->len = old;
    return rc; /* SIFT_ETOOBIG over the limit, SIFT_ENOMEM */
}

static size_t on_curl_header(char *buf, size_t size, size_t nitems, void *userp)
{
    sift_http_request *req = userp;
    size_t len = size * nitems;
    if (req->state != REQ_RUNNING)
        return 0;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new header block (after a 1xx, or the first). */
        sift_buf_reset(&req->resp.headers);
        return len;
    }
    size_t n = len;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n > 0) {
        int rc = store_header(req, buf, n);
        if (rc == SIFT_ENOMEM) {
            req_abort(req, rc, "out of memory storing the response headers");
            return 0;
        }
        if (rc) {
            req_abort(req, SIFT_ETOOBIG, "response headers are over %zu bytes", HEADERS_MAX);
            return 0;
        }
        return len;
    }
    /* End of a header block. */
    long status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status / 100 == 1 || req->responded)
        return len; /* interim response, or trailers */
    req->responded = 1;
    req->resp.status = (int)status;
    if (req->cb.on_response) {
        int rc = req->cb.on_response(req, (int)status, &req->resp, req->udata);
        if (req->state != REQ_RUNNING)
            return 0; /* cancelled from inside the callback */
        if (rc != 0) {
            abort_by_callback(req, rc, "on_response");
            return 0;
        }
    }
    return len;
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *userp)
{
    sift_http_request *req = userp;
    size_t len = size * nmemb;
    if (req->state != REQ_RUNNING)
        return CURL_WRITEFUNC_ERROR;
    req->body_seen += len;
    if (req->max_body && req->body_seen > req->max_body) {
        req_abort(req, SIFT_ETOOBIG, "response body is over the %zu-byte limit (max_body_bytes)",
                  req->max_body);
        return CURL_WRITEFUNC_ERROR;
    }
    if (req->cb.on_data) {
        if (len == 0)
            return 0;
        int rc = req->cb.on_data(req, ptr, len, req->udata);
        if (req->state != REQ_RUNNING)
            return CURL_WRITEFUNC_ERROR;
        if (rc != 0) {
            abort_by_callback(req, rc, "on_data");
            return CURL_WRITEFUNC_ERROR;
        }
    } else if (sift_buf_append(&req->resp.bodybuf, ptr, len) != 0) {
        req_abort(req, SIFT_ENOMEM, "out of memory buffering the response body");
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

static void on_ctx_done(sift_ctx_hook *hook, const sift_err *cause)
{
    sift_http_request *req = container_of(hook, sift_http_request, hook);
    int code = cause && cause->code ? cause->code : SIFT_ECANCELED;
    if (req->own_ctx && code == SIFT_ETIMEDOUT &&
        (!req->parent_ctx || sift_ctx_err(req->parent_ctx) == 0)) {
        req_abort(req, code, "request timed out after %lld ms (timeout_ms)",
                  (long long)req->timeout_ms);
        return;
    }
    req_abort(req, code, "%s", cause && cause->msg[0] ? cause->msg : sift_err_name(code));
}

/* ---- public API ---------------------------------------------------------- */

sift_http_client *sift_http_client_new(uv_loop_t *loop, const sift_http_client_opts *opts,
                                       sift_err *err)
{
    static const sift_http_client_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        sift_err_set(err, SIFT_EINTERNAL, "libcurl failed to initialise: %s",
                     curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    sift_http_client *c = sift_calloc(1, sizeof(*c));
    if (!c)
        goto nomem;
    c->loop = loop;
    q_init(&c->reqs);
    q_init(&c->aborting);
    q_init(&c->done);
    q_init(&c->socks);
    c->pool_max = opts->easy_pool_max > 0 ? opts->easy_pool_max : 64;
    c->buffer_size = opts->buffer_size > 0 ? opts->buffer_size : 1024;
    c->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
    c->user_agent = sift_strdup(opts->user_agent ? opts->user_agent : "sift/0.1");
    c->pool = sift_calloc((size_t)c->pool_max, sizeof(*c->pool));
    c->multi = curl_multi_init();
    c->root = sift_ctx_new_root(loop);
    if (!c->user_agent || !c->pool || !c->multi || !c->root)
        goto nomem;
    long per_host = opts->max_host_connections > 0 ? opts->max_host_connections : 64;
    c->per_host = per_host;
    long total = opts->max_total_connections > 0 ? opts->max_total_connections : 1024;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, total);
    /* Keep as many idle connections as may be open, so that a burst of
     * requests can all be followed by reuse. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, total);
    uv_timer_init(loop, &c->timer);
    uv_idle_init(loop, &c->idle);
    c->handles_open = 2;
    return c;

nomem:
    sift_err_set(err, SIFT_ENOMEM, "out of memory creating the HTTP client");
    if (c) {
        if (c->multi)
            curl_multi_cleanup(c->multi);
        sift_ctx_release(c->root);
        sift_free(c->pool);
        sift_free(c->byfd);
        sift_free(c->user_agent);
        sift_free(c);
    }
    return NULL;
}

static void client_handle_closed(uv_handle_t *h)
{
    sift_http_client *c = h->data;
    c->handles_open--;
    close_finish(c);
}

/* The last step of closing, reached once no request is left: releases curl
 * and closes the uv handles; the memory goes in the last close callback. Also
 * called from each close callback to see whether that was the last one. */
static void close_finish(sift_http_client *c)
{
    if (c->state == CLIENT_CLOSING) {
        if (!q_empty(&c->reqs))
            return;
        client_set_state(c, CLIENT_CLOSED);
        for (int i = 0; i < c->npool; i++)
            curl_easy_cleanup(c->pool[i]);
        c->npool = 0;
        /* curl may report its sockets as removed while it cleans up; any it
         * does not report are closed below. */
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
        sift_ctx_release(c->root);
        c->root = NULL;
        while (!q_empty(&c->socks))
            watch_close(container_of(c->socks.next, sock_watch, node));
        uv_timer_stop(&c->timer);
        uv_idle_stop(&c->idle);
        c->timer.data = c;
        c->idle.data = c;
        uv_close((uv_handle_t *)&c->timer, client_handle_closed);
        uv_close((uv_handle_t *)&c->idle, client_handle_closed);
        return;
    }
    if (c->state == CLIENT_CLOSED && c->handles_open == 0) {
        void (*cb)(void *) = c->close_cb;
        void *udata = c->close_udata;
        sift_free(c->pool);
        sift_free(c->byfd);
        sift_free(c->user_agent);
        sift_free(c);
        if (cb)
            cb(udata);
    }
}

void sift_http_client_close(sift_http_client *c, void (*done)(void *udata), void *udata)
{
    if (!c || c->state != CLIENT_OPEN)
        return;
    client_set_state(c, CLIENT_CLOSING);
    c->close_cb = done;
    c->close_udata = udata;
    for (qlink *n = c->reqs.next; n != &c->reqs; n = n->next) {
        sift_http_request *req = container_of(n, sift_http_request, node);
        req_abort(req, SIFT_ECANCELED, "the HTTP client was closed");
    }
    /* Even with nothing in flight the rest of closing happens in drain, so
     * that it never runs inside a callback of ours. */
    uv_idle_start(&c->idle, on_idle);
}

void sift_http_client_stats(const sift_http_client *c, sift_http_stats *out)
{
    *out = c->stats;
    out->easy_pooled = c->npool;
}

static int scheme_ok(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* The curl options of one request. Returns 0 or a CURLcode. */
static CURLcode setup_easy(sift_http_client *c, sift_http_request *req, const char *body,
                           size_t body_len)
{
    CURL *e = req->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, req);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_BUFFERSIZE, req->buffer_size);
    SET(CURLOPT_USERAGENT, c->user_agent);
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    /* h2c connection reuse is unreliable in curl 7.88 (DESIGN.md). */
    SET(CURLOPT_HTTP_VERSION, strncasecmp(req->url, "http://", 7) == 0
                                  ? (long)CURL_HTTP_VERSION_1_1
                                  : (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_HEADERFUNCTION, on_curl_header);
    SET(CURLOPT_HEADERDATA, req);
    SET(CURLOPT_WRITEFUNCTION, on_curl_write);
    SET(CURLOPT_WRITEDATA, req);
    /* curl's message, then room for ours (req_set_msg): a request in curl
     * can report its failure without another allocation */
    if (!req->errbuf && !(req->errbuf = sift_malloc(CURL_ERROR_SIZE + SIFT_ERR_MSG_MAX)))
        return CURLE_OUT_OF_MEMORY;
    req->errbuf[0] = '\0';
    req->errbuf[CURL_ERROR_SIZE] = '\0';
    SET(CURLOPT_ERRORBUFFER, req->errbuf);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, c);
    if (req->hdrs)
        SET(CURLOPT_HTTPHEADER, req->hdrs);
    if (!req->cb.on_data && req->max_body)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);

    int is_get = strcasecmp(req->method, "GET") == 0;
    int is_head = strcasecmp(req->method, "HEAD") == 0;
    int is_post = strcasecmp(req->method, "POST") == 0;
    if (is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (body || is_post) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SET(CURLOPT_POSTFIELDS, body ? body : "");
        if (!is_post)
            SET(CURLOPT_CUSTOMREQUEST, req->method);
    } else if (is_get) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, req->method);
    }
#undef SET
    return rc;
}

int sift_http_request_start(sift_http_client *c, sift_ctx *ctx, const sift_http_req_opts *o,
                            const sift_http_callbacks *cb, void *udata, sift_http_request **out,
                            sift_err *err)
{
    sift_err local = {0};
    if (!err)
        err = &local;
    if (out)
        *out = NULL;
    if (!o || !o->url || !cb || !cb->on_done)
        return sift_err_set(err, SIFT_EINVAL, "HTTP request needs a URL and an on_done callback");
    if (c->state != CLIENT_OPEN)
        return sift_err_set(err, SIFT_ESTATE, "HTTP client is closing; request to %s refused",
                            o->url);
    if (!scheme_ok(o->url))
        return sift_err_set(err, SIFT_EINVAL, "URL %s: only http:// and https:// are supported",
                            o->url);
    if (o->method && (strlen(o->method) >= sizeof(((sift_http_request *)0)->method) ||
                      strpbrk(o->method, " \r\n")))
        return sift_err_set(err, SIFT_EINVAL, "HTTP method \"%.20s\" is not valid", o->method);
    for (const char *const *h = o->headers; h && *h; h++) {
        /* A line break would smuggle extra headers or a second request. */
        if (strpbrk(*h, "\r\n") || !strchr(*h, ':'))
            return sift_err_set(err, SIFT_EINVAL,
                                "request header \"%.60s\" must be one \"Name: value\" line", *h);
    }
    if (ctx && sift_ctx_err(ctx) != 0)
        return sift_err_copy(err, sift_ctx_cause(ctx));

    sift_http_request *req = sift_calloc(1, sizeof(*req));
    if (!req)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory starting a request to %s", o->url);
    req->c = c;
    req->state = REQ_RUNNING;
    req->cb = *cb;
    req->udata = udata;
    q_init(&req->node);
    q_init(&req->qnode);
    const char *method = o->method ? o->method : o->body || o->build_body ? "POST" : "GET";
    snprintf(req->method, sizeof(req->method), "%s", method);
    sift_buf_init(&req->resp.headers, HEADERS_MAX);
    sift_buf_init(&req->resp.bodybuf, 0);
    req->max_body = o->max_body_bytes;
    req->buffer_size = o->buffer_size > 0 ? o->buffer_size : c->buffer_size;
    if (!cb->on_data && !req->max_body)
        req->max_body = BUFFERED_BODY_DEFAULT;
    req->url = sift_strdup(o->url);
    if (!req->url)
        goto nomem;
    req->resp.url = req->url;

    const char *body = o->build_body ? NULL : o->body;
    if (body && !o->body_borrowed) {
        req->body_copy = sift_malloc(o->body_len ? o->body_len : 1);
        if (!req->body_copy)
            goto nomem;
        memcpy(req->body_copy, o->body, o->body_len);
        body = req->body_copy;
    }
    for (const char *const *h = o->headers; h && *h; h++) {
        struct curl_slist *l = curl_slist_append(req->hdrs, *h);
        if (!l)
            goto nomem;
        req->hdrs = l;
    }
    if (body || o->build_body) {
        /* No "Expect: 100-continue" round trip before small bodies. */
        struct curl_slist *l = curl_slist_append(req->hdrs, "Expect:");
        if (!l)
            goto nomem;
        req->hdrs = l;
    }

    sift_ctx *hook_ctx = ctx;
    /* a context whose deadline comes first already bounds the request: no
     * context of our own then (a context per request, thousands waiting in
     * the host queues; the tools' contexts have the same timeout) */
    int64_t left = ctx ? sift_ctx_remaining_ms(ctx) : SIFT_NO_DEADLINE;
    if (o->timeout_ms > 0 && (left == SIFT_NO_DEADLINE || left > o->timeout_ms)) {
        req->timeout_ms = o->timeout_ms;
        req->parent_ctx = ctx;
        req->own_ctx = sift_ctx_new_timeout(ctx ? ctx : c->root, o->timeout_ms);
        if (!req->own_ctx)
            goto nomem;
        hook_ctx = req->own_ctx;
    }

    req->body = body;
    req->body_len = body ? o->body_len : 0;
    req->build_body = o->build_body;
    if (hook_ctx && sift_ctx_add_hook(hook_ctx, &req->hook, on_ctx_done) != 0) {
        sift_err_copy(err, sift_ctx_cause(hook_ctx));
        goto fail;
    }
    req->host = host_of(c, req->url);
    q_init(&req->wnode);
    if (req->host >= 0 && c->hosts[req->host].active >= c->per_host) {
        q_push(&c->hosts[req->host].wait, &req->wnode);
        req->queued = 1;
    } else {
        if (add_to_curl(c, req, err) != 0)
            goto fail;
    }
    req->t0 = uv_hrtime();
    q_push(&c->reqs, &req->node);
    c->stats.requests++;
    c->stats.in_flight++;
    if (out)
        *out = req;
    return 0;

nomem:
    sift_err_set(err, SIFT_ENOMEM, "out of memory starting a request to %s", o->url);
fail:
    drop_hook(req);
    if (req->easy)
        easy_put(c, req->easy);
    req_free(req);
    return err->code ? err->code : SIFT_EINTERNAL;
}

void sift_http_request_cancel(sift_http_request *req, int code)
{
    if (!req)
        return;
    if (code >= 0)
        code = SIFT_ECANCELED;
    req_abort(req, code, "cancelled (%s)", sift_err_name(code));
}

void *sift_http_request_udata(const sift_http_request *req)
{
    return req->udata;
}

const char *sift_http_response_header(const sift_http_response *resp, const char *name)
{
    const char *p = resp->headers.data;
    const char *end = p ? p + resp->headers.len : NULL;
    while (p && p < end) {
        const char *v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

int sift_http_response_header_at(const sift_http_response *resp, size_t i, const char **name,
                                 const char **value)
{
    const char *p = resp->headers.data;
    const char *end = p ? p + resp->headers.len : NULL;
    for (size_t k = 0; p && p < end; k++) {
        const char *v = p + strlen(p) + 1;
        if (k == i) {
            *name = p;
            *value = v;
            return 0;
        }
        p = v + strlen(v) + 1;
    }
    return SIFT_ENOTFOUND;
}

char *sift_http_response_take_body(sift_http_response *resp, size_t *len)
{
    if (!resp->body)
        return NULL;
    char *b = sift_buf_detach(&resp->bodybuf, len);
    resp->body = "";
    resp->body_len = 0;
    return b;
}
