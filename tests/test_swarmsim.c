/* Unit tests for the swarm simulator (bench/lib/simheap.c and
 * bench/lib/simswarm.c): the event queue's order, the bandwidth model, the
 * bound, small swarms that must finish near it with every chunk at every
 * downloader, reproducibility from the seed, and the limits that stop a
 * run that cannot end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bench/lib/simheap.h"
#include "bench/lib/simswarm.h"
#include "common/error.h"

#define MiB (1024u * 1024u)

static void test_heap_pops_earliest_first_ties_in_push_order(void **state) {
  struct simheap h;
  struct simev e, last;
  uint64_t x = 12345;
  int had = 0;
  (void)state;
  simheap_init(&h);
  assert_null(simheap_peek(&h));
  assert_int_equal(simheap_pop(&h, &e), 0);
  /* Many events on few distinct times, so that ties are common; a is the
   * push order. */
  for (uint32_t i = 0; i < 5000; i++) {
    memset(&e, 0, sizeof(e));
    x = x * 6364136223846793005u + 1442695040888963407u;
    e.t = (x >> 33) % 50;
    e.a = i;
    e.payload = (void *)(uintptr_t)(i + 1);
    assert_int_equal(simheap_push(&h, &e), 0);
  }
  assert_int_equal(h.n, 5000);
  for (uint32_t i = 0; i < 5000; i++) {
    struct simev top;
    assert_non_null(simheap_peek(&h));
    top = *simheap_peek(&h);
    assert_int_equal(simheap_pop(&h, &e), 1);
    assert_int_equal(e.t, top.t); /* peek shows what pop takes */
    assert_int_equal(e.a, top.a);
    assert_ptr_equal(e.payload, (void *)(uintptr_t)(e.a + 1));
    if (had) {
      assert_true(e.t >= last.t);
      if (e.t == last.t) {
        assert_true(e.a > last.a); /* ties come out in push order */
      }
    }
    last = e;
    had = 1;
  }
  assert_int_equal(simheap_pop(&h, &e), 0);
  simheap_close(&h);
}

static void test_heap_interleaved_push_and_pop(void **state) {
  struct simheap h;
  struct simev e;
  uint64_t now = 0;
  (void)state;
  simheap_init(&h);
  /* As a simulation uses it: each popped event pushes later ones. */
  memset(&e, 0, sizeof(e));
  e.t = 0;
  assert_int_equal(simheap_push(&h, &e), 0);
  for (unsigned k = 0; k < 20000 && simheap_pop(&h, &e); k++) {
    assert_true(e.t >= now);
    now = e.t;
    for (unsigned j = 0; j < (k % 3); j++) {
      struct simev f = e;
      f.t = now + 1 + (k * 7 + j * 13) % 100;
      assert_int_equal(simheap_push(&h, &f), 0);
    }
  }
  simheap_close(&h);
}

static void test_share_splits_upload_and_download_evenly(void **state) {
  (void)state;
  /* No download cap: the uploader's capacity over its transfers. */
  assert_true(simswarm_share(1000, 1, 0, 1) == 1000);
  assert_true(simswarm_share(1000, 4, 0, 7) == 250);
  /* A download cap shared by the transfers coming in limits each. */
  assert_true(simswarm_share(1000, 1, 600, 3) == 200);
  assert_true(simswarm_share(1000, 5, 600, 2) == 200);
  assert_true(simswarm_share(1000, 2, 600, 1) == 500);
  /* A count of 0 is taken as 1 (the transfer being started). */
  assert_true(simswarm_share(1000, 0, 0, 0) == 1000);
}

static void test_bound_is_the_peer_to_peer_formula(void **state) {
  struct simswarm_config c;
  double f = 64.0 * MiB;
  (void)state;
  simswarm_defaults(&c);
  /* docs/comparison.md's bounds: 13.42 s at N = 1, 42.95 s at N = 16. */
  c.n = 1;
  assert_true(simswarm_bound(&c) > 13.42 && simswarm_bound(&c) < 13.43);
  c.n = 16;
  assert_true(simswarm_bound(&c) > 42.94 && simswarm_bound(&c) < 42.96);
  /* A download cap slower than the origin: F / d_min. */
  c.n = 1;
  c.peer_down = 1000000;
  assert_true(simswarm_bound(&c) == f / 1e6);
  /* The mix: per 4 downloaders 4 + 1 + 1 + 0.5 times peer_up. */
  c.peer_down = 0;
  c.hetero = SIMSWARM_MIX;
  c.n = 8;
  assert_int_equal(simswarm_peer_up(&c, 1), 4 * c.peer_up);
  assert_int_equal(simswarm_peer_up(&c, 2), c.peer_up);
  assert_int_equal(simswarm_peer_up(&c, 3), c.peer_up / 2);
  assert_int_equal(simswarm_peer_up(&c, 4), c.peer_up);
  {
    double sum = (double)c.origin_up + 2 * 6.5 * (double)c.peer_up;
    double want = 8 * f / sum;
    assert_true(simswarm_bound(&c) > want - 1e-9 &&
                simswarm_bound(&c) < want + 1e-9);
  }
  /* bench/compare.sh --hetero: the even ones at a quarter. */
  c.hetero = SIMSWARM_HALF_QUARTER;
  assert_int_equal(simswarm_peer_up(&c, 1), c.peer_up);
  assert_int_equal(simswarm_peer_up(&c, 2), c.peer_up / 4);
}

