/* Unit tests for common/pwire.c: the peer wire protocol.
 *
 * Everything pwire decodes or opens came from another peer, so the hostile
 * cases are the main ones. Hellos: a flipped bit in every byte, every
 * truncation, a wrong key, a wrong class, a wrong type, a replay. Sessions:
 * forged, replayed, reordered and reflected frames, mismatched ephemeral
 * keys, and a pinned nonce layout. Codecs: every type round trips, every
 * truncation and a trailing byte are refused, every length one over its
 * named maximum; the encoders that write into the caller's buffer (block
 * messages, the DATA head, HAVE chunks, have-map bits) write exactly the
 * bytes the general encoder writes and the decoder reads. A HAVE's
 * varints: cut short, longer than their value needs, past 2^32 - 1 alone
 * or summed, too many, and every flipped bit either refused or the one
 * encoding of what it names. Block and have-map
 * checks run against a manifest built from real files.
 *
 * Inputs are exact-size heap copies so that AddressSanitizer catches a read
 * one byte past the end, and outputs are pre-filled with 0xa5 so that a
 * refusal that forgets to zero them is caught. No test reads the real clock.
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
#include "common/manifest.h"
#include "common/pwire.h"
#include "common/replay.h"
#include "peer/manifest_build.h"
#include "tests/lib/bytes.h"
#include "tests/lib/errassert.h"
#include "tests/lib/testutil.h"

/* 2026-01-01T00:00:00Z: an arbitrary fixed "now" for every test. */
#define NOW_MS UINT64_C(1767225600000)
#define WINDOW_MS ((uint64_t)ENVELOPE_WINDOW_MS_DEFAULT)

/* Wire sizes, written out here independently of pwire.c. */
#define HELLO_PAYLOAD 67 /* content 32, eph key 32, port 2, flags 1 */
#define HELLO_BYTES (56 + HELLO_PAYLOAD + 64)
#define TAG 16
#define BLOCK (64u * 1024u)
#define PART (256u * 1024u)
#define HAVE_MAP_MAX (1u << 17) /* ceil(2^20 chunks / 8) */

/* Key pair whose seed is first, first + 1, ..., first + 31. */
static void key_from_seed(struct identity *id, uint8_t first) {
  uint8_t seed[32];
  for (size_t i = 0; i < sizeof(seed); i++) {
    seed[i] = (uint8_t)(first + i);
  }
  identity_from_seed(id, seed);
}

/* Exactly-sized copy of the first n bytes of p (never NULL). */
static uint8_t *dup_n(const uint8_t *p, size_t n) {
  uint8_t *m = malloc(n ? n : 1);
  assert_non_null(m);
  if (n > 0) {
    memcpy(m, p, n);
  }
  return m;
}

static struct envelope_policy hello_policy(const uint8_t *expect,
                                           struct replay_guard *g) {
  struct envelope_policy pol = {ENVELOPE_PEER_HELLO, NOW_MS, WINDOW_MS, expect,
                                g};
  return pol;
}

static void sample_hello(struct pwire_hello *h, uint8_t salt) {
  memset(h, 0, sizeof(*h));
  tu_fill(h->content, sizeof(h->content), 100 + salt);
  tu_fill(h->eph_pk, sizeof(h->eph_pk), 200 + salt);
  h->port = (uint16_t)(40000 + salt);
  h->flags = PWIRE_HELLO_SEEDER;
}

/* Seals a hello and returns it in its own exactly-sized heap block. */
static uint8_t *seal_hello(const struct identity *id, uint64_t seq,
                           const struct pwire_hello *h, size_t *len) {
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_err(pwire_hello_seal(&b, id, NOW_MS, seq, h), 0);
  assert_int_equal(b.len, HELLO_BYTES);
  uint8_t *m = dup_n(b.data, b.len);
  *len = b.len;
  buf_free(&b);
  return m;
}

/* Seals an arbitrary envelope (to build hellos pwire_hello_seal refuses). */
static uint8_t *seal_raw(enum envelope_class cls, uint8_t type,
                         const struct identity *id, uint64_t seq,
                         const void *payload, size_t plen, size_t *len) {
  struct buf b;
  buf_init(&b, FRAME_MAX_DEFAULT);
  assert_err(envelope_seal(&b, cls, type, id, NOW_MS, seq, payload, plen), 0);
  uint8_t *m = dup_n(b.data, b.len);
  *len = b.len;
  buf_free(&b);
  return m;
}

/* Opens a hello and checks that a refusal zeroes both outputs. */
static int open_hello(const uint8_t *msg, size_t len,
                      const struct envelope_policy *pol, struct pwire_hello *h,
                      uint8_t sender[32]) {
  memset(h, 0xa5, sizeof(*h));
  memset(sender, 0xa5, IDENTITY_PK_BYTES);
  int rc = pwire_hello_open(msg, len, pol, h, sender);
  if (rc != 0) {
    assert_true(bytes_all_zero(h, sizeof(*h)));
    assert_true(bytes_all_zero(sender, IDENTITY_PK_BYTES));
  }
  return rc;
}

/* The payload of a hello, laid out by hand. */
static void hello_payload(uint8_t p[HELLO_PAYLOAD],
                          const struct pwire_hello *h) {
  memcpy(p, h->content, 32);
  memcpy(p + 32, h->eph_pk, 32);
  p[64] = (uint8_t)(h->port >> 8);
  p[65] = (uint8_t)h->port;
  p[66] = h->flags;
}

/* ------------------------------------------------------------------------ */
/* Hello */

/* What each hello test starts from: the sender's key a (seed 1, 2, ...,
 * 32), the hello it seals, and room for what an open gives. */
struct hfx {
  struct identity a;
  struct pwire_hello h;
  struct pwire_hello got;
  uint8_t sender[32];
};

static int hello_setup(void **state) {
  struct hfx *x = calloc(1, sizeof(*x));
  if (x == NULL) {
    return -1;
  }
  key_from_seed(&x->a, 1);
  *state = x;
  return 0;
}

static int hello_teardown(void **state) {
  free(*state);
  return 0;
}

/* Makes x->h the sample hello of salt and seals it as a's hello number
 * seq. */
static uint8_t *seal_sample(struct hfx *x, uint8_t salt, uint64_t seq,
                            size_t *len) {
  sample_hello(&x->h, salt);
  return seal_hello(&x->a, seq, &x->h, len);
}

/* Opens msg under pol into x->got and x->sender. */
static int open_x(struct hfx *x, const uint8_t *msg, size_t len,
                  const struct envelope_policy *pol) {
  return open_hello(msg, len, pol, &x->got, x->sender);
}

/* Seals the sample hello of salt as a's hello number seq and opens it
 * under pol: what the open says. */
static int open_sample(struct hfx *x, uint8_t salt, uint64_t seq,
                       const struct envelope_policy *pol) {
  size_t len;
  uint8_t *m = seal_sample(x, salt, seq, &len);
  int rc = open_x(x, m, len, pol);
  free(m);
  return rc;
}

/* Seals plen bytes of payload as an envelope of class cls and type, signed
 * by a, and opens it as a hello expecting anyone: what the open says. */
static int open_raw(struct hfx *x, enum envelope_class cls, uint8_t type,
                    uint64_t seq, const void *payload, size_t plen) {
  size_t len;
  uint8_t *m = seal_raw(cls, type, &x->a, seq, payload, plen, &len);
  struct envelope_policy pol = hello_policy(NULL, NULL);
  int rc = open_x(x, m, len, &pol);
  free(m);
  return rc;
}

static void test_hello_round_trips_every_field(void **state) {
  struct hfx *x = *state;
  struct pwire_hello *h = &x->h;
  size_t len;
  sample_hello(h, 1);
  h->flags = PWIRE_HELLO_SEEDER | PWIRE_HELLO_NO_UPLOAD;
  uint8_t *m = seal_hello(&x->a, 7, h, &len);
  struct envelope_policy pol = hello_policy(x->a.pk, NULL);
  assert_err(open_x(x, m, len, &pol), 0);
  assert_memory_equal(x->got.content, h->content, sizeof(h->content));
  assert_memory_equal(x->got.eph_pk, h->eph_pk, sizeof(h->eph_pk));
  assert_int_equal(x->got.port, h->port);
  assert_int_equal(x->got.flags, h->flags);
  assert_memory_equal(x->sender, x->a.pk, 32);

  /* The envelope is of the hello class and type, and the payload is laid
   * out as the header documents. */
  uint8_t want[HELLO_PAYLOAD];
  hello_payload(want, h);
  assert_int_equal(m[1], ENVELOPE_PEER_HELLO);
  assert_int_equal(m[2], PWIRE_HELLO);
  assert_memory_equal(m + 56, want, sizeof(want));

  /* A NULL sender is allowed; no flags and port 0 are fine. */
  h->flags = 0;
  h->port = 0;
  free(m);
  m = seal_hello(&x->a, 8, h, &len);
  assert_err(pwire_hello_open(m, len, &pol, &x->got, NULL), 0);
  assert_int_equal(x->got.flags, 0);
  assert_int_equal(x->got.port, 0);
  free(m);
}

static void test_hello_seal_refuses_unknown_flags(void **state) {
  struct hfx *x = *state;
  struct buf b;
  sample_hello(&x->h, 2);
  buf_init(&b, FRAME_MAX_DEFAULT);
  for (unsigned bit = 3; bit < 8; bit++) {
    x->h.flags = (uint8_t)(1u << bit);
    assert_err(pwire_hello_seal(&b, &x->a, NOW_MS, 1, &x->h), SHOAL_EINVAL);
    assert_int_equal(b.len, 0);
  }
  buf_free(&b);
}

