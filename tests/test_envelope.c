/* Unit tests for common/envelope.c: sealing, and every way opening must
 * refuse a message (forged, truncated, extended, misdirected, stale,
 * replayed).
 *
 * Known-answer vectors: tests/vectors/envelope-request.bin and
 * tests/vectors/envelope-hello.bin hold sealed envelopes made from the fixed
 * inputs in kat_vectors[] below (described in tests/vectors/README.md).
 * Ed25519 signatures are deterministic, so sealing the same inputs must give
 * the same bytes forever; the test compares against the committed files and
 * opens them. To (re)generate the files after a deliberate format change,
 * run from the top of the tree:
 *
 *   SHOAL_WRITE_VECTORS=1 ./build/tests/test_envelope
 *
 * which writes the files (to $SHOAL_TEST_VECTORS, else tests/vectors)
 * instead of comparing, then review and commit them.
 *
 * All clock values are passed explicitly; nothing here reads the real clock.
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
#include "common/replay.h"
#include "tests/lib/testutil.h"

/* 2026-01-01T00:00:00Z: an arbitrary fixed "now" for every test. */
#define NOW_MS UINT64_C(1767225600000)
#define WINDOW_MS ((uint64_t)ENVELOPE_WINDOW_MS_DEFAULT)

/* The protocol's domain strings, spelled out here rather than taken from
 * envelope_domain() so that the test checks them independently. */
#define DOMAIN_REQUEST "shoal/1 tracker request"
#define DOMAIN_REPLY "shoal/1 tracker reply"
#define DOMAIN_HELLO "shoal/1 peer hello"

/* Key pair whose seed is first, first + 1, ..., first + 31. */
static void key_from_seed(struct identity *id, uint8_t first) {
  uint8_t seed[32];
  for (size_t i = 0; i < sizeof(seed); i++) {
    seed[i] = (uint8_t)(first + i);
  }
  identity_from_seed(id, seed);
}

/* The key of seed 01, 02, ..., 20 that signs most messages here; made once
 * in main(). */
static struct identity key_a;

/* Seals one envelope and returns it in its own exactly-sized heap block, so
 * that AddressSanitizer catches any read past its end. */
static uint8_t *seal_dup(enum envelope_class cls, uint8_t type,
                         const struct identity *id, uint64_t ts, uint64_t seq,
                         const void *payload, size_t plen, size_t *len) {
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_int_equal(envelope_seal(&b, cls, type, id, ts, seq, payload, plen), 0);
  assert_int_equal(b.len, ENVELOPE_OVERHEAD + plen);
  uint8_t *m = malloc(b.len);
  assert_non_null(m);
  memcpy(m, b.data, b.len);
  *len = b.len;
  buf_free(&b);
  return m;
}

/* Exactly-sized copy of the first n bytes of p. malloc(0) may give NULL,
 * which envelope_open must cope with for a zero length. */
static uint8_t *dup_n(const uint8_t *p, size_t n) {
  uint8_t *m = malloc(n);
  assert_true(m != NULL || n == 0);
  if (n > 0) {
    memcpy(m, p, n);
  }
  return m;
}

static struct envelope_policy policy(enum envelope_class cls,
                                     const uint8_t *expect,
                                     struct replay_guard *guard) {
  return (struct envelope_policy){.cls = cls,
                                  .now_ms = NOW_MS,
                                  .window_ms = WINDOW_MS,
                                  .expect_sender = expect,
                                  .guard = guard};
}

/* Opens msg and, when it fails, checks that out came back all zero. */
static int open_checked(const uint8_t *msg, size_t len,
                        const struct envelope_policy *pol,
                        struct envelope *out) {
  static const struct envelope zero;
  memset(out, 0xa5, sizeof(*out));
  int err = envelope_open(msg, len, pol, out);
  if (err != 0) {
    assert_true(err < 0);
    assert_memory_equal(out, &zero, sizeof(zero));
  }
  return err;
}

/* Builds an envelope by hand, independently of envelope_seal(), with every
 * header field chosen by the caller and the signature made straight with
 * libsodium over domain || 0x00 || header || payload. Used to check the
 * layout and to make messages that are properly signed yet malformed. */
struct raw {
  uint8_t version;
  uint8_t cls;
  uint8_t type;
  uint8_t flags;
  const uint8_t *pk;
  uint64_t ts;
  uint64_t seq;
  uint32_t len_field;
  const uint8_t *payload;
  size_t plen;
  const char *domain;
};

