/* Tests for peer/maphash: hashing chunks from a mapping of a file gives the
 * digests that reading them does, and a file truncated while it is mapped
 * fails the hash with SHOAL_ECHANGED instead of killing the process, in
 * one thread or two at once and as many times as it happens; a SIGBUS that
 * is not maphash's still reaches whoever had it before (the default
 * action, another handler, or nothing when it was ignored).
 *
 * cmocka puts a handler of its own on SIGBUS for the length of each test,
 * one that does not chain to the one it replaces, and restores the one it
 * found after; main() installs maphash's handler before any test, and the
 * tests that provoke a SIGBUS in a guard put it back first (use_maphash).
 *
 * The SIGBUS handler is installed once per process, so each case of a
 * signal outside the guard runs in a fresh process: this program again,
 * with --sigbus-child MODE, which sets SIGBUS up as MODE says, installs
 * maphash's handler, raises or provokes a SIGBUS and says how it ended.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/chash.h"
#include "common/error.h"
#include "common/manifest.h"
#include "peer/manifest_build.h"
#include "peer/maphash.h"
#include "tests/lib/errassert.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"

#define PAGE 4096
/* One window of the most bytes, and some pages and bytes more. */
#define BIG_BYTES (MAPHASH_MAX_BYTES + 3 * PAGE + 1234)
#define SMALL_BYTES ((size_t)1 << 20)
#define TRUNCATIONS 200
#define CHILD_DEADLINE_MS 20000

/* Exit codes of a child whose SIGBUS went to the test's own handler: 40
 * for a raised one, 41 for a fault. */
#define CHILD_CHAINED_RAISE 40
#define CHILD_CHAINED_FAULT 41
#define CHILD_SURVIVED 0
#define CHILD_BROKEN 3
#define CHILD_NOT_SURVIVED (-1)

/* maphash's SIGBUS handler, as main() found it after maphash_init. */
static struct sigaction g_maphash_sa;

static void use_maphash(void) {
  assert_int_equal(sigaction(SIGBUS, &g_maphash_sa, NULL), 0);
}

struct fx {
  char dir[256];
  char big[300];
  int big_fd;
};

static int fx_setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  uint8_t *data = malloc(BIG_BYTES);
  assert_non_null(f);
  assert_non_null(data);
  tu_tmpdir(f->dir, sizeof(f->dir));
  tu_fill(data, BIG_BYTES, 17);
  tu_write_file(f->dir, "big", data, BIG_BYTES);
  free(data);
  tu_path(f->big, sizeof(f->big), f->dir, "big");
  f->big_fd = open(f->big, O_RDONLY | O_CLOEXEC);
  assert_true(f->big_fd >= 0);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  struct fx *f = *state;
  close(f->big_fd);
  tu_rmtree(f->dir);
  free(f);
  return 0;
}

/* Maps [off, off + len) of fd, hashes it in chunks of cs and checks every
 * digest against the one manifest_hash_chunk reads. */
static void check_against_reads(int fd, uint64_t off, size_t len, uint64_t cs,
                                uint8_t *buf) {
  size_t n = (size_t)((len + cs - 1) / cs);
  uint8_t *got = malloc(n * CHASH_BYTES);
  struct maphash_window w;

  assert_non_null(got);
  assert_err(maphash_map(&w, fd, off, len), 0);
  assert_int_equal(w.len, len);
  assert_err(maphash_chunks(&w, cs, got), 0);
  maphash_unmap(&w);
  assert_null(w.base);
  for (size_t i = 0; i < n; i++) {
    uint64_t at = i * cs;
    uint64_t l = len - at < cs ? len - at : cs;
    uint8_t want[CHASH_BYTES];
    assert_err(manifest_hash_chunk(fd, off + at, l, buf, want), 0);
    if (memcmp(got + i * CHASH_BYTES, want, CHASH_BYTES) != 0) {
      fail_msg("off %llu len %zu chunk %zu of %llu: digests differ",
               (unsigned long long)off, len, i, (unsigned long long)cs);
    }
  }
  free(got);
}

