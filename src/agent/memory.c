/* Conversation memory: trimming to a budget, and the stored JSON form.
 *
 * Trimming works on cut points. Cutting at index i keeps msgs[i..n) (after
 * the system prefix). A cut is valid when no kept tool result answers a call
 * made by a dropped assistant message: each message has an "owner" (a tool
 * result is owned by the assistant message that made its call, any other
 * message by itself), and i is valid when every message at or after i is
 * owned by a message at or after i. One backward pass computes the suffix
 * minimum of owners together with the suffix cost, so the whole trim is one
 * pass plus the owner look-ups. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sift/memory.h"

#define NONE SIZE_MAX

static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t str_len(const char *s)
{
    return s ? strlen(s) : 0;
}

size_t sift_memory_estimate_tokens(const sift_message *m)
{
    if (!m)
        return 0;
    size_t bytes = add_sat(m->content_len, str_len(m->tool_call_id));
    for (size_t k = 0; k < m->n_tool_calls; k++) {
        const sift_tool_call *t = &m->tool_calls[k];
        bytes = add_sat(bytes, str_len(t->id));
        bytes = add_sat(bytes, str_len(t->name));
        bytes = add_sat(bytes, t->arguments_len);
    }
    return add_sat(4, bytes / 4 + (bytes % 4 != 0));
}

size_t sift_memory_system_prefix(const sift_message *msgs, size_t n)
{
    size_t i = 0;
    while (i < n && msgs[i].role == SIFT_ROLE_SYSTEM)
        i++;
    return i;
}

static bool has_call(const sift_message *m, const char *id)
{
    if (m->role != SIFT_ROLE_ASSISTANT || !id)
        return false;
    for (size_t k = 0; k < m->n_tool_calls; k++)
        if (m->tool_calls[k].id && strcmp(m->tool_calls[k].id, id) == 0)
            return true;
    return false;
}

/* The message that must be kept for msgs[j] to be kept. A tool result whose
 * call no earlier assistant message made is not valid history either way; it
 * sticks to the message before it, so it is never the first kept message
 * (where it would certainly be rejected). */
static size_t owner(const sift_message *msgs, size_t n_sys, size_t j)
{
    if (msgs[j].role != SIFT_ROLE_TOOL)
        return j;
    for (size_t k = j; k-- > n_sys;)
        if (has_call(&msgs[k], msgs[j].tool_call_id))
            return k;
    return j > n_sys ? j - 1 : j;
}

static size_t cost(const sift_memory_budget *b, const sift_message *m)
{
    return b->count ? b->count(b->count_ud, m) : sift_memory_estimate_tokens(m);
}

int sift_memory_trim(const sift_message *msgs, size_t n, const sift_memory_budget *b,
                     size_t *first_kept)
{
    if (!b || !first_kept || (!msgs && n))
        return SIFT_EINVAL;
    size_t max_msgs = b->max_messages ? b->max_messages : SIZE_MAX;
    size_t max_tok = b->max_tokens ? b->max_tokens : SIZE_MAX;
    size_t n_sys = sift_memory_system_prefix(msgs, n);

    size_t sys_tok = 0;
    for (size_t i = 0; i < n_sys && max_tok != SIZE_MAX; i++)
        sys_tok = add_sat(sys_tok, cost(b, &msgs[i]));
    size_t last_user = NONE;
    for (size_t i = n; i-- > n_sys;) {
        if (msgs[i].role == SIFT_ROLE_USER) {
            last_user = i;
            break;
        }
    }

    /* Walk the cut point i from n (keep nothing) back towards n_sys (keep
     * everything), adding msgs[i] to the kept suffix at each step. */
    size_t best = NONE;      /* smallest valid cut that fits */
    size_t best_user = NONE; /* smallest valid cut at a user message that fits */
    size_t forced = NONE;    /* largest valid cut at or before last_user, over budget */
    size_t count = n_sys, tokens = sys_tok;
    size_t min_owner = n;
    for (size_t i = n + 1; i-- > n_sys;) {
        if (i < n) {
            count++;
            if (max_tok != SIZE_MAX)
                tokens = add_sat(tokens, cost(b, &msgs[i]));
            size_t o = owner(msgs, n_sys, i);
            if (o < min_owner)
                min_owner = o;
        }
        bool valid = min_owner >= i;
        bool fits = count <= max_msgs && tokens <= max_tok;
        if (fits) {
            if (valid) {
                best = i;
                if (i < n && msgs[i].role == SIFT_ROLE_USER)
                    best_user = i;
            }
            continue;
        }
        /* Costs only grow from here on: nothing smaller fits. */
        if (last_user == NONE)
            break;
        if (i <= last_user && valid) {
            forced = i;
            break;
        }
    }

    size_t cut;
    if (last_user == NONE)
        cut = best != NONE ? best : n;
    else if (best != NONE && best <= last_user)
        cut = best_user != NONE ? best_user : best;
    else
        cut = forced != NONE ? forced : n_sys;
    *first_kept = cut;
    return 0;
}

