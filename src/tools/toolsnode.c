/* The tools node (all tool calls of one assistant message, through a
 * sift_group) and the coalescer (identical calls in flight share one backend
 * execution).
 *
 * Re-entrancy is what shapes this file: a tool may end its job inside
 * sift_tool_job_start, a job's end reports a group task, which may cancel
 * the group's context, whose hooks end other jobs, all on one stack. So the
 * run's done callback is deferred to a zero timer, a flight leaves the
 * coalescer's table before it hands out its result, and nothing is freed
 * while a caller up the stack may still use it. */
#include "sift/toolsnode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/buf.h"
#include "sift/group.h"
#include "sift/log.h"

#define container_of(p, T, m) ((T *)((char *)(p)-offsetof(T, m)))

/* ==== coalescer ==== */

#define NBUCKETS 256

struct flight;

/* One caller waiting for a flight's result. Embedded in the caller. */
struct waiter {
    struct flight *f; /* NULL once it has left or been served */
    struct waiter *prev, *next;
    sift_ctx_hook hook;
    sift_arena *arena; /* where the result copy goes */
    void (*done)(struct waiter *w, int code, const char *result);
};

enum flight_state {
    FLIGHT_RUNNING,   /* in the table; callers may join */
    FLIGHT_ABANDONED, /* every waiter left; backend cancelled, not reported yet */
    FLIGHT_DONE,      /* backend reported; serving the waiters */
};

struct flight {
    sift_coalescer *co;
    struct flight *hnext;
    uint64_t hash;
    char *key;
    size_t keylen;
    sift_arena *arena; /* the backend job's own: its arguments and result */
    sift_ctx *ctx;     /* under co->root; cancelled when the last waiter leaves */
    sift_tool_job job;
    struct waiter *waiters;
    int nwaiters;
    enum flight_state state;
    int in_table;
};

