/* The peer node: one process's swarms, sessions and tracker clients.
 *
 * A node listens for other peers, takes part in one swarm per content it
 * shares or gets, and talks to the trackers of each. It runs on the
 * caller's loop; everything it reports goes through one event callback, so
 * the command line decides how to show it (a progress line, plain lines, or
 * JSON).
 *
 * Ownership: the node borrows the loop and the identity; it owns its swarms,
 * and each swarm owns its manifest, storage, picker, sessions and tracker
 * client. node_stop() announces "stopped" to the trackers (bounded in
 * time), closes every session, saves every resume record, and calls its
 * callback once its listener, timers and storages are closed; sessions and
 * tracker clients finish closing on the loop, so run the loop until it has
 * no more work before node_free() releases the rest.
 */
#ifndef SHOAL_PEER_NODE_H
#define SHOAL_PEER_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/identity.h"
#include "common/link.h"
#include "common/manifest.h"
#include "peer/node_event.h"

/* A swarm's sessions when the configuration says 0 (--max-peers). The
 * limits the node keeps are in peer/limits.h. */
#define NODE_DEFAULT_MAX_PEERS 50

enum node_mode {
  NODE_MODE_P2P = 0,
  NODE_MODE_CS = 1, /* client-server baseline: fetch only from the
                       publisher, upload nothing */
};

/* Where DATA blocks are sealed (encrypted) for sending and opened
 * (decrypted and authenticated) on receipt. */
enum node_crypto {
  NODE_CRYPTO_AUTO = 0, /* on the loop, and on the thread pool while the
                            loop is the busy one (pacing_crypto_on_pool) */
  NODE_CRYPTO_LOOP = 1, /* on the loop: sealed where read, opened straight
                            into the chunk */
  NODE_CRYPTO_POOL = 2, /* on the pool: sealed in batches, in counter
                            order; copied into the chunk and opened by its
                            check */
};

struct node_config {
  const char *home;       /* keys, resume/ and manifests/ */
  const char *listen;     /* "ADDR:PORT"; NULL: 0.0.0.0:0 */
  unsigned max_peers;     /* sessions per swarm, 1..PICKER_MAX_PEERS */
  uint64_t upload_rate;   /* bytes a second; 0: no limit */
  uint64_t download_rate; /* bytes a second; 0: no limit */
  enum node_mode mode;
  enum node_crypto crypto;
  unsigned interval_cap_s; /* 0: follow the tracker */
  unsigned tracker_rate;   /* requests a second to one tracker client;
                              0: TRACKER_CLIENT_RATE */
  unsigned tracker_burst;  /* ... in a burst; 0: TRACKER_CLIENT_BURST */
  /* The two waits a get's tracker schedule turns on, shortened by the
   * tests that pin it down (0: the defaults, which the command line
   * always uses). */
  unsigned no_peers_ms;   /* a get that lists nobody else gives up;
                             0: NODE_NO_PEERS_MS */
  unsigned lookup_max_ms; /* longest wait between lookups; 0: 30 s */
};

struct node;

/* Creates a node on loop and starts listening. Returns 0 or an error
 * (a bad listen address is SHOAL_EINVAL; a port in use is UV_EADDRINUSE). */
int node_new(struct node **out, uv_loop_t *loop, const struct node_config *c,
             const struct identity *id, node_event_cb cb, void *arg);

/* Shares a content: the manifest (from manifest_build, or a decoded one
 * made a source by recheck_apply; with local_root) is taken. It is served
 * until the node stops, and announced as complete; it is published to the
 * trackers' catalogs only when this node's identity is its publisher (a
 * copy of someone else's content is seeded under its original ID).
 * tracker_key may be NULL (trust the first reply). Returns 0 or an error
 * (the manifest is freed then too). */
int node_share(struct node *n, struct manifest *m,
               const struct link_tracker *trackers, unsigned ntrackers,
               const uint8_t *tracker_key);

/* Gets a content into dir. name and size come from a link, and the
 * manifest must match both (name NULL: no link, nothing to match). With seed,
 * the swarm keeps serving after it completes; else NODE_EV_COMPLETE is the end
 * of it. When dir/NAME already exists (a finished copy), it is checked
 * against the manifest (recheck.h, with NODE_EV_HASHING progress): a whole
 * copy is NODE_EV_COMPLETE at once and, with seed, is seeded under the
 * content's ID; a copy that differs fails the swarm and says how (nothing
 * is overwritten). */
int node_get(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
             const char *name, uint64_t size,
             const struct link_tracker *trackers, unsigned ntrackers,
             const uint8_t *tracker_key, const char *dir, int seed);

/* Dials a peer of content's swarm at sa (an ADDR:PORT given with --peer),
 * learning its key from its hello, and dials it again (with backoff) while
 * the swarm downloads and has no session it dialled there (pex.h). A get
 * given no tracker at all runs on such peers and on peer exchange alone.
 * Returns 0, SHOAL_ENOENT (no such swarm), SHOAL_ETOOBIG (PEX_GIVEN_MAX
 * addresses already) or a dialling error. */
struct sockaddr;
int node_connect(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
                 const struct sockaddr *sa);

/* The daemon's controls, at run time. */

/* The figures of content's swarm (as in a NODE_EV_PROGRESS event; the
 * pointers inside are borrowed until the next call into the node). A
 * failed swarm stays listed, with its figures, until it is removed.
 * Returns 0, or SHOAL_ENOENT when the node has no swarm for it (out is
 * zeroed then). */
int node_swarm_info(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
                    struct node_swarm_info *out);

/* Takes content's swarm out of the node: "stopped" to its trackers
 * (bounded in time, as node_stop), its sessions closed, its storage closed
 * (a download's resume record saved; the partial copy stays). From the
 * call on the swarm is gone for everyone else: node_swarm_info does not
 * find it, no event speaks of it, and peers asking for the content are
 * refused. cb(arg) comes from the loop once everything of the swarm is
 * released (never inside this call); the content may then be shared or got
 * again, and cb may do so itself (anything but node_free): until then
 * node_share and node_get of it return UV_EBUSY. A failed swarm
 * is removed the same way. node_stop while a removal is under way lets it
 * finish: cb comes, then node_stop's callback. Returns 0, SHOAL_ENOENT (no
 * such swarm) or SHOAL_ECANCELED (the node is stopping); cb does not come
 * then. */
int node_remove(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
                void (*cb)(void *arg), void *arg);

/* Sets the node-wide rate limits (bytes a second; 0: no limit) from now
 * on (rate_set). A raised or removed limit wakes the sessions waiting for
 * it at once; a lowered one holds from the next bytes moved. */
void node_set_rates(struct node *n, uint64_t upload_rate,
                    uint64_t download_rate);

/* Parses a --listen value ("ADDR:PORT", port 0 for any). Returns 0 or
 * SHOAL_EINVAL. */
struct sockaddr_storage;
int node_parse_listen(const char *s, struct sockaddr_storage *ss);

/* DATA payload bytes sent and received by the node since it started. */
uint64_t node_uploaded(const struct node *n);
uint64_t node_downloaded(const struct node *n);
/* Of those received, the bytes that were of no use: DATA discarded (late,
 * or a second copy in endgame) and chunks that failed their hash. */
uint64_t node_wasted(const struct node *n);
/* The port peers connect to. */
uint16_t node_port(const struct node *n);

/* Stops everything (see above); cb runs once when all is closed. */
void node_stop(struct node *n, void (*cb)(void *arg), void *arg);
void node_free(struct node *n);

#endif
