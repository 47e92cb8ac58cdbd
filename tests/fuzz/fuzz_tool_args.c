/* Fuzz target for the tool argument decoder: any text, decoded against the
 * sample schemas, must either fail with a message or give arguments that
 * encode to JSON which decodes again to the same encoding (decode and encode
 * agree), and nothing may crash or leak.
 *
 * Input layout: byte 0 picks the schema, the rest is the argument text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/tool_samples.h"
#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const sift_schema *schemas[] = {
        sift_args_schema(check_inventory_args),
        sift_args_schema(get_price_args),
        sift_args_schema(search_products_args),
        sift_args_schema(search_filters),
    };
    if (size < 1)
        return 0;
    const sift_schema *s = schemas[data[0] % 4];
    const char *json = (const char *)data + 1;
    size_t len = size - 1;

    sift_arena *a = sift_arena_new(256);
    if (a == NULL)
        return 0;
    sift_err err = {0};
    const void *args;
    int rc = sift_args_decode(s, json, len, a, &args, &err);
    if (rc < 0) {
        /* A refusal always says why. */
        if (err.code != rc || err.msg[0] == '\0')
            abort();
        sift_arena_free(a);
        return 0;
    }

    sift_buf first, second;
    sift_buf_init(&first, 0);
    sift_buf_init(&second, 0);
    if (sift_args_json(s, args, &first) < 0)
        abort();
    const void *again;
    if (sift_args_decode(s, first.data, first.len, a, &again, &err) < 0)
        abort(); /* our own encoding of valid arguments must be valid */
    if (sift_args_json(s, again, &second) < 0)
        abort();
    if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
        abort();
    sift_buf_free(&first);
    sift_buf_free(&second);
    sift_arena_free(a);
    return 0;
}
