/* Hybrid search: the store's BM25 list and the in-memory vector list, both
 * filtered before truncation, fused with RRF (search.h, docs/search.md).
 *
 * Memory per product: the SKU and title strings, one int8 vector (260 bytes
 * at 256 dims), four 32-bit attribute ids and a slot in the SKU hash table.
 * Attribute values are interned case-folded, so a filter compares integers. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/embed.h"
#include "sift/fusion.h"
#include "sift/log.h"
#include "sift/search.h"
#include "sift/vecindex.h"

/* Default RRF weights (docs/search.md: measured on the dev halves). */
#define W_LEXICAL_DEFAULT 1.0
#define W_VECTOR_DEFAULT 0.25
/* BM25 candidates fetched when filters are active, as a multiple of the
 * list's depth: the filter drops some, and truncation must come after it.
 * Bounded because a deep search_fts is slow (k = 1000 costs up to ~20 ms on
 * 50k products, k = 100 ~3 ms); the vector list, filtered exactly inside its
 * scan, supplies what the lexical list loses to the bound. */
#define FILTERED_FETCH_FACTOR 3

enum { A_BRAND, A_SIZE, A_COLOUR, A_GENDER, A_COUNT };

/* An open-addressing table of strings -> 1-based ids (0: empty slot). */
typedef struct strtab {
    uint32_t *slots;
    size_t nslots; /* power of two */
    size_t n;
} strtab;

typedef struct interned {
    strtab tab;
    char **vals; /* vals[id - 1] */
    size_t cap;
} interned;

#define LX_K1 1.2
#define LX_B 0.75
#define LX_QUERY_TERMS 32
#define LX_TERM_MAX 64

typedef struct posting {
    uint32_t row;
    float tf; /* weighted frequency */
} posting;

typedef struct lexterm {
    char *term;
    posting *p;
    uint32_t n, cap;
} lexterm;

typedef struct lexindex {
    strtab tab;     /* term -> 1-based id; terms compared exactly (already folded) */
    char **keys;    /* keys[id - 1] = terms[id - 1].term, for the table */
    lexterm *terms; /* by id - 1 */
    size_t cap;
    uint16_t *dl; /* document length, tokens, saturated */
    double total_len;
    /* term ids by first byte, for spelling correction (built after open) */
    uint32_t *by_first[256];
    uint32_t n_first[256];
    /* per-document scratch during open: term ids and weights */
    uint32_t *dt;
    float *dw;
    size_t dn, dcap;
} lexindex;

