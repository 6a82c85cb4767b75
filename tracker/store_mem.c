/* The in-memory store: the registry's swarms, and the catalog and replay
 * guard the tracker lends it. Every operation calls back before it returns.
 *
 * Swarms sit in an open-addressing table keyed by a SipHash of the content
 * ID (with a random key, so nobody can aim collisions at one bucket). Each
 * swarm keeps its peers in a dense array, seeders first ([0, seeders)) and
 * downloaders after, so a random sample of either is a few random indices;
 * a per-swarm index (also SipHash-keyed, linear probing without tombstones)
 * maps a public key to its position. A registration costs one 60-byte entry
 * plus its index slots.
 */
#include "tracker/store.h"

#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/replay.h"
#include "tracker/catalog.h"
#include "tracker/hashtab.h"

struct entry {
  uint8_t pk[STORE_PK_BYTES];
  uint8_t addr[16];
  uint16_t port;
  uint8_t family;
  uint8_t seeding;
  uint32_t expires;
  uint32_t hash; /* SipHash of pk, for the index */
};

struct swarm {
  uint8_t id[STORE_ID_BYTES];
  uint64_t hash;
  struct entry *e;
  uint32_t n;
  uint32_t cap;
  uint32_t seeders;
  uint32_t completed;
  uint32_t *slots; /* position + 1; 0 is empty */
  uint32_t mask;
};

struct mem_store {
  struct store base;
  struct swarm **table;
  size_t mask;
  size_t count;
  uint64_t peers;
  uint8_t key[HASHTAB_KEY_BYTES];
  struct catalog *cat;        /* borrowed; may be NULL */
  struct replay_guard *guard; /* borrowed; may be NULL */
  /* Expiry cursor. */
  size_t cur_slot;
  uint32_t cur_pos;
};

/* ------------------------------------------------------------------------ */
/* The per-swarm index */

static uint32_t *slot_of_pos(struct swarm *sw, uint32_t pos) {
  uint32_t i = sw->e[pos].hash & sw->mask;
  while (sw->slots[i] != pos + 1) {
    i = (i + 1) & sw->mask;
  }
  return &sw->slots[i];
}

static int64_t find_pos(const struct swarm *sw, const uint8_t pk[32],
                        uint32_t hash) {
  uint32_t i = hash & sw->mask;
  while (sw->slots[i] != 0) {
    const struct entry *e = &sw->e[sw->slots[i] - 1];
    if (e->hash == hash && memcmp(e->pk, pk, STORE_PK_BYTES) == 0) {
      return sw->slots[i] - 1;
    }
    i = (i + 1) & sw->mask;
  }
  return -1;
}

static void index_insert(struct swarm *sw, uint32_t pos) {
  uint32_t i = sw->e[pos].hash & sw->mask;
  while (sw->slots[i] != 0) {
    i = (i + 1) & sw->mask;
  }
  sw->slots[i] = pos + 1;
}

/* Backward-shift deletion of the slot that points at pos. */
static void index_remove(struct swarm *sw, uint32_t pos) {
  uint32_t i = (uint32_t)(slot_of_pos(sw, pos) - sw->slots);
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & sw->mask;
    if (sw->slots[j] == 0) {
      break;
    }
    uint32_t home = sw->e[sw->slots[j] - 1].hash & sw->mask;
    if (hashtab_may_fill(i, j, home)) {
      sw->slots[i] = sw->slots[j];
      i = j;
    }
  }
  sw->slots[i] = 0;
}

static int index_grow(struct swarm *sw) {
  uint32_t size = (sw->mask + 1) * 2;
  uint32_t *slots = calloc(size, sizeof(*slots));
  if (slots == NULL) {
    return SHOAL_ENOMEM;
  }
  free(sw->slots);
  sw->slots = slots;
  sw->mask = size - 1;
  for (uint32_t p = 0; p < sw->n; p++) {
    index_insert(sw, p);
  }
  return 0;
}

