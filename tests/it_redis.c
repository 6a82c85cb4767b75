/* Integration tests: shoal-tracker instances over one Redis.
 *
 * Each test starts its own redis-server (a Unix socket in a temp folder,
 * or TCP ports on 127.0.0.1 where Sentinel needs them) and real
 * shoal-tracker processes with --store, drives them with blocking clients,
 * and stops every child by PID in its teardown, also when it fails. Two
 * instances share one key file, as instances of one tracker do. Waits poll
 * a condition until a deadline. Skipped, with a message, when
 * redis-server (or redis-sentinel) is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/proc.h"
#include "tests/lib/redis.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define TIMEOUT_MS 5000
#define START_MS 10000 /* a tracker's store connects */
/* A refusal while Redis is down must come within this (the store's own
 * call timeout is 2 s). */
#define UNAVAILABLE_MS 3000
/* Back again: the store retries at most every 5 s. */
#define HEAL_MS 15000
/* A Sentinel promotion: 500 ms to call the primary down, then the
 * failover. */
#define PROMOTION_MS 30000

struct fixture {
  char dir[PROC_PATH_MAX];
  struct redis_srv redis, replica, sentinel;
  struct tc_tracker a, b;
  int fa, fb;
  struct buf frame, msg;
  char store[PROC_PATH_MAX + 64];
  struct identity peer;
  uint64_t seq;
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    return -1;
  }
  tu_tmpdir(f->dir, sizeof(f->dir));
  buf_init(&f->frame, FRAME_MAX_DEFAULT);
  buf_init(&f->msg, FRAME_MAX_DEFAULT);
  f->fa = f->fb = -1;
  uint8_t seed[32] = {0x7e};
  identity_from_seed(&f->peer, seed);
  f->seq = clock_wall_ms() * 1000u;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  if (f->fa >= 0) {
    close(f->fa);
  }
  if (f->fb >= 0) {
    close(f->fb);
  }
  tc_tracker_cleanup(&f->a);
  tc_tracker_cleanup(&f->b);
  redis_stop(&f->sentinel);
  redis_stop(&f->replica);
  redis_stop(&f->redis);
  tu_rmtree(f->dir);
  buf_free(&f->frame);
  buf_free(&f->msg);
  identity_close(&f->peer);
  free(f);
  return 0;
}

/* Waits until t's log says its store is connected (a tracker listens at
 * once and refuses requests with "store unavailable" until then, which is
 * right, but not what these tests are about). */
static void wait_store_connected(const struct tc_tracker *t) {
  uint64_t deadline = proc_now_ms() + START_MS;
  while (proc_now_ms() < deadline) {
    size_t len;
    char *text = tu_read_text(t->log_path, &len);
    int up = text != NULL && strstr(text, ": connected") != NULL;
    free(text);
    if (up) {
      return;
    }
    proc_pause_ms(20);
  }
  fail_msg("the tracker's store did not connect within %d ms", START_MS);
}

/* Starts instance A on store, and B on the same store with A's key file
 * (when two is set), and waits for their stores. */
static void start_trackers(struct fixture *f, const char *store, int two) {
  snprintf(f->store, sizeof(f->store), "%s", store);
  const char *extra_a[] = {"--store", f->store, "--log-level", "debug", NULL};
  assert_int_equal(tc_tracker_start(&f->a, 0, extra_a), 0);
  wait_store_connected(&f->a);
  f->fa = tc_connect(f->a.port);
  assert_true(f->fa >= 0);
  if (two) {
    const char *extra_b[] = {"--store",     f->store, "--key", f->a.key_path,
                             "--log-level", "info",   NULL};
    assert_int_equal(tc_tracker_start(&f->b, 0, extra_b), 0);
    wait_store_connected(&f->b);
    assert_memory_equal(f->a.key, f->b.key, 32);
    f->fb = tc_connect(f->b.port);
    assert_true(f->fb >= 0);
  }
}

