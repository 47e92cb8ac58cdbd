/* mock_embed: a scriptable OpenAI-compatible /v1/embeddings server for tests,
 * built on sift's own HTTP server (include/sift/server.h), one worker thread,
 * listening on 127.0.0.1 on a port the kernel picks.
 *
 *   POST /v1/embeddings  {"model": M, "input": [texts] or "text", ...}
 *       -> 200 {"object":"list","data":[{"object":"embedding","index":i,
 *               "embedding":[...]}...],"model":M,"usage":{...}}
 *   anything else -> 404
 *
 * Vectors are deterministic: input i gets mock_embed_vector(input[i]) with
 * `dims` components (mock_embed_set_dims; default 8), or the request's
 * "dimensions" member when it has one. They are NOT unit length, so a client
 * that forgets to normalise is caught. Items are written in reverse order
 * (index n-1 first), as a server may, so a client that ignores "index" is
 * caught too.
 *
 * Faults: mock_embed_push queues a reply for the next request (FIFO), whose
 * fault and delay apply to that request only; requests find the queue empty
 * answer normally. A request whose body has no "input" gets 400. */
#ifndef SIFT_TEST_MOCK_EMBED_H
#define SIFT_TEST_MOCK_EMBED_H

#include <stddef.h>

#include "sift/err.h"

typedef struct mock_embed mock_embed;

enum mock_embed_fault {
    MOCK_EMBED_OK = 0,
    MOCK_EMBED_MALFORMED,   /* the body cut in half: not JSON */
    MOCK_EMBED_WRONG_DIMS,  /* the last item's vector is one component short */
    MOCK_EMBED_NO_INDEX,    /* the first item has no "index" */
    MOCK_EMBED_NON_NUMERIC, /* the first item's first component is "x" */
    MOCK_EMBED_TOO_FEW,     /* one item fewer than inputs */
};

typedef struct mock_embed_reply {
    int status;        /* 0 or 200: answer (with the fault); else an OpenAI error body */
    int retry_after_s; /* Retry-After on an error status, when > 0 */
    int delay_ms;      /* wait this long before answering */
    int fault;         /* enum mock_embed_fault */
} mock_embed_reply;

/* Starts the mock. NULL with err set on failure. */
mock_embed *mock_embed_start(sift_err *err);

/* "http://127.0.0.1:PORT/v1" (owned by the mock). */
const char *mock_embed_base_url(const mock_embed *m);

/* The dimension of answers for requests without "dimensions". Thread-safe. */
void mock_embed_set_dims(mock_embed *m, int dims);

/* Queues a reply for the next request. Thread-safe. */
void mock_embed_push(mock_embed *m, const mock_embed_reply *r);

/* Requests received so far (all of them, refused ones included). */
int mock_embed_requests(const mock_embed *m);

/* Copies of request i's body and Authorization header (NULL when it had
 * none); free with free(). Returns -1 when there is no such request (only the
 * last 256 are kept), else 0. */
int mock_embed_request(mock_embed *m, int i, char **body, char **auth);

/* Clients that went away before their answer was sent. */
int mock_embed_disconnects(const mock_embed *m);

/* The vector the mock gives `text` (len bytes): dims values in [-1, 1],
 * deterministic, not normalised. */
void mock_embed_vector(const char *text, size_t len, int dims, float *out);

/* Stops the server (requests in flight get 200 ms) and frees everything.
 * NULL is a no-op. */
void mock_embed_stop(mock_embed *m);

#endif
