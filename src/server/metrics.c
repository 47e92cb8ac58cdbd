/* Lock-free metrics registry with a Prometheus text renderer. */
#include "sift/metrics.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/err.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct slot {
    _Atomic(char *) label; /* NULL: unclaimed (dynamic) or unlabelled family */
    _Atomic int64_t val;   /* counter/gauge value; histogram: observation count */
    _Atomic uint64_t sum;  /* histogram: the bits of a double */
    _Atomic uint64_t *buckets;
};

struct sift_metric {
    enum kind kind;
    char *name, *help, *label;
    int nslots;  /* 1 when unlabelled */
    int dynamic; /* slots[nslots-1] is "other" */
    int nbounds;
    double bounds[SIFT_METRICS_MAX_BOUNDS];
    struct slot *slots;
    _Atomic uint64_t *buckets; /* nslots * (nbounds + 1), not cumulative */
};

struct sift_metrics {
    int n;
    sift_metric *fam[SIFT_METRICS_MAX_FAMILIES];
};

static const char other[] = "other";

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = sift_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

sift_metrics *sift_metrics_new(void)
{
    return sift_calloc(1, sizeof(sift_metrics));
}

static void family_free(sift_metric *f)
{
    if (!f)
        return;
    for (int i = 0; f->slots && i < f->nslots; i++)
        sift_free(atomic_load(&f->slots[i].label));
    sift_free(f->slots);
    sift_free((void *)f->buckets);
    sift_free(f->name);
    sift_free(f->help);
    sift_free(f->label);
    sift_free(f);
}

void sift_metrics_free(sift_metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++)
        family_free(m->fam[i]);
    sift_free(m);
}

