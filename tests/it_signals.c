/* Integration tests: a binary that is told to stop while it says it is
 * ready must stop cleanly, not die of the signal.
 *
 * A process that prints its ready line before it installs its signal
 * handlers dies of a SIGTERM that comes right after the line (status 143),
 * which is what a supervisor or a test does as soon as it reads it. Rather
 * than loop hoping to hit that window, each test holds the binary inside
 * it: the child's standard output is a pipe that the test has already
 * filled, so the child blocks in its very first write, the one that carries
 * its ready line. The test waits (with a deadline) until /proc shows the
 * child blocked in that write, sends the signal, then drains the pipe; the
 * child must then finish its output and exit 0.
 *
 * The children here are started by this file's own small spawn (proc.h
 * sends output to files, which never block); teardown kills them by PID.
 */
/* pipe2 and F_SETPIPE_SZ are Linux's. */
#define _GNU_SOURCE
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/fx.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"

/* The byte the test fills the pipe with, so that the child's own output
 * is whatever follows the filler. */
#define FILLER '#'
/* What the test keeps of the child's output after the filler; the ready
 * lines and a few log or JSON lines fit easily. */
#define OUT_CAP (64u << 10)
/* Arguments of one child, the executable included. */
#define MAX_ARGS 32
/* How often /proc and the pipe are polled while a deadline runs. */
#define POLL_MS 10

/* A child whose standard output is a pipe that the test reads. */
struct held {
  pid_t pid; /* 0 when not started */
  int reaped;
  int status; /* once reaped: the exit code, or 128 + the signal */
  int rfd;    /* the test's end of the child's stdout, or -1 */
  size_t filler;
  size_t filler_seen;
  char out[OUT_CAP + 1];
  size_t out_len;
  char err_path[PROC_PATH_MAX];
  char last_wchan[64];
  char last_syscall[64];
};

/* Teardown hook: kills and reaps the child if it still runs, then frees
 * its record. */
static void held_free(void *arg) {
  struct held *h = arg;
  if (h->pid > 0 && !h->reaped) {
    int st;
    kill(h->pid, SIGKILL);
    while (waitpid(h->pid, &st, 0) < 0 && errno == EINTR) {
    }
    h->reaped = 1;
    h->status = 128 + SIGKILL;
  }
  if (h->rfd >= 0) {
    close(h->rfd);
  }
  free(h);
}

static int held_try_reap(struct held *h) {
  int st;
  if (h->reaped) {
    return 1;
  }
  pid_t r = waitpid(h->pid, &st, WNOHANG);
  if (r == h->pid) {
    h->reaped = 1;
    h->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  return h->reaped;
}

static void held_dump(const struct held *h) {
  size_t n;
  uint8_t *err = tu_read_file(h->err_path, &n);
  fprintf(stderr, "---- child stdout after the filler (%zu bytes)\n%.*s\n",
          h->out_len, (int)h->out_len, h->out);
  if (err != NULL) {
    size_t from = n > 8192 ? n - 8192 : 0;
    fprintf(stderr, "---- child stderr (tail)\n%.*s\n", (int)(n - from),
            (const char *)err + from);
    free(err);
  }
}

/* Starts argv[0] with its stdout on a pipe of the smallest size, filled to
 * the brim, so that the child's first write to it blocks. stderr goes to
 * DIR/NAME.err. The child is killed at teardown. */
static struct held *held_start(struct fx *f, const char *name,
                               const char *const *argv) {
  struct held *h = calloc(1, sizeof(*h));
  char *args[MAX_ARGS + 1];
  char rel[128];
  int p[2];
  int n = 0;
  pid_t parent = getpid();

  assert_non_null(h);
  h->rfd = -1;
  fx_on_teardown(f, held_free, h);
  snprintf(rel, sizeof(rel), "%s.err", name);
  fx_path(f, h->err_path, sizeof(h->err_path), rel);
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  h->rfd = p[0];
  /* The kernel rounds this up to its smallest pipe, one page. */
  assert_true(fcntl(p[1], F_SETPIPE_SZ, 1) > 0);
  /* Fill it without blocking, then make the child's end blocking again
   * (the flag belongs to the open file both ends of the fork share). */
  assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
  for (;;) {
    char c = FILLER;
    ssize_t w = write(p[1], &c, 1);
    if (w == 1) {
      h->filler++;
      continue;
    }
    assert_true(w < 0 && errno == EAGAIN);
    break;
  }
  assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
  assert_true(h->filler > 0);

  /* Copies made before the fork: the child must not allocate. */
  while (argv[n] != NULL) {
    assert_true(n < MAX_ARGS);
    args[n] = strdup(argv[n]);
    assert_non_null(args[n]);
    n++;
  }
  args[n] = NULL;
  int err = open(h->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(err >= 0 && in >= 0);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(127);
    }
    signal(SIGPIPE, SIG_DFL);
    dup2(in, 0);
    dup2(p[1], 1);
    dup2(err, 2);
    execv(args[0], args);
    static const char msg[] = "it_signals: exec failed\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    _exit(127);
  }
  close(p[1]);
  close(err);
  close(in);
  for (int i = 0; i < n; i++) {
    free(args[i]);
  }
  assert_true(pid > 0);
  h->pid = pid;
  return h;
}

