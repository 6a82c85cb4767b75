/* Integration tests: `shoal-peer daemon` driven through its API and its
 * command-line client.
 *
 * A real tracker, real seeders and the daemon run as child processes on
 * loopback (tests/lib/fx.h); the tests speak HTTP to the daemon's Unix
 * socket and TCP listener (tests/lib/api.h) as docs/api.md describes it:
 * a download that survives a restart without hashing again and a kill -9
 * without starting over, removal with and without the data, a copy found
 * in place and seeded under its ID, a shared file that changes, the
 * checks on TCP (token, Host, Origin), the errors, the client commands,
 * the watch folder and the event stream.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/textid.h"
#include "tests/lib/api.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"

/* How long a daemon may take for what is local and small: a check of a
 * few MiB, a state change, a removal. */
#define LOCAL_MS 20000
/* A shared file's size and time are looked at every 5 s
 * (NODE_SOURCE_CHECK_MS); a change shows within two rounds. */
#define CHANGE_MS 15000
/* A tracker forgets a peer that said "stopped" at once. */
#define UNLIST_MS 10000
/* The watch folder is read every 2 s (DAEMON_WATCH_MS). */
#define WATCH_MS 10000
/* How often a condition is polled. */
#define POLL_MS 50

/* One daemon under test. */
struct dmn {
  struct proc *p;
  char home[PROC_PATH_MAX]; /* DIR/home-H */
  char tcp[96];             /* "127.0.0.1:PORT", or "" */
  char page[256];
  struct api_conn c; /* its Unix socket */
};

/* Starts "shoal-peer daemon" as name in home-H with the test's tracker
 * and the further arguments given (NULL-ended), and waits until it
 * serves. */
static void start_daemon(struct fx *f, struct dmn *d, const char *name,
                         const char *home, ...) {
  const char *args[40];
  char line[FX_LINE_CAP], sock[PROC_PATH_MAX], rel[128];
  char want[PROC_PATH_MAX + 16];
  int n = 0;
  va_list ap;
  const char *a;
  memset(d, 0, sizeof(*d));
  args[n++] = "daemon";
  if (f->tracker_up) {
    args[n++] = "--tracker";
    args[n++] = f->tracker_addr;
    args[n++] = "--tracker-key";
    args[n++] = f->tracker_key;
  }
  va_start(ap, home);
  while ((a = va_arg(ap, const char *)) != NULL) {
    assert_true(n < 40);
    args[n++] = a;
  }
  va_end(ap);
  d->p = fx_peer_argv(f, name, home, args, n);
  snprintf(rel, sizeof(rel), "home-%s", home);
  fx_path(f, d->home, sizeof(d->home), rel);
  fx_wait_event(d->p, "api", NULL, NULL, FX_START_MS, line);
  assert_int_equal(jsonl_str(line, "socket", sock, sizeof(sock)), 0);
  snprintf(want, sizeof(want), "%s/api.sock", d->home);
  assert_string_equal(sock, want);
  assert_true(fx_u64(line, "port") > 0);
  if (jsonl_str(line, "tcp", d->tcp, sizeof(d->tcp)) != 0) {
    d->tcp[0] = '\0';
  }
  if (jsonl_str(line, "page", d->page, sizeof(d->page)) != 0) {
    d->page[0] = '\0';
  }
  api_conn_unix(&d->c, sock);
}

/* DIR/home-H/rel of the daemon. */
static void home_path(const struct dmn *d, char *out, size_t cap,
                      const char *rel) {
  tu_path(out, cap, d->home, rel);
}

/* A request whose status must be want; returns the reply's JSON (the
 * caller's to json_decref; an empty object when the body is not JSON). */
static json_t *call_on(const struct api_conn *c, const char *method,
                       const char *path, const char *body, long want) {
  struct api_reply r;
  json_t *j;
  if (api_request(c, method, path, body, body != NULL ? strlen(body) : 0, NULL,
                  &r) != 0) {
    fail_msg("%s %s: no reply: %s", method, path, r.error);
  }
  if (r.status != want) {
    fail_msg("%s %s: HTTP %ld, expected %ld: %s", method, path, r.status, want,
             r.body);
  }
  j = r.json != NULL ? json_incref(r.json) : json_object();
  api_reply_free(&r);
  return j;
}

static json_t *call(struct dmn *d, const char *method, const char *path,
                    const char *body, long want) {
  return call_on(&d->c, method, path, body, want);
}

/* The same, for a reply whose body must be JSON's error shape; a body of
 * len bytes. */
static void call_error_len(struct dmn *d, const char *method, const char *path,
                           const char *body, size_t len, long want) {
  struct api_reply r;
  if (api_request(&d->c, method, path, body, len, NULL, &r) != 0) {
    fail_msg("%s %s: no reply: %s", method, path, r.error);
  }
  if (r.status != want) {
    fail_msg("%s %s: HTTP %ld, expected %ld: %s", method, path, r.status, want,
             r.body);
  }
  if (!json_is_object(r.json) || api_str(r.json, "error") == NULL ||
      api_str(r.json, "error")[0] == '\0' ||
      api_int(r.json, "status") != want) {
    fail_msg("%s %s: the error is not {\"error\": ..., \"status\": %ld}: %s",
             method, path, want, r.body);
  }
  api_reply_free(&r);
}

