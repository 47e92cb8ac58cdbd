/* sift.yaml: YAML → JSON tree → checked sift_config. */
#include "sift/config.h"
#include "sift/arena.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- YAML to JSON ---- */

static cJSON *plain_scalar(const char *s, size_t len)
{
    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0)
        return cJSON_CreateNull();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return cJSON_CreateTrue();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return cJSON_CreateFalse();
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s + len && errno == 0 && isfinite(d) && strspn(s, "+-0123456789.eE") == len)
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(s);
}

/* Parses one node starting at the event just read into `ev` (consumed). */
static cJSON *parse_node(yaml_parser_t *p, yaml_event_t *ev, const char *name, sift_err *err,
                         int depth)
{
    if (depth > 64) {
        sift_err_set(err, SIFT_EINVAL, "%s:%zu: nesting deeper than 64 levels", name,
                     ev->start_mark.line + 1);
        yaml_event_delete(ev);
        return NULL;
    }
    cJSON *node = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        sift_err_set(err, SIFT_EINVAL, "%s:%zu: YAML aliases are not supported", name,
                     ev->start_mark.line + 1);
        yaml_event_delete(ev);
        return NULL;
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        node = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                   ? plain_scalar(v, ev->data.scalar.length)
                   : cJSON_CreateString(v);
        yaml_event_delete(ev);
        if (!node)
            sift_err_set(err, SIFT_ENOMEM, "out of memory reading %s", name);
        return node;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
        yaml_event_delete(ev);
        node = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
        if (!node) {
            sift_err_set(err, SIFT_ENOMEM, "out of memory reading %s", name);
            return NULL;
        }
        for (;;) {
            yaml_event_t e;
            if (!yaml_parser_parse(p, &e))
                goto syntax;
            if (e.type == end) {
                yaml_event_delete(&e);
                return node;
            }
            char *key = NULL;
            if (is_map) {
                if (e.type != YAML_SCALAR_EVENT) {
                    sift_err_set(err, SIFT_EINVAL, "%s:%zu: mapping keys must be plain strings",
                                 name, e.start_mark.line + 1);
                    yaml_event_delete(&e);
                    goto fail;
                }
                key = sift_strdup((const char *)e.data.scalar.value);
                size_t line = e.start_mark.line + 1;
                yaml_event_delete(&e);
                if (!key || cJSON_GetObjectItemCaseSensitive(node, key)) {
                    if (key)
                        sift_err_set(err, SIFT_EINVAL, "%s:%zu: key \"%s\" appears twice", name,
                                     line, key);
                    else
                        sift_err_set(err, SIFT_ENOMEM, "out of memory reading %s", name);
                    sift_free(key);
                    goto fail;
                }
                if (!yaml_parser_parse(p, &e)) {
                    sift_free(key);
                    goto syntax;
                }
            }
            cJSON *child = parse_node(p, &e, name, err, depth + 1);
            if (!child) {
                sift_free(key);
                goto fail;
            }
            if (is_map)
                cJSON_AddItemToObject(node, key, child);
            else
                cJSON_AddItemToArray(node, child);
            sift_free(key);
        }
    }
    default:
        sift_err_set(err, SIFT_EINVAL, "%s:%zu: unexpected YAML event", name,
                     ev->start_mark.line + 1);
        yaml_event_delete(ev);
        return NULL;
    }
syntax:
    sift_err_set(err, SIFT_EINVAL, "%s:%zu:%zu: %s", name, p->problem_mark.line + 1,
                 p->problem_mark.column + 1, p->problem ? p->problem : "YAML syntax error");
fail:
    cJSON_Delete(node);
    return NULL;
}

/* Reads with an err of its own: the "empty file" test below looks at err->code,
 * which must describe this parse, not whatever the caller's err held before. */
