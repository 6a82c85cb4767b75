/* Tests for peer/resume: the resume record's bytes and its file.
 *
 * The hostile cases are the main cases: a record cut at every length, a
 * flipped bit in every byte of every field, the wrong magic, count or
 * content, unused map bits set under a good checksum, and files that are
 * not records at all (links, folders, fifos). Each decode reads a copy of
 * exactly the length it is given, so that a read past it fails under
 * AddressSanitizer, and a map that must stay untouched is filled with a
 * marker first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "peer/resume.h"
#include "tests/lib/testutil.h"

#define PATH_CAP 4096
#define MARK 0xee /* a map byte that decode must not write */

/* The record of docs/storage.md ("Resume record"): hello.txt, one chunk,
 * verified. */
static const uint8_t hello_record[61] = {
    0x53, 0x48, 0x4f, 0x41, 0x4c, 0x52, 0x53, 0x31, /* "SHOALRS1" */
    0x4a, 0x1e, 0xba, 0x21, 0x45, 0xf1, 0x56, 0xd7, 0xbf, 0x2b, 0xc8,
    0x05, 0x78, 0xde, 0xbb, 0x4b, 0x70, 0x34, 0x56, 0x5d, 0x33, 0x43,
    0x9c, 0xc7, 0x9a, 0xf5, 0x53, 0x8a, 0x64, 0xe6, 0xa5, 0x64, /* ID */
    0x00, 0x00, 0x00, 0x01,                                     /* 1 chunk */
    0x80, /* chunk 0 verified */
    0xc8, 0x59, 0x62, 0xef, 0xf4, 0x35, 0x05, 0x24, 0x7f, 0x15, 0xee,
    0x40, 0x93, 0xdc, 0xaa, 0xc5, /* BLAKE2b-128 */
};

/* ---------------------------------------------------------------------- */
/* Helpers */

static void make_id(uint8_t id[MANIFEST_ID_BYTES], uint8_t seed) {
  for (size_t i = 0; i < MANIFEST_ID_BYTES; i++) {
    id[i] = (uint8_t)(seed * 31u + i * 7u + 1u);
  }
}

/* A sealed record of n chunks for id, with chunk i verified when
 * (i * 7 + seed) % 3 == 0; malloc'd, resume_size(n) bytes. */
static uint8_t *make_record(const uint8_t *id, uint32_t n, unsigned seed) {
  uint8_t *rec = calloc(1, resume_size(n));
  assert_non_null(rec);
  for (uint32_t i = 0; i < n; i++) {
    if ((i * 7u + seed) % 3u == 0) {
      rec[RESUME_MAP_AT + i / 8] |= (uint8_t)(0x80u >> (i % 8));
    }
  }
  resume_seal(rec, id, n);
  return rec;
}

/* Decodes a heap copy of exactly len bytes of rec, so that a read past
 * len is caught; map gets MARK bytes first. */
static int decode_copy(const uint8_t *rec, size_t len, const uint8_t *id,
                       uint32_t n, uint8_t *map) {
  uint8_t *copy = malloc(len > 0 ? len : 1);
  assert_non_null(copy);
  memcpy(copy, rec, len);
  memset(map, MARK, resume_map_bytes(n));
  int r = resume_decode(copy, len, id, n, map);
  free(copy);
  return r;
}

static void assert_untouched(const uint8_t *map, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (map[i] != MARK) {
      fail_msg("map byte %zu was written", i);
    }
  }
}

static const char *state_name(int s) {
  switch (s) {
  case RESUME_OK:
    return "OK";
  case RESUME_NONE:
    return "NONE";
  case RESUME_CORRUPT:
    return "CORRUPT";
  case RESUME_OTHER:
    return "OTHER";
  default:
    return shoal_err_name(s);
  }
}

