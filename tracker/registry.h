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

/* Applies one verified announce from pk, seen at family/addr (IPv4 in the
 * first 4 bytes) with the port it announced. Returns how many items were
 * registered (the rest hit a limit); *first_err says why the first one was
 * refused (0 if none was). changed[i] (may be NULL) is set when item i
 * changed what a lookup of its swarm shows. */
unsigned registry_announce(struct registry *r, const uint8_t pk[32],
                           uint8_t family, const uint8_t addr[16],
                           const struct tmsg_announce *a, uint32_t now_s,
                           int *first_err, uint8_t *changed);

/* Fills reply with a random sample of the swarm, never the asker.
 * *asker_in_swarm (may be NULL) tells whether the asker had to be left out,
 * that is whether the reply depends on who asked. */
void registry_lookup(struct registry *r, const struct tmsg_lookup *q,
                     struct tmsg_lookup_ok *reply, int *asker_in_swarm);

/* Removes up to max_work expired registrations. */
unsigned registry_expire(struct registry *r, uint32_t now_s, unsigned max_work);

#endif
