/* Reciprocal rank fusion: several ranked lists (BM25, vectors, ...) merged
 * into one.
 *
 * An item's fused score is the sum over the lists that hold it of
 *     weight_i / (k + rank_i)        (rank 1-based, k = 60 by default)
 * RRF looks only at ranks, never at the lists' raw scores, so a BM25 score
 * and a cosine need no calibration against each other. A large k flattens
 * the difference between the first ranks; a small one makes the top of
 * each list dominate.
 *
 * Items are strings (SKUs): the lexical side returns SKUs and the vector
 * side maps its ids to SKUs, so keys compare without a shared id space. */
#ifndef SIFT_FUSION_H
#define SIFT_FUSION_H

#include <stddef.h>

#include "sift/arena.h"
#include "sift/err.h"

#define SIFT_FUSION_LISTS_MAX 8
#define SIFT_FUSION_K_DEFAULT 60.0

/* One ranked list, best first. A key repeated within a list counts at its
 * first (best) rank only. */
typedef struct sift_fusion_list {
    const char *const *keys;
    size_t n;
    double weight; /* >= 0 and finite; 0 makes the list count for nothing */
} sift_fusion_list;

/* One fused result. */
typedef struct sift_fused {
    const char *key;  /* points at the caller's string in the first list holding it */
    double score;     /* the RRF sum */
    size_t best_rank; /* smallest rank over the lists (1-based) */
    size_t ranks[SIFT_FUSION_LISTS_MAX]; /* rank in list i, 0 when absent */
} sift_fused;

/* Fuses n_lists (1..SIFT_FUSION_LISTS_MAX) lists and returns the best `k`
 * items (all of them if fewer) in *out (allocated from `a`), ordered by
 * score, then best rank (lower first), then key (strcmp), so the order is
 * fully determined. k_const is RRF's k: 0 means SIFT_FUSION_K_DEFAULT,
 * otherwise it must be positive and finite. SIFT_EINVAL for bad arguments
 * (a NULL key included), SIFT_ENOMEM. */
int sift_fusion_rrf(const sift_fusion_list *lists, size_t n_lists, double k_const, size_t k,
                    sift_arena *a, sift_fused **out, size_t *n_out, sift_err *err);

#endif
