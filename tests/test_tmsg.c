/* Tests for common/tmsg: the tracker message codecs.
 *
 * Every payload the tracker or a peer decodes came from the network, so the
 * hostile cases are the main ones: every truncation length, one trailing
 * byte, counts and text lengths one over their named maximum, and each
 * field value the format forbids. Every decode runs on an exact-size heap
 * copy of the input, so AddressSanitizer catches a read one byte past the
 * end, and every output struct is pre-filled with 0xa5 so that a refusal
 * that forgets to zero it is caught. Two hand-written byte arrays pin the
 * wire layout so that it cannot drift without a test noticing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/testutil.h"
#include "tests/lib/bytes.h"

/* Wire sizes, written out here independently of tmsg.c. */
#define ANNOUNCE_HEADER 6
#define ITEM_BYTES 41 /* content 32, role 1, left 8 */
#define ANNOUNCE_OK_BYTES 18
#define LOOKUP_BYTES 67 /* content 32, want 2, flags 1, asker 32 */
#define LOOKUP_OK_HEADER 46
#define PEER_BYTES 52     /* pk 32, family 1, addr 16, port 2, seeding 1 */
#define PUBLISH_FIXED 106 /* content 32, size 8, name length 2, sig 64 */
#define PUBLISH_NAME_OFF 40
#define PUBLISH_OK_BYTES 40
#define SEARCH_FIXED 8 /* query length 2, offset 4, limit 2 */
#define SEARCH_OK_HEADER 6
#define RESULT_FIXED 82 /* content 32, name length 2, size 8, pk 32, 4, 4 */
#define ERROR_FIXED 19  /* type 1, id 8, code 4, retry 4, reason length 2 */
#define ERROR_CODE_OFF 9
#define ERROR_REASON_OFF 17

/* 2026-01-01T00:00:00Z, for the envelopes sealed below. */
#define NOW_MS UINT64_C(1767225600000)

/* ------------------------------------------------------------------------ */
/* One table entry per payload codec, so the hostile checks are written once.
 * The wrappers give every codec the same signature (calling a function
 * through a pointer of another type would be undefined). */

struct codec {
  const char *name;
  int (*encode)(struct buf *out, const void *m);
  int (*decode)(const uint8_t *p, size_t len, void *out);
  size_t size;
};

