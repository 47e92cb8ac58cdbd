/* Chat messages in an arena, and the OpenAI chat-completions wire format:
 * request serialiser, non-streaming response parser, error body parser. */
#include "sift/model.h"

#include "llm/wire.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- shared JSON helpers ------------------------------------------------ */

cJSON *sift_wire_parse(const char *s, size_t len, size_t *err_at)
{
    const char *end = NULL;
    *err_at = 0;
    if (len == 0)
        return NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!j) {
        *err_at = end && end >= s ? (size_t)(end - s) : 0;
        return NULL;
    }
    /* cJSON stops after the first value; anything but whitespace after it
     * means the payload was not one document. */
    size_t pos = (size_t)(end - s);
    while (pos < len && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r'))
        pos++;
    if (pos < len) {
        cJSON_Delete(j);
        *err_at = pos;
        return NULL;
    }
    return j;
}

int sift_wire_count(const cJSON *n, long long *out)
{
    if (!cJSON_IsNumber(n))
        return -1;
    double d = n->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
        return -1;
    *out = (long long)d;
    return 0;
}

/* ---- conversation ------------------------------------------------------- */

void sift_conv_init(sift_conv *c, sift_arena *arena)
{
    memset(c, 0, sizeof(*c));
    c->arena = arena;
}

const char *sift_role_name(sift_role r)
{
    switch (r) {
    case SIFT_ROLE_SYSTEM:
        return "system";
    case SIFT_ROLE_USER:
        return "user";
    case SIFT_ROLE_ASSISTANT:
        return "assistant";
    case SIFT_ROLE_TOOL:
        return "tool";
    }
    return NULL;
}

static int check_message(const sift_message *m, size_t i, sift_err *err)
{
    const char *role = sift_role_name(m->role);
    if (!role)
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: unknown role %d", i, (int)m->role);
    if (m->n_tool_calls && m->role != SIFT_ROLE_ASSISTANT)
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: a %s message cannot have tool calls",
                            i, role);
    if (m->n_tool_calls && !m->tool_calls)
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: tool_calls is NULL", i);
    for (size_t k = 0; k < m->n_tool_calls; k++) {
        const sift_tool_call *t = &m->tool_calls[k];
        if (!t->id || !*t->id)
            return sift_err_set(err, SIFT_EINVAL, "messages[%zu].tool_calls[%zu]: id missing", i,
                                k);
        if (!t->name || !*t->name)
            return sift_err_set(err, SIFT_EINVAL, "messages[%zu].tool_calls[%zu]: name missing", i,
                                k);
        if (!t->arguments && t->arguments_len)
            return sift_err_set(err, SIFT_EINVAL,
                                "messages[%zu].tool_calls[%zu]: arguments is NULL", i, k);
    }
    if (m->role == SIFT_ROLE_TOOL && (!m->tool_call_id || !*m->tool_call_id))
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: tool result without tool_call_id", i);
    if (m->role != SIFT_ROLE_ASSISTANT && !m->content)
        return sift_err_set(err, SIFT_EINVAL, "messages[%zu]: %s message without content", i, role);
    return 0;
}

