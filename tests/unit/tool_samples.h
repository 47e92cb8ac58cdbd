/* Sample tool argument declarations shared by the tool tests, the schema
 * golden files and the fuzz target. The real shop tools live in src/tools. */
#ifndef SIFT_TEST_TOOL_SAMPLES_H
#define SIFT_TEST_TOOL_SAMPLES_H

#include "sift/tool.h"

#define CHECK_INVENTORY_FIELDS(F)                                                                  \
    F(STRING, sku, "Product SKU, as found in search results", SIFT_REQUIRED, .min_len = 1,         \
      .max_len = 64)                                                                               \
    F(ENUM, location, "Warehouse code", SIFT_REQUIRED, .values = "HAN,DAD,SGN")
SIFT_TOOL_ARGS(check_inventory_args, CHECK_INVENTORY_FIELDS);

#define GET_PRICE_FIELDS(F)                                                                        \
    F(STRING, sku, "Product SKU", SIFT_REQUIRED, .min_len = 1, .max_len = 64)                      \
    F(ENUM, currency, "Currency of the price; VND when not given", SIFT_OPTIONAL,                  \
      .values = "VND,USD")
SIFT_TOOL_ARGS(get_price_args, GET_PRICE_FIELDS);

#define SEARCH_FILTERS_FIELDS(F)                                                                   \
    F(STRING, brand, "Brand name", SIFT_OPTIONAL, .max_len = 64)                                   \
    F(STRING, size, "Size label, e.g. M or 42", SIFT_OPTIONAL, .max_len = 16)                      \
    F(STRING, colour, "Colour name", SIFT_OPTIONAL, .max_len = 32)                                 \
    F(STRING, category, "Category path, e.g. shoes/running", SIFT_OPTIONAL, .max_len = 128)        \
    F(NUMBER, price_min, "Lowest price in VND", SIFT_OPTIONAL, SIFT_MIN(0))                        \
    F(NUMBER, price_max, "Highest price in VND", SIFT_OPTIONAL, SIFT_MIN(0))                       \
    F(BOOLEAN, in_stock, "Only products in stock", SIFT_OPTIONAL)
SIFT_TOOL_ARGS(search_filters, SEARCH_FILTERS_FIELDS);

#define SEARCH_PRODUCTS_FIELDS(F)                                                                  \
    F(STRING, query, "What the shopper is looking for, in their words", SIFT_REQUIRED,             \
      .min_len = 1, .max_len = 256)                                                                \
    F(OBJECT, filters, "Structured filters", SIFT_OPTIONAL, search_filters)                        \
    F(STRINGS, tags, "Tags that must all match", SIFT_OPTIONAL, .max_items = 5, .max_len = 32)     \
    F(INTEGER, k, "Number of results", SIFT_OPTIONAL, SIFT_RANGE(1, 50))
SIFT_TOOL_ARGS(search_products_args, SEARCH_PRODUCTS_FIELDS);

#endif
