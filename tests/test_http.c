/* Unit tests for peer/http.c: the daemon's HTTP server on a real libuv
 * loop, with real clients.
 *
 * The loop runs in a second thread; the test thread asks it to do things
 * (start, stop, broadcast, read a count) through a uv_async_t and waits
 * for each with a deadline, and talks to the server as a client: libcurl's
 * easy API for requests, raw sockets where a test needs to hold a
 * connection (event streams, idle connections, the connection limit).
 * cmocka's assertions run on the test thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/log.h"
#include "peer/http.h"
#include "tests/lib/errassert.h"
#include "tests/lib/testutil.h"

#define DEADLINE_MS 10000
#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define PAGE "<!doctype html><title>shoal</title>"

struct fx {
  uv_loop_t loop;
  uv_async_t async;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* The job the loop thread runs next, and whether it ran. */
  void (*job)(struct fx *fx, void *arg);
  void *job_arg;
  int job_done;
  struct http_server *srv;
  struct http_config cfg;
  char dir[256];
  char sock[320];
  char msg[256];
  int start_err;
  int stopped;
  /* The pump: a timer on the loop that broadcasts until the stream count
   * falls to want_streams. */
  uv_timer_t pump;
  int pumping;
  unsigned want_streams;
  int pump_done;
  size_t pump_bytes;
  char *pump_data;
};

/* ------------------------------------------------------------------ */
/* The loop thread. */

static void on_async(uv_async_t *a) {
  struct fx *fx = a->data;
  void (*job)(struct fx *, void *);
  void *arg;
  pthread_mutex_lock(&fx->mu);
  job = fx->job;
  arg = fx->job_arg;
  fx->job = NULL;
  pthread_mutex_unlock(&fx->mu);
  if (job == NULL) {
    return;
  }
  job(fx, arg);
  pthread_mutex_lock(&fx->mu);
  fx->job_done = 1;
  pthread_cond_broadcast(&fx->cv);
  pthread_mutex_unlock(&fx->mu);
}

