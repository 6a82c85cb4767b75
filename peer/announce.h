/* The tracker schedule of a swarm (announce.c): what one swarm tells its
 * trackers and when, and the peers their lookups listed.
 *
 * Who calls what: node.c makes each swarm's schedule (announce_init,
 * announce_ready) over a tracker client it shares among the swarms with
 * the same trackers and key, starts it (announce_share or announce_get),
 * stops it with the node or when the swarm is removed (announce_stop, then
 * announce_waiting until "stopped" is answered), lets go of its client
 * (announce_release) and closes its timers; swarm.c tells it of the swarm's
 * completion (announce_completed) and failure (announce_stop). The
 * schedule runs on its timers and its tracker client's callbacks, and from
 * there calls down into swarm.c and session.c only.
 *
 * Ownership: struct announce is part of its swarm; it borrows the tracker
 * client (node.c holds a reference for it until announce_release), and owns
 * the two timers (closed by node.c with the node's other handles) and the
 * known-peer table (announce_free). Every request it makes passes the
 * swarm as the callback's argument, so announce_release can cancel them
 * all (tracker_client_cancel).
 */
#ifndef SHOAL_PEER_ANNOUNCE_H
#define SHOAL_PEER_ANNOUNCE_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/identity.h"
#include "common/link.h"
#include "peer/tracker_client.h"

/* Peers a lookup made us dial, remembered per swarm to dial again while
 * the tracker is unreachable. */
#define ANNOUNCE_KNOWN_MAX 64

struct swarm;
struct stop_batch;

/* A peer the tracker listed, kept to reconnect while the tracker is
 * unreachable. */
struct known_peer {
  uint8_t pk[IDENTITY_PK_BYTES];
  struct sockaddr_storage addr;
  uint64_t next_try_ms;
  uint32_t backoff_ms;
};

struct announce {
  struct tracker_client *tc; /* shared; borrowed until announce_release */
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t tracker_key[IDENTITY_PK_BYTES];
  int have_tracker_key;
  struct known_peer *known; /* ANNOUNCE_KNOWN_MAX entries, lazily */
  unsigned nknown;
  unsigned known_next; /* the entry a new peer replaces when full */
  uv_timer_t announce_timer;
  uv_timer_t lookup_timer;
  int announce_busy, lookup_busy, publish_busy;
  uint8_t announce_event; /* of the announce under way (one at a time) */
  int published;
  int announced_once;
  int ever_met_tracker;
  unsigned tracker_failures;
  uint32_t interval_s;
  uint32_t lookup_backoff_ms;
  int stop_sent;                 /* "stopped" went out (or is under way) */
  struct stop_batch *stop_batch; /* the batch it went in, until answered */
  int stop_announced;            /* ... and the tracker answered */
  int completed_pending;         /* "completed" not yet told to the tracker */
  int warned_no_peers;
};

/* Makes sw's schedule over trackers (copied; at most LINK_MAX_TRACKERS),
 * pinned to key (32 bytes, copied) or NULL (trust on first use), with its
 * two timers, over tc: the node's client for those trackers and that key,
 * which other swarms may share (NULL: none could be made, for want of
 * memory, or there is no tracker). sw is a fresh swarm of its node;
 * nothing is sent yet. */
void announce_init(struct swarm *sw, const struct link_tracker *trackers,
                   unsigned ntrackers, const uint8_t *key,
                   struct tracker_client *tc);
/* Lets go of sw's tracker client: every request of sw still due gets its
 * callback now, with SHOAL_ECANCELED (tracker_client_cancel), so that none
 * comes after the swarm is freed; the requests themselves go on, for the
 * other swarms' replies to keep their order (a "stopped" still reaches the
 * tracker). Returns the client, whose reference the caller (node.c) drops,
 * and leaves sw->an.tc NULL; NULL when sw had none. */
struct tracker_client *announce_release(struct swarm *sw);
/* After announce_init with the usable trackers of ntrackers given: fails
 * the swarm when none was usable (why says why), warns when some were
 * left out (why not ""). Returns 1 when the swarm can go on, 0 when it
 * failed or has no tracker client. */
int announce_ready(struct swarm *sw, unsigned ntrackers, const char *why);
/* Starts a share's schedule: publish (only when this node's identity is
 * the manifest's publisher; a copy of someone else's content is never
 * published), then "started" as a seeder. */
void announce_share(struct swarm *sw);
/* Starts a get's schedule: "started" as a downloader, then lookups. */
void announce_get(struct swarm *sw);
/* The swarm completed: lookups end, "completed" goes out (or waits for
 * the announce under way). */
void announce_completed(struct swarm *sw);
/* The swarm failed or the node stops: the timers stop, and "stopped"
 * goes out once, when the trackers may list the swarm (at once, or from
 * the reply of the announce under way). */
void announce_stop(struct swarm *sw);
/* Whether an announce is still under way whose "stopped" has not been
 * answered: the node's stop waits for it (NODE_STOP_MS at most). */
int announce_waiting(const struct swarm *sw);
/* The node stops: sw's timers stop, and its requests not written yet are
 * taken back (tracker_client_withdraw), unless its "stopped" is among
 * them (a failed swarm's), so that nothing but "stopped" waits for the
 * tracker's rate. An announce already written is let finish. */
void announce_halt(struct swarm *sw);
/* Whether sw should say "stopped" now and has not: the trackers may list it
 * (it announced), nothing of its schedule is under way, it has a client,
 * and it is not being removed (a removal says it alone). */
int announce_owes_stopped(const struct swarm *sw);
/* Says "stopped" for the n swarms of sws, which all owe it
 * (announce_owes_stopped) over the same tracker client, in announces of up
 * to TMSG_MAX_ANNOUNCE_ITEMS contents. Each swarm is then waiting
 * (announce_waiting) until the reply of its announce, or until
 * announce_release takes it out. Returns the announces made; when the
 * client refuses one (full, out of memory), the swarms left still owe
 * "stopped". */
unsigned announce_stopped_batch(struct swarm *const *sws, unsigned n);
/* When the next announce goes, in ms from a successful one: the
 * tracker's interval_s (60 when 0), at most cap_s (0: no cap), times a
 * factor drawn uniformly from 0.900 to 1.000 with uniform (which returns
 * a number below its argument: randombytes_uniform), and never under the
 * tracker's min_interval_s. */
uint64_t announce_next_ms(uint32_t interval_s, uint32_t cap_s,
                          uint32_t min_interval_s,
                          uint32_t (*uniform)(uint32_t upper));
/* The same for the first re-announce after "started": a factor drawn
 * uniformly from 0.100 to 1.000 (uniform's argument is 901), so that
 * contents started together spread over the whole interval. */
uint64_t announce_first_next_ms(uint32_t interval_s, uint32_t cap_s,
                                uint32_t min_interval_s,
                                uint32_t (*uniform)(uint32_t upper));
/* How long a swarm waits after its failures-th failure in a row to reach
 * its tracker: 1 s doubling to 60 s, times a factor drawn uniformly from
 * 0.500 to 1.000 with uniform (randombytes_uniform), so that swarms that
 * failed together do not retry together. */
uint64_t announce_retry_ms(unsigned failures,
                           uint32_t (*uniform)(uint32_t upper));
/* Frees what the schedule allocated besides its handles. */
void announce_free(struct announce *a);

#endif
