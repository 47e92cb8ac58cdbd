/* The state-graph engine: building, compiling (validation) and state helpers.
 * Running is in graph_run.c. */
#include <string.h>

#include "graph_int.h"
#include "sift/arena.h"

/* Records the first builder error so sift_graph_compile can report it even
 * when the caller ignored the add_* return value. */
static int build_fail(sift_graph *g, int code, const char *fmt, const char *a, const char *b)
{
    if (!g->build_err.code)
        sift_err_set(&g->build_err, code, fmt, a, b);
    return code;
}

sift_graph *sift_graph_new(const char *name, size_t state_size, const char *state_type,
                           const sift_graph_field *fields, int nfields, sift_err *err)
{
    if (!name || !state_type || state_size == 0 || nfields < 0 || (nfields && !fields)) {
        sift_err_set(err, SIFT_EINVAL, "graph: a name, a state type and its size are required");
        return NULL;
    }
    for (int i = 0; i < nfields; i++) {
        const sift_graph_field *f = &fields[i];
        if (!f->name || !f->ops || f->offset + f->size > state_size ||
            (f->ops->size && f->ops->size != f->size)) {
            sift_err_set(err, SIFT_EINVAL,
                         "graph \"%s\": field \"%s\" is outside %s or has the wrong size for "
                         "its kind",
                         name, f->name ? f->name : "(null)", state_type);
            return NULL;
        }
    }
    sift_arena *a = sift_arena_new(0);
    sift_graph *g = a ? sift_arena_calloc(a, 1, sizeof(*g)) : NULL;
    if (!g)
        goto oom;
    g->arena = a;
    g->state_size = state_size;
    g->name = sift_arena_strdup(a, name);
    g->state_type = sift_arena_strdup(a, state_type);
    g->fields = nfields ? sift_arena_memdup(a, fields, sizeof(*fields) * (size_t)nfields) : NULL;
    g->nfields = nfields;
    if (!g->name || !g->state_type || (nfields && !g->fields))
        goto oom;
    return g;
oom:
    sift_arena_free(a);
    sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory", name);
    return NULL;
}

void sift_graph_free(sift_graph *g)
{
    if (!g)
        return;
    sift_free(g->nodes);
    sift_free(g->edges);
    sift_arena_free(g->arena);
}

const char *sift_graph_name(const sift_graph *g)
{
    return g->name;
}

int sift_graph_find(const sift_graph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static int add_node(sift_graph *g, const char *name, sift_graph_node_fn fn, const sift_graph *sub,
                    size_t state_size, const char *state_type, void *udata)
{
    if (g->compiled)
        return build_fail(g, SIFT_ESTATE, "graph \"%s\": node \"%s\" added after compile", g->name,
                          name ? name : "");
    if (!name || !*name || strcmp(name, SIFT_GRAPH_START) == 0 || strcmp(name, SIFT_GRAPH_END) == 0)
        return build_fail(g, SIFT_EINVAL, "graph \"%s\": \"%s\" is not a valid node name", g->name,
                          name ? name : "");
    if (sift_graph_find(g, name) >= 0)
        return build_fail(g, SIFT_EINVAL, "graph \"%s\": duplicate node \"%s\"", g->name, name);
    if (state_size != g->state_size || strcmp(state_type, g->state_type) != 0) {
        if (!g->build_err.code)
            sift_err_set(&g->build_err, SIFT_EINVAL,
                         "graph \"%s\": node \"%s\" takes %s but the graph's state is %s", g->name,
                         name, state_type, g->state_type);
        return SIFT_EINVAL;
    }
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 8;
        struct gnode *n = sift_realloc(g->nodes, sizeof(*n) * (size_t)cap);
        if (!n)
            return build_fail(g, SIFT_ENOMEM, "graph \"%s\": out of memory adding \"%s\"", g->name,
                              name);
        g->nodes = n;
        g->cap_nodes = cap;
    }
    char *copy = sift_arena_strdup(g->arena, name);
    if (!copy)
        return build_fail(g, SIFT_ENOMEM, "graph \"%s\": out of memory adding \"%s\"", g->name,
                          name);
    struct gnode *n = &g->nodes[g->nnodes++];
    memset(n, 0, sizeof(*n));
    n->name = copy;
    n->fn = fn;
    n->sub = sub;
    n->udata = udata;
    return 0;
}