static void test_hello_seal_into_small_buffer_is_ETOOBIG(void **state) {
  struct hfx *x = *state;
  struct buf b;
  uint8_t store[HELLO_BYTES - 1];
  sample_hello(&x->h, 3);
  buf_init_fixed(&b, store, sizeof(store));
  assert_err(pwire_hello_seal(&b, &x->a, NOW_MS, 1, &x->h), SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
}

static void test_hello_every_flipped_bit_is_refused(void **state) {
  struct hfx *x = *state;
  struct replay_guard g;
  size_t len;
  uint8_t *m = seal_sample(x, 4, 9, &len);
  assert_int_equal(replay_guard_init(&g, 16, WINDOW_MS), 0);
  struct envelope_policy pol = hello_policy(NULL, &g);

  for (size_t bit = 0; bit < len * 8; bit++) {
    uint8_t *f = dup_n(m, len);
    f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    int err = open_x(x, f, len, &pol);
    if (bit / 8 == 0) {
      assert_err(err, SHOAL_EVERSION);
    } else if (bit / 8 == 1) {
      assert_err(err, SHOAL_EDOMAIN);
    } else {
      assert_err(err, SHOAL_EBADSIG);
    }
    free(f);
  }
  /* None of the refusals was recorded; the genuine hello still opens. */
  assert_int_equal(g.count, 0);
  assert_err(open_x(x, m, len, &pol), 0);
  replay_guard_close(&g);
  free(m);
}

static void test_hello_every_truncation_and_extension_is_refused(void **state) {
  struct hfx *x = *state;
  size_t len;
  uint8_t *m = seal_sample(x, 5, 10, &len);
  struct envelope_policy pol = hello_policy(NULL, NULL);
  for (size_t n = 0; n < len; n++) {
    uint8_t *t = dup_n(m, n);
    assert_int_not_equal(open_x(x, t, n, &pol), 0);
    free(t);
  }
  uint8_t *longer = malloc(len + 1);
  assert_non_null(longer);
  memcpy(longer, m, len);
  longer[len] = 0;
  assert_err(open_x(x, longer, len + 1, &pol), SHOAL_EBADSIG);
  free(longer);
  free(m);
}

static void test_hello_signed_by_unexpected_key_is_EWRONGKEY(void **state) {
  struct hfx *x = *state;
  struct identity b;
  size_t len;
  key_from_seed(&b, 50);
  sample_hello(&x->h, 6);
  uint8_t *m = seal_hello(&b, 11, &x->h, &len);
  struct envelope_policy pol = hello_policy(x->a.pk, NULL);
  assert_err(open_x(x, m, len, &pol), SHOAL_EWRONGKEY);
  /* Expecting the real signer opens it. */
  pol = hello_policy(b.pk, NULL);
  assert_err(open_x(x, m, len, &pol), 0);
  assert_memory_equal(x->sender, b.pk, 32);
  free(m);
}

static void test_envelope_of_another_class_is_EDOMAIN(void **state) {
  struct hfx *x = *state;
  uint8_t payload[HELLO_PAYLOAD];
  sample_hello(&x->h, 7);
  hello_payload(payload, &x->h);
  for (int cls = ENVELOPE_TRACKER_REQUEST; cls <= ENVELOPE_TRACKER_REPLY;
       cls++) {
    assert_err(open_raw(x, (enum envelope_class)cls, PWIRE_HELLO, 12, payload,
                        sizeof(payload)),
               SHOAL_EDOMAIN);
  }
}

static void test_policy_of_another_class_is_EINVAL(void **state) {
  struct envelope_policy pol = hello_policy(NULL, NULL);
  pol.cls = ENVELOPE_TRACKER_REQUEST;
  assert_err(open_sample(*state, 8, 13, &pol), SHOAL_EINVAL);
}

static void test_hello_of_another_type_is_EPROTO(void **state) {
  struct hfx *x = *state;
  uint8_t payload[HELLO_PAYLOAD];
  sample_hello(&x->h, 9);
  hello_payload(payload, &x->h);
  const uint8_t types[] = {0, PWIRE_VERSION + 1, 5, 255};
  for (size_t i = 0; i < sizeof(types); i++) {
    assert_err(open_raw(x, ENVELOPE_PEER_HELLO, types[i], 14 + i, payload,
                        sizeof(payload)),
               SHOAL_EPROTO);
  }
}

/* A hello of peer protocol version 1 (an older shoal: BLAKE2b chunk
 * hashes, libsodium's frames) or 2 (HAVEs of u32 chunks) is validly signed
 * and well formed, and still refused, as a version the receiver no longer
 * speaks; pwire_hello_version names it for the log. */
static void test_hello_of_an_older_version_is_EVERSION(void **state) {
  struct hfx *x = *state;
  uint8_t payload[HELLO_PAYLOAD];
  sample_hello(&x->h, 9);
  hello_payload(payload, &x->h);
  assert_int_equal(PWIRE_HELLO, 3);
  assert_int_equal(PWIRE_HELLO_OLDEST, 1);
  for (uint8_t v = 1; v <= 2; v++) {
    size_t old_len;
    uint8_t *old = seal_raw(ENVELOPE_PEER_HELLO, v, &x->a, 18 + v, payload,
                            sizeof(payload), &old_len);
    struct envelope_policy any = hello_policy(NULL, NULL);
    assert_err(open_x(x, old, old_len, &any), SHOAL_EVERSION);
    assert_int_equal(pwire_hello_version(old, old_len), v);
    assert_int_equal(pwire_hello_version(old, 2), 0);
    free(old);
  }
  /* The same payload under this version opens. */
  size_t len;
  uint8_t *m = seal_hello(&x->a, 20, &x->h, &len);
  assert_int_equal(m[2], PWIRE_VERSION);
  assert_int_equal(pwire_hello_version(m, len), PWIRE_VERSION);
  struct envelope_policy pol = hello_policy(NULL, NULL);
  assert_err(open_x(x, m, len, &pol), 0);
  free(m);
}

static void test_hello_payload_of_wrong_length_is_EFORMAT(void **state) {
  uint8_t payload[HELLO_PAYLOAD + 1];
  memset(payload, 0, sizeof(payload));
  const size_t sizes[] = {0, 1, HELLO_PAYLOAD - 1, HELLO_PAYLOAD + 1};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    assert_err(open_raw(*state, ENVELOPE_PEER_HELLO, PWIRE_HELLO, 20 + i,
                        payload, sizes[i]),
               SHOAL_EFORMAT);
  }
}

static void test_hello_unknown_flag_bits_are_EFORMAT(void **state) {
  struct hfx *x = *state;
  uint8_t payload[HELLO_PAYLOAD];
  sample_hello(&x->h, 10);
  for (unsigned bit = 3; bit < 8; bit++) {
    x->h.flags = (uint8_t)(PWIRE_HELLO_SEEDER | (1u << bit));
    hello_payload(payload, &x->h);
    assert_err(open_raw(x, ENVELOPE_PEER_HELLO, PWIRE_HELLO, 30 + bit, payload,
                        sizeof(payload)),
               SHOAL_EFORMAT);
  }
}

static void test_replayed_hello_is_EREPLAY(void **state) {
  struct hfx *x = *state;
  struct replay_guard g;
  size_t len, len2;
  uint8_t *m = seal_sample(x, 11, 100, &len);
  uint8_t *m2 = seal_hello(&x->a, 101, &x->h, &len2);
  assert_int_equal(replay_guard_init(&g, 16, WINDOW_MS), 0);
  struct envelope_policy pol = hello_policy(x->a.pk, &g);
  assert_err(open_x(x, m, len, &pol), 0);
  assert_err(open_x(x, m, len, &pol), SHOAL_EREPLAY);
  /* The next hello of the same sender is new. */
  assert_err(open_x(x, m2, len2, &pol), 0);
  assert_err(open_x(x, m2, len2, &pol), SHOAL_EREPLAY);
  replay_guard_close(&g);
  free(m);
  free(m2);
}

static void test_stale_hello_is_ESTALE(void **state) {
  struct envelope_policy pol = hello_policy(NULL, NULL);
  pol.now_ms = NOW_MS + WINDOW_MS + 1;
  assert_err(open_sample(*state, 12, 1, &pol), SHOAL_ESTALE);
}

/* ------------------------------------------------------------------------ */
/* Session */

/* A pair of connected sessions: a opened the connection. */
struct pair {
  struct pwire_eph ea, eb;
  struct pwire_session a, b;
};

static void pair_init(struct pair *p) {
  pwire_eph_generate(&p->ea);
  pwire_eph_generate(&p->eb);
  assert_err(pwire_session_init(&p->a, &p->ea, p->eb.pk, 1), 0);
  assert_err(pwire_session_init(&p->b, &p->eb, p->ea.pk, 0), 0);
}

static void pair_close(struct pair *p) {
  pwire_session_close(&p->a);
  pwire_session_close(&p->b);
  pwire_eph_close(&p->ea);
  pwire_eph_close(&p->eb);
}

/* Setup and teardown of the session tests: *state is a connected pair. */
static int pair_setup(void **state) {
  struct pair *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return -1;
  }
  pair_init(p);
  *state = p;
  return 0;
}

static int pair_teardown(void **state) {
  pair_close(*state);
  free(*state);
  return 0;
}

/* Seals plain into its own exactly-sized heap block. */
static uint8_t *seal_dup(struct pwire_session *s, const void *plain, size_t len,
                         size_t *out_len) {
  struct buf b;
  buf_init(&b, PWIRE_MAX_FRAME);
  assert_err(pwire_seal(s, &b, plain, len), 0);
  assert_int_equal(b.len, len + TAG);
  uint8_t *f = dup_n(b.data, b.len);
  *out_len = b.len;
  buf_free(&b);
  return f;
}

/* Opens a frame that must open, and checks its plaintext. */
static void open_expect(struct pwire_session *s, const uint8_t *f, size_t len,
                        const void *plain, size_t plen) {
  uint8_t *out = malloc(plen ? plen : 1);
  assert_non_null(out);
  assert_int_equal(pwire_open(s, f, len, out, plen), (int)plen);
  if (plen > 0) {
    assert_memory_equal(out, plain, plen);
  }
  free(out);
}

static int open_into(struct pwire_session *s, const uint8_t *f, size_t len) {
  static uint8_t out[PWIRE_MAX_PLAIN];
  return pwire_open(s, f, len, out, sizeof(out));
}

static void test_session_keys_match_and_messages_flow_both_ways(void **state) {
  struct pair *p = *state;
  assert_memory_equal(p->a.tx, p->b.rx, PWIRE_KEY_BYTES);
  assert_memory_equal(p->a.rx, p->b.tx, PWIRE_KEY_BYTES);
  assert_memory_not_equal(p->a.tx, p->a.rx, PWIRE_KEY_BYTES);
  assert_int_equal(p->a.tx_count, 0);
  assert_int_equal(p->a.rx_count, 0);

  for (int i = 0; i < 5; i++) {
    uint8_t msg[100];
    size_t flen;
    tu_fill(msg, sizeof(msg), (uint64_t)i);
    uint8_t *f = seal_dup(&p->a, msg, (size_t)(20 * i), &flen);
    open_expect(&p->b, f, flen, msg, (size_t)(20 * i));
    free(f);
    tu_fill(msg, sizeof(msg), (uint64_t)i + 100);
    f = seal_dup(&p->b, msg, sizeof(msg), &flen);
    open_expect(&p->a, f, flen, msg, sizeof(msg));
    free(f);
  }
  assert_int_equal(p->a.tx_count, 5);
  assert_int_equal(p->a.rx_count, 5);
  assert_int_equal(p->b.tx_count, 5);
  assert_int_equal(p->b.rx_count, 5);
}

/* The initiator is libsodium's kx client; the nonce is 4 zero bytes and the
 * counter big-endian; the associated data is empty. Checked here with
 * libsodium directly, so the layout cannot drift. */
