/* The HTTP server: h2o on libuv, N worker threads, streaming responses (SSE).
 *
 * Threads and loops. sift_server_start binds N listening sockets on the same
 * host:port with SO_REUSEPORT and starts N worker threads. Each worker has its
 * own uv loop, its own h2o context and its own root sift_ctx; the kernel
 * spreads new connections over the N sockets. A request lives on one worker
 * from its first byte to its last: every handler, every call on an exchange
 * and every callback the server makes for that exchange runs on that worker's
 * loop thread, so nothing on the request path takes a lock. The only
 * functions callable from other threads are sift_server_stop,
 * sift_server_stats_get and sift_server_port.
 *
 * Exchanges. A handler receives a sift_http_exchange: the request (method,
 * path, query, headers, complete body, all copied and valid as long as the
 * exchange is) and the response under construction. It answers at once or
 * later from the same loop, either in one piece (sift_http_respond,
 * sift_http_respond_error) or as a stream (sift_http_stream_start, then
 * sift_http_stream_write / sift_http_sse_send, then sift_http_stream_end or
 * sift_http_stream_abort).
 *
 * OWNERSHIP RULE. Every exchange given to a handler must be finished exactly
 * once by the handler's code with one of: sift_http_respond,
 * sift_http_respond_error, sift_http_stream_end, sift_http_stream_abort (or
 * sift_http_exchange_release, which is stream_abort under another name). Until
 * that call the pointer stays valid, whatever the client does; after it, the
 * pointer must not be used again (the memory is released later, at a safe
 * point, once h2o is done with the request). The finishing calls release the
 * exchange even when they return an error (for instance SIFT_ECANCELED
 * because the client has gone).
 *
 * Cancellation. sift_http_ctx(x) is a child of the worker's root context. It
 * is cancelled with SIFT_ECANCELED "client disconnected" when the client goes
 * away before the response is finished (detected when a write fails, when h2o
 * drops the request, or by a periodic check of connections whose response is
 * idle), and with SIFT_ECANCELED "server shutting down" when a graceful
 * shutdown runs out of time. Register a hook on it to stop the work in flight;
 * from the hook it is fine to call the finishing function. After the client
 * has gone, writes return SIFT_ECANCELED and the finishing call still has to
 * be made. Do not release this context: it belongs to the exchange. (A client
 * that half-closes its side after sending the request counts as gone, as in
 * most servers.)
 *
 * Errors. Everything the server answers itself is a JSON error body
 * {"error":{"code":"...","message":"..."}}: 404 not_found, 405
 * method_not_allowed (with an Allow header), 413 too_large (a body over
 * opts.max_body_bytes, refused before it is read; a chunked body is refused
 * as soon as it reaches the limit), 400 invalid_argument for a broken body
 * encoding. Only a request line or headers h2o cannot parse at all get h2o's
 * own plain-text 400. HTTP/1.x only (h2c upgrade is off), so one connection
 * carries one exchange at a time.
 *
 * Backpressure. h2o is given new bytes only when it has finished writing the
 * previous ones. Bytes written in between are buffered per exchange, up to
 * opts.stream_buffer_limit bytes in total (buffered + being written). A write
 * that does not fit writes nothing and returns SIFT_EBUSY; the producer then
 * asks for a drain callback (sift_http_stream_on_drain), which fires once the
 * buffered bytes have fallen to half the limit or less. A slow reader
 * therefore never makes the server buffer more than the limit per stream.
 *
 * Shutdown. sift_server_stop (any thread, or SIGINT/SIGTERM with
 * sift_server_run_until_signal) closes the listening sockets, makes h2o close
 * connections after their current response, closes idle keep-alive
 * connections, and gives requests in flight opts.shutdown_grace_ms to finish.
 * Then every worker's root context is cancelled ("server shutting down"), the
 * exchanges left are aborted and their connections closed, the
 * on_worker_stop hooks run, and the threads exit. A worker's loop runs until
 * every handle on it has closed, so handles tied to a request (a producer's
 * timer) must be closed when the request's context is cancelled. Exchanges
 * user code still holds when a worker's loop has ended are freed by the
 * server. */