/* Reads the first line of /proc/PID/NAME into out ("" when unreadable). */
static void read_proc(pid_t pid, const char *name, char *out, size_t cap) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
  out[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  ssize_t r = read(fd, out, cap - 1);
  close(fd);
  out[r > 0 ? r : 0] = '\0';
  out[strcspn(out, "\n")] = '\0';
}

/* Waits until the child sleeps in a write to its stdout pipe: wchan names
 * the kernel's pipe write ("pipe_write", "anon_pipe_write"), or the
 * syscall file shows write (1 on x86-64) to descriptor 1. */
static void held_wait_blocked(struct held *h, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    if (held_try_reap(h)) {
      held_dump(h);
      fail_msg("the child ended (status %d) before it wrote its ready line",
               h->status);
    }
    read_proc(h->pid, "wchan", h->last_wchan, sizeof(h->last_wchan));
    read_proc(h->pid, "syscall", h->last_syscall, sizeof(h->last_syscall));
    if (strstr(h->last_wchan, "pipe_write") != NULL ||
        strncmp(h->last_syscall, "1 0x1 ", 6) == 0) {
      return;
    }
    if (proc_now_ms() >= deadline) {
      held_dump(h);
      fail_msg("the child did not block writing its stdout within %d ms "
               "(wchan \"%s\", syscall \"%s\")",
               timeout_ms, h->last_wchan, h->last_syscall);
    }
    proc_pause_ms(POLL_MS);
  }
}

/* Reads what the child wrote to its stdout within POLL_MS, keeping what
 * follows the filler. Returns 0 at end of file (the child exited), else 1. */
static int held_read_some(struct held *h) {
  struct pollfd pfd = {h->rfd, POLLIN, 0};
  char buf[4096];
  if (poll(&pfd, 1, POLL_MS) <= 0) {
    return 1;
  }
  ssize_t n = read(h->rfd, buf, sizeof(buf));
  if (n == 0) {
    return 0;
  }
  assert_true(n > 0 || errno == EINTR);
  for (ssize_t i = 0; i < n; i++) {
    if (h->filler_seen < h->filler) {
      h->filler_seen++;
    } else if (h->out_len < OUT_CAP) {
      h->out[h->out_len++] = buf[i];
    }
  }
  h->out[h->out_len] = '\0';
  return 1;
}

/* Reads the child's stdout until it is closed (the child exited). */
static void held_drain(struct held *h, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  while (held_read_some(h)) {
    if (proc_now_ms() >= deadline) {
      held_dump(h);
      fail_msg("the child's stdout was still open after %d ms", timeout_ms);
    }
  }
}