/* Runs c and checks the figures every finished run must have. */
static void run_ok(const struct simswarm_config *c, struct simswarm_result *r) {
  char msg[300] = "";
  int err = simswarm_run(c, r, msg, sizeof(msg));
  if (err != 0) {
    fail_msg("simswarm_run: %s (%s)", shoal_strerror(err), msg);
  }
  assert_int_equal(r->complete, c->n); /* every chunk at every downloader */
  assert_true(r->d_s >= r->bound_s);   /* nothing beats the bound */
  assert_true(r->max_s <= r->d_s + 1e-9);
  assert_true(r->first_s > 0 && r->first_s <= r->d_s);
  assert_true(r->mean_s > 0 && r->mean_s <= r->max_s);
  assert_true(r->events > 0);
  /* Every downloader received the file once at least, from someone. */
  assert_true(r->total_bytes >= (uint64_t)c->n * c->size);
  assert_true(r->origin_bytes >= c->size);
}

static void test_one_seeder_two_downloaders_finish_near_the_bound(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  simswarm_defaults(&c);
  c.n = 2;
  c.size = 8 * MiB;
  run_ok(&c, &r);
  /* The frames alone cost 1514 / 1448 = 1.046; the start, the messages,
   * the ACKs and the end a few percent more. */
  assert_true(r.d_s / r.bound_s >= 1.04);
  assert_true(r.d_s / r.bound_s <= 1.15);
  /* The origin sent more than one copy but fewer than two: the two
   * downloaders traded. */
  assert_true(r.origin_bytes < 2 * c.size);
}

static void test_one_downloader_is_the_origin_uplink(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  simswarm_defaults(&c);
  c.n = 1;
  c.size = 16 * MiB;
  run_ok(&c, &r);
  /* F / u_s and the frame overhead, and little else (the start: a
   * lookup, a dial and the manifest, a few tens of ms). */
  assert_true(r.d_s / r.bound_s >= 1.045);
  assert_true(r.d_s / r.bound_s <= 1.06);
  assert_int_equal(r.origin_bytes, c.size);
  assert_int_equal(r.wasted_bytes, 0);
}

struct idle_seen {
  unsigned lines;
  double min, max;
};

static void note_idle(void *arg, const struct simswarm_progress *p) {
  struct idle_seen *x = arg;
  if (p->done > 0) {
    return; /* the line after completion covers the idle end */
  }
  x->min = x->lines == 0 || p->idle_up < x->min ? p->idle_up : x->min;
  x->max = x->lines == 0 || p->idle_up > x->max ? p->idle_up : x->max;
  x->lines++;
}

/* With one downloader nobody asks it for anything: its uplink, 10 of the
 * 50 Mbit/s, is idle all along, and the origin's never once it started. */
static void test_progress_counts_the_idle_uplinks(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  struct idle_seen x = {0, 0, 0};
  (void)s;
  simswarm_defaults(&c);
  c.n = 1;
  c.size = 16 * MiB;
  c.progress_s = 0.5;
  c.progress = note_idle;
  c.progress_arg = &x;
  run_ok(&c, &r);
  assert_true(x.lines >= 4);
  /* The first half second holds the start (lookup, dial, manifest): a
   * little more idle; every later line exactly the downloader's share. */
  assert_true(x.max >= 0.2 - 1e-9 && x.max < 0.3);
  assert_true(x.min > 0.2 - 1e-6 && x.min < 0.2 + 1e-6);
}

/* Where the capacity went adds up, and a choke does not cut a block on
 * its way: the node's CHOKE goes out behind the blocks already written
 * (swarm.c set_choke drops only what waits), so bytes are lost only when
 * a session closes mid-block. Twenty downloaders at 2.5 Mbit/s choke and
 * unchoke each other every round. */
static void test_the_bytes_add_up_and_chokes_cut_nothing(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  simswarm_defaults(&c);
  c.n = 20;
  c.size = 16 * MiB;
  c.peer_up = 2500000 / 8;
  run_ok(&c, &r);
  const struct simswarm_bytes *b = &r.bytes;
  double parts =
      b->payload + b->frames + b->control + b->acks + b->idle + b->lost;
  assert_true(b->capacity > 0);
  assert_true(parts > 0.995 * b->capacity && parts < 1.005 * b->capacity);
  /* Every byte that reached a downloader is payload, wasted or not. */
  assert_true(b->payload >= (double)r.total_bytes);
  assert_true(b->have > 0 && b->have < b->control);
  /* A session that closes mid-block loses what went of it: when a
   * downloader completes, the endgame duplicates on their way to it. */
  assert_true(b->lost < 0.001 * b->capacity);
}

