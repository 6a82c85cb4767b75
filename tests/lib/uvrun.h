/* A libuv loop for in-process tests, with a deadline on every wait.
 *
 * A test runs the loop until a condition holds or the deadline passes
 * (UVRUN_UNTIL), then asserts the condition; uvrun_close runs the loop
 * until nothing is left and closes it, reporting what was not closed.
 */
#ifndef SHOAL_TEST_UVRUN_H
#define SHOAL_TEST_UVRUN_H

#include <uv.h>

struct uvrun {
  uv_loop_t loop;
  uv_timer_t deadline;
  int expired;
};

/* Opens r's loop and its deadline timer. Returns 0 or a libuv error. */
int uvrun_init(struct uvrun *r);
/* Arms the deadline ms from now (r->expired clears). */
void uvrun_deadline(struct uvrun *r, unsigned ms);
/* Runs the loop for ms whatever happens. */
void uvrun_for(struct uvrun *r, unsigned ms);
/* Runs the loop until every handle but the deadline is closed (ms at
 * most), closes whatever is left with a message, and closes the loop.
 * Returns 0, or -1 when the loop did not finish or could not close. */
int uvrun_close(struct uvrun *r, unsigned ms);

/* Runs r's loop until cond holds or ms pass; the caller asserts cond. */
#define UVRUN_UNTIL(r, cond, ms)                                               \
  do {                                                                         \
    uvrun_deadline((r), (ms));                                                 \
    while (!(cond) && !(r)->expired) {                                         \
      uv_run(&(r)->loop, UV_RUN_ONCE);                                         \
    }                                                                          \
    uv_timer_stop(&(r)->deadline);                                             \
  } while (0)

#endif