#define CODEC(type)                                                            \
  static int enc_##type(struct buf *out, const void *m) {                      \
    return tmsg_##type##_encode(out, m);                                       \
  }                                                                            \
  static int dec_##type(const uint8_t *p, size_t len, void *out) {             \
    return tmsg_##type##_decode(p, len, out);                                  \
  }                                                                            \
  static const struct codec codec_##type = {#type, enc_##type, dec_##type,     \
                                            sizeof(struct tmsg_##type)};

CODEC(announce)
CODEC(announce_ok)
CODEC(lookup)
CODEC(lookup_ok)
CODEC(publish)
CODEC(publish_ok)
CODEC(search)
CODEC(search_ok)
CODEC(error)

static int dec_query(const uint8_t *p, size_t len, void *out) {
  return tmsg_query_decode(p, len, out);
}
static const struct codec codec_query = {"query", NULL, dec_query,
                                         sizeof(struct tmsg_query)};

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* Decodes an exact-size heap copy of p[0..n) into out (pre-filled with
 * 0xa5). */
static int run_decode(const struct codec *c, const uint8_t *p, size_t n,
                      void *out) {
  uint8_t *copy = xmalloc(n);
  if (n > 0) {
    memcpy(copy, p, n);
  }
  memset(out, 0xa5, c->size);
  int rc = c->decode(copy, n, out);
  free(copy);
  return rc;
}

static void expect_reject(const struct codec *c, const uint8_t *p, size_t n,
                          int want) {
  void *out = xmalloc(c->size);
  int rc = run_decode(c, p, n, out);
  if (rc != want) {
    print_message("%s decode of %zu bytes: got %s, want %s\n", c->name, n,
                  shoal_err_name(rc), shoal_err_name(want));
  }
  assert_int_equal(rc, want);
  assert_true(bytes_all_zero(out, c->size));
  free(out);
}

/* Rejects p with byte off replaced by v. */
static void expect_byte_rejected(const struct codec *c, const uint8_t *p,
                                 size_t n, size_t off, uint8_t v, int want) {
  uint8_t *q = xmalloc(n);
  assert_true(off < n);
  memcpy(q, p, n);
  q[off] = v;
  expect_reject(c, q, n, want);
  free(q);
}

/* Every proper prefix of p is refused with zeroed output: SHOAL_ETRUNC
 * while the fixed header is incomplete, then body_err (a count that no
 * longer matches the bytes left is SHOAL_EFORMAT for the fixed-size item
 * arrays, SHOAL_ETRUNC for everything read field by field). */
static void expect_truncations_rejected(const struct codec *c, const uint8_t *p,
                                        size_t n, size_t header, int body_err) {
  for (size_t len = 0; len < n; len++) {
    expect_reject(c, p, len, len < header ? SHOAL_ETRUNC : body_err);
  }
}

static void expect_trailing_byte_rejected(const struct codec *c,
                                          const uint8_t *p, size_t n) {
  uint8_t *q = xmalloc(n + 1);
  memcpy(q, p, n);
  q[n] = 0;
  expect_reject(c, q, n + 1, SHOAL_EFORMAT);
  q[n] = 0xff;
  expect_reject(c, q, n + 1, SHOAL_EFORMAT);
  free(q);
}

/* Encodes m and returns a malloc'd copy of exactly the encoded bytes. */
static uint8_t *encode_bytes(const struct codec *c, const void *m,
                             size_t *len) {
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_int_equal(c->encode(&b, m), 0);
  uint8_t *p = buf_steal(&b, len);
  assert_non_null(p);
  return p;
}

/* m encodes to want_len bytes, decodes to an identical struct, and that
 * struct encodes to the same bytes again. Returns the encoding. */
static uint8_t *expect_round_trip(const struct codec *c, const void *m,
                                  size_t want_len, size_t *len) {
  uint8_t *p = encode_bytes(c, m, len);
  assert_int_equal(*len, want_len);
  void *out = xmalloc(c->size);
  assert_int_equal(run_decode(c, p, *len, out), 0);
  assert_memory_equal(out, m, c->size);
  size_t len2;
  uint8_t *p2 = encode_bytes(c, out, &len2);
  assert_int_equal(len2, *len);
  assert_memory_equal(p2, p, *len);
  free(p2);
  free(out);
  return p;
}

/* m's encoding is refused cut short at every length (SHOAL_ETRUNC while
 * shorter than header, then body_err: see expect_truncations_rejected)
 * and with a byte added. */
static void expect_bad_lengths_of(const struct codec *c, const void *m,
                                  size_t header, int body_err) {
  size_t len;
  uint8_t *p = encode_bytes(c, m, &len);
  expect_truncations_rejected(c, p, len, header, body_err);
  expect_trailing_byte_rejected(c, p, len);
  free(p);
}

/* The same for a codec that reads field by field: every cut is
 * SHOAL_ETRUNC. */
static void expect_bad_lengths_rejected(const struct codec *c, const void *m) {
  expect_bad_lengths_of(c, m, 0, SHOAL_ETRUNC);
}

/* An encoder that refuses m adds nothing to the buffer. */
static void expect_encode_refused(const struct codec *c, const void *m,
                                  int want) {
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  buf_add_u8(&b, 0x77);
  assert_int_equal(c->encode(&b, m), want);
  assert_int_equal(b.len, 1);
  buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Fixtures. Every struct starts zeroed so that whole-struct comparisons see
 * the same padding and string tails the decoder leaves. */

static void make_announce(struct tmsg_announce *m, uint16_t count,
                          uint64_t seed) {
  memset(m, 0, sizeof(*m));
  m->port = 6881;
  m->event = TMSG_EVENT_STARTED;
  m->count = count;
  for (uint16_t i = 0; i < count; i++) {
    tu_fill(m->items[i].content, TMSG_ID_BYTES, seed + i);
    m->items[i].role = i % 2 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING;
    m->items[i].left = i % 2 ? 0 : (uint64_t)(i + 1) * 1000003u;
  }
}

static void make_peer(struct tmsg_peer *pe, uint16_t i, uint64_t seed) {
  memset(pe, 0, sizeof(*pe));
  tu_fill(pe->pk, IDENTITY_PK_BYTES, seed + i);
  pe->family = i % 2 ? 6 : 4;
  tu_fill(pe->addr, pe->family == 4 ? 4 : 16, seed + 1000 + i);
  pe->port = (uint16_t)(1024 + i);
  pe->seeding = i % 3 == 0;
}

static void make_lookup_ok(struct tmsg_lookup_ok *m, uint16_t count,
                           uint64_t seed) {
  memset(m, 0, sizeof(*m));
  tu_fill(m->content, TMSG_ID_BYTES, seed);
  m->seeders = 12;
  m->downloaders = 34;
  m->completed = 56;
  m->count = count;
  for (uint16_t i = 0; i < count; i++) {
    make_peer(&m->peers[i], i, seed);
  }
}

static void make_publish(struct tmsg_publish *m, const char *name) {
  memset(m, 0, sizeof(*m));
  tu_fill(m->content, TMSG_ID_BYTES, 7);
  m->size = 123456789;
  assert_true(strlen(name) <= TMSG_MAX_NAME);
  memcpy(m->name, name, strlen(name));
  tu_fill(m->manifest_sig, IDENTITY_SIG_BYTES, 8);
}

static void make_search(struct tmsg_search *m, const char *query) {
  memset(m, 0, sizeof(*m));
  assert_true(strlen(query) <= TMSG_MAX_QUERY);
  memcpy(m->query, query, strlen(query));
  m->offset = 20;
  m->limit = 10;
}

/* Results named "r<i>-" padded with letters to name_len bytes (at least 4). */
static void make_search_ok(struct tmsg_search_ok *m, uint16_t count,
                           size_t name_len) {
  memset(m, 0, sizeof(*m));
  m->total = 1000;
  m->count = count;
  for (uint16_t i = 0; i < count; i++) {
    struct tmsg_result *res = &m->results[i];
    tu_fill(res->content, TMSG_ID_BYTES, 100 + i);
    int n = snprintf(res->name, sizeof(res->name), "r%u-", (unsigned)i);
    assert_true(n > 0 && (size_t)n <= name_len && name_len <= TMSG_MAX_NAME);
    memset(res->name + n, 'a' + i % 26, name_len - (size_t)n);
    res->size = (uint64_t)i * 4096 + 1;
    tu_fill(res->publisher, IDENTITY_PK_BYTES, 200 + i);
    res->seeders = i;
    res->downloaders = 2u * i;
  }
}

static void make_error(struct tmsg_error *m, const char *reason) {
  memset(m, 0, sizeof(*m));
  m->request_type = TMSG_ANNOUNCE;
  m->request_id = 0x0102030405060708u;
  m->code = SHOAL_EGUARDFULL;
  m->retry_after_ms = 30000;
  assert_true(strlen(reason) <= TMSG_MAX_REASON);
  memcpy(m->reason, reason, strlen(reason));
}

static size_t search_ok_len(const struct tmsg_search_ok *m) {
  size_t n = SEARCH_OK_HEADER;
  for (uint16_t i = 0; i < m->count; i++) {
    n += RESULT_FIXED + strlen(m->results[i].name);
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Query frames. */

static void tmsg_query_header_layout_is_pinned(void **state) {
  (void)state;
  static const uint8_t want[] = {
      0x01,                                           /* version */
      0x04,                                           /* class: query */
      0x02,                                           /* type: lookup */
      0x00,                                           /* flags */
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* query id */
      0x00, 0x00, 0x00, 0x03,                         /* payload length */
      'x',  'y',  'z',                                /* payload */
  };
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_int_equal(
      tmsg_query_encode(&b, TMSG_LOOKUP, 0x0102030405060708u, "xyz", 3), 0);
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));

  struct tmsg_query q;
  assert_int_equal(tmsg_query_decode(want, sizeof(want), &q), 0);
  assert_int_equal(q.type, TMSG_LOOKUP);
  assert_true(q.id == 0x0102030405060708u);
  assert_int_equal(q.payload_len, 3);
  assert_ptr_equal(q.payload, want + TMSG_QUERY_HEADER_BYTES);
  buf_free(&b);
}

static void tmsg_query_round_trip_points_payload_into_frame(void **state) {
  (void)state;
  static const uint8_t types[] = {TMSG_LOOKUP, TMSG_SEARCH, 0, 0xff};
  static const uint64_t ids[] = {0, 1, UINT64_MAX};
  uint8_t payload[300];
  tu_fill(payload, sizeof(payload), 1);
  const size_t lens[] = {0, 1, sizeof(payload)};

  for (size_t t = 0; t < sizeof(types); t++) {
    for (size_t i = 0; i < 3; i++) {
      for (size_t l = 0; l < 3; l++) {
        struct buf b;
        struct tmsg_query q;
        buf_init(&b, FRAME_MAX_DEFAULT);
        assert_int_equal(
            tmsg_query_encode(&b, types[t], ids[i], payload, lens[l]), 0);
        assert_int_equal(b.len, TMSG_QUERY_HEADER_BYTES + lens[l]);
        memset(&q, 0xa5, sizeof(q));
        assert_int_equal(tmsg_query_decode(b.data, b.len, &q), 0);
        assert_int_equal(q.type, types[t]);
        assert_true(q.id == ids[i]);
        assert_int_equal(q.payload_len, lens[l]);
        assert_ptr_equal(q.payload, b.data + TMSG_QUERY_HEADER_BYTES);
        if (lens[l] > 0) {
          assert_memory_equal(q.payload, payload, lens[l]);
        }
        buf_free(&b);
      }
    }
  }
}

static uint8_t *make_query(size_t *len) {
  static const uint8_t payload[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_int_equal(
      tmsg_query_encode(&b, TMSG_SEARCH, 42, payload, sizeof(payload)), 0);
  uint8_t *p = buf_steal(&b, len);
  assert_non_null(p);
  return p;
}

static void
tmsg_query_shorter_than_header_is_etrunc_then_length_mismatch(void **state) {
  (void)state;
  size_t len;
  uint8_t *p = make_query(&len);
  /* Inside the header: truncated; after it the length field no longer
   * matches the bytes that are there. */
  expect_truncations_rejected(&codec_query, p, len, TMSG_QUERY_HEADER_BYTES,
                              SHOAL_EFORMAT);
  free(p);
}

static void tmsg_query_trailing_byte_is_eformat(void **state) {
  (void)state;
  size_t len;
  uint8_t *p = make_query(&len);
  expect_trailing_byte_rejected(&codec_query, p, len);
  free(p);
}

static void tmsg_query_version_other_than_1_is_eversion(void **state) {
  (void)state;
  size_t len;
  uint8_t *p = make_query(&len);
  static const uint8_t bad[] = {0, 2, 3, 0x81, 0xff};
  for (size_t i = 0; i < sizeof(bad); i++) {
    expect_byte_rejected(&codec_query, p, len, 0, bad[i], SHOAL_EVERSION);
  }
  free(p);
}

static void tmsg_query_class_other_than_query_class_is_edomain(void **state) {
  (void)state;
  size_t len;
  uint8_t *p = make_query(&len);
  for (unsigned v = 0; v < 256; v++) {
    if (v != TMSG_QUERY_CLASS) {
      expect_byte_rejected(&codec_query, p, len, 1, (uint8_t)v, SHOAL_EDOMAIN);
    }
  }
  free(p);
}

static void tmsg_query_nonzero_flags_are_eformat(void **state) {
  (void)state;
  size_t len;
  uint8_t *p = make_query(&len);
  for (unsigned bit = 0; bit < 8; bit++) {
    expect_byte_rejected(&codec_query, p, len, 3, (uint8_t)(1u << bit),
                         SHOAL_EFORMAT);
  }
  free(p);
}

static void tmsg_query_length_field_mismatch_is_eformat(void **state) {
  (void)state;
  size_t len;
  uint8_t *p = make_query(&len);
  uint32_t n = (uint32_t)(len - TMSG_QUERY_HEADER_BYTES);
  const uint32_t bad[] = {0, n - 1, n + 1, UINT32_MAX};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint8_t *q = xmalloc(len);
    memcpy(q, p, len);
    buf_put_be32(q + 12, bad[i]);
    expect_reject(&codec_query, q, len, SHOAL_EFORMAT);
    free(q);
  }
  free(p);
}

static void tmsg_query_encode_refuses_payload_over_frame_max(void **state) {
  (void)state;
  static const uint8_t small[1];
  struct buf b;
  buf_init(&b, 2 * FRAME_MAX_DEFAULT);
  /* The length is checked before the payload is read, so a one-byte
   * buffer is enough to show it. */
  assert_int_equal(
      tmsg_query_encode(&b, TMSG_LOOKUP, 1, small,
                        FRAME_MAX_DEFAULT - TMSG_QUERY_HEADER_BYTES + 1),
      SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  buf_free(&b);
}

/* The key that seals the envelopes below. */
static void sealing_key(struct identity *id) {
  tu_identity(id, 9);
}

static void tmsg_is_query_tells_query_from_sealed_envelope(void **state) {
  (void)state;
  struct identity id;
  struct buf env;
  size_t qlen;
  uint8_t *q = make_query(&qlen);
  static const enum envelope_class classes[] = {
      ENVELOPE_TRACKER_REQUEST, ENVELOPE_TRACKER_REPLY, ENVELOPE_PEER_HELLO};

  sealing_key(&id);
  assert_true(tmsg_is_query(q, qlen));
  /* Only the first two bytes are needed to tell. */
  assert_true(tmsg_is_query(q, 2));
  assert_false(tmsg_is_query(q, 1));
  assert_false(tmsg_is_query(q, 0));

  for (size_t i = 0; i < 3; i++) {
    struct tmsg_query out;
    buf_init(&env, FRAME_MAX_DEFAULT);
    assert_int_equal(
        envelope_seal(&env, classes[i], TMSG_ANNOUNCE, &id, NOW_MS, 1, q, qlen),
        0);
    assert_false(tmsg_is_query(env.data, env.len));
    /* And the query decoder refuses the envelope by its class. */
    memset(&out, 0xa5, sizeof(out));
    assert_int_equal(tmsg_query_decode(env.data, env.len, &out), SHOAL_EDOMAIN);
    assert_true(bytes_all_zero(&out, sizeof(out)));
    buf_free(&env);
  }
  identity_close(&id);
  free(q);
}

static void tmsg_peek_type_reads_query_and_envelope_alike(void **state) {
  (void)state;
  struct identity id;
  struct buf env;
  size_t qlen;
  uint8_t *q = make_query(&qlen);

  assert_int_equal(tmsg_peek_type(q, qlen), TMSG_SEARCH);
  /* Three bytes are enough; fewer give 0, never a read past the end. */
  assert_int_equal(tmsg_peek_type(q, 3), TMSG_SEARCH);
  assert_int_equal(tmsg_peek_type(q, 2), 0);
  assert_int_equal(tmsg_peek_type(q, 1), 0);
  assert_int_equal(tmsg_peek_type(q, 0), 0);

  sealing_key(&id);
  buf_init(&env, FRAME_MAX_DEFAULT);
  assert_int_equal(envelope_seal(&env, ENVELOPE_TRACKER_REQUEST, TMSG_PUBLISH,
                                 &id, NOW_MS, 1, q, qlen),
                   0);
  assert_int_equal(tmsg_peek_type(env.data, env.len), TMSG_PUBLISH);
  /* Whatever the other bytes say: nothing is checked. */
  env.data[0] ^= 0xff;
  env.data[1] ^= 0xff;
  assert_int_equal(tmsg_peek_type(env.data, 3), TMSG_PUBLISH);
  buf_free(&env);
  identity_close(&id);
  free(q);
}

static void tmsg_query_payload_decodes_as_the_lookup_inside(void **state) {
  (void)state;
  struct tmsg_lookup l;
  struct tmsg_lookup back;
  struct tmsg_query q;
  struct buf payload;
  struct buf frame;

  memset(&l, 0, sizeof(l));
  tu_fill(l.content, TMSG_ID_BYTES, 3);
  l.want = 50;
  l.flags = TMSG_LOOKUP_SEEDERS_FIRST;
  buf_init(&payload, FRAME_MAX_DEFAULT);
  buf_init(&frame, FRAME_MAX_DEFAULT);
  assert_int_equal(tmsg_lookup_encode(&payload, &l), 0);
  assert_int_equal(
      tmsg_query_encode(&frame, TMSG_LOOKUP, 77, payload.data, payload.len), 0);
  assert_int_equal(tmsg_query_decode(frame.data, frame.len, &q), 0);
  assert_int_equal(q.type, TMSG_LOOKUP);
  assert_int_equal(tmsg_lookup_decode(q.payload, q.payload_len, &back), 0);
  assert_memory_equal(&back, &l, sizeof(l));
  buf_free(&payload);
  buf_free(&frame);
}

/* ------------------------------------------------------------------------ */
/* Announce. */

static void tmsg_announce_layout_is_pinned(void **state) {
  (void)state;
  static const uint8_t want[] = {
      0x1a, 0xe1, /* port 6881 */
      0x01,       /* event: started */
      0x00,       /* reserved */
      0x00, 0x01, /* count */
      /* item 0: content */
      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
      0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
      0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x01, /* role: seeding */
      0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,       /* left */
  };
  struct tmsg_announce m;
  memset(&m, 0, sizeof(m));
  m.port = 6881;
  m.event = TMSG_EVENT_STARTED;
  m.count = 1;
  for (int i = 0; i < TMSG_ID_BYTES; i++) {
    m.items[0].content[i] = (uint8_t)i;
  }
  m.items[0].role = TMSG_ROLE_SEEDING;
  m.items[0].left = 0x0102030405u;

  size_t len;
  uint8_t *p = expect_round_trip(&codec_announce, &m, sizeof(want), &len);
  assert_memory_equal(p, want, sizeof(want));
  free(p);
}

static void tmsg_announce_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  static struct tmsg_announce m;
  static const uint16_t counts[] = {0, 1, 3, TMSG_MAX_ANNOUNCE_ITEMS};
  size_t len;

  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    for (uint8_t ev = TMSG_EVENT_PERIODIC; ev <= TMSG_EVENT_STOPPED; ev++) {
      make_announce(&m, counts[c], 10 + c);
      m.event = ev;
      free(expect_round_trip(&codec_announce, &m,
                             ANNOUNCE_HEADER + counts[c] * ITEM_BYTES, &len));
    }
  }
  /* Extremes of every integer field. */
  make_announce(&m, TMSG_MAX_ANNOUNCE_ITEMS, 99);
  m.port = UINT16_MAX;
  m.items[0].left = UINT64_MAX;
  m.items[TMSG_MAX_ANNOUNCE_ITEMS - 1].left = UINT64_MAX;
  m.items[TMSG_MAX_ANNOUNCE_ITEMS - 1].role = TMSG_ROLE_SEEDING;
  free(expect_round_trip(&codec_announce, &m,
                         ANNOUNCE_HEADER + TMSG_MAX_ANNOUNCE_ITEMS * ITEM_BYTES,
                         &len));
  m.port = 1;
  free(expect_round_trip(&codec_announce, &m,
                         ANNOUNCE_HEADER + TMSG_MAX_ANNOUNCE_ITEMS * ITEM_BYTES,
                         &len));
}

static void tmsg_announce_truncated_at_every_length_is_refused(void **state) {
  (void)state;
  static struct tmsg_announce m;
  static const struct {
    uint16_t count;
    uint64_t seed;
  } cases[] = {{3, 1}, {TMSG_MAX_ANNOUNCE_ITEMS, 2}};
  size_t len;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    /* Items are fixed-size, so a short item array no longer matches the
     * count: SHOAL_EFORMAT once the header is complete. */
    make_announce(&m, cases[i].count, cases[i].seed);
    uint8_t *p = encode_bytes(&codec_announce, &m, &len);
    expect_truncations_rejected(&codec_announce, p, len, ANNOUNCE_HEADER,
                                SHOAL_EFORMAT);
    free(p);
  }
}

