/* Tests for the offline planner (include/sift/planner.h): the Nike / Hanoi /
 * Da Nang / HCMC conversation step by step, no results, tool errors, a
 * follow-up turn, the states where there is nothing to decide, determinism
 * and out-of-memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/model.h"
#include "sift/planner.h"

static const char *const nike_query =
    "Find Nike running shoes size 42 and check if they are in stock at the Hanoi, Da Nang, and "
    "HCMC warehouses";

static const char *const nike_products =
    "{\"products\":["
    "{\"sku\":\"NIKE-PEG40-41\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\","
    "\"brand\":\"Nike\",\"category\":\"Footwear > Running > Road\","
    "\"attributes\":{\"size\":\"41\",\"size_system\":\"EU\",\"colour\":\"black\"}},"
    "{\"sku\":\"NIKE-PEG40-42\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - Black\","
    "\"brand\":\"Nike\",\"category\":\"Footwear > Running > Road\","
    "\"attributes\":{\"size\":\"42\",\"size_system\":\"EU\",\"colour\":\"black\"}},"
    "{\"sku\":\"NIKE-VS3-42\",\"title\":\"Nike Vaporstride 3 Unisex Running Shoe - Blue\","
    "\"brand\":\"Nike\",\"category\":\"Footwear > Running > Road\","
    "\"attributes\":{\"size\":\"42\",\"colour\":\"blue\"}}],\"total\":3}";

/* Appends the step to the conversation, as the agent would. */
static void apply(sift_conv *c, const sift_planner_step *s)
{
    sift_err err = {0};
    if (s->kind == SIFT_PLAN_TOOL_CALLS)
        assert_int_equal(sift_conv_add_assistant(c, NULL, s->calls, s->n_calls, &err), 0);
    else
        assert_int_equal(sift_conv_add_assistant(c, s->text, NULL, 0, &err), 0);
}

static void tool_result(sift_conv *c, const char *id, const char *content)
{
    sift_err err = {0};
    assert_int_equal(sift_conv_add_tool_result(c, id, content, &err), 0);
}

static void next(sift_conv *c, sift_planner_step *s)
{
    sift_err err = {0};
    int rc = sift_planner_next(c->msgs, c->len, NULL, c->arena, s, &err);
    if (rc != 0)
        fail_msg("planner: %s", err.msg);
}

static void expect_call(const sift_planner_step *s, size_t i, const char *id, const char *name,
                        const char *args)
{
    assert_true(i < s->n_calls);
    assert_string_equal(s->calls[i].id, id);
    assert_string_equal(s->calls[i].name, name);
    assert_string_equal(s->calls[i].arguments, args);
    assert_int_equal(s->calls[i].arguments_len, strlen(args));
}

/* The tokens are words with their trailing spaces and add up to the text. */
static void check_tokens(const sift_planner_step *s)
{
    assert_int_equal(s->kind, SIFT_PLAN_ANSWER);
    assert_int_equal(strlen(s->text), s->text_len);
    size_t at = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        const sift_plan_token *t = &s->tokens[i];
        assert_ptr_equal(t->text, s->text + at);
        assert_true(t->len > 0);
        assert_true(t->text[0] != ' ');
        if (i + 1 < s->n_tokens)
            assert_int_equal(t->text[t->len - 1], ' ');
        at += t->len;
    }
    assert_int_equal(at, s->text_len);
}

/* Runs the Nike scenario up to the search step's result. */
static void nike_until_search(sift_conv *c)
{
    sift_err err = {0};
    sift_planner_step s;
    assert_int_equal(sift_conv_add_system(c, "You are a shopping assistant.", &err), 0);
    assert_int_equal(sift_conv_add_user(c, nike_query, &err), 0);

    next(c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_TOOL_CALLS);
    assert_int_equal(s.n_calls, 1);
    expect_call(&s, 0, "call_1", "search_products",
                "{\"query\":\"nike running shoes\",\"filters\":{\"brand\":\"Nike\","
                "\"category\":\"running shoes\",\"size\":\"42\",\"size_system\":\"EU\","
                "\"colour\":null,\"gender\":null,\"price_min\":null,\"price_max\":null,"
                "\"currency\":null,\"in_stock\":true,\"warehouses\":[\"HAN\",\"DAD\",\"SGN\"]},"
                "\"k\":5}");
    assert_string_equal(s.query.brand, "Nike");
    apply(c, &s);
    tool_result(c, "call_1", nike_products);
}

