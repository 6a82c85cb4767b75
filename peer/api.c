/* The daemon's API (api.h): routes, JSON, the page and the event stream. */
#include "peer/api.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/http.h"
#include "peer/web_page.h"

#define API_PATH_BYTES 4200

struct api {
  uv_loop_t *loop;
  struct daemon *d;
  struct http_server *http;
  uv_timer_t timer;
  char socket_path[API_PATH_BYTES];
  char tcp[96];
  char page[256];
  char token[API_TOKEN_CHARS + 1];
  char version[32];
  uint8_t peer_pk[32];
  void (*stop_cb)(void *);
  void *stop_arg;
  unsigned closing;
};

/* ------------------------------------------------------------------------ */
/* JSON */

/* A JSON string of s; bytes that are not UTF-8 (a path may hold them)
 * become U+FFFD, so the reply stays JSON. */
static json_t *jstr(const char *s) {
  json_t *j;
  char *clean;
  size_t n, o = 0;
  if (s == NULL) {
    return json_null();
  }
  j = json_string(s);
  if (j != NULL) {
    return j;
  }
  n = strlen(s);
  clean = malloc(n * 3 + 1);
  if (clean == NULL) {
    return json_null();
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      clean[o++] = (char)c;
    } else {
      memcpy(clean + o, "\xef\xbf\xbd", 3); /* U+FFFD */
      o += 3;
    }
  }
  clean[o] = '\0';
  j = json_string(clean);
  free(clean);
  return j != NULL ? j : json_null();
}

static json_t *jid(const uint8_t *content) {
  char text[TEXTID_STRLEN];
  if (content == NULL) {
    return json_null();
  }
  textid_encode(TEXTID_CONTENT, content, text);
  return json_string(text);
}

static json_t *content_json(const struct daemon_item_view *v) {
  json_t *o = json_object();
  double progress =
      v->size > 0 ? (double)v->have / (double)v->size : (v->have > 0 ? 1 : 0);
  if (v->state == DS_CHECKING && v->check_total > 0) {
    progress = (double)v->check_done / (double)v->check_total;
  }
  json_object_set_new(o, "id", jid(v->content));
  json_object_set_new(o, "name", jstr(v->name));
  json_object_set_new(
      o, "kind", json_string(v->kind == LIBRARY_SHARE ? "share" : "download"));
  json_object_set_new(o, "state", json_string(daemon_state_name(v->state)));
  json_object_set_new(o, "size", json_integer((json_int_t)v->size));
  json_object_set_new(o, "have", json_integer((json_int_t)v->have));
  json_object_set_new(o, "progress", json_real(progress));
  json_object_set_new(o, "download_rate",
                      json_integer((json_int_t)v->download_rate));
  json_object_set_new(o, "upload_rate",
                      json_integer((json_int_t)v->upload_rate));
  json_object_set_new(o, "peers", json_integer(v->peers));
  json_object_set_new(o, "seeders", json_integer(v->seeders));
  json_object_set_new(o, "uploaded", json_integer((json_int_t)v->uploaded));
  json_object_set_new(o, "downloaded", json_integer((json_int_t)v->downloaded));
  json_object_set_new(
      o, "ratio",
      json_real(v->size > 0 ? (double)v->uploaded / (double)v->size : 0.0));
  json_object_set_new(o, "path", jstr(v->path));
  json_object_set_new(o, "link", jstr(v->link));
  json_object_set_new(o, "added", json_integer(v->added));
  json_object_set_new(o, "error", jstr(v->error));
  if (v->state == DS_CHECKING) {
    json_object_set_new(o, "checked", json_integer((json_int_t)v->check_done));
    json_object_set_new(o, "to_check",
                        json_integer((json_int_t)v->check_total));
  }
  return o;
}

