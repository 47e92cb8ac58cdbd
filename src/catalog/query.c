/* Query understanding (include/sift/query.h).
 *
 * The text is decoded into characters, cut into tokens (words, numbers and a
 * few symbols), and then a fixed sequence of passes claims tokens: the
 * vocabulary (warehouses, brands, product types, colours), price
 * expressions, sizes, then gender, stock and currency words and stop words.
 * What no pass claimed is the residual keywords. Each pass only looks at
 * tokens nobody claimed before, so the order of the passes is the precedence
 * of the rules: "Under Armour" is a brand before "under" can start a price,
 * and "2m" is a price before "m" can be a size. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "sift/catalog.h"
#include "sift/query.h"

/* ---- built-in vocabulary ----------------------------------------------- */

static const sift_query_term builtin_brands[] = {
    {"nike", "Nike", NULL},
    {"adidas", "Adidas", NULL},
    {"puma", "Puma", NULL},
    {"new balance", "New Balance", NULL},
    {"nb", "New Balance", NULL},
    {"asics", "Asics", NULL},
    {"under armour", "Under Armour", NULL},
    {"under armor", "Under Armour", NULL},
    {"biti's", "Biti's", NULL},
    {"bitis", "Biti's", NULL},
    {"reebok", "Reebok", NULL},
    {"converse", "Converse", NULL},
    {"vans", "Vans", NULL},
    {"skechers", "Skechers", NULL},
    {"hoka", "Hoka", NULL},
    {"saucony", "Saucony", NULL},
    {"mizuno", "Mizuno", NULL},
    {"salomon", "Salomon", NULL},
    {"fila", "Fila", NULL},
    {"brooks", "Brooks", NULL},
    {"columbia", "Columbia", NULL},
    {"the north face", "The North Face", NULL},
    {"north face", "The North Face", NULL},
    {"lululemon", "Lululemon", NULL},
    {"uniqlo", "Uniqlo", NULL},
    {"crocs", "Crocs", NULL},
};

/* Types list the singular; a trailing "s" also matches (see query.h). */
static const sift_query_term builtin_types[] = {
    {"running shoe", "running shoes", "Running"},
    {"running trainer", "running shoes", "Running"},
    {"running sneaker", "running shoes", "Running"},
    {"runner", "running shoes", "Running"},
    {"road running shoe", "running shoes", "Running"},
    {"giày chạy bộ", "running shoes", "Running"},
    {"giay chay bo", "running shoes", "Running"},
    {"trail running shoe", "trail running shoes", "Trail"},
    {"trail shoe", "trail running shoes", "Trail"},
    {"trail runner", "trail running shoes", "Trail"},
    {"basketball shoe", "basketball shoes", "Basketball"},
    {"training shoe", "training shoes", "Training"},
    {"gym shoe", "training shoes", "Training"},
    {"cross trainer", "training shoes", "Training"},
    {"sneaker", "sneakers", "Footwear"},
    {"trainer", "sneakers", "Footwear"},
    {"lifestyle shoe", "sneakers", "Lifestyle"},
    {"giày thể thao", "sneakers", "Footwear"},
    {"sandal", "sandals", "Sandals"},
    {"slide", "sandals", "Sandals"},
    {"flip flop", "sandals", "Sandals"},
    {"flip-flop", "sandals", "Sandals"},
    {"dép", "sandals", "Sandals"},
    {"dep", "sandals", "Sandals"},
    {"boot", "boots", "Boots"},
    {"shoe", "shoes", "Footwear"},
    {"footwear", "shoes", "Footwear"},
    {"giày", "shoes", "Footwear"},
    {"giay", "shoes", "Footwear"},
    {"t-shirt", "t-shirts", "T-Shirts"},
    {"t shirt", "t-shirts", "T-Shirts"},
    {"tshirt", "t-shirts", "T-Shirts"},
    {"tee", "t-shirts", "T-Shirts"},
    {"áo thun", "t-shirts", "T-Shirts"},
    {"ao thun", "t-shirts", "T-Shirts"},
    {"shorts", "shorts", "Shorts"},
    {"quần short", "shorts", "Shorts"},
    {"quan short", "shorts", "Shorts"},
    {"jacket", "jackets", "Jackets"},
    {"áo khoác", "jackets", "Jackets"},
    {"ao khoac", "jackets", "Jackets"},
    {"hoodie", "hoodies", "Hoodies"},
    {"hoody", "hoodies", "Hoodies"},
    {"sock", "socks", "Socks"},
    {"legging", "leggings", "Leggings"},
    {"tights", "leggings", "Leggings"},
    /* Not "top": "top running shoes" is praise, not a category. */
    {"tops", "tops", "Tops"},
    {"shirt", "tops", "Tops"},
    {"apparel", "apparel", "Apparel"},
    {"clothes", "apparel", "Apparel"},
    {"clothing", "apparel", "Apparel"},
};

static const sift_query_term builtin_colours[] = {
    {"black", "black", NULL},
    {"white", "white", NULL},
    {"red", "red", NULL},
    {"blue", "blue", NULL},
    {"light blue", "blue", NULL},
    {"navy", "navy", NULL},
    {"navy blue", "navy", NULL},
    {"grey", "grey", NULL},
    {"gray", "grey", NULL},
    {"charcoal", "grey", NULL},
    {"green", "green", NULL},
    {"olive", "olive", NULL},
    {"pink", "pink", NULL},
    {"purple", "purple", NULL},
    {"violet", "purple", NULL},
    {"orange", "orange", NULL},
    {"yellow", "yellow", NULL},
    {"volt", "volt yellow", NULL},
    {"volt yellow", "volt yellow", NULL},
    {"brown", "brown", NULL},
    {"beige", "beige", NULL},
    {"cream", "beige", NULL},
    {"gold", "gold", NULL},
    {"silver", "silver", NULL},
    {"multicolour", "multicolour", NULL},
    {"multicolor", "multicolour", NULL},
    {"đen", "black", NULL},
    {"trắng", "white", NULL},
    {"đỏ", "red", NULL},
    {"xanh dương", "blue", NULL},
    {"xanh da trời", "blue", NULL},
    {"xanh lá", "green", NULL},
    {"xanh lá cây", "green", NULL},
    {"hồng", "pink", NULL},
    {"xám", "grey", NULL},
    {"vàng", "yellow", NULL},
    {"nâu", "brown", NULL},
    {"cam", "orange", NULL},
    {"tím", "purple", NULL},
};

