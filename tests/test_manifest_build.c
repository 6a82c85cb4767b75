/* Tests for peer/manifest_build: the signed manifest of a file or a folder
 * on disk, built inline, on a private loop or on the caller's loop.
 *
 * Changes to a file during hashing are made deterministic without sleeps:
 * each file is its own hashing job, and with threads = 1 the builder keeps
 * only a few jobs queued (far fewer than SMALL_FILES), handing out the next
 * one from the loop thread as one finishes; inline (threads = 0) jobs run
 * one after the other. So the progress callback of the first job, or the
 * gap between manifest_build_start() and uv_run(), can change the last file
 * before its job is even queued.
 *
 * Large files are hashed from mappings of them (peer/maphash, whose own
 * tests truncate a mapped file deterministically); cmocka puts a SIGBUS
 * handler of its own in place for each test, so the test that truncates a
 * file under the builder puts maphash's back first.
 *
 * What the bytes of a built manifest are is test_manifest's: its
 * known-answer vector is a folder built here.
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
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/chash.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "peer/manifest_build.h"
#include "peer/maphash.h"
#include "tests/lib/errassert.h"
#include "tests/lib/mfix.h"
#include "tests/lib/mtree.h"
#include "tests/lib/testutil.h"

#define CS14 ((uint64_t)1 << 14)

/* ---------------------------------------------------------------------- */
/* Helpers. */

static void append_byte(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "!", 1), 1);
  assert_int_equal(close(fd), 0);
}