static json_t *status_json(struct api *a) {
  struct daemon_totals t;
  char pk[TEXTID_STRLEN];
  json_t *o = json_object(), *api = json_object(), *lim = json_object();
  daemon_totals(a->d, &t);
  textid_encode(TEXTID_KEY, a->peer_pk, pk);
  json_object_set_new(o, "version", json_string(a->version));
  json_object_set_new(o, "peer", json_string(pk));
  json_object_set_new(o, "port", json_integer(t.port));
  json_object_set_new(api, "socket", jstr(a->socket_path));
  json_object_set_new(api, "tcp",
                      a->tcp[0] ? json_string(a->tcp) : json_null());
  json_object_set_new(o, "api", api);
  json_object_set_new(o, "uptime",
                      json_integer((json_int_t)(time(NULL) - t.started)));
  json_object_set_new(o, "contents", json_integer(t.contents));
  json_object_set_new(o, "downloading", json_integer(t.downloading));
  json_object_set_new(o, "seeding", json_integer(t.seeding));
  json_object_set_new(o, "uploaded", json_integer((json_int_t)t.uploaded));
  json_object_set_new(o, "downloaded", json_integer((json_int_t)t.downloaded));
  json_object_set_new(o, "upload_rate",
                      json_integer((json_int_t)t.upload_rate));
  json_object_set_new(o, "download_rate",
                      json_integer((json_int_t)t.download_rate));
  json_object_set_new(lim, "upload", json_integer((json_int_t)t.upload_limit));
  json_object_set_new(lim, "download",
                      json_integer((json_int_t)t.download_limit));
  json_object_set_new(o, "limits", lim);
  return o;
}

/* The reply's body: j dumped (and released). */
static void reply(struct http_response *res, int status, json_t *j) {
  res->status = status;
  res->body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (res->body == NULL) {
    http_error(res, 500, "out of memory");
  }
}

/* ------------------------------------------------------------------------ */
/* Routes */

static void add_to_array(void *arg, const struct daemon_item_view *v) {
  json_array_append_new(arg, content_json(v));
}

static void list_contents(struct api *a, struct http_response *res) {
  json_t *arr = json_array(), *o = json_object();
  daemon_each(a->d, add_to_array, arr);
  json_object_set_new(o, "contents", arr);
  reply(res, 200, o);
}

static void one_content(struct api *a, const uint8_t *content, int status,
                        struct http_response *res) {
  struct daemon_item_view v;
  if (daemon_get(a->d, content, &v) != 0) {
    /* Gone already (removed as it started): say what was done. */
    json_t *o = json_object();
    json_object_set_new(o, "id", jid(content));
    reply(res, status, o);
    return;
  }
  reply(res, status, content_json(&v));
}

/* The body as a JSON object, or a 400 said. */
static json_t *body_object(const struct http_request *req,
                           struct http_response *res) {
  json_error_t e;
  json_t *j;
  if (req->body_len == 0) {
    http_error(res, 400, "the request needs a JSON object as its body");
    return NULL;
  }
  j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
  if (j == NULL) {
    http_error(res, 400, "the body is not JSON: line %d, column %d: %s", e.line,
               e.column, e.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    http_error(res, 400, "the body must be a JSON object");
    return NULL;
  }
  return j;
}

/* A string field: its value, NULL when absent (or a 400 said, *bad set,
 * when present and not a string). */
static const char *str_field(json_t *o, const char *key, int *bad,
                             struct http_response *res) {
  json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v)) {
    return NULL;
  }
  if (!json_is_string(v)) {
    http_error(res, 400, "\"%s\" must be a string", key);
    *bad = 1;
    return NULL;
  }
  return json_string_value(v);
}

static void post_content(struct api *a, const struct http_request *req,
                         struct http_response *res) {
  char msg[DAEMON_MSG_BYTES];
  uint8_t content[MANIFEST_ID_BYTES];
  int bad = 0, rc;
  json_t *o = body_object(req, res);
  const char *link, *dir;
  if (o == NULL) {
    return;
  }
  link = str_field(o, "link", &bad, res);
  dir = bad ? NULL : str_field(o, "dir", &bad, res);
  if (bad) {
    json_decref(o);
    return;
  }
  if (link == NULL) {
    json_decref(o);
    http_error(res, 400, "\"link\" is missing: the share link to download");
    return;
  }
  rc = daemon_add_link(a->d, link, dir, content, msg, sizeof(msg));
  json_decref(o);
  if (rc != 0) {
    http_error(res, rc, "%s", msg);
    return;
  }
  one_content(a, content, 201, res);
}

