/* The tests' loop with a deadline (see uvrun.h). */
#include "tests/lib/uvrun.h"

#include <stdio.h>

static void on_deadline(uv_timer_t *h) {
  struct uvrun *r = h->data;
  r->expired = 1;
}

int uvrun_init(struct uvrun *r) {
  int err = uv_loop_init(&r->loop);
  if (err != 0) {
    return err;
  }
  uv_timer_init(&r->loop, &r->deadline);
  r->deadline.data = r;
  r->expired = 0;
  return 0;
}

void uvrun_deadline(struct uvrun *r, unsigned ms) {
  r->expired = 0;
  uv_timer_start(&r->deadline, on_deadline, ms, 0);
}

void uvrun_for(struct uvrun *r, unsigned ms) {
  uvrun_deadline(r, ms);
  while (!r->expired) {
    uv_run(&r->loop, UV_RUN_ONCE);
  }
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) {
    fprintf(stderr, "uvrun: handle of type %d still open\n", (int)h->type);
    uv_close(h, NULL);
  }
}

int uvrun_close(struct uvrun *r, unsigned ms) {
  int rc = 0;
  uvrun_deadline(r, ms);
  /* The deadline alone does not keep the loop running. */
  uv_unref((uv_handle_t *)&r->deadline);
  while (uv_run(&r->loop, UV_RUN_ONCE) != 0 && !r->expired) {
  }
  if (r->expired) {
    fprintf(stderr, "uvrun: the loop did not finish\n");
    rc = -1;
  }
  uv_close((uv_handle_t *)&r->deadline, NULL);
  uv_walk(&r->loop, close_walk, NULL);
  for (int i = 0; i < 100 && uv_run(&r->loop, UV_RUN_NOWAIT) != 0; i++) {
  }
  if (uv_loop_close(&r->loop) != 0) {
    fprintf(stderr, "uvrun: uv_loop_close failed\n");
    rc = -1;
  }
  return rc;
}
