/* One-pass reader for the common stream chunk (fastchunk.h). It accepts a
 * subset of what cJSON accepts and reads that subset the way stream.c reads
 * the cJSON tree; whenever it is unsure it returns 0 and cJSON decides. */
#include "llm/fastchunk.h"

#include <stdbool.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 32

typedef struct scan {
    const char *p, *end;
    int depth;
} scan;

static void ws(scan *s)
{
    const char *p = s->p;
    while (p < s->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    s->p = p;
}

static bool eat(scan *s, char c)
{
    ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* Bytes that end a run of plain string bytes: control characters, '"' and
 * the backslash. */
static const bool stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1,  ['\\'] = 1,
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#define ESC_ANY 1 /* the string has escapes */
#define ESC_U 2   /* ... and one of them is \uXXXX */

/* A string at s->p (after whitespace). Sets its raw bytes and whether it has
 * escapes. Raw control characters are refused (cJSON takes them; refusing
 * only sends the chunk to cJSON), and so is any \u escape of a surrogate
 * (cJSON refuses unpaired ones; paired ones are rare enough for cJSON). */
static bool string(scan *s, const char **start, size_t *n, int *escaped)
{
    ws(s);
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *b = ++s->p;
    *escaped = 0;
    for (;;) {
        /* the bytes up to the next quote, backslash or control character
         * (a local pointer: through s->p the compiler reloads every byte) */
        const char *p = s->p, *end = s->end;
#ifdef __SSE2__
        /* 16 bytes at a time while 16 remain: most strings of a chunk (keys,
         * ids, one word of text) end within the first block */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i ctl = _mm_set1_epi8(0x1f);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i hit =
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                             /* unsigned v <= 0x1f */
                             _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
            unsigned mask = (unsigned)_mm_movemask_epi8(hit);
            if (mask) {
                p += __builtin_ctz(mask);
                goto found;
            }
            p += 16;
        }
#endif
        while (p < end && !stop[(unsigned char)*p])
            p++;
#ifdef __SSE2__
    found:
#endif
        s->p = p;
        if (s->p >= s->end || (unsigned char)*s->p < 0x20)
            return false;
        if (*s->p == '"')
            break;
        *escaped |= ESC_ANY;
        if (s->end - s->p < 2)
            return false;
        char e = s->p[1];
        if (e == 'u') {
            if (s->end - s->p < 6)
                return false;
            int v = 0;
            for (int i = 2; i < 6; i++) {
                int h = hexval(s->p[i]);
                if (h < 0)
                    return false;
                v = v * 16 + h;
            }
            if (v >= 0xD800 && v <= 0xDFFF)
                return false;
            *escaped |= ESC_U;
            s->p += 6;
        } else if (e && strchr("\"\\/bfnrt", e)) {
            s->p += 2;
        } else {
            return false;
        }
    }
    *start = b;
    *n = (size_t)(s->p - b);
    s->p++;
    return true;
}

size_t sift_fastchunk_unescape(const char *raw, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] != '\\' || i + 1 == n) {
            out[o++] = raw[i];
            continue;
        }
        char e = raw[++i];
        out[o++] = e == 'b'   ? '\b'
                   : e == 'f' ? '\f'
                   : e == 'n' ? '\n'
                   : e == 'r' ? '\r'
                   : e == 't' ? '\t'
                              : e;
    }
    return o;
}

static bool digits(scan *s)
{
    const char *b = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > b;
}

/* An RFC 8259 number; *b and *n get its text. */
static bool number(scan *s, const char **b, size_t *n)
{
    ws(s);
    *b = s->p;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (s->p >= s->end || *s->p < '1' || *s->p > '9' || !digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return false;
    }
    *n = (size_t)(s->p - *b);
    return true;
}

