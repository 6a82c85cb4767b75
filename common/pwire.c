#include "common/pwire.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* Fixed parts of the messages, after the type byte. */
#define FIELDS_BLOCK 12 /* REQUEST, CANCEL, REJECT: chunk, offset, length */
#define FIELDS_RANGE 8  /* MANIFEST_REQ: offset, length */
#define FIELDS_PART 8   /* MANIFEST_PART: total, offset */
#define FIELDS_DATA 8   /* DATA: chunk, offset */
/* A have-map covers at most the largest manifest's chunks. */
#define HAVE_MAP_MAX ((MANIFEST_MAX_CHUNKS + 7u) / 8u)

/* ------------------------------------------------------------------------ */
/* Hello */

void pwire_eph_generate(struct pwire_eph *e) {
  crypto_kx_keypair(e->pk, e->sk);
}

void pwire_eph_close(struct pwire_eph *e) {
  sodium_memzero(e, sizeof(*e));
}

int pwire_hello_seal(struct buf *out, const struct identity *id,
                     uint64_t timestamp_ms, uint64_t seq,
                     const struct pwire_hello *h) {
  uint8_t payload[PWIRE_HELLO_PAYLOAD_BYTES];
  struct buf b;

  /* Refuse what every receiver would refuse. */
  if ((h->flags & ~PWIRE_HELLO_FLAGS) != 0) {
    return SHOAL_EINVAL;
  }
  buf_init_fixed(&b, payload, sizeof(payload));
  buf_add(&b, h->content, sizeof(h->content));
  buf_add(&b, h->eph_pk, sizeof(h->eph_pk));
  buf_add_u16(&b, h->port);
  buf_add_u8(&b, h->flags);
  if (buf_err(&b) != 0 || b.len != sizeof(payload)) {
    return SHOAL_EINVAL; /* unreachable: the layout is fixed */
  }
  return envelope_seal(out, ENVELOPE_PEER_HELLO, PWIRE_HELLO, id, timestamp_ms,
                       seq, payload, sizeof(payload));
}

