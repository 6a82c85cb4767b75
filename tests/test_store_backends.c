/* The store's behaviour (tracker/store.h), the same suite run against the
 * memory store (tracker/store_mem.c) and the Redis store
 * (tracker/store_redis.c) on a redis-server this program starts on a Unix
 * socket in a temp folder: registrations put, renewed and changed, the
 * per-swarm limit, the completed count, sampling (seeders first, never the
 * excluded peer, counts), removal, expiry, the catalog's publish and word
 * search, and the replay window.
 *
 * Each call is waited for on the loop with a deadline. The memory store
 * takes explicit times; the Redis store reads Redis's clock, so the expiry
 * tests give it one-second lifetimes and wait for them to pass. The Redis
 * group is skipped, with a message, when redis-server is not installed.
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

#include "common/envelope.h"
#include "common/error.h"
#include "common/replay.h"
#include "tests/lib/proc.h"
#include "tests/lib/redis.h"
#include "tests/lib/testutil.h"
#include "tracker/catalog.h"
#include "tracker/store.h"

#define CALL_MS 5000      /* one store call, at most */
#define CATALOG_MAX 4     /* entries, so that "full" is quick to reach */
#define CATALOG_TTL_S 1   /* seconds, so that expiry is quick to see */
#define WINDOW_MS 300000u /* the replay window */

/* One backend, for the whole group. */
struct backend {
  int redis;
  struct redis_srv srv;
  char dir[4096];
};

static struct backend mem_backend = {.redis = 0};
static struct backend redis_backend = {.redis = 1};
static struct backend *current; /* the group being run */

struct fx {
  struct backend *b;
  uv_loop_t loop;
  struct store *s;
  struct catalog cat;
  struct replay_guard guard;
};

/* ---------------------------------------------------------------------- */
/* Waiting for calls */

struct wait {
  int called;
  int result;
};

static void on_result(void *arg, int result) {
  struct wait *w = arg;
  w->called++;
  w->result = result;
}

static int wait_for(struct fx *f, struct wait *w) {
  uint64_t deadline = proc_now_ms() + CALL_MS;
  while (w->called == 0 && proc_now_ms() < deadline) {
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  assert_int_equal(w->called, 1);
  return w->result;
}

/* Runs the loop for about ms (the Redis store's timers keep it busy). */
static void spin(struct fx *f, int ms) {
  uint64_t until = proc_now_ms() + (uint64_t)ms;
  while (proc_now_ms() < until) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    proc_pause_ms(5);
  }
}

static int put(struct fx *f, const uint8_t id[32], const struct store_peer *p,
               uint32_t now, uint32_t life, int completed, uint32_t max) {
  struct wait w = {0, 0};
  f->s->ops->put(f->s, id, p, now, life, completed, max, on_result, &w);
  return wait_for(f, &w);
}

static int del(struct fx *f, const uint8_t id[32], const uint8_t pk[32]) {
  struct wait w = {0, 0};
  f->s->ops->del(f->s, id, pk, on_result, &w);
  return wait_for(f, &w);
}

static int sample(struct fx *f, const uint8_t id[32], const uint8_t *ex,
                  unsigned want, int seeders_first, struct store_peer *out,
                  struct store_counts *c) {
  struct wait w = {0, 0};
  f->s->ops->sample(f->s, id, ex, want, seeders_first, out, c, on_result, &w);
  return wait_for(f, &w);
}

static int expire_work(struct fx *f, uint32_t now, unsigned work) {
  struct wait w = {0, 0};
  f->s->ops->expire(f->s, now, work, on_result, &w);
  return wait_for(f, &w);
}

static int expire(struct fx *f, uint32_t now) {
  return expire_work(f, now, 10000);
}

static int publish(struct fx *f, const uint8_t pk[32],
                   const struct tmsg_publish *p) {
  struct wait w = {0, 0};
  f->s->ops->publish(f->s, pk, p, 100, on_result, &w);
  return wait_for(f, &w);
}

static int search(struct fx *f, const char *q, uint32_t offset, uint16_t limit,
                  struct tmsg_search_ok *reply) {
  struct tmsg_search s;
  struct wait w = {0, 0};
  memset(&s, 0, sizeof(s));
  snprintf(s.query, sizeof(s.query), "%s", q);
  s.offset = offset;
  s.limit = limit;
  f->s->ops->search(f->s, &s, reply, on_result, &w);
  return wait_for(f, &w);
}

