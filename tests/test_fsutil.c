/* Tests for peer/fsutil: walking paths without following symbolic links,
 * reading, emptying, pruning and removing folders, making folders,
 * preallocating, renaming without replacing, the arithmetic of free space,
 * comparing a file with what was hashed, and what the kernel tells about
 * the umask and flock() holders.
 *
 * The hostile cases come first in each test: a symbolic link planted where
 * a folder or a file belongs, leading out of the folder at hand, must
 * never be followed, and what it points at must stay as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/manifest.h"
#include "peer/fsutil.h"
#include "tests/lib/testutil.h"

#define PATH_CAP 4096

struct fx {
  char root[PATH_CAP];
  char in[PATH_CAP];  /* the folder the helpers work in */
  char out[PATH_CAP]; /* outside it: where planted links point */
  int in_fd;
};

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  tu_tmpdir(f->root, sizeof(f->root));
  tu_path(f->in, sizeof(f->in), f->root, "in");
  tu_path(f->out, sizeof(f->out), f->root, "out");
  assert_int_equal(mkdir(f->in, 0755), 0);
  assert_int_equal(mkdir(f->out, 0755), 0);
  tu_write_file(f->out, "secret", "keep", 4);
  f->in_fd = open(f->in, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(f->in_fd >= 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  close(f->in_fd);
  tu_rmtree(f->root);
  free(f);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Helpers */

static void at(char *out, const struct fx *f, const char *rel) {
  tu_path(out, PATH_CAP, f->in, rel);
}

static int exists_in(const struct fx *f, const char *rel) {
  struct stat st;
  return fstatat(f->in_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static mode_t kind_in(const struct fx *f, const char *rel) {
  struct stat st;
  assert_int_equal(fstatat(f->in_fd, rel, &st, AT_SYMLINK_NOFOLLOW), 0);
  return st.st_mode & S_IFMT;
}

/* A symbolic link at rel (inside) to target. */
static void plant_link(const struct fx *f, const char *rel,
                       const char *target) {
  assert_int_equal(symlinkat(target, f->in_fd, rel), 0);
}

/* The outside folder still holds exactly its one file, unchanged. */
static void assert_outside_untouched(const struct fx *f) {
  char p[PATH_CAP];
  size_t n;
  struct fsutil_dir d;
  const char *name;
  int count = 0;

  tu_path(p, sizeof(p), f->out, "secret");
  uint8_t *b = tu_read_file(p, &n);
  assert_non_null(b);
  assert_int_equal(n, 4);
  assert_memory_equal(b, "keep", 4);
  free(b);
  assert_int_equal(
      fsutil_dir_open(&d, open(f->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC)), 0);
  while (fsutil_dir_next(&d, &name) > 0) {
    count++;
  }
  fsutil_dir_close(&d);
  assert_int_equal(count, 1);
}

/* Counts the entries of the folder rel inside (or of in itself for "."). */
static int count_entries(const struct fx *f, const char *rel) {
  struct fsutil_dir d;
  const char *name;
  int n = 0;
  int fd = openat(f->in_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(fsutil_dir_open(&d, fd), 0);
  while (fsutil_dir_next(&d, &name) > 0) {
    n++;
  }
  fsutil_dir_close(&d);
  return n;
}

/* ---------------------------------------------------------------------- */
/* Opening one segment at a time */

static void test_open_under_never_follows_a_symlink(void **state) {
  struct fx *f = *state;

  /* A folder on the way that is a link out, and a file that is one. */
  plant_link(f, "dir", f->out);
  plant_link(f, "file", "../out/secret");
  int fd = fsutil_open_under(f->in_fd, "dir/secret", O_RDONLY, 0, NULL);
  assert_true(fd == UV_ELOOP || fd == UV_ENOTDIR);
  assert_int_equal(fsutil_open_under(f->in_fd, "file", O_RDONLY, 0, NULL),
                   UV_ELOOP);
  assert_int_equal(fsutil_open_under(f->in_fd, "missing/x", O_RDONLY, 0, NULL),
                   UV_ENOENT);
  assert_outside_untouched(f);
}

static void test_open_under_refuses_segments_that_leave(void **state) {
  struct fx *f = *state;
  char long_seg[MANIFEST_MAX_SEGMENT + 2];
  static const char *const bad[] = {
      "",   "/abs",          "a//b",        "a/",  ".",
      "..", "../out/secret", "a/../../out", "./a",
  };

  tu_write_file(f->in, "a/b", "x", 1);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    for (int create = 0; create < 2; create++) {
      int fd = fsutil_open_under(f->in_fd, bad[i], O_RDONLY, create, NULL);
      if (fd != SHOAL_EPATH) {
        fail_msg("\"%s\" (create %d) gave %d", bad[i], create, fd);
      }
    }
  }
  memset(long_seg, 'x', sizeof(long_seg) - 1);
  long_seg[sizeof(long_seg) - 1] = '\0';
  assert_int_equal(fsutil_open_under(f->in_fd, long_seg, O_RDONLY, 1, NULL),
                   SHOAL_EPATH);
  /* The longest segment allowed is a name like any other. */
  long_seg[MANIFEST_MAX_SEGMENT] = '\0';
  int fd = fsutil_open_under(f->in_fd, long_seg, O_RDONLY, 1, NULL);
  assert_true(fd >= 0);
  close(fd);
  assert_outside_untouched(f);
}

static void test_open_under_create_replaces_what_was_planted(void **state) {
  struct fx *f = *state;

  /* A link out where a folder belongs, a link out, a folder and a fifo
   * where files belong. */
  plant_link(f, "d", f->out);
  plant_link(f, "link", "../out/secret");
  assert_int_equal(mkdirat(f->in_fd, "folder", 0755), 0);
  tu_write_file(f->in, "folder/inner", "y", 1);
  assert_int_equal(mkfifoat(f->in_fd, "fifo", 0644), 0);
  tu_write_file(f->in, "plain", "z", 1); /* a file where a folder belongs */

  static const char *const paths[] = {"d/secret", "link", "folder", "fifo",
                                      "plain/f"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    int fd = fsutil_open_under(f->in_fd, paths[i], 0, 1, NULL);
    if (fd < 0) {
      fail_msg("%s: %s", paths[i], shoal_strerror(fd));
    }
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 0);
    assert_int_equal(write(fd, "w", 1), 1); /* opened for writing */
    close(fd);
  }
  assert_int_equal(kind_in(f, "d"), S_IFDIR);
  assert_int_equal(kind_in(f, "plain"), S_IFDIR);
  assert_outside_untouched(f);
}

static void test_open_under_gives_the_parent_folder(void **state) {
  struct fx *f = *state;
  struct stat a;
  struct stat b;
  int parent = 7;

  tu_write_file(f->in, "top", "t", 1);
  tu_write_file(f->in, "x/y/deep", "d", 1);
  int fd = fsutil_open_under(f->in_fd, "top", O_RDONLY, 0, &parent);
  assert_true(fd >= 0);
  assert_int_equal(parent, -1); /* base itself */
  close(fd);
  fd = fsutil_open_under(f->in_fd, "x/y/deep", O_RDONLY, 0, &parent);
  assert_true(fd >= 0);
  assert_true(parent >= 0);
  assert_int_equal(fstat(parent, &a), 0);
  assert_int_equal(fstatat(f->in_fd, "x/y", &b, 0), 0);
  assert_true(a.st_ino == b.st_ino);
  close(parent);
  close(fd);
  /* No parent is given with an error. */
  parent = 7;
  assert_int_equal(
      fsutil_open_under(f->in_fd, "x/y/none", O_RDONLY, 0, &parent), UV_ENOENT);
  assert_int_equal(parent, -1);
}

static void test_make_dirs_keeps_folders_and_refuses_links(void **state) {
  struct fx *f = *state;

  assert_int_equal(fsutil_make_dirs(f->in_fd, "a/b/c"), 0);
  assert_int_equal(kind_in(f, "a/b/c"), S_IFDIR);
  tu_write_file(f->in, "a/b/c/kept", "k", 1);
  assert_int_equal(fsutil_make_dirs(f->in_fd, "a/b/c"), 0); /* again */
  assert_true(exists_in(f, "a/b/c/kept"));

  plant_link(f, "a/out", f->out);
  int err = fsutil_make_dirs(f->in_fd, "a/out/new");
  assert_true(err == UV_ELOOP || err == UV_ENOTDIR);
  tu_write_file(f->in, "a/file", "f", 1);
  assert_int_equal(fsutil_make_dirs(f->in_fd, "a/file/new"), UV_ENOTDIR);
  assert_int_equal(fsutil_make_dirs(f->in_fd, "a/../x"), SHOAL_EPATH);
  assert_false(exists_in(f, "x"));
  assert_outside_untouched(f);
}

static void test_open_direct_only_for_the_same_file(void **state) {
  struct fx *f = *state;

  tu_write_file(f->in, "p", "", 0);
  tu_write_file(f->in, "q", "", 0);
  int fd = openat(f->in_fd, "p", O_RDWR | O_CLOEXEC);
  assert_true(fd >= 0);
  /* Another file under the name: never the one to write to. */
  assert_int_equal(fsutil_open_direct(f->in_fd, "q", fd), -1);
  assert_int_equal(fsutil_open_direct(f->in_fd, "none", fd), -1);
  /* The same file: a descriptor to it, or -1 where the file system
   * refuses O_DIRECT. */
  int d = fsutil_open_direct(f->in_fd, "p", fd);
  if (d >= 0) {
    struct stat a;
    struct stat b;
    assert_int_equal(fstat(d, &a), 0);
    assert_int_equal(fstat(fd, &b), 0);
    assert_true(a.st_ino == b.st_ino);
    close(d);
  }
  close(fd);
}

/* ---------------------------------------------------------------------- */
/* Reading and removing folders */

static void test_dir_lists_every_entry_but_dot_and_dotdot(void **state) {
  struct fx *f = *state;
  struct fsutil_dir d;
  const char *name;
  int seen = 0;
  int r;

  tu_write_file(f->in, "one", "1", 1);
  tu_write_file(f->in, "two/inner", "2", 1);
  plant_link(f, "three", "nowhere");
  int fd = dup(f->in_fd);
  assert_int_equal(fsutil_dir_open(&d, fd), 0);
  while ((r = fsutil_dir_next(&d, &name)) > 0) {
    assert_true(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
    seen |= strcmp(name, "one") == 0     ? 1
            : strcmp(name, "two") == 0   ? 2
            : strcmp(name, "three") == 0 ? 4
                                         : 8;
  }
  assert_int_equal(r, 0);
  assert_null(name);
  assert_int_equal(seen, 7);
  fsutil_dir_close(&d);
  fsutil_dir_close(&d); /* a second close is harmless */

  /* A descriptor that is no folder is closed, and the error returned. */
  fd = openat(f->in_fd, "one", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(fsutil_dir_open(&d, fd), UV_ENOTDIR);
  assert_int_equal(fcntl(fd, F_GETFD), -1);
}

static void test_rmtree_removes_links_not_what_they_point_at(void **state) {
  struct fx *f = *state;

  tu_write_file(f->in, "t/a/b/c", "c", 1);
  plant_link(f, "t/out", f->out);
  plant_link(f, "t/a/secret", "../../../out/secret");
  assert_int_equal(mkfifoat(f->in_fd, "t/a/fifo", 0644), 0);
  assert_int_equal(fsutil_rmtree_at(f->in_fd, "t"), 0);
  assert_false(exists_in(f, "t"));
  assert_outside_untouched(f);
  /* What is not there is removed already. */
  assert_int_equal(fsutil_rmtree_at(f->in_fd, "t"), 0);
  /* A link to a folder is a link: removed, and nothing behind it. */
  plant_link(f, "l", f->out);
  assert_int_equal(fsutil_rmtree_at(f->in_fd, "l"), 0);
  assert_false(exists_in(f, "l"));
  assert_outside_untouched(f);
}

/* Makes the folder name inside with a chain of depth folders below it. */
static void make_chain(const struct fx *f, const char *name, int depth) {
  int cur = dup(f->in_fd);
  assert_int_equal(mkdirat(cur, name, 0755), 0);
  for (int i = 0; i < depth; i++) {
    int next = openat(cur, i == 0 ? name : "d", O_RDONLY | O_DIRECTORY);
    assert_true(next >= 0);
    close(cur);
    cur = next;
    assert_int_equal(mkdirat(cur, "d", 0755), 0);
  }
  close(cur);
}

static void test_rmtree_refuses_a_planted_deep_tree(void **state) {
  struct fx *f = *state;

  /* FSUTIL_MAX_DEPTH folders below the name are removed; one more is
   * refused before anything is removed. */
  make_chain(f, "ok", FSUTIL_MAX_DEPTH);
  assert_int_equal(fsutil_rmtree_at(f->in_fd, "ok"), 0);
  assert_false(exists_in(f, "ok"));
  make_chain(f, "deep", FSUTIL_MAX_DEPTH + 1);
  assert_int_equal(fsutil_rmtree_at(f->in_fd, "deep"), SHOAL_EPATH);
  assert_true(exists_in(f, "deep/d/d/d"));
}

static void test_empty_dir_keeps_the_folder(void **state) {
  struct fx *f = *state;

  tu_write_file(f->in, "e/a/b", "b", 1);
  tu_write_file(f->in, "e/c", "c", 1);
  plant_link(f, "e/out", f->out);
  int fd = openat(f->in_fd, "e", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(fsutil_empty_dir(fd), 0);
  assert_int_equal(kind_in(f, "e"), S_IFDIR);
  assert_int_equal(count_entries(f, "e"), 0);
  assert_outside_untouched(f);
}

static void test_remove_empty_dirs_keeps_what_holds_files(void **state) {
  struct fx *f = *state;

  assert_int_equal(fsutil_make_dirs(f->in_fd, "r/a/b/c"), 0);
  assert_int_equal(fsutil_make_dirs(f->in_fd, "r/d/e"), 0);
  tu_write_file(f->in, "r/d/file", "f", 1);
  plant_link(f, "r/out", f->out);
  int fd = openat(f->in_fd, "r", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_int_equal(fsutil_remove_empty_dirs(fd), 0); /* not empty */
  assert_false(exists_in(f, "r/a"));
  assert_false(exists_in(f, "r/d/e"));
  assert_true(exists_in(f, "r/d/file"));
  assert_int_equal(kind_in(f, "r/out"), S_IFLNK); /* a link is kept */
  assert_outside_untouched(f);

  assert_int_equal(fsutil_make_dirs(f->in_fd, "s/a/b"), 0);
  fd = openat(f->in_fd, "s", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_int_equal(fsutil_remove_empty_dirs(fd), 1);
  assert_int_equal(kind_in(f, "s"), S_IFDIR); /* the folder itself stays */
  assert_int_equal(count_entries(f, "s"), 0);
}

static void test_unlink_under_goes_through_no_link(void **state) {
  struct fx *f = *state;

  tu_write_file(f->in, "u/v/w", "w", 1);
  tu_write_file(f->in, "top", "t", 1);
  plant_link(f, "u/out", f->out);
  fsutil_unlink_under(f->in_fd, "u/out/secret");
  assert_outside_untouched(f);
  fsutil_unlink_under(f->in_fd, "u/v/w");
  assert_false(exists_in(f, "u/v/w"));
  assert_true(exists_in(f, "u/v"));
  fsutil_unlink_under(f->in_fd, "top");
  assert_false(exists_in(f, "top"));
  fsutil_unlink_under(f->in_fd, "u/none/x"); /* nothing to do */
}

static void test_prune_keeps_exactly_the_paths(void **state) {
  struct fx *f = *state;
  const char *paths[] = {"z", "a/b/c", "a/bc", "k/file"};

  tu_write_file(f->in, "z", "z", 1);
  tu_write_file(f->in, "a/b/c", "c", 1);
  tu_write_file(f->in, "a/b/stray", "s", 1);
  tu_write_file(f->in, "a/bc", "x", 1);
  tu_write_file(f->in, "a/b.c", "x", 1); /* sorts between "a/b" and "a/bc" */
  tu_write_file(f->in, "stray/deep/er", "s", 1);
  tu_write_file(f->in, "k/file/inner", "i", 1); /* a folder at a file */
  plant_link(f, "a/out", f->out);
  assert_int_equal(fsutil_make_dirs(f->in_fd, "a/b/empty"), 0);
  assert_int_equal(mkfifoat(f->in_fd, "fifo", 0644), 0);

  int fd = dup(f->in_fd);
  assert_int_equal(fsutil_prune(fd, paths, 4), 0);
  assert_true(fcntl(fd, F_GETFD) >= 0); /* borrowed: still open */
  close(fd);
  /* paths was sorted in place. */
  assert_string_equal(paths[0], "a/b/c");
  assert_string_equal(paths[3], "z");

  assert_true(exists_in(f, "z"));
  assert_true(exists_in(f, "a/b/c"));
  assert_true(exists_in(f, "a/bc"));
  assert_false(exists_in(f, "a/b/stray"));
  assert_false(exists_in(f, "a/b/empty"));
  assert_false(exists_in(f, "a/b.c"));
  assert_false(exists_in(f, "a/out"));
  assert_false(exists_in(f, "stray"));
  assert_false(exists_in(f, "fifo"));
  assert_false(exists_in(f, "k/file"));
  assert_true(exists_in(f, "k")); /* a folder on the way to a path */
  assert_int_equal(count_entries(f, "."), 3); /* a, k, z */
  assert_int_equal(count_entries(f, "a"), 2); /* b, bc */
  assert_outside_untouched(f);
}

/* ---------------------------------------------------------------------- */
/* Reading, writing, sizing, renaming */

static void test_full_reads_and_writes(void **state) {
  struct fx *f = *state;
  uint8_t buf[64];
  char p[PATH_CAP];

  int fd = openat(f->in_fd, "rw", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(fsutil_pwrite_full(fd, (const uint8_t *)"0123456789", 10, 5),
                   0);
  assert_int_equal(fsutil_fsync(fd), 0);
  /* At the end of the file a read is short, and says how short. */
  assert_int_equal(fsutil_pread_full(fd, buf, sizeof(buf), 10), 5);
  assert_memory_equal(buf, "56789", 5);
  assert_int_equal(fsutil_pread_full(fd, buf, sizeof(buf), 100), 0);
  close(fd);
  assert_int_equal(fsutil_pread_full(fd, buf, 1, 0), UV_EBADF);
  assert_int_equal(fsutil_pwrite_full(fd, buf, 1, 0), UV_EBADF);
  assert_int_equal(fsutil_fsync(fd), UV_EBADF);

  at(p, f, "rw");
  assert_int_equal(fsutil_fsync_parent(p), 0);
  at(p, f, "none/rw");
  assert_int_equal(fsutil_fsync_parent(p), UV_ENOENT);
}

static void test_preallocate_sets_the_exact_size(void **state) {
  struct fx *f = *state;
  struct stat st;
  uint8_t big[5000];

  memset(big, 0xab, sizeof(big));
  tu_write_file(f->in, "long", big, sizeof(big));
  int fd = openat(f->in_fd, "long", O_RDWR | O_CLOEXEC);
  assert_int_equal(fsutil_preallocate(fd, 3000), 0); /* cut */
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, 3000);
  assert_int_equal(fsutil_preallocate(fd, 1 << 20), 0); /* grown */
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, 1 << 20);
  uint8_t b[2];
  assert_int_equal(fsutil_pread_full(fd, b, 2, 2999), 2);
  assert_int_equal(b[0], 0xab); /* what was there stays */
  assert_int_equal(b[1], 0);
  assert_int_equal(fsutil_preallocate(fd, 0), 0);
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, 0);
  close(fd);
}

static void test_rename_noreplace_never_replaces(void **state) {
  struct fx *f = *state;

  tu_write_file(f->in, "from", "new", 3);
  tu_write_file(f->in, "file", "old", 3);
  assert_int_equal(mkdirat(f->in_fd, "empty", 0755), 0);
  plant_link(f, "dangling", "nowhere");
  static const char *const taken[] = {"file", "empty", "dangling"};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(fsutil_rename_noreplace(f->in_fd, "from", taken[i]),
                     UV_EEXIST);
  }
  assert_true(exists_in(f, "from"));
  assert_int_equal(kind_in(f, "empty"), S_IFDIR);
  assert_int_equal(fsutil_rename_noreplace(f->in_fd, "from", "to"), 0);
  assert_false(exists_in(f, "from"));
  assert_true(exists_in(f, "to"));
  assert_int_equal(fsutil_rename_noreplace(f->in_fd, "from", "again"),
                   UV_ENOENT);
}

/* ---------------------------------------------------------------------- */
/* Free space, comparisons, the kernel */

static void test_free_space_arithmetic_saturates(void **state) {
  struct statvfs v;
  (void)state;

  assert_true(fsutil_add_sat(1, 2) == 3);
  assert_true(fsutil_add_sat(UINT64_MAX - 1, 1) == UINT64_MAX);
  assert_true(fsutil_add_sat(UINT64_MAX, UINT64_MAX) == UINT64_MAX);
  assert_true(fsutil_whole_blocks(0, 4096) == 0);
  assert_true(fsutil_whole_blocks(1, 4096) == 4096);
  assert_true(fsutil_whole_blocks(4096, 4096) == 4096);
  assert_true(fsutil_whole_blocks(4097, 4096) == 8192);
  assert_true(fsutil_whole_blocks(UINT64_MAX, 4096) == UINT64_MAX);
  assert_true(fsutil_whole_blocks(UINT64_MAX - 4095, 4096) ==
              UINT64_MAX - 4095);

  memset(&v, 0, sizeof(v));
  v.f_frsize = 4096;
  v.f_bavail = 10;
  assert_true(fsutil_avail_bytes(&v) == 40960);
  v.f_bavail = (fsblkcnt_t)(UINT64_MAX / 4096 + 1);
  assert_true(fsutil_avail_bytes(&v) == UINT64_MAX);
}

static void test_stat_matches_size_time_and_kind(void **state) {
  struct fx *f = *state;
  struct manifest_file mf;
  struct stat st;

  tu_write_file(f->in, "h", "hashed", 6);
  assert_int_equal(fstatat(f->in_fd, "h", &st, 0), 0);
  memset(&mf, 0, sizeof(mf));
  mf.size = 6;
  mf.mtime_sec = st.st_mtim.tv_sec;
  mf.mtime_nsec = st.st_mtim.tv_nsec;
  assert_true(fsutil_stat_matches(&st, &mf));

  struct stat other = st;
  other.st_size = 7;
  assert_false(fsutil_stat_matches(&other, &mf));
  other = st;
  other.st_mtim.tv_sec++;
  assert_false(fsutil_stat_matches(&other, &mf));
  other = st;
  other.st_mtim.tv_nsec ^= 1; /* one nanosecond tells */
  assert_false(fsutil_stat_matches(&other, &mf));
  other = st;
  other.st_mode = (other.st_mode & ~S_IFMT) | S_IFIFO;
  assert_false(fsutil_stat_matches(&other, &mf));
}

static void test_umask_is_read_without_changing_it(void **state) {
  (void)state;
  mode_t old = umask(027);
  int got = fsutil_umask();
  mode_t now = umask(old);
  if (got == -1) {
    skip(); /* no /proc/self/status "Umask:" line (Linux before 4.7) */
  }
  assert_int_equal(got, 027);
  assert_int_equal(now, 027);
}

static void test_flock_holder_is_this_process(void **state) {
  struct fx *f = *state;
  struct stat st;

  tu_write_file(f->in, "locked", "l", 1);
  int fd = openat(f->in_fd, "locked", O_RDONLY | O_CLOEXEC);
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(fsutil_flock_holder(&st), -1);
  assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
  assert_int_equal(fsutil_flock_holder(&st), (long)getpid());
  close(fd);
  assert_int_equal(fsutil_flock_holder(&st), -1);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_open_under_never_follows_a_symlink),
      T(test_open_under_refuses_segments_that_leave),
      T(test_open_under_create_replaces_what_was_planted),
      T(test_open_under_gives_the_parent_folder),
      T(test_make_dirs_keeps_folders_and_refuses_links),
      T(test_open_direct_only_for_the_same_file),
      T(test_dir_lists_every_entry_but_dot_and_dotdot),
      T(test_rmtree_removes_links_not_what_they_point_at),
      T(test_rmtree_refuses_a_planted_deep_tree),
      T(test_empty_dir_keeps_the_folder),
      T(test_remove_empty_dirs_keeps_what_holds_files),
      T(test_unlink_under_goes_through_no_link),
      T(test_prune_keeps_exactly_the_paths),
      T(test_full_reads_and_writes),
      T(test_preallocate_sets_the_exact_size),
      T(test_rename_noreplace_never_replaces),
      T(test_free_space_arithmetic_saturates),
      T(test_stat_matches_size_time_and_kind),
      T(test_umask_is_read_without_changing_it),
      T(test_flock_holder_is_this_process),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
