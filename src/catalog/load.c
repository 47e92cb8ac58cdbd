/* Loading JSON Lines into a store: split lines, parse each, apply it, commit
 * every `batch` lines. A bad line is reported with its number and skipped;
 * only I/O and store failures stop a load.
 *
 * Parsing (cJSON, field checks) is about a fifth of the work of a product
 * line, and the store cannot take it: SQLite writes on one connection, one
 * thread. So a second thread reads and parses while the calling thread writes.
 * Between them, a bounded queue of blocks of parsed lines, handed over in
 * input order: line numbers, bad-line reports, version ordering and batch
 * boundaries come out exactly as if one thread did both. Callbacks (on_bad,
 * on_progress) and every store call run on the calling thread. The queue
 * holds at most QUEUE_BLOCKS blocks, so memory stays bounded whatever the
 * input size. Without a second thread (opts.no_thread, or pthread_create
 * failing) the same code parses a block and then writes it. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "sift/catalog.h"
#include "sift/store.h"

#define READ_SIZE ((size_t)64 * 1024)
/* Lines per block: enough that the hand-over (a mutex and a condition
 * variable) is rare, few enough that a block of maximal lines stays small. */
#define BLOCK_LINES 128
/* Blocks in flight: 4096 parsed lines, ~40 ms of writing. On a shared
 * machine the parser is sometimes descheduled for a few ms; with 4 blocks
 * (5 ms) the writer then starved, and 5 runs of 50,000 products ranged from
 * 53k to 109k products/s; with 32 they ranged from 99k to 109k. Memory:
 * about 4 MB of arenas, the same whatever the input size. */
#define QUEUE_BLOCKS 32

enum item_state {
    IT_RECORD, /* parsed: apply it */
    IT_BLANK,
    IT_BAD,  /* msg says why; reported and skipped */
    IT_LONG, /* longer than SIFT_CATALOG_LINE_MAX */
    IT_FAIL, /* parsing failed for want of memory: stops the load */
};

typedef struct item {
    size_t lineno;
    int state;
    int op;
    int rc;          /* IT_FAIL: the code */
    const char *msg; /* IT_BAD, IT_FAIL: in the block's arena, or NULL */
    union {
        sift_product product;
        sift_stock stock;
        sift_price price;
    } u;
} item;

typedef struct block {
    item it[BLOCK_LINES];
    size_t n;
    sift_arena *arena; /* the parsed lines' strings; reset when the block is reused */
    int last;          /* the parser has finished: no block follows */
    int rc;            /* with last: 0 at the end of the input, or why reading stopped */
    sift_err err;      /* with last and rc: the message */
    struct block *next;
} block;

typedef struct loader {
    sift_store *store;
    int kind;
    sift_load_opts o;
    sift_load_summary sum;
    size_t in_batch;
    int in_txn;
    sift_err *err;

    /* The queue. `full` is FIFO (input order), `spare` a free list. */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on every change below */
    block *full, *full_tail, *spare;
    int stop; /* the writer stopped early: the parser gives up */
    int threaded;

    /* Parser side. */
    FILE *in;
    block *cur;
    sift_jsonl_reader reader;
    char *buf;
} loader;

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

/* ---- writer: the calling thread ---- */

static int bad_line(loader *l, size_t lineno, const char *msg)
{
    char full[SIFT_ERR_MSG_MAX + 32];
    snprintf(full, sizeof full, "line %zu: %s", lineno, msg);
    l->sum.bad++;
    if (l->o.on_bad)
        l->o.on_bad(l->o.ud, lineno, full);
    if (l->o.max_bad && l->sum.bad >= l->o.max_bad)
        return sift_err_set(l->err, SIFT_EINVAL, "stopped after %zu bad lines (last: %s)",
                            l->sum.bad, full);
    return 0;
}

/* Applies one parsed record. Returns 0 (counted), 1 (bad input the store
 * refused: the message is in e) or a negative store error. */
