/* Catalog: products, their atomic chunks, and the JSON Lines loader.
 *
 * A product is one SKU. Each size/colour variant is its own SKU and points to
 * the model it belongs to through parent_id. One product becomes exactly one
 * indexed document, its chunk: the chunk is never split, always carries the
 * SKU and every attribute, and never contains stock or price (those change by
 * the second and are read live from the store by the shop tools).
 *
 * The JSON Lines formats (products, inventory, prices), their limits and the
 * versioning rules are documented in docs/catalog.md. */
#ifndef SIFT_CATALOG_H
#define SIFT_CATALOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"

/* Input limits, in bytes of UTF-8 (docs/catalog.md lists them too). A field
 * over its limit makes the line bad; it is reported, never silently cut. */
#define SIFT_SKU_MAX 64             /* sku and parent_id */
#define SIFT_TITLE_MAX 512          /* title */
#define SIFT_BRAND_MAX 128          /* brand */
#define SIFT_CATEGORY_PART_MAX 128  /* one level of the category path */
#define SIFT_CATEGORY_DEPTH_MAX 8   /* levels of the category path */
#define SIFT_DESCRIPTION_MAX 16384  /* description as stored */
#define SIFT_ATTR_KEY_MAX 64        /* attribute name */
#define SIFT_ATTR_VALUE_MAX 256     /* attribute value */
#define SIFT_ATTRS_MAX 32           /* attributes per product */
#define SIFT_WAREHOUSE_MAX 16       /* warehouse code */
#define SIFT_CATALOG_LINE_MAX 65536 /* one JSON line */

/* The description is truncated to this many bytes in a chunk (at a UTF-8
 * character boundary, with "…" appended), so a chunk stays one document of
 * bounded size; the full description stays in the store. */
#define SIFT_CHUNK_DESCRIPTION_MAX 1024

/* Largest version accepted: versions travel as JSON numbers (doubles), which
 * hold integers exactly up to 2^53. */
#define SIFT_VERSION_MAX ((int64_t)1 << 53)

typedef struct sift_attr {
    const char *key;   /* [a-z0-9_], 1..SIFT_ATTR_KEY_MAX bytes */
    const char *value; /* UTF-8, 0..SIFT_ATTR_VALUE_MAX bytes */
} sift_attr;

/* One SKU. Strings are NUL-terminated UTF-8 and owned by whoever filled the
 * struct (an arena for parsed and loaded products). Optional strings are ""
 * when absent, never NULL. */
typedef struct sift_product {
    const char *sku;         /* required; printable ASCII, no spaces */
    const char *parent_id;   /* "" when the product has no variants */
    const char *title;       /* required, non-empty */
    const char *brand;       /* "" when unknown */
    const char *category;    /* path joined with " > ": "Footwear > Running" */
    const char *description; /* full description, up to SIFT_DESCRIPTION_MAX */
    sift_attr *attrs;        /* in input order */
    size_t n_attrs;
    int64_t version; /* 0..SIFT_VERSION_MAX; newer versions win */
} sift_product;

/* A product line asks for an upsert ("op":"upsert", the default) or for a
 * versioned delete ("op":"delete", only sku and version are read). */
enum sift_catalog_op {
    SIFT_OP_UPSERT = 0,
    SIFT_OP_DELETE = 1,
};

/* Stock of one SKU in one warehouse. */
typedef struct sift_stock {
    const char *sku;
    const char *warehouse; /* [A-Z0-9_], 1..SIFT_WAREHOUSE_MAX: "HAN", "DAD", "SGN" */
    int64_t quantity;      /* 0..2^31-1 */
    int64_t version;
    int64_t updated_at; /* unix seconds; 0 on input means "now" */
} sift_stock;

/* One price of one SKU in one currency, valid from a point in time. Amounts
 * are integers in the currency's minor unit (cents for USD, dong for VND) so
 * no money is ever a binary float; sift_currency_exponent gives the scale. */
typedef struct sift_price {
    const char *sku;
    const char *currency; /* ISO 4217, three upper-case letters */
    int64_t amount_minor; /* 13999 = 139.99 USD; 3250000 = 3,250,000 VND */
    int64_t valid_from;   /* unix seconds; 0 = always */
    int64_t version;
} sift_price;

