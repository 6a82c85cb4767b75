#include "tests/lib/mtree.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "tests/lib/testutil.h"

const char *const mt_tree_paths[MT_TREE_FILES] = {
    "top/a/b/c/deep.bin", "top/a/empty.txt", "top/d/x", "top/d-e", "top/z.bin"};
const char *const mt_tree_folders[MT_TREE_FOLDERS] = {
    "top/emptydir", "top/lonely", "top/nest/ed"};

void mt_seed_key(struct identity *id, uint8_t byte) {
  uint8_t seed[32];
  memset(seed, byte, sizeof(seed));
  identity_from_seed(id, seed);
}

void mt_tmpdir(char *out, size_t cap) {
  char raw[PATH_MAX];
  tu_tmpdir(raw, sizeof(raw));
  char *real = realpath(raw, NULL);
  assert_non_null(real);
  assert_true(strlen(real) < cap);
  memcpy(out, real, strlen(real) + 1);
  free(real);
}

void mt_write_filled(const char *dir, const char *rel, size_t len,
                     uint64_t seed) {
  uint8_t *p = malloc(len ? len : 1);
  assert_non_null(p);
  tu_fill(p, len, seed);
  tu_write_file(dir, rel, p, len);
  free(p);
}

void mt_set_mtime(const char *dir, const char *rel, int64_t sec, long nsec) {
  char p[MT_PATH_CAP];
  struct timespec ts[2] = {{(time_t)sec, nsec}, {(time_t)sec, nsec}};
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

void mt_set_mode(const char *dir, const char *rel, mode_t mode) {
  char p[MT_PATH_CAP];
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(chmod(p, mode), 0);
}

void mt_mkdir(const char *dir, const char *rel) {
  char p[MT_PATH_CAP];
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(mkdir(p, 0755), 0);
}

int64_t mt_tree_mtime(size_t i) {
  return 1600000000 + 86400 * (int64_t)i;
}

long mt_tree_nsec(size_t i) {
  return 1000 * (long)i + 7;
}

void mt_make_tree(const char *dir) {
  char p[MT_PATH_CAP];
  static const size_t sizes[MT_TREE_FILES] = {1, 0, 100, 20000, 40000};
  for (size_t i = 0; i < MT_TREE_FILES; i++) {
    mt_write_filled(dir, mt_tree_paths[i], sizes[i], i + 1);
  }
  mt_set_mode(dir, "top/d-e", 0755);
  for (size_t i = 0; i < MT_TREE_FILES; i++) {
    mt_set_mtime(dir, mt_tree_paths[i], mt_tree_mtime(i), mt_tree_nsec(i));
  }
  mt_mkdir(dir, "top/emptydir");
  mt_mkdir(dir, "top/nest");
  mt_mkdir(dir, "top/nest/ed");
  mt_mkdir(dir, "top/lonely");
  tu_path(p, sizeof(p), dir, "top/lonely/l");
  assert_int_equal(symlink("../z.bin", p), 0);
  tu_path(p, sizeof(p), dir, "top/link");
  assert_int_equal(symlink("d/x", p), 0);
  tu_path(p, sizeof(p), dir, "top/fifo");
  assert_int_equal(mkfifo(p, 0644), 0);
  mt_write_filled(dir, "top/back\\slash", 10, 6);
}

struct manifest *mt_file_manifest(const char *name, uint32_t chunks,
                                  uint64_t seed) {
  struct identity id;
  struct manifest *m = calloc(1, sizeof(*m));
  assert_non_null(m);
  m->kind = MANIFEST_KIND_FILE;
  m->name = strdup(name);
  m->files = calloc(1, sizeof(*m->files));
  assert_non_null(m->name);
  assert_non_null(m->files);
  m->file_count = 1;
  m->files[0].path = strdup(name);
  assert_non_null(m->files[0].path);
  m->files[0].size = (uint64_t)chunks << MANIFEST_CHUNK_LOG2_MIN;
  assert_int_equal(manifest_layout(m, MANIFEST_CHUNK_LOG2_MIN), 0);
  tu_fill(m->hashes, (size_t)m->chunk_count * MANIFEST_HASH_BYTES, seed);
  identity_generate(&id);
  assert_int_equal(manifest_seal(m, &id), 0);
  identity_close(&id);
  return m;
}

struct manifest *mt_build(const char *path, const struct identity *id,
                          const struct manifest_build_opts *o) {
  struct manifest *m = NULL;
  int err = manifest_build(path, id, o, &m);
  if (err != 0) {
    print_error("manifest_build %s: %s\n", path, shoal_strerror(err));
  }
  assert_int_equal(err, 0);
  assert_non_null(m);
  assert_non_null(m->encoded);
  return m;
}

int mt_decode_copy(const uint8_t *bytes, size_t len) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len > 0) {
    memcpy(copy, bytes, len);
  }
  struct manifest *m = (struct manifest *)&m; /* must be overwritten */
  int err = manifest_decode(copy, len, &m);
  if (err == 0) {
    assert_non_null(m);
    manifest_free(m);
  } else {
    assert_null(m);
  }
  free(copy);
  return err;
}
