/* Unit tests for tracker/handlers.c: one frame body in, one signed reply out.
 *
 * Each test builds a tracker context with tracker_init on its own libuv
 * loop (no sockets: the network side is server.c) and feeds handlers_frame
 * request bodies made by the test client helpers. Every reply is parsed as a
 * frame and opened as an envelope of class ENVELOPE_TRACKER_REPLY from the
 * tracker's key; a reply that does not open fails the test.
 *
 * The loop is never run, so uv_now() stands still for the whole test: the
 * rate limiter refills nothing and a cached lookup reply stays fresh, which
 * makes both deterministic. Signed requests carry the real wall clock, as
 * the tracker checks them against it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/tmsg.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tracker/tracker.h"

#define WINDOW_MS ENVELOPE_WINDOW_MS_DEFAULT /* trackercfg_small's */
#define OUT_MAX (1u << 20)

/* ---------------------------------------------------------------------- */
/* Fixture */

struct fx {
  uv_loop_t loop;
  struct tracker *t;
  struct identity key; /* the tracker's */
  struct buf out;      /* replies of the last request */
  struct buf req;      /* scratch for building requests */
  struct peer_addr from;
  uint64_t seq; /* next envelope sequence number, shared by all senders */
  /* The cast most tests use: peers 1, 2 and 3 (peer_id) and content 1
   * (content_id). */
  struct identity a, b, outsider;
  uint8_t c[32];
};

static void make_addr(struct peer_addr *a, uint8_t x, uint8_t y, uint8_t z,
                      uint8_t w) {
  memset(a, 0, sizeof(*a));
  a->family = 4;
  a->addr[0] = x;
  a->addr[1] = y;
  a->addr[2] = z;
  a->addr[3] = w;
  snprintf(a->text, sizeof(a->text), "%u.%u.%u.%u:40000", x, y, z, w);
}

/* A deterministic peer identity for each small integer. */
static void peer_id(struct identity *id, uint64_t n) {
  tu_identity(id, 0x9e11 + n);
}

static void content_id(uint8_t id[32], uint64_t n) {
  tu_fill(id, 32, 0xc0ffee00 + n);
}

static void fx_open_with(struct fx *f, const struct tracker_config *cfg) {
  memset(f, 0, sizeof(*f));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  tu_identity(&f->key, 0x7ac4e7);
  f->t = calloc(1, sizeof(*f->t));
  assert_non_null(f->t);
  assert_int_equal(tracker_init(f->t, &f->loop, cfg, &f->key), 0);
  buf_init(&f->out, OUT_MAX);
  buf_init(&f->req, FRAME_MAX_DEFAULT);
  make_addr(&f->from, 127, 0, 0, 1);
  f->seq = 1000;
  peer_id(&f->a, 1);
  peer_id(&f->b, 2);
  peer_id(&f->outsider, 3);
  content_id(f->c, 1);
}

static void fx_open(struct fx *f) {
  struct tracker_config c = trackercfg_small();
  fx_open_with(f, &c);
}

static void fx_close(struct fx *f) {
  tracker_close(f->t);
  free(f->t);
  f->t = NULL;
  assert_int_equal(uv_loop_close(&f->loop), 0);
  buf_free(&f->out);
  buf_free(&f->req);
  identity_close(&f->key);
  identity_close(&f->a);
  identity_close(&f->b);
  identity_close(&f->outsider);
}

/* ---------------------------------------------------------------------- */
/* Replies */

struct reply {
  uint8_t type;
  uint64_t seq;
  const uint8_t *payload; /* into f->out */
  size_t len;
};

/* Splits out into frames and opens each one as a tracker reply signed by
 * the tracker's key; returns how many there were (the first max are stored
 * in r). Any byte that is not part of a good reply fails the test. */
static size_t parse_replies(const struct fx *f, const struct buf *out,
                            struct reply *r, size_t max) {
  size_t off = 0;
  size_t n = 0;
  while (off < out->len) {
    struct envelope e;
    struct envelope_policy pol = {
        .cls = ENVELOPE_TRACKER_REPLY,
        .now_ms = clock_wall_ms(),
        .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
        .expect_sender = f->key.pk,
        .guard = NULL,
    };
    assert_true(out->len - off >= FRAME_HEADER_BYTES);
    uint32_t body = buf_be32(out->data + off);
    assert_true(body > 0);
    assert_true(body <= out->len - off - FRAME_HEADER_BYTES);
    assert_int_equal(
        envelope_open(out->data + off + FRAME_HEADER_BYTES, body, &pol, &e), 0);
    if (n < max) {
      r[n].type = e.type;
      r[n].seq = e.seq;
      r[n].payload = e.payload;
      r[n].len = e.payload_len;
    }
    n++;
    off += FRAME_HEADER_BYTES + body;
  }
  return n;
}

/* Sends one frame body from `from` and checks that exactly one reply came
 * back. Returns handlers_frame's verdict (1: close the connection). */
static void on_done(struct request *rq) {
  (void)rq;
}

static int send_raw(struct fx *f, const struct peer_addr *from,
                    const uint8_t *body, size_t len, struct reply *rep) {
  struct reply tmp;
  buf_reset(&f->out);
  struct request *rq =
      handlers_request_new(f->t, from != NULL ? from : &f->from, on_done, NULL);
  assert_non_null(rq);
  handlers_frame(rq, body, len);
  /* The memory store answers at once: the reply is there. */
  assert_true(rq->done);
  int rc = rq->close_after;
  buf_add(&f->out, rq->out.data, rq->out.len);
  handlers_request_free(rq);
  assert_true(rc == 0 || rc == 1);
  assert_int_equal(parse_replies(f, &f->out, rep != NULL ? rep : &tmp, 1), 1);
  return rc;
}

static int send_req(struct fx *f, const struct peer_addr *from,
                    struct reply *rep) {
  assert_int_equal(buf_err(&f->req), 0);
  return send_raw(f, from, f->req.data, f->req.len, rep);
}

static void expect_error(const struct reply *r, int code,
                         struct tmsg_error *e) {
  struct tmsg_error tmp;
  if (e == NULL) {
    e = &tmp;
  }
  assert_int_equal(r->type, TMSG_ERROR);
  assert_int_equal(tmsg_error_decode(r->payload, r->len, e), 0);
  if (e->code != code) {
    fail_msg("error %s (%s), expected %s", shoal_err_name(e->code), e->reason,
             shoal_err_name(code));
  }
}

/* Decodes an error reply whatever its code. */
static struct tmsg_error any_error(const struct reply *r) {
  struct tmsg_error e;
  assert_int_equal(r->type, TMSG_ERROR);
  assert_int_equal(tmsg_error_decode(r->payload, r->len, &e), 0);
  assert_true(e.code < 0);
  return e;
}

/* ---------------------------------------------------------------------- */
/* Requests */

/* Announces one content with the given role; returns the verdict and the
 * sequence number used in *seq (may be NULL). */
