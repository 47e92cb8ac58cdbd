/* Tests for query understanding (include/sift/query.h): a table of shopper
 * sentences with every field expected, the JSON filters and summary, the
 * vocabulary extension, and hostile input (empty, huge, invalid UTF-8). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/query.h"

#define NONE (-1)

/* One row: NULL strings expect "not stated"; colours and warehouses are
 * comma-joined ("red,blue"), "" for none; prices in minor units, NONE for
 * none. Keywords are always compared exactly. */
typedef struct row {
    const char *text;
    const char *brand;
    const char *category;
    const char *size;
    const char *size_system;
    const char *colours;
    const char *gender;
    long long price_min;
    long long price_max;
    const char *price_currency;
    const char *currency;
    int in_stock;
    const char *warehouses;
    const char *keywords;
} row;

static const row rows[] = {
    /* The example. */
    {"Find Nike running shoes size 42 and check if they are in stock at the Hanoi, Da Nang, and "
     "HCMC warehouses",
     "Nike", "running shoes", "42", "EU", "", NULL, NONE, NONE, NULL, NULL, 1, "HAN,DAD,SGN",
     "nike running shoes"},
    /* Vietnamese with diacritics. */
    {"giày chạy bộ Nike size 42 còn hàng ở Hà Nội không?", "Nike", "running shoes", "42", "EU", "",
     NULL, NONE, NONE, NULL, NULL, 1, "HAN", "running shoes nike"},
    /* Size and price numbers in one sentence. */
    {"Nike shoes size 42 under 2,000,000 VND", "Nike", "shoes", "42", "EU", "", NULL, NONE, 2000000,
     "VND", "VND", 0, "", "nike shoes"},
    {"42", NULL, NULL, "42", "EU", "", NULL, NONE, NONE, NULL, NULL, 0, "", ""},
    /* A model number is not a size. */
    {"Adidas Ultraboost 22", "Adidas", NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "adidas ultraboost 22"},
    {"Nike Pegasus 40 men's black", "Nike", NULL, NULL, NULL, "black", "men", NONE, NONE, NULL,
     NULL, 0, "", "nike pegasus 40"},
    {"Do you have Asics Gel-Kayano 30 in size 44?", "Asics", NULL, "44", "EU", "", NULL, NONE, NONE,
     NULL, NULL, 0, "", "asics gel-kayano 30"},
    {"size 9 US", NULL, NULL, "9", "US", "", NULL, NONE, NONE, NULL, NULL, 0, "", ""},
    {"US 9 nike", "Nike", NULL, "9", "US", "", NULL, NONE, NONE, NULL, NULL, 0, "", "nike"},
    {"us9 nike", "Nike", NULL, "9", "US", "", NULL, NONE, NONE, NULL, NULL, 0, "", "nike"},
    {"I need size 10 UK boots", NULL, "boots", "10", "UK", "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "boots"},
    {"EU 42.5 New Balance trainers", "New Balance", "sneakers", "42.5", "EU", "", NULL, NONE, NONE,
     NULL, NULL, 0, "", "new balance sneakers"},
    {"adidas 41.5", "Adidas", NULL, "41.5", "EU", "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "adidas"},
    /* Not a half size: not a size. */
    {"adidas 41.3", "Adidas", NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "adidas 41.3"},
    {"puma 45 black", "Puma", NULL, "45", "EU", "black", NULL, NONE, NONE, NULL, NULL, 0, "",
     "puma"},
    {"running shoes 42", NULL, "running shoes", "42", "EU", "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "running shoes"},
    {"Pegasus 40", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "", "pegasus 40"},
    {"size 42 43", NULL, NULL, "42", "EU", "", NULL, NONE, NONE, NULL, NULL, 0, "", "43"},
    {"sz 40 sandals", NULL, "sandals", "40", "EU", "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "sandals"},
    /* Apparel sizes. */
    {"women's t-shirts size M in white", NULL, "t-shirts", "M", "INT", "white", "women", NONE, NONE,
     NULL, NULL, 0, "", "t-shirts"},
    {"xxl hoodie navy blue", NULL, "hoodies", "XXL", "INT", "navy", NULL, NONE, NONE, NULL, NULL, 0,
     "", "hoodies"},
    {"Under Armour shorts XL under 500k", "Under Armour", "shorts", "XL", "INT", "", NULL, NONE,
     500000, "VND", "VND", 0, "", "under armour shorts"},
    {"áo thun trắng size L dưới 300k", NULL, "t-shirts", "L", "INT", "white", NULL, NONE, 300000,
     "VND", "VND", 0, "", "t-shirts"},
    /* Colours. */
    {"red or blue hoodie", NULL, "hoodies", NULL, NULL, "red,blue", NULL, NONE, NONE, NULL, NULL, 0,
     "", "hoodies"},
    {"show me grey or gray jackets", NULL, "jackets", NULL, NULL, "grey", NULL, NONE, NONE, NULL,
     NULL, 0, "", "jackets"},
    {"volt yellow tee", NULL, "t-shirts", NULL, NULL, "volt yellow", NULL, NONE, NONE, NULL, NULL,
     0, "", "t-shirts"},
    {"pink sandals for kids", NULL, "sandals", NULL, NULL, "pink", "kids", NONE, NONE, NULL, NULL,
     0, "", "sandals"},
    /* Prices. */
    {"under $100", NULL, NULL, NULL, NULL, "", NULL, NONE, 10000, "USD", "USD", 0, "", ""},
    {"below 1,500,000 VND", NULL, NULL, NULL, NULL, "", NULL, NONE, 1500000, "VND", "VND", 0, "",
     ""},
    {"between 50 and 100 USD", NULL, NULL, NULL, NULL, "", NULL, 5000, 10000, "USD", "USD", 0, "",
     ""},
    {"less than 2tr", NULL, NULL, NULL, NULL, "", NULL, NONE, 2000000, "VND", "VND", 0, "", ""},
    {"from 1m to 2m", NULL, NULL, NULL, NULL, "", NULL, 1000000, 2000000, "VND", "VND", 0, "", ""},
    {"$80-$120", NULL, NULL, NULL, NULL, "", NULL, 8000, 12000, "USD", "USD", 0, "", ""},
    {"cheaper than 90", NULL, NULL, NULL, NULL, "", NULL, NONE, 9000, "USD", NULL, 0, "", ""},
    {"under 2 million", NULL, NULL, NULL, NULL, "", NULL, NONE, 2000000, "VND", "VND", 0, "", ""},
    {"above 2 million", NULL, NULL, NULL, NULL, "", NULL, 2000000, NONE, "VND", "VND", 0, "", ""},
    {"between 1 and 2 million", NULL, NULL, NULL, NULL, "", NULL, 1000000, 2000000, "VND", "VND", 0,
     "", ""},
    {"jacket 1.500.000đ", NULL, "jackets", NULL, NULL, "", NULL, NONE, 1500000, "VND", "VND", 0, "",
     "jackets"},
    {"100$ shoes", NULL, "shoes", NULL, NULL, "", NULL, NONE, 10000, "USD", "USD", 0, "", "shoes"},
    {"nike under $99.99", "Nike", NULL, NULL, NULL, "", NULL, NONE, 9999, "USD", "USD", 0, "",
     "nike"},
    {"price between 1,000,000 and 2,500,000 VND for women", NULL, NULL, NULL, NULL, "", "women",
     1000000, 2500000, "VND", "VND", 0, "", ""},
    {"sneakers in USD", NULL, "sneakers", NULL, NULL, "", NULL, NONE, NONE, NULL, "USD", 0, "",
     "sneakers"},
    /* Warehouses, case and diacritics. */
    {"HCMC", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "SGN", ""},
    {"Sài Gòn", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "SGN", ""},
    {"ĐÀ NẴNG", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "DAD", ""},
    {"Hà Nội HN hanoi", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "HAN", ""},
    {"tp HCM and SGN", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "SGN", ""},
    {"DAD stock", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 1, "DAD", ""},
    /* "dad" in lower case is a person, not the Da Nang code. */
    {"my dad wants shoes", NULL, "shoes", NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "dad shoes"},
    {"cheap nike shoes available in Da Nang", "Nike", "shoes", NULL, NULL, "", NULL, NONE, NONE,
     NULL, NULL, 1, "DAD", "nike shoes"},
    {"top running shoes for men", NULL, "running shoes", NULL, NULL, "", "men", NONE, NONE, NULL,
     NULL, 0, "", "running shoes"},
    {"giay nike 43 o Ha Noi", "Nike", "shoes", "43", "EU", "", NULL, NONE, NONE, NULL, NULL, 0,
     "HAN", "shoes nike"},
    /* A SKU stays one word: searched as itself, its "42" is no size. */
    {"Is the NIKE-PEG40-42 available in DAD?", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL,
     NULL, 1, "DAD", "nike-peg40-42"},
    {"from 1m-2m", NULL, NULL, NULL, NULL, "", NULL, 1000000, 2000000, "VND", "VND", 0, "", ""},
    /* Capital S/M/L alone are sizes for clothing only. */
    {"women's leggings M from 500k to 800k", NULL, "leggings", "M", "INT", "", "women", 500000,
     800000, "VND", "VND", 0, "", "leggings"},
    {"Nike M running shoes", "Nike", "running shoes", NULL, NULL, "", NULL, NONE, NONE, NULL, NULL,
     0, "", "nike m running shoes"},
    {"đôi giày Adidas màu đỏ size 40 giá dưới 1,5 triệu ở Sài Gòn", "Adidas", "shoes", "40", "EU",
     "red", NULL, NONE, 1500000, "VND", "VND", 0, "SGN", "shoes adidas"},
    /* Nothing to extract. */
    {"", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "", ""},
    {"hello there", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "", ""},
    {"Biti's Hunter", "Biti's", NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "biti's hunter"},
    {"what about size 43?", NULL, NULL, "43", "EU", "", NULL, NONE, NONE, NULL, NULL, 0, "", ""},
    {"and in white?", NULL, NULL, NULL, NULL, "white", NULL, NONE, NONE, NULL, NULL, 0, "", ""},
    /* Invalid UTF-8 bytes are spaces. */
    {"bad \xff\xfe utf8 nike", "Nike", NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "",
     "bad utf8 nike"},
    {"ni\xc0ke", NULL, NULL, NULL, NULL, "", NULL, NONE, NONE, NULL, NULL, 0, "", "ni ke"},
};

static char *joined(const char *const *v, size_t n)
{
    static char buf[256];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(buf, ",");
        strcat(buf, v[i]);
    }
    return buf;
}

static void check_str(const char *what, const char *text, const char *want, const char *got)
{
    if (want == NULL && got == NULL)
        return;
    if (want && got && strcmp(want, got) == 0)
        return;
    fail_msg("%s: %s: want %s, got %s", text, what, want ? want : "(null)", got ? got : "(null)");
}

static void test_table(void **state)
{
    (void)state;
    assert_true(sizeof rows / sizeof rows[0] >= 40);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row *r = &rows[i];
        sift_arena *a = sift_arena_new(0);
        assert_non_null(a);
        sift_query q;
        assert_int_equal(sift_query_parse(r->text, strlen(r->text), a, &q), 0);
        check_str("brand", r->text, r->brand, q.brand);
        check_str("category", r->text, r->category, q.category);
        check_str("size", r->text, r->size, q.size);
        check_str("size_system", r->text, r->size_system, q.size_system);
        check_str("colours", r->text, r->colours, joined(q.colours, q.n_colours));
        check_str("gender", r->text, r->gender, sift_gender_name(q.gender));
        if (r->price_min != NONE || q.has_price_min) {
            if (!q.has_price_min || q.price_min != r->price_min)
                fail_msg("%s: price_min: want %lld, got %lld (%d)", r->text, r->price_min,
                         (long long)q.price_min, q.has_price_min);
        }
        if (r->price_max != NONE || q.has_price_max) {
            if (!q.has_price_max || q.price_max != r->price_max)
                fail_msg("%s: price_max: want %lld, got %lld (%d)", r->text, r->price_max,
                         (long long)q.price_max, q.has_price_max);
        }
        check_str("price_currency", r->text, r->price_currency, q.price_currency);
        check_str("currency", r->text, r->currency, q.currency);
        if ((int)q.in_stock != r->in_stock)
            fail_msg("%s: in_stock: want %d", r->text, r->in_stock);
        check_str("warehouses", r->text, r->warehouses, joined(q.warehouses, q.n_warehouses));
        check_str("keywords", r->text, r->keywords, q.keywords);
        assert_false(q.truncated);
        sift_arena_free(a);
    }
}

/* Without a currency marker the currency of the bounds is a guess, and the
 * parse says so. */
static void test_inferred_currency(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_query q;
    assert_int_equal(sift_query_parse("cheaper than 90", 15, a, &q), 0);
    assert_true(q.price_currency_inferred);
    assert_null(q.currency);
    assert_int_equal(sift_query_parse("under 800000", 12, a, &q), 0);
    assert_true(q.price_currency_inferred);
    assert_string_equal(q.price_currency, "VND");
    assert_int_equal(q.price_max, 800000);
    assert_int_equal(sift_query_parse("under $100", 10, a, &q), 0);
    assert_false(q.price_currency_inferred);
    sift_arena_free(a);
}

static char *filters_of(const char *text, sift_arena *a)
{
    sift_query q;
    assert_int_equal(sift_query_parse(text, strlen(text), a, &q), 0);
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_query_filters_json(&q, &b), 0);
    char *s = sift_arena_strdup(a, b.data);
    sift_buf_free(&b);
    return s;
}

static void test_filters_json(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    assert_string_equal(filters_of("Nike running shoes size 42 under 2,000,000 VND in stock at "
                                   "Hanoi and HCMC",
                                   a),
                        "{\"brand\":\"Nike\",\"category\":\"running shoes\",\"size\":\"42\","
                        "\"size_system\":\"EU\",\"colour\":null,\"gender\":null,"
                        "\"price_min\":null,\"price_max\":2000000,\"currency\":\"VND\","
                        "\"in_stock\":true,\"warehouses\":[\"HAN\",\"SGN\"]}");
    assert_string_equal(filters_of("", a),
                        "{\"brand\":null,\"category\":null,\"size\":null,\"size_system\":null,"
                        "\"colour\":null,\"gender\":null,\"price_min\":null,\"price_max\":null,"
                        "\"currency\":null,\"in_stock\":false,\"warehouses\":[]}");
    assert_string_equal(filters_of("red or blue women's hoodie between $49.50 and $80", a),
                        "{\"brand\":null,\"category\":\"hoodies\",\"size\":null,"
                        "\"size_system\":null,\"colour\":[\"red\",\"blue\"],\"gender\":\"women\","
                        "\"price_min\":49.50,\"price_max\":80,\"currency\":\"USD\","
                        "\"in_stock\":false,\"warehouses\":[]}");
    /* Every output is valid JSON, whatever the input. */
    const char *odd[] = {"\"quoted\" \\ brand", "Biti's \x01\x02 size 42", "\xff\xfe\xfd"};
    for (size_t i = 0; i < 3; i++) {
        cJSON *j = cJSON_Parse(filters_of(odd[i], a));
        assert_non_null(j);
        cJSON_Delete(j);
    }
    sift_arena_free(a);
}

static void test_summary(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_query q;
    const char *t = "Find Nike running shoes size 42 and check if they are in stock at the "
                    "Hanoi, Da Nang, and HCMC warehouses";
    assert_int_equal(sift_query_parse(t, strlen(t), a, &q), 0);
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_query_summary(&q, &b), 0);
    assert_string_equal(b.data, "brand Nike; type running shoes; size 42 (EU); in stock; "
                                "warehouses HAN, DAD, SGN; keywords \"nike running shoes\"");
    sift_buf_reset(&b);
    assert_int_equal(sift_query_parse("", 0, a, &q), 0);
    assert_int_equal(sift_query_summary(&q, &b), 0);
    assert_string_equal(b.data, "no constraints");
    sift_buf_reset(&b);
    assert_int_equal(sift_query_parse("cheaper than 90", 15, a, &q), 0);
    assert_int_equal(sift_query_summary(&q, &b), 0);
    assert_string_equal(b.data, "price up to 90 USD (assumed)");
    sift_buf_free(&b);
    sift_arena_free(a);
}

