/* The offline planner (include/sift/planner.h): rules, not a language model.
 *
 * Everything is derived from the conversation on each call: which turn comes
 * next is read from the messages after the last user message, so the planner
 * keeps no state and the same conversation always gives the same step. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sift/buf.h"
#include "sift/catalog.h"
#include "sift/planner.h"

#define PRODUCTS_MAX 50     /* products read from one search result */
#define STOCK_LINES_MAX 32  /* warehouses reported in one answer */
#define ERROR_QUOTE_MAX 200 /* bytes of a tool's error message quoted */
#define OTHER_MATCHES 2
#define SEARCH_QUERY_MAX 256 /* bytes of search text search_products accepts */
#define SEARCH_K_MAX 50      /* most results search_products returns */

typedef struct product {
    const char *sku;
    const char *title;
    const char *brand;
    const char *size;
    const char *size_system;
    const char *colour;
} product;

typedef struct search_result {
    const char *error; /* non-NULL: the search failed */
    product *p;
    size_t n;
} search_result;

typedef struct stock_line {
    const char *code;
    long long qty;
    const char *error; /* non-NULL: this warehouse could not be checked */
} stock_line;

/* ---- small helpers ----------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Arena state for the helpers: an allocation failure anywhere sets `oom`,
 * which sift_planner_next turns into SIFT_ENOMEM, so a NULL from a failed
 * copy is never mistaken for "absent". */
typedef struct pctx {
    sift_arena *a;
    bool oom;
} pctx;

static const char *adup(pctx *x, const char *s)
{
    if (!s)
        return NULL;
    const char *d = sift_arena_strdup(x->a, s);
    if (!d)
        x->oom = true;
    return d;
}

/* Copies at most ERROR_QUOTE_MAX bytes of an error message, cut at a UTF-8
 * character boundary, with "..." when cut. */
static const char *quote_error(pctx *x, const char *s)
{
    size_t n = strlen(s);
    const char *q;
    if (n <= ERROR_QUOTE_MAX) {
        q = sift_arena_strdup(x->a, s);
    } else {
        n = ERROR_QUOTE_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        q = sift_arena_sprintf(x->a, "%.*s...", (int)n, s);
    }
    if (!q) {
        x->oom = true;
        return "out of memory";
    }
    return q;
}

/* The error a tool reported: {"error":"msg"} or {"error":{"message":"msg"}}.
 * NULL when `o` is not an error object. */
static const char *tool_error(pctx *x, const cJSON *o)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (!e || cJSON_IsNull(e) || cJSON_IsFalse(e))
        return NULL;
    if (cJSON_IsString(e))
        return quote_error(x, e->valuestring);
    const char *m = cJSON_IsObject(e) ? jstr(e, "message") : NULL;
    return quote_error(x, m ? m : "unknown error");
}

/* A stock figure as an integer; false for anything that is not a sane count
 * (a float cast of NaN or 1e300 would be undefined behaviour). */
static bool quantity(const cJSON *v, long long *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -1e15 && v->valuedouble <= 1e15))
        return false;
    *out = (long long)v->valuedouble;
    return true;
}

static cJSON *parse_json(const char *s, size_t len)
{
    return s ? cJSON_ParseWithLength(s, len) : NULL;
}

static bool ieq(const char *a, const char *b)
{
    return a && b && strcasecmp(a, b) == 0;
}

/* ---- conversation ------------------------------------------------------ */

static const char help_text[] =
    "I am sift's offline assistant, a rule-based planner rather than a language model: I can "
    "search the catalog and check stock and prices. Tell me a brand, product type, size, colour, "
    "price range or warehouse (Hanoi, Da Nang, Ho Chi Minh City).";

/* True when a message asked for nothing the planner can act on. */
static bool query_empty(const sift_query *q)
{
    return !q->brand && !q->category && !q->size && !q->n_colours && !q->gender &&
           !q->has_price_min && !q->has_price_max && !q->currency && !q->in_stock &&
           !q->n_warehouses && !(q->keywords && *q->keywords);
}

