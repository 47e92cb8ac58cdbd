/* The cJSON reading of a chunk the fast path accepted, for the differential
 * checks (tests/fuzz/fuzz_fastchunk.c, tests/unit/test_fastchunk.c): what
 * stream.c's cJSON path would take from it. Returns 1 when cJSON parses the
 * chunk, the chunk has the shape fastchunk.h describes as cJSON sees it, and
 * its content is exactly `content`/`clen` (NULL: absent or null). */
#ifndef SIFT_FASTCHUNK_ORACLE_H
#define SIFT_FASTCHUNK_ORACLE_H

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "llm/fastchunk.h"

static int absent_or_null(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return !v || cJSON_IsNull(v);
}

/* obj's member `key` as cJSON reads it: absent or null when `p` is NULL,
 * else a string equal to p[0..n). */
static int same_str(const cJSON *obj, const char *key, const char *p, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!p)
        return !v || cJSON_IsNull(v);
    return cJSON_IsString(v) && strlen(v->valuestring) == n && memcmp(v->valuestring, p, n) == 0;
}

/* "usage" as stream.c reads it with cJSON: absent or null when the scanner
 * saw none, else an object whose three counts (absent or null: 0) are the
 * scanner's. */
static int same_usage(const cJSON *j, const sift_fastchunk *f)
{
    static const char *const names[3] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (!f->has_usage)
        return !u || cJSON_IsNull(u);
    if (!cJSON_IsObject(u))
        return 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(u, names[i]);
        double want = (double)f->usage[i];
        if (n && !cJSON_IsNull(n) ? !(cJSON_IsNumber(n) && n->valuedouble == want) : want != 0)
            return 0;
    }
    return 1;
}

/* The same for everything sift_fastchunk_read accepts: no choice, or text
 * as above, or one fragment of arguments equal, decoded, to cJSON's string
 * (with the same call id and name); the same finish reason and usage. */
static int fastchunk_oracle_read(const char *data, size_t len, const sift_fastchunk *f)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    int ok = 0;
    if (!j)
        return 0;
    size_t pos = (size_t)(end - data);
    while (pos < len && data[pos] && strchr(" \t\r\n", data[pos]))
        pos++;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(c0, "index");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(delta, "content");
    const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
    if (pos != len || !cJSON_IsObject(j) || !absent_or_null(j, "error") || !same_usage(j, f) ||
        !cJSON_IsArray(ch) || cJSON_GetArraySize(ch) != f->n_choices)
        goto out;
    if (f->n_choices == 0) {
        ok = !f->has_args && !f->content && !f->finish;
        goto out;
    }
    if (!cJSON_IsObject(c0) || (idx && !(cJSON_IsNumber(idx) && idx->valuedouble == 0)) ||
        !same_str(c0, "finish_reason", f->finish, f->finish_len) ||
        (delta && !cJSON_IsNull(delta) && !cJSON_IsObject(delta)))
        goto out;
    if (!f->has_args) {
        if (!absent_or_null(delta, "tool_calls"))
            goto out;
        if (!text || cJSON_IsNull(text))
            ok = f->content == NULL;
        else
            ok = cJSON_IsString(text) && f->content &&
                 strlen(text->valuestring) == f->content_len &&
                 memcmp(text->valuestring, f->content, f->content_len) == 0;
        goto out;
    }
    const cJSON *tc = cJSON_GetArrayItem(tcs, 0);
    const cJSON *ti = cJSON_GetObjectItemCaseSensitive(tc, "index");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    if (!absent_or_null(delta, "content") || !cJSON_IsArray(tcs) || cJSON_GetArraySize(tcs) != 1 ||
        !cJSON_IsObject(tc) || !cJSON_IsNumber(ti) || ti->valuedouble != (double)f->args_index ||
        !same_str(tc, "id", f->call_id, f->call_id_len) || !cJSON_IsObject(fn) ||
        !same_str(fn, "name", f->call_name, f->call_name_len) || !cJSON_IsString(args))
        goto out;
    char *dec = malloc(f->args_len + 1);
    size_t n = dec ? sift_fastchunk_unescape(f->args, f->args_len, dec) : 0;
    ok = dec && strlen(args->valuestring) == n && memcmp(args->valuestring, dec, n) == 0;
    free(dec);
out:
    cJSON_Delete(j);
    return ok;
}

static int fastchunk_oracle(const char *data, size_t len, const char *content, size_t clen)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    int ok = 0;
    if (!j)
        return 0;
    size_t pos = (size_t)(end - data);
    while (pos < len && strchr(" \t\r\n", data[pos]) && data[pos])
        pos++;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(c0, "index");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(delta, "content");
    if (pos != len || !cJSON_IsObject(j) || !absent_or_null(j, "error") ||
        !absent_or_null(j, "usage") || !cJSON_IsArray(ch) || cJSON_GetArraySize(ch) != 1 ||
        !cJSON_IsObject(c0) || (idx && !(cJSON_IsNumber(idx) && idx->valuedouble == 0)) ||
        !absent_or_null(c0, "finish_reason") ||
        (delta && !cJSON_IsNull(delta) && !cJSON_IsObject(delta)) ||
        !absent_or_null(delta, "tool_calls"))
        goto out;
    if (!text || cJSON_IsNull(text))
        ok = content == NULL;
    else
        ok = cJSON_IsString(text) && content && strlen(text->valuestring) == clen &&
             memcmp(text->valuestring, content, clen) == 0;
out:
    cJSON_Delete(j);
    return ok;
}

#endif
