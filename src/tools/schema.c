/* Tool argument schemas: checking, run-time layout, and the JSON Schema sent
 * to the model.
 *
 * The JSON Schema keeps to what OpenAI accepts in strict mode, so that one
 * schema works for every OpenAI-compatible server: every property is listed in
 * "required" (an optional field is a union with null), every object closes
 * with "additionalProperties": false, and there are no length or range
 * keywords. Bounds are written into the description instead, for the model to
 * read, and the decoder enforces them. */
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/tool.h"
#include "tools/internal.h"

/* Integers travel as JSON numbers, which are exact up to 2^53. */
#define MAX_SAFE_INT 9007199254740992.0

/* ---- shared helpers ---- */

void sift__putn(struct sift__out *o, const char *s, size_t n)
{
    if (o->rc == 0)
        o->rc = sift_buf_append(o->b, s, n);
}

void sift__put(struct sift__out *o, const char *s)
{
    sift__putn(o, s, strlen(s));
}

void sift__put_json_str(struct sift__out *o, const char *s, size_t n)
{
    sift__putn(o, "\"", 1);
    if (o->rc == 0)
        o->rc = sift_buf_json_escape(o->b, s, n);
    sift__putn(o, "\"", 1);
}

const char *sift__fmt_num(double v, char *buf)
{
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, 32, "%.0f", v);
        return buf;
    }
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, 32, "%.17g", v);
    return buf;
}

void sift__put_num(struct sift__out *o, double v)
{
    char buf[32];
    sift__put(o, sift__fmt_num(v, buf));
}

bool sift__enum_next(const char **pos, const char **val, size_t *len)
{
    const char *p = *pos;
    if (p == NULL || *p == '\0')
        return false;
    while (*p == ' ')
        p++;
    const char *start = p;
    while (*p != '\0' && *p != ',')
        p++;
    const char *end = p;
    while (end > start && end[-1] == ' ')
        end--;
    *val = start;
    *len = (size_t)(end - start);
    *pos = *p == ',' ? p + 1 : p;
    return true;
}

bool sift__valid_name(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return n <= 64;
}

/* ---- checking ---- */

struct check {
    sift_err *err;
    size_t total; /* fields seen in all objects */
};

static const char *type_name(enum sift_field_type t)
{
    switch (t) {
    case SIFT_FIELD_STRING:
        return "string";
    case SIFT_FIELD_ENUM:
        return "enum";
    case SIFT_FIELD_INTEGER:
        return "integer";
    case SIFT_FIELD_NUMBER:
        return "number";
    case SIFT_FIELD_BOOLEAN:
        return "boolean";
    case SIFT_FIELD_STRINGS:
        return "array of strings";
    case SIFT_FIELD_OBJECT:
        return "object";
    }
    return "unknown";
}

static int check_enum(const sift_field *f, const char *path, sift_err *err)
{
    if (f->values == NULL)
        return sift_err_set(err, SIFT_EINVAL, "field %s: an enum needs values", path);
    const char *pos = f->values, *v;
    size_t n, count = 0;
    while (sift__enum_next(&pos, &v, &n)) {
        if (n == 0)
            return sift_err_set(err, SIFT_EINVAL, "field %s: empty enum value in \"%s\"", path,
                                f->values);
        /* Duplicates would make the schema invalid ("enum" items must be unique). */
        const char *pos2 = f->values, *w;
        size_t m;
        for (size_t i = 0; i < count && sift__enum_next(&pos2, &w, &m); i++) {
            if (m == n && memcmp(v, w, n) == 0)
                return sift_err_set(err, SIFT_EINVAL, "field %s: enum value \"%.*s\" repeated",
                                    path, (int)n, v);
        }
        count++;
    }
    if (count == 0)
        return sift_err_set(err, SIFT_EINVAL, "field %s: an enum needs values", path);
    return 0;
}

