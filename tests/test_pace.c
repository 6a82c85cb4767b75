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
#include "tests/lib/intracker.h"
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
  struct uvrun r;
  char dir[4096];
  struct intracker t;
  struct identity id;        /* the node's */
  struct identity publisher; /* the contents' */
  struct node *n;
  unsigned failed;
  unsigned shared;
  unsigned conns;      /* the tracker's count from loopback, last seen */
  unsigned peak_conns; /* ... at most */
  unsigned drops;      /* times it fell to 0 while watched */
  int watch;
  int stop_done;
  uint8_t (*content)[32];
  unsigned ncontent;
};

static uv_check_t g_check;

static void on_check(uv_check_t *h) {
  struct fx *f = h->data;
  unsigned c = intracker_conns_from_loopback(&f->t);
  if (f->watch && f->conns > 0 && c == 0) {
    f->drops++;
  }
  f->conns = c;
  if (c > f->peak_conns) {
    f->peak_conns = c;
  }
}

static void on_event(void *arg, const struct node_event *ev) {
  struct fx *f = arg;
  if (ev->type == NODE_EV_SHARED) {
    f->shared++;
  }
  if (ev->type == NODE_EV_FAILED) {
    f->failed++;
    fprintf(stderr, "failed: %s\n", ev->message);
  }
}

/* A tracker at rate and burst (0: its defaults). */
static struct fx *fx_new(uint32_t rate, uint32_t burst) {
  struct fx *f = calloc(1, sizeof(*f));
  struct tracker_config c = trackercfg_small();
  assert_non_null(f);
  assert_int_equal(uvrun_init(&f->r), 0);
  tu_tmpdir(f->dir, sizeof(f->dir));
  c.max_conns = 64;
  c.max_peers = 100;
  c.rate = rate != 0 ? rate : RATELIMIT_RATE_DEFAULT;
  c.burst = burst != 0 ? burst : RATELIMIT_BURST_DEFAULT;
  assert_int_equal(intracker_start(&f->t, &f->r.loop, &c, 0x9ace01), 0);
  uv_check_init(&f->r.loop, &g_check);
  g_check.data = f;
  uv_check_start(&g_check, on_check);
  uv_unref((uv_handle_t *)&g_check);
  return f;
}

static int setup(void **state) {
  *state = fx_new(0, 0);
  return 0;
}

static void on_stopped(void *arg) {
  struct fx *f = arg;
  f->stop_done = 1;
}

static int teardown(void **state) {
  struct fx *f = *state;
  int rc = 0;
  if (f->n != NULL && !f->stop_done) {
    node_stop(f->n, on_stopped, f);
    UVRUN_UNTIL(&f->r, f->stop_done, WAIT_MS);
    if (!f->stop_done) {
      fprintf(stderr, "teardown: the node did not stop\n");
      rc = -1;
    }
  }
  intracker_stop(&f->t);
  uv_close((uv_handle_t *)&g_check, NULL);
  if (uvrun_close(&f->r, WAIT_MS) != 0) {
    rc = -1;
  }
  node_free(f->n);
  if (f->n != NULL) {
    identity_close(&f->id);
    identity_close(&f->publisher);
  }
  intracker_close(&f->t);
  tu_rmtree(f->dir);
  free(f->content);
  free(f);
  return rc;
}

/* A node at the default pace, and count small files of someone else's
 * (announced, not published: one request a swarm). */
static void node_start(struct fx *f, unsigned count) {
  struct node_config c;
  char home[4200], src[4200];
  uint8_t data[FILE_BYTES];
  snprintf(home, sizeof(home), "%s/home", f->dir);
  assert_int_equal(mkdir(home, 0700), 0);
  tu_identity(&f->id, 0xace1);
  tu_identity(&f->publisher, 0xace2);
  memset(&c, 0, sizeof(c));
  c.home = home;
  c.listen = "127.0.0.1:0";
  assert_int_equal(node_new(&f->n, &f->r.loop, &c, &f->id, on_event, f), 0);
  tu_path(src, sizeof(src), f->dir, "src");
  f->content = calloc(count, sizeof(*f->content));
  assert_non_null(f->content);
  f->ncontent = count;
  for (unsigned i = 0; i < count; i++) {
    char name[32];
    snprintf(name, sizeof(name), "f%04u.bin", i);
    tu_fill(data, sizeof(data), 5000 + i);
    tu_write_file(src, name, data, sizeof(data));
  }
}

static void share(struct fx *f, unsigned i) {
  struct manifest_build_opts o;
  struct manifest *m = NULL;
  char path[4200];
  snprintf(path, sizeof(path), "%s/src/f%04u.bin", f->dir, i);
  memset(&o, 0, sizeof(o));
  assert_int_equal(manifest_build(path, &f->publisher, &o, &m), 0);
  memcpy(f->content[i], m->id, 32);
  assert_int_equal(node_share(f->n, m, &f->t.link, 1, f->t.key.pk), 0);
}

static unsigned listed(struct fx *f) {
  unsigned c = 0;
  for (unsigned i = 0; i < f->ncontent; i++) {
    c += (unsigned)intracker_lists(&f->t, f->content[i], f->id.pk);
  }
  return c;
}

static uint64_t refusals(const struct fx *f) {
  const struct metrics *m = &f->t.trk->metrics;
  return m->refusals[METRICS_WHY_RATE_LIMITED] +
         m->refusals[METRICS_WHY_RETRY_IGNORED];
}

