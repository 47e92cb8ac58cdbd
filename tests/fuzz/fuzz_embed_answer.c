/* Fuzz target for the OpenAI embeddings answer validator
 * (sift_embed_openai_parse).
 *
 * The first byte chooses the batch size (1..4) and the second the dimension
 * (1..8); the rest is the answer body. Whatever the bytes: the result is 0,
 * SIFT_EPROTO or SIFT_ENOMEM; an error has a message; on success every
 * vector is finite and has length 1 or is all zeros, and parsing the same
 * bytes again gives the same vectors. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sift/embed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n = (size_t)(data[0] % 4) + 1, dims = (size_t)(data[1] % 8) + 1;
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    float a[32], b[32];
    sift_err err = {0};
    int rc = sift_embed_openai_parse(body, len, n, dims, a, &err);
    check(rc == 0 || rc == SIFT_EPROTO || rc == SIFT_ENOMEM);
    if (rc) {
        check(err.code == rc && err.msg[0] != '\0');
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (size_t d = 0; d < dims; d++) {
            check(isfinite(a[i * dims + d]));
            ss += (double)a[i * dims + d] * a[i * dims + d];
        }
        check(ss == 0 || fabs(ss - 1) < 1e-3);
    }
    check(sift_embed_openai_parse(body, len, n, dims, b, &err) == 0);
    check(memcmp(a, b, n * dims * sizeof a[0]) == 0);
    return 0;
}