int sift_graph_add_node(sift_graph *g, const char *name, const sift_graph_node_def *def,
                        void *udata)
{
    if (!def || !def->fn)
        return build_fail(g, SIFT_EINVAL, "graph \"%s\": node \"%s\" has no function", g->name,
                          name ? name : "");
    return add_node(g, name, def->fn, NULL, def->state_size, def->state_type, udata);
}

int sift_graph_add_subgraph(sift_graph *g, const char *name, const sift_graph *child)
{
    if (!child || !child->compiled)
        return build_fail(g, SIFT_EINVAL,
                          "graph \"%s\": subgraph node \"%s\" needs a compiled graph", g->name,
                          name ? name : "");
    return add_node(g, name, sift_graph_subgraph_node, child, child->state_size, child->state_type,
                    NULL);
}

static int add_edge(sift_graph *g, const char *from, const char *to, int branch)
{
    if (g->compiled)
        return build_fail(g, SIFT_ESTATE, "graph \"%s\": edge from \"%s\" added after compile",
                          g->name, from ? from : "");
    if (!from || !to)
        return build_fail(g, SIFT_EINVAL, "graph \"%s\": edge needs two names (from \"%s\")",
                          g->name, from ? from : "(null)");
    if (g->nedges == g->cap_edges) {
        int cap = g->cap_edges ? g->cap_edges * 2 : 8;
        struct gedge *e = sift_realloc(g->edges, sizeof(*e) * (size_t)cap);
        if (!e)
            return build_fail(g, SIFT_ENOMEM,
                              "graph \"%s\": out of memory adding an edge from \"%s\"", g->name,
                              from);
        g->edges = e;
        g->cap_edges = cap;
    }
    struct gedge e = {.from = sift_arena_strdup(g->arena, from),
                      .to = sift_arena_strdup(g->arena, to),
                      .branch = branch};
    if (!e.from || !e.to)
        return build_fail(g, SIFT_ENOMEM, "graph \"%s\": out of memory adding an edge from \"%s\"",
                          g->name, from);
    g->edges[g->nedges++] = e;
    return 0;
}

int sift_graph_add_edge(sift_graph *g, const char *from, const char *to)
{
    return add_edge(g, from, to, -1);
}

int sift_graph_add_branch(sift_graph *g, const char *from, const sift_graph_router_def *router,
                          void *udata, const char *const *targets)
{
    if (g->compiled)
        return build_fail(g, SIFT_ESTATE, "graph \"%s\": branch from \"%s\" added after compile",
                          g->name, from ? from : "");
    if (!from || !router || !router->fn || !targets || !targets[0])
        return build_fail(g, SIFT_EINVAL,
                          "graph \"%s\": branch from \"%s\" needs a router and targets", g->name,
                          from ? from : "(null)");
    if (router->state_size != g->state_size || strcmp(router->state_type, g->state_type) != 0)
        return build_fail(g, SIFT_EINVAL,
                          "graph \"%s\": the router of \"%s\" takes another state type", g->name,
                          from);
    struct gbranch *b = sift_arena_calloc(g->arena, 1, sizeof(*b));
    if (!b)
        return build_fail(g, SIFT_ENOMEM, "graph \"%s\": out of memory adding a branch from \"%s\"",
                          g->name, from);
    b->fn = router->fn;
    b->udata = udata;
    b->next = g->branches;
    g->branches = b;
    int id = g->nbranches++;
    b->id = id;
    for (int i = 0; targets[i]; i++) {
        int rc = add_edge(g, from, targets[i], id);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- compile ---- */

static int resolve(const sift_graph *g, const char *name, int allow_end)
{
    if (allow_end && strcmp(name, SIFT_GRAPH_END) == 0)
        return SIFT_GRAPH_END_ID;
    return sift_graph_find(g, name);
}

/* Marks every node reachable from `seen` nodes already marked, walking edges
 * forward (dir > 0) or backward. */
static void flood(const sift_graph *g, char *seen, int forward)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        for (int i = 0; i < g->nedges; i++) {
            const struct gedge *e = &g->edges[i];
            if (e->from_id < 0 || e->to_id < 0)
                continue;
            int a = forward ? e->from_id : e->to_id, b = forward ? e->to_id : e->from_id;
            if (seen[a] && !seen[b]) {
                seen[b] = 1;
                changed = 1;
            }
        }
    }
}

