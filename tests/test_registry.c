/* Unit tests for tracker/registry.c over the in-memory store
 * (tracker/store_mem.c): membership, sampling, roles and counts, the
 * "changed" flags an announce reports, soft-state expiry with bounded work,
 * the per-swarm and per-announce limits, and a randomized run checked against
 * a plain reference model.
 *
 * Every test drives the registry with explicit times (whole seconds); nothing
 * reads the real clock. The store is reached only through registry_* and the
 * store's own ops (stats for the swarm, registration and byte counts; put
 * directly for the memory test, where a hundred thousand announces would
 * only add time).
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

#include "common/error.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/addr.h"
#include "tests/lib/testutil.h"
#include "tracker/registry.h"
#include "tracker/store.h"

#define INTERVAL 100u
/* How long one announce keeps a registration: the longest interval a peer
 * may have been told (+10%) plus the grace period (half an interval). */
#define LIFE (INTERVAL + INTERVAL / 10 + INTERVAL / 2)

/* ---------------------------------------------------------------------- */
/* Helpers */

/* A deterministic Ed25519 public key for each small integer. */
static void peer_pk(uint8_t pk[32], uint64_t n) {
  tu_pk(pk, 0x5000 + n);
}

/* A cheap distinct key (random-looking bytes) for the large tests, where
 * deriving a hundred thousand Ed25519 keys would dominate the run time. */
static void fast_pk(uint8_t pk[32], uint64_t n) {
  tu_fill(pk, 32, 0x7000000 + n);
}

static void content_id(uint8_t id[32], uint64_t n) {
  tu_fill(id, 32, 0x900000 + n);
}

/* ---------------------------------------------------------------------- */
/* The registry's calls, waited for: the memory store answers before each
 * call returns, so a result is there at once. */

struct sync_result {
  int called;
  int result;
  unsigned ok;
  int first_err;
  int asker_in;
  uint8_t changed[TMSG_MAX_ANNOUNCE_ITEMS];
};

static void on_result(void *arg, int result) {
  struct sync_result *r = arg;
  r->called++;
  r->result = result;
}

static void on_announced(void *arg, unsigned ok, int first_err,
                         const uint8_t *changed) {
  struct sync_result *r = arg;
  r->called++;
  r->ok = ok;
  r->first_err = first_err;
  memcpy(r->changed, changed, sizeof(r->changed));
}

static void on_looked_up(void *arg, int err, int asker_in) {
  struct sync_result *r = arg;
  r->called++;
  r->result = err;
  r->asker_in = asker_in;
}

static unsigned sync_announce(struct registry *r, const uint8_t pk[32],
                              uint8_t family, const uint8_t addr[16],
                              const struct tmsg_announce *a, uint32_t now_s,
                              int *first_err, uint8_t *changed) {
  struct registry_announce_op *op = malloc(sizeof(*op));
  struct sync_result res;
  assert_non_null(op);
  memset(&res, 0, sizeof(res));
  registry_announce(r, op, pk, family, addr, a, now_s, on_announced, &res);
  assert_int_equal(res.called, 1);
  free(op);
  *first_err = res.first_err;
  if (changed != NULL) {
    memcpy(changed, res.changed, a->count);
  }
  return res.ok;
}

static void sync_lookup(struct registry *r, const struct tmsg_lookup *q,
                        struct tmsg_lookup_ok *reply, int *asker_in_swarm) {
  struct registry_lookup_op *op = malloc(sizeof(*op));
  struct sync_result res;
  assert_non_null(op);
  memset(&res, 0, sizeof(res));
  registry_lookup(r, op, q, reply, on_looked_up, &res);
  assert_int_equal(res.called, 1);
  assert_int_equal(res.result, 0);
  free(op);
  if (asker_in_swarm != NULL) {
    *asker_in_swarm = res.asker_in;
  }
}

static unsigned sync_expire(struct registry *r, uint32_t now_s,
                            unsigned max_work) {
  struct sync_result res;
  memset(&res, 0, sizeof(res));
  registry_expire(r, now_s, max_work, on_result, &res);
  assert_int_equal(res.called, 1);
  assert_true(res.result >= 0);
  return (unsigned)res.result;
}

static int sync_put(struct store *s, const uint8_t id[32],
                    const struct store_peer *p, uint32_t expires,
                    uint32_t max_peers) {
  struct sync_result res;
  memset(&res, 0, sizeof(res));
  s->ops->put(s, id, p, 0, expires, 0, max_peers, on_result, &res);
  assert_int_equal(res.called, 1);
  return res.result;
}

struct fixture {
  struct store *store;
  struct registry reg;
};

static void fixture_open(struct fixture *f, uint32_t max_peers,
                         uint32_t max_items) {
  f->store = store_mem_new(NULL, NULL);
  assert_non_null(f->store);
  registry_init(&f->reg, f->store, INTERVAL, max_peers, max_items);
}

/* The usual fixture (1000 peers a swarm, 64 contents an announce), and
 * in c the content of number n that the test is about. */
static void fixture_open_for(struct fixture *f, uint8_t c[32], uint64_t n) {
  fixture_open(f, 1000, 64);
  content_id(c, n);
}

static void fixture_close(struct fixture *f) {
  f->store->ops->free(f->store);
  f->store = NULL;
}

static struct store_stats stats_of(struct fixture *f) {
  struct store_stats st;
  f->store->ops->stats(f->store, &st);
  return st;
}

/* An announce (event started) from port of count contents, numbers
 * first, first + 1, ..., each as a downloader. */
static void make_announce(struct tmsg_announce *a, uint16_t port,
                          uint16_t count, uint64_t first) {
  memset(a, 0, sizeof(*a));
  a->port = port;
  a->event = TMSG_EVENT_STARTED;
  a->count = count;
  for (unsigned i = 0; i < count; i++) {
    content_id(a->items[i].content, first + i);
  }
}

/* One announce of a single content. Returns the accepted count and stores
 * the first error in *err (when err is not NULL, else asserts none). */
static unsigned announce_one(struct fixture *f, const uint8_t pk[32],
                             const uint8_t content[32], uint8_t role,
                             uint8_t event, uint32_t now, int *err) {
  struct tmsg_announce a;
  uint8_t addr[16];
  int e = 0;
  memset(&a, 0, sizeof(a));
  a.port = 7000;
  a.event = event;
  a.count = 1;
  memcpy(a.items[0].content, content, 32);
  a.items[0].role = role;
  /* The address a test peer is observed at: 10.x.y.z derived from its key. */
  addr_nth_v4(addr, pk[0] | (unsigned)pk[1] << 8);
  unsigned ok = sync_announce(&f->reg, pk, 4, addr, &a, now, &e, NULL);
  if (err != NULL) {
    *err = e;
  } else {
    assert_int_equal(e, 0);
    assert_int_equal(ok, 1);
  }
  return ok;
}

/* Looks up content as asker (NULL: anonymous). Returns whether the asker
 * was in the swarm and so left out of the reply. */
static int lookup(struct fixture *f, const uint8_t content[32],
                  const uint8_t *asker, unsigned want, uint8_t flags,
                  struct tmsg_lookup_ok *reply) {
  struct tmsg_lookup q;
  int asker_in = -1;
  memset(&q, 0, sizeof(q));
  memcpy(q.content, content, 32);
  q.want = (uint16_t)want;
  q.flags = flags;
  if (asker != NULL) {
    memcpy(q.asker, asker, 32);
  }
  sync_lookup(&f->reg, &q, reply, &asker_in);
  assert_memory_equal(reply->content, content, 32);
  assert_true(reply->count <= TMSG_MAX_PEERS);
  assert_true(asker_in == 0 || asker_in == 1);
  if (asker == NULL) {
    assert_int_equal(asker_in, 0);
  }
  return asker_in;
}

