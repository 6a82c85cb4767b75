#include "tracker/ratelimit.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tracker/addrcount.h"
#include "tracker/hashtab.h"

int ratelimit_init(struct ratelimit *rl, uint32_t rate, uint32_t burst,
                   size_t max_addresses) {
  size_t size = 16;
  memset(rl, 0, sizeof(*rl));
  if (rate == 0 || burst == 0 || max_addresses == 0) {
    return SHOAL_EINVAL;
  }
  while (size / 4 * 3 < max_addresses) {
    size *= 2;
  }
  rl->slots = calloc(size, sizeof(*rl->slots));
  if (rl->slots == NULL) {
    return SHOAL_ENOMEM;
  }
  rl->mask = size - 1;
  rl->cap = max_addresses;
  rl->rate = rate;
  rl->burst = burst;
  hashtab_keygen(rl->key);
  return 0;
}

void ratelimit_close(struct ratelimit *rl) {
  free(rl->slots);
  memset(rl, 0, sizeof(*rl));
}

static uint64_t addr_fp(const struct ratelimit *rl, uint8_t family,
                        const uint8_t addr[16]) {
  uint8_t k[ADDRCOUNT_KEY_BYTES];
  /* An IPv6 host is its /64, an IPv4 host its address: the client that
   * the connection cap counts. */
  addrcount_key(family, addr, k);
  uint64_t v = hashtab_hash(rl->key, k, sizeof(k));
  return v ? v : 1; /* 0 marks an empty slot */
}

static void refill(const struct ratelimit *rl, struct ratelimit_slot *s,
                   uint64_t now_ms) {
  uint64_t max = (uint64_t)rl->burst * 1000u;
  if (now_ms > s->last_ms) {
    /* Compare the elapsed time with the time to fill the bucket before
     * multiplying: a long idle times a high rate wraps around 2^64. */
    uint64_t elapsed = now_ms - s->last_ms;
    uint64_t room = max - s->milli; /* milli-tokens */
    s->milli = elapsed > room / rl->rate ? max : s->milli + elapsed * rl->rate;
    s->last_ms = now_ms;
  }
}

static void remove_at(struct ratelimit *rl, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & rl->mask;
    if (rl->slots[j].fp == 0) {
      break;
    }
    size_t home = rl->slots[j].fp & rl->mask;
    if (hashtab_may_fill(i, j, home)) {
      rl->slots[i] = rl->slots[j];
      i = j;
    }
  }
  memset(&rl->slots[i], 0, sizeof(rl->slots[i]));
  rl->count--;
}

static void evict_one(struct ratelimit *rl, uint64_t now_ms) {
  size_t start = randombytes_uniform((uint32_t)(rl->mask + 1));
  size_t victim = SIZE_MAX;
  unsigned seen = 0;
  for (size_t k = 0; k <= rl->mask && seen < RATELIMIT_SAMPLE; k++) {
    size_t i = (start + k) & rl->mask;
    if (rl->slots[i].fp == 0) {
      continue;
    }
    seen++;
    refill(rl, &rl->slots[i], now_ms);
    if (victim == SIZE_MAX || rl->slots[i].milli > rl->slots[victim].milli) {
      victim = i;
    }
  }
  if (victim != SIZE_MAX) {
    remove_at(rl, victim);
  }
}

int ratelimit_take(struct ratelimit *rl, uint8_t family, const uint8_t addr[16],
                   uint64_t now_ms, uint32_t *retry_after_ms) {
  uint64_t fp = addr_fp(rl, family, addr);
  size_t i = fp & rl->mask;

  *retry_after_ms = 0;
  while (rl->slots[i].fp != 0 && rl->slots[i].fp != fp) {
    i = (i + 1) & rl->mask;
  }
  if (rl->slots[i].fp == 0) {
    if (rl->count >= rl->cap) {
      evict_one(rl, now_ms);
      i = fp & rl->mask;
      while (rl->slots[i].fp != 0) {
        i = (i + 1) & rl->mask;
      }
    }
    rl->slots[i].fp = fp;
    rl->slots[i].last_ms = now_ms;
    rl->slots[i].milli = (uint64_t)rl->burst * 1000u;
    rl->count++;
  }
  struct ratelimit_slot *s = &rl->slots[i];
  refill(rl, s, now_ms);
  if (s->milli >= 1000) {
    s->milli -= 1000;
    return 0;
  }
  /* Milliseconds until the bucket holds one whole token again. */
  uint64_t need = 1000 - s->milli;
  *retry_after_ms = (uint32_t)((need + rl->rate - 1) / rl->rate);
  return SHOAL_ERATE;
}