static int announce(struct fx *f, const struct peer_addr *from,
                    const struct identity *id, uint16_t port, uint8_t event,
                    const uint8_t content[32], uint8_t role, struct reply *rep,
                    uint64_t *seq) {
  uint64_t s = f->seq++;
  uint8_t c[1][32];
  memcpy(c[0], content, 32);
  tc_seal_announce(&f->req, id, clock_wall_ms(), s, port, event,
                   (const uint8_t(*)[32])c, &role, 1);
  if (seq != NULL) {
    *seq = s;
  }
  return send_req(f, from, rep);
}

/* Announces and expects ANNOUNCE_OK accepting everything. */
static void announce_ok(struct fx *f, const struct peer_addr *from,
                        const struct identity *id, uint16_t port,
                        const uint8_t content[32], uint8_t role) {
  struct reply rep;
  struct tmsg_announce_ok ok;
  assert_int_equal(announce(f, from, id, port, TMSG_EVENT_STARTED, content,
                            role, &rep, NULL),
                   0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  assert_int_equal(tmsg_announce_ok_decode(rep.payload, rep.len, &ok), 0);
  assert_int_equal(ok.accepted, 1);
}

/* Looks a content up and decodes the LOOKUP_OK into *ok. */
static void lookup(struct fx *f, const uint8_t content[32], uint16_t want,
                   uint8_t flags, const uint8_t *asker,
                   struct tmsg_lookup_ok *ok) {
  struct reply rep;
  tc_query_lookup(&f->req, f->seq++, content, want, flags, asker);
  assert_int_equal(send_req(f, NULL, &rep), 0);
  assert_int_equal(rep.type, TMSG_LOOKUP_OK);
  assert_int_equal(tmsg_lookup_ok_decode(rep.payload, rep.len, ok), 0);
  assert_memory_equal(ok->content, content, 32);
}

static const struct tmsg_peer *find_peer(const struct tmsg_lookup_ok *ok,
                                         const uint8_t pk[32]) {
  for (uint16_t i = 0; i < ok->count; i++) {
    if (memcmp(ok->peers[i].pk, pk, 32) == 0) {
      return &ok->peers[i];
    }
  }
  return NULL;
}

static void make_publish(struct tmsg_publish *p, const uint8_t content[32],
                         const char *name) {
  memset(p, 0, sizeof(*p));
  memcpy(p->content, content, 32);
  p->size = 123456789;
  snprintf(p->name, sizeof(p->name), "%s", name);
  tu_fill(p->manifest_sig, sizeof(p->manifest_sig), 0x5167);
}

static int publish(struct fx *f, const struct identity *id,
                   const struct tmsg_publish *p, struct reply *rep,
                   uint64_t *seq) {
  uint64_t s = f->seq++;
  tc_seal_publish(&f->req, id, clock_wall_ms(), s, p);
  if (seq != NULL) {
    *seq = s;
  }
  return send_req(f, NULL, rep);
}

/* Seals an arbitrary payload as a tracker request of any type. */
static void seal_raw(struct fx *f, const struct identity *id, uint8_t type,
                     uint64_t ts_ms, uint64_t seq, const void *payload,
                     size_t len) {
  buf_reset(&f->req);
  assert_int_equal(envelope_seal(&f->req, ENVELOPE_TRACKER_REQUEST, type, id,
                                 ts_ms, seq, payload, len),
                   0);
}

/* Seals into f->req an announce by id of f->c as a seeder on port 6881
 * (event started), with the timestamp and sequence number given. */
static void seal_announce(struct fx *f, const struct identity *id,
                          uint64_t ts_ms, uint64_t seq) {
  uint8_t role = TMSG_ROLE_SEEDING;
  tc_seal_announce(&f->req, id, ts_ms, seq, 6881, TMSG_EVENT_STARTED,
                   (const uint8_t(*)[32])f->c, &role, 1);
}

/* A malloc'd copy of the request in f->req; *len receives its length. */
static uint8_t *copy_req(const struct fx *f, size_t *len) {
  uint8_t *p = malloc(f->req.len);
  assert_non_null(p);
  memcpy(p, f->req.data, f->req.len);
  *len = f->req.len;
  return p;
}

/* Writes into p (a buf the caller frees) the payload of an announce of c
 * as a seeder on port 6881. */
static void announce_payload(struct buf *p, const uint8_t c[32]) {
  struct tmsg_announce an;
  memset(&an, 0, sizeof(an));
  an.port = 6881;
  an.count = 1;
  memcpy(an.items[0].content, c, 32);
  buf_init(p, 4096);
  assert_int_equal(tmsg_announce_encode(p, &an), 0);
}

/* Searches for query (query id qid) and returns the verdict;
 * the reply is in *rep. */
static int search(struct fx *f, uint64_t qid, const char *query,
                  struct reply *rep) {
  tc_query_search(&f->req, qid, query, 0, 10);
  return send_req(f, NULL, rep);
}

/* Searches for query and decodes the SEARCH_OK into *found. */
static void search_ok(struct fx *f, uint64_t qid, const char *query,
                      struct tmsg_search_ok *found) {
  struct reply rep;
  assert_int_equal(search(f, qid, query, &rep), 0);
  assert_int_equal(rep.type, TMSG_SEARCH_OK);
  assert_int_equal(tmsg_search_ok_decode(rep.payload, rep.len, found), 0);
}

/* ---------------------------------------------------------------------- */
/* Announce and lookup */

static void
test_announce_is_acknowledged_with_seq_interval_and_count(void **st) {
  struct fx f;
  uint8_t c[3][32];
  uint8_t roles[3] = {TMSG_ROLE_SEEDING, TMSG_ROLE_DOWNLOADING,
                      TMSG_ROLE_SEEDING};
  struct reply rep;
  struct tmsg_announce_ok ok;
  (void)st;
  fx_open(&f);
  for (unsigned i = 0; i < 3; i++) {
    content_id(c[i], i);
  }
  /* Several announces, so that the interval's jitter is seen more than
   * once; each reply echoes its own request's sequence number. */
  for (unsigned k = 0; k < 20; k++) {
    uint64_t seq = f.seq++;
    tc_seal_announce(&f.req, &f.a, clock_wall_ms(), seq, 6881,
                     TMSG_EVENT_STARTED, (const uint8_t(*)[32])c, roles, 3);
    assert_int_equal(send_req(&f, NULL, &rep), 0);
    assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
    assert_int_equal(tmsg_announce_ok_decode(rep.payload, rep.len, &ok), 0);
    assert_int_equal(ok.seq, seq);
    assert_in_range(ok.interval_s, 90, 110);
    assert_int_equal(ok.min_interval_s, 25);
    assert_int_equal(ok.accepted, 3);
  }
  assert_int_equal(f.t->stats.requests, 20);
  assert_int_equal(f.t->stats.refused, 0);
  fx_close(&f);
}

static void test_announce_registers_the_observed_address_and_port(void **st) {
  struct fx f;
  struct identity asker;
  struct tmsg_lookup_ok ok;
  struct peer_addr other;
  (void)st;
  fx_open(&f);
  peer_id(&asker, 2);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, asker.pk, &ok);
  assert_int_equal(ok.count, 1);
  assert_int_equal(ok.seeders, 1);
  assert_int_equal(ok.downloaders, 0);
  assert_memory_equal(ok.peers[0].pk, f.a.pk, 32);
  assert_int_equal(ok.peers[0].family, 4);
  assert_memory_equal(ok.peers[0].addr, f.from.addr, 16);
  assert_int_equal(ok.peers[0].port, 6881);
  assert_int_equal(ok.peers[0].seeding, 1);

  /* The same key announcing from another connection is registered where
   * it was seen this time: the payload has no say in the address. */
  make_addr(&other, 192, 0, 2, 77);
  announce_ok(&f, &other, &f.a, 7000, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, asker.pk, &ok);
  assert_int_equal(ok.count, 1);
  assert_memory_equal(ok.peers[0].addr, other.addr, 16);
  assert_int_equal(ok.peers[0].port, 7000);
  identity_close(&asker);
  fx_close(&f);
}