static uint8_t *build_raw(const struct raw *r, const struct identity *signer,
                          size_t *len) {
  size_t dlen = strlen(r->domain) + 1;
  size_t body = ENVELOPE_HEADER_BYTES + r->plen;
  uint8_t *m = malloc(body + ENVELOPE_SIG_BYTES);
  uint8_t *signed_bytes = malloc(dlen + body);
  assert_non_null(m);
  assert_non_null(signed_bytes);

  m[0] = r->version;
  m[1] = r->cls;
  m[2] = r->type;
  m[3] = r->flags;
  memcpy(m + 4, r->pk, 32);
  for (int i = 0; i < 8; i++) {
    m[36 + i] = (uint8_t)(r->ts >> (56 - 8 * i));
    m[44 + i] = (uint8_t)(r->seq >> (56 - 8 * i));
  }
  for (int i = 0; i < 4; i++) {
    m[52 + i] = (uint8_t)(r->len_field >> (24 - 8 * i));
  }
  if (r->plen > 0) {
    memcpy(m + ENVELOPE_HEADER_BYTES, r->payload, r->plen);
  }
  memcpy(signed_bytes, r->domain, dlen); /* includes the 0x00 */
  memcpy(signed_bytes + dlen, m, body);
  crypto_sign_detached(m + body, NULL, signed_bytes, dlen + body, signer->sk);
  free(signed_bytes);
  *len = body + ENVELOPE_SIG_BYTES;
  return m;
}

/* A well-formed raw description, for tests to alter one field of. */
static struct raw raw_default(const struct identity *id, const uint8_t *payload,
                              size_t plen) {
  struct raw r;
  memset(&r, 0, sizeof(r));
  r.version = ENVELOPE_VERSION;
  r.cls = ENVELOPE_TRACKER_REQUEST;
  r.type = 7;
  r.flags = 0;
  r.pk = id->pk;
  r.ts = NOW_MS;
  r.seq = 42;
  r.len_field = (uint32_t)plen;
  r.payload = payload;
  r.plen = plen;
  r.domain = DOMAIN_REQUEST;
  return r;
}

/* The request most refusal tests start from: "abc", type 7, sequence 42,
 * sealed at NOW_MS by key_a. */
static uint8_t *abc_request(size_t *len) {
  return seal_dup(ENVELOPE_TRACKER_REQUEST, 7, &key_a, NOW_MS, 42, "abc", 3,
                  len);
}

/* The message r describes, signed by a, is refused as a tracker request
 * from anyone with want. */
static void expect_raw_refused(const struct raw *r, const struct identity *a,
                               int want) {
  struct envelope e;
  size_t len;
  struct envelope_policy pol = policy(ENVELOPE_TRACKER_REQUEST, NULL, NULL);
  uint8_t *m = build_raw(r, a, &len);
  assert_int_equal(open_checked(m, len, &pol, &e), want);
  free(m);
}

/* An empty replay guard of 16 senders. */
static void empty_guard(struct replay_guard *g) {
  assert_int_equal(replay_guard_init(g, 16, WINDOW_MS), 0);
}

/* ---------------------------------------------------------------------- */
/* Round trips and the layout. */

static void
test_seal_then_open_returns_every_field_and_the_payload(void **state) {
  struct envelope e;
  uint8_t payload[100];
  size_t len;
  (void)state;
  tu_fill(payload, sizeof(payload), 1);
  uint8_t *m = seal_dup(ENVELOPE_PEER_HELLO, 0xfe, &key_a, NOW_MS - 5, 1234567,
                        payload, sizeof(payload), &len);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, key_a.pk, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  assert_int_equal(e.version, ENVELOPE_VERSION);
  assert_int_equal(e.cls, ENVELOPE_PEER_HELLO);
  assert_int_equal(e.type, 0xfe);
  assert_int_equal(e.flags, 0);
  assert_memory_equal(e.sender, key_a.pk, sizeof(key_a.pk));
  assert_int_equal(e.timestamp_ms, NOW_MS - 5);
  assert_int_equal(e.seq, 1234567);
  assert_int_equal(e.payload_len, sizeof(payload));
  /* The payload is borrowed from the message, not copied. */
  assert_ptr_equal(e.payload, m + ENVELOPE_HEADER_BYTES);
  assert_memory_equal(e.payload, payload, sizeof(payload));
  free(m);
}

static void test_empty_payload_round_trips(void **state) {
  struct envelope e;
  size_t len;
  uint8_t dummy = 0x55;
  (void)state;
  struct envelope_policy pol = policy(ENVELOPE_TRACKER_REPLY, key_a.pk, NULL);
  /* With a NULL payload pointer and with a non-NULL one of length 0. */
  uint8_t *m =
      seal_dup(ENVELOPE_TRACKER_REPLY, 3, &key_a, NOW_MS, 1, NULL, 0, &len);
  assert_int_equal(len, ENVELOPE_OVERHEAD);
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  assert_int_equal(e.payload_len, 0);
  assert_int_equal(e.type, 3);
  uint8_t *m2 =
      seal_dup(ENVELOPE_TRACKER_REPLY, 3, &key_a, NOW_MS, 1, &dummy, 0, &len);
  assert_memory_equal(m, m2, len);
  free(m);
  free(m2);
}