#ifndef SIFT_SERVER_H
#define SIFT_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/err.h"

typedef struct sift_server sift_server;
typedef struct sift_server_worker sift_server_worker;
typedef struct sift_http_exchange sift_http_exchange;

/* Handles one request on a worker's loop; `udata` is what was given to
 * sift_server_route. See the ownership rule above. */
typedef void (*sift_http_handler)(sift_http_exchange *x, void *udata);

/* Runs on the worker's thread, with its loop, before the worker accepts
 * connections (start) or after its last connection has closed and before
 * its loop is closed (stop). A start hook returning non-zero (a SIFT_E code)
 * makes sift_server_start fail. A stop hook must close the handles it
 * created on the loop. */
typedef int (*sift_server_worker_start_fn)(sift_server_worker *w, uv_loop_t *loop, void *udata);
typedef void (*sift_server_worker_stop_fn)(sift_server_worker *w, uv_loop_t *loop, void *udata);

typedef struct sift_server_opts {
    const char *host;           /* IPv4/IPv6 literal or "localhost"; NULL: 127.0.0.1 */
    int port;                   /* 0: any free port (see sift_server_port) */
    int workers;                /* <= 0: number of CPU cores */
    size_t max_body_bytes;      /* request body limit; 0: 1 MB. Over it: 413 */
    size_t stream_buffer_limit; /* per-stream buffered bytes; 0: 256 KB */
    int shutdown_grace_ms;      /* 0: 5000; < 0: no grace (cancel at once) */
    int disconnect_check_ms;    /* period of the idle-client check; 0: 500; < 0: off */
    int backlog;                /* listen backlog; 0: 4096 */
    sift_server_worker_start_fn on_worker_start; /* optional */
    sift_server_worker_stop_fn on_worker_stop;   /* optional */
    void *worker_udata;                          /* passed to both hooks */
} sift_server_opts;

/* Counters since the server started; read from any thread. */
typedef struct sift_server_stats {
    uint64_t requests_total;  /* requests received (including rejected ones) */
    uint64_t requests_active; /* exchanges whose response is not finished */
    uint64_t streams_active;  /* exchanges streaming a response */
    uint64_t too_large;       /* requests refused with 413 */
    uint64_t disconnects;     /* clients gone before their response finished */
    uint64_t connections;     /* open client connections */
} sift_server_stats;

/* A server with the given options (NULL: all defaults), not yet listening.
 * Returns NULL with `err` set on bad options or no memory. */
sift_server *sift_server_new(const sift_server_opts *opts, sift_err *err);

/* Adds a route; only before sift_server_start. `method` is an HTTP method
 * ("GET", "POST", ...) or NULL for any method. A `path` ending in '*' is a
 * prefix route ("/v1/products/" followed by a star matches "/v1/products/42"; the part after
 * the prefix is sift_http_route_rest); otherwise the path must match
 * exactly. Lookup: exact routes first, then the longest matching prefix. A
 * path that matches but not with this method gets 405, no match gets 404,
 * both with a JSON error body. Returns 0, SIFT_EINVAL, SIFT_ENOMEM or
 * SIFT_ESTATE (already started). */
int sift_server_route(sift_server *s, const char *method, const char *path, sift_http_handler fn,
                      void *udata);

/* Raises the open-file soft limit to the hard limit (logging it when low),
 * ignores SIGPIPE, binds every worker's listening socket, starts the
 * workers and returns once all of them are accepting (or one failed, in
 * which case everything started is torn down). Errors: SIFT_EIO (bind or
 * listen failed, e.g. the port is in use), SIFT_ESTATE (called twice), a
 * worker start hook's code, SIFT_ENOMEM. */
int sift_server_start(sift_server *s, sift_err *err);

