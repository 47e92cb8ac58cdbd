/* Parsing catalog lines (products, stock, prices) into structs.
 *
 * Each parser checks every field it reads and names the first problem in a
 * message a catalog maintainer can act on ("attributes.size: must be a
 * string"). Unknown members are ignored so producers can add fields before
 * sift reads them. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sift/catalog.h"

/* String fields may not hold control characters, except that a description
 * may hold line breaks and tabs. */
enum { STR_PLAIN = 0, STR_MULTILINE = 1 };

/* Attribute names that would smuggle volatile facts into the chunk text. */
static const char *const volatile_keys[] = {
    "price",    "prices",   "sale_price", "list_price", "discount",  "stock",
    "in_stock", "quantity", "qty",        "inventory",  "available", "availability",
};

int sift_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t j = 1; j <= n; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

size_t sift_utf8_truncate(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* Back off continuation bytes, then drop the lead byte whose character
     * would not fit. */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

int sift_currency_exponent(const char *currency)
{
    static const char *const zero[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY",
                                       "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                                       "VND", "VUV", "XAF", "XOF", "XPF"};
    static const char *const three[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (strcmp(currency, zero[i]) == 0)
            return 0;
    for (size_t i = 0; i < sizeof three / sizeof three[0]; i++)
        if (strcmp(currency, three[i]) == 0)
            return 3;
    return 2;
}

int sift_amount_json(sift_buf *b, int64_t minor, const char *currency)
{
    int exp = sift_currency_exponent(currency);
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t scale = 1;
    for (int i = 0; i < exp; i++)
        scale *= 10;
    if (exp == 0)
        return sift_buf_printf(b, "%s%llu", minor < 0 ? "-" : "", (unsigned long long)mag);
    return sift_buf_printf(b, "%s%llu.%0*llu", minor < 0 ? "-" : "",
                           (unsigned long long)(mag / scale), exp,
                           (unsigned long long)(mag % scale));
}

int sift_sku_check(const char *sku, size_t len, sift_err *err)
{
    if (len == 0)
        return sift_err_set(err, SIFT_EINVAL, "must not be empty");
    if (len > SIFT_SKU_MAX)
        return sift_err_set(err, SIFT_ETOOBIG, "longer than %d bytes", SIFT_SKU_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)sku[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\')
            return sift_err_set(err, SIFT_EINVAL,
                                "must be printable ASCII without spaces, quotes or "
                                "backslashes (byte %zu)",
                                i + 1);
    }
    return 0;
}

/* Parses `line` and checks it is a JSON object. The caller frees *root. */
static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int duplicate(const char *prefix, const char *name, sift_err *err)
{
    return sift_err_set(err, SIFT_EINVAL, "duplicate member \"%s%s%.*s\"", prefix ? prefix : "",
                        prefix ? "." : "", SIFT_ATTR_KEY_MAX, name);
}

int sift_catalog_check_members(const cJSON *obj, const char *prefix, sift_err *err)
{
    size_t n = 0;
    for (const cJSON *m = obj->child; m; m = m->next)
        n++;
    /* a product line has about ten members: pairs are cheaper than sorting;
     * a line of thousands of members must not cost millions of compares */
    if (n <= 32) {
        for (const cJSON *m = obj->child; m; m = m->next)
            for (const cJSON *o = m->next; o; o = o->next)
                if (m->string && o->string && strcmp(m->string, o->string) == 0)
                    return duplicate(prefix, m->string, err);
        return 0;
    }
    const char **names = sift_malloc(n * sizeof *names);
    if (!names)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    size_t k = 0;
    for (const cJSON *m = obj->child; m; m = m->next)
        if (m->string)
            names[k++] = m->string;
    qsort(names, k, sizeof *names, cmp_names);
    int rc = 0;
    for (size_t i = 1; i < k && !rc; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = duplicate(prefix, names[i], err);
    sift_free(names);
    return rc;
}

static int parse_object(const char *line, size_t len, cJSON **root, sift_err *err)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!j) {
        size_t at = end && end >= line && end <= line + len ? (size_t)(end - line) : 0;
        return sift_err_set(err, SIFT_EINVAL, "invalid JSON at byte %zu", at + 1);
    }
    /* cJSON stops after the first value; anything but blanks after it is an
     * error, not a second record. */
    size_t off = end ? (size_t)(end - line) : len;
    while (off < len && (line[off] == ' ' || line[off] == '\t' || line[off] == '\r'))
        off++;
    if (off < len) {
        cJSON_Delete(j);
        return sift_err_set(err, SIFT_EINVAL, "invalid JSON at byte %zu: data after the object",
                            off + 1);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sift_err_set(err, SIFT_EINVAL, "line must be a JSON object");
    }
    int rc = sift_catalog_check_members(j, NULL, err);
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    *root = j;
    return 0;
}

/* Checks a string value's length, encoding and characters. `name` is the
 * field path used in messages. */
static int check_text(const char *name, const char *s, size_t len, size_t max, int mode,
                      sift_err *err)
{
    if (len > max)
        return sift_err_set(err, SIFT_ETOOBIG, "%s: longer than %zu bytes", name, max);
    if (!sift_utf8_valid(s, len))
        return sift_err_set(err, SIFT_EINVAL, "%s: not valid UTF-8", name);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            if (mode == STR_MULTILINE && (c == '\n' || c == '\r' || c == '\t'))
                continue;
            return sift_err_set(err, SIFT_EINVAL, "%s: contains a control character at byte %zu",
                                name, i + 1);
        }
    }
    return 0;
}

