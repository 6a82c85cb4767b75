/* Unit tests for peer/rate.c: the token bucket behind --upload-rate and
 * --download-rate, and the sliding-window meters behind progress rates.
 *
 * Every call takes an explicit time in milliseconds; nothing sleeps or reads
 * a clock. The bucket's arithmetic is checked to the byte and to the
 * millisecond: the burst it is given, a full and an empty bucket, a block
 * larger than the burst, refills capped at the burst after any idle (also
 * one that would overflow a careless multiplication), debts from charged
 * bytes, and rate_wait_ms() as exactly the first millisecond at which
 * rate_take() succeeds, for uneven rates where a millisecond earns a
 * fraction of a byte. The meters are checked against exact figures at slot
 * edges and against a slow reference that keeps every event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "peer/rate.h"
#include "tests/lib/testutil.h"

/* The tests' own random choices (tu_rand): seeded where each test
 * starts, so that a failure replays. */
static uint64_t rng;

/* A time far from zero, as uv_now() is; a multiple of every slot width
 * used below, so that slot edges fall on round figures. */
#define T0 1000000000ull
#define KIB 1024ull
#define MIB (1024ull * 1024ull)

/* Whether rate_take(n) would succeed at t, without changing b. */
static int would_take(const struct rate_bucket *b, uint64_t n, uint64_t t) {
  struct rate_bucket c = *b;
  return rate_take(&c, n, t);
}

/* Leaves b empty at t, its clock running. */
static void drain(struct rate_bucket *b, uint64_t t) {
  rate_refill(b, t);
  if (b->tokens > 0.0) {
    assert_int_equal(rate_take(b, (uint64_t)b->tokens, t), 1);
  }
  assert_true(b->tokens == 0.0);
}

/* A bucket for bytes_per_s whose clock started long enough before t for
 * it to be full at t. */
static void init_full(struct rate_bucket *b, uint64_t bytes_per_s, uint64_t t) {
  rate_init(b, bytes_per_s, 0);
  uint64_t fill_ms = b->burst * 1000u / b->rate + 1;
  assert_true(t >= fill_ms);
  rate_refill(b, t - fill_ms);
  rate_refill(b, t);
  assert_true(b->tokens == (double)b->burst);
}

/* ---------------------------------------------------------------------- */
/* Setup */

static void init_sets_burst_to_quarter_second_with_256k_floor(void **state) {
  (void)state;
  struct rate_bucket b;

  rate_init(&b, 1, T0);
  assert_int_equal(b.rate, 1);
  assert_int_equal(b.burst, RATE_BURST_MIN);
  assert_int_equal(RATE_BURST_MIN, 256 * KIB);

  /* 1 MiB/s: a quarter is exactly the floor. */
  rate_init(&b, MIB, T0);
  assert_int_equal(b.burst, 256 * KIB);
  rate_init(&b, MIB + 4, T0);
  assert_int_equal(b.burst, 256 * KIB + 1);
  rate_init(&b, MIB - 1, T0);
  assert_int_equal(b.burst, 256 * KIB);
  rate_init(&b, 10 * MIB + 3, T0);
  assert_int_equal(b.burst, (10 * MIB + 3) / 4);
}

/* A bucket starts empty, and time before its first use earns nothing: a
 * node makes its buckets when it starts, and the seconds it then spends
 * finding a tracker and peers must not become a burst. */
static void init_starts_empty_and_idle(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 1000, T0);
  assert_true(b.tokens == 0.0);
  assert_int_equal(b.milli, 0);
  assert_false(rate_unlimited(&b));
  /* Five seconds later, the first take is refused, and the wait is
   * counted from it. */
  assert_int_equal(rate_wait_ms(&b, 100, T0 + 5000), 100);
  assert_int_equal(rate_take(&b, 100, T0 + 5000), 0);
  assert_true(b.tokens == 0.0);
  assert_int_equal(b.last_ms, T0 + 5000);
  assert_int_equal(rate_take(&b, 100, T0 + 5099), 0);
  assert_int_equal(rate_take(&b, 100, T0 + 5100), 1);
  /* A charge starts the clock too, and a refill. */
  rate_init(&b, 1000, T0);
  rate_charge(&b, 10, T0 + 7000);
  assert_true(b.tokens == -10.0);
  assert_int_equal(rate_wait_ms(&b, 1, T0 + 7000), 11);
  rate_init(&b, 1000, T0);
  rate_refill(&b, T0 + 7000);
  rate_refill(&b, T0 + 7003);
  assert_true(b.tokens == 3.0);
}

