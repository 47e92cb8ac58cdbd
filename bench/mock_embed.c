/* mock_embed: the mock OpenAI-compatible /v1/embeddings server as a program,
 * for shell tests and trying the provider by hand.
 *
 *   mock_embed [--dims N] [--fail N]
 *
 * --fail N: the first N requests are answered 503 (for retry tests).
 * Prints its base URL ("http://127.0.0.1:PORT/v1") as the first line of
 * stdout, then serves until SIGINT or SIGTERM. On SIGUSR1 and at exit it
 * prints one JSON line on stdout: {"requests":N}. Vectors: mock_embed.h. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_embed.h"

int main(int argc, char **argv)
{
    int dims = 8, nfail = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dims") == 0 && i + 1 < argc) {
            dims = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--fail") == 0 && i + 1 < argc) {
            nfail = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: mock_embed [--dims N] [--fail N]\n");
            return 2;
        }
    }
    if (dims < 1 || dims > 4096) {
        fprintf(stderr, "mock_embed: --dims must be 1..4096\n");
        return 2;
    }
    /* blocked before the server's threads start, so they inherit the mask
     * and only sigwait below sees the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sift_err err = {0};
    mock_embed *m = mock_embed_start(&err);
    if (!m) {
        fprintf(stderr, "mock_embed: %s\n", err.msg);
        return 1;
    }
    mock_embed_set_dims(m, dims);
    mock_embed_reply r503 = {.status = 503};
    for (int i = 0; i < nfail; i++)
        mock_embed_push(m, &r503);
    printf("%s\n", mock_embed_base_url(m));
    fflush(stdout);
    for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        printf("{\"requests\":%d}\n", mock_embed_requests(m));
        fflush(stdout);
        if (sig != SIGUSR1)
            break;
    }
    mock_embed_stop(m);
    return 0;
}
