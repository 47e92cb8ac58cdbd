/* sift_graph: a state-graph engine over a user-defined state struct.
 *
 * A graph is a set of named nodes joined by edges. Every node is an
 * asynchronous function that receives the run's state (a plain C struct of the
 * caller's) and reports once with sift_graph_node_done. Edges are static
 * (sift_graph_add_edge) or chosen at run time by a router (sift_graph_add_branch).
 *
 * Execution proceeds in steps. A step runs every node of the current frontier;
 * the next frontier is the union of their successors, in order, without
 * duplicates (SIFT_GRAPH_END adds nothing). The run is done when the frontier is
 * empty. A frontier of more than one node is a fan-out: each node works on its
 * own copy of the state, and when all of them have reported (fan-in) each copy
 * is merged into the run's state in frontier order through the per-field
 * reducers (replace, sum, append...), so the result is deterministic. A node
 * reached from several branches of a fan-out runs once, in the next step.
 * Cycles are allowed; a run stops with an error after `max_steps` steps.
 *
 * sift_graph_compile validates the graph before it can run and names the
 * offending node in its message. A compiled graph is immutable and can serve
 * any number of concurrent runs on one loop; it can also be a node of another
 * graph with the same state type (sift_graph_add_subgraph).
 *
 * With a checkpointer, the state and the next frontier are saved after every
 * step (and once before the first), so sift_graph_resume continues a run that
 * crashed, was cancelled or was interrupted (interrupt_before/after: human in
 * the loop), optionally with a state the caller edited.
 *
 * Not thread-safe: a run belongs to the loop of its ctx. */
#ifndef SIFT_GRAPH_H
#define SIFT_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/err.h"

struct cJSON;

/* Names of the two virtual nodes. */
#define SIFT_GRAPH_START "__start__"
#define SIFT_GRAPH_END "__end__"

/* Steps a run may take when the options do not say. */
#define SIFT_GRAPH_DEFAULT_MAX_STEPS 25

/* ---- state fields ---- */

/* How one member of the state struct is copied, merged and (de)serialised.
 * Every callback gets pointers to the member itself (not to the struct). */
typedef struct sift_graph_field_ops {
    /* sizeof the member these ops expect (0: any); checked by sift_graph_new. */
    size_t size;
    /* Deep copy into uninitialised `dst`. NULL: a byte copy. 0 or SIFT_ENOMEM. */
    int (*copy)(void *dst, const void *src);
    /* Releases what the member owns (it may be all zero). NULL: nothing. */
    void (*dispose)(void *field);
    /* The reducer: merges what one fan-out branch did to the member into
     * `dst`, given the value the branch started from (`base`). NULL: replace
     * dst with branch's value when it differs from base (equal, below). */
    int (*merge)(void *dst, const void *base, const void *branch);
    /* Non-zero when a and b are equal (NULL: byte comparison). */
    int (*equal)(const void *a, const void *b);
    /* Appends the member as one JSON value. Required for checkpoints. */
    int (*to_json)(const void *field, sift_buf *out);
    /* Reads the member from a JSON value into a zeroed member. 0, SIFT_EINVAL
     * (wrong JSON type) or SIFT_ENOMEM. Required for checkpoints. */
    int (*from_json)(void *field, const struct cJSON *json);
} sift_graph_field_ops;

typedef struct sift_graph_field {
    const char *name; /* key in the checkpoint JSON */
    size_t offset;
    size_t size;
    const sift_graph_field_ops *ops;
} sift_graph_field;

/* A field entry for member `member` of state type T (e.g. struct my_state). */
#define SIFT_GRAPH_FIELD(T, member, ops_)                                                          \
    {                                                                                              \
        .name = #member, .offset = offsetof(T, member), .size = sizeof(((T *)0)->member),          \
        .ops = &(ops_)                                                                             \
    }

/* Built-in field kinds. */
extern const sift_graph_field_ops sift_graph_i64;     /* int64_t, reducer: replace */
extern const sift_graph_field_ops sift_graph_i64_sum; /* int64_t, reducer: sum of the changes */
extern const sift_graph_field_ops sift_graph_str;     /* char * owned (sift_malloc), replace */
extern const sift_graph_field_ops sift_graph_strlist_append; /* sift_graph_strlist, append */