static void init_caps_absurd_rates(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, UINT64_MAX, T0);
  assert_int_equal(b.rate, RATE_MAX_BPS);
  assert_int_equal(b.burst, RATE_MAX_BPS / 4);
  assert_false(rate_unlimited(&b));
  rate_init(&b, RATE_MAX_BPS + 1, T0);
  assert_int_equal(b.rate, RATE_MAX_BPS);
  rate_init(&b, RATE_MAX_BPS, T0);
  assert_int_equal(b.rate, RATE_MAX_BPS);
  /* Drained, it comes back at the capped rate: 2^40 bytes a second is
   * 2^40 / 1000 bytes a millisecond (not a whole number). */
  drain(&b, T0);
  rate_refill(&b, T0 + 1);
  assert_true(b.tokens == (double)(RATE_MAX_BPS / 1000));
  assert_int_equal(b.milli, RATE_MAX_BPS % 1000);
}

/* ---------------------------------------------------------------------- */
/* Take */

static void take_from_full_bucket_up_to_burst(void **state) {
  (void)state;
  struct rate_bucket b;
  init_full(&b, 1000, T0);
  assert_int_equal(rate_take(&b, 100 * KIB, T0), 1);
  assert_int_equal(rate_take(&b, 100 * KIB, T0), 1);
  assert_true(b.tokens == (double)(56 * KIB));
  /* 56 KiB left: a 64 KiB block does not fit and takes nothing. */
  assert_int_equal(rate_take(&b, 64 * KIB, T0), 0);
  assert_true(b.tokens == (double)(56 * KIB));
  assert_int_equal(rate_take(&b, 56 * KIB, T0), 1);
  assert_true(b.tokens == 0.0);
  assert_int_equal(rate_take(&b, 1, T0), 0);
}

static void take_zero_bytes(void **state) {
  (void)state;
  struct rate_bucket b;
  init_full(&b, 1000, T0);
  assert_int_equal(rate_take(&b, 0, T0), 1);
  assert_true(b.tokens == (double)b.burst);
  drain(&b, T0);
  assert_int_equal(rate_take(&b, 0, T0), 1); /* 0 >= 0 */
  rate_charge(&b, 1, T0);
  assert_int_equal(rate_take(&b, 0, T0), 0); /* in debt */
  assert_int_equal(rate_wait_ms(&b, 0, T0), 1);
}

static void empty_bucket_refuses_until_refilled(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 1000, T0); /* one byte a millisecond */
  drain(&b, T0);
  assert_int_equal(rate_take(&b, 1, T0), 0);
  assert_int_equal(rate_wait_ms(&b, 1, T0), 1);
  assert_int_equal(rate_wait_ms(&b, 500, T0), 500);
  assert_int_equal(rate_take(&b, 500, T0 + 499), 0);
  assert_true(b.tokens == 499.0); /* the failed take still refilled */
  assert_int_equal(rate_take(&b, 500, T0 + 500), 1);
  assert_true(b.tokens == 0.0);
}

static void block_larger_than_burst_passes_only_when_full(void **state) {
  (void)state;
  struct rate_bucket b;
  init_full(&b, 1000, T0);
  uint64_t burst = b.burst;

  /* Not full: refused, and told to wait for a full bucket. */
  assert_int_equal(rate_take(&b, 1, T0), 1);
  assert_int_equal(rate_take(&b, MIB, T0), 0);
  assert_int_equal(rate_wait_ms(&b, MIB, T0), 1);
  assert_int_equal(rate_take(&b, MIB, T0 + 1), 1);
  /* It passes whole and leaves a debt of MiB - burst. */
  assert_true(b.tokens == (double)burst - (double)MIB);
  /* The debt is paid before anything else passes: one byte needs the
   * debt plus one byte, at one byte a millisecond. */
  uint64_t debt = MIB - burst;
  assert_int_equal(rate_wait_ms(&b, 1, T0 + 1), debt + 1);
  assert_int_equal(rate_take(&b, 1, T0 + 1 + debt), 0);
  /* The next big block waits for a full bucket again. */
  assert_int_equal(rate_take(&b, 1, T0 + 2 + debt), 1);
  assert_true(b.tokens == 0.0);
  assert_int_equal(rate_wait_ms(&b, MIB, T0 + 2 + debt), burst);
  assert_int_equal(rate_wait_ms(&b, UINT64_MAX, T0 + 2 + debt), burst);
}

/* ---------------------------------------------------------------------- */
/* Refill */