static void post_share(struct api *a, const struct http_request *req,
                       struct http_response *res) {
  char msg[DAEMON_MSG_BYTES];
  int bad = 0, rc;
  json_t *o = body_object(req, res), *r;
  const char *path;
  if (o == NULL) {
    return;
  }
  path = str_field(o, "path", &bad, res);
  if (bad) {
    json_decref(o);
    return;
  }
  if (path == NULL) {
    json_decref(o);
    http_error(res, 400, "\"path\" is missing: the file or folder to share");
    return;
  }
  rc = daemon_share_path(a->d, path, msg, sizeof(msg));
  if (rc != 0) {
    json_decref(o);
    http_error(res, rc, "%s", msg);
    return;
  }
  r = json_object();
  json_object_set_new(r, "id", json_null());
  json_object_set_new(r, "path", jstr(path));
  json_object_set_new(r, "kind", json_string("share"));
  json_object_set_new(r, "state", json_string("checking"));
  json_decref(o);
  reply(res, 202, r);
}

static void limits(struct api *a, const struct http_request *req,
                   struct http_response *res) {
  struct daemon_totals t;
  json_t *o;
  daemon_totals(a->d, &t);
  if (strcmp(req->method, "PUT") == 0) {
    json_t *b = body_object(req, res), *up, *down;
    if (b == NULL) {
      return;
    }
    up = json_object_get(b, "upload");
    down = json_object_get(b, "download");
    if ((up != NULL && (!json_is_integer(up) || json_integer_value(up) < 0)) ||
        (down != NULL &&
         (!json_is_integer(down) || json_integer_value(down) < 0))) {
      json_decref(b);
      http_error(res, 400,
                 "\"upload\" and \"download\" are bytes a second: integers, "
                 "0 or more (0: no limit)");
      return;
    }
    if (up != NULL) {
      t.upload_limit = (uint64_t)json_integer_value(up);
    }
    if (down != NULL) {
      t.download_limit = (uint64_t)json_integer_value(down);
    }
    json_decref(b);
    daemon_set_limits(a->d, t.upload_limit, t.download_limit);
  } else if (strcmp(req->method, "GET") != 0) {
    http_error(res, 405, "%s takes GET and PUT", req->path);
    return;
  }
  o = json_object();
  json_object_set_new(o, "upload", json_integer((json_int_t)t.upload_limit));
  json_object_set_new(o, "download",
                      json_integer((json_int_t)t.download_limit));
  reply(res, 200, o);
}

static void events(struct api *a, struct http_response *res) {
  json_t *s = status_json(a);
  char *data = json_dumps(s, JSON_COMPACT);
  json_decref(s);
  if (data == NULL) {
    http_error(res, 500, "out of memory");
    return;
  }
  res->content_type = "text/event-stream";
  res->event_stream = 1;
  res->body = malloc(strlen(data) + 32);
  if (res->body != NULL) {
    sprintf(res->body, "event: hello\ndata: %s\n\n", data);
  }
  free(data);
}

/* /v1/contents/ID[/ACTION] */
static void content_route(struct api *a, const struct http_request *req,
                          const char *rest, struct http_response *res) {
  uint8_t content[MANIFEST_ID_BYTES];
  char msg[DAEMON_MSG_BYTES];
  const char *slash = strchr(rest, '/');
  size_t idlen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
  const char *action = slash != NULL ? slash + 1 : NULL;
  int rc;
  if (textid_decode(TEXTID_CONTENT, rest, idlen, content) != 0) {
    http_error(res, 404,
               "'%.*s' is not a content ID (56 characters, as 'shoal-peer "
               "ls --json' shows them)",
               (int)(idlen > 80 ? 80 : idlen), rest);
    return;
  }
  if (action == NULL) {
    if (strcmp(req->method, "GET") == 0) {
      struct daemon_item_view v;
      if (daemon_get(a->d, content, &v) != 0) {
        http_error(res, 404,
                   "no content with ID %.*s in the library; 'shoal-peer ls' "
                   "lists them",
                   (int)idlen, rest);
        return;
      }
      reply(res, 200, content_json(&v));
      return;
    }
    if (strcmp(req->method, "DELETE") == 0) {
      const char *data = http_query(req, "data");
      int del = data != NULL && strcmp(data, "delete") == 0;
      json_t *o;
      if (data != NULL && !del && strcmp(data, "keep") != 0) {
        http_error(res, 400, "data=%s: use data=delete or data=keep", data);
        return;
      }
      rc = daemon_remove(a->d, content, del, msg, sizeof(msg));
      if (rc != 0) {
        http_error(res, rc, "%s", msg);
        return;
      }
      o = json_object();
      json_object_set_new(o, "removed", jid(content));
      json_object_set_new(o, "data_deleted", json_boolean(del));
      reply(res, 200, o);
      return;
    }
    http_error(res, 405, "a content takes GET and DELETE");
    return;
  }
  if (strcmp(req->method, "POST") != 0) {
    http_error(res, 405, "%s takes POST", action);
    return;
  }
  if (strcmp(action, "pause") == 0) {
    rc = daemon_pause(a->d, content, msg, sizeof(msg));
  } else if (strcmp(action, "resume") == 0) {
    rc = daemon_resume(a->d, content, msg, sizeof(msg));
  } else if (strcmp(action, "recheck") == 0) {
    rc = daemon_recheck(a->d, content, msg, sizeof(msg));
  } else {
    http_error(res, 404, "no action '%s': pause, resume or recheck", action);
    return;
  }
  if (rc != 0) {
    http_error(res, rc, "%s", msg);
    return;
  }
  one_content(a, content, strcmp(action, "recheck") == 0 ? 202 : 200, res);
}

