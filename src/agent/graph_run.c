/* The state-graph engine: running a compiled graph.
 *
 * A run is a small state machine driven by pump(): READY (about to start a
 * step) -> STEP (nodes in flight) -> READY ... -> FINISHED (done callback) ->
 * CLOSING (the kick timer closes, then the memory goes). Nodes that report
 * synchronously are handled by pump's loop, not by recursion, so a cycle of
 * synchronous nodes runs any number of steps on a flat stack. A node that
 * reports later (from a timer, a transfer, a cancel hook) only arms the kick
 * timer: the run continues on the next loop iteration, never inside the
 * node's own callback, so nothing is freed under its caller's feet. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_int.h"

enum run_state {
    RUN_READY = 0,
    RUN_STEP,
    RUN_FINISHED,
    RUN_CLOSING,
};

struct run;

struct sift_graph_node_run {
    struct run *run;
    int node;
    void *state;
    sift_ctx *ctx;
    uint64_t t0;
    int reported;
    int code;
    /* why it failed, allocated then: a sift_err per node was 260 bytes of
     * every run; NULL when out of memory (the code's name is used) */
    char *msg;
};

static void nr_set_msg(struct sift_graph_node_run *nr, const char *msg)
{
    sift_free(nr->msg);
    nr->msg = sift_strdup(msg);
}

static const char *nr_msg(const struct sift_graph_node_run *nr)
{
    return nr->msg ? nr->msg : sift_err_name(nr->code);
}

struct run {
    enum run_state st;
    uv_timer_t kick;
    const sift_graph *g;
    sift_ctx *ctx;
    void *state;
    int max_steps;
    sift_checkpointer *cp;
    char *thread_id;
    char *stop_before, *stop_after; /* per node: interrupt flags */
    sift_graph_callbacks *cbs;
    int ncbs;
    int *front, *next;
    int nfront, nnext;
    const char **picked; /* router output */
    struct sift_graph_node_run *nr;
    int nnr;       /* entries in nr (the graph's nodes) */
    void *base;    /* the state at a fan-out */
    void **branch; /* each fan-out node's copy */
    int pending;
    int first_err; /* index in nr of the first node that failed, or -1 */
    int64_t step;
    int steps_run;
    int skip_before;
    int in_pump;
    sift_graph_done_fn done;
    void *udata;
    sift_graph_result res;
    /* the failure's or interruption's message, allocated then (a sift_err
     * in every run before); NULL when out of memory */
    char *res_msg;
};

static void set_state(struct run *r, enum run_state st)
{
    r->st = st;
}

static void run_free(struct run *r)
{
    sift_free(r->thread_id);
    sift_free(r->stop_before);
    sift_free(r->stop_after);
    sift_free(r->cbs);
    sift_free(r->front);
    sift_free(r->next);
    sift_free(r->picked);
    sift_free(r->res_msg);
    for (int i = 0; r->nr && i < r->nnr; i++)
        sift_free(r->nr[i].msg);
    sift_free(r->nr);
    sift_free(r->branch);
    sift_free(r);
}

static void on_closed(uv_handle_t *h)
{
    run_free((struct run *)((char *)h - offsetof(struct run, kick)));
}

