#include "tests/lib/xorshift.h"

#include <assert.h>

static uint64_t xs_state = 1;

void xs_seed(uint64_t seed) {
  assert(seed != 0); /* 0 would stay 0 for ever */
  xs_state = seed;
}

uint64_t xs_next(void) {
  uint64_t x = xs_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  xs_state = x;
  return x;
}

uint64_t xs_below(uint64_t n) {
  assert(n > 0);
  return xs_next() % n;
}
