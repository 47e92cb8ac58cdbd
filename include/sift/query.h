/* Query understanding: a shopper's sentence turned into structured filters.
 *
 * sift_query_parse reads text such as
 *   "Find Nike running shoes size 42 and check if they are in stock at the
 *    Hanoi, Da Nang, and HCMC warehouses"
 * and extracts brand (Nike), product type (running shoes), size (42, EU),
 * colours, gender, price bounds and currency, in-stock intent, warehouses
 * (HAN, DAD, SGN) and the residual keywords for the lexical search
 * ("nike running shoes"). The same parse feeds the search_products filters
 * and the offline planner (planner.h).
 *
 * It is pure and deterministic: no I/O, no globals that change, no locale.
 * Matching is case-insensitive and, for ASCII vocabulary, insensitive to
 * Vietnamese and Latin-1 diacritics ("Hà Nội", "Ha Noi" and "HA NOI" are the
 * same). Invalid UTF-8 bytes are treated as spaces. Work is bounded: only the
 * first SIFT_QUERY_INPUT_MAX bytes and SIFT_QUERY_TOKENS_MAX tokens are read,
 * and `truncated` says when the rest was ignored.
 *
 * The rules (which words mean what, how numbers are told apart) are described
 * in docs/offline-planner.md. */
#ifndef SIFT_QUERY_H
#define SIFT_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/err.h"

#define SIFT_QUERY_INPUT_MAX 4096 /* bytes of text examined */
#define SIFT_QUERY_TOKENS_MAX 512 /* tokens examined */
#define SIFT_QUERY_COLOURS_MAX 4
#define SIFT_QUERY_WAREHOUSES_MAX 8

/* The vocabulary lists. */
typedef enum sift_query_list {
    SIFT_QL_BRAND = 0, /* value: the brand as the catalog spells it ("New Balance") */
    SIFT_QL_TYPE,      /* value: product type ("running shoes"); extra: category segment */
    SIFT_QL_COLOUR,    /* value: colour as the catalog spells it ("grey") */
    SIFT_QL_WAREHOUSE, /* value: warehouse code ("HAN"); extra: display name ("Hanoi") */
    SIFT_QL_COUNT,
} sift_query_list;

/* One vocabulary entry. `phrase` is one or more words separated by single
 * spaces and is matched against whole words of the text:
 *   - all lower-case ASCII ("da nang"): case- and diacritic-insensitive;
 *   - containing non-ASCII ("đỏ"): case-insensitive, diacritics must match
 *     (folded, "đỏ" would be the English "do");
 *   - containing an upper-case ASCII letter ("DAD"): exact, case-sensitive
 *     (so "my dad" is not the Da Nang warehouse).
 * For product types a trailing "s" on the last word also matches
 * ("running shoe" matches "running shoes"). */
typedef struct sift_query_term {
    const char *phrase;
    const char *value;
    const char *extra; /* types: the category path segment it maps to ("Running");
                          warehouses: display name; otherwise NULL */
} sift_query_term;

/* Extra vocabulary on top of the built-in default (for example the brands
 * read from the store). Terms are looked up before the defaults, and the
 * longest phrase wins at each position. */
typedef struct sift_query_vocab {
    sift_arena *arena; /* the added terms live here */
    struct {
        sift_query_term *terms;
        size_t n, cap;
    } list[SIFT_QL_COUNT];
    bool no_defaults; /* true: use only the added terms */
} sift_query_vocab;

/* An empty extension whose terms will be copied into `a`. Allocates nothing. */
void sift_query_vocab_init(sift_query_vocab *v, sift_arena *a);

/* Adds a term to list `which`. The phrase is normalised (surrounding and
 * repeated spaces removed; lower-cased, except that in the warehouse list an
 * all upper-case ASCII phrase stays an exact-case code such as "HAN"; a brand
 * spelt "HOKA" matches "hoka"). `extra` may be NULL.
 * SIFT_EINVAL for an empty phrase or value or a phrase over 128 bytes,
 * SIFT_ENOMEM. */
int sift_query_vocab_add(sift_query_vocab *v, sift_query_list which, const char *phrase,
                         const char *value, const char *extra, sift_err *err);

