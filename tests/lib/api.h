/* A client of the daemon's API for integration tests: requests over the
 * daemon's Unix socket or its TCP listener (libcurl), replies read as JSON
 * (jansson), and the event stream read as it comes.
 *
 * Requests are made exactly as the test says, headers included, so that a
 * test can send what a hostile client would (a wrong token, a foreign
 * Host or Origin, a body that is not JSON or is too big). Every call is
 * bounded by a timeout; none of them fails the test by itself: the caller
 * asserts on what came back.
 */
#ifndef SHOAL_TEST_API_H
#define SHOAL_TEST_API_H

#include <jansson.h>
#include <stddef.h>

#include "tests/lib/proc.h"

/* One request's bound. */
#define API_TIMEOUT_MS 10000

/* Where requests go. */
struct api_conn {
  char sock[PROC_PATH_MAX]; /* the Unix socket, or "" for TCP */
  char base[128];           /* "http://localhost", "http://127.0.0.1:PORT" */
  char token[128];          /* sent as "Authorization: Bearer", "" none */
};

struct api_reply {
  long status; /* the HTTP status; 0 when the transfer failed */
  char *body;  /* NUL-terminated (never NULL after api_request) */
  size_t len;
  json_t *json;    /* the body as JSON, or NULL */
  char ctype[128]; /* the Content-Type, "" when none */
  char error[256]; /* libcurl's message when status is 0 */
};

/* Once per program, before any request (libcurl's global state). */
int api_global_init(void);
void api_global_cleanup(void);

/* A connection to the daemon whose socket is sock. */
void api_conn_unix(struct api_conn *c, const char *sock);
/* A connection to hostport ("127.0.0.1:PORT") with token (NULL: none). */
void api_conn_tcp(struct api_conn *c, const char *hostport, const char *token);

/* Makes one request: method on path (from "/"), with body (len bytes, NULL
 * for none) and the extra headers (NULL-ended, may be NULL; "Host: x"
 * replaces libcurl's own). Fills r (api_reply_free releases it). Returns 0
 * when an HTTP reply came, -1 when the transfer failed (r->error says
 * why). */
int api_request(const struct api_conn *c, const char *method, const char *path,
                const char *body, size_t len, const char *const *headers,
                struct api_reply *r);
void api_reply_free(struct api_reply *r);

/* A reply's string field, or NULL (also for a JSON null). */
const char *api_str(const json_t *o, const char *key);
/* A reply's integer field, or -1 when missing or not an integer. */
long long api_int(const json_t *o, const char *key);

/* The event stream (GET /v1/events), read while the test goes on. */
struct api_stream;

/* Opens the stream. Returns 0 or -1. */
int api_stream_open(struct api_stream **out, const struct api_conn *c);
/* Reads the stream for up to timeout_ms, calling fn(event, data, arg) for
 * each event that came in full, in order, until fn returns non-zero.
 * Returns fn's value, 0 at the deadline, or -1 when the stream ended or
 * failed. */
int api_stream_wait(struct api_stream *s,
                    int (*fn)(const char *event, const char *data, void *arg),
                    void *arg, int timeout_ms);
void api_stream_close(struct api_stream *s);

#endif
