/* Tests for peer exchange: the address certificate (common/tmsg.c), the
 * PEX message's shape (common/pwire.c), and the store, allowance and
 * forwarding of peer/pex.c.
 *
 * The hostile cases come first: a certificate cut at every length, every
 * bit of it flipped, signed by another key, ended, from the future, with a
 * family, address, port or lifetime no tracker signs; a PEX message of no
 * record, a record cut short, one record too many; a session over its
 * allowance; a store pushed past PEX_MAX_KEPT. Records are passed on byte
 * for byte as they came.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/pwire.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "peer/pex.h"
#include "tests/lib/testutil.h"

#define NOW UINT64_C(1767225601234)
#define WINDOW UINT64_C(300000)
#define LIFE 3600u

static const char domain[] = "shoal/1 address certificate";

/* A refused decode leaves its output zeroed. */
static int is_zero(const void *p, size_t n) {
  return sodium_is_zero(p, n) == 1;
}

struct keys {
  struct identity tracker, other, peer;
};

static void keys_make(struct keys *k) {
  tu_identity(&k->tracker, 0x7a);
  tu_identity(&k->other, 0x07);
  tu_identity(&k->peer, 0x9e);
}

static void keys_close(struct keys *k) {
  identity_close(&k->tracker);
  identity_close(&k->other);
  identity_close(&k->peer);
}

static struct tmsg_cert sample(const uint8_t peer[32], uint16_t port,
                               uint64_t issued) {
  struct tmsg_cert c;
  memset(&c, 0, sizeof(c));
  c.family = 4;
  c.addr[0] = 192;
  c.addr[1] = 0;
  c.addr[2] = 2;
  c.addr[3] = 7;
  c.port = port;
  c.lifetime_s = LIFE;
  c.issued_ms = issued;
  memcpy(c.peer, peer, 32);
  return c;
}

static struct tmsg_cert_policy policy(const uint8_t *keys, unsigned n,
                                      uint64_t now) {
  struct tmsg_cert_policy p = {
      .keys = keys, .nkeys = n, .now_ms = now, .window_ms = WINDOW};
  return p;
}

/* Signs the given field values as they are, bypassing tmsg_cert_seal's
 * checks: what a tracker with a bug, or a test, could sign. */
static void sign_raw(const struct identity *id, uint8_t version, uint8_t family,
                     uint16_t port, uint32_t life, uint64_t issued,
                     const uint8_t peer[32], const uint8_t addr[16],
                     uint8_t out[TMSG_CERT_BYTES]) {
  struct buf b;
  buf_init_fixed(&b, out, TMSG_CERT_SIGNED_BYTES);
  buf_add_u8(&b, version);
  buf_add_u8(&b, family);
  buf_add_u16(&b, port);
  buf_add_u32(&b, life);
  buf_add_u64(&b, issued);
  buf_add(&b, id->pk, 32);
  buf_add(&b, peer, 32);
  buf_add(&b, addr, 16);
  assert_int_equal(b.len, TMSG_CERT_SIGNED_BYTES);
  assert_int_equal(identity_sign2(id, domain, sizeof(domain), out,
                                  TMSG_CERT_SIGNED_BYTES,
                                  out + TMSG_CERT_SIGNED_BYTES),
                   0);
}

/* ------------------------------------------------------------------------ */
/* The certificate */

static void cert_round_trips_and_pins_its_layout(void **state) {
  struct keys k;
  struct tmsg_cert c, back;
  uint8_t raw[TMSG_CERT_BYTES], want[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  c = sample(k.peer.pk, 7071, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  /* The same bytes as the layout of docs/protocol.md. */
  sign_raw(&k.tracker, 1, 4, 7071, LIFE, NOW, k.peer.pk, c.addr, want);
  assert_memory_equal(raw, want, sizeof(raw));
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), 0);
  memcpy(c.tracker, k.tracker.pk, 32);
  assert_memory_equal(&back, &c, sizeof(c));
  /* IPv6 too. */
  c.family = 6;
  memset(c.addr, 0, sizeof(c.addr));
  c.addr[0] = 0x20;
  c.addr[1] = 0x01;
  c.addr[15] = 1;
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), 0);
  assert_memory_equal(&back, &c, sizeof(c));
  keys_close(&k);
}