static void test_max_payload_round_trips_and_fills_one_frame(void **state) {
  struct envelope e;
  size_t len;
  (void)state;
  uint8_t *payload = malloc(ENVELOPE_PAYLOAD_MAX);
  assert_non_null(payload);
  tu_fill(payload, ENVELOPE_PAYLOAD_MAX, 2);
  uint8_t *m = seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 9, payload,
                        ENVELOPE_PAYLOAD_MAX, &len);
  assert_int_equal(len, FRAME_MAX_DEFAULT);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, key_a.pk, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  assert_int_equal(e.payload_len, ENVELOPE_PAYLOAD_MAX);
  assert_memory_equal(e.payload, payload, ENVELOPE_PAYLOAD_MAX);

  /* One byte short fails the signature; one byte more is over the limit
   * and refused before any work is done. */
  uint8_t *shorter = dup_n(m, len - 1);
  assert_int_equal(open_checked(shorter, len - 1, &pol, &e), SHOAL_EBADSIG);
  uint8_t *longer = malloc(len + 1);
  assert_non_null(longer);
  memcpy(longer, m, len);
  longer[len] = 0;
  assert_int_equal(open_checked(longer, len + 1, &pol, &e), SHOAL_ETOOBIG);
  free(longer);
  free(shorter);
  free(m);
  free(payload);
}