static void test_download_cap_binds(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  simswarm_defaults(&c);
  c.n = 4;
  c.size = 4 * MiB;
  c.peer_down = 1000000 / 8; /* 1 Mbit/s: F / d_min is the bound */
  run_ok(&c, &r);
  assert_true(r.bound_s == (double)c.size / (double)c.peer_down);
  assert_true(r.d_s / r.bound_s <= 1.10);
}

static void test_a_seed_replays_the_same_run(void **s) {
  struct simswarm_config c;
  struct simswarm_result a, b;
  (void)s;
  simswarm_defaults(&c);
  c.n = 8;
  c.size = 4 * MiB;
  c.hetero = SIMSWARM_MIX;
  c.seed = 7;
  run_ok(&c, &a);
  run_ok(&c, &b);
  assert_true(a.d_s == b.d_s);
  assert_int_equal(a.events, b.events);
  assert_int_equal(a.total_bytes, b.total_bytes);
}

static void test_more_peers_than_sessions_all_complete(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  simswarm_defaults(&c);
  c.n = 24;
  c.size = 2 * MiB;
  c.max_peers = 6; /* the swarm is four times a peer's sessions */
  run_ok(&c, &r);
  /* With a file of 1.4 s at the bound, a second between lookups and
   * refused dials count double: the point is that all complete. */
  assert_true(r.d_s / r.bound_s <= 3.0);
}

static void test_a_dial_storm_completes_with_either_rule(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  /* Everyone starts within a millisecond and dials at once, with round
   * trips of 0.1 ms: most dials cross or find the other side full. Every
   * downloader must still get in, with main's rules and with the rule
   * that lets an inbound peer take a pending dial's slot (which closes
   * that dial at both ends: no half-open session may hold a slot). */
  for (int give_way = 0; give_way <= 1; give_way++) {
    simswarm_defaults(&c);
    c.n = 40;
    c.size = 2 * MiB;
    c.max_peers = 8;
    c.latency_us = 50;
    c.give_way = give_way;
    run_ok(&c, &r);
    assert_true(r.refused > 0); /* the storm was one */
  }
}

static void test_poisson_arrivals_that_leave_all_complete(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  (void)s;
  simswarm_defaults(&c);
  c.n = 12;
  c.size = 2 * MiB;
  c.arrival_rate = 2; /* a peer every half second */
  c.linger_s = 1;
  run_ok(&c, &r);
}

static void test_limits_stop_a_run_with_a_reason(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  char msg[300] = "";
  (void)s;
  simswarm_defaults(&c);
  c.n = 4;
  c.size = 4 * MiB;
  c.max_events = 500;
  assert_int_equal(simswarm_run(&c, &r, msg, sizeof(msg)), SHOAL_ETIMEDOUT);
  assert_non_null(strstr(msg, "500 events"));
  assert_non_null(strstr(msg, "of 4 downloaders complete"));
  assert_true(r.complete < 4);

  simswarm_defaults(&c);
  c.n = 4;
  c.size = 4 * MiB;
  c.max_time_s = 1; /* far short of the bound */
  assert_int_equal(simswarm_run(&c, &r, msg, sizeof(msg)), SHOAL_ETIMEDOUT);
  assert_non_null(strstr(msg, "1.0 s"));
}

static void test_configs_it_cannot_run_are_refused(void **s) {
  struct simswarm_config c;
  struct simswarm_result r;
  char msg[100];
  (void)s;
  simswarm_defaults(&c);
  c.n = 0;
  assert_int_equal(simswarm_run(&c, &r, msg, sizeof(msg)), SHOAL_EINVAL);
  simswarm_defaults(&c);
  c.size = 0;
  assert_int_equal(simswarm_run(&c, &r, msg, sizeof(msg)), SHOAL_EINVAL);
  simswarm_defaults(&c);
  c.peer_up = 0;
  assert_int_equal(simswarm_run(&c, &r, NULL, 0), SHOAL_EINVAL);
  simswarm_defaults(&c);
  c.mtu = 100;
  assert_int_equal(simswarm_run(&c, &r, NULL, 0), SHOAL_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_heap_pops_earliest_first_ties_in_push_order),
      cmocka_unit_test(test_heap_interleaved_push_and_pop),
      cmocka_unit_test(test_share_splits_upload_and_download_evenly),
      cmocka_unit_test(test_bound_is_the_peer_to_peer_formula),
      cmocka_unit_test(test_one_seeder_two_downloaders_finish_near_the_bound),
      cmocka_unit_test(test_one_downloader_is_the_origin_uplink),
      cmocka_unit_test(test_progress_counts_the_idle_uplinks),
      cmocka_unit_test(test_the_bytes_add_up_and_chokes_cut_nothing),
      cmocka_unit_test(test_download_cap_binds),
      cmocka_unit_test(test_a_seed_replays_the_same_run),
      cmocka_unit_test(test_more_peers_than_sessions_all_complete),
      cmocka_unit_test(test_a_dial_storm_completes_with_either_rule),
      cmocka_unit_test(test_poisson_arrivals_that_leave_all_complete),
      cmocka_unit_test(test_limits_stop_a_run_with_a_reason),
      cmocka_unit_test(test_configs_it_cannot_run_are_refused),
  };
  simswarm_random_install();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
