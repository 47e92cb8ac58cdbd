/* The tool registry (tools by name) and the life of one tool job (one
 * execution of a tool). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/log.h"
#include "sift/tool.h"
#include "tools/internal.h"

/* ---- registry ---- */

struct sift_tool_registry {
    const sift_tool **tools;
    size_t n, cap;
    /* The "tools" array, rebuilt on every add so a request never pays for
     * schema generation. */
    char *json;
    size_t json_len;
};

sift_tool_registry *sift_tool_registry_new(void)
{
    sift_tool_registry *r = sift_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->json = sift_strdup("[]");
    if (r->json == NULL) {
        sift_free(r);
        return NULL;
    }
    r->json_len = 2;
    return r;
}

void sift_tool_registry_free(sift_tool_registry *r)
{
    if (r == NULL)
        return;
    sift_free(r->tools);
    sift_free(r->json);
    sift_free(r);
}

const sift_tool *sift_tool_registry_find(const sift_tool_registry *r, const char *name)
{
    /* A handful of tools: a scan beats a hash table on every count that matters. */
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->tools[i]->name, name) == 0)
            return r->tools[i];
    }
    return NULL;
}

static int check_tool(const sift_tool_registry *r, const sift_tool *t, sift_err *err)
{
    if (t == NULL)
        return sift_err_set(err, SIFT_EINVAL, "no tool given");
    if (!sift__valid_name(t->name))
        return sift_err_set(err, SIFT_EINVAL,
                            "tool name \"%s\": a name is 1 to 64 of A-Z a-z 0-9 _ -",
                            t->name ? t->name : "(null)");
    if (t->fn == NULL)
        return sift_err_set(err, SIFT_EINVAL, "tool %s: no function", t->name);
    if (t->args == NULL)
        return sift_err_set(err, SIFT_EINVAL, "tool %s: no argument schema", t->name);
    if (sift_tool_registry_find(r, t->name))
        return sift_err_set(err, SIFT_EINVAL, "tool %s: a tool of that name is already registered",
                            t->name);
    sift_err e = {0};
    if (sift_schema_check(t->args, &e) < 0)
        return sift_err_set(err, e.code, "tool %s: %s", t->name, e.msg);
    return 0;
}

int sift_tool_registry_add(sift_tool_registry *r, const sift_tool *tool, sift_err *err)
{
    int rc = check_tool(r, tool, err);
    if (rc < 0)
        return rc;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        const sift_tool **tools = sift_realloc(r->tools, cap * sizeof(const sift_tool *));
        if (tools == NULL)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory registering tool %s", tool->name);
        r->tools = tools;
        r->cap = cap;
    }

    sift_buf b;
    sift_buf_init(&b, 0);
    rc = sift_buf_putc(&b, '[');
    for (size_t i = 0; i <= r->n && rc == 0; i++) {
        const sift_tool *t = i < r->n ? r->tools[i] : tool;
        if (i > 0)
            rc = sift_buf_putc(&b, ',');
        if (rc == 0)
            rc = sift_tool_json(t, &b);
    }
    if (rc == 0)
        rc = sift_buf_putc(&b, ']');
    size_t len = 0;
    char *json = rc == 0 ? sift_buf_detach(&b, &len) : NULL;
    sift_buf_free(&b);
    if (json == NULL)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory registering tool %s", tool->name);

    sift_free(r->json);
    r->json = json;
    r->json_len = len;
    r->tools[r->n++] = tool;
    return 0;
}

size_t sift_tool_registry_count(const sift_tool_registry *r)
{
    return r->n;
}

const sift_tool *sift_tool_registry_at(const sift_tool_registry *r, size_t i)
{
    return i < r->n ? r->tools[i] : NULL;
}

const char *sift_tool_registry_json(const sift_tool_registry *r, size_t *len)
{
    if (len)
        *len = r->json_len;
    return r->json;
}

/* ---- one job ---- */

static const char *state_name(enum sift_tool_job_state s)
{
    switch (s) {
    case SIFT_TOOL_JOB_NEW:
        return "new";
    case SIFT_TOOL_JOB_RUNNING:
        return "running";
    case SIFT_TOOL_JOB_DONE:
        return "done";
    }
    return "?";
}

/* The one place a job changes state. A job in the wrong state means the
 * tool broke its contract (reported twice, or never started): carrying on
 * would hand the model a result twice, so stop here, loudly. */
static void set_state(sift_tool_job *job, enum sift_tool_job_state from,
                      enum sift_tool_job_state to)
{
    if (job->state != from) {
        sift_log(SIFT_LOG_ERROR, job->ctx ? sift_ctx_run_id(job->ctx) : NULL, NULL,
                 "tool %s: job is %s, expected %s (a tool must report exactly once)",
                 job->tool && job->tool->name ? job->tool->name : "?", state_name(job->state),
                 state_name(from));
        abort();
    }
    job->state = to;
}

void sift_tool_job_init(sift_tool_job *job, const sift_tool *tool, sift_ctx *ctx, sift_arena *arena,
                        void *app, sift_tool_job_done_fn done, void *done_data)
{
    memset(job, 0, sizeof *job);
    job->tool = tool;
    job->ctx = ctx;
    job->arena = arena;
    job->app = app;
    job->done = done;
    job->done_data = done_data;
    job->state = SIFT_TOOL_JOB_NEW;
}

/* `result` is already in the arena (or static). Fires done last. */
static void finish(sift_tool_job *job, int code, const char *result)
{
    set_state(job, SIFT_TOOL_JOB_RUNNING, SIFT_TOOL_JOB_DONE);
    job->code = code;
    job->result = result;
    if (job->done)
        job->done(job, job->done_data);
}

void sift_tool_job_done(sift_tool_job *job, int code, const char *result)
{
    const char *copy = NULL;
    if (result != NULL) {
        copy = sift_arena_strdup(job->arena, result);
        if (copy == NULL) {
            code = SIFT_ENOMEM;
            copy = "out of memory storing the tool result";
        }
    }
    finish(job, code, copy);
}

void sift_tool_job_fail(sift_tool_job *job, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = sift_arena_vsprintf(job->arena, fmt, ap);
    va_end(ap);
    if (msg == NULL) {
        code = SIFT_ENOMEM;
        msg = "out of memory formatting the tool error";
    }
    finish(job, code, msg);
}

void sift_tool_job_start(sift_tool_job *job, const char *arguments, size_t len)
{
    set_state(job, SIFT_TOOL_JOB_NEW, SIFT_TOOL_JOB_RUNNING);
    if (job->ctx && sift_ctx_err(job->ctx) < 0) {
        const sift_err *cause = sift_ctx_cause(job->ctx);
        sift_tool_job_done(job, cause->code, cause->msg[0] ? cause->msg : NULL);
        return;
    }
    sift_err err = {0};
    const void *args = NULL;
    int rc = sift_args_decode(job->tool->args, arguments, len, job->arena, &args, &err);
    if (rc < 0) {
        sift_tool_job_done(job, rc, err.msg);
        return;
    }
    job->tool->fn(job, args);
}