/* Folds a later turn into what earlier turns asked. A turn that names a
 * product (brand, type or its own keywords) starts a new product and keeps
 * only the shopper-level facts (warehouses, stock, currency, gender); a turn
 * that only refines ("what about size 43?", "in white?") keeps everything it
 * does not restate. */
static void merge_query(sift_query *acc, const sift_query *next)
{
    bool new_product = next->brand || next->category || (next->keywords && *next->keywords);
    sift_query m = *next;
    if (!new_product) {
        m.brand = acc->brand;
        m.category = acc->category;
        m.category_segment = acc->category_segment;
        m.keywords = acc->keywords;
        if (!m.size) {
            m.size = acc->size;
            m.size_system = acc->size_system;
        }
        if (!m.n_colours) {
            memcpy(m.colours, acc->colours, sizeof(m.colours));
            m.n_colours = acc->n_colours;
        }
        if (!m.has_price_min && !m.has_price_max) {
            m.has_price_min = acc->has_price_min;
            m.has_price_max = acc->has_price_max;
            m.price_min = acc->price_min;
            m.price_max = acc->price_max;
            m.price_currency = acc->price_currency;
            m.price_currency_inferred = acc->price_currency_inferred;
        }
    }
    if (!m.gender)
        m.gender = acc->gender;
    if (!m.currency)
        m.currency = acc->currency;
    if (!m.n_warehouses) {
        memcpy(m.warehouses, acc->warehouses, sizeof(m.warehouses));
        m.n_warehouses = acc->n_warehouses;
    }
    m.in_stock = m.in_stock || acc->in_stock;
    m.truncated = m.truncated || acc->truncated;
    *acc = m;
}

static const sift_message *result_for(const sift_message *msgs, size_t from, size_t n,
                                      const char *id)
{
    for (size_t i = from; i < n; i++)
        if (msgs[i].role == SIFT_ROLE_TOOL && msgs[i].tool_call_id &&
            strcmp(msgs[i].tool_call_id, id) == 0)
            return &msgs[i];
    return NULL;
}

/* ---- tool calls -------------------------------------------------------- */

typedef struct calls {
    sift_arena *a;
    sift_tool_call *v;
    size_t n;
    size_t next_id; /* number of the next "call_N" */
} calls;

static int add_call(calls *c, const char *name, sift_buf *args)
{
    sift_tool_call *t = &c->v[c->n];
    t->id = sift_arena_sprintf(c->a, "call_%zu", c->next_id);
    t->name = name;
    t->arguments = sift_arena_memdup(c->a, args->data, args->len + 1);
    t->arguments_len = args->len;
    if (!t->id || !t->arguments)
        return SIFT_ENOMEM;
    c->n++;
    c->next_id++;
    return 0;
}

static int put_jstr(sift_buf *b, const char *s)
{
    int rc = sift_buf_putc(b, '"');
    if (rc == 0)
        rc = sift_buf_json_escape(b, s, strlen(s));
    if (rc == 0)
        rc = sift_buf_putc(b, '"');
    return rc;
}

/* ---- search results ---------------------------------------------------- */

static int read_search(pctx *x, const sift_message *m, search_result *out)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = parse_json(m->content, m->content_len);
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        out->error = "the search returned a result I cannot read";
        goto done;
    }
    if ((out->error = tool_error(x, root)) != NULL)
        goto done;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "products");
    if (!cJSON_IsArray(arr)) {
        out->error = "the search result has no product list";
        goto done;
    }
    out->p = sift_arena_calloc(x->a, PRODUCTS_MAX, sizeof(*out->p));
    if (!out->p) {
        rc = SIFT_ENOMEM;
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (out->n == PRODUCTS_MAX)
            break;
        const char *sku = jstr(it, "sku");
        if (!sku || !*sku)
            continue; /* a product without SKU cannot be checked or priced */
        const char *title = jstr(it, "title");
        const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(it, "attributes");
        product *p = &out->p[out->n];
        p->sku = adup(x, sku);
        p->title = adup(x, title && *title ? title : sku);
        p->brand = adup(x, jstr(it, "brand"));
        if (cJSON_IsObject(attrs)) {
            p->size = adup(x, jstr(attrs, "size"));
            p->size_system = adup(x, jstr(attrs, "size_system"));
            const char *c = jstr(attrs, "colour");
            p->colour = adup(x, c ? c : jstr(attrs, "color"));
        }
        if (!p->sku || !p->title) {
            rc = SIFT_ENOMEM;
            goto done;
        }
        out->n++;
    }
