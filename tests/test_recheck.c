/* Tests for peer/recheck: a copy on disk checked against a decoded
 * manifest, with and without fast-resume records; the ways a copy can
 * differ (a byte, a size, a missing file, a symbolic link, a fifo, a file
 * renamed over, a change during the check); cancelling; and a checked copy
 * made a source that serves its bytes.
 *
 * Every manifest is built from a folder and decoded again from its signed
 * bytes, so that it has no local_root, as one fetched from a peer. The
 * built folder is itself the copy checked. Changes during a check are made
 * without sleeping: a file larger than MANIFEST_JOB_BYTES is hashed as
 * several jobs, at most RECHECK_JOBS at a time, and the next job is queued
 * only after the progress callback of the one before returns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/manifest.h"
#include "peer/library.h"
#include "peer/manifest_build.h"
#include "peer/maphash.h"
#include "peer/recheck.h"
#include "peer/storage.h"
#include "tests/lib/errassert.h"
#include "tests/lib/mfix.h"
#include "tests/lib/mtree.h"
#include "tests/lib/testutil.h"

/* The folder every test checks, under its temp folder, in canonical
 * order. Chunks are 16 KiB. */
#define NFILES 6
static const char *const paths[NFILES] = {"top/a.bin",       "top/b.txt",
                                          "top/empty1",      "top/sub/c.bin",
                                          "top/sub/d/e.bin", "top/sub/empty2"};
static const size_t sizes[NFILES] = {70000, 100, 0, 40000, 16384, 0};
enum { A_BIN, B_TXT, EMPTY1, C_BIN, E_BIN, EMPTY2 };

/* ---------------------------------------------------------------------- */
/* Helpers */

struct check {
  int called;
  int status;
  struct recheck_result res; /* a deep copy */
  unsigned progress_calls;
  uint64_t last_done, last_total;
  int went_backwards;
  struct recheck *r;
  /* Run from the first progress callback. */
  void (*on_first_progress)(struct check *c);
  const char *dir;
};

static void check_free(struct check *c) {
  free(c->res.files);
  free(c->res.file_ok);
  c->res.files = NULL;
  c->res.file_ok = NULL;
}

static void on_progress(void *arg, uint64_t done, uint64_t total) {
  struct check *c = arg;
  assert_int_equal(c->called, 0);
  if (done < c->last_done) {
    c->went_backwards = 1;
  }
  c->last_done = done;
  c->last_total = total;
  if (c->progress_calls++ == 0 && c->on_first_progress != NULL) {
    c->on_first_progress(c);
  }
}

static void on_done(void *arg, int status, const struct recheck_result *res) {
  struct check *c = arg;
  assert_int_equal(c->called, 0);
  c->called = 1;
  c->status = status;
  c->res = *res;
  c->res.files = malloc((res->nfiles + 1) * sizeof(*res->files));
  c->res.file_ok = malloc(res->nfiles + 1);
  assert_non_null(c->res.files);
  assert_non_null(c->res.file_ok);
  memcpy(c->res.files, res->files, res->nfiles * sizeof(*res->files));
  memcpy(c->res.file_ok, res->file_ok, res->nfiles);
}

static void run_until(uv_loop_t *loop, const int *flag) {
  while (!*flag) {
    int alive = uv_run(loop, UV_RUN_ONCE);
    if (!*flag && !alive) {
      fail_msg("the loop ran out of work before the callback came");
    }
  }
}

static void close_loop(uv_loop_t *loop) {
  while (uv_run(loop, UV_RUN_NOWAIT) != 0) {
  }
  assert_int_equal(uv_loop_close(loop), 0);
}

/* Checks the copy of m under dir, with known records or none; c holds the
 * outcome (check_free it). */
