/* Tests for common/frame: the incremental length-prefixed frame decoder.
 *
 * A TCP stream can split or merge frames anywhere, so the main cases here
 * are split inputs (one byte at a time, and at seeded pseudo-random points)
 * and hostile headers (zero, one over the maximum, 0xFFFFFFFF), which must
 * be refused as soon as their 4 bytes are in and before any allocation.
 * Each input chunk is copied into its own heap block of exactly its size so
 * that AddressSanitizer catches a read past the end of the chunk.
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
#include "common/frame.h"
#include "tests/lib/testutil.h"

/* A uniformly chosen value in [lo, hi]. */
static size_t rng_range(uint64_t *s, size_t lo, size_t hi) {
  return lo + (size_t)(tu_rand(s) % (uint64_t)(hi - lo + 1));
}

/* True when [p, p + n) lies inside [base, base + len). Compared as integers
 * because relational operators on unrelated pointers are undefined. */
static int points_into(const uint8_t *p, size_t n, const uint8_t *base,
                       size_t len) {
  uintptr_t a = (uintptr_t)p;
  uintptr_t b = (uintptr_t)base;
  return a >= b && n <= len && a - b <= len - n;
}

/* A stream of frames and the bodies the decoder should return, in order. */
struct stream {
  uint8_t *bytes;
  size_t len;
  size_t nframes;
  size_t body_off[16];
  size_t body_len[16];
  size_t next; /* index of the next frame expected from the decoder */
};

static void stream_build(struct stream *st, const size_t *sizes, size_t n,
                         uint64_t seed) {
  assert_true(n <= 16);
  memset(st, 0, sizeof(*st));
  for (size_t i = 0; i < n; i++) {
    st->len += FRAME_HEADER_BYTES + sizes[i];
  }
  st->bytes = malloc(st->len);
  assert_non_null(st->bytes);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    frame_header(st->bytes + off, sizes[i]);
    off += FRAME_HEADER_BYTES;
    tu_fill(st->bytes + off, sizes[i], seed + i);
    st->body_off[i] = off;
    st->body_len[i] = sizes[i];
    off += sizes[i];
  }
  st->nframes = n;
}

static void stream_free(struct stream *st) {
  free(st->bytes);
  st->bytes = NULL;
}

/* Feeds one chunk to the decoder, calling it until every byte is used, and
 * checks each frame it returns against the stream. The chunk is a private
 * heap copy so that ASan sees any read beyond it. */
static void feed_chunk(struct frame_decoder *d, struct stream *st,
                       const uint8_t *src, size_t n) {
  uint8_t *chunk = malloc(n ? n : 1);
  assert_non_null(chunk);
  if (n > 0) {
    memcpy(chunk, src, n);
  }
  const uint8_t *p = chunk;
  size_t left = n;
  for (;;) {
    size_t used = 12345;
    const uint8_t *frame = (const uint8_t *)&used;
    size_t frame_len = 12345;
    int rc = frame_decoder_next(d, p, left, &used, &frame, &frame_len);
    assert_true(rc == 0 || rc == 1);
    assert_true(used <= left);
    if (rc == 0) {
      /* "Need more" means every byte was taken. */
      assert_int_equal(used, left);
      assert_null(frame);
      assert_int_equal(frame_len, 0);
      break;
    }
    assert_true(st->next < st->nframes);
    assert_int_equal(frame_len, st->body_len[st->next]);
    /* The frame lives either in this input or in the decoder's buffer. */
    assert_true(points_into(frame, frame_len, chunk, n) ||
                points_into(frame, frame_len, d->body, d->body_cap));
    assert_memory_equal(frame, st->bytes + st->body_off[st->next], frame_len);
    st->next++;
    p += used;
    left -= used;
    /* Keep calling even with nothing left: a 0-byte call must be harmless
     * and is where a delivered buffer gets recycled. */
  }
  free(chunk);
}