static void test_payload_over_max_is_ETOOBIG_at_seal(void **state) {
  struct buf b;
  (void)state;
  uint8_t *payload = calloc(1, ENVELOPE_PAYLOAD_MAX + 1);
  assert_non_null(payload);
  buf_init(&b, 2 * FRAME_MAX_DEFAULT); /* the buffer itself has room */
  assert_int_equal(envelope_seal(&b, ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1,
                                 payload, ENVELOPE_PAYLOAD_MAX + 1),
                   SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  assert_int_equal(envelope_seal(&b, ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1,
                                 payload, SIZE_MAX),
                   SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  buf_free(&b);
  free(payload);
}

static void
test_seal_into_too_small_buffer_is_ETOOBIG_and_adds_nothing(void **state) {
  struct buf b;
  uint8_t storage[ENVELOPE_OVERHEAD + 9];
  uint8_t payload[10] = {0};
  (void)state;
  buf_init_fixed(&b, storage, sizeof(storage));
  assert_int_equal(envelope_seal(&b, ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1,
                                 payload, sizeof(payload)),
                   SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  buf_init(&b, ENVELOPE_OVERHEAD + 9);
  assert_int_equal(envelope_seal(&b, ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1,
                                 payload, sizeof(payload)),
                   SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  buf_free(&b);
}

static void test_seal_appends_after_existing_bytes(void **state) {
  struct envelope e;
  struct buf b;
  (void)state;
  buf_init(&b, 4096);
  buf_add(&b, "head:", 5);
  assert_int_equal(
      envelope_seal(&b, ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1, "xyz", 3),
      0);
  assert_int_equal(b.len, 5 + ENVELOPE_OVERHEAD + 3);
  assert_memory_equal(b.data, "head:", 5);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, key_a.pk, NULL);
  assert_int_equal(open_checked(b.data + 5, b.len - 5, &pol, &e), 0);
  assert_memory_equal(e.payload, "xyz", 3);
  buf_free(&b);
}

static void test_seal_matches_the_documented_layout(void **state) {
  uint8_t payload[33];
  size_t len, rlen;
  (void)state;
  tu_fill(payload, sizeof(payload), 3);
  uint8_t *m = seal_dup(ENVELOPE_TRACKER_REQUEST, 7, &key_a, NOW_MS, 42,
                        payload, sizeof(payload), &len);
  struct raw r = raw_default(&key_a, payload, sizeof(payload));
  uint8_t *want = build_raw(&r, &key_a, &rlen);
  assert_int_equal(len, rlen);
  assert_memory_equal(m, want, len);
  /* Spot-check big-endian fields at their documented offsets. */
  assert_int_equal(m[0], 1);
  assert_int_equal(m[1], ENVELOPE_TRACKER_REQUEST);
  assert_int_equal(buf_be64(m + 36), NOW_MS);
  assert_int_equal(buf_be64(m + 44), 42);
  assert_int_equal(buf_be32(m + 52), sizeof(payload));
  free(want);
  free(m);
}

static void
test_domain_strings_are_fixed_and_unknown_classes_have_none(void **state) {
  (void)state;
  assert_string_equal(envelope_domain(ENVELOPE_TRACKER_REQUEST),
                      DOMAIN_REQUEST);
  assert_string_equal(envelope_domain(ENVELOPE_TRACKER_REPLY), DOMAIN_REPLY);
  assert_string_equal(envelope_domain(ENVELOPE_PEER_HELLO), DOMAIN_HELLO);
  assert_null(envelope_domain((enum envelope_class)0));
  assert_null(envelope_domain((enum envelope_class)(ENVELOPE_CLASS_COUNT + 1)));
  assert_null(envelope_domain((enum envelope_class) - 1));
}

static void test_unknown_class_is_EINVAL_at_seal_and_open(void **state) {
  struct envelope e;
  struct buf b;
  size_t len;
  (void)state;
  buf_init(&b, 4096);
  assert_int_equal(
      envelope_seal(&b, (enum envelope_class)0, 1, &key_a, NOW_MS, 1, "x", 1),
      SHOAL_EINVAL);
  assert_int_equal(
      envelope_seal(&b, (enum envelope_class)4, 1, &key_a, NOW_MS, 1, "x", 1),
      SHOAL_EINVAL);
  assert_int_equal(b.len, 0);
  buf_free(&b);
  uint8_t *m =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1, "x", 1, &len);
  struct envelope_policy pol = policy((enum envelope_class)4, NULL, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EINVAL);
  free(m);
}

static void test_seq_start_is_the_clock_in_microseconds(void **state) {
  (void)state;
  assert_int_equal(envelope_seq_start(NOW_MS), NOW_MS * 1000);
  assert_true(envelope_seq_start(NOW_MS + 1) > envelope_seq_start(NOW_MS));
}

/* ---------------------------------------------------------------------- */
/* Forgeries and damage. */

static void test_every_flipped_bit_is_refused(void **state) {
  struct envelope e;
  struct replay_guard g;
  uint8_t payload[40];
  size_t len;
  (void)state;
  tu_fill(payload, sizeof(payload), 4);
  uint8_t *m = seal_dup(ENVELOPE_TRACKER_REQUEST, 7, &key_a, NOW_MS, 42,
                        payload, sizeof(payload), &len);
  assert_int_equal(replay_guard_init(&g, 16, WINDOW_MS), 0);
  struct envelope_policy pol = policy(ENVELOPE_TRACKER_REQUEST, key_a.pk, &g);

  for (size_t bit = 0; bit < len * 8; bit++) {
    uint8_t *f = dup_n(m, len);
    f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    int err = open_checked(f, len, &pol, &e);
    /* The documented order: version first, then the signature, whose
     * failure names the class when the class byte is what changed. */
    if (bit / 8 == 0) {
      assert_int_equal(err, SHOAL_EVERSION);
    } else if (bit / 8 == 1) {
      assert_int_equal(err, SHOAL_EDOMAIN);
    } else {
      assert_int_equal(err, SHOAL_EBADSIG);
    }
    free(f);
  }
  /* None of the refusals touched the replay guard. */
  assert_int_equal(g.count, 0);
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EREPLAY);
  replay_guard_close(&g);
  free(m);
}

static void test_every_truncation_is_refused(void **state) {
  struct envelope e;
  uint8_t payload[40];
  size_t len;
  (void)state;
  tu_fill(payload, sizeof(payload), 5);
  struct envelope_policy pol = policy(ENVELOPE_TRACKER_REQUEST, NULL, NULL);
  /* With a payload, and without one (where every cut is below the
   * minimum length). */
  for (size_t plen = 0; plen <= sizeof(payload); plen += sizeof(payload)) {
    uint8_t *m = seal_dup(ENVELOPE_TRACKER_REQUEST, 7, &key_a, NOW_MS, 42,
                          payload, plen, &len);
    for (size_t n = 0; n < len; n++) {
      uint8_t *t = dup_n(m, n);
      int err = open_checked(t, n, &pol, &e);
      assert_int_equal(err,
                       n < ENVELOPE_OVERHEAD ? SHOAL_ETRUNC : SHOAL_EBADSIG);
      free(t);
    }
    assert_int_equal(open_checked(m, len, &pol, &e), 0);
    free(m);
  }
}

static void test_one_extra_byte_is_refused(void **state) {
  struct envelope e;
  size_t len;
  (void)state;
  uint8_t *m = abc_request(&len);
  struct envelope_policy pol = policy(ENVELOPE_TRACKER_REQUEST, NULL, NULL);
  static const uint8_t extra[] = {0x00, 0x01, 0xff};
  for (size_t k = 0; k < sizeof(extra); k++) {
    uint8_t *x = malloc(len + 1);
    assert_non_null(x);
    memcpy(x, m, len);
    x[len] = extra[k];
    assert_int_equal(open_checked(x, len + 1, &pol, &e), SHOAL_EBADSIG);
    free(x);
  }
  free(m);
}

static void test_wrong_class_is_EDOMAIN(void **state) {
  struct envelope e;
  size_t len;
  (void)state;
  uint8_t *m = abc_request(&len);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, key_a.pk, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EDOMAIN);
  pol.cls = ENVELOPE_TRACKER_REPLY;
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EDOMAIN);
  pol.cls = ENVELOPE_TRACKER_REQUEST;
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  free(m);

  m = seal_dup(ENVELOPE_PEER_HELLO, 7, &key_a, NOW_MS, 42, "abc", 3, &len);
  pol.cls = ENVELOPE_TRACKER_REQUEST;
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EDOMAIN);
  free(m);
}

/* A class byte rewritten to the expected class cannot borrow the signature
 * made under the other domain. */
static void test_class_byte_rewritten_to_expected_is_EBADSIG(void **state) {
  struct envelope e;
  size_t len;
  (void)state;
  uint8_t *m = abc_request(&len);
  m[1] = ENVELOPE_PEER_HELLO;
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, key_a.pk, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EBADSIG);
  free(m);
}