static void cert_cut_at_every_length_is_refused(void **state) {
  struct keys k;
  struct tmsg_cert c, back;
  uint8_t raw[TMSG_CERT_BYTES + 1];
  (void)state;
  keys_make(&k);
  c = sample(k.peer.pk, 7071, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  raw[TMSG_CERT_BYTES] = 0;
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  for (size_t n = 0; n < TMSG_CERT_BYTES; n++) {
    memset(&back, 0xa5, sizeof(back));
    assert_int_equal(tmsg_cert_open(raw, n, &pol, &back), SHOAL_ETRUNC);
    assert_true(is_zero(&back, sizeof(back)));
  }
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EFORMAT);
  keys_close(&k);
}

static void every_flipped_bit_is_refused(void **state) {
  struct keys k;
  struct tmsg_cert c, back;
  uint8_t raw[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  c = sample(k.peer.pk, 7071, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  for (size_t i = 0; i < TMSG_CERT_BYTES; i++) {
    for (unsigned bit = 0; bit < 8; bit++) {
      raw[i] ^= (uint8_t)(1u << bit);
      int want = i == 0              ? SHOAL_EVERSION
                 : i >= 16 && i < 48 ? SHOAL_EWRONGKEY
                                     : SHOAL_EBADSIG;
      int got = tmsg_cert_open(raw, sizeof(raw), &pol, &back);
      if (got != want) {
        fail_msg("byte %zu bit %u: %s, expected %s", i, bit,
                 shoal_err_name(got), shoal_err_name(want));
      }
      assert_true(is_zero(&back, sizeof(back)));
      raw[i] ^= (uint8_t)(1u << bit);
    }
  }
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), 0);
  keys_close(&k);
}

static void cert_of_another_key_is_refused(void **state) {
  struct keys k;
  struct tmsg_cert c, back;
  uint8_t raw[TMSG_CERT_BYTES];
  uint8_t two[64];
  (void)state;
  keys_make(&k);
  c = sample(k.peer.pk, 7071, NOW);
  assert_int_equal(tmsg_cert_seal(&k.other, &c, raw), 0);
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EWRONGKEY);
  pol.nkeys = 0;
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EWRONGKEY);
  /* Any of the trusted keys will do. */
  memcpy(two, k.tracker.pk, 32);
  memcpy(two + 32, k.other.pk, 32);
  pol = policy(two, 2, NOW);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), 0);
  /* A signer field changed to the trusted key: the signature fails. */
  memcpy(raw + 16, k.tracker.pk, 32);
  pol = policy(k.tracker.pk, 1, NOW);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EBADSIG);
  keys_close(&k);
}

static void cert_age_is_checked(void **state) {
  struct keys k;
  struct tmsg_cert c, back;
  uint8_t raw[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  c = sample(k.peer.pk, 7071, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  uint64_t end = NOW + (uint64_t)LIFE * 1000u;
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, end);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), 0);
  pol.now_ms = end + 1;
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), SHOAL_ESTALE);
  pol.now_ms = NOW - WINDOW;
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), 0);
  pol.now_ms = NOW - WINDOW - 1;
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EFUTURE);
  /* An issue time near 2^64 wraps nothing. */
  c.issued_ms = UINT64_MAX - 10;
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  pol.now_ms = NOW;
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EFUTURE);
  c.issued_ms = 0;
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back), SHOAL_ESTALE);
  keys_close(&k);
}