static void *loop_main(void *arg) {
  struct fx *fx = arg;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void deadline_in(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CPU time the process used so far, both threads. */
static long cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000L;
}

/* Runs job(fx, arg) on the loop thread and waits for it. */
static void on_loop(struct fx *fx, void (*job)(struct fx *, void *),
                    void *arg) {
  struct timespec ts;
  int rc = 0;
  pthread_mutex_lock(&fx->mu);
  fx->job = job;
  fx->job_arg = arg;
  fx->job_done = 0;
  pthread_mutex_unlock(&fx->mu);
  assert_int_equal(uv_async_send(&fx->async), 0);
  deadline_in(&ts, DEADLINE_MS);
  pthread_mutex_lock(&fx->mu);
  while (!fx->job_done && rc == 0) {
    rc = pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
  }
  pthread_mutex_unlock(&fx->mu);
  assert_int_equal(rc, 0);
}

/* Waits until *flag (written under fx->mu) is set. */
static int wait_flag(struct fx *fx, const int *flag, long ms) {
  struct timespec ts;
  int rc = 0;
  int v;
  deadline_in(&ts, ms);
  pthread_mutex_lock(&fx->mu);
  while (!*flag && rc == 0) {
    rc = pthread_cond_timedwait(&fx->cv, &fx->mu, &ts);
  }
  v = *flag;
  pthread_mutex_unlock(&fx->mu);
  return v;
}

static void set_flag(struct fx *fx, int *flag) {
  pthread_mutex_lock(&fx->mu);
  *flag = 1;
  pthread_cond_broadcast(&fx->cv);
  pthread_mutex_unlock(&fx->mu);
}

static void on_stopped(void *arg) {
  struct fx *fx = arg;
  fx->srv = NULL;
  set_flag(fx, &fx->stopped);
}

/* ------------------------------------------------------------------ */
/* The handler (on the loop thread). */

static void handler(void *arg, const struct http_request *req,
                    struct http_response *res) {
  struct fx *fx = arg;
  if (strcmp(req->path, "/") == 0) {
    res->content_type = "text/html; charset=utf-8";
    res->static_body = PAGE;
    res->static_len = strlen(PAGE);
  } else if (strcmp(req->path, "/v1/echo") == 0) {
    const char *data = http_query(req, "data");
    const char *x = http_query(req, "x");
    json_t *o = json_pack("{s:s, s:I, s:b, s:s?, s:s?, s:b}", "method",
                          req->method, "len", (json_int_t)req->body_len, "tcp",
                          req->via_tcp, "data", data, "x", x, "terminated",
                          req->body[req->body_len] == '\0' &&
                              strlen(req->body) == req->body_len);
    res->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
  } else if (strcmp(req->path, "/v1/missing") == 0) {
    res->body = strdup("{\"replaced\": true}");
    http_error(res, 404, "no such thing: %s", "x\"y");
  } else if (strcmp(req->path, "/v1/events") == 0) {
    res->event_stream = 1;
    res->body = http_event_format("hello", "{\"n\":0}");
  } else if (strcmp(req->path, "/v1/empty") == 0) {
    (void)0; /* no status, no body: 200 and nothing */
  } else if (strcmp(req->path, "/v1/say") == 0) {
    /* A handler that writes to the streams, as the API's do. */
    http_broadcast(fx->srv, "said", req->body);
    res->status = 202;
    res->body = strdup("{}");
  } else if (strcmp(req->path, "/v1/stop") == 0) {
    http_stop(fx->srv, on_stopped, fx);
    res->body = strdup("{}");
  } else {
    http_error(res, 404, "no route");
  }
}

/* ------------------------------------------------------------------ */
/* Jobs. */

static void job_start(struct fx *fx, void *arg) {
  struct http_server **out = arg;
  fx->start_err =
      http_start(out, &fx->loop, &fx->cfg, fx->msg, sizeof(fx->msg));
}

static void job_stop(struct fx *fx, void *arg) {
  (void)arg;
  http_stop(fx->srv, on_stopped, fx);
}

static void on_closed_async(uv_handle_t *h) {
  (void)h;
}

static void job_close_async(struct fx *fx, void *arg) {
  (void)arg;
  if (fx->pumping) {
    uv_close((uv_handle_t *)&fx->pump, NULL);
  }
  uv_close((uv_handle_t *)&fx->async, on_closed_async);
}

static void job_count(struct fx *fx, void *arg) {
  *(unsigned *)arg = http_stream_count(fx->srv);
}

struct bcast {
  const char *event;
  const char *data;
};

static void job_broadcast(struct fx *fx, void *arg) {
  const struct bcast *b = arg;
  http_broadcast(fx->srv, b->event, b->data);
}

static void on_pump(uv_timer_t *t) {
  struct fx *fx = t->data;
  if (http_stream_count(fx->srv) <= fx->want_streams) {
    uv_timer_stop(t);
    set_flag(fx, &fx->pump_done);
    return;
  }
  http_broadcast(fx->srv, "fill", fx->pump_data);
  fx->pump_bytes += strlen(fx->pump_data);
}

static void job_pump(struct fx *fx, void *arg) {
  (void)arg;
  if (!fx->pumping) {
    uv_timer_init(&fx->loop, &fx->pump);
    fx->pump.data = fx;
    fx->pumping = 1;
  }
  fx->pump_done = 0;
  fx->pump_bytes = 0;
  uv_timer_start(&fx->pump, on_pump, 0, 2);
}

/* Broadcasts data every 2 ms until at most want streams are open. */
static int pump_until(struct fx *fx, unsigned want, size_t data_len, long ms) {
  int done;
  free(fx->pump_data);
  fx->pump_data = malloc(data_len + 1);
  assert_non_null(fx->pump_data);
  memset(fx->pump_data, 'x', data_len);
  fx->pump_data[data_len] = '\0';
  fx->want_streams = want;
  on_loop(fx, job_pump, NULL);
  done = wait_flag(fx, &fx->pump_done, ms);
  return done;
}

static unsigned stream_count(struct fx *fx) {
  unsigned n = 0;
  on_loop(fx, job_count, &n);
  return n;
}

/* ------------------------------------------------------------------ */
/* Fixture. */

static int setup(void **state) {
  struct fx *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  tu_tmpdir(fx->dir, sizeof(fx->dir));
  snprintf(fx->sock, sizeof(fx->sock), "%s/api.sock", fx->dir);
  pthread_mutex_init(&fx->mu, NULL);
  pthread_cond_init(&fx->cv, NULL);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(uv_async_init(&fx->loop, &fx->async, on_async), 0);
  fx->async.data = fx;
  fx->cfg.unix_path = fx->sock;
  fx->cfg.tcp_listen = "127.0.0.1:0";
  fx->cfg.token = TOKEN;
  fx->cfg.handler = handler;
  fx->cfg.arg = fx;
  assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  struct fx *fx = *state;
  if (fx->srv != NULL && !fx->stopped) {
    on_loop(fx, job_stop, NULL);
  }
  if (fx->srv != NULL || fx->stopped) {
    assert_true(wait_flag(fx, &fx->stopped, DEADLINE_MS));
  }
  on_loop(fx, job_close_async, NULL);
  pthread_join(fx->thread, NULL);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  pthread_mutex_destroy(&fx->mu);
  pthread_cond_destroy(&fx->cv);
  tu_rmtree(fx->dir);
  free(fx->pump_data);
  free(fx);
  return 0;
}

static void start(struct fx *fx) {
  on_loop(fx, job_start, &fx->srv);
  if (fx->start_err != 0) {
    print_error("http_start: %s (%s)\n", fx->msg,
                shoal_strerror(fx->start_err));
  }
  assert_int_equal(fx->start_err, 0);
  assert_non_null(fx->srv);
}

static uint16_t port_of(struct fx *fx) {
  return http_tcp_port(fx->srv); /* set at start, read-only after */
}

/* ------------------------------------------------------------------ */
/* A libcurl client. */

struct reply {
  CURLcode rc;
  long status;
  char body[8192];
  size_t len;
  char head[4096];
  size_t hlen;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  struct reply *r = arg;
  size_t len = size * n;
  size_t room = sizeof(r->body) - 1 - r->len;
  memcpy(r->body + r->len, p, len < room ? len : room);
  r->len += len < room ? len : room;
  r->body[r->len] = '\0';
  return len;
}

static size_t on_head(char *p, size_t size, size_t n, void *arg) {
  struct reply *r = arg;
  size_t len = size * n;
  size_t room = sizeof(r->head) - 1 - r->hlen;
  memcpy(r->head + r->hlen, p, len < room ? len : room);
  r->hlen += len < room ? len : room;
  r->head[r->hlen] = '\0';
  return len;
}

enum via { VIA_UNIX, VIA_TCP };

/* One request; headers is a NULL-terminated list ("Name: value"). */
static void request(struct fx *fx, enum via via, const char *method,
                    const char *path, const char *const *headers,
                    const char *body, size_t body_len, struct reply *r) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  char url[512];
  assert_non_null(c);
  memset(r, 0, sizeof(*r));
  if (via == VIA_UNIX) {
    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, fx->sock);
  } else {
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port_of(fx),
             path);
  }
  for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
    h = curl_slist_append(h, headers[i]);
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  if (body != NULL) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  r->rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
}

