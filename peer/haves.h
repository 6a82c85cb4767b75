/* When a swarm tells its peers of the chunks it verified (haves.c): the
 * have-log that gathers them into HAVEs and the pacing of those HAVEs.
 *
 * Pure: the log and a clock passed in, no sockets. swarm.c keeps one
 * struct haves per swarm and one cursor per session (how many entries of
 * the log that session was sent), asks haves_due what is due, and sends.
 *
 * The pacing (docs/protocol.md, rule 13; docs/design.md, "Data and
 * chunks"): a peer that can use a new chunk at once (haves_eager) hears of
 * it NODE_HAVE_MS after the last prompt HAVE at most; every peer hears of
 * every chunk NODE_HAVE_SLOW_MS after all were last told, when a new log
 * starts; a log of NODE_HAVE_BATCH chunks is sent to all before it takes
 * another. A HAVE alone is often a packet of its own: one per chunk and
 * peer took a few percent of a peer's upload, and one every NODE_HAVE_MS
 * to every peer still took 1 %.
 */
#ifndef SHOAL_PEER_HAVES_H
#define SHOAL_PEER_HAVES_H

#include <stddef.h>
#include <stdint.h>

#include "common/pwire.h"
#include "peer/limits.h"

/* Bytes of the largest HAVE a log makes (haves_payload). */
#define HAVES_PAYLOAD_MAX (PWIRE_HAVE_VARINT_MAX * NODE_HAVE_BATCH)

struct haves {
  /* Chunks verified since every session was last told, in the order they
   * were. */
  uint32_t log[NODE_HAVE_BATCH];
  unsigned n;        /* entries in the log */
  uint64_t sent_ms;  /* when the last prompt HAVE went out */
  uint64_t epoch_ms; /* when every session was last told */
};

/* What is due at a moment (haves_due). */
struct haves_due {
  int all;          /* tell every session all it lacks, then haves_restart */
  int eager;        /* tell the eager sessions behind what they lack now */
  uint64_t wait_ms; /* then come back after this; 0: nothing waits */
};

/* An empty log whose last HAVEs went out at clock 0: the first chunk is
 * told to everyone at once. */
void haves_init(struct haves *h);

/* Whether the log holds NODE_HAVE_BATCH chunks: it must be sent to all
 * (and restarted) before it takes another. */
int haves_full(const struct haves *h);
/* Logs chunk; the log must not be full. */
void haves_add(struct haves *h, uint32_t chunk);
/* Entries at and after cursor (*n of them, 0 when the cursor is at the
 * end); the pointer is into h, valid until the log changes. */
const uint32_t *haves_since(const struct haves *h, unsigned cursor,
                            unsigned *n);
/* The same entries as a HAVE's payload (pwire_have_put: sorted, as
 * varints) in out, HAVES_PAYLOAD_MAX bytes; returns its length, 0 when
 * the cursor is at the end. */
size_t haves_payload(const struct haves *h, unsigned cursor,
                     uint8_t out[HAVES_PAYLOAD_MAX]);
/* Every session was told at now: a new log begins (every cursor goes back
 * to 0, the caller's to do). */
void haves_restart(struct haves *h, uint64_t now);
/* An eager session was told at now. */
void haves_sent_eager(struct haves *h, uint64_t now);

/* Whether a peer should hear of a new chunk within NODE_HAVE_MS: one we
 * upload to (it may ask for the chunk at once) or one not interested in us
 * (the chunk may make it so). A peer we choke that is interested cannot
 * ask for it anyway, and one holding every chunk needs it only for its
 * seeding order. */
int haves_eager(int holds_all, int we_choke, int interested);

/* What is due at now, given whether some eager session is behind the log
 * (eager_behind). Changes nothing: the caller sends, then calls
 * haves_restart (all) or haves_sent_eager (eager, when it told one). */
struct haves_due haves_due(const struct haves *h, uint64_t now,
                           int eager_behind);

#endif
