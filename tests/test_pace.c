/* Tests for the pace of the tracker client (peer/tracker_pace.c and its use
 * in peer/tracker_client.c), the node's batched "stopped" (node_stop) and
 * the jitter on the retry backoff (announce_retry_ms).
 *
 * The pace's arithmetic runs on a clock of the test's own. The rest runs in
 * this process on one loop (tests/lib/uvrun.h): a real tracker on loopback
 * (tests/lib/intracker.h) at its default rate limit, or a lower one, whose
 * metrics count the refusals, and either a real node sharing many small
 * files or a bare tracker client. The tracker's count of connections from
 * loopback is sampled on every turn of the loop, to see that the node's
 * one connection is never closed under it.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/error.h"
#include "common/manifest.h"
#include "peer/announce.h"
#include "peer/limits.h"
#include "peer/manifest_build.h"
#include "peer/node.h"
#include "peer/tracker_client.h"
#include "peer/tracker_pace.h"
#include "tests/lib/innode.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tests/lib/uvrun.h"
#include "tracker/ratelimit.h"

#define NSWARMS 300 /* SHOAL_PACE_SWARMS overrides it, for figures */
#define FILE_BYTES 1000u
#define WAIT_MS 60000u
#define NLOOKUPS 40

/* ------------------------------------------------------------------------ */
/* The pace, on a clock of our own */

static void a_full_burst_goes_then_the_rate(void **state) {
  struct tracker_pace p;
  unsigned sent = 0;
  (void)state;
  tracker_pace_init(&p, 40, 100);
  /* The bucket starts full: the burst goes at once, not one more. */
  for (unsigned i = 0; i < 100; i++) {
    assert_int_equal(tracker_pace_take(&p, 5000), 1);
  }
  assert_int_equal(tracker_pace_take(&p, 5000), 0);
  assert_int_equal(tracker_pace_wait_ms(&p, 5000), 25);
  assert_int_equal(tracker_pace_take(&p, 5024), 0);
  assert_int_equal(tracker_pace_wait_ms(&p, 5024), 1);
  assert_int_equal(tracker_pace_take(&p, 5025), 1);
  /* Then 40 a second, asked every millisecond for ten seconds. */
  for (uint64_t now = 5026; now <= 15025; now++) {
    while (tracker_pace_take(&p, now)) {
      sent++;
    }
  }
  assert_int_equal(sent, 400);
  /* Idle, it fills up to the burst again, and no more. */
  sent = 0;
  while (tracker_pace_take(&p, 100000)) {
    sent++;
  }
  assert_int_equal(sent, 100);
}

static void
a_retry_after_holds_everything_then_one_then_the_rate(void **state) {
  struct tracker_pace p;
  (void)state;
  tracker_pace_init(&p, 40, 100);
  assert_int_equal(tracker_pace_take(&p, 1000), 1);
  tracker_pace_hold(&p, 1000, 500);
  assert_true(tracker_pace_held(&p, 1000));
  /* 99 tokens left, and still nothing goes before the wait ends. */
  assert_int_equal(tracker_pace_take(&p, 1000), 0);
  assert_int_equal(tracker_pace_take(&p, 1499), 0);
  assert_int_equal(tracker_pace_wait_ms(&p, 1000), 500);
  assert_int_equal(tracker_pace_wait_ms(&p, 1400), 100);
  /* One when it ends, as the tracker's bucket then holds one token... */
  assert_false(tracker_pace_held(&p, 1500));
  assert_int_equal(tracker_pace_take(&p, 1500), 1);
  /* ... and the rate from there: no burst of what the wait would have
   * earned. */
  assert_int_equal(tracker_pace_take(&p, 1500), 0);
  assert_int_equal(tracker_pace_wait_ms(&p, 1500), 25);
  assert_int_equal(tracker_pace_take(&p, 1525), 1);
  assert_int_equal(tracker_pace_take(&p, 1525), 0);
}

