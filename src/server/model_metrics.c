/* A chat model that measures every request to the model it wraps, for
 * /metrics: sift_llm_request_seconds (generate to done, by outcome) and
 * sift_llm_first_token_seconds (generate to the first token or tool call the
 * model streams back). The per-run figures (sift_model_seconds,
 * sift_llm_ttft_seconds) sum or span several requests and the tool steps
 * between them; these are one model call each.
 *
 * It keeps the provider contract (provider.h) by forwarding it: on_done
 * fires exactly once per accepted generation because the inner model's does.
 * Freeing it frees the inner model, whose pending generations then end with
 * SIFT_ECANCELED through this wrapper, so the wrapper itself is released
 * after the last of them (deferred free, as the providers do). */
#include <uv.h>

#include "sift/metrics.h"
#include "sift/provider.h"
#include "api_int.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

struct measured {
    sift_model base; /* what callers hold */
    sift_model *inner;
    sift_metric *req_s, *first_s;
    size_t inflight; /* generations accepted, on_done not yet forwarded */
    int freed;       /* sift_model_free was called; free when inflight is 0 */
};

struct mcall {
    struct measured *m;
    sift_model_callbacks cb; /* the caller's, copied */
    void *udata;
    uint64_t t0; /* uv_hrtime() at generate */
    int first_seen;
};

static void first_output(struct mcall *c)
{
    if (c->first_seen)
        return;
    c->first_seen = 1;
    sift_metric_observe(c->m->first_s, NULL, (double)(uv_hrtime() - c->t0) / 1e9);
}

static void on_token(void *ud, const char *text, size_t len)
{
    struct mcall *c = ud;
    first_output(c);
    if (c->cb.on_token)
        c->cb.on_token(c->udata, text, len);
}

static void on_tool_call_start(void *ud, size_t index, const char *id, const char *name)
{
    struct mcall *c = ud;
    first_output(c);
    if (c->cb.on_tool_call_start)
        c->cb.on_tool_call_start(c->udata, index, id, name);
}

static const char *outcome(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case SIFT_ECANCELED:
    case SIFT_EFAILED:
        return "cancelled";
    case SIFT_ETIMEDOUT:
        return "deadline_exceeded";
    default:
        return "error";
    }
}

static void on_done(void *ud, int code, const sift_chat_result *result, const sift_err *err)
{
    struct mcall *c = ud;
    struct measured *m = c->m;
    sift_metric_observe(m->req_s, outcome(code), (double)(uv_hrtime() - c->t0) / 1e9);
    sift_model_callbacks cb = c->cb;
    void *udata = c->udata;
    sift_free(c);
    /* decided before the caller's on_done, which may free the model itself
     * (then this call was the last and the free below must not happen) */
    int free_now = --m->inflight == 0 && m->freed;
    cb.on_done(udata, code, result, err);
    if (free_now)
        sift_free(m);
}

static const sift_model_callbacks wrapped = {
    .on_token = on_token, .on_tool_call_start = on_tool_call_start, .on_done = on_done};

static int measured_generate(sift_model *base, sift_ctx *ctx, sift_arena *arena,
                             const sift_chat_request *req, const sift_model_callbacks *cb,
                             void *udata, sift_err *err)
{
    struct measured *m = container_of(base, struct measured, base);
    struct mcall *c = sift_calloc(1, sizeof *c);
    if (!c)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    c->m = m;
    c->cb = *cb;
    c->udata = udata;
    c->t0 = uv_hrtime();
    m->inflight++;
    int rc = sift_model_generate(m->inner, ctx, arena, req, &wrapped, c, err);
    if (rc) {
        m->inflight--;
        sift_free(c);
    }
    return rc;
}

static void measured_free(sift_model *base)
{
    struct measured *m = container_of(base, struct measured, base);
    m->freed = 1;
    sift_model_free(m->inner);
    m->inner = NULL;
    if (m->inflight == 0)
        sift_free(m);
}

static const sift_model_vtable measured_vt = {.generate = measured_generate, .free = measured_free};

sift_model *sift_api_model_measured(sift_model *inner, sift_metric *req_s, sift_metric *first_s)
{
    struct measured *m = sift_calloc(1, sizeof *m);
    if (!m) {
        sift_model_free(inner);
        return NULL;
    }
    m->base.vt = &measured_vt;
    m->base.provider = inner->provider;
    m->base.name = inner->name;
    m->inner = inner;
    m->req_s = req_s;
    m->first_s = first_s;
    return &m->base;
}
