/* The pace of a tracker client's requests (tracker_pace.h). */
#include "peer/tracker_pace.h"

#include <string.h>

void tracker_pace_init(struct tracker_pace *p, unsigned per_s, unsigned burst) {
  memset(p, 0, sizeof(*p));
  rate_init(&p->bucket, per_s, 0);
  if (per_s == 0) {
    return;
  }
  /* rate.h sizes a burst for bytes (a quarter second, 256 KiB at least);
   * a bucket of requests is given its own, and starts full (see the top of
   * tracker_pace.h). Its clock starts at the first take, as rate.h's do. */
  p->bucket.burst = burst != 0 ? burst : 1;
  p->bucket.tokens = (double)p->bucket.burst;
}

int tracker_pace_held(const struct tracker_pace *p, uint64_t now_ms) {
  return now_ms < p->hold_until;
}

int tracker_pace_take(struct tracker_pace *p, uint64_t now_ms) {
  if (tracker_pace_held(p, now_ms)) {
    return 0;
  }
  return rate_take(&p->bucket, 1, now_ms);
}

uint64_t tracker_pace_wait_ms(const struct tracker_pace *p, uint64_t now_ms) {
  uint64_t wait = rate_wait_ms(&p->bucket, 1, now_ms);
  if (tracker_pace_held(p, now_ms) && p->hold_until - now_ms > wait) {
    wait = p->hold_until - now_ms;
  }
  return wait;
}

void tracker_pace_hold(struct tracker_pace *p, uint64_t now_ms, uint32_t ms) {
  uint64_t until = now_ms + ms;
  if (ms == 0 || until <= p->hold_until) {
    return;
  }
  p->hold_until = until;
  if (rate_unlimited(&p->bucket)) {
    return;
  }
  /* One request for the moment the wait ends, and nothing earned before
   * it: a refill at a time before last_ms earns nothing (rate.h). */
  p->bucket.started = 1;
  p->bucket.last_ms = until;
  p->bucket.tokens = 1.0;
  p->bucket.milli = 0;
}