static void a_shorter_hold_does_not_cut_a_longer_one(void **state) {
  struct tracker_pace p;
  (void)state;
  tracker_pace_init(&p, 40, 100);
  tracker_pace_hold(&p, 0, 1000);
  tracker_pace_hold(&p, 100, 200);
  tracker_pace_hold(&p, 100, 0);
  assert_int_equal(tracker_pace_wait_ms(&p, 100), 900);
  assert_int_equal(tracker_pace_take(&p, 999), 0);
  assert_int_equal(tracker_pace_take(&p, 1000), 1);
  /* A later one extends it. */
  tracker_pace_hold(&p, 1000, 300);
  assert_int_equal(tracker_pace_take(&p, 1299), 0);
  assert_int_equal(tracker_pace_take(&p, 1300), 1);
}

static void without_a_rate_only_a_retry_after_holds(void **state) {
  struct tracker_pace p;
  (void)state;
  tracker_pace_init(&p, 0, 0);
  for (unsigned i = 0; i < 10000; i++) {
    assert_int_equal(tracker_pace_take(&p, 7), 1);
  }
  assert_int_equal(tracker_pace_wait_ms(&p, 7), 0);
  tracker_pace_hold(&p, 7, 50);
  assert_int_equal(tracker_pace_take(&p, 56), 0);
  assert_int_equal(tracker_pace_wait_ms(&p, 7), 50);
  assert_int_equal(tracker_pace_take(&p, 57), 1);
  assert_int_equal(tracker_pace_take(&p, 57), 1);
}

/* ------------------------------------------------------------------------ */
/* Jitter on the retry backoff */

static uint32_t g_draw;
static uint32_t fixed_draw(uint32_t upper) {
  assert_int_equal(upper, 501);
  return g_draw;
}

static void retries_wait_half_to_all_of_the_backoff(void **state) {
  static const uint64_t full[] = {1000,  1000,  2000,  4000, 8000,
                                  16000, 32000, 60000, 60000};
  uint64_t lo = UINT64_MAX, hi = 0;
  (void)state;
  for (unsigned f = 0; f < sizeof(full) / sizeof(full[0]); f++) {
    g_draw = 0;
    assert_int_equal(announce_retry_ms(f, fixed_draw), full[f] / 2);
    g_draw = 500;
    assert_int_equal(announce_retry_ms(f, fixed_draw), full[f]);
  }
  assert_int_equal(announce_retry_ms(1000, fixed_draw), 60000);
  /* Swarms that failed together spread their retries over the range. */
  for (unsigned i = 0; i < 1000; i++) {
    uint64_t ms = announce_retry_ms(1, randombytes_uniform);
    assert_true(ms >= 500 && ms <= 1000);
    lo = ms < lo ? ms : lo;
    hi = ms > hi ? ms : hi;
  }
  assert_true(lo < 600 && hi > 900);
}

/* ------------------------------------------------------------------------ */
/* A node of many swarms against the tracker's default rate limit */

struct fx {
  struct innode in;
  struct identity publisher; /* the contents' */
};

/* A tracker at rate and burst (0: its defaults). */
static struct fx *fx_new(uint32_t rate, uint32_t burst) {
  struct fx *f = calloc(1, sizeof(*f));
  struct tracker_config c = trackercfg_small();
  assert_non_null(f);
  c.max_conns = 64;
  c.max_peers = 100;
  c.rate = rate != 0 ? rate : RATELIMIT_RATE_DEFAULT;
  c.burst = burst != 0 ? burst : RATELIMIT_BURST_DEFAULT;
  innode_init(&f->in, &c, 0x9ace01);
  return f;
}

static int setup(void **state) {
  *state = fx_new(0, 0);
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  int had_node = f->in.n != NULL;
  int rc = innode_close(&f->in, WAIT_MS);
  if (had_node) {
    identity_close(&f->publisher);
  }
  free(f);
  return rc;
}

/* A node at the default pace, and count small files of someone else's
 * (announced, not published: one request a swarm). */
static void node_start(struct fx *f, unsigned count) {
  struct node_config c;
  memset(&c, 0, sizeof(c));
  tu_identity(&f->publisher, 0xace2);
  innode_node_start(&f->in, &c, 0xace1);
  innode_write_files(&f->in, count, FILE_BYTES, 5000);
}

