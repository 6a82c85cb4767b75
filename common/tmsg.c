#include "common/tmsg.h"

#include <string.h>

#include "common/envelope.h"
#include "common/error.h"

/* The certificate's own domain: a tracker signature made for a reply never
 * verifies as a certificate, nor the other way round. */
static const char cert_domain[] = "shoal/1 address certificate";

#define PEER_BYTES (IDENTITY_PK_BYTES + 1 + 16 + 2 + 1)
#define ITEM_BYTES (TMSG_ID_BYTES + 1 + 8)

/* Every decoder ends the same way: a reader error wins, then leftover
 * bytes are a format error. */
static int finish(struct buf_reader *r, void *out, size_t size, int err) {
  if (err == 0) {
    err = buf_reader_err(r);
  }
  if (err == 0 && buf_reader_left(r) != 0) {
    err = SHOAL_EFORMAT;
  }
  if (err != 0) {
    memset(out, 0, size);
  }
  return err;
}

/* Text fields: no control characters and no NUL, so they print safely. */
static int text_ok(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] < 0x20 || p[i] == 0x7f) {
      return 0;
    }
  }
  return 1;
}

static void read_text(struct buf_reader *r, char *out, size_t max, int *err) {
  uint16_t n = buf_read_u16(r);
  const uint8_t *p;
  if (buf_reader_err(r) != 0) {
    return;
  }
  if (n > max) {
    *err = SHOAL_ETOOBIG;
    return;
  }
  p = buf_read_bytes(r, n);
  if (p == NULL) {
    return;
  }
  if (!text_ok(p, n)) {
    *err = SHOAL_EFORMAT;
    return;
  }
  memcpy(out, p, n);
  out[n] = '\0';
}

/* Appends a text field; refuses one its decoder would refuse. */
static int add_text(struct buf *b, const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max || !text_ok((const uint8_t *)s, n)) {
    return SHOAL_EINVAL;
  }
  buf_add_u16(b, (uint16_t)n);
  buf_add(b, s, n);
  return 0;
}

/* ------------------------------------------------------------------------ */

int tmsg_is_query(const uint8_t *msg, size_t len) {
  return len >= 2 && msg[1] == TMSG_QUERY_CLASS;
}

/* A query and an envelope both start with the version, the class and the
 * type, one byte each (docs/protocol.md, "Envelope" and "Tracker query"). */
#define TYPE_OFFSET 2

uint8_t tmsg_peek_type(const uint8_t *msg, size_t len) {
  return len > TYPE_OFFSET ? msg[TYPE_OFFSET] : 0;
}

int tmsg_query_encode(struct buf *out, uint8_t type, uint64_t id,
                      const void *payload, size_t len) {
  if (len > FRAME_MAX_DEFAULT - TMSG_QUERY_HEADER_BYTES) {
    return SHOAL_ETOOBIG;
  }
  buf_add_u8(out, ENVELOPE_VERSION);
  buf_add_u8(out, TMSG_QUERY_CLASS);
  buf_add_u8(out, type);
  buf_add_u8(out, 0);
  buf_add_u64(out, id);
  buf_add_u32(out, (uint32_t)len);
  buf_add(out, payload, len);
  return buf_err(out);
}

int tmsg_query_decode(const uint8_t *msg, size_t len, struct tmsg_query *out) {
  struct buf_reader r;
  memset(out, 0, sizeof(*out));
  if (len < TMSG_QUERY_HEADER_BYTES) {
    return SHOAL_ETRUNC;
  }
  buf_reader_init(&r, msg, len);
  uint8_t version = buf_read_u8(&r);
  uint8_t cls = buf_read_u8(&r);
  out->type = buf_read_u8(&r);
  uint8_t flags = buf_read_u8(&r);
  out->id = buf_read_u64(&r);
  uint32_t n = buf_read_u32(&r);
  if (version != ENVELOPE_VERSION) {
    memset(out, 0, sizeof(*out));
    return SHOAL_EVERSION;
  }
  if (cls != TMSG_QUERY_CLASS) {
    memset(out, 0, sizeof(*out));
    return SHOAL_EDOMAIN;
  }
  if (flags != 0 || n != buf_reader_left(&r)) {
    memset(out, 0, sizeof(*out));
    return SHOAL_EFORMAT;
  }
  out->payload = buf_read_bytes(&r, n);
  out->payload_len = n;
  return 0;
}

/* ------------------------------------------------------------------------ */

