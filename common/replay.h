/* Replay guard: per-sender sequence windows with bounded memory.
 *
 * For each sender the guard keeps a high-water mark and a 64-entry bitmap
 * below it (the sliding window of RFC 6479), so messages that arrive a
 * little out of order over several connections are still accepted once, and
 * exact repeats are refused. Senders are stored as 8-byte keyed SipHash
 * fingerprints of their public keys (the key is random per guard, so nobody
 * can aim a collision), 32 bytes a sender in an open-addressing table.
 *
 * The table grows with the senders seen, up to a maximum fixed when the
 * guard is made (32 bytes a slot, at most 3/4 full). When it is full, or
 * cannot grow for want of memory, a sender whose
 * last message is older than the clock window is forgotten first: any replay
 * of its messages would be refused as stale anyway. Only when none is found
 * among a sample is a live sender forgotten; the guard then raises a floor
 * and refuses unknown senders whose timestamp is not above it, so memory
 * pressure can make the guard refuse a message but never accept a replay.
 */
#ifndef SHOAL_REPLAY_H
#define SHOAL_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_WINDOW 64 /* sequence numbers remembered below the mark */
#define REPLAY_MAX_SENDERS (1u << 24) /* a guard bigger than this is a bug */
#define REPLAY_EVICT_SAMPLE 16    /* slots inspected to find one to forget */
#define REPLAY_INITIAL_SLOTS 1024 /* the table grows from here as needed */

struct replay_slot {
  uint64_t fp; /* 0 = empty */
  uint64_t hwm;
  uint64_t bitmap; /* bit i: hwm - i was accepted */
  uint64_t last_ms;
};

struct replay_guard {
  struct replay_slot *slots;
  size_t mask;     /* table size - 1; the size is a power of two */
  size_t max_size; /* the size that holds cap senders at 3/4 load */
  size_t count;
  size_t cap; /* senders remembered at most (3/4 of the table) */
  uint64_t window_ms;
  uint64_t floor_ms;
  uint64_t evictions;
  uint8_t key[16];
};

/* Makes a guard for up to max_senders senders (1..REPLAY_MAX_SENDERS),
 * assuming messages outside [now - window_ms, now + window_ms] are refused
 * before they reach it. Returns 0 or SHOAL_ENOMEM / SHOAL_EINVAL. */
int replay_guard_init(struct replay_guard *g, size_t max_senders,
                      uint64_t window_ms);
void replay_guard_close(struct replay_guard *g);

/* Accepts (and records) seq from sender pk, or refuses it: SHOAL_EREPLAY for
 * a sequence number already accepted, SHOAL_ESEQ for one below the window,
 * SHOAL_EGUARDFULL for a message not above the eviction floor from an
 * unknown sender, or below a known sender's mark (the sender may have been
 * forgotten and its window lost). */
int replay_guard_accept(struct replay_guard *g, const uint8_t pk[32],
                        uint64_t seq, uint64_t timestamp_ms, uint64_t now_ms);

#endif