static cJSON *yaml_to_json(const char *name, const char *text, size_t len, sift_err *err)
{
    yaml_parser_t p;
    yaml_event_t ev;
    cJSON *doc = NULL;
    if (!yaml_parser_initialize(&p)) {
        sift_err_set(err, SIFT_ENOMEM, "out of memory reading %s", name);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            sift_err_set(err, SIFT_EINVAL, "%s:%zu:%zu: %s", name, p.problem_mark.line + 1,
                         p.problem_mark.column + 1, p.problem ? p.problem : "YAML syntax error");
            cJSON_Delete(doc);
            doc = NULL;
            break;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT ||
            ev.type == YAML_SCALAR_EVENT || ev.type == YAML_ALIAS_EVENT) {
            if (doc) {
                yaml_event_delete(&ev);
                sift_err_set(err, SIFT_EINVAL, "%s: only one YAML document is allowed", name);
                cJSON_Delete(doc);
                doc = NULL;
                break;
            }
            doc = parse_node(&p, &ev, name, err, 0);
            if (!doc)
                break;
            continue;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (!doc && err->code == 0) /* empty file */
        doc = cJSON_CreateObject();
    return doc;
}

cJSON *sift_yaml_to_json(const char *name, const char *text, size_t len, sift_err *err)
{
    sift_err local = {0};
    cJSON *doc = yaml_to_json(name, text, len, &local);
    if (!doc)
        sift_err_copy(err, &local);
    return doc;
}

/* ---- checked fields ---- */

struct reader {
    const char *name;
    sift_err *err;
};

static cJSON *section(struct reader *r, cJSON *doc, const char *key)
{
    cJSON *s = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (s && !cJSON_IsObject(s) && !cJSON_IsNull(s)) {
        sift_err_set(r->err, SIFT_EINVAL, "%s: %s: must be a mapping", r->name, key);
        return NULL;
    }
    return s;
}

static int get_string(struct reader *r, cJSON *sec, const char *secname, const char *key,
                      char **out)
{
    cJSON *v = sec ? cJSON_GetObjectItemCaseSensitive(sec, key) : NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    char num[64];
    const char *s = v->valuestring;
    if (cJSON_IsNumber(v)) {
        snprintf(num, sizeof num, "%.17g", v->valuedouble);
        s = num;
    } else if (!cJSON_IsString(v)) {
        return sift_err_set(r->err, SIFT_EINVAL, "%s: %s.%s: must be a string", r->name, secname,
                            key);
    }
    char *d = sift_strdup(s);
    if (!d)
        return sift_err_set(r->err, SIFT_ENOMEM, "out of memory");
    sift_free(*out);
    *out = d;
    return 0;
}

static int get_int(struct reader *r, cJSON *sec, const char *secname, const char *key, long min,
                   long max, long *out)
{
    cJSON *v = sec ? cJSON_GetObjectItemCaseSensitive(sec, key) : NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return sift_err_set(r->err, SIFT_EINVAL,
                            "%s: %s.%s: must be an integer between %ld and %ld", r->name, secname,
                            key, min, max);
    *out = (long)v->valuedouble;
    return 0;
}

#define GET_INT(r, sec, secname, key, min, max, field)                                             \
    do {                                                                                           \
        long v_ = (long)(field);                                                                   \
        if ((rc = get_int(r, sec, secname, key, min, max, &v_)))                                   \
            goto fail;                                                                             \
        (field) = v_;                                                                              \
    } while (0)

static void free_keys(char **keys)
{
    if (!keys)
        return;
    for (char **k = keys; *k; k++)
        sift_free(*k);
    sift_free(keys);
}

/* Splits "a, b,c" into a NULL-terminated array; empty parts are dropped. */
static char **split_keys(const char *s)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **keys = sift_calloc(n + 1, sizeof *keys);
    if (!keys)
        return NULL;
    size_t k = 0;
    while (*s) {
        s += strspn(s, " \t,");
        size_t len = strcspn(s, ",");
        size_t trim = len;
        while (trim > 0 && (s[trim - 1] == ' ' || s[trim - 1] == '\t'))
            trim--;
        if (trim > 0 && !(keys[k++] = sift_strndup(s, trim))) {
            free_keys(keys);
            return NULL;
        }
        s += len;
    }
    return keys;
}