static long get_status(struct fx *fx, enum via via, const char *path,
                       const char *const *headers) {
  struct reply r;
  request(fx, via, "GET", path, headers, NULL, 0, &r);
  assert_int_equal(r.rc, CURLE_OK);
  return r.status;
}

/* The error of a JSON error body, checked for its status field too. */
static void assert_json_error(const struct reply *r, long status) {
  json_error_t e;
  json_t *o = json_loads(r->body, 0, &e);
  assert_non_null(o);
  assert_true(json_is_string(json_object_get(o, "error")));
  assert_int_equal(json_integer_value(json_object_get(o, "status")), status);
  assert_int_equal(r->status, status);
  json_decref(o);
}

/* ------------------------------------------------------------------ */
/* Raw sockets. */

static int connect_unix(const char *path, int rcvbuf) {
  struct sockaddr_un sa;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  if (rcvbuf > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  assert_true(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path));
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static int connect_tcp(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static void send_text(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    assert_true(w > 0);
    s += w;
    n -= (size_t)w;
  }
}

/* The first place needle is in b[0..len), or NULL. */
static const char *find(const char *b, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= len && i <= len - n; i++) {
    if (memcmp(b + i, needle, n) == 0) {
      return b + i;
    }
  }
  return NULL;
}

struct rbuf {
  char b[1 << 16];
  size_t len;
};

/* Reads until needle is in b. Returns 1, 0 at the end of the stream, or
 * -1 at the deadline. */
static int read_until(int fd, struct rbuf *b, const char *needle, long ms) {
  long end = now_ms() + ms;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long left = end - now_ms();
    ssize_t n;
    if (find(b->b, b->len, needle) != NULL) {
      return 1;
    }
    if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
      return -1;
    }
    if (b->len == sizeof(b->b)) {
      /* Keep the last half: the needle may straddle it. */
      memmove(b->b, b->b + sizeof(b->b) / 2, sizeof(b->b) / 2);
      b->len = sizeof(b->b) / 2;
    }
    n = recv(fd, b->b + b->len, sizeof(b->b) - b->len, 0);
    if (n <= 0) {
      return 0;
    }
    b->len += (size_t)n;
  }
}

/* Whether the server ends the connection (reading and dropping whatever
 * comes first) before the deadline. */
static int wait_eof(int fd, long ms) {
  long end = now_ms() + ms;
  char buf[65536];
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long left = end - now_ms();
    ssize_t n;
    if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
      return 0;
    }
    n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      return 1;
    }
  }
}

/* ------------------------------------------------------------------ */
/* The Unix socket. */

static void get_over_unix_socket_with_mode_0600(void **state) {
  struct fx *fx = *state;
  struct reply r;
  struct stat st;
  start(fx);
  assert_int_equal(lstat(fx->sock, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);

  request(fx, VIA_UNIX, "GET", "/", NULL, NULL, 0, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, PAGE);
  assert_non_null(strstr(r.head, "Content-Type: text/html; charset=utf-8"));
  assert_non_null(strstr(r.head, "Cache-Control: no-store"));
  assert_non_null(strstr(r.head, "X-Content-Type-Options: nosniff"));
  assert_non_null(strstr(r.head, "X-Frame-Options: DENY"));
  assert_non_null(strstr(r.head, "Content-Security-Policy: default-src 'self'; "
                                 "style-src 'self' 'unsafe-inline'; script-src "
                                 "'self' 'unsafe-inline'\r\n"));

  /* The API: no token on the socket, JSON, no page headers. */
  request(fx, VIA_UNIX, "GET", "/v1/echo", NULL, NULL, 0, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.head, "Content-Type: application/json"));
  assert_non_null(strstr(r.head, "Cache-Control: no-store"));
  assert_non_null(strstr(r.head, "X-Content-Type-Options: nosniff"));
  assert_null(strstr(r.head, "Content-Security-Policy"));
  assert_non_null(strstr(r.body, "\"tcp\":false"));
}

static void second_start_on_the_socket_is_refused(void **state) {
  struct fx *fx = *state;
  struct http_server *second = (struct http_server *)&second;
  struct stat st;
  start(fx);
  fx->cfg.tcp_listen = NULL;
  on_loop(fx, job_start, &second);
  assert_err(fx->start_err, UV_EADDRINUSE);
  assert_null(second);
  assert_non_null(strstr(fx->msg, "a daemon already runs on"));
  assert_non_null(strstr(fx->msg, fx->sock));
  /* The first goes on, its socket in place. */
  assert_int_equal(lstat(fx->sock, &st), 0);
  assert_int_equal(get_status(fx, VIA_UNIX, "/", NULL), 200);
}

