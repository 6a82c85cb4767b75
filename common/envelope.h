/* Signed envelopes: every control message of shoal travels in one.
 *
 * Layout (big-endian; docs/protocol.md, "Envelope"):
 *
 *   0  u8   version (ENVELOPE_VERSION)
 *   1  u8   class   (enum envelope_class: who speaks to whom)
 *   2  u8   type    (message type within the class)
 *   3  u8   flags   (0)
 *   4  32   sender Ed25519 public key
 *   36 u64  timestamp, ms since the Unix epoch
 *   44 u64  sequence number, strictly new per sender
 *   52 u32  payload length n
 *   56 n    payload
 *   56+n 64 Ed25519 signature over DOMAIN(class) || 0x00 || bytes 0..56+n
 *
 * Opening checks, in this order, with one error each: length and version;
 * the signature over the exact received bytes (a failure is SHOAL_EDOMAIN
 * when the class byte differs from the expected class, else SHOAL_EBADSIG);
 * the class byte again (a validly signed message of another class is
 * SHOAL_EDOMAIN); flags and length fields; the expected sender; the clock
 * window; and the replay guard, which records the message only when all
 * else passed.
 */
#ifndef SHOAL_ENVELOPE_H
#define SHOAL_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/replay.h"

#define ENVELOPE_VERSION 1
#define ENVELOPE_HEADER_BYTES 56
#define ENVELOPE_SIG_BYTES IDENTITY_SIG_BYTES
#define ENVELOPE_OVERHEAD (ENVELOPE_HEADER_BYTES + ENVELOPE_SIG_BYTES)
/* An envelope always fits one default-sized frame. */
#define ENVELOPE_PAYLOAD_MAX (FRAME_MAX_DEFAULT - ENVELOPE_OVERHEAD)
/* Default clock window: generous enough for unsynchronised home machines,
 * short enough that the replay guard's memory stays bounded. */
#define ENVELOPE_WINDOW_MS_DEFAULT (5u * 60u * 1000u)

enum envelope_class {
  ENVELOPE_TRACKER_REQUEST = 1, /* peer -> tracker */
  ENVELOPE_TRACKER_REPLY = 2,   /* tracker -> peer */
  ENVELOPE_PEER_HELLO = 3,      /* peer <-> peer session set-up */
};
#define ENVELOPE_CLASS_COUNT 3

struct envelope {
  uint8_t version;
  uint8_t cls;
  uint8_t type;
  uint8_t flags;
  uint8_t sender[IDENTITY_PK_BYTES];
  uint64_t timestamp_ms;
  uint64_t seq;
  const uint8_t *payload; /* borrowed from the opened bytes */
  size_t payload_len;
};

struct envelope_policy {
  enum envelope_class cls;
  uint64_t now_ms;              /* wall clock, from clock_wall_ms() */
  uint64_t window_ms;           /* 0 disables the clock check */
  const uint8_t *expect_sender; /* NULL accepts any sender */
  struct replay_guard *guard;   /* NULL disables replay checks */
};

/* The domain-separation string for a class (static, NUL-terminated), or
 * NULL for an unknown class. */
const char *envelope_domain(enum envelope_class cls);

/* First sequence number of a process: the wall clock in milliseconds times
 * 1000 (a microsecond count at millisecond resolution), so a
 * restarted sender continues above everything it sent before as long as it
 * sent fewer than a million messages a second. Then count up by one. */
uint64_t envelope_seq_start(uint64_t now_ms);

/* Appends a sealed envelope to out. Returns 0, SHOAL_ETOOBIG (payload over
 * ENVELOPE_PAYLOAD_MAX, or out's own maximum) or SHOAL_ENOMEM. */
int envelope_seal(struct buf *out, enum envelope_class cls, uint8_t type,
                  const struct identity *id, uint64_t timestamp_ms,
                  uint64_t seq, const void *payload, size_t len);

/* Verifies msg under pol and decodes it into out, whose payload points into
 * msg. Returns 0 or the first failed check's error (see above); out is
 * zeroed on failure. */
__attribute__((warn_unused_result)) int
envelope_open(const uint8_t *msg, size_t len, const struct envelope_policy *pol,
              struct envelope *out);

#endif