struct sift_searcher {
    sift_embedder *emb;
    sift_vecindex *ix;
    sift_arena *strings; /* skus, titles, interned values */
    char **sku;
    char **title;
    uint32_t *attr; /* A_COUNT ids per row, 0 = absent */
    size_t n, cap;
    strtab skus; /* lower-cased sku -> row + 1 */
    interned vals;
    int embed_full_chunk;
    sift_buf text;    /* scratch during open: one product's embed text */
    sift_buf alltext; /* during open: every product's embed text, back to back */
    size_t *text_end; /* during open: where row i's text ends in alltext */
    lexindex lx;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t hash_lower(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)tolower((unsigned char)*s);
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int tab_grow(strtab *t, char **keys, size_t nkeys)
{
    size_t ns = t->nslots ? t->nslots * 2 : 64;
    uint32_t *sl = sift_calloc(ns, sizeof *sl);
    if (!sl)
        return SIFT_ENOMEM;
    for (size_t i = 0; i < nkeys; i++) {
        size_t j = hash_lower(keys[i]) & (ns - 1);
        while (sl[j])
            j = (j + 1) & (ns - 1);
        sl[j] = (uint32_t)(i + 1);
    }
    sift_free(t->slots);
    t->slots = sl;
    t->nslots = ns;
    return 0;
}

/* The 1-based id of `key` (case-insensitive) among keys, 0 when absent. */
static uint32_t tab_find(const strtab *t, char *const *keys, const char *key)
{
    if (!t->nslots)
        return 0;
    size_t j = hash_lower(key) & (t->nslots - 1);
    while (t->slots[j]) {
        if (!strcasecmp(keys[t->slots[j] - 1], key))
            return t->slots[j];
        j = (j + 1) & (t->nslots - 1);
    }
    return 0;
}

/* Records keys[id - 1] in the table (the caller has appended it). */
static int tab_add(strtab *t, char **keys, uint32_t id)
{
    if ((t->n + 1) * 2 > t->nslots) {
        if (tab_grow(t, keys, id - 1))
            return SIFT_ENOMEM;
    }
    size_t j = hash_lower(keys[id - 1]) & (t->nslots - 1);
    while (t->slots[j])
        j = (j + 1) & (t->nslots - 1);
    t->slots[j] = id;
    t->n++;
    return 0;
}

/* The id of a trimmed, non-empty attribute value, interned on first sight. */
static int intern(sift_searcher *s, const char *v, uint32_t *id)
{
    *id = 0;
    while (*v == ' ')
        v++;
    size_t len = strlen(v);
    while (len && v[len - 1] == ' ')
        len--;
    if (!len)
        return 0;
    char *c = sift_arena_strndup(s->strings, v, len);
    if (!c)
        return SIFT_ENOMEM;
    for (char *p = c; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if ((*id = tab_find(&s->vals.tab, s->vals.vals, c)))
        return 0;
    if (s->vals.tab.n == s->vals.cap) {
        size_t nc = s->vals.cap ? s->vals.cap * 2 : 64;
        char **nv = sift_realloc(s->vals.vals, nc * sizeof *nv);
        if (!nv)
            return SIFT_ENOMEM;
        s->vals.vals = nv;
        s->vals.cap = nc;
    }
    s->vals.vals[s->vals.tab.n] = c;
    *id = (uint32_t)s->vals.tab.n + 1;
    return tab_add(&s->vals.tab, s->vals.vals, *id);
}

static uint32_t lookup_val(const sift_searcher *s, const char *v)
{
    return v && *v ? tab_find(&s->vals.tab, s->vals.vals, v) : 0;
}

static int row_of(const sift_searcher *s, const char *sku, uint32_t *row)
{
    uint32_t id = tab_find(&s->skus, s->sku, sku);
    if (!id)
        return 0;
    *row = id - 1;
    return 1;
}

const char *sift_search_mode_name(int mode)
{
    switch (mode) {
    case SIFT_SEARCH_HYBRID:
        return "hybrid";
    case SIFT_SEARCH_LEXICAL:
        return "lexical";
    case SIFT_SEARCH_VECTOR:
        return "vector";
    default:
        return NULL;
    }
}

int sift_search_mode_parse(const char *name, int *mode, sift_err *err)
{
    for (int m = SIFT_SEARCH_HYBRID; m <= SIFT_SEARCH_VECTOR; m++)
        if (name && !strcmp(name, sift_search_mode_name(m))) {
            *mode = m;
            return 0;
        }
    return sift_err_set(err, SIFT_EINVAL,
                        "mode \"%s\": expected \"lexical\", \"vector\" or \"hybrid\"",
                        name ? name : "");
}

/* ---- the in-memory BM25 index ------------------------------------------------------------
 *
 * BM25 over the product fields with the store's column weights (sku 2, title
 * 3, brand 2, category 1.5, attributes 1.5, description 1, the description
 * cut like the chunk's), computed the way FTS5's bm25() does it: a term's
 * frequency in a document is the weighted sum of its counts per field, the
 * document length is its token count, k1 = 1.2, b = 0.75. Every term of the
 * query is OR-ed and every posting scored, so no candidate is lost to a cap;
 * the postings of one term are a flat array, and a query touching 10,000
 * documents takes well under a millisecond. Tokens are folded
 * (sift_text_fold) and lightly stemmed (plural endings), so "vanities"
 * finds "vanity" and "shoes" finds "shoe". */

static const double field_w[] = {2.0, 3.0, 2.0, 1.5, 1.5, 1.0};

/* Strips plural endings: "vanities" -> "vanity", "boxes" -> "box", "shoes" -> "shoe". */
static size_t stem(char *w, size_t n)
{
    if (n > 4 && !memcmp(w + n - 3, "ies", 3)) {
        w[n - 3] = 'y';
        return n - 2;
    }
    if (n > 4 && !memcmp(w + n - 2, "es", 2) &&
        (w[n - 3] == 'x' || w[n - 3] == 'z' || (w[n - 3] == 's' && w[n - 4] == 's') ||
         (w[n - 3] == 'h' && (w[n - 4] == 'c' || w[n - 4] == 's'))))
        return n - 2;
    if (n > 3 && w[n - 1] == 's' && w[n - 2] != 's' && w[n - 2] != 'u' && w[n - 2] != 'i')
        return n - 1;
    return n;
}

typedef int (*token_fn)(void *ud, char *tok, size_t n);

/* Folds s and calls fn for each stemmed token (cut to LX_TERM_MAX bytes). */
static int tokens(sift_buf *fold, const char *s, size_t len, token_fn fn, void *ud)
{
    sift_buf_reset(fold);
    if (sift_text_fold(s, len, fold) || sift_buf_putc(fold, 0))
        return SIFT_ENOMEM;
    char *f = fold->data;
    size_t fl = fold->len - 1;
    for (size_t i = 0; i < fl;) {
        size_t j = i;
        while (j < fl && f[j] != ' ')
            j++;
        size_t n = j - i > LX_TERM_MAX ? LX_TERM_MAX : j - i;
        if (n) {
            char save = f[i + n];
            n = stem(f + i, n);
            f[i + n] = 0;
            int rc = fn(ud, f + i, n);
            f[i + n] = save;
            if (rc)
                return rc;
        }
        i = j + 1;
    }
    return 0;
}

static uint32_t lx_find(const lexindex *lx, const char *t)
{
    return tab_find(&lx->tab, lx->keys, t);
}

struct doc_ctx {
    sift_searcher *s;
    float w;
    uint32_t len;
};

static int doc_token(void *ud, char *tok, size_t n)
{
    struct doc_ctx *d = ud;
    lexindex *lx = &d->s->lx;
    uint32_t id = lx_find(lx, tok);
    if (!id) {
        if (lx->tab.n == lx->cap) {
            size_t nc = lx->cap ? lx->cap * 2 : 4096;
            lexterm *nt = sift_realloc(lx->terms, nc * sizeof *nt);
            if (nt)
                lx->terms = nt;
            char **nk = sift_realloc(lx->keys, nc * sizeof *nk);
            if (nk)
                lx->keys = nk;
            if (!nt || !nk)
                return SIFT_ENOMEM;
            lx->cap = nc;
        }
        char *t = sift_arena_strndup(d->s->strings, tok, n);
        if (!t)
            return SIFT_ENOMEM;
        id = (uint32_t)lx->tab.n + 1;
        lx->terms[id - 1] = (lexterm){.term = t};
        lx->keys[id - 1] = t;
        if (tab_add(&lx->tab, lx->keys, id))
            return SIFT_ENOMEM;
    }
    d->len++;
    for (size_t i = 0; i < lx->dn; i++)
        if (lx->dt[i] == id) {
            lx->dw[i] += d->w;
            return 0;
        }
    if (lx->dn == lx->dcap) {
        size_t nc = lx->dcap ? lx->dcap * 2 : 256;
        uint32_t *nt = sift_realloc(lx->dt, nc * sizeof *nt);
        if (nt)
            lx->dt = nt;
        float *nw = sift_realloc(lx->dw, nc * sizeof *nw);
        if (nw)
            lx->dw = nw;
        if (!nt || !nw)
            return SIFT_ENOMEM;
        lx->dcap = nc;
    }
    lx->dt[lx->dn] = id;
    lx->dw[lx->dn++] = d->w;
    return 0;
}

static int lx_add(sift_searcher *s, uint32_t row, const sift_product *p)
{
    lexindex *lx = &s->lx;
    struct doc_ctx d = {.s = s};
    lx->dn = 0;
    size_t dlen =
        sift_utf8_truncate(p->description, strlen(p->description), SIFT_CHUNK_DESCRIPTION_MAX);
    const char *fields[] = {p->sku, p->title, p->brand, p->category, NULL, p->description};
    sift_buf *fold = &s->text; /* the embed text is built after this */
    sift_buf attrs;
    sift_buf_init(&attrs, 0);
    int rc = 0;
    for (size_t i = 0; !rc && i < p->n_attrs; i++)
        rc = sift_buf_printf(&attrs, "%s ", p->attrs[i].value);
    for (size_t f = 0; !rc && f < 6; f++) {
        d.w = (float)field_w[f];
        const char *t = f == 4 ? (attrs.data ? attrs.data : "") : fields[f];
        size_t tl = f == 4 ? attrs.len : f == 5 ? dlen : strlen(t);
        rc = tokens(fold, t, tl, doc_token, &d);
    }
    sift_buf_free(&attrs);
    if (rc)
        return rc;
    if (row >= s->cap)
        return SIFT_EINTERNAL;
    lx->dl[row] = (uint16_t)(d.len > 65535 ? 65535 : d.len);
    lx->total_len += lx->dl[row];
    for (size_t i = 0; i < lx->dn; i++) {
        lexterm *t = &lx->terms[lx->dt[i] - 1];
        if (t->n == t->cap) {
            uint32_t nc = t->cap ? t->cap * 2 : 4;
            posting *np = sift_realloc(t->p, nc * sizeof *np);
            if (!np)
                return SIFT_ENOMEM;
            t->p = np;
            t->cap = nc;
        }
        t->p[t->n++] = (posting){row, lx->dw[i]};
    }
    return 0;
}

/* Groups term ids by first byte, for the spelling correction of queries. */
static int lx_finish(lexindex *lx)
{
    for (size_t i = 0; i < lx->tab.n; i++)
        lx->n_first[(unsigned char)lx->terms[i].term[0]]++;
    for (size_t b = 0; b < 256; b++) {
        if (lx->n_first[b] && !(lx->by_first[b] = sift_malloc(lx->n_first[b] * sizeof(uint32_t))))
            return SIFT_ENOMEM;
        lx->n_first[b] = 0;
    }
    for (size_t i = 0; i < lx->tab.n; i++) {
        unsigned char b = (unsigned char)lx->terms[i].term[0];
        lx->by_first[b][lx->n_first[b]++] = (uint32_t)i + 1;
    }
    return 0;
}

/* Optimal string alignment distance of a[0..n) and b[0..m), or max + 1 when
 * it exceeds max (n, m <= LX_TERM_MAX). */
static size_t osa(const char *a, size_t n, const char *b, size_t m, size_t max)
{
    size_t d[3][LX_TERM_MAX + 1];
    size_t *pp = d[0], *p = d[1], *c = d[2];
    for (size_t j = 0; j <= m; j++)
        p[j] = j;
    for (size_t i = 1; i <= n; i++) {
        c[0] = i;
        size_t lo = c[0];
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = p[j - 1] + cost;
            if (p[j] + 1 < v)
                v = p[j] + 1;
            if (c[j - 1] + 1 < v)
                v = c[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
            if (v < lo)
                lo = v;
        }
        if (lo > max)
            return max + 1;
        size_t *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    return p[m] > max ? max + 1 : p[m];
}

/* The indexed term nearest an unknown query word: same first letter, edit
 * distance 1 (words of 4-6 letters) or 2 (longer), the most frequent among
 * the nearest. Home Depot's queries are full of such slips ("sprayr"). 0 when
 * none is near enough; short words and numbers are not corrected. */
static uint32_t lx_correct(const lexindex *lx, const char *w, size_t n)
{
    if (n < 4 || n > LX_TERM_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] >= '0' && w[i] <= '9')
            return 0;
    size_t max = n <= 6 ? 1 : 2, best_d = max + 1;
    uint32_t best = 0;
    unsigned char b = (unsigned char)w[0];
    for (uint32_t i = 0; i < lx->n_first[b]; i++) {
        uint32_t id = lx->by_first[b][i];
        const lexterm *t = &lx->terms[id - 1];
        size_t m = strlen(t->term);
        if (m + max < n || n + max < m)
            continue;
        size_t d = osa(w, n, t->term, m, best_d < max ? best_d : max);
        if (d < best_d || (d == best_d && best && t->n > lx->terms[best - 1].n)) {
            best_d = d;
            best = id;
        }
    }
    return best_d <= max ? best : 0;
}

static void lx_free(lexindex *lx)
{
    for (size_t b = 0; b < 256; b++)
        sift_free(lx->by_first[b]);
    for (size_t i = 0; i < lx->tab.n; i++)
        sift_free(lx->terms[i].p);
    sift_free(lx->terms);
    sift_free(lx->keys);
    sift_free(lx->tab.slots);
    sift_free(lx->dl);
    sift_free(lx->dt);
    sift_free(lx->dw);
}

struct query_ctx {
    uint32_t ids[LX_QUERY_TERMS];
    size_t n;
    const lexindex *lx;
};

static int query_token(void *ud, char *tok, size_t n)
{
    struct query_ctx *q = ud;
    uint32_t id = lx_find(q->lx, tok);
    if (!id)
        id = lx_correct(q->lx, tok, n);
    if (!id || q->n == LX_QUERY_TERMS)
        return 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->ids[i] == id)
            return 0;
    q->ids[q->n++] = id;
    return 0;
}

typedef struct scored {
    uint32_t row;
    float score;
} scored;

/* a ranks before b: higher score, then lower row. */
static int before(const scored *a, const scored *b)
{
    return a->score > b->score || (a->score == b->score && a->row < b->row);
}

/* Sifts the heap's root down; the root is the worst kept hit. */
static void heap_down(scored *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && before(&h[w], &h[l]))
            w = l;
        if (r < n && before(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        scored t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static int cmp_scored(const void *a, const void *b)
{
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* The best `cand` rows for `text` by BM25 that pass `bits` (NULL: all). */
static int lx_search(const sift_searcher *s, const char *text, const uint64_t *bits, size_t cand,
                     sift_arena *a, scored **out, size_t *nout)
{
    const lexindex *lx = &s->lx;
    *out = NULL;
    *nout = 0;
    struct query_ctx q = {.lx = lx};
    sift_buf fold;
    sift_buf_init(&fold, 0);
    size_t tl = strlen(text);
    if (tl > SIFT_QUERY_INPUT_MAX)
        tl = sift_utf8_truncate(text, tl, SIFT_QUERY_INPUT_MAX);
    int rc = tokens(&fold, text, tl, query_token, &q);
    sift_buf_free(&fold);
    if (rc)
        return rc;
    if (!q.n || !s->n)
        return 0;
    float *acc = sift_arena_calloc(a, s->n, sizeof *acc);
    uint32_t *touched = NULL;
    size_t nt = 0, maxt = 0;
    for (size_t i = 0; i < q.n; i++)
        maxt += lx->terms[q.ids[i] - 1].n;
    touched = sift_arena_alloc(a, (maxt ? maxt : 1) * sizeof *touched);
    scored *heap = sift_arena_alloc(a, cand * sizeof *heap);
    if (!acc || !touched || !heap)
        return SIFT_ENOMEM;
    double N = (double)s->n, avgdl = lx->total_len / N;
    if (avgdl <= 0)
        avgdl = 1;
    for (size_t i = 0; i < q.n; i++) {
        const lexterm *t = &lx->terms[q.ids[i] - 1];
        double df = t->n;
        double idf = log((N - df + 0.5) / (df + 0.5) + 1.0);
        for (uint32_t j = 0; j < t->n; j++) {
            uint32_t r = t->p[j].row;
            if (bits && !(bits[r / 64] >> (r % 64) & 1))
                continue;
            double f = t->p[j].tf;
            double sc = idf * f * (LX_K1 + 1) / (f + LX_K1 * (1 - LX_B + LX_B * lx->dl[r] / avgdl));
            if (acc[r] == 0)
                touched[nt++] = r;
            acc[r] += (float)sc;
        }
    }
    size_t nh = 0;
    for (size_t i = 0; i < nt; i++) {
        scored c = {touched[i], acc[touched[i]]};
        if (nh < cand) {
            heap[nh++] = c;
            if (nh == cand)
                for (size_t k = cand / 2 + 1; k-- > 0;)
                    heap_down(heap, nh, k);
        } else if (before(&c, &heap[0])) {
            heap[0] = c;
            heap_down(heap, nh, 0);
        }
    }
    qsort(heap, nh, sizeof *heap, cmp_scored);
    *out = heap;
    *nout = nh;
    return 0;
}

/* ---- open ------------------------------------------------------------------------------- */

/* The text embedded for a product: what it is (title, brand, category,
 * attributes), or the whole chunk with the description when asked. */
static int embed_text(sift_searcher *s, const sift_product *p, const char *chunk)
{
    sift_buf_reset(&s->text);
    if (s->embed_full_chunk)
        return sift_buf_puts(&s->text, chunk);
    int rc = sift_buf_printf(&s->text, "%s %s %s", p->title, p->brand, p->category);
    for (size_t i = 0; !rc && i < p->n_attrs; i++)
        rc = sift_buf_printf(&s->text, " %s", p->attrs[i].value);
    return rc;
}

static int on_product(void *ud, const sift_product *p, const char *chunk, sift_err *err)
{
    sift_searcher *s = ud;
    if (s->n >= SIFT_VEC_ID_MAX)
        return sift_err_set(err, SIFT_ETOOBIG, "search: more than 2^31 products");
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        char **ns = sift_realloc(s->sku, nc * sizeof *ns);
        if (ns)
            s->sku = ns;
        char **nt = sift_realloc(s->title, nc * sizeof *nt);
        if (nt)
            s->title = nt;
        uint32_t *na = sift_realloc(s->attr, nc * A_COUNT * sizeof *na);
        if (na)
            s->attr = na;
        uint16_t *nd = sift_realloc(s->lx.dl, nc * sizeof *nd);
        if (nd)
            s->lx.dl = nd;
        size_t *ne = sift_realloc(s->text_end, nc * sizeof *ne);
        if (ne)
            s->text_end = ne;
        if (!ns || !nt || !na || !nd || !ne)
            goto oom;
        s->cap = nc;
    }
    uint32_t row = (uint32_t)s->n;
    /* The store keeps SKUs unique case-insensitively, so no duplicates here. */
    s->sku[row] = sift_arena_strdup(s->strings, p->sku);
    s->title[row] = sift_arena_strdup(s->strings, p->title);
    if (!s->sku[row] || !s->title[row])
        goto oom;
    uint32_t *at = s->attr + (size_t)row * A_COUNT;
    memset(at, 0, A_COUNT * sizeof *at);
    if (intern(s, p->brand, &at[A_BRAND]))
        goto oom;
    for (size_t i = 0; i < p->n_attrs; i++) {
        const char *k = p->attrs[i].key;
        int which = !strcmp(k, "size")                            ? A_SIZE
                    : !strcmp(k, "colour") || !strcmp(k, "color") ? A_COLOUR
                    : !strcmp(k, "gender")                        ? A_GENDER
                                                                  : -1;
        if (which >= 0 && !at[which] && intern(s, p->attrs[i].value, &at[which]))
            goto oom;
    }
    s->n++;
    if (tab_add(&s->skus, s->sku, row + 1))
        goto oom;
    int lrc = lx_add(s, row, p);
    if (lrc == SIFT_ENOMEM)
        goto oom;
    if (lrc)
        return sift_err_set(err, lrc, "search: indexing %s failed", p->sku);
    /* Embedded after the scan, in batches: a remote provider sends many
     * products per request. */
    if (embed_text(s, p, chunk) || sift_buf_append(&s->alltext, s->text.data, s->text.len))
        goto oom;
    s->text_end[row] = s->alltext.len;
    return 0;
oom:
    return sift_err_set(err, SIFT_ENOMEM, "search: out of memory reading the catalog");
}

/* Bytes of float vectors embedded per embed_sync call: bounds the scratch
 * (5,461 products at 1,536 dims; 32,768 at 256) while giving a remote
 * provider many batches to send concurrently. */
#define EMBED_SCRATCH_BYTES ((size_t)32 << 20)

/* Embeds every product's text (collected by on_product) into the index. */
static int embed_all(sift_searcher *s, sift_err *err)
{
    size_t dims = s->emb->dims;
    size_t chunk = EMBED_SCRATCH_BYTES / (dims * sizeof(float));
    if (chunk > s->n)
        chunk = s->n;
    const char **t = sift_malloc((chunk ? chunk : 1) * sizeof *t);
    size_t *tl = sift_malloc((chunk ? chunk : 1) * sizeof *tl);
    float *v = sift_malloc((chunk ? chunk : 1) * dims * sizeof *v);
    int rc = 0;
    if (!t || !tl || !v) {
        rc = sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        goto done;
    }
    for (size_t off = 0; off < s->n && !rc; off += chunk) {
        size_t m = s->n - off < chunk ? s->n - off : chunk;
        for (size_t i = 0; i < m; i++) {
            size_t row = off + i, b = row ? s->text_end[row - 1] : 0;
            t[i] = s->alltext.data ? s->alltext.data + b : "";
            tl[i] = s->text_end[row] - b;
        }
        if ((rc = sift_embedder_embed_sync(s->emb, t, tl, m, v, err)))
            break;
        for (size_t i = 0; i < m && !rc; i++)
            rc = sift_vecindex_put(s->ix, (uint32_t)(off + i), v + i * dims, err);
    }
done:
    sift_free(t);
    sift_free(tl);
    sift_free(v);
    return rc;
}

int sift_searcher_open(sift_store *store, const sift_searcher_opts *opts, sift_searcher **out,
                       sift_err *err)
{
    static const sift_searcher_opts dflt = {0};
    if (!opts)
        opts = &dflt;
    *out = NULL;
    sift_searcher *s = sift_calloc(1, sizeof *s);
    if (!s) {
        sift_embedder_free(opts->embedder); /* taken over, even on failure */
        return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
    }
    s->embed_full_chunk = opts->embed_full_chunk;
    sift_buf_init(&s->text, 0);
    sift_buf_init(&s->alltext, 0);
    int rc = 0;
    s->emb = opts->embedder;
    if (!s->emb) {
        sift_hashed_opts ho = {.dims = opts->dims};
        if ((rc = sift_embedder_hashed_new(&ho, &s->emb, err)))
            goto fail;
    }
    if ((rc = sift_vecindex_new(s->emb->dims, opts->float_vectors ? SIFT_VEC_F32 : SIFT_VEC_I8,
                                &s->ix, err)))
        goto fail;
    s->strings = sift_arena_new((size_t)64 * 1024);
    if (!s->strings) {
        rc = sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        goto fail;
    }
    if ((rc = sift_store_scan_products(store, on_product, s, err)))
        goto fail;
    uint64_t t0 = uv_hrtime();
    if ((rc = sift_vecindex_reserve(s->ix, s->n, err)) || (rc = embed_all(s, err)))
        goto fail;
    /* a remote provider can take minutes on a large catalog: say what it did */
    if (s->emb->remote)
        sift_log(SIFT_LOG_INFO, NULL, NULL, "search: embedded %zu products with %s in %.1f s", s->n,
                 s->emb->id, (double)(uv_hrtime() - t0) / 1e9);
    sift_buf_free(&s->alltext);
    sift_free(s->text_end);
    s->text_end = NULL;
    if (lx_finish(&s->lx)) {
        rc = sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        goto fail;
    }
    /* The per-document scratch is not needed after open. */
    sift_free(s->lx.dt);
    sift_free(s->lx.dw);
    s->lx.dt = NULL;
    s->lx.dw = NULL;
    s->lx.dcap = 0;
    sift_buf_free(&s->text);
    *out = s;
    return 0;
fail:
    sift_searcher_close(s);
    return rc;
}

void sift_searcher_close(sift_searcher *s)
{
    if (!s)
        return;
    sift_embedder_free(s->emb);
    sift_vecindex_free(s->ix);
    sift_arena_free(s->strings);
    sift_free(s->sku);
    sift_free(s->title);
    sift_free(s->attr);
    sift_free(s->skus.slots);
    sift_free(s->vals.tab.slots);
    sift_free(s->vals.vals);
    sift_free(s->text_end);
    sift_buf_free(&s->alltext);
    sift_buf_free(&s->text);
    lx_free(&s->lx);
    sift_free(s);
}

size_t sift_searcher_count(const sift_searcher *s)
{
    return s ? s->n : 0;
}

const char *sift_searcher_vector_id(const sift_searcher *s)
{
    return s->emb->id;
}

size_t sift_searcher_dims(const sift_searcher *s)
{
    return s->emb->dims;
}

int sift_searcher_remote(const sift_searcher *s)
{
    return s->emb->remote;
}

int sift_searcher_embed_query(const sift_searcher *s, struct sift_ctx *ctx, const char *text,
                              float *out, sift_embed_done_fn done, void *ud, sift_err *err)
{
    if (!s || !text || !out || !done)
        return sift_err_set(err, SIFT_EINVAL, "search: missing argument to embed the query");
    return sift_embedder_embed(s->emb, ctx, &text, NULL, 1, out, done, ud, err);
}

int sift_searcher_embed_sync(const sift_searcher *s, const char *const *texts, size_t n, float *out,
                             sift_err *err)
{
    if (!s || (n && (!texts || !out)))
        return sift_err_set(err, SIFT_EINVAL, "search: missing argument to embed the queries");
    return n ? sift_embedder_embed_sync(s->emb, texts, NULL, n, out, err) : 0;
}

/* ---- search ----------------------------------------------------------------------------- */

/* The active filters as attribute ids; a value the catalog never carries is
 * dropped (see search.h). */
typedef struct filt {
    uint32_t brand, size, gender, unisex;
    uint32_t colours[SIFT_QUERY_COLOURS_MAX];
    size_t n_colours;
    int active;
} filt;

static void filt_make(const sift_searcher *s, const sift_query *q, filt *f)
{
    memset(f, 0, sizeof *f);
    if (!q)
        return;
    f->brand = lookup_val(s, q->brand);
    f->size = lookup_val(s, q->size);
    if (q->gender != SIFT_GENDER_ANY && q->gender != SIFT_GENDER_UNISEX) {
        f->gender = lookup_val(s, sift_gender_name(q->gender));
        f->unisex = lookup_val(s, "unisex");
    }
    for (size_t i = 0; i < q->n_colours && i < SIFT_QUERY_COLOURS_MAX; i++) {
        uint32_t c = lookup_val(s, q->colours[i]);
        if (c)
            f->colours[f->n_colours++] = c;
    }
    f->active = f->brand || f->size || f->gender || f->n_colours;
}

static int filt_keep(const sift_searcher *s, const filt *f, uint32_t row)
{
    const uint32_t *at = s->attr + (size_t)row * A_COUNT;
    if (f->brand && at[A_BRAND] != f->brand)
        return 0;
    if (f->size && at[A_SIZE] != f->size)
        return 0;
    /* A product without a gender, or unisex, suits anyone. */
    if (f->gender && at[A_GENDER] && at[A_GENDER] != f->gender && at[A_GENDER] != f->unisex)
        return 0;
    if (f->n_colours) {
        size_t i = 0;
        while (i < f->n_colours && at[A_COLOUR] != f->colours[i])
            i++;
        if (i == f->n_colours)
            return 0;
    }
    return 1;
}

#define EXACT_WORDS_MAX 8

/* Query words that are whole SKUs of the catalog (case-insensitive), the way
 * the store finds them: words split at blanks and commas, trailing sentence
 * punctuation dropped, at most EXACT_WORDS_MAX words tried. */
static void exact_skus(const sift_searcher *s, const char *p, const char **out, size_t *n)
{
    char w[SIFT_SKU_MAX + 1];
    size_t tried = 0;
    *n = 0;
    while (*p && tried < EXACT_WORDS_MAX) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')
            p++;
        const char *b = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != ',')
            p++;
        size_t len = (size_t)(p - b);
        while (len > 1 && strchr(".;:!?)", b[len - 1]))
            len--;
        if (len < 3 || len > SIFT_SKU_MAX || sift_sku_check(b, len, NULL) != 0)
            continue;
        tried++;
        memcpy(w, b, len);
        w[len] = 0;
        uint32_t row;
        if (row_of(s, w, &row)) {
            size_t j = 0;
            while (j < *n && out[j] != s->sku[row])
                j++;
            if (j == *n)
                out[(*n)++] = s->sku[row];
        }
    }
}

static size_t fetch_filtered(size_t cand)
{
    size_t n = cand * FILTERED_FETCH_FACTOR;
    return n > SIFT_SEARCH_K_MAX ? SIFT_SEARCH_K_MAX : n;
}

static int has_word(const char *t)
{
    for (; *t; t++)
        if (isalnum((unsigned char)*t) || (unsigned char)*t >= 0x80)
            return 1;
    return 0;
}

int sift_search(const sift_searcher *s, sift_store *store, const char *text,
                const sift_search_opts *opts, sift_arena *a, sift_search_hit **hits, size_t *n,
                sift_err *err)
{
    static const sift_search_opts dflt = {0};
    if (!opts)
        opts = &dflt;
    *hits = NULL;
    *n = 0;
    if (!s || !text || !a)
        return sift_err_set(err, SIFT_EINVAL, "search: missing searcher, text or arena");
    size_t k = opts->k ? opts->k : 10;
    if (k > SIFT_SEARCH_K_MAX)
        return sift_err_set(err, SIFT_EINVAL, "search: k %zu over the maximum %d", k,
                            SIFT_SEARCH_K_MAX);
    int mode = opts->mode;
    if (!sift_search_mode_name(mode))
        return sift_err_set(err, SIFT_EINVAL, "search: unknown mode %d", mode);
    if (mode != SIFT_SEARCH_VECTOR && opts->lexical_store && !store)
        return sift_err_set(err, SIFT_EINVAL, "search: %s mode needs a store connection",
                            sift_search_mode_name(mode));
    if (opts->rrf_k < 0 || !isfinite(opts->rrf_k) || !isfinite(opts->w_lexical) ||
        !isfinite(opts->w_vector))
        return sift_err_set(err, SIFT_EINVAL, "search: RRF constant and weights must be finite");
    size_t cand = opts->candidates ? opts->candidates : (k > 100 ? k : 100);
    if (cand < k)
        cand = k;
    if (cand > SIFT_SEARCH_K_MAX)
        cand = SIFT_SEARCH_K_MAX;
    if (!has_word(text))
        return 0;

    /* 1. Query understanding -> filters. */
    sift_query parsed;
    const sift_query *q = opts->filters;
    if (!q && !opts->no_filters) {
        if (sift_query_parse(text, strlen(text), a, &parsed))
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        q = &parsed;
    }
    filt f;
    filt_make(s, opts->no_filters ? NULL : q, &f);
    uint64_t *bits = NULL;
    size_t nwords = (s->n + 63) / 64;
    if (f.active) {
        bits = sift_arena_calloc(a, nwords ? nwords : 1, sizeof *bits);
        if (!bits)
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        for (uint32_t r = 0; r < s->n; r++)
            if (filt_keep(s, &f, r))
                bits[r / 64] |= (uint64_t)1 << (r % 64);
    }

    /* 2. Lexical list, filtered before truncation; exact SKUs kept apart. */
    const char **lex = NULL, **exact = NULL;
    const char **lex_title = NULL;
    size_t nlex = 0, nexact = 0;
    if (mode != SIFT_SEARCH_VECTOR && opts->lexical_store) {
        sift_hit *h;
        size_t nh;
        int rc = sift_store_search_fts(store, text, f.active ? fetch_filtered(cand) : cand, a, &h,
                                       &nh, err);
        if (rc)
            return rc;
        lex = sift_arena_calloc(a, nh + 1, sizeof *lex);
        lex_title = sift_arena_calloc(a, nh + 1, sizeof *lex_title);
        exact = sift_arena_calloc(a, nh + 1, sizeof *exact);
        if (!lex || !exact || !lex_title)
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        for (size_t i = 0; i < nh; i++) {
            uint32_t row;
            int known = row_of(s, h[i].sku, &row);
            if (h[i].exact_sku) {
                exact[nexact++] = known ? s->sku[row] : h[i].sku;
                continue;
            }
            if (f.active && (!known || !(bits[row / 64] >> (row % 64) & 1)))
                continue;
            if (nlex < cand) {
                lex_title[nlex] = h[i].title;
                lex[nlex++] = known ? s->sku[row] : h[i].sku;
            }
        }
    } else {
        exact = sift_arena_calloc(a, EXACT_WORDS_MAX, sizeof *exact);
        if (!exact)
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        exact_skus(s, text, exact, &nexact);
    }
    if (mode != SIFT_SEARCH_VECTOR && !opts->lexical_store) {
        scored *sc;
        size_t ns;
        if (lx_search(s, text, bits, cand, a, &sc, &ns))
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        lex = sift_arena_calloc(a, ns + 1, sizeof *lex);
        lex_title = sift_arena_calloc(a, ns + 1, sizeof *lex_title);
        if (!lex || !lex_title)
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        for (size_t i = 0; i < ns; i++) {
            lex[nlex] = s->sku[sc[i].row];
            lex_title[nlex++] = s->title[sc[i].row];
        }
    }

    /* 3. Vector list, the filter applied inside the scan. */
    const char **vec = NULL;
    size_t nvec = 0;
    if (mode != SIFT_SEARCH_LEXICAL && s->n > 0) {
        float *qv = sift_arena_alloc(a, s->emb->dims * sizeof *qv);
        sift_vechit *vh = sift_arena_alloc(a, cand * sizeof *vh);
        vec = sift_arena_calloc(a, cand, sizeof *vec);
        if (!qv || !vh || !vec)
            return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
        int rc;
        if (opts->query_vec) {
            if (!opts->query_vec_id || strcmp(opts->query_vec_id, s->emb->id) != 0)
                return sift_err_set(err, SIFT_EINVAL,
                                    "search: the query vector comes from %s but the index was "
                                    "built by %s: vectors of different embedders do not compare",
                                    opts->query_vec_id ? opts->query_vec_id : "(unnamed)",
                                    s->emb->id);
            memcpy(qv, opts->query_vec, s->emb->dims * sizeof *qv);
        } else if (s->emb->remote) {
            return sift_err_set(err, SIFT_ESTATE,
                                "search: the index was built by %s, a remote provider: embed the "
                                "query first (sift_searcher_embed_query) and pass opts.query_vec",
                                s->emb->id);
        } else if ((rc = sift_embedder_embed_sync(s->emb, &text, NULL, 1, qv, err))) {
            return rc;
        }
        sift_vecfilter vf = {.bits = bits, .nbits = s->n};
        size_t nv;
        if ((rc = sift_vecindex_search(s->ix, qv, cand, f.active ? &vf : NULL, vh, &nv, err)))
            return rc;
        /* A score of 0 or less shares no feature with the query: not a match. */
        for (size_t i = 0; i < nv && vh[i].score > 0; i++)
            vec[nvec++] = s->sku[vh[i].id];
    }

    /* 4. Fusion; exact SKUs first. */
    sift_fusion_list lists[2];
    size_t nl = 0;
    int li_lex = -1, li_vec = -1;
    double wl = opts->w_lexical ? (opts->w_lexical < 0 ? 0 : opts->w_lexical) : W_LEXICAL_DEFAULT;
    double wv = opts->w_vector ? (opts->w_vector < 0 ? 0 : opts->w_vector) : W_VECTOR_DEFAULT;
    if (mode != SIFT_SEARCH_VECTOR) {
        li_lex = (int)nl;
        lists[nl++] = (sift_fusion_list){.keys = lex, .n = nlex, .weight = wl};
    }
    if (mode != SIFT_SEARCH_LEXICAL) {
        li_vec = (int)nl;
        lists[nl++] = (sift_fusion_list){.keys = vec, .n = nvec, .weight = wv};
    }
    sift_fused *fu = NULL;
    size_t nf = 0;
    if (nlex + nvec > 0) {
        int rc = sift_fusion_rrf(lists, nl, opts->rrf_k, k + nexact, a, &fu, &nf, err);
        if (rc)
            return rc;
    }
    sift_search_hit *out = sift_arena_calloc(a, k, sizeof *out);
    if (!out)
        return sift_err_set(err, SIFT_ENOMEM, "search: out of memory");
    size_t no = 0;
    for (size_t i = 0; i < nexact && no < k; i++) {
        size_t j = 0;
        while (j < i && strcasecmp(exact[j], exact[i]) != 0)
            j++;
        if (j < i)
            continue;
        uint32_t row;
        out[no] = (sift_search_hit){.sku = exact[i], .exact_sku = 1, .score = 1e9};
        out[no].title = row_of(s, exact[i], &row) ? s->title[row] : "";
        no++;
    }
    for (size_t i = 0; i < nf && no < k; i++) {
        size_t j = 0;
        while (j < nexact && strcasecmp(exact[j], fu[i].key) != 0)
            j++;
        if (j < nexact)
            continue;
        sift_search_hit *o = &out[no++];
        o->sku = fu[i].key;
        o->score = fu[i].score;
        o->lex_rank = li_lex >= 0 ? fu[i].ranks[li_lex] : 0;
        o->vec_rank = li_vec >= 0 ? fu[i].ranks[li_vec] : 0;
        uint32_t row;
        if (row_of(s, o->sku, &row))
            o->title = s->title[row];
        else
            o->title = o->lex_rank ? lex_title[o->lex_rank - 1] : "";
    }
    *hits = out;
    *n = no;
    return 0;
}

int sift_searcher_open_sqlite(const char *path, const sift_searcher_opts *opts, sift_searcher **out,
                              sift_err *err)
{
    sift_store *st = NULL;
    /* store_open: a postgres:// URL opens the PostgreSQL store. */
    int rc = sift_store_open(path, 1, &st, err);
    if (rc == 0)
        rc = sift_searcher_open(st, opts, out, err);
    else if (opts)
        sift_embedder_free(opts->embedder); /* taken over, even on failure */
    sift_store_close(st);
    return rc;
}