done:
    cJSON_Delete(root);
    return rc;
}

/* The product to check: the search ranks, and among its results the one
 * matching the size and colour the shopper asked for wins; ties keep the
 * search order. */
static const product *best_product(const search_result *r, const sift_query *q)
{
    const product *best = NULL;
    int best_score = -1;
    for (size_t i = 0; i < r->n; i++) {
        const product *p = &r->p[i];
        int score = 0;
        if (q->size && ieq(p->size, q->size))
            score += 4;
        for (size_t c = 0; c < q->n_colours; c++)
            if (ieq(p->colour, q->colours[c]))
                score += 2;
        if (q->brand && ieq(p->brand, q->brand))
            score += 1;
        if (score > best_score) {
            best = p;
            best_score = score;
        }
    }
    return best;
}

static const product *find_product(const search_result *r, const char *sku)
{
    for (size_t i = 0; r && sku && i < r->n; i++)
        if (strcmp(r->p[i].sku, sku) == 0)
            return &r->p[i];
    return NULL;
}

/* ---- answers ----------------------------------------------------------- */

int sift_planner_tokenize(const char *text, size_t len, sift_arena *a, sift_plan_token **tokens,
                          size_t *n)
{
    *tokens = NULL;
    *n = 0;
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && (i + 1 == len || text[i + 1] == ' '))
            count++;
    if (count == 0 && len > 0)
        count = 1; /* only spaces: one token */
    if (count == 0)
        return 0;
    sift_plan_token *t = sift_arena_calloc(a, count, sizeof(*t));
    if (!t)
        return SIFT_ENOMEM;
    size_t k = 0, start = 0;
    for (size_t i = 0; i < len; i++) {
        bool word_end = text[i] != ' ' && (i + 1 == len || text[i + 1] == ' ');
        if (!word_end)
            continue;
        size_t end = i + 1;
        while (end < len && text[end] == ' ')
            end++;
        t[k].text = text + start;
        t[k].len = end - start;
        k++;
        start = end;
        i = end - 1;
    }
    if (k == 0) {
        t[0].text = text;
        t[0].len = len;
        k = 1;
    }
    *tokens = t;
    *n = k;
    return 0;
}

static int finish_answer(sift_arena *a, sift_buf *b, sift_planner_step *out)
{
    char *text = sift_arena_memdup(a, b->data ? b->data : "", b->len + 1);
    if (!text)
        return SIFT_ENOMEM;
    out->kind = SIFT_PLAN_ANSWER;
    out->text = text;
    out->text_len = b->len;
    return sift_planner_tokenize(text, b->len, a, &out->tokens, &out->n_tokens);
}

static int put_price_phrase(sift_buf *b, const sift_query *q)
{
    int rc = 0;
    if (q->has_price_min && q->has_price_max) {
        rc = sift_buf_puts(b, " priced between ");
        if (rc == 0)
            rc = sift_query_format_money(q->price_min, q->price_currency, b);
        if (rc == 0)
            rc = sift_buf_puts(b, " and ");
        if (rc == 0)
            rc = sift_query_format_money(q->price_max, q->price_currency, b);
    } else if (q->has_price_max) {
        rc = sift_buf_puts(b, " under ");
        if (rc == 0)
            rc = sift_query_format_money(q->price_max, q->price_currency, b);
    } else if (q->has_price_min) {
        rc = sift_buf_puts(b, " over ");
        if (rc == 0)
            rc = sift_query_format_money(q->price_min, q->price_currency, b);
    }
    return rc;
}

/* "I could not find any Nike running shoes in size 42 in purple under
 * 1,000,000 VND. Try another size, another colour or a wider price range." */
