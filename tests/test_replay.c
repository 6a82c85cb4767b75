/* Unit tests for common/replay.c: the per-sender sliding window, eviction
 * under memory pressure and the floor that keeps eviction from ever letting
 * a replay through.
 *
 * The tests call replay_guard_accept() with explicit timestamps and clock
 * values; nothing here reads the real clock. A few tests look inside struct
 * replay_guard (count, floor_ms, the slot table) because the header exposes
 * it and the properties they check (no lost entries, no phantom entries) are
 * not observable through accept() alone without changing the guard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/error.h"
#include "common/replay.h"
#include "tests/lib/testutil.h"

/* A distinct, deterministic public key for each small integer. */
static void make_pk(uint8_t pk[32], uint64_t n) {
  tu_fill(pk, 32, n + 1);
}

static int accept_n(struct replay_guard *g, uint64_t sender, uint64_t seq,
                    uint64_t ts, uint64_t now) {
  uint8_t pk[32];
  make_pk(pk, sender);
  return replay_guard_accept(g, pk, seq, ts, now);
}

static size_t occupied_slots(const struct replay_guard *g) {
  size_t n = 0;
  for (size_t i = 0; i <= g->mask; i++) {
    n += g->slots[i].fp != 0;
  }
  return n;
}

/* ---------------------------------------------------------------------- */
/* One sender's window. */

static void
test_first_message_is_accepted_and_its_repeat_is_a_replay(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 7, 100, 100), 0);
  assert_int_equal(accept_n(&g, 1, 7, 100, 100), SHOAL_EREPLAY);
  /* A replay stays a replay whatever timestamp it claims. */
  assert_int_equal(accept_n(&g, 1, 7, 900, 900), SHOAL_EREPLAY);
  assert_int_equal(g.count, 1);
  replay_guard_close(&g);
}

static void test_senders_have_independent_windows(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 7, 100, 100), 0);
  assert_int_equal(accept_n(&g, 2, 7, 100, 100), 0);
  assert_int_equal(accept_n(&g, 3, 7, 100, 100), 0);
  assert_int_equal(accept_n(&g, 2, 7, 100, 100), SHOAL_EREPLAY);
  assert_int_equal(g.count, 3);
  replay_guard_close(&g);
}

static void test_seq_zero_and_max_are_ordinary_numbers(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 0, 100, 100), 0);
  assert_int_equal(accept_n(&g, 1, 0, 100, 100), SHOAL_EREPLAY);
  assert_int_equal(accept_n(&g, 1, UINT64_MAX, 100, 100), 0);
  assert_int_equal(accept_n(&g, 1, UINT64_MAX, 100, 100), SHOAL_EREPLAY);
  assert_int_equal(accept_n(&g, 1, UINT64_MAX - 63, 100, 100), 0);
  assert_int_equal(accept_n(&g, 1, UINT64_MAX - 64, 100, 100), SHOAL_ESEQ);
  assert_int_equal(accept_n(&g, 1, 0, 100, 100), SHOAL_ESEQ);
  replay_guard_close(&g);
}

static void
test_out_of_order_inside_window_is_accepted_exactly_once(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 100, 10, 10), 0);
  /* Every number 1..63 below the mark is new and accepted, in any order. */
  for (uint64_t s = 37; s < 100; s += 2) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), 0);
  }
  for (uint64_t s = 38; s < 100; s += 2) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), 0);
  }
  for (uint64_t s = 37; s <= 100; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), SHOAL_EREPLAY);
  }
  replay_guard_close(&g);
}

static void test_seq_64_or_more_below_the_mark_is_ESEQ(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 1000, 10, 10), 0);
  /* hwm - 64 is the first number the 64-bit window cannot describe. */
  assert_int_equal(accept_n(&g, 1, 1000 - REPLAY_WINDOW, 10, 10), SHOAL_ESEQ);
  assert_int_equal(accept_n(&g, 1, 1000 - REPLAY_WINDOW - 1, 10, 10),
                   SHOAL_ESEQ);
  assert_int_equal(accept_n(&g, 1, 0, 10, 10), SHOAL_ESEQ);
  assert_int_equal(accept_n(&g, 1, 1000 - REPLAY_WINDOW + 1, 10, 10), 0);
  /* A refused number was not recorded: the window did not move. */
  assert_int_equal(accept_n(&g, 1, 1000 - 1, 10, 10), 0);
  replay_guard_close(&g);
}