static void stale_socket_is_replaced(void **state) {
  struct fx *fx = *state;
  struct sockaddr_un sa;
  struct stat st;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  assert_true(strlen(fx->sock) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, fx->sock, strlen(fx->sock));
  /* A daemon that died leaves its socket file: bound, nobody listening. */
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  close(fd);
  assert_int_equal(lstat(fx->sock, &st), 0);
  fx->cfg.tcp_listen = NULL;
  start(fx);
  assert_int_equal(get_status(fx, VIA_UNIX, "/", NULL), 200);
  assert_int_equal(lstat(fx->sock, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
}

static void file_that_is_not_a_socket_is_left_alone(void **state) {
  struct fx *fx = *state;
  struct http_server *s = NULL;
  size_t len = 0;
  char *text;
  tu_write_file(fx->dir, "api.sock", "precious", 8);
  fx->cfg.tcp_listen = NULL;
  on_loop(fx, job_start, &s);
  assert_err(fx->start_err, UV_EEXIST);
  assert_null(s);
  assert_non_null(strstr(fx->msg, "not a socket"));
  text = tu_read_text(fx->sock, &len);
  assert_non_null(text);
  assert_string_equal(text, "precious");
  free(text);
}

static void stop_removes_the_socket(void **state) {
  struct fx *fx = *state;
  struct stat st;
  start(fx);
  assert_int_equal(lstat(fx->sock, &st), 0);
  on_loop(fx, job_stop, NULL);
  assert_true(wait_flag(fx, &fx->stopped, DEADLINE_MS));
  assert_int_equal(lstat(fx->sock, &st), -1);
  assert_int_equal(errno, ENOENT);
}

static void stop_from_a_handler(void **state) {
  struct fx *fx = *state;
  struct reply r;
  struct stat st;
  start(fx);
  /* The answer may or may not get out: the server ends every connection
   * on the next turn of the loop. */
  request(fx, VIA_UNIX, "POST", "/v1/stop", NULL, "", 0, &r);
  assert_true(wait_flag(fx, &fx->stopped, DEADLINE_MS));
  assert_int_equal(lstat(fx->sock, &st), -1);
}

static void stop_null_calls_back(void **state) {
  struct fx *fx = *state;
  http_stop(NULL, on_stopped, fx);
  assert_true(wait_flag(fx, &fx->stopped, 0));
}

/* ------------------------------------------------------------------ */
/* TCP: token, Host, Origin. */

static void tcp_needs_the_token_under_v1(void **state) {
  struct fx *fx = *state;
  const char *right[] = {"Authorization: Bearer " TOKEN, NULL};
  const char *lower[] = {"Authorization: bearer " TOKEN, NULL};
  /* Same length, one character off; shorter; longer; another scheme. */
  const char *wrong_same[] = {
      "Authorization: Bearer "
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF",
      NULL};
  const char *wrong_short[] = {"Authorization: Bearer 0123", NULL};
  const char *wrong_long[] = {"Authorization: Bearer " TOKEN "0", NULL};
  const char *basic[] = {"Authorization: Basic " TOKEN, NULL};
  const char *empty[] = {"Authorization: Bearer ", NULL};
  struct reply r;
  start(fx);
  assert_true(port_of(fx) != 0);

  request(fx, VIA_TCP, "GET", "/v1/echo", NULL, NULL, 0, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_json_error(&r, 401);
  request(fx, VIA_TCP, "GET", "/v1/echo", wrong_same, NULL, 0, &r);
  assert_json_error(&r, 401);
  request(fx, VIA_TCP, "GET", "/v1/echo", wrong_short, NULL, 0, &r);
  assert_json_error(&r, 401);
  request(fx, VIA_TCP, "GET", "/v1/echo", wrong_long, NULL, 0, &r);
  assert_json_error(&r, 401);
  request(fx, VIA_TCP, "GET", "/v1/echo", basic, NULL, 0, &r);
  assert_json_error(&r, 401);
  request(fx, VIA_TCP, "GET", "/v1/echo", empty, NULL, 0, &r);
  assert_json_error(&r, 401);
  /* "/v1" itself, and a path under it that has no route. */
  assert_int_equal(get_status(fx, VIA_TCP, "/v1", NULL), 401);
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/nothing", NULL), 401);

  request(fx, VIA_TCP, "GET", "/v1/echo", right, NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"tcp\":true"));
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", lower), 200);

  /* The page needs none, and a path outside /v1/ neither. */
  assert_int_equal(get_status(fx, VIA_TCP, "/", NULL), 200);
  assert_int_equal(get_status(fx, VIA_TCP, "/v2", NULL), 404);
}

static void tcp_checks_the_host(void **state) {
  struct fx *fx = *state;
  char evil[64], local[64], v4[64], v6[64], other_port[64], bare[64];
  const char *h[] = {NULL, "Authorization: Bearer " TOKEN, NULL};
  start(fx);
  snprintf(evil, sizeof(evil), "Host: evil.example:%u", port_of(fx));
  snprintf(local, sizeof(local), "Host: localhost:%u", port_of(fx));
  snprintf(v4, sizeof(v4), "Host: 127.0.0.1:%u", port_of(fx));
  snprintf(v6, sizeof(v6), "Host: [::1]:%u", port_of(fx));
  snprintf(other_port, sizeof(other_port), "Host: 127.0.0.1:%u",
           (unsigned)(port_of(fx) == 65535 ? 1 : port_of(fx) + 1));
  snprintf(bare, sizeof(bare), "Host: localhost");

  h[0] = evil;
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 403);
  assert_int_equal(get_status(fx, VIA_TCP, "/", h), 403);
  h[0] = other_port;
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 403);
  h[0] = bare;
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 403);
  h[0] = "Host: localhost.evil.example";
  assert_int_equal(get_status(fx, VIA_TCP, "/", h), 403);
  h[0] = local;
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 200);
  h[0] = v4;
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 200);
  h[0] = v6;
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 200);
  /* The Unix socket does not look at Host. */
  h[0] = evil;
  assert_int_equal(get_status(fx, VIA_UNIX, "/v1/echo", h), 200);
}

