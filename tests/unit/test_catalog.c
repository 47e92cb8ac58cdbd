/* Product, stock and price parsing; atomic chunk invariants; the JSON Lines
 * splitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/catalog.h"
#include "sift/store.h"

static const char good_line[] =
    "{\"sku\":\"NIKE-PEG40-42\",\"version\":3,\"parent_id\":\"NIKE-PEG40\","
    "\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\",\"brand\":\"Nike\","
    "\"category\":[\"Footwear\",\"Running\",\"Road\"],"
    "\"attributes\":{\"size\":\"42\",\"colour\":\"black\",\"material\":\"engineered mesh\","
    "\"gender\":\"men\"},"
    "\"description\":\"Cushioned daily trainer.\"}";

static int setup(void **state)
{
    *state = sift_arena_new(0);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    sift_arena_free(*state);
    return 0;
}

static void test_parse_good(void **state)
{
    sift_product p;
    sift_err e = {0};
    int op = -1;
    assert_int_equal(sift_product_parse(*state, good_line, strlen(good_line), 1, &p, &op, &e), 0);
    assert_int_equal(op, SIFT_OP_UPSERT);
    assert_string_equal(p.sku, "NIKE-PEG40-42");
    assert_string_equal(p.parent_id, "NIKE-PEG40");
    assert_string_equal(p.brand, "Nike");
    assert_string_equal(p.category, "Footwear > Running > Road");
    assert_int_equal(p.version, 3);
    assert_int_equal(p.n_attrs, 4);
    assert_string_equal(p.attrs[0].key, "size");
    assert_string_equal(p.attrs[0].value, "42");
    assert_string_equal(p.attrs[3].key, "gender");
    assert_string_equal(p.description, "Cushioned daily trainer.");

    /* Only sku and title are required; the rest default to "" and the
     * version to the caller's default. */
    const char *min = "{\"sku\":\"100001\",\"title\":\"Simpson Strong-Tie 12-Gauge Angle\"}";
    assert_int_equal(sift_product_parse(*state, min, strlen(min), 7, &p, &op, &e), 0);
    assert_string_equal(p.brand, "");
    assert_string_equal(p.category, "");
    assert_string_equal(p.parent_id, "");
    assert_int_equal(p.n_attrs, 0);
    assert_int_equal(p.version, 7);

    const char *del = "{\"op\":\"delete\",\"sku\":\"X-1\",\"version\":9}";
    assert_int_equal(sift_product_parse(*state, del, strlen(del), 1, &p, &op, &e), 0);
    assert_int_equal(op, SIFT_OP_DELETE);
    assert_string_equal(p.sku, "X-1");
    assert_int_equal(p.version, 9);

    const char *cat = "{\"sku\":\"A-1\",\"title\":\"t\",\"category\":\"Apparel > Tops\"}";
    assert_int_equal(sift_product_parse(*state, cat, strlen(cat), 1, &p, &op, &e), 0);
    assert_string_equal(p.category, "Apparel > Tops");
}

typedef struct bad_case {
    const char *line;
    const char *msg; /* expected message, or prefix when it ends with '*' */
} bad_case;

static void expect_msg(const char *got, const char *want)
{
    size_t n = strlen(want);
    if (n > 0 && want[n - 1] == '*') {
        if (strncmp(got, want, n - 1) != 0)
            fail_msg("message \"%s\" does not start with \"%.*s\"", got, (int)(n - 1), want);
    } else {
        assert_string_equal(got, want);
    }
}

