/* mock_llm: the mock OpenAI-compatible model as a program, for benchmarks.
 *
 *   mock_llm [--port N] [--workers W] [--ttft-ms 50] [--token-delay-ms 0]
 *            [--scenario seed]
 *
 * Prints the port it listens on as the first line of stdout, then serves
 * until SIGINT or SIGTERM. On SIGUSR1 and at exit it prints one JSON line on
 * stdout with the requests served and its own CPU time (getrusage), the same
 * object GET /stats answers. Scenario "seed": the seed workload of
 * mock_llm.h (3 parallel check_inventory calls, then a ~60-word answer). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_llm.h"

static void usage(void)
{
    fprintf(stderr, "usage: mock_llm [--port N] [--workers W] [--ttft-ms MS] "
                    "[--token-delay-ms MS] [--scenario seed]\n");
    exit(2);
}

static int int_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        usage();
    char *end;
    errno = 0;
    long v = strtol(argv[++*i], &end, 10);
    if (errno || *end || v < 0 || v > 1000000)
        usage();
    return (int)v;
}

static void print_stats(const mock_llm *m)
{
    char out[256];
    mock_llm_stats_json(m, out, sizeof(out));
    fputs(out, stdout);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int port = 0, workers = 1;
    mock_seed_opts seed = {.ttft_ms = 50, .token_delay_ms = 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0)
            port = int_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--workers") == 0)
            workers = int_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--ttft-ms") == 0)
            seed.ttft_ms = int_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--token-delay-ms") == 0)
            seed.token_delay_ms = int_arg(argc, argv, &i);
        else if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc &&
                 strcmp(argv[i + 1], "seed") == 0)
            i++;
        else
            usage();
    }
    /* Blocked before the workers start, so they inherit the mask and the
     * signals are taken only by sigwait below. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    sift_err err = {0};
    mock_llm *m = mock_llm_start_port(port, workers, &err);
    if (m == NULL) {
        fprintf(stderr, "mock_llm: %s\n", err.msg);
        return 1;
    }
    mock_llm_set_responder(m, mock_llm_seed_responder, &seed);
    printf("%d\n", mock_llm_port(m));
    fflush(stdout);
    fprintf(stderr, "mock_llm: %s, %d worker(s), scenario seed, ttft %d ms, token delay %d ms\n",
            mock_llm_base_url(m), workers, seed.ttft_ms, seed.token_delay_ms);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            print_stats(m);
            continue;
        }
        break;
    }
    print_stats(m);
    mock_llm_stop(m);
    return 0;
}