static void fail(struct run *r, int code, const char *node, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct run *r, int code, const char *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[SIFT_ERR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sift_free(r->res_msg);
    r->res_msg = sift_strdup(msg);
    r->res.status = SIFT_GRAPH_FAILED;
    r->res.code = code;
    r->res.node = node;
    set_state(r, RUN_FINISHED);
}

static void fail_ctx(struct run *r, const char *node)
{
    const sift_err *c = sift_ctx_cause(r->ctx);
    fail(r, c->code, node, "graph \"%s\": %s", r->g->name,
         c->msg[0] ? c->msg : sift_err_name(c->code));
}

static void interrupt(struct run *r, const char *node, const char *when)
{
    char msg[SIFT_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "interrupted %s \"%s\"", when, node);
    sift_free(r->res_msg);
    r->res_msg = sift_strdup(msg);
    r->res.status = SIFT_GRAPH_INTERRUPTED;
    r->res.code = 0;
    r->res.node = node;
    set_state(r, RUN_FINISHED);
}

static void drop_branches(struct run *r)
{
    for (int i = 0; i < r->g->nnodes; i++) {
        sift_graph_state_free_copy(r->g, r->branch[i]);
        r->branch[i] = NULL;
    }
    sift_graph_state_free_copy(r->g, r->base);
    r->base = NULL;
}

static int put_checkpoint(struct run *r, sift_err *err)
{
    if (!r->cp)
        return 0;
    sift_buf next, state;
    sift_buf_init(&next, 0);
    sift_buf_init(&state, 0);
    int rc = sift_buf_putc(&next, '[');
    for (int i = 0; !rc && i < r->nfront; i++) {
        const char *name = r->g->nodes[r->front[i]].name;
        rc = sift_buf_puts(&next, i ? ",\"" : "\"");
        if (!rc)
            rc = sift_buf_json_escape(&next, name, strlen(name));
        if (!rc)
            rc = sift_buf_putc(&next, '"');
    }
    if (!rc)
        rc = sift_buf_putc(&next, ']');
    if (!rc)
        rc = sift_graph_state_to_json(r->g, r->state, &state);
    if (rc) {
        sift_err_set(err, rc, "graph \"%s\": cannot write the checkpoint of step %lld (%s)",
                     r->g->name, (long long)r->step, sift_err_name(rc));
    } else {
        sift_checkpoint c = {.step = r->step, .next = next.data, .state = state.data};
        rc = r->cp->ops->put(r->cp, r->thread_id, &c, err);
    }
    sift_buf_free(&next);
    sift_buf_free(&state);
    return rc;
}

static void emit(struct run *r, int which, const sift_graph_event *ev)
{
    for (int i = 0; i < r->ncbs; i++) {
        const sift_graph_callbacks *c = &r->cbs[i];
        void (*fn)(const sift_graph_event *, void *) = which == 0   ? c->on_start
                                                       : which == 1 ? c->on_end
                                                                    : c->on_error;
        if (fn)
            fn(ev, c->udata);
    }
}

static void pump(struct run *r);

static void kick_cb(uv_timer_t *t)
{
    pump((struct run *)((char *)t - offsetof(struct run, kick)));
}

void sift_graph_node_done(sift_graph_node_run *nr, int code, const char *fmt, ...)
{
    struct run *r = nr->run;
    if (nr->reported || r->st != RUN_STEP) {
        fprintf(stderr, "sift_graph_node_done: node \"%s\" reported twice\n",
                r->g->nodes[nr->node].name);
        abort();
    }
    nr->reported = 1;
    nr->code = code;
    if (code) {
        char msg[SIFT_ERR_MSG_MAX] = "";
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg, sizeof(msg), fmt, ap);
            va_end(ap);
        }
        nr_set_msg(nr, msg[0] ? msg : sift_err_name(code));
    }
    const char *name = r->g->nodes[nr->node].name;
    sift_graph_event ev = {.graph = r->g->name,
                           .node = name,
                           .step = r->step + 1,
                           .duration_us = (int64_t)((uv_hrtime() - nr->t0) / 1000),
                           .code = code,
                           .msg = code ? nr_msg(nr) : NULL};
    emit(r, 1, &ev);
    if (code) {
        emit(r, 2, &ev);
        if (r->first_err < 0) {
            r->first_err = (int)(nr - r->nr);
            /* Fail fast: the other branches of a fan-out are cancelled. Their
             * hooks report re-entrantly, which only counts them down. */
            for (int i = 0; i < r->nfront; i++)
                if (&r->nr[i] != nr && r->nr[i].ctx && !r->nr[i].reported)
                    sift_ctx_cancel(r->nr[i].ctx, SIFT_EFAILED, "node \"%s\" failed", name);
        }
    }
    if (--r->pending == 0 && !r->in_pump)
        uv_timer_start(&r->kick, kick_cb, 0, 0);
}

sift_ctx *sift_graph_node_ctx(const sift_graph_node_run *nr)
{
    return nr->ctx;
}

void *sift_graph_node_udata(const sift_graph_node_run *nr)
{
    return nr->run->g->nodes[nr->node].udata;
}