static void test_window_slides_with_the_mark(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  for (uint64_t s = 1; s <= 10; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), 0);
  }
  /* Move the mark to 70: 7..10 are still remembered, 1..6 fell out. */
  assert_int_equal(accept_n(&g, 1, 70, 10, 10), 0);
  for (uint64_t s = 7; s <= 10; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), SHOAL_EREPLAY);
  }
  for (uint64_t s = 1; s <= 6; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), SHOAL_ESEQ);
  }
  for (uint64_t s = 11; s < 70; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), 0);
  }
  for (uint64_t s = 7; s <= 70; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), SHOAL_EREPLAY);
  }
  replay_guard_close(&g);
}

/* Fills a sender's window completely (1..64 accepted), then moves the mark
 * up by `jump`. */
static void fill_then_jump(struct replay_guard *g, uint64_t sender,
                           uint64_t jump) {
  for (uint64_t s = 1; s <= REPLAY_WINDOW; s++) {
    assert_int_equal(accept_n(g, sender, s, 10, 10), 0);
  }
  assert_int_equal(accept_n(g, sender, REPLAY_WINDOW + jump, 10, 10), 0);
}

static void test_jump_of_64_or_more_clears_the_bitmap(void **state) {
  static const uint64_t jumps[] = {64, 65, 100, 1u << 20, UINT64_MAX / 2};
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 8, 1000), 0);
  for (size_t k = 0; k < sizeof(jumps) / sizeof(jumps[0]); k++) {
    uint64_t mark = REPLAY_WINDOW + jumps[k];
    fill_then_jump(&g, k, jumps[k]);
    /* None of the 63 numbers below the new mark was ever accepted; a
     * bitmap that kept its old bits would call some of them replays. */
    for (uint64_t back = 1; back < REPLAY_WINDOW; back++) {
      assert_int_equal(accept_n(&g, k, mark - back, 10, 10), 0);
    }
    assert_int_equal(accept_n(&g, k, mark - REPLAY_WINDOW, 10, 10), SHOAL_ESEQ);
    assert_int_equal(accept_n(&g, k, mark, 10, 10), SHOAL_EREPLAY);
  }
  replay_guard_close(&g);
}

static void test_jump_of_63_keeps_the_top_of_the_old_window(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  fill_then_jump(&g, 1, REPLAY_WINDOW - 1);
  /* Old mark 64 is now 63 below the new mark 127: still a replay. */
  assert_int_equal(accept_n(&g, 1, REPLAY_WINDOW, 10, 10), SHOAL_EREPLAY);
  assert_int_equal(accept_n(&g, 1, REPLAY_WINDOW - 1, 10, 10), SHOAL_ESEQ);
  for (uint64_t s = REPLAY_WINDOW + 1; s < 2 * REPLAY_WINDOW - 1; s++) {
    assert_int_equal(accept_n(&g, 1, s, 10, 10), 0);
  }
  replay_guard_close(&g);
}

/* ---------------------------------------------------------------------- */
/* Sizes. */

static void test_invalid_sizes_are_EINVAL(void **state) {
  struct replay_guard g;
  (void)state;
  memset(&g, 0xa5, sizeof(g));
  assert_int_equal(replay_guard_init(&g, 0, 1000), SHOAL_EINVAL);
  assert_null(g.slots);
  replay_guard_close(&g); /* safe on a failed init */
  assert_int_equal(replay_guard_init(&g, (size_t)REPLAY_MAX_SENDERS + 1, 1000),
                   SHOAL_EINVAL);
  assert_null(g.slots);
  assert_int_equal(replay_guard_init(&g, SIZE_MAX, 1000), SHOAL_EINVAL);
  assert_null(g.slots);
  replay_guard_close(&g);
}

