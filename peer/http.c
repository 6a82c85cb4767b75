/* The daemon's HTTP server: two libmicrohttpd daemons (the Unix socket and
 * the loopback TCP listener) driven by the caller's libuv loop, the checks
 * every request passes before its handler (Host, Origin, token, body size,
 * connection count), and the event streams that http_broadcast feeds.
 *
 * libmicrohttpd runs in its epoll mode with no thread of its own: each
 * listener has a uv_poll_t on libmicrohttpd's epoll descriptor and a
 * uv_timer_t set from MHD_get_timeout, and both call MHD_run. An event
 * stream whose queue is empty suspends its connection (a content reader
 * that returned 0 would be called again at once); http_broadcast and the
 * keep-alive timer resume it and schedule an MHD_run.
 */
#include "peer/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

#define WHO "http"
/* The token is kept only as its hash: two hashes compare in constant time
 * whatever the length of what a client sent. */
#define TOKEN_HASH_BYTES crypto_generichash_BYTES
/* Bytes libmicrohttpd asks an event stream's reader for at a time. */
#define SSE_BLOCK_BYTES (16u << 10)
#define LISTEN_BACKLOG 128
/* "[::1]", "127.255.255.255": the longest listen host a Host names. */
#define HOST_NAME_BYTES 48
/* A path or reason longer than this is cut in log lines. */
#define LOG_TEXT_BYTES 120

enum { LIS_UNIX = 0, LIS_TCP = 1, LIS_COUNT };

struct listener {
  struct http_server *s;
  struct MHD_Daemon *mhd;
  uv_poll_t poll;
  uv_timer_t timer;
  int via_tcp;
  int handles;    /* poll and timer were initialised */
  int kicked;     /* an MHD_run was asked for (by listener_kick) */
  unsigned conns; /* open connections, counted for the accept policy */
};

struct request;

/* An open event stream. It lives as long as its libmicrohttpd response
 * (freed by stream_free); it leaves the server's list as soon as its
 * request completes, since its connection is gone from then on. */
struct stream {
  struct stream *prev, *next;
  struct listener *l;
  struct MHD_Connection *conn;
  struct request *req; /* NULL once the request completed */
  char *q;             /* queued bytes q[off..len) */
  size_t off, len, cap;
  int linked;    /* in the server's list, counted by http_stream_count */
  int suspended; /* the reader found nothing and suspended the connection */
  int closing;   /* too slow or stopping: the reader ends the stream */
};

/* One request's state between libmicrohttpd's calls to the handler. */
struct request {
  char *body;
  size_t len, cap;
  int answered; /* a refusal was queued before the body */
  struct stream *stream;
};

struct http_server {
  uv_loop_t *loop;
  struct listener lis[LIS_COUNT];
  int has[LIS_COUNT];
  uv_timer_t keepalive;
  uv_timer_t defer; /* the end of an http_stop called inside MHD_run */
  int timers;       /* keepalive and defer were initialised */
  char *unix_path;
  dev_t unix_dev;
  ino_t unix_ino;
  uint16_t port;
  char listen_host[HOST_NAME_BYTES]; /* "127.0.0.1" or "[::1]" */
  unsigned char token_hash[TOKEN_HASH_BYTES];
  size_t max_body;
  unsigned max_conns;
  size_t max_queued;
  unsigned keepalive_ms;
  unsigned idle_s;
  http_handler_cb handler;
  void *arg;
  struct stream *streams;
  unsigned nstreams;
  int in_run;   /* depth of MHD_run calls on the stack */
  int stopping; /* http_stop was called */
  unsigned open_handles;
  void (*stop_cb)(void *arg);
  void *stop_arg;
};

static const char page_csp[] = "default-src 'self'; style-src 'self' "
                               "'unsafe-inline'; script-src 'self' "
                               "'unsafe-inline'";

/* ------------------------------------------------------------------ */
/* Small helpers. */

static int is_api_path(const char *path) {
  return strcmp(path, "/v1") == 0 || strncmp(path, "/v1/", 4) == 0;
}

/* A copy of text fit for one log line: control bytes become '?'. */
static void log_text(char *out, size_t cap, const char *text) {
  size_t i = 0;
  for (; text[i] != '\0' && i + 1 < cap; i++) {
    unsigned char c = (unsigned char)text[i];
    out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  out[i] = '\0';
}

__attribute__((format(printf, 3, 4))) static void
set_msg(char *msg, size_t cap, const char *fmt, ...) {
  va_list ap;
  if (msg == NULL || cap == 0) {
    return;
  }
  va_start(ap, fmt);
  vsnprintf(msg, cap, fmt, ap);
  va_end(ap);
}

/* The body of a JSON error, malloc'd (NULL when out of memory). A message
 * that is not UTF-8 has its non-ASCII bytes replaced so that it still
 * goes out. */
static char *error_json(int status, const char *msg) {
  json_t *o = json_object();
  json_t *m = json_string(msg);
  char *out = NULL;
  size_t n;
  if (m == NULL && o != NULL) {
    char *ascii = strdup(msg);
    if (ascii != NULL) {
      for (char *p = ascii; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80) {
          *p = '?';
        }
      }
      m = json_string(ascii);
      free(ascii);
    }
  }
  if (o == NULL || m == NULL ||
      json_object_set_new(o, "error", m) != 0 /* steals m either way */) {
    m = NULL;
    goto out;
  }
  m = NULL;
  if (json_object_set_new(o, "status", json_integer(status)) != 0) {
    goto out;
  }
  /* Dumped into our own buffer: the caller frees it with free(), whatever
   * allocator jansson was given. */
  n = json_dumpb(o, NULL, 0, JSON_COMPACT);
  if (n == 0 || (out = malloc(n + 1)) == NULL) {
    goto out;
  }
  if (json_dumpb(o, out, n, JSON_COMPACT) != n) {
    free(out);
    out = NULL;
    goto out;
  }
  out[n] = '\0';
out:
  json_decref(m);
  json_decref(o);
  return out;
}