int tmsg_announce_encode(struct buf *out, const struct tmsg_announce *m) {
  if (m->count > TMSG_MAX_ANNOUNCE_ITEMS) {
    return SHOAL_EINVAL;
  }
  if ((m->flags & ~TMSG_ANNOUNCE_WANT_CERT) != 0) {
    return SHOAL_EINVAL;
  }
  buf_add_u16(out, m->port);
  buf_add_u8(out, m->event);
  buf_add_u8(out, m->flags);
  buf_add_u16(out, m->count);
  for (uint16_t i = 0; i < m->count; i++) {
    buf_add(out, m->items[i].content, TMSG_ID_BYTES);
    buf_add_u8(out, m->items[i].role);
    buf_add_u64(out, m->items[i].left);
  }
  return buf_err(out);
}

int tmsg_announce_decode(const uint8_t *p, size_t len,
                         struct tmsg_announce *out) {
  struct buf_reader r;
  int err = 0;

  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  out->port = buf_read_u16(&r);
  out->event = buf_read_u8(&r);
  out->flags = buf_read_u8(&r);
  out->count = buf_read_u16(&r);
  if (buf_reader_err(&r) == 0) {
    if (out->port == 0 || out->event > TMSG_EVENT_STOPPED ||
        (out->flags & ~TMSG_ANNOUNCE_WANT_CERT) != 0) {
      err = SHOAL_EFORMAT;
    } else if (out->count > TMSG_MAX_ANNOUNCE_ITEMS) {
      err = SHOAL_ETOOBIG;
    } else if ((size_t)out->count * ITEM_BYTES != buf_reader_left(&r)) {
      err = SHOAL_EFORMAT;
    }
  }
  for (uint16_t i = 0; err == 0 && i < out->count; i++) {
    struct tmsg_announce_item *it = &out->items[i];
    buf_read_copy(&r, it->content, TMSG_ID_BYTES);
    it->role = buf_read_u8(&r);
    it->left = buf_read_u64(&r);
    if (it->role > TMSG_ROLE_SEEDING) {
      err = SHOAL_EFORMAT;
    }
  }
  return finish(&r, out, sizeof(*out), err);
}

int tmsg_announce_ok_encode(struct buf *out, const struct tmsg_announce_ok *m) {
  buf_add_u64(out, m->seq);
  buf_add_u32(out, m->interval_s);
  buf_add_u32(out, m->min_interval_s);
  buf_add_u16(out, m->accepted);
  if (m->has_cert) {
    buf_add(out, m->cert, TMSG_CERT_BYTES);
  }
  return buf_err(out);
}

int tmsg_announce_ok_decode(const uint8_t *p, size_t len,
                            struct tmsg_announce_ok *out) {
  struct buf_reader r;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  out->seq = buf_read_u64(&r);
  out->interval_s = buf_read_u32(&r);
  out->min_interval_s = buf_read_u32(&r);
  out->accepted = buf_read_u16(&r);
  /* The certificate is optional and the only thing that may follow; it is
   * checked by whoever holds the tracker's key (tmsg_cert_open). */
  if (buf_reader_err(&r) == 0 && buf_reader_left(&r) >= TMSG_CERT_BYTES) {
    buf_read_copy(&r, out->cert, TMSG_CERT_BYTES);
    out->has_cert = 1;
  }
  return finish(&r, out, sizeof(*out), 0);
}

/* ------------------------------------------------------------------------ */

int tmsg_lookup_encode(struct buf *out, const struct tmsg_lookup *m) {
  buf_add(out, m->content, TMSG_ID_BYTES);
  buf_add_u16(out, m->want);
  buf_add_u8(out, m->flags);
  buf_add(out, m->asker, IDENTITY_PK_BYTES);
  return buf_err(out);
}

int tmsg_lookup_decode(const uint8_t *p, size_t len, struct tmsg_lookup *out) {
  struct buf_reader r;
  int err = 0;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  buf_read_copy(&r, out->content, TMSG_ID_BYTES);
  out->want = buf_read_u16(&r);
  out->flags = buf_read_u8(&r);
  buf_read_copy(&r, out->asker, IDENTITY_PK_BYTES);
  if (buf_reader_err(&r) == 0 && (out->flags & ~TMSG_LOOKUP_SEEDERS_FIRST)) {
    err = SHOAL_EFORMAT;
  }
  return finish(&r, out, sizeof(*out), err);
}