static void test_nike_scenario(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    nike_until_search(&c);

    /* Inventory at each warehouse and the price, in one message. The size-42
     * product wins over the search's first hit (size 41). */
    sift_planner_step s;
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_TOOL_CALLS);
    assert_int_equal(s.n_calls, 4);
    expect_call(&s, 0, "call_2", "check_inventory",
                "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}");
    expect_call(&s, 1, "call_3", "check_inventory",
                "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"DAD\"}");
    expect_call(&s, 2, "call_4", "check_inventory",
                "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"SGN\"}");
    expect_call(&s, 3, "call_5", "get_price", "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\"}");
    apply(&c, &s);
    /* Results may come back in any order; both inventory shapes are read. */
    tool_result(&c, "call_5",
                "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":3290000}");
    tool_result(&c, "call_3", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"DAD\",\"stock\":0}");
    tool_result(&c, "call_2",
                "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":\"HAN\",\"quantity\":12}]}");
    tool_result(&c, "call_4",
                "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":\"SGN\",\"quantity\":5}]}");

    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_ANSWER);
    assert_string_equal(s.text, "I found Nike Pegasus 40 Men's Running Shoe - Black "
                                "(NIKE-PEG40-42), size 42. Stock: Hanoi (HAN) 12, Da Nang (DAD) "
                                "0 \xe2\x80\x94 out of stock, Ho Chi Minh City (SGN) 5. Price: "
                                "3,290,000 VND. Other matches: Nike Vaporstride 3 Unisex Running "
                                "Shoe - Blue (NIKE-VS3-42).");
    check_tokens(&s);
    assert_string_equal(s.tokens[0].text, s.text);
    assert_int_equal(s.tokens[0].len, 2); /* "I " */
    apply(&c, &s);

    /* Nothing to do after the answer. */
    sift_err err = {0};
    assert_int_equal(sift_planner_next(c.msgs, c.len, NULL, a, &s, &err), SIFT_ESTATE);
    assert_non_null(strstr(err.msg, "new user message"));

    /* A follow-up that only changes the size keeps the rest. */
    assert_int_equal(sift_conv_add_user(&c, "what about size 43?", &err), 0);
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_TOOL_CALLS);
    assert_int_equal(s.n_calls, 1);
    expect_call(&s, 0, "call_6", "search_products",
                "{\"query\":\"nike running shoes\",\"filters\":{\"brand\":\"Nike\","
                "\"category\":\"running shoes\",\"size\":\"43\",\"size_system\":\"EU\","
                "\"colour\":null,\"gender\":null,\"price_min\":null,\"price_max\":null,"
                "\"currency\":null,\"in_stock\":true,\"warehouses\":[\"HAN\",\"DAD\",\"SGN\"]},"
                "\"k\":5}");
    apply(&c, &s);
    tool_result(&c, "call_6",
                "{\"products\":[{\"sku\":\"NIKE-PEG40-43\",\"title\":\"Nike Pegasus 40 Men's "
                "Running Shoe - Black\",\"brand\":\"Nike\",\"attributes\":{\"size\":\"43\"}}],"
                "\"total\":1}");
    next(&c, &s);
    assert_int_equal(s.n_calls, 4);
    expect_call(&s, 0, "call_7", "check_inventory",
                "{\"sku\":\"NIKE-PEG40-43\",\"location\":\"HAN\"}");
    apply(&c, &s);
    tool_result(&c, "call_7",
                "{\"sku\":\"NIKE-PEG40-43\",\"warehouses\":[{\"code\":\"HAN\",\"quantity\":0}]}");
    /* An empty list for the asked warehouse means none there. */
    tool_result(&c, "call_8", "{\"sku\":\"NIKE-PEG40-43\",\"warehouses\":[]}");
    tool_result(&c, "call_9",
                "{\"sku\":\"NIKE-PEG40-43\",\"warehouses\":[{\"code\":\"SGN\",\"quantity\":0}]}");
    tool_result(&c, "call_10",
                "{\"sku\":\"NIKE-PEG40-43\",\"currency\":\"VND\",\"amount\":3290000}");
    next(&c, &s);
    assert_string_equal(s.text, "I found Nike Pegasus 40 Men's Running Shoe - Black "
                                "(NIKE-PEG40-43), size 43. Stock: Hanoi (HAN) 0 \xe2\x80\x94 "
                                "out of stock, Da Nang (DAD) 0 \xe2\x80\x94 out of stock, Ho Chi "
                                "Minh City (SGN) 0 \xe2\x80\x94 out of stock. It is out of stock "
                                "everywhere I checked. Price: 3,290,000 VND.");
    check_tokens(&s);

    /* A follow-up naming another product starts a new search but keeps the
     * warehouses. */
    apply(&c, &s);
    assert_int_equal(sift_conv_add_user(&c, "Show me Adidas sandals instead", &err), 0);
    next(&c, &s);
    expect_call(&s, 0, "call_11", "search_products",
                "{\"query\":\"adidas sandals\",\"filters\":{\"brand\":\"Adidas\","
                "\"category\":\"sandals\",\"size\":null,\"size_system\":null,"
                "\"colour\":null,\"gender\":null,\"price_min\":null,\"price_max\":null,"
                "\"currency\":null,\"in_stock\":true,\"warehouses\":[\"HAN\",\"DAD\",\"SGN\"]},"
                "\"k\":5}");
    sift_arena_free(a);
}