static void origin_is_checked_on_both_listeners(void **state) {
  struct fx *fx = *state;
  char good[64], wrong_port[64];
  const char *h[] = {NULL, "Authorization: Bearer " TOKEN, NULL};
  struct reply r;
  start(fx);
  snprintf(good, sizeof(good), "Origin: http://127.0.0.1:%u", port_of(fx));
  snprintf(wrong_port, sizeof(wrong_port), "Origin: http://127.0.0.1:%u",
           (unsigned)(port_of(fx) == 65535 ? 1 : port_of(fx) + 1));
  for (int via = VIA_UNIX; via <= VIA_TCP; via++) {
    h[0] = "Origin: http://evil.example";
    request(fx, (enum via)via, "GET", "/v1/echo", h, NULL, 0, &r);
    assert_json_error(&r, 403);
    assert_int_equal(get_status(fx, (enum via)via, "/", h), 403);
    h[0] = "Origin: null";
    assert_int_equal(get_status(fx, (enum via)via, "/v1/echo", h), 403);
    h[0] = wrong_port;
    assert_int_equal(get_status(fx, (enum via)via, "/v1/echo", h), 403);
    h[0] = "Origin: https://127.0.0.1";
    assert_int_equal(get_status(fx, (enum via)via, "/v1/echo", h), 403);
    h[0] = good;
    assert_int_equal(get_status(fx, (enum via)via, "/v1/echo", h), 200);
  }
  /* On the socket, a loopback name without a port is an origin too. */
  h[0] = "Origin: http://localhost";
  assert_int_equal(get_status(fx, VIA_UNIX, "/v1/echo", h), 200);
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", h), 403);
}

/* tmpl with each "PORT" replaced by port. */
static void with_port(char *out, size_t cap, const char *tmpl, unsigned port) {
  size_t n = 0;
  while (*tmpl != '\0' && n + 8 < cap) {
    if (strncmp(tmpl, "PORT", 4) == 0) {
      n += (size_t)snprintf(out + n, cap - n, "%u", port);
      tmpl += 4;
    } else {
      out[n++] = *tmpl++;
    }
  }
  out[n] = '\0';
}

/* Hostile and odd forms of Host and Origin: each is refused unless it
 * names this daemon exactly. */
static void host_and_origin_forms(void **state) {
  struct fx *fx = *state;
  unsigned port;
  char h[1200];
  const char *hs[] = {h, "Authorization: Bearer " TOKEN, NULL};
  struct {
    const char *fmt; /* PORT: the port */
    long want;
  } hosts[] = {
      {"Host: LocalHost:PORT", 200},
      {"Host: 127.0.0.1:0PORT", 403},
      {"Host: 127.0.0.1:PORT:PORT", 403},
      {"Host: 127.0.0.1:PORT/", 403},
      {"Host: 127.0.0.1:PORT.", 403},
      {"Host: 127.0.0.1:+PORT", 403},
      {"Host: 127.0.0.2:PORT", 403},
      {"Host: [::1]PORT", 403},
      {"Host: [::1:PORT", 403},
      {"Host: [::1]]:PORT", 403},
      {"Host: ::1:PORT", 403},
      {"Host: @127.0.0.1:PORT", 403},
      {"Host: localhost.:PORT", 403},
      {"Host: 127.0.0.1%00:PORT", 403},
      {"Host: :PORT", 403},
  };
  struct {
    const char *fmt;
    long want;
  } origins[] = {
      {"Origin: HTTP://127.0.0.1:PORT", 200},
      {"Origin: http://127.0.0.1:PORT/", 403},
      {"Origin: http://127.0.0.1:PORT.evil.example", 403},
      {"Origin: http://user@127.0.0.1:PORT", 403},
      {"Origin: http:/127.0.0.1:PORT", 403},
      {"Origin: ws://127.0.0.1:PORT", 403},
      {"Origin: http://127.0.0.1:PORT http://evil.example", 403},
      {"Origin: http://", 403},
      {"Origin: ", 200}, /* curl drops an empty header: no Origin */
  };
  start(fx);
  port = port_of(fx);
  for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
    with_port(h, sizeof(h), hosts[i].fmt, port);
    if (get_status(fx, VIA_TCP, "/v1/echo", hs) != hosts[i].want) {
      fail_msg("%s: want %ld", h, hosts[i].want);
    }
  }
  for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
    with_port(h, sizeof(h), origins[i].fmt, port);
    for (int via = VIA_UNIX; via <= VIA_TCP; via++) {
      if (get_status(fx, (enum via)via, "/v1/echo", hs) != origins[i].want) {
        fail_msg("%s over %s: want %ld", h, via == VIA_TCP ? "tcp" : "unix",
                 origins[i].want);
      }
    }
  }
  /* A long Host is refused, not cut to something that matches. */
  memset(h, 'a', sizeof(h) - 1);
  h[sizeof(h) - 1] = '\0';
  snprintf(h, sizeof(h) - 1, "Host: localhost");
  h[strlen(h)] = 'a';
  assert_int_equal(get_status(fx, VIA_TCP, "/v1/echo", hs), 403);
}