int sift_graph_compile(sift_graph *g, sift_err *err)
{
    if (g->compiled)
        return 0;
    if (g->build_err.code)
        return sift_err_copy(err, &g->build_err);
    int nentry = 0;
    for (int i = 0; i < g->nedges; i++) {
        struct gedge *e = &g->edges[i];
        if (strcmp(e->from, SIFT_GRAPH_START) == 0) {
            e->from_id = SIFT_GRAPH_START_ID;
            nentry++;
            if (e->branch >= 0)
                return sift_err_set(err, SIFT_EINVAL,
                                    "graph \"%s\": a branch cannot start at START; add an entry "
                                    "node",
                                    g->name);
        } else if ((e->from_id = sift_graph_find(g, e->from)) < 0) {
            return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": edge from unknown node \"%s\"",
                                g->name, e->from);
        }
        if ((e->to_id = resolve(g, e->to, 1)) == -1) {
            if (e->branch >= 0)
                return sift_err_set(err, SIFT_EINVAL,
                                    "graph \"%s\": branch target \"%s\" of node \"%s\" does not "
                                    "exist",
                                    g->name, e->to, e->from);
            return sift_err_set(err, SIFT_EINVAL,
                                "graph \"%s\": edge from \"%s\" to unknown node \"%s\"", g->name,
                                e->from, e->to);
        }
        if (e->from_id == SIFT_GRAPH_START_ID && e->to_id == SIFT_GRAPH_END_ID)
            return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": an edge from START to END",
                                g->name);
    }
    if (nentry == 0)
        return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": no edge from START", g->name);

    /* Per node: its static successors and at most one branch. */
    for (int i = 0; i < g->nnodes; i++) {
        g->nodes[i].nout = 0;
        g->nodes[i].branch = NULL;
    }
    for (int i = 0; i < g->nedges; i++) {
        const struct gedge *e = &g->edges[i];
        if (e->from_id < 0)
            continue;
        struct gnode *n = &g->nodes[e->from_id];
        if (e->branch < 0) {
            n->nout++;
            continue;
        }
        struct gbranch *b = g->branches;
        while (b->id != e->branch)
            b = b->next;
        if (n->branch && n->branch != b)
            return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": node \"%s\" has two branches",
                                g->name, n->name);
        n->branch = b;
    }
    for (int i = 0; i < g->nnodes; i++) {
        struct gnode *n = &g->nodes[i];
        if (n->nout == 0 && !n->branch)
            return sift_err_set(err, SIFT_EINVAL,
                                "graph \"%s\": node \"%s\" has no outgoing edge (add an edge to "
                                "END if it is the last)",
                                g->name, n->name);
        n->out = n->nout ? sift_arena_calloc(g->arena, (size_t)n->nout, sizeof(int)) : NULL;
        if (n->nout && !n->out)
            return sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory", g->name);
        n->nout = 0;
    }
    g->entry = sift_arena_calloc(g->arena, (size_t)nentry, sizeof(int));
    if (!g->entry)
        return sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory", g->name);
    g->nentry = 0;
    for (int i = 0; i < g->nedges; i++) {
        const struct gedge *e = &g->edges[i];
        if (e->from_id == SIFT_GRAPH_START_ID)
            g->entry[g->nentry++] = e->to_id;
        else if (e->branch < 0)
            g->nodes[e->from_id].out[g->nodes[e->from_id].nout++] = e->to_id;
    }

    /* Reachability: forward from the entry nodes, backward from END. The
     * first offending node in the order they were added is named, so the
     * message is stable. */
    char *seen = sift_calloc((size_t)g->nnodes + 1, 1);
    if (!seen)
        return sift_err_set(err, SIFT_ENOMEM, "graph \"%s\": out of memory", g->name);
    for (int i = 0; i < g->nentry; i++)
        if (g->entry[i] >= 0)
            seen[g->entry[i]] = 1;
    flood(g, seen, 1);
    for (int i = 0; i < g->nnodes; i++) {
        if (!seen[i]) {
            sift_free(seen);
            return sift_err_set(err, SIFT_EINVAL,
                                "graph \"%s\": node \"%s\" is unreachable from START", g->name,
                                g->nodes[i].name);
        }
    }
    memset(seen, 0, (size_t)g->nnodes + 1);
    for (int i = 0; i < g->nedges; i++)
        if (g->edges[i].to_id == SIFT_GRAPH_END_ID && g->edges[i].from_id >= 0)
            seen[g->edges[i].from_id] = 1;
    flood(g, seen, 0);
    for (int i = 0; i < g->nnodes; i++) {
        if (!seen[i]) {
            sift_free(seen);
            return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": no path from \"%s\" to END",
                                g->name, g->nodes[i].name);
        }
    }
    sift_free(seen);
    g->compiled = 1;
    return 0;
}

