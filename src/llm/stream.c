/* The stream delta assembler: chat.completion.chunk payloads in, events and
 * one assembled assistant message out. Pure: no I/O, no globals. */
#include "sift/model.h"

#include "llm/fastchunk.h"
#include "llm/wire.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_MAX_CONTENT ((size_t)1 << 20)
#define DEFAULT_MAX_ARGUMENTS ((size_t)256 << 10)
#define DEFAULT_MAX_TOOL_CALLS 64
#define ID_MAX 256 /* longest tool call id or name kept */

/* One tool call being assembled. The buffers survive sift_stream_reset. */
struct sift_stream_call {
    sift_buf id;
    sift_buf name;
    sift_buf args;
    size_t sent; /* bytes of args already given to on_tool_args */
};

void sift_stream_init(sift_stream *s, const sift_stream_cbs *cbs, const sift_stream_limits *limits)
{
    memset(s, 0, sizeof(*s));
    if (cbs)
        s->cbs = *cbs;
    if (limits)
        s->limits = *limits;
    if (!s->limits.max_content)
        s->limits.max_content = DEFAULT_MAX_CONTENT;
    if (!s->limits.max_arguments)
        s->limits.max_arguments = DEFAULT_MAX_ARGUMENTS;
    if (!s->limits.max_tool_calls)
        s->limits.max_tool_calls = DEFAULT_MAX_TOOL_CALLS;
    sift_buf_init(&s->content, s->limits.max_content);
}

void sift_stream_reset(sift_stream *s)
{
    s->state = SIFT_STREAM_OPEN;
    s->chunks = 0;
    sift_buf_reset(&s->content);
    s->content_sent = 0;
    for (size_t i = 0; i < s->n_calls; i++) {
        sift_buf_reset(&s->calls[i].id);
        sift_buf_reset(&s->calls[i].name);
        sift_buf_reset(&s->calls[i].args);
        s->calls[i].sent = 0;
    }
    s->n_calls = 0;
    s->finish = SIFT_FINISH_NONE;
    s->finish_text[0] = '\0';
    s->has_usage = false;
    memset(&s->usage, 0, sizeof(s->usage));
}

void sift_stream_free(sift_stream *s)
{
    sift_buf_free(&s->content);
    for (size_t i = 0; i < s->cap_calls; i++) {
        sift_buf_free(&s->calls[i].id);
        sift_buf_free(&s->calls[i].name);
        sift_buf_free(&s->calls[i].args);
    }
    sift_free(s->calls);
    s->calls = NULL;
    s->n_calls = s->cap_calls = 0;
}

/* How many bytes at the end of p[0..n) are the start of a UTF-8 character
 * whose remaining bytes have not arrived yet. Invalid bytes are not held: the
 * consumer replaces them, and holding them would only delay the text. */
static size_t utf8_incomplete_tail(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = p[n - k];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = 1;
        if (c >= 0xC2 && c <= 0xDF)
            need = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 4;
        return need > k ? k : 0;
    }
    return 0;
}