static void test_table_keeps_load_factor_at_most_three_quarters(void **state) {
  static const size_t sizes[] = {1, 2, 11, 12, 13, 24, 25, 1000, 4096};
  (void)state;
  for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
    struct replay_guard g;
    assert_int_equal(replay_guard_init(&g, sizes[k], 1000), 0);
    assert_true(sizes[k] * 4 <= g.max_size * 3);
    assert_int_equal(g.cap, sizes[k]);
    assert_int_equal(g.count, 0);
    assert_int_equal(occupied_slots(&g), 0);
    /* Filled to capacity, the grown table is still at most 3/4 full. */
    for (size_t i = 0; i < sizes[k]; i++) {
      uint8_t pk[32] = {0};
      pk[0] = (uint8_t)i;
      pk[1] = (uint8_t)(i >> 8);
      pk[2] = 0x77;
      assert_int_equal(replay_guard_accept(&g, pk, 1, 5000, 5000), 0);
    }
    size_t table = g.mask + 1;
    assert_int_equal(table & g.mask, 0); /* a power of two */
    assert_true(table <= g.max_size);
    assert_true(g.count * 4 <= table * 3);
    assert_int_equal(g.count, sizes[k]);
    assert_int_equal(occupied_slots(&g), sizes[k]);
    assert_int_equal(g.evictions, 0);
    replay_guard_close(&g);
  }
}

static void test_guard_of_one_sender_works(void **state) {
  struct replay_guard g;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 1, 100), 0);
  assert_int_equal(accept_n(&g, 1, 5, 1000, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 5, 1000, 1000), SHOAL_EREPLAY);
  /* Sender 1 is stale at 2000; sender 2 takes its place. */
  assert_int_equal(accept_n(&g, 2, 5, 2000, 2000), 0);
  assert_int_equal(g.count, 1);
  assert_int_equal(g.floor_ms, 0);
  assert_int_equal(accept_n(&g, 2, 5, 2000, 2000), SHOAL_EREPLAY);
  replay_guard_close(&g);
}

/* ---------------------------------------------------------------------- */
/* Capacity and eviction. */

static void test_senders_up_to_capacity_are_all_accepted(void **state) {
  struct replay_guard g;
  const size_t cap = 1000;
  (void)state;
  assert_int_equal(replay_guard_init(&g, cap, 60000), 0);
  for (size_t i = 0; i < cap; i++) {
    assert_int_equal(accept_n(&g, i, 1, 5000, 5000), 0);
  }
  assert_int_equal(g.count, cap);
  assert_int_equal(occupied_slots(&g), cap);
  assert_int_equal(g.evictions, 0);
  assert_int_equal(g.floor_ms, 0);
  for (size_t i = 0; i < cap; i++) {
    assert_int_equal(accept_n(&g, i, 1, 5000, 5000), SHOAL_EREPLAY);
  }
  replay_guard_close(&g);
}

static void test_stale_sender_is_evicted_before_live_ones(void **state) {
  struct replay_guard g;
  const uint64_t now = 10000;
  (void)state;
  /* Eight senders fit a 16-slot table, so the eviction sample sees them
   * all and the choice does not depend on where the sample starts. */
  assert_int_equal(replay_guard_init(&g, 8, 100), 0);
  for (uint64_t i = 0; i < 8; i++) {
    uint64_t ts = i == 3 ? now - 101 : now - 50 + i; /* only 3 is stale */
    assert_int_equal(accept_n(&g, i, 1, ts, ts), 0);
  }
  assert_int_equal(accept_n(&g, 100, 1, now, now), 0);
  assert_int_equal(g.count, 8);
  assert_int_equal(g.evictions, 1);
  assert_int_equal(g.floor_ms, 0);
  /* Everyone but the stale sender is still remembered. */
  for (uint64_t i = 0; i < 8; i++) {
    if (i != 3) {
      assert_int_equal(accept_n(&g, i, 1, now, now), SHOAL_EREPLAY);
    }
  }
  assert_int_equal(accept_n(&g, 100, 1, now, now), SHOAL_EREPLAY);
  replay_guard_close(&g);
}