/* Another loopback address: its own name is a Host too. */
static void listener_on_another_loopback_address(void **state) {
  struct fx *fx = *state;
  char host[64];
  const char *hs[] = {host, NULL};
  struct reply r;
  CURL *c;
  char url[128];
  struct curl_slist *sl = NULL;
  fx->cfg.tcp_listen = "127.0.0.2:0";
  start(fx);
  snprintf(url, sizeof(url), "http://127.0.0.2:%u/", port_of(fx));
  for (int i = 0; i < 2; i++) {
    snprintf(host, sizeof(host), "Host: %s:%u",
             i == 0 ? "127.0.0.2" : "evil.example", port_of(fx));
    c = curl_easy_init();
    memset(&r, 0, sizeof(r));
    sl = curl_slist_append(NULL, hs[0]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    r.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(sl);
    curl_easy_cleanup(c);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, i == 0 ? 200 : 403);
  }
}

static void ipv6_loopback_listener(void **state) {
  struct fx *fx = *state;
  const char *h[] = {"Authorization: Bearer " TOKEN, NULL};
  struct reply r;
  CURL *c;
  char url[128];
  struct curl_slist *sl = NULL;
  fx->cfg.tcp_listen = "[::1]:0";
  start(fx);
  snprintf(url, sizeof(url), "http://[::1]:%u/v1/echo", port_of(fx));
  c = curl_easy_init();
  memset(&r, 0, sizeof(r));
  sl = curl_slist_append(sl, h[0]);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  r.rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(sl);
  curl_easy_cleanup(c);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 200);
}

static void non_loopback_addresses_are_refused(void **state) {
  static const char *const bad[] = {"0.0.0.0:0",    "192.0.2.1:1",
                                    "[::]:0",       "[::2]:0",
                                    "localhost:0",  "127.0.0.1",
                                    "127.0.0.1:",   "127.0.0.1:99999",
                                    "127.0.0.1:-1", "127.0.0.1:+80",
                                    "[::1]0",       "[::1",
                                    "::1:0",        "",
                                    ":80",          "127.0.0.1:80x",
                                    "127.1:0",      "1.2.3.4.5:0",
                                    "[127.0.0.1]:0"};
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uv_loop_t loop;
    struct http_server *s = (struct http_server *)&loop;
    struct http_config c = {
        .tcp_listen = bad[i], .token = TOKEN, .handler = handler};
    char msg[256] = "";
    assert_int_equal(uv_loop_init(&loop), 0);
    if (http_start(&s, &loop, &c, msg, sizeof(msg)) != SHOAL_EINVAL) {
      fail_msg("'%s' was not refused with SHOAL_EINVAL", bad[i]);
    }
    assert_null(s);
    assert_true(strlen(msg) > 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
  }
  {
    /* TCP without a token, and no listener at all. */
    uv_loop_t loop;
    struct http_server *s = NULL;
    struct http_config c = {.tcp_listen = "127.0.0.1:0", .handler = handler};
    char msg[256] = "";
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_err(http_start(&s, &loop, &c, msg, sizeof(msg)), SHOAL_EINVAL);
    c.token = "";
    assert_err(http_start(&s, &loop, &c, msg, sizeof(msg)), SHOAL_EINVAL);
    c.tcp_listen = NULL;
    assert_err(http_start(&s, &loop, &c, msg, sizeof(msg)), SHOAL_EINVAL);
    assert_null(s);
    assert_int_equal(uv_loop_close(&loop), 0);
  }
}

static void taken_port_is_addrinuse(void **state) {
  struct fx *fx = *state;
  struct http_server *second = NULL;
  char addr[64];
  start(fx);
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", port_of(fx));
  fx->cfg.unix_path = NULL;
  fx->cfg.tcp_listen = addr;
  on_loop(fx, job_start, &second);
  assert_err(fx->start_err, UV_EADDRINUSE);
  assert_null(second);
  /* The failed start took nothing away from the first. */
  assert_int_equal(get_status(fx, VIA_UNIX, "/", NULL), 200);
  fx->cfg.unix_path = fx->sock;
}

/* ------------------------------------------------------------------ */
/* Bodies, queries, errors. */

static void body_up_to_max_body(void **state) {
  struct fx *fx = *state;
  const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
  const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
  char body[1001];
  char want[64];
  struct reply r;
  memset(body, 'a', sizeof(body));
  fx->cfg.max_body = 1000;
  start(fx);

  request(fx, VIA_UNIX, "POST", "/v1/echo", NULL, body, 1000, &r);
  assert_int_equal(r.status, 200);
  snprintf(want, sizeof(want), "\"len\":%d", 1000);
  assert_non_null(strstr(r.body, want));
  assert_non_null(strstr(r.body, "\"terminated\":true"));

  request(fx, VIA_UNIX, "POST", "/v1/echo", NULL, body, 1001, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_json_error(&r, 413);
  assert_non_null(strstr(r.head, "Connection: close"));
  request(fx, VIA_TCP, "POST", "/v1/echo", auth, body, 1001, &r);
  assert_json_error(&r, 413);

  /* A body without a length: taken up to the limit, the connection
   * closed past it. */
  request(fx, VIA_UNIX, "POST", "/v1/echo", chunked, body, 1000, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, want));
  request(fx, VIA_UNIX, "POST", "/v1/echo", chunked, body, 1001, &r);
  assert_true(r.rc != CURLE_OK || r.status != 200);

  /* A handler that sets nothing answers 200 with no body. */
  request(fx, VIA_UNIX, "GET", "/v1/empty", NULL, NULL, 0, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.len, 0);

  /* An empty body is "", and the server still serves. */
  request(fx, VIA_UNIX, "POST", "/v1/echo", NULL, "", 0, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"len\":0"));
}

