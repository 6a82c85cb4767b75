#include "tracker/registry.h"

#include <sodium.h>
#include <string.h>

#include "common/error.h"

void registry_init(struct registry *r, struct store *store, uint32_t interval_s,
                   uint32_t max_peers, uint32_t max_items) {
  r->store = store;
  r->interval_s = interval_s ? interval_s : REGISTRY_INTERVAL_DEFAULT;
  r->max_peers = max_peers;
  r->max_items =
      max_items > TMSG_MAX_ANNOUNCE_ITEMS ? TMSG_MAX_ANNOUNCE_ITEMS : max_items;
}

uint32_t registry_next_interval(const struct registry *r) {
  uint32_t span = r->interval_s / REGISTRY_JITTER_DIV;
  if (span == 0) {
    return r->interval_s;
  }
  return r->interval_s - span + randombytes_uniform(2 * span + 1);
}

unsigned registry_announce(struct registry *r, const uint8_t pk[32],
                           uint8_t family, const uint8_t addr[16],
                           const struct tmsg_announce *a, uint32_t now_s,
                           int *first_err, uint8_t *changed) {
  struct store_peer p;
  unsigned ok = 0;
  /* The longest interval a peer may have been told, plus grace. */
  uint32_t life = r->interval_s + r->interval_s / REGISTRY_JITTER_DIV +
                  r->interval_s / REGISTRY_GRACE_DIV;

  *first_err = 0;
  memset(&p, 0, sizeof(p));
  memcpy(p.pk, pk, STORE_PK_BYTES);
  memcpy(p.addr, addr, sizeof(p.addr));
  p.family = family;
  p.port = a->port;
  for (uint16_t i = 0; i < a->count; i++) {
    const struct tmsg_announce_item *it = &a->items[i];
    if (changed != NULL) {
      changed[i] = 0;
    }
    if (a->event == TMSG_EVENT_STOPPED) {
      r->store->ops->del(r->store, it->content, pk);
      if (changed != NULL) {
        changed[i] = 1;
      }
      ok++;
      continue;
    }
    if (i >= r->max_items) {
      if (*first_err == 0) {
        *first_err = SHOAL_ETOOBIG;
      }
      continue;
    }
    p.seeding = it->role == TMSG_ROLE_SEEDING;
    int completed = a->event == TMSG_EVENT_COMPLETED && p.seeding;
    int err = r->store->ops->put(r->store, it->content, &p, now_s + life,
                                 completed, r->max_peers);
    if (err < 0) {
      if (*first_err == 0) {
        *first_err = err;
      }
      continue;
    }
    if (changed != NULL) {
      /* A completed download changes the swarm's completed count, which a
       * lookup shows, even when the peer itself is unchanged. */
      changed[i] = err == STORE_CHANGED || completed;
    }
    ok++;
  }
  return ok;
}

void registry_lookup(struct registry *r, const struct tmsg_lookup *q,
                     struct tmsg_lookup_ok *reply, int *asker_in_swarm) {
  static const uint8_t zero[IDENTITY_PK_BYTES];
  struct store_peer peers[TMSG_MAX_PEERS];
  struct store_counts c;
  unsigned want = q->want > TMSG_MAX_PEERS ? TMSG_MAX_PEERS : q->want;
  const uint8_t *ex =
      memcmp(q->asker, zero, sizeof(zero)) == 0 ? NULL : q->asker;

  memset(reply, 0, sizeof(*reply));
  memcpy(reply->content, q->content, TMSG_ID_BYTES);
  unsigned n =
      r->store->ops->sample(r->store, q->content, ex, want,
                            q->flags & TMSG_LOOKUP_SEEDERS_FIRST, peers, &c);
  reply->seeders = c.seeders;
  reply->downloaders = c.downloaders;
  reply->completed = c.completed;
  if (asker_in_swarm != NULL) {
    *asker_in_swarm = c.excluded;
  }
  reply->count = (uint16_t)n;
  for (unsigned i = 0; i < n; i++) {
    struct tmsg_peer *o = &reply->peers[i];
    memcpy(o->pk, peers[i].pk, sizeof(o->pk));
    memcpy(o->addr, peers[i].addr, sizeof(o->addr));
    o->family = peers[i].family;
    o->port = peers[i].port;
    o->seeding = peers[i].seeding;
  }
}

unsigned registry_expire(struct registry *r, uint32_t now_s,
                         unsigned max_work) {
  return r->store->ops->expire(r->store, now_s, max_work);
}