/* Copies n bytes plus a NUL; unlike strndup it keeps NUL bytes inside. */
static char *dup_n(sift_arena *a, const char *s, size_t n)
{
    char *d = sift_arena_alloc(a, n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int copy_message(sift_arena *a, const sift_message *m, sift_message *d)
{
    memset(d, 0, sizeof(*d));
    d->role = m->role;
    if (m->content) {
        char *s = dup_n(a, m->content, m->content_len);
        if (!s)
            return SIFT_ENOMEM;
        d->content = s;
        d->content_len = m->content_len;
    }
    if (m->tool_call_id && !(d->tool_call_id = sift_arena_strdup(a, m->tool_call_id)))
        return SIFT_ENOMEM;
    if (m->n_tool_calls) {
        sift_tool_call *tc = sift_arena_calloc(a, m->n_tool_calls, sizeof(*tc));
        if (!tc)
            return SIFT_ENOMEM;
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            const sift_tool_call *t = &m->tool_calls[k];
            tc[k].id = sift_arena_strdup(a, t->id);
            tc[k].name = sift_arena_strdup(a, t->name);
            tc[k].arguments = dup_n(a, t->arguments, t->arguments_len);
            tc[k].arguments_len = t->arguments_len;
            if (!tc[k].id || !tc[k].name || !tc[k].arguments)
                return SIFT_ENOMEM;
        }
        d->tool_calls = tc;
        d->n_tool_calls = m->n_tool_calls;
    }
    return 0;
}

int sift_conv_append(sift_conv *c, const sift_message *m, sift_err *err)
{
    int rc = check_message(m, c->len, err);
    if (rc)
        return rc;
    if (c->len == c->cap) {
        /* The old array stays in the arena until the run ends; doubling keeps
         * that waste below the size of the final array. */
        size_t cap = c->cap ? c->cap * 2 : 8;
        sift_message *n = sift_arena_alloc(c->arena, cap * sizeof(*n));
        if (!n)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory adding a message");
        if (c->len)
            memcpy(n, c->msgs, c->len * sizeof(*n));
        c->msgs = n;
        c->cap = cap;
    }
    if (copy_message(c->arena, m, &c->msgs[c->len]))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory adding a message");
    c->len++;
    return 0;
}

static int add_text(sift_conv *c, sift_role role, const char *text, sift_err *err)
{
    sift_message m = {.role = role, .content = text, .content_len = text ? strlen(text) : 0};
    return sift_conv_append(c, &m, err);
}

int sift_conv_add_system(sift_conv *c, const char *text, sift_err *err)
{
    return add_text(c, SIFT_ROLE_SYSTEM, text, err);
}

int sift_conv_add_user(sift_conv *c, const char *text, sift_err *err)
{
    return add_text(c, SIFT_ROLE_USER, text, err);
}

int sift_conv_add_assistant(sift_conv *c, const char *content, const sift_tool_call *calls,
                            size_t n_calls, sift_err *err)
{
    sift_message m = {.role = SIFT_ROLE_ASSISTANT,
                      .content = content,
                      .content_len = content ? strlen(content) : 0,
                      .tool_calls = calls,
                      .n_tool_calls = n_calls};
    return sift_conv_append(c, &m, err);
}

int sift_conv_add_tool_result(sift_conv *c, const char *tool_call_id, const char *content,
                              sift_err *err)
{
    sift_message m = {.role = SIFT_ROLE_TOOL,
                      .content = content,
                      .content_len = content ? strlen(content) : 0,
                      .tool_call_id = tool_call_id};
    return sift_conv_append(c, &m, err);
}

/* ---- request serialiser ------------------------------------------------- */

static int put_str(sift_buf *b, const char *s, size_t n)
{
    return sift_buf_json_string(b, s, n);
}

int sift_message_json(sift_buf *b, const sift_message *m)
{
    int rc;
    if ((rc = sift_buf_puts(b, "{\"role\":\"")) ||
        (rc = sift_buf_puts(b, sift_role_name(m->role))) || (rc = sift_buf_puts(b, "\"")))
        return rc;
    if (m->role == SIFT_ROLE_TOOL) {
        if ((rc = sift_buf_puts(b, ",\"tool_call_id\":")) ||
            (rc = put_str(b, m->tool_call_id, strlen(m->tool_call_id))))
            return rc;
    }
    if ((rc = sift_buf_puts(b, ",\"content\":")))
        return rc;
    if (m->content)
        rc = put_str(b, m->content, m->content_len);
    else
        /* An assistant turn made only of tool calls has null content. */
        rc = sift_buf_puts(b, m->n_tool_calls ? "null" : "\"\"");
    if (rc)
        return rc;
    if (m->n_tool_calls) {
        if ((rc = sift_buf_puts(b, ",\"tool_calls\":[")))
            return rc;
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            const sift_tool_call *t = &m->tool_calls[k];
            if ((k && (rc = sift_buf_putc(b, ','))) || (rc = sift_buf_puts(b, "{\"id\":")) ||
                (rc = put_str(b, t->id, strlen(t->id))) ||
                (rc = sift_buf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":")) ||
                (rc = put_str(b, t->name, strlen(t->name))) ||
                (rc = sift_buf_puts(b, ",\"arguments\":")) ||
                (rc = put_str(b, t->arguments ? t->arguments : "", t->arguments_len)) ||
                (rc = sift_buf_puts(b, "}}")))
                return rc;
        }
        if ((rc = sift_buf_putc(b, ']')))
            return rc;
    }
    return sift_buf_putc(b, '}');
}