static int read_keys(struct reader *r, cJSON *server, char ***out)
{
    cJSON *v = server ? cJSON_GetObjectItemCaseSensitive(server, "api_keys") : NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v))
        return sift_err_set(r->err, SIFT_EINVAL, "%s: server.api_keys: must be a list of strings",
                            r->name);
    int n = cJSON_GetArraySize(v);
    char **keys = sift_calloc((size_t)n + 1, sizeof *keys);
    if (!keys)
        return sift_err_set(r->err, SIFT_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        cJSON *k = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(k) || !k->valuestring[0]) {
            free_keys(keys);
            return sift_err_set(r->err, SIFT_EINVAL,
                                "%s: server.api_keys[%d]: must be a non-empty string", r->name, i);
        }
        if (!(keys[i] = sift_strdup(k->valuestring))) {
            free_keys(keys);
            return sift_err_set(r->err, SIFT_ENOMEM, "out of memory");
        }
    }
    free_keys(*out);
    *out = keys;
    return 0;
}

static int set_str(char **field, const char *value)
{
    char *d = sift_strdup(value);
    if (!d)
        return SIFT_ENOMEM;
    sift_free(*field);
    *field = d;
    return 0;
}

static int env_overrides(sift_config *c, sift_err *err)
{
    const char *v;
    int rc = 0;
    if ((v = getenv("SIFT_LLM_BASE_URL")) && *v) {
        rc |= set_str(&c->llm.base_url, v);
        rc |= set_str(&c->llm.provider, "openai");
    }
    if ((v = getenv("SIFT_LLM_PROVIDER")) && *v)
        rc |= set_str(&c->llm.provider, v);
    if ((v = getenv("SIFT_LLM_MODEL")) && *v)
        rc |= set_str(&c->llm.model, v);
    if (((v = getenv("SIFT_LLM_API_KEY")) && *v) || ((v = getenv("OPENAI_API_KEY")) && *v))
        rc |= set_str(&c->llm.api_key, v);
    if ((v = getenv("SIFT_DB")) && *v)
        rc |= set_str(&c->store.url, v);
    if ((v = getenv("SIFT_HOST")) && *v)
        rc |= set_str(&c->server.host, v);
    if (rc)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    struct {
        const char *name;
        int *field;
        long min, max;
    } ints[] = {{"SIFT_PORT", &c->server.port, 0, 65535},
                {"SIFT_WORKERS", &c->server.workers, 0, 1024}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (!(v = getenv(ints[i].name)) || !*v)
            continue;
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < ints[i].min || n > ints[i].max)
            return sift_err_set(err, SIFT_EINVAL, "%s: must be an integer between %ld and %ld",
                                ints[i].name, ints[i].min, ints[i].max);
        *ints[i].field = (int)n;
    }
    if ((v = getenv("SIFT_API_KEYS")) && *v) {
        char **keys = split_keys(v);
        if (!keys)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        free_keys(c->server.api_keys);
        c->server.api_keys = keys;
    }
    return 0;
}

static int defaults(sift_config *c)
{
    memset(c, 0, sizeof *c);
    c->server.port = 8080;
    c->server.max_body_bytes = 1 << 20;
    c->server.shutdown_grace_ms = 5000;
    c->server.max_runs = 10000;
    c->server.upstream_connections = 64;
    c->server.max_query_bytes = 2048;
    c->llm.timeout_ms = 60000;
    c->llm.max_retries = 3;
    c->agent.deadline_ms = 30000;
    c->agent.max_steps = 8;
    c->agent.tool_limit = 8;
    c->agent.tool_timeout_ms = 10000;
    /* store.pool (PostgreSQL) */
    c->pgpool.size = 4;
    c->pgpool.pipeline_depth = 8;
    c->pgpool.queue_max = 10000;
    c->pgpool.queue_timeout_ms = 5000;
    c->pgpool.connect_timeout_ms = 5000;
    int rc = set_str(&c->server.host, "127.0.0.1") | set_str(&c->llm.provider, "offline") |
             set_str(&c->llm.base_url, "https://api.openai.com/v1") |
             set_str(&c->store.url, "data/sift.db") | set_str(&c->agent.name, "sift");
    return rc ? SIFT_ENOMEM : 0;
}