static int answer_no_results(const sift_query *q, sift_buf *b)
{
    int rc = sift_buf_puts(b, "I could not find any ");
    if (rc == 0 && q->brand)
        rc = sift_buf_printf(b, "%s ", q->brand);
    if (rc == 0)
        rc = sift_buf_puts(b, q->category ? q->category : "products");
    if (rc == 0 && !q->brand && !q->category && q->keywords && *q->keywords)
        rc = sift_buf_printf(b, " matching \"%s\"", q->keywords);
    if (rc == 0 && q->gender)
        rc = sift_buf_printf(b, " for %s", sift_gender_name(q->gender));
    if (rc == 0 && q->size)
        rc = sift_buf_printf(b, " in size %s", q->size);
    for (size_t i = 0; rc == 0 && i < q->n_colours; i++)
        rc = sift_buf_printf(b, "%s%s", i ? " or " : " in ", q->colours[i]);
    if (rc == 0)
        rc = put_price_phrase(b, q);
    if (rc == 0)
        rc = sift_buf_puts(b, ".");

    const char *tips[6];
    size_t nt = 0;
    if (q->size)
        tips[nt++] = "another size";
    if (q->n_colours)
        tips[nt++] = "another colour";
    if (q->has_price_min || q->has_price_max)
        tips[nt++] = "a wider price range";
    if (q->brand)
        tips[nt++] = "other brands";
    if (q->category)
        tips[nt++] = "a broader product type";
    if (nt == 0)
        tips[nt++] = "different or fewer words";
    if (rc == 0)
        rc = sift_buf_puts(b, " Try ");
    for (size_t i = 0; rc == 0 && i < nt; i++)
        rc = sift_buf_printf(b, "%s%s", i == 0 ? "" : i + 1 == nt ? " or " : ", ", tips[i]);
    if (rc == 0)
        rc = sift_buf_puts(b, ".");
    return rc;
}

static int answer_search_error(const char *msg, sift_buf *b)
{
    return sift_buf_printf(b,
                           "Sorry, the product search failed: %s. I cannot check stock or prices "
                           "without it; please try again in a moment.",
                           msg);
}

/* Reads one check_inventory result into lines; `location` is the warehouse
 * the call asked for (NULL: all). */
static int read_inventory(pctx *x, const sift_message *m, const char *location, stock_line *lines,
                          size_t *n)
{
    cJSON *root = parse_json(m->content, m->content_len);
    int rc = 0;
    const char *err = NULL;
    if (!cJSON_IsObject(root)) {
        err = "the inventory tool returned a result I cannot read";
    } else if ((err = tool_error(x, root)) != NULL) {
        ;
    } else {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "warehouses");
        long long stock;
        bool has_stock = quantity(cJSON_GetObjectItemCaseSensitive(root, "stock"), &stock);
        if (cJSON_IsArray(arr)) {
            const cJSON *w;
            bool found = false;
            cJSON_ArrayForEach(w, arr)
            {
                const char *code = jstr(w, "code");
                long long qty;
                if (!code || !quantity(cJSON_GetObjectItemCaseSensitive(w, "quantity"), &qty) ||
                    *n == STOCK_LINES_MAX)
                    continue;
                if (location && strcmp(code, location) != 0)
                    continue;
                lines[*n] = (stock_line){adup(x, code), qty, NULL};
                if (!lines[*n].code) {
                    rc = SIFT_ENOMEM;
                    goto done;
                }
                (*n)++;
                found = true;
            }
            /* Asked about one warehouse that the answer does not list: it
             * holds none. */
            if (!found && location && *n < STOCK_LINES_MAX)
                lines[(*n)++] = (stock_line){location, 0, NULL};
            goto done;
        }
        if (has_stock) {
            const char *code = jstr(root, "location");
            if (!code)
                code = location;
            if (code && *n < STOCK_LINES_MAX) {
                lines[*n] = (stock_line){adup(x, code), stock, NULL};
                if (!lines[*n].code) {
                    rc = SIFT_ENOMEM;
                    goto done;
                }
                (*n)++;
            }
            goto done;
        }
        err = "the inventory result has no stock figures";
    }
    if (err && *n < STOCK_LINES_MAX)
        lines[(*n)++] = (stock_line){location, 0, err};
done:
    cJSON_Delete(root);
    return rc;
}

