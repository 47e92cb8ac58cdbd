/* HTTP tools: sift.yaml `tools:` entries turned into run-time schemas and
 * tools that call a service through the loop's curl-on-uv client. */
#include "sift/httptool.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "tools/internal.h"

#define EXCERPT_MAX 200

struct httptool {
    sift_tool tool; /* tool.udata points back here */
    sift_schema schema;
    sift_field *fields;
    size_t nfields;
    char *name;
    char *description;
    const char *method; /* static */
    char *url;          /* the template */
    char **headers;     /* NULL-terminated "Name: value", secrets expanded */
    size_t nheaders;
    int64_t timeout_ms;
    bool body_json;
    const sift_httptools *set;
};

struct sift_httptools {
    struct httptool **tools;
    size_t n;
    sift_httptools_opts opts;
};

/* ---- loading ---- */

/* Error context: "tools[i].key". */
struct where {
    size_t i;
    sift_err *err;
};

static int bad(const struct where *w, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(const struct where *w, const char *key, const char *fmt, ...)
{
    char msg[SIFT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sift_err_set(w->err, SIFT_EINVAL, "tools[%zu]%s%s: %s", w->i, key[0] ? "." : "", key,
                        msg);
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(s, *list) == 0)
            return true;
    }
    return false;
}

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    sift_free(s);
}

static void tool_free(struct httptool *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nfields; i++) {
        sift_free((char *)t->fields[i].name);
        sift_free((char *)t->fields[i].description);
        sift_free((char *)t->fields[i].values);
    }
    sift_free(t->fields);
    sift_free(t->name);
    sift_free(t->description);
    sift_free(t->url);
    if (t->headers) {
        for (size_t i = 0; i < t->nheaders; i++)
            wipe_free(t->headers[i]);
        sift_free(t->headers);
    }
    sift_free(t);
}

static int get_size(const struct where *w, const char *key, const cJSON *v, size_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return bad(w, key, "must be a non-negative integer");
    *out = (size_t)v->valuedouble;
    return 0;
}

