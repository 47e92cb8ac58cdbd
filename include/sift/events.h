/* Run events: the one stream every front end consumes (the SSE API, the
 * OpenAI-compatible endpoint, `sift ask`).
 *
 * Each event has a type, which is the SSE event name, and a JSON object,
 * which is the SSE data. Every object carries "run_id" and "seq" (1, 2, ...
 * within the run). Per type:
 *
 *   run.started    {"query","session_id","model"}
 *   token          {"text"}                      a piece of the answer, in order
 *   tool.started   {"id","name","arguments"}     arguments: the JSON the model sent
 *   tool.finished  {"id","name","duration_ms","error":null | {"code","message"}}
 *   products       {"products":[...]}            structured search results
 *   answer         {"text"}                      the whole final answer
 *   run.finished   {"steps","usage":{"prompt_tokens","completion_tokens","total_tokens"},
 *                   "timings":{"total_ms","ttft_ms","model_ms","tools_ms"}}
 *   error          {"code","message"}            code: sift_err_name ("deadline_exceeded")
 *
 * A consumer that falls behind never makes a run buffer without bound: the
 * event queue keeps what the consumer has not taken, merges consecutive
 * token events into one, and refuses to grow past its byte limit (the run is
 * then stopped with "the client is not reading fast enough"). */
#ifndef SIFT_EVENTS_H
#define SIFT_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "sift/buf.h"
#include "sift/err.h"
#include "sift/model.h"

typedef enum sift_event_type {
    SIFT_EV_RUN_STARTED = 0,
    SIFT_EV_TOKEN,
    SIFT_EV_TOOL_STARTED,
    SIFT_EV_TOOL_FINISHED,
    SIFT_EV_PRODUCTS,
    SIFT_EV_ANSWER,
    SIFT_EV_RUN_FINISHED,
    SIFT_EV_ERROR,
} sift_event_type;

/* Timings reported with run.finished, in milliseconds. */
typedef struct sift_run_timings {
    double total_ms; /* run start to end */
    double ttft_ms;  /* run start to the first answer token; 0 if none */
    double model_ms; /* time spent waiting for the model */
    double tools_ms; /* time spent in tool steps */
} sift_run_timings;

/* One event. Which fields are read depends on the type (see above); the
 * strings need to stay valid only during sift_event_json or push. */
typedef struct sift_event {
    sift_event_type type;
    const char *text; /* token, answer */
    size_t text_len;
    const char *id;   /* tool.*: the tool call id */
    const char *name; /* tool.*: the tool name */
    const char *json; /* tool.started: arguments; products: the products array */
    size_t json_len;
    int64_t duration_us;                    /* tool.finished */
    int code;                               /* tool.finished: 0 or the error; error: the code */
    const char *message;                    /* tool.finished error, error */
    const char *query, *session_id, *model; /* run.started */
    int steps;                              /* run.finished */
    const sift_usage *usage;                /* run.finished; NULL: zeros */
    const sift_run_timings *timings;        /* run.finished; NULL: zeros */
} sift_event;

/* The SSE event name of a type: "run.started", "token", ... */
const char *sift_event_name(sift_event_type type);

/* Appends the event's JSON object to `out`. JSON given in `json` that does
 * not parse is written as a string instead, so the output is always valid
 * JSON. SIFT_ETOOBIG past out's limit, SIFT_ENOMEM. */
int sift_event_json(const sift_event *ev, const char *run_id, uint64_t seq, sift_buf *out);

/* Hands one event to the consumer: returns 0 (taken), SIFT_EBUSY (not now:
 * the queue keeps it and retries on sift_event_queue_flush), or another
 * negative code (the consumer is gone: the queue fails from then on). */
typedef int (*sift_event_write_fn)(void *ud, const char *name, const char *json, size_t len);

typedef struct sift_event_item sift_event_item;

/* The bounded queue between a run and its consumer. */
typedef struct sift_event_queue {
    sift_event_write_fn write;
    void *ud;
    char run_id[64];
    uint64_t seq;
    size_t limit; /* most bytes held */
    size_t held;  /* bytes held now */
    size_t peak;  /* most bytes ever held */
    int failed;   /* a write failed for good, or the limit was passed */
    sift_event_item *head, *tail;
} sift_event_queue;

/* An empty queue writing through write(ud, ...) and holding at most `limit`
 * bytes of events the consumer has not taken (0: 256 KB). */
void sift_event_queue_init(sift_event_queue *q, const char *run_id, size_t limit,
                           sift_event_write_fn write, void *ud);

/* Serialises the event and writes it, or queues it behind events the
 * consumer has not taken (a token right behind a queued token is merged into
 * it). Returns 0; SIFT_ETOOBIG when holding it would pass the limit (nothing
 * is queued; stop the run); the consumer's error once it has failed;
 * SIFT_ENOMEM. */
int sift_event_queue_push(sift_event_queue *q, const sift_event *ev);

/* Writes queued events until the consumer says SIFT_EBUSY or the queue is
 * empty. Call it when the consumer has room again (the server's drain
 * callback). Returns 0 or the consumer's error. */
int sift_event_queue_flush(sift_event_queue *q);

/* Bytes not yet taken by the consumer. */
size_t sift_event_queue_pending(const sift_event_queue *q);

/* Releases queued events. */
void sift_event_queue_free(sift_event_queue *q);

#endif
