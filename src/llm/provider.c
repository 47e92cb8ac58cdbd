/* The provider-neutral entry points of the chat-model interface: argument
 * checks shared by every provider, then dispatch through the vtable. */
#include "sift/provider.h"

#include <stddef.h>

int sift_model_generate(sift_model *m, sift_ctx *ctx, sift_arena *arena,
                        const sift_chat_request *req, const sift_model_callbacks *cb, void *udata,
                        sift_err *err)
{
    if (!m || !m->vt || !m->vt->generate)
        return sift_err_set(err, SIFT_EINVAL, "model generate: no model");
    if (!arena)
        return sift_err_set(err, SIFT_EINVAL, "model generate: no arena for the result");
    if (!req)
        return sift_err_set(err, SIFT_EINVAL, "model generate: no request");
    if (!cb || !cb->on_done)
        return sift_err_set(err, SIFT_EINVAL, "model generate: on_done callback is required");
    if (ctx && sift_ctx_err(ctx)) {
        const sift_err *cause = sift_ctx_cause(ctx);
        return sift_err_set(err, cause->code, "model generate: %s", cause->msg);
    }
    return m->vt->generate(m, ctx, arena, req, cb, udata, err);
}

const char *sift_model_provider(const sift_model *m)
{
    return m ? m->provider : NULL;
}

const char *sift_model_name(const sift_model *m)
{
    return m ? m->name : NULL;
}

void sift_model_free(sift_model *m)
{
    if (m && m->vt && m->vt->free)
        m->vt->free(m);
}
