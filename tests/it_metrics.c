/* Integration tests for the tracker's operator port: the real
 * shoal-tracker with --metrics-listen 127.0.0.1:0, real requests over the
 * tracker protocol, and /metrics and /stats fetched with libcurl.
 *
 * Each test reads the figures before and after what it sends and checks
 * that the counters moved by exactly that; /metrics must pass
 * `promtool check metrics` (skipped, with a note, when promtool is not
 * installed: `make deps` installs Debian's prometheus package for it), and
 * /stats must carry the same numbers. With --log-format json every log
 * line is one JSON object and each refusal is logged once, with its reason
 * and the client's address. Every test stops its tracker by PID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/tmsg.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define TIMEOUT_MS 5000
#define BODY_MAX (1u << 20)

struct http_reply {
  long status;
  char *body; /* NUL-terminated */
  size_t len;
  char type[128];
  char allow[128];
};

static int setup(void **state) {
  *state = tc_fixture_new();
  return *state != NULL ? 0 : -1;
}

static int teardown(void **state) {
  tc_fixture_free(*state);
  return 0;
}

/* Starts a tracker serving its figures, logging JSON, with the extra
 * arguments (NULL-ended, may be NULL). */
static void start(struct tc_fixture *f, const char *const *extra) {
  const char *args[24] = {"--metrics-listen", "127.0.0.1:0", "--log-format",
                          "json"};
  int n = 4;
  for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
    assert_true(n < 23);
    args[n++] = extra[i];
  }
  args[n] = NULL;
  assert_int_equal(tc_tracker_start(&f->t, 0, args), 0);
  assert_true(f->t.metrics_port > 0);
}

static int connect_tracked(struct tc_fixture *f) {
  int fd = tc_fixture_keep(f, tc_connect(f->t.port));
  assert_true(fd >= 0);
  return fd;
}

static void key(struct identity *id, unsigned n) {
  uint8_t seed[32] = {0};
  seed[0] = 0x3e;
  seed[1] = (uint8_t)n;
  identity_from_seed(id, seed);
}

static void content_id(uint8_t out[32], unsigned n) {
  memset(out, 0, 32);
  out[0] = 0x3c;
  out[1] = (uint8_t)n;
}

/* Sends f->msg on fd and returns the reply's type (TMSG_ERROR for a
 * refusal, whose code must be `code`). */
static int roundtrip(struct tc_fixture *f, int fd, int code) {
  const uint8_t *p;
  size_t n;
  assert_int_equal(tc_send_frame(fd, f->msg.data, f->msg.len), 0);
  assert_int_equal(tc_recv_frame(fd, &f->frame, TIMEOUT_MS), 0);
  int type = tc_open_reply(&f->t, &f->frame, &p, &n);
  if (type == TMSG_ERROR) {
    struct tmsg_error e;
    assert_int_equal(tmsg_error_decode(p, n, &e), 0);
    if (e.code != code) {
      fail_msg("refused with %s (%s), expected %s", shoal_err_name(e.code),
               e.reason, shoal_err_name(code));
    }
  }
  return type;
}

static void seal_announce(struct tc_fixture *f, const struct identity *id,
                          uint64_t seq, const uint8_t c[32]) {
  uint8_t role = TMSG_ROLE_SEEDING;
  uint8_t cc[1][32];
  memcpy(cc[0], c, 32);
  tc_seal_announce(&f->msg, id, clock_wall_ms(), seq, 9000, TMSG_EVENT_STARTED,
                   (const uint8_t(*)[32])cc, &role, 1);
}

/* ------------------------------------------------------------------------ */
/* HTTP */

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  struct http_reply *r = arg;
  size_t len = size * n;
  if (r->len + len > BODY_MAX) {
    return 0;
  }
  char *grown = realloc(r->body, r->len + len + 1);
  if (grown == NULL) {
    return 0;
  }
  r->body = grown;
  memcpy(r->body + r->len, p, len);
  r->len += len;
  r->body[r->len] = '\0';
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg) {
  struct http_reply *r = arg;
  size_t len = size * n;
  static const char allow[] = "allow:";
  if (len > sizeof(allow) && strncasecmp(p, allow, sizeof(allow) - 1) == 0) {
    snprintf(r->allow, sizeof(r->allow), "%.*s",
             (int)(len - (sizeof(allow) - 1)), p + sizeof(allow) - 1);
  }
  return len;
}

/* method path on the metrics port; r->body is NUL-terminated ("" when
 * empty). */