struct sift_coalescer {
    uv_loop_t *loop;
    sift_ctx *root;
    struct flight *buckets[NBUCKETS];
    sift_coalescer_stats stats;
    int freed;
    int closing; /* inside sift_coalescer_free's cancel: it destroys, not flight_free */
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void flight_set_state(struct flight *f, enum flight_state from, enum flight_state to)
{
    if (f->state != from) {
        sift_log(SIFT_LOG_ERROR, NULL, NULL, "coalescer: flight in state %d, expected %d",
                 (int)f->state, (int)from);
        abort();
    }
    f->state = to;
}

static void table_remove(struct flight *f)
{
    if (!f->in_table)
        return;
    struct flight **pp = &f->co->buckets[f->hash % NBUCKETS];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
    f->hnext = NULL;
    f->in_table = 0;
}

static struct flight *table_find(sift_coalescer *co, uint64_t hash, const char *key, size_t keylen)
{
    for (struct flight *f = co->buckets[hash % NBUCKETS]; f; f = f->hnext) {
        if (f->hash == hash && f->keylen == keylen && memcmp(f->key, key, keylen) == 0)
            return f;
    }
    return NULL;
}

static void waiter_unlink(struct waiter *w)
{
    struct flight *f = w->f;
    if (w->prev)
        w->prev->next = w->next;
    else
        f->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->f = NULL;
    f->nwaiters--;
    sift_ctx_remove_hook(&w->hook);
}

static void coalescer_destroy(sift_coalescer *co)
{
    sift_ctx_release(co->root);
    sift_free(co);
}

static void flight_free(struct flight *f)
{
    sift_coalescer *co = f->co;
    sift_ctx_release(f->ctx);
    sift_arena_free(f->arena);
    sift_free(f->key);
    sift_free(f);
    co->stats.in_flight--;
    if (co->freed && !co->closing && co->stats.in_flight == 0)
        coalescer_destroy(co);
}

/* The backend job ended (tool.h allows freeing the job from here). */
static void flight_job_done(sift_tool_job *job, void *data)
{
    struct flight *f = data;
    (void)job;
    if (f->state == FLIGHT_RUNNING) {
        table_remove(f); /* before any waiter runs: a new identical call starts afresh */
        flight_set_state(f, FLIGHT_RUNNING, FLIGHT_DONE);
    } else {
        flight_set_state(f, FLIGHT_ABANDONED, FLIGHT_DONE);
    }
    /* A waiter's callback may cancel other waiters of this flight (fail-fast
     * siblings): they unlink themselves, so always take the current head. */
    struct waiter *w;
    while ((w = f->waiters) != NULL) {
        waiter_unlink(w);
        int code = f->job.code;
        const char *res = f->job.result;
        if (res) {
            res = sift_arena_strdup(w->arena, res);
            if (res == NULL) {
                code = SIFT_ENOMEM;
                res = "out of memory copying a shared tool result";
            }
        }
        w->done(w, code, res);
    }
    flight_free(f);
}

/* The waiter's own context is done: it leaves alone; the backend goes on for
 * the others, or is cancelled if this was the last one. */
static void waiter_cancelled(sift_ctx_hook *hook, const sift_err *cause)
{
    struct waiter *w = container_of(hook, struct waiter, hook);
    struct flight *f = w->f;
    waiter_unlink(w);
    if (f->state == FLIGHT_RUNNING && f->nwaiters == 0) {
        table_remove(f);
        flight_set_state(f, FLIGHT_RUNNING, FLIGHT_ABANDONED);
        /* May end the job (and free f) right here: f is not used after. */
        sift_ctx_cancel(f->ctx, SIFT_ECANCELED, "every caller of this tool call has gone");
    }
    w->done(w, cause->code, cause->msg[0] ? cause->msg : NULL);
}

sift_coalescer *sift_coalescer_new(uv_loop_t *loop)
{
    sift_coalescer *co = sift_calloc(1, sizeof *co);
    if (co == NULL)
        return NULL;
    co->loop = loop;
    co->root = sift_ctx_new_root(loop);
    if (co->root == NULL) {
        sift_free(co);
        return NULL;
    }
    return co;
}

void sift_coalescer_free(sift_coalescer *co)
{
    if (co == NULL)
        return;
    co->freed = 1;
    /* Ends every backend job (tools end their jobs on cancellation), which
     * serves the waiters with the error and frees the flights. */
    co->closing = 1;
    sift_ctx_cancel(co->root, SIFT_ECANCELED, "tool call coalescer closed");
    co->closing = 0;
    if (co->stats.in_flight == 0)
        coalescer_destroy(co);
}

void sift_coalescer_get_stats(const sift_coalescer *co, sift_coalescer_stats *out)
{
    *out = co->stats;
}

/* Joins the flight for `key`, or starts one running `tool` with the canonical
 * arguments `args`. w->done fires exactly once, possibly before this returns.
 * Returns 0, or SIFT_ENOMEM / the context's code with nothing fired. */
static int coalescer_join(sift_coalescer *co, const sift_tool *tool, void *app, sift_ctx *wctx,
                          struct waiter *w, const char *key, size_t keylen, const char *args,
                          size_t argslen)
{
    uint64_t hash = fnv1a(key, keylen);
    struct flight *f = table_find(co, hash, key, keylen);
    int fresh = f == NULL;
    int rc;
    if (!fresh) {
        rc = sift_ctx_add_hook(wctx, &w->hook, waiter_cancelled);
        if (rc < 0)
            return rc;
        co->stats.joined++;
    } else {
        if (co->freed)
            return SIFT_ECANCELED;
        f = sift_calloc(1, sizeof *f);
        if (f == NULL)
            return SIFT_ENOMEM;
        f->co = co;
        f->hash = hash;
        f->keylen = keylen;
        f->key = sift_strndup(key, keylen);
        f->arena = sift_arena_new(0);
        f->ctx = sift_ctx_new(co->root);
        if (f->key == NULL || f->arena == NULL || f->ctx == NULL) {
            rc = SIFT_ENOMEM;
            goto fail;
        }
        rc = sift_ctx_add_hook(wctx, &w->hook, waiter_cancelled);
        if (rc < 0)
            goto fail;
        sift_ctx_set_run_id(f->ctx, sift_ctx_run_id(wctx));
        f->state = FLIGHT_RUNNING;
        f->in_table = 1;
        f->hnext = co->buckets[hash % NBUCKETS];
        co->buckets[hash % NBUCKETS] = f;
        co->stats.backend_calls++;
        co->stats.in_flight++;
    }
    w->f = f;
    w->prev = NULL;
    w->next = f->waiters;
    if (f->waiters)
        f->waiters->prev = w;
    f->waiters = w;
    f->nwaiters++;
    if (fresh) {
        sift_tool_job_init(&f->job, tool, f->ctx, f->arena, app, flight_job_done, f);
        sift_tool_job_start(&f->job, args, argslen);
    }
    return 0;

fail:
    sift_ctx_release(f->ctx);
    sift_arena_free(f->arena);
    sift_free(f->key);
    sift_free(f);
    return rc;
}

/* ==== the tools node ==== */

enum call_state { CALL_QUEUED, CALL_RUNNING, CALL_DONE };

struct run;

struct call {
    struct run *run;
    size_t i;
    sift_task *task;
    sift_ctx *ctx; /* the call's own (deadline); released when the run ends */
    const sift_tool *tool;
    sift_tool_job job;  /* direct execution */
    struct waiter wait; /* coalesced execution */
    uint64_t t0;
    const char *msg; /* the error message, for the run's error */
    enum call_state state;
};

enum run_state {
    RUN_RUNNING,   /* calls in flight */
    RUN_FINISHING, /* the group is done; done callback queued on the timer */
    RUN_DONE,      /* done has fired; the timer handle is closing */
};

struct run {
    uv_timer_t timer; /* defers the done callback out of any cancel stack */
    const sift_tool_registry *reg;
    sift_ctx *parent;
    sift_arena *arena;
    const sift_tool_call *calls;
    size_t n;
    sift_tools_opts opts;
    sift_tools_done_fn done;
    void *udata;
    sift_group *group;
    struct call *callv;
    sift_tool_result *results;
    int setup_err;
    long first_fail; /* fail-fast: index of the call that failed first, or -1 */
    enum run_state state;
};

static void run_set_state(struct run *r, enum run_state from, enum run_state to)
{
    if (r->state != from) {
        sift_log(SIFT_LOG_ERROR, sift_ctx_run_id(r->parent), NULL,
                 "tools node: run in state %d, expected %d", (int)r->state, (int)from);
        abort();
    }
    r->state = to;
}

static const char *call_name(const sift_tool_call *c)
{
    return c->name ? c->name : "";
}

/* {"error":{"code":..,"message":..}} in the arena; a static fallback when out
 * of memory, so the model still gets valid JSON. */
static const char *error_json(sift_arena *a, const char *code, const char *msg, size_t *len)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    if (rc == 0)
        rc = sift_buf_json_escape(&b, msg, strlen(msg));
    if (rc == 0)
        rc = sift_buf_puts(&b, "\"}}");
    const char *out = rc == 0 ? sift_arena_memdup(a, b.data, b.len + 1) : NULL;
    size_t n = b.len;
    sift_buf_free(&b);
    if (out == NULL) {
        out = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        n = strlen(out);
    }
    *len = n;
    return out;
}