static void check_copy(const char *dir, const struct manifest *m,
                       const struct library_file *known, struct check *c) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  c->dir = dir;
  assert_err(recheck_start(&c->r, &loop, m, dir, known,
                           known != NULL ? m->file_count : 0, on_progress,
                           on_done, c),
             0);
  assert_non_null(c->r);
  assert_int_equal(c->called, 0); /* never from inside recheck_start */
  run_until(&loop, &c->called);
  close_loop(&loop);
  assert_int_equal(c->res.nfiles, m->file_count);
  assert_false(c->went_backwards);
}

/* Builds dir/top (or dir/name) and returns its manifest decoded again from
 * the signed bytes, so without local_root. */
static struct manifest *decoded_manifest(const char *dir, const char *name,
                                         unsigned chunk_log2) {
  struct manifest_build_opts o;
  struct manifest *built, *m = NULL;
  char path[MT_PATH_CAP];
  memset(&o, 0, sizeof(o));
  o.chunk_log2 = chunk_log2;
  tu_path(path, sizeof(path), dir, name);
  built = mt_build(path, &mf_pub, &o);
  assert_err(manifest_decode(built->encoded, built->encoded_len, &m), 0);
  manifest_free(built);
  assert_null(m->local_root);
  return m;
}

static struct manifest *make_tree(const char *dir) {
  for (size_t i = 0; i < NFILES; i++) {
    mt_write_filled(dir, paths[i], sizes[i], 100 + i);
    mt_set_mtime(dir, paths[i], 1700000000 + (int64_t)i, 1000 * (long)i + 3);
  }
  struct manifest *m = decoded_manifest(dir, "top", 14);
  assert_int_equal(m->file_count, NFILES);
  for (size_t i = 0; i < NFILES; i++) {
    assert_string_equal(m->files[i].path, paths[i]);
  }
  return m;
}

/* The records of a whole copy: a first check that must pass. */
static struct library_file *records_of(const char *dir,
                                       const struct manifest *m) {
  struct check c = {0};
  struct library_file *rec;
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, 0);
  rec = c.res.files;
  c.res.files = NULL;
  check_free(&c);
  return rec;
}

static void flip_byte(const char *dir, const char *rel, uint64_t off) {
  char p[MT_PATH_CAP];
  uint8_t b;
  tu_path(p, sizeof(p), dir, rel);
  int fd = open(p, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
  b ^= 0x20;
  assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
  assert_int_equal(close(fd), 0);
}

static void stat_rel(const char *dir, const char *rel, struct stat *st) {
  char p[MT_PATH_CAP];
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(lstat(p, st), 0);
}

static void remove_rel(const char *dir, const char *rel) {
  char p[MT_PATH_CAP];
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(unlink(p), 0);
}

/* Only file idx failed; every other is whole. */
static void assert_only_bad(const struct check *c, uint32_t idx) {
  for (uint32_t i = 0; i < c->res.nfiles; i++) {
    assert_int_equal(c->res.file_ok[i], i == idx ? 0 : 1);
  }
}

/* ---------------------------------------------------------------------- */
/* A whole copy */

static void whole_copy_passes_and_every_file_is_hashed(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};

  check_copy(dir, m, NULL, &c);
  assert_err(c.status, 0);
  assert_string_equal(c.res.why, "");
  assert_int_equal(c.res.files_hashed, NFILES); /* the empty files too */
  assert_int_equal(c.res.bytes_hashed, m->total_size);
  assert_int_equal(c.res.chunks_bad, 0);
  assert_int_equal(c.last_done, m->total_size);
  assert_int_equal(c.last_total, m->total_size);
  assert_true(c.progress_calls >= 1);
  for (uint32_t i = 0; i < NFILES; i++) {
    struct stat st;
    stat_rel(dir, paths[i], &st);
    assert_int_equal(c.res.file_ok[i], 1);
    assert_int_equal(c.res.files[i].size, sizes[i]);
    assert_int_equal(c.res.files[i].mtime_sec, st.st_mtim.tv_sec);
    assert_int_equal(c.res.files[i].mtime_nsec, st.st_mtim.tv_nsec);
    assert_int_equal(c.res.files[i].ino, st.st_ino);
  }
  check_free(&c);
  manifest_free(m);
}