/* ---------------------------------------------------------------------- */
/* The digests. */

static void test_mapped_digests_equal_read_ones_at_many_offsets(void **state) {
  struct fx *f = *state;
  static const uint64_t offs[] = {
      0, 1, PAGE - 1, PAGE, PAGE + 1, 65536, (1u << 20) - 3, 5u << 20,
  };
  static const size_t lens[] = {
      1, PAGE - 1, PAGE, PAGE + 1, 16384, 16385, 100000, 3 * PAGE + 7,
  };
  static const uint64_t chunks[] = {16384, 65536, 3 * PAGE + 7};
  uint8_t *buf = malloc(MANIFEST_READ_BYTES);

  assert_non_null(buf);
  for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
    for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
      for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        check_against_reads(f->big_fd, offs[o], lens[l], chunks[c], buf);
      }
      /* To the end of the file: the last chunk is short. */
      check_against_reads(f->big_fd, offs[o],
                          BIG_BYTES - offs[o] > MAPHASH_MAX_BYTES
                              ? MAPHASH_MAX_BYTES
                              : BIG_BYTES - offs[o],
                          chunks[c], buf);
    }
  }
  free(buf);
}

static void test_windows_of_the_most_bytes_at_both_ends(void **state) {
  struct fx *f = *state;
  uint8_t *buf = malloc(MANIFEST_READ_BYTES);

  assert_non_null(buf);
  /* The first window, and the one that ends with the file, at the chunk
   * sizes a manifest uses (the largest is the whole window). */
  for (unsigned lg = MANIFEST_CHUNK_LOG2_MIN; lg <= MANIFEST_CHUNK_LOG2_MAX;
       lg += 5) {
    check_against_reads(f->big_fd, 0, MAPHASH_MAX_BYTES, (uint64_t)1 << lg,
                        buf);
    check_against_reads(f->big_fd, BIG_BYTES - MAPHASH_MAX_BYTES,
                        MAPHASH_MAX_BYTES, (uint64_t)1 << lg, buf);
  }
  /* The bytes after a window of the most bytes: a page and a bit. */
  check_against_reads(f->big_fd, MAPHASH_MAX_BYTES,
                      BIG_BYTES - MAPHASH_MAX_BYTES, 16384, buf);
  free(buf);
}

/* ---------------------------------------------------------------------- */
/* Truncation while mapped. */

/* Writes a file of SMALL_BYTES at path and opens it for writing. */
static int small_file(const char *path, uint64_t seed) {
  uint8_t *data = malloc(SMALL_BYTES);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  assert_non_null(data);
  assert_true(fd >= 0);
  tu_fill(data, SMALL_BYTES, seed);
  assert_int_equal(write(fd, data, SMALL_BYTES), (ssize_t)SMALL_BYTES);
  free(data);
  return fd;
}

/* Maps the whole small file, truncates it to keep bytes and hashes the
 * window in chunks of 16 KiB. Returns maphash_chunks's result; the digest
 * of the first chunk goes to first. */
static int hash_truncated(int fd, off_t keep, uint8_t first[CHASH_BYTES]) {
  uint8_t out[(SMALL_BYTES / 16384) * CHASH_BYTES];
  struct maphash_window w;
  int err = maphash_map(&w, fd, 0, SMALL_BYTES);

  if (err != 0) {
    return err;
  }
  if (ftruncate(fd, keep) != 0) {
    maphash_unmap(&w);
    return -1;
  }
  err = maphash_chunks(&w, 16384, out);
  maphash_unmap(&w);
  memcpy(first, out, CHASH_BYTES);
  return err;
}