static void test_kx_roles_and_nonce_layout_are_pinned(void **state) {
  struct pair *p = *state;
  uint8_t rx[32], tx[32];
  assert_int_equal(
      crypto_kx_client_session_keys(rx, tx, p->ea.pk, p->ea.sk, p->eb.pk), 0);
  assert_memory_equal(p->a.rx, rx, 32);
  assert_memory_equal(p->a.tx, tx, 32);
  assert_int_equal(
      crypto_kx_server_session_keys(rx, tx, p->eb.pk, p->eb.sk, p->ea.pk), 0);
  assert_memory_equal(p->b.rx, rx, 32);
  assert_memory_equal(p->b.tx, tx, 32);

  const char *msg = "pinned";
  for (uint64_t c = 0; c < 3; c++) {
    size_t flen;
    uint8_t nonce[12] = {0};
    uint8_t plain[16];
    unsigned long long plen;
    uint8_t *f = seal_dup(&p->a, msg, 6, &flen);
    nonce[11] = (uint8_t)c;
    assert_int_equal(crypto_aead_chacha20poly1305_ietf_decrypt(
                         plain, &plen, NULL, f, flen, NULL, 0, nonce, p->b.rx),
                     0);
    assert_int_equal(plen, 6);
    assert_memory_equal(plain, msg, 6);
    free(f);
  }

  /* A high counter: every byte of it is in the nonce, most significant
   * first. */
  size_t flen;
  uint8_t nonce[12] = {0,    0,    0,    0,    0x01, 0x02,
                       0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  uint8_t plain[16];
  unsigned long long plen;
  p->a.tx_count = UINT64_C(0x0102030405060708);
  uint8_t *f = seal_dup(&p->a, msg, 6, &flen);
  assert_int_equal(crypto_aead_chacha20poly1305_ietf_decrypt(
                       plain, &plen, NULL, f, flen, NULL, 0, nonce, p->b.rx),
                   0);
  p->b.rx_count = UINT64_C(0x0102030405060708);
  open_expect(&p->b, f, flen, msg, 6);
  assert_int_equal(p->b.rx_count, UINT64_C(0x0102030405060709));
  free(f);
}

static void test_forged_frame_is_EBADSIG_and_next_genuine_opens(void **state) {
  struct pair *p = *state;
  uint8_t msg[64];
  size_t flen, flen2;
  tu_fill(msg, sizeof(msg), 1);
  uint8_t *f = seal_dup(&p->a, msg, sizeof(msg), &flen);
  uint8_t *f2 = seal_dup(&p->a, msg, 10, &flen2);

  /* Every flipped bit, in the ciphertext and in the tag. */
  for (size_t bit = 0; bit < flen * 8; bit++) {
    uint8_t *x = dup_n(f, flen);
    uint8_t out[sizeof(msg)];
    memset(out, 0xa5, sizeof(out));
    x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_err(pwire_open(&p->b, x, flen, out, sizeof(out)), SHOAL_EBADSIG);
    assert_true(bytes_all_zero(out, sizeof(out)));
    assert_int_equal(p->b.rx_count, 0);
    free(x);
  }
  /* A frame of random bytes, and a frame made under another key. */
  uint8_t junk[80];
  tu_fill(junk, sizeof(junk), 2);
  assert_err(open_into(&p->b, junk, sizeof(junk)), SHOAL_EBADSIG);
  struct pair q;
  size_t qlen;
  pair_init(&q);
  uint8_t *g = seal_dup(&q.a, msg, sizeof(msg), &qlen);
  assert_err(open_into(&p->b, g, qlen), SHOAL_EBADSIG);
  free(g);
  pair_close(&q);
  /* A frame cut short or extended. */
  assert_err(open_into(&p->b, f, flen - 1), SHOAL_EBADSIG);
  uint8_t *ext = malloc(flen + 1);
  assert_non_null(ext);
  memcpy(ext, f, flen);
  ext[flen] = 0;
  assert_err(open_into(&p->b, ext, flen + 1), SHOAL_EBADSIG);
  free(ext);
  assert_int_equal(p->b.rx_count, 0);

  open_expect(&p->b, f, flen, msg, sizeof(msg));
  open_expect(&p->b, f2, flen2, msg, 10);
  free(f);
  free(f2);
}

static void test_replayed_frame_is_EBADSIG(void **state) {
  struct pair *p = *state;
  size_t flen, flen2;
  uint8_t *f = seal_dup(&p->a, "one", 3, &flen);
  uint8_t *f2 = seal_dup(&p->a, "two", 3, &flen2);
  open_expect(&p->b, f, flen, "one", 3);
  assert_err(open_into(&p->b, f, flen), SHOAL_EBADSIG);
  open_expect(&p->b, f2, flen2, "two", 3);
  assert_err(open_into(&p->b, f, flen), SHOAL_EBADSIG);
  assert_err(open_into(&p->b, f2, flen2), SHOAL_EBADSIG);
  assert_int_equal(p->b.rx_count, 2);
  free(f);
  free(f2);
}

static void test_reordered_frame_is_EBADSIG(void **state) {
  struct pair *p = *state;
  size_t flen, flen2;
  uint8_t *f = seal_dup(&p->a, "one", 3, &flen);
  uint8_t *f2 = seal_dup(&p->a, "two", 3, &flen2);
  assert_err(open_into(&p->b, f2, flen2), SHOAL_EBADSIG);
  open_expect(&p->b, f, flen, "one", 3);
  open_expect(&p->b, f2, flen2, "two", 3);
  free(f);
  free(f2);
}

static void test_reflected_frame_is_EBADSIG(void **state) {
  struct pair *p = *state;
  size_t flen;
  /* Both sides sealed one frame: each one reflected back to its sender
   * meets the sender's receive key, with the same counter. */
  uint8_t *fa = seal_dup(&p->a, "from a", 6, &flen);
  assert_err(open_into(&p->a, fa, flen), SHOAL_EBADSIG);
  uint8_t *fb = seal_dup(&p->b, "from b", 6, &flen);
  assert_err(open_into(&p->b, fb, flen), SHOAL_EBADSIG);
  open_expect(&p->b, fa, flen, "from a", 6);
  open_expect(&p->a, fb, flen, "from b", 6);
  free(fa);
  free(fb);
}

static void test_different_ephemeral_keys_cannot_open(void **state) {
  struct pair *p = *state;
  struct pwire_eph ec;
  struct pwire_session c;
  size_t flen;
  /* b' derives its session with an impostor's key instead of a's. */
  pwire_eph_generate(&ec);
  assert_err(pwire_session_init(&c, &p->eb, ec.pk, 0), 0);
  assert_memory_not_equal(c.rx, p->a.tx, PWIRE_KEY_BYTES);
  uint8_t *f = seal_dup(&p->a, "secret", 6, &flen);
  assert_err(open_into(&c, f, flen), SHOAL_EBADSIG);
  free(f);
  f = seal_dup(&c, "reply", 5, &flen);
  assert_err(open_into(&p->a, f, flen), SHOAL_EBADSIG);
  free(f);
  pwire_session_close(&c);
  pwire_eph_close(&ec);
}

static void test_both_sides_initiator_cannot_talk(void **state) {
  struct pwire_eph ea, eb;
  struct pwire_session a, b;
  size_t flen;
  (void)state;
  pwire_eph_generate(&ea);
  pwire_eph_generate(&eb);
  for (int role = 0; role < 2; role++) {
    assert_err(pwire_session_init(&a, &ea, eb.pk, role), 0);
    assert_err(pwire_session_init(&b, &eb, ea.pk, role), 0);
    uint8_t *f = seal_dup(&a, "hi", 2, &flen);
    assert_err(open_into(&b, f, flen), SHOAL_EBADSIG);
    free(f);
    pwire_session_close(&a);
    pwire_session_close(&b);
  }
  pwire_eph_close(&ea);
  pwire_eph_close(&eb);
}

static void test_session_init_refuses_bad_keys(void **state) {
  struct pwire_eph e;
  struct pwire_session s;
  uint8_t zero[crypto_kx_PUBLICKEYBYTES] = {0};
  (void)state;
  pwire_eph_generate(&e);
  for (int initiator = 0; initiator < 2; initiator++) {
    /* A low-order point gives an all-zero shared secret. */
    memset(&s, 0xa5, sizeof(s));
    assert_err(pwire_session_init(&s, &e, zero, initiator), SHOAL_EBADSIG);
    assert_true(bytes_all_zero(&s, sizeof(s)));
    /* Our own key, reflected back. */
    memset(&s, 0xa5, sizeof(s));
    assert_err(pwire_session_init(&s, &e, e.pk, initiator), SHOAL_EBADSIG);
    assert_true(bytes_all_zero(&s, sizeof(s)));
  }
  pwire_eph_close(&e);
}

static void test_close_wipes_keys(void **state) {
  struct pair p;
  (void)state;
  pair_init(&p);
  assert_false(bytes_all_zero(p.a.tx, sizeof(p.a.tx)));
  pair_close(&p);
  assert_true(bytes_all_zero(&p.a, sizeof(p.a)));
  assert_true(bytes_all_zero(&p.b, sizeof(p.b)));
  assert_true(bytes_all_zero(&p.ea, sizeof(p.ea)));
  assert_true(bytes_all_zero(&p.eb, sizeof(p.eb)));
}

static void test_open_length_limits(void **state) {
  struct pair *p = *state;
  size_t flen;
  uint8_t out[64];
  uint8_t *f = seal_dup(&p->a, "0123456789", 10, &flen);
  for (size_t n = 0; n < TAG; n++) {
    assert_err(pwire_open(&p->b, f, n, out, sizeof(out)), SHOAL_ETRUNC);
  }
  /* Cap one short of the plaintext. */
  assert_err(pwire_open(&p->b, f, flen, out, 9), SHOAL_ETOOBIG);
  /* One byte over the largest frame, refused before any decryption. */
  uint8_t *big = calloc(1, PWIRE_MAX_FRAME + 1);
  uint8_t *plain = malloc(PWIRE_MAX_FRAME + 1);
  assert_non_null(big);
  assert_non_null(plain);
  assert_err(
      pwire_open(&p->b, big, PWIRE_MAX_FRAME + 1, plain, PWIRE_MAX_FRAME + 1),
      SHOAL_ETOOBIG);
  assert_int_equal(p->b.rx_count, 0);
  /* The frame still opens into an exact-size buffer. */
  open_expect(&p->b, f, flen, "0123456789", 10);
  free(big);
  free(plain);
  free(f);
}

static void test_empty_and_largest_messages_round_trip(void **state) {
  struct pair *p = *state;
  size_t flen;
  uint8_t *f = seal_dup(&p->a, NULL, 0, &flen);
  assert_int_equal(flen, TAG);
  assert_int_equal(pwire_open(&p->b, f, flen, NULL, 0), 0);
  free(f);

  uint8_t *msg = malloc(PWIRE_MAX_PLAIN + 1);
  assert_non_null(msg);
  tu_fill(msg, PWIRE_MAX_PLAIN + 1, 3);
  f = seal_dup(&p->a, msg, PWIRE_MAX_PLAIN, &flen);
  assert_int_equal(flen, PWIRE_MAX_FRAME);
  open_expect(&p->b, f, flen, msg, PWIRE_MAX_PLAIN);
  free(f);

  /* One byte more is refused at sealing, and nothing is appended. */
  struct buf b;
  buf_init(&b, 2 * PWIRE_MAX_FRAME);
  assert_err(pwire_seal(&p->a, &b, msg, PWIRE_MAX_PLAIN + 1), SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  assert_int_equal(p->a.tx_count, 2);
  /* A buffer too small: ETOOBIG, the counter does not move. */
  uint8_t small[TAG + 3];
  struct buf fb;
  buf_init_fixed(&fb, small, sizeof(small));
  assert_err(pwire_seal(&p->a, &fb, msg, 4), SHOAL_ETOOBIG);
  assert_int_equal(fb.len, 0);
  assert_int_equal(p->a.tx_count, 2);
  buf_free(&b);
  free(msg);
}

static void test_seal_appends_and_opens_in_place(void **state) {
  struct pair *p = *state;
  struct buf b;
  buf_init(&b, 1024);
  buf_add(&b, "hdr", 3);
  assert_err(pwire_seal(&p->a, &b, (const uint8_t *)"abc", 3), 0);
  assert_err(pwire_seal(&p->a, &b, (const uint8_t *)"defg", 4), 0);
  assert_int_equal(b.len, 3 + 3 + TAG + 4 + TAG);
  assert_memory_equal(b.data, "hdr", 3);
  /* Plaintext written over its own ciphertext. */
  uint8_t *f1 = b.data + 3;
  uint8_t *f2 = f1 + 3 + TAG;
  assert_int_equal(pwire_open(&p->b, f1, 3 + TAG, f1, 3 + TAG), 3);
  assert_memory_equal(f1, "abc", 3);
  assert_int_equal(pwire_open(&p->b, f2, 4 + TAG, f2, 4 + TAG), 4);
  assert_memory_equal(f2, "defg", 4);
  buf_free(&b);
}

static void test_spent_counter_is_refused(void **state) {
  struct pair *p = *state;
  struct buf b;
  size_t flen;
  p->a.tx_count = UINT64_MAX - 1;
  p->b.rx_count = UINT64_MAX - 1;
  uint8_t *f = seal_dup(&p->a, "last", 4, &flen);
  open_expect(&p->b, f, flen, "last", 4);
  free(f);
  buf_init(&b, 1024);
  assert_err(pwire_seal(&p->a, &b, (const uint8_t *)"more", 4), SHOAL_ETOOBIG);
  assert_int_equal(b.len, 0);
  assert_int_equal(p->a.tx_count, UINT64_MAX);
  /* No frame opens under the last counter value either. */
  uint8_t junk[TAG + 4] = {0};
  assert_err(open_into(&p->b, junk, sizeof(junk)), SHOAL_EBADSIG);
  buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Message codecs */

static uint8_t g_bytes[PART + 2];
/* A HAVE's chunks 0, 5, 300, 70 000 and 0xfffffffe, written out by hand:
 * 0; 5 - 1 = 4; 300 - 6 = 294 (0x26 | 0x80, 0x02); 70 000 - 301 = 69 699
 * (0x43 | 0x80, 0x20 | 0x80, 0x04); 0xfffffffe - 70 001 (five bytes). */
static const uint8_t g_have[] = {0x00, 0x04, 0xa6, 0x02, 0xc3, 0xa0,
                                 0x04, 0x8d, 0xdd, 0xfb, 0xff, 0x0f};
static const uint32_t g_have_chunks[] = {0, 5, 300, 70000, 0xfffffffeu};
#define HAVE_SAMPLE_CHUNKS 5u
/* Where each of g_have's varints ends. */
static const size_t g_have_ends[] = {1, 2, 4, 7, 12};

/* One valid message of every type, with its encoded size. The variable
 * parts borrow from g_bytes. */
struct sample {
  const char *name;
  struct pwire_msg m;
  size_t size;
  int tail; /* ends with variable-length bytes */
};

#define NSAMPLES 13
static void samples(struct sample s[NSAMPLES]) {
  memset(s, 0, NSAMPLES * sizeof(*s));
  s[0] = (struct sample){
      "manifest_req",
      {.type = PWIRE_MANIFEST_REQ, .offset = 1000, .length = PART},
      9,
      0};
  s[1] = (struct sample){"manifest_part",
                         {.type = PWIRE_MANIFEST_PART,
                          .total = 5000,
                          .offset = 1000,
                          .data = g_bytes,
                          .data_len = 300},
                         9 + 300,
                         1};
  s[2] =
      (struct sample){"have_map",
                      {.type = PWIRE_HAVE_MAP, .data = g_bytes, .data_len = 3},
                      1 + 3,
                      1};
  s[3] = (struct sample){"have",
                         {.type = PWIRE_HAVE,
                          .length = HAVE_SAMPLE_CHUNKS,
                          .data = g_have,
                          .data_len = sizeof(g_have)},
                         1 + sizeof(g_have),
                         1};
  s[4] = (struct sample){"interested", {.type = PWIRE_INTERESTED}, 1, 0};
  s[5] =
      (struct sample){"not_interested", {.type = PWIRE_NOT_INTERESTED}, 1, 0};
  s[6] = (struct sample){"choke", {.type = PWIRE_CHOKE}, 1, 0};
  s[7] = (struct sample){"unchoke", {.type = PWIRE_UNCHOKE}, 1, 0};
  s[8] = (struct sample){
      "request",
      {.type = PWIRE_REQUEST, .chunk = 7, .offset = 16384, .length = BLOCK},
      13,
      0};
  s[9] = (struct sample){"data",
                         {.type = PWIRE_DATA,
                          .chunk = 7,
                          .offset = 16384,
                          .data = g_bytes,
                          .data_len = 1000},
                         9 + 1000,
                         1};
  s[10] = (struct sample){"cancel",
                          {.type = PWIRE_CANCEL,
                           .chunk = 0xfffffffe,
                           .offset = 0xffffffff,
                           .length = 1},
                          13,
                          0};
  s[11] = (struct sample){
      "reject",
      {.type = PWIRE_REJECT, .chunk = 1, .offset = 2, .length = 3},
      13,
      0};
  s[12] = (struct sample){"keepalive", {.type = PWIRE_KEEPALIVE}, 1, 0};
}

/* Encodes m into an exactly-sized heap block. */
static uint8_t *encode_dup(const struct pwire_msg *m, size_t *len) {
  struct buf b;
  buf_init(&b, PWIRE_MAX_PLAIN);
  assert_err(pwire_encode(&b, m), 0);
  uint8_t *p = dup_n(b.data, b.len);
  *len = b.len;
  buf_free(&b);
  return p;
}

/* Decodes an exact-size copy of p[0..len); a refusal must zero out. */
static int decode_checked(const uint8_t *p, size_t len, struct pwire_msg *out,
                          uint8_t **copy) {
  *copy = dup_n(p, len);
  memset(out, 0xa5, sizeof(*out));
  int rc = pwire_decode(*copy, len, out);
  if (rc != 0) {
    struct pwire_msg zero;
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(out->type, 0);
    assert_int_equal(out->chunk, 0);
    assert_int_equal(out->offset, 0);
    assert_int_equal(out->length, 0);
    assert_int_equal(out->total, 0);
    assert_null(out->data);
    assert_int_equal(out->data_len, 0);
    assert_memory_equal(out, &zero, sizeof(zero));
  }
  return rc;
}

static int decode_err(const uint8_t *p, size_t len) {
  struct pwire_msg out;
  uint8_t *copy;
  int rc = decode_checked(p, len, &out, &copy);
  free(copy);
  return rc;
}

static void assert_same_msg(const struct pwire_msg *a,
                            const struct pwire_msg *b) {
  assert_int_equal(a->type, b->type);
  assert_int_equal(a->chunk, b->chunk);
  assert_int_equal(a->offset, b->offset);
  assert_int_equal(a->length, b->length);
  assert_int_equal(a->total, b->total);
  assert_int_equal(a->data_len, b->data_len);
  if (a->data_len > 0) {
    assert_memory_equal(a->data, b->data, a->data_len);
  }
}

static void test_every_type_round_trips(void **state) {
  struct sample s[NSAMPLES];
  (void)state;
  tu_fill(g_bytes, sizeof(g_bytes), 9);
  samples(s);
  for (int i = 0; i < NSAMPLES; i++) {
    size_t len, len2;
    struct pwire_msg got;
    uint8_t *copy;
    uint8_t *p = encode_dup(&s[i].m, &len);
    assert_int_equal(len, s[i].size);
    assert_int_equal(p[0], s[i].m.type);
    assert_err(decode_checked(p, len, &got, &copy), 0);
    assert_same_msg(&got, &s[i].m);
    if (s[i].tail) {
      /* The bytes are borrowed from the input, not copied. */
      assert_ptr_equal(got.data, copy + len - got.data_len);
    } else {
      assert_null(got.data);
    }
    /* One encoding per message. */
    uint8_t *p2 = encode_dup(&got, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(p2, p, len);
    free(p2);
    free(copy);
    free(p);
  }
}

static void test_wire_layout_is_pinned(void **state) {
  struct pwire_msg m;
  uint8_t *copy;
  (void)state;
  const uint8_t request[13] = {9,    0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
                               0x40, 0x00, 0x00, 0x01, 0x00, 0x00};
  assert_err(decode_checked(request, sizeof(request), &m, &copy), 0);
  assert_int_equal(m.type, PWIRE_REQUEST);
  assert_int_equal(m.chunk, 7);
  assert_int_equal(m.offset, 0x4000);
  assert_int_equal(m.length, 0x10000);
  free(copy);

  const uint8_t part[12] = {2,    0x00, 0x00, 0x01, 0x00, 0x00,
                            0x00, 0x00, 0xfd, 'a',  'b',  'c'};
  assert_err(decode_checked(part, sizeof(part), &m, &copy), 0);
  assert_int_equal(m.type, PWIRE_MANIFEST_PART);
  assert_int_equal(m.total, 256);
  assert_int_equal(m.offset, 253);
  assert_int_equal(m.data_len, 3);
  assert_memory_equal(m.data, "abc", 3);
  free(copy);

  /* Chunks 7, 8 and 200: 7, then 8 - 8 = 0, then 200 - 9 = 191 in two
   * bytes (0x3f | 0x80, 0x01). */
  const uint8_t have[5] = {4, 0x07, 0x00, 0xbf, 0x01};
  struct pwire_have_iter it;
  uint32_t chunk;
  assert_err(decode_checked(have, sizeof(have), &m, &copy), 0);
  assert_int_equal(m.type, PWIRE_HAVE);
  assert_int_equal(m.length, 3);
  pwire_have_begin(&it, &m);
  assert_true(pwire_have_next(&it, &chunk));
  assert_int_equal(chunk, 7);
  assert_true(pwire_have_next(&it, &chunk));
  assert_int_equal(chunk, 8);
  assert_true(pwire_have_next(&it, &chunk));
  assert_int_equal(chunk, 200);
  assert_false(pwire_have_next(&it, &chunk));
  assert_false(pwire_have_next(&it, &chunk));
  free(copy);

  struct buf b;
  buf_init(&b, 64);
  struct pwire_msg d = {.type = PWIRE_DATA,
                        .chunk = 0x0a0b0c0d,
                        .offset = 0x01020304,
                        .data = (const uint8_t *)"xy",
                        .data_len = 2};
  assert_err(pwire_encode(&b, &d), 0);
  const uint8_t want[11] = {10,   0x0a, 0x0b, 0x0c, 0x0d, 0x01,
                            0x02, 0x03, 0x04, 'x',  'y'};
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.data, want, sizeof(want));
  buf_free(&b);
}

static void test_every_truncation_is_refused(void **state) {
  struct sample s[NSAMPLES];
  (void)state;
  samples(s);
  assert_err(decode_err(NULL, 0), SHOAL_ETRUNC);
  for (int i = 0; i < NSAMPLES; i++) {
    size_t len;
    uint8_t *p = encode_dup(&s[i].m, &len);
    size_t fixed = s[i].tail ? len - s[i].m.data_len : len;
    for (size_t n = 0; n < len; n++) {
      int rc = decode_err(p, n);
      if (n < fixed || (s[i].tail && n == fixed)) {
        /* Missing fields, or no bytes where at least one is needed. */
        assert_err(rc, SHOAL_ETRUNC);
      } else if (s[i].m.type == PWIRE_HAVE) {
        /* Whole varints are a shorter HAVE; a cut one is refused. */
        int whole = 0;
        for (size_t k = 0; k < HAVE_SAMPLE_CHUNKS; k++) {
          whole |= n - fixed == g_have_ends[k];
        }
        assert_err(rc, whole ? 0 : SHOAL_ETRUNC);
      } else if (s[i].m.type == PWIRE_HAVE_MAP || s[i].m.type == PWIRE_DATA ||
                 s[i].m.type == PWIRE_MANIFEST_PART) {
        /* A shorter tail is a shorter message of the same type. */
        assert_err(rc, 0);
      }
    }
    free(p);
  }
}

static void test_one_trailing_byte_is_refused(void **state) {
  struct sample s[NSAMPLES];
  (void)state;
  samples(s);
  for (int i = 0; i < NSAMPLES; i++) {
    if (s[i].tail) {
      continue; /* a longer tail is a longer message; see below */
    }
    size_t len;
    uint8_t *p = encode_dup(&s[i].m, &len);
    uint8_t *x = malloc(len + 1);
    assert_non_null(x);
    memcpy(x, p, len);
    x[len] = 0;
    assert_err(decode_err(x, len + 1), SHOAL_EFORMAT);
    free(x);
    free(p);
  }
}

/* The variable-tail types: one byte past their limit is refused. */
static void test_one_byte_past_a_tail_limit_is_refused(void **state) {
  static uint8_t msg[9 + PART + 1];
  (void)state;
  memset(msg, 0, sizeof(msg));

  /* DATA: a whole block opens, one byte more is too big. */
  msg[0] = PWIRE_DATA;
  assert_err(decode_err(msg, 9 + BLOCK), 0);
  assert_err(decode_err(msg, 9 + BLOCK + 1), SHOAL_ETOOBIG);

  /* MANIFEST_PART: filling its total opens, one byte more passes it. */
  msg[0] = PWIRE_MANIFEST_PART;
  buf_put_be32(msg + 1, 100);
  buf_put_be32(msg + 5, 60);
  assert_err(decode_err(msg, 9 + 40), 0);
  assert_err(decode_err(msg, 9 + 41), SHOAL_EFORMAT);
  /* And a whole part opens, one byte more is too big. */
  buf_put_be32(msg + 1, MANIFEST_MAX_BYTES);
  buf_put_be32(msg + 5, 0);
  assert_err(decode_err(msg, 9 + PART), 0);
  assert_err(decode_err(msg, 9 + PART + 1), SHOAL_ETOOBIG);

  /* HAVE_MAP: the largest manifest's map opens, one byte more is too
   * big. */
  msg[0] = PWIRE_HAVE_MAP;
  assert_err(decode_err(msg, 1 + HAVE_MAP_MAX), 0);
  assert_err(decode_err(msg, 1 + HAVE_MAP_MAX + 1), SHOAL_ETOOBIG);

  /* HAVE: PWIRE_HAVE_MAX chunks open (0 .. 1023, a zero byte each); one
   * more chunk is too many, and more bytes than the most that many
   * chunks could take are too big whatever they hold. */
  msg[0] = PWIRE_HAVE;
  memset(msg + 1, 0, 1024 + 1);
  assert_err(decode_err(msg, 1 + 1024), 0);
  assert_err(decode_err(msg, 1 + 1024 + 1), SHOAL_ETOOBIG);
  memset(msg + 1, 0x80, 5 * 1024 + 1);
  assert_err(decode_err(msg, 1 + 5 * 1024 + 1), SHOAL_ETOOBIG);
}

static void test_lengths_over_maximums_are_ETOOBIG(void **state) {
  uint8_t msg[13];
  (void)state;
  const uint8_t block_types[] = {PWIRE_REQUEST, PWIRE_CANCEL, PWIRE_REJECT};
  for (size_t i = 0; i < sizeof(block_types); i++) {
    memset(msg, 0, sizeof(msg));
    msg[0] = block_types[i];
    buf_put_be32(msg + 9, BLOCK);
    assert_err(decode_err(msg, 13), 0);
    buf_put_be32(msg + 9, BLOCK + 1);
    assert_err(decode_err(msg, 13), SHOAL_ETOOBIG);
    buf_put_be32(msg + 9, UINT32_MAX);
    assert_err(decode_err(msg, 13), SHOAL_ETOOBIG);
  }
  memset(msg, 0, sizeof(msg));
  msg[0] = PWIRE_MANIFEST_REQ;
  buf_put_be32(msg + 5, PART);
  assert_err(decode_err(msg, 9), 0);
  buf_put_be32(msg + 5, PART + 1);
  assert_err(decode_err(msg, 9), SHOAL_ETOOBIG);
  buf_put_be32(msg + 5, UINT32_MAX);
  assert_err(decode_err(msg, 9), SHOAL_ETOOBIG);

  /* A manifest part of a manifest larger than any manifest may be. */
  uint8_t part[10] = {PWIRE_MANIFEST_PART};
  buf_put_be32(part + 1, MANIFEST_MAX_BYTES);
  assert_err(decode_err(part, sizeof(part)), 0);
  buf_put_be32(part + 1, MANIFEST_MAX_BYTES + 1);
  assert_err(decode_err(part, sizeof(part)), SHOAL_ETOOBIG);
  buf_put_be32(part + 1, UINT32_MAX);
  assert_err(decode_err(part, sizeof(part)), SHOAL_ETOOBIG);
}

static void test_zero_length_fields_are_EFORMAT(void **state) {
  uint8_t msg[13];
  (void)state;
  const uint8_t types[] = {PWIRE_REQUEST, PWIRE_CANCEL, PWIRE_REJECT};
  for (size_t i = 0; i < sizeof(types); i++) {
    memset(msg, 0, sizeof(msg));
    msg[0] = types[i];
    assert_err(decode_err(msg, 13), SHOAL_EFORMAT);
  }
  memset(msg, 0, sizeof(msg));
  msg[0] = PWIRE_MANIFEST_REQ;
  assert_err(decode_err(msg, 9), SHOAL_EFORMAT);
}

static void test_manifest_part_past_its_total_is_EFORMAT(void **state) {
  uint8_t part[9 + 4] = {PWIRE_MANIFEST_PART};
  (void)state;
  buf_put_be32(part + 1, 10);
  buf_put_be32(part + 5, 6);
  assert_err(decode_err(part, sizeof(part)), 0);
  buf_put_be32(part + 5, 7);
  assert_err(decode_err(part, sizeof(part)), SHOAL_EFORMAT);
  /* An offset near the top of u32 must not wrap past the check. */
  buf_put_be32(part + 5, UINT32_MAX - 1);
  assert_err(decode_err(part, sizeof(part)), SHOAL_EFORMAT);
  buf_put_be32(part + 5, UINT32_MAX);
  assert_err(decode_err(part, sizeof(part)), SHOAL_EFORMAT);
  /* A total of zero leaves room for nothing. */
  buf_put_be32(part + 1, 0);
  buf_put_be32(part + 5, 0);
  assert_err(decode_err(part, sizeof(part)), SHOAL_EFORMAT);
}

static void test_unknown_type_is_EFORMAT(void **state) {
  uint8_t msg[13];
  (void)state;
  memset(msg, 0, sizeof(msg));
  const uint8_t types[] = {0, 15, 16, 0x7f, 0x80, 0xff};
  for (size_t i = 0; i < sizeof(types); i++) {
    msg[0] = types[i];
    for (size_t n = 1; n <= sizeof(msg); n++) {
      assert_err(decode_err(msg, n), SHOAL_EFORMAT);
    }
  }
}

static void test_encode_refuses_what_decode_refuses(void **state) {
  static const uint8_t g_zeros[1024 + 1] = {0};
  static const uint8_t g_overlong[2] = {0x80, 0x00};
  struct buf b;
  (void)state;
  buf_init(&b, PWIRE_MAX_PLAIN);
  const struct pwire_msg bad[] = {
      {.type = 0},
      {.type = 15},
      {.type = PWIRE_MANIFEST_REQ, .length = 0},
      {.type = PWIRE_MANIFEST_REQ, .length = PART + 1},
      {.type = PWIRE_MANIFEST_PART,
       .total = 10,
       .data = g_bytes,
       .data_len = 0},
      {.type = PWIRE_MANIFEST_PART,
       .total = 10,
       .offset = 5,
       .data = g_bytes,
       .data_len = 6},
      {.type = PWIRE_MANIFEST_PART,
       .total = UINT32_MAX,
       .data = g_bytes,
       .data_len = 1},
      {.type = PWIRE_MANIFEST_PART,
       .total = MANIFEST_MAX_BYTES,
       .data = g_bytes,
       .data_len = PART + 1},
      {.type = PWIRE_HAVE_MAP, .data = g_bytes, .data_len = 0},
      {.type = PWIRE_HAVE_MAP, .data = g_bytes, .data_len = HAVE_MAP_MAX + 1},
      {.type = PWIRE_HAVE, .data = g_have, .data_len = 0},
      {.type = PWIRE_HAVE, .data = g_have, .data_len = 3}, /* cut short */
      {.type = PWIRE_HAVE, .data = g_zeros, .data_len = 1024 + 1},
      {.type = PWIRE_HAVE, .data = g_overlong, .data_len = 2},
      {.type = PWIRE_REQUEST, .length = 0},
      {.type = PWIRE_CANCEL, .length = BLOCK + 1},
      {.type = PWIRE_REJECT, .length = UINT32_MAX},
      {.type = PWIRE_DATA, .data = g_bytes, .data_len = 0},
      {.type = PWIRE_DATA, .data = g_bytes, .data_len = BLOCK + 1},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_err(pwire_encode(&b, &bad[i]), SHOAL_EINVAL);
    assert_int_equal(b.len, 0);
  }
  /* A full buffer: ETOOBIG and nothing appended. */
  uint8_t small[12];
  struct buf fb;
  buf_init_fixed(&fb, small, sizeof(small));
  struct pwire_msg req = {.type = PWIRE_REQUEST, .length = 1};
  assert_err(pwire_encode(&fb, &req), SHOAL_ETOOBIG);
  assert_int_equal(fb.len, 0);
  buf_free(&b);
}

/* A message sealed by one side decodes on the other: the codecs and the
 * session together, as the peer uses them. */
static void test_sealed_messages_decode_on_the_other_side(void **state) {
  struct pair *p = *state;
  struct sample s[NSAMPLES];
  static uint8_t plain[PWIRE_MAX_PLAIN];
  samples(s);
  for (int i = 0; i < NSAMPLES; i++) {
    struct buf m, f;
    struct pwire_msg got;
    buf_init(&m, PWIRE_MAX_PLAIN);
    buf_init(&f, PWIRE_MAX_FRAME);
    assert_err(pwire_encode(&m, &s[i].m), 0);
    assert_err(pwire_seal(&p->a, &f, m.data, m.len), 0);
    int n = pwire_open(&p->b, f.data, f.len, plain, sizeof(plain));
    assert_int_equal(n, (int)m.len);
    assert_err(pwire_decode(plain, (size_t)n, &got), 0);
    assert_same_msg(&got, &s[i].m);
    buf_free(&m);
    buf_free(&f);
  }
}

/* ------------------------------------------------------------------------ */
/* Encoders into the caller's buffer */

/* The three block messages, at the edges of their fields. */
static const uint8_t g_block_types[3] = {PWIRE_REQUEST, PWIRE_CANCEL,
                                         PWIRE_REJECT};
static const uint32_t g_block_fields[][3] = {
    {0, 0, 1},
    {7, 0x4000, BLOCK},
    {UINT32_MAX, UINT32_MAX, 1},
    {0x01020304, 0x05060708, 0x1234},
};
#define NBLOCK_FIELDS (sizeof(g_block_fields) / sizeof(g_block_fields[0]))

static void test_block_encode_writes_what_decode_reads(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof(g_block_types); t++) {
    for (size_t i = 0; i < NBLOCK_FIELDS; i++) {
      const uint32_t *f = g_block_fields[i];
      struct pwire_msg want = {.type = g_block_types[t],
                               .chunk = f[0],
                               .offset = f[1],
                               .length = f[2]};
      struct pwire_msg got;
      size_t len;
      uint8_t *copy;
      /* An exact-size heap block: a write past it is caught. */
      uint8_t *out = malloc(PWIRE_BLOCK_MSG_BYTES);
      assert_non_null(out);
      assert_err(pwire_block_encode(out, want.type, f[0], f[1], f[2]), 0);
      /* The same bytes as the general encoder's... */
      uint8_t *general = encode_dup(&want, &len);
      assert_int_equal(len, PWIRE_BLOCK_MSG_BYTES);
      assert_memory_equal(out, general, len);
      /* ...which the decoder takes back to the same message. */
      assert_err(decode_checked(out, PWIRE_BLOCK_MSG_BYTES, &got, &copy), 0);
      assert_same_msg(&got, &want);
      free(copy);
      free(general);
      free(out);
    }
  }
  /* The layout, pinned. */
  uint8_t out[PWIRE_BLOCK_MSG_BYTES];
  const uint8_t want[13] = {9,    0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
                            0x40, 0x00, 0x00, 0x01, 0x00, 0x00};
  assert_err(pwire_block_encode(out, PWIRE_REQUEST, 7, 0x4000, BLOCK), 0);
  assert_memory_equal(out, want, sizeof(want));
}

static void test_block_encode_refuses_what_decode_refuses(void **state) {
  uint8_t out[PWIRE_BLOCK_MSG_BYTES + 1];
  uint8_t untouched[sizeof(out)];
  (void)state;
  memset(untouched, 0xa5, sizeof(untouched));
  for (unsigned type = 0; type < 256; type++) {
    int block =
        type == PWIRE_REQUEST || type == PWIRE_CANCEL || type == PWIRE_REJECT;
    memset(out, 0xa5, sizeof(out));
    assert_err(pwire_block_encode(out, (uint8_t)type, 1, 2, 3),
               block ? 0 : SHOAL_EINVAL);
    if (!block) {
      assert_memory_equal(out, untouched, sizeof(out));
    }
    /* Never a byte past the message. */
    assert_int_equal(out[PWIRE_BLOCK_MSG_BYTES], 0xa5);
  }
  for (size_t t = 0; t < sizeof(g_block_types); t++) {
    const uint32_t bad[2] = {0, BLOCK + 1};
    for (size_t i = 0; i < 2; i++) {
      struct pwire_msg m = {.type = g_block_types[t], .length = bad[i]};
      struct buf b;
      buf_init(&b, 64);
      memset(out, 0xa5, sizeof(out));
      assert_err(pwire_block_encode(out, g_block_types[t], 1, 2, bad[i]),
                 SHOAL_EINVAL);
      assert_memory_equal(out, untouched, sizeof(out));
      /* The general encoder refuses it too. */
      assert_err(pwire_encode(&b, &m), SHOAL_EINVAL);
      buf_free(&b);
    }
  }
}

static void test_data_head_and_block_are_the_data_message(void **state) {
  const size_t lens[] = {1, 2, 100, BLOCK - 1, BLOCK};
  (void)state;
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    size_t n = lens[i];
    size_t len;
    uint8_t *copy;
    struct pwire_msg got;
    /* The block sits where a read put it, after room for the head. */
    uint8_t *msg = malloc(PWIRE_DATA_HEAD_BYTES + n);
    assert_non_null(msg);
    tu_fill(msg + PWIRE_DATA_HEAD_BYTES, n, i + 1);
    struct pwire_msg want = {.type = PWIRE_DATA,
                             .chunk = 0x0a0b0c0d + (uint32_t)i,
                             .offset = 0x01020304,
                             .data = msg + PWIRE_DATA_HEAD_BYTES,
                             .data_len = n};
    assert_err(pwire_data_head_encode(msg, want.chunk, want.offset, n), 0);
    uint8_t *general = encode_dup(&want, &len);
    assert_int_equal(len, PWIRE_DATA_HEAD_BYTES + n);
    assert_memory_equal(msg, general, len);
    assert_err(decode_checked(msg, len, &got, &copy), 0);
    want.data = general + PWIRE_DATA_HEAD_BYTES;
    assert_same_msg(&got, &want);
    free(copy);
    free(general);
    free(msg);
  }
  /* The layout, pinned: the head of test_wire_layout_is_pinned's DATA. */
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  const uint8_t want[9] = {10, 0x0a, 0x0b, 0x0c, 0x0d, 0x01, 0x02, 0x03, 0x04};
  assert_err(pwire_data_head_encode(head, 0x0a0b0c0d, 0x01020304, 2), 0);
  assert_memory_equal(head, want, sizeof(want));
}

static void test_data_head_refuses_an_empty_or_oversize_block(void **state) {
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  uint8_t untouched[sizeof(head)];
  (void)state;
  memset(untouched, 0xa5, sizeof(untouched));
  memset(head, 0xa5, sizeof(head));
  assert_err(pwire_data_head_encode(head, 1, 2, 0), SHOAL_EINVAL);
  assert_memory_equal(head, untouched, sizeof(head));
  assert_err(pwire_data_head_encode(head, 1, 2, BLOCK + 1), SHOAL_EINVAL);
  assert_memory_equal(head, untouched, sizeof(head));
}

/* The upload path: a frame with room for its header, the head, the block
 * and the tag; head written, sealed where it lies, opened on the other
 * side as the same DATA. */
static void test_data_sealed_in_place_opens_as_data(void **state) {
  struct pair *p = *state;
  struct pwire_msg got;
  const size_t n = BLOCK;
  uint8_t *frame = malloc(FRAME_HEADER_BYTES + PWIRE_DATA_HEAD_BYTES + n + TAG);
  assert_non_null(frame);
  uint8_t *msg = frame + FRAME_HEADER_BYTES;
  uint8_t *block = msg + PWIRE_DATA_HEAD_BYTES;
  uint8_t *orig = malloc(n);
  assert_non_null(orig);
  tu_fill(block, n, 9);
  memcpy(orig, block, n);
  assert_err(pwire_data_head_encode(msg, 3, 0x10000, n), 0);
  assert_err(pwire_seal_inplace(&p->a, msg, PWIRE_DATA_HEAD_BYTES + n), 0);
  frame_header(frame, PWIRE_DATA_HEAD_BYTES + n + TAG);
  assert_int_equal(buf_be32(frame), PWIRE_DATA_HEAD_BYTES + n + TAG);
  int plen = pwire_open(&p->b, msg, PWIRE_DATA_HEAD_BYTES + n + TAG, msg,
                        PWIRE_DATA_HEAD_BYTES + n + TAG);
  assert_int_equal(plen, (int)(PWIRE_DATA_HEAD_BYTES + n));
  assert_err(pwire_decode(msg, (size_t)plen, &got), 0);
  assert_int_equal(got.type, PWIRE_DATA);
  assert_int_equal(got.chunk, 3);
  assert_int_equal(got.offset, 0x10000);
  assert_int_equal(got.data_len, n);
  assert_memory_equal(got.data, orig, n);
  free(orig);
  free(frame);
}

/* Counters taken for sealing elsewhere: frames sealed at them, in any
 * order, open on the other side in counter order, and only then; the
 * session's own sealing goes on after the reserved ones. */
static void
test_frames_sealed_at_reserved_counters_open_in_order(void **state) {
  struct pair *p = *state;
  uint64_t first = 99;
  uint8_t f[3][32 + TAG];
  size_t flen;
  assert_err(pwire_seal_reserve(&p->a, 0, &first), SHOAL_ETOOBIG);
  assert_err(pwire_seal_reserve(&p->a, 3, &first), 0);
  assert_int_equal(first, 0);
  assert_int_equal(p->a.tx_count, 3);
  /* Sealed out of order, as pool threads may finish. */
  for (int k = 2; k >= 0; k--) {
    memset(f[k], 'a' + k, 32);
    assert_err(pwire_seal_at(p->a.tx, first + (uint64_t)k, f[k], 32), 0);
  }
  uint8_t *after = seal_dup(&p->a, "after", 5, &flen); /* counter 3 */
  /* Out of order on the wire: refused, the counter unmoved. */
  assert_int_equal(open_into(&p->b, f[1], sizeof(f[1])), SHOAL_EBADSIG);
  assert_int_equal(open_into(&p->b, after, flen), SHOAL_EBADSIG);
  for (int k = 0; k < 3; k++) {
    uint8_t want[32];
    memset(want, 'a' + k, 32);
    open_expect(&p->b, f[k], sizeof(f[k]), want, 32);
  }
  open_expect(&p->b, after, flen, "after", 5);
  free(after);
  /* Under another key, or a counter not reserved: never opens. */
  uint8_t g[8 + TAG];
  memset(g, 1, 8);
  assert_err(pwire_seal_at(p->a.rx, p->a.tx_count, g, 8), 0);
  assert_int_equal(open_into(&p->b, g, sizeof(g)), SHOAL_EBADSIG);
  /* Limits: the last counter is never used, nor more than is left. */
  assert_err(pwire_seal_at(p->a.tx, UINT64_MAX, g, 8), SHOAL_ETOOBIG);
  assert_err(pwire_seal_at(p->a.tx, 0, g, PWIRE_MAX_PLAIN + 1), SHOAL_ETOOBIG);
  p->a.tx_count = UINT64_MAX - 2;
  assert_err(pwire_seal_reserve(&p->a, 3, &first), SHOAL_ETOOBIG);
  assert_int_equal(p->a.tx_count, UINT64_MAX - 2);
  assert_err(pwire_seal_reserve(&p->a, 2, &first), 0);
  assert_int_equal(first, UINT64_MAX - 2);
  assert_err(pwire_seal_reserve(&p->a, 1, &first), SHOAL_ETOOBIG);
}

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0) {
      return 0;
    }
  }
  return 1;
}

