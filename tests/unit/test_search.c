/* Hybrid search over a small in-memory store: the vector list rescues
 * misspelt and partial words, filters apply before truncation, exact SKUs
 * come first, modes, empty queries, determinism, and the catalog scan the
 * searcher is built from. The list tests run twice: with the searcher's
 * in-memory BM25 (the default) and with the store's FTS5 BM25. */
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
#include "sift/search.h"
#include "sift/store.h"

typedef struct fixture {
    int lexical_store; /* the BM25 list from the store instead of the searcher's index */
    sift_store *s;
    sift_searcher *se;
    sift_arena *a;
} fixture;

static void put(sift_store *s, const char *sku, const char *title, const char *brand,
                const char *category, const char *size, const char *colour)
{
    sift_attr at[2];
    size_t na = 0;
    if (size)
        at[na++] = (sift_attr){"size", size};
    if (colour)
        at[na++] = (sift_attr){"colour", colour};
    sift_product p = {.sku = sku,
                      .parent_id = "",
                      .title = title,
                      .brand = brand,
                      .category = category,
                      .description = "",
                      .attrs = at,
                      .n_attrs = na,
                      .version = 1};
    sift_err e = {0};
    int applied = 0;
    assert_int_equal(sift_store_upsert_product(s, &p, &applied, &e), 0);
    assert_int_equal(applied, 1);
}

/* 12 Adidas running shoes whose titles repeat the words (they win BM25), 3
 * Nike ones that say it once, and some tools. */
static void fill(sift_store *s)
{
    char sku[32], title[128];
    for (int i = 0; i < 12; i++) {
        snprintf(sku, sizeof sku, "ADI-RUN-%02d", i);
        snprintf(title, sizeof title, "Adidas Running Shoes running shoe model %d", i);
        put(s, sku, title, "Adidas", "Footwear > Running", i % 2 ? "42" : "43", "black");
    }
    put(s, "NIKE-PEG-1", "Nike Pegasus road trainer running shoes", "Nike", "Footwear > Running",
        "42", "red");
    put(s, "NIKE-PEG-2", "Nike Pegasus trail edition running shoes", "Nike", "Footwear > Running",
        "43", "black");
    put(s, "NIKE-VOM-3", "Nike Vomero cushioned daily shoes", "Nike", "Footwear > Running", "42",
        "blue");
    put(s, "TOOL-SPR-1", "HVLP Paint Sprayer 650 W", "Wagner", "Tools > Painting", NULL, NULL);
    put(s, "TOOL-DRL-1", "Cordless Drill Driver 18 V", "Bosch", "Tools > Drills", NULL, NULL);
    put(s, "TOOL-RLR-1", "Paint Roller Kit 9 inch", "Wagner", "Tools > Painting", NULL, NULL);
    put(s, "GONE-1", "Paint Sprayer that was deleted", "Wagner", "Tools > Painting", NULL, NULL);
    int applied = 0;
    sift_err e = {0};
    assert_int_equal(sift_store_delete_product(s, "GONE-1", 2, &applied, &e), 0);
}

static int setup_with(void **state, int lexical_store)
{
    fixture *f = calloc(1, sizeof *f);
    sift_err e = {0};
    if (f)
        f->lexical_store = lexical_store;
    if (!f || sift_store_sqlite_open(":memory:", NULL, &f->s, &e))
        return -1;
    fill(f->s);
    if (sift_searcher_open(f->s, NULL, &f->se, &e)) {
        fprintf(stderr, "searcher: %s\n", e.msg);
        return -1;
    }
    f->a = sift_arena_new(0);
    *state = f;
    return f->a ? 0 : -1;
}

static int setup(void **state)
{
    return setup_with(state, 0);
}

static int setup_store(void **state)
{
    return setup_with(state, 1);
}

static int teardown(void **state)
{
    fixture *f = *state;
    sift_searcher_close(f->se);
    sift_store_close(f->s);
    sift_arena_free(f->a);
    free(f);
    return 0;
}