int tmsg_lookup_ok_encode(struct buf *out, const struct tmsg_lookup_ok *m) {
  if (m->count > TMSG_MAX_PEERS) {
    return SHOAL_EINVAL;
  }
  buf_add(out, m->content, TMSG_ID_BYTES);
  buf_add_u32(out, m->seeders);
  buf_add_u32(out, m->downloaders);
  buf_add_u32(out, m->completed);
  buf_add_u16(out, m->count);
  for (uint16_t i = 0; i < m->count; i++) {
    const struct tmsg_peer *pe = &m->peers[i];
    buf_add(out, pe->pk, IDENTITY_PK_BYTES);
    buf_add_u8(out, pe->family);
    buf_add(out, pe->addr, 16);
    buf_add_u16(out, pe->port);
    buf_add_u8(out, pe->seeding);
  }
  return buf_err(out);
}

int tmsg_lookup_ok_decode(const uint8_t *p, size_t len,
                          struct tmsg_lookup_ok *out) {
  struct buf_reader r;
  int err = 0;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  buf_read_copy(&r, out->content, TMSG_ID_BYTES);
  out->seeders = buf_read_u32(&r);
  out->downloaders = buf_read_u32(&r);
  out->completed = buf_read_u32(&r);
  out->count = buf_read_u16(&r);
  if (buf_reader_err(&r) == 0) {
    if (out->count > TMSG_MAX_PEERS) {
      err = SHOAL_ETOOBIG;
    } else if ((size_t)out->count * PEER_BYTES != buf_reader_left(&r)) {
      err = SHOAL_EFORMAT;
    }
  }
  for (uint16_t i = 0; err == 0 && i < out->count; i++) {
    struct tmsg_peer *pe = &out->peers[i];
    buf_read_copy(&r, pe->pk, IDENTITY_PK_BYTES);
    pe->family = buf_read_u8(&r);
    buf_read_copy(&r, pe->addr, 16);
    pe->port = buf_read_u16(&r);
    pe->seeding = buf_read_u8(&r);
    if ((pe->family != 4 && pe->family != 6) || pe->port == 0 ||
        pe->seeding > 1) {
      err = SHOAL_EFORMAT;
    }
  }
  return finish(&r, out, sizeof(*out), err);
}

/* ------------------------------------------------------------------------ */

static int name_ok(const char *name) {
  size_t n = strlen(name);
  return n > 0 && memchr(name, '/', n) == NULL &&
         manifest_check_path(name, n) == 0;
}

int tmsg_publish_encode(struct buf *out, const struct tmsg_publish *m) {
  if (!name_ok(m->name)) {
    return SHOAL_EINVAL;
  }
  buf_add(out, m->content, TMSG_ID_BYTES);
  buf_add_u64(out, m->size);
  if (add_text(out, m->name, TMSG_MAX_NAME) != 0) {
    return SHOAL_EINVAL;
  }
  buf_add(out, m->manifest_sig, IDENTITY_SIG_BYTES);
  return buf_err(out);
}

int tmsg_publish_decode(const uint8_t *p, size_t len,
                        struct tmsg_publish *out) {
  struct buf_reader r;
  int err = 0;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  buf_read_copy(&r, out->content, TMSG_ID_BYTES);
  out->size = buf_read_u64(&r);
  read_text(&r, out->name, TMSG_MAX_NAME, &err);
  buf_read_copy(&r, out->manifest_sig, IDENTITY_SIG_BYTES);
  if (err == 0 && buf_reader_err(&r) == 0 && !name_ok(out->name)) {
    err = SHOAL_EPATH;
  }
  return finish(&r, out, sizeof(*out), err);
}

int tmsg_publish_ok_encode(struct buf *out, const struct tmsg_publish_ok *m) {
  buf_add_u64(out, m->seq);
  buf_add(out, m->content, TMSG_ID_BYTES);
  return buf_err(out);
}

int tmsg_publish_ok_decode(const uint8_t *p, size_t len,
                           struct tmsg_publish_ok *out) {
  struct buf_reader r;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  out->seq = buf_read_u64(&r);
  buf_read_copy(&r, out->content, TMSG_ID_BYTES);
  return finish(&r, out, sizeof(*out), 0);
}

/* ------------------------------------------------------------------------ */

int tmsg_search_encode(struct buf *out, const struct tmsg_search *m) {
  if (m->limit > TMSG_MAX_RESULTS ||
      add_text(out, m->query, TMSG_MAX_QUERY) != 0) {
    return SHOAL_EINVAL;
  }
  buf_add_u32(out, m->offset);
  buf_add_u16(out, m->limit);
  return buf_err(out);
}