static uint64_t announces(const struct fx *f) {
  const struct metrics *m = &f->t.trk->metrics;
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
  f->watch = 1;
  uv_update_time(&f->r.loop);
  t0 = uv_now(&f->r.loop);
  for (unsigned i = 0; i < want; i++) {
    share(f, i);
  }
  UVRUN_UNTIL(&f->r, f->shared == want || f->failed > 0, WAIT_MS);
  took = uv_now(&f->r.loop) - t0;
  assert_int_equal(f->failed, 0);
  assert_int_equal(f->shared, want);
  assert_int_equal(listed(f), want);
  /* At the tracker's default limit (50 a second, a burst of 200), the
   * client's pace (40, 100) is never refused, and the one connection is
   * never closed under the swarms. */
  assert_int_equal(refusals(f), 0);
  assert_int_equal(f->peak_conns, 1);
  assert_int_equal(f->drops, 0);
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
  uv_update_time(&f->r.loop);
  stop_at = uv_now(&f->r.loop);
  node_stop(f->n, on_stopped, f);
  UVRUN_UNTIL(&f->r, f->stop_done, WAIT_MS);
  assert_true(f->stop_done);
  printf("# stopped %u swarms with %llu announces in %llu ms\n", want,
         (unsigned long long)(announces(f) - before),
         (unsigned long long)(uv_now(&f->r.loop) - stop_at));
  assert_int_equal(announces(f) - before, (want + TMSG_MAX_ANNOUNCE_ITEMS - 1) /
                                              TMSG_MAX_ANNOUNCE_ITEMS);
  assert_true(uv_now(&f->r.loop) - stop_at <= NODE_STOP_MS);
  assert_int_equal(listed(f), 0);
  assert_int_equal(refusals(f), 0);
}

static void stopping_in_the_starting_burst_leaves_none_listed(void **state) {
  struct fx *f = *state;
  unsigned want = NSWARMS, at_stop;
  uint64_t before, stop_at;
  node_start(f, want);
  f->watch = 1;
  for (unsigned i = 0; i < want; i++) {
    share(f, i);
  }
  /* Past the burst, with most "started" still waiting their turn. */
  UVRUN_UNTIL(&f->r, f->shared >= TRACKER_CLIENT_BURST + 20, WAIT_MS);
  at_stop = f->shared;
  assert_true(at_stop < want);
  /* The node closes its connection as it stops: that is no drop. */
  assert_int_equal(f->drops, 0);
  f->watch = 0;
  before = announces(f);
  uv_update_time(&f->r.loop);
  stop_at = uv_now(&f->r.loop);
  node_stop(f->n, on_stopped, f);
  UVRUN_UNTIL(&f->r, f->stop_done, WAIT_MS);
  assert_true(f->stop_done);
  /* The "started" not yet sent were taken back: what went out is the few
   * already written and the batched "stopped". */
  printf("# stopped with %u of %u swarms announced: %llu announces\n", at_stop,
         want, (unsigned long long)(announces(f) - before));
  assert_true(announces(f) - before <=
              2u + (want + TMSG_MAX_ANNOUNCE_ITEMS - 1) /
                       TMSG_MAX_ANNOUNCE_ITEMS);
  assert_true(uv_now(&f->r.loop) - stop_at <= NODE_STOP_MS);
  assert_int_equal(listed(f), 0);
  assert_int_equal(refusals(f), 0);
  assert_int_equal(f->failed, 0);
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
  tu_identity(&f->id, 0xace3);
  memset(&c, 0, sizeof(c));
  c.loop = &f->r.loop;
  c.id = &f->id;
  c.trackers = &f->t.link;
  c.ntrackers = 1;
  c.tracker_key = f->t.key.pk;
  c.seq = &g_seq;
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
  f->watch = 1;
  t = client(f, 20, 21, 0);
  lookups(t, NLOOKUPS);
  UVRUN_UNTIL(&f->r, g_calls == NLOOKUPS, WAIT_MS);
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
  assert_int_equal(f->t.trk->metrics.refusals[METRICS_WHY_RETRY_IGNORED], 0);
  assert_int_equal(f->t.trk->metrics.refusals[METRICS_WHY_RATE_LIMITED], rated);
  assert_int_equal(f->drops, 0);
  assert_int_equal(f->peak_conns, 1);
  assert_true(tracker_client_connected(t));
  tracker_client_close(t);
  identity_close(&f->id);
}

static void requests_waiting_their_turn_do_not_time_out(void **state) {
  struct fx *f = *state;
  /* 10 a second, one at a time, a timeout of 300 ms: the last of 8 is
   * written some 700 ms after it was made. */
  struct tracker_client *t = client(f, 10, 1, 300);
  uint64_t t0;
  uv_update_time(&f->r.loop);
  t0 = uv_now(&f->r.loop);
  lookups(t, 8);
  UVRUN_UNTIL(&f->r, g_calls == 8, WAIT_MS);
  assert_int_equal(g_calls, 8);
  assert_true(uv_now(&f->r.loop) - t0 >= 700);
  for (unsigned i = 0; i < 8; i++) {
    assert_int_equal(g_res[i].status, 0);
    assert_int_equal(g_res[i].order, i);
  }
  assert_int_equal(refusals(f), 0);
  tracker_client_close(t);
  identity_close(&f->id);
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
  UVRUN_UNTIL(&f->r, g_res[1].calls == 1, WAIT_MS);
  /* The first two were written; the others wait their turn. */
  assert_int_equal(tracker_client_withdraw(t, &g_res[0]), 0);
  assert_int_equal(tracker_client_withdraw(t, &g_res[4]), 1);
  assert_int_equal(g_res[4].status, SHOAL_ECANCELED);
  UVRUN_UNTIL(&f->r, g_calls == 6, WAIT_MS);
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(g_res[i].calls, 1);
    assert_int_equal(g_res[i].status, 0);
  }
  assert_int_equal(tracker_client_pending(t), 0);
  assert_int_equal(tracker_client_withdraw(NULL, &g_res[0]), 0);
  tracker_client_close(t);
  identity_close(&f->id);
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