static int check_bounds(const sift_field *f, const char *path, sift_err *err)
{
    bool numeric = f->type == SIFT_FIELD_INTEGER || f->type == SIFT_FIELD_NUMBER;
    bool text = f->type == SIFT_FIELD_STRING || f->type == SIFT_FIELD_STRINGS;
    const char *t = type_name(f->type);

    if ((f->has_min || f->has_max) && !numeric)
        return sift_err_set(err, SIFT_EINVAL, "field %s: min/max do not apply to a %s", path, t);
    if ((f->min_len || f->max_len) && !text)
        return sift_err_set(err, SIFT_EINVAL, "field %s: min_len/max_len do not apply to a %s",
                            path, t);
    if ((f->min_items || f->max_items) && f->type != SIFT_FIELD_STRINGS)
        return sift_err_set(err, SIFT_EINVAL, "field %s: min_items/max_items do not apply to a %s",
                            path, t);
    if (f->values != NULL && f->type != SIFT_FIELD_ENUM)
        return sift_err_set(err, SIFT_EINVAL, "field %s: values apply to an enum, not a %s", path,
                            t);
    if (f->object != NULL && f->type != SIFT_FIELD_OBJECT)
        return sift_err_set(err, SIFT_EINVAL, "field %s: a %s has no nested object", path, t);

    if (f->has_min && !isfinite(f->min))
        return sift_err_set(err, SIFT_EINVAL, "field %s: min is not a finite number", path);
    if (f->has_max && !isfinite(f->max))
        return sift_err_set(err, SIFT_EINVAL, "field %s: max is not a finite number", path);
    if (f->type == SIFT_FIELD_INTEGER) {
        if (f->has_min && (f->min != floor(f->min) || fabs(f->min) > MAX_SAFE_INT))
            return sift_err_set(err, SIFT_EINVAL, "field %s: min is not an integer within 2^53",
                                path);
        if (f->has_max && (f->max != floor(f->max) || fabs(f->max) > MAX_SAFE_INT))
            return sift_err_set(err, SIFT_EINVAL, "field %s: max is not an integer within 2^53",
                                path);
    }
    if (f->has_min && f->has_max && f->min > f->max)
        return sift_err_set(err, SIFT_EINVAL, "field %s: min is greater than max", path);
    if (f->max_len && f->min_len > f->max_len)
        return sift_err_set(err, SIFT_EINVAL, "field %s: min_len is greater than max_len", path);
    if (f->max_items && f->min_items > f->max_items)
        return sift_err_set(err, SIFT_EINVAL, "field %s: min_items is greater than max_items",
                            path);
    return 0;
}