static void refill_is_exact_at_uneven_rates(void **state) {
  (void)state;
  struct rate_bucket b;
  /* 3 bytes a second: a millisecond earns 0.003 of a byte. */
  rate_init(&b, 3, T0);
  drain(&b, T0);
  for (uint64_t t = T0 + 1; t <= T0 + 1000; t++) {
    rate_refill(&b, t);
  }
  assert_true(b.tokens == 3.0);
  assert_int_equal(b.milli, 0);
  rate_refill(&b, T0 + 1333);
  assert_true(b.tokens == 3.0);
  assert_int_equal(b.milli, 999);
  rate_refill(&b, T0 + 1334);
  assert_true(b.tokens == 4.0);
  assert_int_equal(b.milli, 2);
}

static void refill_every_ms_equals_one_refill(void **state) {
  (void)state;
  static const uint64_t rates[] = {1,    3,     7,       999,
                                   1001, 65537, 1000003, 123456789};
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
    struct rate_bucket a;
    struct rate_bucket c;
    rate_init(&a, rates[r], T0);
    drain(&a, T0);
    rate_charge(&a, 12345, T0);
    c = a;
    uint64_t t = T0;
    rng = 0x9e3779b97f4a7c15u + r;
    for (int i = 0; i < 2000; i++) {
      t += tu_rand(&rng) % 5;
      rate_refill(&a, t);
    }
    rate_refill(&c, t);
    assert_true(a.tokens == c.tokens);
    assert_int_equal(a.milli, c.milli);
    assert_int_equal(a.last_ms, c.last_ms);
  }
}

static void long_idle_refills_to_burst_only(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 1000, T0);
  drain(&b, T0);
  rate_charge(&b, 5 * MIB, T0);
  rate_refill(&b, T0 + 1000ull * 1000ull * 1000ull);
  assert_true(b.tokens == (double)b.burst);
  assert_int_equal(b.milli, 0);
  assert_int_equal(rate_take(&b, b.burst + 1, T0 + 2000000000ull), 1);

  /* An idle that times the rate overflows 64 bits: 2^63 ms at 2^40 B/s. */
  rate_init(&b, RATE_MAX_BPS, 0);
  drain(&b, 0);
  rate_refill(&b, (uint64_t)1 << 63);
  assert_true(b.tokens == (double)b.burst);
  rate_init(&b, RATE_MAX_BPS, 0);
  rate_charge(&b, UINT64_MAX, 0); /* the deepest debt */
  rate_refill(&b, UINT64_MAX);
  assert_true(b.tokens == (double)b.burst);

  /* Exactly the time to fill: full; one millisecond less: one short. */
  rate_init(&b, 1000, T0);
  drain(&b, T0);
  struct rate_bucket c = b;
  rate_refill(&b, T0 + b.burst);
  assert_true(b.tokens == (double)b.burst);
  rate_refill(&c, T0 + c.burst - 1);
  assert_true(c.tokens == (double)c.burst - 1);
}

static void clock_going_backwards_earns_nothing(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 1000, T0);
  drain(&b, T0);
  rate_refill(&b, T0 - 500);
  assert_true(b.tokens == 0.0);
  assert_int_equal(b.last_ms, T0);
  assert_int_equal(rate_take(&b, 1, T0 - 500), 0);
  /* 500 ms until the clock is back at the bucket's, then 10 ms for 10. */
  assert_int_equal(rate_wait_ms(&b, 10, T0 - 500), 510);
  assert_int_equal(would_take(&b, 10, T0 + 9), 0);
  assert_int_equal(would_take(&b, 10, T0 + 10), 1);
}

/* ---------------------------------------------------------------------- */
/* Charge */

static void charge_goes_into_debt(void **state) {
  (void)state;
  struct rate_bucket b;
  init_full(&b, 1000, T0);
  rate_charge(&b, b.burst + 64 * KIB, T0);
  assert_true(b.tokens == -(double)(64 * KIB));
  assert_int_equal(rate_take(&b, 1, T0), 0);
  /* Pay 64 KiB of debt, then earn one byte. */
  assert_int_equal(rate_wait_ms(&b, 1, T0), 64 * KIB + 1);
  rate_charge(&b, 1, T0 + 10); /* 10 bytes earned meanwhile */
  assert_true(b.tokens == -(double)(64 * KIB) + 10 - 1);
}

static void charge_debt_is_bounded(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 1000, T0);
  rate_charge(&b, UINT64_MAX, T0);
  assert_true(b.tokens == -(double)RATE_MAX_DEBT);
  rate_charge(&b, 1, T0);
  assert_true(b.tokens == -(double)RATE_MAX_DEBT);
  /* The wait is still exact: debt + 1 bytes at 1 byte a millisecond. */
  assert_int_equal(rate_wait_ms(&b, 1, T0), RATE_MAX_DEBT + 1);
  /* Slowest rate and deepest debt: (2^50 + burst) s, no overflow. */
  rate_init(&b, 1, T0);
  rate_charge(&b, UINT64_MAX, T0);
  assert_int_equal(rate_wait_ms(&b, UINT64_MAX, T0),
                   (RATE_MAX_DEBT + RATE_BURST_MIN) * 1000u);
  /* A take far past the burst in debt: also bounded. */
  init_full(&b, 1000, T0);
  assert_int_equal(rate_take(&b, UINT64_MAX, T0), 1);
  assert_true(b.tokens == -(double)RATE_MAX_DEBT);
}

