/* Tests for the node's shared tracker clients (peer/node.c, "Shared tracker
 * clients") and for tracker_client_cancel, which lets one swarm of a shared
 * client go without the others.
 *
 * Everything runs in this process on one loop (tests/lib/uvrun.h): a real
 * tracker on loopback (tests/lib/intracker.h) that allows only
 * MAX_PER_ADDR connections from one address, and one real node sharing
 * many small files written here. The tracker's tables are read directly
 * to see which contents it lists and how many connections the node holds
 * open; the peak is sampled on every turn of the loop.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/error.h"
#include "common/manifest.h"
#include "peer/limits.h"
#include "peer/manifest_build.h"
#include "peer/node.h"
#include "peer/tracker_client.h"
#include "tests/lib/innode.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tests/lib/uvrun.h"

#define NSHARES 50
#define NMANY 1000 /* the daemon's goal: contents in one node */
#define MAX_PER_ADDR 4
#define FILE_BYTES 1500u
#define WAIT_MS 20000u

struct fx {
  struct innode in;
  unsigned removed;
  unsigned tracker_rate; /* the node's pace (0: the default) */
};

static struct fx *fx_new(uint32_t catalog_max, uint32_t max_per_addr,
                         uint32_t rate) {
  struct fx *f = calloc(1, sizeof(*f));
  struct tracker_config c = trackercfg_small();
  assert_non_null(f);
  c.max_conns = 64;
  c.max_per_addr = max_per_addr;
  c.catalog_max = catalog_max;
  c.max_peers = 100;
  if (rate != 0) {
    c.rate = rate;
    c.burst = rate;
  }
  innode_init(&f->in, &c, 0x7c9001);
  return f;
}

static int setup(void **state) {
  *state = fx_new(4 * NSHARES, MAX_PER_ADDR, 0);
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  int rc = innode_close(&f->in, WAIT_MS);
  free(f);
  return rc;
}

static void node_start(struct fx *f) {
  struct node_config c;
  memset(&c, 0, sizeof(c));
  c.tracker_rate = f->tracker_rate;
  c.tracker_burst = f->tracker_rate;
  innode_node_start(&f->in, &c, 0x0de1);
}

/* Writes count small files, src/fNNNN.bin, each with bytes of its own, and
 * keeps room for their content IDs. */
static void write_files(struct fx *f, unsigned count) {
  innode_write_files(&f->in, count, FILE_BYTES, 1000);
}

/* The node shares file i, its tracker pinned to key (or not: NULL). */
static void share(struct fx *f, unsigned i, const uint8_t *key) {
  innode_share(&f->in, i, &f->in.id, key);
}

/* How many of contents [from, to) the tracker lists the node in. */
static unsigned listed(struct fx *f, unsigned from, unsigned to) {
  return innode_listed(&f->in, from, to);
}

static void on_removed(void *arg) {
  struct fx *f = arg;
  f->removed++;
}

/* ------------------------------------------------------------------------ */
/* One connection for many swarms */

static void many_shares_announce_over_one_connection(void **state) {
  struct fx *f = *state;
  node_start(f);
  write_files(f, NSHARES);
  for (unsigned i = 0; i < NSHARES; i++) {
    share(f, i, NULL);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 0, NSHARES) == NSHARES, WAIT_MS);
  assert_int_equal(listed(f, 0, NSHARES), NSHARES);
  assert_int_equal(f->in.ev[NODE_EV_SHARED], NSHARES);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
  /* With MAX_PER_ADDR allowed, one connection per swarm would have been
   * refused; the node held one. */
  assert_int_equal(f->in.peak_conns, 1);
  /* The key learned on first contact is reported for every swarm, as when
   * each had a client of its own. */
  assert_int_equal(f->in.tracker_events_with_key, NSHARES);
}

static void a_pinned_key_joins_the_client_that_learned_it(void **state) {
  struct fx *f = *state;
  node_start(f);
  write_files(f, 20);
  for (unsigned i = 0; i < 10; i++) {
    share(f, i, NULL);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 0, 10) == 10, WAIT_MS);
  assert_int_equal(listed(f, 0, 10), 10);
  /* Pinned to the key the first client learned: the same client. */
  for (unsigned i = 10; i < 20; i++) {
    share(f, i, f->in.t.key.pk);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 10, 20) == 10, WAIT_MS);
  assert_int_equal(listed(f, 10, 20), 10);
  assert_int_equal(f->in.peak_conns, 1);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
  /* Only the unpinned swarms learned a key. */
  assert_int_equal(f->in.tracker_events_with_key, 10);
}

