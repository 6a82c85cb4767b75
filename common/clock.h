/* Wall-clock time for signed timestamps. Event-loop code measures intervals
 * with uv_now(); only message timestamps use the wall clock. */
#ifndef SHOAL_CLOCK_H
#define SHOAL_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch. */
uint64_t clock_wall_ms(void);

#endif