static void cert_fields_no_peer_can_hold_are_refused(void **state) {
  struct keys k;
  struct tmsg_cert back;
  uint8_t raw[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  static const struct {
    const char *what;
    uint8_t family;
    uint8_t addr[16];
    uint16_t port;
    uint32_t life;
  } bad[] = {
      {"family 0", 0, {192, 0, 2, 7}, 1, LIFE},
      {"family 5", 5, {192, 0, 2, 7}, 1, LIFE},
      {"family 255", 255, {192, 0, 2, 7}, 1, LIFE},
      {"IPv4 with bytes after it", 4, {192, 0, 2, 7, 0, 0, 0, 1}, 1, LIFE},
      {"IPv4 0.0.0.0", 4, {0}, 1, LIFE},
      {"IPv4 multicast", 4, {224, 0, 0, 1}, 1, LIFE},
      {"IPv4 broadcast", 4, {255, 255, 255, 255}, 1, LIFE},
      {"IPv6 ::", 6, {0}, 1, LIFE},
      {"IPv6 multicast", 6, {0xff, 0x02, [15] = 1}, 1, LIFE},
      {"IPv4-mapped IPv6",
       6,
       {[10] = 0xff, [11] = 0xff, 192, 0, 2, 7},
       1,
       LIFE},
      {"port 0", 4, {192, 0, 2, 7}, 0, LIFE},
      {"lifetime too short",
       4,
       {192, 0, 2, 7},
       1,
       TMSG_CERT_LIFETIME_MIN_S - 1},
      {"lifetime too long", 4, {192, 0, 2, 7}, 1, TMSG_CERT_LIFETIME_MAX_S + 1},
  };
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct tmsg_cert c = sample(k.peer.pk, bad[i].port, NOW);
    c.family = bad[i].family;
    memcpy(c.addr, bad[i].addr, 16);
    c.lifetime_s = bad[i].life;
    if (tmsg_cert_seal(&k.tracker, &c, raw) != SHOAL_EINVAL) {
      fail_msg("%s: sealed", bad[i].what);
    }
    assert_true(is_zero(raw, sizeof(raw)));
    sign_raw(&k.tracker, 1, bad[i].family, bad[i].port, bad[i].life, NOW,
             k.peer.pk, bad[i].addr, raw);
    if (tmsg_cert_open(raw, sizeof(raw), &pol, &back) != SHOAL_EFORMAT) {
      fail_msg("%s: opened", bad[i].what);
    }
  }
  /* Another version is refused before its signature is looked at. */
  sign_raw(&k.tracker, 2, 4, 1, LIFE, NOW, k.peer.pk,
           (const uint8_t[16]){192, 0, 2, 7}, raw);
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &back),
                   SHOAL_EVERSION);
  keys_close(&k);
}

