/* bench_seed: the seed workload end to end (issue 7; bench/README.md).
 *
 *   bench_seed [--levels 1,100,1000,10000] [--warmup S] [--duration S]
 *              [--ttft-ms 50] [--tool-ms 20] [--workers N] [--name seed]
 *
 * Starts bench/mock_llm (scenario seed), bench/mock_inventory and `sift
 * serve` with bench/seed.yaml (check_inventory is an HTTP tool calling the
 * mock inventory), all from the directory this program is in, on free ports
 * in a temporary directory. Then for each concurrency level it runs
 * load_seed (warm-up, measured window, drain) and reports runs/s, latency
 * p50/p90/p99 and the overhead over the floor (2 x TTFT + TOOL; the answer's
 * tokens come with no delay), sift's CPU per run, RSS and RSS per in-flight
 * run, errors, event-loop lag p99 and the mocks' CPU. A level the open-file
 * limit cannot hold is reported as such (figure -1 and a note), not run.
 *
 * Results: <name>.json and <name>.md in SIFT_BENCH_RESULTS or bench/results
 * (benchutil.h), the .md with a table per level and the notes. Exit status 0
 * when every level ran with 0 errors, 1 otherwise, 2 on bad usage. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "benchutil.h"

#define MAX_LEVELS 8

struct proc {
    pid_t pid;
    int out; /* read end of its stdout, or -1 */
};

struct level {
    int conc;
    int ran;
    char note[256];
    cJSON *res; /* load_seed's output */
};

static char bindir[512], tmpdir[256];
static struct proc llm = {0, -1}, inv = {0, -1}, sift = {0, -1};

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_seed: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

/* Starts argv[0] (a path) with stdout to a pipe (or to out_file when not
 * NULL, stderr too) and extra environment entries. */
static int spawn(struct proc *p, char *const argv[], const char *out_file, char *const env[])
{
    int fds[2] = {-1, -1};
    if (!out_file && pipe2(fds, O_CLOEXEC))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (out_file) {
            int fd = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0)
                _exit(127);
            dup2(fd, 1);
            dup2(fd, 2);
        } else {
            dup2(fds[1], 1);
        }
        for (int i = 0; env && env[i]; i++)
            putenv(env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    if (!out_file)
        close(fds[1]);
    p->pid = pid;
    p->out = fds[0];
    return 0;
}

/* First line of a child's stdout as a port number (10 s at most). */
static int read_port(struct proc *p)
{
    char line[64];
    size_t n = 0;
    double until = bench_now_s() + 10;
    fcntl(p->out, F_SETFL, O_NONBLOCK);
    while (bench_now_s() < until && n < sizeof line - 1) {
        ssize_t r = read(p->out, line + n, 1);
        if (r == 1) {
            if (line[n] == '\n')
                break;
            n++;
        } else if (r == 0) {
            return -1;
        } else {
            usleep(10000);
        }
    }
    line[n] = 0;
    int port = atoi(line);
    return port > 0 && port < 65536 ? port : -1;
}

static void stop(struct proc *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    int st;
    for (int i = 0; i < 100; i++) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            break;
        }
        usleep(50000);
    }
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        p->pid = 0;
    }
    if (p->out >= 0)
        close(p->out);
    p->out = -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void cleanup(void)
{
    stop(&sift);
    stop(&llm);
    stop(&inv);
    if (tmpdir[0])
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = 0;
}

