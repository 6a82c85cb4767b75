/* The tracker's store: where swarms, the catalog and the replay windows live.
 *
 * Everything the tracker keeps about swarms, published contents and signed
 * senders goes through this interface, so that the memory store
 * (store_mem.c) and the shared one (store_redis.c) are interchangeable.
 *
 * Every operation is asynchronous: it takes a callback and calls it exactly
 * once with the result. The memory store calls back before the operation
 * returns; the Redis store calls back later, on the loop, when Redis
 * answers, when the operation times out (SHOAL_ETIMEDOUT) or when the store
 * is unreachable or freed (SHOAL_EBUSY: "store unavailable"). Arguments are
 * copied before the operation returns; an operation's output buffers are
 * the caller's and must stay valid until its callback, and are written
 * only when it succeeds.
 *
 * Times: `now` arguments are whole seconds (or milliseconds for the replay
 * window) on the calling tracker's clock. The memory store uses them; the
 * Redis store ignores them and uses Redis's own TIME, the clock every
 * instance on one Redis shares.
 */
#ifndef SHOAL_TRACKER_STORE_H
#define SHOAL_TRACKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/tmsg.h"

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
  uint64_t peers;   /* registrations: (swarm, peer) pairs */
  uint64_t bytes;   /* memory the store holds for them */
  uint64_t catalog; /* catalog entries */
};

/* The result of an operation: 0 or more on success (its meaning is the
 * operation's), a negative error otherwise. */
typedef void (*store_cb)(void *arg, int result);

struct store;

struct store_ops {
  /* Adds or renews p in swarm id for life seconds from now. A swarm that
   * does not exist is created. Result: 0 for a renewal that changed nothing
   * a lookup shows, STORE_CHANGED when p is new or its address, port or
   * role changed, SHOAL_ETOOBIG when the swarm already has max_peers peers
   * and p is new, or an error. `completed` counts one more completed
   * download for the swarm when p is new or was not seeding before, and now
   * seeds; a repeated completed event from a seeder counts nothing. */
  void (*put)(struct store *s, const uint8_t id[STORE_ID_BYTES],
              const struct store_peer *p, uint32_t now, uint32_t life,
              int completed, uint32_t max_peers, store_cb cb, void *arg);
  /* Removes pk from swarm id (a no-op when absent); an empty swarm goes.
   * Result: 0 or an error. */
  void (*del)(struct store *s, const uint8_t id[STORE_ID_BYTES],
              const uint8_t pk[STORE_PK_BYTES], store_cb cb, void *arg);
  /* Writes up to want (at most TMSG_MAX_PEERS) peers of swarm id chosen at
   * random into out, never `exclude` (may be NULL), seeders first when
   * seeders_first is set, and the swarm's counts. Result: how many peers
   * were written, or an error. */
  void (*sample)(struct store *s, const uint8_t id[STORE_ID_BYTES],
                 const uint8_t *exclude, unsigned want, int seeders_first,
                 struct store_peer *out, struct store_counts *counts,
                 store_cb cb, void *arg);
  /* Removes up to about max_work registrations whose expiry has passed,
   * resuming where the last call stopped. Result: how many went. */
  void (*expire)(struct store *s, uint32_t now, unsigned max_work, store_cb cb,
                 void *arg);
  /* The latest figures (never waits: a shared store refreshes them in the
   * background). */
  void (*stats)(struct store *s, struct store_stats *out);

  /* Adds or refreshes a catalog entry. Result: 0, SHOAL_EWRONGKEY for a
   * content already published by another key, SHOAL_ETOOBIG when the
   * catalog is full, or an error. */
  void (*publish)(struct store *s, const uint8_t publisher[IDENTITY_PK_BYTES],
                  const struct tmsg_publish *p, uint32_t now, store_cb cb,
                  void *arg);
  /* Marks n contents as announced now (those not in the catalog are left
   * alone). Result: 0 or an error. */
  void (*touch)(struct store *s, const uint8_t (*ids)[TMSG_ID_BYTES],
                unsigned n, uint32_t now, store_cb cb, void *arg);
  /* Fills reply with a page of the entries matching every word of q and
   * their total (seeder and downloader counts left at 0). Result: 0,
   * SHOAL_EINVAL for an empty query or too many words, or an error. */
  void (*search)(struct store *s, const struct tmsg_search *q,
                 struct tmsg_search_ok *reply, store_cb cb, void *arg);
  /* Removes up to max_work catalog entries not announced within their
   * time to live. Result: how many went. */
  void (*catalog_expire)(struct store *s, uint32_t now, unsigned max_work,
                         store_cb cb, void *arg);

  /* The replay check of a signed message whose signature and clock window
   * have been checked: accepts (result 0) and records seq from sender pk,
   * or refuses it (SHOAL_EREPLAY, SHOAL_ESEQ, SHOAL_EGUARDFULL as
   * common/replay.h says), or fails. */
  void (*replay)(struct store *s, const uint8_t pk[IDENTITY_PK_BYTES],
                 uint64_t seq, uint64_t timestamp_ms, uint64_t now_ms,
                 store_cb cb, void *arg);

  /* Calls back every operation still waiting (SHOAL_EBUSY), fails every
   * later one, and closes the store's handles on the loop (the loop must
   * run once more before it is closed). */
  void (*stop)(struct store *s);
  /* Stops the store if it was not, and frees it. */
  void (*free)(struct store *s);
};

struct store {
  const struct store_ops *ops;
  const char *backend; /* "memory", "redis" or "sentinel"; static */
  /* 1 while the store answers (the memory store always does). */
  int up;
  /* Seconds a refused client should wait when the store is down. */
  uint32_t retry_s;
};

struct catalog;
struct replay_guard;

/* The in-memory store. Its catalog and replay operations use cat and guard,
 * which are borrowed and must outlive it (either may be NULL for a store
 * that only serves the registry; its operations must not be called then).
 * Returns NULL when out of memory. */
struct store *store_mem_new(struct catalog *cat, struct replay_guard *guard);

/* The Redis store, reached at url: "redis://HOST:PORT[/DB]", "unix:PATH"
 * or "sentinel://HOST:PORT/NAME" (the primary that Sentinel names). It
 * connects in the background on loop and keeps reconnecting; until it is
 * connected, operations fail with SHOAL_EBUSY. catalog_max and
 * catalog_ttl_s are the catalog's limits, window_ms the replay window.
 * Returns 0 and *out, SHOAL_EINVAL for a url it cannot read, or
 * SHOAL_ENOMEM. */
struct uv_loop_s;
int store_redis_new(struct uv_loop_s *loop, const char *url,
                    uint32_t catalog_max, uint32_t catalog_ttl_s,
                    uint64_t window_ms, struct store **out);
/* Checks the form of a --store value without connecting. Returns 0 or
 * SHOAL_EINVAL. */
int store_url_check(const char *url);

#endif
