/* Session stores for an event loop (session_pool.h): each load and save runs
 * on the libuv thread pool with a store object of its own, taken from a
 * locked free list; the result comes back on the loop in uv's after_work. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/memory.h"
#include "sift/pgstore.h"
#include "sift/session_pool.h"

enum { OP_IDLE, OP_LOAD, OP_SAVE };

struct idle_store {
    sift_session_store *s;
    struct idle_store *next;
};

struct sift_session_pool {
    sift_session_pool_opts opts;
    sift_session_config cfg; /* sift_session_pool_open: what open_cfg opens */
    char kind[16];
    uv_mutex_t mu;                 /* guards idle */
    struct idle_store *idle;       /* stores not in use */
    sift_session_store *only;      /* shared: the one store */
    _Atomic int64_t next_purge_ms; /* wall clock: when a save may next purge expired rows */
};

/* ---- configuration ---- */

static int cfg_str(const cJSON *sec, const char *name, const char *key, char **out, sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return sift_err_set(err, SIFT_EINVAL, "%s: sessions.%s: must be a non-empty string", name,
                            key);
    char *d = sift_strdup(v->valuestring);
    if (!d)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    sift_free(*out);
    *out = d;
    return 0;
}

static int cfg_num(const cJSON *sec, const char *name, const char *key, double max, double *out,
                   sift_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > max)
        return sift_err_set(err, SIFT_EINVAL,
                            "%s: sessions.%s: must be an integer between 0 and %.0f", name, key,
                            max);
    *out = v->valuedouble;
    return 0;
}

int sift_session_config_read(const cJSON *doc, const char *name, const char *store_url,
                             sift_session_config *c, sift_err *err)
{
    memset(c, 0, sizeof *c);
    char *store = NULL;
    double ttl = 0, max_bytes = 0, max_sessions = 0, timeout = 5000;
    int rc = 0;
    const cJSON *sec = doc ? cJSON_GetObjectItemCaseSensitive(doc, "sessions") : NULL;
    if (sec && !cJSON_IsObject(sec) && !cJSON_IsNull(sec))
        return sift_err_set(err, SIFT_EINVAL, "%s: sessions: must be a mapping", name);
    if (sec && cJSON_IsObject(sec) &&
        ((rc = cfg_str(sec, name, "store", &store, err)) ||
         (rc = cfg_str(sec, name, "url", &c->url, err)) ||
         (rc = cfg_num(sec, name, "ttl_ms", 9.0e15, &ttl, err)) ||
         (rc = cfg_num(sec, name, "timeout_ms", 3600000, &timeout, err)) ||
         (rc = cfg_num(sec, name, "max_bytes", 1.0e15, &max_bytes, err)) ||
         (rc = cfg_num(sec, name, "max_sessions", 1.0e15, &max_sessions, err))))
        goto fail;
    if (timeout < 1) {
        rc =
            sift_err_set(err, SIFT_EINVAL,
                         "%s: sessions.timeout_ms: must be an integer between 1 and 3600000", name);
        goto fail;
    }
    c->timeout_ms = (int)timeout;
    c->ttl_ms = (int64_t)ttl;
    c->max_bytes = (size_t)max_bytes;
    c->max_sessions = (size_t)max_sessions;
    const char *kind = store ? store : "auto";
    if (!c->url && store_url && !(c->url = sift_strdup(store_url))) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto fail;
    }
    if (!strcmp(kind, "auto"))
        kind = !c->url ? "memory" : sift_pg_is_url(c->url) ? "postgres" : "sqlite";
    if (strcmp(kind, "memory") != 0 && strcmp(kind, "sqlite") != 0 &&
        strcmp(kind, "postgres") != 0) {
        rc =
            sift_err_set(err, SIFT_EINVAL,
                         "%s: sessions.store: must be one of auto, memory, sqlite, postgres", name);
        goto fail;
    }
    if (strcmp(kind, "memory") != 0 && !c->url) {
        rc = sift_err_set(err, SIFT_EINVAL, "%s: sessions.url: needed for sessions.store: %s", name,
                          kind);
        goto fail;
    }
    if ((!strcmp(kind, "postgres") && !sift_pg_is_url(c->url)) ||
        (!strcmp(kind, "sqlite") && sift_pg_is_url(c->url))) {
        rc = sift_err_set(err, SIFT_EINVAL,
                          "%s: sessions.store: %s does not match sessions.url (a postgres:// URL "
                          "is for postgres, a file path for sqlite)",
                          name, kind);
        goto fail;
    }
    if (!strcmp(kind, "memory")) {
        sift_free(c->url);
        c->url = NULL;
    }
    if (!(c->backend = sift_strdup(kind))) {
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
        goto fail;
    }
    sift_free(store);
    return 0;