/* Checks that a tool is a function tool and, when `want` is set, whether it
 * is the function named `want` (*found is set then). */
static int check_tool_obj(const cJSON *j, size_t i, const char *want, bool *found, sift_err *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(j, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsObject(j))
        return sift_err_set(err, SIFT_EINVAL, "tools[%zu]: expected a JSON object", i);
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0)
        return sift_err_set(err, SIFT_EINVAL, "tools[%zu].type: expected \"function\"", i);
    if (!cJSON_IsString(name) || !*name->valuestring)
        return sift_err_set(err, SIFT_EINVAL, "tools[%zu].function.name: expected a string", i);
    if (want && strcmp(name->valuestring, want) == 0)
        *found = true;
    return 0;
}

static int check_tool(const char *tool, size_t i, const char *want, bool *found, sift_err *err)
{
    if (!tool)
        return sift_err_set(err, SIFT_EINVAL, "tools[%zu]: NULL", i);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(tool, &end, 1);
    if (!j)
        return sift_err_set(err, SIFT_EINVAL, "tools[%zu]: invalid JSON at byte %zu", i,
                            end && end >= tool ? (size_t)(end - tool) : 0);
    int rc = check_tool_obj(j, i, want, found, err);
    cJSON_Delete(j);
    return rc;
}

/* Checks the tools, in whichever form they came, and counts them. */
static int check_tools(const sift_chat_request *r, const char *want, bool *found, size_t *count,
                       sift_err *err)
{
    int rc = 0;
    *count = 0;
    if (r->n_tools && r->tools_array)
        return sift_err_set(err, SIFT_EINVAL, "tools: give tools or tools_array, not both");
    if (r->n_tools && !r->tools)
        return sift_err_set(err, SIFT_EINVAL, "tools: NULL");
    for (size_t i = 0; i < r->n_tools; i++) {
        if (!r->tools[i])
            return sift_err_set(err, SIFT_EINVAL, "tools[%zu]: NULL", i);
        if (!r->tools_prechecked && (rc = check_tool(r->tools[i], i, want, found, err)))
            return rc;
    }
    *count = r->n_tools;
    if (!r->tools_array)
        return 0;
    if (r->tools_prechecked) {
        /* Only emptiness matters then: "[]" means no tools. */
        const char *p = r->tools_array;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '[')
            p++;
        *count = *p && *p != ']';
        return 0;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(r->tools_array, &end, 1);
    if (!j)
        return sift_err_set(err, SIFT_EINVAL, "tools_array: invalid JSON at byte %zu",
                            end && end >= r->tools_array ? (size_t)(end - r->tools_array) : 0);
    size_t i = 0;
    if (!cJSON_IsArray(j)) {
        rc = sift_err_set(err, SIFT_EINVAL, "tools_array: expected a JSON array");
    } else {
        const cJSON *t;
        cJSON_ArrayForEach(t, j)
        {
            if ((rc = check_tool_obj(t, i++, want, found, err)))
                break;
        }
    }
    cJSON_Delete(j);
    *count = i;
    return rc;
}

