/* The sift command line: one function per subcommand, each taking the
 * arguments after its name and returning the process exit status. */
#ifndef SIFT_CLI_H
#define SIFT_CLI_H

/* Exit statuses: 0 success, 1 failure at run time, 2 bad usage. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

int cli_serve(int argc, char **argv);
int cli_ingest(int argc, char **argv);
/* sift ingest --kafka (ingest_kafka.c); cli_ingest hands over to it. */
int cli_ingest_kafka(int argc, char **argv);
int cli_ask(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_migrate(int argc, char **argv);

/* The version string printed by `sift version`. */
#define SIFT_VERSION "0.1.0"

#endif
