#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void buf_reader_init(struct buf_reader *r, const void *data, size_t len) {
  r->data = data;
  r->len = len;
  r->off = 0;
  r->err = 0;
}

const uint8_t *buf_read_bytes(struct buf_reader *r, size_t n) {
  if (r->err != 0) {
    return NULL;
  }
  if (n > r->len - r->off) {
    r->err = SHOAL_ETRUNC;
    return NULL;
  }
  if (r->data == NULL) {
    return NULL; /* only possible for n == 0 on an empty reader */
  }
  const uint8_t *p = r->data + r->off;
  r->off += n;
  return p;
}

void buf_read_copy(struct buf_reader *r, void *out, size_t n) {
  const uint8_t *p = buf_read_bytes(r, n);
  if (p == NULL) {
    memset(out, 0, n);
    return;
  }
  memcpy(out, p, n);
}

uint8_t buf_read_u8(struct buf_reader *r) {
  const uint8_t *p = buf_read_bytes(r, 1);
  return p ? p[0] : 0;
}

uint16_t buf_read_u16(struct buf_reader *r) {
  const uint8_t *p = buf_read_bytes(r, 2);
  return p ? buf_be16(p) : 0;
}

uint32_t buf_read_u32(struct buf_reader *r) {
  const uint8_t *p = buf_read_bytes(r, 4);
  return p ? buf_be32(p) : 0;
}

uint64_t buf_read_u64(struct buf_reader *r) {
  const uint8_t *p = buf_read_bytes(r, 8);
  return p ? buf_be64(p) : 0;
}

size_t buf_reader_left(const struct buf_reader *r) {
  return r->len - r->off;
}

int buf_reader_err(const struct buf_reader *r) {
  return r->err;
}

void buf_init(struct buf *b, size_t max) {
  memset(b, 0, sizeof(*b));
  b->max = max;
}

void buf_init_fixed(struct buf *b, void *storage, size_t cap) {
  memset(b, 0, sizeof(*b));
  b->data = storage;
  b->cap = cap;
  b->max = cap;
  b->fixed = 1;
}

void buf_free(struct buf *b) {
  if (!b->fixed) {
    free(b->data);
  }
  memset(b, 0, sizeof(*b));
}

void buf_reset(struct buf *b) {
  b->len = 0;
  b->err = 0;
}

int buf_reserve(struct buf *b, size_t n) {
  if (b->err != 0) {
    return b->err;
  }
  if (n > b->max - b->len) {
    b->err = SHOAL_ETOOBIG;
    return b->err;
  }
  size_t need = b->len + n;
  if (need <= b->cap) {
    return 0;
  }
  if (b->fixed) {
    b->err = SHOAL_ETOOBIG;
    return b->err;
  }
  /* Grow geometrically but never past the hard maximum. */
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) {
    cap = cap > b->max / 2 ? b->max : cap * 2;
  }
  if (cap > b->max) {
    cap = b->max;
  }
  uint8_t *p = realloc(b->data, cap);
  if (p == NULL) {
    b->err = SHOAL_ENOMEM;
    return b->err;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void buf_add(struct buf *b, const void *p, size_t n) {
  if (n == 0 || buf_reserve(b, n) != 0) {
    return;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void buf_add_u8(struct buf *b, uint8_t v) {
  buf_add(b, &v, 1);
}

void buf_add_u16(struct buf *b, uint16_t v) {
  uint8_t t[2];
  buf_put_be16(t, v);
  buf_add(b, t, sizeof(t));
}

void buf_add_u32(struct buf *b, uint32_t v) {
  uint8_t t[4];
  buf_put_be32(t, v);
  buf_add(b, t, sizeof(t));
}

void buf_add_u64(struct buf *b, uint64_t v) {
  uint8_t t[8];
  buf_put_be64(t, v);
  buf_add(b, t, sizeof(t));
}

int buf_err(const struct buf *b) {
  return b->err;
}

uint8_t *buf_steal(struct buf *b, size_t *len) {
  if (b->fixed || b->err != 0) {
    *len = 0;
    return NULL;
  }
  uint8_t *p = b->data;
  *len = b->len;
  size_t max = b->max;
  memset(b, 0, sizeof(*b));
  b->max = max;
  return p;
}
