/* Unit tests for tracker/ratelimit.c: per-address token buckets.
 *
 * Every test passes explicit times (milliseconds) to ratelimit_take; nothing
 * sleeps or reads a clock. The bucket arithmetic is checked to the
 * millisecond: an address gets exactly `burst` requests at one instant, the
 * refusal says exactly when the next token is there, and tokens come back at
 * `rate` a second up to `burst` and no further. Addresses are IPv4 hosts
 * and IPv6 /64 networks; the table has a fixed size and forgets the fullest
 * bucket of a sample when it is full.
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

#include "common/error.h"
#include "tests/lib/addr.h"
#include "tracker/ratelimit.h"

/* A time far from zero, as uv_now() is (milliseconds since boot). */
#define T0 1000000000ull

/* ---------------------------------------------------------------------- */
/* Helpers */

static int take(struct ratelimit *rl, uint8_t family, const uint8_t addr[16],
                uint64_t now_ms, uint32_t *retry) {
  uint32_t r = 0xdeadbeefu;
  int err = ratelimit_take(rl, family, addr, now_ms, &r);
  if (err == 0) {
    assert_int_equal(r, 0); /* success always clears the retry hint */
  } else {
    assert_int_equal(err, SHOAL_ERATE);
  }
  if (retry != NULL) {
    *retry = r;
  }
  return err;
}

/* Takes tokens at one instant until refused; returns how many were given
 * (stops at limit to keep a broken limiter from looping forever). */
static unsigned drain(struct ratelimit *rl, uint8_t family,
                      const uint8_t addr[16], uint64_t now_ms, unsigned limit,
                      uint32_t *retry) {
  unsigned n = 0;
  while (n < limit && take(rl, family, addr, now_ms, retry) == 0) {
    n++;
  }
  return n;
}

static uint32_t ceil_div(uint32_t a, uint32_t b) {
  return (a + b - 1) / b;
}

/* ---------------------------------------------------------------------- */
/* Tests */

static void test_fresh_address_gets_exactly_burst_at_one_instant(void **st) {
  static const uint32_t bursts[] = {1, 2, 5, 200, 1000};
  uint8_t a[16];
  (void)st;
  addr_v4(a, 192, 0, 2, 1);
  for (size_t k = 0; k < sizeof(bursts) / sizeof(bursts[0]); k++) {
    struct ratelimit rl;
    uint32_t retry = 0;
    assert_int_equal(ratelimit_init(&rl, 10, bursts[k], 64), 0);
    assert_int_equal(drain(&rl, 4, a, T0, bursts[k] + 10, &retry), bursts[k]);
    assert_int_equal(retry, 100); /* ceil(1000 / 10) */
    /* Refused again at the same instant: a refusal costs nothing but
     * gives nothing either. */
    assert_int_equal(take(&rl, 4, a, T0, &retry), SHOAL_ERATE);
    assert_int_equal(retry, 100);
    ratelimit_close(&rl);
  }
}

static void test_retry_after_is_the_time_to_one_token_rounded_up(void **st) {
  static const uint32_t rates[] = {1, 2, 3, 7, 50, 333, 999, 1000, 1001, 5000};
  uint8_t a[16];
  (void)st;
  addr_v4(a, 198, 51, 100, 7);
  for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
    struct ratelimit rl;
    uint32_t rate = rates[k];
    uint32_t retry = 0;
    uint32_t want = ceil_div(1000, rate);
    assert_int_equal(ratelimit_init(&rl, rate, 3, 64), 0);
    assert_int_equal(drain(&rl, 4, a, T0, 100, &retry), 3);
    assert_int_equal(retry, want);
    /* The hint is exact: one millisecond early is still too early, and at
     * the hinted time the request goes through. */
    if (want > 1) {
      assert_int_equal(take(&rl, 4, a, T0 + want - 1, &retry), SHOAL_ERATE);
      assert_true(retry >= 1);
    }
    assert_int_equal(take(&rl, 4, a, T0 + want, &retry), 0);
    ratelimit_close(&rl);
  }
  /* The arithmetic by hand for the rates the brief names. */
  assert_int_equal(ceil_div(1000, 1), 1000);
  assert_int_equal(ceil_div(1000, 3), 334);
  assert_int_equal(ceil_div(1000, 50), 20);
  assert_int_equal(ceil_div(1000, 1000), 1);
}

