/* sift_ctx: deadlines and cancellation, the C counterpart of Go's context.Context.
 *
 * Contexts form a tree on one uv loop. A context is done when it is cancelled
 * (explicitly, because its deadline passed, or because its parent is done);
 * being done is permanent and propagates to every child. Work in flight (curl
 * transfers, SQL queries, timers, tool calls) registers a cancel hook on its
 * context; the hook runs exactly once, synchronously inside the call that
 * cancelled the context (the same loop iteration), so everything a run has in
 * flight stops at once.
 *
 * A context is owned by whoever created it and released with sift_ctx_release.
 * Children hold a reference to their parent, so a parent released before its
 * children stays alive until the last child goes. Not thread-safe: a context
 * and its tree belong to one loop thread. */
#ifndef SIFT_CTX_H
#define SIFT_CTX_H

#include <stdint.h>
#include <uv.h>

#include "sift/err.h"

typedef struct sift_ctx sift_ctx;

/* A cancel hook, embedded in the object that owns the work to stop. */
typedef struct sift_ctx_hook sift_ctx_hook;
struct sift_ctx_hook {
    /* Called once when the context is done. `cause` holds the reason:
     * SIFT_ECANCELED, SIFT_ETIMEDOUT (deadline exceeded) or SIFT_EFAILED, with
     * its message. The hook is already unregistered when it runs, so it may
     * free the memory it lives in. */
    void (*fn)(sift_ctx_hook *hook, const sift_err *cause);
    sift_ctx_hook *prev, *next; /* private */
    sift_ctx *ctx;              /* private: NULL when not registered */
};

/* "No deadline" for sift_ctx_new_timeout and sift_ctx_remaining_ms. */
#define SIFT_NO_DEADLINE (-1)

/* A root context on `loop`, with no deadline. NULL when out of memory. */
sift_ctx *sift_ctx_new_root(uv_loop_t *loop);

/* A child of `parent`. It is done when the parent is done, or when cancelled
 * itself. If the parent is already done, the child starts out done with the
 * parent's cause. NULL when out of memory. */
sift_ctx *sift_ctx_new(sift_ctx *parent);

/* A child whose deadline is `timeout_ms` from now (or the parent's deadline,
 * if that is sooner). timeout_ms < 0 means no deadline of its own; 0 means the
 * deadline has already passed, and the context is cancelled on the next loop
 * iteration. When it expires the context is cancelled with SIFT_ETIMEDOUT. */
sift_ctx *sift_ctx_new_timeout(sift_ctx *parent, int64_t timeout_ms);

/* Drops the creator's reference. Hooks still registered are unregistered
 * without running. The memory is released once no child refers to it and its
 * timer handle (if any) has closed. NULL is a no-op. */
void sift_ctx_release(sift_ctx *ctx);

/* Cancels ctx and all its descendants with `code` (SIFT_ECANCELED,
 * SIFT_ETIMEDOUT, SIFT_EFAILED or any other negative code) and a message
 * (printf-style; NULL for the default message of the code). Runs every
 * registered hook of ctx and its descendants before returning, parents
 * first. A context that is already done keeps its first cause; cancelling it
 * again does nothing. */
void sift_ctx_cancel(sift_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 while the context is live, otherwise the code it was cancelled with. */
int sift_ctx_err(const sift_ctx *ctx);

/* The cause of cancellation (code 0 while live). Valid while ctx is. */
const sift_err *sift_ctx_cause(const sift_ctx *ctx);

/* Milliseconds left before the effective deadline (the earliest of ctx's and
 * its ancestors'), 0 when passed, SIFT_NO_DEADLINE when there is none. */
int64_t sift_ctx_remaining_ms(const sift_ctx *ctx);

/* The effective deadline as a uv_now() time in ms, or SIFT_NO_DEADLINE. */
int64_t sift_ctx_deadline(const sift_ctx *ctx);

/* Registers a hook. Returns 0, or the context's error code if it is already
 * done, in which case the hook is NOT registered and will not run: the caller
 * handles the cancellation itself. The hook must not be registered already. */
int sift_ctx_add_hook(sift_ctx *ctx, sift_ctx_hook *hook,
                      void (*fn)(sift_ctx_hook *hook, const sift_err *cause));

/* Unregisters a hook; a no-op if it is not registered (never was, already ran,
 * or already removed). */
void sift_ctx_remove_hook(sift_ctx_hook *hook);

/* The loop the context lives on. */
uv_loop_t *sift_ctx_loop(const sift_ctx *ctx);

/* A run id shown on log lines (copied; at most 63 bytes kept; not kept when
 * out of memory). Children inherit it unless they have their own; setting it
 * again replaces it. sift_ctx_run_id returns NULL when none is set. */
void sift_ctx_set_run_id(sift_ctx *ctx, const char *run_id);
const char *sift_ctx_run_id(const sift_ctx *ctx);

#endif