static void call_error(struct dmn *d, const char *method, const char *path,
                       const char *body, long want) {
  call_error_len(d, method, path, body, body != NULL ? strlen(body) : 0, want);
}

static void content_path(char *out, size_t cap, const char *id,
                         const char *action) {
  snprintf(out, cap, "/v1/contents/%s%s%s", id, action ? "/" : "",
           action ? action : "");
}

/* POST /v1/contents with the link; the reply must be 201 and name the
 * link's content. */
static void add_link(struct dmn *d, const struct fx_shared *sh) {
  char body[LINK_MAX_CHARS + 64];
  json_t *j;
  snprintf(body, sizeof(body), "{\"link\":\"%s\"}", sh->link);
  j = call(d, "POST", "/v1/contents", body, 201);
  assert_string_equal(api_str(j, "id"), sh->content_text);
  assert_string_equal(api_str(j, "kind"), "download");
  assert_int_equal(api_int(j, "size"), sh->size);
  json_decref(j);
}

/* A test on one content's JSON. */
typedef int (*content_pred)(const json_t *c, void *arg);

static int in_state(const json_t *c, void *arg) {
  const char *s = api_str(c, "state");
  return s != NULL && strcmp(s, arg) == 0;
}

/* Polls GET /v1/contents/ID until pred holds, and returns that reply (the
 * caller's to json_decref). Fails at the deadline, when the daemon ends,
 * or when the content fails while something else was awaited. */
static json_t *wait_content(struct dmn *d, const char *id, content_pred pred,
                            void *arg, const char *what, int timeout_ms) {
  char path[256];
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  content_path(path, sizeof(path), id, NULL);
  for (;;) {
    struct api_reply r;
    if (!proc_alive(d->p)) {
      fail_msg("%s ended (status %d) while waiting for %s", d->p->name,
               d->p->status, what);
    }
    if (api_request(&d->c, "GET", path, NULL, 0, NULL, &r) == 0 &&
        r.status == 200 && json_is_object(r.json)) {
      const char *state = api_str(r.json, "state");
      if (pred(r.json, arg)) {
        json_t *j = json_incref(r.json);
        api_reply_free(&r);
        return j;
      }
      if (state != NULL && strcmp(state, "failed") == 0 &&
          (pred != in_state || strcmp(arg, "failed") != 0)) {
        fail_msg("%s failed while waiting for %s: %s", id, what, r.body);
      }
    }
    if (proc_now_ms() > deadline) {
      fail_msg("%s: no %s within %d ms; last reply: HTTP %ld %s", d->p->name,
               what, timeout_ms, r.status, r.body);
    }
    api_reply_free(&r);
    proc_pause_ms(POLL_MS);
  }
}

static json_t *wait_state(struct dmn *d, const char *id, const char *state,
                          int timeout_ms) {
  char what[64];
  snprintf(what, sizeof(what), "state \"%s\"", state);
  return wait_content(d, id, in_state, (void *)(uintptr_t)state, what,
                      timeout_ms);
}

/* have * den > size * num. */
static int has_more_than(const json_t *c, void *arg) {
  const struct fx_frac *q = arg;
  long long have = api_int(c, "have"), size = api_int(c, "size");
  return size > 0 && have >= 0 &&
         (uint64_t)have * q->den > (uint64_t)size * q->num;
}

static int uploaded_at_least(const json_t *c, void *arg) {
  return api_int(c, "uploaded") >= *(const long long *)arg;
}

/* GET /v1/status: the daemon's peer key into pk (may be NULL) and its
 * "downloaded" count. */
static long long status_of(struct dmn *d, uint8_t pk[32]) {
  json_t *s = call(d, "GET", "/v1/status", NULL, 200);
  const char *peer = api_str(s, "peer");
  long long down = api_int(s, "downloaded");
  assert_non_null(peer);
  if (pk != NULL) {
    assert_int_equal(textid_decode(TEXTID_KEY, peer, strlen(peer), pk), 0);
  }
  json_decref(s);
  return down;
}

/* Polls the tracker until it lists pk for content (as a seeder when
 * listed is 1), or no longer lists it (listed 0). */
static void wait_listed(struct fx *f, const uint8_t content[32],
                        const uint8_t pk[32], int listed, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int seeding = 0;
    int found = fx_tracker_lists(f, content, pk, &seeding);
    if (listed ? found && seeding : !found) {
      return;
    }
    if (proc_now_ms() > deadline) {
      fail_msg("%s", listed ? "the tracker never listed the daemon as a seeder"
                            : "the tracker still lists the daemon");
    }
    proc_pause_ms(POLL_MS);
  }
}

/* Polls until path exists (want 1) or is gone (want 0). */
static void wait_exists(const char *path, int want, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  while (fx_exists(path) != want) {
    if (proc_now_ms() > deadline) {
      fail_msg("%s %s after %d ms", path, want ? "missing" : "still there",
               timeout_ms);
    }
    proc_pause_ms(POLL_MS);
  }
}

/* A fresh peer "name" gets the link into DIR/out-NAME, alone, and the copy
 * must equal data. */
static void fresh_get(struct fx *f, const char *name,
                      const struct fx_shared *sh, const char *file,
                      const uint8_t *data, size_t len) {
  char rel[128], out[PROC_PATH_MAX];
  snprintf(rel, sizeof(rel), "out-%s", name);
  fx_mkdir(f, rel);
  fx_path(f, out, sizeof(out), rel);
  struct proc *g = fx_peer(f, name, name, "get", sh->link, "-o", out, NULL);
  fx_expect_exit(g, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, rel, file, data, len);
}

