/* Chat messages and the OpenAI chat-completions wire format.
 *
 * This module is pure: no I/O, no globals. It holds the message types a run
 * keeps in its arena, the serialiser that turns a conversation into a
 * chat-completions request body, the parsers for a non-streaming response and
 * for an error body, and the stream assembler that turns the `data:` payloads
 * of a streamed response into events and one assembled assistant message.
 *
 * Strings are NUL-terminated and also carry their length, so text that holds
 * any byte sequence (including partial or invalid UTF-8 from a provider)
 * survives unchanged. The serialiser replaces invalid UTF-8 by U+FFFD so the
 * request it writes is always valid JSON.
 *
 * A limitation inherited from cJSON: a string value that contains the escape
 * \u0000 is cut at that point when parsed. */
#ifndef SIFT_MODEL_H
#define SIFT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"

/* ---- messages ---------------------------------------------------------- */

typedef enum sift_role {
    SIFT_ROLE_SYSTEM = 0,
    SIFT_ROLE_USER,
    SIFT_ROLE_ASSISTANT,
    SIFT_ROLE_TOOL,
} sift_role;

/* "system", "user", "assistant" or "tool"; NULL for a value outside the enum. */
const char *sift_role_name(sift_role r);

/* A tool call the model asked for. `arguments` is the JSON text exactly as the
 * model produced it (it may be invalid JSON: deciding that is the tool
 * decoder's job, and its error goes back to the model). */
typedef struct sift_tool_call {
    const char *id;
    const char *name;
    const char *arguments;
    size_t arguments_len;
} sift_tool_call;

/* One message. Which fields are used depends on the role:
 *   system, user  content
 *   assistant     content (NULL when the model only called tools), tool_calls
 *   tool          tool_call_id, content (the tool's result) */
typedef struct sift_message {
    sift_role role;
    const char *content;
    size_t content_len;
    const sift_tool_call *tool_calls;
    size_t n_tool_calls;
    const char *tool_call_id;
} sift_message;

/* Token counts reported by the provider. */
typedef struct sift_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t total_tokens;
} sift_usage;

/* A conversation: messages appended in order, all memory in `arena`. Appending
 * deep-copies the message, so the caller's strings may be temporary. */
typedef struct sift_conv {
    sift_arena *arena;
    sift_message *msgs;
    size_t len;
    size_t cap;
} sift_conv;

/* An empty conversation whose messages will live in `arena`. Allocates
 * nothing. */
void sift_conv_init(sift_conv *c, sift_arena *arena);

/* Appends a deep copy of `m`. Fails with SIFT_EINVAL for a message that does
 * not fit its role (a tool result without tool_call_id, a tool call without
 * id or name, tool calls on a non-assistant message, a system or user message
 * without content), SIFT_ENOMEM when the arena is exhausted; on failure the
 * conversation is unchanged. */
int sift_conv_append(sift_conv *c, const sift_message *m, sift_err *err);

/* Shorthands for sift_conv_append with NUL-terminated text. */
int sift_conv_add_system(sift_conv *c, const char *text, sift_err *err);
int sift_conv_add_user(sift_conv *c, const char *text, sift_err *err);
int sift_conv_add_assistant(sift_conv *c, const char *content, const sift_tool_call *calls,
                            size_t n_calls, sift_err *err);
int sift_conv_add_tool_result(sift_conv *c, const char *tool_call_id, const char *content,
                              sift_err *err);

/* ---- request ----------------------------------------------------------- */

typedef enum sift_tool_choice {
    SIFT_TOOL_CHOICE_UNSET = 0, /* field omitted: the provider's default */
    SIFT_TOOL_CHOICE_AUTO,
    SIFT_TOOL_CHOICE_NONE,
    SIFT_TOOL_CHOICE_REQUIRED,
    SIFT_TOOL_CHOICE_FUNCTION, /* must call `tool_choice_name` */
} sift_tool_choice;

/* Everything that goes into one chat-completions request. Zero-initialise,
 * then set what you need: zero means "omit the field". */
