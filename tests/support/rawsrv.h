/* rawsrv: a tiny scriptable HTTP/1.1 server for client tests.
 *
 * It listens on 127.0.0.1 on a port the kernel picks, on the uv loop it is
 * given (the test's own loop, so no threads and no locks), speaks just enough
 * HTTP/1.1 for curl (keep-alive, Content-Length request bodies), and behaves
 * according to the request path:
 *
 *   /hello                 200 "hello", keep-alive
 *   /echo                  200, the request body back; X-Method: the method,
 *                          X-Content-Type: the request's Content-Type
 *   /status?code=N&retry_after=S   status N with Retry-After: S (if given)
 *   /sse?n=N&delay=MS&hang=1       text/event-stream, chunked: N events
 *                          "data: {\"i\":K}\n\n", one every MS ms, then
 *                          "data: [DONE]\n\n" and the end; with hang=1 the
 *                          stream stays open after the N events instead
 *   /close-early           announces Content-Length 1000, sends 10 bytes,
 *                          closes the connection
 *   /garbage               sends a line that is not HTTP, then closes
 *   /delay?ms=MS           waits MS ms before the headers, then 200 "hello"
 *   /big?n=N               200 with N bytes of body (Content-Length)
 *   /bigchunked?n=N        the same, chunked (no length known in advance)
 *   /close                 200 "bye" with Connection: close, then closes
 *   anything else          404
 *
 * It counts accepted connections, requests, and streams the client
 * abandoned (the peer closed while a response was still in progress). */
#ifndef SIFT_TEST_RAWSRV_H
#define SIFT_TEST_RAWSRV_H

#include <stddef.h>
#include <uv.h>

typedef struct rawsrv rawsrv;

typedef struct rawsrv_stats {
    int accepted;   /* connections accepted */
    int open;       /* connections open now */
    int requests;   /* requests parsed */
    int peer_gone;  /* connections the client closed */
    int abandoned;  /* ...of which while a response was in progress */
    int sse_events; /* SSE events written */
} rawsrv_stats;

/* Starts listening on 127.0.0.1:0 on `loop`. NULL on failure. */
rawsrv *rawsrv_start(uv_loop_t *loop);

/* The port it listens on. */
int rawsrv_port(const rawsrv *s);

/* Writes "http://127.0.0.1:PORT" + path into out. */
void rawsrv_url(const rawsrv *s, const char *path, char *out, size_t n);

/* A copy of the counters. */
rawsrv_stats rawsrv_get_stats(const rawsrv *s);

/* Closes the listener and every connection; the memory goes in the last
 * close callback, then done(udata) runs (done may be NULL). */
void rawsrv_stop(rawsrv *s, void (*done)(void *udata), void *udata);

#endif