static void http(struct tc_fixture *f, const char *method, const char *path,
                 struct http_reply *r) {
  char url[256];
  memset(r, 0, sizeof(*r));
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->t.metrics_port, path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* "/../x" stays so */
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "GET") != 0) {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    curl_easy_cleanup(c);
    fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  char *type = NULL;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
  snprintf(r->type, sizeof(r->type), "%s", type != NULL ? type : "");
  curl_easy_cleanup(c);
  if (r->body == NULL) {
    r->body = strdup("");
    assert_non_null(r->body);
  }
}

static char *get_metrics(struct tc_fixture *f) {
  struct http_reply r;
  http(f, "GET", "/metrics", &r);
  assert_int_equal(r.status, 200);
  return r.body;
}

static json_t *get_stats(struct tc_fixture *f) {
  struct http_reply r;
  json_error_t err;
  http(f, "GET", "/stats", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.type, "application/json");
  json_t *j = json_loads(r.body, 0, &err);
  if (j == NULL) {
    fail_msg("/stats is not JSON: %s: %s", err.text, r.body);
  }
  free(r.body);
  return j;
}

/* The value of the sample whose name and labels are exactly series. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; *p != '\0';) {
    const char *eol = strchr(p, '\n');
    assert_non_null(eol);
    if (strncmp(p, series, n) == 0 && p[n] == ' ') {
      return strtod(p + n + 1, NULL);
    }
    p = eol + 1;
  }
  fail_msg("no sample %s in /metrics", series);
  return -1;
}

static double req_count(const char *text, const char *type,
                        const char *outcome) {
  char series[160];
  snprintf(series, sizeof(series),
           "shoal_tracker_requests_total{type=\"%s\",outcome=\"%s\"}", type,
           outcome);
  return sample(text, series);
}

static double refusals(const char *text, const char *reason) {
  char series[160];
  snprintf(series, sizeof(series),
           "shoal_tracker_refusals_total{reason=\"%s\"}", reason);
  return sample(text, series);
}

/* The sum of every requests_total sample. */
static double all_requests(const char *text) {
  static const char *const types[] = {"announce", "lookup", "publish", "search",
                                      "unknown"};
  static const char *const outcomes[] = {"ok", "refused", "error"};
  double sum = 0;
  for (size_t i = 0; i < 5; i++) {
    for (size_t k = 0; k < 3; k++) {
      sum += req_count(text, types[i], outcomes[k]);
    }
  }
  return sum;
}

/* Waits until /metrics shows series at want. */
static void wait_sample(struct tc_fixture *f, const char *series, double want) {
  uint64_t deadline = tc_now_ms() + TIMEOUT_MS;
  for (;;) {
    char *text = get_metrics(f);
    double v = sample(text, series);
    free(text);
    if (v == want) {
      return;
    }
    if (tc_now_ms() >= deadline) {
      fail_msg("%s is %g, expected %g", series, v, want);
    }
    proc_pause_ms(20);
  }
}

/* Runs promtool check metrics on text, or says why it cannot. */
static void promtool_accepts(struct tc_fixture *f, const char *text) {
  char path[PROC_PATH_MAX + 32];
  char out[PROC_PATH_MAX + 32];
  char cmd[3 * PROC_PATH_MAX];
  if (system("command -v promtool >/dev/null 2>&1") != 0) {
    printf("[ SKIPPED  ] promtool check metrics: promtool is not installed "
           "(Debian's prometheus package; 'make deps' installs it)\n");
    return;
  }
  snprintf(path, sizeof(path), "%s/metrics.txt", f->t.dir);
  snprintf(out, sizeof(out), "%s/promtool.out", f->t.dir);
  tu_write_file(f->t.dir, "metrics.txt", text, strlen(text));
  snprintf(cmd, sizeof(cmd), "promtool check metrics <'%s' >'%s' 2>&1", path,
           out);
  int rc = system(cmd);
  if (rc != 0) {
    size_t n;
    char *said = tu_read_text(out, &n);
    fail_msg("promtool check metrics failed (%d): %s", rc,
             said != NULL ? said : "");
  }
}

/* Every line of the tracker's log is one JSON object; returns how many
 * carry this reason, and copies the last of them into last (cap bytes). */
static unsigned log_reasons(struct tc_fixture *f, const char *reason,
                            char *last, size_t cap) {
  size_t n;
  char *s = tu_read_text(f->t.log_path, &n);
  unsigned count = 0;
  assert_non_null(s);
  for (char *line = s; *line != '\0';) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl); /* every record ends its line */
    *nl = '\0';
    if (!jsonl_valid(line)) {
      fail_msg("log line is not one JSON object: %s", line);
    }
    char v[64];
    if (jsonl_str(line, "reason", v, sizeof(v)) == 0 &&
        strcmp(v, reason) == 0) {
      count++;
      if (last != NULL) {
        snprintf(last, cap, "%s", line);
      }
    }
    line = nl + 1;
  }
  free(s);
  return count;
}

