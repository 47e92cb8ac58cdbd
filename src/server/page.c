/* The search page: GET / and the files of web/, compiled into the binary
 * (web_assets.h), so a deployed sift needs no files beside it.
 *
 * Each file is answered with its content type and a strong ETag (a hash of
 * its bytes, fixed at build time) and "Cache-Control: no-cache": a browser
 * keeps its copy but asks each time, and gets 304 until the binary changes.
 * The page holds no secret and reads no data itself, so it is served without
 * an API key; the API calls it makes carry the key the shopper types (or
 * ?key=), as docs/api.md says. The Content-Security-Policy allows only this
 * origin: the page loads nothing from elsewhere. */
#include <string.h>

#include "api_int.h"
#include "server/web_assets.h"

#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' " \
    "data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* 1 when an If-None-Match header lists `etag` or is "*". The tags carry
 * their quotes, so a substring match is an exact one; a weak W/"..." form of
 * the tag matches too, as RFC 9110 asks for If-None-Match. */
static int etag_matches(const char *inm, const char *etag)
{
    while (*inm == ' ')
        inm++;
    return !strcmp(inm, "*") || strstr(inm, etag) != NULL;
}

/* The asset a route was added for: "/" is index.html. */
static const sift_web_asset *asset_of(const char *path)
{
    if (!strcmp(path, "/"))
        path = "/index.html";
    for (const sift_web_asset *a = sift_web_assets; a->path; a++)
        if (!strcmp(a->path, path))
            return a;
    return NULL;
}

static void serve_asset(sift_http_exchange *x, void *udata)
{
    const sift_web_asset *a = asset_of(sift_http_path(x));
    if (!a) { /* only routes of assets lead here */
        sift_http_respond_error(x, 500, "internal", "no embedded file for this route");
        return;
    }
    const char *inm = sift_http_header(x, "if-none-match", NULL);
    sift_http_set_header(x, "etag", a->etag);
    sift_http_set_header(x, "cache-control", "no-cache");
    sift_http_set_header(x, "x-content-type-options", "nosniff");
    if (inm && etag_matches(inm, a->etag)) {
        sift_http_respond(x, 304, NULL, NULL, 0);
        return;
    }
    if (!strcmp(a->content_type, "text/html; charset=utf-8")) {
        sift_http_set_header(x, "content-security-policy", CSP);
        sift_http_set_header(x, "referrer-policy", "no-referrer");
    }
    sift_http_respond(x, 200, a->content_type, a->data, a->len);
}

int sift_api_page_mount(sift_api *api, sift_server *srv)
{
    (void)api;
    for (const sift_web_asset *a = sift_web_assets; a->path; a++) {
        if (sift_server_route(srv, "GET", a->path, serve_asset, NULL))
            return SIFT_ENOMEM;
        if (!strcmp(a->path, "/index.html") &&
            sift_server_route(srv, "GET", "/", serve_asset, NULL))
            return SIFT_ENOMEM;
    }
    return 0;
}
