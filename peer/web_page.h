/* The daemon's web page (peer/web/index.html), compiled into shoal-peer.
 *
 * The Makefile generates its bytes into $(BUILD)/gen/peer/web_page.c from
 * the HTML file, so the page is edited as HTML and served from memory: the
 * daemon needs no file beside its binary. The page is one self-contained
 * document (inline style and script, nothing loaded from elsewhere); it
 * talks only to the API of docs/api.md.
 */
#ifndef SHOAL_PEER_WEB_PAGE_H
#define SHOAL_PEER_WEB_PAGE_H

#include <stddef.h>

/* The page's bytes (UTF-8 HTML), followed by a NUL that web_page_html_len
 * does not count. Static: they live as long as the program. */
extern const unsigned char web_page_html[];
extern const size_t web_page_html_len;

#endif