static void tmsg_announce_trailing_byte_is_eformat(void **state) {
  (void)state;
  static struct tmsg_announce m;
  static const uint16_t counts[] = {0, TMSG_MAX_ANNOUNCE_ITEMS};
  size_t len;
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    make_announce(&m, counts[i], 1);
    uint8_t *p = encode_bytes(&codec_announce, &m, &len);
    expect_trailing_byte_rejected(&codec_announce, p, len);
    free(p);
  }
}

static void tmsg_announce_count_over_max_is_etoobig(void **state) {
  (void)state;
  const uint16_t counts[] = {TMSG_MAX_ANNOUNCE_ITEMS + 1, 1000, UINT16_MAX};
  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    /* The header alone: the count must be refused before any item is
     * read (ASan sees a read past these 6 bytes). */
    uint8_t hdr[ANNOUNCE_HEADER] = {0x1a, 0xe1, 0, 0};
    buf_put_be16(hdr + 4, counts[c]);
    expect_reject(&codec_announce, hdr, sizeof(hdr), SHOAL_ETOOBIG);
  }
  /* And with every item really present. */
  size_t n = ANNOUNCE_HEADER + (TMSG_MAX_ANNOUNCE_ITEMS + 1) * ITEM_BYTES;
  uint8_t *p = calloc(1, n);
  assert_non_null(p);
  buf_put_be16(p, 6881);
  buf_put_be16(p + 4, TMSG_MAX_ANNOUNCE_ITEMS + 1);
  expect_reject(&codec_announce, p, n, SHOAL_ETOOBIG);
  free(p);
}

