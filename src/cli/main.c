/* sift: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: sift <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve     serve the search API over HTTP\n"
    "  ingest    load a JSON Lines catalog, inventory or price file into the store\n"
    "  ask       ask the agent one question in the terminal\n"
    "  eval      relevance figures (NDCG@10, MRR@10, R@100) and latency on labelled queries\n"
    "  migrate   create or upgrade the schema of a PostgreSQL store\n"
    "  version   print the version\n"
    "\n"
    "Run `sift <command> --help` for a command's options.\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "ingest"))
        return cli_ingest(argc - 1, argv + 1);
    if (!strcmp(cmd, "ask"))
        return cli_ask(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "migrate"))
        return cli_migrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("sift %s\n", SIFT_VERSION);
        return CLI_OK;
    }
    fprintf(stderr, "sift: unknown command \"%s\"\n\n%s", cmd, usage);
    return CLI_USAGE;
}
