/* The integration tests' shared fixture (see fx.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "tests/lib/fx.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/testutil.h"

/* What the watchdog prints: "PROG: a test hung; giving up". */
static char fx_watchdog_msg[128] = "a test hung; giving up\n";
/* The tracker of the running test, for the watchdog: the peers die with
 * this program (PR_SET_PDEATHSIG), the tracker is killed by hand. */
static volatile pid_t fx_watchdog_tracker;

static void fx_on_watchdog(int sig) {
  (void)sig;
  if (fx_watchdog_tracker > 0) {
    kill(fx_watchdog_tracker, SIGKILL);
  }
  ssize_t w = write(2, fx_watchdog_msg, strlen(fx_watchdog_msg));
  (void)w;
  _exit(1);
}

int fx_main_init(const char *prog) {
  if (sodium_init() < 0) {
    return -1;
  }
  snprintf(fx_watchdog_msg, sizeof(fx_watchdog_msg),
           "%s: a test hung; giving up\n", prog);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, fx_on_watchdog);
  const char *only = getenv("SHOAL_TEST_FILTER");
  if (only != NULL && only[0] != '\0') {
    cmocka_set_test_filter(only);
  }
  return 0;
}

int fx_setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  const char *bin = getenv("SHOAL_BIN");
  if (f == NULL) {
    return -1;
  }
  tu_tmpdir(f->dir, sizeof(f->dir));
  snprintf(f->bin, sizeof(f->bin), "%s/shoal-peer",
           bin && bin[0] ? bin : "build/bin");
  alarm(FX_WATCHDOG_S);
  *state = f;
  return 0;
}

int fx_teardown(void **state) {
  struct fx *f = *state;
  while (f->nhooks > 0) {
    f->nhooks--;
    f->hooks[f->nhooks](f->hook_args[f->nhooks]);
  }
  for (int i = 0; i < f->nprocs; i++) {
    proc_kill(&f->procs[i]);
  }
  if (!f->done) {
    for (int i = 0; i < f->nprocs; i++) {
      proc_dump(&f->procs[i]);
    }
  }
  for (int i = 0; i < f->npcs; i++) {
    pc_close(&f->pcs[i]);
  }
  if (f->tracker_up && !f->done) {
    size_t n;
    uint8_t *log = tu_read_file(f->t.log_path, &n);
    if (log != NULL) {
      size_t from = n > 8192 ? n - 8192 : 0;
      fprintf(stderr, "---- tracker log (tail)\n%.*s\n", (int)(n - from),
              (const char *)log + from);
      free(log);
    }
  }
  tc_tracker_cleanup(&f->t);
  fx_watchdog_tracker = 0;
  const char *keep = getenv("SHOAL_TEST_KEEP");
  if (!f->done && keep != NULL && keep[0] == '1') {
    fprintf(stderr, "test folder kept: %s\n", f->dir);
  } else {
    tu_rmtree(f->dir);
  }
  alarm(0);
  free(f);
  return 0;
}

void fx_on_teardown(struct fx *f, void (*fn)(void *arg), void *arg) {
  assert_true(f->nhooks < FX_MAX_HOOKS);
  f->hooks[f->nhooks] = fn;
  f->hook_args[f->nhooks] = arg;
  f->nhooks++;
}

void fx_start_tracker(struct fx *f) {
  fx_start_tracker_with(f, NULL);
}

void fx_start_tracker_with(struct fx *f, const char **extra) {
  fx_start_tracker_at(f, "127.0.0.1:0", extra);
}