/* ---------------------------------------------------------------------- */
/* Wait */

/* For many rates and states: rate_wait_ms(n) is w, the bucket passes n at
 * now + w and not at now + w - 1, and the answer does not change if the
 * bucket is refilled at times in between (exact arithmetic). */
static void wait_ms_is_the_first_millisecond_take_succeeds(void **state) {
  (void)state;
  static const uint64_t rates[] = {
      1,    2,     3,       7,   999,         1000,    1001,
      4096, 65537, MIB - 1, MIB, 4 * MIB + 7, 1000003, RATE_MAX_BPS};
  rng = 0x243f6a8885a308d3u;
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
    for (int round = 0; round < 200; round++) {
      struct rate_bucket b;
      uint64_t t = T0 + tu_rand(&rng) % 1000;
      rate_init(&b, rates[r], t);
      /* Some random history: takes, charges and time. */
      for (int i = 0; i < 6; i++) {
        t += tu_rand(&rng) % 300;
        uint64_t n = tu_rand(&rng) % (2 * b.burst);
        if (tu_rand(&rng) % 3 == 0) {
          rate_charge(&b, n, t);
        } else {
          (void)rate_take(&b, n, t);
        }
      }
      uint64_t n = tu_rand(&rng) % 4 == 0 ? tu_rand(&rng) % (3 * b.burst)
                                          : tu_rand(&rng) % (128 * KIB);
      uint64_t w = rate_wait_ms(&b, n, t);
      assert_int_equal(would_take(&b, n, t + w), 1);
      if (w == 0) {
        continue;
      }
      assert_int_equal(would_take(&b, n, t + w - 1), 0);
      /* A caller polling at random times before w sees no success and
       * then the same answer. */
      struct rate_bucket c = b;
      uint64_t u = t;
      for (int i = 0; i < 4 && u + 1 < t + w; i++) {
        u += 1 + tu_rand(&rng) % (t + w - 1 - u);
        assert_int_equal(rate_take(&c, n, u), 0);
        assert_int_equal(u + rate_wait_ms(&c, n, u), t + w);
      }
    }
  }
}

static void wait_ms_exact_figures(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 3, T0);
  drain(&b, T0);
  assert_int_equal(rate_wait_ms(&b, 1, T0), 334);  /* ceil(1000 / 3) */
  assert_int_equal(rate_wait_ms(&b, 2, T0), 667);  /* ceil(2000 / 3) */
  assert_int_equal(rate_wait_ms(&b, 3, T0), 1000); /* exactly */
  assert_int_equal(would_take(&b, 1, T0 + 333), 0);
  assert_int_equal(would_take(&b, 1, T0 + 334), 1);

  /* 1 MiB/s, empty: a 64 KiB block needs 62.5 ms, so 63. */
  rate_init(&b, MIB, T0);
  drain(&b, T0);
  assert_int_equal(rate_wait_ms(&b, 64 * KIB, T0), 63);
  assert_int_equal(rate_wait_ms(&b, 64 * KIB, T0 + 62), 1);
  assert_int_equal(rate_wait_ms(&b, 64 * KIB, T0 + 63), 0);
  /* The wait does not change the bucket. */
  assert_true(b.tokens == 0.0);
  assert_int_equal(b.last_ms, T0);
}

/* ---------------------------------------------------------------------- */
/* Unlimited */

static void unlimited_bucket_always_passes(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 0, T0);
  assert_true(rate_unlimited(&b));
  assert_int_equal(rate_take(&b, UINT64_MAX, T0), 1);
  assert_int_equal(rate_take(&b, UINT64_MAX, 0), 1);
  rate_charge(&b, UINT64_MAX, T0);
  rate_refill(&b, UINT64_MAX);
  assert_int_equal(rate_take(&b, 1, T0), 1);
  assert_int_equal(rate_wait_ms(&b, UINT64_MAX, T0), 0);
  assert_int_equal(rate_wait_ms(&b, 1, 0), 0);
  assert_true(b.tokens == 0.0);
}

/* ---------------------------------------------------------------------- */
/* Changing the rate (rate_set) */