/* Reads a get_price result into "3,290,000 VND" (or an error). */
static int read_price(pctx *x, const sift_message *m, const char **price, const char **error)
{
    cJSON *root = parse_json(m->content, m->content_len);
    int rc = 0;
    *price = NULL;
    *error = NULL;
    if (!cJSON_IsObject(root)) {
        *error = "the price tool returned a result I cannot read";
        goto done;
    }
    if ((*error = tool_error(x, root)) != NULL)
        goto done;
    const char *cur = jstr(root, "currency");
    const cJSON *amt = cJSON_GetObjectItemCaseSensitive(root, "amount");
    if (!cur || !cJSON_IsNumber(amt) || !(amt->valuedouble >= 0) || amt->valuedouble > 1e15) {
        *error = "the price result has no amount";
        goto done;
    }
    int exp = sift_currency_exponent(cur);
    double minor = round(amt->valuedouble * pow(10.0, exp));
    sift_buf b;
    sift_buf_init(&b, 0);
    rc = sift_query_format_money((int64_t)minor, cur, &b);
    if (rc == 0 && !(*price = sift_arena_strdup(x->a, b.data)))
        rc = SIFT_ENOMEM;
    sift_buf_free(&b);
done:
    cJSON_Delete(root);
    return rc;
}

static const char *arg_str(pctx *x, const sift_tool_call *c, const char *key)
{
    cJSON *root = parse_json(c->arguments, c->arguments_len);
    const char *v = cJSON_IsObject(root) ? adup(x, jstr(root, key)) : NULL;
    cJSON_Delete(root);
    return v;
}

static int put_warehouse(sift_buf *b, const char *code)
{
    const char *name = sift_query_warehouse_name(code);
    return name ? sift_buf_printf(b, "%s (%s)", name, code) : sift_buf_puts(b, code);
}

/* The final answer from the inventory and price results that answer the
 * calls in msgs[from..n). */
static int answer_from_results(pctx *x, const sift_message *msgs, size_t from, size_t n,
                               const search_result *sr, const sift_query *q, sift_buf *b)
{
    stock_line lines[STOCK_LINES_MAX];
    size_t nl = 0;
    const char *price = NULL, *price_err = NULL, *sku = NULL;
    bool asked_stock = false, asked_price = false;
    int rc = 0;
    for (size_t i = from; i < n && rc == 0; i++) {
        if (msgs[i].role != SIFT_ROLE_ASSISTANT)
            continue;
        for (size_t j = 0; j < msgs[i].n_tool_calls && rc == 0; j++) {
            const sift_tool_call *c = &msgs[i].tool_calls[j];
            const sift_message *r = result_for(msgs, i + 1, n, c->id);
            if (!r)
                continue;
            if (!sku)
                sku = arg_str(x, c, "sku");
            if (strcmp(c->name, SIFT_TOOL_CHECK_INVENTORY) == 0) {
                asked_stock = true;
                rc = read_inventory(x, r, arg_str(x, c, "location"), lines, &nl);
            } else if (strcmp(c->name, SIFT_TOOL_GET_PRICE) == 0) {
                asked_price = true;
                rc = read_price(x, r, &price, &price_err);
            }
        }
    }
    if (rc != 0)
        return rc;

    const product *p = find_product(sr, sku);
    if (p)
        rc = sift_buf_printf(b, "I found %s (%s)", p->title, p->sku);
    else
        rc = sift_buf_printf(b, "I checked %s", sku ? sku : "the product");
    if (rc == 0 && p && p->size)
        rc = sift_buf_printf(b, ", size %s", p->size);
    /* Say so when the search had nothing in the size asked for. */
    if (rc == 0 && p && q->size && !ieq(p->size, q->size))
        rc = sift_buf_printf(b, " (no exact match for size %s)", q->size);
    if (rc == 0)
        rc = sift_buf_puts(b, ".");

    if (rc == 0 && asked_stock) {
        rc = sift_buf_puts(b, " Stock: ");
        bool any_known = false, any_in = false;
        for (size_t i = 0; rc == 0 && i < nl; i++) {
            if (i)
                rc = sift_buf_puts(b, ", ");
            if (rc == 0 && lines[i].code)
                rc = put_warehouse(b, lines[i].code);
            else if (rc == 0)
                rc = sift_buf_puts(b, "all warehouses");
            if (rc != 0)
                break;
            if (lines[i].error) {
                rc = sift_buf_printf(b, " could not be checked (%s)", lines[i].error);
            } else {
                any_known = true;
                any_in = any_in || lines[i].qty > 0;
                rc = sift_buf_printf(b, " %lld%s", lines[i].qty,
                                     lines[i].qty > 0 ? "" : " \xe2\x80\x94 out of stock");
            }
        }
        if (rc == 0 && nl == 0)
            rc = sift_buf_puts(b, "no warehouse reported any");
        if (rc == 0)
            rc = sift_buf_puts(b, ".");
        if (rc == 0 && any_known && !any_in)
            rc = sift_buf_puts(b, " It is out of stock everywhere I checked.");
    }
    if (rc == 0 && asked_price) {
        if (price)
            rc = sift_buf_printf(b, " Price: %s.", price);
        else
            rc = sift_buf_printf(b, " Price: could not be checked (%s).",
                                 price_err ? price_err : "no result");
    }
    /* Other models the search found, so the shopper sees the alternatives. */
    size_t shown = 0;
    for (size_t i = 0; rc == 0 && sr && i < sr->n && shown < OTHER_MATCHES; i++) {
        const product *o = &sr->p[i];
        if (p && (o == p || strcmp(o->title, p->title) == 0))
            continue;
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(sr->p[k].title, o->title) == 0;
        if (dup)
            continue;
        rc = sift_buf_printf(b, "%s%s (%s)", shown ? ", " : " Other matches: ", o->title, o->sku);
        shown++;
    }
    if (rc == 0 && shown)
        rc = sift_buf_puts(b, ".");
    return rc;
}

