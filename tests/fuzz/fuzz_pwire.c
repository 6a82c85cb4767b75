/* libFuzzer target for common/pwire: the peer wire protocol.
 *
 * Every input goes through four passes:
 *  1. pwire_decode on the raw bytes. A refusal must be a documented error
 *     with a zeroed output; an accepted message must respect its type's
 *     limits, borrow its bytes from the input, and re-encode to exactly the
 *     input (one encoding per message). An accepted have-map is also put
 *     through pwire_check_have_map; an accepted HAVE's chunks increase and
 *     pwire_have_put writes them back as its bytes.
 *  2. pwire_hello_open on the raw bytes under three policies (no checks,
 *     expected fixed key with a clock window, replay guard). The seed
 *     corpus holds hellos really sealed by the fixed key, so mutations of
 *     those reach past the signature.
 *  3. The input taken as envelope header + payload: the sender key becomes
 *     the fixed key's, the bytes are signed under the hello domain as
 *     envelope_seal does, and the result is opened; the outcome is
 *     predicted from the bytes. Done as is, then with the version, class,
 *     flags and payload length made right, then with the type made
 *     PWIRE_HELLO as well, so that the payload decoder is reached.
 *  4. pwire_open of the input as a frame body under a fixed session (keys
 *     from fixed seeds, counters at 0): success must advance the counter by
 *     one and give len - TAG bytes, which are decoded as in pass 1; failure
 *     must not move it. Then the input is sealed as plaintext and must open
 *     on the other side once, and never when flipped, replayed or reflected.
 *     The input as a frame body is also opened in two steps with its block
 *     left for later (pwire_open_defer, pwire_open_sealed), which must
 *     agree with pwire_open.
 *
 * Seeds: tests/fuzz/corpus/pwire/, one message of every type, sealed and
 * unsigned hellos, and frames sealed under the fixed session.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/buf.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/pwire.h"
#include "common/replay.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS 1700000000000ull
#define WINDOW_MS ENVELOPE_WINDOW_MS_DEFAULT
#define HAVE_MAP_MAX ((MANIFEST_MAX_CHUNKS + 7u) / 8u)

static struct identity fixed;  /* seed 0x5a x 32, as the seed generator */
static struct pwire_eph eph_a; /* kx seed 0x11 x 32: the initiator */
static struct pwire_eph eph_b; /* kx seed 0x22 x 32 */

static void fail(const char *what, int rc) {
  fprintf(stderr, "fuzz_pwire: %s (rc %d)\n", what, rc);
  abort();
}

/* ------------------------------------------------------------------------ */
/* Pass 1: the message codec */

/* Every record of an accepted PEX goes through tmsg_cert_open under the
 * fixed key, as a receiver does: a documented error with a zeroed output,
 * or fields a tracker would sign. */
static void check_pex_records(const struct pwire_msg *m) {
  struct tmsg_cert_policy pol = {.keys = fixed.pk,
                                 .nkeys = 1,
                                 .now_ms = UINT64_C(1767225601234),
                                 .window_ms = ENVELOPE_WINDOW_MS_DEFAULT};
  for (size_t i = 0; i < pwire_pex_count(m); i++) {
    struct tmsg_cert c;
    int rc = tmsg_cert_open(pwire_pex_record(m, i), TMSG_CERT_BYTES, &pol, &c);
    if (rc == 0) {
      if ((c.family != 4 && c.family != 6) || c.port == 0 ||
          c.lifetime_s < TMSG_CERT_LIFETIME_MIN_S ||
          c.lifetime_s > TMSG_CERT_LIFETIME_MAX_S) {
        fail("certificate with impossible fields opened", rc);
      }
    } else if (rc != SHOAL_EVERSION && rc != SHOAL_EWRONGKEY &&
               rc != SHOAL_EBADSIG && rc != SHOAL_EFORMAT &&
               rc != SHOAL_ESTALE && rc != SHOAL_EFUTURE) {
      fail("undocumented certificate error", rc);
    } else if (!bytes_all_zero(&c, sizeof(c))) {
      fail("certificate output not zeroed on failure", rc);
    }
  }
}

