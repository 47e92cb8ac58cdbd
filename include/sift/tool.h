/* Typed tools: argument fields declared once, and everything else generated.
 *
 * A tool's arguments are a list of fields. From that one list come the C
 * struct the tool function receives, the JSON Schema sent to the model, and
 * the validating decoder that turns the model's argument text into the struct,
 * so the three cannot drift apart. A bad argument becomes a message for the
 * model that names the field and the rule ("location: must be one of HAN, DAD,
 * SGN"), never a crash.
 *
 * Declaring arguments (an X-macro list: one F(...) line per field):
 *
 *     #define SEARCH_FILTERS_FIELDS(F)                                          \
 *         F(STRING, brand, "Brand name", SIFT_OPTIONAL, .max_len = 64)          \
 *         F(NUMBER, price_max, "Highest price in VND", SIFT_OPTIONAL, SIFT_MIN(0)) \
 *         F(BOOLEAN, in_stock, "Only products in stock", SIFT_OPTIONAL)
 *     SIFT_TOOL_ARGS(search_filters, SEARCH_FILTERS_FIELDS);
 *
 *     #define SEARCH_PRODUCTS_FIELDS(F)                                         \
 *         F(STRING, query, "What the shopper wants", SIFT_REQUIRED, .min_len = 1) \
 *         F(OBJECT, filters, "Structured filters", SIFT_OPTIONAL, search_filters) \
 *         F(STRINGS, colours, "Acceptable colours", SIFT_OPTIONAL, .max_items = 5) \
 *         F(INTEGER, k, "Number of results", SIFT_OPTIONAL, SIFT_RANGE(1, 50))
 *     SIFT_TOOL_ARGS(search_products_args, SEARCH_PRODUCTS_FIELDS);
 *
 * F(TYPE, name, description, SIFT_REQUIRED or SIFT_OPTIONAL, bounds...), with
 * TYPE, SIFT_REQUIRED and SIFT_OPTIONAL written literally (they are pasted
 * into macro names, not defined), bounds as designated initializers of
 * sift_field, and TYPE one of:
 *
 *     STRING   const char *      .min_len, .max_len (bytes; max 0 = no limit)
 *     ENUM     const char *      .values = "HAN,DAD,SGN" (the value, one of these)
 *     INTEGER  int64_t           SIFT_MIN(x), SIFT_MAX(x), SIFT_RANGE(lo, hi)
 *     NUMBER   double            SIFT_MIN(x), SIFT_MAX(x), SIFT_RANGE(lo, hi)
 *     BOOLEAN  bool
 *     STRINGS  sift_strings      .min_items, .max_items, and .min_len/.max_len per item
 *     OBJECT   struct <type>     the nested args type, declared before with SIFT_TOOL_ARGS
 *
 * An optional field also gets a presence flag `bool has_<name>`; an absent
 * field (or a null) leaves the member zero. The example declares:
 *
 *     struct search_products_args {
 *         const char *query;
 *         bool has_filters; struct search_filters filters;
 *         bool has_colours; sift_strings colours;
 *         bool has_k; int64_t k;
 *     };
 *
 * and the descriptor sift_args_schema(search_products_args). An object has 1 to
 * 32 fields. Decoded strings and arrays live in the run's arena. A tool
 * function has exactly this signature, which
 * SIFT_TOOL_DEFINE checks at compile time:
 *
 *     static void search_products(sift_tool_job *job, const struct search_products_args *args);
 *     SIFT_TOOL_DEFINE(search_products, "Searches the catalog", search_products_args,
 *                      search_products);
 *
 * which defines `static const sift_tool search_products_tool`. The same descriptors
 * can be built at run time (tools declared in sift.yaml): fill sift_field
 * arrays and call sift_schema_layout.
 *
 * The schema is the subset OpenAI accepts in strict mode: every property is
 * listed in "required", an optional field is a union with null, objects have
 * "additionalProperties": false, and no length or range keywords (not every
 * OpenAI-compatible server accepts them): bounds are written into the field's
 * description and enforced by the decoder. */
