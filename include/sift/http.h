/* HTTP client: libcurl's multi-socket API driven by a uv loop.
 *
 * One sift_http_client per uv loop (per worker thread). Each socket curl opens
 * is watched with a uv_poll, curl's single timeout with one uv_timer, so
 * transfers never block the loop or a thread-pool thread. The client keeps
 * HTTP/1.1 keep-alive connections in curl's connection cache, bounded per
 * host and in total (requests over the per-host bound wait in curl's queue
 * for a free connection), and recycles curl easy handles in a small pool.
 * Plain http:// URLs are forced to HTTP/1.1, because curl 7.88 does not reuse
 * h2c connections reliably; https:// may negotiate HTTP/2. Only http and
 * https are allowed; redirects are not followed.
 *
 * A request is bound to a sift_ctx: when the context is done (cancelled,
 * deadline passed, sibling failed) the transfer is aborted at once and the
 * request completes with the context's error.
 *
 * Callbacks and their guarantees:
 *  - on_response (optional) fires once, when the headers of the final
 *    response (not a 1xx) are in.
 *  - on_data (optional) receives the body as it arrives. When it is NULL the
 *    body is buffered (bounded by max_body_bytes) and handed over in on_done.
 *  - on_done fires EXACTLY ONCE for every request that
 *    sift_http_request_start accepted (returned 0), whatever happens:
 *    completion, error, cancellation, client close. It always fires from the
 *    loop, never from inside sift_http_request_start, sift_ctx_cancel or
 *    sift_http_request_cancel: a cancellation only records the error and
 *    aborts the transfer, and on_done follows at a safe point of the loop
 *    (the same loop iteration or the next), where the callback may do
 *    anything (start requests, cancel contexts, close the client).
 *  - After a cancellation or an abort no on_response or on_data fires for
 *    that request any more; only the single on_done.
 *  - The request object is freed by the client right after on_done returns:
 *    do not use it after that. Never free it yourself.
 *
 * Codes given to on_done:
 *   0               the HTTP exchange completed, whatever the status (4xx and
 *                   5xx included: look at resp->status);
 *   SIFT_ECANCELED  the context was cancelled, sift_http_request_cancel was
 *                   called, the client was closed, or on_response/on_data
 *                   returned non-zero without a code of its own (a callback
 *                   returning a negative SIFT_E code gives that code);
 *   SIFT_ETIMEDOUT  the request's timeout_ms or the context's deadline passed;
 *   SIFT_EFAILED    the context was cancelled because a sibling task failed
 *                   (generally: the context's cause code is passed through);
 *   SIFT_EIO        connection failed: refused, reset, closed before the end
 *                   of the body, name resolution failed;
 *   SIFT_EPROTO     the peer did not speak HTTP (garbage instead of a status
 *                   line, broken chunked encoding, bad content encoding);
 *   SIFT_ETOOBIG    the body is over max_body_bytes, or the headers over
 *                   64 KiB;
 *   SIFT_EINVAL     the URL is malformed or uses another scheme;
 *   SIFT_ENOMEM     out of memory while buffering.
 * The sift_err given with it has a message naming the URL and the cause.
 *
 * Not thread-safe: a client and its requests belong to the loop's thread. */
#ifndef SIFT_HTTP_H
#define SIFT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/err.h"

typedef struct sift_http_client sift_http_client;
typedef struct sift_http_request sift_http_request;

/* Client settings; zero-initialise and set what you need. */
typedef struct sift_http_client_opts {
    long max_host_connections;  /* per host (CURLMOPT_MAX_HOST_CONNECTIONS); 0: 64 */
    long max_total_connections; /* all hosts (CURLMOPT_MAX_TOTAL_CONNECTIONS); 0: 1024 */
    long buffer_size;           /* curl receive buffer per transfer (CURLOPT_BUFFERSIZE);
                                   0: 1024, which halves curl's per-transfer memory */
    long connect_timeout_ms;    /* TCP (+TLS) connect timeout; 0: 10000 */
    int easy_pool_max;          /* idle curl easy handles kept for reuse; 0: 64 */
    const char *user_agent;     /* copied; NULL: "sift/0.1" */
} sift_http_client_opts;

/* Counters, for tests and metrics. */
typedef struct sift_http_stats {
    uint64_t requests;    /* requests accepted by sift_http_request_start */
    uint64_t completed;   /* on_done calls made */
    uint64_t connections; /* new connections opened (sum of CURLINFO_NUM_CONNECTS) */
    int in_flight;        /* requests whose on_done has not fired yet */
    int sockets;          /* sockets curl currently asks us to watch */
    int easy_pooled;      /* idle easy handles in the pool */
} sift_http_stats;

/* Creates a client on `loop`. NULL on failure, with the reason in err. */
sift_http_client *sift_http_client_new(uv_loop_t *loop, const sift_http_client_opts *opts,
                                       sift_err *err);

/* Closes the client asynchronously: every request still in flight is aborted
 * and its on_done fires once with SIFT_ECANCELED; then all connections and uv
 * handles are closed, and finally done(udata) fires (done may be NULL), after
 * which the client's memory is gone. Starting requests after close fails with
 * SIFT_ESTATE. Calling close twice is a bug (ignored). May be called from any
 * callback of this client, including on_done. */
void sift_http_client_close(sift_http_client *c, void (*done)(void *udata), void *udata);

