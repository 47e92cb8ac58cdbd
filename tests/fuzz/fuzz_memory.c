/* Fuzzes the stored-conversation loader and the trimmer. Any input either
 * loads or is refused with SIFT_EPROTO; a loaded conversation serialises to a
 * form that loads back to the same bytes, and trimming it at every message
 * budget keeps the system prefix, the newest user message, and the call of
 * every kept tool result. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/memory.h"
#include "sift/model.h"

static size_t owner_of(const sift_message *msgs, size_t j)
{
    for (size_t k = j; k-- > 0;)
        for (size_t c = 0; c < msgs[k].n_tool_calls; c++)
            if (strcmp(msgs[k].tool_calls[c].id, msgs[j].tool_call_id) == 0)
                return k;
    abort(); /* the loader promised an earlier call */
}

static void check_trim(const sift_message *msgs, size_t n, size_t budget)
{
    sift_memory_budget b = {.max_messages = budget};
    size_t first = 0;
    if (sift_memory_trim(msgs, n, &b, &first))
        abort();
    size_t n_sys = sift_memory_system_prefix(msgs, n);
    if (first < n_sys || first > n)
        abort();
    for (size_t j = first; j < n; j++)
        if (msgs[j].role == SIFT_ROLE_TOOL && owner_of(msgs, j) < first)
            abort();
    for (size_t j = n; j-- > n_sys;)
        if (msgs[j].role == SIFT_ROLE_USER) {
            if (first > j)
                abort();
            break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sift_arena *a = sift_arena_new(0);
    if (!a)
        return 0;
    sift_conv c;
    sift_conv_init(&c, a);
    sift_err err = {0};
    int rc = sift_memory_from_json((const char *)data, size, &c, &err);
    if (rc) {
        if (rc != SIFT_EPROTO || c.len != 0 || !err.msg[0])
            abort();
        sift_arena_free(a);
        return 0;
    }
    for (size_t budget = 0; budget <= c.len + 1 && budget < 64; budget++)
        check_trim(c.msgs, c.len, budget);

    sift_buf s1, s2;
    sift_buf_init(&s1, 0);
    sift_buf_init(&s2, 0);
    if (sift_memory_to_json(c.msgs, c.len, &s1, &err))
        abort();
    sift_conv back;
    sift_conv_init(&back, a);
    if (sift_memory_from_json(s1.data, s1.len, &back, &err) || back.len != c.len)
        abort();
    if (sift_memory_to_json(back.msgs, back.len, &s2, &err))
        abort();
    sift_conv again;
    sift_conv_init(&again, a);
    sift_buf s3;
    sift_buf_init(&s3, 0);
    if (sift_memory_from_json(s2.data, s2.len, &again, &err) ||
        sift_memory_to_json(again.msgs, again.len, &s3, &err))
        abort();
    if (s2.len != s3.len || memcmp(s2.data, s3.data, s2.len) != 0)
        abort();
    sift_buf_free(&s1);
    sift_buf_free(&s2);
    sift_buf_free(&s3);
    sift_arena_free(a);
    return 0;
}
