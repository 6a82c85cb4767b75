/* Integration tests of shoal-peer's command line: the real binary on
 * loopback, as a person or a script runs it.
 *
 * They pin what a user sees: how options are written (--opt=value, --,
 * short forms, options refused by the commands they do not apply to, the
 * tracker's default port, SHOAL_TRACKER), that every error is one line and
 * a run that never started prints no totals, that a server that is not a
 * tracker is named as such, that the progress line fits a terminal of any
 * width and follows a resize (under a real pseudo-terminal), that names
 * cannot drive the terminal, that files left out of a share are --json
 * events, and that a download rate limit holds from the first second.
 *
 * The fixture (tests/lib/fx.h) starts and stops every child by PID; the
 * fake servers here are threads with a deadline, stopped at teardown.
 * Children that must fail before they start are run with fx_run (the
 * fixture then does not expect a "stats" line from them).
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/link.h"
#include "common/textid.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/pclient.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"

#define FAKE_LIFE_MS 60000 /* a fake server thread ends by itself */
#define HTTP_ANSWER "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
#define SSH_BANNER "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
#define TRACKER_PORT 7070 /* what --tracker HOST means */

/* ------------------------------------------------------------------------ */
/* Output helpers */

/* The first place needle (n bytes) occurs in hay[0..len), or NULL. */
static char *find_bytes(char *hay, size_t len, const char *needle, size_t n) {
  for (size_t i = 0; n <= len && i <= len - n; i++) {
    if (memcmp(hay + i, needle, n) == 0) {
      return hay + i;
    }
  }
  return NULL;
}

struct line_count {
  unsigned n;
  unsigned with; /* lines holding needle */
  const char *needle;
};

static int count_line(const char *line, void *arg) {
  struct line_count *c = arg;
  c->n++;
  if (c->needle != NULL && strstr(line, c->needle) != NULL) {
    c->with++;
  }
  return 0;
}

/* Lines of the child's stdout (err 0) or stderr (err 1). */
static unsigned lines_of(const struct proc *p, int err) {
  struct line_count c = {0, 0, NULL};
  proc_each_line(p, err, count_line, &c);
  return c.n;
}

/* Lines of the child's stderr that hold needle. */
static unsigned err_lines_with(const struct proc *p, const char *needle) {
  struct line_count c = {0, 0, needle};
  proc_each_line(p, 1, count_line, &c);
  return c.with;
}

/* The child's whole stream, NUL-terminated (malloc'd). */
static char *all_of(const struct proc *p, int err, size_t *len) {
  size_t n = 0;
  char *s = tu_read_text(err ? p->err_path : p->out_path, &n);
  if (s == NULL) {
    s = strdup("");
    assert_non_null(s);
  }
  if (len != NULL) {
    *len = n;
  }
  return s;
}

/* The child wrote exactly one line to stderr, and it holds each of the
 * NULL-ended needles. */
static void expect_one_error_line(const struct proc *p, ...) {
  char *err = all_of(p, 1, NULL);
  va_list ap;
  const char *needle;
  if (lines_of(p, 1) != 1) {
    fail_msg("%s: %u lines on stderr, expected one:\n%s", p->name,
             lines_of(p, 1), err);
  }
  va_start(ap, p);
  while ((needle = va_arg(ap, const char *)) != NULL) {
    if (strstr(err, needle) == NULL) {
      va_end(ap);
      fail_msg("%s: stderr does not say \"%s\":\n%s", p->name, needle, err);
    }
  }
  va_end(ap);
  free(err);
}

static void expect_no_stats(const struct proc *p) {
  if (proc_count_event(p, "stats", NULL, NULL) != 0) {
    fail_msg("%s: a \"stats\" line from a run that never started", p->name);
  }
  char *err = all_of(p, 1, NULL);
  if (strstr(err, "uploaded") != NULL) {
    fail_msg("%s: totals from a run that never started:\n%s", p->name, err);
  }
  free(err);
}

struct find_text {
  const char *prefix;
  char *out; /* FX_LINE_CAP */
};

static int starts_with(const char *line, void *arg) {
  struct find_text *t = arg;
  if (strncmp(line, t->prefix, strlen(t->prefix)) == 0) {
    snprintf(t->out, FX_LINE_CAP, "%s", line);
    return 1;
  }
  return 0;
}

/* Waits for a stdout line that starts with prefix (plain output). */
static void wait_stdout_line(struct proc *p, const char *prefix, char *out) {
  struct find_text t = {prefix, out};
  uint64_t deadline = proc_now_ms() + FX_START_MS;
  for (;;) {
    if (proc_each_line(p, 0, starts_with, &t) == 1) {
      return;
    }
    if (!proc_alive(p)) {
      fail_msg("%s ended (status %d) before printing \"%s...\"", p->name,
               p->status, prefix);
    }
    if (proc_now_ms() > deadline) {
      fail_msg("%s: no \"%s...\" line within %d ms", p->name, prefix,
               FX_START_MS);
    }
    proc_pause_ms(20);
  }
}

/* Shares DIR/rel (made of size pseudo-random bytes from seed) from a
 * --json seeder with the tracker's key; fills sh. */

/* A well-formed link to nothing, with one tracker at 127.0.0.1:port. */
static void link_to_nowhere(char *out, size_t cap, int port) {
  struct share_link l;
  uint8_t key[32];
  memset(&l, 0, sizeof(l));
  tu_fill(key, sizeof(key), 0x11d);
  tu_fill(l.id, sizeof(l.id), 0x11c);
  snprintf(l.name, sizeof(l.name), "nowhere.bin");
  l.size = 1000;
  l.tracker_count = 1;
  snprintf(l.trackers[0].host, sizeof(l.trackers[0].host), "127.0.0.1");
  l.trackers[0].port = (uint16_t)port;
  link_set_key(&l, key);
  assert_true(link_format(&l, out, cap) > 0);
}

