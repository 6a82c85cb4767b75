/* The tracker schedule of a swarm (announce.c): what one swarm tells its
 * trackers and when, and the peers their lookups listed.
 *
 * A swarm's trackers come in tiers (link.h): the schedule runs for each
 * tier on its own (announces, publishes, "stopped", retries), over the
 * tier's tracker client, which fails over among the tier's trackers; the
 * lookups ask one tier at a time, moving to the next when one fails or
 * lists nobody new.
 *
 * Who calls what: node.c makes each swarm's schedule (announce_init,
 * announce_ready) over one tracker client per tier, which it shares among
 * the swarms with the same tier (trackers and keys), starts it (announce_share
 * or announce_get), stops it with the node or when the swarm is removed
 * (announce_stop, then announce_waiting until "stopped" is answered), lets go
 * of its client (announce_release) and closes its timers; swarm.c tells it of
 * the swarm's completion (announce_completed) and failure (announce_stop). The
 * schedule runs on its timers and its tracker client's callbacks, and from
 * there calls down into swarm.c and session.c only.
 *
 * Ownership: struct announce is part of its swarm; it borrows the tracker
 * clients (node.c holds a reference for each until announce_release), and
 * owns the timers (one per tier and the lookup timer, closed by node.c with
 * the node's other handles) and the known-peer table (announce_free). Every
 * request it makes passes its tier (struct announce_tier) as the callback's
 * argument, so announce_release can cancel them all
 * (tracker_client_cancel).
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

/* The schedule of one tier of a swarm's trackers. */
struct announce_tier {
  struct swarm *sw;
  struct tracker_client *tc; /* shared; borrowed until announce_release */
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t key[IDENTITY_PK_BYTES]; /* given or learned: for the share link */
  int have_key;
  uv_timer_t announce_timer;
  int announce_busy, publish_busy;
  uint8_t announce_event; /* of the announce under way (one at a time) */
  int published;
  int announced_once;
  int ever_answered;
  unsigned failures; /* in a row */
  uint32_t interval_s;
  int stop_sent;                 /* "stopped" went out (or is under way) */
  struct stop_batch *stop_batch; /* the batch it went in, until answered */
  int stop_announced;            /* ... and the tracker answered */
  int completed_pending;         /* "completed" not yet told to the tracker */
};

struct announce {
  struct announce_tier tier[LINK_MAX_TIERS];
  unsigned ntiers;
  unsigned ntrackers;       /* of every tier */
  struct known_peer *known; /* ANNOUNCE_KNOWN_MAX entries, lazily */
  unsigned nknown;
  unsigned known_next; /* the entry a new peer replaces when full */
  uv_timer_t lookup_timer;
  int lookup_busy;
  unsigned lookup_tier;     /* the tier the next lookup asks */
  unsigned lookup_failures; /* in a row, over every tier */
  int published;            /* set by swarm.c for a copy seeded again: no tier
                               publishes it */
  int shared;               /* the share link went out (NODE_EV_SHARED) */
  int ever_met_tracker;
  uint32_t lookup_backoff_ms;
  int warned_no_peers;
  uint64_t listed_ms; /* a lookup last listed a peer other than us */
};

/* Groups n trackers into tiers by their tier numbers, in the order of
 * those numbers (a gap, left by trackers that were not usable, closes up):
 * the trackers of tier i are written to out from first[i], count[i] of
 * them. Returns the number of tiers (at most LINK_MAX_TIERS; trackers of
 * tier numbers past that are left out). */
unsigned announce_tiers(const struct link_tracker *in, unsigned n,
                        struct link_tracker *out,
                        unsigned first[LINK_MAX_TIERS],
                        unsigned count[LINK_MAX_TIERS]);
/* Makes sw's schedule over trackers (copied; at most LINK_MAX_TRACKERS,
 * grouped by announce_tiers), each checked against its own key, else
 * against key (32 bytes, copied), else trusted on first use, with a timer
 * per tier and the lookup timer, over tcs[i] for tier i: the node's client
 * for that tier, which other swarms may share (NULL: none could be made,
 * for want of memory). sw is a fresh swarm of its node; nothing is sent
 * yet. */
void announce_init(struct swarm *sw, const struct link_tracker *trackers,
                   unsigned ntrackers, const uint8_t *key,
                   struct tracker_client *const *tcs);
/* Lets go of sw's tracker clients: every request of sw still due gets its
 * callback now, with SHOAL_ECANCELED (tracker_client_cancel), so that none
 * comes after the swarm is freed; the requests themselves go on, for the
 * other swarms' replies to keep their order (a "stopped" still reaches the
 * tracker). Writes the clients, whose references the caller (node.c)
 * drops, to out (LINK_MAX_TIERS room) and returns their count, leaving sw
 * without any. */
unsigned announce_release(struct swarm *sw,
                          struct tracker_client *out[LINK_MAX_TIERS]);
/* After announce_init with the usable trackers of ntrackers given: fails
 * the swarm when none was usable (why says why), warns when some were
 * left out (why not ""). Returns 1 when the swarm can go on, 0 when it
 * failed or a tier has no tracker client. */
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
/* A slot of a get was freed to look for better peers: the next lookup
 * goes out within LOOKUP_MIN_MS rather than after the longest wait. */
void announce_lookup_soon(struct swarm *sw);
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
/* Whether a tier of a swarm should say "stopped" now and has not: its
 * trackers may list the swarm (it announced), nothing of its schedule is
 * under way, it has a client, and the swarm is not being removed (a
 * removal says it alone). announce_owes_stopped: whether any tier does. */
int announce_tier_owes_stopped(const struct announce_tier *at);
int announce_owes_stopped(const struct swarm *sw);
/* Says "stopped" for the n tiers of ats (of as many swarms), which all owe
 * it (announce_tier_owes_stopped) over the same tracker client, in
 * announces of up to TMSG_MAX_ANNOUNCE_ITEMS contents. Each swarm is then
 * waiting (announce_waiting) until the reply of its announce, or until
 * announce_release takes it out. Returns the announces made; when the
 * client refuses one (full, out of memory), the tiers left still owe
 * "stopped". */
unsigned announce_stopped_batch(struct announce_tier *const *ats, unsigned n);
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