typedef struct sift_chat_request {
    const char *model; /* required */
    const sift_message *messages;
    size_t n_messages; /* at least one */
    /* Tool definitions, each already a complete JSON object in OpenAI's form
     * ({"type":"function","function":{"name":...,"parameters":...}}), as the
     * tool module generates them. They are checked and inserted verbatim. */
    const char *const *tools;
    size_t n_tools;
    /* Or: the whole "tools" array as one JSON text (sift_tool_registry_json),
     * checked the same way and inserted verbatim. At most one of the two. */
    const char *tools_array;
    /* Skips the per-call tool check (and the check that tool_choice_name is
     * among the tools): for tools that were checked once when they were
     * registered, since the check costs more than the rest of the request. */
    bool tools_prechecked;
    sift_tool_choice tool_choice;
    const char *tool_choice_name;
    int parallel_tool_calls; /* -1 false, 0 omitted, 1 true */
    bool stream;
    bool include_usage; /* stream_options.include_usage (only when streaming) */
    bool has_temperature;
    double temperature;
    int64_t max_tokens; /* 0: omitted */
    /* The messages, tools and strings this request points to stay valid and
     * unchanged until the generation's on_done (a run's arena and its
     * conversation do): a provider may then serialise the request only when
     * it is sent (OpenAI: when a connection is free) instead of holding the
     * body while the request waits. A request the serialiser refuses may
     * then fail in on_done instead of in sift_model_generate. */
    bool stable_until_done;
} sift_chat_request;

/* Appends one message in OpenAI's chat form to `out`: role, tool_call_id for a
 * tool result, content, and tool_calls for an assistant turn that has them.
 * NULL content is written as null when the message has tool calls (OpenAI's
 * form for a turn of calls only) and as "" otherwise. The message must be
 * valid for its role (ids and names set); this writes, it does not check.
 * Shared by requests and stored sessions, so both speak the same form.
 * Returns 0, SIFT_ETOOBIG past out's limit or SIFT_ENOMEM. */
int sift_message_json(sift_buf *out, const sift_message *m);

/* Appends the JSON request body for `r` to `out`. tools, tool_choice and
 * parallel_tool_calls are written only when there is at least one tool
 * (OpenAI rejects an empty tools array and tool options without tools).
 * Unless tools_prechecked, every call parses the tools with cJSON (see
 * bench/results/message.md for the cost), so a broken tool is reported here
 * by name instead of reaching the provider and coming back as an opaque 400. Fails with SIFT_EINVAL
 * naming the offending field (no model, no messages, a message that does not fit its role, a tool
 * that is not a JSON object with a function name, a tool_choice function that is not among the
 * tools, REQUIRED without tools), SIFT_ETOOBIG past out's limit, SIFT_ENOMEM; on failure `out` is
 * restored to its previous length. */
int sift_chat_request_json(const sift_chat_request *r, sift_buf *out, sift_err *err);

/* ---- response ---------------------------------------------------------- */

typedef enum sift_finish {
    SIFT_FINISH_NONE = 0, /* not reported (yet) */
    SIFT_FINISH_STOP,
    SIFT_FINISH_LENGTH,
    SIFT_FINISH_TOOL_CALLS,
    SIFT_FINISH_CONTENT_FILTER,
    SIFT_FINISH_OTHER, /* a value this version does not know; see finish_text */
} sift_finish;

/* The outcome of one model call, streamed or not. */
typedef struct sift_chat_result {
    sift_message message; /* role SIFT_ROLE_ASSISTANT */
    sift_finish finish;
    const char *finish_text; /* the provider's string, e.g. "tool_calls" */
    bool has_usage;
    sift_usage usage;
} sift_chat_result;

/* Maps a finish_reason string to its enum ("function_call" counts as
 * tool_calls; NULL gives SIFT_FINISH_NONE). */
sift_finish sift_finish_parse(const char *s);

/* Parses a non-streaming chat-completions response body: choices[0].message
 * (content, tool_calls), choices[0].finish_reason and usage. Strings are
 * copied into `arena`. A body that is an error object is reported like
 * sift_chat_error_parse with status 0. SIFT_EPROTO with the path of the first
 * bad field ("choices[0].message.tool_calls[1].function.arguments: expected a
 * string"), SIFT_ENOMEM. */
int sift_chat_response_parse(const char *body, size_t len, sift_arena *arena, sift_chat_result *out,
                             sift_err *err);

/* Turns an error response into `err` and returns SIFT_EHTTP. With an OpenAI
 * error body ({"error":{"message":...,"type":...,"code":...}}) the message is
 * "provider error 401: Incorrect API key provided"; with any other body it
 * quotes the start of the body. `status` 0 (an error object inside a stream)
 * leaves the number out: "provider error: ...". */
int sift_chat_error_parse(int status, const char *body, size_t len, sift_err *err);

/* ---- stream assembler -------------------------------------------------- */

/* Events from the stream assembler. Every callback may be NULL. A callback
 * returns 0 to go on or a negative SIFT_E code to stop: sift_stream_feed then
 * returns that code. Pointers passed to a callback are valid only during it,
 * and a callback must not call back into the assembler.
 * Text handed to on_content and on_tool_args never ends inside a UTF-8
 * character: an incomplete tail is held back until the rest arrives (or until
 * the stream finishes), so each piece can be forwarded as valid JSON. */