static void share(struct fx *f, unsigned i) {
  innode_share(&f->in, i, &f->publisher, f->in.t.key.pk);
}

static unsigned listed(struct fx *f) {
  return innode_listed(&f->in, 0, f->in.ncontent);
}

static uint64_t refusals(const struct fx *f) {
  const struct metrics *m = &f->in.t.trk->metrics;
  return m->refusals[METRICS_WHY_RATE_LIMITED] +
         m->refusals[METRICS_WHY_RETRY_IGNORED];
}

static uint64_t announces(const struct fx *f) {
  const struct metrics *m = &f->in.t.trk->metrics;
  uint64_t n = 0;
  for (unsigned o = 0; o < METRICS_OUTCOME_COUNT; o++) {
    n += m->requests[METRICS_REQ_ANNOUNCE][o];
  }
  return n;
}

static unsigned swarms_wanted(void) {
  const char *e = getenv("SHOAL_PACE_SWARMS");
  unsigned long v = e != NULL ? strtoul(e, NULL, 10) : 0;
  return v >= 1 && v <= 4000 ? (unsigned)v : NSWARMS;
}

static void
many_swarms_are_listed_without_a_refusal_and_stop_together(void **state) {
  struct fx *f = *state;
  unsigned want = swarms_wanted();
  uint64_t t0, took, before, stop_at;
  node_start(f, want);
  f->in.watch = 1;
  uv_update_time(&f->in.r.loop);
  t0 = uv_now(&f->in.r.loop);
  for (unsigned i = 0; i < want; i++) {
    share(f, i);
  }
  UVRUN_UNTIL(&f->in.r,
              f->in.ev[NODE_EV_SHARED] == want || f->in.ev[NODE_EV_FAILED] > 0,
              WAIT_MS);
  took = uv_now(&f->in.r.loop) - t0;
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
  assert_int_equal(f->in.ev[NODE_EV_SHARED], want);
  assert_int_equal(listed(f), want);
  /* At the tracker's default limit (50 a second, a burst of 200), the
   * client's pace (40, 100) is never refused, and the one connection is
   * never closed under the swarms. */
  assert_int_equal(refusals(f), 0);
  assert_int_equal(f->in.peak_conns, 1);
  assert_int_equal(f->in.drops, 0);
  /* The burst at once, the rest at the rate: no faster (the tracker
   * would have refused), and not much slower. */
  {
    uint64_t paced = want > TRACKER_CLIENT_BURST
                         ? (uint64_t)(want - TRACKER_CLIENT_BURST) * 1000u /
                               TRACKER_CLIENT_RATE
                         : 0;
    printf("# %u swarms listed in %llu ms (the pace allows %llu)\n", want,
           (unsigned long long)took, (unsigned long long)paced);
    assert_true(took + 30 >= paced);
    assert_true(took <= paced + 5000);
  }

  /* Stopping says "stopped" in announces of 64 contents, at once. */
  before = announces(f);
  uv_update_time(&f->in.r.loop);
  stop_at = uv_now(&f->in.r.loop);
  innode_stop(&f->in, WAIT_MS);
  assert_true(f->in.stop_done);
  printf("# stopped %u swarms with %llu announces in %llu ms\n", want,
         (unsigned long long)(announces(f) - before),
         (unsigned long long)(uv_now(&f->in.r.loop) - stop_at));
  assert_int_equal(announces(f) - before, (want + TMSG_MAX_ANNOUNCE_ITEMS - 1) /
                                              TMSG_MAX_ANNOUNCE_ITEMS);
  assert_true(uv_now(&f->in.r.loop) - stop_at <= NODE_STOP_MS);
  assert_int_equal(listed(f), 0);
  assert_int_equal(refusals(f), 0);
}