/* A list of owned strings whose reducer appends what each branch added. */
typedef struct sift_graph_strlist {
    char **items;
    size_t len;
    size_t cap;
} sift_graph_strlist;

/* Appends a copy of s. 0 or SIFT_ENOMEM. */
int sift_graph_strlist_push(sift_graph_strlist *l, const char *s);

/* Replaces the string member *dst with a copy of s (NULL allowed). 0 or SIFT_ENOMEM. */
int sift_graph_str_set(char **dst, const char *s);

/* ---- building a graph ---- */

typedef struct sift_graph sift_graph;
typedef struct sift_graph_node_run sift_graph_node_run;

/* The generic node and router types; use the typed macros below. A router
 * writes up to `max` target names into `out` and returns how many (one: a
 * branch; several: a fan-out; zero: nothing follows) or a negative code. */
typedef void (*sift_graph_node_fn)(sift_graph_node_run *run, void *state);
typedef int (*sift_graph_router_fn)(const void *state, void *udata, const char **out, int max);

typedef struct sift_graph_node_def {
    sift_graph_node_fn fn;
    size_t state_size;
    const char *state_type;
} sift_graph_node_def;

typedef struct sift_graph_router_def {
    sift_graph_router_fn fn;
    size_t state_size;
    const char *state_type;
} sift_graph_router_def;

/* At file scope: defines `static const sift_graph_node_def func_node` for a
 * node function that must already be declared as
 *
 *     void func(sift_graph_node_run *run, T *state);
 *
 * Any other signature is a compile error naming the expected one. The engine
 * calls it through a generated wrapper, never through a cast pointer. */
/* T is a type name, which cannot be parenthesised. */
// NOLINTBEGIN(bugprone-macro-parentheses)
#define SIFT_GRAPH_NODE_FN(func, T)                                                                \
    _Static_assert(                                                                                \
        __builtin_types_compatible_p(__typeof__(&(func)), void (*)(sift_graph_node_run *, T *)),   \
        "graph node function " #func " must be declared as: void " #func                           \
        "(sift_graph_node_run *run, " #T " *state)");                                              \
    static void func##__graph_node(sift_graph_node_run *run, void *state)                          \
    {                                                                                              \
        func(run, (T *)state);                                                                     \
    }                                                                                              \
    __attribute__((unused)) static const sift_graph_node_def func##_node = {                       \
        .fn = func##__graph_node, .state_size = sizeof(T), .state_type = #T}

/* At file scope: defines `static const sift_graph_router_def func_router` for
 *
 *     int func(const T *state, void *udata, const char **out, int max); */
#define SIFT_GRAPH_ROUTER_FN(func, T)                                                              \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&(func)),                               \
                                                int (*)(const T *, void *, const char **, int)),   \
                   "graph router " #func " must be declared as: int " #func "(const " #T           \
                   " *state, void *udata, const char **out, int max)");                            \
    static int func##__graph_router(const void *state, void *udata, const char **out, int max)     \
    {                                                                                              \
        return func((const T *)state, udata, out, max);                                            \
    }                                                                                              \
    __attribute__((unused)) static const sift_graph_router_def func##_router = {                   \
        .fn = func##__graph_router, .state_size = sizeof(T), .state_type = #T}
// NOLINTEND(bugprone-macro-parentheses)

/* A new, empty graph called `name` over a state of `state_size` bytes whose
 * type is named `state_type`, with `nfields` fields (copied; the ops must
 * outlive the graph). NULL when out of memory or when a field is out of the
 * struct or of the wrong size for its ops (`err` says which). */
sift_graph *sift_graph_new(const char *name, size_t state_size, const char *state_type,
                           const sift_graph_field *fields, int nfields, sift_err *err);

/* sift_graph_new for state type T with a field array. */
#define SIFT_GRAPH_NEW(name, T, fields, err)                                                       \
    sift_graph_new((name), sizeof(T), #T, (fields), (int)(sizeof(fields) / sizeof((fields)[0])),   \
                   (err))