#define assert_state(got, want)                                                \
  do {                                                                         \
    int g_ = (got);                                                            \
    int w_ = (want);                                                           \
    if (g_ != w_) {                                                            \
      fail_msg("got %s, want %s", state_name(g_), state_name(w_));             \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------------------------- */
/* Bytes */

static void test_sizes(void **state) {
  (void)state;
  assert_int_equal(resume_map_bytes(0), 0);
  assert_int_equal(resume_map_bytes(1), 1);
  assert_int_equal(resume_map_bytes(8), 1);
  assert_int_equal(resume_map_bytes(9), 2);
  assert_int_equal(resume_map_bytes(UINT32_MAX), (size_t)1 << 29);
  assert_int_equal(RESUME_COUNT_AT, 40);
  assert_int_equal(RESUME_MAP_AT, 44);
  assert_int_equal(resume_size(0), 60);
  assert_int_equal(resume_size(1), 61);
  assert_int_equal(resume_size(11), 62);
  assert_int_equal(resume_size(MANIFEST_MAX_CHUNKS),
                   60 + MANIFEST_MAX_CHUNKS / 8);
}

static void test_seal_writes_the_documented_record(void **state) {
  uint8_t rec[61];
  uint8_t map[1];
  (void)state;

  memset(rec, 0xaa, sizeof(rec));
  rec[RESUME_MAP_AT] = 0x80;
  resume_seal(rec, hello_record + 8, 1);
  assert_memory_equal(rec, hello_record, sizeof(rec));
  assert_state(
      decode_copy(hello_record, sizeof(hello_record), hello_record + 8, 1, map),
      RESUME_OK);
  assert_int_equal(map[0], 0x80);
}

static void test_round_trip_for_many_counts(void **state) {
  static const uint32_t big[] = {1000, 4096, 65537, MANIFEST_MAX_CHUNKS};
  uint8_t id[MANIFEST_ID_BYTES];
  (void)state;

  make_id(id, 1);
  for (uint32_t k = 0; k < 40 + 4; k++) {
    uint32_t n = k < 40 ? k : big[k - 40];
    uint8_t *rec = make_record(id, n, k);
    uint8_t *map = malloc(resume_map_bytes(n) + 1);
    assert_non_null(map);
    assert_state(decode_copy(rec, resume_size(n), id, n, map), RESUME_OK);
    assert_memory_equal(map, rec + RESUME_MAP_AT, resume_map_bytes(n));
    free(map);
    free(rec);
  }
}

static void test_every_truncation_is_refused(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t other[MANIFEST_ID_BYTES];
  uint8_t map[3];
  (void)state;

  make_id(id, 2);
  make_id(other, 3);
  const uint32_t n = 19;
  const size_t size = resume_size(n);
  uint8_t *rec = make_record(id, n, 0);
  for (size_t len = 0; len < size; len++) {
    assert_state(decode_copy(rec, len, id, n, map), RESUME_CORRUPT);
    assert_untouched(map, sizeof(map));
  }
  /* Cut short, another content's record is still told apart once its
   * header is whole. */
  for (size_t len = 0; len < size; len++) {
    int want = len >= RESUME_MAP_AT ? RESUME_OTHER : RESUME_CORRUPT;
    assert_state(decode_copy(rec, len, other, n, map), want);
    assert_untouched(map, sizeof(map));
  }
  free(rec);
}

static void test_longer_than_its_count_is_refused(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t map[2];
  (void)state;

  make_id(id, 4);
  const uint32_t n = 9;
  const size_t size = resume_size(n);
  uint8_t *rec = make_record(id, n, 1);
  uint8_t *longer = calloc(1, size + 64);
  assert_non_null(longer);
  memcpy(longer, rec, size);
  for (size_t extra = 1; extra <= 64; extra++) {
    assert_state(decode_copy(longer, size + extra, id, n, map), RESUME_CORRUPT);
    assert_untouched(map, sizeof(map));
  }
  free(longer);
  free(rec);
}

/* Which result a record with byte i damaged gives: the magic makes it no
 * record, the content ID another content's, the rest fails the
 * checksum. */
static int flipped_want(size_t i) {
  if (i >= RESUME_MAGIC_BYTES && i < RESUME_COUNT_AT) {
    return RESUME_OTHER;
  }
  return RESUME_CORRUPT;
}

static void test_a_flipped_bit_in_every_field_is_refused(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t map[3];
  (void)state;

  make_id(id, 5);
  const uint32_t n = 21; /* a map of 3 bytes, the last one partly used */
  const size_t size = resume_size(n);
  uint8_t *rec = make_record(id, n, 2);
  for (size_t i = 0; i < size; i++) {
    for (unsigned bit = 0; bit < 8; bit++) {
      rec[i] ^= (uint8_t)(1u << bit);
      int got = decode_copy(rec, size, id, n, map);
      rec[i] ^= (uint8_t)(1u << bit);
      if (got != flipped_want(i)) {
        fail_msg("byte %zu bit %u: got %s", i, bit, state_name(got));
      }
      assert_untouched(map, sizeof(map));
    }
  }
  assert_state(decode_copy(rec, size, id, n, map), RESUME_OK);
  free(rec);
}

static void test_wrong_magic_is_corrupt_whatever_the_content(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t other[MANIFEST_ID_BYTES];
  uint8_t map[1];
  (void)state;

  make_id(id, 6);
  make_id(other, 7);
  uint8_t *rec = make_record(id, 5, 0);
  /* An older format's magic, resealed so that only the magic is wrong. */
  memcpy(rec, "SHOALRS0", RESUME_MAGIC_BYTES);
  crypto_generichash(rec + resume_size(5) - RESUME_CHECK_BYTES,
                     RESUME_CHECK_BYTES, rec,
                     resume_size(5) - RESUME_CHECK_BYTES, NULL, 0);
  assert_state(decode_copy(rec, resume_size(5), id, 5, map), RESUME_CORRUPT);
  assert_state(decode_copy(rec, resume_size(5), other, 5, map), RESUME_CORRUPT);
  assert_untouched(map, sizeof(map));
  free(rec);
}

static void test_wrong_count_under_a_good_checksum_is_corrupt(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t map[4];
  (void)state;

  make_id(id, 8);
  /* Same length, another count: a record of 10 or 16 chunks read for 9
   * (all have a 2-byte map), and of 9 read for 16. */
  static const uint32_t pairs[][2] = {{10, 9}, {16, 9},  {9, 16}, {8, 1},
                                      {1, 8},  {24, 17}, {0, 0}};
  for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]); k++) {
    uint32_t sealed = pairs[k][0];
    uint32_t want = pairs[k][1];
    if (sealed == want) {
      continue;
    }
    uint8_t *rec = calloc(1, resume_size(sealed));
    assert_non_null(rec);
    resume_seal(rec, id, sealed); /* no chunk listed: no unused bit set */
    assert_int_equal(resume_size(sealed), resume_size(want));
    assert_state(decode_copy(rec, resume_size(sealed), id, want, map),
                 RESUME_CORRUPT);
    assert_untouched(map, resume_map_bytes(want));
    free(rec);
  }
  /* Another length as well as another count. */
  uint8_t *rec = make_record(id, 30, 0);
  assert_state(decode_copy(rec, resume_size(30), id, 9, map), RESUME_CORRUPT);
  free(rec);
}

