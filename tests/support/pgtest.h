/* A throwaway PostgreSQL cluster for C tests and benchmarks, through
 * tests/support/pg_cluster.sh (initdb in a temporary directory, loopback
 * only, a free port picked at run time). */
#ifndef SIFT_PGTEST_H
#define SIFT_PGTEST_H

#include <stddef.h>

/* Status of pgtest_start when the PostgreSQL server binaries are absent: the
 * test should exit with it (ctest's skip code here). */
#define PGTEST_SKIP 77

typedef struct pgtest_cluster {
    char dir[256]; /* the cluster's directory (mode 755, removed by pgtest_destroy) */
    char url[256]; /* postgresql://postgres@127.0.0.1:PORT/sift */
} pgtest_cluster;

/* Starts a cluster in a new temporary directory. 0, PGTEST_SKIP when there
 * are no server binaries, -1 on any other failure (reason on stderr). */
int pgtest_start(pgtest_cluster *c);

/* Runs `pg_cluster.sh CMD DIR` and waits for it: "stop", "restart". 0 or -1. */
int pgtest_ctl(const pgtest_cluster *c, const char *cmd);

/* The argv for `bash pg_cluster.sh CMD DIR` (for uv_spawn, so the loop keeps
 * running meanwhile). `argv` needs room for 5 pointers; `script` for a path. */
void pgtest_argv(const pgtest_cluster *c, const char *cmd, char *script, size_t script_len,
                 char **argv);

/* Runs SQL through psql (blocking; for fixtures). 0 or -1. */
int pgtest_psql(const pgtest_cluster *c, const char *sql);

/* Stops the cluster and removes its directory. */
void pgtest_destroy(pgtest_cluster *c);

#endif