static void matching_records_are_trusted_without_reading(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct library_file *rec = records_of(dir, m);
  struct check c = {0};

  check_copy(dir, m, rec, &c);
  assert_err(c.status, 0);
  assert_int_equal(c.res.files_hashed, 0);
  assert_int_equal(c.res.bytes_hashed, 0);
  assert_int_equal(c.progress_calls, 0);
  assert_memory_equal(c.res.files, rec, NFILES * sizeof(*rec));
  check_free(&c);
  free(rec);
  manifest_free(m);
}

static void a_touched_file_alone_is_hashed_again(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct library_file *rec = records_of(dir, m);
  struct check c = {0};

  mt_set_mtime(dir, paths[C_BIN], 1750000000, 5);
  check_copy(dir, m, rec, &c);
  assert_err(c.status, 0); /* same bytes: a new time alone is no harm */
  assert_int_equal(c.res.files_hashed, 1);
  assert_int_equal(c.res.bytes_hashed, sizes[C_BIN]);
  assert_int_equal(c.last_total, sizes[C_BIN]);
  assert_int_equal(c.res.files[C_BIN].mtime_sec, 1750000000);
  assert_int_equal(c.res.files[C_BIN].mtime_nsec, 5);
  check_free(&c);
  free(rec);
  manifest_free(m);
}

