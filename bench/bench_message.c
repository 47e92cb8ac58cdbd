/* Cost of the chat wire format outside the stream: serialising a request of a
 * typical agent turn (with the tool check, with tools_prechecked, without
 * tools) and parsing a
 * non-streaming response. Median of several runs. Writes
 * bench/results/message.json and message.md (see benchutil.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/model.h"

#include "benchutil.h"

#define RUNS 9
#define ITERS 20000

static const char *const tools[3] = {
    "{\"type\":\"function\",\"function\":{\"name\":\"search_products\",\"description\":\"Search "
    "the catalog by text and filters\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\"},\"brand\":{\"type\":\"string\"},\"size\":{\"type\":"
    "\"string\"},\"max_price\":{\"type\":\"integer\",\"minimum\":0}},\"required\":[\"query\"],"
    "\"additionalProperties\":false},\"strict\":true}}",
    "{\"type\":\"function\",\"function\":{\"name\":\"check_inventory\",\"description\":\"Stock "
    "of one SKU at one store\",\"parameters\":{\"type\":\"object\",\"properties\":{\"sku\":{"
    "\"type\":\"string\"},\"location\":{\"type\":\"string\",\"enum\":[\"HAN\",\"DAD\",\"SGN\"]}},"
    "\"required\":[\"sku\",\"location\"],\"additionalProperties\":false},\"strict\":true}}",
    "{\"type\":\"function\",\"function\":{\"name\":\"get_price\",\"description\":\"Current "
    "price of one SKU\",\"parameters\":{\"type\":\"object\",\"properties\":{\"sku\":{\"type\":"
    "\"string\"}},\"required\":[\"sku\"],\"additionalProperties\":false},\"strict\":true}}",
};

static const char response[] =
    "{\"id\":\"chatcmpl-B1\",\"object\":\"chat.completion\",\"created\":1732530000,\"model\":"
    "\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":null,\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{"
    "\"name\":\"check_inventory\",\"arguments\":\"{\\\"sku\\\":\\\"NIKE-PEG40-42\\\","
    "\\\"location\\\":\\\"HAN\\\"}\"}},{\"id\":\"call_b\",\"type\":\"function\",\"function\":{"
    "\"name\":\"check_inventory\",\"arguments\":\"{\\\"sku\\\":\\\"NIKE-PEG40-42\\\","
    "\\\"location\\\":\\\"SGN\\\"}\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":"
    "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":412,\"completion_tokens\":71,"
    "\"total_tokens\":483}}";

/* CPU time of this process: the machine is shared, and CPU time is what
 * serialising costs whatever else runs beside it. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const sift_err *err)
{
    fprintf(stderr, "bench_message: %s\n", err->msg);
    exit(1);
}

/* A turn after one round of tool calls: system, user, assistant with three
 * calls, three tool results. */
static void build_conv(sift_conv *c)
{
    sift_err err = {0};
    static const sift_tool_call calls[3] = {
        {"call_a", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"HAN\"}", 41},
        {"call_b", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"DAD\"}", 41},
        {"call_c", "check_inventory", "{\"sku\":\"NIKE-PEG40-42\",\"location\":\"SGN\"}", 41},
    };
    if (sift_conv_add_system(c,
                             "You are the shop assistant of a sports store in Vietnam. Answer "
                             "with products from the catalog only; check stock and price with "
                             "the tools before you promise anything.",
                             &err) ||
        sift_conv_add_user(c, "Do you have the Pegasus 40 in size 42 in any store?", &err) ||
        sift_conv_add_assistant(c, NULL, calls, 3, &err) ||
        sift_conv_add_tool_result(c, "call_a", "{\"sku\":\"NIKE-PEG40-42\",\"qty\":3}", &err) ||
        sift_conv_add_tool_result(c, "call_b", "{\"sku\":\"NIKE-PEG40-42\",\"qty\":0}", &err) ||
        sift_conv_add_tool_result(c, "call_c", "{\"sku\":\"NIKE-PEG40-42\",\"qty\":7}", &err))
        die(&err);
}

int main(void)
{
    struct bench_report rep = {.name = "message"};
    sift_arena *a = sift_arena_new(0);
    if (!a)
        return 1;
    sift_conv c;
    sift_conv_init(&c, a);
    build_conv(&c);
    sift_chat_request with_tools = {.model = "gpt-4o-mini",
                                    .messages = c.msgs,
                                    .n_messages = c.len,
                                    .tools = tools,
                                    .n_tools = 3,
                                    .tool_choice = SIFT_TOOL_CHOICE_AUTO,
                                    .parallel_tool_calls = 1,
                                    .stream = true,
                                    .include_usage = true};
    sift_chat_request prechecked = with_tools;
    prechecked.tools_prechecked = true;
    sift_chat_request no_tools = with_tools;
    no_tools.tools = NULL;
    no_tools.n_tools = 0;

    sift_buf b;
    sift_buf_init(&b, 0);
    sift_err err = {0};
    double ser[RUNS], serp[RUNS], ser0[RUNS], par[RUNS];
    size_t req_bytes = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = cpu_s();
        for (int i = 0; i < ITERS; i++) {
            sift_buf_reset(&b);
            if (sift_chat_request_json(&with_tools, &b, &err))
                die(&err);
        }
        ser[r] = (cpu_s() - t0) * 1e6 / ITERS;
        req_bytes = b.len;
        t0 = cpu_s();
        for (int i = 0; i < ITERS; i++) {
            sift_buf_reset(&b);
            if (sift_chat_request_json(&prechecked, &b, &err))
                die(&err);
        }
        serp[r] = (cpu_s() - t0) * 1e6 / ITERS;
        t0 = cpu_s();
        for (int i = 0; i < ITERS; i++) {
            sift_buf_reset(&b);
            if (sift_chat_request_json(&no_tools, &b, &err))
                die(&err);
        }
        ser0[r] = (cpu_s() - t0) * 1e6 / ITERS;

        sift_arena *ra = sift_arena_new(0);
        if (!ra)
            return 1;
        t0 = cpu_s();
        for (int i = 0; i < ITERS; i++) {
            sift_chat_result res;
            if (sift_chat_response_parse(response, sizeof(response) - 1, ra, &res, &err))
                die(&err);
            sift_arena_reset(ra);
        }
        par[r] = (cpu_s() - t0) * 1e6 / ITERS;
        sift_arena_free(ra);
    }
    printf("bench_message: median of %d runs of %d iterations\n", RUNS, ITERS);
    bench_add(&rep, "request with 3 tools, 8 messages: size", (double)req_bytes, "bytes");
    bench_add(&rep, "request with 3 tools, 8 messages: serialise", bench_median(ser, RUNS), "us");
    bench_add(&rep, "same, tools_prechecked: serialise", bench_median(serp, RUNS), "us");
    bench_add(&rep, "same request without tools: serialise", bench_median(ser0, RUNS), "us");
    bench_add(&rep, "non-streaming response, 2 tool calls: parse", bench_median(par, RUNS), "us");
    bench_write(&rep);
    sift_buf_free(&b);
    sift_arena_free(a);
    return 0;
}
