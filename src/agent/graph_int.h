/* Internals shared by graph.c (building, compiling, state helpers),
 * graph_run.c (execution) and the subgraph node. */
#ifndef SIFT_GRAPH_INT_H
#define SIFT_GRAPH_INT_H

#include <cjson/cJSON.h>

#include "sift/arena.h"
#include "sift/graph.h"

#define SIFT_GRAPH_START_ID (-2)
#define SIFT_GRAPH_END_ID (-3)

struct gbranch {
    sift_graph_router_fn fn;
    void *udata;
    int id;
    struct gbranch *next;
};

/* An edge by name until compile resolves the ids (-1: unknown). */
struct gedge {
    char *from, *to;
    int branch; /* the branch id it is a target of, or -1 for a static edge */
    int from_id, to_id;
};

struct gnode {
    char *name;
    sift_graph_node_fn fn;
    const sift_graph *sub; /* for subgraph nodes */
    void *udata;
    int *out; /* static successors (node ids or SIFT_GRAPH_END_ID) */
    int nout;
    struct gbranch *branch;
};

struct sift_graph {
    sift_arena *arena; /* names, fields, compiled arrays */
    char *name;
    char *state_type;
    size_t state_size;
    sift_graph_field *fields;
    int nfields;
    struct gnode *nodes;
    int nnodes, cap_nodes;
    struct gedge *edges;
    int nedges, cap_edges;
    struct gbranch *branches;
    int nbranches;
    int *entry;
    int nentry;
    int compiled;
    sift_err build_err;
};

int sift_graph_find(const sift_graph *g, const char *name);
void sift_graph_subgraph_node(sift_graph_node_run *run, void *state);

void *sift_graph_state_copy(const sift_graph *g, const void *state);
void sift_graph_state_free_copy(const sift_graph *g, void *copy);
int sift_graph_state_merge(const sift_graph *g, void *dst, const void *base, const void *branch);
int sift_graph_state_to_json(const sift_graph *g, const void *state, sift_buf *out);
int sift_graph_state_from_json(const sift_graph *g, const cJSON *obj, void *state, sift_err *err);

#endif