#ifndef SIFT_TOOL_H
#define SIFT_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sift/arena.h"
#include "sift/buf.h"
#include "sift/ctx.h"
#include "sift/err.h"

enum sift_field_type {
    SIFT_FIELD_STRING = 1,
    SIFT_FIELD_ENUM,
    SIFT_FIELD_INTEGER,
    SIFT_FIELD_NUMBER,
    SIFT_FIELD_BOOLEAN,
    SIFT_FIELD_STRINGS,
    SIFT_FIELD_OBJECT,
};

/* The decoded value of a STRINGS field: `len` strings, in the run's arena. */
typedef struct sift_strings {
    const char **items;
    size_t len;
} sift_strings;

typedef struct sift_schema sift_schema;

/* One argument field. The macros fill these; a field built at run time sets
 * everything but offset and has_offset, which sift_schema_layout computes. */
typedef struct sift_field {
    const char *name;          /* [A-Za-z0-9_-], at most 64 bytes */
    const char *description;   /* for the model; may be NULL */
    const char *values;        /* ENUM: "A,B,C" */
    const sift_schema *object; /* OBJECT: the nested object's fields */
    size_t offset;             /* of the value in the args struct */
    size_t has_offset;         /* of the `bool has_<name>` flag; optional fields only */
    /* Bounds, all inclusive. A zero max_len or max_items means no limit. */
    size_t min_len, max_len;     /* STRING, and each item of STRINGS, in bytes */
    size_t min_items, max_items; /* STRINGS */
    double min, max;             /* INTEGER, NUMBER, when has_min / has_max */
    enum sift_field_type type;
    bool required;
    bool has_min, has_max;
} sift_field;

/* The fields of one object (a tool's arguments or a nested object) and the
 * layout of the C struct they decode into. */
struct sift_schema {
    const char *name; /* the C type name, or any label for run-time schemas */
    size_t size;      /* sizeof the struct */
    size_t align;     /* its alignment */
    const sift_field *fields;
    size_t nfields;
};

/* Limits checked by sift_schema_check (OpenAI's limits for strict schemas). */
#define SIFT_SCHEMA_MAX_FIELDS 100 /* properties in all objects of one schema */
#define SIFT_SCHEMA_MAX_DEPTH 5    /* nested objects below the arguments object */

/* Bounds for INTEGER and NUMBER fields. Integers must stay within +-2^53,
 * the range in which a JSON number is exact. */
#define SIFT_MIN(x) .has_min = true, .min = (x)
#define SIFT_MAX(x) .has_max = true, .max = (x)
#define SIFT_RANGE(lo, hi) SIFT_MIN(lo), SIFT_MAX(hi)

/* The descriptor of an args type declared with SIFT_TOOL_ARGS. */
#define sift_args_schema(T) (&T##__schema)

/* Declares `struct T` and its descriptor from the field list LIST (see the
 * top of this file). Static data, so it may sit in a header. */
#define SIFT_TOOL_ARGS(T, LIST) SIFT__APPLY_ARGS(SIFT__ARGS, (T LIST(SIFT__TUPLE)))

/* ---- tools ---- */

typedef struct sift_tool sift_tool;
typedef struct sift_tool_job sift_tool_job;

/* The generic form of a tool function: `args` points to the decoded struct. */
typedef void (*sift_tool_fn)(sift_tool_job *job, const void *args);

struct sift_tool {
    const char *name;        /* [A-Za-z0-9_-], 1 to 64 bytes */
    const char *description; /* for the model */
    const sift_schema *args;
    sift_tool_fn fn;
    void *udata; /* the tool's own data (a run-time tool's configuration) */
};

