/* Byte checks shared by the test programs and the fuzz targets. They are
 * static inline in this header, with no module behind it, because a fuzz
 * target is built from its own source and common/ alone. */
#ifndef SHOAL_TESTS_BYTES_H
#define SHOAL_TESTS_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* Whether the n bytes at p are all zero (n = 0: yes). */
static inline int bytes_all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != 0) {
      return 0;
    }
  }
  return 1;
}

#endif