/* Exchanges the entries at a and b and their index slots. */
static void swap_pos(struct swarm *sw, uint32_t a, uint32_t b) {
  if (a == b) {
    return;
  }
  uint32_t *sa = slot_of_pos(sw, a);
  uint32_t *sb = slot_of_pos(sw, b);
  struct entry t = sw->e[a];
  sw->e[a] = sw->e[b];
  sw->e[b] = t;
  *sa = b + 1;
  *sb = a + 1;
}

/* Moves the entry at pos across the seeder boundary as its role says. */
static void place_role(struct swarm *sw, uint32_t pos) {
  if (sw->e[pos].seeding && pos >= sw->seeders) {
    swap_pos(sw, pos, sw->seeders);
    sw->seeders++;
  } else if (!sw->e[pos].seeding && pos < sw->seeders) {
    swap_pos(sw, pos, sw->seeders - 1);
    sw->seeders--;
  }
}

static void remove_pos(struct swarm *sw, uint32_t pos) {
  if (pos < sw->seeders) {
    swap_pos(sw, pos, sw->seeders - 1);
    sw->seeders--;
    pos = sw->seeders;
  }
  swap_pos(sw, pos, sw->n - 1);
  index_remove(sw, sw->n - 1);
  sw->n--;
}

/* ------------------------------------------------------------------------ */
/* The swarm table */

static size_t swarm_slot(const struct mem_store *m, const uint8_t id[32],
                         uint64_t h) {
  size_t i = h & m->mask;
  while (m->table[i] != NULL &&
         memcmp(m->table[i]->id, id, STORE_ID_BYTES) != 0) {
    i = (i + 1) & m->mask;
  }
  return i;
}

static int table_grow(struct mem_store *m) {
  size_t size = (m->mask + 1) * 2;
  struct swarm **t = calloc(size, sizeof(*t));
  if (t == NULL) {
    return SHOAL_ENOMEM;
  }
  for (size_t i = 0; i <= m->mask; i++) {
    struct swarm *sw = m->table[i];
    if (sw != NULL) {
      size_t j = sw->hash & (size - 1);
      while (t[j] != NULL) {
        j = (j + 1) & (size - 1);
      }
      t[j] = sw;
    }
  }
  free(m->table);
  m->table = t;
  m->mask = size - 1;
  return 0;
}

static void swarm_free(struct swarm *sw) {
  free(sw->e);
  free(sw->slots);
  free(sw);
}

static void table_remove(struct mem_store *m, size_t i) {
  size_t j = i;
  swarm_free(m->table[i]);
  for (;;) {
    j = (j + 1) & m->mask;
    if (m->table[j] == NULL) {
      break;
    }
    size_t home = m->table[j]->hash & m->mask;
    if (hashtab_may_fill(i, j, home)) {
      m->table[i] = m->table[j];
      i = j;
    }
  }
  m->table[i] = NULL;
  m->count--;
}

static struct swarm *swarm_get(struct mem_store *m, const uint8_t id[32],
                               size_t *slot) {
  uint64_t h = hashtab_hash(m->key, id, STORE_ID_BYTES);
  size_t i = swarm_slot(m, id, h);
  if (slot != NULL) {
    *slot = i;
  }
  return m->table[i];
}

/* ------------------------------------------------------------------------ */
/* Operations */