/* Runs with an err of its own (zeroed by sift_config_load_text): the checks
 * below read err->code to learn whether a section lookup failed, so an error
 * left in the caller's err must not count as a failure of this load. */
static int load_text(sift_config *c, const char *name, const char *text, size_t len, sift_err *err)
{
    int rc = defaults(c);
    struct reader r = {name, err};
    if (rc) {
        sift_err_set(err, rc, "out of memory");
        goto fail;
    }
    if (text) {
        c->doc = sift_yaml_to_json(name, text, len, err);
        if (!c->doc) {
            rc = err->code ? err->code : SIFT_EINVAL;
            goto fail;
        }
        if (!cJSON_IsObject(c->doc)) {
            rc = sift_err_set(err, SIFT_EINVAL, "%s: the top level must be a mapping", name);
            goto fail;
        }
    }
    cJSON *server = c->doc ? section(&r, c->doc, "server") : NULL;
    cJSON *llm = c->doc ? section(&r, c->doc, "llm") : NULL;
    cJSON *store = c->doc ? section(&r, c->doc, "store") : NULL;
    cJSON *agent = c->doc ? section(&r, c->doc, "agent") : NULL;
    if (err->code) {
        rc = err->code;
        goto fail;
    }
    if ((rc = get_string(&r, server, "server", "host", &c->server.host)) ||
        (rc = get_string(&r, llm, "llm", "provider", &c->llm.provider)) ||
        (rc = get_string(&r, llm, "llm", "base_url", &c->llm.base_url)) ||
        (rc = get_string(&r, llm, "llm", "model", &c->llm.model)) ||
        (rc = get_string(&r, llm, "llm", "api_key", &c->llm.api_key)) ||
        (rc = get_string(&r, store, "store", "url", &c->store.url)) ||
        (rc = get_string(&r, agent, "agent", "name", &c->agent.name)) ||
        (rc = read_keys(&r, server, &c->server.api_keys)))
        goto fail;
    GET_INT(&r, server, "server", "port", 0, 65535, c->server.port);
    GET_INT(&r, server, "server", "workers", 0, 1024, c->server.workers);
    GET_INT(&r, server, "server", "max_body_bytes", 1024, 1L << 30, c->server.max_body_bytes);
    GET_INT(&r, server, "server", "shutdown_grace_ms", 0, 600000, c->server.shutdown_grace_ms);
    GET_INT(&r, server, "server", "max_runs", 1, 1000000, c->server.max_runs);
    GET_INT(&r, server, "server", "max_query_bytes", 16, 1 << 20, c->server.max_query_bytes);
    GET_INT(&r, server, "server", "rate_limit_rps", 0, 1000000, c->server.rate_limit_rps);
    GET_INT(&r, server, "server", "rate_burst", 0, 1000000, c->server.rate_burst);
    GET_INT(&r, server, "server", "upstream_connections", 1, 100000,
            c->server.upstream_connections);
    GET_INT(&r, llm, "llm", "timeout_ms", 100, 3600000, c->llm.timeout_ms);
    GET_INT(&r, llm, "llm", "max_retries", 0, 20, c->llm.max_retries);
    GET_INT(&r, agent, "agent", "deadline_ms", 100, 3600000, c->agent.deadline_ms);
    GET_INT(&r, agent, "agent", "max_steps", 1, 100, c->agent.max_steps);
    GET_INT(&r, agent, "agent", "tool_limit", 1, 1000, c->agent.tool_limit);
    GET_INT(&r, agent, "agent", "tool_timeout_ms", 10, 600000, c->agent.tool_timeout_ms);
    /* store.pool: the PostgreSQL pool of each worker loop */
    cJSON *pgpool = store ? cJSON_GetObjectItemCaseSensitive(store, "pool") : NULL;
    if (pgpool && !cJSON_IsObject(pgpool) && !cJSON_IsNull(pgpool)) {
        rc = sift_err_set(err, SIFT_EINVAL, "%s: store.pool: must be a mapping", name);
        goto fail;
    }
    GET_INT(&r, pgpool, "store.pool", "size", 1, 1000, c->pgpool.size);
    GET_INT(&r, pgpool, "store.pool", "pipeline_depth", 1, 1000, c->pgpool.pipeline_depth);
    GET_INT(&r, pgpool, "store.pool", "queue_max", 1, 10000000, c->pgpool.queue_max);
    GET_INT(&r, pgpool, "store.pool", "queue_timeout_ms", 1, 3600000, c->pgpool.queue_timeout_ms);
    GET_INT(&r, pgpool, "store.pool", "connect_timeout_ms", 1, 600000,
            c->pgpool.connect_timeout_ms);
    if (c->doc) {
        c->tools = cJSON_GetObjectItemCaseSensitive(c->doc, "tools");
        if (c->tools && !cJSON_IsArray(c->tools) && !cJSON_IsNull(c->tools)) {
            rc = sift_err_set(err, SIFT_EINVAL, "%s: tools: must be a list", name);
            goto fail;
        }
    }
    if ((rc = env_overrides(c, err)))
        goto fail;
    if (strcmp(c->llm.provider, "offline") != 0 && strcmp(c->llm.provider, "openai") != 0) {
        rc = sift_err_set(err, SIFT_EINVAL,
                          "%s: llm.provider: must be one of offline, openai (got \"%s\")", name,
                          c->llm.provider);
        goto fail;
    }
    if (!c->llm.model &&
        set_str(&c->llm.model,
                strcmp(c->llm.provider, "offline") == 0 ? "sift-offline-rules" : "gpt-4o-mini")) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto fail;
    }
    return 0;