int tmsg_search_decode(const uint8_t *p, size_t len, struct tmsg_search *out) {
  struct buf_reader r;
  int err = 0;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  read_text(&r, out->query, TMSG_MAX_QUERY, &err);
  out->offset = buf_read_u32(&r);
  out->limit = buf_read_u16(&r);
  return finish(&r, out, sizeof(*out), err);
}

int tmsg_search_ok_encode(struct buf *out, const struct tmsg_search_ok *m) {
  if (m->count > TMSG_MAX_RESULTS) {
    return SHOAL_EINVAL;
  }
  buf_add_u32(out, m->total);
  buf_add_u16(out, m->count);
  for (uint16_t i = 0; i < m->count; i++) {
    const struct tmsg_result *res = &m->results[i];
    buf_add(out, res->content, TMSG_ID_BYTES);
    if (add_text(out, res->name, TMSG_MAX_NAME) != 0) {
      return SHOAL_EINVAL;
    }
    buf_add_u64(out, res->size);
    buf_add(out, res->publisher, IDENTITY_PK_BYTES);
    buf_add_u32(out, res->seeders);
    buf_add_u32(out, res->downloaders);
  }
  return buf_err(out);
}

int tmsg_search_ok_decode(const uint8_t *p, size_t len,
                          struct tmsg_search_ok *out) {
  struct buf_reader r;
  int err = 0;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  out->total = buf_read_u32(&r);
  out->count = buf_read_u16(&r);
  if (buf_reader_err(&r) == 0 && out->count > TMSG_MAX_RESULTS) {
    err = SHOAL_ETOOBIG;
  }
  for (uint16_t i = 0; err == 0 && buf_reader_err(&r) == 0 && i < out->count;
       i++) {
    struct tmsg_result *res = &out->results[i];
    buf_read_copy(&r, res->content, TMSG_ID_BYTES);
    read_text(&r, res->name, TMSG_MAX_NAME, &err);
    res->size = buf_read_u64(&r);
    buf_read_copy(&r, res->publisher, IDENTITY_PK_BYTES);
    res->seeders = buf_read_u32(&r);
    res->downloaders = buf_read_u32(&r);
  }
  return finish(&r, out, sizeof(*out), err);
}

/* ------------------------------------------------------------------------ */

int tmsg_error_encode(struct buf *out, const struct tmsg_error *m) {
  if (m->code >= 0) {
    return SHOAL_EINVAL;
  }
  buf_add_u8(out, m->request_type);
  buf_add_u64(out, m->request_id);
  buf_add_u32(out, (uint32_t)m->code);
  buf_add_u32(out, m->retry_after_ms);
  if (add_text(out, m->reason, TMSG_MAX_REASON) != 0) {
    return SHOAL_EINVAL;
  }
  return buf_err(out);
}

int tmsg_error_decode(const uint8_t *p, size_t len, struct tmsg_error *out) {
  struct buf_reader r;
  int err = 0;
  memset(out, 0, sizeof(*out));
  buf_reader_init(&r, p, len);
  out->request_type = buf_read_u8(&r);
  out->request_id = buf_read_u64(&r);
  out->code = (int32_t)buf_read_u32(&r);
  out->retry_after_ms = buf_read_u32(&r);
  read_text(&r, out->reason, TMSG_MAX_REASON, &err);
  if (err == 0 && buf_reader_err(&r) == 0 && out->code >= 0) {
    err = SHOAL_EFORMAT;
  }
  return finish(&r, out, sizeof(*out), err);
}

/* ------------------------------------------------------------------------ */
/* Address certificates */

/* Whether a peer can hold addr at all: not the unspecified address, not
 * multicast or broadcast, and an IPv6 address is not an IPv4-mapped one
 * (the tracker reports those as family 4). IPv4 leaves its last 12 bytes
 * zero. Loopback and private addresses pass: a tracker on a private
 * network observes them. */
static int cert_addr_ok(uint8_t family, const uint8_t addr[16]) {
  static const uint8_t zero[16];
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == 4) {
    return memcmp(addr + 4, zero, 12) == 0 && memcmp(addr, zero, 4) != 0 &&
           addr[0] < 224; /* 224/4 multicast, 240/4 and broadcast */
  }
  if (family == 6) {
    return memcmp(addr, zero, 16) != 0 && addr[0] != 0xff &&
           memcmp(addr, mapped, sizeof(mapped)) != 0;
  }
  return 0;
}

