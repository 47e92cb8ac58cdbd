/* Task groups: concurrency limit, fail-fast, collect, deadlines, lifetimes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sift/arena.h"
#include "sift/group.h"

static uv_loop_t loop;

/* A task that finishes after `delay` ms unless its context is cancelled. */
struct job {
    uv_timer_t timer;
    sift_ctx_hook hook;
    sift_task *task;
    int delay;
    int fail;
    int started, reported, cancelled;
};

static int live, max_live, reports_after_done;
static int done_calls, done_err;

static void job_timer(uv_timer_t *t)
{
    struct job *j = (struct job *)t;
    sift_ctx_remove_hook(&j->hook);
    live--;
    j->reported++;
    sift_task_done(j->task, j->fail ? SIFT_EIO : 0, j, j->fail ? "backend down" : NULL);
}

static void job_cancel(sift_ctx_hook *h, const sift_err *cause)
{
    struct job *j = (struct job *)((char *)h - offsetof(struct job, hook));
    uv_timer_stop(&j->timer);
    live--;
    j->reported++;
    j->cancelled++;
    sift_task_done(j->task, cause->code, j, cause->msg);
}

static void job_start(sift_task *task, sift_ctx *ctx, void *arg)
{
    struct job *j = arg;
    j->task = task;
    j->started++;
    if (++live > max_live)
        max_live = live;
    int err = sift_ctx_add_hook(ctx, &j->hook, job_cancel);
    if (err) {
        live--;
        j->reported++;
        sift_task_done(task, err, j, NULL);
        return;
    }
    if (j->delay == 0 && !j->fail) { /* synchronous completion */
        sift_ctx_remove_hook(&j->hook);
        live--;
        j->reported++;
        sift_task_done(task, 0, j, NULL);
        return;
    }
    uv_timer_start(&j->timer, job_timer, (uint64_t)j->delay, 0);
}

static void on_done(sift_group *g, int err, void *udata)
{
    done_calls++;
    done_err = err;
    if (live != 0)
        reports_after_done = -1000; /* done fired with tasks still running */
}

static struct job *jobs_new(int n)
{
    struct job *jobs = calloc((size_t)n, sizeof *jobs);
    for (int i = 0; i < n; i++)
        uv_timer_init(&loop, &jobs[i].timer);
    live = max_live = done_calls = 0;
    done_err = 1;
    reports_after_done = 0;
    return jobs;
}

static void jobs_free(struct job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        uv_close((uv_handle_t *)&jobs[i].timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(jobs);
}

static int setup(void **state)
{
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
}

static void test_limit_never_exceeded(void **state)
{
    enum { N = 60 };
    struct job *jobs = jobs_new(N);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_group *g = sift_group_new(root, 3, SIFT_GROUP_COLLECT, on_done, NULL);
    for (int i = 0; i < N; i++) {
        jobs[i].delay = (i * 7) % 5; /* some synchronous, some a few ms */
        assert_int_equal(sift_group_go(g, job_start, &jobs[i]), i);
        assert_true(sift_group_running(g) <= 3);
    }
    sift_group_close(g);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_err, 0);
    assert_int_equal(reports_after_done, 0);
    assert_true(max_live <= 3);
    assert_int_equal(sift_group_peak(g), max_live);
    for (int i = 0; i < N; i++) {
        void *res;
        assert_int_equal(sift_group_result(g, i, &res, NULL), 0);
        assert_ptr_equal(res, &jobs[i]); /* results in task order */
        assert_int_equal(jobs[i].started, 1);
        assert_int_equal(jobs[i].reported, 1);
    }
    sift_group_free(g);
    sift_ctx_release(root);
    jobs_free(jobs, N);
}