/* What one frame_decoder_next call gave back. */
struct got {
  size_t used;
  const uint8_t *frame;
  size_t len;
};

static int next(struct frame_decoder *d, const uint8_t *p, size_t n,
                struct got *g) {
  return frame_decoder_next(d, p, n, &g->used, &g->frame, &g->len);
}

/* ------------------------------------------------------------------------ */

static void frame_header_writes_big_endian_length(void **state) {
  (void)state;
  uint8_t h[FRAME_HEADER_BYTES];
  const uint8_t w1[4] = {0x00, 0x00, 0x00, 0x01};
  const uint8_t w2[4] = {0x00, 0x01, 0x02, 0x03};
  const uint8_t wmax[4] = {0x01, 0x00, 0x00, 0x00};

  frame_header(h, 1);
  assert_memory_equal(h, w1, 4);
  frame_header(h, 0x010203);
  assert_memory_equal(h, w2, 4);
  frame_header(h, FRAME_MAX_LIMIT);
  assert_memory_equal(h, wmax, 4);
}

static void frame_round_trip_returns_body_in_place(void **state) {
  (void)state;
  uint8_t in[FRAME_HEADER_BYTES + 5];
  struct frame_decoder d;
  struct got g;

  frame_header(in, 5);
  memcpy(in + FRAME_HEADER_BYTES, "hello", 5);
  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  assert_int_equal(next(&d, in, sizeof(in), &g), 1);
  assert_int_equal(g.used, sizeof(in));
  assert_int_equal(g.len, 5);
  /* Zero-copy: a whole frame in one input is returned where it lies. */
  assert_ptr_equal(g.frame, in + FRAME_HEADER_BYTES);
  assert_memory_equal(g.frame, "hello", 5);
  assert_null(d.body);

  /* Nothing more: need-more, nothing consumed, no frame. */
  assert_int_equal(next(&d, in, 0, &g), 0);
  assert_int_equal(g.used, 0);
  assert_null(g.frame);
  assert_int_equal(g.len, 0);
  frame_decoder_close(&d);
}

static void frame_input_fed_one_byte_at_a_time(void **state) {
  (void)state;
  const size_t sizes[] = {1, 2, 300, 1, 5, 4096};
  struct stream st;
  struct frame_decoder d;

  stream_build(&st, sizes, sizeof(sizes) / sizeof(sizes[0]), 100);
  frame_decoder_init(&d, 4096);
  size_t frame_end = 0; /* stream offset just past the next frame */
  for (size_t i = 0; i < st.len; i++) {
    size_t before = st.next;
    frame_end = st.body_off[before] + st.body_len[before];
    feed_chunk(&d, &st, st.bytes + i, 1);
    /* A frame comes out exactly with its last byte and not before. */
    if (i + 1 == frame_end) {
      assert_int_equal(st.next, before + 1);
    } else {
      assert_int_equal(st.next, before);
    }
  }
  assert_int_equal(st.next, st.nframes);
  assert_int_equal(d.err, 0);
  frame_decoder_close(&d);
  stream_free(&st);
}

/* Runs `iters` random streams through the decoder, each cut into chunks at
 * pseudo-random points, and checks every frame comes out whole and in
 * order. `min_scale` bounds the smallest typical chunk so that streams
 * holding megabyte frames do not take a million calls. */