static int put_request(const sift_chat_request *r, size_t n_tools, sift_buf *b)
{
    static const char *const choice[] = {NULL, "auto", "none", "required"};
    int rc;
    if ((rc = sift_buf_puts(b, "{\"model\":")) || (rc = put_str(b, r->model, strlen(r->model))) ||
        (rc = sift_buf_puts(b, ",\"messages\":[")))
        return rc;
    for (size_t i = 0; i < r->n_messages; i++)
        if ((i && (rc = sift_buf_putc(b, ','))) || (rc = sift_message_json(b, &r->messages[i])))
            return rc;
    if ((rc = sift_buf_putc(b, ']')))
        return rc;
    /* OpenAI rejects an empty tools array, and tool options without tools. */
    if (n_tools) {
        if (r->tools_array) {
            if ((rc = sift_buf_puts(b, ",\"tools\":")) || (rc = sift_buf_puts(b, r->tools_array)))
                return rc;
        } else {
            if ((rc = sift_buf_puts(b, ",\"tools\":[")))
                return rc;
            for (size_t i = 0; i < r->n_tools; i++)
                if ((i && (rc = sift_buf_putc(b, ','))) || (rc = sift_buf_puts(b, r->tools[i])))
                    return rc;
            if ((rc = sift_buf_putc(b, ']')))
                return rc;
        }
        if (r->tool_choice == SIFT_TOOL_CHOICE_FUNCTION) {
            if ((rc = sift_buf_puts(
                     b, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":")) ||
                (rc = put_str(b, r->tool_choice_name, strlen(r->tool_choice_name))) ||
                (rc = sift_buf_puts(b, "}}")))
                return rc;
        } else if (r->tool_choice != SIFT_TOOL_CHOICE_UNSET) {
            if ((rc = sift_buf_printf(b, ",\"tool_choice\":\"%s\"", choice[r->tool_choice])))
                return rc;
        }
        if (r->parallel_tool_calls &&
            (rc = sift_buf_printf(b, ",\"parallel_tool_calls\":%s",
                                  r->parallel_tool_calls > 0 ? "true" : "false")))
            return rc;
    }
    if (r->has_temperature && (rc = sift_buf_printf(b, ",\"temperature\":%.15g", r->temperature)))
        return rc;
    if (r->max_tokens &&
        (rc = sift_buf_printf(b, ",\"max_tokens\":%lld", (long long)r->max_tokens)))
        return rc;
    if (r->stream) {
        if ((rc = sift_buf_puts(b, ",\"stream\":true")))
            return rc;
        if (r->include_usage &&
            (rc = sift_buf_puts(b, ",\"stream_options\":{\"include_usage\":true}")))
            return rc;
    }
    return sift_buf_putc(b, '}');
}

static int check_request(const sift_chat_request *r, size_t *n_tools, sift_err *err)
{
    int rc;
    if (!r->model || !*r->model)
        return sift_err_set(err, SIFT_EINVAL, "model: missing");
    if (!r->n_messages || !r->messages)
        return sift_err_set(err, SIFT_EINVAL, "messages: at least one message is needed");
    for (size_t i = 0; i < r->n_messages; i++)
        if ((rc = check_message(&r->messages[i], i, err)))
            return rc;
    if ((unsigned)r->tool_choice > SIFT_TOOL_CHOICE_FUNCTION)
        return sift_err_set(err, SIFT_EINVAL, "tool_choice: unknown value %d", (int)r->tool_choice);
    const char *want = NULL;
    if (r->tool_choice == SIFT_TOOL_CHOICE_FUNCTION) {
        if (!r->tool_choice_name || !*r->tool_choice_name)
            return sift_err_set(err, SIFT_EINVAL, "tool_choice: function name missing");
        want = r->tool_choice_name;
    }
    bool found = false;
    if ((rc = check_tools(r, want, &found, n_tools, err)))
        return rc;
    if (!*n_tools && (r->tool_choice == SIFT_TOOL_CHOICE_REQUIRED ||
                      r->tool_choice == SIFT_TOOL_CHOICE_FUNCTION))
        return sift_err_set(err, SIFT_EINVAL,
                            "tool_choice: requires a tool but no tools are given");
    if (want && !found && !r->tools_prechecked)
        return sift_err_set(err, SIFT_EINVAL, "tool_choice: no tool named \"%s\"", want);
    if (r->has_temperature && !isfinite(r->temperature))
        return sift_err_set(err, SIFT_EINVAL, "temperature: not a finite number");
    if (r->max_tokens < 0)
        return sift_err_set(err, SIFT_EINVAL, "max_tokens: negative");
    return 0;
}