/* Releases a graph (NULL: no-op). No run or parent graph may still use it. */
void sift_graph_free(sift_graph *g);

/* Adds a node. The def's state type must be the graph's. Errors (also kept for
 * sift_graph_compile): SIFT_EINVAL for an empty, reserved or duplicate name or
 * another state type, SIFT_ESTATE once compiled, SIFT_ENOMEM. `udata` is
 * given to the node through sift_graph_node_udata. */
int sift_graph_add_node(sift_graph *g, const char *name, const sift_graph_node_def *def,
                        void *udata);

/* Adds a node that runs the compiled graph `child` on the state (the same state
 * type) under the node's context, with the parent run's callbacks and step
 * limit. The child must outlive g. Errors as sift_graph_add_node. */
int sift_graph_add_subgraph(sift_graph *g, const char *name, const sift_graph *child);

/* An edge from `from` (a node or SIFT_GRAPH_START) to `to` (a node or
 * SIFT_GRAPH_END). Several edges from one node fan out. Names are checked by
 * sift_graph_compile, so nodes may be added in any order. */
int sift_graph_add_edge(sift_graph *g, const char *from, const char *to);

/* A conditional branch after node `from`: after it runs, the router picks
 * among `targets` (a NULL-terminated list of node names or SIFT_GRAPH_END;
 * copied). The router's def must be for the graph's state type. */
int sift_graph_add_branch(sift_graph *g, const char *from, const sift_graph_router_def *router,
                          void *udata, const char *const *targets);

/* Validates and freezes the graph. SIFT_EINVAL with a message naming the node
 * for: duplicate names, an edge to or from an unknown node, a branch target
 * that does not exist, no edge from START, a node with no outgoing edge, a node
 * unreachable from START, a node with no path to END. Also reports the first
 * error of an earlier add_* call. Compiling twice is a no-op. */
int sift_graph_compile(sift_graph *g, sift_err *err);

const char *sift_graph_name(const sift_graph *g);

/* ---- inside a node ---- */

/* Reports the node's outcome (0 or a negative code, with an optional
 * printf-style message). Exactly once per run of the node, also after its
 * context is cancelled; a second call aborts. May be called before the node
 * function returns. */
void sift_graph_node_done(sift_graph_node_run *run, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The node's own context (a child of the run's): register cancel hooks on it. */
sift_ctx *sift_graph_node_ctx(const sift_graph_node_run *run);
void *sift_graph_node_udata(const sift_graph_node_run *run);
const char *sift_graph_node_name(const sift_graph_node_run *run);
/* The step number (1 for the first step of a fresh run). */
int64_t sift_graph_node_step(const sift_graph_node_run *run);

/* ---- checkpoints ---- */

typedef struct sift_checkpointer sift_checkpointer;

/* One saved step: `step` completed steps, `next` the frontier to run (a JSON
 * array of node names, "[]" when finished), `state` the state as a JSON object
 * keyed by field name. Strings allocated with sift_malloc. */
typedef struct sift_checkpoint {
    int64_t step;
    char *next;
    char *state;
} sift_checkpoint;

/* Frees the strings of a checkpoint and zeroes it. */
void sift_checkpoint_clear(sift_checkpoint *c);

/* A checkpoint store. The calls are synchronous and run on the loop thread, so
 * an implementation must be short (a local SQLite write is); an asynchronous
 * store (PostgreSQL) will get its own interface. */
typedef struct sift_checkpointer_ops {
    /* Saves a checkpoint for thread_id, replacing one with the same step. */
    int (*put)(sift_checkpointer *cp, const char *thread_id, const sift_checkpoint *c,
               sift_err *err);
    /* Loads the checkpoint with the highest step: 0, SIFT_ENOTFOUND, or an error. */
    int (*get_latest)(sift_checkpointer *cp, const char *thread_id, sift_checkpoint *out,
                      sift_err *err);
    void (*close)(sift_checkpointer *cp);
} sift_checkpointer_ops;

struct sift_checkpointer {
    const sift_checkpointer_ops *ops;
};

/* A checkpointer in the SQLite file `path` (created if missing), in its own
 * table `checkpoints(thread_id, step, next, state, created_at)`. NULL on error. */
