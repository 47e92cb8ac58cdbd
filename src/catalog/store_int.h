/* What the store backends (store_sqlite.c, store_pg.c) share: the encoding
 * of a product's attributes in their `attrs` column, and how a query's
 * words are read as SKUs. Internal to the catalog; the public interface is
 * include/sift/store.h. */
#ifndef SIFT_STORE_INT_H
#define SIFT_STORE_INT_H
#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/err.h"

/* Writes p's attributes into b (reset first) as the JSON object both stores
 * keep: {"key":"value",...} in p's order, not NUL-terminated. 0 or the
 * buffer's SIFT_ENOMEM. */
int sift_store_attrs_json(sift_buf *b, const sift_product *p);

/* Reads an `attrs` column written by sift_store_attrs_json into out->attrs
 * and out->n_attrs, allocated from `a`; non-string members are skipped.
 * SIFT_EINTERNAL when the text is not a JSON object (a damaged store). */
int sift_store_attrs_parse(sift_arena *a, const char *json, sift_product *out, sift_err *err);

/* The next word of a search query (separated by white space or commas, with
 * trailing sentence punctuation dropped) that is shaped like a SKU, for the
 * stores' exact-SKU pass: sets *w and *len to it and advances *p past it;
 * returns 0 at the end of the query. Words that cannot be SKUs are skipped. */
int sift_store_next_sku_word(const char **p, const char **w, size_t *len);

#endif
