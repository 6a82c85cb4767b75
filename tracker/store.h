/* The registry's store: where swarms and their peers live.
 *
 * Everything the tracker knows about swarms goes through this interface, so
 * that the memory store (store_mem.c) can be replaced by a shared one
 * (Redis) without the rest of the tracker knowing which it is. Times are
 * whole seconds on the tracker's monotonic clock (uv_now() / 1000).
 */
#ifndef SHOAL_TRACKER_STORE_H
#define SHOAL_TRACKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_ID_BYTES 32
#define STORE_PK_BYTES 32
#define STORE_CHANGED 1

struct store_peer {
  uint8_t pk[STORE_PK_BYTES];
  uint8_t family; /* 4 or 6 */
  uint8_t seeding;
  uint16_t port;
  uint8_t addr[16]; /* IPv4 in the first 4 bytes */
};

struct store_counts {
  uint32_t seeders;
  uint32_t downloaders;
  uint32_t completed;
  uint8_t excluded; /* the peer to exclude is in the swarm */
};

struct store_stats {
  uint64_t swarms;
  uint64_t peers; /* registrations: (swarm, peer) pairs */
  uint64_t bytes; /* memory the store holds for them */
};

struct store;

struct store_ops {
  /* Adds or renews p in swarm id until `expires`. A swarm that does not
   * exist is created. Returns 0 for a renewal that changed nothing a lookup
   * shows, STORE_CHANGED when p is new or its address, port or role
   * changed, SHOAL_ETOOBIG when the swarm already has max_peers peers and p
   * is new, or SHOAL_ENOMEM. `completed` counts one more completed download
   * for the swarm when p is new or was not seeding before, and now seeds;
   * a repeated completed event from a seeder counts nothing. */
  int (*put)(struct store *s, const uint8_t id[STORE_ID_BYTES],
             const struct store_peer *p, uint32_t expires, int completed,
             uint32_t max_peers);
  /* Removes pk from swarm id (a no-op when absent); an empty swarm goes. */
  void (*del)(struct store *s, const uint8_t id[STORE_ID_BYTES],
              const uint8_t pk[STORE_PK_BYTES]);
  /* Fills out with up to want peers of swarm id chosen at random, never
   * `exclude` (may be NULL), seeders first when seeders_first is set.
   * Returns how many were written; counts are always filled. */
  unsigned (*sample)(struct store *s, const uint8_t id[STORE_ID_BYTES],
                     const uint8_t *exclude, unsigned want, int seeders_first,
                     struct store_peer *out, struct store_counts *counts);
  /* Removes up to max_work entries whose expiry is before now, resuming
   * where the last call stopped. Returns how many were removed. */
  unsigned (*expire)(struct store *s, uint32_t now, unsigned max_work);
  void (*stats)(struct store *s, struct store_stats *out);
  void (*free)(struct store *s);
};

struct store {
  const struct store_ops *ops;
};

/* The in-memory store. Returns NULL when out of memory. */
struct store *store_mem_new(void);

#endif