static void a_different_key_gets_a_client_of_its_own(void **state) {
  struct fx *f = *state;
  uint8_t wrong[32];
  node_start(f);
  write_files(f, 11);
  for (unsigned i = 0; i < 10; i++) {
    share(f, i, f->in.t.key.pk);
  }
  /* A swarm that pins another key: its client refuses the tracker's
   * replies (and the swarm fails), while the others carry on. */
  tu_pk(wrong, 0xbad);
  share(f, 10, wrong);
  UVRUN_UNTIL(&f->in.r, listed(f, 0, 10) == 10 && f->in.ev[NODE_EV_FAILED] == 1,
              WAIT_MS);
  assert_int_equal(listed(f, 0, 10), 10);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 1);
  assert_int_equal(listed(f, 10, 11), 0);
  assert_true(f->in.peak_conns >= 1 && f->in.peak_conns <= 2);
}

/* ------------------------------------------------------------------------ */
/* Leaving a shared client */

static void removing_half_while_requests_are_in_flight(void **state) {
  struct fx *f = *state;
  node_start(f);
  write_files(f, NSHARES + 1);
  for (unsigned i = 0; i < NSHARES; i++) {
    share(f, i, NULL);
  }
  /* A third at once, their publishes not even written yet... */
  for (unsigned i = 0; i < NSHARES; i += 3) {
    assert_int_equal(node_remove(f->in.n, f->in.content[i], on_removed, f), 0);
  }
  /* ... a third once some swarms are shared: their publish or announce is
   * under way, or answered. */
  UVRUN_UNTIL(&f->in.r, f->in.ev[NODE_EV_SHARED] >= 5, WAIT_MS);
  for (unsigned i = 1; i < NSHARES; i += 3) {
    assert_int_equal(node_remove(f->in.n, f->in.content[i], on_removed, f), 0);
  }
  {
    unsigned want = (NSHARES + 2) / 3 + (NSHARES + 1) / 3;
    uint64_t t0 = uv_now(&f->in.r.loop);
    UVRUN_UNTIL(&f->in.r, f->removed == want, WAIT_MS);
    assert_int_equal(f->removed, want);
    /* Each removal waits for its "stopped" (NODE_STOP_MS at most), not for
     * the requests of others. */
    assert_true(uv_now(&f->in.r.loop) - t0 <= NODE_STOP_MS + 1000u);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 0, NSHARES) == NSHARES / 3, WAIT_MS);
  for (unsigned i = 0; i < NSHARES; i++) {
    assert_int_equal(intracker_lists(&f->in.t, f->in.content[i], f->in.id.pk),
                     i % 3 == 2);
  }
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
  /* The client goes on for the swarms left, and for a new one. */
  share(f, NSHARES, NULL);
  UVRUN_UNTIL(&f->in.r, listed(f, NSHARES, NSHARES + 1) == 1, WAIT_MS);
  assert_int_equal(listed(f, NSHARES, NSHARES + 1), 1);
  assert_int_equal(f->in.peak_conns, 1);
}

static void removing_every_swarm_closes_the_client(void **state) {
  struct fx *f = *state;
  node_start(f);
  write_files(f, 6);
  for (unsigned i = 0; i < 5; i++) {
    share(f, i, NULL);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 0, 5) == 5, WAIT_MS);
  assert_int_equal(intracker_conns_from_loopback(&f->in.t), 1);
  for (unsigned i = 0; i < 5; i++) {
    assert_int_equal(node_remove(f->in.n, f->in.content[i], on_removed, f), 0);
  }
  UVRUN_UNTIL(&f->in.r,
              f->removed == 5 && intracker_conns_from_loopback(&f->in.t) == 0,
              WAIT_MS);
  assert_int_equal(f->removed, 5);
  assert_int_equal(intracker_conns_from_loopback(&f->in.t), 0);
  assert_int_equal(listed(f, 0, 5), 0);
  /* A new share makes a new client. */
  share(f, 5, NULL);
  UVRUN_UNTIL(&f->in.r, listed(f, 5, 6) == 1, WAIT_MS);
  assert_int_equal(listed(f, 5, 6), 1);
}

