/* Peer exchange: the records a swarm keeps, checks, passes on and dials,
 * and the node's own address certificates (pex.h says the rules).
 *
 * The store keeps one record per peer key, in an array that grows to
 * PEX_MAX_KEPT; each record carries the store's count when it came in, so
 * a session's mark (sent_upto) says which ones it has not been sent. The
 * swarm calls in from its message handler, its session-open hook and its
 * tick; this file calls down to session.c only (to send and to dial), and
 * reads the swarm's tracker key from its schedule.
 */
#include "peer/pex.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/bans.h"
#include "peer/internal.h"

/* A record the store could not dial waits this long, doubling. */
#define PEX_BACKOFF_MAX_MS 60000u
#define PEX_STORE_FIRST 16u

/* Where a certificate's issue time and peer key lie (docs/protocol.md,
 * "Address certificate"), read before it is checked only to skip it. */
#define CERT_ISSUED_AT 8
#define CERT_PEER_AT 48

/* ------------------------------------------------------------------------ */
/* The store */

void pex_store_init(struct pex_store *st) {
  memset(st, 0, sizeof(*st));
}

void pex_store_close(struct pex_store *st) {
  free(st->r);
  memset(st, 0, sizeof(*st));
}

struct pex_record *pex_store_find(struct pex_store *st,
                                  const uint8_t pk[IDENTITY_PK_BYTES]) {
  for (unsigned i = 0; i < st->n; i++) {
    if (memcmp(st->r[i].c.peer, pk, IDENTITY_PK_BYTES) == 0) {
      return &st->r[i];
    }
  }
  return NULL;
}

/* r holds raw (c its fields) in place of what it held. */
static void record_bytes(struct pex_record *r,
                         const uint8_t raw[TMSG_CERT_BYTES],
                         const struct tmsg_cert *c) {
  memcpy(r->raw, raw, TMSG_CERT_BYTES);
  r->c = *c;
}

/* r becomes a new record: news to every session. */
static void record_set(struct pex_store *st, struct pex_record *r,
                       const uint8_t raw[TMSG_CERT_BYTES],
                       const struct tmsg_cert *c) {
  memset(r, 0, sizeof(*r));
  record_bytes(r, raw, c);
  r->seq = ++st->seq;
  r->news_ms = c->issued_ms;
}