static size_t run(fixture *f, const char *q, const sift_search_opts *o, sift_search_hit **h)
{
    sift_err e = {0};
    size_t n = 99;
    sift_search_opts oo = o ? *o : (sift_search_opts){0};
    oo.lexical_store = f->lexical_store;
    int rc = sift_search(f->se, f->s, q, &oo, f->a, h, &n, &e);
    if (rc)
        fprintf(stderr, "search \"%s\": %s\n", q, e.msg);
    assert_int_equal(rc, 0);
    return n;
}

static int count_cb(void *ud, const sift_product *p, const char *text, sift_err *err)
{
    (void)err;
    size_t *n = ud;
    assert_non_null(strstr(text, p->sku));
    assert_string_not_equal(p->sku, "GONE-1");
    (*n)++;
    return 0;
}

static int stop_cb(void *ud, const sift_product *p, const char *text, sift_err *err)
{
    (void)ud, (void)p, (void)text;
    return sift_err_set(err, SIFT_ECANCELED, "stop");
}

static void test_scan(void **state)
{
    fixture *f = *state;
    size_t n = 0;
    sift_err e = {0};
    assert_int_equal(sift_store_scan_products(f->s, count_cb, &n, &e), 0);
    assert_int_equal(n, 18);
    assert_int_equal(sift_searcher_count(f->se), 18);
    assert_int_equal(sift_store_scan_products(f->s, stop_cb, NULL, &e), SIFT_ECANCELED);
    assert_int_equal(sift_store_scan_products(f->s, NULL, NULL, &e), SIFT_EINVAL);
}

/* "spray" is no indexed word and too far from "sprayer" to be corrected:
 * BM25 finds nothing, the 3-gram vectors do. "sprayr" is one edit from
 * "sprayer": the in-memory BM25 corrects it, the store's does not. */
static void test_typo(void **state)
{
    fixture *f = *state;
    sift_search_hit *h;
    sift_search_opts o = {.k = 5, .mode = SIFT_SEARCH_LEXICAL};
    assert_int_equal(run(f, "spray", &o, &h), 0);
    size_t n = run(f, "sprayr", &o, &h);
    if (f->lexical_store) {
        assert_int_equal(n, 0);
    } else {
        assert_int_equal(n, 1);
        assert_string_equal(h[0].sku, "TOOL-SPR-1");
    }
    /* Not corrected: short words, numbers, a different first letter. */
    assert_int_equal(run(f, "kti 651 pprayer", &o, &h), 0);
    o.mode = SIFT_SEARCH_HYBRID;
    n = run(f, "spray", &o, &h);
    assert_true(n >= 1);
    assert_string_equal(h[0].sku, "TOOL-SPR-1");
    assert_string_equal(h[0].title, "HVLP Paint Sprayer 650 W");
    assert_int_equal(h[0].lex_rank, 0);
    assert_int_equal(h[0].vec_rank, 1);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(h[i].sku, "GONE-1"); /* deleted before open */
    /* A partial word too. */
    n = run(f, "cordles dril", &o, &h);
    assert_true(n >= 1);
    assert_string_equal(h[0].sku, "TOOL-DRL-1");
}

static int is_nike(const char *sku)
{
    return !strncmp(sku, "NIKE-", 5);
}

static void test_filter_before_truncation(void **state)
{
    fixture *f = *state;
    sift_search_hit *h;
    /* Unfiltered, the 10 best running shoes are Adidas. */
    sift_search_opts o = {.k = 10, .mode = SIFT_SEARCH_LEXICAL, .no_filters = 1};
    size_t n = run(f, "running shoes running", &o, &h);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++)
        assert_false(is_nike(h[i].sku));
    /* A brand filter with k = 3 still gives three Nike products, in every mode. */
    sift_query q = {.brand = "Nike"};
    for (int m = SIFT_SEARCH_HYBRID; m <= SIFT_SEARCH_VECTOR; m++) {
        sift_search_opts fo = {.k = 3, .mode = m, .filters = &q, .candidates = 10};
        n = run(f, "running shoes running", &fo, &h);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
            assert_true(is_nike(h[i].sku));
    }
    /* From the text: "nike" is a brand the catalog knows, so a hard filter. */
    sift_search_opts ho = {.k = 10};
    n = run(f, "nike running shoes", &ho, &h);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_true(is_nike(h[i].sku));
    /* Size and colour from the text. */
    n = run(f, "red running shoes size 42", &ho, &h);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].sku, "NIKE-PEG-1");
    n = run(f, "running shoes size 43 in black or blue", &ho, &h);
    assert_int_equal(n, 7); /* six Adidas and NIKE-PEG-2 */
    /* A brand no product carries is only a word, not a filter that empties the list. */
    n = run(f, "puma running shoes", &ho, &h);
    assert_int_equal(n, 10);
    /* Filters off: Adidas back. */
    ho.no_filters = 1;
    n = run(f, "nike running shoes", &ho, &h);
    assert_int_equal(n, 10);
    int adidas = 0;
    for (size_t i = 0; i < n; i++)
        adidas += !is_nike(h[i].sku);
    assert_true(adidas > 0);
}

