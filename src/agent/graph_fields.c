/* Built-in state field kinds for the graph engine: int64 (replace, sum),
 * owned strings (replace) and string lists (append). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/graph.h"

/* ---- int64 ---- */

static int i64_to_json(const void *field, sift_buf *out)
{
    return sift_buf_printf(out, "%" PRId64, *(const int64_t *)field);
}

static int i64_from_json(void *field, const cJSON *json)
{
    /* cJSON keeps numbers as doubles: exact up to 2^53, which covers counters
     * and token usage; a state needing more should use its own ops. */
    if (!cJSON_IsNumber(json))
        return SIFT_EINVAL;
    *(int64_t *)field = (int64_t)json->valuedouble;
    return 0;
}

/* What the branch added since the fan-out is added to the run's value. */
static int i64_sum_merge(void *dst, const void *base, const void *branch)
{
    *(int64_t *)dst += *(const int64_t *)branch - *(const int64_t *)base;
    return 0;
}

const sift_graph_field_ops sift_graph_i64 = {
    .size = sizeof(int64_t), .to_json = i64_to_json, .from_json = i64_from_json};

const sift_graph_field_ops sift_graph_i64_sum = {.size = sizeof(int64_t),
                                                 .merge = i64_sum_merge,
                                                 .to_json = i64_to_json,
                                                 .from_json = i64_from_json};

/* ---- owned string ---- */

int sift_graph_str_set(char **dst, const char *s)
{
    char *c = NULL;
    if (s && !(c = sift_strdup(s)))
        return SIFT_ENOMEM;
    sift_free(*dst);
    *dst = c;
    return 0;
}

static int str_copy(void *dst, const void *src)
{
    const char *s = *(char *const *)src;
    *(char **)dst = NULL;
    return sift_graph_str_set((char **)dst, s);
}

static void str_dispose(void *field)
{
    sift_free(*(char **)field);
    *(char **)field = NULL;
}

static int str_equal(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    if (!x || !y)
        return x == y;
    return strcmp(x, y) == 0;
}

static int str_to_json(const void *field, sift_buf *out)
{
    const char *s = *(char *const *)field;
    if (!s)
        return sift_buf_puts(out, "null");
    int rc = sift_buf_putc(out, '"');
    if (!rc)
        rc = sift_buf_json_escape(out, s, strlen(s));
    if (!rc)
        rc = sift_buf_putc(out, '"');
    return rc;
}

static int str_from_json(void *field, const cJSON *json)
{
    if (cJSON_IsNull(json))
        return sift_graph_str_set((char **)field, NULL);
    if (!cJSON_IsString(json))
        return SIFT_EINVAL;
    return sift_graph_str_set((char **)field, json->valuestring);
}

const sift_graph_field_ops sift_graph_str = {.size = sizeof(char *),
                                             .copy = str_copy,
                                             .dispose = str_dispose,
                                             .equal = str_equal,
                                             .to_json = str_to_json,
                                             .from_json = str_from_json};

/* ---- list of strings, appended ---- */

int sift_graph_strlist_push(sift_graph_strlist *l, const char *s)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        char **items = sift_realloc(l->items, cap * sizeof(*items));
        if (!items)
            return SIFT_ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    char *c = sift_strdup(s ? s : "");
    if (!c)
        return SIFT_ENOMEM;
    l->items[l->len++] = c;
    return 0;
}

static void strlist_dispose(void *field)
{
    sift_graph_strlist *l = field;
    for (size_t i = 0; i < l->len; i++)
        sift_free(l->items[i]);
    sift_free(l->items);
    memset(l, 0, sizeof(*l));
}

static int strlist_copy(void *dst, const void *src)
{
    const sift_graph_strlist *s = src;
    sift_graph_strlist *d = dst;
    memset(d, 0, sizeof(*d));
    for (size_t i = 0; i < s->len; i++) {
        if (sift_graph_strlist_push(d, s->items[i])) {
            strlist_dispose(d);
            return SIFT_ENOMEM;
        }
    }
    return 0;
}

/* A branch starts from a copy of base and may only append (that is the
 * contract of this kind), so what it added is everything past base's length. */
static int strlist_merge(void *dst, const void *base, const void *branch)
{
    const sift_graph_strlist *b = base, *br = branch;
    for (size_t i = b->len; i < br->len; i++)
        if (sift_graph_strlist_push(dst, br->items[i]))
            return SIFT_ENOMEM;
    return 0;
}

static int strlist_to_json(const void *field, sift_buf *out)
{
    const sift_graph_strlist *l = field;
    int rc = sift_buf_putc(out, '[');
    for (size_t i = 0; !rc && i < l->len; i++) {
        if (i)
            rc = sift_buf_putc(out, ',');
        if (!rc)
            rc = str_to_json(&l->items[i], out);
    }
    if (!rc)
        rc = sift_buf_putc(out, ']');
    return rc;
}

static int strlist_from_json(void *field, const cJSON *json)
{
    if (!cJSON_IsArray(json))
        return SIFT_EINVAL;
    const cJSON *it;
    cJSON_ArrayForEach(it, json)
    {
        if (!cJSON_IsString(it))
            return SIFT_EINVAL;
        if (sift_graph_strlist_push(field, it->valuestring))
            return SIFT_ENOMEM;
    }
    return 0;
}

const sift_graph_field_ops sift_graph_strlist_append = {.size = sizeof(sift_graph_strlist),
                                                        .copy = strlist_copy,
                                                        .dispose = strlist_dispose,
                                                        .merge = strlist_merge,
                                                        .to_json = strlist_to_json,
                                                        .from_json = strlist_from_json};
