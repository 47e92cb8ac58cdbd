/* The query-vector cache (CLOCK, one per loop) and the serving wrapper that
 * puts it, and the embedding metrics, in front of a provider (embed.h). */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "sift/arena.h"
#include "sift/ctx.h"
#include "sift/embed.h"
#include "sift/metrics.h"
#include "sift/vecindex.h"

#define CACHE_ENTRIES_MAX ((size_t)1 << 20)
#define NIL UINT32_MAX

/* ---- the cache ---------------------------------------------------------- */

struct centry {
    char *key; /* id, NUL, normalised text; NULL: a free slot */
    size_t klen;
    uint64_t hash;
    uint32_t next; /* the bucket's chain */
    unsigned char ref;
};

struct sift_embed_cache {
    size_t cap, dims, count;
    size_t hand;        /* CLOCK hand: the next slot to consider for eviction */
    uint32_t nbuckets;  /* a power of two, at least 2 x cap */
    uint32_t *buckets;  /* heads of the chains, NIL when empty */
    struct centry *ent; /* cap slots */
    float *vecs;        /* cap x dims */
    sift_buf scratch;   /* the key being looked up */
};

int sift_embed_cache_new(size_t entries, size_t dims, sift_embed_cache **out, sift_err *err)
{
    *out = NULL;
    if (entries < 1 || entries > CACHE_ENTRIES_MAX || dims < 1 || dims > SIFT_VEC_DIMS_MAX)
        return sift_err_set(err, SIFT_EINVAL,
                            "embed cache: entries must be 1..%zu and dims 1..%d (got %zu, %zu)",
                            CACHE_ENTRIES_MAX, SIFT_VEC_DIMS_MAX, entries, dims);
    sift_embed_cache *c = sift_calloc(1, sizeof *c);
    if (!c)
        goto oom;
    c->cap = entries;
    c->dims = dims;
    c->nbuckets = 2;
    while (c->nbuckets < 2 * entries)
        c->nbuckets *= 2;
    c->buckets = sift_malloc(c->nbuckets * sizeof *c->buckets);
    c->ent = sift_calloc(entries, sizeof *c->ent);
    c->vecs = sift_calloc(entries * dims, sizeof *c->vecs);
    if (!c->buckets || !c->ent || !c->vecs)
        goto oom;
    memset(c->buckets, 0xff, c->nbuckets * sizeof *c->buckets); /* NIL */
    sift_buf_init(&c->scratch, SIFT_EMBED_CACHE_TEXT_MAX + 512);
    *out = c;
    return 0;
oom:
    sift_embed_cache_free(c);
    return sift_err_set(err, SIFT_ENOMEM, "embed cache: out of memory for %zu vectors", entries);
}

void sift_embed_cache_free(sift_embed_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->ent && i < c->cap; i++)
        sift_free(c->ent[i].key);
    sift_buf_free(&c->scratch);
    sift_free(c->buckets);
    sift_free(c->ent);
    sift_free(c->vecs);
    sift_free(c);
}

size_t sift_embed_cache_count(const sift_embed_cache *c)
{
    return c->count;
}

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* The key of (id, text) in c->scratch: 0; 1 when the text is too long to
 * cache; SIFT_ENOMEM. */
static int make_key(sift_embed_cache *c, const char *id, const char *text, size_t len)
{
    sift_buf *b = &c->scratch;
    sift_buf_reset(b);
    if (sift_buf_append(b, id, strlen(id) + 1))
        return SIFT_ENOMEM; /* or an id over the buffer's limit: never cached either */
    size_t start = b->len;
    int gap = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (is_space(ch)) {
            gap = b->len > start;
            continue;
        }
        if (b->len - start + gap >= SIFT_EMBED_CACHE_TEXT_MAX)
            return 1;
        if ((gap && sift_buf_putc(b, ' ')) || sift_buf_putc(b, (char)ch))
            return SIFT_ENOMEM;
        gap = 0;
    }
    return 0;
}

static uint32_t find(const sift_embed_cache *c, uint64_t h)
{
    const sift_buf *k = &c->scratch;
    for (uint32_t i = c->buckets[h & (c->nbuckets - 1)]; i != NIL; i = c->ent[i].next) {
        const struct centry *e = &c->ent[i];
        if (e->hash == h && e->klen == k->len && memcmp(e->key, k->data, k->len) == 0)
            return i;
    }
    return NIL;
}