static void content_id(uint8_t out[32], unsigned n) {
  memset(out, 0, 32);
  out[0] = 0xd0;
  out[1] = (uint8_t)n;
}

/* Sends msg on fd and opens the reply from t: its type, or -1. */
static int roundtrip(struct fixture *f, const struct tc_tracker *t, int fd,
                     const struct buf *msg, const uint8_t **p, size_t *n) {
  if (tc_send_frame(fd, msg->data, msg->len) != 0 ||
      tc_recv_frame(fd, &f->frame, TIMEOUT_MS) != 0) {
    return -1;
  }
  return tc_open_reply(t, &f->frame, p, n);
}

static void seal_announce(struct fixture *f, const uint8_t c[32],
                          uint16_t port) {
  uint8_t ids[1][32];
  uint8_t role = TMSG_ROLE_SEEDING;
  memcpy(ids[0], c, 32);
  tc_seal_announce(&f->msg, &f->peer, clock_wall_ms(), f->seq++, port,
                   TMSG_EVENT_STARTED, (const uint8_t(*)[32])ids, &role, 1);
}

/* One announce; returns the reply type (TMSG_ERROR's payload in *e). */
static int announce(struct fixture *f, const struct tc_tracker *t, int fd,
                    const uint8_t c[32], struct tmsg_error *e) {
  const uint8_t *p;
  size_t n;
  seal_announce(f, c, 6881);
  int type = roundtrip(f, t, fd, &f->msg, &p, &n);
  if (type == TMSG_ERROR && e != NULL) {
    assert_int_equal(tmsg_error_decode(p, n, e), 0);
  }
  return type;
}

static int lookup(struct fixture *f, const struct tc_tracker *t, int fd,
                  const uint8_t c[32], struct tmsg_lookup_ok *ok,
                  struct tmsg_error *e) {
  const uint8_t *p;
  size_t n;
  tc_query_lookup(&f->msg, 1, c, 50, 0, NULL);
  int type = roundtrip(f, t, fd, &f->msg, &p, &n);
  if (type == TMSG_LOOKUP_OK) {
    assert_int_equal(tmsg_lookup_ok_decode(p, n, ok), 0);
  } else if (type == TMSG_ERROR && e != NULL) {
    assert_int_equal(tmsg_error_decode(p, n, e), 0);
  }
  return type;
}

/* Announces until one is accepted or ms pass; prints the last refusal and
 * the tracker's log when none was. */
static void announce_until_ok(struct fixture *f, const uint8_t c[32], int ms) {
  struct tmsg_error e;
  uint64_t deadline = proc_now_ms() + (uint64_t)ms;
  int type = -1;
  while (proc_now_ms() < deadline) {
    memset(&e, 0, sizeof(e));
    type = announce(f, &f->a, f->fa, c, &e);
    if (type == TMSG_ANNOUNCE_OK) {
      return;
    }
    proc_pause_ms(100);
  }
  char cmd[sizeof(f->a.log_path) + 64];
  print_message("    last refusal: %s (%s)\n", e.reason,
                shoal_err_name(e.code));
  snprintf(cmd, sizeof(cmd),
           "grep -v \"refused\\|call failed\\|connection 127\" %s | tail -30",
           f->a.log_path);
  (void)system(cmd);
  fail_msg("no announce accepted within %d ms", ms);
}

static void skip_without_redis(int sentinel) {
  if (!redis_available(sentinel)) {
    print_message("    redis-server%s is not installed (make deps "
                  "installs it): skipped\n",
                  sentinel ? " or redis-sentinel" : "");
    skip();
  }
}

static void start_redis(struct fixture *f) {
  skip_without_redis(0);
  assert_int_equal(redis_start(&f->redis, f->dir, "redis", 0, 0), 0);
}

/* ---------------------------------------------------------------------- */

