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

/* One answer less to wait for; the last one calls back. */
static void announce_done(struct registry_announce_op *op) {
  if (--op->pending == 0) {
    op->cb(op->arg, op->ok, op->first_err, op->changed);
  }
}

static void note_err(struct registry_announce_op *op, int err) {
  if (op->first_err == 0) {
    op->first_err = err;
  }
  /* A limit (SHOAL_ETOOBIG) is policy; anything else is the store's. */
  if (err != SHOAL_ETOOBIG) {
    op->store_failed = 1;
  }
}

static void on_del(void *arg, int result) {
  struct registry_item *it = arg;
  struct registry_announce_op *op = it->op;
  if (result < 0) {
    note_err(op, result);
  } else {
    /* Removal is idempotent: it always changes or keeps what a lookup
     * shows, and the cached reply goes either way. */
    op->changed[it->i] = 1;
    op->ok++;
  }
  announce_done(op);
}

static void on_put(void *arg, int result) {
  struct registry_item *it = arg;
  struct registry_announce_op *op = it->op;
  if (result < 0) {
    note_err(op, result);
  } else {
    /* A completed download changes the swarm's completed count, which a
     * lookup shows, even when the peer itself is unchanged. */
    op->changed[it->i] = result == STORE_CHANGED || it->completed;
    op->ok++;
  }
  announce_done(op);
}

void registry_announce(struct registry *r, struct registry_announce_op *op,
                       const uint8_t pk[32], uint8_t family,
                       const uint8_t addr[16], const struct tmsg_announce *a,
                       uint32_t now_s, registry_announce_cb cb, void *arg) {
  struct store_peer p;
  /* The longest interval a peer may have been told, plus grace. */
  uint32_t life = r->interval_s + r->interval_s / REGISTRY_JITTER_DIV +
                  r->interval_s / REGISTRY_GRACE_DIV;

  memset(op->changed, 0, sizeof(op->changed));
  op->r = r;
  op->ok = 0;
  op->first_err = 0;
  op->store_failed = 0;
  op->cb = cb;
  op->arg = arg;
  /* One extra count while the calls go out, so that a store answering
   * at once cannot finish the announce before its last item is issued. */
  op->pending = 1;
  memset(&p, 0, sizeof(p));
  memcpy(p.pk, pk, STORE_PK_BYTES);
  memcpy(p.addr, addr, sizeof(p.addr));
  p.family = family;
  p.port = a->port;
  for (uint16_t i = 0; i < a->count; i++) {
    const struct tmsg_announce_item *ai = &a->items[i];
    struct registry_item *it = &op->item[i];
    it->op = op;
    it->i = i;
    it->completed = 0;
    if (a->event == TMSG_EVENT_STOPPED) {
      op->pending++;
      r->store->ops->del(r->store, ai->content, pk, on_del, it);
      continue;
    }
    if (i >= r->max_items) {
      if (op->first_err == 0) {
        op->first_err = SHOAL_ETOOBIG;
      }
      continue;
    }
    p.seeding = ai->role == TMSG_ROLE_SEEDING;
    it->completed = a->event == TMSG_EVENT_COMPLETED && p.seeding;
    op->pending++;
    r->store->ops->put(r->store, ai->content, &p, now_s, life, it->completed,
                       r->max_peers, on_put, it);
  }
  announce_done(op);
}

static void on_sample(void *arg, int result) {
  struct registry_lookup_op *op = arg;
  struct tmsg_lookup_ok *reply = op->reply;
  if (result < 0) {
    op->cb(op->arg, result, 0);
    return;
  }
  reply->seeders = op->counts.seeders;
  reply->downloaders = op->counts.downloaders;
  reply->completed = op->counts.completed;
  reply->count = (uint16_t)result;
  for (int i = 0; i < result; i++) {
    struct tmsg_peer *o = &reply->peers[i];
    const struct store_peer *sp = &op->peers[i];
    memcpy(o->pk, sp->pk, sizeof(o->pk));
    memcpy(o->addr, sp->addr, sizeof(o->addr));
    o->family = sp->family;
    o->port = sp->port;
    o->seeding = sp->seeding;
  }
  op->cb(op->arg, 0, op->counts.excluded);
}

void registry_lookup(struct registry *r, struct registry_lookup_op *op,
                     const struct tmsg_lookup *q, struct tmsg_lookup_ok *reply,
                     registry_lookup_cb cb, void *arg) {
  static const uint8_t zero[IDENTITY_PK_BYTES];
  unsigned want = q->want > TMSG_MAX_PEERS ? TMSG_MAX_PEERS : q->want;
  const uint8_t *ex =
      memcmp(q->asker, zero, sizeof(zero)) == 0 ? NULL : q->asker;

  memset(reply, 0, sizeof(*reply));
  memcpy(reply->content, q->content, TMSG_ID_BYTES);
  memset(&op->counts, 0, sizeof(op->counts));
  op->reply = reply;
  op->cb = cb;
  op->arg = arg;
  r->store->ops->sample(r->store, q->content, ex, want,
                        q->flags & TMSG_LOOKUP_SEEDERS_FIRST, op->peers,
                        &op->counts, on_sample, op);
}

void registry_expire(struct registry *r, uint32_t now_s, unsigned max_work,
                     store_cb cb, void *arg) {
  r->store->ops->expire(r->store, now_s, max_work, cb, arg);
}
