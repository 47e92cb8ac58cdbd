/* Run events: JSON encoding and the bounded queue to a slow consumer. */
#include "sift/events.h"
#include "sift/arena.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const names[] = {
    "run.started", "token",  "tool.started", "tool.finished",
    "products",    "answer", "run.finished", "error",
};

const char *sift_event_name(sift_event_type type)
{
    return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

/* ,"key": without printf: this runs for every token of every answer */
static int put_key(sift_buf *b, const char *key)
{
    size_t n = strlen(key);
    int rc = sift_buf_reserve(b, n + 4);
    if (rc)
        return rc;
    char *p = b->data + b->len;
    *p++ = ',';
    *p++ = '"';
    memcpy(p, key, n);
    p += n;
    *p++ = '"';
    *p++ = ':';
    *p = '\0';
    b->len += n + 4;
    return 0;
}

static int put_u64(sift_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return sift_buf_append(b, tmp + i, sizeof tmp - i);
}

/* Microseconds as milliseconds with three decimals, exactly what "%.3f" of
 * us / 1000.0 prints, without printf (a tool.finished per tool call). */
static int put_ms3(sift_buf *b, int64_t us)
{
    int rc = 0;
    uint64_t u = (uint64_t)us;
    if (us < 0) {
        rc = sift_buf_putc(b, '-');
        u = 0 - u;
    }
    if (rc || (rc = put_u64(b, u / 1000)))
        return rc;
    unsigned f = (unsigned)(u % 1000);
    char frac[4] = {'.', (char)('0' + f / 100), (char)('0' + f / 10 % 10), (char)('0' + f % 10)};
    return sift_buf_append(b, frac, sizeof frac);
}

static int put_i64(sift_buf *b, int64_t v)
{
    if (v < 0) {
        int rc = sift_buf_putc(b, '-');
        return rc ? rc : put_u64(b, 0 - (uint64_t)v);
    }
    return put_u64(b, (uint64_t)v);
}

/* A double as "%.3f" prints it, without printf: run.finished has four of
 * them and glibc's exact float formatting cost more than the rest of the
 * event. Exact, not approximate: x is M * 2^E, so x * 1000 is the integer
 * M * 1000 shifted, and the bits shifted out decide the rounding, ties to
 * even as glibc does. What the shortcut does not cover (negative, -0, NaN,
 * inf, 1e12 ms and over) goes to printf. */
static int put_fixed3(sift_buf *b, double x)
{
    if (!(x >= 0 && x < 1e12) || signbit(x))
        return sift_buf_printf(b, "%.3f", x);
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    unsigned e = (unsigned)(bits >> 52) & 0x7ff;
    uint64_t k = 0; /* round(x * 1000) */
    if (e != 0) {   /* a subnormal (or 0) times 1000 rounds to 0 */
        uint64_t p = ((bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52)) * 1000;
        int shift = 1075 - (int)e; /* x = mantissa * 2^-shift */
        if (shift <= 0) {
            k = p << -shift; /* x < 1e12: no overflow */
        } else if (shift < 64) {
            uint64_t rem = p & ((UINT64_C(1) << shift) - 1);
            uint64_t half = UINT64_C(1) << (shift - 1);
            k = p >> shift;
            if (rem > half || (rem == half && (k & 1)))
                k++;
        } /* else p < 2^63 <= half: rounds to 0 */
    }
    int rc = put_u64(b, k / 1000);
    if (rc)
        return rc;
    unsigned f = (unsigned)(k % 1000);
    char frac[4] = {'.', (char)('0' + f / 100), (char)('0' + f / 10 % 10), (char)('0' + f % 10)};
    return sift_buf_append(b, frac, sizeof frac);
}

static int put_str(sift_buf *b, const char *key, const char *s, size_t len)
{
    int rc = put_key(b, key);
    if (rc)
        return rc;
    return sift_buf_json_string(b, s, len);
}

static int put_cstr(sift_buf *b, const char *key, const char *s)
{
    return put_str(b, key, s, s ? strlen(s) : 0);
}

/* Raw JSON if it parses (and is what we expect), else as a string. */
static int put_json(sift_buf *b, const char *key, const char *json, size_t len)
{
    if (!json)
        return sift_buf_printf(b, ",\"%s\":null", key);
    /* cJSON stops at the end of the first value: "12 units" would pass */
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    int ok = j != NULL;
    if (ok)
        while (end < json + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
            end++;
    ok = ok && end == json + len;
    cJSON_Delete(j);
    if (!ok)
        return put_str(b, key, json, len);
    int rc = put_key(b, key);
    return rc ? rc : sift_buf_append(b, json, len);
}

int sift_event_json(const sift_event *ev, const char *run_id, uint64_t seq, sift_buf *out)
{
    size_t start = out->len;
    static const sift_usage zero_usage;
    static const sift_run_timings zero_timings;
    int rc = sift_buf_puts(out, "{\"run_id\":\"");
    if (!rc)
        rc = sift_buf_json_escape(out, run_id ? run_id : "", run_id ? strlen(run_id) : 0);
    if (!rc)
        rc = sift_buf_puts(out, "\",\"seq\":");
    if (!rc)
        rc = put_u64(out, seq);
    if (rc)
        goto fail;
    switch (ev->type) {
    case SIFT_EV_RUN_STARTED:
        if ((rc = put_cstr(out, "query", ev->query)) ||
            (rc = put_cstr(out, "session_id", ev->session_id)) ||
            (rc = put_cstr(out, "model", ev->model)))
            goto fail;
        break;
    case SIFT_EV_TOKEN:
    case SIFT_EV_ANSWER:
        if ((rc = put_str(out, "text", ev->text ? ev->text : "", ev->text ? ev->text_len : 0)))
            goto fail;
        break;
    case SIFT_EV_TOOL_STARTED:
        if ((rc = put_cstr(out, "id", ev->id)) || (rc = put_cstr(out, "name", ev->name)) ||
            (rc = put_json(out, "arguments", ev->json, ev->json_len)))
            goto fail;
        break;
    case SIFT_EV_TOOL_FINISHED:
        if ((rc = put_cstr(out, "id", ev->id)) || (rc = put_cstr(out, "name", ev->name)) ||
            (rc = put_key(out, "duration_ms")) || (rc = put_ms3(out, ev->duration_us)))
            goto fail;
        if (ev->code == 0) {
            rc = sift_buf_puts(out, ",\"error\":null");
        } else {
            rc = sift_buf_printf(out, ",\"error\":{\"code\":\"%s\"", sift_err_name(ev->code));
            if (!rc)
                rc = put_cstr(out, "message", ev->message ? ev->message : "");
            if (!rc)
                rc = sift_buf_putc(out, '}');
        }
        if (rc)
            goto fail;
        break;
    case SIFT_EV_PRODUCTS:
        if ((rc = put_json(out, "products", ev->json, ev->json_len)))
            goto fail;
        break;
    case SIFT_EV_RUN_FINISHED: {
        const sift_usage *u = ev->usage ? ev->usage : &zero_usage;
        const sift_run_timings *t = ev->timings ? ev->timings : &zero_timings;
        /* the same text as "%d", "%" PRId64 and "%.3f", without printf */
        if ((rc = put_key(out, "steps")) || (rc = put_i64(out, ev->steps)) ||
            (rc = sift_buf_puts(out, ",\"usage\":{\"prompt_tokens\":")) ||
            (rc = put_i64(out, u->prompt_tokens)) ||
            (rc = sift_buf_puts(out, ",\"completion_tokens\":")) ||
            (rc = put_i64(out, u->completion_tokens)) ||
            (rc = sift_buf_puts(out, ",\"total_tokens\":")) ||
            (rc = put_i64(out, u->total_tokens)) ||
            (rc = sift_buf_puts(out, "},\"timings\":{\"total_ms\":")) ||
            (rc = put_fixed3(out, t->total_ms)) || (rc = sift_buf_puts(out, ",\"ttft_ms\":")) ||
            (rc = put_fixed3(out, t->ttft_ms)) || (rc = sift_buf_puts(out, ",\"model_ms\":")) ||
            (rc = put_fixed3(out, t->model_ms)) || (rc = sift_buf_puts(out, ",\"tools_ms\":")) ||
            (rc = put_fixed3(out, t->tools_ms)) || (rc = sift_buf_putc(out, '}')))
            goto fail;
        if (rc)
            goto fail;
        break;
    }
    case SIFT_EV_ERROR:
        if ((rc = sift_buf_printf(out, ",\"code\":\"%s\"", sift_err_name(ev->code))) ||
            (rc = put_cstr(out, "message", ev->message ? ev->message : "")))
            goto fail;
        break;
    default:
        rc = SIFT_EINVAL;
        goto fail;
    }
    if ((rc = sift_buf_putc(out, '}')))
        goto fail;
    return 0;
fail:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return rc;
}

/* ---- the queue ---- */

struct sift_event_item {
    sift_event_item *next;
    sift_event_type type;
    uint64_t seq;
    sift_buf buf; /* the JSON, or for a token the raw text (encoded when written) */
};

void sift_event_queue_init(sift_event_queue *q, const char *run_id, size_t limit,
                           sift_event_write_fn write, void *ud)
{
    memset(q, 0, sizeof *q);
    snprintf(q->run_id, sizeof q->run_id, "%s", run_id ? run_id : "");
    q->limit = limit ? limit : (size_t)256 * 1024;
    q->write = write;
    q->ud = ud;
}

static void item_free(sift_event_item *it)
{
    sift_buf_free(&it->buf);
    sift_free(it);
}

/* Writes the head item; 0 when taken, SIFT_EBUSY, or the consumer's error. */
static int write_item(sift_event_queue *q, sift_event_item *it)
{
    if (it->type != SIFT_EV_TOKEN)
        return q->write(q->ud, sift_event_name(it->type), it->buf.data, it->buf.len);
    sift_buf json;
    sift_buf_init(&json, 0);
    sift_event ev = {
        .type = SIFT_EV_TOKEN, .text = it->buf.data ? it->buf.data : "", .text_len = it->buf.len};
    int rc = sift_event_json(&ev, q->run_id, it->seq, &json);
    if (rc == 0)
        rc = q->write(q->ud, "token", json.data, json.len);
    sift_buf_free(&json);
    return rc;
}

int sift_event_queue_flush(sift_event_queue *q)
{
    while (q->head && !q->failed) {
        sift_event_item *it = q->head;
        int rc = write_item(q, it);
        if (rc == SIFT_EBUSY)
            return 0;
        if (rc) {
            q->failed = rc;
            return rc;
        }
        q->head = it->next;
        if (!q->head)
            q->tail = NULL;
        q->held -= it->buf.len;
        item_free(it);
    }
    return q->failed;
}

int sift_event_queue_push(sift_event_queue *q, const sift_event *ev)
{
    if (q->failed)
        return q->failed;
    /* a token right behind a queued token: merge, so a slow reader costs
     * the answer's bytes, not one queued event per word */
    if (ev->type == SIFT_EV_TOKEN && q->tail && q->tail->type == SIFT_EV_TOKEN) {
        if (q->held + ev->text_len > q->limit)
            return SIFT_ETOOBIG;
        int rc = sift_buf_append(&q->tail->buf, ev->text, ev->text_len);
        if (rc)
            return rc;
        q->held += ev->text_len;
        if (q->held > q->peak)
            q->peak = q->held;
        return 0;
    }
    if (ev->type == SIFT_EV_TOKEN && !q->head) {
        /* the usual token: nothing queued, so the consumer takes it now;
         * no queue item, no copy of the text (one token per word of every
         * answer: the allocations were a tenth of sift's CPU per token) */
        sift_buf json;
        sift_buf_init(&json, 0);
        int rc = sift_buf_reserve(&json, 96 + sizeof q->run_id + 2 * ev->text_len);
        if (rc == 0)
            rc = sift_event_json(ev, q->run_id, q->seq + 1, &json);
        if (rc) { /* no memory: the queue is still good */
            sift_buf_free(&json);
            return rc;
        }
        rc = q->write(q->ud, "token", json.data, json.len);
        sift_buf_free(&json);
        if (rc == 0) {
            q->seq++;
            return 0;
        }
        if (rc != SIFT_EBUSY) {
            q->failed = rc;
            return rc;
        }
        /* the consumer is busy: queue it as any other event */
    }
    sift_event_item *it = sift_calloc(1, sizeof *it);
    if (!it)
        return SIFT_ENOMEM;
    sift_buf_init(&it->buf, 0);
    it->type = ev->type;
    it->seq = ++q->seq;
    int rc = ev->type == SIFT_EV_TOKEN ? sift_buf_append(&it->buf, ev->text, ev->text_len)
                                       : sift_event_json(ev, q->run_id, it->seq, &it->buf);
    if (rc)
        goto fail;
    if (!q->head) {
        /* nothing queued: try the consumer first */
        rc = write_item(q, it);
        if (rc == 0) {
            item_free(it);
            return 0;
        }
        if (rc != SIFT_EBUSY) {
            q->failed = rc;
            goto fail;
        }
    }
    if (q->held + it->buf.len > q->limit) {
        rc = SIFT_ETOOBIG;
        goto fail;
    }
    q->held += it->buf.len;
    if (q->held > q->peak)
        q->peak = q->held;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    return 0;
fail:
    item_free(it);
    return rc;
}

size_t sift_event_queue_pending(const sift_event_queue *q)
{
    return q->held;
}

void sift_event_queue_free(sift_event_queue *q)
{
    while (q->head) {
        sift_event_item *it = q->head;
        q->head = it->next;
        item_free(it);
    }
    q->tail = NULL;
    q->held = 0;
}
