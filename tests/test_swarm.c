/* Unit tests for peer/swarm.c's state machine: which state a swarm may go
 * to from which, and that swarm_set_state, the one function that changes
 * a swarm's state, logs each move.
 *
 * The table is written out here a second time, from the life of a swarm
 * in docs/design.md ("Swarm states"), and every pair of states is checked
 * against it: each move the swarm makes is allowed, every other one is
 * refused. No sockets and no loop: the swarm is a plain zeroed struct.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"
#include "peer/internal.h"
#include "tests/lib/testutil.h"

/* expected[from][to]: 1 where a swarm may go. */
static const int expected[SW_NSTATES][SW_NSTATES] = {
    /*               new fetch open run  fin  seed fail stop remove */
    [SW_NEW] = {0, 1, 0, 0, 0, 1, 1, 1, 1},
    [SW_FETCHING] = {0, 0, 1, 0, 0, 0, 1, 1, 1},
    [SW_OPENING] = {0, 0, 0, 1, 0, 1, 1, 1, 1}, /* seed: a whole copy */
    [SW_RUNNING] = {0, 0, 0, 0, 1, 0, 1, 1, 1},
    [SW_FINISHING] = {0, 0, 0, 0, 0, 1, 1, 1, 1},
    [SW_SEEDING] = {0, 0, 0, 0, 0, 0, 1, 1, 1},
    [SW_FAILED] = {0, 0, 0, 0, 0, 0, 0, 0, 1},
    [SW_STOPPING] = {0, 0, 0, 0, 0, 0, 0, 0, 0},
    [SW_REMOVING] = {0, 0, 0, 0, 0, 0, 0, 0, 0},
};

static void test_every_move_is_allowed_or_refused_by_the_table(void **st) {
  (void)st;
  for (int from = 0; from < SW_NSTATES; from++) {
    for (int to = 0; to < SW_NSTATES; to++) {
      if (swarm_state_allowed((enum swarm_state)from, (enum swarm_state)to) !=
          expected[from][to]) {
        fail_msg("%s -> %s: %s", swarm_state_name((enum swarm_state)from),
                 swarm_state_name((enum swarm_state)to),
                 expected[from][to] ? "refused, want allowed"
                                    : "allowed, want refused");
      }
    }
  }
}

static void test_no_state_moves_to_itself(void **st) {
  (void)st;
  for (int s = 0; s < SW_NSTATES; s++) {
    assert_false(swarm_state_allowed((enum swarm_state)s, (enum swarm_state)s));
  }
}

static void test_the_ends_are_stopping_and_removing(void **st) {
  (void)st;
  for (int s = 0; s < SW_NSTATES; s++) {
    int end = s == SW_STOPPING || s == SW_REMOVING;
    int live = !end && s != SW_FAILED;
    int any = 0;
    for (int to = 0; to < SW_NSTATES; to++) {
      any |= swarm_state_allowed((enum swarm_state)s, (enum swarm_state)to);
    }
    assert_int_equal(any, !end);
    /* Every live state may fail, stop or be removed. */
    if (live) {
      assert_true(swarm_state_allowed((enum swarm_state)s, SW_FAILED));
      assert_true(swarm_state_allowed((enum swarm_state)s, SW_STOPPING));
      assert_true(swarm_state_allowed((enum swarm_state)s, SW_REMOVING));
    }
  }
  /* A failed swarm stays listed until it is removed, and goes nowhere
   * else. */
  for (int to = 0; to < SW_NSTATES; to++) {
    assert_int_equal(swarm_state_allowed(SW_FAILED, (enum swarm_state)to),
                     to == SW_REMOVING);
  }
}

static void test_states_out_of_range_are_refused(void **st) {
  (void)st;
  assert_false(swarm_state_allowed(SW_NEW, (enum swarm_state)SW_NSTATES));
  assert_false(swarm_state_allowed((enum swarm_state)SW_NSTATES, SW_FAILED));
  assert_false(swarm_state_allowed((enum swarm_state) - 1, SW_FAILED));
  assert_string_equal(swarm_state_name((enum swarm_state)SW_NSTATES), "?");
}

