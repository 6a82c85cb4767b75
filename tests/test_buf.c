/* Tests for common/buf: the bounded reader and the growable buffer.
 *
 * The reader is what every parser of network bytes stands on, so most of
 * these tests are the hostile cases: every truncation length of every field
 * type, reads after the first failure, and lengths chosen to overflow a
 * careless bounds check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "tests/lib/testutil.h"

/* ------------------------------------------------------------------------ */
/* Big-endian helpers. */

static void be_helpers_decode_known_byte_patterns(void **state) {
  (void)state;
  const uint8_t b16[2] = {0x12, 0x34};
  const uint8_t b32[4] = {0xde, 0xad, 0xbe, 0xef};
  const uint8_t b64[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  /* High bits set everywhere: catches sign extension through int. */
  const uint8_t hi64[8] = {0xff, 0xfe, 0xfd, 0xfc, 0x80, 0x81, 0x82, 0x83};

  assert_int_equal(buf_be16(b16), 0x1234);
  assert_int_equal(buf_be16(b32), 0xdead);
  assert_true(buf_be32(b32) == 0xdeadbeefu);
  assert_true(buf_be64(b64) == 0x0102030405060708u);
  assert_true(buf_be64(hi64) == 0xfffefdfc80818283u);
  assert_true(buf_be32(hi64 + 4) == 0x80818283u);
}

static void be_helpers_encode_known_byte_patterns(void **state) {
  (void)state;
  uint8_t out[8];
  const uint8_t w16[2] = {0xab, 0xcd};
  const uint8_t w32[4] = {0x80, 0x00, 0x00, 0x01};
  const uint8_t w64[8] = {0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87};

  memset(out, 0x55, sizeof(out));
  buf_put_be16(out, 0xabcd);
  assert_memory_equal(out, w16, sizeof(w16));
  assert_int_equal(out[2], 0x55); /* nothing written past the field */

  memset(out, 0x55, sizeof(out));
  buf_put_be32(out, 0x80000001u);
  assert_memory_equal(out, w32, sizeof(w32));
  assert_int_equal(out[4], 0x55);

  buf_put_be64(out, 0xf0e1d2c3b4a59687u);
  assert_memory_equal(out, w64, sizeof(w64));
}

static void be_helpers_round_trip_edge_values(void **state) {
  (void)state;
  static const uint64_t values[] = {
      0,
      1,
      0x7f,
      0x80,
      0xff,
      0x100,
      0x7fff,
      0x8000,
      0xffff,
      0x10000,
      0x7fffffff,
      0x80000000u,
      0xffffffffu,
      0x100000000u,
      0x8000000000000000u,
      0xffffffffffffffffu,
      0x0123456789abcdefu,
  };
  uint8_t p[8];

  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    uint64_t v = values[i];
    buf_put_be16(p, (uint16_t)v);
    assert_int_equal(buf_be16(p), (uint16_t)v);
    buf_put_be32(p, (uint32_t)v);
    assert_true(buf_be32(p) == (uint32_t)v);
    buf_put_be64(p, v);
    assert_true(buf_be64(p) == v);
  }
}

/* ------------------------------------------------------------------------ */
/* Reader. */

static void reader_reads_big_endian_fields_in_order(void **state) {
  (void)state;
  const uint8_t in[] = {
      0x9a,                                           /* u8 */
      0x12, 0x34,                                     /* u16 */
      0x89, 0xab, 0xcd, 0xef,                         /* u32 */
      0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, /* u64 */
      'a',  'b',  'c',                                /* bytes */
      'x',  'y',                                      /* copy */
  };
  struct buf_reader r;
  uint8_t two[2];

  buf_reader_init(&r, in, sizeof(in));
  assert_int_equal(buf_reader_left(&r), sizeof(in));
  assert_int_equal(buf_read_u8(&r), 0x9a);
  assert_int_equal(buf_read_u16(&r), 0x1234);
  assert_true(buf_read_u32(&r) == 0x89abcdefu);
  assert_true(buf_read_u64(&r) == 0xfedcba9876543210u);
  assert_int_equal(buf_reader_left(&r), 5);
  const uint8_t *p = buf_read_bytes(&r, 3);
  /* The bytes are borrowed in place, not copied. */
  assert_ptr_equal(p, in + 15);
  buf_read_copy(&r, two, sizeof(two));
  assert_memory_equal(two, "xy", 2);
  assert_int_equal(buf_reader_left(&r), 0);
  assert_int_equal(buf_reader_err(&r), 0);
}