static const sift_query_term builtin_warehouses[] = {
    {"hanoi", "HAN", "Hanoi"},
    {"ha noi", "HAN", "Hanoi"},
    {"hn", "HAN", "Hanoi"},
    {"HAN", "HAN", "Hanoi"},
    {"da nang", "DAD", "Da Nang"},
    {"danang", "DAD", "Da Nang"},
    {"dn", "DAD", "Da Nang"},
    {"DAD", "DAD", "Da Nang"},
    {"ho chi minh city", "SGN", "Ho Chi Minh City"},
    {"ho chi minh", "SGN", "Ho Chi Minh City"},
    {"thanh pho ho chi minh", "SGN", "Ho Chi Minh City"},
    {"tp ho chi minh", "SGN", "Ho Chi Minh City"},
    {"tp hcm", "SGN", "Ho Chi Minh City"},
    {"tphcm", "SGN", "Ho Chi Minh City"},
    {"hcmc", "SGN", "Ho Chi Minh City"},
    {"hcm", "SGN", "Ho Chi Minh City"},
    {"saigon", "SGN", "Ho Chi Minh City"},
    {"sai gon", "SGN", "Ho Chi Minh City"},
    {"SGN", "SGN", "Ho Chi Minh City"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    const sift_query_term *terms;
    size_t n;
} builtin[SIFT_QL_COUNT] = {
    [SIFT_QL_BRAND] = {builtin_brands, COUNT(builtin_brands)},
    [SIFT_QL_TYPE] = {builtin_types, COUNT(builtin_types)},
    [SIFT_QL_COLOUR] = {builtin_colours, COUNT(builtin_colours)},
    [SIFT_QL_WAREHOUSE] = {builtin_warehouses, COUNT(builtin_warehouses)},
};

const sift_query_term *sift_query_vocab_builtin(sift_query_list which, size_t *n)
{
    if ((unsigned)which >= SIFT_QL_COUNT) {
        *n = 0;
        return NULL;
    }
    *n = builtin[which].n;
    return builtin[which].terms;
}

const char *sift_query_warehouse_name(const char *code)
{
    if (!code)
        return NULL;
    for (size_t i = 0; i < COUNT(builtin_warehouses); i++)
        if (strcmp(builtin_warehouses[i].value, code) == 0)
            return builtin_warehouses[i].extra;
    return NULL;
}

const char *sift_gender_name(sift_gender g)
{
    switch (g) {
    case SIFT_GENDER_MEN:
        return "men";
    case SIFT_GENDER_WOMEN:
        return "women";
    case SIFT_GENDER_KIDS:
        return "kids";
    case SIFT_GENDER_UNISEX:
        return "unisex";
    default:
        return NULL;
    }
}

/* Word lists of the fixed rules. Lower-case ASCII entries are compared with
 * the folded token, entries with non-ASCII with the lower-cased token. */
static const char *const stop_words[] = {
    "a",       "an",        "the",       "and",       "or",         "of",      "in",
    "at",      "on",        "to",        "for",       "with",       "from",    "by",
    "is",      "are",       "be",        "am",        "was",        "were",    "it",
    "its",     "it's",      "they",      "them",      "their",      "this",    "that",
    "these",   "those",     "i",         "i'm",       "im",         "i'd",     "me",
    "my",      "we",        "our",       "us",        "you",        "your",    "can",
    "could",   "would",     "will",      "should",    "do",         "does",    "did",
    "have",    "has",       "had",       "any",       "some",       "find",    "search",
    "show",    "get",       "give",      "buy",       "want",       "need",    "needs",
    "wants",   "wanted",    "best",      "good",      "nice",       "great",   "top",
    "looking", "look",      "like",      "please",    "pls",        "check",   "if",
    "whether", "there",     "there's",   "what",      "what's",     "which",   "where",
    "how",     "much",      "many",      "about",     "tell",       "let",     "know",
    "also",    "too",       "just",      "only",      "pair",       "pairs",   "one",
    "ones",    "something", "anything",  "warehouse", "warehouses", "store",   "stores",
    "shop",    "location",  "locations", "branch",    "branches",   "city",    "price",
    "prices",  "priced",    "cost",      "costs",     "size",       "sizes",   "colour",
    "color",   "not",       "no",        "yes",       "hi",         "hello",   "hey",
    "thanks",  "thank",     "got",       "each",      "all",        "both",    "sell",
    "carry",   "options",   "option",    "recommend", "suggest",    "than",    "between",
    "under",   "over",      "below",     "above",     "up",         "at",      "least",
    "most",    "now",       "then",      "either",    "currently",  "right",   "still",
    "else",    "other",     "instead",   "same",      "again",      "budget",  "cheap",
    "cheaper", "cheapest",  "expensive", "less",      "more",       "than",    "around",
    "about",   "what",      "versions",  "version",   "model",      "models",  "kind",
    "type",    "types",     "items",     "item",      "products",   "product", "o",
    "ở",       "không",     "khong",     "có",        "cho",        "tôi",     "toi",
    "mình",    "minh",      "mua",       "tìm",       "tim",        "giá",     "bao",
    "nhiêu",   "nhieu",     "kho",       "cái",       "đôi",        "và",      "hoặc",
    "hay",     "nhé",       "với",       "tại",       "nào",        "ạ",       "size",
    "cỡ",      "số",        "loại",      "màu",       "mau",
};

/* ---- characters -------------------------------------------------------- */

enum cls {
    C_SPACE = 0,
    C_PUNCT, /* breaks phrases: , ; : ! ? ( ) and friends */
    C_LETTER,
    C_DIGIT,
    C_APOS,   /* ' and U+2019 */
    C_HYPHEN, /* - and the Unicode dashes */
    C_DOT,
    C_COMMA,
    C_SYM,  /* $ < > ₫: tokens of their own */
    C_MARK, /* combining diacritic: part of a word, dropped when folding */
};

typedef struct uch {
    uint32_t cp;
    uint32_t off; /* byte offset in the input */
    uint8_t len;  /* bytes */
    uint8_t cls;
} uch;

/* Strict UTF-8 decoding: overlong forms, surrogates and code points past
 * U+10FFFF are invalid. Returns the length, or 0 for an invalid sequence. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int classify(uint32_t cp)
{
    if (cp < 0x80) {
        if (cp >= 'a' && cp <= 'z')
            return C_LETTER;
        if (cp >= 'A' && cp <= 'Z')
            return C_LETTER;
        if (cp >= '0' && cp <= '9')
            return C_DIGIT;
        switch (cp) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
        case '\f':
        case '\v':
            return C_SPACE;
        case '\'':
            return C_APOS;
        case '-':
            return C_HYPHEN;
        case '.':
            return C_DOT;
        case ',':
            return C_COMMA;
        case '$':
        case '<':
        case '>':
            return C_SYM;
        default:
            return cp < 0x20 || cp == 0x7F ? C_SPACE : C_PUNCT;
        }
    }
    if (cp == 0x2019 || cp == 0x2018)
        return C_APOS;
    if (cp >= 0x2010 && cp <= 0x2015)
        return C_HYPHEN;
    if (cp == 0x20AB)
        return C_SYM;
    if (cp >= 0x300 && cp <= 0x36F)
        return C_MARK;
    if (cp == 0xA0 || cp == 0x3000 || (cp >= 0x2000 && cp <= 0x200B))
        return C_SPACE;
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
        (cp >= 0x3000 && cp <= 0x303F) || cp == 0xFEFF || (cp >= 0xFF01 && cp <= 0xFF0F))
        return C_PUNCT;
    return C_LETTER;
}

/* Bases of U+00C0..U+00FF, U+0100..U+017F and the Vietnamese block
 * U+1EA0..U+1EF9 (one letter per upper/lower pair); '_' means none. */
static const char latin1_base[] = "aaaaaa_ceeeeiiiidnooooo_ouuuuy__"
                                  "aaaaaa_ceeeeiiiidnooooo_ouuuuy_y";
static const char latin_ext_a_base[] = "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii__jjkk_"
                                       "llllllllllnnnnnnnnnoooooo__rrrrrrsssssssstttttt"
                                       "uuuuuuuuuuuuwwyyyzzzzzzs";
static const char viet_base[] = "aaaaaaaaaaaaeeeeeeeeiioooooooooooouuuuuuuyyyy";

_Static_assert(sizeof(latin1_base) - 1 == 64, "latin1 table covers U+00C0..U+00FF");
_Static_assert(sizeof(latin_ext_a_base) - 1 == 128, "table covers U+0100..U+017F");
_Static_assert(sizeof(viet_base) - 1 == 45, "table covers U+1EA0..U+1EF9 in pairs");

/* Lower-case form of cp and its ASCII base letter (0 when it has none). */
static uint32_t fold_cp(uint32_t cp, char *base)
{
    *base = 0;
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z')
            cp += 32;
        *base = (char)cp;
        return cp;
    }
    if (cp >= 0xC0 && cp <= 0xFF) {
        char b = latin1_base[cp - 0xC0];
        *base = b == '_' ? 0 : b;
        if (cp <= 0xDE && cp != 0xD7)
            cp += 0x20;
        return cp;
    }
    if (cp >= 0x100 && cp <= 0x17F) {
        char b = latin_ext_a_base[cp - 0x100];
        *base = b == '_' ? 0 : b;
        if (cp == 0x178)
            return 0xFF;
        if (((cp <= 0x137) || (cp >= 0x14A && cp <= 0x177)) && (cp & 1) == 0)
            return cp + 1;
        if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) && (cp & 1) == 1)
            return cp + 1;
        return cp;
    }
    if (cp == 0x1A0 || cp == 0x1A1) {
        *base = 'o';
        return 0x1A1;
    }
    if (cp == 0x1AF || cp == 0x1B0) {
        *base = 'u';
        return 0x1B0;
    }
    if (cp >= 0x1EA0 && cp <= 0x1EF9) {
        *base = viet_base[(cp - 0x1EA0) / 2];
        return cp | 1;
    }
    return cp;
}

/* ---- tokens ------------------------------------------------------------ */

enum tkind { TK_WORD = 0, TK_NUM, TK_SYM };

enum role {
    R_NONE = 0,
    R_BRAND,
    R_TYPE,
    R_COLOUR,
    R_WAREHOUSE,
    R_PRICE,
    R_SIZE,
    R_GENDER,
    R_STOCK,
    R_CURRENCY,
    R_STOP,
};

typedef struct tok {
    const char *src; /* original bytes */
    size_t src_len;
    char *fold; /* lower-case, diacritics removed where a base letter exists */
    char *low;  /* lower-case, diacritics kept */
    uint8_t kind;
    uint8_t role;
    bool brk;          /* punctuation (not only spaces) before it, or first token */
    bool glued;        /* nothing at all between it and the previous token */
    bool num_ok;       /* TK_NUM: milli holds the value */
    bool first;        /* first token of a vocabulary match */
    int64_t milli;     /* TK_NUM value times 1000 */
    const char *value; /* canonical value of the match that claimed it */
} tok;