int sift_chat_request_json(const sift_chat_request *r, sift_buf *out, sift_err *err)
{
    size_t n_tools = 0;
    int rc = check_request(r, &n_tools, err);
    if (rc)
        return rc;
    size_t start = out->len;
    rc = put_request(r, n_tools, out);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        if (rc == SIFT_ETOOBIG)
            return sift_err_set(err, rc, "chat request larger than %zu bytes", out->limit);
        return sift_err_set(err, rc, "out of memory writing the chat request");
    }
    return 0;
}

/* ---- response parser ---------------------------------------------------- */

sift_finish sift_finish_parse(const char *s)
{
    if (!s)
        return SIFT_FINISH_NONE;
    if (strcmp(s, "stop") == 0)
        return SIFT_FINISH_STOP;
    if (strcmp(s, "length") == 0)
        return SIFT_FINISH_LENGTH;
    if (strcmp(s, "tool_calls") == 0 || strcmp(s, "function_call") == 0)
        return SIFT_FINISH_TOOL_CALLS;
    if (strcmp(s, "content_filter") == 0)
        return SIFT_FINISH_CONTENT_FILTER;
    return SIFT_FINISH_OTHER;
}

static int bad(sift_err *err, const char *path, const char *what)
{
    return sift_err_set(err, SIFT_EPROTO, "chat response: %s: %s", path, what);
}

int sift_wire_usage(const cJSON *u, sift_usage *out, const char *where, sift_err *err)
{
    static const char *const names[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    long long v[3];
    if (!cJSON_IsObject(u))
        return sift_err_set(err, SIFT_EPROTO, "%susage: expected an object", where);
    for (int i = 0; i < 3; i++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(u, names[i]);
        v[i] = 0;
        if (n && !cJSON_IsNull(n) && sift_wire_count(n, &v[i]))
            return sift_err_set(err, SIFT_EPROTO, "%susage.%s: expected a token count", where,
                                names[i]);
    }
    out->prompt_tokens = v[0];
    out->completion_tokens = v[1];
    out->total_tokens = v[2];
    return 0;
}

static int parse_tool_calls(const cJSON *arr, sift_arena *a, sift_message *m, sift_err *err)
{
    char path[96];
    if (!cJSON_IsArray(arr))
        return bad(err, "choices[0].message.tool_calls", "expected an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (!n)
        return 0;
    sift_tool_call *tc = sift_arena_calloc(a, n, sizeof(*tc));
    if (!tc)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory parsing the chat response");
    size_t k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, arr)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        const char *field = NULL;
        const char *want = "expected a string";
        if (!cJSON_IsObject(c))
            field = "", want = "expected an object";
        else if (!cJSON_IsString(id) || !*id->valuestring)
            field = ".id";
        else if (!cJSON_IsObject(fn))
            field = ".function", want = "expected an object";
        else if (!cJSON_IsString(name) || !*name->valuestring)
            field = ".function.name";
        else if (!cJSON_IsString(args))
            field = ".function.arguments";
        if (field) {
            snprintf(path, sizeof(path), "choices[0].message.tool_calls[%zu]%s", k, field);
            return bad(err, path, want);
        }
        tc[k].id = sift_arena_strdup(a, id->valuestring);
        tc[k].name = sift_arena_strdup(a, name->valuestring);
        tc[k].arguments_len = strlen(args->valuestring);
        tc[k].arguments = sift_arena_memdup(a, args->valuestring, tc[k].arguments_len + 1);
        if (!tc[k].id || !tc[k].name || !tc[k].arguments)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory parsing the chat response");
        k++;
    }
    m->tool_calls = tc;
    m->n_tool_calls = n;
    return 0;
}