/* Reads an optional (required = 0) or required string member into the arena.
 * Absent optional strings become "". */
static int get_string(sift_arena *a, const cJSON *obj, const char *name, int required, size_t max,
                      int mode, const char **out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return sift_err_set(err, SIFT_EINVAL, "%s: missing", name);
        *out = "";
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return sift_err_set(err, SIFT_EINVAL, "%s: must be a string", name);
    size_t len = strlen(v->valuestring);
    if (required && len == 0)
        return sift_err_set(err, SIFT_EINVAL, "%s: must not be empty", name);
    int rc = check_text(name, v->valuestring, len, max, mode, err);
    if (rc)
        return rc;
    char *s = sift_arena_strndup(a, v->valuestring, len);
    if (!s)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    *out = s;
    return 0;
}

/* Reads an integer member within [lo, hi]; absent gives `def` unless
 * required. */
static int get_int(const cJSON *obj, const char *name, int required, int64_t def, int64_t lo,
                   int64_t hi, int64_t *out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return sift_err_set(err, SIFT_EINVAL, "%s: missing", name);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return sift_err_set(err, SIFT_EINVAL, "%s: must be an integer", name);
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return sift_err_set(err, SIFT_EINVAL, "%s: must be an integer", name);
    if (d < (double)lo || d > (double)hi)
        return sift_err_set(err, SIFT_EINVAL, "%s: must be between %lld and %lld", name,
                            (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return 0;
}

static int get_sku(sift_arena *a, const cJSON *obj, const char *name, int required,
                   const char **out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return sift_err_set(err, SIFT_EINVAL, "%s: missing", name);
        *out = "";
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return sift_err_set(err, SIFT_EINVAL, "%s: must be a string", name);
    size_t len = strlen(v->valuestring);
    if (len == 0 && !required) {
        *out = "";
        return 0;
    }
    sift_err e = {0};
    int rc = sift_sku_check(v->valuestring, len, &e);
    if (rc)
        return sift_err_set(err, rc, "%s: %s", name, e.msg);
    char *s = sift_arena_strndup(a, v->valuestring, len);
    if (!s)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    *out = s;
    return 0;
}

static int get_version(const cJSON *obj, int64_t def, int64_t *out, sift_err *err)
{
    if (def <= 0)
        def = 1;
    return get_int(obj, "version", 0, def, 0, SIFT_VERSION_MAX, out, err);
}

/* category: ["Footwear", "Running"] or "Footwear > Running". Stored joined
 * with " > " so one text column holds the path. */
static int get_category(sift_arena *a, const cJSON *obj, const char **out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "category");
    if (!v || cJSON_IsNull(v)) {
        *out = "";
        return 0;
    }
    const size_t max = (size_t)SIFT_CATEGORY_DEPTH_MAX * (SIFT_CATEGORY_PART_MAX + 3);
    if (cJSON_IsString(v) && v->valuestring)
        return get_string(a, obj, "category", 0, max, STR_PLAIN, out, err);
    if (!cJSON_IsArray(v))
        return sift_err_set(err, SIFT_EINVAL, "category: must be an array of strings or a string");
    int n = cJSON_GetArraySize(v);
    if (n > SIFT_CATEGORY_DEPTH_MAX)
        return sift_err_set(err, SIFT_ETOOBIG, "category: more than %d levels",
                            SIFT_CATEGORY_DEPTH_MAX);
    char *buf = sift_arena_alloc(a, max + 1);
    if (!buf)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    size_t len = 0;
    int i = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, v)
    {
        char name[32];
        snprintf(name, sizeof name, "category[%d]", i);
        if (!cJSON_IsString(part) || !part->valuestring)
            return sift_err_set(err, SIFT_EINVAL, "%s: must be a string", name);
        size_t plen = strlen(part->valuestring);
        int rc = check_text(name, part->valuestring, plen, SIFT_CATEGORY_PART_MAX, STR_PLAIN, err);
        if (rc)
            return rc;
        if (plen == 0)
            return sift_err_set(err, SIFT_EINVAL, "%s: must not be empty", name);
        if (i > 0) {
            memcpy(buf + len, " > ", 3);
            len += 3;
        }
        memcpy(buf + len, part->valuestring, plen);
        len += plen;
        i++;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static int get_attrs(sift_arena *a, const cJSON *obj, sift_product *p, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "attributes");
    p->attrs = NULL;
    p->n_attrs = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v))
        return sift_err_set(err, SIFT_EINVAL, "attributes: must be an object of strings");
    int n = cJSON_GetArraySize(v);
    if (n > SIFT_ATTRS_MAX)
        return sift_err_set(err, SIFT_ETOOBIG, "attributes: more than %d members", SIFT_ATTRS_MAX);
    if (n == 0)
        return 0;
    sift_attr *attrs = sift_arena_calloc(a, (size_t)n, sizeof *attrs);
    if (!attrs)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, v)
    {
        const char *key = m->string ? m->string : "";
        size_t klen = strlen(key);
        if (klen == 0)
            return sift_err_set(err, SIFT_EINVAL, "attributes: empty member name");
        if (klen > SIFT_ATTR_KEY_MAX)
            return sift_err_set(err, SIFT_ETOOBIG, "attributes: name longer than %d bytes",
                                SIFT_ATTR_KEY_MAX);
        for (size_t j = 0; j < klen; j++) {
            char c = key[j];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
                return sift_err_set(err, SIFT_EINVAL,
                                    "attributes.%.64s: names are lower-case letters, digits "
                                    "and _",
                                    sift_utf8_valid(key, klen) ? key : "?");
        }
        for (size_t j = 0; j < sizeof volatile_keys / sizeof volatile_keys[0]; j++)
            if (strcmp(key, volatile_keys[j]) == 0)
                return sift_err_set(err, SIFT_EINVAL,
                                    "attributes.%s: stock and price are not product "
                                    "attributes; load them as inventory or price lines",
                                    key);
        for (size_t j = 0; j < i; j++)
            if (strcmp(attrs[j].key, key) == 0)
                return sift_err_set(err, SIFT_EINVAL, "attributes.%s: given twice", key);
        char name[SIFT_ATTR_KEY_MAX + 16];
        snprintf(name, sizeof name, "attributes.%s", key);
        if (!cJSON_IsString(m) || !m->valuestring)
            return sift_err_set(err, SIFT_EINVAL, "%s: must be a string", name);
        size_t vlen = strlen(m->valuestring);
        int rc = check_text(name, m->valuestring, vlen, SIFT_ATTR_VALUE_MAX, STR_PLAIN, err);
        if (rc)
            return rc;
        attrs[i].key = sift_arena_strndup(a, key, klen);
        attrs[i].value = sift_arena_strndup(a, m->valuestring, vlen);
        if (!attrs[i].key || !attrs[i].value)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        i++;
    }
    p->attrs = attrs;
    p->n_attrs = i;
    return 0;
}