static void test_no_results(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    assert_int_equal(
        sift_conv_add_user(&c, "purple Nike running shoes size 42 under 1 million", &err), 0);
    sift_planner_step s;
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1", "{\"products\":[],\"total\":0}");
    next(&c, &s);
    assert_string_equal(s.text, "I could not find any Nike running shoes in size 42 in purple "
                                "under 1,000,000 VND. Try another size, another colour, a wider "
                                "price range, other brands or a broader product type.");
    check_tokens(&s);

    /* With no filters at all, the advice is about the words. */
    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, "flux capacitor", &err), 0);
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1", "{\"products\":[]}");
    next(&c, &s);
    assert_string_equal(s.text, "I could not find any products matching \"flux capacitor\". Try "
                                "different or fewer words.");
    sift_arena_free(a);
}

static void test_tool_errors(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};

    /* The search itself fails. */
    assert_int_equal(sift_conv_add_user(&c, "nike shoes", &err), 0);
    sift_planner_step s;
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1", "{\"error\":\"catalog store unavailable\"}");
    next(&c, &s);
    assert_string_equal(s.text, "Sorry, the product search failed: catalog store unavailable. I "
                                "cannot check stock or prices without it; please try again in a "
                                "moment.");
    check_tokens(&s);

    /* A result that is not JSON at all counts as a failure too. */
    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, "nike shoes", &err), 0);
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1", "<html>502 Bad Gateway</html>");
    next(&c, &s);
    assert_non_null(strstr(s.text, "search failed: the search returned a result I cannot read"));

    /* One warehouse and the price fail; the answer says which. */
    sift_conv_init(&c, a);
    nike_until_search(&c);
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_2",
                "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":\"HAN\",\"quantity\":3}]}");
    tool_result(&c, "call_3", "{\"error\":{\"message\":\"warehouse DAD is offline\"}}");
    tool_result(&c, "call_4", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"SGN\",\"stock\":7}");
    tool_result(&c, "call_5", "{\"error\":\"location: must be one of HAN, DAD, SGN\"}");
    next(&c, &s);
    assert_string_equal(s.text, "I found Nike Pegasus 40 Men's Running Shoe - Black "
                                "(NIKE-PEG40-42), size 42. Stock: Hanoi (HAN) 3, Da Nang (DAD) "
                                "could not be checked (warehouse DAD is offline), Ho Chi Minh "
                                "City (SGN) 7. Price: could not be checked (location: must be one "
                                "of HAN, DAD, SGN). Other matches: Nike Vaporstride 3 Unisex "
                                "Running Shoe - Blue (NIKE-VS3-42).");
    check_tokens(&s);
    sift_arena_free(a);
}

/* No stock question: get_price only, in the stated currency. Stock asked
 * without a warehouse: one inventory call for all of them. */
