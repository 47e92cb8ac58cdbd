/* Throwaway PostgreSQL clusters for tests (pgtest.h). */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void script_path(char *out, size_t len)
{
    const char *src = getenv("SIFT_SOURCE_DIR");
#ifdef SIFT_SOURCE_DIR
    if (!src)
        src = SIFT_SOURCE_DIR;
#endif
    snprintf(out, len, "%s/tests/support/pg_cluster.sh", src ? src : ".");
}

static int run(const char *cmd, char *out, size_t out_len)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t n = 0;
    if (out) {
        n = fread(out, 1, out_len - 1, f);
        out[n] = '\0';
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
            out[--n] = '\0';
    } else {
        char buf[512];
        while (fread(buf, 1, sizeof buf, f) > 0) {
        }
    }
    int st = pclose(f);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int pgtest_start(pgtest_cluster *c)
{
    memset(c, 0, sizeof *c);
    char script[512];
    script_path(script, sizeof script);
    snprintf(c->dir, sizeof c->dir, "/tmp/sift-pgtest-XXXXXX");
    if (!mkdtemp(c->dir)) {
        perror("pgtest: mkdtemp");
        return -1;
    }
    /* The server runs as the postgres user, which must reach the directory. */
    chmod(c->dir, 0755);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s' start '%s/pg'", script, c->dir);
    int rc = run(cmd, c->url, sizeof c->url);
    if (rc == PGTEST_SKIP) {
        rmdir(c->dir);
        return PGTEST_SKIP;
    }
    if (rc != 0 || strncmp(c->url, "postgresql://", 13) != 0) {
        fprintf(stderr, "pgtest: pg_cluster.sh start failed (%d)\n", rc);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
        (void)system(cmd);
        return -1;
    }
    return 0;
}

int pgtest_ctl(const pgtest_cluster *c, const char *what)
{
    char script[512], cmd[1024];
    script_path(script, sizeof script);
    snprintf(cmd, sizeof cmd, "bash '%s' %s '%s/pg'", script, what, c->dir);
    return run(cmd, NULL, 0) == 0 ? 0 : -1;
}

void pgtest_argv(const pgtest_cluster *c, const char *cmd, char *script, size_t script_len,
                 char **argv)
{
    static char dir[300];
    script_path(script, script_len);
    snprintf(dir, sizeof dir, "%s/pg", c->dir);
    argv[0] = "bash";
    argv[1] = script;
    argv[2] = (char *)cmd;
    argv[3] = dir;
    argv[4] = NULL;
}

int pgtest_psql(const pgtest_cluster *c, const char *sql)
{
    char path[320];
    snprintf(path, sizeof path, "%s/fixture.sql", c->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(sql, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "psql -q -v ON_ERROR_STOP=1 -X '%s' -f '%s' >/dev/null", c->url,
             path);
    return run(cmd, NULL, 0) == 0 ? 0 : -1;
}

void pgtest_destroy(pgtest_cluster *c)
{
    if (!c->dir[0])
        return;
    pgtest_ctl(c, "destroy");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    /* A server process still exiting can write into the directory while it
     * is removed; try again until it is gone. */
    for (int i = 0; i < 10 && access(c->dir, F_OK) == 0; i++) {
        if (i)
            usleep(100 * 1000);
        (void)system(cmd);
    }
    c->dir[0] = '\0';
}
