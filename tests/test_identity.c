/* Unit tests for common/identity.c: the key file on disk (creation, mode,
 * every kind of damage, links and folders in its place, atomic replacement)
 * and the two-part signatures used by the envelope and the manifest.
 *
 * Every test that touches the file system works in its own tu_tmpdir()
 * folder, made by its setup and removed with tu_rmtree() by its teardown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "common/error.h"
#include "common/identity.h"
#include "tests/lib/testutil.h"
#include "tests/lib/bytes.h"

/* The documented key file layout (common/identity.h). */
#define KF_MAGIC "SHOALKY1"
#define KF_SEED 8
#define KF_PK 40
#define KF_CHECK 72
#define KF_CHECK_BYTES 16

static void key_from_seed(struct identity *id, uint8_t first) {
  uint8_t seed[32];
  for (size_t i = 0; i < sizeof(seed); i++) {
    seed[i] = (uint8_t)(first + i);
  }
  identity_from_seed(id, seed);
}

/* Writes exactly len bytes to path with the given mode (whatever the
 * umask), replacing any file there. */
static void write_key_file(const char *path, const void *data, size_t len,
                           mode_t mode) {
  int fd =
      open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(fchmod(fd, mode), 0);
  if (len > 0) {
    assert_int_equal(write(fd, data, len), (ssize_t)len);
  }
  assert_int_equal(close(fd), 0);
}

/* A valid key file for id, built by hand from the documented layout. */
static void make_key_bytes(const struct identity *id,
                           uint8_t out[IDENTITY_FILE_BYTES]) {
  memcpy(out, KF_MAGIC, 8);
  memcpy(out + KF_SEED, id->sk, 32); /* libsodium's sk is seed || pk */
  memcpy(out + KF_PK, id->pk, 32);
  crypto_generichash(out + KF_CHECK, KF_CHECK_BYTES, out, KF_CHECK, NULL, 0);
}

/* The key of seed 01 in id, its key file in bytes, and in path (4096
 * bytes) DIR/key, where the tests write it. */
static void key_file_bytes(const char *dir, char *path, struct identity *id,
                           uint8_t bytes[IDENTITY_FILE_BYTES]) {
  tu_path(path, 4096, dir, "key");
  key_from_seed(id, 0x01);
  make_key_bytes(id, bytes);
}

/* Number of entries in a folder other than "." and "..", and whether one
 * of them is called `name` (may be NULL). */
static size_t count_entries(const char *dir, const char *name, int *found) {
  DIR *d = opendir(dir);
  struct dirent *de;
  size_t n = 0;
  assert_non_null(d);
  if (found != NULL) {
    *found = 0;
  }
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
      continue;
    }
    n++;
    if (name != NULL && found != NULL && strcmp(de->d_name, name) == 0) {
      *found = 1;
    }
  }
  closedir(d);
  return n;
}

/* Loads path expecting failure `want`, and checks the output was zeroed. */
static void expect_load_error(const char *path, int want) {
  struct identity id;
  memset(&id, 0xa5, sizeof(id));
  assert_int_equal(identity_load(&id, path), want);
  assert_true(bytes_all_zero(&id, sizeof(id)));
}

/* Each file-system test gets a fresh folder as its state; the teardown
 * removes it even when the test fails. */
static int make_dir(void **state) {
  char *dir = malloc(4096);
  if (dir == NULL) {
    return -1;
  }
  tu_tmpdir(dir, 4096);
  *state = dir;
  return 0;
}

