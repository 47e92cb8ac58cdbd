/* The stream fast path (src/llm/fastchunk.c): the chunks it must take, the
 * ones it must leave to cJSON, and a differential check against cJSON over
 * every one-byte edit of the sample chunks (tests/fuzz/fuzz_fastchunk.c
 * does the same with libFuzzer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/fastchunk_oracle.h"
#include "llm/fastchunk.h"

static const char openai_chunk[] =
    "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\",\"created\":1765000000,"
    "\"model\":\"mock\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":"
    "{\"content\":\" Nike\"},\"logprobs\":null,\"finish_reason\":null}]}";

static const char args_chunk[] =
    "{\"id\":\"chatcmpl-mock-0\",\"object\":\"chat.completion.chunk\",\"created\":1765000000,"
    "\"model\":\"mock\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":"
    "{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"sku\\\":\\\"NIKE\"}}]},"
    "\"logprobs\":null,\"finish_reason\":null}]}";

static int take(const char *s, const char **c, size_t *n)
{
    return sift_fastchunk_content(s, strlen(s), c, n);
}

static void test_accepts_common_chunks(void **state)
{
    const char *c;
    size_t n;
    assert_int_equal(take(openai_chunk, &c, &n), 1);
    assert_int_equal(n, 5);
    assert_memory_equal(c, " Nike", 5);
    assert_int_equal(take(" {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],"
                          "\"usage\":null} \r\n",
                          &c, &n),
                     1);
    assert_int_equal(n, 0);
    assert_int_equal(take("{\"choices\":[{\"index\":0,\"delta\":null}],\"error\":null}", &c, &n),
                     1);
    assert_null(c);
    assert_int_equal(take("{\"choices\":[{\"delta\":{\"content\":null,\"tool_calls\":null}}],"
                          "\"x\":[1,-0.5e+3,true,false,null,{\"a\":\"\\n\\u00e9\"}]}",
                          &c, &n),
                     1);
    assert_null(c);
    /* UTF-8 passes through as bytes, as cJSON gives it */
    assert_int_equal(take("{\"choices\":[{\"delta\":{\"content\":\"caf\xc3\xa9\"}}]}", &c, &n), 1);
    assert_int_equal(n, 5);
}

static int read_chunk(const char *s, sift_fastchunk *f)
{
    return sift_fastchunk_read(s, strlen(s), f);
}

