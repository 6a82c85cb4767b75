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
 *
 * Every request is counted once, with its type, its outcome and the time
 * from its frame's arrival to its reply being queued (t->metrics); every
 * refusal is counted by reason and logged once, through handlers_refused.
 */
#include <stdarg.h>
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
    t->req.outcome = METRICS_ERROR;
    log_warn("tracker", "could not sign a reply: %s", shoal_strerror(err));
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

void handlers_refused(struct tracker *t, enum metrics_reason why,
                      enum log_level level, const char *addr, const char *fmt,
                      ...) {
  char message[512];
  va_list ap;
  struct log_field fields[2] = {
      {"reason", metrics_reason_label(why)},
      {"addr", addr},
  };
  metrics_refusal(&t->metrics, why);
  va_start(ap, fmt);
  vsnprintf(message, sizeof(message), fmt, ap);
  va_end(ap);
  log_fields(level, "tracker", fields, 2, "%s", message);
}

/* Refuses the request being handled: counts and logs it (with the sender's
 * key when known, else NULL) and appends the signed error reply. */
static void refuse(struct tracker *t, const struct peer_addr *from,
                   const uint8_t *sender, struct buf *out,
                   enum metrics_reason why, uint8_t req_type, uint64_t req_id,
                   int code, uint32_t retry_ms, const char *text) {
  char who[TEXTID_SHORT_CHARS + 1];
  char message[TMSG_MAX_REASON + 64];
  struct log_field fields[3] = {
      {"reason", metrics_reason_label(why)},
      {"addr", from->text},
      {"sender", who},
  };
  t->req.outcome = metrics_reason_outcome(why);
  metrics_refusal(&t->metrics, why);
  if (sender != NULL) {
    textid_short(TEXTID_KEY, sender, who);
  }
  snprintf(message, sizeof(message), "refused %s: %s",
           metrics_req_label(t->req.type), text);
  log_fields(t->req.outcome == METRICS_ERROR ? LOG_WARN : LOG_INFO, "tracker",
             fields, sender != NULL ? 3 : 2, "%s", message);
  handlers_error(t, out, req_type, req_id, code, retry_ms, text);
}

/* Times one call to the store (a registry call is one store operation:
 * one round trip for a shared store). */
static uint64_t store_begin(void) {
  return uv_hrtime();
}