/* The port the server listens on (the chosen one when opts.port was 0); 0
 * before start. */
int sift_server_port(const sift_server *s);

/* Asks the server to shut down gracefully (see the header comment) and
 * returns at once. Callable from any thread, also from a handler, any
 * number of times. */
void sift_server_stop(sift_server *s);

/* Waits until every worker thread has exited. Must not be called from a
 * worker thread. Returns at once if the server was never started. */
void sift_server_wait(sift_server *s);

/* Starts nothing new: waits for SIGINT or SIGTERM (or for the server to stop
 * by itself through sift_server_stop), stops the server gracefully and
 * waits for it. Returns the signal number that stopped it, or 0. For the CLI's
 * main thread, after sift_server_start. */
int sift_server_run_until_signal(sift_server *s);

/* Stops the server if running, waits for the workers and frees everything.
 * NULL is a no-op. Must not be called from a worker thread. */
void sift_server_free(sift_server *s);

/* A snapshot of the counters. */
void sift_server_stats_get(const sift_server *s, sift_server_stats *out);

/* Worker accessors (for start/stop hooks and handlers). The worker data is a
 * pointer for per-loop resources (an HTTP client, a store connection), set
 * typically by the start hook. sift_server_worker_ctx is the worker's root
 * context: cancelled when the shutdown grace period is over. */
int sift_server_worker_index(const sift_server_worker *w);
uv_loop_t *sift_server_worker_loop(sift_server_worker *w);
void sift_server_worker_set_data(sift_server_worker *w, void *data);
void *sift_server_worker_data(const sift_server_worker *w);
sift_ctx *sift_server_worker_ctx(sift_server_worker *w);
sift_server *sift_server_worker_server(sift_server_worker *w);

/* ---- The request ---- */

/* Method ("GET"), path without the query ("/v1/search"; normalised: no dot
 * segments), query string without '?' ("" if none), the part of the path
 * after a prefix route's prefix ("" for exact routes). NUL-terminated,
 * valid as long as the exchange. */
const char *sift_http_method(const sift_http_exchange *x);
const char *sift_http_path(const sift_http_exchange *x);
const char *sift_http_query(const sift_http_exchange *x);
const char *sift_http_route_rest(const sift_http_exchange *x);

/* The path as the client sent it, before percent-decoding and dot-segment
 * removal, without the query (not NUL-terminated: `len` bytes). For a handler
 * that must decode a segment itself ("%2F" in a SKU is not a separator, "%00"
 * is not the end). NULL with *len = 0 once the client has gone; valid while
 * the handler runs. */
const char *sift_http_raw_path(const sift_http_exchange *x, size_t *len);

/* The first request header named `name` (case-insensitive), or NULL. `len`
 * (may be NULL) receives its length; the value is also NUL-terminated. */
const char *sift_http_header(const sift_http_exchange *x, const char *name, size_t *len);

/* The complete request body, NUL-terminated (the NUL is not counted); ""
 * with length 0 when there is none. */
const char *sift_http_body(const sift_http_exchange *x, size_t *len);

/* Value of query parameter `name` in the raw query string, copied and
 * percent-decoded ('+' as space) into buf (NUL-terminated, truncated to
 * bufsize-1). Returns the decoded length, or -1 when absent. */
int sift_http_query_param(const sift_http_exchange *x, const char *name, char *buf, size_t bufsize);

/* The worker's loop, the request's context (see above), the worker and its
 * data, and the server. */
uv_loop_t *sift_http_loop(sift_http_exchange *x);
sift_ctx *sift_http_ctx(sift_http_exchange *x);
sift_server_worker *sift_http_worker(sift_http_exchange *x);
void *sift_http_worker_data(sift_http_exchange *x);

/* ---- Responding in one piece ---- */

/* Adds a response header (copied) before the response starts. Returns 0,
 * SIFT_ESTATE after the response started, SIFT_ECANCELED when the client
 * has gone, SIFT_EINVAL for a name or value with CR/LF. */
