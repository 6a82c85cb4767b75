/* The choker: which peers of a swarm we upload to (choker.h has the
 * rules).
 *
 * One rechoke walks the peers in the swarm's order several times, as the
 * swarm did when it decided and sent in the same loops: a first pass over
 * the peers we must choke or serve whatever the slots say, then the full
 * round (the best peers by the order of the moment, then the optimistic
 * pick), then the free slots. Each step sees the choices of the steps
 * before it, since a choke moves a peer's choked_at_ms and so its place in
 * the seeding order; set() records an action and changes the peer's state
 * exactly as applying it does.
 */
#include "peer/choker.h"

#include <assert.h>
#include <stddef.h>

/* An order of candidates for the slots: whether a comes before b. */
typedef int (*slot_order)(const struct choker_peer *a,
                          const struct choker_peer *b);

void choker_init(struct choker *c, uint64_t now,
                 uint32_t (*uniform)(uint32_t upper)) {
  c->last_rechoke_ms = now;
  c->last_optimistic_ms = 0;
  c->uniform = uniform;
}

int choker_due(const struct choker *c, int seeding, uint64_t now) {
  return now - c->last_rechoke_ms >=
         (seeding ? NODE_SEED_RECHOKE_MS : NODE_RECHOKE_MS);
}

/* Chokes or unchokes peer i, unless it is so already, and records it. */
static void set(struct choker_peer *peers, unsigned i, int choke, uint64_t now,
                struct choker_action *out, unsigned *nout) {
  struct choker_peer *p = &peers[i];
  if (p->choked == choke) {
    return;
  }
  p->choked = (uint8_t)choke;
  if (choke) {
    p->choked_at_ms = now;
    p->optimistic = 0;
  } else {
    p->unchoked_at_ms = now;
  }
  out[*nout].peer = i;
  out[*nout].choke = (uint8_t)choke;
  (*nout)++;
}

/* A peer the regular slots are for: interested, and not a client-server
 * client (a seeder serves those apart from the slots, a downloader
 * never). */
static int candidate(const struct choker_peer *p) {
  return p->interested && !p->no_upload;
}

/* Regular unchoked slots in use: interested peers we unchoked, not
 * counting client-server clients a seeder always serves. */
static unsigned slots_used(const struct choker_peer *peers, unsigned n,
                           int seeding) {
  unsigned used = 0;
  for (unsigned i = 0; i < n; i++) {
    used += !peers[i].choked && peers[i].interested &&
            !(seeding && peers[i].no_upload);
  }
  return used;
}

/* Keeps best[0..*nbest) (at most cap) the candidates that come first, in
 * order, as peer i is offered; among equals the one offered first stays
 * ahead. */
static void best_offer(unsigned *best, unsigned cap, unsigned *nbest,
                       const struct choker_peer *peers, unsigned i,
                       slot_order before) {
  unsigned k;
  for (k = *nbest; k > 0 && before(&peers[i], &peers[best[k - 1]]); k--) {
    if (k < cap) {
      best[k] = best[k - 1];
    }
  }
  if (k < cap) {
    best[k] = i;
    if (*nbest < cap) {
      (*nbest)++;
    }
  }
}

static int in_best(const unsigned *best, unsigned nbest, unsigned i) {
  for (unsigned k = 0; k < nbest; k++) {
    if (best[k] == i) {
      return 1;
    }
  }
  return 0;
}

/* Downloading, tit-for-tat: the peer that sent us more lately first. */
static int sent_us_more(const struct choker_peer *a,
                        const struct choker_peer *b) {
  return a->rate > b->rate;
}

/* Seeding, whether a needs a slot before b: the peer holding fewer chunks
 * first, so that the seeder's upload goes where the swarm is furthest
 * behind and no peer is left at the tail; among equals, a choked peer
 * before an unchoked one, and the one waiting (or served) longest first,
 * which makes the choice a round robin while everyone holds the same. */
static int seed_before(const struct choker_peer *a,
                       const struct choker_peer *b) {
  if (a->have != b->have) {
    return a->have < b->have;
  }
  if (a->choked != b->choked) {
    return a->choked;
  }
  return a->choked ? a->choked_at_ms < b->choked_at_ms
                   : a->unchoked_at_ms < b->unchoked_at_ms;
}

/* The full round while seeding: the slots go to the NODE_SEED_SLOTS
 * interested peers that most need them, chosen again every
 * NODE_SEED_RECHOKE_MS: as the ones served catch up, others take their
 * turn. */