typedef struct sift_stream_cbs {
    void *ud;
    int (*on_content)(void *ud, const char *text, size_t len);
    /* A new tool call: index, id and name come with its first fragment. */
    int (*on_tool_start)(void *ud, size_t index, const char *id, const char *name);
    int (*on_tool_args)(void *ud, size_t index, const char *frag, size_t len);
    /* Fired for every tool call, in index order, when finish_reason arrives:
     * only then can no further fragment for any index follow. */
    int (*on_tool_done)(void *ud, size_t index, const sift_tool_call *call);
    int (*on_finish)(void *ud, sift_finish finish, const char *text);
    int (*on_usage)(void *ud, const sift_usage *usage);
} sift_stream_cbs;

/* Size limits; a zero field takes the default. Going past one is SIFT_ETOOBIG.
 * Tool call ids and names are limited to 256 bytes. */
typedef struct sift_stream_limits {
    size_t max_content;    /* bytes of content, default 1 MB */
    size_t max_arguments;  /* bytes of arguments per tool call, default 256 KB */
    size_t max_tool_calls; /* default 64 */
} sift_stream_limits;

typedef enum sift_stream_state {
    SIFT_STREAM_OPEN = 0, /* taking chunks */
    SIFT_STREAM_FINISHED, /* finish_reason seen; more content or tool calls is an error */
    SIFT_STREAM_DONE,     /* [DONE] seen */
    SIFT_STREAM_FAILED,   /* an error was returned; reset before reuse */
} sift_stream_state;

struct sift_stream_call;

/* Assembles one streamed response. Its buffers are kept across
 * sift_stream_reset, so a run reuses one assembler for all its model calls. */
typedef struct sift_stream {
    sift_stream_state state;
    sift_stream_cbs cbs;
    sift_stream_limits limits;
    uint64_t chunks; /* chunks fed so far, for error messages */
    sift_buf content;
    size_t content_sent; /* bytes of content already given to on_content */
    struct sift_stream_call *calls;
    size_t n_calls;
    size_t cap_calls;
    sift_finish finish;
    char finish_text[32];
    bool has_usage;
    sift_usage usage;
    bool batch; /* content waits for sift_stream_flush (sift_stream_set_batch) */
} sift_stream;

/* Prepares `s`; `cbs` and `limits` are copied (either may be NULL).
 * Allocates nothing. */
void sift_stream_init(sift_stream *s, const sift_stream_cbs *cbs, const sift_stream_limits *limits);

/* Feeds the data of one SSE event: a chat.completion.chunk JSON document or
 * "[DONE]". Returns 0, or SIFT_EPROTO with a message that says where
 * ("stream chunk 7: invalid JSON at byte 15", "stream chunk 3:
 * choices[0].delta.tool_calls[0].index missing"), SIFT_EHTTP for an error
 * object sent by the provider, SIFT_ETOOBIG, SIFT_ENOMEM, or a callback's
 * code. After an error the assembler is FAILED and refuses more input. */
int sift_stream_feed(sift_stream *s, const char *data, size_t len, sift_err *err);

/* With `on`, content is not handed to on_content chunk by chunk: it gathers
 * until sift_stream_flush, so the chunks of one network read become one
 * on_content call (one token event, not one per chunk). Whatever has gathered
 * still goes out before any other callback and before a failure (a bad
 * chunk, an error object), so the order of events is unchanged, and a
 * finish_reason flushes it as before. Off after init. */
void sift_stream_set_batch(sift_stream *s, bool on);

/* Hands the content gathered in batch mode to on_content (whole UTF-8
 * characters only, as in sift_stream_feed). Returns 0, or the callback's
 * code (the assembler is then FAILED). A no-op when nothing is pending or
 * the assembler has failed. */
int sift_stream_flush(sift_stream *s, sift_err *err);

/* Ends the stream and copies the assembled assistant message, finish reason
 * and usage into `arena` (`out` is valid as long as the arena). The message's
 * content is NULL when the reply was only tool calls (as in OpenAI's
 * non-streaming form), "" when it had neither. A stream needs a finish_reason;
 * [DONE] is optional. SIFT_EPROTO "stream ended without finish_reason",
 * SIFT_ESTATE after a failure, SIFT_ENOMEM. */
int sift_stream_finish(sift_stream *s, sift_arena *arena, sift_chat_result *out, sift_err *err);

/* Forgets the current response but keeps the buffers (and callbacks and
 * limits) for the next one. */
void sift_stream_reset(sift_stream *s);

/* Releases the buffers. The struct may be initialised again afterwards. */
void sift_stream_free(sift_stream *s);

#endif