static void test_file_truncated_after_mapping_is_ECHANGED(void **state) {
  struct fx *f = *state;
  char path[300];
  uint8_t first[CHASH_BYTES];
  uint8_t want[CHASH_BYTES];
  uint8_t *buf = malloc(MANIFEST_READ_BYTES);

  assert_non_null(buf);
  use_maphash();
  tu_path(path, sizeof(path), f->dir, "cut");
  /* To nothing, then to the middle of a page: the pages wholly past the
   * new end fault. */
  int fd = small_file(path, 1);
  assert_err(hash_truncated(fd, 0, first), SHOAL_ECHANGED);
  close(fd);

  fd = small_file(path, 2);
  assert_err(manifest_hash_chunk(fd, 0, 16384, buf, want), 0);
  assert_err(hash_truncated(fd, 300001, first), SHOAL_ECHANGED);
  /* The chunks before the fault were hashed from the file's bytes. */
  assert_memory_equal(first, want, CHASH_BYTES);
  close(fd);
  free(buf);
}

/* Truncates and hashes TRUNCATIONS times, growing the file back between,
 * and checks that a hash of the grown file then works. Returns the number
 * of rounds that did not go as they should (for threads, which must not
 * call cmocka's assertions). */
static unsigned truncate_over_and_over(const char *path, uint64_t seed) {
  uint8_t first[CHASH_BYTES];
  unsigned bad = 0;
  int fd = small_file(path, seed);

  for (unsigned i = 0; i < TRUNCATIONS; i++) {
    if (hash_truncated(fd, (off_t)(i * 4099) % PAGE, first) != SHOAL_ECHANGED) {
      bad++;
    }
    if (ftruncate(fd, SMALL_BYTES) != 0 ||
        hash_truncated(fd, SMALL_BYTES, first) != 0) {
      bad++;
    }
  }
  close(fd);
  return bad;
}

static void
test_repeated_truncations_each_fail_and_the_guard_resets(void **state) {
  struct fx *f = *state;
  char path[300];

  use_maphash();
  tu_path(path, sizeof(path), f->dir, "again");
  assert_int_equal(truncate_over_and_over(path, 3), 0);
}

struct racer {
  char path[300];
  uint64_t seed;
  unsigned bad;
};

static void *racer_main(void *arg) {
  struct racer *r = arg;
  r->bad = truncate_over_and_over(r->path, r->seed);
  return NULL;
}

static void test_two_threads_truncated_at_once_each_fail_alone(void **state) {
  struct fx *f = *state;
  struct racer r[2];
  pthread_t t[2];

  use_maphash();
  for (int i = 0; i < 2; i++) {
    memset(&r[i], 0, sizeof(r[i]));
    snprintf(r[i].path, sizeof(r[i].path), "%s/racer%d", f->dir, i);
    r[i].seed = 10 + (uint64_t)i;
    assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(r[i].bad, 0);
  }
}

/* ---------------------------------------------------------------------- */
/* A SIGBUS outside the guard, in a fresh process. */

static void chained(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  _exit(si->si_code > 0 ? CHILD_CHAINED_FAULT : CHILD_CHAINED_RAISE);
}

/* Touches a page of a mapping past the end of a file cut short, outside
 * any guard. */
static void fault_outside_guard(const char *dir) {
  char path[300];
  struct maphash_window w;
  int fd;

  snprintf(path, sizeof(path), "%s/child", dir);
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, 4 * PAGE) != 0 ||
      maphash_map(&w, fd, 0, 4 * PAGE) != 0 || ftruncate(fd, 0) != 0) {
    _exit(CHILD_BROKEN);
  }
  (void)*(const volatile uint8_t *)(w.data + 2 * PAGE);
}

/* The child: MODE is dfl, chain, ign (what SIGBUS did before maphash) or
 * asis (left as the process started), then -raise or -fault. Exits
 * CHILD_SURVIVED when the SIGBUS did not end it. */