static void run_random_splits(size_t max, size_t iters, size_t min_scale,
                              uint64_t seed) {
  uint64_t rng = seed;
  for (size_t it = 0; it < iters; it++) {
    size_t sizes[16];
    size_t n = rng_range(&rng, 1, 8);
    for (size_t i = 0; i < n; i++) {
      switch (rng_range(&rng, 0, 5)) {
      case 0:
        sizes[i] = 1;
        break;
      case 1:
        sizes[i] = max;
        break;
      case 2:
        sizes[i] = rng_range(&rng, 1, max < 8 ? max : 8);
        break;
      case 3:
        sizes[i] = max - rng_range(&rng, 0, max - 1 < 8 ? max - 1 : 8);
        break;
      default:
        sizes[i] = rng_range(&rng, 1, max);
        break;
      }
    }
    struct stream st;
    struct frame_decoder d;
    stream_build(&st, sizes, n, tu_rand(&rng));
    frame_decoder_init(&d, max);

    /* A typical chunk size for this stream, from min_scale up to the whole
     * stream, so some iterations split finely and some hardly at all. */
    size_t scale = min_scale;
    size_t top = rng_range(&rng, 0, 24);
    for (size_t k = 0; k < top && scale < st.len; k++) {
      scale *= 2;
    }
    size_t off = 0;
    while (off < st.len) {
      size_t c = rng_range(&rng, 0, scale); /* 0-byte inputs too */
      if (c > st.len - off) {
        c = st.len - off;
      }
      feed_chunk(&d, &st, st.bytes + off, c);
      off += c;
    }
    assert_int_equal(st.next, st.nframes);
    assert_int_equal(d.err, 0);
    /* Nothing is half-read at the end of the stream. */
    assert_int_equal(d.hdr_have, 0);
    assert_int_equal(d.body_have, 0);
    frame_decoder_close(&d);
    stream_free(&st);
  }
}

static void frame_input_split_at_random_points_small_max(void **state) {
  (void)state;
  run_random_splits(4096, 3000, 1, 0x5eed0001u);
  run_random_splits(1, 200, 1, 0x5eed0002u); /* every frame is 1 byte */
  run_random_splits(FRAME_KEEP_BYTES + 3, 100, 64, 0x5eed0003u);
}

static void frame_input_split_at_random_points_default_max(void **state) {
  (void)state;
  run_random_splits(FRAME_MAX_DEFAULT, 25, 4096, 0x5eed0004u);
}

static void
frame_several_frames_in_one_buffer_come_out_one_by_one(void **state) {
  (void)state;
  const size_t sizes[] = {1, 10, 1, 100, 3};
  struct stream st;
  struct frame_decoder d;
  struct got g;

  stream_build(&st, sizes, 5, 7);
  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  size_t off = 0;
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(next(&d, st.bytes + off, st.len - off, &g), 1);
    /* Exactly one header and one body are consumed per call. */
    assert_int_equal(g.used, FRAME_HEADER_BYTES + sizes[i]);
    assert_int_equal(g.len, sizes[i]);
    assert_ptr_equal(g.frame, st.bytes + st.body_off[i]);
    off += g.used;
  }
  assert_int_equal(off, st.len);
  assert_int_equal(next(&d, st.bytes + off, 0, &g), 0);
  assert_int_equal(g.used, 0);
  assert_null(d.body); /* never needed to buffer */
  frame_decoder_close(&d);
  stream_free(&st);
}

static void frame_several_frames_then_a_partial_one(void **state) {
  (void)state;
  const size_t sizes[] = {2, 20};
  struct stream st;
  struct frame_decoder d;
  struct got g;

  stream_build(&st, sizes, 2, 9);
  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  /* First input: frame 0 whole, then frame 1's header and 5 body bytes. */
  size_t cut = st.body_off[1] + 5;
  assert_int_equal(next(&d, st.bytes, cut, &g), 1);
  assert_int_equal(g.used, 6);
  assert_int_equal(next(&d, st.bytes + 6, cut - 6, &g), 0);
  assert_int_equal(g.used, cut - 6);
  /* Second input: the rest; the frame now comes from the decoder's buffer. */
  assert_int_equal(next(&d, st.bytes + cut, st.len - cut, &g), 1);
  assert_int_equal(g.used, st.len - cut);
  assert_int_equal(g.len, 20);
  assert_ptr_equal(g.frame, d.body);
  assert_memory_equal(g.frame, st.bytes + st.body_off[1], 20);
  frame_decoder_close(&d);
  stream_free(&st);
}

