/* The sift HTTP API on top of the server (server.h): the routes a shop
 * deploys. Today:
 *
 *   POST /v1/search   {"query": "...", "session_id": "..."}
 *                     -> an SSE stream of the run events (events.h), one SSE
 *                        event per run event (event: run.started, data: {...});
 *                        with "Accept: application/json", one JSON body at the
 *                        end instead: {"run_id", "answer", "error", "events"}.
 *   POST /v1/chat/completions
 *                     OpenAI-compatible: the agent as the model named
 *                     agent.name; a chat.completion body or, with "stream":
 *                     true, chat.completion.chunk objects over SSE ending with
 *                     [DONE]; tool activity in a "sift" member (docs/api.md).
 *   GET  /v1/models   the agent as the one model (/v1/models/{id}: that one)
 *   GET  /v1/products/{sku}
 *                     the product with its live stock per warehouse and its
 *                     prices, read on the thread pool (src/server/products.c)
 *   GET  /            the search page (web/, embedded at build time; also
 *                     /index.html, /app.css, /app.js)
 *   GET  /metrics     Prometheus text
 *   GET  /healthz     200 while the process runs
 *   GET  /readyz      200 when the store can be read, 503 not_ready when not
 *
 * Every error is a JSON body {"error": {"code", "message"}}; on the
 * OpenAI-compatible routes with OpenAI's "type" and "param" as well. */
#ifndef SIFT_API_H
#define SIFT_API_H

#include "sift/config.h"
#include "sift/err.h"
#include "sift/server.h"

typedef struct sift_api sift_api;

/* Builds the shared parts from the configuration: the shop tools over
 * cfg->store.url, the HTTP tools of cfg->tools, the session store. `cfg` must
 * outlive the api. */
int sift_api_new(const sift_config *cfg, sift_api **out, sift_err *err);

/* Fills the worker hooks of `opts` (each worker gets its HTTP client and
 * model) and adds the routes to `srv`, which must have been created with
 * those opts. Call sift_api_server_opts before sift_server_new and
 * sift_api_mount after it. */
void sift_api_server_opts(sift_api *api, sift_server_opts *opts);
int sift_api_mount(sift_api *api, sift_server *srv, sift_err *err);

/* Releases the api, after the server has stopped. NULL is a no-op. */
void sift_api_free(sift_api *api);

/* ---- Kafka catalog sync (src/server/kafka_sync.c, docs/search.md) ---- */

typedef struct sift_api_kafka sift_api_kafka;

/* When sift.yaml has a kafka: block with brokers and topic (or
 * SIFT_KAFKA_BROKERS and SIFT_KAFKA_TOPIC are set), starts a thread that
 * consumes the catalog topic into cfg->store.url (kafka.h) and, after batches
 * that changed products, rebuilds search_products' searcher and swaps it in
 * (at most once per kafka.refresh_ms). Registers the sift_kafka_* metrics, so
 * call it after sift_api_new and before the server starts. *out is NULL when
 * Kafka is not configured. SIFT_EINVAL for a bad kafka: block. */
int sift_api_kafka_start(sift_api *api, sift_api_kafka **out, sift_err *err);

/* Stops the consumer after its batch in progress (committing what is
 * durable), joins its thread and frees it. Call after the server has
 * stopped and before sift_api_free. NULL is a no-op. */
void sift_api_kafka_stop(sift_api_kafka *k);

#endif