/* ---------------------------------------------------------------------- */
/* 1. A download completes, and a restart seeds it without hashing. */

#define ONE_BYTES (2 * FX_MiB + 777)

static void download_then_restart_seeds_without_rehash(void **state) {
  struct fx *f = *state;
  uint8_t *data, pk[32];
  struct fx_shared sh;
  struct dmn d, d2;
  json_t *c;
  long long want = ONE_BYTES;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed = fx_share_file(f, "src/one.bin", ONE_BYTES, 1, &data, &sh);
  start_daemon(f, &d, "d", "d", NULL);
  add_link(&d, &sh);
  c = wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS);
  assert_int_equal(api_int(c, "have"), ONE_BYTES);
  assert_int_equal(api_int(c, "size"), ONE_BYTES);
  json_decref(c);
  fx_assert_copy(f, "home-d/downloads", "one.bin", data, ONE_BYTES);
  fx_stop_peer(d.p, NULL);

  /* The same home again: seeding from the fast-resume record, no file
   * read. */
  start_daemon(f, &d2, "d-again", "d", NULL);
  c = wait_state(&d2, sh.content_text, "seeding", LOCAL_MS);
  assert_int_equal(api_int(c, "have"), ONE_BYTES);
  json_decref(c);
  if (!proc_output_has(d2.p, 1, "one.bin: checked: 0 files hashed")) {
    fail_msg("the restarted daemon hashed the finished copy again");
  }
  assert_int_equal(status_of(&d2, pk), 0);

  /* It alone serves the content now. */
  wait_listed(f, sh.content, pk, 1, FX_COMPLETE_MS);
  fx_stop_peer(seed, NULL);
  fresh_get(f, "c", &sh, "one.bin", data, ONE_BYTES);
  c = wait_content(&d2, sh.content_text, uploaded_at_least, &want,
                   "uploaded >= size", LOCAL_MS);
  json_decref(c);
  fx_stop_peer(d2.p, NULL);
  fx_assert_copy(f, "home-d/downloads", "one.bin", data, ONE_BYTES);
  free(data);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 2. kill -9 in the middle of a download: the restart goes on from the
 *    resume record. */

#define TWO_BYTES (3 * FX_MiB + 99)