static void check_have_map(const struct pwire_msg *m) {
  uint64_t bits = (uint64_t)m->data_len * 8;
  uint8_t last = m->data[m->data_len - 1];
  if (bits > UINT32_MAX) {
    return;
  }
  /* Every chunk count with this many bytes: valid exactly when the unused
   * low bits of the last byte are zero. */
  for (unsigned unused = 0; unused < 8; unused++) {
    int want = (last & ((1u << unused) - 1u)) == 0 ? 0 : SHOAL_EFORMAT;
    int rc =
        pwire_check_have_map(m->data, m->data_len, (uint32_t)(bits - unused));
    if (rc != want) {
      fail("have-map check disagrees with its unused bits", rc);
    }
  }
  if (pwire_check_have_map(m->data, m->data_len, (uint32_t)bits + 1) !=
      SHOAL_EFORMAT) {
    fail("have-map one byte short accepted", 0);
  }
}

/* An accepted HAVE names m->length increasing chunks, and they are written
 * back as exactly its bytes: one encoding per set of chunks. */
static void check_have(const struct pwire_msg *m) {
  static uint32_t chunks[PWIRE_HAVE_MAX];
  static uint8_t again[PWIRE_HAVE_MAX_BYTES];
  struct pwire_have_iter it;
  uint32_t chunk;
  size_t n = 0;
  pwire_have_begin(&it, m);
  while (pwire_have_next(&it, &chunk)) {
    if (n == PWIRE_HAVE_MAX || (n > 0 && chunk <= chunks[n - 1])) {
      fail("have chunks not increasing or too many", 0);
    }
    chunks[n++] = chunk;
  }
  if (n != m->length) {
    fail("have count differs from its chunks", 0);
  }
  if (pwire_have_put(again, chunks, n) != m->data_len ||
      memcmp(again, m->data, m->data_len) != 0) {
    fail("have chunks encode to other bytes", 0);
  }
}

