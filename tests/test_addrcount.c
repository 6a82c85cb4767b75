/* Unit tests for tracker/addrcount.c: connections per source address.
 *
 * An address gets exactly `cap` connections and not one more, a refused
 * connection counts for nothing, and a dropped one makes room again.
 * Addresses are IPv4 hosts and IPv6 /64 networks. The table is filled to
 * the number of connections it was made for and emptied in a scrambled
 * order, every remaining count checked after each drop, which is where
 * open addressing goes wrong when a removal breaks a probe chain.
 */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tests/lib/addr.h"
#include "tracker/addrcount.h"

/* ---------------------------------------------------------------------- */
/* Tests */

static void test_address_gets_exactly_cap_connections(void **st) {
  struct addrcount ac;
  uint8_t a[16];
  (void)st;
  assert_int_equal(addrcount_init(&ac, 100, 3), 0);
  addr_v4(a, 192, 0, 2, 7);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(addrcount_add(&ac, 4, a), 0);
  }
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_EBUSY);
  /* The refusal counted nothing. */
  assert_int_equal(addrcount_get(&ac, 4, a), 3);
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_EBUSY);
  assert_int_equal(addrcount_get(&ac, 4, a), 3);
  addrcount_close(&ac);
}

static void test_drop_makes_room_for_one_more(void **st) {
  struct addrcount ac;
  uint8_t a[16];
  (void)st;
  assert_int_equal(addrcount_init(&ac, 100, 2), 0);
  addr_v4(a, 127, 0, 0, 1);
  assert_int_equal(addrcount_add(&ac, 4, a), 0);
  assert_int_equal(addrcount_add(&ac, 4, a), 0);
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_EBUSY);
  addrcount_drop(&ac, 4, a);
  assert_int_equal(addrcount_get(&ac, 4, a), 1);
  assert_int_equal(addrcount_add(&ac, 4, a), 0);
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_EBUSY);
  /* Dropping every connection forgets the address. */
  addrcount_drop(&ac, 4, a);
  addrcount_drop(&ac, 4, a);
  assert_int_equal(addrcount_get(&ac, 4, a), 0);
  assert_int_equal(ac.used, 0);
  addrcount_close(&ac);
}

static void test_ipv4_addresses_count_separately(void **st) {
  struct addrcount ac;
  uint8_t a[16], b[16];
  (void)st;
  assert_int_equal(addrcount_init(&ac, 100, 1), 0);
  addr_v4(a, 127, 0, 0, 1);
  addr_v4(b, 127, 0, 0, 2);
  assert_int_equal(addrcount_add(&ac, 4, a), 0);
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_EBUSY);
  assert_int_equal(addrcount_add(&ac, 4, b), 0);
  /* Bytes past an IPv4 address are not part of it. */
  a[9] = 0x55;
  assert_int_equal(addrcount_get(&ac, 4, a), 1);
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_EBUSY);
  addrcount_close(&ac);
}

static void test_ipv6_addresses_count_per_64(void **st) {
  struct addrcount ac;
  uint8_t a[16], b[16], c[16];
  (void)st;
  assert_int_equal(addrcount_init(&ac, 100, 2), 0);
  addr_v6(a, 1, 1);
  addr_v6(b, 1, 0xffff); /* the same /64 */
  addr_v6(c, 2, 1);      /* the next /64 */
  assert_int_equal(addrcount_add(&ac, 6, a), 0);
  assert_int_equal(addrcount_add(&ac, 6, b), 0);
  assert_int_equal(addrcount_add(&ac, 6, a), SHOAL_EBUSY);
  assert_int_equal(addrcount_add(&ac, 6, b), SHOAL_EBUSY);
  assert_int_equal(addrcount_get(&ac, 6, b), 2);
  assert_int_equal(addrcount_add(&ac, 6, c), 0);
  /* A connection of the /64 dropped under another of its addresses still
   * makes room. */
  addrcount_drop(&ac, 6, b);
  assert_int_equal(addrcount_add(&ac, 6, a), 0);
  addrcount_close(&ac);
}

static void test_ipv4_and_ipv6_with_the_same_bytes_differ(void **st) {
  struct addrcount ac;
  uint8_t a[16];
  (void)st;
  assert_int_equal(addrcount_init(&ac, 100, 1), 0);
  addr_v6(a, 1, 1); /* its first four bytes read as IPv4 are 32.1.13.184 */
  assert_int_equal(addrcount_add(&ac, 6, a), 0);
  assert_int_equal(addrcount_add(&ac, 4, a), 0);
  assert_int_equal(addrcount_get(&ac, 6, a), 1);
  assert_int_equal(addrcount_get(&ac, 4, a), 1);
  addrcount_close(&ac);
}

static void test_cap_zero_means_no_cap_of_its_own(void **st) {
  struct addrcount ac;
  uint8_t a[16];
  (void)st;
  assert_int_equal(addrcount_init(&ac, 1000, 0), 0);
  addr_v4(a, 127, 0, 0, 1);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(addrcount_add(&ac, 4, a), 0);
  }
  assert_int_equal(addrcount_get(&ac, 4, a), 1000);
  addrcount_close(&ac);
}

