/* Unit tests for peer/session.c's state machine: which state a session may
 * go to from which (session_set_state, the one function that changes it,
 * checks each move against this table and logs it).
 *
 * The table is written out here a second time, from docs/design.md ("A
 * session's life"), and every pair of states is checked against it. No
 * sockets: the table is plain data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "peer/internal.h"

/* expected[from][to]: 1 where a session may go. */
static const int expected[SESS_NSTATES][SESS_NSTATES] = {
    /*                    connecting hello open closing */
    [SESS_CONNECTING] = {0, 1, 0, 1},
    [SESS_HELLO_WAIT] = {0, 0, 1, 1},
    [SESS_OPEN] = {0, 0, 0, 1},
    [SESS_CLOSING] = {0, 0, 0, 0},
};

static void test_every_move_is_allowed_or_refused_by_the_table(void **st) {
  (void)st;
  for (int from = 0; from < SESS_NSTATES; from++) {
    for (int to = 0; to < SESS_NSTATES; to++) {
      if (session_state_allowed((enum session_state)from,
                                (enum session_state)to) != expected[from][to]) {
        fail_msg("%s -> %s: %s", session_state_name((enum session_state)from),
                 session_state_name((enum session_state)to),
                 expected[from][to] ? "refused, want allowed"
                                    : "allowed, want refused");
      }
    }
  }
}

static void test_a_session_only_moves_forward(void **st) {
  (void)st;
  for (int from = 0; from < SESS_NSTATES; from++) {
    for (int to = 0; to <= from; to++) {
      assert_false(session_state_allowed((enum session_state)from,
                                         (enum session_state)to));
    }
  }
}

static void test_every_state_but_closing_may_close(void **st) {
  (void)st;
  for (int s = 0; s < SESS_CLOSING; s++) {
    assert_true(session_state_allowed((enum session_state)s, SESS_CLOSING));
  }
  for (int to = 0; to < SESS_NSTATES; to++) {
    assert_false(session_state_allowed(SESS_CLOSING, (enum session_state)to));
  }
}

static void test_out_of_range_and_names(void **st) {
  (void)st;
  assert_false(
      session_state_allowed(SESS_OPEN, (enum session_state)SESS_NSTATES));
  assert_false(
      session_state_allowed((enum session_state)SESS_NSTATES, SESS_CLOSING));
  assert_string_equal(session_state_name(SESS_CONNECTING), "connecting");
  assert_string_equal(session_state_name(SESS_HELLO_WAIT), "hello_wait");
  assert_string_equal(session_state_name(SESS_OPEN), "open");
  assert_string_equal(session_state_name(SESS_CLOSING), "closing");
  assert_string_equal(session_state_name((enum session_state)SESS_NSTATES),
                      "?");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_move_is_allowed_or_refused_by_the_table),
      cmocka_unit_test(test_a_session_only_moves_forward),
      cmocka_unit_test(test_every_state_but_closing_may_close),
      cmocka_unit_test(test_out_of_range_and_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