static int replay(struct fx *f, const uint8_t pk[32], uint64_t seq) {
  struct wait w = {0, 0};
  uint64_t now = 1700000000000ull;
  f->s->ops->replay(f->s, pk, seq, now, now, on_result, &w);
  return wait_for(f, &w);
}

/* The figures: the Redis store refreshes them with each expiry sweep, so
 * two sweeps (that remove nothing) make them current. */
static struct store_stats stats(struct fx *f) {
  struct store_stats st;
  if (f->b->redis) {
    (void)expire(f, 0);
    (void)expire(f, 0);
  }
  f->s->ops->stats(f->s, &st);
  return st;
}

/* ---------------------------------------------------------------------- */
/* Fixtures */

static int group_setup(void **state) {
  struct backend *b = current;
  *state = b;
  if (!b->redis) {
    return 0;
  }
  tu_tmpdir(b->dir, sizeof(b->dir));
  return redis_start(&b->srv, b->dir, "redis", 0, 0);
}

static int group_teardown(void **state) {
  struct backend *b = *state;
  if (b->redis) {
    redis_stop(&b->srv);
    tu_rmtree(b->dir);
  }
  return 0;
}

static int setup(void **state) {
  struct backend *b = *state;
  struct fx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->b = b;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  if (b->redis) {
    assert_int_equal(redis_cmd(&b->srv, "FLUSHALL"), 0);
    assert_int_equal(store_redis_new(&f->loop, b->srv.url, CATALOG_MAX,
                                     CATALOG_TTL_S, WINDOW_MS, &f->s),
                     0);
    uint64_t deadline = proc_now_ms() + CALL_MS;
    while (!f->s->up && proc_now_ms() < deadline) {
      uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_true(f->s->up);
    assert_string_equal(f->s->backend, "redis");
  } else {
    assert_int_equal(catalog_init(&f->cat, CATALOG_MAX, CATALOG_TTL_S), 0);
    assert_int_equal(replay_guard_init(&f->guard, 1000, WINDOW_MS), 0);
    f->s = store_mem_new(&f->cat, &f->guard);
    assert_non_null(f->s);
    assert_string_equal(f->s->backend, "memory");
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  struct backend *b = f->b;
  f->s->ops->stop(f->s);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  f->s->ops->free(f->s);
  if (!b->redis) {
    catalog_close(&f->cat);
    replay_guard_close(&f->guard);
  }
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  *state = b;
  return 0;
}

static void peer(struct store_peer *p, uint64_t n, int seeding) {
  memset(p, 0, sizeof(*p));
  tu_fill(p->pk, 32, 0x5100 + n);
  p->family = 4;
  p->addr[0] = 10;
  p->addr[3] = (uint8_t)n;
  p->port = (uint16_t)(6000 + n);
  p->seeding = (uint8_t)seeding;
}

static void content(uint8_t id[32], uint64_t n) {
  tu_fill(id, 32, 0xc100 + n);
}

/* ---------------------------------------------------------------------- */
/* Registrations */

static void test_put_reports_new_renewed_and_changed(void **state) {
  struct fx *f = *state;
  struct store_peer p;
  uint8_t c[32];
  content(c, 1);
  peer(&p, 1, 0);
  assert_int_equal(put(f, c, &p, 100, 60, 0, 10), STORE_CHANGED);
  assert_int_equal(put(f, c, &p, 101, 60, 0, 10), 0);
  p.port++;
  assert_int_equal(put(f, c, &p, 102, 60, 0, 10), STORE_CHANGED);
  p.seeding = 1;
  assert_int_equal(put(f, c, &p, 103, 60, 0, 10), STORE_CHANGED);
  assert_int_equal(put(f, c, &p, 104, 60, 0, 10), 0);
  /* An IPv6 address is kept whole. */
  p.family = 6;
  memset(p.addr, 0x20, 16);
  assert_int_equal(put(f, c, &p, 105, 60, 0, 10), STORE_CHANGED);
  struct store_peer out[4];
  struct store_counts cn;
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 1);
  assert_int_equal(out[0].family, 6);
  assert_memory_equal(out[0].addr, p.addr, 16);
  assert_int_equal(out[0].port, p.port);
  assert_int_equal(out[0].seeding, 1);
  assert_memory_equal(out[0].pk, p.pk, 32);
}

static void test_a_full_swarm_refuses_new_peers_only(void **state) {
  struct fx *f = *state;
  struct store_peer p;
  uint8_t c[32];
  content(c, 2);
  for (unsigned i = 0; i < 3; i++) {
    peer(&p, i, i == 0);
    assert_int_equal(put(f, c, &p, 100, 60, 0, 3), STORE_CHANGED);
  }
  peer(&p, 9, 0);
  assert_int_equal(put(f, c, &p, 100, 60, 0, 3), SHOAL_ETOOBIG);
  peer(&p, 1, 1); /* a member changing role still may */
  assert_int_equal(put(f, c, &p, 100, 60, 0, 3), STORE_CHANGED);
  /* No swarm at all with a limit of zero. */
  content(c, 3);
  assert_int_equal(put(f, c, &p, 100, 60, 0, 0), SHOAL_ETOOBIG);
}

static void test_completed_counts_each_download_once(void **state) {
  struct fx *f = *state;
  struct store_peer p, out[4];
  struct store_counts cn;
  uint8_t c[32];
  content(c, 4);
  peer(&p, 1, 0);
  assert_int_equal(put(f, c, &p, 100, 60, 0, 10), STORE_CHANGED);
  p.seeding = 1;
  assert_int_equal(put(f, c, &p, 101, 60, 1, 10), STORE_CHANGED);
  assert_int_equal(put(f, c, &p, 102, 60, 1, 10), 0); /* a repeat */
  peer(&p, 2, 1); /* arrives as a seeder with the event */
  assert_int_equal(put(f, c, &p, 103, 60, 1, 10), STORE_CHANGED);
  assert_int_equal(sample(f, c, NULL, 0, 0, out, &cn), 0);
  assert_int_equal(cn.completed, 2);
  assert_int_equal(cn.seeders, 2);
  assert_int_equal(cn.downloaders, 0);
}

static void test_sample_puts_seeders_first_and_never_the_excluded(void **st) {
  struct fx *f = *st;
  struct store_peer p, out[TMSG_MAX_PEERS], ex;
  struct store_counts cn;
  uint8_t c[32];
  content(c, 5);
  for (unsigned i = 0; i < 6; i++) {
    peer(&p, i, i < 3);
    assert_int_equal(put(f, c, &p, 100, 60, 0, 100), STORE_CHANGED);
  }
  for (unsigned round = 0; round < 10; round++) {
    assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 4);
    assert_int_equal(cn.seeders, 3);
    assert_int_equal(cn.downloaders, 3);
    assert_int_equal(cn.excluded, 0);
    for (unsigned i = 0; i < 4; i++) {
      assert_int_equal(out[i].seeding, i < 3);
    }
    for (unsigned i = 0; i < 4; i++) {
      for (unsigned j = i + 1; j < 4; j++) {
        assert_memory_not_equal(out[i].pk, out[j].pk, 32);
      }
    }
  }
  peer(&ex, 1, 1);
  for (unsigned round = 0; round < 10; round++) {
    unsigned n = (unsigned)sample(f, c, ex.pk, 200, round % 2, out, &cn);
    assert_int_equal(n, 5);
    assert_int_equal(cn.excluded, 1);
    for (unsigned i = 0; i < n; i++) {
      assert_memory_not_equal(out[i].pk, ex.pk, 32);
    }
  }
  /* Without seeders first, a small sample still mixes both roles over
   * many draws. */
  unsigned seen_seeder = 0, seen_downloader = 0;
  for (unsigned round = 0; round < 40; round++) {
    assert_int_equal(sample(f, c, NULL, 1, 0, out, &cn), 1);
    seen_seeder += out[0].seeding;
    seen_downloader += !out[0].seeding;
  }
  assert_true(seen_seeder > 0 && seen_downloader > 0);
  /* An unknown swarm: nothing, counts zero. */
  content(c, 6);
  assert_int_equal(sample(f, c, ex.pk, 10, 1, out, &cn), 0);
  assert_int_equal(cn.seeders + cn.downloaders + cn.completed + cn.excluded, 0);
}

