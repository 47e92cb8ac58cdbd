/* Round trip of the server's SSE writer through the SSE parser: whatever the
 * event name and data, sift_http_sse_format writes exactly
 * sift_http_sse_size bytes, and the parser reads back one event with the
 * same name ("message" when none) and the same data, line ends (\r\n, \r,
 * \n) normalised to \n. A name with a line break must be refused.
 *
 * Input layout: byte 0 is the length of the event name (255: no name), then
 * the name, then the data. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift/buf.h"
#include "sift/server.h"
#include "sift/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    int events;
    sift_buf name, data;
};

static int on_event(const sift_sse_event *ev, void *udata, sift_err *err)
{
    (void)err;
    struct seen *s = udata;
    s->events++;
    sift_buf_append(&s->name, ev->event, ev->event_len);
    sift_buf_append(&s->data, ev->data, ev->data_len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nlen = data[0];
    const char *event = NULL;
    char name[256];
    size_t off = 1;
    if (nlen != 255) {
        if (nlen > size - 1)
            nlen = size - 1;
        memcpy(name, data + 1, nlen);
        name[nlen] = '\0';
        event = name;
        off += nlen;
    }
    const char *body = (const char *)data + off;
    size_t blen = size - off;

    sift_buf out;
    sift_buf_init(&out, 0);
    int rc = sift_http_sse_format(&out, event, body, blen);
    if (event != NULL && strpbrk(event, "\r\n") != NULL) {
        if (rc != SIFT_EINVAL || out.len != 0)
            abort();
        sift_buf_free(&out);
        return 0;
    }
    if (rc != 0 || out.len != sift_http_sse_size(event, body, blen))
        abort();

    /* What a reader must get back. */
    sift_buf want;
    sift_buf_init(&want, 0);
    for (size_t i = 0; i < blen; i++) {
        if (body[i] == '\r') {
            sift_buf_putc(&want, '\n');
            if (i + 1 < blen && body[i + 1] == '\n')
                i++;
        } else {
            sift_buf_putc(&want, body[i]);
        }
    }
    const char *want_name = event != NULL && event[0] != '\0' ? event : "message";

    struct seen s = {0};
    sift_buf_init(&s.name, 0);
    sift_buf_init(&s.data, 0);
    sift_sse_parser p;
    sift_sse_init(&p, out.len + 16);
    sift_err err = {0};
    if (sift_sse_feed(&p, out.data, out.len, on_event, &s, &err) != 0)
        abort();
    if (s.events != 1 || s.name.len != strlen(want_name) ||
        memcmp(s.name.data, want_name, s.name.len) != 0 || s.data.len != want.len ||
        (want.len > 0 && memcmp(s.data.data, want.data, want.len) != 0))
        abort();
    if (sift_sse_finish(&p, on_event, &s, &err) != 0 || s.events != 1)
        abort();
    sift_sse_free(&p);
    sift_buf_free(&s.name);
    sift_buf_free(&s.data);
    sift_buf_free(&want);
    sift_buf_free(&out);
    return 0;
}
