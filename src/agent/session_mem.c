/* The in-memory session store: an LRU cache of stored conversations.
 *
 * Entries sit in a chained hash map (for lookup) and on a doubly-linked list
 * in order of use, most recent at the head (for eviction from the tail), so
 * load, save and delete are O(1) apart from copying the conversation. Each
 * entry holds the conversation's JSON text: the same bytes the SQLite store
 * keeps, an honest measure for the byte cap, and a copy that shares nothing
 * with the arena of the run that saved it.
 *
 * One mutex guards the map, the list and the counters. Serialising (before a
 * save) and parsing (after a load) happen outside it; under it there are
 * only pointer moves and one memcpy of the loaded text. Entries that leave
 * the map are freed after the mutex is released. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/memory.h"
#include "sift/session.h"

#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define MIN_BUCKETS 64

typedef struct entry {
    struct entry *hnext; /* next in the bucket */
    struct entry *prev;  /* towards the head (more recently used) */
    struct entry *next;  /* towards the tail (less recently used) */
    uint64_t hash;
    int64_t used_ms;
    size_t bytes; /* charged against max_bytes */
    char *json;
    size_t json_len;
    char id[]; /* NUL-terminated */
} entry;

typedef struct mem_store {
    sift_session_store base;
    pthread_mutex_t mu;
    entry **buckets;
    size_t n_buckets; /* a power of two */
    entry *head, *tail;
    size_t count, bytes;
    size_t max_bytes, max_sessions;
    int64_t ttl_ms;
    sift_session_clock clock;
    void *clock_ud;
} mem_store;

static int64_t mono_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static entry **slot(mem_store *m, const char *id, uint64_t h)
{
    entry **p = &m->buckets[h & (m->n_buckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->id, id) != 0))
        p = &(*p)->hnext;
    return p;
}