/* ---- state helpers ---- */

void sift_graph_state_dispose(const sift_graph *g, void *state)
{
    for (int i = 0; i < g->nfields; i++) {
        const sift_graph_field *f = &g->fields[i];
        char *p = (char *)state + f->offset;
        if (f->ops->dispose)
            f->ops->dispose(p);
        memset(p, 0, f->size);
    }
}

void sift_graph_state_free_copy(const sift_graph *g, void *copy)
{
    if (!copy)
        return;
    sift_graph_state_dispose(g, copy);
    sift_free(copy);
}

void *sift_graph_state_copy(const sift_graph *g, const void *state)
{
    char *c = sift_malloc(g->state_size);
    if (!c)
        return NULL;
    memcpy(c, state, g->state_size);
    for (int i = 0; i < g->nfields; i++) {
        const sift_graph_field *f = &g->fields[i];
        if (!f->ops->copy)
            continue;
        if (f->ops->copy(c + f->offset, (const char *)state + f->offset)) {
            /* Fields before i are deep copies; from i on they still alias the
             * source and must not be disposed. */
            for (int j = 0; j < i; j++)
                if (g->fields[j].ops->dispose)
                    g->fields[j].ops->dispose(c + g->fields[j].offset);
            sift_free(c);
            return NULL;
        }
    }
    return c;
}

int sift_graph_state_merge(const sift_graph *g, void *dst, const void *base, const void *branch)
{
    for (int i = 0; i < g->nfields; i++) {
        const sift_graph_field *f = &g->fields[i];
        char *d = (char *)dst + f->offset;
        const char *b = (const char *)base + f->offset, *br = (const char *)branch + f->offset;
        int rc;
        if (f->ops->merge) {
            rc = f->ops->merge(d, b, br);
        } else {
            int same = f->ops->equal ? f->ops->equal(b, br) : memcmp(b, br, f->size) == 0;
            if (same)
                continue;
            if (f->ops->copy) {
                /* Copy first so a failure leaves dst as it was. */
                char *tmp = sift_malloc(f->size);
                rc = tmp ? f->ops->copy(tmp, br) : SIFT_ENOMEM;
                if (!rc) {
                    if (f->ops->dispose)
                        f->ops->dispose(d);
                    memcpy(d, tmp, f->size);
                }
                sift_free(tmp);
            } else {
                memcpy(d, br, f->size);
                rc = 0;
            }
        }
        if (rc)
            return rc;
    }
    return 0;
}

int sift_graph_state_to_json(const sift_graph *g, const void *state, sift_buf *out)
{
    int rc = sift_buf_putc(out, '{');
    for (int i = 0; !rc && i < g->nfields; i++) {
        const sift_graph_field *f = &g->fields[i];
        rc = sift_buf_printf(out, "%s\"", i ? "," : "");
        if (!rc)
            rc = sift_buf_json_escape(out, f->name, strlen(f->name));
        if (!rc)
            rc = sift_buf_puts(out, "\":");
        if (!rc)
            rc = f->ops->to_json((const char *)state + f->offset, out);
    }
    if (!rc)
        rc = sift_buf_putc(out, '}');
    return rc;
}

int sift_graph_state_from_json(const sift_graph *g, const cJSON *obj, void *state, sift_err *err)
{
    if (!cJSON_IsObject(obj))
        return sift_err_set(err, SIFT_EINVAL, "graph \"%s\": the saved state is not a JSON object",
                            g->name);
    for (int i = 0; i < g->nfields; i++) {
        const sift_graph_field *f = &g->fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
        if (!v)
            continue;
        char *p = (char *)state + f->offset;
        if (f->ops->dispose)
            f->ops->dispose(p);
        memset(p, 0, f->size);
        int rc = f->ops->from_json(p, v);
        if (rc)
            return sift_err_set(err, rc,
                                "graph \"%s\": cannot read field \"%s\" of the saved state%s",
                                g->name, f->name, rc == SIFT_ENOMEM ? " (out of memory)" : "");
    }
    return 0;
}