typedef struct lexer {
    sift_arena *a;
    const char *text;
    tok *t;
    size_t n;
    size_t cap;     /* room in t */
    bool truncated; /* input or tokens beyond the limits were ignored */
    bool full;      /* the token array is full: stop quietly */
} lexer;

/* Builds fold and low strings for chars [from, to). */
static int tok_strings(lexer *lx, tok *t, const uch *c, size_t from, size_t to)
{
    size_t cap = 0;
    for (size_t i = from; i < to; i++)
        cap += 4;
    t->fold = sift_arena_alloc(lx->a, cap + 1);
    t->low = sift_arena_alloc(lx->a, cap + 1);
    if (!t->fold || !t->low)
        return SIFT_ENOMEM;
    size_t nf = 0, nl = 0;
    for (size_t i = from; i < to; i++) {
        uint32_t cp = c[i].cp;
        if (c[i].cls == C_APOS)
            cp = '\'';
        else if (c[i].cls == C_HYPHEN)
            cp = '-';
        char base;
        uint32_t lo = fold_cp(cp, &base);
        nl += utf8_encode(lo, t->low + nl);
        if (c[i].cls == C_MARK)
            continue;
        if (base)
            t->fold[nf++] = base;
        else
            nf += utf8_encode(lo, t->fold + nf);
    }
    t->fold[nf] = '\0';
    t->low[nl] = '\0';
    return 0;
}

static const char *const units[] = {"k",   "tr",  "trieu", "m",    "mil", "million", "millions",
                                    "usd", "vnd", "d",     "dong", "eu",  "us",      "uk"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Value of a run of digits with '.' and ',' separators, times 1000; false
 * when it does not read as one number. "2,000,000" and "1.500.000" group
 * thousands, "42.5" and "1,5" have decimals, "1,234.56" has both. */
static bool parse_number(const char *s, size_t n, int64_t *milli)
{
    size_t nsep = 0, last = 0;
    char lastc = 0, otherc = 0;
    bool mixed = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' || s[i] == ',') {
            if (lastc && s[i] != lastc) {
                if (otherc && otherc != lastc)
                    return false;
                otherc = lastc;
                mixed = true;
            }
            nsep++;
            last = i;
            lastc = s[i];
        }
    }
    size_t int_end = n;     /* digits before this are the integer part ... */
    bool thousands = false; /* ... with separators to skip */
    if (nsep == 1) {
        if (n - last - 1 == 3)
            thousands = true;
        else
            int_end = last;
    } else if (nsep > 1) {
        if (mixed) {
            /* Only the last separator may differ: it is the decimal point. */
            int_end = last;
            for (size_t i = 0; i < last; i++)
                if ((s[i] == '.' || s[i] == ',') && s[i] == lastc)
                    return false;
        }
        thousands = true;
    }
    if (thousands) {
        /* Every group after the first separator must have three digits. */
        size_t group = 0;
        bool seen = false;
        for (size_t i = 0; i < int_end; i++) {
            if (s[i] == '.' || s[i] == ',') {
                if (seen && group != 3)
                    return false;
                seen = true;
                group = 0;
            } else {
                group++;
            }
        }
        if (seen && group != 3)
            return false;
    }
    int64_t v = 0;
    int digits = 0;
    for (size_t i = 0; i < int_end; i++) {
        if (s[i] == '.' || s[i] == ',')
            continue;
        if (++digits > 12)
            return false;
        v = v * 10 + (s[i] - '0');
    }
    int64_t frac = 0, scale = 100;
    for (size_t i = int_end + 1; i < n && int_end < n; i++) {
        if (scale == 0)
            break; /* more than three decimals: the rest is noise */
        frac += (s[i] - '0') * scale;
        scale /= 10;
    }
    *milli = v * 1000 + frac;
    return true;
}

static tok *tok_push(lexer *lx, const uch *c, size_t from, size_t to, int kind, bool brk,
                     bool glued)
{
    if (lx->n == lx->cap) {
        lx->truncated = true;
        lx->full = true;
        return NULL;
    }
    tok *t = &lx->t[lx->n];
    memset(t, 0, sizeof(*t));
    t->src = lx->text + c[from].off;
    t->src_len = (size_t)(c[to - 1].off + c[to - 1].len - c[from].off);
    t->kind = (uint8_t)kind;
    t->brk = brk;
    t->glued = glued;
    if (tok_strings(lx, t, c, from, to) != 0)
        return NULL;
    lx->n++;
    return t;
}

static int lex(lexer *lx, const char *text, size_t len)
{
    if (len > SIFT_QUERY_INPUT_MAX) {
        len = SIFT_QUERY_INPUT_MAX;
        lx->truncated = true;
    }
    lx->text = text;
    uch *c = sift_arena_alloc(lx->a, (len + 1) * sizeof(*c));
    /* Every token covers at least one byte, so short text needs few. */
    lx->cap = len < SIFT_QUERY_TOKENS_MAX ? len + 1 : SIFT_QUERY_TOKENS_MAX;
    lx->t = sift_arena_alloc(lx->a, lx->cap * sizeof(*lx->t));
    if (!c || !lx->t)
        return SIFT_ENOMEM;
    size_t nc = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (l == 0) {
            /* Invalid byte (or a character cut by the input limit): a space. */
            c[nc++] = (uch){' ', (uint32_t)i, 1, C_SPACE};
            i++;
            continue;
        }
        c[nc++] = (uch){cp, (uint32_t)i, (uint8_t)l, (uint8_t)classify(cp)};
        i += l;
    }

    bool brk = true, glued = false;
    size_t i = 0;
    while (i < nc) {
        int k = c[i].cls;
        if (k == C_SPACE) {
            glued = false;
            i++;
            continue;
        }
        if (k == C_PUNCT || k == C_DOT || k == C_COMMA || k == C_APOS || k == C_MARK) {
            brk = true;
            glued = false;
            i++;
            continue;
        }
        if (k == C_SYM || k == C_HYPHEN) {
            if (!tok_push(lx, c, i, i + 1, TK_SYM, brk, glued))
                return lx->full ? 0 : SIFT_ENOMEM;
            brk = false;
            glued = true;
            i++;
            continue;
        }
        /* A word or number: letters and digits, joined by an apostrophe or
         * hyphen between letters ("men's", "t-shirt") and by '.' or ','
         * between digits ("2,000,000", "42.5"). */
        size_t j = i + 1;
        while (j < nc) {
            int kj = c[j].cls;
            if (kj == C_LETTER || kj == C_DIGIT || kj == C_MARK) {
                j++;
                continue;
            }
            bool next_letter = j + 1 < nc && c[j + 1].cls == C_LETTER;
            bool next_digit = j + 1 < nc && c[j + 1].cls == C_DIGIT;
            int kp = c[j - 1].cls;
            if ((kj == C_APOS || kj == C_HYPHEN) && (kp == C_LETTER || kp == C_MARK) &&
                next_letter) {
                j++;
                continue;
            }
            if ((kj == C_DOT || kj == C_COMMA) && kp == C_DIGIT && next_digit) {
                j++;
                continue;
            }
            break;
        }
        /* A code such as the SKU "NIKE-PEG40-42" stays one word, so it is
         * searched as itself and "42" is not taken for a size: letters
         * first, then hyphen-joined letters and digits with a digit in. */
        if (c[i].cls == C_LETTER && j + 1 < nc && c[j].cls == C_HYPHEN &&
            (c[j + 1].cls == C_LETTER || c[j + 1].cls == C_DIGIT)) {
            size_t e = j;
            while (e + 1 < nc && c[e].cls == C_HYPHEN &&
                   (c[e + 1].cls == C_LETTER || c[e + 1].cls == C_DIGIT)) {
                e++;
                while (e < nc && (c[e].cls == C_LETTER || c[e].cls == C_DIGIT))
                    e++;
            }
            bool digit = false;
            for (size_t m = i; m < e && !digit; m++)
                digit = c[m].cls == C_DIGIT;
            if (digit)
                j = e;
        }
        size_t numend = i;
        while (numend < j &&
               (c[numend].cls == C_DIGIT || c[numend].cls == C_DOT || c[numend].cls == C_COMMA))
            numend++;
        tok *t;
        if (numend > i && numend == j) {
            t = tok_push(lx, c, i, j, TK_NUM, brk, glued);
            if (!t)
                return lx->full ? 0 : SIFT_ENOMEM;
            t->num_ok = parse_number(t->src, t->src_len, &t->milli);
        } else if (numend > i) {
            /* Digits with a letter suffix: "2tr", "100k", "42eu" split into
             * a number and a unit; anything else ("880v14") is one word. */
            tok probe;
            if (tok_strings(lx, &probe, c, numend, j) != 0)
                return SIFT_ENOMEM;
            if (in_list(probe.fold, units, COUNT(units))) {
                t = tok_push(lx, c, i, numend, TK_NUM, brk, glued);
                if (!t)
                    return lx->full ? 0 : SIFT_ENOMEM;
                t->num_ok = parse_number(t->src, t->src_len, &t->milli);
                if (!tok_push(lx, c, numend, j, TK_WORD, false, true))
                    return lx->full ? 0 : SIFT_ENOMEM;
            } else if (!tok_push(lx, c, i, j, TK_WORD, brk, glued)) {
                return lx->full ? 0 : SIFT_ENOMEM;
            }
        } else if (!tok_push(lx, c, i, j, TK_WORD, brk, glued)) {
            return lx->full ? 0 : SIFT_ENOMEM;
        }
        brk = false;
        glued = true;
        i = j;
    }
    return 0;
}

