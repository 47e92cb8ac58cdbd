/* Internal to src/server: what the API's front ends share. /v1/search
 * (api.c) and /v1/chat/completions (chat.c) admit a request the same way
 * (auth, per-key rate limit, the cap on runs in flight) and run the agent the
 * same way (one run per exchange, its events through a bounded queue with
 * backpressure, a client that leaves cancels the run, the session saved at
 * the end, the metrics). A front end only decides how each run event is
 * written to its client and, when it answers in one piece, the final body. */
#ifndef SIFT_SERVER_API_INT_H
#define SIFT_SERVER_API_INT_H

#include <stdint.h>

#include "sift/agent.h"
#include "sift/api.h"
#include "sift/events.h"
#include "sift/session.h"
#include "sift/session_pool.h"

/* Answers an error in a front end's shape; sift_http_respond_error is one. */
typedef int (*sift_api_error_fn)(sift_http_exchange *x, int status, const char *code,
                                 const char *message);

/* The shop and the metrics registry (for the Kafka sync, kafka_sync.c). */
struct sift_shop;
struct sift_metrics;
struct sift_shop *sift_api_shop(sift_api *api);
struct sift_metrics *sift_api_metrics(sift_api *api);

/* Searcher options with a new embedder made from the configuration's embed
 * block (the one the api's searcher was built with; remote providers find
 * each loop's HTTP client through the api). sift_searcher_open takes the
 * embedder over (search.h), even when it fails. */
struct sift_searcher_opts;
int sift_api_searcher_opts(sift_api *api, struct sift_searcher_opts *out, sift_err *err);

/* The configuration the api was built with. */
const sift_config *sift_api_config(const sift_api *api);

/* When the api was built, in seconds since the epoch (the "created" of
 * /v1/models). */
int64_t sift_api_created(const sift_api *api);

/* With API keys configured: the index of the key the request carries, or -1
 * after answering 401 through `error`. Without keys: 0 ("anonymous"). */
int sift_api_authenticate(sift_api *api, sift_http_exchange *x, sift_api_error_fn error);

/* Takes a token from key's bucket: 1, or 0 after answering 429. */
int sift_api_rate_take(sift_api *api, sift_http_exchange *x, int key, sift_api_error_fn error);

/* Takes a run slot: 1, or 0 after answering 503. A slot taken is given back
 * when the run ends, or by sift_api_run_abandon. */
int sift_api_admit(sift_api *api, sift_http_exchange *x, sift_api_error_fn error);

/* Counts a query refused with 413 by a front end (shown in /metrics). */
void sift_api_count_too_long(sift_api *api);

/* LOADING: the session is being read on the thread pool (the run has not
 * started); SAVING: the run has ended and its session is being written
 * before the client is told (so a follow-up on any server finds it). */
enum sift_api_run_state {
    SIFT_API_RUN_LOADING,
    SIFT_API_RUN_RUNNING,
    SIFT_API_RUN_SAVING,
    SIFT_API_RUN_DRAINING,
    SIFT_API_RUN_FINISHED
};

typedef struct sift_api_run sift_api_run;

typedef struct sift_api_frontend {
    /* Writes one run event (its name and JSON, events.h; ud is the run).
     * Streaming: to the exchange, all or nothing, SIFT_EBUSY when it does not
     * fit now (it is offered again after a drain). JSON mode: into
     * run->events or the front end's own state. */
    sift_event_write_fn write;
    /* JSON mode only: answers the exchange once the run has ended (res->code
     * says how); must finish the exchange. */
    void (*respond)(sift_api_run *r, const sift_agent_result *res);
    /* The front end's error shape, for failures while starting a run. */
    sift_api_error_fn error;
} sift_api_frontend;

struct sift_api_run {
    sift_http_exchange *x;
    sift_api *api;
    const sift_api_frontend *fe;
    void *fe_data; /* the front end's state; lives in the arena */
    enum sift_api_run_state state;
    int json_mode;
    sift_arena *arena; /* the conversation, fe_data */
    sift_conv conv;
    sift_event_queue q;
    sift_buf events; /* JSON mode: what the front end collects */
    sift_ctx_hook gone;
    char run_id[32];
    char session[SIFT_SESSION_ID_MAX + 2];
    sift_session_op sop;   /* the session's load and save on the thread pool */
    sift_agent_result res; /* SAVING: the result, answer and message copied to the arena */
    const char *query;     /* LOADING: the question, in the arena */
};

/* A run for an admitted request, its conversation empty, in JSON mode (one
 * body at the end) or streaming. `session` (a valid id, or NULL) is saved
 * after a run that answered. NULL when out of memory: then 503 has been
 * answered through fe->error and the slot given back. */
sift_api_run *sift_api_run_new(sift_api *api, sift_http_exchange *x, const sift_api_frontend *fe,
                               int json_mode, const char *session);

/* For a run with a session: loads it into r->conv on the thread pool, then,
 * on the loop, adds the shop prompt when the session is new and `query` as
 * the user message, and starts the run (sift_api_run_start). A client that
 * leaves meanwhile cancels it. From the call on, the run owns the exchange. */
void sift_api_run_load_and_start(sift_api_run *r, const char *query);

/* Starts the agent on r->conv (filled by the front end): trims it to the
 * memory budget, starts the event stream unless in JSON mode, starts the
 * run. From then on the run owns the exchange and frees itself. Returns 0,
 * or a negative code after answering (or aborting the stream) and freeing
 * the run. */
int sift_api_run_start(sift_api_run *r);

/* Adds POST /v1/chat/completions, GET /v1/models and GET /v1/models/{id}
 * (chat.c). Returns 0 or SIFT_ENOMEM. */
int sift_api_chat_mount(sift_api *api, sift_server *srv);

/* Frees a run that was not started, after the front end has answered the
 * exchange; gives the run slot back. */
void sift_api_run_abandon(sift_api_run *r);

/* ---- GET /v1/products/{sku} and the search page (products.c, page.c) ---- */

/* Product lookups in flight (products.c bounds them). */
_Atomic int *sift_api_product_lookups(sift_api *api);

/* Adds GET /v1/products/{sku} and GET /readyz (products.c). Returns 0 or
 * SIFT_ENOMEM. */
int sift_api_products_mount(sift_api *api, sift_server *srv);

/* Wraps `inner` in a model that observes each request in req_s (seconds,
 * label outcome: ok, deadline_exceeded, cancelled, error) and first_s (to
 * the first token or tool call) and otherwise forwards everything
 * (model_metrics.c). Freeing it frees `inner`. NULL when out of memory, with
 * `inner` freed. */
struct sift_model;
struct sift_metric;
struct sift_model *sift_api_model_measured(struct sift_model *inner, struct sift_metric *req_s,
                                           struct sift_metric *first_s);

/* Adds GET / and the page's files, embedded at build time (page.c). Returns
 * 0 or SIFT_ENOMEM. */
int sift_api_page_mount(sift_api *api, sift_server *srv);

#endif
