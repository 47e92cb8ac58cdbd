/* sift serve: the HTTP server with the routes that exist so far. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "sift/config.h"
#include "sift/log.h"
#include "sift/server.h"

static const char usage[] = "usage: sift serve [options]\n"
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
                            "  GET /healthz    200 while the process runs\n"
                            "  GET /readyz     200 once every worker accepts requests\n";

static void healthz(sift_http_exchange *x, void *udata)
{
    static const char body[] = "{\"status\":\"ok\"}";
    sift_http_respond(x, 200, "application/json", body, sizeof body - 1);
}

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
    sift_server *srv = sift_server_new(&opts, &err);
    int rc = CLI_FAIL;
    if (!srv)
        goto out;
    if (sift_server_route(srv, "GET", "/healthz", healthz, NULL) ||
        sift_server_route(srv, "GET", "/readyz", healthz, NULL)) {
        sift_err_set(&err, SIFT_ENOMEM, "out of memory");
        goto out;
    }
    if (sift_server_start(srv, &err))
        goto out;
    sift_log(SIFT_LOG_INFO, NULL, NULL, "sift serving on http://%s:%d/", opts.host,
             sift_server_port(srv));
    int sig = sift_server_run_until_signal(srv);
    sift_log(SIFT_LOG_INFO, NULL, NULL, "sift stopped (signal %d)", sig);
    rc = CLI_OK;
out:
    if (rc != CLI_OK)
        fprintf(stderr, "sift serve: %s\n", err.msg);
    sift_server_free(srv);
    sift_config_free(&cfg);
    return rc;
}