static sift_metric *family_new(sift_metrics *m, enum kind kind, const char *name, const char *help,
                               const char *label, const char *const *values, int max_values,
                               const double *bounds, int nbounds)
{
    if (!m || !name || !name[0] || !help || m->n >= SIFT_METRICS_MAX_FAMILIES)
        return NULL;
    int nvalues = 0;
    if (label && values)
        while (values[nvalues])
            nvalues++;
    if (label && values && (nvalues < 1 || nvalues > SIFT_METRICS_MAX_VALUES))
        return NULL;
    if (label && !values && (max_values < 2 || max_values > SIFT_METRICS_MAX_VALUES))
        return NULL;
    if (kind == KIND_HISTOGRAM) {
        if (!bounds || nbounds < 1 || nbounds > SIFT_METRICS_MAX_BOUNDS)
            return NULL;
        for (int i = 0; i < nbounds; i++)
            if (isnan(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
                return NULL;
    }
    sift_metric *f = sift_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->kind = kind;
    f->nslots = !label ? 1 : values ? nvalues : max_values;
    f->dynamic = label && !values;
    f->nbounds = kind == KIND_HISTOGRAM ? nbounds : 0;
    if (f->nbounds)
        memcpy(f->bounds, bounds, sizeof(double) * (size_t)nbounds);
    f->name = dup_str(name);
    f->help = dup_str(help);
    f->label = label ? dup_str(label) : NULL;
    f->slots = sift_calloc((size_t)f->nslots, sizeof *f->slots);
    if (!f->name || !f->help || (label && !f->label) || !f->slots)
        goto fail;
    if (kind == KIND_HISTOGRAM) {
        size_t nb = (size_t)f->nslots * (size_t)(nbounds + 1);
        f->buckets = sift_calloc(nb, sizeof *f->buckets);
        if (!f->buckets)
            goto fail;
        for (int i = 0; i < f->nslots; i++)
            f->slots[i].buckets = f->buckets + (size_t)i * (size_t)(nbounds + 1);
    }
    for (int i = 0; i < nvalues; i++) {
        char *v = dup_str(values[i]);
        if (!v)
            goto fail;
        atomic_store(&f->slots[i].label, v);
    }
    if (f->dynamic) {
        char *v = dup_str(other);
        if (!v)
            goto fail;
        atomic_store(&f->slots[f->nslots - 1].label, v);
    }
    m->fam[m->n++] = f;
    return f;
fail:
    family_free(f);
    return NULL;
}

sift_metric *sift_metrics_counter(sift_metrics *m, const char *name, const char *help,
                                  const char *label, const char *const *values, int max_values)
{
    return family_new(m, KIND_COUNTER, name, help, label, values, max_values, NULL, 0);
}

sift_metric *sift_metrics_gauge(sift_metrics *m, const char *name, const char *help,
                                const char *label, const char *const *values, int max_values)
{
    return family_new(m, KIND_GAUGE, name, help, label, values, max_values, NULL, 0);
}

sift_metric *sift_metrics_histogram(sift_metrics *m, const char *name, const char *help,
                                    const char *label, const char *const *values, int max_values,
                                    const double *bounds, int nbounds)
{
    return family_new(m, KIND_HISTOGRAM, name, help, label, values, max_values, bounds, nbounds);
}

/* The series for `value`; for a dynamic family claims a free slot (one CAS)
 * or falls back to "other". `claim` 0 only looks. NULL: no such series. */
static struct slot *find(sift_metric *f, const char *value, int claim)
{
    if (!f->label)
        return value ? NULL : &f->slots[0];
    if (!value)
        return NULL;
    int last = f->dynamic ? f->nslots - 1 : f->nslots;
    if (f->dynamic && !strcmp(value, other))
        return &f->slots[last];
    for (int i = 0; i < last; i++) {
        char *l = atomic_load(&f->slots[i].label);
        if (!l) {
            if (!claim)
                return NULL;
            char *mine = dup_str(value);
            if (!mine)
                return &f->slots[last]; /* no memory: still counted */
            char *expected = NULL;
            if (atomic_compare_exchange_strong(&f->slots[i].label, &expected, mine)) {
                l = mine;
            } else {
                sift_free(mine);
                l = expected;
            }
        }
        if (!strcmp(l, value))
            return &f->slots[i];
    }
    return f->dynamic ? &f->slots[last] : NULL;
}

int sift_metric_add(sift_metric *f, const char *value, int64_t delta)
{
    if (!f || f->kind == KIND_HISTOGRAM || (f->kind == KIND_COUNTER && delta < 0))
        return SIFT_EINVAL;
    struct slot *s = find(f, value, 1);
    if (!s)
        return SIFT_EINVAL;
    atomic_fetch_add_explicit(&s->val, delta, memory_order_relaxed);
    return 0;
}

int sift_metric_set(sift_metric *f, const char *value, int64_t v)
{
    if (!f || f->kind == KIND_HISTOGRAM)
        return SIFT_EINVAL;
    struct slot *s = find(f, value, 1);
    if (!s)
        return SIFT_EINVAL;
    atomic_store_explicit(&s->val, v, memory_order_relaxed);
    return 0;
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

int sift_metric_observe(sift_metric *f, const char *value, double v)
{
    if (!f || f->kind != KIND_HISTOGRAM || isnan(v))
        return SIFT_EINVAL;
    struct slot *s = find(f, value, 1);
    if (!s)
        return SIFT_EINVAL;
    int b = 0;
    while (b < f->nbounds && v > f->bounds[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&s->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&s->sum, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    atomic_fetch_add_explicit(&s->val, 1, memory_order_relaxed);
    return 0;
}

int64_t sift_metric_value(sift_metric *f, const char *value)
{
    struct slot *s = f ? find(f, value, 0) : NULL;
    return s ? atomic_load(&s->val) : 0;
}

/* Shortest of %.15g / %.17g that reads back as the same double; Prometheus
 * spells infinities +Inf / -Inf. */
static int put_double(sift_buf *out, double d)
{
    if (isinf(d))
        return sift_buf_puts(out, d > 0 ? "+Inf" : "-Inf");
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof tmp, "%.17g", d);
    return sift_buf_puts(out, tmp);
}

static int put_escaped(sift_buf *out, const char *s, int quote)
{
    int rc = 0;
    for (; *s && !rc; s++) {
        if (*s == '\\')
            rc = sift_buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc = sift_buf_puts(out, "\\n");
        else if (*s == '"' && quote)
            rc = sift_buf_puts(out, "\\\"");
        else
            rc = sift_buf_putc(out, *s);
    }
    return rc;
}

/* name{label="value",le="bound"} with the optional parts left out. */
static int put_series(sift_buf *out, const sift_metric *f, const char *suffix, const char *value,
                      const double *le)
{
    int rc = sift_buf_printf(out, "%s%s", f->name, suffix);
    if (!value && !le)
        return rc ? rc : sift_buf_putc(out, ' ');
    rc = rc ? rc : sift_buf_putc(out, '{');
    if (value && !rc) {
        rc = sift_buf_printf(out, "%s=\"", f->label);
        rc = rc ? rc : put_escaped(out, value, 1);
        rc = rc ? rc : sift_buf_putc(out, '"');
    }
    if (le && !rc) {
        rc = sift_buf_puts(out, value ? ",le=\"" : "le=\"");
        rc = rc ? rc : put_double(out, *le);
        rc = rc ? rc : sift_buf_putc(out, '"');
    }
    return rc ? rc : sift_buf_puts(out, "} ");
}

static int render_slot(sift_buf *out, const sift_metric *f, struct slot *s, const char *value)
{
    int rc = 0;
    if (f->kind != KIND_HISTOGRAM) {
        rc = put_series(out, f, "", value, NULL);
        return rc ? rc : sift_buf_printf(out, "%lld\n", (long long)atomic_load(&s->val));
    }
    uint64_t cum = 0;
    for (int b = 0; b <= f->nbounds && !rc; b++) {
        double le = b < f->nbounds ? f->bounds[b] : INFINITY;
        cum += atomic_load(&s->buckets[b]);
        rc = put_series(out, f, "_bucket", value, &le);
        rc = rc ? rc : sift_buf_printf(out, "%llu\n", (unsigned long long)cum);
    }
    rc = rc ? rc : put_series(out, f, "_sum", value, NULL);
    rc = rc ? rc : put_double(out, bitsd(atomic_load(&s->sum)));
    rc = rc ? rc : sift_buf_putc(out, '\n');
    rc = rc ? rc : put_series(out, f, "_count", value, NULL);
    return rc ? rc : sift_buf_printf(out, "%lld\n", (long long)atomic_load(&s->val));
}

static int render_family(sift_buf *out, sift_metric *f)
{
    int rc = sift_buf_printf(out, "# HELP %s ", f->name);
    rc = rc ? rc : put_escaped(out, f->help, 0);
    rc = rc ? rc : sift_buf_printf(out, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
    for (int i = 0; i < f->nslots && !rc; i++) {
        struct slot *s = &f->slots[i];
        char *value = atomic_load(&s->label);
        if (f->label && !value)
            continue; /* an unclaimed dynamic slot */
        if (f->dynamic && i == f->nslots - 1 && atomic_load(&s->val) == 0)
            continue; /* "other" only once something fell into it */
        rc = render_slot(out, f, s, value);
    }
    return rc;
}

int sift_metrics_render(sift_metrics *m, sift_buf *out)
{
    int rc = 0;
    for (int i = 0; i < m->n && !rc; i++)
        rc = render_family(out, m->fam[i]);
    return rc;
}