/* max_conns addresses fit; their counts survive any order of drops. */
static void test_full_table_empties_in_any_order(void **st) {
  enum { N = 1500 };
  struct addrcount ac;
  uint8_t a[16];
  uint32_t order[N];
  int live[N];
  (void)st;
  assert_int_equal(addrcount_init(&ac, N, 4), 0);
  for (uint32_t i = 0; i < N; i++) {
    addr_nth_v4(a, i);
    /* Address i holds 1 + i % 4 connections. */
    for (uint32_t k = 0; k <= i % 4; k++) {
      assert_int_equal(addrcount_add(&ac, 4, a), 0);
    }
    order[i] = i;
    live[i] = 1;
  }
  assert_int_equal(ac.used, N);
  /* One address more than the table was made for is refused. */
  addr_nth_v4(a, N);
  assert_int_equal(addrcount_add(&ac, 4, a), SHOAL_ETOOBIG);
  assert_int_equal(addrcount_get(&ac, 4, a), 0);
  /* A fixed shuffle (Fisher-Yates with a small LCG). */
  uint32_t x = 12345;
  for (uint32_t i = N - 1; i > 0; i--) {
    x = x * 1103515245u + 12345u;
    uint32_t j = (x >> 8) % (i + 1);
    uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (uint32_t d = 0; d < N; d++) {
    uint32_t victim = order[d];
    addr_nth_v4(a, victim);
    for (uint32_t k = 0; k <= victim % 4; k++) {
      addrcount_drop(&ac, 4, a);
    }
    live[victim] = 0;
    /* Every few drops, every address still counted is found intact. */
    if (d % 50 == 0 || d > N - 50) {
      for (uint32_t i = 0; i < N; i++) {
        addr_nth_v4(a, i);
        uint32_t want = live[i] ? 1 + i % 4 : 0;
        if (addrcount_get(&ac, 4, a) != want) {
          fail_msg("after %u drops, address %u counts %u, expected %u", d + 1,
                   i, addrcount_get(&ac, 4, a), want);
        }
      }
    }
  }
  assert_int_equal(ac.used, 0);
  addrcount_close(&ac);
}

static void test_names_say_what_counts(void **st) {
  uint8_t a[16];
  char name[ADDRCOUNT_NAME_BYTES];
  (void)st;
  addr_v4(a, 192, 0, 2, 7);
  addrcount_name(4, a, name);
  assert_string_equal(name, "192.0.2.7");
  addr_v6(a, 0x102, 0xbeef);
  addrcount_name(6, a, name);
  assert_string_equal(name, "2001:db8:0:102::/64");
  memset(a, 0xff, sizeof(a));
  addrcount_name(6, a, name);
  assert_string_equal(name, "ffff:ffff:ffff:ffff::/64");
}

/* The key is what the table and the rate limit both count by: the family,
 * then the IPv4 address or the IPv6 /64, the rest zero. */
static void test_key_is_the_family_and_the_host_part(void **st) {
  uint8_t a[16];
  uint8_t b[16];
  uint8_t ka[ADDRCOUNT_KEY_BYTES];
  uint8_t kb[ADDRCOUNT_KEY_BYTES];
  static const uint8_t want4[ADDRCOUNT_KEY_BYTES] = {4, 192, 0, 2, 7};
  (void)st;
  addr_v4(a, 192, 0, 2, 7);
  memset(a + 4, 0xee, 12); /* bytes past an IPv4 address are not read */
  memset(ka, 0xa5, sizeof(ka));
  addrcount_key(4, a, ka);
  assert_memory_equal(ka, want4, sizeof(ka));

  addr_v6(a, 5, 1);
  addr_v6(b, 5, 2);
  addrcount_key(6, a, ka);
  addrcount_key(6, b, kb);
  assert_int_equal(ka[0], 6);
  assert_memory_equal(ka + 1, a, 8);
  assert_memory_equal(ka, kb, sizeof(ka));
  addr_v6(b, 6, 1);
  addrcount_key(6, b, kb);
  assert_memory_not_equal(ka, kb, sizeof(ka));
}

static void test_close_twice_and_of_nothing_is_harmless(void **st) {
  struct addrcount ac;
  (void)st;
  memset(&ac, 0, sizeof(ac));
  addrcount_close(&ac);
  assert_int_equal(addrcount_init(&ac, 1, 1), 0);
  addrcount_close(&ac);
  addrcount_close(&ac);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_address_gets_exactly_cap_connections),
      cmocka_unit_test(test_drop_makes_room_for_one_more),
      cmocka_unit_test(test_ipv4_addresses_count_separately),
      cmocka_unit_test(test_ipv6_addresses_count_per_64),
      cmocka_unit_test(test_ipv4_and_ipv6_with_the_same_bytes_differ),
      cmocka_unit_test(test_cap_zero_means_no_cap_of_its_own),
      cmocka_unit_test(test_full_table_empties_in_any_order),
      cmocka_unit_test(test_names_say_what_counts),
      cmocka_unit_test(test_key_is_the_family_and_the_host_part),
      cmocka_unit_test(test_close_twice_and_of_nothing_is_harmless),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