static bool literal(scan *s, const char *word)
{
    ws(s);
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool peek(scan *s, char c)
{
    ws(s);
    return s->p < s->end && *s->p == c;
}

static bool value(scan *s);

/* Members of an object after its '{', each value checked by value(). */
static bool skip_object(scan *s)
{
    if (eat(s, '}'))
        return true;
    do {
        const char *k;
        size_t kn;
        int esc;
        if (!string(s, &k, &kn, &esc) || !eat(s, ':') || !value(s))
            return false;
    } while (eat(s, ','));
    return eat(s, '}');
}

static bool skip_array(scan *s)
{
    if (eat(s, ']'))
        return true;
    do {
        if (!value(s))
            return false;
    } while (eat(s, ','));
    return eat(s, ']');
}

/* Any JSON value, validated and skipped. */
static bool value(scan *s)
{
    ws(s);
    if (s->p >= s->end)
        return false;
    const char *b;
    size_t n;
    int esc;
    bool ok;
    switch (*s->p) {
    case '{':
    case '[':
        if (++s->depth > MAX_DEPTH)
            return false;
        s->p++;
        ok = s->p[-1] == '{' ? skip_object(s) : skip_array(s);
        s->depth--;
        return ok;
    case '"':
        return string(s, &b, &n, &esc);
    case 't':
        return literal(s, "true");
    case 'f':
        return literal(s, "false");
    case 'n':
        return literal(s, "null");
    default:
        return number(s, &b, &n);
    }
}

static bool key_is(const char *k, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(k, want, n) == 0;
}

/* Reads one member name; escaped names are refused, since an escaped name
 * could spell one of the names that matter. */
static bool key(scan *s, const char **k, size_t *n)
{
    int esc;
    return string(s, k, n, &esc) && !esc && eat(s, ':');
}

/* A non-negative integer written as digits only, at most 9 of them. */
static bool small_count(scan *s, long *v)
{
    const char *num;
    size_t nn;
    if (!number(s, &num, &nn) || nn > 9)
        return false;
    *v = 0;
    for (size_t i = 0; i < nn; i++) {
        if (num[i] < '0' || num[i] > '9')
            return false;
        *v = *v * 10 + (num[i] - '0');
    }
    return true;
}

/* null (*p stays NULL) or a string without escapes (*p, *n: its bytes) */
static bool null_or_plain(scan *s, const char **p, size_t *n)
{
    int esc;
    if (peek(s, 'n'))
        return literal(s, "null");
    return string(s, p, n, &esc) && !esc;
}

/* "function": {"arguments": string with no \u escape, "name": null or a
 * string without escapes, ...} */
static bool function(scan *s, sift_fastchunk *f)
{
    if (!eat(s, '{'))
        return false;
    bool seen_args = false, seen_name = false;
    if (eat(s, '}'))
        return false;
    do {
        const char *k;
        size_t kn;
        if (!key(s, &k, &kn))
            return false;
        if (key_is(k, kn, "arguments")) {
            int esc;
            if (seen_args || !string(s, &f->args, &f->args_len, &esc) || (esc & ESC_U))
                return false;
            seen_args = true;
        } else if (key_is(k, kn, "name")) {
            if (seen_name || !null_or_plain(s, &f->call_name, &f->call_name_len))
                return false;
            seen_name = true;
        } else if (!value(s)) {
            return false;
        }
    } while (eat(s, ','));
    return eat(s, '}') && seen_args;
}

/* "tool_calls": [ {"index": n, "function": {...}, "id": null or a string
 * without escapes, ...} ]: the first fragment of a call or a further one. */
static bool tool_calls(scan *s, sift_fastchunk *f)
{
    if (!eat(s, '[') || !eat(s, '{'))
        return false;
    bool seen_index = false, seen_fn = false, seen_id = false;
    do {
        const char *k;
        size_t kn;
        if (!key(s, &k, &kn))
            return false;
        if (key_is(k, kn, "index")) {
            if (seen_index || !small_count(s, &f->args_index))
                return false;
            seen_index = true;
        } else if (key_is(k, kn, "function")) {
            if (seen_fn || !function(s, f))
                return false;
            seen_fn = true;
        } else if (key_is(k, kn, "id")) {
            if (seen_id || !null_or_plain(s, &f->call_id, &f->call_id_len))
                return false;
            seen_id = true;
        } else if (!value(s)) {
            return false;
        }
    } while (eat(s, ','));
    if (!eat(s, '}') || !eat(s, ']') || !seen_index || !seen_fn)
        return false;
    f->has_args = 1;
    return true;
}

/* "delta": null or {"content": string without escapes | null,
 * "tool_calls": null | one fragment of arguments, ...}; not both */
static bool delta(scan *s, sift_fastchunk *f)
{
    if (literal(s, "null"))
        return true;
    if (!eat(s, '{'))
        return false;
    if (eat(s, '}'))
        return true;
    bool seen_content = false, seen_tools = false;
    do {
        const char *k;
        size_t kn;
        if (!key(s, &k, &kn))
            return false;
        if (key_is(k, kn, "content")) {
            int esc;
            if (seen_content)
                return false;
            seen_content = true;
            if (peek(s, 'n')) {
                if (!literal(s, "null"))
                    return false;
            } else if (!string(s, &f->content, &f->content_len, &esc) || esc) {
                return false;
            }
        } else if (key_is(k, kn, "tool_calls")) {
            if (seen_tools)
                return false;
            seen_tools = true;
            if (peek(s, 'n') ? !literal(s, "null") : !tool_calls(s, f))
                return false;
        } else if (!value(s)) {
            return false;
        }
    } while (eat(s, ','));
    return eat(s, '}') && !(f->has_args && f->content);
}

/* "choices": [ {"index": 0, "delta": ..., "finish_reason": null or a
 * string without escapes, ...} ] */
static bool choices(scan *s, sift_fastchunk *f)
{
    if (!eat(s, '['))
        return false;
    if (eat(s, ']'))
        return true; /* none: a usage chunk */
    f->n_choices = 1;
    if (!eat(s, '{'))
        return false;
    bool seen_index = false, seen_delta = false, seen_finish = false;
    if (!eat(s, '}')) {
        do {
            const char *k, *num;
            size_t kn, nn;
            if (!key(s, &k, &kn))
                return false;
            if (key_is(k, kn, "index")) {
                if (seen_index || !number(s, &num, &nn) || nn != 1 || *num != '0')
                    return false;
                seen_index = true;
            } else if (key_is(k, kn, "delta")) {
                if (seen_delta || !delta(s, f))
                    return false;
                seen_delta = true;
            } else if (key_is(k, kn, "finish_reason")) {
                int esc;
                if (seen_finish)
                    return false;
                seen_finish = true;
                if (peek(s, 'n')) {
                    if (!literal(s, "null"))
                        return false;
                } else if (!string(s, &f->finish, &f->finish_len, &esc) || esc) {
                    return false;
                }
            } else if (!value(s)) {
                return false;
            }
        } while (eat(s, ','));
        if (!eat(s, '}'))
            return false;
    }
    return eat(s, ']');
}

/* "usage": null or {"prompt_tokens": n | null, "completion_tokens": ...,
 * "total_tokens": ..., ...} */
static bool usage(scan *s, sift_fastchunk *f)
{
    static const char *const names[3] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    if (peek(s, 'n'))
        return literal(s, "null");
    if (!eat(s, '{'))
        return false;
    f->has_usage = 1;
    if (eat(s, '}'))
        return true;
    bool seen[3] = {false, false, false};
    do {
        const char *k;
        size_t kn;
        if (!key(s, &k, &kn))
            return false;
        int i = 0;
        while (i < 3 && !key_is(k, kn, names[i]))
            i++;
        if (i == 3) {
            if (!value(s))
                return false;
            continue;
        }
        if (seen[i])
            return false;
        seen[i] = true;
        if (peek(s, 'n') ? !literal(s, "null") : !small_count(s, &f->usage[i]))
            return false;
    } while (eat(s, ','));
    return eat(s, '}');
}

int sift_fastchunk_read(const char *data, size_t len, sift_fastchunk *out)
{
    scan s = {.p = data, .end = data + len, .depth = 1};
    sift_fastchunk f = {0};
    bool seen_choices = false, seen_error = false, seen_usage = false;
    if (!eat(&s, '{') || eat(&s, '}'))
        return 0;
    do {
        const char *k;
        size_t kn;
        if (!key(&s, &k, &kn))
            return 0;
        if (key_is(k, kn, "choices")) {
            if (seen_choices || !choices(&s, &f))
                return 0;
            seen_choices = true;
        } else if (key_is(k, kn, "error")) {
            if (seen_error || !literal(&s, "null"))
                return 0;
            seen_error = true;
        } else if (key_is(k, kn, "usage")) {
            if (seen_usage || !usage(&s, &f))
                return 0;
            seen_usage = true;
        } else if (!value(&s)) {
            return 0;
        }
    } while (eat(&s, ','));
    if (!eat(&s, '}') || !seen_choices)
        return 0;
    ws(&s);
    if (s.p != s.end)
        return 0;
    *out = f;
    return 1;
}

int sift_fastchunk_content(const char *data, size_t len, const char **content, size_t *clen)
{
    sift_fastchunk f;
    if (!sift_fastchunk_read(data, len, &f) || f.has_args || f.finish || !f.n_choices ||
        f.has_usage)
        return 0;
    *content = f.content;
    *clen = f.content_len;
    return 1;
}
