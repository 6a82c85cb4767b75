/* Request handlers: one frame in, one signed reply out.
 *
 * Signed requests (announce, publish) are opened with envelope_open under
 * the clock window and the replay guard before anything is decoded. Queries
 * (lookup, search) are unsigned. Every reply is sealed with the tracker's
 * key.
 *
 * Lookup replies are cached: the signed reply for (content, want, flags) is
 * reused for up to TRACKER_CACHE_MS, so a busy swarm costs about one
 * signature a second instead of one per lookup. Only a reply that does not
 * depend on the asker is cached (one built while the asker was not in the
 * swarm); the cache keeps the public keys it listed, and an asker among
 * them gets a fresh reply without itself, so "never the asker" holds. An
 * announce that adds, removes or changes a peer drops its swarm's cached
 * reply, so a lookup never misses a peer that announced before it. A client
 * checks a lookup reply's timestamp but not its sequence number, which is
 * shared by every reader of the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/textid.h"
#include "tracker/hashtab.h"
#include "tracker/tracker.h"

static uint32_t now_s(const struct tracker *t) {
  return (uint32_t)(uv_now(t->loop) / 1000u);
}

/* Seals payload as a reply of `type` and appends it, framed, to out. */
static int seal_reply(struct tracker *t, struct buf *out, uint8_t type,
                      const struct buf *payload) {
  size_t start = out->len;
  uint8_t hdr[FRAME_HEADER_BYTES] = {0};
  int err;

  buf_add(out, hdr, sizeof(hdr));
  err = envelope_seal(out, ENVELOPE_TRACKER_REPLY, type, &t->id,
                      clock_wall_ms(), t->seq++, payload->data, payload->len);
  if (err != 0) {
    out->len = start;
    return err;
  }
  frame_header(out->data + start, out->len - start - FRAME_HEADER_BYTES);
  t->stats.signatures++;
  return 0;
}

void handlers_error(struct tracker *t, struct buf *out, uint8_t req_type,
                    uint64_t req_id, int code, uint32_t retry_ms,
                    const char *reason) {
  struct tmsg_error e;
  uint8_t storage[TMSG_MAX_REASON + 64];
  struct buf p;

  memset(&e, 0, sizeof(e));
  e.request_type = req_type;
  e.request_id = req_id;
  e.code = code;
  e.retry_after_ms = retry_ms;
  snprintf(e.reason, sizeof(e.reason), "%s", reason);
  buf_init_fixed(&p, storage, sizeof(storage));
  if (tmsg_error_encode(&p, &e) == 0) {
    (void)seal_reply(t, out, TMSG_ERROR, &p);
  }
  t->stats.refused++;
}

/* ------------------------------------------------------------------------ */

/* One slot per content (by a keyed hash of its ID), so an announce can
 * drop its swarm's cached reply directly. */
static struct lookup_cache_slot *cache_slot(struct tracker *t,
                                            const uint8_t content[32]) {
  /* The hash's top 16 bits pick the slot. */
  uint64_t h = hashtab_hash(t->cache_key, content, TMSG_ID_BYTES);
  return &t->cache[(unsigned)(h >> 48) % TRACKER_CACHE_SLOTS];
}

static void cache_drop(struct tracker *t, const uint8_t content[32]) {
  struct lookup_cache_slot *s = cache_slot(t, content);
  if (s->used && memcmp(s->content, content, TMSG_ID_BYTES) == 0) {
    s->used = 0;
  }
}

static int cache_lists(const struct lookup_cache_slot *s, const uint8_t *pk) {
  for (uint16_t i = 0; i < s->npks; i++) {
    if (memcmp(s->pks + (size_t)i * 32, pk, 32) == 0) {
      return 1;
    }
  }
  return 0;
}