static void test_unused_bits_under_a_good_checksum_are_corrupt(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t map[2];
  (void)state;

  make_id(id, 9);
  for (uint32_t n = 9; n < 16; n++) {
    /* The bits past chunk n - 1 are the low 16 - n of byte 1. */
    for (unsigned bit = 0; bit < 16 - n; bit++) {
      uint8_t *rec = make_record(id, n, 0);
      rec[RESUME_MAP_AT + 1] |= (uint8_t)(1u << bit);
      resume_seal(rec, id, n);
      assert_state(decode_copy(rec, resume_size(n), id, n, map),
                   RESUME_CORRUPT);
      assert_untouched(map, sizeof(map));
      free(rec);
    }
  }
  /* With 16 chunks every bit is a chunk. */
  uint8_t *rec = make_record(id, 16, 0);
  rec[RESUME_MAP_AT] = 0xff;
  rec[RESUME_MAP_AT + 1] = 0xff;
  resume_seal(rec, id, 16);
  assert_state(decode_copy(rec, resume_size(16), id, 16, map), RESUME_OK);
  assert_int_equal(map[0], 0xff);
  assert_int_equal(map[1], 0xff);
  free(rec);
}

static void test_another_contents_record_is_other(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t other[MANIFEST_ID_BYTES];
  uint8_t map[2];
  (void)state;

  make_id(id, 10);
  make_id(other, 11);
  uint8_t *rec = make_record(other, 12, 0);
  assert_state(decode_copy(rec, resume_size(12), id, 12, map), RESUME_OTHER);
  /* Whatever its count and length. */
  assert_state(decode_copy(rec, resume_size(12), id, 3, map), RESUME_OTHER);
  assert_untouched(map, sizeof(map));
  assert_state(decode_copy(rec, resume_size(12), other, 12, map), RESUME_OK);
  free(rec);
}