static void store_end(struct tracker *t, uint64_t begun, int failed) {
  metrics_store_op(&t->metrics, uv_hrtime() - begun, failed);
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

/* The address certificate an announce asked for: the observed address, the
 * announced port, and a lifetime of two intervals (at least ten minutes),
 * signed on its own so that peers can pass it on (docs/protocol.md,
 * "Address certificate"). A peer asks only when its own is half spent, so
 * this is about one signature per peer and interval. Left out when it
 * cannot be signed: the reply is worth more than the certificate. */
static void add_cert(struct tracker *t, const struct peer_addr *from,
                     const uint8_t peer[IDENTITY_PK_BYTES], uint16_t port,
                     struct tmsg_announce_ok *ok) {
  struct tmsg_cert c;
  uint64_t life = 2u * (uint64_t)t->reg.interval_s;
  memset(&c, 0, sizeof(c));
  c.family = from->family;
  memcpy(c.addr, from->addr, sizeof(c.addr));
  c.port = port;
  c.lifetime_s =
      (uint32_t)(life < TMSG_CERT_LIFETIME_MIN_S   ? TMSG_CERT_LIFETIME_MIN_S
                 : life > TMSG_CERT_LIFETIME_MAX_S ? TMSG_CERT_LIFETIME_MAX_S
                                                   : life);
  c.issued_ms = clock_wall_ms();
  memcpy(c.peer, peer, IDENTITY_PK_BYTES);
  if (tmsg_cert_seal(&t->id, &c, ok->cert) == 0) {
    ok->has_cert = 1;
    t->stats.signatures++;
  }
}

static int on_announce(struct tracker *t, const struct peer_addr *from,
                       const struct envelope *env, struct buf *out) {
  struct tmsg_announce a;
  struct tmsg_announce_ok ok;
  uint8_t storage[64 + TMSG_CERT_BYTES];
  struct buf p;
  int first_err;

  int err = tmsg_announce_decode(env->payload, env->payload_len, &a);
  if (err != 0) {
    refuse(t, from, env->sender, out, METRICS_WHY_MALFORMED, TMSG_ANNOUNCE,
           env->seq, err, 0, "announce payload is malformed");
    return 1;
  }
  uint8_t changed[TMSG_MAX_ANNOUNCE_ITEMS];
  uint64_t begun = store_begin();
  unsigned n = registry_announce(&t->reg, env->sender, from->family, from->addr,
                                 &a, now_s(t), &first_err, changed);
  /* A limit (SHOAL_ETOOBIG) is policy; anything else is the store's. */
  store_end(t, begun, first_err != 0 && first_err != SHOAL_ETOOBIG);
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
    int full = first_err == SHOAL_ETOOBIG;
    refuse(t, from, env->sender, out,
           full                        ? METRICS_WHY_SWARM_FULL
           : first_err == SHOAL_ENOMEM ? METRICS_WHY_OUT_OF_MEMORY
                                       : METRICS_WHY_INTERNAL,
           TMSG_ANNOUNCE, env->seq, first_err, 0,
           full ? "swarm is full or too many contents in one announce"
                : "announce could not be registered");
    return 0;
  }
  memset(&ok, 0, sizeof(ok));
  ok.seq = env->seq;
  ok.interval_s = registry_next_interval(&t->reg);
  ok.min_interval_s = t->reg.interval_s / REGISTRY_MIN_INTERVAL_DIV;
  ok.accepted = (uint16_t)n;
  if ((a.flags & TMSG_ANNOUNCE_WANT_CERT) && a.event != TMSG_EVENT_STOPPED &&
      n > 0) {
    add_cert(t, from, env->sender, a.port, &ok);
  }
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
    refuse(t, from, env->sender, out, METRICS_WHY_MALFORMED, TMSG_PUBLISH,
           env->seq, err, 0, "publish payload is malformed");
    return 1;
  }
  err = catalog_publish(&t->cat, env->sender, &pub, now_s(t));
  if (err != 0) {
    refuse(t, from, env->sender, out,
           err == SHOAL_EWRONGKEY ? METRICS_WHY_WRONG_KEY
           : err == SHOAL_ETOOBIG ? METRICS_WHY_CATALOG_FULL
           : err == SHOAL_ENOMEM  ? METRICS_WHY_OUT_OF_MEMORY
                                  : METRICS_WHY_INTERNAL,
           TMSG_PUBLISH, env->seq, err, 0,
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

static int on_lookup(struct tracker *t, const struct peer_addr *from,
                     const struct tmsg_query *qm, struct buf *out) {
  static const uint8_t zero[IDENTITY_PK_BYTES];
  struct tmsg_lookup q;
  struct tmsg_lookup_ok *reply;
  struct buf p;
  int err = tmsg_lookup_decode(qm->payload, qm->payload_len, &q);

  if (err != 0) {
    refuse(t, from, NULL, out, METRICS_WHY_MALFORMED, TMSG_LOOKUP, qm->id, err,
           0, "lookup payload is malformed");
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
    refuse(t, from, NULL, out, METRICS_WHY_OUT_OF_MEMORY, TMSG_LOOKUP, qm->id,
           SHOAL_ENOMEM, 1000, "tracker is out of memory");
    return 0;
  }
  int asker_in_swarm = 0;
  uint64_t begun = store_begin();
  registry_lookup(&t->reg, &q, reply, &asker_in_swarm);
  store_end(t, begun, 0);
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

static int on_search(struct tracker *t, const struct peer_addr *from,
                     const struct tmsg_query *qm, struct buf *out) {
  struct tmsg_search q;
  struct tmsg_search_ok *reply;
  struct buf p;
  int err = tmsg_search_decode(qm->payload, qm->payload_len, &q);

  if (err != 0) {
    refuse(t, from, NULL, out, METRICS_WHY_MALFORMED, TMSG_SEARCH, qm->id, err,
           0, "search payload is malformed");
    return 1;
  }
  reply = malloc(sizeof(*reply));
  if (reply == NULL) {
    refuse(t, from, NULL, out, METRICS_WHY_OUT_OF_MEMORY, TMSG_SEARCH, qm->id,
           SHOAL_ENOMEM, 1000, "tracker is out of memory");
    return 0;
  }
  err = catalog_search(&t->cat, &q, reply);
  if (err != 0) {
    int oom = err == SHOAL_ENOMEM;
    free(reply);
    refuse(t, from, NULL, out,
           oom ? METRICS_WHY_OUT_OF_MEMORY : METRICS_WHY_BAD_SEARCH,
           TMSG_SEARCH, qm->id, err, oom ? 1000 : 0,
           oom ? "tracker is out of memory" : "search needs 1 to 8 words");
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
    uint64_t begun = store_begin();
    registry_lookup(&t->reg, &lq, counts, NULL);
    store_end(t, begun, 0);
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

/* The reason label of an error from envelope_open. */
static enum metrics_reason envelope_reason(int err) {
  switch (err) {
  case SHOAL_EBADSIG:
    return METRICS_WHY_BAD_SIGNATURE;
  case SHOAL_ESTALE:
  case SHOAL_EFUTURE:
    return METRICS_WHY_CLOCK_WINDOW;
  case SHOAL_EREPLAY:
  case SHOAL_ESEQ:
  case SHOAL_EGUARDFULL:
    return METRICS_WHY_REPLAY;
  case SHOAL_EVERSION:
    return METRICS_WHY_BAD_VERSION;
  default:
    return METRICS_WHY_MALFORMED;
  }
}

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

/* handlers_frame without the counting. */
static int handle(struct tracker *t, const struct peer_addr *from,
                  const uint8_t *frame, size_t len, struct buf *out) {
  uint32_t retry = 0;
  int err;

  /* The type byte sits at the same place in a query and an envelope; it
   * only names the request's label until the frame has been checked. */
  t->req.type = metrics_req_of(tmsg_peek_type(frame, len));
  err =
      ratelimit_take(&t->rl, from->family, from->addr, uv_now(t->loop), &retry);
  if (err != 0) {
    uint64_t now = uv_now(t->loop);
    if (from->limited_until != NULL && *from->limited_until > now) {
      refuse(t, from, NULL, out, METRICS_WHY_RETRY_IGNORED,
             tmsg_peek_type(frame, len), 0, err, retry,
             "too many requests and retry-after ignored; closing");
      return 1;
    }
    if (from->limited_until != NULL) {
      *from->limited_until = now + retry;
    }
    refuse(t, from, NULL, out, METRICS_WHY_RATE_LIMITED,
           tmsg_peek_type(frame, len), 0, err, retry,
           "too many requests; retry later");
    return 0;
  }

  if (tmsg_is_query(frame, len)) {
    struct tmsg_query q;
    err = tmsg_query_decode(frame, len, &q);
    if (err != 0) {
      refuse(t, from, NULL, out, METRICS_WHY_MALFORMED, 0, 0, err, 0,
             "malformed query");
      return 1;
    }
    switch (q.type) {
    case TMSG_LOOKUP:
      return on_lookup(t, from, &q, out);
    case TMSG_SEARCH:
      return on_search(t, from, &q, out);
    default:
      t->req.type = METRICS_REQ_UNKNOWN;
      refuse(t, from, NULL, out, METRICS_WHY_UNKNOWN_TYPE, q.type, q.id,
             SHOAL_EPROTO, 0, "unknown query type");
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
    refuse(t, from, NULL, out, envelope_reason(err), tmsg_peek_type(frame, len),
           0, err, 0, why_refused(err));
    return 1;
  }
  switch (env.type) {
  case TMSG_ANNOUNCE:
    return on_announce(t, from, &env, out);
  case TMSG_PUBLISH:
    return on_publish(t, from, &env, out);
  default:
    t->req.type = METRICS_REQ_UNKNOWN;
    refuse(t, from, env.sender, out, METRICS_WHY_UNKNOWN_TYPE, env.type,
           env.seq, SHOAL_EPROTO, 0, "unknown request type");
    return 1;
  }
}

int handlers_frame(struct tracker *t, const struct peer_addr *from,
                   const uint8_t *frame, size_t len, struct buf *out) {
  /* The frame arrived just now: server.c hands each one over as soon as
   * it is whole, and its reply is queued in out when handle returns. */
  uint64_t begun = uv_hrtime();
  t->stats.requests++;
  t->req.type = METRICS_REQ_UNKNOWN;
  t->req.outcome = METRICS_OK;
  int close_after = handle(t, from, frame, len, out);
  metrics_request(&t->metrics, t->req.type, t->req.outcome,
                  uv_hrtime() - begun);
  return close_after;
}

void handlers_tick(struct tracker *t) {
  uint32_t now = now_s(t);
  uint64_t begun = store_begin();
  unsigned peers = registry_expire(&t->reg, now, TRACKER_SWEEP_WORK);
  store_end(t, begun, 0);
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