/* ---- matching ---------------------------------------------------------- */

/* Does word w[0..wn) match token t? Each word of a phrase has its own mode:
 * with an upper-case ASCII letter it must equal the original text exactly
 * ("DAD"); with non-ASCII bytes it must equal the lower-cased text, diacritics
 * and all ("đỏ"); otherwise the folded text ("da nang" = "Đà Nẵng"). With
 * `plural`, w followed by "s" matches too. */
static bool word_eq(const tok *t, const char *w, size_t wn, bool upper, bool nonascii, bool plural)
{
    if (upper) {
        return t->src_len == wn && memcmp(t->src, w, wn) == 0;
    }
    const char *s = nonascii ? t->low : t->fold;
    if (strncmp(s, w, wn) != 0)
        return false;
    return s[wn] == '\0' || (plural && s[wn] == 's' && s[wn + 1] == '\0');
}

/* Most phrases fail on their first byte: the callers test that inline before
 * calling match_words, which is where the time went. */
static inline bool first_ok(const lexer *lx, size_t i, const char *phrase)
{
    const tok *t = &lx->t[i];
    char c = phrase[0];
    return c == t->fold[0] || c == t->low[0] || c == t->src[0];
}

/* Number of tokens the phrase matches at position i (0: no match). Tokens
 * must be unclaimed, and no punctuation may separate them. Vocabulary
 * phrases (`rule` false) may include numbers; the fixed rules' phrases may
 * include symbols ("<", "$") but never a number, which is what they are
 * looking for. For product types (`plural`) the last word may take an "s". */
static size_t match_words(const lexer *lx, size_t i, const char *phrase, bool plural, bool rule)
{
    if (i >= lx->n)
        return 0;
    size_t k = 0;
    const char *p = phrase;
    while (*p) {
        bool upper = false, nonascii = false;
        size_t wn = 0;
        for (; p[wn] && p[wn] != ' '; wn++) {
            unsigned char c = (unsigned char)p[wn];
            upper = upper || (c >= 'A' && c <= 'Z');
            nonascii = nonascii || c >= 0x80;
        }
        size_t at = i + k;
        if (at >= lx->n)
            return 0;
        const tok *t = &lx->t[at];
        if (t->role != R_NONE || (k > 0 && t->brk) || (rule && t->kind == TK_NUM))
            return 0;
        if (!word_eq(t, p, wn, upper, nonascii, plural && p[wn] == '\0'))
            return 0;
        k++;
        p += wn;
        if (*p == ' ')
            p++;
    }
    return k;
}

static size_t match_rule(const lexer *lx, size_t i, const char *phrase)
{
    return i < lx->n && first_ok(lx, i, phrase) ? match_words(lx, i, phrase, false, true) : 0;
}

/* Longest phrase of `list` at i; returns its length in tokens. */
static size_t match_list(const lexer *lx, size_t i, const char *const *list, size_t n)
{
    size_t best = 0;
    for (size_t j = 0; j < n; j++) {
        size_t k = match_rule(lx, i, list[j]);
        if (k > best)
            best = k;
    }
    return best;
}

/* A per-parse index of a phrase list by first byte, so each token is tried
 * only against the phrases that can match it (a few instead of hundreds:
 * the lists were most of the parse time). Phrases are read through a stride
 * so that both plain string lists and sift_query_term arrays (phrase first)
 * can be indexed. Within a bucket the list order is kept. */
typedef struct pindex {
    const char *base;
    size_t stride;
    size_t n;
    uint16_t start[257];
    uint16_t *order;
} pindex;

static const char *pphrase(const pindex *x, size_t i)
{
    return *(const char *const *)(const void *)(x->base + i * x->stride);
}

static int pindex_build(sift_arena *a, pindex *x, const void *base, size_t stride, size_t n)
{
    memset(x, 0, sizeof(*x));
    x->base = base;
    x->stride = stride;
    x->n = n > UINT16_MAX ? UINT16_MAX : n;
    if (x->n == 0)
        return 0;
    x->order = sift_arena_alloc(a, x->n * sizeof(*x->order));
    if (!x->order)
        return SIFT_ENOMEM;
    uint16_t count[256] = {0};
    for (size_t i = 0; i < x->n; i++)
        count[(unsigned char)pphrase(x, i)[0]]++;
    for (int b = 0; b < 256; b++)
        x->start[b + 1] = (uint16_t)(x->start[b] + count[b]);
    uint16_t fill[256];
    memcpy(fill, x->start, sizeof(fill));
    for (size_t i = 0; i < x->n; i++)
        x->order[fill[(unsigned char)pphrase(x, i)[0]]++] = (uint16_t)i;
    return 0;
}

/* The phrases of x that may match token t, in list order: the buckets of the
 * token's first bytes (folded, lower-cased, original) merged. */
typedef struct cands {
    const uint16_t *at[3], *end[3];
} cands;

static void cands_init(cands *c, const pindex *x, const tok *t)
{
    unsigned char b[3] = {(unsigned char)t->fold[0], (unsigned char)t->low[0],
                          (unsigned char)t->src[0]};
    for (int k = 0; k < 3; k++) {
        bool dup = false;
        for (int j = 0; j < k; j++)
            dup = dup || b[j] == b[k];
        if (dup || x->n == 0) {
            c->at[k] = c->end[k] = NULL;
            continue;
        }
        c->at[k] = x->order + x->start[b[k]];
        c->end[k] = x->order + x->start[b[k] + 1];
    }
}

static bool cands_next(cands *c, size_t *idx)
{
    int best = -1;
    for (int k = 0; k < 3; k++)
        if (c->at[k] != c->end[k] && (best < 0 || *c->at[k] < *c->at[best]))
            best = k;
    if (best < 0)
        return false;
    *idx = *c->at[best]++;
    return true;
}

/* Indexes of the built-in lists, built once (pthread_once) and never
 * changed afterwards, so parses on any thread share them without locks. */
static pindex builtin_ix[SIFT_QL_COUNT];
static pindex stop_ix;
static uint16_t ix_storage[1024];
_Static_assert(COUNT(builtin_brands) + COUNT(builtin_types) + COUNT(builtin_colours) +
                       COUNT(builtin_warehouses) + COUNT(stop_words) <=
                   COUNT(ix_storage),
               "ix_storage holds every built-in phrase");
static pthread_once_t ix_once = PTHREAD_ONCE_INIT;

static void pindex_static(pindex *x, const void *base, size_t stride, size_t n, size_t *used)
{
    memset(x, 0, sizeof(*x));
    x->base = base;
    x->stride = stride;
    x->n = n;
    x->order = ix_storage + *used;
    *used += n;
    uint16_t count[256] = {0};
    for (size_t i = 0; i < n; i++)
        count[(unsigned char)pphrase(x, i)[0]]++;
    for (int b = 0; b < 256; b++)
        x->start[b + 1] = (uint16_t)(x->start[b] + count[b]);
    uint16_t fill[256];
    memcpy(fill, x->start, sizeof(fill));
    for (size_t i = 0; i < n; i++)
        x->order[fill[(unsigned char)pphrase(x, i)[0]]++] = (uint16_t)i;
}

static void build_static_indexes(void)
{
    size_t used = 0;
    for (int l = 0; l < SIFT_QL_COUNT; l++)
        pindex_static(&builtin_ix[l], builtin[l].terms, sizeof(sift_query_term), builtin[l].n,
                      &used);
    pindex_static(&stop_ix, stop_words, sizeof(stop_words[0]), COUNT(stop_words), &used);
}

/* Longest phrase of an indexed rule list at i. */
static size_t match_index(const lexer *lx, size_t i, const pindex *x)
{
    if (i >= lx->n)
        return 0;
    cands c;
    cands_init(&c, x, &lx->t[i]);
    size_t best = 0, j;
    while (cands_next(&c, &j)) {
        size_t k = match_words(lx, i, pphrase(x, j), false, true);
        if (k > best)
            best = k;
    }
    return best;
}

