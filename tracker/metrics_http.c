/* Serving the tracker's figures over HTTP: libmicrohttpd in its epoll mode,
 * driven by the tracker's libuv loop.
 *
 * The tracker makes and binds the listening socket itself (so that the
 * error and the real port are its own to report) and hands it to
 * libmicrohttpd, which keeps every connection in one epoll descriptor. A
 * uv_poll_t on that descriptor and a uv_timer_t set from MHD_get_timeout
 * both call MHD_run, so requests are answered on the loop thread and read
 * the tracker's context directly: a scrape sees the figures exactly as
 * they are between two requests, with no copy and no lock.
 */
#include "tracker/metrics_http.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

struct metrics_http {
  struct tracker *t; /* borrowed */
  struct MHD_Daemon *mhd;
  uv_poll_t poll;   /* libmicrohttpd's epoll descriptor */
  uv_timer_t timer; /* its next timeout */
  int handles;      /* libuv handles not yet closed */
  char address[80];
};

static void on_timer(uv_timer_t *timer);

/* Lets libmicrohttpd do what is due, then waits for its next timeout. */
static void run(struct metrics_http *h) {
  MHD_UNSIGNED_LONG_LONG ms;
  MHD_run(h->mhd);
  if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
    uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
  } else {
    uv_timer_stop(&h->timer);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status; /* MHD_run finds out what failed */
  (void)events;
  run(p->data);
}

static void on_timer(uv_timer_t *timer) {
  run(timer->data);
}

__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap) {
  char line[256];
  (void)cls;
  vsnprintf(line, sizeof(line), fmt, ap);
  /* libmicrohttpd ends its messages with a newline of its own. */
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
    line[--n] = '\0';
  }
  log_warn("metrics", "%s", line);
}

void metrics_http_read(struct tracker *t, struct metrics_now *now) {
  struct store_stats st;
  memset(now, 0, sizeof(*now));
  memset(&st, 0, sizeof(st));
  t->store->ops->stats(t->store, &st);
  now->connections = t->n_conns;
  now->swarms = st.swarms;
  now->peers = st.peers;
  now->store_bytes = st.bytes;
  now->catalog_entries = st.catalog;
  /* The store's state as it is now (a shared store comes and goes). */
  t->metrics.store_backend = t->store->backend;
  t->metrics.store_up = t->store->up;
  now->signatures = t->stats.signatures;
  now->cache_hits = t->stats.cache_hits;
  now->expired_peers = t->stats.expired_peers;
  now->expired_catalog = t->stats.expired_catalog;
}

/* Queues a reply with a copy of body. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
                             const char *type, const char *body, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL) {
    return MHD_NO;
  }
  enum MHD_Result ret = MHD_NO;
  if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) ==
          MHD_YES &&
      MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") ==
          MHD_YES &&
      (status != MHD_HTTP_METHOD_NOT_ALLOWED ||
       MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") ==
           MHD_YES)) {
    ret = MHD_queue_response(conn, status, r);
  }
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status,
                             const char *text) {
  return reply(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result serve_metrics(struct metrics_http *h,
                                     struct MHD_Connection *conn) {
  struct metrics_now now;
  struct buf body;
  enum MHD_Result ret;

  metrics_http_read(h->t, &now);
  buf_init(&body, METRICS_HTTP_MAX_BODY);
  if (metrics_render_text(&h->t->metrics, &now, &body) != 0) {
    ret = plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "figures too large\n");
  } else {
    ret = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                (const char *)body.data, body.len);
  }
  buf_free(&body);
  return ret;
}

static enum MHD_Result serve_stats(struct metrics_http *h,
                                   struct MHD_Connection *conn) {
  struct metrics_now now;
  enum MHD_Result ret;

  metrics_http_read(h->t, &now);
  json_t *j = metrics_render_json(&h->t->metrics, &now);
  char *text =
      j != NULL ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
  json_decref(j);
  if (text == NULL) {
    return plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
  }
  ret = reply(conn, MHD_HTTP_OK, "application/json", text, strlen(text));
  free(text);
  return ret;
}

/* What a request's context pointer marks: its headers are in; it brought a
 * body. */
static char seen_headers, seen_body;