static void test_money(void **state)
{
    (void)state;
    sift_buf b;
    sift_buf_init(&b, 0);
    assert_int_equal(sift_query_format_money(3290000, "VND", &b), 0);
    assert_string_equal(b.data, "3,290,000 VND");
    sift_buf_reset(&b);
    assert_int_equal(sift_query_format_money(12999, "USD", &b), 0);
    assert_string_equal(b.data, "129.99 USD");
    sift_buf_reset(&b);
    assert_int_equal(sift_query_format_money(100000, "USD", &b), 0);
    assert_string_equal(b.data, "1,000 USD");
    sift_buf_reset(&b);
    assert_int_equal(sift_query_format_money(5, "USD", &b), 0);
    assert_string_equal(b.data, "0.05 USD");
    sift_buf_reset(&b);
    assert_int_equal(sift_query_format_money(0, "VND", &b), 0);
    assert_string_equal(b.data, "0 VND");
    sift_buf_free(&b);
}

/* A caller's vocabulary (e.g. brands read from the store) adds to the
 * built-in one, and a longer phrase wins. */
static void test_vocab(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_query_vocab v;
    sift_query_vocab_init(&v, a);
    sift_err err = {0};
    assert_int_equal(
        sift_query_vocab_add(&v, SIFT_QL_BRAND, "  Anta   Sports ", "Anta", NULL, &err), 0);
    assert_int_equal(
        sift_query_vocab_add(&v, SIFT_QL_TYPE, "padel shoe", "padel shoes", "Padel", &err), 0);
    assert_int_equal(sift_query_vocab_add(&v, SIFT_QL_WAREHOUSE, "HPH", "HPH", "Hai Phong", &err),
                     0);
    assert_int_equal(
        sift_query_vocab_add(&v, SIFT_QL_WAREHOUSE, "hải phòng", "HPH", "Hai Phong", &err), 0);
    assert_int_equal(sift_query_vocab_add(&v, SIFT_QL_BRAND, "   ", "X", NULL, &err), SIFT_EINVAL);
    assert_int_equal(sift_query_vocab_add(&v, SIFT_QL_BRAND, "ok", "", NULL, &err), SIFT_EINVAL);
    assert_int_equal(sift_query_vocab_add(&v, SIFT_QL_BRAND, "bad \xff", "X", NULL, &err),
                     SIFT_EINVAL);
    /* Enough terms to make the list grow several times. */
    for (int i = 0; i < 100; i++) {
        char p[32], val[32];
        snprintf(p, sizeof p, "brand%d", i);
        snprintf(val, sizeof val, "Brand %d", i);
        assert_int_equal(sift_query_vocab_add(&v, SIFT_QL_BRAND, p, val, NULL, &err), 0);
    }

    sift_query q;
    const char *t = "ANTA SPORTS padel shoes size 41 at HPH or Hải Phòng, and brand77 too";
    assert_int_equal(sift_query_parse_vocab(&v, t, strlen(t), a, &q), 0);
    assert_string_equal(q.brand, "Anta");
    assert_string_equal(q.category, "padel shoes");
    assert_string_equal(q.category_segment, "Padel");
    assert_string_equal(q.size, "41");
    assert_int_equal(q.n_warehouses, 1);
    assert_string_equal(q.warehouses[0], "HPH");
    assert_string_equal(q.keywords, "anta padel shoes brand 77");
    /* A brand added in capitals still matches in any case; a code does not. */
    assert_int_equal(sift_query_vocab_add(&v, SIFT_QL_BRAND, "KSWISS", "K-Swiss", NULL, &err), 0);
    assert_int_equal(sift_query_parse_vocab(&v, "kswiss from hph", 15, a, &q), 0);
    assert_string_equal(q.brand, "K-Swiss");
    assert_int_equal(q.n_warehouses, 0);
    /* Built-ins still apply unless turned off. */
    assert_int_equal(sift_query_parse_vocab(&v, "nike in hanoi", 13, a, &q), 0);
    assert_string_equal(q.brand, "Nike");
    assert_string_equal(q.warehouses[0], "HAN");
    v.no_defaults = true;
    assert_int_equal(sift_query_parse_vocab(&v, "nike in hanoi", 13, a, &q), 0);
    assert_null(q.brand);
    assert_int_equal(q.n_warehouses, 0);
    sift_arena_free(a);
}

