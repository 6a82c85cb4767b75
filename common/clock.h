/* Wall-clock time for signed timestamps and log records. Event-loop code
 * measures intervals with uv_now(); only timestamps use the wall clock. */
#ifndef SHOAL_CLOCK_H
#define SHOAL_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch, or 0 if the clock cannot be read (an
 * envelope stamped 0 is then refused as stale, never accepted). */
uint64_t clock_wall_ms(void);

#endif
