/* Small helpers shared by the benchmark programs (header-only: every bench is
 * one .c file with its own main).
 *
 * Results go to bench/results/<name>.json and <name>.md with the date and the
 * machine (cores, memory, kernel), so figures can be compared over time. A
 * figure is the median of several repetitions. */
#ifndef SIFT_BENCHUTIL_H
#define SIFT_BENCHUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_FIGURES 128 /* bench_seed: 4 levels of 17 figures, and more */

struct bench_figure {
    char name[96];
    double value;
    char unit[24];
};

struct bench_report {
    char name[64];
    struct bench_figure figs[BENCH_MAX_FIGURES];
    int n;
};

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) used by this process so far. */
static inline double bench_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n values (sorts them in place). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The p-th percentile (0..100) of n values, nearest rank (sorts in place). */
static inline double bench_percentile(double *v, int n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int rank = (int)(p / 100.0 * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static inline void bench_add(struct bench_report *r, const char *name, double value,
                             const char *unit)
{
    if (r->n >= BENCH_MAX_FIGURES) {
        /* a figure left out of the results must not go unnoticed */
        fprintf(stderr, "bench: more than %d figures, \"%s\" not recorded\n", BENCH_MAX_FIGURES,
                name);
        return;
    }
    struct bench_figure *f = &r->figs[r->n++];
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->unit, sizeof f->unit, "%s", unit);
    f->value = value;
    printf("  %-48s %14.3f %s\n", name, value, unit);
}

static inline void bench_machine(char *out, size_t n)
{
    struct utsname u;
    uname(&u);
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGE_SIZE);
    snprintf(out, n, "%ld cores, %.1f GiB, %s %s", sysconf(_SC_NPROCESSORS_ONLN),
             (double)pages * (double)psize / (1024.0 * 1024 * 1024), u.sysname, u.release);
}

/* Writes <dir>/<name>.json and <dir>/<name>.md; dir is SIFT_BENCH_RESULTS or
 * bench/results under the source tree. */
static inline void bench_write(const struct bench_report *r)
{
    const char *dir = getenv("SIFT_BENCH_RESULTS");
    char path[512], date[32], machine[160];
    static char dflt[400];
    if (!dir) {
        snprintf(dflt, sizeof dflt, "%s/bench/results", SIFT_SOURCE_DIR);
        dir = dflt;
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bench_machine(machine, sizeof machine);

    snprintf(path, sizeof path, "%s/%s.json", dir, r->name);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "{\n  \"bench\": \"%s\",\n  \"date\": \"%s\",\n  \"machine\": \"%s\",\n",
                r->name, date, machine);
        fprintf(f, "  \"figures\": [\n");
        for (int i = 0; i < r->n; i++)
            fprintf(f, "    {\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\"}%s\n",
                    r->figs[i].name, r->figs[i].value, r->figs[i].unit, i + 1 < r->n ? "," : "");
        fprintf(f, "  ]\n}\n");
        fclose(f);
    } else {
        fprintf(stderr, "bench: cannot write %s\n", path);
    }
    snprintf(path, sizeof path, "%s/%s.md", dir, r->name);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "# %s\n\n%s, %s\n\n| figure | value | unit |\n|---|---:|---|\n", r->name, date,
                machine);
        for (int i = 0; i < r->n; i++)
            fprintf(f, "| %s | %.3f | %s |\n", r->figs[i].name, r->figs[i].value, r->figs[i].unit);
        fclose(f);
    }
    printf("  results: %s/%s.{json,md}\n", dir, r->name);
}

#endif