void http_error(struct http_response *res, int status, const char *fmt, ...) {
  va_list ap;
  char small[256];
  char *msg = small;
  int n;
  free(res->body);
  memset(res, 0, sizeof(*res));
  res->status = status;
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) {
    snprintf(small, sizeof(small), "error %d", status);
  } else if ((size_t)n >= sizeof(small) && (msg = malloc((size_t)n + 1))) {
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
  } else if (msg == NULL) {
    msg = small; /* out of memory: the message as far as it fitted */
  }
  res->body = error_json(status, msg);
  if (msg != small) {
    free(msg);
  }
}

char *http_event_format(const char *event, const char *data) {
  size_t elen = strlen(event);
  size_t dlen = strlen(data);
  size_t lines = 1;
  size_t cap;
  char *out;
  char *p;
  assert(strchr(event, '\n') == NULL && strchr(event, '\r') == NULL);
  /* A reader ends a line at "\r\n", "\r" or "\n": each starts a data line
   * of its own, so that no data can make a field of its own. */
  for (const char *d = data; *d != '\0'; d++) {
    lines += *d == '\n' || (*d == '\r' && d[1] != '\n');
  }
  /* "event: " NAME "\n", then "data: " LINE "\n" per line, then "\n". */
  cap = 7 + elen + 1 + lines * 7 + dlen + 1 + 1;
  if ((out = malloc(cap)) == NULL) {
    return NULL;
  }
  p = out;
  memcpy(p, "event: ", 7);
  p += 7;
  memcpy(p, event, elen);
  p += elen;
  *p++ = '\n';
  for (const char *d = data;;) {
    size_t n = strcspn(d, "\r\n");
    memcpy(p, "data: ", 6);
    p += 6;
    memcpy(p, d, n);
    p += n;
    *p++ = '\n';
    d += n;
    if (*d == '\0') {
      break;
    }
    d += d[0] == '\r' && d[1] == '\n' ? 2 : 1;
  }
  *p++ = '\n';
  *p = '\0';
  return out;
}

/* ------------------------------------------------------------------ */
/* Running libmicrohttpd on the loop. */

static void on_timer(uv_timer_t *t);

static void listener_run(struct listener *l) {
  struct http_server *s = l->s;
  MHD_UNSIGNED_LONG_LONG ms;
  if (s->stopping) {
    return;
  }
  l->kicked = 0;
  s->in_run++;
  MHD_run(l->mhd);
  s->in_run--;
  if (s->stopping) {
    return; /* a handler called http_stop: the defer timer finishes it */
  }
  if (l->kicked) {
    /* A handler resumed a stream during the run: one more run soon. */
    uv_timer_start(&l->timer, on_timer, 0, 0);
  } else if (MHD_get_timeout(l->mhd, &ms) == MHD_YES) {
    uv_timer_start(&l->timer, on_timer, (uint64_t)ms, 0);
  } else {
    uv_timer_stop(&l->timer);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  struct listener *l = p->data;
  (void)events;
  if (status < 0) {
    log_warn(WHO, "polling the server's epoll descriptor: %s",
             shoal_strerror(status));
  }
  listener_run(l);
}

static void on_timer(uv_timer_t *t) {
  listener_run(t->data);
}

/* Makes an MHD_run happen on the next turn of the loop: a resumed
 * connection is taken up only by one. */
static void listener_kick(struct listener *l) {
  if (!l->s->stopping) {
    l->kicked = 1;
    uv_timer_start(&l->timer, on_timer, 0, 0);
  }
}

__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap) {
  char line[256];
  size_t n;
  (void)cls;
  vsnprintf(line, sizeof(line), fmt, ap);
  n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
    line[--n] = '\0';
  }
  /* Mostly clients that went away: not worth a warning each. */
  log_info(WHO, "libmicrohttpd: %s", line);
}

/* The accept policy: libmicrohttpd would leave connections over its own
 * limit waiting in the backlog; these are closed at once instead, so that a
 * client learns it was refused. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr,
                                 socklen_t len) {
  struct listener *l = cls;
  (void)addr;
  (void)len;
  if (l->s->stopping || l->conns >= l->s->max_conns) {
    log_info(WHO, "%s connection refused: %u open, the limit",
             l->via_tcp ? "tcp" : "unix", l->conns);
    return MHD_NO;
  }
  return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code) {
  struct listener *l = cls;
  (void)conn;
  (void)socket_ctx;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    l->conns++;
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && l->conns > 0) {
    l->conns--;
  }
}

/* ------------------------------------------------------------------ */
/* Event streams. */