static void test_del_removes_and_an_empty_swarm_goes(void **state) {
  struct fx *f = *state;
  struct store_peer p, q, out[4];
  struct store_counts cn;
  uint8_t c[32];
  content(c, 7);
  struct store_stats before = stats(f);
  peer(&p, 1, 1);
  peer(&q, 2, 0);
  assert_int_equal(put(f, c, &p, 100, 60, 1, 10), STORE_CHANGED);
  assert_int_equal(put(f, c, &q, 100, 60, 0, 10), STORE_CHANGED);
  struct store_stats mid = stats(f);
  assert_int_equal(mid.swarms, before.swarms + 1);
  assert_int_equal(mid.peers, before.peers + 2);
  assert_int_equal(del(f, c, p.pk), 0);
  assert_int_equal(del(f, c, p.pk), 0); /* absent: a no-op */
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 1);
  assert_memory_equal(out[0].pk, q.pk, 32);
  assert_int_equal(del(f, c, q.pk), 0);
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 0);
  /* The swarm went with its completed count. */
  assert_int_equal(cn.completed, 0);
  struct store_stats after = stats(f);
  assert_int_equal(after.swarms, before.swarms);
  assert_int_equal(after.peers, before.peers);
}

static void test_expiry_removes_what_was_not_renewed(void **state) {
  struct fx *f = *state;
  struct store_peer p, q, out[4];
  struct store_counts cn;
  uint8_t c[32];
  content(c, 8);
  peer(&p, 1, 1);
  peer(&q, 2, 0);
  assert_int_equal(put(f, c, &p, 100, 1, 0, 10), STORE_CHANGED);
  assert_int_equal(put(f, c, &q, 100, 3600, 0, 10), STORE_CHANGED);
  /* Nothing is due yet. */
  assert_int_equal(expire(f, 100), 0);
  /* The memory store's clock is the caller's; Redis's is its own, so
   * wait for its second to pass. */
  int removed = 0;
  uint64_t deadline = proc_now_ms() + 5000;
  while (removed == 0 && proc_now_ms() < deadline) {
    removed = expire(f, 102);
    if (removed == 0) {
      spin(f, 100);
    }
  }
  assert_int_equal(removed, 1);
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 1);
  assert_memory_equal(out[0].pk, q.pk, 32);
  assert_int_equal(cn.seeders, 0);
  assert_int_equal(cn.downloaders, 1);
}