static void test_full_of_live_senders_raises_the_floor(void **state) {
  struct replay_guard g;
  const uint64_t now = 5000;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  for (uint64_t i = 0; i < 4; i++) {
    assert_int_equal(accept_n(&g, i, 1, 4100 + 100 * i, now), 0);
  }
  /* All four are inside the window; the oldest (4100) goes and the floor
   * takes its timestamp. */
  assert_int_equal(accept_n(&g, 10, 1, now, now), 0);
  assert_int_equal(g.floor_ms, 4100);
  assert_int_equal(g.evictions, 1);
  assert_int_equal(g.count, 4);

  /* An unknown sender not above the floor is refused without evicting. */
  assert_int_equal(accept_n(&g, 11, 1, 4100, now), SHOAL_EGUARDFULL);
  assert_int_equal(accept_n(&g, 11, 1, 4000, now), SHOAL_EGUARDFULL);
  assert_int_equal(accept_n(&g, 11, 1, 0, now), SHOAL_EGUARDFULL);
  assert_int_equal(g.evictions, 1);
  assert_int_equal(g.count, 4);

  /* One above everything is accepted; the next oldest (4200) goes. */
  assert_int_equal(accept_n(&g, 11, 1, now, now), 0);
  assert_int_equal(g.floor_ms, 4200);
  assert_int_equal(g.count, 4);

  /* Known senders are not affected by the floor. */
  assert_int_equal(accept_n(&g, 3, 2, 4400, now), 0);
  replay_guard_close(&g);
}

static void test_evicted_live_sender_replay_is_never_accepted(void **state) {
  struct replay_guard g;
  const uint64_t now = 5000;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 4, 1000), 0);
  /* Sender 0 sends five messages, the others one each, all live. */
  for (uint64_t s = 1; s <= 5; s++) {
    assert_int_equal(accept_n(&g, 0, s, 4000 + s, now), 0);
  }
  for (uint64_t i = 1; i < 4; i++) {
    assert_int_equal(accept_n(&g, i, 1, 4500, now), 0);
  }
  assert_int_equal(accept_n(&g, 10, 1, now, now), 0); /* evicts sender 0 */
  assert_int_equal(g.floor_ms, 4005);
  /* Every message sender 0 ever sent comes back refused, never accepted,
   * and refusing it does not evict anybody else. */
  for (uint64_t s = 1; s <= 5; s++) {
    assert_int_equal(accept_n(&g, 0, s, 4000 + s, now), SHOAL_EGUARDFULL);
  }
  assert_int_equal(g.evictions, 1);
  /* More churn only raises the floor further: still refused. */
  for (uint64_t i = 20; i < 30; i++) {
    assert_int_equal(accept_n(&g, i, 1, now + i, now), 0);
    for (uint64_t s = 1; s <= 5; s++) {
      assert_int_not_equal(accept_n(&g, 0, s, 4000 + s, now), 0);
    }
  }
  replay_guard_close(&g);
}

/* A live sender that was forgotten and comes back starts a new window with
 * nothing below its mark. Its older numbers must not be taken as new: they
 * are judged like an unknown sender's, against the floor. A genuinely
 * delayed message newer than the floor is still accepted. */
static void
test_returning_sender_cannot_replay_numbers_below_its_new_mark(void **state) {
  struct replay_guard g;
  const uint64_t now = 5000;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 2, 1000), 0);
  /* Sender 0 sends 1, 2 and 4; number 3 (timestamp 4950) is delayed. */
  assert_int_equal(accept_n(&g, 0, 1, 4500, now), 0);
  assert_int_equal(accept_n(&g, 0, 2, 4600, now), 0);
  assert_int_equal(accept_n(&g, 0, 4, 4650, now), 0);
  assert_int_equal(accept_n(&g, 1, 1, 4700, now), 0);
  assert_int_equal(accept_n(&g, 2, 1, 4800, now), 0); /* forgets sender 0 */
  assert_int_equal(g.floor_ms, 4650);
  /* Sender 0 comes back with number 5; sender 1 is forgotten for it. */
  assert_int_equal(accept_n(&g, 0, 5, 4960, now), 0);
  assert_int_equal(g.floor_ms, 4700);
  /* Its old messages are refused, not accepted as out of order. */
  assert_int_equal(accept_n(&g, 0, 1, 4500, now), SHOAL_EGUARDFULL);
  assert_int_equal(accept_n(&g, 0, 2, 4600, now), SHOAL_EGUARDFULL);
  assert_int_equal(accept_n(&g, 0, 4, 4650, now), SHOAL_EGUARDFULL);
  /* The delayed number 3 is newer than the floor: accepted, once. */
  assert_int_equal(accept_n(&g, 0, 3, 4950, now), 0);
  assert_int_equal(accept_n(&g, 0, 3, 4950, now), SHOAL_EREPLAY);
  assert_int_equal(accept_n(&g, 0, 5, 4960, now), SHOAL_EREPLAY);
  replay_guard_close(&g);
}