static void test_price_only_and_all_warehouses(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    assert_int_equal(sift_conv_add_user(&c, "How much are Adidas sandals in USD?", &err), 0);
    sift_planner_step s;
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1",
                "{\"products\":[{\"sku\":\"ADI-AAF-40\",\"title\":\"Adidas Adilette Aqua Flow "
                "Unisex Slide Shoe - Beige\",\"brand\":\"Adidas\"}],\"total\":1}");
    next(&c, &s);
    assert_int_equal(s.n_calls, 1);
    expect_call(&s, 0, "call_2", "get_price", "{\"sku\":\"ADI-AAF-40\",\"currency\":\"USD\"}");
    apply(&c, &s);
    tool_result(&c, "call_2", "{\"sku\":\"ADI-AAF-40\",\"currency\":\"USD\",\"amount\":34.5}");
    next(&c, &s);
    assert_string_equal(s.text, "I found Adidas Adilette Aqua Flow Unisex Slide Shoe - Beige "
                                "(ADI-AAF-40). Price: 34.50 USD.");

    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, "Is the Puma Deviate Swift available?", &err), 0);
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1",
                "{\"products\":[{\"sku\":\"PUMA-DS-41\",\"title\":\"Puma Deviate Swift\"}]}");
    next(&c, &s);
    assert_int_equal(s.n_calls, 2);
    expect_call(&s, 0, "call_2", "check_inventory", "{\"sku\":\"PUMA-DS-41\"}");
    expect_call(&s, 1, "call_3", "get_price", "{\"sku\":\"PUMA-DS-41\",\"currency\":\"VND\"}");
    apply(&c, &s);
    tool_result(&c, "call_2",
                "{\"sku\":\"PUMA-DS-41\",\"warehouses\":[{\"code\":\"DAD\",\"quantity\":2},"
                "{\"code\":\"HAN\",\"quantity\":0},{\"code\":\"XYZ\",\"quantity\":4}]}");
    tool_result(&c, "call_3", "{\"sku\":\"PUMA-DS-41\",\"currency\":\"VND\",\"amount\":2790000}");
    next(&c, &s);
    assert_string_equal(s.text, "I found Puma Deviate Swift (PUMA-DS-41). Stock: Da Nang (DAD) "
                                "2, Hanoi (HAN) 0 \xe2\x80\x94 out of stock, XYZ 4. Price: "
                                "2,790,000 VND.");

    /* The size asked for was not among the results: the answer says so. */
    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, "puma 46", &err), 0);
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_1",
                "{\"products\":[{\"sku\":\"PUMA-DS-41\",\"title\":\"Puma Deviate Swift\","
                "\"attributes\":{\"size\":\"41\"}}]}");
    next(&c, &s);
    apply(&c, &s);
    tool_result(&c, "call_2", "{\"sku\":\"PUMA-DS-41\",\"currency\":\"VND\",\"amount\":1}");
    next(&c, &s);
    assert_string_equal(s.text, "I found Puma Deviate Swift (PUMA-DS-41), size 41 (no exact "
                                "match for size 46). Price: 1 VND.");

    /* The options: default currency and k. */
    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, "nike", &err), 0);
    sift_planner_opts o = {.currency = "USD", .k = 3};
    assert_int_equal(sift_planner_next(c.msgs, c.len, &o, a, &s, &err), 0);
    assert_non_null(strstr(s.calls[0].arguments, "\"k\":3}"));
    apply(&c, &s);
    tool_result(&c, "call_1", "{\"products\":[{\"sku\":\"N-1\"}]}");
    assert_int_equal(sift_planner_next(c.msgs, c.len, &o, a, &s, &err), 0);
    expect_call(&s, 0, "call_2", "get_price", "{\"sku\":\"N-1\",\"currency\":\"USD\"}");
    sift_arena_free(a);
}

static void test_nothing_to_decide(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    sift_planner_step s;
    assert_int_equal(sift_planner_next(c.msgs, 0, NULL, a, &s, &err), SIFT_EINVAL);
    assert_int_equal(sift_conv_add_system(&c, "system prompt", &err), 0);
    assert_int_equal(sift_planner_next(c.msgs, c.len, NULL, a, &s, &err), SIFT_EINVAL);
    assert_non_null(strstr(err.msg, "no user message"));

    assert_int_equal(sift_conv_add_user(&c, nike_query, &err), 0);
    next(&c, &s);
    apply(&c, &s);
    /* The search call has no result yet. */
    assert_int_equal(sift_planner_next(c.msgs, c.len, NULL, a, &s, &err), SIFT_ESTATE);
    assert_non_null(strstr(err.msg, "call_1 (search_products) has no result"));
    sift_arena_free(a);
}

/* The same conversation gives byte-identical steps. */
static char *transcript(void)
{
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_buf log;
    sift_buf_init(&log, 0);
    nike_until_search(&c);
    sift_planner_step s;
    next(&c, &s);
    for (size_t i = 0; i < s.n_calls; i++)
        sift_buf_printf(&log, "%s|%s|%s\n", s.calls[i].id, s.calls[i].name, s.calls[i].arguments);
    apply(&c, &s);
    for (size_t i = 0; i < s.n_calls; i++)
        tool_result(&c, s.calls[i].id,
                    i + 1 < s.n_calls
                        ? "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\",\"stock\":1}"
                        : "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\",\"amount\":1}");
    next(&c, &s);
    sift_buf_printf(&log, "%s\n", s.text);
    for (size_t i = 0; i < s.n_tokens; i++)
        sift_buf_printf(&log, "[%.*s]", (int)s.tokens[i].len, s.tokens[i].text);
    size_t n;
    char *out = sift_buf_detach(&log, &n);
    sift_arena_free(a);
    return out;
}

static void test_determinism(void **state)
{
    (void)state;
    char *one = transcript();
    char *two = transcript();
    assert_string_equal(one, two);
    assert_non_null(strstr(one, "call_5|get_price|"));
    sift_free(one);
    sift_free(two);
}

