/* Reciprocal rank fusion.
 *
 * Lists are short (a search asks each retriever for at most a few hundred
 * results), so fusion sorts: every (key, list, rank) entry is collected,
 * sorted by key to merge duplicates, and the merged items sorted by score.
 * No hash table, and the outcome depends only on the inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sift/fusion.h"

typedef struct entry {
    const char *key;
    size_t list; /* index of the list */
    size_t rank; /* 1-based */
} entry;

static int cmp_entry(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    if (c)
        return c;
    /* Within a key: by list, then by rank, so the first entry of each
     * (key, list) run is the best rank and the first of the key's run comes
     * from the earliest list. */
    if (a->list != b->list)
        return a->list < b->list ? -1 : 1;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

static int cmp_fused(const void *pa, const void *pb)
{
    const sift_fused *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->best_rank != b->best_rank)
        return a->best_rank < b->best_rank ? -1 : 1;
    return strcmp(a->key, b->key);
}

int sift_fusion_rrf(const sift_fusion_list *lists, size_t n_lists, double k_const, size_t k,
                    sift_arena *a, sift_fused **out, size_t *n_out, sift_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (n_lists == 0 || n_lists > SIFT_FUSION_LISTS_MAX)
        return sift_err_set(err, SIFT_EINVAL, "fusion: %zu lists, expected 1..%d", n_lists,
                            SIFT_FUSION_LISTS_MAX);
    if (k_const == 0)
        k_const = SIFT_FUSION_K_DEFAULT;
    if (!(k_const > 0) || !isfinite(k_const))
        return sift_err_set(err, SIFT_EINVAL, "fusion: k must be positive and finite");
    size_t total = 0;
    for (size_t l = 0; l < n_lists; l++) {
        if (!(lists[l].weight >= 0) || !isfinite(lists[l].weight))
            return sift_err_set(err, SIFT_EINVAL, "fusion: list %zu weight must be >= 0 and finite",
                                l);
        if (lists[l].n && !lists[l].keys)
            return sift_err_set(err, SIFT_EINVAL, "fusion: list %zu has no keys", l);
        for (size_t i = 0; i < lists[l].n; i++)
            if (!lists[l].keys[i])
                return sift_err_set(err, SIFT_EINVAL, "fusion: list %zu key %zu is NULL", l, i);
        total += lists[l].n;
    }
    if (total == 0 || k == 0)
        return 0;

    entry *e = sift_arena_calloc(a, total, sizeof *e);
    sift_fused *f = sift_arena_calloc(a, total, sizeof *f);
    if (!e || !f)
        return sift_err_set(err, SIFT_ENOMEM, "fusion: out of memory");
    size_t m = 0;
    for (size_t l = 0; l < n_lists; l++)
        for (size_t i = 0; i < lists[l].n; i++)
            e[m++] = (entry){.key = lists[l].keys[i], .list = l, .rank = i + 1};
    qsort(e, total, sizeof *e, cmp_entry);

    size_t nf = 0;
    for (size_t i = 0; i < total;) {
        sift_fused *r = &f[nf++];
        r->key = e[i].key;
        r->best_rank = e[i].rank;
        size_t j = i;
        for (; j < total && strcmp(e[j].key, e[i].key) == 0; j++) {
            size_t l = e[j].list;
            if (r->ranks[l])
                continue; /* a repeat within the list: its best rank counted */
            r->ranks[l] = e[j].rank;
            if (e[j].rank < r->best_rank)
                r->best_rank = e[j].rank;
        }
        /* Sum in list order so the score does not depend on the sort. */
        for (size_t l = 0; l < n_lists; l++)
            if (r->ranks[l])
                r->score += lists[l].weight / (k_const + (double)r->ranks[l]);
        i = j;
    }
    qsort(f, nf, sizeof *f, cmp_fused);
    *out = f;
    *n_out = nf < k ? nf : k;
    return 0;
}