const char *sift_graph_node_name(const sift_graph_node_run *nr)
{
    return nr->run->g->nodes[nr->node].name;
}

int64_t sift_graph_node_step(const sift_graph_node_run *nr)
{
    return nr->run->step + 1;
}

/* A node that could not start counts as reported with `code`. */
static void not_started(struct run *r, struct sift_graph_node_run *nr, int code, const char *msg)
{
    nr->reported = 1;
    nr->code = code;
    nr_set_msg(nr, msg);
    if (r->first_err < 0)
        r->first_err = (int)(nr - r->nr);
    r->pending--;
}

static void begin_step(struct run *r)
{
    const sift_graph *g = r->g;
    if (r->nfront == 0) {
        r->res.status = SIFT_GRAPH_DONE;
        set_state(r, RUN_FINISHED);
        return;
    }
    const char *first = g->nodes[r->front[0]].name;
    if (sift_ctx_err(r->ctx)) {
        fail_ctx(r, first);
        return;
    }
    if (r->steps_run >= r->max_steps) {
        fail(r, SIFT_EINVAL, first, "graph \"%s\": max steps (%d) reached at node \"%s\"", g->name,
             r->max_steps, first);
        return;
    }
    if (!r->skip_before) {
        for (int i = 0; i < r->nfront; i++) {
            if (r->stop_before[r->front[i]]) {
                interrupt(r, g->nodes[r->front[i]].name, "before");
                return;
            }
        }
    }
    r->skip_before = 0;
    if (r->nfront > 1) {
        r->base = sift_graph_state_copy(g, r->state);
        for (int i = 0; r->base && i < r->nfront; i++) {
            if (!(r->branch[i] = sift_graph_state_copy(g, r->state))) {
                drop_branches(r);
                break;
            }
        }
        if (!r->base) {
            fail(r, SIFT_ENOMEM, first,
                 "graph \"%s\": out of memory copying the state for a fan-out", g->name);
            return;
        }
    }
    r->first_err = -1;
    r->pending = r->nfront;
    set_state(r, RUN_STEP);
    for (int i = 0; i < r->nfront; i++) {
        struct sift_graph_node_run *nr = &r->nr[i];
        const struct gnode *n = &g->nodes[r->front[i]];
        sift_free(nr->msg); /* the previous step's */
        memset(nr, 0, sizeof(*nr));
        nr->run = r;
        nr->node = r->front[i];
        nr->state = r->nfront > 1 ? r->branch[i] : r->state;
        if (r->first_err >= 0 || sift_ctx_err(r->ctx)) {
            not_started(r, nr, SIFT_ECANCELED, "not started");
            continue;
        }
        if (!(nr->ctx = sift_ctx_new(r->ctx))) {
            not_started(r, nr, SIFT_ENOMEM, "out of memory starting the node");
            continue;
        }
        sift_graph_event ev = {.graph = g->name, .node = n->name, .step = r->step + 1};
        emit(r, 0, &ev);
        nr->t0 = uv_hrtime();
        n->fn(nr, nr->state);
    }
}

static void add_next(struct run *r, int id)
{
    if (id < 0)
        return; /* END */
    for (int i = 0; i < r->nnext; i++)
        if (r->next[i] == id)
            return;
    r->next[r->nnext++] = id;
}

/* The node ids a router's choice names; -1 if not among its targets. */
static int branch_target(const struct run *r, int from, const char *name)
{
    const struct gnode *n = &r->g->nodes[from];
    for (int i = 0; i < r->g->nedges; i++) {
        const struct gedge *e = &r->g->edges[i];
        if (e->from_id == from && e->branch == n->branch->id && strcmp(e->to, name) == 0)
            return e->to_id;
    }
    return -1;
}

