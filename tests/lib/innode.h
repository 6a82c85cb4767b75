/* A real tracker and one real node in the test's own process, on one loop
 * (tests/lib/uvrun.h, tests/lib/intracker.h), sharing small files written
 * here: the fixture of the tests of the node's tracker clients and pace.
 *
 * The node's events are counted by type. The tracker's count of
 * connections from loopback is sampled on every turn of the loop, for the
 * peak and for the times it fell to 0 while watched. Failures are cmocka
 * assertions.
 */
#ifndef SHOAL_TEST_INNODE_H
#define SHOAL_TEST_INNODE_H

#include <stdint.h>
#include <uv.h>

#include "common/identity.h"
#include "peer/node.h"
#include "peer/tracker_client.h"
#include "tests/lib/intracker.h"
#include "tests/lib/uvrun.h"
#include "tracker/tracker.h"

#define INNODE_NEVENTS (NODE_EV_FAILED + 1)

struct innode {
  struct uvrun r;
  char dir[4096];
  struct intracker t;
  struct identity id; /* the node's, or a bare client's */
  struct node *n;
  unsigned ev[INNODE_NEVENTS];      /* the node's events, by type */
  unsigned tracker_events_with_key; /* NODE_EV_TRACKER naming t's key */
  int stop_done;
  uint8_t (*content)[32]; /* of the files written, once shared */
  unsigned ncontent;
  uv_check_t check;
  unsigned conns;      /* the tracker's count from loopback, last seen */
  unsigned peak_conns; /* ... at most */
  unsigned drops;      /* times it fell to 0 while watched */
  int watch;
};

/* Opens the loop and a temporary folder, and starts the tracker with c
 * and the key of tu_identity(key_seed). */
void innode_init(struct innode *f, const struct tracker_config *c,
                 uint64_t key_seed);
/* Starts the node with c (its home, f->dir/home, and its listen address
 * are set here) and the identity tu_identity(id_seed). */
void innode_node_start(struct innode *f, struct node_config *c,
                       uint64_t id_seed);
/* Writes count files of size bytes, src/fNNNN.bin, file i filled from
 * seed0 + i, and keeps room for their content IDs. */
void innode_write_files(struct innode *f, unsigned count, size_t size,
                        uint64_t seed0);
/* The node shares file i, published by publisher, its tracker pinned to
 * key (or not: NULL). */
void innode_share(struct innode *f, unsigned i,
                  const struct identity *publisher, const uint8_t *key);
/* How many of contents [from, to) the tracker lists the node in. */
unsigned innode_listed(struct innode *f, unsigned from, unsigned to);
/* node_stop, and runs the loop until it is done or ms pass (the caller
 * asserts f->stop_done). */
void innode_stop(struct innode *f, unsigned ms);
/* Fills c for a bare tracker client of f's tracker, with the identity
 * tu_identity(id_seed) in f->id (closed by the caller) and seq. */
void innode_client_config(struct innode *f, struct tracker_client_config *c,
                          uint64_t id_seed, uint64_t *seq);
/* Stops the node (when it has not) and the tracker, closes the loop and
 * frees everything. Returns 0, or -1 when something did not stop or close
 * within ms. */
int innode_close(struct innode *f, unsigned ms);

#endif
