/* Task groups (errgroup).
 *
 * Re-entrancy is the whole difficulty: a task may report inside its own start
 * function, a report may cancel the context, the cancel runs other tasks'
 * hooks, which report too, and the done callback may free the group. So:
 *  - pump() starts queued tasks in a loop and never recurses: a nested call
 *    only asks the running one to go round again;
 *  - every public entry point holds `depth`, and the group's memory is freed
 *    only when the outermost one leaves (deferred free). */
#include "sift/group.h"
#include "sift/arena.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 8

enum task_state { TASK_QUEUED, TASK_RUNNING, TASK_DONE, TASK_SKIPPED };

struct sift_task {
    sift_group *g;
    int index;
    enum task_state state;
    int code;
    void *result;
    char *msg;
    sift_task_fn fn;
    void *arg;
};

struct sift_group {
    sift_ctx *ctx;
    sift_ctx_hook hook;
    enum sift_group_mode mode;
    int limit;
    sift_group_done_fn done;
    void *udata;
    struct sift_task **blocks;
    int nblocks;
    int count, next, running, peak;
    int first_err;
    int depth;
    unsigned closed : 1, finished : 1, freed : 1, pumping : 1, repump : 1;
};

static struct sift_task *task_at(const sift_group *g, int i)
{
    return &g->blocks[i / BLOCK][i % BLOCK];
}

static void destroy(sift_group *g)
{
    sift_ctx_remove_hook(&g->hook);
    sift_ctx_release(g->ctx);
    for (int i = 0; i < g->count; i++)
        sift_free(task_at(g, i)->msg);
    for (int b = 0; b < g->nblocks; b++)
        sift_free(g->blocks[b]);
    sift_free(g->blocks);
    sift_free(g);
}

static void enter(sift_group *g)
{
    g->depth++;
}

static void leave(sift_group *g)
{
    if (--g->depth == 0 && g->freed && g->running == 0 && g->next == g->count)
        destroy(g);
}

static int final_error(const sift_group *g)
{
    if (g->mode == SIFT_GROUP_FAIL_FAST && g->first_err)
        return g->first_err;
    for (int i = 0; i < g->count; i++) {
        int code = task_at(g, i)->code;
        if (code)
            return g->mode == SIFT_GROUP_FAIL_FAST && sift_ctx_err(g->ctx) ? sift_ctx_err(g->ctx)
                                                                           : code;
    }
    return 0;
}

static void maybe_finish(sift_group *g)
{
    if (g->finished || !g->closed || g->running > 0 || g->next < g->count || g->pumping)
        return;
    g->finished = 1;
    if (!g->freed && g->done)
        g->done(g, final_error(g), g->udata);
}

static void skip_queued(sift_group *g)
{
    int err = sift_ctx_err(g->ctx);
    while (g->next < g->count) {
        struct sift_task *t = task_at(g, g->next++);
        t->state = TASK_SKIPPED;
        t->code = err;
    }
}

static void pump(sift_group *g)
{
    if (g->pumping) {
        g->repump = 1;
        return;
    }
    g->pumping = 1;
    do {
        g->repump = 0;
        while (!sift_ctx_err(g->ctx) && g->next < g->count &&
               (g->limit <= 0 || g->running < g->limit)) {
            struct sift_task *t = task_at(g, g->next++);
            t->state = TASK_RUNNING;
            if (++g->running > g->peak)
                g->peak = g->running;
            t->fn(t, g->ctx, t->arg);
        }
        if (sift_ctx_err(g->ctx))
            skip_queued(g);
    } while (g->repump);
    g->pumping = 0;
    maybe_finish(g);
}

static void on_cancel(sift_ctx_hook *hook, const sift_err *cause)
{
    sift_group *g = (sift_group *)((char *)hook - offsetof(sift_group, hook));
    enter(g);
    pump(g);
    leave(g);
}