static void a_file_renamed_over_is_hashed_again(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct library_file *rec = records_of(dir, m);
  struct check c = {0};
  char from[MT_PATH_CAP], to[MT_PATH_CAP];
  struct stat st;

  /* The same size and time, another inode: the same bytes pass... */
  mt_write_filled(dir, "top/sub/c.new", sizes[C_BIN], 100 + C_BIN);
  mt_set_mtime(dir, "top/sub/c.new", rec[C_BIN].mtime_sec,
               (long)rec[C_BIN].mtime_nsec);
  tu_path(from, sizeof(from), dir, "top/sub/c.new");
  tu_path(to, sizeof(to), dir, paths[C_BIN]);
  assert_int_equal(rename(from, to), 0);
  stat_rel(dir, paths[C_BIN], &st);
  assert_int_not_equal(st.st_ino, rec[C_BIN].ino);
  check_copy(dir, m, rec, &c);
  assert_err(c.status, 0);
  assert_int_equal(c.res.files_hashed, 1);
  assert_int_equal(c.res.files[C_BIN].ino, st.st_ino);
  /* ... and other bytes do not (checked against the records of the file
   * in place now: the new one, made while it exists, cannot have its
   * inode, while the inode of the one replaced first may come back). */
  memcpy(rec, c.res.files, NFILES * sizeof(*rec));
  check_free(&c);
  memset(&c, 0, sizeof(c));
  mt_write_filled(dir, "top/sub/c.new", sizes[C_BIN], 999);
  mt_set_mtime(dir, "top/sub/c.new", rec[C_BIN].mtime_sec,
               (long)rec[C_BIN].mtime_nsec);
  assert_int_equal(rename(from, to), 0);
  check_copy(dir, m, rec, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_only_bad(&c, C_BIN);
  assert_int_equal(c.res.chunks_bad, m->files[C_BIN].chunk_count);
  assert_non_null(strstr(c.res.why, "top/sub/c.bin: chunk 1 of its 3 differs"));
  check_free(&c);
  free(rec);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* A copy that differs */

static void a_flipped_byte_under_its_record_is_trusted(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct library_file *rec = records_of(dir, m);
  struct check c = {0};

  /* Rewritten in place with its size, time and inode kept: the record is
   * trusted (recheck.h says so; a source hashes each chunk before it
   * serves it). */
  flip_byte(dir, paths[A_BIN], 3 * 16384 + 17);
  mt_set_mtime(dir, paths[A_BIN], rec[A_BIN].mtime_sec,
               (long)rec[A_BIN].mtime_nsec);
  check_copy(dir, m, rec, &c);
  assert_err(c.status, 0);
  assert_int_equal(c.res.files_hashed, 0);
  check_free(&c);

  /* Without records, the chunk is found. */
  memset(&c, 0, sizeof(c));
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_only_bad(&c, A_BIN);
  assert_int_equal(c.res.chunks_bad, 1);
  assert_int_equal(c.res.files_hashed, NFILES);
  /* The records of that check, stored as they are, never let the file
   * pass unread again. */
  struct check again = {0};
  check_copy(dir, m, c.res.files, &again);
  assert_err(again.status, SHOAL_ECHANGED);
  assert_int_equal(again.res.files_hashed, 1);
  check_free(&again);
  assert_string_equal(c.res.why, "top/a.bin: chunk 4 of its 5 differs");
  check_free(&c);
  free(rec);
  manifest_free(m);
}

static void two_bad_chunks_are_both_counted(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};

  flip_byte(dir, paths[A_BIN], 1 * 16384);
  flip_byte(dir, paths[A_BIN], 4 * 16384 + 1);
  flip_byte(dir, paths[C_BIN], 0);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_int_equal(c.res.chunks_bad, 3);
  assert_int_equal(c.res.file_ok[A_BIN], 0);
  assert_int_equal(c.res.file_ok[C_BIN], 0);
  assert_int_equal(c.res.file_ok[B_TXT], 1);
  /* The first bad file in manifest order names its first bad chunk. */
  assert_string_equal(c.res.why,
                      "top/a.bin: chunk 2 of its 5 differs, and 1 more");
  check_free(&c);
  manifest_free(m);
}

static void a_truncated_file_is_of_another_size(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  char p[MT_PATH_CAP];

  tu_path(p, sizeof(p), dir, paths[C_BIN]);
  assert_int_equal(truncate(p, 30000), 0);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_only_bad(&c, C_BIN);
  assert_string_equal(c.res.why,
                      "top/sub/c.bin: size 30000 bytes, the manifest says "
                      "40000");
  assert_int_equal(c.res.chunks_bad, m->files[C_BIN].chunk_count);
  /* No record for a file that is not whole. */
  assert_int_equal(c.res.files[C_BIN].size, 0);
  assert_int_equal(c.res.files[C_BIN].ino, 0);
  assert_int_equal(c.res.files[A_BIN].size, sizes[A_BIN]);
  /* Not read: a file of the wrong size cannot be whole. */
  assert_int_equal(c.res.files_hashed, NFILES - 1);
  check_free(&c);
  manifest_free(m);
}

static void a_missing_file_is_named(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct library_file *rec = records_of(dir, m);
  struct check c = {0};

  remove_rel(dir, paths[E_BIN]);
  check_copy(dir, m, rec, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_only_bad(&c, E_BIN);
  assert_string_equal(c.res.why, "top/sub/d/e.bin: missing");
  assert_int_equal(c.res.chunks_bad, 1);
  struct library_file zero;
  memset(&zero, 0, sizeof(zero));
  assert_memory_equal(&c.res.files[E_BIN], &zero, sizeof(zero));
  check_free(&c);

  /* An empty file missing is missing too, though it has no chunk. */
  memset(&c, 0, sizeof(c));
  remove_rel(dir, paths[EMPTY2]);
  check_copy(dir, m, rec, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_int_equal(c.res.file_ok[EMPTY2], 0);
  check_free(&c);
  free(rec);
  manifest_free(m);
}

static void a_missing_root_makes_every_file_missing(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  char gone[MT_PATH_CAP];

  tu_path(gone, sizeof(gone), dir, "nowhere");
  check_copy(gone, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_string_equal(c.res.why, "top/a.bin: missing");
  assert_int_equal(c.res.chunks_bad, m->chunk_count);
  for (uint32_t i = 0; i < NFILES; i++) {
    assert_int_equal(c.res.file_ok[i], 0);
  }
  check_free(&c);
  manifest_free(m);
}

static void a_symbolic_link_is_not_followed(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  char p[MT_PATH_CAP], target[MT_PATH_CAP];

  /* The same bytes, outside the copy, behind a link in its place. */
  mt_write_filled(dir, "outside.bin", sizes[B_TXT], 100 + B_TXT);
  tu_path(target, sizeof(target), dir, "outside.bin");
  tu_path(p, sizeof(p), dir, paths[B_TXT]);
  assert_int_equal(unlink(p), 0);
  assert_int_equal(symlink(target, p), 0);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_only_bad(&c, B_TXT);
  assert_string_equal(c.res.why,
                      "top/b.txt: not a regular file, or behind a symbolic "
                      "link (links are not followed)");
  check_free(&c);
  manifest_free(m);
}

static void a_folder_behind_a_symbolic_link_is_not_followed(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  char from[MT_PATH_CAP], to[MT_PATH_CAP];

  /* top/sub moved out and linked back: its files are not in the copy. */
  tu_path(from, sizeof(from), dir, "top/sub");
  tu_path(to, sizeof(to), dir, "moved");
  assert_int_equal(rename(from, to), 0);
  assert_int_equal(symlink(to, from), 0);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_int_equal(c.res.file_ok[A_BIN], 1);
  assert_int_equal(c.res.file_ok[C_BIN], 0);
  assert_int_equal(c.res.file_ok[E_BIN], 0);
  assert_int_equal(c.res.file_ok[EMPTY2], 0);
  assert_non_null(strstr(c.res.why, "top/sub/c.bin: not a regular file, or "
                                    "behind a symbolic link"));
  check_free(&c);
  manifest_free(m);
}

static void a_fifo_in_a_files_place_does_not_hang(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  char p[MT_PATH_CAP];

  tu_path(p, sizeof(p), dir, paths[B_TXT]);
  assert_int_equal(unlink(p), 0);
  assert_int_equal(mkfifo(p, 0644), 0);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_only_bad(&c, B_TXT);
  assert_string_equal(c.res.why, "top/b.txt: not a regular file");
  check_free(&c);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Large files: several jobs, changes during the check, cancelling */

#define BIG_BYTES ((size_t)MANIFEST_JOB_BYTES * 2 + 300000) /* 3 jobs */

static struct manifest *make_big(const char *dir) {
  mt_write_filled(dir, "big.bin", BIG_BYTES, 7);
  return decoded_manifest(dir, "big.bin", 20);
}

static void a_large_file_is_hashed_in_several_jobs(void **state) {
  const char *dir = *state;
  struct manifest *m = make_big(dir);
  struct check c = {0};

  check_copy(dir, m, NULL, &c);
  assert_err(c.status, 0);
  assert_int_equal(c.progress_calls, 3);
  assert_int_equal(c.res.bytes_hashed, BIG_BYTES);
  check_free(&c);

  /* The last chunk, in the last job. */
  memset(&c, 0, sizeof(c));
  flip_byte(dir, "big.bin", BIG_BYTES - 1);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_string_equal(c.res.why, "big.bin: chunk 17 of its 17 differs");
  check_free(&c);
  manifest_free(m);
}

static void touch_big(struct check *c) {
  mt_set_mtime(c->dir, "big.bin", 1800000000, 1);
}

static void a_file_written_during_the_check_is_bad(void **state) {
  const char *dir = *state;
  struct manifest *m = make_big(dir);
  struct check c = {0};

  /* Its third job is queued after the first one's progress. */
  c.on_first_progress = touch_big;
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_string_equal(c.res.why, "big.bin: changed while it was checked");
  assert_int_equal(c.res.file_ok[0], 0);
  assert_int_equal(c.res.chunks_bad, m->chunk_count);
  check_free(&c);
  manifest_free(m);
}

/* maphash's SIGBUS handler, as main() found it after maphash_init: cmocka
 * puts its own in place for each test. */
static struct sigaction g_maphash_sa;

static void cut_big(struct check *c) {
  char path[MT_PATH_CAP];
  tu_path(path, sizeof(path), c->dir, "big.bin");
  assert_int_equal(truncate(path, (off_t)(BIG_BYTES / 3)), 0);
}

/* Runs of 64 KiB or more are hashed from a mapping of the file: one cut
 * while the others run (or are mapped) makes the file "changed", not the
 * process killed by SIGBUS. */
static void a_file_cut_during_the_check_is_bad(void **state) {
  const char *dir = *state;
  struct manifest *m = make_big(dir);
  struct check c = {0};

  assert_int_equal(sigaction(SIGBUS, &g_maphash_sa, NULL), 0);
  c.on_first_progress = cut_big;
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECHANGED);
  assert_string_equal(c.res.why, "big.bin: changed while it was checked");
  assert_int_equal(c.res.file_ok[0], 0);
  check_free(&c);
  manifest_free(m);
}

static void cancel_now(struct check *c) {
  recheck_cancel(c->r);
}

static void cancel_ends_with_ecanceled(void **state) {
  const char *dir = *state;
  struct manifest *m = make_big(dir);
  struct check c = {0};

  c.on_first_progress = cancel_now;
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, SHOAL_ECANCELED);
  assert_int_equal(c.res.file_ok[0], 0);
  assert_true(c.res.bytes_hashed < BIG_BYTES);
  check_free(&c);
  manifest_free(m);
}

static void cancel_before_the_stat_step_runs(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  uv_loop_t loop;

  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(
      recheck_start(&c.r, &loop, m, dir, NULL, 0, on_progress, on_done, &c), 0);
  recheck_cancel(c.r);
  run_until(&loop, &c.called);
  close_loop(&loop);
  /* Cancelled in the queue, or let finish if a worker had taken it. */
  assert_true(c.status == SHOAL_ECANCELED || c.status == 0);
  check_free(&c);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Arguments, and an empty content */

static void bad_arguments_are_refused(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct library_file rec[NFILES];
  struct recheck *r = (struct recheck *)&r;
  uv_loop_t loop;

  memset(rec, 0, sizeof(rec));
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(
      recheck_start(&r, &loop, m, dir, rec, NFILES - 1, NULL, on_done, NULL),
      SHOAL_EINVAL);
  assert_null(r);
  assert_err(recheck_start(&r, &loop, m, NULL, NULL, 0, NULL, on_done, NULL),
             SHOAL_EINVAL);
  /* Records with a count of 0 are no records. */
  struct check c = {0};
  assert_err(recheck_start(&c.r, &loop, m, dir, rec, 0, NULL, on_done, &c), 0);
  run_until(&loop, &c.called);
  assert_err(c.status, 0);
  assert_int_equal(c.res.files_hashed, NFILES);
  check_free(&c);
  close_loop(&loop);
  manifest_free(m);
}

static void one_empty_file_is_a_whole_copy(void **state) {
  const char *dir = *state;
  struct check c = {0};
  struct manifest *m;

  mt_write_filled(dir, "nothing", 0, 1);
  m = decoded_manifest(dir, "nothing", 0);
  assert_int_equal(m->chunk_count, 0);
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, 0);
  assert_int_equal(c.res.files_hashed, 1);
  assert_int_equal(c.progress_calls, 0);
  check_free(&c);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* A checked copy as a source */

struct got {
  int called;
  int status;
  uint8_t *data;
  size_t len;
};

static void on_read(void *arg, int status, uint8_t *data, size_t len) {
  struct got *g = arg;
  g->called = 1;
  g->status = status;
  g->data = data;
  g->len = len;
}

static void on_closed(void *arg, int status) {
  int *flag = arg;
  assert_int_equal(status, 0);
  *flag = 1;
}

static void apply_makes_a_source_that_serves_the_copy(void **state) {
  const char *dir = *state;
  struct manifest *m = make_tree(dir);
  struct check c = {0};
  struct storage *s = NULL;
  struct got g = {0};
  int closed = 0;
  uv_loop_t loop;
  char p[MT_PATH_CAP];
  size_t len;

  /* A new time: the manifest's signed times are no longer the file's. */
  mt_set_mtime(dir, paths[C_BIN], 1760000000, 77);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(storage_open_source(&s, &loop, m), SHOAL_EINVAL); /* no root */
  check_copy(dir, m, NULL, &c);
  assert_err(c.status, 0);
  assert_err(recheck_apply(m, dir, &c.res), 0);
  assert_string_equal(m->local_root, dir);
  assert_int_equal(m->files[C_BIN].mtime_sec, 1760000000);
  assert_int_equal(m->files[C_BIN].mtime_nsec, 77);

  assert_err(storage_open_source(&s, &loop, m), 0);
  /* The second block of c.bin's chunk 1 (it holds bytes 16384..32767). */
  uint32_t idx = m->files[C_BIN].first_chunk + 1;
  assert_int_equal(storage_read(s, idx, 1000, 4000, on_read, &g), 0);
  run_until(&loop, &g.called);
  assert_err(g.status, 0);
  assert_int_equal(g.len, 4000);
  tu_path(p, sizeof(p), dir, paths[C_BIN]);
  uint8_t *want = tu_read_file(p, &len);
  assert_non_null(want);
  assert_int_equal(len, sizes[C_BIN]);
  assert_memory_equal(g.data, want + 16384 + 1000, 4000);
  free(want);
  free(g.data);
  storage_close(s, on_closed, &closed);
  run_until(&loop, &closed);
  close_loop(&loop);

  /* Applying twice replaces the root; a result of another count is
   * refused. */
  assert_err(recheck_apply(m, "/elsewhere", &c.res), 0);
  assert_string_equal(m->local_root, "/elsewhere");
  c.res.nfiles--;
  assert_err(recheck_apply(m, dir, &c.res), SHOAL_EINVAL);
  check_free(&c);
  manifest_free(m);
}

int main(void) {
  if (maphash_init() != 0 || sigaction(SIGBUS, NULL, &g_maphash_sa) != 0) {
    fprintf(stderr, "test_recheck: cannot install maphash's handler\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, mf_dir_setup, mf_dir_teardown)
      T(whole_copy_passes_and_every_file_is_hashed),
      T(matching_records_are_trusted_without_reading),
      T(a_touched_file_alone_is_hashed_again),
      T(a_file_renamed_over_is_hashed_again),
      T(a_flipped_byte_under_its_record_is_trusted),
      T(two_bad_chunks_are_both_counted),
      T(a_truncated_file_is_of_another_size),
      T(a_missing_file_is_named),
      T(a_missing_root_makes_every_file_missing),
      T(a_symbolic_link_is_not_followed),
      T(a_folder_behind_a_symbolic_link_is_not_followed),
      T(a_fifo_in_a_files_place_does_not_hang),
      T(a_large_file_is_hashed_in_several_jobs),
      T(a_file_written_during_the_check_is_bad),
      T(a_file_cut_during_the_check_is_bad),
      T(cancel_ends_with_ecanceled),
      T(cancel_before_the_stat_step_runs),
      T(bad_arguments_are_refused),
      T(one_empty_file_is_a_whole_copy),
      T(apply_makes_a_source_that_serves_the_copy),
#undef T
  };
  return cmocka_run_group_tests(tests, mf_keys_setup, mf_keys_teardown);
}
