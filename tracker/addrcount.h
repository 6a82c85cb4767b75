/* Connections per source address, so that one address cannot hold every
 * connection of the tracker.
 *
 * An IPv4 client counts by its address, an IPv6 client by its /64: one
 * host usually has a whole /64 and may use any address in it, so its
 * addresses are one client (the rate limit groups them the same way).
 *
 * The table is open addressing with linear probing, made once for as many
 * addresses as there may be connections, at most half full, so counting
 * one more connection or one less examines a few slots and never
 * allocates. Home slots come from SipHash under a random key, so that
 * clients cannot pick addresses that pile up in one place.
 */
#ifndef SHOAL_TRACKER_ADDRCOUNT_H
#define SHOAL_TRACKER_ADDRCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "tracker/hashtab.h"

/* A counted address: the family (4 or 6), then its 4 bytes (IPv4) or the
 * first 8 (the IPv6 /64), zero-padded (addrcount_key). */
#define ADDRCOUNT_KEY_BYTES 9
/* Room for any IPv6 address text (INET6_ADDRSTRLEN) and "/64". */
#define ADDRCOUNT_NAME_BYTES 64

struct addrcount_slot {
  uint8_t key[ADDRCOUNT_KEY_BYTES];
  uint32_t n; /* connections; 0: the slot is empty */
};

struct addrcount {
  struct addrcount_slot *slots;
  size_t mask;
  size_t used;      /* slots in use: addresses with a connection */
  size_t max_addrs; /* addresses the table was made for */
  uint32_t cap;     /* connections per address */
  uint8_t hash_key[HASHTAB_KEY_BYTES];
};

/* Makes a table for up to max_conns connections (so as many addresses),
 * each address allowed cap of them; cap 0 means no cap of its own. The
 * caller owns ac and frees it with addrcount_close. Returns 0 or
 * SHOAL_ENOMEM. */
int addrcount_init(struct addrcount *ac, uint32_t max_conns, uint32_t cap);
void addrcount_close(struct addrcount *ac);

/* Counts one more connection from addr (family 4 with the address in the
 * first four bytes, or 6). Returns 0; SHOAL_EBUSY when the address holds
 * cap connections already; SHOAL_ETOOBIG when max_conns addresses are
 * counted already, which cannot happen to a caller that counts at most
 * max_conns connections. Nothing is counted on an error. */
int addrcount_add(struct addrcount *ac, uint8_t family, const uint8_t addr[16]);
/* Forgets one connection that addrcount_add counted. */
void addrcount_drop(struct addrcount *ac, uint8_t family,
                    const uint8_t addr[16]);
/* The connections counted for addr. */
uint32_t addrcount_get(const struct addrcount *ac, uint8_t family,
                       const uint8_t addr[16]);

/* Writes the key addr counts as (family 4 with the address in the first
 * four bytes, or 6): ADDRCOUNT_KEY_BYTES, the family then the IPv4 address
 * or the IPv6 /64, zero-padded. The rate limit keys its buckets with it
 * too, so that both group a client's addresses the same way. */
void addrcount_key(uint8_t family, const uint8_t addr[16],
                   uint8_t key[ADDRCOUNT_KEY_BYTES]);

/* Names what addr counts as, for logs: "192.0.2.7" or "2001:db8:1:2::/64".
 * out holds ADDRCOUNT_NAME_BYTES. */
void addrcount_name(uint8_t family, const uint8_t addr[16],
                    char out[ADDRCOUNT_NAME_BYTES]);

#endif