static int parse_product(sift_arena *a, const cJSON *j, int64_t default_version, sift_product *p,
                         int *op, sift_err *err)
{
    int rc;
    memset(p, 0, sizeof *p);
    p->parent_id = p->title = p->brand = p->category = p->description = "";
    *op = SIFT_OP_UPSERT;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "op");
    if (o && !cJSON_IsNull(o)) {
        if (!cJSON_IsString(o) || !o->valuestring)
            return sift_err_set(err, SIFT_EINVAL, "op: must be \"upsert\" or \"delete\"");
        if (strcmp(o->valuestring, "delete") == 0)
            *op = SIFT_OP_DELETE;
        else if (strcmp(o->valuestring, "upsert") != 0)
            return sift_err_set(err, SIFT_EINVAL, "op: must be \"upsert\" or \"delete\"");
    }
    if ((rc = get_sku(a, j, "sku", 1, &p->sku, err)) ||
        (rc = get_version(j, default_version, &p->version, err)))
        return rc;
    if (*op == SIFT_OP_DELETE)
        return 0;
    if ((rc = get_string(a, j, "title", 1, SIFT_TITLE_MAX, STR_PLAIN, &p->title, err)) ||
        (rc = get_sku(a, j, "parent_id", 0, &p->parent_id, err)) ||
        (rc = get_string(a, j, "brand", 0, SIFT_BRAND_MAX, STR_PLAIN, &p->brand, err)) ||
        (rc = get_category(a, j, &p->category, err)) || (rc = get_attrs(a, j, p, err)) ||
        (rc = get_string(a, j, "description", 0, SIFT_DESCRIPTION_MAX, STR_MULTILINE,
                         &p->description, err)))
        return rc;
    return 0;
}