static void frame_header_then_whole_body_uses_the_input_in_place(void **state) {
  (void)state;
  uint8_t hdr[FRAME_HEADER_BYTES];
  uint8_t body[300];
  struct frame_decoder d;
  struct got g;

  tu_fill(body, sizeof(body), 3);
  frame_header(hdr, sizeof(body));
  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  assert_int_equal(next(&d, hdr, sizeof(hdr), &g), 0);
  assert_int_equal(g.used, sizeof(hdr));
  /* No body byte buffered yet, so a whole body is handed out in place. */
  assert_int_equal(next(&d, body, sizeof(body), &g), 1);
  assert_int_equal(g.used, sizeof(body));
  assert_ptr_equal(g.frame, body);
  assert_int_equal(g.len, sizeof(body));
  frame_decoder_close(&d);
}

/* Checks that the header `len` is refused with `want` when its 4th byte
 * arrives, that the bytes after it are not consumed, and that no body
 * buffer was allocated. Both in one input and one byte at a time. */
static void expect_header_rejected(size_t max, uint32_t len, int want) {
  uint8_t in[FRAME_HEADER_BYTES + 16];
  struct frame_decoder d;
  struct got g;

  buf_put_be32(in, len);
  memset(in + FRAME_HEADER_BYTES, 0x41, 16);

  frame_decoder_init(&d, max);
  assert_int_equal(next(&d, in, sizeof(in), &g), want);
  assert_int_equal(g.used, FRAME_HEADER_BYTES);
  assert_null(g.frame);
  assert_int_equal(g.len, 0);
  assert_null(d.body);
  assert_int_equal(d.body_cap, 0);
  frame_decoder_close(&d);

  frame_decoder_init(&d, max);
  for (size_t i = 0; i < FRAME_HEADER_BYTES - 1; i++) {
    assert_int_equal(next(&d, in + i, 1, &g), 0);
    assert_int_equal(g.used, 1);
  }
  assert_int_equal(next(&d, in + 3, sizeof(in) - 3, &g), want);
  assert_int_equal(g.used, 1);
  assert_null(d.body);
  assert_int_equal(d.body_cap, 0);
  frame_decoder_close(&d);
}

static void frame_length_over_max_is_etoobig_before_allocating(void **state) {
  (void)state;
  expect_header_rejected(1000, 1001, SHOAL_ETOOBIG);
  expect_header_rejected(1, 2, SHOAL_ETOOBIG);
  expect_header_rejected(FRAME_MAX_DEFAULT, FRAME_MAX_DEFAULT + 1,
                         SHOAL_ETOOBIG);
  expect_header_rejected(FRAME_MAX_DEFAULT, 0xffffffffu, SHOAL_ETOOBIG);
  expect_header_rejected(FRAME_MAX_DEFAULT, 0x80000000u, SHOAL_ETOOBIG);
  expect_header_rejected(FRAME_MAX_LIMIT, 0xffffffffu, SHOAL_ETOOBIG);
  expect_header_rejected(SIZE_MAX, 0xffffffffu, SHOAL_ETOOBIG);
  /* A decoder with max 0 accepts nothing. */
  expect_header_rejected(0, 1, SHOAL_ETOOBIG);
}

static void frame_length_equal_to_max_is_accepted(void **state) {
  (void)state;
  const size_t sizes[] = {1000};
  struct stream st;
  struct frame_decoder d;

  stream_build(&st, sizes, 1, 11);
  frame_decoder_init(&d, 1000);
  feed_chunk(&d, &st, st.bytes, 500);
  feed_chunk(&d, &st, st.bytes + 500, st.len - 500);
  assert_int_equal(st.next, 1);
  assert_int_equal(d.err, 0);
  frame_decoder_close(&d);
  stream_free(&st);
}

static void frame_zero_length_is_eformat(void **state) {
  (void)state;
  expect_header_rejected(FRAME_MAX_DEFAULT, 0, SHOAL_EFORMAT);
  expect_header_rejected(1, 0, SHOAL_EFORMAT);
}