/* The result outlives `calls` (it goes with the arena): copy the id and name,
 * keeping the caller's strings only if the arena is out of memory. */
static void set_ids(struct run *r, sift_tool_result *res, const sift_tool_call *tc)
{
    const char *id = sift_arena_strdup(r->arena, tc->id);
    const char *name = sift_arena_strdup(r->arena, call_name(tc));
    res->tool_call_id = id || !tc->id ? id : tc->id;
    res->name = name ? name : call_name(tc);
}

static void end_call(struct call *c, int code, const char *ecode, const char *msg,
                     const char *content)
{
    struct run *r = c->run;
    const sift_tool_call *tc = &r->calls[c->i];
    sift_tool_result *res = &r->results[c->i];
    set_ids(r, res, tc);
    res->code = code;
    if (code == 0) {
        res->content = content ? content : "null";
        res->content_len = strlen(res->content);
    } else {
        c->msg = msg;
        res->content = error_json(r->arena, ecode, msg, &res->content_len);
        if (r->opts.policy == SIFT_TOOLS_FAIL_FAST && r->first_fail < 0 &&
            !sift_ctx_err(sift_group_ctx(r->group)))
            r->first_fail = (long)c->i;
    }
    c->state = CALL_DONE;
    if (r->opts.on_tool_end)
        r->opts.on_tool_end(c->i, tc, code, (int64_t)((uv_hrtime() - c->t0) / 1000), res->content,
                            r->opts.udata);
    sift_task_done(c->task, code, NULL, code ? c->msg : NULL);
}