/* Index of pk in keys[0..n), or -1. */
static int key_index(const uint8_t (*keys)[32], size_t n, const uint8_t *pk) {
  for (size_t i = 0; i < n; i++) {
    if (memcmp(keys[i], pk, 32) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* Asserts that the reply holds no key twice. */
static void assert_no_duplicates(const struct tmsg_lookup_ok *r) {
  for (unsigned i = 0; i < r->count; i++) {
    for (unsigned j = i + 1; j < r->count; j++) {
      assert_memory_not_equal(r->peers[i].pk, r->peers[j].pk, 32);
    }
  }
}

/* Asserts that the reply is exactly the set keys[0..n) (any order). */
static void assert_reply_is_set(const struct tmsg_lookup_ok *r,
                                const uint8_t (*keys)[32], size_t n) {
  assert_int_equal(r->count, n);
  assert_no_duplicates(r);
  for (unsigned i = 0; i < r->count; i++) {
    assert_true(key_index(keys, n, r->peers[i].pk) >= 0);
  }
}

static int reply_has(const struct tmsg_lookup_ok *r, const uint8_t pk[32]) {
  for (unsigned i = 0; i < r->count; i++) {
    if (memcmp(r->peers[i].pk, pk, 32) == 0) {
      return 1;
    }
  }
  return 0;
}

/* A small deterministic generator for the randomized tests, so that a
 * failure reproduces (the store's own sampling still uses libsodium). */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
  return tu_below(&rng_state, n);
}

/* ---------------------------------------------------------------------- */
/* Membership and sampling */

static void
test_lookup_returns_exactly_the_live_set_when_want_covers_it(void **state) {
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[150][32];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 1);
  for (unsigned i = 0; i < 150; i++) {
    peer_pk(keys[i], i);
    announce_one(&f, keys[i], c,
                 i % 3 == 0 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_STARTED, 1000, NULL);
  }
  lookup(&f, c, NULL, 200, 0, &r);
  assert_reply_is_set(&r, (const uint8_t(*)[32])keys, 150);
  assert_int_equal(r.seeders, 50);
  assert_int_equal(r.downloaders, 100);
  for (unsigned i = 0; i < r.count; i++) {
    int k = key_index((const uint8_t(*)[32])keys, 150, r.peers[i].pk);
    assert_int_equal(r.peers[i].seeding, k % 3 == 0);
  }
  /* want == size exactly also gives the whole set. */
  lookup(&f, c, NULL, 150, TMSG_LOOKUP_SEEDERS_FIRST, &r);
  assert_reply_is_set(&r, (const uint8_t(*)[32])keys, 150);
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, 1);
  assert_int_equal(st.peers, 150);
  fixture_close(&f);
}

static void test_swarms_hold_their_own_peers_only(void **state) {
  enum { SWARMS = 7, PER = 40 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[SWARMS][PER][32];
  uint8_t c[32];
  (void)state;
  fixture_open(&f, 1000, 64);
  /* Swarm s holds peers s*10 .. s*10+39, so neighbouring swarms share 30
   * keys: one peer in several swarms must be registered in each. */
  for (unsigned s = 0; s < SWARMS; s++) {
    content_id(c, s);
    for (unsigned i = 0; i < PER; i++) {
      peer_pk(keys[s][i], s * 10 + i);
      announce_one(&f, keys[s][i], c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED,
                   1000, NULL);
    }
  }
  for (unsigned s = 0; s < SWARMS; s++) {
    content_id(c, s);
    lookup(&f, c, NULL, TMSG_MAX_PEERS, 0, &r);
    assert_reply_is_set(&r, (const uint8_t(*)[32])keys[s], PER);
    assert_int_equal(r.downloaders, PER);
    assert_int_equal(r.seeders, 0);
  }
  content_id(c, SWARMS + 1);
  lookup(&f, c, NULL, TMSG_MAX_PEERS, 0, &r);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.seeders + r.downloaders + r.completed, 0);
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, SWARMS);
  assert_int_equal(st.peers, SWARMS * PER);
  fixture_close(&f);
}

static void test_one_announce_registers_every_listed_content(void **state) {
  struct fixture f;
  struct tmsg_announce a;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t addr[16];
  int err = -1;
  (void)state;
  fixture_open(&f, 1000, 64);
  peer_pk(pk, 1);
  addr_nth_v4(addr, 1);
  make_announce(&a, 1, TMSG_MAX_ANNOUNCE_ITEMS, 0);
  for (unsigned i = 0; i < a.count; i++) {
    a.items[i].role = (uint8_t)(i & 1);
  }
  assert_int_equal(sync_announce(&f.reg, pk, 4, addr, &a, 10, &err, NULL),
                   TMSG_MAX_ANNOUNCE_ITEMS);
  assert_int_equal(err, 0);
  for (unsigned i = 0; i < a.count; i++) {
    lookup(&f, a.items[i].content, NULL, 10, 0, &r);
    assert_int_equal(r.count, 1);
    assert_memory_equal(r.peers[0].pk, pk, 32);
    assert_int_equal(r.peers[0].seeding, i & 1);
  }
  assert_int_equal(stats_of(&f).swarms, TMSG_MAX_ANNOUNCE_ITEMS);
  fixture_close(&f);
}

static void
test_lookup_reports_observed_address_and_announced_port(void **state) {
  struct fixture f;
  struct tmsg_announce a;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t c[32];
  uint8_t v4[16] = {192, 0, 2, 7};
  uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 1, 2,  3,  4,
                    5,    6,    7,    8,    9, 10, 11, 12};
  int err;
  (void)state;
  fixture_open(&f, 1000, 64);
  peer_pk(pk, 3);
  content_id(c, 3);
  make_announce(&a, 51413, 1, 3);
  assert_int_equal(sync_announce(&f.reg, pk, 4, v4, &a, 1, &err, NULL), 1);
  lookup(&f, c, NULL, 5, 0, &r);
  assert_int_equal(r.count, 1);
  assert_int_equal(r.peers[0].family, 4);
  assert_memory_equal(r.peers[0].addr, v4, 16);
  assert_int_equal(r.peers[0].port, 51413);
  /* Others in the same role join after it, so it is not the newest. */
  for (unsigned i = 0; i < 5; i++) {
    uint8_t other[32];
    peer_pk(other, 40 + i);
    announce_one(&f, other, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1,
                 NULL);
  }
  /* A renewal from another address replaces the old one: the registry
   * records where the peer is now, not where it first came from. */
  a.port = 6881;
  a.event = TMSG_EVENT_PERIODIC;
  assert_int_equal(sync_announce(&f.reg, pk, 6, v6, &a, 2, &err, NULL), 1);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 6);
  unsigned found = 0;
  for (unsigned i = 0; i < r.count; i++) {
    if (memcmp(r.peers[i].pk, pk, 32) == 0) {
      assert_int_equal(r.peers[i].family, 6);
      assert_memory_equal(r.peers[i].addr, v6, 16);
      assert_int_equal(r.peers[i].port, 6881);
      found++;
    } else {
      assert_int_equal(r.peers[i].family, 4);
      assert_int_equal(r.peers[i].port, 7000);
    }
  }
  assert_int_equal(found, 1);
  assert_int_equal(stats_of(&f).peers, 6);
  fixture_close(&f);
}