/* Sets the modification time to a fixed moment long before the scan. */
static void set_old_mtime(const char *path) {
  struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
  assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Builds dir/rel with the key mf_pub; the build must succeed. */
static struct manifest *build_in(const char *dir, const char *rel,
                                 const struct manifest_build_opts *o) {
  char path[MT_PATH_CAP];
  tu_path(path, sizeof(path), dir, rel);
  return mt_build(path, &mf_pub, o);
}

/* ---------------------------------------------------------------------- */
/* Helpers: what the callbacks saw. */

#define REC_MAX_SKIPS 8

struct rec {
  unsigned progress_calls;
  uint64_t last_done;
  uint64_t last_total;
  int went_backwards;
  int total_changed;
  unsigned skips;
  char skip_path[REC_MAX_SKIPS][256];
  char skip_why[REC_MAX_SKIPS][256];
  /* Actions taken at the first progress report. */
  const char *append_on_progress;
  struct manifest_builder *cancel_on_progress;
};

static void rec_progress(void *arg, uint64_t done, uint64_t total) {
  struct rec *r = arg;
  if (r->progress_calls > 0) {
    r->went_backwards |= done < r->last_done;
    r->total_changed |= total != r->last_total;
  }
  r->progress_calls++;
  r->last_done = done;
  r->last_total = total;
  if (r->append_on_progress != NULL) {
    append_byte(r->append_on_progress);
    r->append_on_progress = NULL;
  }
  if (r->cancel_on_progress != NULL) {
    manifest_build_cancel(r->cancel_on_progress);
    r->cancel_on_progress = NULL;
  }
}

static void rec_skipped(void *arg, const char *path, const char *why) {
  struct rec *r = arg;
  assert_true(r->skips < REC_MAX_SKIPS);
  snprintf(r->skip_path[r->skips], sizeof(r->skip_path[0]), "%s", path);
  snprintf(r->skip_why[r->skips], sizeof(r->skip_why[0]), "%s", why);
  r->skips++;
}

static void rec_opts(struct manifest_build_opts *o, struct rec *r) {
  memset(o, 0, sizeof(*o));
  memset(r, 0, sizeof(*r));
  o->progress = rec_progress;
  o->skipped = rec_skipped;
  o->arg = r;
}

/* The skipped entry for path, or -1. */
static int rec_find_skip(const struct rec *r, const char *path) {
  for (unsigned i = 0; i < r->skips; i++) {
    if (strcmp(r->skip_path[i], path) == 0) {
      return (int)i;
    }
  }
  return -1;
}

struct done_rec {
  int calls;
  int status;
  struct manifest *m;
};

static void on_built(void *arg, int status, struct manifest *m) {
  struct done_rec *d = arg;
  d->calls++;
  d->status = status;
  d->m = m;
}

static void assert_same_bytes(const struct manifest *a,
                              const struct manifest *b) {
  assert_int_equal(a->encoded_len, b->encoded_len);
  assert_memory_equal(a->encoded, b->encoded, a->encoded_len);
  assert_memory_equal(a->id, b->id, MANIFEST_ID_BYTES);
}

/* Checks every chunk of a built manifest against the files on disk: owner,
 * offset, length, hash, and that a corrupted or mis-sized chunk is refused. */
static void check_chunks_against_disk(const struct manifest *m) {
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  uint32_t expect_next = 0;

  for (uint32_t f = 0; f < m->file_count; f++) {
    const struct manifest_file *mf = &m->files[f];
    assert_int_equal(mf->first_chunk, expect_next);
    assert_int_equal(mf->chunk_count, (mf->size + cs - 1) / cs);
    expect_next += mf->chunk_count;

    char path[MT_PATH_CAP];
    tu_path(path, sizeof(path), m->local_root, mf->path);
    size_t len = 0;
    uint8_t *data = tu_read_file(path, &len);
    assert_non_null(data);
    assert_int_equal(len, mf->size);
    for (uint32_t c = 0; c < mf->chunk_count; c++) {
      uint32_t idx = mf->first_chunk + c;
      uint32_t owner = UINT32_MAX;
      uint64_t off = UINT64_MAX;
      assert_err(manifest_chunk_file(m, idx, &owner, &off), 0);
      assert_int_equal(owner, f);
      assert_int_equal(off, (uint64_t)c * cs);
      uint64_t want = mf->size - off < cs ? mf->size - off : cs;
      uint32_t clen = manifest_chunk_len(m, idx);
      assert_int_equal(clen, want);

      uint8_t *chunk = malloc((size_t)clen + 1);
      assert_non_null(chunk);
      memcpy(chunk, data + off, clen);
      chunk[clen] = 0;
      assert_err(manifest_verify_chunk(m, idx, chunk, clen), 0);
      assert_err(manifest_verify_chunk(m, idx, chunk, clen + 1), SHOAL_EINVAL);
      assert_err(manifest_verify_chunk(m, idx, chunk, clen - 1), SHOAL_EINVAL);
      /* The digest alone, as a caller that hashed the chunk piece by
       * piece checks it: each bit of it matters. */
      uint8_t h[CHASH_BYTES];
      assert_err(chash_once(h, chunk, clen), 0);
      assert_err(manifest_chunk_digest_check(m, idx, h), 0);
      assert_err(manifest_chunk_digest_check(m, m->chunk_count, h),
                 SHOAL_EINVAL);
      for (unsigned bit = 0; bit < CHASH_BYTES * 8; bit++) {
        h[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_err(manifest_chunk_digest_check(m, idx, h), SHOAL_EHASH);
        h[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      }
      chunk[clen / 2] ^= 0x01;
      assert_err(manifest_verify_chunk(m, idx, chunk, clen), SHOAL_EHASH);
      free(chunk);
    }
    free(data);
  }
  assert_int_equal(m->chunk_count, expect_next);
  /* One past the last chunk is out of range everywhere. */
  uint32_t owner;
  uint64_t off;
  uint8_t byte = 0;
  assert_err(manifest_chunk_file(m, m->chunk_count, &owner, &off),
             SHOAL_EINVAL);
  assert_int_equal(manifest_chunk_len(m, m->chunk_count), 0);
  assert_err(manifest_verify_chunk(m, m->chunk_count, &byte, 0), SHOAL_EINVAL);
  assert_err(manifest_chunk_file(m, UINT32_MAX, &owner, &off), SHOAL_EINVAL);
}

/* ---------------------------------------------------------------------- */
/* Building from a single file. */

static struct manifest *build_single(const char *dir, size_t size,
                                     unsigned chunk_log2) {
  char path[MT_PATH_CAP];
  struct manifest_build_opts o;
  struct rec r;
  rec_opts(&o, &r);
  o.chunk_log2 = chunk_log2;
  mt_write_filled(dir, "file.bin", size, 11);
  tu_path(path, sizeof(path), dir, "file.bin");
  struct manifest *m = mt_build(path, &mf_pub, &o);

  assert_int_equal(m->kind, MANIFEST_KIND_FILE);
  assert_string_equal(m->name, "file.bin");
  assert_string_equal(m->local_root, dir);
  assert_int_equal(m->file_count, 1);
  assert_string_equal(m->files[0].path, m->name);
  assert_int_equal(m->files[0].size, size);
  assert_int_equal(m->total_size, size);
  assert_memory_equal(m->publisher, mf_pub.pk, IDENTITY_PK_BYTES);
  assert_int_equal(r.skips, 0);
  check_chunks_against_disk(m);
  return m;
}

static void test_build_empty_file_has_no_chunks(void **state) {
  const char *dir = *state;
  struct manifest *m = build_single(dir, 0, 0);
  assert_int_equal(m->chunk_count, 0);
  assert_int_equal(m->total_size, 0);
  assert_int_equal(m->chunk_log2, MANIFEST_CHUNK_LOG2_MIN);
  assert_int_equal(m->files[0].chunk_count, 0);
  assert_err(mt_decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
}

static void test_build_one_byte_file_is_one_short_chunk(void **state) {
  const char *dir = *state;
  struct manifest *m = build_single(dir, 1, 0);
  assert_int_equal(m->chunk_count, 1);
  assert_int_equal(manifest_chunk_len(m, 0), 1);
  manifest_free(m);
}

static void test_build_exactly_one_chunk(void **state) {
  const char *dir = *state;
  struct manifest *m = build_single(dir, CS14, 14);
  assert_int_equal(m->chunk_log2, 14);
  assert_int_equal(m->chunk_count, 1);
  assert_int_equal(manifest_chunk_len(m, 0), CS14);
  manifest_free(m);
}

static void test_build_one_chunk_plus_one_byte_is_two_chunks(void **state) {
  const char *dir = *state;
  struct manifest *m = build_single(dir, CS14 + 1, 14);
  assert_int_equal(m->chunk_count, 2);
  assert_int_equal(manifest_chunk_len(m, 0), CS14);
  assert_int_equal(manifest_chunk_len(m, 1), 1);
  uint32_t f;
  uint64_t off;
  assert_err(manifest_chunk_file(m, 1, &f, &off), 0);
  assert_int_equal(f, 0);
  assert_int_equal(off, CS14);
  /* The two chunks hash differently, so each hash is really its own. */
  assert_memory_not_equal(m->hashes, m->hashes + MANIFEST_HASH_BYTES,
                          MANIFEST_HASH_BYTES);
  manifest_free(m);
}

static void test_build_refuses_bad_chunk_log2_option(void **state) {
  const char *dir = *state;
  char path[MT_PATH_CAP];
  const unsigned bad[] = {1, 13, 25, 256 + 14};
  mt_write_filled(dir, "f", 10, 1);
  tu_path(path, sizeof(path), dir, "f");
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct manifest_build_opts o = {.chunk_log2 = bad[i]};
    struct manifest *m = (struct manifest *)&m;
    assert_err(manifest_build(path, &mf_pub, &o, &m), SHOAL_EINVAL);
    assert_null(m);
  }
  /* Both ends of the range are accepted. */
  for (unsigned l = MANIFEST_CHUNK_LOG2_MIN; l <= MANIFEST_CHUNK_LOG2_MAX;
       l += MANIFEST_CHUNK_LOG2_MAX - MANIFEST_CHUNK_LOG2_MIN) {
    struct manifest_build_opts o = {.chunk_log2 = l};
    struct manifest *m = mt_build(path, &mf_pub, &o);
    assert_int_equal(m->chunk_log2, l);
    manifest_free(m);
  }
}

static void test_build_without_opts_works(void **state) {
  const char *dir = *state;
  mt_write_filled(dir, "top/a", 3000, 1);
  struct manifest *m = build_in(dir, "top", NULL);
  assert_int_equal(m->kind, MANIFEST_KIND_FOLDER);
  assert_int_equal(m->file_count, 1);
  check_chunks_against_disk(m);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Building from a folder. */

static void
test_build_folder_records_files_sorted_and_skips_specials(void **state) {
  const char *dir = *state;
  struct manifest_build_opts o;
  struct rec r;
  mt_make_tree(dir);
  rec_opts(&o, &r);
  o.chunk_log2 = 14;
  struct manifest *m = build_in(dir, "top", &o);

  assert_int_equal(m->kind, MANIFEST_KIND_FOLDER);
  assert_string_equal(m->name, "top");
  assert_string_equal(m->local_root, dir);
  /* Segment-wise order: "top/d/x" sorts before "top/d-e" although '-' is
   * below '/' in ASCII. */
  static const uint64_t sizes[] = {1, 0, 100, 20000, 40000};
  static const uint32_t first[] = {0, 1, 1, 2, 4};
  static const uint32_t count[] = {1, 0, 1, 2, 3};
  assert_int_equal(m->file_count, 5);
  uint64_t total = 0;
  for (uint32_t i = 0; i < 5; i++) {
    assert_string_equal(m->files[i].path, mt_tree_paths[i]);
    assert_int_equal(m->files[i].size, sizes[i]);
    assert_int_equal(m->files[i].first_chunk, first[i]);
    assert_int_equal(m->files[i].chunk_count, count[i]);
    /* The one executable file, and every file's modification time. */
    assert_int_equal(m->files[i].mode, i == 3 ? MANIFEST_MODE_EXEC : 0);
    assert_int_equal(m->files[i].mtime_sec, mt_tree_mtime(i));
    assert_int_equal(m->files[i].mtime_nsec, mt_tree_nsec(i));
    total += sizes[i];
  }
  assert_int_equal(m->total_size, total);
  assert_int_equal(m->chunk_count, 7);
  check_chunks_against_disk(m);
  /* The empty folders, in canonical order: "top/nest" holds only an empty
   * folder and is implied by it; "top/lonely" is empty once its symlink
   * is left out. */
  assert_int_equal(m->folder_count, 3);
  for (uint32_t i = 0; i < 3; i++) {
    assert_string_equal(m->folders[i], mt_tree_folders[i]);
  }

  /* The symlinks, the fifo and the unsafe name were reported, each once
   * with a reason. */
  assert_int_equal(r.skips, 4);
  const char *const skipped[] = {"top/link", "top/lonely/l", "top/fifo",
                                 "top/back\\slash"};
  for (size_t i = 0; i < 4; i++) {
    int k = rec_find_skip(&r, skipped[i]);
    if (k < 0) {
      print_error("not reported as skipped: %s\n", skipped[i]);
    }
    assert_true(k >= 0);
    assert_true(strlen(r.skip_why[k]) > 0);
  }
  /* A program that reports these (shoal-peer's --json events) gets the
   * path and a reason from a fixed set that tells the kinds apart. */
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/link")],
                      MANIFEST_BUILD_SKIP_SYMLINK);
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/lonely/l")],
                      MANIFEST_BUILD_SKIP_SYMLINK);
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/fifo")],
                      MANIFEST_BUILD_SKIP_SPECIAL);
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/back\\slash")],
                      MANIFEST_BUILD_SKIP_UNSAFE_NAME);
  /* Progress reached the total exactly, never going back. */
  assert_true(r.progress_calls > 0);
  assert_false(r.went_backwards);
  assert_false(r.total_changed);
  assert_int_equal(r.last_done, total);
  assert_int_equal(r.last_total, total);

  /* Whatever the builder makes, the decoder accepts. */
  assert_err(mt_decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
}

static void test_build_trailing_slash_names_the_folder(void **state) {
  const char *dir = *state;
  mt_write_filled(dir, "top/f", 10, 1);
  struct manifest *m = build_in(dir, "top/", NULL);
  assert_string_equal(m->name, "top");
  assert_string_equal(m->files[0].path, "top/f");
  manifest_free(m);
}

static void test_build_folder_of_empty_folders_lists_the_deepest(void **state) {
  const char *dir = *state;
  mt_mkdir(dir, "top");
  mt_mkdir(dir, "top/sub");
  mt_mkdir(dir, "top/a");
  mt_mkdir(dir, "top/a/b");
  mt_mkdir(dir, "top/a/c");
  struct manifest *m = build_in(dir, "top", NULL);
  assert_int_equal(m->kind, MANIFEST_KIND_FOLDER);
  assert_int_equal(m->file_count, 0);
  assert_int_equal(m->chunk_count, 0);
  assert_int_equal(m->total_size, 0);
  /* "top/a" holds only empty folders: they imply it. */
  assert_int_equal(m->folder_count, 3);
  assert_string_equal(m->folders[0], "top/a/b");
  assert_string_equal(m->folders[1], "top/a/c");
  assert_string_equal(m->folders[2], "top/sub");
  assert_err(mt_decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);

  /* A folder with nothing in it at all: no files and no folders. */
  mt_mkdir(dir, "bare");
  m = build_in(dir, "bare", NULL);
  assert_int_equal(m->file_count, 0);
  assert_int_equal(m->folder_count, 0);
  assert_err(mt_decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
}

static void test_build_records_the_executable_bit_and_mtime(void **state) {
  const char *dir = *state;
  /* The owner's execute bit makes a file executable; nothing else does,
   * and the special bits are not recorded at all. */
  static const struct {
    const char *path;
    mode_t mode;
    uint8_t want;
  } files[] = {
      {"top/a", 0644, 0},
      {"top/b", 0755, MANIFEST_MODE_EXEC},
      {"top/c", 0700, MANIFEST_MODE_EXEC},
      {"top/d", 0744, MANIFEST_MODE_EXEC},
      {"top/e", 0654, 0},
      {"top/f", 0645, 0},
      {"top/g", 04755, MANIFEST_MODE_EXEC},
      {"top/h", 01644, 0},
      {"top/i", 0444, 0},
  };
  const size_t n = sizeof(files) / sizeof(files[0]);
  for (size_t i = 0; i < n; i++) {
    mt_write_filled(dir, files[i].path, 10 + i, i);
    mt_set_mode(dir, files[i].path, files[i].mode);
    mt_set_mtime(dir, files[i].path, 1234567890 + (int64_t)i,
                 999999999 - (long)i);
  }
  struct manifest *m = build_in(dir, "top", NULL);
  assert_int_equal(m->file_count, n);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(m->files[i].path, files[i].path);
    if (m->files[i].mode != files[i].want) {
      print_error("%s (mode %o)\n", files[i].path, (unsigned)files[i].mode);
    }
    assert_int_equal(m->files[i].mode, files[i].want);
    assert_int_equal(m->files[i].mtime_sec, 1234567890 + (int64_t)i);
    assert_int_equal(m->files[i].mtime_nsec, 999999999 - (long)i);
  }
  /* And a decoded manifest gives them back. */
  struct manifest *d = NULL;
  assert_err(manifest_decode(m->encoded, m->encoded_len, &d), 0);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(d->files[i].mode, m->files[i].mode);
    assert_int_equal(d->files[i].mtime_sec, m->files[i].mtime_sec);
    assert_int_equal(d->files[i].mtime_nsec, m->files[i].mtime_nsec);
  }
  manifest_free(d);
  manifest_free(m);

  /* A single-file content carries them too. */
  m = build_in(dir, "top/b", NULL);
  assert_int_equal(m->kind, MANIFEST_KIND_FILE);
  assert_int_equal(m->files[0].mode, MANIFEST_MODE_EXEC);
  assert_int_equal(m->files[0].mtime_sec, 1234567891);
  assert_int_equal(m->files[0].mtime_nsec, 999999998);
  manifest_free(m);
}

