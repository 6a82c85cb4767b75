/* The swarm simulator's event queue (simheap.c): a binary min-heap of
 * timed events, earliest first, events of the same time in the order they
 * were pushed, so that a run is the same on every machine.
 *
 * An event is plain data: a time in microseconds, a kind and four numbers
 * whose meaning the kind gives (bench/lib/simswarm.c), and an optional
 * payload pointer the heap carries and never touches. Events are never
 * removed from the middle: a caller that changes its mind bumps a version
 * it keeps and stores in the event, and drops the stale event when it
 * comes out (simswarm.c's flow completions).
 *
 * The heap grows by doubling up to SIMHEAP_MAX events; past that a push
 * fails with SHOAL_ETOOBIG rather than eat the machine's memory.
 */
#ifndef SHOAL_BENCH_SIMHEAP_H
#define SHOAL_BENCH_SIMHEAP_H

#include <stddef.h>
#include <stdint.h>

/* Events held at once, at most (about 2.5 GB of them). */
#define SIMHEAP_MAX (64u << 20)

struct simev {
  uint64_t t;   /* when, in microseconds of simulated time */
  uint64_t seq; /* push order: breaks ties between equal times */
  uint32_t kind;
  uint32_t a, b, c, d;
  void *payload; /* the caller's; the heap only carries it */
};

struct simheap {
  struct simev *ev;
  size_t n, cap;
  uint64_t next_seq;
};

void simheap_init(struct simheap *h);
/* Frees the array; payloads still inside are the caller's to free first
 * (simheap_pop them). */
void simheap_close(struct simheap *h);
/* Adds e (its seq is set here). Returns 0, SHOAL_ENOMEM or SHOAL_ETOOBIG. */
int simheap_push(struct simheap *h, const struct simev *e);
/* Takes the earliest event into *out. Returns 1, or 0 when empty. */
int simheap_pop(struct simheap *h, struct simev *out);
/* The earliest event, not taken; NULL when empty. */
const struct simev *simheap_peek(const struct simheap *h);

#endif