/* Signed under the expected domain, but the class byte names another
 * class: the sender's own signature over a malformed header. */
static void
test_signed_class_byte_disagreeing_with_domain_is_EDOMAIN(void **state) {
  (void)state;
  struct raw r = raw_default(&key_a, (const uint8_t *)"abc", 3);
  r.cls = ENVELOPE_TRACKER_REPLY;
  r.domain = DOMAIN_REQUEST;
  expect_raw_refused(&r, &key_a, SHOAL_EDOMAIN);
}

static void test_signed_nonzero_flags_is_EFORMAT(void **state) {
  (void)state;
  for (int bit = 0; bit < 8; bit++) {
    struct raw r = raw_default(&key_a, (const uint8_t *)"abc", 3);
    r.flags = (uint8_t)(1u << bit);
    expect_raw_refused(&r, &key_a, SHOAL_EFORMAT);
  }
}

static void test_signed_wrong_length_field_is_EFORMAT(void **state) {
  static const uint32_t lens[] = {0, 2, 4, 5, 1000, UINT32_MAX};
  (void)state;
  for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
    struct raw r = raw_default(&key_a, (const uint8_t *)"abcd", 4);
    r.len_field = lens[k];
    if (lens[k] == 4) {
      continue; /* the correct value */
    }
    expect_raw_refused(&r, &key_a, SHOAL_EFORMAT);
  }
}

static void test_version_other_than_1_is_EVERSION(void **state) {
  static const uint8_t versions[] = {0, 2, 0x81, 0xff};
  struct envelope e;
  size_t len;
  (void)state;
  struct envelope_policy pol = policy(ENVELOPE_TRACKER_REQUEST, NULL, NULL);
  uint8_t *m = abc_request(&len);
  for (size_t k = 0; k < sizeof(versions); k++) {
    /* Rewritten after sealing, and signed that way by the sender. */
    uint8_t *x = dup_n(m, len);
    x[0] = versions[k];
    assert_int_equal(open_checked(x, len, &pol, &e), SHOAL_EVERSION);
    free(x);
    struct raw r = raw_default(&key_a, (const uint8_t *)"abc", 3);
    r.version = versions[k];
    expect_raw_refused(&r, &key_a, SHOAL_EVERSION);
  }
  free(m);
}

/* ---------------------------------------------------------------------- */
/* Keys. */

static void test_wrong_expected_sender_is_EWRONGKEY(void **state) {
  struct identity b;
  struct envelope e;
  size_t len;
  (void)state;
  key_from_seed(&b, 0x21);
  uint8_t *m =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1, "hi", 2, &len);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, b.pk, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EWRONGKEY);
  pol.expect_sender = key_a.pk;
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  pol.expect_sender = NULL;
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  free(m);
}

static void
test_signature_by_other_key_under_claimed_key_is_EBADSIG(void **state) {
  struct identity b, forger;
  struct envelope e;
  size_t len;
  (void)state;
  key_from_seed(&b, 0x21);
  /* Carries A's public key but signs with B's secret key. */
  memcpy(forger.pk, key_a.pk, sizeof(forger.pk));
  memcpy(forger.sk, b.sk, sizeof(forger.sk));
  uint8_t *m =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &forger, NOW_MS, 1, "hi", 2, &len);
  assert_memory_equal(m + 4, key_a.pk, sizeof(key_a.pk));
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, key_a.pk, NULL);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EBADSIG);
  pol.expect_sender = NULL;
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EBADSIG);
  identity_close(&forger);
  free(m);
}

/* ---------------------------------------------------------------------- */
/* The clock window. */

static int open_at(const struct identity *id, uint64_t ts, uint64_t seq,
                   uint64_t now, uint64_t window, struct replay_guard *g) {
  struct envelope e;
  size_t len;
  uint8_t *m = seal_dup(ENVELOPE_PEER_HELLO, 1, id, ts, seq, "t", 1, &len);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, NULL, g);
  pol.now_ms = now;
  pol.window_ms = window;
  int err = open_checked(m, len, &pol, &e);
  if (err == 0) {
    assert_int_equal(e.timestamp_ms, ts);
  }
  free(m);
  return err;
}