/* The announce reply's optional certificate. */
static void announce_ok_carries_a_certificate(void **state) {
  struct tmsg_announce_ok ok, back;
  struct buf b;
  (void)state;
  memset(&ok, 0, sizeof(ok));
  ok.seq = 9;
  ok.interval_s = 1800;
  ok.has_cert = 1;
  tu_fill(ok.cert, sizeof(ok.cert), 3);
  buf_init(&b, 4096);
  assert_int_equal(tmsg_announce_ok_encode(&b, &ok), 0);
  assert_int_equal(b.len, 18 + TMSG_CERT_BYTES);
  assert_int_equal(tmsg_announce_ok_decode(b.data, b.len, &back), 0);
  assert_memory_equal(&back, &ok, sizeof(ok));
  /* Anything between 18 bytes and a whole certificate, or past it. */
  for (size_t n = 19; n < b.len; n++) {
    assert_int_equal(tmsg_announce_ok_decode(b.data, n, &back), SHOAL_EFORMAT);
    assert_true(is_zero(&back, sizeof(back)));
  }
  buf_add_u8(&b, 0);
  assert_int_equal(tmsg_announce_ok_decode(b.data, b.len, &back),
                   SHOAL_EFORMAT);
  buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* The PEX message */

static void pex_message_shape_is_checked(void **state) {
  static uint8_t msg[1 + (PWIRE_PEX_MAX_RECORDS + 1) * TMSG_CERT_BYTES];
  struct pwire_msg m;
  struct buf b;
  (void)state;
  msg[0] = PWIRE_PEX;
  tu_fill(msg + 1, sizeof(msg) - 1, 5);
  assert_int_equal(pwire_decode(msg, 1, &m), SHOAL_ETRUNC);
  for (size_t n = 2; n < sizeof(msg); n++) {
    size_t body = n - 1;
    int want = body > PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES ? SHOAL_ETOOBIG
               : body % TMSG_CERT_BYTES != 0                  ? SHOAL_EFORMAT
                                                              : 0;
    int got = pwire_decode(msg, n, &m);
    if (got != want) {
      fail_msg("%zu bytes: %s, expected %s", n, shoal_err_name(got),
               shoal_err_name(want));
    }
    if (got == 0) {
      assert_int_equal(pwire_pex_count(&m), body / TMSG_CERT_BYTES);
      assert_ptr_equal(pwire_pex_record(&m, 0), msg + 1);
    } else {
      assert_true(is_zero(&m, sizeof(m)));
    }
  }
  /* The encoder refuses what the decoder would. */
  buf_init(&b, PWIRE_MAX_PLAIN);
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_PEX;
  m.data = msg + 1;
  size_t lens[] = {0, 1, TMSG_CERT_BYTES - 1, TMSG_CERT_BYTES + 1,
                   (PWIRE_PEX_MAX_RECORDS + 1) * TMSG_CERT_BYTES};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    m.data_len = lens[i];
    assert_int_equal(pwire_encode(&b, &m), SHOAL_EINVAL);
    assert_int_equal(b.len, 0);
  }
  m.data_len = PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES;
  assert_int_equal(pwire_encode(&b, &m), 0);
  assert_int_equal(b.len, 1 + m.data_len);
  assert_memory_equal(b.data, msg, b.len);
  buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* The store, the allowance and forwarding */

/* n records of distinct peers (keys from seed), issued at NOW + i. */
static void make_records(const struct identity *tracker, unsigned n,
                         uint64_t seed, uint8_t *raw) {
  for (unsigned i = 0; i < n; i++) {
    uint8_t pk[32];
    tu_fill(pk, sizeof(pk), seed + i);
    struct tmsg_cert c = sample(pk, (uint16_t)(1000 + i), NOW + i);
    assert_int_equal(tmsg_cert_seal(tracker, &c, raw + i * TMSG_CERT_BYTES), 0);
  }
}

static struct pwire_msg pex_msg(const uint8_t *raw, unsigned n) {
  struct pwire_msg m;
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_PEX;
  m.data = raw;
  m.data_len = (size_t)n * TMSG_CERT_BYTES;
  return m;
}

static void accept_keeps_good_records_and_skips_the_rest(void **state) {
  struct keys k;
  struct pex_store st;
  struct pex_result res;
  uint8_t raw[4 * TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  pex_store_init(&st);
  make_records(&k.tracker, 2, 100, raw);
  /* A record of another tracker, and one of ourselves. */
  struct tmsg_cert c = sample(k.other.pk, 7, NOW);
  assert_int_equal(tmsg_cert_seal(&k.other, &c, raw + 2 * TMSG_CERT_BYTES), 0);
  c = sample(k.peer.pk, 7, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw + 3 * TMSG_CERT_BYTES),
                   0);
  struct pwire_msg m = pex_msg(raw, 4);
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), 0);
  assert_int_equal(res.kept, 2);
  assert_int_equal(res.refused, 1);
  assert_int_equal(res.first_error, SHOAL_EWRONGKEY);
  assert_int_equal(res.old, 1);
  assert_int_equal(st.n, 2);
  /* Again: nothing new. */
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), 0);
  assert_int_equal(res.kept, 0);
  assert_int_equal(st.n, 2);
  /* An altered record closes the session; what came before it stays. */
  make_records(&k.tracker, 2, 200, raw);
  raw[TMSG_CERT_BYTES + 2] ^= 1; /* the second one's port */
  m = pex_msg(raw, 2);
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), SHOAL_EBADSIG);
  assert_int_equal(res.kept, 1);
  assert_int_equal(st.n, 3);
  pex_store_close(&st);
  keys_close(&k);
}

