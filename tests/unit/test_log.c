/* Logging: every line is one valid JSON object, whatever the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "sift/log.h"

static FILE *capture;

static int setup(void **state)
{
    capture = tmpfile();
    sift_log_set_fd(fileno(capture));
    sift_log_set_level(SIFT_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    sift_log_set_fd(2);
    fclose(capture);
    return 0;
}

/* Reads back everything logged since the last call: returns the number of
 * lines, all of which must be JSON, and stores the first `max` of them. */
static int read_lines(cJSON **out, int max)
{
    static long pos;
    fflush(capture);
    fseek(capture, pos, SEEK_SET);
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, capture)) > 0) {
        assert_true(line[len - 1] == '\n');
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!j)
            fail_msg("not JSON: %s", line);
        if (n < max)
            out[n] = j;
        else
            cJSON_Delete(j);
        n++;
    }
    pos = ftell(capture);
    free(line);
    return n;
}

static const char *str(cJSON *j, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_fields(void **state)
{
    sift_log(SIFT_LOG_INFO, "r-1", "\"tool\":\"get_price\",\"ms\":3", "tool %s finished", "x");
    sift_info(NULL, "quote \" backslash \\ newline \n tab \t bell \a utf8 é bad \xff");
    cJSON *l[4];
    assert_int_equal(read_lines(l, 4), 2);
    assert_string_equal(str(l[0], "level"), "info");
    assert_string_equal(str(l[0], "run"), "r-1");
    assert_string_equal(str(l[0], "msg"), "tool x finished");
    assert_string_equal(str(l[0], "tool"), "get_price");
    assert_int_equal(cJSON_GetObjectItem(l[0], "ms")->valueint, 3);
    assert_int_equal(strlen(str(l[0], "ts")), 24);
    assert_null(str(l[1], "run"));
    assert_string_equal(str(l[1], "msg"),
                        "quote \" backslash \\ newline \n tab \t bell \a utf8 é bad \xef\xbf\xbd");
    cJSON_Delete(l[0]);
    cJSON_Delete(l[1]);
}

static void test_levels(void **state)
{
    assert_int_equal(sift_log_level_parse("WARN"), SIFT_LOG_WARN);
    assert_int_equal(sift_log_level_parse("off"), SIFT_LOG_OFF);
    assert_int_equal(sift_log_level_parse("loud"), -1);
    sift_log_set_level(SIFT_LOG_WARN);
    sift_debug(NULL, "dropped");
    sift_info(NULL, "dropped");
    sift_warn(NULL, "kept");
    sift_error("r", "kept");
    cJSON *l[4];
    assert_int_equal(read_lines(l, 4), 2);
    assert_string_equal(str(l[0], "level"), "warn");
    assert_string_equal(str(l[1], "level"), "error");
    cJSON_Delete(l[0]);
    cJSON_Delete(l[1]);
    sift_log_set_level(SIFT_LOG_DEBUG);
}

static void test_long_message_truncated(void **state)
{
    char *big = malloc(10000);
    /* multi-byte characters everywhere, so a careless cut would split one */
    for (int i = 0; i + 2 < 10000; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[9998] = '\0';
    sift_info("r", "%s", big);
    free(big);
    cJSON *l[1];
    assert_int_equal(read_lines(l, 1), 1);
    const char *m = str(l[0], "msg");
    assert_true(strlen(m) <= 2048 + 3);
    assert_string_equal(m + strlen(m) - 3, "...");
    cJSON_Delete(l[0]);
}

static void *writer(void *arg)
{
    for (int i = 0; i < 500; i++)
        sift_log(SIFT_LOG_INFO, "thread", "\"i\":1", "line %d from %d %s", i, (int)(intptr_t)arg,
                 "padding padding padding padding padding padding padding padding");
    return NULL;
}

static void test_threads_never_interleave(void **state)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cJSON *l[1];
    /* read_lines fails the test on any broken line */
    assert_int_equal(read_lines(l, 0), 4 * 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_long_message_truncated),
        cmocka_unit_test(test_threads_never_interleave),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