void fx_start_tracker_at(struct fx *f, const char *listen, const char **extra) {
  /* A 2 s interval so peers meet quickly; a high rate limit because every
   * peer of a test shares the address 127.0.0.1. */
  const char *argv[32] = {"--interval", "2",    "--rate",      "1000",
                          "--burst",    "5000", "--log-level", "debug"};
  int n = 8;
  for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
    assert_true(n < 31);
    argv[n++] = extra[i];
  }
  argv[n] = NULL;
  assert_int_equal(tc_tracker_start_at(&f->t, 0, listen, argv), 0);
  f->tracker_up = 1;
  f->tracker_family = listen[0] == '[' ? 6 : 4;
  fx_watchdog_tracker = f->t.pid;
  snprintf(f->tracker_addr, sizeof(f->tracker_addr),
           f->tracker_family == 6 ? "[::1]:%d" : "127.0.0.1:%d", f->t.port);
  textid_encode(TEXTID_KEY, f->t.key, f->tracker_key);
}

int fx_tracker_lists(struct fx *f, const uint8_t content[32],
                     const uint8_t pk[32], int *seeding) {
  struct buf msg, reply;
  struct tmsg_lookup_ok ok;
  const uint8_t *p;
  size_t n;
  int found = 0;
  int fd = tc_connect_family(f->t.port, f->tracker_family);
  assert_true(fd >= 0);
  buf_init(&msg, 1 << 16);
  buf_init(&reply, 1 << 20);
  tc_query_lookup(&msg, 1, content, TMSG_MAX_PEERS, 0, NULL);
  assert_int_equal(tc_send_frame(fd, msg.data, msg.len), 0);
  assert_int_equal(tc_recv_frame(fd, &reply, FX_MSG_MS), 0);
  assert_int_equal(tc_open_reply(&f->t, &reply, &p, &n), TMSG_LOOKUP_OK);
  assert_int_equal(tmsg_lookup_ok_decode(p, n, &ok), 0);
  for (unsigned i = 0; i < ok.count; i++) {
    if (memcmp(ok.peers[i].pk, pk, 32) == 0) {
      found = 1;
      if (seeding != NULL) {
        *seeding = ok.peers[i].seeding;
      }
    }
  }
  close(fd);
  buf_free(&msg);
  buf_free(&reply);
  return found;
}

struct proc *fx_seed(struct fx *f, const char *rel, struct fx_shared *sh, ...) {
  char src[PROC_PATH_MAX];
  const char *args[50];
  int n = 0;
  va_list ap;
  const char *a;
  fx_path(f, src, sizeof(src), rel);
  args[n++] = "share";
  args[n++] = src;
  args[n++] = "--tracker";
  args[n++] = f->tracker_addr;
  args[n++] = "--tracker-key";
  args[n++] = f->tracker_key;
  va_start(ap, sh);
  while ((a = va_arg(ap, const char *)) != NULL) {
    assert_true(n < 50);
    args[n++] = a;
  }
  va_end(ap);
  struct proc *p = fx_peer_argv(f, "seeder", "s", args, n);
  if (sh != NULL) {
    fx_wait_shared(p, sh);
  }
  return p;
}

struct proc *fx_share_file(struct fx *f, const char *rel, size_t size,
                           uint64_t seed, uint8_t **data,
                           struct fx_shared *sh) {
  fx_write_random(f, rel, size, seed, data);
  return fx_seed(f, rel, sh, NULL);
}

void fx_announce(struct fx *f, const struct identity *id,
                 const uint8_t content[32], uint16_t port, uint8_t role) {
  struct buf msg, reply;
  const uint8_t *payload;
  size_t plen;
  uint8_t ids[1][32];
  uint64_t now = clock_wall_ms();
  memcpy(ids[0], content, sizeof(ids[0]));
  buf_init(&msg, 1 << 16);
  buf_init(&reply, 1 << 20);
  tc_seal_announce(&msg, id, now, envelope_seq_start(now), port,
                   TMSG_EVENT_STARTED, (const uint8_t(*)[32])ids, &role, 1);
  int fd = tc_connect_family(f->t.port, f->tracker_family);
  assert_true(fd >= 0);
  assert_int_equal(tc_send_frame(fd, msg.data, msg.len), 0);
  assert_int_equal(tc_recv_frame(fd, &reply, FX_MSG_MS), 0);
  assert_int_equal(tc_open_reply(&f->t, &reply, &payload, &plen),
                   TMSG_ANNOUNCE_OK);
  close(fd);
  buf_free(&msg);
  buf_free(&reply);
}