int sift_memory_trim_conv(sift_conv *c, const sift_memory_budget *b, size_t *dropped)
{
    size_t first = 0;
    if (!c)
        return SIFT_EINVAL;
    int rc = sift_memory_trim(c->msgs, c->len, b, &first);
    if (rc)
        return rc;
    size_t n_sys = sift_memory_system_prefix(c->msgs, c->len);
    size_t gone = first - n_sys;
    if (gone) {
        memmove(&c->msgs[n_sys], &c->msgs[first], (c->len - first) * sizeof(*c->msgs));
        c->len -= gone;
    }
    if (dropped)
        *dropped = gone;
    return 0;
}

/* ---- JSON form --------------------------------------------------------- */

static int check_out(const sift_message *m, size_t i, sift_err *err)
{
    const char *role = sift_role_name(m->role);
    if (!role)
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: unknown role %d", i, (int)m->role);
    if (m->n_tool_calls && (m->role != SIFT_ROLE_ASSISTANT || !m->tool_calls))
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: tool calls on a %s message", i, role);
    for (size_t k = 0; k < m->n_tool_calls; k++) {
        const sift_tool_call *t = &m->tool_calls[k];
        if (!t->id || !*t->id || !t->name || !*t->name || (!t->arguments && t->arguments_len))
            return sift_err_set(err, SIFT_EINVAL,
                                "messages[%zu].tool_calls[%zu]: id, name or arguments missing", i,
                                k);
    }
    if (m->role == SIFT_ROLE_TOOL && (!m->tool_call_id || !*m->tool_call_id))
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: tool result without tool_call_id", i);
    if (m->role != SIFT_ROLE_ASSISTANT && !m->content)
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: %s message without content", i, role);
    return 0;
}

int sift_memory_to_json(const sift_message *msgs, size_t n, sift_buf *out, sift_err *err)
{
    if (!out || (!msgs && n))
        return sift_err_set(err, SIFT_EINVAL, "memory: no messages or no output buffer");
    for (size_t i = 0; i < n; i++) {
        int rc = check_out(&msgs[i], i, err);
        if (rc)
            return rc;
    }
    size_t mark = out->len;
    int rc = sift_buf_putc(out, '[');
    for (size_t i = 0; i < n && !rc; i++) {
        if (i)
            rc = sift_buf_putc(out, ',');
        if (!rc)
            rc = sift_message_json(out, &msgs[i]);
    }
    if (!rc)
        rc = sift_buf_putc(out, ']');
    if (rc) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return sift_err_set(err, rc,
                            rc == SIFT_ETOOBIG ? "memory: conversation over the %zu-byte limit"
                                               : "memory: out of memory serialising %zu bytes",
                            rc == SIFT_ETOOBIG ? out->limit : out->len);
    }
    return 0;
}

static int bad(sift_err *err, const char *fmt, size_t i, const char *what)
{
    char path[96];
    snprintf(path, sizeof(path), fmt, i);
    return sift_err_set(err, SIFT_EPROTO, "stored conversation: %s: %s", path, what);
}

static int bad2(sift_err *err, size_t i, size_t k, const char *field, const char *what)
{
    return sift_err_set(err, SIFT_EPROTO,
                        "stored conversation: messages[%zu].tool_calls[%zu]%s: %s", i, k, field,
                        what);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static int parse_role(const cJSON *r, sift_role *out)
{
    static const sift_role roles[] = {SIFT_ROLE_SYSTEM, SIFT_ROLE_USER, SIFT_ROLE_ASSISTANT,
                                      SIFT_ROLE_TOOL};
    if (!cJSON_IsString(r))
        return -1;
    for (size_t k = 0; k < sizeof(roles) / sizeof(roles[0]); k++) {
        if (strcmp(r->valuestring, sift_role_name(roles[k])) == 0) {
            *out = roles[k];
            return 0;
        }
    }
    return -1;
}

static int parse_calls(const cJSON *arr, size_t i, sift_arena *a, sift_message *m, sift_err *err)
{
    if (!cJSON_IsArray(arr))
        return bad(err, "messages[%zu].tool_calls", i, "expected an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (!n)
        return 0; /* an empty list is the same as none */
    sift_tool_call *calls = sift_arena_calloc(a, n, sizeof(*calls));
    if (!calls)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory loading a conversation");
    size_t k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, arr)
    {
        const cJSON *id = get(c, "id");
        const cJSON *type = get(c, "type");
        const cJSON *fn = get(c, "function");
        if (!cJSON_IsObject(c))
            return bad2(err, i, k, "", "expected an object");
        if (!cJSON_IsString(id) || !*id->valuestring)
            return bad2(err, i, k, ".id", "expected a non-empty string");
        if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "function") == 0))
            return bad2(err, i, k, ".type", "expected \"function\"");
        if (!cJSON_IsObject(fn))
            return bad2(err, i, k, ".function", "expected an object");
        const cJSON *name = get(fn, "name");
        const cJSON *args = get(fn, "arguments");
        if (!cJSON_IsString(name) || !*name->valuestring)
            return bad2(err, i, k, ".function.name", "expected a non-empty string");
        if (!cJSON_IsString(args))
            return bad2(err, i, k, ".function.arguments", "expected a string");
        for (size_t p = 0; p < k; p++)
            if (strcmp(calls[p].id, id->valuestring) == 0)
                return bad2(err, i, k, ".id", "the same id twice in one message");
        /* Temporary pointers into the cJSON tree; sift_conv_append copies. */
        calls[k].id = id->valuestring;
        calls[k].name = name->valuestring;
        calls[k].arguments = args->valuestring;
        calls[k].arguments_len = strlen(args->valuestring);
        k++;
    }
    m->tool_calls = calls;
    m->n_tool_calls = n;
    return 0;
}