static void query_arguments(void **state) {
  struct fx *fx = *state;
  struct reply r;
  start(fx);
  request(fx, VIA_UNIX, "DELETE", "/v1/echo?data=delete&x=a%20b", NULL, NULL, 0,
          &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"method\":\"DELETE\""));
  assert_non_null(strstr(r.body, "\"data\":\"delete\""));
  assert_non_null(strstr(r.body, "\"x\":\"a b\""));
  request(fx, VIA_UNIX, "GET", "/v1/echo", NULL, NULL, 0, &r);
  assert_non_null(strstr(r.body, "\"data\":null"));
}

static void handler_error_is_exact_json(void **state) {
  struct fx *fx = *state;
  struct reply r;
  start(fx);
  request(fx, VIA_UNIX, "GET", "/v1/missing", NULL, NULL, 0, &r);
  assert_int_equal(r.status, 404);
  assert_string_equal(r.body,
                      "{\"error\":\"no such thing: x\\\"y\",\"status\":404}");
  assert_non_null(strstr(r.head, "Content-Type: application/json"));
}

static void error_and_event_text(void **state) {
  struct http_response res = {0};
  char *ev;
  (void)state;
  http_error(&res, 500, "%s", "caf\xc3\xa9 \xff");
  assert_int_equal(res.status, 500);
  /* Not UTF-8: the message still goes out, as ASCII. */
  assert_string_equal(res.body, "{\"error\":\"caf?? ?\",\"status\":500}");
  http_error(&res, 400, "%0300d", 7); /* longer than any fixed buffer */
  assert_int_equal(strlen(res.body),
                   strlen("{\"error\":\"\",\"status\":400}") + 300);
  free(res.body);

  ev = http_event_format("state", "{\"a\":1}");
  assert_string_equal(ev, "event: state\ndata: {\"a\":1}\n\n");
  free(ev);
  ev = http_event_format("x", "one\ntwo\n");
  assert_string_equal(ev, "event: x\ndata: one\ndata: two\ndata: \n\n");
  free(ev);
  /* A carriage return cannot smuggle in a field of its own. */
  ev = http_event_format("x", "a\r\nb\revent: y\r");
  assert_string_equal(ev,
                      "event: x\ndata: a\ndata: b\ndata: event: y\ndata: \n\n");
  free(ev);
  ev = http_event_format("x", "");
  assert_string_equal(ev, "event: x\ndata: \n\n");
  free(ev);
}

/* ------------------------------------------------------------------ */
/* Connections. */

static void connection_limit(void **state) {
  struct fx *fx = *state;
  struct rbuf *b = calloc(1, sizeof(*b));
  char req[128];
  int a, c, extra, later;
  fx->cfg.max_connections = 2;
  start(fx);
  snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
           port_of(fx));
  a = connect_tcp(port_of(fx));
  c = connect_tcp(port_of(fx));
  extra = connect_tcp(port_of(fx));
  assert_true(wait_eof(extra, DEADLINE_MS));
  /* The first two are served. */
  send_text(a, req);
  assert_int_equal(read_until(a, b, PAGE, DEADLINE_MS), 1);
  b->len = 0;
  send_text(c, req);
  assert_int_equal(read_until(c, b, PAGE, DEADLINE_MS), 1);
  /* One closes: there is room for another. */
  close(a);
  later = connect_tcp(port_of(fx));
  b->len = 0;
  for (long end = now_ms() + DEADLINE_MS;;) {
    /* The server may not have seen the close yet: then later is refused
     * and the next try is made. */
    int got;
    send(later, req, strlen(req), MSG_NOSIGNAL);
    got = read_until(later, b, PAGE, DEADLINE_MS);
    if (got == 1) {
      break;
    }
    assert_int_equal(got, 0);
    assert_true(now_ms() < end);
    close(later);
    later = connect_tcp(port_of(fx));
    b->len = 0;
  }
  close(c);
  close(extra);
  close(later);
  free(b);
}