static void an_announce_on_one_is_seen_by_a_lookup_on_the_other(void **st) {
  struct fixture *f = *st;
  struct tmsg_lookup_ok *ok = malloc(sizeof(*ok));
  uint8_t c[32];
  assert_non_null(ok);
  start_redis(f);
  start_trackers(f, f->redis.url, 1);
  content_id(c, 1);
  assert_int_equal(announce(f, &f->a, f->fa, c, NULL), TMSG_ANNOUNCE_OK);
  assert_int_equal(lookup(f, &f->b, f->fb, c, ok, NULL), TMSG_LOOKUP_OK);
  assert_int_equal(ok->count, 1);
  assert_int_equal(ok->seeders, 1);
  assert_memory_equal(ok->peers[0].pk, f->peer.pk, 32);
  assert_int_equal(ok->peers[0].port, 6881);
  assert_int_equal(ok->peers[0].family, 4);
  assert_int_equal(ok->peers[0].addr[0], 127);
  free(ok);
}

static void a_publish_on_one_is_found_by_a_search_on_the_other(void **st) {
  struct fixture *f = *st;
  struct tmsg_publish pub;
  struct tmsg_search_ok *res = malloc(sizeof(*res));
  const uint8_t *p;
  size_t n;
  assert_non_null(res);
  start_redis(f);
  start_trackers(f, f->redis.url, 1);
  memset(&pub, 0, sizeof(pub));
  content_id(pub.content, 2);
  pub.size = 12345;
  snprintf(pub.name, sizeof(pub.name), "Holiday Photos 2024.tar");
  tc_seal_publish(&f->msg, &f->peer, clock_wall_ms(), f->seq++, &pub);
  assert_int_equal(roundtrip(f, &f->a, f->fa, &f->msg, &p, &n),
                   TMSG_PUBLISH_OK);
  tc_query_search(&f->msg, 7, "holiday photo", 0, 10);
  assert_int_equal(roundtrip(f, &f->b, f->fb, &f->msg, &p, &n), TMSG_SEARCH_OK);
  assert_int_equal(tmsg_search_ok_decode(p, n, res), 0);
  assert_int_equal(res->total, 1);
  assert_int_equal(res->count, 1);
  assert_memory_equal(res->results[0].content, pub.content, 32);
  assert_string_equal(res->results[0].name, pub.name);
  assert_int_equal(res->results[0].size, 12345);
  assert_memory_equal(res->results[0].publisher, f->peer.pk, 32);
  free(res);
}

static void a_message_accepted_by_one_is_a_replay_to_the_other(void **st) {
  struct fixture *f = *st;
  struct tmsg_error e;
  const uint8_t *p;
  size_t n;
  uint8_t c[32];
  start_redis(f);
  start_trackers(f, f->redis.url, 1);
  content_id(c, 3);
  seal_announce(f, c, 7000);
  assert_int_equal(roundtrip(f, &f->a, f->fa, &f->msg, &p, &n),
                   TMSG_ANNOUNCE_OK);
  /* The very same bytes, to the other instance. */
  assert_int_equal(roundtrip(f, &f->b, f->fb, &f->msg, &p, &n), TMSG_ERROR);
  assert_int_equal(tmsg_error_decode(p, n, &e), 0);
  assert_int_equal(e.code, SHOAL_EREPLAY);
}