static void
test_build_refuses_special_file_and_unsafe_name_at_top(void **state) {
  const char *dir = *state;
  char p[MT_PATH_CAP];
  char err_path[MT_PATH_CAP];
  struct manifest_build_opts o = {.err_path = err_path,
                                  .err_path_cap = sizeof(err_path)};
  struct manifest *m = NULL;
  tu_path(p, sizeof(p), dir, "pipe");
  assert_int_equal(mkfifo(p, 0644), 0);
  err_path[0] = '\0';
  assert_err(manifest_build(p, &mf_pub, &o, &m), SHOAL_EPATH);
  assert_null(m);
  assert_string_equal(err_path, p);

  mt_write_filled(dir, "bad\\name", 4, 1);
  tu_path(p, sizeof(p), dir, "bad\\name");
  err_path[0] = '\0';
  assert_err(manifest_build(p, &mf_pub, &o, &m), SHOAL_EPATH);
  assert_null(m);
  assert_string_equal(err_path, p);
}

/* Writes top/d/d/.../d/f with `folders` folders "d" below top, and the
 * relative path of the deepest folder into rel. */
static void make_nested(const char *dir, unsigned folders, char *rel,
                        size_t cap) {
  size_t n = (size_t)snprintf(rel, cap, "top");
  for (unsigned i = 0; i < folders; i++) {
    n += (size_t)snprintf(rel + n, cap - n, "/d");
  }
  char file[MT_PATH_CAP];
  assert_true(n + 3 <= sizeof(file));
  memcpy(file, rel, n);
  memcpy(file + n, "/f", 3);
  mt_write_filled(dir, file, 10, folders);
}