static void store_keeps_the_newest_record_of_each_peer(void **state) {
  struct keys k;
  struct pex_store st;
  uint8_t raw[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  pex_store_init(&st);
  struct tmsg_cert c = sample(k.peer.pk, 1000, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  assert_int_equal(pex_store_add(&st, raw, &c), 1);
  assert_int_equal(pex_store_add(&st, raw, &c), 0);
  struct tmsg_cert older = c;
  older.issued_ms--;
  older.port = 2000;
  assert_int_equal(pex_store_add(&st, raw, &older), 0);
  assert_int_equal(pex_store_find(&st, k.peer.pk)->c.port, 1000);
  struct tmsg_cert newer = c;
  newer.issued_ms++;
  newer.port = 3000;
  assert_int_equal(pex_store_add(&st, raw, &newer), 1);
  assert_int_equal(st.n, 1);
  assert_int_equal(pex_store_find(&st, k.peer.pk)->c.port, 3000);
  /* Expiry. */
  assert_int_equal(pex_store_expire(&st, newer.issued_ms + LIFE * 1000u), 0);
  assert_int_equal(pex_store_expire(&st, newer.issued_ms + LIFE * 1000u + 1),
                   1);
  assert_int_equal(st.n, 0);
  pex_store_close(&st);
  keys_close(&k);
}

/* Keys, an empty store, a session not yet sent anything, and the key of
 * the peer at its other end. */
static void collect_start(struct keys *k, struct pex_store *st,
                          struct pex_session *ps, uint8_t receiver[32]) {
  keys_make(k);
  pex_store_init(st);
  memset(ps, 0, sizeof(*ps));
  tu_fill(receiver, 32, 9);
}

/* A peer renews its certificate at every announce (every few seconds
 * when the tracker's interval is short), so a renewal at the same address
 * is no news: it replaces the bytes held but is not passed on again
 * until half the lifetime of what was passed on has gone. A move is news
 * at once. */
static void renewal_at_the_same_address_is_not_news(void **state) {
  struct keys k;
  struct pex_store st;
  struct pex_session ps;
  uint8_t raw[TMSG_CERT_BYTES], out[PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES];
  uint8_t receiver[32];
  (void)state;
  collect_start(&k, &st, &ps, receiver);
  struct tmsg_cert c = sample(k.peer.pk, 1000, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  assert_int_equal(pex_store_add(&st, raw, &c), 1);
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 1);
  /* Renewed 7 s later, same address: held, not news, not sent again. */
  struct tmsg_cert renewed = c;
  renewed.issued_ms += 7000;
  assert_int_equal(tmsg_cert_seal(&k.tracker, &renewed, raw), 0);
  assert_int_equal(pex_store_add(&st, raw, &renewed), 0);
  assert_int_equal(pex_store_find(&st, k.peer.pk)->c.issued_ms,
                   renewed.issued_ms);
  assert_memory_equal(pex_store_find(&st, k.peer.pk)->raw, raw, sizeof(raw));
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 0);
  /* Half a lifetime after the record passed on: news again. */
  struct tmsg_cert later = c;
  later.issued_ms += (uint64_t)LIFE * 1000u / 2;
  assert_int_equal(tmsg_cert_seal(&k.tracker, &later, raw), 0);
  assert_int_equal(pex_store_add(&st, raw, &later), 1);
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 1);
  assert_memory_equal(out, raw, sizeof(raw));
  /* Moved to another port: news at once. */
  struct tmsg_cert moved = later;
  moved.issued_ms += 1000;
  moved.port = 1001;
  assert_int_equal(tmsg_cert_seal(&k.tracker, &moved, raw), 0);
  assert_int_equal(pex_store_add(&st, raw, &moved), 1);
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 1);
  assert_int_equal(pex_store_find(&st, k.peer.pk)->c.port, 1001);
  pex_store_close(&st);
  keys_close(&k);
}