/* Defines `static const sift_tool NAME_tool`, a tool called NAME whose arguments are
 * `struct T` and whose function is `func`. `func` must already be declared as
 *
 *     void func(sift_tool_job *job, const struct T *args);
 *
 * and any other signature is a compile error that names the expected one. The
 * registry calls it through a small generated wrapper, never through a cast
 * function pointer (calling a function through a pointer of another type is
 * undefined behaviour). The tool is static, so names never collide across
 * files; a module hands its tools out through a function (e.g. one that adds
 * them to a registry). */
#define SIFT_TOOL_DEFINE(NAME, description_, T, func)                                              \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&(func)),                               \
                                                void (*)(sift_tool_job *, const struct T *)),      \
                   "tool function " #func " must be declared as: void " #func                      \
                   "(sift_tool_job *job, const struct " #T " *args)");                             \
    static void NAME##__invoke(sift_tool_job *job, const void *args)                               \
    {                                                                                              \
        func(job, (const struct T *)args);                                                         \
    }                                                                                              \
    __attribute__((unused)) static const sift_tool NAME##_tool = {                                 \
        .name = #NAME, .description = (description_), .args = &T##__schema, .fn = NAME##__invoke}

/* ---- one execution of a tool: a job ---- */

enum sift_tool_job_state {
    SIFT_TOOL_JOB_NEW = 0, /* initialised, not started */
    SIFT_TOOL_JOB_RUNNING, /* the tool function has the job */
    SIFT_TOOL_JOB_DONE,    /* reported; code and result are final */
};

/* Fires once when the job is done. The job may be freed from here. */
typedef void (*sift_tool_job_done_fn)(sift_tool_job *job, void *data);

/* One execution of a tool, owned by whoever runs it (the tools node, a test).
 * (The model's request for it is a sift_tool_call, in model.h: its id and
 * arguments text are what sift_tool_job_start takes.)
 * The tool function reads ctx, arena and app, and must end the job exactly
 * once with sift_tool_job_done or sift_tool_job_fail, synchronously or
 * later on the ctx's loop, also after cancellation (register a cancel hook on
 * ctx for work in flight). */
struct sift_tool_job {
    const sift_tool *tool;
    sift_ctx *ctx;     /* the job's context: deadline and cancellation */
    sift_arena *arena; /* the run's arena: arguments and result live here */
    void *app;         /* application data for the tool (e.g. the catalog store) */
    const char *id;    /* the model's tool_call id, or NULL */
    /* Outcome, valid in state DONE: 0 and a JSON result, or a negative SIFT_E
     * code and a message for the model (both in the arena). */
    int code;
    const char *result;
    enum sift_tool_job_state state;
    sift_tool_job_done_fn done;
    void *done_data;
};

/* Prepares a job of `tool` (state NEW). Allocates nothing. */
void sift_tool_job_init(sift_tool_job *job, const sift_tool *tool, sift_ctx *ctx, sift_arena *arena,
                        void *app, sift_tool_job_done_fn done, void *done_data);

/* Decodes the model's argument text (`len` bytes) against the tool's schema and
 * runs the tool. Bad arguments end the job at once with SIFT_EINVAL and the
 * decoder's message as the result; so does a context that is already done
 * (with its code). Either way `done` fires exactly once, possibly before this
 * returns. Aborts if the job is not in state NEW. */
void sift_tool_job_start(sift_tool_job *job, const char *arguments, size_t len);

/* Ends the job: `code` 0 with `result` the tool's JSON output, or a negative
 * SIFT_E code with a message for the model. `result` is copied into the arena
 * (NULL is kept as NULL). Then fires `done`, last: the job may be gone when
 * this returns. Ending a job twice is a bug and aborts. */
void sift_tool_job_done(sift_tool_job *job, int code, const char *result);