fail:
    sift_config_free(c);
    return rc;
}

int sift_config_load_text(sift_config *c, const char *name, const char *text, size_t len,
                          sift_err *err)
{
    sift_err local = {0};
    int rc = load_text(c, name, text, len, &local);
    if (rc)
        sift_err_copy(err, &local);
    return rc;
}

int sift_config_load(sift_config *c, const char *path, sift_err *err)
{
    if (!path)
        return sift_config_load_text(c, "(defaults)", NULL, 0, err);
    FILE *f = fopen(path, "rb");
    if (!f) {
        memset(c, 0, sizeof *c);
        return sift_err_set(err, errno == ENOENT ? SIFT_ENOTFOUND : SIFT_EIO,
                            "cannot open config file %s: %s", path, strerror(errno));
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                rc = sift_err_set(err, SIFT_ETOOBIG, "%s: larger than 16 MB", path);
                break;
            }
            char *t = sift_realloc(text, cap);
            if (!t) {
                rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
                break;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    if (rc == 0)
        rc = sift_config_load_text(c, path, text ? text : "", len, err);
    else
        memset(c, 0, sizeof *c);
    sift_free(text);
    return rc;
}

void sift_config_free(sift_config *c)
{
    sift_free(c->server.host);
    free_keys(c->server.api_keys);
    sift_free(c->llm.provider);
    sift_free(c->llm.base_url);
    sift_free(c->llm.model);
    sift_free(c->llm.api_key);
    sift_free(c->store.url);
    sift_free(c->agent.name);
    cJSON_Delete(c->doc);
    memset(c, 0, sizeof *c);
}