static int child_main(const char *mode, const char *dir) {
  struct rlimit no_core = {0, 0};
  struct sigaction sa;

  (void)setrlimit(RLIMIT_CORE, &no_core);
  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  if (strncmp(mode, "chain", 5) == 0) {
    sa.sa_sigaction = chained;
    sa.sa_flags = SA_SIGINFO;
  } else {
    sa.sa_handler = strncmp(mode, "ign", 3) == 0 ? SIG_IGN : SIG_DFL;
  }
  if ((strncmp(mode, "asis", 4) != 0 && sigaction(SIGBUS, &sa, NULL) != 0) ||
      maphash_init() != 0) {
    return CHILD_BROKEN;
  }
  if (strstr(mode, "-fault") != NULL) {
    fault_outside_guard(dir);
  } else {
    (void)raise(SIGBUS);
  }
  return CHILD_SURVIVED;
}

/* Runs this program as a child in MODE and checks how it ended: want is
 * its exit code, or 128 + the signal that ended it, or CHILD_NOT_SURVIVED
 * for any end but CHILD_SURVIVED. */
static void expect_child(const char *dir, const char *mode, int want) {
  char self[PROC_PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  struct proc p;
  int status;

  assert_true(n > 0);
  self[n] = '\0';
  const char *const argv[] = {self, "--sigbus-child", mode, dir, NULL};
  assert_int_equal(proc_start(&p, dir, mode, argv), 0);
  status = proc_wait(&p, CHILD_DEADLINE_MS);
  if (status < 0) {
    proc_kill(&p);
    fail_msg("child %s still running at the deadline", mode);
  }
  if (want == CHILD_NOT_SURVIVED ? status == CHILD_SURVIVED : status != want) {
    proc_dump(&p);
    fail_msg("child %s ended with %d, want %d", mode, status, want);
  }
}

static void test_sigbus_outside_guard_gets_the_default_action(void **state) {
  struct fx *f = *state;
  expect_child(f->dir, "dfl-raise", 128 + SIGBUS);
  expect_child(f->dir, "dfl-fault", 128 + SIGBUS);
}

/* With SIGBUS as the process found it: the default action, or under
 * AddressSanitizer its handler, which reports the signal and exits. */
static void test_sigbus_outside_guard_is_not_swallowed(void **state) {
  struct fx *f = *state;
  expect_child(f->dir, "asis-raise", CHILD_NOT_SURVIVED);
  expect_child(f->dir, "asis-fault", CHILD_NOT_SURVIVED);
}

static void test_sigbus_outside_guard_reaches_the_handler_before(void **state) {
  struct fx *f = *state;
  expect_child(f->dir, "chain-raise", CHILD_CHAINED_RAISE);
  expect_child(f->dir, "chain-fault", CHILD_CHAINED_FAULT);
}

static void test_ignored_sigbus_stays_ignored_unless_a_fault(void **state) {
  struct fx *f = *state;
  expect_child(f->dir, "ign-raise", CHILD_SURVIVED);
  expect_child(f->dir, "ign-fault", 128 + SIGBUS);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--sigbus-child") == 0) {
    return child_main(argv[2], argv[3]);
  }
  if (maphash_init() != 0 || sigaction(SIGBUS, NULL, &g_maphash_sa) != 0) {
    fprintf(stderr, "test_maphash: cannot install the SIGBUS handler\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
      T(test_mapped_digests_equal_read_ones_at_many_offsets),
      T(test_windows_of_the_most_bytes_at_both_ends),
      T(test_file_truncated_after_mapping_is_ECHANGED),
      T(test_repeated_truncations_each_fail_and_the_guard_resets),
      T(test_two_threads_truncated_at_once_each_fail_alone),
      T(test_sigbus_outside_guard_gets_the_default_action),
      T(test_sigbus_outside_guard_is_not_swallowed),
      T(test_sigbus_outside_guard_reaches_the_handler_before),
      T(test_ignored_sigbus_stays_ignored_unless_a_fault),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