/* sift_tool_job_done with a printf-formatted message. */
void sift_tool_job_fail(sift_tool_job *job, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- schemas ---- */

/* Checks that a schema is usable: valid and unique field names, bounds that
 * make sense, enum values present, nesting and field count within the limits
 * above. SIFT_EINVAL with a message naming the field otherwise. */
int sift_schema_check(const sift_schema *s, sift_err *err);

/* Lays out a schema built at run time: assigns each field its offset (and its
 * presence flag's) in field order with natural alignment, as a C compiler
 * lays out the equivalent struct, and sets s->fields, s->nfields, s->size and
 * s->align. Nested schemas must be laid out first. */
void sift_schema_layout(sift_schema *s, sift_field *fields, size_t nfields);

/* Appends the JSON Schema of the arguments object (for "parameters"). The
 * schema must pass sift_schema_check (the registry checks every tool). On
 * error nothing is appended. */
int sift_schema_json(const sift_schema *s, sift_buf *out);

/* Appends the tool (with a checked schema) as an entry of a chat-completions
 * "tools" array:
 * {"type":"function","function":{"name","description","parameters","strict":true}}. */
int sift_tool_json(const sift_tool *t, sift_buf *out);

/* ---- decoding ---- */

/* Decodes argument JSON text (`len` bytes) into a zeroed struct of s->size
 * bytes allocated in `arena`, copying every string into the arena, and sets
 * *out to it. Unknown fields, duplicate fields, wrong types, missing required
 * fields and out-of-bounds values are SIFT_EINVAL, with a message naming the
 * field path and the rule ("filters.size: must be a string"). Integers accept
 * any JSON number with no fractional part (2 and 2.0). Empty or blank text
 * counts as {}. SIFT_ENOMEM when the arena cannot grow. */
int sift_args_decode(const sift_schema *s, const char *json, size_t len, sift_arena *arena,
                     const void **out, sift_err *err);

/* Appends decoded arguments as compact JSON, present fields only, in field
 * order (what an HTTP tool forwards). */
int sift_args_json(const sift_schema *s, const void *args, sift_buf *out);

/* ---- registry ---- */

/* Tools by name. Built at start-up, then only read, so worker threads may
 * share it. Tools are not copied: each must outlive the registry. */
typedef struct sift_tool_registry sift_tool_registry;

/* An empty registry; NULL when out of memory. */
sift_tool_registry *sift_tool_registry_new(void);

/* NULL is a no-op. */
void sift_tool_registry_free(sift_tool_registry *r);

/* Adds a tool after checking its name and schema. SIFT_EINVAL for a bad tool
 * or a name already taken, SIFT_ENOMEM. */
int sift_tool_registry_add(sift_tool_registry *r, const sift_tool *tool, sift_err *err);

/* The tool called `name`, or NULL. */
const sift_tool *sift_tool_registry_find(const sift_tool_registry *r, const char *name);

/* Number of tools, and the i-th in order of adding (NULL past the end). */
size_t sift_tool_registry_count(const sift_tool_registry *r);
const sift_tool *sift_tool_registry_at(const sift_tool_registry *r, size_t i);

/* The "tools" array of a chat-completions request for every tool, in order of
 * adding ("[]" when empty). Built as tools are added; valid until the next
 * add or the free. Sets *len when len is not NULL. */
const char *sift_tool_registry_json(const sift_tool_registry *r, size_t *len);

/* ---- macro machinery (not API) ---- */

/* Two apply macros: one may not expand inside itself. */
#define SIFT__APPLY_ARGS(m, args) m args
#define SIFT__APPLY_FIELD(m, args) m args
#define SIFT__CAT(a, b) SIFT__CAT_(a, b)
#define SIFT__CAT_(a, b) a##b
#define SIFT__UNPAREN(...) __VA_ARGS__
#define SIFT__TUPLE(...) , (__VA_ARGS__)

#define SIFT__ARGS(T, ...)                                                                         \
    struct T {                                                                                     \
        SIFT__FOR_EACH(SIFT__MEMBER, T, __VA_ARGS__)                                               \
    };                                                                                             \
    __attribute__((unused)) static const sift_field T##__fields[] = {                              \
        SIFT__FOR_EACH(SIFT__FIELD, T, __VA_ARGS__)};                                              \
    __attribute__((unused)) static const sift_schema T##__schema = {                               \
        .name = #T,                                                                                \
        .size = sizeof(struct T),                                                                  \
        .align = _Alignof(struct T),                                                               \
        .fields = T##__fields,                                                                     \
        .nfields = sizeof T##__fields / sizeof T##__fields[0]}

