/* The operator's web page (GET /, GET /ui/{file}): static files embedded at
 * build time (ui_files.h), answered with headers that let a browser run
 * nothing else on this origin.  The page is a client of this same API, and
 * the names, details and upstream answers it shows are hostile input. */
#include "api/api_internal.h"

#include "api/ui_files.h"
#include "core/util.h"

#include <string.h>

/* No inline script or style is allowed, so a node injected through data
 * can run nothing; connect-src 'self' keeps the token on this origin. */
static const ptc_header page_headers[] = {
    {"Cache-Control", "no-cache"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
    {"Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
    {NULL, NULL},
};

/* Where each embedded file is answered, and as what. */
static const struct page {
    const char *path, *file, *content_type;
} pages[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/ui/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/ui/app.css", "app.css", "text/css; charset=utf-8"},
};

static const ptc_ui_file *file_named(const char *name)
{
    const ptc_ui_file *f = ptc_ui_files;
    while (f->name && strcmp(f->name, name) != 0)
        f++;
    return f->name ? f : NULL;
}

void ptc_api_ui(ptc_call *c)
{
    const struct page *page = NULL;
    const ptc_ui_file *f = NULL;

    for (size_t i = 0; i < PTC_ARRAY_LEN(pages) && page == NULL; i++)
        if (strcmp(c->path, pages[i].path) == 0)
            page = &pages[i];
    if (page)
        f = file_named(page->file);
    if (f == NULL) {
        ptc_call_error(c, 404, "NOT_FOUND", "no such API path", NULL);
        return;
    }
    c->status = 200;
    c->data = f->data;
    c->data_len = f->len;
    c->content_type = page->content_type;
    c->headers = page_headers;
}
