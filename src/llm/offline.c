/* The offline provider: the rule-based planner (planner.h) behind the model
 * interface, so sift runs with no language model at all. It is not a model:
 * it applies fixed rules to the conversation. Answers are streamed one word
 * per loop iteration (or per token_delay_ms), exactly like a streaming
 * model, so every front end behaves the same with it. */
#include <string.h>

#include "sift/log.h"
#include "sift/planner.h"
#include "sift/provider.h"

enum gen_state { GEN_STREAMING, GEN_CANCELLED, GEN_DONE };

struct offline_model;

struct gen {
    uv_timer_t timer; /* first: the close callback gets the gen back */
    sift_ctx_hook hook;
    struct offline_model *m;
    struct gen *prev, *next;
    enum gen_state state;
    sift_err cause;
    sift_arena *arena;
    sift_planner_step step;
    size_t next_token;
    int calls_announced;
    sift_model_callbacks cb;
    void *udata;
};

struct offline_model {
    sift_model base;
    sift_planner_opts opts;
    uv_loop_t *loop;
    int64_t token_delay_ms;
    struct gen *gens; /* generations in flight */
    int live;         /* generations whose timer has not closed */
    int freed;
};

static void set_state(struct gen *g, enum gen_state s)
{
    g->state = s;
}

static void model_maybe_free(struct offline_model *m)
{
    if (m->freed && m->live == 0)
        sift_free(m);
}

static void on_gen_closed(uv_handle_t *h)
{
    struct gen *g = (struct gen *)h;
    struct offline_model *m = g->m;
    sift_free(g);
    m->live--;
    model_maybe_free(m);
}

static void finish(struct gen *g)
{
    struct offline_model *m = g->m;
    sift_ctx_remove_hook(&g->hook);
    uv_timer_stop(&g->timer);
    if (g->prev)
        g->prev->next = g->next;
    else
        m->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    int cancelled = g->state == GEN_CANCELLED;
    set_state(g, GEN_DONE);
    if (cancelled) {
        g->cb.on_done(g->udata, g->cause.code, NULL, &g->cause);
    } else {
        sift_chat_result r;
        memset(&r, 0, sizeof r);
        r.message.role = SIFT_ROLE_ASSISTANT;
        if (g->step.kind == SIFT_PLAN_TOOL_CALLS) {
            r.message.tool_calls = g->step.calls;
            r.message.n_tool_calls = g->step.n_calls;
            r.finish = SIFT_FINISH_TOOL_CALLS;
            r.finish_text = "tool_calls";
        } else {
            r.message.content = g->step.text;
            r.message.content_len = g->step.text_len;
            r.finish = SIFT_FINISH_STOP;
            r.finish_text = "stop";
        }
        g->cb.on_done(g->udata, 0, &r, NULL);
    }
    uv_close((uv_handle_t *)&g->timer, on_gen_closed);
}

static void on_tick(uv_timer_t *t)
{
    struct gen *g = (struct gen *)t;
    if (g->state == GEN_CANCELLED) {
        finish(g);
        return;
    }
    if (g->step.kind == SIFT_PLAN_TOOL_CALLS) {
        for (size_t i = 0; i < g->step.n_calls && g->state == GEN_STREAMING; i++)
            if (g->cb.on_tool_call_start)
                g->cb.on_tool_call_start(g->udata, i, g->step.calls[i].id, g->step.calls[i].name);
        if (g->state == GEN_STREAMING)
            finish(g);
        return; /* a cancel from a callback re-armed the timer */
    }
    if (g->next_token < g->step.n_tokens) {
        const sift_plan_token *tok = &g->step.tokens[g->next_token++];
        if (g->cb.on_token)
            g->cb.on_token(g->udata, tok->text, tok->len);
        if (g->state != GEN_STREAMING)
            return;
    }
    if (g->next_token >= g->step.n_tokens)
        finish(g);
    else if (g->m->token_delay_ms > 0)
        uv_timer_start(&g->timer, on_tick, (uint64_t)g->m->token_delay_ms, 0);
    else
        uv_timer_start(&g->timer, on_tick, 0, 0);
}

static void cancel_gen(struct gen *g, const sift_err *cause)
{
    if (g->state != GEN_STREAMING)
        return;
    sift_err_copy(&g->cause, cause);
    set_state(g, GEN_CANCELLED);
    /* on_done is never called from inside a cancel: the next iteration says it */
    uv_timer_start(&g->timer, on_tick, 0, 0);
}

static void on_cancel(sift_ctx_hook *h, const sift_err *cause)
{
    cancel_gen((struct gen *)((char *)h - offsetof(struct gen, hook)), cause);
}

static int offline_generate(sift_model *base, sift_ctx *ctx, sift_arena *arena,
                            const sift_chat_request *req, const sift_model_callbacks *cb,
                            void *udata, sift_err *err)
{
    struct offline_model *m = (struct offline_model *)base;
    if (ctx && sift_ctx_err(ctx))
        return sift_err_copy(err, sift_ctx_cause(ctx));
    struct gen *g = sift_calloc(1, sizeof *g);
    if (!g)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    int rc = sift_planner_next(req->messages, req->n_messages, &m->opts, arena, &g->step, err);
    if (rc) {
        sift_free(g);
        return rc;
    }
    g->m = m;
    g->arena = arena;
    g->cb = *cb;
    g->udata = udata;
    set_state(g, GEN_STREAMING);
    if (ctx && sift_ctx_add_hook(ctx, &g->hook, on_cancel)) {
        sift_free(g);
        return sift_err_copy(err, sift_ctx_cause(ctx));
    }
    uv_timer_init(m->loop, &g->timer);
    m->live++;
    g->next = m->gens;
    if (m->gens)
        m->gens->prev = g;
    m->gens = g;
    uv_timer_start(&g->timer, on_tick, 0, 0);
    return 0;
}

static void offline_free(sift_model *base)
{
    struct offline_model *m = (struct offline_model *)base;
    m->freed = 1;
    sift_err cause = {0};
    sift_err_set(&cause, SIFT_ECANCELED, "the model was closed while the answer was pending");
    for (struct gen *g = m->gens; g; g = g->next)
        cancel_gen(g, &cause);
    model_maybe_free(m);
}

static const sift_model_vtable offline_vt = {offline_generate, offline_free};

sift_model *sift_offline_new(uv_loop_t *loop, const sift_offline_opts *opts, sift_err *err)
{
    struct offline_model *m = sift_calloc(1, sizeof *m);
    if (!m) {
        sift_err_set(err, SIFT_ENOMEM, "out of memory");
        return NULL;
    }
    m->base.vt = &offline_vt;
    m->base.provider = "offline";
    m->base.name = SIFT_PLANNER_MODEL;
    m->loop = loop;
    if (opts) {
        m->opts = opts->planner;
        m->token_delay_ms = opts->token_delay_ms > 0 ? opts->token_delay_ms : 0;
    }
    return &m->base;
}