/* ---- the steps --------------------------------------------------------- */

/* The search text: the keywords, else the colours and size ("black 42"),
 * cut at a word boundary to SEARCH_QUERY_MAX bytes (search_products takes
 * 1..256 bytes). Empty when the shopper named no product at all. */
static int search_text(const sift_query *q, sift_buf *out)
{
    int rc = 0;
    if (q->keywords && *q->keywords) {
        rc = sift_buf_puts(out, q->keywords);
    } else {
        for (size_t i = 0; rc == 0 && i < q->n_colours; i++)
            rc = sift_buf_printf(out, "%s%s", out->len ? " " : "", q->colours[i]);
        if (rc == 0 && q->size)
            rc = sift_buf_printf(out, "%s%s", out->len ? " " : "", q->size);
    }
    if (rc == 0 && out->len > SEARCH_QUERY_MAX) {
        size_t n = SEARCH_QUERY_MAX;
        while (n > 0 && out->data[n] != ' ')
            n--;
        if (n == 0) { /* one huge word: cut at a character boundary */
            n = SEARCH_QUERY_MAX;
            while (n > 0 && ((unsigned char)out->data[n] & 0xC0) == 0x80)
                n--;
        }
        out->len = n;
        out->data[n] = '\0';
    }
    return rc;
}

static int step_search(const sift_query *q, const char *text, const sift_planner_opts *o, calls *c)
{
    sift_buf args;
    sift_buf_init(&args, 0);
    int k = o->k > 0 ? o->k : 5;
    int rc = sift_buf_puts(&args, "{\"query\":");
    if (rc == 0)
        rc = put_jstr(&args, text);
    if (rc == 0)
        rc = sift_buf_puts(&args, ",\"filters\":");
    if (rc == 0)
        rc = sift_query_filters_json(q, &args);
    if (rc == 0)
        rc = sift_buf_printf(&args, ",\"k\":%d}", k > SEARCH_K_MAX ? SEARCH_K_MAX : k);
    if (rc == 0)
        rc = add_call(c, SIFT_TOOL_SEARCH_PRODUCTS, &args);
    sift_buf_free(&args);
    return rc;
}