static int parse_arg(const struct where *w, size_t j, const cJSON *a, sift_field *f)
{
    static const char *const keys[] = {"name",       "type",      "description", "required",
                                       "values",     "min",       "max",         "min_length",
                                       "max_length", "min_items", "max_items",   NULL};
    char key[96];
    snprintf(key, sizeof key, "args[%zu]", j);
    if (!cJSON_IsObject(a))
        return bad(w, key, "must be a mapping with name and type");
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        if (!in_list(it->string, keys)) {
            snprintf(key, sizeof key, "args[%zu].%s", j, it->string);
            return bad(w, key,
                       "unknown key (expected name, type, description, required, values, "
                       "min, max, min_length, max_length, min_items, max_items)");
        }
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(a, "name");
    snprintf(key, sizeof key, "args[%zu].name", j);
    if (!cJSON_IsString(name) || !sift__valid_name(name->valuestring))
        return bad(w, key, "must be 1 to 64 of A-Z a-z 0-9 _ -");
    f->name = sift_strdup(name->valuestring);
    if (f->name == NULL)
        return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(a, "type");
    snprintf(key, sizeof key, "args[%zu].type", j);
    const char *ty = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(ty, "string") == 0)
        f->type = SIFT_FIELD_STRING;
    else if (strcmp(ty, "enum") == 0)
        f->type = SIFT_FIELD_ENUM;
    else if (strcmp(ty, "integer") == 0)
        f->type = SIFT_FIELD_INTEGER;
    else if (strcmp(ty, "number") == 0)
        f->type = SIFT_FIELD_NUMBER;
    else if (strcmp(ty, "boolean") == 0)
        f->type = SIFT_FIELD_BOOLEAN;
    else if (strcmp(ty, "array") == 0)
        f->type = SIFT_FIELD_STRINGS;
    else
        return bad(w, key, "must be one of string, integer, number, boolean, enum, array");

    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "description");
    if (v) {
        snprintf(key, sizeof key, "args[%zu].description", j);
        if (!cJSON_IsString(v))
            return bad(w, key, "must be a string");
        f->description = sift_strdup(v->valuestring);
        if (f->description == NULL)
            return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
    }
    v = cJSON_GetObjectItemCaseSensitive(a, "required");
    if (v) {
        snprintf(key, sizeof key, "args[%zu].required", j);
        if (!cJSON_IsBool(v))
            return bad(w, key, "must be true or false");
        f->required = cJSON_IsTrue(v);
    }
    v = cJSON_GetObjectItemCaseSensitive(a, "values");
    snprintf(key, sizeof key, "args[%zu].values", j);
    if (f->type == SIFT_FIELD_ENUM) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
            return bad(w, key, "an enum needs a list of values");
        sift_buf b;
        sift_buf_init(&b, 0);
        const cJSON *e;
        int rc = 0;
        cJSON_ArrayForEach(e, v)
        {
            if (!cJSON_IsString(e) || e->valuestring[0] == '\0' || strchr(e->valuestring, ',')) {
                sift_buf_free(&b);
                return bad(w, key, "each value must be a non-empty string without commas");
            }
            if (b.len)
                rc |= sift_buf_putc(&b, ',');
            rc |= sift_buf_puts(&b, e->valuestring);
        }
        f->values = rc == 0 ? sift_buf_detach(&b, NULL) : NULL;
        sift_buf_free(&b);
        if (f->values == NULL)
            return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
    } else if (v) {
        return bad(w, key, "only an enum has values");
    }

    bool numeric = f->type == SIFT_FIELD_INTEGER || f->type == SIFT_FIELD_NUMBER;
    bool text = f->type == SIFT_FIELD_STRING || f->type == SIFT_FIELD_STRINGS;
    static const char *const bounds[] = {"min",        "max",       "min_length",
                                         "max_length", "min_items", "max_items"};
    for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
        v = cJSON_GetObjectItemCaseSensitive(a, bounds[k]);
        if (v == NULL)
            continue;
        snprintf(key, sizeof key, "args[%zu].%s", j, bounds[k]);
        int rc = 0;
        if (k < 2) {
            if (!numeric)
                return bad(w, key, "only an integer or number has %s", bounds[k]);
            if (!cJSON_IsNumber(v))
                return bad(w, key, "must be a number");
            if (k == 0) {
                f->has_min = true;
                f->min = v->valuedouble;
            } else {
                f->has_max = true;
                f->max = v->valuedouble;
            }
        } else if (k < 4) {
            if (!text)
                return bad(w, key, "only a string or array has %s", bounds[k]);
            rc = get_size(w, key, v, k == 2 ? &f->min_len : &f->max_len);
        } else {
            if (f->type != SIFT_FIELD_STRINGS)
                return bad(w, key, "only an array has %s", bounds[k]);
            rc = get_size(w, key, v, k == 4 ? &f->min_items : &f->max_items);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const sift_field *field_named(const struct httptool *t, const char *name, size_t n)
{
    for (size_t i = 0; i < t->nfields; i++) {
        if (strlen(t->fields[i].name) == n && memcmp(t->fields[i].name, name, n) == 0)
            return &t->fields[i];
    }
    return NULL;
}

static int check_url(const struct where *w, const struct httptool *t)
{
    const char *u = t->url;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return bad(w, "url", "must start with http:// or https://");
    for (const char *p = u; *p; p++) {
        if (*p == '}')
            return bad(w, "url", "'}' without '{' at offset %zu", (size_t)(p - u));
        if (*p != '{')
            continue;
        const char *end = strchr(p, '}');
        if (end == NULL)
            return bad(w, "url", "unclosed '{' at offset %zu", (size_t)(p - u));
        const sift_field *f = field_named(t, p + 1, (size_t)(end - p - 1));
        if (f == NULL)
            return bad(w, "url", "placeholder {%.*s} is not an argument", (int)(end - p - 1),
                       p + 1);
        if (f->type == SIFT_FIELD_STRINGS)
            return bad(w, "url", "placeholder {%s} is an array; only single values go in the url",
                       f->name);
        p = end;
    }
    return 0;
}

/* Expands ${NAME} from the environment. The header name is in the error
 * message, never the value. */
static int expand_env(const struct where *w, const char *hname, const char *in, sift_buf *out)
{
    char key[160];
    snprintf(key, sizeof key, "headers.%s", hname);
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end == NULL)
                return bad(w, key, "unclosed ${");
            char var[128];
            size_t n = (size_t)(end - p - 2);
            if (n == 0 || n >= sizeof var)
                return bad(w, key, "bad environment variable reference");
            memcpy(var, p + 2, n);
            var[n] = '\0';
            const char *val = getenv(var);
            if (val == NULL)
                return bad(w, key, "environment variable %s is not set", var);
            if (strpbrk(val, "\r\n"))
                return bad(w, key, "environment variable %s holds a line break", var);
            if (sift_buf_puts(out, val) < 0)
                return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
            p = end + 1;
        } else {
            if (sift_buf_putc(out, *p++) < 0)
                return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
        }
    }
    return 0;
}

static int add_header(struct httptool *t, const char *line)
{
    char *s = sift_strdup(line);
    if (s == NULL)
        return SIFT_ENOMEM;
    t->headers[t->nheaders++] = s;
    return 0;
}

