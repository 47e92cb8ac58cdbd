/* mock_kafka: librdkafka's in-process mock cluster as a program, for shell
 * tests, benchmarks and trying `sift ingest --kafka` without a broker.
 *
 *   mock_kafka [--brokers N] [--topic NAME[:PARTITIONS]]...
 *
 * Prints the bootstrap servers on one stdout line, then serves until SIGINT,
 * SIGTERM, or its parent's exit (PR_SET_PDEATHSIG). SIGUSR1 takes every broker down, SIGUSR2
 * brings them back (rd_kafka_mock_broker_set_down/up). The brokers listen on
 * loopback ports picked by the system; anything that speaks Kafka (kcat,
 * sift) can use them while the program runs. Data lives in memory only. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static volatile sig_atomic_t stop, want_down, want_up;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        want_down = 1;
    else if (sig == SIGUSR2)
        want_up = 1;
    else
        stop = 1;
}

int main(int argc, char **argv)
{
    int brokers = 1;
    const char *topics[32];
    int n_topics = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
            brokers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--topic") && i + 1 < argc && n_topics < 32)
            topics[n_topics++] = argv[++i];
        else {
            fprintf(stderr, "usage: mock_kafka [--brokers N] [--topic NAME[:PARTITIONS]]...\n");
            return 2;
        }
    }
    if (brokers < 1 || brokers > 9) {
        fprintf(stderr, "mock_kafka: --brokers must be between 1 and 9\n");
        return 2;
    }
    char msg[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", msg, sizeof msg);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof msg);
    if (!rk) {
        fprintf(stderr, "mock_kafka: %s\n", msg);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "mock_kafka: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 0; i < n_topics; i++) {
        char name[256];
        int parts = 1;
        const char *colon = strchr(topics[i], ':');
        if (colon) {
            snprintf(name, sizeof name, "%.*s", (int)(colon - topics[i]), topics[i]);
            parts = atoi(colon + 1);
        } else {
            snprintf(name, sizeof name, "%s", topics[i]);
        }
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(mc, name, parts > 0 ? parts : 1, brokers < 3 ? brokers : 3);
        if (e) {
            fprintf(stderr, "mock_kafka: topic %s: %s\n", name, rd_kafka_err2str(e));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    /* a test killed before its cleanup must not leave brokers behind */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        stop = 1;
    while (!stop) {
        usleep(50 * 1000);
        if (want_down || want_up) {
            int down = want_down;
            want_down = want_up = 0;
            for (int b = 1; b <= brokers; b++)
                if (down)
                    rd_kafka_mock_broker_set_down(mc, b);
                else
                    rd_kafka_mock_broker_set_up(mc, b);
            fprintf(stderr, "mock_kafka: brokers %s\n", down ? "down" : "up");
        }
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
