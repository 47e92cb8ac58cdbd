/* Configuration: one sift.yaml, with environment variables overriding URLs and
 * secrets.
 *
 * The YAML file is read into a JSON tree (mappings become objects, sequences
 * arrays, plain scalars numbers, booleans or null where they look like one,
 * everything else strings), and the known sections are checked and copied
 * into sift_config. Sections other modules own (tools) stay available as
 * JSON. Every problem is reported with the key's path and what was expected:
 * "sift.yaml: server.port: must be an integer between 0 and 65535".
 *
 * Environment overrides (applied after the file):
 *   SIFT_LLM_PROVIDER   llm.provider ("openai" or "offline")
 *   SIFT_LLM_BASE_URL   llm.base_url (setting it also selects "openai")
 *   SIFT_LLM_MODEL      llm.model
 *   SIFT_LLM_API_KEY    llm.api_key (falls back to OPENAI_API_KEY)
 *   SIFT_DB             store.url
 *   SIFT_HOST, SIFT_PORT, SIFT_WORKERS   server.host, server.port, server.workers
 *   SIFT_API_KEYS       server.api_keys, comma-separated */
#ifndef SIFT_CONFIG_H
#define SIFT_CONFIG_H

#include <cJSON.h>
#include <stddef.h>

#include "sift/err.h"

typedef struct sift_config {
    struct {
        char *host;             /* default "127.0.0.1" */
        int port;               /* default 8080 */
        int workers;            /* default 0: one per core */
        size_t max_body_bytes;  /* default 1 MB */
        int shutdown_grace_ms;  /* default 5000 */
        int max_runs;           /* concurrent runs admitted; default 10000 */
        size_t max_query_bytes; /* default 2048 */
        char **api_keys;        /* NULL-terminated; NULL: no auth */
        int rate_limit_rps;     /* runs per second per API key; default 0: no limit */
        int rate_burst;         /* token bucket size; default 0: rate_limit_rps (at least 1) */
        /* connections per worker to each upstream host (the model, each HTTP
         * tool's host); requests past it wait in order. Default 64 */
        int upstream_connections;
    } server;
    struct {
        char *provider;  /* "offline" (default) or "openai" */
        char *base_url;  /* default "https://api.openai.com/v1" */
        char *model;     /* default "gpt-4o-mini" for openai, "sift-offline-rules" */
        char *api_key;   /* NULL if none */
        int timeout_ms;  /* per request; default 60000 */
        int max_retries; /* default 3 */
    } llm;
    struct {
        char *url; /* SQLite path or postgres://...; default "data/sift.db" */
    } store;
    struct {
        char *name;          /* the agent's name, also its model name on the API; "sift" */
        int deadline_ms;     /* whole-run deadline; default 30000 */
        int max_steps;       /* default 8 */
        int tool_limit;      /* tool calls in flight per step; default 8 */
        int tool_timeout_ms; /* default 10000 */
    } agent;
    /* store.pool: the PostgreSQL pool of each worker loop (pgpool.h), used
     * when store.url is a postgres:// URL. */
    struct {
        int size;               /* connections per loop; default 4 */
        int pipeline_depth;     /* queries in flight per connection; default 8 */
        int queue_max;          /* queries waiting for a connection; default 10000 */
        int queue_timeout_ms;   /* longest wait for a connection; default 5000 */
        int connect_timeout_ms; /* one connection attempt; default 5000 */
    } pgpool;
    cJSON *tools; /* the "tools" sequence as JSON (NULL if absent) */
    cJSON *doc;   /* the whole document as JSON */
} sift_config;

/* Fills `cfg` with the defaults, then the file at `path` (NULL: no file),
 * then the environment. Returns 0, SIFT_ENOTFOUND (no such file), SIFT_EINVAL
 * (a YAML syntax error with line and column, or a bad value with its path),
 * SIFT_ENOMEM. On error cfg holds nothing that needs freeing. */
int sift_config_load(sift_config *cfg, const char *path, sift_err *err);

/* The same from YAML text in memory; `name` is used in messages. `err` is
 * only written (on failure), never read: an error it already holds does not
 * count. */
int sift_config_load_text(sift_config *cfg, const char *name, const char *text, size_t len,
                          sift_err *err);

/* Releases what sift_config_load allocated. */
void sift_config_free(sift_config *cfg);

/* Parses YAML text into a JSON tree (see the header comment); a document with
 * anchors/aliases is refused. NULL with err set on a syntax error (also when
 * err is NULL); empty text gives an empty object. err is only written. */
cJSON *sift_yaml_to_json(const char *name, const char *text, size_t len, sift_err *err);

#endif