static void redis_stopped_gives_a_clear_refusal_then_heals(void **st) {
  struct fixture *f = *st;
  struct tmsg_lookup_ok *ok = malloc(sizeof(*ok));
  struct tmsg_error e;
  uint8_t c[32];
  assert_non_null(ok);
  start_redis(f);
  start_trackers(f, f->redis.url, 0);
  content_id(c, 4);
  {
    int type = announce(f, &f->a, f->fa, c, NULL);
    if (type != TMSG_ANNOUNCE_OK) {
      char cmd[sizeof(f->a.log_path) + 32];
      snprintf(cmd, sizeof(cmd), "tail -30 %s", f->a.log_path);
      (void)system(cmd);
    }
    assert_int_equal(type, TMSG_ANNOUNCE_OK);
  }

  redis_stop(&f->redis);
  uint64_t begun = proc_now_ms();
  memset(&e, 0, sizeof(e));
  assert_int_equal(lookup(f, &f->a, f->fa, c, ok, &e), TMSG_ERROR);
  assert_true(proc_now_ms() - begun < UNAVAILABLE_MS);
  assert_int_equal(e.code, SHOAL_EBUSY);
  assert_true(e.retry_after_ms >= 1000);
  assert_non_null(strstr(e.reason, "store unavailable, retry after"));
  memset(&e, 0, sizeof(e));
  assert_int_equal(announce(f, &f->a, f->fa, c, &e), TMSG_ERROR);
  assert_int_equal(e.code, SHOAL_EBUSY);

  /* Redis back (empty: soft state): the next announce is accepted and
   * seen. */
  assert_int_equal(redis_start(&f->redis, f->dir, "redis", 0, 0), 0);
  announce_until_ok(f, c, HEAL_MS);
  assert_int_equal(lookup(f, &f->a, f->fa, c, ok, NULL), TMSG_LOOKUP_OK);
  assert_int_equal(ok->count, 1);
  free(ok);
}

static void a_sentinel_promotion_is_followed(void **st) {
  struct fixture *f = *st;
  struct tmsg_lookup_ok *ok = malloc(sizeof(*ok));
  char url[128];
  uint8_t c[32];
  assert_non_null(ok);
  skip_without_redis(1);
  int pp = redis_free_port(), rp = redis_free_port(), sp = redis_free_port();
  assert_true(pp > 0 && rp > 0 && sp > 0 && pp != rp && rp != sp && pp != sp);
  assert_int_equal(redis_start(&f->redis, f->dir, "primary", pp, 0), 0);
  assert_int_equal(redis_start(&f->replica, f->dir, "replica", rp, pp), 0);
  assert_int_equal(redis_start_sentinel(&f->sentinel, f->dir, sp, "shoal", pp),
                   0);
  /* The Sentinel must know the replica before it can promote it. */
  uint64_t deadline = proc_now_ms() + PROMOTION_MS;
  while (redis_sentinel_replicas(&f->sentinel, "shoal") < 1 &&
         proc_now_ms() < deadline) {
    proc_pause_ms(100);
  }
  assert_true(redis_sentinel_replicas(&f->sentinel, "shoal") >= 1);
  snprintf(url, sizeof(url), "sentinel://127.0.0.1:%d/shoal", sp);
  start_trackers(f, url, 0);
  content_id(c, 5);
  announce_until_ok(f, c, TIMEOUT_MS);

  redis_stop(&f->redis);
  deadline = proc_now_ms() + PROMOTION_MS;
  while (redis_sentinel_primary(&f->sentinel, "shoal") != rp &&
         proc_now_ms() < deadline) {
    proc_pause_ms(100);
  }
  assert_int_equal(redis_sentinel_primary(&f->sentinel, "shoal"), rp);
  /* The tracker follows: an announce (a write) succeeds on the new
   * primary, and a lookup sees it. */
  announce_until_ok(f, c, HEAL_MS);
  assert_int_equal(lookup(f, &f->a, f->fa, c, ok, NULL), TMSG_LOOKUP_OK);
  assert_int_equal(ok->count, 1);
  free(ok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          an_announce_on_one_is_seen_by_a_lookup_on_the_other, setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_publish_on_one_is_found_by_a_search_on_the_other, setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_message_accepted_by_one_is_a_replay_to_the_other, setup, teardown),
      cmocka_unit_test_setup_teardown(
          redis_stopped_gives_a_clear_refusal_then_heals, setup, teardown),
      cmocka_unit_test_setup_teardown(a_sentinel_promotion_is_followed, setup,
                                      teardown),
  };
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
