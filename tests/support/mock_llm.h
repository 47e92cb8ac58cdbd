/* mock_llm: a scriptable OpenAI-compatible chat-completions server for tests
 * and benchmarks, built on sift's own HTTP server (include/sift/server.h).
 *
 * It listens on 127.0.0.1 and answers
 *   POST /v1/chat/completions   with the next scripted reply (see below)
 *   GET  /v1/models             {"object":"list","data":[{"id":"mock",...}]}
 *   GET  /stats                 {"requests":N,"disconnects":N,"chunks":N,
 *                                "cpu_user_us":N,"cpu_sys_us":N} (CPU of the
 *                                whole process, from getrusage)
 * and 404 (JSON error body) for anything else.
 *
 * Which reply a request gets: the oldest reply queued with mock_llm_push;
 * when the queue is empty, the responder's (mock_llm_set_responder); without
 * a responder, the default reply (mock_llm_set_default); without one, an
 * empty assistant message with finish_reason "stop". A request whose body is
 * not a JSON object with a "messages" array gets 400 invalid_request_error
 * and consumes nothing.
 *
 * The stream. With "stream": true the reply is 200 text/event-stream (the
 * headers are sent at once) and a sequence of `data:` events, each one
 * chat.completion.chunk exactly as OpenAI writes it:
 *   {"id":"chatcmpl-mock-N","object":"chat.completion.chunk","created":T,
 *    "model":M,"system_fingerprint":null,"choices":[{"index":0,"delta":{...},
 *    "logprobs":null,"finish_reason":null}]}
 * (N: the request's number from 0; M: the request's "model", or "mock")
 * in this order:
 *   1. for a reply with content (or with neither content nor tool calls) a
 *      role chunk, delta {"role":"assistant","content":""};
 *   2. the content, one word per chunk (each piece is a word with the
 *      whitespace before it, so the pieces concatenate to the exact text);
 *   3. per tool call i: a header chunk, delta {"tool_calls":[{"index":i,
 *      "id":..,"type":"function","function":{"name":..,"arguments":""}}]}
 *      (the first chunk of a tools-only reply also carries "role":"assistant"
 *      and "content":null), then `fragments` chunks {"tool_calls":[{"index":i,
 *      "function":{"arguments":"<piece>"}}]} (pieces never split a UTF-8
 *      character; fewer pieces when the text is shorter than `fragments`);
 *   4. the finish chunk, delta {} and "finish_reason": "stop"/"tool_calls"/..
 *      (left out with omit_finish_reason);
 *   5. when the request has "stream_options":{"include_usage":true} (and
 *      usage >= 0): a usage chunk with "choices":[] and "usage":{...}; the
 *      chunks before it then carry "usage":null, as OpenAI's do;
 *   6. data: [DONE] (left out with omit_done).
 * Events are numbered from 1 in that order, [DONE] included; malformed_at
 * and disconnect_after count these numbers (the malformed event is the
 * event's text cut in half, so what it carried is lost). ttft_ms passes before event 1,
 * token_delay_ms before each later event. With no delay the events are
 * written back to back as fast as the client reads (backpressure respected).
 *
 * Without "stream": true the reply is one chat.completion JSON object (after
 * ttft_ms) with the same content, tool calls, finish_reason and usage;
 * malformed_at > 0 cuts that body in half, disconnect_after > 0 drops the
 * connection instead of answering.
 *
 * Errors. A status other than 0 and 200 answers, after ttft_ms, with an OpenAI error body
 * {"error":{"message":..,"type":..,"param":null,"code":..}} (429:
 * type "requests", code "rate_limit_exceeded"; 5xx: "server_error"; 400:
 * "invalid_request_error"; 401: "invalid_api_key") and Retry-After when
 * retry_after_s > 0.
 *
 * Disconnects. disconnect_after = N drops the connection once the first N
 * events have reached the socket (the client sees a truncated chunked
 * response). A client that goes away mid-reply (during a delay or a write)
 * is noticed through the exchange's context; its timer is stopped and the
 * exchange finished; mock_llm_disconnects counts these.
 *
 * Threads. The server runs `workers` threads. push, set_default,
 * set_responder, requests, request_body and disconnects may be called from
 * any thread; a responder runs on a worker thread. */
#ifndef SIFT_TEST_MOCK_LLM_H
#define SIFT_TEST_MOCK_LLM_H

#include <stddef.h>

#include "sift/err.h"

typedef struct mock_llm mock_llm;

