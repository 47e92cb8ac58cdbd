/* Embedding providers and the built-in hashed n-gram embedder.
 *
 * The built-in embedder is feature hashing: every word and character 3-gram
 * of the folded text adds +w or -w to one of `dims` integer counters, chosen
 * by a 64-bit hash. Texts sharing words or word pieces share counters, so
 * their dot product is high; misspellings ("sprayr") still share most
 * 3-grams with the right word. It knows nothing of synonyms: that is what a
 * model-backed provider is for. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/embed.h"

/* Distinct seeds keep the word "abc" and the 3-gram "abc" apart. */
#define SEED_WORD 0x9e3779b97f4a7c15ULL
#define SEED_GRAM 0xc2b2ae3d27d4eb4fULL

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

uint64_t sift_hash64(const void *p, size_t len, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = FNV_OFFSET ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= FNV_PRIME;
    }
    /* FNV's low bits mix poorly for short keys; bucket = h % dims uses them. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* ---- folding ---------------------------------------------------------- */

/* U+00C0..U+00FF; NULL is a separator (multiplication and division signs). */
static const char *const latin1[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
    "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
    "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
    "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "y",
};

/* Ranges of code points that fold to one ASCII string. */
struct fold_range {
    uint32_t lo, hi;
    const char *to;
};

static const struct fold_range ranges[] = {
    /* Latin Extended-A */
    {0x0100, 0x0105, "a"},
    {0x0106, 0x010D, "c"},
    {0x010E, 0x0111, "d"},
    {0x0112, 0x011B, "e"},
    {0x011C, 0x0123, "g"},
    {0x0124, 0x0127, "h"},
    {0x0128, 0x0131, "i"},
    {0x0132, 0x0133, "ij"},
    {0x0134, 0x0135, "j"},
    {0x0136, 0x0138, "k"},
    {0x0139, 0x0142, "l"},
    {0x0143, 0x014B, "n"},
    {0x014C, 0x0151, "o"},
    {0x0152, 0x0153, "oe"},
    {0x0154, 0x0159, "r"},
    {0x015A, 0x0161, "s"},
    {0x0162, 0x0167, "t"},
    {0x0168, 0x0173, "u"},
    {0x0174, 0x0175, "w"},
    {0x0176, 0x0178, "y"},
    {0x0179, 0x017E, "z"},
    {0x017F, 0x017F, "s"},
    /* Vietnamese horned letters (Latin Extended-B) */
    {0x01A0, 0x01A1, "o"},
    {0x01AF, 0x01B0, "u"},
    /* Vietnamese letters with tone marks (Latin Extended Additional) */
    {0x1EA0, 0x1EB7, "a"},
    {0x1EB8, 0x1EC7, "e"},
    {0x1EC8, 0x1ECB, "i"},
    {0x1ECC, 0x1EE3, "o"},
    {0x1EE4, 0x1EF1, "u"},
    {0x1EF2, 0x1EF9, "y"},
};

/* Copies a replacement (at most 2 ASCII letters) without its NUL. */
static int copy_ascii(char to[4], const char *r)
{
    int n = 0;
    for (; r[n]; n++)
        to[n] = r[n];
    return n;
}

enum { CP_SEP = -1, CP_DROP = -2, CP_KEEP = -3 };

/* Classifies one code point. Returns the number of bytes written to `to`
 * (ASCII replacement), or CP_SEP, CP_DROP (combining mark) or CP_KEEP (copy
 * the original bytes). */
static int fold_cp(uint32_t cp, char to[4])
{
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z') {
            to[0] = (char)(cp - 'A' + 'a');
            return 1;
        }
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
            to[0] = (char)cp;
            return 1;
        }
        return CP_SEP;
    }
    if (cp < 0xC0)
        return CP_SEP; /* C1 controls, no-break space, Latin-1 punctuation */
    if (cp < 0x100) {
        const char *r = latin1[cp - 0xC0];
        if (!r)
            return CP_SEP;
        return copy_ascii(to, r);
    }
    if (cp >= 0x0300 && cp <= 0x036F)
        return CP_DROP; /* combining diacritics of decomposed input */
    if ((cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x3000 && cp <= 0x303F) || cp == 0xFEFF ||
        (cp >= 0xFF00 && cp <= 0xFF0F))
        return CP_SEP; /* general and CJK punctuation, BOM */
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        if (cp >= ranges[i].lo && cp <= ranges[i].hi) {
            return copy_ascii(to, ranges[i].to);
        }
    }
    return CP_KEEP;
}

/* Decodes one UTF-8 character at s[0..len). Returns its length and sets *cp,
 * or returns 0 for an invalid sequence (the caller skips one byte). */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

/* Folds s[0..len) into dst, which has room for len bytes (folding never
 * lengthens: every replacement is at most as long as its UTF-8 source).
 * Returns the folded length. */
