/* The PostgreSQL helpers that need no server: URL detection and masking,
 * the store dispatcher, and connection errors against a port where nothing
 * listens (the password never shows, whatever it is made of). The store
 * itself is tested against a real cluster in tests/integration/
 * test_pgstore.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sift/pgstore.h"
#include "sift/store.h"

static void masks(const char *url, const char *want)
{
    char out[256];
    sift_pg_url_mask(url, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_mask(void **state)
{
    (void)state;
    masks("postgres://shop:s3cr3t@db.example:5432/sift?sslmode=require",
          "postgres://shop:***@db.example:5432/sift?sslmode=require");
    masks("postgresql://shop@db/sift?password=s3cr3t&sslmode=disable",
          "postgresql://shop@db/sift?password=***&sslmode=disable");
    masks("postgres://db/sift", "postgres://db/sift");
    masks("postgres://shop:@db/sift", "postgres://shop:***@db/sift");
    /* An unencoded '@' in the password: everything up to the last one. */
    masks("postgres://shop:a@b@db/sift", "postgres://shop:***@db/sift");
    /* A ':' after the host (the port) is not a password. */
    masks("postgres://db:5432/sift", "postgres://db:5432/sift");
    masks("host=db password=s3cr3t user=shop", "host=db password=*** user=shop");
    masks("data/sift.db", "data/sift.db");
    masks(NULL, "");
    /* Truncated, still terminated, still masked. */
    char small[16];
    sift_pg_url_mask("postgres://u:s3cr3t@host/db", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(strstr(small, "s3cr3t"));

    assert_true(sift_pg_is_url("postgres://x"));
    assert_true(sift_pg_is_url("PostgreSQL://x"));
    assert_false(sift_pg_is_url("postgres:/x"));
    assert_false(sift_pg_is_url("data/postgres://"));
    assert_false(sift_pg_is_url(NULL));
}

static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        fail_msg("cannot find a free port");
    close(fd);
    return ntohs(a.sin_port);
}

static void test_connect_refused(void **state)
{
    (void)state;
    static const char *const passwords[] = {"s3cr3t-pw", "*", "**", "***", "x"};
    int port = dead_port();
    for (size_t i = 0; i < sizeof passwords / sizeof passwords[0]; i++) {
        char url[256];
        snprintf(url, sizeof url, "postgres://shop:%s@127.0.0.1:%d/sift", passwords[i], port);
        sift_err e = {0};
        PGconn *c = NULL;
        assert_int_equal(sift_pg_connect(url, &c, &e), SIFT_EIO);
        assert_null(c);
        assert_non_null(strstr(e.msg, "cannot reach the PostgreSQL server"));
        assert_non_null(strstr(e.msg, "postgres://shop:***@127.0.0.1"));
        if (strlen(passwords[i]) > 3)
            assert_null(strstr(e.msg, passwords[i]));
        /* The store, the session store and the checkpointer say the same. */
        sift_store *s = NULL;
        assert_int_equal(sift_store_open(url, 0, &s, &e), SIFT_EIO);
        assert_null(s);
        assert_non_null(strstr(e.msg, "***@"));
        sift_session_store *ss = NULL;
        assert_int_equal(sift_session_pg_open(url, NULL, &ss, &e), SIFT_EIO);
        assert_null(ss);
        assert_null(sift_checkpointer_pg_open(url, &e));
        assert_non_null(strstr(e.msg, "cannot reach"));
    }
    sift_err e = {0};
    PGconn *c = NULL;
    assert_int_equal(sift_pg_connect("data/sift.db", &c, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "not a PostgreSQL URL"));
    assert_int_equal(sift_pg_migrate("data/sift.db", &e), SIFT_EINVAL);
}

/* Anything but a postgres:// URL is a SQLite path. */
static void test_dispatch(void **state)
{
    (void)state;
    sift_store *s = NULL;
    sift_err e = {0};
    assert_int_equal(sift_store_open(":memory:", 0, &s, &e), 0);
    assert_string_equal(sift_store_backend(s), "sqlite");
    sift_store_close(s);
    assert_int_equal(sift_store_open("", 0, &s, &e), SIFT_EINVAL);
    assert_int_equal(sift_store_open(NULL, 0, &s, &e), SIFT_EINVAL);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