static void end_step(struct run *r)
{
    const sift_graph *g = r->g;
    for (int i = 0; i < r->nfront; i++) {
        sift_ctx_release(r->nr[i].ctx);
        r->nr[i].ctx = NULL;
    }
    if (r->first_err >= 0) {
        drop_branches(r);
        const struct sift_graph_node_run *nr = &r->nr[r->first_err];
        const char *name = g->nodes[nr->node].name;
        if (sift_ctx_err(r->ctx))
            fail_ctx(r, name);
        else
            fail(r, nr->code, name, "graph \"%s\": node \"%s\": %s", g->name, name, nr_msg(nr));
        return;
    }
    if (r->nfront > 1) {
        /* Fan-in: branches merge in frontier order, so the result does not
         * depend on which finished first. */
        for (int i = 0; i < r->nfront; i++) {
            int rc = sift_graph_state_merge(g, r->state, r->base, r->branch[i]);
            if (rc) {
                drop_branches(r);
                fail(r, rc, g->nodes[r->front[i]].name,
                     "graph \"%s\": cannot merge the state of node \"%s\" (%s)", g->name,
                     g->nodes[r->front[i]].name, sift_err_name(rc));
                return;
            }
        }
        drop_branches(r);
    }
    r->nnext = 0;
    for (int i = 0; i < r->nfront; i++) {
        const struct gnode *n = &g->nodes[r->front[i]];
        for (int j = 0; j < n->nout; j++)
            add_next(r, n->out[j]);
        if (!n->branch)
            continue;
        int k = n->branch->fn(r->state, n->branch->udata, r->picked, g->nnodes + 1);
        if (k < 0) {
            fail(r, k, n->name, "graph \"%s\": the router of node \"%s\" failed (%s)", g->name,
                 n->name, sift_err_name(k));
            return;
        }
        for (int j = 0; j < k && j <= g->nnodes; j++) {
            int id = r->picked[j] ? branch_target(r, r->front[i], r->picked[j]) : -1;
            if (id == -1) {
                fail(r, SIFT_EINVAL, n->name,
                     "graph \"%s\": the router of node \"%s\" chose \"%s\", which is not one of "
                     "its targets",
                     g->name, n->name, r->picked[j] ? r->picked[j] : "(null)");
                return;
            }
            add_next(r, id);
        }
    }
    int *t = r->front;
    r->front = r->next;
    r->next = t;
    int nprev = r->nfront;
    r->nfront = r->nnext;
    r->nnext = nprev;
    r->step++;
    r->steps_run++;
    sift_err err = {0};
    int rc = put_checkpoint(r, &err);
    if (rc) {
        fail(r, rc, NULL, "%s", err.msg);
        return;
    }
    set_state(r, RUN_READY);
    if (r->nfront == 0)
        return;
    for (int i = 0; i < nprev; i++) {
        if (r->stop_after[r->next[i]]) {
            interrupt(r, g->nodes[r->next[i]].name, "after");
            return;
        }
    }
}

static void finish(struct run *r)
{
    set_state(r, RUN_CLOSING);
    r->res.step = r->step;
    r->res.steps_run = r->steps_run;
    r->res.msg = r->res.status == SIFT_GRAPH_DONE     ? NULL
                 : r->res_msg                         ? r->res_msg
                 : r->res.status == SIFT_GRAPH_FAILED ? sift_err_name(r->res.code)
                                                      : "interrupted";
    r->done(&r->res, r->udata);
    uv_close((uv_handle_t *)&r->kick, on_closed);
}

static void pump(struct run *r)
{
    r->in_pump = 1;
    for (;;) {
        if (r->st == RUN_READY)
            begin_step(r);
        else if (r->st == RUN_STEP && r->pending == 0)
            end_step(r);
        else
            break;
    }
    r->in_pump = 0;
    if (r->st == RUN_FINISHED)
        finish(r); /* the run may be gone after this */
}

static int mark_names(const sift_graph *g, const char *const *names, char *flags, sift_err *err)
{
    for (int i = 0; names && names[i]; i++) {
        int id = sift_graph_find(g, names[i]);
        if (id < 0)
            return sift_err_set(err, SIFT_EINVAL,
                                "graph \"%s\": cannot interrupt at unknown node \"%s\"", g->name,
                                names[i]);
        flags[id] = 1;
    }
    return 0;
}