/* Waits for the child to exit and requires status 0. */
static void held_expect_clean_exit(struct held *h, int timeout_ms,
                                   const char *what) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  while (!held_try_reap(h)) {
    if (proc_now_ms() >= deadline) {
      held_dump(h);
      fail_msg("%s: still running %d ms after the signal", what, timeout_ms);
    }
    proc_pause_ms(POLL_MS);
  }
  /* fx_finish looks at the children fx started; this one is checked here. */
  static const char *const reports[] = {
      "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"};
  size_t n;
  uint8_t *err = tu_read_file(h->err_path, &n);
  char *text = err != NULL ? realloc(err, n + 1) : NULL;
  if (text != NULL) {
    text[n] = '\0';
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
      if (strstr(text, reports[i]) != NULL) {
        free(text);
        held_dump(h);
        fail_msg("%s: sanitizer report in its stderr", what);
      }
    }
    free(text);
  } else {
    free(err);
  }
  if (h->status != 0) {
    held_dump(h);
    if (h->status > 128) {
      fail_msg("%s: died of signal %d (status %d) instead of stopping "
               "cleanly",
               what, h->status - 128, h->status);
    }
    fail_msg("%s: exited with status %d, expected 0", what, h->status);
  }
}

/* Waits until the file at path contains needle while the child runs on. */
static void wait_log_has(struct held *h, const char *path, const char *needle,
                         int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    size_t n;
    uint8_t *data = tu_read_file(path, &n);
    int found = 0;
    if (data != NULL) {
      char *s = realloc(data, n + 1);
      assert_non_null(s);
      s[n] = '\0';
      found = strstr(s, needle) != NULL;
      free(s);
    }
    if (found) {
      return;
    }
    if (held_try_reap(h)) {
      held_dump(h);
      fail_msg("the child ended (status %d) before it logged \"%s\"", h->status,
               needle);
    }
    if (proc_now_ms() >= deadline) {
      held_dump(h);
      fail_msg("%s: no \"%s\" within %d ms", path, needle, timeout_ms);
    }
    proc_pause_ms(POLL_MS);
  }
}

/* ------------------------------------------------------------------------ */
/* shoal-tracker: its ready lines are "listening on ..." and "tracker key". */

struct tracker_paths {
  char exe[PROC_PATH_MAX];
  char key[PROC_PATH_MAX];
  char log[PROC_PATH_MAX];
};

static struct held *start_held_tracker(struct fx *f, struct tracker_paths *tp) {
  const char *bin = getenv("SHOAL_BIN");
  snprintf(tp->exe, sizeof(tp->exe), "%s/shoal-tracker",
           bin && bin[0] ? bin : "build/bin");
  fx_path(f, tp->key, sizeof(tp->key), "tracker.key");
  fx_path(f, tp->log, sizeof(tp->log), "tracker.log");
  const char *argv[] = {tp->exe, "--listen",   "127.0.0.1:0", "--key",
                        tp->key, "--log-file", tp->log,       "--log-level",
                        "debug", NULL};
  return held_start(f, "tracker", argv);
}

static void tracker_sigterm_while_saying_ready_stops_cleanly(void **state) {
  struct fx *f = *state;
  struct tracker_paths tp;
  struct held *h = start_held_tracker(f, &tp);
  held_wait_blocked(h, FX_START_MS);
  assert_int_equal(kill(h->pid, SIGTERM), 0);
  held_drain(h, FX_EXIT_MS);
  held_expect_clean_exit(h, FX_EXIT_MS, "shoal-tracker");
  /* The blocked write was the ready output, and it was not lost. */
  assert_non_null(strstr(h->out, "listening on 127.0.0.1:"));
  assert_non_null(strstr(h->out, "tracker key "));
  /* It stopped through its handler, which logs the stop. */
  size_t n;
  uint8_t *log = tu_read_file(tp.log, &n);
  assert_non_null(log);
  assert_non_null(memmem(log, n, "SIGTERM: stopping", 17));
  free(log);
  fx_finish(f);
}