/* One struct member: F(TYPE, name, description, presence, bounds...). */
#define SIFT__MEMBER(T, tuple) SIFT__MEMBER_ tuple
#define SIFT__MEMBER_(ty, nm, ds, rq, ...) SIFT__HAS_##rq(nm) SIFT__CTYPE_##ty(__VA_ARGS__) nm;
#define SIFT__HAS_SIFT_REQUIRED(nm)
#define SIFT__HAS_SIFT_OPTIONAL(nm) bool has_##nm;
#define SIFT__CTYPE_STRING(...) const char *
#define SIFT__CTYPE_ENUM(...) const char *
#define SIFT__CTYPE_INTEGER(...) int64_t
#define SIFT__CTYPE_NUMBER(...) double
#define SIFT__CTYPE_BOOLEAN(...) bool
#define SIFT__CTYPE_STRINGS(...) sift_strings
#define SIFT__CTYPE_OBJECT(N, ...) struct N

/* One descriptor entry. */
#define SIFT__FIELD(T, tuple) SIFT__APPLY_FIELD(SIFT__FIELD_, (T, SIFT__UNPAREN tuple))
#define SIFT__FIELD_(T, ty, nm, ds, rq, ...)                                                       \
    {.name = #nm,                                                                                  \
     .type = SIFT_FIELD_##ty,                                                                      \
     .description = (ds),                                                                          \
     .required = SIFT__REQ_##rq,                                                                   \
     .offset = offsetof(struct T, nm),                                                             \
     .has_offset = SIFT__HASOFF_##rq(T, nm),                                                       \
     SIFT__BOUNDS_##ty(__VA_ARGS__)},
#define SIFT__REQ_SIFT_REQUIRED true
#define SIFT__REQ_SIFT_OPTIONAL false
#define SIFT__HASOFF_SIFT_REQUIRED(T, nm) 0
#define SIFT__HASOFF_SIFT_OPTIONAL(T, nm) offsetof(struct T, has_##nm)
#define SIFT__BOUNDS_STRING(...) __VA_ARGS__
#define SIFT__BOUNDS_ENUM(...) __VA_ARGS__
#define SIFT__BOUNDS_INTEGER(...) __VA_ARGS__
#define SIFT__BOUNDS_NUMBER(...) __VA_ARGS__
#define SIFT__BOUNDS_BOOLEAN(...) __VA_ARGS__
#define SIFT__BOUNDS_STRINGS(...) __VA_ARGS__
/* A designator, which parentheses would break. */
#define SIFT__BOUNDS_OBJECT(N, ...) .object = &N##__schema // NOLINT(bugprone-macro-parentheses)

/* m(T, x) for each of up to 32 arguments x. */
#define SIFT__FOR_EACH(m, T, ...) SIFT__CAT(SIFT__FE_, SIFT__COUNT(__VA_ARGS__))(m, T, __VA_ARGS__)
#define SIFT__COUNT(...)                                                                           \
    SIFT__COUNT_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,  \
                 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define SIFT__COUNT_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,   \
                     a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31, a32, n, \
                     ...)                                                                          \
    n