static void test_reads_argument_fragments(void **state)
{
    sift_fastchunk f;
    char dec[64];
    assert_int_equal(read_chunk(args_chunk, &f), 1);
    assert_true(f.has_args);
    assert_null(f.content);
    assert_int_equal(f.args_index, 1);
    size_t n = sift_fastchunk_unescape(f.args, f.args_len, dec);
    assert_int_equal(n, 12);
    assert_memory_equal(dec, "{\"sku\":\"NIKE", 12);
    assert_int_equal(
        read_chunk("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":null,"
                   "\"type\":\"function\",\"function\":{\"name\":null,\"arguments\":"
                   "\"\\\\\\/\\b\\f\\n\\r\\t\"}}]}}]}",
                   &f),
        1);
    n = sift_fastchunk_unescape(f.args, f.args_len, dec);
    assert_int_equal(n, 7);
    assert_memory_equal(dec, "\\/\b\f\n\r\t", 7);
    /* text-only callers do not take fragments */
    const char *c;
    assert_int_equal(take(args_chunk, &c, &n), 0);
    /* the first fragment names the call */
    assert_int_equal(read_chunk("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":2,\"id\":"
                                "\"call_7Qm2\",\"type\":\"function\",\"function\":{\"name\":"
                                "\"check_inventory\",\"arguments\":\"\"}}]}}]}",
                                &f),
                     1);
    assert_true(f.has_args);
    assert_int_equal(f.args_index, 2);
    assert_int_equal(f.args_len, 0);
    assert_int_equal(f.call_id_len, 9);
    assert_memory_equal(f.call_id, "call_7Qm2", 9);
    assert_int_equal(f.call_name_len, 15);
    assert_memory_equal(f.call_name, "check_inventory", 15);
    assert_int_equal(read_chunk(args_chunk, &f), 1);
    assert_null(f.call_id);
    assert_null(f.call_name);
    static const char *const refused[] = {
        /* escaped or non-string id and name: cJSON's path */
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\\u0031\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":"
        "{\"name\":\"f\\n\",\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":1,\"function\":"
        "{\"name\":\"f\",\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":"
        "{\"name\":\"f\",\"name\":\"g\",\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":"
        "{\"name\":\"f\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"\\u0041\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"a\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-1,\"function\":{\"arguments\":"
        "\"a\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1.0,\"function\":{\"arguments\":"
        "\"a\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"a\"}},{\"index\":1,\"function\":{\"arguments\":\"b\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"x\",\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"a\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"a\",\"arguments\":\"b\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{}}]}}]}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (read_chunk(refused[i], &f))
            fail_msg("accepted: %s", refused[i]);
}

static void test_reads_finish_reason(void **state)
{
    sift_fastchunk f;
    assert_int_equal(read_chunk("{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},"
                                "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
                                "\"usage\":null}",
                                &f),
                     1);
    assert_false(f.has_args);
    assert_null(f.content);
    assert_int_equal(f.finish_len, 10);
    assert_memory_equal(f.finish, "tool_calls", 10);
    /* with the last piece of text, and "" (which the stream reads as none) */
    assert_int_equal(
        read_chunk("{\"choices\":[{\"delta\":{\"content\":\"end.\"},\"finish_reason\":\"stop\"}]}",
                   &f),
        1);
    assert_int_equal(f.content_len, 4);
    assert_int_equal(f.finish_len, 4);
    assert_int_equal(read_chunk("{\"choices\":[{\"delta\":{},\"finish_reason\":\"\"}]}", &f), 1);
    assert_non_null(f.finish);
    assert_int_equal(f.finish_len, 0);
    assert_int_equal(read_chunk("{\"choices\":[{\"delta\":{},\"finish_reason\":null}]}", &f), 1);
    assert_null(f.finish);
    /* text-only callers do not take it */
    const char *c;
    size_t n;
    assert_int_equal(
        take("{\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}", &c, &n),
        0);
    static const char *const refused[] = {
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"st\\u006fp\"}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"a\\nb\"}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":1}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"finish_reason\":null}]}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (read_chunk(refused[i], &f))
            fail_msg("accepted: %s", refused[i]);
}

static void test_reads_usage(void **state)
{
    sift_fastchunk f;
    assert_int_equal(read_chunk("{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":412,"
                                "\"completion_tokens\":71,\"total_tokens\":483,"
                                "\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
                                &f),
                     1);
    assert_int_equal(f.n_choices, 0);
    assert_true(f.has_usage);
    assert_int_equal(f.usage[0], 412);
    assert_int_equal(f.usage[1], 71);
    assert_int_equal(f.usage[2], 483);
    /* on the finish chunk, with counts absent or null */
    assert_int_equal(read_chunk("{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],"
                                "\"usage\":{\"prompt_tokens\":null,\"total_tokens\":5}}",
                                &f),
                     1);
    assert_int_equal(f.n_choices, 1);
    assert_int_equal(f.usage[0], 0);
    assert_int_equal(f.usage[1], 0);
    assert_int_equal(f.usage[2], 5);
    /* text-only callers take neither */
    const char *c;
    size_t n;
    assert_int_equal(take("{\"choices\":[],\"usage\":{}}", &c, &n), 0);
    assert_int_equal(take("{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{}}", &c, &n),
                     0);
    static const char *const refused[] = {
        "{\"choices\":[],\"usage\":{\"total_tokens\":-1}}",
        "{\"choices\":[],\"usage\":{\"total_tokens\":1.5}}",
        "{\"choices\":[],\"usage\":{\"total_tokens\":1e3}}",
        "{\"choices\":[],\"usage\":{\"total_tokens\":\"3\"}}",
        "{\"choices\":[],\"usage\":{\"total_tokens\":1234567890}}",
        "{\"choices\":[],\"usage\":{\"total_tokens\":1,\"total_tokens\":2}}",
        "{\"choices\":[],\"usage\":[]}",
        "{\"choices\":[],\"usage\":{\"tot\\u0061l_tokens\":1}}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (read_chunk(refused[i], &f))
            fail_msg("accepted: %s", refused[i]);
}

static void test_leaves_the_rest_to_cjson(void **state)
{
    static const char *const refused[] = {
        "",
        "[DONE]",
        "{}",
        "{\"choices\":[]}",
        "{\"choices\":null}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}},{\"delta\":{}}]}",
        "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"a\"}}]}",
        "{\"choices\":[{\"index\":0.0,\"delta\":{\"content\":\"a\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\\\"b\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"choices\":[]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{}}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"error\":{\"message\":\"x\"}}",
        "{\"ch\\u006fices\":[{\"delta\":{\"content\":\"a\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}]} x",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"x\":\"\\ud800\"}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"x\":01}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\tb\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],}",
        "\xef\xbb\xbf{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}",
        "{\"choices\":[{\"delta\":[]}]}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *c;
        size_t n;
        if (take(refused[i], &c, &n))
            fail_msg("accepted: %s", refused[i]);
    }
}

/* Every deletion of one byte and every replacement of one byte by a
 * character that matters to JSON: whatever the scanner accepts, cJSON reads
 * the same way. */
static void test_agrees_with_cjson(void **state)
{
    static const char *const seeds[] = {
        openai_chunk,
        args_chunk,
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"\\n\\\"x\\t\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
        "\"finish_reason\":null}],\"usage\":null,\"n\":[1.5e-3,{\"k\":\"\\u0041\"}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}",
        "{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":41,\"completion_tokens\":7,"
        "\"total_tokens\":48,\"d\":{\"x\":0}}}",
    };
    static const char alphabet[] = "{}[],:\"\\ 0-1.eE+nulltrfs\x01\x80";
    char buf[512];
    long accepted = 0, accepted_args = 0, accepted_finish = 0, accepted_start = 0,
         accepted_usage = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        size_t len = strlen(seeds[s]);
        assert_true(len < sizeof buf);
        for (size_t i = 0; i < len; i++) {
            for (size_t a = 0; a <= sizeof alphabet - 1; a++) {
                size_t n = len;
                memcpy(buf, seeds[s], len);
                if (a == sizeof alphabet - 1) { /* delete byte i */
                    memmove(buf + i, buf + i + 1, len - i - 1);
                    n--;
                } else {
                    buf[i] = alphabet[a];
                }
                const char *c = NULL;
                size_t cn = 0;
                sift_fastchunk f;
                if (sift_fastchunk_content(buf, n, &c, &cn)) {
                    accepted++;
                    if (!fastchunk_oracle(buf, n, c, cn))
                        fail_msg("differs from cJSON: %.*s", (int)n, buf);
                }
                if (sift_fastchunk_read(buf, n, &f)) {
                    accepted_args += f.has_args;
                    accepted_finish += f.finish != NULL;
                    accepted_start += f.has_args && f.call_id && f.call_name;
                    accepted_usage += f.has_usage;
                    if (!fastchunk_oracle_read(buf, n, &f))
                        fail_msg("differs from cJSON: %.*s", (int)n, buf);
                }
            }
        }
    }
    /* the edits did exercise the accepting paths */
    assert_true(accepted > 100);
    assert_true(accepted_args > 100);
    assert_true(accepted_finish > 50);
    assert_true(accepted_start > 50);
    assert_true(accepted_usage > 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_common_chunks),
        cmocka_unit_test(test_reads_argument_fragments),
        cmocka_unit_test(test_reads_finish_reason),
        cmocka_unit_test(test_reads_usage),
        cmocka_unit_test(test_leaves_the_rest_to_cjson),
        cmocka_unit_test(test_agrees_with_cjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