int sift_embed_cache_get(sift_embed_cache *c, const char *id, const char *text, size_t len,
                         float *out)
{
    if (make_key(c, id, text, len))
        return 0;
    uint32_t i = find(c, sift_hash64(c->scratch.data, c->scratch.len, 0));
    if (i == NIL)
        return 0;
    c->ent[i].ref = 1;
    memcpy(out, c->vecs + (size_t)i * c->dims, c->dims * sizeof *out);
    return 1;
}

static void unlink_slot(sift_embed_cache *c, uint32_t i)
{
    uint32_t *p = &c->buckets[c->ent[i].hash & (c->nbuckets - 1)];
    while (*p != i)
        p = &c->ent[*p].next;
    *p = c->ent[i].next;
}

/* The slot to fill: a free one while there are some, else CLOCK's victim
 * (unlinked; its key is still set). */
static uint32_t victim(sift_embed_cache *c)
{
    if (c->count < c->cap)
        return (uint32_t)c->count; /* slots fill in order and are never emptied */
    for (;;) {
        struct centry *e = &c->ent[c->hand];
        uint32_t i = (uint32_t)c->hand;
        c->hand = (c->hand + 1) % c->cap;
        if (!e->ref)
            return i;
        e->ref = 0;
    }
}

int sift_embed_cache_put(sift_embed_cache *c, const char *id, const char *text, size_t len,
                         const float *v)
{
    int rc = make_key(c, id, text, len);
    if (rc)
        return rc < 0 ? rc : 0;
    uint64_t h = sift_hash64(c->scratch.data, c->scratch.len, 0);
    uint32_t i = find(c, h);
    if (i == NIL) {
        char *key = sift_malloc(c->scratch.len);
        if (!key)
            return SIFT_ENOMEM;
        memcpy(key, c->scratch.data, c->scratch.len);
        i = victim(c);
        struct centry *e = &c->ent[i];
        if (e->key) {
            unlink_slot(c, i);
            sift_free(e->key);
        } else {
            c->count++;
        }
        e->key = key;
        e->klen = c->scratch.len;
        e->hash = h;
        e->ref = 0; /* earns its bit when asked again */
        uint32_t *head = &c->buckets[h & (c->nbuckets - 1)];
        e->next = *head;
        *head = i;
    }
    memcpy(c->vecs + (size_t)i * c->dims, v, c->dims * sizeof *v);
    return 0;
}

/* ---- the serving wrapper ------------------------------------------------ */

struct loop_cache {
    _Atomic(uv_loop_t *) loop; /* claimed once with a CAS; NULL: free */
    sift_embed_cache *cache;   /* touched only on that loop's thread */
};

typedef struct wrapper {
    sift_embedder base; /* first: the interface pointer is the object */
    sift_embedder *inner;
    sift_embed_wrap_opts o;
    struct loop_cache loops[SIFT_EMBED_WRAP_LOOPS];
} wrapper;

/* One forwarded async call. */
typedef struct wcall {
    wrapper *w;
    sift_embed_cache *cache; /* store the answer here; NULL: one not cached */
    const char *text;        /* the one text (valid until done, by the contract) */
    size_t len, n;
    float *out;
    uint64_t t0;
    sift_embed_done_fn done;
    void *ud;
} wcall;

static const char *outcome(int code)
{
    return code == 0                ? "ok"
           : code == SIFT_ETIMEDOUT ? "deadline_exceeded"
           : code == SIFT_ECANCELED ? "cancelled"
                                    : "error";
}

static void observe(wrapper *w, int code, size_t n, uint64_t t0)
{
    if (w->o.seconds)
        sift_metric_observe(w->o.seconds, outcome(code), (double)(uv_hrtime() - t0) / 1e9);
    if (w->o.texts && code == 0)
        sift_metric_add(w->o.texts, NULL, (int64_t)n);
    if (w->o.retries)
        sift_metric_set(w->o.retries, NULL, (int64_t)sift_embedder_retries(w->inner));
}

/* The cache of `loop`, made on first use; NULL when the wrapper caches
 * nothing, all slots belong to other loops, or there is no memory. */
