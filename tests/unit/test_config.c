/* sift.yaml loading: defaults, values, environment overrides, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/config.h"

static const char *env_names[] = {"SIFT_LLM_PROVIDER", "SIFT_LLM_BASE_URL", "SIFT_LLM_MODEL",
                                  "SIFT_LLM_API_KEY",  "OPENAI_API_KEY",    "SIFT_DB",
                                  "SIFT_HOST",         "SIFT_PORT",         "SIFT_WORKERS",
                                  "SIFT_API_KEYS"};

static int clean_env(void **state)
{
    for (size_t i = 0; i < sizeof env_names / sizeof *env_names; i++)
        unsetenv(env_names[i]);
    return 0;
}

static int load(sift_config *c, const char *yaml, sift_err *err)
{
    return sift_config_load_text(c, "sift.yaml", yaml, strlen(yaml), err);
}

static void test_defaults(void **state)
{
    sift_config c;
    sift_err err = {0};
    assert_int_equal(sift_config_load(&c, NULL, &err), 0);
    assert_string_equal(c.server.host, "127.0.0.1");
    assert_int_equal(c.server.port, 8080);
    assert_string_equal(c.llm.provider, "offline");
    assert_string_equal(c.llm.model, "sift-offline-rules");
    assert_null(c.llm.api_key);
    assert_null(c.server.api_keys);
    assert_int_equal(c.server.rate_limit_rps, 0);
    assert_int_equal(c.server.rate_burst, 0);
    assert_string_equal(c.store.url, "data/sift.db");
    assert_int_equal(c.agent.deadline_ms, 30000);
    assert_null(c.tools);
    sift_config_free(&c);
}

static const char full[] = "server:\n"
                           "  host: 0.0.0.0\n"
                           "  port: 9090\n"
                           "  workers: 2\n"
                           "  api_keys: [\"k1\", 'k2']\n"
                           "  rate_limit_rps: 5\n"
                           "  rate_burst: 10\n"
                           "llm:\n"
                           "  provider: openai\n"
                           "  base_url: http://127.0.0.1:8000/v1\n"
                           "  model: qwen2.5\n"
                           "agent:\n"
                           "  deadline_ms: 1500\n"
                           "tools:\n"
                           "  - name: check_inventory\n"
                           "    url: \"http://inventory/{sku}\"\n"
                           "    timeout_ms: 200\n"
                           "    enabled: true\n"
                           "    note: ~\n";

static void test_values_and_tools(void **state)
{
    sift_config c;
    sift_err err = {0};
    assert_int_equal(load(&c, full, &err), 0);
    assert_string_equal(c.server.host, "0.0.0.0");
    assert_int_equal(c.server.port, 9090);
    assert_int_equal(c.server.workers, 2);
    assert_string_equal(c.server.api_keys[0], "k1");
    assert_string_equal(c.server.api_keys[1], "k2");
    assert_null(c.server.api_keys[2]);
    assert_int_equal(c.server.rate_limit_rps, 5);
    assert_int_equal(c.server.rate_burst, 10);
    assert_string_equal(c.llm.provider, "openai");
    assert_string_equal(c.llm.model, "qwen2.5");
    assert_int_equal(c.agent.deadline_ms, 1500);
    assert_true(cJSON_IsArray(c.tools));
    cJSON *t = cJSON_GetArrayItem(c.tools, 0);
    assert_string_equal(cJSON_GetObjectItem(t, "url")->valuestring, "http://inventory/{sku}");
    assert_int_equal(cJSON_GetObjectItem(t, "timeout_ms")->valueint, 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(t, "enabled")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(t, "note")));
    sift_config_free(&c);
}

static void test_environment_overrides(void **state)
{
    setenv("SIFT_LLM_BASE_URL", "http://127.0.0.1:9/v1", 1);
    setenv("OPENAI_API_KEY", "sk-fallback", 1);
    setenv("SIFT_PORT", "7000", 1);
    setenv("SIFT_API_KEYS", " a , b,,c ", 1);
    setenv("SIFT_DB", "/tmp/x.db", 1);
    sift_config c;
    sift_err err = {0};
    assert_int_equal(load(&c, "llm:\n  provider: offline\n", &err), 0);
    assert_string_equal(c.llm.provider, "openai"); /* a base URL selects openai */
    assert_string_equal(c.llm.base_url, "http://127.0.0.1:9/v1");
    assert_string_equal(c.llm.model, "gpt-4o-mini");
    assert_string_equal(c.llm.api_key, "sk-fallback");
    assert_int_equal(c.server.port, 7000);
    assert_string_equal(c.server.api_keys[0], "a");
    assert_string_equal(c.server.api_keys[1], "b");
    assert_string_equal(c.server.api_keys[2], "c");
    assert_null(c.server.api_keys[3]);
    assert_string_equal(c.store.url, "/tmp/x.db");
    sift_config_free(&c);

    setenv("SIFT_LLM_API_KEY", "sk-primary", 1);
    assert_int_equal(load(&c, "", &err), 0);
    assert_string_equal(c.llm.api_key, "sk-primary");
    sift_config_free(&c);

    setenv("SIFT_PORT", "70000", 1);
    assert_int_equal(load(&c, "", &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "SIFT_PORT: must be an integer between 0 and 65535");
    clean_env(NULL);
}

static void expect_error(const char *yaml, const char *msg)
{
    sift_config c;
    sift_err err = {0};
    assert_int_equal(load(&c, yaml, &err), SIFT_EINVAL);
    assert_string_equal(err.msg, msg);
    assert_null(c.doc); /* nothing left to free */
}

