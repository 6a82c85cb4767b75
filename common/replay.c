#include "common/replay.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int replay_guard_init(struct replay_guard *g, size_t max_senders,
                      uint64_t window_ms) {
  size_t size = 16;

  memset(g, 0, sizeof(*g));
  if (max_senders == 0 || max_senders > REPLAY_MAX_SENDERS) {
    return SHOAL_EINVAL;
  }
  /* Keep the load factor at or below 3/4 so probe runs stay short. The
   * table starts small and doubles with use, up to the size that holds
   * max_senders, so memory follows the senders actually seen. */
  while (size / 4 * 3 < max_senders) {
    size *= 2;
  }
  g->max_size = size;
  if (size > REPLAY_INITIAL_SLOTS) {
    size = REPLAY_INITIAL_SLOTS;
  }
  g->slots = calloc(size, sizeof(*g->slots));
  if (g->slots == NULL) {
    return SHOAL_ENOMEM;
  }
  g->mask = size - 1;
  g->cap = max_senders;
  g->window_ms = window_ms;
  if (sodium_init() < 0) {
    abort();
  }
  randombytes_buf(g->key, sizeof(g->key));
  return 0;
}

void replay_guard_close(struct replay_guard *g) {
  free(g->slots);
  sodium_memzero(g, sizeof(*g));
}

static uint64_t fingerprint(const struct replay_guard *g,
                            const uint8_t pk[32]) {
  uint8_t h[crypto_shorthash_BYTES];
  uint64_t fp = 0;

  crypto_shorthash(h, pk, 32, g->key);
  for (size_t i = 0; i < sizeof(h); i++) {
    fp = fp << 8 | h[i];
  }
  return fp == 0 ? 1 : fp; /* 0 marks an empty slot */
}

/* Doubles the table. Returns 0, or SHOAL_ENOMEM (the guard then stays as
 * it was and evicts instead). */
static int grow(struct replay_guard *g) {
  size_t size = (g->mask + 1) * 2;
  struct replay_slot *t = calloc(size, sizeof(*t));
  if (t == NULL) {
    return SHOAL_ENOMEM;
  }
  for (size_t i = 0; i <= g->mask; i++) {
    if (g->slots[i].fp != 0) {
      size_t j = g->slots[i].fp & (size - 1);
      while (t[j].fp != 0) {
        j = (j + 1) & (size - 1);
      }
      t[j] = g->slots[i];
    }
  }
  free(g->slots);
  g->slots = t;
  g->mask = size - 1;
  return 0;
}

/* Removes the entry at i by shifting later members of its probe run back
 * (linear probing without tombstones). */
static void remove_at(struct replay_guard *g, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & g->mask;
    if (g->slots[j].fp == 0) {
      break;
    }
    size_t home = g->slots[j].fp & g->mask;
    /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
    int in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!in_range) {
      g->slots[i] = g->slots[j];
      i = j;
    }
  }
  memset(&g->slots[i], 0, sizeof(g->slots[i]));
  g->count--;
}

/* Forgets one sender to make room, preferring one whose messages would be
 * refused as stale anyway. */
static void evict_one(struct replay_guard *g, uint64_t now_ms) {
  size_t start = randombytes_uniform((uint32_t)(g->mask + 1));
  size_t victim = SIZE_MAX;
  size_t seen = 0;

  for (size_t k = 0; k <= g->mask && seen < REPLAY_EVICT_SAMPLE; k++) {
    size_t i = (start + k) & g->mask;
    if (g->slots[i].fp == 0) {
      continue;
    }
    seen++;
    if (victim == SIZE_MAX || g->slots[i].last_ms < g->slots[victim].last_ms) {
      victim = i;
    }
  }
  if (victim == SIZE_MAX) {
    return;
  }
  uint64_t last = g->slots[victim].last_ms;
  if (now_ms < g->window_ms || last >= now_ms - g->window_ms) {
    /* Still inside the window (the clock check accepts now - window itself):
     * a replay of it would pass, so from now on unknown senders must be
     * newer than it. */
    if (last > g->floor_ms) {
      g->floor_ms = last;
    }
  }
  g->evictions++;
  remove_at(g, victim);
}

int replay_guard_accept(struct replay_guard *g, const uint8_t pk[32],
                        uint64_t seq, uint64_t timestamp_ms, uint64_t now_ms) {
  uint64_t fp = fingerprint(g, pk);
  size_t i = fp & g->mask;

  while (g->slots[i].fp != 0 && g->slots[i].fp != fp) {
    i = (i + 1) & g->mask;
  }
  struct replay_slot *s = &g->slots[i];

  if (s->fp == 0) {
    if (timestamp_ms <= g->floor_ms) {
      return SHOAL_EGUARDFULL;
    }
    int room = g->count < g->cap;
    if (room && (g->count + 1) * 4 > (g->mask + 1) * 3) {
      room = (g->mask + 1) < g->max_size && grow(g) == 0;
      i = fp & g->mask;
      while (g->slots[i].fp != 0) {
        i = (i + 1) & g->mask;
      }
      s = &g->slots[i];
    }
    if (!room) {
      evict_one(g, now_ms);
      if (timestamp_ms <= g->floor_ms) {
        return SHOAL_EGUARDFULL;
      }
      /* The eviction may have shifted entries; find the free slot again. */
      i = fp & g->mask;
      while (g->slots[i].fp != 0) {
        i = (i + 1) & g->mask;
      }
      s = &g->slots[i];
    }
    s->fp = fp;
    s->hwm = seq;
    s->bitmap = 1;
    s->last_ms = timestamp_ms;
    g->count++;
    return 0;
  }

  if (seq > s->hwm) {
    uint64_t shift = seq - s->hwm;
    s->bitmap = shift >= REPLAY_WINDOW ? 0 : s->bitmap << shift;
    s->bitmap |= 1;
    s->hwm = seq;
  } else {
    uint64_t back = s->hwm - seq;
    if (back >= REPLAY_WINDOW) {
      return SHOAL_ESEQ;
    }
    uint64_t bit = (uint64_t)1 << back;
    if (s->bitmap & bit) {
      return SHOAL_EREPLAY;
    }
    /* An unset bit below the mark may belong to an earlier life of this
     * sender that was forgotten under memory pressure; like an unknown
     * sender, it must then be newer than the floor. */
    if (timestamp_ms <= g->floor_ms) {
      return SHOAL_EGUARDFULL;
    }
    s->bitmap |= bit;
  }
  if (timestamp_ms > s->last_ms) {
    s->last_ms = timestamp_ms;
  }
  return 0;
}