/* Checks a record of k's tracker and keeps it, as news. */
static void keep_checked(struct pex_store *st, const struct keys *k,
                         const uint8_t raw[TMSG_CERT_BYTES]) {
  struct tmsg_cert c;
  struct tmsg_cert_policy pol = policy(k->tracker.pk, 1, NOW + 300);
  assert_int_equal(tmsg_cert_open(raw, TMSG_CERT_BYTES, &pol, &c), 0);
  assert_int_equal(pex_store_add(st, raw, &c), 1);
}

/* A session's first PEX passes on every record held; the later ones only
 * peers that turned up (or moved) after it opened: those the other side
 * could have missed, where a peer already in the swarm when the session
 * opened was as plain to it, from the tracker and its other sessions'
 * first PEXes. */
static void later_messages_pass_on_only_newer_news(void **state) {
  struct keys k;
  struct pex_store st;
  struct pex_session ps;
  uint8_t raw[3 * TMSG_CERT_BYTES];
  uint8_t out[PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES];
  uint8_t receiver[32];
  (void)state;
  collect_start(&k, &st, &ps, receiver);
  ps.opened_wall_ms = NOW + 100; /* the session opened then */
  /* Records 0 and 1 issued before it opened, 2 after. */
  for (unsigned i = 0; i < 3; i++) {
    uint8_t pk[32];
    tu_fill(pk, sizeof(pk), 500 + i);
    struct tmsg_cert c = sample(pk, 1000, i < 2 ? NOW + i : NOW + 200);
    assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw + i * TMSG_CERT_BYTES),
                     0);
  }
  /* The first message: what is held then, older or not. */
  keep_checked(&st, &k, raw);
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 1);
  ps.sent_any = 1; /* as maybe_send marks it */
  /* Later: record 1 came in after the first message but was issued before
   * the session opened; record 2 is a newcomer. */
  keep_checked(&st, &k, raw + TMSG_CERT_BYTES);
  keep_checked(&st, &k, raw + 2 * TMSG_CERT_BYTES);
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 1);
  assert_memory_equal(out, raw + 2 * TMSG_CERT_BYTES, TMSG_CERT_BYTES);
  assert_int_equal(
      pex_collect(&st, &ps, NULL, 0, receiver, out, PWIRE_PEX_MAX_RECORDS), 0);
  pex_store_close(&st);
  keys_close(&k);
}

/* A record that cannot be news (its peer's record held was issued as late
 * or later) is not verified: in a swarm of 64 every peer forwards the same
 * few dozen records to every session, and checking each copy took the
 * CPUs. One that could be news is checked, and a forgery is still a
 * violation. */
static void accept_checks_only_what_could_be_news(void **state) {
  struct keys k;
  struct pex_store st;
  struct pex_result res;
  uint8_t raw[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  pex_store_init(&st);
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW + 10);
  struct tmsg_cert c = sample(k.other.pk, 1000, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &c, raw), 0);
  struct pwire_msg m = pex_msg(raw, 1);
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), 0);
  assert_int_equal(res.kept, 1);
  /* The same record with its signature broken: held already, skipped. */
  raw[TMSG_CERT_BYTES - 1] ^= 1;
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), 0);
  assert_int_equal(res.old, 1);
  assert_int_equal(res.refused, 0);
  /* Claiming a later issue: checked, and the forgery is a violation. */
  buf_put_be64(raw + 8, NOW + 5);
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), SHOAL_EBADSIG);
  assert_int_equal(pex_store_find(&st, k.other.pk)->c.issued_ms, NOW);
  /* Records of ourselves are never checked either. */
  struct tmsg_cert self = sample(k.peer.pk, 1000, NOW);
  assert_int_equal(tmsg_cert_seal(&k.tracker, &self, raw), 0);
  raw[TMSG_CERT_BYTES - 1] ^= 1;
  assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), 0);
  assert_int_equal(res.old, 1);
  pex_store_close(&st);
  keys_close(&k);
}

