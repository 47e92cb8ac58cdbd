/* The offline planner: a deterministic, rule-based stand-in for the chat
 * model, so sift runs with no LLM service at all.
 *
 * It is NOT a language model. It understands a shopper's message with the
 * fixed rules of query.h (brand, product type, size, colour, gender, price
 * bounds, stock intent, warehouses), asks for the tool calls a good model
 * would make, and writes the final answer from a template filled with the
 * tool results. It cannot chat, reason about anything else, or follow
 * instructions; docs/offline-planner.md lists what it does and its limits.
 *
 * sift_planner_next is a pure function of the conversation: the same
 * messages give byte-identical output (tool call ids included), and it keeps
 * no state between calls. The conversation itself is the state:
 *
 *   1. last message from the user  -> one call: search_products
 *   2. search results arrived      -> check_inventory for the best SKU at each
 *                                     warehouse asked about (all warehouses
 *                                     when the shopper asked about stock but
 *                                     named none) plus get_price, all in ONE
 *                                     assistant message (they run in
 *                                     parallel); get_price alone when stock
 *                                     was not asked about. No products, or a
 *                                     search error, goes straight to 3.
 *   3. inventory and price results -> the final answer, as text and as
 *                                     word tokens for streaming.
 *
 * A later user message starts again at 1; constraints it does not restate
 * are carried over from the earlier turns ("what about size 43?").
 *
 * Tool arguments written (all JSON objects):
 *   search_products  {"query":"nike running shoes","filters":{...},"k":5}
 *                    filters as sift_query_filters_json writes them
 *   check_inventory  {"sku":"NIKE-PEG40-42","location":"HAN"}
 *                    ("location" left out: every warehouse)
 *   get_price        {"sku":"NIKE-PEG40-42","currency":"VND"}
 *
 * Tool results read (the content of the tool messages):
 *   search_products  {"products":[{"sku":"NIKE-PEG40-42","title":"...",
 *                     "brand":"Nike","category":"Footwear > Running > Road",
 *                     "attributes":{"size":"42","colour":"black",...}}],
 *                     "total":12}
 *   check_inventory  {"sku":"NIKE-PEG40-42","warehouses":[{"code":"HAN",
 *                     "quantity":12}]}   (one entry per warehouse reported;
 *                     {"sku":..,"location":"HAN","stock":12} is accepted too)
 *   get_price        {"sku":"NIKE-PEG40-42","currency":"VND","amount":3290000}
 *                     (amount in major units: 129.99 for USD)
 *   any tool         {"error":"message"} or {"error":{"message":"..."}}
 *                     for a failure; the answer says so. */
#ifndef SIFT_PLANNER_H
#define SIFT_PLANNER_H

#include <stddef.h>

#include "sift/arena.h"
#include "sift/err.h"
#include "sift/model.h"
#include "sift/query.h"

/* The model name the offline provider reports. It says what it is: rules,
 * not a language model. */
#define SIFT_PLANNER_MODEL "sift-offline-rules"

/* Tool names the planner calls. */
#define SIFT_TOOL_SEARCH_PRODUCTS "search_products"
#define SIFT_TOOL_CHECK_INVENTORY "check_inventory"
#define SIFT_TOOL_GET_PRICE "get_price"

typedef struct sift_planner_opts {
    const sift_query_vocab *vocab; /* extra vocabulary; NULL: built-in only */
    const char *currency;          /* get_price currency when none was stated; NULL: "VND" */
    int k;                         /* products asked of search_products; 0: 5 */
} sift_planner_opts;

typedef enum sift_plan_kind {
    SIFT_PLAN_TOOL_CALLS = 1, /* an assistant message with tool calls, no content */
    SIFT_PLAN_ANSWER,         /* an assistant message with content: the final answer */
} sift_plan_kind;

/* One piece of the answer for streaming: a word with the spaces after it.
 * The pieces in order concatenate to exactly the answer text. */
typedef struct sift_plan_token {
    const char *text; /* points into sift_planner_step.text; not NUL-terminated */
    size_t len;
} sift_plan_token;

/* The next assistant turn. Everything lives in the arena passed to
 * sift_planner_next. */
typedef struct sift_planner_step {
    sift_plan_kind kind;
    sift_tool_call *calls; /* SIFT_PLAN_TOOL_CALLS: ids "call_1", "call_2", ... */
    size_t n_calls;
    const char *text; /* SIFT_PLAN_ANSWER: the answer, NUL-terminated */
    size_t text_len;
    sift_plan_token *tokens; /* SIFT_PLAN_ANSWER */
    size_t n_tokens;
    sift_query query; /* what was understood (after merging earlier turns) */
} sift_planner_step;

/* Decides the next assistant turn for the conversation msgs[0..n). `opts`
 * may be NULL. Tool call ids continue the numbering of the calls already in
 * the conversation, so they are unique within it.
 * Errors: SIFT_EINVAL when there is no user message; SIFT_ESTATE when there
 * is nothing to decide (the last turn is already an answer, or a tool call
 * still has no result); SIFT_ENOMEM. The message says which. */
int sift_planner_next(const sift_message *msgs, size_t n, const sift_planner_opts *opts,
                      sift_arena *a, sift_planner_step *out, sift_err *err);

/* Splits `text` into streaming tokens (a word and the whitespace after it;
 * leading whitespace goes with the first word). Sets *tokens (in `a`) and
 * *n; empty text gives no tokens. SIFT_ENOMEM. */
int sift_planner_tokenize(const char *text, size_t len, sift_arena *a, sift_plan_token **tokens,
                          size_t *n);

#endif