/* Fills `out` with the client's counters. */
void sift_http_client_stats(const sift_http_client *c, sift_http_stats *out);

/* The response as known so far: status and headers from on_response on,
 * the body (buffered mode only) in on_done. Valid only during the callback
 * it is passed to. */
typedef struct sift_http_response {
    int status; /* HTTP status; 0 when no response arrived */
    /* buffered mode: the body, NUL-terminated (the NUL is not counted), ""
     * when empty, what had arrived when the request failed; NULL in
     * streaming mode */
    const char *body;
    size_t body_len;
    const char *url;  /* the request URL */
    double total_ms;  /* time from start to completion, in on_done */
    sift_buf headers; /* private: "name\0value\0" pairs of the final response */
    sift_buf bodybuf; /* private */
} sift_http_response;

/* The value of the first response header called `name` (case-insensitive),
 * with surrounding blanks removed, or NULL when absent. */
const char *sift_http_response_header(const sift_http_response *resp, const char *name);

/* The i-th response header (0-based): sets *name and *value and returns 0, or
 * returns SIFT_ENOTFOUND past the end. */
int sift_http_response_header_at(const sift_http_response *resp, size_t i, const char **name,
                                 const char **value);

/* Takes the buffered body out of the response (free it with sift_free), so
 * it can outlive on_done without a copy. Returns NULL in streaming mode and
 * when out of memory; an empty body is returned as a fresh "". */
char *sift_http_response_take_body(sift_http_response *resp, size_t *len);

/* Request callbacks. `udata` is what was given to sift_http_request_start. */
typedef struct sift_http_callbacks {
    /* Headers of the final response are in. Return 0 to go on, or non-zero
     * to abort (a negative SIFT_E code becomes on_done's code, anything else
     * SIFT_ECANCELED). Optional. */
    int (*on_response)(sift_http_request *req, int status, const sift_http_response *resp,
                       void *udata);
    /* A piece of the body (`len` > 0). Same return convention. NULL: buffer
     * the body. */
    int (*on_data)(sift_http_request *req, const char *chunk, size_t len, void *udata);
    /* The end, exactly once (see above). `resp` is never NULL; `err` has the
     * message when code != 0 (code == err->code). Required. */
    void (*on_done)(sift_http_request *req, int code, sift_http_response *resp, const sift_err *err,
                    void *udata);
} sift_http_callbacks;

/* What to send. */
typedef struct sift_http_req_opts {
    const char *method;         /* "GET", "POST", "PUT", "DELETE", "HEAD", ...; NULL: GET, or
                                   POST when there is a body */
    const char *url;            /* http:// or https:// (copied) */
    const char *const *headers; /* NULL-terminated "Name: value" strings (copied), or NULL */
    const char *body;           /* request body, or NULL */
    size_t body_len;
    int body_borrowed; /* 0: the body is copied at start; 1: it is used in place
                          and must stay valid and unchanged until on_done */
    /* Or (then body, body_len and body_borrowed are ignored, and the method
     * defaults to POST): the body is built only when the request goes to
     * curl, so a request waiting in its host's queue for a connection holds
     * no body. Called at most once per request, with the udata given to
     * start: inside sift_http_request_start when a connection slot is free,
     * else from the loop when the request leaves the queue (never if it is
     * cancelled first). It sets *body and *len to a body that stays valid and
     * unchanged until on_done, and returns 0; or returns a negative SIFT_E
     * code with err set: sift_http_request_start then fails with it, or, when
     * the request had waited, on_done fires with it. */
    int (*build_body)(void *udata, const char **body, size_t *len, sift_err *err);
    /* Whole-request timeout counted from start, time queued for a connection
     * and body streaming included; 0: none. It is enforced with a child
     * context of `ctx` (so the context's deadline caps it either way; when
     * that deadline comes first, no child is made); curl's
     * own CURLOPT_TIMEOUT is not used because curl does not time out a
     * transfer that is still queued for a connection. */
    int64_t timeout_ms;
    size_t max_body_bytes; /* response body limit. Buffered mode: 0 means 16 MiB;
                              streaming mode: 0 means no limit */
    long buffer_size;      /* curl receive buffer for this transfer; 0: the client's. A
                              long stream (a model's answer) reads fewer, larger chunks
                              with a bigger one; small answers need no more than 1 KB */
} sift_http_req_opts;

/* Starts a request under `ctx` (may be NULL: no cancellation, no deadline).
 * On success returns 0, sets *out (if out is non-NULL) and on_done will fire
 * exactly once later. On failure returns a negative code with the reason in
 * err, and no callback will fire: SIFT_EINVAL (no URL, no on_done, a
 * scheme other than http/https, a method that is not one token of at most 15
 * bytes, a header that is not one "Name: value" line),
 * SIFT_ESTATE (client closing), SIFT_ENOMEM, or the context's code when it is
 * already done. */
int sift_http_request_start(sift_http_client *c, sift_ctx *ctx, const sift_http_req_opts *opts,
                            const sift_http_callbacks *cb, void *udata, sift_http_request **out,
                            sift_err *err);

/* Aborts a request that has not completed yet: on_done fires once later with
 * SIFT_ECANCELED (or the code given, if negative) and nothing else fires. A
 * no-op when the request is already finishing. Never call it after on_done
 * returned (the request is gone). */
void sift_http_request_cancel(sift_http_request *req, int code);

/* The udata given at start. */
void *sift_http_request_udata(const sift_http_request *req);

#endif