/* Seals a DATA message of n bytes (filled from seed) for chunk at offset
 * with s; returns the frame body (message + tag), *orig the block. */
static uint8_t *sealed_data(struct pwire_session *s, uint32_t chunk,
                            uint32_t offset, size_t n, uint8_t seed,
                            uint8_t **orig) {
  uint8_t *msg = malloc(PWIRE_DATA_HEAD_BYTES + n + TAG);
  assert_non_null(msg);
  *orig = malloc(n);
  assert_non_null(*orig);
  tu_fill(*orig, n, seed);
  memcpy(msg + PWIRE_DATA_HEAD_BYTES, *orig, n);
  assert_err(pwire_data_head_encode(msg, chunk, offset, n), 0);
  assert_err(pwire_seal_inplace(s, msg, PWIRE_DATA_HEAD_BYTES + n), 0);
  return msg;
}

/* The receiver's path for a DATA block copied where it belongs and opened
 * later on another thread: the head tells where, the copy is still
 * ciphertext, the counter moves on for the next frame, and the record
 * opens the block in place. */
static void test_data_opened_later_is_the_block(void **state) {
  struct pair *p = *state;
  struct pwire_sealed rec;
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  uint8_t *orig;
  const size_t n = BLOCK;
  const size_t len = PWIRE_DATA_HEAD_BYTES + n + TAG;
  uint8_t *body = sealed_data(&p->a, 7, 3 * BLOCK, n, 21, &orig);
  uint8_t *dest = malloc(n);
  assert_non_null(dest);

  assert_err(pwire_open_head(&p->b, body, len, head, sizeof(head)), 0);
  assert_int_equal(head[0], PWIRE_DATA);
  assert_int_equal(buf_be32(head + 1), 7);
  assert_int_equal(buf_be32(head + 5), 3 * BLOCK);
  assert_int_equal(pwire_open_defer(&p->b, body, len, dest, &rec),
                   (int)(PWIRE_DATA_HEAD_BYTES + n));
  assert_int_equal(p->b.rx_count, 1);
  assert_memory_equal(dest, body + PWIRE_DATA_HEAD_BYTES, n); /* as it came */
  assert_memory_not_equal(dest, orig, n);
  assert_int_equal(rec.len, n);
  assert_int_equal(rec.count, 0);
  assert_memory_equal(rec.key, p->b.rx, PWIRE_KEY_BYTES);

  /* The next frame opens under the next counter. */
  size_t flen;
  uint8_t *next = seal_dup(&p->a, "next", 4, &flen);
  open_expect(&p->b, next, flen, "next", 4);
  free(next);

  /* Filed under another block: genuine, but refused, and zeroed. */
  uint8_t *copy = dup_n(dest, n);
  assert_err(pwire_open_sealed(&rec, 7, 2 * BLOCK, copy), SHOAL_EPROTO);
  assert_true(all_zero(copy, n));
  memcpy(copy, dest, n);
  assert_err(pwire_open_sealed(&rec, 8, 3 * BLOCK, copy), SHOAL_EPROTO);
  free(copy);

  assert_err(pwire_open_sealed(&rec, 7, 3 * BLOCK, dest), 0);
  assert_memory_equal(dest, orig, n);
  free(dest);
  free(orig);
  free(body);
}