static int on_announce(struct tracker *t, const struct peer_addr *from,
                       const struct envelope *env, struct buf *out) {
  struct tmsg_announce a;
  struct tmsg_announce_ok ok;
  uint8_t storage[64];
  struct buf p;
  char who[TEXTID_SHORT_CHARS + 1];
  int first_err;

  int err = tmsg_announce_decode(env->payload, env->payload_len, &a);
  if (err != 0) {
    textid_short(TEXTID_KEY, env->sender, who);
    log_info("tracker", "refused announce from %s (%s): %s", from->text, who,
             shoal_strerror(err));
    handlers_error(t, out, TMSG_ANNOUNCE, env->seq, err, 0,
                   "announce payload is malformed");
    return 1;
  }
  uint8_t changed[TMSG_MAX_ANNOUNCE_ITEMS];
  unsigned n = registry_announce(&t->reg, env->sender, from->family, from->addr,
                                 &a, now_s(t), &first_err, changed);
  for (uint16_t i = 0; i < a.count; i++) {
    /* Announcing a content keeps its catalog entry alive; leaving it
     * does not. */
    if (a.event != TMSG_EVENT_STOPPED) {
      catalog_touch(&t->cat, a.items[i].content, now_s(t));
    }
    if (changed[i]) {
      cache_drop(t, a.items[i].content);
    }
  }
  if (n == 0 && a.count > 0) {
    textid_short(TEXTID_KEY, env->sender, who);
    log_info("tracker", "refused announce from %s (%s): %s", from->text, who,
             shoal_strerror(first_err));
    handlers_error(t, out, TMSG_ANNOUNCE, env->seq, first_err, 0,
                   first_err == SHOAL_ETOOBIG
                       ? "swarm is full or too many contents in one announce"
                       : "announce could not be registered");
    return 0;
  }
  memset(&ok, 0, sizeof(ok));
  ok.seq = env->seq;
  ok.interval_s = registry_next_interval(&t->reg);
  ok.min_interval_s = t->reg.interval_s / REGISTRY_MIN_INTERVAL_DIV;
  ok.accepted = (uint16_t)n;
  buf_init_fixed(&p, storage, sizeof(storage));
  (void)tmsg_announce_ok_encode(&p, &ok);
  return seal_reply(t, out, TMSG_ANNOUNCE_OK, &p) != 0;
}

static int on_publish(struct tracker *t, const struct peer_addr *from,
                      const struct envelope *env, struct buf *out) {
  struct tmsg_publish pub;
  struct tmsg_publish_ok ok;
  uint8_t storage[64];
  struct buf p;

  int err = tmsg_publish_decode(env->payload, env->payload_len, &pub);
  if (err != 0) {
    log_info("tracker", "refused publish from %s: %s", from->text,
             shoal_strerror(err));
    handlers_error(t, out, TMSG_PUBLISH, env->seq, err, 0,
                   "publish payload is malformed");
    return 1;
  }
  err = catalog_publish(&t->cat, env->sender, &pub, now_s(t));
  if (err != 0) {
    log_info("tracker", "refused publish from %s: %s", from->text,
             shoal_strerror(err));
    handlers_error(t, out, TMSG_PUBLISH, env->seq, err, 0,
                   err == SHOAL_EWRONGKEY
                       ? "content is already published by another key"
                   : err == SHOAL_ETOOBIG ? "catalog is full"
                                          : "publish failed");
    return 0;
  }
  memset(&ok, 0, sizeof(ok));
  ok.seq = env->seq;
  memcpy(ok.content, pub.content, TMSG_ID_BYTES);
  buf_init_fixed(&p, storage, sizeof(storage));
  (void)tmsg_publish_ok_encode(&p, &ok);
  return seal_reply(t, out, TMSG_PUBLISH_OK, &p) != 0;
}

/* ------------------------------------------------------------------------ */

