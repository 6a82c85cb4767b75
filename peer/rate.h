/* Rate limiting (token buckets) and rate measurement (sliding-window
 * meters) for the peer's transfers.
 *
 * A token bucket holds up to `burst` bytes of allowance and gains `rate`
 * bytes of it a second. Sending a block takes its size from the bucket;
 * when the bucket is short, rate_wait_ms() says how long to wait. Received
 * bytes cannot be refused after the fact, so they are charged instead, and
 * the bucket may go into debt that later refills pay back first. The
 * long-run average therefore stays at `rate`, whatever the block sizes.
 *
 * A bucket starts empty, and its clock starts at its first rate_take,
 * rate_charge or rate_refill, not at rate_init: the node makes its buckets
 * when it starts, and the seconds it then spends finding a tracker and
 * peers must not turn into a burst. So the first second of traffic is
 * allowed one second at the rate: a sender that takes before it sends
 * stays within it, and a receiver that charges what it has read (and reads
 * again once out of debt) goes over by at most its last read. Later, after
 * an idle spell, a full bucket lets one burst through on top of the rate.
 *
 * Burst: max(rate / 4, RATE_BURST_MIN). A quarter of a second of traffic
 * absorbs the loop's timer lateness and lets a socket take several blocks
 * in one go, so a limited transfer does not stall between timer ticks. The
 * floor of 256 KiB (four PWIRE_BLOCK_BYTES blocks, one manifest part) keeps
 * a low limit from throttling below the size of one protocol message: at a
 * few KiB/s a bucket of a quarter second could never hold a whole block.
 * rate_take() lets a request larger than the burst through once the bucket
 * is full, so no size is ever refused forever.
 *
 * Arithmetic is exact: the whole bytes live in `tokens` (always an integer
 * value, exactly representable because its magnitude is bounded below
 * 2^53) and the thousandths of a byte that a millisecond at an uneven rate
 * leaves over live in `milli`. So refilling at every millisecond or once
 * after a second gives the same bucket, and rate_wait_ms() is exactly the
 * first millisecond at which rate_take() succeeds.
 *
 * Time is whatever millisecond clock the caller passes (uv_now()); it must
 * not go backwards, and when it does the missing time simply yields no
 * tokens. Nothing here allocates or reads a clock.
 */
#ifndef SHOAL_PEER_RATE_H
#define SHOAL_PEER_RATE_H

#include <stdint.h>

/* Smallest burst: four 64 KiB protocol blocks (see above). */
#define RATE_BURST_MIN (256u << 10)
/* Highest limit honoured; a higher one is lowered to it. 1 TiB/s is beyond
 * any link, and the bound keeps tokens * 1000 far inside 64 bits. */
#define RATE_MAX_BPS ((uint64_t)1 << 40)
/* Largest debt rate_charge() or rate_take() can run up, in bytes; a bigger
 * debit leaves the debt at this. 1 PiB keeps tokens exact in a double. */
#define RATE_MAX_DEBT ((uint64_t)1 << 50)

/* A token bucket; the caller owns it (embed it anywhere). */
struct rate_bucket {
  uint64_t rate;  /* bytes a second; 0 = unlimited */
  uint64_t burst; /* most tokens the bucket holds */
  double tokens;  /* whole bytes of allowance; negative while in debt */
  uint64_t last_ms;
  uint32_t milli; /* thousandths of a byte on top of tokens, 0..999 */
  int started;    /* the clock runs: a take, charge or refill came */
};

/* Sets up an empty bucket for bytes_per_s (0 = unlimited, capped at
 * RATE_MAX_BPS). It earns nothing until its first use (see above); now_ms
 * is kept for the fields' sake only. */
void rate_init(struct rate_bucket *b, uint64_t bytes_per_s, uint64_t now_ms);
/* Changes the bucket's rate to bytes_per_s (0 = unlimited) at now_ms,
 * keeping what it holds. A limited bucket is first refilled at its old
 * rate up to now_ms; its tokens are then held to the new burst, and a debt
 * to one new burst, so that lowering a limit pauses transfers for at most
 * about a burst at the new rate, not for the old excess repaid slowly. A
 * bucket that was unlimited starts as rate_init makes one: empty, its
 * clock idle until first used. */
void rate_set(struct rate_bucket *b, uint64_t bytes_per_s, uint64_t now_ms);
/* Adds the allowance earned since the last call, up to the burst; the
 * first call only starts the clock. The other calls refill by themselves;
 * this is for callers that only read tokens. */
void rate_refill(struct rate_bucket *b, uint64_t now_ms);
/* Takes n bytes of allowance when the bucket holds at least min(n, burst)
 * of it and returns 1; otherwise changes nothing but the refill and returns
 * 0. Unlimited buckets always return 1. */
int rate_take(struct rate_bucket *b, uint64_t n, uint64_t now_ms);
/* Debits n bytes unconditionally (bytes already received); the bucket may
 * go into debt. No effect on an unlimited bucket. */
void rate_charge(struct rate_bucket *b, uint64_t n, uint64_t now_ms);
/* Milliseconds from now_ms until rate_take(n) would succeed: 0 if it would
 * now, and always 0 for an unlimited bucket. The bucket is not changed; for
 * a bucket not used yet the answer is counted from now_ms, as if a take
 * started its clock now. */
uint64_t rate_wait_ms(const struct rate_bucket *b, uint64_t n, uint64_t now_ms);
int rate_unlimited(const struct rate_bucket *b);

/* A sliding-window meter: bytes a second over the last window_ms,
 * counted in METER_SLOTS slots of window_ms / METER_SLOTS each (250 ms for
 * the 5 s global meter, 1 s for the 20 s per-session meter). Fixed size, no
 * allocation; the caller owns it. */
#define METER_SLOTS 20u

struct rate_meter {
  uint64_t slot_ms;  /* width of one slot */
  uint64_t head;     /* slot number (time / slot_ms) of the newest slot */
  uint64_t start_ms; /* when counting began (meter_init) */
  uint64_t bytes[METER_SLOTS]; /* slot number k is counted in bytes[k % N] */
};

/* Starts an empty meter over about window_ms (at least METER_SLOTS ms; the
 * window is rounded up to a whole number of slots) at time now_ms. */
void meter_init(struct rate_meter *m, uint64_t window_ms, uint64_t now_ms);
/* Counts bytes that moved at now_ms (a time before the newest slot counts
 * in the newest slot). */
void meter_add(struct rate_meter *m, uint64_t bytes, uint64_t now_ms);
/* Bytes a second over the window ending at now_ms: the bytes counted in
 * the slots the window touches, divided by the time those slots cover up to
 * now_ms. A meter younger than its window divides by its age instead (but
 * by at least one slot, so the first block does not read as a spike). */
uint64_t meter_rate(const struct rate_meter *m, uint64_t now_ms);

#endif