static void claim(lexer *lx, size_t i, size_t k, int role, const char *value)
{
    for (size_t j = i; j < i + k && j < lx->n; j++) {
        lx->t[j].role = (uint8_t)role;
        lx->t[j].value = value;
        lx->t[j].first = j == i;
    }
}

/* ---- the passes -------------------------------------------------------- */

static const int list_role[SIFT_QL_COUNT] = {
    [SIFT_QL_BRAND] = R_BRAND,
    [SIFT_QL_TYPE] = R_TYPE,
    [SIFT_QL_COLOUR] = R_COLOUR,
    [SIFT_QL_WAREHOUSE] = R_WAREHOUSE,
};

/* Warehouses first, then brands, types, colours: at equal length the earlier
 * list wins; a longer phrase always wins ("under armour" over nothing, "trail
 * running shoe" over "running shoe"). */
static const sift_query_list list_order[] = {SIFT_QL_WAREHOUSE, SIFT_QL_BRAND, SIFT_QL_TYPE,
                                             SIFT_QL_COLOUR};

static void add_colour(sift_query *q, const char *v)
{
    for (size_t i = 0; i < q->n_colours; i++)
        if (strcmp(q->colours[i], v) == 0)
            return;
    if (q->n_colours < SIFT_QUERY_COLOURS_MAX)
        q->colours[q->n_colours++] = v;
}

static void add_warehouse(sift_query *q, const char *v)
{
    for (size_t i = 0; i < q->n_warehouses; i++)
        if (strcmp(q->warehouses[i], v) == 0)
            return;
    if (q->n_warehouses < SIFT_QUERY_WAREHOUSES_MAX)
        q->warehouses[q->n_warehouses++] = v;
}

static int pass_vocab(lexer *lx, const sift_query_vocab *v, sift_query *q)
{
    /* [list][0]: the caller's terms, [list][1]: the built-in ones. */
    pindex ext[SIFT_QL_COUNT];
    const pindex *ix[SIFT_QL_COUNT][2] = {{NULL}};
    for (int l = 0; l < SIFT_QL_COUNT; l++) {
        if (v && v->list[l].n) {
            if (pindex_build(lx->a, &ext[l], v->list[l].terms, sizeof(sift_query_term),
                             v->list[l].n) != 0)
                return SIFT_ENOMEM;
            ix[l][0] = &ext[l];
        }
        if (!(v && v->no_defaults))
            ix[l][1] = &builtin_ix[l];
    }
    for (size_t i = 0; i < lx->n; i++) {
        if (lx->t[i].role != R_NONE || lx->t[i].kind == TK_SYM)
            continue;
        size_t best = 0;
        const sift_query_term *bt = NULL;
        sift_query_list bl = SIFT_QL_BRAND;
        for (size_t o = 0; o < COUNT(list_order); o++) {
            sift_query_list l = list_order[o];
            bool plural = l == SIFT_QL_TYPE;
            for (int src = 0; src < 2; src++) {
                const pindex *x = ix[l][src];
                if (!x)
                    continue;
                cands c;
                cands_init(&c, x, &lx->t[i]);
                size_t j;
                while (cands_next(&c, &j)) {
                    const sift_query_term *term =
                        (const sift_query_term *)(const void *)(x->base + j * x->stride);
                    size_t k = match_words(lx, i, term->phrase, plural, false);
                    if (k > best) {
                        best = k;
                        bt = term;
                        bl = l;
                    }
                }
            }
        }
        if (!bt)
            continue;
        claim(lx, i, best, list_role[bl], bt->value);
        switch (bl) {
        case SIFT_QL_BRAND:
            if (!q->brand)
                q->brand = bt->value;
            break;
        case SIFT_QL_TYPE:
            if (!q->category) {
                q->category = bt->value;
                q->category_segment = bt->extra;
            }
            break;
        case SIFT_QL_COLOUR:
            add_colour(q, bt->value);
            break;
        case SIFT_QL_WAREHOUSE:
            add_warehouse(q, bt->value);
            break;
        default:
            break;
        }
        i += best - 1;
    }
    return 0;
}

static bool is_word(const lexer *lx, size_t i, const char *w)
{
    return i < lx->n && lx->t[i].role == R_NONE && lx->t[i].kind != TK_NUM &&
           strcmp(lx->t[i].fold, w) == 0;
}

static bool is_sym(const lexer *lx, size_t i, const char *s)
{
    return i < lx->n && lx->t[i].role == R_NONE && lx->t[i].kind == TK_SYM &&
           strcmp(lx->t[i].low, s) == 0;
}

typedef struct amount {
    int64_t milli;
    const char *cur; /* stated currency or NULL */
    bool mult;       /* had a multiplier (k, million, tr) ... */
    int64_t multv;   /* ... of this value */
    size_t end;      /* index after the amount */
} amount;

/* Reads "$80", "2 million", "2tr", "1,500,000 VND", "100k đ", "99.99 USD" at
 * i. */
static bool read_amount(const lexer *lx, size_t i, amount *am)
{
    memset(am, 0, sizeof(*am));
    if (is_sym(lx, i, "$")) {
        am->cur = "USD";
        i++;
    }
    if (i >= lx->n || lx->t[i].kind != TK_NUM || lx->t[i].role != R_NONE || !lx->t[i].num_ok)
        return false;
    int64_t v = lx->t[i].milli;
    i++;
    int64_t mult = 1;
    if (i < lx->n && lx->t[i].kind == TK_WORD && lx->t[i].role == R_NONE) {
        const char *w = lx->t[i].fold;
        bool glued = lx->t[i].glued;
        if (strcmp(w, "million") == 0 || strcmp(w, "millions") == 0 || strcmp(w, "mil") == 0 ||
            strcmp(w, "tr") == 0 || strcmp(w, "trieu") == 0 || (glued && strcmp(w, "m") == 0))
            mult = 1000000;
        else if (strcmp(w, "nghin") == 0 || strcmp(w, "ngan") == 0 || strcmp(w, "thousand") == 0 ||
                 (glued && strcmp(w, "k") == 0))
            mult = 1000;
        if (mult > 1) {
            am->mult = true;
            am->multv = mult;
            i++;
        }
    }
    if (__builtin_mul_overflow(v, mult, &am->milli))
        return false;
    if (i < lx->n && lx->t[i].role == R_NONE) {
        const tok *t = &lx->t[i];
        const char *w = t->fold;
        bool usd = (t->kind == TK_SYM && strcmp(t->low, "$") == 0 && t->glued) ||
                   (t->kind == TK_WORD && (strcmp(w, "usd") == 0 || strcmp(w, "dollar") == 0 ||
                                           strcmp(w, "dollars") == 0 || strcmp(w, "bucks") == 0));
        bool vnd = (t->kind == TK_SYM && strcmp(t->low, "₫") == 0) ||
                   (t->kind == TK_WORD && (strcmp(w, "vnd") == 0 || strcmp(w, "dong") == 0 ||
                                           (t->glued && strcmp(w, "d") == 0)));
        if (usd || vnd) {
            am->cur = usd ? "USD" : "VND";
            i++;
        }
    }
    if (am->mult && !am->cur)
        am->cur = "VND"; /* "2 million", "2tr": only dong come in millions here */
    am->end = i;
    return true;
}

static const char *const max_words[] = {
    "under",   "below",     "less than",    "cheaper than",  "at most",  "max",
    "maximum", "up to",     "no more than", "not more than", "not over", "within",
    "budget",  "budget of", "budget is",    "lower than",    "<",        "dưới",
    "duoi",    "không quá", "khong qua",    "tối đa",        "toi da",   "rẻ hơn",
    "re hon",  "than",
};
static const char *const min_words[] = {
    "over",         "above",       "more than",
    "at least",     "min",         "minimum",
    "greater than", "higher than", "more expensive than",
    "pricier than", ">",           "trên",
    "tren",         "từ",          "tu",
    "from",         "starting at",
};

static void set_bounds(sift_query *q, const amount *lo, const amount *hi)
{
    const char *cur = (lo && lo->cur) ? lo->cur : (hi && hi->cur) ? hi->cur : NULL;
    bool inferred = false;
    if (!cur) {
        int64_t ref = hi ? hi->milli : lo->milli;
        cur = ref >= (int64_t)1000 * 1000 ? "VND" : "USD";
        inferred = true;
    }
    int exp = sift_currency_exponent(cur);
    int64_t scale = exp == 0 ? 1 : exp == 3 ? 1000 : 100;
    /* milli * scale / 1000, without overflow for the amounts read_amount allows. */
    if (lo) {
        q->has_price_min = true;
        q->price_min = lo->milli / 1000 * scale + lo->milli % 1000 * scale / 1000;
    }
    if (hi) {
        q->has_price_max = true;
        q->price_max = hi->milli / 1000 * scale + hi->milli % 1000 * scale / 1000;
    }
    q->price_currency = cur;
    q->price_currency_inferred = inferred;
    if (!inferred && !q->currency)
        q->currency = cur;
}

