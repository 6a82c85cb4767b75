/* Tests for tracker/hashtab: the keyed hash every tracker table uses, and
 * the rule of backward-shift deletion, checked on a table of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <sodium.h>

#include "tests/lib/testutil.h"
#include "tracker/hashtab.h"

static void test_hash_is_siphash_read_big_endian(void **state) {
  uint8_t key[HASHTAB_KEY_BYTES];
  uint8_t msg[100];
  uint8_t h[crypto_shorthash_BYTES];
  (void)state;
  tu_fill(key, sizeof(key), 1);
  tu_fill(msg, sizeof(msg), 2);
  for (size_t n = 0; n <= sizeof(msg); n += 7) {
    crypto_shorthash(h, msg, n, key);
    uint64_t want = 0;
    for (size_t i = 0; i < sizeof(h); i++) {
      want |= (uint64_t)h[i] << (8 * (sizeof(h) - 1 - i));
    }
    assert_true(hashtab_hash(key, msg, n) == want);
  }
  /* Another key, another hash. */
  uint64_t a = hashtab_hash(key, msg, sizeof(msg));
  key[0] ^= 1;
  assert_true(hashtab_hash(key, msg, sizeof(msg)) != a);
}

static void test_keygen_makes_a_new_key_each_time(void **state) {
  uint8_t a[HASHTAB_KEY_BYTES];
  uint8_t b[HASHTAB_KEY_BYTES];
  uint8_t zero[HASHTAB_KEY_BYTES] = {0};
  (void)state;
  hashtab_keygen(a);
  hashtab_keygen(b);
  assert_memory_not_equal(a, b, sizeof(a));
  assert_memory_not_equal(a, zero, sizeof(a));
}

/* True when home lies in the cyclic interval (i, j] of a table of size. */
static int in_range(size_t size, size_t i, size_t j, size_t home) {
  for (size_t k = (i + 1) % size;; k = (k + 1) % size) {
    if (k == home) {
      return 1;
    }
    if (k == j) {
      return 0;
    }
  }
}

static void test_may_fill_unless_home_is_in_i_to_j(void **state) {
  const size_t size = 8;
  (void)state;
  for (size_t i = 0; i < size; i++) {
    for (size_t j = 0; j < size; j++) {
      if (j == i) {
        continue;
      }
      for (size_t home = 0; home < size; home++) {
        assert_int_equal(hashtab_may_fill(i, j, home),
                         !in_range(size, i, j, home));
      }
    }
  }
}

#define T_SIZE 16u
#define T_MASK (T_SIZE - 1)

/* A linear-probing table of small keys (0 is empty). Every key's home is
 * one of the last three slots or the first two, so chains are long and
 * wrap around the end. */
struct table {
  uint8_t slot[T_SIZE];
};

static size_t home_of(uint8_t key) {
  return (T_SIZE - 3u + key % 5u) & T_MASK;
}

static size_t find(const struct table *t, uint8_t key) {
  size_t i = home_of(key);
  while (t->slot[i] != 0 && t->slot[i] != key) {
    i = (i + 1) & T_MASK;
  }
  return i;
}

static void erase(struct table *t, uint8_t key) {
  size_t i = find(t, key);
  size_t j = i;
  assert_int_equal(t->slot[i], key);
  for (;;) {
    j = (j + 1) & T_MASK;
    if (t->slot[j] == 0) {
      break;
    }
    if (hashtab_may_fill(i, j, home_of(t->slot[j]))) {
      t->slot[i] = t->slot[j];
      i = j;
    }
  }
  t->slot[i] = 0;
}

static void test_deletion_keeps_every_key_findable(void **state) {
  struct table t;
  uint8_t in[256] = {0};
  uint8_t r[4096];
  size_t count = 0;
  (void)state;
  memset(&t, 0, sizeof(t));
  tu_fill(r, sizeof(r), 77);
  for (size_t step = 0; step < sizeof(r); step++) {
    uint8_t key = (uint8_t)(1 + r[step] % 40);
    if (in[key]) {
      erase(&t, key);
      in[key] = 0;
      count--;
    } else if (count < T_SIZE - 1) {
      size_t i = find(&t, key);
      assert_int_equal(t.slot[i], 0);
      t.slot[i] = key;
      in[key] = 1;
      count++;
    }
    for (unsigned k = 1; k <= 40; k++) {
      assert_int_equal(t.slot[find(&t, (uint8_t)k)] == k, in[k]);
    }
  }
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hash_is_siphash_read_big_endian),
      cmocka_unit_test(test_keygen_makes_a_new_key_each_time),
      cmocka_unit_test(test_may_fill_unless_home_is_in_i_to_j),
      cmocka_unit_test(test_deletion_keeps_every_key_findable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