/* Whether two records of a peer name the same place. */
static int same_place(const struct tmsg_cert *a, const struct tmsg_cert *b) {
  return a->family == b->family && a->port == b->port &&
         memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

int pex_store_add(struct pex_store *st, const uint8_t raw[TMSG_CERT_BYTES],
                  const struct tmsg_cert *c) {
  struct pex_record *r = pex_store_find(st, c->peer);
  if (r != NULL) {
    if (c->issued_ms <= r->c.issued_ms) {
      return 0; /* the same record again, or an older one */
    }
    /* A peer renews its record at every announce. At the same place
     * that is no news: the newer bytes are kept, and go out again only
     * once half the lifetime of those that went out has passed. A move
     * is news to every session at once. */
    if (same_place(c, &r->c) &&
        c->issued_ms - r->news_ms < (uint64_t)r->c.lifetime_s * 500u) {
      record_bytes(r, raw, c);
      return 0;
    }
    record_set(st, r, raw, c);
    return 1;
  }
  if (st->n == st->cap && st->cap < PEX_MAX_KEPT) {
    unsigned cap = st->cap == 0 ? PEX_STORE_FIRST : 2 * st->cap;
    struct pex_record *grown;
    if (cap > PEX_MAX_KEPT) {
      cap = PEX_MAX_KEPT;
    }
    grown = realloc(st->r, cap * sizeof(*grown));
    if (grown == NULL) {
      return SHOAL_ENOMEM;
    }
    st->r = grown;
    st->cap = cap;
  }
  if (st->n < st->cap) {
    r = &st->r[st->n++];
  } else {
    /* Full: the record issued longest ago gives up its place. */
    r = &st->r[0];
    for (unsigned i = 1; i < st->n; i++) {
      if (st->r[i].c.issued_ms < r->c.issued_ms) {
        r = &st->r[i];
      }
    }
    if (r->c.issued_ms >= c->issued_ms) {
      return 0; /* older than everything held */
    }
  }
  record_set(st, r, raw, c);
  return 1;
}

unsigned pex_store_expire(struct pex_store *st, uint64_t now_wall_ms) {
  unsigned dropped = 0;
  for (unsigned i = 0; i < st->n;) {
    const struct tmsg_cert *c = &st->r[i].c;
    if (c->issued_ms < now_wall_ms &&
        now_wall_ms - c->issued_ms > (uint64_t)c->lifetime_s * 1000u) {
      st->r[i] = st->r[--st->n];
      dropped++;
    } else {
      i++;
    }
  }
  return dropped;
}

/* ------------------------------------------------------------------------ */
/* Receiving */

int pex_take_credit(struct pex_session *ps, uint64_t now_ms) {
  if (!ps->credit_init) {
    ps->credit_init = 1;
    ps->credit = PEX_BURST;
    ps->credit_ms = now_ms;
  }
  if (now_ms > ps->credit_ms) {
    uint64_t gained = (now_ms - ps->credit_ms) / PEX_SEND_MS;
    if (ps->credit + gained >= PEX_BURST) {
      ps->credit = PEX_BURST;
      ps->credit_ms = now_ms;
    } else {
      ps->credit += (unsigned)gained;
      ps->credit_ms += gained * PEX_SEND_MS;
    }
  }
  if (ps->credit == 0) {
    return SHOAL_ERATE;
  }
  ps->credit--;
  return 0;
}

int pex_accept(struct pex_store *st, const struct pwire_msg *m,
               const struct tmsg_cert_policy *pol,
               const uint8_t self[IDENTITY_PK_BYTES], struct pex_result *res) {
  memset(res, 0, sizeof(*res));
  for (size_t i = 0; i < pwire_pex_count(m); i++) {
    const uint8_t *raw = pwire_pex_record(m, i);
    const uint8_t *peer = raw + CERT_PEER_AT;
    struct pex_record *held = pex_store_find(st, peer);
    struct tmsg_cert c;
    int err;
    /* A record of ourselves, or one issued no later than the one held
     * for its peer, could change nothing: it is not checked (the
     * signature is the cost; in a swarm of 64 every peer forwards the
     * same few dozen records to each of its sessions). Its bytes choose
     * only that it is skipped. */
    if (memcmp(peer, self, IDENTITY_PK_BYTES) == 0 ||
        (held != NULL && buf_be64(raw + CERT_ISSUED_AT) <= held->c.issued_ms)) {
      res->old++;
      continue;
    }
    err = tmsg_cert_open(raw, TMSG_CERT_BYTES, pol, &c);
    if (err == SHOAL_EBADSIG || err == SHOAL_ENOMEM) {
      /* The signer is one we trust and the bytes are not what it signed:
       * forged or altered on the way. A peer passes on only records it
       * checked, so the sender is lying or broken. */
      res->refused++;
      if (res->first_error == 0) {
        res->first_error = err;
      }
      return err;
    }
    if (err != 0) {
      /* Another tracker's record, one that ended on the way, or one from a
       * clock far ahead: not ours to use, and no proof of malice. */
      res->refused++;
      if (res->first_error == 0) {
        res->first_error = err;
      }
      continue;
    }
    if (memcmp(c.peer, self, IDENTITY_PK_BYTES) == 0) {
      res->old++; /* we never dial ourselves */
      continue;
    }
    err = pex_store_add(st, raw, &c);
    if (err < 0) {
      return err;
    }
    if (err == 1) {
      res->kept++;
    } else {
      res->old++;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Sending */

unsigned pex_collect(const struct pex_store *st, struct pex_session *ps,
                     const uint8_t *own, uint64_t own_issued,
                     const uint8_t receiver[IDENTITY_PK_BYTES], uint8_t *out,
                     unsigned max) {
  unsigned n = 0;
  if (own != NULL && own_issued != ps->own_sent_issued && n < max) {
    memcpy(out, own, TMSG_CERT_BYTES);
    ps->own_sent_issued = own_issued;
    n++;
  }
  /* The records above the mark, oldest first: each round takes the
   * smallest seq left, so a full message leaves the newer ones for the
   * next. At most PEX_MAX_KEPT × PWIRE_PEX_MAX_RECORDS comparisons. */
  while (n < max) {
    const struct pex_record *next = NULL;
    for (unsigned i = 0; i < st->n; i++) {
      const struct pex_record *r = &st->r[i];
      if (r->seq > ps->sent_upto && (next == NULL || r->seq < next->seq)) {
        next = r;
      }
    }
    if (next == NULL) {
      break;
    }
    ps->sent_upto = next->seq;
    if (memcmp(next->c.peer, receiver, IDENTITY_PK_BYTES) == 0) {
      continue; /* it knows where it is */
    }
    if (ps->sent_any && next->news_ms < ps->opened_wall_ms) {
      continue; /* in the swarm before the session: no news to it */
    }
    memcpy(out + (size_t)n * TMSG_CERT_BYTES, next->raw, TMSG_CERT_BYTES);
    n++;
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Our own certificates */

static struct pex_own *own_slot(struct node *n, const uint8_t *key) {
  for (unsigned i = 0; i < PEX_OWN_MAX; i++) {
    struct pex_own *o = &n->pex_own[i];
    if (o->used && key != NULL &&
        memcmp(o->tracker, key, IDENTITY_PK_BYTES) == 0) {
      return o;
    }
  }
  return NULL;
}

/* A slot for key: a free one, or the one with the oldest certificate. */
static struct pex_own *own_new(struct node *n, const uint8_t *key) {
  struct pex_own *o = &n->pex_own[0];
  for (unsigned i = 0; i < PEX_OWN_MAX; i++) {
    if (!n->pex_own[i].used) {
      o = &n->pex_own[i];
      break;
    }
    if (n->pex_own[i].issued_ms < o->issued_ms) {
      o = &n->pex_own[i];
    }
  }
  memset(o, 0, sizeof(*o));
  o->used = 1;
  memcpy(o->tracker, key, IDENTITY_PK_BYTES);
  return o;
}

/* Our certificate from the tracker of key while it lasts, or NULL. */
static const struct pex_own *own_cert(struct node *n, const uint8_t *key,
                                      uint64_t now_wall_ms) {
  const struct pex_own *o = own_slot(n, key);
  if (o == NULL || o->issued_ms == 0 ||
      (o->issued_ms < now_wall_ms &&
       now_wall_ms - o->issued_ms > (uint64_t)o->lifetime_s * 1000u)) {
    return NULL;
  }
  return o;
}

int pex_want_cert(struct node *n, const uint8_t *key) {
  static const uint8_t unknown[IDENTITY_PK_BYTES];
  uint64_t now = node_now(n);
  uint64_t wall = clock_wall_ms();
  /* A tracker whose key is not known yet is asked under the zero key, so
   * a burst of first announces asks once. */
  const uint8_t *k = key != NULL ? key : unknown;
  struct pex_own *o = own_slot(n, k);
  if (o == NULL) {
    o = own_new(n, k);
  } else if (o->issued_ms != 0 &&
             (wall <= o->issued_ms ||
              wall - o->issued_ms < (uint64_t)o->lifetime_s * 500u)) {
    return 0; /* younger than half its life */
  } else if (o->asked_ms != 0 && now - o->asked_ms < PEX_ASK_MS) {
    return 0; /* an announce asked a moment ago */
  }
  o->asked_ms = now != 0 ? now : 1;
  return 1;
}

void pex_take_cert(struct node *n, const uint8_t key[IDENTITY_PK_BYTES],
                   const uint8_t cert[TMSG_CERT_BYTES]) {
  struct tmsg_cert c;
  struct tmsg_cert_policy pol = {
      .keys = key,
      .nkeys = 1,
      .now_ms = clock_wall_ms(),
      .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
  };
  struct pex_own *o;
  int err = tmsg_cert_open(cert, TMSG_CERT_BYTES, &pol, &c);
  if (err == 0 && memcmp(c.peer, n->id->pk, IDENTITY_PK_BYTES) != 0) {
    err = SHOAL_EWRONGKEY;
  }
  if (err != 0) {
    log_warn("peer", "the tracker's address certificate is refused: %s",
             shoal_strerror(err));
    return;
  }
  o = own_slot(n, key);
  if (o == NULL) {
    o = own_new(n, key);
  }
  if (c.issued_ms <= o->issued_ms) {
    return;
  }
  memcpy(o->cert, cert, TMSG_CERT_BYTES);
  o->issued_ms = c.issued_ms;
  o->lifetime_s = c.lifetime_s;
  log_debug("peer", "address certificate for port %u, valid %u s",
            (unsigned)c.port, c.lifetime_s);
}

/* ------------------------------------------------------------------------ */
/* The swarm's side */

/* The tracker keys the swarm's records may be signed by, one for each
 * tier whose key is given or learned, into keys (LINK_MAX_TIERS x 32
 * bytes). Returns their count. */
static unsigned swarm_keys(const struct swarm *sw,
                           uint8_t keys[LINK_MAX_TIERS][IDENTITY_PK_BYTES]) {
  unsigned n = 0;
  for (unsigned i = 0; i < sw->an.ntiers && i < LINK_MAX_TIERS; i++) {
    const struct announce_tier *at = &sw->an.tier[i];
    const uint8_t *k = at->have_key     ? at->key
                       : at->tc != NULL ? tracker_client_key(at->tc)
                                        : NULL;
    if (k != NULL) {
      memcpy(keys[n++], k, IDENTITY_PK_BYTES);
    }
  }
  return n;
}

/* The client-server baseline takes no part: it talks to the publisher
 * only. */
static int pex_on(const struct swarm *sw) {
  return sw->node->cfg.mode != NODE_MODE_CS || sw->is_source;
}

/* Whether sw wants more peers: it downloads and has room for them. */
static int needs_peers(const struct swarm *sw) {
  return pex_on(sw) && !sw->is_source &&
         (sw->state == SW_FETCHING || sw->state == SW_OPENING ||
          sw->state == SW_RUNNING) &&
         sw->nsessions < sw->node->cfg.max_peers;
}

static void maybe_send(struct swarm *sw, struct session *s, uint64_t now) {
  uint8_t out[PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES];
  uint8_t keys[LINK_MAX_TIERS][IDENTITY_PK_BYTES];
  unsigned nkeys = swarm_keys(sw, keys);
  const struct pex_own *own = NULL;
  struct pwire_msg m;
  unsigned count;

  if (s->state != SESS_OPEN || !(s->remote_flags & PWIRE_HELLO_PEX) ||
      !pex_on(sw)) {
    return;
  }
  if (s->pex.sent_any && now - s->pex.last_sent_ms < PEX_SEND_MS) {
    return;
  }
  /* Our own certificate from the first tier that gave us one. */
  for (unsigned i = 0; i < nkeys && own == NULL; i++) {
    own = own_cert(sw->node, keys[i], clock_wall_ms());
  }
  /* Nothing new: no scan, and no message spent. */
  if ((own == NULL || own->issued_ms == s->pex.own_sent_issued) &&
      sw->pex.seq <= s->pex.sent_upto) {
    return;
  }
  count = pex_collect(&sw->pex, &s->pex, own != NULL ? own->cert : NULL,
                      own != NULL ? own->issued_ms : 0, s->remote_pk, out,
                      PWIRE_PEX_MAX_RECORDS);
  if (count == 0) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_PEX;
  m.data = out;
  m.data_len = (size_t)count * TMSG_CERT_BYTES;
  if (session_send(s, &m) == 0) {
    s->pex.sent_any = 1;
    s->pex.last_sent_ms = now;
  }
}

void pex_session_open(struct swarm *sw, struct session *s) {
  s->pex.opened_wall_ms = clock_wall_ms();
  maybe_send(sw, s, node_now(sw->node));
}

static int cert_sockaddr(const struct tmsg_cert *c,
                         struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (c->family == 4) {
    struct sockaddr_in *a = (struct sockaddr_in *)(void *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(c->port);
    memcpy(&a->sin_addr, c->addr, 4);
    return 0;
  }
  if (c->family == 6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(c->port);
    memcpy(&a->sin6_addr, c->addr, 16);
    return 0;
  }
  return SHOAL_EFORMAT;
}

static uint32_t next_backoff(uint32_t b) {
  b = b == 0 ? PEX_DIAL_MS : 2 * b;
  return b > PEX_BACKOFF_MAX_MS ? PEX_BACKOFF_MAX_MS : b;
}

/* Dials the records' peers the swarm is not connected to, each expecting
 * the record's key in its hello. */
static void dial_records(struct swarm *sw, uint64_t now) {
  struct node *n = sw->node;
  for (unsigned i = 0; i < sw->pex.n && needs_peers(sw); i++) {
    struct pex_record *r = &sw->pex.r[i];
    struct sockaddr_storage ss;
    char who[TEXTID_SHORT_CHARS + 1];
    if (r->next_dial_ms > now ||
        memcmp(r->c.peer, n->id->pk, IDENTITY_PK_BYTES) == 0 ||
        bans_is_banned(sw, r->c.peer) || session_connected_to(sw, r->c.peer) ||
        cert_sockaddr(&r->c, &ss) != 0) {
      continue;
    }
    r->backoff_ms = next_backoff(r->backoff_ms);
    r->next_dial_ms = now + r->backoff_ms;
    textid_short(TEXTID_KEY, r->c.peer, who);
    log_info("peer", "%s: dialling %s from peer exchange", sw->name, who);
    (void)session_connect(n, sw, (const struct sockaddr *)&ss, r->c.peer);
  }
}

static int same_addr(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) {
    return 0;
  }
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const struct sockaddr_in *)(const void *)a;
    const struct sockaddr_in *y = (const struct sockaddr_in *)(const void *)b;
    return x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)(const void *)a;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)(const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
  }
  return 0;
}

/* Dials the --peer addresses no session of ours was dialled to. */
static void dial_given(struct swarm *sw, uint64_t now) {
  for (unsigned i = 0; i < sw->ngiven && needs_peers(sw); i++) {
    struct pex_given *g = &sw->given[i];
    int met = 0;
    if (g->next_dial_ms > now) {
      continue;
    }
    for (const struct session *s = sw->sessions; s != NULL && !met;
         s = s->next) {
      met = s->initiator && same_addr(&s->addr, &g->addr);
    }
    if (met) {
      continue;
    }
    g->backoff_ms = next_backoff(g->backoff_ms);
    g->next_dial_ms = now + g->backoff_ms;
    (void)session_connect(sw->node, sw, (const struct sockaddr *)&g->addr,
                          NULL);
  }
}

int pex_on_message(struct swarm *sw, struct session *s,
                   const struct pwire_msg *m) {
  uint64_t now = node_now(sw->node);
  uint8_t keys[LINK_MAX_TIERS][IDENTITY_PK_BYTES];
  unsigned nkeys = swarm_keys(sw, keys);
  struct tmsg_cert_policy pol = {
      .keys = keys[0],
      .nkeys = nkeys,
      .now_ms = clock_wall_ms(),
      .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
  };
  struct pex_result res;
  int err;

  /* Only a peer that said it takes them is sent any. */
  if (!pex_on(sw)) {
    log_warn("peer", "%s: %s sent peer exchange records unasked", sw->name,
             s->remote_short);
    return SHOAL_EPROTO;
  }
  err = pex_take_credit(&s->pex, now);
  if (err != 0) {
    log_warn("peer", "%s: %s sends peer exchange records too often", sw->name,
             s->remote_short);
    return err;
  }
  err = pex_accept(&sw->pex, m, &pol, sw->node->id->pk, &res);
  if (res.refused > 0) {
    log_info("peer", "%s: %u of %zu peer exchange records from %s refused: %s",
             sw->name, res.refused, pwire_pex_count(m), s->remote_short,
             shoal_strerror(res.first_error));
  }
  if (err != 0) {
    log_warn("peer", "%s: %s passed on a forged peer exchange record", sw->name,
             s->remote_short);
    return err;
  }
  if (res.kept > 0) {
    dial_records(sw, now);
  }
  return 0;
}

void pex_tick(struct swarm *sw, uint64_t now) {
  if (sw->pex.n > 0) {
    (void)pex_store_expire(&sw->pex, clock_wall_ms());
  }
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next; /* a send may close s */
    maybe_send(sw, s, now);
  }
  if (now >= sw->pex_dial_ms) {
    sw->pex_dial_ms = now + PEX_DIAL_MS;
    dial_given(sw, now);
    dial_records(sw, now);
  }
}

int pex_add_peer(struct swarm *sw, const struct sockaddr *sa) {
  struct pex_given *g;
  size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in);
  if (sw->ngiven == PEX_GIVEN_MAX) {
    return SHOAL_ETOOBIG;
  }
  if (sw->given == NULL) {
    sw->given = calloc(PEX_GIVEN_MAX, sizeof(*sw->given));
    if (sw->given == NULL) {
      return SHOAL_ENOMEM;
    }
  }
  g = &sw->given[sw->ngiven++];
  memset(g, 0, sizeof(*g));
  memcpy(&g->addr, sa, len);
  g->backoff_ms = next_backoff(0);
  g->next_dial_ms = node_now(sw->node) + g->backoff_ms;
  return session_connect(sw->node, sw, sa, NULL);
}

void pex_swarm_free(struct swarm *sw) {
  pex_store_close(&sw->pex);
  free(sw->given);
  sw->given = NULL;
  sw->ngiven = 0;
}