static void tmsg_announce_invalid_fields_are_eformat(void **state) {
  (void)state;
  static struct tmsg_announce m;
  size_t len;
  make_announce(&m, TMSG_MAX_ANNOUNCE_ITEMS, 5);
  uint8_t *p = encode_bytes(&codec_announce, &m, &len);
  const size_t last =
      ANNOUNCE_HEADER + (TMSG_MAX_ANNOUNCE_ITEMS - 1) * ITEM_BYTES;

  /* Port 0. */
  uint8_t *q = xmalloc(len);
  memcpy(q, p, len);
  buf_put_be16(q, 0);
  expect_reject(&codec_announce, q, len, SHOAL_EFORMAT);
  free(q);
  /* Event past STOPPED. */
  expect_byte_rejected(&codec_announce, p, len, 2, TMSG_EVENT_STOPPED + 1,
                       SHOAL_EFORMAT);
  expect_byte_rejected(&codec_announce, p, len, 2, 0xff, SHOAL_EFORMAT);
  /* Flags other than TMSG_ANNOUNCE_WANT_CERT. */
  for (unsigned bit = 1; bit < 8; bit++) {
    expect_byte_rejected(&codec_announce, p, len, 3, (uint8_t)(1u << bit),
                         SHOAL_EFORMAT);
  }
  /* Role 2 in the first and in the last item. */
  expect_byte_rejected(&codec_announce, p, len, ANNOUNCE_HEADER + TMSG_ID_BYTES,
                       2, SHOAL_EFORMAT);
  expect_byte_rejected(&codec_announce, p, len, last + TMSG_ID_BYTES, 2,
                       SHOAL_EFORMAT);
  expect_byte_rejected(&codec_announce, p, len, last + TMSG_ID_BYTES, 0xff,
                       SHOAL_EFORMAT);
  free(p);
}

