/* Unit tests for peer/choker.c: who a swarm uploads to.
 *
 * Each test lays out a swarm's open sessions as plain records, runs
 * rechokes at clock values it chooses, and checks the actions (their peers,
 * kinds and order) and the peers' states after them: the rounds' timing,
 * tit-for-tat with its optimistic rotation, the seeder's round robin led
 * by need, free slots, client-server clients, ties, and the slot counts.
 * The optimistic pick comes from a scripted generator, so every decision
 * is pinned as the swarm made it before the choker was a module of its
 * own. No sockets, no clock, no allocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "peer/choker.h"
#include "peer/limits.h"

#define T0 1000000u /* an arbitrary clock value to start from */
#define MAXP 40

/* The scripted generator: returns g_picks[i] in turn (modulo upper), and
 * records each upper it was asked for. */
static uint32_t g_picks[8];
static unsigned g_npicks, g_next;
static uint32_t g_uppers[8];
static unsigned g_nuppers;

static uint32_t scripted(uint32_t upper) {
  uint32_t v = g_next < g_npicks ? g_picks[g_next++] : 0;
  if (g_nuppers < 8) {
    g_uppers[g_nuppers++] = upper;
  }
  return v % upper;
}

static void script(const uint32_t *picks, unsigned n) {
  if (n > 0) {
    memcpy(g_picks, picks, n * sizeof(*picks));
  }
  g_npicks = n;
  g_next = 0;
  g_nuppers = 0;
}

struct fx {
  struct choker c;
  struct choker_peer p[MAXP];
  unsigned n;
  struct choker_action act[CHOKER_ACTIONS_MAX(MAXP)];
  unsigned nact;
};

/* n interested peers, all choked since T0 - 1000 + i (the first waited
 * longest), none sending, holding nothing. */
static void fx_init(struct fx *f, unsigned n) {
  memset(f, 0, sizeof(*f));
  choker_init(&f->c, T0, scripted);
  f->n = n;
  for (unsigned i = 0; i < n; i++) {
    f->p[i].interested = 1;
    f->p[i].choked = 1;
    f->p[i].choked_at_ms = T0 - 1000 + i;
  }
  script(NULL, 0);
}

static unsigned run(struct fx *f, int seeding, uint64_t now, int full) {
  f->nact = choker_rechoke(&f->c, seeding, 0, f->p, f->n, now, full, f->act);
  assert_true(f->nact <= CHOKER_ACTIONS_MAX(f->n));
  return f->nact;
}

static void expect_action(const struct fx *f, unsigned k, unsigned peer,
                          int choke) {
  assert_true(k < f->nact);
  assert_int_equal(f->act[k].peer, peer);
  assert_int_equal(f->act[k].choke, choke);
}

/* The unchoked peers as a bit mask (peers 0..31). */
static uint32_t unchoked(const struct fx *f) {
  uint32_t m = 0;
  for (unsigned i = 0; i < f->n && i < 32; i++) {
    m |= f->p[i].choked ? 0 : 1u << i;
  }
  return m;
}

static unsigned count_unchoked(const struct fx *f) {
  unsigned k = 0;
  for (unsigned i = 0; i < f->n; i++) {
    k += !f->p[i].choked;
  }
  return k;
}

/* ---------------------------------------------------------------------- */
/* Rounds */

static void test_rounds_are_due_every_10_s_and_2_s_seeding(void **state) {
  struct choker c;
  (void)state;
  choker_init(&c, T0, scripted);
  assert_false(choker_due(&c, 0, T0));
  assert_false(choker_due(&c, 0, T0 + NODE_RECHOKE_MS - 1));
  assert_true(choker_due(&c, 0, T0 + NODE_RECHOKE_MS));
  assert_false(choker_due(&c, 1, T0 + NODE_SEED_RECHOKE_MS - 1));
  assert_true(choker_due(&c, 1, T0 + NODE_SEED_RECHOKE_MS));
  assert_int_equal(NODE_RECHOKE_MS, 10000);
  assert_int_equal(NODE_SEED_RECHOKE_MS, 2000);
}