/* "between A and B", "from A to B", "A-B", "A to B", "từ A đến B". */
static bool try_range(lexer *lx, size_t i, size_t k, const char *sep_word, sift_query *q)
{
    amount lo, hi;
    if (!read_amount(lx, i + k, &lo))
        return false;
    size_t j = lo.end;
    size_t sk = 0;
    if (is_sym(lx, j, "-") ||
        (!sep_word && (is_word(lx, j, "to") || is_word(lx, j, "den") || is_word(lx, j, "and"))))
        sk = 1;
    else if (sep_word)
        sk = match_rule(lx, j, sep_word);
    if (!sk)
        return false;
    if (!read_amount(lx, j + sk, &hi))
        return false;
    /* Bare "A-B" must say it is money. */
    if (k == 0 && !lo.cur && !hi.cur && !lo.mult && !hi.mult)
        return false;
    /* "between 1 and 2 million": the multiplier of B applies to a bare A. */
    int64_t scaled;
    if (!lo.mult && hi.mult && !__builtin_mul_overflow(lo.milli, hi.multv, &scaled) &&
        scaled <= hi.milli)
        lo.milli = scaled;
    if (!lo.cur)
        lo.cur = hi.cur;
    if (!hi.cur)
        hi.cur = lo.cur;
    if (lo.milli > hi.milli) {
        amount t = lo;
        lo = hi;
        hi = t;
    }
    set_bounds(q, &lo, &hi);
    claim(lx, i, hi.end - i, R_PRICE, NULL);
    return true;
}

static void pass_price(lexer *lx, sift_query *q)
{
    for (size_t i = 0; i < lx->n; i++) {
        if (lx->t[i].role != R_NONE)
            continue;
        if (q->has_price_min || q->has_price_max)
            break; /* the first price expression wins */
        size_t k;
        if ((k = match_rule(lx, i, "between")) > 0 && try_range(lx, i, k, "and", q))
            continue;
        if ((k = match_rule(lx, i, "from")) > 0 && try_range(lx, i, k, "to", q))
            continue;
        if ((k = match_rule(lx, i, "from")) > 0 && try_range(lx, i, k, "until", q))
            continue;
        if ((k = match_rule(lx, i, "từ")) > 0 && try_range(lx, i, k, "đến", q))
            continue;
        if ((k = match_rule(lx, i, "tu")) > 0 && try_range(lx, i, k, "den", q))
            continue;
        amount am;
        k = match_list(lx, i, max_words, COUNT(max_words));
        if (k > 0 && read_amount(lx, i + k, &am)) {
            set_bounds(q, NULL, &am);
            claim(lx, i, am.end - i, R_PRICE, NULL);
            continue;
        }
        k = match_list(lx, i, min_words, COUNT(min_words));
        if (k > 0 && read_amount(lx, i + k, &am)) {
            set_bounds(q, &am, NULL);
            claim(lx, i, am.end - i, R_PRICE, NULL);
            continue;
        }
        if (try_range(lx, i, 0, NULL, q))
            continue;
        /* A lone amount with a currency or multiplier is a budget. */
        if (read_amount(lx, i, &am) && (am.cur || am.mult)) {
            set_bounds(q, NULL, &am);
            claim(lx, i, am.end - i, R_PRICE, NULL);
        }
    }
}

static const char *const letter_sizes[][2] = {
    {"xxs", "XXS"}, {"xs", "XS"},    {"s", "S"},     {"m", "M"},        {"l", "L"},
    {"xl", "XL"},   {"xxl", "XXL"},  {"2xl", "XXL"}, {"xxxl", "XXXL"},  {"3xl", "XXXL"},
    {"small", "S"}, {"medium", "M"}, {"large", "L"}, {"x-large", "XL"}, {"xx-large", "XXL"},
};

/* Category segments of the built-in types that are clothing. */
static const char *const apparel_segments[] = {"T-Shirts", "Shorts",   "Jackets", "Hoodies",
                                               "Socks",    "Leggings", "Tops",    "Apparel"};

static const char *letter_size(const char *w, bool bare)
{
    for (size_t i = 0; i < COUNT(letter_sizes); i++) {
        if (strcmp(w, letter_sizes[i][0]) != 0)
            continue;
        /* Alone, only the unmistakable ones: "m" or "small" may be anything. */
        if (bare && (strlen(w) < 2 || strcmp(w, "small") == 0 || strcmp(w, "medium") == 0 ||
                     strcmp(w, "large") == 0))
            return NULL;
        return letter_sizes[i][1];
    }
    return NULL;
}

static const char *size_system(const char *w)
{
    if (strcmp(w, "eu") == 0 || strcmp(w, "eur") == 0)
        return "EU";
    if (strcmp(w, "us") == 0)
        return "US";
    if (strcmp(w, "uk") == 0)
        return "UK";
    return NULL;
}

/* Shoe sizes go up to 50-something and in halves; 42.5 yes, 42.3 no. */
static bool size_number(const tok *t)
{
    return t->kind == TK_NUM && t->role == R_NONE && t->num_ok && t->milli > 0 &&
           t->milli <= 60000 && t->milli % 500 == 0;
}

static int set_size_num(lexer *lx, sift_query *q, const tok *t, const char *sys)
{
    int64_t whole = t->milli / 1000;
    q->size = t->milli % 1000 ? sift_arena_sprintf(lx->a, "%lld.5", (long long)whole)
                              : sift_arena_sprintf(lx->a, "%lld", (long long)whole);
    if (!q->size)
        return SIFT_ENOMEM;
    if (!sys && whole >= 30 && whole <= 50)
        sys = "EU"; /* no US, UK or kids' size is that large */
    q->size_system = sys;
    return 0;
}

static int pass_size(lexer *lx, sift_query *q)
{
    for (size_t i = 0; i < lx->n && !q->size; i++) {
        tok *t = &lx->t[i];
        if (t->role != R_NONE)
            continue;
        size_t k = match_list(lx, i, (const char *const[]){"size", "sz", "cỡ", "số"}, 4);
        if (k > 0) {
            size_t j = i + k;
            const char *sys =
                j < lx->n && lx->t[j].role == R_NONE ? size_system(lx->t[j].fold) : NULL;
            if (sys)
                j++;
            if (j < lx->n && size_number(&lx->t[j])) {
                size_t end = j + 1;
                if (!sys && end < lx->n && lx->t[end].role == R_NONE &&
                    (sys = size_system(lx->t[end].fold)) != NULL)
                    end++;
                if (set_size_num(lx, q, &lx->t[j], sys) != 0)
                    return SIFT_ENOMEM;
                claim(lx, i, end - i, R_SIZE, NULL);
                break;
            }
            const char *ls;
            if (!sys && j < lx->n && lx->t[j].role == R_NONE && lx->t[j].kind == TK_WORD &&
                (ls = letter_size(lx->t[j].fold, false)) != NULL) {
                q->size = ls;
                q->size_system = "INT";
                claim(lx, i, j + 1 - i, R_SIZE, NULL);
                break;
            }
        }
        /* "EU 42", "US 9", and "42 EU" / "42eu". */
        const char *sys = t->kind == TK_WORD ? size_system(t->fold) : NULL;
        if (sys && i + 1 < lx->n && size_number(&lx->t[i + 1])) {
            if (set_size_num(lx, q, &lx->t[i + 1], sys) != 0)
                return SIFT_ENOMEM;
            claim(lx, i, 2, R_SIZE, NULL);
            break;
        }
        if (size_number(t) && i + 1 < lx->n && lx->t[i + 1].role == R_NONE &&
            (sys = size_system(lx->t[i + 1].fold)) != NULL) {
            if (set_size_num(lx, q, t, sys) != 0)
                return SIFT_ENOMEM;
            claim(lx, i, 2, R_SIZE, NULL);
            break;
        }
        /* "us9", "eu42.5": one word. */
        if (t->kind == TK_WORD && strlen(t->fold) >= 3) {
            char sysw[3] = {t->fold[0], t->fold[1], 0};
            const char *rest = t->fold + 2;
            int64_t m;
            if ((sys = size_system(sysw)) != NULL && rest[0] >= '0' && rest[0] <= '9' &&
                strspn(rest, "0123456789.") == strlen(rest) &&
                parse_number(rest, strlen(rest), &m)) {
                tok tmp = {.kind = TK_NUM, .num_ok = true, .milli = m};
                if (size_number(&tmp)) {
                    if (set_size_num(lx, q, &tmp, sys) != 0)
                        return SIFT_ENOMEM;
                    claim(lx, i, 1, R_SIZE, NULL);
                    break;
                }
            }
        }
    }
    /* "XL", "XXL" on their own; "S", "M", "L" too, written in capitals, when
     * the shopper asked for clothing ("women's leggings M"). */
    bool apparel = q->category_segment &&
                   in_list(q->category_segment, apparel_segments, COUNT(apparel_segments));
    for (size_t i = 0; i < lx->n && !q->size; i++) {
        const tok *t = &lx->t[i];
        const char *ls = NULL;
        if (t->role != R_NONE || t->kind != TK_WORD)
            continue;
        if (apparel && t->src_len == 1 &&
            (t->src[0] == 'S' || t->src[0] == 'M' || t->src[0] == 'L'))
            ls = letter_size(t->fold, false);
        else
            ls = letter_size(t->fold, true);
        if (ls) {
            q->size = ls;
            q->size_system = "INT";
            claim(lx, i, 1, R_SIZE, NULL);
        }
    }
    return 0;
}