static void test_exact_sku(void **state)
{
    fixture *f = *state;
    sift_search_hit *h;
    for (int m = SIFT_SEARCH_HYBRID; m <= SIFT_SEARCH_LEXICAL; m++) {
        sift_search_opts o = {.k = 5, .mode = m};
        /* Named exactly (any case), first even against a brand filter it fails. */
        size_t n = run(f, "nike adi-run-07", &o, &h);
        assert_true(n >= 2);
        assert_string_equal(h[0].sku, "ADI-RUN-07");
        assert_int_equal(h[0].exact_sku, 1);
        for (size_t i = 1; i < n; i++) {
            assert_int_equal(h[i].exact_sku, 0);
            assert_true(is_nike(h[i].sku));
        }
    }
}

static void test_modes(void **state)
{
    fixture *f = *state;
    sift_search_hit *h;
    sift_err e = {0};
    size_t n;
    sift_search_opts o = {.k = 8, .mode = SIFT_SEARCH_LEXICAL};
    n = run(f, "paint", &o, &h);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(h[i].lex_rank == i + 1);
        assert_int_equal(h[i].vec_rank, 0);
    }
    o.mode = SIFT_SEARCH_VECTOR;
    /* Vector mode needs no store. */
    assert_int_equal(sift_search(f->se, NULL, "paint", &o, f->a, &h, &n, &e), 0);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h[i].lex_rank, 0);
        assert_int_equal(h[i].vec_rank, i + 1);
        assert_true(i == 0 || h[i].score <= h[i - 1].score);
    }
    o.mode = SIFT_SEARCH_HYBRID;
    n = run(f, "paint", &o, &h);
    assert_true(n >= 2);
    assert_true(h[0].lex_rank > 0 && h[0].vec_rank > 0);
    /* The in-memory BM25 needs no store either; the store's does. */
    assert_int_equal(sift_search(f->se, NULL, "paint sprayers", &o, f->a, &h, &n, &e), 0);
    assert_string_equal(h[0].sku, "TOOL-SPR-1");
    assert_true(h[0].lex_rank == 1);
    o.lexical_store = 1;
    assert_int_equal(sift_search(f->se, NULL, "paint", &o, f->a, &h, &n, &e), SIFT_EINVAL);
    o.lexical_store = 0;
    o.mode = 7;
    assert_int_equal(sift_search(f->se, f->s, "paint", &o, f->a, &h, &n, &e), SIFT_EINVAL);
    o.mode = SIFT_SEARCH_HYBRID;
    o.k = SIFT_SEARCH_K_MAX + 1;
    assert_int_equal(sift_search(f->se, f->s, "paint", &o, f->a, &h, &n, &e), SIFT_EINVAL);
    int m = -1;
    assert_int_equal(sift_search_mode_parse("vector", &m, &e), 0);
    assert_int_equal(m, SIFT_SEARCH_VECTOR);
    assert_int_equal(sift_search_mode_parse("semantic", &m, &e), SIFT_EINVAL);
    assert_non_null(strstr(e.msg, "hybrid"));
    /* A zero lexical weight leaves the vector order. */
    sift_search_opts wo = {.k = 5, .w_lexical = -1};
    sift_search_hit *v;
    sift_search_opts vo = {.k = 5, .mode = SIFT_SEARCH_VECTOR};
    size_t nv = run(f, "paint roller", &vo, &v);
    n = run(f, "paint roller", &wo, &h);
    assert_int_equal(n, nv);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(h[i].sku, v[i].sku);
}