static void stopping_in_the_starting_burst_leaves_none_listed(void **state) {
  struct fx *f = *state;
  unsigned want = NSWARMS, at_stop;
  uint64_t before, stop_at;
  node_start(f, want);
  f->in.watch = 1;
  for (unsigned i = 0; i < want; i++) {
    share(f, i);
  }
  /* Past the burst, with most "started" still waiting their turn. */
  UVRUN_UNTIL(&f->in.r, f->in.ev[NODE_EV_SHARED] >= TRACKER_CLIENT_BURST + 20,
              WAIT_MS);
  at_stop = f->in.ev[NODE_EV_SHARED];
  assert_true(at_stop < want);
  /* The node closes its connection as it stops: that is no drop. */
  assert_int_equal(f->in.drops, 0);
  f->in.watch = 0;
  before = announces(f);
  uv_update_time(&f->in.r.loop);
  stop_at = uv_now(&f->in.r.loop);
  innode_stop(&f->in, WAIT_MS);
  assert_true(f->in.stop_done);
  /* The "started" not yet sent were taken back: what went out is the few
   * already written and the batched "stopped". */
  printf("# stopped with %u of %u swarms announced: %llu announces\n", at_stop,
         want, (unsigned long long)(announces(f) - before));
  assert_true(announces(f) - before <=
              2u + (want + TMSG_MAX_ANNOUNCE_ITEMS - 1) /
                       TMSG_MAX_ANNOUNCE_ITEMS);
  assert_true(uv_now(&f->in.r.loop) - stop_at <= NODE_STOP_MS);
  assert_int_equal(listed(f), 0);
  assert_int_equal(refusals(f), 0);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
}

/* ------------------------------------------------------------------------ */
/* A bare client */

struct res {
  unsigned calls;
  int status;
  uint32_t retry_after;
  unsigned order; /* the callback's place among all of them */
};

static struct res g_res[NLOOKUPS];
static unsigned g_calls;
static uint64_t g_seq = 1;

static void on_res(void *arg, int status,
                   const struct tracker_client_reply *r) {
  struct res *x = arg;
  x->calls++;
  x->status = status;
  x->order = g_calls++;
  x->retry_after =
      r != NULL && r->type == TMSG_ERROR ? r->error.retry_after_ms : 0;
}

static struct tracker_client *client(struct fx *f, unsigned rate,
                                     unsigned burst, unsigned timeout_ms) {
  struct tracker_client_config c;
  struct tracker_client *t;
  innode_client_config(&f->in, &c, 0xace3, &g_seq);
  c.tracker_key = f->in.t.key.pk;
  c.rate = rate;
  c.burst = burst;
  c.timeout_ms = timeout_ms;
  assert_int_equal(tracker_client_new(&t, &c), 0);
  memset(g_res, 0, sizeof(g_res));
  g_calls = 0;
  return t;
}

static void lookups(struct tracker_client *t, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    struct tmsg_lookup l;
    memset(&l, 0, sizeof(l));
    l.content[0] = (uint8_t)i;
    l.want = 10;
    assert_int_equal(tracker_client_lookup(t, &l, on_res, &g_res[i]), 0);
  }
}

static void
a_retry_after_holds_the_queue_and_the_connection_stays(void **state) {
  struct fx *f;
  struct tracker_client *t;
  unsigned rated = 0;
  assert_int_equal(teardown(state), 0);
  /* A tracker stricter than the client: 10 a second, a burst of 20,
   * against 20 a second and a burst of 21. The 21st is refused; without
   * the hold, the next ones would reach the tracker inside its retry-after,
   * and it would close the connection. */
  f = fx_new(10, 20);
  *state = f;
  f->in.watch = 1;
  t = client(f, 20, 21, 0);
  lookups(t, NLOOKUPS);
  UVRUN_UNTIL(&f->in.r, g_calls == NLOOKUPS, WAIT_MS);
  assert_int_equal(g_calls, NLOOKUPS);
  for (unsigned i = 0; i < NLOOKUPS; i++) {
    assert_int_equal(g_res[i].calls, 1);
    /* Answered in the order asked. */
    assert_int_equal(g_res[i].order, i);
    if (g_res[i].status == SHOAL_ERATE) {
      assert_true(g_res[i].retry_after > 0);
      rated++;
    } else {
      assert_int_equal(g_res[i].status, 0);
    }
  }
  /* The first 20 went through; the 21st was refused... */
  for (unsigned i = 0; i < 20; i++) {
    assert_int_equal(g_res[i].status, 0);
  }
  assert_int_equal(g_res[20].status, SHOAL_ERATE);
  /* ... and each refusal was waited out: none ignored, nothing closed. */
  printf("# %u of %u lookups refused, each waited out\n", rated, NLOOKUPS);
  assert_int_equal(f->in.t.trk->metrics.refusals[METRICS_WHY_RETRY_IGNORED], 0);
  assert_int_equal(f->in.t.trk->metrics.refusals[METRICS_WHY_RATE_LIMITED],
                   rated);
  assert_int_equal(f->in.drops, 0);
  assert_int_equal(f->in.peak_conns, 1);
  assert_true(tracker_client_connected(t));
  tracker_client_close(t);
  identity_close(&f->in.id);
}

