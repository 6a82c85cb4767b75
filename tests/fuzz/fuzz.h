/* Helpers shared by the libFuzzer targets in tests/fuzz/. Each target is
 * built from its own source and the common/ sources alone (the Makefile's
 * fuzz rule), so these are static inline functions in a header rather than
 * a module of their own. A target that fails a check calls its own fail(),
 * which names the target. */
#ifndef SHOAL_TESTS_FUZZ_H
#define SHOAL_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/identity.h"
#include "tests/lib/bytes.h"

/* Call first in LLVMFuzzerTestOneInput. The first call initialises
 * libsodium (and aborts when it cannot) and returns 1, so that the target
 * then makes what it keeps for the whole run; later calls return 0. */
static inline int fz_first_call(void) {
  static int ready;
  if (ready) {
    return 0;
  }
  if (sodium_init() < 0) {
    abort();
  }
  ready = 1;
  return 1;
}

/* The key pair whose seed is 32 times byte. */
static inline void fz_seed_identity(struct identity *id, uint8_t byte) {
  uint8_t seed[32];
  memset(seed, byte, sizeof(seed));
  identity_from_seed(id, seed);
}

/* A heap copy of exactly size bytes (a 1-byte block for none), so that
 * ASan catches a read past the end even when libFuzzer's own buffer is
 * larger; NULL when out of memory. The caller frees it. */
static inline uint8_t *fz_copy(const uint8_t *data, size_t size) {
  uint8_t *p = malloc(size ? size : 1);
  if (p != NULL && size > 0) {
    memcpy(p, data, size);
  }
  return p;
}

/* A number made from every input byte, for choices (which bit to flip)
 * that must follow the input. */
static inline uint32_t fz_mix(const uint8_t *data, size_t size) {
  uint32_t h = 0;
  for (size_t i = 0; i < size; i++) {
    h = h * 31 + data[i];
  }
  return h;
}

#endif