static void frame_errors_are_sticky(void **state) {
  (void)state;
  static const uint32_t bad[] = {0, 0xffffffffu};
  static const int want[] = {SHOAL_EFORMAT, SHOAL_ETOOBIG};
  uint8_t good[FRAME_HEADER_BYTES + 3];
  frame_header(good, 3);
  memcpy(good + FRAME_HEADER_BYTES, "abc", 3);

  for (size_t i = 0; i < 2; i++) {
    uint8_t in[FRAME_HEADER_BYTES];
    struct frame_decoder d;
    struct got g;

    buf_put_be32(in, bad[i]);
    frame_decoder_init(&d, FRAME_MAX_DEFAULT);
    assert_int_equal(next(&d, in, sizeof(in), &g), want[i]);
    /* A valid frame afterwards is refused with the same error and left
     * untouched; so is an empty input. */
    for (int k = 0; k < 3; k++) {
      g.used = 99;
      g.frame = good;
      g.len = 99;
      assert_int_equal(next(&d, good, sizeof(good), &g), want[i]);
      assert_int_equal(g.used, 0);
      assert_null(g.frame);
      assert_int_equal(g.len, 0);
    }
    assert_int_equal(next(&d, good, 0, &g), want[i]);
    assert_null(d.body);
    frame_decoder_close(&d);
  }
}

static void frame_max_is_clamped_to_frame_max_limit(void **state) {
  (void)state;
  struct frame_decoder d;
  struct got g;
  uint8_t in[FRAME_HEADER_BYTES];

  frame_decoder_init(&d, SIZE_MAX);
  assert_int_equal(d.max, FRAME_MAX_LIMIT);
  frame_decoder_close(&d);
  frame_decoder_init(&d, (size_t)FRAME_MAX_LIMIT + 1);
  assert_int_equal(d.max, FRAME_MAX_LIMIT);
  frame_decoder_close(&d);
  frame_decoder_init(&d, 777);
  assert_int_equal(d.max, 777);
  frame_decoder_close(&d);

  /* Behaviourally: asking for more than the limit still refuses limit + 1. */
  expect_header_rejected(SIZE_MAX, FRAME_MAX_LIMIT + 1, SHOAL_ETOOBIG);
  expect_header_rejected((size_t)FRAME_MAX_LIMIT * 2, FRAME_MAX_LIMIT + 1,
                         SHOAL_ETOOBIG);

  /* ... and a header of exactly the limit is accepted. */
  frame_decoder_init(&d, SIZE_MAX);
  buf_put_be32(in, FRAME_MAX_LIMIT);
  assert_int_equal(next(&d, in, sizeof(in), &g), 0);
  assert_int_equal(g.used, sizeof(in));
  assert_int_equal(d.err, 0);
  frame_decoder_close(&d);
}

/* Delivers a frame of `size` bytes through the buffered path (split in two
 * inputs) and checks it came out of the decoder's own buffer. */
static void deliver_buffered(struct frame_decoder *d, size_t size,
                             uint8_t *scratch) {
  struct got g;

  frame_header(scratch, size);
  tu_fill(scratch + FRAME_HEADER_BYTES, size, size);
  size_t half = FRAME_HEADER_BYTES + size / 2;
  assert_int_equal(next(d, scratch, half, &g), 0);
  assert_int_equal(g.used, half);
  assert_int_equal(
      next(d, scratch + half, FRAME_HEADER_BYTES + size - half, &g), 1);
  assert_int_equal(g.len, size);
  assert_non_null(d->body);
  assert_ptr_equal(g.frame, d->body);
  assert_memory_equal(g.frame, scratch + FRAME_HEADER_BYTES, size);
}