static int fail(sift_stream *s, sift_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void give_pending(sift_stream *s);

/* Marks the assembler failed and records "stream chunk N: <what>". */
static int fail(sift_stream *s, sift_err *err, int code, const char *fmt, ...)
{
    give_pending(s);
    s->state = SIFT_STREAM_FAILED;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return sift_err_set(err, code, "stream chunk %llu: %s", (unsigned long long)s->chunks, what);
}

static int cb_failed(sift_stream *s, sift_err *err, int rc, const char *cb)
{
    if (rc > 0)
        rc = SIFT_EINTERNAL;
    s->state = SIFT_STREAM_FAILED;
    return sift_err_set(err, rc, "stream chunk %llu: %s callback stopped the stream (%s)",
                        (unsigned long long)s->chunks, cb, sift_err_name(rc));
}

/* Gives the callback the content that has arrived, whole characters only
 * unless `flush`. */
static int emit_content(sift_stream *s, bool flush, sift_err *err)
{
    /* nothing pending (it is called before every other callback); the
     * buffer may not even exist yet */
    if (s->content.len == s->content_sent)
        return 0;
    size_t end = s->content.len;
    if (!flush)
        end -= utf8_incomplete_tail(s->content.data + s->content_sent, end - s->content_sent);
    if (end == s->content_sent || !s->cbs.on_content)
        return 0;
    int rc = s->cbs.on_content(s->cbs.ud, s->content.data + s->content_sent, end - s->content_sent);
    if (rc)
        return cb_failed(s, err, rc, "content");
    s->content_sent = end;
    return 0;
}

/* Batch mode: text that arrived before a bad chunk still goes out before the
 * failure, as it did chunk by chunk. A callback's error is dropped here: the
 * stream is failing anyway. */
static void give_pending(sift_stream *s)
{
    if (!s->batch || s->state == SIFT_STREAM_FAILED)
        return;
    sift_err ignored = {0};
    (void)emit_content(s, false, &ignored);
}

/* Content has been appended: give it out now, or in batch mode when the
 * caller flushes (or before the next other callback). */
static int content_arrived(sift_stream *s, sift_err *err)
{
    return s->batch ? 0 : emit_content(s, false, err);
}

void sift_stream_set_batch(sift_stream *s, bool on)
{
    s->batch = on;
}

int sift_stream_flush(sift_stream *s, sift_err *err)
{
    if (s->state == SIFT_STREAM_FAILED)
        return 0;
    return emit_content(s, false, err);
}

static int emit_args(sift_stream *s, size_t idx, bool flush, sift_err *err)
{
    /* batched content that came before these arguments goes out first */
    int rc = emit_content(s, false, err);
    if (rc)
        return rc;
    struct sift_stream_call *c = &s->calls[idx];
    size_t end = c->args.len;
    if (!flush)
        end -= utf8_incomplete_tail(c->args.data + c->sent, end - c->sent);
    if (end == c->sent || !s->cbs.on_tool_args)
        return 0;
    rc = s->cbs.on_tool_args(s->cbs.ud, idx, c->args.data + c->sent, end - c->sent);
    if (rc)
        return cb_failed(s, err, rc, "tool arguments");
    c->sent = end;
    return 0;
}

static int grow_calls(sift_stream *s, sift_err *err)
{
    size_t cap = s->cap_calls ? s->cap_calls * 2 : 4;
    if (cap > s->limits.max_tool_calls)
        cap = s->limits.max_tool_calls;
    struct sift_stream_call *n = sift_realloc(s->calls, cap * sizeof(*n));
    if (!n)
        return fail(s, err, SIFT_ENOMEM, "out of memory");
    for (size_t i = s->cap_calls; i < cap; i++) {
        sift_buf_init(&n[i].id, ID_MAX);
        sift_buf_init(&n[i].name, ID_MAX);
        sift_buf_init(&n[i].args, s->limits.max_arguments);
        n[i].sent = 0;
    }
    s->calls = n;
    s->cap_calls = cap;
    return 0;
}

static int append(sift_stream *s, sift_buf *b, const char *p, size_t n, const char *what,
                  sift_err *err)
{
    int rc = sift_buf_append(b, p, n);
    if (rc == SIFT_ETOOBIG) {
        return fail(s, err, rc, "%s longer than %zu bytes", what, b->limit);
    }
    if (rc)
        return fail(s, err, rc, "out of memory assembling %s", what);
    return 0;
}

/* An optional string field: NULL when absent or null, *bad set when it is
 * something else. */
static const char *opt_str(const cJSON *obj, const char *key, bool *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsString(v))
        return v->valuestring;
    if (v && !cJSON_IsNull(v))
        *bad = true;
    return NULL;
}

/* Error messages name the fragment: "choices[0].delta.tool_calls[i]" (the
 * path is only formatted on error: this runs for every fragment). */
