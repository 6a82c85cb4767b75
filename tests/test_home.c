/* Unit tests for peer/home.c: where the home folder is, what is made in
 * it, its lock, the identity kept there, and a get's output folder.
 *
 * Every failure is checked for what it leaves behind, because a run that
 * stops at one must not keep anything open: home_open that fails after
 * taking the lock (a key that others can read, a corrupt key) must close
 * the lock's descriptor and release the lock, which the test sees from the
 * descriptors of its own process (/proc/self/fd) and from a child process
 * that then takes the lock. Before home.c, run() returned from those two
 * failures (and from an -o that is a file) with the descriptor open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/identity.h"
#include "common/log.h"
#include "peer/home.h"
#include "tests/lib/testutil.h"
#include "tests/lib/bytes.h"

static char g_dir[512];

static int setup(void **state) {
  (void)state;
  tu_tmpdir(g_dir, sizeof(g_dir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rmtree(g_dir);
  return 0;
}

static void path_of(char *out, size_t cap, const char *rel) {
  tu_path(out, cap, g_dir, rel);
}

/* Descriptors this process has open now. */
static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  assert_non_null(d);
  while (readdir(d) != NULL) {
    n++;
  }
  closedir(d);
  return n;
}

/* 1 when another process can take the lock of home now. */
static int lock_is_free(const char *home) {
  char path[HOME_PATH_BYTES + 16];
  snprintf(path, sizeof(path), "%s/lock", home);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct flock fl;
    int fd = open(path, O_RDWR);
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    _exit(fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* A child that holds the lock of home, with "4242" written in it, until
 * holder_stop. */
struct holder {
  pid_t pid;
  int release; /* write end: closing it ends the child */
};

static void holder_start(struct holder *h, const char *home) {
  char path[HOME_PATH_BYTES + 16];
  int ready[2], release[2];
  snprintf(path, sizeof(path), "%s/lock", home);
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(release), 0);
  h->pid = fork();
  assert_true(h->pid >= 0);
  if (h->pid == 0) {
    struct flock fl;
    char c;
    close(ready[0]);
    close(release[1]);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd < 0 || fcntl(fd, F_SETLK, &fl) != 0 || ftruncate(fd, 0) != 0 ||
        write(fd, "4242\n", 5) != 5 || write(ready[1], "r", 1) != 1) {
      _exit(1);
    }
    while (read(release[0], &c, 1) > 0) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  char c;
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  h->release = release[1];
}

static void holder_stop(struct holder *h) {
  int st;
  close(h->release);
  assert_int_equal(waitpid(h->pid, &st, 0), h->pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ------------------------------------------------------------------------ */

/* Sets the environment variable name to value, or unsets it for NULL. */
static void set_env(const char *name, const char *value) {
  if (value != NULL) {
    assert_int_equal(setenv(name, value, 1), 0);
  } else {
    assert_int_equal(unsetenv(name), 0);
  }
}

/* A malloc'd copy of the environment variable name, or NULL when unset. */
static char *env_copy(const char *name) {
  return getenv(name) ? strdup(getenv(name)) : NULL;
}

static void default_home_follows_xdg_then_home(void **state) {
  static const struct {
    const char *xdg; /* XDG_DATA_HOME, NULL: unset */
    const char *home;
    const char *want;
  } cases[] = {
      {"/x/data", "/home/u", "/x/data/shoal"},
      /* A relative XDG_DATA_HOME is ignored, as the spec says. */
      {"rel", "/home/u", "/home/u/.local/share/shoal"},
      {NULL, "/home/u", "/home/u/.local/share/shoal"},
      {NULL, "rel", "./.shoal"},
      {NULL, NULL, "./.shoal"},
  };
  char out[HOME_PATH_BYTES];
  char *old_xdg = env_copy("XDG_DATA_HOME");
  char *old_home = env_copy("HOME");
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    set_env("XDG_DATA_HOME", cases[i].xdg);
    set_env("HOME", cases[i].home);
    assert_int_equal(home_default(out, sizeof(out)), 0);
    if (strcmp(out, cases[i].want) != 0) {
      fail_msg("XDG_DATA_HOME %s, HOME %s: got %s, want %s",
               cases[i].xdg ? cases[i].xdg : "unset",
               cases[i].home ? cases[i].home : "unset", out, cases[i].want);
    }
  }
  /* Too long for the room: refused, not cut. */
  set_env("XDG_DATA_HOME", "/x/data");
  assert_int_equal(home_default(out, 13), -1);
  assert_int_equal(home_default(out, 14), 0);
  set_env("XDG_DATA_HOME", old_xdg);
  set_env("HOME", old_home);
  free(old_xdg);
  free(old_home);
}

static void open_makes_the_folders_and_a_key_once(void **state) {
  char home[512], sub[600], msg[HOME_MSG_BYTES];
  struct home h;
  struct identity id, again;
  struct stat st;
  (void)state;
  path_of(home, sizeof(home), "a/b/home");
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(home_open(&h, home, 0, &id, msg, sizeof(msg)), 0);
  assert_string_equal(h.path, home);
  assert_false(h.locked);
  static const char *const made[] = {"", "/resume", "/manifests"};
  for (int i = 0; i < 3; i++) {
    snprintf(sub, sizeof(sub), "%s%s", home, made[i]);
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700 & ~mask);
  }
  snprintf(sub, sizeof(sub), "%s/identity.key", home);
  assert_int_equal(stat(sub, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  home_close(&h);
  /* The second run loads the same key. */
  assert_int_equal(home_open(&h, home, 0, &again, msg, sizeof(msg)), 0);
  assert_memory_equal(id.pk, again.pk, sizeof(id.pk));
  home_close(&h);
  identity_close(&id);
  identity_close(&again);
}

static void lock_holds_the_pid_until_close(void **state) {
  char home[512], path[600], msg[HOME_MSG_BYTES];
  struct home h;
  struct identity id;
  (void)state;
  path_of(home, sizeof(home), "home");
  int before = open_fds();
  assert_int_equal(home_open(&h, home, 1, &id, msg, sizeof(msg)), 0);
  assert_true(h.locked);
  assert_int_equal(open_fds(), before + 1);
  assert_false(lock_is_free(home));
  snprintf(path, sizeof(path), "%s/lock", home);
  size_t n = 0;
  char *text = (char *)tu_read_file(path, &n);
  char want[32];
  snprintf(want, sizeof(want), "%ld\n", (long)getpid());
  assert_non_null(text);
  assert_int_equal(n, strlen(want));
  assert_memory_equal(text, want, n);
  free(text);
  home_close(&h);
  identity_close(&id);
  assert_int_equal(open_fds(), before);
  assert_true(lock_is_free(home));
  /* Closing again, or closing a zeroed one, does nothing. */
  home_close(&h);
  memset(&h, 0, sizeof(h));
  home_close(&h);
  assert_int_equal(open_fds(), before);
}

static void a_home_locked_by_another_process_is_refused(void **state) {
  char home[512], msg[HOME_MSG_BYTES], want[HOME_MSG_BYTES];
  struct home h;
  struct identity id;
  struct holder other;
  (void)state;
  path_of(home, sizeof(home), "home");
  assert_int_equal(home_make_dirs(home, 0700), 0);
  holder_start(&other, home);
  int before = open_fds();
  assert_int_equal(home_open(&h, home, 1, &id, msg, sizeof(msg)), UV_EBUSY);
  snprintf(want, sizeof(want),
           "another shoal-peer (pid 4242) uses %s — give this one its own "
           "--home DIR",
           home);
  assert_string_equal(msg, want);
  assert_int_equal(open_fds(), before);
  assert_false(h.locked);
  assert_true(bytes_all_zero(&id, sizeof(id)));
  home_close(&h);
  /* Without the lock (id, search) the home is used all the same. */
  assert_int_equal(home_open(&h, home, 0, &id, msg, sizeof(msg)), 0);
  home_close(&h);
  identity_close(&id);
  holder_stop(&other);
}

/* The failures after the lock is taken: nothing stays open or locked. */
static void a_bad_key_releases_the_lock(void **state) {
  char home[512], key[600], msg[HOME_MSG_BYTES], want[HOME_MSG_BYTES];
  struct home h;
  struct identity id;
  (void)state;
  path_of(home, sizeof(home), "home");
  assert_int_equal(home_open(&h, home, 0, &id, msg, sizeof(msg)), 0);
  home_close(&h);
  identity_close(&id);
  snprintf(key, sizeof(key), "%s/identity.key", home);

  /* Readable by others. */
  assert_int_equal(chmod(key, 0644), 0);
  int before = open_fds();
  memset(&id, 0xa5, sizeof(id));
  assert_int_equal(home_open(&h, home, 1, &id, msg, sizeof(msg)),
                   SHOAL_EKEYPERM);
  snprintf(want, sizeof(want),
           "%s can be read by other users — run 'chmod 600 %s'", key, key);
  assert_string_equal(msg, want);
  assert_int_equal(open_fds(), before);
  assert_true(lock_is_free(home));
  assert_true(bytes_all_zero(&id, sizeof(id)));

  /* Corrupt. */
  tu_write_file(home, "identity.key", "not a key", 9);
  assert_int_equal(chmod(key, 0600), 0);
  assert_int_equal(home_open(&h, home, 1, &id, msg, sizeof(msg)),
                   SHOAL_EKEYFILE);
  snprintf(want, sizeof(want), "cannot load %s: %s", key,
           shoal_strerror(SHOAL_EKEYFILE));
  assert_string_equal(msg, want);
  assert_int_equal(open_fds(), before);
  assert_true(lock_is_free(home));
  home_close(&h);
}

static void a_home_that_cannot_be_made_is_named(void **state) {
  char home[512], msg[HOME_MSG_BYTES], want[HOME_MSG_BYTES];
  struct home h;
  struct identity id;
  (void)state;
  tu_write_file(g_dir, "file", "x", 1);
  path_of(home, sizeof(home), "file/home");
  int before = open_fds();
  assert_int_equal(home_open(&h, home, 1, &id, msg, sizeof(msg)), -ENOTDIR);
  snprintf(want, sizeof(want), "cannot create %s: %s — choose another --home",
           home, shoal_strerror(-ENOTDIR));
  assert_string_equal(msg, want);
  assert_int_equal(open_fds(), before);
  home_close(&h);
}

static void the_default_home_is_used_without_dir(void **state) {
  char xdg[512], want[600], msg[HOME_MSG_BYTES];
  struct home h;
  struct identity id;
  char *old = env_copy("XDG_DATA_HOME");
  (void)state;
  path_of(xdg, sizeof(xdg), "xdg");
  set_env("XDG_DATA_HOME", xdg);
  int rc = home_open(&h, NULL, 0, &id, msg, sizeof(msg));
  set_env("XDG_DATA_HOME", old);
  free(old);
  assert_int_equal(rc, 0);
  snprintf(want, sizeof(want), "%s/shoal", xdg);
  assert_string_equal(h.path, want);
  home_close(&h);
  identity_close(&id);
}

static void make_dirs_makes_parents_and_refuses_long_paths(void **state) {
  char path[512];
  char *longest = malloc(HOME_PATH_BYTES + 1);
  struct stat st;
  (void)state;
  assert_non_null(longest);
  path_of(path, sizeof(path), "p/q/r/");
  assert_int_equal(home_make_dirs(path, 0700), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  /* Again: it is there already. */
  assert_int_equal(home_make_dirs(path, 0700), 0);
  assert_int_equal(home_make_dirs("", 0700), -ENAMETOOLONG);
  memset(longest, 'x', HOME_PATH_BYTES);
  longest[HOME_PATH_BYTES] = '\0';
  assert_int_equal(home_make_dirs(longest, 0700), -ENAMETOOLONG);
  free(longest);
}

static void out_dir_is_made_or_named(void **state) {
  char dir[512], msg[4400], want[4400];
  struct stat st;
  (void)state;
  mode_t mask = umask(0);
  umask(mask);
  path_of(dir, sizeof(dir), "new/a/b");
  assert_int_equal(home_out_dir(dir, msg, sizeof(msg)), 0);
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0755 & ~mask);
  /* One that exists is fine. */
  assert_int_equal(home_out_dir(dir, msg, sizeof(msg)), 0);

  tu_write_file(g_dir, "plain", "x", 1);
  path_of(dir, sizeof(dir), "plain");
  assert_int_equal(home_out_dir(dir, msg, sizeof(msg)), UV_ENOTDIR);
  snprintf(want, sizeof(want), "%s is not a folder — choose another -o DIR",
           dir);
  assert_string_equal(msg, want);
  path_of(dir, sizeof(dir), "plain/sub");
  assert_int_equal(home_out_dir(dir, msg, sizeof(msg)), UV_ENOTDIR);
  snprintf(want, sizeof(want), "%s is not a folder — choose another -o DIR",
           dir);
  assert_string_equal(msg, want);

  if (geteuid() != 0) {
    /* Root may write anywhere, so this one is for other users. */
    path_of(dir, sizeof(dir), "ro");
    assert_int_equal(mkdir(dir, 0500), 0);
    path_of(dir, sizeof(dir), "ro/sub");
    assert_int_equal(home_out_dir(dir, msg, sizeof(msg)), UV_EACCES);
    snprintf(want, sizeof(want), "cannot create %s: %s — choose another -o DIR",
             dir, shoal_strerror(UV_EACCES));
    assert_string_equal(msg, want);
  }
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(default_home_follows_xdg_then_home),
      T(open_makes_the_folders_and_a_key_once),
      T(lock_holds_the_pid_until_close),
      T(a_home_locked_by_another_process_is_refused),
      T(a_bad_key_releases_the_lock),
      T(a_home_that_cannot_be_made_is_named),
      T(the_default_home_is_used_without_dir),
      T(make_dirs_makes_parents_and_refuses_long_paths),
      T(out_dir_is_made_or_named),
  };
#undef T
  if (sodium_init() < 0) {
    return 1;
  }
  log_set_level(LOG_WARN); /* "created a new identity" is not news here */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
