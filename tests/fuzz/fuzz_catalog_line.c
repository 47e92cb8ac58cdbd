/* Fuzz target for the catalog line parsers, the chunk builder and the JSON
 * Lines splitter.
 *
 * The input is parsed as a product, a stock line and a price line. A product
 * that parses must give a chunk that holds its SKU, is valid UTF-8 and keeps
 * the description within its limit; every string must respect its limit.
 * A rejected line must come with a message. Then the same bytes go through
 * the splitter whole and in two pieces split at a point taken from the input,
 * which must give the same lines. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static int collect(void *ud, size_t lineno, const char *line, size_t len)
{
    sift_buf *b = ud;
    sift_buf_printf(b, "%zu:", lineno);
    if (line)
        sift_buf_append(b, line, len);
    else
        sift_buf_puts(b, "<long>");
    sift_buf_putc(b, '\n');
    return 0;
}

static void split(const char *s, size_t n, size_t cut, sift_buf *out)
{
    sift_jsonl_reader r;
    sift_jsonl_init(&r, collect, out);
    check(sift_jsonl_feed(&r, s, cut) == 0);
    check(sift_jsonl_feed(&r, s + cut, n - cut) == 0);
    check(sift_jsonl_finish(&r) == 0);
    sift_jsonl_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    sift_arena *a = sift_arena_new(0);
    if (!a)
        return 0;
    sift_err e = {0};
    sift_product p;
    int op;
    int rc = sift_product_parse(a, s, size, 1, &p, &op, &e);
    if (rc == 0) {
        check(sift_sku_check(p.sku, strlen(p.sku), NULL) == 0);
        check(p.version >= 0 && p.version <= SIFT_VERSION_MAX);
        if (op == SIFT_OP_UPSERT) {
            check(strlen(p.title) > 0 && strlen(p.title) <= SIFT_TITLE_MAX);
            check(strlen(p.description) <= SIFT_DESCRIPTION_MAX);
            check(p.n_attrs <= SIFT_ATTRS_MAX);
            sift_chunk c;
            sift_chunk_init(&c);
            check(sift_chunk_build(&c, &p, &e) == 0);
            check(memmem(c.text, c.text_len, p.sku, strlen(p.sku)) != NULL);
            check(sift_utf8_valid(c.text, c.text_len));
            check(c.description_len <= SIFT_CHUNK_DESCRIPTION_MAX + 3);
            for (size_t i = 0; i < p.n_attrs; i++)
                check(strstr(c.attrs, p.attrs[i].key) != NULL);
            sift_chunk_free(&c);
        }
    } else {
        check(rc == SIFT_EINVAL || rc == SIFT_ETOOBIG);
        check(e.msg[0] != '\0');
    }
    sift_stock st;
    memset(&e, 0, sizeof e);
    if (sift_stock_parse(a, s, size, 1, &st, &e) == 0)
        check(st.quantity >= 0 && strlen(st.warehouse) <= SIFT_WAREHOUSE_MAX);
    else
        check(e.msg[0] != '\0');
    sift_price pr;
    memset(&e, 0, sizeof e);
    if (sift_price_parse(a, s, size, 1, &pr, &e) == 0)
        check(pr.amount_minor >= 0 && strlen(pr.currency) == 3);
    else
        check(e.msg[0] != '\0');
    sift_arena_free(a);

    sift_buf whole, parts;
    sift_buf_init(&whole, 0);
    sift_buf_init(&parts, 0);
    split(s, size, size, &whole);
    split(s, size, size ? data[0] % (size + 1) : 0, &parts);
    check(whole.len == parts.len &&
          (whole.len == 0 || memcmp(whole.data, parts.data, whole.len) == 0));
    sift_buf_free(&whole);
    sift_buf_free(&parts);
    return 0;
}
