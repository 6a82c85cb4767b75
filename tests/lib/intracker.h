/* A real tracker in the test's own process, on 127.0.0.1, and what it
 * knows read straight from its tables.
 *
 * The tracker is tracker_init and server_start on port 0 of the loopback
 * address, with the caller's configuration (trackercfg_small and changes)
 * and a fixed key, so that peers and tracker clients of the same process
 * talk to it over real TCP on the same loop.
 */
#ifndef SHOAL_TEST_INTRACKER_H
#define SHOAL_TEST_INTRACKER_H

#include <stdint.h>
#include <uv.h>

#include "common/identity.h"
#include "common/link.h"
#include "tracker/tracker.h"

struct intracker {
  struct identity key; /* the tracker's */
  struct tracker *trk;
  struct link_tracker link; /* 127.0.0.1 and its port */
};

/* Starts a tracker on loop with c (its listen addresses are replaced by
 * 127.0.0.1:0) and the key of tu_identity(key_seed). Returns 0 or -1. */
int intracker_start(struct intracker *t, uv_loop_t *loop,
                    const struct tracker_config *c, uint64_t key_seed);
/* Stops listening and closes every connection (run the loop after). */
void intracker_stop(struct intracker *t);
/* Frees the tracker once its loop has let go of it. */
void intracker_close(struct intracker *t);
/* Whether the tracker lists pk in content's swarm. */
int intracker_lists(struct intracker *t, const uint8_t content[32],
                    const uint8_t pk[32]);
/* The same, as a seeder (seeding 1) or not (0), or either (-1). */
int intracker_lists_as(struct intracker *t, const uint8_t content[32],
                       const uint8_t pk[32], int seeding);
/* Connections open from 127.0.0.1. */
unsigned intracker_conns_from_loopback(const struct intracker *t);

#endif
