/* Micro-benchmarks of the core runtime: context create+cancel, and a task
 * group fanning out to 3 no-op tasks (the shape of one agent step with three
 * parallel tool calls). Figures are medians of several repetitions. */
#include <stdio.h>

#include "benchutil.h"
#include "sift/ctx.h"
#include "sift/group.h"

#define REPS 7

static void noop_task(sift_task *t, sift_ctx *ctx, void *arg)
{
    sift_task_done(t, 0, arg, NULL);
}

static int groups_done;

static void group_done(sift_group *g, int err, void *udata)
{
    groups_done++;
    sift_group_free(g);
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    sift_ctx *root = sift_ctx_new_root(&loop);
    struct bench_report r = {.name = "core"};
    printf("bench core (median of %d)\n", REPS);

    double v[REPS];
    const int n = 1000000;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = bench_cpu_s();
        for (int i = 0; i < n; i++) {
            sift_ctx *c = sift_ctx_new(root);
            sift_ctx_cancel(c, SIFT_ECANCELED, NULL);
            sift_ctx_release(c);
        }
        v[rep] = (bench_cpu_s() - t0) / n * 1e9;
    }
    bench_add(&r, "ctx create+cancel+release", bench_median(v, REPS), "ns/op");

    const int nd = 200000;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = bench_cpu_s();
        for (int i = 0; i < nd; i++) {
            sift_ctx *c = sift_ctx_new_timeout(root, 30000);
            sift_ctx_cancel(c, SIFT_ECANCELED, NULL);
            sift_ctx_release(c);
        }
        uv_run(&loop, UV_RUN_NOWAIT); /* close the timer handles */
        v[rep] = (bench_cpu_s() - t0) / nd * 1e9;
    }
    bench_add(&r, "ctx with deadline create+cancel+release", bench_median(v, REPS), "ns/op");

    const int ng = 500000;
    for (int rep = 0; rep < REPS; rep++) {
        groups_done = 0;
        double t0 = bench_cpu_s();
        for (int i = 0; i < ng; i++) {
            sift_group *g = sift_group_new(root, 3, SIFT_GROUP_COLLECT, group_done, NULL);
            for (int k = 0; k < 3; k++)
                sift_group_go(g, noop_task, NULL);
            sift_group_close(g);
        }
        v[rep] = (bench_cpu_s() - t0) / ng * 1e9;
        if (groups_done != ng)
            fprintf(stderr, "bench core: only %d of %d groups finished\n", groups_done, ng);
    }
    bench_add(&r, "group fan-out of 3 no-op tasks", bench_median(v, REPS), "ns/op");

    bench_write(&r);
    sift_ctx_release(root);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