static int start(const sift_graph *g, sift_ctx *ctx, void *state, const sift_graph_opts *opts,
                 sift_graph_done_fn done, void *udata, sift_err *err, const int *front, int nfront,
                 int64_t step, int resumed)
{
    static const sift_graph_opts none = {0};
    if (!opts)
        opts = &none;
    if (!g->compiled)
        return sift_err_set(err, SIFT_ESTATE, "graph \"%s\" is not compiled", g->name);
    if (!ctx || !state || !done)
        return sift_err_set(err, SIFT_EINVAL,
                            "graph \"%s\": a context, a state and a done callback are required",
                            g->name);
    if (opts->checkpointer && (!opts->thread_id || !*opts->thread_id))
        return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": a checkpointer needs a thread id",
                            g->name);
    if (opts->ncallbacks < 0 || (opts->ncallbacks && !opts->callbacks))
        return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": bad callbacks", g->name);
    for (int i = 0; opts->checkpointer && i < g->nfields; i++)
        if (!g->fields[i].ops->to_json || !g->fields[i].ops->from_json)
            return sift_err_set(err, SIFT_EINVAL,
                                "graph \"%s\": field \"%s\" cannot be saved in a checkpoint (no "
                                "to_json/from_json)",
                                g->name, g->fields[i].name);
    size_t nn = (size_t)g->nnodes;
    struct run *r = sift_calloc(1, sizeof(*r));
    if (!r)
        goto oom;
    r->stop_before = sift_calloc(nn, 1);
    r->stop_after = sift_calloc(nn, 1);
    r->front = sift_calloc(nn, sizeof(int));
    r->next = sift_calloc(nn, sizeof(int));
    r->picked = sift_calloc(nn + 1, sizeof(char *));
    r->nr = sift_calloc(nn, sizeof(*r->nr));
    r->nnr = r->nr ? (int)nn : 0;
    r->branch = sift_calloc(nn, sizeof(void *));
    r->cbs = opts->ncallbacks ? sift_calloc((size_t)opts->ncallbacks, sizeof(*r->cbs)) : NULL;
    r->thread_id = opts->thread_id ? sift_strdup(opts->thread_id) : NULL;
    if (!r->stop_before || !r->stop_after || !r->front || !r->next || !r->picked || !r->nr ||
        !r->branch || (opts->ncallbacks && !r->cbs) || (opts->thread_id && !r->thread_id))
        goto oom;
    int rc = mark_names(g, opts->interrupt_before, r->stop_before, err);
    if (!rc)
        rc = mark_names(g, opts->interrupt_after, r->stop_after, err);
    if (rc) {
        run_free(r);
        return rc;
    }
    if (opts->ncallbacks)
        memcpy(r->cbs, opts->callbacks, sizeof(*r->cbs) * (size_t)opts->ncallbacks);
    r->ncbs = opts->ncallbacks;
    r->g = g;
    r->ctx = ctx;
    r->state = state;
    r->max_steps = opts->max_steps > 0 ? opts->max_steps : SIFT_GRAPH_DEFAULT_MAX_STEPS;
    r->cp = opts->checkpointer;
    r->done = done;
    r->udata = udata;
    r->step = step;
    r->skip_before = resumed;
    for (int i = 0; i < nfront; i++) {
        int dup = 0;
        for (int j = 0; j < r->nfront; j++)
            dup |= r->front[j] == front[i];
        if (!dup && front[i] >= 0)
            r->front[r->nfront++] = front[i];
    }
    /* A fresh run saves its input as step 0, so a crash in the first step
     * can be resumed too. */
    if (!resumed && (rc = put_checkpoint(r, err))) {
        run_free(r);
        return rc;
    }
    uv_timer_init(sift_ctx_loop(ctx), &r->kick);
    set_state(r, RUN_READY);
    pump(r);
    return 0;
oom:
    if (r)
        run_free(r);
    return sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory starting a run", g->name);
}

int sift_graph_run(const sift_graph *g, sift_ctx *ctx, void *state, const sift_graph_opts *opts,
                   sift_graph_done_fn done, void *udata, sift_err *err)
{
    return start(g, ctx, state, opts, done, udata, err, g->entry, g->nentry, 0, 0);
}

/* Loads the latest checkpoint of a thread: its frontier as node ids (front
 * has room for every node) and, if `state`, its state. */