static void stopping_says_stopped_for_every_swarm(void **state) {
  struct fx *f = *state;
  node_start(f);
  write_files(f, NSHARES);
  for (unsigned i = 0; i < NSHARES; i++) {
    share(f, i, NULL);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 0, NSHARES) == NSHARES, WAIT_MS);
  assert_int_equal(listed(f, 0, NSHARES), NSHARES);
  innode_stop(&f->in, WAIT_MS);
  assert_true(f->in.stop_done);
  assert_int_equal(listed(f, 0, NSHARES), 0);
  assert_int_equal(f->in.peak_conns, 1);
}

static void a_thousand_shares_hold_one_connection(void **state) {
  struct fx *f;
  assert_int_equal(teardown(state), 0);
  /* No cap on connections: count what the node opens. The rate limit is
   * lifted too: the shares start all at once here, faster than a daemon
   * starts them, and this counts connections, not refusals. */
  f = fx_new(2 * NMANY, 0, 100000);
  f->tracker_rate = 100000;
  *state = f;
  node_start(f);
  write_files(f, NMANY);
  for (unsigned i = 0; i < NMANY; i++) {
    share(f, i, NULL);
  }
  UVRUN_UNTIL(&f->in.r, listed(f, 0, NMANY) == NMANY, 4 * WAIT_MS);
  assert_int_equal(listed(f, 0, NMANY), NMANY);
  assert_int_equal(f->in.ev[NODE_EV_FAILED], 0);
  printf("# %u shares, tracker connections from the node at most %u\n", NMANY,
         f->in.peak_conns);
  assert_int_equal(f->in.peak_conns, 1);
}

/* ------------------------------------------------------------------------ */
/* tracker_client_cancel */

struct calls {
  unsigned n[2];  /* callbacks of args A (0) and B (1) */
  unsigned ok[2]; /* with status 0 */
  unsigned canceled[2];
  int in_cancel;            /* inside tracker_client_cancel */
  unsigned during_cancel;   /* callbacks that came inside it */
  struct tracker_client *t; /* for the callbacks that act */
  int close_in_cb;          /* A's first cancel closes the client */
  int cancel_a_in_b;        /* B's callback cancels A */
};

static struct calls g;

static void on_reply(void *arg, int status,
                     const struct tracker_client_reply *r) {
  unsigned who = (unsigned)(uintptr_t)arg - 1;
  (void)r;
  assert_true(who < 2);
  g.n[who]++;
  g.ok[who] += status == 0;
  g.canceled[who] += status == SHOAL_ECANCELED;
  if (g.in_cancel) {
    g.during_cancel++;
  }
  if (who == 0 && g.close_in_cb && status == SHOAL_ECANCELED) {
    g.close_in_cb = 0;
    tracker_client_close(g.t);
  }
  if (who == 1 && g.cancel_a_in_b) {
    g.cancel_a_in_b = 0;
    g.in_cancel = 1;
    tracker_client_cancel(g.t, (void *)1);
    g.in_cancel = 0;
  }
}

static void cancel(struct tracker_client *t, uintptr_t arg) {
  g.in_cancel = 1;
  tracker_client_cancel(t, (void *)arg);
  g.in_cancel = 0;
}

static uint64_t g_seq = 1;

static struct tracker_client *client(struct fx *f, uint16_t port) {
  struct tracker_client_config c;
  struct tracker_client *t;
  struct link_tracker l = f->in.t.link;
  if (port != 0) {
    l.port = port;
  }
  innode_client_config(&f->in, &c, 0x0de2, &g_seq);
  c.trackers = &l;
  assert_int_equal(tracker_client_new(&t, &c), 0);
  memset(&g, 0, sizeof(g));
  g.t = t;
  return t;
}

static void lookup(struct tracker_client *t, uintptr_t arg) {
  struct tmsg_lookup l;
  memset(&l, 0, sizeof(l));
  l.content[0] = (uint8_t)arg;
  l.want = 10;
  assert_int_equal(tracker_client_lookup(t, &l, on_reply, (void *)arg), 0);
}

static void client_done(struct fx *f, struct tracker_client *t) {
  tracker_client_close(t);
  identity_close(&f->in.id);
}

