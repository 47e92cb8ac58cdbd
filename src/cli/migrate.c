/* sift migrate: applies the PostgreSQL schema migrations. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "sift/config.h"
#include "sift/pgstore.h"

static const char usage[] =
    "usage: sift migrate [options]\n"
    "\n"
    "Creates or upgrades the sift schema in a PostgreSQL database: applies the\n"
    "migrations it lacks, each in its own transaction, and records them in\n"
    "schema_migrations. Safe to run again (it then changes nothing) and from\n"
    "several hosts at once. Refuses a database migrated by a newer sift.\n"
    "A SQLite store needs no migrate: it is created and upgraded when opened.\n"
    "\n"
    "options:\n"
    "  --db URL         postgres://user[:password]@host[:port]/db (default: SIFT_DB,\n"
    "                   then store.url from the config)\n"
    "  --config FILE    sift.yaml to read (default: none)\n"
    "  -h, --help       this text\n";

int cli_migrate(int argc, char **argv)
{
    static const struct option longopts[] = {{"db", required_argument, NULL, 'd'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *db = NULL, *config = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'c':
            config = optarg;
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
    if (sift_config_load(&cfg, config, &err)) {
        fprintf(stderr, "sift migrate: %s\n", err.msg);
        return CLI_FAIL;
    }
    if (!db)
        db = cfg.store.url;
    int rc = CLI_FAIL;
    char where[512];
    sift_pg_url_mask(db, where, sizeof where);
    if (!sift_pg_is_url(db)) {
        fprintf(stderr,
                "sift migrate: %s is not a PostgreSQL URL (postgres://...); a SQLite store "
                "needs no migrate\n",
                where);
        rc = CLI_USAGE;
        goto out;
    }
    int from = 0, to = 0;
    if (sift_pg_migrate_ex(db, &from, &to, &err)) {
        fprintf(stderr, "sift migrate: %s\n", err.msg);
        goto out;
    }
    if (from == to)
        printf("sift migrate: %s: schema version %d, up to date\n", where, to);
    else
        printf("sift migrate: %s: schema version %d -> %d\n", where, from, to);
    rc = CLI_OK;
out:
    sift_config_free(&cfg);
    return rc;
}