static int on_lookup(struct tracker *t, const struct tmsg_query *qm,
                     struct buf *out) {
  static const uint8_t zero[IDENTITY_PK_BYTES];
  struct tmsg_lookup q;
  struct tmsg_lookup_ok *reply;
  struct buf p;
  int err = tmsg_lookup_decode(qm->payload, qm->payload_len, &q);

  if (err != 0) {
    handlers_error(t, out, TMSG_LOOKUP, qm->id, err, 0,
                   "lookup payload is malformed");
    return 1;
  }
  if (q.want > TMSG_MAX_PEERS) {
    q.want = TMSG_MAX_PEERS;
  }
  int has_asker = memcmp(q.asker, zero, sizeof(zero)) != 0;
  uint64_t now = uv_now(t->loop);
  struct lookup_cache_slot *s = cache_slot(t, q.content);
  if (s->used && now - s->made_ms < TRACKER_CACHE_MS && s->want == q.want &&
      s->flags == q.flags &&
      memcmp(s->content, q.content, TMSG_ID_BYTES) == 0 &&
      !(has_asker && cache_lists(s, q.asker))) {
    buf_add(out, s->frame, s->frame_len);
    t->stats.cache_hits++;
    return buf_err(out) != 0;
  }

  reply = malloc(sizeof(*reply));
  if (reply == NULL) {
    handlers_error(t, out, TMSG_LOOKUP, qm->id, SHOAL_ENOMEM, 1000,
                   "tracker is out of memory");
    return 0;
  }
  int asker_in_swarm = 0;
  registry_lookup(&t->reg, &q, reply, &asker_in_swarm);
  buf_init(&p, FRAME_MAX_DEFAULT);
  err = tmsg_lookup_ok_encode(&p, reply);
  size_t start = out->len;
  if (err == 0) {
    err = seal_reply(t, out, TMSG_LOOKUP_OK, &p);
  }
  buf_free(&p);
  if (err == 0 && !asker_in_swarm) {
    /* Keep it for the next askers of the same question. */
    uint8_t *frame = malloc(out->len - start);
    uint8_t *pks = malloc(reply->count ? (size_t)reply->count * 32 : 1);
    if (frame != NULL && pks != NULL) {
      free(s->frame);
      free(s->pks);
      memcpy(frame, out->data + start, out->len - start);
      for (uint16_t i = 0; i < reply->count; i++) {
        memcpy(pks + (size_t)i * 32, reply->peers[i].pk, 32);
      }
      memcpy(s->content, q.content, TMSG_ID_BYTES);
      s->want = q.want;
      s->flags = q.flags;
      s->used = 1;
      s->made_ms = now;
      s->frame = frame;
      s->frame_len = out->len - start;
      s->pks = pks;
      s->npks = reply->count;
    } else {
      free(frame);
      free(pks);
    }
  }
  free(reply);
  return err != 0;
}

static int on_search(struct tracker *t, const struct tmsg_query *qm,
                     struct buf *out) {
  struct tmsg_search q;
  struct tmsg_search_ok *reply;
  struct buf p;
  int err = tmsg_search_decode(qm->payload, qm->payload_len, &q);

  if (err != 0) {
    handlers_error(t, out, TMSG_SEARCH, qm->id, err, 0,
                   "search payload is malformed");
    return 1;
  }
  reply = malloc(sizeof(*reply));
  if (reply == NULL) {
    handlers_error(t, out, TMSG_SEARCH, qm->id, SHOAL_ENOMEM, 1000,
                   "tracker is out of memory");
    return 0;
  }
  err = catalog_search(&t->cat, &q, reply);
  if (err != 0) {
    free(reply);
    handlers_error(t, out, TMSG_SEARCH, qm->id, err,
                   err == SHOAL_ENOMEM ? 1000 : 0,
                   err == SHOAL_ENOMEM ? "tracker is out of memory"
                                       : "search needs 1 to 8 words");
    return 0;
  }
  for (uint16_t i = 0; i < reply->count; i++) {
    struct tmsg_lookup lq;
    struct tmsg_lookup_ok *counts = malloc(sizeof(*counts));
    if (counts == NULL) {
      break;
    }
    memset(&lq, 0, sizeof(lq));
    memcpy(lq.content, reply->results[i].content, TMSG_ID_BYTES);
    registry_lookup(&t->reg, &lq, counts, NULL);
    reply->results[i].seeders = counts->seeders;
    reply->results[i].downloaders = counts->downloaders;
    free(counts);
  }
  buf_init(&p, FRAME_MAX_DEFAULT);
  err = tmsg_search_ok_encode(&p, reply);
  if (err == 0) {
    err = seal_reply(t, out, TMSG_SEARCH_OK, &p);
  }
  buf_free(&p);
  free(reply);
  return err != 0;
}

/* ------------------------------------------------------------------------ */