static void tmsg_announce_encode_refuses_count_over_max(void **state) {
  (void)state;
  static struct tmsg_announce m;
  make_announce(&m, TMSG_MAX_ANNOUNCE_ITEMS, 1);
  m.count = TMSG_MAX_ANNOUNCE_ITEMS + 1;
  expect_encode_refused(&codec_announce, &m, SHOAL_EINVAL);
  m.count = UINT16_MAX;
  expect_encode_refused(&codec_announce, &m, SHOAL_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Announce reply. */

static void tmsg_announce_ok_round_trips_and_refuses_bad_lengths(void **state) {
  (void)state;
  struct tmsg_announce_ok m;
  size_t len;

  memset(&m, 0, sizeof(m));
  m.seq = 1767225600000000u;
  m.interval_s = 1800;
  m.min_interval_s = 60;
  m.accepted = 3;
  free(expect_round_trip(&codec_announce_ok, &m, ANNOUNCE_OK_BYTES, &len));
  expect_bad_lengths_rejected(&codec_announce_ok, &m);

  m.seq = UINT64_MAX;
  m.interval_s = UINT32_MAX;
  m.min_interval_s = UINT32_MAX;
  m.accepted = TMSG_MAX_ANNOUNCE_ITEMS;
  free(expect_round_trip(&codec_announce_ok, &m, ANNOUNCE_OK_BYTES, &len));
  memset(&m, 0, sizeof(m));
  free(expect_round_trip(&codec_announce_ok, &m, ANNOUNCE_OK_BYTES, &len));
}

/* ------------------------------------------------------------------------ */
/* Lookup. */

static void tmsg_lookup_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  struct tmsg_lookup m;
  size_t len;

  memset(&m, 0, sizeof(m));
  tu_fill(m.content, TMSG_ID_BYTES, 1);
  m.want = 50;
  free(expect_round_trip(&codec_lookup, &m, LOOKUP_BYTES, &len));
  m.flags = TMSG_LOOKUP_SEEDERS_FIRST;
  tu_fill(m.asker, IDENTITY_PK_BYTES, 2);
  free(expect_round_trip(&codec_lookup, &m, LOOKUP_BYTES, &len));
  m.want = UINT16_MAX;
  memset(m.content, 0xff, sizeof(m.content));
  memset(m.asker, 0xff, sizeof(m.asker));
  free(expect_round_trip(&codec_lookup, &m, LOOKUP_BYTES, &len));
  memset(&m, 0, sizeof(m));
  free(expect_round_trip(&codec_lookup, &m, LOOKUP_BYTES, &len));
}

static void tmsg_lookup_bad_lengths_are_refused(void **state) {
  (void)state;
  struct tmsg_lookup m;
  memset(&m, 0, sizeof(m));
  tu_fill(m.content, TMSG_ID_BYTES, 1);
  m.want = 20;
  expect_bad_lengths_rejected(&codec_lookup, &m);
}

static void
tmsg_lookup_flags_other_than_seeders_first_are_eformat(void **state) {
  (void)state;
  struct tmsg_lookup m;
  struct tmsg_lookup out;
  size_t len;
  memset(&m, 0, sizeof(m));
  uint8_t *p = encode_bytes(&codec_lookup, &m, &len);
  for (unsigned v = 0; v < 256; v++) {
    p[TMSG_ID_BYTES + 2] = (uint8_t)v;
    if (v == 0 || v == TMSG_LOOKUP_SEEDERS_FIRST) {
      assert_int_equal(run_decode(&codec_lookup, p, len, &out), 0);
      assert_int_equal(out.flags, v);
    } else {
      expect_reject(&codec_lookup, p, len, SHOAL_EFORMAT);
    }
  }
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Lookup reply. */

static void tmsg_lookup_ok_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  static struct tmsg_lookup_ok m;
  size_t len;
  static const uint16_t counts[] = {0, 1, 3, TMSG_MAX_PEERS};

  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    make_lookup_ok(&m, counts[c], 3 + c);
    free(expect_round_trip(&codec_lookup_ok, &m,
                           LOOKUP_OK_HEADER + counts[c] * PEER_BYTES, &len));
  }
  make_lookup_ok(&m, TMSG_MAX_PEERS, 4);
  m.seeders = UINT32_MAX;
  m.downloaders = UINT32_MAX;
  m.completed = UINT32_MAX;
  m.peers[0].port = UINT16_MAX;
  m.peers[0].seeding = 1;
  m.peers[TMSG_MAX_PEERS - 1].port = 1;
  memset(m.peers[TMSG_MAX_PEERS - 1].addr, 0xff, 16);
  free(expect_round_trip(&codec_lookup_ok, &m,
                         LOOKUP_OK_HEADER + TMSG_MAX_PEERS * PEER_BYTES, &len));
}

static void tmsg_lookup_ok_bad_lengths_are_refused(void **state) {
  (void)state;
  static struct tmsg_lookup_ok m;
  make_lookup_ok(&m, 3, 1);
  expect_bad_lengths_of(&codec_lookup_ok, &m, LOOKUP_OK_HEADER, SHOAL_EFORMAT);
  make_lookup_ok(&m, TMSG_MAX_PEERS, 1);
  expect_bad_lengths_of(&codec_lookup_ok, &m, LOOKUP_OK_HEADER, SHOAL_EFORMAT);
}

static void tmsg_lookup_ok_count_over_max_is_etoobig(void **state) {
  (void)state;
  const uint16_t counts[] = {TMSG_MAX_PEERS + 1, 1000, UINT16_MAX};
  uint8_t hdr[LOOKUP_OK_HEADER];
  memset(hdr, 0, sizeof(hdr));
  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    buf_put_be16(hdr + LOOKUP_OK_HEADER - 2, counts[c]);
    expect_reject(&codec_lookup_ok, hdr, sizeof(hdr), SHOAL_ETOOBIG);
  }
  /* 201 well-formed peers, all present. */
  static struct tmsg_lookup_ok m;
  size_t len;
  make_lookup_ok(&m, TMSG_MAX_PEERS, 1);
  uint8_t *p = encode_bytes(&codec_lookup_ok, &m, &len);
  size_t n = len + PEER_BYTES;
  uint8_t *q = xmalloc(n);
  memcpy(q, p, len);
  memcpy(q + len, p + LOOKUP_OK_HEADER, PEER_BYTES);
  buf_put_be16(q + LOOKUP_OK_HEADER - 2, TMSG_MAX_PEERS + 1);
  expect_reject(&codec_lookup_ok, q, n, SHOAL_ETOOBIG);
  free(q);
  free(p);
}

static void tmsg_lookup_ok_invalid_peer_fields_are_eformat(void **state) {
  (void)state;
  static struct tmsg_lookup_ok m;
  size_t len;
  make_lookup_ok(&m, TMSG_MAX_PEERS, 8);
  uint8_t *p = encode_bytes(&codec_lookup_ok, &m, &len);
  const size_t peers[] = {LOOKUP_OK_HEADER,
                          LOOKUP_OK_HEADER + (TMSG_MAX_PEERS - 1) * PEER_BYTES};
  static const uint8_t bad_family[] = {0, 1, 5, 7, 46, 0xff};

  for (size_t i = 0; i < 2; i++) {
    size_t off = peers[i];
    for (size_t f = 0; f < sizeof(bad_family); f++) {
      expect_byte_rejected(&codec_lookup_ok, p, len, off + 32, bad_family[f],
                           SHOAL_EFORMAT);
    }
    uint8_t *q = xmalloc(len);
    memcpy(q, p, len);
    buf_put_be16(q + off + 49, 0);
    expect_reject(&codec_lookup_ok, q, len, SHOAL_EFORMAT);
    free(q);
    expect_byte_rejected(&codec_lookup_ok, p, len, off + 51, 2, SHOAL_EFORMAT);
    expect_byte_rejected(&codec_lookup_ok, p, len, off + 51, 0xff,
                         SHOAL_EFORMAT);
  }
  free(p);
}