fail:
    sift_free(store);
    sift_session_config_free(c);
    return rc;
}

void sift_session_config_free(sift_session_config *c)
{
    sift_free(c->backend);
    sift_free(c->url);
    memset(c, 0, sizeof *c);
}

/* ---- the pool ---- */

static int open_cfg(void *ud, sift_session_store **out, sift_err *err)
{
    const sift_session_config *c = ud;
    if (!strcmp(c->backend, "memory")) {
        sift_session_mem_opts o = {
            .max_bytes = c->max_bytes, .max_sessions = c->max_sessions, .ttl_ms = c->ttl_ms};
        return sift_session_mem_new(&o, out, err);
    }
    if (!strcmp(c->backend, "sqlite")) {
        sift_session_sqlite_opts o = {.ttl_ms = c->ttl_ms, .busy_timeout_ms = c->timeout_ms};
        return sift_session_sqlite_open(c->url, &o, out, err);
    }
    sift_session_pg_opts o = {.ttl_ms = c->ttl_ms};
    return sift_session_pg_open(c->url, &o, out, err);
}

/* The PostgreSQL URL the pool connects with: the configured one plus a
 * statement_timeout (libpq's "options" parameter), so that a session query
 * stuck behind a lock gives its pool thread back. A URL that sets options
 * itself is left alone. */
static int pg_url_with_timeout(const char *url, int timeout_ms, char **out, sift_err *err)
{
    if (strstr(url, "options=")) {
        *out = sift_strdup(url);
    } else {
        size_t n = strlen(url) + 64;
        if ((*out = sift_malloc(n)))
            snprintf(*out, n, "%s%soptions=-c%%20statement_timeout%%3D%d", url,
                     strchr(url, '?') ? "&" : "?", timeout_ms);
    }
    return *out ? 0 : sift_err_set(err, SIFT_ENOMEM, "out of memory");
}

static void give(sift_session_pool *p, sift_session_store *s, struct idle_store *node)
{
    if (p->opts.shared || !node)
        return;
    node->s = s;
    uv_mutex_lock(&p->mu);
    node->next = p->idle;
    p->idle = node;
    uv_mutex_unlock(&p->mu);
}

/* A store for this call, and the list node that carries it back. */
static int take(sift_session_pool *p, sift_session_store **s, struct idle_store **node,
                sift_err *err)
{
    *node = NULL;
    if (p->opts.shared) {
        *s = p->only;
        return 0;
    }
    uv_mutex_lock(&p->mu);
    struct idle_store *n = p->idle;
    if (n)
        p->idle = n->next;
    uv_mutex_unlock(&p->mu);
    if (n) {
        *s = n->s;
        *node = n;
        return 0;
    }
    if (!(n = sift_calloc(1, sizeof *n)))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    int rc = p->opts.open(p->opts.open_ud, s, err);
    if (rc) {
        sift_free(n);
        return rc;
    }
    *node = n;
    return 0;
}

