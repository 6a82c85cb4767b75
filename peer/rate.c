/* Token buckets and sliding-window meters for the peer's transfers
 * (rate.h). */
#include "peer/rate.h"

#include <assert.h>
#include <string.h>

void rate_init(struct rate_bucket *b, uint64_t bytes_per_s, uint64_t now_ms) {
  memset(b, 0, sizeof(*b));
  b->last_ms = now_ms;
  if (bytes_per_s == 0) {
    return;
  }
  b->rate = bytes_per_s < RATE_MAX_BPS ? bytes_per_s : RATE_MAX_BPS;
  b->burst = b->rate / 4 > RATE_BURST_MIN ? b->rate / 4 : RATE_BURST_MIN;
  /* Empty, and idle until first used: a full bucket, or one that filled
   * while the node looked for peers, ran the first second a quarter to a
   * half over the limit. */
  b->tokens = 0.0;
}

void rate_set(struct rate_bucket *b, uint64_t bytes_per_s, uint64_t now_ms) {
  double cap;
  if (b->rate == 0 || bytes_per_s == 0) {
    rate_init(b, bytes_per_s, now_ms);
    return;
  }
  rate_refill(b, now_ms);
  b->rate = bytes_per_s < RATE_MAX_BPS ? bytes_per_s : RATE_MAX_BPS;
  b->burst = b->rate / 4 > RATE_BURST_MIN ? b->rate / 4 : RATE_BURST_MIN;
  cap = (double)b->burst;
  if (b->tokens >= cap) {
    b->tokens = cap;
    b->milli = 0;
  } else if (b->tokens < -cap) {
    b->tokens = -cap;
    b->milli = 0;
  }
}

int rate_unlimited(const struct rate_bucket *b) {
  return b->rate == 0;
}

void rate_refill(struct rate_bucket *b, uint64_t now_ms) {
  if (b->rate == 0) {
    return;
  }
  if (!b->started) {
    b->started = 1;
    b->last_ms = now_ms;
    return;
  }
  if (now_ms <= b->last_ms) {
    return;
  }
  uint64_t elapsed = now_ms - b->last_ms;
  b->last_ms = now_ms;
  if (b->tokens >= (double)b->burst) {
    b->tokens = (double)b->burst;
    b->milli = 0;
    return;
  }
  /* Room left, in thousandths of a byte. tokens is an integer between
   * -RATE_MAX_DEBT and burst, so the difference is exact and room stays
   * below 2^61. Compare the elapsed time with the time to fill the room
   * before multiplying: a long idle times the rate wraps around 2^64. */
  uint64_t room = (uint64_t)((double)b->burst - b->tokens) * 1000u - b->milli;
  if (elapsed > (room - 1) / b->rate) {
    b->tokens = (double)b->burst;
    b->milli = 0;
    return;
  }
  uint64_t add = elapsed * b->rate + b->milli;
  b->tokens += (double)(add / 1000u);
  b->milli = (uint32_t)(add % 1000u);
}

/* Takes n bytes, stopping the debt at RATE_MAX_DEBT. */
static void debit(struct rate_bucket *b, uint64_t n) {
  double floor = -(double)RATE_MAX_DEBT;
  if ((double)n >= b->tokens - floor) {
    b->tokens = floor;
    b->milli = 0;
  } else {
    b->tokens -= (double)n;
  }
}

static uint64_t need_for(const struct rate_bucket *b, uint64_t n) {
  return n < b->burst ? n : b->burst;
}

int rate_take(struct rate_bucket *b, uint64_t n, uint64_t now_ms) {
  if (b->rate == 0) {
    return 1;
  }
  rate_refill(b, now_ms);
  if (b->tokens < (double)need_for(b, n)) {
    return 0;
  }
  debit(b, n);
  return 1;
}

void rate_charge(struct rate_bucket *b, uint64_t n, uint64_t now_ms) {
  if (b->rate == 0) {
    return;
  }
  rate_refill(b, now_ms);
  debit(b, n);
}