static void test_lookup_by_any_asker_lists_the_announced_peers(void **st) {
  struct fx f;
  uint8_t unknown[32];
  struct tmsg_lookup_ok ok;
  (void)st;
  fx_open(&f);
  content_id(unknown, 2);
  announce_ok(&f, NULL, &f.a, 1111, f.c, TMSG_ROLE_SEEDING);
  announce_ok(&f, NULL, &f.b, 2222, f.c, TMSG_ROLE_DOWNLOADING);
  /* Without an asker, and by an asker outside the swarm. */
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(ok.count, 2);
  assert_non_null(find_peer(&ok, f.a.pk));
  assert_non_null(find_peer(&ok, f.b.pk));
  assert_int_equal(find_peer(&ok, f.a.pk)->port, 1111);
  assert_int_equal(find_peer(&ok, f.b.pk)->port, 2222);
  assert_int_equal(ok.seeders, 1);
  assert_int_equal(ok.downloaders, 1);
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 2);
  assert_non_null(find_peer(&ok, f.a.pk));
  assert_non_null(find_peer(&ok, f.b.pk));
  /* want limits the sample but not the counts. */
  lookup(&f, f.c, 1, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 1);
  assert_int_equal(ok.seeders + ok.downloaders, 2);
  /* A swarm nobody announced is empty, not an error. */
  lookup(&f, unknown, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 0);
  assert_int_equal(ok.seeders + ok.downloaders, 0);
  fx_close(&f);
}

static void test_repeated_lookup_is_served_from_cache_byte_for_byte(void **st) {
  struct fx f;
  struct tmsg_lookup_ok ok;
  uint8_t *first;
  size_t first_len;
  (void)st;
  fx_open(&f);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);

  uint64_t hits = f.t->stats.cache_hits;
  uint64_t sigs = f.t->stats.signatures;
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits);
  assert_int_equal(f.t->stats.signatures, sigs + 1);
  first_len = f.out.len;
  first = malloc(first_len);
  assert_non_null(first);
  memcpy(first, f.out.data, first_len);

  /* The same question again: the same signed bytes, no new signature. */
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits + 1);
  assert_int_equal(f.t->stats.signatures, sigs + 1);
  assert_int_equal(f.out.len, first_len);
  assert_memory_equal(f.out.data, first, first_len);
  assert_int_equal(ok.count, 1);

  /* An asker outside the swarm gets the cached reply too: it does not
   * depend on who asks. */
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits + 2);
  assert_memory_equal(f.out.data, first, first_len);

  /* Another want or other flags are another question. */
  lookup(&f, f.c, 10, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits + 2);
  lookup(&f, f.c, 10, TMSG_LOOKUP_SEEDERS_FIRST, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits + 2);
  lookup(&f, f.c, 10, TMSG_LOOKUP_SEEDERS_FIRST, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits + 3);
  free(first);
  fx_close(&f);
}

static void test_announce_of_a_new_peer_is_seen_by_the_next_lookup(void **st) {
  struct fx f;
  struct tmsg_lookup_ok ok;
  (void)st;
  fx_open(&f);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  lookup(&f, f.c, 50, 0, NULL, &ok); /* now certainly cached */
  uint64_t hits = f.t->stats.cache_hits;
  assert_int_equal(hits, 1);

  announce_ok(&f, NULL, &f.b, 6882, f.c, TMSG_ROLE_DOWNLOADING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, hits);
  assert_int_equal(ok.count, 2);
  assert_non_null(find_peer(&ok, f.a.pk));
  assert_non_null(find_peer(&ok, f.b.pk));
  assert_int_equal(ok.downloaders, 1);
  fx_close(&f);
}

static void
test_announce_that_changes_nothing_keeps_the_cached_lookup(void **st) {
  struct fx f;
  struct tmsg_lookup_ok ok;
  struct peer_addr other;
  (void)st;
  fx_open(&f);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, NULL, &ok);

  /* A periodic renewal shows nothing new: the cached reply stays. */
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, 1);

  /* A new port, a new address or a new role are news. */
  announce_ok(&f, NULL, &f.a, 6999, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, 1);
  assert_int_equal(ok.peers[0].port, 6999);

  make_addr(&other, 198, 51, 100, 4);
  announce_ok(&f, &other, &f.a, 6999, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, 1);
  assert_memory_equal(ok.peers[0].addr, other.addr, 16);

  announce_ok(&f, &other, &f.a, 6999, f.c, TMSG_ROLE_DOWNLOADING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, 1);
  assert_int_equal(ok.peers[0].seeding, 0);
  assert_int_equal(ok.downloaders, 1);
  fx_close(&f);
}

static void
test_stopped_announce_removes_the_peer_from_the_next_lookup(void **st) {
  struct fx f;
  struct tmsg_lookup_ok ok;
  struct reply rep;
  struct tmsg_announce_ok aok;
  (void)st;
  fx_open(&f);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  announce_ok(&f, NULL, &f.b, 6882, f.c, TMSG_ROLE_SEEDING);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(ok.count, 2);
  assert_int_equal(announce(&f, NULL, &f.a, 6881, TMSG_EVENT_STOPPED, f.c,
                            TMSG_ROLE_SEEDING, &rep, NULL),
                   0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  assert_int_equal(tmsg_announce_ok_decode(rep.payload, rep.len, &aok), 0);
  assert_int_equal(aok.accepted, 1);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, 0);
  assert_int_equal(ok.count, 1);
  assert_memory_equal(ok.peers[0].pk, f.b.pk, 32);
  fx_close(&f);
}