static uint64_t ju(const json_t *o, const char *k1, const char *k2) {
  const json_t *v = json_object_get(o, k1);
  assert_non_null(v);
  if (k2 != NULL) {
    v = json_object_get(v, k2);
    assert_non_null(v);
  }
  assert_true(json_is_integer(v));
  return (uint64_t)json_integer_value(v);
}

/* ------------------------------------------------------------------------ */

static void counters_move_by_exactly_the_requests_sent(void **state) {
  struct tc_fixture *f = *state;
  struct identity id;
  uint8_t c[32];
  char line[4096];
  char v[64];

  start(f, NULL);
  char *before = get_metrics(f);
  assert_true(all_requests(before) == 0);
  promtool_accepts(f, before);
  free(before);

  /* One announce and two lookups that succeed, on one connection; the
   * second lookup, asked at once, is answered from the cache. */
  key(&id, 1);
  content_id(c, 1);
  int fd = connect_tracked(f);
  seal_announce(f, &id, 1, c);
  assert_int_equal(roundtrip(f, fd, 0), TMSG_ANNOUNCE_OK);
  tc_query_lookup(&f->msg, 7, c, 10, 0, NULL);
  assert_int_equal(roundtrip(f, fd, 0), TMSG_LOOKUP_OK);
  assert_int_equal(roundtrip(f, fd, 0), TMSG_LOOKUP_OK);
  /* One announce with a forged signature, on another: refused, closed. */
  int bad = connect_tracked(f);
  seal_announce(f, &id, 2, c);
  f->msg.data[f->msg.len - 1] ^= 0x01;
  assert_int_equal(roundtrip(f, bad, SHOAL_EBADSIG), TMSG_ERROR);
  assert_true(tc_wait_closed(bad, TIMEOUT_MS));
  wait_sample(f, "shoal_tracker_connections", 1);

  char *text = get_metrics(f);
  promtool_accepts(f, text);
  assert_true(all_requests(text) == 4);
  assert_true(req_count(text, "announce", "ok") == 1);
  assert_true(req_count(text, "announce", "refused") == 1);
  assert_true(req_count(text, "lookup", "ok") == 2);
  assert_true(refusals(text, "bad_signature") == 1);
  assert_true(refusals(text, "rate_limited") == 0);
  assert_true(sample(text, "shoal_tracker_request_duration_seconds_count{"
                           "type=\"announce\"}") == 2);
  assert_true(sample(text, "shoal_tracker_request_duration_seconds_bucket{"
                           "type=\"lookup\",le=\"+Inf\"}") == 2);
  assert_true(sample(text, "shoal_tracker_request_duration_seconds_count{"
                           "type=\"search\"}") == 0);
  assert_true(sample(text, "shoal_tracker_swarms") == 1);
  assert_true(sample(text, "shoal_tracker_peers") == 1);
  assert_true(sample(text, "shoal_tracker_catalog_entries") == 0);
  /* Three replies signed: the announce's, the first lookup's, the
   * refusal's. */
  assert_true(sample(text, "shoal_tracker_signatures_total") == 3);
  assert_true(sample(text, "shoal_tracker_lookup_cache_hits_total") == 1);
  /* The announce and the first lookup each took the store once; the
   * tick's expiry sweeps add theirs. */
  assert_true(sample(text, "shoal_tracker_store_roundtrip_seconds_count") >= 2);
  assert_true(sample(text, "shoal_tracker_store_errors_total") == 0);
  assert_true(sample(text, "shoal_tracker_store_up") == 1);
  assert_true(sample(text, "shoal_tracker_store_info{backend=\"memory\"}") ==
              1);

  /* /stats has the same figures, and scrapes are not requests. */
  json_t *j = get_stats(f);
  char *after = get_metrics(f);
  assert_true(all_requests(after) == 4);
  assert_int_equal(ju(j, "requests_total", NULL), 4);
  assert_int_equal(ju(j, "errors_total", NULL), 0);
  const json_t *req = json_object_get(j, "requests");
  assert_int_equal(ju(req, "announce", "ok"), 1);
  assert_int_equal(ju(req, "announce", "refused"), 1);
  assert_int_equal(ju(req, "lookup", "ok"), 2);
  assert_int_equal(ju(j, "refusals", "bad_signature"), 1);
  assert_int_equal(ju(j, "swarms", NULL), 1);
  assert_int_equal(ju(j, "peers", NULL), 1);
  assert_int_equal(ju(j, "connections", NULL), 1);
  assert_int_equal(
      ju(j, "lookup_cache_hits", NULL),
      (uint64_t)sample(after, "shoal_tracker_lookup_cache_hits_total"));
  assert_int_equal(ju(j, "lookup_cache_hits", NULL), 1);
  const json_t *lat = json_object_get(j, "latency_seconds");
  assert_int_equal(ju(lat, "count", NULL), 4);
  const json_t *p95 = json_object_get(lat, "p95");
  assert_true(json_is_real(p95) && json_real_value(p95) > 0 &&
              json_real_value(p95) <= 1.0);
  assert_true(json_is_true(json_object_get(json_object_get(j, "store"), "up")));
  json_decref(j);
  free(after);
  free(text);

  /* The refusal was logged once, as JSON, with its reason and address. */
  assert_int_equal(log_reasons(f, "bad_signature", line, sizeof(line)), 1);
  assert_int_equal(jsonl_str(line, "addr", v, sizeof(v)), 0);
  assert_true(strncmp(v, "127.0.0.1:", 10) == 0);
  assert_int_equal(jsonl_str(line, "level", v, sizeof(v)), 0);
  assert_string_equal(v, "info");
  assert_int_equal(jsonl_str(line, "module", v, sizeof(v)), 0);
  assert_string_equal(v, "tracker");
  identity_close(&id);
  assert_int_equal(tc_tracker_stop(&f->t), 0);
  /* Shutdown logs too, still one object a line. */
  assert_int_equal(log_reasons(f, "bad_signature", NULL, 0), 1);
}

