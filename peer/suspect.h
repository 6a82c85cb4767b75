/* Who sent the bad block (suspect.c): what a swarm remembers of a chunk
 * that failed its hash when several peers sent its blocks, until a copy
 * that verifies shows which blocks were bad.
 *
 * Who calls what: swarm.c alone; suspect.c calls nothing above it. The
 * strikes themselves are swarm.c's (bans.c keeps the count).
 *
 * Ownership: the swarm's list owns each struct suspect and its tables.
 */
#ifndef SHOAL_PEER_SUSPECT_H
#define SHOAL_PEER_SUSPECT_H

#include <stdint.h>

struct swarm;

/* What we remember about a failed chunk to find who sent the bad block. */
struct suspect {
  struct suspect *next;
  uint32_t chunk;
  uint32_t nblocks;
  uint8_t *owners; /* nblocks x IDENTITY_PK_BYTES */
  uint8_t *hashes; /* nblocks x 32 */
};

/* Whether every one of nblocks blocks came from the same key (owners:
 * nblocks x IDENTITY_PK_BYTES): then that key alone sent a bad chunk. */
int suspect_sole_sender(const uint8_t *owners, uint32_t nblocks);
/* The swarm's record of chunk, or NULL. */
struct suspect *suspect_find(struct swarm *sw, uint32_t chunk);
/* Records chunk's failed copy: its senders and the BLAKE2b-256 of each of
 * its blocks, both taken (nblocks x 32 and x IDENTITY_PK_BYTES bytes, from
 * malloc). Returns 0, or SHOAL_ENOMEM with both left to the caller. */
int suspect_add(struct swarm *sw, uint32_t chunk, uint32_t nblocks,
                uint8_t *owners, uint8_t *hashes);
/* With data (len bytes), a copy of x's chunk that verified: writes to who
 * the keys that sent a block of the failed copy that differs from it,
 * each once, in the order of their first bad block, and returns their
 * count. who has room for x->nblocks pointers, into x->owners (valid until
 * suspect_drop). */
uint32_t suspect_blame(const struct suspect *x, const uint8_t *data,
                       uint32_t len, const uint8_t **who);
/* Takes x off the swarm's list and frees it. */
void suspect_drop(struct swarm *sw, struct suspect *x);
/* Drops every record of the swarm. */
void suspect_drop_all(struct swarm *sw);

#endif
