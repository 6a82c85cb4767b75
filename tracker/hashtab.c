#include "tracker/hashtab.h"

#include <sodium.h>
#include <stdlib.h>

_Static_assert(HASHTAB_KEY_BYTES == crypto_shorthash_KEYBYTES,
               "hash key size is SipHash's");

void hashtab_keygen(uint8_t key[HASHTAB_KEY_BYTES]) {
  if (sodium_init() < 0) {
    abort();
  }
  randombytes_buf(key, HASHTAB_KEY_BYTES);
}

uint64_t hashtab_hash(const uint8_t key[HASHTAB_KEY_BYTES], const void *p,
                      size_t n) {
  uint8_t h[crypto_shorthash_BYTES];
  uint64_t v = 0;
  crypto_shorthash(h, p, n, key);
  for (size_t i = 0; i < sizeof(h); i++) {
    v = v << 8 | h[i];
  }
  return v;
}

int hashtab_may_fill(size_t i, size_t j, size_t home) {
  int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
  return !between;
}