/* A message timestamped exactly now - window still passes the envelope's
 * clock check (stale means now - ts > window). A sender whose last message
 * sits exactly on that edge is therefore live: forgetting it must raise the
 * floor, or its message could be replayed into the empty slot at once. */
static void test_sender_exactly_at_window_edge_counts_as_live(void **state) {
  struct replay_guard g;
  const uint64_t window = 100;
  (void)state;
  assert_int_equal(replay_guard_init(&g, 2, window), 0);
  assert_int_equal(accept_n(&g, 0, 1, 1000, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 1, 1000, 1000), 0);
  assert_int_equal(accept_n(&g, 2, 1, 1100, 1100), 0);
  assert_int_equal(g.floor_ms, 1000);
  /* Replaying both old messages at the same instant: the one still held is
   * a replay, the evicted one is refused by the floor. Neither is 0. */
  int r0 = accept_n(&g, 0, 1, 1000, 1000 + window);
  int r1 = accept_n(&g, 1, 1, 1000, 1000 + window);
  assert_int_not_equal(r0, 0);
  assert_int_not_equal(r1, 0);
  assert_true((r0 == SHOAL_EREPLAY && r1 == SHOAL_EGUARDFULL) ||
              (r0 == SHOAL_EGUARDFULL && r1 == SHOAL_EREPLAY));
  replay_guard_close(&g);

  /* One millisecond past the edge a sender is stale and may go quietly. */
  assert_int_equal(replay_guard_init(&g, 2, window), 0);
  assert_int_equal(accept_n(&g, 0, 1, 1000, 1000), 0);
  assert_int_equal(accept_n(&g, 1, 1, 1050, 1050), 0);
  assert_int_equal(accept_n(&g, 2, 1, 1101, 1101), 0);
  assert_int_equal(g.floor_ms, 0);
  replay_guard_close(&g);
}

static void test_early_clock_never_counts_a_sender_as_stale(void **state) {
  struct replay_guard g;
  (void)state;
  /* now < window: nothing can be older than the window yet. */
  assert_int_equal(replay_guard_init(&g, 1, 1000), 0);
  assert_int_equal(accept_n(&g, 0, 1, 10, 10), 0);
  assert_int_equal(accept_n(&g, 1, 1, 500, 500), 0);
  assert_int_equal(g.floor_ms, 10);
  assert_int_equal(accept_n(&g, 0, 1, 10, 500), SHOAL_EGUARDFULL);
  replay_guard_close(&g);
}

/* ---------------------------------------------------------------------- */
/* Stress: random churn through a small guard, checking the table against a
 * model of what was sent. */

#define STRESS_CAP 1000
#define STRESS_OPS 240000
#define STRESS_HISTORY 256

struct fp_entry {
  uint64_t fp;
  uint32_t idx;
};

struct sent {
  uint32_t idx;
  uint64_t seq;
  uint64_t ts;
};

struct stress {
  struct replay_guard g;
  size_t pool;
  uint8_t (*pks)[32];
  uint64_t *next_seq;     /* next sequence number each sender will use */
  uint64_t *accepted_hwm; /* highest sequence number accepted, 0 = none */
  struct fp_entry *fps;   /* sorted by fp */
  struct sent history[STRESS_HISTORY]; /* recently accepted messages */
  size_t history_len;
  size_t history_next;
  uint64_t rng;
  /* What the run did, so the test can check it did what it is meant to. */
  size_t fresh; /* senders [0, fresh) have sent something */
  uint64_t refused_full;
  uint64_t replays_tried;
};

/* The guard's fingerprint, recomputed from its key: lets the check map a
 * slot back to the sender that owns it without calling accept(). */
static uint64_t guard_fp(const struct replay_guard *g, const uint8_t pk[32]) {
  uint8_t h[crypto_shorthash_BYTES];
  uint64_t fp = 0;
  crypto_shorthash(h, pk, 32, g->key);
  for (size_t i = 0; i < sizeof(h); i++) {
    fp = fp << 8 | h[i];
  }
  return fp == 0 ? 1 : fp;
}

static int fp_cmp(const void *a, const void *b) {
  const struct fp_entry *x = a;
  const struct fp_entry *y = b;
  return x->fp < y->fp ? -1 : x->fp > y->fp;
}

