/* Chat-model providers: one interface for every model sift can talk to.
 *
 * The agent asks a sift_model for the next assistant turn and does not care
 * whether an OpenAI-compatible server (src/llm/openai.c: OpenAI, vLLM,
 * Ollama, llama.cpp's llama-server) or the offline rule-based planner answers.
 * A provider implements the vtable; callers use only the functions below.
 *
 * A generation is asynchronous and bound to a sift_ctx. Its guarantees, which
 * every provider must keep:
 *  - sift_model_generate returns 0 and then on_done fires EXACTLY ONCE, later,
 *    from the loop: never from inside sift_model_generate, never from inside
 *    sift_ctx_cancel. Or it returns a negative code (bad request, context
 *    already done, out of memory) and no callback fires at all.
 *  - on_token and on_tool_call_start fire, in stream order, before on_done.
 *    Once the context is done, neither fires again: the only callback left is
 *    the single on_done, with the context's code (SIFT_ECANCELED,
 *    SIFT_ETIMEDOUT, SIFT_EFAILED).
 *  - A provider that cannot stream still calls on_token (once, with the whole
 *    content) and on_tool_call_start (for each call) before on_done, so the
 *    caller handles streamed and non-streamed answers the same way.
 *  - The assembled assistant message given to on_done lives in the arena
 *    passed to sift_model_generate; everything else a provider allocates for
 *    the generation is its own and released by it.
 * Callbacks may cancel the context (for instance when the shopper went away);
 * they must not free the model or the arena. on_done may do anything,
 * including starting the next generation or freeing the model. */
#ifndef SIFT_PROVIDER_H
#define SIFT_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/config.h"
#include "sift/ctx.h"
#include "sift/err.h"
#include "sift/http.h"
#include "sift/model.h"
#include "sift/planner.h"

typedef struct sift_model sift_model;

/* What a generation reports. `udata` is the pointer given to
 * sift_model_generate. on_done is required, the others may be NULL. */
typedef struct sift_model_callbacks {
    /* A piece of the answer's text, as soon as it arrives. Never ends inside
     * a UTF-8 character. Not NUL-terminated; valid only during the call. */
    void (*on_token)(void *udata, const char *text, size_t len);
    /* The model started tool call number `index` (0-based, in the order the
     * model numbered them). Its arguments come complete with on_done. */
    void (*on_tool_call_start)(void *udata, size_t index, const char *id, const char *name);
    /* The end, exactly once. code 0: `result` holds the assistant message
     * (content and/or tool calls, in the arena given to generate), the finish
     * reason and the usage when the provider reported it; `err` is NULL.
     * code < 0: `result` is NULL and `err` says what went wrong in words a
     * user can act on ("provider error 401: Incorrect API key provided",
     * "giving up after 4 attempts: ..."). */
    void (*on_done)(void *udata, int code, const sift_chat_result *result, const sift_err *err);
} sift_model_callbacks;

/* The provider's side of the interface. */
typedef struct sift_model_vtable {
    /* Starts a generation; sift_model_generate has already checked that model,
     * arena, req and cb->on_done are set. Must keep the guarantees above. */
    int (*generate)(sift_model *m, sift_ctx *ctx, sift_arena *arena, const sift_chat_request *req,
                    const sift_model_callbacks *cb, void *udata, sift_err *err);
    /* Releases the model (see sift_model_free). */
    void (*free)(sift_model *m);
} sift_model_vtable;

/* The common head of every provider's model object: a provider embeds it as
 * its first member and sets the fields when it creates the model. */
struct sift_model {
    const sift_model_vtable *vt;
    const char *provider; /* "openai", "offline", ... */
    const char *name;     /* the model used when a request names none */
};

/* Starts generating the next assistant turn for `req` (messages, tools,
 * tool_choice, stream...; req->model may be NULL for the model's default).
 * `ctx` bounds it (deadline, cancellation; NULL: neither); the result is
 * allocated in `arena`, which must outlive on_done. Whether req->stream is
 * set only changes how the provider talks to its server: the callbacks are
 * the same. `req` itself is copied; what it points to needs to stay valid
 * only during this call, unless req->stable_until_done promises more (then a
 * refused request may fail in on_done rather than here). Returns 0 (on_done will fire once), or
 * SIFT_EINVAL (missing argument, or a request the provider's serialiser refuses, with the field
 * named), the context's code when it is already done, SIFT_ENOMEM; then no
 * callback fires. */
int sift_model_generate(sift_model *m, sift_ctx *ctx, sift_arena *arena,
                        const sift_chat_request *req, const sift_model_callbacks *cb, void *udata,
                        sift_err *err);

/* The provider's name ("openai") and the default model name. */
const char *sift_model_provider(const sift_model *m);
const char *sift_model_name(const sift_model *m);

/* Releases the model. Generations still in flight are cancelled: each one's
 * on_done fires later, from the loop, with SIFT_ECANCELED ("the model was
 * closed while the answer was pending"), and the memory goes after the last
 * of them. May be called from on_done (not from on_token or
 * on_tool_call_start). NULL is a no-op. */