static void
test_build_refuses_folders_nested_deeper_than_the_limit(void **state) {
  const char *dir = *state;
  char top[MT_PATH_CAP];
  char rel[MT_PATH_CAP];
  char err_path[MT_PATH_CAP];
  struct manifest_build_opts o = {.err_path = err_path,
                                  .err_path_cap = sizeof(err_path)};
  /* MANIFEST_MAX_DEPTH - 1 folders below the name: the file's path has
   * MANIFEST_MAX_DEPTH + 1 segments, the most a decoder accepts. */
  make_nested(dir, MANIFEST_MAX_DEPTH - 1, rel, sizeof(rel));
  tu_path(top, sizeof(top), dir, "top");
  struct manifest *m = mt_build(top, &mf_pub, &o);
  assert_int_equal(m->file_count, 1);
  assert_err(mt_decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
  tu_rmtree(top);

  /* One folder more is refused, naming the folder that is too deep. */
  make_nested(dir, MANIFEST_MAX_DEPTH, rel, sizeof(rel));
  err_path[0] = '\0';
  m = (struct manifest *)&m;
  assert_err(manifest_build(top, &mf_pub, &o, &m), SHOAL_ETOOBIG);
  assert_null(m);
  size_t a = strlen(err_path);
  size_t b = strlen(rel);
  if (a < b || strcmp(err_path + a - b, rel) != 0) {
    print_error("err_path %s does not end with %s\n", err_path, rel);
    fail();
  }
}

static void test_build_nonexistent_path_is_ENOENT_with_err_path(void **state) {
  const char *dir = *state;
  char p[MT_PATH_CAP];
  char err_path[MT_PATH_CAP];
  tu_path(p, sizeof(p), dir, "missing/thing");
  for (unsigned threads = 0; threads <= 2; threads += 2) {
    struct manifest_build_opts o = {.threads = threads,
                                    .err_path = err_path,
                                    .err_path_cap = sizeof(err_path)};
    struct manifest *m = (struct manifest *)&m;
    err_path[0] = '\0';
    assert_err(manifest_build(p, &mf_pub, &o, &m), UV_ENOENT);
    assert_null(m);
    assert_string_equal(err_path, p);
  }
  /* On a caller's loop the error comes back at once and cb never runs. */
  uv_loop_t loop;
  struct done_rec d = {0};
  struct manifest_builder *b = (struct manifest_builder *)&b;
  struct manifest_build_opts o = {.err_path = err_path,
                                  .err_path_cap = sizeof(err_path)};
  err_path[0] = '\0';
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, p, &mf_pub, &o, on_built, &d, &b),
             UV_ENOENT);
  assert_null(b);
  assert_string_equal(err_path, p);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---------------------------------------------------------------------- */