void fx_peer_id(struct fx *f, const char *home, uint8_t pk[32]) {
  char home_rel[128], home_path[PROC_PATH_MAX], name[160], text[FX_LINE_CAP];
  snprintf(home_rel, sizeof(home_rel), "home-%s", home);
  fx_mkdir(f, home_rel);
  fx_path(f, home_path, sizeof(home_path), home_rel);
  snprintf(name, sizeof(name), "id-%s", home);
  struct proc *p = fx_run(f, name, "id", "--home", home_path, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  text[0] = '\0';
  proc_each_line(p, 0, fx_keep_line, text);
  if (textid_decode(TEXTID_KEY, text, strlen(text), pk) != 0) {
    fail_msg("shoal-peer id printed no key: '%s'", text);
  }
}

void fx_path(const struct fx *f, char *out, size_t cap, const char *rel) {
  tu_path(out, cap, f->dir, rel);
}

void fx_mkdir(const struct fx *f, const char *rel) {
  char p[PROC_PATH_MAX];
  fx_path(f, p, sizeof(p), rel);
  if (mkdir(p, 0700) != 0 && errno != EEXIST) {
    fail_msg("mkdir %s: %s", p, strerror(errno));
  }
}

/* Starts the binary with the arguments given (NULL-ended) and nothing
 * else. */
struct proc *fx_run(struct fx *f, const char *name, ...) {
  const char *argv[64];
  int n = 0;
  va_list ap;
  assert_true(f->nprocs < FX_MAX_PROCS);
  argv[n++] = f->bin;
  va_start(ap, name);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 62) {
    argv[n++] = a;
  }
  va_end(ap);
  argv[n] = NULL;
  struct proc *p = &f->procs[f->nprocs];
  assert_int_equal(proc_start(p, f->dir, name, argv), 0);
  f->nprocs++;
  return p;
}

struct proc *fx_peer_argv(struct fx *f, const char *name, const char *home,
                          const char *const *args, int nargs) {
  const char *argv[64];
  char home_rel[128];
  char home_path[PROC_PATH_MAX];
  int n = 0;
  assert_true(f->nprocs < FX_MAX_PROCS);
  assert_true(nargs >= 0 && nargs <= 50);
  snprintf(home_rel, sizeof(home_rel), "home-%s", home);
  fx_mkdir(f, home_rel);
  fx_path(f, home_path, sizeof(home_path), home_rel);
  argv[n++] = f->bin;
  for (int i = 0; i < nargs; i++) {
    argv[n++] = args[i];
  }
  if (f->listen == NULL || f->listen[0] != '\0') {
    argv[n++] = "--listen";
    argv[n++] = f->listen != NULL ? f->listen : "127.0.0.1:0";
  }
  argv[n++] = "--home";
  argv[n++] = home_path;
  argv[n++] = "--json";
  argv[n++] = "--log-level";
  argv[n++] = "info";
  argv[n] = NULL;
  struct proc *p = &f->procs[f->nprocs];
  assert_int_equal(proc_start(p, f->dir, name, argv), 0);
  f->json[f->nprocs] = 1;
  f->nprocs++;
  return p;
}

struct proc *fx_peer(struct fx *f, const char *name, const char *home, ...) {
  const char *args[50];
  int n = 0;
  va_list ap;
  const char *a;
  va_start(ap, home);
  while ((a = va_arg(ap, const char *)) != NULL && n < 50) {
    args[n++] = a;
  }
  va_end(ap);
  return fx_peer_argv(f, name, home, args, n);
}

