/* The web page's static files (src/api/ui/), embedded in the binary at
 * build time: cmake/embed.cmake writes the source that defines them. */
#ifndef PTC_API_UI_FILES_H
#define PTC_API_UI_FILES_H

#include <stddef.h>

typedef struct ptc_ui_file {
    const char *name; /* e.g. "app.js" */
    const unsigned char *data;
    size_t len;
} ptc_ui_file;

/* Every file, ended by an entry whose name is NULL. */
extern const ptc_ui_file ptc_ui_files[];

#endif
