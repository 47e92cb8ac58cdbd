/* Conversation memory: what a session remembers between turns.
 *
 * A session's conversation grows with every turn, but a model call can carry
 * only so much. sift_memory_trim chooses which messages a call keeps, under a
 * budget of messages and estimated tokens, by dropping the oldest first. The
 * conversation is cut only where doing so leaves a valid chat-completions
 * history: an assistant message that called tools and the tool results that
 * answer it form one unit that is kept or dropped whole, because a provider
 * rejects a tool result whose call is missing and an assistant tool call
 * whose result is missing.
 *
 * sift_memory_to_json / sift_memory_from_json store a conversation as a JSON
 * array of OpenAI chat messages, the form the session stores keep. Loading
 * checks everything it reads, so a corrupted stored session is an error that
 * names the bad field, never a crash or a half-valid conversation.
 *
 * Everything here is pure: no I/O, no globals, no locks. */
#ifndef SIFT_MEMORY_H
#define SIFT_MEMORY_H

#include <stddef.h>

#include "sift/buf.h"
#include "sift/err.h"
#include "sift/model.h"

/* Counts the tokens one message costs in a model call. */
typedef size_t (*sift_token_counter)(void *ud, const sift_message *m);

/* How much history a model call may carry. A zero limit means "no limit", so
 * a zeroed budget keeps everything. */
typedef struct sift_memory_budget {
    size_t max_messages;      /* kept messages, system messages included */
    size_t max_tokens;        /* kept tokens, system messages included */
    sift_token_counter count; /* NULL: sift_memory_estimate_tokens */
    void *count_ud;
} sift_memory_budget;

/* A cheap token estimate for one message: 4 tokens of per-message overhead
 * (role and separators, as chat formats spend them) plus one token per 4
 * bytes, rounded up, of everything the model reads: the content, the
 * tool_call_id, and each tool call's id, name and arguments. Four bytes per
 * token is the usual rule of thumb for English with BPE tokenizers; it
 * undercounts dense scripts somewhat, so leave headroom under the model's real
 * window, or plug in a real tokenizer through sift_memory_budget.count.
 * NULL counts 0. */
size_t sift_memory_estimate_tokens(const sift_message *m);

/* Chooses the messages a model call keeps from msgs[0..n). The kept messages
 * are the leading system messages msgs[0..n_system) followed by
 * msgs[*first_kept..n); everything between is dropped. Rules, in order:
 *   - the leading system messages are always kept (they count against the
 *     budget but are never dropped);
 *   - a cut never separates an assistant message with tool_calls from the
 *     tool results that answer it (a tool result whose call id matches no
 *     earlier assistant message sticks to the message before it);
 *   - the oldest messages go first, as few as the budget needs;
 *   - when a cut falls inside an exchange, it moves forward to the next user
 *     message, so whole turns are dropped and the history starts with a
 *     question rather than with half of an answer;
 *   - the newest user message and everything after it (the turn being
 *     answered, with its tool calls and results) are always kept, even over
 *     budget: without them the model cannot answer at all. A caller that must
 *     enforce a hard limit checks the size of what is kept.
 * With no user message, the cut lands at the first unit boundary that fits.
 * The result depends only on the input, and *first_kept is in [n_system, n].
 * SIFT_EINVAL only for NULL arguments (msgs may be NULL when n is 0). */
int sift_memory_trim(const sift_message *msgs, size_t n, const sift_memory_budget *b,
                     size_t *first_kept);

/* The number of leading system messages (those sift_memory_trim always
 * keeps). */
size_t sift_memory_system_prefix(const sift_message *msgs, size_t n);

/* Trims `c` in place with sift_memory_trim: the dropped messages are removed
 * from the array (their memory stays in the conversation's arena). Returns
 * the number of messages removed in *dropped (may be NULL). */
int sift_memory_trim_conv(sift_conv *c, const sift_memory_budget *b, size_t *dropped);

/* Appends msgs[0..n) to `out` as one JSON array of OpenAI chat messages
 * ({"role":"assistant","content":null,"tool_calls":[{"id":..,"type":
 * "function","function":{"name":..,"arguments":".."}}]} and so on). Invalid
 * UTF-8 is replaced by U+FFFD. SIFT_EINVAL naming a message that does not fit
 * its role, SIFT_ETOOBIG past out's limit, SIFT_ENOMEM; on failure `out` is
 * restored to its previous length. */
int sift_memory_to_json(const sift_message *msgs, size_t n, sift_buf *out, sift_err *err);

/* Parses a JSON array written by sift_memory_to_json (or any OpenAI messages
 * array of the same shape) and appends its messages to `c` (initialised by
 * the caller; copies go to its arena). Checks every field: roles, content
 * types, tool calls (id, function.name, function.arguments strings) and that
 * each tool result answers a tool call of an earlier assistant message.
 * SIFT_EPROTO with the path of the first bad field ("messages[3].tool_calls[0]
 * .function.name: expected a string"), SIFT_ENOMEM; on failure `c` is left as
 * it was. Inherited from cJSON: a string containing \u0000 is cut there. */
int sift_memory_from_json(const char *json, size_t len, sift_conv *c, sift_err *err);

#endif
