#include "tracker/addrcount.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/error.h"
#include "tracker/hashtab.h"

/* The smallest table; a power of two like every size. */
#define ADDRCOUNT_MIN_SLOTS 16u

int addrcount_init(struct addrcount *ac, uint32_t max_conns, uint32_t cap) {
  size_t size = ADDRCOUNT_MIN_SLOTS;
  memset(ac, 0, sizeof(*ac));
  if (max_conns == 0) {
    max_conns = 1;
  }
  /* At most half full, so that probe chains stay short. */
  while (size / 2 < max_conns) {
    size *= 2;
  }
  ac->slots = calloc(size, sizeof(*ac->slots));
  if (ac->slots == NULL) {
    return SHOAL_ENOMEM;
  }
  ac->mask = size - 1;
  ac->max_addrs = max_conns;
  ac->cap = cap != 0 ? cap : UINT32_MAX;
  hashtab_keygen(ac->hash_key);
  return 0;
}

void addrcount_close(struct addrcount *ac) {
  free(ac->slots);
  memset(ac, 0, sizeof(*ac));
}

void addrcount_key(uint8_t family, const uint8_t addr[16],
                   uint8_t key[ADDRCOUNT_KEY_BYTES]) {
  memset(key, 0, ADDRCOUNT_KEY_BYTES);
  key[0] = family;
  /* An IPv6 host is its /64; an IPv4 host its address. */
  memcpy(key + 1, addr, family == 6 ? 8 : 4);
}

static size_t home_of(const struct addrcount *ac,
                      const uint8_t key[ADDRCOUNT_KEY_BYTES]) {
  return (size_t)hashtab_hash(ac->hash_key, key, ADDRCOUNT_KEY_BYTES) &
         ac->mask;
}

/* The slot that holds key, or the empty slot where it would go. */
static size_t find(const struct addrcount *ac,
                   const uint8_t key[ADDRCOUNT_KEY_BYTES]) {
  size_t i = home_of(ac, key);
  while (ac->slots[i].n != 0 &&
         memcmp(ac->slots[i].key, key, ADDRCOUNT_KEY_BYTES) != 0) {
    i = (i + 1) & ac->mask;
  }
  return i;
}

/* Empties slot i and moves later members of its probe chain back, so
 * that every remaining key is still found from its home slot (linear
 * probing's deletion without tombstones). */
static void remove_at(struct addrcount *ac, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & ac->mask;
    if (ac->slots[j].n == 0) {
      break;
    }
    size_t home = home_of(ac, ac->slots[j].key);
    /* The entry at j may move to i unless its home lies in (i, j]. */
    if (hashtab_may_fill(i, j, home)) {
      ac->slots[i] = ac->slots[j];
      i = j;
    }
  }
  memset(&ac->slots[i], 0, sizeof(ac->slots[i]));
  ac->used--;
}

int addrcount_add(struct addrcount *ac, uint8_t family,
                  const uint8_t addr[16]) {
  uint8_t key[ADDRCOUNT_KEY_BYTES];
  addrcount_key(family, addr, key);
  size_t i = find(ac, key);
  struct addrcount_slot *s = &ac->slots[i];
  if (s->n == 0) {
    if (ac->used >= ac->max_addrs) {
      return SHOAL_ETOOBIG;
    }
    memcpy(s->key, key, sizeof(key));
    ac->used++;
  } else if (s->n >= ac->cap) {
    return SHOAL_EBUSY;
  }
  s->n++;
  return 0;
}

void addrcount_drop(struct addrcount *ac, uint8_t family,
                    const uint8_t addr[16]) {
  uint8_t key[ADDRCOUNT_KEY_BYTES];
  addrcount_key(family, addr, key);
  size_t i = find(ac, key);
  /* Only a connection that addrcount_add counted is dropped. */
  assert(ac->slots[i].n > 0);
  if (ac->slots[i].n == 0) {
    return;
  }
  if (--ac->slots[i].n == 0) {
    remove_at(ac, i);
  }
}

uint32_t addrcount_get(const struct addrcount *ac, uint8_t family,
                       const uint8_t addr[16]) {
  uint8_t key[ADDRCOUNT_KEY_BYTES];
  addrcount_key(family, addr, key);
  return ac->slots[find(ac, key)].n;
}

void addrcount_name(uint8_t family, const uint8_t addr[16],
                    char out[ADDRCOUNT_NAME_BYTES]) {
  char ip[INET6_ADDRSTRLEN];
  uint8_t net[16];
  if (family == 6) {
    memset(net, 0, sizeof(net));
    memcpy(net, addr, 8);
    if (uv_inet_ntop(AF_INET6, net, ip, sizeof(ip)) != 0) {
      snprintf(out, ADDRCOUNT_NAME_BYTES, "?");
      return;
    }
    snprintf(out, ADDRCOUNT_NAME_BYTES, "%s/64", ip);
    return;
  }
  if (uv_inet_ntop(AF_INET, addr, ip, sizeof(ip)) != 0) {
    snprintf(out, ADDRCOUNT_NAME_BYTES, "?");
    return;
  }
  snprintf(out, ADDRCOUNT_NAME_BYTES, "%s", ip);
}