static bool earlier_call(const sift_conv *c, const char *id)
{
    for (size_t k = c->len; k-- > 0;)
        if (has_call(&c->msgs[k], id))
            return true;
    return false;
}

static int parse_message(const cJSON *o, size_t i, sift_conv *c, sift_err *err)
{
    sift_message m = {0};
    if (!cJSON_IsObject(o))
        return bad(err, "messages[%zu]", i, "expected an object");
    if (parse_role(get(o, "role"), &m.role))
        return bad(err, "messages[%zu].role", i,
                   "expected one of \"system\", \"user\", \"assistant\", \"tool\"");
    const cJSON *content = get(o, "content");
    if (cJSON_IsString(content)) {
        m.content = content->valuestring;
        m.content_len = strlen(content->valuestring);
    } else if (m.role != SIFT_ROLE_ASSISTANT || (content && !cJSON_IsNull(content))) {
        return bad(err, "messages[%zu].content", i,
                   m.role == SIFT_ROLE_ASSISTANT ? "expected a string or null"
                                                 : "expected a string");
    }
    const cJSON *calls = get(o, "tool_calls");
    if (calls && !cJSON_IsNull(calls)) {
        if (m.role != SIFT_ROLE_ASSISTANT)
            return bad(err, "messages[%zu].tool_calls", i, "only assistant messages call tools");
        /* The call array is scratch (sift_conv_append copies the calls); it
         * costs a few bytes of the caller's arena, less than a malloc. */
        int rc = parse_calls(calls, i, c->arena, &m, err);
        if (rc)
            return rc;
    }
    if (m.role == SIFT_ROLE_TOOL) {
        const cJSON *id = get(o, "tool_call_id");
        if (!cJSON_IsString(id) || !*id->valuestring)
            return bad(err, "messages[%zu].tool_call_id", i, "expected a non-empty string");
        if (!earlier_call(c, id->valuestring))
            return bad(err, "messages[%zu].tool_call_id", i,
                       "answers no tool call of an earlier assistant message");
        m.tool_call_id = id->valuestring;
    }
    int rc = sift_conv_append(c, &m, err);
    if (rc == SIFT_ENOMEM)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory loading a conversation");
    if (rc) {
        /* Not expected after the checks above; keep sift_conv_append's
         * message, but report it as bad stored data. */
        if (err)
            err->code = SIFT_EPROTO;
        return SIFT_EPROTO;
    }
    return 0;
}

int sift_memory_from_json(const char *json, size_t len, sift_conv *c, sift_err *err)
{
    if (!c || !c->arena || (!json && len))
        return sift_err_set(err, SIFT_EINVAL, "memory: no conversation to load into");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json ? json : "", len, &end, 0);
    if (!root) {
        /* cJSON reports where it stopped, which is where the damage is. */
        size_t at = end && json && end >= json ? (size_t)(end - json) : 0;
        return sift_err_set(err, SIFT_EPROTO, "stored conversation: invalid JSON at byte %zu", at);
    }
    size_t saved = c->len;
    int rc = 0;
    while (end && (size_t)(end - json) < len &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end && (size_t)(end - json) < len) {
        rc = sift_err_set(err, SIFT_EPROTO,
                          "stored conversation: unexpected data after the JSON array at byte %zu",
                          (size_t)(end - json));
        goto fail;
    }
    if (!cJSON_IsArray(root)) {
        rc = sift_err_set(err, SIFT_EPROTO, "stored conversation: expected a JSON array");
        goto fail;
    }
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, root)
    {
        if ((rc = parse_message(m, i, c, err)))
            break;
        i++;
    }
fail:
    cJSON_Delete(root);
    if (rc)
        c->len = saved;
    return rc;
}