static int parse_headers(const struct where *w, struct httptool *t, const cJSON *h)
{
    size_t n = h ? (size_t)cJSON_GetArraySize(h) : 0;
    if (h && !cJSON_IsObject(h))
        return bad(w, "headers", "must be a mapping of header name to value");
    t->headers = sift_calloc(n + 3, sizeof(char *)); /* + Accept, Content-Type, NULL */
    if (t->headers == NULL)
        return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
    int rc = add_header(t, "Accept: application/json");
    if (rc == 0 && t->body_json)
        rc = add_header(t, "Content-Type: application/json");
    if (rc < 0)
        return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
    const cJSON *it;
    cJSON_ArrayForEach(it, h)
    {
        char key[160];
        snprintf(key, sizeof key, "headers.%s", it->string);
        if (it->string[0] == '\0' || strpbrk(it->string, " \t\r\n:"))
            return bad(w, key, "not a valid header name");
        if (!cJSON_IsString(it))
            return bad(w, key, "must be a string");
        sift_buf b;
        sift_buf_init(&b, 0);
        rc = sift_buf_printf(&b, "%s: ", it->string);
        if (rc == 0)
            rc = expand_env(w, it->string, it->valuestring, &b);
        else
            rc = sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
        if (rc == 0 && strpbrk(b.data, "\r\n"))
            rc = bad(w, key, "a header value is one line");
        if (rc == 0 && add_header(t, b.data) < 0)
            rc = sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
        if (b.data)
            explicit_bzero(b.data, b.len);
        sift_buf_free(&b);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void http_tool_fn(sift_tool_job *job, const void *args);

static int parse_tool(const struct where *w, const cJSON *e, const sift_httptools *set,
                      struct httptool **out)
{
    static const char *const keys[] = {"name",       "description", "method", "url", "headers",
                                       "timeout_ms", "args",        "body",   NULL};
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", NULL};
    if (!cJSON_IsObject(e))
        return bad(w, "", "must be a mapping with name, url and args");
    const cJSON *it;
    cJSON_ArrayForEach(it, e)
    {
        if (!in_list(it->string, keys))
            return bad(w, it->string,
                       "unknown key (expected name, description, method, url, "
                       "headers, timeout_ms, args, body)");
    }
    struct httptool *t = sift_calloc(1, sizeof *t);
    if (t == NULL)
        return sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
    int rc;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "name");
    if (!cJSON_IsString(v) || !sift__valid_name(v->valuestring)) {
        rc = bad(w, "name", "must be 1 to 64 of A-Z a-z 0-9 _ -");
        goto fail;
    }
    t->name = sift_strdup(v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(e, "description");
    if (v && !cJSON_IsString(v)) {
        rc = bad(w, "description", "must be a string");
        goto fail;
    }
    t->description = sift_strdup(v ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(e, "url");
    if (!cJSON_IsString(v)) {
        rc = bad(w, "url", "required: the service URL, with {argument} placeholders");
        goto fail;
    }
    t->url = sift_strdup(v->valuestring);
    if (t->name == NULL || t->description == NULL || t->url == NULL) {
        rc = sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
        goto fail;
    }
    t->method = "GET";
    v = cJSON_GetObjectItemCaseSensitive(e, "method");
    if (v) {
        size_t k = 0;
        while (methods[k] && !(cJSON_IsString(v) && strcmp(v->valuestring, methods[k]) == 0))
            k++;
        if (methods[k] == NULL) {
            rc = bad(w, "method", "must be GET, POST, PUT or DELETE");
            goto fail;
        }
        t->method = methods[k];
    }
    t->timeout_ms = set->opts.default_timeout_ms;
    v = cJSON_GetObjectItemCaseSensitive(e, "timeout_ms");
    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 3600000 ||
            v->valuedouble != (double)(int64_t)v->valuedouble) {
            rc = bad(w, "timeout_ms", "must be an integer between 1 and 3600000");
            goto fail;
        }
        t->timeout_ms = (int64_t)v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(e, "body");
    if (v) {
        if (!cJSON_IsString(v) || strcmp(v->valuestring, "json") != 0) {
            rc = bad(w, "body", "the only body format is json");
            goto fail;
        }
        t->body_json = true;
    }

    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    if (args && !cJSON_IsArray(args)) {
        rc = bad(w, "args", "must be a list of argument fields");
        goto fail;
    }
    size_t n = args ? (size_t)cJSON_GetArraySize(args) : 0;
    if (n > 32) {
        rc = bad(w, "args", "at most 32 arguments");
        goto fail;
    }
    t->fields = sift_calloc(n ? n : 1, sizeof *t->fields);
    if (t->fields == NULL) {
        rc = sift_err_set(w->err, SIFT_ENOMEM, "out of memory loading tools");
        goto fail;
    }
    size_t j = 0;
    cJSON_ArrayForEach(it, args)
    {
        t->nfields = j + 1; /* so tool_free frees what this field got */
        rc = parse_arg(w, j, it, &t->fields[j]);
        if (rc < 0)
            goto fail;
        j++;
    }
    t->schema.name = t->name;
    sift_schema_layout(&t->schema, t->fields, t->nfields);
    sift_err e2 = {0};
    if (sift_schema_check(&t->schema, &e2) < 0) {
        rc = bad(w, "args", "%s", e2.msg);
        goto fail;
    }
    rc = check_url(w, t);
    if (rc < 0)
        goto fail;
    rc = parse_headers(w, t, cJSON_GetObjectItemCaseSensitive(e, "headers"));
    if (rc < 0)
        goto fail;
    t->set = set;
    t->tool.name = t->name;
    t->tool.description = t->description;
    t->tool.args = &t->schema;
    t->tool.fn = http_tool_fn;
    t->tool.udata = t;
    *out = t;
    return 0;

fail:
    tool_free(t);
    return rc;
}

int sift_httptools_load(const cJSON *tools, const sift_httptools_opts *opts, sift_httptools **out,
                        sift_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->client == NULL)
        return sift_err_set(err, SIFT_EINVAL, "HTTP tools need a client lookup function");
    if (tools && !cJSON_IsArray(tools))
        return sift_err_set(err, SIFT_EINVAL, "tools: must be a list of tool entries");
    sift_httptools *h = sift_calloc(1, sizeof *h);
    if (h == NULL)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory loading tools");
    h->opts = *opts;
    if (h->opts.max_body_bytes == 0)
        h->opts.max_body_bytes = 1 << 20;
    if (h->opts.default_timeout_ms <= 0)
        h->opts.default_timeout_ms = 10000;
    size_t n = tools ? (size_t)cJSON_GetArraySize(tools) : 0;
    h->tools = sift_calloc(n ? n : 1, sizeof(struct httptool *));
    if (h->tools == NULL) {
        sift_free(h);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory loading tools");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, tools)
    {
        struct where w = {h->n, err};
        int rc = parse_tool(&w, e, h, &h->tools[h->n]);
        if (rc < 0) {
            sift_httptools_free(h);
            return rc;
        }
        for (size_t k = 0; k < h->n; k++) {
            if (strcmp(h->tools[k]->name, h->tools[h->n]->name) == 0) {
                tool_free(h->tools[h->n]);
                sift_httptools_free(h);
                return bad(&w, "name", "tools[%zu] already has this name", k);
            }
        }
        h->n++;
    }
    *out = h;
    return 0;
}

int sift_httptools_register(const sift_httptools *h, sift_tool_registry *r, sift_err *err)
{
    for (size_t i = 0; i < h->n; i++) {
        int rc = sift_tool_registry_add(r, &h->tools[i]->tool, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

size_t sift_httptools_count(const sift_httptools *h)
{
    return h->n;
}

const sift_tool *sift_httptools_at(const sift_httptools *h, size_t i)
{
    return i < h->n ? &h->tools[i]->tool : NULL;
}

void sift_httptools_free(sift_httptools *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->n; i++)
        tool_free(h->tools[i]);
    sift_free(h->tools);
    sift_free(h);
}

/* ---- calling ---- */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Runs of unreserved bytes go in one append, not a byte at a time (three
 * URLs per seed run). */
static int put_encoded(sift_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    int rc = 0;
    while (*p && rc == 0) {
        const unsigned char *run = p;
        while (*p && unreserved(*p))
            p++;
        if (p > run)
            rc = sift_buf_append(b, run, (size_t)(p - run));
        if (rc == 0 && *p) {
            char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = sift_buf_append(b, enc, 3);
            p++;
        }
    }
    return rc;
}

/* The value of a scalar field as URL text (before encoding); "" when absent. */
static const char *field_text(const sift_field *f, const char *args, char *tmp)
{
    if (!f->required && !*(const bool *)(args + f->has_offset))
        return "";
    const char *v = args + f->offset;
    switch (f->type) {
    case SIFT_FIELD_STRING:
    case SIFT_FIELD_ENUM:
        return *(const char *const *)v;
    case SIFT_FIELD_INTEGER:
        snprintf(tmp, 32, "%" PRId64, *(const int64_t *)v);
        return tmp;
    case SIFT_FIELD_NUMBER:
        return sift__fmt_num(*(const double *)v, tmp);
    case SIFT_FIELD_BOOLEAN:
        return *(const bool *)v ? "true" : "false";
    default:
        return ""; /* arrays and objects are refused at load */
    }
}

static int build_url(const struct httptool *t, const void *args, sift_buf *b)
{
    int rc = 0;
    for (const char *p = t->url; *p && rc == 0; p++) {
        if (*p != '{') {
            size_t n = strcspn(p, "{"); /* the literal text up to the next field */
            rc = sift_buf_append(b, p, n);
            p += n - 1;
            continue;
        }
        const char *end = strchr(p, '}'); /* checked at load */
        const sift_field *f = field_named(t, p + 1, (size_t)(end - p - 1));
        char tmp[32];
        rc = put_encoded(b, field_text(f, args, tmp));
        p = end;
    }
    return rc;
}

/* The whole body is one JSON value (cJSON alone accepts "12 apples" as 12). */
static bool is_json(const char *s, size_t n)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (j == NULL)
        return false;
    cJSON_Delete(j);
    const char *stop = s + n;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    return end == stop;
}

static void http_done(sift_http_request *req, int code, sift_http_response *resp,
                      const sift_err *err, void *udata)
{
    sift_tool_job *job = udata;
    const struct httptool *t = job->tool->udata;
    (void)req;
    if (code < 0) {
        sift_tool_job_fail(job, code, "%s: %s", t->name, err->msg);
        return;
    }
    if (resp->status >= 400) {
        sift_buf b;
        sift_buf_init(&b, 0);
        size_t n = resp->body_len < EXCERPT_MAX ? resp->body_len : EXCERPT_MAX;
        /* Keep the excerpt printable and one line. */
        for (size_t i = 0; i < n; i++) {
            char c = resp->body[i];
            if (sift_buf_putc(&b, c == '\n' || c == '\r' || c == '\t' ? ' ' : c) < 0)
                break;
        }
        sift_tool_job_fail(job, SIFT_EHTTP, "%s: HTTP %d%s%s%s", t->name, resp->status,
                           b.len ? ": " : "", b.len ? b.data : "",
                           resp->body_len > EXCERPT_MAX ? "..." : "");
        sift_buf_free(&b);
        return;
    }
    if (resp->body_len == 0) {
        sift_tool_job_done(job, 0, "null");
        return;
    }
    if (is_json(resp->body, resp->body_len)) {
        sift_tool_job_done(job, 0, resp->body);
        return;
    }
    /* Not JSON (or an embedded NUL): hand it over as one JSON string. */
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_putc(&b, '"');
    if (rc == 0)
        rc = sift_buf_json_escape(&b, resp->body, resp->body_len);
    if (rc == 0)
        rc = sift_buf_putc(&b, '"');
    if (rc == 0)
        sift_tool_job_done(job, 0, b.data);
    else
        sift_tool_job_fail(job, SIFT_ENOMEM, "%s: out of memory reading the answer", t->name);
    sift_buf_free(&b);
}

static void http_tool_fn(sift_tool_job *job, const void *args)
{
    const struct httptool *t = job->tool->udata;
    const sift_httptools *set = t->set;
    sift_http_client *client = set->opts.client(sift_ctx_loop(job->ctx), set->opts.udata);
    if (client == NULL) {
        sift_tool_job_fail(job, SIFT_ESTATE, "%s: no HTTP client on this worker", t->name);
        return;
    }
    sift_buf url, body;
    sift_buf_init(&url, 0);
    sift_buf_init(&body, 0);
    int rc = build_url(t, args, &url);
    if (rc == 0 && t->body_json)
        rc = sift_args_json(&t->schema, args, &body);
    if (rc < 0) {
        sift_tool_job_fail(job, rc, "%s: out of memory building the request", t->name);
        goto out;
    }
    sift_http_req_opts ro = {0};
    ro.method = t->method;
    ro.url = url.data;
    ro.headers = (const char *const *)t->headers;
    if (t->body_json) {
        ro.body = body.data;
        ro.body_len = body.len;
    }
    ro.timeout_ms = t->timeout_ms;
    ro.max_body_bytes = set->opts.max_body_bytes;
    static const sift_http_callbacks cb = {.on_done = http_done};
    sift_err err = {0};
    rc = sift_http_request_start(client, job->ctx, &ro, &cb, job, NULL, &err);
    if (rc < 0)
        sift_tool_job_fail(job, rc, "%s: %s", t->name, err.msg);
out:
    sift_buf_free(&url);
    sift_buf_free(&body);
}