static void test_garbage_is_corrupt(void **state) {
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t map[4];
  (void)state;

  make_id(id, 12);
  for (uint64_t seed = 0; seed < 256; seed++) {
    uint8_t junk[64];
    tu_fill(junk, sizeof(junk), seed);
    for (size_t len = 0; len <= sizeof(junk); len += 7) {
      assert_state(decode_copy(junk, len, id, 25, map), RESUME_CORRUPT);
    }
  }
  assert_untouched(map, sizeof(map));
}

/* ---------------------------------------------------------------------- */
/* Files */

struct fx {
  char root[PATH_CAP];
  char rec[PATH_CAP];
  uint8_t id[MANIFEST_ID_BYTES];
};

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  tu_tmpdir(f->root, sizeof(f->root));
  tu_path(f->rec, sizeof(f->rec), f->root, "resume");
  make_id(f->id, 13);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  tu_rmtree(f->root);
  free(f);
  return 0;
}

/* The names in the folder, how many. */
static int count_names(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  }
  closedir(d);
  return n;
}

static int read_state(const struct fx *f, const char *path, uint32_t n,
                      uint8_t *map) {
  memset(map, MARK, resume_map_bytes(n));
  return resume_read(path, f->id, n, map);
}

static void test_read_takes_only_a_regular_file(void **state) {
  struct fx *f = *state;
  char p[PATH_CAP];
  uint8_t map[2];

  /* Nothing there. */
  assert_state(read_state(f, f->rec, 10, map), RESUME_NONE);
  assert_untouched(map, sizeof(map));

  /* A link to a good record is not one: the next save replaces it. */
  uint8_t *rec = make_record(f->id, 10, 0);
  tu_write_file(f->root, "elsewhere", rec, resume_size(10));
  assert_int_equal(symlink("elsewhere", f->rec), 0);
  assert_state(read_state(f, f->rec, 10, map), RESUME_CORRUPT);
  assert_untouched(map, sizeof(map));
  assert_int_equal(unlink(f->rec), 0);

  /* A folder, and a fifo, which must not hang the reader. */
  assert_int_equal(mkdir(f->rec, 0755), 0);
  assert_state(read_state(f, f->rec, 10, map), RESUME_CORRUPT);
  assert_int_equal(rmdir(f->rec), 0);
  assert_int_equal(mkfifo(f->rec, 0644), 0);
  assert_state(read_state(f, f->rec, 10, map), RESUME_CORRUPT);
  assert_int_equal(unlink(f->rec), 0);
  assert_untouched(map, sizeof(map));

  /* A record that cannot be read at all is an error, not a bad record. */
  tu_path(p, sizeof(p), f->root, "elsewhere/resume");
  assert_state(read_state(f, p, 10, map), UV_ENOTDIR);
  assert_untouched(map, sizeof(map));

  /* The good one. */
  tu_write_file(f->root, "resume", rec, resume_size(10));
  assert_state(read_state(f, f->rec, 10, map), RESUME_OK);
  assert_memory_equal(map, rec + RESUME_MAP_AT, sizeof(map));
  free(rec);
}