/* The tool (or the coalesced flight) ended: classify for the model. */
static void tool_ended(struct call *c, int code, const char *result)
{
    struct run *r = c->run;
    if (code == 0) {
        end_call(c, 0, NULL, NULL, result);
        return;
    }
    const char *name = c->tool->name;
    int own = sift_ctx_err(c->ctx);
    int group = sift_ctx_err(sift_group_ctx(r->group));
    const char *msg;
    const char *ecode;
    if (own == SIFT_ETIMEDOUT && group == 0) {
        ecode = "timeout";
        msg = sift_arena_sprintf(r->arena, "%s timed out after %lld ms", name,
                                 (long long)r->opts.timeout_ms);
    } else if (own != 0) {
        const sift_err *cause = sift_ctx_cause(c->ctx);
        ecode = own == SIFT_ETIMEDOUT ? "timeout" : "cancelled";
        msg = sift_arena_sprintf(r->arena, "%s cancelled: %s", name,
                                 cause->msg[0] ? cause->msg : sift_err_name(cause->code));
    } else {
        /* a lookup that found nothing is worth telling apart: the model
         * should try another SKU rather than retry */
        ecode = code == SIFT_ETIMEDOUT   ? "timeout"
                : code == SIFT_ENOTFOUND ? "not_found"
                                         : "tool_error";
        msg = sift_arena_strdup(r->arena, result ? result : sift_err_name(code));
    }
    end_call(c, code, ecode, msg ? msg : "out of memory", NULL);
}

static void job_done(sift_tool_job *job, void *data)
{
    struct call *c = data;
    tool_ended(c, job->code, job->result);
}

static void waiter_done(struct waiter *w, int code, const char *result)
{
    tool_ended(container_of(w, struct call, wait), code, result);
}

static void unknown_tool(struct call *c, const char *name)
{
    struct run *r = c->run;
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_buf_printf(&b, "unknown tool \"%s\"; the tools are:", name);
    size_t nt = sift_tool_registry_count(r->reg);
    for (size_t i = 0; i < nt && rc == 0; i++)
        rc = sift_buf_printf(&b, "%s %s", i ? "," : "", sift_tool_registry_at(r->reg, i)->name);
    if (nt == 0 && rc == 0)
        rc = sift_buf_puts(&b, " (none)");
    const char *msg = rc == 0 ? sift_arena_strdup(r->arena, b.data) : NULL;
    sift_buf_free(&b);
    end_call(c, SIFT_ENOTFOUND, "unknown_tool", msg ? msg : "unknown tool", NULL);
}