static void set_earns_at_the_old_rate_up_to_the_change(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 1000, T0);
  rate_refill(&b, T0); /* the clock starts */
  rate_set(&b, 2000, T0 + 100);
  assert_int_equal(b.rate, 2000);
  assert_true(b.tokens == 100.0); /* 100 ms at 1000 B/s */
  rate_refill(&b, T0 + 200);
  assert_true(b.tokens == 300.0); /* then 100 ms at 2000 B/s */
}

static void set_lower_holds_tokens_to_the_new_burst(void **state) {
  (void)state;
  struct rate_bucket b;
  init_full(&b, 10 * MIB, T0);
  assert_int_equal(b.burst, 10 * MIB / 4);
  rate_set(&b, MIB, T0);
  assert_int_equal(b.burst, RATE_BURST_MIN);
  assert_true(b.tokens == (double)RATE_BURST_MIN);
  assert_int_equal(b.milli, 0);
  assert_int_equal(rate_take(&b, RATE_BURST_MIN, T0), 1);
  /* From then on, the new rate: 1 KiB takes a millisecond at 1 MiB/s. */
  assert_int_equal(rate_wait_ms(&b, KIB, T0), 1);
}

static void set_lower_forgives_debt_beyond_one_new_burst(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, 10 * MIB, T0);
  rate_charge(&b, 8 * MIB, T0);
  assert_true(b.tokens == -(double)(8 * MIB));
  rate_set(&b, MIB, T0);
  assert_true(b.tokens == -(double)RATE_BURST_MIN);
  /* (256 KiB + 1) bytes at 1 MiB/s: 250.0009... ms, rounded up. */
  assert_int_equal(rate_wait_ms(&b, 1, T0), 251);
}

static void set_higher_keeps_the_debt_and_repays_faster(void **state) {
  (void)state;
  struct rate_bucket b;
  rate_init(&b, MIB, T0);
  rate_charge(&b, 100 * KIB, T0);
  assert_int_equal(rate_wait_ms(&b, 1, T0), 98); /* 102401 B at 1 MiB/s */
  rate_set(&b, 4 * MIB, T0);
  assert_int_equal(b.burst, MIB);
  assert_true(b.tokens == -(double)(100 * KIB));
  assert_int_equal(rate_wait_ms(&b, 1, T0), 25); /* at 4 MiB/s */
}

static void set_to_and_from_unlimited(void **state) {
  (void)state;
  struct rate_bucket b, fresh;
  rate_init(&b, MIB, T0);
  rate_charge(&b, 4 * MIB, T0);
  rate_set(&b, 0, T0 + 10);
  assert_true(rate_unlimited(&b));
  assert_int_equal(rate_take(&b, UINT64_MAX, T0 + 10), 1);
  assert_int_equal(rate_wait_ms(&b, UINT64_MAX, T0 + 10), 0);
  rate_set(&b, 0, T0 + 20); /* unlimited stays unlimited */
  assert_true(rate_unlimited(&b));
  /* A limit again: the bucket is a fresh one, empty and idle. */
  rate_set(&b, 3000, T0 + 30);
  rate_init(&fresh, 3000, T0 + 30);
  assert_int_equal(b.rate, fresh.rate);
  assert_int_equal(b.burst, fresh.burst);
  assert_true(b.tokens == 0.0);
  assert_int_equal(b.milli, 0);
  assert_int_equal(b.started, 0);
  assert_int_equal(rate_wait_ms(&b, 300, T0 + 5000), 100);
  /* An absurd rate is capped as rate_init caps it. */
  rate_set(&b, UINT64_MAX, T0 + 40);
  assert_int_equal(b.rate, RATE_MAX_BPS);
}

/* ---------------------------------------------------------------------- */
/* Over time */

/* A sender that sends 64 KiB blocks as fast as the bucket lets it, waking
 * exactly when rate_wait_ms says: over 60 s it sends 60 s at the rate (the
 * bucket starts empty), less at most one block. */
static void sender_keeps_long_run_rate(void **state) {
  (void)state;
  static const uint64_t rates[] = {10 * KIB, 100 * KIB + 1, MIB, 30 * MIB};
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
    struct rate_bucket b;
    uint64_t block = 64 * KIB;
    uint64_t sent = 0;
    uint64_t t = T0;
    uint64_t end = T0 + 60000;
    rate_init(&b, rates[r], t);
    while (t <= end) {
      if (rate_take(&b, block, t)) {
        sent += block;
        continue;
      }
      uint64_t w = rate_wait_ms(&b, block, t);
      assert_true(w > 0);
      t += w;
    }
    uint64_t most = rates[r] * 60u;
    assert_true(sent <= most);
    assert_true(sent + block > most);
  }
}

/* A receiver that charges every block and stops reading while in debt
 * (waiting rate_wait_ms(0)): the average again holds. */
