/* Request handlers: one frame in, one signed reply out.
 *
 * Signed requests (announce, publish) are opened with envelope_open under
 * the clock window (signature and clock, at once), then pass the store's
 * replay check before anything is decoded. Queries (lookup, search) are
 * unsigned. Every reply is sealed with the tracker's key.
 *
 * The store answers asynchronously (store.h): a request waiting for it
 * keeps its state in struct request (a copy of a signed frame, the decoded
 * payload, the store's outputs) and goes on in the store's callback; the
 * memory store calls back at once, so with it every request is answered
 * before handlers_frame returns. A store that does not answer gives a
 * "store unavailable, retry after N s" refusal (SHOAL_EBUSY with
 * retry_after), never a hang: the store times its calls out.
 *
 * Lookup replies are cached: the signed reply for (content, want, flags) is
 * reused for up to TRACKER_CACHE_MS, so a busy swarm costs about one
 * signature a second instead of one per lookup. Only a reply that does not
 * depend on the asker is cached (one built while the asker was not in the
 * swarm); the cache keeps the public keys it listed, and an asker among
 * them gets a fresh reply without itself, so "never the asker" holds. An
 * announce that adds, removes or changes a peer drops its swarm's cached
 * reply, so a lookup never misses a peer that announced before it (on this
 * instance; another instance's announce shows within TRACKER_CACHE_MS). A
 * client checks a lookup reply's timestamp but not its sequence number,
 * which is shared by every reader of the cache.
 *
 * Every request is counted once, with its type, its outcome and the time
 * from its frame's arrival to its reply being queued (finish); every
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

/* The largest reply: a lookup with TMSG_MAX_PEERS peers or a search page
 * with TMSG_MAX_RESULTS results, sealed and framed. */
#define REPLY_MAX FRAME_MAX_DEFAULT

static uint32_t now_s(const struct tracker *t) {
  return (uint32_t)(uv_now(t->loop) / 1000u);
}

/* What a request waits for while the store works, by type. */
struct announce_state {
  struct envelope env;
  struct tmsg_announce a;
  struct registry_announce_op op;
};

struct lookup_state {
  uint64_t qid;
  struct tmsg_lookup q;
  struct tmsg_lookup_ok reply;
  struct registry_lookup_op op;
};

struct search_state;
struct search_count {
  struct search_state *st;
  struct store_counts counts;
};

struct search_state {
  struct request *rq;
  uint64_t qid;
  struct tmsg_search q;
  struct tmsg_search_ok reply;
  unsigned pending; /* count lookups not yet answered, plus one */
  struct search_count count[TMSG_MAX_RESULTS];
};

struct publish_state {
  struct envelope env;
  struct tmsg_publish pub;
};

/* ------------------------------------------------------------------------ */
/* Requests */

struct request *handlers_request_new(struct tracker *t,
                                     const struct peer_addr *from,
                                     request_done_cb on_done, void *owner) {
  struct request *rq = calloc(1, sizeof(*rq));
  if (rq == NULL) {
    return NULL;
  }
  rq->t = t;
  rq->from = *from;
  rq->on_done = on_done;
  rq->owner = owner;
  buf_init(&rq->out, REPLY_MAX);
  return rq;
}

void handlers_request_free(struct request *rq) {
  if (rq == NULL) {
    return;
  }
  buf_free(&rq->out);
  free(rq->frame);
  free(rq->state);
  free(rq);
}

/* The reply is in rq->out: counts the request and hands it back. */
static void finish(struct request *rq, int close_after) {
  struct tracker *t = rq->t;
  free(rq->frame);
  rq->frame = NULL;
  free(rq->state);
  rq->state = NULL;
  rq->close_after = close_after;
  rq->done = 1;
  metrics_request(&t->metrics, rq->type, rq->outcome,
                  uv_hrtime() - rq->begun_ns);
  rq->on_done(rq);
}