/* Digits after the decimal point in `currency`'s minor unit: 0 for VND, JPY,
 * KRW and the other zero-decimal currencies, 3 for BHD, KWD, OMR, JOD, TND,
 * 2 for the rest. */
int sift_currency_exponent(const char *currency);

/* Appends `minor` (an amount in `currency`'s minor unit) to b as a JSON number
 * in major units with exactly the currency's decimals: 12999 USD -> 129.99,
 * 3250000 VND -> 3250000. No float is involved. 0 or SIFT_ENOMEM. */
int sift_amount_json(sift_buf *b, int64_t minor, const char *currency);

/* Parsing. Each parser reads one JSON line (no newline needed; `len` bytes,
 * need not be NUL-terminated) into `out`, allocating strings from `a`. On a bad
 * line it returns SIFT_EINVAL or SIFT_ETOOBIG with a message naming the field
 * and the problem, without a line number (the loader adds "line N: "):
 *   "sku: missing", "attributes.size: must be a string",
 *   "title: longer than 512 bytes", "invalid JSON at byte 41" (1-based).
 * `default_version` is used when the line has no "version". SIFT_ENOMEM when
 * the arena is exhausted. */
int sift_product_parse(sift_arena *a, const char *line, size_t len, int64_t default_version,
                       sift_product *out, int *op, sift_err *err);
int sift_stock_parse(sift_arena *a, const char *line, size_t len, int64_t default_version,
                     sift_stock *out, sift_err *err);
int sift_price_parse(sift_arena *a, const char *line, size_t len, int64_t default_version,
                     sift_price *out, sift_err *err);

struct cJSON;

/* Checks that no two members of the JSON object `obj` have the same name
 * (cJSON keeps every member, and lookups find the first: a line
 * {"sku":"A",...,"sku":"B"} would silently be stored under A). Returns 0, or
 * SIFT_EINVAL with `duplicate member "NAME"` (`"PREFIX.NAME"` when `prefix` is
 * not NULL), or SIFT_ENOMEM. Objects nested in `obj` are not looked at. The
 * line parsers above call it on the line's object. */
int sift_catalog_check_members(const struct cJSON *obj, const char *prefix, sift_err *err);

/* Checks a SKU string: 1..SIFT_SKU_MAX bytes of printable ASCII (0x21..0x7e)
 * other than '"' and '\\'. Returns 0 or SIFT_EINVAL with a message. */
int sift_sku_check(const char *sku, size_t len, sift_err *err);

/* The atomic chunk of a product: what the full-text index and the embedder
 * see. Field pointers are valid until the next sift_chunk_build on the same
 * chunk or sift_chunk_free; sku, title, brand and category point into the
 * product, attrs, description and text into the chunk's own buffer.
 *
 * text is the one document:
 *   NIKE-PEG40-42
 *   Nike Pegasus 40 Men's Running Shoe - Black
 *   brand: Nike
 *   category: Footwear > Running > Road
 *   size: 42; colour: black; material: engineered mesh; gender: men
 *   Cushioned daily trainer ... (at most SIFT_CHUNK_DESCRIPTION_MAX bytes)
 * Lines for absent fields are left out. It holds no stock and no price. */
typedef struct sift_chunk {
    const char *sku;
    size_t sku_len;
    const char *title;
    size_t title_len;
    const char *brand;
    size_t brand_len;
    const char *category;
    size_t category_len;
    const char *attrs; /* "size: 42; colour: black; ..." */
    size_t attrs_len;
    const char *description; /* truncated copy */
    size_t description_len;
    const char *text; /* the whole chunk, NUL-terminated */
    size_t text_len;
    int truncated; /* 1 when the description was cut */
    sift_buf buf;  /* owns attrs, description and text; reused between builds */
} sift_chunk;

/* An empty chunk; allocates nothing. */
void sift_chunk_init(sift_chunk *c);

/* Builds the chunk of `p` into `c`, reusing c's memory. SIFT_ENOMEM when out
 * of memory. */
