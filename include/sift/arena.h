/* Memory: the allocation wrappers every module uses, and the per-run arena.
 *
 * An arena hands out memory that lives until the arena is freed, all at once.
 * A run allocates its messages, parsed JSON and tool results from its arena,
 * and whatever must outlive the run is copied out explicitly. Cleanup hooks
 * (sift_arena_defer) release resources that are not arena memory, such as a
 * cJSON tree, when the arena goes. */
#ifndef SIFT_ARENA_H
#define SIFT_ARENA_H

#include <stdarg.h>
#include <stddef.h>

/* malloc/calloc/realloc/free for sift's own allocations. They behave like the
 * libc functions, except that a test can make them fail (sift_mem_fail_after). */
void *sift_malloc(size_t n);
void *sift_calloc(size_t count, size_t size);
void *sift_realloc(void *p, size_t n);
void sift_free(void *p);
char *sift_strdup(const char *s);
char *sift_strndup(const char *s, size_t n);

/* Test hook for the out-of-memory paths: after `n` more successful allocations
 * on this thread, every sift_malloc/calloc/realloc fails until it is called
 * again with n < 0 (the default: never fail). */
void sift_mem_fail_after(long n);

typedef struct sift_arena sift_arena;

/* Creates an arena that grows in blocks of `block_size` bytes (0: 4 KB). The
 * first block is allocated with the arena. Returns NULL when out of memory. */
sift_arena *sift_arena_new(size_t block_size);

/* Runs the cleanup hooks, newest first, then releases every block. NULL is a
 * no-op. */
void sift_arena_free(sift_arena *a);

/* Runs the hooks and releases all but the first block, so the arena can be
 * used again without returning to malloc. */
void sift_arena_reset(sift_arena *a);

/* `n` bytes aligned to 16, valid until the arena is freed or reset. NULL when
 * out of memory. Requests larger than the block size get a block of their own. */
void *sift_arena_alloc(sift_arena *a, size_t n);

/* sift_arena_alloc of count*size zeroed bytes; NULL on overflow or no memory. */
void *sift_arena_calloc(sift_arena *a, size_t count, size_t size);

/* Copies of strings into the arena (NUL-terminated). sift_arena_strndup copies
 * at most n bytes. NULL in gives NULL out. */
char *sift_arena_strdup(sift_arena *a, const char *s);
char *sift_arena_strndup(sift_arena *a, const char *s, size_t n);
void *sift_arena_memdup(sift_arena *a, const void *p, size_t n);

/* A printf-formatted string in the arena. */
char *sift_arena_sprintf(sift_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sift_arena_vsprintf(sift_arena *a, const char *fmt, va_list ap);

/* Registers fn(p) to run when the arena is freed or reset (newest first).
 * Returns 0, or SIFT_ENOMEM, in which case fn has NOT been registered and the
 * caller still owns p. */
int sift_arena_defer(sift_arena *a, void (*fn)(void *), void *p);

/* Bytes currently handed out to callers, and bytes held from malloc. */
size_t sift_arena_used(const sift_arena *a);
size_t sift_arena_reserved(const sift_arena *a);

#endif