int pwire_hello_open(const uint8_t *msg, size_t len,
                     const struct envelope_policy *pol, struct pwire_hello *out,
                     uint8_t sender[IDENTITY_PK_BYTES]) {
  struct envelope e;
  struct buf_reader r;
  int err;

  memset(out, 0, sizeof(*out));
  if (sender != NULL) {
    memset(sender, 0, IDENTITY_PK_BYTES);
  }
  /* A hello is only ever checked against the hello domain; another class
   * here is the caller's mistake, and it must not open anything. */
  if (pol->cls != ENVELOPE_PEER_HELLO) {
    return SHOAL_EINVAL;
  }
  /* The envelope verifies the signature over the exact bytes first; only
   * then is the payload looked at. */
  err = envelope_open(msg, len, pol, &e);
  if (err != 0) {
    return err;
  }
  if (e.type >= PWIRE_HELLO_OLDEST && e.type < PWIRE_HELLO) {
    return SHOAL_EVERSION;
  }
  if (e.type != PWIRE_HELLO) {
    return SHOAL_EPROTO;
  }
  if (e.payload_len != PWIRE_HELLO_PAYLOAD_BYTES) {
    return SHOAL_EFORMAT;
  }
  buf_reader_init(&r, e.payload, e.payload_len);
  buf_read_copy(&r, out->content, sizeof(out->content));
  buf_read_copy(&r, out->eph_pk, sizeof(out->eph_pk));
  out->port = buf_read_u16(&r);
  out->flags = buf_read_u8(&r);
  if (buf_reader_err(&r) != 0 || buf_reader_left(&r) != 0 ||
      (out->flags & ~PWIRE_HELLO_FLAGS) != 0) {
    memset(out, 0, sizeof(*out));
    return SHOAL_EFORMAT;
  }
  if (sender != NULL) {
    memcpy(sender, e.sender, IDENTITY_PK_BYTES);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Session */

/* ChaCha20-Poly1305 (RFC 8439) through libcrypto, fetched once per
 * process: the static EVP_chacha20_poly1305() would be looked up again in
 * the providers on every frame. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *g_fetched;

static void fetch_cipher(void) {
  g_fetched = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

static const EVP_CIPHER *aead(void) {
  (void)pthread_once(&g_once, fetch_cipher);
  return g_fetched != NULL ? g_fetched : EVP_chacha20_poly1305();
}

/* A context keyed for one direction; the nonce is set per frame. */
static EVP_CIPHER_CTX *keyed(const uint8_t key[PWIRE_KEY_BYTES], int enc) {
  EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
  if (cx == NULL || EVP_CipherInit_ex(cx, aead(), NULL, key, NULL, enc) != 1) {
    EVP_CIPHER_CTX_free(cx);
    return NULL;
  }
  return cx;
}

int pwire_session_init(struct pwire_session *s, const struct pwire_eph *ours,
                       const uint8_t theirs[crypto_kx_PUBLICKEYBYTES],
                       int initiator) {
  int rc;

  memset(s, 0, sizeof(*s));
  /* Our own key coming back is a reflected hello: with it both directions
   * would share one shared secret with ourselves, never with a peer. */
  if (sodium_memcmp(ours->pk, theirs, crypto_kx_PUBLICKEYBYTES) == 0) {
    return SHOAL_EBADSIG;
  }
  if (initiator) {
    rc =
        crypto_kx_client_session_keys(s->rx, s->tx, ours->pk, ours->sk, theirs);
  } else {
    rc =
        crypto_kx_server_session_keys(s->rx, s->tx, ours->pk, ours->sk, theirs);
  }
  if (rc != 0) {
    sodium_memzero(s, sizeof(*s));
    return SHOAL_EBADSIG;
  }
  s->tx_cx = keyed(s->tx, 1);
  s->rx_cx = keyed(s->rx, 0);
  if (s->tx_cx == NULL || s->rx_cx == NULL) {
    pwire_session_close(s);
    return SHOAL_ENOMEM;
  }
  return 0;
}

void pwire_session_close(struct pwire_session *s) {
  /* EVP_CIPHER_CTX_free wipes the key schedule it holds. */
  EVP_CIPHER_CTX_free(s->tx_cx);
  EVP_CIPHER_CTX_free(s->rx_cx);
  sodium_memzero(s, sizeof(*s));
}

/* 4 zero bytes, then the frame counter big-endian. */
static void make_nonce(uint8_t nonce[PWIRE_NONCE_BYTES], uint64_t count) {
  memset(nonce, 0, PWIRE_NONCE_BYTES - 8);
  buf_put_be64(nonce + PWIRE_NONCE_BYTES - 8, count);
}

/* Encrypts len bytes of in into out (which may be in itself) with cx,
 * keyed for sending, under counter count, and writes the tag after them. */
static int seal_with(EVP_CIPHER_CTX *cx, uint64_t count, uint8_t *out,
                     const uint8_t *in, size_t len) {
  uint8_t nonce[PWIRE_NONCE_BYTES];
  int n = 0, fin = 0;

  make_nonce(nonce, count);
  if (EVP_EncryptInit_ex(cx, NULL, NULL, NULL, nonce) != 1 ||
      (len > 0 && EVP_EncryptUpdate(cx, out, &n, in, (int)len) != 1) ||
      EVP_EncryptFinal_ex(cx, out + n, &fin) != 1 ||
      (size_t)n + (size_t)fin != len ||
      EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_GET_TAG, PWIRE_TAG_BYTES,
                          out + len) != 1) {
    return SHOAL_ENOMEM; /* libcrypto fails only without memory */
  }
  return 0;
}

/* Encrypts len bytes of in into out (which may be in itself) and writes
 * the tag after them, under the next send counter. */
static int seal_to(struct pwire_session *s, uint8_t *out, const uint8_t *in,
                   size_t len) {
  int err;

  /* A frame the other side could never open is not sent. */
  if (len > PWIRE_MAX_PLAIN) {
    return SHOAL_ETOOBIG;
  }
  /* The last counter value is never used, so a nonce never repeats. */
  if (s->tx_count == UINT64_MAX) {
    return SHOAL_ETOOBIG;
  }
  err = seal_with(s->tx_cx, s->tx_count, out, in, len);
  if (err == 0) {
    s->tx_count++;
  }
  return err;
}

int pwire_seal_reserve(struct pwire_session *s, unsigned n, uint64_t *first) {
  /* As for seal_to: UINT64_MAX itself is never used. */
  if (n == 0 || UINT64_MAX - s->tx_count < (uint64_t)n) {
    return SHOAL_ETOOBIG;
  }
  *first = s->tx_count;
  s->tx_count += n;
  return 0;
}

int pwire_seal_at(const uint8_t key[PWIRE_KEY_BYTES], uint64_t counter,
                  uint8_t *msg, size_t len) {
  EVP_CIPHER_CTX *cx;
  int err;

  if (len > PWIRE_MAX_PLAIN || counter == UINT64_MAX) {
    return SHOAL_ETOOBIG;
  }
  cx = keyed(key, 1);
  if (cx == NULL) {
    return SHOAL_ENOMEM;
  }
  err = seal_with(cx, counter, msg, msg, len);
  EVP_CIPHER_CTX_free(cx);
  return err;
}

int pwire_seal(struct pwire_session *s, struct buf *out, const uint8_t *plain,
               size_t len) {
  int err;

  if (len > PWIRE_MAX_PLAIN) {
    return SHOAL_ETOOBIG;
  }
  err = buf_reserve(out, len + PWIRE_TAG_BYTES);
  if (err != 0) {
    return err;
  }
  err = seal_to(s, out->data + out->len, plain, len);
  if (err == 0) {
    out->len += len + PWIRE_TAG_BYTES;
  }
  return err;
}

int pwire_seal_inplace(struct pwire_session *s, uint8_t *msg, size_t len) {
  return seal_to(s, msg, msg, len);
}

int pwire_open_head(struct pwire_session *s, const uint8_t *body, size_t len,
                    uint8_t *head, size_t head_len) {
  uint8_t nonce[PWIRE_NONCE_BYTES];
  int n = 0;

  if (len < PWIRE_TAG_BYTES + head_len) {
    return SHOAL_ETRUNC;
  }
  if (len > PWIRE_MAX_FRAME) {
    return SHOAL_ETOOBIG;
  }
  if (s->rx_count == UINT64_MAX) {
    return SHOAL_EBADSIG;
  }
  make_nonce(nonce, s->rx_count);
  if (EVP_DecryptInit_ex(s->rx_cx, NULL, NULL, NULL, nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(s->rx_cx, EVP_CTRL_AEAD_SET_TAG, PWIRE_TAG_BYTES,
                          (void *)(uintptr_t)(body + len - PWIRE_TAG_BYTES)) !=
          1 ||
      (head_len > 0 &&
       (EVP_DecryptUpdate(s->rx_cx, head, &n, body, (int)head_len) != 1 ||
        (size_t)n != head_len))) {
    if (head_len > 0) {
      sodium_memzero(head, head_len);
    }
    return SHOAL_EBADSIG;
  }
  return 0;
}

int pwire_open_rest(struct pwire_session *s, const uint8_t *body, size_t len,
                    uint8_t *head, size_t head_len, uint8_t *rest) {
  size_t mlen = len - PWIRE_TAG_BYTES, rlen = mlen - head_len;
  int n = 0, fin = 0;

  if ((rlen > 0 && EVP_DecryptUpdate(s->rx_cx, rest, &n, body + head_len,
                                     (int)rlen) != 1) ||
      EVP_DecryptFinal_ex(s->rx_cx, rest + n, &fin) != 1 ||
      (size_t)n + (size_t)fin != rlen) {
    if (head_len > 0) {
      sodium_memzero(head, head_len);
    }
    if (rlen > 0) {
      sodium_memzero(rest, rlen);
    }
    return SHOAL_EBADSIG;
  }
  s->rx_count++;
  return (int)mlen;
}

int pwire_open_defer(struct pwire_session *s, const uint8_t *body, size_t len,
                     uint8_t *rest, struct pwire_sealed *out) {
  enum { HEAD = PWIRE_DATA_HEAD_BYTES };
  size_t rlen;

  if (len < PWIRE_TAG_BYTES + HEAD + 1) {
    return SHOAL_ETRUNC;
  }
  rlen = len - PWIRE_TAG_BYTES - HEAD;
  if (rlen > PWIRE_BLOCK_BYTES) {
    return SHOAL_ETOOBIG;
  }
  memcpy(out->key, s->rx, sizeof(out->key));
  out->count = s->rx_count;
  memcpy(out->head, body, HEAD);
  memcpy(out->tag, body + len - PWIRE_TAG_BYTES, PWIRE_TAG_BYTES);
  out->len = (uint32_t)rlen;
  memcpy(rest, body + HEAD, rlen);
  s->rx_count++;
  return (int)(HEAD + rlen);
}

int pwire_open_sealed(const struct pwire_sealed *b, uint32_t chunk,
                      uint32_t offset, uint8_t *rest) {
  enum { HEAD = PWIRE_DATA_HEAD_BYTES };
  uint8_t nonce[PWIRE_NONCE_BYTES];
  uint8_t head[HEAD];
  EVP_CIPHER_CTX *cx;
  int n = 0, m = 0, fin = 0, rc = 0;

  if (b->len == 0 || b->len > PWIRE_BLOCK_BYTES) {
    return SHOAL_EINVAL;
  }
  /* A context of its own: this runs beside the loop, which goes on
   * opening the session's later frames with the session's. */
  cx = keyed(b->key, 0);
  if (cx == NULL) {
    return SHOAL_ENOMEM;
  }
  make_nonce(nonce, b->count);
  if (EVP_DecryptInit_ex(cx, NULL, NULL, NULL, nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_SET_TAG, PWIRE_TAG_BYTES,
                          (void *)(uintptr_t)b->tag) != 1 ||
      EVP_DecryptUpdate(cx, head, &n, b->head, HEAD) != 1 || n != HEAD ||
      EVP_DecryptUpdate(cx, rest, &m, rest, (int)b->len) != 1 ||
      EVP_DecryptFinal_ex(cx, rest + m, &fin) != 1 ||
      (size_t)m + (size_t)fin != b->len) {
    rc = SHOAL_EBADSIG;
  } else if (head[0] != PWIRE_DATA || buf_be32(head + 1) != chunk ||
             buf_be32(head + 5) != offset) {
    rc = SHOAL_EPROTO;
  }
  EVP_CIPHER_CTX_free(cx);
  if (rc != 0) {
    sodium_memzero(rest, b->len);
  }
  sodium_memzero(head, sizeof(head));
  return rc;
}

int pwire_open(struct pwire_session *s, const uint8_t *body, size_t len,
               uint8_t *plain, size_t cap) {
  int err;

  if (len < PWIRE_TAG_BYTES) {
    return SHOAL_ETRUNC;
  }
  if (cap < len - PWIRE_TAG_BYTES) {
    return SHOAL_ETOOBIG;
  }
  /* The whole plaintext is the "rest" of an empty head. */
  err = pwire_open_head(s, body, len, NULL, 0);
  return err != 0 ? err : pwire_open_rest(s, body, len, NULL, 0, plain);
}

int pwire_hello_version(const uint8_t *msg, size_t len) {
  return len > 2 ? msg[2] : 0;
}

/* ------------------------------------------------------------------------ */
/* Message codecs */

/* A HAVE's chunks (pwire.h has the encoding): 0 and their number in
 * *count, SHOAL_ETRUNC (none, or the last varint cut short), SHOAL_ETOOBIG
 * (more than PWIRE_HAVE_MAX, or more bytes than the most they take) or
 * SHOAL_EFORMAT (a varint longer than its value needs or than
 * PWIRE_HAVE_VARINT_MAX, or a chunk past UINT32_MAX). */
static int have_scan(const uint8_t *p, size_t len, size_t *count) {
  uint64_t next = 0; /* the least the next chunk can be */
  size_t i = 0;

  *count = 0;
  if (len == 0) {
    return SHOAL_ETRUNC;
  }
  if (len > PWIRE_HAVE_MAX_BYTES) {
    return SHOAL_ETOOBIG;
  }
  while (i < len) {
    uint64_t v = 0;
    unsigned k = 0;
    for (;;) {
      if (i == len) {
        return SHOAL_ETRUNC;
      }
      if (k == PWIRE_HAVE_VARINT_MAX) {
        return SHOAL_EFORMAT;
      }
      uint8_t byte = p[i++];
      v |= (uint64_t)(byte & 0x7fu) << (7u * k);
      k++;
      if ((byte & 0x80u) == 0) {
        if (byte == 0 && k > 1) {
          return SHOAL_EFORMAT; /* longer than its value needs */
        }
        break;
      }
    }
    next += v;
    if (next > UINT32_MAX) {
      return SHOAL_EFORMAT;
    }
    next++;
    if (++*count > PWIRE_HAVE_MAX) {
      return SHOAL_ETOOBIG;
    }
  }
  return 0;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a;
  uint32_t y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

size_t pwire_have_sort(uint32_t *chunks, size_t n) {
  size_t kept = 0;
  if (n == 0) {
    return 0;
  }
  qsort(chunks, n, sizeof(*chunks), cmp_u32);
  for (size_t i = 1; i < n; i++) {
    if (chunks[i] != chunks[kept]) {
      chunks[++kept] = chunks[i];
    }
  }
  return kept + 1;
}

size_t pwire_have_put(uint8_t *out, const uint32_t *chunks, size_t n) {
  uint64_t next = 0;
  size_t len = 0;

  if (n == 0 || n > PWIRE_HAVE_MAX) {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if (chunks[i] <= chunks[i - 1]) {
      return 0;
    }
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t v = chunks[i] - next;
    while (v >= 0x80u) {
      out[len++] = (uint8_t)(v | 0x80u);
      v >>= 7;
    }
    out[len++] = (uint8_t)v;
    next = (uint64_t)chunks[i] + 1;
  }
  return len;
}

void pwire_have_begin(struct pwire_have_iter *it, const struct pwire_msg *m) {
  it->at = m->data;
  it->end = m->data + m->data_len;
  it->next = 0;
}

int pwire_have_next(struct pwire_have_iter *it, uint32_t *chunk) {
  uint64_t v = 0;
  unsigned shift = 0;
  if (it->at >= it->end) {
    return 0;
  }
  /* pwire_decode checked every varint: each ends inside the message. */
  for (;;) {
    uint8_t byte = *it->at++;
    v |= (uint64_t)(byte & 0x7fu) << shift;
    shift += 7;
    if ((byte & 0x80u) == 0) {
      break;
    }
  }
  *chunk = (uint32_t)(it->next + v);
  it->next = (uint64_t)*chunk + 1;
  return 1;
}

/* Checks m's variable part and returns its encoded size after the type
 * byte, or SHOAL_EINVAL for a message pwire_decode would refuse. */
static int encoded_body(const struct pwire_msg *m, size_t *size) {
  switch (m->type) {
  case PWIRE_MANIFEST_REQ:
    if (m->length == 0 || m->length > PWIRE_MANIFEST_PART_BYTES) {
      return SHOAL_EINVAL;
    }
    *size = FIELDS_RANGE;
    return 0;
  case PWIRE_MANIFEST_PART:
    if (m->data_len == 0 || m->data_len > PWIRE_MANIFEST_PART_BYTES ||
        m->total > MANIFEST_MAX_BYTES ||
        (uint64_t)m->offset + m->data_len > m->total) {
      return SHOAL_EINVAL;
    }
    *size = FIELDS_PART + m->data_len;
    return 0;
  case PWIRE_HAVE_MAP:
    if (m->data_len == 0 || m->data_len > HAVE_MAP_MAX) {
      return SHOAL_EINVAL;
    }
    *size = m->data_len;
    return 0;
  case PWIRE_HAVE: {
    size_t count;
    if (have_scan(m->data, m->data_len, &count) != 0) {
      return SHOAL_EINVAL;
    }
    *size = m->data_len;
    return 0;
  }
  case PWIRE_PEX:
    if (m->data_len == 0 || m->data_len % TMSG_CERT_BYTES != 0 ||
        m->data_len > TMSG_CERT_BYTES * PWIRE_PEX_MAX_RECORDS) {
      return SHOAL_EINVAL;
    }
    *size = m->data_len;
    return 0;
  case PWIRE_INTERESTED:
  case PWIRE_NOT_INTERESTED:
  case PWIRE_CHOKE:
  case PWIRE_UNCHOKE:
  case PWIRE_KEEPALIVE:
    *size = 0;
    return 0;
  case PWIRE_REQUEST:
  case PWIRE_CANCEL:
  case PWIRE_REJECT:
    if (m->length == 0 || m->length > PWIRE_BLOCK_BYTES) {
      return SHOAL_EINVAL;
    }
    *size = FIELDS_BLOCK;
    return 0;
  case PWIRE_DATA:
    if (m->data_len == 0 || m->data_len > PWIRE_BLOCK_BYTES) {
      return SHOAL_EINVAL;
    }
    *size = FIELDS_DATA + m->data_len;
    return 0;
  default:
    return SHOAL_EINVAL;
  }
}

int pwire_encode(struct buf *out, const struct pwire_msg *m) {
  size_t body = 0;
  int err = encoded_body(m, &body);
  if (err != 0) {
    return err;
  }
  /* Room for the whole message first, so that a failure appends nothing. */
  err = buf_reserve(out, 1 + body);
  if (err != 0) {
    return err;
  }
  buf_add_u8(out, m->type);
  switch (m->type) {
  case PWIRE_MANIFEST_REQ:
    buf_add_u32(out, m->offset);
    buf_add_u32(out, m->length);
    break;
  case PWIRE_MANIFEST_PART:
    buf_add_u32(out, m->total);
    buf_add_u32(out, m->offset);
    buf_add(out, m->data, m->data_len);
    break;
  case PWIRE_HAVE_MAP:
  case PWIRE_HAVE:
  case PWIRE_PEX:
    buf_add(out, m->data, m->data_len);
    break;
  case PWIRE_REQUEST:
  case PWIRE_CANCEL:
  case PWIRE_REJECT:
    buf_add_u32(out, m->chunk);
    buf_add_u32(out, m->offset);
    buf_add_u32(out, m->length);
    break;
  case PWIRE_DATA:
    buf_add_u32(out, m->chunk);
    buf_add_u32(out, m->offset);
    buf_add(out, m->data, m->data_len);
    break;
  default: /* the types without fields */
    break;
  }
  return buf_err(out);
}

int pwire_block_encode(uint8_t out[PWIRE_BLOCK_MSG_BYTES], uint8_t type,
                       uint32_t chunk, uint32_t offset, uint32_t length) {
  if ((type != PWIRE_REQUEST && type != PWIRE_CANCEL && type != PWIRE_REJECT) ||
      length == 0 || length > PWIRE_BLOCK_BYTES) {
    return SHOAL_EINVAL;
  }
  out[0] = type;
  buf_put_be32(out + 1, chunk);
  buf_put_be32(out + 5, offset);
  buf_put_be32(out + 9, length);
  return 0;
}

int pwire_data_head_encode(uint8_t out[PWIRE_DATA_HEAD_BYTES], uint32_t chunk,
                           uint32_t offset, size_t len) {
  if (len == 0 || len > PWIRE_BLOCK_BYTES) {
    return SHOAL_EINVAL;
  }
  out[0] = PWIRE_DATA;
  buf_put_be32(out + 1, chunk);
  buf_put_be32(out + 5, offset);
  return 0;
}

/* Reads the variable tail of a message: 1..max bytes, all that is left. */
static void read_tail(struct buf_reader *r, struct pwire_msg *out, size_t max,
                      int *err) {
  size_t n = buf_reader_left(r);
  if (buf_reader_err(r) != 0) {
    return;
  }
  if (n == 0) {
    *err = SHOAL_ETRUNC;
    return;
  }
  if (n > max) {
    *err = SHOAL_ETOOBIG;
    return;
  }
  out->data = buf_read_bytes(r, n);
  out->data_len = n;
}

/* A length field: 1..max, else SHOAL_EFORMAT (zero) or SHOAL_ETOOBIG. */
static void check_length(const struct buf_reader *r, uint32_t length,
                         uint32_t max, int *err) {
  if (*err != 0 || buf_reader_err(r) != 0) {
    return;
  }
  if (length == 0) {
    *err = SHOAL_EFORMAT;
  } else if (length > max) {
    *err = SHOAL_ETOOBIG;
  }
}

int pwire_decode(const uint8_t *p, size_t len, struct pwire_msg *out) {
  struct buf_reader r;
  int err = 0;

  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  out->type = buf_read_u8(&r);
  if (buf_reader_err(&r) != 0) {
    return SHOAL_ETRUNC;
  }
  switch (out->type) {
  case PWIRE_MANIFEST_REQ:
    out->offset = buf_read_u32(&r);
    out->length = buf_read_u32(&r);
    check_length(&r, out->length, PWIRE_MANIFEST_PART_BYTES, &err);
    break;
  case PWIRE_MANIFEST_PART:
    out->total = buf_read_u32(&r);
    out->offset = buf_read_u32(&r);
    read_tail(&r, out, PWIRE_MANIFEST_PART_BYTES, &err);
    if (err == 0 && buf_reader_err(&r) == 0) {
      if (out->total > MANIFEST_MAX_BYTES) {
        err = SHOAL_ETOOBIG;
      } else if ((uint64_t)out->offset + out->data_len > out->total) {
        err = SHOAL_EFORMAT;
      }
    }
    break;
  case PWIRE_HAVE_MAP:
    read_tail(&r, out, HAVE_MAP_MAX, &err);
    break;
  case PWIRE_HAVE: {
    size_t count = 0;
    read_tail(&r, out, PWIRE_HAVE_MAX_BYTES, &err);
    if (err == 0 && buf_reader_err(&r) == 0) {
      err = have_scan(out->data, out->data_len, &count);
      out->length = (uint32_t)count;
    }
    break;
  }
  case PWIRE_PEX:
    read_tail(&r, out, TMSG_CERT_BYTES * PWIRE_PEX_MAX_RECORDS, &err);
    if (err == 0 && out->data_len % TMSG_CERT_BYTES != 0) {
      err = SHOAL_EFORMAT; /* a record cut short */
    }
    break;
  case PWIRE_INTERESTED:
  case PWIRE_NOT_INTERESTED:
  case PWIRE_CHOKE:
  case PWIRE_UNCHOKE:
  case PWIRE_KEEPALIVE:
    break;
  case PWIRE_REQUEST:
  case PWIRE_CANCEL:
  case PWIRE_REJECT:
    out->chunk = buf_read_u32(&r);
    out->offset = buf_read_u32(&r);
    out->length = buf_read_u32(&r);
    check_length(&r, out->length, PWIRE_BLOCK_BYTES, &err);
    break;
  case PWIRE_DATA:
    out->chunk = buf_read_u32(&r);
    out->offset = buf_read_u32(&r);
    read_tail(&r, out, PWIRE_BLOCK_BYTES, &err);
    break;
  default:
    err = SHOAL_EFORMAT;
    break;
  }
  /* A reader error wins, then leftover bytes are a format error. */
  if (err == 0) {
    err = buf_reader_err(&r);
  }
  if (err == 0 && buf_reader_left(&r) != 0) {
    err = SHOAL_EFORMAT;
  }
  if (err != 0) {
    memset(out, 0, sizeof(*out));
  }
  return err;
}

/* ------------------------------------------------------------------------ */
/* Checks against a manifest */

int pwire_check_block(const struct manifest *m, uint32_t chunk, uint32_t offset,
                      uint32_t length) {
  if (chunk >= m->chunk_count || length == 0 || length > PWIRE_BLOCK_BYTES) {
    return SHOAL_EINVAL;
  }
  /* 64-bit sum: offset + length cannot wrap. */
  if ((uint64_t)offset + length > manifest_chunk_len(m, chunk)) {
    return SHOAL_EINVAL;
  }
  return 0;
}

int pwire_check_have_map(const uint8_t *map, size_t len, uint32_t chunks) {
  uint64_t want = ((uint64_t)chunks + 7u) / 8u;
  unsigned used = chunks % 8u;

  if ((uint64_t)len != want) {
    return SHOAL_EFORMAT;
  }
  /* Chunk i is bit 7 - i % 8 of byte i / 8; the bits past the last chunk
   * are the low ones of the last byte. */
  if (used != 0 && (map[len - 1] & (0xffu >> used)) != 0) {
    return SHOAL_EFORMAT;
  }
  return 0;
}