static int check_object(struct check *c, const sift_schema *s, const char *prefix, int depth)
{
    if (s == NULL)
        return sift_err_set(c->err, SIFT_EINVAL, "%s%sno schema", prefix, *prefix ? ": " : "");
    if (depth > SIFT_SCHEMA_MAX_DEPTH)
        return sift_err_set(c->err, SIFT_EINVAL, "field %s: objects nested deeper than %d levels",
                            prefix, SIFT_SCHEMA_MAX_DEPTH);
    if (s->nfields > 0 && s->fields == NULL)
        return sift_err_set(c->err, SIFT_EINVAL, "schema %s has no field table",
                            s->name ? s->name : "?");
    c->total += s->nfields;
    if (c->total > SIFT_SCHEMA_MAX_FIELDS)
        return sift_err_set(c->err, SIFT_EINVAL, "more than %d fields in one schema",
                            SIFT_SCHEMA_MAX_FIELDS);

    for (size_t i = 0; i < s->nfields; i++) {
        const sift_field *f = &s->fields[i];
        char path[256];
        if (!sift__valid_name(f->name))
            return sift_err_set(c->err, SIFT_EINVAL,
                                "field \"%s\"%s%s: a name is 1 to 64 of A-Z a-z 0-9 _ -",
                                f->name ? f->name : "(null)", *prefix ? " in " : "", prefix);
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", f->name);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s->fields[j].name, f->name) == 0)
                return sift_err_set(c->err, SIFT_EINVAL, "field %s: declared twice", path);
        }
        if (f->type < SIFT_FIELD_STRING || f->type > SIFT_FIELD_OBJECT)
            return sift_err_set(c->err, SIFT_EINVAL, "field %s: unknown type %d", path,
                                (int)f->type);
        int rc = check_bounds(f, path, c->err);
        if (rc == 0 && f->type == SIFT_FIELD_ENUM)
            rc = check_enum(f, path, c->err);
        if (rc == 0 && f->type == SIFT_FIELD_OBJECT)
            rc = f->object ? check_object(c, f->object, path, depth + 1)
                           : sift_err_set(c->err, SIFT_EINVAL, "field %s: no nested schema", path);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int sift_schema_check(const sift_schema *s, sift_err *err)
{
    struct check c = {.err = err};
    return check_object(&c, s, "", 0);
}

/* ---- run-time layout ---- */

static size_t value_size(const sift_field *f, size_t *align)
{
    switch (f->type) {
    case SIFT_FIELD_STRING:
    case SIFT_FIELD_ENUM:
        *align = alignof(const char *);
        return sizeof(const char *);
    case SIFT_FIELD_INTEGER:
        *align = alignof(int64_t);
        return sizeof(int64_t);
    case SIFT_FIELD_NUMBER:
        *align = alignof(double);
        return sizeof(double);
    case SIFT_FIELD_BOOLEAN:
        *align = alignof(bool);
        return sizeof(bool);
    case SIFT_FIELD_STRINGS:
        *align = alignof(sift_strings);
        return sizeof(sift_strings);
    case SIFT_FIELD_OBJECT:
        *align = f->object ? f->object->align : 1;
        return f->object ? f->object->size : 0;
    }
    *align = 1;
    return 0;
}

static size_t align_up(size_t off, size_t align)
{
    return align > 1 ? (off + align - 1) / align * align : off;
}

void sift_schema_layout(sift_schema *s, sift_field *fields, size_t nfields)
{
    size_t off = 0, max_align = 1;
    for (size_t i = 0; i < nfields; i++) {
        sift_field *f = &fields[i];
        size_t align;
        /* Same order as the macro-declared struct: `bool has_x;` then `x`. */
        if (!f->required) {
            off = align_up(off, alignof(bool));
            f->has_offset = off;
            off += sizeof(bool);
            if (alignof(bool) > max_align)
                max_align = alignof(bool);
        } else {
            f->has_offset = 0;
        }
        size_t size = value_size(f, &align);
        off = align_up(off, align);
        f->offset = off;
        off += size;
        if (align > max_align)
            max_align = align;
    }
    s->fields = fields;
    s->nfields = nfields;
    s->align = max_align;
    s->size = align_up(off, max_align);
}

/* ---- JSON Schema ---- */

static void bound_pair(char *buf, size_t n, const char *lo, const char *hi, const char *unit)
{
    if (lo && hi)
        snprintf(buf, n, "%s to %s%s", lo, hi, unit);
    else if (lo)
        snprintf(buf, n, "at least %s%s", lo, unit);
    else if (hi)
        snprintf(buf, n, "at most %s%s", hi, unit);
    else
        buf[0] = '\0';
}

/* The bounds in words, for the description: "1 to 50", "at most 64 bytes". */
static void bounds_text(const sift_field *f, char *buf, size_t n)
{
    char lo[32], hi[32], a[96] = "", b[96] = "";
    buf[0] = '\0';
    switch (f->type) {
    case SIFT_FIELD_INTEGER:
    case SIFT_FIELD_NUMBER:
        bound_pair(a, sizeof a, f->has_min ? sift__fmt_num(f->min, lo) : NULL,
                   f->has_max ? sift__fmt_num(f->max, hi) : NULL, "");
        break;
    case SIFT_FIELD_STRING:
    case SIFT_FIELD_STRINGS:
        if (f->type == SIFT_FIELD_STRINGS) {
            snprintf(lo, sizeof lo, "%zu", f->min_items);
            snprintf(hi, sizeof hi, "%zu", f->max_items);
            bound_pair(a, sizeof a, f->min_items ? lo : NULL, f->max_items ? hi : NULL,
                       f->max_items == 1 || (!f->max_items && f->min_items == 1) ? " item"
                                                                                 : " items");
        }
        snprintf(lo, sizeof lo, "%zu", f->min_len);
        snprintf(hi, sizeof hi, "%zu", f->max_len);
        bound_pair(b, sizeof b, f->min_len ? lo : NULL, f->max_len ? hi : NULL,
                   f->max_len == 1 || (!f->max_len && f->min_len == 1) ? " byte" : " bytes");
        break;
    default:
        break;
    }
    snprintf(buf, n, "%s%s%s%s", a, a[0] && b[0] ? "; " : "",
             b[0] && f->type == SIFT_FIELD_STRINGS ? "each " : "", b);
}

static void put_description(struct sift__out *o, const sift_field *f)
{
    char bounds[200];
    bounds_text(f, bounds, sizeof bounds);
    const char *d = f->description ? f->description : "";
    if (d[0] == '\0' && bounds[0] == '\0')
        return;
    sift__put(o, ",\"description\":\"");
    if (o->rc == 0)
        o->rc = sift_buf_json_escape(o->b, d, strlen(d));
    if (bounds[0]) {
        sift__put(o, d[0] ? " (" : "(");
        if (o->rc == 0)
            o->rc = sift_buf_json_escape(o->b, bounds, strlen(bounds));
        sift__put(o, ")");
    }
    sift__put(o, "\"");
}

static void put_object(struct sift__out *o, const sift_schema *s);

static void put_type(struct sift__out *o, const char *type, bool nullable)
{
    sift__put(o, "\"type\":");
    if (nullable) {
        sift__put(o, "[\"");
        sift__put(o, type);
        sift__put(o, "\",\"null\"]");
    } else {
        sift__put(o, "\"");
        sift__put(o, type);
        sift__put(o, "\"");
    }
}

static void put_field(struct sift__out *o, const sift_field *f)
{
    bool nullable = !f->required;
    const char *pos, *v;
    size_t n;

    sift__put_json_str(o, f->name, strlen(f->name));
    sift__put(o, ":{");
    switch (f->type) {
    case SIFT_FIELD_STRING:
        put_type(o, "string", nullable);
        put_description(o, f);
        break;
    case SIFT_FIELD_ENUM:
        put_type(o, "string", nullable);
        put_description(o, f);
        sift__put(o, ",\"enum\":[");
        pos = f->values;
        for (int i = 0; sift__enum_next(&pos, &v, &n); i++) {
            if (i)
                sift__put(o, ",");
            sift__put_json_str(o, v, n);
        }
        /* A nullable enum must list null too, or null fails the enum check. */
        sift__put(o, nullable ? ",null]" : "]");
        break;
    case SIFT_FIELD_INTEGER:
        put_type(o, "integer", nullable);
        put_description(o, f);
        break;
    case SIFT_FIELD_NUMBER:
        put_type(o, "number", nullable);
        put_description(o, f);
        break;
    case SIFT_FIELD_BOOLEAN:
        put_type(o, "boolean", nullable);
        put_description(o, f);
        break;
    case SIFT_FIELD_STRINGS:
        put_type(o, "array", nullable);
        put_description(o, f);
        sift__put(o, ",\"items\":{\"type\":\"string\"}");
        break;
    case SIFT_FIELD_OBJECT:
        /* An optional object is anyOf [object, null]: OpenAI documents anyOf
         * for nested unions, and a type list would not carry "properties". */
        if (nullable) {
            sift__put(o, "\"anyOf\":[{");
            put_object(o, f->object);
            sift__put(o, "},{\"type\":\"null\"}]");
        } else {
            put_object(o, f->object);
        }
        put_description(o, f);
        break;
    }
    sift__put(o, "}");
}

/* The members of an object schema, without the braces. */
static void put_object(struct sift__out *o, const sift_schema *s)
{
    sift__put(o, "\"type\":\"object\",\"properties\":{");
    for (size_t i = 0; i < s->nfields; i++) {
        if (i)
            sift__put(o, ",");
        put_field(o, &s->fields[i]);
    }
    /* Strict mode: every property is required; optional ones accept null. */
    sift__put(o, "},\"required\":[");
    for (size_t i = 0; i < s->nfields; i++) {
        if (i)
            sift__put(o, ",");
        sift__put_json_str(o, s->fields[i].name, strlen(s->fields[i].name));
    }
    sift__put(o, "],\"additionalProperties\":false");
}

int sift_schema_json(const sift_schema *s, sift_buf *out)
{
    struct sift__out o = {.b = out};
    size_t start = out->len;
    sift__put(&o, "{");
    put_object(&o, s);
    sift__put(&o, "}");
    if (o.rc < 0)
        out->len = start; /* no half-written document */
    if (out->data)
        out->data[out->len] = '\0';
    return o.rc;
}

int sift_tool_json(const sift_tool *t, sift_buf *out)
{
    struct sift__out o = {.b = out};
    size_t start = out->len;
    sift__put(&o, "{\"type\":\"function\",\"function\":{\"name\":");
    sift__put_json_str(&o, t->name, strlen(t->name));
    if (t->description) {
        sift__put(&o, ",\"description\":");
        sift__put_json_str(&o, t->description, strlen(t->description));
    }
    sift__put(&o, ",\"parameters\":{");
    put_object(&o, t->args);
    sift__put(&o, "},\"strict\":true}}");
    if (o.rc < 0)
        out->len = start;
    if (out->data)
        out->data[out->len] = '\0';
    return o.rc;
}
