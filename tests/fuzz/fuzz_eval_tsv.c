/* Fuzz target for the evaluation readers and the metrics.
 *
 * The input is cut in two at its first NUL byte (or in the middle when it
 * has none): the queries file and the qrels file. A set that parses must be
 * consistent (labels sorted and unique per query, gains finite and >= 0,
 * counts right); a rejected input must come with a message naming a file.
 * Every parsed query is then scored against a ranked list made from its own
 * labels, in reverse, with a repeat and an unknown SKU: every metric must lie
 * in 0..1. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static int in01(double x)
{
    return x >= 0 && x <= 1 + 1e-12;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t qlen = nul ? (size_t)(nul - s) : size / 2;
    size_t roff = nul ? qlen + 1 : qlen;
    sift_arena *a = sift_arena_new(0);
    if (!a)
        return 0;
    sift_eval_set set;
    sift_err e = {0};
    int rc =
        sift_eval_parse(&set, a, "queries.tsv", s, qlen, "qrels.tsv", s + roff, size - roff, &e);
    if (rc) {
        check(rc == SIFT_EINVAL);
        check(strncmp(e.msg, "queries.tsv", 11) == 0 || strncmp(e.msg, "qrels.tsv", 9) == 0);
        check(set.n_queries == 0);
        sift_arena_free(a);
        return 0;
    }
    size_t labels = 0;
    for (size_t i = 0; i < set.n_queries; i++) {
        const sift_eval_query *q = &set.queries[i];
        check(q->id[0] != '\0' && q->text[0] != '\0');
        size_t rel = 0;
        for (size_t j = 0; j < q->n_labels; j++) {
            check(isfinite(q->labels[j].gain) && q->labels[j].gain >= 0);
            check(q->labels[j].gain <= q->max_gain && q->max_gain <= set.max_gain);
            if (j > 0)
                check(strcmp(q->labels[j - 1].sku, q->labels[j].sku) < 0);
            check(sift_eval_gain(q, q->labels[j].sku) == q->labels[j].gain);
            rel += q->labels[j].gain > 0;
        }
        check(rel == q->n_relevant);
        labels += q->n_labels;

        size_t n = q->n_labels + 2;
        const char **run = malloc(n * sizeof *run);
        if (!run)
            break;
        for (size_t j = 0; j < q->n_labels; j++)
            run[j] = q->labels[q->n_labels - 1 - j].sku;
        run[q->n_labels] = q->n_labels ? q->labels[0].sku : "x";
        run[q->n_labels + 1] = "\x01unknown";
        sift_eval_scores sc;
        sift_eval_score(q, run, n, NULL, &sc);
        check(in01(sc.ndcg) && in01(sc.rr) && in01(sc.recall));
        check(sc.judged == (q->n_relevant > 0));
        if (sc.judged && q->n_labels <= 100)
            check(fabs(sc.recall - 1) < 1e-12); /* every relevant label is in the list */
        free(run);
    }
    check(labels == set.n_labels);
    sift_arena_free(a);
    return 0;
}