int sift_session_pool_new(const sift_session_pool_opts *opts, sift_session_pool **out,
                          sift_err *err)
{
    *out = NULL;
    if (!opts || !opts->open)
        return sift_err_set(err, SIFT_EINVAL, "session pool: no open function");
    sift_session_pool *p = sift_calloc(1, sizeof *p);
    if (!p)
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    p->opts = *opts;
    if (uv_mutex_init(&p->mu)) {
        sift_free(p);
        return sift_err_set(err, SIFT_ENOMEM, "session pool: no mutex");
    }
    sift_session_store *s = NULL;
    int rc = p->opts.open(p->opts.open_ud, &s, err);
    if (rc) {
        uv_mutex_destroy(&p->mu);
        sift_free(p);
        return rc;
    }
    snprintf(p->kind, sizeof p->kind, "%s", s->ops->kind);
    if (p->opts.shared) {
        p->only = s;
    } else {
        struct idle_store *n = sift_calloc(1, sizeof *n);
        if (!n) {
            sift_session_close(s);
            sift_session_pool_free(p);
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        }
        give(p, s, n);
    }
    *out = p;
    return 0;
}

int sift_session_pool_open(const sift_session_config *c, sift_session_pool **out, sift_err *err)
{
    *out = NULL;
    sift_session_pool *p = NULL;
    sift_session_config *copy = sift_calloc(1, sizeof *copy);
    if (!copy || !(copy->backend = sift_strdup(c->backend)) ||
        (c->url && !(copy->url = sift_strdup(c->url)))) {
        if (copy)
            sift_session_config_free(copy);
        sift_free(copy);
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    }
    if (copy->url && !strcmp(c->backend, "postgres")) {
        char *u = NULL;
        if (pg_url_with_timeout(copy->url, c->timeout_ms > 0 ? c->timeout_ms : 5000, &u, err)) {
            sift_session_config_free(copy);
            sift_free(copy);
            return SIFT_ENOMEM;
        }
        sift_free(copy->url);
        copy->url = u;
    }
    copy->ttl_ms = c->ttl_ms;
    copy->timeout_ms = c->timeout_ms;
    copy->max_bytes = c->max_bytes;
    copy->max_sessions = c->max_sessions;
    sift_session_pool_opts o = {
        .open = open_cfg, .open_ud = copy, .shared = !strcmp(c->backend, "memory")};
    int rc = sift_session_pool_new(&o, &p, err);
    if (rc || !p) {
        sift_session_config_free(copy);
        sift_free(copy);
        return rc ? rc : sift_err_set(err, SIFT_EINTERNAL, "session pool: none made");
    }
    /* the pool owns the copy from now on: moved into p->cfg */
    p->cfg = *copy;
    sift_free(copy);
    p->opts.open_ud = &p->cfg;
    snprintf(p->kind, sizeof p->kind, "%s", c->backend);
    *out = p;
    return 0;
}

const char *sift_session_pool_kind(const sift_session_pool *p)
{
    return p->kind;
}

void sift_session_pool_free(sift_session_pool *p)
{
    if (!p)
        return;
    sift_session_close(p->only);
    while (p->idle) {
        struct idle_store *n = p->idle;
        p->idle = n->next;
        sift_session_close(n->s);
        sift_free(n);
    }
    uv_mutex_destroy(&p->mu);
    sift_session_config_free(&p->cfg);
    sift_free(p);
}

/* ---- calls ---- */

/* The index of the last user message: where the turn being saved starts. */
static size_t turn_start(const sift_conv *c)
{
    for (size_t i = c->len; i > 0; i--)
        if (c->msgs[i - 1].role == SIFT_ROLE_USER)
            return i - 1;
    return 0;
}

static int as_json(const sift_message *msgs, size_t n, char **out, sift_err *err)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = sift_memory_to_json(msgs, n, &b, err);
    if (!rc && !(*out = sift_strndup(b.data ? b.data : "", b.len)))
        rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
    sift_buf_free(&b);
    return rc;
}

