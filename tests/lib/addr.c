/* Test addresses (see addr.h). */
#include "tests/lib/addr.h"

#include <string.h>

void addr_v4(uint8_t addr[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  memset(addr, 0, 16);
  addr[0] = a;
  addr[1] = b;
  addr[2] = c;
  addr[3] = d;
}

void addr_nth_v4(uint8_t addr[16], uint32_t i) {
  addr_v4(addr, 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);
}

void addr_v6(uint8_t addr[16], uint16_t net, uint16_t host) {
  memset(addr, 0, 16);
  addr[0] = 0x20;
  addr[1] = 0x01;
  addr[2] = 0x0d;
  addr[3] = 0xb8;
  addr[6] = (uint8_t)(net >> 8);
  addr[7] = (uint8_t)net;
  addr[14] = (uint8_t)(host >> 8);
  addr[15] = (uint8_t)host;
}