static void
store_holds_at_most_PEX_MAX_KEPT_replacing_the_oldest(void **state) {
  struct keys k;
  struct pex_store st;
  uint8_t raw[TMSG_CERT_BYTES];
  (void)state;
  keys_make(&k);
  pex_store_init(&st);
  for (unsigned i = 0; i < PEX_MAX_KEPT + 50; i++) {
    uint8_t pk[32];
    tu_fill(pk, sizeof(pk), 1000 + i);
    struct tmsg_cert c = sample(pk, 1, NOW + 10 * i);
    memset(raw, (int)i, sizeof(raw));
    assert_int_equal(pex_store_add(&st, raw, &c), 1);
    assert_true(st.n <= PEX_MAX_KEPT);
  }
  assert_int_equal(st.n, PEX_MAX_KEPT);
  /* The first 50 (issued first) gave way. */
  for (unsigned i = 0; i < PEX_MAX_KEPT + 50; i++) {
    uint8_t pk[32];
    tu_fill(pk, sizeof(pk), 1000 + i);
    assert_int_equal(pex_store_find(&st, pk) != NULL, i >= 50);
  }
  /* One issued before everything held does not get in. */
  uint8_t pk[32];
  tu_fill(pk, sizeof(pk), 1);
  struct tmsg_cert c = sample(pk, 1, NOW);
  assert_int_equal(pex_store_add(&st, raw, &c), 0);
  pex_store_close(&st);
  keys_close(&k);
}

static void allowance_is_a_burst_then_one_per_interval(void **state) {
  struct pex_session ps;
  (void)state;
  memset(&ps, 0, sizeof(ps));
  for (unsigned i = 0; i < PEX_BURST; i++) {
    assert_int_equal(pex_take_credit(&ps, 1000), 0);
  }
  assert_int_equal(pex_take_credit(&ps, 1000), SHOAL_ERATE);
  assert_int_equal(pex_take_credit(&ps, 1000 + PEX_SEND_MS - 1), SHOAL_ERATE);
  assert_int_equal(pex_take_credit(&ps, 1000 + PEX_SEND_MS), 0);
  assert_int_equal(pex_take_credit(&ps, 1000 + PEX_SEND_MS), SHOAL_ERATE);
  /* A long silence refills to the burst, no more. */
  uint64_t later = 1000 + 100 * PEX_SEND_MS;
  for (unsigned i = 0; i < PEX_BURST; i++) {
    assert_int_equal(pex_take_credit(&ps, later), 0);
  }
  assert_int_equal(pex_take_credit(&ps, later), SHOAL_ERATE);
  /* The sender's pace (one at the start, then one per PEX_SEND_MS) is
   * always within it. */
  memset(&ps, 0, sizeof(ps));
  for (unsigned i = 0; i < 100; i++) {
    assert_int_equal(pex_take_credit(&ps, 5000 + (uint64_t)i * PEX_SEND_MS), 0);
  }
  assert_true(PEX_SEND_MS * PEX_MAX_MESSAGES_PER_MIN == 60000u);
}