/* The built-in terms of one list, for documentation and tests. */
const sift_query_term *sift_query_vocab_builtin(sift_query_list which, size_t *n);

/* The display name of a warehouse code in the built-in list ("HAN" ->
 * "Hanoi"), or NULL for an unknown code. */
const char *sift_query_warehouse_name(const char *code);

typedef enum sift_gender {
    SIFT_GENDER_ANY = 0,
    SIFT_GENDER_MEN,
    SIFT_GENDER_WOMEN,
    SIFT_GENDER_KIDS,
    SIFT_GENDER_UNISEX,
} sift_gender;

/* "men", "women", "kids", "unisex", or NULL for SIFT_GENDER_ANY. */
const char *sift_gender_name(sift_gender g);

/* What a shopper asked for. Strings are NUL-terminated, in the arena passed
 * to the parser or static; NULL means "not stated". */
typedef struct sift_query {
    const char *brand;            /* "Nike" */
    const char *category;         /* product type, "running shoes" */
    const char *category_segment; /* the category path segment it maps to: "Running" */
    const char *size;             /* "42", "42.5", "9", "M", "XXL" */
    const char *size_system;      /* "EU", "US", "UK", "INT", or NULL when it cannot be told */
    const char *colours[SIFT_QUERY_COLOURS_MAX]; /* alternatives: "red or blue" */
    size_t n_colours;
    sift_gender gender;
    /* Price bounds in minor units of price_currency (cents, dong): "under
     * $100" is has_max, max 10000, USD. */
    bool has_price_min, has_price_max;
    int64_t price_min, price_max;
    /* The currency the bounds are in: stated ("$", "USD", "VND", "đ", "tr",
     * "million") or, with no marker, inferred: VND for amounts of 1,000 or
     * more, USD below (price_currency_inferred is then true). */
    const char *price_currency;
    bool price_currency_inferred;
    const char *currency; /* the currency the shopper stated anywhere, or NULL */
    bool in_stock;        /* asked about stock or availability */
    const char *warehouses[SIFT_QUERY_WAREHOUSES_MAX]; /* codes in order of mention */
    size_t n_warehouses;
    const char *keywords; /* residual words for the lexical search, lower-case; "" if none */
    bool truncated;       /* input beyond the limits was ignored */
} sift_query;

/* Parses `len` bytes of `text` (need not be NUL-terminated; NULL with len 0
 * is the empty query) with the built-in vocabulary. Same as
 * sift_query_parse_vocab(NULL, ...). */
int sift_query_parse(const char *text, size_t len, sift_arena *a, sift_query *out);

/* Parses with `vocab` (NULL: built-in only) added. Returns 0 or SIFT_ENOMEM
 * (then `out` is zeroed); every input, however odd, parses. */
int sift_query_parse_vocab(const sift_query_vocab *vocab, const char *text, size_t len,
                           sift_arena *a, sift_query *out);

/* Appends the search_products `filters` object for `q` to `out`:
 *   {"brand":"Nike","category":"running shoes","size":"42","size_system":"EU",
 *    "colour":null,"gender":null,"price_min":null,"price_max":2000000,
 *    "currency":"VND","in_stock":true,"warehouses":["HAN","DAD","SGN"]}
 * Every key is always present; absent values are null. "colour" is null or an
 * array of alternatives (["red","blue"]). Prices are in major units
 * (2000000, 99.99) of "currency", which is the price currency when bounds
 * were given, else the stated currency. SIFT_ETOOBIG, SIFT_ENOMEM; on
 * failure `out` is restored to its previous length. */
int sift_query_filters_json(const sift_query *q, sift_buf *out);

/* Appends a one-line human-readable summary of what was understood, e.g.
 * "brand Nike; type running shoes; size 42 (EU); in stock; warehouses HAN,
 * DAD, SGN; keywords \"nike running shoes\"", or "no constraints" plus the
 * keywords. Same errors as sift_query_filters_json. */
int sift_query_summary(const sift_query *q, sift_buf *out);

/* Appends a money amount given in minor units, in major units with thousands
 * separators: 3290000 VND -> "3,290,000 VND", 12999 USD -> "129.99 USD".
 * Same errors as sift_buf_printf. */
int sift_query_format_money(int64_t minor, const char *currency, sift_buf *out);

#endif