static sift_embed_cache *cache_of(wrapper *w, uv_loop_t *loop)
{
    if (!loop)
        return NULL; /* NULL marks a free slot */
    for (int i = 0; i < SIFT_EMBED_WRAP_LOOPS; i++) {
        struct loop_cache *lc = &w->loops[i];
        uv_loop_t *l = atomic_load(&lc->loop);
        if (!l) {
            uv_loop_t *none = NULL;
            if (!atomic_compare_exchange_strong(&lc->loop, &none, loop)) {
                l = none; /* another loop took the slot first */
            } else {
                l = loop;
            }
        }
        if (l != loop)
            continue;
        if (!lc->cache) {
            sift_err err;
            sift_embed_cache_new(w->o.query_cache, w->base.dims, &lc->cache, &err);
        }
        return lc->cache;
    }
    return NULL;
}

static void on_inner_done(void *ud, int code, const sift_err *err)
{
    wcall *c = ud;
    observe(c->w, code, c->n, c->t0);
    if (code == 0 && c->cache)
        sift_embed_cache_put(c->cache, c->w->base.id, c->text, c->len, c->out);
    sift_embed_done_fn done = c->done;
    void *dud = c->ud;
    sift_free(c);
    done(dud, code, err);
}

static int wrap_embed(sift_embedder *eb, struct sift_ctx *ctx, const char *const *texts,
                      const size_t *lens, size_t n, float *out, sift_embed_done_fn done, void *ud,
                      sift_err *err)
{
    wrapper *w = (wrapper *)eb;
    sift_embed_cache *cache = NULL;
    size_t len = 0;
    if (n == 1 && ctx && w->o.query_cache) {
        len = lens ? lens[0] : strlen(texts[0]);
        cache = cache_of(w, sift_ctx_loop(ctx));
    }
    if (cache) {
        int hit = sift_embed_cache_get(cache, eb->id, texts[0], len, out);
        if (w->o.cache)
            sift_metric_add(w->o.cache, hit ? "hit" : "miss", 1);
        if (hit) {
            done(ud, 0, NULL);
            return 0;
        }
    }
    wcall *c = sift_calloc(1, sizeof *c);
    if (!c)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    *c = (wcall){.w = w,
                 .cache = cache,
                 .text = texts[0],
                 .len = len,
                 .n = n,
                 .out = out,
                 .t0 = uv_hrtime(),
                 .done = done,
                 .ud = ud};
    int rc = sift_embedder_embed(w->inner, ctx, texts, lens, n, out, on_inner_done, c, err);
    if (rc) {
        observe(w, rc, n, c->t0);
        sift_free(c);
    }
    return rc;
}

static int wrap_embed_sync(sift_embedder *eb, const char *const *texts, const size_t *lens,
                           size_t n, float *out, sift_err *err)
{
    wrapper *w = (wrapper *)eb;
    uint64_t t0 = uv_hrtime();
    int rc = sift_embedder_embed_sync(w->inner, texts, lens, n, out, err);
    observe(w, rc, n, t0);
    return rc;
}

static uint64_t wrap_retries(sift_embedder *eb)
{
    return sift_embedder_retries(((wrapper *)eb)->inner);
}

static void wrap_free(sift_embedder *eb)
{
    wrapper *w = (wrapper *)eb;
    for (int i = 0; i < SIFT_EMBED_WRAP_LOOPS; i++)
        sift_embed_cache_free(w->loops[i].cache);
    sift_embedder_free(w->inner);
    sift_free(w);
}

static const sift_embedder_ops wrap_ops = {
    .name = "wrap",
    .embed = wrap_embed,
    .embed_sync = wrap_embed_sync,
    .free = wrap_free,
    .retries = wrap_retries,
};

int sift_embedder_wrap_new(sift_embedder *inner, const sift_embed_wrap_opts *opts,
                           sift_embedder **out, sift_err *err)
{
    *out = NULL;
    if (!inner)
        return sift_err_set(err, SIFT_EINVAL, "embed wrapper: no provider to wrap");
    if (opts && opts->query_cache > CACHE_ENTRIES_MAX) {
        sift_embedder_free(inner);
        return sift_err_set(err, SIFT_EINVAL, "embed.query_cache: at most %zu entries (got %zu)",
                            CACHE_ENTRIES_MAX, opts->query_cache);
    }
    wrapper *w = sift_calloc(1, sizeof *w);
    if (!w) {
        sift_embedder_free(inner);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    w->base = (sift_embedder){.ops = &wrap_ops,
                              .dims = inner->dims,
                              .max_batch = inner->max_batch,
                              .id = inner->id,
                              .remote = inner->remote};
    w->inner = inner;
    if (opts)
        w->o = *opts;
    *out = &w->base;
    return 0;
}