static void stream_unlink(struct stream *st) {
  struct http_server *s = st->l->s;
  if (!st->linked) {
    return;
  }
  if (st->prev != NULL) {
    st->prev->next = st->next;
  } else {
    s->streams = st->next;
  }
  if (st->next != NULL) {
    st->next->prev = st->prev;
  }
  st->prev = st->next = NULL;
  st->linked = 0;
  s->nstreams--;
}

static void stream_wake(struct stream *st) {
  if (st->suspended) {
    st->suspended = 0;
    MHD_resume_connection(st->conn);
  }
  listener_kick(st->l);
}

/* Ends a stream: its reader ends the response, and its socket is shut
 * down so that a connection whose client stopped reading (whose reader is
 * not being called) closes too. */
static void stream_kill(struct stream *st, const char *why) {
  const union MHD_ConnectionInfo *ci;
  if (st->closing) {
    return;
  }
  log_info(WHO, "event stream closed: %s", why);
  st->closing = 1;
  free(st->q);
  st->q = NULL;
  st->off = st->len = st->cap = 0;
  ci = MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (ci != NULL) {
    shutdown(ci->connect_fd, SHUT_RDWR);
  }
  stream_unlink(st);
  stream_wake(st);
}

static void stream_push(struct stream *st, const char *p, size_t n) {
  size_t pending = st->len - st->off;
  size_t max = st->l->s->max_queued;
  if (st->closing) {
    return;
  }
  /* (An initial body alone may be over the limit.) */
  if (pending > max || n > max - pending) {
    stream_kill(st, "the client reads too slowly");
    return;
  }
  if (st->cap - st->len < n && st->off > 0) {
    memmove(st->q, st->q + st->off, pending);
    st->len = pending;
    st->off = 0;
  }
  if (st->cap - st->len < n) {
    size_t cap = st->cap > 0 ? st->cap : 4096;
    char *q;
    while (cap < pending + n) {
      cap *= 2;
    }
    if (cap > max) {
      cap = max;
    }
    if ((q = realloc(st->q, cap)) == NULL) {
      stream_kill(st, "out of memory");
      return;
    }
    st->q = q;
    st->cap = cap;
  }
  memcpy(st->q + st->len, p, n);
  st->len += n;
  stream_wake(st);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  struct stream *st = cls;
  size_t n;
  (void)pos;
  if (st->l->s->stopping) {
    return MHD_CONTENT_READER_END_OF_STREAM; /* a clean end, if it gets out */
  }
  if (st->closing || st->req == NULL) {
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  if (st->off == st->len) {
    /* Nothing to send: a reader that returns 0 is called again at once,
     * so the connection sleeps until there is. */
    st->off = st->len = 0;
    st->suspended = 1;
    MHD_suspend_connection(st->conn);
    return 0;
  }
  n = st->len - st->off;
  if (n > max) {
    n = max;
  }
  memcpy(buf, st->q + st->off, n);
  st->off += n;
  return (ssize_t)n;
}

static void stream_free(void *cls) {
  struct stream *st = cls;
  if (st->req != NULL) {
    st->req->stream = NULL;
  }
  stream_unlink(st);
  free(st->q);
  free(st);
}

static void on_keepalive(uv_timer_t *t) {
  static const char comment[] = ": keep-alive\n\n";
  struct http_server *s = t->data;
  struct stream *next;
  for (struct stream *st = s->streams; st != NULL; st = next) {
    next = st->next;
    stream_push(st, comment, sizeof(comment) - 1);
  }
}

void http_broadcast(struct http_server *s, const char *event,
                    const char *data) {
  struct stream *next;
  char *ev;
  if (s == NULL || s->stopping || s->streams == NULL) {
    return;
  }
  if ((ev = http_event_format(event, data)) == NULL) {
    log_warn(WHO, "event %s not sent: out of memory", event);
    return;
  }
  for (struct stream *st = s->streams; st != NULL; st = next) {
    next = st->next; /* stream_push may unlink st */
    stream_push(st, ev, strlen(ev));
  }
  free(ev);
}

unsigned http_stream_count(const struct http_server *s) {
  return s != NULL ? s->nstreams : 0;
}

/* ------------------------------------------------------------------ */
/* Requests. */

const char *http_query(const struct http_request *req, const char *key) {
  /* The connection is libmicrohttpd's; the request only lends it. */
  struct MHD_Connection *conn = (struct MHD_Connection *)(uintptr_t)req->conn;
  return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

static int add_headers(struct MHD_Response *r, const char *path,
                       const char *content_type, int close_after) {
  int ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                   content_type) == MHD_YES &&
           MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                                   "no-store") == MHD_YES &&
           MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") ==
               MHD_YES;
  if (ok && !is_api_path(path)) {
    ok = MHD_add_response_header(r, "Content-Security-Policy", page_csp) ==
             MHD_YES &&
         MHD_add_response_header(r, "X-Frame-Options", "DENY") == MHD_YES;
  }
  if (ok && close_after) {
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") ==
         MHD_YES;
  }
  return ok;
}

