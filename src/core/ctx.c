/* Contexts: a cancellation tree on one uv loop.
 *
 * Lifetime: `refs` counts the owner's reference, one per live child, and one
 * held by sift_ctx_cancel while it walks the tree (hooks may release contexts
 * under its feet). At zero the context leaves its parent and is freed, after
 * its timer handle (if it ever had one) has closed. A released context whose
 * children are alive stays in the tree, timer included, so cancellation and
 * deadlines still reach the children through it. */
#include "sift/ctx.h"
#include "sift/arena.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct sift_ctx {
    uv_loop_t *loop;
    sift_ctx *parent;
    sift_ctx *children; /* first child */
    sift_ctx *prev, *next;
    sift_ctx_hook *hooks;
    int refs;
    unsigned released : 1;     /* the owner has let go */
    unsigned timer_inited : 1; /* timer needs uv_close before free */
    unsigned unlinked : 1;     /* out of the parent's children list */
    unsigned owns_cause : 1;   /* cause was allocated for this context */
    int64_t deadline;          /* effective, uv_now() ms, or SIFT_NO_DEADLINE */
    int64_t timeout_ms;        /* own timeout, for the message */
    int code;                  /* 0 while live, else the cause's code */
    /* NULL while live. Allocated by the context that was cancelled; its
     * children point to it (each child holds a reference on its parent, so
     * it outlives them): a sift_err in every context was 260 of its 552
     * bytes, and a run has several contexts per model and tool call. */
    const sift_err *cause;
    /* set on the contexts that got one (a run's); the others read their
     * ancestors' (64 bytes copied into every context before) */
    char *run_id;
    /* only contexts with a deadline of their own have a timer: most (the
     * request's, each graph node's, each tool's) do not, and the handle is
     * 152 bytes */
    uv_timer_t *timer;
};

static void ctx_unref(sift_ctx *ctx);

static const sift_err no_cause = {0};

/* Causes used when there is no memory for the message, by -code. */
static const sift_err fallback_causes[] = {
    {SIFT_ECANCELED, "cancelled"},
    {SIFT_ENOMEM, "out of memory"},
    {SIFT_EINVAL, "invalid argument"},
    {SIFT_ECANCELED, "cancelled"},
    {SIFT_ETIMEDOUT, "deadline exceeded"},
    {SIFT_EIO, "I/O error"},
    {SIFT_EPROTO, "protocol error"},
    {SIFT_ETOOBIG, "too big"},
    {SIFT_ENOTFOUND, "not found"},
    {SIFT_EHTTP, "HTTP error"},
    {SIFT_EBUSY, "busy"},
    {SIFT_ESTATE, "invalid state"},
    {SIFT_EFAILED, "a sibling task failed"},
    {SIFT_EINTERNAL, "internal error"},
    {SIFT_ELIMIT, "limit reached"},
};

static void remove_all_hooks(sift_ctx *ctx)
{
    while (ctx->hooks) {
        sift_ctx_hook *h = ctx->hooks;
        ctx->hooks = h->next;
        h->prev = h->next = NULL;
        h->ctx = NULL;
    }
}

/* Leaves the parent's list of children (the reference on the parent stays
 * until finish_free). Done as soon as refs reach zero, not in the timer's
 * close callback: a cancellation of the parent in between must not walk into
 * a context whose timer is already closing. */
static void unlink_child(sift_ctx *ctx)
{
    sift_ctx *parent = ctx->parent;
    if (!parent || ctx->unlinked)
        return;
    ctx->unlinked = 1;
    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        parent->children = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    ctx->prev = ctx->next = NULL;
}

static void finish_free(sift_ctx *ctx)
{
    sift_ctx *parent = ctx->parent;
    unlink_child(ctx);
    if (ctx->owns_cause)
        sift_free((void *)ctx->cause);
    sift_free(ctx->run_id);
    sift_free(ctx);
    if (parent)
        ctx_unref(parent);
}