/* A loopback port nobody listens on (bound, then closed). */
static int closed_port(void) {
  int port;
  int fd = pc_listen(&port);
  assert_true(fd >= 0);
  close(fd);
  return port;
}

/* ------------------------------------------------------------------------ */
/* A fake server: accepts on a loopback address and says one thing on each
 * connection (on accept, or after the first bytes it reads), then closes
 * it. It is not a shoal tracker. */

struct fake_srv {
  int fd;
  int port;
  const char *say;
  int say_first; /* speak on accept, before reading */
  pthread_t th;
  int running;
  atomic_int stop;
  atomic_uint conns;
};

static void *fake_srv_main(void *arg) {
  struct fake_srv *s = arg;
  uint64_t end = proc_now_ms() + FAKE_LIFE_MS;
  while (!atomic_load(&s->stop) && proc_now_ms() < end) {
    struct pollfd pf = {.fd = s->fd, .events = POLLIN};
    if (poll(&pf, 1, 50) <= 0) {
      continue;
    }
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) {
      continue;
    }
    atomic_fetch_add(&s->conns, 1);
    if (!s->say_first) {
      char buf[4096];
      struct pollfd pc = {.fd = c, .events = POLLIN};
      if (poll(&pc, 1, 2000) > 0) {
        ssize_t r = read(c, buf, sizeof(buf));
        (void)r;
      }
    }
    ssize_t w = write(c, s->say, strlen(s->say));
    (void)w;
    /* Let the client read it before the close. */
    struct pollfd pc = {.fd = c, .events = POLLIN};
    poll(&pc, 1, 200);
    close(c);
  }
  return NULL;
}

static void fake_srv_stop(void *arg) {
  struct fake_srv *s = arg;
  if (s->running) {
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    s->running = 0;
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

/* Listens on ip:port (port 0: any); returns 0, or -1 when the address is
 * taken. */
static int fake_srv_start(struct fx *f, struct fake_srv *s, const char *ip,
                          int port, const char *say, int say_first) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int one = 1;
  memset(s, 0, sizeof(*s));
  s->say = say;
  s->say_first = say_first;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(s->fd >= 0);
  setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
  if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(s->fd, 16) != 0) {
    close(s->fd);
    s->fd = -1;
    return -1;
  }
  assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &len), 0);
  s->port = ntohs(sa.sin_port);
  assert_int_equal(pthread_create(&s->th, NULL, fake_srv_main, s), 0);
  s->running = 1;
  fx_on_teardown(f, fake_srv_stop, s);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Item 9: conventional options */

static int names_x_report(const char *line, void *arg) {
  char name[300];
  (void)arg;
  return jsonl_str(line, "name", name, sizeof(name)) == 0 &&
         strcmp(name, "x-report.bin") == 0;
}