void fx_wait_event(struct proc *p, const char *ev, proc_pred pred, void *arg,
                   int timeout_ms, char *line) {
  int rc = proc_wait_event(p, ev, pred, arg, timeout_ms, line, FX_LINE_CAP);
  if (rc == -2) {
    fail_msg("%s ended (status %d) before its \"%s\" event", p->name, p->status,
             ev);
  } else if (rc != 0) {
    fail_msg("%s: no \"%s\" event within %d ms", p->name, ev, timeout_ms);
  }
}

uint64_t fx_u64(const char *line, const char *key) {
  uint64_t v;
  if (jsonl_u64(line, key, &v) != 0) {
    fail_msg("no integer \"%s\" in: %s", key, line);
  }
  return v;
}

int fx_listening_port(struct proc *p) {
  char line[FX_LINE_CAP];
  fx_wait_event(p, "listening", NULL, NULL, FX_START_MS, line);
  uint64_t port = fx_u64(line, "port");
  assert_true(port > 0 && port < 65536);
  return (int)port;
}

void fx_wait_shared(struct proc *p, struct fx_shared *out) {
  char line[FX_LINE_CAP];
  memset(out, 0, sizeof(*out));
  fx_wait_event(p, "shared", NULL, NULL, FX_START_MS, line);
  assert_int_equal(jsonl_str(line, "link", out->link, sizeof(out->link)), 0);
  assert_int_equal(
      jsonl_str(line, "content", out->content_text, sizeof(out->content_text)),
      0);
  assert_int_equal(strlen(out->content_text), TEXTID_CHARS);
  assert_int_equal(textid_decode(TEXTID_CONTENT, out->content_text,
                                 TEXTID_CHARS, out->content),
                   0);
  out->size = fx_u64(line, "size");
  /* The link names the same content. */
  struct share_link l;
  const char *why = NULL;
  assert_int_equal(link_parse(out->link, strlen(out->link), &l, &why), 0);
  assert_memory_equal(l.id, out->content, MANIFEST_ID_BYTES);
  assert_int_equal(l.size, out->size);
}

int fx_wait_exit(struct proc *p, int timeout_ms) {
  int st = proc_wait(p, timeout_ms);
  if (st < 0) {
    fail_msg("%s still running after %d ms", p->name, timeout_ms);
  }
  return st;
}

void fx_expect_exit(struct proc *p, int timeout_ms, int want) {
  int st = fx_wait_exit(p, timeout_ms);
  if (st != want) {
    fail_msg("%s exited with %d, expected %d", p->name, st, want);
  }
}

/* SIGTERM, then the exit status must be 0; stats_line (may be NULL)
 * receives the "stats" line. */
void fx_stop_peer(struct proc *p, char *stats_line) {
  proc_signal(p, SIGTERM);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  if (stats_line != NULL) {
    assert_true(
        proc_find_event(p, "stats", NULL, NULL, 1, stats_line, FX_LINE_CAP));
  }
}

int fx_keep_line(const char *line, void *arg) {
  snprintf(arg, FX_LINE_CAP, "%s", line);
  return 0;
}

/* --json output is one object a line. */
void fx_assert_json_output(const struct proc *p) {
  if (!proc_all_json(p)) {
    fail_msg("%s: stdout has a line that is not one JSON object", p->name);
  }
}

/* A share or get that ended by itself or by SIGINT/SIGTERM printed its
 * "stats" line last. */
static void fx_assert_stats_last(struct proc *p) {
  char last[FX_LINE_CAP];
  if (!proc_alive(p) && p->status != 128 + SIGKILL) {
    last[0] = '\0';
    proc_each_line(p, 0, fx_keep_line, last);
    if (!jsonl_is_event(last, "stats")) {
      fail_msg("%s: the last line is not the stats event: %s", p->name, last);
    }
  }
}

/* The last step of every test: what every child printed is checked once
 * more (--json output is one object a line; no sanitizer report, also from
 * a child whose exit status was not looked at), then fx_teardown may stay
 * quiet. */