static void
test_lookup_by_a_swarm_member_omits_it_and_is_not_cached(void **st) {
  struct fx f;
  struct tmsg_lookup_ok ok;
  (void)st;
  fx_open(&f);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  announce_ok(&f, NULL, &f.b, 6882, f.c, TMSG_ROLE_SEEDING);

  /* a asks: only b comes back. */
  lookup(&f, f.c, 50, 0, f.a.pk, &ok);
  assert_int_equal(ok.count, 1);
  assert_memory_equal(ok.peers[0].pk, f.b.pk, 32);
  assert_null(find_peer(&ok, f.a.pk));
  /* That reply depended on the asker, so it was not kept: the next
   * question (by nobody in particular) is answered afresh, with both. */
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(f.t->stats.cache_hits, 0);
  assert_int_equal(ok.count, 2);
  /* Now a reply listing a and b is cached; a asking again must not get it,
   * and neither may b. */
  for (unsigned k = 0; k < 3; k++) {
    lookup(&f, f.c, 50, 0, f.a.pk, &ok);
    assert_int_equal(ok.count, 1);
    assert_null(find_peer(&ok, f.a.pk));
    lookup(&f, f.c, 50, 0, f.b.pk, &ok);
    assert_int_equal(ok.count, 1);
    assert_null(find_peer(&ok, f.b.pk));
  }
  assert_int_equal(f.t->stats.cache_hits, 0);
  /* The cached reply is still there for everyone else. */
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(f.t->stats.cache_hits, 1);
  assert_int_equal(ok.count, 2);
  fx_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Publish and search */

static void test_publish_is_acknowledged(void **st) {
  struct fx f;
  struct tmsg_publish p;
  struct tmsg_publish_ok ok;
  struct reply rep;
  uint64_t seq = 0;
  (void)st;
  fx_open(&f);
  make_publish(&p, f.c, "Debian Netinst 12.iso");
  assert_int_equal(publish(&f, &f.a, &p, &rep, &seq), 0);
  assert_int_equal(rep.type, TMSG_PUBLISH_OK);
  assert_int_equal(tmsg_publish_ok_decode(rep.payload, rep.len, &ok), 0);
  assert_int_equal(ok.seq, seq);
  assert_memory_equal(ok.content, f.c, 32);
  /* The publisher may publish it again (a refresh). */
  assert_int_equal(publish(&f, &f.a, &p, &rep, &seq), 0);
  assert_int_equal(rep.type, TMSG_PUBLISH_OK);
  fx_close(&f);
}

static void
test_publish_of_anothers_content_is_refused_but_not_fatal(void **st) {
  struct fx f;
  struct tmsg_publish p;
  struct tmsg_error e;
  struct tmsg_search_ok *found;
  struct reply rep;
  uint64_t seq = 0;
  (void)st;
  fx_open(&f);
  make_publish(&p, f.c, "original name");
  assert_int_equal(publish(&f, &f.a, &p, &rep, NULL), 0);
  assert_int_equal(rep.type, TMSG_PUBLISH_OK);
  make_publish(&p, f.c, "hijacked name");
  assert_int_equal(publish(&f, &f.b, &p, &rep, &seq), 0);
  expect_error(&rep, SHOAL_EWRONGKEY, &e);
  assert_int_equal(e.request_type, TMSG_PUBLISH);
  assert_int_equal(e.request_id, seq);
  /* The entry is still a's, under a's name. */
  found = malloc(sizeof(*found));
  assert_non_null(found);
  search_ok(&f, 1, "name", found);
  assert_int_equal(found->count, 1);
  assert_string_equal(found->results[0].name, "original name");
  assert_memory_equal(found->results[0].publisher, f.a.pk, 32);
  free(found);
  fx_close(&f);
}

static void test_search_finds_a_published_content_with_its_counts(void **st) {
  struct fx f;
  uint8_t other[32];
  struct tmsg_publish p;
  struct tmsg_search_ok *found;
  struct reply rep;
  (void)st;
  fx_open(&f);
  content_id(other, 2);
  make_publish(&p, f.c, "Debian Netinst 12.iso");
  assert_int_equal(publish(&f, &f.a, &p, &rep, NULL), 0);
  make_publish(&p, other, "Holiday Photos 2024");
  assert_int_equal(publish(&f, &f.a, &p, &rep, NULL), 0);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  announce_ok(&f, NULL, &f.b, 6882, f.c, TMSG_ROLE_DOWNLOADING);

  found = malloc(sizeof(*found));
  assert_non_null(found);
  search_ok(&f, 42, "NETINST debian", found);
  assert_int_equal(found->total, 1);
  assert_int_equal(found->count, 1);
  assert_memory_equal(found->results[0].content, f.c, 32);
  assert_string_equal(found->results[0].name, "Debian Netinst 12.iso");
  assert_int_equal(found->results[0].size, 123456789);
  assert_memory_equal(found->results[0].publisher, f.a.pk, 32);
  assert_int_equal(found->results[0].seeders, 1);
  assert_int_equal(found->results[0].downloaders, 1);

  /* A word in neither name finds nothing. */
  search_ok(&f, 43, "netinst photos", found);
  assert_int_equal(found->total, 0);
  assert_int_equal(found->count, 0);
  free(found);
  fx_close(&f);
}

static void
test_search_with_an_empty_query_is_refused_but_not_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct tmsg_error e;
  (void)st;
  fx_open(&f);
  assert_int_equal(search(&f, 777, "", &rep), 0);
  expect_error(&rep, SHOAL_EINVAL, &e);
  assert_int_equal(e.request_type, TMSG_SEARCH);
  assert_int_equal(e.request_id, 777);
  /* Blanks only are no words either. */
  assert_int_equal(search(&f, 778, "   ", &rep), 0);
  expect_error(&rep, SHOAL_EINVAL, &e);
  /* Nor is a query of more than CATALOG_MAX_WORDS words served... */
  assert_int_equal(search(&f, 779, "a b c d e f g h i", &rep), 0);
  expect_error(&rep, SHOAL_EINVAL, &e);
  assert_int_equal(e.request_id, 779);
  /* ...while eight words are. */
  assert_int_equal(search(&f, 780, "a b c d e f g h", &rep), 0);
  assert_int_equal(rep.type, TMSG_SEARCH_OK);
  fx_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Hostile requests */

static void
test_flipped_bit_anywhere_in_an_announce_is_refused_and_fatal(void **st) {
  struct fx f;
  uint8_t *good;
  size_t len;
  struct reply rep;
  struct tmsg_error e;
  struct tmsg_lookup_ok ok;
  (void)st;
  fx_open(&f);
  seal_announce(&f, &f.a, clock_wall_ms(), 5000);
  good = copy_req(&f, &len);

  for (size_t i = 0; i < len; i++) {
    for (unsigned bit = 0; bit < 8; bit++) {
      struct peer_addr from;
      /* Spread the requests over addresses so that the rate limit is not
       * what refuses them. */
      make_addr(&from, 10, (uint8_t)(i >> 8), (uint8_t)i, (uint8_t)bit);
      memcpy(f.req.data, good, len);
      f.req.data[i] ^= (uint8_t)(1u << bit);
      assert_int_equal(send_req(&f, &from, &rep), 1);
      e = any_error(&rep);
      if (i >= 4 && (i < 52 || i >= 56)) {
        /* Sender, timestamp, sequence number, payload and signature are
         * all covered by the signature. */
        assert_int_equal(e.code, SHOAL_EBADSIG);
        assert_int_equal(e.request_type, TMSG_ANNOUNCE);
      }
    }
  }
  /* Nothing of it was registered... */
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 0);
  /* ...and the forgeries did not use up the real message's sequence
   * number in the replay guard. */
  assert_int_equal(send_raw(&f, NULL, good, len, &rep), 0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 1);
  free(good);
  fx_close(&f);
}