static void test_names_are_distinct(void **st) {
  (void)st;
  for (int a = 0; a < SW_NSTATES; a++) {
    assert_string_not_equal(swarm_state_name((enum swarm_state)a), "?");
    for (int b = a + 1; b < SW_NSTATES; b++) {
      assert_string_not_equal(swarm_state_name((enum swarm_state)a),
                              swarm_state_name((enum swarm_state)b));
    }
  }
}

/* The lives a swarm leads, each move through swarm_set_state, logged. */
static void test_set_state_walks_a_get_and_a_share_and_logs(void **st) {
  char dir[4096], path[4200];
  struct swarm *sw = calloc(1, sizeof(*sw));
  (void)st;
  assert_non_null(sw);
  tu_tmpdir(dir, sizeof(dir));
  tu_path(path, sizeof(path), dir, "log");
  assert_int_equal(log_open(path), 0);
  log_set_level(LOG_DEBUG);

  snprintf(sw->name, sizeof(sw->name), "photos");
  assert_int_equal(sw->state, SW_NEW); /* a fresh swarm, as calloc makes it */
  const enum swarm_state get[] = {SW_FETCHING,  SW_OPENING, SW_RUNNING,
                                  SW_FINISHING, SW_SEEDING, SW_STOPPING};
  for (size_t i = 0; i < sizeof(get) / sizeof(get[0]); i++) {
    swarm_set_state(sw, get[i]);
    assert_int_equal(sw->state, get[i]);
  }
  /* A get whose folder already held the whole content seeds it. */
  memset(sw, 0, sizeof(*sw));
  snprintf(sw->name, sizeof(sw->name), "again");
  swarm_set_state(sw, SW_FETCHING);
  swarm_set_state(sw, SW_OPENING);
  swarm_set_state(sw, SW_SEEDING);
  assert_int_equal(sw->state, SW_SEEDING);
  memset(sw, 0, sizeof(*sw));
  snprintf(sw->name, sizeof(sw->name), "docs");
  swarm_set_state(sw, SW_SEEDING);
  swarm_set_state(sw, SW_FAILED);
  assert_int_equal(sw->state, SW_FAILED);
  swarm_set_state(sw, SW_REMOVING);
  assert_int_equal(sw->state, SW_REMOVING);
  memset(sw, 0, sizeof(*sw));
  snprintf(sw->name, sizeof(sw->name), "music");
  swarm_set_state(sw, SW_FETCHING);
  swarm_set_state(sw, SW_REMOVING);

  log_close();
  log_set_level(LOG_INFO);
  size_t len = 0;
  char *text = (char *)tu_read_file(path, &len);
  assert_non_null(text);
  text = realloc(text, len + 1);
  assert_non_null(text);
  text[len] = '\0';
  assert_non_null(strstr(text, "swarm photos: new -> fetching"));
  assert_non_null(strstr(text, "swarm photos: running -> finishing"));
  assert_non_null(strstr(text, "swarm photos: seeding -> stopping"));
  assert_non_null(strstr(text, "swarm again: opening -> seeding"));
  assert_non_null(strstr(text, "swarm docs: new -> seeding"));
  assert_non_null(strstr(text, "swarm docs: seeding -> failed"));
  assert_non_null(strstr(text, "swarm docs: failed -> removing"));
  assert_non_null(strstr(text, "swarm music: fetching -> removing"));
  free(text);
  free(sw);
  tu_rmtree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_move_is_allowed_or_refused_by_the_table),
      cmocka_unit_test(test_no_state_moves_to_itself),
      cmocka_unit_test(test_the_ends_are_stopping_and_removing),
      cmocka_unit_test(test_states_out_of_range_are_refused),
      cmocka_unit_test(test_names_are_distinct),
      cmocka_unit_test(test_set_state_walks_a_get_and_a_share_and_logs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