/* Every bit of what a deferred open reads, flipped: the head's ciphertext
 * and the tag (in the record), the block, the key and the counter. Each
 * is EBADSIG with the block zeroed. */
static void test_data_opened_later_refuses_every_flipped_bit(void **state) {
  struct pair *p = *state;
  struct pwire_sealed rec, bad;
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  uint8_t *orig;
  const size_t n = 700;
  const size_t len = PWIRE_DATA_HEAD_BYTES + n + TAG;
  uint8_t *body = sealed_data(&p->a, 2, BLOCK, n, 5, &orig);
  uint8_t *ct = malloc(n), *work = malloc(n);
  assert_non_null(ct);
  assert_non_null(work);
  assert_err(pwire_open_head(&p->b, body, len, head, sizeof(head)), 0);
  assert_int_equal(pwire_open_defer(&p->b, body, len, ct, &rec),
                   (int)(PWIRE_DATA_HEAD_BYTES + n));
  unsigned tried = 0;
  for (size_t i = 0; i < n * 8; i++) {
    memcpy(work, ct, n);
    work[i / 8] ^= (uint8_t)(1u << (i % 8));
    assert_err(pwire_open_sealed(&rec, 2, BLOCK, work), SHOAL_EBADSIG);
    assert_true(all_zero(work, n));
    tried++;
  }
  uint8_t *fields[] = {rec.head, rec.tag, rec.key, (uint8_t *)&rec.count};
  size_t sizes[] = {sizeof(rec.head), sizeof(rec.tag), sizeof(rec.key),
                    sizeof(rec.count)};
  for (size_t f = 0; f < 4; f++) {
    for (size_t i = 0; i < sizes[f] * 8; i++) {
      bad = rec;
      uint8_t *field = (uint8_t *)&bad + (fields[f] - (uint8_t *)&rec);
      field[i / 8] ^= (uint8_t)(1u << (i % 8));
      memcpy(work, ct, n);
      assert_err(pwire_open_sealed(&bad, 2, BLOCK, work), SHOAL_EBADSIG);
      assert_true(all_zero(work, n));
      tried++;
    }
  }
  assert_int_equal(tried, (n + PWIRE_DATA_HEAD_BYTES + TAG + PWIRE_KEY_BYTES +
                           sizeof(uint64_t)) *
                              8);
  /* And the record as it is still opens the block as it is. */
  assert_err(pwire_open_sealed(&rec, 2, BLOCK, ct), 0);
  assert_memory_equal(ct, orig, n);
  free(ct);
  free(work);
  free(orig);
  free(body);
}