/* Seals payload as a reply of `type` and appends it, framed, to out. */
static int seal_reply(struct tracker *t, struct request *rq, struct buf *out,
                      uint8_t type, const struct buf *payload) {
  size_t start = out->len;
  uint8_t hdr[FRAME_HEADER_BYTES] = {0};
  int err;

  buf_add(out, hdr, sizeof(hdr));
  err = envelope_seal(out, ENVELOPE_TRACKER_REPLY, type, &t->id,
                      clock_wall_ms(), t->seq++, payload->data, payload->len);
  if (err != 0) {
    out->len = start;
    if (rq != NULL) {
      rq->outcome = METRICS_ERROR;
    }
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
    (void)seal_reply(t, NULL, out, TMSG_ERROR, &p);
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

/* Refuses the request: counts and logs it (with the sender's key when
 * known, else NULL) and appends the signed error reply. */
static void refuse(struct request *rq, const uint8_t *sender,
                   enum metrics_reason why, uint8_t req_type, uint64_t req_id,
                   int code, uint32_t retry_ms, const char *text) {
  struct tracker *t = rq->t;
  char who[TEXTID_SHORT_CHARS + 1];
  char message[TMSG_MAX_REASON + 64];
  struct log_field fields[3] = {
      {"reason", metrics_reason_label(why)},
      {"addr", rq->from.text},
      {"sender", who},
  };
  rq->outcome = metrics_reason_outcome(why);
  metrics_refusal(&t->metrics, why);
  if (sender != NULL) {
    textid_short(TEXTID_KEY, sender, who);
  }
  snprintf(message, sizeof(message), "refused %s: %s",
           metrics_req_label(rq->type), text);
  log_fields(rq->outcome == METRICS_ERROR ? LOG_WARN : LOG_INFO, "tracker",
             fields, sender != NULL ? 3 : 2, "%s", message);
  handlers_error(t, &rq->out, req_type, req_id, code, retry_ms, text);
}

/* The store did not answer (it is down, or too slow): a refusal the client
 * may retry. Every request the store fails ends here; the metrics count it
 * as the tracker's error, store_unavailable. */
static void refuse_unavailable(struct request *rq, const uint8_t *sender,
                               uint8_t req_type, uint64_t req_id, int err) {
  char text[96];
  uint32_t retry = rq->t->store->retry_s ? rq->t->store->retry_s : 1;
  snprintf(text, sizeof(text), "store unavailable, retry after %u s", retry);
  log_debug("tracker", "store call failed: %s", shoal_strerror(err));
  refuse(rq, sender, METRICS_WHY_STORE_UNAVAILABLE, req_type, req_id,
         SHOAL_EBUSY, retry * 1000u, text);
}

/* Times one store call, from the call to its answer. */
static void store_begin(struct request *rq) {
  rq->store_ns = uv_hrtime();
}

static void store_end(struct tracker *t, uint64_t begun, int failed) {
  metrics_store_op(&t->metrics, uv_hrtime() - begun, failed);
}

/* An error of the store itself, as opposed to a refusal by policy. */
static int store_failed(int err) {
  return err == SHOAL_EBUSY || err == SHOAL_ETIMEDOUT || err == SHOAL_ECANCELED;
}

/* ------------------------------------------------------------------------ */
/* The lookup-reply cache */

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

/* Keeps the reply just sealed at out[start..] for the next askers. */
static void cache_keep(struct tracker *t, const struct tmsg_lookup *q,
                       const struct tmsg_lookup_ok *reply,
                       const struct buf *out, size_t start) {
  struct lookup_cache_slot *s = cache_slot(t, q->content);
  uint8_t *frame = malloc(out->len - start);
  uint8_t *pks = malloc(reply->count ? (size_t)reply->count * 32 : 1);
  if (frame == NULL || pks == NULL) {
    free(frame);
    free(pks);
    return;
  }
  free(s->frame);
  free(s->pks);
  memcpy(frame, out->data + start, out->len - start);
  for (uint16_t i = 0; i < reply->count; i++) {
    memcpy(pks + (size_t)i * 32, reply->peers[i].pk, 32);
  }
  memcpy(s->content, q->content, TMSG_ID_BYTES);
  s->want = q->want;
  s->flags = q->flags;
  s->used = 1;
  s->made_ms = uv_now(t->loop);
  s->frame = frame;
  s->frame_len = out->len - start;
  s->pks = pks;
  s->npks = reply->count;
}

/* ------------------------------------------------------------------------ */
/* Announce */

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

static void ignore_result(void *arg, int result) {
  (void)arg;
  (void)result;
}

static void on_announced(void *arg, unsigned n, int first_err,
                         const uint8_t *changed) {
  struct request *rq = arg;
  struct tracker *t = rq->t;
  struct announce_state *st = rq->state;
  const struct tmsg_announce *a = &st->a;
  const struct envelope *env = &st->env;
  struct tmsg_announce_ok ok;
  uint8_t storage[64 + TMSG_CERT_BYTES];
  struct buf p;

  store_end(t, rq->store_ns, st->op.store_failed);
  if (a->event != TMSG_EVENT_STOPPED && n > 0) {
    /* Announcing a content keeps its catalog entry alive; leaving it
     * does not. Nobody waits for this: the reply does not depend on it. */
    uint8_t(*ids)[TMSG_ID_BYTES] = malloc(a->count * sizeof(*ids));
    if (ids != NULL) {
      for (uint16_t i = 0; i < a->count; i++) {
        memcpy(ids[i], a->items[i].content, TMSG_ID_BYTES);
      }
      t->store->ops->touch(t->store, (const uint8_t(*)[TMSG_ID_BYTES])ids,
                           a->count, now_s(t), ignore_result, NULL);
      free(ids);
    }
  }
  for (uint16_t i = 0; i < a->count; i++) {
    if (changed[i]) {
      cache_drop(t, a->items[i].content);
    }
  }
  if (n == 0 && a->count > 0) {
    int full = first_err == SHOAL_ETOOBIG;
    if (store_failed(first_err)) {
      refuse_unavailable(rq, env->sender, TMSG_ANNOUNCE, env->seq, first_err);
    } else {
      refuse(rq, env->sender,
             full                        ? METRICS_WHY_SWARM_FULL
             : first_err == SHOAL_ENOMEM ? METRICS_WHY_OUT_OF_MEMORY
                                         : METRICS_WHY_INTERNAL,
             TMSG_ANNOUNCE, env->seq, first_err, 0,
             full ? "swarm is full or too many contents in one announce"
                  : "announce could not be registered");
    }
    finish(rq, 0);
    return;
  }
  log_debug("tracker", "announce from %s: %u of %u contents registered",
            rq->from.text, n, (unsigned)a->count);
  memset(&ok, 0, sizeof(ok));
  ok.seq = env->seq;
  ok.interval_s = registry_next_interval(&t->reg);
  ok.min_interval_s = t->reg.interval_s / REGISTRY_MIN_INTERVAL_DIV;
  ok.accepted = (uint16_t)n;
  if ((a->flags & TMSG_ANNOUNCE_WANT_CERT) && a->event != TMSG_EVENT_STOPPED &&
      n > 0) {
    add_cert(t, &rq->from, env->sender, a->port, &ok);
  }
  buf_init_fixed(&p, storage, sizeof(storage));
  (void)tmsg_announce_ok_encode(&p, &ok);
  finish(rq, seal_reply(t, rq, &rq->out, TMSG_ANNOUNCE_OK, &p) != 0);
}

/* The announce in rq->state passed the replay check. */
static void on_announce(struct request *rq) {
  struct tracker *t = rq->t;
  struct announce_state *st = rq->state;
  const struct envelope *env = &st->env;
  int err = tmsg_announce_decode(env->payload, env->payload_len, &st->a);
  if (err != 0) {
    refuse(rq, env->sender, METRICS_WHY_MALFORMED, TMSG_ANNOUNCE, env->seq, err,
           0, "announce payload is malformed");
    finish(rq, 1);
    return;
  }
  store_begin(rq);
  registry_announce(&t->reg, &st->op, env->sender, rq->from.family,
                    rq->from.addr, &st->a, now_s(t), on_announced, rq);
}

/* ------------------------------------------------------------------------ */
/* Publish */

static void on_published(void *arg, int err) {
  struct request *rq = arg;
  struct tracker *t = rq->t;
  struct publish_state *st = rq->state;
  struct tmsg_publish_ok ok;
  uint8_t storage[64];
  struct buf p;

  store_end(t, rq->store_ns, store_failed(err));
  if (store_failed(err)) {
    refuse_unavailable(rq, st->env.sender, TMSG_PUBLISH, st->env.seq, err);
    finish(rq, 0);
    return;
  }
  if (err != 0) {
    refuse(rq, st->env.sender,
           err == SHOAL_EWRONGKEY ? METRICS_WHY_WRONG_KEY
           : err == SHOAL_ETOOBIG ? METRICS_WHY_CATALOG_FULL
           : err == SHOAL_ENOMEM  ? METRICS_WHY_OUT_OF_MEMORY
                                  : METRICS_WHY_INTERNAL,
           TMSG_PUBLISH, st->env.seq, err, 0,
           err == SHOAL_EWRONGKEY
               ? "content is already published by another key"
           : err == SHOAL_ETOOBIG ? "catalog is full"
                                  : "publish failed");
    finish(rq, 0);
    return;
  }
  memset(&ok, 0, sizeof(ok));
  ok.seq = st->env.seq;
  memcpy(ok.content, st->pub.content, TMSG_ID_BYTES);
  buf_init_fixed(&p, storage, sizeof(storage));
  (void)tmsg_publish_ok_encode(&p, &ok);
  finish(rq, seal_reply(t, rq, &rq->out, TMSG_PUBLISH_OK, &p) != 0);
}

/* The publish in rq->state passed the replay check. */
static void on_publish(struct request *rq) {
  struct tracker *t = rq->t;
  struct publish_state *st = rq->state;
  const struct envelope *env = &st->env;
  int err = tmsg_publish_decode(env->payload, env->payload_len, &st->pub);
  if (err != 0) {
    refuse(rq, env->sender, METRICS_WHY_MALFORMED, TMSG_PUBLISH, env->seq, err,
           0, "publish payload is malformed");
    finish(rq, 1);
    return;
  }
  store_begin(rq);
  t->store->ops->publish(t->store, env->sender, &st->pub, now_s(t),
                         on_published, rq);
}

/* ------------------------------------------------------------------------ */
/* Lookup */

static void on_looked_up(void *arg, int err, int asker_in_swarm) {
  struct request *rq = arg;
  struct tracker *t = rq->t;
  struct lookup_state *st = rq->state;
  struct buf p;

  store_end(t, rq->store_ns, err != 0);
  if (err != 0) {
    refuse_unavailable(rq, NULL, TMSG_LOOKUP, st->qid, err);
    finish(rq, 0);
    return;
  }
  buf_init(&p, FRAME_MAX_DEFAULT);
  err = tmsg_lookup_ok_encode(&p, &st->reply);
  size_t start = rq->out.len;
  if (err == 0) {
    err = seal_reply(t, rq, &rq->out, TMSG_LOOKUP_OK, &p);
  }
  buf_free(&p);
  if (err == 0 && !asker_in_swarm) {
    cache_keep(t, &st->q, &st->reply, &rq->out, start);
  }
  finish(rq, err != 0);
}

static void on_lookup(struct request *rq, const struct tmsg_query *qm) {
  static const uint8_t zero[IDENTITY_PK_BYTES];
  struct tracker *t = rq->t;
  struct tmsg_lookup q;
  int err = tmsg_lookup_decode(qm->payload, qm->payload_len, &q);

  if (err != 0) {
    refuse(rq, NULL, METRICS_WHY_MALFORMED, TMSG_LOOKUP, qm->id, err, 0,
           "lookup payload is malformed");
    finish(rq, 1);
    return;
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
    buf_add(&rq->out, s->frame, s->frame_len);
    t->stats.cache_hits++;
    finish(rq, buf_err(&rq->out) != 0);
    return;
  }
  struct lookup_state *st = malloc(sizeof(*st));
  if (st == NULL) {
    refuse(rq, NULL, METRICS_WHY_OUT_OF_MEMORY, TMSG_LOOKUP, qm->id,
           SHOAL_ENOMEM, 1000, "tracker is out of memory");
    finish(rq, 0);
    return;
  }
  st->qid = qm->id;
  st->q = q;
  rq->state = st;
  store_begin(rq);
  registry_lookup(&t->reg, &st->op, &st->q, &st->reply, on_looked_up, rq);
}

/* ------------------------------------------------------------------------ */
/* Search */

static void search_reply(struct search_state *st) {
  struct request *rq = st->rq;
  struct tracker *t = rq->t;
  struct buf p;

  store_end(t, rq->store_ns, 0);
  for (uint16_t i = 0; i < st->reply.count; i++) {
    st->reply.results[i].seeders = st->count[i].counts.seeders;
    st->reply.results[i].downloaders = st->count[i].counts.downloaders;
  }
  buf_init(&p, FRAME_MAX_DEFAULT);
  int err = tmsg_search_ok_encode(&p, &st->reply);
  if (err == 0) {
    err = seal_reply(t, rq, &rq->out, TMSG_SEARCH_OK, &p);
  }
  buf_free(&p);
  finish(rq, err != 0);
}

static void on_counted(void *arg, int result) {
  struct search_count *c = arg;
  struct search_state *st = c->st;
  if (result < 0) {
    /* Counts are a hint: a result whose swarm the store could not count
     * shows none rather than failing the page. */
    memset(&c->counts, 0, sizeof(c->counts));
  }
  if (--st->pending == 0) {
    search_reply(st);
  }
}

static void on_searched(void *arg, int err) {
  struct request *rq = arg;
  struct tracker *t = rq->t;
  struct search_state *st = rq->state;

  if (err != 0) {
    int oom = err == SHOAL_ENOMEM;
    store_end(t, rq->store_ns, store_failed(err));
    if (store_failed(err)) {
      refuse_unavailable(rq, NULL, TMSG_SEARCH, st->qid, err);
    } else {
      refuse(rq, NULL, oom ? METRICS_WHY_OUT_OF_MEMORY : METRICS_WHY_BAD_SEARCH,
             TMSG_SEARCH, st->qid, err, oom ? 1000 : 0,
             oom ? "tracker is out of memory" : "search needs 1 to 8 words");
    }
    finish(rq, 0);
    return;
  }
  /* Each result's swarm counts, asked all at once (one round trip for a
   * shared store, whose calls are pipelined). */
  st->pending = 1;
  for (uint16_t i = 0; i < st->reply.count; i++) {
    struct search_count *c = &st->count[i];
    c->st = st;
    memset(&c->counts, 0, sizeof(c->counts));
    st->pending++;
    t->store->ops->sample(t->store, st->reply.results[i].content, NULL, 0, 0,
                          NULL, &c->counts, on_counted, c);
  }
  if (--st->pending == 0) {
    search_reply(st);
  }
}

static void on_search(struct request *rq, const struct tmsg_query *qm) {
  struct tracker *t = rq->t;
  struct search_state *st = malloc(sizeof(*st));
  if (st == NULL) {
    refuse(rq, NULL, METRICS_WHY_OUT_OF_MEMORY, TMSG_SEARCH, qm->id,
           SHOAL_ENOMEM, 1000, "tracker is out of memory");
    finish(rq, 0);
    return;
  }
  int err = tmsg_search_decode(qm->payload, qm->payload_len, &st->q);
  if (err != 0) {
    free(st);
    refuse(rq, NULL, METRICS_WHY_MALFORMED, TMSG_SEARCH, qm->id, err, 0,
           "search payload is malformed");
    finish(rq, 1);
    return;
  }
  st->rq = rq;
  st->qid = qm->id;
  memset(&st->reply, 0, sizeof(st->reply));
  rq->state = st;
  store_begin(rq);
  t->store->ops->search(t->store, &st->q, &st->reply, on_searched, rq);
}

/* ------------------------------------------------------------------------ */
/* Signed requests */

/* The reason label of an error from envelope_open or the replay check. */
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

/* The replay check's answer: a fresh message goes to its handler. The
 * envelope sits at the start of either state (announce or publish). */
static void on_replay_checked(void *arg, int err) {
  struct request *rq = arg;
  struct tracker *t = rq->t;
  const struct envelope *env = rq->state;

  store_end(t, rq->store_ns, store_failed(err));
  if (store_failed(err)) {
    refuse_unavailable(rq, env->sender, env->type, env->seq, err);
    finish(rq, 0);
    return;
  }
  if (err != 0) {
    refuse(rq, env->sender, envelope_reason(err), env->type, env->seq, err, 0,
           why_refused(err));
    finish(rq, 1);
    return;
  }
  if (env->type == TMSG_ANNOUNCE) {
    on_announce(rq);
  } else {
    on_publish(rq);
  }
}

/* A signed request: signature and clock now, the replay check in the
 * store, then its handler. */
static void on_signed(struct request *rq, const uint8_t *frame, size_t len) {
  struct tracker *t = rq->t;
  struct envelope env;
  struct envelope_policy pol = {
      .cls = ENVELOPE_TRACKER_REQUEST,
      .now_ms = clock_wall_ms(),
      .window_ms =
          t->cfg.window_ms ? t->cfg.window_ms : ENVELOPE_WINDOW_MS_DEFAULT,
      .guard = NULL, /* the store's replay check follows */
  };

  /* The frame is borrowed for this call only (it may sit in the shared
   * read buffer): the payload must outlive the store's answer. */
  rq->frame = malloc(len);
  if (rq->frame == NULL) {
    refuse(rq, NULL, METRICS_WHY_OUT_OF_MEMORY, tmsg_peek_type(frame, len), 0,
           SHOAL_ENOMEM, 1000, "tracker is out of memory");
    finish(rq, 0);
    return;
  }
  memcpy(rq->frame, frame, len);
  int err = envelope_open(rq->frame, len, &pol, &env);
  if (err != 0) {
    refuse(rq, NULL, envelope_reason(err), tmsg_peek_type(frame, len), 0, err,
           0, why_refused(err));
    finish(rq, 1);
    return;
  }
  if (env.type == TMSG_ANNOUNCE) {
    struct announce_state *st = malloc(sizeof(*st));
    if (st != NULL) {
      st->env = env;
    }
    rq->state = st;
  } else if (env.type == TMSG_PUBLISH) {
    struct publish_state *st = malloc(sizeof(*st));
    if (st != NULL) {
      st->env = env;
    }
    rq->state = st;
  } else {
    rq->type = METRICS_REQ_UNKNOWN;
    refuse(rq, env.sender, METRICS_WHY_UNKNOWN_TYPE, env.type, env.seq,
           SHOAL_EPROTO, 0, "unknown request type");
    finish(rq, 1);
    return;
  }
  if (rq->state == NULL) {
    refuse(rq, env.sender, METRICS_WHY_OUT_OF_MEMORY, env.type, env.seq,
           SHOAL_ENOMEM, 1000, "tracker is out of memory");
    finish(rq, 0);
    return;
  }
  store_begin(rq);
  t->store->ops->replay(t->store, env.sender, env.seq, env.timestamp_ms,
                        pol.now_ms, on_replay_checked, rq);
}

/* handlers_frame without the counting. */
static void handle(struct request *rq, const uint8_t *frame, size_t len) {
  struct tracker *t = rq->t;
  uint32_t retry = 0;
  int err;

  /* The type byte sits at the same place in a query and an envelope; it
   * only names the request's label until the frame has been checked. */
  rq->type = metrics_req_of(tmsg_peek_type(frame, len));
  err = ratelimit_take(&t->rl, rq->from.family, rq->from.addr, uv_now(t->loop),
                       &retry);
  if (err != 0) {
    uint64_t now = uv_now(t->loop);
    uint64_t *until = rq->from.limited_until;
    if (until != NULL && *until > now) {
      refuse(rq, NULL, METRICS_WHY_RETRY_IGNORED, tmsg_peek_type(frame, len), 0,
             err, retry, "too many requests and retry-after ignored; closing");
      finish(rq, 1);
      return;
    }
    if (until != NULL) {
      *until = now + retry;
    }
    refuse(rq, NULL, METRICS_WHY_RATE_LIMITED, tmsg_peek_type(frame, len), 0,
           err, retry, "too many requests; retry later");
    finish(rq, 0);
    return;
  }

  if (!tmsg_is_query(frame, len)) {
    on_signed(rq, frame, len);
    return;
  }
  struct tmsg_query q;
  err = tmsg_query_decode(frame, len, &q);
  if (err != 0) {
    refuse(rq, NULL, METRICS_WHY_MALFORMED, 0, 0, err, 0, "malformed query");
    finish(rq, 1);
    return;
  }
  switch (q.type) {
  case TMSG_LOOKUP:
    on_lookup(rq, &q);
    return;
  case TMSG_SEARCH:
    on_search(rq, &q);
    return;
  default:
    rq->type = METRICS_REQ_UNKNOWN;
    refuse(rq, NULL, METRICS_WHY_UNKNOWN_TYPE, q.type, q.id, SHOAL_EPROTO, 0,
           "unknown query type");
    finish(rq, 1);
    return;
  }
}

void handlers_frame(struct request *rq, const uint8_t *frame, size_t len) {
  /* The frame arrived just now: server.c hands each one over as soon as
   * it is whole; finish() counts it when its reply is queued. */
  rq->begun_ns = uv_hrtime();
  rq->t->stats.requests++;
  rq->type = METRICS_REQ_UNKNOWN;
  rq->outcome = METRICS_OK;
  handle(rq, frame, len);
  /* The connection's retry-after deadline is read only above: a request
   * still waiting for the store must not reach into its connection. */
  rq->from.limited_until = NULL;
}

/* ------------------------------------------------------------------------ */
/* The periodic sweep */

static void log_expiry(struct tracker *t, const char *what, int removed) {
  struct store_stats st;
  t->store->ops->stats(t->store, &st);
  log_info("tracker",
           "expiry: %d %s removed; %llu swarms, %llu registrations, %llu "
           "catalog entries remain",
           removed, what, (unsigned long long)st.swarms,
           (unsigned long long)st.peers, (unsigned long long)st.catalog);
}

static void on_expired(void *arg, int result) {
  struct tracker *t = arg;
  t->expiring = 0;
  store_end(t, t->expire_ns, store_failed(result));
  if (result > 0) {
    t->stats.expired_peers += (unsigned)result;
    log_expiry(t, "registrations", result);
  }
}

static void on_cat_expired(void *arg, int result) {
  struct tracker *t = arg;
  t->cat_expiring = 0;
  if (result > 0) {
    t->stats.expired_catalog += (unsigned)result;
    log_expiry(t, "catalog entries", result);
  }
}

void handlers_tick(struct tracker *t) {
  uint32_t now = now_s(t);
  /* One sweep of each kind at a time: a slow store must not pile them up. */
  if (!t->expiring) {
    t->expiring = 1;
    t->expire_ns = uv_hrtime();
    registry_expire(&t->reg, now, TRACKER_SWEEP_WORK, on_expired, t);
  }
  if (!t->cat_expiring) {
    t->cat_expiring = 1;
    t->store->ops->catalog_expire(t->store, now, TRACKER_SWEEP_WORK,
                                  on_cat_expired, t);
  }
}