static int same_time(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static void kill9_mid_download_resumes(void **state) {
  struct fx *f = *state;
  uint8_t *data;
  struct fx_shared sh;
  struct dmn d, d2;
  struct stat st;
  struct timespec before = {0, 0};
  char resume[PROC_PATH_MAX], rel[128];
  struct fx_frac quarter = {1, 4};
  json_t *c;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_write_random(f, "src/two.bin", TWO_BYTES, 2, &data);
  fx_seed(f, "src/two.bin", &sh, "--upload-rate", "512k", NULL);
  start_daemon(f, &d, "d", "d", NULL);
  add_link(&d, &sh);
  c = wait_content(&d, sh.content_text, has_more_than, &quarter,
                   "a quarter of the content", FX_COMPLETE_MS);
  json_decref(c);

  /* The resume record written after that point holds that quarter. */
  snprintf(rel, sizeof(rel), "resume/%s", sh.content_text);
  home_path(&d, resume, sizeof(resume), rel);
  if (stat(resume, &st) == 0) {
    before = st.st_mtim;
  }
  uint64_t deadline = proc_now_ms() + LOCAL_MS;
  while (stat(resume, &st) != 0 || same_time(&st.st_mtim, &before)) {
    if (proc_now_ms() > deadline) {
      fail_msg("%s was not written again", resume);
    }
    proc_pause_ms(POLL_MS);
  }
  {
    char path[256];
    content_path(path, sizeof(path), sh.content_text, NULL);
    c = call(&d, "GET", path, NULL, 200);
    if (api_int(c, "have") >= TWO_BYTES) {
      fail_msg("the download ended before the kill: slow the seeder down");
    }
    json_decref(c);
  }
  proc_kill(d.p);

  start_daemon(f, &d2, "d-again", "d", NULL);
  c = wait_state(&d2, sh.content_text, "seeding", FX_COMPLETE_MS);
  assert_int_equal(api_int(c, "have"), TWO_BYTES);
  json_decref(c);
  fx_assert_copy(f, "home-d/downloads", "two.bin", data, TWO_BYTES);
  long long down = status_of(&d2, NULL);
  if (down <= 0 || down >= (long long)TWO_BYTES) {
    fail_msg("the restarted daemon downloaded %lld bytes of %u: it did not "
             "resume",
             down, (unsigned)TWO_BYTES);
  }
  fx_stop_peer(d2.p, NULL);
  free(data);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 3. Removing: without the data, with it (finished and unfinished), and a
 *    share's data, which is never deleted. */

#define REM_BYTES (1 * FX_MiB + 5)
#define SLOW_BYTES (3 * FX_MiB)

/* POST the link until it is taken (201): a content just removed may still
 * be leaving the node (409 meanwhile). */
static void add_link_again(struct dmn *d, const struct fx_shared *sh) {
  char body[LINK_MAX_CHARS + 64];
  uint64_t deadline = proc_now_ms() + LOCAL_MS;
  snprintf(body, sizeof(body), "{\"link\":\"%s\"}", sh->link);
  for (;;) {
    struct api_reply r;
    assert_int_equal(api_request(&d->c, "POST", "/v1/contents", body,
                                 strlen(body), NULL, &r),
                     0);
    if (r.status == 201) {
      api_reply_free(&r);
      return;
    }
    if (r.status != 409 || proc_now_ms() > deadline) {
      fail_msg("adding the link again: HTTP %ld %s", r.status, r.body);
    }
    api_reply_free(&r);
    proc_pause_ms(POLL_MS);
  }
}

/* The share of path in the list: waits until it has an ID and seeds, and
 * copies the ID into id. */
static void wait_share_seeding(struct dmn *d, const char *name, char *id,
                               size_t cap) {
  uint64_t deadline = proc_now_ms() + LOCAL_MS;
  for (;;) {
    json_t *l = call(d, "GET", "/v1/contents", NULL, 200), *c;
    size_t k;
    json_array_foreach(json_object_get(l, "contents"), k, c) {
      const char *n = api_str(c, "name"), *i = api_str(c, "id");
      const char *s = api_str(c, "state");
      if (n != NULL && strcmp(n, name) == 0 && i != NULL && s != NULL &&
          strcmp(s, "seeding") == 0) {
        assert_string_equal(api_str(c, "kind"), "share");
        snprintf(id, cap, "%s", i);
        json_decref(l);
        return;
      }
    }
    if (proc_now_ms() > deadline) {
      char *text = json_dumps(l, JSON_COMPACT);
      fail_msg("the share of %s never seeded: %s", name, text);
    }
    json_decref(l);
    proc_pause_ms(POLL_MS);
  }
}

static void remove_with_and_without_data(void **state) {
  struct fx *f = *state;
  uint8_t *data, *slow_data, *mine;
  struct fx_shared sh, slow;
  struct dmn d;
  char path[256], copy[PROC_PATH_MAX], part[PROC_PATH_MAX],
      resume[PROC_PATH_MAX], manifest[PROC_PATH_MAX], rel[320],
      src[PROC_PATH_MAX], body[PROC_PATH_MAX + 32], share_id[TEXTID_STRLEN];
  struct fx_frac some = {0, 1};
  json_t *c;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_share_file(f, "src/rem.bin", REM_BYTES, 3, &data, &sh);
  fx_write_random(f, "src/slow.bin", SLOW_BYTES, 4, &slow_data);
  fx_path(f, src, sizeof(src), "src/slow.bin");
  struct proc *s2 = fx_peer(f, "seeder-slow", "s2", "share", src, "--tracker",
                            f->tracker_addr, "--tracker-key", f->tracker_key,
                            "--upload-rate", "256k", NULL);
  fx_wait_shared(s2, &slow);
  start_daemon(f, &d, "d", "d", NULL);
  home_path(&d, copy, sizeof(copy), "downloads/rem.bin");
  content_path(path, sizeof(path), sh.content_text, NULL);

  /* Without the data: the entry goes, the copy stays. */
  add_link(&d, &sh);
  json_decref(wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS));
  c = call(&d, "DELETE", path, NULL, 200);
  assert_string_equal(api_str(c, "removed"), sh.content_text);
  assert_true(json_is_false(json_object_get(c, "data_deleted")));
  json_decref(c);
  call_error(&d, "GET", path, NULL, 404);
  c = call(&d, "GET", "/v1/contents", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(c, "contents")), 0);
  json_decref(c);
  fx_assert_file_is(copy, data, REM_BYTES);

  /* Added again, it finds its copy; removed with the data, the copy, its
   * manifest and its resume record go. */
  add_link_again(&d, &sh);
  json_decref(wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS));
  fx_assert_file_is(copy, data, REM_BYTES);
  snprintf(rel, sizeof(rel), "%s?data=maybe", path);
  call_error(&d, "DELETE", rel, NULL, 400);
  snprintf(rel, sizeof(rel), "%s?data=delete", path);
  c = call(&d, "DELETE", rel, NULL, 200);
  assert_true(json_is_true(json_object_get(c, "data_deleted")));
  json_decref(c);
  wait_exists(copy, 0, LOCAL_MS);
  snprintf(rel, sizeof(rel), "manifests/%s", sh.content_text);
  home_path(&d, manifest, sizeof(manifest), rel);
  wait_exists(manifest, 0, LOCAL_MS);
  call_error(&d, "GET", path, NULL, 404);

  /* An unfinished download: its partial copy and resume record go. */
  add_link(&d, &slow);
  home_path(&d, part, sizeof(part), "downloads/slow.bin.shoal-part");
  snprintf(rel, sizeof(rel), "resume/%s", slow.content_text);
  home_path(&d, resume, sizeof(resume), rel);
  json_decref(wait_content(&d, slow.content_text, has_more_than, &some,
                           "some of the slow content", FX_COMPLETE_MS));
  wait_exists(part, 1, LOCAL_MS);
  wait_exists(resume, 1, LOCAL_MS);
  content_path(path, sizeof(path), slow.content_text, NULL);
  c = call(&d, "GET", path, NULL, 200);
  assert_true(api_int(c, "have") < (long long)SLOW_BYTES);
  json_decref(c);
  snprintf(rel, sizeof(rel), "%s?data=delete", path);
  json_decref(call(&d, "DELETE", rel, NULL, 200));
  wait_exists(part, 0, LOCAL_MS);
  wait_exists(resume, 0, LOCAL_MS);
  call_error(&d, "GET", path, NULL, 404);

  /* A share: ?data=delete is refused and its file is left alone. */
  fx_write_random(f, "src/mine.bin", REM_BYTES, 5, &mine);
  fx_path(f, src, sizeof(src), "src/mine.bin");
  snprintf(body, sizeof(body), "{\"path\":\"%s\"}", src);
  c = call(&d, "POST", "/v1/shares", body, 202);
  assert_string_equal(api_str(c, "state"), "checking");
  assert_true(json_is_null(json_object_get(c, "id")));
  json_decref(c);
  wait_share_seeding(&d, "mine.bin", share_id, sizeof(share_id));
  content_path(path, sizeof(path), share_id, NULL);
  snprintf(rel, sizeof(rel), "%s?data=delete", path);
  call_error(&d, "DELETE", rel, NULL, 409);
  json_decref(call(&d, "GET", path, NULL, 200));
  fx_assert_file_is(src, mine, REM_BYTES);
  json_decref(call(&d, "DELETE", path, NULL, 200));
  call_error(&d, "GET", path, NULL, 404);
  fx_assert_file_is(src, mine, REM_BYTES);

  /* Nothing comes back when the daemon stops. */
  fx_stop_peer(d.p, NULL);
  assert_false(fx_exists(copy));
  assert_false(fx_exists(part));
  assert_false(fx_exists(resume));
  fx_assert_file_is(src, mine, REM_BYTES);
  free(data);
  free(slow_data);
  free(mine);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 4. A whole copy put in the download folder by hand is checked and
 *    seeded under its ID; a recheck hashes it again and seeds again. */

