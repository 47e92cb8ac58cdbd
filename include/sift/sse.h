/* A Server-Sent Events parser (the `text/event-stream` format).
 *
 * Pure: no I/O, no globals, no allocation beyond its own buffers. Bytes go in
 * with sift_sse_feed in pieces of any size, events come out through a
 * callback, and any way of splitting the same input gives the same events
 * (that is what tests/unit/test_sse.c and tests/fuzz/fuzz_sse.c check).
 *
 * It follows the WHATWG "event stream interpretation" rules:
 *  - lines end in "\r\n", "\n" or "\r" (a "\r\n" split between two feeds is
 *    still one line end);
 *  - one UTF-8 byte order mark at the very start of the stream is skipped;
 *  - lines starting with ':' are comments and are ignored (they are skipped
 *    as they stream past, never buffered, so long keep-alive padding costs no
 *    memory and is not subject to the size limit);
 *  - "name: value" sets a field; one space after the colon is dropped; a line
 *    without a colon is a field with an empty value;
 *  - fields: "data" (several data lines are joined with "\n"), "event" (the
 *    event name; "message" when not given), "id" (the last event id: it stays
 *    set for later events until changed; an id containing a NUL byte is
 *    ignored), "retry" (digits only, milliseconds; kept, see retry_ms);
 *    unknown fields are ignored;
 *  - a blank line dispatches the event; an event whose data buffer is empty
 *    (no "data" line at all) is not dispatched, and its name is forgotten.
 *
 * One deliberate difference from the spec: at the end of the stream
 * (sift_sse_finish) an unterminated last line is processed as if it had a
 * line end, and a pending event is dispatched as if the final blank line had
 * arrived. The spec discards such an event, because a browser reconnects and
 * the server resends it; sift's callers (LLM providers, tool servers) do not
 * reconnect, and a server that forgets the final blank line has still sent
 * the whole event, so dropping it would lose the model's last tokens.
 *
 * Bounded memory: `max_event_bytes` bounds one line (without its line end)
 * and one event (data bytes including the joining "\n"s, plus the event name
 * and id). Going over it is SIFT_ETOOBIG, with a message saying which limit;
 * the parser then refuses further input. Memory is therefore at most a few
 * times max_event_bytes whatever the peer sends. */
#ifndef SIFT_SSE_H
#define SIFT_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "sift/buf.h"
#include "sift/err.h"

/* Default for max_event_bytes when 0 is given: 1 MiB. */
#define SIFT_SSE_DEFAULT_MAX_EVENT ((size_t)1024 * 1024)

/* One dispatched event. The strings are NUL-terminated (the lengths do not
 * count the NUL; data may itself contain NUL bytes) and valid only during
 * the callback. */
typedef struct sift_sse_event {
    const char *event; /* event name, "message" when the stream gave none */
    size_t event_len;
    const char *data; /* data lines joined with "\n", without a final "\n" */
    size_t data_len;
    const char *id; /* last event id, "" when none was ever set */
    size_t id_len;
    int64_t retry_ms; /* last valid "retry" value, -1 when none */
} sift_sse_event;

/* Receives an event. Return 0 to go on, or a negative SIFT_E code to stop:
 * sift_sse_feed/finish then return that code at once and the parser refuses
 * further input. `err` is the sift_err passed to feed/finish (may be NULL);
 * the callback may fill it with sift_err_set, otherwise a generic message is
 * recorded. */
typedef int (*sift_sse_event_fn)(const sift_sse_event *ev, void *udata, sift_err *err);

/* The parser. Treat the members as private; it is a struct so that it can be
 * embedded in its owner without an allocation. */
typedef struct sift_sse_parser {
    size_t max_event;   /* the limit (see above) */
    sift_buf line;      /* a line not yet terminated */
    sift_buf data;      /* data of the event being built, each line + "\n" */
    sift_buf name;      /* event name of the event being built */
    sift_buf id;        /* last event id */
    int64_t retry_ms;   /* -1 until a valid retry field */
    uint64_t events;    /* events dispatched so far */
    int error;          /* 0, or the code that stopped the parser */
    unsigned char bom;  /* BOM bytes matched so far; 3 = BOM check finished */
    unsigned char cr;   /* the last line ended in '\r': skip a following '\n' */
    unsigned char skip; /* inside a comment line: drop bytes until line end */
} sift_sse_parser;

/* Prepares a parser. `max_event_bytes` is the limit (0: the default). It
 * allocates nothing until input arrives. */
void sift_sse_init(sift_sse_parser *p, size_t max_event_bytes);

/* Parses `len` bytes, calling `cb` for each complete event. Returns 0, or
 * SIFT_ETOOBIG (line or event over the limit), SIFT_ENOMEM, the negative code
 * a callback returned, or the earlier error if the parser had already
 * stopped. Details go to `err` (may be NULL). */
int sift_sse_feed(sift_sse_parser *p, const char *buf, size_t len, sift_sse_event_fn cb,
                  void *udata, sift_err *err);

/* Ends the stream: processes an unterminated last line and dispatches a
 * pending event (see above). Same return values as sift_sse_feed. On success
 * the parser is ready for a new stream, as after sift_sse_reset except that
 * sift_sse_count keeps counting; on error it stays stopped. */
int sift_sse_finish(sift_sse_parser *p, sift_sse_event_fn cb, void *udata, sift_err *err);

/* Forgets all state (partial line, event, last id, retry, error) and keeps
 * the limit, so the parser can read a new stream. Keeps buffer memory. */
void sift_sse_reset(sift_sse_parser *p);

/* Releases the buffers. The parser may be initialised again afterwards. */
void sift_sse_free(sift_sse_parser *p);

/* Events dispatched since init or reset. */
uint64_t sift_sse_count(const sift_sse_parser *p);

#endif
