/* The "embed" section of sift.yaml and its environment overrides (embed.h).
 * Read from the configuration's JSON document, so the shared config loader
 * needs no knowledge of embedding providers. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/embed.h"
#include "sift/http.h"
#include "sift/vecindex.h"

static int set_str(char **field, const char *v, sift_err *err)
{
    char *d = sift_strdup(v);
    if (!d)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    sift_free(*field);
    *field = d;
    return 0;
}

static int get_str(const cJSON *sec, const char *name, const char *key, char **out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return sift_err_set(err, SIFT_EINVAL, "%s: embed.%s: must be a non-empty string", name,
                            key);
    return set_str(out, v->valuestring, err);
}

static int get_long(const cJSON *sec, const char *name, const char *key, long min, long max,
                    long *out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return sift_err_set(err, SIFT_EINVAL,
                            "%s: embed.%s: must be an integer between %ld and %ld", name, key, min,
                            max);
    *out = (long)v->valuedouble;
    return 0;
}

static int is_openai_host(const char *url)
{
    return strncmp(url, "https://api.openai.com/", 23) == 0 ||
           strcmp(url, "https://api.openai.com") == 0;
}

int sift_embed_config_read(const cJSON *doc, const char *name, sift_embed_config *c, sift_err *err)
{
    memset(c, 0, sizeof *c);
    c->batch_size = 64;
    c->concurrency = 4;
    c->timeout_ms = 30000;
    c->max_retries = 3;
    c->query_cache = 1024;
    long dims = 0;
    int rc = set_str(&c->provider, "hashed", err);
    rc = rc ? rc : set_str(&c->base_url, "https://api.openai.com/v1", err);
    rc = rc ? rc : set_str(&c->model, "text-embedding-3-small", err);
    if (rc)
        goto fail;
    const cJSON *sec = doc ? cJSON_GetObjectItemCaseSensitive(doc, "embed") : NULL;
    if (sec && !cJSON_IsObject(sec) && !cJSON_IsNull(sec)) {
        rc = sift_err_set(err, SIFT_EINVAL, "%s: embed: must be a mapping", name);
        goto fail;
    }
    if (sec && cJSON_IsObject(sec)) {
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(sec, "send_dimensions");
        if (sd && !cJSON_IsBool(sd) && !cJSON_IsNull(sd)) {
            rc = sift_err_set(err, SIFT_EINVAL, "%s: embed.send_dimensions: must be true or false",
                              name);
            goto fail;
        }
        c->send_dimensions = cJSON_IsTrue(sd);
        if ((rc = get_str(sec, name, "provider", &c->provider, err)) ||
            (rc = get_str(sec, name, "base_url", &c->base_url, err)) ||
            (rc = get_str(sec, name, "model", &c->model, err)) ||
            (rc = get_str(sec, name, "api_key", &c->api_key, err)) ||
            (rc = get_long(sec, name, "dimensions", 1, SIFT_VEC_DIMS_MAX, &dims, err)) ||
            (rc = get_long(sec, name, "batch_size", 1, 2048, &c->batch_size, err)) ||
            (rc = get_long(sec, name, "concurrency", 1, 64, &c->concurrency, err)) ||
            (rc = get_long(sec, name, "timeout_ms", 100, 600000, &c->timeout_ms, err)) ||
            (rc = get_long(sec, name, "max_retries", 0, 20, &c->max_retries, err)) ||
            (rc = get_long(sec, name, "query_cache", 0, 1L << 20, &c->query_cache, err)))
            goto fail;
    }
    const char *v;
    if ((v = getenv("SIFT_EMBED_BASE_URL")) && *v &&
        ((rc = set_str(&c->base_url, v, err)) || (rc = set_str(&c->provider, "openai", err))))
        goto fail;
    if ((v = getenv("SIFT_EMBED_PROVIDER")) && *v && (rc = set_str(&c->provider, v, err)))
        goto fail;
    if ((v = getenv("SIFT_EMBED_MODEL")) && *v && (rc = set_str(&c->model, v, err)))
        goto fail;
    if ((v = getenv("SIFT_EMBED_API_KEY")) && *v && (rc = set_str(&c->api_key, v, err)))
        goto fail;
    if (!c->api_key && is_openai_host(c->base_url) && (v = getenv("OPENAI_API_KEY")) && *v &&
        (rc = set_str(&c->api_key, v, err)))
        goto fail;
    if (strcmp(c->provider, "hashed") == 0) {
        c->dims = dims ? (size_t)dims : SIFT_HASHED_DIMS_DEFAULT;
    } else if (strcmp(c->provider, "openai") == 0) {
        if (!dims) {
            rc = sift_err_set(err, SIFT_EINVAL,
                              "%s: embed.dimensions: required with provider openai: the length of "
                              "the model's vectors (1536 for text-embedding-3-small)",
                              name);
            goto fail;
        }
        c->dims = (size_t)dims;
    } else {
        rc = sift_err_set(err, SIFT_EINVAL,
                          "%s: embed.provider: must be one of hashed, openai (got \"%s\")", name,
                          c->provider);
        goto fail;
    }
    return 0;
fail:
    sift_embed_config_free(c);
    return rc;
}

void sift_embed_config_free(sift_embed_config *c)
{
    if (c->api_key)
        explicit_bzero(c->api_key, strlen(c->api_key));
    sift_free(c->api_key);
    sift_free(c->provider);
    sift_free(c->base_url);
    sift_free(c->model);
    memset(c, 0, sizeof *c);
}

int sift_embed_config_embedder(const sift_embed_config *c,
                               sift_http_client *(*client_of)(uv_loop_t *loop, void *udata),
                               void *udata, sift_embedder **out, sift_err *err)
{
    if (strcmp(c->provider, "hashed") == 0) {
        sift_hashed_opts ho = {.dims = c->dims};
        return sift_embedder_hashed_new(&ho, out, err);
    }
    sift_openai_embed_opts o = {
        .base_url = c->base_url,
        .model = c->model,
        .api_key = c->api_key,
        .dims = c->dims,
        .send_dimensions = c->send_dimensions,
        .batch_size = (size_t)c->batch_size,
        .concurrency = (int)c->concurrency,
        .timeout_ms = c->timeout_ms,
        .max_retries = c->max_retries ? (int)c->max_retries : -1,
        .client_of = client_of,
        .client_udata = udata,
    };
    return sift_embedder_openai_new(&o, NULL, out, err);
}