static void test_empty(void **state)
{
    fixture *f = *state;
    sift_search_hit *h;
    assert_int_equal(run(f, "", NULL, &h), 0);
    assert_int_equal(run(f, "  ?! -- ", NULL, &h), 0);
    assert_int_equal(run(f, "zzzzqqqq", &(sift_search_opts){.mode = SIFT_SEARCH_LEXICAL}, &h), 0);
}

static void test_deterministic(void **state)
{
    fixture *f = *state;
    sift_search_hit *h1, *h2;
    sift_searcher *other = NULL;
    sift_err e = {0};
    assert_int_equal(sift_searcher_open(f->s, NULL, &other, &e), 0);
    const char *qs[] = {"running shoes", "paint sprayer", "black shoes 42", "pegasus"};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        size_t n1 = run(f, qs[i], NULL, &h1), n2;
        assert_int_equal(sift_search(other, f->s, qs[i], NULL, f->a, &h2, &n2, &e), 0);
        assert_int_equal(n1, n2);
        for (size_t j = 0; j < n1; j++) {
            assert_string_equal(h1[j].sku, h2[j].sku);
            assert_true(h1[j].score == h2[j].score);
            assert_true(j == 0 || h1[j].score <= h1[j - 1].score);
        }
    }
    sift_searcher_close(other);
}

static void put_desc(sift_store *s, const char *sku, const char *title, const char *desc)
{
    sift_product p = {.sku = sku,
                      .parent_id = "",
                      .title = title,
                      .brand = "",
                      .category = "",
                      .description = desc,
                      .version = 1};
    sift_err e = {0};
    assert_int_equal(sift_store_upsert_product(s, &p, NULL, &e), 0);
}

/* The in-memory BM25: a title hit outranks a description hit, plurals meet
 * singulars, a rare term outweighs a common one, all terms are OR-ed; and
 * the searcher is a snapshot of the catalog at open. */
static void test_bm25(void **state)
{
    (void)state;
    sift_store *s = NULL;
    sift_searcher *se = NULL;
    sift_arena *a = sift_arena_new(0);
    sift_err e = {0};
    assert_int_equal(sift_store_sqlite_open(":memory:", NULL, &s, &e), 0);
    put_desc(s, "D1", "Garden hose 20 m", "Pairs well with a bathroom vanity.");
    put_desc(s, "D2", "Bathroom vanities with top", "Oak.");
    put_desc(s, "D3", "Kitchen faucet", "Chrome finish, fits any kitchen.");
    put_desc(s, "D4", "Kitchen sink", "Stainless.");
    put_desc(s, "D5", "Kitchen towel", "Cotton.");
    assert_int_equal(sift_searcher_open(s, NULL, &se, &e), 0);
    sift_search_opts o = {.k = 10, .mode = SIFT_SEARCH_LEXICAL};
    sift_search_hit *h;
    size_t n;
    assert_int_equal(sift_search(se, NULL, "bathroom vanity", &o, a, &h, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(h[0].sku, "D2"); /* title, and "vanities" -> "vanity" */
    assert_string_equal(h[1].sku, "D1"); /* description only */
    /* "faucet" is in one product, "kitchen" in three: the faucet first, then
     * the other kitchen products (OR). */
    assert_int_equal(sift_search(se, NULL, "kitchen faucets", &o, a, &h, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(h[0].sku, "D3");
    /* Written after open: the store's BM25 finds it, the snapshot does not. */
    put_desc(s, "D6", "Patio umbrella", "Shade.");
    assert_int_equal(sift_search(se, NULL, "umbrella", &o, a, &h, &n, &e), 0);
    assert_int_equal(n, 0);
    o.lexical_store = 1;
    assert_int_equal(sift_search(se, s, "umbrella", &o, a, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].sku, "D6");
    assert_string_equal(h[0].title, "Patio umbrella");
    sift_searcher_close(se);
    sift_store_close(s);
    sift_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test(test_bm25),
        cmocka_unit_test_setup_teardown(test_typo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_before_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_sku, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typo, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_filter_before_truncation, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_exact_sku, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup_store, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup_store, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