static void requests_waiting_their_turn_do_not_time_out(void **state) {
  struct fx *f = *state;
  /* 10 a second, one at a time, a timeout of 300 ms: the last of 8 is
   * written some 700 ms after it was made. */
  struct tracker_client *t = client(f, 10, 1, 300);
  uint64_t t0;
  uv_update_time(&f->in.r.loop);
  t0 = uv_now(&f->in.r.loop);
  lookups(t, 8);
  UVRUN_UNTIL(&f->in.r, g_calls == 8, WAIT_MS);
  assert_int_equal(g_calls, 8);
  assert_true(uv_now(&f->in.r.loop) - t0 >= 700);
  for (unsigned i = 0; i < 8; i++) {
    assert_int_equal(g_res[i].status, 0);
    assert_int_equal(g_res[i].order, i);
  }
  assert_int_equal(refusals(f), 0);
  tracker_client_close(t);
  identity_close(&f->in.id);
}

static void withdraw_takes_back_only_what_was_not_written(void **state) {
  struct fx *f = *state;
  /* Two at once, then one every 100 ms. */
  struct tracker_client *t = client(f, 10, 2, 0);
  lookups(t, 6);
  /* Nothing is written before the connection opens: all six come back. */
  assert_int_equal(tracker_client_withdraw(t, &g_res[5]), 1);
  assert_int_equal(g_res[5].calls, 1);
  assert_int_equal(g_res[5].status, SHOAL_ECANCELED);
  assert_int_equal(tracker_client_pending(t), 5);
  UVRUN_UNTIL(&f->in.r, g_res[1].calls == 1, WAIT_MS);
  /* The first two were written; the others wait their turn. */
  assert_int_equal(tracker_client_withdraw(t, &g_res[0]), 0);
  assert_int_equal(tracker_client_withdraw(t, &g_res[4]), 1);
  assert_int_equal(g_res[4].status, SHOAL_ECANCELED);
  UVRUN_UNTIL(&f->in.r, g_calls == 6, WAIT_MS);
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(g_res[i].calls, 1);
    assert_int_equal(g_res[i].status, 0);
  }
  assert_int_equal(tracker_client_pending(t), 0);
  assert_int_equal(tracker_client_withdraw(NULL, &g_res[0]), 0);
  tracker_client_close(t);
  identity_close(&f->in.id);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_full_burst_goes_then_the_rate),
      cmocka_unit_test(a_retry_after_holds_everything_then_one_then_the_rate),
      cmocka_unit_test(a_shorter_hold_does_not_cut_a_longer_one),
      cmocka_unit_test(without_a_rate_only_a_retry_after_holds),
      cmocka_unit_test(retries_wait_half_to_all_of_the_backoff),
      cmocka_unit_test_setup_teardown(
          many_swarms_are_listed_without_a_refusal_and_stop_together, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          stopping_in_the_starting_burst_leaves_none_listed, setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_retry_after_holds_the_queue_and_the_connection_stays, setup,
          teardown),
      cmocka_unit_test_setup_teardown(
          requests_waiting_their_turn_do_not_time_out, setup, teardown),
      cmocka_unit_test_setup_teardown(
          withdraw_takes_back_only_what_was_not_written, setup, teardown),
  };
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