static void test_lookup_never_returns_the_asker(void **state) {
  enum { N = 24 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[N][32];
  uint8_t outsider[32];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 5);
  for (unsigned i = 0; i < N; i++) {
    peer_pk(keys[i], 100 + i);
    announce_one(&f, keys[i], c,
                 i < 6 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_STARTED, 1, NULL);
  }
  peer_pk(outsider, 99);
  rng_state = 11;
  for (unsigned t = 0; t < 5000; t++) {
    unsigned who = rnd(N);
    unsigned want = rnd(N + 4);
    uint8_t flags = (uint8_t)rnd(2);
    assert_int_equal(lookup(&f, c, keys[who], want, flags, &r), 1);
    assert_false(reply_has(&r, keys[who]));
    assert_no_duplicates(&r);
    assert_int_equal(r.count, want < N - 1 ? want : N - 1);
    for (unsigned i = 0; i < r.count; i++) {
      assert_true(key_index((const uint8_t(*)[32])keys, N, r.peers[i].pk) >= 0);
    }
    /* Counts describe the swarm, asker included. */
    assert_int_equal(r.seeders, 6);
    assert_int_equal(r.downloaders, N - 6);
  }
  /* An asker that is not in the swarm excludes nobody, and says so. */
  assert_int_equal(lookup(&f, c, outsider, N, 0, &r), 0);
  assert_reply_is_set(&r, (const uint8_t(*)[32])keys, N);
  /* The caller need not ask whether the asker was left out. */
  struct tmsg_lookup q;
  memset(&q, 0, sizeof(q));
  memcpy(q.content, c, 32);
  memcpy(q.asker, keys[0], 32);
  q.want = N;
  sync_lookup(&f.reg, &q, &r, NULL);
  assert_int_equal(r.count, N - 1);
  assert_false(reply_has(&r, keys[0]));
  fixture_close(&f);
}

static void test_sample_has_no_duplicates_and_reaches_every_peer(void **state) {
  enum { N = 300 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[N][32];
  static unsigned seen[N];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 6);
  memset(seen, 0, sizeof(seen));
  for (unsigned i = 0; i < N; i++) {
    fast_pk(keys[i], i);
    announce_one(&f, keys[i], c,
                 i % 4 == 0 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_STARTED, 1, NULL);
  }
  rng_state = 12;
  for (unsigned t = 0; t < 400; t++) {
    unsigned want = 1 + rnd(TMSG_MAX_PEERS);
    lookup(&f, c, keys[rnd(N)], want, (uint8_t)rnd(2), &r);
    assert_int_equal(r.count, want);
    assert_no_duplicates(&r);
    for (unsigned i = 0; i < r.count; i++) {
      int k = key_index((const uint8_t(*)[32])keys, N, r.peers[i].pk);
      assert_true(k >= 0);
      seen[k]++;
    }
  }
  /* A sample is random: over 400 lookups of ~100 of 300 peers, a peer that
   * never shows up means part of the swarm is unreachable. */
  for (unsigned i = 0; i < N; i++) {
    assert_true(seen[i] > 0);
  }
  fixture_close(&f);
}

static void test_want_is_clamped_to_max_peers(void **state) {
  enum { N = TMSG_MAX_PEERS + 57 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 7);
  for (unsigned i = 0; i < N; i++) {
    fast_pk(pk, i);
    announce_one(&f, pk, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1, NULL);
  }
  lookup(&f, c, NULL, TMSG_MAX_PEERS + 1, 0, &r);
  assert_int_equal(r.count, TMSG_MAX_PEERS);
  assert_no_duplicates(&r);
  lookup(&f, c, NULL, UINT16_MAX, TMSG_LOOKUP_SEEDERS_FIRST, &r);
  assert_int_equal(r.count, TMSG_MAX_PEERS);
  assert_no_duplicates(&r);
  assert_int_equal(r.downloaders, N);
  /* want 0 is a count-only lookup. */
  lookup(&f, c, NULL, 0, 0, &r);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.downloaders, N);
  fixture_close(&f);
}

static void test_seeders_come_first_when_asked(void **state) {
  enum { SEEDERS = 12, N = 50 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[N][32];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 8);
  /* Interleave roles so that insertion order alone does not sort them. */
  for (unsigned i = 0; i < N; i++) {
    peer_pk(keys[i], 200 + i);
    announce_one(&f, keys[i], c,
                 i % 4 == 1 && i / 4 < SEEDERS ? TMSG_ROLE_SEEDING
                                               : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_STARTED, 1, NULL);
  }
  rng_state = 13;
  for (unsigned t = 0; t < 3000; t++) {
    unsigned want = rnd(N + 5);
    int ask = rnd(3) == 0;
    unsigned asker = rnd(N);
    int asker_seeds = asker % 4 == 1 && asker / 4 < SEEDERS;
    unsigned seeders_avail = SEEDERS - (ask && asker_seeds);
    unsigned total = N - ask;
    lookup(&f, c, ask ? keys[asker] : NULL, want, TMSG_LOOKUP_SEEDERS_FIRST,
           &r);
    assert_int_equal(r.count, want < total ? want : total);
    assert_int_equal(r.seeders, SEEDERS);
    assert_int_equal(r.downloaders, N - SEEDERS);
    /* Every seeder precedes every downloader... */
    unsigned s = 0;
    while (s < r.count && r.peers[s].seeding) {
      s++;
    }
    for (unsigned i = s; i < r.count; i++) {
      assert_int_equal(r.peers[i].seeding, 0);
    }
    /* ...and downloaders only appear once the seeders run out. */
    assert_int_equal(s, r.count < seeders_avail ? r.count : seeders_avail);
    for (unsigned i = 0; i < r.count; i++) {
      int k = key_index((const uint8_t(*)[32])keys, N, r.peers[i].pk);
      assert_true(k >= 0);
      assert_int_equal(r.peers[i].seeding, k % 4 == 1 && k / 4 < SEEDERS);
    }
  }
  fixture_close(&f);
}