#define TC_PATH "choices[0].delta.tool_calls[%d]"

static int tool_fragment(sift_stream *s, int i, long long idx, const char *id, const char *name,
                         const char *args, size_t args_len, sift_err *err);

static int feed_tool_call(sift_stream *s, const cJSON *tc, int i, sift_err *err)
{
    if (!cJSON_IsObject(tc))
        return fail(s, err, SIFT_EPROTO, TC_PATH ": expected an object", i);
    const cJSON *jidx = cJSON_GetObjectItemCaseSensitive(tc, "index");
    long long idx;
    if (!jidx)
        return fail(s, err, SIFT_EPROTO, TC_PATH ".index missing", i);
    if (sift_wire_count(jidx, &idx))
        return fail(s, err, SIFT_EPROTO, TC_PATH ".index: expected a non-negative integer", i);
    bool bad = false;
    const char *id = opt_str(tc, "id", &bad);
    if (bad)
        return fail(s, err, SIFT_EPROTO, TC_PATH ".id: expected a string", i);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    if (fn && !cJSON_IsNull(fn) && !cJSON_IsObject(fn))
        return fail(s, err, SIFT_EPROTO, TC_PATH ".function: expected an object", i);
    const char *name = opt_str(fn, "name", &bad);
    if (bad)
        return fail(s, err, SIFT_EPROTO, TC_PATH ".function.name: expected a string", i);
    const char *args = opt_str(fn, "arguments", &bad);
    if (bad)
        return fail(s, err, SIFT_EPROTO, TC_PATH ".function.arguments: expected a string", i);
    return tool_fragment(s, i, idx, id, name, args, args ? strlen(args) : 0, err);
}

/* One fragment of tool call `idx` (the i-th of its chunk), its fields
 * decoded (NULL when absent or null): starts the call or adds to it. Shared
 * by the cJSON path and the fast path, so both check the same things. */
static int tool_fragment(sift_stream *s, int i, long long idx, const char *id, const char *name,
                         const char *args, size_t args_len, sift_err *err)
{
    if ((size_t)idx > s->n_calls)
        return fail(s, err, SIFT_EPROTO, TC_PATH ".index jumps to %lld after %zu tool call(s)", i,
                    idx, s->n_calls);
    int rc;
    struct sift_stream_call *c;
    if ((size_t)idx == s->n_calls) {
        if (s->n_calls == s->limits.max_tool_calls)
            return fail(s, err, SIFT_ETOOBIG, "more than %zu tool calls", s->limits.max_tool_calls);
        if (s->n_calls == s->cap_calls && (rc = grow_calls(s, err)))
            return rc;
        /* The first fragment of a call carries its id and name; without them
         * the call could not be answered. */
        if (!id || !*id)
            return fail(s, err, SIFT_EPROTO, TC_PATH ".id missing on the first fragment", i);
        if (!name || !*name)
            return fail(s, err, SIFT_EPROTO, TC_PATH ".function.name missing on the first fragment",
                        i);
        c = &s->calls[s->n_calls];
        /* A failed earlier stream may have left bytes in this slot. */
        sift_buf_reset(&c->id);
        sift_buf_reset(&c->name);
        sift_buf_reset(&c->args);
        c->sent = 0;
        if ((rc = append(s, &c->id, id, strlen(id), "tool call id", err)) ||
            (rc = append(s, &c->name, name, strlen(name), "tool call name", err)))
            return rc;
        s->n_calls++;
        if ((rc = emit_content(s, false, err)))
            return rc;
        if (s->cbs.on_tool_start &&
            (rc = s->cbs.on_tool_start(s->cbs.ud, (size_t)idx, c->id.data, c->name.data)))
            return cb_failed(s, err, rc, "tool start");
    } else {
        c = &s->calls[idx];
        /* Some providers repeat id and name on every fragment; a different
         * value would mean fragments of two calls were mixed up. */
        if (id && *id && strcmp(id, c->id.data) != 0)
            return fail(s, err, SIFT_EPROTO, TC_PATH ".id changed to \"%s\"", i, id);
        if (name && *name && strcmp(name, c->name.data) != 0)
            return fail(s, err, SIFT_EPROTO, TC_PATH ".function.name changed to \"%s\"", i, name);
    }
    if (args && args_len) {
        if ((rc = append(s, &c->args, args, args_len, "tool call arguments", err)))
            return rc;
        return emit_args(s, (size_t)idx, false, err);
    }
    return 0;
}