static const char *const men_words[] = {"men", "men's", "mens", "man", "male", "nam"};
static const char *const women_words[] = {"women", "women's", "womens", "woman", "ladies",
                                          "lady",  "female",  "nữ",     "nu"};
static const char *const kids_words[] = {"kids", "kid",   "kid's",  "kids'", "children", "child",
                                         "boys", "girls", "junior", "youth", "trẻ em",   "tre em"};
static const char *const stock_words[] = {
    "in stock",  "instock",      "in-stock", "stock",    "stocks",   "available", "availability",
    "inventory", "out of stock", "còn hàng", "con hang", "có sẵn",   "co san",    "sẵn hàng",
    "san hang",  "tồn kho",      "ton kho",  "hết hàng", "het hang", "have it",
};
static const char *const usd_words[] = {"usd", "dollar", "dollars", "$", "us dollars"};
static const char *const vnd_words[] = {"vnd", "dong", "₫", "vietnamese dong"};

static void pass_words(lexer *lx, sift_query *q)
{
    for (size_t i = 0; i < lx->n; i++) {
        if (lx->t[i].role != R_NONE)
            continue;
        size_t k;
        if ((k = match_list(lx, i, men_words, COUNT(men_words))) > 0) {
            /* "Việt Nam" is a country, not a gender. */
            if (!(i > 0 && strcmp(lx->t[i - 1].fold, "viet") == 0)) {
                if (!q->gender)
                    q->gender = SIFT_GENDER_MEN;
                claim(lx, i, k, R_GENDER, NULL);
            }
        } else if ((k = match_list(lx, i, women_words, COUNT(women_words))) > 0) {
            if (!q->gender)
                q->gender = SIFT_GENDER_WOMEN;
            claim(lx, i, k, R_GENDER, NULL);
        } else if ((k = match_list(lx, i, kids_words, COUNT(kids_words))) > 0) {
            if (!q->gender)
                q->gender = SIFT_GENDER_KIDS;
            claim(lx, i, k, R_GENDER, NULL);
        } else if ((k = match_rule(lx, i, "unisex")) > 0) {
            if (!q->gender)
                q->gender = SIFT_GENDER_UNISEX;
            claim(lx, i, k, R_GENDER, NULL);
        } else if ((k = match_list(lx, i, stock_words, COUNT(stock_words))) > 0) {
            q->in_stock = true;
            claim(lx, i, k, R_STOCK, NULL);
        } else if ((k = match_list(lx, i, usd_words, COUNT(usd_words))) > 0) {
            if (!q->currency)
                q->currency = "USD";
            claim(lx, i, k, R_CURRENCY, NULL);
        } else if ((k = match_list(lx, i, vnd_words, COUNT(vnd_words))) > 0) {
            if (!q->currency)
                q->currency = "VND";
            claim(lx, i, k, R_CURRENCY, NULL);
        }
    }
}

static int pass_stop(lexer *lx)
{
    const pindex *ix = &stop_ix;
    for (size_t i = 0; i < lx->n; i++) {
        tok *t = &lx->t[i];
        if (t->role != R_NONE)
            continue;
        if (t->kind == TK_SYM || (t->kind == TK_WORD && match_index(lx, i, ix) == 1))
            t->role = R_STOP;
    }
    return 0;
}

/* A bare number is a shoe size when it is in the EU range and not part of a
 * model name: "Nike 42", "shoes 42" and "42" are sizes, "Pegasus 40" and
 * "Ultraboost 22" are models. */
static int pass_bare_size(lexer *lx, sift_query *q)
{
    for (size_t i = 0; i < lx->n && !q->size; i++) {
        const tok *t = &lx->t[i];
        if (!size_number(t) || t->milli < 35000 || t->milli > 48000)
            continue;
        if (i + 1 < lx->n && lx->t[i + 1].glued && lx->t[i + 1].kind != TK_SYM)
            continue;
        bool ok = i == 0 || t->brk || lx->t[i - 1].role != R_NONE;
        if (i > 0 && lx->t[i - 1].kind == TK_NUM)
            ok = false;
        if (!ok)
            continue;
        if (set_size_num(lx, q, t, NULL) != 0)
            return SIFT_ENOMEM;
        claim(lx, i, 1, R_SIZE, NULL);
    }
    return 0;
}

static int build_keywords(lexer *lx, sift_query *q)
{
    sift_buf b;
    sift_buf_init(&b, 0);
    int rc = 0;
    for (size_t i = 0; i < lx->n && rc == 0; i++) {
        const tok *t = &lx->t[i];
        const char *w = NULL;
        bool lower = false;
        if ((t->role == R_BRAND || t->role == R_TYPE) && t->first) {
            /* The canonical value, so "giày chạy bộ" searches "running shoes". */
            w = t->value;
            lower = true;
        } else if (t->role == R_NONE && t->kind != TK_SYM) {
            w = t->low;
        }
        if (!w || !*w)
            continue;
        if (b.len)
            rc = sift_buf_putc(&b, ' ');
        for (const char *c = w; rc == 0 && *c; c++)
            rc = sift_buf_putc(&b, lower && *c >= 'A' && *c <= 'Z' ? (char)(*c + 32) : *c);
    }
    if (rc == 0)
        q->keywords = b.len ? sift_arena_memdup(lx->a, b.data, b.len + 1) : "";
    sift_buf_free(&b);
    if (rc != 0 || !q->keywords)
        return SIFT_ENOMEM;
    return 0;
}

int sift_query_parse_vocab(const sift_query_vocab *vocab, const char *text, size_t len,
                           sift_arena *a, sift_query *out)
{
    memset(out, 0, sizeof(*out));
    out->keywords = "";
    if (!text)
        len = 0;
    pthread_once(&ix_once, build_static_indexes);
    lexer lx = {.a = a};
    int rc = lex(&lx, text ? text : "", len);
    if (rc != 0)
        goto fail;
    if ((rc = pass_vocab(&lx, vocab, out)) != 0)
        goto fail;
    pass_price(&lx, out);
    if ((rc = pass_size(&lx, out)) != 0)
        goto fail;
    pass_words(&lx, out);
    if ((rc = pass_stop(&lx)) != 0)
        goto fail;
    if ((rc = pass_bare_size(&lx, out)) != 0)
        goto fail;
    if ((rc = build_keywords(&lx, out)) != 0)
        goto fail;
    out->truncated = lx.truncated;
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    out->keywords = "";
    return rc;
}

int sift_query_parse(const char *text, size_t len, sift_arena *a, sift_query *out)
{
    return sift_query_parse_vocab(NULL, text, len, a, out);
}

/* ---- vocabulary extension ---------------------------------------------- */

void sift_query_vocab_init(sift_query_vocab *v, sift_arena *a)
{
    memset(v, 0, sizeof(*v));
    v->arena = a;
}

#define PHRASE_MAX 128