const char *fx_sanitizer_report(const struct proc *p) {
  static const char *const reports[] = {
      "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"};
  for (size_t k = 0; k < sizeof(reports) / sizeof(reports[0]); k++) {
    if (proc_output_has(p, 1, reports[k])) {
      return reports[k];
    }
  }
  return NULL;
}

void fx_finish(struct fx *f) {
  for (int i = 0; i < f->nprocs; i++) {
    struct proc *p = &f->procs[i];
    if (fx_sanitizer_report(p) != NULL) {
      fail_msg("%s: sanitizer report in its stderr", p->name);
    }
    if (f->json[i]) {
      fx_assert_json_output(p);
      fx_assert_stats_last(p);
    }
  }
  f->done = 1;
}

void fx_write_random(const struct fx *f, const char *rel, size_t len,
                     uint64_t seed, uint8_t **out) {
  uint8_t *data = malloc(len ? len : 1);
  assert_non_null(data);
  tu_fill(data, len, seed);
  tu_write_file(f->dir, rel, data, len);
  if (out != NULL) {
    *out = data;
  } else {
    free(data);
  }
}

void fx_assert_file_is(const char *path, const uint8_t *data, size_t len) {
  size_t n;
  uint8_t *got = tu_read_file(path, &n);
  if (got == NULL) {
    fail_msg("missing %s", path);
  }
  if (n != len || (len > 0 && memcmp(got, data, len) != 0)) {
    free(got);
    fail_msg("%s differs from the original (%zu bytes, expected %zu)", path, n,
             len);
  }
  free(got);
}

int fx_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* The downloaded copy DIR/NAME equals data, and no partial is left. */
void fx_assert_copy(const struct fx *f, const char *outdir, const char *name,
                    const uint8_t *data, size_t len) {
  char rel[512];
  char p[PROC_PATH_MAX];
  snprintf(rel, sizeof(rel), "%s/%s", outdir, name);
  fx_path(f, p, sizeof(p), rel);
  fx_assert_file_is(p, data, len);
  snprintf(rel, sizeof(rel), "%s/%s%s", outdir, name, ".shoal-part");
  fx_path(f, p, sizeof(p), rel);
  if (fx_exists(p)) {
    fail_msg("%s left behind", p);
  }
}

struct pclient *fx_pc_new(struct fx *f) {
  struct identity id;
  assert_true(f->npcs < FX_MAX_PCS);
  struct pclient *c = &f->pcs[f->npcs++];
  identity_generate(&id);
  assert_int_equal(pc_init(c, &id), 0);
  identity_close(&id);
  return c;
}

void fx_pc_done(struct fx *f, struct pclient *c) {
  pc_close(c);
  /* Reuse the slot when it is the last one. */
  if (f->npcs > 0 && c == &f->pcs[f->npcs - 1]) {
    f->npcs--;
  }
}

/* A session to port as a downloader of content, hellos done. */
struct pclient *fx_pc_session(struct fx *f, int port,
                              const uint8_t content[32]) {
  struct pclient *c = fx_pc_new(f);
  assert_int_equal(pc_connect(c, port), 0);
  int err = pc_handshake(c, content, 0, 0, FX_MSG_MS);
  if (err != 0) {
    fail_msg("handshake with port %d: %s", port, shoal_err_name(err));
  }
  assert_memory_equal(c->theirs.content, content, 32);
  return c;
}

/* ------------------------------------------------------------------------ */
/* Predicates on JSON lines. */

int fx_have_at_least(const char *line, void *arg) {
  const struct fx_frac *q = arg;
  uint64_t have, total;
  return jsonl_u64(line, "have", &have) == 0 &&
         jsonl_u64(line, "total", &total) == 0 && total > 0 &&
         have * q->den >= total * q->num;
}

int fx_have_some(const char *line, void *arg) {
  (void)arg;
  uint64_t have;
  return jsonl_u64(line, "have", &have) == 0 && have > 0;
}
