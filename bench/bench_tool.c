/* Micro-benchmarks of typed tool arguments: decoding the model's argument
 * text into the tool's struct (parse, validate, copy into the run's arena),
 * against a bare cJSON parse of the same text, and the arena bytes one decode
 * costs a run. Figures are medians of several repetitions. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "../tests/unit/tool_samples.h"
#include "benchutil.h"
#include "sift/arena.h"
#include "sift/tool.h"

#define REPS 5

static const char small_doc[] = "{\"sku\":\"SKU-12345\",\"location\":\"HAN\"}";
static const char big_doc[] =
    "{\"query\":\"running shoes for flat feet\",\"filters\":{\"brand\":\"Nike\",\"size\":\"42\","
    "\"colour\":\"blue\",\"category\":\"shoes/running\",\"price_min\":500000,"
    "\"price_max\":2500000,\"in_stock\":true},\"tags\":[\"sale\",\"new\"],\"k\":10}";

static double decode_ns(const sift_schema *s, const char *doc, int n, size_t *used)
{
    sift_arena *a = sift_arena_new(0);
    size_t len = strlen(doc);
    double t0 = bench_cpu_s();
    for (int i = 0; i < n; i++) {
        const void *out;
        sift_err err = {0};
        if (sift_args_decode(s, doc, len, a, &out, &err) < 0) {
            fprintf(stderr, "bench tool: decode failed: %s\n", err.msg);
            break;
        }
        *used = sift_arena_used(a);
        sift_arena_reset(a);
    }
    double ns = (bench_cpu_s() - t0) / n * 1e9;
    sift_arena_free(a);
    return ns;
}

static double parse_ns(const char *doc, int n)
{
    size_t len = strlen(doc);
    double t0 = bench_cpu_s();
    for (int i = 0; i < n; i++)
        cJSON_Delete(cJSON_ParseWithLength(doc, len));
    return (bench_cpu_s() - t0) / n * 1e9;
}

int main(void)
{
    struct bench_report r = {.name = "tool"};
    const int n = 200000;
    double v[REPS];
    size_t used_small = 0, used_big = 0;
    printf("bench tool (median of %d)\n", REPS);

    for (int rep = 0; rep < REPS; rep++)
        v[rep] = decode_ns(sift_args_schema(check_inventory_args), small_doc, n, &used_small);
    bench_add(&r, "decode check_inventory args (36 B)", bench_median(v, REPS), "ns/op");
    for (int rep = 0; rep < REPS; rep++)
        v[rep] = parse_ns(small_doc, n);
    bench_add(&r, "cJSON parse+free of the same text", bench_median(v, REPS), "ns/op");

    for (int rep = 0; rep < REPS; rep++)
        v[rep] = decode_ns(sift_args_schema(search_products_args), big_doc, n, &used_big);
    bench_add(&r, "decode search_products args (205 B, nested)", bench_median(v, REPS), "ns/op");
    for (int rep = 0; rep < REPS; rep++)
        v[rep] = parse_ns(big_doc, n);
    bench_add(&r, "cJSON parse+free of the same text", bench_median(v, REPS), "ns/op");

    bench_add(&r, "arena bytes per check_inventory decode", (double)used_small, "B");
    bench_add(&r, "arena bytes per search_products decode", (double)used_big, "B");

    sift_buf b;
    sift_buf_init(&b, 0);
    const int ns = 100000;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = bench_cpu_s();
        for (int i = 0; i < ns; i++) {
            sift_buf_reset(&b);
            sift_tool_json(&(sift_tool){.name = "search_products",
                                        .args = sift_args_schema(search_products_args)},
                           &b);
        }
        v[rep] = (bench_cpu_s() - t0) / ns * 1e9;
    }
    bench_add(&r, "generate search_products tool JSON (once per tool)", bench_median(v, REPS),
              "ns/op");
    sift_buf_free(&b);
    bench_write(&r);
    return 0;
}