static int do_load(sift_session_store *s, sift_session_op *op)
{
    size_t before = op->conv->len;
    int rc = sift_session_load(s, op->id, op->conv, &op->found, &op->err);
    if (rc)
        return rc;
    /* what was loaded, as the save will compare it (the empty string when
     * the session did not exist) */
    if (op->found)
        return as_json(op->conv->msgs + before, op->conv->len - before, &op->base, &op->err);
    if (!(op->base = sift_strdup("")))
        return sift_err_set(&op->err, SIFT_ENOMEM, "out of memory");
    return 0;
}

/* Saves after a load, keeping a turn another run saved since: read the
 * session again; if it is what this run loaded, save this run's conversation,
 * else what is there now plus this run's turn. With a store that can
 * compare-and-set (save_if), the write happens only if the session is still
 * what was just read, and a lost race starts over; a store without it writes
 * unconditionally (a save landing between the read and the write is lost). */
#define SAVE_TRIES 4

static int do_merge_save(sift_session_store *s, sift_session_op *op)
{
    const sift_conv *c = op->conv;
    char *mine = NULL;
    int rc = as_json(c->msgs, c->len, &mine, &op->err);
    if (rc)
        return rc;
    for (int attempt = 0; attempt < SAVE_TRIES; attempt++) {
        sift_arena *a = sift_arena_new(8192);
        char *now = NULL;
        bool found = false, saved = false, merge = false;
        sift_conv cur;
        if (!a) {
            rc = sift_err_set(&op->err, SIFT_ENOMEM, "out of memory");
            break;
        }
        sift_conv_init(&cur, a);
        rc = sift_session_load(s, op->id, &cur, &found, &op->err);
        if (rc == SIFT_EPROTO) {
            /* unreadable now: this run's conversation repairs it */
            sift_arena_free(a);
            rc = sift_session_save(s, op->id, c->msgs, c->len, &op->err);
            break;
        }
        if (!rc && found)
            rc = as_json(cur.msgs, cur.len, &now, &op->err);
        if (!rc && found && !strcmp(now, mine)) {
            /* already there: a save whose reply was lost, then retried */
            sift_free(now);
            sift_arena_free(a);
            break;
        }
        merge = !rc && found && strcmp(now, op->base) != 0;
        /* it changed since the load: keep what is there, then this turn */
        for (size_t i = turn_start(c); !rc && merge && i < c->len; i++)
            rc = sift_conv_append(&cur, &c->msgs[i], &op->err);
        const sift_conv *target = merge ? &cur : c;
        if (!rc && !s->ops->save_if) {
            rc = sift_session_save(s, op->id, target->msgs, target->len, &op->err);
            saved = rc == 0;
        } else if (!rc) {
            rc = sift_session_save_if(s, op->id, found ? now : NULL, target->msgs, target->len,
                                      &saved, &op->err);
        }
        sift_free(now);
        sift_arena_free(a);
        if (rc || saved) {
            op->merged = saved && merge;
            break;
        }
        if (attempt == SAVE_TRIES - 1) {
            /* four lost races in a row means the stored text never matches
             * (a row not written by sift): replace it */
            rc = sift_session_save(s, op->id, c->msgs, c->len, &op->err);
        }
    }
    sift_free(mine);
    return rc;
}