#define FOUR_BYTES (3 * FX_MiB + 4444)

static void copy_in_place_is_seeded_and_rechecked(void **state) {
  struct fx *f = *state;
  uint8_t *data, pk[32];
  struct fx_shared sh;
  struct dmn d;
  char path[256];
  json_t *c;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/four.bin", FOUR_BYTES, 6, &data, &sh);
  /* A copy made by hand: the same bytes, a new file and time. */
  tu_write_file(f->dir, "home-d/downloads/four.bin", data, FOUR_BYTES);
  start_daemon(f, &d, "d", "d", NULL);
  add_link(&d, &sh);
  c = wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS);
  assert_int_equal(api_int(c, "have"), FOUR_BYTES);
  assert_int_equal(api_int(c, "downloaded"), 0);
  json_decref(c);
  assert_int_equal(status_of(&d, pk), 0);

  /* The first seeder leaves: the daemon alone serves it. */
  wait_listed(f, sh.content, pk, 1, FX_COMPLETE_MS);
  fx_stop_peer(seed, NULL);
  fresh_get(f, "c", &sh, "four.bin", data, FOUR_BYTES);

  /* A recheck: 202, checking, every file hashed, then seeding again. */
  content_path(path, sizeof(path), sh.content_text, "recheck");
  c = call(&d, "POST", path, NULL, 202);
  assert_string_equal(api_str(c, "id"), sh.content_text);
  assert_string_equal(api_str(c, "state"), "checking");
  json_decref(c);
  json_decref(wait_state(&d, sh.content_text, "seeding", LOCAL_MS));
  if (!proc_output_has(d.p, 1, "four.bin: checked: 1 files hashed")) {
    fail_msg("the recheck did not hash the file");
  }
  wait_listed(f, sh.content, pk, 1, FX_COMPLETE_MS);
  fresh_get(f, "e", &sh, "four.bin", data, FOUR_BYTES);
  fx_stop_peer(d.p, NULL);
  fx_assert_copy(f, "home-d/downloads", "four.bin", data, FOUR_BYTES);
  free(data);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 5. A shared file that changes: the content says so and leaves the
 *    tracker. */

static int error_names(const json_t *c, void *arg) {
  const char *s = api_str(c, "state"), *e = api_str(c, "error");
  return s != NULL && strcmp(s, "changed") == 0 && e != NULL &&
         strstr(e, arg) != NULL;
}

static void changed_share_is_detected(void **state) {
  struct fx *f = *state;
  uint8_t pk[32], content[32];
  struct dmn d;
  char src[PROC_PATH_MAX], body[PROC_PATH_MAX + 32], id[TEXTID_STRLEN];

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_write_random(f, "src/shared.bin", REM_BYTES, 7, NULL);
  fx_path(f, src, sizeof(src), "src/shared.bin");
  start_daemon(f, &d, "d", "d", NULL);
  snprintf(body, sizeof(body), "{\"path\":\"%s\"}", src);
  json_decref(call(&d, "POST", "/v1/shares", body, 202));
  wait_share_seeding(&d, "shared.bin", id, sizeof(id));
  assert_int_equal(textid_decode(TEXTID_CONTENT, id, strlen(id), content), 0);
  status_of(&d, pk);
  wait_listed(f, content, pk, 1, FX_COMPLETE_MS);

  int fd = open(src, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "more", 4), 4);
  assert_int_equal(close(fd), 0);
  json_decref(wait_content(&d, id, error_names, "shared.bin",
                           "state \"changed\" naming the file", CHANGE_MS));
  wait_listed(f, content, pk, 0, UNLIST_MS);
  fx_stop_peer(d.p, NULL);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 6. TCP: the token, the Host and the Origin. */