/* A swarm larger than one sweep's work is swept over several, each going
 * on where the last stopped (the Redis store's HSCAN cursor), until every
 * lapsed registration has gone and only the renewed one is left. */
static void test_expiry_sweeps_a_large_swarm_in_steps(void **state) {
  struct fx *f = *state;
  struct store_peer p, out[4];
  struct store_counts cn;
  uint8_t c[32];
  /* The downloaders' hash passes Redis's compact encoding (512 fields),
   * which HSCAN returns whole. */
  const unsigned n = 1200;
  content(c, 9);
  for (unsigned i = 0; i < n; i++) {
    peer(&p, 1000 + i, i % 3 == 0);
    if (i % 2 == 1) {
      p.family = 6;
      p.addr[15] = (uint8_t)i;
    }
    assert_int_equal(put(f, c, &p, 100, 1, 0, 2000), STORE_CHANGED);
  }
  peer(&p, 999, 1);
  assert_int_equal(put(f, c, &p, 100, 3600, 0, 2000), STORE_CHANGED);
  int removed = 0, sweeps = 0;
  uint64_t deadline = proc_now_ms() + 10000;
  while (removed < (int)n && proc_now_ms() < deadline) {
    int r = expire_work(f, 102, 40);
    assert_true(r >= 0);
    if (f->b->redis) {
      /* About the work asked for (HSCAN's COUNT is a hint), not the
       * whole swarm. */
      assert_true(r <= (int)n / 2);
    }
    removed += r;
    sweeps += r > 0;
    if (r == 0) {
      spin(f, 100);
    }
  }
  assert_int_equal(removed, n);
  assert_true(!f->b->redis || sweeps >= 5);
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 1);
  assert_memory_equal(out[0].pk, p.pk, 32);
  assert_int_equal(cn.seeders, 1);
  assert_int_equal(cn.downloaders, 0);
  /* Removing the last one empties the swarm; it can be filled again. */
  assert_true(del(f, c, p.pk) >= 0);
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 0);
  assert_int_equal(put(f, c, &p, 100, 3600, 0, 2000), STORE_CHANGED);
  assert_int_equal(sample(f, c, NULL, 4, 1, out, &cn), 1);
  assert_true(del(f, c, p.pk) >= 0);
}