static int remove_dir(void **state) {
  tu_rmtree(*state);
  free(*state);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Creating and loading. */

static void
test_load_or_create_makes_a_private_88_byte_file_and_reloads_it(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity id, again, loaded;
  struct stat st;
  int created = -1;
  tu_path(path, sizeof(path), dir, "key");

  /* Even with an empty umask the file must come out 0600. */
  mode_t old = umask(0);
  int err = identity_load_or_create(&id, path, &created);
  umask(old);
  assert_int_equal(err, 0);
  assert_int_equal(created, 1);
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(st.st_size, IDENTITY_FILE_BYTES);
  /* A real key pair: the public key is the second half of the secret. */
  assert_false(bytes_all_zero(id.pk, sizeof(id.pk)));
  assert_memory_equal(id.sk + 32, id.pk, 32);

  /* The bytes follow the documented layout. */
  uint8_t want[IDENTITY_FILE_BYTES];
  size_t flen;
  make_key_bytes(&id, want);
  uint8_t *file = tu_read_file(path, &flen);
  assert_non_null(file);
  assert_int_equal(flen, IDENTITY_FILE_BYTES);
  assert_memory_equal(file, want, IDENTITY_FILE_BYTES);
  free(file);

  created = -1;
  assert_int_equal(identity_load_or_create(&again, path, &created), 0);
  assert_int_equal(created, 0);
  assert_memory_equal(&again, &id, sizeof(id));
  assert_int_equal(identity_load(&loaded, path), 0);
  assert_memory_equal(&loaded, &id, sizeof(id));
  /* created may be NULL. */
  assert_int_equal(identity_load_or_create(&loaded, path, NULL), 0);
  assert_memory_equal(&loaded, &id, sizeof(id));
  assert_int_equal(count_entries(dir, NULL, NULL), 1);

  identity_close(&id);
  identity_close(&again);
  identity_close(&loaded);
}

static void test_hand_built_key_file_loads(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity id, loaded;
  uint8_t bytes[IDENTITY_FILE_BYTES];
  key_file_bytes(dir, path, &id, bytes);
  write_key_file(path, bytes, sizeof(bytes), 0600);
  assert_int_equal(identity_load(&loaded, path), 0);
  assert_memory_equal(&loaded, &id, sizeof(id));
  /* Owner-only modes other than 0600 are fine too. */
  write_key_file(path, bytes, sizeof(bytes), 0400);
  assert_int_equal(identity_load(&loaded, path), 0);
  assert_memory_equal(&loaded, &id, sizeof(id));
}

static void test_group_or_other_permission_bits_are_EKEYPERM(void **state) {
  static const mode_t modes[] = {0640, 0604, 0644, 0660, 0606,
                                 0620, 0602, 0610, 0601, 0777};
  const char *dir = *state;
  char path[4096];
  struct identity id;
  uint8_t bytes[IDENTITY_FILE_BYTES];
  key_file_bytes(dir, path, &id, bytes);
  for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
    write_key_file(path, bytes, sizeof(bytes), modes[k]);
    expect_load_error(path, SHOAL_EKEYPERM);
    /* load_or_create neither loads it nor replaces it. */
    int created = -1;
    struct identity other;
    assert_int_equal(identity_load_or_create(&other, path, &created),
                     SHOAL_EKEYPERM);
    assert_int_equal(created, 0);
    size_t flen;
    uint8_t *file = tu_read_file(path, &flen);
    assert_non_null(file);
    assert_int_equal(flen, sizeof(bytes));
    assert_memory_equal(file, bytes, sizeof(bytes));
    free(file);
  }
  /* The mode is checked before the contents are read. */
  write_key_file(path, "junk", 4, 0644);
  expect_load_error(path, SHOAL_EKEYPERM);
}

/* ---------------------------------------------------------------------- */
/* Damaged files. */

static void test_every_flipped_bit_and_byte_is_EKEYFILE(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity id;
  uint8_t bytes[IDENTITY_FILE_BYTES], bad[IDENTITY_FILE_BYTES];
  key_file_bytes(dir, path, &id, bytes);
  for (size_t pos = 0; pos < sizeof(bytes); pos++) {
    for (unsigned mask = 1; mask <= 0x100; mask <<= 1) {
      memcpy(bad, bytes, sizeof(bad));
      /* Each single bit, then the whole byte inverted (mask 0x100). */
      bad[pos] ^= (uint8_t)(mask == 0x100 ? 0xff : mask);
      write_key_file(path, bad, sizeof(bad), 0600);
      expect_load_error(path, SHOAL_EKEYFILE);
    }
  }
}