/* Runs a command to completion; its exit status, or -1. */
static int run_wait(char *const argv[], const char *out_file)
{
    struct proc p = {0, -1};
    if (spawn(&p, argv, out_file ? out_file : "/dev/null", NULL))
        return -1;
    int st;
    if (waitpid(p.pid, &st, 0) != p.pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* sift's port, from the "serving on http://HOST:PORT/" log line (15 s). */
static int sift_port(const char *log)
{
    double until = bench_now_s() + 15;
    while (bench_now_s() < until) {
        FILE *f = fopen(log, "r");
        char line[2048];
        while (f && fgets(line, sizeof line, f)) {
            char *p = strstr(line, "serving on http://");
            char *c = p ? strchr(p + 18, ':') : NULL;
            if (c) {
                fclose(f);
                return atoi(c + 1);
            }
        }
        if (f)
            fclose(f);
        int st;
        if (waitpid(sift.pid, &st, WNOHANG) == sift.pid) {
            sift.pid = 0;
            return -1;
        }
        usleep(50000);
    }
    return -1;
}

static long upstream = 64; /* server.upstream_connections read from seed.yaml */

/* Writes <tmpdir>/seed.yaml: bench/seed.yaml with the inventory port. */
static int write_config(const char *path, int inv_port)
{
    char src[600], port[16];
    snprintf(src, sizeof src, "%s/bench/seed.yaml", SIFT_SOURCE_DIR);
    snprintf(port, sizeof port, "%d", inv_port);
    FILE *in = fopen(src, "r"), *out = fopen(path, "w");
    char line[1024];
    int found = 0;
    while (in && out && fgets(line, sizeof line, in)) {
        char *p = strstr(line, "INVENTORY_PORT");
        sscanf(line, " upstream_connections: %ld", &upstream);
        if (p) {
            *p = 0;
            fprintf(out, "%s%s%s", line, port, p + strlen("INVENTORY_PORT"));
            found = 1;
        } else {
            fputs(line, out);
        }
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    return in && out && found ? 0 : -1;
}

/* One blocking GET; 0 when the answer is 200. */
static int http_get_ok(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char rq[256], buf[64] = {0};
    int n =
        snprintf(rq, sizeof rq, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
             write(fd, rq, (size_t)n) == n && read(fd, buf, sizeof buf - 1) > 12 &&
             strncmp(buf + 9, "200", 3) == 0;
    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

/* Runs load_seed for one level and parses its JSON line. */
static cJSON *run_level(int conc, int port, double warmup, double duration, int timeout_ms)
{
    char a_port[16], a_conc[16], a_warm[32], a_dur[32], a_to[16], a_sp[16], a_lp[16], a_ip[16],
        path[600];
    snprintf(path, sizeof path, "%s/load_seed", bindir);
    snprintf(a_port, sizeof a_port, "%d", port);
    snprintf(a_conc, sizeof a_conc, "%d", conc);
    snprintf(a_warm, sizeof a_warm, "%g", warmup);
    snprintf(a_dur, sizeof a_dur, "%g", duration);
    snprintf(a_to, sizeof a_to, "%d", timeout_ms);
    snprintf(a_sp, sizeof a_sp, "%d", (int)sift.pid);
    snprintf(a_lp, sizeof a_lp, "%d", (int)llm.pid);
    snprintf(a_ip, sizeof a_ip, "%d", (int)inv.pid);
    char *argv[] = {path,   "--port",     a_port, "--concurrency", a_conc, "--warmup",
                    a_warm, "--duration", a_dur,  "--timeout-ms",  a_to,   "--sift-pid",
                    a_sp,   "--llm-pid",  a_lp,   "--inv-pid",     a_ip,   NULL};
    struct proc p = {0, -1};
    if (spawn(&p, argv, NULL, NULL))
        return NULL;
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(p.out, buf + n, sizeof buf - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    close(p.out);
    int st;
    waitpid(p.pid, &st, 0);
    return cJSON_Parse(buf);
}

static double num(const cJSON *o, const char *path)
{
    char key[64];
    snprintf(key, sizeof key, "%s", path);
    const cJSON *cur = o;
    for (char *s = key, *dot; cur && s; s = dot ? dot + 1 : NULL) {
        dot = strchr(s, '.');
        if (dot)
            *dot = 0;
        cur = cJSON_GetObjectItemCaseSensitive(cur, s);
    }
    return cur && cJSON_IsNumber(cur) ? cur->valuedouble : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_seed [--levels 1,100,1000,10000] [--warmup S] [--duration S] "
                    "[--ttft-ms MS] [--tool-ms MS] [--workers N] [--name NAME]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *levels_arg = "1,100,1000,10000", *name = "seed";
    double warmup = 3, duration = 10;
    int ttft = 50, tool = 20, workers = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--levels"))
            levels_arg = argv[++i];
        else if (!strcmp(argv[i], "--name"))
            name = argv[++i];
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "--duration"))
            duration = atof(argv[++i]);
        else if (!strcmp(argv[i], "--ttft-ms"))
            ttft = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tool-ms"))
            tool = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[++i]);
        else
            usage();
    }
    struct level lv[MAX_LEVELS] = {0};
    int nlv = 0;
    for (const char *p = levels_arg; *p && nlv < MAX_LEVELS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 100000)
            usage();
        lv[nlv++].conc = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (nlv == 0 || duration <= 0 || warmup < 0 || ttft < 0 || tool < 0)
        usage();

    ssize_t bl = readlink("/proc/self/exe", bindir, sizeof bindir - 1);
    if (bl <= 0)
        return 1;
    bindir[bl] = 0;
    *strrchr(bindir, '/') = 0;

    /* Every process inherits the raised soft limit (sift raises its own too). */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    long long fd_limit = rl.rlim_cur == RLIM_INFINITY ? (1ll << 40) : (long long)rl.rlim_cur;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/sift-bench-seed-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = 0;
        die("cannot create a temporary directory: %s", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    char path[600], a1[32], a2[32], a3[32], cfg[300], db[300], log[300], catalog[600];
    char env_llm[128], env_db[320];

    /* the mocks: enough threads that they are not the bottleneck */
    snprintf(path, sizeof path, "%s/mock_llm", bindir);
    snprintf(a1, sizeof a1, "%d", ttft);
    char *llm_argv[] = {path, "--workers", "1", "--ttft-ms", a1, NULL};
    if (spawn(&llm, llm_argv, NULL, NULL)) {
        die("cannot start %s", path);
        goto out;
    }
    int llm_port = read_port(&llm);
    char ipath[600];
    snprintf(ipath, sizeof ipath, "%s/mock_inventory", bindir);
    snprintf(a2, sizeof a2, "%d", tool);
    char *inv_argv[] = {ipath, "--workers", "1", "--tool-ms", a2, NULL};
    if (spawn(&inv, inv_argv, NULL, NULL)) {
        die("cannot start %s", ipath);
        goto out;
    }
    int inv_port = read_port(&inv);
    if (llm_port < 0 || inv_port < 0) {
        die("%s", "a mock did not start (no port on its stdout)");
        goto out;
    }

    /* a catalog for the store sift opens (the seed runs never search it) */
    snprintf(db, sizeof db, "%s/seed.db", tmpdir);
    snprintf(path, sizeof path, "%s/sift", bindir);
    snprintf(catalog, sizeof catalog, "%s/catalog/sample/products.jsonl", SIFT_SOURCE_DIR);
    char *ingest_argv[] = {path, "ingest", "--quiet", "--db", db, catalog, NULL};
    if (run_wait(ingest_argv, NULL) != 0) {
        die("sift ingest %s failed", catalog);
        goto out;
    }
    snprintf(cfg, sizeof cfg, "%s/seed.yaml", tmpdir);
    if (write_config(cfg, inv_port)) {
        die("%s", "cannot write the config (bench/seed.yaml with INVENTORY_PORT)");
        goto out;
    }
    snprintf(log, sizeof log, "%s/sift.log", tmpdir);
    snprintf(env_llm, sizeof env_llm, "SIFT_LLM_BASE_URL=http://127.0.0.1:%d/v1", llm_port);
    snprintf(env_db, sizeof env_db, "SIFT_DB=%s", db);
    char *env[] = {env_llm, env_db, "SIFT_LOG_LEVEL=info", NULL};
    snprintf(a3, sizeof a3, "%d", workers);
    char *sift_argv[] = {path, "serve", "--config", cfg, "--port", "0", NULL, NULL, NULL};
    if (workers > 0) {
        sift_argv[6] = "--workers";
        sift_argv[7] = a3;
    }
    if (spawn(&sift, sift_argv, log, env)) {
        die("cannot start %s", path);
        goto out;
    }
    int port = sift_port(log);
    if (port <= 0) {
        die("sift serve did not start; its log: %s", log);
        char *cat[] = {"/bin/cat", log, NULL};
        struct proc c = {0, -1};
        if (spawn(&c, cat, NULL, NULL) == 0) {
            char b[4096];
            ssize_t r;
            while ((r = read(c.out, b, sizeof b)) > 0)
                fwrite(b, 1, (size_t)r, stderr);
            close(c.out);
            waitpid(c.pid, NULL, 0);
        }
        goto out;
    }
    double until = bench_now_s() + 10;
    while (http_get_ok(port, "/readyz") && bench_now_s() < until)
        usleep(50000);
    printf("bench_seed: sift pid %d on port %d, mock_llm pid %d on %d, mock_inventory pid %d on "
           "%d, fd limit %lld, files in %s\n",
           (int)sift.pid, port, (int)llm.pid, llm_port, (int)inv.pid, inv_port, fd_limit, tmpdir);

    /* sift holds one socket per run from the client, up to
     * upstream_connections per worker to each of the two mocks, and a few
     * dozen of its own; load_seed holds one per run */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long sift_workers = workers > 0 ? workers : ncpu;
    int all_ok = 1;
    double floor_ms = 2.0 * ttft + tool;
    long rss_base = -1;
    for (int i = 0; i < nlv; i++) {
        /* a run holds at most 4 upstream connections (the model, 3 tools) */
        long long up = 2LL * upstream * sift_workers, four = 4LL * lv[i].conc;
        long long need = (long long)lv[i].conc + (up < four ? up : four) + 64;
        if (need > fd_limit) {
            snprintf(lv[i].note, sizeof lv[i].note,
                     "not reachable here: %d concurrent runs need about %lld open files in sift "
                     "and %d in load_seed; the open-file limit is %lld",
                     lv[i].conc, need, lv[i].conc + 32, fd_limit);
            printf("  c=%d: %s\n", lv[i].conc, lv[i].note);
            all_ok = 0;
            continue;
        }
        printf("  c=%d: warm-up %gs, measuring %gs...\n", lv[i].conc, warmup, duration);
        fflush(stdout);
        lv[i].res = run_level(lv[i].conc, port, warmup, duration, 30000);
        if (!lv[i].res) {
            snprintf(lv[i].note, sizeof lv[i].note, "load_seed gave no result");
            all_ok = 0;
            continue;
        }
        lv[i].ran = 1;
        if (rss_base < 0)
            rss_base = (long)num(lv[i].res, "sift.rss_kb_start");
        if (num(lv[i].res, "errors.total") != 0 || num(lv[i].res, "completed") <= 0)
            all_ok = 0;
        if (waitpid(sift.pid, NULL, WNOHANG) == sift.pid) {
            sift.pid = 0;
            die("sift exited during the run; its log: %s", log);
            break;
        }
    }

    struct bench_report rep = {0};
    snprintf(rep.name, sizeof rep.name, "%s", name);
    bench_add(&rep, "floor latency (2xTTFT + TOOL)", floor_ms, "ms");
    bench_add(&rep, "sift worker threads", (double)sift_workers, "threads");
    bench_add(&rep, "open-file limit", (double)fd_limit, "files");
    for (int i = 0; i < nlv; i++) {
        char k[96];
        const cJSON *r = lv[i].res;
        int c = lv[i].conc;
#define FIG(label, value, unit)                                                                    \
    do {                                                                                           \
        snprintf(k, sizeof k, "c=%d %s", c, label);                                                \
        bench_add(&rep, k, lv[i].ran ? (value) : -1, unit);                                        \
    } while (0)
        double done = r ? num(r, "completed") : 0;
        double per = done > 0 ? done : 1;
        FIG("runs/s", num(r, "runs_per_s"), "runs/s");
        FIG("latency p50", num(r, "lat_ms.p50"), "ms");
        FIG("latency p90", num(r, "lat_ms.p90"), "ms");
        FIG("latency p99", num(r, "lat_ms.p99"), "ms");
        FIG("overhead p50 over floor", num(r, "lat_ms.p50") - floor_ms, "ms");
        FIG("overhead p99 over floor", num(r, "lat_ms.p99") - floor_ms, "ms");
        FIG("sift CPU per run (utime+stime)", num(r, "sift.cpu_us") / per, "us");
        FIG("sift CPU per run, kernel part (stime)", num(r, "sift.cpu_sys_us") / per, "us");
        FIG("sift CPU per run (schedstat)", num(r, "sift.cpu_ns_sched") / 1000 / per, "us");
        FIG("sift RSS max", num(r, "sift.rss_kb_max") / 1024, "MB");
        FIG("sift RSS per in-flight run", (num(r, "sift.rss_kb_max") - (double)rss_base) / c, "KB");
        FIG("errors", num(r, "errors.total"), "runs");
        FIG("event-loop lag p99 (histogram bucket bound)", num(r, "lag_p99_ms"), "ms");
        FIG("mock_llm CPU per run", num(r, "llm_cpu_us") / per, "us");
        FIG("mock_inventory CPU per run", num(r, "inv_cpu_us") / per, "us");
        FIG("load_seed CPU per run", num(r, "self_cpu_us") / per, "us");
        FIG("runs measured", done, "runs");
#undef FIG
    }
    bench_write(&rep);

    /* the per-level table and the notes, after the figures */
    const char *dir = getenv("SIFT_BENCH_RESULTS");
    char md[600];
    if (dir)
        snprintf(md, sizeof md, "%s/%s.md", dir, name);
    else
        snprintf(md, sizeof md, "%s/bench/results/%s.md", SIFT_SOURCE_DIR, name);
    FILE *f = fopen(md, "a");
    if (f) {
        fprintf(
            f,
            "\n## Per concurrency level\n\nFloor %.0f ms (2 x TTFT %d ms + TOOL %d ms, no "
            "delay between tokens); warm-up %g s, measured window %g s; RSS per in-flight "
            "run = (peak RSS - RSS at c=%d after its warm-up) / concurrency; loop lag p99 is the "
            "upper bound of the sift_loop_lag_seconds bucket it falls in (1, 5, 10, 50, 100, "
            "500, 1000 ms; 10000: over 1 s).\n\n",
            floor_ms, ttft, tool, warmup, duration, lv[0].conc);
        fprintf(f, "| concurrency | runs/s | p50 ms | p90 ms | p99 ms | p99 overhead ms | sift CPU "
                   "µs/run | sift RSS MB | KB per in-flight run | errors | loop lag p99 ms | "
                   "mock_llm µs/run | mock_inventory µs/run | load_seed µs/run |\n"
                   "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < nlv; i++) {
            const cJSON *r = lv[i].res;
            if (!lv[i].ran) {
                fprintf(f, "| %d | not run: %s |||||||||||||\n", lv[i].conc, lv[i].note);
                continue;
            }
            double per = num(r, "completed") > 0 ? num(r, "completed") : 1;
            fprintf(f,
                    "| %d | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f | %.1f | %.1f | %.0f | %.0f | "
                    "%.0f | %.0f | %.0f |\n",
                    lv[i].conc, num(r, "runs_per_s"), num(r, "lat_ms.p50"), num(r, "lat_ms.p90"),
                    num(r, "lat_ms.p99"), num(r, "lat_ms.p99") - floor_ms,
                    num(r, "sift.cpu_us") / per, num(r, "sift.rss_kb_max") / 1024,
                    (num(r, "sift.rss_kb_max") - (double)rss_base) / lv[i].conc,
                    num(r, "errors.total"), num(r, "lag_p99_ms"), num(r, "llm_cpu_us") / per,
                    num(r, "inv_cpu_us") / per, num(r, "self_cpu_us") / per);
        }
        fprintf(f, "\nErrors by kind (http_status, truncated, run_error, timeout, connect):");
        for (int i = 0; i < nlv; i++)
            if (lv[i].ran)
                fprintf(f, " c=%d: %.0f, %.0f, %.0f, %.0f, %.0f;", lv[i].conc,
                        num(lv[i].res, "errors.http_status"), num(lv[i].res, "errors.truncated"),
                        num(lv[i].res, "errors.run_error"), num(lv[i].res, "errors.timeout"),
                        num(lv[i].res, "errors.connect"));
        fprintf(f, "\n");
        fclose(f);
    }
    rc = all_ok ? 0 : 1;
out:
    for (int i = 0; i < nlv; i++)
        cJSON_Delete(lv[i].res);
    cleanup();
    return rc;
}