static void test_without_the_flag_downloaders_are_sampled_too(void **state) {
  enum { SEEDERS = 20, N = 40 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t c[32];
  unsigned downloaders_seen = 0;
  (void)state;
  fixture_open_for(&f, c, 9);
  for (unsigned i = 0; i < N; i++) {
    fast_pk(pk, 300 + i);
    announce_one(&f, pk, c,
                 i < SEEDERS ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_STARTED, 1, NULL);
  }
  /* With 20 seeders and want 5, a seeders-first sample would never hold a
   * downloader; a plain one holds about 2.5 on average. */
  for (unsigned t = 0; t < 100; t++) {
    lookup(&f, c, NULL, 5, 0, &r);
    assert_int_equal(r.count, 5);
    for (unsigned i = 0; i < r.count; i++) {
      downloaders_seen += !r.peers[i].seeding;
    }
  }
  assert_true(downloaders_seen > 100);
  assert_true(downloaders_seen < 400);
  fixture_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Roles, counts and events */

static void test_completed_counts_only_seeding_completed_events(void **state) {
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint8_t pk[5][32];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 10);
  for (unsigned i = 0; i < 5; i++) {
    peer_pk(pk[i], 400 + i);
    announce_one(&f, pk[i], c,
                 i < 2 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_STARTED, 1, NULL);
  }
  lookup(&f, c, NULL, 0, 0, &r);
  assert_int_equal(r.seeders, 2);
  assert_int_equal(r.downloaders, 3);
  assert_int_equal(r.completed, 0);

  /* A downloader finishes: it becomes a seeder and the swarm counts one
   * completed download. */
  announce_one(&f, pk[2], c, TMSG_ROLE_SEEDING, TMSG_EVENT_COMPLETED, 2, NULL);
  lookup(&f, c, NULL, 0, 0, &r);
  assert_int_equal(r.seeders, 3);
  assert_int_equal(r.downloaders, 2);
  assert_int_equal(r.completed, 1);

  /* A "completed" event for an item still downloading counts nothing. */
  announce_one(&f, pk[3], c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_COMPLETED, 3,
               NULL);
  /* Periodic and started announces of seeders count nothing either. */
  announce_one(&f, pk[0], c, TMSG_ROLE_SEEDING, TMSG_EVENT_PERIODIC, 3, NULL);
  announce_one(&f, pk[1], c, TMSG_ROLE_SEEDING, TMSG_EVENT_STARTED, 3, NULL);
  lookup(&f, c, NULL, 0, 0, &r);
  assert_int_equal(r.seeders, 3);
  assert_int_equal(r.downloaders, 2);
  assert_int_equal(r.completed, 1);

  /* A seeder repeating the completed event counts nothing: one peer
   * cannot inflate the count. */
  for (int k = 0; k < 3; k++) {
    announce_one(&f, pk[2], c, TMSG_ROLE_SEEDING, TMSG_EVENT_COMPLETED, 3,
                 NULL);
  }
  lookup(&f, c, NULL, 0, 0, &r);
  assert_int_equal(r.completed, 1);

  /* A completed download survives its peer leaving. */
  announce_one(&f, pk[2], c, TMSG_ROLE_SEEDING, TMSG_EVENT_STOPPED, 4, NULL);
  lookup(&f, c, NULL, 0, 0, &r);
  assert_int_equal(r.seeders, 2);
  assert_int_equal(r.completed, 1);
  fixture_close(&f);
}

static void test_role_change_moves_a_peer_between_counts(void **state) {
  enum { N = 30 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[N][32];
  int seeding[N];
  uint8_t c[32];
  (void)state;
  fixture_open_for(&f, c, 11);
  for (unsigned i = 0; i < N; i++) {
    peer_pk(keys[i], 500 + i);
    seeding[i] = 0;
    announce_one(&f, keys[i], c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1,
                 NULL);
  }
  /* One peer: downloader -> seeder -> downloader. */
  announce_one(&f, keys[0], c, TMSG_ROLE_SEEDING, TMSG_EVENT_PERIODIC, 2, NULL);
  lookup(&f, c, NULL, 1, TMSG_LOOKUP_SEEDERS_FIRST, &r);
  assert_int_equal(r.seeders, 1);
  assert_int_equal(r.downloaders, N - 1);
  assert_memory_equal(r.peers[0].pk, keys[0], 32);
  assert_int_equal(r.peers[0].seeding, 1);
  announce_one(&f, keys[0], c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_PERIODIC, 3,
               NULL);
  lookup(&f, c, NULL, N, 0, &r);
  assert_int_equal(r.seeders, 0);
  assert_int_equal(r.downloaders, N);
  for (unsigned i = 0; i < r.count; i++) {
    assert_int_equal(r.peers[i].seeding, 0);
  }

  /* Many random flips keep the counts, the flags and the seeder block in
   * step with what each peer last said. */
  rng_state = 14;
  for (unsigned t = 0; t < 2000; t++) {
    unsigned k = rnd(N);
    seeding[k] = (int)rnd(2);
    announce_one(&f, keys[k], c,
                 seeding[k] ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                 TMSG_EVENT_PERIODIC, 4, NULL);
    if (t % 50 != 0) {
      continue;
    }
    unsigned s = 0;
    for (unsigned i = 0; i < N; i++) {
      s += (unsigned)seeding[i];
    }
    lookup(&f, c, NULL, N, TMSG_LOOKUP_SEEDERS_FIRST, &r);
    assert_reply_is_set(&r, (const uint8_t(*)[32])keys, N);
    assert_int_equal(r.seeders, s);
    assert_int_equal(r.downloaders, N - s);
    for (unsigned i = 0; i < r.count; i++) {
      int idx = key_index((const uint8_t(*)[32])keys, N, r.peers[i].pk);
      assert_int_equal(r.peers[i].seeding, seeding[idx]);
      assert_int_equal(r.peers[i].seeding, i < s);
    }
  }
  fixture_close(&f);
}

static void test_stopped_event_removes_the_listed_swarms_only(void **state) {
  struct fixture f;
  struct tmsg_announce a;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t other[32];
  uint8_t addr[16] = {10, 0, 0, 1};
  int err;
  (void)state;
  fixture_open(&f, 1000, 64);
  peer_pk(pk, 600);
  peer_pk(other, 601);
  make_announce(&a, 9, 3, 20);
  assert_int_equal(sync_announce(&f.reg, pk, 4, addr, &a, 1, &err, NULL), 3);
  announce_one(&f, other, a.items[0].content, TMSG_ROLE_SEEDING,
               TMSG_EVENT_STARTED, 1, NULL);
  assert_int_equal(stats_of(&f).peers, 4);

  a.event = TMSG_EVENT_STOPPED;
  a.count = 2;
  assert_int_equal(sync_announce(&f.reg, pk, 4, addr, &a, 2, &err, NULL), 2);
  assert_int_equal(err, 0);
  lookup(&f, a.items[0].content, NULL, 10, 0, &r);
  assert_int_equal(r.count, 1);
  assert_memory_equal(r.peers[0].pk, other, 32);
  /* The swarm the peer alone was in is gone... */
  lookup(&f, a.items[1].content, NULL, 10, 0, &r);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.downloaders, 0);
  /* ...and the one it did not list still holds it. */
  lookup(&f, a.items[2].content, NULL, 10, 0, &r);
  assert_int_equal(r.count, 1);
  assert_memory_equal(r.peers[0].pk, pk, 32);
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, 2);
  assert_int_equal(st.peers, 2);

  /* Stopping what one is not in (or a swarm nobody is in) is harmless. */
  content_id(a.items[0].content, 999);
  a.count = 1;
  sync_announce(&f.reg, pk, 4, addr, &a, 3, &err, NULL);
  announce_one(&f, other, a.items[0].content, TMSG_ROLE_SEEDING,
               TMSG_EVENT_STOPPED, 3, &err);
  st = stats_of(&f);
  assert_int_equal(st.swarms, 2);
  assert_int_equal(st.peers, 2);
  fixture_close(&f);
}

/* Announces one item with the given address, port, role and event and
 * returns the item's changed flag (asserting it was accepted or not). */
