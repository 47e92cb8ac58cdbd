/* Helpers shared by the schema writer, the decoder and the registry. */
#ifndef SIFT_TOOLS_INTERNAL_H
#define SIFT_TOOLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "sift/buf.h"

/* Output to a sift_buf whose first error sticks, so a writer can emit a whole
 * document and check once at the end. */
struct sift__out {
    sift_buf *b;
    int rc;
};

void sift__put(struct sift__out *o, const char *s);
void sift__putn(struct sift__out *o, const char *s, size_t n);
/* A JSON string: quotes added, contents escaped. */
void sift__put_json_str(struct sift__out *o, const char *s, size_t n);
void sift__put_num(struct sift__out *o, double v);

/* Writes v in the shortest form that reads back as the same double ("1",
 * "0.5", "1e+300"); buf must hold 32 bytes. */
const char *sift__fmt_num(double v, char *buf);

/* Iterates the values of an ENUM field's "A,B,C" list, spaces around each value
 * trimmed. Start with *pos = values; returns false after the last one. */
bool sift__enum_next(const char **pos, const char **val, size_t *len);

/* True for a name the model and JSON can use: 1 to 64 of [A-Za-z0-9_-]. */
bool sift__valid_name(const char *name);

#endif