static void seed_round(struct choker_peer *peers, unsigned n, uint64_t now,
                       struct choker_action *out, unsigned *nout) {
  unsigned best[NODE_SEED_SLOTS];
  unsigned nbest = 0;
  for (unsigned i = 0; i < n; i++) {
    if (candidate(&peers[i])) {
      best_offer(best, NODE_SEED_SLOTS, &nbest, peers, i, seed_before);
    }
  }
  for (unsigned i = 0; i < n; i++) {
    if (candidate(&peers[i])) {
      set(peers, i, !in_best(best, nbest, i), now, out, nout);
    }
  }
}

/* The full round while downloading: the NODE_UPLOAD_SLOTS - 1 peers that
 * sent us the most lately keep their slots; one more slot is the
 * optimistic unchoke, which moves every NODE_OPTIMISTIC_MS. */
static void tit_for_tat_round(struct choker *c, struct choker_peer *peers,
                              unsigned n, uint64_t now,
                              struct choker_action *out, unsigned *nout) {
  unsigned best[NODE_UPLOAD_SLOTS - 1];
  unsigned nbest = 0;
  int rotate = now - c->last_optimistic_ms >= NODE_OPTIMISTIC_MS;
  for (unsigned i = 0; i < n; i++) {
    if (candidate(&peers[i])) {
      best_offer(best, NODE_UPLOAD_SLOTS - 1, &nbest, peers, i, sent_us_more);
    }
  }
  for (unsigned i = 0; i < n; i++) {
    if (!candidate(&peers[i])) {
      continue;
    }
    if (in_best(best, nbest, i)) {
      peers[i].optimistic = 0;
      set(peers, i, 0, now, out, nout);
    } else if (!(peers[i].optimistic && !rotate)) {
      set(peers, i, 1, now, out, nout);
    }
  }
  if (!rotate) {
    return;
  }
  /* A random choked, interested peer gets the optimistic slot. */
  unsigned count = 0;
  for (unsigned i = 0; i < n; i++) {
    count += candidate(&peers[i]) && peers[i].choked;
  }
  if (count > 0) {
    uint32_t pick = c->uniform(count);
    assert(pick < count);
    for (unsigned i = 0; i < n; i++) {
      if (candidate(&peers[i]) && peers[i].choked && pick-- == 0) {
        peers[i].optimistic = 1;
        set(peers, i, 0, now, out, nout);
        break;
      }
    }
  }
  c->last_optimistic_ms = now;
}

unsigned choker_rechoke(struct choker *c, int seeding, int is_source,
                        struct choker_peer *peers, unsigned n, uint64_t now,
                        int full, struct choker_action *out) {
  unsigned nout = 0;
  unsigned used;

  /* Whatever the slots say: a peer that is not interested is choked in
   * the full round, a client-server client we may not serve in every
   * pass, and one a seeder serves is unchoked at once. */
  for (unsigned i = 0; i < n; i++) {
    const struct choker_peer *p = &peers[i];
    if (!p->interested || (p->no_upload && !seeding && !is_source)) {
      if (full || p->no_upload) {
        set(peers, i, 1, now, out, &nout);
      }
    } else if (seeding && p->no_upload) {
      set(peers, i, 0, now, out, &nout);
    }
  }
  if (full) {
    c->last_rechoke_ms = now;
    if (seeding) {
      seed_round(peers, n, now, out, &nout);
    } else {
      tit_for_tat_round(c, peers, n, now, out, &nout);
    }
  }
  /* Free slots go at once to the interested peer that waited longest (a
   * seeder: the one that needs it most). */
  used = slots_used(peers, n, seeding);
  while (used < (seeding ? NODE_SEED_SLOTS : NODE_UPLOAD_SLOTS)) {
    unsigned waiting = n;
    for (unsigned i = 0; i < n; i++) {
      const struct choker_peer *p = &peers[i];
      if (p->interested && p->choked && !(p->no_upload && !seeding) &&
          (waiting == n ||
           (seeding ? seed_before(p, &peers[waiting])
                    : p->choked_at_ms < peers[waiting].choked_at_ms))) {
        waiting = i;
      }
    }
    if (waiting == n) {
      break;
    }
    set(peers, waiting, 0, now, out, &nout);
    used++;
  }
  assert(nout <= CHOKER_ACTIONS_MAX(n));
  return nout;
}
