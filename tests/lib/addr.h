/* Addresses for the tests of the per-address tables (tracker/addrcount.c,
 * tracker/ratelimit.c), in the 16-byte form they take: an IPv4 address in
 * the first four bytes, the rest zero. */
#ifndef SHOAL_TEST_ADDR_H
#define SHOAL_TEST_ADDR_H

#include <stdint.h>

/* a.b.c.d */
void addr_v4(uint8_t addr[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d);
/* 2001:db8:0:<net>::<host> */
void addr_v6(uint8_t addr[16], uint16_t net, uint16_t host);
/* The i-th of many IPv4 addresses: 10.x.y.z. */
void addr_nth_v4(uint8_t addr[16], uint32_t i);

#endif