static int use_coalescer(const struct run *r, const sift_tool *t)
{
    if (r->opts.coalescer == NULL)
        return 0;
    return r->opts.coalesce == NULL || r->opts.coalesce(t, r->opts.udata);
}

static void task_start(sift_task *task, sift_ctx *gctx, void *arg)
{
    struct call *c = arg;
    struct run *r = c->run;
    const sift_tool_call *tc = &r->calls[c->i];
    c->task = task;
    c->state = CALL_RUNNING;
    c->t0 = uv_hrtime();
    if (r->opts.on_tool_start)
        r->opts.on_tool_start(c->i, tc, r->opts.udata);

    c->tool = sift_tool_registry_find(r->reg, call_name(tc));
    if (c->tool == NULL) {
        unknown_tool(c, call_name(tc));
        return;
    }
    c->ctx = sift_ctx_new_timeout(gctx, r->opts.timeout_ms > 0 ? r->opts.timeout_ms : -1);
    if (c->ctx == NULL) {
        end_call(c, SIFT_ENOMEM, "internal", "out of memory starting the tool", NULL);
        return;
    }
    const char *argtext = tc->arguments ? tc->arguments : "";
    size_t arglen = tc->arguments ? tc->arguments_len : 0;

    /* Decode here, not only in the job: the message is then known to be the
     * decoder's ("invalid_arguments", not a tool failure), and the decoded
     * form gives the coalescing key. */
    sift_err err = {0};
    const void *args = NULL;
    int rc = sift_args_decode(c->tool->args, argtext, arglen, r->arena, &args, &err);
    if (rc < 0) {
        const char *msg = sift_arena_strdup(r->arena, err.msg);
        end_call(c, rc, rc == SIFT_EINVAL ? "invalid_arguments" : "internal",
                 msg ? msg : "invalid arguments", NULL);
        return;
    }

    if (use_coalescer(r, c->tool)) {
        sift_buf key;
        sift_buf_init(&key, 0);
        rc = sift_buf_puts(&key, c->tool->name);
        if (rc == 0)
            rc = sift_buf_putc(&key, '\n');
        size_t argoff = key.len;
        if (rc == 0)
            rc = sift_args_json(c->tool->args, args, &key);
        if (rc == 0) {
            c->wait.arena = r->arena;
            c->wait.done = waiter_done;
            rc = coalescer_join(r->opts.coalescer, c->tool, r->opts.app, c->ctx, &c->wait, key.data,
                                key.len, key.data + argoff, key.len - argoff);
        }
        sift_buf_free(&key);
        if (rc < 0) {
            if (rc == SIFT_ENOMEM)
                end_call(c, rc, "internal", "out of memory starting the tool", NULL);
            else
                tool_ended(c, rc, NULL);
        }
        return;
    }
    sift_tool_job_init(&c->job, c->tool, c->ctx, r->arena, r->opts.app, job_done, c);
    sift_tool_job_start(&c->job, argtext, arglen);
}

static void run_closed(uv_handle_t *h)
{
    struct run *r = container_of((uv_timer_t *)h, struct run, timer);
    sift_free(r->callv);
    sift_free(r);
}

/* On the loop, after the group finished: fill in the calls that never
 * started, fire done, release everything but the arena (the caller's). */