static void test_parse_bad(void **state)
{
    static char long_title[700];
    static char long_desc[SIFT_DESCRIPTION_MAX + 100];
    char t[SIFT_TITLE_MAX + 2];
    memset(t, 'x', sizeof t - 1);
    t[sizeof t - 1] = '\0';
    snprintf(long_title, sizeof long_title, "{\"sku\":\"A-1\",\"title\":\"%s\"}", t);
    char *d = sift_malloc(SIFT_DESCRIPTION_MAX + 2);
    assert_non_null(d);
    memset(d, 'd', SIFT_DESCRIPTION_MAX + 1);
    d[SIFT_DESCRIPTION_MAX + 1] = '\0';
    snprintf(long_desc, sizeof long_desc,
             "{\"sku\":\"A-1\",\"title\":\"t\",\"description\":\"%s\"}", d);
    sift_free(d);

    const bad_case cases[] = {
        {"{\"title\":\"x\"}", "sku: missing"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"attributes\":{\"size\":42}}",
         "attributes.size: must be a string"},
        {long_title, "title: longer than 512 bytes"},
        {long_desc, "description: longer than 16384 bytes"},
        {"{\"sku\":\"A-1\" x}", "invalid JSON at byte 14"},
        {"{\"sku\":\"A-1\",", "invalid JSON at byte*"},
        {"", "invalid JSON at byte 1"},
        {"{\"sku\":\"A-1\",\"title\":\"t\"} {}", "invalid JSON at byte 27: data after the object"},
        {"[1,2]", "line must be a JSON object"},
        {"{\"sku\":5,\"title\":\"x\"}", "sku: must be a string"},
        {"{\"sku\":\"\",\"title\":\"x\"}", "sku: must not be empty"},
        {"{\"sku\":\"A 1\",\"title\":\"x\"}", "sku: must be printable ASCII*"},
        {"{\"sku\":\"A-1\"}", "title: missing"},
        {"{\"sku\":\"A-1\",\"title\":\"\"}", "title: must not be empty"},
        {"{\"sku\":\"A-1\",\"title\":[\"x\"]}", "title: must be a string"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"version\":1.5}", "version: must be an integer"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"version\":\"2\"}", "version: must be an integer"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"version\":-1}", "version: must be between*"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"attributes\":{\"price\":\"9\"}}",
         "attributes.price: stock and price are not product attributes*"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"attributes\":{\"Size\":\"9\"}}",
         "attributes.Size: names are lower-case letters, digits and _"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"attributes\":[\"9\"]}",
         "attributes: must be an object of strings"},
        {"{\"sku\":\"A-1\",\"title\":\"x\\u0001\"}", "title: contains a control character*"},
        {"{\"sku\":\"A-1\",\"title\":\"\xff\xfe\"}", "title: not valid UTF-8"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"category\":[\"Footwear\",3]}",
         "category[1]: must be a string"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"category\":7}",
         "category: must be an array of strings or a string"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"parent_id\":\"A 0\"}", "parent_id: must be*"},
        {"{\"sku\":\"A-1\",\"title\":\"x\",\"op\":\"erase\"}", "op: must be*"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sift_product p;
        sift_err e = {0};
        int rc = sift_product_parse(*state, cases[i].line, strlen(cases[i].line), 1, &p, NULL, &e);
        if (rc != SIFT_EINVAL && rc != SIFT_ETOOBIG)
            fail_msg("case %zu: rc %d for %.80s", i, rc, cases[i].line);
        assert_int_equal(e.code, rc);
        expect_msg(e.msg, cases[i].msg);
    }
}

static void note_bad(void *ud, size_t lineno, const char *msg)
{
    (void)lineno;
    snprintf(ud, SIFT_ERR_MSG_MAX, "%s", msg);
}

/* cJSON keeps every member and finds the first of a name: a line that names
 * a member twice is refused rather than stored under its first "sku". Small
 * objects are compared in pairs, big ones sorted: both ways are tried. The
 * loader reports such a line and goes on. */
static void test_duplicate_members(void **state)
{
    const bad_case cases[] = {
        {"{\"sku\":\"A\",\"title\":\"t\",\"sku\":\"B\"}", "duplicate member \"sku\""},
        {"{\"sku\":\"A\",\"title\":\"t\",\"brand\":\"x\",\"title\":\"u\"}",
         "duplicate member \"title\""},
        {"{\"sku\":\"A\",\"title\":\"t\",\"extra\":1,\"extra\":2}", "duplicate member \"extra\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sift_product p;
        sift_err e = {0};
        assert_int_equal(
            sift_product_parse(*state, cases[i].line, strlen(cases[i].line), 1, &p, NULL, &e),
            SIFT_EINVAL);
        expect_msg(e.msg, cases[i].msg);
    }
    sift_stock st;
    sift_price pr;
    sift_err e = {0};
    const char *stock = "{\"sku\":\"A\",\"warehouse\":\"HAN\",\"quantity\":1,\"quantity\":9}";
    assert_int_equal(sift_stock_parse(*state, stock, strlen(stock), 1, &st, &e), SIFT_EINVAL);
    expect_msg(e.msg, "duplicate member \"quantity\"");
    const char *price = "{\"sku\":\"A\",\"currency\":\"USD\",\"amount\":1,\"amount\":2}";
    assert_int_equal(sift_price_parse(*state, price, strlen(price), 1, &pr, &e), SIFT_EINVAL);
    expect_msg(e.msg, "duplicate member \"amount\"");

    /* 100 members, unique, then with the first one repeated at the end */
    char big[4096];
    int n = snprintf(big, sizeof big, "{\"sku\":\"A\",\"title\":\"t\"");
    for (int i = 0; i < 98; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, ",\"m%02d\":%d", i, i);
    snprintf(big + n, sizeof big - (size_t)n, "}");
    sift_product p;
    assert_int_equal(sift_product_parse(*state, big, strlen(big), 1, &p, NULL, &e), 0);
    assert_string_equal(p.sku, "A");
    snprintf(big + n, sizeof big - (size_t)n, ",\"sku\":\"B\"}");
    assert_int_equal(sift_product_parse(*state, big, strlen(big), 1, &p, NULL, &e), SIFT_EINVAL);
    expect_msg(e.msg, "duplicate member \"sku\"");

    /* the loader skips the line and reports it with its number */
    sift_store *store = NULL;
    assert_int_equal(sift_store_sqlite_open(":memory:", NULL, &store, &e), 0);
    static const char in[] = "{\"sku\":\"A\",\"title\":\"t\",\"sku\":\"B\"}\n"
                             "{\"sku\":\"C\",\"title\":\"ok\"}\n";
    FILE *f = fmemopen((void *)in, sizeof in - 1, "r");
    assert_non_null(f);
    char msg[SIFT_ERR_MSG_MAX] = "";
    sift_load_opts o = {.on_bad = note_bad, .ud = msg};
    sift_load_summary sum = {0};
    assert_int_equal(sift_catalog_load_jsonl(store, f, SIFT_CATALOG_PRODUCTS, &o, &sum, &e), 0);
    fclose(f);
    assert_int_equal(sum.bad, 1);
    assert_int_equal(sum.applied, 1);
    expect_msg(msg, "line 1: duplicate member \"sku\"");
    assert_int_equal(sift_store_get_product(store, "A", *state, &p, &e), SIFT_ENOTFOUND);
    assert_int_equal(sift_store_get_product(store, "B", *state, &p, &e), SIFT_ENOTFOUND);
    assert_int_equal(sift_store_get_product(store, "C", *state, &p, &e), 0);
    sift_store_close(store);
}

static void test_parse_stock_price(void **state)
{
    sift_err e = {0};
    sift_stock st;
    const char *s1 =
        "{\"sku\":\"NIKE-PEG40-42\",\"warehouse\":\"HAN\",\"quantity\":3,\"version\":2}";
    assert_int_equal(sift_stock_parse(*state, s1, strlen(s1), 1, &st, &e), 0);
    assert_string_equal(st.warehouse, "HAN");
    assert_int_equal(st.quantity, 3);
    assert_int_equal(st.version, 2);
    assert_int_equal(st.updated_at, 0);
    const bad_case stock_bad[] = {
        {"{\"sku\":\"A-1\",\"warehouse\":\"han\",\"quantity\":1}", "warehouse: codes are*"},
        {"{\"sku\":\"A-1\",\"warehouse\":\"HAN\",\"quantity\":-1}", "quantity: must be between*"},
        {"{\"sku\":\"A-1\",\"warehouse\":\"HAN\",\"quantity\":\"3\"}",
         "quantity: must be an integer"},
        {"{\"sku\":\"A-1\",\"warehouse\":\"HAN\"}", "quantity: missing"},
        {"{\"warehouse\":\"HAN\",\"quantity\":1}", "sku: missing"},
    };
    for (size_t i = 0; i < sizeof stock_bad / sizeof stock_bad[0]; i++) {
        assert_int_not_equal(
            sift_stock_parse(*state, stock_bad[i].line, strlen(stock_bad[i].line), 1, &st, &e), 0);
        expect_msg(e.msg, stock_bad[i].msg);
    }

    sift_price pr;
    const char *p1 = "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"USD\",\"amount\":129.99}";
    assert_int_equal(sift_price_parse(*state, p1, strlen(p1), 4, &pr, &e), 0);
    assert_int_equal(pr.amount_minor, 12999);
    assert_int_equal(pr.version, 4);
    assert_int_equal(pr.valid_from, 0);
    const char *p2 = "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3250000,\"valid_"
                     "from\":1700000000}";
    assert_int_equal(sift_price_parse(*state, p2, strlen(p2), 1, &pr, &e), 0);
    assert_int_equal(pr.amount_minor, 3250000);
    assert_int_equal(pr.valid_from, 1700000000);
    const bad_case price_bad[] = {
        {"{\"sku\":\"A-1\",\"currency\":\"USD\",\"amount\":12.345}",
         "amount: more than 2 decimals*"},
        {"{\"sku\":\"A-1\",\"currency\":\"VND\",\"amount\":1000.5}",
         "amount: more than 0 decimals*"},
        {"{\"sku\":\"A-1\",\"currency\":\"usd\",\"amount\":1}", "currency: must be an ISO 4217*"},
        {"{\"sku\":\"A-1\",\"currency\":\"USD\",\"amount\":-1}", "amount: must be between*"},
        {"{\"sku\":\"A-1\",\"currency\":\"USD\",\"amount\":\"1\"}", "amount: must be a number"},
        {"{\"sku\":\"A-1\",\"currency\":\"USD\"}", "amount: missing"},
    };
    for (size_t i = 0; i < sizeof price_bad / sizeof price_bad[0]; i++) {
        assert_int_not_equal(
            sift_price_parse(*state, price_bad[i].line, strlen(price_bad[i].line), 1, &pr, &e), 0);
        expect_msg(e.msg, price_bad[i].msg);
    }
    assert_int_equal(sift_currency_exponent("VND"), 0);
    assert_int_equal(sift_currency_exponent("USD"), 2);
    assert_int_equal(sift_currency_exponent("KWD"), 3);
    static const struct {
        int64_t minor;
        const char *cur, *json;
    } amounts[] = {{12999, "USD", "129.99"},   {5, "USD", "0.05"},
                   {-12999, "USD", "-129.99"}, {3250000, "VND", "3250000"},
                   {1005, "KWD", "1.005"},     {INT64_MIN, "VND", "-9223372036854775808"}};
    for (size_t i = 0; i < sizeof amounts / sizeof amounts[0]; i++) {
        sift_buf b;
        sift_buf_init(&b, 0);
        assert_int_equal(sift_amount_json(&b, amounts[i].minor, amounts[i].cur), 0);
        assert_int_equal(sift_buf_putc(&b, '\0'), 0);
        assert_string_equal(b.data, amounts[i].json);
        sift_buf_free(&b);
    }
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(sift_utf8_valid("giày", strlen("giày")));
    assert_true(sift_utf8_valid("\xf0\x9f\x91\x9f", 4));  /* U+1F45F */
    assert_false(sift_utf8_valid("\xc0\x80", 2));         /* overlong NUL */
    assert_false(sift_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(sift_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(sift_utf8_valid("\xe2\x82", 2));         /* cut short */
    /* "aé€👟": a(1) é(2) €(3) 👟(4) */
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x91\x9f";
    size_t n = strlen(s);
    size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10};
    for (size_t max = 0; max <= n; max++) {
        size_t got = sift_utf8_truncate(s, n, max);
        assert_int_equal(got, want[max]);
        assert_true(sift_utf8_valid(s, got));
    }
    assert_int_equal(sift_utf8_truncate(s, n, 100), n);
}

static int contains(const char *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static void test_chunk_invariants(void **state)
{
    sift_product p;
    sift_err e = {0};
    /* Stock and price given as stray members are ignored, never indexed. */
    const char *line =
        "{\"sku\":\"ADI-BSTL5-GRN-44\",\"title\":\"Adidas Boostline 5\",\"brand\":\"Adidas\","
        "\"category\":[\"Footwear\",\"Running\"],\"price\":987654,\"stock\":424242,"
        "\"quantity\":313131,\"attributes\":{\"size\":\"44\",\"colour\":\"green\","
        "\"gender\":\"men\",\"material\":\"knit\"},\"description\":\"Light and fast.\"}";
    assert_int_equal(sift_product_parse(*state, line, strlen(line), 1, &p, NULL, &e), 0);
    sift_chunk c;
    sift_chunk_init(&c);
    assert_int_equal(sift_chunk_build(&c, &p, &e), 0);
    assert_true(contains(c.text, c.text_len, "ADI-BSTL5-GRN-44"));
    assert_true(contains(c.text, c.text_len, "Adidas Boostline 5"));
    assert_true(contains(c.text, c.text_len, "brand: Adidas"));
    assert_true(contains(c.text, c.text_len, "category: Footwear > Running"));
    assert_true(
        contains(c.text, c.text_len, "size: 44; colour: green; gender: men; material: knit"));
    assert_true(contains(c.text, c.text_len, "Light and fast."));
    assert_false(contains(c.text, c.text_len, "987654"));
    assert_false(contains(c.text, c.text_len, "424242"));
    assert_false(contains(c.text, c.text_len, "313131"));
    assert_false(contains(c.text, c.text_len, "price"));
    assert_false(contains(c.text, c.text_len, "stock"));
    assert_int_equal(strlen(c.text), c.text_len);
    assert_string_equal(c.attrs, "size: 44; colour: green; gender: men; material: knit");
    assert_int_equal(c.truncated, 0);

    /* A long description is cut, at a character boundary, never split into
     * a second document: the one chunk still holds the SKU and every
     * attribute, even with the most attributes allowed. */
    sift_product big = p;
    size_t dn = SIFT_DESCRIPTION_MAX - 1;
    char *desc = sift_malloc(dn + 1);
    assert_non_null(desc);
    desc[0] = 'a'; /* shifts every 2-byte character to straddle odd limits */
    for (size_t i = 1; i + 1 < dn; i += 2)
        memcpy(desc + i, "\xc3\xa9", 2);
    desc[dn] = '\0';
    big.description = desc;
    sift_attr attrs[SIFT_ATTRS_MAX];
    char keys[SIFT_ATTRS_MAX][16], vals[SIFT_ATTRS_MAX][16];
    for (int i = 0; i < SIFT_ATTRS_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        attrs[i].key = keys[i];
        attrs[i].value = vals[i];
    }
    big.attrs = attrs;
    big.n_attrs = SIFT_ATTRS_MAX;
    assert_int_equal(sift_chunk_build(&c, &big, &e), 0);
    assert_int_equal(c.truncated, 1);
    assert_true(c.description_len <= SIFT_CHUNK_DESCRIPTION_MAX + 3);
    assert_true(sift_utf8_valid(c.description, c.description_len));
    assert_true(sift_utf8_valid(c.text, c.text_len));
    assert_memory_equal(c.description + c.description_len - 3, "\xe2\x80\xa6", 3);
    assert_true(contains(c.text, c.text_len, "ADI-BSTL5-GRN-44"));
    for (int i = 0; i < SIFT_ATTRS_MAX; i++) {
        char kv[40];
        snprintf(kv, sizeof kv, "k%d: v%d", i, i);
        assert_true(contains(c.text, c.text_len, kv));
    }
    /* The cut lands on a boundary whichever way the characters straddle the
     * limit (desc + 1 starts on a 2-byte character, desc on an ASCII one). */
    for (size_t off = 0; off < 2; off++) {
        big.description = desc + off;
        assert_int_equal(sift_chunk_build(&c, &big, &e), 0);
        assert_true(sift_utf8_valid(c.description, c.description_len));
    }
    sift_free(desc);
    sift_chunk_free(&c);
}

/* The sample catalog shipped in catalog/sample parses cleanly, has at least
 * 2,000 SKUs including NIKE-PEG40-42, and each chunk holds its SKU and its
 * size and colour. */
static void test_sample_catalog(void **state)
{
    const char *src = getenv("SIFT_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/catalog/sample/products.jsonl", src ? src : SIFT_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t count = 0, peg42 = 0;
    sift_chunk c;
    sift_chunk_init(&c);
    while ((n = getline(&line, &cap, f)) > 0) {
        sift_product p;
        sift_err e = {0};
        if (sift_product_parse(*state, line, (size_t)n - 1, 1, &p, NULL, &e) != 0)
            fail_msg("sample line %zu: %s", count + 1, e.msg);
        assert_int_equal(sift_chunk_build(&c, &p, &e), 0);
        assert_true(contains(c.text, c.text_len, p.sku));
        const char *size = NULL, *colour = NULL;
        for (size_t i = 0; i < p.n_attrs; i++) {
            if (strcmp(p.attrs[i].key, "size") == 0)
                size = p.attrs[i].value;
            if (strcmp(p.attrs[i].key, "colour") == 0)
                colour = p.attrs[i].value;
        }
        assert_non_null(size);
        assert_non_null(colour);
        char want[300];
        snprintf(want, sizeof want, "size: %s", size);
        assert_true(contains(c.text, c.text_len, want));
        snprintf(want, sizeof want, "colour: %s", colour);
        assert_true(contains(c.text, c.text_len, want));
        if (strcmp(p.sku, "NIKE-PEG40-42") == 0 && strcmp(p.brand, "Nike") == 0 &&
            strcmp(size, "42") == 0 && strstr(p.category, "Running"))
            peg42++;
        count++;
        sift_arena_reset(*state);
    }
    free(line);
    fclose(f);
    sift_chunk_free(&c);
    assert_true(count >= 2000);
    assert_int_equal(peg42, 1);
}

typedef struct collected {
    char out[8192];
    size_t len;
    size_t last_lineno;
} collected;

static int collect(void *ud, size_t lineno, const char *line, size_t len)
{
    collected *c = ud;
    c->len += (size_t)snprintf(c->out + c->len, sizeof c->out - c->len, "%zu:%.*s|", lineno,
                               line ? (int)len : 4, line ? line : "LONG");
    c->last_lineno = lineno;
    return 0;
}

static void test_jsonl_reader(void **state)
{
    (void)state;
    const char *in = "{\"a\":1}\r\n\n{\"b\":2}\n  \nlast";
    const char *want = "1:{\"a\":1}|2:|3:{\"b\":2}|4:  |5:last|";
    size_t n = strlen(in);
    /* Every split point, and byte by byte, give the same lines. */
    for (size_t cut = 0; cut <= n; cut++) {
        collected c = {0};
        sift_jsonl_reader r;
        sift_jsonl_init(&r, collect, &c);
        assert_int_equal(sift_jsonl_feed(&r, in, cut), 0);
        assert_int_equal(sift_jsonl_feed(&r, in + cut, n - cut), 0);
        assert_int_equal(sift_jsonl_finish(&r), 0);
        sift_jsonl_free(&r);
        assert_string_equal(c.out, want);
    }
    collected c = {0};
    sift_jsonl_reader r;
    sift_jsonl_init(&r, collect, &c);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sift_jsonl_feed(&r, in + i, 1), 0);
    assert_int_equal(sift_jsonl_finish(&r), 0);
    sift_jsonl_free(&r);
    assert_string_equal(c.out, want);

    /* An oversized line is reported once, numbered, and skipped; the line
     * after it keeps its number. Fed in pieces so the limit is crossed in a
     * partial line. */
    size_t big = SIFT_CATALOG_LINE_MAX + 5000;
    char *buf = sift_malloc(big + 32);
    assert_non_null(buf);
    memcpy(buf, "ok\n", 3);
    memset(buf + 3, 'x', big);
    memcpy(buf + 3 + big, "\nnext\n", 6);
    size_t total = 3 + big + 6;
    memset(&c, 0, sizeof c);
    sift_jsonl_init(&r, collect, &c);
    for (size_t off = 0; off < total; off += 1000) {
        size_t piece = total - off < 1000 ? total - off : 1000;
        assert_int_equal(sift_jsonl_feed(&r, buf + off, piece), 0);
    }
    assert_int_equal(sift_jsonl_finish(&r), 0);
    assert_true(r.line.cap <= SIFT_CATALOG_LINE_MAX + 1);
    sift_jsonl_free(&r);
    assert_string_equal(c.out, "1:ok|2:LONG|3:next|");
    sift_free(buf);
}

/* Every allocation failure on the parse and chunk paths is reported as
 * SIFT_ENOMEM and leaks nothing (the sanitizer build checks leaks). */
static void test_out_of_memory(void **state)
{
    (void)state;
    int succeeded = 0;
    for (long n = 0; n < 200 && !succeeded; n++) {
        sift_mem_fail_after(n);
        sift_arena *a = sift_arena_new(0);
        sift_product p;
        sift_err e = {0};
        sift_chunk c;
        sift_chunk_init(&c);
        int rc = SIFT_ENOMEM;
        if (a && (rc = sift_product_parse(a, good_line, strlen(good_line), 1, &p, NULL, &e)) == 0)
            rc = sift_chunk_build(&c, &p, &e);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            assert_true(contains(c.text, c.text_len, "NIKE-PEG40-42"));
            succeeded = 1;
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
        }
        sift_chunk_free(&c);
        sift_arena_free(a);
    }
    assert_true(succeeded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_stock_price, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_members, setup, teardown),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test_setup_teardown(test_chunk_invariants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_catalog, setup, teardown),
        cmocka_unit_test(test_jsonl_reader),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