int sift_chunk_build(sift_chunk *c, const sift_product *p, sift_err *err);

/* Releases the chunk's memory. */
void sift_chunk_free(sift_chunk *c);

/* Length of the longest prefix of s[0..len) that is at most `max` bytes and
 * does not end inside a UTF-8 character. */
size_t sift_utf8_truncate(const char *s, size_t len, size_t max);

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, nothing
 * above U+10FFFF), 0 otherwise. */
int sift_utf8_valid(const char *s, size_t len);

/* The JSON Lines reader: a pure line splitter. Feed it bytes in pieces of any
 * size; it calls on_line once per line (without the "\n" or a trailing "\r")
 * with the 1-based line number. A line longer than SIFT_CATALOG_LINE_MAX is
 * reported once through on_line with line == NULL and its remainder skipped,
 * so memory stays bounded whatever the input. Any split of the input gives
 * the same calls. */
typedef int (*sift_jsonl_line_fn)(void *ud, size_t lineno, const char *line, size_t len);

typedef struct sift_jsonl_reader {
    sift_buf line; /* the current partial line */
    size_t lineno; /* lines completed so far */
    int skipping;  /* inside an oversized line */
    sift_jsonl_line_fn on_line;
    void *ud;
} sift_jsonl_reader;

void sift_jsonl_init(sift_jsonl_reader *r, sift_jsonl_line_fn on_line, void *ud);

/* Splits `len` bytes. Stops and returns the first non-zero value on_line
 * returns; SIFT_ENOMEM when out of memory. */
int sift_jsonl_feed(sift_jsonl_reader *r, const char *data, size_t len);

/* Delivers the last line when the input did not end with a newline. */
int sift_jsonl_finish(sift_jsonl_reader *r);

void sift_jsonl_free(sift_jsonl_reader *r);

/* Loading a JSON Lines file into a store. */
struct sift_store;

enum sift_catalog_kind {
    SIFT_CATALOG_PRODUCTS = 0,
    SIFT_CATALOG_INVENTORY = 1,
    SIFT_CATALOG_PRICES = 2,
};

/* What a load did. Every line is counted in exactly one of blank, bad,
 * applied or stale. */
typedef struct sift_load_summary {
    size_t lines;   /* lines read */
    size_t blank;   /* empty or whitespace-only lines, skipped */
    size_t bad;     /* reported through on_bad and skipped */
    size_t applied; /* records that changed the store (deletes included) */
    size_t deleted; /* of which versioned deletes */
    size_t stale;   /* valid records whose version was not newer than the store's */
    size_t batches; /* transactions committed */
} sift_load_summary;

typedef struct sift_load_opts {
    /* Lines per transaction; 0: 5000. Bigger batches ingest faster, smaller
     * ones hold the write lock for less time. */
    size_t batch;
    /* Version for lines without "version"; 0: 1. */
    int64_t default_version;
    /* Called for each bad line, with its 1-based number and a message that
     * starts with "line N: ". May be NULL. */
    void (*on_bad)(void *ud, size_t lineno, const char *msg);
    /* Called after each committed batch with the counts so far. May be NULL. */
    void (*on_progress)(void *ud, const sift_load_summary *sofar);
    void *ud;
    /* Stop with SIFT_EINVAL after this many bad lines; 0: never stop. */
    size_t max_bad;
    /* Parse on the calling thread too. By default a second thread reads and
     * parses while the calling thread writes (same results, same order; the
     * callbacks still run on the calling thread). */
    int no_thread;
} sift_load_opts;

/* Reads JSON Lines of `kind` from `f` and applies them to `store` in batched
 * transactions. Bad lines are reported and skipped; they never stop the load
 * (unless max_bad is reached). Returns 0 when the input was read to the end,
 * or a negative code (I/O error, store error, max_bad reached) after rolling
 * back the current batch; batches committed before stay committed. `sum` (may
 * be NULL) gets the counts either way. `opts` may be NULL. */
int sift_catalog_load_jsonl(struct sift_store *store, FILE *f, int kind, const sift_load_opts *opts,
                            sift_load_summary *sum, sift_err *err);

#endif