static void rate_limit_refusals_are_counted_and_logged_once(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--rate", "1", "--burst", "2", NULL};
  uint8_t c[32];
  start(f, args);
  content_id(c, 2);
  int fd = connect_tracked(f);
  for (int i = 0; i < 2; i++) {
    tc_query_lookup(&f->msg, (uint64_t)i, c, 5, 0, NULL);
    assert_int_equal(roundtrip(f, fd, 0), TMSG_LOOKUP_OK);
  }
  tc_query_lookup(&f->msg, 3, c, 5, 0, NULL);
  assert_int_equal(roundtrip(f, fd, SHOAL_ERATE), TMSG_ERROR);
  char *text = get_metrics(f);
  assert_true(req_count(text, "lookup", "ok") == 2);
  assert_true(req_count(text, "lookup", "refused") == 1);
  assert_true(refusals(text, "rate_limited") == 1);
  assert_true(refusals(text, "retry_ignored") == 0);
  free(text);
  assert_int_equal(log_reasons(f, "rate_limited", NULL, 0), 1);

  /* Asking again before the retry-after closes the connection. */
  assert_int_equal(roundtrip(f, fd, SHOAL_ERATE), TMSG_ERROR);
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
  text = get_metrics(f);
  assert_true(req_count(text, "lookup", "refused") == 2);
  assert_true(refusals(text, "rate_limited") == 1);
  assert_true(refusals(text, "retry_ignored") == 1);
  assert_true(all_requests(text) == 4);
  free(text);
  assert_int_equal(log_reasons(f, "rate_limited", NULL, 0), 1);
  assert_int_equal(log_reasons(f, "retry_ignored", NULL, 0), 1);
}

static void connection_refusals_are_counted_without_a_request(void **state) {
  struct tc_fixture *f = *state;
  const char *args[] = {"--max-per-address", "1", NULL};
  char line[4096];
  char v[64];
  start(f, args);
  int first = connect_tracked(f);
  wait_sample(f, "shoal_tracker_connections", 1);
  int second = connect_tracked(f);
  assert_true(tc_wait_closed(second, TIMEOUT_MS));
  wait_sample(f, "shoal_tracker_refusals_total{reason=\"per_address_cap\"}", 1);
  char *text = get_metrics(f);
  assert_true(all_requests(text) == 0);
  assert_true(sample(text, "shoal_tracker_connections") == 1);
  free(text);
  assert_int_equal(log_reasons(f, "per_address_cap", line, sizeof(line)), 1);
  assert_int_equal(jsonl_str(line, "level", v, sizeof(v)), 0);
  assert_string_equal(v, "warn");
  assert_int_equal(jsonl_str(line, "addr", v, sizeof(v)), 0);
  assert_true(strncmp(v, "127.0.0.1:", 10) == 0);
  (void)first;
}