static void on_request(void *arg, const struct http_request *req,
                       struct http_response *res) {
  struct api *a = arg;
  const char *p = req->path;
  int get = strcmp(req->method, "GET") == 0;
  if (strcmp(p, "/") == 0 || strcmp(p, "/index.html") == 0) {
    if (!get) {
      http_error(res, 405, "the page takes GET");
      return;
    }
    res->status = 200;
    res->content_type = "text/html; charset=utf-8";
    res->static_body = web_page_html;
    res->static_len = web_page_html_len;
    return;
  }
  if (strcmp(p, "/favicon.ico") == 0) {
    res->status = 204; /* no icon: the browser asks, and is told so */
    return;
  }
  if (strcmp(p, "/v1/status") == 0) {
    if (!get) {
      http_error(res, 405, "/v1/status takes GET");
      return;
    }
    reply(res, 200, status_json(a));
  } else if (strcmp(p, "/v1/contents") == 0) {
    if (get) {
      list_contents(a, res);
    } else if (strcmp(req->method, "POST") == 0) {
      post_content(a, req, res);
    } else {
      http_error(res, 405, "/v1/contents takes GET and POST");
    }
  } else if (strncmp(p, "/v1/contents/", 13) == 0) {
    content_route(a, req, p + 13, res);
  } else if (strcmp(p, "/v1/shares") == 0) {
    if (strcmp(req->method, "POST") != 0) {
      http_error(res, 405, "/v1/shares takes POST");
      return;
    }
    post_share(a, req, res);
  } else if (strcmp(p, "/v1/limits") == 0) {
    limits(a, req, res);
  } else if (strcmp(p, "/v1/events") == 0) {
    if (!get) {
      http_error(res, 405, "/v1/events takes GET");
      return;
    }
    events(a, res);
  } else {
    http_error(res, 404,
               "no such path: %s (the API is under /v1/: see "
               "docs/api.md)",
               p);
  }
}

/* ------------------------------------------------------------------------ */
/* Events */

static void broadcast(struct api *a, const char *event, json_t *j) {
  char *data = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (data != NULL) {
    http_broadcast(a->http, event, data);
    free(data);
  }
}

static void on_change(void *arg, enum daemon_change what,
                      const struct daemon_item_view *v) {
  struct api *a = arg;
  if (a->http == NULL || http_stream_count(a->http) == 0) {
    return;
  }
  if (what == DAEMON_REMOVED) {
    json_t *o = json_object();
    json_object_set_new(o, "id", jid(v->content));
    json_object_set_new(o, "path", jstr(v->path));
    broadcast(a, "removed", o);
    return;
  }
  broadcast(a, what == DAEMON_ADDED ? "added" : "state", content_json(v));
}

static void progress_one(void *arg, const struct daemon_item_view *v) {
  broadcast(arg, "progress", content_json(v));
}

static void on_timer(uv_timer_t *t) {
  struct api *a = t->data;
  if (http_stream_count(a->http) == 0) {
    return;
  }
  daemon_each_moved(a->d, progress_one, a);
  broadcast(a, "totals", status_json(a));
}

/* ------------------------------------------------------------------------ */
/* The token */

