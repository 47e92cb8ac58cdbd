/* sift serve: the HTTP server with the routes that exist so far. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "sift/api.h"
#include "sift/config.h"
#include "sift/log.h"
#include "sift/pgstore.h"
#include "sift/server.h"

static const char usage[] =
    "usage: sift serve [options]\n"
    "\n"
    "Serves sift over HTTP until SIGINT or SIGTERM (graceful shutdown).\n"
    "\n"
    "options:\n"
    "  --config FILE   sift.yaml to read (default: sift.yaml if present)\n"
    "  --host HOST     address to listen on (default 127.0.0.1)\n"
    "  --port N        port (default 8080; 0 picks a free one)\n"
    "  --workers N     worker threads (default: one per core)\n"
    "  -h, --help      this text\n"
    "\n"
    "routes:\n"
    "  GET /            the search page (built into the binary)\n"
    "  POST /v1/search  {\"query\",\"session_id\"}: the agent's run "
    "events over SSE\n"
    "                   (one JSON body with Accept: application/json)\n"
    "  GET /v1/products/{sku}  a product with its live stock and prices\n"
    "  POST /v1/chat/completions  OpenAI-compatible; model: agent.name "
    "(\"sift\")\n"
    "  GET /v1/models   the agent as the one model (/v1/models/{id}: that one)\n"
    "  GET /metrics     Prometheus text: runs, latencies, tools, loop lag\n"
    "  GET /healthz     200 while the process runs\n"
    "  GET /readyz      200 when the store can be read (else 503)\n"
    "\n"
    "The store is store.url (SIFT_DB): a SQLite file or a postgres:// URL\n"
    "(migrated with sift migrate). Sessions (session_id) are kept in that store\n"
    "too, so any server on it continues any session; sessions.store: memory in\n"
    "sift.yaml keeps them per process. The model is llm.provider: offline "
    "(rule-based,\nno language model) unless SIFT_LLM_BASE_URL is set.\n"
    "Search vectors come from embed.provider: hashed (built in, the default) or\n"
    "openai (an OpenAI-compatible /v1/embeddings, also chosen by setting\n"
    "SIFT_EMBED_BASE_URL; the catalog is embedded at start).\n"
    "With a kafka: block (or SIFT_KAFKA_BROKERS and SIFT_KAFKA_TOPIC), the catalog topic\n"
    "is consumed into the store and search follows it (docs/search.md).\n";

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},   {"workers", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config = NULL, *host = NULL;
    long port = -1, workers = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        case 'p':
            if (parse_int(optarg, 0, 65535, &port)) {
                fprintf(stderr, "sift serve: --port must be an integer between 0 and 65535\n");
                return CLI_USAGE;
            }
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &workers)) {
                fprintf(stderr, "sift serve: --workers must be an integer between 1 and 1024\n");
                return CLI_USAGE;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            fputs(usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    sift_err err = {0};
    sift_config cfg;
    FILE *probe = config ? NULL : fopen("sift.yaml", "r");
    if (probe) {
        fclose(probe);
        config = "sift.yaml";
    }
    if (sift_config_load(&cfg, config, &err)) {
        fprintf(stderr, "sift serve: %s\n", err.msg);
        return CLI_FAIL;
    }
    sift_server_opts opts = {
        .host = host ? host : cfg.server.host,
        .port = port >= 0 ? (int)port : cfg.server.port,
        .workers = workers > 0 ? (int)workers : cfg.server.workers,
        .max_body_bytes = cfg.server.max_body_bytes,
        .shutdown_grace_ms = cfg.server.shutdown_grace_ms,
    };
    int rc = CLI_FAIL;
    sift_server *srv = NULL;
    sift_api *api = NULL;
    sift_api_kafka *kafka = NULL;
    if (!sift_pg_is_url(cfg.store.url) && access(cfg.store.url, R_OK) != 0) {
        sift_err_set(&err, SIFT_ENOTFOUND,
                     "no store at %s: load a catalog first (sift ingest --db %s FILE)",
                     cfg.store.url, cfg.store.url);
        goto out;
    }
    if (sift_api_new(&cfg, &api, &err))
        goto out;
    if (sift_api_kafka_start(api, &kafka, &err))
        goto out;
    sift_api_server_opts(api, &opts);
    srv = sift_server_new(&opts, &err);
    if (!srv || sift_api_mount(api, srv, &err))
        goto out;
    if (sift_server_start(srv, &err))
        goto out;
    char store_shown[512]; /* a password in a postgres:// URL is never logged */
    sift_pg_url_mask(cfg.store.url, store_shown, sizeof store_shown);
    sift_log(SIFT_LOG_INFO, NULL, NULL, "sift serving on http://%s:%d/ (model %s, store %s)",
             opts.host, sift_server_port(srv), cfg.llm.model, store_shown);
    int sig = sift_server_run_until_signal(srv);
    sift_log(SIFT_LOG_INFO, NULL, NULL, "sift stopped (signal %d)", sig);
    rc = CLI_OK;
out:
    if (rc != CLI_OK)
        fprintf(stderr, "sift serve: %s\n", err.msg);
    sift_server_free(srv);
    sift_api_kafka_stop(kafka);
    sift_api_free(api);
    sift_config_free(&cfg);
    return rc;
}
