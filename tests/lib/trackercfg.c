/* The in-process tracker tests' configuration (see trackercfg.h). */
#include "tests/lib/trackercfg.h"

#include "common/envelope.h"
#include "common/tmsg.h"

struct tracker_config trackercfg_small(void) {
  return (struct tracker_config){
      .interval_s = 100,
      .max_conns = 10,
      .rate = 1000,
      .burst = 1000,
      .max_frame = TRACKER_FRAME_DEFAULT,
      .idle_s = TRACKER_IDLE_DEFAULT_S,
      .max_peers = 100,
      .max_items = TMSG_MAX_ANNOUNCE_ITEMS,
      .catalog_max = 100,
      .catalog_ttl_s = 1000,
      .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
  };
}