static int feed_finish(sift_stream *s, const char *reason, sift_err *err)
{
    int rc;
    s->finish = sift_finish_parse(reason);
    snprintf(s->finish_text, sizeof(s->finish_text), "%s", reason);
    s->state = SIFT_STREAM_FINISHED;
    if ((rc = emit_content(s, true, err)))
        return rc;
    for (size_t i = 0; i < s->n_calls; i++) {
        if ((rc = emit_args(s, i, true, err)))
            return rc;
        struct sift_stream_call *c = &s->calls[i];
        sift_tool_call call = {.id = c->id.data,
                               .name = c->name.data,
                               .arguments = c->args.data ? c->args.data : "",
                               .arguments_len = c->args.len};
        if (s->cbs.on_tool_done && (rc = s->cbs.on_tool_done(s->cbs.ud, i, &call)))
            return cb_failed(s, err, rc, "tool done");
    }
    if (s->cbs.on_finish && (rc = s->cbs.on_finish(s->cbs.ud, s->finish, s->finish_text)))
        return cb_failed(s, err, rc, "finish");
    return 0;
}

static int feed_choice(sift_stream *s, const cJSON *ch, sift_err *err)
{
    int rc;
    bool bad = false;
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
    if (delta && !cJSON_IsNull(delta) && !cJSON_IsObject(delta))
        return fail(s, err, SIFT_EPROTO, "choices[0].delta: expected an object");
    const char *content = opt_str(delta, "content", &bad);
    if (bad)
        return fail(s, err, SIFT_EPROTO, "choices[0].delta.content: expected a string");
    const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
    if (tcs && !cJSON_IsNull(tcs) && !cJSON_IsArray(tcs))
        return fail(s, err, SIFT_EPROTO, "choices[0].delta.tool_calls: expected an array");
    const char *reason = opt_str(ch, "finish_reason", &bad);
    if (bad)
        return fail(s, err, SIFT_EPROTO, "choices[0].finish_reason: expected a string");

    /* Some servers send "" where OpenAI sends null. */
    if (reason && !*reason)
        reason = NULL;
    bool has_delta = (content && *content) || cJSON_GetArraySize(tcs) > 0;
    if (s->state == SIFT_STREAM_FINISHED) {
        if (has_delta)
            return fail(s, err, SIFT_EPROTO, "delta after finish_reason \"%s\"", s->finish_text);
        /* A repeated finish_reason (some servers put it on the usage chunk
         * too) adds nothing; the first one stands. */
        return 0;
    }
    if (content && *content) {
        if ((rc = append(s, &s->content, content, strlen(content), "content", err)) ||
            (rc = content_arrived(s, err)))
            return rc;
    }
    int i = 0;
    const cJSON *tc;
    cJSON_ArrayForEach(tc, tcs)
    {
        if ((rc = feed_tool_call(s, tc, i++, err)))
            return rc;
    }
    if (reason && (rc = feed_finish(s, reason, err)))
        return rc;
    return 0;
}

static bool is_done(const char *p, size_t n)
{
    while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        n--;
    return n == 6 && memcmp(p, "[DONE]", 6) == 0;
}