#define SIFT__FE_1(m, T, x) m(T, x)
#define SIFT__FE_2(m, T, x, ...) m(T, x) SIFT__FE_1(m, T, __VA_ARGS__)
#define SIFT__FE_3(m, T, x, ...) m(T, x) SIFT__FE_2(m, T, __VA_ARGS__)
#define SIFT__FE_4(m, T, x, ...) m(T, x) SIFT__FE_3(m, T, __VA_ARGS__)
#define SIFT__FE_5(m, T, x, ...) m(T, x) SIFT__FE_4(m, T, __VA_ARGS__)
#define SIFT__FE_6(m, T, x, ...) m(T, x) SIFT__FE_5(m, T, __VA_ARGS__)
#define SIFT__FE_7(m, T, x, ...) m(T, x) SIFT__FE_6(m, T, __VA_ARGS__)
#define SIFT__FE_8(m, T, x, ...) m(T, x) SIFT__FE_7(m, T, __VA_ARGS__)
#define SIFT__FE_9(m, T, x, ...) m(T, x) SIFT__FE_8(m, T, __VA_ARGS__)
#define SIFT__FE_10(m, T, x, ...) m(T, x) SIFT__FE_9(m, T, __VA_ARGS__)
#define SIFT__FE_11(m, T, x, ...) m(T, x) SIFT__FE_10(m, T, __VA_ARGS__)
#define SIFT__FE_12(m, T, x, ...) m(T, x) SIFT__FE_11(m, T, __VA_ARGS__)
#define SIFT__FE_13(m, T, x, ...) m(T, x) SIFT__FE_12(m, T, __VA_ARGS__)
#define SIFT__FE_14(m, T, x, ...) m(T, x) SIFT__FE_13(m, T, __VA_ARGS__)
#define SIFT__FE_15(m, T, x, ...) m(T, x) SIFT__FE_14(m, T, __VA_ARGS__)
#define SIFT__FE_16(m, T, x, ...) m(T, x) SIFT__FE_15(m, T, __VA_ARGS__)
#define SIFT__FE_17(m, T, x, ...) m(T, x) SIFT__FE_16(m, T, __VA_ARGS__)
#define SIFT__FE_18(m, T, x, ...) m(T, x) SIFT__FE_17(m, T, __VA_ARGS__)
#define SIFT__FE_19(m, T, x, ...) m(T, x) SIFT__FE_18(m, T, __VA_ARGS__)
#define SIFT__FE_20(m, T, x, ...) m(T, x) SIFT__FE_19(m, T, __VA_ARGS__)
#define SIFT__FE_21(m, T, x, ...) m(T, x) SIFT__FE_20(m, T, __VA_ARGS__)
#define SIFT__FE_22(m, T, x, ...) m(T, x) SIFT__FE_21(m, T, __VA_ARGS__)
#define SIFT__FE_23(m, T, x, ...) m(T, x) SIFT__FE_22(m, T, __VA_ARGS__)
#define SIFT__FE_24(m, T, x, ...) m(T, x) SIFT__FE_23(m, T, __VA_ARGS__)
#define SIFT__FE_25(m, T, x, ...) m(T, x) SIFT__FE_24(m, T, __VA_ARGS__)
#define SIFT__FE_26(m, T, x, ...) m(T, x) SIFT__FE_25(m, T, __VA_ARGS__)
#define SIFT__FE_27(m, T, x, ...) m(T, x) SIFT__FE_26(m, T, __VA_ARGS__)
#define SIFT__FE_28(m, T, x, ...) m(T, x) SIFT__FE_27(m, T, __VA_ARGS__)
#define SIFT__FE_29(m, T, x, ...) m(T, x) SIFT__FE_28(m, T, __VA_ARGS__)
#define SIFT__FE_30(m, T, x, ...) m(T, x) SIFT__FE_29(m, T, __VA_ARGS__)
#define SIFT__FE_31(m, T, x, ...) m(T, x) SIFT__FE_30(m, T, __VA_ARGS__)
#define SIFT__FE_32(m, T, x, ...) m(T, x) SIFT__FE_31(m, T, __VA_ARGS__)

#endif