static int parse_response(const cJSON *j, sift_arena *a, sift_chat_result *out, sift_err *err)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) < 1)
        return bad(err, "choices", "expected a non-empty array");
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
    if (!cJSON_IsObject(msg))
        return bad(err, "choices[0].message", "expected an object");
    out->message.role = SIFT_ROLE_ASSISTANT;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (cJSON_IsString(content)) {
        out->message.content_len = strlen(content->valuestring);
        out->message.content =
            sift_arena_memdup(a, content->valuestring, out->message.content_len + 1);
        if (!out->message.content)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory parsing the chat response");
    } else if (content && !cJSON_IsNull(content)) {
        return bad(err, "choices[0].message.content", "expected a string or null");
    }
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    int rc;
    if (calls && !cJSON_IsNull(calls) && (rc = parse_tool_calls(calls, a, &out->message, err)))
        return rc;
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
    if (cJSON_IsString(fr)) {
        out->finish = sift_finish_parse(fr->valuestring);
        if (!(out->finish_text = sift_arena_strdup(a, fr->valuestring)))
            return sift_err_set(err, SIFT_ENOMEM, "out of memory parsing the chat response");
    } else if (fr && !cJSON_IsNull(fr)) {
        return bad(err, "choices[0].finish_reason", "expected a string or null");
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (usage && !cJSON_IsNull(usage)) {
        if ((rc = sift_wire_usage(usage, &out->usage, "chat response: ", err)))
            return rc;
        out->has_usage = true;
    }
    return 0;
}

int sift_chat_response_parse(const char *body, size_t len, sift_arena *arena, sift_chat_result *out,
                             sift_err *err)
{
    size_t at;
    memset(out, 0, sizeof(*out));
    cJSON *j = sift_wire_parse(body, len, &at);
    if (!j)
        return sift_err_set(err, SIFT_EPROTO, "chat response: invalid JSON at byte %zu", at);
    int rc;
    if (!cJSON_IsObject(j))
        rc = bad(err, "(top level)", "expected an object");
    else if (cJSON_HasObjectItem(j, "error") && !cJSON_IsNull(cJSON_GetObjectItem(j, "error")))
        rc = sift_chat_error_parse(0, body, len, err);
    else
        rc = parse_response(j, arena, out, err);
    cJSON_Delete(j);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- error body --------------------------------------------------------- */

/* Copies up to `max` bytes of `s` into `dst` with control bytes made spaces, so
 * a raw body can be quoted in a one-line message. */
static void quote_raw(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && i + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    dst[i] = '\0';
}

int sift_chat_error_parse(int status, const char *body, size_t len, sift_err *err)
{
    char prefix[48];
    if (status)
        snprintf(prefix, sizeof(prefix), "provider error %d", status);
    else
        snprintf(prefix, sizeof(prefix), "provider error");
    size_t at;
    cJSON *j = body ? sift_wire_parse(body, len, &at) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
    int rc;
    if (cJSON_IsString(m) && *m->valuestring) {
        rc = sift_err_set(err, SIFT_EHTTP, "%s: %s", prefix, m->valuestring);
    } else if (cJSON_IsObject(e)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
        rc = sift_err_set(err, SIFT_EHTTP, "%s: %s", prefix,
                          cJSON_IsString(type) ? type->valuestring : "(no message)");
    } else if (len && body) {
        char raw[128];
        quote_raw(raw, sizeof(raw), body, len);
        rc =
            sift_err_set(err, SIFT_EHTTP, "%s: %s%s", prefix, raw, len >= sizeof(raw) ? "..." : "");
    } else {
        rc = sift_err_set(err, SIFT_EHTTP, "%s (empty body)", prefix);
    }
    cJSON_Delete(j);
    return rc;
}