static void test_retry_after_counts_a_partly_refilled_token(void **st) {
  struct ratelimit rl;
  uint8_t a[16];
  uint32_t retry = 0;
  (void)st;
  addr_v4(a, 203, 0, 113, 9);
  assert_int_equal(ratelimit_init(&rl, 3, 1, 64), 0);
  assert_int_equal(take(&rl, 4, a, T0, &retry), 0);
  /* 100 ms later the bucket holds 0.3 tokens; 0.7 more take 700/3 ms. */
  assert_int_equal(take(&rl, 4, a, T0 + 100, &retry), SHOAL_ERATE);
  assert_int_equal(retry, 234);
  assert_int_equal(take(&rl, 4, a, T0 + 100 + 233, &retry), SHOAL_ERATE);
  assert_int_equal(retry, 1);
  assert_int_equal(take(&rl, 4, a, T0 + 100 + 234, &retry), 0);
  ratelimit_close(&rl);
}

static void test_tokens_come_back_at_rate_per_second(void **st) {
  struct ratelimit rl;
  uint8_t a[16];
  uint32_t retry = 0;
  (void)st;
  addr_v4(a, 10, 0, 0, 1);
  assert_int_equal(ratelimit_init(&rl, 10, 20, 64), 0);
  assert_int_equal(drain(&rl, 4, a, T0, 100, &retry), 20);
  /* One token every 100 ms, and not a moment sooner. */
  for (uint64_t k = 1; k <= 30; k++) {
    uint64_t t = T0 + k * 100;
    assert_int_equal(take(&rl, 4, a, t - 1, &retry), SHOAL_ERATE);
    assert_int_equal(retry, 1);
    assert_int_equal(take(&rl, 4, a, t, &retry), 0);
    assert_int_equal(take(&rl, 4, a, t, &retry), SHOAL_ERATE);
    assert_int_equal(retry, 100);
  }
  /* Half a second of idling gives five tokens. */
  uint64_t t = T0 + 30 * 100 + 500;
  assert_int_equal(drain(&rl, 4, a, t, 100, &retry), 5);
  /* A whole second gives `rate`. */
  assert_int_equal(drain(&rl, 4, a, t + 1000, 100, &retry), 10);
  ratelimit_close(&rl);
}

static void test_long_idle_refills_to_burst_and_no_more(void **st) {
  /* From just long enough (burst / rate seconds at rate 1) to centuries;
   * 2^33 ms times 2^31 a second and 2^50 ms times 2^20 are 2^64. */
  static const uint64_t idles[] = {
      7000, 60000, 86400000ull, 1ull << 33, 1ull << 40, 1ull << 50,
  };
  static const uint32_t rates[] = {1, 50, 1u << 20, 1u << 31, UINT32_MAX};
  uint8_t a[16];
  (void)st;
  addr_v4(a, 10, 0, 0, 2);
  for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
    for (size_t k = 0; k < sizeof(idles) / sizeof(idles[0]); k++) {
      struct ratelimit rl;
      uint32_t retry = 0;
      assert_int_equal(ratelimit_init(&rl, rates[r], 7, 64), 0);
      assert_int_equal(drain(&rl, 4, a, T0, 100, &retry), 7);
      /* However long the address was away, and however large the product
       * of idle time and rate, it comes back to exactly a full bucket. */
      assert_int_equal(drain(&rl, 4, a, T0 + idles[k], 100, &retry), 7);
      ratelimit_close(&rl);
    }
  }
}