static void tmsg_lookup_ok_encode_refuses_count_over_max(void **state) {
  (void)state;
  static struct tmsg_lookup_ok m;
  make_lookup_ok(&m, TMSG_MAX_PEERS, 1);
  m.count = TMSG_MAX_PEERS + 1;
  expect_encode_refused(&codec_lookup_ok, &m, SHOAL_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Publish. */

static void tmsg_publish_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  static struct tmsg_publish m;
  char name[TMSG_MAX_NAME + 1];
  size_t len;

  make_publish(&m, "holiday photos 2026");
  free(expect_round_trip(&codec_publish, &m, PUBLISH_FIXED + strlen(m.name),
                         &len));
  /* One byte names, and names that merely contain dots. */
  make_publish(&m, "x");
  free(expect_round_trip(&codec_publish, &m, PUBLISH_FIXED + 1, &len));
  make_publish(&m, "...");
  free(expect_round_trip(&codec_publish, &m, PUBLISH_FIXED + 3, &len));
  make_publish(&m, ".hidden");
  free(expect_round_trip(&codec_publish, &m, PUBLISH_FIXED + 7, &len));
  /* Longest name in ASCII, and in two-byte UTF-8 (127 x U+00E9 + 'a'). */
  memset(name, 'n', TMSG_MAX_NAME);
  name[TMSG_MAX_NAME] = '\0';
  make_publish(&m, name);
  m.size = UINT64_MAX;
  memset(m.content, 0xff, sizeof(m.content));
  free(expect_round_trip(&codec_publish, &m, PUBLISH_FIXED + TMSG_MAX_NAME,
                         &len));
  for (size_t i = 0; i < 127; i++) {
    name[2 * i] = (char)0xc3;
    name[2 * i + 1] = (char)0xa9;
  }
  name[254] = 'a';
  name[255] = '\0';
  make_publish(&m, name);
  m.size = 0;
  free(expect_round_trip(&codec_publish, &m, PUBLISH_FIXED + TMSG_MAX_NAME,
                         &len));
}

static void tmsg_publish_bad_lengths_are_refused(void **state) {
  (void)state;
  static struct tmsg_publish m;
  make_publish(&m, "some file.iso");
  expect_bad_lengths_rejected(&codec_publish, &m);
}

/* A publish payload with raw name bytes, built by hand so that names the
 * encoder would refuse can be sent. */
static uint8_t *publish_with_name(const void *name, size_t name_len,
                                  size_t *len) {
  *len = PUBLISH_FIXED + name_len;
  uint8_t *p = xmalloc(*len);
  tu_fill(p, PUBLISH_NAME_OFF, 1);
  buf_put_be16(p + PUBLISH_NAME_OFF, (uint16_t)name_len);
  if (name_len > 0) {
    memcpy(p + PUBLISH_NAME_OFF + 2, name, name_len);
  }
  tu_fill(p + PUBLISH_NAME_OFF + 2 + name_len, IDENTITY_SIG_BYTES, 2);
  return p;
}

static void expect_publish_name_rejected(const void *name, size_t name_len,
                                         int want) {
  size_t len;
  uint8_t *p = publish_with_name(name, name_len, &len);
  expect_reject(&codec_publish, p, len, want);
  free(p);
}

static void tmsg_publish_unsafe_names_are_epath(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",                 /* empty */
      ".",                /* this folder */
      "..",               /* the parent */
      "a/b",              /* a path, not a name */
      "/",                /* root */
      "../etc",           /* traversal */
      "a\\b",             /* Windows separator */
      "\xff",             /* never valid UTF-8 */
      "ab\xc3",           /* truncated sequence */
      "\xc0\xaf",         /* overlong '/' */
      "\xe0\x80\xaf",     /* overlong '/' in three bytes */
      "\xed\xa0\x80",     /* UTF-16 surrogate */
      "\xf4\x90\x80\x80", /* past U+10FFFF */
      "\x80",             /* lone continuation byte */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    expect_publish_name_rejected(bad[i], strlen(bad[i]), SHOAL_EPATH);
  }
}

static void tmsg_publish_control_characters_in_name_are_eformat(void **state) {
  (void)state;
  static const char *const bad[] = {"a\nb", "\r",      "x\x1b[2J",
                                    "\x01", "del\x7f", "tab\t"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    expect_publish_name_rejected(bad[i], strlen(bad[i]), SHOAL_EFORMAT);
  }
  /* An embedded NUL would cut the name short in C. */
  expect_publish_name_rejected("a\0b", 3, SHOAL_EFORMAT);
}

static void tmsg_publish_name_over_max_is_etoobig(void **state) {
  (void)state;
  uint8_t name[TMSG_MAX_NAME + 1];
  memset(name, 'n', sizeof(name));
  expect_publish_name_rejected(name, sizeof(name), SHOAL_ETOOBIG);
  /* The length alone is refused: nothing after it is read. */
  uint8_t hdr[PUBLISH_NAME_OFF + 2];
  memset(hdr, 0, sizeof(hdr));
  const uint16_t lens[] = {TMSG_MAX_NAME + 1, UINT16_MAX};
  for (size_t i = 0; i < 2; i++) {
    buf_put_be16(hdr + PUBLISH_NAME_OFF, lens[i]);
    expect_reject(&codec_publish, hdr, sizeof(hdr), SHOAL_ETOOBIG);
  }
}

static void tmsg_publish_encode_refuses_unsafe_names(void **state) {
  (void)state;
  static struct tmsg_publish m;
  static const char *const bad[] = {"",     ".",    "..",  "a/b",
                                    "a\\b", "\xff", "a\nb"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    make_publish(&m, bad[i]);
    expect_encode_refused(&codec_publish, &m, SHOAL_EINVAL);
  }
}

/* ------------------------------------------------------------------------ */
/* Publish reply. */

static void tmsg_publish_ok_round_trips_and_refuses_bad_lengths(void **state) {
  (void)state;
  struct tmsg_publish_ok m;
  size_t len;
  memset(&m, 0, sizeof(m));
  m.seq = 99;
  tu_fill(m.content, TMSG_ID_BYTES, 4);
  free(expect_round_trip(&codec_publish_ok, &m, PUBLISH_OK_BYTES, &len));
  expect_bad_lengths_rejected(&codec_publish_ok, &m);
  m.seq = UINT64_MAX;
  memset(m.content, 0xff, sizeof(m.content));
  free(expect_round_trip(&codec_publish_ok, &m, PUBLISH_OK_BYTES, &len));
}

/* ------------------------------------------------------------------------ */
/* Search. */

static void tmsg_search_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  struct tmsg_search m;
  char query[TMSG_MAX_QUERY + 1];
  size_t len;

  make_search(&m, "debian netinst");
  free(expect_round_trip(&codec_search, &m, SEARCH_FIXED + 14, &len));
  make_search(&m, "");
  free(expect_round_trip(&codec_search, &m, SEARCH_FIXED, &len));
  memset(query, 'q', TMSG_MAX_QUERY);
  query[TMSG_MAX_QUERY] = '\0';
  make_search(&m, query);
  m.offset = UINT32_MAX;
  m.limit = TMSG_MAX_RESULTS;
  free(expect_round_trip(&codec_search, &m, SEARCH_FIXED + TMSG_MAX_QUERY,
                         &len));
  m.offset = 0;
  m.limit = 0;
  free(expect_round_trip(&codec_search, &m, SEARCH_FIXED + TMSG_MAX_QUERY,
                         &len));
}

static void tmsg_search_bad_lengths_are_refused(void **state) {
  (void)state;
  struct tmsg_search m;
  make_search(&m, "ubuntu");
  expect_bad_lengths_rejected(&codec_search, &m);
}

static void tmsg_search_query_over_max_is_etoobig(void **state) {
  (void)state;
  size_t n = SEARCH_FIXED + TMSG_MAX_QUERY + 1;
  uint8_t *p = xmalloc(n);
  memset(p, 'q', n);
  buf_put_be16(p, TMSG_MAX_QUERY + 1);
  buf_put_be32(p + 2 + TMSG_MAX_QUERY + 1, 0);
  buf_put_be16(p + 6 + TMSG_MAX_QUERY + 1, 10);
  expect_reject(&codec_search, p, n, SHOAL_ETOOBIG);
  /* The length field alone. */
  expect_reject(&codec_search, p, 2, SHOAL_ETOOBIG);
  free(p);
}