static size_t fold_into(const char *s, size_t len, char *dst)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    int pending_sep = 0;
    while (i < len) {
        uint32_t cp = 0;
        size_t n = utf8_decode(u + i, len - i, &cp);
        char to[4];
        int r = n ? fold_cp(cp, to) : CP_SEP;
        if (n == 0)
            n = 1;
        if (r == CP_DROP) {
            i += n;
            continue;
        }
        if (r == CP_SEP) {
            pending_sep = o > 0;
            i += n;
            continue;
        }
        if (pending_sep) {
            dst[o++] = ' ';
            pending_sep = 0;
        }
        if (r == CP_KEEP) {
            memcpy(dst + o, s + i, n);
            o += n;
        } else {
            memcpy(dst + o, to, (size_t)r);
            o += (size_t)r;
        }
        i += n;
    }
    return o;
}

int sift_text_fold(const char *s, size_t len, sift_buf *out)
{
    int rc = sift_buf_reserve(out, len);
    if (rc)
        return rc;
    size_t n = fold_into(s, len, out->data + out->len);
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- the provider interface ------------------------------------------- */

int sift_embedder_embed(sift_embedder *e, struct sift_ctx *ctx, const char *const *texts,
                        const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                        sift_err *err)
{
    if (!e || !done || (n > 0 && (!texts || !out)))
        return sift_err_set(err, SIFT_EINVAL, "embed: missing argument");
    if (e->max_batch && n > e->max_batch)
        return sift_err_set(err, SIFT_EINVAL,
                            "embed: %zu texts in one call, the %s provider takes at most %zu", n,
                            e->ops->name, e->max_batch);
    for (size_t i = 0; i < n; i++)
        if (!texts[i])
            return sift_err_set(err, SIFT_EINVAL, "embed: text %zu is NULL", i);
    return e->ops->embed(e, ctx, texts, lens, n, out, done, ud, err);
}

int sift_embedder_embed_sync(sift_embedder *e, const char *const *texts, const size_t *lens,
                             size_t n, float *out, sift_err *err)
{
    if (!e || (n > 0 && (!texts || !out)))
        return sift_err_set(err, SIFT_EINVAL, "embed: missing argument");
    if (!e->ops->embed_sync)
        return sift_err_set(err, SIFT_ESTATE,
                            "embed: the %s provider answers only asynchronously, on the loop",
                            e->ops->name);
    for (size_t i = 0; i < n; i++)
        if (!texts[i])
            return sift_err_set(err, SIFT_EINVAL, "embed: text %zu is NULL", i);
    size_t step = e->max_batch ? e->max_batch : n;
    for (size_t off = 0; off < n; off += step) {
        size_t m = n - off < step ? n - off : step;
        int rc = e->ops->embed_sync(e, texts + off, lens ? lens + off : NULL, m,
                                    out + off * e->dims, err);
        if (rc)
            return rc;
    }
    return 0;
}

void sift_embedder_free(sift_embedder *e)
{
    if (e)
        e->ops->free(e);
}

uint64_t sift_embedder_retries(sift_embedder *e)
{
    return e && e->ops->retries ? e->ops->retries(e) : 0;
}

/* ---- the hashed n-gram embedder ---------------------------------------- */

typedef struct hashed {
    sift_embedder base; /* first: the interface pointer is the object */
    int word_weight;    /* 0 when words are off */
    int gram_weight;    /* 0 when 3-grams are off */
    size_t max_bytes;
    char id[64]; /* "hashed:DIMS:wW:gG" */
} hashed;

static void add_feature(int32_t *acc, size_t dims, uint64_t h, int w)
{
    size_t b = (size_t)(h % dims);
    acc[b] += (h >> 63) ? -w : w;
}

/* Features of one folded word w[0..n), n > 0. */
static void add_word(const hashed *hz, int32_t *acc, const char *w, size_t n)
{
    size_t dims = hz->base.dims;
    if (hz->word_weight)
        add_feature(acc, dims, sift_hash64(w, n, SEED_WORD), hz->word_weight);
    if (!hz->gram_weight)
        return;
    /* 3-grams of characters, not bytes, over "^" w "$": the folded word is
     * ASCII except for kept letters, whose UTF-8 sequences are whole. */
    static const char caret = '^', dollar = '$';
    const char *cp[3];
    size_t cl[3];
    size_t have = 0, i = 0;
    int last = 0;
    while (!last) {
        const char *c;
        size_t l;
        if (have == 0 && i == 0) {
            c = &caret, l = 1;
        } else if (i < n) {
            unsigned char b = (unsigned char)w[i];
            l = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
            if (l > n - i)
                l = n - i;
            c = w + i;
            i += l;
        } else {
            c = &dollar, l = 1, last = 1;
        }
        if (have == 3) {
            cp[0] = cp[1], cl[0] = cl[1];
            cp[1] = cp[2], cl[1] = cl[2];
            have = 2;
        }
        cp[have] = c, cl[have] = l;
        have++;
        if (have == 3) {
            char g[12];
            size_t gl = 0;
            for (size_t k = 0; k < have; k++) {
                memcpy(g + gl, cp[k], cl[k]);
                gl += cl[k];
            }
            add_feature(acc, dims, sift_hash64(g, gl, SEED_GRAM), hz->gram_weight);
        }
    }
}

/* Embeds one text into out[0..dims). */
static void embed_one(const hashed *hz, const char *s, size_t len, char *fold, int32_t *acc,
                      float *out)
{
    size_t dims = hz->base.dims;
    if (len > hz->max_bytes)
        len = hz->max_bytes;
    size_t fl = fold_into(s, len, fold);
    memset(acc, 0, dims * sizeof *acc);
    for (size_t i = 0; i < fl;) {
        size_t j = i;
        while (j < fl && fold[j] != ' ')
            j++;
        if (j > i)
            add_word(hz, acc, fold + i, j - i);
        i = j + 1;
    }
    /* Integer sum of squares is exact; then one sqrt and one division per
     * component, both correctly rounded under IEEE-754: the same bits on
     * every machine. */
    uint64_t ss = 0;
    for (size_t d = 0; d < dims; d++)
        ss += (uint64_t)((int64_t)acc[d] * acc[d]);
    if (ss == 0) {
        memset(out, 0, dims * sizeof *out);
        return;
    }
    double norm = sqrt((double)ss);
    for (size_t d = 0; d < dims; d++)
        out[d] = (float)((double)acc[d] / norm);
}

static int hashed_embed_sync(sift_embedder *e, const char *const *texts, const size_t *lens,
                             size_t n, float *out, sift_err *err)
{
    hashed *hz = (hashed *)e;
    char *fold = sift_malloc(hz->max_bytes + 1);
    int32_t *acc = sift_malloc(e->dims * sizeof *acc);
    if (!fold || !acc) {
        sift_free(fold);
        sift_free(acc);
        return sift_err_set(err, SIFT_ENOMEM, "embed: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        embed_one(hz, texts[i], lens ? lens[i] : strlen(texts[i]), fold, acc, out + i * e->dims);
    sift_free(fold);
    sift_free(acc);
    return 0;
}

static int hashed_embed(sift_embedder *e, struct sift_ctx *ctx, const char *const *texts,
                        const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                        sift_err *err)
{
    sift_err e2 = {0};
    int rc = hashed_embed_sync(e, texts, lens, n, out, &e2);
    if (rc)
        return sift_err_copy(err, &e2); /* refused: done does not fire */
    done(ud, 0, NULL);
    return 0;
}

static void hashed_free(sift_embedder *e)
{
    sift_free(e);
}

static const sift_embedder_ops hashed_ops = {
    .name = "hashed",
    .embed = hashed_embed,
    .embed_sync = hashed_embed_sync,
    .free = hashed_free,
};

#define HASHED_MAX_BYTES_LIMIT (1u << 20)

int sift_embedder_hashed_new(const sift_hashed_opts *opts, sift_embedder **out, sift_err *err)
{
    sift_hashed_opts o = opts ? *opts : (sift_hashed_opts){0};
    *out = NULL;
    if (o.dims == 0)
        o.dims = SIFT_HASHED_DIMS_DEFAULT;
    if (o.dims > SIFT_HASHED_DIMS_MAX)
        return sift_err_set(err, SIFT_EINVAL, "hashed embedder: dims %zu over the maximum %d",
                            o.dims, SIFT_HASHED_DIMS_MAX);
    if (o.word_weight == 0)
        o.word_weight = 2;
    if (o.gram_weight == 0)
        o.gram_weight = 1;
    if (o.word_weight < 0 && o.gram_weight < 0)
        return sift_err_set(err, SIFT_EINVAL,
                            "hashed embedder: words and 3-grams both off leave no features");
    /* Bounds that keep the integer counters and their sum of squares from
     * overflowing whatever the text. */
    if (o.word_weight > 100 || o.gram_weight > 100)
        return sift_err_set(err, SIFT_EINVAL, "hashed embedder: weights must be at most 100");
    if (o.max_bytes == 0)
        o.max_bytes = 4096;
    if (o.max_bytes > HASHED_MAX_BYTES_LIMIT)
        return sift_err_set(err, SIFT_EINVAL, "hashed embedder: max_bytes over %u",
                            HASHED_MAX_BYTES_LIMIT);
    hashed *hz = sift_calloc(1, sizeof *hz);
    if (!hz)
        return sift_err_set(err, SIFT_ENOMEM, "hashed embedder: out of memory");
    hz->base.ops = &hashed_ops;
    hz->base.dims = o.dims;
    hz->base.max_batch = 0;
    hz->word_weight = o.word_weight < 0 ? 0 : o.word_weight;
    hz->gram_weight = o.gram_weight < 0 ? 0 : o.gram_weight;
    hz->max_bytes = o.max_bytes;
    /* max_bytes is left out: it only cuts texts longer than any chunk */
    snprintf(hz->id, sizeof hz->id, "hashed:%zu:w%d:g%d", o.dims, hz->word_weight, hz->gram_weight);
    hz->base.id = hz->id;
    *out = &hz->base;
    return 0;
}