static void test_every_truncation_is_EKEYFILE(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity id;
  uint8_t bytes[IDENTITY_FILE_BYTES];
  key_file_bytes(dir, path, &id, bytes);
  for (size_t n = 0; n < sizeof(bytes); n++) {
    write_key_file(path, bytes, n, 0600);
    expect_load_error(path, SHOAL_EKEYFILE);
  }
}

static void test_trailing_bytes_are_EKEYFILE(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity id;
  uint8_t bytes[4096];
  memset(bytes, 0, sizeof(bytes));
  key_file_bytes(dir, path, &id, bytes);
  write_key_file(path, bytes, IDENTITY_FILE_BYTES + 1, 0600);
  expect_load_error(path, SHOAL_EKEYFILE);
  bytes[IDENTITY_FILE_BYTES] = '\n'; /* an editor's newline */
  write_key_file(path, bytes, IDENTITY_FILE_BYTES + 1, 0600);
  expect_load_error(path, SHOAL_EKEYFILE);
  write_key_file(path, bytes, sizeof(bytes), 0600);
  expect_load_error(path, SHOAL_EKEYFILE);
}

/* Magic and checksum right, but the public key is not the seed's. */
static void
test_mismatched_key_pair_with_valid_checksum_is_EKEYFILE(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity a, b;
  uint8_t bytes[IDENTITY_FILE_BYTES];
  tu_path(path, sizeof(path), dir, "key");
  key_from_seed(&a, 0x01);
  key_from_seed(&b, 0x21);
  memcpy(a.pk, b.pk, sizeof(a.pk));
  make_key_bytes(&a, bytes);
  write_key_file(path, bytes, sizeof(bytes), 0600);
  expect_load_error(path, SHOAL_EKEYFILE);
}

/* ---------------------------------------------------------------------- */
/* Things that are not a key file. */

static void test_missing_file_is_ENOENT(void **state) {
  const char *dir = *state;
  char path[4096];
  tu_path(path, sizeof(path), dir, "nokey");
  expect_load_error(path, UV_ENOENT);
  tu_path(path, sizeof(path), dir, "nodir/key");
  expect_load_error(path, UV_ENOENT);
  assert_int_equal(count_entries(dir, NULL, NULL), 0);
}

static void test_symlink_in_place_of_the_key_is_refused(void **state) {
  const char *dir = *state;
  char real[4096], link[4096], dangling[4096], target[4096];
  struct identity id, got;
  int created = -1;
  tu_path(real, sizeof(real), dir, "real");
  tu_path(link, sizeof(link), dir, "link");
  tu_path(dangling, sizeof(dangling), dir, "dangling");
  tu_path(target, sizeof(target), dir, "target");
  assert_int_equal(identity_load_or_create(&id, real, NULL), 0);
  assert_int_equal(symlink(real, link), 0);

  /* O_NOFOLLOW: the link is not followed even to a valid key. */
  expect_load_error(link, UV_ELOOP);
  memset(&got, 0xa5, sizeof(got));
  assert_int_equal(identity_load_or_create(&got, link, &created), UV_ELOOP);
  assert_int_equal(created, 0);
  assert_true(bytes_all_zero(&got, sizeof(got)));
  assert_int_equal(identity_load(&got, real), 0);
  assert_memory_equal(&got, &id, sizeof(id));

  /* A dangling link is not followed to create a key at its target. */
  assert_int_equal(symlink(target, dangling), 0);
  created = -1;
  assert_int_equal(identity_load_or_create(&got, dangling, &created), UV_ELOOP);
  assert_int_equal(created, 0);
  int found = 0;
  assert_int_equal(count_entries(dir, "target", &found), 3);
  assert_false(found);

  identity_close(&id);
  identity_close(&got);
}

