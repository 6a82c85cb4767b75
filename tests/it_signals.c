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
 * The children here are started with proc_start_out (stdout on the pipe,
 * not on a file, which never blocks); teardown kills them by PID.
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
  struct proc p; /* its stdout is not a file: p.out_path is empty */
  int rfd;       /* the test's end of the child's stdout, or -1 */
  size_t filler;
  size_t filler_seen;
  char out[OUT_CAP + 1];
  size_t out_len;
  char last_wchan[64];
  char last_syscall[64];
};

/* Teardown hook: kills and reaps the child if it still runs, then frees
 * its record. */
static void held_free(void *arg) {
  struct held *h = arg;
  proc_kill(&h->p);
  if (h->rfd >= 0) {
    close(h->rfd);
  }
  free(h);
}

/* True once the child has ended (and is reaped). */
static int held_ended(struct held *h) {
  return !proc_alive(&h->p);
}

static void held_dump(const struct held *h) {
  fprintf(stderr, "---- child stdout after the filler (%zu bytes)\n%.*s\n",
          h->out_len, (int)h->out_len, h->out);
  proc_dump(&h->p);
}

/* Starts argv[0] with its stdout on a pipe of the smallest size, filled to
 * the brim, so that the child's first write to it blocks. stderr goes to
 * DIR/NAME.err. The child is killed at teardown. */
static struct held *held_start(struct fx *f, const char *name,
                               const char *const *argv) {
  struct held *h = calloc(1, sizeof(*h));
  int p[2];

  assert_non_null(h);
  h->rfd = -1;
  fx_on_teardown(f, held_free, h);
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

  assert_int_equal(proc_start_out(&h->p, f->dir, name, argv, p[1]), 0);
  close(p[1]);
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
    if (held_ended(h)) {
      held_dump(h);
      fail_msg("the child ended (status %d) before it wrote its ready line",
               h->p.status);
    }
    read_proc(h->p.pid, "wchan", h->last_wchan, sizeof(h->last_wchan));
    read_proc(h->p.pid, "syscall", h->last_syscall, sizeof(h->last_syscall));
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
  if (proc_wait(&h->p, timeout_ms) < 0) {
    held_dump(h);
    fail_msg("%s: still running %d ms after the signal", what, timeout_ms);
  }
  /* fx_finish looks at the children fx started; this one is checked here. */
  if (fx_sanitizer_report(&h->p) != NULL) {
    held_dump(h);
    fail_msg("%s: sanitizer report in its stderr", what);
  }
  if (h->p.status != 0) {
    held_dump(h);
    if (h->p.status > 128) {
      fail_msg("%s: died of signal %d (status %d) instead of stopping "
               "cleanly",
               what, h->p.status - 128, h->p.status);
    }
    fail_msg("%s: exited with status %d, expected 0", what, h->p.status);
  }
}

/* Sends SIGTERM once the child is blocked in its ready write, then reads
 * its output to the end: it must finish that write and exit 0. */
static void stop_while_held(struct held *h, const char *what) {
  held_wait_blocked(h, FX_START_MS);
  assert_int_equal(kill(h->p.pid, SIGTERM), 0);
  held_drain(h, FX_EXIT_MS);
  held_expect_clean_exit(h, FX_EXIT_MS, what);
}

/* Waits until the file at path contains needle while the child runs on. */
static void wait_log_has(struct held *h, const char *path, const char *needle,
                         int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  while (!tu_file_has(path, needle)) {
    if (held_ended(h)) {
      held_dump(h);
      fail_msg("the child ended (status %d) before it logged \"%s\"",
               h->p.status, needle);
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
  stop_while_held(h, "shoal-tracker");
  /* The blocked write was the ready output, and it was not lost. */
  assert_non_null(strstr(h->out, "listening on 127.0.0.1:"));
  assert_non_null(strstr(h->out, "tracker key "));
  /* It stopped through its handler, which logs the stop. */
  assert_true(tu_file_has(tp.log, "SIGTERM: stopping"));
  fx_finish(f);
}

static void tracker_sighup_while_saying_ready_keeps_it_running(void **state) {
  struct fx *f = *state;
  struct tracker_paths tp;
  struct held *h = start_held_tracker(f, &tp);
  held_wait_blocked(h, FX_START_MS);
  assert_int_equal(kill(h->p.pid, SIGHUP), 0);
  /* Reading the pipe lets the tracker finish its ready lines; it must then
   * handle the SIGHUP (reopen its log) and run on. */
  uint64_t deadline = proc_now_ms() + FX_START_MS;
  while (strstr(h->out, "tracker key ") == NULL) {
    if (!held_read_some(h) || proc_now_ms() >= deadline) {
      held_ended(h);
      held_dump(h);
      fail_msg("shoal-tracker did not finish its ready lines after a SIGHUP "
               "(%s %d)",
               h->p.reaped ? "exit status" : "still running, pid",
               h->p.reaped ? h->p.status : (int)h->p.pid);
    }
  }
  wait_log_has(h, tp.log, "SIGHUP: log reopened", FX_START_MS);
  assert_false(held_ended(h));
  assert_int_equal(kill(h->p.pid, SIGTERM), 0);
  held_drain(h, FX_EXIT_MS);
  held_expect_clean_exit(h, FX_EXIT_MS, "shoal-tracker");
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* shoal-peer: with --json its first output is the "listening" event; a
 * plain share prints only its link. */

/* Starts the tracker and a held share (home "home-NAME") of DIR/file,
 * 100 KiB written here from seed, with --json or else --quiet. */
static struct held *start_held_share(struct fx *f, const char *name,
                                     const char *file, uint64_t seed,
                                     int json) {
  char home[PROC_PATH_MAX];
  char path[PROC_PATH_MAX];
  char rel[128];
  const char *argv[MAX_ARGS];
  int n = 0;
  fx_start_tracker(f);
  fx_write_random(f, file, 100 * FX_KiB, seed, NULL);
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
  struct held *h = start_held_share(f, "json", "a.bin", 1, 1);
  stop_while_held(h, "shoal-peer share --json");
  assert_non_null(strstr(h->out, "\"event\":\"listening\""));
  fx_finish(f);
}

static void peer_sigterm_while_printing_the_link_stops_cleanly(void **state) {
  struct fx *f = *state;
  struct held *h = start_held_share(f, "plain", "b.bin", 2, 0);
  stop_while_held(h, "shoal-peer share");
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
