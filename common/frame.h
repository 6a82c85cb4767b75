/* Length-prefixed frames over a byte stream.
 *
 * A frame is a 4-byte big-endian body length followed by that many bytes.
 * The decoder is incremental: input may arrive split at any byte, and one
 * buffer may hold several frames. The length is checked against the
 * decoder's maximum as soon as its 4 bytes are in, before any allocation.
 */
#ifndef SHOAL_FRAME_H
#define SHOAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_BYTES 4
/* Default maximum body: a control message or a 64 KiB data block with its
 * headers fits with room to spare; a manifest larger than this is sent in
 * parts by the peer protocol. */
#define FRAME_MAX_DEFAULT (1u << 20)
/* No decoder may be configured above this, whatever the caller asks. */
#define FRAME_MAX_LIMIT (16u << 20)
/* After a frame larger than this, the body buffer is released so that one
 * large frame does not pin memory for the connection's lifetime. */
#define FRAME_KEEP_BYTES (80u << 10) /* one peer-wire DATA frame fits */

struct frame_decoder {
  size_t max;
  uint8_t hdr[FRAME_HEADER_BYTES];
  size_t hdr_have;
  uint8_t *body; /* owned; NULL until a frame is split across inputs */
  size_t body_cap;
  size_t body_len; /* length announced by the current header */
  size_t body_have;
  int delivered; /* the previous call returned a frame from body */
  int err;       /* sticky */
};

/* Prepares a decoder that accepts bodies of 1..max bytes (max is clamped to
 * FRAME_MAX_LIMIT). */
void frame_decoder_init(struct frame_decoder *d, size_t max);
/* Releases the decoder's buffer. */
void frame_decoder_close(struct frame_decoder *d);

/* Consumes input until one frame is complete or the input is used up.
 * Returns 1 with frame and frame_len set when a frame is ready, 0 when every
 * byte was consumed and more are needed, or a negative error (sticky:
 * SHOAL_ETOOBIG for a length over the maximum, SHOAL_EFORMAT for a zero
 * length, SHOAL_ENOMEM). The count of bytes used is always stored in
 * consumed. The frame points either
 * into `data` or into the decoder's buffer, and is valid until the next call
 * or until `data` is released, whichever comes first. */
int frame_decoder_next(struct frame_decoder *d, const uint8_t *data, size_t len,
                       size_t *consumed, const uint8_t **frame,
                       size_t *frame_len);

/* Writes the 4-byte header for a body of len bytes (len <= FRAME_MAX_LIMIT). */
void frame_header(uint8_t hdr[FRAME_HEADER_BYTES], size_t len);

#endif