static void test_forged_signature_is_refused_and_fatal(void **st) {
  struct fx f;
  struct identity mallory;
  struct reply rep;
  struct tmsg_error e;
  (void)st;
  fx_open(&f);
  peer_id(&mallory, 66);
  /* Signed by mallory, claiming to be a. */
  seal_announce(&f, &mallory, clock_wall_ms(), 5000);
  memcpy(f.req.data + 4, f.a.pk, 32);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EBADSIG, &e);
  assert_int_equal(e.request_type, TMSG_ANNOUNCE);
  assert_true(e.reason[0] != '\0');
  /* A zeroed signature. */
  seal_announce(&f, &f.a, clock_wall_ms(), 5001);
  memset(f.req.data + f.req.len - 64, 0, 64);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EBADSIG, NULL);
  assert_int_equal(f.t->stats.refused, 2);
  identity_close(&mallory);
  fx_close(&f);
}

static void test_replayed_announce_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  (void)st;
  fx_open(&f);
  seal_announce(&f, &f.a, clock_wall_ms(), 5000);
  assert_int_equal(send_req(&f, NULL, &rep), 0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  /* The same bytes again, from anywhere. */
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EREPLAY, NULL);
  struct peer_addr other;
  make_addr(&other, 192, 0, 2, 1);
  assert_int_equal(send_req(&f, &other, &rep), 1);
  expect_error(&rep, SHOAL_EREPLAY, NULL);
  /* A sequence number far below the sender's latest is refused too. */
  seal_announce(&f, &f.a, clock_wall_ms(), 5000 - 1000);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_ESEQ, NULL);
  fx_close(&f);
}

static void
test_announce_outside_the_clock_window_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct tmsg_lookup_ok ok;
  (void)st;
  fx_open(&f);
  uint64_t now = clock_wall_ms();
  seal_announce(&f, &f.a, now - WINDOW_MS - 60000, 5000);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_ESTALE, NULL);
  seal_announce(&f, &f.a, now + WINDOW_MS + 60000, 5001);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EFUTURE, NULL);
  /* A timestamp of zero (a sender without a clock) is stale. */
  seal_announce(&f, &f.a, 0, 5002);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_ESTALE, NULL);
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 0);
  /* Well inside the window is fine. */
  seal_announce(&f, &f.a, now - WINDOW_MS / 2, 5003);
  assert_int_equal(send_req(&f, NULL, &rep), 0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  fx_close(&f);
}

static void test_request_of_another_class_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct buf p;
  (void)st;
  fx_open(&f);
  announce_payload(&p, f.c);
  /* A good announce payload, signed as a tracker reply or a peer hello. */
  static const enum envelope_class classes[] = {ENVELOPE_TRACKER_REPLY,
                                                ENVELOPE_PEER_HELLO};
  for (size_t k = 0; k < 2; k++) {
    buf_reset(&f.req);
    assert_int_equal(envelope_seal(&f.req, classes[k], TMSG_ANNOUNCE, &f.a,
                                   clock_wall_ms(), f.seq++, p.data, p.len),
                     0);
    assert_int_equal(send_req(&f, NULL, &rep), 1);
    expect_error(&rep, SHOAL_EDOMAIN, NULL);
  }
  buf_free(&p);
  fx_close(&f);
}

static void test_unknown_request_type_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct tmsg_error e;
  static const uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  (void)st;
  fx_open(&f);
  /* Type 9 first, then every type but announce and publish, each signed
   * with a fresh sequence number so only the type is wrong. */
  uint64_t seq = f.seq++;
  seal_raw(&f, &f.a, 9, clock_wall_ms(), seq, junk, sizeof(junk));
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EPROTO, &e);
  assert_int_equal(e.request_type, 9);
  assert_int_equal(e.request_id, seq);
  for (unsigned type = 0; type < 256; type++) {
    if (type == TMSG_ANNOUNCE || type == TMSG_PUBLISH) {
      continue;
    }
    seq = f.seq++;
    seal_raw(&f, &f.a, (uint8_t)type, clock_wall_ms(), seq, junk, sizeof(junk));
    assert_int_equal(send_req(&f, NULL, &rep), 1);
    expect_error(&rep, SHOAL_EPROTO, &e);
    assert_int_equal(e.request_type, type);
    assert_int_equal(e.request_id, seq);
  }
  fx_close(&f);
}

static void test_unknown_query_type_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct tmsg_error e;
  struct tmsg_lookup_ok ok;
  uint8_t payload[67];
  (void)st;
  fx_open(&f);
  memset(payload, 0, sizeof(payload));
  for (unsigned type = 0; type < 256; type++) {
    if (type == TMSG_LOOKUP || type == TMSG_SEARCH) {
      continue;
    }
    buf_reset(&f.req);
    assert_int_equal(
        tmsg_query_encode(&f.req, (uint8_t)type, 9000 + type, payload, 0), 0);
    assert_int_equal(send_req(&f, NULL, &rep), 1);
    expect_error(&rep, SHOAL_EPROTO, &e);
    assert_int_equal(e.request_type, type);
    assert_int_equal(e.request_id, 9000 + type);
  }
  /* In particular an unsigned query can never announce: a well-formed
   * announce payload sent as a query of type ANNOUNCE registers nobody. */
  struct buf p;
  announce_payload(&p, f.c);
  buf_reset(&f.req);
  assert_int_equal(tmsg_query_encode(&f.req, TMSG_ANNOUNCE, 1, p.data, p.len),
                   0);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EPROTO, NULL);
  buf_free(&p);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(ok.count, 0);
  fx_close(&f);
}