static void run_finish(uv_timer_t *t)
{
    struct run *r = container_of(t, struct run, timer);
    sift_ctx *gctx = sift_group_ctx(r->group);
    const sift_err *gcause = sift_ctx_cause(gctx);
    for (size_t i = 0; i < r->n; i++) {
        struct call *c = &r->callv[i];
        if (c->state != CALL_QUEUED)
            continue;
        sift_tool_result *res = &r->results[i];
        set_ids(r, res, &r->calls[i]);
        res->code = gcause->code ? gcause->code : SIFT_ECANCELED;
        const char *msg =
            sift_arena_sprintf(r->arena, "%s not started: %s", res->name,
                               gcause->msg[0] ? gcause->msg : sift_err_name(res->code));
        res->content =
            error_json(r->arena, "cancelled", msg ? msg : "not started", &res->content_len);
    }

    sift_err err = {0};
    int perr = sift_ctx_err(r->parent);
    if (r->setup_err) {
        sift_err_set(&err, r->setup_err, "tools step: out of memory adding the calls");
    } else if (perr) {
        const sift_err *pc = sift_ctx_cause(r->parent);
        sift_err_set(&err, perr, "tools step stopped: %s",
                     pc->msg[0] ? pc->msg : sift_err_name(perr));
    } else if (r->opts.policy == SIFT_TOOLS_FAIL_FAST && r->first_fail >= 0) {
        const struct call *c = &r->callv[r->first_fail];
        sift_err_set(&err, r->results[r->first_fail].code, "tool %s failed: %s",
                     call_name(&r->calls[c->i]), c->msg ? c->msg : "?");
    }
    run_set_state(r, RUN_FINISHING, RUN_DONE);
    r->done(err.code, r->results, r->n, err.code ? &err : NULL, r->udata);

    for (size_t i = 0; i < r->n; i++)
        sift_ctx_release(r->callv[i].ctx);
    sift_group_free(r->group);
    uv_close((uv_handle_t *)&r->timer, run_closed);
}

static void group_done(sift_group *g, int err, void *udata)
{
    struct run *r = udata;
    (void)g;
    (void)err;
    run_set_state(r, RUN_RUNNING, RUN_FINISHING);
    uv_timer_start(&r->timer, run_finish, 0, 0);
}

int sift_tools_run(const sift_tool_registry *registry, sift_ctx *ctx, sift_arena *arena,
                   const sift_tool_call *calls, size_t n, const sift_tools_opts *opts,
                   sift_tools_done_fn done, void *udata)
{
    if (registry == NULL || ctx == NULL || arena == NULL || done == NULL || (n && calls == NULL))
        return SIFT_EINVAL;
    if (opts && opts->coalescer && opts->coalescer->loop != sift_ctx_loop(ctx))
        return SIFT_EINVAL; /* coalescing is per loop */
    struct run *r = sift_calloc(1, sizeof *r);
    if (r == NULL)
        return SIFT_ENOMEM;
    r->reg = registry;
    r->parent = ctx;
    r->arena = arena;
    r->calls = calls;
    r->n = n;
    if (opts)
        r->opts = *opts;
    r->done = done;
    r->udata = udata;
    r->first_fail = -1;
    r->callv = sift_calloc(n ? n : 1, sizeof *r->callv);
    r->results = sift_arena_calloc(arena, n ? n : 1, sizeof *r->results);
    if (r->callv == NULL || r->results == NULL)
        goto fail;
    r->group = sift_group_new(ctx, r->opts.limit,
                              r->opts.policy == SIFT_TOOLS_FAIL_FAST ? SIFT_GROUP_FAIL_FAST
                                                                     : SIFT_GROUP_COLLECT,
                              group_done, r);
    if (r->group == NULL)
        goto fail;
    uv_timer_init(sift_ctx_loop(ctx), &r->timer);
    r->state = RUN_RUNNING;

    for (size_t i = 0; i < n; i++) {
        r->callv[i].run = r;
        r->callv[i].i = i;
        r->callv[i].state = CALL_QUEUED;
    }
    for (size_t i = 0; i < n; i++) {
        if (sift_group_go(r->group, task_start, &r->callv[i]) < 0) {
            /* The calls not added end as "not started", with this cause. */
            r->setup_err = SIFT_ENOMEM;
            sift_ctx_cancel(sift_group_ctx(r->group), SIFT_ENOMEM, "out of memory adding calls");
            break;
        }
    }
    sift_group_close(r->group);
    return 0;

fail:
    sift_free(r->callv);
    sift_free(r);
    return SIFT_ENOMEM;
}