static int put(struct store *s, const uint8_t id[STORE_ID_BYTES],
               const struct store_peer *p, uint32_t expires, int completed,
               uint32_t max_peers) {
  struct mem_store *m = (struct mem_store *)s;
  uint64_t h = hashtab_hash(m->key, id, STORE_ID_BYTES);
  size_t i = swarm_slot(m, id, h);
  struct swarm *sw = m->table[i];
  uint32_t ph = (uint32_t)hashtab_hash(m->key, p->pk, STORE_PK_BYTES);

  if (sw == NULL) {
    if (max_peers == 0) {
      return SHOAL_ETOOBIG;
    }
    if ((m->count + 1) * 4 > (m->mask + 1) * 3) {
      if (table_grow(m) != 0) {
        return SHOAL_ENOMEM;
      }
      i = swarm_slot(m, id, h);
    }
    sw = calloc(1, sizeof(*sw));
    if (sw == NULL || (sw->slots = calloc(4, sizeof(uint32_t))) == NULL) {
      free(sw);
      return SHOAL_ENOMEM;
    }
    memcpy(sw->id, id, STORE_ID_BYTES);
    sw->hash = h;
    sw->mask = 3;
    m->table[i] = sw;
    m->count++;
  }

  int64_t pos = find_pos(sw, p->pk, ph);
  int changed = pos < 0;
  if (pos < 0) {
    if (sw->n >= max_peers) {
      return SHOAL_ETOOBIG;
    }
    if (sw->n == sw->cap) {
      /* Grow by a quarter: a registration is the tracker's main memory, so
       * slack costs more here than the extra reallocations. */
      uint32_t cap = sw->cap < 4 ? 4 : sw->cap + sw->cap / 4;
      struct entry *e = realloc(sw->e, (size_t)cap * sizeof(*e));
      if (e == NULL) {
        goto nomem;
      }
      sw->e = e;
      sw->cap = cap;
    }
    if ((uint64_t)(sw->n + 1) * 4 > ((uint64_t)sw->mask + 1) * 3 &&
        index_grow(sw) != 0) {
      goto nomem;
    }
    pos = sw->n++;
    memset(&sw->e[pos], 0, sizeof(sw->e[pos]));
    memcpy(sw->e[pos].pk, p->pk, STORE_PK_BYTES);
    sw->e[pos].hash = ph;
    sw->e[pos].seeding = 0;
    index_insert(sw, (uint32_t)pos);
    m->peers++;
  }
  struct entry *e = &sw->e[pos];
  /* A download completes once: count it when a peer becomes a seeder (or
   * arrives as one with the completed event), never on a repeat. */
  int counts_completion = completed && (changed || !e->seeding);
  changed |= memcmp(e->addr, p->addr, sizeof(e->addr)) != 0 ||
             e->port != p->port || e->family != p->family ||
             e->seeding != (p->seeding ? 1 : 0);
  memcpy(e->addr, p->addr, sizeof(e->addr));
  e->port = p->port;
  e->family = p->family;
  e->expires = expires;
  e->seeding = p->seeding ? 1 : 0;
  place_role(sw, (uint32_t)pos);
  /* e may name another entry now that place_role() has moved this one. */
  if (counts_completion && p->seeding) {
    sw->completed++;
  }
  return changed ? STORE_CHANGED : 0;

nomem:
  /* Never leave an empty swarm behind: nothing would ever remove it. */
  if (sw->n == 0) {
    table_remove(m, swarm_slot(m, id, h));
  }
  return SHOAL_ENOMEM;
}

static void del(struct store *s, const uint8_t id[STORE_ID_BYTES],
                const uint8_t pk[STORE_PK_BYTES]) {
  struct mem_store *m = (struct mem_store *)s;
  size_t slot;
  struct swarm *sw = swarm_get(m, id, &slot);
  if (sw == NULL) {
    return;
  }
  int64_t pos =
      find_pos(sw, pk, (uint32_t)hashtab_hash(m->key, pk, STORE_PK_BYTES));
  if (pos < 0) {
    return;
  }
  remove_pos(sw, (uint32_t)pos);
  m->peers--;
  if (sw->n == 0) {
    table_remove(m, slot);
  }
}

static void copy_out(const struct entry *e, struct store_peer *o) {
  memcpy(o->pk, e->pk, STORE_PK_BYTES);
  memcpy(o->addr, e->addr, sizeof(o->addr));
  o->port = e->port;
  o->family = e->family;
  o->seeding = e->seeding;
}

/* Writes up to k distinct random positions of [lo, hi) other than ex into
 * out (Floyd's algorithm: uniform, no duplicates, O(k^2) with small k). */