static void reader_reading_exactly_to_the_end_is_not_an_error(void **state) {
  (void)state;
  const uint8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  struct buf_reader r;

  buf_reader_init(&r, in, sizeof(in));
  assert_true(buf_read_u64(&r) == 0x0102030405060708u);
  assert_int_equal(buf_reader_err(&r), 0);
  /* A zero-length read at the end is still in bounds. */
  assert_non_null(buf_read_bytes(&r, 0));
  assert_int_equal(buf_reader_err(&r), 0);
  assert_int_equal(buf_reader_left(&r), 0);
}

/* Reads one field of the given kind and reports whether the read came back
 * as the documented failure value (0, NULL, or a zero-filled copy). */
enum field_kind { F_U8, F_U16, F_U32, F_U64, F_BYTES, F_COPY };
static const size_t field_width[] = {1, 2, 4, 8, 6, 6};

static int read_field_fails(struct buf_reader *r, enum field_kind k) {
  uint8_t out[6];
  switch (k) {
  case F_U8:
    return buf_read_u8(r) == 0;
  case F_U16:
    return buf_read_u16(r) == 0;
  case F_U32:
    return buf_read_u32(r) == 0;
  case F_U64:
    return buf_read_u64(r) == 0;
  case F_BYTES:
    return buf_read_bytes(r, 6) == NULL;
  case F_COPY:
    memset(out, 0xaa, sizeof(out));
    buf_read_copy(r, out, sizeof(out));
    for (size_t i = 0; i < sizeof(out); i++) {
      if (out[i] != 0) {
        return 0;
      }
    }
    return 1;
  }
  return 0;
}

static void
reader_every_truncated_field_sets_etrunc_and_returns_zero(void **state) {
  (void)state;
  /* All 0xff, so a field that was read at all cannot come back as 0. */
  uint8_t in[8];
  memset(in, 0xff, sizeof(in));

  for (int k = F_U8; k <= F_COPY; k++) {
    for (size_t have = 0; have < field_width[k]; have++) {
      struct buf_reader r;
      buf_reader_init(&r, in, have);
      assert_true(read_field_fails(&r, (enum field_kind)k));
      assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
      /* A failed read consumes nothing. */
      assert_int_equal(buf_reader_left(&r), have);
    }
    /* With exactly enough bytes the same read succeeds. */
    struct buf_reader ok;
    buf_reader_init(&ok, in, field_width[k]);
    assert_false(read_field_fails(&ok, (enum field_kind)k));
    assert_int_equal(buf_reader_err(&ok), 0);
    assert_int_equal(buf_reader_left(&ok), 0);
  }
}

static void reader_error_is_sticky_for_every_later_read(void **state) {
  (void)state;
  uint8_t in[32];
  memset(in, 0xff, sizeof(in));
  struct buf_reader r;

  /* Fail a large read first; plenty of bytes remain for small ones. */
  buf_reader_init(&r, in, sizeof(in));
  assert_int_equal(buf_read_u8(&r), 0xff);
  assert_null(buf_read_bytes(&r, sizeof(in)));
  assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
  assert_int_equal(buf_reader_left(&r), sizeof(in) - 1);

  for (int k = F_U8; k <= F_COPY; k++) {
    assert_true(read_field_fails(&r, (enum field_kind)k));
    assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
  }
  assert_null(buf_read_bytes(&r, 0));
  assert_int_equal(buf_reader_left(&r), sizeof(in) - 1);
}

static void reader_huge_length_does_not_overflow_bounds_check(void **state) {
  (void)state;
  const uint8_t in[4] = {1, 2, 3, 4};
  struct buf_reader r;

  /* off + n would wrap around to a small number if the check added. */
  buf_reader_init(&r, in, sizeof(in));
  assert_int_equal(buf_read_u16(&r), 0x0102);
  assert_null(buf_read_bytes(&r, SIZE_MAX));
  assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);

  buf_reader_init(&r, in, sizeof(in));
  assert_int_equal(buf_read_u8(&r), 1);
  assert_null(buf_read_bytes(&r, SIZE_MAX - 1));
  assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);

  buf_reader_init(&r, in, sizeof(in));
  assert_int_equal(buf_read_u8(&r), 1);
  assert_null(buf_read_bytes(&r, SIZE_MAX - 2));
  assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
  assert_int_equal(buf_reader_left(&r), 3);
}