static void frame_large_buffered_frame_is_released_at_next_call(void **state) {
  (void)state;
  const size_t big = FRAME_KEEP_BYTES + 1;
  uint8_t *scratch = malloc(FRAME_HEADER_BYTES + big);
  struct frame_decoder d;
  struct got g;
  uint8_t small[FRAME_HEADER_BYTES + 1] = {0, 0, 0, 1, 'z'};
  assert_non_null(scratch);

  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  deliver_buffered(&d, big, scratch);
  assert_int_equal(d.body_cap, big);
  /* The frame stays readable until the next call... */
  assert_int_equal(d.body[big - 1], scratch[FRAME_HEADER_BYTES + big - 1]);
  /* ... which gives the large buffer back, even if it brings no bytes. */
  assert_int_equal(next(&d, small, 0, &g), 0);
  assert_null(d.body);
  assert_int_equal(d.body_cap, 0);

  /* Same when the next call carries a whole frame (fast path). */
  deliver_buffered(&d, big, scratch);
  assert_int_equal(next(&d, small, sizeof(small), &g), 1);
  assert_ptr_equal(g.frame, small + FRAME_HEADER_BYTES);
  assert_null(d.body);
  assert_int_equal(d.body_cap, 0);
  frame_decoder_close(&d);
  free(scratch);
}

static void frame_buffer_up_to_keep_bytes_is_kept_for_reuse(void **state) {
  (void)state;
  uint8_t *scratch = malloc(FRAME_HEADER_BYTES + FRAME_KEEP_BYTES);
  struct frame_decoder d;
  struct got g;
  assert_non_null(scratch);

  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  deliver_buffered(&d, FRAME_KEEP_BYTES, scratch);
  assert_int_equal(next(&d, scratch, 0, &g), 0);
  assert_non_null(d.body);
  assert_int_equal(d.body_cap, FRAME_KEEP_BYTES);
  /* A smaller split frame afterwards reuses the kept buffer. */
  deliver_buffered(&d, 100, scratch);
  assert_int_equal(d.body_cap, FRAME_KEEP_BYTES);
  frame_decoder_close(&d);
  assert_null(d.body);
  free(scratch);
}

static void frame_close_releases_a_partial_frame(void **state) {
  (void)state;
  uint8_t in[FRAME_HEADER_BYTES + 10];
  struct frame_decoder d;
  struct got g;

  frame_header(in, 5000);
  memset(in + FRAME_HEADER_BYTES, 1, 10);
  frame_decoder_init(&d, FRAME_MAX_DEFAULT);
  assert_int_equal(next(&d, in, sizeof(in), &g), 0);
  assert_non_null(d.body);
  /* LeakSanitizer reports the body if close does not free it. */
  frame_decoder_close(&d);
  assert_null(d.body);
  assert_int_equal(d.body_cap, 0);
  /* A closed decoder can be closed again and re-initialised. */
  frame_decoder_close(&d);
  frame_decoder_init(&d, 10);
  assert_int_equal(d.err, 0);
  frame_decoder_close(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(frame_header_writes_big_endian_length),
      cmocka_unit_test(frame_round_trip_returns_body_in_place),
      cmocka_unit_test(frame_input_fed_one_byte_at_a_time),
      cmocka_unit_test(frame_input_split_at_random_points_small_max),
      cmocka_unit_test(frame_input_split_at_random_points_default_max),
      cmocka_unit_test(frame_several_frames_in_one_buffer_come_out_one_by_one),
      cmocka_unit_test(frame_several_frames_then_a_partial_one),
      cmocka_unit_test(frame_header_then_whole_body_uses_the_input_in_place),
      cmocka_unit_test(frame_length_over_max_is_etoobig_before_allocating),
      cmocka_unit_test(frame_length_equal_to_max_is_accepted),
      cmocka_unit_test(frame_zero_length_is_eformat),
      cmocka_unit_test(frame_errors_are_sticky),
      cmocka_unit_test(frame_max_is_clamped_to_frame_max_limit),
      cmocka_unit_test(frame_large_buffered_frame_is_released_at_next_call),
      cmocka_unit_test(frame_buffer_up_to_keep_bytes_is_kept_for_reuse),
      cmocka_unit_test(frame_close_releases_a_partial_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
