/* The fast path of the stream assembler (stream.c): most chunks of an
 * OpenAI-compatible stream carry one piece of answer text and nothing else.
 * Building and freeing a cJSON tree for each of them was half of sift's CPU
 * per run in the seed benchmark (bench/README.md); this scanner reads such a
 * chunk in one pass without allocating. Anything it is not sure about goes
 * to the cJSON path, so the two must agree on every chunk the scanner
 * accepts (tests/fuzz/fuzz_fastchunk.c checks that against cJSON). */
#ifndef SIFT_LLM_FASTCHUNK_H
#define SIFT_LLM_FASTCHUNK_H

#include <stddef.h>

/* Returns 1 when `data` is exactly one valid JSON object (RFC 8259,
 * surrounding whitespace allowed) of this shape, with each of the named keys
 * at most once at its level and never spelt with escapes:
 *   "error" and "usage": absent or null;
 *   "choices": an array of exactly one object in which "index" is absent or
 *   0, "finish_reason" absent or null, and "delta" absent, null or an object
 *   whose "tool_calls" is absent or null and whose "content" is absent, null
 *   or a string with no backslash;
 *   any other members: any valid JSON.
 * Then *content points at the content's bytes inside `data` (NULL when
 * absent or null) and *len is their length. Returns 0 otherwise (the caller
 * then parses the chunk with cJSON); nothing is allocated either way. */
int sift_fastchunk_content(const char *data, size_t len, const char **content, size_t *clen);

/* What sift_fastchunk_read found: text (content, as above) or one more
 * fragment of a tool call's arguments (has_args), and the finish reason when
 * the chunk has one. */
typedef struct sift_fastchunk {
    const char *content; /* NULL: absent or null */
    size_t content_len;
    int has_args;
    long args_index;  /* the call's "index" */
    const char *args; /* the arguments string's raw bytes inside the chunk, escapes as sent */
    size_t args_len;
    const char *finish; /* "finish_reason"'s bytes (no escapes), or NULL: absent or null */
    size_t finish_len;
    const char *call_id; /* with has_args: the call's "id" (no escapes), or NULL */
    size_t call_id_len;
    const char *call_name; /* with has_args: its "function"."name" (no escapes), or NULL */
    size_t call_name_len;
    int n_choices; /* 1, or 0 for "choices": [] */
    int has_usage; /* "usage" is an object: its counts follow (absent or null: 0) */
    long usage[3]; /* prompt_tokens, completion_tokens, total_tokens */
} sift_fastchunk;

/* sift_fastchunk_content's shape, except that "finish_reason" may also be a
 * string without escapes (out->finish), "choices" may be [] (n_choices 0),
 * and "usage" may be an object whose "prompt_tokens", "completion_tokens"
 * and "total_tokens" are each absent, null or a non-negative integer of at
 * most 9 digits (has_usage, usage[]); and also this one: "delta" without
 * content (absent or null) whose "tool_calls" is an array of exactly one
 * object with "index" a non-negative integer of at most 9 digits, "id"
 * absent, null or a string without escapes, and "function" an object whose
 * "name" is absent, null or a string without escapes and whose "arguments"
 * is a string without a \u escape (other escapes are fine: decode them with
 * sift_fastchunk_unescape). Returns 1 and fills *out, or 0. Whether the id
 * and name start a call or repeat those of a started one is for the caller
 * to check. */
int sift_fastchunk_read(const char *data, size_t len, sift_fastchunk *out);

/* Decodes the escapes sift_fastchunk_read lets through (\" \\ \/ \b \f \n
 * \r \t) from raw[0..n) into out (room for n bytes); returns the length. */
size_t sift_fastchunk_unescape(const char *raw, size_t n, char *out);

#endif
