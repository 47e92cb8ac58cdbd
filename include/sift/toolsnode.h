/* The tools node: runs the tool calls of one assistant message, concurrently.
 *
 * sift_tools_run takes the calls the model made in one message, starts each
 * as a task of a sift_group (at most opts->limit in flight; the rest queue and
 * start in call order as slots free), gives each tool a child context with its
 * own deadline (opts->timeout_ms), and reports once with one result per call,
 * in call order, ready to append to the conversation as tool messages.
 *
 * Policies:
 *  - SIFT_TOOLS_RETURN_ERRORS (the default): an unknown tool, arguments that
 *    do not decode, a tool failure or a tool timeout becomes that call's
 *    result as a JSON error object the model can read and recover from,
 *        {"error":{"code":"invalid_arguments","message":"location: must be one of HAN, DAD, SGN"}}
 *    with code one of unknown_tool, invalid_arguments, timeout, cancelled,
 *    not_found (the tool failed with SIFT_ENOTFOUND), tool_error. The other
 *    calls are not disturbed and done gets code 0.
 *  - SIFT_TOOLS_FAIL_FAST: the first failure cancels every other call (they
 *    end with a "cancelled" error object; calls still queued never start) and
 *    done gets the failing call's code and message.
 * Either way, when the parent context is done (deadline, client gone) every
 * tool is cancelled at once and done gets the parent's code.
 *
 * Guarantees: done fires exactly once, always from the loop (never inside
 * sift_tools_run and never inside a sift_ctx_cancel: it is deferred to a
 * zero timer); on_tool_start and on_tool_end fire at most once per call and
 * never after done. A tool must end its job also when its context is
 * cancelled (tool.h), otherwise the step waits for it.
 *
 * Coalescing (optional, opts->coalescer): identical calls (same tool, same
 * arguments after decoding, so key order and blanks do not matter) that are
 * in flight at the same time on the same loop share one backend execution;
 * see sift_coalescer below. Only tools that read and do not write should be
 * coalesced: the caller decides by passing a coalescer and, per tool, the
 * coalesce predicate.
 *
 * Not thread-safe: a run, its context and its coalescer belong to one loop. */
#ifndef SIFT_TOOLSNODE_H
#define SIFT_TOOLSNODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/ctx.h"
#include "sift/err.h"
#include "sift/model.h"
#include "sift/tool.h"

/* ---- coalescer ---- */

/* Shares backend executions of identical tool calls in flight on one loop.
 *
 * The key is the tool name plus the arguments re-encoded from their decoded
 * form with sift_args_json. The first call with a key starts the tool once
 * (the backend job, with its own arena and a context under the coalescer's
 * root context); a call with the same key that arrives while it runs waits for
 * its result instead of calling the tool again. Each waiter has its own
 * context: a waiter that is cancelled or times out leaves with its own error
 * at once, and the backend job is cancelled only when its last waiter has
 * left. When the backend ends, every waiter gets a copy of the result in its
 * own arena. The backend job's `app` is the first caller's.
 *
 * One coalescer per loop: calls on different loops never coalesce (that would
 * need locks and cross-loop wake-ups, which this does not do). */
typedef struct sift_coalescer sift_coalescer;

/* Counters, for tests and metrics. */
typedef struct sift_coalescer_stats {
    uint64_t backend_calls; /* tool executions started */
    uint64_t joined;        /* calls served by an execution already in flight */
    int in_flight;          /* executions running now */
} sift_coalescer_stats;

/* A coalescer on `loop`. NULL when out of memory. */
sift_coalescer *sift_coalescer_new(uv_loop_t *loop);

/* Cancels every execution still in flight (their waiters end with
 * SIFT_ECANCELED, from the cancel) and releases the coalescer once the last
 * one has reported. NULL is a no-op. */
void sift_coalescer_free(sift_coalescer *c);

void sift_coalescer_get_stats(const sift_coalescer *c, sift_coalescer_stats *out);

/* ---- the tools node ---- */

enum sift_tools_policy {
    SIFT_TOOLS_RETURN_ERRORS = 0,
    SIFT_TOOLS_FAIL_FAST = 1,
};

/* The result of one call, in the run's arena. */
typedef struct sift_tool_result {
    const char *tool_call_id; /* the call's id (may be NULL if the model gave none) */
    const char *name;         /* the tool name the model asked for */
    const char *content;      /* JSON text for the model: the result or an error object */
    size_t content_len;
    int code; /* 0, or the call's negative SIFT_E code */
} sift_tool_result;

typedef struct sift_tools_opts {
    int limit;          /* calls in flight at once; <= 0: no limit */
    int64_t timeout_ms; /* per call; <= 0: none (the parent's deadline still holds) */
    enum sift_tools_policy policy;
    void *app;                 /* job->app for every tool */
    sift_coalescer *coalescer; /* NULL: no coalescing */
    /* Which tools may be coalesced (NULL: all of them, when a coalescer is
     * given). Return non-zero to coalesce. */
    int (*coalesce)(const sift_tool *tool, void *udata);
    /* Optional observers. `i` is the call's index. on_tool_end gets the
     * call's code, its wall time and the content given to the model. */
    void (*on_tool_start)(size_t i, const sift_tool_call *call, void *udata);
    void (*on_tool_end)(size_t i, const sift_tool_call *call, int code, int64_t duration_us,
                        const char *content, void *udata);
    void *udata; /* for the three callbacks above */
} sift_tools_opts;

/* Fires once when every call has ended. `code` is 0, or (fail-fast) the first
 * failure's code, or the parent context's code when it was done; `err` holds
 * the message when code != 0. `results` has one entry per call, in call
 * order, in the run's arena (valid as long as the arena, ids and names
 * copied). */
typedef void (*sift_tools_done_fn)(int code, const sift_tool_result *results, size_t n,
                                   const sift_err *err, void *udata);

/* Runs `n` tool calls of `registry` under `ctx` (its loop runs everything);
 * results and decoded arguments live in `arena`, which must outlive the done
 * callback; `calls` must stay valid until done. opts NULL: defaults. Returns 0
 * and done fires later exactly once (also for n == 0), or SIFT_EINVAL (no
 * registry, ctx, arena or done) / SIFT_ENOMEM, and nothing fires. */
int sift_tools_run(const sift_tool_registry *registry, sift_ctx *ctx, sift_arena *arena,
                   const sift_tool_call *calls, size_t n, const sift_tools_opts *opts,
                   sift_tools_done_fn done, void *udata);

#endif
