/* Atomic chunks and the JSON Lines splitter.
 *
 * A chunk is built from a product alone, so it cannot pick up stock or price:
 * those are not in sift_product, and the parser refuses attribute names that
 * would carry them. */
#include <string.h>

#include "sift/catalog.h"

static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026 */

void sift_chunk_init(sift_chunk *c)
{
    memset(c, 0, sizeof *c);
    sift_buf_init(&c->buf, 0);
}

void sift_chunk_free(sift_chunk *c)
{
    sift_buf_free(&c->buf);
    memset(c, 0, sizeof *c);
}

/* Appends "label: value\n" when value is not empty. */
static int line(sift_buf *b, const char *label, const char *value)
{
    if (!value || !*value)
        return 0;
    int rc = 0;
    if (label)
        rc = sift_buf_puts(b, label);
    if (!rc)
        rc = sift_buf_puts(b, value);
    if (!rc)
        rc = sift_buf_putc(b, '\n');
    return rc;
}

int sift_chunk_build(sift_chunk *c, const sift_product *p, sift_err *err)
{
    sift_buf *b = &c->buf;
    sift_buf_reset(b);
    int rc;

    /* The buffer holds, in order: attrs NUL description NUL text. Offsets
     * are kept while it may still move, pointers set at the end. */
    size_t attrs_off = 0;
    for (size_t i = 0; i < p->n_attrs; i++) {
        if (!p->attrs[i].value[0])
            continue;
        if ((b->len > attrs_off && (rc = sift_buf_puts(b, "; "))) ||
            (rc = sift_buf_puts(b, p->attrs[i].key)) || (rc = sift_buf_puts(b, ": ")) ||
            (rc = sift_buf_puts(b, p->attrs[i].value)))
            goto fail;
    }
    size_t attrs_len = b->len - attrs_off;
    if ((rc = sift_buf_putc(b, '\0')))
        goto fail;

    size_t desc_off = b->len;
    size_t dlen = strlen(p->description);
    size_t keep = sift_utf8_truncate(p->description, dlen, SIFT_CHUNK_DESCRIPTION_MAX);
    /* Trailing blanks before the ellipsis read badly and index nothing. */
    int truncated = keep < dlen;
    if (truncated)
        while (keep > 0 && (p->description[keep - 1] == ' ' || p->description[keep - 1] == '\n' ||
                            p->description[keep - 1] == '\r' || p->description[keep - 1] == '\t'))
            keep--;
    if ((rc = sift_buf_append(b, p->description, keep)) ||
        (truncated && (rc = sift_buf_puts(b, ellipsis))))
        goto fail;
    size_t desc_len = b->len - desc_off;
    if ((rc = sift_buf_putc(b, '\0')))
        goto fail;

    size_t text_off = b->len;
    if ((rc = line(b, NULL, p->sku)) || (rc = line(b, NULL, p->title)) ||
        (rc = line(b, "brand: ", p->brand)) || (rc = line(b, "category: ", p->category)))
        goto fail;
    /* Copies from the buffer into itself: reserve first so the source does
     * not move under the copy. */
    if (attrs_len > 0) {
        if ((rc = sift_buf_reserve(b, attrs_len + 1)) ||
            (rc = sift_buf_append(b, b->data + attrs_off, attrs_len)) ||
            (rc = sift_buf_putc(b, '\n')))
            goto fail;
    }
    if (desc_len > 0) {
        if ((rc = sift_buf_reserve(b, desc_len + 1)) ||
            (rc = sift_buf_append(b, b->data + desc_off, desc_len)) ||
            (rc = sift_buf_putc(b, '\n')))
            goto fail;
    }
    /* No trailing newline: the text is one document, not a file. */
    if (b->len > text_off && b->data[b->len - 1] == '\n')
        b->data[--b->len] = '\0';

    c->sku = p->sku;
    c->sku_len = strlen(p->sku);
    c->title = p->title;
    c->title_len = strlen(p->title);
    c->brand = p->brand;
    c->brand_len = strlen(p->brand);
    c->category = p->category;
    c->category_len = strlen(p->category);
    c->attrs = b->data + attrs_off;
    c->attrs_len = attrs_len;
    c->description = b->data + desc_off;
    c->description_len = desc_len;
    c->text = b->data + text_off;
    c->text_len = b->len - text_off;
    c->truncated = truncated;
    return 0;
fail:
    return sift_err_set(err, rc, "building the chunk of %s: out of memory", p->sku);
}

void sift_jsonl_init(sift_jsonl_reader *r, sift_jsonl_line_fn on_line, void *ud)
{
    memset(r, 0, sizeof *r);
    sift_buf_init(&r->line, SIFT_CATALOG_LINE_MAX);
    r->on_line = on_line;
    r->ud = ud;
}

void sift_jsonl_free(sift_jsonl_reader *r)
{
    sift_buf_free(&r->line);
}

static int emit(sift_jsonl_reader *r, const char *p, size_t n)
{
    r->lineno++;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    return r->on_line(r->ud, r->lineno, p, n);
}

int sift_jsonl_feed(sift_jsonl_reader *r, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        int rc = 0;
        if (r->skipping) {
            /* The rest of an oversized line: already reported. */
        } else if (r->line.len + n > SIFT_CATALOG_LINE_MAX) {
            /* Reported now, numbered as the line it is; the remainder is
             * dropped as it arrives. */
            r->skipping = 1;
            sift_buf_reset(&r->line);
            r->lineno++;
            rc = r->on_line(r->ud, r->lineno, NULL, 0);
        } else if (nl && r->line.len == 0) {
            rc = emit(r, data, n); /* whole line in the input: no copy */
        } else {
            rc = sift_buf_append(&r->line, data, n);
            if (!rc && nl) {
                rc = emit(r, r->line.data, r->line.len);
                sift_buf_reset(&r->line);
            }
        }
        if (nl)
            r->skipping = 0;
        if (rc)
            return rc;
        if (!nl)
            break;
        data = nl + 1;
        len -= n + 1;
    }
    return 0;
}

int sift_jsonl_finish(sift_jsonl_reader *r)
{
    int rc = 0;
    if (!r->skipping && r->line.len > 0)
        rc = emit(r, r->line.data, r->line.len);
    sift_buf_reset(&r->line);
    r->skipping = 0;
    return rc;
}