/* Queues res on conn and releases what res holds. */
static enum MHD_Result respond(struct listener *l, struct MHD_Connection *conn,
                               struct request *rq, const char *path,
                               struct http_response *res, int close_after) {
  struct MHD_Response *r = NULL;
  struct stream *st = NULL;
  struct stream *made = NULL;
  const char *type = res->content_type;
  unsigned status = res->status > 0 ? (unsigned)res->status : 200u;
  enum MHD_Result ret = MHD_NO;

  if (res->event_stream) {
    type = "text/event-stream";
    if ((st = calloc(1, sizeof(*st))) == NULL) {
      goto out;
    }
    st->l = l;
    st->conn = conn;
    st->req = rq;
    if (res->body != NULL) {
      /* The initial events are the first bytes of the queue. */
      st->q = res->body;
      st->len = st->cap = strlen(res->body);
      res->body = NULL;
    }
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK_BYTES,
                                          stream_read, st, stream_free);
    if (r == NULL) {
      goto out;
    }
    made = st;
    st = NULL; /* the response frees it from now on */
  } else if (res->body != NULL) {
    r = MHD_create_response_from_buffer_with_free_callback(strlen(res->body),
                                                           res->body, free);
    if (r != NULL) {
      res->body = NULL;
    }
  } else {
    r = MHD_create_response_from_buffer(
        res->static_body != NULL ? res->static_len : 0,
        (void *)(uintptr_t)res->static_body, MHD_RESPMEM_PERSISTENT);
  }
  if (r == NULL) {
    goto out;
  }
  if (!add_headers(r, path, type != NULL ? type : "application/json",
                   close_after)) {
    goto out;
  }
  ret = MHD_queue_response(conn, status, r);
  if (ret == MHD_YES && made != NULL) {
    /* The stream is listed once its response is on its way. */
    struct http_server *s = l->s;
    made->next = s->streams;
    if (s->streams != NULL) {
      s->streams->prev = made;
    }
    s->streams = made;
    made->linked = 1;
    s->nstreams++;
    rq->stream = made;
  }
out:
  if (r != NULL) {
    MHD_destroy_response(r);
  }
  if (st != NULL) {
    free(st->q);
    free(st);
  }
  free(res->body);
  res->body = NULL;
  return ret;
}

/* Whether v names this server as a Host header would: one of the loopback
 * names (or the listen address) and ":PORT" with the TCP port; without a
 * port when portless is set, or when the port is 80. */
static int host_matches(const struct http_server *s, const char *v,
                        int portless) {
  static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
  char name[HOST_NAME_BYTES];
  char port[8];
  const char *rest;
  size_t n;
  int known = 0;
  if (v[0] == '[') {
    const char *close = strchr(v, ']');
    rest = close != NULL ? close + 1 : v + strlen(v);
  } else {
    rest = v + strcspn(v, ":");
  }
  n = (size_t)(rest - v);
  if (n == 0 || n >= sizeof(name)) {
    return 0;
  }
  memcpy(name, v, n);
  name[n] = '\0';
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    known |= strcasecmp(name, names[i]) == 0;
  }
  if (s->has[LIS_TCP]) {
    known |= strcasecmp(name, s->listen_host) == 0;
  }
  if (!known) {
    return 0;
  }
  if (rest[0] == '\0') {
    return portless || (s->has[LIS_TCP] && s->port == 80);
  }
  snprintf(port, sizeof(port), ":%u", (unsigned)s->port);
  return s->has[LIS_TCP] && strcmp(rest, port) == 0;
}

static int origin_ok(const struct http_server *s, const char *origin,
                     int via_tcp) {
  return strncasecmp(origin, "http://", 7) == 0 &&
         host_matches(s, origin + 7, !via_tcp);
}

/* "Bearer TOKEN" with this server's token, compared through their hashes:
 * in constant time, and without telling the token's length. */
static int token_ok(const struct http_server *s, const char *auth) {
  unsigned char h[TOKEN_HASH_BYTES];
  const char *t;
  int ok;
  if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
    return 0;
  }
  for (t = auth + 7; *t == ' '; t++) {
  }
  crypto_generichash(h, sizeof(h), (const unsigned char *)t, strlen(t), NULL,
                     0);
  ok = sodium_memcmp(h, s->token_hash, sizeof(h)) == 0;
  sodium_memzero(h, sizeof(h));
  return ok;
}

/* Answers a request before its body with a JSON error, and closes the
 * connection after it (its body, if any, is never read). */
static enum MHD_Result refuse(struct listener *l, struct MHD_Connection *conn,
                              struct request *rq, const char *method,
                              const char *path, int status,
                              const char *reason) {
  struct http_response res = {0};
  char shown[LOG_TEXT_BYTES];
  char verb[16];
  log_text(shown, sizeof(shown), path);
  log_text(verb, sizeof(verb), method);
  log_info(WHO, "%s %s over %s refused (%d): %s", verb, shown,
           l->via_tcp ? "tcp" : "unix", status, reason);
  http_error(&res, status, "%s", reason);
  rq->answered = 1;
  return respond(l, conn, rq, path, &res, 1);
}

