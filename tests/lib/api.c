/* A client of the daemon's API for integration tests (see api.h). */
#include "tests/lib/api.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reply or a stream's bytes, growing as they come. */
struct grow {
  char *p;
  size_t len, cap;
  int oom;
};

static size_t on_data(char *data, size_t size, size_t n, void *arg) {
  struct grow *g = arg;
  size_t add = size * n;
  if (g->len + add + 1 > g->cap) {
    size_t cap = g->cap > 0 ? g->cap : 4096;
    char *p;
    while (cap < g->len + add + 1) {
      cap *= 2;
    }
    p = realloc(g->p, cap);
    if (p == NULL) {
      g->oom = 1;
      return 0; /* stops the transfer */
    }
    g->p = p;
    g->cap = cap;
  }
  memcpy(g->p + g->len, data, add);
  g->len += add;
  g->p[g->len] = '\0';
  return add;
}

int api_global_init(void) {
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void api_global_cleanup(void) {
  curl_global_cleanup();
}

void api_conn_unix(struct api_conn *c, const char *sock) {
  memset(c, 0, sizeof(*c));
  snprintf(c->sock, sizeof(c->sock), "%s", sock);
  snprintf(c->base, sizeof(c->base), "http://localhost");
}

void api_conn_tcp(struct api_conn *c, const char *hostport, const char *token) {
  memset(c, 0, sizeof(*c));
  snprintf(c->base, sizeof(c->base), "http://%s", hostport);
  if (token != NULL) {
    snprintf(c->token, sizeof(c->token), "%s", token);
  }
}

/* The handle's options common to requests and streams; *hdrs receives the
 * header list (the caller frees it after the transfer). Returns 0 or -1. */
static int setup(CURL *h, const struct api_conn *c, const char *method,
                 const char *path, const char *const *headers,
                 struct curl_slist **hdrs, struct grow *g, char *errbuf) {
  char url[1024];
  char auth[192];
  struct curl_slist *l = NULL;
  snprintf(url, sizeof(url), "%s%s", c->base, path);
  if (c->sock[0] != '\0') {
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->sock);
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, g);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (c->token[0] != '\0') {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
    if ((l = curl_slist_append(l, auth)) == NULL) {
      return -1;
    }
  }
  for (int i = 0; headers != NULL && headers[i] != NULL; i++) {
    struct curl_slist *m = curl_slist_append(l, headers[i]);
    if (m == NULL) {
      curl_slist_free_all(l);
      return -1;
    }
    l = m;
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
  *hdrs = l;
  return 0;
}

int api_request(const struct api_conn *c, const char *method, const char *path,
                const char *body, size_t len, const char *const *headers,
                struct api_reply *r) {
  char errbuf[CURL_ERROR_SIZE];
  struct curl_slist *hdrs = NULL;
  struct grow g = {0};
  json_error_t jerr;
  char *ct = NULL;
  CURLcode rc;
  CURL *h = curl_easy_init();
  memset(r, 0, sizeof(*r));
  errbuf[0] = '\0';
  if (h == NULL || setup(h, c, method, path, headers, &hdrs, &g, errbuf) != 0) {
    snprintf(r->error, sizeof(r->error), "out of memory");
    curl_easy_cleanup(h);
    r->body = calloc(1, 1);
    return -1;
  }
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)API_TIMEOUT_MS);
  if (body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  }
  rc = curl_easy_perform(h);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK &&
        ct != NULL) {
      snprintf(r->ctype, sizeof(r->ctype), "%s", ct);
    }
  } else {
    snprintf(r->error, sizeof(r->error), "%s",
             errbuf[0] ? errbuf : curl_easy_strerror(rc));
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  r->body = g.p != NULL ? g.p : calloc(1, 1);
  r->len = g.len;
  if (r->len > 0) {
    r->json = json_loadb(r->body, r->len, 0, &jerr);
  }
  return rc == CURLE_OK ? 0 : -1;
}

void api_reply_free(struct api_reply *r) {
  json_decref(r->json);
  free(r->body);
  memset(r, 0, sizeof(*r));
}

const char *api_str(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

long long api_int(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* ------------------------------------------------------------------------ */
/* The event stream */

struct api_stream {
  CURLM *multi;
  CURL *h;
  struct curl_slist *hdrs;
  struct grow g;
  size_t used; /* bytes of g already passed on as events */
  int ended;
  char errbuf[CURL_ERROR_SIZE];
};

int api_stream_open(struct api_stream **out, const struct api_conn *c) {
  struct api_stream *s = calloc(1, sizeof(*s));
  *out = NULL;
  if (s == NULL) {
    return -1;
  }
  s->multi = curl_multi_init();
  s->h = curl_easy_init();
  if (s->multi == NULL || s->h == NULL ||
      setup(s->h, c, "GET", "/v1/events", NULL, &s->hdrs, &s->g, s->errbuf) !=
          0 ||
      curl_multi_add_handle(s->multi, s->h) != CURLM_OK) {
    api_stream_close(s);
    return -1;
  }
  *out = s;
  return 0;
}

/* Passes on the events that came in full. Returns fn's first non-zero
 * value, else 0. */
static int deliver(struct api_stream *s,
                   int (*fn)(const char *event, const char *data, void *arg),
                   void *arg) {
  for (;;) {
    char *start = s->g.p != NULL ? s->g.p + s->used : NULL;
    char *end = start != NULL ? strstr(start, "\n\n") : NULL;
    char event[64] = "";
    char *data = NULL;
    int rc = 0;
    if (end == NULL) {
      return 0;
    }
    *end = '\0';
    s->used = (size_t)(end - s->g.p) + 2;
    for (char *line = start; line != NULL && *line != '\0';) {
      char *nl = strchr(line, '\n');
      if (nl != NULL) {
        *nl = '\0';
      }
      if (strncmp(line, "event: ", 7) == 0) {
        snprintf(event, sizeof(event), "%s", line + 7);
      } else if (strncmp(line, "data: ", 6) == 0) {
        data = line + 6;
      }
      line = nl != NULL ? nl + 1 : NULL;
    }
    if (event[0] != '\0') {
      rc = fn(event, data != NULL ? data : "", arg);
    }
    if (rc != 0) {
      return rc;
    }
  }
}

int api_stream_wait(struct api_stream *s,
                    int (*fn)(const char *event, const char *data, void *arg),
                    void *arg, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int running = 0, rc = deliver(s, fn, arg), left;
    CURLMsg *m;
    if (rc != 0) {
      return rc;
    }
    if (s->ended || proc_now_ms() >= deadline) {
      return s->ended ? -1 : 0;
    }
    if (curl_multi_perform(s->multi, &running) != CURLM_OK) {
      s->ended = 1;
      continue;
    }
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
      if (m->msg == CURLMSG_DONE) {
        s->ended = 1;
      }
    }
    if (!s->ended) {
      (void)curl_multi_poll(s->multi, NULL, 0, 50, NULL);
    }
  }
}

void api_stream_close(struct api_stream *s) {
  if (s == NULL) {
    return;
  }
  if (s->multi != NULL && s->h != NULL) {
    curl_multi_remove_handle(s->multi, s->h);
  }
  curl_easy_cleanup(s->h);
  curl_multi_cleanup(s->multi);
  curl_slist_free_all(s->hdrs);
  free(s->g.p);
  free(s);
}