static int apply(loader *l, const item *it, sift_err *e)
{
    int rc, applied = 0;
    switch (l->kind) {
    case SIFT_CATALOG_PRODUCTS:
        rc = it->op == SIFT_OP_DELETE
                 ? sift_store_delete_product(l->store, it->u.product.sku, it->u.product.version,
                                             &applied, e)
                 : sift_store_upsert_product(l->store, &it->u.product, &applied, e);
        break;
    case SIFT_CATALOG_INVENTORY:
        rc = sift_store_set_stock(l->store, &it->u.stock, &applied, e);
        break;
    default:
        rc = sift_store_set_price(l->store, &it->u.price, &applied, e);
        break;
    }
    if (rc == SIFT_EINVAL || rc == SIFT_ETOOBIG)
        return 1;
    if (rc)
        return rc;
    if (applied) {
        l->sum.applied++;
        if (it->op == SIFT_OP_DELETE)
            l->sum.deleted++;
    } else {
        l->sum.stale++;
    }
    return 0;
}

static int flush(loader *l)
{
    if (!l->in_txn)
        return 0;
    int rc = sift_store_commit(l->store, l->err);
    if (rc)
        return rc;
    l->in_txn = 0;
    l->in_batch = 0;
    l->sum.batches++;
    if (l->o.on_progress)
        l->o.on_progress(l->o.ud, &l->sum);
    return 0;
}

static int write_item(loader *l, const item *it)
{
    l->sum.lines++;
    switch (it->state) {
    case IT_BLANK:
        l->sum.blank++;
        return 0;
    case IT_LONG: {
        char msg[64];
        snprintf(msg, sizeof msg, "longer than %d bytes", SIFT_CATALOG_LINE_MAX);
        return bad_line(l, it->lineno, msg);
    }
    case IT_FAIL:
        return sift_err_set(l->err, it->rc, "line %zu: %s", it->lineno,
                            it->msg ? it->msg : "out of memory");
    default:
        break;
    }
    /* A bad line still opens the batch: the sequence of transactions does
     * not depend on where the bad lines are. */
    int rc;
    if (!l->in_txn) {
        if ((rc = sift_store_begin(l->store, l->err)))
            return rc;
        l->in_txn = 1;
    }
    if (it->state == IT_BAD)
        return bad_line(l, it->lineno, it->msg ? it->msg : "out of memory");
    sift_err e = {0};
    rc = apply(l, it, &e);
    if (rc == 1)
        return bad_line(l, it->lineno, e.msg);
    if (rc) {
        sift_err_set(l->err, rc, "line %zu: %s", it->lineno, e.msg);
        return rc;
    }
    if (++l->in_batch >= l->o.batch)
        return flush(l);
    return 0;
}

/* Writes a block's lines. Returns 0, or the error that stops the load. A last
 * block's read error is returned after its lines are written, like a
 * sequential reader that fails after the lines it delivered. */
static int write_block(loader *l, const block *b)
{
    for (size_t i = 0; i < b->n; i++) {
        int rc = write_item(l, &b->it[i]);
        if (rc)
            return rc;
    }
    if (b->last && b->rc) {
        if (l->err && b->err.code)
            *l->err = b->err;
        return b->rc;
    }
    return 0;
}

/* ---- the queue ---- */

static block *block_new(void)
{
    block *b = sift_calloc(1, sizeof *b);
    if (!b)
        return NULL;
    /* Big enough that a maximal line fits without growing the arena. */
    b->arena = sift_arena_new((size_t)SIFT_CATALOG_LINE_MAX * 2);
    if (!b->arena) {
        sift_free(b);
        return NULL;
    }
    return b;
}

static void block_free(block *b)
{
    if (!b)
        return;
    sift_arena_free(b->arena);
    sift_free(b);
}

static void block_clear(block *b)
{
    sift_arena_reset(b->arena);
    b->n = 0;
    b->last = 0;
    b->rc = 0;
    memset(&b->err, 0, sizeof b->err);
    b->next = NULL;
}

/* Parser side: hands a filled block to the writer and takes an empty one.
 * Without a thread, writes it at once and reuses it. Returns non-zero when
 * the load must stop. */
