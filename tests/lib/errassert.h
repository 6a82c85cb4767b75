/* assert_err(): a cmocka assertion on an error code that names both codes
 * (SHOAL_EHASH, ENOENT, ...) when they differ, so that a failure reads
 * better than two negative numbers. Include after <cmocka.h>. */
#ifndef SHOAL_TESTS_ERRASSERT_H
#define SHOAL_TESTS_ERRASSERT_H

#include "common/error.h"

#define assert_err(got, want)                                                  \
  do {                                                                         \
    int g_ = (got);                                                            \
    int w_ = (want);                                                           \
    if (g_ != w_) {                                                            \
      print_error("got %s (%d), want %s (%d)\n", shoal_err_name(g_), g_,       \
                  shoal_err_name(w_), w_);                                     \
    }                                                                          \
    assert_int_equal(g_, w_);                                                  \
  } while (0)

#endif