/* The checks made once the headers are in, before any of the body. */
static enum MHD_Result on_headers(struct listener *l,
                                  struct MHD_Connection *conn,
                                  struct request *rq, const char *method,
                                  const char *path) {
  struct http_server *s = l->s;
  const char *v;
  char reason[96];
  if (l->via_tcp) {
    v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_HOST);
    if (v == NULL || !host_matches(s, v, 0)) {
      return refuse(l, conn, rq, method, path, 403,
                    "the Host header does not name this daemon");
    }
  }
  v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
  if (v != NULL && !origin_ok(s, v, l->via_tcp)) {
    return refuse(l, conn, rq, method, path, 403,
                  "a request from another origin is refused");
  }
  if (l->via_tcp && is_api_path(path)) {
    v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_AUTHORIZATION);
    if (!token_ok(s, v)) {
      return refuse(l, conn, rq, method, path, 401,
                    v == NULL ? "a token is needed: Authorization: Bearer "
                                "TOKEN (the daemon's api.token)"
                              : "wrong token");
    }
  }
  v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                  MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (v != NULL) {
    char *end;
    unsigned long long n;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (end != v && (errno == ERANGE || n > s->max_body)) {
      snprintf(reason, sizeof(reason),
               "the body is over the limit of %zu bytes", s->max_body);
      return refuse(l, conn, rq, method, path, 413, reason);
    }
  }
  return MHD_YES;
}

static enum MHD_Result take_body(struct listener *l, struct request *rq,
                                 const char *data, size_t *size) {
  size_t max = l->s->max_body;
  size_t n = *size;
  if (n > max - rq->len) {
    /* A chunked body (its length was not announced) grew past the limit:
     * libmicrohttpd cannot answer now, so the connection closes. */
    log_info(WHO, "a request body over %zu bytes: connection closed", max);
    return MHD_NO;
  }
  if (rq->cap - rq->len < n + 1) {
    size_t cap = rq->cap > 0 ? rq->cap : 1024;
    char *b;
    while (cap < rq->len + n + 1) {
      cap *= 2;
    }
    if (cap > max + 1) {
      cap = max + 1;
    }
    if ((b = realloc(rq->body, cap)) == NULL) {
      return MHD_NO;
    }
    rq->body = b;
    rq->cap = cap;
  }
  memcpy(rq->body + rq->len, data, n);
  rq->len += n;
  rq->body[rq->len] = '\0';
  *size = 0;
  return MHD_YES;
}

/* libmicrohttpd's access handler: called once with the headers, once per
 * piece of the body, and once more when the body is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **ctx) {
  struct listener *l = cls;
  struct http_server *s = l->s;
  struct request *rq = *ctx;
  struct http_request req;
  struct http_response res = {0};
  (void)version;
  if (s->stopping) {
    return MHD_NO;
  }
  if (rq == NULL) {
    if ((rq = calloc(1, sizeof(*rq))) == NULL) {
      return MHD_NO;
    }
    *ctx = rq;
    return on_headers(l, conn, rq, method, url);
  }
  if (rq->answered) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    return take_body(l, rq, upload, upload_size);
  }
  req.method = method;
  req.path = url;
  req.conn = conn;
  req.body = rq->body != NULL ? rq->body : "";
  req.body_len = rq->len;
  req.via_tcp = l->via_tcp;
  s->handler(s->arg, &req, &res);
  return respond(l, conn, rq, url, &res, 0);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                         enum MHD_RequestTerminationCode toe) {
  struct request *rq = *ctx;
  (void)cls;
  (void)conn;
  (void)toe;
  if (rq == NULL) {
    return;
  }
  if (rq->stream != NULL) {
    /* The connection is done with: the stream is no longer open, though
     * its memory lives until libmicrohttpd frees the response. */
    rq->stream->req = NULL;
    stream_unlink(rq->stream);
  }
  free(rq->body);
  free(rq);
  *ctx = NULL;
}

/* ------------------------------------------------------------------ */
/* Listening. */

/* Parses "127.x.y.z:PORT" or "[::1]:PORT" into sa and s->listen_host. */
static int parse_listen(struct http_server *s, const char *text,
                        struct sockaddr_storage *sa, socklen_t *salen,
                        char *msg, size_t cap) {
  char host[HOST_NAME_BYTES];
  const char *port_text;
  const char *end;
  unsigned long port;
  size_t n;
  memset(sa, 0, sizeof(*sa));
  if (text[0] == '[') {
    end = strchr(text, ']');
    if (end == NULL || end[1] != ':') {
      goto bad;
    }
    n = (size_t)(end - text - 1);
    port_text = end + 2;
    if (n >= sizeof(host)) {
      goto bad;
    }
    memcpy(host, text + 1, n);
    host[n] = '\0';
  } else {
    end = strrchr(text, ':');
    if (end == NULL) {
      goto bad;
    }
    n = (size_t)(end - text);
    port_text = end + 1;
    if (n >= sizeof(host)) {
      goto bad;
    }
    memcpy(host, text, n);
    host[n] = '\0';
  }
  n = strlen(port_text);
  if (n == 0 || n > 5 || strspn(port_text, "0123456789") != n) {
    goto bad;
  }
  port = strtoul(port_text, NULL, 10);
  if (port > 65535) {
    goto bad;
  }
  if (text[0] == '[') {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
      goto bad;
    }
    if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) {
      goto not_loopback;
    }
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *salen = sizeof(*a6);
    snprintf(s->listen_host, sizeof(s->listen_host), "[::1]");
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
      goto bad;
    }
    if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) {
      goto not_loopback;
    }
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *salen = sizeof(*a4);
    inet_ntop(AF_INET, &a4->sin_addr, s->listen_host, sizeof(s->listen_host));
  }
  return 0;
