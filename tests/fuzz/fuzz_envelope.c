/* libFuzzer target for common/envelope: opening signed envelopes.
 *
 * A random input almost never carries a valid signature, so two passes:
 *  1. The raw input is opened under every class and three policies (no
 *     checks, expected sender with a clock window, replay guard). The seed
 *     corpus holds envelopes really sealed by the fixed key, so these reach
 *     past the signature too.
 *  2. The input is taken as header + payload: the sender key is overwritten
 *     with the fixed key's, the bytes are signed with identity_sign2 and
 *     envelope_domain(cls) as envelope_seal does, and the result is opened.
 *     The outcome is predicted from the header alone: a well-formed one
 *     must open with every field as written, and each malformed one must
 *     fail with its own error. The same is done once more with the version
 *     and payload length fixed up, so that mutations of the other fields
 *     are not all stopped by those two.
 * Every failure must leave the output zeroed.
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
#include "common/replay.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS 1700000000000ull
#define WINDOW_MS ENVELOPE_WINDOW_MS_DEFAULT

static struct identity fixed; /* seed 0x5a x 32, as the seed generator */
static struct identity other; /* seed 0x3c x 32 */

static void fail(const char *what, int rc) {
  fprintf(stderr, "fuzz_envelope: %s (rc %d)\n", what, rc);
  abort();
}

static int open_checked(const uint8_t *msg, size_t len,
                        const struct envelope_policy *pol, struct envelope *e) {
  memset(e, 0xa5, sizeof(*e));
  int rc = envelope_open(msg, len, pol, e);
  if (rc > 0) {
    fail("positive return", rc);
  }
  if (rc != 0 && !bytes_all_zero(e, sizeof(*e))) {
    fail("output not zeroed on failure", rc);
  }
  if (rc == 0) {
    /* Whatever opens describes the bytes it came from. */
    if (len < ENVELOPE_OVERHEAD || e->version != ENVELOPE_VERSION ||
        e->cls != (uint8_t)pol->cls || e->flags != 0 ||
        e->payload != msg + ENVELOPE_HEADER_BYTES ||
        e->payload_len != len - ENVELOPE_OVERHEAD ||
        memcmp(e->sender, msg + 4, IDENTITY_PK_BYTES) != 0) {
      fail("opened envelope does not match its bytes", rc);
    }
    if (pol->expect_sender != NULL &&
        memcmp(pol->expect_sender, e->sender, IDENTITY_PK_BYTES) != 0) {
      fail("opened with an unexpected sender", rc);
    }
  }
  return rc;
}

/* The clock check as documented: |ts - now| <= window passes. */
static int clock_ref(uint64_t ts, uint64_t now, uint64_t window) {
  if (window == 0) {
    return 0;
  }
  if (ts < now && now - ts > window) {
    return SHOAL_ESTALE;
  }
  if (ts > now && ts - now > window) {
    return SHOAL_EFUTURE;
  }
  return 0;
}

static void raw_pass(const uint8_t *msg, size_t len) {
  struct envelope e;
  struct replay_guard g;
  if (replay_guard_init(&g, 4, WINDOW_MS) != 0) {
    return;
  }
  for (int cls = 1; cls <= ENVELOPE_CLASS_COUNT; cls++) {
    struct envelope_policy any = {cls, NOW_MS, 0, NULL, NULL};
    struct envelope_policy keyed = {cls, NOW_MS, WINDOW_MS, fixed.pk, NULL};
    struct envelope_policy guarded = {cls, NOW_MS, WINDOW_MS, NULL, &g};
    int rc = open_checked(msg, len, &any, &e);
    int rc2 = open_checked(msg, len, &keyed, &e);
    int rc3 = open_checked(msg, len, &guarded, &e);
    /* Stricter policies never accept what the lax one refused. */
    if (rc != 0 && (rc2 == 0 || rc3 == 0)) {
      fail("a stricter policy accepted what no policy refused", rc);
    }
    if (rc3 == 0 && open_checked(msg, len, &guarded, &e) != SHOAL_EREPLAY) {
      fail("the same envelope was accepted twice by one guard", rc3);
    }
  }
  replay_guard_close(&g);
}

/* Signs msg[0..len) in place (the signature goes to msg + len) under the
 * domain of cls, and checks envelope_open against the header's contents. */