static void reader_read_copy_zero_fills_on_truncation(void **state) {
  (void)state;
  const uint8_t in[5] = {1, 2, 3, 4, 5};
  uint8_t out[8];
  const uint8_t zero[8] = {0};
  struct buf_reader r;

  /* Every short length, including an empty input. */
  for (size_t have = 0; have < sizeof(out); have++) {
    buf_reader_init(&r, in, have < sizeof(in) ? have : sizeof(in));
    memset(out, 0xaa, sizeof(out));
    buf_read_copy(&r, out, sizeof(out));
    assert_memory_equal(out, zero, sizeof(out));
    assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
  }

  /* After an earlier failure, even a read that would fit zero-fills. */
  buf_reader_init(&r, in, sizeof(in));
  (void)buf_read_u64(&r);
  memset(out, 0xaa, sizeof(out));
  buf_read_copy(&r, out, 2);
  assert_memory_equal(out, zero, 2);
  assert_int_equal(out[2], 0xaa); /* only n bytes are touched */
}

static void reader_every_prefix_of_a_record_is_truncated(void **state) {
  (void)state;
  /* A record as a parser would read it: u8, u16, u32, u64, 7 bytes. */
  uint8_t rec[1 + 2 + 4 + 8 + 7];
  tu_fill(rec, sizeof(rec), 42);

  for (size_t have = 0; have <= sizeof(rec); have++) {
    struct buf_reader r;
    uint8_t tail[7];
    buf_reader_init(&r, rec, have);
    uint8_t a = buf_read_u8(&r);
    uint16_t b = buf_read_u16(&r);
    uint32_t c = buf_read_u32(&r);
    uint64_t d = buf_read_u64(&r);
    buf_read_copy(&r, tail, sizeof(tail));
    if (have < sizeof(rec)) {
      assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
    } else {
      assert_int_equal(buf_reader_err(&r), 0);
      assert_int_equal(a, rec[0]);
      assert_int_equal(b, buf_be16(rec + 1));
      assert_true(c == buf_be32(rec + 3));
      assert_true(d == buf_be64(rec + 7));
      assert_memory_equal(tail, rec + 15, sizeof(tail));
    }
  }
}

static void reader_over_empty_null_input_fails_every_read(void **state) {
  (void)state;
  struct buf_reader r;
  buf_reader_init(&r, NULL, 0);
  assert_int_equal(buf_reader_left(&r), 0);
  assert_int_equal(buf_read_u8(&r), 0);
  assert_int_equal(buf_reader_err(&r), SHOAL_ETRUNC);
}

/* ------------------------------------------------------------------------ */
/* Growable buffer. */

static void buf_free_on_zeroed_struct_is_safe(void **state) {
  (void)state;
  struct buf b;
  memset(&b, 0, sizeof(b));
  buf_free(&b);
  buf_free(&b); /* and again: free leaves a zeroed struct */
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);

  buf_init(&b, 16);
  buf_free(&b); /* never grown */
  buf_init(&b, 16);
  buf_add_u8(&b, 1);
  buf_free(&b);
  buf_free(&b); /* double free would trip ASan */
  assert_null(b.data);
}

static void buf_add_writes_big_endian_integers(void **state) {
  (void)state;
  struct buf b;
  const uint8_t want[] = {0x7f, 0xbe, 0xef, 0x80, 0x00, 0x00, 0x01, 0x01, 0x02,
                          0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 'h',  'i'};

  buf_init(&b, 1024);
  buf_add_u8(&b, 0x7f);
  buf_add_u16(&b, 0xbeef);
  buf_add_u32(&b, 0x80000001u);
  buf_add_u64(&b, 0x0102030405060708u);
  buf_add(&b, "hi", 2);
  buf_add(&b, NULL, 0); /* an empty add is a no-op */
  assert_int_equal(buf_err(&b), 0);
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));
  buf_free(&b);
}