uint64_t rate_wait_ms(const struct rate_bucket *b, uint64_t n,
                      uint64_t now_ms) {
  if (b->rate == 0) {
    return 0;
  }
  struct rate_bucket t = *b;
  rate_refill(&t, now_ms);
  uint64_t need = need_for(&t, n);
  if (t.tokens >= (double)need) {
    return 0;
  }
  /* The shortfall in thousandths of a byte; refills add exactly `rate` of
   * them a millisecond, so the wait is the shortfall divided by the rate,
   * rounded up. Whole bytes suffice: tokens is an integer, so
   * tokens * 1000 + milli >= need * 1000 means tokens >= need. */
  uint64_t deficit = (uint64_t)((double)need - t.tokens) * 1000u - t.milli;
  uint64_t wait = deficit / t.rate + (deficit % t.rate != 0);
  /* A clock behind the bucket's earns nothing until it catches up. */
  if (now_ms < t.last_ms) {
    wait += t.last_ms - now_ms;
  }
  return wait;
}

/* ---------------------------------------------------------------------- */
/* Meter */

void meter_init(struct rate_meter *m, uint64_t window_ms, uint64_t now_ms) {
  memset(m, 0, sizeof(*m));
  if (window_ms < METER_SLOTS) {
    window_ms = METER_SLOTS;
  }
  m->slot_ms = window_ms / METER_SLOTS + (window_ms % METER_SLOTS != 0);
  m->head = now_ms / m->slot_ms;
  m->start_ms = now_ms;
}

/* Moves the newest slot up to now_ms, emptying the slots it passes. */
static void meter_advance(struct rate_meter *m, uint64_t now_ms) {
  uint64_t k = now_ms / m->slot_ms;
  if (k <= m->head) {
    return;
  }
  if (k - m->head >= METER_SLOTS) {
    memset(m->bytes, 0, sizeof(m->bytes));
  } else {
    for (uint64_t i = m->head + 1; i <= k; i++) {
      m->bytes[i % METER_SLOTS] = 0;
    }
  }
  m->head = k;
}

void meter_add(struct rate_meter *m, uint64_t bytes, uint64_t now_ms) {
  assert(m->slot_ms != 0);
  meter_advance(m, now_ms);
  uint64_t *slot = &m->bytes[m->head % METER_SLOTS];
  *slot = bytes > UINT64_MAX - *slot ? UINT64_MAX : *slot + bytes;
}

uint64_t meter_rate(const struct rate_meter *m, uint64_t now_ms) {
  assert(m->slot_ms != 0);
  /* A clock behind the newest slot reads as the start of that slot. */
  uint64_t now = now_ms;
  if (now / m->slot_ms < m->head) {
    now = m->head * m->slot_ms;
  }
  uint64_t k = now / m->slot_ms;
  uint64_t first = k >= METER_SLOTS - 1 ? k - (METER_SLOTS - 1) : 0;
  /* Slots older than head - (N - 1) were overwritten; newer ones than head
   * have not been written yet and are empty. */
  uint64_t from = m->head >= METER_SLOTS - 1 ? m->head - (METER_SLOTS - 1) : 0;
  if (from < first) {
    from = first;
  }
  uint64_t sum = 0;
  for (uint64_t i = from; i <= m->head; i++) {
    uint64_t v = m->bytes[i % METER_SLOTS];
    sum = v > UINT64_MAX - sum ? UINT64_MAX : sum + v;
  }
  uint64_t begin = first * m->slot_ms;
  if (begin < m->start_ms) {
    begin = m->start_ms;
  }
  uint64_t span = now > begin ? now - begin : 0;
  if (span < m->slot_ms) {
    span = m->slot_ms;
  }
  if (sum <= UINT64_MAX / 1000u) {
    return sum * 1000u / span;
  }
  double r = (double)sum * 1000.0 / (double)span;
  return r >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)r;
}