/* ---------------------------------------------------------------------- */
/* Catalog */

static void entry(struct tmsg_publish *p, uint64_t n, const char *name) {
  memset(p, 0, sizeof(*p));
  content(p->content, 100 + n);
  p->size = 1000 * n;
  snprintf(p->name, sizeof(p->name), "%s", name);
  memset(p->manifest_sig, (int)n, sizeof(p->manifest_sig));
}

static void test_catalog_publish_and_search_by_words(void **state) {
  struct fx *f = *state;
  struct tmsg_publish p;
  struct tmsg_search_ok *r = malloc(sizeof(*r));
  uint8_t a[32], b[32];
  assert_non_null(r);
  tu_fill(a, 32, 0xa);
  tu_fill(b, 32, 0xb);
  entry(&p, 1, "Ubuntu Desktop 24.04 amd64.iso");
  assert_int_equal(publish(f, a, &p), 0);
  entry(&p, 2, "ubuntu-server-24.04.iso");
  assert_int_equal(publish(f, a, &p), 0);
  entry(&p, 3, "debian netinst");
  assert_int_equal(publish(f, b, &p), 0);

  assert_int_equal(search(f, "ubuntu", 0, 10, r), 0);
  assert_int_equal(r->total, 2);
  assert_int_equal(r->count, 2);
  assert_int_equal(search(f, "UBU desk", 0, 10, r), 0);
  assert_int_equal(r->total, 1);
  entry(&p, 1, "");
  assert_memory_equal(r->results[0].content, p.content, 32);
  assert_memory_equal(r->results[0].publisher, a, 32);
  assert_string_equal(r->results[0].name, "Ubuntu Desktop 24.04 amd64.iso");
  assert_int_equal(r->results[0].size, 1000);
  assert_int_equal(search(f, "debian", 0, 10, r), 0);
  assert_int_equal(r->total, 1);
  assert_int_equal(search(f, "nothing here", 0, 10, r), 0);
  assert_int_equal(r->total, 0);
  assert_int_equal(r->count, 0);
  /* Pages: the same total, one result each, different ones. */
  uint8_t first[32];
  assert_int_equal(search(f, "ubuntu", 0, 1, r), 0);
  assert_int_equal(r->total, 2);
  assert_int_equal(r->count, 1);
  memcpy(first, r->results[0].content, 32);
  assert_int_equal(search(f, "ubuntu", 1, 1, r), 0);
  assert_int_equal(r->count, 1);
  assert_memory_not_equal(first, r->results[0].content, 32);
  assert_int_equal(search(f, "ubuntu", 2, 1, r), 0);
  assert_int_equal(r->count, 0);
  /* Empty and oversize queries. */
  assert_int_equal(search(f, "   ", 0, 10, r), SHOAL_EINVAL);
  assert_int_equal(search(f, "a b c d e f g h i", 0, 10, r), SHOAL_EINVAL);
  /* Renaming drops the old words. */
  entry(&p, 3, "freebsd memstick");
  assert_int_equal(publish(f, b, &p), 0);
  assert_int_equal(search(f, "debian", 0, 10, r), 0);
  assert_int_equal(r->total, 0);
  assert_int_equal(search(f, "freebsd", 0, 10, r), 0);
  assert_int_equal(r->total, 1);
  free(r);
}

static void test_catalog_refuses_another_key_and_a_full_catalog(void **st) {
  struct fx *f = *st;
  struct tmsg_publish p;
  uint8_t a[32], b[32];
  tu_fill(a, 32, 0xa);
  tu_fill(b, 32, 0xb);
  entry(&p, 1, "one");
  assert_int_equal(publish(f, a, &p), 0);
  assert_int_equal(publish(f, b, &p), SHOAL_EWRONGKEY);
  assert_int_equal(publish(f, a, &p), 0); /* its publisher may again */
  for (unsigned i = 2; i <= CATALOG_MAX; i++) {
    entry(&p, i, "more");
    assert_int_equal(publish(f, a, &p), 0);
  }
  entry(&p, 50, "one too many");
  assert_int_equal(publish(f, a, &p), SHOAL_ETOOBIG);
  assert_int_equal(stats(f).catalog, CATALOG_MAX);
}