/* A deferred open of a frame with no block, or with a block over
 * PWIRE_BLOCK_BYTES, does nothing: the counter stays, and the same frame
 * then opens whole. */
static void test_data_opened_later_length_limits(void **state) {
  struct pair *p = *state;
  struct pwire_sealed rec;
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  const size_t big = PWIRE_DATA_HEAD_BYTES + BLOCK + 1;
  uint8_t *dest = malloc(BLOCK + 1);
  uint8_t *msg = calloc(1, big + TAG);
  assert_non_null(dest);
  assert_non_null(msg);

  /* The head alone. */
  assert_err(pwire_data_head_encode(msg, 0, 0, 1), 0);
  assert_err(pwire_seal_inplace(&p->a, msg, PWIRE_DATA_HEAD_BYTES), 0);
  assert_err(pwire_open_head(&p->b, msg, PWIRE_DATA_HEAD_BYTES + TAG, head,
                             sizeof(head)),
             0);
  assert_err(
      pwire_open_defer(&p->b, msg, PWIRE_DATA_HEAD_BYTES + TAG, dest, &rec),
      SHOAL_ETRUNC);
  assert_int_equal(p->b.rx_count, 0);
  assert_int_equal(open_into(&p->b, msg, PWIRE_DATA_HEAD_BYTES + TAG),
                   PWIRE_DATA_HEAD_BYTES);

  /* One byte over a block. */
  assert_err(pwire_data_head_encode(msg, 0, 0, BLOCK), 0);
  assert_err(pwire_seal_inplace(&p->a, msg, big), 0);
  assert_err(pwire_open_head(&p->b, msg, big + TAG, head, sizeof(head)), 0);
  assert_err(pwire_open_defer(&p->b, msg, big + TAG, dest, &rec),
             SHOAL_ETOOBIG);
  assert_int_equal(p->b.rx_count, 1);
  assert_int_equal(open_into(&p->b, msg, big + TAG), (int)big);
  free(msg);
  free(dest);
}