static void tracker_sighup_while_saying_ready_keeps_it_running(void **state) {
  struct fx *f = *state;
  struct tracker_paths tp;
  struct held *h = start_held_tracker(f, &tp);
  held_wait_blocked(h, FX_START_MS);
  assert_int_equal(kill(h->pid, SIGHUP), 0);
  /* Reading the pipe lets the tracker finish its ready lines; it must then
   * handle the SIGHUP (reopen its log) and run on. */
  uint64_t deadline = proc_now_ms() + FX_START_MS;
  while (strstr(h->out, "tracker key ") == NULL) {
    if (!held_read_some(h) || proc_now_ms() >= deadline) {
      held_try_reap(h);
      held_dump(h);
      fail_msg("shoal-tracker did not finish its ready lines after a SIGHUP "
               "(%s %d)",
               h->reaped ? "exit status" : "still running, pid",
               h->reaped ? h->status : (int)h->pid);
    }
  }
  wait_log_has(h, tp.log, "SIGHUP: log reopened", FX_START_MS);
  assert_false(held_try_reap(h));
  assert_int_equal(kill(h->pid, SIGTERM), 0);
  held_drain(h, FX_EXIT_MS);
  held_expect_clean_exit(h, FX_EXIT_MS, "shoal-tracker");
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* shoal-peer: with --json its first output is the "listening" event; a
 * plain share prints only its link. */

static struct held *start_held_peer(struct fx *f, const char *name,
                                    const char *file, int json) {
  char home[PROC_PATH_MAX];
  char path[PROC_PATH_MAX];
  char rel[128];
  const char *argv[MAX_ARGS];
  int n = 0;
  snprintf(rel, sizeof(rel), "home-%s", name);
  fx_mkdir(f, rel);
  fx_path(f, home, sizeof(home), rel);
  fx_path(f, path, sizeof(path), file);
  argv[n++] = f->bin;
  argv[n++] = "share";
  argv[n++] = path;
  argv[n++] = "--tracker";
  argv[n++] = f->tracker_addr;
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  argv[n++] = "--home";
  argv[n++] = home;
  argv[n++] = "--log-level";
  argv[n++] = "info";
  argv[n++] = json ? "--json" : "--quiet";
  argv[n] = NULL;
  return held_start(f, name, argv);
}

static void peer_sigterm_while_saying_listening_stops_cleanly(void **state) {
  struct fx *f = *state;
  fx_start_tracker(f);
  fx_write_random(f, "a.bin", 100 * FX_KiB, 1, NULL);
  struct held *h = start_held_peer(f, "json", "a.bin", 1);
  held_wait_blocked(h, FX_START_MS);
  assert_int_equal(kill(h->pid, SIGTERM), 0);
  held_drain(h, FX_EXIT_MS);
  held_expect_clean_exit(h, FX_EXIT_MS, "shoal-peer share --json");
  assert_non_null(strstr(h->out, "\"event\":\"listening\""));
  fx_finish(f);
}

static void peer_sigterm_while_printing_the_link_stops_cleanly(void **state) {
  struct fx *f = *state;
  fx_start_tracker(f);
  fx_write_random(f, "b.bin", 100 * FX_KiB, 2, NULL);
  struct held *h = start_held_peer(f, "plain", "b.bin", 0);
  held_wait_blocked(h, FX_START_MS);
  assert_int_equal(kill(h->pid, SIGTERM), 0);
  held_drain(h, FX_EXIT_MS);
  held_expect_clean_exit(h, FX_EXIT_MS, "shoal-peer share");
  assert_true(strncmp(h->out, "shoal:", 6) == 0);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_signals") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          tracker_sigterm_while_saying_ready_stops_cleanly, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          tracker_sighup_while_saying_ready_keeps_it_running, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          peer_sigterm_while_saying_listening_stops_cleanly, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          peer_sigterm_while_printing_the_link_stops_cleanly, fx_setup,
          fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