bad:
  set_msg(msg, cap,
          "bad API listen address '%s': write 127.0.0.1:PORT or [::1]:PORT",
          text);
  return SHOAL_EINVAL;
not_loopback:
  set_msg(msg, cap,
          "API listen address '%s' is not a loopback address: the API "
          "listens on 127.0.0.0/8 or [::1] only",
          text);
  return SHOAL_EINVAL;
}

static int tcp_socket(struct http_server *s, const char *text, int *out,
                      char *msg, size_t cap) {
  struct sockaddr_storage sa;
  socklen_t salen = 0;
  int one = 1;
  int fd;
  int err = parse_listen(s, text, &sa, &salen, msg, cap);
  if (err != 0) {
    return err;
  }
  fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = -errno;
    set_msg(msg, cap, "API socket: %s", strerror(errno));
    return err;
  }
  /* A restarted daemon takes its port back while old connections linger
   * in TIME_WAIT (on Linux this never lets two listeners share a port). */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (sa.ss_family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
    err = -errno;
    if (errno == EADDRINUSE) {
      set_msg(msg, cap, "API address %s is taken", text);
    } else {
      set_msg(msg, cap, "API address %s: %s", text, strerror(errno));
    }
    goto fail;
  }
  if (listen(fd, LISTEN_BACKLOG) != 0) {
    err = -errno;
    set_msg(msg, cap, "listening on %s: %s", text, strerror(errno));
    goto fail;
  }
  salen = sizeof(sa);
  if (getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) {
    err = -errno;
    set_msg(msg, cap, "API address %s: %s", text, strerror(errno));
    goto fail;
  }
  s->port =
      ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                     : ((struct sockaddr_in *)&sa)->sin_port);
  *out = fd;
  return 0;
fail:
  close(fd);
  return err;
}

/* What is at path when bind says it is in use: a socket nobody answers on
 * (removed: 0), a running daemon (UV_EADDRINUSE), or something else. */
static int clear_stale(const char *path, const struct sockaddr_un *sa,
                       char *msg, size_t cap) {
  struct stat st;
  int probe;
  int err;
  if (lstat(path, &st) != 0) {
    err = -errno;
    set_msg(msg, cap, "API socket %s: %s", path, strerror(errno));
    return err;
  }
  if (!S_ISSOCK(st.st_mode)) {
    set_msg(msg, cap, "%s exists and is not a socket", path);
    return UV_EEXIST;
  }
  probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    err = -errno;
    set_msg(msg, cap, "API socket: %s", strerror(errno));
    return err;
  }
  err =
      connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 0 : errno;
  close(probe);
  if (err == ECONNREFUSED) {
    log_info(WHO, "replacing the stale socket %s", path);
    if (unlink(path) != 0 && errno != ENOENT) {
      err = -errno;
      set_msg(msg, cap, "removing the stale socket %s: %s", path,
              strerror(errno));
      return err;
    }
    return 0;
  }
  if (err == 0 || err == EAGAIN || err == EINPROGRESS) {
    set_msg(msg, cap, "a daemon already runs on %s", path);
    return UV_EADDRINUSE;
  }
  set_msg(msg, cap, "API socket %s: %s", path, strerror(err));
  return -err;
}

static int unix_socket(struct http_server *s, const char *path, int *out,
                       char *msg, size_t cap) {
  struct sockaddr_un sa;
  struct stat st;
  size_t n = strlen(path);
  int bound = 0;
  int fd;
  int err;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (n == 0 || n >= sizeof(sa.sun_path)) {
    set_msg(msg, cap, "API socket path %s is too long (at most %zu bytes)",
            path, sizeof(sa.sun_path) - 1);
    return UV_ENAMETOOLONG;
  }
  memcpy(sa.sun_path, path, n + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = -errno;
    set_msg(msg, cap, "API socket: %s", strerror(errno));
    return err;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    if (errno != EADDRINUSE) {
      err = -errno;
      set_msg(msg, cap, "API socket %s: %s", path, strerror(errno));
      goto fail;
    }
    if ((err = clear_stale(path, &sa, msg, cap)) != 0) {
      goto fail;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
      err = errno == EADDRINUSE ? UV_EADDRINUSE : -errno;
      set_msg(msg, cap, "API socket %s: %s", path, strerror(errno));
      goto fail;
    }
  }
  bound = 1;
  /* Nobody can connect before listen(), so the mode is set in time. */
  if (chmod(path, 0600) != 0 || stat(path, &st) != 0) {
    err = -errno;
    set_msg(msg, cap, "API socket %s: %s", path, strerror(errno));
    goto fail;
  }
  if (listen(fd, LISTEN_BACKLOG) != 0) {
    err = -errno;
    set_msg(msg, cap, "listening on %s: %s", path, strerror(errno));
    goto fail;
  }
  s->unix_dev = st.st_dev;
  s->unix_ino = st.st_ino;
  *out = fd;
  return 0;
fail:
  if (bound) {
    unlink(path);
  }
  close(fd);
  return err;
}