static void test_only_a_full_round_moves_the_round_clock(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 2);
  run(&f, 0, T0 + 500, 0);
  assert_int_equal(f.c.last_rechoke_ms, T0);
  assert_int_equal(f.c.last_optimistic_ms, 0);
  run(&f, 0, T0 + 700, 1);
  assert_int_equal(f.c.last_rechoke_ms, T0 + 700);
  assert_false(choker_due(&f.c, 0, T0 + 700 + NODE_RECHOKE_MS - 1));
  assert_true(choker_due(&f.c, 0, T0 + 700 + NODE_RECHOKE_MS));
}

static void test_nobody_interested_nothing_happens(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 5);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].interested = 0;
  }
  assert_int_equal(run(&f, 0, T0, 1), 0);
  assert_int_equal(run(&f, 1, T0, 1), 0);
  assert_int_equal(run(&f, 0, T0, 0), 0);
}

/* ---------------------------------------------------------------------- */
/* Free slots */

static void test_free_slots_go_to_who_waited_longest(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 6);
  /* Peer 3 waited longest, then 5, then 0, 1, 2, 4. */
  f.p[3].choked_at_ms = T0 - 5000;
  f.p[5].choked_at_ms = T0 - 4000;
  assert_int_equal(run(&f, 0, T0, 0), NODE_UPLOAD_SLOTS);
  expect_action(&f, 0, 3, 0);
  expect_action(&f, 1, 5, 0);
  expect_action(&f, 2, 0, 0);
  expect_action(&f, 3, 1, 0);
  assert_int_equal(unchoked(&f), 0x2b);
  for (unsigned k = 0; k < f.nact; k++) {
    assert_int_equal(f.p[f.act[k].peer].unchoked_at_ms, T0);
  }
  /* The slots are full: a second pass does nothing. */
  assert_int_equal(run(&f, 0, T0 + 1, 0), 0);
}

static void test_free_slot_ties_go_to_the_first_in_the_list(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 6);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].choked_at_ms = T0 - 10;
  }
  run(&f, 0, T0, 0);
  assert_int_equal(unchoked(&f), 0x0f);
}

static void test_a_seeder_fills_16_slots_fewest_chunks_first(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 20);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].have = 100 - i; /* the last peers need it most */
  }
  assert_int_equal(run(&f, 1, T0, 0), NODE_SEED_SLOTS);
  for (unsigned k = 0; k < NODE_SEED_SLOTS; k++) {
    expect_action(&f, k, 19 - k, 0);
  }
  assert_int_equal(unchoked(&f), 0xffff0);
}

static void test_a_leaving_slot_is_given_again_at_once(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 6);
  run(&f, 0, T0, 0);
  assert_int_equal(unchoked(&f), 0x0f);
  /* Peer 1 loses interest (the swarm chokes it at once), and the free
   * slot goes to peer 4, which waited longest of the rest. */
  f.p[1].interested = 0;
  f.p[1].choked = 1;
  f.p[1].choked_at_ms = T0 + 100;
  assert_int_equal(run(&f, 0, T0 + 100, 0), 1);
  expect_action(&f, 0, 4, 0);
  assert_int_equal(unchoked(&f), 0x1d);
}

/* ---------------------------------------------------------------------- */
/* Tit-for-tat */

static void test_tit_for_tat_keeps_the_three_best_senders(void **state) {
  struct fx f;
  const uint64_t rates[8] = {10, 500, 30, 900, 0, 700, 20, 5};
  const uint32_t pick[1] = {2};
  (void)state;
  fx_init(&f, 8);
  /* Everyone is unchoked now; who sends us most keeps a slot. */
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].choked = 0;
    f.p[i].unchoked_at_ms = T0 - 100;
    f.p[i].rate = rates[i];
  }
  script(pick, 1);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  /* The best three: 3 (900), 5 (700), 1 (500). The rest are choked in
   * list order, then the optimistic pick: the third (pick 2) of the
   * choked candidates 0, 2, 4, 6, 7, which is 4. */
  assert_int_equal(f.nact, 6);
  expect_action(&f, 0, 0, 1);
  expect_action(&f, 1, 2, 1);
  expect_action(&f, 2, 4, 1);
  expect_action(&f, 3, 6, 1);
  expect_action(&f, 4, 7, 1);
  expect_action(&f, 5, 4, 0);
  assert_int_equal(g_nuppers, 1);
  assert_int_equal(g_uppers[0], 5);
  assert_int_equal(unchoked(&f), (1u << 1) | (1u << 3) | (1u << 4) | (1u << 5));
  assert_true(f.p[4].optimistic);
  assert_int_equal(f.p[4].choked_at_ms, T0 + NODE_OPTIMISTIC_MS);
  assert_int_equal(f.p[4].unchoked_at_ms, T0 + NODE_OPTIMISTIC_MS);
  assert_int_equal(f.c.last_optimistic_ms, T0 + NODE_OPTIMISTIC_MS);
  assert_int_equal(count_unchoked(&f), NODE_UPLOAD_SLOTS);
}