static void tmsg_search_control_characters_are_eformat(void **state) {
  (void)state;
  struct tmsg_search m;
  size_t len;
  make_search(&m, "abcd");
  uint8_t *p = encode_bytes(&codec_search, &m, &len);
  static const uint8_t bad[] = {0x00, '\n', '\r', 0x1b, 0x1f, 0x7f};
  for (size_t i = 0; i < sizeof(bad); i++) {
    expect_byte_rejected(&codec_search, p, len, 2, bad[i], SHOAL_EFORMAT);
    expect_byte_rejected(&codec_search, p, len, 5, bad[i], SHOAL_EFORMAT);
  }
  free(p);
}

/* The decoder takes any u16 limit: the tracker clamps it to one page
 * (tracker/catalog.c), as it clamps a lookup's want. Only the encoder holds
 * our own client to TMSG_MAX_RESULTS. */
static void tmsg_search_limit_over_a_page_is_decoded_for_the_tracker_to_clamp(
    void **state) {
  (void)state;
  struct tmsg_search m;
  struct tmsg_search out;
  size_t len;
  make_search(&m, "abc");
  uint8_t *p = encode_bytes(&codec_search, &m, &len);
  const uint16_t big[] = {TMSG_MAX_RESULTS + 1, UINT16_MAX};
  for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
    buf_put_be16(p + len - 2, big[i]);
    assert_int_equal(run_decode(&codec_search, p, len, &out), 0);
    assert_int_equal(out.limit, big[i]);
    assert_string_equal(out.query, "abc");
  }
  free(p);
}

static void tmsg_search_encode_refuses_limit_over_max(void **state) {
  (void)state;
  struct tmsg_search m;
  make_search(&m, "abc");
  m.limit = TMSG_MAX_RESULTS + 1;
  expect_encode_refused(&codec_search, &m, SHOAL_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Search reply. */

static void tmsg_search_ok_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  static struct tmsg_search_ok m;
  size_t len;

  make_search_ok(&m, 0, 4);
  free(expect_round_trip(&codec_search_ok, &m, SEARCH_OK_HEADER, &len));
  make_search_ok(&m, 3, 12);
  free(expect_round_trip(&codec_search_ok, &m, search_ok_len(&m), &len));
  /* A full page of longest names and extreme numbers. */
  make_search_ok(&m, TMSG_MAX_RESULTS, TMSG_MAX_NAME);
  m.total = UINT32_MAX;
  m.results[0].size = UINT64_MAX;
  m.results[0].seeders = UINT32_MAX;
  m.results[0].downloaders = UINT32_MAX;
  free(expect_round_trip(&codec_search_ok, &m,
                         SEARCH_OK_HEADER +
                             TMSG_MAX_RESULTS * (RESULT_FIXED + TMSG_MAX_NAME),
                         &len));
}

static void tmsg_search_ok_bad_lengths_are_refused(void **state) {
  (void)state;
  static struct tmsg_search_ok m;
  make_search_ok(&m, 3, 10);
  expect_bad_lengths_rejected(&codec_search_ok, &m);
  make_search_ok(&m, TMSG_MAX_RESULTS, TMSG_MAX_NAME);
  expect_bad_lengths_rejected(&codec_search_ok, &m);
}

static void tmsg_search_ok_count_over_max_is_etoobig(void **state) {
  (void)state;
  uint8_t hdr[SEARCH_OK_HEADER] = {0, 0, 0, 9};
  const uint16_t counts[] = {TMSG_MAX_RESULTS + 1, 1000, UINT16_MAX};
  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    buf_put_be16(hdr + 4, counts[c]);
    expect_reject(&codec_search_ok, hdr, sizeof(hdr), SHOAL_ETOOBIG);
  }
  /* 51 well-formed results, all present. */
  static struct tmsg_search_ok m;
  size_t len;
  make_search_ok(&m, TMSG_MAX_RESULTS, 8);
  uint8_t *p = encode_bytes(&codec_search_ok, &m, &len);
  size_t one = RESULT_FIXED + 8;
  uint8_t *q = xmalloc(len + one);
  memcpy(q, p, len);
  memcpy(q + len, p + SEARCH_OK_HEADER, one);
  buf_put_be16(q + 4, TMSG_MAX_RESULTS + 1);
  expect_reject(&codec_search_ok, q, len + one, SHOAL_ETOOBIG);
  free(q);
  free(p);
}

static void tmsg_search_ok_bad_result_names_are_refused(void **state) {
  (void)state;
  static struct tmsg_search_ok m;
  size_t len;
  make_search_ok(&m, 2, 6);
  uint8_t *p = encode_bytes(&codec_search_ok, &m, &len);
  /* Second result's name starts after the first result and its own id. */
  const size_t name2 = SEARCH_OK_HEADER + RESULT_FIXED + 6 + TMSG_ID_BYTES + 2;
  static const uint8_t bad[] = {0x00, '\n', '\r', 0x1b, 0x7f};
  for (size_t i = 0; i < sizeof(bad); i++) {
    expect_byte_rejected(&codec_search_ok, p, len,
                         SEARCH_OK_HEADER + TMSG_ID_BYTES + 2, bad[i],
                         SHOAL_EFORMAT);
    expect_byte_rejected(&codec_search_ok, p, len, name2 + 5, bad[i],
                         SHOAL_EFORMAT);
  }
  free(p);

  /* A name one byte over its maximum, with every byte present. */
  size_t n = SEARCH_OK_HEADER + RESULT_FIXED + TMSG_MAX_NAME + 1;
  uint8_t *q = calloc(1, n);
  assert_non_null(q);
  buf_put_be16(q + 4, 1);
  buf_put_be16(q + SEARCH_OK_HEADER + TMSG_ID_BYTES, TMSG_MAX_NAME + 1);
  memset(q + SEARCH_OK_HEADER + TMSG_ID_BYTES + 2, 'n', TMSG_MAX_NAME + 1);
  expect_reject(&codec_search_ok, q, n, SHOAL_ETOOBIG);
  /* And the length field as the last bytes of the input. */
  expect_reject(&codec_search_ok, q, SEARCH_OK_HEADER + TMSG_ID_BYTES + 2,
                SHOAL_ETOOBIG);
  free(q);
}