static int step_check(const sift_query *q, const sift_planner_opts *o, const product *p, calls *c)
{
    sift_buf args;
    sift_buf_init(&args, 0);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < q->n_warehouses; i++) {
        sift_buf_reset(&args);
        rc = sift_buf_puts(&args, "{\"sku\":");
        if (rc == 0)
            rc = put_jstr(&args, p->sku);
        if (rc == 0)
            rc = sift_buf_puts(&args, ",\"location\":");
        if (rc == 0)
            rc = put_jstr(&args, q->warehouses[i]);
        if (rc == 0)
            rc = sift_buf_puts(&args, "}");
        if (rc == 0)
            rc = add_call(c, SIFT_TOOL_CHECK_INVENTORY, &args);
    }
    if (rc == 0 && q->n_warehouses == 0 && q->in_stock) {
        sift_buf_reset(&args);
        rc = sift_buf_puts(&args, "{\"sku\":");
        if (rc == 0)
            rc = put_jstr(&args, p->sku);
        if (rc == 0)
            rc = sift_buf_puts(&args, "}");
        if (rc == 0)
            rc = add_call(c, SIFT_TOOL_CHECK_INVENTORY, &args);
    }
    if (rc == 0) {
        const char *cur = q->currency ? q->currency : o->currency ? o->currency : "VND";
        sift_buf_reset(&args);
        rc = sift_buf_puts(&args, "{\"sku\":");
        if (rc == 0)
            rc = put_jstr(&args, p->sku);
        if (rc == 0)
            rc = sift_buf_puts(&args, ",\"currency\":");
        if (rc == 0)
            rc = put_jstr(&args, cur);
        if (rc == 0)
            rc = sift_buf_puts(&args, "}");
        if (rc == 0)
            rc = add_call(c, SIFT_TOOL_GET_PRICE, &args);
    }
    sift_buf_free(&args);
    return rc;
}