static void test_data_opened_later_refuses_odd_records(void **state) {
  struct pair *p = *state;
  struct pwire_sealed rec;
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  uint8_t *orig;
  const size_t n = 64;
  const size_t len = PWIRE_DATA_HEAD_BYTES + n + TAG;
  uint8_t *body = sealed_data(&p->a, 0, 0, n, 3, &orig);
  uint8_t dest[64];
  assert_err(pwire_open_head(&p->b, body, len, head, sizeof(head)), 0);
  assert_int_equal(pwire_open_defer(&p->b, body, len, dest, &rec),
                   (int)(PWIRE_DATA_HEAD_BYTES + n));
  struct pwire_sealed odd = rec;
  odd.len = 0;
  assert_err(pwire_open_sealed(&odd, 0, 0, dest), SHOAL_EINVAL);
  odd.len = BLOCK + 1;
  assert_err(pwire_open_sealed(&odd, 0, 0, dest), SHOAL_EINVAL);
  odd.len = (uint32_t)n - 1; /* shorter than it was sealed: the tag fails */
  assert_err(pwire_open_sealed(&odd, 0, 0, dest), SHOAL_EBADSIG);
  free(orig);
  free(body);
}

/* Decodes a HAVE payload (len bytes behind the type byte, as an
 * exact-size copy). Returns the decoder's verdict; on success its chunks
 * go into out (room for PWIRE_HAVE_MAX) and *n. */
static int have_decode(const uint8_t *payload, size_t len, uint32_t *out,
                       size_t *n) {
  uint8_t *msg = malloc(1 + len);
  struct pwire_msg m;
  struct pwire_have_iter it;
  uint8_t *copy;
  uint32_t chunk;
  int rc;
  assert_non_null(msg);
  msg[0] = PWIRE_HAVE;
  if (len > 0) {
    memcpy(msg + 1, payload, len);
  }
  rc = decode_checked(msg, 1 + len, &m, &copy);
  *n = 0;
  if (rc == 0) {
    pwire_have_begin(&it, &m);
    while (pwire_have_next(&it, &chunk)) {
      assert_true(*n < PWIRE_HAVE_MAX);
      out[(*n)++] = chunk;
    }
    assert_int_equal(*n, m.length);
  }
  free(copy);
  free(msg);
  return rc;
}

static void test_have_put_writes_what_decode_reads(void **state) {
  uint8_t payload[PWIRE_HAVE_MAX_BYTES];
  uint32_t got[PWIRE_HAVE_MAX];
  size_t n;
  (void)state;
  /* The hand-written sample. */
  assert_int_equal(pwire_have_put(payload, g_have_chunks, HAVE_SAMPLE_CHUNKS),
                   sizeof(g_have));
  assert_memory_equal(payload, g_have, sizeof(g_have));
  assert_err(have_decode(g_have, sizeof(g_have), got, &n), 0);
  assert_int_equal(n, HAVE_SAMPLE_CHUNKS);
  assert_memory_equal(got, g_have_chunks, sizeof(g_have_chunks));
  /* Each varint at the edges of its length: 127 | 128, 16 383 | 16 384,
   * and the largest chunk alone in five bytes. */
  const struct {
    uint32_t chunk;
    size_t len;
  } one[] = {{0, 1},        {127, 1},      {128, 2},
             {16383, 2},    {16384, 3},    {(1u << 21) - 1, 3},
             {1u << 21, 4}, {1u << 28, 5}, {UINT32_MAX, 5}};
  for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
    size_t len = pwire_have_put(payload, &one[i].chunk, 1);
    assert_int_equal(len, one[i].len);
    assert_true((payload[len - 1] & 0x80u) == 0);
    assert_err(have_decode(payload, len, got, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], one[i].chunk);
  }
  /* The most a HAVE carries, random sets of random sizes: put and decode
   * agree, and nothing is written past what put returns. */
  for (unsigned round = 0; round < 200; round++) {
    uint32_t chunks[PWIRE_HAVE_MAX];
    size_t k = 1 + randombytes_uniform(PWIRE_HAVE_MAX);
    uint32_t span = round % 2 ? 2048 : UINT32_MAX;
    for (size_t i = 0; i < k; i++) {
      chunks[i] = randombytes_uniform(span);
    }
    k = pwire_have_sort(chunks, k);
    memset(payload, 0xa5, sizeof(payload));
    size_t len = pwire_have_put(payload, chunks, k);
    assert_true(len >= k && len <= PWIRE_HAVE_VARINT_MAX * k);
    for (size_t i = len; i < sizeof(payload); i++) {
      assert_int_equal(payload[i], 0xa5);
    }
    assert_err(have_decode(payload, len, got, &n), 0);
    assert_int_equal(n, k);
    assert_memory_equal(got, chunks, k * sizeof(*chunks));
  }
  /* PWIRE_HAVE_MAX chunks, every one: the largest count there is. */
  uint32_t all[PWIRE_HAVE_MAX];
  for (uint32_t i = 0; i < PWIRE_HAVE_MAX; i++) {
    all[i] = i;
  }
  assert_int_equal(pwire_have_put(payload, all, PWIRE_HAVE_MAX),
                   PWIRE_HAVE_MAX);
}

static void test_have_put_refuses_what_decode_refuses(void **state) {
  uint8_t payload[PWIRE_HAVE_MAX_BYTES + 8];
  uint32_t chunks[PWIRE_HAVE_MAX + 1];
  (void)state;
  memset(payload, 0xa5, sizeof(payload));
  for (uint32_t i = 0; i <= PWIRE_HAVE_MAX; i++) {
    chunks[i] = 3 * i;
  }
  assert_int_equal(pwire_have_put(payload, chunks, 0), 0);
  assert_int_equal(pwire_have_put(payload, chunks, PWIRE_HAVE_MAX + 1), 0);
  /* Not increasing: a repeat, and a step back. */
  const uint32_t repeat[] = {1, 4, 4};
  const uint32_t back[] = {1, 9, 8};
  assert_int_equal(pwire_have_put(payload, repeat, 3), 0);
  assert_int_equal(pwire_have_put(payload, back, 3), 0);
  for (size_t i = 0; i < sizeof(payload); i++) {
    assert_int_equal(payload[i], 0xa5);
  }
}

static void test_have_sort_sorts_and_drops_repeats(void **state) {
  uint32_t c[] = {9, 3, UINT32_MAX, 3, 0, 9, 9, 7};
  const uint32_t want[] = {0, 3, 7, 9, UINT32_MAX};
  uint32_t one[] = {42};
  (void)state;
  assert_int_equal(pwire_have_sort(c, sizeof(c) / sizeof(c[0])), 5);
  assert_memory_equal(c, want, sizeof(want));
  assert_int_equal(pwire_have_sort(one, 1), 1);
  assert_int_equal(one[0], 42);
  assert_int_equal(pwire_have_sort(one, 0), 0);
}