/* No route takes a body. A GET or HEAD is answered once the request is
 * whole, so that the connection may be kept alive (one that brought a
 * body gets 400); any other method at once (libmicrohttpd then closes the
 * connection rather than read a body). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_len, void **req) {
  struct metrics_http *h = cls;
  (void)version;
  (void)upload;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                 "only GET and HEAD are served here\n");
  }
  if (*req == NULL) {
    *req = &seen_headers;
    return MHD_YES;
  }
  if (*upload_len != 0) {
    /* Read and dropped; the answer comes once it ends. */
    *upload_len = 0;
    *req = &seen_body;
    return MHD_YES;
  }
  if (*req == &seen_body) {
    return plain(conn, MHD_HTTP_BAD_REQUEST, "no request body is taken\n");
  }
  if (strcmp(url, "/metrics") == 0) {
    return serve_metrics(h, conn);
  }
  if (strcmp(url, "/stats") == 0) {
    return serve_stats(h, conn);
  }
  return plain(conn, MHD_HTTP_NOT_FOUND,
               "not found: the paths are /metrics and /stats\n");
}

/* A listening socket on ss, non-blocking. Returns it, or a negative errno
 * (which is also libuv's code for it). */
static int listen_on(const struct sockaddr_storage *ss) {
  int one = 1;
  int zero = 0;
  socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in);
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -errno;
  }
  /* IPv4 clients may reach "[::]" too, as they may the tracker's own
   * listeners (libuv's default). */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (ss->ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) ||
      bind(fd, (const struct sockaddr *)ss, len) != 0 ||
      listen(fd, (int)METRICS_HTTP_MAX_CONNS) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

/* "ADDR:PORT" or "[V6]:PORT" of the socket's own address. */
static void name_of(int fd, char *out, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char ip[INET6_ADDRSTRLEN] = "?";
  snprintf(out, cap, "?");
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    return;
  }
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    uv_ip4_name(s4, ip, sizeof(ip));
    snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    uv_ip6_name(s6, ip, sizeof(ip));
    snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
  }
}

static void on_closed(uv_handle_t *handle) {
  struct metrics_http *h = handle->data;
  if (--h->handles == 0) {
    free(h);
  }
}

int metrics_http_start(struct tracker *t, const char *addr,
                       struct metrics_http **out) {
  struct sockaddr_storage ss;
  struct metrics_http *h = NULL;
  const union MHD_DaemonInfo *info;
  int fd = -1;
  int err;

  *out = NULL;
  if (server_parse_listen(addr, &ss) != 0) {
    return SHOAL_EINVAL;
  }
  h = calloc(1, sizeof(*h));
  if (h == NULL) {
    return SHOAL_ENOMEM;
  }
  h->t = t;
  fd = listen_on(&ss);
  if (fd < 0) {
    err = fd;
    goto fail;
  }
  name_of(fd, h->address, sizeof(h->address));
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6) {
    flags |= MHD_USE_IPv6;
  }
  /* The logger comes first, so that nothing is printed before it is set.
   * From here the socket is libmicrohttpd's, which closes it on stop. */
  h->mhd = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
      on_mhd_log, h, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)METRICS_HTTP_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)METRICS_HTTP_IDLE_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)METRICS_HTTP_CONN_MEMORY, MHD_OPTION_END);
  if (h->mhd == NULL) {
    /* Whether a failed start closed the socket is not documented: close it
     * when it is still open (no other thread opens descriptors). */
    if (fcntl(fd, F_GETFD) != -1) {
      close(fd);
    }
    err = SHOAL_ENOMEM;
    goto fail;
  }
  info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == NULL || info->epoll_fd < 0) {
    MHD_stop_daemon(h->mhd);
    err = SHOAL_EINVAL;
    goto fail;
  }
  uv_timer_init(t->loop, &h->timer);
  h->timer.data = h;
  h->handles++;
  err = uv_poll_init(t->loop, &h->poll, info->epoll_fd);
  if (err == 0) {
    h->poll.data = h;
    h->handles++;
    err = uv_poll_start(&h->poll, UV_READABLE, on_poll);
  }
  if (err != 0) {
    /* The handles free h; libmicrohttpd goes first. */
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    if (h->handles == 2) {
      uv_close((uv_handle_t *)&h->poll, on_closed);
    }
    uv_close((uv_handle_t *)&h->timer, on_closed);
    return err;
  }
  /* Anything already due (nothing, normally) is done on the first turn. */
  uv_timer_start(&h->timer, on_timer, 0, 0);
  log_info("metrics", "serving /metrics and /stats on %s", h->address);
  *out = h;
  return 0;

fail:
  free(h);
  return err;
}

const char *metrics_http_address(const struct metrics_http *h) {
  return h->address;
}

void metrics_http_stop(struct metrics_http *h) {
  if (h == NULL) {
    return;
  }
  /* Closing the poll handle takes the descriptor out of the loop's epoll
   * set, so libmicrohttpd may close it right after. */
  uv_close((uv_handle_t *)&h->poll, on_closed);
  uv_close((uv_handle_t *)&h->timer, on_closed);
  MHD_stop_daemon(h->mhd);
  h->mhd = NULL;
}