static void receiver_charging_keeps_long_run_rate(void **state) {
  (void)state;
  struct rate_bucket b;
  uint64_t rate = 200 * KIB;
  uint64_t got = 0;
  uint64_t t = T0;
  rate_init(&b, rate, t);
  while (t <= T0 + 30000) {
    uint64_t w = rate_wait_ms(&b, 0, t);
    if (w != 0) {
      t += w;
      continue;
    }
    rate_charge(&b, 100 * KIB, t); /* larger than what was earned */
    got += 100 * KIB;
  }
  /* got + tokens = 30 s of rate (the bucket starts empty), and the bucket
   * ends in debt of less than one charge. */
  uint64_t most = rate * 30u;
  assert_true(got > most);
  assert_true(got <= most + 100 * KIB);
}

/* A sender that takes before it sends: in the first second after its
 * first take, however long after rate_init that comes, it sends at most one
 * second at the rate. */
static void sender_first_second_holds_the_cap(void **state) {
  (void)state;
  static const uint64_t rates[] = {10 * KIB, 100 * KIB + 1, MIB, 4 * MIB + 7,
                                   30 * MIB};
  static const uint64_t idles[] = {0, 1, 250, 3000};
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
    for (size_t k = 0; k < sizeof(idles) / sizeof(idles[0]); k++) {
      struct rate_bucket b;
      uint64_t block = 64 * KIB;
      uint64_t sent = 0;
      uint64_t first = T0 + idles[k];
      uint64_t t = first;
      rate_init(&b, rates[r], T0);
      while (t < first + 1000) {
        if (rate_take(&b, block, t)) {
          sent += block;
          continue;
        }
        t += rate_wait_ms(&b, block, t);
      }
      if (sent > rates[r]) {
        fail_msg("%llu B/s after %llu ms idle: %llu B in the first second",
                 (unsigned long long)rates[r], (unsigned long long)idles[k],
                 (unsigned long long)sent);
      }
    }
  }
}

/* A receiver that charges what it read and reads again once the bucket is
 * out of debt (node.c waits for rate_wait_ms(1) == 0), each read at most a
 * quarter second at the rate and at least 16 KiB (session.c): in the first
 * second it gets at most one second at the rate plus one read, whatever
 * the read sizes; with full reads, exactly the rate. */
static void receiver_first_second_holds_the_cap_plus_one_read(void **state) {
  (void)state;
  static const uint64_t rates[] = {16 * KIB, 20 * KIB, 100 * KIB + 1, MIB,
                                   10 * MIB};
  static const uint64_t idles[] = {0, 3000};
  rng = 0x6a09e667f3bcc908u;
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
    uint64_t read_max = rates[r] / 4 > 16 * KIB ? rates[r] / 4 : 16 * KIB;
    for (size_t k = 0; k < sizeof(idles) / sizeof(idles[0]); k++) {
      for (int round = 0; round < 50; round++) {
        struct rate_bucket b;
        uint64_t got = 0;
        uint64_t first = T0 + idles[k];
        uint64_t t = first;
        rate_init(&b, rates[r], T0);
        while (t < first + 1000) {
          uint64_t w = rate_wait_ms(&b, 1, t);
          if (w != 0) {
            t += w;
            continue;
          }
          uint64_t n = round == 0 ? read_max : 1 + tu_rand(&rng) % read_max;
          rate_charge(&b, n, t);
          got += n;
          /* The next read needs the socket to have more: a millisecond. */
          t += 1;
        }
        if (got > rates[r] + read_max ||
            (round == 0 && rates[r] / 4 >= 16 * KIB && got > rates[r])) {
          fail_msg("%llu B/s after %llu ms idle, %s reads: %llu B in the "
                   "first second",
                   (unsigned long long)rates[r], (unsigned long long)idles[k],
                   round == 0 ? "full" : "random", (unsigned long long)got);
        }
      }
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Meter */

static void meter_slot_width_follows_window(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 5000, T0);
  assert_int_equal(m.slot_ms, 250);
  meter_init(&m, 20000, T0);
  assert_int_equal(m.slot_ms, 1000);
  meter_init(&m, 21, T0);
  assert_int_equal(m.slot_ms, 2);
  meter_init(&m, 0, T0);
  assert_int_equal(m.slot_ms, 1);
  meter_init(&m, UINT64_MAX, T0);
  assert_int_equal(m.slot_ms, UINT64_MAX / METER_SLOTS + 1);
  meter_add(&m, 5, T0);
  assert_int_equal(meter_rate(&m, T0), 0); /* 5000 / (2^64 / 20) */
}

static void meter_empty_reads_zero(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 5000, T0);
  assert_int_equal(meter_rate(&m, T0), 0);
  assert_int_equal(meter_rate(&m, T0 + 123456), 0);
  assert_int_equal(meter_rate(&m, 0), 0);
}