/* A message with nothing to search for gets the help text, not a search,
 * both as a first message and as a follow-up. */
static void test_nothing_asked(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    sift_planner_step s;
    assert_int_equal(sift_conv_add_user(&c, "hello!", &err), 0);
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_ANSWER);
    assert_non_null(strstr(s.text, "rule-based planner rather than a language model"));
    check_tokens(&s);
    apply(&c, &s);
    assert_int_equal(sift_conv_add_user(&c, "Nike", &err), 0);
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_TOOL_CALLS);
    apply(&c, &s);
    tool_result(&c, "call_1", "{\"products\":[]}");
    next(&c, &s);
    apply(&c, &s);
    assert_int_equal(sift_conv_add_user(&c, "thanks", &err), 0);
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_ANSWER);
    assert_non_null(strstr(s.text, "I can search the catalog"));
    sift_arena_free(a);
}

/* Only a price and warehouses: the planner asks which product, and a colour
 * or size alone is searched as text, because search_products needs some. */
static void test_no_product(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    sift_planner_step s;
    assert_int_equal(
        sift_conv_add_user(&c, "anything under 2 million in stock at Hanoi or HCMC?", &err), 0);
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_ANSWER);
    assert_string_equal(s.text, "Which product should I look for? Tell me a brand, a product "
                                "type or a model name and I will search for it under 2,000,000 "
                                "VND and check its stock in Hanoi (HAN) and Ho Chi Minh City "
                                "(SGN).");
    check_tokens(&s);

    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, "something black in size 42", &err), 0);
    next(&c, &s);
    assert_int_equal(s.kind, SIFT_PLAN_TOOL_CALLS);
    assert_non_null(strstr(s.calls[0].arguments, "{\"query\":\"black 42\","));

    /* The search text is cut to 256 bytes at a word boundary. */
    char longq[2048] = "";
    for (int i = 0; i < 100; i++)
        strcat(longq, "zebra ");
    sift_conv_init(&c, a);
    assert_int_equal(sift_conv_add_user(&c, longq, &err), 0);
    next(&c, &s);
    const char *q = strstr(s.calls[0].arguments, "\"query\":\"") + 9;
    const char *e = strchr(q, '"');
    assert_int_equal(e - q, 251); /* 42 words of 5 letters and 41 spaces */
    sift_arena_free(a);
}

static void test_tokenize(void **state)
{
    (void)state;
    sift_arena *a = sift_arena_new(0);
    sift_plan_token *t;
    size_t n;
    assert_int_equal(sift_planner_tokenize("", 0, a, &t, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sift_planner_tokenize("one", 3, a, &t, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(t[0].len, 3);
    assert_int_equal(sift_planner_tokenize("  two  words ", 13, a, &t, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(t[0].len, 7); /* "  two  " */
    assert_int_equal(t[1].len, 6); /* "words " */
    assert_int_equal(sift_planner_tokenize("   ", 3, a, &t, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(t[0].len, 3);
    sift_arena_free(a);
}

/* Out of memory at every point of a full run: an error, never a crash or a
 * leak (the arena owns everything, cJSON trees are freed on every path). */
static void test_oom(void **state)
{
    (void)state;
    int completed = 0;
    for (long k = 0; k < 2000 && !completed; k++) {
        sift_arena *a = sift_arena_new(0);
        sift_conv c;
        sift_conv_init(&c, a);
        sift_err err = {0};
        sift_planner_step s;
        assert_int_equal(sift_conv_add_user(&c, nike_query, &err), 0);
        assert_int_equal(
            sift_conv_add_assistant(
                &c, NULL, &(sift_tool_call){"call_1", "search_products", "{}", 2}, 1, &err),
            0);
        assert_int_equal(sift_conv_add_tool_result(&c, "call_1", nike_products, &err), 0);
        sift_mem_fail_after(k);
        int rc = sift_planner_next(c.msgs, c.len, NULL, a, &s, &err);
        sift_mem_fail_after(-1);
        if (rc == 0) {
            completed = 1;
            assert_int_equal(s.n_calls, 4);
        } else {
            assert_int_equal(rc, SIFT_ENOMEM);
        }
        sift_arena_free(a);
    }
    assert_true(completed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nike_scenario),
        cmocka_unit_test(test_no_results),
        cmocka_unit_test(test_tool_errors),
        cmocka_unit_test(test_price_only_and_all_warehouses),
        cmocka_unit_test(test_nothing_to_decide),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_nothing_asked),
        cmocka_unit_test(test_no_product),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
