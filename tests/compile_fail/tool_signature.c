/* Compiled by tests/integration/test_tool_compile_fail.sh, never built into a
 * program: SIFT_TOOL_DEFINE must reject a tool function whose signature does
 * not match its argument struct. VARIANT 0 is the control and must compile;
 * every other variant must fail with the "must be declared as" diagnostic. */
#include "sift/tool.h"

#define LOOKUP_FIELDS(F) F(STRING, sku, "Product SKU", SIFT_REQUIRED, .max_len = 64)
SIFT_TOOL_ARGS(lookup_args, LOOKUP_FIELDS);

#define OTHER_FIELDS(F) F(INTEGER, n, "A number", SIFT_REQUIRED)
SIFT_TOOL_ARGS(other_args, OTHER_FIELDS);

#ifndef VARIANT
#define VARIANT 0
#endif

#if VARIANT == 0 /* the right signature */
static void lookup(sift_tool_job *job, const struct lookup_args *args)
{
    sift_tool_job_done(job, 0, args->sku);
}
#elif VARIANT == 1 /* another tool's argument struct */
static void lookup(sift_tool_job *job, const struct other_args *args)
{
    sift_tool_job_done(job, (int)args->n, NULL);
}
#elif VARIANT == 2 /* returns a value: the result must go through sift_tool_job_done */
static int lookup(sift_tool_job *job, const struct lookup_args *args)
{
    return args->sku != NULL;
}
#elif VARIANT == 3 /* drops const: a tool must not write to its arguments */
static void lookup(sift_tool_job *job, struct lookup_args *args)
{
    args->sku = "changed";
}
#elif VARIANT == 4 /* misses the job */
static void lookup(const struct lookup_args *args)
{
    (void)args;
}
#elif VARIANT == 5 /* an untyped argument pointer */
static void lookup(sift_tool_job *job, const void *args)
{
    (void)args;
}
#endif

SIFT_TOOL_DEFINE(lookup, "Looks a product up", lookup_args, lookup);
