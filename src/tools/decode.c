/* The validating decoder: the model's argument text into the tool's struct.
 *
 * The model's output is untrusted input. Every rule the schema states, and
 * every bound it can only state in words, is checked here; the first
 * violation becomes a message that names the field path and the rule, which
 * goes back to the model as the tool result so it can correct itself. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sift/tool.h"
#include "tools/internal.h"

#define MAX_SAFE_INT 9007199254740992.0

struct dec {
    sift_arena *arena;
    sift_err *err;
    const char *schema_name;
    char path[200]; /* "filters.size", "colours[2]" */
    size_t plen;
};

/* Records a rule violation at the current path. */
static int fail(struct dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct dec *d, const char *fmt, ...)
{
    char msg[SIFT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (d->plen == 0)
        return sift_err_set(d->err, SIFT_EINVAL, "%s", msg);
    return sift_err_set(d->err, SIFT_EINVAL, "%s: %s", d->path, msg);
}

static int oom(struct dec *d)
{
    return sift_err_set(d->err, SIFT_ENOMEM, "out of memory decoding the arguments (%s)",
                        d->schema_name);
}

/* Appends bytes to the path, cutting (not overflowing) a path too long for
 * the buffer. Plain copies: this runs for every field decoded. */
static void path_add(struct dec *d, const char *s, size_t n)
{
    size_t room = sizeof d->path - 1 - d->plen;
    if (n > room)
        n = room;
    memcpy(d->path + d->plen, s, n);
    d->plen += n;
    d->path[d->plen] = '\0';
}

/* Appends ".name" (or "name" at the top); returns the old length to restore. */
static size_t push_name(struct dec *d, const char *name)
{
    size_t old = d->plen;
    if (d->plen)
        path_add(d, ".", 1);
    path_add(d, name, strlen(name));
    return old;
}

/* Appends "[i]". */
static size_t push_index(struct dec *d, int i)
{
    size_t old = d->plen;
    char buf[16];
    int n = snprintf(buf, sizeof buf, "[%d]", i);
    path_add(d, buf, n > 0 ? (size_t)n : 0);
    return old;
}

static void pop(struct dec *d, size_t old)
{
    d->plen = old;
    d->path[old] = '\0';
}

/* A name from the model, made safe to quote in a message: at most 40 bytes,
 * quotes, backslashes and control bytes replaced by '?'. */
static const char *quote_name(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 4 < n && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == '"' || c == '\\' || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* overlong forms, UTF-16 surrogates, past U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += len;
    }
    return true;
}

/* Checks a string against the field's length bounds and copies it. */
static int take_string(struct dec *d, const sift_field *f, const cJSON *item, const char **out)
{
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return fail(d, "must be a string");
    size_t n = strlen(item->valuestring);
    if (!utf8_valid((const unsigned char *)item->valuestring, n))
        return fail(d, "must be valid UTF-8");
    if (f->max_len && n > f->max_len) {
        if (f->min_len)
            return fail(d, "must be between %zu and %zu bytes long", f->min_len, f->max_len);
        return fail(d, "must be at most %zu byte%s long", f->max_len, f->max_len == 1 ? "" : "s");
    }
    if (n < f->min_len) {
        if (f->max_len)
            return fail(d, "must be between %zu and %zu bytes long", f->min_len, f->max_len);
        return fail(d, "must be at least %zu byte%s long", f->min_len, f->min_len == 1 ? "" : "s");
    }
    *out = sift_arena_strndup(d->arena, item->valuestring, n);
    return *out ? 0 : oom(d);
}