int sift_planner_next(const sift_message *msgs, size_t n, const sift_planner_opts *opts,
                      sift_arena *a, sift_planner_step *out, sift_err *err)
{
    static const sift_planner_opts defaults = {0};
    const sift_planner_opts *o = opts ? opts : &defaults;
    memset(out, 0, sizeof(*out));
    sift_buf text;
    sift_buf_init(&text, 0);
    int rc = 0;

    size_t u = n, total_calls = 0;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role == SIFT_ROLE_USER)
            u = i;
        if (msgs[i].role == SIFT_ROLE_ASSISTANT)
            total_calls += msgs[i].n_tool_calls;
    }
    if (u == n)
        return sift_err_set(err, SIFT_EINVAL, "the conversation has no user message to answer");

    /* What the shopper wants, over all their turns so far. */
    sift_query q = {0};
    bool first = true, latest_empty = false;
    for (size_t i = 0; i <= u; i++) {
        if (msgs[i].role != SIFT_ROLE_USER)
            continue;
        sift_query t;
        if (sift_query_parse_vocab(o->vocab, msgs[i].content, msgs[i].content_len, a, &t) != 0)
            goto nomem;
        if (first)
            q = t;
        else
            merge_query(&q, &t);
        first = false;
        latest_empty = query_empty(&t);
    }
    out->query = q;

    /* Room for the most calls one step makes: inventory per warehouse,
     * one more for "all", and the price. */
    calls c = {.a = a, .next_id = total_calls + 1};
    c.v = sift_arena_calloc(a, SIFT_QUERY_WAREHOUSES_MAX + 2, sizeof(*c.v));
    if (!c.v)
        goto nomem;

    const sift_message *last = &msgs[n - 1];
    if (last->role == SIFT_ROLE_ASSISTANT && last->n_tool_calls == 0)
        return sift_err_set(err, SIFT_ESTATE,
                            "the conversation already ends with an answer; a new user message "
                            "is needed");

    /* Every call after the user's turn must have its result by now. */
    size_t search_msg = n;
    const sift_tool_call *search_call = NULL;
    for (size_t i = u + 1; i < n; i++) {
        if (msgs[i].role != SIFT_ROLE_ASSISTANT)
            continue;
        for (size_t j = 0; j < msgs[i].n_tool_calls; j++) {
            const sift_tool_call *tc = &msgs[i].tool_calls[j];
            if (!tc->id || !result_for(msgs, i + 1, n, tc->id))
                return sift_err_set(err, SIFT_ESTATE, "tool call %s (%s) has no result yet",
                                    tc->id ? tc->id : "(no id)", tc->name ? tc->name : "?");
            if (tc->name && strcmp(tc->name, SIFT_TOOL_SEARCH_PRODUCTS) == 0) {
                search_msg = i;
                search_call = tc;
            }
        }
    }

    if (!search_call && latest_empty) {
        /* "hello", "thanks": nothing to search for, and searching anyway
         * would only repeat the last answer or list random products. */
        rc = sift_buf_puts(&text, help_text);
        if (rc == 0)
            rc = finish_answer(a, &text, out);
        if (rc != 0)
            goto fail;
        sift_buf_free(&text);
        return 0;
    }
    if (!search_call) {
        sift_buf stext;
        sift_buf_init(&stext, 0);
        rc = search_text(&q, &stext);
        if (rc == 0 && stext.len == 0) {
            /* Only prices, stock or warehouses: no product to look for. */
            rc = sift_buf_puts(&text, "Which product should I look for? Tell me a brand, a "
                                      "product type or a model name and I will search for it");
            if (rc == 0)
                rc = put_price_phrase(&text, &q);
            if (rc == 0 && (q.n_warehouses || q.in_stock))
                rc = sift_buf_puts(&text, " and check its stock");
            for (size_t i = 0; rc == 0 && i < q.n_warehouses; i++) {
                rc = sift_buf_puts(&text, i == 0                    ? " in "
                                          : i + 1 == q.n_warehouses ? " and "
                                                                    : ", ");
                if (rc == 0)
                    rc = put_warehouse(&text, q.warehouses[i]);
            }
            if (rc == 0)
                rc = sift_buf_puts(&text, ".");
            if (rc == 0)
                rc = finish_answer(a, &text, out);
            sift_buf_free(&stext);
            if (rc != 0)
                goto fail;
            sift_buf_free(&text);
            return 0;
        }
        if (rc == 0)
            rc = step_search(&q, stext.data, o, &c);
        sift_buf_free(&stext);
        if (rc != 0)
            goto fail;
        out->kind = SIFT_PLAN_TOOL_CALLS;
        out->calls = c.v;
        out->n_calls = c.n;
        return 0;
    }

    search_result sr;
    pctx x = {.a = a};
    if ((rc = read_search(&x, result_for(msgs, search_msg + 1, n, search_call->id), &sr)) != 0)
        goto fail;

    bool checked = false;
    for (size_t i = search_msg + 1; i < n && !checked; i++)
        for (size_t j = 0; msgs[i].role == SIFT_ROLE_ASSISTANT && j < msgs[i].n_tool_calls; j++)
            if (msgs[i].tool_calls[j].name &&
                (strcmp(msgs[i].tool_calls[j].name, SIFT_TOOL_CHECK_INVENTORY) == 0 ||
                 strcmp(msgs[i].tool_calls[j].name, SIFT_TOOL_GET_PRICE) == 0))
                checked = true;

    if (checked) {
        rc = answer_from_results(&x, msgs, search_msg + 1, n, &sr, &q, &text);
    } else if (sr.error) {
        rc = answer_search_error(sr.error, &text);
    } else if (sr.n == 0) {
        rc = answer_no_results(&q, &text);
    } else {
        /* No stock intent means no warehouses either: get_price alone. */
        if (x.oom)
            goto nomem;
        if ((rc = step_check(&q, o, best_product(&sr, &q), &c)) != 0)
            goto fail;
        out->kind = SIFT_PLAN_TOOL_CALLS;
        out->calls = c.v;
        out->n_calls = c.n;
        return 0;
    }
    if (rc == 0 && x.oom)
        rc = SIFT_ENOMEM;
    if (rc == 0)
        rc = finish_answer(a, &text, out);
    if (rc != 0)
        goto fail;
    sift_buf_free(&text);
    return 0;

nomem:
    rc = SIFT_ENOMEM;
fail:
    sift_buf_free(&text);
    {
        sift_query keep = out->query;
        memset(out, 0, sizeof(*out));
        out->query = keep;
    }
    return sift_err_set(err, rc, "offline planner: %s",
                        rc == SIFT_ENOMEM ? "out of memory" : sift_err_name(rc));
}