static void test_tit_for_tat_ties_go_to_the_first_in_the_list(void **state) {
  struct fx f;
  const uint32_t pick[1] = {0};
  (void)state;
  fx_init(&f, 6);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].rate = 100; /* all equal */
  }
  f.p[4].rate = 200;
  script(pick, 1);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  /* Best: 4, then 0 and 1 by their place; the optimistic pick is the
   * first choked candidate, 2. */
  assert_int_equal(unchoked(&f), (1u << 0) | (1u << 1) | (1u << 2) | (1u << 4));
  assert_true(f.p[2].optimistic);
  expect_action(&f, 0, 0, 0);
  expect_action(&f, 1, 1, 0);
  expect_action(&f, 2, 4, 0);
  expect_action(&f, 3, 2, 0);
  assert_int_equal(f.nact, 4);
}

static void test_optimistic_peer_stays_until_the_next_rotation(void **state) {
  struct fx f;
  const uint32_t first[1] = {1};
  const uint32_t second[1] = {0};
  (void)state;
  fx_init(&f, 6);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].rate = 1000 - 100 * i; /* 0, 1, 2 are the best */
  }
  script(first, 1);
  uint64_t t = T0 + NODE_OPTIMISTIC_MS;
  run(&f, 0, t, 1);
  /* Choked candidates 3, 4, 5: pick 1 is 4. */
  assert_int_equal(unchoked(&f), 0x17);
  assert_true(f.p[4].optimistic);

  /* The next full round, 10 s later: no rotation, 4 keeps its slot
   * though peer 5 now sends more than it. */
  f.p[5].rate = 950;
  f.p[4].rate = 1;
  script(NULL, 0);
  run(&f, 0, t + NODE_RECHOKE_MS, 1);
  /* 5 (950) displaces 2 (800) from the best three. */
  assert_int_equal(f.nact, 2);
  expect_action(&f, 0, 2, 1);
  expect_action(&f, 1, 5, 0);
  assert_int_equal(unchoked(&f), 0x33);
  assert_true(f.p[4].optimistic);
  assert_int_equal(g_nuppers, 0);
  assert_int_equal(f.c.last_optimistic_ms, t);

  /* 30 s after the first: the optimistic slot moves. 4 is choked, then
   * the pick among the choked candidates 2, 3, 4 is 2. */
  script(second, 1);
  run(&f, 0, t + NODE_OPTIMISTIC_MS, 1);
  expect_action(&f, 0, 4, 1);
  expect_action(&f, 1, 2, 0);
  assert_int_equal(f.nact, 2);
  assert_false(f.p[4].optimistic);
  assert_true(f.p[2].optimistic);
  assert_int_equal(g_uppers[0], 3);
}

static void test_optimistic_peer_that_becomes_best_is_regular(void **state) {
  struct fx f;
  const uint32_t pick[1] = {0};
  (void)state;
  fx_init(&f, 5);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].rate = 100 * (5 - i); /* 0, 1, 2 best */
  }
  script(pick, 1);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  assert_true(f.p[3].optimistic);
  f.p[3].rate = 10000;
  script(NULL, 0);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS + NODE_RECHOKE_MS, 1);
  /* 3 is among the best now: no longer optimistic; 2 fell out and is
   * choked; the free slot goes to the choked peer that waited longest. */
  assert_false(f.p[3].optimistic);
  expect_action(&f, 0, 2, 1);
  expect_action(&f, 1, 4, 0);
  assert_int_equal(f.nact, 2);
  assert_int_equal(count_unchoked(&f), NODE_UPLOAD_SLOTS);
}

static void test_the_optimistic_pick_may_be_a_peer_just_choked(void **state) {
  struct fx f;
  const uint32_t pick[1] = {0};
  (void)state;
  fx_init(&f, 5);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].choked = 0;
    f.p[i].rate = 10 * (i + 1); /* 4, 3, 2 best; 0 and 1 choked */
  }
  script(pick, 1);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  /* 0 is choked (its requests dropped), then unchoked again as the
   * optimistic peer: both actions, in that order. */
  assert_int_equal(f.nact, 3);
  expect_action(&f, 0, 0, 1);
  expect_action(&f, 1, 1, 1);
  expect_action(&f, 2, 0, 0);
  assert_true(f.p[0].optimistic);
}