static void list_unlink(mem_store *m, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_head(mem_store *m, entry *e)
{
    e->prev = NULL;
    e->next = m->head;
    if (m->head)
        m->head->prev = e;
    else
        m->tail = e;
    m->head = e;
}

/* Takes e out of the map and the list; the caller frees it. */
static void detach(mem_store *m, entry *e)
{
    entry **p = slot(m, e->id, e->hash);
    *p = e->hnext;
    e->hnext = NULL;
    list_unlink(m, e);
    m->count--;
    m->bytes -= e->bytes;
}

static void free_entry(entry *e)
{
    if (e) {
        sift_free(e->json);
        sift_free(e);
    }
}

/* Doubling keeps chains short; when the bigger array cannot be allocated the
 * map keeps working with longer chains. */
static void maybe_grow(mem_store *m)
{
    if (m->count <= m->n_buckets)
        return;
    size_t n = m->n_buckets * 2;
    entry **b = sift_calloc(n, sizeof(entry *));
    if (!b)
        return;
    for (size_t i = 0; i < m->n_buckets; i++) {
        entry *e = m->buckets[i];
        while (e) {
            entry *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    sift_free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
}

static bool expired(const mem_store *m, const entry *e, int64_t now)
{
    return m->ttl_ms > 0 && now - e->used_ms > m->ttl_ms;
}

static int mem_load(sift_session_store *s, const char *id, sift_conv *out, bool *found,
                    sift_err *err)
{
    mem_store *m = (mem_store *)s;
    uint64_t h = hash_id(id);
    entry *gone = NULL;
    char *text = NULL;
    size_t len = 0;
    bool nomem = false;
    int64_t now = m->clock(m->clock_ud);

    pthread_mutex_lock(&m->mu);
    entry *e = *slot(m, id, h);
    if (e && expired(m, e, now)) {
        detach(m, e);
        gone = e;
    } else if (e) {
        list_unlink(m, e);
        list_push_head(m, e);
        e->used_ms = now;
        len = e->json_len;
        text = sift_arena_memdup(out->arena, e->json, len + 1);
        nomem = !text;
    }
    pthread_mutex_unlock(&m->mu);
    free_entry(gone);

    if (nomem)
        return sift_err_set(err, SIFT_ENOMEM, "session %s: out of memory loading", id);
    if (!text)
        return 0;
    int rc = sift_memory_from_json(text, len, out, err);
    if (rc)
        return rc;
    *found = true;
    return 0;
}

/* A save; with `check`, only when the live entry's text is `expect` (NULL:
 * when there is no live entry), decided under the lock. */
static int mem_put(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                   bool check, const char *expect, bool *saved, sift_err *err)
{
    mem_store *m = (mem_store *)s;
    *saved = false;
    size_t id_len = strlen(id);
    size_t overhead = sizeof(entry) + id_len + 1 + 1;
    sift_buf b;
    sift_buf_init(&b, m->max_bytes > overhead ? m->max_bytes - overhead : 1);
    int rc = sift_memory_to_json(msgs, n, &b, err);
    if (rc) {
        sift_buf_free(&b);
        if (rc == SIFT_ETOOBIG)
            return sift_err_set(err, rc,
                                "session %s: conversation larger than the store's %zu-byte cap", id,
                                m->max_bytes);
        return rc;
    }
    entry *e = sift_malloc(sizeof(*e) + id_len + 1);
    size_t json_len = 0;
    char *json = sift_buf_detach(&b, &json_len);
    if (!e || !json) {
        sift_free(e);
        sift_free(json);
        sift_buf_free(&b);
        return sift_err_set(err, SIFT_ENOMEM, "session %s: out of memory saving", id);
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->id, id, id_len + 1);
    e->hash = hash_id(id);
    e->json = json;
    e->json_len = json_len;
    e->bytes = overhead + json_len;
    e->used_ms = m->clock(m->clock_ud);

    entry *victims = NULL; /* chained through hnext, freed after unlocking */
    pthread_mutex_lock(&m->mu);
    entry **p = slot(m, id, e->hash);
    if (check) {
        entry *cur = *p && !expired(m, *p, e->used_ms) ? *p : NULL;
        bool same = cur ? expect && cur->json_len == strlen(expect) &&
                              !memcmp(cur->json, expect, cur->json_len)
                        : !expect;
        if (!same) {
            pthread_mutex_unlock(&m->mu);
            free_entry(e);
            return 0;
        }
    }
    if (*p) {
        entry *old = *p;
        detach(m, old);
        old->hnext = victims;
        victims = old;
        p = slot(m, id, e->hash);
    }
    *p = e;
    list_push_head(m, e);
    m->count++;
    m->bytes += e->bytes;
    while (m->tail != e &&
           (m->bytes > m->max_bytes || (m->max_sessions && m->count > m->max_sessions))) {
        entry *v = m->tail;
        detach(m, v);
        v->hnext = victims;
        victims = v;
    }
    maybe_grow(m);
    pthread_mutex_unlock(&m->mu);
    *saved = true;

    while (victims) {
        entry *next = victims->hnext;
        free_entry(victims);
        victims = next;
    }
    return 0;
}

static int mem_save(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                    sift_err *err)
{
    bool saved;
    return mem_put(s, id, msgs, n, false, NULL, &saved, err);
}

static int mem_save_if(sift_session_store *s, const char *id, const char *expect,
                       const sift_message *msgs, size_t n, bool *saved, sift_err *err)
{
    return mem_put(s, id, msgs, n, true, expect, saved, err);
}

static int mem_remove(sift_session_store *s, const char *id, sift_err *err)
{
    (void)err;
    mem_store *m = (mem_store *)s;
    uint64_t h = hash_id(id);
    pthread_mutex_lock(&m->mu);
    entry *e = *slot(m, id, h);
    if (e)
        detach(m, e);
    pthread_mutex_unlock(&m->mu);
    free_entry(e);
    return 0;
}

static void mem_close(sift_session_store *s)
{
    mem_store *m = (mem_store *)s;
    entry *e = m->head;
    while (e) {
        entry *next = e->next;
        free_entry(e);
        e = next;
    }
    sift_free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    sift_free(m);
}

static const sift_session_ops mem_ops = {
    .kind = "memory",
    .load = mem_load,
    .save = mem_save,
    .remove = mem_remove,
    .close = mem_close,
    .save_if = mem_save_if,
};

int sift_session_mem_new(const sift_session_mem_opts *opts, sift_session_store **out, sift_err *err)
{
    sift_session_mem_opts o = {0};
    if (opts)
        o = *opts;
    if (!out)
        return sift_err_set(err, SIFT_EINVAL, "session store: no output pointer");
    *out = NULL;
    if (o.ttl_ms < 0)
        return sift_err_set(err, SIFT_EINVAL, "session store: ttl_ms must not be negative");
    mem_store *m = sift_calloc(1, sizeof(*m));
    if (!m)
        goto nomem;
    m->buckets = sift_calloc(MIN_BUCKETS, sizeof(entry *));
    if (!m->buckets)
        goto nomem;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        sift_free(m->buckets);
        sift_free(m);
        return sift_err_set(err, SIFT_ENOMEM, "session store: cannot create a mutex");
    }
    m->base.ops = &mem_ops;
    m->n_buckets = MIN_BUCKETS;
    m->max_bytes = o.max_bytes ? o.max_bytes : DEFAULT_MAX_BYTES;
    m->max_sessions = o.max_sessions;
    m->ttl_ms = o.ttl_ms;
    m->clock = o.clock ? o.clock : mono_ms;
    m->clock_ud = o.clock ? o.clock_ud : NULL;
    *out = &m->base;
    return 0;
nomem:
    if (m)
        sift_free(m->buckets);
    sift_free(m);
    return sift_err_set(err, SIFT_ENOMEM, "session store: out of memory");
}

void sift_session_mem_stats(sift_session_store *s, size_t *sessions, size_t *bytes)
{
    mem_store *m = (mem_store *)s;
    if (!s || s->ops != &mem_ops) {
        if (sessions)
            *sessions = 0;
        if (bytes)
            *bytes = 0;
        return;
    }
    pthread_mutex_lock(&m->mu);
    if (sessions)
        *sessions = m->count;
    if (bytes)
        *bytes = m->bytes;
    pthread_mutex_unlock(&m->mu);
}
