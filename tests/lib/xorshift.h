/* The seeded generator of the tests that make random choices of their own
 * (xorshift64, Marsaglia 2003), so that a failed run can be replayed from
 * its seed. One generator per program; not for anything secret. */
#ifndef SHOAL_TESTS_XORSHIFT_H
#define SHOAL_TESTS_XORSHIFT_H

#include <stdint.h>

/* Starts the sequence over from seed, which must not be 0. */
void xs_seed(uint64_t seed);
/* The next 64 bits of the sequence. */
uint64_t xs_next(void);
/* The next value taken modulo n (n > 0). */
uint64_t xs_below(uint64_t n);

#endif