/* Starts libmicrohttpd on a listening socket, which it owns from then on. */
static int listener_start(struct http_server *s, struct listener *l, int fd,
                          int via_tcp, char *msg, size_t cap) {
  const union MHD_DaemonInfo *info;
  l->s = s;
  l->via_tcp = via_tcp;
  l->mhd = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0,
      on_accept, l, on_request, l, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
      MHD_OPTION_LISTEN_SOCKET, fd,
      /* Never reached: on_accept closes connections over max_conns, which
       * libmicrohttpd at its own limit would leave in the backlog. */
      MHD_OPTION_CONNECTION_LIMIT, s->max_conns + 1,
      MHD_OPTION_CONNECTION_TIMEOUT, s->idle_s, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, l, MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
      MHD_OPTION_END);
  if (l->mhd == NULL) {
    /* Whether libmicrohttpd closed the socket on failure is not
     * documented: it is closed here unless it already was. */
    if (fcntl(fd, F_GETFD) != -1) {
      close(fd);
    }
    set_msg(msg, cap, "starting the HTTP server on the %s listener failed",
            via_tcp ? "TCP" : "Unix socket");
    return UV_EIO;
  }
  info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL) {
    set_msg(msg, cap, "the HTTP server has no epoll descriptor");
    return UV_EIO;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Stopping. */

/* The end of a stop: frees s, then tells whoever asked. */
static void server_free(struct http_server *s) {
  void (*cb)(void *) = s->stop_cb;
  void *arg = s->stop_arg;
  free(s->unix_path);
  free(s);
  if (cb != NULL) {
    cb(arg);
  }
}

static void on_handle_closed(uv_handle_t *h) {
  struct http_server *s = h->data;
  if (--s->open_handles == 0) {
    server_free(s);
  }
}

static void close_handle(struct http_server *s, uv_handle_t *h) {
  h->data = s;
  s->open_handles++;
  uv_close(h, on_handle_closed);
}

/* Ends every connection and closes every handle; s is freed when the last
 * one has closed. Never called inside MHD_run. */
static void stop_finish(struct http_server *s) {
  struct stat st;
  /* libmicrohttpd refuses to stop with a suspended connection: each stream
   * is woken, and its reader ends it. */
  for (struct stream *st_ = s->streams; st_ != NULL; st_ = st_->next) {
    st_->closing = 1;
    if (st_->suspended) {
      st_->suspended = 0;
      MHD_resume_connection(st_->conn);
    }
  }
  for (int i = 0; i < LIS_COUNT; i++) {
    struct listener *l = &s->lis[i];
    if (l->mhd == NULL) {
      continue;
    }
    /* A resumed connection leaves the suspended list only in MHD_run. */
    MHD_run(l->mhd);
    MHD_stop_daemon(l->mhd);
    l->mhd = NULL;
  }
  for (int i = 0; i < LIS_COUNT; i++) {
    struct listener *l = &s->lis[i];
    if (l->handles) {
      close_handle(s, (uv_handle_t *)&l->poll);
      close_handle(s, (uv_handle_t *)&l->timer);
      l->handles = 0;
    }
  }
  if (s->timers) {
    close_handle(s, (uv_handle_t *)&s->keepalive);
    close_handle(s, (uv_handle_t *)&s->defer);
    s->timers = 0;
  }
  /* The socket file goes only if it is still ours. */
  if (s->unix_path != NULL && stat(s->unix_path, &st) == 0 &&
      st.st_dev == s->unix_dev && st.st_ino == s->unix_ino) {
    unlink(s->unix_path);
  }
  if (s->open_handles == 0) {
    server_free(s); /* a start that failed before any handle */
  }
}

static void on_defer(uv_timer_t *t) {
  stop_finish(t->data);
}

void http_stop(struct http_server *s, void (*cb)(void *arg), void *arg) {
  if (s == NULL) {
    if (cb != NULL) {
      cb(arg);
    }
    return;
  }
  assert(!s->stopping);
  s->stopping = 1;
  s->stop_cb = cb;
  s->stop_arg = arg;
  for (int i = 0; i < LIS_COUNT; i++) {
    if (s->lis[i].handles) {
      uv_poll_stop(&s->lis[i].poll);
      uv_timer_stop(&s->lis[i].timer);
    }
  }
  if (s->timers) {
    uv_timer_stop(&s->keepalive);
  }
  if (s->in_run > 0) {
    /* Called by a handler: libmicrohttpd cannot stop inside MHD_run. */
    uv_timer_start(&s->defer, on_defer, 0, 0);
    return;
  }
  stop_finish(s);
}

/* ------------------------------------------------------------------ */
/* Starting. */

uint16_t http_tcp_port(const struct http_server *s) {
  return s != NULL && s->has[LIS_TCP] ? s->port : 0;
}

static int listener_watch(struct http_server *s, struct listener *l, char *msg,
                          size_t cap) {
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  int err = uv_poll_init(s->loop, &l->poll, info->epoll_fd);
  if (err != 0) {
    set_msg(msg, cap, "watching the HTTP server: %s", shoal_strerror(err));
    return err;
  }
  uv_timer_init(s->loop, &l->timer);
  l->handles = 1;
  l->poll.data = l;
  l->timer.data = l;
  if ((err = uv_poll_start(&l->poll, UV_READABLE, on_poll)) != 0) {
    set_msg(msg, cap, "watching the HTTP server: %s", shoal_strerror(err));
    return err;
  }
  /* Whatever libmicrohttpd has to do at once, it does on the first turn. */
  listener_kick(l);
  return 0;
}

int http_start(struct http_server **out, uv_loop_t *loop,
               const struct http_config *c, char *msg, size_t cap) {
  struct http_server *s;
  int fds[LIS_COUNT] = {-1, -1};
  int err;
  *out = NULL;
  set_msg(msg, cap, "%s", "");
  assert(c->handler != NULL);
  if (c->unix_path == NULL && c->tcp_listen == NULL) {
    set_msg(msg, cap, "the HTTP server needs a socket path or an address");
    return SHOAL_EINVAL;
  }
  if (c->tcp_listen != NULL && (c->token == NULL || c->token[0] == '\0')) {
    set_msg(msg, cap, "the API on TCP needs a token");
    return SHOAL_EINVAL;
  }
  if (sodium_init() < 0) {
    set_msg(msg, cap, "libsodium failed to start");
    return UV_EIO;
  }
  if ((s = calloc(1, sizeof(*s))) == NULL) {
    set_msg(msg, cap, "out of memory");
    return SHOAL_ENOMEM;
  }
  s->loop = loop;
  s->max_body = c->max_body > 0 ? c->max_body : HTTP_MAX_BODY_DEFAULT;
  s->max_conns = c->max_connections > 0 ? c->max_connections
                                        : HTTP_MAX_CONNECTIONS_DEFAULT;
  s->max_queued =
      c->sse_max_queued > 0 ? c->sse_max_queued : HTTP_SSE_MAX_QUEUED;
  s->keepalive_ms =
      c->sse_keepalive_ms > 0 ? c->sse_keepalive_ms : HTTP_SSE_KEEPALIVE_MS;
  s->idle_s = c->idle_timeout_s > 0 ? c->idle_timeout_s : HTTP_IDLE_TIMEOUT_S;
  s->handler = c->handler;
  s->arg = c->arg;
  if (c->token != NULL) {
    crypto_generichash(s->token_hash, sizeof(s->token_hash),
                       (const unsigned char *)c->token, strlen(c->token), NULL,
                       0);
  }

  if (c->tcp_listen != NULL) {
    if ((err = tcp_socket(s, c->tcp_listen, &fds[LIS_TCP], msg, cap)) != 0) {
      goto fail;
    }
    s->has[LIS_TCP] = 1;
  }
  if (c->unix_path != NULL) {
    if ((s->unix_path = strdup(c->unix_path)) == NULL) {
      set_msg(msg, cap, "out of memory");
      err = SHOAL_ENOMEM;
      goto fail;
    }
    if ((err = unix_socket(s, c->unix_path, &fds[LIS_UNIX], msg, cap)) != 0) {
      free(s->unix_path);
      s->unix_path = NULL; /* not ours: it is not removed */
      goto fail;
    }
    s->has[LIS_UNIX] = 1;
  }
  for (int i = 0; i < LIS_COUNT; i++) {
    if (fds[i] >= 0) {
      int fd = fds[i];
      fds[i] = -1; /* libmicrohttpd's from here on */
      if ((err = listener_start(s, &s->lis[i], fd, i == LIS_TCP, msg, cap)) !=
          0) {
        goto fail;
      }
    }
  }

  /* From here a failure closes handles, which ends on the loop. */
  uv_timer_init(loop, &s->keepalive);
  uv_timer_init(loop, &s->defer);
  s->keepalive.data = s;
  s->defer.data = s;
  s->timers = 1;
  for (int i = 0; i < LIS_COUNT; i++) {
    if (s->lis[i].mhd != NULL &&
        (err = listener_watch(s, &s->lis[i], msg, cap)) != 0) {
      s->stopping = 1;
      stop_finish(s);
      return err;
    }
  }
  uv_timer_start(&s->keepalive, on_keepalive, s->keepalive_ms, s->keepalive_ms);
  if (s->has[LIS_TCP]) {
    log_info(WHO, "API on http://%s:%u/", s->listen_host, (unsigned)s->port);
  }
  if (s->has[LIS_UNIX]) {
    log_info(WHO, "API on the socket %s", s->unix_path);
  }
  *out = s;
  return 0;

fail:
  for (int i = 0; i < LIS_COUNT; i++) {
    if (fds[i] >= 0) {
      close(fds[i]);
    }
  }
  s->stopping = 1;
  stop_finish(s); /* no handle yet: frees s at once */
  return err;
}