static void test_errors(void **state)
{
    expect_error("server:\n  port: 99999\n",
                 "sift.yaml: server.port: must be an integer between 0 and 65535");
    expect_error("server:\n  port: 80.5\n",
                 "sift.yaml: server.port: must be an integer between 0 and 65535");
    expect_error("server:\n  rate_burst: -1\n",
                 "sift.yaml: server.rate_burst: must be an integer between 0 and 1000000");
    expect_error("server: 3\n", "sift.yaml: server: must be a mapping");
    expect_error("llm:\n  model: [a]\n", "sift.yaml: llm.model: must be a string");
    expect_error("llm:\n  provider: claude\n",
                 "sift.yaml: llm.provider: must be one of offline, openai (got \"claude\")");
    expect_error("server:\n  port: 1\n  port: 2\n", "sift.yaml:3: key \"port\" appears twice");
    expect_error("a: &x 1\nb: *x\n", "sift.yaml:2: YAML aliases are not supported");
    expect_error("- 1\n- 2\n", "sift.yaml: the top level must be a mapping");
    expect_error("tools: {a: 1}\n", "sift.yaml: tools: must be a list");
    expect_error("server:\n  api_keys: [\"\"]\n",
                 "sift.yaml: server.api_keys[0]: must be a non-empty string");
    sift_config c;
    sift_err err = {0};
    assert_int_equal(load(&c, "server:\n  port: [1\n", &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "sift.yaml:"));
    assert_int_equal(sift_config_load(&c, "/nonexistent/sift.yaml", &err), SIFT_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/sift.yaml"));
}

/* store.pool: the PostgreSQL pool of each worker loop. */
static void test_pgpool(void **state)
{
    (void)state;
    sift_config c;
    sift_err e = {0};
    assert_int_equal(load(&c, "store: {url: x}\n", &e), 0);
    assert_int_equal(c.pgpool.size, 4);
    assert_int_equal(c.pgpool.pipeline_depth, 8);
    assert_int_equal(c.pgpool.queue_max, 10000);
    assert_int_equal(c.pgpool.queue_timeout_ms, 5000);
    assert_int_equal(c.pgpool.connect_timeout_ms, 5000);
    sift_config_free(&c);
    assert_int_equal(load(&c,
                          "store:\n  pool:\n    size: 2\n    pipeline_depth: 1\n"
                          "    queue_max: 50\n    queue_timeout_ms: 250\n"
                          "    connect_timeout_ms: 900\n",
                          &e),
                     0);
    assert_int_equal(c.pgpool.size, 2);
    assert_int_equal(c.pgpool.pipeline_depth, 1);
    assert_int_equal(c.pgpool.queue_max, 50);
    assert_int_equal(c.pgpool.queue_timeout_ms, 250);
    assert_int_equal(c.pgpool.connect_timeout_ms, 900);
    sift_config_free(&c);
    assert_int_equal(load(&c, "store:\n  pool:\n    size: 0\n", &e), SIFT_EINVAL);
    assert_string_equal(e.msg, "sift.yaml: store.pool.size: must be an integer between 1 and 1000");
    sift_err_clear(&e);
    assert_int_equal(load(&c, "store:\n  pool: 3\n", &e), SIFT_EINVAL);
    assert_string_equal(e.msg, "sift.yaml: store.pool: must be a mapping");
}

/* A sift_err that still holds an earlier error must not make a good load fail
 * (the loader used to read err->code to detect its own failures), and a bad
 * load must report its own error, not the stale one. */
static void test_stale_err(void **state)
{
    (void)state;
    sift_config c;
    sift_err err = {0};
    sift_err_set(&err, SIFT_EIO, "an earlier failure");
    assert_int_equal(load(&c, "server:\n  port: 9000\n", &err), 0);
    assert_int_equal(c.server.port, 9000);
    sift_config_free(&c);
    assert_int_equal(load(&c, "", &err), 0); /* empty file: defaults */
    assert_int_equal(c.server.port, 8080);
    sift_config_free(&c);
    sift_err_set(&err, SIFT_EIO, "an earlier failure");
    assert_int_equal(load(&c, "server: 3\n", &err), SIFT_EINVAL);
    assert_string_equal(err.msg, "sift.yaml: server: must be a mapping");
    /* without a sift_err, a syntax error is still an error, not an empty file */
    assert_int_equal(load(&c, "server:\n  port: [1\n", NULL), SIFT_EINVAL);
    assert_null(sift_yaml_to_json("x.yaml", "a: [1\n", 6, NULL));
    cJSON *doc = sift_yaml_to_json("x.yaml", "", 0, &err);
    assert_non_null(doc);
    cJSON_Delete(doc);
}

static void test_oom(void **state)
{
    for (long n = 0; n < 60; n++) {
        sift_config c;
        sift_err err = {0};
        sift_mem_fail_after(n);
        int rc = load(&c, full, &err);
        sift_mem_fail_after(-1);
        if (rc == 0)
            sift_config_free(&c);
        else
            assert_int_equal(rc, SIFT_ENOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_values_and_tools, clean_env),
        cmocka_unit_test_setup(test_environment_overrides, clean_env),
        cmocka_unit_test_setup(test_errors, clean_env),
        cmocka_unit_test_setup(test_oom, clean_env),
        cmocka_unit_test_setup(test_pgpool, clean_env),
        cmocka_unit_test_setup(test_stale_err, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