static void on_timer_close(uv_handle_t *h)
{
    sift_ctx *ctx = h->data;
    sift_free(h);
    finish_free(ctx);
}

static void ctx_unref(sift_ctx *ctx)
{
    assert(ctx->refs > 0);
    if (--ctx->refs > 0)
        return;
    assert(ctx->children == NULL);
    remove_all_hooks(ctx);
    if (ctx->timer_inited) {
        unlink_child(ctx);
        uv_timer_stop(ctx->timer);
        uv_close((uv_handle_t *)ctx->timer, on_timer_close);
    } else {
        finish_free(ctx);
    }
}

static sift_ctx *ctx_alloc(uv_loop_t *loop, sift_ctx *parent)
{
    sift_ctx *ctx = sift_malloc(sizeof *ctx);
    if (!ctx)
        return NULL;
    memset(ctx, 0, sizeof *ctx);
    ctx->loop = loop;
    ctx->refs = 1;
    ctx->deadline = SIFT_NO_DEADLINE;
    ctx->timeout_ms = SIFT_NO_DEADLINE;
    if (parent) {
        ctx->parent = parent;
        parent->refs++;
        ctx->next = parent->children;
        if (parent->children)
            parent->children->prev = ctx;
        parent->children = ctx;
        ctx->deadline = parent->deadline;
        ctx->code = parent->code;
        ctx->cause = parent->cause;
    }
    return ctx;
}

sift_ctx *sift_ctx_new_root(uv_loop_t *loop)
{
    return ctx_alloc(loop, NULL);
}

sift_ctx *sift_ctx_new(sift_ctx *parent)
{
    return ctx_alloc(parent->loop, parent);
}

static void on_deadline(uv_timer_t *t)
{
    sift_ctx *ctx = t->data;
    sift_ctx_cancel(ctx, SIFT_ETIMEDOUT, "deadline of %lld ms exceeded",
                    (long long)ctx->timeout_ms);
}

sift_ctx *sift_ctx_new_timeout(sift_ctx *parent, int64_t timeout_ms)
{
    sift_ctx *ctx = ctx_alloc(parent->loop, parent);
    if (!ctx || timeout_ms < 0 || ctx->code)
        return ctx;
    int64_t own = (int64_t)uv_now(ctx->loop) + timeout_ms;
    if (ctx->deadline != SIFT_NO_DEADLINE && ctx->deadline <= own)
        return ctx; /* the parent's sooner deadline will cancel us */
    ctx->deadline = own;
    ctx->timeout_ms = timeout_ms;
    ctx->timer = sift_malloc(sizeof *ctx->timer);
    if (!ctx->timer) {
        sift_ctx_release(ctx);
        return NULL;
    }
    uv_timer_init(ctx->loop, ctx->timer);
    ctx->timer->data = ctx;
    ctx->timer_inited = 1;
    uv_timer_start(ctx->timer, on_deadline, (uint64_t)timeout_ms, 0);
    return ctx;
}

void sift_ctx_release(sift_ctx *ctx)
{
    if (!ctx)
        return;
    assert(!ctx->released);
    ctx->released = 1;
    remove_all_hooks(ctx);
    ctx_unref(ctx);
}

static void cancel_tree(sift_ctx *ctx, const sift_err *cause)
{
    if (ctx->code)
        return;
    ctx->code = cause->code;
    ctx->cause = cause;
    if (ctx->timer_inited)
        uv_timer_stop(ctx->timer);
    while (ctx->hooks) {
        sift_ctx_hook *h = ctx->hooks;
        ctx->hooks = h->next;
        if (h->next)
            h->next->prev = NULL;
        h->prev = h->next = NULL;
        h->ctx = NULL;
        h->fn(h, ctx->cause);
    }
    /* A child stays linked while we hold a reference on it, so its `next`
     * is valid when we come back from its subtree. A child without
     * references is never in the list (unlink_child runs when refs reach
     * zero), so taking a reference here cannot revive a closing one. */
    sift_ctx *c = ctx->children;
    if (c)
        c->refs++;
    while (c) {
        cancel_tree(c, ctx->cause);
        sift_ctx *next = c->next;
        if (next)
            next->refs++;
        ctx_unref(c);
        c = next;
    }
}

