/* sift ingest: JSON Lines into the store, with progress and a summary. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "sift/catalog.h"
#include "sift/config.h"
#include "sift/pgstore.h"
#include "sift/store.h"

static const char usage[] =
    "usage: sift ingest [options] FILE\n"
    "       sift ingest --kafka [BROKERS] [--topic TOPIC] [--group G] [--dlq TOPIC] [--db PATH]\n"
    "                   [--batch N] [--batch-ms N] [--assign] [--exit-at-end] [-X KEY=VALUE]\n"
    "                   (`sift ingest --kafka --help` explains these)\n"
    "\n"
    "Loads JSON Lines (docs/catalog.md) into the store; FILE `-` reads stdin.\n"
    "Bad lines are reported with their line number and skipped.\n"
    "\n"
    "options:\n"
    "  --kind KIND      products (default), inventory or prices\n"
    "  --db PATH|URL    SQLite file or postgres:// URL (default: SIFT_DB, then store.url\n"
    "                   from the config, data/sift.db); PostgreSQL needs sift migrate first\n"
    "  --config FILE    sift.yaml to read (default: none)\n"
    "  --batch N        lines per transaction (default 5000)\n"
    "  --max-bad N      give up after N bad lines (default: never)\n"
    "  --quiet          no progress, only the summary\n"
    "  -h, --help       this text\n";

struct progress {
    FILE *in;
    off_t size; /* 0 when unknown (a pipe) */
    int tty;
    int quiet;
    double start;
    double last;
    size_t bad_shown;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_bad(void *ud, size_t lineno, const char *msg)
{
    struct progress *p = ud;
    if (p->tty)
        fputs("\r\033[K", stderr); /* clear the bar before the message */
    fprintf(stderr, "sift ingest: skipped %s\n", msg);
    p->bad_shown++;
}

static void on_progress(void *ud, const sift_load_summary *s)
{
    struct progress *p = ud;
    double t = now_s();
    if (p->quiet || (t - p->last < (p->tty ? 0.1 : 2.0)))
        return;
    p->last = t;
    double rate = (double)s->lines / (t - p->start > 1e-6 ? t - p->start : 1e-6);
    off_t pos = p->size ? ftello(p->in) : 0;
    if (p->tty && p->size > 0) {
        double frac = (double)pos / (double)p->size;
        if (frac > 1)
            frac = 1;
        int width = 30, fill = (int)(frac * width);
        double eta = frac > 0 ? (t - p->start) * (1 - frac) / frac : 0;
        fprintf(stderr, "\r\033[K[%.*s%*s] %3.0f%% %zu lines %.0f/s ETA %.0fs", fill,
                "##############################", width - fill, "", frac * 100, s->lines, rate,
                eta);
    } else if (p->tty) {
        fprintf(stderr, "\r\033[K%zu lines %.0f/s", s->lines, rate);
    } else {
        fprintf(stderr, "sift ingest: %zu lines, %zu applied, %zu bad, %.0f lines/s\n", s->lines,
                s->applied, s->bad, rate);
    }
}

int cli_ingest(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},    {"db", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},  {"batch", required_argument, NULL, 'b'},
        {"max-bad", required_argument, NULL, 'm'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int kind = SIFT_CATALOG_PRODUCTS;
    const char *db = NULL, *config = NULL;
    sift_load_opts opts = {0};
    struct progress prog = {0};
    int c;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--kafka") || !strncmp(argv[i], "--kafka=", 8))
            return cli_ingest_kafka(argc, argv);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'k':
            if (!strcmp(optarg, "products"))
                kind = SIFT_CATALOG_PRODUCTS;
            else if (!strcmp(optarg, "inventory") || !strcmp(optarg, "stock"))
                kind = SIFT_CATALOG_INVENTORY;
            else if (!strcmp(optarg, "prices"))
                kind = SIFT_CATALOG_PRICES;
            else {
                fprintf(stderr, "sift ingest: --kind must be products, inventory or prices\n");
                return CLI_USAGE;
            }
            break;
        case 'd':
            db = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'b':
        case 'm': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || !*optarg || (c == 'b' && v == 0)) {
                fprintf(stderr, "sift ingest: --%s must be a %s integer\n",
                        c == 'b' ? "batch" : "max-bad", c == 'b' ? "positive" : "non-negative");
                return CLI_USAGE;
            }
            if (c == 'b')
                opts.batch = v;
            else
                opts.max_bad = v;
            break;
        }
        case 'q':
            prog.quiet = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            fputs(usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *path = argv[optind];

    sift_err err = {0};
    sift_config cfg;
    if (sift_config_load(&cfg, config, &err)) {
        fprintf(stderr, "sift ingest: %s\n", err.msg);
        return CLI_FAIL;
    }
    if (!db)
        db = cfg.store.url;
    FILE *in = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "sift ingest: cannot open %s: %s\n", path, strerror(errno));
        sift_config_free(&cfg);
        return CLI_FAIL;
    }
    struct stat st;
    prog.in = in;
    prog.size = (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode)) ? st.st_size : 0;
    prog.tty = isatty(2);
    prog.start = prog.last = now_s();

    /* create the directory of the default store path */
    char *slash = sift_pg_is_url(db) ? NULL : strrchr(db, '/');
    if (slash && slash != db) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - db), db);
        mkdir(dir, 0755);
    }
    sift_store *store = NULL;
    if (sift_store_open(db, 0, &store, &err)) {
        fprintf(stderr, "sift ingest: %s\n", err.msg);
        if (in != stdin)
            fclose(in);
        sift_config_free(&cfg);
        return CLI_FAIL;
    }
    opts.on_bad = on_bad;
    opts.on_progress = on_progress;
    opts.ud = &prog;
    sift_load_summary sum = {0};
    int rc = sift_catalog_load_jsonl(store, in, kind, &opts, &sum, &err);
    double secs = now_s() - prog.start;
    char where[512];
    sift_pg_url_mask(db, where, sizeof where);
    if (prog.tty && !prog.quiet)
        fputs("\r\033[K", stderr);
    static const char *const kinds[] = {"products", "inventory rows", "prices"};
    fprintf(stderr,
            "sift ingest: %s: %zu lines in %.2fs (%.0f lines/s): %zu applied (%zu deletes), "
            "%zu unchanged (older or equal version), %zu bad, %zu blank; %s into %s\n",
            path, sum.lines, secs, secs > 0 ? (double)sum.lines / secs : 0.0, sum.applied,
            sum.deleted, sum.stale, sum.bad, sum.blank, kinds[kind], where);
    if (rc)
        fprintf(stderr, "sift ingest: stopped: %s\n", err.msg);
    sift_store_close(store);
    if (in != stdin)
        fclose(in);
    sift_config_free(&cfg);
    return rc ? CLI_FAIL : CLI_OK;
}
