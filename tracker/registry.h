/* The registry: who takes part in which swarm, with soft-state expiry.
 *
 * A peer's registration in a swarm lasts one announce interval plus a grace
 * period; every announce renews all the swarms it lists, a "stopped" event
 * removes them, and a sweep removes what was not renewed, a bounded amount
 * of work per tick. The data lives in a struct store; the registry adds the
 * limits and the interval policy. Addresses are always the ones the tracker
 * observed on the connection, never ones a peer claims.
 */
#ifndef SHOAL_TRACKER_REGISTRY_H
#define SHOAL_TRACKER_REGISTRY_H

#include <stdint.h>

#include "common/tmsg.h"
#include "tracker/store.h"

#define REGISTRY_INTERVAL_DEFAULT 1800u    /* seconds between announces */
#define REGISTRY_MIN_INTERVAL_DIV 4        /* minimum interval = interval / 4 */
#define REGISTRY_GRACE_DIV 2               /* grace = interval / 2 */
#define REGISTRY_JITTER_DIV 10             /* announced interval +- 10% */
#define REGISTRY_MAX_PEERS_DEFAULT 100000u /* peers in one swarm */

struct registry {
  struct store *store; /* borrowed */
  uint32_t interval_s;
  uint32_t max_peers;
  uint32_t max_items; /* swarms one announce may list */
};

void registry_init(struct registry *r, struct store *store, uint32_t interval_s,
                   uint32_t max_peers, uint32_t max_items);

/* The interval to tell a peer: interval_s with +-10% random jitter so that
 * peers started together spread out. */
uint32_t registry_next_interval(const struct registry *r);

/* The state of one announce while the store works on it; the caller's,
 * valid until the callback. */
typedef void (*registry_announce_cb)(void *arg, unsigned ok, int first_err,
                                     const uint8_t *changed);
struct registry_announce_op;
/* One content of an announce: what its store call answers to. */
struct registry_item {
  struct registry_announce_op *op;
  uint16_t i;
  uint8_t completed;
};
struct registry_announce_op {
  struct registry *r;
  unsigned pending; /* store calls not yet answered, plus one while issuing */
  unsigned ok;
  int first_err;
  int store_failed; /* an error of the store, not a limit */
  uint8_t changed[TMSG_MAX_ANNOUNCE_ITEMS];
  struct registry_item item[TMSG_MAX_ANNOUNCE_ITEMS];
  registry_announce_cb cb;
  void *arg;
};

/* Applies one verified announce from pk, seen at family/addr (IPv4 in the
 * first 4 bytes) with the port it announced, and calls cb once every item
 * has been answered: ok is how many items were registered (the rest hit a
 * limit or failed), first_err why the first one was refused (0 if none
 * was), changed[i] whether item i changed what a lookup of its swarm
 * shows. op is the caller's and must stay valid until cb. */
void registry_announce(struct registry *r, struct registry_announce_op *op,
                       const uint8_t pk[32], uint8_t family,
                       const uint8_t addr[16], const struct tmsg_announce *a,
                       uint32_t now_s, registry_announce_cb cb, void *arg);

/* The state of one lookup while the store works on it (the caller's). */
typedef void (*registry_lookup_cb)(void *arg, int err, int asker_in_swarm);
struct registry_lookup_op {
  struct tmsg_lookup_ok *reply;
  struct store_peer peers[TMSG_MAX_PEERS];
  struct store_counts counts;
  registry_lookup_cb cb;
  void *arg;
};

/* Fills reply with a random sample of the swarm, never the asker, and
 * calls cb: err is 0 or the store's error; asker_in_swarm tells whether
 * the asker had to be left out, that is whether the reply depends on who
 * asked. op and reply are the caller's and must stay valid until cb. */
void registry_lookup(struct registry *r, struct registry_lookup_op *op,
                     const struct tmsg_lookup *q, struct tmsg_lookup_ok *reply,
                     registry_lookup_cb cb, void *arg);

/* Removes up to max_work expired registrations; cb gets how many went, or
 * the store's error. */
void registry_expire(struct registry *r, uint32_t now_s, unsigned max_work,
                     store_cb cb, void *arg);

#endif
