/* sift ask: one agent turn in the terminal. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "sift/agent.h"
#include "sift/config.h"
#include "sift/embed.h"
#include "sift/httptool.h"
#include "sift/log.h"
#include "sift/memory.h"
#include "sift/pgstore.h"
#include "sift/search.h"
#include "sift/session.h"
#include "sift/shoptools.h"

static const char usage[] =
    "usage: sift ask [options] \"QUESTION\"\n"
    "\n"
    "Runs one agent turn and streams the answer; tool calls are shown on stderr\n"
    "as they start and finish.\n"
    "\n"
    "options:\n"
    "  --json           print the run events as JSON lines on stdout instead\n"
    "  --session ID     continue (and save) the conversation ID\n"
    "  --config FILE    sift.yaml to read (default: sift.yaml if present)\n"
    "  --db PATH|URL    SQLite file or postgres:// URL (default: SIFT_DB, then store.url,\n"
    "                   data/sift.db); sessions are kept there too\n"
    "  --deadline-ms N  whole-run deadline (default: agent.deadline_ms, 30000)\n"
    "  -h, --help       this text\n"
    "\n"
    "The model is llm.provider from the config: offline (the rule-based planner,\n"
    "no language model) unless SIFT_LLM_BASE_URL or llm.provider says openai.\n"
    "Search vectors come from embed.provider the same way (hashed, built in,\n"
    "unless SIFT_EMBED_BASE_URL or embed.provider says openai).\n";

struct ask {
    int json;
    uint64_t seq;
    char run_id[32];
    int failed;
    sift_http_client *http;
    uv_loop_t *loop;
};

static sift_http_client *client_of(uv_loop_t *loop, void *udata)
{
    struct ask *a = udata;
    return loop == a->loop ? a->http : NULL;
}

static void on_event(void *ud, const sift_event *ev)
{
    struct ask *a = ud;
    if (a->json) {
        sift_buf b;
        sift_buf_init(&b, 0);
        if (sift_event_json(ev, a->run_id, ++a->seq, &b) == 0)
            printf("{\"type\":\"%s\",%s\n", sift_event_name(ev->type), b.data + 1);
        sift_buf_free(&b);
        fflush(stdout);
        return;
    }
    switch (ev->type) {
    case SIFT_EV_TOKEN:
        fwrite(ev->text, 1, ev->text_len, stdout);
        fflush(stdout);
        break;
    case SIFT_EV_TOOL_STARTED:
        fprintf(stderr, "  -> %s %.*s\n", ev->name, (int)ev->json_len, ev->json ? ev->json : "");
        break;
    case SIFT_EV_TOOL_FINISHED:
        if (ev->code)
            fprintf(stderr, "  <- %s failed after %.1f ms: %s\n", ev->name,
                    (double)ev->duration_us / 1000, ev->message ? ev->message : "");
        else
            fprintf(stderr, "  <- %s %.1f ms\n", ev->name, (double)ev->duration_us / 1000);
        break;
    case SIFT_EV_ANSWER:
        fputc('\n', stdout);
        break;
    case SIFT_EV_ERROR:
        fprintf(stderr, "sift ask: %s: %s\n", sift_err_name(ev->code),
                ev->message ? ev->message : "");
        break;
    default:
        break;
    }
}

static void on_done(void *ud, const sift_agent_result *res)
{
    struct ask *a = ud;
    a->failed = res->code != 0;
}

int cli_ask(int argc, char **argv)
{
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                             {"session", required_argument, NULL, 's'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"db", required_argument, NULL, 'd'},
                                             {"deadline-ms", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    struct ask a = {0};
    const char *session = NULL, *config = NULL, *db = NULL;
    long deadline = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'j':
            a.json = 1;
            break;
        case 's':
            session = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'd':
            db = optarg;
            break;
        case 't':
            deadline = strtol(optarg, &end, 10);
            if (*end || deadline <= 0) {
                fprintf(stderr, "sift ask: --deadline-ms must be a positive integer\n");
                return CLI_USAGE;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            fputs(usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || !argv[optind][0]) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *question = argv[optind];
    sift_err err = {0};
    if (session && sift_session_id_check(session, &err)) {
        fprintf(stderr, "sift ask: --session: %s\n", err.msg);
        return CLI_USAGE;
    }
    if (!config && access("sift.yaml", R_OK) == 0)
        config = "sift.yaml";
    sift_config cfg;
    if (sift_config_load(&cfg, config, &err)) {
        fprintf(stderr, "sift ask: %s\n", err.msg);
        return CLI_FAIL;
    }
    if (!db)
        db = cfg.store.url;
    if (!sift_pg_is_url(db) && access(db, R_OK) != 0) {
        fprintf(stderr,
                "sift ask: no store at %s: load a catalog first (sift ingest --db %s FILE)\n", db,
                db);
        sift_config_free(&cfg);
        return CLI_FAIL;
    }

    int rc = CLI_FAIL;
    uv_loop_t loop;
    uv_loop_init(&loop);
    a.loop = &loop;
    sift_arena *arena = sift_arena_new(0);
    sift_tool_registry *reg = sift_tool_registry_new();
    sift_shop *shop = NULL;
    sift_httptools *htools = NULL;
    sift_model *model = NULL;
    sift_session_store *sessions = NULL;
    sift_searcher *searcher = NULL;
    sift_ctx *root = sift_ctx_new_root(&loop);
    a.http = sift_http_client_new(&loop, NULL, &err);
    if (!arena || !reg || !root || !a.http)
        goto out;
    /* the embedding provider of sift.yaml's "embed" (docs/vectors.md) */
    sift_embed_config ec;
    sift_searcher_opts sopts = {0};
    if (sift_embed_config_read(cfg.doc, config ? config : "config", &ec, &err))
        goto out;
    int erc = sift_embed_config_embedder(&ec, client_of, &a, &sopts.embedder, &err);
    sift_embed_config_free(&ec);
    if (erc || sift_searcher_open_sqlite(db, &sopts, &searcher, &err))
        goto out;
    sift_shop_opts so = {.store_path = db, .searcher = searcher};
    /* PostgreSQL: the loop's pool (store.pool) */
    so.pg = (sift_pgpool_opts){.size = (size_t)cfg.pgpool.size,
                               .pipeline_depth = (size_t)cfg.pgpool.pipeline_depth,
                               .queue_max = (size_t)cfg.pgpool.queue_max,
                               .queue_timeout_ms = cfg.pgpool.queue_timeout_ms,
                               .connect_timeout_ms = cfg.pgpool.connect_timeout_ms};
    sift_httptools_opts ho = {.client = client_of, .udata = &a};
    if (sift_shop_new(&so, &shop, &err) || sift_shop_tools_register(reg, shop, &err) ||
        sift_httptools_load(cfg.tools, &ho, &htools, &err) ||
        sift_httptools_register(htools, reg, &err))
        goto out;
    if (!strcmp(cfg.llm.provider, "openai")) {
        sift_openai_opts oo;
        sift_openai_opts_from_config(&oo, &cfg);
        model = sift_openai_new(&loop, a.http, &oo, &err);
    } else {
        model = sift_offline_new(&loop, NULL, &err);
    }
    if (!model)
        goto out;

    sift_conv conv;
    sift_conv_init(&conv, arena);
    bool found = false;
    sift_session_pg_opts spo = {0};
    if (session && ((sift_pg_is_url(db) ? sift_session_pg_open(db, &spo, &sessions, &err)
                                        : sift_session_sqlite_open(db, NULL, &sessions, &err)) ||
                    sift_session_load(sessions, session, &conv, &found, &err)))
        goto out;
    if (!found && sift_conv_add_system(&conv, SIFT_AGENT_SHOP_PROMPT, &err))
        goto out;
    sift_memory_budget budget = {.max_messages = 64, .max_tokens = 12000};
    if (sift_conv_add_user(&conv, question, &err) || sift_memory_trim_conv(&conv, &budget, NULL))
        goto out;

    snprintf(a.run_id, sizeof a.run_id, "r-%llx", (unsigned long long)uv_hrtime());
    sift_agent_opts opts = {
        .model = model,
        .tools = reg,
        .max_steps = cfg.agent.max_steps,
        .deadline_ms = deadline ? deadline : cfg.agent.deadline_ms,
        .tools_opts = {.limit = cfg.agent.tool_limit, .timeout_ms = cfg.agent.tool_timeout_ms},
        .run_id = a.run_id,
        .session_id = session,
        .on_event = on_event,
        .udata = &a,
    };
    if (sift_agent_start(root, &conv, &opts, on_done, &a, &err))
        goto out;
    uv_run(&loop, UV_RUN_DEFAULT);
    if (sessions && !a.failed && sift_session_save(sessions, session, conv.msgs, conv.len, &err))
        goto out;
    rc = a.failed ? CLI_FAIL : CLI_OK;
    err.code = 0;
out:
    if (err.code)
        fprintf(stderr, "sift ask: %s\n", err.msg);
    sift_model_free(model);
    if (a.http)
        sift_http_client_close(a.http, NULL, NULL);
    sift_ctx_release(root);
    if (shop)
        sift_shop_loop_close(shop, &loop); /* PostgreSQL: the loop's pool */
    uv_run(&loop, UV_RUN_DEFAULT);
    sift_tool_registry_free(reg);
    sift_httptools_free(htools);
    sift_shop_free(shop);
    sift_searcher_close(searcher);
    sift_session_close(sessions);
    sift_arena_free(arena);
    uv_loop_close(&loop);
    sift_config_free(&cfg);
    return rc;
}