/* Reads HOME/api.token, or makes it (mode 0600). */
static int load_token(struct api *a, const char *home, char *msg, size_t cap) {
  char path[API_PATH_BYTES];
  struct stat st;
  ssize_t n;
  int fd;
  snprintf(path, sizeof(path), "%s/%s", home, API_TOKEN_NAME);
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
      close(fd);
      snprintf(msg, cap,
               "%s can be read by others: make it private (chmod 600) or "
               "remove it for a new one",
               path);
      return SHOAL_EKEYPERM;
    }
    n = read(fd, a->token, API_TOKEN_CHARS);
    close(fd);
    if (n == API_TOKEN_CHARS) {
      a->token[API_TOKEN_CHARS] = '\0';
      for (int i = 0; i < API_TOKEN_CHARS; i++) {
        char c = a->token[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
          n = -1;
        }
      }
    }
    if (n != API_TOKEN_CHARS) {
      snprintf(msg, cap,
               "%s is not a token (64 hexadecimal digits): remove it for a "
               "new one",
               path);
      return SHOAL_EFORMAT;
    }
    return 0;
  }
  if (errno != ENOENT) {
    int err = -errno;
    snprintf(msg, cap, "cannot read %s: %s", path, strerror(-err));
    return err;
  }
  {
    uint8_t raw[API_TOKEN_CHARS / 2];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(a->token, sizeof(a->token), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
  }
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, a->token, API_TOKEN_CHARS) != API_TOKEN_CHARS ||
      fsync(fd) != 0) {
    int err = -errno;
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    snprintf(msg, cap, "cannot write %s: %s", path, strerror(-err));
    return err;
  }
  close(fd);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Life */

int api_start(struct api **out, uv_loop_t *loop, struct daemon *d,
              const struct api_config *c, char *msg, size_t cap) {
  struct http_config hc;
  struct api *a;
  int err;
  *out = NULL;
  a = calloc(1, sizeof(*a));
  if (a == NULL) {
    snprintf(msg, cap, "out of memory");
    return SHOAL_ENOMEM;
  }
  a->loop = loop;
  a->d = d;
  snprintf(a->version, sizeof(a->version), "%s", c->version);
  memcpy(a->peer_pk, c->peer_pk, sizeof(a->peer_pk));
  snprintf(a->socket_path, sizeof(a->socket_path), "%s/%s", c->home,
           API_SOCKET_NAME);
  if (c->tcp_listen != NULL) {
    err = load_token(a, c->home, msg, cap);
    if (err != 0) {
      free(a);
      return err;
    }
  }
  memset(&hc, 0, sizeof(hc));
  hc.unix_path = a->socket_path;
  hc.tcp_listen = c->tcp_listen;
  hc.token = c->tcp_listen != NULL ? a->token : NULL;
  hc.handler = on_request;
  hc.arg = a;
  err = http_start(&a->http, loop, &hc, msg, cap);
  if (err != 0) {
    free(a);
    return err;
  }
  if (c->tcp_listen != NULL) {
    /* The address as given, with the port bound. */
    const char *colon = strrchr(c->tcp_listen, ':');
    int hostlen = colon != NULL ? (int)(colon - c->tcp_listen) : 0;
    snprintf(a->tcp, sizeof(a->tcp), "%.*s:%u", hostlen, c->tcp_listen,
             (unsigned)http_tcp_port(a->http));
    snprintf(a->page, sizeof(a->page), "http://%s/#token=%s", a->tcp, a->token);
  }
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  uv_timer_start(&a->timer, on_timer, API_PROGRESS_MS, API_PROGRESS_MS);
  daemon_listen(d, on_change, a);
  *out = a;
  return 0;
}

const char *api_socket_path(const struct api *a) {
  return a->socket_path;
}
const char *api_tcp_address(const struct api *a) {
  return a->tcp;
}
const char *api_page_url(const struct api *a) {
  return a->page;
}

static void api_closed(void *arg) {
  struct api *a = arg;
  if (--a->closing == 0) {
    void (*cb)(void *) = a->stop_cb;
    void *cb_arg = a->stop_arg;
    sodium_memzero(a->token, sizeof(a->token));
    free(a);
    if (cb != NULL) {
      cb(cb_arg);
    }
  }
}

static void on_timer_closed(uv_handle_t *h) {
  api_closed(h->data);
}

void api_stop(struct api *a, void (*cb)(void *arg), void *arg) {
  if (a == NULL) {
    if (cb != NULL) {
      cb(arg);
    }
    return;
  }
  daemon_listen(a->d, NULL, NULL);
  a->stop_cb = cb;
  a->stop_arg = arg;
  a->closing = 2;
  uv_close((uv_handle_t *)&a->timer, on_timer_closed);
  http_stop(a->http, api_closed, a);
  a->http = NULL;
}
