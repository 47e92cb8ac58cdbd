/* Helpers shared by the chat wire-format parsers (message.c, stream.c).
 * Internal to src/llm. */
#ifndef SIFT_LLM_WIRE_H
#define SIFT_LLM_WIRE_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* Parses exactly one JSON document from `len` bytes (surrounding whitespace
 * allowed). Returns NULL when it is not valid JSON, with *err_at set to the
 * byte offset where parsing stopped (for "invalid JSON at byte N"). */
cJSON *sift_wire_parse(const char *s, size_t len, size_t *err_at);

/* A cJSON number that is a whole count in [0, 2^53]; 0 or -1 when not. */
int sift_wire_count(const cJSON *n, long long *out);

/* Parses a usage object into *out; on error the message starts with `where`
 * ("chat response: ", "stream chunk 9: "). SIFT_EPROTO. */
struct sift_usage;
struct sift_err;
int sift_wire_usage(const cJSON *u, struct sift_usage *out, const char *where,
                    struct sift_err *err);

#endif