typedef struct mock_tool_call {
    const char *id; /* NULL: "call_mock_<i>" */
    const char *name;
    const char *arguments; /* JSON text, sent as is (NULL: "") */
    int fragments;         /* split arguments into N pieces, >= 1 (<= 0: 1) */
} mock_tool_call;

typedef struct mock_reply {
    int status; /* 0 or 200: success; else HTTP error status with an OpenAI error body */
    const char *error_message; /* for status >= 400 (NULL: a standard message) */
    int retry_after_s;         /* adds Retry-After header when > 0 */
    const char *content;       /* assistant text; streamed one word per chunk */
    const mock_tool_call *tool_calls;
    int n_tool_calls;
    const char *finish_reason; /* NULL: "tool_calls" if tool calls else "stop" */
    int ttft_ms;               /* delay before the first chunk (or before the whole reply) */
    int token_delay_ms;        /* delay between chunks */
    int malformed_at;          /* > 0: chunk number N (1-based) is sent as invalid JSON */
    int disconnect_after;      /* > 0: drop the connection after N chunks */
    int omit_finish_reason;    /* end the stream without any finish_reason */
    int omit_done;             /* no data: [DONE] */
    int usage; /* send a usage chunk when the request asked include_usage (default behaviour; set -1
                  to never) */
    /* Added: token counts reported in usage; 0: prompt = request bytes / 4,
     * completion = number of content and argument chunks. */
    int prompt_tokens;
    int completion_tokens;
} mock_reply;

/* Starts a mock on 127.0.0.1, port chosen by the kernel, with `workers`
 * threads (<= 0: 1). NULL with `err` set on failure. */
mock_llm *mock_llm_start(int workers, sift_err *err);

/* The same on a given port (0: any free port), for the standalone program. */
mock_llm *mock_llm_start_port(int port, int workers, sift_err *err);

int mock_llm_port(const mock_llm *m);

/* "http://127.0.0.1:PORT/v1" (owned by the mock). */
const char *mock_llm_base_url(const mock_llm *m);

/* Queues a reply: the next request gets it. Deep-copied; thread-safe. */
void mock_llm_push(mock_llm *m, const mock_reply *r);

/* The reply used when the queue is empty and there is no responder
 * (deep-copied; NULL: back to the empty "stop" reply). */
void mock_llm_set_default(mock_llm *m, const mock_reply *r);

/* Called on a worker thread for each request when the queue is empty, with
 * the request body (NUL-terminated) and *out zeroed. It fills *out; the
 * strings it points to must stay valid until the responder returns (they are
 * copied at once): static, udata-owned or thread-local storage all do. */
typedef void (*mock_llm_responder)(const char *request_body, size_t len, mock_reply *out,
                                   void *udata);

/* Sets (fn non-NULL) or removes the responder. */
void mock_llm_set_responder(mock_llm *m, mock_llm_responder fn, void *udata);

/* Chat-completions requests received so far (including refused ones). */
int mock_llm_requests(const mock_llm *m);

/* A copy of the body of request i (0-based, in arrival order), free with
 * free(); NULL if there is no such request or it is older than the last 64. */
char *mock_llm_request_body(mock_llm *m, int i);

/* Clients that went away before their reply was finished. */
int mock_llm_disconnects(const mock_llm *m);

/* data: events written so far (all requests). */
long mock_llm_chunks(const mock_llm *m);

/* Writes the /stats JSON object (with a newline) into out; returns its
 * length (truncated to size - 1). */
int mock_llm_stats_json(const mock_llm *m, char *out, size_t size);

/* Graceful stop (requests in flight get 200 ms), then frees everything.
 * NULL is a no-op. */
void mock_llm_stop(mock_llm *m);

/* Options for mock_llm_seed_responder, passed as its udata (NULL: the
 * defaults, TTFT 50 ms and no delay between chunks). */
typedef struct mock_seed_opts {
    int ttft_ms;
    int token_delay_ms;
} mock_seed_opts;

/* The seed workload responder: user turn -> 3 parallel check_inventory calls
 * for NIKE-PEG40-42 at HAN, DAD, SGN (arguments in 3-4 fragments), tool
 * results -> a ~60-word answer, one word per chunk. "User turn" means the
 * last message is not a tool result. udata: NULL or a const mock_seed_opts*
 * that outlives the mock. */
void mock_llm_seed_responder(const char *request_body, size_t len, mock_reply *out, void *udata);

/* The seed workload's final answer (the text the second call streams). */
extern const char mock_llm_seed_answer[];

#endif