sift_checkpointer *sift_checkpointer_sqlite_open(const char *path, sift_err *err);

/* Closes any checkpointer (NULL: no-op). */
void sift_checkpointer_close(sift_checkpointer *cp);

/* ---- running ---- */

/* What a node did, for logs, metrics and tracing. */
typedef struct sift_graph_event {
    const char *graph;
    const char *node;
    int64_t step;
    int64_t duration_us; /* on_end and on_error only */
    int code;            /* on_end and on_error only */
    const char *msg;     /* on_error only */
} sift_graph_event;

/* Per-node callbacks (any may be NULL). They may cancel the run's context. */
typedef struct sift_graph_callbacks {
    void (*on_start)(const sift_graph_event *ev, void *udata);
    void (*on_end)(const sift_graph_event *ev, void *udata); /* also after errors */
    void (*on_error)(const sift_graph_event *ev, void *udata);
    void *udata;
} sift_graph_callbacks;

typedef struct sift_graph_opts {
    int max_steps;                         /* steps this call may run; <= 0: 25 */
    sift_checkpointer *checkpointer;       /* NULL: no checkpoints */
    const char *thread_id;                 /* required with a checkpointer (copied) */
    const char *const *interrupt_before;   /* NULL-terminated node names, or NULL */
    const char *const *interrupt_after;    /* NULL-terminated node names, or NULL */
    const sift_graph_callbacks *callbacks; /* array of ncallbacks */
    int ncallbacks;
    /* sift_graph_resume only: non-zero to continue with *state as given (e.g.
     * loaded with sift_graph_load and edited) instead of the saved state. */
    int resume_with_state;
} sift_graph_opts;

enum sift_graph_status {
    SIFT_GRAPH_DONE = 0,    /* reached END */
    SIFT_GRAPH_INTERRUPTED, /* stopped at an interrupt; resume to continue */
    SIFT_GRAPH_FAILED,      /* code says why */
};

typedef struct sift_graph_result {
    enum sift_graph_status status;
    int code;         /* 0 unless FAILED */
    const char *msg;  /* why it failed or where it was interrupted */
    const char *node; /* the node it failed or was interrupted at, or NULL */
    int64_t step;     /* completed steps, counting those before a resume */
    int steps_run;    /* steps run by this call */
} sift_graph_result;

/* Fires exactly once per run; the result is valid only during the call. */
typedef void (*sift_graph_done_fn)(const sift_graph_result *res, void *udata);

/* Runs compiled graph g on `state` (the caller's struct, which must stay valid
 * until done fires) under ctx. Returns 0 when started: done then fires exactly
 * once, possibly before this returns (all nodes synchronous); the run's memory
 * goes on a later loop iteration. A negative code (SIFT_ESTATE: not compiled,
 * SIFT_EINVAL: bad options, SIFT_ENOMEM, a checkpointer error) means nothing
 * ran and done will not fire. Cancelling ctx (or its deadline) cancels the
 * nodes in flight through their contexts; no node starts afterwards and done
 * reports the ctx's code. */
int sift_graph_run(const sift_graph *g, sift_ctx *ctx, void *state, const sift_graph_opts *opts,
                   sift_graph_done_fn done, void *udata, sift_err *err);

/* Continues the thread opts->thread_id from its latest checkpoint: loads the
 * saved state into *state (unless opts->resume_with_state) and runs the saved
 * frontier. Interrupts before the nodes of that first frontier are skipped
 * (they are what the run was interrupted at). SIFT_ENOTFOUND when the thread
 * has no checkpoint; otherwise as sift_graph_run. */
int sift_graph_resume(const sift_graph *g, sift_ctx *ctx, void *state, const sift_graph_opts *opts,
                      sift_graph_done_fn done, void *udata, sift_err *err);

/* Loads the latest saved state of thread_id into *state (fields in the
 * checkpoint are replaced), e.g. to edit it before resuming. */
int sift_graph_load(const sift_graph *g, sift_checkpointer *cp, const char *thread_id, void *state,
                    sift_err *err);

/* Releases what the state's fields own (dispose ops) and zeroes them. */
void sift_graph_state_dispose(const sift_graph *g, void *state);

#endif