static void test_directory_in_place_of_the_key_is_refused(void **state) {
  const char *dir = *state;
  char path[4096];
  struct identity id;
  int created = -1;
  tu_path(path, sizeof(path), dir, "key");
  assert_int_equal(mkdir(path, 0700), 0);
  expect_load_error(path, SHOAL_EKEYFILE);
  memset(&id, 0xa5, sizeof(id));
  assert_int_not_equal(identity_load_or_create(&id, path, &created), 0);
  assert_int_equal(created, 0);
  assert_true(bytes_all_zero(&id, sizeof(id)));
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
}

/* ---------------------------------------------------------------------- */
/* Saving. */

static void
test_save_replaces_atomically_and_leaves_no_temp_files(void **state) {
  const char *dir = *state;
  char path[4096], other[4096];
  struct identity a, b, got;
  struct stat before, after, kept;
  tu_path(path, sizeof(path), dir, "key");
  tu_path(other, sizeof(other), dir, "other-link");
  key_from_seed(&a, 0x01);
  key_from_seed(&b, 0x21);

  assert_int_equal(identity_save(&a, path), 0);
  assert_int_equal(count_entries(dir, NULL, NULL), 1);
  /* A second name for the old file shows whether it was rewritten in place
   * (both names would change) or replaced by a rename (only one does). */
  assert_int_equal(link(path, other), 0);
  assert_int_equal(stat(path, &before), 0);

  assert_int_equal(identity_save(&b, path), 0);
  assert_int_equal(identity_load(&got, path), 0);
  assert_memory_equal(&got, &b, sizeof(b));
  assert_int_equal(stat(path, &after), 0);
  assert_int_not_equal(after.st_ino, before.st_ino);
  assert_int_equal(after.st_mode & 07777, 0600);
  assert_int_equal(identity_load(&got, other), 0);
  assert_memory_equal(&got, &a, sizeof(a));
  assert_int_equal(stat(other, &kept), 0);
  assert_int_equal(kept.st_ino, before.st_ino);

  /* A world-readable file in the way is replaced by a private one. */
  assert_int_equal(unlink(other), 0);
  write_key_file(path, "junk", 4, 0644);
  assert_int_equal(identity_save(&a, path), 0);
  assert_int_equal(stat(path, &after), 0);
  assert_int_equal(after.st_mode & 07777, 0600);
  assert_int_equal(identity_load(&got, path), 0);
  assert_memory_equal(&got, &a, sizeof(a));

  int found = 0;
  assert_int_equal(count_entries(dir, "key", &found), 1);
  assert_true(found);
  identity_close(&got);
}

static void test_failed_save_leaves_no_temp_files(void **state) {
  const char *dir = *state;
  char path[4096], inner[4096];
  struct identity a;
  key_from_seed(&a, 0x01);

  /* The rename fails when a non-empty folder holds the name. */
  tu_path(path, sizeof(path), dir, "key");
  assert_int_equal(mkdir(path, 0700), 0);
  tu_path(inner, sizeof(inner), path, "keep");
  write_key_file(inner, "x", 1, 0600);
  assert_true(identity_save(&a, path) < 0);
  int found = 0;
  assert_int_equal(count_entries(dir, "key", &found), 1);
  assert_true(found);
  assert_int_equal(count_entries(path, "keep", &found), 1);
  assert_true(found);

  /* No folder to write into at all. */
  tu_path(path, sizeof(path), dir, "missing/key");
  assert_int_equal(identity_save(&a, path), UV_ENOENT);
  assert_int_equal(count_entries(dir, NULL, NULL), 1);
}

static void test_too_long_path_is_refused_by_save(void **state) {
  struct identity a;
  char path[5000];
  (void)state;
  key_from_seed(&a, 0x01);
  memset(path, 'a', sizeof(path) - 1);
  path[sizeof(path) - 1] = '\0';
  assert_int_equal(identity_save(&a, path), UV_ENAMETOOLONG);
}

/* ---------------------------------------------------------------------- */
/* Keys in memory. */

static void test_close_zeroes_the_whole_identity(void **state) {
  struct identity id;
  (void)state;
  identity_generate(&id);
  assert_false(bytes_all_zero(id.sk, sizeof(id.sk)));
  identity_close(&id);
  assert_true(bytes_all_zero(&id, sizeof(id)));
}