static void test_fail_fast_cancels_siblings_and_skips_queued(void **state)
{
    enum { N = 10 };
    struct job *jobs = jobs_new(N);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_group *g = sift_group_new(root, 3, SIFT_GROUP_FAIL_FAST, on_done, NULL);
    for (int i = 0; i < N; i++)
        jobs[i].delay = 5000;
    jobs[1].delay = 5;
    jobs[1].fail = 1;
    for (int i = 0; i < N; i++)
        sift_group_go(g, job_start, &jobs[i]);
    sift_group_close(g);
    uint64_t t0 = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(uv_now(&loop) - t0 < 2000); /* siblings did not run to term */
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_err, SIFT_EIO);
    assert_int_equal(reports_after_done, 0);
    assert_int_equal(jobs[0].cancelled, 1);
    assert_int_equal(jobs[2].cancelled, 1);
    for (int i = 3; i < N; i++) {
        assert_int_equal(jobs[i].started, 0);
        assert_false(sift_group_started(g, i));
        assert_int_equal(sift_group_result(g, i, NULL, NULL), SIFT_EFAILED);
    }
    const char *msg;
    assert_int_equal(sift_group_result(g, 1, NULL, &msg), SIFT_EIO);
    assert_string_equal(msg, "backend down");
    assert_int_equal(sift_group_result(g, 0, NULL, &msg), SIFT_EFAILED);
    assert_string_equal(msg, "task 1 failed: backend down");
    assert_int_equal(sift_ctx_err(root), 0); /* the parent is untouched */
    sift_group_free(g);
    sift_ctx_release(root);
    jobs_free(jobs, N);
}

static void test_collect_keeps_every_result(void **state)
{
    enum { N = 8 };
    struct job *jobs = jobs_new(N);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_group *g = sift_group_new(root, 0, SIFT_GROUP_COLLECT, on_done, NULL);
    for (int i = 0; i < N; i++) {
        jobs[i].delay = N - i; /* finish in reverse order */
        jobs[i].fail = (i == 5 || i == 2);
        sift_group_go(g, job_start, &jobs[i]);
    }
    sift_group_close(g);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_err, SIFT_EIO);
    assert_int_equal(max_live, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].cancelled, 0);
        assert_int_equal(sift_group_result(g, i, NULL, NULL), jobs[i].fail ? SIFT_EIO : 0);
    }
    sift_group_free(g);
    sift_ctx_release(root);
    jobs_free(jobs, N);
}

static void test_deadline_with_tasks_in_flight(void **state)
{
    enum { N = 6 };
    struct job *jobs = jobs_new(N);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_ctx *run = sift_ctx_new_timeout(root, 20);
    sift_group *g = sift_group_new(run, 2, SIFT_GROUP_COLLECT, on_done, NULL);
    for (int i = 0; i < N; i++) {
        jobs[i].delay = 10000;
        sift_group_go(g, job_start, &jobs[i]);
    }
    sift_group_close(g);
    uint64_t t0 = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(uv_now(&loop) - t0 < 2000);
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_err, SIFT_ETIMEDOUT);
    assert_int_equal(jobs[0].cancelled + jobs[1].cancelled, 2);
    for (int i = 2; i < N; i++)
        assert_int_equal(jobs[i].started, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(sift_group_result(g, i, NULL, NULL), SIFT_ETIMEDOUT);
    sift_group_free(g);
    sift_ctx_release(run);
    sift_ctx_release(root);
    jobs_free(jobs, N);
}

static void test_synchronous_tasks_do_not_recurse(void **state)
{
    enum { N = 20000 };
    struct job *jobs = jobs_new(N);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_group *g = sift_group_new(root, 1, SIFT_GROUP_FAIL_FAST, on_done, NULL);
    for (int i = 0; i < N; i++)
        sift_group_go(g, job_start, &jobs[i]);
    assert_int_equal(done_calls, 0); /* not closed yet */
    sift_group_close(g);
    assert_int_equal(done_calls, 1); /* fired inside close */
    assert_int_equal(done_err, 0);
    assert_int_equal(sift_group_go(g, job_start, &jobs[0]), SIFT_ESTATE);
    sift_group_free(g);
    sift_ctx_release(root);
    jobs_free(jobs, N);
}

