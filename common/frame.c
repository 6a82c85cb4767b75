#include "common/frame.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"

void frame_decoder_init(struct frame_decoder *d, size_t max) {
  memset(d, 0, sizeof(*d));
  d->max = max > FRAME_MAX_LIMIT ? FRAME_MAX_LIMIT : max;
}

void frame_decoder_close(struct frame_decoder *d) {
  free(d->body);
  memset(d, 0, sizeof(*d));
}

void frame_header(uint8_t hdr[FRAME_HEADER_BYTES], size_t len) {
  assert(len <= FRAME_MAX_LIMIT);
  buf_put_be32(hdr, (uint32_t)len);
}

/* Starts the next frame: forget the previous one and, if it was large,
 * give its memory back. */
static void frame_reset(struct frame_decoder *d) {
  if (d->body_cap > FRAME_KEEP_BYTES) {
    free(d->body);
    d->body = NULL;
    d->body_cap = 0;
  }
  d->hdr_have = 0;
  d->body_len = 0;
  d->body_have = 0;
  d->delivered = 0;
}

int frame_decoder_next(struct frame_decoder *d, const uint8_t *data, size_t len,
                       size_t *consumed, const uint8_t **frame,
                       size_t *frame_len) {
  size_t off = 0;

  *consumed = 0;
  *frame = NULL;
  *frame_len = 0;
  if (d->err != 0) {
    return d->err;
  }
  if (d->delivered) {
    frame_reset(d);
  }

  while (d->hdr_have < FRAME_HEADER_BYTES) {
    if (off == len) {
      *consumed = off;
      return 0;
    }
    d->hdr[d->hdr_have++] = data[off++];
    if (d->hdr_have == FRAME_HEADER_BYTES) {
      uint32_t n = buf_be32(d->hdr);
      if (n == 0) {
        d->err = SHOAL_EFORMAT;
        *consumed = off;
        return d->err;
      }
      if (n > d->max) {
        d->err = SHOAL_ETOOBIG;
        *consumed = off;
        return d->err;
      }
      d->body_len = n;
    }
  }

  /* Fast path: the whole body is in this input; hand it out in place. */
  if (d->body_have == 0 && len - off >= d->body_len) {
    *frame = data + off;
    *frame_len = d->body_len;
    *consumed = off + d->body_len;
    d->delivered = 1;
    return 1;
  }

  size_t take = d->body_len - d->body_have;
  if (take > len - off) {
    take = len - off;
  }
  if (take == 0) {
    /* The header ended exactly at the end of the input: nothing to copy,
     * and no buffer may exist yet. */
    *consumed = off;
    return 0;
  }
  /* Grow with the bytes that actually arrived, not with the announced
   * length: a peer that sends a header and stalls pins almost nothing. */
  if (d->body_cap < d->body_have + take) {
    size_t cap = d->body_cap ? d->body_cap : 4096;
    while (cap < d->body_have + take) {
      cap *= 2;
    }
    if (cap > d->body_len) {
      cap = d->body_len;
    }
    uint8_t *p = realloc(d->body, cap);
    if (p == NULL) {
      d->err = SHOAL_ENOMEM;
      *consumed = off;
      return d->err;
    }
    d->body = p;
    d->body_cap = cap;
  }
  memcpy(d->body + d->body_have, data + off, take);
  d->body_have += take;
  off += take;
  *consumed = off;
  if (d->body_have < d->body_len) {
    return 0;
  }
  *frame = d->body;
  *frame_len = d->body_len;
  d->delivered = 1;
  return 1;
}