static unsigned pick(uint32_t lo, uint32_t hi, int64_t ex, unsigned k,
                     uint32_t *out) {
  uint32_t m = hi - lo;
  int skip = ex >= lo && ex < hi;
  unsigned n = 0;
  if (skip) {
    m--;
  }
  if (k > m) {
    k = m;
  }
  for (uint32_t j = m - k; j < m; j++) {
    uint32_t t = randombytes_uniform(j + 1);
    uint32_t v = t;
    for (unsigned q = 0; q < n; q++) {
      if (out[q] == t) {
        v = j;
        break;
      }
    }
    out[n++] = v;
  }
  for (unsigned q = 0; q < n; q++) {
    uint32_t p = lo + out[q];
    if (skip && p >= ex) {
      p++;
    }
    out[q] = p;
  }
  return n;
}

static unsigned sample(struct store *s, const uint8_t id[STORE_ID_BYTES],
                       const uint8_t *exclude, unsigned want, int seeders_first,
                       struct store_peer *out, struct store_counts *counts) {
  struct mem_store *m = (struct mem_store *)s;
  struct swarm *sw = swarm_get(m, id, NULL);
  uint32_t pos[256];
  unsigned n = 0;

  memset(counts, 0, sizeof(*counts));
  if (sw == NULL) {
    return 0;
  }
  counts->seeders = sw->seeders;
  counts->downloaders = sw->n - sw->seeders;
  counts->completed = sw->completed;
  if (want > sizeof(pos) / sizeof(pos[0])) {
    want = sizeof(pos) / sizeof(pos[0]);
  }
  int64_t ex = -1;
  if (exclude != NULL) {
    ex = find_pos(sw, exclude,
                  (uint32_t)hashtab_hash(m->key, exclude, STORE_PK_BYTES));
  }
  counts->excluded = ex >= 0;
  if (seeders_first) {
    n = pick(0, sw->seeders, ex, want, pos);
    n += pick(sw->seeders, sw->n, ex, want - n, pos + n);
  } else {
    n = pick(0, sw->n, ex, want, pos);
  }
  for (unsigned i = 0; i < n; i++) {
    copy_out(&sw->e[pos[i]], &out[i]);
  }
  return n;
}

static unsigned expire(struct store *s, uint32_t now, unsigned max_work) {
  struct mem_store *m = (struct mem_store *)s;
  unsigned removed = 0;
  unsigned work = 0;
  size_t empty_run = 0;

  if (m->count == 0) {
    return 0;
  }
  while (work < max_work && empty_run <= m->mask) {
    size_t i = m->cur_slot & m->mask;
    struct swarm *sw = m->table[i];
    work++;
    if (sw == NULL || m->cur_pos >= sw->n) {
      m->cur_slot = (i + 1) & m->mask;
      m->cur_pos = 0;
      empty_run = sw == NULL ? empty_run + 1 : 0;
      continue;
    }
    empty_run = 0;
    if (sw->e[m->cur_pos].expires < now) {
      remove_pos(sw, m->cur_pos);
      m->peers--;
      removed++;
      if (sw->n == 0) {
        table_remove(m, i);
        m->cur_pos = 0;
        if (m->count == 0) {
          break;
        }
      }
      /* Another entry now sits at cur_pos: look at it next. */
    } else {
      m->cur_pos++;
    }
  }
  return removed;
}

static void mem_stats(struct store *s, struct store_stats *out) {
  struct mem_store *m = (struct mem_store *)s;
  uint64_t bytes = sizeof(*m) + (m->mask + 1) * sizeof(*m->table);
  for (size_t i = 0; i <= m->mask; i++) {
    const struct swarm *sw = m->table[i];
    if (sw != NULL) {
      bytes += sizeof(*sw) + (uint64_t)sw->cap * sizeof(*sw->e) +
               ((uint64_t)sw->mask + 1) * sizeof(*sw->slots);
    }
  }
  out->swarms = m->count;
  out->peers = m->peers;
  out->bytes = bytes;
  out->catalog = m->cat != NULL ? m->cat->n : 0;
}

static void mem_free(struct store *s) {
  struct mem_store *m = (struct mem_store *)s;
  if (m == NULL) {
    return;
  }
  for (size_t i = 0; i <= m->mask; i++) {
    if (m->table[i] != NULL) {
      swarm_free(m->table[i]);
    }
  }
  free(m->table);
  free(m);
}