static void free_in_done(sift_group *g, int err, void *udata)
{
    on_done(g, err, udata);
    sift_group_free(g);
}

static void test_free_inside_done_and_before_done(void **state)
{
    struct job *jobs = jobs_new(4);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_group *g = sift_group_new(root, 2, SIFT_GROUP_FAIL_FAST, free_in_done, NULL);
    jobs[0].delay = 1;
    jobs[1].delay = 0;
    sift_group_go(g, job_start, &jobs[0]);
    sift_group_go(g, job_start, &jobs[1]);
    sift_group_close(g);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(done_calls, 1);

    /* freed while running: tasks are cancelled, done never fires, memory
     * goes when the last one reports (ASan would see a leak or a UAF) */
    done_calls = 0;
    g = sift_group_new(root, 2, SIFT_GROUP_COLLECT, on_done, NULL);
    jobs[2].delay = 10000;
    jobs[3].delay = 10000;
    sift_group_go(g, job_start, &jobs[2]);
    sift_group_go(g, job_start, &jobs[3]);
    sift_group_free(g);
    assert_int_equal(jobs[2].cancelled + jobs[3].cancelled, 2);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(done_calls, 0);
    sift_ctx_release(root);
    jobs_free(jobs, 4);
}

static void test_parent_already_done(void **state)
{
    struct job *jobs = jobs_new(2);
    sift_ctx *root = sift_ctx_new_root(&loop);
    sift_ctx_cancel(root, SIFT_ECANCELED, "client disconnected");
    sift_group *g = sift_group_new(root, 2, SIFT_GROUP_FAIL_FAST, on_done, NULL);
    assert_int_equal(sift_group_go(g, job_start, &jobs[0]), 0);
    assert_int_equal(jobs[0].started, 0);
    sift_group_close(g);
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_err, SIFT_ECANCELED);
    sift_group_free(g);
    sift_ctx_release(root);
    jobs_free(jobs, 2);
}

static void test_double_report_aborts(void **state)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct job *jobs = jobs_new(1);
        sift_ctx *root = sift_ctx_new_root(&loop);
        sift_group *g = sift_group_new(root, 1, SIFT_GROUP_COLLECT, on_done, NULL);
        sift_group_go(g, job_start, &jobs[0]); /* reports synchronously */
        close(2);
        sift_task_done(jobs[0].task, 0, NULL, NULL);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_oom(void **state)
{
    struct job *jobs = jobs_new(20);
    sift_ctx *root = sift_ctx_new_root(&loop);
    for (long n = 0; n < 8; n++) {
        sift_mem_fail_after(n);
        sift_group *g = sift_group_new(root, 2, SIFT_GROUP_COLLECT, on_done, NULL);
        if (g) {
            for (int i = 0; i < 20; i++) {
                int rc = sift_group_go(g, job_start, &jobs[i]);
                assert_true(rc == i || rc == SIFT_ENOMEM);
                if (rc < 0)
                    break;
            }
            sift_group_close(g);
        }
        sift_mem_fail_after(-1);
        uv_run(&loop, UV_RUN_DEFAULT);
        sift_group_free(g);
    }
    sift_ctx_release(root);
    jobs_free(jobs, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_never_exceeded),
        cmocka_unit_test(test_fail_fast_cancels_siblings_and_skips_queued),
        cmocka_unit_test(test_collect_keeps_every_result),
        cmocka_unit_test(test_deadline_with_tasks_in_flight),
        cmocka_unit_test(test_synchronous_tasks_do_not_recurse),
        cmocka_unit_test(test_free_inside_done_and_before_done),
        cmocka_unit_test(test_parent_already_done),
        cmocka_unit_test(test_double_report_aborts),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