static int cert_fields_ok(const struct tmsg_cert *c) {
  return cert_addr_ok(c->family, c->addr) && c->port != 0 &&
         c->lifetime_s >= TMSG_CERT_LIFETIME_MIN_S &&
         c->lifetime_s <= TMSG_CERT_LIFETIME_MAX_S;
}

int tmsg_cert_seal(const struct identity *tracker, const struct tmsg_cert *c,
                   uint8_t out[TMSG_CERT_BYTES]) {
  struct buf b;
  int err;
  memset(out, 0, TMSG_CERT_BYTES);
  if (!cert_fields_ok(c)) {
    return SHOAL_EINVAL;
  }
  buf_init_fixed(&b, out, TMSG_CERT_SIGNED_BYTES);
  buf_add_u8(&b, TMSG_CERT_VERSION);
  buf_add_u8(&b, c->family);
  buf_add_u16(&b, c->port);
  buf_add_u32(&b, c->lifetime_s);
  buf_add_u64(&b, c->issued_ms);
  buf_add(&b, tracker->pk, IDENTITY_PK_BYTES);
  buf_add(&b, c->peer, IDENTITY_PK_BYTES);
  buf_add(&b, c->addr, sizeof(c->addr));
  if (buf_err(&b) != 0 || b.len != TMSG_CERT_SIGNED_BYTES) {
    memset(out, 0, TMSG_CERT_BYTES);
    return SHOAL_EINVAL; /* unreachable: the layout is fixed */
  }
  err = identity_sign2(tracker, cert_domain, sizeof(cert_domain), out,
                       TMSG_CERT_SIGNED_BYTES, out + TMSG_CERT_SIGNED_BYTES);
  if (err != 0) {
    memset(out, 0, TMSG_CERT_BYTES);
  }
  return err;
}

/* Offsets of the fields the checks read before the signature. */
#define CERT_TRACKER_AT 16

int tmsg_cert_open(const uint8_t *p, size_t len,
                   const struct tmsg_cert_policy *pol, struct tmsg_cert *out) {
  struct buf_reader r;
  const uint8_t *signer = NULL;
  int err;

  memset(out, 0, sizeof(*out));
  if (len < TMSG_CERT_BYTES) {
    return SHOAL_ETRUNC;
  }
  if (len > TMSG_CERT_BYTES) {
    return SHOAL_EFORMAT;
  }
  /* The version fixes the layout, and the signer field says which key
   * verifies: both are read before the signature, as an envelope's. */
  if (p[0] != TMSG_CERT_VERSION) {
    return SHOAL_EVERSION;
  }
  for (unsigned i = 0; i < pol->nkeys; i++) {
    const uint8_t *k = pol->keys + (size_t)i * IDENTITY_PK_BYTES;
    if (sodium_memcmp(k, p + CERT_TRACKER_AT, IDENTITY_PK_BYTES) == 0) {
      signer = k;
      break;
    }
  }
  if (signer == NULL) {
    return SHOAL_EWRONGKEY;
  }
  err = identity_verify2(signer, cert_domain, sizeof(cert_domain), p,
                         TMSG_CERT_SIGNED_BYTES, p + TMSG_CERT_SIGNED_BYTES);
  if (err != 0) {
    return err;
  }
  buf_reader_init(&r, p, TMSG_CERT_SIGNED_BYTES);
  (void)buf_read_u8(&r);
  out->family = buf_read_u8(&r);
  out->port = buf_read_u16(&r);
  out->lifetime_s = buf_read_u32(&r);
  out->issued_ms = buf_read_u64(&r);
  buf_read_copy(&r, out->tracker, IDENTITY_PK_BYTES);
  buf_read_copy(&r, out->peer, IDENTITY_PK_BYTES);
  buf_read_copy(&r, out->addr, sizeof(out->addr));
  if (buf_reader_err(&r) != 0 || !cert_fields_ok(out)) {
    memset(out, 0, sizeof(*out));
    return SHOAL_EFORMAT;
  }
  /* Differences only, so that no issue time from the wire can wrap. */
  if (out->issued_ms < pol->now_ms &&
      pol->now_ms - out->issued_ms > (uint64_t)out->lifetime_s * 1000u) {
    memset(out, 0, sizeof(*out));
    return SHOAL_ESTALE;
  }
  if (out->issued_ms > pol->now_ms &&
      out->issued_ms - pol->now_ms > pol->window_ms) {
    memset(out, 0, sizeof(*out));
    return SHOAL_EFUTURE;
  }
  return 0;
}