static void meter_steady_flow_exact(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 5000, T0);
  /* 1000 bytes every 250 ms: 4000 B/s. */
  for (uint64_t i = 0; i < 40; i++) {
    meter_add(&m, 1000, T0 + i * 250);
  }
  /* At T0 + 10000 a new, empty slot starts: the window holds 19 slots of
   * 1000 bytes over 4750 ms. */
  assert_int_equal(meter_rate(&m, T0 + 10000), 4000);
  /* Just before it: 20 slots over 4999 ms. */
  assert_int_equal(meter_rate(&m, T0 + 9999), 20000u * 1000u / 4999u);
  /* Idle: the slots leave the window one by one. */
  assert_int_equal(meter_rate(&m, T0 + 10000 + 250 * 9),
                   10000u * 1000u / (19u * 250u));
  assert_int_equal(meter_rate(&m, T0 + 10000 + 250 * 18),
                   1000u * 1000u / (19u * 250u));
  assert_int_equal(meter_rate(&m, T0 + 10000 + 250 * 19), 0);
  assert_int_equal(meter_rate(&m, UINT64_MAX), 0);
}

static void meter_young_divides_by_age(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 20000, T0 + 300);
  meter_add(&m, 64 * KIB, T0 + 310);
  /* 10 ms old: divided by one slot (1 s), not by 10 ms. */
  assert_int_equal(meter_rate(&m, T0 + 310), 64 * KIB);
  assert_int_equal(meter_rate(&m, T0 + 1300), 64 * KIB);
  assert_int_equal(meter_rate(&m, T0 + 2300), 32 * KIB);
  meter_add(&m, 64 * KIB, T0 + 4300);
  assert_int_equal(meter_rate(&m, T0 + 4300), 32 * KIB);
  /* Still younger than the window at 19.5 s: divided by 19.2 s. */
  assert_int_equal(meter_rate(&m, T0 + 19500), 128 * KIB * 1000u / 19200u);
  /* Past the window the start no longer matters: the first block left
   * with its slot, and the window is 19 slots plus 500 ms. */
  assert_int_equal(meter_rate(&m, T0 + 20500), 64 * KIB * 1000u / 19500u);
  assert_int_equal(meter_rate(&m, T0 + 30500), 0);
}

static void meter_gap_clears_passed_slots(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 20000, T0);
  for (uint64_t i = 0; i < METER_SLOTS; i++) {
    meter_add(&m, 100, T0 + i * 1000);
  }
  /* Four slots on: the four oldest leave, nothing new arrives. */
  meter_add(&m, 0, T0 + 23000);
  assert_int_equal(meter_rate(&m, T0 + 23000), 1600u * 1000u / 19000u);
  assert_int_equal(m.bytes[T0 / 1000 % METER_SLOTS], 0);
  assert_int_equal(m.bytes[(T0 / 1000 + 3) % METER_SLOTS], 0);
  assert_int_equal(m.bytes[(T0 / 1000 + 4) % METER_SLOTS], 100);
  /* Skip more than a window: everything old is gone. */
  meter_add(&m, 7000, T0 + 50000);
  assert_int_equal(meter_rate(&m, T0 + 50000), 7000u * 1000u / 19000u);
  assert_int_equal(m.bytes[(T0 + 50000) / 1000 % METER_SLOTS], 7000);
  uint64_t total = 0;
  for (unsigned i = 0; i < METER_SLOTS; i++) {
    total += m.bytes[i];
  }
  assert_int_equal(total, 7000);
}

static void meter_clock_going_backwards(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 5000, T0);
  meter_add(&m, 1000, T0 + 2000);
  /* An earlier time counts in the newest slot and reads as its start. */
  meter_add(&m, 1000, T0 + 100);
  assert_int_equal(m.bytes[(T0 + 2000) / 250 % METER_SLOTS], 2000);
  assert_int_equal(meter_rate(&m, T0 + 100), 2000u * 1000u / 2000u);
  assert_int_equal(meter_rate(&m, T0 + 2000), 1000);
  /* Before the meter started. */
  assert_int_equal(meter_rate(&m, 0), 1000);
}