static uint8_t announce_changed(struct fixture *f, const uint8_t pk[32],
                                const uint8_t content[32], uint8_t family,
                                uint8_t addr_last, uint16_t port, uint8_t role,
                                uint8_t event, unsigned want_ok) {
  struct tmsg_announce a;
  uint8_t addr[16] = {10, 0, 0, addr_last};
  uint8_t changed[TMSG_MAX_ANNOUNCE_ITEMS];
  int err;
  memset(&a, 0, sizeof(a));
  memset(changed, 0xee, sizeof(changed));
  a.port = port;
  a.event = event;
  a.count = 1;
  memcpy(a.items[0].content, content, 32);
  a.items[0].role = role;
  assert_int_equal(
      sync_announce(&f->reg, pk, family, addr, &a, 1, &err, changed), want_ok);
  assert_true(changed[0] == 0 || changed[0] == 1);
  return changed[0];
}

static void
test_announce_flags_items_that_change_what_lookup_shows(void **state) {
  struct fixture f;
  uint8_t pk[32];
  uint8_t other[32];
  uint8_t c[32];
  (void)state;
  fixture_open(&f, 2, 3);
  peer_pk(pk, 650);
  peer_pk(other, 651);
  content_id(c, 25);
  const uint8_t dl = TMSG_ROLE_DOWNLOADING;
  const uint8_t seed = TMSG_ROLE_SEEDING;
  const uint8_t started = TMSG_EVENT_STARTED;
  const uint8_t periodic = TMSG_EVENT_PERIODIC;
  /* A new peer changes the swarm; the same announce again does not. */
  assert_int_equal(announce_changed(&f, pk, c, 4, 1, 80, dl, started, 1), 1);
  assert_int_equal(announce_changed(&f, pk, c, 4, 1, 80, dl, periodic, 1), 0);
  /* Each field a lookup reports counts: address, family, port, role. */
  assert_int_equal(announce_changed(&f, pk, c, 4, 2, 80, dl, periodic, 1), 1);
  assert_int_equal(announce_changed(&f, pk, c, 6, 2, 80, dl, periodic, 1), 1);
  assert_int_equal(announce_changed(&f, pk, c, 6, 2, 81, dl, periodic, 1), 1);
  assert_int_equal(announce_changed(&f, pk, c, 6, 2, 81, seed, periodic, 1), 1);
  assert_int_equal(announce_changed(&f, pk, c, 6, 2, 81, seed, periodic, 1), 0);
  /* A completed download raises the completed count a lookup reports,
   * even from a peer that already said it was seeding. */
  assert_int_equal(
      announce_changed(&f, pk, c, 6, 2, 81, seed, TMSG_EVENT_COMPLETED, 1), 1);
  /* The swarm (max_peers 2) fills up; a peer refused changes nothing. */
  assert_int_equal(announce_changed(&f, other, c, 4, 3, 80, dl, started, 1), 1);
  uint8_t third[32];
  peer_pk(third, 652);
  assert_int_equal(announce_changed(&f, third, c, 4, 4, 80, dl, started, 0), 0);
  /* A stop changes the swarm. */
  assert_int_equal(
      announce_changed(&f, other, c, 4, 3, 80, dl, TMSG_EVENT_STOPPED, 1), 1);

  /* In a multi-item announce each flag belongs to its own item, including
   * the items past max_items, which change nothing. */
  struct tmsg_announce a;
  uint8_t addr[16] = {10, 0, 0, 2};
  uint8_t changed[TMSG_MAX_ANNOUNCE_ITEMS];
  int err;
  memset(&a, 0, sizeof(a));
  memset(changed, 0xee, sizeof(changed));
  a.port = 81;
  a.event = periodic;
  a.count = 5;
  memcpy(a.items[0].content, c, 32); /* unchanged renewal */
  a.items[0].role = seed;
  for (unsigned i = 1; i < 5; i++) {
    content_id(a.items[i].content, 26 + i);
  }
  assert_int_equal(sync_announce(&f.reg, pk, 6, addr, &a, 2, &err, changed), 3);
  assert_int_equal(err, SHOAL_ETOOBIG);
  const uint8_t want[5] = {0, 1, 1, 0, 0};
  assert_memory_equal(changed, want, sizeof(want));
  fixture_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Expiry */

static void test_registration_expires_after_interval_plus_grace(void **state) {
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t c[32];
  (void)state;
  fixture_open(&f, 1000, 64);
  /* The lifetime covers the longest interval a peer may be told. */
  for (unsigned t = 0; t < 1000; t++) {
    assert_true(registry_next_interval(&f.reg) < LIFE);
  }
  peer_pk(pk, 700);
  content_id(c, 30);
  announce_one(&f, pk, c, TMSG_ROLE_SEEDING, TMSG_EVENT_STARTED, 1000, NULL);
  assert_int_equal(sync_expire(&f.reg, 1000 + INTERVAL, 100), 0);
  assert_int_equal(sync_expire(&f.reg, 1000 + LIFE, 100), 0);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 1);
  assert_int_equal(sync_expire(&f.reg, 1000 + LIFE + 1, 100), 1);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.seeders, 0);
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, 0);
  assert_int_equal(st.peers, 0);
  fixture_close(&f);
}

static void test_renewal_keeps_a_peer_past_its_first_expiry(void **state) {
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t early[32];
  uint8_t c[32];
  (void)state;
  fixture_open(&f, 1000, 64);
  peer_pk(pk, 701);
  peer_pk(early, 702);
  content_id(c, 31);
  announce_one(&f, pk, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1000,
               NULL);
  announce_one(&f, early, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1000,
               NULL);
  /* pk renews half an interval later; early does not. */
  announce_one(&f, pk, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_PERIODIC, 1050,
               NULL);
  /* Between the first expiry (1160) and the second (1210). */
  assert_int_equal(sync_expire(&f.reg, 1200, 100), 1);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 1);
  assert_memory_equal(r.peers[0].pk, pk, 32);
  assert_int_equal(sync_expire(&f.reg, 1050 + LIFE, 100), 0);
  assert_int_equal(sync_expire(&f.reg, 1050 + LIFE + 1, 100), 1);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 0);
  assert_int_equal(stats_of(&f).swarms, 0);
  fixture_close(&f);
}

static void
test_expire_does_bounded_work_and_eventually_removes_all(void **state) {
  enum { SWARMS = 40, PER = 25 };
  struct fixture f;
  uint8_t pk[32];
  uint8_t c[32];
  unsigned calls = 0;
  (void)state;
  fixture_open(&f, 1000, 64);
  for (unsigned s = 0; s < SWARMS; s++) {
    content_id(c, 100 + s);
    for (unsigned i = 0; i < PER; i++) {
      fast_pk(pk, s * 1000 + i);
      announce_one(&f, pk, c, (uint8_t)(i & 1), TMSG_EVENT_STARTED, 1000, NULL);
    }
  }
  /* Nothing is due yet: the sweep looks and removes nothing, and comes back
   * even when there is no work to do. */
  for (unsigned t = 0; t < 500; t++) {
    assert_int_equal(sync_expire(&f.reg, 1000 + LIFE, 10), 0);
  }
  assert_int_equal(stats_of(&f).peers, SWARMS * PER);

  uint64_t left = SWARMS * PER;
  while (left > 0) {
    unsigned removed = sync_expire(&f.reg, 1000 + LIFE + 1, 10);
    assert_true(removed <= 10);
    struct store_stats st = stats_of(&f);
    assert_int_equal(st.peers, left - removed);
    left = st.peers;
    calls++;
    /* All 1000 are due, so a sweep that spends its work on anything but
     * removals (after its first pass over the table) is lost. */
    assert_true(calls <= SWARMS * PER / 5);
  }
  /* Fewer calls would mean the work bound was ignored. */
  assert_true(calls >= SWARMS * PER / 10);
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, 0);
  assert_int_equal(st.peers, 0);
  assert_int_equal(sync_expire(&f.reg, 5000, 10), 0);
  fixture_close(&f);
}