static void test_malformed_announce_payload_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct tmsg_error e;
  struct tmsg_lookup_ok ok;
  uint8_t good[6 + 41];
  uint8_t bad[6 + 41 * 66];
  (void)st;
  fx_open(&f);
  /* port 256 (so that clearing its first byte makes it 0), event started,
   * reserved 0, count 1, one seeding item. */
  memset(good, 0, sizeof(good));
  buf_put_be16(good, 256);
  good[2] = TMSG_EVENT_STARTED;
  buf_put_be16(good + 4, 1);
  memcpy(good + 6, f.c, 32);
  good[38] = TMSG_ROLE_SEEDING;

  struct {
    const char *what;
    size_t at; /* byte to overwrite (SIZE_MAX: none) */
    uint8_t val;
    size_t len; /* payload length */
    int code;
  } cases[] = {
      {"empty", SIZE_MAX, 0, 0, SHOAL_ETRUNC},
      {"header only, one item promised", SIZE_MAX, 0, 6, SHOAL_EFORMAT},
      {"port 0", 0, 0, sizeof(good), SHOAL_EFORMAT},
      {"unknown event", 2, 4, sizeof(good), SHOAL_EFORMAT},
      {"unknown flag bit", 3, 2, sizeof(good), SHOAL_EFORMAT},
      {"count 2, one item", 5, 2, sizeof(good), SHOAL_EFORMAT},
      {"count 0, one item", 5, 0, sizeof(good), SHOAL_EFORMAT},
      {"count over the maximum", 5, TMSG_MAX_ANNOUNCE_ITEMS + 1, sizeof(bad),
       SHOAL_ETOOBIG},
      {"unknown role", 38, 2, sizeof(good), SHOAL_EFORMAT},
      {"trailing byte", SIZE_MAX, 0, sizeof(good) + 1, SHOAL_EFORMAT},
      {"cut in the item", SIZE_MAX, 0, sizeof(good) - 1, SHOAL_EFORMAT},
  };
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    memset(bad, 0, sizeof(bad));
    memcpy(bad, good, sizeof(good));
    if (cases[k].at != SIZE_MAX) {
      bad[cases[k].at] = cases[k].val;
    }
    uint64_t seq = f.seq++;
    seal_raw(&f, &f.a, TMSG_ANNOUNCE, clock_wall_ms(), seq, bad, cases[k].len);
    int rc = send_req(&f, NULL, &rep);
    if (rc != 1 || rep.type != TMSG_ERROR) {
      fail_msg("%s: verdict %d, reply type 0x%x", cases[k].what, rc, rep.type);
    }
    assert_int_equal(tmsg_error_decode(rep.payload, rep.len, &e), 0);
    if (e.code != cases[k].code) {
      fail_msg("%s: %s, expected %s", cases[k].what, shoal_err_name(e.code),
               shoal_err_name(cases[k].code));
    }
    assert_int_equal(e.request_type, TMSG_ANNOUNCE);
    assert_int_equal(e.request_id, seq);
  }
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 0);
  /* The good payload through the same path is accepted. */
  seal_raw(&f, &f.a, TMSG_ANNOUNCE, clock_wall_ms(), f.seq++, good,
           sizeof(good));
  assert_int_equal(send_req(&f, NULL, &rep), 0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  fx_close(&f);
}

static void test_malformed_publish_payload_is_refused_and_fatal(void **st) {
  struct fx f;
  struct reply rep;
  struct tmsg_error e;
  uint8_t p[32 + 8 + 2 + 4 + 64];
  (void)st;
  memset(p, 0, sizeof(p));
  fx_open(&f);
  /* Empty, and a name with a path in it. */
  seal_raw(&f, &f.a, TMSG_PUBLISH, clock_wall_ms(), f.seq++, p, 0);
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_ETRUNC, &e);
  assert_int_equal(e.request_type, TMSG_PUBLISH);
  memset(p, 0, sizeof(p));
  buf_put_be16(p + 40, 4);
  memcpy(p + 42, "../x", 4);
  seal_raw(&f, &f.a, TMSG_PUBLISH, clock_wall_ms(), f.seq++, p, sizeof(p));
  assert_int_equal(send_req(&f, NULL, &rep), 1);
  expect_error(&rep, SHOAL_EPATH, NULL);
  assert_int_equal(f.t->cat.n, 0);
  fx_close(&f);
}

/* Every proper prefix of whole (len bytes) gets an error reply and is
 * fatal; when named is set, the reply names request type `type` once the
 * prefix holds the type byte (more than 2 bytes), else 0. */
static void expect_every_prefix_refused(struct fx *f, const uint8_t *whole,
                                        size_t len, int named, uint8_t type) {
  for (size_t n = 0; n < len; n++) {
    struct reply rep;
    assert_int_equal(send_raw(f, NULL, whole, n, &rep), 1);
    struct tmsg_error e = any_error(&rep);
    if (named) {
      assert_int_equal(e.request_type, n > 2 ? type : 0);
    }
  }
}

/* The payload of the query `whole` (len bytes) cut at every length, sent
 * in a query frame of type and id qid whose length field matches the cut,
 * is refused with SHOAL_ETRUNC for that request, and fatal. */
static void expect_cut_payloads_refused(struct fx *f, const uint8_t *whole,
                                        size_t len, uint8_t type,
                                        uint64_t qid) {
  for (size_t n = 0; n < len - TMSG_QUERY_HEADER_BYTES; n++) {
    struct reply rep;
    struct tmsg_error e;
    buf_reset(&f->req);
    assert_int_equal(tmsg_query_encode(&f->req, type, qid,
                                       whole + TMSG_QUERY_HEADER_BYTES, n),
                     0);
    assert_int_equal(send_req(f, NULL, &rep), 1);
    expect_error(&rep, SHOAL_ETRUNC, &e);
    assert_int_equal(e.request_type, type);
    assert_int_equal(e.request_id, qid);
  }
}