/* Content IDs. */

static void test_same_content_gives_same_id_whatever_the_threads(void **state) {
  const char *dir1 = *state;
  char dir2[MT_PATH_CAP];
  char top1[MT_PATH_CAP];
  char top2[MT_PATH_CAP];
  mt_tmpdir(dir2, sizeof(dir2));
  mt_make_tree(dir1);
  mt_make_tree(dir2); /* the same content in another place, made later */
  tu_path(top1, sizeof(top1), dir1, "top");
  tu_path(top2, sizeof(top2), dir2, "top");

  struct manifest_build_opts o0 = {.threads = 0};
  struct manifest_build_opts o2 = {.threads = 2};
  struct manifest *a = mt_build(top1, &mf_pub, &o0);
  struct manifest *b = mt_build(top1, &mf_pub, &o0);
  struct manifest *c = mt_build(top1, &mf_pub, &o2);
  struct manifest *d = mt_build(top2, &mf_pub, &o2);
  assert_same_bytes(a, b);
  assert_same_bytes(a, c);
  assert_same_bytes(a, d);

  /* One changed byte changes the ID. */
  uint8_t x[100];
  tu_fill(x, sizeof(x), 3);
  x[42] ^= 0x80;
  tu_write_file(dir2, "top/d/x", x, sizeof(x));
  mt_set_mtime(dir2, "top/d/x", mt_tree_mtime(2), mt_tree_nsec(2));
  struct manifest *e = mt_build(top2, &mf_pub, &o0);
  assert_memory_not_equal(a->id, e->id, MANIFEST_ID_BYTES);
  /* "top/d/x" is chunk 1; only its hash changed. */
  assert_memory_equal(a->hashes, e->hashes, MANIFEST_HASH_BYTES);
  assert_memory_not_equal(a->hashes + MANIFEST_HASH_BYTES,
                          e->hashes + MANIFEST_HASH_BYTES, MANIFEST_HASH_BYTES);
  assert_memory_equal(a->hashes + 2 * MANIFEST_HASH_BYTES,
                      e->hashes + 2 * MANIFEST_HASH_BYTES,
                      (size_t)(a->chunk_count - 2) * MANIFEST_HASH_BYTES);

  /* Another publisher makes another content. */
  struct manifest *f = mt_build(top1, &mf_other, &o0);
  assert_memory_not_equal(a->id, f->id, MANIFEST_ID_BYTES);
  assert_memory_equal(f->publisher, mf_other.pk, IDENTITY_PK_BYTES);
  assert_memory_equal(a->hashes, f->hashes,
                      (size_t)a->chunk_count * MANIFEST_HASH_BYTES);

  /* So does anything else a folder holds, with the same bytes in every
   * file: one nanosecond of one file's modification time, one file's
   * executable bit, one more empty folder. */
  struct manifest *g[3];
  mt_set_mtime(dir1, "top/z.bin", mt_tree_mtime(4), mt_tree_nsec(4) + 1);
  g[0] = mt_build(top1, &mf_pub, &o0);
  mt_set_mtime(dir1, "top/z.bin", mt_tree_mtime(4), mt_tree_nsec(4));
  mt_set_mode(dir1, "top/z.bin", 0744);
  g[1] = mt_build(top1, &mf_pub, &o0);
  mt_set_mode(dir1, "top/z.bin", 0644);
  mt_mkdir(dir1, "top/one-more");
  g[2] = mt_build(top1, &mf_pub, &o0);
  for (int i = 0; i < 3; i++) {
    assert_memory_not_equal(a->id, g[i]->id, MANIFEST_ID_BYTES);
    assert_int_equal(g[i]->chunk_count, a->chunk_count);
    assert_memory_equal(a->hashes, g[i]->hashes,
                        (size_t)a->chunk_count * MANIFEST_HASH_BYTES);
    manifest_free(g[i]);
  }
  char gone[MT_PATH_CAP];
  tu_path(gone, sizeof(gone), dir1, "top/one-more");
  assert_int_equal(rmdir(gone), 0);
  struct manifest *h = mt_build(top1, &mf_pub, &o0);
  assert_same_bytes(a, h);
  manifest_free(h);

  manifest_free(a);
  manifest_free(b);
  manifest_free(c);
  manifest_free(d);
  manifest_free(e);
  manifest_free(f);
  tu_rmtree(dir2);
}

