/* Allocation wrappers with failure injection, and the per-run arena.
 *
 * The arena is a list of blocks; allocation bumps a pointer in the newest
 * block. Requests larger than the block size get a block of their own, linked
 * behind the current one so the current block keeps serving small requests. */
#include "sift/arena.h"
#include "sift/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local long fail_after = -1;

void sift_mem_fail_after(long n)
{
    fail_after = n;
}

static int injected_failure(void)
{
    if (fail_after < 0)
        return 0;
    if (fail_after == 0)
        return 1;
    fail_after--;
    return 0;
}

void *sift_malloc(size_t n)
{
    return injected_failure() ? NULL : malloc(n);
}

void *sift_calloc(size_t count, size_t size)
{
    return injected_failure() ? NULL : calloc(count, size);
}

void *sift_realloc(void *p, size_t n)
{
    return injected_failure() ? NULL : realloc(p, n);
}

void sift_free(void *p)
{
    free(p);
}

char *sift_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = sift_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *sift_strdup(const char *s)
{
    return s ? sift_strndup(s, strlen(s)) : NULL;
}

#define ALIGN 16
#define ALIGN_UP(n) (((n) + (ALIGN - 1)) & ~(size_t)(ALIGN - 1))

struct block {
    struct block *next;
    size_t size; /* usable bytes in data */
    size_t used;
    _Alignas(ALIGN) unsigned char data[];
};

struct hook {
    struct hook *next;
    void (*fn)(void *);
    void *p;
};

struct sift_arena {
    struct block *head; /* current block, then older and large blocks */
    struct block *first;
    struct hook *hooks;
    size_t block_size;
    size_t used;
    size_t reserved;
};

static struct block *block_new(size_t size)
{
    struct block *b = sift_malloc(sizeof *b + size);
    if (b) {
        b->next = NULL;
        b->size = size;
        b->used = 0;
    }
    return b;
}

sift_arena *sift_arena_new(size_t block_size)
{
    if (block_size == 0)
        block_size = 4096;
    block_size = ALIGN_UP(block_size);
    sift_arena *a = sift_malloc(sizeof *a);
    if (!a)
        return NULL;
    memset(a, 0, sizeof *a);
    a->block_size = block_size;
    a->first = a->head = block_new(block_size);
    if (!a->first) {
        sift_free(a);
        return NULL;
    }
    a->reserved = sizeof(struct block) + block_size;
    return a;
}

static void run_hooks(sift_arena *a)
{
    /* A hook may allocate from the arena or defer more work; take the list
     * first so that nothing registered during cleanup is lost or run twice. */
    while (a->hooks) {
        struct hook *h = a->hooks;
        a->hooks = NULL;
        while (h) {
            struct hook *next = h->next;
            h->fn(h->p);
            h = next; /* the hook records themselves live in the arena */
        }
    }
}

void sift_arena_reset(sift_arena *a)
{
    if (!a)
        return;
    run_hooks(a);
    struct block *b = a->head;
    while (b) {
        struct block *next = b->next;
        if (b != a->first)
            sift_free(b);
        b = next;
    }
    a->head = a->first;
    a->first->used = 0;
    a->first->next = NULL;
    a->used = 0;
    a->reserved = sizeof(struct block) + a->block_size;
}

void sift_arena_free(sift_arena *a)
{
    if (!a)
        return;
    sift_arena_reset(a);
    sift_free(a->first);
    sift_free(a);
}

void *sift_arena_alloc(sift_arena *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ALIGN)
        return NULL;
    size_t need = ALIGN_UP(n);
    struct block *b = a->head;
    if (b->size - b->used >= need) {
        void *p = b->data + b->used;
        b->used += need;
        a->used += need;
        return p;
    }
    if (need > a->block_size / 4) {
        /* Large: a block of its own behind the current one, which keeps
         * serving small requests. */
        struct block *big = block_new(need);
        if (!big)
            return NULL;
        big->used = need;
        big->next = b->next;
        b->next = big;
        a->used += need;
        a->reserved += sizeof *big + need;
        return big->data;
    }
    struct block *nb = block_new(a->block_size);
    if (!nb)
        return NULL;
    nb->next = b;
    a->head = nb;
    nb->used = need;
    a->used += need;
    a->reserved += sizeof *nb + a->block_size;
    return nb->data;
}

void *sift_arena_calloc(sift_arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = sift_arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *sift_arena_memdup(sift_arena *a, const void *p, size_t n)
{
    void *d = sift_arena_alloc(a, n);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

char *sift_arena_strndup(sift_arena *a, const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = sift_arena_alloc(a, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *sift_arena_strdup(sift_arena *a, const char *s)
{
    return s ? sift_arena_memdup(a, s, strlen(s) + 1) : NULL;
}

char *sift_arena_vsprintf(sift_arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *d = sift_arena_alloc(a, (size_t)n + 1);
    if (d)
        vsnprintf(d, (size_t)n + 1, fmt, ap);
    return d;
}

char *sift_arena_sprintf(sift_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *d = sift_arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return d;
}

int sift_arena_defer(sift_arena *a, void (*fn)(void *), void *p)
{
    struct hook *h = sift_arena_alloc(a, sizeof *h);
    if (!h)
        return SIFT_ENOMEM;
    h->fn = fn;
    h->p = p;
    h->next = a->hooks;
    a->hooks = h;
    return 0;
}

size_t sift_arena_used(const sift_arena *a)
{
    return a->used;
}

size_t sift_arena_reserved(const sift_arena *a)
{
    return a->reserved;
}
