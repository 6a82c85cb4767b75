/* The tracker configuration the in-process tracker tests start from.
 *
 * test_handlers feeds frames to tracker/handlers.c without a network, and
 * test_tracker_client runs a whole tracker on loopback for the peer's
 * client; both want the same small tracker, and each changes what its own
 * cases are about.
 */
#ifndef SHOAL_TEST_TRACKERCFG_H
#define SHOAL_TEST_TRACKERCFG_H

#include "tracker/tracker.h"

/* Small limits (a 100 s interval, 10 connections, 100 peers a content,
 * 100 catalog entries kept 1000 s), a rate limit (1000 a second, a burst
 * of 1000) that no test reaches unless it lowers it, and the tracker's own
 * frame size, idle time, announce items and clock window. Listens nowhere
 * (n_listen is 0) and names no key file. */
struct tracker_config trackercfg_small(void);

#endif