static int do_save(sift_session_store *s, sift_session_op *op)
{
    const sift_conv *c = op->conv;
    if (!op->loaded)
        return sift_session_save(s, op->id, c->msgs, c->len, &op->err);
    return do_merge_save(s, op);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* With a TTL, the rows of expired sessions of SQLite and PostgreSQL stay
 * until purged (they load as empty). A save purges them, at most once per
 * min(TTL, 10 minutes) per process: one indexed DELETE on the pool thread
 * that won the compare-and-swap, not a timer of its own. A failed purge is
 * not the save's failure; the next interval tries again. */
static void maybe_purge(sift_session_pool *p, sift_session_store *s)
{
    const sift_session_config *c = &p->cfg;
    if (c->ttl_ms <= 0 || !c->backend || !strcmp(c->backend, "memory"))
        return;
    int64_t now = wall_ms(), next = atomic_load(&p->next_purge_ms);
    int64_t every = c->ttl_ms < 600000 ? c->ttl_ms : 600000;
    if (now < next || !atomic_compare_exchange_strong(&p->next_purge_ms, &next, now + every))
        return;
    sift_err err = {0};
    if (!strcmp(c->backend, "sqlite"))
        sift_session_sqlite_purge(s, NULL, &err);
    else
        sift_session_pg_purge(s, NULL, &err);
}

static void on_work(uv_work_t *w)
{
    sift_session_op *op = (sift_session_op *)((char *)w - offsetof(sift_session_op, work));
    sift_session_pool *p = op->pool;
    sift_session_store *s = NULL;
    struct idle_store *node = NULL;
    if ((op->rc = take(p, &s, &node, &op->err)))
        return;
    if (!s) {
        op->rc = sift_err_set(&op->err, SIFT_EINTERNAL, "session pool: no store");
        return;
    }
    op->rc = op->kind == OP_LOAD ? do_load(s, op) : do_save(s, op);
    if (op->kind == OP_SAVE && op->rc == 0)
        maybe_purge(p, s);
    give(p, s, node);
}

static void on_after_work(uv_work_t *w, int status)
{
    sift_session_op *op = (sift_session_op *)((char *)w - offsetof(sift_session_op, work));
    if (status == UV_ECANCELED)
        op->rc = sift_err_set(&op->err, SIFT_ECANCELED, "session %s: cancelled", op->id);
    if (op->kind == OP_LOAD && op->rc == 0)
        op->loaded = true;
    op->kind = OP_IDLE;
    op->done(op);
}

static int submit(sift_session_pool *p, uv_loop_t *loop, sift_session_op *op, int kind,
                  const char *id, sift_conv *conv, sift_session_done_fn done, sift_err *err)
{
    int rc;
    if (op->kind != OP_IDLE)
        return sift_err_set(err, SIFT_EBUSY, "session %s: a call is already in flight", id);
    if ((rc = sift_session_id_check(id, err)))
        return rc;
    snprintf(op->id, sizeof op->id, "%s", id);
    op->pool = p;
    op->kind = kind;
    op->conv = conv;
    op->done = done;
    op->rc = 0;
    op->err = (sift_err){0};
    op->found = op->merged = false;
    op->queued_ns = uv_hrtime();
    if ((rc = uv_queue_work(loop, &op->work, on_work, on_after_work))) {
        op->kind = OP_IDLE;
        return sift_err_set(err, SIFT_EINTERNAL, "session %s: uv_queue_work: %s", id,
                            uv_strerror(rc));
    }
    return 0;
}

int sift_session_pool_load(sift_session_pool *p, uv_loop_t *loop, sift_session_op *op,
                           const char *id, sift_conv *conv, sift_session_done_fn done,
                           sift_err *err)
{
    if (op->kind != OP_IDLE)
        return sift_err_set(err, SIFT_EBUSY, "session %s: a call is already in flight", id);
    sift_session_op_reset(op);
    return submit(p, loop, op, OP_LOAD, id, conv, done, err);
}

int sift_session_pool_save(sift_session_pool *p, uv_loop_t *loop, sift_session_op *op,
                           const char *id, const sift_conv *conv, sift_session_done_fn done,
                           sift_err *err)
{
    /* the save only reads conv; the op's field is not const for the load */
    return submit(p, loop, op, OP_SAVE, id, (sift_conv *)conv, done, err);
}

void sift_session_op_cancel(sift_session_op *op)
{
    if (op->kind != OP_IDLE)
        uv_cancel((uv_req_t *)&op->work);
}

bool sift_session_op_pending(const sift_session_op *op)
{
    return op->kind != OP_IDLE;
}

void sift_session_op_reset(sift_session_op *op)
{
    sift_free(op->base);
    op->base = NULL;
    op->loaded = false;
}
