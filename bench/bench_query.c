/* Cost of query understanding and of the offline planner: parsing a typical
 * shopper message, a Vietnamese one, the longest input read (4 KB), and one
 * planner step of each kind over the Nike / Hanoi / Da Nang / HCMC
 * conversation. CPU time, median of several runs. Writes
 * bench/results/query.json and query.md (see benchutil.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/model.h"
#include "sift/planner.h"
#include "sift/query.h"

#include "benchutil.h"

#define RUNS 7

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_query: %s failed\n", what);
    exit(1);
}

/* Median microseconds per parse of `text`. */
static double bench_parse(const char *text, size_t len, int iters)
{
    double v[RUNS];
    sift_arena *a = sift_arena_new(0);
    if (!a)
        die("arena");
    for (int r = 0; r < RUNS; r++) {
        double t0 = cpu_s();
        for (int i = 0; i < iters; i++) {
            sift_query q;
            if (sift_query_parse(text, len, a, &q) != 0)
                die("parse");
            sift_arena_reset(a);
        }
        v[r] = (cpu_s() - t0) * 1e6 / iters;
    }
    sift_arena_free(a);
    return bench_median(v, RUNS);
}

static const char *const user =
    "Find Nike running shoes size 42 and check if they are in stock at the Hanoi, Da Nang, and "
    "HCMC warehouses";

static const char *const products =
    "{\"products\":[{\"sku\":\"NIKE-PEG40-41\",\"title\":\"Nike Pegasus 40 Men's Running Shoe - "
    "Black\",\"brand\":\"Nike\",\"category\":\"Footwear > Running > Road\",\"attributes\":{"
    "\"size\":\"41\",\"colour\":\"black\"}},{\"sku\":\"NIKE-PEG40-42\",\"title\":\"Nike Pegasus "
    "40 Men's Running Shoe - Black\",\"brand\":\"Nike\",\"category\":\"Footwear > Running > "
    "Road\",\"attributes\":{\"size\":\"42\",\"colour\":\"black\"}}],\"total\":2}";

/* Builds the conversation up to `upto` planner steps already applied. */
static void build(sift_conv *c, int upto)
{
    sift_err err = {0};
    if (sift_conv_add_user(c, user, &err) != 0)
        die("conv");
    for (int step = 0; step < upto; step++) {
        sift_planner_step s;
        if (sift_planner_next(c->msgs, c->len, NULL, c->arena, &s, &err) != 0 ||
            s.kind != SIFT_PLAN_TOOL_CALLS)
            die("planner");
        if (sift_conv_add_assistant(c, NULL, s.calls, s.n_calls, &err) != 0)
            die("conv");
        for (size_t i = 0; i < s.n_calls; i++) {
            const char *res = step == 0 ? products
                              : strcmp(s.calls[i].name, SIFT_TOOL_GET_PRICE) == 0
                                  ? "{\"sku\":\"NIKE-PEG40-42\",\"currency\":\"VND\","
                                    "\"amount\":3290000}"
                                  : "{\"sku\":\"NIKE-PEG40-42\",\"warehouses\":[{\"code\":"
                                    "\"HAN\",\"quantity\":12}]}";
            if (sift_conv_add_tool_result(c, s.calls[i].id, res, &err) != 0)
                die("conv");
        }
    }
}

static double bench_step(int upto, int iters)
{
    double v[RUNS];
    sift_arena *conv_arena = sift_arena_new(0);
    sift_arena *a = sift_arena_new(0);
    if (!conv_arena || !a)
        die("arena");
    sift_conv c;
    sift_conv_init(&c, conv_arena);
    build(&c, upto);
    for (int r = 0; r < RUNS; r++) {
        double t0 = cpu_s();
        for (int i = 0; i < iters; i++) {
            sift_planner_step s;
            sift_err err = {0};
            if (sift_planner_next(c.msgs, c.len, NULL, a, &s, &err) != 0)
                die("planner step");
            sift_arena_reset(a);
        }
        v[r] = (cpu_s() - t0) * 1e6 / iters;
    }
    sift_arena_free(a);
    sift_arena_free(conv_arena);
    return bench_median(v, RUNS);
}

int main(void)
{
    struct bench_report rep = {.name = "query"};
    const char *vi = "giày chạy bộ Nike size 42 còn hàng ở Hà Nội không?";
    char *big = malloc(SIFT_QUERY_INPUT_MAX);
    if (!big)
        return 1;
    const char *pattern = "nike running shoes 42 under $100 Ha Noi ";
    for (size_t i = 0; i < SIFT_QUERY_INPUT_MAX; i++)
        big[i] = pattern[i % strlen(pattern)];

    printf("bench_query: CPU time, median of %d runs\n", RUNS);
    bench_add(&rep, "parse: Nike/Hanoi/Da Nang/HCMC request (106 bytes)",
              bench_parse(user, strlen(user), 20000), "us");
    bench_add(&rep, "parse: Vietnamese request with diacritics", bench_parse(vi, strlen(vi), 20000),
              "us");
    bench_add(&rep, "parse: 4 KB input (the most read)",
              bench_parse(big, SIFT_QUERY_INPUT_MAX, 500), "us");
    bench_add(&rep, "planner step 1: search call", bench_step(0, 20000), "us");
    bench_add(&rep, "planner step 2: 3 inventory calls + price", bench_step(1, 20000), "us");
    bench_add(&rep, "planner step 3: final answer + tokens", bench_step(2, 20000), "us");
    bench_write(&rep);
    free(big);
    return 0;
}
