/* The choker: which peers of a swarm we upload to.
 *
 * Pure policy over plain data: the swarm describes its open sessions as
 * struct choker_peer records, in the order of its list, passes the clock,
 * and applies the CHOKE and UNCHOKE actions the choker returns, in their
 * order. No sockets, no allocation, no clock of its own; the random choice
 * of the optimistic unchoke comes from the function the caller gives, so a
 * test can replay it.
 *
 * The rules (docs/design.md, "Choking", says why a seeder serves by need
 * and what the study measured):
 *
 * - Only interested peers are unchoked. A rechoke without the full round
 *   (on INTERESTED, on NOT_INTERESTED from an unchoked peer, when an
 *   unchoked interested peer leaves) only chokes client-server clients we
 *   may not serve and fills free slots; the full round (choker_due) also
 *   chokes the peers that are not interested and reassigns the slots.
 * - Downloading, tit-for-tat: NODE_UPLOAD_SLOTS regular slots. Each full
 *   round the NODE_UPLOAD_SLOTS - 1 interested peers that sent us the most
 *   lately keep or get a slot (ties: the earlier in the list), the others
 *   are choked but the optimistic peer, and every NODE_OPTIMISTIC_MS a
 *   random choked, interested peer becomes the optimistic unchoke.
 * - Seeding, round robin led by need: NODE_SEED_SLOTS slots go to the
 *   interested peers that hold the fewest chunks; among equals a choked
 *   peer before an unchoked one, and the one waiting (or served) longest
 *   first.
 * - Free slots go at once to the interested, choked peer that waited
 *   longest (seeding: the one that needs it most).
 * - Client-server clients (PWIRE_HELLO_NO_UPLOAD): a seeder unchokes every
 *   interested one outside its slots; a downloader chokes them in every
 *   pass and never gives them a slot.
 */
#ifndef SHOAL_PEER_CHOKER_H
#define SHOAL_PEER_CHOKER_H

#include <stdint.h>

#include "peer/limits.h"

/* Actions one rechoke of n peers may return, at most: one per peer in the
 * first pass, one per peer and the optimistic unchoke in the full round,
 * one per free slot. */
#define CHOKER_ACTIONS_MAX(n) (2u * (n) + NODE_SEED_SLOTS + 1u)

/* A swarm's choking clock and its source of randomness; one per swarm. */
struct choker {
  uint64_t last_rechoke_ms;    /* the last full round */
  uint64_t last_optimistic_ms; /* the last optimistic rotation */
  /* A uniform random number below upper (upper > 0), such as
   * randombytes_uniform. */
  uint32_t (*uniform)(uint32_t upper);
};

/* One open session as the choker sees it. The choker updates the last
 * four fields as it decides, the way the swarm does when it applies the
 * actions. */
struct choker_peer {
  uint64_t rate;      /* bytes a second it sent us lately (tit-for-tat) */
  uint32_t have;      /* chunks it holds (the seeding order) */
  uint8_t interested; /* it is interested in what we have */
  uint8_t no_upload;  /* a client-server client (PWIRE_HELLO_NO_UPLOAD) */
  uint8_t choked;     /* we choke it */
  uint8_t optimistic; /* it holds the optimistic slot */
  uint64_t choked_at_ms, unchoked_at_ms; /* when we last did either */
};

/* Choke (choke 1) or unchoke (0) peer, an index into the caller's array. */
struct choker_action {
  unsigned peer;
  uint8_t choke;
};

/* Starts a swarm's clock at now; uniform is borrowed for its life. */
void choker_init(struct choker *c, uint64_t now,
                 uint32_t (*uniform)(uint32_t upper));

/* Whether the full round is due at now: NODE_RECHOKE_MS after the last
 * one, NODE_SEED_RECHOKE_MS while seeding. */
int choker_due(const struct choker *c, int seeding, uint64_t now);

/* Decides one rechoke at now of the n peers (the swarm's open sessions, in
 * its list's order), the full round when full is set. seeding: the swarm
 * holds every chunk; is_source: it serves its own files. Writes the
 * actions, in the order they are to be applied, to out (room for
 * CHOKER_ACTIONS_MAX(n)) and returns their count; a peer may be choked and
 * unchoked again in one round (tit-for-tat's optimistic pick), and each
 * action changes its peer's state. peers is updated to the state after
 * every action; c's clock moves on a full round. Both arrays are the
 * caller's. */
unsigned choker_rechoke(struct choker *c, int seeding, int is_source,
                        struct choker_peer *peers, unsigned n, uint64_t now,
                        int full, struct choker_action *out);

#endif