static void buf_grows_across_many_appends(void **state) {
  (void)state;
  struct buf b;
  const uint32_t count = 100000;

  buf_init(&b, 1u << 20);
  for (uint32_t i = 0; i < count; i++) {
    buf_add_u32(&b, i * 2654435761u);
    assert_true(b.len <= b.cap);
    assert_true(b.cap <= b.max);
  }
  assert_int_equal(buf_err(&b), 0);
  assert_int_equal(b.len, (size_t)count * 4);

  /* Reallocation kept every earlier byte. */
  struct buf_reader r;
  buf_reader_init(&r, b.data, b.len);
  for (uint32_t i = 0; i < count; i++) {
    assert_true(buf_read_u32(&r) == i * 2654435761u);
  }
  assert_int_equal(buf_reader_err(&r), 0);
  assert_int_equal(buf_reader_left(&r), 0);
  buf_free(&b);
}

static void buf_capacity_never_exceeds_max(void **state) {
  (void)state;
  /* Every max from 0 to 300 and a few around powers of two, filled one byte
   * at a time and then in odd-sized chunks. */
  static const size_t extra[] = {511, 512, 513, 1023, 1024, 1025, 4097, 65537};
  size_t maxes[301 + sizeof(extra) / sizeof(extra[0])];
  size_t nmax = 0;
  for (size_t m = 0; m <= 300; m++) {
    maxes[nmax++] = m;
  }
  for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
    maxes[nmax++] = extra[i];
  }

  for (size_t i = 0; i < nmax; i++) {
    size_t max = maxes[i];
    static const size_t steps[] = {1, 7};
    for (size_t s = 0; s < 2; s++) {
      size_t step = steps[s];
      struct buf b;
      uint8_t chunk[7];
      memset(chunk, 0x5a, sizeof(chunk));
      buf_init(&b, max);
      while (buf_err(&b) == 0) {
        buf_add(&b, chunk, step);
        assert_true(b.len <= b.cap);
        assert_true(b.cap <= max);
      }
      assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);
      /* It stopped at the last whole chunk that fitted. */
      assert_int_equal(b.len, max - max % step);
      buf_free(&b);
    }
  }
}

static void
buf_add_past_max_is_etoobig_sticky_and_writes_nothing(void **state) {
  (void)state;
  struct buf b;
  uint8_t data[100];
  tu_fill(data, sizeof(data), 7);

  buf_init(&b, 100);
  buf_add(&b, data, 60);
  assert_int_equal(buf_err(&b), 0);
  /* 60 + 41 > 100: the whole add is refused, not cut short. */
  buf_add(&b, data + 60, 41);
  assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);
  assert_int_equal(b.len, 60);
  assert_memory_equal(b.data, data, 60);

  /* Sticky: an add that would have fitted is refused too. */
  buf_add_u8(&b, 1);
  assert_int_equal(b.len, 60);
  assert_int_equal(buf_reserve(&b, 1), SHOAL_ETOOBIG);
  assert_int_equal(buf_reserve(&b, 0), SHOAL_ETOOBIG);
  assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);

  /* buf_reset clears the error and the contents, keeping the limit. */
  buf_reset(&b);
  assert_int_equal(buf_err(&b), 0);
  assert_int_equal(b.len, 0);
  buf_add(&b, data, 100);
  assert_int_equal(buf_err(&b), 0);
  assert_memory_equal(b.data, data, 100);
  buf_add_u8(&b, 0);
  assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);
  buf_free(&b);
}

static void buf_reserve_huge_size_is_etoobig_without_allocating(void **state) {
  (void)state;
  struct buf b;

  buf_init(&b, 1u << 20);
  buf_add_u8(&b, 1);
  /* len + SIZE_MAX wraps; the check must not. */
  assert_int_equal(buf_reserve(&b, SIZE_MAX), SHOAL_ETOOBIG);
  assert_int_equal(b.len, 1);
  assert_true(b.cap <= b.max);
  buf_free(&b);

  buf_init(&b, 0);
  assert_int_equal(buf_reserve(&b, 1), SHOAL_ETOOBIG);
  assert_null(b.data);
  buf_free(&b);
}