static void
test_expire_removes_only_the_expired_in_a_mixed_swarm(void **state) {
  enum { N = 200 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t keys[N][32];
  static uint8_t fresh[N / 2][32];
  uint8_t c[32];
  unsigned removed = 0;
  (void)state;
  fixture_open_for(&f, c, 32);
  for (unsigned i = 0; i < N; i++) {
    peer_pk(keys[i], 800 + i);
    announce_one(&f, keys[i], c, (uint8_t)(i % 3 == 0), TMSG_EVENT_STARTED,
                 1000, NULL);
  }
  /* Every other peer renews later; seeders and downloaders both. */
  for (unsigned i = 0; i < N; i += 2) {
    announce_one(&f, keys[i], c, (uint8_t)(i % 3 == 0), TMSG_EVENT_PERIODIC,
                 1100, NULL);
    memcpy(fresh[i / 2], keys[i], 32);
  }
  for (unsigned t = 0; t < 100; t++) {
    removed += sync_expire(&f.reg, 1000 + LIFE + 1, 7);
  }
  assert_int_equal(removed, N / 2);
  lookup(&f, c, NULL, N, 0, &r);
  assert_reply_is_set(&r, (const uint8_t(*)[32])fresh, N / 2);
  unsigned s = 0;
  for (unsigned i = 0; i < N; i += 2) {
    s += i % 3 == 0;
  }
  assert_int_equal(r.seeders, s);
  assert_int_equal(r.downloaders, N / 2 - s);
  fixture_close(&f);
}

/* Many swarms make long probe runs in the store's swarm table; removing
 * some swarms (by a stop or by expiry) must leave every other reachable. */
static void
test_removing_swarms_keeps_the_other_swarms_reachable(void **state) {
  enum { SWARMS = 3000 };
  struct fixture f;
  struct tmsg_lookup_ok r;
  static uint8_t alive[SWARMS];
  uint8_t pk[32];
  uint8_t c[32];
  (void)state;
  fixture_open(&f, 1000, 64);
  rng_state = 16;
  for (unsigned s = 0; s < SWARMS; s++) {
    content_id(c, 20000 + s);
    fast_pk(pk, s);
    announce_one(&f, pk, c, TMSG_ROLE_SEEDING, TMSG_EVENT_STARTED, 1000, NULL);
    alive[s] = 1;
  }
  /* A third leave with a stop event... */
  for (unsigned s = 0; s < SWARMS; s++) {
    if (rnd(3) == 0) {
      content_id(c, 20000 + s);
      fast_pk(pk, s);
      announce_one(&f, pk, c, TMSG_ROLE_SEEDING, TMSG_EVENT_STOPPED, 1010,
                   NULL);
      alive[s] = 0;
    }
  }
  /* ...and of the rest, half renew and the others expire. */
  for (unsigned s = 0; s < SWARMS; s++) {
    if (alive[s] && rnd(2) == 0) {
      content_id(c, 20000 + s);
      fast_pk(pk, s);
      announce_one(&f, pk, c, TMSG_ROLE_SEEDING, TMSG_EVENT_PERIODIC, 1100,
                   NULL);
      alive[s] = 2;
    }
  }
  for (unsigned t = 0; t < 2000; t++) {
    sync_expire(&f.reg, 1000 + LIFE + 1, 10);
  }
  uint64_t left = 0;
  for (unsigned s = 0; s < SWARMS; s++) {
    content_id(c, 20000 + s);
    fast_pk(pk, s);
    lookup(&f, c, NULL, 10, 0, &r);
    if (alive[s] == 2) {
      assert_int_equal(r.count, 1);
      assert_memory_equal(r.peers[0].pk, pk, 32);
      assert_int_equal(r.seeders, 1);
      left++;
    } else {
      assert_int_equal(r.count, 0);
      assert_int_equal(r.seeders, 0);
    }
  }
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, left);
  assert_int_equal(st.peers, left);
  /* A renewal of a surviving swarm finds its entry instead of adding one. */
  for (unsigned s = 0; s < SWARMS; s++) {
    if (alive[s] == 2) {
      content_id(c, 20000 + s);
      fast_pk(pk, s);
      announce_one(&f, pk, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_PERIODIC, 1200,
                   NULL);
    }
  }
  st = stats_of(&f);
  assert_int_equal(st.swarms, left);
  assert_int_equal(st.peers, left);
  fixture_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Limits */

static void
test_full_swarm_refuses_new_peers_but_renews_existing(void **state) {
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint8_t keys[7][32];
  uint8_t c[32];
  uint8_t c2[32];
  int err;
  (void)state;
  fixture_open(&f, 5, 64);
  content_id(c, 40);
  content_id(c2, 41);
  for (unsigned i = 0; i < 7; i++) {
    peer_pk(keys[i], 900 + i);
  }
  for (unsigned i = 0; i < 5; i++) {
    announce_one(&f, keys[i], c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED,
                 1000, NULL);
  }
  assert_int_equal(announce_one(&f, keys[5], c, TMSG_ROLE_DOWNLOADING,
                                TMSG_EVENT_STARTED, 1000, &err),
                   0);
  assert_int_equal(err, SHOAL_ETOOBIG);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 5);
  assert_false(reply_has(&r, keys[5]));
  /* Renewals and role changes of members still work. */
  for (unsigned i = 0; i < 5; i++) {
    assert_int_equal(announce_one(&f, keys[i], c, TMSG_ROLE_SEEDING,
                                  TMSG_EVENT_COMPLETED, 1050, &err),
                     1);
    assert_int_equal(err, 0);
  }
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.seeders, 5);
  assert_int_equal(r.completed, 5);
  /* The cap is per swarm: the refused peer is welcome elsewhere. */
  announce_one(&f, keys[5], c2, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1050,
               NULL);
  /* An announce listing a full swarm and a free one registers the free one
   * and reports why the other was refused. */
  struct tmsg_announce a;
  uint8_t addr[16] = {10, 9, 9, 9};
  memset(&a, 0, sizeof(a));
  a.event = TMSG_EVENT_STARTED;
  a.count = 2;
  memcpy(a.items[0].content, c2, 32);
  memcpy(a.items[1].content, c, 32);
  assert_int_equal(
      sync_announce(&f.reg, keys[6], 4, addr, &a, 1050, &err, NULL), 1);
  assert_int_equal(err, SHOAL_ETOOBIG);
  /* A place freed by a stopped peer can be taken. */
  announce_one(&f, keys[0], c, TMSG_ROLE_SEEDING, TMSG_EVENT_STOPPED, 1060,
               NULL);
  announce_one(&f, keys[5], c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1060,
               NULL);
  assert_int_equal(announce_one(&f, keys[6], c, TMSG_ROLE_DOWNLOADING,
                                TMSG_EVENT_STARTED, 1060, &err),
                   0);
  assert_int_equal(err, SHOAL_ETOOBIG);
  lookup(&f, c, NULL, 10, 0, &r);
  assert_int_equal(r.count, 5);
  assert_true(reply_has(&r, keys[5]));
  assert_false(reply_has(&r, keys[0]));
  fixture_close(&f);
}