static void cancel_answers_one_caller_at_once_and_keeps_the_order(void **st) {
  struct fx *f = *st;
  struct tracker_client *t = client(f, 0);
  /* Not written yet: the connection is being made. */
  lookup(t, 1);
  lookup(t, 2);
  lookup(t, 1);
  lookup(t, 2);
  lookup(t, 1);
  cancel(t, 1);
  assert_int_equal(g.n[0], 3);
  assert_int_equal(g.canceled[0], 3);
  assert_int_equal(g.during_cancel, 3);
  assert_int_equal(g.n[1], 0);
  /* They still go out and are answered: B's replies match B's requests
   * (a mismatch would fail them with SHOAL_EPROTO). */
  assert_int_equal(tracker_client_pending(t), 5);
  UVRUN_UNTIL(&f->in.r, tracker_client_pending(t) == 0, WAIT_MS);
  assert_int_equal(g.n[0], 3);
  assert_int_equal(g.ok[1], 2);
  assert_int_equal(g.n[1], 2);

  /* Written, with replies on their way: the first B's reply cancels A,
   * whose reply follows it (in the same read, on loopback) and is dropped;
   * the second B's still matches. */
  lookup(t, 2);
  lookup(t, 1);
  lookup(t, 2);
  g.cancel_a_in_b = 1;
  UVRUN_UNTIL(&f->in.r, g.n[1] >= 3, WAIT_MS);
  assert_int_equal(g.n[0], 4);
  assert_int_equal(g.canceled[0], 4);
  assert_int_equal(g.during_cancel, 4);
  UVRUN_UNTIL(&f->in.r, tracker_client_pending(t) == 0, WAIT_MS);
  assert_int_equal(g.ok[1], 4);
  assert_int_equal(g.n[0], 4);
  /* Nothing left of A: a second cancel calls nothing. */
  cancel(t, 1);
  assert_int_equal(g.n[0], 4);
  client_done(f, t);
}

static void cancel_takes_failures_already_due(void **state) {
  struct fx *f = *state;
  /* Port 1 of loopback: refused at once. */
  struct tracker_client *t = client(f, 1);
  lookup(t, 2);
  lookup(t, 1);
  lookup(t, 1);
  g.cancel_a_in_b = 1;
  UVRUN_UNTIL(&f->in.r, g.n[1] == 1, WAIT_MS);
  /* B's failure came first, and from it A's two came cancelled, at once;
   * the failures they were due do not follow. */
  assert_int_equal(g.n[1], 1);
  assert_int_equal(g.canceled[1], 0);
  assert_int_equal(g.n[0], 2);
  assert_int_equal(g.canceled[0], 2);
  assert_int_equal(g.during_cancel, 2);
  assert_int_equal(tracker_client_pending(t), 0);
  uvrun_for(&f->in.r, 50);
  assert_int_equal(g.n[0], 2);
  client_done(f, t);
}

static void closing_from_a_cancelled_callback_answers_the_rest(void **st) {
  struct fx *f = *st;
  struct tracker_client *t = client(f, 0);
  lookup(t, 1);
  lookup(t, 2);
  lookup(t, 1);
  g.close_in_cb = 1;
  cancel(t, 1);
  /* The first A closed the client, which answered the rest at once. */
  assert_int_equal(g.n[0], 2);
  assert_int_equal(g.canceled[0], 2);
  assert_int_equal(g.n[1], 1);
  assert_int_equal(g.canceled[1], 1);
  uvrun_for(&f->in.r, 50);
  assert_int_equal(g.n[0] + g.n[1], 3);
  identity_close(&f->in.id);
}

static void cancel_of_null_or_unknown_is_a_no_op(void **state) {
  struct fx *f = *state;
  struct tracker_client *t = client(f, 0);
  tracker_client_cancel(NULL, (void *)1);
  lookup(t, 2);
  cancel(t, 1);
  assert_int_equal(g.n[1], 0);
  UVRUN_UNTIL(&f->in.r, g.n[1] == 1, WAIT_MS);
  assert_int_equal(g.ok[1], 1);
  client_done(f, t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(many_shares_announce_over_one_connection,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_pinned_key_joins_the_client_that_learned_it, setup, teardown),
      cmocka_unit_test_setup_teardown(a_different_key_gets_a_client_of_its_own,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          removing_half_while_requests_are_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(removing_every_swarm_closes_the_client,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(stopping_says_stopped_for_every_swarm,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_thousand_shares_hold_one_connection,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          cancel_answers_one_caller_at_once_and_keeps_the_order, setup,
          teardown),
      cmocka_unit_test_setup_teardown(cancel_takes_failures_already_due, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          closing_from_a_cancelled_callback_answers_the_rest, setup, teardown),
      cmocka_unit_test_setup_teardown(cancel_of_null_or_unknown_is_a_no_op,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