static void test_generate_gives_distinct_valid_key_pairs(void **state) {
  struct identity a, b;
  uint8_t pk[IDENTITY_PK_BYTES];
  (void)state;
  identity_generate(&a);
  identity_generate(&b);
  assert_memory_not_equal(a.pk, b.pk, sizeof(a.pk));
  assert_int_equal(crypto_sign_ed25519_sk_to_pk(pk, a.sk), 0);
  assert_memory_equal(pk, a.pk, sizeof(pk));
  identity_close(&a);
  identity_close(&b);
}

static void test_from_seed_is_deterministic_ed25519(void **state) {
  /* Public key of seed 01 02 ... 20, as in tests/vectors/README.md. */
  static const uint8_t want[32] = {
      0x79, 0xb5, 0x56, 0x2e, 0x8f, 0xe6, 0x54, 0xf9, 0x40, 0x78, 0xb1,
      0x12, 0xe8, 0xa9, 0x8b, 0xa7, 0x90, 0x1f, 0x85, 0x3a, 0xe6, 0x95,
      0xbe, 0xd7, 0xe0, 0xe3, 0x91, 0x0b, 0xad, 0x04, 0x96, 0x64};
  struct identity a, b;
  (void)state;
  key_from_seed(&a, 0x01);
  key_from_seed(&b, 0x01);
  assert_memory_equal(&a, &b, sizeof(a));
  assert_memory_equal(a.pk, want, sizeof(want));
  key_from_seed(&b, 0x02);
  assert_memory_not_equal(a.pk, b.pk, sizeof(a.pk));
}

/* ---------------------------------------------------------------------- */
/* Two-part signatures. */