/* ------------------------------------------------------------------------ */
/* The asynchronous interface: each operation calls back before returning */

static void mem_put(struct store *s, const uint8_t id[STORE_ID_BYTES],
                    const struct store_peer *p, uint32_t now, uint32_t life,
                    int completed, uint32_t max_peers, store_cb cb, void *arg) {
  cb(arg, put(s, id, p, now + life, completed, max_peers));
}

static void mem_del(struct store *s, const uint8_t id[STORE_ID_BYTES],
                    const uint8_t pk[STORE_PK_BYTES], store_cb cb, void *arg) {
  del(s, id, pk);
  cb(arg, 0);
}

static void mem_sample(struct store *s, const uint8_t id[STORE_ID_BYTES],
                       const uint8_t *exclude, unsigned want, int seeders_first,
                       struct store_peer *out, struct store_counts *counts,
                       store_cb cb, void *arg) {
  cb(arg, (int)sample(s, id, exclude, want, seeders_first, out, counts));
}

static void mem_expire(struct store *s, uint32_t now, unsigned max_work,
                       store_cb cb, void *arg) {
  cb(arg, (int)expire(s, now, max_work));
}

static void mem_publish(struct store *s,
                        const uint8_t publisher[IDENTITY_PK_BYTES],
                        const struct tmsg_publish *p, uint32_t now, store_cb cb,
                        void *arg) {
  struct mem_store *m = (struct mem_store *)s;
  assert(m->cat != NULL);
  cb(arg, catalog_publish(m->cat, publisher, p, now));
}

static void mem_touch(struct store *s, const uint8_t (*ids)[TMSG_ID_BYTES],
                      unsigned n, uint32_t now, store_cb cb, void *arg) {
  struct mem_store *m = (struct mem_store *)s;
  assert(m->cat != NULL);
  for (unsigned i = 0; i < n; i++) {
    catalog_touch(m->cat, ids[i], now);
  }
  cb(arg, 0);
}

static void mem_search(struct store *s, const struct tmsg_search *q,
                       struct tmsg_search_ok *reply, store_cb cb, void *arg) {
  struct mem_store *m = (struct mem_store *)s;
  assert(m->cat != NULL);
  cb(arg, catalog_search(m->cat, q, reply));
}

static void mem_catalog_expire(struct store *s, uint32_t now, unsigned max_work,
                               store_cb cb, void *arg) {
  struct mem_store *m = (struct mem_store *)s;
  assert(m->cat != NULL);
  cb(arg, (int)catalog_expire(m->cat, now, max_work));
}

static void mem_replay(struct store *s, const uint8_t pk[IDENTITY_PK_BYTES],
                       uint64_t seq, uint64_t timestamp_ms, uint64_t now_ms,
                       store_cb cb, void *arg) {
  struct mem_store *m = (struct mem_store *)s;
  assert(m->guard != NULL);
  cb(arg, replay_guard_accept(m->guard, pk, seq, timestamp_ms, now_ms));
}

static void mem_stop(struct store *s) {
  (void)s; /* nothing waits and nothing is on the loop */
}

static const struct store_ops mem_ops = {
    .put = mem_put,
    .del = mem_del,
    .sample = mem_sample,
    .expire = mem_expire,
    .stats = mem_stats,
    .publish = mem_publish,
    .touch = mem_touch,
    .search = mem_search,
    .catalog_expire = mem_catalog_expire,
    .replay = mem_replay,
    .stop = mem_stop,
    .free = mem_free,
};

struct store *store_mem_new(struct catalog *cat, struct replay_guard *guard) {
  struct mem_store *m = calloc(1, sizeof(*m));
  if (m == NULL) {
    return NULL;
  }
  m->mask = 63;
  m->table = calloc(m->mask + 1, sizeof(*m->table));
  if (m->table == NULL) {
    free(m);
    return NULL;
  }
  hashtab_keygen(m->key);
  m->cat = cat;
  m->guard = guard;
  m->base.ops = &mem_ops;
  m->base.backend = "memory";
  m->base.up = 1;
  return &m->base;
}