static void tcp_checks_token_host_origin(void **state) {
  struct fx *f = *state;
  struct dmn d;
  struct api_conn none, wrong, right;
  struct api_reply r;
  struct stat st;
  char tokpath[PROC_PATH_MAX], want[512], origin[160];
  char *token;
  size_t n;

  start_daemon(f, &d, "d", "d", "--api-listen", "127.0.0.1:0", NULL);
  assert_true(strncmp(d.tcp, "127.0.0.1:", 10) == 0);
  home_path(&d, tokpath, sizeof(tokpath), "api.token");
  token = tu_read_text(tokpath, &n);
  assert_non_null(token);
  assert_int_equal(n, 64);
  assert_int_equal(stat(tokpath, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  snprintf(want, sizeof(want), "http://%s/#token=%s", d.tcp, token);
  assert_string_equal(d.page, want);

  api_conn_tcp(&none, d.tcp, NULL);
  api_conn_tcp(&wrong, d.tcp,
               "00000000000000000000000000000000"
               "00000000000000000000000000000000");
  api_conn_tcp(&right, d.tcp, token);
  assert_int_equal(api_request(&none, "GET", "/v1/status", NULL, 0, NULL, &r),
                   0);
  assert_int_equal(r.status, 401);
  assert_non_null(api_str(r.json, "error"));
  api_reply_free(&r);
  assert_int_equal(api_request(&wrong, "GET", "/v1/status", NULL, 0, NULL, &r),
                   0);
  assert_int_equal(r.status, 401);
  api_reply_free(&r);
  json_decref(call_on(&right, "GET", "/v1/status", NULL, 200));

  {
    const char *evil_host[] = {"Host: evil.example", NULL};
    const char *evil_port[] = {"Host: 127.0.0.1:1", NULL};
    const char *evil_origin[] = {"Origin: http://evil.example", NULL};
    const char *good_origin[] = {origin, NULL};
    snprintf(origin, sizeof(origin), "Origin: http://%s", d.tcp);
    assert_int_equal(
        api_request(&right, "GET", "/v1/status", NULL, 0, evil_host, &r), 0);
    assert_int_equal(r.status, 403);
    api_reply_free(&r);
    assert_int_equal(
        api_request(&right, "GET", "/v1/status", NULL, 0, evil_port, &r), 0);
    assert_int_equal(r.status, 403);
    api_reply_free(&r);
    assert_int_equal(
        api_request(&right, "GET", "/v1/status", NULL, 0, evil_origin, &r), 0);
    assert_int_equal(r.status, 403);
    api_reply_free(&r);
    /* Not even the page goes to a foreign Host. */
    assert_int_equal(api_request(&none, "GET", "/", NULL, 0, evil_host, &r), 0);
    assert_int_equal(r.status, 403);
    api_reply_free(&r);
    assert_int_equal(
        api_request(&right, "GET", "/v1/status", NULL, 0, good_origin, &r), 0);
    assert_int_equal(r.status, 200);
    api_reply_free(&r);
  }

  /* The page needs no token. */
  assert_int_equal(api_request(&none, "GET", "/", NULL, 0, NULL, &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(strncmp(r.ctype, "text/html", 9) == 0);
  assert_true(r.len > 0);
  api_reply_free(&r);
  /* The socket needs none either. */
  json_decref(call(&d, "GET", "/v1/status", NULL, 200));
  free(token);
  fx_stop_peer(d.p, NULL);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 7. The errors: bad bodies, unknown contents and paths, wrong methods,
 *    conflicts. */

static void errors_have_their_status(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct dmn d;
  char path[256], id[TEXTID_STRLEN], body[LINK_MAX_CHARS + 64];
  uint8_t random_id[32];
  json_t *c;
  size_t big_len = 70 * FX_KiB;
  char *big = malloc(big_len);

  assert_non_null(big);
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_share_file(f, "src/err.bin", REM_BYTES, 8, NULL, &sh);
  start_daemon(f, &d, "d", "d", NULL);

  call_error(&d, "POST", "/v1/contents", "{\"link\": ", 400);
  call_error(&d, "POST", "/v1/contents", "[1,2]", 400);
  call_error(&d, "POST", "/v1/contents", "{\"link\": 5}", 400);
  call_error(&d, "POST", "/v1/contents", "{}", 400);
  call_error(&d, "POST", "/v1/contents", "{\"link\": \"shoal:?x=1\"}", 400);
  snprintf(body, sizeof(body), "{\"link\":\"%s\",\"dir\":\"rel/dir\"}",
           sh.link);
  call_error(&d, "POST", "/v1/contents", body, 400);
  call_error(&d, "POST", "/v1/shares", "{\"path\":\"src\"}", 400);
  call_error(&d, "POST", "/v1/shares", "{\"path\":\"/no/such/path\"}", 404);
  /* 70 KiB of a JSON string: over the 64 KiB limit. */
  memset(big, 'a', big_len);
  memcpy(big, "{\"link\":\"", 9);
  memcpy(big + big_len - 2, "\"}", 2);
  call_error_len(&d, "POST", "/v1/contents", big, big_len, 413);
  call_error(&d, "PUT", "/v1/limits", "{\"upload\": -1}", 400);

  /* Unknown contents and paths. */
  tu_fill(random_id, sizeof(random_id), 99);
  textid_encode(TEXTID_CONTENT, random_id, id);
  content_path(path, sizeof(path), id, NULL);
  call_error(&d, "GET", path, NULL, 404);
  call_error(&d, "DELETE", path, NULL, 404);
  content_path(path, sizeof(path), id, "pause");
  call_error(&d, "POST", path, NULL, 404);
  call_error(&d, "GET", "/v1/contents/not-an-id", NULL, 404);
  call_error(&d, "GET", "/v1/contents/shoal1", NULL, 404);
  call_error(&d, "GET", "/v1/nothing", NULL, 404);
  call_error(&d, "GET", "/nothing", NULL, 404);

  /* Wrong methods. */
  call_error(&d, "PUT", "/v1/status", NULL, 405);
  call_error(&d, "DELETE", "/v1/contents", NULL, 405);
  call_error(&d, "GET", "/v1/shares", NULL, 405);
  call_error(&d, "POST", "/v1/events", NULL, 405);

  /* Conflicts. */
  add_link(&d, &sh);
  snprintf(body, sizeof(body), "{\"link\":\"%s\"}", sh.link);
  call_error(&d, "POST", "/v1/contents", body, 409);
  content_path(path, sizeof(path), sh.content_text, "pause");
  c = call(&d, "POST", path, NULL, 200);
  assert_string_equal(api_str(c, "state"), "paused");
  json_decref(c);
  call_error(&d, "POST", path, NULL, 409);
  content_path(path, sizeof(path), sh.content_text, NULL);
  call_error(&d, "POST", path, NULL, 405);
  content_path(path, sizeof(path), sh.content_text, "pause");
  call_error(&d, "GET", path, NULL, 405);
  content_path(path, sizeof(path), sh.content_text, "explode");
  call_error(&d, "POST", path, NULL, 404);
  content_path(path, sizeof(path), sh.content_text, "resume");
  c = call(&d, "POST", path, NULL, 200);
  assert_string_not_equal(api_str(c, "state"), "paused");
  json_decref(c);
  call_error(&d, "POST", path, NULL, 409);
  /* Still a working content. */
  json_decref(wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS));
  fx_stop_peer(d.p, NULL);
  free(big);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 8. The command-line client. */

/* A "ls --json" line for the content in arg whose state is in the line. */
struct ls_find {
  const char *id;
  char state[32];
  int found;
};

static int ls_line(const char *line, void *arg) {
  struct ls_find *q = arg;
  char id[TEXTID_STRLEN + 8];
  if (!jsonl_valid(line)) {
    fail_msg("ls --json printed a line that is not JSON: %s", line);
  }
  if (jsonl_str(line, "id", id, sizeof(id)) == 0 && strcmp(id, q->id) == 0) {
    q->found = 1;
    if (jsonl_str(line, "state", q->state, sizeof(q->state)) != 0) {
      q->state[0] = '\0';
    }
  }
  return 0;
}

static void ls_state(struct fx *f, const char *name, const char *home,
                     const char *id, char *state, size_t cap) {
  struct ls_find q = {id, "", 0};
  struct proc *p = fx_run(f, name, "ls", "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  proc_each_line(p, 0, ls_line, &q);
  if (!q.found) {
    fail_msg("%s does not list %s", name, id);
  }
  snprintf(state, cap, "%s", q.state);
}

static void cli_drives_the_daemon(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct dmn d;
  char st[32], prefix[16], empty[PROC_PATH_MAX], line[FX_LINE_CAP];
  char id[TEXTID_STRLEN + 8];
  json_t *c;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_share_file(f, "src/cli.bin", REM_BYTES, 9, NULL, &sh);
  start_daemon(f, &d, "d", "d", NULL);

  struct proc *add =
      fx_run(f, "add", "add", sh.link, "--home", d.home, "--json", NULL);
  fx_expect_exit(add, FX_EXIT_MS, 0);
  line[0] = '\0';
  proc_each_line(add, 0, fx_keep_line, line);
  assert_int_equal(jsonl_str(line, "id", id, sizeof(id)), 0);
  assert_string_equal(id, sh.content_text);
  json_decref(wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS));
  ls_state(f, "ls-1", d.home, sh.content_text, st, sizeof(st));
  assert_string_equal(st, "seeding");

  /* pause by an ID's first characters, resume by the whole ID. */
  snprintf(prefix, sizeof(prefix), "%.10s", sh.content_text);
  struct proc *p = fx_run(f, "pause", "pause", prefix, "--home", d.home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  c = wait_state(&d, sh.content_text, "paused", LOCAL_MS);
  json_decref(c);
  ls_state(f, "ls-2", d.home, sh.content_text, st, sizeof(st));
  assert_string_equal(st, "paused");
  p = fx_run(f, "pause-again", "pause", prefix, "--home", d.home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  p = fx_run(f, "resume", "resume", sh.content_text, "--home", d.home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  json_decref(wait_state(&d, sh.content_text, "seeding", LOCAL_MS));
  ls_state(f, "ls-3", d.home, sh.content_text, st, sizeof(st));
  assert_string_equal(st, "seeding");

  /* No daemon in a home: exit 1, and the message says so. */
  fx_mkdir(f, "home-empty");
  fx_path(f, empty, sizeof(empty), "home-empty");
  p = fx_run(f, "ls-empty", "ls", "--home", empty, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  if (!proc_output_has(p, 1, "no daemon runs in")) {
    fail_msg("ls without a daemon does not say that none runs");
  }
  fx_stop_peer(d.p, NULL);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 9. The watch folder takes a link file. */

static void watch_folder_adds_links(void **state) {
  struct fx *f = *state;
  uint8_t *data;
  struct fx_shared sh;
  struct dmn d;
  char watch[PROC_PATH_MAX], tmp[PROC_PATH_MAX], link_file[PROC_PATH_MAX],
      added[PROC_PATH_MAX], text[LINK_MAX_CHARS + 2];

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "watch");
  fx_share_file(f, "src/w.bin", REM_BYTES, 10, &data, &sh);
  fx_path(f, watch, sizeof(watch), "watch");
  start_daemon(f, &d, "d", "d", "--watch", watch, NULL);
  /* Written aside, then renamed in whole. */
  snprintf(text, sizeof(text), "%s\n", sh.link);
  tu_write_file(f->dir, "watch/x.shoal.part", text, strlen(text));
  fx_path(f, tmp, sizeof(tmp), "watch/x.shoal.part");
  fx_path(f, link_file, sizeof(link_file), "watch/x.shoal");
  fx_path(f, added, sizeof(added), "watch/x.shoal.added");
  assert_int_equal(rename(tmp, link_file), 0);
  wait_exists(added, 1, WATCH_MS);
  assert_false(fx_exists(link_file));
  json_decref(wait_state(&d, sh.content_text, "seeding", FX_COMPLETE_MS));
  fx_assert_copy(f, "home-d/downloads", "w.bin", data, REM_BYTES);
  /* Taken once: the renamed file stays as it is. */
  assert_true(fx_exists(added));
  fx_stop_peer(d.p, NULL);
  free(data);
  fx_finish(f);
}

/* ---------------------------------------------------------------------- */
/* 10. The event stream. */

#define SSE_BYTES (2 * FX_MiB)

struct sse {
  const char *id;
  unsigned events;
  int hello_first;
  int added;         /* an "added" for id came */
  unsigned progress; /* "progress" events for id */
  unsigned states;   /* "state" events for id */
  int added_before;  /* "added" came before the first "state"/"progress" */
};

static int on_first(const char *event, const char *data, void *arg) {
  struct sse *s = arg;
  json_t *j = json_loads(data, 0, NULL);
  s->events++;
  s->hello_first = strcmp(event, "hello") == 0 && api_str(j, "peer") != NULL;
  json_decref(j);
  return 1;
}

static int on_event(const char *event, const char *data, void *arg) {
  struct sse *s = arg;
  json_t *j = json_loads(data, 0, NULL);
  const char *id = api_str(j, "id");
  const char *st = api_str(j, "state");
  int done = 0;
  s->events++;
  if (j == NULL) {
    fail_msg("the \"%s\" event's data is not JSON: %s", event, data);
  }
  if (id != NULL && strcmp(id, s->id) == 0) {
    if (strcmp(event, "added") == 0) {
      s->added = 1;
      s->added_before = s->progress == 0 && s->states == 0;
    } else if (strcmp(event, "progress") == 0) {
      s->progress++;
    } else if (strcmp(event, "state") == 0) {
      s->states++;
      done = st != NULL && strcmp(st, "seeding") == 0;
    }
  }
  json_decref(j);
  return done;
}

static void events_follow_a_download(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct dmn d;
  struct api_stream *s;
  struct sse e;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_write_random(f, "src/sse.bin", SSE_BYTES, 11, NULL);
  fx_seed(f, "src/sse.bin", &sh, "--upload-rate", "1M", NULL);
  start_daemon(f, &d, "d", "d", NULL);
  memset(&e, 0, sizeof(e));
  e.id = sh.content_text;
  assert_int_equal(api_stream_open(&s, &d.c), 0);
  if (api_stream_wait(s, on_first, &e, FX_MSG_MS) != 1 || !e.hello_first) {
    api_stream_close(s);
    fail_msg("the stream did not begin with \"hello\" and the status");
  }
  add_link(&d, &sh);
  int rc = api_stream_wait(s, on_event, &e, FX_COMPLETE_MS);
  api_stream_close(s);
  if (rc != 1) {
    fail_msg("no \"state\" event saying seeding (%u events, rc %d)", e.events,
             rc);
  }
  assert_true(e.added);
  assert_true(e.added_before);
  assert_true(e.progress >= 1);
  fx_stop_peer(d.p, NULL);
  fx_finish(f);
}

int main(void) {
  int rc;
  if (fx_main_init("it_daemon") != 0 || api_global_init() != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          download_then_restart_seeds_without_rehash, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(kill9_mid_download_resumes, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(remove_with_and_without_data, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(copy_in_place_is_seeded_and_rechecked,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(changed_share_is_detected, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(tcp_checks_token_host_origin, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(errors_have_their_status, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(cli_drives_the_daemon, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(watch_folder_adds_links, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(events_follow_a_download, fx_setup,
                                      fx_teardown),
  };
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  api_global_cleanup();
  return rc;
}