static void test_clock_window_edges_are_exact(void **state) {
  struct replay_guard g;
  (void)state;
  empty_guard(&g);
  assert_int_equal(
      open_at(&key_a, NOW_MS - WINDOW_MS, 1, NOW_MS, WINDOW_MS, &g), 0);
  assert_int_equal(
      open_at(&key_a, NOW_MS - WINDOW_MS - 1, 2, NOW_MS, WINDOW_MS, &g),
      SHOAL_ESTALE);
  assert_int_equal(
      open_at(&key_a, NOW_MS + WINDOW_MS, 3, NOW_MS, WINDOW_MS, &g), 0);
  assert_int_equal(
      open_at(&key_a, NOW_MS + WINDOW_MS + 1, 4, NOW_MS, WINDOW_MS, &g),
      SHOAL_EFUTURE);
  assert_int_equal(open_at(&key_a, NOW_MS, 5, NOW_MS, WINDOW_MS, &g), 0);
  /* A window of one millisecond. */
  assert_int_equal(open_at(&key_a, NOW_MS - 1, 6, NOW_MS, 1, &g), 0);
  assert_int_equal(open_at(&key_a, NOW_MS - 2, 7, NOW_MS, 1, &g), SHOAL_ESTALE);
  assert_int_equal(open_at(&key_a, NOW_MS + 1, 8, NOW_MS, 1, &g), 0);
  assert_int_equal(open_at(&key_a, NOW_MS + 2, 9, NOW_MS, 1, &g),
                   SHOAL_EFUTURE);
  replay_guard_close(&g);
}

static void test_clock_extremes_do_not_wrap(void **state) {
  (void)state;
  assert_int_equal(open_at(&key_a, 0, 1, NOW_MS, WINDOW_MS, NULL),
                   SHOAL_ESTALE);
  assert_int_equal(open_at(&key_a, UINT64_MAX, 1, NOW_MS, WINDOW_MS, NULL),
                   SHOAL_EFUTURE);
  assert_int_equal(open_at(&key_a, UINT64_MAX, 1, 0, WINDOW_MS, NULL),
                   SHOAL_EFUTURE);
  assert_int_equal(open_at(&key_a, 0, 1, UINT64_MAX, WINDOW_MS, NULL),
                   SHOAL_ESTALE);
  assert_int_equal(open_at(&key_a, 0, 1, 0, WINDOW_MS, NULL), 0);
  assert_int_equal(open_at(&key_a, UINT64_MAX, 1, UINT64_MAX, WINDOW_MS, NULL),
                   0);
  assert_int_equal(open_at(&key_a, 0, 1, UINT64_MAX, UINT64_MAX, NULL), 0);
}

static void test_window_zero_disables_the_clock_check(void **state) {
  (void)state;
  assert_int_equal(open_at(&key_a, 0, 1, NOW_MS, 0, NULL), 0);
  assert_int_equal(open_at(&key_a, UINT64_MAX, 1, NOW_MS, 0, NULL), 0);
}

/* ---------------------------------------------------------------------- */
/* Replays. */

static void test_same_message_twice_is_EREPLAY(void **state) {
  struct envelope e;
  struct replay_guard g;
  size_t len;
  (void)state;
  empty_guard(&g);
  uint8_t *m =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 100, "x", 1, &len);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, NULL, &g);
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EREPLAY);
  /* Later in the window it is still a replay. */
  pol.now_ms = NOW_MS + WINDOW_MS;
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EREPLAY);
  /* Without a guard, nothing is remembered. */
  pol.guard = NULL;
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  replay_guard_close(&g);
  free(m);
}

static void test_seq_more_than_window_behind_is_ESEQ(void **state) {
  struct replay_guard g;
  (void)state;
  empty_guard(&g);
  assert_int_equal(open_at(&key_a, NOW_MS, 1000, NOW_MS, WINDOW_MS, &g), 0);
  assert_int_equal(
      open_at(&key_a, NOW_MS, 1000 - REPLAY_WINDOW, NOW_MS, WINDOW_MS, &g),
      SHOAL_ESEQ);
  assert_int_equal(open_at(&key_a, NOW_MS, 1, NOW_MS, WINDOW_MS, &g),
                   SHOAL_ESEQ);
  assert_int_equal(
      open_at(&key_a, NOW_MS, 1000 - REPLAY_WINDOW + 1, NOW_MS, WINDOW_MS, &g),
      0);
  replay_guard_close(&g);
}

static void test_out_of_order_inside_window_is_accepted_once(void **state) {
  struct envelope e;
  struct replay_guard g;
  size_t len;
  (void)state;
  empty_guard(&g);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, NULL, &g);
  uint8_t *m10 =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 10, "x", 1, &len);
  uint8_t *m9 =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 9, "x", 1, &len);
  uint8_t *m5 =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 5, "x", 1, &len);
  assert_int_equal(open_checked(m10, len, &pol, &e), 0);
  assert_int_equal(open_checked(m5, len, &pol, &e), 0);
  assert_int_equal(open_checked(m9, len, &pol, &e), 0);
  assert_int_equal(open_checked(m5, len, &pol, &e), SHOAL_EREPLAY);
  assert_int_equal(open_checked(m9, len, &pol, &e), SHOAL_EREPLAY);
  assert_int_equal(open_checked(m10, len, &pol, &e), SHOAL_EREPLAY);
  free(m10);
  free(m9);
  free(m5);
  replay_guard_close(&g);
}