static void
test_thread_pool_build_of_large_file_equals_inline_build(void **state) {
  const char *dir = *state;
  char p[MT_PATH_CAP];
  const size_t size = 20u << 20;
  struct manifest_build_opts o0;
  struct manifest_build_opts o2;
  struct rec r0;
  struct rec r2;
  assert_true(size > 2 * MANIFEST_JOB_BYTES); /* at least three jobs */
  mt_write_filled(dir, "big.bin", size, 99);
  tu_path(p, sizeof(p), dir, "big.bin");

  rec_opts(&o0, &r0);
  rec_opts(&o2, &r2);
  o2.threads = 2;
  struct manifest *a = mt_build(p, &mf_pub, &o0);
  struct manifest *b = mt_build(p, &mf_pub, &o2);
  assert_same_bytes(a, b);
  assert_int_equal(a->chunk_log2, manifest_choose_chunk_log2(size));
  assert_int_equal(b->chunk_count, size >> b->chunk_log2);

  const struct rec *rs[2] = {&r0, &r2};
  for (int i = 0; i < 2; i++) {
    assert_true(rs[i]->progress_calls >= 3);
    assert_false(rs[i]->went_backwards);
    assert_false(rs[i]->total_changed);
    assert_int_equal(rs[i]->last_done, size);
    assert_int_equal(rs[i]->last_total, size);
  }
  check_chunks_against_disk(b);
  manifest_free(a);
  manifest_free(b);
}

/* ---------------------------------------------------------------------- */
/* Building on the caller's loop. */

/* Files in make_small_files() folders used to time changes and cancels:
 * many more than the jobs a one-thread build keeps queued. */
#define SMALL_FILES 8
#define LAST_SMALL_FILE "top/f7"

/* top/ with n one-kilobyte files: one hashing job per file. */
static void make_small_files(const char *dir, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    char rel[64];
    snprintf(rel, sizeof(rel), "top/f%u", i);
    mt_write_filled(dir, rel, 1024, 100 + i);
  }
}

/* A build on a loop of the test's own, and what its callback got. */
struct loop_build {
  uv_loop_t loop;
  struct done_rec d;
};

/* Starts a build of dir/rel on a fresh loop in lb, which must start
 * without calling back; *b (when b is not NULL) is the builder. */
static void start_build(struct loop_build *lb, const char *dir, const char *rel,
                        const struct manifest_build_opts *o,
                        struct manifest_builder **b) {
  char path[MT_PATH_CAP];
  tu_path(path, sizeof(path), dir, rel);
  memset(&lb->d, 0, sizeof(lb->d));
  assert_int_equal(uv_loop_init(&lb->loop), 0);
  assert_err(
      manifest_build_start(&lb->loop, path, &mf_pub, o, on_built, &lb->d, b),
      0);
  if (b != NULL) {
    assert_non_null(*b);
  }
  assert_int_equal(lb->d.calls, 0); /* never inside manifest_build_start() */
}

/* Runs lb's loop until it is empty and closes it: the callback came once,
 * with want, and a manifest exactly when want is 0. Returns the manifest,
 * which the caller frees. */
