/* libFuzzer target for common/tmsg: the tracker message codecs.
 *
 * The first input byte chooses a decoder (its value modulo 10, in the order
 * of the codecs[] table below, 0 being the query frame); the rest is the
 * message. A refusal must be one of the decoder's documented errors with a
 * zeroed output. An accepted message must re-encode to exactly the input
 * bytes (the format has one encoding per message) and decode again to the
 * identical struct. The payload of an accepted query frame is also run
 * through the decoder its type names, as the tracker does.
 *
 * Seeds: tests/fuzz/corpus/tmsg/, one valid message per decoder and a few
 * at the limits, each prefixed with its selector byte.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/tmsg.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct codec {
  const char *name;
  uint8_t type; /* the tmsg_type that carries this payload */
  int (*encode)(struct buf *out, const void *m);
  int (*decode)(const uint8_t *p, size_t len, void *out);
  size_t size;
};

/* Same-signature wrappers: calling a codec through a pointer of another
 * function type would be undefined behaviour (and UBSan says so). */
#define CODEC_FNS(type)                                                        \
  static int enc_##type(struct buf *out, const void *m) {                      \
    return tmsg_##type##_encode(out, m);                                       \
  }                                                                            \
  static int dec_##type(const uint8_t *p, size_t len, void *out) {             \
    return tmsg_##type##_decode(p, len, out);                                  \
  }
CODEC_FNS(announce)
CODEC_FNS(announce_ok)
CODEC_FNS(lookup)
CODEC_FNS(lookup_ok)
CODEC_FNS(publish)
CODEC_FNS(publish_ok)
CODEC_FNS(search)
CODEC_FNS(search_ok)
CODEC_FNS(error)

#define CODEC(type, t)                                                         \
  { #type, t, enc_##type, dec_##type, sizeof(struct tmsg_##type) }

/* Index 0 is the query frame, handled apart; 1..9 are payloads. */
#define NCODECS 10
static const struct codec codecs[NCODECS] = {
    {"query", 0, NULL, NULL, sizeof(struct tmsg_query)},
    CODEC(announce, TMSG_ANNOUNCE),
    CODEC(announce_ok, TMSG_ANNOUNCE_OK),
    CODEC(lookup, TMSG_LOOKUP),
    CODEC(lookup_ok, TMSG_LOOKUP_OK),
    CODEC(publish, TMSG_PUBLISH),
    CODEC(publish_ok, TMSG_PUBLISH_OK),
    CODEC(search, TMSG_SEARCH),
    CODEC(search_ok, TMSG_SEARCH_OK),
    CODEC(error, TMSG_ERROR),
};

/* Room for the largest decoded struct, aligned for any of them. */
static union {
  struct tmsg_announce a;
  struct tmsg_lookup_ok lo;
  struct tmsg_search_ok so;
  struct tmsg_publish p;
  struct tmsg_error e;
  uint64_t align;
} out_store, back_store;

static void fail(const char *codec, const char *what, int rc) {
  fprintf(stderr, "fuzz_tmsg: %s: %s (%s)\n", codec, what, shoal_err_name(rc));
  abort();
}

static int allowed_error(const struct codec *c, int rc) {
  if (rc == SHOAL_ETRUNC || rc == SHOAL_ETOOBIG || rc == SHOAL_EFORMAT) {
    return 1;
  }
  /* Only publish checks a name as a path. */
  return rc == SHOAL_EPATH && c->type == TMSG_PUBLISH;
}

static void check_payload(const struct codec *c, const uint8_t *p, size_t n) {
  void *out = &out_store;
  void *back = &back_store;
  struct buf b;

  memset(out, 0xa5, c->size);
  int rc = c->decode(p, n, out);
  if (rc != 0) {
    if (!allowed_error(c, rc)) {
      fail(c->name, "undocumented error", rc);
    }
    if (!bytes_all_zero(out, c->size)) {
      fail(c->name, "refusal left the output set", rc);
    }
    return;
  }

  buf_init(&b, 2 * FRAME_MAX_DEFAULT);
  rc = c->encode(&b, out);
  if (c->type == TMSG_SEARCH &&
      ((const struct tmsg_search *)out)->limit > TMSG_MAX_RESULTS) {
    /* The decoder leaves an oversize page to the tracker to clamp; only
     * our own encoder refuses to send one. */
    if (rc != SHOAL_EINVAL) {
      fail(c->name, "oversize limit was encoded", rc);
    }
    buf_free(&b);
    return;
  }
  if (rc != 0) {
    fail(c->name, "a decoded message does not encode", rc);
  }
  if (b.len != n || (n > 0 && memcmp(b.data, p, n) != 0)) {
    fail(c->name, "re-encoding differs from the accepted bytes", 0);
  }
  memset(back, 0xa5, c->size);
  rc = c->decode(b.data, b.len, back);
  if (rc != 0) {
    fail(c->name, "re-encoded message does not decode", rc);
  }
  if (memcmp(out, back, c->size) != 0) {
    fail(c->name, "round trip changed the struct", 0);
  }
  buf_free(&b);
}

static void check_query(const uint8_t *p, size_t n) {
  struct tmsg_query q;
  struct tmsg_query back;
  struct buf b;

  memset(&q, 0xa5, sizeof(q));
  int rc = tmsg_query_decode(p, n, &q);
  if (rc != 0) {
    if (rc != SHOAL_ETRUNC && rc != SHOAL_EVERSION && rc != SHOAL_EDOMAIN &&
        rc != SHOAL_EFORMAT) {
      fail("query", "undocumented error", rc);
    }
    if (!bytes_all_zero(&q, sizeof(q))) {
      fail("query", "refusal left the output set", rc);
    }
    return;
  }
  if (!tmsg_is_query(p, n)) {
    fail("query", "a decoded query is not recognised as one", 0);
  }
  if (q.payload_len != n - TMSG_QUERY_HEADER_BYTES ||
      q.payload != p + TMSG_QUERY_HEADER_BYTES) {
    fail("query", "payload does not point at the frame's tail", 0);
  }
  buf_init(&b, 2 * FRAME_MAX_DEFAULT);
  rc = tmsg_query_encode(&b, q.type, q.id, q.payload, q.payload_len);
  if (rc != 0) {
    fail("query", "a decoded query does not encode", rc);
  }
  if (b.len != n || memcmp(b.data, p, n) != 0) {
    fail("query", "re-encoding differs from the accepted bytes", 0);
  }
  rc = tmsg_query_decode(b.data, b.len, &back);
  if (rc != 0 || back.type != q.type || back.id != q.id ||
      back.payload_len != q.payload_len ||
      (q.payload_len > 0 &&
       memcmp(back.payload, q.payload, q.payload_len) != 0)) {
    fail("query", "round trip changed the query", rc);
  }
  buf_free(&b);

  /* The payload goes on to the decoder for its type, as in the tracker. */
  for (size_t i = 1; i < NCODECS; i++) {
    if (codecs[i].type == q.type) {
      check_payload(&codecs[i], q.payload, q.payload_len);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_first_call();
  if (size == 0) {
    return 0;
  }
  size_t sel = data[0] % NCODECS;
  size_t n = size - 1;
  uint8_t *msg = fz_copy(data + 1, n);
  if (msg == NULL) {
    return 0;
  }
  if (sel == 0) {
    check_query(msg, n);
  } else {
    check_payload(&codecs[sel], msg, n);
  }
  free(msg);
  return 0;
}