static const char *why_refused(int err) {
  switch (err) {
  case SHOAL_EBADSIG:
    return "signature does not verify";
  case SHOAL_EDOMAIN:
    return "not a tracker request";
  case SHOAL_ESTALE:
  case SHOAL_EFUTURE:
    return "timestamp is outside the clock window; check the clock";
  case SHOAL_EREPLAY:
  case SHOAL_ESEQ:
  case SHOAL_EGUARDFULL:
    return "message was replayed or is out of sequence";
  case SHOAL_EVERSION:
    return "unsupported protocol version";
  default:
    return "malformed request";
  }
}

int handlers_frame(struct tracker *t, const struct peer_addr *from,
                   const uint8_t *frame, size_t len, struct buf *out) {
  uint32_t retry = 0;
  int err;

  t->stats.requests++;
  err =
      ratelimit_take(&t->rl, from->family, from->addr, uv_now(t->loop), &retry);
  if (err != 0) {
    uint64_t now = uv_now(t->loop);
    if (from->limited_until != NULL && *from->limited_until > now) {
      log_info("tracker", "closed %s: ignored the rate limit's retry-after",
               from->text);
      handlers_error(t, out, tmsg_peek_type(frame, len), 0, err, retry,
                     "too many requests and retry-after ignored; closing");
      return 1;
    }
    if (from->limited_until != NULL) {
      *from->limited_until = now + retry;
    }
    log_debug("tracker", "rate limit for %s", from->text);
    handlers_error(t, out, tmsg_peek_type(frame, len), 0, err, retry,
                   "too many requests; retry later");
    return 0;
  }

  if (tmsg_is_query(frame, len)) {
    struct tmsg_query q;
    err = tmsg_query_decode(frame, len, &q);
    if (err != 0) {
      log_info("tracker", "refused query from %s: %s", from->text,
               shoal_strerror(err));
      handlers_error(t, out, 0, 0, err, 0, "malformed query");
      return 1;
    }
    switch (q.type) {
    case TMSG_LOOKUP:
      return on_lookup(t, &q, out);
    case TMSG_SEARCH:
      return on_search(t, &q, out);
    default:
      log_info("tracker", "refused query of type %u from %s", q.type,
               from->text);
      handlers_error(t, out, q.type, q.id, SHOAL_EPROTO, 0,
                     "unknown query type");
      return 1;
    }
  }

  struct envelope env;
  struct envelope_policy pol = {
      .cls = ENVELOPE_TRACKER_REQUEST,
      .now_ms = clock_wall_ms(),
      .window_ms =
          t->cfg.window_ms ? t->cfg.window_ms : ENVELOPE_WINDOW_MS_DEFAULT,
      .guard = &t->guard,
  };
  err = envelope_open(frame, len, &pol, &env);
  if (err != 0) {
    log_info("tracker", "refused request from %s: %s", from->text,
             shoal_strerror(err));
    handlers_error(t, out, tmsg_peek_type(frame, len), 0, err, 0,
                   why_refused(err));
    return 1;
  }
  switch (env.type) {
  case TMSG_ANNOUNCE:
    return on_announce(t, from, &env, out);
  case TMSG_PUBLISH:
    return on_publish(t, from, &env, out);
  default:
    log_info("tracker", "refused request of type %u from %s", env.type,
             from->text);
    handlers_error(t, out, env.type, env.seq, SHOAL_EPROTO, 0,
                   "unknown request type");
    return 1;
  }
}

void handlers_tick(struct tracker *t) {
  uint32_t now = now_s(t);
  unsigned peers = registry_expire(&t->reg, now, TRACKER_SWEEP_WORK);
  unsigned cat = catalog_expire(&t->cat, now, TRACKER_SWEEP_WORK);
  t->stats.expired_peers += peers;
  t->stats.expired_catalog += cat;
  if (peers != 0 || cat != 0) {
    struct store_stats st;
    t->store->ops->stats(t->store, &st);
    log_info("tracker",
             "expiry: %u registrations and %u catalog entries removed; "
             "%llu swarms, %llu registrations, %zu catalog entries remain",
             peers, cat, (unsigned long long)st.swarms,
             (unsigned long long)st.peers, t->cat.n);
  }
}