static void test_refused_message_does_not_advance_the_guard(void **state) {
  struct identity b;
  struct envelope e;
  struct replay_guard g;
  size_t len;
  (void)state;
  key_from_seed(&b, 0x21);
  empty_guard(&g);

  /* Stale, then the same number fresh. */
  assert_int_equal(
      open_at(&key_a, NOW_MS - WINDOW_MS - 1, 10, NOW_MS, WINDOW_MS, &g),
      SHOAL_ESTALE);
  assert_int_equal(g.count, 0); /* the sender was not even recorded */
  assert_int_equal(open_at(&key_a, NOW_MS, 10, NOW_MS, WINDOW_MS, &g), 0);
  /* Future, then the same number in time. */
  assert_int_equal(
      open_at(&key_a, NOW_MS + WINDOW_MS + 1, 11, NOW_MS, WINDOW_MS, &g),
      SHOAL_EFUTURE);
  assert_int_equal(open_at(&key_a, NOW_MS, 11, NOW_MS, WINDOW_MS, &g), 0);
  /* A refused high number does not move the mark: 12 is still fine. */
  assert_int_equal(
      open_at(&key_a, NOW_MS - WINDOW_MS - 1, 5000, NOW_MS, WINDOW_MS, &g),
      SHOAL_ESTALE);
  assert_int_equal(open_at(&key_a, NOW_MS, 12, NOW_MS, WINDOW_MS, &g), 0);

  /* Wrong expected sender, then the right one. */
  uint8_t *m =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 20, "x", 1, &len);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, b.pk, &g);
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EWRONGKEY);
  pol.expect_sender = key_a.pk;
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  free(m);

  /* Wrong class, then the right one. */
  m = seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 21, "x", 1, &len);
  pol.cls = ENVELOPE_TRACKER_REQUEST;
  assert_int_equal(open_checked(m, len, &pol, &e), SHOAL_EDOMAIN);
  pol.cls = ENVELOPE_PEER_HELLO;
  assert_int_equal(open_checked(m, len, &pol, &e), 0);
  free(m);
  assert_int_equal(g.count, 1);
  replay_guard_close(&g);
}

/* A sender forgotten by a full guard whose last message sits exactly on
 * the clock window's edge is still live: its message, replayed at that
 * instant, passes the clock check and must be refused by the guard. */
static void test_replay_at_window_edge_after_eviction_is_refused(void **state) {
  struct identity b, c;
  struct envelope e;
  struct replay_guard g;
  size_t la, lb, lc;
  (void)state;
  key_from_seed(&b, 0x21);
  key_from_seed(&c, 0x41);
  assert_int_equal(replay_guard_init(&g, 2, WINDOW_MS), 0);
  uint8_t *ma =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &key_a, NOW_MS, 1, "a", 1, &la);
  uint8_t *mb = seal_dup(ENVELOPE_PEER_HELLO, 1, &b, NOW_MS, 1, "b", 1, &lb);
  uint8_t *mc =
      seal_dup(ENVELOPE_PEER_HELLO, 1, &c, NOW_MS + WINDOW_MS, 1, "c", 1, &lc);
  struct envelope_policy pol = policy(ENVELOPE_PEER_HELLO, NULL, &g);
  assert_int_equal(open_checked(ma, la, &pol, &e), 0);
  assert_int_equal(open_checked(mb, lb, &pol, &e), 0);
  pol.now_ms = NOW_MS + WINDOW_MS;
  assert_int_equal(open_checked(mc, lc, &pol, &e), 0); /* forgets a or b */
  assert_int_not_equal(open_checked(ma, la, &pol, &e), 0);
  assert_int_not_equal(open_checked(mb, lb, &pol, &e), 0);
  free(ma);
  free(mb);
  free(mc);
  replay_guard_close(&g);
}

/* ---------------------------------------------------------------------- */
/* Known-answer vectors. */

struct kat {
  const char *file;
  enum envelope_class cls;
  const char *domain;
  uint8_t type;
  uint64_t ts;
  uint64_t seq;
  size_t plen;
  int ascii; /* payload is `text`, else bytes 0x00, 0x01, ... */
  const char *text;
};

static const struct kat kat_vectors[] = {
    {"envelope-request.bin", ENVELOPE_TRACKER_REQUEST, DOMAIN_REQUEST, 0x01,
     UINT64_C(1767225600000), UINT64_C(1767225600000000), 48, 0, NULL},
    {"envelope-hello.bin", ENVELOPE_PEER_HELLO, DOMAIN_HELLO, 0x02,
     UINT64_C(1767225601234), UINT64_C(1767225600000001), 18, 1,
     "shoal hello vector"},
};

static int write_vectors(void) {
  const char *w = getenv("SHOAL_WRITE_VECTORS");
  return w != NULL && strcmp(w, "1") == 0;
}

static void kat_payload(const struct kat *k, uint8_t *p) {
  for (size_t i = 0; i < k->plen; i++) {
    p[i] = k->ascii ? (uint8_t)k->text[i] : (uint8_t)i;
  }
}