static void oversize_frame_is_a_refusal_too_big(void **state) {
  struct tc_fixture *f = *state;
  uint8_t hdr[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB, over 64 KiB */
  start(f, NULL);
  int fd = connect_tracked(f);
  assert_int_equal(tc_write(fd, hdr, sizeof(hdr)), 0);
  assert_int_equal(tc_recv_frame(fd, &f->frame, TIMEOUT_MS), 0);
  assert_true(tc_wait_closed(fd, TIMEOUT_MS));
  char *text = get_metrics(f);
  assert_true(refusals(text, "too_big") == 1);
  assert_true(all_requests(text) == 0); /* no frame was read whole */
  free(text);
  assert_int_equal(log_reasons(f, "too_big", NULL, 0), 1);
}

static void other_paths_get_404_and_other_methods_405(void **state) {
  struct tc_fixture *f = *state;
  struct http_reply r;
  start(f, NULL);
  http(f, "GET", "/metrics", &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.type, "text/plain"));
  assert_non_null(strstr(r.type, "version=0.0.4"));
  free(r.body);
  http(f, "HEAD", "/stats", &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.len, 0);
  free(r.body);
  static const char *const missing[] = {"/",           "/metric",
                                        "/metrics/",   "/stats.json",
                                        "/../metrics", "/%2e%2e/etc/passwd"};
  for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
    http(f, "GET", missing[i], &r);
    if (r.status != 404) {
      fail_msg("GET %s: %ld", missing[i], r.status);
    }
    free(r.body);
  }
  static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS"};
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    http(f, methods[i], "/metrics", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.allow, "GET"));
    free(r.body);
  }
  /* None of it was a tracker request. */
  char *text = get_metrics(f);
  assert_true(all_requests(text) == 0);
  free(text);
}

/* Runs shoal-tracker with args (NULL-ended); returns its exit status and
 * its stderr in err. */
static int run_tracker(struct tc_fixture *f, const char *const *args, char *err,
                       size_t cap) {
  struct proc p;
  size_t len;
  int status = tc_fixture_run_tracker(f, args, TIMEOUT_MS, &p);
  if (status < 0) {
    fail_msg("shoal-tracker did not run, or still runs after %d ms",
             TIMEOUT_MS);
  }
  char *s = tu_read_text(p.err_path, &len);
  snprintf(err, cap, "%s", s != NULL ? s : "");
  free(s);
  return status;
}

static void bad_or_busy_metrics_address_stops_the_start(void **state) {
  struct tc_fixture *f = *state;
  char err[1024];
  char key[PROC_PATH_MAX + 16];
  char busy[64];
  start(f, NULL);
  tu_tmpdir(f->dir, sizeof(f->dir));
  snprintf(key, sizeof(key), "%s/k", f->dir);
  static const char *const bad[] = {"nowhere",         "127.0.0.1",
                                    "127.0.0.1:70000", "localhost:9100",
                                    ":9100",           "[::1]9100"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *args[] = {
        "--key", key, "--listen", "127.0.0.1:0", "--metrics-listen",
        bad[i],  NULL};
    assert_int_equal(run_tracker(f, args, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "--metrics-listen"));
  }
  const char *args[] = {"--key",        key,    "--listen", "127.0.0.1:0",
                        "--log-format", "yaml", NULL};
  assert_int_equal(run_tracker(f, args, err, sizeof(err)), 2);
  assert_non_null(strstr(err, "--log-format"));
  /* The port the running tracker serves its figures on is taken. */
  snprintf(busy, sizeof(busy), "127.0.0.1:%d", f->t.metrics_port);
  const char *taken[] = {
      "--key", key, "--listen", "127.0.0.1:0", "--metrics-listen", busy, NULL};
  assert_int_equal(run_tracker(f, taken, err, sizeof(err)), 1);
  assert_non_null(strstr(err, "--metrics-listen"));
  assert_non_null(strstr(err, "in use"));
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    return 1;
  }
  const char *only = getenv("SHOAL_TEST_FILTER");
  if (only != NULL && only[0] != '\0') {
    cmocka_set_test_filter(only);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          counters_move_by_exactly_the_requests_sent, setup, teardown),
      cmocka_unit_test_setup_teardown(
          rate_limit_refusals_are_counted_and_logged_once, setup, teardown),
      cmocka_unit_test_setup_teardown(
          connection_refusals_are_counted_without_a_request, setup, teardown),
      cmocka_unit_test_setup_teardown(oversize_frame_is_a_refusal_too_big,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(other_paths_get_404_and_other_methods_405,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          bad_or_busy_metrics_address_stops_the_start, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return failed;
}