static void check_sign2(size_t alen, size_t blen) {
  struct identity a, b;
  uint8_t sig[IDENTITY_SIG_BYTES], direct[IDENTITY_SIG_BYTES];
  key_from_seed(&a, 0x01);
  key_from_seed(&b, 0x21);
  uint8_t *all = malloc(alen + blen + 1);
  assert_non_null(all);
  tu_fill(all, alen + blen, alen * 7919 + blen);
  /* Separate exactly-sized copies so AddressSanitizer sees any over-read
   * (at least one byte each, so that no pointer is NULL). */
  uint8_t *pa = malloc(alen > 0 ? alen : 1);
  uint8_t *pb = malloc(blen > 0 ? blen : 1);
  assert_non_null(pa);
  assert_non_null(pb);
  memcpy(pa, all, alen);
  memcpy(pb, all + alen, blen);

  assert_int_equal(identity_sign2(&a, pa, alen, pb, blen, sig), 0);
  /* It is an ordinary Ed25519 signature over a || b. */
  crypto_sign_detached(direct, NULL, all, alen + blen, a.sk);
  assert_memory_equal(sig, direct, sizeof(sig));
  assert_int_equal(identity_verify2(a.pk, pa, alen, pb, blen, sig), 0);

  assert_int_equal(identity_verify2(b.pk, pa, alen, pb, blen, sig),
                   SHOAL_EBADSIG);
  /* Every bit of the signature; for long messages (slow to hash 512
   * times) the first and last bit of each half. */
  int every = alen + blen <= 4096;
  for (size_t bit = 0; bit < sizeof(sig) * 8; bit++) {
    if (!every && bit != 0 && bit != 255 && bit != 256 && bit != 511) {
      continue;
    }
    sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(identity_verify2(a.pk, pa, alen, pb, blen, sig),
                     SHOAL_EBADSIG);
    sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  if (blen > 0) {
    pb[blen - 1] ^= 1;
    assert_int_equal(identity_verify2(a.pk, pa, alen, pb, blen, sig),
                     SHOAL_EBADSIG);
    pb[blen - 1] ^= 1;
  }
  if (alen > 0) {
    pa[0] ^= 0x80;
    assert_int_equal(identity_verify2(a.pk, pa, alen, pb, blen, sig),
                     SHOAL_EBADSIG);
    pa[0] ^= 0x80;
  }
  /* One byte fewer or more of b is a different message. */
  if (blen > 0) {
    assert_int_equal(identity_verify2(a.pk, pa, alen, pb, blen - 1, sig),
                     SHOAL_EBADSIG);
  }
  uint8_t *longer = malloc(blen + 1);
  assert_non_null(longer);
  memcpy(longer, all + alen, blen);
  longer[blen] = 0;
  assert_int_equal(identity_verify2(a.pk, pa, alen, longer, blen + 1, sig),
                   SHOAL_EBADSIG);
  free(longer);
  assert_int_equal(identity_verify2(a.pk, pa, alen, pb, blen, sig), 0);
  free(pa);
  free(pb);
  free(all);
  identity_close(&a);
  identity_close(&b);
}

static void test_sign2_round_trips_and_refuses_forgeries(void **state) {
  (void)state;
  check_sign2(24, 100);
  check_sign2(24, 0);
  check_sign2(0, 0);
}

/* Up to 1024 bytes the two parts are joined on the stack, above on the
 * heap: both sides of that line behave the same. */
static void test_sign2_over_1024_bytes_round_trips(void **state) {
  (void)state;
  check_sign2(24, 1000);
  check_sign2(24, 1001);
  check_sign2(1024, 0);
  check_sign2(1025, 0);
  check_sign2(24, 1 << 20);
}

/* Only the concatenation is signed (domain strings carry their own
 * terminator for that reason): where a and b split does not matter. */
static void test_sign2_signs_the_concatenation_only(void **state) {
  struct identity a;
  uint8_t sig[IDENTITY_SIG_BYTES];
  (void)state;
  key_from_seed(&a, 0x01);
  assert_int_equal(identity_sign2(&a, "dom", 3, "ain|msg", 7, sig), 0);
  assert_int_equal(identity_verify2(a.pk, "domain|", 7, "msg", 3, sig), 0);
  assert_int_equal(identity_verify2(a.pk, "domain|msg", 10, NULL, 0, sig), 0);
  assert_int_equal(identity_verify2(a.pk, "domain|", 7, "msh", 3, sig),
                   SHOAL_EBADSIG);
  identity_close(&a);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_load_or_create_makes_a_private_88_byte_file_and_reloads_it,
          make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(test_hand_built_key_file_loads, make_dir,
                                      remove_dir),
      cmocka_unit_test_setup_teardown(
          test_group_or_other_permission_bits_are_EKEYPERM, make_dir,
          remove_dir),
      cmocka_unit_test_setup_teardown(
          test_every_flipped_bit_and_byte_is_EKEYFILE, make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(test_every_truncation_is_EKEYFILE,
                                      make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(test_trailing_bytes_are_EKEYFILE,
                                      make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(
          test_mismatched_key_pair_with_valid_checksum_is_EKEYFILE, make_dir,
          remove_dir),
      cmocka_unit_test_setup_teardown(test_missing_file_is_ENOENT, make_dir,
                                      remove_dir),
      cmocka_unit_test_setup_teardown(
          test_symlink_in_place_of_the_key_is_refused, make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(
          test_directory_in_place_of_the_key_is_refused, make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(
          test_save_replaces_atomically_and_leaves_no_temp_files, make_dir,
          remove_dir),
      cmocka_unit_test_setup_teardown(test_failed_save_leaves_no_temp_files,
                                      make_dir, remove_dir),
      cmocka_unit_test(test_too_long_path_is_refused_by_save),
      cmocka_unit_test(test_close_zeroes_the_whole_identity),
      cmocka_unit_test(test_generate_gives_distinct_valid_key_pairs),
      cmocka_unit_test(test_from_seed_is_deterministic_ed25519),
      cmocka_unit_test(test_sign2_round_trips_and_refuses_forgeries),
      cmocka_unit_test(test_sign2_over_1024_bytes_round_trips),
      cmocka_unit_test(test_sign2_signs_the_concatenation_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
