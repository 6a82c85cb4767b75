/* libFuzzer target for common/frame: the incremental frame decoder.
 *
 * Input layout: byte 0 picks the decoder's maximum, byte 1 (mod 8) the
 * number of split sizes that follow, one byte each; the rest is the byte
 * stream, fed in chunks of those sizes in turn (a 0 is an empty call). Each
 * chunk is copied into a heap block of exactly its size, so ASan catches a
 * read past it. The frames that come out are checked against a plain
 * reference walk over the whole stream: same bodies in the same order, then
 * the same error (or none), whatever the split.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/frame.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SPLITS 7

static void fail(const char *what) {
  fprintf(stderr, "fuzz_frame: %s\n", what);
  abort();
}

/* True when [p, p + n) lies inside [base, base + len), compared as
 * integers. */
static int points_into(const uint8_t *p, size_t n, const uint8_t *base,
                       size_t len) {
  uintptr_t a = (uintptr_t)p;
  uintptr_t b = (uintptr_t)base;
  return a >= b && n <= len && a - b <= len - n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t maxes[8] = {
      1, 2, 5, 16, 255, 4096, FRAME_MAX_DEFAULT, FRAME_MAX_LIMIT + 1};
  fz_first_call();
  if (size < 2) {
    return 0;
  }
  size_t max = maxes[data[0] & 7];
  size_t eff_max = max > FRAME_MAX_LIMIT ? FRAME_MAX_LIMIT : max;
  size_t nsplit = data[1] & 7;
  if (size < 2 + nsplit) {
    return 0;
  }
  const uint8_t *splits = data + 2;
  const uint8_t *stream = data + 2 + nsplit;
  size_t slen = size - 2 - nsplit;
  int any_split = 0;
  for (size_t i = 0; i < nsplit; i++) {
    any_split |= splits[i] != 0;
  }

  /* Reference: the complete frames, then the error the decoder must stop
   * with (0 when the stream just ends, possibly inside a frame). */
  size_t exp_off[1024];
  size_t exp_len[1024];
  size_t exp_count = 0;
  int exp_err = 0;
  for (size_t pos = 0; pos + FRAME_HEADER_BYTES <= slen;) {
    size_t n = buf_be32(stream + pos);
    if (n == 0) {
      exp_err = SHOAL_EFORMAT;
      break;
    }
    if (n > eff_max) {
      exp_err = SHOAL_ETOOBIG;
      break;
    }
    if (n > slen - pos - FRAME_HEADER_BYTES) {
      break;
    }
    if (exp_count == sizeof(exp_off) / sizeof(exp_off[0])) {
      return 0; /* more frames than this harness tracks */
    }
    exp_off[exp_count] = pos + FRAME_HEADER_BYTES;
    exp_len[exp_count] = n;
    exp_count++;
    pos += FRAME_HEADER_BYTES + n;
  }

  struct frame_decoder d;
  frame_decoder_init(&d, max);
  if (d.max != eff_max) {
    fail("maximum is not clamped to FRAME_MAX_LIMIT");
  }
  size_t got = 0;
  int err = 0;
  size_t fed = 0;
  for (size_t turn = 0; fed < slen && err == 0; turn++) {
    size_t clen = slen - fed;
    if (any_split) {
      size_t s = splits[turn % nsplit];
      clen = s < clen ? s : clen;
    }
    uint8_t *chunk = malloc(clen ? clen : 1);
    if (chunk == NULL) {
      break;
    }
    memcpy(chunk, stream + fed, clen);
    size_t off = 0;
    for (;;) {
      size_t used = 12345;
      const uint8_t *frame = (const uint8_t *)1;
      size_t flen = 12345;
      int rc =
          frame_decoder_next(&d, chunk + off, clen - off, &used, &frame, &flen);
      if (used > clen - off) {
        fail("consumed more than the input");
      }
      if (d.hdr_have > FRAME_HEADER_BYTES || d.body_cap > eff_max ||
          d.body_have > d.body_len) {
        fail("decoder state out of range");
      }
      if (rc == 1) {
        if (got == exp_count) {
          fail("more frames than the stream holds");
        }
        if (flen == 0 || flen > eff_max || flen != exp_len[got]) {
          fail("frame length is wrong");
        }
        if (!points_into(frame, flen, chunk, clen) &&
            !(d.body != NULL && points_into(frame, flen, d.body, d.body_cap))) {
          fail("frame points outside the input and the decoder's buffer");
        }
        if (memcmp(frame, stream + exp_off[got], flen) != 0) {
          fail("frame body differs from the stream");
        }
        got++;
        off += used;
        continue;
      }
      if (frame != NULL || flen != 0) {
        fail("no frame, but frame outputs set");
      }
      if (rc == 0) {
        if (used != clen - off) {
          fail("returned 0 without consuming all the input");
        }
        break;
      }
      err = rc;
      if (rc != exp_err || got != exp_count) {
        fail("error differs from the reference walk");
      }
      /* Errors are sticky and consume nothing more. */
      if (frame_decoder_next(&d, chunk, clen, &used, &frame, &flen) != rc ||
          used != 0 || frame != NULL) {
        fail("error is not sticky");
      }
      break;
    }
    free(chunk);
    fed += clen;
  }
  if (err == 0 && (exp_err != 0 || got != exp_count)) {
    fail("stream ended without the frames or error of the reference walk");
  }
  frame_decoder_close(&d);
  if (d.body != NULL) {
    fail("close left a buffer");
  }
  return 0;
}