static void test_a_rotation_with_nobody_choked_still_moves_on(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 3);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  /* Three candidates, all among the best: no pick is drawn. */
  assert_int_equal(g_nuppers, 0);
  assert_int_equal(f.c.last_optimistic_ms, T0 + NODE_OPTIMISTIC_MS);
  assert_int_equal(unchoked(&f), 0x7);
}

static void test_full_round_chokes_those_not_interested(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 4);
  run(&f, 0, T0, 0);
  assert_int_equal(unchoked(&f), 0x0f);
  f.p[2].interested = 0;
  /* Without the full round, a peer that is not interested keeps its
   * slot... */
  assert_int_equal(run(&f, 0, T0 + 1, 0), 0);
  /* ...and the full round chokes it first. */
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  expect_action(&f, 0, 2, 1);
  assert_true(f.p[2].choked);
  assert_int_equal(f.p[2].choked_at_ms, T0 + NODE_OPTIMISTIC_MS);
}

static void test_downloader_never_has_more_than_its_slots(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, MAXP);
  uint64_t t = T0;
  for (unsigned round = 0; round < 30; round++) {
    const uint32_t pick[1] = {round % 7};
    for (unsigned i = 0; i < f.n; i++) {
      f.p[i].rate = (i * 7919u + round * 104729u) % 1000u;
      f.p[i].interested = (i + round) % 5 != 0;
    }
    script(pick, 1);
    t += NODE_RECHOKE_MS;
    run(&f, 0, t, 1);
    unsigned regular = 0;
    for (unsigned i = 0; i < f.n; i++) {
      regular += !f.p[i].choked && f.p[i].interested;
    }
    assert_true(regular <= NODE_UPLOAD_SLOTS);
  }
}

/* ---------------------------------------------------------------------- */
/* Seeding */

static void
test_seeding_round_robin_while_everyone_holds_the_same(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 20);
  uint64_t t = T0;
  run(&f, 1, t, 1);
  /* The 16 that waited longest: 0..15. */
  assert_int_equal(unchoked(&f), 0x0ffff);
  t += NODE_SEED_RECHOKE_MS;
  run(&f, 1, t, 1);
  /* Choked peers first (16..19), then the unchoked served longest; all
   * were unchoked at once, so the first twelve in the list (0..11). The
   * four served last (12..15) are choked, in list order, before the new
   * ones are unchoked. */
  assert_int_equal(unchoked(&f), 0xf0fff);
  assert_int_equal(f.nact, 8);
  expect_action(&f, 0, 12, 1);
  expect_action(&f, 3, 15, 1);
  expect_action(&f, 4, 16, 0);
  expect_action(&f, 7, 19, 0);
  t += NODE_SEED_RECHOKE_MS;
  run(&f, 1, t, 1);
  /* 12..15, choked, come back first; among the unchoked, those served
   * longest (0..11, since T0) come before 16..19 (since T0 + 2 s), which
   * give way. */
  assert_int_equal(unchoked(&f), 0x0ffff);
}

static void test_seeding_serves_the_furthest_behind(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 18);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].have = 50;
  }
  f.p[0].have = 90; /* nearly done */
  f.p[1].have = 80;
  f.p[17].have = 1; /* just started */
  run(&f, 1, T0, 1);
  /* 16 slots for 18: the two that hold most wait. */
  assert_int_equal(unchoked(&f), 0x3fffc);
  /* Ties among the served: the one served longest comes first. */
  f.p[5].have = 1;
  run(&f, 1, T0 + NODE_SEED_RECHOKE_MS, 1);
  assert_int_equal(unchoked(&f), 0x3fffc);
}

static void test_seeding_ties_choked_before_unchoked(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 17);
  for (unsigned i = 0; i < 16; i++) {
    f.p[i].choked = 0;
    f.p[i].unchoked_at_ms = T0 - 100 + i;
  }
  f.p[16].choked_at_ms = T0 - 1; /* choked after all were unchoked */
  run(&f, 1, T0, 1);
  /* The choked one comes first among equals; the unchoked served longest
   * (0) stays before the one served last (15), which gives way. */
  assert_int_equal(f.nact, 2);
  expect_action(&f, 0, 15, 1);
  expect_action(&f, 1, 16, 0);
}