static void
test_announce_over_max_items_registers_only_max_items(void **state) {
  struct fixture f;
  struct tmsg_announce a;
  struct tmsg_lookup_ok r;
  uint8_t pk[32];
  uint8_t addr[16] = {10, 1, 1, 1};
  int err = 0;
  (void)state;
  fixture_open(&f, 1000, 4);
  peer_pk(pk, 950);
  memset(&a, 0, sizeof(a));
  a.event = TMSG_EVENT_STARTED;
  a.count = 10;
  for (unsigned i = 0; i < a.count; i++) {
    content_id(a.items[i].content, 50 + i);
  }
  assert_int_equal(sync_announce(&f.reg, pk, 4, addr, &a, 1, &err, NULL), 4);
  assert_int_equal(err, SHOAL_ETOOBIG);
  for (unsigned i = 0; i < a.count; i++) {
    lookup(&f, a.items[i].content, NULL, 10, 0, &r);
    assert_int_equal(r.count, i < 4 ? 1 : 0);
  }
  assert_int_equal(stats_of(&f).swarms, 4);
  /* Exactly max_items is fine. */
  a.count = 4;
  assert_int_equal(sync_announce(&f.reg, pk, 4, addr, &a, 2, &err, NULL), 4);
  assert_int_equal(err, 0);
  fixture_close(&f);

  /* A configured maximum above the wire's is clamped to it. */
  fixture_open(&f, 1000, 100000);
  assert_int_equal(f.reg.max_items, TMSG_MAX_ANNOUNCE_ITEMS);
  fixture_close(&f);
}

