/* The client commands: requests to the daemon's API over HOME/api.sock,
 * and what their replies show. */
#include "peer/ctl.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/textid.h"
#include "peer/fmt.h"

/* Room for a text once escaped for the terminal (fmt_term_escape writes at
 * most six bytes for each one it reads). */
#define SHOWN_BYTES(n) (6u * (n) + 1u)
/* A message: the API's, or ours with a path or two in it. */
#define MSG_BYTES 8192
/* The token's bytes at most, as the daemon writes it. */
#define TOKEN_MAX 256

struct ctl {
  const struct cli *c;
  struct report *r;
  const char *home;
  char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
  CURL *curl;
  struct buf reply;
  int down; /* nothing answered on the socket: no request is worth making */
  int failed;
};

/* ------------------------------------------------------------------------ */
/* Requests */

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
  struct buf *b = arg;
  buf_add(b, p, size * n);
  /* A short count stops the transfer (CURLE_WRITE_ERROR). */
  return buf_err(b) == 0 ? size * n : 0;
}

__attribute__((format(printf, 3, 4))) static void fail(struct ctl *x, int code,
                                                       const char *fmt, ...) {
  char msg[MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  report_error(x->r, code, msg);
  x->failed = 1;
}

/* The error code that goes with an HTTP status, for --json's "code". */
static int status_code(long status) {
  switch (status) {
  case 400:
    return SHOAL_EINVAL;
  case 404:
    return UV_ENOENT;
  case 409:
    return UV_EEXIST;
  case 413:
    return SHOAL_ETOOBIG;
  default:
    return SHOAL_EPROTO;
  }
}

/* A transfer that failed: nothing listens on the socket (the daemon is not
 * running, or left a socket behind), or something else. */
static void transfer_failed(struct ctl *x, CURLcode rc, const char *errbuf) {
  long oserr = 0;
  curl_easy_getinfo(x->curl, CURLINFO_OS_ERRNO, &oserr);
  if (rc == CURLE_COULDNT_CONNECT &&
      (oserr == ENOENT || oserr == ECONNREFUSED || oserr == 0)) {
    x->down = 1;
    fail(x, UV_ECONNREFUSED,
         "no daemon runs in %s (start one with 'shoal-peer daemon --home "
         "%s')",
         x->home, x->home);
  } else if (rc == CURLE_OPERATION_TIMEDOUT) {
    x->down = 1;
    fail(x, SHOAL_ETIMEDOUT,
         "the daemon in %s did not answer within %ld s — see its log, or "
         "restart it",
         x->home, CTL_TIMEOUT_MS / 1000);
  } else if (rc == CURLE_WRITE_ERROR) {
    fail(x, SHOAL_ETOOBIG, "the daemon's reply is over %u bytes",
         CTL_MAX_REPLY);
  } else {
    x->down = rc == CURLE_COULDNT_CONNECT;
    fail(x, SHOAL_EPROTO, "cannot talk to the daemon on %s: %s", x->sock,
         errbuf[0] ? errbuf : curl_easy_strerror(rc));
  }
}

/* Makes one request: method on path (from "/v1/"), with body (borrowed;
 * NULL for none). Returns 0 with the reply's JSON in *out (the caller's to
 * json_decref), or -1 after reporting the error: the API's message, or
 * what went wrong. */
static int request(struct ctl *x, const char *method, const char *path,
                   json_t *body, json_t **out) {
  char url[512];
  char errbuf[CURL_ERROR_SIZE];
  char *text = NULL;
  struct curl_slist *hdrs = NULL;
  json_error_t jerr;
  json_t *reply = NULL;
  long status = 0;
  CURLcode rc;
  int ret = -1;

  *out = NULL;
  if (x->down) {
    return -1;
  }
  buf_free(&x->reply);
  buf_init(&x->reply, CTL_MAX_REPLY);
  errbuf[0] = '\0';
  snprintf(url, sizeof(url), "http://localhost%s", path);
  curl_easy_reset(x->curl);
  curl_easy_setopt(x->curl, CURLOPT_UNIX_SOCKET_PATH, x->sock);
  curl_easy_setopt(x->curl, CURLOPT_URL, url);
  curl_easy_setopt(x->curl, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(x->curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(x->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS, CTL_CONNECT_TIMEOUT_MS);
  curl_easy_setopt(x->curl, CURLOPT_TIMEOUT_MS, CTL_TIMEOUT_MS);
  curl_easy_setopt(x->curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(x->curl, CURLOPT_WRITEDATA, &x->reply);
  curl_easy_setopt(x->curl, CURLOPT_CUSTOMREQUEST, method);
  hdrs = curl_slist_append(hdrs, "Accept: application/json");
  if (body != NULL) {
    text = json_dumps(body, JSON_COMPACT);
    struct curl_slist *h =
        text != NULL ? curl_slist_append(hdrs, "Content-Type: application/json")
                     : NULL;
    if (h == NULL) {
      fail(x, SHOAL_ENOMEM, "out of memory");
      goto out;
    }
    hdrs = h;
    curl_easy_setopt(x->curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(x->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
  } else if (strcmp(method, "GET") != 0) {
    /* A POST or DELETE without a body still says so. */
    curl_easy_setopt(x->curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(x->curl, CURLOPT_POSTFIELDSIZE, 0L);
  }
  if (hdrs == NULL) {
    fail(x, SHOAL_ENOMEM, "out of memory");
    goto out;
  }
  curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, hdrs);
  rc = curl_easy_perform(x->curl);
  if (rc != CURLE_OK) {
    transfer_failed(x, rc, errbuf);
    goto out;
  }
  curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
  reply = json_loadb((const char *)x->reply.data, x->reply.len, 0, &jerr);
  if (status >= 200 && status < 300 && json_is_object(reply)) {
    *out = reply;
    reply = NULL;
    ret = 0;
  } else if (status >= 300 && json_is_string(json_object_get(reply, "error"))) {
    fail(x, status_code(status), "%s",
         json_string_value(json_object_get(reply, "error")));
  } else if (status >= 300) {
    fail(x, status_code(status),
         "the daemon answered %s %s with HTTP %ld and no message", method, path,
         status);
  } else {
    fail(x, SHOAL_EFORMAT,
         "the daemon's reply to %s %s is not a JSON object (%s) — is a "
         "shoal-peer daemon of this version running in %s?",
         method, path, reply == NULL ? jerr.text : "another JSON value",
         x->home);
  }

out:
  json_decref(reply);
  curl_slist_free_all(hdrs);
  free(text);
  return ret;
}

/* ------------------------------------------------------------------------ */
/* Reading the daemon's objects: every field is input, and may be missing
 * or of another type; what does not fit shows as empty or 0. */

static const char *get_str(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s != NULL ? s : "";
}

static uint64_t get_u64(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    return (uint64_t)json_integer_value(v);
  }
  return 0;
}

static double get_real(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  double d = json_is_number(v) ? json_number_value(v) : 0.0;
  return d == d ? d : 0.0; /* NaN cannot come from JSON, but stays out */
}

/* Writes s escaped for the terminal into a buffer the caller frees, or
 * NULL when memory runs out. */
static char *shown(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(SHOWN_BYTES(n));
  if (out != NULL) {
    fmt_term_escape(out, SHOWN_BYTES(n), s);
  }
  return out;
}

/* One JSON value as a line of --json output. Every non-ASCII character is
 * escaped (ENSURE_ASCII: the C1 controls too), and DEL, which jansson
 * writes as it is, becomes \u007f: no line can drive a terminal. */
static void print_json(struct ctl *x, const json_t *v) {
  char *text = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII |
                                 JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
  if (text == NULL) {
    fail(x, SHOAL_ENOMEM, "out of memory");
    return;
  }
  for (const char *p = text; *p != '\0'; p++) {
    if (*p == 0x7f) {
      fputs("\\u007f", x->r->out);
    } else {
      fputc(*p, x->r->out);
    }
  }
  fputc('\n', x->r->out);
  fflush(x->r->out);
  free(text);
}

/* "NAME (ID12)", escaped, for a line about one content. */
static void print_about(struct ctl *x, const char *verb, const json_t *o) {
  char *name = shown(get_str(o, "name"));
  char *path = shown(get_str(o, "path"));
  const char *id = get_str(o, "id");
  if (name == NULL || path == NULL) {
    fail(x, SHOAL_ENOMEM, "out of memory");
  } else if (id[0] != '\0') {
    fprintf(x->r->out, "%s %s (%.*s)\n", verb, name[0] ? name : path,
            TEXTID_SHORT_CHARS, id);
  } else {
    fprintf(x->r->out, "%s %s\n", verb, name[0] ? name : path);
  }
  free(name);
  free(path);
}

/* ------------------------------------------------------------------------ */
/* IDs */

/* The content IDs that the arguments name: each as given when whole, else
 * the one content whose ID starts with it. Returns a NULL-ended array the
 * caller frees (its strings are in *list, also the caller's to
 * json_decref), or NULL after reporting why. */
static const char **resolve_ids(struct ctl *x, json_t **list) {
  const char **ids = calloc((size_t)x->c->nargs + 1, sizeof(*ids));
  json_t *contents = NULL;
  *list = NULL;
  if (ids == NULL) {
    fail(x, SHOAL_ENOMEM, "out of memory");
    return NULL;
  }
  for (int i = 0; i < x->c->nargs; i++) {
    const char *arg = x->c->args[i];
    size_t len = strlen(arg);
    size_t k;
    json_t *o;
    int found = 0;
    if (len == TEXTID_CHARS) {
      ids[i] = arg;
      continue;
    }
    if (*list == NULL && request(x, "GET", "/v1/contents", NULL, list) != 0) {
      goto fail;
    }
    contents = json_object_get(*list, "contents");
    json_array_foreach(contents, k, o) {
      const char *id = get_str(o, "id");
      if (strlen(id) == TEXTID_CHARS && strncasecmp(id, arg, len) == 0) {
        if (found++ == 0) {
          ids[i] = id;
        }
      }
    }
    if (found != 1) {
      char *a = shown(arg);
      if (found == 0) {
        fail(x, UV_ENOENT,
             "no content has an ID that starts with '%s' — 'shoal-peer ls' "
             "lists them",
             a ? a : "");
      } else {
        fail(x, SHOAL_EINVAL,
             "'%s' starts the IDs of %d contents — give more of the ID",
             a ? a : "", found);
      }
      free(a);
      goto fail;
    }
  }
  return ids;

fail:
  free(ids);
  json_decref(*list);
  *list = NULL;
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* The commands */

static void run_add(struct ctl *x) {
  for (int i = 0; i < x->c->nargs && !x->down; i++) {
    json_t *body = json_pack("{s:s}", "link", x->c->args[i]);
    json_t *reply = NULL;
    if (body == NULL ||
        (x->c->out_dir != NULL &&
         json_object_set_new(body, "dir", json_string(x->c->out_dir)) != 0)) {
      fail(x, SHOAL_ENOMEM, "out of memory");
      json_decref(body);
      return;
    }
    if (request(x, "POST", "/v1/contents", body, &reply) == 0) {
      if (x->c->json) {
        print_json(x, reply);
      } else {
        print_about(x, "added", reply);
      }
    }
    json_decref(body);
    json_decref(reply);
  }
}

static void run_publish(struct ctl *x) {
  for (int i = 0; i < x->c->nargs && !x->down; i++) {
    json_t *body = json_pack("{s:s}", "path", x->c->args[i]);
    json_t *reply = NULL;
    if (body == NULL) {
      fail(x, SHOAL_ENOMEM, "out of memory");
      return;
    }
    if (request(x, "POST", "/v1/shares", body, &reply) == 0) {
      if (x->c->json) {
        print_json(x, reply);
      } else {
        char *path = shown(x->c->args[i]);
        fprintf(x->r->out,
                "sharing %s: hashing ('shoal-peer ls' shows its ID and link "
                "when done)\n",
                path != NULL ? path : "");
        free(path);
      }
    }
    json_decref(body);
    json_decref(reply);
  }
}

/* pause, resume, recheck and rm: one request for each ID. */
static void run_each(struct ctl *x) {
  static const struct {
    enum cli_cmd cmd;
    const char *method, *suffix, *verb;
  } how[] = {
      {CLI_PAUSE, "POST", "/pause", "paused"},
      {CLI_RESUME, "POST", "/resume", "resumed"},
      {CLI_RECHECK, "POST", "/recheck", "rechecking"},
      {CLI_RM, "DELETE", "", "removed"},
  };
  size_t h = 0;
  json_t *list = NULL;
  const char **ids;
  while (how[h].cmd != x->c->cmd) {
    h++;
  }
  ids = resolve_ids(x, &list);
  if (ids == NULL) {
    return;
  }
  for (int i = 0; ids[i] != NULL && !x->down; i++) {
    char path[128];
    json_t *reply = NULL;
    snprintf(path, sizeof(path), "/v1/contents/%s%s%s", ids[i], how[h].suffix,
             x->c->cmd == CLI_RM && x->c->delete_data ? "?data=delete" : "");
    if (request(x, how[h].method, path, NULL, &reply) != 0) {
      continue;
    }
    if (x->c->json) {
      print_json(x, reply);
    } else if (x->c->cmd == CLI_RM) {
      fprintf(x->r->out, "removed %s%s\n", ids[i],
              json_is_true(json_object_get(reply, "data_deleted"))
                  ? ", and its data"
                  : "");
    } else {
      print_about(x, how[h].verb, reply);
    }
    json_decref(reply);
  }
  free(ids);
  json_decref(list);
}

/* One row of ls. name_cols is the NAME column's width. */
static void print_row(struct ctl *x, const json_t *o, size_t name_cols) {
  char name[SHOWN_BYTES(CTL_NAME_COLS * 4) + 8];
  char size[FMT_NUM_BYTES], down[FMT_NUM_BYTES], up[FMT_NUM_BYTES];
  char done[16], ratio[32];
  char state[64];
  char id[TEXTID_SHORT_CHARS + 1];
  const char *n = get_str(o, "name");
  if (n[0] == '\0') {
    n = get_str(o, "path"); /* a share being hashed */
  }
  if (fmt_term_join(name, sizeof(name), name_cols, "", n, 1, "") != 0) {
    name[0] = '\0';
  }
  size_t cols = fmt_term_cols(name);
  uint64_t bytes = get_u64(o, "size");
  if (bytes == 0 && (strcmp(get_str(o, "state"), "fetching") == 0 ||
                     strcmp(get_str(o, "state"), "checking") == 0)) {
    /* The manifest is not known yet. */
    snprintf(size, sizeof(size), "?");
  } else {
    fmt_bytes(size, sizeof(size), bytes);
  }
  double progress = get_real(o, "progress");
  progress = progress < 0 ? 0 : progress > 1 ? 1 : progress;
  /* Cut, not rounded: 99.96% is not done. */
  snprintf(done, sizeof(done), "%.1f%%",
           (double)(uint64_t)(progress * 1000.0) / 10.0);
  fmt_rate(down, sizeof(down), get_u64(o, "download_rate"));
  fmt_rate(up, sizeof(up), get_u64(o, "upload_rate"));
  double r = get_real(o, "ratio");
  snprintf(ratio, sizeof(ratio), "%.2f", r >= 0 && r < 1e9 ? r : 0.0);
  fmt_term_escape(state, 13, get_str(o, "state"));
  /* The ID's first characters, when it is one (a share being hashed has
   * none yet). */
  const char *full = get_str(o, "id");
  if (strlen(full) == TEXTID_CHARS &&
      strspn(full, "abcdefghijklmnopqrstuvwxyz234567") == TEXTID_CHARS) {
    snprintf(id, sizeof(id), "%.*s", TEXTID_SHORT_CHARS, full);
  } else {
    snprintf(id, sizeof(id), "--");
  }
  fprintf(x->r->out, "%s%*s %10s %6s %-12s %12s %12s %5" PRIu64 " %6s  %s\n",
          name, cols < name_cols ? (int)(name_cols - cols) : 0, "", size, done,
          state, down, up, get_u64(o, "peers"), ratio, id);
}

static void run_ls(struct ctl *x) {
  json_t *reply = NULL, *contents, *o;
  size_t k, name_cols = 4; /* "NAME" */
  if (request(x, "GET", "/v1/contents", NULL, &reply) != 0) {
    return;
  }
  contents = json_object_get(reply, "contents");
  if (!json_is_array(contents)) {
    fail(x, SHOAL_EFORMAT, "the daemon's list of contents has no array");
    json_decref(reply);
    return;
  }
  if (x->c->json) {
    json_array_foreach(contents, k, o) {
      print_json(x, o);
    }
    json_decref(reply);
    return;
  }
  if (json_array_size(contents) == 0) {
    if (!x->c->quiet) {
      fprintf(x->r->err, "shoal-peer: no contents — add one with 'shoal-peer "
                         "add LINK' or 'shoal-peer publish PATH'\n");
    }
    json_decref(reply);
    return;
  }
  json_array_foreach(contents, k, o) {
    const char *n = get_str(o, "name");
    char *s = shown(n[0] ? n : get_str(o, "path"));
    size_t cols = s != NULL ? fmt_term_cols(s) : 0;
    free(s);
    if (cols > name_cols) {
      name_cols = cols < CTL_NAME_COLS ? cols : CTL_NAME_COLS;
    }
  }
  fprintf(x->r->out, "%-*s %10s %6s %-12s %12s %12s %5s %6s  %s\n",
          (int)name_cols, "NAME", "SIZE", "DONE", "STATE", "DOWN", "UP",
          "PEERS", "RATIO", "ID");
  json_array_foreach(contents, k, o) {
    print_row(x, o, name_cols);
  }
  json_decref(reply);
}

/* The page's address with the token, when the daemon listens on TCP and
 * its token can be read; else "" in out. */
static void page_url(struct ctl *x, const char *tcp, char *out, size_t cap) {
  char path[CLI_HOME_BYTES + 32];
  char token[TOKEN_MAX + 2];
  size_t n;
  FILE *f;
  out[0] = '\0';
  snprintf(path, sizeof(path), "%s/%s", x->home, CTL_TOKEN_NAME);
  f = fopen(path, "re");
  if (f == NULL) {
    return;
  }
  n = fread(token, 1, sizeof(token) - 1, f);
  fclose(f);
  token[n] = '\0';
  token[strcspn(token, "\r\n")] = '\0';
  /* Only a token that a URL carries as it is. */
  if (token[0] == '\0' ||
      token[strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          "0123456789-._~")] != '\0') {
    return;
  }
  snprintf(out, cap, "http://%s/#token=%s", tcp, token);
}

static void run_status(struct ctl *x) {
  json_t *s = NULL;
  char up[FMT_NUM_BYTES], down[FMT_NUM_BYTES], upr[FMT_NUM_BYTES],
      downr[FMT_NUM_BYTES], uptime[FMT_NUM_BYTES];
  char lim_up[FMT_NUM_BYTES + 8], lim_down[FMT_NUM_BYTES + 8];
  char url[512];
  if (request(x, "GET", "/v1/status", NULL, &s) != 0) {
    return;
  }
  if (x->c->json) {
    print_json(x, s);
    json_decref(s);
    return;
  }
  json_t *api = json_object_get(s, "api");
  json_t *limits = json_object_get(s, "limits");
  char *peer = shown(get_str(s, "peer"));
  char *version = shown(get_str(s, "version"));
  char *sock = shown(get_str(api, "socket"));
  char *tcp = shown(get_str(api, "tcp"));
  if (peer == NULL || version == NULL || sock == NULL || tcp == NULL) {
    fail(x, SHOAL_ENOMEM, "out of memory");
    goto out;
  }
  fmt_bytes(up, sizeof(up), get_u64(s, "uploaded"));
  fmt_bytes(down, sizeof(down), get_u64(s, "downloaded"));
  fmt_rate(upr, sizeof(upr), get_u64(s, "upload_rate"));
  fmt_rate(downr, sizeof(downr), get_u64(s, "download_rate"));
  fmt_eta(uptime, sizeof(uptime), get_u64(s, "uptime"));
  if (get_u64(limits, "upload") == 0) {
    snprintf(lim_up, sizeof(lim_up), "none");
  } else {
    fmt_rate(lim_up, sizeof(lim_up), get_u64(limits, "upload"));
  }
  if (get_u64(limits, "download") == 0) {
    snprintf(lim_down, sizeof(lim_down), "none");
  } else {
    fmt_rate(lim_down, sizeof(lim_down), get_u64(limits, "download"));
  }
  FILE *o = x->r->out;
  fprintf(o, "daemon    shoal-peer %s, up %s, peer port %" PRIu64 "\n", version,
          uptime, get_u64(s, "port"));
  fprintf(o, "peer      %s\n", peer);
  fprintf(
      o,
      "contents  %" PRIu64 " (%" PRIu64 " downloading, %" PRIu64 " seeding)\n",
      get_u64(s, "contents"), get_u64(s, "downloading"), get_u64(s, "seeding"));
  fprintf(o, "traffic   up %s (%s), down %s (%s) since start\n", up, upr, down,
          downr);
  fprintf(o, "limits    up %s, down %s\n", lim_up, lim_down);
  fprintf(o, "api       %s%s%s\n", sock, tcp[0] ? ", " : "", tcp);
  if (tcp[0] != '\0') {
    page_url(x, tcp, url, sizeof(url));
    if (url[0] != '\0') {
      fprintf(o, "page      %s\n", url);
    }
  }
out:
  free(peer);
  free(version);
  free(sock);
  free(tcp);
  json_decref(s);
}

static void run_limits(struct ctl *x) {
  json_t *reply = NULL;
  char up[FMT_NUM_BYTES + 8], down[FMT_NUM_BYTES + 8];
  int rc;
  if (x->c->have_upload_rate || x->c->have_download_rate) {
    json_t *body = json_object();
    if (body == NULL ||
        (x->c->have_upload_rate &&
         json_object_set_new(
             body, "upload",
             json_integer((json_int_t)x->c->node.upload_rate)) != 0) ||
        (x->c->have_download_rate &&
         json_object_set_new(
             body, "download",
             json_integer((json_int_t)x->c->node.download_rate)) != 0)) {
      json_decref(body);
      fail(x, SHOAL_ENOMEM, "out of memory");
      return;
    }
    rc = request(x, "PUT", "/v1/limits", body, &reply);
    json_decref(body);
  } else {
    rc = request(x, "GET", "/v1/limits", NULL, &reply);
  }
  if (rc != 0) {
    return;
  }
  if (x->c->json) {
    print_json(x, reply);
  } else {
    uint64_t u = get_u64(reply, "upload"), d = get_u64(reply, "download");
    if (u == 0) {
      snprintf(up, sizeof(up), "none");
    } else {
      fmt_rate(up, sizeof(up), u);
    }
    if (d == 0) {
      snprintf(down, sizeof(down), "none");
    } else {
      fmt_rate(down, sizeof(down), d);
    }
    fprintf(x->r->out, "upload limit    %s\ndownload limit  %s\n", up, down);
  }
  json_decref(reply);
}

int ctl_run(const struct cli *c, const char *home, struct report *r) {
  struct ctl x;
  int n;
  memset(&x, 0, sizeof(x));
  x.c = c;
  x.r = r;
  x.home = home;
  n = snprintf(x.sock, sizeof(x.sock), "%s/%s", home, CTL_SOCKET_NAME);
  if (n < 0 || (size_t)n >= sizeof(x.sock)) {
    /* A socket's path is short (sun_path): the daemon cannot have one
     * there either. */
    fail(&x, SHOAL_ETOOBIG,
         "no daemon can run in %s: its socket's path would be longer than "
         "%zu bytes — choose a shorter --home",
         home, sizeof(x.sock) - 1);
    return 1;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
      (x.curl = curl_easy_init()) == NULL) {
    fail(&x, SHOAL_ENOMEM, "cannot start libcurl");
    curl_global_cleanup();
    return 1;
  }
  switch (c->cmd) {
  case CLI_ADD:
    run_add(&x);
    break;
  case CLI_PUBLISH:
    run_publish(&x);
    break;
  case CLI_LS:
    run_ls(&x);
    break;
  case CLI_STATUS:
    run_status(&x);
    break;
  case CLI_LIMITS:
    run_limits(&x);
    break;
  case CLI_PAUSE:
  case CLI_RESUME:
  case CLI_RM:
  case CLI_RECHECK:
    run_each(&x);
    break;
  default:
    assert(0 && "not a client command");
    break;
  }
  fflush(r->out);
  buf_free(&x.reply);
  curl_easy_cleanup(x.curl);
  curl_global_cleanup();
  return x.failed ? 1 : 0;
}