int sift_product_parse(sift_arena *a, const char *line, size_t len, int64_t default_version,
                       sift_product *out, int *op, sift_err *err)
{
    cJSON *j = NULL;
    int dummy;
    int rc = parse_object(line, len, &j, err);
    if (rc)
        return rc;
    rc = parse_product(a, j, default_version, out, op ? op : &dummy, err);
    cJSON_Delete(j);
    return rc;
}

static int get_warehouse(sift_arena *a, const cJSON *j, const char **out, sift_err *err)
{
    int rc = get_string(a, j, "warehouse", 1, SIFT_WAREHOUSE_MAX, STR_PLAIN, out, err);
    if (rc)
        return rc;
    for (const char *c = *out; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return sift_err_set(err, SIFT_EINVAL,
                                "warehouse: codes are upper-case letters, digits and _ "
                                "(\"HAN\")");
    return 0;
}

int sift_stock_parse(sift_arena *a, const char *line, size_t len, int64_t default_version,
                     sift_stock *out, sift_err *err)
{
    cJSON *j = NULL;
    int rc = parse_object(line, len, &j, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    if ((rc = get_sku(a, j, "sku", 1, &out->sku, err)) ||
        (rc = get_warehouse(a, j, &out->warehouse, err)) ||
        (rc = get_int(j, "quantity", 1, 0, 0, INT32_MAX, &out->quantity, err)) ||
        (rc = get_version(j, default_version, &out->version, err)) ||
        (rc = get_int(j, "updated_at", 0, 0, 0, SIFT_VERSION_MAX, &out->updated_at, err)))
        goto done;
done:
    cJSON_Delete(j);
    return rc;
}

/* amount is a JSON number in major units (139.99); it must be exact in the
 * currency's minor unit, so 12.345 USD is refused rather than rounded. */
static int get_amount(const cJSON *j, const char *currency, int64_t *out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "amount");
    if (!v || cJSON_IsNull(v))
        return sift_err_set(err, SIFT_EINVAL, "amount: missing");
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return sift_err_set(err, SIFT_EINVAL, "amount: must be a number");
    int exp = sift_currency_exponent(currency);
    double scaled = v->valuedouble * pow(10.0, exp);
    if (scaled < 0 || scaled > 1e13)
        return sift_err_set(err, SIFT_EINVAL, "amount: must be between 0 and %.0f %s",
                            1e13 / pow(10.0, exp), currency);
    double r = round(scaled);
    if (fabs(scaled - r) > 1e-6)
        return sift_err_set(err, SIFT_EINVAL, "amount: more than %d decimals for %s", exp,
                            currency);
    *out = (int64_t)r;
    return 0;
}

int sift_price_parse(sift_arena *a, const char *line, size_t len, int64_t default_version,
                     sift_price *out, sift_err *err)
{
    cJSON *j = NULL;
    int rc = parse_object(line, len, &j, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    if ((rc = get_sku(a, j, "sku", 1, &out->sku, err)) ||
        (rc = get_string(a, j, "currency", 1, 3, STR_PLAIN, &out->currency, err)))
        goto done;
    const char *c = out->currency;
    if (strlen(c) != 3 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < 'A' ||
        c[2] > 'Z') {
        rc = sift_err_set(err, SIFT_EINVAL,
                          "currency: must be an ISO 4217 code of three upper-case letters");
        goto done;
    }
    if ((rc = get_amount(j, c, &out->amount_minor, err)) ||
        (rc = get_int(j, "valid_from", 0, 0, 0, SIFT_VERSION_MAX, &out->valid_from, err)) ||
        (rc = get_version(j, default_version, &out->version, err)))
        goto done;
done:
    cJSON_Delete(j);
    return rc;
}