static const struct fp_entry *fp_find(const struct stress *st, uint64_t fp) {
  struct fp_entry key = {fp, 0};
  return bsearch(&key, st->fps, st->pool, sizeof(key), fp_cmp);
}

/* The table's invariants: count matches the occupied slots; each entry is
 * reachable from its home slot without crossing an empty one; no sender is
 * stored twice; each entry belongs to a sender that was accepted and holds
 * that sender's highest accepted number; and looking it up through the
 * public call finds it (its mark again is a replay) without changing it. */
static void stress_check(struct stress *st, uint64_t now) {
  struct replay_guard *g = &st->g;
  size_t used = 0;

  for (size_t i = 0; i <= g->mask; i++) {
    struct replay_slot slot = g->slots[i];
    if (slot.fp == 0) {
      continue;
    }
    used++;
    for (size_t j = slot.fp & g->mask; j != i; j = (j + 1) & g->mask) {
      assert_int_not_equal(g->slots[j].fp, 0);
      assert_int_not_equal(g->slots[j].fp, slot.fp);
    }
    const struct fp_entry *e = fp_find(st, slot.fp);
    assert_non_null(e);
    assert_int_not_equal(st->accepted_hwm[e->idx], 0);
    assert_int_equal(slot.hwm, st->accepted_hwm[e->idx]);
    assert_int_equal(
        replay_guard_accept(g, st->pks[e->idx], slot.hwm, slot.last_ms, now),
        SHOAL_EREPLAY);
    assert_memory_equal(&g->slots[i], &slot, sizeof(slot));
  }
  assert_int_equal(used, g->count);
  assert_true(g->count <= g->cap);
}

/* One new message: half the time from a sender never seen before (while the
 * pool lasts), else from one seen before; timestamped anywhere inside the
 * clock window, mostly in the past, sometimes ahead. */
static void stress_send(struct stress *st, uint64_t window, uint64_t now) {
  uint64_t r = tu_rand(&st->rng);
  uint32_t idx;
  if (st->fresh < st->pool && (st->fresh == 0 || r % 2 == 0)) {
    idx = (uint32_t)st->fresh++;
  } else {
    idx = (uint32_t)(tu_rand(&st->rng) % st->fresh);
  }
  uint64_t skew = tu_rand(&st->rng) % (window + 1);
  uint64_t ts = r % 16 < 2 ? now + skew : now - skew;
  uint64_t seq = st->next_seq[idx]++;
  int err = replay_guard_accept(&st->g, st->pks[idx], seq, ts, now);
  if (err == SHOAL_EGUARDFULL) {
    st->refused_full++;
    return;
  }
  assert_int_equal(err, 0);
  st->accepted_hwm[idx] = seq;
  struct sent *h = &st->history[st->history_next++ % STRESS_HISTORY];
  h->idx = idx;
  h->seq = seq;
  h->ts = ts;
  if (st->history_len < STRESS_HISTORY) {
    st->history_len++;
  }
}

/* Replays a recently accepted message. If the clock check would still pass
 * it, the guard must refuse it, whatever it forgot in between. */
static void stress_replay(struct stress *st, uint64_t window, uint64_t now) {
  const struct sent *h = &st->history[tu_rand(&st->rng) % st->history_len];
  uint64_t age = now > h->ts ? now - h->ts : h->ts - now;
  if (age <= window) {
    st->replays_tried++;
    assert_int_not_equal(
        replay_guard_accept(&st->g, st->pks[h->idx], h->seq, h->ts, now), 0);
  }
}

/* Runs STRESS_OPS random operations, one a millisecond, through a guard of
 * STRESS_CAP senders with the given clock window and a pool of senders;
 * checks the table every 1000 operations. */
static struct stress *stress_run(uint64_t window, size_t pool, uint64_t seed) {
  struct stress *st = calloc(1, sizeof(*st));
  uint64_t now = 10000000;

  assert_non_null(st);
  st->pool = pool;
  st->pks = calloc(pool, sizeof(*st->pks));
  st->next_seq = calloc(pool, sizeof(*st->next_seq));
  st->accepted_hwm = calloc(pool, sizeof(*st->accepted_hwm));
  st->fps = calloc(pool, sizeof(*st->fps));
  assert_non_null(st->pks);
  assert_non_null(st->next_seq);
  assert_non_null(st->accepted_hwm);
  assert_non_null(st->fps);
  st->rng = seed;