static void options_take_equals_and_double_dash(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char home[PROC_PATH_MAX], opt[PROC_PATH_MAX + 16], trk[128];
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/x-report.bin", 20 * FX_KiB, 1, NULL, &sh);
  fx_path(f, home, sizeof(home), "home-q");
  snprintf(opt, sizeof(opt), "--home=%s", home);
  snprintf(trk, sizeof(trk), "--tracker=%s", f->tracker_addr);

  /* --opt=value. */
  struct proc *p = fx_run(f, "id", "id", opt, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(proc_count_event(p, "id", NULL, NULL), 1);

  /* After --, a word that starts with '-' is a word: here one to search
   * for. */
  p = fx_run(f, "dash", "search", trk, opt, "--json", "--", "-report", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(proc_count_event(p, "search", names_x_report, NULL), 1);

  /* -q: nothing on stderr, not even "no matches"; without it, that line. */
  p = fx_run(f, "quiet", "search", "-q", trk, opt, "zzz-nothing", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(lines_of(p, 1), 0);
  p = fx_run(f, "loud", "search", trk, opt, "zzz-nothing", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(err_lines_with(p, "no matches"), 1);
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

static void short_forms_h_and_v(void **state) {
  struct fx *f = *state;
  char line[FX_LINE_CAP];
  struct proc *p = fx_run(f, "h", "-h", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  wait_stdout_line(p, "usage: shoal-peer", line);
  assert_int_equal(lines_of(p, 1), 0);
  p = fx_run(f, "get-h", "get", "-h", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  wait_stdout_line(p, "usage: shoal-peer", line);
  p = fx_run(f, "v", "-V", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  wait_stdout_line(p, "shoal-peer ", line);
  assert_int_equal(lines_of(p, 0), 1);
  p = fx_run(f, "version", "--version", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  wait_stdout_line(p, "shoal-peer ", line);
  fx_finish(f);
}

static void options_that_do_not_apply_are_refused(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX], link[LINK_MAX_CHARS + 1];
  static const char *const missing = "/nonexistent/shoal-test-path";
  struct {
    const char *args[8];
    const char *flag, *cmd;
  } cases[] = {
      {{"search", "foo", "--tracker", "127.0.0.1:9", "--seed"},
       "--seed",
       "search"},
      {{"share", missing, "--tracker", "127.0.0.1:9", "--limit", "5"},
       "--limit",
       "share"},
      {{"share", missing, "--tracker", "127.0.0.1:9", "-o", "x"},
       "--output",
       "share"},
      {{"share", missing, "--tracker", "127.0.0.1:9", "--download-rate", "1M"},
       "--download-rate",
       "share"},
      {{"id", "--tracker", "127.0.0.1:9"}, "--tracker", "id"},
      {{"id", "--listen", "127.0.0.1:0"}, "--listen", "id"},
      {{"search", "foo", "--tracker", "127.0.0.1:9", "--max-peers", "3"},
       "--max-peers",
       "search"},
      {{"get", link, "--limit", "3"}, "--limit", "get"},
  };
  fx_path(f, home, sizeof(home), "home");
  link_to_nowhere(link, sizeof(link), 9);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *argv[16] = {NULL};
    char name[32];
    int n = 0;
    for (int k = 0; k < 8 && cases[i].args[k] != NULL; k++) {
      argv[n++] = cases[i].args[k];
    }
    argv[n++] = "--home";
    argv[n++] = home;
    argv[n] = NULL;
    snprintf(name, sizeof(name), "case%zu", i);
    struct proc *p =
        fx_run(f, name, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5],
               argv[6], argv[7], argv[8], argv[9], NULL);
    int st = fx_wait_exit(p, FX_EXIT_MS);
    if (st != 2) {
      fail_msg("%s %s: exit %d, expected 2", cases[i].cmd, cases[i].flag, st);
    }
    expect_one_error_line(p, cases[i].flag, cases[i].cmd, NULL);
  }
  fx_finish(f);
}

static void search_needs_words(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX];
  fx_path(f, home, sizeof(home), "home");
  struct proc *p = fx_run(f, "empty", "search", "", "--tracker", "127.0.0.1:9",
                          "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 2);
  expect_one_error_line(p, "search", "word", NULL);
  p = fx_run(f, "blank", "search", " \t", "--tracker", "127.0.0.1:9", "--home",
             home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 2);
  expect_one_error_line(p, "search", "word", NULL);
  fx_finish(f);
}

static void output_folder_is_created(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], got[PROC_PATH_MAX], home[PROC_PATH_MAX];
  uint8_t *data = NULL;
  struct stat st;
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/made.bin", 64 * FX_KiB, 2, &data, &sh);

  /* Three folders that do not exist yet. */
  fx_path(f, out, sizeof(out), "new/a/b");
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_path(f, got, sizeof(got), "new/a/b/made.bin");
  fx_assert_file_is(got, data, 64 * FX_KiB);
  mode_t mask = umask(0);
  umask(mask);
  for (const char *rel = "new/a/b"; rel != NULL;) {
    fx_path(f, got, sizeof(got), rel);
    assert_int_equal(stat(got, &st), 0);
    if ((st.st_mode & 0777) != (0755 & ~mask)) {
      fail_msg("%s has mode %o, expected %o", got, st.st_mode & 0777,
               0755 & ~mask);
    }
    rel = strcmp(rel, "new/a/b") == 0 ? "new/a"
          : strcmp(rel, "new/a") == 0 ? "new"
                                      : NULL;
  }

  /* An -o that is a file: one error line naming it, nothing started. */
  tu_write_file(f->dir, "plain-file", "x", 1);
  fx_path(f, out, sizeof(out), "plain-file");
  fx_path(f, home, sizeof(home), "home-file");
  struct proc *p = fx_run(f, "to-file", "get", sh.link, "-o", out, "--home",
                          home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, out, "not a folder", NULL);
  assert_int_equal(proc_count_event(p, "error", NULL, NULL), 1);
  expect_no_stats(p);
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

/* A fake server on 127.0.0.N:7070 for the first N from 2 that is free. */
static void fake_on_default_port(struct fx *f, struct fake_srv *s, char *ip,
                                 size_t cap) {
  for (int n = 2; n < 40; n++) {
    snprintf(ip, cap, "127.0.0.%d", n);
    if (fake_srv_start(f, s, ip, TRACKER_PORT, HTTP_ANSWER, 0) == 0) {
      return;
    }
  }
  fail_msg("no address 127.0.0.2..39 has port %d free", TRACKER_PORT);
}

static void tracker_without_a_port_is_7070(void **state) {
  struct fx *f = *state;
  static struct fake_srv s;
  char ip[32], home[PROC_PATH_MAX], want[128];
  fake_on_default_port(f, &s, ip, sizeof(ip));
  fx_path(f, home, sizeof(home), "home");
  struct proc *p = fx_run(f, "search", "search", "foo", "--tracker", ip,
                          "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  snprintf(want, sizeof(want), "%s:%d is not a shoal tracker", ip,
           TRACKER_PORT);
  expect_one_error_line(p, want, "(it answered \"HTTP/1.1 400 Bad Request\")",
                        NULL);
  assert_true(atomic_load(&s.conns) >= 1);
  fx_finish(f);
}

static void shoal_tracker_stands_for_tracker(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char home[PROC_PATH_MAX], env[256];
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/x-report.bin", 20 * FX_KiB, 3, NULL, &sh);
  fx_path(f, home, sizeof(home), "home");

  /* Two trackers, the first down: the search goes on to the second. */
  snprintf(env, sizeof(env), "127.0.0.1:%d, %s", closed_port(),
           f->tracker_addr);
  setenv("SHOAL_TRACKER", env, 1);
  struct proc *p =
      fx_run(f, "env", "search", "report", "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(proc_count_event(p, "search", names_x_report, NULL), 1);

  /* A get by content ID takes its tracker from the variable too. */
  char out[PROC_PATH_MAX];
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  setenv("SHOAL_TRACKER", f->tracker_addr, 1);
  p = fx_peer(f, "get-id", "get-id", "get", sh.content_text, "-o", out, NULL);
  unsetenv("SHOAL_TRACKER");
  fx_expect_exit(p, FX_COMPLETE_MS, 0);
  assert_int_equal(proc_count_event(p, "complete", NULL, NULL), 1);

  /* --tracker wins, and the variable is not even read. */
  setenv("SHOAL_TRACKER", "not a::tracker", 1);
  p = fx_run(f, "flag-wins", "search", "report", "--tracker", f->tracker_addr,
             "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  assert_int_equal(proc_count_event(p, "search", names_x_report, NULL), 1);

  /* A bad value is a usage error that names the variable. */
  p = fx_run(f, "bad-env", "search", "report", "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 2);
  expect_one_error_line(p, "SHOAL_TRACKER", "a::tracker", NULL);
  unsetenv("SHOAL_TRACKER");

  /* Without either, the command says what it needs. */
  p = fx_run(f, "none", "search", "report", "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 2);
  expect_one_error_line(p, "--tracker", "SHOAL_TRACKER", NULL);
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Item 10: one message per error */

static void not_a_tracker_and_a_wrong_key_are_named_once(void **state) {
  struct fx *f = *state;
  static struct fake_srv http, ssh;
  char home[PROC_PATH_MAX], addr[64], want[128], msg[FX_LINE_CAP];
  char line[FX_LINE_CAP], other[TEXTID_STRLEN];
  fx_path(f, home, sizeof(home), "home");

  /* An HTTP server, with --json: one line on stderr, one error event. */
  assert_int_equal(fake_srv_start(f, &http, "127.0.0.1", 0, HTTP_ANSWER, 0), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", http.port);
  struct proc *p = fx_run(f, "http", "search", "foo", "--tracker", addr,
                          "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  snprintf(want, sizeof(want), "%s is not a shoal tracker", addr);
  expect_one_error_line(p, want, "(it answered \"HTTP/1.1 400 Bad Request\")",
                        NULL);
  assert_int_equal(proc_count_event(p, "error", NULL, NULL), 1);
  assert_true(proc_find_event(p, "error", NULL, NULL, 0, line, sizeof(line)));
  assert_int_equal(jsonl_str(line, "message", msg, sizeof(msg)), 0);
  assert_non_null(strstr(msg, want));
  assert_true(proc_all_json(p));

  /* An SSH server, which speaks first. */
  assert_int_equal(fake_srv_start(f, &ssh, "127.0.0.1", 0, SSH_BANNER, 1), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", ssh.port);
  p = fx_run(f, "ssh", "search", "foo", "--tracker", addr, "--home", home,
             NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  snprintf(want, sizeof(want), "%s is not a shoal tracker", addr);
  expect_one_error_line(
      p, want, "(it answered \"SSH-2.0-OpenSSH_9.2p1 Debian-2\")", NULL);

  /* A real tracker with another key than the one given: both named. */
  fx_start_tracker(f);
  uint8_t pk[32];
  tu_fill(pk, sizeof(pk), 0x0e1);
  textid_encode(TEXTID_KEY, pk, other);
  p = fx_run(f, "key", "search", "foo", "--tracker", f->tracker_addr,
             "--tracker-key", other, "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, "signs with key", f->tracker_key, other,
                        "--tracker-key", NULL);
  fx_finish(f);
}

/* share and get, like search, name a server that is not a tracker, once
 * (the tries before it are not warnings). */
static void share_and_get_name_a_server_that_is_not_a_tracker(void **state) {
  struct fx *f = *state;
  static struct fake_srv http;
  char home[PROC_PATH_MAX], addr[64], want[256], src[PROC_PATH_MAX];
  char link[LINK_MAX_CHARS + 1], out[PROC_PATH_MAX];
  assert_int_equal(fake_srv_start(f, &http, "127.0.0.1", 0, HTTP_ANSWER, 0), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", http.port);
  snprintf(want, sizeof(want),
           "shoal-peer: error: %s is not a shoal tracker (it answered "
           "\"HTTP/1.1 400 Bad Request\")",
           addr);
  fx_write_random(f, "f.bin", 10 * FX_KiB, 8, NULL);
  fx_path(f, src, sizeof(src), "f.bin");
  fx_path(f, home, sizeof(home), "home-share");
  struct proc *p = fx_run(f, "share", "share", src, "--tracker", addr,
                          "--listen", "127.0.0.1:0", "--home", home, NULL);
  fx_expect_exit(p, 30000, 1);
  assert_int_equal(err_lines_with(p, want), 1);
  assert_int_equal(err_lines_with(p, " WARN "), 0);
  link_to_nowhere(link, sizeof(link), http.port);
  fx_path(f, home, sizeof(home), "home-get");
  fx_path(f, out, sizeof(out), "out");
  p = fx_run(f, "get", "get", link, "-o", out, "--listen", "127.0.0.1:0",
             "--home", home, NULL);
  fx_expect_exit(p, 30000, 1);
  assert_int_equal(err_lines_with(p, want), 1);
  assert_int_equal(err_lines_with(p, " WARN "), 0);
  fx_finish(f);
}

static void failures_print_one_line_and_no_totals(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX], out[PROC_PATH_MAX], link[LINK_MAX_CHARS + 1];
  char listen[64];
  fx_path(f, home, sizeof(home), "home");
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");

  /* A malformed link: a usage error, and nothing started. */
  struct proc *p = fx_run(f, "bad-link", "get", "shoal:not-a-link", "-o", out,
                          "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 2);
  expect_one_error_line(p, "link", NULL);
  expect_no_stats(p);

  /* A listen address in use: one error, nothing started. */
  int port;
  int fd = pc_listen(&port);
  assert_true(fd >= 0);
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  link_to_nowhere(link, sizeof(link), closed_port());
  p = fx_run(f, "busy", "get", link, "-o", out, "--listen", listen, "--home",
             home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  close(fd);
  expect_one_error_line(p, listen, NULL);
  assert_int_equal(proc_count_event(p, "error", NULL, NULL), 1);
  expect_no_stats(p);

  /* A tracker that never answers, at the default log level: the error
   * once, not also as a log line; the run did start, so its totals
   * follow. */
  p = fx_run(f, "no-tracker", "get", link, "-o", out, "--listen", "127.0.0.1:0",
             "--home", home, NULL);
  fx_expect_exit(p, 30000, 1);
  if (err_lines_with(p, "tracker unreachable") != 1 ||
      err_lines_with(p, " ERROR ") != 0) {
    char *err = all_of(p, 1, NULL);
    fail_msg("the error is not printed exactly once:\n%s", err);
  }
  assert_int_equal(err_lines_with(p, "shoal-peer: error: tracker unreachable"),
                   1);
  assert_int_equal(err_lines_with(p, "shoal-peer: uploaded"), 1);
  fx_finish(f);
}

/* Holds the fcntl lock of home/lock from this process, as a running peer
 * would, with "4242" as its pid; the descriptor is returned. */
static int hold_home_lock(struct fx *f, const char *rel) {
  char path[PROC_PATH_MAX], lock_rel[128];
  struct flock fl;
  fx_mkdir(f, rel);
  snprintf(lock_rel, sizeof(lock_rel), "%s/lock", rel);
  fx_path(f, path, sizeof(path), lock_rel);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  assert_int_equal(fcntl(fd, F_SETLK, &fl), 0);
  assert_int_equal(write(fd, "4242\n", 5), 5);
  return fd;
}

/* Every way a run stops before or just after it starts: one error line,
 * the exit status, no totals. Run against the ASan build (SHOAL_BIN=
 * build/asan/bin) the children also end under LeakSanitizer, and
 * fx_finish fails the test on any report in their stderr: each of these
 * paths must release what it opened (the home's lock, the identity, the
 * get's items, the loop, a node or a tracker client). */
static void runs_that_stop_early_release_everything(void **state) {
  struct fx *f = *state;
  char home[PROC_PATH_MAX], out[PROC_PATH_MAX], link[LINK_MAX_CHARS + 1];
  char trk[64], key[PROC_PATH_MAX], file[PROC_PATH_MAX];
  link_to_nowhere(link, sizeof(link), closed_port());
  snprintf(trk, sizeof(trk), "127.0.0.1:%d", closed_port());
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  tu_write_file(f->dir, "plain-file", "x", 1);
  fx_path(f, file, sizeof(file), "plain-file");

  /* A usage error after a get's first item was read. */
  fx_path(f, home, sizeof(home), "home-usage");
  struct proc *p = fx_run(f, "second-link", "get", link, "shoal:zzz", "-o", out,
                          "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 2);
  expect_one_error_line(p, "bad link", NULL);

  /* A home locked by another process. */
  int lock_fd = hold_home_lock(f, "home-locked");
  fx_path(f, home, sizeof(home), "home-locked");
  p = fx_run(f, "locked", "get", link, "-o", out, "--home", home, "--json",
             NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  close(lock_fd);
  expect_one_error_line(p, "another shoal-peer (pid 4242) uses", home, NULL);
  assert_int_equal(proc_count_event(p, "error", NULL, NULL), 1);
  expect_no_stats(p);

  /* A key that others can read, found after the lock is taken. */
  fx_path(f, home, sizeof(home), "home-key");
  p = fx_run(f, "make-key", "id", "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  tu_path(key, sizeof(key), home, "identity.key");
  assert_int_equal(chmod(key, 0644), 0);
  p = fx_run(f, "key-open", "get", link, "-o", out, "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, "can be read by other users", NULL);

  /* An -o that is a file, after the lock and the identity. */
  fx_path(f, home, sizeof(home), "home-out");
  p = fx_run(f, "out-file", "get", link, "-o", file, "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, "not a folder", NULL);

  /* A home that cannot be made. */
  tu_path(home, sizeof(home), file, "home");
  p = fx_run(f, "no-home", "id", "--home", home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, "cannot create", NULL);

  /* A path that cannot be shared: the loop and the node were running. */
  fx_path(f, home, sizeof(home), "home-share");
  p = fx_run(f, "no-path", "share", "/nonexistent/shoal-test-path", "--tracker",
             trk, "--listen", "127.0.0.1:0", "--home", home, "--json", NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, "cannot share", NULL);
  expect_no_stats(p);

  /* A search whose tracker is down: a tracker client was running. */
  fx_path(f, home, sizeof(home), "home-search");
  p = fx_run(f, "search-down", "search", "foo", "--tracker", trk, "--home",
             home, NULL);
  fx_expect_exit(p, FX_EXIT_MS, 1);
  expect_one_error_line(p, "tracker unreachable", NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Items 8 and 11: names from the disk, left out, escaped */

#define EVIL_NAME "bad\x1b[2J\nname.bin"

/* DIR/pics: a.bin, a symbolic link to it, and a file whose name holds ESC
 * and a newline. */
static void make_pics(struct fx *f) {
  char target[PROC_PATH_MAX], where[PROC_PATH_MAX];
  fx_mkdir(f, "pics");
  fx_write_random(f, "pics/a.bin", 10 * FX_KiB, 4, NULL);
  fx_write_random(f, "pics/" EVIL_NAME, 10 * FX_KiB, 5, NULL);
  fx_path(f, target, sizeof(target), "pics/a.bin");
  fx_path(f, where, sizeof(where), "pics/link.bin");
  assert_int_equal(symlink(target, where), 0);
}

struct left_out {
  const char *path;
  int seen;
};

static int is_left_out(const char *line, void *arg) {
  struct left_out *want = arg;
  char path[PROC_PATH_MAX], reason[512];
  if (jsonl_str(line, "path", path, sizeof(path)) != 0 ||
      jsonl_str(line, "reason", reason, sizeof(reason)) != 0) {
    fail_msg("a left_out event without path and reason: %s", line);
  }
  assert_true(reason[0] != '\0');
  for (; want->path != NULL; want++) {
    if (strcmp(path, want->path) == 0) {
      want->seen++;
      return 1;
    }
  }
  fail_msg("left out, but should not be: %s", line);
  return 0;
}

static void left_out_files_are_json_events(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char pics[PROC_PATH_MAX];
  fx_start_tracker(f);
  make_pics(f);
  fx_path(f, pics, sizeof(pics), "pics");
  struct proc *p =
      fx_peer(f, "share", "s", "share", pics, "--tracker", f->tracker_addr,
              "--tracker-key", f->tracker_key, NULL);
  fx_wait_shared(p, &sh);
  struct left_out want[] = {
      {"pics/link.bin", 0}, {"pics/" EVIL_NAME, 0}, {NULL, 0}};
  assert_int_equal(proc_count_event(p, "left_out", is_left_out, want), 2);
  assert_int_equal(want[0].seen, 1);
  assert_int_equal(want[1].seen, 1);
  fx_stop_peer(p, NULL);
  fx_finish(f);
}

/* No byte a terminal acts on: C0 but the newline that ends each line, DEL,
 * and C1 in UTF-8. */
static void assert_no_control_bytes(const struct proc *p, int err) {
  size_t n;
  char *s = all_of(p, err, &n);
  const uint8_t *b = (const uint8_t *)s;
  for (size_t i = 0; i < n; i++) {
    if ((b[i] < 0x20 && b[i] != '\n') || b[i] == 0x7f ||
        (b[i] == 0xc2 && i + 1 < n && b[i + 1] >= 0x80 && b[i + 1] <= 0x9f)) {
      fail_msg("%s: byte 0x%02x at %zu of its %s:\n%s", p->name, b[i], i,
               err ? "stderr" : "stdout", s);
    }
  }
  free(s);
}

static void names_with_control_characters_are_escaped(void **state) {
  struct fx *f = *state;
  char pics[PROC_PATH_MAX], home[PROC_PATH_MAX], out[PROC_PATH_MAX];
  char line[FX_LINE_CAP], want[PROC_PATH_MAX];
  fx_start_tracker(f);
  make_pics(f);
  fx_path(f, pics, sizeof(pics), "pics");
  fx_path(f, home, sizeof(home), "home-plain");

  /* A plain share: the left-out lines are escaped, one line each. */
  struct proc *p = fx_run(f, "share", "share", pics, "--tracker",
                          f->tracker_addr, "--tracker-key", f->tracker_key,
                          "--listen", "127.0.0.1:0", "--home", home, NULL);
  wait_stdout_line(p, "shoal:", line);
  assert_int_equal(err_lines_with(p, "left out pics/bad\\x1b[2J\\nname.bin: "),
                   1);
  assert_int_equal(err_lines_with(p, "left out pics/link.bin: "), 1);
  assert_no_control_bytes(p, 1);

  /* A plain get into a folder whose name holds ESC: the path printed on
   * completion is escaped. */
  fx_mkdir(f, "out\x1b]0;title\x07");
  fx_path(f, out, sizeof(out), "out\x1b]0;title\x07");
  char home2[PROC_PATH_MAX];
  fx_path(f, home2, sizeof(home2), "home-get");
  struct proc *dl = fx_run(f, "get", "get", line, "-o", out, "--listen",
                           "127.0.0.1:0", "--home", home2, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_path(f, want, sizeof(want), "out\\x1b]0;title\\x07/pics");
  wait_stdout_line(dl, want, line);
  assert_no_control_bytes(dl, 0);
  assert_no_control_bytes(dl, 1);
  proc_signal(p, SIGTERM);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Item 11: the progress line under a pseudo-terminal */

/* Starts the binary with stdout to DIR/name.out, stdin from /dev/null and
 * stderr on a new pseudo-terminal of cols columns, whose master side goes
 * to *master. The fixture kills it by PID at teardown. */
static struct proc *fx_run_pty(struct fx *f, const char *name, int *master,
                               unsigned short cols, const char *const *args) {
  const char *argv[64];
  char *copy[64];
  int n = 0;
  int m, s;
  struct winsize ws = {.ws_row = 24, .ws_col = cols};
  struct termios tio;
  pid_t parent = getpid();

  assert_true(f->nprocs < FX_MAX_PROCS);
  argv[n++] = f->bin;
  for (int i = 0; args[i] != NULL && n < 62; i++) {
    argv[n++] = args[i];
  }
  argv[n] = NULL;
  for (int i = 0; i <= n; i++) {
    copy[i] = argv[i] != NULL ? strdup(argv[i]) : NULL;
  }
  assert_int_equal(openpty(&m, &s, NULL, NULL, &ws), 0);
  /* Raw output: a newline stays one byte, so lines and \r frames can be
   * told apart. */
  assert_int_equal(tcgetattr(s, &tio), 0);
  tio.c_oflag &= ~(tcflag_t)OPOST;
  assert_int_equal(tcsetattr(s, TCSANOW, &tio), 0);
  struct proc *p = &f->procs[f->nprocs];
  char rel[80];
  memset(p, 0, sizeof(*p));
  snprintf(p->name, sizeof(p->name), "%s", name);
  snprintf(rel, sizeof(rel), "%s.out", name);
  fx_path(f, p->out_path, sizeof(p->out_path), rel);
  snprintf(rel, sizeof(rel), "%s.err", name);
  fx_path(f, p->err_path, sizeof(p->err_path), rel);
  int out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(out >= 0 && in >= 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(127);
    }
    setsid();
    signal(SIGPIPE, SIG_DFL);
    dup2(in, 0);
    dup2(out, 1);
    dup2(s, 2);
    for (int fd = 3; fd < 1024; fd++) {
      close(fd);
    }
    execv(copy[0], copy);
    _exit(127);
  }
  close(out);
  close(in);
  close(s);
  for (int i = 0; i <= n; i++) {
    free(copy[i]);
  }
  p->pid = pid;
  f->nprocs++;
  *master = m;
  return p;
}

/* Display columns of UTF-8 text, counted here without shoal's code: two
 * for the CJK and fullwidth ranges and emoji, one for the rest. -1 for
 * invalid UTF-8 or a control character. */
static int display_cols(const char *s, size_t n) {
  const uint8_t *p = (const uint8_t *)s;
  int cols = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len;
    if (p[i] < 0x80) {
      cp = p[i];
      len = 1;
    } else if ((p[i] & 0xe0) == 0xc0) {
      cp = p[i] & 0x1fu;
      len = 2;
    } else if ((p[i] & 0xf0) == 0xe0) {
      cp = p[i] & 0x0fu;
      len = 3;
    } else if ((p[i] & 0xf8) == 0xf0) {
      cp = p[i] & 0x07u;
      len = 4;
    } else {
      return -1;
    }
    if (i + len > n) {
      return -1;
    }
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) {
        return -1;
      }
      cp = cp << 6 | (p[i + k] & 0x3fu);
    }
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
      return -1;
    }
    int wide =
        (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
        (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
        (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6) ||
        (cp >= 0x1f300 && cp <= 0x1faff) || (cp >= 0x20000 && cp <= 0x3fffd);
    cols += wide ? 2 : 1;
    i += len;
  }
  return cols;
}

/* What the terminal got: every byte, and where the complete progress
 * frames are. A frame is the text between a "\r\033[K" and the next '\r'
 * or the end, when it holds no newline (a line with one is a message). */
struct screen {
  char *data;
  size_t len, cap;
  size_t checked; /* frames before this byte are counted */
  unsigned frames;
  int max_cols;   /* widest frame seen since the last reset */
  int narrowed;   /* frames since the resize have fitted the new width */
  unsigned after; /* frames that fitted the new width */
};

/* Reads what the master has, until deadline_ms or until the child closes
 * the terminal. Returns 0 when the terminal closed. */
static int screen_read(struct screen *sc, int master, uint64_t until) {
  for (;;) {
    uint64_t now = proc_now_ms();
    if (now >= until) {
      return 1;
    }
    struct pollfd pf = {.fd = master, .events = POLLIN};
    int r = poll(&pf, 1, (int)(until - now));
    if (r <= 0) {
      continue;
    }
    if (sc->len + 4096 > sc->cap) {
      sc->cap = sc->cap ? sc->cap * 2 : 65536;
      sc->data = realloc(sc->data, sc->cap);
      assert_non_null(sc->data);
    }
    ssize_t n = read(master, sc->data + sc->len, 4096);
    if (n <= 0) {
      return 0; /* EIO: the slave side is closed */
    }
    sc->len += (size_t)n;
    return 1;
  }
}

/* Checks the complete frames after sc->checked: each at most limit
 * columns (after the resize, frames are allowed at the old width until the
 * first one at the new width). */
static void screen_check(struct screen *sc, int limit, int old_limit,
                         int done) {
  static const char clear[] = "\r\033[K";
  for (;;) {
    char *start = find_bytes(sc->data + sc->checked, sc->len - sc->checked,
                             clear, sizeof(clear) - 1);
    if (start == NULL) {
      return;
    }
    char *text = start + sizeof(clear) - 1;
    char *end = memchr(text, '\r', (size_t)(sc->data + sc->len - text));
    if (end == NULL && !done) {
      return; /* still being written */
    }
    if (end == NULL) {
      end = sc->data + sc->len;
    }
    sc->checked = (size_t)(end - sc->data);
    if (memchr(text, '\n', (size_t)(end - text)) != NULL || end == text) {
      continue; /* a message line, or a cleared line */
    }
    int cols = display_cols(text, (size_t)(end - text));
    if (cols < 0) {
      fail_msg("a progress frame with a control character or invalid UTF-8: "
               "\"%.*s\"",
               (int)(end - text), text);
    }
    sc->frames++;
    if (cols > sc->max_cols) {
      sc->max_cols = cols;
    }
    if (cols <= limit) {
      sc->narrowed = 1;
      sc->after++;
    } else if (sc->narrowed || cols > old_limit) {
      fail_msg("a progress frame of %d columns on a terminal of %d: \"%.*s\"",
               cols, limit + 1, (int)(end - text), text);
    }
  }
}

static void progress_line_fits_the_terminal(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], home[PROC_PATH_MAX];
  struct screen sc;
  int master = -1;
  memset(&sc, 0, sizeof(sc));
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  /* A long name with accents and wide (two-column) characters. */
  struct proc *seed =
      fx_share_file(f,
                    "src/\xc3\x9c"
                    "n\xc3\xaf"
                    "c\xc3\xb8"
                    "d\xc3\xa9"
                    "-"
                    "\xe3\x83\x95\xe3\x82\xa1\xe3\x82\xa4\xe3\x83\xab"
                    "-with-a-rather-long-name-for-a-narrow-terminal.bin",
                    1536 * FX_KiB, 6, NULL, &sh);
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  fx_path(f, home, sizeof(home), "home-tty");
  const char *args[] = {"get",    sh.link,    "-o",
                        out,      "--listen", "127.0.0.1:0",
                        "--home", home,       "--download-rate",
                        "384k",   NULL};
  struct proc *p = fx_run_pty(f, "tty", &master, 50, args);

  /* At 50 columns: frames of at most 49. */
  uint64_t deadline = proc_now_ms() + FX_START_MS;
  int open = 1;
  while (open && sc.frames < 2 && proc_now_ms() < deadline) {
    open = screen_read(&sc, master, proc_now_ms() + 100);
    screen_check(&sc, 49, 49, !open);
  }
  if (sc.frames < 2) {
    fail_msg("%u progress frames on the terminal within %d ms", sc.frames,
             FX_START_MS);
  }
  assert_true(sc.max_cols > 29); /* the line did use the room it had */

  /* 30 columns and SIGWINCH: once a frame fits 29, every later one does. */
  struct winsize ws = {.ws_row = 24, .ws_col = 30};
  assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
  proc_signal(p, SIGWINCH);
  sc.narrowed = 0;
  sc.after = 0;
  deadline = proc_now_ms() + FX_COMPLETE_MS;
  while (open && proc_now_ms() < deadline) {
    open = screen_read(&sc, master, proc_now_ms() + 100);
    screen_check(&sc, 29, 49, !open);
  }
  screen_check(&sc, 29, 49, 1);
  close(master);
  fx_expect_exit(p, FX_EXIT_MS, 0);
  /* What the terminal showed, for a failure's report. */
  tu_write_file(f->dir, "tty.err", sc.data, sc.len);
  if (sc.after < 1) {
    fail_msg("no progress frame fitted 30 columns after the resize");
  }
  free(sc.data);
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Item 12: a download rate limit from the first second */

struct timed {
  struct proc *p;
  uint64_t cap;      /* --download-rate, bytes a second */
  uint64_t read_max; /* one read under that limit (session.c) */
  uint64_t t_start;
  size_t off;
  char part[FX_LINE_CAP];
  size_t part_len;
  /* Progress events: arrival time and bytes. */
  uint64_t at[64];
  uint64_t bytes[64];
  unsigned n;
};

/* Reads the child's new stdout lines and notes each progress event with
 * the time it was seen. */
static void timed_poll(struct timed *t) {
  FILE *fp = fopen(t->p->out_path, "rb");
  if (fp == NULL) {
    return;
  }
  if (fseek(fp, (long)t->off, SEEK_SET) == 0) {
    int c;
    while ((c = fgetc(fp)) != EOF) {
      t->off++;
      if (c != '\n') {
        if (t->part_len + 1 < sizeof(t->part)) {
          t->part[t->part_len++] = (char)c;
        }
        continue;
      }
      t->part[t->part_len] = '\0';
      t->part_len = 0;
      uint64_t v;
      if (jsonl_is_event(t->part, "progress") &&
          jsonl_u64(t->part, "downloaded", &v) == 0 && t->n < 64) {
        t->at[t->n] = proc_now_ms();
        t->bytes[t->n] = v;
        t->n++;
      }
    }
  }
  fclose(fp);
}

/* The first event with bytes is k; event k + 1 comes about a second
 * after the data began. Whatever the node did before (it starts the
 * bucket's clock with the first bytes it reads, the peers' hellos), it
 * cannot have begun before the process: the bytes event k + 1 shows came
 * in the window from the start of the process to when it was seen.
 * Returns 1 once measured. */
static int timed_check(struct timed *t) {
  unsigned k = 0;
  while (k < t->n && t->bytes[k] == 0) {
    k++;
  }
  if (k + 1 >= t->n) {
    return 0;
  }
  /* 50 ms of slack: the node's clock is read once a loop turn, so the
   * bucket may take a turn's time as earned. */
  uint64_t window = t->at[k + 1] - t->t_start + 50;
  uint64_t got = t->bytes[k + 1];
  /* The stated margin: one read past the cap (rate.h), and 16 KiB for the
   * bytes of the first frames. */
  uint64_t allowed = t->cap * window / 1000 + t->read_max + 16 * FX_KiB;
  print_message("--download-rate %llu: %llu bytes in %llu ms (%.2f of the "
                "cap a second, %.2f of what is allowed)\n",
                (unsigned long long)t->cap, (unsigned long long)got,
                (unsigned long long)window,
                (double)got * 1000.0 / (double)window / (double)t->cap,
                (double)got / (double)allowed);
  if (got > allowed) {
    fail_msg("--download-rate %llu: %llu bytes came in the first %llu ms; "
             "at most %llu allowed",
             (unsigned long long)t->cap, (unsigned long long)got,
             (unsigned long long)window, (unsigned long long)allowed);
  }
  /* The download did run at its limit, so the bound meant something. */
  assert_true(got >= t->cap / 2);
  return 1;
}

static void download_rate_holds_from_the_first_second(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char a[PROC_PATH_MAX], b[PROC_PATH_MAX];
  struct timed t[2];
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/rate.bin", 4 * FX_MiB, 7, NULL, &sh);
  fx_mkdir(f, "a");
  fx_mkdir(f, "b");
  fx_path(f, a, sizeof(a), "a");
  fx_path(f, b, sizeof(b), "b");
  memset(t, 0, sizeof(t));
  /* 1 MiB/s, and 256 KiB/s, where the old bucket's 256 KiB floor was a
   * whole second's worth on top. */
  t[0].cap = FX_MiB;
  t[0].read_max = FX_MiB / 16;
  t[1].cap = 256 * FX_KiB;
  t[1].read_max = 16 * FX_KiB;
  t[0].t_start = proc_now_ms();
  t[0].p = fx_peer(f, "dl-1m", "dl-1m", "get", sh.link, "-o", a,
                   "--download-rate", "1M", NULL);
  t[1].t_start = proc_now_ms();
  /* -q changes nothing in --json output: the progress events come. */
  t[1].p = fx_peer(f, "dl-256k", "dl-256k", "get", sh.link, "-o", b,
                   "--download-rate", "256k", "-q", NULL);
  int done[2] = {0, 0};
  uint64_t deadline = proc_now_ms() + FX_START_MS;
  while (!(done[0] && done[1])) {
    for (int i = 0; i < 2; i++) {
      if (!done[i]) {
        timed_poll(&t[i]);
        done[i] = timed_check(&t[i]);
        if (!done[i] && !proc_alive(t[i].p)) {
          fail_msg("%s ended before two progress events", t[i].p->name);
        }
      }
    }
    if (proc_now_ms() > deadline) {
      fail_msg("no measure within %d ms", FX_START_MS);
    }
    proc_pause_ms(5);
  }
  for (int i = 0; i < 2; i++) {
    proc_signal(t[i].p, SIGTERM);
    fx_expect_exit(t[i].p, FX_EXIT_MS, 128 + SIGTERM);
  }
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_cli") != 0) {
    return 1;
  }
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
  const struct CMUnitTest tests[] = {
      T(options_take_equals_and_double_dash),
      T(short_forms_h_and_v),
      T(options_that_do_not_apply_are_refused),
      T(search_needs_words),
      T(output_folder_is_created),
      T(tracker_without_a_port_is_7070),
      T(shoal_tracker_stands_for_tracker),
      T(not_a_tracker_and_a_wrong_key_are_named_once),
      T(share_and_get_name_a_server_that_is_not_a_tracker),
      T(failures_print_one_line_and_no_totals),
      T(runs_that_stop_early_release_everything),
      T(left_out_files_are_json_events),
      T(names_with_control_characters_are_escaped),
      T(progress_line_fits_the_terminal),
      T(download_rate_holds_from_the_first_second),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