void sift_model_free(sift_model *m);

/* ---- the OpenAI-compatible provider ------------------------------------ */

/* Settings for sift_openai_new; zero-initialise, then set what you need.
 * Strings are copied. */
typedef struct sift_openai_opts {
    const char *base_url;    /* required: "https://api.openai.com/v1", "http://127.0.0.1:8000/v1";
                                requests go to base_url + "/chat/completions" */
    const char *api_key;     /* NULL or "": no Authorization header (local servers) */
    const char *model;       /* required: used when a request names no model */
    int64_t timeout_ms;      /* per attempt, from start to the last byte; 0: none (the
                                context's deadline still applies) */
    int max_retries;         /* retries after the first attempt (0: none) */
    int64_t backoff_base_ms; /* first backoff window; 0: 250 */
    int64_t backoff_max_ms;  /* largest backoff window; 0: 8000 */
    int64_t retry_after_max_ms; /* a longer Retry-After is not waited for; 0: 60000 */
    size_t max_error_body;      /* bytes of an error response kept; 0: 64 KiB */
    size_t max_body_bytes;      /* non-streaming response limit; 0: 16 MiB */
    size_t max_event_bytes;     /* one SSE event; 0: 1 MiB */
    sift_stream_limits limits;  /* content, arguments, tool calls; zeros: defaults */
    bool no_stream_usage;       /* do not send stream_options.include_usage (for
                                   servers that reject it) */
} sift_openai_opts;

/* Fills `o` from the llm section of a loaded configuration (base_url, api_key,
 * model, timeout_ms, max_retries; environment overrides are already in cfg).
 * The strings point into cfg. */
void sift_openai_opts_from_config(sift_openai_opts *o, const sift_config *cfg);

/* A model that talks to an OpenAI-compatible chat-completions endpoint with
 * `http`, the HTTP client of `loop` (so one model per loop; the client must
 * outlive the model, and closing the client ends its generations with
 * SIFT_ECANCELED). NULL with err set for a missing base_url or model, a
 * base_url that is not http:// or https://, or no memory.
 *
 * Each generation POSTs {base_url}/chat/completions. With req->stream the
 * request asks for "stream":true (and stream_options.include_usage unless
 * no_stream_usage); the SSE body goes through the SSE parser and the stream
 * assembler (model.h), content reaches on_token as it arrives and tool calls
 * are assembled by index from their fragments. The Authorization: Bearer
 * header is sent only when a key is set; the key is never logged.
 *
 * Errors given to on_done:
 *   SIFT_EHTTP    the server answered 4xx/5xx: "provider error 401: <the
 *                 server's message>"; an error object inside the stream;
 *   SIFT_EPROTO   a malformed chunk ("stream chunk 7: invalid JSON at byte
 *                 15"), a stream that ended without finish_reason, a
 *                 malformed non-streaming body;
 *   SIFT_EIO      connection refused/reset, body cut short;
 *   SIFT_ETIMEDOUT the attempt's timeout_ms (after the retries) or the
 *                 context's deadline; SIFT_ECANCELED / SIFT_EFAILED the
 *                 context's cause; SIFT_ETOOBIG a limit above.
 * Retries: 429, 5xx, connection failures (SIFT_EIO) and an attempt's own
 * timeout are retried up to max_retries times, after a full-jitter
 * exponential backoff (a random wait in [0, min(backoff_max, backoff_base *
 * 2^n)]), or after the server's Retry-After (seconds or an HTTP date; or
 * retry-after-ms, which OpenAI and Azure send) when it sent one. A retry
 * is attempted only while nothing of this generation has been passed to
 * on_token or on_tool_call_start: once the caller has seen part of an
 * answer, repeating the request could show it a different answer, so a
 * failure mid-stream is an error, not a retry. A retry whose
 * wait would end after the context's deadline is not attempted: the
 * generation fails at once with the last error, "giving up after N
 * attempts: <last error>". The backoff wait is cancelled with the context. */
sift_model *sift_openai_new(uv_loop_t *loop, sift_http_client *http, const sift_openai_opts *opts,
                            sift_err *err);

/* ---- the offline provider --------------------------------------------- */

/* Settings for sift_offline_new; zero-initialise. */
typedef struct sift_offline_opts {
    sift_planner_opts planner; /* vocabulary, default currency, k */
    int64_t token_delay_ms;    /* pause between streamed words; 0: one word per loop turn */
} sift_offline_opts;

/* The offline provider: the rule-based planner of planner.h behind this
 * interface (provider "offline", model "sift-offline-rules"). It is not a
 * language model: it applies fixed rules to the conversation, asks for the
 * shop tools a good model would call and writes its answer from a template
 * (docs/offline-planner.md). The answer streams word by word through
 * on_token; tool calls are announced through on_tool_call_start. No usage is
 * reported. `opts` may be NULL. */
sift_model *sift_offline_new(uv_loop_t *loop, const sift_offline_opts *opts, sift_err *err);

#endif