  assert_int_equal(replay_guard_init(&st->g, STRESS_CAP, window), 0);
  for (uint32_t i = 0; i < pool; i++) {
    make_pk(st->pks[i], seed << 32 | i);
    st->next_seq[i] = 1;
    st->fps[i].fp = guard_fp(&st->g, st->pks[i]);
    st->fps[i].idx = i;
  }
  qsort(st->fps, pool, sizeof(*st->fps), fp_cmp);
  for (size_t i = 1; i < pool; i++) {
    assert_int_not_equal(st->fps[i - 1].fp, st->fps[i].fp);
  }

  for (uint64_t op = 0; op < STRESS_OPS; op++) {
    now += 1;
    if (tu_rand(&st->rng) % 8 == 0 && st->history_len > 0) {
      stress_replay(st, window, now);
    } else {
      stress_send(st, window, now);
    }
    if (op % 1000 == 999) {
      stress_check(st, now);
    }
  }
  stress_check(st, now);
  return st;
}

static void stress_free(struct stress *st) {
  replay_guard_close(&st->g);
  free(st->pks);
  free(st->next_seq);
  free(st->accepted_hwm);
  free(st->fps);
  free(st);
}

/* 100k distinct senders pass through a guard of 1000 with a 500 ms window:
 * most evicted senders are already stale, so the floor seldom matters. */
static void
test_stress_100k_senders_through_1000_slots_stay_consistent(void **state) {
  (void)state;
  struct stress *st = stress_run(500, 100000, 1);
  assert_int_equal(st->fresh, 100000);
  assert_true(st->g.evictions >= 100000 - STRESS_CAP);
  assert_true(st->refused_full < STRESS_OPS / 100);
  assert_true(st->replays_tried > STRESS_OPS / 20);
  stress_free(st);
}

/* A 20 s window and a pool of 3000 senders that keep coming back: every
 * stored sender is live, each eviction raises the floor, many messages are
 * refused, and forgotten senders return. No replay may get through (in
 * particular none of a returning sender's older numbers) and the table
 * stays consistent. Several seeds, because the guard's own key and
 * eviction sample are random. */
static void
test_stress_live_evictions_and_returning_senders_never_replay(void **state) {
  (void)state;
  for (uint64_t seed = 2; seed < 6; seed++) {
    struct stress *st = stress_run(20000, 3000, seed);
    assert_true(st->g.evictions > STRESS_OPS / 20);
    assert_true(st->refused_full > STRESS_OPS / 10);
    assert_true(st->replays_tried > STRESS_OPS / 20);
    stress_free(st);
  }
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_first_message_is_accepted_and_its_repeat_is_a_replay),
      cmocka_unit_test(test_senders_have_independent_windows),
      cmocka_unit_test(test_seq_zero_and_max_are_ordinary_numbers),
      cmocka_unit_test(
          test_out_of_order_inside_window_is_accepted_exactly_once),
      cmocka_unit_test(test_seq_64_or_more_below_the_mark_is_ESEQ),
      cmocka_unit_test(test_window_slides_with_the_mark),
      cmocka_unit_test(test_jump_of_64_or_more_clears_the_bitmap),
      cmocka_unit_test(test_jump_of_63_keeps_the_top_of_the_old_window),
      cmocka_unit_test(test_invalid_sizes_are_EINVAL),
      cmocka_unit_test(test_table_keeps_load_factor_at_most_three_quarters),
      cmocka_unit_test(test_guard_of_one_sender_works),
      cmocka_unit_test(test_senders_up_to_capacity_are_all_accepted),
      cmocka_unit_test(test_stale_sender_is_evicted_before_live_ones),
      cmocka_unit_test(test_full_of_live_senders_raises_the_floor),
      cmocka_unit_test(test_evicted_live_sender_replay_is_never_accepted),
      cmocka_unit_test(
          test_returning_sender_cannot_replay_numbers_below_its_new_mark),
      cmocka_unit_test(test_sender_exactly_at_window_edge_counts_as_live),
      cmocka_unit_test(test_early_clock_never_counts_a_sender_as_stale),
      cmocka_unit_test(
          test_stress_100k_senders_through_1000_slots_stay_consistent),
      cmocka_unit_test(
          test_stress_live_evictions_and_returning_senders_never_replay),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
