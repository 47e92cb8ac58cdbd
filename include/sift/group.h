/* sift_group: a set of asynchronous tasks under one context, like Go's errgroup.
 *
 * Tasks start in the order they were added, never more than `limit` at once;
 * a queued task starts as soon as a running one reports. Each started task
 * receives the group's context (a child of the parent given at creation) and
 * must report exactly once with sift_task_done, synchronously or later, also
 * after cancellation (typically with SIFT_ECANCELED from its cancel hook).
 *
 * Modes:
 *  - SIFT_GROUP_FAIL_FAST: the first task that reports an error cancels the
 *    group's context with SIFT_EFAILED; queued tasks never start.
 *  - SIFT_GROUP_COLLECT: every task runs and its result is kept, in task
 *    order; errors do not stop the others.
 * In both modes, once the group's context is done (parent cancelled, deadline
 * passed, fail-fast), tasks still queued never start and are recorded with the
 * context's error.
 *
 * The done callback fires exactly once, after sift_group_close has been called
 * and every started task has reported. It may free the group. */
#ifndef SIFT_GROUP_H
#define SIFT_GROUP_H

#include "sift/ctx.h"
#include "sift/err.h"

typedef struct sift_group sift_group;
typedef struct sift_task sift_task;

enum sift_group_mode {
    SIFT_GROUP_FAIL_FAST = 0,
    SIFT_GROUP_COLLECT = 1,
};

/* Starts a task's work. `ctx` is the group's context: register a cancel hook
 * on it for the work in flight. `arg` is what was passed to sift_group_go. */
typedef void (*sift_task_fn)(sift_task *task, sift_ctx *ctx, void *arg);

/* Fires once when the group is finished. `err` is 0 when every task
 * succeeded; otherwise in fail-fast mode the first task error (or the
 * context's error if the group was cancelled from outside), and in collect
 * mode the first error in task order. */
typedef void (*sift_group_done_fn)(sift_group *g, int err, void *udata);

/* A group of tasks under a child context of `parent`. `limit` is the most
 * tasks in flight at once (<= 0: no limit). NULL when out of memory. */
sift_group *sift_group_new(sift_ctx *parent, int limit, enum sift_group_mode mode,
                           sift_group_done_fn done, void *udata);

/* Adds a task; it starts now if the limit allows (fn may run, and even report,
 * before this returns), otherwise when a slot frees. Returns the task's index
 * (0, 1, ... in order of adding), or SIFT_ENOMEM, or SIFT_ESTATE after
 * sift_group_close. Adding to a group whose context is done records the task
 * as not started with the context's error and returns its index. */
int sift_group_go(sift_group *g, sift_task_fn fn, void *arg);

/* Says no more tasks will be added. The done callback fires once every
 * started task has reported, possibly before this returns. */
void sift_group_close(sift_group *g);

/* Reports a task's outcome: `code` 0 or a negative SIFT_E code, `result` an
 * opaque pointer kept for sift_group_result, `msg` an optional message for the
 * error (copied). Calling it twice for the same task is a bug and aborts. */
void sift_task_done(sift_task *task, int code, void *result, const char *msg);

/* The index of a task within its group. */
int sift_task_index(const sift_task *task);

/* Number of tasks added, running now, and the most ever running at once. */
int sift_group_count(const sift_group *g);
int sift_group_running(const sift_group *g);
int sift_group_peak(const sift_group *g);

/* The outcome of task i: its code (SIFT_ECANCELED or the context's error for a
 * task that never started; SIFT_ESTATE while it has not reported), its result
 * pointer (may be NULL) and its message (NULL if none). */
int sift_group_result(const sift_group *g, int i, void **result, const char **msg);

/* True (non-zero) if task i was started. */
int sift_group_started(const sift_group *g, int i);

/* The group's context (cancel it to cancel the group). */
sift_ctx *sift_group_ctx(sift_group *g);

/* Releases the group. Called before the done callback, it cancels the
 * group's context and the done callback will not fire; the memory goes when
 * the last started task has reported. May be called from inside the done
 * callback. NULL is a no-op. */
void sift_group_free(sift_group *g);

#endif