static void
records_are_forwarded_unaltered_and_never_to_their_peer(void **state) {
  struct keys k;
  struct pex_store st;
  struct pex_session ps;
  struct pex_result res;
  static uint8_t raw[(PWIRE_PEX_MAX_RECORDS + 8) * TMSG_CERT_BYTES];
  static uint8_t out[PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES];
  uint8_t own[TMSG_CERT_BYTES];
  unsigned total = PWIRE_PEX_MAX_RECORDS + 8;
  (void)state;
  keys_make(&k);
  pex_store_init(&st);
  make_records(&k.tracker, total, 300, raw);
  for (unsigned i = 0; i < total; i += PWIRE_PEX_MAX_RECORDS) {
    unsigned n =
        total - i < PWIRE_PEX_MAX_RECORDS ? total - i : PWIRE_PEX_MAX_RECORDS;
    struct pwire_msg m = pex_msg(raw + (size_t)i * TMSG_CERT_BYTES, n);
    struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
    assert_int_equal(pex_accept(&st, &m, &pol, k.peer.pk, &res), 0);
    assert_int_equal(res.kept, n);
  }
  /* The receiver is the peer of record 3: it is never sent its own. */
  uint8_t receiver[32];
  tu_fill(receiver, sizeof(receiver), 300 + 3);
  memset(own, 0x0c, sizeof(own));
  memset(&ps, 0, sizeof(ps));
  unsigned n =
      pex_collect(&st, &ps, own, 77, receiver, out, PWIRE_PEX_MAX_RECORDS);
  assert_int_equal(n, PWIRE_PEX_MAX_RECORDS);
  /* Ours first, then the records in the order they came, byte for byte. */
  assert_memory_equal(out, own, TMSG_CERT_BYTES);
  unsigned next = 0;
  for (unsigned i = 1; i < n; i++, next++) {
    if (next == 3) {
      next++;
    }
    assert_memory_equal(out + (size_t)i * TMSG_CERT_BYTES,
                        raw + (size_t)next * TMSG_CERT_BYTES, TMSG_CERT_BYTES);
  }
  /* The rest next time; ours is not sent twice. */
  unsigned m2 =
      pex_collect(&st, &ps, own, 77, receiver, out, PWIRE_PEX_MAX_RECORDS);
  assert_int_equal(m2, total - 1 - (n - 1));
  for (unsigned i = 0; i < m2; i++, next++) {
    assert_memory_equal(out + (size_t)i * TMSG_CERT_BYTES,
                        raw + (size_t)next * TMSG_CERT_BYTES, TMSG_CERT_BYTES);
  }
  assert_int_equal(
      pex_collect(&st, &ps, own, 77, receiver, out, PWIRE_PEX_MAX_RECORDS), 0);
  /* A renewed certificate of ours goes out again. */
  assert_int_equal(
      pex_collect(&st, &ps, own, 78, receiver, out, PWIRE_PEX_MAX_RECORDS), 1);
  /* What was forwarded opens at the next peer as it did here. */
  struct pwire_msg fw = pex_msg(raw, 1);
  struct pex_store st2;
  pex_store_init(&st2);
  struct tmsg_cert_policy pol = policy(k.tracker.pk, 1, NOW);
  assert_int_equal(pex_accept(&st2, &fw, &pol, k.other.pk, &res), 0);
  assert_int_equal(res.kept, 1);
  pex_store_close(&st2);
  pex_store_close(&st);
  keys_close(&k);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(cert_round_trips_and_pins_its_layout),
      cmocka_unit_test(cert_cut_at_every_length_is_refused),
      cmocka_unit_test(every_flipped_bit_is_refused),
      cmocka_unit_test(cert_of_another_key_is_refused),
      cmocka_unit_test(cert_age_is_checked),
      cmocka_unit_test(cert_fields_no_peer_can_hold_are_refused),
      cmocka_unit_test(announce_ok_carries_a_certificate),
      cmocka_unit_test(pex_message_shape_is_checked),
      cmocka_unit_test(accept_keeps_good_records_and_skips_the_rest),
      cmocka_unit_test(store_keeps_the_newest_record_of_each_peer),
      cmocka_unit_test(renewal_at_the_same_address_is_not_news),
      cmocka_unit_test(later_messages_pass_on_only_newer_news),
      cmocka_unit_test(accept_checks_only_what_could_be_news),
      cmocka_unit_test(store_holds_at_most_PEX_MAX_KEPT_replacing_the_oldest),
      cmocka_unit_test(allowance_is_a_burst_then_one_per_interval),
      cmocka_unit_test(records_are_forwarded_unaltered_and_never_to_their_peer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
