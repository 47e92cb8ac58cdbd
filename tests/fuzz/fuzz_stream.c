/* Fuzzes the stream delta assembler. The input is a stream: one chunk per
 * line, fed in order, then finished. Besides "no crash, no leak", it checks
 * that the text handed to the callbacks adds up to the assembled message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/model.h"

#define MAXCALLS 8

typedef struct sums {
    size_t content;
    size_t args[MAXCALLS];
    size_t done;
} sums;

static int on_content(void *ud, const char *text, size_t len)
{
    ((sums *)ud)->content += len;
    return 0;
}

static int on_tool_args(void *ud, size_t index, const char *frag, size_t len)
{
    if (index >= MAXCALLS)
        abort();
    ((sums *)ud)->args[index] += len;
    return 0;
}

static int on_tool_done(void *ud, size_t index, const sift_tool_call *call)
{
    sums *s = ud;
    if (index != s->done++ || call->arguments_len != s->args[index])
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sums sum = {0};
    sift_stream_cbs cbs = {.ud = &sum,
                           .on_content = on_content,
                           .on_tool_args = on_tool_args,
                           .on_tool_done = on_tool_done};
    sift_stream_limits lim = {
        .max_content = 4096, .max_arguments = 4096, .max_tool_calls = MAXCALLS};
    sift_stream s;
    sift_stream_init(&s, &cbs, &lim);
    sift_err err = {0};
    const char *p = (const char *)data;
    const char *end = p + size;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        rc = sift_stream_feed(&s, p, n, &err);
        p += n + (nl != NULL);
    }
    if (rc == 0) {
        sift_arena *a = sift_arena_new(0);
        sift_chat_result res;
        if (a && sift_stream_finish(&s, a, &res, &err) == 0) {
            if (res.message.content_len != sum.content || res.message.n_tool_calls > MAXCALLS)
                abort();
            for (size_t i = 0; i < res.message.n_tool_calls; i++)
                if (res.message.tool_calls[i].arguments_len != sum.args[i])
                    abort();
        }
        sift_arena_free(a);
    }
    sift_stream_free(&s);
    return 0;
}