static void test_time_going_backwards_adds_no_tokens(void **st) {
  struct ratelimit rl;
  uint8_t a[16];
  uint32_t retry = 0;
  (void)st;
  addr_v4(a, 10, 0, 0, 3);
  assert_int_equal(ratelimit_init(&rl, 10, 4, 64), 0);
  assert_int_equal(drain(&rl, 4, a, T0, 100, &retry), 4);
  /* Earlier times (even zero) neither refill nor crash. */
  assert_int_equal(take(&rl, 4, a, T0 - 5000, &retry), SHOAL_ERATE);
  assert_int_equal(retry, 100);
  assert_int_equal(take(&rl, 4, a, 0, &retry), SHOAL_ERATE);
  assert_int_equal(retry, 100);
  /* Back at the latest time the bucket is as empty as it was: the trip
   * into the past did not move its clock back and earn the gap twice. */
  assert_int_equal(take(&rl, 4, a, T0, &retry), SHOAL_ERATE);
  assert_int_equal(take(&rl, 4, a, T0 + 99, &retry), SHOAL_ERATE);
  assert_int_equal(take(&rl, 4, a, T0 + 100, &retry), 0);
  assert_int_equal(take(&rl, 4, a, T0 + 100, &retry), SHOAL_ERATE);
  /* A partly spent bucket does not grow going back in time either. */
  assert_int_equal(drain(&rl, 4, a, T0 + 10000, 100, &retry), 4);
  assert_int_equal(drain(&rl, 4, a, T0 + 5000, 100, &retry), 0);
  ratelimit_close(&rl);
}