static void resigned_pass(uint8_t *msg, size_t len, uint32_t flip) {
  struct envelope e;
  int cls = msg[1] >= 1 && msg[1] <= ENVELOPE_CLASS_COUNT
                ? msg[1]
                : 1 + msg[1] % ENVELOPE_CLASS_COUNT;
  const char *dom = envelope_domain((enum envelope_class)cls);
  size_t total = len + ENVELOPE_SIG_BYTES;

  memcpy(msg + 4, fixed.pk, IDENTITY_PK_BYTES);
  if (identity_sign2(&fixed, dom, strlen(dom) + 1, msg, len, msg + len) != 0) {
    return;
  }
  uint64_t ts = buf_be64(msg + 36);
  uint64_t seq = buf_be64(msg + 44);
  uint32_t n = buf_be32(msg + 52);
  int want;
  if (total > ENVELOPE_OVERHEAD + ENVELOPE_PAYLOAD_MAX) {
    want = SHOAL_ETOOBIG;
  } else if (msg[0] != ENVELOPE_VERSION) {
    want = SHOAL_EVERSION;
  } else if (msg[1] != cls) {
    want = SHOAL_EDOMAIN;
  } else if (msg[3] != 0 || n != len - ENVELOPE_HEADER_BYTES) {
    want = SHOAL_EFORMAT;
  } else {
    want = 0;
  }

  struct envelope_policy any = {cls, NOW_MS, 0, NULL, NULL};
  int rc = open_checked(msg, total, &any, &e);
  if (rc != want) {
    fail("re-signed envelope: unexpected result", rc);
  }
  if (rc == 0 && (e.type != msg[2] || e.timestamp_ms != ts || e.seq != seq ||
                  memcmp(e.sender, fixed.pk, IDENTITY_PK_BYTES) != 0 ||
                  e.payload_len != n)) {
    fail("re-signed envelope: fields differ from the header", rc);
  }

  /* Another class's policy: the signature's domain no longer matches. */
  if (want != SHOAL_ETOOBIG && want != SHOAL_EVERSION) {
    struct envelope_policy wrong = {1 + cls % ENVELOPE_CLASS_COUNT, NOW_MS, 0,
                                    NULL, NULL};
    if (open_checked(msg, total, &wrong, &e) != SHOAL_EDOMAIN) {
      fail("opened under another class's domain", rc);
    }
  }
  if (want == 0) {
    /* Expected sender, then the clock window (checked after the key). */
    struct envelope_policy keyed = {cls, NOW_MS, WINDOW_MS, fixed.pk, NULL};
    if (open_checked(msg, total, &keyed, &e) !=
        clock_ref(ts, NOW_MS, WINDOW_MS)) {
      fail("clock window check differs from |ts - now| <= window", rc);
    }
    struct envelope_policy stranger = {cls, NOW_MS, WINDOW_MS, other.pk, NULL};
    if (open_checked(msg, total, &stranger, &e) != SHOAL_EWRONGKEY) {
      fail("opened while expecting another sender", rc);
    }
    /* A fresh guard with the clock at the message's own time: accepted
     * once (a zero timestamp is not above the guard's initial floor),
     * then refused as a replay. */
    struct replay_guard g;
    if (replay_guard_init(&g, 4, WINDOW_MS) == 0) {
      struct envelope_policy guarded = {cls, ts, WINDOW_MS, NULL, &g};
      int first = open_checked(msg, total, &guarded, &e);
      if (first != (ts == 0 ? SHOAL_EGUARDFULL : 0)) {
        fail("fresh guard refused a new sender", first);
      }
      if (first == 0 &&
          open_checked(msg, total, &guarded, &e) != SHOAL_EREPLAY) {
        fail("replay accepted", first);
      }
      replay_guard_close(&g);
    }
  }

  /* One flipped bit anywhere in a well-formed envelope must be refused. */
  if (want == 0) {
    size_t bit = flip % (total * 8);
    msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (open_checked(msg, total, &any, &e) == 0) {
      fail("envelope with a flipped bit opened", 0);
    }
    msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fz_first_call()) {
    fz_seed_identity(&fixed, 0x5a);
    fz_seed_identity(&other, 0x3c);
  }
  uint8_t *msg = fz_copy(data, size);
  if (msg == NULL) {
    return 0;
  }
  raw_pass(msg, size);
  free(msg);

  if (size < ENVELOPE_HEADER_BYTES ||
      size > ENVELOPE_HEADER_BYTES + ENVELOPE_PAYLOAD_MAX + 1) {
    return 0;
  }
  uint32_t flip = fz_mix(data, size);
  msg = malloc(size + ENVELOPE_SIG_BYTES);
  if (msg == NULL) {
    return 0;
  }
  memcpy(msg, data, size);
  resigned_pass(msg, size, flip);
  /* Again with the version and the payload length made right. */
  memcpy(msg, data, size);
  msg[0] = ENVELOPE_VERSION;
  buf_put_be32(msg + 52, (uint32_t)(size - ENVELOPE_HEADER_BYTES));
  resigned_pass(msg, size, flip >> 3);
  free(msg);
  return 0;
}