static void test_every_truncation_of_a_request_is_refused_and_fatal(void **st) {
  struct fx f;
  uint8_t *whole;
  size_t len;
  struct reply rep;
  struct tmsg_lookup_ok ok;
  (void)st;
  fx_open(&f);

  /* A lookup query cut at every length. */
  tc_query_lookup(&f.req, 31337, f.c, 50, 0, f.outsider.pk);
  whole = copy_req(&f, &len);
  expect_every_prefix_refused(&f, whole, len, 0, 0);
  /* The lookup payload cut at every length inside a consistent header. */
  expect_cut_payloads_refused(&f, whole, len, TMSG_LOOKUP, 31338);
  free(whole);

  /* A search payload cut at every length. */
  tc_query_search(&f.req, 4, "debian", 0, 10);
  whole = copy_req(&f, &len);
  expect_cut_payloads_refused(&f, whole, len, TMSG_SEARCH, 4);
  free(whole);

  /* A signed announce cut at every length. */
  seal_announce(&f, &f.a, clock_wall_ms(), 5000);
  whole = copy_req(&f, &len);
  expect_every_prefix_refused(&f, whole, len, 1, TMSG_ANNOUNCE);
  lookup(&f, f.c, 50, 0, f.outsider.pk, &ok);
  assert_int_equal(ok.count, 0);
  /* The whole one still goes through. */
  assert_int_equal(send_raw(&f, NULL, whole, len, &rep), 0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  free(whole);
  fx_close(&f);
}

static void
test_random_frames_of_every_length_get_exactly_one_reply(void **st) {
  struct fx f;
  uint8_t frame[200];
  struct reply rep;
  (void)st;
  fx_open(&f);
  /* Four shapes: raw noise; noise with the envelope's version and request
   * class; noise shaped as a query with a consistent length field; and the
   * same as a lookup or search query. Each shape from its own address. */
  for (unsigned shape = 0; shape < 5; shape++) {
    struct peer_addr from;
    make_addr(&from, 172, 16, 0, (uint8_t)shape);
    for (size_t len = 0; len <= sizeof(frame); len++) {
      tu_fill(frame, sizeof(frame), 0xf00d0000u + shape * 1000u + len);
      if (shape >= 1 && len >= 2) {
        frame[0] = ENVELOPE_VERSION;
        frame[1] = shape == 1 ? ENVELOPE_TRACKER_REQUEST : TMSG_QUERY_CLASS;
      }
      if (shape >= 2 && len >= TMSG_QUERY_HEADER_BYTES) {
        frame[3] = 0;
        buf_put_be32(frame + 12, (uint32_t)(len - TMSG_QUERY_HEADER_BYTES));
      }
      if (shape == 3 && len >= 3) {
        frame[2] = TMSG_LOOKUP;
      }
      if (shape == 4 && len >= 3) {
        frame[2] = TMSG_SEARCH;
      }
      /* send_raw checks there is exactly one reply and that it opens. */
      int rc = send_raw(&f, &from, frame, len, &rep);
      if (rep.type != TMSG_ERROR) {
        assert_int_equal(rc, 0);
      }
    }
  }
  fx_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Limits */

static void
test_request_over_the_rate_limit_is_refused_but_not_fatal(void **st) {
  struct fx f;
  struct tracker_config cfg = trackercfg_small();
  struct reply rep;
  struct tmsg_error e;
  struct tmsg_lookup_ok ok;
  struct peer_addr other;
  (void)st;
  cfg.rate = 1;
  cfg.burst = 2;
  fx_open_with(&f, &cfg);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  tc_query_lookup(&f.req, 99, f.c, 50, 0, NULL);
  assert_int_equal(send_req(&f, NULL, &rep), 0);
  expect_error(&rep, SHOAL_ERATE, &e);
  assert_true(e.retry_after_ms > 0);
  assert_int_equal(e.retry_after_ms, 1000);
  assert_int_equal(e.request_type, TMSG_LOOKUP);
  /* Any kind of frame counts, even an empty one. */
  assert_int_equal(send_raw(&f, NULL, NULL, 0, &rep), 0);
  expect_error(&rep, SHOAL_ERATE, NULL);
  /* Another address has its own allowance. */
  make_addr(&other, 127, 0, 0, 2);
  tc_query_lookup(&f.req, 100, f.c, 50, 0, NULL);
  assert_int_equal(send_req(&f, &other, &rep), 0);
  assert_int_equal(rep.type, TMSG_LOOKUP_OK);
  assert_int_equal(f.t->stats.requests, 5);
  assert_int_equal(f.t->stats.refused, 2);
  fx_close(&f);
}

static void test_announce_to_a_full_swarm_is_refused_but_not_fatal(void **st) {
  struct fx f;
  struct tracker_config cfg = trackercfg_small();
  struct identity p[3];
  uint8_t c[2][32];
  uint8_t roles[2] = {TMSG_ROLE_SEEDING, TMSG_ROLE_SEEDING};
  struct reply rep;
  struct tmsg_error e;
  struct tmsg_announce_ok aok;
  struct tmsg_lookup_ok ok;
  uint64_t seq = 0;
  (void)st;
  cfg.max_peers = 2;
  fx_open_with(&f, &cfg);
  for (unsigned i = 0; i < 3; i++) {
    peer_id(&p[i], 10 + i);
  }
  content_id(c[0], 1);
  content_id(c[1], 2);
  announce_ok(&f, NULL, &p[0], 1000, c[0], TMSG_ROLE_SEEDING);
  announce_ok(&f, NULL, &p[1], 1001, c[0], TMSG_ROLE_SEEDING);
  assert_int_equal(announce(&f, NULL, &p[2], 1002, TMSG_EVENT_STARTED, c[0],
                            TMSG_ROLE_SEEDING, &rep, &seq),
                   0);
  expect_error(&rep, SHOAL_ETOOBIG, &e);
  assert_int_equal(e.request_type, TMSG_ANNOUNCE);
  assert_int_equal(e.request_id, seq);
  lookup(&f, c[0], 50, 0, NULL, &ok);
  assert_int_equal(ok.count, 2);
  assert_null(find_peer(&ok, p[2].pk));
  /* Members of a full swarm still renew. */
  announce_ok(&f, NULL, &p[0], 1000, c[0], TMSG_ROLE_SEEDING);
  /* An announce of a full and a free swarm registers the free one. */
  seq = f.seq++;
  tc_seal_announce(&f.req, &p[2], clock_wall_ms(), seq, 1002,
                   TMSG_EVENT_STARTED, (const uint8_t(*)[32])c, roles, 2);
  assert_int_equal(send_req(&f, NULL, &rep), 0);
  assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
  assert_int_equal(tmsg_announce_ok_decode(rep.payload, rep.len, &aok), 0);
  assert_int_equal(aok.seq, seq);
  assert_int_equal(aok.accepted, 1);
  lookup(&f, c[1], 50, 0, NULL, &ok);
  assert_int_equal(ok.count, 1);
  assert_memory_equal(ok.peers[0].pk, p[2].pk, 32);
  for (unsigned i = 0; i < 3; i++) {
    identity_close(&p[i]);
  }
  fx_close(&f);
}

static void test_tick_keeps_a_fresh_registration(void **st) {
  struct fx f;
  struct tracker_config cfg = trackercfg_small();
  struct tmsg_publish p;
  struct reply rep;
  struct tmsg_lookup_ok ok;
  (void)st;
  /* With a two-second interval a registration lives three seconds
   * (interval + 10% jitter rounded down + half an interval); the loop's
   * clock has not moved since the announce, so the sweep must keep it. A
   * sweep that confused seconds with milliseconds would not. */
  cfg.interval_s = 2;
  cfg.catalog_ttl_s = 2;
  fx_open_with(&f, &cfg);
  make_publish(&p, f.c, "fresh");
  assert_int_equal(publish(&f, &f.a, &p, &rep, NULL), 0);
  assert_int_equal(rep.type, TMSG_PUBLISH_OK);
  announce_ok(&f, NULL, &f.a, 6881, f.c, TMSG_ROLE_SEEDING);
  for (unsigned k = 0; k < 3; k++) {
    handlers_tick(f.t);
  }
  assert_int_equal(f.t->stats.expired_peers, 0);
  assert_int_equal(f.t->stats.expired_catalog, 0);
  lookup(&f, f.c, 50, 0, NULL, &ok);
  assert_int_equal(ok.count, 1);
  assert_memory_equal(ok.peers[0].pk, f.a.pk, 32);
  assert_non_null(catalog_find(&f.t->cat, f.c));
  fx_close(&f);
}

static void test_tracker_init_refuses_an_invalid_rate_limit(void **st) {
  uv_loop_t loop;
  struct identity key;
  struct tracker_config cfg = trackercfg_small();
  struct tracker *t = calloc(1, sizeof(*t));
  (void)st;
  assert_non_null(t);
  assert_int_equal(uv_loop_init(&loop), 0);
  tu_identity(&key, 1);
  cfg.rate = 0;
  /* Everything set up before the failure is released (ASan checks). */
  assert_int_equal(tracker_init(t, &loop, &cfg, &key), SHOAL_EINVAL);
  cfg = trackercfg_small();
  cfg.burst = 0;
  assert_int_equal(tracker_init(t, &loop, &cfg, &key), SHOAL_EINVAL);
  /* A failed init leaves nothing to close, and closing again is harmless. */
  tracker_close(t);
  free(t);
  identity_close(&key);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* An announce with TMSG_ANNOUNCE_WANT_CERT gets the address certificate of
 * the address the tracker saw and the announced port, signed by the
 * tracker's key under its own domain; one without the flag, and a stopped
 * one, get none. */
static void test_announce_asking_for_a_certificate_gets_one(void **state) {
  struct fx f;
  struct peer_addr from;
  struct tmsg_announce a;
  struct tmsg_announce_ok ok;
  struct tmsg_cert c;
  struct buf p;
  struct reply rep;
  (void)state;
  fx_open(&f);
  make_addr(&from, 10, 1, 2, 3);
  buf_init(&p, 4096);
  for (int round = 0; round < 3; round++) {
    memset(&a, 0, sizeof(a));
    a.port = 7444;
    a.event = round == 2 ? TMSG_EVENT_STOPPED : TMSG_EVENT_STARTED;
    a.flags = round == 1 ? 0 : TMSG_ANNOUNCE_WANT_CERT;
    a.count = 1;
    memcpy(a.items[0].content, f.c, 32);
    buf_reset(&p);
    assert_int_equal(tmsg_announce_encode(&p, &a), 0);
    seal_raw(&f, &f.a, TMSG_ANNOUNCE, clock_wall_ms(), f.seq++, p.data, p.len);
    assert_int_equal(send_req(&f, &from, &rep), 0);
    assert_int_equal(rep.type, TMSG_ANNOUNCE_OK);
    assert_int_equal(tmsg_announce_ok_decode(rep.payload, rep.len, &ok), 0);
    assert_int_equal(ok.has_cert, round == 0);
  }
  /* The first reply's certificate, checked as a peer checks it. */
  memset(&a, 0, sizeof(a));
  a.port = 7444;
  a.event = TMSG_EVENT_PERIODIC;
  a.flags = TMSG_ANNOUNCE_WANT_CERT;
  a.count = 1;
  memcpy(a.items[0].content, f.c, 32);
  buf_reset(&p);
  assert_int_equal(tmsg_announce_encode(&p, &a), 0);
  seal_raw(&f, &f.a, TMSG_ANNOUNCE, clock_wall_ms(), f.seq++, p.data, p.len);
  assert_int_equal(send_req(&f, &from, &rep), 0);
  assert_int_equal(tmsg_announce_ok_decode(rep.payload, rep.len, &ok), 0);
  assert_true(ok.has_cert);
  struct tmsg_cert_policy pol = {.keys = f.key.pk,
                                 .nkeys = 1,
                                 .now_ms = clock_wall_ms(),
                                 .window_ms = WINDOW_MS};
  assert_int_equal(tmsg_cert_open(ok.cert, sizeof(ok.cert), &pol, &c), 0);
  assert_memory_equal(c.peer, f.a.pk, 32);
  assert_memory_equal(c.tracker, f.key.pk, 32);
  assert_int_equal(c.family, 4);
  assert_memory_equal(c.addr, from.addr, 16);
  assert_int_equal(c.port, 7444);
  uint64_t life = 2u * (uint64_t)f.t->reg.interval_s;
  assert_int_equal(c.lifetime_s, life < TMSG_CERT_LIFETIME_MIN_S
                                     ? TMSG_CERT_LIFETIME_MIN_S
                                     : life);
  /* Under another key it is not the tracker's word. */
  pol.keys = f.a.pk;
  assert_int_equal(tmsg_cert_open(ok.cert, sizeof(ok.cert), &pol, &c),
                   SHOAL_EWRONGKEY);
  buf_free(&p);
  fx_close(&f);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  /* Format every log line (the handlers' log calls are code under test
   * too) but keep them out of the test report. */
  log_set_level(LOG_DEBUG);
  if (log_open("/dev/null") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_announce_is_acknowledged_with_seq_interval_and_count),
      cmocka_unit_test(test_announce_registers_the_observed_address_and_port),
      cmocka_unit_test(test_announce_asking_for_a_certificate_gets_one),
      cmocka_unit_test(test_lookup_by_any_asker_lists_the_announced_peers),
      cmocka_unit_test(test_repeated_lookup_is_served_from_cache_byte_for_byte),
      cmocka_unit_test(test_announce_of_a_new_peer_is_seen_by_the_next_lookup),
      cmocka_unit_test(
          test_announce_that_changes_nothing_keeps_the_cached_lookup),
      cmocka_unit_test(
          test_stopped_announce_removes_the_peer_from_the_next_lookup),
      cmocka_unit_test(
          test_lookup_by_a_swarm_member_omits_it_and_is_not_cached),
      cmocka_unit_test(test_publish_is_acknowledged),
      cmocka_unit_test(
          test_publish_of_anothers_content_is_refused_but_not_fatal),
      cmocka_unit_test(test_search_finds_a_published_content_with_its_counts),
      cmocka_unit_test(
          test_search_with_an_empty_query_is_refused_but_not_fatal),
      cmocka_unit_test(
          test_flipped_bit_anywhere_in_an_announce_is_refused_and_fatal),
      cmocka_unit_test(test_forged_signature_is_refused_and_fatal),
      cmocka_unit_test(test_replayed_announce_is_refused_and_fatal),
      cmocka_unit_test(
          test_announce_outside_the_clock_window_is_refused_and_fatal),
      cmocka_unit_test(test_request_of_another_class_is_refused_and_fatal),
      cmocka_unit_test(test_unknown_request_type_is_refused_and_fatal),
      cmocka_unit_test(test_unknown_query_type_is_refused_and_fatal),
      cmocka_unit_test(test_malformed_announce_payload_is_refused_and_fatal),
      cmocka_unit_test(test_malformed_publish_payload_is_refused_and_fatal),
      cmocka_unit_test(test_every_truncation_of_a_request_is_refused_and_fatal),
      cmocka_unit_test(
          test_random_frames_of_every_length_get_exactly_one_reply),
      cmocka_unit_test(
          test_request_over_the_rate_limit_is_refused_but_not_fatal),
      cmocka_unit_test(test_announce_to_a_full_swarm_is_refused_but_not_fatal),
      cmocka_unit_test(test_tick_keeps_a_fresh_registration),
      cmocka_unit_test(test_tracker_init_refuses_an_invalid_rate_limit),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  return rc;
}