static void test_ipv4_addresses_have_separate_buckets(void **st) {
  struct ratelimit rl;
  uint8_t a[16], b[16], c[16];
  uint32_t retry = 0;
  (void)st;
  addr_v4(a, 1, 2, 3, 4);
  addr_v4(b, 1, 2, 3, 5);
  addr_v4(c, 129, 2, 3, 4);
  assert_int_equal(ratelimit_init(&rl, 1, 3, 64), 0);
  assert_int_equal(drain(&rl, 4, a, T0, 100, &retry), 3);
  assert_int_equal(drain(&rl, 4, b, T0, 100, &retry), 3);
  assert_int_equal(drain(&rl, 4, c, T0, 100, &retry), 3);
  /* Each one's spending left the others' buckets alone. */
  assert_int_equal(take(&rl, 4, a, T0, &retry), SHOAL_ERATE);
  assert_int_equal(rl.count, 3);
  /* Every single-bit change of the address is another host. */
  for (unsigned bit = 0; bit < 32; bit++) {
    uint8_t d[16];
    memcpy(d, a, 16);
    d[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (memcmp(d, b, 16) == 0 || memcmp(d, c, 16) == 0) {
      continue;
    }
    assert_int_equal(take(&rl, 4, d, T0, &retry), 0);
  }
  ratelimit_close(&rl);
}

static void test_ipv4_bucket_ignores_bytes_past_the_address(void **st) {
  struct ratelimit rl;
  uint8_t a[16], b[16];
  uint32_t retry = 0;
  (void)st;
  addr_v4(a, 1, 2, 3, 4);
  memcpy(b, a, 16);
  memset(b + 4, 0xee, 12);
  assert_int_equal(ratelimit_init(&rl, 1, 3, 64), 0);
  assert_int_equal(drain(&rl, 4, a, T0, 100, &retry), 3);
  assert_int_equal(take(&rl, 4, b, T0, &retry), SHOAL_ERATE);
  ratelimit_close(&rl);
}

static void test_ipv6_addresses_share_a_bucket_per_64(void **st) {
  struct ratelimit rl;
  uint8_t a[16];
  uint32_t retry = 0;
  (void)st;
  addr_v6(a, 1, 1);
  assert_int_equal(ratelimit_init(&rl, 1, 3, 256), 0);
  assert_int_equal(drain(&rl, 6, a, T0, 100, &retry), 3);
  /* Any change in the interface half (bytes 8..15) is the same host. */
  for (unsigned bit = 64; bit < 128; bit++) {
    uint8_t d[16];
    memcpy(d, a, 16);
    d[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(take(&rl, 6, d, T0, &retry), SHOAL_ERATE);
    assert_int_equal(retry, 1000);
  }
  assert_int_equal(rl.count, 1);
  /* Any change in the network half (bytes 0..7) is another /64. */
  for (unsigned bit = 0; bit < 64; bit++) {
    uint8_t d[16];
    memcpy(d, a, 16);
    d[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(take(&rl, 6, d, T0, &retry), 0);
  }
  assert_int_equal(rl.count, 65);
  ratelimit_close(&rl);
}

static void test_ipv4_and_ipv6_with_the_same_bytes_do_not_share(void **st) {
  struct ratelimit rl;
  uint8_t v4[16], v6[16];
  uint32_t retry = 0;
  (void)st;
  addr_v4(v4, 1, 2, 3, 4);
  /* 0102:0304:0000:0000:: has exactly the bytes of 1.2.3.4 padded with
   * zeros: only the family tells them apart. */
  memset(v6, 0, 16);
  memcpy(v6, v4, 4);
  assert_int_equal(ratelimit_init(&rl, 1, 2, 64), 0);
  assert_int_equal(drain(&rl, 4, v4, T0, 100, &retry), 2);
  assert_int_equal(drain(&rl, 6, v6, T0, 100, &retry), 2);
  /* And the other way round, on fresh buckets. */
  addr_v4(v4, 5, 6, 7, 8);
  memset(v6, 0, 16);
  memcpy(v6, v4, 4);
  memset(v6 + 8, 0x11, 8);
  assert_int_equal(drain(&rl, 6, v6, T0, 100, &retry), 2);
  assert_int_equal(drain(&rl, 4, v4, T0, 100, &retry), 2);
  assert_int_equal(rl.count, 4);
  ratelimit_close(&rl);
}

/* The i-th address of the eviction test: IPv4 and IPv6 in turn. */
static uint8_t nth_address(uint32_t i, uint8_t addr[16]) {
  if (i % 2 == 0) {
    addr_v4(addr, 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);
    return 4;
  }
  addr_v6(addr, (uint16_t)i, 1);
  return 6;
}

static void test_full_table_evicts_and_keeps_limiting(void **st) {
  enum { CAP = 8 };
  struct ratelimit rl;
  uint32_t retry = 0;
  (void)st;
  /* Eight slots and a sample of RATELIMIT_SAMPLE (8) sees every bucket, so
   * the victim is always the fullest one. With time moving one millisecond
   * per address, the oldest bucket has refilled the most, so the table
   * always holds exactly the last eight addresses, each of them spent. */
  assert_true(RATELIMIT_SAMPLE >= CAP);
  assert_int_equal(ratelimit_init(&rl, 1, 2, CAP), 0);
  for (uint32_t i = 0; i < 10000; i++) {
    uint8_t a[16];
    uint64_t now = T0 + i;
    uint8_t fam = nth_address(i, a);
    /* A new address always starts with a full bucket, table full or not. */
    assert_int_equal(drain(&rl, fam, a, now, 10, &retry), 2);
    assert_int_equal(retry, 1000);
    /* And is refused on the very next call. */
    assert_int_equal(take(&rl, fam, a, now, &retry), SHOAL_ERATE);
    assert_true(rl.count <= CAP);
    /* The addresses still in the table are still refused: the eviction
     * forgot the oldest and moved no one else out of reach. In particular
     * the address refused just before this one, untouched since, is. */
    for (uint32_t back = 1; back < CAP && back <= i; back++) {
      uint8_t b[16];
      uint8_t bfam = nth_address(i - back, b);
      assert_int_equal(take(&rl, bfam, b, now, &retry), SHOAL_ERATE);
      assert_int_equal(rl.count, i + 1 < CAP ? i + 1 : CAP);
    }
  }
  assert_int_equal(rl.count, CAP);
  ratelimit_close(&rl);
}

static void test_full_table_forgets_an_unspent_bucket_first(void **st) {
  struct ratelimit rl;
  uint32_t retry = 0;
  uint8_t a[16];
  (void)st;
  assert_int_equal(ratelimit_init(&rl, 1, 2, 8), 0);
  /* Seven addresses spend everything, one spends nothing... */
  for (uint8_t i = 0; i < 7; i++) {
    addr_v4(a, 10, 1, 0, i);
    assert_int_equal(drain(&rl, 4, a, T0, 10, &retry), 2);
  }
  addr_v4(a, 10, 1, 0, 99);
  assert_int_equal(take(&rl, 4, a, T0, &retry), 0);
  assert_int_equal(rl.count, 8);
  /* ...and a newcomer pushes out the one with the most left, so none of
   * the seven gets a fresh allowance out of the table being full. */
  addr_v4(a, 10, 2, 0, 0);
  assert_int_equal(take(&rl, 4, a, T0, &retry), 0);
  assert_int_equal(rl.count, 8);
  for (uint8_t i = 0; i < 7; i++) {
    addr_v4(a, 10, 1, 0, i);
    assert_int_equal(take(&rl, 4, a, T0, &retry), SHOAL_ERATE);
  }
  ratelimit_close(&rl);
}

static void test_invalid_init_is_refused(void **st) {
  struct ratelimit rl;
  (void)st;
  memset(&rl, 0xa5, sizeof(rl));
  assert_int_equal(ratelimit_init(&rl, 0, 10, 64), SHOAL_EINVAL);
  assert_null(rl.slots);
  ratelimit_close(&rl); /* safe on a refused init */
  assert_int_equal(ratelimit_init(&rl, 10, 0, 64), SHOAL_EINVAL);
  assert_null(rl.slots);
  assert_int_equal(ratelimit_init(&rl, 10, 10, 0), SHOAL_EINVAL);
  assert_null(rl.slots);
  ratelimit_close(&rl);
  /* The smallest valid limiter works. */
  uint8_t a[16];
  uint32_t retry = 0;
  addr_v4(a, 127, 0, 0, 1);
  assert_int_equal(ratelimit_init(&rl, 1, 1, 1), 0);
  assert_int_equal(take(&rl, 4, a, T0, &retry), 0);
  assert_int_equal(take(&rl, 4, a, T0, &retry), SHOAL_ERATE);
  addr_v4(a, 127, 0, 0, 2);
  assert_int_equal(take(&rl, 4, a, T0, &retry), 0);
  assert_int_equal(rl.count, 1);
  ratelimit_close(&rl);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_address_gets_exactly_burst_at_one_instant),
      cmocka_unit_test(test_retry_after_is_the_time_to_one_token_rounded_up),
      cmocka_unit_test(test_retry_after_counts_a_partly_refilled_token),
      cmocka_unit_test(test_tokens_come_back_at_rate_per_second),
      cmocka_unit_test(test_long_idle_refills_to_burst_and_no_more),
      cmocka_unit_test(test_time_going_backwards_adds_no_tokens),
      cmocka_unit_test(test_ipv4_addresses_have_separate_buckets),
      cmocka_unit_test(test_ipv4_bucket_ignores_bytes_past_the_address),
      cmocka_unit_test(test_ipv6_addresses_share_a_bucket_per_64),
      cmocka_unit_test(test_ipv4_and_ipv6_with_the_same_bytes_do_not_share),
      cmocka_unit_test(test_full_table_evicts_and_keeps_limiting),
      cmocka_unit_test(test_full_table_forgets_an_unspent_bucket_first),
      cmocka_unit_test(test_invalid_init_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
