/* The daemon's API: the /v1/ routes of docs/api.md over the daemon's
 * operations, the page at /, and the event stream.
 *
 * api.c turns HTTP requests (http.h) into daemon calls (daemon.h) and the
 * daemon's views into JSON (jansson); it listens for the daemon's changes
 * and writes them to every event stream, with the progress of contents
 * that moved and the totals once a second.
 *
 * The token for TCP clients lives in HOME/api.token (mode 0600): 32
 * random bytes in hex, made at the first start and kept after.
 */
#ifndef SHOAL_PEER_API_H
#define SHOAL_PEER_API_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "peer/daemon.h"

#define API_SOCKET_NAME "api.sock"
#define API_TOKEN_NAME "api.token"
#define API_TOKEN_CHARS 64
#define API_PROGRESS_MS 1000u

struct api;

struct api_config {
  const char *home;
  const char *tcp_listen; /* NULL: the Unix socket only */
  const char *version;
  const uint8_t *peer_pk; /* 32 bytes */
};

/* Starts serving d's API. Returns 0, or an error with one line in msg. */
int api_start(struct api **out, uv_loop_t *loop, struct daemon *d,
              const struct api_config *c, char *msg, size_t cap);

/* Where the API is: the socket's path, the TCP address ("" without), and
 * the page's address with its token ("" without TCP). Borrowed. */
const char *api_socket_path(const struct api *a);
const char *api_tcp_address(const struct api *a);
const char *api_page_url(const struct api *a);

/* Ends every stream and stops listening; cb(arg) once closed, then the
 * api is freed. NULL is a no-op (cb still comes). */
void api_stop(struct api *a, void (*cb)(void *arg), void *arg);

#endif