static void decode_checked(const uint8_t *p, size_t len) {
  struct pwire_msg m;
  memset(&m, 0xa5, sizeof(m));
  int rc = pwire_decode(p, len, &m);
  if (rc != 0) {
    if (rc != SHOAL_ETRUNC && rc != SHOAL_EFORMAT && rc != SHOAL_ETOOBIG) {
      fail("undocumented decode error", rc);
    }
    if (!bytes_all_zero(&m, sizeof(m))) {
      fail("decode output not zeroed on failure", rc);
    }
    return;
  }
  if (len == 0 || m.type != p[0]) {
    fail("decoded type differs from the first byte", rc);
  }
  switch (m.type) {
  case PWIRE_MANIFEST_REQ:
    if (m.length == 0 || m.length > PWIRE_MANIFEST_PART_BYTES) {
      fail("manifest request length out of range", rc);
    }
    break;
  case PWIRE_MANIFEST_PART:
    if (m.data_len == 0 || m.data_len > PWIRE_MANIFEST_PART_BYTES ||
        m.total > MANIFEST_MAX_BYTES ||
        (uint64_t)m.offset + m.data_len > m.total) {
      fail("manifest part out of range", rc);
    }
    break;
  case PWIRE_HAVE_MAP:
    if (m.data_len == 0 || m.data_len > HAVE_MAP_MAX) {
      fail("have-map size out of range", rc);
    }
    check_have_map(&m);
    break;
  case PWIRE_REQUEST:
  case PWIRE_CANCEL:
  case PWIRE_REJECT:
    if (m.length == 0 || m.length > PWIRE_BLOCK_BYTES) {
      fail("block length out of range", rc);
    }
    break;
  case PWIRE_DATA:
    if (m.data_len == 0 || m.data_len > PWIRE_BLOCK_BYTES) {
      fail("data block size out of range", rc);
    }
    break;
  case PWIRE_HAVE:
    if (m.data_len == 0 || m.data_len > PWIRE_HAVE_MAX_BYTES || m.length == 0 ||
        m.length > PWIRE_HAVE_MAX) {
      fail("have list size out of range", rc);
    }
    check_have(&m);
    break;
  case PWIRE_PEX:
    if (m.data_len == 0 || m.data_len % TMSG_CERT_BYTES != 0 ||
        m.data_len > TMSG_CERT_BYTES * PWIRE_PEX_MAX_RECORDS) {
      fail("exchange records out of range", rc);
    }
    check_pex_records(&m);
    break;
  case PWIRE_INTERESTED:
  case PWIRE_NOT_INTERESTED:
  case PWIRE_CHOKE:
  case PWIRE_UNCHOKE:
  case PWIRE_KEEPALIVE:
    break;
  default:
    fail("unknown type accepted", rc);
  }
  if (m.data_len > 0 && m.data != p + len - m.data_len) {
    fail("message bytes are not the input's tail", rc);
  }
  /* One encoding per message: it re-encodes to exactly the input. */
  struct buf b;
  buf_init(&b, PWIRE_MAX_PLAIN);
  rc = pwire_encode(&b, &m);
  if (rc != 0 || b.len != len || memcmp(b.data, p, len) != 0) {
    fail("accepted message does not re-encode to its bytes", rc);
  }
  buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Passes 2 and 3: hellos */

static int open_checked(const uint8_t *msg, size_t len,
                        const struct envelope_policy *pol,
                        struct pwire_hello *h) {
  uint8_t sender[IDENTITY_PK_BYTES];
  memset(h, 0xa5, sizeof(*h));
  memset(sender, 0xa5, sizeof(sender));
  int rc = pwire_hello_open(msg, len, pol, h, sender);
  if (rc > 0) {
    fail("positive return", rc);
  }
  if (rc != 0) {
    if (!bytes_all_zero(h, sizeof(*h)) ||
        !bytes_all_zero(sender, sizeof(sender))) {
      fail("hello outputs not zeroed on failure", rc);
    }
    return rc;
  }
  /* Whatever opens is a hello of the right size, as its bytes say. */
  if (len != ENVELOPE_OVERHEAD + PWIRE_HELLO_PAYLOAD_BYTES ||
      msg[1] != ENVELOPE_PEER_HELLO || msg[2] != PWIRE_HELLO ||
      memcmp(sender, msg + 4, IDENTITY_PK_BYTES) != 0) {
    fail("opened hello does not match its envelope", rc);
  }
  const uint8_t *p = msg + ENVELOPE_HEADER_BYTES;
  if (memcmp(h->content, p, 32) != 0 || memcmp(h->eph_pk, p + 32, 32) != 0 ||
      h->port != buf_be16(p + 64) || h->flags != p[66] ||
      (h->flags & ~PWIRE_HELLO_FLAGS) != 0) {
    fail("opened hello fields differ from the payload", rc);
  }
  if (pol->expect_sender != NULL &&
      memcmp(pol->expect_sender, sender, IDENTITY_PK_BYTES) != 0) {
    fail("opened with an unexpected sender", rc);
  }
  return rc;
}

static void raw_hello_pass(const uint8_t *msg, size_t len) {
  struct pwire_hello h;
  struct replay_guard g;
  if (replay_guard_init(&g, 4, WINDOW_MS) != 0) {
    return;
  }
  struct envelope_policy any = {ENVELOPE_PEER_HELLO, NOW_MS, 0, NULL, NULL};
  struct envelope_policy keyed = {ENVELOPE_PEER_HELLO, NOW_MS, WINDOW_MS,
                                  fixed.pk, NULL};
  struct envelope_policy guarded = {ENVELOPE_PEER_HELLO, NOW_MS, WINDOW_MS,
                                    NULL, &g};
  int rc = open_checked(msg, len, &any, &h);
  int rc2 = open_checked(msg, len, &keyed, &h);
  int rc3 = open_checked(msg, len, &guarded, &h);
  if (rc != 0 && (rc2 == 0 || rc3 == 0)) {
    fail("a stricter policy accepted what no policy refused", rc);
  }
  if (rc3 == 0 && open_checked(msg, len, &guarded, &h) != SHOAL_EREPLAY) {
    fail("the same hello was accepted twice by one guard", rc3);
  }
  /* A policy of another class is the caller's mistake, never an open. */
  struct envelope_policy wrong = any;
  wrong.cls = ENVELOPE_TRACKER_REQUEST;
  if (open_checked(msg, len, &wrong, &h) != SHOAL_EINVAL) {
    fail("a hello opened under another class's policy", 0);
  }
  replay_guard_close(&g);
}

/* Signs msg[0..len) in place (the signature goes to msg + len) under the
 * hello domain and checks pwire_hello_open against the bytes. */
static void resigned_pass(uint8_t *msg, size_t len, uint32_t flip) {
  const char *dom = envelope_domain(ENVELOPE_PEER_HELLO);
  size_t total = len + ENVELOPE_SIG_BYTES;
  struct pwire_hello h;

  memcpy(msg + 4, fixed.pk, IDENTITY_PK_BYTES);
  if (identity_sign2(&fixed, dom, strlen(dom) + 1, msg, len, msg + len) != 0) {
    return;
  }
  uint32_t n = buf_be32(msg + 52);
  size_t plen = len - ENVELOPE_HEADER_BYTES;
  int want;
  if (total > ENVELOPE_OVERHEAD + ENVELOPE_PAYLOAD_MAX) {
    want = SHOAL_ETOOBIG;
  } else if (msg[0] != ENVELOPE_VERSION) {
    want = SHOAL_EVERSION;
  } else if (msg[1] != ENVELOPE_PEER_HELLO) {
    want = SHOAL_EDOMAIN;
  } else if (msg[3] != 0 || n != plen) {
    want = SHOAL_EFORMAT;
  } else if (msg[2] >= PWIRE_HELLO_OLDEST && msg[2] < PWIRE_HELLO) {
    want = SHOAL_EVERSION;
  } else if (msg[2] != PWIRE_HELLO) {
    want = SHOAL_EPROTO;
  } else if (plen != PWIRE_HELLO_PAYLOAD_BYTES ||
             (msg[ENVELOPE_HEADER_BYTES + 66] & ~PWIRE_HELLO_FLAGS) != 0) {
    want = SHOAL_EFORMAT;
  } else {
    want = 0;
  }
  struct envelope_policy any = {ENVELOPE_PEER_HELLO, NOW_MS, 0, NULL, NULL};
  int rc = open_checked(msg, total, &any, &h);
  if (rc != want) {
    fail("re-signed hello: unexpected result", rc);
  }
  if (want != 0) {
    return;
  }
  /* A well-formed hello: it seals back to the same bytes, and one flipped
   * bit anywhere is refused. */
  struct buf b;
  buf_init(&b, ENVELOPE_OVERHEAD + PWIRE_HELLO_PAYLOAD_BYTES);
  rc = pwire_hello_seal(&b, &fixed, buf_be64(msg + 36), buf_be64(msg + 44), &h);
  if (rc != 0 || b.len != total || memcmp(b.data, msg, total) != 0) {
    fail("hello does not seal back to its bytes", rc);
  }
  buf_free(&b);
  size_t bit = flip % (total * 8);
  msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  if (open_checked(msg, total, &any, &h) == 0) {
    fail("hello with a flipped bit opened", 0);
  }
  msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

static void hello_passes(const uint8_t *data, size_t size, uint32_t flip) {
  if (size < ENVELOPE_HEADER_BYTES ||
      size > ENVELOPE_HEADER_BYTES + ENVELOPE_PAYLOAD_MAX + 1) {
    return;
  }
  uint8_t *msg = malloc(size + ENVELOPE_SIG_BYTES);
  if (msg == NULL) {
    return;
  }
  memcpy(msg, data, size);
  resigned_pass(msg, size, flip);
  /* Again with the envelope header made right. */
  memcpy(msg, data, size);
  msg[0] = ENVELOPE_VERSION;
  msg[1] = ENVELOPE_PEER_HELLO;
  msg[3] = 0;
  buf_put_be32(msg + 52, (uint32_t)(size - ENVELOPE_HEADER_BYTES));
  resigned_pass(msg, size, flip >> 3);
  /* And with the type of a hello, so the payload decoder decides. */
  memcpy(msg, data, size);
  msg[0] = ENVELOPE_VERSION;
  msg[1] = ENVELOPE_PEER_HELLO;
  msg[2] = PWIRE_HELLO;
  msg[3] = 0;
  buf_put_be32(msg + 52, (uint32_t)(size - ENVELOPE_HEADER_BYTES));
  resigned_pass(msg, size, flip >> 6);
  free(msg);
}

/* ------------------------------------------------------------------------ */
/* Pass 4: sessions */

static void session_pair(struct pwire_session *a, struct pwire_session *b) {
  if (pwire_session_init(a, &eph_a, eph_b.pk, 1) != 0 ||
      pwire_session_init(b, &eph_b, eph_a.pk, 0) != 0) {
    fail("fixed session keys refused", 0);
  }
}

static void open_pass(const uint8_t *body, size_t len) {
  static uint8_t plain[PWIRE_MAX_FRAME];
  struct pwire_session a, b;
  session_pair(&a, &b);
  /* The input as a frame from a to b, and (reflected) from b to a. */
  struct pwire_session *sides[2] = {&b, &a};
  for (int i = 0; i < 2; i++) {
    struct pwire_session *s = sides[i];
    int rc = pwire_open(s, body, len, plain, sizeof(plain));
    if (rc < 0) {
      if (rc != SHOAL_EBADSIG && rc != SHOAL_ETRUNC && rc != SHOAL_ETOOBIG) {
        fail("undocumented open error", rc);
      }
      if (s->rx_count != 0) {
        fail("a failed open moved the counter", rc);
      }
      continue;
    }
    if (len < PWIRE_TAG_BYTES || (size_t)rc != len - PWIRE_TAG_BYTES ||
        s->rx_count != 1) {
      fail("open result does not match the frame", rc);
    }
    /* The same frame never opens twice. */
    if (pwire_open(s, body, len, plain, sizeof(plain)) != SHOAL_EBADSIG) {
      fail("a frame opened twice", rc);
    }
    decode_checked(plain, (size_t)rc);
  }
  pwire_session_close(&a);
  pwire_session_close(&b);
}

/* The input as a frame body opened in two steps, the block left for later
 * (pwire_open_head, pwire_open_defer, then pwire_open_sealed, as a peer
 * that opens blocks on its thread pool does): it must agree with
 * pwire_open on a fresh pair, opening to the same bytes or being refused
 * with the block zeroed; a deferred open moves the counter by one. */
static void defer_pass(const uint8_t *body, size_t len) {
  static uint8_t plain[PWIRE_MAX_FRAME];
  static uint8_t rest[PWIRE_BLOCK_BYTES];
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  struct pwire_session a, b;
  struct pwire_sealed rec;
  session_pair(&a, &b);
  int whole = pwire_open(&b, body, len, plain, sizeof(plain));
  pwire_session_close(&a);
  pwire_session_close(&b);
  session_pair(&a, &b);
  int rc = pwire_open_head(&b, body, len, head, sizeof(head));
  if (rc == 0) {
    rc = pwire_open_defer(&b, body, len, rest, &rec);
    if (rc < 0) {
      if ((rc != SHOAL_ETRUNC && rc != SHOAL_ETOOBIG) || b.rx_count != 0) {
        fail("undocumented deferred-open error, or counter moved", rc);
      }
    } else {
      size_t n = (size_t)rc - PWIRE_DATA_HEAD_BYTES;
      if ((size_t)rc != len - PWIRE_TAG_BYTES || b.rx_count != 1 ||
          rec.len != n) {
        fail("deferred open does not match the frame", rc);
      }
      int sealed =
          pwire_open_sealed(&rec, buf_be32(head + 1), buf_be32(head + 5), rest);
      if (sealed == 0) {
        if (whole != rc || head[0] != PWIRE_DATA ||
            memcmp(plain, head, PWIRE_DATA_HEAD_BYTES) != 0 ||
            memcmp(plain + PWIRE_DATA_HEAD_BYTES, rest, n) != 0) {
          fail("deferred open disagrees with pwire_open", sealed);
        }
      } else if ((sealed != SHOAL_EBADSIG && sealed != SHOAL_EPROTO) ||
                 (sealed == SHOAL_EBADSIG && whole >= 0) ||
                 !bytes_all_zero(rest, n)) {
        fail("deferred open refused wrongly, or left bytes", sealed);
      }
    }
  }
  pwire_session_close(&a);
  pwire_session_close(&b);
}

static void seal_pass(const uint8_t *data, size_t size, uint32_t flip) {
  static uint8_t plain[PWIRE_MAX_FRAME];
  struct pwire_session a, b;
  struct buf f;
  if (size > PWIRE_MAX_PLAIN) {
    return;
  }
  session_pair(&a, &b);
  buf_init(&f, PWIRE_MAX_FRAME);
  int rc = pwire_seal(&a, &f, data, size);
  if (rc != 0 || f.len != size + PWIRE_TAG_BYTES || a.tx_count != 1) {
    fail("seal failed", rc);
  }
  /* Reflected to its sender, flipped: refused. */
  if (pwire_open(&a, f.data, f.len, plain, sizeof(plain)) != SHOAL_EBADSIG) {
    fail("a reflected frame opened", 0);
  }
  size_t bit = flip % (f.len * 8);
  f.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  if (pwire_open(&b, f.data, f.len, plain, sizeof(plain)) != SHOAL_EBADSIG) {
    fail("a flipped frame opened", 0);
  }
  f.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  /* Genuine: opens once, to the input. */
  rc = pwire_open(&b, f.data, f.len, plain, sizeof(plain));
  if (rc != (int)size || (size > 0 && memcmp(plain, data, size) != 0)) {
    fail("a sealed frame did not open to its plaintext", rc);
  }
  if (pwire_open(&b, f.data, f.len, plain, sizeof(plain)) != SHOAL_EBADSIG) {
    fail("a replayed frame opened", 0);
  }
  buf_free(&f);
  pwire_session_close(&a);
  pwire_session_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fz_first_call()) {
    uint8_t seed[32];
    fz_seed_identity(&fixed, 0x5a);
    memset(seed, 0x11, sizeof(seed));
    crypto_kx_seed_keypair(eph_a.pk, eph_a.sk, seed);
    memset(seed, 0x22, sizeof(seed));
    crypto_kx_seed_keypair(eph_b.pk, eph_b.sk, seed);
  }
  uint32_t flip = fz_mix(data, size);
  uint8_t *msg = fz_copy(data, size);
  if (msg == NULL) {
    return 0;
  }
  decode_checked(msg, size);
  raw_hello_pass(msg, size);
  open_pass(msg, size);
  defer_pass(msg, size);
  seal_pass(msg, size, flip);
  free(msg);
  hello_passes(data, size, flip);
  return 0;
}