int sift_query_vocab_add(sift_query_vocab *v, sift_query_list which, const char *phrase,
                         const char *value, const char *extra, sift_err *err)
{
    if ((unsigned)which >= SIFT_QL_COUNT)
        return sift_err_set(err, SIFT_EINVAL, "vocabulary list %d does not exist", (int)which);
    if (!phrase || !value || !*value)
        return sift_err_set(err, SIFT_EINVAL, "vocabulary term needs a phrase and a value");
    char norm[PHRASE_MAX + 1];
    size_t n = 0;
    bool upper = true, letters = false;
    for (const char *p = phrase; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 'a' && c <= 'z') {
            upper = false;
            letters = true;
        } else if (c >= 'A' && c <= 'Z') {
            letters = true;
        } else if (c >= 0x80) {
            upper = false;
        }
    }
    /* Only warehouse codes keep their case: a brand spelt "HOKA" in the store
     * must still match "hoka" in the text. */
    upper = upper && letters && which == SIFT_QL_WAREHOUSE;
    /* Lower-case with the same folding the text gets, spaces collapsed. */
    const unsigned char *s = (const unsigned char *)phrase;
    size_t len = strlen(phrase);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, len - i, &cp);
        if (l == 0)
            return sift_err_set(err, SIFT_EINVAL, "vocabulary phrase is not valid UTF-8");
        i += l;
        char enc[4];
        size_t el;
        if (classify(cp) == C_SPACE) {
            if (n == 0 || norm[n - 1] == ' ')
                continue;
            enc[0] = ' ';
            el = 1;
        } else {
            char base;
            uint32_t lo = upper ? cp : fold_cp(cp, &base);
            if (classify(cp) == C_APOS)
                lo = '\'';
            el = utf8_encode(lo, enc);
        }
        if (n + el > PHRASE_MAX)
            return sift_err_set(err, SIFT_EINVAL, "vocabulary phrase longer than %d bytes",
                                PHRASE_MAX);
        memcpy(norm + n, enc, el);
        n += el;
    }
    while (n > 0 && norm[n - 1] == ' ')
        n--;
    norm[n] = '\0';
    if (n == 0)
        return sift_err_set(err, SIFT_EINVAL, "vocabulary phrase is empty");
    if (v->list[which].n == v->list[which].cap) {
        size_t cap = v->list[which].cap ? v->list[which].cap * 2 : 16;
        sift_query_term *t = sift_arena_alloc(v->arena, cap * sizeof(*t));
        if (!t)
            return sift_err_set(err, SIFT_ENOMEM, "out of memory");
        if (v->list[which].n)
            memcpy(t, v->list[which].terms, v->list[which].n * sizeof(*t));
        v->list[which].terms = t;
        v->list[which].cap = cap;
    }
    sift_query_term *t = &v->list[which].terms[v->list[which].n];
    t->phrase = sift_arena_strdup(v->arena, norm);
    t->value = sift_arena_strdup(v->arena, value);
    t->extra = extra ? sift_arena_strdup(v->arena, extra) : NULL;
    if (!t->phrase || !t->value || (extra && !t->extra))
        return sift_err_set(err, SIFT_ENOMEM, "out of memory");
    v->list[which].n++;
    return 0;
}

/* ---- output ------------------------------------------------------------ */

static int put_money_plain(sift_buf *b, int64_t minor, const char *currency, bool commas)
{
    int exp = currency ? sift_currency_exponent(currency) : 0;
    int64_t scale = exp == 0 ? 1 : exp == 3 ? 1000 : 100;
    uint64_t m = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t whole = m / (uint64_t)scale, frac = m % (uint64_t)scale;
    char digits[24];
    int nd = snprintf(digits, sizeof digits, "%llu", (unsigned long long)whole);
    int rc = minor < 0 ? sift_buf_putc(b, '-') : 0;
    for (int i = 0; i < nd && rc == 0; i++) {
        if (commas && i > 0 && (nd - i) % 3 == 0)
            rc = sift_buf_putc(b, ',');
        if (rc == 0)
            rc = sift_buf_putc(b, digits[i]);
    }
    if (rc == 0 && frac)
        rc = sift_buf_printf(b, ".%0*llu", exp, (unsigned long long)frac);
    return rc;
}

int sift_query_format_money(int64_t minor, const char *currency, sift_buf *out)
{
    size_t mark = out->len;
    int rc = put_money_plain(out, minor, currency, true);
    if (rc == 0 && currency)
        rc = sift_buf_printf(out, " %s", currency);
    if (rc != 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    return rc;
}

static int put_str(sift_buf *b, const char *s)
{
    return sift_buf_json_string(b, s, s ? strlen(s) : 0);
}

int sift_query_filters_json(const sift_query *q, sift_buf *out)
{
    size_t mark = out->len;
    const char *cur = q->price_currency ? q->price_currency : q->currency;
    int rc = sift_buf_puts(out, "{\"brand\":");
    if (rc == 0)
        rc = put_str(out, q->brand);
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"category\":");
    if (rc == 0)
        rc = put_str(out, q->category);
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"size\":");
    if (rc == 0)
        rc = put_str(out, q->size);
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"size_system\":");
    if (rc == 0)
        rc = put_str(out, q->size_system);
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"colour\":");
    if (rc == 0 && q->n_colours == 0)
        rc = sift_buf_puts(out, "null");
    for (size_t i = 0; rc == 0 && i < q->n_colours; i++) {
        rc = sift_buf_putc(out, i ? ',' : '[');
        if (rc == 0)
            rc = put_str(out, q->colours[i]);
        if (rc == 0 && i + 1 == q->n_colours)
            rc = sift_buf_putc(out, ']');
    }
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"gender\":");
    if (rc == 0)
        rc = put_str(out, sift_gender_name(q->gender));
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"price_min\":");
    if (rc == 0)
        rc = q->has_price_min ? put_money_plain(out, q->price_min, cur, false)
                              : sift_buf_puts(out, "null");
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"price_max\":");
    if (rc == 0)
        rc = q->has_price_max ? put_money_plain(out, q->price_max, cur, false)
                              : sift_buf_puts(out, "null");
    if (rc == 0)
        rc = sift_buf_puts(out, ",\"currency\":");
    if (rc == 0)
        rc = put_str(out, cur);
    if (rc == 0)
        rc = sift_buf_printf(out, ",\"in_stock\":%s,\"warehouses\":[",
                             q->in_stock ? "true" : "false");
    for (size_t i = 0; rc == 0 && i < q->n_warehouses; i++) {
        if (i)
            rc = sift_buf_putc(out, ',');
        if (rc == 0)
            rc = put_str(out, q->warehouses[i]);
    }
    if (rc == 0)
        rc = sift_buf_puts(out, "]}");
    if (rc != 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    return rc;
}

int sift_query_summary(const sift_query *q, sift_buf *out)
{
    size_t mark = out->len;
    int rc = 0;
    int parts = 0;
#define SEP() (rc == 0 && parts++ ? sift_buf_puts(out, "; ") : rc)
    if (q->brand) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_printf(out, "brand %s", q->brand);
    }
    if (q->category) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_printf(out, "type %s", q->category);
    }
    if (q->size) {
        rc = SEP();
        if (rc == 0)
            rc = q->size_system ? sift_buf_printf(out, "size %s (%s)", q->size, q->size_system)
                                : sift_buf_printf(out, "size %s", q->size);
    }
    if (q->n_colours) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_puts(out, "colour ");
        for (size_t i = 0; rc == 0 && i < q->n_colours; i++)
            rc = sift_buf_printf(out, "%s%s", i ? " or " : "", q->colours[i]);
    }
    if (q->gender) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_printf(out, "for %s", sift_gender_name(q->gender));
    }
    if (q->has_price_min || q->has_price_max) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_puts(out, "price ");
        if (rc == 0 && q->has_price_min && q->has_price_max) {
            rc = sift_buf_puts(out, "between ");
            if (rc == 0)
                rc = put_money_plain(out, q->price_min, q->price_currency, true);
            if (rc == 0)
                rc = sift_buf_puts(out, " and ");
        } else if (rc == 0) {
            rc = sift_buf_puts(out, q->has_price_min ? "from " : "up to ");
            if (rc == 0 && q->has_price_min)
                rc = put_money_plain(out, q->price_min, q->price_currency, true);
        }
        if (rc == 0 && q->has_price_max)
            rc = put_money_plain(out, q->price_max, q->price_currency, true);
        if (rc == 0)
            rc = sift_buf_printf(out, " %s%s", q->price_currency,
                                 q->price_currency_inferred ? " (assumed)" : "");
    }
    if (q->currency && (!q->price_currency || q->price_currency_inferred)) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_printf(out, "currency %s", q->currency);
    }
    if (q->in_stock) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_puts(out, "in stock");
    }
    if (q->n_warehouses) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_puts(out, "warehouses ");
        for (size_t i = 0; rc == 0 && i < q->n_warehouses; i++)
            rc = sift_buf_printf(out, "%s%s", i ? ", " : "", q->warehouses[i]);
    }
    if (rc == 0 && parts == 0) {
        rc = sift_buf_puts(out, "no constraints");
        parts++;
    }
    if (rc == 0 && q->keywords && *q->keywords) {
        rc = SEP();
        if (rc == 0)
            rc = sift_buf_puts(out, "keywords \"");
        if (rc == 0)
            rc = sift_buf_json_escape(out, q->keywords, strlen(q->keywords));
        if (rc == 0)
            rc = sift_buf_putc(out, '"');
    }
#undef SEP
    if (rc != 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    return rc;
}
