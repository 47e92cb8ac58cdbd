/* Metrics: counters, gauges and histograms, rendered in the Prometheus text
 * format 0.0.4.
 *
 * A registry holds metric families. A family has a name, a help text and at
 * most one label. Its label values are either a fixed set given when the
 * family is registered (a value outside it is refused), or dynamic: the
 * first `max_values` - 1 distinct values get a series each and every later
 * one is counted under "other", so a label fed from untrusted or open-ended
 * names (tool names) cannot grow memory or the output without bound.
 *
 * Threads. Families are registered before the registry is shared (not
 * thread-safe). Updates and rendering may then run from any thread at once:
 * every value is a C11 atomic, a dynamic label value is claimed with one
 * compare-and-swap, nothing takes a lock. A render taken during updates sees
 * each value at some moment; the series of a histogram are read one by one,
 * so a render may mix counts from slightly different moments (as in the
 * Prometheus client libraries). */
#ifndef SIFT_METRICS_H
#define SIFT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sift/buf.h"

typedef struct sift_metrics sift_metrics;
typedef struct sift_metric sift_metric;

/* Limits: families per registry, label values per family, histogram bounds. */
#define SIFT_METRICS_MAX_FAMILIES 64
#define SIFT_METRICS_MAX_VALUES 64
#define SIFT_METRICS_MAX_BOUNDS 24

/* An empty registry, or NULL when out of memory. */
sift_metrics *sift_metrics_new(void);

/* Frees the registry and its families. NULL is a no-op. */
void sift_metrics_free(sift_metrics *m);

/* Registers a counter. `label` NULL: one unlabelled series. Otherwise
 * `values` (NULL-terminated, copied) is the fixed set of label values, or
 * NULL for dynamic values capped at `max_values` (2..SIFT_METRICS_MAX_VALUES,
 * "other" included). Names must be valid Prometheus names (not checked
 * beyond being non-empty). Returns NULL on a bad argument, too many
 * families, or no memory. */
sift_metric *sift_metrics_counter(sift_metrics *m, const char *name, const char *help,
                                  const char *label, const char *const *values, int max_values);

/* Registers a gauge; arguments as for sift_metrics_counter. */
sift_metric *sift_metrics_gauge(sift_metrics *m, const char *name, const char *help,
                                const char *label, const char *const *values, int max_values);

/* Registers a histogram with `nbounds` (1..SIFT_METRICS_MAX_BOUNDS) strictly
 * increasing upper bounds (the +Inf bucket is implicit); labels as for
 * sift_metrics_counter. */
sift_metric *sift_metrics_histogram(sift_metrics *m, const char *name, const char *help,
                                    const char *label, const char *const *values, int max_values,
                                    const double *bounds, int nbounds);

/* Adds `delta` to a counter (delta >= 0) or a gauge, in the series of label
 * value `value` (NULL for an unlabelled family). Returns 0, or SIFT_EINVAL
 * for a value outside a fixed set, a negative delta on a counter, or a
 * histogram. */
int sift_metric_add(sift_metric *f, const char *value, int64_t delta);

/* Sets a gauge, or a counter that mirrors a count kept elsewhere (the
 * caller keeps it monotonic). Returns as sift_metric_add. */
int sift_metric_set(sift_metric *f, const char *value, int64_t v);

/* Records one observation `v` in a histogram. Returns 0, or SIFT_EINVAL
 * (not a histogram, value outside a fixed set, NaN). */
int sift_metric_observe(sift_metric *f, const char *value, double v);

/* The current value of a counter or gauge series (0 if the series does not
 * exist); a histogram series' observation count. For tests and callers
 * that derive one metric from another. */
int64_t sift_metric_value(sift_metric *f, const char *value);

/* Appends every family, in registration order, in the Prometheus text
 * format 0.0.4: "# HELP" and "# TYPE" lines, then the series (all values of
 * a fixed set, even at zero; the dynamic values seen so far). Label values
 * are escaped (backslash, double quote, newline). Returns 0, SIFT_ENOMEM or
 * SIFT_ETOOBIG (the buffer's limit). */
int sift_metrics_render(sift_metrics *m, sift_buf *out);

#endif