static void tmsg_search_ok_encode_refuses_count_over_max(void **state) {
  (void)state;
  static struct tmsg_search_ok m;
  make_search_ok(&m, TMSG_MAX_RESULTS, 5);
  m.count = TMSG_MAX_RESULTS + 1;
  expect_encode_refused(&codec_search_ok, &m, SHOAL_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Error reply. */

static void tmsg_error_round_trips_typical_and_limit_values(void **state) {
  (void)state;
  struct tmsg_error m;
  char reason[TMSG_MAX_REASON + 1];
  size_t len;

  make_error(&m, "replay guard is full; try later");
  uint8_t *p =
      expect_round_trip(&codec_error, &m, ERROR_FIXED + strlen(m.reason), &len);
  /* The code travels as a big-endian two's complement u32. */
  assert_true(buf_be32(p + ERROR_CODE_OFF) == (uint32_t)SHOAL_EGUARDFULL);
  free(p);

  make_error(&m, "");
  m.code = -1;
  free(expect_round_trip(&codec_error, &m, ERROR_FIXED, &len));
  memset(reason, 'r', TMSG_MAX_REASON);
  reason[TMSG_MAX_REASON] = '\0';
  make_error(&m, reason);
  m.request_type = TMSG_ERROR;
  m.request_id = UINT64_MAX;
  m.code = INT32_MIN;
  m.retry_after_ms = UINT32_MAX;
  free(
      expect_round_trip(&codec_error, &m, ERROR_FIXED + TMSG_MAX_REASON, &len));
}

static void tmsg_error_bad_lengths_are_refused(void **state) {
  (void)state;
  struct tmsg_error m;
  make_error(&m, "no such content");
  expect_bad_lengths_rejected(&codec_error, &m);
}

static void tmsg_error_code_not_negative_is_eformat(void **state) {
  (void)state;
  struct tmsg_error m;
  size_t len;
  make_error(&m, "x");
  uint8_t *p = encode_bytes(&codec_error, &m, &len);
  const uint32_t bad[] = {0, 1, 30000, INT32_MAX};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint8_t *q = xmalloc(len);
    memcpy(q, p, len);
    buf_put_be32(q + ERROR_CODE_OFF, bad[i]);
    expect_reject(&codec_error, q, len, SHOAL_EFORMAT);
    free(q);
  }
  free(p);
}

static void tmsg_error_reason_over_max_is_etoobig(void **state) {
  (void)state;
  size_t n = ERROR_FIXED + TMSG_MAX_REASON + 1;
  uint8_t *p = xmalloc(n);
  memset(p, 'r', n);
  p[0] = TMSG_LOOKUP;
  buf_put_be32(p + ERROR_CODE_OFF, (uint32_t)SHOAL_EINVAL);
  buf_put_be16(p + ERROR_REASON_OFF, TMSG_MAX_REASON + 1);
  expect_reject(&codec_error, p, n, SHOAL_ETOOBIG);
  expect_reject(&codec_error, p, ERROR_FIXED, SHOAL_ETOOBIG);
  free(p);
}

static void tmsg_error_control_characters_in_reason_are_eformat(void **state) {
  (void)state;
  struct tmsg_error m;
  size_t len;
  make_error(&m, "abcdef");
  uint8_t *p = encode_bytes(&codec_error, &m, &len);
  static const uint8_t bad[] = {0x00, '\n', '\r', 0x1b, 0x7f};
  for (size_t i = 0; i < sizeof(bad); i++) {
    expect_byte_rejected(&codec_error, p, len, ERROR_FIXED, bad[i],
                         SHOAL_EFORMAT);
    expect_byte_rejected(&codec_error, p, len, len - 1, bad[i], SHOAL_EFORMAT);
  }
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Every encoder reports a full output buffer and leaves it marked. */

static void tmsg_encoders_report_a_full_output_buffer(void **state) {
  (void)state;
  static struct tmsg_announce a;
  static struct tmsg_lookup_ok lo;
  static struct tmsg_search_ok so;
  struct tmsg_error e;
  uint8_t storage[16];
  struct buf b;

  make_announce(&a, 1, 1);
  make_lookup_ok(&lo, 1, 1);
  make_search_ok(&so, 1, 5);
  make_error(&e, "a reason longer than the buffer");
  const struct {
    const struct codec *c;
    const void *m;
  } cases[] = {{&codec_announce, &a},
               {&codec_lookup_ok, &lo},
               {&codec_search_ok, &so},
               {&codec_error, &e}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    buf_init_fixed(&b, storage, sizeof(storage));
    assert_int_equal(cases[i].c->encode(&b, cases[i].m), SHOAL_ETOOBIG);
    assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);
  }
  buf_init_fixed(&b, storage, sizeof(storage));
  assert_int_equal(tmsg_query_encode(&b, TMSG_SEARCH, 1, "x", 1),
                   SHOAL_ETOOBIG);
}

int main(void) {
  if (sodium_init() < 0) {
    fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(tmsg_query_header_layout_is_pinned),
      cmocka_unit_test(tmsg_query_round_trip_points_payload_into_frame),
      cmocka_unit_test(
          tmsg_query_shorter_than_header_is_etrunc_then_length_mismatch),
      cmocka_unit_test(tmsg_query_trailing_byte_is_eformat),
      cmocka_unit_test(tmsg_query_version_other_than_1_is_eversion),
      cmocka_unit_test(tmsg_query_class_other_than_query_class_is_edomain),
      cmocka_unit_test(tmsg_query_nonzero_flags_are_eformat),
      cmocka_unit_test(tmsg_query_length_field_mismatch_is_eformat),
      cmocka_unit_test(tmsg_query_encode_refuses_payload_over_frame_max),
      cmocka_unit_test(tmsg_is_query_tells_query_from_sealed_envelope),
      cmocka_unit_test(tmsg_peek_type_reads_query_and_envelope_alike),
      cmocka_unit_test(tmsg_query_payload_decodes_as_the_lookup_inside),
      cmocka_unit_test(tmsg_announce_layout_is_pinned),
      cmocka_unit_test(tmsg_announce_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_announce_truncated_at_every_length_is_refused),
      cmocka_unit_test(tmsg_announce_trailing_byte_is_eformat),
      cmocka_unit_test(tmsg_announce_count_over_max_is_etoobig),
      cmocka_unit_test(tmsg_announce_invalid_fields_are_eformat),
      cmocka_unit_test(tmsg_announce_encode_refuses_count_over_max),
      cmocka_unit_test(tmsg_announce_ok_round_trips_and_refuses_bad_lengths),
      cmocka_unit_test(tmsg_lookup_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_lookup_bad_lengths_are_refused),
      cmocka_unit_test(tmsg_lookup_flags_other_than_seeders_first_are_eformat),
      cmocka_unit_test(tmsg_lookup_ok_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_lookup_ok_bad_lengths_are_refused),
      cmocka_unit_test(tmsg_lookup_ok_count_over_max_is_etoobig),
      cmocka_unit_test(tmsg_lookup_ok_invalid_peer_fields_are_eformat),
      cmocka_unit_test(tmsg_lookup_ok_encode_refuses_count_over_max),
      cmocka_unit_test(tmsg_publish_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_publish_bad_lengths_are_refused),
      cmocka_unit_test(tmsg_publish_unsafe_names_are_epath),
      cmocka_unit_test(tmsg_publish_control_characters_in_name_are_eformat),
      cmocka_unit_test(tmsg_publish_name_over_max_is_etoobig),
      cmocka_unit_test(tmsg_publish_encode_refuses_unsafe_names),
      cmocka_unit_test(tmsg_publish_ok_round_trips_and_refuses_bad_lengths),
      cmocka_unit_test(tmsg_search_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_search_bad_lengths_are_refused),
      cmocka_unit_test(tmsg_search_query_over_max_is_etoobig),
      cmocka_unit_test(tmsg_search_control_characters_are_eformat),
      cmocka_unit_test(
          tmsg_search_limit_over_a_page_is_decoded_for_the_tracker_to_clamp),
      cmocka_unit_test(tmsg_search_encode_refuses_limit_over_max),
      cmocka_unit_test(tmsg_search_ok_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_search_ok_bad_lengths_are_refused),
      cmocka_unit_test(tmsg_search_ok_count_over_max_is_etoobig),
      cmocka_unit_test(tmsg_search_ok_bad_result_names_are_refused),
      cmocka_unit_test(tmsg_search_ok_encode_refuses_count_over_max),
      cmocka_unit_test(tmsg_error_round_trips_typical_and_limit_values),
      cmocka_unit_test(tmsg_error_bad_lengths_are_refused),
      cmocka_unit_test(tmsg_error_code_not_negative_is_eformat),
      cmocka_unit_test(tmsg_error_reason_over_max_is_etoobig),
      cmocka_unit_test(tmsg_error_control_characters_in_reason_are_eformat),
      cmocka_unit_test(tmsg_encoders_report_a_full_output_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
