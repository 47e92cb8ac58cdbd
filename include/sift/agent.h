/* The ReAct agent: a model that reasons and calls tools, in a loop, until it
 * answers.
 *
 * It is one graph (graph.h):
 *
 *     START -> model --(tool calls)--> tools -> model -> ... --(answer)--> END
 *
 * The model node asks the chat model (provider.h) for the next assistant
 * turn, streaming its tokens out as events; the tools node runs every tool
 * call of that turn concurrently (toolsnode.h) and appends the results. The
 * run stops:
 *  - on a final answer (an assistant turn without tool calls);
 *  - after max_steps model turns ("max steps (8) reached without an answer");
 *  - at the whole-run deadline: every model request and tool call in flight
 *    is cancelled at once and the run ends with SIFT_ETIMEDOUT, reported as
 *    an `error` event with code deadline_exceeded;
 *  - on a loop: when the model repeats the same tool with the same arguments
 *    loop_limit times, that call is not run again; its result is a nudge
 *    ("you already called ... with these arguments N times: use the result
 *    you have or answer"); the next repetition stops the run.
 * A run belongs to the loop of its parent context. */
#ifndef SIFT_AGENT_H
#define SIFT_AGENT_H

#include <stdint.h>

#include "sift/ctx.h"
#include "sift/events.h"
#include "sift/model.h"
#include "sift/provider.h"
#include "sift/tool.h"
#include "sift/toolsnode.h"

/* The system prompt sift's shop assistant runs with. */
#define SIFT_AGENT_SHOP_PROMPT                                                                     \
    "You are sift, a shop assistant. Find products with search_products, check stock per "         \
    "warehouse with check_inventory (HAN Hanoi, DAD Da Nang, SGN Ho Chi Minh City) and prices "    \
    "with get_price; call tools in parallel when they are independent. Answer briefly, name "      \
    "each product with its SKU, and never invent stock or prices: only report what the tools "     \
    "returned."

typedef struct sift_agent_opts {
    sift_model *model;               /* required */
    const sift_tool_registry *tools; /* NULL: no tools */
    const char *model_name;          /* NULL: the model's default */
    int max_steps;                   /* model turns; <= 0: 8 */
    int64_t deadline_ms;             /* whole run; 0: 30000; < 0: none */
    int loop_limit;                  /* identical calls before the nudge; <= 0: 3 */
    sift_tools_opts tools_opts;      /* limit, per-tool timeout, policy, app */
    const char *run_id;              /* shown in events and logs (copied) */
    const char *session_id;          /* shown in run.started; may be NULL */
    /* Receives every run event (events.h) in order, on the loop. */
    void (*on_event)(void *udata, const sift_event *ev);
    void *udata;
} sift_agent_opts;

/* The outcome of a run, valid during the done callback. */
typedef struct sift_agent_result {
    int code;            /* 0: answered; else why it stopped */
    const char *message; /* why, when code != 0 */
    const char *answer;  /* the final answer (NULL when none) */
    int steps;           /* model turns taken */
    sift_usage usage;    /* summed over the model turns */
    sift_run_timings timings;
} sift_agent_result;

typedef void (*sift_agent_done_fn)(void *udata, const sift_agent_result *res);

typedef struct sift_agent_run sift_agent_run;

/* Starts a run on the conversation `conv` (system prompt, history and the
 * new user message already appended; the assistant and tool messages of the
 * run are appended to it, in its arena, which must outlive done). Returns 0
 * and done fires exactly once, later, from the loop; or a negative code
 * (bad options, parent already done, no memory) and nothing fires. */
int sift_agent_start(sift_ctx *parent, sift_conv *conv, const sift_agent_opts *opts,
                     sift_agent_done_fn done, void *udata, sift_err *err);

#endif