static void test_next_interval_stays_within_ten_percent(void **state) {
  struct fixture f;
  uint32_t lo = UINT32_MAX;
  uint32_t hi = 0;
  (void)state;
  fixture_open(&f, 1000, 64);
  for (unsigned t = 0; t < 20000; t++) {
    uint32_t v = registry_next_interval(&f.reg);
    assert_in_range(v, INTERVAL - INTERVAL / 10, INTERVAL + INTERVAL / 10);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  /* The jitter uses the whole range (21 values, 20000 draws). */
  assert_int_equal(lo, INTERVAL - INTERVAL / 10);
  assert_int_equal(hi, INTERVAL + INTERVAL / 10);
  fixture_close(&f);

  /* Zero picks the default interval. */
  struct store *s = store_mem_new(NULL, NULL);
  struct registry r;
  registry_init(&r, s, 0, 10, 10);
  for (unsigned t = 0; t < 1000; t++) {
    assert_in_range(registry_next_interval(&r),
                    REGISTRY_INTERVAL_DEFAULT * 9 / 10,
                    REGISTRY_INTERVAL_DEFAULT * 11 / 10);
  }
  s->ops->free(s);
}

static void test_stats_bytes_grow_and_return_after_expiry(void **state) {
  struct fixture f;
  uint8_t pk[32];
  uint8_t c[32];
  (void)state;
  fixture_open(&f, 100000, 64);
  uint64_t empty = stats_of(&f).bytes;
  assert_true(empty > 0);
  for (unsigned s = 0; s < 50; s++) {
    content_id(c, 200 + s);
    for (unsigned i = 0; i < 40; i++) {
      fast_pk(pk, s * 100 + i);
      announce_one(&f, pk, c, TMSG_ROLE_DOWNLOADING, TMSG_EVENT_STARTED, 1,
                   NULL);
    }
  }
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.peers, 2000);
  /* At least one entry's worth of bytes per registration. */
  assert_true(st.bytes > empty + 2000 * (STORE_PK_BYTES + 16));
  for (unsigned calls = 0; stats_of(&f).peers > 0; calls++) {
    assert_true(calls < 100);
    sync_expire(&f.reg, 1 + LIFE + 1, 1000);
  }
  st = stats_of(&f);
  assert_int_equal(st.peers, 0);
  assert_int_equal(st.swarms, 0);
  /* What is left is the (possibly grown) empty swarm table. */
  assert_true(st.bytes < empty + 4096);
  fixture_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Randomized operations against a reference model */

enum { M_SWARMS = 5, M_KEYS = 120, M_CAP = 60, M_ROWS = M_SWARMS * M_KEYS };

struct model_row {
  int live;
  uint32_t expires;
  int seeding;
};

struct model {
  struct model_row row[M_SWARMS][M_KEYS];
  uint32_t completed[M_SWARMS];
  uint8_t keys[M_KEYS][32];
  uint8_t ids[M_SWARMS][32];
};

static unsigned model_size(const struct model *m, unsigned s) {
  unsigned n = 0;
  for (unsigned k = 0; k < M_KEYS; k++) {
    n += m->row[s][k].live != 0;
  }
  return n;
}

static unsigned model_seeders(const struct model *m, unsigned s) {
  unsigned n = 0;
  for (unsigned k = 0; k < M_KEYS; k++) {
    n += m->row[s][k].live && m->row[s][k].seeding;
  }
  return n;
}

static void model_drop(struct model *m, unsigned s, unsigned k) {
  m->row[s][k].live = 0;
  /* A swarm that empties is forgotten, completed count and all. */
  if (model_size(m, s) == 0) {
    m->completed[s] = 0;
  }
}

/* Compares every swarm with the model: membership, roles, counts, and the
 * store's totals. */
static void model_check(struct fixture *f, const struct model *m) {
  struct tmsg_lookup_ok r;
  uint64_t peers = 0;
  uint64_t swarms = 0;
  for (unsigned s = 0; s < M_SWARMS; s++) {
    unsigned n = model_size(m, s);
    lookup(f, m->ids[s], NULL, TMSG_MAX_PEERS, 0, &r);
    assert_int_equal(r.count, n);
    assert_no_duplicates(&r);
    assert_int_equal(r.seeders, model_seeders(m, s));
    assert_int_equal(r.downloaders, n - model_seeders(m, s));
    assert_int_equal(r.completed, m->completed[s]);
    for (unsigned i = 0; i < r.count; i++) {
      int k = key_index((const uint8_t(*)[32])m->keys, M_KEYS, r.peers[i].pk);
      assert_true(k >= 0);
      assert_true(m->row[s][k].live);
      assert_int_equal(r.peers[i].seeding, m->row[s][k].seeding);
    }
    peers += n;
    swarms += n > 0;
  }
  struct store_stats st = stats_of(f);
  assert_int_equal(st.peers, peers);
  assert_int_equal(st.swarms, swarms);
}

static void test_random_operations_match_a_reference_model(void **state) {
  static struct model m;
  struct fixture f;
  struct tmsg_lookup_ok r;
  uint32_t now = 1000;
  unsigned full = 0;
  unsigned expired = 0;
  (void)state;
  memset(&m, 0, sizeof(m));
  fixture_open(&f, M_CAP, 64);
  for (unsigned k = 0; k < M_KEYS; k++) {
    fast_pk(m.keys[k], 10000 + k);
  }
  for (unsigned s = 0; s < M_SWARMS; s++) {
    content_id(m.ids[s], 1000 + s);
  }
  rng_state = 15;
  for (unsigned op = 0; op < 20000; op++) {
    unsigned s = rnd(M_SWARMS);
    unsigned k = rnd(M_KEYS);
    unsigned what = rnd(100);
    /* Phases of slow time fill swarms up to the cap; phases of fast time
     * let registrations expire. */
    now += (op / 2000) % 2 ? rnd(4) : rnd(10) == 0;
    if (what < 55) {
      /* Announce: new, renewal, role change, maybe a completed event. */
      int seeding = (int)rnd(2);
      uint8_t event = (uint8_t)rnd(3); /* periodic, started, completed */
      int err;
      unsigned ok =
          announce_one(&f, m.keys[k], m.ids[s],
                       seeding ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING,
                       event, now, &err);
      if (!m.row[s][k].live && model_size(&m, s) >= M_CAP) {
        assert_int_equal(ok, 0);
        assert_int_equal(err, SHOAL_ETOOBIG);
        full++;
      } else {
        assert_int_equal(ok, 1);
        assert_int_equal(err, 0);
        /* A completion counts once: a new seeder, or a downloader that
         * became one; a seeder repeating the event counts nothing. */
        int was_seeding = m.row[s][k].live && m.row[s][k].seeding;
        m.completed[s] +=
            event == TMSG_EVENT_COMPLETED && seeding && !was_seeding;
        m.row[s][k].live = 1;
        m.row[s][k].seeding = seeding;
        m.row[s][k].expires = now + LIFE;
      }
    } else if (what < 70) {
      int err;
      announce_one(&f, m.keys[k], m.ids[s], TMSG_ROLE_DOWNLOADING,
                   TMSG_EVENT_STOPPED, now, &err);
      assert_int_equal(err, 0);
      if (m.row[s][k].live) {
        model_drop(&m, s, k);
      }
    } else if (what < 80) {
      /* A bounded sweep removes some of the expired registrations, never a
       * live one. Which ones depends on the cursor, so read the survivors
       * back and check that each removal was due. */
      unsigned removed = sync_expire(&f.reg, now, 1 + rnd(40));
      unsigned gone = 0;
      for (unsigned ss = 0; ss < M_SWARMS; ss++) {
        lookup(&f, m.ids[ss], NULL, TMSG_MAX_PEERS, 0, &r);
        for (unsigned kk = 0; kk < M_KEYS; kk++) {
          if (m.row[ss][kk].live && !reply_has(&r, m.keys[kk])) {
            assert_true(m.row[ss][kk].expires < now);
            model_drop(&m, ss, kk);
            gone++;
          }
        }
      }
      assert_int_equal(removed, gone);
      expired += gone;
    } else {
      unsigned want = rnd(M_CAP + 5);
      uint8_t flags = (uint8_t)rnd(2);
      int ask = (int)rnd(2);
      assert_int_equal(
          lookup(&f, m.ids[s], ask ? m.keys[k] : NULL, want, flags, &r),
          ask && m.row[s][k].live);
      unsigned n = model_size(&m, s);
      unsigned avail = n - (ask && m.row[s][k].live);
      assert_int_equal(r.count, want < avail ? want : avail);
      assert_no_duplicates(&r);
      if (ask) {
        assert_false(reply_has(&r, m.keys[k]));
      }
      int seen_downloader = 0;
      for (unsigned i = 0; i < r.count; i++) {
        int kk = key_index((const uint8_t(*)[32])m.keys, M_KEYS, r.peers[i].pk);
        assert_true(kk >= 0);
        assert_true(m.row[s][kk].live);
        if (flags) {
          assert_false(seen_downloader && r.peers[i].seeding);
        }
        seen_downloader |= !r.peers[i].seeding;
      }
      assert_int_equal(r.seeders, model_seeders(&m, s));
      assert_int_equal(r.downloaders, n - model_seeders(&m, s));
    }
    if (op % 100 == 99) {
      model_check(&f, &m);
    }
  }
  model_check(&f, &m);
  /* The run reached the swarm cap and expired registrations. */
  print_message("    %u refused as full, %u expired\n", full, expired);
  assert_true(full > 0);
  assert_true(expired > 0);
  /* In the end everything expires. */
  /* A call may spend its work on empty table slots and remove nothing, so
   * sweep until the store is empty (or clearly stuck). */
  for (unsigned calls = 0; stats_of(&f).peers > 0; calls++) {
    assert_true(calls < 1000);
    sync_expire(&f.reg, now + LIFE + 1, 64);
  }
  memset(m.row, 0, sizeof(m.row));
  memset(m.completed, 0, sizeof(m.completed));
  model_check(&f, &m);
  fixture_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Memory */

static void test_memory_per_registration_is_small(void **state) {
  enum { SWARMS = 1000, PER = 100 };
  struct fixture f;
  struct store_peer p;
  uint8_t c[32];
  (void)state;
  fixture_open(&f, REGISTRY_MAX_PEERS_DEFAULT, 64);
  memset(&p, 0, sizeof(p));
  p.family = 4;
  for (unsigned s = 0; s < SWARMS; s++) {
    content_id(c, 50000 + s);
    for (unsigned i = 0; i < PER; i++) {
      fast_pk(p.pk, (uint64_t)s * PER + i);
      p.seeding = i % 5 == 0;
      assert_int_equal(
          sync_put(f.store, c, &p, 5000, REGISTRY_MAX_PEERS_DEFAULT),
          STORE_CHANGED);
    }
  }
  struct store_stats st = stats_of(&f);
  assert_int_equal(st.swarms, SWARMS);
  assert_int_equal(st.peers, SWARMS * PER);
  double per = (double)st.bytes / (double)st.peers;
  print_message("    %llu registrations in %llu swarms: %llu bytes, "
                "%.1f bytes per registration\n",
                (unsigned long long)st.peers, (unsigned long long)st.swarms,
                (unsigned long long)st.bytes, per);
  assert_true(per < 200.0);
  fixture_close(&f);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_lookup_returns_exactly_the_live_set_when_want_covers_it),
      cmocka_unit_test(test_swarms_hold_their_own_peers_only),
      cmocka_unit_test(test_one_announce_registers_every_listed_content),
      cmocka_unit_test(test_lookup_reports_observed_address_and_announced_port),
      cmocka_unit_test(test_lookup_never_returns_the_asker),
      cmocka_unit_test(test_sample_has_no_duplicates_and_reaches_every_peer),
      cmocka_unit_test(test_want_is_clamped_to_max_peers),
      cmocka_unit_test(test_seeders_come_first_when_asked),
      cmocka_unit_test(test_without_the_flag_downloaders_are_sampled_too),
      cmocka_unit_test(test_completed_counts_only_seeding_completed_events),
      cmocka_unit_test(test_role_change_moves_a_peer_between_counts),
      cmocka_unit_test(test_stopped_event_removes_the_listed_swarms_only),
      cmocka_unit_test(test_announce_flags_items_that_change_what_lookup_shows),
      cmocka_unit_test(test_registration_expires_after_interval_plus_grace),
      cmocka_unit_test(test_renewal_keeps_a_peer_past_its_first_expiry),
      cmocka_unit_test(
          test_expire_does_bounded_work_and_eventually_removes_all),
      cmocka_unit_test(test_expire_removes_only_the_expired_in_a_mixed_swarm),
      cmocka_unit_test(test_removing_swarms_keeps_the_other_swarms_reachable),
      cmocka_unit_test(test_full_swarm_refuses_new_peers_but_renews_existing),
      cmocka_unit_test(test_announce_over_max_items_registers_only_max_items),
      cmocka_unit_test(test_next_interval_stays_within_ten_percent),
      cmocka_unit_test(test_stats_bytes_grow_and_return_after_expiry),
      cmocka_unit_test(test_random_operations_match_a_reference_model),
      cmocka_unit_test(test_memory_per_registration_is_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