static void check_kat(const struct kat *k) {
  struct identity id;
  struct envelope e;
  uint8_t payload[64];
  char path[4096];
  size_t len, rlen, flen;

  assert_true(k->plen <= sizeof(payload));
  assert_true(!k->ascii || strlen(k->text) == k->plen);
  key_from_seed(&id, 0x01); /* seed 0x01, 0x02, ..., 0x20 */
  kat_payload(k, payload);
  uint8_t *m =
      seal_dup(k->cls, k->type, &id, k->ts, k->seq, payload, k->plen, &len);
  /* The same bytes built independently of envelope_seal(). */
  struct raw r = raw_default(&id, payload, k->plen);
  r.cls = (uint8_t)k->cls;
  r.type = k->type;
  r.ts = k->ts;
  r.seq = k->seq;
  r.domain = k->domain;
  uint8_t *want = build_raw(&r, &id, &rlen);
  assert_int_equal(len, rlen);
  assert_memory_equal(m, want, len);

  tu_vector_path(path, sizeof(path), k->file);
  if (write_vectors()) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(m, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    print_message("wrote %s (%zu bytes)\n", path, len);
  }
  uint8_t *file = tu_read_file(path, &flen);
  if (file == NULL) {
    fail_msg("missing vector %s (run from the top of the tree)", path);
  }
  assert_int_equal(flen, len);
  assert_memory_equal(file, m, len);

  /* The committed bytes open, with the clock check off, to the inputs. */
  uint8_t *exact = dup_n(file, flen);
  struct envelope_policy pol = policy(k->cls, id.pk, NULL);
  pol.window_ms = 0;
  assert_int_equal(open_checked(exact, flen, &pol, &e), 0);
  assert_int_equal(e.cls, k->cls);
  assert_int_equal(e.type, k->type);
  assert_int_equal(e.timestamp_ms, k->ts);
  assert_int_equal(e.seq, k->seq);
  assert_int_equal(e.payload_len, k->plen);
  assert_memory_equal(e.payload, payload, k->plen);
  /* ... and not as any other class. */
  for (int c = 1; c <= ENVELOPE_CLASS_COUNT; c++) {
    if (c != (int)k->cls) {
      pol.cls = (enum envelope_class)c;
      assert_int_equal(open_checked(exact, flen, &pol, &e), SHOAL_EDOMAIN);
    }
  }
  free(exact);
  free(file);
  free(want);
  free(m);
  identity_close(&id);
}

static void test_known_answer_tracker_request(void **state) {
  (void)state;
  check_kat(&kat_vectors[0]);
}

static void test_known_answer_peer_hello(void **state) {
  (void)state;
  check_kat(&kat_vectors[1]);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  key_from_seed(&key_a, 0x01);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seal_then_open_returns_every_field_and_the_payload),
      cmocka_unit_test(test_empty_payload_round_trips),
      cmocka_unit_test(test_max_payload_round_trips_and_fills_one_frame),
      cmocka_unit_test(test_payload_over_max_is_ETOOBIG_at_seal),
      cmocka_unit_test(
          test_seal_into_too_small_buffer_is_ETOOBIG_and_adds_nothing),
      cmocka_unit_test(test_seal_appends_after_existing_bytes),
      cmocka_unit_test(test_seal_matches_the_documented_layout),
      cmocka_unit_test(
          test_domain_strings_are_fixed_and_unknown_classes_have_none),
      cmocka_unit_test(test_unknown_class_is_EINVAL_at_seal_and_open),
      cmocka_unit_test(test_seq_start_is_the_clock_in_microseconds),
      cmocka_unit_test(test_every_flipped_bit_is_refused),
      cmocka_unit_test(test_every_truncation_is_refused),
      cmocka_unit_test(test_one_extra_byte_is_refused),
      cmocka_unit_test(test_wrong_class_is_EDOMAIN),
      cmocka_unit_test(test_class_byte_rewritten_to_expected_is_EBADSIG),
      cmocka_unit_test(
          test_signed_class_byte_disagreeing_with_domain_is_EDOMAIN),
      cmocka_unit_test(test_signed_nonzero_flags_is_EFORMAT),
      cmocka_unit_test(test_signed_wrong_length_field_is_EFORMAT),
      cmocka_unit_test(test_version_other_than_1_is_EVERSION),
      cmocka_unit_test(test_wrong_expected_sender_is_EWRONGKEY),
      cmocka_unit_test(
          test_signature_by_other_key_under_claimed_key_is_EBADSIG),
      cmocka_unit_test(test_clock_window_edges_are_exact),
      cmocka_unit_test(test_clock_extremes_do_not_wrap),
      cmocka_unit_test(test_window_zero_disables_the_clock_check),
      cmocka_unit_test(test_same_message_twice_is_EREPLAY),
      cmocka_unit_test(test_seq_more_than_window_behind_is_ESEQ),
      cmocka_unit_test(test_out_of_order_inside_window_is_accepted_once),
      cmocka_unit_test(test_refused_message_does_not_advance_the_guard),
      cmocka_unit_test(test_replay_at_window_edge_after_eviction_is_refused),
      cmocka_unit_test(test_known_answer_tracker_request),
      cmocka_unit_test(test_known_answer_peer_hello),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  identity_close(&key_a);
  return rc;
}