static struct manifest *finish_build(struct loop_build *lb, int want) {
  assert_int_equal(uv_run(&lb->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(lb->d.calls, 1);
  assert_err(lb->d.status, want);
  if (want == 0) {
    assert_non_null(lb->d.m);
  } else {
    assert_null(lb->d.m);
  }
  assert_int_equal(uv_loop_close(&lb->loop), 0);
  return lb->d.m;
}

static void test_build_start_calls_back_once_on_the_loop(void **state) {
  const char *dir = *state;
  struct loop_build lb;
  struct manifest_builder *b = NULL;
  struct manifest_build_opts o;
  struct rec r;
  make_small_files(dir, 4);
  rec_opts(&o, &r);
  o.threads = 2;

  start_build(&lb, dir, "top", &o, &b);
  /* The builder keeps its own copy of the options. */
  memset(&o, 0, sizeof(o));
  struct manifest *m = finish_build(&lb, 0);
  assert_int_equal(m->file_count, 4);
  assert_int_equal(r.last_done, 4 * 1024);

  struct manifest *s = build_in(dir, "top", NULL);
  assert_same_bytes(m, s);
  manifest_free(s);
  manifest_free(m);
}

static void
test_build_start_of_empty_content_still_calls_back_later(void **state) {
  const char *dir = *state;
  struct loop_build lb;
  tu_write_file(dir, "empty", "", 0);
  start_build(&lb, dir, "empty", NULL, NULL);
  struct manifest *m = finish_build(&lb, 0);
  assert_int_equal(m->chunk_count, 0);
  manifest_free(m);
}

static void test_build_cancel_before_the_loop_runs_is_ECANCELED(void **state) {
  const char *dir = *state;
  make_small_files(dir, SMALL_FILES);
  /* With one thread most jobs are never queued; with many threads all are
   * already in flight and the cancel still wins. */
  const unsigned threads[] = {1, 16};
  for (size_t i = 0; i < 2; i++) {
    struct loop_build lb;
    struct manifest_builder *b = NULL;
    struct manifest_build_opts o = {.threads = threads[i]};
    start_build(&lb, dir, "top", &o, &b);
    manifest_build_cancel(b);
    finish_build(&lb, SHOAL_ECANCELED);
  }
}

static void test_build_cancel_midway_stops_and_calls_back_once(void **state) {
  const char *dir = *state;
  struct loop_build lb;
  struct manifest_builder *b = NULL;
  struct manifest_build_opts o;
  struct rec r;
  make_small_files(dir, SMALL_FILES);
  rec_opts(&o, &r);
  o.threads = 1;
  start_build(&lb, dir, "top", &o, &b);
  r.cancel_on_progress = b; /* the first finished job cancels the rest */
  finish_build(&lb, SHOAL_ECANCELED);
  /* Jobs already queued may finish, but no new one was queued: the build
   * stopped well before the end. */
  assert_true(r.progress_calls >= 1);
  assert_true(r.progress_calls < SMALL_FILES);
  assert_true(r.last_done < r.last_total);
}

/* ---------------------------------------------------------------------- */
/* Files that change after the scan. */

/* Starts a one-thread build of small files on a loop and, before the loop
 * runs, changes the last file with change(): the scan is done and the last
 * file's job is not queued yet, so it opens the file after the loop runs
 * and sees the change. The build fails naming that file. */
static void assert_change_after_scan_is_ECHANGED(const char *dir,
                                                 void (*change)(const char *)) {
  char last[MT_PATH_CAP];
  char err_path[MT_PATH_CAP];
  struct loop_build lb;
  make_small_files(dir, SMALL_FILES);
  tu_path(last, sizeof(last), dir, LAST_SMALL_FILE);
  struct manifest_build_opts o = {
      .threads = 1, .err_path = err_path, .err_path_cap = sizeof(err_path)};
  err_path[0] = '\0';
  start_build(&lb, dir, "top", &o, NULL);
  change(last);
  finish_build(&lb, SHOAL_ECHANGED);
  assert_string_equal(err_path, last);
}

static void
test_file_grown_after_scan_is_ECHANGED_on_caller_loop(void **state) {
  /* Another size. */
  assert_change_after_scan_is_ECHANGED(*state, append_byte);
}

static void
test_file_touched_after_scan_is_ECHANGED_on_caller_loop(void **state) {
  /* The same size and bytes, another mtime. */
  assert_change_after_scan_is_ECHANGED(*state, set_old_mtime);
}

static void test_file_changed_during_blocking_build_is_ECHANGED(void **state) {
  const char *dir = *state;
  char top[MT_PATH_CAP];
  char last[MT_PATH_CAP];
  char err_path[MT_PATH_CAP];
  make_small_files(dir, SMALL_FILES);
  tu_path(top, sizeof(top), dir, "top");
  tu_path(last, sizeof(last), dir, LAST_SMALL_FILE);
  /* Inline (threads 0) and on a private loop with one thread: the first
   * job's progress report grows the last file before its job starts. */
  for (unsigned threads = 0; threads <= 1; threads++) {
    struct manifest_build_opts o;
    struct rec r;
    struct manifest *m = (struct manifest *)&m;
    rec_opts(&o, &r);
    o.threads = threads;
    o.err_path = err_path;
    o.err_path_cap = sizeof(err_path);
    err_path[0] = '\0';
    r.append_on_progress = last;
    assert_err(manifest_build(top, &mf_pub, &o, &m), SHOAL_ECHANGED);
    assert_null(m);
    assert_string_equal(err_path, last);
    /* Every file but the last one was hashed. */
    assert_int_equal(r.progress_calls, SMALL_FILES - 1);
  }
}

/* maphash's SIGBUS handler, as main() found it after maphash_init. */
static struct sigaction g_maphash_sa;

#define CUT_BUILDS 8

struct cutter {
  char path[MT_PATH_CAP];
  off_t size;
  struct timespec mtime; /* put back after each cut */
  atomic_int stop;
  unsigned rounds;
  int err;
};

/* Cuts the file to a third and grows it back until told to stop, putting
 * its modification time back each time, so that the builder's jobs find
 * the file as it was scanned, map it and hash it while it is cut. It
 * pauses a millisecond in each state so that cuts land inside mapped
 * windows (a few do in most runs); no assertion depends on where they
 * land. */
static void *cutter_main(void *arg) {
  struct cutter *c = arg;
  int fd = open(c->path, O_WRONLY | O_CLOEXEC);

  if (fd < 0) {
    c->err = 1;
    return NULL;
  }
  while (!atomic_load(&c->stop)) {
    struct timespec ts[2] = {{0, UTIME_OMIT}, c->mtime};
    struct timespec ms = {0, 1000000};
    if (ftruncate(fd, c->size / 3) != 0 || nanosleep(&ms, NULL) != 0 ||
        ftruncate(fd, c->size) != 0 || futimens(fd, ts) != 0 ||
        nanosleep(&ms, NULL) != 0) {
      c->err = 1;
      break;
    }
    c->rounds++;
  }
  close(fd);
  return NULL;
}

static void
test_file_truncated_while_mapped_fails_the_build_not_the_process(void **state) {
  const char *dir = *state;
  char err_path[CUT_BUILDS][MT_PATH_CAP];
  int errs[CUT_BUILDS];
  struct cutter c;
  struct stat st;
  pthread_t t;

  assert_int_equal(sigaction(SIGBUS, &g_maphash_sa, NULL), 0);
  memset(&c, 0, sizeof(c));
  c.size = (off_t)(3 * MANIFEST_JOB_BYTES + 12345);
  mt_write_filled(dir, "cut.bin", (size_t)c.size, 7);
  tu_path(c.path, sizeof(c.path), dir, "cut.bin");
  assert_int_equal(stat(c.path, &st), 0);
  c.mtime = st.st_mtim;
  assert_int_equal(pthread_create(&t, NULL, cutter_main, &c), 0);
  /* Builds on the pool and inline; the assertions wait until the cutter
   * has stopped. */
  for (unsigned i = 0; i < CUT_BUILDS; i++) {
    struct manifest_build_opts o;
    struct manifest *m = NULL;
    memset(&o, 0, sizeof(o));
    o.threads = i % 2 == 0 ? 2 : 0;
    o.err_path = err_path[i];
    o.err_path_cap = sizeof(err_path[i]);
    err_path[i][0] = '\0';
    errs[i] = manifest_build(c.path, &mf_pub, &o, &m);
    manifest_free(m);
  }
  atomic_store(&c.stop, 1);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(c.err, 0);
  assert_true(c.rounds > 0);
  /* Each build failed with SHOAL_ECHANGED, naming the file, or (where the
   * file looked whole whenever a job looked at it) succeeded as a build
   * from reads would. */
  for (unsigned i = 0; i < CUT_BUILDS; i++) {
    if (errs[i] != 0) {
      assert_err(errs[i], SHOAL_ECHANGED);
      assert_string_equal(err_path[i], c.path);
    }
  }
}

int main(void) {
  if (maphash_init() != 0 || sigaction(SIGBUS, NULL, &g_maphash_sa) != 0) {
    fprintf(stderr, "test_manifest_build: cannot install maphash's handler\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
#define T(name)                                                                \
  cmocka_unit_test_setup_teardown(name, mf_dir_setup, mf_dir_teardown)
      T(test_build_empty_file_has_no_chunks),
      T(test_build_one_byte_file_is_one_short_chunk),
      T(test_build_exactly_one_chunk),
      T(test_build_one_chunk_plus_one_byte_is_two_chunks),
      T(test_build_refuses_bad_chunk_log2_option),
      T(test_build_without_opts_works),
      T(test_build_folder_records_files_sorted_and_skips_specials),
      T(test_build_trailing_slash_names_the_folder),
      T(test_build_folder_of_empty_folders_lists_the_deepest),
      T(test_build_records_the_executable_bit_and_mtime),
      T(test_build_refuses_special_file_and_unsafe_name_at_top),
      T(test_build_refuses_folders_nested_deeper_than_the_limit),
      T(test_build_nonexistent_path_is_ENOENT_with_err_path),
      T(test_same_content_gives_same_id_whatever_the_threads),
      T(test_thread_pool_build_of_large_file_equals_inline_build),
      T(test_build_start_calls_back_once_on_the_loop),
      T(test_build_start_of_empty_content_still_calls_back_later),
      T(test_build_cancel_before_the_loop_runs_is_ECANCELED),
      T(test_build_cancel_midway_stops_and_calls_back_once),
      T(test_file_grown_after_scan_is_ECHANGED_on_caller_loop),
      T(test_file_touched_after_scan_is_ECHANGED_on_caller_loop),
      T(test_file_changed_during_blocking_build_is_ECHANGED),
      T(test_file_truncated_while_mapped_fails_the_build_not_the_process),
#undef T
  };
  return cmocka_run_group_tests(tests, mf_keys_setup, mf_keys_teardown);
}