static int hand_over(loader *l)
{
    block *b = l->cur;
    if (!l->threaded) {
        int rc = write_block(l, b);
        if (rc)
            l->cur = NULL; /* written: produce must not hand it over again */
        else if (!b->last)
            block_clear(b);
        return rc;
    }
    pthread_mutex_lock(&l->mu);
    b->next = NULL;
    if (l->full_tail)
        l->full_tail->next = b;
    else
        l->full = b;
    l->full_tail = b;
    l->cur = NULL;
    pthread_cond_broadcast(&l->cv);
    if (b->last) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    while (!l->spare && !l->stop)
        pthread_cond_wait(&l->cv, &l->mu);
    int stop = l->stop;
    if (!stop) {
        l->cur = l->spare;
        l->spare = l->cur->next;
    }
    pthread_mutex_unlock(&l->mu);
    if (stop)
        return SIFT_ECANCELED;
    block_clear(l->cur);
    return 0;
}

/* Writer side: the next filled block, in input order. */
static block *take(loader *l)
{
    pthread_mutex_lock(&l->mu);
    while (!l->full)
        pthread_cond_wait(&l->cv, &l->mu);
    block *b = l->full;
    l->full = b->next;
    if (!l->full)
        l->full_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    return b;
}

static void give_back(loader *l, block *b)
{
    pthread_mutex_lock(&l->mu);
    b->next = l->spare;
    l->spare = b;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* ---- parser ---- */

/* Parses one line into the current block's next item. */
static void parse_line(loader *l, item *it, const char *line, size_t len)
{
    sift_arena *a = l->cur->arena;
    sift_err e = {0};
    int rc;
    it->op = SIFT_OP_UPSERT;
    switch (l->kind) {
    case SIFT_CATALOG_PRODUCTS:
        rc = sift_product_parse(a, line, len, l->o.default_version, &it->u.product, &it->op, &e);
        break;
    case SIFT_CATALOG_INVENTORY:
        rc = sift_stock_parse(a, line, len, l->o.default_version, &it->u.stock, &e);
        break;
    default:
        rc = sift_price_parse(a, line, len, l->o.default_version, &it->u.price, &e);
        break;
    }
    if (!rc) {
        it->state = IT_RECORD;
        return;
    }
    it->state = rc == SIFT_EINVAL || rc == SIFT_ETOOBIG ? IT_BAD : IT_FAIL;
    it->rc = rc;
    it->msg = sift_arena_strdup(a, e.msg);
    if (!it->msg && it->state == IT_BAD) {
        it->state = IT_FAIL;
        it->rc = SIFT_ENOMEM;
    }
}

static int on_line(void *ud, size_t lineno, const char *line, size_t len)
{
    loader *l = ud;
    item *it = &l->cur->it[l->cur->n++];
    memset(it, 0, sizeof *it);
    it->lineno = lineno;
    if (!line)
        it->state = IT_LONG;
    else if (is_blank(line, len))
        it->state = IT_BLANK;
    else
        parse_line(l, it, line, len);
    /* A parse that ran out of memory stops the load here, as it would have
     * in a single-threaded reader: nothing after it is read. */
    if (it->state == IT_FAIL)
        return it->rc;
    return l->cur->n == BLOCK_LINES ? hand_over(l) : 0;
}

/* Reads and parses the whole input, handing over blocks; the last one says
 * how reading ended. Returns non-zero only when the writer stopped the load
 * (or, without a thread, when writing failed). */
static int produce(loader *l)
{
    int rc = 0;
    for (;;) {
        size_t n = fread(l->buf, 1, READ_SIZE, l->in);
        if (n > 0 && (rc = sift_jsonl_feed(&l->reader, l->buf, n)))
            break;
        if (n < READ_SIZE) {
            if (ferror(l->in)) {
                rc = sift_err_set(&l->cur->err, SIFT_EIO, "load: read error: %s", strerror(errno));
                break;
            }
            if (feof(l->in))
                break;
        }
    }
    if (!rc)
        rc = sift_jsonl_finish(&l->reader);
    if (!l->cur) /* the writer has stopped */
        return rc;
    /* An IT_FAIL item ends the block; its code is reported by the writer. */
    if (rc && l->cur->n > 0 && l->cur->it[l->cur->n - 1].state == IT_FAIL)
        rc = 0;
    if (rc == SIFT_ENOMEM && !l->cur->err.code)
        sift_err_set(&l->cur->err, rc, "out of memory");
    l->cur->last = 1;
    l->cur->rc = rc;
    return hand_over(l);
}

static void *parser_main(void *ud)
{
    produce(ud);
    return NULL;
}

/* The writer's loop when the parser has its own thread. */
static int consume(loader *l)
{
    for (;;) {
        block *b = take(l);
        int rc = write_block(l, b);
        int last = b->last;
        give_back(l, b);
        if (rc) {
            pthread_mutex_lock(&l->mu);
            l->stop = 1;
            pthread_cond_broadcast(&l->cv);
            pthread_mutex_unlock(&l->mu);
            return rc;
        }
        if (last)
            return 0;
    }
}

int sift_catalog_load_jsonl(struct sift_store *store, FILE *f, int kind, const sift_load_opts *opts,
                            sift_load_summary *sum, sift_err *err)
{
    loader l = {.store = store, .kind = kind, .err = err, .in = f};
    if (opts)
        l.o = *opts;
    if (l.o.batch == 0)
        l.o.batch = 5000;
    if (l.o.default_version <= 0)
        l.o.default_version = 1;
    int rc = 0, sync_init = 0, bulk = 0;
    block *blocks[QUEUE_BLOCKS] = {0};
    sift_jsonl_init(&l.reader, on_line, &l);
    if (kind != SIFT_CATALOG_PRODUCTS && kind != SIFT_CATALOG_INVENTORY &&
        kind != SIFT_CATALOG_PRICES) {
        rc = sift_err_set(err, SIFT_EINVAL, "load: unknown catalog kind %d", kind);
        goto out;
    }
    if (!store || !f) {
        rc = sift_err_set(err, SIFT_EINVAL, "load: no store or no input");
        goto out;
    }
    if ((rc = sift_store_bulk(store, 1, err)))
        goto out;
    bulk = 1;
    l.buf = sift_malloc(READ_SIZE);
    if (!l.buf)
        goto oom;
    size_t nblocks = l.o.no_thread ? 1 : QUEUE_BLOCKS;
    for (size_t i = 0; i < nblocks; i++)
        if (!(blocks[i] = block_new()))
            goto oom;
    l.cur = blocks[0];
    for (size_t i = nblocks; i-- > 1;) {
        blocks[i]->next = l.spare;
        l.spare = blocks[i];
    }

    pthread_t th = 0;
    if (!l.o.no_thread && pthread_mutex_init(&l.mu, NULL) == 0) {
        if (pthread_cond_init(&l.cv, NULL) == 0) {
            sync_init = 1;
            /* Set before the thread starts: the parser reads it. */
            l.threaded = 1;
            if (pthread_create(&th, NULL, parser_main, &l) != 0)
                l.threaded = 0; /* no thread: nobody else reads it */
        } else {
            pthread_mutex_destroy(&l.mu);
        }
    }
    if (l.threaded) {
        rc = consume(&l);
        pthread_join(th, NULL);
    } else {
        rc = produce(&l);
    }
    if (!rc)
        rc = flush(&l);
    if (rc == SIFT_ENOMEM && err && err->code != SIFT_ENOMEM)
        sift_err_set(err, rc, "out of memory");
    goto out;
oom:
    rc = sift_err_set(err, SIFT_ENOMEM, "out of memory");
out:
    if (l.in_txn) {
        sift_err ignored = {0};
        sift_store_rollback(store, &ignored);
    }
    if (bulk) {
        /* Its error matters only when the load itself succeeded. */
        sift_err e = {0};
        int brc = sift_store_bulk(store, 0, &e);
        if (brc && !rc) {
            rc = brc;
            if (err)
                *err = e;
        }
    }
    if (sync_init) {
        pthread_cond_destroy(&l.cv);
        pthread_mutex_destroy(&l.mu);
    }
    for (size_t i = 0; i < QUEUE_BLOCKS; i++)
        block_free(blocks[i]);
    sift_jsonl_free(&l.reader);
    sift_free(l.buf);
    if (sum)
        *sum = l.sum;
    return rc;
}
