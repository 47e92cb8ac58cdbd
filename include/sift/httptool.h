/* HTTP tools: tools declared in sift.yaml that call a shop's existing services.
 *
 * Each entry of the `tools:` list becomes a registered tool whose arguments
 * are a run-time schema (sift_schema_layout), so the model sees a strict JSON
 * Schema and bad arguments are refused by the decoder before any request is
 * made. An entry:
 *
 *   - name: check_inventory                  # [A-Za-z0-9_-], 1 to 64
 *     description: Units in stock of one SKU at one warehouse
 *     method: GET                            # GET (default), POST, PUT, DELETE
 *     url: http://inventory:8081/v1/stock/{sku}?location={location}
 *     headers:                               # optional; ${NAME} reads the environment
 *       Authorization: Bearer ${INVENTORY_TOKEN}
 *     timeout_ms: 2000                       # optional; default 10000
 *     body: json                             # optional: send the arguments as a JSON body
 *     args:
 *       - {name: sku, type: string, description: Product SKU, required: true, max_length: 64}
 *       - {name: location, type: enum, values: [HAN, DAD, SGN], required: true}
 *
 * Argument keys: name, type (string, integer, number, boolean, enum, array
 * of strings), description, required (default false), values (enum), min and
 * max (integer, number), min_length and max_length (string, and each item of
 * an array), min_items and max_items (array). Unknown keys are errors, so a
 * typo does not silently drop a bound.
 *
 * The URL: each {field} is replaced by the argument's value, percent-encoded
 * (an absent optional argument gives ""); only scalar arguments may appear
 * there. With `body: json` the arguments (present ones, in declaration order)
 * are sent as a JSON object with Content-Type: application/json.
 *
 * Secrets: header values may reference environment variables as ${NAME};
 * they are expanded once at load (a missing variable is a config error), kept
 * only in memory, wiped when the set is freed, and never logged or put into
 * an error message.
 *
 * The result given to the model: a 2xx body that is JSON, as is; a body that
 * is not JSON, as a JSON string; an empty body, null. A 4xx/5xx status fails
 * the call with SIFT_EHTTP and "check_inventory: HTTP 500: <first 200 bytes
 * of the body>". Transport errors and timeouts fail it with the client's code
 * and message.
 *
 * Where the HTTP client comes from: the tools are built once and shared by
 * every worker thread (the registry is read-only), but a sift_http_client
 * belongs to one loop. So the set holds a lookup function, called at each
 * execution with the job's loop (sift_ctx_loop(job->ctx)), that returns that
 * loop's client (for instance from the server worker's data). It runs on the
 * loop's thread and must not block. */
#ifndef SIFT_HTTPTOOL_H
#define SIFT_HTTPTOOL_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/err.h"
#include "sift/http.h"
#include "sift/tool.h"

typedef struct sift_httptools sift_httptools;

/* Returns the HTTP client of `loop`, or NULL if it has none (the call then
 * fails with SIFT_ESTATE). */
typedef sift_http_client *(*sift_httptool_client_fn)(uv_loop_t *loop, void *udata);

typedef struct sift_httptools_opts {
    sift_httptool_client_fn client; /* required */
    void *udata;                    /* for client */
    size_t max_body_bytes;          /* response limit per call; 0: 1 MB */
    int64_t default_timeout_ms;     /* for entries without timeout_ms; 0: 10000 */
} sift_httptools_opts;

/* Builds the tools of a `tools:` list (a cJSON array, as in sift_config.tools;
 * NULL: no tools). Returns 0 and sets *out, or SIFT_EINVAL with a message
 * naming the entry and key ("tools[1].url: placeholder {loc} is not an
 * argument"), or SIFT_ENOMEM. */
int sift_httptools_load(const cJSON *tools, const sift_httptools_opts *opts, sift_httptools **out,
                        sift_err *err);

/* Adds every tool of the set to a registry (which then refers to the set:
 * free the set after the registry). Errors as sift_tool_registry_add, e.g. a
 * name already taken. */
int sift_httptools_register(const sift_httptools *h, sift_tool_registry *r, sift_err *err);

/* Number of tools, and the i-th in file order (NULL past the end). */
size_t sift_httptools_count(const sift_httptools *h);
const sift_tool *sift_httptools_at(const sift_httptools *h, size_t i);

/* Frees the set, wiping the expanded header values. NULL is a no-op. Calls
 * in flight must have ended (free it after the loops have stopped). */
void sift_httptools_free(sift_httptools *h);

#endif
