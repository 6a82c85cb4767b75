/* A swarm's chunks being assembled (partial.c): one buffer per chunk that
 * has received a block, and who sent each of its blocks.
 *
 * Who calls what: swarm.c alone, as DATA arrives, when a chunk is handed
 * to storage, and when the swarm finishes or is freed. partial.c calls
 * nothing above it.
 *
 * Ownership: the swarm's list owns each struct partial and its buffers;
 * the data buffer comes from storage_chunk_alloc and goes back with
 * storage_chunk_free (a caller that takes it, to hand it to storage, sets
 * p->data to NULL first).
 */
#ifndef SHOAL_PEER_PARTIAL_H
#define SHOAL_PEER_PARTIAL_H

#include <stddef.h>
#include <stdint.h>

struct pwire_sealed; /* common/pwire.h */
struct swarm;

/* A chunk being assembled from blocks. */
struct partial {
  struct partial *next;
  uint32_t chunk;
  uint32_t len;
  uint32_t nblocks;
  uint8_t *data;
  uint8_t *owners; /* nblocks x IDENTITY_PK_BYTES: who sent each block */
  /* nblocks records: block i of data is still ciphertext when sealed[i].len
   * is not 0 (it holds keys: partial.c wipes what it frees) */
  struct pwire_sealed *sealed;
};

/* The swarm's partial chunk, made (with a buffer of the chunk's length)
 * when it has none yet; NULL without memory. sw->m must be known. */
struct partial *partial_get(struct swarm *sw, uint32_t chunk);
/* Copies a block of len bytes at offset into p (unless data is already
 * there: swarm_data_dest), and notes pk (32 bytes) as the sender of every
 * block it covers. sealed: NULL for plaintext; else the block is one
 * whole PWIRE_BLOCK_BYTES block (offset a multiple of it), still
 * encrypted, and this is its record (copied). The caller checked the
 * block against the manifest. */
void partial_add_block(struct partial *p, uint32_t offset, const uint8_t *data,
                       size_t len, const uint8_t *pk,
                       const struct pwire_sealed *sealed);
/* Wipes and frees nblocks sealed records (NULL is a no-op). */
void partial_sealed_free(struct pwire_sealed *sealed, uint32_t nblocks);
/* Takes p off the swarm's list and frees it with what it still holds. */
void partial_drop(struct swarm *sw, struct partial *p);
/* Drops every partial chunk of the swarm. */
void partial_drop_all(struct swarm *sw);

#endif