static int enum_fail(struct dec *d, const sift_field *f)
{
    char list[SIFT_ERR_MSG_MAX];
    size_t used = 0, n;
    const char *pos = f->values, *v;
    list[0] = '\0';
    while (sift__enum_next(&pos, &v, &n) && used < sizeof list - 1) {
        int w = snprintf(list + used, sizeof list - used, "%s%.*s", used ? ", " : "", (int)n, v);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return fail(d, "must be one of %s", list);
}

static int take_enum(struct dec *d, const sift_field *f, const cJSON *item, const char **out)
{
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return enum_fail(d, f);
    const char *pos = f->values, *v;
    size_t n, len = strlen(item->valuestring);
    while (sift__enum_next(&pos, &v, &n)) {
        if (n == len && memcmp(v, item->valuestring, n) == 0) {
            *out = sift_arena_strndup(d->arena, v, n);
            return *out ? 0 : oom(d);
        }
    }
    return enum_fail(d, f);
}

/* "must be an integer between 1 and 50", "must be a number, at least 0". */
static int range_fail(struct dec *d, const sift_field *f, const char *what)
{
    char lo[32], hi[32];
    if (f->has_min && f->has_max)
        return fail(d, "must be %s between %s and %s", what, sift__fmt_num(f->min, lo),
                    sift__fmt_num(f->max, hi));
    if (f->has_min)
        return fail(d, "must be %s, at least %s", what, sift__fmt_num(f->min, lo));
    if (f->has_max)
        return fail(d, "must be %s, at most %s", what, sift__fmt_num(f->max, hi));
    return fail(d, "must be %s", what);
}

static bool in_range(const sift_field *f, double v)
{
    return (!f->has_min || v >= f->min) && (!f->has_max || v <= f->max);
}

static int take_strings(struct dec *d, const sift_field *f, const cJSON *item, sift_strings *out)
{
    if (!cJSON_IsArray(item))
        return fail(d, "must be an array of strings");
    size_t n = (size_t)cJSON_GetArraySize(item);
    if ((f->max_items && n > f->max_items) || n < f->min_items) {
        if (f->min_items && f->max_items)
            return fail(d, "must have between %zu and %zu items", f->min_items, f->max_items);
        if (f->max_items)
            return fail(d, "must have at most %zu item%s", f->max_items,
                        f->max_items == 1 ? "" : "s");
        return fail(d, "must have at least %zu item%s", f->min_items, f->min_items == 1 ? "" : "s");
    }
    out->len = 0;
    out->items = NULL;
    if (n == 0)
        return 0;
    const char **items = sift_arena_calloc(d->arena, n, sizeof *items);
    if (items == NULL)
        return oom(d);
    int i = 0;
    for (const cJSON *it = item->child; it; it = it->next, i++) {
        size_t old = push_index(d, i);
        int rc = take_string(d, f, it, &items[i]);
        pop(d, old);
        if (rc < 0)
            return rc;
    }
    out->items = items;
    out->len = n;
    return 0;
}

static int decode_object(struct dec *d, const sift_schema *s, const cJSON *first, char *base);

static int decode_value(struct dec *d, const sift_field *f, const cJSON *item, char *base)
{
    char *dst = base + f->offset;
    const char *str = NULL;
    int rc;

    switch (f->type) {
    case SIFT_FIELD_STRING:
    case SIFT_FIELD_ENUM:
        rc = f->type == SIFT_FIELD_STRING ? take_string(d, f, item, &str)
                                          : take_enum(d, f, item, &str);
        if (rc == 0)
            memcpy(dst, &str, sizeof str);
        return rc;
    case SIFT_FIELD_INTEGER: {
        /* JSON has one number type: 2 and 2.0 are the same integer, 2.5 is not. */
        double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        if (!isfinite(v) || v != floor(v) || fabs(v) > MAX_SAFE_INT || !in_range(f, v))
            return range_fail(d, f, "an integer");
        int64_t i = (int64_t)v;
        memcpy(dst, &i, sizeof i);
        return 0;
    }
    case SIFT_FIELD_NUMBER: {
        /* "1e999" parses to infinity, which no schema bound can mean. */
        double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        if (!isfinite(v) || !in_range(f, v))
            return range_fail(d, f, "a number");
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    case SIFT_FIELD_BOOLEAN: {
        if (!cJSON_IsBool(item))
            return fail(d, "must be true or false");
        bool b = cJSON_IsTrue(item);
        memcpy(dst, &b, sizeof b);
        return 0;
    }
    case SIFT_FIELD_STRINGS: {
        sift_strings v;
        rc = take_strings(d, f, item, &v);
        if (rc == 0)
            memcpy(dst, &v, sizeof v);
        return rc;
    }
    case SIFT_FIELD_OBJECT:
        if (!cJSON_IsObject(item))
            return fail(d, "must be an object");
        return decode_object(d, f->object, item->child, dst);
    }
    return sift_err_set(d->err, SIFT_EINTERNAL, "field %s has an unknown type", f->name);
}

static int decode_object(struct dec *d, const sift_schema *s, const cJSON *first, char *base)
{
    unsigned char seen[SIFT_SCHEMA_MAX_FIELDS] = {0};
    char qbuf[64];

    if (s->nfields > SIFT_SCHEMA_MAX_FIELDS)
        return sift_err_set(d->err, SIFT_EINTERNAL, "schema %s has too many fields",
                            d->schema_name);
    for (const cJSON *it = first; it; it = it->next) {
        size_t i = 0;
        while (i < s->nfields && strcmp(s->fields[i].name, it->string) != 0)
            i++;
        if (i == s->nfields)
            return fail(d, "unexpected field \"%s\"", quote_name(it->string, qbuf, sizeof qbuf));
        /* JSON parsers disagree on which duplicate wins; refuse to guess. */
        if (seen[i])
            return fail(d, "duplicate field \"%s\"", quote_name(it->string, qbuf, sizeof qbuf));
        seen[i] = 1;

        const sift_field *f = &s->fields[i];
        if (!f->required && cJSON_IsNull(it))
            continue; /* null means absent */
        size_t old = push_name(d, f->name);
        int rc = decode_value(d, f, it, base);
        pop(d, old);
        if (rc < 0)
            return rc;
        if (!f->required) {
            bool yes = true;
            memcpy(base + f->has_offset, &yes, sizeof yes);
        }
    }
    for (size_t i = 0; i < s->nfields; i++) {
        if (s->fields[i].required && !seen[i]) {
            size_t old = push_name(d, s->fields[i].name);
            int rc = fail(d, "is required");
            pop(d, old);
            return rc;
        }
    }
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    }
    return true;
}

/* True when the text stops inside a string or an unclosed object or array:
 * truncated output, the usual failure of a model that hit its token limit,
 * and worth naming as such. */
static bool truncated(const char *json, size_t len)
{
    long depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char c = json[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return in_string || depth > 0;
}

/* cJSON turns "\u0000" into a NUL that ends its C string, which would cut
 * "A\u0000B" to "A" without a word. Look for the escape in the text. A
 * backslash is only valid inside a string, so pairing escapes left to right
 * is exact. */
static bool has_nul_escape(const char *json, size_t len)
{
    const char *p = memchr(json, '\\', len);
    while (p != NULL && p + 1 < json + len) {
        if (p[1] == 'u' && json + len - p >= 6 && memcmp(p + 2, "0000", 4) == 0)
            return true;
        const char *next = p + 2;
        p = next < json + len ? memchr(next, '\\', (size_t)(json + len - next)) : NULL;
    }
    return false;
}

/* cJSON's error position is approximate (near, not at, the fault). */
static int syntax_fail(struct dec *d, const char *json, size_t len, const char *at)
{
    if (truncated(json, len))
        return fail(d, "arguments are not valid JSON: unexpected end of text");
    size_t off = at && at >= json && at < json + len ? (size_t)(at - json) : len - 1;
    unsigned char c = (unsigned char)json[off];
    if (c >= 0x21 && c < 0x7f)
        return fail(d, "arguments are not valid JSON: error near byte %zu ('%c')", off, c);
    return fail(d, "arguments are not valid JSON: error near byte %zu (byte 0x%02x)", off, c);
}

int sift_args_decode(const sift_schema *s, const char *json, size_t len, sift_arena *arena,
                     const void **out, sift_err *err)
{
    struct dec d = {.arena = arena, .err = err, .schema_name = s->name ? s->name : "arguments"};
    cJSON *root = NULL;
    int rc;

    *out = NULL;
    /* A zero-size struct still gets a distinct non-NULL pointer. */
    char *base = sift_arena_calloc(arena, 1, s->size ? s->size : 1);
    if (base == NULL)
        return oom(&d);

    if (json == NULL || blank(json, len)) {
        rc = decode_object(&d, s, NULL, base); /* "" is what some servers send for {} */
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL) {
        rc = syntax_fail(&d, json, len, end);
        goto done;
    }
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != json + len) {
        unsigned char c = (unsigned char)*end;
        rc = c >= 0x21 && c < 0x7f
                 ? fail(&d, "arguments are not valid JSON: unexpected '%c' after the object", c)
                 : fail(&d, "arguments are not valid JSON: unexpected byte 0x%02x after the object",
                        c);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = fail(&d, "arguments must be a JSON object");
        goto done;
    }
    if (has_nul_escape(json, len)) {
        rc = fail(&d, "strings in the arguments must not contain \\u0000");
        goto done;
    }
    rc = decode_object(&d, s, root->child, base);
done:
    cJSON_Delete(root);
    if (rc == 0)
        *out = base;
    return rc;
}

/* ---- encoding decoded arguments back to JSON ---- */

static void encode_object(struct sift__out *o, const sift_schema *s, const char *base)
{
    bool first = true;
    sift__put(o, "{");
    for (size_t i = 0; i < s->nfields; i++) {
        const sift_field *f = &s->fields[i];
        const char *src = base + f->offset;
        if (!f->required) {
            bool has;
            memcpy(&has, base + f->has_offset, sizeof has);
            if (!has)
                continue;
        }
        const char *str = NULL;
        if (f->type == SIFT_FIELD_STRING || f->type == SIFT_FIELD_ENUM) {
            memcpy(&str, src, sizeof str);
            if (str == NULL)
                continue; /* a struct filled by hand may lack a required string */
        }
        if (!first)
            sift__put(o, ",");
        first = false;
        sift__put_json_str(o, f->name, strlen(f->name));
        sift__put(o, ":");
        switch (f->type) {
        case SIFT_FIELD_STRING:
        case SIFT_FIELD_ENUM:
            sift__put_json_str(o, str, strlen(str));
            break;
        case SIFT_FIELD_INTEGER: {
            int64_t v;
            memcpy(&v, src, sizeof v);
            char buf[24];
            snprintf(buf, sizeof buf, "%lld", (long long)v);
            sift__put(o, buf);
            break;
        }
        case SIFT_FIELD_NUMBER: {
            double v;
            memcpy(&v, src, sizeof v);
            sift__put_num(o, isfinite(v) ? v : 0);
            break;
        }
        case SIFT_FIELD_BOOLEAN: {
            bool v;
            memcpy(&v, src, sizeof v);
            sift__put(o, v ? "true" : "false");
            break;
        }
        case SIFT_FIELD_STRINGS: {
            sift_strings v;
            memcpy(&v, src, sizeof v);
            sift__put(o, "[");
            for (size_t k = 0; k < v.len; k++) {
                if (k)
                    sift__put(o, ",");
                const char *item = v.items[k] ? v.items[k] : "";
                sift__put_json_str(o, item, strlen(item));
            }
            sift__put(o, "]");
            break;
        }
        case SIFT_FIELD_OBJECT:
            encode_object(o, f->object, src);
            break;
        }
    }
    sift__put(o, "}");
}

int sift_args_json(const sift_schema *s, const void *args, sift_buf *out)
{
    struct sift__out o = {.b = out};
    size_t start = out->len;
    encode_object(&o, s, args);
    if (o.rc < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return o.rc;
}
