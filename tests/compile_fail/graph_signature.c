/* Compiled by tests/integration/test_graph_compile_fail.sh, never built into a
 * program: SIFT_GRAPH_NODE_FN and SIFT_GRAPH_ROUTER_FN must reject functions
 * whose signatures do not match the graph's state type. VARIANT 0 is the
 * control and must compile; variants 1-5 must fail with the node diagnostic,
 * 6-7 with the router diagnostic. */
#include "sift/graph.h"

struct state {
    int64_t n;
};

struct other_state {
    int64_t m;
};

#ifndef VARIANT
#define VARIANT 0
#endif

#if VARIANT == 1 /* another state struct */
static void plan(sift_graph_node_run *run, struct other_state *s)
{
    s->m++;
    sift_graph_node_done(run, 0, NULL);
}
#elif VARIANT == 2 /* returns a value: the outcome goes through sift_graph_node_done */
static int plan(sift_graph_node_run *run, struct state *s)
{
    return run != NULL && s->n > 0;
}
#elif VARIANT == 3 /* a const state: a node is there to change it */
static void plan(sift_graph_node_run *run, const struct state *s)
{
    sift_graph_node_done(run, (int)s->n, NULL);
}
#elif VARIANT == 4 /* misses the run */
static void plan(struct state *s)
{
    s->n++;
}
#elif VARIANT == 5 /* an untyped state pointer */
static void plan(sift_graph_node_run *run, void *s)
{
    (void)s;
    sift_graph_node_done(run, 0, NULL);
}
#else              /* the right signature */
static void plan(sift_graph_node_run *run, struct state *s)
{
    s->n++;
    sift_graph_node_done(run, 0, NULL);
}
#endif

#if VARIANT == 6 /* a router may not change the state */
static int route(struct state *s, void *udata, const char **out, int max)
{
    (void)udata;
    (void)max;
    s->n++;
    out[0] = SIFT_GRAPH_END;
    return 1;
}
#elif VARIANT == 7 /* a router for another state struct */
static int route(const struct other_state *s, void *udata, const char **out, int max)
{
    (void)udata;
    (void)max;
    out[0] = s->m ? SIFT_GRAPH_END : "plan";
    return 1;
}
#else
static int route(const struct state *s, void *udata, const char **out, int max)
{
    (void)udata;
    (void)max;
    out[0] = s->n ? SIFT_GRAPH_END : "plan";
    return 1;
}
#endif

SIFT_GRAPH_NODE_FN(plan, struct state);
SIFT_GRAPH_ROUTER_FN(route, struct state);