/* Every built-in phrase is stored the way sift_query_vocab_add would
 * normalise it, so it can match at all. */
static void test_builtin_normalised(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    for (int l = 0; l < SIFT_QL_COUNT; l++) {
        size_t n;
        const sift_query_term *t = sift_query_vocab_builtin((sift_query_list)l, &n);
        assert_true(n > 0);
        sift_query_vocab v;
        sift_query_vocab_init(&v, a);
        for (size_t i = 0; i < n; i++) {
            sift_err err = {0};
            assert_int_equal(sift_query_vocab_add(&v, (sift_query_list)l, t[i].phrase, t[i].value,
                                                  t[i].extra, &err),
                             0);
            if (strcmp(v.list[l].terms[i].phrase, t[i].phrase) != 0)
                fail_msg("built-in phrase \"%s\" is not normalised", t[i].phrase);
            /* And it finds itself. */
            sift_query q;
            assert_int_equal(sift_query_parse(t[i].phrase, strlen(t[i].phrase), a, &q), 0);
            const char *got = l == SIFT_QL_BRAND    ? q.brand
                              : l == SIFT_QL_TYPE   ? q.category
                              : l == SIFT_QL_COLOUR ? (q.n_colours ? q.colours[0] : NULL)
                                                    : (q.n_warehouses ? q.warehouses[0] : NULL);
            if (!got || strcmp(got, t[i].value) != 0)
                fail_msg("built-in phrase \"%s\" parses as %s", t[i].phrase, got ? got : "(null)");
        }
    }
    assert_string_equal(sift_query_warehouse_name("DAD"), "Da Nang");
    assert_null(sift_query_warehouse_name("XYZ"));
    sift_arena_free(a);
}