static const char *default_message(int code)
{
    switch (code) {
    case SIFT_ECANCELED:
        return "cancelled";
    case SIFT_ETIMEDOUT:
        return "deadline exceeded";
    case SIFT_EFAILED:
        return "a sibling task failed";
    default:
        return sift_err_name(code);
    }
}

void sift_ctx_cancel(sift_ctx *ctx, int code, const char *fmt, ...)
{
    if (ctx->code)
        return;
    sift_err cause = {0};
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cause.msg, sizeof cause.msg, fmt, ap);
        va_end(ap);
        cause.code = code;
    } else {
        sift_err_set(&cause, code, "%s", default_message(code));
    }
    if (cause.code >= 0)
        cause.code = SIFT_ECANCELED; /* done must mean an error code */
    const sift_err *shared;
    sift_err *own = sift_malloc(sizeof *own);
    if (own) {
        *own = cause;
        ctx->owns_cause = 1;
        shared = own;
    } else {
        /* no memory for the message: the code's generic one (an unknown
         * code becomes SIFT_ECANCELED) */
        int i = -cause.code;
        shared =
            &fallback_causes[i > 0 && i < (int)(sizeof fallback_causes / sizeof fallback_causes[0])
                                 ? i
                                 : 0];
    }
    ctx->refs++;
    cancel_tree(ctx, shared);
    ctx_unref(ctx);
}

int sift_ctx_err(const sift_ctx *ctx)
{
    return ctx->code;
}

const sift_err *sift_ctx_cause(const sift_ctx *ctx)
{
    return ctx->cause ? ctx->cause : &no_cause;
}

int64_t sift_ctx_deadline(const sift_ctx *ctx)
{
    return ctx->deadline;
}

int64_t sift_ctx_remaining_ms(const sift_ctx *ctx)
{
    if (ctx->deadline == SIFT_NO_DEADLINE)
        return SIFT_NO_DEADLINE;
    int64_t left = ctx->deadline - (int64_t)uv_now(ctx->loop);
    return left > 0 ? left : 0;
}

int sift_ctx_add_hook(sift_ctx *ctx, sift_ctx_hook *hook,
                      void (*fn)(sift_ctx_hook *hook, const sift_err *cause))
{
    assert(hook->ctx == NULL);
    if (ctx->code)
        return ctx->code;
    hook->fn = fn;
    hook->ctx = ctx;
    hook->prev = NULL;
    hook->next = ctx->hooks;
    if (ctx->hooks)
        ctx->hooks->prev = hook;
    ctx->hooks = hook;
    return 0;
}

void sift_ctx_remove_hook(sift_ctx_hook *hook)
{
    sift_ctx *ctx = hook->ctx;
    if (!ctx)
        return;
    if (hook->prev)
        hook->prev->next = hook->next;
    else
        ctx->hooks = hook->next;
    if (hook->next)
        hook->next->prev = hook->prev;
    hook->prev = hook->next = NULL;
    hook->ctx = NULL;
}

uv_loop_t *sift_ctx_loop(const sift_ctx *ctx)
{
    return ctx->loop;
}

void sift_ctx_set_run_id(sift_ctx *ctx, const char *run_id)
{
    sift_free(ctx->run_id);
    ctx->run_id = NULL;
    if (!run_id || !*run_id)
        return;
    size_t n = strnlen(run_id, 63);
    ctx->run_id = sift_malloc(n + 1); /* out of memory: log lines go without */
    if (ctx->run_id) {
        memcpy(ctx->run_id, run_id, n);
        ctx->run_id[n] = 0;
    }
}

const char *sift_ctx_run_id(const sift_ctx *ctx)
{
    for (; ctx; ctx = ctx->parent)
        if (ctx->run_id)
            return ctx->run_id;
    return NULL;
}
