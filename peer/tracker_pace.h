/* The pace of one tracker client's requests: how many it may send now,
 * and when the next may go.
 *
 * A tracker limits the requests of each source address with a token
 * bucket and, when a client goes on sending past a refusal, closes the
 * connection (docs/protocol.md, "Rate limit"). A shared tracker client
 * carries the requests of every swarm of a node over that one connection,
 * so a refusal there fails them all at once. The client therefore keeps a
 * bucket of its own, below the tracker's, and holds requests in its queue
 * rather than send past it; and when the tracker answers with a retry-after
 * anyway (its limit is lower than ours, or other clients at our address
 * spend it), nothing more goes until that time has passed.
 *
 * The bucket is rate.h's, counting requests instead of bytes. It starts
 * full, as the tracker's bucket for a source it has not seen does, so a
 * node that starts with a few contents is not slowed at all. After a
 * retry-after it holds one request for the moment the wait ends (when the
 * tracker's own bucket holds one token again) and refills at the rate from
 * there, so the client does not answer a refusal with a burst.
 *
 * Pure arithmetic over a millisecond clock the caller passes (uv_now()):
 * tests/test_pace.c drives it with a clock of its own.
 */
#ifndef SHOAL_PEER_TRACKER_PACE_H
#define SHOAL_PEER_TRACKER_PACE_H

#include <stdint.h>

#include "peer/rate.h"

/* The caller owns it (embed it anywhere). */
struct tracker_pace {
  struct rate_bucket bucket; /* one token a request */
  uint64_t hold_until;       /* the tracker's retry-after: nothing before */
};

/* Sets up a full bucket of burst requests that refills at per_s requests a
 * second; per_s 0 means no limit but the tracker's retry-after. burst 0 is
 * taken as 1. */
void tracker_pace_init(struct tracker_pace *p, unsigned per_s, unsigned burst);
/* Takes one request's token at now_ms and returns 1 when a request may go
 * now; otherwise changes nothing but the refill and returns 0. */
int tracker_pace_take(struct tracker_pace *p, uint64_t now_ms);
/* Milliseconds from now_ms until tracker_pace_take would succeed (0: now).
 * p is not changed. */
uint64_t tracker_pace_wait_ms(const struct tracker_pace *p, uint64_t now_ms);
/* The tracker said to wait ms from now_ms: nothing goes before then (a
 * later hold already set is kept), and the bucket holds one request for
 * that moment and refills at its rate from there. ms 0 changes nothing. */
void tracker_pace_hold(struct tracker_pace *p, uint64_t now_ms, uint32_t ms);
/* Whether a retry-after holds everything at now_ms. */
int tracker_pace_held(const struct tracker_pace *p, uint64_t now_ms);

#endif