static void buf_fixed_refuses_growth_and_keeps_caller_storage(void **state) {
  (void)state;
  uint8_t storage[10];
  struct buf b;

  memset(storage, 0xee, sizeof(storage));
  buf_init_fixed(&b, storage, 8);
  buf_add_u32(&b, 0x01020304u);
  buf_add_u16(&b, 0x0506);
  assert_int_equal(buf_err(&b), 0);
  assert_ptr_equal(b.data, storage);
  /* 6 + 4 > 8: refused whole, nothing written past the 6 bytes. */
  buf_add_u32(&b, 0xffffffffu);
  assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);
  assert_int_equal(b.len, 6);
  assert_ptr_equal(b.data, storage);
  const uint8_t want[10] = {1, 2, 3, 4, 5, 6, 0xee, 0xee, 0xee, 0xee};
  assert_memory_equal(storage, want, sizeof(want));

  /* A fixed buffer cannot be stolen: the storage is the caller's. */
  size_t len = 99;
  assert_null(buf_steal(&b, &len));
  assert_int_equal(len, 0);

  /* Filling exactly to capacity works; one byte more does not. */
  buf_reset(&b);
  buf_add_u64(&b, 0x1112131415161718u);
  assert_int_equal(buf_err(&b), 0);
  assert_int_equal(buf_reserve(&b, 1), SHOAL_ETOOBIG);
  assert_int_equal(storage[8], 0xee);

  /* buf_free must not free() stack storage (ASan would report it). */
  buf_free(&b);
  assert_null(b.data);
}

static void buf_steal_hands_over_storage_and_resets(void **state) {
  (void)state;
  struct buf b;
  size_t len = 0;

  buf_init(&b, 64);
  buf_add(&b, "hello", 5);
  uint8_t *p = buf_steal(&b, &len);
  assert_non_null(p);
  assert_int_equal(len, 5);
  assert_memory_equal(p, "hello", 5);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(buf_err(&b), 0);

  /* The buffer is reusable with the same limit. */
  buf_add(&b, "world", 5);
  assert_int_equal(buf_err(&b), 0);
  buf_reserve(&b, 60);
  assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);

  /* After an error there is nothing to steal; the buffer still owns (and
   * buf_free releases) its storage, so LSan sees no leak. */
  size_t len2 = 99;
  assert_null(buf_steal(&b, &len2));
  assert_int_equal(len2, 0);
  buf_free(&b);
  free(p);

  /* Stealing an empty buffer gives a zero length. */
  buf_init(&b, 8);
  p = buf_steal(&b, &len);
  assert_int_equal(len, 0);
  free(p);
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(be_helpers_decode_known_byte_patterns),
      cmocka_unit_test(be_helpers_encode_known_byte_patterns),
      cmocka_unit_test(be_helpers_round_trip_edge_values),
      cmocka_unit_test(reader_reads_big_endian_fields_in_order),
      cmocka_unit_test(reader_reading_exactly_to_the_end_is_not_an_error),
      cmocka_unit_test(
          reader_every_truncated_field_sets_etrunc_and_returns_zero),
      cmocka_unit_test(reader_error_is_sticky_for_every_later_read),
      cmocka_unit_test(reader_huge_length_does_not_overflow_bounds_check),
      cmocka_unit_test(reader_read_copy_zero_fills_on_truncation),
      cmocka_unit_test(reader_every_prefix_of_a_record_is_truncated),
      cmocka_unit_test(reader_over_empty_null_input_fails_every_read),
      cmocka_unit_test(buf_free_on_zeroed_struct_is_safe),
      cmocka_unit_test(buf_add_writes_big_endian_integers),
      cmocka_unit_test(buf_grows_across_many_appends),
      cmocka_unit_test(buf_capacity_never_exceeds_max),
      cmocka_unit_test(buf_add_past_max_is_etoobig_sticky_and_writes_nothing),
      cmocka_unit_test(buf_reserve_huge_size_is_etoobig_without_allocating),
      cmocka_unit_test(buf_fixed_refuses_growth_and_keeps_caller_storage),
      cmocka_unit_test(buf_steal_hands_over_storage_and_resets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
