/* Per-address request rate limits (token buckets) with bounded memory.
 *
 * Each source address gets a bucket of `burst` requests that refills at
 * `rate` requests a second. IPv6 addresses are grouped by /64, since one
 * host usually owns a whole /64. The table has a fixed number of slots;
 * when it is full, the fullest bucket among a small sample is forgotten
 * (an address that has not spent its allowance loses nothing by it).
 */
#ifndef SHOAL_TRACKER_RATELIMIT_H
#define SHOAL_TRACKER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "tracker/hashtab.h"

#define RATELIMIT_RATE_DEFAULT 50u   /* requests a second per address */
#define RATELIMIT_BURST_DEFAULT 200u /* requests in a burst */
#define RATELIMIT_SLOTS_DEFAULT 65536u
#define RATELIMIT_SAMPLE 8

struct ratelimit_slot {
  uint64_t fp; /* 0: empty */
  uint64_t last_ms;
  uint64_t milli; /* tokens * 1000 */
};

struct ratelimit {
  struct ratelimit_slot *slots;
  size_t mask;
  size_t count;
  size_t cap;
  uint32_t rate;
  uint32_t burst;
  uint8_t key[HASHTAB_KEY_BYTES];
};

/* Returns 0, SHOAL_EINVAL (rate, burst or max_addresses 0) or
 * SHOAL_ENOMEM. */
int ratelimit_init(struct ratelimit *rl, uint32_t rate, uint32_t burst,
                   size_t max_addresses);
void ratelimit_close(struct ratelimit *rl);

/* Takes one token for the address (family 4 or 6; IPv4 in the first four
 * bytes). Returns 0, or SHOAL_ERATE with *retry_after_ms set to when the
 * next token will be there. */
int ratelimit_take(struct ratelimit *rl, uint8_t family, const uint8_t addr[16],
                   uint64_t now_ms, uint32_t *retry_after_ms);

#endif