static void idle_connection_times_out_but_a_stream_does_not(void **state) {
  struct fx *fx = *state;
  struct rbuf *b = calloc(1, sizeof(*b));
  int stream, idle;
  long t0, cpu0;
  fx->cfg.idle_timeout_s = 1;
  fx->cfg.sse_keepalive_ms = 100;
  start(fx);
  stream = connect_unix(fx->sock, 0);
  send_text(stream, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_int_equal(read_until(stream, b, "event: hello\n", DEADLINE_MS), 1);
  t0 = now_ms();
  cpu0 = cpu_ms();
  idle = connect_unix(fx->sock, 0);
  assert_true(wait_eof(idle, DEADLINE_MS));
  assert_true(now_ms() - t0 >= 900);
  /* Keep-alive comments keep coming well past the idle timeout. */
  while (now_ms() - t0 < 2500) {
    b->len = 0;
    assert_int_equal(read_until(stream, b, ": keep-alive\n\n", 2000), 1);
  }
  assert_int_equal(stream_count(fx), 1);
  /* An idle stream sleeps (its connection is suspended): the process was
   * mostly idle, where a reader that kept returning 0 would spin. */
  assert_true(cpu_ms() - cpu0 < (now_ms() - t0) / 2);
  close(stream);
  close(idle);
  free(b);
}

/* ------------------------------------------------------------------ */
/* Event streams. */

static void event_stream_in_order_then_gone(void **state) {
  struct fx *fx = *state;
  struct rbuf *b = calloc(1, sizeof(*b));
  struct bcast one = {"one", "{\"i\":1}"};
  struct bcast two = {"two", "{\"i\":2}"};
  char req[256];
  const char *p1, *p2;
  struct reply r;
  int u, t;
  start(fx);
  assert_int_equal(stream_count(fx), 0);
  u = connect_unix(fx->sock, 0);
  send_text(u, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_int_equal(
      read_until(u, b, "event: hello\ndata: {\"n\":0}\n\n", DEADLINE_MS), 1);
  assert_non_null(find(b->b, b->len, "200 OK"));
  assert_non_null(find(b->b, b->len, "text/event-stream"));
  assert_non_null(find(b->b, b->len, "no-store"));
  assert_int_equal(stream_count(fx), 1);

  /* A second stream over TCP, with the token. */
  snprintf(req, sizeof(req),
           "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
           "Authorization: Bearer " TOKEN "\r\n\r\n",
           port_of(fx));
  t = connect_tcp(port_of(fx));
  send_text(t, req);
  {
    struct rbuf *bt = calloc(1, sizeof(*bt));
    assert_int_equal(read_until(t, bt, "event: hello\n", DEADLINE_MS), 1);
    free(bt);
  }
  assert_int_equal(stream_count(fx), 2);

  on_loop(fx, job_broadcast, &one);
  on_loop(fx, job_broadcast, &two);
  assert_int_equal(
      read_until(u, b, "event: two\ndata: {\"i\":2}\n\n", DEADLINE_MS), 1);
  p1 = find(b->b, b->len, "event: one\ndata: {\"i\":1}\n\n");
  p2 = find(b->b, b->len, "event: two\n");
  assert_non_null(p1);
  assert_true(p1 < p2);

  /* A handler broadcasts, to both listeners' streams. */
  request(fx, VIA_UNIX, "POST", "/v1/say", NULL, "{\"i\":3}", 7, &r);
  assert_int_equal(r.status, 202);
  assert_int_equal(
      read_until(u, b, "event: said\ndata: {\"i\":3}\n\n", DEADLINE_MS), 1);
  {
    struct rbuf *bt = calloc(1, sizeof(*bt));
    assert_int_equal(read_until(t, bt, "event: said\n", DEADLINE_MS), 1);
    free(bt);
  }

  /* The clients leave; the server notices at its next write. */
  close(u);
  assert_true(pump_until(fx, 1, 16, DEADLINE_MS));
  close(t);
  assert_true(pump_until(fx, 0, 16, DEADLINE_MS));
  assert_int_equal(stream_count(fx), 0);
  free(b);
}

static void stop_ends_open_streams(void **state) {
  struct fx *fx = *state;
  struct rbuf *b = calloc(1, sizeof(*b));
  int u;
  start(fx);
  u = connect_unix(fx->sock, 0);
  send_text(u, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_int_equal(read_until(u, b, "event: hello\n", DEADLINE_MS), 1);
  /* Its queue is empty: the connection is suspended, which libmicrohttpd
   * cannot stop with. */
  assert_int_equal(stream_count(fx), 1);
  on_loop(fx, job_stop, NULL);
  assert_true(wait_flag(fx, &fx->stopped, DEADLINE_MS));
  assert_true(wait_eof(u, DEADLINE_MS));
  close(u);
  free(b);
}

static void slow_reader_is_closed(void **state) {
  struct fx *fx = *state;
  struct rbuf *b = calloc(1, sizeof(*b));
  int fast, slow;
  fx->cfg.sse_max_queued = 64u << 10;
  start(fx);
  slow = connect_unix(fx->sock, 4096);
  send_text(slow, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_int_equal(read_until(slow, b, "event: hello\n", DEADLINE_MS), 1);
  fast = connect_unix(fx->sock, 0);
  send_text(fast, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  b->len = 0;
  assert_int_equal(read_until(fast, b, "event: hello\n", DEADLINE_MS), 1);
  assert_int_equal(stream_count(fx), 2);
  /* slow reads no more: 8 KiB events pile up until its queue is over the
   * limit. (fast is not read either, but the test stops at the first.) */
  assert_true(pump_until(fx, 1, 8192, DEADLINE_MS));
  assert_true(wait_eof(slow, DEADLINE_MS));
  close(slow);
  close(fast);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(get_over_unix_socket_with_mode_0600,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(second_start_on_the_socket_is_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(stale_socket_is_replaced, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(file_that_is_not_a_socket_is_left_alone,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(stop_removes_the_socket, setup, teardown),
      cmocka_unit_test_setup_teardown(stop_from_a_handler, setup, teardown),
      cmocka_unit_test_setup_teardown(stop_null_calls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(tcp_needs_the_token_under_v1, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(tcp_checks_the_host, setup, teardown),
      cmocka_unit_test_setup_teardown(origin_is_checked_on_both_listeners,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(host_and_origin_forms, setup, teardown),
      cmocka_unit_test_setup_teardown(listener_on_another_loopback_address,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(ipv6_loopback_listener, setup, teardown),
      cmocka_unit_test(non_loopback_addresses_are_refused),
      cmocka_unit_test_setup_teardown(taken_port_is_addrinuse, setup, teardown),
      cmocka_unit_test_setup_teardown(body_up_to_max_body, setup, teardown),
      cmocka_unit_test_setup_teardown(query_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(handler_error_is_exact_json, setup,
                                      teardown),
      cmocka_unit_test(error_and_event_text),
      cmocka_unit_test_setup_teardown(connection_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(
          idle_connection_times_out_but_a_stream_does_not, setup, teardown),
      cmocka_unit_test_setup_teardown(event_stream_in_order_then_gone, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(stop_ends_open_streams, setup, teardown),
      cmocka_unit_test_setup_teardown(slow_reader_is_closed, setup, teardown),
  };
  int rc;
  log_set_level(LOG_WARN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
