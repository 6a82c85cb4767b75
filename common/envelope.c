#include "common/envelope.h"

#include <string.h>

#include "common/error.h"

static const char *const domains[ENVELOPE_CLASS_COUNT + 1] = {
    [ENVELOPE_TRACKER_REQUEST] = "shoal/1 tracker request",
    [ENVELOPE_TRACKER_REPLY] = "shoal/1 tracker reply",
    [ENVELOPE_PEER_HELLO] = "shoal/1 peer hello",
};

const char *envelope_domain(enum envelope_class cls) {
  if ((int)cls < 1 || (int)cls > ENVELOPE_CLASS_COUNT) {
    return NULL;
  }
  return domains[cls];
}

uint64_t envelope_seq_start(uint64_t now_ms) {
  return now_ms * 1000u;
}

int envelope_seal(struct buf *out, enum envelope_class cls, uint8_t type,
                  const struct identity *id, uint64_t timestamp_ms,
                  uint64_t seq, const void *payload, size_t len) {
  const char *dom = envelope_domain(cls);
  size_t start = out->len;
  uint8_t sig[ENVELOPE_SIG_BYTES];
  int err;

  if (dom == NULL) {
    return SHOAL_EINVAL;
  }
  if (len > ENVELOPE_PAYLOAD_MAX) {
    return SHOAL_ETOOBIG;
  }
  err = buf_reserve(out, ENVELOPE_OVERHEAD + len);
  if (err != 0) {
    return err;
  }
  buf_add_u8(out, ENVELOPE_VERSION);
  buf_add_u8(out, (uint8_t)cls);
  buf_add_u8(out, type);
  buf_add_u8(out, 0);
  buf_add(out, id->pk, IDENTITY_PK_BYTES);
  buf_add_u64(out, timestamp_ms);
  buf_add_u64(out, seq);
  buf_add_u32(out, (uint32_t)len);
  buf_add(out, payload, len);
  err = identity_sign2(id, dom, strlen(dom) + 1, out->data + start,
                       out->len - start, sig);
  if (err != 0) {
    out->len = start;
    return err;
  }
  buf_add(out, sig, sizeof(sig));
  return buf_err(out);
}

static int check_clock(const struct envelope_policy *pol, uint64_t ts) {
  if (pol->window_ms == 0) {
    return 0;
  }
  if (ts < pol->now_ms && pol->now_ms - ts > pol->window_ms) {
    return SHOAL_ESTALE;
  }
  if (ts > pol->now_ms && ts - pol->now_ms > pol->window_ms) {
    return SHOAL_EFUTURE;
  }
  return 0;
}

int envelope_open(const uint8_t *msg, size_t len,
                  const struct envelope_policy *pol, struct envelope *out) {
  const char *dom = envelope_domain(pol->cls);
  struct buf_reader r;
  size_t signed_len;
  int err;

  memset(out, 0, sizeof(*out));
  if (dom == NULL) {
    return SHOAL_EINVAL;
  }
  if (len < ENVELOPE_OVERHEAD) {
    return SHOAL_ETRUNC;
  }
  if (len > ENVELOPE_OVERHEAD + ENVELOPE_PAYLOAD_MAX) {
    return SHOAL_ETOOBIG;
  }
  /* Only the version byte is read before the signature: it fixes where
   * everything else is, including the key and the signature themselves. */
  if (msg[0] != ENVELOPE_VERSION) {
    return SHOAL_EVERSION;
  }
  signed_len = len - ENVELOPE_SIG_BYTES;
  err = identity_verify2(msg + 4, dom, strlen(dom) + 1, msg, signed_len,
                         msg + signed_len);
  if (err != 0) {
    return err == SHOAL_EBADSIG && msg[1] != (uint8_t)pol->cls ? SHOAL_EDOMAIN
                                                               : err;
  }

  buf_reader_init(&r, msg, signed_len);
  out->version = buf_read_u8(&r);
  out->cls = buf_read_u8(&r);
  out->type = buf_read_u8(&r);
  out->flags = buf_read_u8(&r);
  buf_read_copy(&r, out->sender, sizeof(out->sender));
  out->timestamp_ms = buf_read_u64(&r);
  out->seq = buf_read_u64(&r);
  uint32_t n = buf_read_u32(&r);
  /* A sender's own signature over a malformed header is still malformed. */
  if (out->cls != (uint8_t)pol->cls) {
    err = SHOAL_EDOMAIN;
    goto fail;
  }
  if (out->flags != 0 || n != buf_reader_left(&r)) {
    err = SHOAL_EFORMAT;
    goto fail;
  }
  out->payload = buf_read_bytes(&r, n);
  out->payload_len = n;
  if (pol->expect_sender != NULL &&
      sodium_memcmp(pol->expect_sender, out->sender, IDENTITY_PK_BYTES) != 0) {
    err = SHOAL_EWRONGKEY;
    goto fail;
  }
  err = check_clock(pol, out->timestamp_ms);
  if (err != 0) {
    goto fail;
  }
  if (pol->guard != NULL) {
    err = replay_guard_accept(pol->guard, out->sender, out->seq,
                              out->timestamp_ms, pol->now_ms);
    if (err != 0) {
      goto fail;
    }
  }
  return 0;

fail:
  memset(out, 0, sizeof(*out));
  return err;
}