static int load(const sift_graph *g, sift_checkpointer *cp, const char *thread_id, void *state,
                int *front, int *nfront, int64_t *step, sift_err *err)
{
    if (!cp || !thread_id)
        return sift_err_set(err, SIFT_EINVAL,
                            "graph \"%s\": resuming needs a checkpointer and a thread id", g->name);
    sift_checkpoint c = {0};
    int rc = cp->ops->get_latest(cp, thread_id, &c, err);
    if (rc)
        return rc;
    cJSON *next = cJSON_Parse(c.next);
    cJSON *st = state ? cJSON_Parse(c.state) : NULL;
    if (!next || !cJSON_IsArray(next) || (state && !st)) {
        rc = sift_err_set(err, SIFT_EINVAL,
                          "graph \"%s\": the checkpoint of thread \"%s\" is not valid JSON",
                          g->name, thread_id);
        goto out;
    }
    *step = c.step;
    *nfront = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, next)
    {
        int id = cJSON_IsString(it) ? sift_graph_find(g, it->valuestring) : -1;
        if (id < 0 || *nfront >= g->nnodes) {
            rc = sift_err_set(err, SIFT_EINVAL,
                              "graph \"%s\": the checkpoint of thread \"%s\" names node \"%s\", "
                              "which this graph does not have",
                              g->name, thread_id, cJSON_IsString(it) ? it->valuestring : "?");
            goto out;
        }
        front[(*nfront)++] = id;
    }
    if (state)
        rc = sift_graph_state_from_json(g, st, state, err);
out:
    cJSON_Delete(next);
    cJSON_Delete(st);
    sift_checkpoint_clear(&c);
    return rc;
}

int sift_graph_resume(const sift_graph *g, sift_ctx *ctx, void *state, const sift_graph_opts *opts,
                      sift_graph_done_fn done, void *udata, sift_err *err)
{
    if (!g->compiled)
        return sift_err_set(err, SIFT_ESTATE, "graph \"%s\" is not compiled", g->name);
    if (!opts || !state)
        return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": resuming needs options and a state",
                            g->name);
    int *front = sift_calloc((size_t)g->nnodes + 1, sizeof(int));
    if (!front)
        return sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory resuming", g->name);
    int nfront = 0;
    int64_t step = 0;
    int rc = load(g, opts->checkpointer, opts->thread_id, opts->resume_with_state ? NULL : state,
                  front, &nfront, &step, err);
    if (!rc)
        rc = start(g, ctx, state, opts, done, udata, err, front, nfront, step, 1);
    sift_free(front);
    return rc;
}

int sift_graph_load(const sift_graph *g, sift_checkpointer *cp, const char *thread_id, void *state,
                    sift_err *err)
{
    int *front = sift_calloc((size_t)g->nnodes + 1, sizeof(int));
    if (!front)
        return sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory loading", g->name);
    int nfront = 0;
    int64_t step = 0;
    int rc = load(g, cp, thread_id, state, front, &nfront, &step, err);
    sift_free(front);
    return rc;
}

void sift_checkpoint_clear(sift_checkpoint *c)
{
    sift_free(c->next);
    sift_free(c->state);
    memset(c, 0, sizeof(*c));
}

/* ---- a compiled graph as a node ---- */

static void subgraph_done(const sift_graph_result *res, void *udata)
{
    sift_graph_node_run *nr = udata;
    if (res->status == SIFT_GRAPH_DONE)
        sift_graph_node_done(nr, 0, NULL);
    else
        sift_graph_node_done(nr, res->code ? res->code : SIFT_EINTERNAL, "%s", res->msg);
}

void sift_graph_subgraph_node(sift_graph_node_run *nr, void *state)
{
    const struct run *parent = nr->run;
    const sift_graph *child = parent->g->nodes[nr->node].sub;
    sift_graph_opts opts = {
        .max_steps = parent->max_steps, .callbacks = parent->cbs, .ncallbacks = parent->ncbs};
    sift_err err = {0};
    int rc = sift_graph_run(child, nr->ctx, state, &opts, subgraph_done, nr, &err);
    if (rc)
        sift_graph_node_done(nr, rc, "%s", err.msg);
}