/* Hostile HAVEs: every way a varint can be wrong has its own error. */
static void test_have_hostile_varints_are_refused(void **state) {
  uint32_t got[PWIRE_HAVE_MAX];
  size_t n;
  (void)state;
  const struct {
    const char *what;
    uint8_t b[12];
    size_t len;
    int err;
  } bad[] = {
      {"cut after a continuation byte", {0x80}, 1, SHOAL_ETRUNC},
      {"cut in the second varint", {0x05, 0xff, 0xff}, 3, SHOAL_ETRUNC},
      {"zero written in two bytes", {0x80, 0x00}, 2, SHOAL_EFORMAT},
      {"one written in two bytes", {0x81, 0x00}, 2, SHOAL_EFORMAT},
      {"three bytes where two do", {0xff, 0x80, 0x00}, 3, SHOAL_EFORMAT},
      {"overlong in the second varint", {0x01, 0x80, 0x00}, 3, SHOAL_EFORMAT},
      {"a sixth byte", {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 6, SHOAL_EFORMAT},
      {"five bytes past 2^32 - 1",
       {0xff, 0xff, 0xff, 0xff, 0x10},
       5,
       SHOAL_EFORMAT},
      {"the largest bits of a fifth byte",
       {0x80, 0x80, 0x80, 0x80, 0x7f},
       5,
       SHOAL_EFORMAT},
      {"a chunk after 2^32 - 1",
       {0xff, 0xff, 0xff, 0xff, 0x0f, 0x00},
       6,
       SHOAL_EFORMAT},
      {"a sum past 2^32 - 1: 2^31, then 2^31 + 1 + 2^31",
       {0x80, 0x80, 0x80, 0x80, 0x08, 0x80, 0x80, 0x80, 0x80, 0x08},
       10,
       SHOAL_EFORMAT},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = have_decode(bad[i].b, bad[i].len, got, &n);
    if (rc != bad[i].err) {
      print_error("%s: %s, want %s\n", bad[i].what, shoal_strerror(rc),
                  shoal_strerror(bad[i].err));
      fail();
    }
    /* And the encoder refuses to send it. */
    struct pwire_msg m = {
        .type = PWIRE_HAVE, .data = bad[i].b, .data_len = bad[i].len};
    struct buf b;
    buf_init(&b, 64);
    assert_err(pwire_encode(&b, &m), SHOAL_EINVAL);
    assert_int_equal(b.len, 0);
    buf_free(&b);
  }
  /* The edges that are fine: 2^32 - 1 last, and reached by a sum. */
  const uint8_t top[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_err(have_decode(top, sizeof(top), got, &n), 0);
  assert_int_equal(got[0], UINT32_MAX);
  /* 2^31, then 2^31 + 1 + (2^31 - 2). */
  const uint8_t sum[] = {0x80, 0x80, 0x80, 0x80, 0x08,
                         0xfe, 0xff, 0xff, 0xff, 0x07};
  assert_err(have_decode(sum, sizeof(sum), got, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(got[0], 1u << 31);
  assert_int_equal(got[1], UINT32_MAX);
}

/* Whatever bytes a HAVE carries, it either is refused or is the one
 * encoding of the chunks it names: a flipped bit of a good HAVE, and
 * random bytes, never decode to chunks that encode otherwise. */
static void test_have_decodes_only_its_one_encoding(void **state) {
  uint8_t payload[PWIRE_HAVE_MAX_BYTES];
  uint8_t again[PWIRE_HAVE_MAX_BYTES];
  uint32_t got[PWIRE_HAVE_MAX];
  size_t n;
  unsigned opened = 0;
  (void)state;
  for (unsigned round = 0; round < 64; round++) {
    uint32_t chunks[64];
    size_t k = 1 + randombytes_uniform(64);
    for (size_t i = 0; i < k; i++) {
      chunks[i] = randombytes_uniform(round % 2 ? 5000 : UINT32_MAX);
    }
    k = pwire_have_sort(chunks, k);
    size_t len = pwire_have_put(payload, chunks, k);
    for (size_t bit = 0; bit < 8 * len; bit++) {
      payload[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      if (have_decode(payload, len, got, &n) == 0) {
        opened++;
        assert_int_equal(pwire_have_put(again, got, n), len);
        assert_memory_equal(again, payload, len);
      }
      payload[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
  }
  for (unsigned round = 0; round < 2000; round++) {
    size_t len = 1 + randombytes_uniform(24);
    randombytes_buf(payload, len);
    if (round % 2) {
      for (size_t i = 0; i < len; i++) {
        payload[i] &= 0x8f; /* more short varints */
      }
    }
    if (have_decode(payload, len, got, &n) == 0) {
      opened++;
      assert_int_equal(pwire_have_put(again, got, n), len);
      assert_memory_equal(again, payload, len);
    }
  }
  /* Many of the flipped HAVEs are still HAVEs; the property was tried. */
  assert_true(opened > 100);
}

static void test_have_map_bits_follow_the_wire_layout(void **state) {
  const uint32_t count = 13; /* two bytes, three unused low bits */
  uint8_t map[2] = {0, 0};
  (void)state;
  assert_false(pwire_have_map_get(map, 0));
  pwire_have_map_set(map, 0);
  assert_int_equal(map[0], 0x80); /* chunk 0: the high bit of byte 0 */
  pwire_have_map_set(map, 9);
  assert_int_equal(map[1], 0x40);
  pwire_have_map_set(map, 12);
  assert_int_equal(map[1], 0x48);
  pwire_have_map_set(map, 12); /* again: no change */
  assert_int_equal(map[1], 0x48);
  for (uint32_t c = 0; c < count; c++) {
    assert_int_equal(pwire_have_map_get(map, c), c == 0 || c == 9 || c == 12);
  }
  /* What the bits make is a map the check accepts... */
  assert_err(pwire_check_have_map(map, sizeof(map), count), 0);
  /* ...and every chunk set makes the full map, unused bits still 0. */
  for (uint32_t c = 0; c < count; c++) {
    pwire_have_map_set(map, c);
  }
  assert_int_equal(map[0], 0xff);
  assert_int_equal(map[1], 0xf8);
  assert_err(pwire_check_have_map(map, sizeof(map), count), 0);
}

/* ------------------------------------------------------------------------ */
/* Checks against a manifest */

/* A folder of two files, 16 KiB chunks: "c/a" is 100 bytes (chunk 0), "c/b"
 * is 20000 bytes (chunks 1 and 2, the last 3616 bytes). */
static struct manifest *build_folder(char *dir, size_t cap, unsigned chunk_log2,
                                     const size_t sizes[2]) {
  struct identity pub;
  struct manifest *m = NULL;
  struct manifest_build_opts o;
  char path[512];
  uint8_t *data = malloc(sizes[0] + sizes[1]);
  assert_non_null(data);
  tu_fill(data, sizes[0] + sizes[1], 5);
  tu_tmpdir(dir, cap);
  tu_write_file(dir, "c/a", data, sizes[0]);
  tu_write_file(dir, "c/b", data + sizes[0], sizes[1]);
  free(data);
  key_from_seed(&pub, 77);
  memset(&o, 0, sizeof(o));
  o.chunk_log2 = chunk_log2;
  tu_path(path, sizeof(path), dir, "c");
  assert_err(manifest_build(path, &pub, &o, &m), 0);
  assert_non_null(m);
  return m;
}

static void test_check_block_against_a_manifest(void **state) {
  char dir[256];
  const size_t sizes[2] = {100, 20000};
  (void)state;
  struct manifest *m = build_folder(dir, sizeof(dir), 14, sizes);
  assert_int_equal(m->chunk_count, 3);
  assert_int_equal(manifest_chunk_len(m, 0), 100);
  assert_int_equal(manifest_chunk_len(m, 1), 16384);
  assert_int_equal(manifest_chunk_len(m, 2), 20000 - 16384);

  /* In range. */
  assert_err(pwire_check_block(m, 0, 0, 100), 0);
  assert_err(pwire_check_block(m, 0, 99, 1), 0);
  assert_err(pwire_check_block(m, 1, 0, 16384), 0);
  assert_err(pwire_check_block(m, 1, 16383, 1), 0);
  assert_err(pwire_check_block(m, 2, 0, 3616), 0);
  assert_err(pwire_check_block(m, 2, 3000, 616), 0);
  /* Past the end of the chunk (a short one, a file's last). */
  assert_err(pwire_check_block(m, 0, 0, 101), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 0, 100, 1), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, 16384, 1), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, 1, 16384), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 2, 0, 3617), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 2, 3616, 1), SHOAL_EINVAL);
  /* Chunk index at and past the count. */
  assert_err(pwire_check_block(m, 3, 0, 1), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, UINT32_MAX, 0, 1), SHOAL_EINVAL);
  /* Zero length, even at a valid place. */
  assert_err(pwire_check_block(m, 0, 0, 0), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, 100, 0), SHOAL_EINVAL);
  /* offset + length would wrap a u32. */
  assert_err(pwire_check_block(m, 1, UINT32_MAX, 1), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, 1, UINT32_MAX), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, UINT32_MAX, UINT32_MAX), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, 0x80000000u, 0x80000000u), SHOAL_EINVAL);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_check_block_limits_a_block_inside_a_large_chunk(void **state) {
  char dir[256];
  const size_t sizes[2] = {1, 3 * BLOCK};
  (void)state;
  /* 256 KiB chunks: a chunk holds more than one block. */
  struct manifest *m = build_folder(dir, sizeof(dir), 18, sizes);
  assert_int_equal(m->chunk_count, 2);
  assert_int_equal(manifest_chunk_len(m, 1), 3 * BLOCK);
  assert_err(pwire_check_block(m, 1, 0, BLOCK), 0);
  assert_err(pwire_check_block(m, 1, 2 * BLOCK, BLOCK), 0);
  assert_err(pwire_check_block(m, 1, 0, BLOCK + 1), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 1, 2 * BLOCK + 1, BLOCK), SHOAL_EINVAL);
  assert_err(pwire_check_block(m, 0, 0, 1), 0);
  assert_err(pwire_check_block(m, 0, 0, 2), SHOAL_EINVAL);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_check_have_map(void **state) {
  uint8_t map[3] = {0};
  (void)state;
  /* Length must be ceil(chunks / 8). */
  assert_err(pwire_check_have_map(map, 0, 0), 0);
  assert_err(pwire_check_have_map(map, 1, 0), SHOAL_EFORMAT);
  assert_err(pwire_check_have_map(map, 0, 1), SHOAL_EFORMAT);
  assert_err(pwire_check_have_map(map, 1, 1), 0);
  assert_err(pwire_check_have_map(map, 1, 8), 0);
  assert_err(pwire_check_have_map(map, 2, 8), SHOAL_EFORMAT);
  assert_err(pwire_check_have_map(map, 1, 9), SHOAL_EFORMAT);
  assert_err(pwire_check_have_map(map, 2, 9), 0);
  assert_err(pwire_check_have_map(map, 3, 9), SHOAL_EFORMAT);

  /* A full byte: every bit is a chunk. */
  map[0] = 0xff;
  assert_err(pwire_check_have_map(map, 1, 8), 0);
  /* Chunk 0 is the high bit: with one chunk only 0x80 may be set. */
  map[0] = 0x80;
  assert_err(pwire_check_have_map(map, 1, 1), 0);
  for (unsigned bit = 0; bit < 7; bit++) {
    map[0] = (uint8_t)(0x80u | (1u << bit));
    assert_err(pwire_check_have_map(map, 1, 1), SHOAL_EFORMAT);
  }
  /* 19 chunks: the last byte's high 3 bits are chunks, the low 5 unused. */
  for (unsigned bit = 0; bit < 8; bit++) {
    map[0] = 0xff;
    map[1] = 0xff;
    map[2] = (uint8_t)(1u << bit);
    assert_err(pwire_check_have_map(map, 3, 19), bit >= 5 ? 0 : SHOAL_EFORMAT);
  }

  /* The largest manifest's map, as it arrives in a HAVE_MAP message. */
  uint8_t *msg = calloc(1, 1 + HAVE_MAP_MAX);
  assert_non_null(msg);
  msg[0] = PWIRE_HAVE_MAP;
  memset(msg + 1, 0xff, HAVE_MAP_MAX);
  struct pwire_msg got;
  assert_err(pwire_decode(msg, 1 + HAVE_MAP_MAX, &got), 0);
  assert_err(pwire_check_have_map(got.data, got.data_len, MANIFEST_MAX_CHUNKS),
             0);
  assert_err(
      pwire_check_have_map(got.data, got.data_len, MANIFEST_MAX_CHUNKS - 1),
      SHOAL_EFORMAT);
  assert_err(
      pwire_check_have_map(got.data, got.data_len, MANIFEST_MAX_CHUNKS - 8),
      SHOAL_EFORMAT);
  /* A chunk count whose map would not fit a u32 of bytes is no problem. */
  assert_err(pwire_check_have_map(got.data, got.data_len, UINT32_MAX),
             SHOAL_EFORMAT);
  free(msg);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
#define HELLO(name)                                                            \
  cmocka_unit_test_setup_teardown(name, hello_setup, hello_teardown)
      HELLO(test_hello_round_trips_every_field),
      HELLO(test_hello_seal_refuses_unknown_flags),
      HELLO(test_hello_seal_into_small_buffer_is_ETOOBIG),
      HELLO(test_hello_every_flipped_bit_is_refused),
      HELLO(test_hello_every_truncation_and_extension_is_refused),
      HELLO(test_hello_signed_by_unexpected_key_is_EWRONGKEY),
      HELLO(test_envelope_of_another_class_is_EDOMAIN),
      HELLO(test_policy_of_another_class_is_EINVAL),
      HELLO(test_hello_of_another_type_is_EPROTO),
      HELLO(test_hello_of_an_older_version_is_EVERSION),
      HELLO(test_hello_payload_of_wrong_length_is_EFORMAT),
      HELLO(test_hello_unknown_flag_bits_are_EFORMAT),
      HELLO(test_replayed_hello_is_EREPLAY),
      HELLO(test_stale_hello_is_ESTALE),
#undef HELLO
#define PAIR(name)                                                             \
  cmocka_unit_test_setup_teardown(name, pair_setup, pair_teardown)
      PAIR(test_session_keys_match_and_messages_flow_both_ways),
      PAIR(test_kx_roles_and_nonce_layout_are_pinned),
      PAIR(test_forged_frame_is_EBADSIG_and_next_genuine_opens),
      PAIR(test_frames_sealed_at_reserved_counters_open_in_order),
      PAIR(test_data_opened_later_is_the_block),
      PAIR(test_data_opened_later_refuses_every_flipped_bit),
      PAIR(test_data_opened_later_length_limits),
      PAIR(test_data_opened_later_refuses_odd_records),
      PAIR(test_replayed_frame_is_EBADSIG),
      PAIR(test_reordered_frame_is_EBADSIG),
      PAIR(test_reflected_frame_is_EBADSIG),
      PAIR(test_different_ephemeral_keys_cannot_open),
      cmocka_unit_test(test_both_sides_initiator_cannot_talk),
      cmocka_unit_test(test_session_init_refuses_bad_keys),
      cmocka_unit_test(test_close_wipes_keys),
      PAIR(test_open_length_limits),
      PAIR(test_empty_and_largest_messages_round_trip),
      PAIR(test_seal_appends_and_opens_in_place),
      PAIR(test_spent_counter_is_refused),
      cmocka_unit_test(test_every_type_round_trips),
      cmocka_unit_test(test_wire_layout_is_pinned),
      cmocka_unit_test(test_every_truncation_is_refused),
      cmocka_unit_test(test_one_trailing_byte_is_refused),
      cmocka_unit_test(test_one_byte_past_a_tail_limit_is_refused),
      cmocka_unit_test(test_lengths_over_maximums_are_ETOOBIG),
      cmocka_unit_test(test_zero_length_fields_are_EFORMAT),
      cmocka_unit_test(test_manifest_part_past_its_total_is_EFORMAT),
      cmocka_unit_test(test_unknown_type_is_EFORMAT),
      cmocka_unit_test(test_encode_refuses_what_decode_refuses),
      PAIR(test_sealed_messages_decode_on_the_other_side),
      cmocka_unit_test(test_block_encode_writes_what_decode_reads),
      cmocka_unit_test(test_block_encode_refuses_what_decode_refuses),
      cmocka_unit_test(test_data_head_and_block_are_the_data_message),
      cmocka_unit_test(test_data_head_refuses_an_empty_or_oversize_block),
      PAIR(test_data_sealed_in_place_opens_as_data),
      cmocka_unit_test(test_have_put_writes_what_decode_reads),
      cmocka_unit_test(test_have_put_refuses_what_decode_refuses),
      cmocka_unit_test(test_have_sort_sorts_and_drops_repeats),
      cmocka_unit_test(test_have_hostile_varints_are_refused),
      cmocka_unit_test(test_have_decodes_only_its_one_encoding),
      cmocka_unit_test(test_have_map_bits_follow_the_wire_layout),
      cmocka_unit_test(test_check_block_against_a_manifest),
      cmocka_unit_test(test_check_block_limits_a_block_inside_a_large_chunk),
      cmocka_unit_test(test_check_have_map),
#undef PAIR
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
