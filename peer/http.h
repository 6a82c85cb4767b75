/* The daemon's HTTP server: libmicrohttpd driven by the caller's libuv
 * loop, on a Unix socket and, optionally, on a loopback TCP address.
 *
 * libmicrohttpd runs without threads of its own, in its epoll mode: one
 * uv_poll_t watches its epoll descriptor and one uv_timer_t its timeouts,
 * and both call MHD_run on the loop thread. Every request handler and every
 * event-stream write therefore runs on the loop, beside the node, with no
 * lock.
 *
 * What the server checks before a handler sees a request:
 * - the body is at most max_body bytes (413 otherwise, without reading the
 *   rest, and the connection closes; a chunked body that grows past it
 *   has its connection closed with no answer, since libmicrohttpd cannot
 *   answer in the middle of a body);
 * - at most max_connections connections are open per listener (the rest
 *   are closed as soon as they are accepted);
 * - on TCP, a Host header that names the listen address, localhost,
 *   127.0.0.1 or [::1] (with the listen port) and nothing else, so that a
 *   web page whose name was re-pointed at 127.0.0.1 (DNS rebinding) is
 *   refused (403);
 * - on both listeners, an Origin header, when present, that is one of those
 *   same origins, "http://" and a Host the TCP listener takes (on the Unix
 *   socket, those names without a port too), and 403 otherwise: a
 *   cross-site page cannot drive the API;
 * - on TCP, for every path under /v1/, the token, as
 *   "Authorization: Bearer TOKEN" (401 when missing or wrong, compared in
 *   constant time). The Unix socket needs no token: its mode (0600) and
 *   the home folder's are the check. Paths outside /v1/ (the page) need
 *   none: they hold no data.
 * Refusals are JSON errors like every other ({"error": "...", "status":
 * N}).
 *
 * Ownership: the server borrows the loop and the config's strings for the
 * call to http_start only (it copies what it keeps). A response body is
 * handed to the server (malloc'd) or points at static bytes.
 */
#ifndef SHOAL_PEER_HTTP_H
#define SHOAL_PEER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_MAX_BODY_DEFAULT (64u << 10)
#define HTTP_MAX_CONNECTIONS_DEFAULT 64u
/* Idle connections are closed after this many seconds (event streams are
 * kept alive by a comment line every HTTP_SSE_KEEPALIVE_MS). */
#define HTTP_IDLE_TIMEOUT_S 60u
#define HTTP_SSE_KEEPALIVE_MS 15000u
/* Bytes an event stream may have queued before it is closed as too slow. */
#define HTTP_SSE_MAX_QUEUED (1u << 20)

struct http_server;

/* A request as a handler sees it; everything in it is borrowed for the
 * handler's call only. */
struct http_request {
  const char *method; /* "GET", "POST", ... */
  const char *path;   /* without the query: "/v1/contents/ID" */
  /* The query string's arguments, read with http_query(). */
  const void *conn; /* the server's; for http_query only */
  const char *body; /* NUL-terminated; "" when there is none */
  size_t body_len;
  int via_tcp; /* came through the TCP listener (else the Unix socket) */
};

/* A query argument ("?data=delete": http_query(req, "data") is "delete"),
 * or NULL. */
const char *http_query(const struct http_request *req, const char *key);

struct http_response {
  int status;               /* 200 when the handler leaves it 0 */
  const char *content_type; /* "application/json" when NULL */
  char *body;               /* malloc'd; the server frees it */
  const void *static_body;  /* or bytes that outlive the server */
  size_t static_len;
  /* Set to turn the request into an event stream (text/event-stream):
   * the response stays open, and http_broadcast() writes to it. body, if
   * any, is sent first, as it is: whole events, as http_event_format()
   * makes them (the initial event). */
  int event_stream;
};

/* Fills res with a JSON error {"error": msg, "status": status}, freeing a
 * body the handler had set. */
void http_error(struct http_response *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One event as a stream carries it, "event: NAME\ndata: DATA\n\n" (a data
 * with line breaks, "\n", "\r\n" or "\r", becomes one data line per line),
 * malloc'd; NULL when out of memory. For an event stream's initial body. */
char *http_event_format(const char *event, const char *data);

typedef void (*http_handler_cb)(void *arg, const struct http_request *req,
                                struct http_response *res);

struct http_config {
  const char *unix_path;    /* made with mode 0600 (an old socket there is
                               replaced only when nothing answers on it); NULL:
                               no Unix listener */
  const char *tcp_listen;   /* "127.0.0.1:PORT", "[::1]:PORT" or NULL; PORT 0
                               takes any free port (http_tcp_port tells) */
  const char *token;        /* required on TCP; NULL only without TCP */
  size_t max_body;          /* 0: HTTP_MAX_BODY_DEFAULT */
  unsigned max_connections; /* 0: HTTP_MAX_CONNECTIONS_DEFAULT */
  /* 0 for each of these: the HTTP_ constant (the tests shrink them). */
  size_t sse_max_queued;
  unsigned sse_keepalive_ms;
  unsigned idle_timeout_s;
  http_handler_cb handler;
  void *arg;
};

/* Starts listening. Returns 0, or an error with a one-line reason in msg
 * (cap bytes): UV_EADDRINUSE (a daemon already answers on the socket, or
 * the port is taken), SHOAL_EINVAL (a bad listen address: only loopback
 * addresses are allowed; TCP without a token), UV_EEXIST (the socket path
 * is something other than a socket: it is left alone), a file-system error
 * for the socket. A failure leaves nothing open (a handle it had made
 * closes on the loop's next turn). Call it, and everything below, on the
 * loop's thread. */
int http_start(struct http_server **out, uv_loop_t *loop,
               const struct http_config *c, char *msg, size_t cap);

/* The TCP port listened on, 0 without TCP. */
uint16_t http_tcp_port(const struct http_server *s);

/* Writes one event ("event: NAME\ndata: JSON\n\n") to every open event
 * stream; a stream that has more than HTTP_SSE_MAX_QUEUED bytes waiting is
 * closed. A client that went away while its stream was idle is noticed
 * here or at the next keep-alive comment (libmicrohttpd does not watch a
 * suspended connection). Call it on the loop thread, from a handler too. */
void http_broadcast(struct http_server *s, const char *event, const char *data);
/* Open event streams. */
unsigned http_stream_count(const struct http_server *s);

/* Stops listening, ends every connection (an event stream with a clean
 * end when it can), removes the Unix socket (if it is still this server's),
 * and calls cb once every handle is closed; then the server is freed. NULL
 * is a no-op (cb is still called, at once). Call it once. It may be called
 * from a handler: the connections are then ended on the next turn of the
 * loop, and no handler runs in between. cb may be NULL. */
void http_stop(struct http_server *s, void (*cb)(void *arg), void *arg);

#endif