/* Huge input: bounded work, a flag, no crash. */
static void test_long_input(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = "nike 42 under $100 Hà Nội "[i % 27];
    sift_arena *a = sift_arena_new(0);
    sift_query q;
    assert_int_equal(sift_query_parse(big, n, a, &q), 0);
    assert_true(q.truncated);
    assert_string_equal(q.brand, "Nike");
    assert_true(strlen(q.keywords) <= SIFT_QUERY_INPUT_MAX);
    /* The arena holds a bounded amount whatever the input size. */
    assert_true(sift_arena_used(a) < 512 * 1024);
    /* Many short tokens hit the token limit first. */
    memset(big, 'a', n);
    for (size_t i = 1; i < SIFT_QUERY_INPUT_MAX; i += 2)
        big[i] = ' ';
    assert_int_equal(sift_query_parse(big, SIFT_QUERY_INPUT_MAX, a, &q), 0);
    assert_true(q.truncated);
    /* A character cut by the limit is dropped, not half-copied. */
    memset(big, 'x', n);
    memcpy(big + SIFT_QUERY_INPUT_MAX - 1, "\xc3\xa0", 2);
    assert_int_equal(sift_query_parse(big, SIFT_QUERY_INPUT_MAX + 1, a, &q), 0);
    assert_true(q.truncated);
    free(big);
    sift_arena_free(a);
}