static void test_read_refuses_what_decode_refuses(void **state) {
  struct fx *f = *state;
  uint8_t other[MANIFEST_ID_BYTES];
  uint8_t map[2];

  make_id(other, 14);
  uint8_t *rec = make_record(f->id, 10, 1);
  uint8_t *longer = calloc(1, resume_size(10) + 4096);
  assert_non_null(longer);
  memcpy(longer, rec, resume_size(10));
  /* Every length around the right one, and a file far too long. */
  for (size_t len = 0; len <= resume_size(10) + 4096;
       len = len < resume_size(10) + 8 ? len + 1 : len + 1024) {
    tu_write_file(f->root, "resume", longer, len);
    int want = len == resume_size(10) ? RESUME_OK : RESUME_CORRUPT;
    assert_state(read_state(f, f->rec, 10, map), want);
  }
  free(longer);
  tu_write_file(f->root, "resume", rec, resume_size(10));
  assert_state(resume_read(f->rec, other, 10, map), RESUME_OTHER);
  assert_state(resume_read(f->rec, f->id, 11, map), RESUME_CORRUPT);
  free(rec);
}

static void test_write_replaces_atomically_and_leaves_no_temp(void **state) {
  struct fx *f = *state;
  struct stat st;
  size_t n;

  uint8_t *a = make_record(f->id, 10, 0);
  uint8_t *b = make_record(f->id, 10, 1);
  assert_int_equal(resume_write(f->rec, a, resume_size(10)), 0);
  assert_int_equal(resume_write(f->rec, b, resume_size(10)), 0);
  uint8_t *got = tu_read_file(f->rec, &n);
  assert_non_null(got);
  assert_int_equal(n, resume_size(10));
  assert_memory_equal(got, b, n);
  free(got);
  assert_int_equal(lstat(f->rec, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(count_names(f->root), 1);

  /* A link in its place is replaced, not written through. */
  assert_int_equal(unlink(f->rec), 0);
  tu_write_file(f->root, "target", "t", 1);
  assert_int_equal(symlink("target", f->rec), 0);
  assert_int_equal(resume_write(f->rec, a, resume_size(10)), 0);
  assert_int_equal(lstat(f->rec, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  char t[PATH_CAP];
  tu_path(t, sizeof(t), f->root, "target");
  got = tu_read_file(t, &n);
  assert_non_null(got);
  assert_int_equal(n, 1);
  assert_int_equal(got[0], 't');
  free(got);
  free(a);
  free(b);
}

static void test_failed_write_keeps_what_was_there(void **state) {
  struct fx *f = *state;
  char p[PATH_CAP];
  struct stat st;

  uint8_t *a = make_record(f->id, 3, 0);
  /* A folder in its place: the rename fails, the temporary file goes. */
  assert_int_equal(mkdir(f->rec, 0755), 0);
  tu_write_file(f->rec, "inside", "i", 1);
  assert_true(resume_write(f->rec, a, resume_size(3)) < 0);
  assert_int_equal(lstat(f->rec, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(count_names(f->root), 1);
  /* A folder that does not exist. */
  tu_path(p, sizeof(p), f->root, "none/resume");
  assert_int_equal(resume_write(p, a, resume_size(3)), UV_ENOENT);
  assert_int_equal(count_names(f->root), 1);
  free(a);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_seal_writes_the_documented_record),
      cmocka_unit_test(test_round_trip_for_many_counts),
      cmocka_unit_test(test_every_truncation_is_refused),
      cmocka_unit_test(test_longer_than_its_count_is_refused),
      cmocka_unit_test(test_a_flipped_bit_in_every_field_is_refused),
      cmocka_unit_test(test_wrong_magic_is_corrupt_whatever_the_content),
      cmocka_unit_test(test_wrong_count_under_a_good_checksum_is_corrupt),
      cmocka_unit_test(test_unused_bits_under_a_good_checksum_are_corrupt),
      cmocka_unit_test(test_another_contents_record_is_other),
      cmocka_unit_test(test_garbage_is_corrupt),
      T(test_read_takes_only_a_regular_file),
      T(test_read_refuses_what_decode_refuses),
      T(test_write_replaces_atomically_and_leaves_no_temp),
      T(test_failed_write_keeps_what_was_there),
  };
#undef T
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
