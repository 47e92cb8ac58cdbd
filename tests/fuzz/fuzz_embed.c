/* Fuzz target for text folding and the hashed embedder.
 *
 * Folding never lengthens the text, never starts or ends with a space and
 * never holds two spaces in a row; folding is idempotent. The embedding of
 * any bytes is finite and has length 1 or is all zeros (always when the
 * folded text is empty; otherwise only if hashed features cancel); the same
 * bytes always give the same vector. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sift/buf.h"
#include "sift/embed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    sift_buf f, g;
    sift_buf_init(&f, 0);
    sift_buf_init(&g, 0);
    check(sift_text_fold(s, size, &f) == 0);
    check(f.len <= size);
    if (f.len) {
        check(f.data[0] != ' ' && f.data[f.len - 1] != ' ');
        check(strstr(f.data, "  ") == NULL);
        check(sift_text_fold(f.data, f.len, &g) == 0);
        check(g.len == f.len && memcmp(g.data, f.data, f.len) == 0);
    }

    static sift_embedder *e;
    if (!e) {
        sift_hashed_opts o = {.dims = 64};
        check(sift_embedder_hashed_new(&o, &e, NULL) == 0);
    }
    float v[64], w[64];
    const char *t[1] = {s};
    size_t l[1] = {size};
    check(sift_embedder_embed_sync(e, t, l, 1, v, NULL) == 0);
    check(sift_embedder_embed_sync(e, t, l, 1, w, NULL) == 0);
    for (int i = 0; i < 64; i++) {
        uint32_t a, b;
        memcpy(&a, &v[i], 4);
        memcpy(&b, &w[i], 4);
        check(a == b); /* the same bits, not merely equal values */
    }
    double ss = 0;
    for (int i = 0; i < 64; i++) {
        check(isfinite(v[i]));
        ss += (double)v[i] * v[i];
    }
    check(ss == 0 || fabs(ss - 1) < 1e-4);
    if (f.len == 0)
        check(ss == 0);
    sift_buf_free(&f);
    sift_buf_free(&g);
    return 0;
}
