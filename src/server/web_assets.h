/* Internal to src/server: the search page's files (web/), embedded into the
 * binary at build time by scripts/embed_web.cmake and served by page.c. */
#ifndef SIFT_SERVER_WEB_ASSETS_H
#define SIFT_SERVER_WEB_ASSETS_H

#include <stddef.h>

typedef struct sift_web_asset {
    const char *path;         /* "/index.html" */
    const char *content_type; /* "text/html; charset=utf-8" */
    const char *etag;         /* quoted: "\"3f2a...\"" */
    const unsigned char *data;
    size_t len; /* data[len] is a NUL that is not served */
} sift_web_asset;

/* Sorted by path, ended by an entry whose path is NULL. */
extern const sift_web_asset sift_web_assets[];

#endif