sift_group *sift_group_new(sift_ctx *parent, int limit, enum sift_group_mode mode,
                           sift_group_done_fn done, void *udata)
{
    sift_group *g = sift_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->ctx = sift_ctx_new(parent);
    if (!g->ctx) {
        sift_free(g);
        return NULL;
    }
    g->limit = limit;
    g->mode = mode;
    g->done = done;
    g->udata = udata;
    sift_ctx_add_hook(g->ctx, &g->hook, on_cancel); /* fails only if already done */
    return g;
}

static int grow(sift_group *g)
{
    if (g->count < g->nblocks * BLOCK)
        return 0;
    struct sift_task **blocks =
        sift_realloc(g->blocks, sizeof(struct sift_task *) * (size_t)(g->nblocks + 1));
    if (!blocks)
        return SIFT_ENOMEM;
    g->blocks = blocks;
    blocks[g->nblocks] = sift_calloc(BLOCK, sizeof(struct sift_task));
    if (!blocks[g->nblocks])
        return SIFT_ENOMEM;
    g->nblocks++;
    return 0;
}

int sift_group_go(sift_group *g, sift_task_fn fn, void *arg)
{
    if (g->closed || g->freed)
        return SIFT_ESTATE;
    if (grow(g))
        return SIFT_ENOMEM;
    int i = g->count++;
    struct sift_task *t = task_at(g, i);
    memset(t, 0, sizeof *t);
    t->g = g;
    t->index = i;
    t->fn = fn;
    t->arg = arg;
    t->state = TASK_QUEUED;
    enter(g);
    pump(g);
    leave(g);
    return i;
}

void sift_group_close(sift_group *g)
{
    if (g->closed)
        return;
    g->closed = 1;
    enter(g);
    maybe_finish(g);
    leave(g);
}

void sift_task_done(sift_task *t, int code, void *result, const char *msg)
{
    sift_group *g = t->g;
    if (t->state != TASK_RUNNING) {
        fprintf(stderr, "sift: task %d of a group reported twice (or before it started)\n",
                t->index);
        abort();
    }
    enter(g);
    t->state = TASK_DONE;
    t->code = code;
    t->result = result;
    t->msg = msg ? sift_strdup(msg) : NULL;
    g->running--;
    if (code && g->mode == SIFT_GROUP_FAIL_FAST && !sift_ctx_err(g->ctx)) {
        g->first_err = code;
        sift_ctx_cancel(g->ctx, SIFT_EFAILED, "task %d failed: %s", t->index,
                        msg ? msg : sift_err_name(code));
    }
    pump(g);
    leave(g);
}

int sift_task_index(const sift_task *t)
{
    return t->index;
}

int sift_group_count(const sift_group *g)
{
    return g->count;
}

int sift_group_running(const sift_group *g)
{
    return g->running;
}

int sift_group_peak(const sift_group *g)
{
    return g->peak;
}

int sift_group_result(const sift_group *g, int i, void **result, const char **msg)
{
    if (i < 0 || i >= g->count)
        return SIFT_EINVAL;
    const struct sift_task *t = task_at(g, i);
    if (result)
        *result = t->result;
    if (msg)
        *msg = t->msg;
    if (t->state == TASK_QUEUED || t->state == TASK_RUNNING)
        return SIFT_ESTATE;
    return t->code;
}

int sift_group_started(const sift_group *g, int i)
{
    if (i < 0 || i >= g->count)
        return 0;
    enum task_state s = task_at(g, i)->state;
    return s == TASK_RUNNING || s == TASK_DONE;
}

sift_ctx *sift_group_ctx(sift_group *g)
{
    return g->ctx;
}

void sift_group_free(sift_group *g)
{
    if (!g)
        return;
    assert(!g->freed);
    g->freed = 1;
    enter(g);
    if (!g->finished)
        sift_ctx_cancel(g->ctx, SIFT_ECANCELED, "task group released");
    leave(g);
}
