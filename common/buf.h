/* Bounded byte reader and growable byte buffer with a hard maximum.
 *
 * Both keep a sticky error: after the first failure every further call is a
 * no-op and the error is reported once, at the end, by buf_reader_err() or
 * buf_err(). This keeps parsers straight-line while still checking the
 * length before every field (curl's dynbuf and Go's encoding/binary readers
 * work the same way). Integers on the wire are big-endian and are always
 * assembled byte by byte, never by casting a pointer.
 */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Explicit big-endian helpers. `p` must point at enough bytes. */
static inline uint16_t buf_be16(const uint8_t *p) {
  return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}
static inline uint32_t buf_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}
static inline uint64_t buf_be64(const uint8_t *p) {
  return (uint64_t)buf_be32(p) << 32 | buf_be32(p + 4);
}
static inline void buf_put_be16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void buf_put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline void buf_put_be64(uint8_t *p, uint64_t v) {
  buf_put_be32(p, (uint32_t)(v >> 32));
  buf_put_be32(p + 4, (uint32_t)v);
}

/* A read cursor over borrowed bytes; the bytes must outlive the reader. */
struct buf_reader {
  const uint8_t *data;
  size_t len;
  size_t off;
  int err; /* 0, or SHOAL_ETRUNC after a read past the end */
};

void buf_reader_init(struct buf_reader *r, const void *data, size_t len);
uint8_t buf_read_u8(struct buf_reader *r);
uint16_t buf_read_u16(struct buf_reader *r);
uint32_t buf_read_u32(struct buf_reader *r);
uint64_t buf_read_u64(struct buf_reader *r);
/* Returns a pointer to the next n bytes inside the reader's data, or NULL
 * (and sets the error) when fewer than n remain. */
const uint8_t *buf_read_bytes(struct buf_reader *r, size_t n);
/* Copies the next n bytes into out; zero-fills out when truncated. */
void buf_read_copy(struct buf_reader *r, void *out, size_t n);
size_t buf_reader_left(const struct buf_reader *r);
int buf_reader_err(const struct buf_reader *r);

/* A growable buffer that never grows past `max` bytes. It either owns heap
 * storage (buf_init) or writes into caller storage that cannot grow
 * (buf_init_fixed). */
struct buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t max;
  int fixed; /* storage belongs to the caller */
  int err;   /* 0, SHOAL_ETOOBIG or SHOAL_ENOMEM; sticky */
};

void buf_init(struct buf *b, size_t max);
void buf_init_fixed(struct buf *b, void *storage, size_t cap);
/* Frees owned storage and resets the buffer; safe on a zeroed struct. */
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
/* Makes room for n more bytes. Returns 0 or the (sticky) error. */
int buf_reserve(struct buf *b, size_t n);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_add_u8(struct buf *b, uint8_t v);
void buf_add_u16(struct buf *b, uint16_t v);
void buf_add_u32(struct buf *b, uint32_t v);
void buf_add_u64(struct buf *b, uint64_t v);
int buf_err(const struct buf *b);
/* Hands the owned storage to the caller (free() it); the buffer is reset.
 * Returns NULL for a fixed buffer or after an error. */
uint8_t *buf_steal(struct buf *b, size_t *len);

#endif
