/* Growable buffer, JSON escaping and sift_err. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"

static void test_append_and_nul(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_buf_puts(&b, "hello"), 0);
    assert_int_equal(sift_buf_putc(&b, ' '), 0);
    assert_int_equal(sift_buf_printf(&b, "%d %s", 42, "world"), 0);
    assert_string_equal(b.data, "hello 42 world");
    assert_int_equal(b.len, 14);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(sift_buf_putc(&b, 'x'), 0);
    assert_int_equal(b.len, 10014);
    assert_int_equal(b.data[b.len], '\0');
    sift_buf_consume(&b, 6);
    assert_memory_equal(b.data, "42 world", 8);
    sift_buf_consume(&b, 1000000);
    assert_int_equal(b.len, 0);
    sift_buf_free(&b);
}

static void test_append_from_itself(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_buf_puts(&b, "abcdefgh");
    for (int i = 0; i < 12; i++) /* each append outgrows the allocation */
        assert_int_equal(sift_buf_append(&b, b.data, b.len), 0);
    assert_int_equal(b.len, 8u << 12);
    assert_memory_equal(b.data + b.len - 8, "abcdefgh", 8);
    sift_buf_free(&b);
}

static void test_limit_is_all_or_nothing(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 8);
    assert_int_equal(sift_buf_puts(&b, "12345"), 0);
    assert_int_equal(sift_buf_puts(&b, "6789"), SIFT_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "12345");
    assert_int_equal(sift_buf_printf(&b, "%s", "abcd"), SIFT_ETOOBIG);
    assert_int_equal(sift_buf_json_escape(&b, "\n\n", 2), SIFT_ETOOBIG);
    assert_string_equal(b.data, "12345");
    assert_int_equal(sift_buf_puts(&b, "678"), 0);
    assert_int_equal(b.len, 8);
    assert_int_equal(sift_buf_append(&b, "", 0), 0); /* at the limit, with room left */
    assert_int_equal(sift_buf_putc(&b, '9'), SIFT_ETOOBIG);
    assert_string_equal(b.data, "12345678");
    sift_buf_free(&b);

    /* with room left (no realloc), bytes of the buffer itself */
    sift_buf_init(&b, 0);
    assert_int_equal(sift_buf_puts(&b, "abc"), 0);
    assert_true(b.cap > 16);
    assert_int_equal(sift_buf_append(&b, b.data + 1, 2), 0);
    assert_string_equal(b.data, "abcbc");
    sift_buf_free(&b);
}

static void test_json_escape(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    const char in[] = "a\"b\\c\nd\re\tf\x01g é 日本 \xff\xc3(";
    assert_int_equal(sift_buf_json_escape(&b, in, sizeof in - 1), 0);
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd\\re\\tf\\u0001g é 日本 \xef\xbf\xbd\xef\xbf\xbd(");
    sift_buf_reset(&b);
    /* overlong encoding and surrogates are invalid too */
    assert_int_equal(sift_buf_json_escape(&b, "\xc0\xaf\xed\xa0\x80", 5), 0);
    assert_string_equal(b.data, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    sift_buf_reset(&b);
    /* an embedded NUL is data, not the end */
    assert_int_equal(sift_buf_json_escape(&b, "a\0b", 3), 0);
    assert_string_equal(b.data, "a\\u0000b");
    /* each kind of byte to escape at every offset of a 40-byte string (the
     * scan goes 16 bytes at a time where it can) */
    static const char *const special[][2] = {
        {"\"", "\\\""},   {"\\", "\\\\"},           {"\n", "\\n"},           {"\x1f", "\\u001f"},
        {"\x7f", "\x7f"}, {"\xc3\xa9", "\xc3\xa9"}, {"\xff", "\xef\xbf\xbd"}};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) {
        for (size_t at = 0; at < 40; at++) {
            char in2[64], want[80];
            memset(in2, 'x', 40);
            size_t sl = strlen(special[k][0]);
            memcpy(in2 + at, special[k][0], sl);
            memset(in2 + at + sl, 'y', 40 - at);
            snprintf(want, sizeof want, "%.*s%s%.*s", (int)at, in2, special[k][1], (int)(40 - at),
                     in2 + at + sl);
            sift_buf_reset(&b);
            assert_int_equal(sift_buf_json_escape(&b, in2, at + sl + 40 - at), 0);
            if (strcmp(b.data, want) != 0)
                fail_msg("byte %zu at %zu: %s, want %s", k, at, b.data, want);
        }
    }
    sift_buf_free(&b);
}

static void test_detach(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    size_t len = 99;
    char *empty = sift_buf_detach(&b, &len);
    assert_string_equal(empty, "");
    assert_int_equal(len, 0);
    sift_free(empty);
    sift_buf_puts(&b, "kept");
    char *s = sift_buf_detach(&b, &len);
    assert_string_equal(s, "kept");
    assert_int_equal(len, 4);
    assert_null(b.data);
    sift_free(s);
}

static void test_oom(void **state)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    sift_mem_fail_after(0);
    assert_int_equal(sift_buf_puts(&b, "x"), SIFT_ENOMEM);
    assert_int_equal(sift_buf_json_escape(&b, "a\nb", 3), SIFT_ENOMEM);
    sift_mem_fail_after(-1);
    assert_int_equal(b.len, 0);
    sift_buf_free(&b);
}

static void test_err(void **state)
{
    sift_err e = {0};
    assert_int_equal(sift_err_set(&e, SIFT_EINVAL, "location: must be one of %s", "HAN, DAD"),
                     SIFT_EINVAL);
    assert_string_equal(e.msg, "location: must be one of HAN, DAD");
    char longmsg[600];
    memset(longmsg, 'x', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    sift_err_set(&e, SIFT_ETOOBIG, "%s", longmsg);
    assert_int_equal(strlen(e.msg), SIFT_ERR_MSG_MAX - 1);
    assert_string_equal(e.msg + SIFT_ERR_MSG_MAX - 4, "...");
    assert_int_equal(sift_err_set(NULL, SIFT_EIO, "ignored"), SIFT_EIO);
    sift_err copy = {0};
    assert_int_equal(sift_err_copy(&copy, &e), SIFT_ETOOBIG);
    sift_err_clear(&e);
    assert_int_equal(e.code, 0);
    assert_string_equal(e.msg, "");
    assert_string_equal(sift_err_name(SIFT_ETIMEDOUT), "deadline_exceeded");
    assert_string_equal(sift_err_name(SIFT_ECANCELED), "cancelled");
    assert_string_equal(sift_err_name(-999), "unknown");
    for (int c = 0; c >= SIFT_ELIMIT; c--)
        assert_string_not_equal(sift_err_name(c), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_nul),
        cmocka_unit_test(test_append_from_itself),
        cmocka_unit_test(test_limit_is_all_or_nothing),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