static int feed_doc(sift_stream *s, const cJSON *j, const char *data, size_t len, sift_err *err)
{
    int rc;
    if (!cJSON_IsObject(j))
        return fail(s, err, SIFT_EPROTO, "expected a JSON object");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (e && !cJSON_IsNull(e)) {
        give_pending(s);
        s->state = SIFT_STREAM_FAILED;
        return sift_chat_error_parse(0, data, len, err);
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (choices && !cJSON_IsNull(choices) && !cJSON_IsArray(choices))
        return fail(s, err, SIFT_EPROTO, "choices: expected an array");
    const cJSON *ch;
    int n = 0;
    cJSON_ArrayForEach(ch, choices)
    {
        if (!cJSON_IsObject(ch))
            return fail(s, err, SIFT_EPROTO, "choices[%d]: expected an object", n);
        n++;
        /* sift asks for one choice (n=1); others are not ours to merge. */
        const cJSON *ci = cJSON_GetObjectItemCaseSensitive(ch, "index");
        long long idx = 0;
        if (ci && sift_wire_count(ci, &idx))
            return fail(s, err, SIFT_EPROTO, "choices[%d].index: expected a non-negative integer",
                        n - 1);
        if (idx == 0 && (rc = feed_choice(s, ch, err)))
            return rc;
    }
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (u && !cJSON_IsNull(u)) {
        sift_err uerr = {0};
        char where[48];
        snprintf(where, sizeof(where), "stream chunk %llu: ", (unsigned long long)s->chunks);
        if (sift_wire_usage(u, &s->usage, where, &uerr)) {
            give_pending(s);
            s->state = SIFT_STREAM_FAILED;
            return sift_err_copy(err, &uerr);
        }
        s->has_usage = true;
        if ((rc = emit_content(s, false, err)))
            return rc;
        if (s->cbs.on_usage && (rc = s->cbs.on_usage(s->cbs.ud, &s->usage)))
            return cb_failed(s, err, rc, "usage");
    }
    return 0;
}

static int fast_usage(sift_stream *s, const sift_fastchunk *fc, sift_err *err);

/* The fast path's finish_reason, after the chunk's text or arguments, as
 * feed_choice does it ("" counts as none). `buf` has room for finish_text. */
static int fast_finish(sift_stream *s, const sift_fastchunk *fc, char *buf, sift_err *err)
{
    int rc;
    if (fc->finish && fc->finish_len) {
        memcpy(buf, fc->finish, fc->finish_len);
        buf[fc->finish_len] = '\0';
        if ((rc = feed_finish(s, buf, err)))
            return rc;
    }
    return fast_usage(s, fc, err);
}

/* The fast path's usage, as feed_doc reads it after the choices. */
static int fast_usage(sift_stream *s, const sift_fastchunk *fc, sift_err *err)
{
    int rc;
    if (!fc->has_usage)
        return 0;
    s->usage.prompt_tokens = fc->usage[0];
    s->usage.completion_tokens = fc->usage[1];
    s->usage.total_tokens = fc->usage[2];
    s->has_usage = true;
    if ((rc = emit_content(s, false, err)))
        return rc;
    if (s->cbs.on_usage && (rc = s->cbs.on_usage(s->cbs.ud, &s->usage)))
        return cb_failed(s, err, rc, "usage");
    return 0;
}

/* A string the fast path found (no escapes, so no NUL inside), as a C
 * string in buf; NULL stays NULL (absent or null). */
static const char *fast_str(const char *p, size_t n, char *buf)
{
    if (!p)
        return NULL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

int sift_stream_feed(sift_stream *s, const char *data, size_t len, sift_err *err)
{
    if (s->state == SIFT_STREAM_FAILED)
        return sift_err_set(err, SIFT_ESTATE, "stream assembler used after an error");
    s->chunks++;
    if (s->state == SIFT_STREAM_DONE)
        return fail(s, err, SIFT_EPROTO, "data after [DONE]");
    if (is_done(data, len)) {
        s->state = SIFT_STREAM_DONE;
        return 0;
    }
    /* most chunks are one piece of text or of a started call's arguments:
     * read those without building a tree */
    sift_fastchunk fc;
    char args[512];
    char reason[sizeof s->finish_text];
    char id[ID_MAX + 1], name[ID_MAX + 1];
    /* a finish reason too long for finish_text: cJSON's path truncates it */
    bool fast = sift_fastchunk_read(data, len, &fc) && fc.finish_len < sizeof reason;
    if (fast && s->state == SIFT_STREAM_FINISHED) {
        /* after finish_reason only a repeated one (ignored) and usage may
         * come; more text or a tool call is cJSON's path, which says so */
        if (!fc.has_args && !fc.content_len)
            return fast_usage(s, &fc, err);
        fast = false;
    }
    if (fast) {
        int rc = 0;
        if (!fc.has_args) {
            if (fc.content_len) {
                rc = append(s, &s->content, fc.content, fc.content_len, "content", err);
                if (rc || (rc = content_arrived(s, err)))
                    return rc;
            }
            return fast_finish(s, &fc, reason, err);
        }
        /* a long fragment, id or name: cJSON's path (and its limits) */
        if (fc.args_len <= sizeof args && fc.call_id_len < sizeof id &&
            fc.call_name_len < sizeof name) {
            size_t n = sift_fastchunk_unescape(fc.args, fc.args_len, args);
            rc = tool_fragment(s, 0, fc.args_index, fast_str(fc.call_id, fc.call_id_len, id),
                               fast_str(fc.call_name, fc.call_name_len, name), args, n, err);
            return rc ? rc : fast_finish(s, &fc, reason, err);
        }
    }
    size_t at;
    cJSON *j = sift_wire_parse(data, len, &at);
    if (!j)
        return fail(s, err, SIFT_EPROTO, "invalid JSON at byte %zu", at);
    int rc = feed_doc(s, j, data, len, err);
    cJSON_Delete(j);
    return rc;
}

static char *dup_n(sift_arena *a, const char *p, size_t n)
{
    char *d = sift_arena_alloc(a, n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

int sift_stream_finish(sift_stream *s, sift_arena *arena, sift_chat_result *out, sift_err *err)
{
    memset(out, 0, sizeof(*out));
    if (s->state == SIFT_STREAM_FAILED)
        return sift_err_set(err, SIFT_ESTATE, "stream assembler used after an error");
    if (s->finish == SIFT_FINISH_NONE) {
        s->state = SIFT_STREAM_FAILED;
        return sift_err_set(err, SIFT_EPROTO, "stream ended without finish_reason");
    }
    sift_chat_result r = {.message.role = SIFT_ROLE_ASSISTANT,
                          .finish = s->finish,
                          .has_usage = s->has_usage,
                          .usage = s->usage};
    if (!(r.finish_text = dup_n(arena, s->finish_text, strlen(s->finish_text))))
        goto nomem;
    /* A reply made only of tool calls has no content, as in OpenAI's
     * non-streaming form; a reply with neither has empty content. */
    if (s->content.len || !s->n_calls) {
        if (!(r.message.content = dup_n(arena, s->content.data, s->content.len)))
            goto nomem;
        r.message.content_len = s->content.len;
    }
    if (s->n_calls) {
        sift_tool_call *tc = sift_arena_calloc(arena, s->n_calls, sizeof(*tc));
        if (!tc)
            goto nomem;
        for (size_t i = 0; i < s->n_calls; i++) {
            struct sift_stream_call *c = &s->calls[i];
            tc[i].id = dup_n(arena, c->id.data, c->id.len);
            tc[i].name = dup_n(arena, c->name.data, c->name.len);
            tc[i].arguments = dup_n(arena, c->args.data, c->args.len);
            tc[i].arguments_len = c->args.len;
            if (!tc[i].id || !tc[i].name || !tc[i].arguments)
                goto nomem;
        }
        r.message.tool_calls = tc;
        r.message.n_tool_calls = s->n_calls;
    }
    *out = r;
    return 0;
nomem:
    return sift_err_set(err, SIFT_ENOMEM, "out of memory copying the streamed message");
}