static void test_null_text(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_query q;
    assert_int_equal(sift_query_parse(NULL, 0, a, &q), 0);
    assert_string_equal(q.keywords, "");
    assert_null(q.brand);
    sift_arena_free(a);
}

/* Out of memory at every allocation: SIFT_ENOMEM and a zeroed result, or
 * success; never a crash or a leak. */
static void test_oom(void **state)
{
    (void)state;
    const char *t = "Find Nike running shoes size 42 under 2tr in stock at Hà Nội";
    int ok = 0;
    for (long k = 0; k < 200 && !ok; k++) {
        sift_arena *a = sift_arena_new(256);
        if (!a)
            continue;
        sift_mem_fail_after(k);
        sift_query q;
        int rc = sift_query_parse(t, strlen(t), a, &q);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            ok = 1;
            assert_string_equal(q.brand, "Nike");
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
            assert_null(q.brand);
        }
        sift_arena_free(a);
    }
    assert_true(ok);
}

/* Every product title of the sample catalog reads back as its own brand,
 * colour and gender, and its product type maps into its category path. */
static void test_sample_catalog(void **state)
{
    (void)state;
    const char *dir = getenv("SIFT_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/catalog/sample/products.jsonl", dir ? dir : SIFT_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0, typed = 0;
    sift_arena *a = sift_arena_new(0);
    while (fgets(line, sizeof line, f)) {
        cJSON *p = cJSON_Parse(line);
        assert_non_null(p);
        const char *title = cJSON_GetObjectItem(p, "title")->valuestring;
        const char *brand = cJSON_GetObjectItem(p, "brand")->valuestring;
        const cJSON *attrs = cJSON_GetObjectItem(p, "attributes");
        const cJSON *colour = cJSON_GetObjectItem(attrs, "colour");
        const cJSON *gender = cJSON_GetObjectItem(attrs, "gender");
        char cat[256] = "";
        const cJSON *part;
        cJSON_ArrayForEach(part, cJSON_GetObjectItem(p, "category"))
        {
            strcat(cat, part->valuestring);
            strcat(cat, " > ");
        }
        sift_query q;
        sift_arena_reset(a);
        assert_int_equal(sift_query_parse(title, strlen(title), a, &q), 0);
        check_str("brand", title, brand, q.brand);
        if (colour)
            check_str("colour", title, colour->valuestring, q.n_colours ? q.colours[0] : NULL);
        if (gender)
            check_str("gender", title, gender->valuestring, sift_gender_name(q.gender));
        if (q.category) {
            typed++;
            if (!strstr(cat, q.category_segment))
                fail_msg("%s: type %s (%s) not in %s", title, q.category, q.category_segment, cat);
        }
        /* The model name stays in the keywords: "Pegasus 40" is no size. */
        assert_null(q.size);
        cJSON_Delete(p);
        n++;
    }
    fclose(f);
    sift_arena_free(a);
    assert_true(n > 1000);
    assert_int_equal(typed, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_inferred_currency),
        cmocka_unit_test(test_filters_json),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_money),
        cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_builtin_normalised),
        cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_null_text),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_sample_catalog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