static void test_catalog_expiry_removes_unannounced_entries(void **state) {
  struct fx *f = *state;
  struct tmsg_publish p;
  struct tmsg_search_ok *r = malloc(sizeof(*r));
  uint8_t a[32];
  assert_non_null(r);
  tu_fill(a, 32, 0xa);
  entry(&p, 1, "short lived");
  assert_int_equal(publish(f, a, &p), 0);
  int removed = 0;
  uint64_t deadline = proc_now_ms() + 6000;
  while (removed == 0 && proc_now_ms() < deadline) {
    struct wait w = {0, 0};
    f->s->ops->catalog_expire(f->s, 100 + CATALOG_TTL_S + 1, 100, on_result,
                              &w);
    removed = wait_for(f, &w);
    if (removed == 0) {
      spin(f, 200);
    }
  }
  assert_int_equal(removed, 1);
  assert_int_equal(search(f, "short", 0, 10, r), 0);
  assert_int_equal(r->total, 0);
  free(r);
}

/* ---------------------------------------------------------------------- */
/* Replay */

static void test_replay_window_accepts_once(void **state) {
  struct fx *f = *state;
  uint8_t a[32], b[32];
  uint64_t base = 1700000000000000ull; /* envelope_seq_start's size */
  tu_fill(a, 32, 0xa1);
  tu_fill(b, 32, 0xb1);
  assert_int_equal(replay(f, a, base + 10), 0);
  assert_int_equal(replay(f, a, base + 10), SHOAL_EREPLAY);
  assert_int_equal(replay(f, b, base + 10), 0); /* another sender */
  assert_int_equal(replay(f, a, base + 12), 0);
  assert_int_equal(replay(f, a, base + 11), 0); /* late, inside the window */
  assert_int_equal(replay(f, a, base + 11), SHOAL_EREPLAY);
  assert_int_equal(replay(f, a, base + 12), SHOAL_EREPLAY);
  assert_int_equal(replay(f, a, base + 200), 0);
  assert_int_equal(replay(f, a, base + 100), SHOAL_ESEQ); /* below it */
  assert_int_equal(replay(f, a, base + 200 - 63), 0);     /* its edge */
  assert_int_equal(replay(f, a, base + 200 - 64), SHOAL_ESEQ);
  /* Far above: the window moves whole. */
  assert_int_equal(replay(f, a, UINT64_MAX - 1), 0);
  assert_int_equal(replay(f, a, UINT64_MAX - 1), SHOAL_EREPLAY);
  assert_int_equal(replay(f, a, UINT64_MAX), 0);
}

/* ---------------------------------------------------------------------- */

#define STORE_TESTS(T)                                                         \
  T(test_put_reports_new_renewed_and_changed)                                  \
  T(test_a_full_swarm_refuses_new_peers_only)                                  \
  T(test_completed_counts_each_download_once)                                  \
  T(test_sample_puts_seeders_first_and_never_the_excluded)                     \
  T(test_del_removes_and_an_empty_swarm_goes)                                  \
  T(test_expiry_removes_what_was_not_renewed)                                  \
  T(test_expiry_sweeps_a_large_swarm_in_steps)                                 \
  T(test_catalog_publish_and_search_by_words)                                  \
  T(test_catalog_refuses_another_key_and_a_full_catalog)                       \
  T(test_catalog_expiry_removes_unannounced_entries)                           \
  T(test_replay_window_accepts_once)

#define AS_TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown),

int main(void) {
  const struct CMUnitTest tests[] = {STORE_TESTS(AS_TEST)};
  int failed;
  if (sodium_init() < 0) {
    return 1;
  }
  cmocka_set_message_output(CM_OUTPUT_STDOUT);
  current = &mem_backend;
  failed = _cmocka_run_group_tests("store_memory", tests,
                                   sizeof(tests) / sizeof(tests[0]),
                                   group_setup, group_teardown);
  if (!redis_available(0)) {
    printf("[  SKIPPED ] store_redis: redis-server is not installed "
           "(make deps installs it)\n");
    return failed;
  }
  current = &redis_backend;
  failed += _cmocka_run_group_tests("store_redis", tests,
                                    sizeof(tests) / sizeof(tests[0]),
                                    group_setup, group_teardown);
  return failed;
}