static void meter_saturates(void **state) {
  (void)state;
  struct rate_meter m;
  meter_init(&m, 5000, T0);
  meter_add(&m, UINT64_MAX, T0);
  meter_add(&m, UINT64_MAX, T0);
  meter_add(&m, UINT64_MAX, T0 + 250);
  assert_int_equal(m.bytes[T0 / 250 % METER_SLOTS], UINT64_MAX);
  /* 2^64 * 1000 / 250 does not fit: the rate saturates. */
  assert_int_equal(meter_rate(&m, T0 + 250), UINT64_MAX);
  /* Large but representable: 2^62 bytes over 5 s. */
  meter_init(&m, 5000, T0);
  meter_add(&m, (uint64_t)1 << 62, T0);
  uint64_t r = meter_rate(&m, T0 + 4999);
  assert_true(r > ((uint64_t)1 << 62) / 5 && r < ((uint64_t)1 << 62));
}

/* The meter against a reference that keeps every event: same slots, same
 * window, computed the slow way, under random times and gaps. */
static void meter_matches_reference(void **state) {
  (void)state;
  enum { EVENTS = 3000 };
  static uint64_t ev_t[EVENTS];
  static uint64_t ev_n[EVENTS];
  static const uint64_t windows[] = {5000, 20000, 37, 1};
  rng = 0x13198a2e03707344u;
  for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
    struct rate_meter m;
    uint64_t t = T0 + tu_rand(&rng) % 999;
    uint64_t start = t;
    meter_init(&m, windows[w], t);
    uint64_t slot = m.slot_ms;
    uint64_t newest = t / slot;
    for (int i = 0; i < EVENTS; i++) {
      uint64_t step = tu_rand(&rng) % 8 == 0 ? tu_rand(&rng) % (slot * 30 + 1)
                                             : tu_rand(&rng) % (slot + 1);
      t += step;
      uint64_t n = tu_rand(&rng) % 100000;
      meter_add(&m, n, t);
      if (t / slot > newest) {
        newest = t / slot;
      }
      ev_t[i] = newest; /* the slot it was counted in */
      ev_n[i] = n;
      uint64_t now = t + tu_rand(&rng) % (slot * 3);
      uint64_t k = now / slot;
      uint64_t first = k >= METER_SLOTS - 1 ? k - (METER_SLOTS - 1) : 0;
      uint64_t sum = 0;
      for (int j = 0; j <= i; j++) {
        if (ev_t[j] >= first && ev_t[j] <= k) {
          sum += ev_n[j];
        }
      }
      uint64_t begin = first * slot > start ? first * slot : start;
      uint64_t span = now - begin < slot ? slot : now - begin;
      assert_int_equal(meter_rate(&m, now), sum * 1000u / span);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(init_sets_burst_to_quarter_second_with_256k_floor),
      cmocka_unit_test(init_starts_empty_and_idle),
      cmocka_unit_test(init_caps_absurd_rates),
      cmocka_unit_test(take_from_full_bucket_up_to_burst),
      cmocka_unit_test(take_zero_bytes),
      cmocka_unit_test(empty_bucket_refuses_until_refilled),
      cmocka_unit_test(block_larger_than_burst_passes_only_when_full),
      cmocka_unit_test(refill_is_exact_at_uneven_rates),
      cmocka_unit_test(refill_every_ms_equals_one_refill),
      cmocka_unit_test(long_idle_refills_to_burst_only),
      cmocka_unit_test(clock_going_backwards_earns_nothing),
      cmocka_unit_test(charge_goes_into_debt),
      cmocka_unit_test(charge_debt_is_bounded),
      cmocka_unit_test(wait_ms_is_the_first_millisecond_take_succeeds),
      cmocka_unit_test(wait_ms_exact_figures),
      cmocka_unit_test(unlimited_bucket_always_passes),
      cmocka_unit_test(set_earns_at_the_old_rate_up_to_the_change),
      cmocka_unit_test(set_lower_holds_tokens_to_the_new_burst),
      cmocka_unit_test(set_lower_forgives_debt_beyond_one_new_burst),
      cmocka_unit_test(set_higher_keeps_the_debt_and_repays_faster),
      cmocka_unit_test(set_to_and_from_unlimited),
      cmocka_unit_test(sender_keeps_long_run_rate),
      cmocka_unit_test(receiver_charging_keeps_long_run_rate),
      cmocka_unit_test(sender_first_second_holds_the_cap),
      cmocka_unit_test(receiver_first_second_holds_the_cap_plus_one_read),
      cmocka_unit_test(meter_slot_width_follows_window),
      cmocka_unit_test(meter_empty_reads_zero),
      cmocka_unit_test(meter_steady_flow_exact),
      cmocka_unit_test(meter_young_divides_by_age),
      cmocka_unit_test(meter_gap_clears_passed_slots),
      cmocka_unit_test(meter_clock_going_backwards),
      cmocka_unit_test(meter_saturates),
      cmocka_unit_test(meter_matches_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