/* ---------------------------------------------------------------------- */
/* Client-server clients */

static void test_a_seeder_serves_every_client_server_client(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 24);
  for (unsigned i = 0; i < f.n; i++) {
    f.p[i].no_upload = 1;
  }
  f.p[23].interested = 0;
  /* Outside the slots, in every pass, full or not. */
  assert_int_equal(run(&f, 1, T0, 0), 23);
  for (unsigned k = 0; k < 23; k++) {
    expect_action(&f, k, k, 0);
  }
  assert_true(f.p[23].choked);
  assert_int_equal(run(&f, 1, T0 + NODE_SEED_RECHOKE_MS, 1), 0);
  /* They take no regular slot: a peer that uploads still gets one. */
  f.n = 25;
  f.p[24].interested = 1;
  f.p[24].choked = 1;
  run(&f, 1, T0 + 2 * NODE_SEED_RECHOKE_MS, 0);
  expect_action(&f, 0, 24, 0);
  /* A client that loses interest is choked at once, in any pass. */
  f.p[3].interested = 0;
  assert_int_equal(run(&f, 1, T0 + 2 * NODE_SEED_RECHOKE_MS + 1, 0), 1);
  expect_action(&f, 0, 3, 1);
}

static void test_a_downloader_chokes_client_server_clients(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 3);
  f.p[0].no_upload = 1;
  f.p[0].choked = 0; /* somehow unchoked: choked in any pass */
  assert_int_equal(run(&f, 0, T0, 0), 3);
  expect_action(&f, 0, 0, 1);
  /* The free slots skip it. */
  expect_action(&f, 1, 1, 0);
  expect_action(&f, 2, 2, 0);
  assert_true(f.p[0].choked);
  run(&f, 0, T0 + NODE_OPTIMISTIC_MS, 1);
  assert_true(f.p[0].choked);
  assert_int_equal(g_nuppers, 0);
}

static void test_a_source_not_seeding_serves_them_in_its_slots(void **state) {
  struct fx f;
  (void)state;
  fx_init(&f, 2);
  f.p[0].no_upload = 1;
  /* is_source: the first pass leaves the client alone; it is not a
   * candidate for the regular slots, and a downloader's free slots skip
   * it. */
  f.nact = choker_rechoke(&f.c, 0, 1, f.p, f.n, T0, 0, f.act);
  assert_int_equal(f.nact, 1);
  expect_action(&f, 0, 1, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rounds_are_due_every_10_s_and_2_s_seeding),
      cmocka_unit_test(test_only_a_full_round_moves_the_round_clock),
      cmocka_unit_test(test_nobody_interested_nothing_happens),
      cmocka_unit_test(test_free_slots_go_to_who_waited_longest),
      cmocka_unit_test(test_free_slot_ties_go_to_the_first_in_the_list),
      cmocka_unit_test(test_a_seeder_fills_16_slots_fewest_chunks_first),
      cmocka_unit_test(test_a_leaving_slot_is_given_again_at_once),
      cmocka_unit_test(test_tit_for_tat_keeps_the_three_best_senders),
      cmocka_unit_test(test_tit_for_tat_ties_go_to_the_first_in_the_list),
      cmocka_unit_test(test_optimistic_peer_stays_until_the_next_rotation),
      cmocka_unit_test(test_optimistic_peer_that_becomes_best_is_regular),
      cmocka_unit_test(test_the_optimistic_pick_may_be_a_peer_just_choked),
      cmocka_unit_test(test_a_rotation_with_nobody_choked_still_moves_on),
      cmocka_unit_test(test_full_round_chokes_those_not_interested),
      cmocka_unit_test(test_downloader_never_has_more_than_its_slots),
      cmocka_unit_test(test_seeding_round_robin_while_everyone_holds_the_same),
      cmocka_unit_test(test_seeding_serves_the_furthest_behind),
      cmocka_unit_test(test_seeding_ties_choked_before_unchoked),
      cmocka_unit_test(test_a_seeder_serves_every_client_server_client),
      cmocka_unit_test(test_a_downloader_chokes_client_server_clients),
      cmocka_unit_test(test_a_source_not_seeding_serves_them_in_its_slots),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