int sift_http_set_header(sift_http_exchange *x, const char *name, const char *value);

/* Sends the whole response (body copied; content_type NULL: none) and
 * finishes the exchange. Returns 0, SIFT_ECANCELED (client gone), SIFT_ESTATE
 * (a response was already started; the exchange is aborted). */
int sift_http_respond(sift_http_exchange *x, int status, const char *content_type, const void *body,
                      size_t len);

/* sift_http_respond with application/json body
 * {"error":{"code":"<code>","message":"<message>"}} (both escaped). */
int sift_http_respond_error(sift_http_exchange *x, int status, const char *code,
                            const char *message);

/* ---- Streaming ---- */

/* Starts a streamed response and sends the status and headers right away.
 * For "text/event-stream" it adds cache-control: no-cache and
 * x-accel-buffering: no. Returns 0, SIFT_ECANCELED, SIFT_ESTATE. */
int sift_http_stream_start(sift_http_exchange *x, int status, const char *content_type);

/* Queues bytes (copied) for the stream. Returns 0; SIFT_EBUSY when they do
 * not fit under the buffer limit now (nothing written; see
 * sift_http_stream_on_drain); SIFT_ETOOBIG when len alone exceeds the limit;
 * SIFT_ECANCELED once the client has gone or the server is shutting down;
 * SIFT_ESTATE before stream_start or after the end. */
int sift_http_stream_write(sift_http_exchange *x, const void *data, size_t len);

/* Writes one Server-Sent Event: "event: <event>\n" (if event is not NULL),
 * then one "data: <line>\n" per line of data (split on \n, \r\n or \r; empty
 * data gives one empty data line), then "\n". All or nothing, with the same
 * results as sift_http_stream_write; SIFT_EINVAL if event has a line break. */
int sift_http_sse_send(sift_http_exchange *x, const char *event, const char *data, size_t len);

/* The same event formatting without an exchange: appends one event to `out`
 * (all or nothing; the buffer's limit applies). sift_http_sse_size is the
 * number of bytes it appends. Returns 0, SIFT_EINVAL (line break in the
 * event name), SIFT_ETOOBIG, SIFT_ENOMEM. */
size_t sift_http_sse_size(const char *event, const char *data, size_t len);
int sift_http_sse_format(sift_buf *out, const char *event, const char *data, size_t len);

/* Writes an SSE comment line (": <text>\n\n"), e.g. as a keep-alive. */
int sift_http_sse_comment(sift_http_exchange *x, const char *text);

/* Bytes accepted for this stream that h2o has not yet finished writing. */
size_t sift_http_stream_buffered(const sift_http_exchange *x);

/* The per-stream buffer limit (opts.stream_buffer_limit). */
size_t sift_http_stream_limit(const sift_http_exchange *x);

/* Calls cb(x, udata) once, on the loop, after the buffered bytes have fallen
 * to half the limit or less; later writes have room again. One callback at a
 * time (a new one replaces the old). If the client goes away the callback is
 * not called: the context's cancellation says so instead. Returns 0,
 * SIFT_ECANCELED, SIFT_ESTATE (not streaming). If there is already room, the
 * callback runs on the next loop iteration. */
int sift_http_stream_on_drain(sift_http_exchange *x, void (*cb)(sift_http_exchange *x, void *udata),
                              void *udata);

/* Finishes the stream after the bytes already written have been sent.
 * Finishes the exchange (see the ownership rule). Returns 0, SIFT_ECANCELED
 * (client gone), SIFT_ESTATE (stream not started: a 500 error is sent). */
int sift_http_stream_end(sift_http_exchange *x);

/* Drops the connection now, without finishing the response (the client
 * sees a truncated response or a closed connection). Finishes the exchange.
 * Valid in any state. */
void sift_http_stream_abort(sift_http_exchange *x);

/* The same as sift_http_stream_abort; for code that only wants to let go. */
void sift_http_exchange_release(sift_http_exchange *x);

#endif
